//! The lab's application load balancer: round robin over healthy targets, active health checks
//! (interval, timeout, healthy and unhealthy thresholds), ALB status semantics (502 when the
//! target connection fails, 503 when no target is healthy, 504 on target timeout) and metrics
//! per second named like ALB's CloudWatch metrics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::events::Events;
use super::web::{self, Resp};

/// Health check settings (ALB target group attributes).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HealthConfig {
    #[serde(with = "ms")]
    pub interval: Duration,
    #[serde(with = "ms")]
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

mod ms {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// Health of one target, as ALB reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetHealth {
    /// Registered, not yet passed `healthy_threshold` checks in a row.
    Initial,
    Healthy,
    Unhealthy,
}

/// The health check state machine of one target: consecutive results against the thresholds.
#[derive(Debug, Clone)]
pub struct HealthState {
    pub state: TargetHealth,
    ok_streak: u32,
    fail_streak: u32,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState { state: TargetHealth::Initial, ok_streak: 0, fail_streak: 0 }
    }
}

impl HealthState {
    /// Records one check result; returns the new state when it changed.
    pub fn observe(&mut self, ok: bool, cfg: &HealthConfig) -> Option<TargetHealth> {
        if ok {
            self.ok_streak += 1;
            self.fail_streak = 0;
            if self.state != TargetHealth::Healthy && self.ok_streak >= cfg.healthy_threshold.max(1) {
                self.state = TargetHealth::Healthy;
                return Some(self.state);
            }
        } else {
            self.fail_streak += 1;
            self.ok_streak = 0;
            if self.state != TargetHealth::Unhealthy && self.fail_streak >= cfg.unhealthy_threshold.max(1) {
                self.state = TargetHealth::Unhealthy;
                return Some(self.state);
            }
        }
        None
    }
}

struct Target {
    id: String,
    port: u16,
    pool: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    health: Mutex<HealthState>,
    last_reason: Mutex<String>,
    checks: CancellationToken,
}

enum ProxyError {
    /// Connecting or talking to the target failed: 502.
    Target,
}

impl Target {
    async fn send(&self, req: Request<Full<Bytes>>) -> Result<hyper::Response<Bytes>, ProxyError> {
        let pooled = self.pool.lock().ok().and_then(|mut p| {
            while let Some(s) = p.pop() {
                if s.is_ready() {
                    return Some(s);
                }
            }
            None
        });
        let mut sender = match pooled {
            Some(s) => s,
            None => {
                let stream = TcpStream::connect(("127.0.0.1", self.port)).await.map_err(|_| ProxyError::Target)?;
                let _ = stream.set_nodelay(true);
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|_| ProxyError::Target)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
        };
        let resp = sender.send_request(req).await.map_err(|_| ProxyError::Target)?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|_| ProxyError::Target)?.to_bytes();
        if let Ok(mut p) = self.pool.lock() {
            p.push(sender);
        }
        Ok(hyper::Response::from_parts(parts, body))
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    elb_502: AtomicU64,
    elb_503: AtomicU64,
    elb_504: AtomicU64,
    target_2xx: AtomicU64,
    target_3xx: AtomicU64,
    target_4xx: AtomicU64,
    target_5xx: AtomicU64,
    rt_sum_us: AtomicU64,
    rt_n: AtomicU64,
}

/// One second of balancer metrics, named like ALB's CloudWatch metrics.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricsSecond {
    /// Unix time of the start of this second.
    pub timestamp: u64,
    pub request_count: u64,
    #[serde(rename = "HTTPCode_ELB_5XX_Count")]
    pub elb_5xx: u64,
    #[serde(rename = "HTTPCode_ELB_502_Count")]
    pub elb_502: u64,
    #[serde(rename = "HTTPCode_ELB_503_Count")]
    pub elb_503: u64,
    #[serde(rename = "HTTPCode_ELB_504_Count")]
    pub elb_504: u64,
    #[serde(rename = "HTTPCode_Target_2XX_Count")]
    pub target_2xx: u64,
    #[serde(rename = "HTTPCode_Target_3XX_Count")]
    pub target_3xx: u64,
    #[serde(rename = "HTTPCode_Target_4XX_Count")]
    pub target_4xx: u64,
    #[serde(rename = "HTTPCode_Target_5XX_Count")]
    pub target_5xx: u64,
    /// Average seconds from sending to the target until its response (None without responses).
    pub target_response_time: Option<f64>,
    pub healthy_host_count: u32,
    pub un_healthy_host_count: u32,
}

/// A registered target as shown by `siege lab status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TargetView {
    pub id: String,
    pub port: u16,
    pub health: TargetHealth,
    /// Why the last check failed, if it did.
    pub reason: String,
}

/// The balancer.
pub struct Balancer {
    pub health: HealthConfig,
    pub target_timeout: Duration,
    pub port: u16,
    targets: Mutex<Vec<Arc<Target>>>,
    healthy: Mutex<Arc<Vec<Arc<Target>>>>,
    rr: AtomicUsize,
    counters: Counters,
    history: Mutex<VecDeque<MetricsSecond>>,
    events: Arc<Events>,
    cancel: CancellationToken,
}

