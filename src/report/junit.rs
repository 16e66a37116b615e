//! `junit.xml` for CI systems: one test suite per run, one test case per steady-state check
//! before the faults, one per check after recovery, one for the recovery deadline and one per
//! revert. A check that was not evaluated (the run was aborted, or the baseline already failed)
//! is reported as skipped with the reason, never as passed.

use std::fmt::Write as _;

use super::format::{self, Redactor, xml};
use super::{CheckRecord, Outcome, RunRecord};

/// The outcome of one test case.
enum CaseResult {
    Passed,
    Failed { kind: &'static str, message: String, detail: String },
    Skipped(String),
    Error(String),
}

struct Case {
    class: &'static str,
    name: String,
    time: Option<f64>,
    result: CaseResult,
}

fn observed(v: Option<f64>, c: &CheckRecord) -> String {
    v.map(|v| format::value(v, &c.unit)).unwrap_or_else(|| "no data".into())
}

fn cases(r: &RunRecord) -> Vec<Case> {
    let mut out = Vec::new();
    for c in &r.steady_state {
        let result = if c.before_ok {
            CaseResult::Passed
        } else if c.before.is_none() && r.verdict.outcome == Outcome::Error {
            // The run ended with an error before there was anything to judge; the error itself
            // is reported on the recovery case.
            CaseResult::Skipped("not evaluated: the run ended with an error".into())
        } else {
            CaseResult::Failed {
                kind: "steady-state",
                message: format!("`{}` did not hold before the faults: observed {}", c.check, observed(c.before, c)),
                detail: "The steady state must hold before any fault is injected; nothing was injected.".into(),
            }
        };
        out.push(Case { class: "before", name: format!("before faults: {}", c.check), time: None, result });
    }

    let not_evaluated = match r.verdict.outcome {
        Outcome::PreconditionFailed => "not evaluated: the steady state did not hold before the faults".to_string(),
        _ if r.verdict.interrupted_by.is_some() => {
            format!("not evaluated: interrupted by {}", r.verdict.interrupted_by.as_deref().unwrap_or_default())
        }
        Outcome::Aborted => format!("not evaluated: aborted by a stop condition ({})", r.verdict.reason.trim()),
        Outcome::Error => "not evaluated: the run ended with an error".to_string(),
        _ => "not evaluated".to_string(),
    };
    for c in &r.steady_state {
        let result = match c.after_ok {
            Some(true) => CaseResult::Passed,
            Some(false) => CaseResult::Failed {
                kind: "steady-state",
                message: format!("`{}` did not hold after recovery: observed {}", c.check, observed(c.after, c)),
                detail: r.verdict.reason.clone(),
            },
            None => CaseResult::Skipped(not_evaluated.clone()),
        };
        out.push(Case { class: "recovery", name: format!("after recovery: {}", c.check), time: None, result });
    }

    let t = &r.timings;
    let within = t.last_fault_end_s.map(|_| format::secs(t.recovery_deadline_s));
    let name = match &within {
        Some(w) => format!("steady state restored within {w}"),
        None => "steady state restored".into(),
    };
    let result = match r.verdict.outcome {
        Outcome::Passed => CaseResult::Passed,
        Outcome::RevertFailed if t.time_to_recover_s.is_some() => CaseResult::Passed,
        Outcome::PreconditionFailed => CaseResult::Skipped(not_evaluated.clone()),
        Outcome::Error => CaseResult::Error(r.verdict.reason.clone()),
        Outcome::Aborted | Outcome::Failed | Outcome::RevertFailed => CaseResult::Failed {
            kind: match r.verdict.outcome {
                Outcome::Aborted if r.verdict.interrupted_by.is_some() => "interrupted",
                Outcome::Aborted => "stop-condition",
                _ => "recovery",
            },
            message: r.verdict.reason.clone(),
            detail: worst(r),
        },
    };
    out.push(Case { class: "recovery", name, time: t.time_to_recover_s, result });

    // One case per fault that needed a revert. Instantaneous faults (task-kill, redeploy) have
    // nothing to undo and no case.
    for f in r.faults.iter() {
        let Some(injected) = f.injected_s else { continue };
        // Nothing was left to revert (a failover's new writer stays): no revert case either.
        if f.no_revert.is_some() && f.revert_error.is_none() {
            continue;
        }
        let needs_revert = f.ends_s.is_none_or(|e| e > injected);
        let result = match (&f.revert_error, f.reverted_s) {
            (Some(e), _) => CaseResult::Failed {
                kind: "revert",
                message: format!("reverting {} failed: {e}", f.name),
                detail: "Something may still be broken: run `siege recover`.".into(),
            },
            (None, Some(_)) => CaseResult::Passed,
            (None, None) if needs_revert => CaseResult::Failed {
                kind: "revert",
                message: format!("no revert of {} was recorded", f.name),
                detail: "Something may still be broken: run `siege recover`.".into(),
            },
            (None, None) => continue,
        };
        out.push(Case { class: "revert", name: format!("{} ({}) reverted", f.name, f.kind), time: None, result });
    }
    out
}

fn worst(r: &RunRecord) -> String {
    match &r.worst_window {
        Some(w) => format!(
            "Worst window at t+{}s: {} errors, p95 {}.",
            w.second,
            format::percent(w.error_rate),
            format::ms(w.latency_ms.p95)
        ),
        None => String::new(),
    }
}

/// Renders `junit.xml`.
pub(crate) fn render(r: &RunRecord, red: &Redactor) -> String {
    let cases = cases(r);
    let count = |f: fn(&CaseResult) -> bool| cases.iter().filter(|c| f(&c.result)).count();
    let failures = count(|r| matches!(r, CaseResult::Failed { .. }));
    let errors = count(|r| matches!(r, CaseResult::Error(_)));
    let skipped = count(|r| matches!(r, CaseResult::Skipped(_)));
    let time = red.duration(r.timings.duration_s, |s| format!("{s:.3}"));
    let suite = xml(&r.scenario.name);
    let class_prefix = format!("siege.{}", r.scenario.name);

    let mut o = String::new();
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        r#"<testsuites name="siege" tests="{}" failures="{failures}" errors="{errors}" skipped="{skipped}" time="{time}">"#,
        cases.len()
    );
    let _ = writeln!(
        o,
        r#"  <testsuite name="{suite}" tests="{}" failures="{failures}" errors="{errors}" skipped="{skipped}" time="{time}" timestamp="{}">"#,
        cases.len(),
        xml(&red.timestamp(&r.started_at))
    );
    o.push_str("    <properties>\n");
    let props = [
        ("run_id", red.run_id(&r.run_id)),
        ("verdict", r.verdict.outcome.word().to_lowercase()),
        ("exit_code", r.verdict.exit_code.to_string()),
        ("seed", red.seed(r.seed)),
        ("scenario_file", r.scenario.file.clone()),
        ("target", format!("{} service {}", r.scenario.target, r.scenario.service)),
    ];
    for (k, v) in props {
        let _ = writeln!(o, r#"      <property name="{k}" value="{}"/>"#, xml(&v));
    }
    o.push_str("    </properties>\n");
    for c in &cases {
        let time = c.time.map(|t| red.duration(t, |s| format!("{s:.3}"))).unwrap_or_else(|| "0".into());
        let _ = write!(
            o,
            r#"    <testcase name="{}" classname="{}.{}" time="{time}""#,
            xml(&c.name),
            xml(&class_prefix),
            c.class
        );
        match &c.result {
            CaseResult::Passed => o.push_str("/>\n"),
            CaseResult::Failed { kind, message, detail } => {
                let _ = writeln!(
                    o,
                    ">\n      <failure type=\"{kind}\" message=\"{}\">{}</failure>\n    </testcase>",
                    xml(message),
                    xml(detail)
                );
            }
            CaseResult::Skipped(message) => {
                let _ = writeln!(o, ">\n      <skipped message=\"{}\"/>\n    </testcase>", xml(message));
            }
            CaseResult::Error(message) => {
                let _ =
                    writeln!(o, ">\n      <error type=\"internal\" message=\"{}\"/>\n    </testcase>", xml(message));
            }
        }
    }
    let _ = writeln!(
        o,
        "    <system-out>{}</system-out>",
        xml(&format!("{}: {}", r.verdict.outcome.word(), r.verdict.reason.trim()))
    );
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{FaultRecord, Verdict, tests_support::minimal_record};

    fn fault(
        name: &str,
        injected: Option<f64>,
        ends: Option<f64>,
        reverted: Option<f64>,
        error: Option<&str>,
    ) -> FaultRecord {
        FaultRecord {
            name: name.into(),
            kind: "latency".into(),
            targets: vec![],
            summary: String::new(),
            injected_s: injected,
            ends_s: ends,
            reverted_s: reverted,
            revert_error: error.map(Into::into),
            no_revert: None,
            effect: None,
            human: vec![],
        }
    }

    #[test]
    fn reverts_are_cases_and_a_missing_revert_fails() {
        let mut r = minimal_record();
        r.faults = vec![
            fault("instant", Some(1.0), Some(1.0), None, None),
            fault("timed", Some(1.0), Some(5.0), Some(5.1), None),
            fault("broken", Some(1.0), Some(5.0), None, Some("access denied <AccessDenied>")),
            fault("forgotten", Some(1.0), None, None, None),
            fault("never", None, Some(5.0), None, None),
        ];
        r.verdict = Verdict {
            outcome: Outcome::RevertFailed,
            exit_code: 5,
            reason: "a revert failed".into(),
            interrupted_by: None,
        };
        let xml = render(&r, &Redactor::noop());
        assert!(!xml.contains("instant (") && !xml.contains("never ("), "{xml}");
        assert!(
            xml.contains(r#"<testcase name="timed (latency) reverted" classname="siege.task-kill.revert" time="0"/>"#)
        );
        assert!(xml.contains("reverting broken failed: access denied &lt;AccessDenied&gt;"), "{xml}");
        assert!(xml.contains("no revert of forgotten was recorded"), "{xml}");
    }

    #[test]
    fn precondition_failures_fail_before_and_skip_after() {
        let mut r = minimal_record();
        r.steady_state = vec![CheckRecord {
            check: "p95 < 250ms".into(),
            metric: "p95".into(),
            before: Some(480.0),
            before_ok: false,
            after: None,
            after_ok: None,
            unit: "ms".into(),
            threshold: Some(250.0),
        }];
        r.verdict = Verdict {
            outcome: Outcome::PreconditionFailed,
            exit_code: 4,
            reason: "baseline failed".into(),
            interrupted_by: None,
        };
        let xml = render(&r, &Redactor::noop());
        assert!(xml.contains(r#"tests="3" failures="1" errors="0" skipped="2""#), "{xml}");
        assert!(xml.contains("`p95 &lt; 250ms` did not hold before the faults: observed 480ms"), "{xml}");
    }

    #[test]
    fn internal_errors_are_junit_errors() {
        let mut r = minimal_record();
        r.steady_state = vec![CheckRecord {
            check: "p95 < 250ms".into(),
            metric: "p95".into(),
            before: None,
            before_ok: false,
            after: None,
            after_ok: None,
            unit: "ms".into(),
            threshold: Some(250.0),
        }];
        r.verdict = Verdict {
            outcome: Outcome::Error,
            exit_code: 70,
            reason: "sampler panicked & died".into(),
            interrupted_by: None,
        };
        let xml = render(&r, &Redactor::noop());
        assert!(xml.contains(r#"errors="1""#) && xml.contains("sampler panicked &amp; died"), "{xml}");
        // Nothing was judged, so nothing failed.
        assert!(xml.contains(r#"failures="0" errors="1" skipped="2""#), "{xml}");
    }
}
