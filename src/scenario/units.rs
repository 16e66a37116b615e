//! Parsers for the unit strings of the scenario format and the command line:
//! durations (`250ms`, `1.5s`, `2m`, `1h`), rates (`100/s`, `6000/m`) and percentages (`50%`).
//! Errors are short lowercase messages; callers add the location.

use std::time::Duration;

/// `250ms`, `1.5s`, `2m`, `1h`, `1m30s`. A bare number is refused: units must be explicit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("invalid duration `{s}`: expected a number, e.g. `30s`"));
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| format!("invalid duration `{s}`"))?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("duration `{s}` needs a unit: `{s}s`, `{s}ms`, `{s}m` or `{s}h`")),
            u => return Err(format!("unknown unit `{u}` in duration `{s}`: use ms, s, m or h")),
        };
        total += value * scale;
    }
    if !total.is_finite() || total > 1e9 {
        return Err(format!("duration `{s}` is too large"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// `100/s`, `6000/m`, `1.5/s`: requests per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, per) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid rate `{s}`: expected requests per unit, e.g. `100/s` or `6000/m`"))?;
    let n: f64 = num.trim().parse().map_err(|_| format!("invalid rate `{s}`: `{num}` is not a number"))?;
    let per_s = match per.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        p => return Err(format!("invalid rate `{s}`: unknown unit `/{p}`, use /s, /m or /h")),
    };
    if !n.is_finite() || n < 0.0 {
        return Err(format!("invalid rate `{s}`: must be a non-negative number"));
    }
    Ok(n / per_s)
}

/// `50%`, `0.5%`: a fraction (`0.5`, `0.005`). Values above 100% are returned as such; range
/// checks belong to the caller, which knows the key.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let num = s.strip_suffix('%').ok_or_else(|| format!("invalid percentage `{s}`: expected e.g. `50%`"))?;
    let n: f64 = num.trim().parse().map_err(|_| format!("invalid percentage `{s}`"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("invalid percentage `{s}`: must not be negative"));
    }
    Ok(n / 100.0)
}

pub use crate::util::format_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("30").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn rates_and_percentages() {
        assert_eq!(parse_rate("100/s"), Ok(100.0));
        assert_eq!(parse_rate("6000/m"), Ok(100.0));
        assert!(parse_rate("100").is_err());
        assert!(parse_rate("100/d").is_err());
        assert_eq!(parse_percent("50%"), Ok(0.5));
        assert_eq!(parse_percent("150%"), Ok(1.5));
        assert!(parse_percent("50").is_err());
    }

    #[test]
    fn formatting_round_trips() {
        for s in ["250ms", "20s", "2m", "1m30s", "1h"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