const HISTORY: usize = 900;
const MAX_BODY: usize = 1 << 20;

impl Balancer {
    /// Binds `127.0.0.1:port` (0 for a free port) and starts serving and publishing metrics.
    pub async fn start(
        port: u16,
        health: HealthConfig,
        target_timeout: Duration,
        events: Arc<Events>,
        cancel: CancellationToken,
    ) -> std::io::Result<Arc<Balancer>> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let b = Arc::new(Balancer {
            health,
            target_timeout,
            port,
            targets: Mutex::default(),
            healthy: Mutex::new(Arc::new(Vec::new())),
            rr: AtomicUsize::new(0),
            counters: Counters::default(),
            history: Mutex::default(),
            events,
            cancel: cancel.clone(),
        });
        let me = b.clone();
        tokio::spawn(web::serve(listener, cancel.clone(), move |req, _| me.clone().proxy(req)));
        tokio::spawn(b.clone().publish(cancel));
        Ok(b)
    }

    /// Registers a target and starts health-checking it; it gets traffic once healthy.
    pub fn register(self: &Arc<Self>, id: &str, port: u16) {
        let t = Arc::new(Target {
            id: id.to_string(),
            port,
            pool: Mutex::default(),
            health: Mutex::default(),
            last_reason: Mutex::default(),
            checks: self.cancel.child_token(),
        });
        if let Ok(mut ts) = self.targets.lock() {
            ts.push(t.clone());
        }
        self.events.push(format!("balancer: registered target {id} (127.0.0.1:{port})"));
        tokio::spawn(self.clone().check_loop(t));
    }

    /// Removes a target (no more traffic, no more checks). Nothing when it is not registered.
    pub fn deregister(&self, id: &str) {
        let removed = self.targets.lock().ok().and_then(|mut ts| {
            let i = ts.iter().position(|t| t.id == id)?;
            Some(ts.remove(i))
        });
        if let Some(t) = removed {
            t.checks.cancel();
            self.rebuild_healthy();
            self.events.push(format!("balancer: deregistered target {id}"));
        }
    }

    pub fn targets(&self) -> Vec<TargetView> {
        let ts = self.targets.lock().map(|t| t.clone()).unwrap_or_default();
        ts.iter()
            .map(|t| TargetView {
                id: t.id.clone(),
                port: t.port,
                health: t.health.lock().map(|h| h.state).unwrap_or(TargetHealth::Unhealthy),
                reason: t.last_reason.lock().map(|r| r.clone()).unwrap_or_default(),
            })
            .collect()
    }

    /// (healthy, unhealthy-or-initial) target counts.
    pub fn counts(&self) -> (u32, u32) {
        let views = self.targets();
        let healthy = views.iter().filter(|t| t.health == TargetHealth::Healthy).count() as u32;
        (healthy, views.len() as u32 - healthy)
    }

    pub fn health_of(&self, id: &str) -> Option<TargetHealth> {
        self.targets().into_iter().find(|t| t.id == id).map(|t| t.health)
    }

    /// Metrics of completed seconds after unix second `since`.
    pub fn metrics(&self, since: u64) -> Vec<MetricsSecond> {
        self.history.lock().map(|h| h.iter().filter(|m| m.timestamp > since).cloned().collect()).unwrap_or_default()
    }

    fn rebuild_healthy(&self) {
        let ts = self.targets.lock().map(|t| t.clone()).unwrap_or_default();
        let healthy: Vec<Arc<Target>> = ts
            .into_iter()
            .filter(|t| t.health.lock().map(|h| h.state == TargetHealth::Healthy).unwrap_or(false))
            .collect();
        if let Ok(mut h) = self.healthy.lock() {
            *h = Arc::new(healthy);
        }
    }

    async fn check_loop(self: Arc<Self>, t: Arc<Target>) {
        let mut tick = tokio::time::interval(self.health.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = t.checks.cancelled() => return,
                _ = tick.tick() => {}
            }
            let url = format!("http://127.0.0.1:{}/healthz", t.port);
            let result = web::request(http::Method::GET, &url, None, None, self.health.timeout).await;
            let (ok, reason) = match result {
                Ok(r) if r.status == StatusCode::OK => (true, String::new()),
                Ok(r) => (false, format!("health check returned {}", r.status.as_u16())),
                Err(web::HttpError::Timeout(_)) => (false, "health check timed out".to_string()),
                Err(e) => (false, format!("health check failed: {e}")),
            };
            if t.checks.is_cancelled() {
                return;
            }
            if let Ok(mut r) = t.last_reason.lock() {
                *r = reason.clone();
            }
            let changed = t.health.lock().ok().and_then(|mut h| h.observe(ok, &self.health));
            if let Some(state) = changed {
                self.rebuild_healthy();
                let why = if ok { String::new() } else { format!(": {reason}") };
                self.events.push(format!(
                    "balancer: target {} is {}{why}",
                    t.id,
                    serde_json::json!(state).as_str().unwrap_or("?")
                ));
            }
        }
    }

    fn elb_error(&self, status: StatusCode, msg: &str) -> Resp {
        let c = match status.as_u16() {
            502 => &self.counters.elb_502,
            503 => &self.counters.elb_503,
            _ => &self.counters.elb_504,
        };
        c.fetch_add(1, Ordering::Relaxed);
        web::text(status, format!("{} {msg}\n", status.as_u16()))
    }

    async fn proxy(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Resp {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let healthy = self.healthy.lock().map(|h| h.clone()).unwrap_or_default();
        if healthy.is_empty() {
            return self
                .elb_error(StatusCode::SERVICE_UNAVAILABLE, "Service Temporarily Unavailable: no healthy target");
        }
        let t = healthy[self.rr.fetch_add(1, Ordering::Relaxed) % healthy.len()].clone();
        let (parts, body) = match web::read_body(req, MAX_BODY).await {
            Ok(x) => x,
            Err(e) => return web::text(StatusCode::BAD_REQUEST, format!("400 {e}\n")),
        };
        let mut out =
            Request::builder().method(parts.method).uri(parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
        for (k, v) in parts.headers.iter() {
            if !is_hop_by_hop(k) {
                out = out.header(k, v);
            }
        }
        let Ok(out) = out.header("x-forwarded-for", "127.0.0.1").body(Full::new(body)) else {
            return web::text(StatusCode::BAD_REQUEST, "400 bad request\n");
        };
        let start = Instant::now();
        match tokio::time::timeout(self.target_timeout, t.send(out)).await {
            Err(_) => self.elb_error(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"),
            Ok(Err(ProxyError::Target)) => self.elb_error(StatusCode::BAD_GATEWAY, "Bad Gateway"),
            Ok(Ok(resp)) => {
                let c = &self.counters;
                c.rt_sum_us.fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                c.rt_n.fetch_add(1, Ordering::Relaxed);
                match resp.status().as_u16() {
                    200..=299 => &c.target_2xx,
                    300..=399 => &c.target_3xx,
                    400..=499 => &c.target_4xx,
                    _ => &c.target_5xx,
                }
                .fetch_add(1, Ordering::Relaxed);
                let (mut parts, body) = resp.into_parts();
                let hop: Vec<http::HeaderName> = parts.headers.keys().filter(|k| is_hop_by_hop(k)).cloned().collect();
                for k in hop {
                    parts.headers.remove(k);
                }
                hyper::Response::from_parts(parts, Full::new(body))
            }
        }
    }

    /// Closes a metrics second at each wall-clock second boundary.
    async fn publish(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let to_next = Duration::from_secs(1).saturating_sub(Duration::from_nanos(now.subsec_nanos() as u64));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(to_next) => {}
            }
            let c = &self.counters;
            let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
            let (healthy, unhealthy) = self.counts();
            let (rt_sum, rt_n) = (take(&c.rt_sum_us), take(&c.rt_n));
            let (e2, e3, e4) = (take(&c.elb_502), take(&c.elb_503), take(&c.elb_504));
            let m = MetricsSecond {
                timestamp: now.as_secs(),
                request_count: take(&c.requests),
                elb_5xx: e2 + e3 + e4,
                elb_502: e2,
                elb_503: e3,
                elb_504: e4,
                target_2xx: take(&c.target_2xx),
                target_3xx: take(&c.target_3xx),
                target_4xx: take(&c.target_4xx),
                target_5xx: take(&c.target_5xx),
                target_response_time: (rt_n > 0).then(|| rt_sum as f64 / rt_n as f64 / 1e6),
                healthy_host_count: healthy,
                un_healthy_host_count: unhealthy,
            };
            if let Ok(mut h) = self.history.lock() {
                h.push_back(m);
                if h.len() > HISTORY {
                    h.pop_front();
                }
            }
        }
    }
}

