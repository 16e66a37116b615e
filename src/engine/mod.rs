//! The run engine: validate → preflight → steady state before → load + fault timeline with stop
//! conditions → revert → recovery → verdict and report. One dispatcher loop ([`run`]); everything
//! the run does is emitted as [`events::Event`]s that the progress display, the journal and the
//! report consume.

pub mod events;
pub mod journal;
pub mod progress;
pub mod record;
pub mod run;

pub use run::{Interrupts, RunOptions, RunOutcome, disruption_span};
