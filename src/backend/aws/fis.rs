//! FIS: cpu-stress (`aws:ecs:task-cpu-stress`) and latency (`aws:ecs:task-network-latency`).
//!
//! siege creates one experiment template per fault, tagged `siege:run-id` and `siege:fault`,
//! listing the chosen tasks by ARN; starts it and waits until it runs. The revert finds the
//! templates by those tags alone (so it works from the journal after a crash, whether or not the
//! template was ever created), stops their unfinished experiments and deletes them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_fis::types::{
    CreateExperimentTemplateActionInput, CreateExperimentTemplateStopConditionInput,
    CreateExperimentTemplateTargetInput, ExperimentStatus,
};

use super::AwsBackend;
use super::error::aws_error;
use crate::backend::undo::{OnTasks, UndoRecord};
use crate::backend::{BackendError, Injected};
use crate::faults::{Action, Step};

/// Tag keys on every template and experiment siege creates.
pub(crate) const TAG_RUN: &str = "siege:run-id";
pub(crate) const TAG_FAULT: &str = "siege:fault";

/// What the summary of a FIS fault says about the resources siege creates.
pub(super) const LIFECYCLE: &str =
    "siege creates an experiment template tagged with the run id, starts it, then stops it and deletes the template";

/// Used when a FIS fault has no `for` (validation normally requires one): FIS needs a duration.
const DEFAULT_DURATION: Duration = Duration::from_secs(5 * 60);
/// How long an experiment may take to start running (or to stop) before siege gives up waiting.
const START_DEADLINE: Duration = Duration::from_secs(120);
const STOP_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_secs(1);
/// FIS's key for the tasks an `aws:ecs:task` action acts on.
const TARGET: &str = "Tasks";
/// FIS takes at most five ARNs per target: a larger selection is split over several targets,
/// each with its own copy of the action, all running at once.
const ARNS_PER_TARGET: usize = 5;
/// FIS runs at most ten actions of an experiment at once (its default quota), so a cpu-stress
/// reaches at most fifty tasks.
const PARALLEL_ACTIONS: usize = 10;

/// An experiment started by this process, and the last status reported for it.
#[derive(Debug, Clone)]
pub(super) struct Watched {
    fault: String,
    id: String,
    status: ExperimentStatus,
}

