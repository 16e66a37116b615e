//! The load driver: open-model (constant arrival rate with stages) or closed-model HTTP/1.1 load,
//! latency recorded in HdrHistograms from the *scheduled* send time (coordinated-omission
//! correct), one summary window per second.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::scenario::Stage;

/// Everything the workers need, resolved before the first request.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Full `http://host:port/path?query` URL.
    pub url: http::Uri,
    pub mode: Mode,
    pub duration: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Mode {
    /// Requests scheduled at `rate` per second, changed by `stages`; at most `max_connections`.
    Open { rate: f64, stages: Vec<Stage>, max_connections: usize },
    /// `connections` connections sending back to back.
    Closed { connections: usize },
}

/// Errors by class. `status_5xx` counts 5xx codes other than 502/503/504.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorCounts {
    pub connect: u64,
    pub reset: u64,
    pub timeout: u64,
    pub status_502: u64,
    pub status_503: u64,
    pub status_504: u64,
    pub status_5xx: u64,
    pub status_4xx: u64,
    pub other: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.connect
            + self.reset
            + self.timeout
            + self.status_502
            + self.status_503
            + self.status_504
            + self.status_5xx
            + self.status_4xx
            + self.other
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// One second of load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Window {
    /// Seconds since the load started (this window covers `[second, second + 1)`).
    pub second: u32,
    /// Requests completed (successfully or not) in this second.
    pub requests: u64,
    pub errors: ErrorCounts,
    /// Requests that were due but could not be sent on time (no connection free).
    pub missed: u64,
    /// Requests scheduled in this second (open model).
    pub scheduled: u64,
    pub latency_ms: Latency,
}

impl Window {
    pub fn error_rate(&self) -> f64 {
        let all = self.requests + self.missed;
        if all == 0 { 0.0 } else { (self.errors.total() + self.missed) as f64 / all as f64 }
    }
}

/// The whole run, as printed by `siege load --json`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct LoadReport {
    pub requests: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub errors: ErrorCounts,
    pub missed: u64,
    pub latency_ms: Latency,
    pub per_second: Vec<Window>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unsupported URL {0}: only http:// is supported")]
    Url(String),
}

/// Drives load as planned until `duration` elapses or `cancel` fires; sends each finished
/// second to `windows` as it closes.
pub async fn run(
    plan: LoadPlan,
    cancel: CancellationToken,
    windows: Option<mpsc::UnboundedSender<Window>>,
) -> Result<LoadReport, LoadError> {
    let _ = (plan, cancel, windows);
    Err(LoadError::Url("load driver not implemented yet".into()))
}

/// `siege load URL`: arguments.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Target URL (http://host:port/path).
    pub url: String,
    /// Open model: constant arrival rate, e.g. `1000/s` or `6000/m`.
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<String>,
    /// Closed model: this many connections sending back to back.
    #[arg(long, short = 'c')]
    pub concurrency: Option<usize>,
    /// How long to run, e.g. `10s`, `2m`.
    #[arg(long, short = 'd', default_value = "10s")]
    pub duration: String,
    /// Per-request timeout.
    #[arg(long, default_value = "2s")]
    pub timeout: String,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

/// `siege load`.
pub fn cmd_load(args: LoadArgs) -> anyhow::Result<crate::exit::Exit> {
    let _ = args;
    anyhow::bail!("siege load is not implemented yet")
}
