//! When a schedule comes due: pure functions of the schedule and an instant, with no clock and
//! no I/O, so that the daemon's timer loop and its tests agree on every due time.
//!
//! A schedule is either a cron expression (5 fields, or an alias such as `@daily`) read in an
//! IANA time zone, or `every: <duration>`, whose due times are the multiples of the duration
//! since the Unix epoch (so `every: 6h` fires at 00:00, 06:00, 12:00 and 18:00 UTC). An optional
//! jitter shifts every due time by the same offset in `[0, jitter)`, derived from the schedule's
//! name: many schedules on one cron line spread out, and a restart keeps the same times.
//!
//! Daylight saving time follows cron's habit (croner's OCPS rules): a local time that does not
//! exist (spring forward) fires at the first instant after the gap; a local time that happens
//! twice (fall back) fires once, at its first occurrence.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// The shortest `every` accepted.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// Why a schedule cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression `{expr}`: {message}")]
    Cron { expr: String, message: String },
    #[error("unknown time zone `{name}`")]
    UnknownTimeZone { name: String },
    #[error("`every` must be at least 1s")]
    EveryTooShort,
}

/// A cron expression and the time zone it is read in.
#[derive(Debug, Clone)]
pub struct CronCadence {
    expr: String,
    cron: croner::Cron,
    zone_name: String,
    zone: TimeZone,
}

impl CronCadence {
    /// Parses `expr` (5 fields: minute, hour, day of month, month, day of week; or `@hourly`,
    /// `@daily`, `@weekly`, `@monthly`, `@yearly`) to be read in the IANA zone `zone`.
    pub fn new(expr: &str, zone: &str) -> Result<CronCadence, ScheduleError> {
        let cron = parse_cron(expr)?;
        let tz = time_zone(zone)?;
        Ok(CronCadence { expr: expr.trim().to_string(), cron, zone_name: zone.to_string(), zone: tz })
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The IANA name of the time zone.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The first due time strictly after `t`; `None` if the expression never matches again.
    fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron.find_next_occurrence(&t.to_zoned(self.zone.clone()), false).ok().map(|z| z.timestamp())
    }

    /// The last due time at or before `t`.
    fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron.find_previous_occurrence(&t.to_zoned(self.zone.clone()), true).ok().map(|z| z.timestamp())
    }
}

/// Checks a 5-field cron expression or alias.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, ScheduleError> {
    let err = |message: String| ScheduleError::Cron { expr: expr.to_string(), message };
    let trimmed = expr.trim();
    if trimmed.starts_with('@') {
        const ALIASES: &[&str] = &["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually"];
        if !ALIASES.iter().any(|a| a.eq_ignore_ascii_case(trimmed)) {
            return Err(err(format!("unknown alias: expected one of {}", ALIASES.join(", "))));
        }
    } else {
        let fields = trimmed.split_whitespace().count();
        if fields != 5 {
            return Err(err(format!("expected 5 fields (minute hour day-of-month month day-of-week), found {fields}")));
        }
    }
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build();
    let cron = parser.parse(trimmed).map_err(|e| err(croner_message(&e)))?;
    // `0 0 30 2 *` parses but never matches a date: a schedule that would never fire is refused
    // rather than accepted in silence. From 1970, so that a leap day is found.
    let epoch = Timestamp::UNIX_EPOCH.to_zoned(TimeZone::UTC);
    if cron.find_next_occurrence(&epoch, false).is_err() {
        return Err(err(
            "it matches no date at all (such as the 30th of February), so the schedule would never fire".into()
        ));
    }
    Ok(cron)
}

/// croner's messages start with a capital and a category (`Component error: …`); ours are
/// lowercase and without the category.
fn croner_message(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    let m = match e {
        E::InvalidPattern(m) | E::IllegalCharacters(m) | E::ComponentError(m) => m.clone(),
        other => other.to_string(),
    };
    let m = m.trim().trim_end_matches('.');
    let mut c = m.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => "invalid".to_string(),
    }
}

/// The IANA time zone `name` (`Europe/Berlin`, `UTC`), from the system's tz database.
pub fn time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    TimeZone::get(name).map_err(|_| ScheduleError::UnknownTimeZone { name: name.to_string() })
}

/// How often a schedule comes due.
#[derive(Debug, Clone)]
pub enum Cadence {
    /// Boxed: a parsed expression is large next to a duration.
    Cron(Box<CronCadence>),
    /// Every multiple of this duration since the Unix epoch.
    Every(Duration),
}

impl Cadence {
    /// `every: <d>`, at least [`MIN_EVERY`].
    pub fn every(d: Duration) -> Result<Cadence, ScheduleError> {
        if d < MIN_EVERY {
            return Err(ScheduleError::EveryTooShort);
        }
        Ok(Cadence::Every(d))
    }

    fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Cadence::Cron(c) => c.next_after(t),
            Cadence::Every(d) => {
                let p = period_ms(*d);
                Timestamp::from_millisecond(t.as_millisecond().div_euclid(p).checked_add(1)?.checked_mul(p)?).ok()
            }
        }
    }

    fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Cadence::Cron(c) => c.last_at_or_before(t),
            Cadence::Every(d) => {
                let p = period_ms(*d);
                Timestamp::from_millisecond(t.as_millisecond().div_euclid(p).checked_mul(p)?).ok()
            }
        }
    }
}

fn period_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// One schedule, as the daemon evaluates it.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Unique among the schedules; seeds the jitter.
    pub name: String,
    pub cadence: Cadence,
    /// Every due time is shifted by [`Schedule::jitter_offset`], in `[0, jitter)`.
    pub jitter: Duration,
    pub enabled: bool,
    /// How late a missed due time may still be run at start; `None`: never.
    pub catch_up: Option<Duration>,
}

/// What to do at daemon start about the due times that passed while it was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing came due since the last recorded firing (or nothing was ever recorded, or the
    /// schedule is disabled).
    UpToDate,
    /// Run once now, for the latest missed due time `due`; earlier missed ones are not run.
    RunNow { due: Timestamp },
    /// The latest missed due time is older than the `catch_up` window: record it as missed.
    Missed { due: Timestamp },
}

/// FNV-1a, 64 bits: a hash that no Rust release changes, so that the jitter of a schedule stays
/// the same from one build to the next.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

impl Schedule {
    /// The schedule's fixed shift of every due time: in `[0, jitter)` at millisecond
    /// resolution, chosen by the schedule's name.
    pub fn jitter_offset(&self) -> Duration {
        let j = self.jitter.as_millis();
        if j == 0 {
            return Duration::ZERO;
        }
        let j = u64::try_from(j).unwrap_or(u64::MAX);
        Duration::from_millis(fnv1a(self.name.as_bytes()) % j)
    }

    fn offset(&self) -> SignedDuration {
        SignedDuration::try_from(self.jitter_offset()).unwrap_or(SignedDuration::ZERO)
    }

    /// The first due time strictly after `t` (jitter included); `None` if the schedule never
    /// comes due again (a cron date that does not exist, such as 30 February).
    pub fn next_due(&self, t: Timestamp) -> Option<Timestamp> {
        let off = self.offset();
        let base = self.cadence.next_after(t.checked_sub(off).ok()?)?;
        base.checked_add(off).ok()
    }

    /// The last due time at or before `t` (jitter included).
    pub fn last_due(&self, t: Timestamp) -> Option<Timestamp> {
        let off = self.offset();
        let base = self.cadence.last_at_or_before(t.checked_sub(off).ok()?)?;
        base.checked_add(off).ok()
    }