/// The FIS action that carries out a step, and what siege needs to know about it. The one place
/// that says which actions go through FIS ([`action_of`]).
pub(super) struct FisAction {
    /// FIS's action id, e.g. `aws:ecs:task-cpu-stress`.
    pub id: &'static str,
    /// The action's parameters, the duration included.
    parameters: Vec<(&'static str, String)>,
    /// How long the experiment runs.
    pub duration: Duration,
    /// What it does, for summaries ("at 80%", "+200ms ±20ms").
    pub effect: String,
    /// The most tasks one experiment reaches with this action, and why.
    max_tasks: usize,
    why: String,
    /// The undo record of a fault carried out by this action.
    pub undo: fn(OnTasks) -> UndoRecord,
}

/// The FIS action for `step`, or `None` when siege does not run it through FIS.
pub(super) fn action_of(step: &Step) -> Option<FisAction> {
    // FIS needs a duration; validation normally requires `for` on these faults.
    let duration = step.duration.unwrap_or(DEFAULT_DURATION);
    let iso = iso8601(duration);
    match step.action {
        Action::BurnCpu { percent } => Some(FisAction {
            id: "aws:ecs:task-cpu-stress",
            parameters: vec![("duration", iso), ("percent", percent.to_string())],
            duration,
            effect: format!("at {percent}%"),
            max_tasks: PARALLEL_ACTIONS * ARNS_PER_TARGET,
            why: format!(
                "FIS takes {ARNS_PER_TARGET} tasks per target and runs at most {PARALLEL_ACTIONS} actions at once"
            ),
            undo: UndoRecord::EndCpuBurn,
        }),
        Action::DelayNetwork { delay, jitter } => Some(FisAction {
            id: "aws:ecs:task-network-latency",
            parameters: vec![
                ("duration", iso),
                ("delayMilliseconds", delay.as_millis().to_string()),
                ("jitterMilliseconds", jitter.as_millis().to_string()),
            ],
            duration,
            effect: format!("+{}ms ±{}ms", delay.as_millis(), jitter.as_millis()),
            // FIS does not run `aws:ecs:task-network-*` actions in parallel.
            max_tasks: ARNS_PER_TARGET,
            why: format!(
                "FIS takes {ARNS_PER_TARGET} tasks per target and does not run its network actions in parallel"
            ),
            undo: UndoRecord::EndNetworkDelay,
        }),
        Action::StopTasks { .. } | Action::FailOverDatabase { .. } | Action::RotateSecret | Action::ReplaceTasks => {
            None
        }
    }
}

impl FisAction {
    /// Refuses, before anything runs, a selection FIS cannot take in one experiment.
    pub(super) fn check_selection(&self, step: &Step, tasks: usize) -> Result<(), BackendError> {
        if tasks <= self.max_tasks {
            return Ok(());
        }
        Err(BackendError::Precondition(format!(
            "fault `{}` selects {tasks} tasks, but a {} through FIS reaches at most {} ({}); select fewer",
            step.fault, step.kind, self.max_tasks, self.why
        )))
    }
}

/// ISO 8601 duration as FIS wants it, e.g. `PT90S` (whole seconds, at least one).
fn iso8601(d: Duration) -> String {
    format!("PT{}S", d.as_secs().max(1))
}

/// A stable idempotency token for one fault of one run (FIS allows at most 64 characters).
fn client_token(run_id: &str, fault: &str, what: &str) -> String {
    // FNV-1a: stable across versions and platforms, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run_id.bytes().chain([0]).chain(fault.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("siege-{h:016x}-{what}")
}

/// One target of a template and the action that acts on it.
#[derive(Debug, PartialEq)]
struct TemplatePart<'a> {
    target: String,
    action: String,
    arns: &'a [String],
}

/// Splits the chosen tasks into targets of at most [`ARNS_PER_TARGET`] ARNs, each acted on by a
/// copy of the action named after the fault type. A selection that fits one target keeps the
/// plain names (`Tasks`, `cpu-stress`).
fn template_parts<'a>(action: &str, arns: &'a [String]) -> Vec<TemplatePart<'a>> {
    let chunks: Vec<&[String]> = arns.chunks(ARNS_PER_TARGET).collect();
    let single = chunks.len() == 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, arns)| TemplatePart {
            target: if single { TARGET.to_string() } else { format!("{TARGET}{}", i + 1) },
            action: if single { action.to_string() } else { format!("{action}-{}", i + 1) },
            arns,
        })
        .collect()
}

fn is_terminal(status: Option<&ExperimentStatus>) -> bool {
    matches!(
        status,
        Some(
            ExperimentStatus::Completed
                | ExperimentStatus::Stopped
                | ExperimentStatus::Failed
                | ExperimentStatus::Cancelled
        )
    )
}

