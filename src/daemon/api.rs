//! The API's answers as types: what each route returns, in one place, so that a field cannot be
//! renamed or dropped by one handler alone (docs/daemon.md, "API", lists the same).

use serde::Serialize;
use serde_json::Value;

use super::store::{Firing, FiringOutcome, RunState, StoredRun, Trigger};
use crate::scenario::Diagnostic;

fn ts(t: jiff::Timestamp) -> String {
    t.to_string()
}

/// `{"error": {"code", "message", "diagnostics"?}}`: every error.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Vec<DiagnosticView<'a>>>,
}

/// A diagnostic: its rendered line and its parts.
#[derive(Debug, Serialize)]
pub struct DiagnosticView<'a> {
    pub text: String,
    pub detail: &'a Diagnostic,
}

/// `GET /healthz`.
#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub runs_in_progress: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run as listed.
#[derive(Debug, Serialize)]
pub struct RunView {
    pub id: String,
    pub scenario: String,
    pub target: String,
    pub state: RunState,
    pub trigger: Trigger,
    pub schedule: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub time_to_detect_s: Option<f64>,
    pub mttr_s: Option<f64>,
    pub blind: bool,
}

impl From<&StoredRun> for RunView {
    fn from(r: &StoredRun) -> RunView {
        RunView {
            id: r.id.clone(),
            scenario: r.scenario.clone(),
            target: r.target.clone(),
            state: r.state,
            trigger: r.trigger,
            schedule: r.schedule.clone(),
            started_at: ts(r.started_at),
            finished_at: r.finished_at.map(ts),
            time_to_detect_s: r.time_to_detect.map(|d| d.as_secs_f64()),
            mttr_s: r.mttr.map(|d| d.as_secs_f64()),
            blind: r.blind,
        }
    }
}

/// `GET /v1/runs/{id}`: the run, its record (report.json), its files, and for a running run how
/// many events it has said.
#[derive(Debug, Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunView,
    pub record: Value,
    pub files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_so_far: Option<usize>,
}

/// `GET /v1/runs`.
#[derive(Debug, Serialize)]
pub struct RunsPage {
    pub runs: Vec<RunView>,
    pub next: Option<String>,
}

/// `202` of a run started.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub id: String,
}

/// A run command's answer: what the run did.
#[derive(Debug, Serialize)]
pub struct Done {
    pub done: String,
}

/// `POST /v1/schedules/{name}/pause` and `/resume`.
#[derive(Debug, Serialize)]
pub struct PauseState {
    pub name: String,
    pub paused: bool,
}

/// `POST /v1/reload`.
#[derive(Debug, Serialize)]
pub struct Reloaded {
    pub reloaded: bool,
    pub schedules: usize,
}

/// `GET /v1/schedules`.
#[derive(Debug, Serialize)]
pub struct Schedules {
    pub schedules: Vec<ScheduleView>,
}

#[derive(Debug, Serialize)]
pub struct ScheduleView {
    pub name: String,
    pub scenario: String,
    pub cadence: CadenceView,
    pub enabled: bool,
    pub paused: bool,
    pub next_due: Option<String>,
    pub last_firing: Option<FiringView>,
}

/// `{"cron", "timezone"}` or `{"every"}`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum CadenceView {
    Cron { cron: String, timezone: String },
    Every { every: String },
}

#[derive(Debug, Serialize)]
pub struct FiringView {
    pub due: String,
    pub outcome: FiringOutcome,
    pub reason: Option<String>,
    pub run_id: Option<String>,
    pub recorded_at: String,
    pub lateness_ms: i64,
}

impl From<Firing> for FiringView {
    fn from(f: Firing) -> FiringView {
        FiringView {
            lateness_ms: f.recorded_at.as_millisecond() - f.due.as_millisecond(),
            due: ts(f.due),
            outcome: f.outcome,
            reason: f.reason,
            run_id: f.run_id,
            recorded_at: ts(f.recorded_at),
        }
    }
}

/// `next_due` as the API writes it.
pub fn due(t: Option<jiff::Timestamp>) -> Option<String> {
    t.map(ts)
}
