//! The small expression forms of the format: comparisons (`"< 1%"`, `">= 2"`, `"< 250ms"`), whose
//! unit depends on the metric, and threshold stop conditions (`"error_rate > 50% for 15s"`).
//! Errors are a message and an optional hint; the caller adds the location.

use super::did_you_mean;
use super::model::{Comparison, Metric, Op};
use super::units::{parse_duration, parse_percent, parse_rate};

/// A problem with an expression: what is wrong, and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExprError {
    pub message: String,
    pub hint: Option<String>,
}

impl ExprError {
    fn new(message: impl Into<String>, hint: Option<String>) -> Self {
        ExprError { message: message.into(), hint }
    }
}

/// The metric named `name`, or an error with a did-you-mean hint.
pub(crate) fn parse_metric(name: &str) -> Result<Metric, ExprError> {
    if let Some((_, m)) = Metric::ALL.iter().find(|(n, _)| *n == name) {
        return Ok(*m);
    }
    let names: Vec<&str> = Metric::ALL.iter().map(|(n, _)| *n).collect();
    let hint = did_you_mean(name, &names)
        .map(|s| format!("did you mean `{s}`?"))
        .or_else(|| Some(format!("metrics: {}", names.join(", "))));
    Err(ExprError::new(format!("unknown metric `{name}`"), hint))
}

/// How a metric's threshold is written, for hints.
pub(crate) fn metric_example(metric: Metric) -> &'static str {
    match metric {
        Metric::ErrorRate => "a percentage, e.g. \"< 1%\"",
        Metric::P50 | Metric::P95 | Metric::P99 => "a latency with its unit, e.g. \"< 250ms\" or \"< 1s\"",
        Metric::Rps => "requests per second, e.g. \">= 90\" or \">= 90/s\"",
        Metric::HealthyTargets | Metric::RunningTasks => "a count, e.g. \">= 2\"",
    }
}

/// `< 1%`, `>=2`, `< 250ms`: an operator and a value in the metric's unit.
pub(crate) fn parse_comparison(metric: Metric, text: &str) -> Result<Comparison, ExprError> {
    let s = text.trim();
    let hint = || Some(format!("{} takes {}", metric.name(), metric_example(metric)));
    let (op, rest) = if let Some(r) = s.strip_prefix("<=") {
        (Op::Le, r)
    } else if let Some(r) = s.strip_prefix(">=") {
        (Op::Ge, r)
    } else if let Some(r) = s.strip_prefix("==") {
        (Op::Eq, r)
    } else if let Some(r) = s.strip_prefix('<') {
        (Op::Lt, r)
    } else if let Some(r) = s.strip_prefix('>') {
        (Op::Gt, r)
    } else if s.starts_with('=') || s.starts_with("!=") || s.starts_with("=>") || s.starts_with("=<") {
        return Err(ExprError::new(
            format!("unsupported operator in `{s}`"),
            Some("operators: <, <=, >, >=, ==".into()),
        ));
    } else {
        return Err(ExprError::new(format!("`{s}` is not a comparison: it needs an operator first"), hint()));
    };
    let v = rest.trim();
    if v.is_empty() {
        return Err(ExprError::new(format!("`{s}` has no value after `{}`", op.symbol()), hint()));
    }
    let value = match metric {
        Metric::ErrorRate => {
            let p = parse_percent(v).map_err(|_| {
                ExprError::new(format!("`{v}` is not a percentage: error_rate is compared in percent"), hint())
            })?;
            if p > 1.0 {
                return Err(ExprError::new(format!("`{v}` is above 100%"), hint()));
            }
            p
        }
        Metric::P50 | Metric::P95 | Metric::P99 => {
            let d = parse_duration(v).map_err(|m| ExprError::new(m, hint()))?;
            d.as_secs_f64() * 1000.0
        }
        Metric::Rps => {
            if v.contains('/') {
                parse_rate(v).map_err(|m| ExprError::new(m, hint()))?
            } else {
                parse_number(v).ok_or_else(|| ExprError::new(format!("`{v}` is not a number"), hint()))?
            }
        }
        Metric::HealthyTargets | Metric::RunningTasks => match v.parse::<u32>() {
            Ok(n) => f64::from(n),
            Err(_) => {
                return Err(ExprError::new(
                    format!("`{v}` is not a count: {} is a whole number", metric.name()),
                    hint(),
                ));
            }
        },
    };
    Ok(Comparison { op, value })
}

fn parse_number(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0)
}

