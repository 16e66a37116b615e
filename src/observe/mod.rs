//! Observation: the steady-state hypothesis, stop conditions, time-to-detect and recovery,
//! evaluated over the per-second history of a run (load windows joined with backend samples).
//! Everything here is a pure function of that history, so it is tested without a clock.

use std::time::Duration;

use crate::backend::Sample;
use crate::load::Window;
use crate::scenario::{Check, Metric, StopCondition};

/// One second of a run: the load window that closed and the latest backend sample at that time.
#[derive(Debug, Clone, Default)]
pub struct Second {
    pub window: Window,
    pub sample: Option<Sample>,
}

/// The value of `metric` over `seconds`, aggregated the way the docs promise:
/// error rate is total errors over total requests; rps is the mean; latency percentiles are the
/// worst per-second value (every second must meet a latency check); target and task counts are
/// the lowest sampled value (they must hold throughout). `None` when nothing was observed.
pub fn metric_value(metric: Metric, seconds: &[Second]) -> Option<f64> {
    if seconds.is_empty() {
        return None;
    }
    let worst = |f: fn(&Window) -> f64| {
        seconds.iter().map(|s| f(&s.window)).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let lowest = |f: fn(&Sample) -> Option<u32>| {
        seconds.iter().filter_map(|s| s.sample.as_ref().and_then(f)).min().map(f64::from)
    };
    match metric {
        Metric::ErrorRate => {
            let (mut bad, mut all) = (0u64, 0u64);
            for s in seconds {
                bad += s.window.errors.total() + s.window.missed;
                all += s.window.requests + s.window.missed;
            }
            if all == 0 { None } else { Some(bad as f64 / all as f64) }
        }
        Metric::Rps => Some(seconds.iter().map(|s| s.window.requests as f64).sum::<f64>() / seconds.len() as f64),
        Metric::P50 => worst(|w| w.latency_ms.p50),
        Metric::P95 => worst(|w| w.latency_ms.p95),
        Metric::P99 => worst(|w| w.latency_ms.p99),
        Metric::HealthyTargets => lowest(|s| s.healthy_targets),
        Metric::RunningTasks => lowest(|s| s.running_tasks),
    }
}

/// The outcome of one check over a span of seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub check: Check,
    pub value: Option<f64>,
    pub ok: bool,
}

/// Evaluates every check over `seconds`; a check whose metric was not observed does not hold.
pub fn evaluate(checks: &[Check], seconds: &[Second]) -> Vec<CheckOutcome> {
    checks
        .iter()
        .map(|c| {
            let value = metric_value(c.metric, seconds);
            CheckOutcome { check: c.clone(), value, ok: value.is_some_and(|v| c.cmp.holds(v)) }
        })
        .collect()
}

pub fn all_hold(outcomes: &[CheckOutcome]) -> bool {
    outcomes.iter().all(|o| o.ok)
}

/// A check rendered as written: `error_rate < 1%`.
pub fn describe_check(c: &Check) -> String {
    format!("{} {} {}", c.metric.name(), c.cmp.op.symbol(), format_value(c.metric, c.cmp.value))
}

/// A metric value in display units: `0.4%`, `212ms`, `3`.
pub fn format_value(metric: Metric, v: f64) -> String {
    match metric {
        Metric::ErrorRate => {
            let p = v * 100.0;
            if p == p.trunc() { format!("{p:.0}%") } else { format!("{p:.2}%") }
        }
        Metric::P50 | Metric::P95 | Metric::P99 => {
            if v >= 100.0 {
                format!("{v:.0}ms")
            } else {
                format!("{v:.1}ms")
            }
        }
        Metric::Rps => format!("{v:.0}/s"),
        Metric::HealthyTargets | Metric::RunningTasks => format!("{v:.0}"),
    }
}

