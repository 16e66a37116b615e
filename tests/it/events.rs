//! The run API in-process: `engine::start` on a lab started for the run, its event stream, the
//! consumers that must not hurt the run, interrupting through the handle, and a panic.

use std::sync::Arc;
use std::time::Duration;

use siege::engine::bus::{Received, Subscription};
use siege::engine::events::{Envelope, Event};
use siege::engine::{RunHandle, RunOptions, RunRequest};
use siege::report::Outcome;

/// A private state directory for this test process; a run's lab is started from the test
/// binary's `siege`.
pub(crate) fn home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    // SAFETY: nextest runs each test in its own process, before any thread reads the environment.
    unsafe {
        std::env::set_var("SIEGE_HOME", home.path());
        std::env::set_var("SIEGE_EXE", crate::common::siege_bin());
    }
    home
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// 5 s of load on a lab of its own, a 10 ms latency fault on one task from 2 s to 3 s.
fn request(home: &std::path::Path) -> RunRequest {
    request_from(
        home,
        "short",
        r#"name: short
target:
  lab: { service: api, tasks: 2 }
load: { url: /, rate: 20/s, duration: 5s, timeout: 2s }
steady_state: { error_rate: "< 5%" }
recovery: { within: 1s, hold: 1s }
faults:
  - { name: slow, type: latency, at: 2s, for: 1s, select: 50%, delay: 10ms, jitter: 0ms }
"#,
        1,
    )
}

/// A run of scenario `yaml`, written to `home/NAME.yaml`, with `seed`: reports under
/// `home/reports`, the journal in `home/journal`, the connection from the environment.
pub(crate) fn request_from(home: &std::path::Path, name: &str, yaml: &str, seed: u64) -> RunRequest {
    let file = home.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let scenario = siege::scenario::load_file(&file).unwrap_or_else(|d| panic!("{d:?}"));
    RunRequest {
        scenario,
        source: file.display().to_string(),
        options: RunOptions { reports_dir: Some(home.join("reports")), seed: Some(seed) },
        journal_dir: home.join("journal"),
        failpoint: None,
        connection: siege::backend::Connection::from_env().unwrap(),
    }
}

/// What a subscription yields until the run ends: the events, and the total it was told it
/// missed.
async fn drain(mut sub: Subscription) -> (Vec<Arc<Envelope>>, u64) {
    let (mut events, mut missed) = (vec![], 0);
    while let Some(r) = sub.recv().await {
        match r {
            Received::Event(e) => events.push(e),
            Received::Lagged(n) => missed += n,
        }
    }
    (events, missed)
}