/// `error_rate > 50% for 15s`: a metric, a comparison and the window it must hold for.
pub(crate) fn parse_threshold(text: &str) -> Result<(Metric, Comparison, std::time::Duration), ExprError> {
    let s = text.trim();
    let example = Some("write it as \"METRIC OP VALUE for DURATION\", e.g. \"error_rate > 50% for 15s\"".to_string());
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(s.len());
    if end == 0 {
        return Err(ExprError::new(format!("`{s}` does not start with a metric"), example));
    }
    let metric = parse_metric(&s[..end])?;
    let rest = &s[end..];
    let Some(for_at) = rest.find(" for ") else {
        return Err(ExprError::new(format!("`{s}` has no window: how long must it hold?"), example));
    };
    let cmp = parse_comparison(metric, &rest[..for_at])?;
    let window_text = rest[for_at + 5..].trim();
    let window = parse_duration(window_text).map_err(|m| ExprError::new(m, example.clone()))?;
    if window < std::time::Duration::from_secs(1) {
        return Err(ExprError::new(
            format!("window `{window_text}` is shorter than one second"),
            Some("stop conditions are evaluated on one-second windows".into()),
        ));
    }
    Ok((metric, cmp, window))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cmp(m: Metric, s: &str) -> Comparison {
        parse_comparison(m, s).unwrap()
    }

    #[test]
    fn comparisons_take_the_metric_unit() {
        assert_eq!(cmp(Metric::ErrorRate, "< 1%"), Comparison { op: Op::Lt, value: 0.01 });
        assert_eq!(cmp(Metric::P95, "<250ms"), Comparison { op: Op::Lt, value: 250.0 });
        assert_eq!(cmp(Metric::P99, "<= 1.5s"), Comparison { op: Op::Le, value: 1500.0 });
        assert_eq!(cmp(Metric::HealthyTargets, ">= 2"), Comparison { op: Op::Ge, value: 2.0 });
        assert_eq!(cmp(Metric::RunningTasks, "== 3"), Comparison { op: Op::Eq, value: 3.0 });
        assert_eq!(cmp(Metric::Rps, "> 90"), Comparison { op: Op::Gt, value: 90.0 });
        assert_eq!(cmp(Metric::Rps, "> 6000/m"), Comparison { op: Op::Gt, value: 100.0 });
    }

    #[test]
    fn wrong_units_are_refused_with_a_hint() {
        let e = parse_comparison(Metric::ErrorRate, "< 0.01").unwrap_err();
        assert!(e.message.contains("not a percentage"), "{e:?}");
        assert!(e.hint.unwrap().contains("\"< 1%\""));
        let e = parse_comparison(Metric::P95, "< 250").unwrap_err();
        assert!(e.message.contains("needs a unit"), "{e:?}");
        let e = parse_comparison(Metric::HealthyTargets, ">= 50%").unwrap_err();
        assert!(e.message.contains("not a count"), "{e:?}");
        assert!(parse_comparison(Metric::ErrorRate, "< 150%").unwrap_err().message.contains("above 100%"));
        assert!(parse_comparison(Metric::ErrorRate, "1%").unwrap_err().message.contains("needs an operator"));
        assert!(parse_comparison(Metric::ErrorRate, "=< 1%").unwrap_err().message.contains("unsupported operator"));
        assert!(parse_comparison(Metric::ErrorRate, "<").unwrap_err().message.contains("no value"));
    }

    #[test]
    fn comparison_holds() {
        let c = cmp(Metric::ErrorRate, "< 1%");
        assert!(c.holds(0.005));
        assert!(!c.holds(0.01));
        assert!(cmp(Metric::HealthyTargets, ">= 2").holds(2.0));
    }

    #[test]
    fn thresholds() {
        let (m, c, w) = parse_threshold("error_rate > 50% for 15s").unwrap();
        assert_eq!((m, c, w), (Metric::ErrorRate, Comparison { op: Op::Gt, value: 0.5 }, Duration::from_secs(15)));
        let (m, c, w) = parse_threshold("p99>2s for 1m").unwrap();
        assert_eq!((m, c.value, w), (Metric::P99, 2000.0, Duration::from_secs(60)));
        assert!(parse_threshold("error_rate > 50%").unwrap_err().message.contains("no window"));
        let e = parse_threshold("eror_rate > 50% for 15s").unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `error_rate`?"));
        assert!(parse_threshold("error_rate > 50% for 500ms").unwrap_err().message.contains("shorter than one second"));
        assert!(parse_threshold("> 50% for 5s").unwrap_err().message.contains("does not start with a metric"));
    }
}
