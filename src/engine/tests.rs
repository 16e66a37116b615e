//! The engine in-process on the fake target under paused tokio time: the timeline, a stop
//! condition, the recovery deadline, commanded faults and the recovery clock, marks, the stop
//! command, consumers that lag or panic, and a revert on every way out. Each run takes
//! milliseconds of real time; its timings are exact.

use std::path::Path;
use std::time::Duration;

use super::bus::Received;
use super::command::{FaultChoice, Refused, RunCommand};
use super::events::{Event, Phase};
use super::handle::{RunHandle, start_connected};
use super::run::{RunOptions, RunRequest};
use crate::backend::fake::FakeBackend;
use crate::backend::{Backend, Connection};
use crate::report::{MarkKind, Outcome, RunRecord};

fn request(yaml: &str, journal: &Path) -> RunRequest {
    let scenario =
        crate::scenario::load_bytes("test.yaml", yaml.as_bytes(), Path::new(".")).unwrap_or_else(|d| panic!("{d:#?}"));
    RunRequest {
        scenario,
        source: "test.yaml".into(),
        options: RunOptions { reports_dir: None, seed: Some(1) },
        journal_dir: journal.to_path_buf(),
        failpoint: None,
        connection: Connection {
            state_dir: journal.to_path_buf(),
            lab_token: None,
            lease_ttl: Duration::from_secs(30),
            secrets: Default::default(),
        },
    }
}

/// A scenario on the fake target: 20 s of load at 100/s unless `rest` says otherwise.
fn scenario(rest: &str) -> String {
    format!(
        "name: fake\ntarget:\n  lab: {{ service: api, tasks: 4 }}\nsteady_state: {{ error_rate: \"< 1%\", p95: \"< 50ms\" }}\n{rest}"
    )
}

fn start(yaml: &str, fake: &FakeBackend, journal: &Path) -> RunHandle {
    start_connected(request(yaml, journal), super::bus::DEFAULT_CAPACITY, Backend::Fake(fake.clone()))
}

async fn record(handle: RunHandle) -> RunRecord {
    handle.outcome().await.expect("no panic").record
}

async fn until_phase(handle: &RunHandle, phase: Phase) {
    let mut sub = handle.subscribe();
    while let Some(r) = sub.recv().await {
        if let Received::Event(e) = r
            && matches!(e.event, Event::PhaseChanged { phase: p, .. } if p == phase)
        {
            return;
        }
    }
    panic!("the run ended before {phase:?}");
}

const TIMELINE: &str = "load: { url: /, rate: 100/s, duration: 20s }\n\
    faults:\n  - { type: latency, name: slow, at: 5s, for: 3s, select: 1, delay: 100ms }\n\
    recovery: { within: 5s, hold: 2s }\n";

#[tokio::test(start_paused = true)]
async fn the_timeline_injects_and_reverts_on_time_and_the_run_passes() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(2))));
    let r = record(start(&scenario(TIMELINE), &fake, dir.path())).await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    let f = &r.faults[0];
    assert_eq!(f.injected_s.map(|t| t.floor()), Some(5.0), "{f:?}");
    assert_eq!(f.reverted_s.map(|t| t.floor()), Some(8.0), "{f:?}");
    // Detected from the first slowed request due after the injection, not from the start of
    // the second it fell in.
    let ttd = r.timings.time_to_detect_s.expect("detected");
    assert!((0.0..1.0).contains(&ttd), "{:?}", r.timings);
    assert_eq!(f.effect.as_ref().and_then(|e| e.detected_after_s), Some(ttd));
    assert_eq!(r.windows.len(), 20);
    assert_eq!(fake.log(), ["inject slow", "revert slow"]);
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e.unwrap().path().to_string_lossy().ends_with(".jsonl")));
}