    /// The catch-up decision at daemon start. `last` is the due time of the schedule's latest
    /// recorded firing (whatever its outcome); `now` is the start. At most one run: the latest
    /// missed due time, if it is within `catch_up` of `now`.
    pub fn catch_up(&self, last: Option<Timestamp>, now: Timestamp) -> CatchUp {
        let (Some(last), true) = (last, self.enabled) else {
            return CatchUp::UpToDate;
        };
        let Some(due) = self.last_due(now).filter(|d| *d > last) else {
            return CatchUp::UpToDate;
        };
        let late = now.duration_since(due);
        match self.catch_up {
            Some(window) if late <= SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX) => {
                CatchUp::RunNow { due }
            }
            _ => CatchUp::Missed { due },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cron(name: &str, expr: &str, zone: &str) -> Schedule {
        Schedule {
            name: name.to_string(),
            cadence: Cadence::Cron(Box::new(CronCadence::new(expr, zone).unwrap())),
            jitter: Duration::ZERO,
            enabled: true,
            catch_up: None,
        }
    }

    fn every(name: &str, d: Duration) -> Schedule {
        Schedule {
            name: name.to_string(),
            cadence: Cadence::every(d).unwrap(),
            jitter: Duration::ZERO,
            enabled: true,
            catch_up: None,
        }
    }

    /// The due times after `from`, `n` of them, each as RFC 3339 UTC.
    fn dues(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut at = t(from);
        (0..n)
            .map(|_| {
                at = s.next_due(at).unwrap();
                at.to_string()
            })
            .collect()
    }

    #[test]
    fn cron_in_utc_and_aliases() {
        let s = cron("a", "*/15 9-10 * * MON-FRI", "UTC");
        // 2026-12-04 is a Friday.
        assert_eq!(
            dues(&s, "2026-12-04T10:40:00Z", 3),
            ["2026-12-04T10:45:00Z", "2026-12-07T09:00:00Z", "2026-12-07T09:15:00Z"]
        );
        // Strictly after: a due time is not its own next.
        assert_eq!(s.next_due(t("2026-12-07T09:15:00Z")), Some(t("2026-12-07T09:30:00Z")));
        assert_eq!(s.next_due(t("2026-12-07T09:14:59.999Z")), Some(t("2026-12-07T09:15:00Z")));
        for (alias, want) in [
            ("@hourly", "2026-12-01T11:00:00Z"),
            ("@daily", "2026-12-02T00:00:00Z"),
            ("@weekly", "2026-12-06T00:00:00Z"),
            ("@monthly", "2027-01-01T00:00:00Z"),
            ("@yearly", "2027-01-01T00:00:00Z"),
        ] {
            assert_eq!(cron("a", alias, "UTC").next_due(t("2026-12-01T10:30:00Z")), Some(t(want)), "{alias}");
        }
    }

    #[test]
    fn cron_in_a_zone_follows_its_offset() {
        // 02:00 in New York is 07:00 UTC in winter (EST, -5).
        let s = cron("a", "0 2 * * *", "America/New_York");
        assert_eq!(dues(&s, "2026-12-01T00:00:00Z", 2), ["2026-12-01T07:00:00Z", "2026-12-02T07:00:00Z"]);
    }

    /// Europe/Berlin springs forward on 2026-03-29 (02:00 CET → 03:00 CEST) and falls back on
    /// 2026-10-25 (03:00 CEST → 02:00 CET).
    #[test]
    fn cron_across_daylight_saving_transitions() {
        let s = cron("a", "30 2 * * *", "Europe/Berlin");
        // 02:30 does not exist on 29 March: the run comes at the end of the gap, 03:00 CEST.
        assert_eq!(
            dues(&s, "2026-03-27T12:00:00Z", 3),
            ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
        );
        // 02:30 happens twice on 25 October: one run, at the first (CEST, +2).
        assert_eq!(
            dues(&s, "2026-10-23T12:00:00Z", 3),
            ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        // Looking back (the catch-up decision) finds the same instants.
        assert_eq!(s.last_due(t("2026-03-29T05:00:00Z")), Some(t("2026-03-29T01:00:00Z")));
        assert_eq!(s.last_due(t("2026-10-25T05:00:00Z")), Some(t("2026-10-25T00:30:00Z")));
        // An hourly schedule keeps firing once per real hour through the fall-back.
        let h = cron("a", "0 * * * *", "Europe/Berlin");
        assert_eq!(
            dues(&h, "2026-10-24T23:30:00Z", 3),
            ["2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"]
        );
    }

    #[test]
    fn every_is_aligned_to_the_epoch() {
        let s = every("a", Duration::from_secs(6 * 3600));
        assert_eq!(
            dues(&s, "2026-12-01T05:59:59Z", 3),
            ["2026-12-01T06:00:00Z", "2026-12-01T12:00:00Z", "2026-12-01T18:00:00Z"]
        );
        assert_eq!(s.next_due(t("2026-12-01T06:00:00Z")), Some(t("2026-12-01T12:00:00Z")));
        assert_eq!(s.last_due(t("2026-12-01T06:00:00Z")), Some(t("2026-12-01T06:00:00Z")));
        assert_eq!(s.last_due(t("2026-12-01T05:59:59Z")), Some(t("2026-12-01T00:00:00Z")));
        // Before 1970 too.
        let m = every("a", Duration::from_secs(90));
        assert_eq!(m.next_due(t("1969-12-31T23:58:00Z")), Some(t("1969-12-31T23:58:30Z")));
        assert_eq!(m.next_due(t("1969-12-31T23:59:00Z")), Some(t("1970-01-01T00:00:00Z")));
        assert_eq!(Cadence::every(Duration::from_millis(999)).unwrap_err(), ScheduleError::EveryTooShort);
    }

    #[test]
    fn jitter_is_a_fixed_offset_chosen_by_the_name() {
        let mut a = every("nightly-a", Duration::from_secs(3600));
        a.jitter = Duration::from_secs(600);
        let off = a.jitter_offset();
        assert!(off < Duration::from_secs(600));
        // The same name gives the same offset, in another process as in this one (FNV-1a).
        assert_eq!(off, Duration::from_millis(fnv1a(b"nightly-a") % 600_000));
        assert_eq!(a.clone().jitter_offset(), off);
        let base = t("2026-12-01T10:00:00Z");
        let due = a.next_due(base).unwrap();
        assert_eq!(due, t("2026-12-01T10:00:00Z") + SignedDuration::try_from(off).unwrap());
        // A due time is never its own next, jitter or not; the next is one period later.
        assert_eq!(a.next_due(due), Some(due + SignedDuration::from_hours(1)));
        assert_eq!(a.last_due(due), Some(due));
        // Other names spread out.
        let offsets: std::collections::BTreeSet<_> = (0..20)
            .map(|i| {
                let mut s = every(&format!("s{i}"), Duration::from_secs(3600));
                s.jitter = Duration::from_secs(600);
                s.jitter_offset()
            })
            .collect();
        assert!(offsets.len() >= 18, "{offsets:?}");
        assert_eq!(every("x", Duration::from_secs(60)).jitter_offset(), Duration::ZERO);
    }

    #[test]
    fn catch_up_runs_once_within_the_window_else_records_a_miss() {
        let mut s = cron("nightly", "0 2 * * *", "UTC");
        s.catch_up = Some(Duration::from_secs(3 * 3600));
        let last = Some(t("2026-11-28T02:00:00Z"));
        // Down for three nights, back at 04:00: the latest (02:00 today) is 2 h late, within 3 h.
        // One run, not three.
        assert_eq!(s.catch_up(last, t("2026-12-01T04:00:00Z")), CatchUp::RunNow { due: t("2026-12-01T02:00:00Z") });
        // Back at 05:00:00: exactly at the window's end still runs; one millisecond later not.
        assert_eq!(s.catch_up(last, t("2026-12-01T05:00:00Z")), CatchUp::RunNow { due: t("2026-12-01T02:00:00Z") });
        assert_eq!(s.catch_up(last, t("2026-12-01T05:00:00.001Z")), CatchUp::Missed { due: t("2026-12-01T02:00:00Z") });
        // The last firing already covers the latest due time.
        assert_eq!(s.catch_up(Some(t("2026-12-01T02:00:00Z")), t("2026-12-01T04:00:00Z")), CatchUp::UpToDate);
        // After a catch-up run is recorded for that due time, a second start does not run it again.
        assert_eq!(s.catch_up(Some(t("2026-12-01T02:00:00Z")), t("2026-12-01T04:30:00Z")), CatchUp::UpToDate);
        // No history: a new schedule starts from now.
        assert_eq!(s.catch_up(None, t("2026-12-01T04:00:00Z")), CatchUp::UpToDate);
        // Without a window, a miss is recorded.
        s.catch_up = None;
        assert_eq!(s.catch_up(last, t("2026-12-01T02:00:01Z")), CatchUp::Missed { due: t("2026-12-01T02:00:00Z") });
        // A disabled schedule catches nothing up.
        s.enabled = false;
        assert_eq!(s.catch_up(last, t("2026-12-01T04:00:00Z")), CatchUp::UpToDate);
    }

    #[test]
    fn catch_up_with_every_and_jitter() {
        let mut s = every("pulse", Duration::from_secs(600));
        s.jitter = Duration::from_secs(60);
        s.catch_up = Some(Duration::from_secs(120));
        let off = SignedDuration::try_from(s.jitter_offset()).unwrap();
        let due = t("2026-12-01T10:10:00Z") + off;
        let last = Some(t("2026-12-01T10:00:00Z") + off);
        assert_eq!(s.catch_up(last, due + SignedDuration::from_secs(119)), CatchUp::RunNow { due });
        assert_eq!(s.catch_up(last, due + SignedDuration::from_secs(121)), CatchUp::Missed { due });
        assert_eq!(s.catch_up(last, due - SignedDuration::from_secs(1)), CatchUp::UpToDate);
    }

    #[test]
    fn bad_cron_expressions_and_zones_are_refused() {
        let msg = |e: &str| CronCadence::new(e, "UTC").unwrap_err().to_string();
        assert_eq!(
            msg("0 2 * *"),
            "invalid cron expression `0 2 * *`: expected 5 fields (minute hour day-of-month month day-of-week), found 4"
        );
        assert_eq!(
            msg("0 0 2 * * *"),
            "invalid cron expression `0 0 2 * * *`: expected 5 fields (minute hour day-of-month month day-of-week), found 6"
        );
        assert!(msg("61 * * * *").starts_with("invalid cron expression `61 * * * *`: "), "{}", msg("61 * * * *"));
        assert_eq!(
            msg("@often"),
            "invalid cron expression `@often`: unknown alias: expected one of @hourly, @daily, @weekly, @monthly, @yearly, @annually"
        );
        assert_eq!(
            CronCadence::new("@daily", "Mars/Olympus").unwrap_err(),
            ScheduleError::UnknownTimeZone { name: "Mars/Olympus".into() }
        );
        // A date that never comes is refused; a leap day, which comes every four years, is not.
        assert_eq!(
            msg("0 0 30 2 *"),
            "invalid cron expression `0 0 30 2 *`: it matches no date at all (such as the 30th of February), so the schedule would never fire"
        );
        assert!(msg("0 0 31 4,6,9,11 *").contains("matches no date"));
        let leap = cron("a", "0 0 29 2 *", "UTC");
        assert_eq!(leap.next_due(t("2026-01-01T00:00:00Z")), Some(t("2028-02-29T00:00:00Z")));
    }
}
