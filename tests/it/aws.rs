//! Integration tests: the aws backend against moto's server (see `aws/moto.rs`). Each test starts
//! its own moto on a free loopback port; credentials and endpoint live on the SDK configuration
//! handed to the backend, never in this process's environment.

pub mod moto;

use std::time::Duration;

use aws_sdk_cloudwatch::types::StateValue;
use siege::backend::aws::AwsBackend;
use siege::backend::{BackendError, Injected, Reverted};
use siege::scenario::{
    AwsTarget, Fault, FaultKind, KillSignal, Load, Rate, Recovery, Scenario, Selection, SteadyState, StopCondition,
    Target,
};
use siege::util::Rng;

use moto::World;

const RUN: &str = "run-20261122T030000Z-test";

async fn backend(world: &World, target: AwsTarget) -> AwsBackend {
    AwsBackend::with_config(&target, RUN, &world.config).await.expect("connect to moto")
}

fn fault(name: &str, kind: FaultKind, duration: Option<Duration>) -> Fault {
    Fault { name: name.into(), at: Duration::from_secs(10), duration, kind }
}

fn scenario(target: AwsTarget, faults: Vec<Fault>, stop: Vec<StopCondition>) -> Scenario {
    Scenario {
        name: "aws-test".into(),
        description: None,
        runbook: None,
        seed: Some(7),
        target: Target::Aws(target),
        load: Load {
            url: "/".into(),
            rate: Rate { per_second: 10.0 },
            stages: vec![],
            duration: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
            insecure_tls: false,
        },
        steady_state: SteadyState { checks: vec![] },
        faults,
        manual: vec![],
        stop,
        recovery: Recovery { within: Duration::from_secs(60), hold: Duration::from_secs(5) },
    }
}

/// resolve → prepare → inject, as the engine does it.
async fn run_fault(b: &AwsBackend, f: &Fault, seed: u64) -> Injected {
    let resolved = b.resolve(&f.step(), &mut Rng::new(seed)).await.expect("resolve");
    let injected = b.prepare(&f.step(), &resolved, RUN).await.expect("prepare");
    b.inject(&f.step(), &injected, RUN).await.expect("inject");
    injected
}

fn kill(select: Selection) -> FaultKind {
    FaultKind::TaskKill { select, signal: KillSignal::Sigkill }
}

