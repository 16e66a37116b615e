//! The AWS backend: ECS, FIS, RDS, ELBv2, Secrets Manager, CloudWatch and STS through the
//! official SDK.
//!
//! Safety rules kept here rather than left to callers:
//! - every mutating call is preceded by [`AwsBackend::ensure_account`]: the account STS reports
//!   must equal `target.aws.account`, else nothing is touched ([`BackendError::Precondition`]);
//! - only resources the scenario names are touched: tasks are re-checked to belong to the named
//!   service right before they are stopped, a failover target must be a member of the named
//!   cluster, FIS experiments list their tasks by ARN;
//! - a selection above `max_select` is refused unless `allow_full_outage` is set;
//! - everything siege creates (FIS experiment templates) is tagged with the run id and deleted by
//!   the revert, which finds it again by those tags alone;
//! - one run at a time: a run takes the service's lease tag ([`lease`]) before its first change
//!   and refuses to start while another run holds it.
//!
//! One submodule per AWS service: [`ecs`] (task-kill, redeploy, service sampling), [`fis`]
//! (cpu-stress, latency), [`rds`] (db-failover, the master password of secret-drift),
//! [`secrets`] (secret-drift), [`watch`]
//! (CloudWatch metrics and alarms, ELB target health).

mod ecs;
mod error;
mod fis;
mod lease;
mod rds;
mod sampler;
mod secrets;
mod watch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::undo::{Failover, OnTasks, SecretDrift, Settles, UndoRecord};
use super::{BackendError, Injected, Resolved, Reverted, Sample};
use crate::faults::{Action, Step, Undo};
use crate::redact::Secrets;
use crate::scenario::units::format_duration;
use crate::scenario::{AwsTarget, Fault, Scenario, Selection, StopCondition};
use crate::util::Rng;

pub use watch::{CloudMetrics, MetricFailure};

use error::aws_error;

/// One client per AWS service siege talks to, all built from the same [`SdkConfig`].
struct Clients {
    sts: aws_sdk_sts::Client,
    ecs: aws_sdk_ecs::Client,
    fis: aws_sdk_fis::Client,
    rds: aws_sdk_rds::Client,
    secrets: aws_sdk_secretsmanager::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

/// The parts of an [`AwsTarget`] needed to reach it again from another process (`siege recover`).
/// Journaled; credentials are never part of it (the standard chain finds them again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Locator {
    pub region: String,
    pub account: Option<String>,
    pub cluster: String,
    pub service: String,
    #[serde(default)]
    pub target_group: Option<String>,
    #[serde(default)]
    pub load_balancer: Option<String>,
    #[serde(default)]
    pub db_cluster: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub fis_role: Option<String>,
    pub run_id: String,
}

/// A connection to one ECS service (and its balancer, database and secret) in one account.
/// Shared (and so small in the `Backend` enum) with the sampler tasks, which hold it weakly and
/// end when it is dropped.
pub struct AwsBackend(Arc<State>);

impl std::ops::Deref for AwsBackend {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

/// What an [`AwsBackend`] holds.
pub struct State {
    /// Where the secret values this backend handles are registered, to keep them out of every
    /// output of the run.
    secrets: Secrets,
    target: AwsTarget,
    run_id: String,
    clients: Clients,
    /// The region in use: the target's, else the one the SDK's region chain found.
    region: String,
    /// Account id reported by STS, asked once.
    caller_account: OnceCell<String>,
    /// Base URL of the load (the scenario's `url`, else the ALB's DNS name).
    entry_url: String,
    /// CloudWatch `LoadBalancer` dimension (`app/NAME/ID`) of the named balancer.
    lb_dimension: Option<String>,
    /// Newest ECS service event already returned by [`AwsBackend::sample`].
    last_event: Mutex<Option<watch::EventMark>>,
    /// FIS experiments this process started, watched by [`AwsBackend::sample`]: (fault, id,
    /// last status reported).
    experiments: Mutex<Vec<fis::Watched>>,
    /// The latest value of every source [`AwsBackend::sample`] reports, kept by one task per
    /// source, each on its own cadence and deadline (started by the first sample).
    samplers: sampler::Samplers,
    /// The service's lease, while this run holds it.
    lease: Mutex<Option<crate::backend::lease::Keeper>>,
}

/// Longest any single AWS call may take, retries included, so that a hung endpoint cannot stall
/// a run (or a revert) for ever.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Fewest attempts per call (the SDK retries throttling and transient errors with backoff):
/// more than the SDK's default three, because siege polls while a game day may be loading the
/// same account's APIs, and a revert given up on a throttle leaves a fault in place.
const MIN_ATTEMPTS: u32 = 5;

/// The SDK's HTTPS client: smithy's hyper client on rustls with ring and the system's roots
/// (the SDK's default one would build a second crypto library, aws-lc).
pub fn https_client() -> aws_sdk_sts::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

impl AwsBackend {
    /// Connects with the standard credential chain (env, profile, SSO, instance role) and region
    /// `target.region`, else the standard region chain (`AWS_REGION`, the profile);
    /// `target.endpoint` (else `AWS_ENDPOINT_URL`) overrides every endpoint.
    /// Secret values the backend reads or writes are registered in `registry`.
    pub async fn connect(target: &AwsTarget, run_id: &str, registry: Secrets) -> Result<Self, BackendError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
        if let Some(region) = &target.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &target.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        let mut b = Self::with_config(target, run_id, &config).await?;
        // Just built: nothing else holds the state yet.
        if let Some(state) = Arc::get_mut(&mut b.0) {
            state.secrets = registry;
        }
        Ok(b)
    }

