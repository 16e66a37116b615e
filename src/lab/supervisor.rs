//! The lab supervisor (the `siege lab up` process): starts the database cluster, the balancer and
//! the service, serves the token-protected control API, and tears everything down — every child
//! process stopped and reaped — when asked to stop.
//!
//! Control API (JSON over HTTP on 127.0.0.1, `Authorization: Bearer TOKEN` on all but ping):
//!
//! | method and path | does |
//! |---|---|
//! | `GET /v1/ping` | `{"lab":"siege","pid":N}`, no token needed |
//! | `GET /v1/state?events_since=N` | [`LabState`]: tasks, targets, DB, secret, faults, events after N |
//! | `GET /v1/metrics?since=UNIX` | balancer metrics per second after that second |
//! | `POST /v1/tasks/kill` | `{tasks, signal: "SIGKILL"\|"SIGTERM"}` |
//! | `POST /v1/tasks/latency` | `{tasks, delay_ms, jitter_ms}` |
//! | `POST /v1/tasks/stress` | `{tasks, percent, duration_ms}` |
//! | `POST /v1/tasks/clear` | `{tasks (empty: all), what: "latency"\|"stress"\|"all"}` |
//! | `POST /v1/db/failover` | `{outage_ms?}` |
//! | `POST /v1/db/promote` | end a failover window now (no-op with a writer) |
//! | `POST /v1/secret/rotate` | new current version; the DB accepts only it |
//! | `POST /v1/secret/restore` | `{version, replace_stale}` make `version` current again |
//! | `POST /v1/service/redeploy` | `{stale_only}` rolling replacement |
//! | `POST /v1/service` | `{desired?, autoscaling?}` |
//! | `POST /v1/lease` | `{run_id, ttl_ms, renew?}` take the lease, or renew it (the holder only): `{granted, lease}` (the holder's when refused) |
//! | `POST /v1/lease/release` | `{run_id}` release it if that run holds it: `{released}` |
//! | `POST /v1/shutdown` | stop the lab |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::balancer::{Balancer, HealthConfig, MetricsSecond, TargetHealth, TargetView};
use super::db::{Cluster, ClusterView};
use super::events::{Event, Events};
use super::secrets::{SecretStore, SecretView};
use super::service::{AutoscalingConfig, Service, ServiceConfig, ServiceView};
use super::web::{self, Resp};
use crate::lease::{self, Lease};

/// Everything `siege lab up` is configured with.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub service: ServiceConfig,
    pub balancer_port: u16,
    pub control_port: u16,
    pub health: HealthConfig,
    pub target_timeout: Duration,
    pub failover_outage: Duration,
    /// Print events on stderr as they happen.
    pub echo_events: bool,
}

/// The state of the whole lab, as returned by `GET /v1/state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub pid: u32,
    pub balancer_url: String,
    pub control_url: String,
    pub service: ServiceView,
    pub targets: Vec<TargetView>,
    pub db: ClusterView,
    pub secret: SecretView,
    /// Active faults, one line each.
    pub faults: Vec<String>,
    pub events: Vec<Event>,
    pub last_event: u64,
    /// The last complete second of balancer metrics.
    pub metrics: Option<MetricsSecond>,
    /// Every child process of the lab (tasks and DB nodes).
    pub child_pids: Vec<u32>,
    /// The run holding the lab, unless the lab is free (see [`crate::lease`]).
    #[serde(default)]
    pub lease: Option<Lease>,
}

