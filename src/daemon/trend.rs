//! A scenario's trend: its finished runs over time (verdict, time-to-detect, MTTR) and the
//! runs that are *regressions*. What `GET /v1/scenarios/{name}/trend` returns, and what the
//! run manager asks about a run that just ended (to post a regression alert).
//!
//! The rule (docs/daemon.md, "Trends and regressions"):
//! - only runs with a verdict about the service count: `passed`, `failed`, `aborted` and
//!   `revert-failed`; `interrupted`, `error` and `precondition-failed` runs are shown but
//!   neither are regressions nor break a streak;
//! - **now fails**: a run that failed (`failed`, `aborted`, `revert-failed`) whose previous
//!   counted run passed. A scenario that keeps failing is flagged once, at the first failure;
//! - **slower recovery**: a run with an MTTR above its *normal*, the median MTTR of the last
//!   [`BASELINE_RUNS`] passing runs before it, plus a margin of the larger of
//!   [`MARGIN_RATIO`] of that median and [`MARGIN_MIN`]; judged only once at least
//!   [`MIN_BASELINE`] passing runs with an MTTR came before it.

use std::time::Duration;

use serde::Serialize;

use super::store::{RunState, Store, StoreError, StoredRun, Trigger};

/// The passing runs the normal MTTR is the median of.
pub const BASELINE_RUNS: usize = 10;
/// No MTTR regression is flagged with fewer passing runs than this before the run.
pub const MIN_BASELINE: usize = 3;
/// The margin above the normal MTTR: this share of it...
pub const MARGIN_RATIO: f64 = 0.25;
/// ...but never less than this.
pub const MARGIN_MIN: Duration = Duration::from_secs(5);

/// Runs in a trend when the caller does not say.
pub const DEFAULT_RUNS: usize = 50;
/// At most this many runs in a trend.
pub const MAX_RUNS: usize = 500;

/// Why a run is a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegressionKind {
    /// It failed where the previous run passed.
    NowFails,
    /// It recovered more slowly than its normal.
    SlowerRecovery,
}

/// A run flagged as a regression, and why, in words a person reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Regression {
    pub kind: RegressionKind,
    pub message: String,
    /// The run it is compared with: the previous passing run (`now-fails`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_run: Option<String>,
    /// The normal MTTR and the limit it was held to (`slower-recovery`), in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normal_mttr_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_mttr_s: Option<f64>,
}

/// One run of a trend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPoint {
    pub id: String,
    pub state: RunState,
    pub trigger: Trigger,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub time_to_detect_s: Option<f64>,
    pub mttr_s: Option<f64>,
    pub regression: Option<Regression>,
}

/// A scenario's trend, the JSON of `GET /v1/scenarios/{name}/trend`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub scenario: String,
    /// Oldest first, at most the number asked for (the newest of them).
    pub runs: Vec<TrendPoint>,
    /// Among `runs`: how many passed, and how many counted runs failed.
    pub passed: usize,
    pub failed: usize,
    /// The normal MTTR a next run is held to, and the limit (normal plus margin), in seconds;
    /// `None` until enough passing runs have an MTTR.
    pub normal_mttr_s: Option<f64>,
    pub limit_mttr_s: Option<f64>,
    /// The newest run's regression, if it is one: the flag a dashboard shows.
    pub regression: Option<Regression>,
}

fn counted(s: RunState) -> bool {
    matches!(s, RunState::Passed | RunState::Failed | RunState::Aborted | RunState::RevertFailed)
}

fn fails(s: RunState) -> bool {
    counted(s) && s != RunState::Passed
}

/// The median of a non-empty list.
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2 }
}