#[tokio::test(start_paused = true)]
async fn each_fault_gets_its_outage_and_its_time_to_restore() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(3))));
    let yaml = scenario(
        "load: { url: /, rate: 100/s, duration: 40s }\n\
         faults:\n  - { type: task-kill, name: kill, at: 5s, select: 1 }\n\
         \x20 - { type: latency, name: slow, at: 20s, for: 4s, select: 1, delay: 100ms }\n\
         recovery: { within: 10s, hold: 2s }\n",
    );
    let r = record(start(&yaml, &fake, dir.path())).await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    let effect = |name: &str| r.faults.iter().find(|f| f.name == name).and_then(|f| f.effect.clone()).unwrap();
    // The kill: its task fails its requests from 5 s until it is replaced 3 s later (the fake
    // judges each second by the state at its end: the seconds 5 and 6 are broken).
    let kill = effect("kill");
    assert_eq!((kill.broken_s, kill.restored_s, kill.outage_s), (Some(5.0), Some(7.0), Some(2.0)), "{kill:?}");
    assert_eq!((kill.disruption_end_s, kill.time_to_restore_s), (5.0, Some(2.0)), "{kill:?}");
    // Detected from its first failed request: below a second.
    assert!(kill.detected_after_s.is_some_and(|d| (0.0..1.0).contains(&d)), "{kill:?}");
    // The latency: slow until its revert at 24 s (which the fake's second 23, judged at 24 s,
    // already sees); restored 0 s after its end.
    let slow = effect("slow");
    assert_eq!((slow.broken_s, slow.outage_s, slow.time_to_restore_s), (Some(20.0), Some(3.0), Some(0.0)), "{slow:?}");
    assert_eq!(slow.disruption_end_s, 24.0);
    assert!(slow.detected_after_s.is_some_and(|d| (0.0..1.0).contains(&d)), "{slow:?}");
    assert_eq!(slow.counted_until_s, 34.0, "its end plus within");
    assert_eq!(kill.counted_until_s, 15.0, "the kill's end plus within, before the next injection");
    assert_eq!(r.timings.time_to_recover_s, Some(0.0), "{:?}", r.timings);
}

/// An injection that starts mid-second (here 410 ms into it) is detected from the first failed
/// request due after it, not from the start of the second that holds both.
#[tokio::test(start_paused = true)]
async fn detection_is_read_from_the_requests_below_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBackend::new(4, None);
    let yaml = scenario(
        "load: { url: /, rate: 100/s, duration: 20s }\n\
         faults:\n  - { type: task-kill, name: kill, at: 5410ms, select: 1 }\nrecovery: { within: 5s, hold: 2s }\n",
    );
    let r = record(start(&yaml, &fake, dir.path())).await;
    let f = &r.faults[0];
    assert_eq!(f.injected_s, Some(5.4), "{f:?}");
    // Every fourth request goes to the dead task: the first due after 5.41 s is at 5.44 s.
    assert_eq!(r.timings.time_to_detect_s, Some(0.03), "{:?}", r.timings);
    assert_eq!(f.effect.as_ref().and_then(|e| e.detected_after_s), Some(0.03), "{f:?}");
}

/// A dead task the balancer notices after its health checks: the steady state (healthy
/// targets) breaks 3 s after the kill, longer than `hold`. The steady seconds before the
/// balancer noticed are not a recovery: the break is the kill's effect, and it is waited for.
#[tokio::test(start_paused = true)]
async fn a_late_effect_is_measured_as_an_outage_not_as_a_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBackend::new(4, Some(Duration::from_secs(6))).with_notice_after(Duration::from_secs(3));
    let yaml = "name: fake\ntarget:\n  lab: { service: api, tasks: 4 }\n\
        steady_state: { error_rate: \"< 50%\", healthy_targets: \">= 4\" }\n\
        load: { url: /, rate: 100/s, duration: 30s }\n\
        faults:\n  - { type: task-kill, name: kill, at: 5s, select: 1 }\n\
        recovery: { within: 10s, hold: 2s }\n";
    let r = record(start(yaml, &fake, dir.path())).await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    let kill = r.faults[0].effect.clone().unwrap();
    // Unhealthy from 8 s (5 + 3) until the replacement at 11 s (5 + 6), as sampled when the
    // seconds 7 and 10 close.
    assert_eq!((kill.broken_s, kill.restored_s, kill.outage_s), (Some(7.0), Some(10.0), Some(3.0)), "{kill:?}");
    assert_eq!(kill.time_to_restore_s, Some(5.0), "{kill:?}");
    // Not 0 s, as when the steady seconds 5 and 6 (before the balancer noticed) counted.
    assert_eq!(r.timings.time_to_recover_s, Some(5.0), "{:?}", r.timings);
}