/// Where a running lab can be reached: printed by `--ready-json`, stored in `lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabAddress {
    pub control_url: String,
    pub token: String,
    pub balancer_url: String,
    pub pid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("start the database cluster: {0}")]
    Db(#[from] super::db::DbError),
    #[error("bind {what} on 127.0.0.1:{port}: {source}")]
    Bind { what: &'static str, port: u16, source: std::io::Error },
}

/// A running lab.
pub struct Lab {
    pub address: LabAddress,
    balancer: Arc<Balancer>,
    cluster: Arc<Cluster>,
    service: Arc<Service>,
    secrets: Arc<SecretStore>,
    events: Arc<Events>,
    /// The lease of the run under way, if any: one run at a time drives the lab.
    lease: std::sync::Mutex<Option<Lease>>,
    cancel: CancellationToken,
    /// Fired by `POST /v1/shutdown`.
    pub stop: CancellationToken,
}

impl Lab {
    /// Starts every part of the lab. Tasks become healthy shortly after; see [`Lab::wait_ready`].
    pub async fn start(cfg: LabConfig) -> Result<Arc<Lab>, LabError> {
        let cancel = CancellationToken::new();
        let events = Arc::new(Events::new(cfg.echo_events));
        let secrets = Arc::new(SecretStore::default());
        let (_, password) = secrets.current().unwrap_or_default();
        let cluster = Cluster::start(&password, cfg.failover_outage, events.clone(), cancel.clone()).await?;
        let balancer =
            Balancer::start(cfg.balancer_port, cfg.health, cfg.target_timeout, events.clone(), cancel.clone())
                .await
                .map_err(|source| LabError::Bind { what: "the balancer", port: cfg.balancer_port, source })?;
        let control = TcpListener::bind(("127.0.0.1", cfg.control_port)).await.map_err(|source| LabError::Bind {
            what: "the control API",
            port: cfg.control_port,
            source,
        })?;
        let control_port =
            control.local_addr().map_err(|source| LabError::Bind { what: "the control API", port: 0, source })?.port();
        let service = Service::start(
            cfg.service.clone(),
            balancer.clone(),
            cluster.clone(),
            secrets.clone(),
            events.clone(),
            cancel.clone(),
        );
        let lab = Arc::new(Lab {
            address: LabAddress {
                control_url: format!("http://127.0.0.1:{control_port}"),
                token: super::proc::random_hex(),
                balancer_url: format!("http://127.0.0.1:{}", balancer.port),
                pid: std::process::id(),
            },
            balancer,
            cluster,
            service,
            secrets,
            events,
            lease: std::sync::Mutex::new(None),
            cancel: cancel.clone(),
            stop: CancellationToken::new(),
        });
        let me = lab.clone();
        tokio::spawn(web::serve(control, cancel, move |req, peer| me.clone().control(req, peer)));
        lab.events.push(format!(
            "lab: balancer {} control {} db endpoint {}",
            lab.address.balancer_url,
            lab.address.control_url,
            lab.cluster.view().endpoint
        ));
        Ok(lab)
    }

    /// Waits until the desired number of targets is healthy; `false` on timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let desired = self.service.view().desired;
            if self.balancer.counts().0 >= desired {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Stops every child process (tasks, DB nodes) and reaps them; closes every listener.
    pub async fn shutdown(&self) {
        self.events.push("lab: shutting down");
        self.service.stop_all().await;
        self.cluster.stop().await;
        self.cancel.cancel();
    }

    pub fn state(&self, events_since: u64) -> LabState {
        let service = self.service.view();
        let secret = self.secrets.view();
        let db = self.cluster.view();
        let mut faults = Vec::new();
        for t in &service.tasks {
            if let Some((d, j)) = t.latency_ms {
                faults.push(format!("latency {d}ms ±{j}ms on {}", t.id));
            }
            if let Some((p, left)) = t.stress {
                faults.push(format!("cpu-stress {p}% on {} ({}s left)", t.id, left / 1000));
            }
        }
        if db.failover_in_progress {
            faults.push("db-failover: the cluster has no writer".into());
        }
        let stale: Vec<&str> = service
            .tasks
            .iter()
            .filter(|t| t.secret_version != secret.current_version && t.status != super::service::TaskStatus::Stopped)
            .map(|t| t.id.as_str())
            .collect();
        if !stale.is_empty() {
            faults.push(format!(
                "secret-drift: {} hold a stale secret (current v{})",
                stale.join(", "),
                secret.current_version
            ));
        }
        let mut child_pids = self.service.pids();
        child_pids.extend(self.cluster.pids());
        LabState {
            pid: std::process::id(),
            balancer_url: self.address.balancer_url.clone(),
            control_url: self.address.control_url.clone(),
            service,
            targets: self.balancer.targets(),
            db,
            secret,
            faults,
            events: self.events.since(events_since),
            last_event: self.events.last_seq(),
            metrics: self.balancer.metrics(0).pop(),
            child_pids,
            lease: self.lease_holder(),
        }
    }

    /// The lease in force, if any (an expired one is no lease).
    fn lease_holder(&self) -> Option<Lease> {
        let now = std::time::SystemTime::now();
        self.lease.lock().ok()?.clone().filter(|l| !l.expired(now))
    }

    /// `POST /v1/lease`: grants the lease to `run_id` unless another run holds it; with `renew`,
    /// only renews it for its holder.
    fn take_lease(&self, run_id: &str, ttl: Duration, renew: bool) -> serde_json::Value {
        let Ok(mut slot) = self.lease.lock() else { return json!({ "granted": false, "lease": null }) };
        let now = std::time::SystemTime::now();
        let granted = if renew {
            lease::renew(slot.as_ref(), run_id, ttl, now)
        } else {
            lease::grant(slot.as_ref(), run_id, ttl, now).map_err(Some)
        };
        match granted {
            Ok(l) => {
                if slot.as_ref().is_none_or(|old| old.run_id != l.run_id) {
                    self.events.push(format!("lab: leased to run {run_id}"));
                }
                *slot = Some(l.clone());
                json!({ "granted": true, "lease": l })
            }
            Err(holder) => json!({ "granted": false, "lease": holder }),
        }
    }

    /// `POST /v1/lease/release`: frees the lab if `run_id` holds it.
    fn release_lease(&self, run_id: &str) -> bool {
        let Ok(mut slot) = self.lease.lock() else { return false };
        if slot.as_ref().is_some_and(|l| l.run_id == run_id) {
            *slot = None;
            self.events.push(format!("lab: lease of run {run_id} released"));
            return true;
        }
        false
    }

    async fn control(self: Arc<Self>, req: hyper::Request<hyper::body::Incoming>, _peer: SocketAddr) -> Resp {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        if path == "/v1/ping" {
            return web::json(StatusCode::OK, &json!({ "lab": "siege", "pid": std::process::id() }));
        }
        let authorized = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t == self.address.token);
        if !authorized {
            return web::json(StatusCode::UNAUTHORIZED, &json!({ "error": "missing or wrong bearer token" }));
        }
        let num = |k: &str| web::query_param(req.uri(), k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if method == http::Method::GET {
            return match path.as_str() {
                "/v1/state" => web::json(StatusCode::OK, &json!(self.state(num("events_since")))),
                "/v1/metrics" => web::json(StatusCode::OK, &json!(self.balancer.metrics(num("since")))),
                _ => not_found(),
            };
        }
        if method != http::Method::POST {
            return web::json(StatusCode::METHOD_NOT_ALLOWED, &json!({ "error": "method not allowed" }));
        }
        let body: serde_json::Value = match web::read_body(req, 64 * 1024).await {
            Ok((_, b)) if b.is_empty() => json!({}),
            Ok((_, b)) => match serde_json::from_slice(&b) {
                Ok(v) => v,
                Err(e) => return bad_request(&format!("invalid JSON body: {e}")),
            },
            Err(e) => return bad_request(&e),
        };
        match self.post(&path, body).await {
            Ok(v) => web::json(StatusCode::OK, &v),
            Err((status, msg)) => web::json(status, &json!({ "error": msg })),
        }
    }

    async fn post(
        self: &Arc<Self>,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, (StatusCode, String)> {
        let bad = |m: String| (StatusCode::BAD_REQUEST, m);
        let tasks = || -> Result<Vec<String>, (StatusCode, String)> {
            match body.get("tasks") {
                None => Ok(Vec::new()),
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad(format!("tasks: {e}"))),
            }
        };
        let u = |k: &str| body.get(k).and_then(|v| v.as_u64());
        match path {
            "/v1/tasks/kill" => {
                let sig = match body.get("signal").and_then(|v| v.as_str()).unwrap_or("SIGKILL") {
                    "SIGKILL" => libc::SIGKILL,
                    "SIGTERM" => libc::SIGTERM,
                    s => return Err(bad(format!("signal must be SIGKILL or SIGTERM, not {s}"))),
                };
                Ok(json!({ "tasks": self.service.kill(&tasks()?, sig) }))
            }
            "/v1/tasks/latency" => {
                let (d, j) = (u("delay_ms").unwrap_or(0), u("jitter_ms").unwrap_or(0));
                Ok(json!({ "tasks": self.service.set_latency(&tasks()?, d, j).await }))
            }
            "/v1/tasks/stress" => {
                let p = u("percent").unwrap_or(0).min(10_000) as u32;
                let d = Duration::from_millis(u("duration_ms").unwrap_or(60_000));
                Ok(json!({ "tasks": self.service.stress(&tasks()?, p, d).await }))
            }
            "/v1/tasks/clear" => {
                let what = body.get("what").and_then(|v| v.as_str()).unwrap_or("all");
                if !matches!(what, "latency" | "stress" | "all") {
                    return Err(bad(format!("what must be latency, stress or all, not {what}")));
                }
                Ok(json!({ "tasks": self.service.clear(&tasks()?, what).await }))
            }
            "/v1/db/failover" => {
                let outage = u("outage_ms").map(Duration::from_millis);
                match self.cluster.failover(outage).await {
                    Ok((old, new)) => Ok(json!({ "old_writer": old, "new_writer": new })),
                    Err(e) => Err((StatusCode::CONFLICT, e.to_string())),
                }
            }
            "/v1/db/promote" => {
                self.cluster.promote().await;
                Ok(json!({ "writer": self.cluster.writer_name() }))
            }
            "/v1/secret/rotate" => {
                let (prev, new, pw) =
                    self.secrets.rotate().map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                self.cluster.set_password(&pw).await;
                self.events.push(format!("secret: {} rotated v{prev} -> v{new}", super::secrets::SECRET_NAME));
                Ok(json!({ "previous_version": prev, "current_version": new }))
            }
            "/v1/secret/restore" => {
                let v = u("version").ok_or_else(|| bad("version is required".into()))? as u32;
                let restored = self.secrets.restore(v).map_err(|e| bad(e.to_string()))?;
                if let Some(pw) = restored {
                    self.cluster.set_password(&pw).await;
                    self.events.push(format!("secret: {} v{v} restored as current", super::secrets::SECRET_NAME));
                }
                let replace = body.get("replace_stale").and_then(|v| v.as_bool()).unwrap_or(true);
                let replaced = if replace { self.service.redeploy(true) } else { Vec::new() };
                Ok(json!({ "current_version": v, "replacing": replaced }))
            }
            "/v1/service/redeploy" => {
                let stale_only = body.get("stale_only").and_then(|v| v.as_bool()).unwrap_or(false);
                Ok(json!({ "replacing": self.service.redeploy(stale_only) }))
            }
            "/v1/service" => {
                let desired = u("desired").map(|d| d.min(64) as u32);
                let autoscaling = match body.get("autoscaling") {
                    None => None,
                    Some(serde_json::Value::Null) => Some(None),
                    Some(v) => Some(Some(
                        serde_json::from_value::<AutoscalingConfig>(v.clone())
                            .map_err(|e| bad(format!("autoscaling: {e}")))?,
                    )),
                };
                self.service.configure(desired, autoscaling);
                Ok(json!(self.service.view()))
            }
            "/v1/lease" | "/v1/lease/release" => {
                let run_id = body.get("run_id").and_then(|v| v.as_str()).filter(|r| !r.is_empty());
                let run_id = run_id.ok_or_else(|| bad("run_id is required".into()))?;
                if path == "/v1/lease/release" {
                    return Ok(json!({ "released": self.release_lease(run_id) }));
                }
                let ttl = u("ttl_ms").filter(|t| (1..=lease::MAX_TTL.as_millis() as u64).contains(t));
                let ttl = ttl.ok_or_else(|| bad("ttl_ms must be between 1 and 3600000".into()))?;
                let renew = body.get("renew").and_then(|r| r.as_bool()).unwrap_or(false);
                Ok(self.take_lease(run_id, Duration::from_millis(ttl), renew))
            }
            "/v1/shutdown" => {
                self.stop.cancel();
                Ok(json!({ "stopping": true }))
            }
            _ => Err((StatusCode::NOT_FOUND, "not found".into())),
        }
    }
}

fn not_found() -> Resp {
    web::json(StatusCode::NOT_FOUND, &json!({ "error": "not found" }))
}

fn bad_request(msg: &str) -> Resp {
    web::json(StatusCode::BAD_REQUEST, &json!({ "error": msg }))
}

/// Whether a target is in rotation.
pub fn in_rotation(t: &TargetView) -> bool {
    t.health == TargetHealth::Healthy
}
