//! The daemon: scheduled resilience checks, an HTTP API and run history.
//!
//! The groundwork that does not depend on the engine: the history [`store`], the [`schedule`]
//! arithmetic (due times, jitter, catch-up) and the daemon's [`config`] file.

pub mod auth;
pub mod config;
pub mod metrics;
pub mod runs;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod trend;
pub mod webhook;
