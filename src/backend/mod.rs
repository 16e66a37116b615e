//! Backends: where faults are injected and state is sampled. The engine sees one interface; the
//! `lab` backend drives the embedded practice lab through its control API, the `aws` backend
//! drives ECS, FIS, RDS, Secrets Manager, CloudWatch and ELBv2. A backend carries out the
//! operations the fault registry names: it receives a [`Step`] (the [`crate::faults::Action`]
//! with its selection and duration) and reverts from a typed [`UndoRecord`] (one variant per
//! [`crate::faults::Undo`]). It never matches on fault types, so a new fault type made of these
//! operations needs no backend change.
//!
//! The contract every backend keeps, because a game day must never leave a system broken:
//! - [`Backend::prepare`] reads what it needs to undo a fault (previous secret version, current
//!   writer, …) *without mutating anything*; the engine journals the returned [`Injected`] before
//!   it calls [`Backend::inject`].
//! - [`Backend::revert`] is idempotent and works from that journaled record alone, whether the
//!   injection completed, half-ran or never ran (a crashed run is recovered by `siege recover`).

pub mod aws;
#[cfg(test)]
pub mod fake;
pub mod lab;
pub mod lease;
pub mod undo;

use serde::{Deserialize, Serialize};

use crate::faults::{Step, Undo};
use crate::redact::Secrets;
use crate::scenario::{Scenario, Target};
use crate::util::Rng;
pub use undo::UndoRecord;

/// A connected backend.
pub enum Backend {
    Lab(lab::LabBackend),
    Aws(aws::AwsBackend),
    /// In memory, for engine tests under paused time.
    #[cfg(test)]
    Fake(fake::FakeBackend),
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The target (service, cluster, lab) does not exist or cannot be reached.
    #[error("target not found: {0}")]
    NotFound(String),
    /// Something the scenario requires is not true (wrong account, nothing to select, …).
    #[error("precondition failed: {0}")]
    Precondition(String),
    #[error("{kind} is not supported by the {backend} backend")]
    Unsupported { kind: &'static str, backend: &'static str },
    /// The backend's API did not answer at all (nothing listening, no answer in time): before
    /// the run has changed anything, a precondition of the run; later, an error like any other.
    #[error("{0}")]
    Unreachable(String),
    /// Any other failure of the backend's API, with its message.
    #[error("{0}")]
    Api(String),
}

/// An AWS endpoint that did not answer, named: neither the SDK's error nor the message made of
/// it says where the calls went. The scenario's `endpoint`, else `AWS_ENDPOINT_URL` (which the
/// SDK reads by itself; read here only to name it), else the region's own endpoints.
fn name_endpoint(target: &Target, e: BackendError) -> BackendError {
    let (BackendError::Unreachable(m), Target::Aws(t)) = (&e, target) else { return e };
    let endpoint = match (&t.endpoint, std::env::var("AWS_ENDPOINT_URL")) {
        (Some(url), _) => format!("{url} (target.aws.endpoint)"),
        (None, Ok(url)) if !url.trim().is_empty() => format!("{url} (AWS_ENDPOINT_URL)"),
        _ => "the AWS endpoints of the target's region".to_string(),
    };
    BackendError::Unreachable(format!("no answer from {endpoint}: {m}"))
}

/// What connecting to a target takes besides the scenario: what the environment says (read
/// once, by the command line: [`Connection::from_env`]) and where the run's secret values are
/// registered. Runs in one process each get their own.
#[derive(Debug, Clone)]
pub struct Connection {
    /// siege's state directory: the lab file of a background lab (its address and token) and
    /// the logs of labs started for runs.
    pub state_dir: std::path::PathBuf,
    /// The control token of a lab the lab file does not name.
    pub lab_token: Option<String>,
    /// Time to live of the leases the run takes.
    pub lease_ttl: std::time::Duration,
    pub secrets: Secrets,
}

