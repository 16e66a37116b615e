//! `siege run`, `siege plan` and `siege recover`: the commands around one run of the engine.

use std::path::PathBuf;

use super::{Failure, runtime};
use crate::backend::Connection;
use crate::engine::{
    Commander, FaultChoice, Interrupter, Refused, RunCommand, RunOptions, RunRequest, journal, progress, start,
};
use crate::exit::Exit;
use crate::scenario::{FaultKind, Scenario, Target};

#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    /// Scenario file.
    pub file: PathBuf,
    /// Directory for reports (a subdirectory per run is created).
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Seed for random selections (overrides the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The instructor's keys on this terminal: 1-9 inject that fault of the manual catalog, s
    /// triples the traffic for 15s, d / m mark detected / mitigated, n types a note, q stops.
    #[arg(long)]
    pub interactive: bool,
    /// The name the marks carry (default: $USER).
    #[arg(long, value_name = "NAME", requires = "interactive")]
    pub author: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(super) struct PlanArgs {
    /// Scenario file.
    pub file: PathBuf,
    /// Seed for random selections (overrides the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub(super) struct RecoverArgs {
    /// Remove one journal that `siege recover` cannot act on (it names the file), after you have
    /// checked by hand what that run left injected; reverts nothing.
    #[arg(long, value_name = "FILE")]
    pub discard: Option<PathBuf>,
}

/// What the backends take from the environment (`SIEGE_HOME`, `SIEGE_LAB_TOKEN`,
/// `SIEGE_LEASE_TTL`), read here once; a bad value is a usage error (exit 3).
fn connection() -> anyhow::Result<Connection> {
    Connection::from_env().map_err(|e| Failure::new(Exit::Invalid, e.to_string()))
}

/// Loads and validates a scenario, printing every diagnostic; `Err` carries exit 3.
fn load(file: &std::path::Path) -> anyhow::Result<Scenario> {
    crate::scenario::load_file(file).map_err(|diags| {
        for d in &diags {
            errln!("{d}");
        }
        Failure::new(Exit::Invalid, format!("{} is not a valid scenario ({} error(s))", file.display(), diags.len()))
    })
}

/// `siege run FILE`.
pub(super) fn cmd_run(args: RunArgs) -> anyhow::Result<Exit> {
    let scenario = load(&args.file)?;
    let keys = match args.interactive {
        true => Some(super::keys::Keys::start().map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::ENOTTY) => "stdin is not a terminal".to_string(),
                _ => e.to_string(),
            };
            Failure::new(Exit::Invalid, format!("--interactive needs a terminal on stdin: {why}"))
        })?),
        false => None,
    };
    let spike = scenario.load.rate.per_second * 3.0;
    let connection = connection()?;
    let rt = runtime()?;
    rt.block_on(async move {
        let signals = Signals::take()?;
        let handle = start(RunRequest {
            scenario,
            source: args.file.display().to_string(),
            options: RunOptions { reports_dir: Some(args.reports.clone()), seed: args.seed },
            journal_dir: journal::dir(),
            failpoint: crate::util::failpoint_from_env(),
            connection,
        });
        signals.forward_to(handle.interrupter());
        let prompt = progress::Prompt::default();
        let display = match &keys {
            Some(_) => progress::spawn_to(
                handle.subscribe(),
                progress::Progress::new().with_keys(super::keys::LEGEND, prompt.clone()),
            ),
            None => progress::spawn(handle.subscribe()),
        };
        let (guard, serving) = match keys {
            Some((guard, actions)) => {
                let author = args.author.clone().or_else(|| std::env::var("USER").ok()).unwrap_or("instructor".into());
                (
                    Some(guard),
                    Some(tokio::spawn(serve_keys(actions, (handle.commander(), handle.bus()), author, spike, prompt))),
                )
            }
            None => (None, None),
        };
        let outcome = handle.outcome().await;
        if let Some(s) = serving {
            s.abort();
        }
        // The terminal as it was, before the verdict is printed.
        drop(guard);
        display.finish().await;
        Ok(match outcome {
            Ok(outcome) => {
                for w in &outcome.warnings {
                    errln!("siege: warning: {w}");
                }
                write_report(&args.reports, &outcome);
                outcome.record.verdict.outcome.exit()
            }
            Err(p) => {
                // The journal still knew what was injected; the handle reverted it.
                errln!("siege: internal error: {}; reverting from the journal", p.message);
                for l in &p.lines {
                    errln!("siege: {l}");
                }
                if p.revert_failed { Exit::RevertFailed } else { Exit::Internal }
            }
        })
    })
}