#[tokio::test]
async fn task_kill_stops_chosen_service_tasks_with_the_run_in_the_reason() {
    let mut world = World::start().await;
    let b = backend(&world, world.target()).await;
    let before = world.running_service_tasks().await;
    assert_eq!(before.len(), moto::TASKS);
    let first = b.sample().await.expect("sample");
    assert_eq!((first.running_tasks, first.healthy_targets), (Some(4), Some(4)));
    let mut events = first.events;

    let f = fault("kill-half", kill(Selection::Percent(0.5)), None);
    let resolved = b.resolve(&f.step(), &mut Rng::new(42)).await.expect("resolve");
    assert_eq!(resolved.targets.len(), 2);
    assert!(
        resolved.summary.starts_with("stop 2 of 4 running tasks of service api (cluster prod): "),
        "{}",
        resolved.summary
    );
    // The same seed picks the same tasks; the plan names them.
    let again = b.resolve(&f.step(), &mut Rng::new(42)).await.expect("resolve");
    assert_eq!(again.targets, resolved.targets);
    for t in &resolved.targets {
        assert!(before.contains(t));
        assert!(resolved.summary.contains(t.rsplit('/').next().unwrap()));
    }

    let injected = b.prepare(&f.step(), &resolved, RUN).await.expect("prepare");
    // prepare mutates nothing.
    assert_eq!(world.running_service_tasks().await.len(), moto::TASKS);
    b.inject(&f.step(), &injected, RUN).await.expect("inject");

    let tasks = world.all_tasks().await;
    for arn in &resolved.targets {
        let t = tasks.iter().find(|t| t.task_arn() == Some(arn)).expect("task still listed");
        assert_eq!(t.last_status(), Some("STOPPED"));
        let reason = t.stopped_reason().unwrap_or_default();
        assert!(reason.contains(RUN) && reason.contains("kill-half"), "reason: {reason}");
    }
    let bystander = tasks.iter().find(|t| t.task_arn() == Some(world.bystander_task.as_str())).unwrap();
    assert_eq!(bystander.last_status(), Some("RUNNING"), "a task outside the service was touched");
    for t in &before {
        if !resolved.targets.contains(t) {
            let t = tasks.iter().find(|x| x.task_arn() == Some(t)).unwrap();
            assert_eq!(t.last_status(), Some("RUNNING"));
        }
    }

    // The sampler sees the gap, then (once the scheduler plays ECS) the replacements.
    let mut gap = None;
    for _ in 0..50 {
        let s = b.sample().await.expect("sample");
        events.extend(s.events.clone());
        if s.running_tasks == Some(2) {
            gap = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gap.expect("the sampler did not see the stopped tasks").desired_tasks, Some(4));
    // The stopped tasks leave the target group; the target-health sampler (every second) sees it
    // before the replacements come.
    world.sync_targets().await;
    let mut drained = false;
    for _ in 0..50 {
        let s = b.sample().await.expect("sample");
        events.extend(s.events.clone());
        if s.healthy_targets == Some(2) {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(drained, "the sampler did not see the stopped tasks leave the target group");
    world.start_scheduler(Duration::from_millis(500));
    let mut recovered = false;
    for _ in 0..300 {
        let s = b.sample().await.expect("sample");
        events.extend(s.events);
        if s.running_tasks == Some(4) && s.healthy_targets == Some(4) {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the scheduler did not replace the stopped tasks");
    // What changed is in the events (the run's timeline), when the samplers saw it.
    let changes: Vec<&String> = events.iter().filter(|e| e.contains(" -> ")).collect();
    let running = |from: u32, to: u32| format!("ECS service api: running tasks {from} -> {to} (desired 4");
    // The two StopTask calls are not one step: a read between them sees 4 -> 3, then 3 -> 2.
    let first_running = changes.iter().find(|e| e.contains("running tasks"));
    assert!(
        first_running.is_some_and(|e| e.starts_with(&running(4, 2)) || e.starts_with(&running(4, 3))),
        "{changes:#?}"
    );
    assert!(changes.iter().any(|e| e.contains("running tasks") && e.contains("-> 2 (desired 4")), "{changes:#?}");
    assert!(changes.iter().any(|e| e.contains("running tasks") && e.contains("-> 4 (desired 4")), "{changes:#?}");
    assert!(changes.iter().any(|e| e.starts_with("target group api: healthy targets 4 -> ")), "{changes:#?}");
    // Nothing to revert for a kill; revert is still accepted (idempotent).
    b.revert(&injected).await.expect("revert");
}

#[tokio::test]
async fn selections_above_max_select_are_refused_unless_full_outage_is_allowed() {
    let world = World::start().await;
    let b = backend(&world, world.target()).await;
    let f = fault("kill-all", kill(Selection::Percent(1.0)), None);
    let err = b.resolve(&f.step(), &mut Rng::new(1)).await.expect_err("blast radius");
    assert!(matches!(err, BackendError::Precondition(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("select: 100% picks 4 of 4 running tasks"), "{msg}");
    assert!(msg.contains("max_select 50%") && msg.contains("allow_full_outage"), "{msg}");
    let f3 = fault("kill-three", kill(Selection::Count(3)), None);
    assert!(matches!(b.resolve(&f3.step(), &mut Rng::new(1)).await, Err(BackendError::Precondition(_))));
    // preflight applies the same cap before anything runs.
    let sc = scenario(world.target(), vec![f.clone()], vec![]);
    assert!(matches!(b.preflight(&sc).await, Err(BackendError::Precondition(_))));

    let mut allowed = world.target();
    allowed.allow_full_outage = true;
    let b = backend(&world, allowed).await;
    let r = b.resolve(&f.step(), &mut Rng::new(1)).await.expect("allowed");
    assert_eq!(r.targets.len(), moto::TASKS);
}

#[tokio::test]
async fn cpu_stress_and_latency_run_through_fis_templates_that_are_removed_on_revert() {
    let world = World::start().await;
    let b = backend(&world, world.target()).await;
    let cases = [
        (
            fault(
                "cpu",
                FaultKind::CpuStress { select: Selection::Count(2), percent: 80 },
                Some(Duration::from_secs(90)),
            ),
            "aws:ecs:task-cpu-stress",
        ),
        (
            fault(
                "slow",
                FaultKind::Latency {
                    select: Selection::Percent(0.25),
                    delay: Duration::from_millis(200),
                    jitter: Duration::from_millis(20),
                },
                Some(Duration::from_secs(60)),
            ),
            "aws:ecs:task-network-latency",
        ),
    ];
    for (f, action_id) in cases {
        let resolved = b.resolve(&f.step(), &mut Rng::new(3)).await.expect("resolve");
        assert!(resolved.summary.contains(action_id), "{}", resolved.summary);
        let injected = b.prepare(&f.step(), &resolved, RUN).await.expect("prepare");
        assert!(templates(&world).await.is_empty(), "prepare created something");
        b.inject(&f.step(), &injected, RUN).await.expect("inject");

        let tmpls = templates(&world).await;
        assert_eq!(tmpls.len(), 1);
        let (tid, tags) = &tmpls[0];
        assert_eq!(tags.get("siege:run-id").map(String::as_str), Some(RUN));
        assert_eq!(tags.get("siege:fault").map(String::as_str), Some(f.name.as_str()));
        let t = world.fis.get_experiment_template().id(tid).send().await.unwrap();
        let t = t.experiment_template().unwrap();
        let action = t.actions().unwrap().values().next().unwrap();
        assert_eq!(action.action_id(), Some(action_id));
        let target = t.targets().unwrap().get("Tasks").unwrap();
        assert_eq!(target.resource_type(), Some("aws:ecs:task"));
        let mut arns = target.resource_arns().to_vec();
        arns.sort();
        let mut want = resolved.targets.clone();
        want.sort();
        assert_eq!(arns, want, "the template targets exactly the resolved tasks");
        let exps = experiments(&world).await;
        assert_eq!(exps.len(), 1);
        assert_eq!(exps[0].1, "running");

        b.revert(&injected).await.expect("revert");
        assert!(templates(&world).await.is_empty(), "template not deleted");
        let exp = world.fis.get_experiment().id(&exps[0].0).send().await.unwrap();
        assert_eq!(exp.experiment().unwrap().state().unwrap().status().unwrap().as_str(), "stopped");
        // The sampler watches the experiments the run started and reports their changes once.
        let note = format!("FIS experiment {} of fault {}: stopped", exps[0].0, f.name);
        let mut events = Vec::new();
        for _ in 0..100 {
            events.extend(b.sample().await.expect("sample").events);
            if events.iter().any(|e| e.starts_with(&note)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(events.iter().any(|e| e.starts_with(&note)), "{events:?}");
        // Time passes on purpose: the sampler (every second) must not report it again in it.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!b.sample().await.expect("sample").events.iter().any(|e| e.starts_with(&note)), "reported once");
        // Idempotent.
        b.revert(&injected).await.expect("second revert");
        // A record whose injection never ran reverts to nothing.
        let never = b.prepare(&f.step(), &resolved, "run-that-never-injected").await.unwrap();
        b.revert(&never).await.expect("revert of a never-injected fault");
    }
}

#[tokio::test]
async fn fis_faults_on_more_than_five_tasks_split_them_over_targets_of_five() {
    let world = World::start().await;
    world.add_service_tasks(4).await;
    let mut target = world.target();
    target.allow_full_outage = true;
    let b = backend(&world, target).await;
    let f = fault(
        "cpu-wide",
        FaultKind::CpuStress { select: Selection::Count(7), percent: 50 },
        Some(Duration::from_secs(60)),
    );
    let resolved = b.resolve(&f.step(), &mut Rng::new(5)).await.expect("resolve");
    assert_eq!(resolved.targets.len(), 7);
    let injected = b.prepare(&f.step(), &resolved, RUN).await.expect("prepare");
    b.inject(&f.step(), &injected, RUN).await.expect("inject");

    let tmpls = templates(&world).await;
    assert_eq!(tmpls.len(), 1, "one template for the fault");
    let t = world.fis.get_experiment_template().id(&tmpls[0].0).send().await.unwrap();
    let t = t.experiment_template().unwrap();
    let targets = t.targets().unwrap();
    assert_eq!(targets.len(), 2, "{targets:?}");
    let mut arns: Vec<String> = targets
        .values()
        .inspect(|t| assert!(t.resource_arns().len() <= 5, "FIS takes at most five ARNs per target: {t:?}"))
        .flat_map(|t| t.resource_arns().to_vec())
        .collect();
    arns.sort();
    let mut want = resolved.targets.clone();
    want.sort();
    assert_eq!(arns, want, "the targets together list exactly the resolved tasks");
    // Each target has its own copy of the action.
    let actions = t.actions().unwrap();
    let mut acted_on: Vec<&str> = actions
        .values()
        .inspect(|a| assert_eq!(a.action_id(), Some("aws:ecs:task-cpu-stress")))
        .filter_map(|a| a.targets()?.get("Tasks").map(String::as_str))
        .collect();
    acted_on.sort();
    let mut names: Vec<&str> = targets.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(acted_on, names);

    b.revert(&injected).await.expect("revert");
    assert!(templates(&world).await.is_empty(), "template not deleted");

    // FIS does not run its network actions in parallel: a latency on more than five tasks is
    // refused before anything is created.
    let wide_latency = fault(
        "slow-wide",
        FaultKind::Latency { select: Selection::Count(6), delay: Duration::from_millis(100), jitter: Duration::ZERO },
        Some(Duration::from_secs(60)),
    );
    let err = b.resolve(&wide_latency.step(), &mut Rng::new(5)).await.expect_err("six tasks of latency");
    assert!(matches!(err, BackendError::Precondition(_)), "{err}");
    assert!(err.to_string().contains("at most 5") && err.to_string().contains("network actions"), "{err}");
}

async fn templates(world: &World) -> Vec<(String, std::collections::HashMap<String, String>)> {
    let out = world.fis.list_experiment_templates().send().await.expect("list templates");
    out.experiment_templates()
        .iter()
        .map(|t| (t.id().unwrap_or_default().to_string(), t.tags().cloned().unwrap_or_default()))
        .collect()
}

/// Experiments that have not finished, with their status.
async fn experiments(world: &World) -> Vec<(String, String)> {
    let out = world.fis.list_experiments().send().await.expect("list experiments");
    out.experiments()
        .iter()
        .map(|e| {
            (
                e.id().unwrap_or_default().to_string(),
                e.state().and_then(|s| s.status()).map(|s| s.as_str().to_string()).unwrap_or_default(),
            )
        })
        .filter(|(_, s)| s != "stopped" && s != "completed")
        .collect()
}

#[tokio::test]
async fn db_failover_moves_the_writer_to_the_named_replica() {
    let world = World::start().await;
    let b = backend(&world, world.target()).await;
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_WRITER));
    // Named as RDS compares identifiers: without regard to case.
    let f = fault(
        "failover",
        FaultKind::DbFailover { outage: None, target_instance: Some(moto::DB_READER.to_uppercase()) },
        None,
    );
    let resolved = b.resolve(&f.step(), &mut Rng::new(1)).await.expect("resolve");
    assert_eq!(resolved.summary, "fail over Aurora cluster prod-db: writer prod-db-instance-1 -> prod-db-instance-2");
    let injected = b.prepare(&f.step(), &resolved, RUN).await.expect("prepare");
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_WRITER), "prepare mutated");
    let first = b.sample().await.unwrap();
    assert_eq!(first.db_writer.as_deref(), Some(moto::DB_WRITER));
    b.inject(&f.step(), &injected, RUN).await.expect("inject");
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_READER));
    let mut events = first.events;
    let moved = wait_async(Duration::from_secs(5), || {
        let s = b.sample();
        async {
            let s = s.await.ok()?;
            (s.db_writer.as_deref() == Some(moto::DB_READER)).then_some(s)
        }
    })
    .await
    .expect("the sampler did not see the new writer");
    events.extend(moved.events);
    let change = format!("Aurora cluster prod-db: writer {} -> {}", moto::DB_WRITER, moto::DB_READER);
    assert!(events.contains(&change), "{events:?}");
    // Nothing to revert: the cluster keeps its new writer, and siege says so rather than
    // "reverted".
    assert!(b.settled_once_injected(&injected));
    assert_eq!(b.revert(&injected).await.expect("revert"), Reverted::NothingLeft);
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_READER), "failed back");

    // A target instance outside the cluster is refused before anything happens.
    let bad = fault("bad", FaultKind::DbFailover { outage: None, target_instance: Some("other-db".into()) }, None);
    let err = b.resolve(&bad.step(), &mut Rng::new(1)).await.expect_err("not a member");
    assert!(matches!(err, BackendError::Precondition(_)), "{err}");
}

#[tokio::test]
async fn secret_drift_changes_the_value_and_revert_restores_the_previous_version() {
    let world = World::start().await;
    world.moto.start_recording();
    let b = backend(&world, world.target()).await;
    // A rotation before the run: the first version is AWSPREVIOUS, the second AWSCURRENT.
    let rotated = r#"{"username":"app","password":"rotated-password"}"#;
    world.secrets.put_secret_value().secret_id(moto::SECRET).secret_string(rotated).send().await.unwrap();
    let (value0, version0) = world.secret_current().await;
    assert_eq!(value0, rotated);
    let labels0 = world.secret_labels().await;
    assert_eq!(labels0.values().filter(|l| l.contains(&"AWSPREVIOUS".to_string())).count(), 1, "{labels0:?}");

    let f = fault("drift", FaultKind::SecretDrift, None);
    let resolved = b.resolve(&f.step(), &mut Rng::new(1)).await.expect("resolve");
    assert!(resolved.summary.contains(moto::SECRET) && resolved.summary.contains(&version0), "{}", resolved.summary);
    let injected = b.prepare(&f.step(), &resolved, RUN).await.expect("prepare");
    assert_eq!(world.secret_current().await.1, version0, "prepare mutated");
    let journal = serde_json::to_string(&injected).unwrap();
    assert!(!journal.contains("rotated-password"), "the journal holds a secret value");
    b.inject(&f.step(), &injected, RUN).await.expect("inject");

    let (value1, version1) = world.secret_current().await;
    assert_ne!(version1, version0);
    assert_ne!(value1, value0);
    let parsed: serde_json::Value = serde_json::from_str(&value1).expect("still JSON");
    assert_eq!(parsed["username"], "app");
    assert_ne!(parsed["password"], "rotated-password");
    assert_eq!(world.db_password(), parsed["password"], "the database did not get the new password");

    b.revert(&injected).await.expect("revert");
    assert_eq!(world.secret_current().await, (value0.clone(), version0.clone()));
    assert_eq!(world.db_password(), "rotated-password", "the database is not back on the secret's password");
    // AWSPREVIOUS is back on the version that had it; siege's own version keeps no label.
    let mut labels = world.secret_labels().await;
    assert_eq!(labels.remove(&version1).unwrap_or_default(), Vec::<String>::new(), "{labels:?}");
    assert_eq!(labels, labels0);
    b.revert(&injected).await.expect("second revert");
    assert_eq!(world.secret_current().await, (value0.clone(), version0.clone()));
    let mut labels = world.secret_labels().await;
    labels.remove(&version1);
    assert_eq!(labels, labels0);

    // Prepared but never injected (a crash between the journal and the call): nothing to undo.
    let never = b.prepare(&f.step(), &resolved, RUN).await.unwrap();
    b.revert(&never).await.expect("revert of a never-injected drift");
    assert_eq!(world.secret_current().await.1, version0);

    // moto's default version does not follow UpdateSecretVersionStage, and its next
    // PutSecretValue would leave AWSCURRENT on two versions (which siege refuses to act on):
    // AWSCURRENT goes back to moto's default, then a rotation puts moto back in step.
    world
        .secrets
        .update_secret_version_stage()
        .secret_id(moto::SECRET)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&version1)
        .remove_from_version_id(&version0)
        .send()
        .await
        .unwrap();
    world.secrets.put_secret_value().secret_id(moto::SECRET).secret_string(rotated).send().await.unwrap();
    let version0 = world.secret_current().await.1;

    // Someone moves AWSPREVIOUS to a version of their own during a drift: the revert leaves it
    // there rather than putting back the one it saw before the run.
    let again = run_fault(&b, &f, 1).await;
    let theirs = world
        .secrets
        .put_secret_value()
        .secret_id(moto::SECRET)
        .secret_string(r#"{"username":"app","password":"staged-by-someone"}"#)
        .version_stages("STAGED")
        .send()
        .await
        .unwrap();
    let theirs = theirs.version_id().unwrap().to_string();
    let labelled = world.secret_labels().await;
    let holder = labelled.iter().find(|(_, l)| l.contains(&"AWSPREVIOUS".to_string())).map(|(v, _)| v.clone());
    world
        .secrets
        .update_secret_version_stage()
        .secret_id(moto::SECRET)
        .version_stage("AWSPREVIOUS")
        .move_to_version_id(&theirs)
        .set_remove_from_version_id(holder)
        .send()
        .await
        .unwrap();
    b.revert(&again).await.expect("revert");
    assert_eq!(world.secret_current().await.1, version0);
    let labels = world.secret_labels().await;
    assert!(labels[&theirs].contains(&"AWSPREVIOUS".to_string()), "{labels:?}");
}

/// Puts moto's default version of the secret back in step with AWSCURRENT after a revert moved
/// AWSCURRENT off `drifted` (moto's next `PutSecretValue` would otherwise leave AWSCURRENT on two
/// versions): AWSCURRENT goes to `drifted`, moto's default, then a write of the initial value
/// makes a new current version. Returns its id.
async fn resync_secret(world: &World, current: &str, drifted: &str) -> String {
    world
        .secrets
        .update_secret_version_stage()
        .secret_id(moto::SECRET)
        .version_stage("AWSCURRENT")
        .move_to_version_id(drifted)
        .remove_from_version_id(current)
        .send()
        .await
        .unwrap();
    world.secrets.put_secret_value().secret_id(moto::SECRET).secret_string(moto::SECRET_VALUE).send().await.unwrap();
    world.secret_current().await.1
}

#[tokio::test]
async fn secret_drift_rotates_the_database_with_the_secret_and_its_revert_replaces_the_tasks_started_meanwhile() {
    let world = World::start().await;
    world.moto.start_recording();
    let b = backend(&world, world.target()).await;
    let drift = fault("drift", FaultKind::SecretDrift, None);
    b.preflight(&scenario(world.target(), vec![drift.clone()], vec![])).await.expect("preflight");
    let (value0, version0) = world.secret_current().await;
    assert_eq!(world.db_password(), moto::DB_PASSWORD);

    // No task starts during the drift: the revert puts the password back in both places and
    // replaces nothing.
    let resolved = b.resolve(&drift.step(), &mut Rng::new(1)).await.expect("resolve");
    let injected = b.prepare(&drift.step(), &resolved, RUN).await.expect("prepare");
    let journal = serde_json::to_string(&injected).unwrap();
    assert!(!journal.contains(moto::DB_PASSWORD), "the journal holds a password: {journal}");
    let undo = serde_json::to_value(&injected.undo).unwrap();
    assert_eq!(
        (&undo["op"], &undo["on"]),
        (&serde_json::json!("restore-secret"), &serde_json::json!("aws")),
        "{journal}"
    );
    assert_eq!(undo["db_cluster"], moto::DB_CLUSTER);
    assert_eq!(undo["previous_version"], version0.as_str());
    assert!(undo["injected_at"].as_u64().is_some_and(|t| t > 1_700_000_000), "{journal}");
    assert_eq!(undo["tasks_before"].as_array().map(Vec::len), Some(moto::TASKS), "{journal}");
    // The summary names the version siege writes and the one it replaces.
    let new_version = undo["new_version"].as_str().unwrap().to_string();
    let summary = b.describe_prepared(&resolved, &injected).expect("a summary");
    assert!(
        summary.contains(&format!("new version {new_version} becomes AWSCURRENT, replacing version {version0}"))
            && summary.contains("Aurora cluster prod-db"),
        "{summary}"
    );
    b.inject(&drift.step(), &injected, RUN).await.expect("inject");
    let (value1, version1) = world.secret_current().await;
    assert_eq!(version1, new_version);
    let drifted: serde_json::Value = serde_json::from_str(&value1).unwrap();
    assert_eq!(drifted["username"], "app");
    assert_ne!(drifted["password"], moto::DB_PASSWORD);
    assert_eq!(world.db_password(), drifted["password"], "the database and the secret differ during the drift");
    let deployment0 = world.primary_deployment().await;
    b.revert(&injected).await.expect("revert");
    assert_eq!(world.secret_current().await, (value0.clone(), version0.clone()));
    assert_eq!(world.db_password(), moto::DB_PASSWORD);
    assert_eq!(world.primary_deployment().await, deployment0, "tasks replaced though none started during the drift");

    // A task starts during the drift (a replacement, a scale-out): it reads the drifted
    // password, so the revert replaces it with a forced deployment, and stops nothing itself.
    let version0 = resync_secret(&world, &version0, &version1).await;
    let resolved = b.resolve(&drift.step(), &mut Rng::new(1)).await.expect("resolve");
    let injected = b.prepare(&drift.step(), &resolved, RUN).await.expect("prepare");
    b.inject(&drift.step(), &injected, RUN).await.expect("inject");
    world.add_service_tasks(1).await;
    let running = world.running_service_tasks().await;
    assert_eq!(running.len(), moto::TASKS + 1);
    b.revert(&injected).await.expect("revert");
    assert_eq!(world.secret_current().await.1, version0);
    assert_eq!(world.db_password(), moto::DB_PASSWORD);
    let deployment1 = world.primary_deployment().await;
    assert_ne!(deployment1, deployment0, "the task started during the drift was not replaced");
    assert_eq!(world.running_service_tasks().await, running, "siege stopped tasks itself");
    // A second revert changes nothing: no second deployment.
    b.revert(&injected).await.expect("second revert");
    assert_eq!(world.primary_deployment().await, deployment1);
    assert_eq!(world.db_password(), moto::DB_PASSWORD);

    // What the preflight refuses, naming what to change: no cluster named, a secret that is not
    // JSON with a password.
    let no_cluster = AwsTarget { db_cluster: None, ..world.target() };
    let e = backend(&world, no_cluster.clone())
        .await
        .preflight(&scenario(no_cluster, vec![drift.clone()], vec![]))
        .await
        .expect_err("no db_cluster");
    assert!(matches!(e, BackendError::Precondition(_)) && e.to_string().contains("target.aws.db_cluster"), "{e}");
    world.secrets.create_secret().name("plain").secret_string("hunter2-plain-text").send().await.unwrap();
    let plain = AwsTarget { secret: Some("plain".into()), ..world.target() };
    let e = backend(&world, plain.clone())
        .await
        .preflight(&scenario(plain, vec![drift.clone()], vec![]))
        .await
        .expect_err("not JSON");
    let msg = e.to_string();
    assert!(matches!(e, BackendError::Precondition(_)) && msg.contains("`password` field"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert_eq!(world.db_password(), moto::DB_PASSWORD, "a preflight changed the database");
}

#[tokio::test]
async fn a_secret_with_awscurrent_on_two_versions_is_refused_by_run_and_recover() {
    let world = World::start().await;
    let b = backend(&world, world.target()).await;
    let put = |password: &'static str| {
        world
            .secrets
            .put_secret_value()
            .secret_id(moto::SECRET)
            .secret_string(format!(r#"{{"username":"app","password":"{password}"}}"#))
            .send()
    };
    let (_, version0) = world.secret_current().await;
    let version1 = put("second").await.unwrap().version_id().unwrap().to_string();
    world
        .secrets
        .update_secret_version_stage()
        .secret_id(moto::SECRET)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&version0)
        .remove_from_version_id(&version1)
        .send()
        .await
        .unwrap();
    // moto's default version stayed on `version1`, so this write leaves AWSCURRENT on
    // `version0` as well as on the new version: the state to refuse.
    let version2 = put("third").await.unwrap().version_id().unwrap().to_string();
    let labels = world.secret_labels().await;
    let current: Vec<&String> =
        labels.iter().filter(|(_, l)| l.contains(&"AWSCURRENT".to_string())).map(|(v, _)| v).collect();
    assert_eq!(current.len(), 2, "moto no longer makes this state: {labels:?}");

    let refused = |e: BackendError| {
        let msg = e.to_string();
        assert!(matches!(e, BackendError::Precondition(_)), "{msg}");
        assert!(msg.contains("2 versions carry AWSCURRENT") && msg.contains("ambiguous"), "{msg}");
        assert!(msg.contains(&version0) && msg.contains(&version2), "{msg}");
    };
    // The run: plan and prepare refuse.
    let f = fault("drift", FaultKind::SecretDrift, None);
    refused(b.resolve(&f.step(), &mut Rng::new(1)).await.expect_err("resolve"));
    let resolved = siege::backend::Resolved { targets: vec![moto::SECRET.into()], summary: String::new() };
    refused(b.prepare(&f.step(), &resolved, RUN).await.expect_err("prepare"));
    // The recovery of a journaled drift (its new version is one of the two): refuses, and
    // moves no label.
    let journaled: Injected = serde_json::from_value(serde_json::json!({
        "fault": "drift",
        "kind": "secret-drift",
        "targets": [moto::SECRET],
        "undo": {
            "op": "restore-secret", "on": "aws",
            "secret": moto::SECRET, "previous_version": version0, "awsprevious_version": version1, "new_version": version2,
        },
    }))
    .expect("a journal record");
    refused(b.revert(&journaled).await.expect_err("revert"));
    assert_eq!(world.secret_labels().await, labels, "a label was moved");
}

#[tokio::test]
async fn redeploy_forces_a_new_deployment_and_waits_for_it() {
    let world = World::start().await;
    let b = backend(&world, world.target()).await;
    let deployment = || async {
        let out = world.ecs.describe_services().cluster(moto::CLUSTER).services(moto::SERVICE).send().await.unwrap();
        out.services()[0].deployments()[0].id().unwrap().to_string()
    };
    let before = deployment().await;
    let f = fault("redeploy", FaultKind::Redeploy, None);
    let resolved = b.resolve(&f.step(), &mut Rng::new(1)).await.expect("resolve");
    assert!(
        resolved.summary.starts_with("force a new deployment of service api (cluster prod)"),
        "{}",
        resolved.summary
    );
    let injected = run_fault(&b, &f, 1).await;
    assert_ne!(deployment().await, before);
    b.revert(&injected).await.expect("revert");

    // A blue/green (CodeDeploy) service takes no forced deployment: refused before anything runs.
    world
        .ecs
        .create_service()
        .cluster(moto::CLUSTER)
        .service_name("api-bg")
        .task_definition(moto::SERVICE)
        .desired_count(1)
        .deployment_controller(
            aws_sdk_ecs::types::DeploymentController::builder()
                .r#type(aws_sdk_ecs::types::DeploymentControllerType::CodeDeploy)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create a CodeDeploy service");
    let mut bg = world.target();
    bg.service = "api-bg".into();
    let b = backend(&world, bg).await;
    let err = b.resolve(&f.step(), &mut Rng::new(1)).await.expect_err("CodeDeploy service");
    assert!(matches!(err, BackendError::Precondition(_)), "{err}");
    assert!(err.to_string().contains("CODE_DEPLOY"), "{err}");
}

#[tokio::test]
async fn alarm_in_alarm_state_is_reported_firing() {
    let world = World::start().await;
    let b = backend(&world, world.target()).await;
    assert!(!b.alarm_firing(moto::ALARM).await.expect("alarm state"));
    world.set_alarm(StateValue::Alarm).await;
    assert!(b.alarm_firing(moto::ALARM).await.expect("alarm state"));
    world.set_alarm(StateValue::Ok).await;
    assert!(!b.alarm_firing(moto::ALARM).await.expect("alarm state"));
    let err = b.alarm_firing("no-such-alarm").await.expect_err("missing alarm");
    assert!(matches!(err, BackendError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn wrong_account_is_a_precondition_and_nothing_is_touched() {
    let world = World::start().await;
    let mut target = world.target();
    target.account = Some("111111111111".into());
    let b = backend(&world, target.clone()).await;
    let kill_one = fault("kill", kill(Selection::Count(1)), None);
    let drift = fault("drift", FaultKind::SecretDrift, None);
    let failover = fault("failover", FaultKind::DbFailover { outage: None, target_instance: None }, None);
    let sc = scenario(target, vec![kill_one.clone(), drift.clone()], vec![]);
    let err = b.preflight(&sc).await.expect_err("wrong account");
    assert!(matches!(err, BackendError::Precondition(_)), "{err}");
    assert!(err.to_string().contains("123456789012") && err.to_string().contains("111111111111"), "{err}");

    let secret_before = world.secret_current().await;
    for f in [&kill_one, &drift, &failover] {
        // Reading is allowed (that is what `siege plan` does); changing is not.
        let resolved = b.resolve(&f.step(), &mut Rng::new(1)).await.expect("resolve");
        let injected = b.prepare(&f.step(), &resolved, RUN).await.expect("prepare");
        let err = b.inject(&f.step(), &injected, RUN).await.expect_err("inject in the wrong account");
        assert!(matches!(err, BackendError::Precondition(_)), "{err}");
        // Reverts that would change something are refused too; kill and failover have none.
        let reverted = b.revert(&injected).await;
        if f.kind == FaultKind::SecretDrift {
            assert!(matches!(reverted, Err(BackendError::Precondition(_))), "{reverted:?}");
        }
    }
    assert_eq!(world.running_service_tasks().await.len(), moto::TASKS);
    assert_eq!(world.secret_current().await, secret_before);
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_WRITER));

    // No account named at all: also refused.
    let mut unnamed = world.target();
    unnamed.account = None;
    let b = backend(&world, unnamed).await;
    assert!(matches!(b.preflight(&sc).await, Err(BackendError::Precondition(_))));
}

#[tokio::test]
async fn preflight_and_samplers_on_a_healthy_world() {
    let world = World::start().await;
    // By ARN here; the other tests name them.
    let mut target = world.target();
    target.target_group = Some(world.target_group_arn.clone());
    target.load_balancer = Some(world.load_balancer_arn.clone());
    let b = backend(&world, target).await;
    assert_eq!(b.entry_url(), format!("http://{}", world.load_balancer_dns));
    let sc = scenario(
        world.target(),
        vec![
            fault("kill", kill(Selection::Count(1)), None),
            fault(
                "cpu",
                FaultKind::CpuStress { select: Selection::Count(1), percent: 50 },
                Some(Duration::from_secs(60)),
            ),
            fault("failover", FaultKind::DbFailover { outage: None, target_instance: None }, None),
            fault("drift", FaultKind::SecretDrift, None),
            fault("redeploy", FaultKind::Redeploy, None),
        ],
        vec![StopCondition::Alarm { name: moto::ALARM.into() }],
    );
    b.preflight(&sc).await.expect("preflight");
    // A stop condition on an alarm that does not exist is caught before the run.
    let mut bad = sc.clone();
    bad.stop = vec![StopCondition::Alarm { name: "typo-alarm".into() }];
    assert!(matches!(b.preflight(&bad).await, Err(BackendError::NotFound(_))));

    // CloudWatch metrics the way ALB and ECS publish them.
    let lb_dim = world.load_balancer_arn.split_once(":loadbalancer/").unwrap().1.to_string();
    // A minute ago: the minute in progress is not read. An older minute with many 5xx but no
    // requests must not be paired with the newer minute's request count.
    let minute_ago = std::time::SystemTime::now() - Duration::from_secs(90);
    let older = std::time::SystemTime::now() - Duration::from_secs(210);
    let put_at = |ns: &str, name: &str, dims: Vec<(&str, String)>, v: f64, t: std::time::SystemTime| {
        let mut d = aws_sdk_cloudwatch::types::MetricDatum::builder()
            .metric_name(name)
            .value(v)
            .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from(t));
        for (k, val) in dims {
            d = d.dimensions(aws_sdk_cloudwatch::types::Dimension::builder().name(k).value(val).build());
        }
        world.cloudwatch.put_metric_data().namespace(ns).metric_data(d.build()).send()
    };
    let put = |ns: &str, name: &str, dims: Vec<(&str, String)>, v: f64| put_at(ns, name, dims, v, minute_ago);
    put_at("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", vec![("LoadBalancer", lb_dim.clone())], 500.0, older)
        .await
        .unwrap();
    put("AWS/ApplicationELB", "RequestCount", vec![("LoadBalancer", lb_dim.clone())], 600.0).await.unwrap();
    put("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", vec![("LoadBalancer", lb_dim.clone())], 3.0).await.unwrap();
    put(
        "AWS/ECS",
        "CPUUtilization",
        vec![("ClusterName", moto::CLUSTER.into()), ("ServiceName", moto::SERVICE.into())],
        42.0,
    )
    .await
    .unwrap();
    let m = b.cloud_metrics().await;
    assert!(m.failed.is_empty(), "{:?}", m.failed);
    let by_name = backend(&world, world.target()).await;
    assert_eq!(by_name.cloud_metrics().await, m, "same balancer by name and by ARN");
    assert_eq!(m.request_count, Some(600.0));
    assert_eq!(m.http_5xx, Some(3.0));
    assert_eq!(m.cpu_percent, Some(42.0));

    // moto answers HTTP 500 to a p95 query once TargetResponseTime has data: that one metric
    // is unknown, the others are still read.
    put("AWS/ApplicationELB", "TargetResponseTime", vec![("LoadBalancer", lb_dim.clone())], 0.2).await.unwrap();
    let m = b.cloud_metrics().await;
    assert_eq!(m.failed.len(), 1, "{:?}", m.failed);
    assert_eq!((m.failed[0].metric, m.failed[0].fields), ("TargetResponseTime p95", &["lb_response_ms"][..]));
    let error = &m.failed[0].error;
    assert!(error.starts_with("cloudwatch GetMetricData: ") && !error.contains('\n') && error.len() < 300, "{error}");
    assert_eq!(m.target_response_p95_ms, None);
    assert_eq!((m.request_count, m.http_5xx, m.cpu_percent), (Some(600.0), Some(3.0), Some(42.0)));

    // The first sample has the per-second sources; CloudWatch's answers follow.
    let s = b.sample().await.expect("sample");
    assert_eq!(s.running_tasks, Some(4));
    assert_eq!(s.desired_tasks, Some(4));
    let mut events = s.events.clone();
    let mut s = s;
    for _ in 0..50 {
        if s.cpu_percent.is_some() && s.lb_rps.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = b.sample().await.expect("sample");
        events.extend(s.events.clone());
    }
    assert_eq!(s.pending_tasks, Some(0));
    assert_eq!(s.healthy_targets, Some(4));
    assert_eq!(s.unhealthy_targets, Some(0));
    assert_eq!(s.db_writer.as_deref(), Some(moto::DB_WRITER));
    assert_eq!(s.cpu_percent, Some(42.0));
    // The balancer's view, per second over CloudWatch's minute.
    assert_eq!(s.lb_rps, Some(10.0));
    assert_eq!(s.lb_5xx_rate, Some(0.005));
    // The one metric moto cannot answer is stale, and said so once on the timeline.
    assert_eq!((s.lb_response_ms, s.stale.clone()), (None, vec!["lb_response_ms".to_string()]));
    let failed = |events: &[String]| events.iter().filter(|e| e.contains("TargetResponseTime p95")).count();
    for _ in 0..150 {
        if failed(&events) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        events.extend(b.sample().await.expect("sample").events);
    }
    // Time passes on purpose: the failure must not be reported again in it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    events.extend(b.sample().await.expect("sample").events);
    assert_eq!(failed(&events), 1, "{events:?}");
    let line = events.iter().find(|e| e.contains("TargetResponseTime p95")).unwrap();
    assert!(line.starts_with("sampling CloudWatch TargetResponseTime p95 failed (lb_response_ms stale after 150s): cloudwatch GetMetricData: "), "{line}");
    let s = b.sample().await.expect("sample");
    assert_eq!(
        (s.healthy_targets, s.cpu_percent, s.lb_rps),
        (Some(4), Some(42.0), Some(10.0)),
        "the others stay fresh"
    );

    // The backend is found again from its journaled locator.
    let again = AwsBackend::reconnect(&b.locator()).await;
    assert!(again.is_ok());
}

/// Polls an async check until it yields or `deadline` passes.
async fn wait_async<T, F, Fut>(deadline: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = std::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if std::time::Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn access_denied_names_the_missing_action() {
    let world = World::start().await;
    let (id, secret) = world.moto.limited_user(
        "siege-readonly",
        &["sts:GetCallerIdentity", "ecs:ListTasks", "ecs:DescribeTasks", "ecs:DescribeServices"],
    );
    let config = world.moto.sdk_config_as(&id, &secret).await;
    let mut target = world.target();
    target.load_balancer = None;
    target.url = Some("http://127.0.0.1:1".into());
    let b = AwsBackend::with_config(&target, RUN, &config).await.expect("connect");
    let f = fault("kill", kill(Selection::Count(1)), None);
    let resolved = b.resolve(&f.step(), &mut Rng::new(1)).await.expect("reading is allowed");
    let injected = b.prepare(&f.step(), &resolved, RUN).await.expect("prepare");
    let err = b.inject(&f.step(), &injected, RUN).await.expect_err("StopTask is not allowed");
    let msg = err.to_string();
    assert!(msg.contains("access denied") && msg.contains("`ecs:StopTask`"), "{msg}");
}

/// RDS and ELBv2 are called without their SDK crates: moto, with IAM enforced, checks each
/// call's SigV4 signature and the caller's permissions as AWS does.
#[tokio::test]
async fn rds_and_elb_calls_are_signed_and_authorised_as_aws_checks_them() {
    let world = World::start().await;
    let (id, secret) = world.moto.limited_user(
        "siege-rds-elb",
        &[
            "sts:GetCallerIdentity",
            "ecs:DescribeServices",
            "ecs:ListTasks",
            "ecs:DescribeTasks",
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetHealth",
            "rds:DescribeDBClusters",
        ],
    );
    let target = world.target();
    // Connecting describes the balancer (a signed DescribeLoadBalancers).
    let b = AwsBackend::with_config(&target, RUN, &world.moto.sdk_config_as(&id, &secret).await)
        .await
        .expect("connect: DescribeLoadBalancers");
    let f = fault("failover", FaultKind::DbFailover { outage: None, target_instance: None }, None);
    let resolved = b.resolve(&f.step(), &mut Rng::new(1)).await.expect("DescribeDBClusters is signed and allowed");
    assert!(
        resolved.summary.starts_with("fail over Aurora cluster prod-db: writer prod-db-instance-1 -> "),
        "{}",
        resolved.summary
    );
    let sampled = wait_async(Duration::from_secs(10), || {
        let s = b.sample();
        async {
            let s = s.await.ok()?;
            (s.healthy_targets.is_some() && s.db_writer.is_some()).then_some(s)
        }
    })
    .await
    .expect("target health and the writer are sampled");
    assert_eq!((sampled.healthy_targets, sampled.db_writer.as_deref()), (Some(4), Some(moto::DB_WRITER)));

    // FailoverDBCluster was not granted: refused by IAM, and the action named.
    let injected = b.prepare(&f.step(), &resolved, RUN).await.expect("prepare");
    let err = b.inject(&f.step(), &injected, RUN).await.expect_err("FailoverDBCluster is not allowed").to_string();
    assert!(err.contains("access denied") && err.contains("`rds:FailoverDBCluster`"), "{err}");

    // A wrong secret key: the signature does not match, and that is what the message says.
    let wrong = world.moto.sdk_config_as(&id, "not-the-secret").await;
    let err = match AwsBackend::with_config(&target, RUN, &wrong).await {
        Ok(_) => panic!("a wrong signature was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with(
            "elasticloadbalancing DescribeLoadBalancers: the AWS credentials were rejected (SignatureDoesNotMatch"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn siege_plan_against_aws_lists_exactly_what_would_be_touched() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.yaml");
    let yaml = format!(
        "name: aws-plan\nseed: 7\n{}    max_select: 50%\n\
         load: {{ url: /, rate: 10/s, duration: 2m, timeout: 2s }}\n\
         steady_state: {{ error_rate: \"< 1%\" }}\n\
         faults:\n\
         \x20 - {{ type: task-kill, at: 20s, select: 50% }}\n\
         \x20 - {{ type: cpu-stress, at: 30s, for: 30s, select: 1, percent: 80 }}\n\
         \x20 - {{ type: db-failover, at: 40s, target_instance: {} }}\n\
         \x20 - {{ type: secret-drift, at: 50s }}\n\
         \x20 - {{ type: redeploy, at: 60s }}\n\
         stop:\n  - {{ alarm: {} }}\n\
         recovery: {{ within: 30s }}\n",
        world.target_yaml(),
        moto::DB_READER,
        moto::ALARM
    );
    std::fs::write(&file, yaml).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = crate::common::siege()
        .arg("plan")
        .arg(&file)
        .envs(world.env())
        .env("SIEGE_HOME", home.path())
        .output()
        .expect("run siege plan");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "siege plan failed: {stderr}\n{stdout}");
    // The tasks named are the running tasks of the service, nothing else.
    let running = world.running_service_tasks().await;
    let line =
        stdout.lines().find(|l| l.contains("stop 2 of 4 running tasks of service api (cluster prod)")).expect(&stdout);
    let named: Vec<&String> = running.iter().filter(|a| line.contains(a.rsplit('/').next().unwrap())).collect();
    assert_eq!(named.len(), 2, "{line}");
    assert!(!line.contains(world.bystander_task.rsplit('/').next().unwrap()));
    for want in [
        "FIS aws:ecs:task-cpu-stress at 80% for 30s on 1 of 4 running tasks of service api (cluster prod)",
        "fail over Aurora cluster prod-db: writer prod-db-instance-1 -> prod-db-instance-2",
        "rotate the master password of Aurora cluster prod-db and secret prod/api/db together",
        "force a new deployment of service api (cluster prod): ECS replaces all 4 running tasks",
    ] {
        assert!(stdout.contains(want), "missing `{want}` in:\n{stdout}");
    }
    // Nothing was touched.
    assert_eq!(world.running_service_tasks().await, running);
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_WRITER));
    assert_eq!(world.secret_current().await.0, moto::SECRET_VALUE);
    assert!(templates(&world).await.is_empty());

    // The same plan in another account is refused with exit 4.
    let wrong = std::fs::read_to_string(&file).unwrap().replace("\"123456789012\"", "\"111111111111\"");
    std::fs::write(&file, wrong).unwrap();
    let out = crate::common::siege()
        .arg("plan")
        .arg(&file)
        .envs(world.env())
        .env("SIEGE_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("111111111111"));
}

#[tokio::test]
async fn region_comes_from_the_environment_when_the_scenario_names_none() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no-region.yaml");
    let target = world.target_yaml().replace(&format!("    region: {}\n", moto::REGION), "");
    assert!(!target.contains("region"), "{target}");
    let yaml = format!(
        "name: aws-no-region\n{target}    url: http://127.0.0.1:9\n\
         load: {{ url: /, rate: 10/s, duration: 1m }}\nsteady_state: {{ error_rate: \"< 1%\" }}\n\
         faults:\n  - {{ type: task-kill, at: 20s, select: 1 }}\n\
         recovery: {{ within: 30s }}\n"
    );
    std::fs::write(&file, yaml).unwrap();
    let home = tempfile::tempdir().unwrap();
    let plan = |region: Option<&str>| {
        let mut cmd = crate::common::siege();
        cmd.arg("plan")
            .arg(&file)
            .envs(world.env())
            .env("SIEGE_HOME", home.path())
            // No profile on this machine may supply a region.
            .env("HOME", home.path())
            .env("AWS_CONFIG_FILE", home.path().join("no-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("no-credentials"))
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_PROFILE");
        if let Some(r) = region {
            cmd.env("AWS_REGION", r);
        }
        cmd.output().expect("run siege plan")
    };
    let out = plan(Some(moto::REGION));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("stop 1 of 4 running tasks of service api"), "{stdout}");
    assert!(stdout.contains("aws us-east-1 cluster prod service api"), "the plan names the region found: {stdout}");

    // The region found is the one journaled for `siege recover`.
    let mut target = world.target();
    target.region = None;
    let b = backend(&world, target).await;
    assert_eq!(b.region(), moto::REGION);
    assert_eq!(b.locator()["region"], moto::REGION);

    // Nowhere to find a region: refused before anything is asked of AWS.
    let out = plan(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("no AWS region"), "{stderr}");
}

/// A tiny HTTP/1.1 server answering 200 to everything, standing in for the service behind the
/// ALB (moto runs no containers). Returns its base URL.
fn ok_server() -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = conn.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    url
}

/// A local HTTP/1.1 server that answers the `n`th request with `answers[n]` (status, XML body),
/// the last one for ever after; counts the requests. Returns its base URL and the count.
fn scripted_server(answers: Vec<(u16, &'static str)>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut conn = conn;
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                if line != "\r\n" {
                    break; // The client closed the connection.
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let (status, xml) = answers[n.min(answers.len() - 1)];
                let kind = if xml.starts_with("<!DOCTYPE html") { "text/html" } else { "text/xml" };
                let head =
                    format!("HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n", xml.len());
                if conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(xml.as_bytes())).is_err() {
                    break;
                }
            }
        }
    });
    (url, count)
}

#[tokio::test]
async fn calls_ride_out_a_burst_of_throttling() {
    const THROTTLED: &str = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
        <Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>";
    const IDENTITY: &str = "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
        <GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/ci</Arn><UserId>AIDA</UserId>\
        <Account>123456789012</Account></GetCallerIdentityResult>\
        <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCallerIdentityResponse>";
    // Three throttled answers: more than the SDK's default of three attempts rides out.
    let (url, count) = scripted_server(vec![(400, THROTTLED), (400, THROTTLED), (400, THROTTLED), (200, IDENTITY)]);
    let b = scripted_backend(&url).await;
    assert_eq!(b.caller_account().await.expect("the fourth attempt answers"), moto::ACCOUNT);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn rds_calls_ride_out_a_burst_of_throttling_and_give_up_on_a_refusal() {
    const THROTTLED: &str = "<ErrorResponse xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\"><Error><Type>Sender</Type>\
        <Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>";
    const CLUSTER: &str = "<DescribeDBClustersResponse xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\">\
        <DescribeDBClustersResult><DBClusters><DBCluster><DBClusterIdentifier>prod-db</DBClusterIdentifier>\
        <DBClusterArn>arn:aws:rds:eu-west-1:123456789012:cluster:prod-db</DBClusterArn><Status>available</Status>\
        <DBClusterMembers>\
        <DBClusterMember><DBInstanceIdentifier>db-1</DBInstanceIdentifier><IsClusterWriter>true</IsClusterWriter></DBClusterMember>\
        <DBClusterMember><DBInstanceIdentifier>db-2</DBInstanceIdentifier><IsClusterWriter>false</IsClusterWriter></DBClusterMember>\
        </DBClusterMembers></DBCluster></DBClusters></DescribeDBClustersResult></DescribeDBClustersResponse>";
    const NOT_FOUND: &str = "<ErrorResponse><Error><Type>Sender</Type><Code>DBClusterNotFoundFault</Code>\
        <Message>DBCluster prod-db not found.</Message></Error></ErrorResponse>";
    let failover = fault("failover", FaultKind::DbFailover { outage: None, target_instance: None }, None);
    let (url, count) = scripted_server(vec![(400, THROTTLED), (400, THROTTLED), (400, THROTTLED), (200, CLUSTER)]);
    let b = scripted_backend_with(&url, Some("prod-db")).await;
    let resolved = b.resolve(&failover.step(), &mut Rng::new(1)).await.expect("the fourth attempt answers");
    assert_eq!(resolved.summary, "fail over Aurora cluster prod-db: writer db-1 -> a replica RDS picks (db-2)");
    assert_eq!(resolved.targets, ["arn:aws:rds:eu-west-1:123456789012:cluster:prod-db"]);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 4);

    // A refusal is not retried, and keeps its meaning.
    let (url, count) = scripted_server(vec![(404, NOT_FOUND)]);
    let b = scripted_backend_with(&url, Some("prod-db")).await;
    let err = b.resolve(&failover.step(), &mut Rng::new(1)).await.expect_err("no such cluster");
    assert!(matches!(err, BackendError::NotFound(_)), "{err}");
    assert_eq!(err.to_string(), "target not found: rds DescribeDBClusters: DBCluster prod-db not found.");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// What [`failover_proxy`] does with one `FailoverDBCluster`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum OnFailover {
    /// Passes it on and passes moto's answer back.
    Forward,
    /// Passes it on, then answers 500 (a proxy's page) instead of moto's answer.
    ForwardThen500,
    /// Passes it on, then closes the connection without an answer.
    ForwardThenDrop,
    /// Answers 500 without passing it on.
    Refuse500,
}

/// A loopback HTTP/1.1 proxy in front of moto (at `moto_port`): each request is passed on and
/// moto's answer passed back, one request per connection, except the `n`th `FailoverDBCluster`,
/// which is handled as `script[n]` (the last entry for ever after). Returns its base URL and the
/// number of `FailoverDBCluster` requests it passed on to moto.
fn failover_proxy(moto_port: u16, script: Vec<OnFailover>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let forwarded = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = forwarded.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let (script, forwarded, seen) = (script.clone(), counted.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                // The request's head, without its `Connection` header and final empty line.
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if !lower.starts_with("connection:") {
                        head.push_str(&line);
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let failover = String::from_utf8_lossy(&body).contains("Action=FailoverDBCluster");
                let action = if failover {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    script[n.min(script.len() - 1)]
                } else {
                    OnFailover::Forward
                };
                let answer = if action == OnFailover::Refuse500 {
                    None
                } else {
                    let mut upstream = std::net::TcpStream::connect(("127.0.0.1", moto_port)).expect("moto");
                    upstream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes()).unwrap();
                    upstream.write_all(&body).unwrap();
                    let mut answer = Vec::new();
                    upstream.read_to_end(&mut answer).expect("moto's answer");
                    if failover {
                        forwarded.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(answer)
                };
                let reply = match (action, answer) {
                    (OnFailover::Forward, Some(answer)) => {
                        // moto's answer, marked as the connection's last.
                        let end = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer");
                        let head = String::from_utf8_lossy(&answer[..end]);
                        let kept: Vec<&str> =
                            head.split("\r\n").filter(|h| !h.to_ascii_lowercase().starts_with("connection:")).collect();
                        let mut reply = format!("{}\r\nConnection: close\r\n\r\n", kept.join("\r\n")).into_bytes();
                        reply.extend_from_slice(&answer[end + 4..]);
                        reply
                    }
                    (OnFailover::ForwardThenDrop, _) => return,
                    _ => format!(
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HTML_500}",
                        HTML_500.len()
                    )
                    .into_bytes(),
                };
                let _ = conn.write_all(&reply);
            });
        }
    });
    (url, forwarded)
}