/// Every closed second says the service's health: steady, broken since the first failing second
/// (with the failing check in words), recovering from the first steady second after it until
/// `hold` steady seconds, steady again from that first steady second.
#[tokio::test(start_paused = true)]
async fn each_second_says_whether_the_service_is_broken_and_since_when() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBackend::new(4, Some(Duration::from_secs(6))).with_notice_after(Duration::from_secs(3));
    let yaml = "name: fake\ntarget:\n  lab: { service: api, tasks: 4 }\n\
        steady_state: { error_rate: \"< 50%\", healthy_targets: \">= 4\" }\n\
        load: { url: /, rate: 100/s, duration: 20s }\n\
        faults:\n  - { type: task-kill, name: kill, at: 5s, select: 1 }\n\
        recovery: { within: 10s, hold: 3s }\n";
    let handle = start(yaml, &fake, dir.path());
    let mut sub = handle.subscribe();
    let seconds = tokio::spawn(async move {
        let mut seconds = vec![];
        while let Some(r) = sub.recv().await {
            if let Received::Event(e) = r
                && let Event::SecondClosed { window, health, .. } = &e.event
            {
                seconds.push((window.second, health.clone()));
            }
        }
        seconds
    });
    assert_eq!(record(handle).await.verdict.outcome, Outcome::Passed);
    let seconds = seconds.await.unwrap();
    let at = |second: u32| seconds.iter().find(|(s, _)| *s == second).map(|(_, h)| h.clone()).unwrap();
    use super::events::HealthState::*;
    // As in the late-effect test: unhealthy targets from the second 7 to 9, steady from 10.
    assert_eq!((at(6).state, at(6).since), (Steady, 0.0), "{seconds:?}");
    for s in 7..=9 {
        let h = at(s);
        assert_eq!((h.state, h.since), (Broken, 7.0), "second {s}: {seconds:?}");
        assert!(h.detail.as_deref().is_some_and(|d| d.starts_with("healthy_targets 3 (want >= 4)")), "{h:?}");
        assert_eq!(h.failing, ["healthy_targets"], "{h:?}");
    }
    assert_eq!((at(10).state, at(10).since, at(10).detail.clone()), (Recovering, 10.0, None));
    assert!(at(10).failing.is_empty());
    assert_eq!((at(11).state, at(11).since), (Recovering, 10.0));
    // Three steady seconds (10, 11, 12): held.
    assert_eq!((at(12).state, at(12).since), (Steady, 10.0));
    assert_eq!((at(15).state, at(15).since), (Steady, 10.0));
}

