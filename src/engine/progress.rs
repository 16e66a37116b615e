//! Terminal progress: a live status line on a TTY (phase, elapsed, rate, errors, p95, healthy
//! targets, next action), plain lines otherwise. Events worth remembering print as lines.
//!
//! A subscriber of the run's bus on a thread of its own ([`spawn`]): a terminal that is slow or
//! blocked holds up the display only, never the run; when the display falls too far behind it
//! says how many events it missed.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bus::{Received, Subscription};
use super::events::{CancelReason, Event};

/// What is being typed at the terminal (an interactive run's note): while it is set, the status
/// line shows it instead of the figures, so that a second's update does not wipe it.
pub type Prompt = Arc<Mutex<Option<String>>>;

/// The progress display running for one run.
pub struct ProgressTask {
    done: tokio::sync::oneshot::Receiver<()>,
}

/// Shows the events of `sub` on stderr until the run ends.
pub fn spawn(sub: Subscription) -> ProgressTask {
    spawn_to(sub, Progress::new())
}

/// Shows the events of `sub` with `p` until the run ends.
pub fn spawn_to(mut sub: Subscription, mut p: Progress) -> ProgressTask {
    let (tx, done) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        while let Some(r) = sub.blocking_recv() {
            match r {
                Received::Event(e) => p.show(&e.event),
                Received::Lagged(n) => p.line(None, &format!("siege: the display fell behind: missed {n} events")),
            }
        }
        let _ = tx.send(());
    });
    ProgressTask { done }
}

impl ProgressTask {
    /// Waits for the display to show the end of the run, but not for a terminal that stopped
    /// taking output.
    pub async fn finish(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.done).await;
    }
}

pub struct Progress {
    tty: bool,
    /// The keys an interactive run answers to, shown with the status line.
    keys: Option<&'static str>,
    prompt: Prompt,
    phase: &'static str,
    status_shown: bool,
    out: Box<dyn Write + Send>,
}