impl Connection {
    /// From `SIEGE_HOME` (see [`crate::util::state_dir`]), [`lab::TOKEN_ENV`] and
    /// [`lease::TTL_ENV`]; a new, empty set of secrets.
    pub fn from_env() -> Result<Connection, BackendError> {
        Ok(Connection {
            state_dir: crate::util::state_dir(),
            lab_token: std::env::var(lab::TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            lease_ttl: lease::ttl_from_env()?,
            secrets: Secrets::default(),
        })
    }
}

/// For `siege recover`: releases the lease the recorded run `run_id` left on the target its
/// `locator` names, and says so. `None` when there was none (or the target is gone with it).
pub async fn release_left_lease(locator: &serde_json::Value, run_id: &str, conn: &Connection) -> Option<String> {
    let b = Backend::reconnect(locator, conn).await.ok()??;
    let line = b.release_left_lease(run_id).await;
    let _ = b.shutdown().await;
    line
}

/// The balancer's figures of one second: a sample's `lb_rps`, `lb_5xx_rate`, `lb_response_ms`.
pub type BalancerFigures = (Option<f64>, Option<f64>, Option<f64>);

/// The concrete targets a fault will hit, as printed by `siege plan` and recorded in the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// Task ids, instance ids, secret ids… whatever the fault acts on.
    pub targets: Vec<String>,
    /// One line for humans, e.g. "stop 2 of 3 tasks of service api: t-3, t-1".
    pub summary: String,
}

/// What a fault changed (or will change), with everything needed to revert it. Journaled to disk
/// before injection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "JournaledInjected")]
pub struct Injected {
    /// Fault name from the scenario.
    pub fault: String,
    /// Fault type, e.g. `latency`.
    pub kind: String,
    pub targets: Vec<String>,
    /// How to undo it, with what the backend needs for that (previous secret version, FIS tags).
    pub undo: UndoRecord,
}

/// An [`Injected`] as a journal holds it: its undo record typed (this version), or a bare
/// object (older versions), read by [`UndoRecord::from_untyped`].
#[derive(Deserialize)]
struct JournaledInjected {
    fault: String,
    kind: String,
    targets: Vec<String>,
    #[serde(default)]
    undo: serde_json::Value,
}

impl TryFrom<JournaledInjected> for Injected {
    type Error = String;

    fn try_from(j: JournaledInjected) -> Result<Injected, String> {
        let undo = if j.undo.get("op").is_some() {
            serde_json::from_value(j.undo).map_err(|e| format!("the undo record of fault `{}`: {e}", j.fault))?
        } else {
            let def = crate::faults::lookup(&j.kind).ok_or_else(|| {
                format!("fault `{}` is of type `{}`, which this version does not know", j.fault, j.kind)
            })?;
            UndoRecord::from_untyped(def.undo, &j.undo)
                .map_err(|e| format!("the undo record of fault `{}`: {e}", j.fault))?
        };
        Ok(Injected { fault: j.fault, kind: j.kind, targets: j.targets, undo })
    }
}

impl Injected {
    /// How the fault this record names is undone (`None`: it is not).
    pub fn undo_kind(&self) -> Option<Undo> {
        self.undo.undo()
    }

    /// The record of `step` acting on `resolved`, with the backend's undo record.
    pub fn new(step: &Step, resolved: &Resolved, undo: UndoRecord) -> Self {
        Injected { fault: step.fault.clone(), kind: step.kind.to_string(), targets: resolved.targets.clone(), undo }
    }
}

#[cfg(test)]
impl Injected {
    /// A lab's record of `fault`, of type `kind`, on `targets`.
    pub fn on_lab(fault: &str, kind: &str, targets: &[&str]) -> Injected {
        let def = crate::faults::lookup(kind).expect("a known fault type");
        let step = Step { fault: fault.into(), ..crate::faults::sample_step(def) };
        let resolved = Resolved { targets: targets.iter().map(|t| t.to_string()).collect(), summary: String::new() };
        Injected::new(&step, &resolved, lab::undo_record(&step, 1))
    }
}

/// What a revert came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reverted {
    /// The fault's effect was undone (or had been already: reverts are idempotent).
    Undone,
    /// Nothing was left to undo, and nothing was changed: what stays is the registry's
    /// [`crate::faults::FaultDef::kept`] ("the cluster keeps its new writer").
    NothingLeft,
}

