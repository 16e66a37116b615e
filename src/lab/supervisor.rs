//! The lab supervisor (the `siege lab up` process): starts the database cluster, the balancer and
//! the service, serves the token-protected control API, and tears everything down — every child
//! process stopped and reaped — when asked to stop.
//!
//! Control API (JSON over HTTP on 127.0.0.1, `Authorization: Bearer TOKEN` on all but ping). Each
//! `POST` is a request type of `control` (shared with the client), routed by one table (`ROUTES`):
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

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::balancer::{Balancer, HealthConfig, MetricsSecond, TargetHealth, TargetView};
use super::control::{
    Call, ClearTasks, ConfigureService, DelayTasks, FailOver, FailedOver, KillTasks, LeaseAnswer, Promote, Promoted,
    Redeploy, ReleaseLease, Released, Replacing, RestoreSecret, Restored, RotateSecret, Rotated, Shutdown, Stopping,
    StressTasks, TakeLease, Tasks,
};
use super::db::{Cluster, ClusterView};
use super::events::{Event, Events};
use super::secrets::{SecretStore, SecretView};
use super::service::{Service, ServiceConfig, ServiceView};
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
    fn take_lease(&self, run_id: &str, ttl: Duration, renew: bool) -> LeaseAnswer {
        let Ok(mut slot) = self.lease.lock() else { return LeaseAnswer { granted: false, lease: None } };
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
                LeaseAnswer { granted: true, lease: Some(l) }
            }
            Err(holder) => LeaseAnswer { granted: false, lease: holder },
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
        let Some(handler) = ROUTES.get(path.as_str()) else { return not_found() };
        let body = match web::read_body(req, 64 * 1024).await {
            Ok((_, b)) => b,
            Err(e) => return bad_request(&e),
        };
        match handler(self.clone(), body).await {
            Ok(v) => web::json(StatusCode::OK, &v),
            Err((status, msg)) => web::json(status, &json!({ "error": msg })),
        }
    }
}

type Answer = Result<serde_json::Value, (StatusCode, String)>;
type Handler = Box<dyn Fn(Arc<Lab>, bytes::Bytes) -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync>;

/// Every `POST` of the control API and its handler, by path: each request is read into its type
/// of [`control`] (absent keys take their defaults; a malformed body is `400`).
static ROUTES: LazyLock<HashMap<&'static str, Handler>> = LazyLock::new(|| {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let mut t = HashMap::new();
    on(&mut t, |lab, c: KillTasks| async move { Ok(Tasks { tasks: lab.service.kill(&c.tasks, c.signal.number()) }) });
    on(&mut t, |lab, c: DelayTasks| async move {
        Ok(Tasks { tasks: lab.service.set_latency(&c.tasks, c.delay_ms, c.jitter_ms).await })
    });
    on(&mut t, |lab, c: StressTasks| async move {
        let d = Duration::from_millis(c.duration_ms);
        Ok(Tasks { tasks: lab.service.stress(&c.tasks, c.percent.min(10_000), d).await })
    });
    on(
        &mut t,
        |lab, c: ClearTasks| async move { Ok(Tasks { tasks: lab.service.clear(&c.tasks, c.what.name()).await }) },
    );
    on(&mut t, |lab, c: FailOver| async move {
        match lab.cluster.failover(c.outage_ms.map(Duration::from_millis)).await {
            Ok((old_writer, new_writer)) => Ok(FailedOver { old_writer, new_writer }),
            Err(e) => Err((StatusCode::CONFLICT, e.to_string())),
        }
    });
    on(&mut t, |lab, _: Promote| async move {
        lab.cluster.promote().await;
        Ok(Promoted { writer: lab.cluster.writer_name() })
    });
    on(&mut t, |lab, _: RotateSecret| async move {
        let (prev, new, pw) = lab.secrets.rotate().map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        lab.cluster.set_password(&pw).await;
        lab.events.push(format!("secret: {} rotated v{prev} -> v{new}", super::secrets::SECRET_NAME));
        Ok(Rotated { previous_version: prev, current_version: new })
    });
    on(&mut t, move |lab, c: RestoreSecret| async move {
        let v = c.version;
        let restored = lab.secrets.restore(v).map_err(|e| bad(e.to_string()))?;
        if let Some(pw) = restored {
            lab.cluster.set_password(&pw).await;
            lab.events.push(format!("secret: {} v{v} restored as current", super::secrets::SECRET_NAME));
        }
        let replacing = if c.replace_stale { lab.service.redeploy(true) } else { Vec::new() };
        Ok(Restored { current_version: v, replacing })
    });
    on(&mut t, |lab, c: Redeploy| async move { Ok(Replacing { replacing: lab.service.redeploy(c.stale_only) }) });
    on(&mut t, |lab, c: ConfigureService| async move {
        lab.service.configure(c.desired.map(|d| d.min(64)), c.autoscaling);
        Ok(lab.service.view())
    });
    on(&mut t, move |lab, c: TakeLease| async move {
        if c.run_id.is_empty() {
            return Err(bad("run_id is required".into()));
        }
        if !(1..=lease::MAX_TTL.as_millis() as u64).contains(&c.ttl_ms) {
            return Err(bad("ttl_ms must be between 1 and 3600000".into()));
        }
        Ok(lab.take_lease(&c.run_id, Duration::from_millis(c.ttl_ms), c.renew))
    });
    on(&mut t, move |lab, c: ReleaseLease| async move {
        if c.run_id.is_empty() {
            return Err(bad("run_id is required".into()));
        }
        Ok(Released { released: lab.release_lease(&c.run_id) })
    });
    on(&mut t, |lab, _: Shutdown| async move {
        lab.stop.cancel();
        Ok(Stopping { stopping: true })
    });
    t
});

/// Routes `C::PATH` to `f`.
fn on<C, F, Fut>(table: &mut HashMap<&'static str, Handler>, f: F)
where
    C: Call,
    F: Fn(Arc<Lab>, C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C::Answer, (StatusCode, String)>> + Send + 'static,
{
    let handler: Handler = Box::new(move |lab, body| {
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &body };
        match serde_json::from_slice::<C>(body) {
            Ok(c) => {
                let fut = f(lab, c);
                Box::pin(async move {
                    let answer = fut.await?;
                    serde_json::to_value(answer).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
                })
            }
            Err(e) => {
                let m = format!("invalid body for {}: {e}", C::PATH);
                Box::pin(async move { Err((StatusCode::BAD_REQUEST, m)) })
            }
        }
    });
    table.insert(C::PATH, handler);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_of_the_contract_is_routed_and_nothing_else() {
        let mut want = [
            KillTasks::PATH,
            DelayTasks::PATH,
            StressTasks::PATH,
            ClearTasks::PATH,
            FailOver::PATH,
            Promote::PATH,
            RotateSecret::PATH,
            RestoreSecret::PATH,
            Redeploy::PATH,
            ConfigureService::PATH,
            TakeLease::PATH,
            ReleaseLease::PATH,
            Shutdown::PATH,
        ];
        want.sort();
        let mut routed: Vec<&str> = ROUTES.keys().copied().collect();
        routed.sort();
        assert_eq!(routed, want);
    }
}
