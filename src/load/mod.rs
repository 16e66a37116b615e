//! The load driver: open-model (constant arrival rate with stages) or closed-model HTTP/1.1 load,
//! latency recorded in HdrHistograms from the *scheduled* send time (coordinated-omission
//! correct), one summary window per second.
//!
//! [`run`] resolves the plan into per-worker parts and starts the workers (`worker`: one thread
//! each, one connection loop for both models, `http1`: the client connection); the open
//! model's arrival times come from `schedule`; `stats` merges what the workers record into
//! windows and the report. `siege load` (in `cli`) is the command-line face of it.

pub mod hdr;
mod http1;
mod schedule;
mod stats;
mod tls;
mod worker;

pub(crate) use http1::default_port;
pub use schedule::RateControl;
pub(crate) use tls::Tls;

use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::scenario::Stage;

/// Everything the workers need, resolved before the first request.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Full `http://` or `https://host:port/path?query` URL.
    pub url: http::Uri,
    pub mode: Mode,
    pub duration: Duration,
    pub timeout: Duration,
    /// `https://`: accept any certificate (self-signed test endpoints). Without it the
    /// certificate must chain to a root the platform trusts and name the URL's host.
    pub insecure_tls: bool,
    /// Which requests' send times each window notes (for the time to detect).
    pub notice: Notice,
}