/// One observation of the target. `None` where the backend cannot observe the value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub healthy_targets: Option<u32>,
    pub unhealthy_targets: Option<u32>,
    pub running_tasks: Option<u32>,
    pub desired_tasks: Option<u32>,
    pub pending_tasks: Option<u32>,
    /// Current database writer (instance id / lab node name); `None` during a failover window.
    pub db_writer: Option<String>,
    /// Average task CPU: percent of one core in the lab, of the tasks' reserved CPU on AWS
    /// (CloudWatch `CPUUtilization` of the latest minute).
    pub cpu_percent: Option<f64>,
    /// Requests per second the balancer counted, from every client and not only siege's load
    /// (lab: the last complete second; AWS: CloudWatch `RequestCount` of the latest minute / 60).
    #[serde(default)]
    pub lb_rps: Option<f64>,
    /// Fraction of the balancer's requests answered 5xx, by the balancer or by the targets.
    #[serde(default)]
    pub lb_5xx_rate: Option<f64>,
    /// Target response time in milliseconds (lab: average over the last second; AWS:
    /// `TargetResponseTime` p95 of the latest minute).
    #[serde(default)]
    pub lb_response_ms: Option<f64>,
    /// Unix time of the start of the balancer second the `lb_*` figures describe, when they
    /// describe one second (lab); `None` when they are averages over a minute (AWS).
    #[serde(default)]
    pub lb_second: Option<u64>,
    /// Service events since the previous sample (ECS service events, lab scheduler events, and on
    /// AWS the changes of task counts, healthy targets and writer the samplers saw).
    #[serde(default)]
    pub events: Vec<String>,
    /// Fields (`healthy_targets`, `lb_response_ms`, …) that are `None` because their source has
    /// not answered within its freshness bound: unknown now, as opposed to not observable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<String>,
}

impl Backend {
    /// Connects to the scenario's target for run `run_id` and takes the target's lease (see
    /// [`lease`]): a target another run holds is refused here, before anything is changed, with
    /// [`BackendError::Precondition`]. For a lab target without `control`, starts a lab for
    /// this run (torn down by [`Backend::shutdown`], and with the process if it dies).
    /// Secret values the backend handles are registered in `conn.secrets`.
    pub async fn connect(target: &Target, run_id: &str, conn: &Connection) -> Result<Backend, BackendError> {
        let mut b = Self::open(target, run_id, conn).await?;
        let taken = match &mut b {
            Backend::Lab(l) => l.acquire_lease(run_id, conn.lease_ttl).await,
            Backend::Aws(a) => a.acquire_lease(conn.lease_ttl).await,
            #[cfg(test)]
            Backend::Fake(_) => Ok(()),
        };
        match taken {
            Ok(()) => Ok(b),
            Err(e) => {
                let _ = b.shutdown().await;
                Err(name_endpoint(target, e))
            }
        }
    }

    /// Connects without taking the lease (`siege plan`): reads only.
    pub async fn inspect(target: &Target, run_id: &str, conn: &Connection) -> Result<Backend, BackendError> {
        Self::open(target, run_id, conn).await
    }

    async fn open(target: &Target, run_id: &str, conn: &Connection) -> Result<Backend, BackendError> {
        match target {
            Target::Lab(t) => Ok(Backend::Lab(lab::LabBackend::connect(t, run_id, conn).await?)),
            Target::Aws(t) => Ok(Backend::Aws(
                aws::AwsBackend::connect(t, run_id, conn.secrets.clone())
                    .await
                    .map_err(|e| name_endpoint(target, e))?,
            )),
        }
    }

    /// Who holds the lease of `target`, asked without taking or starting anything: a detached
    /// lab answers, an ECS service says it with its lease tag; a lab started for a run is free
    /// by construction.
    pub async fn holder_of(target: &Target, conn: &Connection) -> Result<Option<lease::Lease>, BackendError> {
        match target {
            Target::Lab(t) if t.control.is_some() => lab::LabBackend::connect(t, "", conn).await?.lease_holder().await,
            Target::Lab(_) => Ok(None),
            Target::Aws(t) => aws::AwsBackend::connect(t, "", conn.secrets.clone()).await?.lease_holder().await,
        }
    }

    /// The run holding the target's lease, if another run (or this one) holds it. Takes nothing.
    pub async fn lease_holder(&self) -> Result<Option<lease::Lease>, BackendError> {
        match self {
            Backend::Lab(b) => b.lease_holder().await,
            Backend::Aws(b) => b.lease_holder().await,
            #[cfg(test)]
            Backend::Fake(_) => Ok(None),
        }
    }

