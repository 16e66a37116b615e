//! The run record: everything a report is rendered from, stored as `report.json`.
//! Versioned by [`SCHEMA_VERSION`]; documented in `docs/report-json.md`.

use serde::{Deserialize, Serialize};

use crate::exit::Exit;
use crate::load::{ErrorCounts, Latency};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    pub run_id: String,
    pub scenario: ScenarioInfo,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: String,
    /// Seed of the random selections; rerun with `seed:` to select the same targets.
    pub seed: u64,
    pub verdict: Verdict,
    pub timings: Timings,
    /// The worst one-second window after the first fault (highest error rate, then p95).
    pub worst_window: Option<WindowRecord>,
    pub steady_state: Vec<CheckRecord>,
    pub timeline: Vec<TimelineEntry>,
    pub faults: Vec<FaultRecord>,
    /// One entry per second of load, with the samples taken in it.
    pub windows: Vec<WindowRecord>,
    pub load: LoadTotals,
    pub debrief_questions: Vec<String>,
    /// Non-fatal problems met during the run (a sampler that failed, a slow revert…).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub description: Option<String>,
    /// Scenario file as given on the command line.
    pub file: String,
    /// Runbook path relative to the report directory (for the markdown link), if any.
    pub runbook: Option<String>,
    /// `lab` or `aws`.
    pub target: String,
    pub service: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    Failed,
    Aborted,
    PreconditionFailed,
    RevertFailed,
    Error,
}

impl Outcome {
    pub fn exit(self) -> Exit {
        match self {
            Outcome::Passed => Exit::Passed,
            Outcome::Failed => Exit::Failed,
            Outcome::Aborted => Exit::Aborted,
            Outcome::PreconditionFailed => Exit::Precondition,
            Outcome::RevertFailed => Exit::RevertFailed,
            Outcome::Error => Exit::Internal,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub exit_code: u8,
    /// One line: why this verdict.
    pub reason: String,
}

/// Seconds are measured from the start of the load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub first_fault_s: Option<f64>,
    /// When the last fault's effect ended (injection, or end of its window).
    pub last_fault_end_s: Option<f64>,
    /// Time from the first fault to the first window that broke the steady state.
    pub time_to_detect_s: Option<f64>,
    /// Time from the last fault's end until the steady state held again (MTTR).
    pub time_to_recover_s: Option<f64>,
    pub recovery_deadline_s: f64,
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// As written, e.g. `error_rate < 1%`.
    pub check: String,
    pub metric: String,
    /// Observed value before the first fault (aggregate over the baseline), in display units.
    pub before: Option<f64>,
    pub before_ok: bool,
    /// Observed value over the recovery hold window (or the last seconds of the run).
    pub after: Option<f64>,
    pub after_ok: Option<bool>,
    /// `%`, `ms` or empty.
    pub unit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Seconds since the load started (negative: before it).
    pub t_s: f64,
    pub kind: TimelineKind,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub targets: Vec<String>,
    pub summary: String,
    pub injected_s: Option<f64>,
    /// End of the fault's effect on the timeline (a shaded window in the charts).
    pub ends_s: Option<f64>,
    pub reverted_s: Option<f64>,
    pub revert_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub second: u32,
    /// Requests scheduled (open model) and completed in this second.
    pub scheduled: u64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub missed: u64,
    pub latency_ms: Latency,
    pub healthy_targets: Option<u32>,
    pub running_tasks: Option<u32>,
    pub db_writer: Option<String>,
    pub steady: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadTotals {
    pub requests: u64,
    pub rps: f64,
    pub errors: ErrorCounts,
    pub missed: u64,
    pub latency_ms: Latency,
}