/// The `FailoverDBCluster` requests moto recorded.
fn recorded_failovers(world: &World) -> usize {
    let recorded = world.moto.recorded();
    recorded.iter().filter(|r| r.iter().any(|(k, v)| k == "Action" && v == "FailoverDBCluster")).count()
}

#[tokio::test]
async fn a_failover_whose_answer_is_lost_is_read_back_and_never_asked_for_twice() {
    let world = World::start().await;
    world.moto.start_recording();
    let script =
        vec![OnFailover::ForwardThen500, OnFailover::ForwardThenDrop, OnFailover::Refuse500, OnFailover::Forward];
    let (proxy, forwarded) = failover_proxy(world.moto.port, script);
    let config = config_with_endpoints(&world, vec![("RDS", proxy)]).await;
    let mut target = world.target();
    target.endpoint = None;
    let b = AwsBackend::with_config(&target, RUN, &config).await.expect("connect");
    let to = |instance: &str| {
        fault("failover", FaultKind::DbFailover { outage: None, target_instance: Some(instance.into()) }, None)
    };
    let sent = || forwarded.load(std::sync::atomic::Ordering::SeqCst);

    // moto fails over, the answer is a 500: the cluster, read back, has its new writer.
    run_fault(&b, &to(moto::DB_READER), 1).await;
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_READER));
    assert_eq!((sent(), recorded_failovers(&world)), (1, 1), "asked for once, done once");

    // moto fails back, the connection is lost before the answer: the same.
    run_fault(&b, &to(moto::DB_WRITER), 1).await;
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_WRITER));
    assert_eq!((sent(), recorded_failovers(&world)), (2, 2));

    // A 500 before moto saw the request: the cluster still has its writer, so the failover is
    // asked for once more, and done.
    run_fault(&b, &to(moto::DB_READER), 1).await;
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_READER));
    assert_eq!((sent(), recorded_failovers(&world)), (3, 3));
}