impl AwsBackend {
    /// Ids of the templates tagged for this fault of this run.
    async fn find_templates(&self, run_id: &str, fault: &str) -> Result<Vec<String>, BackendError> {
        let mut ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .clients
                .fis
                .list_experiment_templates()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| aws_error("fis:ListExperimentTemplates", e))?;
            for t in out.experiment_templates() {
                let tags = t.tags();
                let tagged = |k: &str, v: &str| tags.and_then(|m| m.get(k)).is_some_and(|x| x == v);
                if tagged(TAG_RUN, run_id) && tagged(TAG_FAULT, fault) {
                    ids.extend(t.id().map(str::to_string));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(ids)
    }

    /// Creates the template, starts the experiment and waits until it runs.
    pub(super) async fn start_fis(
        &self,
        step: &Step,
        fis: &FisAction,
        injected: &Injected,
        run_id: &str,
    ) -> Result<(), BackendError> {
        let role = self.target.fis_role.as_deref().ok_or_else(|| {
            BackendError::Precondition(format!(
                "fault `{}` needs `target.aws.fis_role` (the role FIS assumes)",
                step.fault
            ))
        })?;
        if injected.targets.is_empty() {
            return Err(BackendError::Precondition(format!("fault `{}` has no task to act on", step.fault)));
        }
        let tags: HashMap<String, String> =
            HashMap::from([(TAG_RUN.to_string(), run_id.to_string()), (TAG_FAULT.to_string(), step.fault.clone())]);

        // A retried inject reuses the template it already created.
        let existing = self.find_templates(run_id, &step.fault).await?;
        let template_id = match existing.into_iter().next() {
            Some(id) => id,
            None => {
                let build_err = |e: aws_sdk_fis::error::BuildError| BackendError::Api(format!("fis request: {e}"));
                let stop =
                    CreateExperimentTemplateStopConditionInput::builder().source("none").build().map_err(build_err)?;
                let mut request = self
                    .clients
                    .fis
                    .create_experiment_template()
                    .client_token(client_token(run_id, &step.fault, "template"))
                    .description(format!("siege run {run_id}: fault {}", step.fault))
                    .role_arn(role)
                    .stop_conditions(stop)
                    .set_tags(Some(tags.clone()));
                for part in template_parts(step.kind, &injected.targets) {
                    let target = CreateExperimentTemplateTargetInput::builder()
                        .resource_type("aws:ecs:task")
                        .set_resource_arns(Some(part.arns.to_vec()))
                        .selection_mode("ALL")
                        .build()
                        .map_err(build_err)?;
                    let mut action = CreateExperimentTemplateActionInput::builder()
                        .action_id(fis.id)
                        .description(format!("siege fault {}", step.fault))
                        .targets(TARGET, &part.target);
                    for (k, v) in &fis.parameters {
                        action = action.parameters(*k, v);
                    }
                    let action = action.build().map_err(build_err)?;
                    request = request.targets(&part.target, target).actions(part.action, action);
                }
                let out = request.send().await.map_err(|e| aws_error("fis:CreateExperimentTemplate", e))?;
                out.experiment_template()
                    .and_then(|t| t.id())
                    .map(str::to_string)
                    .ok_or_else(|| BackendError::Api("fis:CreateExperimentTemplate returned no template id".into()))?
            }
        };

        let out = self
            .clients
            .fis
            .start_experiment()
            .client_token(client_token(run_id, &step.fault, "start"))
            .experiment_template_id(&template_id)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| aws_error("fis:StartExperiment", e))?;
        let experiment_id = out
            .experiment()
            .and_then(|e| e.id())
            .map(str::to_string)
            .ok_or_else(|| BackendError::Api("fis:StartExperiment returned no experiment id".into()))?;
        let status = self.wait_running(&experiment_id).await?;
        if let Ok(mut watched) = self.experiments.lock() {
            watched.push(Watched { fault: step.fault.clone(), id: experiment_id, status });
        }
        Ok(())
    }

    /// Notes for the experiments whose state changed since the last sample, e.g. one that failed
    /// because the tasks lack the SSM agent. Finished experiments are no longer asked about.
    pub(super) async fn watch_experiments(&self) -> Vec<String> {
        let pending: Vec<Watched> = match self.experiments.lock() {
            Ok(w) => w.iter().filter(|w| !is_terminal(Some(&w.status))).cloned().collect(),
            Err(_) => return Vec::new(),
        };
        let mut notes = Vec::new();
        for w in pending {
            let out = match self.clients.fis.get_experiment().id(&w.id).send().await {
                Ok(out) => out,
                Err(e) => {
                    notes.push(format!(
                        "FIS experiment {} of fault {}: {}",
                        w.id,
                        w.fault,
                        aws_error("fis:GetExperiment", e)
                    ));
                    continue;
                }
            };
            let state = out.experiment().and_then(|e| e.state());
            let Some(status) = state.and_then(|s| s.status()).cloned() else { continue };
            if status != w.status {
                let reason = state.and_then(|s| s.reason()).unwrap_or("");
                notes.push(
                    format!("FIS experiment {} of fault {}: {} {reason}", w.id, w.fault, status.as_str())
                        .trim_end()
                        .to_string(),
                );
                if let Ok(mut watched) = self.experiments.lock()
                    && let Some(x) = watched.iter_mut().find(|x| x.id == w.id)
                {
                    x.status = status;
                }
            }
        }
        notes
    }