/// Writes the run's report into `reports/<scenario>-<time>/` and says where; a report that
/// cannot be written is said, loudly, and the verdict's exit code stands.
fn write_report(root: &std::path::Path, outcome: &crate::engine::RunOutcome) {
    let started = std::time::Instant::now();
    let written = crate::report::create_run_dir(root, &outcome.record)
        .and_then(|dir| crate::report::write_all(&outcome.record, &dir, &outcome.secrets).map(|()| dir));
    match written {
        Ok(dir) => errln!(
            "report: {} (written in {:.0} ms)",
            dir.join(crate::report::REPORT_MD).display(),
            started.elapsed().as_secs_f64() * 1000.0
        ),
        Err(e) => errln!("siege: error: the report could not be written: {e}"),
    }
}

/// Sends the run what the instructor's keys ask for, and says on the terminal what came of it.
async fn serve_keys(
    mut actions: tokio::sync::mpsc::UnboundedReceiver<super::keys::Action>,
    (run, bus): (Commander, crate::engine::bus::Bus),
    author: String,
    spike: f64,
    prompt: progress::Prompt,
) {
    use super::keys::Action;
    use crate::report::MarkKind;
    // `d` and `m` are about the fault injected last; a note about none.
    let last_fault = || {
        bus.history().iter().rev().find_map(|e| match &e.event {
            crate::engine::events::Event::FaultInjected { fault, .. } => Some(fault.clone()),
            _ => None,
        })
    };
    let mark = |kind, text: String| {
        let fault = if kind == MarkKind::Note { None } else { last_fault() };
        RunCommand::Mark { kind, author: author.clone(), text, fault }
    };
    let typing = |line: Option<String>| {
        if let Ok(mut p) = prompt.lock() {
            *p = line;
        }
    };
    while let Some(a) = actions.recv().await {
        let command = match a {
            Action::Inject(n) => RunCommand::Inject(FaultChoice::Numbered(n)),
            Action::Spike => RunCommand::SetRate { rate: spike, duration: std::time::Duration::from_secs(15) },
            Action::Detected => mark(MarkKind::Detected, String::new()),
            Action::Mitigated => mark(MarkKind::Mitigated, String::new()),
            Action::Note(text) => {
                typing(None);
                mark(MarkKind::Note, text)
            }
            Action::Typing(text) => {
                let line = format!("note (Enter adds it, Esc drops it)> {text}");
                eprint!("\r\x1b[2K{line}");
                typing(Some(line));
                continue;
            }
            Action::NoteDropped => {
                eprint!("\r\x1b[2K");
                typing(None);
                continue;
            }
            Action::Stop => RunCommand::Stop { reason: "q pressed on the terminal".into() },
        };
        // Each on its own: the next key (`q` above all) is not held up by an answer that
        // waits for an injection.
        let run = run.clone();
        tokio::spawn(async move {
            match run.send(command).await {
                Ok(done) => errln!("\r\x1b[2Ksiege: {done}"),
                Err(Refused::Ended) => {}
                Err(why) => errln!("\r\x1b[2Ksiege: {why}"),
            }
        });
    }
}

/// Ctrl-C, SIGTERM and SIGHUP: the first cancels the run (faults are reverted), the second skips waits.
/// SIGHUP (the terminal closed) counts as SIGTERM. Taken before the run starts, so that a run
/// never goes without them.
struct Signals([tokio::signal::unix::Signal; 3]);

impl Signals {
    fn take() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals([signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?, signal(SignalKind::hangup())?]))
    }

    fn forward_to(self, interrupts: Interrupter) {
        let Signals([mut int, mut term, mut hup]) = self;
        tokio::spawn(async move {
            loop {
                let why = tokio::select! {
                    _ = int.recv() => "SIGINT (Ctrl-C)",
                    _ = term.recv() => "SIGTERM",
                    _ = hup.recv() => "SIGHUP (the terminal closed)",
                };
                if interrupts.interrupt(why) {
                    errln!("\nsiege: {why} again: skipping waits; every fault is still reverted");
                }
            }
        });
    }
}