#[tokio::test(start_paused = true)]
async fn a_stop_condition_aborts_the_run_and_every_fault_is_reverted() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, None));
    let yaml = scenario(
        "load: { url: /, rate: 100/s, duration: 60s }\n\
         faults:\n  - { type: latency, name: slow, at: 5s, for: 40s, select: 1, delay: 100ms }\n\
         \x20 - { type: task-kill, name: kill, at: 6s, select: 75% }\n\
         stop: [ \"error_rate > 50% for 3s\" ]\nrecovery: { within: 5s, hold: 2s }\n",
    );
    let r = record(start(&yaml, &fake, dir.path())).await;
    assert_eq!(r.verdict.outcome, Outcome::Aborted, "{:?}", r.verdict);
    assert!(r.timings.duration_s < 12.0, "aborted at once: {:?}", r.timings);
    assert_eq!(fake.log(), ["inject slow", "inject kill", "revert slow"]);
    assert_eq!(fake.active(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_run_that_does_not_recover_by_the_deadline_fails_and_ends_there() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, None));
    let yaml = scenario(
        "load: { url: /, rate: 100/s, duration: 60s }\n\
         faults:\n  - { type: task-kill, name: kill, at: 5s, select: 1 }\nrecovery: { within: 5s, hold: 2s }\n",
    );
    let r = record(start(&yaml, &fake, dir.path())).await;
    assert_eq!(r.verdict.outcome, Outcome::Failed, "{:?}", r.verdict);
    // Deadline 5 + 5 s, and the hold after it: the run does not go on to 60 s.
    assert!((12.0..15.0).contains(&r.timings.duration_s), "{:?}", r.timings);
}

#[tokio::test(start_paused = true)]
async fn a_commanded_fault_moves_the_recovery_clock_and_marks_give_human_times() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(2))));
    let yaml = scenario(
        "load: { url: /, rate: 100/s, duration: 30s }\n\
         manual:\n  - { type: latency, name: slow, for: 4s, select: 1, delay: 100ms }\n\
         recovery: { within: 5s, hold: 2s }\n",
    );
    let handle = start(&yaml, &fake, dir.path());
    let cmd = handle.commander();
    until_phase(&handle, Phase::Faults).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let injected = cmd.send(RunCommand::Inject(FaultChoice::Named("slow".into()))).await;
    assert!(injected.is_ok(), "{injected:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mark = |kind, author: &str, fault: Option<&str>| RunCommand::Mark {
        kind,
        author: author.into(),
        text: String::new(),
        fault: fault.map(str::to_string),
    };
    // A mark names who makes it and, unless it is a note, the fault it is about.
    let nameless = cmd.send(mark(MarkKind::Detected, " ", Some("slow"))).await;
    assert!(matches!(&nameless, Err(Refused::Invalid(m)) if m.contains("author")), "{nameless:?}");
    let about_nothing = cmd.send(mark(MarkKind::Detected, "alice", None)).await;
    assert!(matches!(&about_nothing, Err(Refused::Invalid(m)) if m.contains("injected: slow")), "{about_nothing:?}");
    let unknown = cmd.send(mark(MarkKind::Detected, "alice", Some("kill"))).await;
    assert!(matches!(&unknown, Err(Refused::UnknownFault(_))), "{unknown:?}");
    assert!(cmd.send(mark(MarkKind::Detected, "alice", Some("slow"))).await.is_ok());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(cmd.send(mark(MarkKind::Note, "bob", None)).await.is_ok());
    assert!(cmd.send(mark(MarkKind::Mitigated, "alice", Some("slow"))).await.is_ok());
    // Moving a mark: a note cannot be, nor one to a fault never injected.
    let note = cmd.send(RunCommand::MoveMark { id: 2, fault: "slow".into() }).await;
    assert!(matches!(note, Err(Refused::Invalid(_))), "{note:?}");
    let nowhere = cmd.send(RunCommand::MoveMark { id: 1, fault: "kill".into() }).await;
    assert!(matches!(nowhere, Err(Refused::UnknownFault(_))), "{nowhere:?}");
    let r = record(handle).await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    let f = &r.faults[0];
    let at = f.injected_s.expect("injected");
    assert!((10.0..11.0).contains(&at), "{f:?}");
    assert_eq!(r.timings.first_fault_s.map(f64::floor), Some(at.floor()), "{:?}", r.timings);
    assert_eq!(r.timings.last_fault_end_s, Some(at + 4.0), "{:?}", r.timings);
    assert_eq!(f.human.len(), 1);
    let (d, m) = (f.human[0].detected_s.unwrap(), f.human[0].mitigated_s.unwrap());
    assert!((2.0..2.2).contains(&d) && (5.0..5.2).contains(&m), "{:?}", f.human);
    assert_eq!(fake.log(), ["inject slow", "revert slow"]);
}