    /// [`Backend::release_lease`] of a killed run's lease, as a line for `siege recover`.
    pub async fn release_left_lease(&self, run_id: &str) -> Option<String> {
        match self.release_lease(run_id).await {
            Ok(true) => Some(format!("run {run_id}: released its lease on the target")),
            Ok(false) => None,
            Err(e) => Some(format!("run {run_id}: could not release its lease on the target (it expires): {e}")),
        }
    }

    /// Releases the lease `run_id` left on the target (a killed run, from `siege recover`);
    /// whether there was one. Another run's lease is left alone.
    pub async fn release_lease(&self, run_id: &str) -> Result<bool, BackendError> {
        match self {
            Backend::Lab(b) => b.release_lease(run_id).await,
            Backend::Aws(b) => b.release_lease(run_id).await,
            #[cfg(test)]
            Backend::Fake(_) => Ok(false),
        }
    }

    /// How to reach this backend again from another process (`siege recover`), journaled.
    pub fn locator(&self) -> serde_json::Value {
        match self {
            Backend::Lab(b) => serde_json::json!({ "lab": b.locator() }),
            Backend::Aws(b) => serde_json::json!({ "aws": b.locator() }),
            #[cfg(test)]
            Backend::Fake(_) => serde_json::json!({ "fake": {} }),
        }
    }

    /// Reconnects from a journaled locator. `Ok(None)` when the target is gone for good (a run's
    /// own lab that died with it): there is nothing left to revert.
    pub async fn reconnect(locator: &serde_json::Value, conn: &Connection) -> Result<Option<Backend>, BackendError> {
        if let Some(l) = locator.get("lab") {
            Ok(lab::LabBackend::reconnect(l, conn).await?.map(Backend::Lab))
        } else if let Some(l) = locator.get("aws") {
            Ok(aws::AwsBackend::reconnect(l).await?.map(Backend::Aws))
        } else {
            Err(BackendError::Api(format!("unknown backend locator {locator}")))
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Lab(_) => "lab",
            Backend::Aws(_) => "aws",
            #[cfg(test)]
            Backend::Fake(_) => "fake",
        }
    }

    /// The AWS region in use (the scenario's, or the one the SDK's region chain found); `None`
    /// for a lab.
    pub fn region(&self) -> Option<String> {
        match self {
            Backend::Lab(_) => None,
            Backend::Aws(b) => Some(b.region().to_string()),
            #[cfg(test)]
            Backend::Fake(_) => None,
        }
    }

    /// Base URL the load is sent to (lab balancer or ALB), without a trailing slash.
    pub fn entry_url(&self) -> String {
        match self {
            Backend::Lab(b) => b.entry_url(),
            Backend::Aws(b) => b.entry_url(),
            #[cfg(test)]
            Backend::Fake(_) => "http://fake.invalid".into(),
        }
    }

    /// Sends the load of `plan` to [`Backend::entry_url`] on its own task, until `cancel`, one
    /// window a second to `windows`, at the rate `rate` sets. The in-memory target simulates it.
    pub fn drive_load(
        &self,
        plan: crate::load::LoadPlan,
        cancel: tokio_util::sync::CancellationToken,
        windows: tokio::sync::mpsc::UnboundedSender<crate::load::Window>,
        rate: crate::load::RateControl,
    ) -> tokio::task::JoinHandle<Result<crate::load::LoadReport, crate::load::LoadError>> {
        match self {
            #[cfg(test)]
            Backend::Fake(fake) => tokio::spawn(fake.load(plan, cancel, windows)),
            _ => tokio::spawn(crate::load::run_controlled(plan, cancel, Some(windows), Some(rate))),
        }
    }

    /// Checks that the scenario can run here (target exists, account matches…). Mutates nothing.
    pub async fn preflight(&self, scenario: &Scenario) -> Result<(), BackendError> {
        match self {
            Backend::Lab(b) => b.preflight(scenario).await,
            Backend::Aws(b) => b.preflight(scenario).await.map_err(|e| name_endpoint(&scenario.target, e)),
            #[cfg(test)]
            Backend::Fake(_) => Ok(()),
        }
    }