/// The normal MTTR and its limit, from the passing runs before a run (oldest first).
fn baseline(before: &[StoredRun]) -> Option<(Duration, Duration)> {
    let recent: Vec<Duration> = before
        .iter()
        .rev()
        .filter(|r| r.state == RunState::Passed)
        .filter_map(|r| r.mttr)
        .take(BASELINE_RUNS)
        .collect();
    if recent.len() < MIN_BASELINE {
        return None;
    }
    let normal = median(recent);
    let margin = normal.mul_f64(MARGIN_RATIO).max(MARGIN_MIN);
    Some((normal, normal + margin))
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Whether `run` is a regression, given the finished runs of its scenario before it (oldest
/// first).
pub fn judge(run: &StoredRun, before: &[StoredRun]) -> Option<Regression> {
    if fails(run.state) {
        let previous = before.iter().rev().find(|r| counted(r.state))?;
        return (previous.state == RunState::Passed).then(|| Regression {
            kind: RegressionKind::NowFails,
            message: format!("{} now ends {}: its previous run {} passed", run.scenario, run.state, previous.id),
            previous_run: Some(previous.id.clone()),
            normal_mttr_s: None,
            limit_mttr_s: None,
        });
    }
    let mttr = run.mttr?;
    let (normal, limit) = baseline(before)?;
    (mttr > limit).then(|| Regression {
        kind: RegressionKind::SlowerRecovery,
        message: format!(
            "{} recovered in {:.1} s, past its normal {:.1} s (median of its last passing runs) plus margin: limit {:.1} s",
            run.scenario,
            mttr.as_secs_f64(),
            normal.as_secs_f64(),
            limit.as_secs_f64()
        ),
        previous_run: None,
        normal_mttr_s: Some(secs(normal)),
        limit_mttr_s: Some(secs(limit)),
    })
}

/// Runs needed before the oldest shown one so that its flag has its full history.
const LOOKBACK: usize = 200;

/// The trend of `scenario`'s newest `limit` finished runs (0 means [`DEFAULT_RUNS`], at most
/// [`MAX_RUNS`]). A scenario without finished runs has an empty trend.
pub fn trend(store: &Store, scenario: &str, limit: usize) -> Result<Trend, StoreError> {
    let limit = match limit {
        0 => DEFAULT_RUNS,
        n => n.min(MAX_RUNS),
    };
    let mut runs = store.finished_runs(scenario, limit + LOOKBACK)?;
    runs.reverse();
    let first = runs.len().saturating_sub(limit);
    let points: Vec<TrendPoint> = (first..runs.len())
        .map(|i| {
            let r = &runs[i];
            TrendPoint {
                id: r.id.clone(),
                state: r.state,
                trigger: r.trigger,
                started_at: r.started_at.to_string(),
                finished_at: r.finished_at.map(|t| t.to_string()),
                time_to_detect_s: r.time_to_detect.map(secs),
                mttr_s: r.mttr.map(secs),
                regression: judge(r, &runs[..i]),
            }
        })
        .collect();
    let base = baseline(&runs);
    Ok(Trend {
        scenario: scenario.to_string(),
        passed: points.iter().filter(|p| p.state == RunState::Passed).count(),
        failed: points.iter().filter(|p| fails(p.state)).count(),
        normal_mttr_s: base.map(|b| secs(b.0)),
        limit_mttr_s: base.map(|b| secs(b.1)),
        regression: points.last().and_then(|p| p.regression.clone()),
        runs: points,
    })
}

/// Whether the finished run `id` is a regression of its scenario: what the run manager asks
/// when a run ends, to post the alert. `Ok(None)` for a run that is not one (or still running).
pub fn regression_of(store: &Store, id: &str) -> Result<Option<Regression>, StoreError> {
    let run = store.run(id)?.ok_or_else(|| StoreError::NoSuchRun(id.to_string()))?;
    if run.state == RunState::Running {
        return Ok(None);
    }
    let mut runs = store.finished_runs(&run.scenario, LOOKBACK)?;
    runs.reverse();
    let Some(at) = runs.iter().position(|r| r.id == id) else {
        return Ok(None);
    };
    Ok(judge(&runs[at], &runs[..at]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::store::{NewRun, RunEnd};
    use jiff::{SignedDuration, Timestamp};

    fn open_temp() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("history.db")).unwrap();
        (dir, store)
    }

    /// Adds finished runs of `scenario`, one hour apart from `from`, as `(state, mttr seconds)`;
    /// returns their ids.
    fn add(store: &Store, scenario: &str, from: usize, runs: &[(RunState, Option<u64>)]) -> Vec<String> {
        let base: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        runs.iter()
            .enumerate()
            .map(|(i, (state, mttr))| {
                let id = format!("{scenario}-{:03}", from + i);
                let started = base + SignedDuration::from_hours((from + i) as i64);
                store
                    .insert_run(&NewRun {
                        id: id.clone(),
                        scenario: scenario.into(),
                        target: "lab:api".into(),
                        trigger: Trigger::Schedule,
                        schedule: Some("nightly".into()),
                        started_at: started,
                        blind: false,
                    })
                    .unwrap();
                store
                    .finish_run(
                        &id,
                        &RunEnd {
                            state: *state,
                            finished_at: started + SignedDuration::from_mins(5),
                            time_to_detect: mttr.map(|_| Duration::from_millis(2500)),
                            mttr: mttr.map(Duration::from_secs),
                            record: None,
                        },
                    )
                    .unwrap();
                id
            })
            .collect()
    }

    const P: RunState = RunState::Passed;

    #[test]
    fn trend_lists_runs_oldest_first_with_their_figures() {
        let (_dir, store) = open_temp();
        add(&store, "task-kill", 0, &[(P, Some(20)), (RunState::Failed, None), (P, Some(22))]);
        add(&store, "other", 0, &[(RunState::Failed, None)]);
        // A running run is not part of the trend.
        store
            .insert_run(&NewRun {
                id: "live".into(),
                scenario: "task-kill".into(),
                target: "lab:api".into(),
                trigger: Trigger::Api,
                schedule: None,
                started_at: "2026-12-01T00:00:00Z".parse().unwrap(),
                blind: false,
            })
            .unwrap();
        let t = trend(&store, "task-kill", 0).unwrap();
        let ids: Vec<_> = t.runs.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["task-kill-000", "task-kill-001", "task-kill-002"]);
        assert_eq!((t.passed, t.failed), (2, 1));
        assert_eq!(t.runs[0].mttr_s, Some(20.0));
        assert_eq!(t.runs[0].time_to_detect_s, Some(2.5));
        assert_eq!(t.runs[0].started_at, "2026-11-01T00:00:00Z");
        assert_eq!(t.runs[1].regression.as_ref().map(|r| r.kind), Some(RegressionKind::NowFails));
        assert_eq!(t.regression, None, "the newest run passed");
        // The JSON the API returns.
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["runs"][1]["state"], "failed");
        assert_eq!(v["runs"][1]["regression"]["kind"], "now-fails");
        assert_eq!(v["runs"][1]["regression"]["previous_run"], "task-kill-000");
        assert!(v["runs"][0]["regression"].is_null());

        assert!(trend(&store, "nothing", 0).unwrap().runs.is_empty());
        // A limit keeps the newest runs, and their flags still see the older ones.
        let t = trend(&store, "task-kill", 2).unwrap();
        assert_eq!(t.runs.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["task-kill-001", "task-kill-002"]);
        assert!(t.runs[0].regression.is_some());
    }

    #[test]
    fn a_failure_after_a_pass_is_flagged_once_and_not_after_a_failure() {
        let (_dir, store) = open_temp();
        let ids = add(
            &store,
            "s",
            0,
            &[
                (RunState::Failed, None),       // no previous run: not a regression
                (P, Some(10)),                  //
                (RunState::Interrupted, None),  // neither counts nor breaks the streak
                (RunState::Aborted, None),      // regression: the previous counted run passed
                (RunState::Failed, None),       // still failing: not flagged again
                (RunState::Error, None),        //
                (P, Some(10)),                  //
                (RunState::RevertFailed, None), // regression
            ],
        );
        let t = trend(&store, "s", 0).unwrap();
        let flagged: Vec<_> = t.runs.iter().filter(|p| p.regression.is_some()).map(|p| p.id.clone()).collect();
        assert_eq!(flagged, [ids[3].clone(), ids[7].clone()]);
        assert_eq!(t.regression.as_ref().unwrap().previous_run.as_deref(), Some(ids[6].as_str()));
        assert_eq!(
            t.regression.unwrap().message,
            format!("s now ends revert-failed: its previous run {} passed", ids[6])
        );
        assert_eq!(regression_of(&store, &ids[3]).unwrap().map(|r| r.kind), Some(RegressionKind::NowFails));
        assert_eq!(regression_of(&store, &ids[4]).unwrap(), None);
        assert!(matches!(regression_of(&store, "nope"), Err(StoreError::NoSuchRun(_))));
    }

    #[test]
    fn mttr_past_the_median_plus_margin_is_flagged_and_noise_is_not() {
        let (_dir, store) = open_temp();
        // Normal around 20 s: median 20, margin max(5 s, 25%) = 5 s, limit 25 s.
        let noisy = [18, 22, 20, 21, 19, 23, 20, 17];
        let runs: Vec<_> = noisy.iter().map(|m| (P, Some(*m))).collect();
        add(&store, "s", 0, &runs);
        let t = trend(&store, "s", 0).unwrap();
        assert!(t.runs.iter().all(|p| p.regression.is_none()), "noise within 25% is not a regression");
        assert_eq!((t.normal_mttr_s, t.limit_mttr_s), (Some(20.0), Some(25.0)));

        let ids = add(&store, "s", 8, &[(P, Some(25)), (P, Some(26))]);
        assert_eq!(regression_of(&store, &ids[0]).unwrap(), None, "at the limit is not past it");
        let r = regression_of(&store, &ids[1]).unwrap().expect("26 s is past 25 s");
        assert_eq!((r.kind, r.normal_mttr_s, r.limit_mttr_s), (RegressionKind::SlowerRecovery, Some(20.0), Some(25.0)));
        assert_eq!(
            r.message,
            "s recovered in 26.0 s, past its normal 20.0 s (median of its last passing runs) plus margin: limit 25.0 s"
        );
    }

    #[test]
    fn the_margin_is_a_share_of_a_long_normal_and_needs_a_baseline() {
        let (_dir, store) = open_temp();
        // Too few passing runs to judge: nothing flagged however slow.
        let ids = add(&store, "s", 0, &[(P, Some(100)), (P, Some(100)), (P, Some(900))]);
        assert_eq!(regression_of(&store, &ids[2]).unwrap(), None);
        // Median of the last 10 passing runs (the 900 s one included): 100 s; margin 25 s.
        let ids = add(&store, "s", 3, &[(P, Some(100)), (P, Some(125)), (P, Some(126))]);
        assert_eq!(regression_of(&store, &ids[1]).unwrap(), None);
        let r = regression_of(&store, &ids[2]).unwrap().unwrap();
        assert_eq!(r.limit_mttr_s, Some(125.0));
        // Only the last 10 passing runs count: after ten runs of 300 s, 300 s is normal.
        let slow: Vec<_> = (0..10).map(|_| (P, Some(300))).collect();
        add(&store, "s", 6, &slow);
        let t = trend(&store, "s", 0).unwrap();
        assert_eq!(t.normal_mttr_s, Some(300.0));
        assert_eq!(t.limit_mttr_s, Some(375.0));
    }

    #[test]
    fn median_of_even_and_odd_lists() {
        let d = Duration::from_secs;
        assert_eq!(median(vec![d(3), d(1), d(2)]), d(2));
        assert_eq!(median(vec![d(4), d(1), d(2), d(3)]), Duration::from_millis(2500));
    }
}
