//! Times the daemon's history store as `GET /v1/runs` will use it: the first page of runs
//! (newest first, 50 runs) with RUNS runs in history, QUERIES times, unfiltered, filtered by
//! scenario and filtered by verdict, and prints p50/p99. Run by bench/daemon-store.sh.
//! With KEEP_DB=PATH the history is written to PATH and kept (bench/daemon.sh seeds a daemon's
//! data directory with it).

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use siege::daemon::store::{NewRun, RunEnd, RunQuery, RunState, Store, Trigger};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() -> anyhow::Result<()> {
    let runs = env("RUNS", 10_000);
    let queries = env("QUERIES", 200);
    let dir = tempfile::tempdir()?;
    let path = std::env::var_os("KEEP_DB").map_or_else(|| dir.path().join("history.db"), Into::into);
    let store = Store::open(&path)?;
    // A record of the size a real report.json has (a few KiB), so that the pages of the table
    // are as full as in a real history.
    let record =
        format!(r#"{{"verdict":"passed","windows":[{}]}}"#, vec!["{\"p95_ms\":12.5,\"errors\":0}"; 100].join(","));
    let base: Timestamp = "2026-01-01T00:00:00Z".parse()?;
    let seeding = Instant::now();
    for i in 0..runs {
        let started = base + SignedDuration::from_secs(600 * i as i64);
        let id = format!("run-{i:06}");
        let scenario = format!("scenario-{}", i % 20);
        let run = NewRun {
            id: id.clone(),
            scenario,
            target: "lab:api".into(),
            trigger: Trigger::Schedule,
            schedule: None,
            started_at: started,
            blind: false,
        };
        store.insert_run(&run)?;
        let state = if i % 7 == 0 { RunState::Failed } else { RunState::Passed };
        let end = RunEnd {
            state,
            finished_at: started + SignedDuration::from_secs(120),
            time_to_detect: Some(Duration::from_secs(4)),
            mttr: Some(Duration::from_secs(30)),
            record: Some(record.clone()),
        };
        store.finish_run(&id, &end)?;
    }
    let seed_time = seeding.elapsed();
    let size = std::fs::metadata(&path)?.len()
        + std::fs::metadata(path.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0);
    println!(
        "{runs} runs seeded in {:.1} s ({} one-run transactions, 2 per run), database + WAL {:.1} MiB",
        seed_time.as_secs_f64(),
        runs * 2,
        size as f64 / (1 << 20) as f64
    );
    let cases = [
        ("first page, no filter", RunQuery { limit: 50, ..Default::default() }),
        ("first page, scenario=", RunQuery { limit: 50, scenario: Some("scenario-7".into()), ..Default::default() }),
        ("first page, verdict=failed", RunQuery { limit: 50, state: Some(RunState::Failed), ..Default::default() }),
    ];
    println!("{:<28} {:>10} {:>10} {:>10}", format!("{queries} queries of 50 runs"), "p50", "p99", "max");
    for (label, q) in cases {
        let mut times = Vec::with_capacity(queries);
        let mut second = q.clone();
        for _ in 0..queries {
            let t = Instant::now();
            let page = store.list_runs(&q)?;
            times.push(t.elapsed());
            assert_eq!(page.runs.len(), 50);
            second.cursor = page.next;
        }
        times.sort();
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
        println!(
            "{label:<28} {:>10} {:>10} {:>10}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(times[times.len() - 1])
        );
        assert!(store.list_runs(&second)?.runs.len() == 50, "the cursor leads to a full second page");
    }
    Ok(())
}
