//! Terminal progress: a live status line on a TTY (phase, elapsed, rate, errors, p95, healthy
//! targets, next action), plain lines otherwise. Events worth remembering print as lines.

use std::io::{IsTerminal, Write};

use super::events::{CancelReason, Event, EventSink};

pub struct Progress {
    tty: bool,
    phase: &'static str,
    status_shown: bool,
    out: std::io::Stderr,
}

impl Progress {
    pub fn new() -> Self {
        let out = std::io::stderr();
        Progress { tty: out.is_terminal(), phase: "connecting", status_shown: false, out }
    }

    fn line(&mut self, t: Option<f64>, text: &str) {
        let mut o = self.out.lock();
        if self.tty && self.status_shown {
            let _ = write!(o, "\r\x1b[2K");
            self.status_shown = false;
        }
        let _ = match t {
            Some(t) => writeln!(o, "[{:>5.1}s] {text}", t),
            None => writeln!(o, "{text}"),
        };
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl EventSink for Progress {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
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
            Event::SecondClosed { window, sample, steady, next } => {
                let w = window;
                let healthy = sample
                    .as_ref()
                    .and_then(|s| s.healthy_targets.map(|h| format!("  healthy {h}")))
                    .unwrap_or_default();
                let next = next
                    .as_ref()
                    .map(|(at, what)| format!("  next: {what} in {:.0}s", (at - f64::from(w.second) - 1.0).max(0.0)))
                    .unwrap_or_default();
                let status = format!(
                    "[{:>5}s] {:<10} {:>5} rps  err {:>5.1}%  p95 {:>7.1}ms{healthy}  {}{next}",
                    w.second + 1,
                    self.phase,
                    w.requests,
                    w.error_rate() * 100.0,
                    w.latency_ms.p95,
                    if *steady { "steady" } else { "DISRUPTED" },
                );
                if self.tty {
                    let mut o = self.out.lock();
                    let _ = write!(o, "\r\x1b[2K{status}");
                    let _ = o.flush();
                    self.status_shown = true;
                } else if (w.second + 1) % 5 == 0 {
                    self.line(None, &status);
                }
            }
            Event::LoadStarted { setup_s } => {
                self.line(Some(0.0), &format!("load started ({setup_s:.2}s of setup: target, preflight)"))
            }
            Event::RunFinished { record, report_dir, report_ms } => {
                let v = &record.verdict;
                self.line(None, &format!("\n{}: {}", v.outcome.word(), v.reason));
                if let Some(d) = report_dir {
                    self.line(
                        None,
                        &format!("report: {} (written in {report_ms:.0} ms)", d.join("report.md").display()),
                    );
                }
            }
        }
        Ok(())
    }
}
