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
use crate::vocab::Outcome;

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

/// What a closed second says about the service, for whoever watches the run: from the run's own
/// per-second evaluation of the steady state, before and after the first fault alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub state: HealthState,
    /// The second this state began (seconds since the load started): the first failing second
    /// of a break, the first steady second of a recovery or of a steady spell.
    pub since: f64,
    /// The checks that failed this second, in words (`broken` only).
    pub detail: Option<String>,
    /// The metrics of the checks that failed this second (`error_rate`, `p95`, …), in the
    /// scenario's order; empty when it was steady.
    pub failing: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthState {
    /// The second met the steady state, and so did the `recovery.hold` seconds before it (or every
    /// second since the load started).
    Steady,
    /// The second did not meet the steady state.
    Broken,
    /// The second met the steady state after a broken one, not yet for `recovery.hold`.
    Recovering,
}

/// The `t` inside an event is the run time it is about, in seconds since the load started (since
/// the run started while the load has not).
// `SecondClosed`, the largest variant, is also the most frequent one (every second): boxing it
// would allocate once more per second for the rarer, smaller ones' sake.
#[allow(clippy::large_enum_variant)]
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
    /// A second of load closed; `steady` is whether that second alone met the steady state,
    /// `health` what it means for the service now.
    SecondClosed {
        window: Window,
        sample: Option<Sample>,
        steady: bool,
        health: Health,
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
    /// A person marked the run (detected, mitigated, a note); `t` is when the engine took it.
    MarkAdded {
        t: f64,
        mark: crate::vocab::Mark,
    },
    /// The instructor moved mark number `id` from fault `from` to fault `fault`.
    MarkMoved {
        t: f64,
        id: u32,
        fault: String,
        from: String,
    },
    /// The last event of a run: the verdict (the full record is in the run's outcome);
    /// `report_ms`: time to build the run record after the last window.
    RunFinished {
        outcome: Outcome,
        reason: String,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Latency;

    /// One event of every type, in the order `docs/events.md` lists them.
    pub(crate) fn examples() -> Vec<Event> {
        let window = Window {
            second: 12,
            requests: 50,
            scheduled: 50,
            latency_ms: Latency { p50: 2.1, p90: 3.4, p95: 4.2, p99: 9.8, max: 14.5 },
            ..Window::default()
        };
        let sample = Sample {
            healthy_targets: Some(3),
            running_tasks: Some(3),
            desired_tasks: Some(3),
            db_writer: Some("db-1".into()),
            ..Sample::default()
        };
        let (fault, t) = (|| "slow".to_string(), 10.0);
        vec![
            Event::RunStarted {
                run_id: "slow-20261122T030405Z-1a2b".into(),
                scenario: "scenarios/latency.yaml".into(),
                seed: 7,
                backend: "lab".into(),
                locator: serde_json::json!({"lab": {"control_url": "http://127.0.0.1:40123", "owned": true}}),
            },
            Event::BackendReady { entry_url: "http://127.0.0.1:40979".into() },
            Event::PhaseChanged { t: 0.0, phase: Phase::Baseline },
            Event::LoadStarted { setup_s: 1.06 },
            Event::BaselineChecked { t, held: true, detail: "error_rate 0% (ok, < 5%)".into() },
            Event::StageStarted { t: 20.0, rate: 200.0 },
            Event::SecondClosed {
                window,
                sample: Some(sample),
                steady: true,
                health: Health { state: HealthState::Steady, since: 0.0, detail: None, failing: vec![] },
                next: Some(Upcoming { at: 20.0, what: "revert slow".into() }),
            },
            Event::FaultInjecting {
                t,
                fault: fault(),
                resolved: Resolved { targets: vec!["t-1".into()], summary: "add 200ms latency to t-1".into() },
                injected: Injected::on_lab(&fault(), "latency", &["t-1"]),
            },
            Event::FaultInjected {
                t,
                fault: fault(),
                kind: "latency".into(),
                summary: "add 200ms latency to t-1".into(),
            },
            Event::FaultInjectFailed { t, fault: fault(), error: "not found: task t-9".into() },
            Event::FaultReverted { t: 20.0, fault: fault() },
            Event::FaultSettled { t, fault: "kill".into() },
            Event::FaultRevertFailed { t: 20.0, fault: fault(), error: "timed out after 120s".into() },
            Event::SteadyStateBroken { t: 11.0, detail: "error_rate 12% (want < 5%)".into() },
            Event::SteadyStateRestored { t: 24.0 },
            Event::Cancelled { t: 14.2, reason: CancelReason::Interrupted("SIGINT (Ctrl-C)".into()) },
            Event::ServiceEvent { t: 10.4, text: "service api: started task t-4".into() },
            Event::Note { t: 3.1, text: "sampling the target failed: connection refused".into() },
            Event::MarkAdded {
                t: 12.5,
                mark: crate::vocab::Mark {
                    t: 12.5,
                    kind: crate::vocab::MarkKind::Detected,
                    author: "alice".into(),
                    text: "error rate up on the dashboard".into(),
                    fault: Some("slow".into()),
                    id: 1,
                    moved_from: None,
                },
            },
            Event::MarkMoved { t: 13.0, id: 1, fault: "kill".into(), from: "slow".into() },
            Event::RunFinished {
                outcome: Outcome::Passed,
                reason: "steady state restored 4s after the last disruption (deadline 20s)".into(),
                report_ms: 4.2,
            },
        ]
    }

    /// Which variant `e` is; adding a variant fails to compile here until it has an example.
    fn variant(e: &Event) -> usize {
        match e {
            Event::RunStarted { .. } => 0,
            Event::BackendReady { .. } => 1,
            Event::PhaseChanged { .. } => 2,
            Event::LoadStarted { .. } => 3,
            Event::BaselineChecked { .. } => 4,
            Event::StageStarted { .. } => 5,
            Event::SecondClosed { .. } => 6,
            Event::FaultInjecting { .. } => 7,
            Event::FaultInjected { .. } => 8,
            Event::FaultInjectFailed { .. } => 9,
            Event::FaultReverted { .. } => 10,
            Event::FaultSettled { .. } => 11,
            Event::FaultRevertFailed { .. } => 12,
            Event::SteadyStateBroken { .. } => 13,
            Event::SteadyStateRestored { .. } => 14,
            Event::Cancelled { .. } => 15,
            Event::ServiceEvent { .. } => 16,
            Event::Note { .. } => 17,
            Event::MarkAdded { .. } => 18,
            Event::MarkMoved { .. } => 19,
            Event::RunFinished { .. } => 20,
        }
    }

    fn envelope(seq: u64, event: Event) -> Envelope {
        let t = (seq > 3).then_some(seq as f64 * 0.5);
        Envelope {
            run_id: "slow-20261122T030405Z-1a2b".into(),
            seq,
            at: format!("2026-11-22T03:04:{:02}.{:03}Z", 5 + seq, seq * 7),
            t,
            event,
        }
    }

    #[test]
    fn there_is_an_example_of_every_event() {
        let seen: Vec<usize> = examples().iter().map(variant).collect();
        assert_eq!(seen, (0..=20).collect::<Vec<_>>());
    }

    #[test]
    fn envelopes_round_trip_through_json() {
        for (i, e) in examples().into_iter().enumerate() {
            let env = envelope(i as u64, e);
            let line = serde_json::to_string(&env).unwrap();
            assert!(!line.contains('\n'));
            let back: Envelope = serde_json::from_str(&line).unwrap();
            assert_eq!(back, env, "{line}");
        }
    }

    /// docs/events.md: a `### \`type\`` section for every event type the code has and no other,
    /// each with an example line that reads back as an envelope of that type and writes out the
    /// same JSON (no field missing, none extra).
    #[test]
    fn docs_list_every_event_with_an_example_the_code_reads() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.md")).unwrap();
        let code: Vec<String> = examples().iter().map(Event::type_name).collect();
        let mut documented = vec![];
        for section in doc.split("\n### `").skip(1) {
            let (name, body) = section.split_once('`').unwrap();
            let line = body.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no example for {name}"));
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}"));
            let env: Envelope = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(env.event.type_name(), name, "the example of {name} is of another type");
            assert_eq!(serde_json::to_value(&env).unwrap(), value, "{name}: fields differ from the code");
            documented.push(name.to_string());
        }
        assert_eq!(documented, code, "docs/events.md lists other events than the code (or in another order)");
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_316_645_678);
        assert_eq!(rfc3339_ms(t), "2026-11-22T03:04:05.678Z");
        assert_eq!(rfc3339_ms(std::time::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
