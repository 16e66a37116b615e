//! Commands to a running run: inject a fault of the scenario's manual catalog (or one given in
//! full), change the load rate for a while, mark the run, stop it. A command is answered once the
//! run has acted on it — accepted with what it did, or refused with why — and a refused command
//! leaves the run going.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::scenario::ManualFault;
use crate::vocab::MarkKind;

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub enum RunCommand {
    /// Inject a fault now; journaled first, reverted on every way out of the run like a
    /// scheduled one, and counted as a disruption (the recovery clock starts again from its end).
    Inject(FaultChoice),
    /// Send `rate` requests per second for `duration` from now (a spike, or a lull), then the
    /// scenario's own rate again.
    SetRate { rate: f64, duration: Duration },
    /// A person's mark on the timeline, about fault `fault` (by its name in the run; required
    /// for `detected` and `mitigated`).
    Mark { kind: MarkKind, author: String, text: String, fault: Option<String> },
    /// Credit mark number `id` (a `detected` or `mitigated` one) to fault `fault` instead.
    MoveMark { id: u32, fault: String },
    /// Stop the run: every fault is reverted and the report written, as on Ctrl-C.
    Stop { reason: String },
}

/// Which fault to inject.
#[derive(Debug, Clone)]
pub enum FaultChoice {
    /// By name, from the scenario's `manual:` catalog.
    Named(String),
    /// By number in the catalog, from 1 (as `siege plan` lists them).
    Numbered(usize),
    /// A fault given in full, already validated like a catalog entry.
    Given(ManualFault),
}

/// Why a command was not carried out. The run goes on, but after [`Refused::Failed`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("refused: {0}")]
    UnknownFault(String),
    /// Not at this point of the run (still measuring the baseline, too close to the end of the
    /// load for a recovery to be judged…).
    #[error("refused: {0}")]
    NotNow(String),
    /// The backend will not do it (nothing to select, a blast-radius limit…); nothing was
    /// changed.
    #[error("refused: {0}")]
    Target(String),
    #[error("refused: {0}")]
    Invalid(String),
    /// Not a refusal: the injection was tried and failed, so the fault may be half in place;
    /// the run is ending and reverting everything, as for a scheduled fault.
    #[error("the injection failed, the run ends and reverts every fault: {0}")]
    Failed(String),
    /// The run has ended or is ending; it takes no more commands.
    #[error("the run has ended")]
    Ended,
}

/// What a command did, in words for the one who sent it.
pub type Reply = Result<String, Refused>;

/// A command with the way back to its sender.
pub(super) struct Envelope {
    pub(super) command: RunCommand,
    pub(super) reply: oneshot::Sender<Reply>,
}

/// Sends commands to one run; cheap to clone.
#[derive(Debug, Clone)]
pub struct Commander {
    tx: mpsc::Sender<Envelope>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.command.fmt(f)
    }
}

impl Commander {
    pub(super) fn channel() -> (Commander, mpsc::Receiver<Envelope>) {
        let (tx, rx) = mpsc::channel(64);
        (Commander { tx }, rx)
    }

    /// Sends `command` and waits for the run's answer.
    pub async fn send(&self, command: RunCommand) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Envelope { command, reply }).await.map_err(|_| Refused::Ended)?;
        answer.await.unwrap_or(Err(Refused::Ended))
    }
}