/// (value in display units, unit) for the report tables.
pub fn display_units(metric: Metric, v: f64) -> (f64, &'static str) {
    match metric {
        Metric::ErrorRate => (v * 100.0, "%"),
        Metric::P50 | Metric::P95 | Metric::P99 => (v, "ms"),
        Metric::Rps => (v, "/s"),
        Metric::HealthyTargets | Metric::RunningTasks => (v, ""),
    }
}

/// Watches threshold stop conditions second by second.
#[derive(Debug, Default)]
pub struct StopWatch {
    /// For each threshold condition: consecutive seconds it has held.
    streaks: Vec<u32>,
}

impl StopWatch {
    /// Feeds the newest second (`history` includes it); returns the text of a condition that
    /// tripped. A threshold trips when its comparison held in every second of its window.
    pub fn observe(&mut self, conditions: &[StopCondition], history: &[Second]) -> Option<String> {
        self.streaks.resize(conditions.len(), 0);
        let last = history.last()?;
        let mut tripped = None;
        for (i, c) in conditions.iter().enumerate() {
            if let StopCondition::Threshold { metric, cmp, window, text } = c {
                let v = metric_value(*metric, std::slice::from_ref(last));
                if v.is_some_and(|v| cmp.holds(v)) {
                    self.streaks[i] += 1;
                } else {
                    self.streaks[i] = 0;
                }
                let need = window.as_secs().max(1) as u32;
                if self.streaks[i] >= need && tripped.is_none() {
                    let shown = v.map(|v| format_value(*metric, v)).unwrap_or_default();
                    tripped = Some(format!("{text} (now {shown})"));
                }
            }
        }
        tripped
    }
}

/// The first second `s >= from` at which the steady state holds over `[s, s + hold)`, looking at
/// the seconds observed so far. This is when the service counts as recovered.
pub fn recovered_at(checks: &[Check], history: &[Second], from: u32, hold: Duration) -> Option<u32> {
    let hold = hold.as_secs().max(1) as usize;
    let start = history.iter().position(|s| s.window.second >= from)?;
    (start..history.len())
        .filter(|&i| i + hold <= history.len())
        .find(|&i| all_hold(&evaluate(checks, &history[i..i + hold])))
        .map(|i| history[i].window.second)
}

/// The tightest bound a latency check (`p50`, `p95`, `p99` below a value) puts on a request: a
/// request slower than this breaks it, for the time to detect.
pub fn latency_bound(checks: &[Check]) -> Option<Duration> {
    checks
        .iter()
        .filter(|c| matches!(c.metric, Metric::P50 | Metric::P95 | Metric::P99))
        .filter(|c| matches!(c.cmp.op, crate::scenario::Op::Lt | crate::scenario::Op::Le))
        .map(|c| c.cmp.value)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .reduce(f64::min)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
}

/// How long after `t` the steady state broke, read from the requests: of the requests that
/// completed in `broken` (the first broken second) and broke it (failed, when its `error_rate`
/// check failed; slower than a latency check's bound, when that check failed), the first one
/// due at or after `t`, timed from when it was due. When the break was not in the requests (the
/// target counts), or none of them was noted, from the start of that second.
pub fn detected_after(checks: &[Check], history: &[Second], t: f64, broken: u32) -> f64 {
    let since_second = (f64::from(broken) - t).max(0.0);
    let Some(second) = history.iter().find(|s| s.window.second == broken) else { return since_second };
    let failing = evaluate(checks, std::slice::from_ref(second));
    let failed = |m: fn(Metric) -> bool| failing.iter().any(|o| !o.ok && m(o.check.metric));
    let errors = failed(|m| m == Metric::ErrorRate);
    let slow = failed(|m| matches!(m, Metric::P50 | Metric::P95 | Metric::P99));
    let from = (t * 1000.0).ceil().max(0.0) as u32;
    let w = &second.window;
    let noted = errors.then_some(&w.failed_at_ms[..]).into_iter().chain(slow.then_some(&w.slow_at_ms[..]));
    match noted.flat_map(|list| list.iter().copied()).filter(|ms| *ms >= from).min() {
        Some(ms) => (f64::from(ms) / 1000.0 - t).max(0.0),
        None => since_second,
    }
}

