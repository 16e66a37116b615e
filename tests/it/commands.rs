//! Commands to a running run, in-process on a lab of its own: manual faults injected when asked
//! (journaled, reverted, on the recovery clock, in the report), marks with human times, a rate
//! change, refusals that leave the run going, and the stop command.

use std::time::Duration;

use siege::engine::bus::Received;
use siege::engine::events::{Event, Phase};
use siege::engine::{FaultChoice, Refused, RunCommand, RunHandle, RunRequest};
use siege::report::{MarkKind, Outcome};

use crate::events::{home, request_from, runtime};

/// 12 s of load on a lab of its own with no fault on the timeline, and a manual catalog.
fn request(home: &std::path::Path) -> RunRequest {
    request_from(
        home,
        "manual",
        r#"name: manual
target:
  lab: { service: api, tasks: 2 }
load: { url: /, rate: 20/s, duration: 12s, timeout: 2s }
steady_state: { error_rate: "< 5%" }
recovery: { within: 4s, hold: 1s }
manual:
  - { name: slow, type: latency, for: 2s, select: 1, delay: 10ms, jitter: 0ms }
  - { name: kill, type: task-kill, select: 1 }
"#,
        3,
    )
}

/// Waits until the run is in its faults phase (the baseline held).
async fn faults_phase(handle: &RunHandle) {
    let mut sub = handle.subscribe();
    while let Some(r) = sub.recv().await {
        if let Received::Event(e) = r
            && matches!(e.event, Event::PhaseChanged { phase: Phase::Faults, .. })
        {
            return;
        }
    }
    panic!("the run ended before its faults phase");
}

/// A mark by `author`; `detected` and `mitigated` ones are about the fault `slow`.
fn mark(kind: MarkKind, author: &str) -> RunCommand {
    let fault = (kind != MarkKind::Note).then(|| "slow".to_string());
    RunCommand::Mark { kind, author: author.into(), text: format!("{author} says so"), fault }
}

#[test]
fn manual_faults_marks_and_rate_changes_are_served_while_the_run_goes_on() {
    let home = home();
    runtime().block_on(async {
        let handle = siege::engine::start(request(home.path()));
        let cmd = handle.commander();
        // Before the baseline held nothing is injected.
        let early = cmd.send(RunCommand::Inject(FaultChoice::Numbered(1))).await;
        assert!(matches!(early, Err(Refused::NotNow(_))), "{early:?}");
        faults_phase(&handle).await;

        let unknown = cmd.send(RunCommand::Inject(FaultChoice::Numbered(9))).await;
        assert!(matches!(&unknown, Err(Refused::UnknownFault(m)) if m.contains("1 to 2: slow, kill")), "{unknown:?}");
        let injected = cmd.send(RunCommand::Inject(FaultChoice::Named("slow".into()))).await;
        assert!(injected.as_deref().is_ok_and(|m| m.starts_with("injected slow: ")), "{injected:?}");
        assert!(cmd.send(mark(MarkKind::Detected, "alice")).await.is_ok());
        let rate = cmd.send(RunCommand::SetRate { rate: 40.0, duration: Duration::from_secs(1) }).await;
        assert_eq!(rate.as_deref(), Ok("rate 40/s for 1s"));
        let bad = cmd.send(RunCommand::SetRate { rate: f64::NAN, duration: Duration::from_secs(1) }).await;
        assert!(matches!(bad, Err(Refused::Invalid(_))), "{bad:?}");
        assert!(cmd.send(mark(MarkKind::Mitigated, "alice")).await.is_ok());
        // Time passes on purpose: the second `slow` ends half a second after the first, so that
        // the recovery clock below can only have started from the second.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = cmd.send(RunCommand::Inject(FaultChoice::Named("slow".into()))).await;
        assert!(again.as_deref().is_ok_and(|m| m.starts_with("injected slow#2: ")), "{again:?}");
        assert!(cmd.send(mark(MarkKind::Note, "bob")).await.is_ok());

        let outcome = handle.outcome().await.expect("no panic");
        let r = &outcome.record;
        assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
        let names: Vec<&str> = r.faults.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["slow", "slow#2"]);
        for f in &r.faults {
            let (i, v) = (f.injected_s.unwrap(), f.reverted_s.expect("reverted"));
            assert!((1.9..3.5).contains(&(v - i)), "{f:?}: lasts its `for` of 2s");
            assert_eq!(f.ends_s, Some(i + 2.0), "{f:?}");
        }
        // The recovery clock runs from the end of the last commanded fault.
        let second = &r.faults[1];
        // (The record rounds times to a tenth of a second.)
        let near = |a: Option<f64>, b: Option<f64>| a.zip(b).is_some_and(|(a, b)| (a - b).abs() <= 0.1);
        assert!(near(r.timings.last_fault_end_s, second.ends_s), "{:?} {second:?}", r.timings);
        assert!(near(r.timings.first_fault_s, r.faults[0].injected_s), "{:?} {:?}", r.timings, r.faults[0]);
        assert_eq!(r.marks.len(), 3, "{:?}", r.marks);
        let alice = &r.faults[0].human;
        assert_eq!(alice.len(), 1, "{alice:?}");
        assert!(alice[0].detected_s.is_some() && alice[0].mitigated_s.is_some(), "{alice:?}");
        assert!(r.faults[1].human.is_empty(), "a note gives no times: {:?}", r.faults[1].human);
        // The engine writes nothing: its consumer renders the files from the record.
        let files = siege::report::files(&outcome.record, &outcome.secrets).unwrap();
        let md = files.iter().find(|(n, _)| *n == "report.md").map(|(_, b)| String::from_utf8_lossy(b)).unwrap();
        assert!(md.contains("slow#2") && md.contains("detected (alice)"), "{md}");
        // The journal is gone: everything was reverted.
        assert_eq!(std::fs::read_dir(home.path().join("journal")).map(|d| d.count()).unwrap_or(0), 0);
        // A run that has ended takes no more commands.
        assert_eq!(cmd.send(mark(MarkKind::Note, "late")).await, Err(Refused::Ended));
    });
}