/// What a proxy or a load balancer in front of an endpoint answers when its backend breaks.
const HTML_500: &str = "<!DOCTYPE html>\n<html>\n<head><title>500 Internal Server Error</title>\n\
    <style>body { font-family: sans-serif; }</style></head>\n<body>\n<center><h1>500 Internal Server Error</h1></center>\n\
    <hr><center>nginx/1.25.3</center>\n</body>\n</html>\n";

/// A server that accepts connections and reads requests but never answers.
fn stalling_server() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming().flatten() {
            held.push(conn);
        }
    });
    url
}

/// Endpoints per service, as `AWS_ENDPOINT_URL_<SERVICE>` gives them: `special` for the named
/// SDK service ids, `rest` for every other.
#[derive(Debug)]
struct Endpoints {
    special: Vec<(&'static str, String)>,
    rest: String,
}

impl aws_types::service_config::LoadServiceConfig for Endpoints {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        if key.profile() != "endpoint_url" {
            return None;
        }
        let url = self.special.iter().find(|(id, _)| *id == key.service_id()).map(|(_, u)| u);
        Some(url.unwrap_or(&self.rest).clone())
    }
}

/// SDK configuration for `world`'s moto, with the services in `special` sent elsewhere. Short
/// backoff, so that the SDK's retries of a 500 end within a sampler's deadline.
async fn config_with_endpoints(world: &World, special: Vec<(&'static str, String)>) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(siege::backend::aws::https_client())
        .region(aws_config::Region::new(moto::REGION))
        .credentials_provider(aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "siege-tests"))
        .retry_config(aws_config::retry::RetryConfig::standard().with_initial_backoff(Duration::from_millis(1)))
        .load()
        .await
        .to_builder()
        .service_config(Endpoints { special, rest: world.moto.endpoint.clone() })
        .build()
}

