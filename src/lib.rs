//! siege: a chaos / game-day runner.
//!
//! Data flow of a run (see `docs/ARCHITECTURE.md`):
//!
//! ```text
//! scenario (YAML) --validate--> Scenario --> engine --+--> backend (lab | aws): inject / revert / sample
//!                                                    +--> load: open-model HTTP load, per-second windows
//!                                                    +--> observe: steady state, stop conditions, verdict
//!                                                    +--> events --> progress, journal, report
//! ```

pub mod backend;
pub mod cli;
pub mod compare;
pub mod daemon;
pub mod engine;
pub mod exit;
pub mod faults;
pub mod lab;
pub mod lease;
pub mod load;
pub mod observe;
pub mod redact;
pub mod report;
pub mod scenario;
pub mod util;
pub mod vocab;