#[test]
fn the_stop_command_reverts_and_ends_the_run_aborted() {
    let home = home();
    runtime().block_on(async {
        let handle = siege::engine::start(request(home.path()));
        let cmd = handle.commander();
        faults_phase(&handle).await;
        assert!(cmd.send(RunCommand::Inject(FaultChoice::Named("slow".into()))).await.is_ok());
        let stopped = cmd.send(RunCommand::Stop { reason: "the class has seen enough".into() }).await;
        assert!(stopped.is_ok(), "{stopped:?}");
        let r = handle.outcome().await.expect("no panic").record;
        assert_eq!(r.verdict.outcome, Outcome::Aborted, "{:?}", r.verdict);
        assert_eq!(r.verdict.interrupted_by.as_deref(), Some("stop command: the class has seen enough"));
        assert!(r.faults[0].reverted_s.is_some(), "{:?}", r.faults);
        assert!(r.timings.duration_s < 8.0, "stopped at once: {:?}", r.timings);
    });
}

#[test]
fn commands_are_answered_while_the_run_connects_and_a_stop_there_changes_nothing() {
    let home = home();
    runtime().block_on(async {
        let handle = siege::engine::start(request(home.path()));
        let cmd = handle.commander();
        // The run starts a lab of its own first: that takes a moment, and nobody waits for it.
        let early = tokio::time::timeout(Duration::from_millis(300), cmd.send(mark(MarkKind::Note, "bob"))).await;
        match early {
            // Connecting, or checking the target when the lab came up at once.
            Ok(Err(Refused::NotNow(why))) => assert!(why.contains("the load has not started"), "{why}"),
            other => panic!("a mark while connecting is refused at once: {other:?}"),
        }
        let stopped = cmd.send(RunCommand::Stop { reason: "wrong room".into() }).await;
        assert!(stopped.is_ok(), "{stopped:?}");
        let r = handle.outcome().await.expect("no panic").record;
        assert_eq!(r.verdict.outcome, Outcome::Aborted, "{:?}", r.verdict);
        assert!(r.faults.is_empty() && r.load.requests == 0, "nothing started: {:?} {:?}", r.faults, r.load);
    });
}