#[tokio::test]
async fn a_stalled_cloudwatch_and_a_failing_rds_leave_only_their_own_values_stale() {
    let world = World::start().await;
    let (rds, _) = scripted_server(vec![(500, HTML_500)]);
    let config = config_with_endpoints(&world, vec![("CloudWatch", stalling_server()), ("RDS", rds)]).await;
    let mut target = world.target();
    target.endpoint = None;
    let b = AwsBackend::with_config(&target, RUN, &config).await.expect("connect");
    let started = std::time::Instant::now();
    let s = b.sample().await.expect("sample");
    assert!(started.elapsed() < Duration::from_millis(1500), "the first sample took {:?}", started.elapsed());
    assert_eq!((s.healthy_targets, s.unhealthy_targets, s.running_tasks), (Some(4), Some(0), Some(4)), "{s:?}");
    for field in ["cpu_percent", "lb_rps", "lb_5xx_rate", "lb_response_ms", "db_writer"] {
        assert!(s.stale.iter().any(|f| f == field), "{field} is not marked stale: {s:?}");
    }
    assert!(!s.stale.iter().any(|f| f.contains("targets") || f.contains("tasks")), "{:?}", s.stale);
    assert_eq!((s.cpu_percent, s.db_writer.as_deref()), (None, None));

    // Every later sample answers at once, with the target health and task counts fresh, while
    // CloudWatch still has not answered.
    let mut events = s.events.clone();
    for _ in 0..6 {
        // Paced on purpose: a sample a second, as a run takes them.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let asked = std::time::Instant::now();
        let s = b.sample().await.expect("sample");
        assert!(asked.elapsed() < Duration::from_millis(200), "a sample took {:?}", asked.elapsed());
        assert_eq!((s.healthy_targets, s.running_tasks), (Some(4), Some(4)), "{s:?}");
        assert!(s.stale.iter().any(|f| f == "db_writer") && s.stale.iter().any(|f| f == "cpu_percent"));
        events.extend(s.events);
    }
    // Each failing source says so once, on one line: the service, the operation, the error.
    let writer: Vec<&String> = events.iter().filter(|e| e.contains("Aurora cluster")).collect();
    assert_eq!(writer.len(), 1, "{events:?}");
    assert_eq!(
        writer[0].as_str(),
        "sampling Aurora cluster prod-db failed, its values are stale after 5s: \
         rds DescribeDBClusters: HTTP 500 Internal Server Error: 500 Internal Server Error"
    );
    for e in &events {
        assert!(!e.contains('\n') && !e.contains("<html") && e.len() < 300, "{e}");
    }
}