    /// Watches a new experiment until it runs (or finishes); a failed one is an error with FIS's
    /// reason. Returns the status reached.
    async fn wait_running(&self, id: &str) -> Result<ExperimentStatus, BackendError> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let out =
                self.clients.fis.get_experiment().id(id).send().await.map_err(|e| aws_error("fis:GetExperiment", e))?;
            let state = out.experiment().and_then(|e| e.state());
            let status = state.and_then(|s| s.status());
            match status {
                Some(s @ (ExperimentStatus::Running | ExperimentStatus::Completed)) => return Ok(s.clone()),
                Some(s @ (ExperimentStatus::Failed | ExperimentStatus::Stopped | ExperimentStatus::Cancelled)) => {
                    let reason = state.and_then(|s| s.reason()).unwrap_or("no reason given");
                    return Err(BackendError::Api(format!("FIS experiment {id} {}: {reason}", s.as_str())));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Api(format!(
                    "FIS experiment {id} did not start running within {}s",
                    START_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops every unfinished experiment of the fault's templates and deletes the templates.
    /// Nothing found means nothing to do.
    pub(super) async fn revert_fis(&self, fault: &str, run_id: &str) -> Result<(), BackendError> {
        for template in self.find_templates(run_id, fault).await? {
            let experiments = self.template_experiments(&template).await?;
            for (id, status) in &experiments {
                // One already stopping (an earlier revert that gave up waiting) is only waited for.
                if !is_terminal(status.as_ref())
                    && status != &Some(ExperimentStatus::Stopping)
                    && let Err(e) = self.clients.fis.stop_experiment().id(id).send().await
                {
                    let err = aws_error("fis:StopExperiment", e);
                    // Finished between the listing and the stop (FIS then answers not found or
                    // ValidationException): nothing left to stop.
                    if !matches!(err, BackendError::NotFound(_)) && !self.experiment_finished(id).await? {
                        return Err(err);
                    }
                }
            }
            self.wait_stopped(&template).await?;
            match self.clients.fis.delete_experiment_template().id(&template).send().await {
                Ok(_) => {}
                Err(e) => {
                    let err = aws_error("fis:DeleteExperimentTemplate", e);
                    if !matches!(err, BackendError::NotFound(_)) {
                        return Err(err);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the experiment has finished, as `GetExperiment` reports it now.
    async fn experiment_finished(&self, id: &str) -> Result<bool, BackendError> {
        let out =
            self.clients.fis.get_experiment().id(id).send().await.map_err(|e| aws_error("fis:GetExperiment", e))?;
        Ok(is_terminal(out.experiment().and_then(|e| e.state()).and_then(|s| s.status())))
    }

    async fn template_experiments(
        &self,
        template: &str,
    ) -> Result<Vec<(String, Option<ExperimentStatus>)>, BackendError> {
        let mut found = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .clients
                .fis
                .list_experiments()
                .experiment_template_id(template)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| aws_error("fis:ListExperiments", e))?;
            for e in out.experiments() {
                // Some implementations ignore the filter; keep only this template's experiments.
                if e.experiment_template_id().is_some_and(|t| t != template) {
                    continue;
                }
                if let Some(id) = e.id() {
                    found.push((id.to_string(), e.state().and_then(|s| s.status()).cloned()));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(found)
    }

    /// Waits (bounded) until every experiment of `template` has finished, so that the template is
    /// not deleted from under a stopping experiment.
    async fn wait_stopped(&self, template: &str) -> Result<(), BackendError> {
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            let mut pending = Vec::new();
            for (id, _) in self.template_experiments(template).await? {
                // GetExperiment reports the freshest state.
                if !self.experiment_finished(&id).await? {
                    pending.push(id);
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Api(format!(
                    "FIS experiments {} of template {template} were still stopping after {}s",
                    pending.join(", "),
                    STOP_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Fault;

    #[test]
    fn iso_durations() {
        assert_eq!(iso8601(Duration::from_secs(90)), "PT90S");
        assert_eq!(iso8601(Duration::from_millis(200)), "PT1S");
    }

    #[test]
    fn more_than_five_tasks_are_split_over_targets_of_five() {
        let arns: Vec<String> = (0..12).map(|i| format!("arn:aws:ecs:us-east-1:123456789012:task/prod/{i}")).collect();
        let one = template_parts("latency", &arns[..5]);
        assert_eq!(one, vec![TemplatePart { target: "Tasks".into(), action: "latency".into(), arns: &arns[..5] }]);
        let parts = template_parts("cpu-stress", &arns);
        let names: Vec<(&str, &str, usize)> =
            parts.iter().map(|p| (p.target.as_str(), p.action.as_str(), p.arns.len())).collect();
        assert_eq!(
            names,
            [("Tasks1", "cpu-stress-1", 5), ("Tasks2", "cpu-stress-2", 5), ("Tasks3", "cpu-stress-3", 2)]
        );
        let all: Vec<&String> = parts.iter().flat_map(|p| p.arns).collect();
        assert_eq!(all, arns.iter().collect::<Vec<_>>(), "every chosen task, each once");
    }

    #[test]
    fn selections_fis_cannot_take_are_refused() {
        let check = |fault: &Fault, tasks| {
            let step = fault.step();
            action_of(&step).expect("a FIS action").check_selection(&step, tasks)
        };
        let stress = Fault {
            name: "cpu".into(),
            at: Duration::from_secs(10),
            duration: Some(Duration::from_secs(30)),
            kind: crate::scenario::FaultKind::CpuStress { select: crate::scenario::Selection::Count(1), percent: 50 },
        };
        assert!(check(&stress, 50).is_ok());
        let err = check(&stress, 51).expect_err("51 tasks").to_string();
        assert!(err.contains("selects 51 tasks") && err.contains("at most 50"), "{err}");
        let latency = Fault {
            kind: crate::scenario::FaultKind::Latency {
                select: crate::scenario::Selection::Count(1),
                delay: Duration::from_millis(100),
                jitter: Duration::ZERO,
            },
            ..stress
        };
        assert!(check(&latency, 5).is_ok());
        let err = check(&latency, 6).expect_err("6 tasks").to_string();
        assert!(err.contains("at most 5") && err.contains("network actions"), "{err}");
    }

    #[test]
    fn only_cpu_burns_and_network_delays_go_through_fis_with_their_parameters() {
        for def in crate::faults::REGISTRY {
            let fault = crate::scenario::Fault {
                name: def.name.into(),
                at: Duration::ZERO,
                duration: Some(Duration::from_secs(90)),
                kind: (def.build)(&crate::faults::sample_params(def)),
            };
            let step = fault.step();
            let fis = action_of(&step);
            match step.action {
                Action::BurnCpu { percent } => {
                    let fis = fis.expect("cpu burn");
                    assert_eq!(fis.id, "aws:ecs:task-cpu-stress");
                    assert!(fis.parameters.contains(&("percent", percent.to_string())));
                    assert!(fis.parameters.contains(&("duration", "PT90S".into())));
                    assert_eq!((fis.undo)(OnTasks::Lab).undo(), def.undo, "{}", def.name);
                }
                Action::DelayNetwork { .. } => {
                    let fis = fis.expect("network delay");
                    assert_eq!(fis.id, "aws:ecs:task-network-latency");
                    assert!(fis.parameters.iter().any(|(k, _)| *k == "delayMilliseconds"));
                    assert_eq!((fis.undo)(OnTasks::Lab).undo(), def.undo, "{}", def.name);
                }
                _ => assert!(fis.is_none(), "{} does not go through FIS", def.name),
            }
        }
    }

    #[test]
    fn client_tokens_are_stable_short_and_distinct() {
        let a = client_token("run-1", "cpu", "template");
        assert_eq!(a, client_token("run-1", "cpu", "template"));
        assert_ne!(a, client_token("run-1", "cpu2", "template"));
        assert_ne!(a, client_token("run-1", "cpu", "start"));
        assert!(a.len() <= 64);
    }
}