    /// Which concrete targets `step` would hit now. Mutates nothing.
    pub async fn resolve(&self, step: &Step, rng: &mut Rng) -> Result<Resolved, BackendError> {
        match self {
            Backend::Lab(b) => b.resolve(step, rng).await,
            Backend::Aws(b) => b.resolve(step, rng).await,
            #[cfg(test)]
            Backend::Fake(b) => b.resolve(step, rng),
        }
    }

    /// Reads what is needed to undo `step` on `resolved`. Mutates nothing.
    pub async fn prepare(&self, step: &Step, resolved: &Resolved, run_id: &str) -> Result<Injected, BackendError> {
        match self {
            Backend::Lab(b) => b.prepare(step, resolved).await,
            Backend::Aws(b) => b.prepare(step, resolved, run_id).await,
            #[cfg(test)]
            Backend::Fake(_) => Ok(Injected::new(step, resolved, lab::undo_record(step, 0))),
        }
    }

    /// A summary of the prepared injection to replace `resolved.summary`, when the journaled
    /// record names more than the resolution could (the new secret version of a drift on AWS).
    pub fn describe_prepared(&self, resolved: &Resolved, injected: &Injected) -> Option<String> {
        match self {
            Backend::Aws(b) => b.describe_prepared(resolved, injected),
            _ => None,
        }
    }

    pub async fn inject(&self, step: &Step, injected: &Injected, run_id: &str) -> Result<(), BackendError> {
        match self {
            Backend::Lab(b) => b.inject(step, injected).await,
            Backend::Aws(b) => b.inject(step, injected, run_id).await,
            #[cfg(test)]
            Backend::Fake(b) => b.inject(step, injected).await,
        }
    }

    /// Idempotent; see the module docs.
    pub async fn revert(&self, injected: &Injected) -> Result<(), BackendError> {
        self.undo(injected).await.map(|_| ())
    }

    /// [`Backend::revert`], telling whether anything was left to undo.
    pub async fn undo(&self, injected: &Injected) -> Result<Reverted, BackendError> {
        match self {
            Backend::Lab(b) => b.revert(injected).await,
            Backend::Aws(b) => b.revert(injected).await,
            #[cfg(test)]
            Backend::Fake(b) => b.revert(injected),
        }
    }

    /// Whether a fault whose type is normally undone leaves nothing to undo here once its
    /// injection has completed (an Aurora failover on AWS: the cluster has its new writer and
    /// is not failed back); the engine then settles it at once, as it does a task-kill.
    pub fn settled_once_injected(&self, injected: &Injected) -> bool {
        match self {
            Backend::Lab(_) => false,
            Backend::Aws(b) => b.settled_once_injected(injected),
            #[cfg(test)]
            Backend::Fake(b) => b.settled_once_injected(injected),
        }
    }

    pub async fn sample(&self) -> Result<Sample, BackendError> {
        match self {
            Backend::Lab(b) => b.sample().await,
            Backend::Aws(b) => b.sample().await,
            #[cfg(test)]
            Backend::Fake(b) => Ok(b.sample()),
        }
    }

    /// The balancer's figures of every second after Unix second `since` that it still keeps,
    /// where it counts per second (the lab); empty where it does not (AWS: per minute).
    pub async fn balancer_seconds(&self, since: u64) -> Vec<(u64, BalancerFigures)> {
        match self {
            Backend::Lab(b) => b.balancer_seconds(since).await.unwrap_or_default(),
            Backend::Aws(_) => vec![],
            #[cfg(test)]
            Backend::Fake(_) => vec![],
        }
    }

    /// Whether the named CloudWatch alarm is in state ALARM.
    pub async fn alarm_firing(&self, name: &str) -> Result<bool, BackendError> {
        match self {
            Backend::Lab(_) => Err(BackendError::Unsupported { kind: "alarm stop condition", backend: "lab" }),
            Backend::Aws(b) => b.alarm_firing(name).await,
            #[cfg(test)]
            Backend::Fake(_) => Ok(false),
        }
    }

    /// Releases the backend and the run's lease; tears down a lab started for this run.
    pub async fn shutdown(self) -> Result<(), BackendError> {
        match self {
            Backend::Lab(b) => b.shutdown().await,
            Backend::Aws(b) => b.shutdown().await,
            #[cfg(test)]
            Backend::Fake(_) => Ok(()),
        }
    }
}