#[tokio::test]
async fn a_500_html_answer_is_one_line_with_the_call_and_status() {
    let (url, count) = scripted_server(vec![(500, HTML_500)]);
    let b = scripted_backend(&url).await;
    let e = b.caller_account().await.expect_err("every answer is a 500");
    assert_eq!(e.to_string(), "sts GetCallerIdentity: HTTP 500 Internal Server Error: 500 Internal Server Error");
    assert!(count.load(std::sync::atomic::Ordering::SeqCst) >= 2, "a 500 is retried");
}

#[tokio::test]
async fn an_endpoint_that_refuses_connections_is_one_line() {
    // Held (bound, not listening) for the test: nothing can start to listen on it.
    let closed = crate::common::closed_port();
    let b = scripted_backend(&format!("http://127.0.0.1:{}", closed.port)).await;
    let e = b.caller_account().await.expect_err("nothing listens").to_string();
    assert!(e.starts_with("sts GetCallerIdentity: cannot reach the AWS endpoint (dispatch failure"), "{e}");
    assert!(e.contains("Connection refused") && !e.contains('\n') && !e.contains("DispatchFailure {"), "{e}");
    assert!(e.len() < 400, "{} characters: {e}", e.len());
}

/// A backend whose every call goes to the local server at `url`, with a target naming nothing
/// but a service. Short backoff so that the test is quick; siege keeps it and only raises the
/// attempts.
async fn scripted_backend(url: &str) -> AwsBackend {
    scripted_backend_with(url, None).await
}

async fn scripted_backend_with(url: &str, db_cluster: Option<&str>) -> AwsBackend {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(siege::backend::aws::https_client())
        .region(aws_config::Region::new(moto::REGION))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "siege-tests"))
        .retry_config(aws_config::retry::RetryConfig::standard().with_initial_backoff(Duration::from_millis(1)))
        .load()
        .await;
    let target = AwsTarget {
        region: None,
        account: Some(moto::ACCOUNT.into()),
        cluster: moto::CLUSTER.into(),
        service: moto::SERVICE.into(),
        target_group: None,
        load_balancer: None,
        db_cluster: db_cluster.map(str::to_string),
        secret: None,
        url: Some("http://127.0.0.1:9".into()),
        endpoint: None,
        fis_role: None,
        max_select: 0.5,
        allow_full_outage: false,
    };
    AwsBackend::with_config(&target, RUN, &config).await.expect("connect")
}

/// `scenarios/aws/NAME.yaml` as shipped, pointed at `world`, written into `dir`. Three lines
/// change: the load goes to `url` (the placeholder balancer DNS name must never be looked up),
/// the runbook path becomes absolute (the copy lives elsewhere), and the placeholder target
/// group ARN becomes the one moto generated. The balancer is found by the name in its
/// placeholder; the endpoint comes from `AWS_ENDPOINT_URL`, as a user's would.
fn shipped_for(world: &World, name: &str, url: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let scenarios = crate::common::repo_root().join("scenarios/aws");
    let text = std::fs::read_to_string(scenarios.join(format!("{name}.yaml"))).expect("shipped scenario");
    let mut changed = [false; 3];
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            let value = |key: &str| line.trim_start().strip_prefix(key).map(str::trim);
            if let Some(v) = value("url:").filter(|v| v.starts_with("http")) {
                assert!(v.contains(".elb.amazonaws.com"), "unexpected target url in {name}: {v}");
                changed[0] = true;
                format!("{indent}url: {url}")
            } else if let Some(v) = value("runbook:") {
                changed[1] = true;
                format!("{indent}runbook: {}", scenarios.join(v).display())
            } else if value("target_group:").is_some() {
                changed[2] = true;
                format!("{indent}target_group: {}", world.target_group_arn)
            } else {
                line.to_string()
            }
        })
        .collect();
    assert_eq!(changed, [true; 3], "{name}.yaml no longer has the lines this test points at moto");
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    file
}

#[tokio::test]
async fn every_shipped_aws_scenario_plans_against_moto_and_touches_nothing() {
    let world = World::start().await;
    let running = world.running_service_tasks().await;
    let secret = world.secret_current().await;
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(crate::common::repo_root().join("scenarios/aws"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".yaml").map(str::to_string))
        .collect();
    names.sort();
    assert!(names.len() >= 7, "the shipped aws scenarios: {names:?}");
    for name in &names {
        let file = shipped_for(&world, name, "http://127.0.0.1:9", dir.path());
        let out = crate::common::siege()
            .arg("plan")
            .arg(&file)
            .envs(world.env())
            .env("SIEGE_HOME", home.path())
            .output()
            .expect("run siege plan");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("aws us-east-1 cluster prod service api"), "{name}:\n{stdout}");
        assert!(stdout.contains("nothing was injected (plan only)"), "{name}:\n{stdout}");
    }
    assert_eq!(world.running_service_tasks().await, running);
    assert_eq!(world.secret_current().await, secret);
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_WRITER));
    assert!(templates(&world).await.is_empty());
}

#[tokio::test]
async fn heavy_aws_shipped_task_kill_runs_against_moto_and_passes() {
    let mut world = World::start().await;
    world.start_scheduler(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let file = shipped_for(&world, "task-kill", &ok_server(), dir.path());
    let home = tempfile::tempdir().unwrap();
    let reports = home.path().join("reports");
    let args = vec!["run".into(), file.clone().into(), "--reports".into(), reports.clone().into()];
    let (code, stderr) = run_siege(&world, home.path(), args, Duration::from_secs(240)).await;
    assert_eq!(code, Some(0), "siege run did not pass:\n{stderr}");
    let run_id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("siege: run ").and_then(|r| r.split(' ').next()))
        .expect("the run id on stderr")
        .to_string();

    // Two of the four tasks of the service were stopped, with the run in the reason; the
    // bystander task of the same cluster runs on.
    let tasks = world.all_tasks().await;
    let stopped: Vec<_> = tasks.iter().filter(|t| t.last_status() == Some("STOPPED")).collect();
    assert_eq!(stopped.len(), 2, "{stopped:?}\n{stderr}");
    for t in &stopped {
        assert_eq!(t.group(), Some("service:api"));
        assert!(t.stopped_reason().unwrap_or_default().contains(&run_id), "{:?}", t.stopped_reason());
    }
    let bystander = tasks.iter().find(|t| t.task_arn() == Some(world.bystander_task.as_str())).expect("bystander");
    assert_eq!(bystander.last_status(), Some("RUNNING"));

    // The same report as a lab run: three files, the verdict, the fault and the recovery time.
    let (report_dir, report) = only_report(&reports);
    for f in ["report.md", "report.json", "junit.xml"] {
        assert!(report_dir.join(f).is_file(), "{f} missing in {}", report_dir.display());
    }
    assert_eq!(report["verdict"]["outcome"], "passed", "{report:#}");
    assert_eq!(report["run_id"], run_id.as_str());
    assert_eq!(report["faults"][0]["targets"].as_array().map(Vec::len), Some(2));
    assert!(report["timings"]["time_to_recover_s"].is_number(), "{:#}", report["timings"]);
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("runbooks/task-kill.md"), "the debrief links the runbook");
    let headings: Vec<&str> = md.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        headings,
        [
            "# aws-task-kill: PASSED",
            "## Steady state",
            "## Timeline",
            "## Faults",
            "### Detection, outage and time to restore per fault",
            "## Charts",
            "## Runbook",
            "## Debrief questions",
            "## Run details"
        ],
        "the sections of a lab report"
    );
    for chart in ["rate.svg", "errors.svg", "latency.svg", "targets.svg"] {
        assert!(report_dir.join(chart).is_file(), "{chart} missing");
    }
    // The samplers' view of the target is in the windows, as on the lab.
    let windows = report["windows"].as_array().expect("windows");
    assert!(windows.len() >= 90, "{} windows", windows.len());
    // From the first sample on (the first call to moto may take a while), every window has one.
    let first = windows.iter().position(|w| w["running_tasks"].is_number()).expect("no window has a sample");
    assert!(first < windows.len() / 2, "the first sample came only in window {first}");
    for w in &windows[first..] {
        assert!(w["healthy_targets"].is_number() && w["running_tasks"].is_number(), "{w}");
        assert!(w.get("stale").is_none(), "every sampler answers moto in time: {w}");
    }
    // What the samplers saw change is on the timeline, after the kill, as on the lab.
    let injected = report["faults"][0]["injected_s"].as_f64().expect("injected_s");
    let timeline = report["timeline"].as_array().expect("timeline");
    let seen = |prefix: &str| {
        timeline.iter().find(|e| e["kind"] == "event" && e["text"].as_str().is_some_and(|t| t.starts_with(prefix)))
    };
    // The two StopTask calls are not one step: a read between them sees 4 -> 3, then 3 -> 2.
    let gap = seen("ECS service api: running tasks 4 -> ")
        .unwrap_or_else(|| panic!("the gap is not on the timeline: {timeline:#?}"));
    assert!(gap["t_s"].as_f64().is_some_and(|t| t >= injected), "{gap} before the kill at {injected}");
    let down =
        |e: &&serde_json::Value| e["text"].as_str().is_some_and(|t| t.contains("running tasks") && t.contains("-> 2 "));
    assert!(timeline.iter().any(|e| down(&e)), "the service at 2 tasks is not on the timeline: {timeline:#?}");
    assert!(seen("target group api: healthy targets 4 -> ").is_some(), "{timeline:#?}");
    let back = timeline
        .iter()
        .filter(|e| e["text"].as_str().is_some_and(|t| t.contains("running tasks") && t.contains("-> 4 ")));
    assert!(back.count() >= 1, "the replacements are not on the timeline: {timeline:#?}");

    // The harness scheduler replaced the stopped tasks.
    assert_eq!(world.running_service_tasks().await.len(), moto::TASKS, "the service is back at its desired count");
}

