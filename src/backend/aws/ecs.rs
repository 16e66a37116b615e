//! ECS: the service's tasks (listing, seeded selection, `StopTask`), forced redeployments, and
//! the service sampler (task counts and events).
//!
//! A task belongs to the service when its `group` is `service:NAME`. siege checks that itself
//! rather than trusting `ListTasks --service-name` alone, so that no other task is ever touched
//! (some emulators ignore that filter).

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{DeploymentControllerType, DeploymentRolloutState, DesiredStatus, Task};

use super::AwsBackend;
use super::error::aws_error;
use crate::backend::undo::{Settles, UndoRecord};
use crate::backend::{BackendError, Injected, Resolved};
use crate::faults::{Selection, Step};
use crate::util::Rng;

/// ECS caps `reason` on `StopTask` at 255 characters.
const MAX_REASON: usize = 255;
/// `DescribeTasks` takes at most 100 tasks per call.
const DESCRIBE_BATCH: usize = 100;
/// How long a forced deployment may take to settle before `redeploy` gives up waiting.
const DEPLOYMENT_DEADLINE: Duration = Duration::from_secs(15 * 60);
const DEPLOYMENT_POLL: Duration = Duration::from_secs(2);

impl AwsBackend {
    /// The service's ECS `group`, e.g. `service:api`.
    fn service_group(&self) -> String {
        format!("service:{}", self.target.service)
    }

    pub(super) async fn describe_service(&self) -> Result<aws_sdk_ecs::types::Service, BackendError> {
        let out = self
            .clients
            .ecs
            .describe_services()
            .cluster(&self.target.cluster)
            .services(&self.target.service)
            .send()
            .await
            .map_err(|e| aws_error("ecs:DescribeServices", e))?;
        out.services().iter().find(|s| s.status() != Some("INACTIVE")).cloned().ok_or_else(|| {
            BackendError::NotFound(format!(
                "ECS service {} in cluster {} (region {})",
                self.target.service, self.target.cluster, self.region
            ))
        })
    }

    /// The service's tasks that ECS has not been told to stop (desired status RUNNING, whatever
    /// their last status), with when each was created where ECS says (Unix seconds).
    pub(super) async fn live_tasks(&self) -> Result<Vec<(String, Option<i64>)>, BackendError> {
        let mut tasks: Vec<(String, Option<i64>)> = self
            .service_tasks()
            .await?
            .into_iter()
            .filter(|t| t.desired_status() != Some("STOPPED"))
            .filter_map(|t| Some((t.task_arn()?.to_string(), t.created_at().map(|c| c.secs()))))
            .collect();
        tasks.sort();
        tasks.dedup();
        Ok(tasks)
    }