/// `siege recover`: reverts whatever killed runs left behind, according to the journal.
/// `siege recover --discard FILE`: removes one journal the user checked by hand.
pub(super) fn cmd_recover(args: RecoverArgs) -> anyhow::Result<Exit> {
    if let Some(file) = args.discard {
        let lines = journal::discard(&file).map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?;
        for l in lines {
            outln!("{l}");
        }
        return Ok(Exit::Passed);
    }
    let conn = connection()?;
    let rt = runtime()?;
    rt.block_on(async {
        let journal::Listing { journals: paths, skipped } = journal::scan()?;
        for l in &skipped {
            outln!("{l}");
        }
        if paths.is_empty() {
            outln!("nothing to recover: no run left faults behind ({})", journal::dir().display());
            return Ok(Exit::Passed);
        }
        let (lines, failed) = journal::recover_all(&paths, &conn).await;
        for l in lines {
            outln!("{l}");
        }
        Ok(if failed { Exit::RevertFailed } else { Exit::Passed })
    })
}

/// `siege plan FILE`: the resolved timeline and targets; injects nothing.
pub(super) fn cmd_plan(args: PlanArgs) -> anyhow::Result<Exit> {
    let mut sc = load(&args.file)?;
    let seed = args.seed.or(sc.seed).unwrap_or_else(crate::util::Rng::fresh_seed);
    let conn = connection()?;
    let rt = runtime()?;
    rt.block_on(async {
        // A lab started per run does not exist yet: describe selections instead of starting one.
        let backend = match &sc.target {
            Target::Lab(l) if l.control.is_none() => None,
            t => {
                let b = crate::backend::Backend::inspect(t, "plan", &conn)
                    .await
                    .map_err(|e| Failure::new(Exit::Precondition, e.to_string()))?;
                b.preflight(&sc).await.map_err(|e| Failure::new(Exit::Precondition, e.to_string()))?;
                Some(b)
            }
        };
        // The plan names the region it would act in, wherever that came from.
        if let (Some(b), Target::Aws(a)) = (&backend, &mut sc.target) {
            a.region = b.region().or(a.region.take());
        }
        let mut resolved = vec![];
        for f in &sc.faults {
            let mut frng = crate::util::Rng::derive(seed, &f.name);
            let line = match &backend {
                Some(b) => {
                    b.resolve(&f.step(), &mut frng)
                        .await
                        .map_err(|e| Failure::new(Exit::Precondition, e.to_string()))?
                        .summary
                }
                None => describe_selection(&sc, &f.kind),
            };
            resolved.push(line);
        }
        out!("{}", plan_text(&sc, seed, &resolved));
        if let Some(b) = &backend {
            outln!("{}", busy_line(b.lease_holder().await));
        }
        if let Some(b) = backend {
            let _ = b.shutdown().await;
        }
        Ok(Exit::Passed)
    })
}

/// What `siege plan` says about the target's lease: a run now would be refused while another
/// run holds it.
fn busy_line(holder: Result<Option<crate::backend::lease::Lease>, crate::backend::BackendError>) -> String {
    match holder {
        Ok(Some(l)) => format!(
            "target busy: held by {}; `siege run` would be refused now (exit 4)",
            l.describe(std::time::SystemTime::now())
        ),
        Ok(None) => "target free: no run holds its lease".into(),
        Err(e) => format!("target lease unknown: {e}"),
    }
}

fn describe_selection(sc: &Scenario, kind: &FaultKind) -> String {
    let n = match &sc.target {
        Target::Lab(l) => l.tasks as usize,
        Target::Aws(_) => 0,
    };
    match kind.selection() {
        Some(sel) => format!("{} of the {n} tasks of the run's lab, chosen at run time with the seed", sel.of(n)),
        None => kind.def().lab_hits.into(),
    }
}