/// The requests whose send times each [`Window`] notes: every one that failed or was missed, and
/// with `slow_after` every one slower than that (a latency check's bound), at 10 ms resolution
/// in milliseconds since `epoch` (the run's clock; the load's own start without one).
#[derive(Debug, Clone, Copy, Default)]
pub struct Notice {
    pub epoch: Option<Instant>,
    pub slow_after: Option<Duration>,
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
    /// The TLS handshake failed (certificate not trusted or not for the host, no common
    /// protocol, not TLS at all) or a TLS record was bad. Absent from reports of older versions.
    #[serde(default)]
    pub tls: u64,
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
    /// Every class with its display label, in a fixed order (for summaries and reports).
    pub fn classes(&self) -> [(&'static str, u64); 10] {
        [
            ("connect", self.connect),
            ("tls", self.tls),
            ("reset", self.reset),
            ("timeout", self.timeout),
            ("502", self.status_502),
            ("503", self.status_503),
            ("504", self.status_504),
            ("other 5xx", self.status_5xx),
            ("4xx", self.status_4xx),
            ("other", self.other),
        ]
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.tls += other.tls;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.status_502 += other.status_502;
        self.status_503 += other.status_503;
        self.status_504 += other.status_504;
        self.status_5xx += other.status_5xx;
        self.status_4xx += other.status_4xx;
        self.other += other.other;
    }

    pub fn total(&self) -> u64 {
        self.connect
            + self.tls
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
    /// This second's latency histogram (microseconds) in the V2 encoding of [`hdr`]: what a
    /// span of seconds' percentiles are computed from, merged. Empty when not recorded (a fake
    /// load); not part of `siege load --json` or the events. Shared, as windows are cloned.
    #[serde(skip)]
    pub latency_hist: std::sync::Arc<[u8]>,
    /// When the requests that failed or were missed, completed (or given up) in this second,
    /// were due: milliseconds since [`Notice::epoch`], sorted, one per 10 ms. Not serialized.
    #[serde(skip)]
    pub failed_at_ms: std::sync::Arc<[u32]>,
    /// The same for the requests slower than [`Notice::slow_after`].
    #[serde(skip)]
    pub slow_at_ms: std::sync::Arc<[u32]>,
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
    /// Requests given up after waiting longer than the timeout for a free connection (open model).
    pub missed: u64,
    /// Requests the schedule called for (open model; 0 in the closed model).
    #[serde(default)]
    pub scheduled: u64,
    /// Connections opened.
    #[serde(default)]
    pub connections: usize,
    /// Latency from the scheduled send time: what users of the service experienced.
    pub latency_ms: Latency,
    /// Latency from the actual send time, as a load tool without coordinated-omission correction
    /// reports it; shown for comparison only.
    #[serde(default)]
    pub uncorrected_latency_ms: Latency,
    /// The first TLS error (`https://`), e.g. why the certificate was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_error: Option<String>,
    pub per_second: Vec<Window>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unsupported URL {0}: expected http:// or https://")]
    Url(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("invalid load plan: {0}")]
    Plan(String),
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("load worker failed: {0}")]
    Worker(String),
}

/// The default bound on connections in the open model: enough for 100 requests per second to
/// each stall for 2.5 s before any has to wait, few enough not to exhaust a small server's file
/// descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Above this rate per worker thread the open model uses another thread (up to the cores).
const RATE_PER_WORKER: f64 = 10_000.0;
/// Above this many connections the closed model uses another worker thread (up to the cores).
/// One thread keeps 100 connections busy at well over 100,000 requests/s; a second one only
/// adds sleeps and wake-ups when the server shares the machine (bench/load-cpu.sh: with one
/// worker per core on 2 cores, 19 times the context switches and 0.81x the requests per
/// CPU-second of one worker, against a local nginx at 50 connections).
const CONNECTIONS_PER_WORKER: usize = 100;

/// Drives load as planned until `duration` elapses or `cancel` fires; sends each finished
/// second to `windows` as it closes (within a few milliseconds).
///
/// At the end of the duration no new request is sent; requests in flight and requests still
/// waiting for a connection finish within their timeout (or are counted as missed) and count in
/// the last window. On `cancel` everything stops at once and requests in flight are not counted.
pub async fn run(
    plan: LoadPlan,
    cancel: CancellationToken,
    windows: Option<mpsc::UnboundedSender<Window>>,
) -> Result<LoadReport, LoadError> {
    run_controlled(plan, cancel, windows, None).await
}

/// For an `https://` plan that verifies certificates: one handshake with the target, failing
/// only when the server's certificate is rejected, saying why in words. A run
/// checks this before its baseline, since no request of the run could succeed; anything else
/// (no answer, a reset) is left to the load itself to measure.
pub async fn check_certificate(plan: &LoadPlan) -> Result<(), LoadError> {
    if plan.url.scheme_str() != Some("https") || plan.insecure_tls {
        return Ok(());
    }
    let host = plan.url.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = plan.url.port_u16().unwrap_or(443);
    let tls = tls::Tls::new(&host, false).map_err(LoadError::Tls)?;
    let Ok(Ok(mut addrs)) = tokio::time::timeout(plan.timeout, tokio::net::lookup_host((host.as_str(), port))).await
    else {
        return Ok(());
    };
    let Some(addr) = addrs.next() else { return Ok(()) };
    let Ok(Ok(tcp)) = tokio::time::timeout(plan.timeout, tokio::net::TcpStream::connect(addr)).await else {
        return Ok(());
    };
    match tokio::time::timeout(plan.timeout, tls.handshake(tcp)).await {
        Ok(Err(e)) if tls::is_certificate_error(&e) => Err(LoadError::Tls(tls::describe(&e))),
        _ => Ok(()),
    }
}

/// [`run`], with the open model's rate changed while it runs by the stages set on `control`.
pub async fn run_controlled(
    plan: LoadPlan,
    cancel: CancellationToken,
    windows: Option<mpsc::UnboundedSender<Window>>,
    control: Option<RateControl>,
) -> Result<LoadReport, LoadError> {
    let request = http1::request_bytes(&plan.url).map_err(|_| LoadError::Url(plan.url.to_string()))?;
    let host = plan.url.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let https = plan.url.scheme_str() == Some("https");
    let port = plan.url.port_u16().or_else(|| http1::default_port(&plan.url)).unwrap_or(80);
    if plan.duration.is_zero() {
        return Err(LoadError::Plan("the duration must be more than zero".into()));
    }
    if plan.timeout.is_zero() {
        return Err(LoadError::Plan("the timeout must be more than zero".into()));
    }
    // IPv4 first: `localhost` often resolves to `::1` first while local servers bind 127.0.0.1.
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .and_then(|a| {
            let mut all: Vec<std::net::SocketAddr> = a.collect();
            all.sort_by_key(|a| a.is_ipv6());
            all.into_iter().next().ok_or_else(|| std::io::Error::other("no address found"))
        })
        .map_err(|source| LoadError::Resolve { host: host.clone(), source })?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = match &plan.mode {
        Mode::Closed { connections } => {
            if *connections == 0 {
                return Err(LoadError::Plan("at least one connection is needed".into()));
            }
            cores.min(connections.div_ceil(CONNECTIONS_PER_WORKER))
        }
        Mode::Open { rate, stages, max_connections } => {
            let peak = schedule::Schedule::peak_rate(*rate, stages);
            if !peak.is_finite() || *rate < 0.0 || stages.iter().any(|s| s.rate.per_second < 0.0) {
                return Err(LoadError::Plan("rates must be finite and not negative".into()));
            }
            if *max_connections == 0 {
                return Err(LoadError::Plan("at least one connection is needed".into()));
            }
            let wanted = (peak / RATE_PER_WORKER).ceil().max(1.0) as usize;
            wanted.min(cores).min(*max_connections)
        }
    };
    let tls = if https { Some(tls::Tls::new(&host, plan.insecure_tls).map_err(LoadError::Tls)?) } else { None };
    let target = Arc::new(worker::Target { addr, request, tls });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = cancel.child_token();
    let start = Instant::now();
    // Worker `i` of `n` takes an even share of `total`.
    let share = |total: usize, i: usize| total / workers + usize::from(i < total % workers);
    for i in 0..workers {
        let source = match &plan.mode {
            Mode::Closed { connections } => worker::SourceSpec::Closed { connections: share(*connections, i) },
            Mode::Open { rate, stages, max_connections } => worker::SourceSpec::Open {
                schedule: match &control {
                    Some(c) => schedule::Schedule::new(*rate, stages, plan.duration, i, workers).controlled(c),
                    None => schedule::Schedule::new(*rate, stages, plan.duration, i, workers),
                },
                max_connections: share(*max_connections, i),
            },
        };
        let spec = worker::WorkerSpec {
            target: target.clone(),
            source,
            start,
            duration: plan.duration,
            timeout: plan.timeout,
            notice: stats::Noticing::new(plan.notice, start),
            cancel: stop.clone(),
            tx: tx.clone(),
        };
        if let Err(e) = worker::spawn(format!("siege-load-{i}"), spec) {
            stop.cancel();
            return Err(LoadError::Worker(format!("cannot start a thread: {e}")));
        }
    }
    drop(tx);
    let mut agg = stats::Aggregator::new(workers, windows);
    let mut failure = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            stats::Msg::Second { second, slot } => agg.second(second, slot),
            stats::Msg::Done { uncorrected, connections, stopped, tls_error } => {
                agg.done(&uncorrected, connections, stopped, tls_error)
            }
            stats::Msg::Failed(e) => {
                stop.cancel();
                failure = Some(e);
            }
        }
    }
    if agg.done < workers {
        return Err(LoadError::Worker(failure.unwrap_or_else(|| "a worker stopped unexpectedly".into())));
    }
    let stopped = agg.stopped.unwrap_or_else(Instant::now);
    let elapsed = stopped.saturating_duration_since(start).min(plan.duration);
    Ok(agg.finish(elapsed))
}