#[tokio::test(start_paused = true)]
async fn a_mark_the_instructor_moves_counts_for_the_fault_it_was_moved_to() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(3))));
    let yaml = scenario(
        "load: { url: /, rate: 100/s, duration: 30s }\n\
         faults:\n  - { type: task-kill, name: kill, at: 5s, select: 1 }\n\
         \x20 - { type: latency, name: slow, at: 8s, for: 3s, select: 1, delay: 100ms }\n\
         recovery: { within: 10s, hold: 2s }\n",
    );
    let handle = start(&yaml, &fake, dir.path());
    let cmd = handle.commander();
    until_phase(&handle, Phase::Faults).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let detected = RunCommand::Mark {
        kind: MarkKind::Detected,
        author: "alice".into(),
        text: String::new(),
        fault: Some("slow".into()),
    };
    assert!(cmd.send(detected).await.is_ok());
    let moved = cmd.send(RunCommand::MoveMark { id: 1, fault: "kill".into() }).await;
    assert_eq!(moved.as_deref(), Ok("mark 1 moved from slow to kill"));
    let r = record(handle).await;
    assert_eq!((r.marks[0].fault.as_deref(), r.marks[0].moved_from.as_deref()), (Some("kill"), Some("slow")));
    let (kill, slow) = (&r.faults[0], &r.faults[1]);
    assert_eq!(kill.human.len(), 1, "{kill:?}");
    assert!(kill.human[0].detected_s.is_some_and(|d| d > 7.0), "{kill:?}");
    assert!(slow.human.is_empty(), "{slow:?}");
    assert!(
        r.timeline.iter().any(|e| e.text == "mark 1 moved from slow to kill by the instructor"),
        "{:?}",
        r.timeline
    );
}

#[tokio::test(start_paused = true)]
async fn a_fault_given_in_full_is_injected_journaled_and_reverted_like_a_catalog_one() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(2))));
    let yaml = scenario("load: { url: /, rate: 100/s, duration: 30s }\nrecovery: { within: 5s, hold: 2s }\n");
    let handle = start(&yaml, &fake, dir.path());
    let cmd = handle.commander();
    let sc = request(&yaml, dir.path()).scenario;
    let given = |text: &str| crate::scenario::load_fault("request", text.as_bytes(), &sc).unwrap();
    until_phase(&handle, Phase::Faults).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fault = given("{ type: latency, select: 1, delay: 100ms, for: 3s }");
    let injected = cmd.send(RunCommand::Inject(FaultChoice::Given(fault.clone()))).await;
    assert!(injected.is_ok(), "{injected:?}");
    // Too long for what is left of the load: refused, and the run goes on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let long = given("{ type: latency, name: long, select: 1, delay: 100ms, for: 20s }");
    let refused = cmd.send(RunCommand::Inject(FaultChoice::Given(long))).await;
    assert!(matches!(refused, Err(super::command::Refused::NotNow(_))), "{refused:?}");
    let r = record(handle).await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    assert_eq!(r.faults.len(), 1, "{:?}", r.faults);
    assert_eq!(r.faults[0].name, "latency");
    assert_eq!(fake.log(), ["inject latency", "revert latency"]);
}

/// A fault that lasts most of a minute of load.
const LONG_FAULT: &str = "load: { url: /, rate: 100/s, duration: 60s }\n\
    faults:\n  - { type: latency, name: slow, at: 5s, for: 40s, select: 1, delay: 100ms }\n\
    recovery: { within: 5s, hold: 2s }\n";