/// Whether one second's own window breaks the steady state.
fn breaks(checks: &[Check], s: &Second) -> bool {
    !all_hold(&evaluate(checks, std::slice::from_ref(s)))
}

/// The seconds in `[from, until)` at which a break begins: broken, and the second before held
/// (or is not in the history).
fn onsets<'a>(checks: &'a [Check], history: &'a [Second], from: u32, until: f64) -> impl Iterator<Item = u32> + 'a {
    history.iter().enumerate().filter_map(move |(i, s)| {
        let second = s.window.second;
        let held_before = i == 0 || history[i - 1].window.second + 1 != second || !breaks(checks, &history[i - 1]);
        (second >= from && f64::from(second) < until && breaks(checks, s) && held_before).then_some(second)
    })
}

/// What one disruption did to the steady state, in seconds of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    /// The steady state was broken already in the second before the disruption began: the
    /// disruption has no break of its own.
    pub already_broken: bool,
    /// The first broken second from the disruption's start until `until` (see [`effect`]).
    pub broken: Option<u32>,
    /// The first second from which the steady state held for `hold` again: after the last
    /// break that began before `until`, or after the disruption's end when it was broken
    /// already.
    pub restored: Option<u32>,
}

/// The effect of a disruption from `start` to `end`: a break counts as its effect when it begins
/// before `until` (its end plus `recovery.within`, or the next disruption if sooner). A break
/// may begin well after the disruption itself (the balancer takes its health checks to notice a
/// dead task): the seconds before it never count as restored. A break that begins in the
/// second of the disruption's start but is `claimed` by an earlier disruption of that second is
/// that one's: this one started into a broken service.
pub fn effect(
    checks: &[Check],
    history: &[Second],
    (start, end, until): (f64, f64, f64),
    hold: Duration,
    claimed: &[u32],
) -> Effect {
    let first = start.floor() as u32;
    let before = history.iter().find(|s| first > 0 && s.window.second == first - 1);
    let begun: Vec<u32> = onsets(checks, history, first, until).collect();
    let already_broken =
        before.is_some_and(|s| breaks(checks, s)) || begun.first().is_some_and(|b| claimed.contains(b));
    let last = begun.last().copied();
    if already_broken {
        let from = (end.ceil() as u32).max(first).max(last.unwrap_or(0));
        return Effect { already_broken, broken: None, restored: recovered_at(checks, history, from, hold) };
    }
    let restored = last.and_then(|b| recovered_at(checks, history, b, hold));
    Effect { already_broken, broken: begun.first().copied(), restored }
}

/// When the service counts as restored after the disruptions from second `first` to `end`:
/// the first second from which the steady state holds for `hold`, at or after `end` and after
/// the last break that began before `until` (the end plus `recovery.within`). A break that
/// begins after the last disruption ended (a dead task the balancer notices late) is waited
/// for: the steady seconds before it are not a recovery.
pub fn restored_after(
    checks: &[Check],
    history: &[Second],
    first: u32,
    end: f64,
    until: f64,
    hold: Duration,
) -> Option<u32> {
    let last_break = onsets(checks, history, first, until).last().unwrap_or(0);
    recovered_at(checks, history, (end.ceil() as u32).max(last_break), hold)
}

/// The first second at or after `from` whose own window breaks the steady state.
pub fn first_broken(checks: &[Check], history: &[Second], from: u32) -> Option<u32> {
    history
        .iter()
        .filter(|s| s.window.second >= from)
        .find(|s| !all_hold(&evaluate(checks, std::slice::from_ref(*s))))
        .map(|s| s.window.second)
}

