//! The daemon: scheduled resilience checks, an HTTP API and run history.
//!
//! The history [`store`], the [`schedule`] arithmetic (due times, jitter, catch-up), the
//! daemon's [`config`] file, its token ([`auth`]), the run manager ([`runs`]), the timer loop
//! ([`scheduler`]) and the HTTP API ([`server`]), with the game-day page ([`web`]).

pub mod access;
pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod lock;
pub mod metrics;
pub mod runs;
pub mod scenarios;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod trend;
pub mod web;
pub mod webhook;