fn is_hop_by_hop(k: &http::HeaderName) -> bool {
    matches!(
        k.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "content-length"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(h: u32, u: u32) -> HealthConfig {
        HealthConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_threshold: h,
            unhealthy_threshold: u,
        }
    }

    #[test]
    fn new_target_needs_healthy_threshold_successes() {
        let c = cfg(3, 2);
        let mut h = HealthState::default();
        assert_eq!(h.observe(true, &c), None);
        assert_eq!(h.observe(true, &c), None);
        assert_eq!(h.observe(true, &c), Some(TargetHealth::Healthy));
        assert_eq!(h.observe(true, &c), None);
    }

    #[test]
    fn unhealthy_after_consecutive_failures_only() {
        let c = cfg(2, 3);
        let mut h = HealthState { state: TargetHealth::Healthy, ok_streak: 5, fail_streak: 0 };
        assert_eq!(h.observe(false, &c), None);
        assert_eq!(h.observe(false, &c), None);
        // A success in between resets the streak.
        assert_eq!(h.observe(true, &c), None);
        assert_eq!(h.observe(false, &c), None);
        assert_eq!(h.observe(false, &c), None);
        assert_eq!(h.observe(false, &c), Some(TargetHealth::Unhealthy));
        assert_eq!(h.observe(true, &c), None);
        assert_eq!(h.observe(true, &c), Some(TargetHealth::Healthy));
    }
}