fn seqs(events: &[Arc<Envelope>]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// Waits until the run emitted an event of `type`.
async fn wait_for_event(handle: &RunHandle, ty: &str) {
    let mut sub = handle.subscribe();
    while let Some(r) = sub.recv().await {
        if let Received::Event(e) = r
            && e.event.type_name() == ty
        {
            return;
        }
    }
    panic!("the run ended without {ty}");
}

#[test]
fn consumers_that_lag_panic_block_or_vanish_change_nothing_and_every_subscriber_sees_one_sequence() {
    let home = home();
    runtime().block_on(async {
        // A live buffer of 8 events: the idle subscriber below falls behind within seconds.
        let handle = siege::engine::handle::start_with_capacity(request(home.path()), 8);
        let idle = handle.subscribe();
        drop(handle.subscribe());
        let panics = {
            let mut sub = handle.subscribe();
            tokio::spawn(async move {
                sub.recv().await;
                panic!("a consumer panics");
            })
        };
        // Blocks its thread a second per event: a terminal that does not take output.
        let mut blocked = handle.subscribe();
        std::thread::spawn(move || {
            while blocked.blocking_recv().is_some() {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let early = tokio::spawn(drain(handle.subscribe()));
        wait_for_event(&handle, "fault-injected").await;
        let midway = tokio::spawn(drain(handle.subscribe()));
        let bus = handle.bus();

        let outcome = handle.outcome().await.expect("the run ends without a panic");
        let r = &outcome.record;
        assert_eq!(r.verdict.outcome, Outcome::Passed, "{:?}", r.verdict);
        // On time: the load ran its 5 s, the fault came and went when the scenario says. (A run
        // that waited on the blocked consumer would take a second per event, dozens of seconds;
        // the margins are for a busy machine, not for the consumers.)
        assert!((5.0..7.0).contains(&r.timings.duration_s), "{:?}", r.timings);
        let f = &r.faults[0];
        assert!(f.injected_s.is_some_and(|t| (2.0..3.0).contains(&t)), "{f:?}");
        assert!(f.reverted_s.is_some_and(|t| (3.0..4.0).contains(&t)), "{f:?}");
        assert_eq!(r.windows.len(), 5, "a window per second");
        assert!(panics.await.unwrap_err().is_panic());

        // The full sequence: contiguous from 0, ending with the verdict.
        let (late, missed) = drain(bus.subscribe()).await;
        assert_eq!(missed, 0);
        let n = late.len() as u64;
        assert_eq!(seqs(&late), (0..n).collect::<Vec<_>>());
        assert!(late.iter().all(|e| e.run_id == r.run_id));
        assert!(matches!(late.last().unwrap().event, Event::RunFinished { outcome: Outcome::Passed, .. }));
        assert!(late.iter().any(|e| matches!(e.event, Event::LoadStarted { .. }) && e.t == Some(0.0)));
        assert!(late.iter().take_while(|e| !matches!(e.event, Event::LoadStarted { .. })).all(|e| e.t.is_none()));

        // Subscribers that kept reading saw the same events (bar any they were told they
        // missed); the idle one was told what it missed and then got the latest ones.
        for (name, (events, missed)) in [("early", early.await.unwrap()), ("midway", midway.await.unwrap())] {
            assert_eq!(events.len() as u64 + missed, n, "{name}");
            if missed == 0 {
                assert_eq!(seqs(&events), seqs(&late), "{name}");
            }
            for e in &events {
                assert_eq!(**e, *late[e.seq as usize], "{name}");
            }
        }
        // It gets what was in the history when it subscribed (on a busy machine, a few events),
        // then is told what it missed, then the last 8.
        let (tail, missed) = drain(idle).await;
        assert!(n > 8 && missed > 0 && missed + tail.len() as u64 == n, "{n} events, missed {missed}");
        assert_eq!(seqs(&tail[tail.len() - 8..]), (n - 8..n).collect::<Vec<_>>());
    });
}

#[test]
fn interrupting_through_the_handle_reverts_and_ends_the_run_aborted() {
    let home = home();
    runtime().block_on(async {
        let handle = siege::engine::start(request(home.path()));
        wait_for_event(&handle, "fault-injected").await;
        assert!(!handle.interrupt("a stop from the test"), "the first interrupt does not hurry");
        assert!(handle.interrupter().interrupt("again"), "the second one hurries");
        let bus = handle.bus();
        let outcome = handle.outcome().await.expect("no panic");
        let r = &outcome.record;
        assert_eq!(r.verdict.outcome, Outcome::Aborted, "{:?}", r.verdict);
        assert!(r.verdict.reason.contains("a stop from the test"), "{:?}", r.verdict);
        assert!(r.faults[0].reverted_s.is_some(), "{:?}", r.faults);
        let events = bus.history();
        assert!(events.iter().any(|e| e.event.type_name() == "cancelled"));
        assert!(std::fs::read_dir(home.path().join("journal")).unwrap().next().is_none(), "journal closed");
    });
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the failpoint exists in debug builds only")]
fn a_panic_in_the_run_ends_its_stream_and_the_outcome_reverts_from_its_journal() {
    let home = home();
    runtime().block_on(async {
        let handle =
            siege::engine::start(RunRequest { failpoint: Some("after-inject".into()), ..request(home.path()) });
        let sub = handle.subscribe();
        let run_id = handle.run_id().to_string();
        let panicked = handle.outcome().await.err().expect("the failpoint panics");
        assert!(panicked.message.contains("failpoint after-inject"), "{panicked:?}");
        assert!(!panicked.revert_failed, "{panicked:?}");
        assert!(panicked.lines.iter().any(|l| l.contains(&run_id)), "{panicked:?}");
        let (events, _) = tokio::time::timeout(Duration::from_secs(5), drain(sub)).await.expect("the stream ends");
        assert!(events.iter().any(|e| e.event.type_name() == "fault-injected"));
        assert!(!events.iter().any(|e| e.event.type_name() == "run-finished"));
        assert!(std::fs::read_dir(home.path().join("journal")).unwrap().next().is_none(), "journal closed");
    });
}