impl Progress {
    /// On stderr, with a status line when it is a terminal.
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        Progress::to(Box::new(std::io::stderr()), tty)
    }

    /// On `out`; `tty` draws the status line.
    pub fn to(out: Box<dyn Write + Send>, tty: bool) -> Self {
        Progress { tty, keys: None, prompt: Prompt::default(), phase: "connecting", status_shown: false, out }
    }

    /// Shows `legend` (the keys of an interactive run) when the load starts and on the status
    /// line, and `prompt` instead of the status line while it is set.
    pub fn with_keys(self, legend: &'static str, prompt: Prompt) -> Self {
        Progress { keys: Some(legend), prompt, ..self }
    }

    fn line(&mut self, t: Option<f64>, text: &str) {
        let typing = if self.tty { self.prompt.lock().ok().and_then(|p| p.clone()) } else { None };
        let mut s = String::new();
        if self.tty && (self.status_shown || typing.is_some()) {
            s += "\r\x1b[2K";
            self.status_shown = false;
        }
        s += &match t {
            Some(t) => format!("[{t:>5.1}s] {text}\n"),
            None => format!("{text}\n"),
        };
        // A note being typed stays under the lines printed meanwhile.
        if let Some(p) = typing {
            s += &p;
            self.status_shown = true;
        }
        let _ = self.out.write_all(s.as_bytes());
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn show(&mut self, event: &Event) {
        match event {
            Event::RunStarted { run_id, seed, backend, .. } => {
                self.line(None, &format!("siege: run {run_id} on {backend} (seed {seed})"))
            }
            Event::BackendReady { entry_url } => self.line(None, &format!("siege: target entry point {entry_url}")),
            Event::PhaseChanged { t, phase } => {
                self.phase = phase.label();
                self.line(Some(*t), &format!("phase: {}", phase.label()));
            }
            Event::BaselineChecked { t, held, detail } => self.line(
                Some(*t),
                &format!("steady state before faults: {} — {detail}", if *held { "held" } else { "NOT held" }),
            ),
            Event::StageStarted { t, rate } => self.line(Some(*t), &format!("stage: load rate → {rate:.0}/s")),
            Event::FaultInjecting { t, fault, resolved, .. } => {
                self.line(Some(*t), &format!("injecting {fault}: {}", resolved.summary))
            }
            Event::FaultInjected { t, fault, .. } => self.line(Some(*t), &format!("fault injected: {fault}")),
            Event::FaultInjectFailed { t, fault, error } => {
                self.line(Some(*t), &format!("injection of {fault} failed: {error}"))
            }
            Event::FaultSettled { .. } => {}
            Event::FaultReverted { t, fault } => self.line(Some(*t), &format!("fault reverted: {fault}")),
            Event::FaultRevertFailed { t, fault, error } => {
                self.line(Some(*t), &format!("REVERT FAILED: {fault}: {error}"))
            }
            Event::SteadyStateBroken { t, detail } => self.line(Some(*t), &format!("steady state broken: {detail}")),
            Event::SteadyStateRestored { t } => self.line(Some(*t), "steady state restored"),
            Event::Cancelled { t, reason } => {
                let text = match reason {
                    CancelReason::Interrupted(s) => {
                        format!("interrupted by {s}: reverting every fault (again to skip waits)")
                    }
                    CancelReason::StopCondition(c) => format!("STOP CONDITION: {c}: aborting and reverting"),
                    CancelReason::Precondition(d) => format!("precondition failed: {d}"),
                    CancelReason::Error(e) => format!("error: {e}"),
                };
                self.line(Some(*t), &text);
            }
            Event::ServiceEvent { t, text } => self.line(Some(*t), &format!("event: {text}")),
            Event::Note { t, text } => self.line(Some(*t), &format!("note: {text}")),
            Event::MarkAdded { t, mark } => self.line(Some(*t), &format!("mark: {}", mark.describe())),
            Event::MarkMoved { t, id, fault, from } => {
                self.line(Some(*t), &format!("mark {id} moved from {from} to {fault}"))
            }
            Event::SecondClosed { window, sample, steady, next, .. } => {
                let w = window;
                let healthy = sample
                    .as_ref()
                    .and_then(|s| s.healthy_targets.map(|h| format!("  healthy {h}")))
                    .unwrap_or_default();
                let next = next
                    .as_ref()
                    .map(|n| format!("  next: {} in {:.0}s", n.what, (n.at - f64::from(w.second) - 1.0).max(0.0)))
                    .unwrap_or_default();
                let keys = if self.keys.is_some() { "  [1-9 s d m n q]" } else { "" };
                let status = format!(
                    "[{:>5}s] {:<10} {:>5} rps  err {:>5.1}%  p95 {:>7.1}ms{healthy}  {}{next}{keys}",
                    w.second + 1,
                    self.phase,
                    w.requests,
                    w.error_rate() * 100.0,
                    w.latency_ms.p95,
                    if *steady { "steady" } else { "DISRUPTED" },
                );
                let typing = self.prompt.lock().ok().and_then(|p| p.clone());
                if self.tty {
                    let status = typing.unwrap_or(status);
                    let _ = write!(self.out, "\r\x1b[2K{status}");
                    let _ = self.out.flush();
                    self.status_shown = true;
                } else if (w.second + 1) % 5 == 0 {
                    self.line(None, &status);
                }
            }
            Event::LoadStarted { setup_s } => {
                self.line(Some(0.0), &format!("load started ({setup_s:.2}s of setup: target, preflight)"));
                if let Some(k) = self.keys {
                    self.line(None, k);
                }
            }
            Event::RunFinished { outcome, reason, .. } => {
                self.line(None, &format!("\n{}: {reason}", outcome.word()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bus::Bus;
    use crate::engine::events::Envelope;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_display_that_fell_behind_says_how_many_events_it_missed_and_still_shows_the_verdict() {
        let (bus, publisher) = Bus::new(4);
        let sub = bus.subscribe();
        let env = |seq: u64, event: Event| Envelope { run_id: "r".into(), seq, at: String::new(), t: Some(1.0), event };
        for i in 0..10 {
            publisher.publish(env(i, Event::Note { t: 1.0, text: format!("n{i}") }));
        }
        publisher.publish(env(
            10,
            Event::RunFinished { outcome: crate::report::Outcome::Passed, reason: "all good".into(), report_ms: 1.0 },
        ));
        drop(publisher);
        let out = Shared::default();
        spawn_to(sub, Progress::to(Box::new(out.clone()), false)).finish().await;
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("siege: the display fell behind: missed 7 events\n"), "{text}");
        assert!(text.contains("note: n7\n") && !text.contains("note: n6"), "{text}");
        assert!(text.ends_with("PASSED: all good\n"), "{text}");
    }

    #[tokio::test]
    async fn a_note_being_typed_stays_on_the_status_line_through_the_seconds() {
        let (bus, publisher) = Bus::new(16);
        let sub = bus.subscribe();
        let prompt = Prompt::default();
        *prompt.lock().unwrap() = Some("note> the balancer".into());
        let second = |seq: u64| Envelope {
            run_id: "r".into(),
            seq,
            at: String::new(),
            t: Some(1.0),
            event: Event::SecondClosed {
                window: crate::load::Window { second: seq as u32, ..Default::default() },
                sample: None,
                steady: true,
                health: crate::engine::events::Health {
                    state: crate::engine::events::HealthState::Steady,
                    since: 0.0,
                    detail: None,
                    failing: vec![],
                },
                next: None,
            },
        };
        publisher.publish(second(0));
        let note = Event::Note { t: 1.5, text: "x".into() };
        publisher.publish(Envelope { run_id: "r".into(), seq: 1, at: String::new(), t: Some(1.5), event: note });
        drop(publisher);
        let out = Shared::default();
        spawn_to(sub, Progress::to(Box::new(out.clone()), true).with_keys("keys", prompt)).finish().await;
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        // Redrawn under the line printed meanwhile.
        assert_eq!(text, "\r\x1b[2Knote> the balancer\r\x1b[2K[  1.5s] note: x\nnote> the balancer", "{text:?}");
    }
}
