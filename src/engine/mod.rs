//! The run engine: validate → preflight → steady state before → load + fault timeline with stop
//! conditions → revert → recovery → verdict and run record. One dispatcher loop
//! (`run::dispatch`), started with [`start`]; everything the run does is emitted as
//! [`events::Event`]s, which the journal and the record builder see synchronously and every
//! other consumer (the progress display, a live view) reads from the run's [`bus`]. The engine
//! writes no report file and prints nothing: its consumers do, from the record.

mod balancer;
pub mod bus;
pub mod command;
pub mod events;
pub mod handle;
mod interrupt;
pub mod journal;
pub mod progress;
pub mod record;
pub mod run;
#[cfg(test)]
mod tests;

pub use command::{Commander, FaultChoice, Refused, Reply, RunCommand};
pub use handle::{RunHandle, RunPanicked, start};
pub use run::{Interrupter, RunOptions, RunOutcome, RunRequest, disruption_span};