#[tokio::test]
async fn heavy_aws_fis_and_secret_faults_are_reverted_by_a_run() {
    let world = World::start().await;
    let (_, version0) = world.secret_current().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.yaml");
    let yaml = format!(
        "name: aws-mixed\nseed: 7\n{}    url: {}\n    max_select: 50%\n\
         load: {{ url: /, rate: 10/s, duration: 30s, timeout: 2s }}\n\
         steady_state: {{ error_rate: \"< 1%\" }}\n\
         faults:\n\
         \x20 - {{ type: cpu-stress, at: 6s, for: 8s, select: 1, percent: 80 }}\n\
         \x20 - {{ type: secret-drift, at: 7s }}\n\
         \x20 - {{ type: redeploy, at: 8s }}\n\
         recovery: {{ within: 10s, hold: 3s }}\n",
        world.target_yaml(),
        ok_server(),
    );
    std::fs::write(&file, yaml).unwrap();
    let deployment = || async {
        let out = world.ecs.describe_services().cluster(moto::CLUSTER).services(moto::SERVICE).send().await.unwrap();
        out.services()[0].deployments()[0].id().unwrap().to_string()
    };
    let deployment0 = deployment().await;
    let home = tempfile::tempdir().unwrap();
    let args = vec!["run".into(), file.clone().into(), "--reports".into(), home.path().join("reports").into()];
    let (code, stderr) = run_siege(&world, home.path(), args, Duration::from_secs(180)).await;
    assert_eq!(code, Some(0), "siege run did not pass:\n{stderr}");
    // The FIS template is gone and its experiment finished; the secret is back on its version;
    // the forced deployment happened.
    assert!(templates(&world).await.is_empty(), "FIS template left behind:\n{stderr}");
    let all = world.fis.list_experiments().send().await.unwrap();
    assert_eq!(all.experiments().len(), 1);
    assert!(experiments(&world).await.is_empty(), "an experiment still runs");
    assert_eq!(world.secret_current().await, (moto::SECRET_VALUE.to_string(), version0));
    assert_ne!(deployment().await, deployment0);
}

#[tokio::test]
async fn heavy_aws_db_failover_run_reports_no_revert_rather_than_reverted() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failover.yaml");
    let yaml = format!(
        "name: aws-failover\nseed: 7\n{}    url: {}\n\
         load: {{ url: /, rate: 10/s, duration: 20s, timeout: 2s }}\n\
         steady_state: {{ error_rate: \"< 1%\" }}\n\
         faults:\n  - {{ type: db-failover, name: db, at: 5s }}\n\
         recovery: {{ within: 10s, hold: 3s }}\n",
        world.target_yaml(),
        ok_server(),
    );
    std::fs::write(&file, yaml).unwrap();
    let home = tempfile::tempdir().unwrap();
    let reports = home.path().join("reports");
    let args = vec!["run".into(), file.clone().into(), "--reports".into(), reports.clone().into()];
    let (code, stderr) = run_siege(&world, home.path(), args, Duration::from_secs(120)).await;
    assert_eq!(code, Some(0), "siege run did not pass:\n{stderr}");
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_READER), "the cluster was failed back");
    let (dir, report) = only_report(&reports);
    let fault = &report["faults"][0];
    assert_eq!(fault["no_revert"], "the cluster keeps its new writer", "{report:#}");
    assert!(fault["reverted_s"].is_null(), "{report:#}");
    let timeline: Vec<&str> =
        report["timeline"].as_array().unwrap().iter().filter_map(|e| e["text"].as_str()).collect();
    assert!(timeline.contains(&"db: no revert: the cluster keeps its new writer"), "{timeline:#?}");
    assert!(!timeline.iter().any(|t| t.contains("reverted")), "{timeline:#?}");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("no revert: the cluster keeps its new writer"), "{md}");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(!junit.contains("db (db-failover) reverted"), "{junit}");
}

#[tokio::test]
async fn heavy_aws_db_failover_run_whose_answer_is_lost_injects_it_once() {
    let world = World::start().await;
    world.moto.start_recording();
    let (proxy, forwarded) = failover_proxy(world.moto.port, vec![OnFailover::ForwardThen500, OnFailover::Forward]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failover.yaml");
    // No `endpoint:`: RDS goes through the proxy (`AWS_ENDPOINT_URL_RDS`), the rest to moto.
    let target = world.target_yaml().replace(&format!("    endpoint: {}\n", world.moto.endpoint), "");
    let yaml = format!(
        "name: aws-failover-lost\nseed: 7\n{target}    url: {}\n\
         load: {{ url: /, rate: 10/s, duration: 20s, timeout: 2s }}\n\
         steady_state: {{ error_rate: \"< 1%\" }}\n\
         faults:\n  - {{ type: db-failover, name: db, at: 5s, target_instance: {} }}\n\
         recovery: {{ within: 10s, hold: 3s }}\n",
        ok_server(),
        moto::DB_READER,
    );
    std::fs::write(&file, yaml).unwrap();
    let home = tempfile::tempdir().unwrap();
    let reports = home.path().join("reports");
    let args = vec!["run".into(), file.clone().into(), "--reports".into(), reports.clone().into()];
    let extra = vec![("AWS_ENDPOINT_URL_RDS".to_string(), proxy)];
    let (code, stderr) = run_siege_with(&world, home.path(), args, Duration::from_secs(120), extra).await;
    assert_eq!(code, Some(0), "siege run did not pass:\n{stderr}");
    assert_eq!(world.db_writer().await.as_deref(), Some(moto::DB_READER));
    let failovers = (forwarded.load(std::sync::atomic::Ordering::SeqCst), recorded_failovers(&world));
    assert_eq!(failovers, (1, 1), "FailoverDBCluster (through the proxy, received by moto)");
    let (_, report) = only_report(&reports);
    let fault = &report["faults"][0];
    assert!(fault["injected_s"].as_f64().is_some(), "the failover is reported injected: {report:#}");
    assert_eq!(fault["no_revert"], "the cluster keeps its new writer", "{report:#}");
}

/// The one report directory a run wrote under `reports`, and its `report.json`.
fn only_report(reports: &std::path::Path) -> (std::path::PathBuf, serde_json::Value) {
    let dir = crate::common::only_report_dir(reports);
    let report = crate::common::read_report_json(&dir);
    (dir, report)
}

/// A 60 s scenario that starts a cpu-stress (through FIS, for 40 s) and a secret drift at 5 s,
/// with `stop` (a `stop:` block, or nothing) as its stop conditions.
fn fis_and_drift(world: &World, name: &str, stop: &str) -> String {
    format!(
        "name: {name}\nseed: 7\n{}    url: {}\n    max_select: 50%\n\
         load: {{ url: /, rate: 10/s, duration: 60s, timeout: 2s }}\n\
         steady_state: {{ error_rate: \"< 1%\" }}\n\
         faults:\n\
         \x20 - {{ type: cpu-stress, at: 5s, for: 40s, select: 1, percent: 80 }}\n\
         \x20 - {{ type: secret-drift, at: 5s }}\n\
         {stop}recovery: {{ within: 10s, hold: 3s }}\n",
        world.target_yaml(),
        ok_server(),
    )
}

/// Waits (up to a minute) until the faults of [`fis_and_drift`] are in: a FIS template exists
/// and the secret has moved off `version0`.
async fn both_injected(world: &World, version0: &str) -> Option<()> {
    wait_async(Duration::from_secs(60), || async {
        let drifted = world.secret_current().await.1 != version0;
        (drifted && !templates(world).await.is_empty()).then_some(())
    })
    .await
}

#[tokio::test]
async fn heavy_aws_alarm_going_off_mid_run_aborts_with_exit_2_and_reverts() {
    let world = World::start().await;
    let secret0 = world.secret_current().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alarm.yaml");
    std::fs::write(&file, fis_and_drift(&world, "aws-alarm", &format!("stop:\n  - {{ alarm: {} }}\n", moto::ALARM)))
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let reports = home.path().join("reports");
    let args = vec!["run".into(), file.clone().into(), "--reports".into(), reports.clone().into()];
    let run = run_siege(&world, home.path(), args, Duration::from_secs(120));
    // Once both faults are in (a FIS template exists, the secret moved), the alarm goes off.
    let trip = async {
        let injected = both_injected(&world, &secret0.1).await;
        if injected.is_some() {
            world.set_alarm(StateValue::Alarm).await;
        }
        injected
    };
    let ((code, stderr), injected) = tokio::join!(run, trip);
    assert!(injected.is_some(), "the faults were never injected:\n{stderr}");
    assert_eq!(code, Some(2), "an alarm in ALARM must abort the run:\n{stderr}");

    // Every fault reverted: no template, no running experiment, the secret on its old version.
    assert!(templates(&world).await.is_empty(), "FIS template left behind:\n{stderr}");
    assert!(experiments(&world).await.is_empty(), "an experiment still runs:\n{stderr}");
    assert_eq!(world.secret_current().await, secret0, "the secret was not restored:\n{stderr}");
    let (_, report) = only_report(&reports);
    assert_eq!(report["verdict"]["outcome"], "aborted", "{report:#}");
    let reason = report["verdict"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("alarm {} is in ALARM", moto::ALARM)), "{reason}");
}

#[tokio::test]
async fn heavy_aws_kill9_mid_run_then_recover_reverts_from_the_journal() {
    let world = World::start().await;
    world.moto.start_recording();
    let secret0 = world.secret_current().await;
    let labels0 = world.secret_labels().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("killed.yaml");
    std::fs::write(&file, fis_and_drift(&world, "aws-killed", "")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let siege = |args: &[&std::ffi::OsStr]| {
        let mut cmd = crate::common::siege();
        cmd.args(args).envs(world.env()).env("SIEGE_HOME", home.path());
        cmd
    };
    let mut child = siege(&["run".as_ref(), file.as_os_str(), "--reports".as_ref(), dir.path().as_os_str()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn siege run");
    let injected = both_injected(&world, &secret0.1).await;
    // The database takes the drifted password right after the secret.
    let drifted = wait_async(Duration::from_secs(30), || async {
        let p = world.db_password();
        (p != moto::DB_PASSWORD).then_some(p)
    })
    .await;
    child.kill().expect("kill -9 the run");
    let _ = child.wait();
    assert!(injected.is_some(), "the faults were never injected");
    assert!(!templates(&world).await.is_empty(), "the killed run left its FIS template");
    // The journal holds neither password.
    let drifted = drifted.expect("the database never took the drifted password");
    let journals = journal_text(home.path());
    assert!(journals.contains("\"db_cluster\":\"prod-db\""), "{journals}");
    assert!(
        !journals.contains(&drifted) && !journals.contains(moto::DB_PASSWORD),
        "a password in the journal: {journals}"
    );

    // `siege recover` finds the run in its journal and reverts in the same account and region,
    // with nothing but the standard environment.
    let out = siege(&["recover".as_ref()]).output().expect("siege recover");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(templates(&world).await.is_empty(), "FIS template left behind:\n{text}");
    assert!(experiments(&world).await.is_empty(), "an experiment still runs:\n{text}");
    assert_eq!(world.secret_current().await, secret0, "{text}");
    let mut labels = world.secret_labels().await;
    labels.retain(|_, l| !l.is_empty());
    assert_eq!(labels, labels0, "{text}");
    assert_eq!(world.db_password(), moto::DB_PASSWORD, "the database password was not restored:\n{text}");
    assert!(!text.contains(&drifted) && !text.contains(moto::DB_PASSWORD), "{text}");

    let again = siege(&["recover".as_ref()]).output().expect("siege recover again");
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to recover"), "{again:?}");
}

/// Every journal file under `home`, concatenated.
fn journal_text(home: &std::path::Path) -> String {
    let mut text = String::new();
    let mut dirs = vec![home.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    text
}

#[tokio::test]
async fn siege_run_in_the_wrong_account_exits_4_and_touches_nothing() {
    let world = World::start().await;
    let running = world.running_service_tasks().await;
    let secret = world.secret_current().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong-account.yaml");
    let target = world.target_yaml().replace(&format!("\"{}\"", moto::ACCOUNT), "\"111111111111\"");
    assert!(target.contains("111111111111"), "{target}");
    let yaml = format!(
        "name: aws-wrong-account\n{target}    url: {}\n\
         load: {{ url: /, rate: 10/s, duration: 30s }}\nsteady_state: {{ error_rate: \"< 1%\" }}\n\
         faults:\n  - {{ type: task-kill, at: 5s, select: 1 }}\n  - {{ type: secret-drift, at: 6s }}\n\
         recovery: {{ within: 10s, hold: 3s }}\n",
        ok_server()
    );
    std::fs::write(&file, yaml).unwrap();
    let home = tempfile::tempdir().unwrap();
    let reports = home.path().join("reports");
    let args = vec!["run".into(), file.clone().into(), "--reports".into(), reports.clone().into()];
    let (code, stderr) = run_siege(&world, home.path(), args, Duration::from_secs(60)).await;
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("111111111111") && stderr.contains(moto::ACCOUNT), "{stderr}");
    assert_eq!(world.running_service_tasks().await, running);
    assert_eq!(world.secret_current().await, secret);
    assert!(templates(&world).await.is_empty());
    let (_, report) = only_report(&reports);
    assert_eq!(report["verdict"]["outcome"], "precondition-failed", "{report:#}");
    let faults = report["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 2, "{report:#}");
    assert!(
        faults.iter().all(|f| f.get("injected_s") == Some(&serde_json::Value::Null) && f["ends_s"].is_null()),
        "nothing was injected: {report:#}"
    );
}

/// Runs `siege ARGS` with the world's environment; kills it and fails (with what it printed) if it
/// has not finished within `deadline`, so that a stuck run shows why instead of hanging the test.
async fn run_siege(
    world: &World,
    home: &std::path::Path,
    args: Vec<std::ffi::OsString>,
    deadline: Duration,
) -> (Option<i32>, String) {
    run_siege_with(world, home, args, deadline, vec![]).await
}

/// [`run_siege`] with `extra` variables added to the world's environment.
async fn run_siege_with(
    world: &World,
    home: &std::path::Path,
    args: Vec<std::ffi::OsString>,
    deadline: Duration,
    extra: Vec<(String, String)>,
) -> (Option<i32>, String) {
    let mut env = world.env();
    env.extend(extra);
    let home = home.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut child = crate::common::siege()
            .args(&args)
            .envs(env)
            .env("SIEGE_HOME", &home)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn siege");
        let mut pipe = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        });
        let status = crate::common::wait_for(deadline, || child.try_wait().ok().flatten());
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = reader.join().unwrap_or_default();
            panic!("siege {args:?} did not finish within {deadline:?}:\n{stderr}");
        }
        (status.and_then(|s| s.code()), reader.join().unwrap_or_default())
    })
    .await
    .expect("siege runner")
}