    /// Refuses a service whose deployments ECS does not run itself (CodeDeploy blue/green, an
    /// external controller): a forced deployment is ECS's rolling update. `why` says what needs
    /// one.
    pub(super) fn check_rolling_update(
        &self,
        service: &aws_sdk_ecs::types::Service,
        why: &str,
    ) -> Result<(), BackendError> {
        if let Some(kind) = service.deployment_controller().map(|c| c.r#type())
            && *kind != DeploymentControllerType::Ecs
        {
            return Err(BackendError::Precondition(format!(
                "{why} of service {} (deployment controller {}): siege forces new deployments of services with the ECS (rolling update) controller only",
                self.target.service,
                kind.as_str()
            )));
        }
        Ok(())
    }

    /// `UpdateService --force-new-deployment`; the id of the deployment it started (an error
    /// when it started none, i.e. the primary is still `previous`).
    pub(super) async fn force_new_deployment(&self, previous: &str) -> Result<String, BackendError> {
        let out = self
            .clients
            .ecs
            .update_service()
            .cluster(&self.target.cluster)
            .service(&self.target.service)
            .force_new_deployment(true)
            .send()
            .await
            .map_err(|e| aws_error("ecs:UpdateService", e))?;
        let started = match out.service().and_then(primary_deployment).and_then(|d| d.id()) {
            Some(id) => id.to_string(),
            None => {
                primary_deployment(&self.describe_service().await?).and_then(|d| d.id()).unwrap_or_default().to_string()
            }
        };
        if started.is_empty() || started == previous {
            return Err(BackendError::Api(format!(
                "ecs:UpdateService started no new deployment of service {} (the primary is still {previous})",
                self.target.service
            )));
        }
        Ok(started)
    }

    /// The id of the service's primary deployment (empty if it has none).
    pub(super) async fn primary_deployment_id(&self) -> Result<String, BackendError> {
        Ok(primary_deployment(&self.describe_service().await?).and_then(|d| d.id()).unwrap_or_default().to_string())
    }

    /// Every task of the service whose desired status is RUNNING, described.
    async fn service_tasks(&self) -> Result<Vec<Task>, BackendError> {
        let mut arns = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .clients
                .ecs
                .list_tasks()
                .cluster(&self.target.cluster)
                .service_name(&self.target.service)
                .desired_status(DesiredStatus::Running)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| aws_error("ecs:ListTasks", e))?;
            arns.extend(out.task_arns().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        let group = self.service_group();
        let mut tasks = self.describe_tasks(&arns).await?;
        tasks.retain(|t| t.group() == Some(group.as_str()));
        Ok(tasks)
    }

    async fn describe_tasks(&self, arns: &[String]) -> Result<Vec<Task>, BackendError> {
        let mut tasks = Vec::new();
        for chunk in arns.chunks(DESCRIBE_BATCH) {
            let out = self
                .clients
                .ecs
                .describe_tasks()
                .cluster(&self.target.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| aws_error("ecs:DescribeTasks", e))?;
            tasks.extend(out.tasks().iter().cloned());
        }
        Ok(tasks)
    }

    /// ARNs of the service's tasks that are running now, sorted so that a seed always picks the
    /// same tasks from the same set.
    async fn running_task_arns(&self) -> Result<Vec<String>, BackendError> {
        let mut arns: Vec<String> = self
            .service_tasks()
            .await?
            .into_iter()
            .filter(|t| t.last_status() == Some("RUNNING"))
            .filter_map(|t| t.task_arn().map(str::to_string))
            .collect();
        arns.sort();
        arns.dedup();
        Ok(arns)
    }

    /// Seeded choice of running tasks, within the blast-radius cap. Returns the chosen ARNs and
    /// how many were running.
    pub(super) async fn select_tasks(
        &self,
        select: Selection,
        rng: &mut Rng,
    ) -> Result<(Vec<String>, usize), BackendError> {
        let running = self.running_task_arns().await?;
        let n = running.len();
        if n == 0 {
            return Err(BackendError::Precondition(format!(
                "service {} in cluster {} has no running task to select",
                self.target.service, self.target.cluster
            )));
        }
        let k = select.of(n);
        if k == 0 {
            return Err(BackendError::Precondition(format!("select picks none of the {n} running tasks")));
        }
        self.check_blast_radius(select, k, n)?;
        Ok((rng.choose(&running, k), n))
    }

    /// task-kill: `StopTask` on each chosen task that still runs in the service, with a reason
    /// naming the run.
    pub(super) async fn stop_tasks(&self, step: &Step, injected: &Injected, run_id: &str) -> Result<(), BackendError> {
        let group = self.service_group();
        // Re-described now: a task may have stopped since it was chosen, and a journal edited by
        // hand must not make siege stop a task outside the named service.
        let current = self.describe_tasks(&injected.targets).await?;
        let mut reason = format!("siege run {run_id}: fault {} ({})", step.fault, step.kind);
        truncate_utf8(&mut reason, MAX_REASON);
        for arn in &injected.targets {
            let Some(task) = current.iter().find(|t| t.task_arn() == Some(arn.as_str())) else {
                continue;
            };
            if task.group() != Some(group.as_str()) {
                return Err(BackendError::Precondition(format!(
                    "task {arn} does not belong to service {}; refusing to stop it",
                    self.target.service
                )));
            }
            if task.desired_status() == Some("STOPPED") {
                continue;
            }
            self.clients
                .ecs
                .stop_task()
                .cluster(&self.target.cluster)
                .task(arn)
                .reason(&reason)
                .send()
                .await
                .map_err(|e| aws_error("ecs:StopTask", e))?;
        }
        Ok(())
    }

    pub(super) async fn resolve_redeploy(&self) -> Result<Resolved, BackendError> {
        let service = self.describe_service().await?;
        // Blue/green (CodeDeploy) and external controllers do not take a forced deployment.
        self.check_rolling_update(&service, "redeploy")?;
        let arn = service.service_arn().unwrap_or(&self.target.service).to_string();
        let running = self.running_task_arns().await?.len();
        Ok(Resolved {
            summary: format!(
                "force a new deployment of service {} (cluster {}): ECS replaces all {running} running tasks",
                self.target.service, self.target.cluster,
            ),
            targets: vec![arn],
        })
    }

    pub(super) async fn prepare_redeploy(&self) -> Result<UndoRecord, BackendError> {
        let service = self.describe_service().await?;
        let primary = primary_deployment(&service).and_then(|d| d.id()).unwrap_or_default().to_string();
        Ok(UndoRecord::Nothing(Settles::Ecs { previous_deployment: Some(primary) }))
    }

    /// redeploy: `UpdateService --force-new-deployment`, then waits until the deployment it
    /// started is the only one and has completed. A deployment that fails (the circuit breaker)
    /// or is replaced (a rollback, someone else's deployment) is an error at once.
    pub(super) async fn redeploy(&self, previous: &str) -> Result<(), BackendError> {
        let started = self.force_new_deployment(previous).await?;
        let deadline = Instant::now() + DEPLOYMENT_DEADLINE;
        loop {
            let service = self.describe_service().await?;
            match rollout(&service, &started) {
                Rollout::Completed => return Ok(()),
                Rollout::Failed(why) => {
                    return Err(BackendError::Api(format!(
                        "the new deployment {started} of service {}: {why}",
                        self.target.service
                    )));
                }
                Rollout::InProgress => {}
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Api(format!(
                    "the new deployment {started} of service {} did not settle within {}s",
                    self.target.service,
                    DEPLOYMENT_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(DEPLOYMENT_POLL).await;
        }
    }

    /// Desired count and new events from the service; running and pending counts from its tasks
    /// (which stay exact while ECS's own counters lag).
    pub(super) async fn service_counts(&self) -> Result<(ServiceCounts, Vec<String>), BackendError> {
        let service = self.describe_service().await?;
        let tasks = self.service_tasks().await?;
        let count = |f: fn(Option<&str>) -> bool| tasks.iter().filter(|t| f(t.last_status())).count() as u32;
        let counts = ServiceCounts {
            desired: service.desired_count().max(0) as u32,
            running: count(|s| s == Some("RUNNING")),
            pending: count(|s| matches!(s, Some("PROVISIONING" | "PENDING" | "ACTIVATING"))),
        };
        Ok((counts, self.new_events(service.events())))
    }
}

/// Task counts of the service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ServiceCounts {
    pub desired: u32,
    pub running: u32,
    pub pending: u32,
}

fn primary_deployment(service: &aws_sdk_ecs::types::Service) -> Option<&aws_sdk_ecs::types::Deployment> {
    service.deployments().iter().find(|d| d.status() == Some("PRIMARY"))
}

/// Where the deployment a redeploy started stands.
#[derive(Debug, PartialEq)]
enum Rollout {
    InProgress,
    Completed,
    /// Failed, or no longer the service's primary deployment: why.
    Failed(String),
}

/// A deployment has settled when it is the primary, the only one left, and complete (rollout
/// state COMPLETED, or all its tasks running where ECS reports no rollout state).
fn rollout(service: &aws_sdk_ecs::types::Service, id: &str) -> Rollout {
    let primary = primary_deployment(service).and_then(|d| d.id()).unwrap_or("none");
    let Some(d) = service.deployments().iter().find(|d| d.id() == Some(id)) else {
        return Rollout::Failed(format!("it is gone; the primary deployment is now {primary}"));
    };
    if d.rollout_state() == Some(&DeploymentRolloutState::Failed) {
        let reason = d.rollout_state_reason().unwrap_or("no reason given");
        return Rollout::Failed(format!("it failed ({reason}); the primary deployment is now {primary}"));
    }
    if d.status() != Some("PRIMARY") {
        return Rollout::Failed(format!("it is no longer the primary deployment; {primary} is"));
    }
    if service.deployments().len() != 1 {
        return Rollout::InProgress;
    }
    let done = match d.rollout_state() {
        Some(state) => *state == DeploymentRolloutState::Completed,
        None => d.running_count() >= d.desired_count(),
    };
    if done { Rollout::Completed } else { Rollout::InProgress }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};

    fn deployment(id: &str, status: &str, rollout: Option<DeploymentRolloutState>) -> Deployment {
        Deployment::builder().id(id).status(status).set_rollout_state(rollout).desired_count(2).running_count(2).build()
    }

    #[test]
    fn settles_only_when_the_started_deployment_completes_alone() {
        use DeploymentRolloutState::{Completed, InProgress};
        let rolling = Service::builder()
            .deployments(deployment("d2", "PRIMARY", Some(InProgress)))
            .deployments(deployment("d1", "ACTIVE", Some(Completed)))
            .build();
        assert_eq!(rollout(&rolling, "d2"), Rollout::InProgress);
        let draining = Service::builder()
            .deployments(deployment("d2", "PRIMARY", Some(Completed)))
            .deployments(deployment("d1", "ACTIVE", Some(Completed)))
            .build();
        assert_eq!(rollout(&draining, "d2"), Rollout::InProgress, "the old tasks still run");
        let done = Service::builder().deployments(deployment("d2", "PRIMARY", Some(Completed))).build();
        assert_eq!(rollout(&done, "d2"), Rollout::Completed);
        let no_state = Service::builder().deployments(deployment("d2", "PRIMARY", None)).build();
        assert_eq!(rollout(&no_state, "d2"), Rollout::Completed, "all its tasks run");
    }

    #[test]
    fn a_failed_or_replaced_deployment_fails_at_once() {
        use DeploymentRolloutState::{Completed, Failed, InProgress};
        let failed = Service::builder()
            .deployments(
                Deployment::builder()
                    .id("d2")
                    .status("PRIMARY")
                    .rollout_state(Failed)
                    .rollout_state_reason("ECS deployment circuit breaker: tasks failed to start.")
                    .build(),
            )
            .deployments(deployment("d1", "ACTIVE", Some(Completed)))
            .build();
        let Rollout::Failed(why) = rollout(&failed, "d2") else { panic!("not failed") };
        assert!(why.contains("circuit breaker"), "{why}");
        // The circuit breaker rolled back: a new primary, ours on its way out.
        let rolled_back = Service::builder()
            .deployments(deployment("d3", "PRIMARY", Some(InProgress)))
            .deployments(deployment("d2", "ACTIVE", Some(InProgress)))
            .build();
        let Rollout::Failed(why) = rollout(&rolled_back, "d2") else { panic!("not failed") };
        assert!(why.contains("d3 is"), "{why}");
        let gone = Service::builder().deployments(deployment("d3", "PRIMARY", Some(Completed))).build();
        let Rollout::Failed(why) = rollout(&gone, "d2") else { panic!("not failed") };
        assert!(why.contains("gone") && why.contains("d3"), "{why}");
    }

    #[test]
    fn reasons_are_cut_on_char_boundaries() {
        let mut s = "é".repeat(200);
        truncate_utf8(&mut s, MAX_REASON);
        assert!(s.len() <= MAX_REASON);
    }
}
