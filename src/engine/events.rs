//! What the engine tells the world. The run loop emits these past-tense events, each wrapped in
//! an [`Envelope`] (run id, sequence number, UTC time, time since the load started). The journal
//! and the record builder are the engine's own and see every event synchronously; every other
//! consumer (terminal progress, the daemon's live view) reads them through the run's
//! [`super::bus`]. The JSON form is the stream format documented in `docs/events.md`.
//! The engine never formats output itself.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::backend::{Injected, Resolved, Sample};
use crate::load::Window;
use crate::report::Outcome;

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Connecting,
    Baseline,
    Faults,
    Recovery,
    Reverting,
    Reporting,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Baseline => "baseline",
            Phase::Faults => "faults",
            Phase::Recovery => "recovery",
            Phase::Reverting => "reverting",
            Phase::Reporting => "reporting",
        }
    }
}

/// Why a run stops before its load ends, in order of precedence. In JSON:
/// `{"kind": "interrupted", "detail": "SIGTERM"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum CancelReason {
    /// Ctrl-C / SIGTERM.
    Interrupted(String),
    /// A stop condition tripped.
    StopCondition(String),
    /// The steady state did not hold before the first fault.
    Precondition(String),
    /// A component failed (load driver, backend, a panic).
    Error(String),
}

/// One emitted event with what every consumer needs to place it: which run, where in the run's
/// sequence (`seq` counts from 0 without gaps), when (UTC, RFC 3339 with milliseconds) and how
/// long after the load started (`None` before it started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub run_id: String,
    pub seq: u64,
    pub at: String,
    pub t: Option<f64>,
    pub event: Event,
}

/// `2026-11-22T03:04:05.678Z`.
pub fn rfc3339_ms(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = crate::util::civil_utc(t);
    let ms = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_millis()).unwrap_or(0);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// The next timeline action, as the status line shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upcoming {
    /// Seconds since the load started.
    pub at: f64,
    pub what: String,
}

/// The `t` inside an event is the run time it is about, in seconds since the load started (since
/// the run started while the load has not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    RunStarted {
        run_id: String,
        scenario: String,
        seed: u64,
        backend: String,
        locator: serde_json::Value,
    },
    BackendReady {
        entry_url: String,
    },
    PhaseChanged {
        t: f64,
        phase: Phase,
    },
    /// The baseline gate was evaluated.
    BaselineChecked {
        t: f64,
        held: bool,
        detail: String,
    },
    /// The first request is about to be sent, `setup_s` after the run started (connecting,
    /// starting a lab, preflight).
    LoadStarted {
        setup_s: f64,
    },
    StageStarted {
        t: f64,
        rate: f64,
    },
    /// A second of load closed; `steady` is whether that second alone met the steady state.
    SecondClosed {
        window: Window,
        sample: Option<Sample>,
        steady: bool,
        next: Option<Upcoming>,
    },
    /// Written to the journal (and synced) before the backend is called.
    FaultInjecting {
        t: f64,
        fault: String,
        resolved: Resolved,
        injected: Injected,
    },
    FaultInjected {
        t: f64,
        fault: String,
        kind: String,
        summary: String,
    },
    FaultInjectFailed {
        t: f64,
        fault: String,
        error: String,
    },
    FaultReverted {
        t: f64,
        fault: String,
    },
    /// A fault that leaves nothing to undo (a kill, a redeploy) completed; closes its journal entry.
    FaultSettled {
        t: f64,
        fault: String,
    },
    FaultRevertFailed {
        t: f64,
        fault: String,
        error: String,
    },
    SteadyStateBroken {
        t: f64,
        detail: String,
    },
    SteadyStateRestored {
        t: f64,
    },
    Cancelled {
        t: f64,
        reason: CancelReason,
    },
    /// A service event seen by a sampler (a task replaced, a target healthy…).
    ServiceEvent {
        t: f64,
        text: String,
    },
    /// A non-fatal problem worth telling.
    Note {
        t: f64,
        text: String,
    },
    /// The last event of a run: the verdict (the full record is in the run's outcome and in
    /// `report.json`); `report_ms`: time to build and write the report after the last window.
    RunFinished {
        outcome: Outcome,
        reason: String,
        report_dir: Option<std::path::PathBuf>,
        report_ms: f64,
    },
}

impl Event {
    /// The event's `type` in JSON, e.g. `fault-injected`.
    pub fn type_name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_string(),
            _ => String::new(),
        }
    }
}