/// The text `siege plan` prints.
pub fn plan_text(sc: &Scenario, seed: u64, resolved: &[String]) -> String {
    use crate::scenario::units::format_duration as d;
    let mut s = String::new();
    let target = match &sc.target {
        Target::Lab(l) => format!(
            "lab service {} ({} tasks{})",
            l.service,
            l.tasks,
            l.control.as_ref().map(|c| format!(", lab at {c}")).unwrap_or_else(|| ", a lab started for the run".into())
        ),
        Target::Aws(a) => format!(
            "aws {} cluster {} service {}",
            a.region.as_deref().unwrap_or("(region from the environment)"),
            a.cluster,
            a.service
        ),
    };
    s += &format!("plan: {} — {target}, seed {seed}\n", sc.name);
    s += &format!(
        "load: {:.0}/s on {} for {} (timeout {})\n",
        sc.load.rate.per_second,
        sc.load.url,
        d(sc.load.duration),
        d(sc.load.timeout)
    );
    let checks: Vec<String> = sc.steady_state.checks.iter().map(crate::observe::describe_check).collect();
    s += &format!("steady state: {} (held for {})\n", checks.join(", "), d(sc.recovery.hold));
    s += "timeline:\n";
    let mut rows: Vec<(std::time::Duration, String)> =
        vec![(std::time::Duration::ZERO, format!("load starts at {:.0}/s", sc.load.rate.per_second))];
    let (first, last) = crate::engine::disruption_span(sc);
    if let Some(f) = first {
        rows.push((
            std::time::Duration::from_secs_f64(f),
            "steady-state gate: the seconds before must hold, else nothing is injected (exit 4)".into(),
        ));
    }
    for st in &sc.load.stages {
        rows.push((st.at, format!("stage: rate → {:.0}/s for {}", st.rate.per_second, d(st.duration))));
        rows.push((st.at + st.duration, format!("stage ends: rate back to {:.0}/s", sc.load.rate.per_second)));
    }
    for (f, r) in sc.faults.iter().zip(resolved) {
        rows.push((f.at, format!("inject {} ({}): {r}", f.name, f.kind.type_name())));
        if let Some(dur) = f.duration {
            rows.push((f.at + dur, format!("revert {}", f.name)));
        }
    }
    if let Some(l) = last {
        let l = std::time::Duration::from_secs_f64(l);
        rows.push((l, format!("recovery clock starts: steady state must hold again by {}", d(l + sc.recovery.within))));
    }
    rows.push((sc.load.duration, "load ends; faults still active are reverted; verdict and report".into()));
    rows.sort_by_key(|(t, _)| *t);
    for (t, text) in rows {
        s += &format!("  {:>7}  {text}\n", d(t));
    }
    if !sc.manual.is_empty() {
        s += "manual catalog (never on the timeline: injected only when commanded during the run, by number):\n";
        for (i, m) in sc.manual.iter().enumerate() {
            s += &format!("  {:>2}. {}\n", i + 1, m.describe());
        }
    }
    if !sc.stop.is_empty() {
        s += "stop conditions (any aborts the run and reverts every fault):\n";
        for c in &sc.stop {
            let text = match c {
                crate::scenario::StopCondition::Threshold { text, .. } => text.clone(),
                crate::scenario::StopCondition::Alarm { name } => format!("CloudWatch alarm {name} in ALARM"),
                crate::scenario::StopCondition::MaxDuration { limit } => {
                    format!("the run takes longer than {}", d(*limit))
                }
            };
            s += &format!("  - {text}\n");
        }
    }
    s += "nothing was injected (plan only)\n";
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plan_says_what_a_fault_hits_on_a_lab_started_for_the_run() {
        let text = "name: t\ntarget: { lab: { tasks: 4 } }\nload: { url: /, rate: 10/s, duration: 100s }\nsteady_state: { error_rate: \"< 1%\" }\nrecovery: { within: 45s }\nfaults:\n  - { type: task-kill, at: 10s, select: 50% }\n  - { type: db-failover, at: 20s }\n  - { type: secret-drift, at: 30s }\n  - { type: redeploy, at: 40s }\n";
        let sc = crate::scenario::load_bytes("t.yaml", text.as_bytes(), std::path::Path::new("."))
            .unwrap_or_else(|d| panic!("{d:?}"));
        let hits: Vec<String> = sc.faults.iter().map(|f| super::describe_selection(&sc, &f.kind)).collect();
        assert_eq!(
            hits,
            [
                "2 of the 4 tasks of the run's lab, chosen at run time with the seed",
                "the lab database cluster's writer",
                "the lab's database secret",
                "every task of the lab service",
            ]
        );
    }
}