    /// Connects with a ready [`SdkConfig`] (tests pass one with fixed credentials and a local
    /// endpoint, so that nothing leaks into the process environment). `target.endpoint`, when
    /// set, still wins.
    pub async fn with_config(target: &AwsTarget, run_id: &str, config: &SdkConfig) -> Result<Self, BackendError> {
        let region = target.region.clone().or_else(|| config.region().map(|r| r.to_string())).ok_or_else(|| {
            BackendError::Precondition(
                "no AWS region: set `region` in target.aws, or AWS_REGION / AWS_DEFAULT_REGION, or a region in the AWS profile".into(),
            )
        })?;
        let mut builder = config.to_builder();
        if config.http_client().is_none() {
            builder.set_http_client(Some(https_client()));
        }
        builder.set_region(Some(Region::new(region.clone())));
        if let Some(endpoint) = &target.endpoint {
            builder.set_endpoint_url(Some(endpoint.clone()));
        }
        let timeouts = aws_config::timeout::TimeoutConfig::builder().operation_timeout(OPERATION_TIMEOUT).build();
        builder.set_timeout_config(Some(timeouts));
        // The configured retry mode and backoff stay (`AWS_RETRY_MODE`, the profile); only the
        // number of attempts is raised.
        let retry = config.retry_config().cloned().unwrap_or_else(aws_config::retry::RetryConfig::standard);
        let attempts = retry.max_attempts().max(MIN_ATTEMPTS);
        builder.set_retry_config(Some(retry.with_max_attempts(attempts)));
        let config = builder.build();
        let clients = Clients {
            sts: aws_sdk_sts::Client::new(&config),
            ecs: aws_sdk_ecs::Client::new(&config),
            fis: aws_sdk_fis::Client::new(&config),
            rds: aws_sdk_rds::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
        };
        let mut entry_url = target.url.as_deref().unwrap_or_default().trim_end_matches('/').to_string();
        let mut lb_dimension = None;
        if let Some(lb) = &target.load_balancer {
            let (dns, dimension) = watch::describe_load_balancer(&clients.elb, lb).await?;
            if target.url.is_none() {
                entry_url = format!("http://{dns}");
            }
            lb_dimension = Some(dimension);
        }
        Ok(AwsBackend(Arc::new(State {
            target: target.clone(),
            run_id: run_id.to_string(),
            region,
            clients,
            caller_account: OnceCell::new(),
            entry_url,
            lb_dimension,
            last_event: Mutex::new(None),
            experiments: Mutex::new(Vec::new()),
            samplers: sampler::Samplers::default(),
            lease: Mutex::new(None),
            secrets: Secrets::default(),
        })))
    }

    /// How to reach this target again from `siege recover`.
    pub fn locator(&self) -> serde_json::Value {
        let t = &self.target;
        let l = Locator {
            region: self.region.clone(),
            account: t.account.clone(),
            cluster: t.cluster.clone(),
            service: t.service.clone(),
            target_group: t.target_group.clone(),
            load_balancer: t.load_balancer.clone(),
            db_cluster: t.db_cluster.clone(),
            secret: t.secret.clone(),
            url: t.url.clone(),
            endpoint: t.endpoint.clone(),
            fis_role: t.fis_role.clone(),
            run_id: self.run_id.clone(),
        };
        serde_json::to_value(l).unwrap_or(serde_json::Value::Null)
    }

