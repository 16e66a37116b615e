//! The lab backend: drives the embedded practice lab through its token-protected control API.
//!
//! Without `target.lab.control`, [`LabBackend::connect`] starts a lab for the run (`siege lab up
//! --ready-json` as a child process that dies with this one) and [`LabBackend::shutdown`] stops
//! it. With `control`, it drives a lab started separately; the token comes from the lab file
//! `siege lab up` wrote (`state_dir()/lab.json`) when its control URL matches, else from
//! `SIEGE_LAB_TOKEN`. Tokens never go into the journal: the locator holds the URL only.
//!
//! Reverts, from the journaled [`Injected`] alone:
//! - `latency`, `cpu-stress`: clear that fault on the journaled tasks (tasks gone meanwhile are
//!   skipped, and a second clear is a no-op);
//! - `db-failover`: end the outage window now if it is still open (no-op with a writer);
//! - `secret-drift`: make the journaled previous version current again (the database accepts
//!   it again), then replace, rolling, every task holding another version — which leaves the lab
//!   healthy whether or not a redeploy ran in between;
//! - `task-kill`, `redeploy`: nothing to undo (the scheduler replaces tasks by itself).
//!
//! A run takes the lab's lease ([`LabBackend::acquire_lease`], `POST /v1/lease`) before anything
//! else, renews it while it runs and releases it in [`LabBackend::shutdown`]: a second run
//! against the same lab is refused (exit 4) with the holder's run id and since when.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncBufReadExt;

use super::lease::{Keeper, Lease, Renewal};
use super::undo::{Failover, OnTasks, SecretDrift, Settles, UndoRecord};
use super::{BackendError, BalancerFigures, Connection, Injected, Resolved, Reverted, Sample};
use crate::faults::{Action, Step};
use crate::lab::balancer::{MetricsSecond, TargetHealth};
use crate::lab::client::{ClientError, ControlClient};
use crate::lab::control;
use crate::lab::proc;
use crate::lab::supervisor::{LabAddress, LabState};
use crate::scenario::{KillSignal, LabTarget, Scenario};
use crate::util::Rng;

/// Environment variable holding the control token of a lab named by `target.lab.control`.
pub const TOKEN_ENV: &str = "SIEGE_LAB_TOKEN";

pub struct LabBackend {
    client: ControlClient,
    balancer_url: String,
    /// The lab process this run started, if it did.
    owned: Option<Box<tokio::sync::Mutex<tokio::process::Child>>>,
    /// Sequence number of the last lab event already returned by [`LabBackend::sample`].
    cursor: Mutex<u64>,
    /// The lab's lease, while this run holds it.
    lease: Option<Keeper>,
}

fn api(e: ClientError) -> BackendError {
    match e {
        ClientError::Unreachable { .. } => BackendError::NotFound(e.to_string()),
        _ => BackendError::Api(e.to_string()),
    }
}

/// The token of the lab at `control_url`: from the lab file when it names that URL, else from
/// the environment.
fn token_for(control_url: &str, conn: &Connection) -> Option<String> {
    let url = control_url.trim_end_matches('/');
    crate::lab::read_lab_file_in(&conn.state_dir)
        .filter(|a| a.control_url.trim_end_matches('/') == url)
        .map(|a| a.token)
        .or_else(|| conn.lab_token.clone())
}

/// Task ids in a stable order (t-2 before t-10), so a seed selects the same tasks again.
fn sorted_ids(mut ids: Vec<String>) -> Vec<String> {
    ids.sort_by_key(|id| (id.trim_start_matches("t-").parse::<u64>().unwrap_or(u64::MAX), id.clone()));
    ids
}

/// Ids of the running tasks, in the stable order of [`sorted_ids`].
fn running_ids(st: &LabState) -> Vec<String> {
    sorted_ids(
        st.service
            .tasks
            .iter()
            .filter(|t| t.status == crate::lab::service::TaskStatus::Running)
            .map(|t| t.id.clone())
            .collect(),
    )
}

