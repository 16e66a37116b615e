//! The run record: everything a report is rendered from, stored as `report.json`.
//! Versioned by [`SCHEMA_VERSION`]; documented in `docs/report-json.md`, with the JSON Schema
//! generated from these types committed as `docs/report.schema.json`.
//!
//! The record carries no secret values by construction: faults name secrets by id, never by
//! value. Writers still pass every string through [`crate::report::redact`] as a second line of
//! defence (a service event or a note may quote what a process printed).
//!
//! Compatibility: within one schema version, fields are only ever added, each with a default,
//! so that `siege report` can re-render an older `report.json` of the same version. Version 2
//! added the marks (`marks`, `faults[].human`, the `mark` timeline kind) to version 1, with
//! defaults: a version 1 file reads as a version 2 file without marks. Version 3 added what
//! `siege compare` needs (`scenario.hash`, `scenario.target_size`, `scenario.load_schedule`,
//! `scenario.fault_plan`, `phases`); older files read without them, and `siege compare`
//! refuses them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::load::{ErrorCounts, Latency};
pub use crate::vocab::{Mark, MarkKind, Outcome};

/// Version of the `report.json` layout; bumped on any change that is not a pure addition.
pub const SCHEMA_VERSION: u32 = 4;

/// The oldest `report.json` layout this siege still reads (see the module's compatibility note).
pub const OLDEST_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// One finished run: what `report.json` holds and every report is rendered from.
pub struct RunRecord {
    /// Layout version of this record ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Unique id of the run; also in journal entries, FIS tags and ECS stop reasons.
    pub run_id: String,
    pub scenario: ScenarioInfo,
    /// RFC 3339 UTC, e.g. `2026-11-22T03:04:05Z`.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub finished_at: String,
    /// Seed of the random selections; rerun with `seed:` to select the same targets.
    pub seed: u64,
    pub verdict: Verdict,
    /// Time to detect, time to recover and the deadlines, in seconds on the load's clock.
    pub timings: Timings,
    /// The worst one-second window after the first fault (highest error rate, then p95).
    pub worst_window: Option<WindowRecord>,
    /// One entry per steady-state check, observed before the faults and after recovery.
    pub steady_state: Vec<CheckRecord>,
    /// What happened, in order: phases, stages, faults, stop conditions, events and notes.
    pub timeline: Vec<TimelineEntry>,
    /// Every fault of the scenario, with what it hit and whether it was reverted.
    pub faults: Vec<FaultRecord>,
    /// What people said during the run (detected, mitigated, notes), in the order received.
    #[serde(default)]
    pub marks: Vec<Mark>,
    /// One entry per second of load, with the samples taken in it.
    pub windows: Vec<WindowRecord>,
    /// The run in three phases (baseline, faults, recovery): counts and the merged latency
    /// histogram of each. Empty in files before v3.
    #[serde(default)]
    pub phases: Vec<PhaseRecord>,
    /// Totals of the load over the whole run.
    pub load: LoadTotals,
    /// Questions from the scenario or the engine; the report adds defaults per fault type.
    pub debrief_questions: Vec<String>,
    /// Non-fatal problems met during the run (a sampler that failed, a slow revert…).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// Which scenario ran, against what.
pub struct ScenarioInfo {
    pub name: String,
    pub description: Option<String>,
    /// Scenario file as given on the command line.
    pub file: String,
    /// Runbook path relative to the report directory (for the markdown link), if any.
    pub runbook: Option<String>,
    /// `lab` or `aws`.
    pub target: String,
    /// Service under test.
    pub service: String,
    /// `sha256:` and the hex SHA-256 of the validated scenario's canonical JSON, without where a
    /// separately started target listens (`target.lab.control`, `target.aws.endpoint`): equal for
    /// every run of the same scenario content with the same siege. `null` in files before v3.
    #[serde(default)]
    pub hash: Option<String>,
    /// Running tasks of the service at the first sample of the run; `null` when never sampled.
    #[serde(default)]
    pub target_size: Option<u32>,
    /// The load schedule in one line: URL, rate, duration, stages, timeout.
    #[serde(default)]
    pub load_schedule: Option<String>,
    /// The scenario's fault timeline, one line per planned fault: `NAME: TYPE at T[ for D]`.
    #[serde(default)]
    pub fault_plan: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// The verdict of a run.
pub struct Verdict {
    pub outcome: Outcome,
    /// The exit code `siege run` ended with.
    pub exit_code: u8,
    /// One line: why this verdict.
    pub reason: String,
    /// What interrupted the run, if something did: a signal (`SIGINT (Ctrl-C)`, `SIGTERM`,
    /// `SIGHUP (the terminal closed)`) or a stop command (`stop command: REASON`); the outcome
    /// is then `aborted`, or `revert-failed`. `null` otherwise, a stop condition included.
    #[serde(default)]
    pub interrupted_by: Option<String>,
}

/// Key times of a run, in seconds. `first_fault_s` and `last_fault_end_s` are points in time
/// (seconds since the load started); the others are durations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Timings {
    /// When the first fault was injected.
    pub first_fault_s: Option<f64>,
    /// End of the last disruption: max(end of the last fault's effect, end of the last stage).
    pub last_fault_end_s: Option<f64>,
    /// Time to detect: from the first disruption to the first request that broke the steady
    /// state (see `observe::detected_after`); to 10 ms.
    pub time_to_detect_s: Option<f64>,
    /// Time to restore: from the end of the last disruption until the steady state held again
    /// (after a break that began late: see `observe::restored_after`).
    pub time_to_recover_s: Option<f64>,
    /// How long after `last_fault_end_s` the steady state had to hold again (`recovery.within`).
    pub recovery_deadline_s: f64,
    /// The deadline as a point in time: `last_fault_end_s + recovery_deadline_s`; `null` without
    /// a disruption. Absent from files written before it existed, whose `recovery_deadline_s`
    /// holds this point in time instead; `siege report` reads those that way.
    #[serde(default)]
    pub recovery_deadline_at_s: Option<f64>,
    /// Length of the run, from the start of the load to the verdict.
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// One steady-state check, before and after.
pub struct CheckRecord {
    /// As written, e.g. `error_rate < 1%`.
    pub check: String,
    /// Metric name, e.g. `error_rate`, `p95`, `healthy_targets`.
    pub metric: String,
    /// Observed value before the first fault (aggregate over the baseline), in display units.
    pub before: Option<f64>,
    /// Whether the check held over the baseline before the first fault.
    pub before_ok: bool,
    /// Observed value over the recovery hold window (or the last seconds of the run).
    pub after: Option<f64>,
    /// Whether it held after the faults; `null` when not evaluated (aborted, precondition failed).
    pub after_ok: Option<bool>,
    /// `%`, `ms` or empty.
    pub unit: String,
    /// The threshold of the comparison in display units (`1` for `< 1%`), drawn on the charts.
    #[serde(default)]
    pub threshold: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
/// What a timeline entry records.
pub enum TimelineKind {
    Phase,
    Stage,
    FaultInjected,
    FaultReverted,
    RevertFailed,
    SteadyStateBroken,
    SteadyStateRestored,
    StopCondition,
    Event,
    Note,
    /// A mark from a person: detected, mitigated or a note.
    Mark,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// One line of the timeline.
pub struct TimelineEntry {
    /// Seconds since the load started (negative: before it).
    pub t_s: f64,
    pub kind: TimelineKind,
    /// One line for humans.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// One fault of the scenario and what became of it.
pub struct FaultRecord {
    /// Name from the scenario (unique within it).
    pub name: String,
    /// Fault type, e.g. `task-kill`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What the fault acted on: task ids, instance ids, secret ids (never secret values).
    pub targets: Vec<String>,
    /// One line for humans, e.g. "stop 2 of 3 tasks of service api: t-3, t-1".
    pub summary: String,
    /// When it was injected; `null` if it never was (aborted or precondition failed first).
    pub injected_s: Option<f64>,
    /// End of the fault's effect on the timeline (a shaded window in the charts).
    pub ends_s: Option<f64>,
    /// When the revert completed; `null` for faults that need none or were never injected.
    pub reverted_s: Option<f64>,
    /// Why the revert failed: something may still be broken.
    pub revert_error: Option<String>,
    /// What stays in place when a fault that is normally reverted left nothing to revert (a
    /// failover's new writer): `"the cluster keeps its new writer"`. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_revert: Option<String>,
    /// What it did to the steady state, as siege measured it from the load and the samples;
    /// `null` for a fault never injected, and in reports of versions that did not measure it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<FaultEffect>,
    /// Per author, how long after this fault's injection they marked it detected and mitigated
    /// (see [`crate::report::attribute_marks`] for which marks count); in the order of each
    /// author's first mark.
    #[serde(default)]
    pub human: Vec<HumanTimes>,
}

impl FaultRecord {
    /// A fault not injected (yet): what it would act on, nothing that happened.
    pub fn not_injected(name: String, kind: String, targets: Vec<String>, summary: String) -> FaultRecord {
        FaultRecord {
            name,
            kind,
            targets,
            summary,
            injected_s: None,
            ends_s: None,
            reverted_s: None,
            revert_error: None,
            no_revert: None,
            effect: None,
            human: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// What one fault did to the steady state. Times in seconds since the load started (`*_s` of a
/// point) or in seconds (durations); whole seconds, as the steady state is judged per second.
pub struct FaultEffect {
    /// Time to detect this fault: from its injection to the first request due after it that
    /// failed or was slower than a latency check (see `timings.time_to_detect_s`); `null` when
    /// it broke nothing of its own (absent then, and in files written before it was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_after_s: Option<f64>,
    /// Where the fault's disruption ended: the end of its `for`, of a lab failover's outage, the
    /// injection of the fault that remedied it (a redeploy after a secret drift), or its
    /// injection for an instantaneous fault.
    pub disruption_end_s: f64,
    /// A break that begins before this point counts as the fault's effect: the end of its
    /// disruption plus `recovery.within`, or the next fault's injection if that comes sooner.
    pub counted_until_s: f64,
    /// The steady state was broken already in the second before the injection: the fault has no
    /// outage of its own (`broken_s` and `outage_s` are `null`).
    pub already_broken: bool,
    /// The first second that broke the steady state from the injection's second on, before
    /// `counted_until_s`; `null`: the fault broke nothing.
    pub broken_s: Option<f64>,
    /// The first second from which the steady state held for `recovery.hold` again after that
    /// break (after the disruption's end when it was broken already); `null`: not by the end of
    /// the run, or nothing broke.
    pub restored_s: Option<f64>,
    /// The outage: `restored_s` − `broken_s`.
    pub outage_s: Option<f64>,
    /// Time to restore after the disruption ended: `restored_s` − `disruption_end_s`, at least 0.
    pub time_to_restore_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// One author's times for one fault, in seconds after its injection.
pub struct HumanTimes {
    pub author: String,
    /// Time from the injection to the author's first `detected` mark attributed to the fault.
    pub detected_s: Option<f64>,
    /// Time from the injection to the author's first `mitigated` mark attributed to the fault.
    pub mitigated_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
/// One second of the run: load figures and the target's samples.
pub struct WindowRecord {
    /// Seconds since the load started; the window covers `[second, second + 1)`.
    pub second: u32,
    /// Requests scheduled (open model) in this second.
    pub scheduled: u64,
    /// Requests completed (successfully or not) in this second.
    pub requests: u64,
    /// Failed requests, all classes together.
    pub errors: u64,
    /// Failed (and missed) requests over all requests, as a fraction (`0.05` = 5%).
    pub error_rate: f64,
    /// Requests due but not sent on time (no connection free).
    pub missed: u64,
    /// Latency percentiles of this second, from the scheduled send time.
    #[schemars(with = "LatencySchema")]
    pub latency_ms: Latency,
    pub healthy_targets: Option<u32>,
    pub running_tasks: Option<u32>,
    /// Current database writer; `null` when unknown or during a failover.
    pub db_writer: Option<String>,
    /// Average task CPU, percent (lab: of one core; AWS: of the tasks' reserved CPU, CloudWatch,
    /// per minute).
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// Requests per second the load balancer counted, from every client, not only siege's load
    /// (lab: the balancer's count of this same second, `null` when no sample brought that second;
    /// AWS: CloudWatch, the latest minute's average).
    #[serde(default)]
    pub lb_rps: Option<f64>,
    /// Fraction of the balancer's requests answered 5xx by the balancer or the targets.
    #[serde(default)]
    pub lb_5xx_rate: Option<f64>,
    /// Target response time seen by the balancer, ms (lab: average of that second; AWS:
    /// `TargetResponseTime` p95 of the latest minute).
    #[serde(default)]
    pub lb_response_ms: Option<f64>,
    /// Fields above that are `null` because their sampler had not answered within its freshness
    /// bound (AWS: a slow or failing call), as opposed to not observable; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<String>,
    /// Whether every steady-state check held in this second.
    pub steady: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
/// A part of the run, by the seconds of load.
pub enum PhaseName {
    /// Before the second of the first disruption (the whole run without one).
    Baseline,
    /// From the second of the first disruption until the steady state was restored (the second
    /// `timings.time_to_recover_s` points at), or to the end of the load if it never was.
    Faults,
    /// From the restored steady state to the end of the load.
    Recovery,
}

impl PhaseName {
    pub fn label(self) -> &'static str {
        match self {
            PhaseName::Baseline => "baseline",
            PhaseName::Faults => "faults",
            PhaseName::Recovery => "recovery",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// One phase of the run: its seconds' counts added up and their latency histograms merged.
pub struct PhaseRecord {
    pub phase: PhaseName,
    /// First second of the phase (seconds since the load started).
    pub from_s: u32,
    /// End of the phase, exclusive: the phase covers the windows `from_s <= second < to_s`.
    pub to_s: u32,
    /// Requests completed in the phase.
    pub requests: u64,
    /// Requests due but not sent on time.
    pub missed: u64,
    /// Failed requests by class.
    #[schemars(with = "ErrorCountsSchema")]
    pub errors: ErrorCounts,
    /// Failed and missed requests over all requests of the phase, as a fraction.
    pub error_rate: f64,
    /// Percentiles of the phase's merged histogram (not an average of the seconds'
    /// percentiles); `null` when no latency was recorded.
    #[schemars(with = "Option<LatencySchema>")]
    pub latency_ms: Option<Latency>,
    /// The merged latency histogram in microseconds: HdrHistogram V2 encoding (uncompressed),
    /// base64; `null` when no latency was recorded.
    pub latency_hdr: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
/// Totals of the load over the whole run.
pub struct LoadTotals {
    pub requests: u64,
    /// Achieved requests per second.
    pub rps: f64,
    /// Errors by class.
    #[schemars(with = "ErrorCountsSchema")]
    pub errors: ErrorCounts,
    pub missed: u64,
    #[schemars(with = "LatencySchema")]
    pub latency_ms: Latency,
}

// The load types are owned by the load driver and do not derive `JsonSchema`; these mirrors give
// the schema their shape. A unit test keeps the field names in step with the real types.

/// Latency percentiles in milliseconds.
#[derive(JsonSchema)]
#[schemars(rename = "Latency")]
#[allow(dead_code)]
struct LatencySchema {
    p50: f64,
    p90: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

/// Errors by class; `status_5xx` counts 5xx codes other than 502, 503 and 504.
#[derive(JsonSchema)]
#[schemars(rename = "ErrorCounts")]
#[allow(dead_code)]
struct ErrorCountsSchema {
    connect: u64,
    /// TLS handshake failed (certificate rejected, no common protocol); absent before TLS support.
    #[schemars(default)]
    tls: u64,
    reset: u64,
    timeout: u64,
    status_502: u64,
    status_503: u64,
    status_504: u64,
    status_5xx: u64,
    status_4xx: u64,
    other: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        k.sort();
        k
    }

    fn schema_keys<T: JsonSchema>() -> Vec<String> {
        let s = schemars::schema_for!(T);
        keys(s.as_value()["properties"].clone())
    }

    #[test]
    fn windows_written_before_the_balancer_fields_still_load() {
        let old = serde_json::json!({
            "second": 3, "scheduled": 100, "requests": 100, "errors": 0, "error_rate": 0.0, "missed": 0,
            "latency_ms": { "p50": 1.0, "p90": 2.0, "p95": 3.0, "p99": 4.0, "max": 5.0 },
            "healthy_targets": 3, "running_tasks": 3, "db_writer": null, "steady": true
        });
        let w: WindowRecord = serde_json::from_value(old).expect("an old window loads");
        assert_eq!((w.cpu_percent, w.lb_rps, w.lb_5xx_rate, w.lb_response_ms), (None, None, None, None));
        assert_eq!(w.healthy_targets, Some(3));
    }

    #[test]
    fn load_type_mirrors_match_the_load_types() {
        assert_eq!(keys(serde_json::to_value(Latency::default()).unwrap()), schema_keys::<LatencySchema>());
        assert_eq!(keys(serde_json::to_value(ErrorCounts::default()).unwrap()), schema_keys::<ErrorCountsSchema>());
    }
}