/// The `siege:lease:*` tags on the world's service: (run id, value).
async fn lease_tags(world: &World) -> Vec<(String, String)> {
    let out = world.ecs.describe_services().cluster(moto::CLUSTER).services(moto::SERVICE).send().await.unwrap();
    let arn = out.services()[0].service_arn().expect("service arn").to_string();
    let tags = world.ecs.list_tags_for_resource().resource_arn(arn).send().await.expect("list tags");
    tags.tags()
        .iter()
        .filter_map(|t| Some((t.key()?.strip_prefix("siege:lease:")?.to_string(), t.value()?.to_string())))
        .collect()
}

/// The default time to live of a run's lease.
const TTL: Duration = siege::backend::lease::DEFAULT_TTL;

#[tokio::test]
async fn two_backends_claiming_one_service_at_once_get_one_lease() {
    let world = World::start().await;
    for round in 0..3 {
        let (ida, idb) = (format!("run-a{round}"), format!("run-b{round}"));
        let a = AwsBackend::with_config(&world.target(), &ida, &world.config).await.unwrap();
        let b = AwsBackend::with_config(&world.target(), &idb, &world.config).await.unwrap();
        let (ra, rb) = tokio::join!(a.acquire_lease(TTL), b.acquire_lease(TTL));
        let (winner, loser, lost) = match (ra, rb) {
            (Ok(()), Err(e)) => (a, b, e),
            (Err(e), Ok(())) => (b, a, e),
            other => panic!("round {round}: exactly one run must get the lease: {other:?}"),
        };
        let holder = if lost.to_string().contains(&ida) { &ida } else { &idb };
        assert!(matches!(lost, BackendError::Precondition(_)), "{lost}");
        assert!(
            lost.to_string().contains(&format!(
                "target busy: ECS service {} in cluster {}",
                moto::SERVICE,
                moto::CLUSTER
            )),
            "{lost}"
        );
        let seen = winner.lease_holder().await.unwrap().map(|l| l.run_id);
        assert_eq!(seen.as_deref(), Some(holder.as_str()), "the refusal names the holder: {lost}");
        assert_eq!(lease_tags(&world).await.len(), 1, "the loser's tag is gone");
        // Renewals by the holder only: the loser asking again is still refused.
        let again = loser;
        assert!(again.acquire_lease(TTL).await.is_err());
        winner.shutdown().await.unwrap();
        again.shutdown().await.unwrap();
        assert!(lease_tags(&world).await.is_empty(), "round {round}: the holder's shutdown removes its tag");
    }
    // A lease a killed run left is released by the run id alone (`siege recover`).
    let killed = AwsBackend::with_config(&world.target(), "run-killed", &world.config).await.unwrap();
    killed.acquire_lease(TTL).await.unwrap();
    // Dropped without a shutdown, as a killed process: the renewals stop, the tag stays.
    drop(killed);
    let other = backend(&world, world.target()).await;
    assert_eq!(other.lease_holder().await.unwrap().map(|l| l.run_id).as_deref(), Some("run-killed"));
    assert!(!other.release_lease("run-someone-else").await.unwrap());
    assert!(other.release_lease("run-killed").await.unwrap());
    assert!(lease_tags(&world).await.is_empty());
}

#[tokio::test]
async fn a_second_siege_run_on_a_service_under_test_exits_4_and_touches_nothing() {
    let world = World::start().await;
    let secret0 = world.secret_current().await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = |name: &str, faults: &str, secs: u32| {
        let file = dir.path().join(format!("{name}.yaml"));
        let yaml = format!(
            "name: {name}\n{}    url: {}\n    max_select: 50%\n\
             load: {{ url: /, rate: 10/s, duration: {secs}s, timeout: 2s }}\n\
             steady_state: {{ error_rate: \"< 1%\" }}\nfaults: [ {faults} ]\nrecovery: {{ within: 10s, hold: 2s }}\n",
            world.target_yaml(),
            ok_server(),
        );
        std::fs::write(&file, yaml).unwrap();
        file
    };
    let first = scenario("aws-lease-first", "{ type: secret-drift, at: 3s }", 16);
    let second =
        scenario("aws-lease-second", "{ type: task-kill, at: 3s, select: 1 }, { type: secret-drift, at: 3s }", 16);
    let home = tempfile::tempdir().unwrap();
    let mut run1 = crate::common::siege()
        .args(["run".as_ref(), first.as_os_str(), "--reports".as_ref(), home.path().join("r1").as_os_str()])
        .envs(world.env())
        .env("SIEGE_HOME", home.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the first run");
    // The first run holds the lease and has drifted the secret.
    let drifted = wait_async(Duration::from_secs(60), || async {
        let s = world.secret_current().await;
        (s.1 != secret0.1 && !lease_tags(&world).await.is_empty()).then_some(s)
    })
    .await
    .expect("the first run never drifted the secret");
    let tags = lease_tags(&world).await;
    assert_eq!(tags.len(), 1, "{tags:?}");
    let holder = tags[0].0.clone();
    assert!(holder.starts_with("aws-lease-first-"), "{tags:?}");
    let running = world.running_service_tasks().await;

    // `siege plan` says the service is busy; `siege run` is refused.
    let out = crate::common::siege()
        .args(["plan".as_ref(), second.as_os_str()])
        .envs(world.env())
        .env("SIEGE_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("target busy: held by run {holder} since ")),
        "{out:?}"
    );
    let args = vec!["run".into(), second.clone().into(), "--reports".into(), home.path().join("r2").into()];
    let (code, stderr) = run_siege(&world, home.path(), args, Duration::from_secs(60)).await;
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "target busy: ECS service {} in cluster {} (region {}) is held by run {holder} since 20",
            moto::SERVICE,
            moto::CLUSTER,
            moto::REGION
        )),
        "{stderr}"
    );
    // A daemon asks the service before it accepts a run of it: 409, and nothing started.
    let data = tempfile::tempdir().unwrap();
    let mut daemon = std::process::Command::new(crate::common::siege_bin())
        .args(["daemon", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .arg("--scenarios")
        .arg(dir.path())
        .envs(world.env())
        .env("SIEGE_HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn siege daemon");
    let addr = crate::common::daemon_address(&mut daemon);
    let token = std::fs::read_to_string(data.path().join("token")).unwrap().trim().to_string();
    let body = serde_json::json!({ "scenario": second }).to_string();
    let (status, answer) = tokio::task::spawn_blocking(move || {
        let auth = format!("Bearer {token}");
        crate::daemon::http(&addr, "POST", "/v1/runs", &[("Authorization", &auth)], body.as_bytes())
    })
    .await
    .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("target-busy") && answer.contains(&format!("run {holder} since")), "{answer}");

    // Nothing touched: the first run's drift is still in place, no task stopped, one lease.
    assert_eq!(world.secret_current().await, drifted);
    assert_eq!(world.running_service_tasks().await, running);
    assert_eq!(lease_tags(&world).await, tags);
    let (_, report) = only_report(&home.path().join("r2"));
    assert_eq!(report["verdict"]["outcome"], "precondition-failed", "{report:#}");

    // The first run ends normally: its revert restores the secret, its lease tag is removed.
    let status = tokio::task::spawn_blocking(move || run1.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(world.secret_current().await, secret0);
    assert!(lease_tags(&world).await.is_empty(), "{:?}", lease_tags(&world).await);
}

/// A TLS terminator on loopback in front of moto, with the test certificate for `localhost`
/// (tests/fixtures/tls): what siege's AWS client must get through to reach a real endpoint.
async fn tls_in_front_of(endpoint: &str) -> (String, tokio::task::JoinHandle<()>) {
    let upstream = endpoint.trim_start_matches("http://").to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // HTTP/1.1 only: moto behind it speaks nothing else.
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(crate::load::tls_config(&[b"http/1.1"])));
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let (Ok(mut tls), Ok(mut plain)) =
                    (acceptor.accept(tcp).await, tokio::net::TcpStream::connect(&upstream).await)
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (format!("https://localhost:{port}"), task)
}

/// The AWS client speaks TLS (rustls with ring) and trusts the system's roots, which
/// `SSL_CERT_FILE` replaces; an endpoint whose certificate those roots did not issue is refused
/// with the reason, before anything is touched.
#[tokio::test]
async fn the_aws_client_speaks_tls_and_refuses_an_endpoint_the_roots_do_not_vouch_for() {
    let world = World::start().await;
    let (https, _tls) = tls_in_front_of(&world.moto.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tls.yaml");
    let target = world.target_yaml().replace(&world.moto.endpoint, &https);
    let yaml = format!(
        "name: aws-tls\n{target}    url: http://127.0.0.1:9\n\
         load: {{ url: /, rate: 10/s, duration: 1m }}\nsteady_state: {{ error_rate: \"< 1%\" }}\n\
         faults:\n  - {{ type: task-kill, at: 20s, select: 1 }}\n\
         recovery: {{ within: 30s }}\n"
    );
    std::fs::write(&file, yaml).unwrap();
    let fixtures = crate::common::repo_root().join("tests/fixtures/tls");
    // The terminator runs on this test's runtime: `siege plan` is waited for beside it.
    let plan = |ca: &str| {
        let mut cmd = crate::common::siege();
        cmd.arg("plan").arg(&file).envs(world.env()).env("AWS_ENDPOINT_URL", &https);
        cmd.env("SSL_CERT_FILE", fixtures.join(ca));
        async move {
            let home = tempfile::tempdir().unwrap();
            let out = tokio::task::spawn_blocking(move || cmd.env("SIEGE_HOME", home.path()).output())
                .await
                .unwrap()
                .expect("run siege plan");
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            (out.status.code(), text)
        }
    };
    let (code, text) = plan("ca.pem").await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("stop 1 of 4 running tasks of service api (cluster prod)"), "{text}");
    let (code, text) = plan("other-ca.pem").await;
    assert_ne!(code, Some(0), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(text.to_lowercase().contains("certificate") || text.contains("UnknownIssuer"), "{text}");
}