/// How the lab undoes `step` ([`crate::faults::FaultDef::undo`] of its type), with the secret
/// version a drift replaces (`secret_version`, read before the injection).
pub fn undo_record(step: &Step, secret_version: u32) -> UndoRecord {
    match step.action {
        Action::StopTasks { .. } | Action::ReplaceTasks => UndoRecord::Nothing(Settles::Lab),
        Action::BurnCpu { .. } => UndoRecord::EndCpuBurn(OnTasks::Lab),
        Action::DelayNetwork { .. } => UndoRecord::EndNetworkDelay(OnTasks::Lab),
        Action::FailOverDatabase { .. } => UndoRecord::EndDatabaseOutage(Failover::Lab),
        Action::RotateSecret => UndoRecord::RestoreSecret(SecretDrift::Lab { restore_version: secret_version }),
    }
}

impl LabBackend {
    pub async fn connect(target: &LabTarget, run_id: &str, conn: &Connection) -> Result<Self, BackendError> {
        match &target.control {
            Some(url) => Self::attach(url, conn).await,
            None => Self::start_owned(target, run_id, conn).await,
        }
    }

    async fn attach(url: &str, conn: &Connection) -> Result<Self, BackendError> {
        let token = token_for(url, conn).ok_or_else(|| {
            BackendError::NotFound(format!(
                "no control token for the lab at {url}: start it with `siege lab up` on this machine, or set {TOKEN_ENV}"
            ))
        })?;
        let client = ControlClient::new(url, &token);
        let st = client.state(u64::MAX).await.map_err(api)?;
        Ok(LabBackend {
            client,
            balancer_url: st.balancer_url,
            owned: None,
            cursor: Mutex::new(st.last_event),
            lease: None,
        })
    }

