//! The daemon: scheduled resilience checks, an HTTP API and run history.