    /// Reconnects from a journaled [`Locator`]. AWS targets do not vanish with the run, so this
    /// never returns `Ok(None)`.
    pub async fn reconnect(locator: &serde_json::Value) -> Result<Option<Self>, BackendError> {
        let l: Locator = serde_json::from_value(locator.clone())
            .map_err(|e| BackendError::Api(format!("unreadable aws locator in the journal: {e}")))?;
        // Neither the entry URL nor the balancer is needed to revert; skipping the balancer
        // lookup keeps `siege recover` working even when the balancer is gone.
        let target = AwsTarget {
            region: Some(l.region),
            account: l.account,
            cluster: l.cluster,
            service: l.service,
            target_group: l.target_group,
            db_cluster: l.db_cluster,
            secret: l.secret,
            url: Some(l.url.unwrap_or_default()),
            load_balancer: None,
            endpoint: l.endpoint,
            fis_role: l.fis_role,
            max_select: 1.0,
            allow_full_outage: false,
        };
        // A secret-drift's revert reads the previous password (to give it back to the
        // database); it is registered here, and no message of a revert carries it.
        Ok(Some(Self::connect(&target, &l.run_id, Secrets::default()).await?))
    }

    pub fn entry_url(&self) -> String {
        self.entry_url.clone()
    }

    /// The region in use: the target's, else the one the SDK's region chain found.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The account the credentials belong to, from STS (asked once).
    pub async fn caller_account(&self) -> Result<String, BackendError> {
        self.caller_account
            .get_or_try_init(|| async {
                let out = self
                    .clients
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| aws_error("sts:GetCallerIdentity", e))?;
                out.account()
                    .map(str::to_string)
                    .ok_or_else(|| BackendError::Api("sts:GetCallerIdentity returned no account".into()))
            })
            .await
            .cloned()
    }

    /// Refuses unless the credentials belong to `target.aws.account`. Called before every
    /// mutating call, so a wrong profile can never change anything.
    pub async fn ensure_account(&self) -> Result<(), BackendError> {
        let actual = self.caller_account().await?;
        match &self.target.account {
            Some(expected) if *expected == actual => Ok(()),
            Some(expected) => Err(BackendError::Precondition(format!(
                "the AWS credentials belong to account {actual}, but the scenario targets account {expected}; nothing was changed"
            ))),
            None => Err(BackendError::Precondition(format!(
                "target.aws.account is not set: siege changes nothing in an account the scenario does not name (these credentials belong to {actual})"
            ))),
        }
    }

    /// Checks, without changing anything, that the run can start: the account, the service, and
    /// every resource the faults and stop conditions name.
    pub async fn preflight(&self, scenario: &Scenario) -> Result<(), BackendError> {
        self.ensure_account().await?;
        self.describe_service().await?;
        if self.entry_url.is_empty() && !scenario.load.url.starts_with("http") {
            return Err(BackendError::Precondition(
                "the load URL is relative but the target has neither `url` nor `load_balancer`".into(),
            ));
        }
        if let Some(tg) = &self.target.target_group {
            self.target_health(tg).await?;
        }
        // The manual catalog too: a fault injected by command must not fail for a missing role.
        let manual: Vec<Fault> = scenario.manual.iter().map(|m| m.at(Duration::ZERO)).collect();
        for step in scenario.faults.iter().chain(&manual).map(Fault::step) {
            match step.action {
                _ if fis::action_of(&step).is_some() && self.target.fis_role.is_none() => {
                    return Err(BackendError::Precondition(format!(
                        "fault `{}` runs through FIS, which needs `target.aws.fis_role` (the IAM role FIS assumes)",
                        step.fault
                    )));
                }
                Action::FailOverDatabase { .. } => {
                    self.db_cluster_name(&step)?;
                }
                Action::RotateSecret => self.preflight_secret(&step).await?,
                _ => {}
            }
            // Resolving checks the blast radius and that the named resources exist.
            self.resolve(&step, &mut Rng::new(0)).await?;
        }
        for stop in &scenario.stop {
            if let StopCondition::Alarm { name } = stop {
                self.alarm_firing(name).await?;
            }
        }
        Ok(())
    }

    /// Which concrete resources `step` would touch now, with a precise summary. Mutates nothing.
    pub async fn resolve(&self, step: &Step, rng: &mut Rng) -> Result<Resolved, BackendError> {
        let select = || step.select.ok_or_else(|| BackendError::Api(format!("fault `{}` selects no task", step.fault)));
        let cluster = &self.target.cluster;
        let service = &self.target.service;
        if let Some(fis) = fis::action_of(step) {
            let (chosen, n) = self.select_tasks(select()?, rng).await?;
            fis.check_selection(step, chosen.len())?;
            return Ok(Resolved {
                summary: format!(
                    "FIS {} {} for {} on {} of {n} running tasks of service {service} (cluster {cluster}): {}; {}",
                    fis.id,
                    fis.effect,
                    format_duration(fis.duration),
                    chosen.len(),
                    short_ids(&chosen),
                    fis::LIFECYCLE
                ),
                targets: chosen,
            });
        }
        match &step.action {
            Action::StopTasks { .. } => {
                let (chosen, n) = self.select_tasks(select()?, rng).await?;
                Ok(Resolved {
                    summary: format!(
                        "stop {} of {n} running tasks of service {service} (cluster {cluster}): {}",
                        chosen.len(),
                        short_ids(&chosen)
                    ),
                    targets: chosen,
                })
            }
            Action::FailOverDatabase { promote, .. } => self.resolve_failover(step, promote.as_deref()).await,
            Action::RotateSecret => self.resolve_secret(step).await,
            Action::ReplaceTasks => self.resolve_redeploy().await,
            Action::BurnCpu { .. } | Action::DelayNetwork { .. } => {
                Err(BackendError::Unsupported { kind: step.kind, backend: "aws" })
            }
        }
    }

    /// Reads what is needed to undo `step` on `resolved`. Mutates nothing.
    pub async fn prepare(&self, step: &Step, resolved: &Resolved, run_id: &str) -> Result<Injected, BackendError> {
        let undo = match (fis::action_of(step), &step.action) {
            (Some(fis), _) => (fis.undo)(OnTasks::Fis { run_id: run_id.to_string() }),
            (None, Action::FailOverDatabase { .. }) => self.prepare_failover(step).await?,
            (None, Action::RotateSecret) => self.prepare_secret(step, resolved).await?,
            (None, Action::ReplaceTasks) => self.prepare_redeploy().await?,
            (None, _) => UndoRecord::Nothing(Settles::Ecs { previous_deployment: None }),
        };
        Ok(Injected::new(step, resolved, undo))
    }

    /// What the prepared injection will do, when its record says more than the resolution did
    /// (the secret version a drift writes is chosen in `prepare`).
    pub fn describe_prepared(&self, resolved: &Resolved, injected: &Injected) -> Option<String> {
        match &injected.undo {
            UndoRecord::RestoreSecret(SecretDrift::Aws(drift)) => self.describe_drift(resolved, drift),
            _ => None,
        }
    }

    pub async fn inject(&self, step: &Step, injected: &Injected, run_id: &str) -> Result<(), BackendError> {
        self.ensure_account().await?;
        self.lease_check()?;
        if let Some(fis) = fis::action_of(step) {
            return self.start_fis(step, &fis, injected, run_id).await;
        }
        match (&step.action, &injected.undo) {
            (Action::StopTasks { .. }, _) => self.stop_tasks(step, injected, run_id).await,
            (Action::FailOverDatabase { .. }, UndoRecord::EndDatabaseOutage(Failover::Aurora(f))) => {
                self.failover(f).await
            }
            (Action::RotateSecret, UndoRecord::RestoreSecret(SecretDrift::Aws(drift))) => {
                self.drift_secret(drift).await
            }
            (Action::ReplaceTasks, UndoRecord::Nothing(Settles::Ecs { previous_deployment: Some(previous) })) => {
                self.redeploy(previous).await
            }
            (_, record) => Err(not_ours(injected, record)),
        }
    }

    /// Idempotent, and works from the journaled record alone.
    pub async fn revert(&self, injected: &Injected) -> Result<Reverted, BackendError> {
        match &injected.undo {
            // Stopped tasks are replaced by ECS; a forced deployment is finished, not undone; an
            // Aurora failover has no outage left to end once it is done, and is not failed back
            // (that would be a second outage).
            UndoRecord::Nothing(_) | UndoRecord::EndDatabaseOutage(Failover::Aurora(_)) => Ok(Reverted::NothingLeft),
            UndoRecord::EndCpuBurn(OnTasks::Fis { run_id }) | UndoRecord::EndNetworkDelay(OnTasks::Fis { run_id }) => {
                self.ensure_account().await?;
                self.revert_fis(&injected.fault, run_id).await.map(|()| Reverted::Undone)
            }
            UndoRecord::RestoreSecret(SecretDrift::Aws(drift)) => {
                self.ensure_account().await?;
                self.revert_secret(drift).await.map(|()| Reverted::Undone)
            }
            record => Err(not_ours(injected, record)),
        }
    }

    /// A failover leaves nothing to undo once its injection, which waits for the new writer,
    /// has completed.
    pub fn settled_once_injected(&self, injected: &Injected) -> bool {
        injected.undo_kind() == Some(Undo::EndDatabaseOutage)
    }

    /// Service task counts and events, target health, the Aurora writer, CloudWatch metrics, and
    /// changes of state of the FIS experiments this run started: the latest value of each, at
    /// once. Each source is read by its own task on its own cadence, each call under its own
    /// deadline; a value older than its source's freshness bound is `None` and named in
    /// [`Sample::stale`], and a slow or failing source never holds up the others. The first call
    /// starts the tasks and waits (briefly) for their first answers.
    pub async fn sample(&self) -> Result<Sample, BackendError> {
        sampler::start(self).await;
        let mut sample = self.samplers.sample(self);
        sample.events.extend(self.lease_lost_note());
        Ok(sample)
    }

    /// Whether the named CloudWatch alarm is in state ALARM; a missing alarm is an error (a stop
    /// condition that can never trip is worse than none).
    pub async fn alarm_firing(&self, name: &str) -> Result<bool, BackendError> {
        match tokio::time::timeout(sampler::ALARM_DEADLINE, self.alarm_state(name)).await {
            Ok(state) => state,
            Err(_) => Err(BackendError::Api(format!(
                "cloudwatch DescribeAlarms: no answer within {}s for alarm {name}",
                sampler::ALARM_DEADLINE.as_secs()
            ))),
        }
    }

    /// Removes this run's lease tag.
    pub async fn shutdown(self) -> Result<(), BackendError> {
        self.end_lease().await
    }

    /// Refuses a selection of `k` of `n` tasks above `max_select`, unless the scenario allows a
    /// full outage.
    fn check_blast_radius(&self, select: Selection, k: usize, n: usize) -> Result<(), BackendError> {
        let fraction = k as f64 / n as f64;
        if !self.target.allow_full_outage && fraction > self.target.max_select + 1e-9 {
            let asked = match select {
                Selection::Count(c) => format!("{c}"),
                Selection::Percent(p) if ((p * 100.0).round() - p * 100.0).abs() < 1e-9 => format!("{:.0}%", p * 100.0),
                Selection::Percent(p) => format!("{:.1}%", p * 100.0),
            };
            return Err(BackendError::Precondition(format!(
                "select: {asked} picks {k} of {n} running tasks ({:.0}%), above max_select {:.0}%; set `allow_full_outage: true` on the target to allow it",
                fraction * 100.0,
                self.target.max_select * 100.0
            )));
        }
        Ok(())
    }
}