    async fn start_owned(target: &LabTarget, run_id: &str, conn: &Connection) -> Result<Self, BackendError> {
        let start = |e: std::io::Error| BackendError::Api(format!("start a lab for the run: {e}"));
        let exe = proc::siege_exe().map_err(start)?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(["lab", "up", "--ready-json", "--service", &target.service, "--tasks", &target.tasks.to_string()]);
        if let Some(a) = &target.autoscaling {
            cmd.args(["--autoscale-min", &a.min.to_string(), "--autoscale-max", &a.max.to_string()])
                .args(["--autoscale-target", &format!("{}%", a.target_cpu * 100.0)])
                .args(["--autoscale-cooldown", &format!("{}ms", a.cooldown.as_millis())]);
        }
        let log_dir = conn.state_dir.join("labs");
        let stderr = std::fs::create_dir_all(&log_dir)
            .and_then(|_| std::fs::File::create(log_dir.join(format!("{run_id}.log"))))
            .map(std::process::Stdio::from)
            .unwrap_or_else(|_| std::process::Stdio::null());
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(stderr).kill_on_drop(true);
        // Its own process group: a Ctrl-C at the terminal must reach the run only, which reverts
        // its faults through the lab before it stops the lab.
        cmd.process_group(0);
        proc::die_with_parent(&mut cmd);
        let mut child = proc::spawn(cmd).map_err(start)?;
        let stdout = child.stdout.take().ok_or_else(|| BackendError::Api("lab stdout".into()))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(Duration::from_secs(90), lines.next_line()).await {
            Ok(Ok(Some(l))) => l,
            _ => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(BackendError::Api(format!(
                    "the lab for the run did not become ready (log: {})",
                    log_dir.join(format!("{run_id}.log")).display()
                )));
            }
        };
        let addr: LabAddress = serde_json::from_str(&line)
            .map_err(|e| BackendError::Api(format!("unexpected answer from the lab: {e}")))?;
        let client = ControlClient::new(&addr.control_url, &addr.token);
        Ok(LabBackend {
            client,
            balancer_url: addr.balancer_url,
            owned: Some(Box::new(tokio::sync::Mutex::new(child))),
            cursor: Mutex::new(0),
            lease: None,
        })
    }

    /// `{control_url, owned}`: no token (see the module docs).
    pub fn locator(&self) -> serde_json::Value {
        json!({ "control_url": self.client.url, "owned": self.owned.is_some() })
    }

    /// A lab keeps all its state in memory: once it is gone (a run's own lab dies with the run),
    /// every fault went with it, so `Ok(None)`.
    pub async fn reconnect(locator: &serde_json::Value, conn: &Connection) -> Result<Option<Self>, BackendError> {
        let url = locator
            .get("control_url")
            .and_then(|u| u.as_str())
            .ok_or_else(|| BackendError::Api(format!("lab locator without control_url: {locator}")))?;
        if !ControlClient::new(url, "").ping().await {
            return Ok(None);
        }
        Self::attach(url, conn).await.map(Some)
    }

    /// The target as the lease refusal names it.
    fn target_name(&self) -> String {
        format!("lab at {}", self.client.url)
    }

    /// Takes the lab's lease for `run_id` and keeps renewing it; refuses (exit 4) when another
    /// run holds it. Mutates nothing else.
    pub async fn acquire_lease(&mut self, run_id: &str, ttl: Duration) -> Result<(), BackendError> {
        let taken = match take_lease(&self.client, run_id, ttl, false).await? {
            Ok(l) => l,
            Err(Some(holder)) => return Err(super::lease::busy(&holder, &self.target_name())),
            Err(None) => return Err(BackendError::Api(format!("{} granted no lease", self.target_name()))),
        };
        let (client, run) = (self.client.clone(), run_id.to_string());
        self.lease = Some(Keeper::start(&taken, ttl, move || {
            let (client, run) = (client.clone(), run.clone());
            async move { take_lease(&client, &run, ttl, true).await }
        }));
        Ok(())
    }

    /// The run holding the lab, if any; takes nothing.
    pub async fn lease_holder(&self) -> Result<Option<Lease>, BackendError> {
        Ok(self.state().await?.lease)
    }

    /// Releases the lease if `run_id` holds it (`siege recover` for a killed run); whether it did.
    pub async fn release_lease(&self, run_id: &str) -> Result<bool, BackendError> {
        let v = self.client.send(&control::ReleaseLease { run_id: run_id.into() }).await.map_err(api)?;
        Ok(v.released)
    }

    pub fn entry_url(&self) -> String {
        self.balancer_url.trim_end_matches('/').to_string()
    }

    async fn state(&self) -> Result<LabState, BackendError> {
        self.client.state(u64::MAX).await.map_err(api)
    }

    pub async fn preflight(&self, scenario: &Scenario) -> Result<(), BackendError> {
        let st = self.state().await?;
        if let crate::scenario::Target::Lab(t) = &scenario.target
            && t.service != st.service.name
        {
            return Err(BackendError::Precondition(format!(
                "the lab runs service `{}`, the scenario targets `{}`",
                st.service.name, t.service
            )));
        }
        if scenario.faults.iter().any(|f| f.kind.selection().is_some()) && st.service.running == 0 {
            return Err(BackendError::Precondition(format!("service `{}` has no running task", st.service.name)));
        }
        Ok(())
    }

    pub async fn resolve(&self, step: &Step, rng: &mut Rng) -> Result<Resolved, BackendError> {
        let st = self.state().await?;
        let action = &step.action;
        let service = &st.service.name;
        if let Some(sel) = step.select {
            let ids = running_ids(&st);
            let k = sel.of(ids.len());
            if k == 0 {
                return Err(BackendError::Precondition(format!("no running task of service `{service}` to select")));
            }
            let chosen = rng.choose(&ids, k);
            let what = match action {
                Action::StopTasks { signal } => format!("send {} to", signal_name(*signal)),
                Action::BurnCpu { percent } => format!("burn {percent}% CPU in"),
                Action::DelayNetwork { delay, jitter } => {
                    format!("add {}ms ±{}ms latency to", delay.as_millis(), jitter.as_millis())
                }
                _ => "act on".into(),
            };
            let summary = format!("{what} {k} of {} tasks of service {service}: {}", ids.len(), chosen.join(", "));
            return Ok(Resolved { targets: chosen, summary });
        }
        match action {
            Action::FailOverDatabase { outage, .. } => {
                let writer = st.db.writer.clone().ok_or_else(|| {
                    BackendError::Precondition("the lab database has no writer (a failover is in progress)".into())
                })?;
                let replica = st.db.nodes.iter().find(|n| n.name != writer).map(|n| n.name.clone()).unwrap_or_default();
                let outage =
                    outage.map(|d| format!("{}ms", d.as_millis())).unwrap_or_else(|| "the lab's default outage".into());
                Ok(Resolved {
                    targets: vec![writer.clone()],
                    summary: format!(
                        "fail over the lab database: drop writer {writer}, no writer for {outage}, promote {replica}"
                    ),
                })
            }
            Action::RotateSecret => Ok(Resolved {
                targets: vec![st.secret.name.clone()],
                summary: format!(
                    "rotate secret {} (current v{}); running tasks keep v{} until replaced",
                    st.secret.name, st.secret.current_version, st.secret.current_version
                ),
            }),
            Action::ReplaceTasks => {
                let ids = running_ids(&st);
                Ok(Resolved {
                    summary: format!("rolling replacement of every task of service {service}: {}", ids.join(", ")),
                    targets: ids,
                })
            }
            _ => Err(BackendError::Unsupported { kind: step.kind, backend: "lab" }),
        }
    }

    pub async fn prepare(&self, step: &Step, resolved: &Resolved) -> Result<Injected, BackendError> {
        let version = match step.action {
            Action::RotateSecret => self.state().await?.secret.current_version,
            _ => 0,
        };
        Ok(Injected::new(step, resolved, undo_record(step, version)))
    }

    pub async fn inject(&self, step: &Step, injected: &Injected) -> Result<(), BackendError> {
        if let Some(k) = &self.lease {
            k.check()?;
        }
        let tasks = injected.targets.clone();
        let c = &self.client;
        let sent = match step.action {
            Action::StopTasks { signal } => {
                let signal = match signal {
                    KillSignal::Sigkill => control::Signal::Kill,
                    KillSignal::Sigterm => control::Signal::Term,
                };
                c.send(&control::KillTasks { tasks, signal }).await.map(drop)
            }
            Action::BurnCpu { percent } => {
                // Without a duration the burn lasts until the revert (bounded to an hour).
                let duration_ms = step.duration.unwrap_or(Duration::from_secs(3600)).as_millis() as u64;
                c.send(&control::StressTasks { tasks, percent, duration_ms }).await.map(drop)
            }
            Action::DelayNetwork { delay, jitter } => {
                let (delay_ms, jitter_ms) = (delay.as_millis() as u64, jitter.as_millis() as u64);
                c.send(&control::DelayTasks { tasks, delay_ms, jitter_ms }).await.map(drop)
            }
            Action::FailOverDatabase { outage, .. } => {
                let outage_ms = outage.map(|d| d.as_millis() as u64);
                c.send(&control::FailOver { outage_ms }).await.map(drop)
            }
            Action::RotateSecret => c.send(&control::RotateSecret {}).await.map(drop),
            Action::ReplaceTasks => c.send(&control::Redeploy { stale_only: false }).await.map(drop),
        };
        sent.map_err(api)
    }

    pub async fn revert(&self, injected: &Injected) -> Result<Reverted, BackendError> {
        let c = &self.client;
        let tasks = injected.targets.clone();
        // Targets may be gone (replaced tasks): clearing what is left is still a success.
        let clear = |what| async move {
            if tasks.is_empty() { Ok(()) } else { c.send(&control::ClearTasks { tasks, what }).await.map(drop) }
        };
        let sent = match &injected.undo {
            UndoRecord::Nothing(_) => return Ok(Reverted::NothingLeft),
            UndoRecord::EndNetworkDelay(OnTasks::Lab) => clear(control::Clear::Latency).await,
            UndoRecord::EndCpuBurn(OnTasks::Lab) => clear(control::Clear::Stress).await,
            UndoRecord::EndDatabaseOutage(Failover::Lab) => {
                // A failover whose outage is over has its new writer: nothing to end, and the
                // cluster is not failed back (as on AWS).
                if self.state().await?.db.writer.is_some() {
                    return Ok(Reverted::NothingLeft);
                }
                c.send(&control::Promote {}).await.map(drop)
            }
            UndoRecord::RestoreSecret(SecretDrift::Lab { restore_version }) => {
                c.send(&control::RestoreSecret { version: *restore_version, replace_stale: true }).await.map(drop)
            }
            other => {
                return Err(BackendError::Api(format!(
                    "the journal record of fault `{}` was not written by a lab ({other:?}); not reverted",
                    injected.fault
                )));
            }
        };
        sent.map(|()| Reverted::Undone).map_err(api)
    }

    /// The balancer's figures of every complete second after Unix second `since` (the lab keeps
    /// the last 15 minutes), by second.
    pub async fn balancer_seconds(&self, since: u64) -> Result<Vec<(u64, BalancerFigures)>, BackendError> {
        let ms: Vec<MetricsSecond> = self.client.get(&format!("/v1/metrics?since={since}")).await.map_err(api)?;
        Ok(ms.iter().map(|m| (m.timestamp, figures(m))).collect())
    }

    pub async fn sample(&self) -> Result<Sample, BackendError> {
        let since = self.cursor.lock().map(|c| *c).unwrap_or(0);
        let st = self.client.state(since).await.map_err(api)?;
        if let Ok(mut c) = self.cursor.lock() {
            *c = st.last_event;
        }
        let healthy = st.targets.iter().filter(|t| t.health == TargetHealth::Healthy).count() as u32;
        let m = st.metrics.as_ref();
        Ok(Sample {
            healthy_targets: Some(healthy),
            unhealthy_targets: Some(st.targets.len() as u32 - healthy),
            running_tasks: Some(st.service.running),
            desired_tasks: Some(st.service.desired),
            pending_tasks: Some(st.service.pending),
            db_writer: st.db.writer.clone(),
            cpu_percent: Some(st.service.avg_cpu_percent),
            lb_rps: m.map(|m| figures(m).0).unwrap_or_default(),
            lb_5xx_rate: m.map(|m| figures(m).1).unwrap_or_default(),
            lb_response_ms: m.map(|m| figures(m).2).unwrap_or_default(),
            lb_second: m.map(|m| m.timestamp),
            events: st
                .events
                .into_iter()
                .map(|e| e.message)
                .chain(self.lease.as_ref().and_then(Keeper::lost_note))
                .collect(),
            stale: Vec::new(),
        })
    }

    pub async fn shutdown(mut self) -> Result<(), BackendError> {
        if let Some(k) = self.lease.take() {
            let run_id = k.run_id.clone();
            k.stop().await;
            if self.owned.is_none() {
                self.release_lease(&run_id).await?;
            }
        }
        let Some(child) = self.owned else { return Ok(()) };
        let mut child = child.into_inner();
        let _ = self.client.send(&control::Shutdown {}).await;
        // The lab stops and reaps its own children before it exits.
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let _ = child.start_kill();
                child.wait().await.map(|_| ()).map_err(|e| BackendError::Api(format!("stop the run's lab: {e}")))
            }
        }
    }
}