/// The worst second at or after `from`: highest error rate, then highest p95.
pub fn worst_second(history: &[Second], from: u32) -> Option<&Second> {
    history.iter().filter(|s| s.window.second >= from).max_by(|a, b| {
        let ka = (a.window.error_rate(), a.window.latency_ms.p95);
        let kb = (b.window.error_rate(), b.window.latency_ms.p95);
        ka.partial_cmp(&kb).unwrap_or(std::cmp::Ordering::Equal)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{ErrorCounts, Latency};
    use crate::scenario::{Comparison, Op};

    fn sec(second: u32, requests: u64, errors: u64, p95: f64, healthy: u32) -> Second {
        Second {
            window: Window {
                second,
                requests,
                errors: ErrorCounts { status_502: errors, ..Default::default() },
                latency_ms: Latency { p95, ..Default::default() },
                ..Default::default()
            },
            sample: Some(Sample { healthy_targets: Some(healthy), ..Default::default() }),
        }
    }

    fn checks() -> Vec<Check> {
        vec![
            Check { metric: Metric::ErrorRate, cmp: Comparison { op: Op::Lt, value: 0.01 } },
            Check { metric: Metric::P95, cmp: Comparison { op: Op::Lt, value: 250.0 } },
            Check { metric: Metric::HealthyTargets, cmp: Comparison { op: Op::Ge, value: 2.0 } },
        ]
    }

    #[test]
    fn error_rate_is_aggregated_latency_is_worst_and_counts_are_lowest() {
        let s = [sec(0, 100, 0, 10.0, 3), sec(1, 100, 1, 300.0, 2)];
        assert_eq!(metric_value(Metric::ErrorRate, &s), Some(0.005));
        assert_eq!(metric_value(Metric::P95, &s), Some(300.0));
        assert_eq!(metric_value(Metric::HealthyTargets, &s), Some(2.0));
        assert_eq!(metric_value(Metric::Rps, &s), Some(100.0));
        assert_eq!(metric_value(Metric::RunningTasks, &s), None);
    }

    #[test]
    fn unobserved_metric_does_not_hold() {
        let c = [Check { metric: Metric::RunningTasks, cmp: Comparison { op: Op::Ge, value: 1.0 } }];
        assert!(!all_hold(&evaluate(&c, &[sec(0, 10, 0, 1.0, 3)])));
    }

    #[test]
    fn threshold_trips_only_after_its_whole_window() {
        let cond = [StopCondition::Threshold {
            metric: Metric::ErrorRate,
            cmp: Comparison { op: Op::Gt, value: 0.5 },
            window: Duration::from_secs(3),
            text: "error_rate > 50% for 3s".into(),
        }];
        let mut w = StopWatch::default();
        let mut h = vec![];
        for (i, errors) in [90, 90, 10, 90, 90].into_iter().enumerate() {
            h.push(sec(i as u32, 100, errors, 1.0, 3));
            assert_eq!(w.observe(&cond, &h), None, "second {i}");
        }
        h.push(sec(5, 100, 90, 1.0, 3));
        assert!(w.observe(&cond, &h).unwrap().starts_with("error_rate > 50% for 3s (now 90%)"));
    }

    #[test]
    fn recovery_needs_the_whole_hold_and_detection_finds_first_broken_second() {
        let mut h: Vec<Second> = (0..10).map(|i| sec(i, 100, 0, 5.0, 3)).collect();
        h[4] = sec(4, 100, 50, 5.0, 1);
        h[5] = sec(5, 100, 0, 5.0, 1);
        assert_eq!(first_broken(&checks(), &h, 3), Some(4));
        assert_eq!(recovered_at(&checks(), &h, 4, Duration::from_secs(3)), Some(6));
        assert_eq!(recovered_at(&checks(), &h, 4, Duration::from_secs(5)), None);
        assert_eq!(worst_second(&h, 3).unwrap().window.second, 4);
    }

    /// Seconds 0.. of 100 requests each; the seconds in `broken` with half of them failing.
    fn history(n: u32, broken: &[u32]) -> Vec<Second> {
        (0..n).map(|i| sec(i, 100, if broken.contains(&i) { 50 } else { 0 }, 5.0, 3)).collect()
    }

    #[test]
    fn detection_is_the_first_request_due_after_the_fault_among_those_that_broke_the_second() {
        let mut h = history(30, &[20, 21]);
        h[20].window.failed_at_ms = vec![19_990, 20_250, 20_260].into();
        h[20].window.slow_at_ms = vec![20_100].into();
        // error_rate broke second 20: its first failed request due after 20.2 s.
        assert!((detected_after(&checks(), &h, 20.2, 20) - 0.05).abs() < 1e-9);
        // Slow requests do not count when no latency check failed.
        assert!((detected_after(&checks(), &h, 20.0, 20) - 0.25).abs() < 1e-9);
        // A latency break is read from the slow requests.
        h[20].window.errors = Default::default();
        h[20].window.latency_ms.p95 = 400.0;
        assert!((detected_after(&checks(), &h, 20.0, 20) - 0.1).abs() < 1e-9);
        // A break in the target counts only: from the start of the broken second.
        h[20].window.latency_ms.p95 = 5.0;
        h[20].sample = Some(Sample { healthy_targets: Some(1), ..Default::default() });
        assert!((detected_after(&checks(), &h, 19.4, 20) - 0.6).abs() < 1e-9);
        assert_eq!(latency_bound(&checks()), Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_break_that_begins_after_the_disruption_is_its_effect_and_waited_for() {
        // A kill at 20 whose dead task the balancer notices at 22: broken 22..=25.
        let h = history(40, &[22, 23, 24, 25]);
        let hold = Duration::from_secs(2);
        let e = effect(&checks(), &h, (20.0, 20.0, 50.0), hold, &[]);
        assert_eq!(e, Effect { already_broken: false, broken: Some(22), restored: Some(26) });
        // The run's recovery is searched after that break, not from 20 (which held for 2 s).
        assert_eq!(recovered_at(&checks(), &h, 20, hold), Some(20), "the figure this fixes");
        assert_eq!(restored_after(&checks(), &h, 20, 20.0, 50.0, hold), Some(26));
        // A break that begins after the window is not the fault's.
        let e = effect(&checks(), &h, (20.0, 20.0, 22.0), hold, &[]);
        assert_eq!(e, Effect { already_broken: false, broken: None, restored: None });
        assert_eq!(restored_after(&checks(), &h, 20, 20.0, 22.0, hold), Some(20));
    }

    #[test]
    fn a_disruption_into_a_broken_service_is_timed_from_its_end() {
        // A drift breaks 10..=23; the redeploy at 20 fixes it, restored from 24.
        let broken: Vec<u32> = (10..24).collect();
        let h = history(40, &broken);
        let hold = Duration::from_secs(3);
        let drift = effect(&checks(), &h, (10.0, 20.0, 20.0), hold, &[]);
        assert_eq!(drift, Effect { already_broken: false, broken: Some(10), restored: Some(24) });
        let redeploy = effect(&checks(), &h, (20.0, 20.0, 50.0), hold, &[]);
        assert_eq!(redeploy, Effect { already_broken: true, broken: None, restored: Some(24) });
        assert_eq!(restored_after(&checks(), &h, 10, 20.0, 50.0, hold), Some(24));
        // A second fault injected in the second the first one broke: the break is the first's.
        let kill = effect(&checks(), &h, (10.0, 10.0, 10.5), hold, &[]);
        assert_eq!(kill.broken, Some(10));
        let second = effect(&checks(), &h, (10.5, 12.0, 20.0), hold, &[10]);
        assert_eq!(second, Effect { already_broken: true, broken: None, restored: Some(24) });
        // A fault that broke nothing.
        let calm = history(40, &[]);
        assert_eq!(effect(&checks(), &calm, (10.0, 13.0, 43.0), hold, &[]).broken, None);
        assert_eq!(restored_after(&checks(), &calm, 10, 13.0, 43.0, hold), Some(13));
    }
}
