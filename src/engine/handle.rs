//! The run API: [`start`] a run from a [`RunRequest`], then watch it, interrupt it and await its
//! outcome through the [`RunHandle`]. The CLI, the daemon and tests all start runs this way.

use std::path::PathBuf;

use tokio::task::JoinHandle;

use super::bus::{Bus, DEFAULT_CAPACITY, Subscription};
use super::command::Commander;
use super::journal::{self, Journal};
use super::run::{self, Emitter, Interrupter, RunOutcome, RunRequest};
use crate::backend::Connection;

/// A run in progress.
pub struct RunHandle {
    run_id: String,
    bus: Bus,
    interrupter: Interrupter,
    commander: Commander,
    journal: PathBuf,
    /// To reconnect after a panic, as the run connected.
    connection: Connection,
    task: JoinHandle<RunOutcome>,
}

/// The run panicked. Whatever its journal still listed was reverted from the journal (`lines`
/// say what happened; `revert_failed` when something may still be in place).
#[derive(Debug, thiserror::Error)]
#[error("the run panicked: {message}")]
pub struct RunPanicked {
    pub message: String,
    pub lines: Vec<String>,
    pub revert_failed: bool,
}

/// Starts a run on the current tokio runtime. Nothing is checked here: the scenario is already
/// validated, and everything that can go wrong later ends up in the outcome's verdict.
pub fn start(req: RunRequest) -> RunHandle {
    start_with_capacity(req, DEFAULT_CAPACITY)
}

/// [`start`] with a live event buffer of `capacity` events per subscriber.
pub fn start_with_capacity(req: RunRequest, capacity: usize) -> RunHandle {
    start_on(req, capacity, None)
}

/// A run on a target already connected (the in-memory one of the engine's tests).
#[cfg(test)]
pub(crate) fn start_connected(req: RunRequest, capacity: usize, backend: crate::backend::Backend) -> RunHandle {
    start_on(req, capacity, Some(backend))
}

fn start_on(req: RunRequest, capacity: usize, connected: Option<crate::backend::Backend>) -> RunHandle {
    let run_id = run::new_run_id(&req.scenario.name);
    let (bus, publisher) = Bus::new(capacity);
    let interrupter = Interrupter::default();
    let journal = journal::path_in(&req.journal_dir, &run_id);
    let connection = req.connection.clone();
    let em =
        Emitter::new(run_id.clone(), Journal::in_dir(req.journal_dir.clone()), publisher, connection.secrets.clone());
    let (commander, commands) = Commander::channel();
    let task = tokio::spawn(run::run(req, run_id.clone(), em, interrupter.clone(), commands, connected));
    RunHandle { run_id, bus, interrupter, commander, journal, connection, task }
}

impl RunHandle {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Every event of the run so far, then the live ones; as many subscriptions as wanted.
    pub fn subscribe(&self) -> Subscription {
        self.bus.subscribe()
    }

    /// The run's bus, to subscribe from elsewhere (it outlives the handle).
    pub fn bus(&self) -> Bus {
        self.bus.clone()
    }

    /// Interrupts the run (see [`Interrupter::interrupt`]); true when this one hurries.
    pub fn interrupt(&self, why: &str) -> bool {
        self.interrupter.interrupt(why)
    }

    /// What sends the run commands (inject, rate, marks, stop); as many clones as wanted.
    pub fn commander(&self) -> Commander {
        self.commander.clone()
    }

    /// What interrupts the run, to hand to a signal handler.
    pub fn interrupter(&self) -> Interrupter {
        self.interrupter.clone()
    }

    /// Waits for the run to end. A run that panicked has its faults reverted from its journal
    /// before this returns.
    pub async fn outcome(self) -> Result<RunOutcome, RunPanicked> {
        match self.task.await {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                let message = if e.is_panic() {
                    let p = e.into_panic();
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into())
                } else {
                    e.to_string()
                };
                let r = journal::recover_file(&self.journal, &self.connection).await;
                Err(RunPanicked { message, lines: r.lines, revert_failed: r.failed })
            }
        }
    }
}