/// `POST /v1/lease`: the lease granted to `run_id` (taken, or with `renew` renewed), or the
/// holder's (`None`: nobody's).
async fn take_lease(client: &ControlClient, run_id: &str, ttl: Duration, renew: bool) -> Renewal {
    let take = control::TakeLease { run_id: run_id.into(), ttl_ms: ttl.as_millis() as u64, renew };
    let control::LeaseAnswer { granted, lease } = client.send(&take).await.map_err(api)?;
    match lease {
        Some(l) if granted => Ok(Ok(l)),
        _ if granted => Err(BackendError::Api("the lab granted a lease without saying which".into())),
        other => Ok(Err(other)),
    }
}

/// `part / whole`, at most 1 (an answer can be counted a second after its request), `None` when
/// nothing was counted.
/// A balancer second as a sample's `lb_rps`, `lb_5xx_rate` and `lb_response_ms`.
fn figures(m: &MetricsSecond) -> BalancerFigures {
    (
        Some(m.request_count as f64),
        fraction(m.elb_5xx + m.target_5xx, m.request_count),
        m.target_response_time.map(|s| s * 1000.0),
    )
}

fn fraction(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64).min(1.0))
}

fn signal_name(s: KillSignal) -> &'static str {
    match s {
        KillSignal::Sigkill => "SIGKILL",
        KillSignal::Sigterm => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lab undoes each fault type as the registry says it is undone.
    #[test]
    fn every_fault_type_is_undone_on_the_lab_as_the_registry_says() {
        for def in crate::faults::REGISTRY {
            let step = crate::faults::sample_step(def);
            assert_eq!(undo_record(&step, 1).undo(), def.undo, "{}", def.name);
        }
    }

    #[test]
    fn ids_sort_numerically() {
        let ids = sorted_ids(vec!["t-10".into(), "t-2".into(), "t-1".into()]);
        assert_eq!(ids, vec!["t-1", "t-2", "t-10"]);
    }
}