/// Task ids (the last part of their ARNs), comma-separated, for summaries.
fn short_ids(arns: &[String]) -> String {
    arns.iter().map(|a| a.rsplit('/').next().unwrap_or(a)).collect::<Vec<_>>().join(", ")
}

/// A journal record another backend wrote (a lab's, in an AWS run's journal): not acted on.
fn not_ours(injected: &Injected, record: &UndoRecord) -> BackendError {
    BackendError::Api(format!(
        "the journal record of fault `{}` was not written for AWS ({record:?}); nothing done",
        injected.fault
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator_round_trips() {
        let l = Locator {
            region: "us-east-1".into(),
            account: Some("123456789012".into()),
            cluster: "prod".into(),
            service: "api".into(),
            target_group: None,
            load_balancer: None,
            db_cluster: Some("prod-db".into()),
            secret: None,
            url: None,
            endpoint: Some("http://127.0.0.1:5000".into()),
            fis_role: None,
            run_id: "r1".into(),
        };
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(serde_json::from_value::<Locator>(v).unwrap(), l);
    }

    #[test]
    fn short_ids_take_the_last_arn_segment() {
        let arns = vec!["arn:aws:ecs:us-east-1:1:task/prod/abc".to_string(), "def".to_string()];
        assert_eq!(short_ids(&arns), "abc, def");
    }
}
