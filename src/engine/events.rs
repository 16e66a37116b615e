//! What the engine tells the world. The run loop emits these past-tense events; the terminal
//! progress, the journal, the report builder and (later) the daemon's live view consume them.
//! The engine never formats output itself.

use crate::backend::{Injected, Resolved, Sample};
use crate::load::Window;
use crate::report::RunRecord;

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

/// Why a run stops before its load ends, in order of precedence.
#[derive(Debug, Clone, PartialEq)]
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

/// `t` is seconds since the load started (negative before it).
#[derive(Debug, Clone)]
pub enum Event {
    RunStarted {
        run_id: String,
        scenario: String,
        seed: u64,
        backend: &'static str,
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
        next: Option<(f64, String)>,
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
    /// `report_ms`: time to build and write the report after the last window.
    RunFinished {
        record: Box<RunRecord>,
        report_dir: Option<std::path::PathBuf>,
        report_ms: f64,
    },
    /// A person marked the run (detected, mitigated, a note); `t` is when the engine took it.
    MarkAdded {
        t: f64,
        mark: crate::report::Mark,
    },
}

/// A consumer of events. Called synchronously, in order; the journal relies on that to be on
/// disk before a fault is injected.
pub trait EventSink: Send {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()>;
}