#[tokio::test(start_paused = true)]
async fn the_stop_command_ends_the_run_aborted_with_every_fault_reverted() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, None));
    let handle = start(&scenario(LONG_FAULT), &fake, dir.path());
    let cmd = handle.commander();
    until_phase(&handle, Phase::Faults).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(cmd.send(RunCommand::Stop { reason: "enough".into() }).await.is_ok());
    let r = record(handle).await;
    assert_eq!(r.verdict.outcome, Outcome::Aborted, "{:?}", r.verdict);
    assert_eq!(r.verdict.interrupted_by.as_deref(), Some("stop command: enough"));
    assert_eq!(fake.log(), ["inject slow", "revert slow"]);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_reverts_every_fault() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, None));
    let handle = start(&scenario(LONG_FAULT), &fake, dir.path());
    until_phase(&handle, Phase::Faults).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    handle.interrupt("SIGINT (Ctrl-C)");
    let r = record(handle).await;
    assert_eq!(r.verdict.outcome, Outcome::Aborted, "{:?}", r.verdict);
    assert_eq!(fake.log(), ["inject slow", "revert slow"]);
}

#[tokio::test(start_paused = true)]
async fn consumers_that_lag_or_panic_change_neither_the_verdict_nor_the_timing() {
    let alone = {
        let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(2))));
        record(start(&scenario(TIMELINE), &fake, dir.path())).await
    };
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(2))));
    // The same run with a live buffer of 4 events, a subscriber that never reads (it lags at
    // once) and one that panics on its first event.
    let handle = start_connected(request(&scenario(TIMELINE), dir.path()), 4, Backend::Fake(fake.clone()));
    let idle = handle.subscribe();
    let mut first = handle.subscribe();
    let panics = tokio::spawn(async move {
        first.recv().await;
        panic!("a consumer panics");
    });
    let watched = record(handle).await;
    assert!(panics.await.unwrap_err().is_panic());
    assert_eq!(watched.verdict, alone.verdict);
    assert_eq!(watched.timings.duration_s, alone.timings.duration_s);
    assert_eq!(watched.faults[0].injected_s, alone.faults[0].injected_s);
    assert_eq!(watched.faults[0].reverted_s, alone.faults[0].reverted_s);
    assert_eq!(watched.windows.len(), alone.windows.len());
    drop(idle);
}

#[tokio::test(start_paused = true)]
async fn a_command_whose_recovery_could_not_be_judged_before_the_load_ends_is_refused() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(2))));
    let yaml = scenario(
        "load: { url: /, rate: 100/s, duration: 20s }\n\
         manual:\n  - { type: latency, name: slow, for: 4s, select: 1, delay: 100ms }\n\
         recovery: { within: 5s, hold: 2s }\n",
    );
    let handle = start(&yaml, &fake, dir.path());
    let cmd = handle.commander();
    until_phase(&handle, Phase::Faults).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    let late = cmd.send(RunCommand::Inject(FaultChoice::Named("slow".into()))).await;
    assert!(
        matches!(&late, Err(super::command::Refused::NotNow(m)) if m.starts_with("the load ends in 8s: slow lasts 4s")),
        "{late:?}"
    );
    let spike = cmd.send(RunCommand::SetRate { rate: 300.0, duration: Duration::from_secs(2) }).await;
    assert!(matches!(spike, Err(super::command::Refused::NotNow(_))), "{spike:?}");
    let r = record(handle).await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "nothing was done: {:?}", r.verdict);
    assert!(fake.log().is_empty() && r.faults.is_empty(), "{:?}", fake.log());
}

#[tokio::test(start_paused = true)]
async fn a_failover_that_leaves_nothing_to_revert_says_so_and_is_never_called_reverted() {
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(2))));
    let yaml = scenario(
        "load: { url: /, rate: 100/s, duration: 20s }\n\
         faults:\n  - { type: db-failover, name: db, at: 5s }\nrecovery: { within: 5s, hold: 2s }\n",
    );
    let handle = start(&yaml, &fake, dir.path());
    let mut sub = handle.subscribe();
    let events = tokio::spawn(async move {
        let mut events = vec![];
        while let Some(r) = sub.recv().await {
            if let Received::Event(e) = r {
                events.push(e.event.clone());
            }
        }
        events
    });
    let r = record(handle).await;
    let events = events.await.unwrap();
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    // Settled right after the injection, as a task-kill is; never a revert.
    let settled = events.iter().position(|e| matches!(e, Event::FaultSettled { fault, .. } if fault == "db"));
    let injected = events.iter().position(|e| matches!(e, Event::FaultInjected { fault, .. } if fault == "db"));
    assert_eq!(settled, injected.map(|i| i + 1), "{events:#?}");
    assert!(!events.iter().any(|e| matches!(e, Event::FaultReverted { .. })), "{events:#?}");
    assert_eq!(fake.log(), ["inject db"]);
    let f = &r.faults[0];
    assert_eq!((f.reverted_s, f.no_revert.as_deref()), (None, Some("the cluster keeps its new writer")), "{f:?}");
    let said: Vec<&str> = r.timeline.iter().map(|e| e.text.as_str()).collect();
    assert!(said.contains(&"db: no revert: the cluster keeps its new writer"), "{said:#?}");
    assert!(!said.iter().any(|t| t.contains("reverted")), "{said:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_fault_that_takes_effect_late_is_timed_from_then_and_said_to_be_late() {
    // The injection takes 4 s (a FIS experiment that is slow to start): the 3 s window runs
    // from when it took effect, not from its planned 5 s.
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(2))));
    let fake = fake.with_inject_delay(Duration::from_secs(4));
    let yaml = scenario(
        "load: { url: /, rate: 100/s, duration: 30s }\n\
         faults:\n  - { type: latency, name: slow, at: 5s, for: 3s, select: 1, delay: 100ms }\n\
         recovery: { within: 5s, hold: 2s }\n",
    );
    let r = record(start(&yaml, &fake, dir.path())).await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    let f = &r.faults[0];
    assert_eq!(f.injected_s.map(f64::floor), Some(9.0), "{f:?}");
    assert_eq!(f.reverted_s.map(f64::floor), Some(12.0), "the window was cut short: {f:?}");
    assert_eq!(f.ends_s.map(f64::floor), Some(12.0), "{f:?}");
    // The recovery clock starts at the end of the window that really was.
    assert_eq!(r.timings.last_fault_end_s.map(f64::floor), Some(12.0), "{:?}", r.timings);
    let said: Vec<&str> = r.timeline.iter().map(|e| e.text.as_str()).collect();
    assert!(
        said.contains(&"slow: started 4s late (planned at t+5s); it is timed from when it took effect"),
        "{said:#?}"
    );
    assert_eq!(fake.log(), ["inject slow", "revert slow"]);
}

#[tokio::test(start_paused = true)]
async fn the_phases_follow_one_transition_at_a_time_and_a_fault_in_recovery_brings_the_faults_back() {
    use Phase::*;
    let (dir, fake) = (tempfile::tempdir().unwrap(), FakeBackend::new(4, Some(Duration::from_secs(2))));
    let yaml = scenario(
        "load: { url: /, rate: 100/s, duration: 40s }\n\
         faults:\n  - { type: latency, name: slow, at: 5s, for: 3s, select: 1, delay: 100ms }\n\
         manual:\n  - { type: latency, name: again, for: 2s, select: 1, delay: 100ms }\n\
         recovery: { within: 5s, hold: 2s }\n",
    );
    let handle = start(&yaml, &fake, dir.path());
    until_phase(&handle, Recovery).await;
    let injected = handle.commander().send(RunCommand::Inject(FaultChoice::Named("again".into()))).await;
    assert!(injected.is_ok(), "{injected:?}");
    let bus = handle.bus();
    let r = record(handle).await;
    assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
    let told: Vec<Phase> = bus
        .history()
        .iter()
        .filter_map(|e| if let Event::PhaseChanged { phase, .. } = e.event { Some(phase) } else { None })
        .collect();
    assert_eq!(told, [Connecting, Baseline, Faults, Recovery, Faults, Recovery, Reverting, Reporting]);
}
