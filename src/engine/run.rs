//! The dispatcher: one `select!` loop over the fault timeline, the load's per-second windows,
//! the samplers, stop conditions and interrupts. Everything it does is emitted as events. Runs
//! are started through [`super::handle::start`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bus::Publisher;
use super::command::{Envelope as CommandEnvelope, FaultChoice, Refused, Reply, RunCommand};
use super::events::{CancelReason, Envelope, Event, Phase, Upcoming};
use super::journal::Journal;
use super::record::{Finish, RecordBuilder};
use crate::backend::{Backend, BackendError, Injected, Resolved, Reverted, Sample};
use crate::load::{self, LoadPlan, LoadReport, Mode, Window};
use crate::observe::{self, Second, StopWatch};
use crate::report::{LoadTotals, RunRecord};
use crate::scenario::{Fault, FaultKind, Rate, Scenario, Stage, StopCondition};
use crate::util::Rng;

/// How a run is asked to stop from outside (Ctrl-C, SIGTERM, a daemon's stop): the first
/// interrupt cancels (faults are reverted, the report is written); any later one hurries (waits
/// are skipped; reverts still run). Cheap to clone; see [`super::RunHandle::interrupter`].
#[derive(Clone, Default)]
pub struct Interrupter {
    cancel: CancellationToken,
    hurry: CancellationToken,
    /// What interrupted first, for the report.
    reason: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Interrupter {
    /// Interrupts the run, `why` naming the cause (e.g. `SIGTERM`). Returns true when this
    /// interrupt hurries (it is not the first).
    pub fn interrupt(&self, why: &str) -> bool {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert_with(|| why.to_string());
        }
        if self.cancel.is_cancelled() {
            self.hurry.cancel();
            true
        } else {
            self.cancel.cancel();
            false
        }
    }

    fn reason(&self) -> String {
        self.reason.lock().ok().and_then(|r| r.clone()).unwrap_or_else(|| "signal".into())
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where `reports/<scenario>-<time>/` goes; `None` writes no files.
    pub reports_dir: Option<PathBuf>,
    /// Overrides the scenario's `seed`; neither picks a fresh one.
    pub seed: Option<u64>,
}

/// Everything a run needs, passed in rather than read from the process.
pub struct RunRequest {
    /// Validated.
    pub scenario: Scenario,
    /// Where the scenario came from, for the report and the runbook link: its file path as
    /// given, or a name such as `posted.yaml` (a runbook is then found from the working
    /// directory).
    pub source: String,
    pub options: RunOptions,
    /// The directory of the run's journal (`journal::dir()` for the CLI).
    pub journal_dir: PathBuf,
    /// A failpoint for tests of the failure paths (see [`crate::util::failpoint`]); debug
    /// builds only.
    pub failpoint: Option<String>,
    /// What connecting to the target takes from the environment, and where the secret values
    /// the run handles are registered (none of them reaches the event stream or the report).
    pub connection: crate::backend::Connection,
}

pub struct RunOutcome {
    pub record: RunRecord,
    pub report_dir: Option<PathBuf>,
}

/// Hands each event to the engine's own consumers, the record builder and the journal, then
/// publishes it on the run's bus in its envelope, with every registered secret value redacted
/// (the stream is an output like the reports). Only the journal's failure matters:
/// [`Emitter::emit`] reports it so the engine does not inject what it could not journal. Nothing
/// a bus subscriber does reaches the run.
pub(super) struct Emitter {
    record: RecordBuilder,
    journal: Journal,
    publisher: Publisher,
    run_id: String,
    seq: u64,
    load_started: Option<Instant>,
    secrets: crate::redact::Secrets,
}

impl Emitter {
    pub(super) fn new(run_id: String, journal: Journal, publisher: Publisher, secrets: crate::redact::Secrets) -> Self {
        Emitter { record: RecordBuilder::default(), journal, publisher, run_id, seq: 0, load_started: None, secrets }
    }

    fn emit(&mut self, event: Event) -> Result<(), String> {
        self.record.on_event(&event);
        let journaled = self.journal.on_event(&event).map_err(|e| e.to_string());
        let t = self.load_started.map(|s| (s.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
        let at = super::events::rfc3339_ms(SystemTime::now());
        let event = redacted(event, &self.secrets.values());
        self.publisher.publish(Envelope { run_id: self.run_id.clone(), seq: self.seq, at, t, event });
        self.seq += 1;
        journaled
    }
}

/// `event` without any of `secrets` in its strings.
fn redacted(event: Event, secrets: &[String]) -> Event {
    if secrets.is_empty() {
        return event;
    }
    let Ok(mut v) = serde_json::to_value(&event) else { return event };
    crate::redact::redact_json(&mut v, secrets);
    // Redaction keeps every field's type, so the value reads back; should it not, the event
    // is told without its details rather than with a secret.
    serde_json::from_value(v)
        .unwrap_or_else(|e| Event::Note { t: 0.0, text: format!("an event could not be redacted: {e}") })
}

enum Action {
    Gate,
    Stage(usize),
    Inject(usize),
    Revert(usize),
}

enum TaskDone {
    Prepared { fault: usize, resolved: Resolved, injected: Result<Injected, BackendError> },
    Injected { fault: usize, result: Result<(), BackendError> },
}

/// Awaits `step` (connecting, the preflight) while answering the commands that come meanwhile:
/// a stop interrupts the run, which has changed nothing yet; anything else is refused, as the
/// load has not started.
async fn answering<T>(
    step: impl Future<Output = T>,
    commands: &mut mpsc::Receiver<CommandEnvelope>,
    interrupts: &Interrupter,
    doing: &str,
) -> T {
    tokio::pin!(step);
    loop {
        tokio::select! {
            out = &mut step => return out,
            Some(CommandEnvelope { command, reply }) = commands.recv() => {
                let answer = match command {
                    RunCommand::Stop { reason } => {
                        interrupts.interrupt(&format!("stop command: {reason}"));
                        Ok("stopping the run before it started: nothing was changed".into())
                    }
                    _ => Err(Refused::NotNow(format!("the run is still {doing}; the load has not started"))),
                };
                let _ = reply.send(answer);
            }
        }
    }
}

fn classify(e: &BackendError) -> CancelReason {
    match e {
        // The verdict already says "precondition failed": the reason is the bare message.
        BackendError::Precondition(m) => CancelReason::Precondition(m.clone()),
        BackendError::NotFound(_) | BackendError::Unsupported { .. } => CancelReason::Precondition(e.to_string()),
        BackendError::Unreachable(_) | BackendError::Api(_) => CancelReason::Error(e.to_string()),
    }
}

/// [`classify`] while connecting to and checking the target: nothing has been changed yet, so
/// a target whose API does not answer is a precondition of the run that failed.
fn classify_start(e: &BackendError) -> CancelReason {
    match e {
        BackendError::Unreachable(m) => CancelReason::Precondition(m.clone()),
        e => classify(e),
    }
}

/// A timeline fault that takes effect this many seconds or more after its planned time is
/// noted as late (an injection takes milliseconds on the lab, a few seconds through FIS).
const LATE_NOTE_S: f64 = 1.0;

/// The highest rate a command may set: what the load driver's connection bound can carry on a
/// fast local target.
pub const MAX_COMMANDED_RATE: f64 = 100_000.0;

/// A new run id: `<scenario>-<UTC time>-<4 hex>`.
pub fn new_run_id(name: &str) -> String {
    let suffix = Rng::new(Rng::fresh_seed()).below(0x10000);
    format!("{name}-{}-{suffix:04x}", crate::util::compact_utc(SystemTime::now()))
}

/// The time (seconds since load start) of the first disruption — first fault or stage — and
/// the end of the last one.
pub fn disruption_span(sc: &Scenario) -> (Option<f64>, Option<f64>) {
    let starts = sc.faults.iter().map(|f| f.at).chain(sc.load.stages.iter().map(|s| s.at));
    let ends = sc.faults.iter().map(Fault::ends_at).chain(sc.load.stages.iter().map(|s| s.at + s.duration));
    (starts.min().map(|d| d.as_secs_f64()), ends.max().map(|d| d.as_secs_f64()))
}

/// Runs one validated scenario end to end. Never returns without having tried to revert every
/// fault it injected.
pub(super) async fn run(
    req: RunRequest,
    run_id: String,
    mut em: Emitter,
    interrupts: Interrupter,
    commands: mpsc::Receiver<CommandEnvelope>,
    connected: Option<Backend>,
) -> RunOutcome {
    let RunRequest { scenario, source, options: opts, journal_dir: _, failpoint, connection } = req;
    let secrets = connection.secrets.clone();
    let started_wall = SystemTime::now();
    let seed = opts.seed.or(scenario.seed).unwrap_or_else(Rng::fresh_seed);
    let t_start = Instant::now();
    let _ = em.emit(Event::PhaseChanged { t: 0.0, phase: Phase::Connecting });

    let mut ctx = Ctx {
        sc: &scenario,
        run_id: run_id.clone(),
        seed,
        history: vec![],
        cancel: None,
        revert_failures: vec![],
        load_report: None,
        t0: t_start,
        load_started: None,
        balancer: BTreeMap::new(),
        failpoint,
        faults: scenario.faults.clone(),
        span: disruption_span(&scenario),
        replies: BTreeMap::new(),
    };

    let mut commands = commands;
    let backend = match connected {
        Some(b) => Ok(b),
        None => {
            let connect = async {
                let connect = Backend::connect(&scenario.target, &run_id, &connection);
                tokio::pin!(connect);
                tokio::select! {
                    b = &mut connect => b,
                    _ = interrupts.cancel.cancelled() => {
                        // Connecting may have taken the target's lease: let it finish and
                        // release what it took (a second interrupt gives up on it).
                        tokio::select! {
                            b = &mut connect => if let Ok(b) = b {
                                let _ = b.shutdown().await;
                            },
                            _ = interrupts.hurry.cancelled() => {}
                        }
                        Err(BackendError::Precondition("interrupted while connecting".into()))
                    }
                }
            };
            answering(connect, &mut commands, &interrupts, "connecting to its target").await
        }
    };
    let backend = match backend {
        Ok(b) => Some(Arc::new(b)),
        Err(e) => {
            ctx.cancel = Some(if interrupts.cancel.is_cancelled() {
                CancelReason::Interrupted(interrupts.reason())
            } else {
                classify_start(&e)
            });
            None
        }
    };

    if let Some(backend) = &backend {
        let _ = em.emit(Event::RunStarted {
            run_id: run_id.clone(),
            scenario: source.clone(),
            seed,
            backend: backend.name().to_string(),
            locator: backend.locator(),
        });
        let _ = em.emit(Event::BackendReady { entry_url: backend.entry_url() });
        // The preflight mutates nothing: an interrupt cuts it short.
        let preflight = async {
            tokio::select! {
                r = backend.preflight(&scenario) => r,
                _ = interrupts.cancel.cancelled() => Ok(()),
            }
        };
        let preflight = answering(preflight, &mut commands, &interrupts, "checking its target").await;
        match preflight {
            // Stopped while checking: nothing was started.
            _ if interrupts.cancel.is_cancelled() => ctx.cancel = Some(CancelReason::Interrupted(interrupts.reason())),
            Ok(()) => ctx.drive(backend, &mut em, &interrupts, commands).await,
            Err(e) => ctx.cancel = Some(classify_start(&e)),
        }
    }
    if let Some(reason) = &ctx.cancel
        && !matches!(reason, CancelReason::StopCondition(_) | CancelReason::Interrupted(_))
        && ctx.history.is_empty()
    {
        let _ = em.emit(Event::Cancelled { t: 0.0, reason: reason.clone() });
    }

    let _ = em.emit(Event::PhaseChanged { t: ctx.now(), phase: Phase::Reporting });
    let reporting = Instant::now();
    let (first, last_end) = ctx.span;
    let load = ctx.load_report.take().unwrap_or_default();
    let duration_s = if load.duration_s > 0.0 { load.duration_s } else { ctx.now() };
    let runbook = scenario.runbook.as_ref().map(|r| runbook_link(&source, &opts, r));
    if let Some(start) = ctx.load_started {
        let start = start.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        if let Some(b) = &backend {
            fill_balancer(b, &mut ctx.balancer, &ctx.history, start).await;
        }
        align_balancer(&mut ctx.history, &ctx.balancer, start);
    }
    let record_builder = std::mem::take(&mut em.record);
    let record = record_builder.finish(Finish {
        scenario: &scenario,
        scenario_file: source.clone(),
        runbook,
        run_id: run_id.clone(),
        seed,
        started_at: crate::util::rfc3339(started_wall),
        finished_at: crate::util::rfc3339(SystemTime::now()),
        history: &ctx.history,
        cancel: ctx.cancel.clone(),
        revert_failures: ctx.revert_failures.clone(),
        first_disruption: first,
        last_disruption_end: last_end,
        load: LoadTotals {
            requests: load.requests,
            rps: load.rps,
            errors: load.errors,
            missed: load.missed,
            latency_ms: load.latency_ms,
        },
        duration_s,
    });
    let report_dir = match &opts.reports_dir {
        Some(root) => match crate::report::create_run_dir(root, &record) {
            Ok(dir) => {
                if let Err(e) = crate::report::write_all(&record, &dir, &secrets) {
                    eprintln!("siege: could not write the report: {e}");
                }
                Some(dir)
            }
            Err(e) => {
                eprintln!("siege: could not create the report directory: {e}");
                None
            }
        },
        None => None,
    };
    let report_ms = reporting.elapsed().as_secs_f64() * 1000.0;
    let _ = em.emit(Event::RunFinished {
        outcome: record.verdict.outcome,
        reason: record.verdict.reason.clone(),
        report_dir: report_dir.clone(),
        report_ms,
    });
    if let Some(b) = backend {
        match Arc::try_unwrap(b) {
            Ok(b) => {
                if let Err(e) = b.shutdown().await {
                    eprintln!("warning: shutting the backend down: {e}");
                }
            }
            Err(_) => eprintln!("warning: the backend is still in use; not shut down"),
        }
    }
    RunOutcome { record, report_dir }
}

/// The runbook path as seen from the run's report directory (`<reports>/<run>/`), so the
/// markdown link works on GitHub and locally; absolute when the two share no root.
fn runbook_link(source: &str, opts: &RunOptions, runbook: &str) -> String {
    let base = Path::new(source).parent().unwrap_or(Path::new(""));
    let target = absolute(&base.join(runbook));
    match &opts.reports_dir {
        Some(root) => relative_to(&absolute(&root.join("run")), &target),
        None => target,
    }
    .display()
    .to_string()
}

fn absolute(p: &Path) -> PathBuf {
    normalize(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
}

/// `to` as a path relative to the directory `from` (both absolute and normalised).
fn relative_to(from: &Path, to: &Path) -> PathBuf {
    let (f, t): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    // Sharing only the root (`/`), a relative path would climb out of everything: absolute.
    if common <= 1 {
        return to.to_path_buf();
    }
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

struct Ctx<'a> {
    sc: &'a Scenario,
    run_id: String,
    /// Each fault draws its selections from its own generator ([`Rng::derive`]), so that the
    /// plan and the run pick the same tasks whatever the order of the faults.
    seed: u64,
    history: Vec<Second>,
    cancel: Option<CancelReason>,
    revert_failures: Vec<String>,
    load_report: Option<LoadReport>,
    t0: Instant,
    /// Wall-clock time of `t0` once the load started, to find the balancer's seconds.
    load_started: Option<SystemTime>,
    /// The balancer's per-second figures the samples brought, by Unix second.
    balancer: BTreeMap<u64, BalancerSecond>,
    failpoint: Option<String>,
    /// Every fault of the run: the scenario's timeline, then the manual ones commanded, in the
    /// order they were commanded (indexes are stable).
    faults: Vec<Fault>,
    /// The start of the first disruption and the end of the last one, seconds since the load
    /// started: the scenario's, moved by commanded faults and rate changes.
    span: (Option<f64>, Option<f64>),
    /// The answers owed to inject commands, by fault index, until the fault is in (or refused).
    replies: BTreeMap<usize, oneshot::Sender<Reply>>,
}

type BalancerSecond = crate::backend::BalancerFigures;

/// Adds the balancer seconds no sample brought (a sample carries only the latest one, and
/// samples are a little over a second apart), from the balancer's own history. The balancer
/// completes the second of the last window just after the load ends: waits for it briefly.
async fn fill_balancer(
    backend: &Backend,
    balancer: &mut BTreeMap<u64, BalancerSecond>,
    history: &[Second],
    load_start: f64,
) {
    let Some(last) = history.last().map(|s| (load_start + f64::from(s.window.second)).round() as u64) else {
        return;
    };
    for attempt in 0..8 {
        let seconds = backend.balancer_seconds(load_start as u64 - 1).await;
        if seconds.is_empty() {
            return;
        }
        balancer.extend(seconds);
        if balancer.contains_key(&last) || attempt == 7 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Gives each second of `history` the balancer figures of that same second. A sample carries
/// the balancer's last complete second when it was taken, which is one or two seconds before the
/// end of the load window it is joined to; `balancer` holds every balancer second the samples
/// brought, by Unix second, and `load_start` is the Unix time the load started. The balancer
/// second that overlaps a window most starts at the window's start, rounded. A window whose
/// balancer second no sample brought has no balancer figures rather than another second's;
/// samples whose figures are not per second (AWS: per minute) are left as they are.
pub(super) fn align_balancer(history: &mut [Second], balancer: &BTreeMap<u64, BalancerSecond>, load_start: f64) {
    for s in history {
        let Some(sample) = s.sample.as_mut().filter(|x| x.lb_second.is_some()) else { continue };
        let at = (load_start + f64::from(s.window.second)).round() as u64;
        let found = balancer.get(&at);
        (sample.lb_rps, sample.lb_5xx_rate, sample.lb_response_ms) = found.copied().unwrap_or_default();
        sample.lb_second = found.map(|_| at);
    }
}

impl Ctx<'_> {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn cancel(&mut self, em: &mut Emitter, reason: CancelReason) {
        if self.cancel.is_none() {
            let _ = em.emit(Event::Cancelled { t: self.now(), reason: reason.clone() });
            self.cancel = Some(reason);
        }
    }

    /// Load, timeline, observation, then revert. Returns when the load has ended or the run was
    /// cancelled, with every fault reverted (or its failure recorded).
    async fn drive(
        &mut self,
        backend: &Arc<Backend>,
        em: &mut Emitter,
        interrupts: &Interrupter,
        mut commands: mpsc::Receiver<CommandEnvelope>,
    ) {
        let sc = self.sc;
        let base = backend.entry_url();
        let url = if sc.load.url.starts_with("http://") || sc.load.url.starts_with("https://") {
            sc.load.url.clone()
        } else {
            format!("{}/{}", base.trim_end_matches('/'), sc.load.url.trim_start_matches('/'))
        };
        let url: http::Uri = match url.parse() {
            Ok(u) => u,
            Err(e) => return self.cancel(em, CancelReason::Precondition(format!("load url {url}: {e}"))),
        };
        let plan = LoadPlan {
            url,
            mode: Mode::Open { rate: sc.load.rate.per_second, stages: sc.load.stages.clone(), max_connections: 512 },
            duration: sc.load.duration,
            timeout: sc.load.timeout,
            insecure_tls: sc.load.insecure_tls,
        };
        // A certificate the load cannot trust fails every request: say why now, before a
        // baseline of nothing but TLS errors.
        if let Err(e) = load::check_certificate(&plan).await {
            return self.cancel(
                em,
                CancelReason::Precondition(format!(
                    "load: {e}; `load.insecure_tls: true` in the scenario accepts a self-signed certificate"
                )),
            );
        }

        let stop_all = CancellationToken::new();
        // However `drive` ends (a panic included), the load stops with it.
        let _stop_load = stop_all.clone().drop_guard();
        let (win_tx, mut win_rx) = mpsc::unbounded_channel::<Window>();
        let (sample_tx, mut sample_rx) = mpsc::channel::<Result<Sample, BackendError>>(4);
        let (alarm_tx, mut alarm_rx) = mpsc::channel::<Result<String, BackendError>>(4);

        let setup_s = self.t0.elapsed().as_secs_f64();
        self.t0 = Instant::now();
        em.load_started = Some(self.t0);
        self.load_started = Some(SystemTime::now());
        let _ = em.emit(Event::LoadStarted { setup_s });
        let rate_control = load::RateControl::default();
        let mut load_task = backend.drive_load(plan, stop_all.clone(), win_tx, rate_control.clone());
        let _ = em.emit(Event::PhaseChanged { t: 0.0, phase: Phase::Baseline });

        let mut actions: Vec<(Duration, Action)> = vec![];
        let (mut first, mut last_end) = self.span;
        match first {
            Some(f) => actions.push((Duration::from_secs_f64(f), Action::Gate)),
            None => actions.push((sc.recovery.hold + Duration::from_secs(1), Action::Gate)),
        }
        for (i, s) in sc.load.stages.iter().enumerate() {
            actions.push((s.at, Action::Stage(i)));
        }
        // A fault that lasts is reverted `for` after it took effect (its injection completed),
        // not after its planned time: an injection that takes a while (a FIS experiment that
        // starts minutes late) must not eat its own window. Its revert goes on the timeline then.
        for (i, f) in sc.faults.iter().enumerate() {
            actions.push((f.at, Action::Inject(i)));
        }
        // Stable sort: at equal times the gate runs first, reverts after injections.
        actions.sort_by_key(|(at, a)| (*at, matches!(a, Action::Revert(_))));
        let mut next = 0usize;

        let alarms: Vec<String> = sc
            .stop
            .iter()
            .filter_map(|c| if let StopCondition::Alarm { name } = c { Some(name.clone()) } else { None })
            .collect();
        let max_duration = sc.stop.iter().find_map(|c| match c {
            StopCondition::MaxDuration { limit } => Some(*limit),
            _ => None,
        });

        let mut latest_sample: Option<Sample> = None;
        let mut stop_watch = StopWatch::default();
        let mut tasks: JoinSet<TaskDone> = JoinSet::new();
        let mut active: Vec<(usize, Injected)> = vec![];
        let mut injecting: Vec<(usize, Injected)> = vec![];
        let mut broken = false;
        let mut gate_passed = false;
        let mut first_second = first.map(|f| f.floor() as u32);
        // The gate judges the seconds before it; the last of them closes at the gate's own time,
        // a few milliseconds before its window arrives. Set while the gate waits for it.
        let mut gate_waits_until: Option<Instant> = None;

        let backend_ref: &Backend = backend;
        let sample_loop = async {
            loop {
                let s = backend_ref.sample().await;
                if sample_tx.send(s).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let alarm_loop = async {
            if alarms.is_empty() {
                return std::future::pending::<()>().await;
            }
            loop {
                for a in &alarms {
                    let r = match backend_ref.alarm_firing(a).await {
                        Ok(true) => Ok(a.clone()),
                        Ok(false) => continue,
                        Err(e) => Err(e),
                    };
                    if alarm_tx.send(r).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        };
        tokio::pin!(sample_loop);
        tokio::pin!(alarm_loop);
        let mut alarm_errors_noted = false;
        let mut load_done = false;
        let mut load_joined = false;
        let mut recovery_announced = false;

        loop {
            let next_at = gate_waits_until.or_else(|| actions.get(next).map(|(at, _)| self.t0 + *at));
            let deadline = max_duration.map(|d| self.t0 + d);
            tokio::select! {
                biased;
                _ = interrupts.cancel.cancelled() => {
                    let why = interrupts.reason();
                    self.cancel(em, CancelReason::Interrupted(why));
                    break;
                }
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                    let limit = crate::scenario::units::format_duration(max_duration.unwrap_or_default());
                    self.cancel(em, CancelReason::StopCondition(format!("max_duration {limit} reached")));
                    break;
                }
                Some(a) = alarm_rx.recv() => match a {
                    Ok(name) => {
                        self.cancel(em, CancelReason::StopCondition(format!("alarm {name} is in ALARM")));
                        break;
                    }
                    Err(e) => if !alarm_errors_noted {
                        alarm_errors_noted = true;
                        let _ = em.emit(Event::Note { t: self.now(), text: format!("alarm check failed: {e}") });
                    }
                },
                Some(CommandEnvelope { command, reply }) = commands.recv() => match command {
                    RunCommand::Stop { reason } => {
                        let _ = reply.send(Ok("stopping the run: every fault is reverted".into()));
                        self.cancel(em, CancelReason::Interrupted(format!("stop command: {reason}")));
                        break;
                    }
                    RunCommand::Mark { kind, author, text } => {
                        let t = self.now();
                        let mark = crate::report::Mark { t, kind, author, text };
                        let _ = reply.send(Ok(format!("marked {}", mark.describe())));
                        let _ = em.emit(Event::MarkAdded { t, mark });
                    }
                    RunCommand::SetRate { rate, duration } => {
                        let answer = self.rate_stage(rate, duration, gate_passed).map(|stage| {
                            let (at, end) = (stage.at.as_secs_f64(), (stage.at + stage.duration).as_secs_f64());
                            rate_control.set(stage);
                            first = first.or(Some(at));
                            first_second = first_second.or(Some(at.floor() as u32));
                            last_end = Some(last_end.map_or(end, |e| e.max(end)));
                            if recovery_announced {
                                recovery_announced = false;
                                let _ = em.emit(Event::PhaseChanged { t: self.now(), phase: Phase::Faults });
                            }
                            let _ = em.emit(Event::StageStarted { t: self.now(), rate });
                            format!("rate {rate}/s for {}", crate::scenario::units::format_duration(duration))
                        });
                        let _ = reply.send(answer);
                    }
                    RunCommand::Inject(choice) => match self.commanded_fault(choice, gate_passed) {
                        Ok(f) => {
                            let fault = self.faults.len();
                            let rng = Rng::derive(self.seed, &f.name);
                            self.faults.push(f.clone());
                            self.replies.insert(fault, reply);
                            spawn_prepare(&mut tasks, backend, f, rng, &self.run_id, fault);
                        }
                        Err(refused) => {
                            let _ = reply.send(Err(refused));
                        }
                    },
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    let done = match done {
                        Ok(d) => d,
                        Err(e) => {
                            self.cancel(em, CancelReason::Error(format!("a fault task failed: {e}")));
                            break;
                        }
                    };
                    match done {
                        TaskDone::Prepared { fault, resolved, injected } => match injected {
                            Ok(injected) => {
                                let f = self.faults[fault].clone();
                                let journaled = em.emit(Event::FaultInjecting {
                                    t: self.now(), fault: f.name.clone(), resolved: resolved.clone(), injected: injected.clone(),
                                });
                                if let Err(e) = journaled {
                                    self.cancel(em, CancelReason::Error(format!("cannot write the journal, not injecting {}: {e}", f.name)));
                                    break;
                                }
                                injecting.push((fault, injected.clone()));
                                let (b, f, run_id) = (backend.clone(), f, self.run_id.clone());
                                tasks.spawn(async move {
                                    let result = b.inject(&f, &injected, &run_id).await;
                                    TaskDone::Injected { fault, result }
                                });
                            }
                            Err(e) => {
                                // A commanded fault the target will not take is refused; the run
                                // goes on. Nothing was changed (prepare mutates nothing).
                                if let Some(reply) = self.replies.remove(&fault) {
                                    // Its name is free again for the next injection.
                                    let name = std::mem::take(&mut self.faults[fault].name);
                                    let _ = em.emit(Event::Note { t: self.now(), text: format!("{name} not injected: {e}") });
                                    let _ = reply.send(Err(Refused::Target(e.to_string())));
                                    continue;
                                }
                                let _ = em.emit(Event::FaultInjectFailed { t: self.now(), fault: self.faults[fault].name.clone(), error: e.to_string() });
                                self.cancel(em, classify(&e));
                                break;
                            }
                        },
                        TaskDone::Injected { fault, result } => {
                            let Some(pos) = injecting.iter().position(|(i, _)| *i == fault) else { continue };
                            let (_, injected) = injecting.remove(pos);
                            let f = self.faults[fault].clone();
                            let reply = self.replies.remove(&fault);
                            match result {
                                Ok(()) => {
                                    let summary = summary_of(&em.record, &f.name);
                                    let t = self.now();
                                    let end = t + (f.ends_at() - f.at).as_secs_f64();
                                    // It lasts from now, when it took effect: reverted when its
                                    // time is up.
                                    if let Some(d) = f.duration {
                                        insert_action(&mut actions, next, Duration::from_secs_f64(t) + d, Action::Revert(fault));
                                    }
                                    let late = t - f.at.as_secs_f64();
                                    if reply.is_none() && late >= LATE_NOTE_S {
                                        // A timeline fault that took effect late moves the end
                                        // of its disruption with it, and the report says so.
                                        last_end = Some(last_end.map_or(end, |e| e.max(end)));
                                        let planned = crate::scenario::units::format_duration(f.at);
                                        let late = crate::scenario::units::format_duration(Duration::from_secs_f64(late.round()));
                                        let _ = em.emit(Event::Note {
                                            t,
                                            text: format!("{}: started {late} late (planned at t+{planned}); it is timed from when it took effect", f.name),
                                        });
                                    }
                                    if let Some(reply) = reply {
                                        // A commanded fault starts now, on the clock the record
                                        // uses: it moves the recovery clock.
                                        self.faults[fault].at = Duration::from_secs_f64(t);
                                        first = first.or(Some(t));
                                        first_second = first_second.or(Some(t.floor() as u32));
                                        last_end = Some(last_end.map_or(end, |e| e.max(end)));
                                        if recovery_announced {
                                            recovery_announced = false;
                                            let _ = em.emit(Event::PhaseChanged { t, phase: Phase::Faults });
                                        }
                                        let _ = reply.send(Ok(format!("injected {}: {summary}", f.name)));
                                    }
                                    let _ = em.emit(Event::FaultInjected {
                                        t, fault: f.name.clone(), kind: injected.kind.clone(), summary,
                                    });
                                    crate::util::failpoint(self.failpoint.as_deref(), "after-inject");
                                    if needs_revert(&f) && !backend.settled_once_injected(&injected) {
                                        active.push((fault, injected));
                                    } else {
                                        // Nothing to undo (a kill, a redeploy, an Aurora failover
                                        // once its new writer is in): close the journal entry.
                                        let _ = em.emit(Event::FaultSettled { t: self.now(), fault: f.name.clone() });
                                    }
                                }
                                Err(e) => {
                                    if let Some(reply) = reply {
                                        let _ = reply.send(Err(Refused::Failed(e.to_string())));
                                    }
                                    // Half-injected: keep it for the revert pass.
                                    active.push((fault, injected));
                                    let _ = em.emit(Event::FaultInjectFailed { t: self.now(), fault: f.name.clone(), error: e.to_string() });
                                    self.cancel(em, classify(&e));
                                    break;
                                }
                            }
                        }
                    }
                }
                Some(s) = sample_rx.recv() => match s {
                    Ok(s) => {
                        if let Some(at) = s.lb_second {
                            self.balancer.insert(at, (s.lb_rps, s.lb_5xx_rate, s.lb_response_ms));
                        }
                        for ev in &s.events {
                            let _ = em.emit(Event::ServiceEvent { t: self.now(), text: ev.clone() });
                        }
                        latest_sample = Some(Sample { events: vec![], ..s });
                    }
                    Err(e) => {
                        let _ = em.emit(Event::Note { t: self.now(), text: format!("sampling the target failed: {e}") });
                    }
                },
                w = win_rx.recv(), if !load_done => match w {
                    Some(w) => {
                        let closed_at = f64::from(w.second) + 1.0;
                        if gate_passed && !recovery_announced && tasks.is_empty() && last_end.is_some_and(|e| closed_at >= e) {
                            recovery_announced = true;
                            let _ = em.emit(Event::PhaseChanged { t: self.now(), phase: Phase::Recovery });
                        }
                        if let Some(reason) = self.on_second(w, &latest_sample, em, &mut stop_watch, &mut broken, first_second, gate_passed, &actions[next..]) {
                            self.cancel(em, reason);
                            break;
                        }
                        if gate_waits_until.is_some() && self.baseline_complete(actions[next].0) {
                            gate_waits_until = None;
                            next += 1;
                            if let Err(reason) = self.gate(em) {
                                self.cancel(em, reason);
                                break;
                            }
                            gate_passed = true;
                        }
                        // Past the deadline without recovery the verdict cannot change: end the
                        // drill now rather than keep a broken service under load.
                        if let Some(end) = last_end
                            && recovery_announced
                            && closed_at >= end + (sc.recovery.within + sc.recovery.hold).as_secs_f64()
                            && observe::recovered_at(&sc.steady_state.checks, &self.history, end.ceil() as u32, sc.recovery.hold).is_none()
                        {
                            let _ = em.emit(Event::Note {
                                t: self.now(),
                                text: "the steady state was not restored by the recovery deadline; ending the run".into(),
                            });
                            break;
                        }
                    }
                    None => load_done = true,
                },
                _ = async { tokio::time::sleep_until(next_at.unwrap_or_else(Instant::now)).await }, if next_at.is_some() => {
                    let (at, action) = &actions[next];
                    if matches!(action, Action::Gate) && gate_waits_until.is_none() && !self.baseline_complete(*at) {
                        // Wait for the window closing now, but not forever: without it the gate
                        // judges what there is.
                        gate_waits_until = Some(Instant::now() + Duration::from_secs(1));
                        continue;
                    }
                    gate_waits_until = None;
                    next += 1;
                    match action {
                        Action::Gate => {
                            if let Err(reason) = self.gate(em) {
                                self.cancel(em, reason);
                                break;
                            }
                            gate_passed = true;
                        }
                        Action::Stage(i) => {
                            let _ = em.emit(Event::StageStarted { t: self.now(), rate: sc.load.stages[*i].rate.per_second });
                        }
                        Action::Inject(i) => {
                            let f = self.faults[*i].clone();
                            let rng = Rng::derive(self.seed, &f.name);
                            spawn_prepare(&mut tasks, backend, f, rng, &self.run_id, *i);
                        }
                        Action::Revert(i) => {
                            if let Some(pos) = active.iter().position(|(f, _)| f == i) {
                                let (fi, inj) = active.remove(pos);
                                self.revert_one(backend, em, fi, &inj, interrupts).await;
                            }
                        }
                    }
                }
                r = &mut load_task => {
                    match r {
                        Ok(Ok(report)) => self.load_report = Some(report),
                        // The target's address or its TLS trust is a precondition of the run.
                        Ok(Err(e @ (load::LoadError::Resolve { .. } | load::LoadError::Tls(_)))) => {
                            self.cancel(em, CancelReason::Precondition(format!("load: {e}")))
                        }
                        Ok(Err(e)) => self.cancel(em, CancelReason::Error(format!("load: {e}"))),
                        Err(e) => self.cancel(em, CancelReason::Error(format!("the load driver failed: {e}"))),
                    }
                    load_joined = true;
                    break;
                }
                _ = &mut sample_loop => {}
                _ = &mut alarm_loop => {}
            }
        }

        // No more commands: whoever waits for an answer is told the run has ended.
        drop(commands);
        self.replies.clear();
        self.span = (first, last_end);

        // Revert pass: stop injecting, then undo everything still active, newest first. An
        // injection under way is waited for (for a while) rather than cut short: its request may
        // already be on its way, and a revert that overtook it would leave the fault in place
        // with its journal entry closed. Preparations mutate nothing; they end with the rest.
        let _ = em.emit(Event::PhaseChanged { t: self.now(), phase: Phase::Reverting });
        let wait = if interrupts.hurry.is_cancelled() { Duration::from_secs(5) } else { Duration::from_secs(30) };
        let settle_until = Instant::now() + wait;
        while !injecting.is_empty() {
            let Ok(Some(done)) = tokio::time::timeout_at(settle_until, tasks.join_next()).await else {
                // Not done in time: what is left is reverted anyway.
                break;
            };
            if let Ok(TaskDone::Injected { fault, result: Ok(()) }) = done
                && let Some(pos) = injecting.iter().position(|(i, _)| *i == fault)
            {
                let (fi, inj) = injecting.remove(pos);
                active.push((fi, inj));
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // Injections cut short may have half-run: revert them too (revert is idempotent).
        active.append(&mut injecting);
        while let Some((fi, inj)) = active.pop() {
            self.revert_one(backend, em, fi, &inj, interrupts).await;
        }

        let stopped_at = self.t0.elapsed().as_secs_f64();
        stop_all.cancel();
        if !load_joined {
            match tokio::time::timeout(Duration::from_secs(10), &mut load_task).await {
                Ok(Ok(Ok(report))) => self.load_report = Some(report),
                Ok(Ok(Err(e))) => {
                    let _ = em.emit(Event::Note { t: self.now(), text: format!("load: {e}") });
                }
                _ => load_task.abort(),
            }
        }
        // Windows that closed while the loop was ending still belong to the history; the last
        // one, cut short by the stop, does not (two requests in it would read as a rate).
        while let Ok(w) = win_rx.try_recv() {
            if load_joined || f64::from(w.second) + 1.0 <= stopped_at {
                self.push_second(w, &latest_sample);
            }
        }
    }

    /// The fault an inject command asks for, named uniquely within the run (a second injection
    /// of `kill-one` is `kill-one#2`), at the time of the command; or why it is refused.
    fn commanded_fault(&self, choice: FaultChoice, gate_passed: bool) -> Result<Fault, Refused> {
        if !gate_passed {
            return Err(Refused::NotNow(
                "the baseline is still being measured: faults can be injected once the steady state held (phase faults)"
                    .into(),
            ));
        }
        let catalog = &self.sc.manual;
        let names = || catalog.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
        let m = match choice {
            FaultChoice::Named(name) => catalog.iter().find(|m| m.name == name).cloned().ok_or_else(|| {
                Refused::UnknownFault(match catalog.is_empty() {
                    true => format!("no manual fault {name}: the scenario has no manual catalog"),
                    false => format!("no manual fault {name}; the catalog has {}", names()),
                })
            })?,
            FaultChoice::Numbered(n) => catalog.get(n.wrapping_sub(1)).cloned().ok_or_else(|| {
                Refused::UnknownFault(match catalog.len() {
                    0 => format!("no manual fault {n}: the scenario has no manual catalog"),
                    len => format!("no manual fault {n}; the catalog has 1 to {len}: {}", names()),
                })
            })?,
            FaultChoice::Given(m) => m,
        };
        let fault = m.at(self.t0.elapsed());
        self.fits_before_the_end(fault.ends_at() - fault.at, &format!("{} lasts", m.name))?;
        let taken = |name: &str| self.faults.iter().any(|f| f.name == name);
        let mut name = m.name.clone();
        let mut k = 1;
        while taken(&name) {
            k += 1;
            name = format!("{}#{k}", m.name);
        }
        Ok(Fault { name, ..fault })
    }

    /// Whether a disruption of `lasts` from now leaves the recovery (`within` and `hold`) time
    /// to be judged before the load ends; refused otherwise, as the verdict could only be
    /// "not restored".
    fn fits_before_the_end(&self, lasts: Duration, what: &str) -> Result<(), Refused> {
        use crate::scenario::units::format_duration as d;
        let (now, sc) = (self.t0.elapsed(), self.sc);
        let needed = lasts + sc.recovery.within + sc.recovery.hold;
        match sc.load.duration.checked_sub(now) {
            Some(left) if left >= needed => Ok(()),
            left => Err(Refused::NotNow(format!(
                "the load ends in {}: {what} {} and its recovery needs {} (within) + {} (hold) more",
                d(left.unwrap_or_default()),
                d(lasts),
                d(sc.recovery.within),
                d(sc.recovery.hold)
            ))),
        }
    }

    /// The stage a rate command sets, from now; or why it is refused.
    fn rate_stage(&self, rate: f64, duration: Duration, gate_passed: bool) -> Result<Stage, Refused> {
        if !gate_passed {
            return Err(Refused::NotNow(
                "the baseline is still being measured: the rate can be changed once the steady state held".into(),
            ));
        }
        if !rate.is_finite() || !(0.0..=MAX_COMMANDED_RATE).contains(&rate) {
            return Err(Refused::Invalid(format!("a rate from 0 to {MAX_COMMANDED_RATE}/s, not {rate}")));
        }
        if duration.is_zero() {
            return Err(Refused::Invalid("the rate change needs a duration longer than zero".into()));
        }
        self.fits_before_the_end(duration, "the rate change lasts")?;
        Ok(Stage { at: self.t0.elapsed(), rate: Rate { per_second: rate }, duration, ramp: Duration::ZERO })
    }

    /// Whether every window that closes by `gate_at` (seconds since the load started) is in.
    fn baseline_complete(&self, gate_at: Duration) -> bool {
        match (gate_at.as_secs() as u32).checked_sub(1) {
            Some(last) => self.history.last().is_some_and(|s| s.window.second >= last),
            None => true,
        }
    }

    /// The steady-state gate: the `recovery.hold` seconds before the first disruption must hold.
    fn gate(&mut self, em: &mut Emitter) -> Result<(), CancelReason> {
        let sc = self.sc;
        let hold = sc.recovery.hold.as_secs().max(1) as usize;
        let span = &self.history[self.history.len().saturating_sub(hold)..];
        let outcomes = observe::evaluate(&sc.steady_state.checks, span);
        let held = span.len() >= hold && observe::all_hold(&outcomes);
        let detail = describe_outcomes(&outcomes);
        let _ = em.emit(Event::BaselineChecked { t: self.now(), held, detail: detail.clone() });
        if !held {
            return Err(CancelReason::Precondition(if span.len() < hold {
                format!("only {} second(s) of baseline before the first fault; {} needed", span.len(), hold)
            } else {
                format!("steady state did not hold before any fault: {detail}")
            }));
        }
        let _ = em.emit(Event::PhaseChanged { t: self.now(), phase: Phase::Faults });
        Ok(())
    }

    fn push_second(&mut self, w: Window, sample: &Option<Sample>) {
        if self.history.last().is_some_and(|s| s.window.second >= w.second) {
            return;
        }
        self.history.push(Second { window: w, sample: sample.clone() });
    }

    #[allow(clippy::too_many_arguments)]
    fn on_second(
        &mut self,
        w: Window,
        sample: &Option<Sample>,
        em: &mut Emitter,
        stop_watch: &mut StopWatch,
        broken: &mut bool,
        first_second: Option<u32>,
        gate_passed: bool,
        upcoming: &[(Duration, Action)],
    ) -> Option<CancelReason> {
        let sc = self.sc;
        self.push_second(w.clone(), sample);
        let last = self.history.last()?;
        let own = observe::evaluate(&sc.steady_state.checks, std::slice::from_ref(last));
        let steady = observe::all_hold(&own);
        let next = upcoming.first().map(|(at, a)| {
            let what = match a {
                Action::Gate => "steady-state gate".to_string(),
                Action::Stage(i) => format!("stage {:.0}/s", sc.load.stages[*i].rate.per_second),
                Action::Inject(i) => format!("inject {}", self.faults[*i].name),
                Action::Revert(i) => format!("revert {}", self.faults[*i].name),
            };
            Upcoming { at: at.as_secs_f64(), what }
        });
        let _ = em.emit(Event::SecondClosed { window: w.clone(), sample: sample.clone(), steady, next });

        if gate_passed && first_second.is_some_and(|f| w.second >= f) {
            if !steady && !*broken {
                *broken = true;
                let _ = em.emit(Event::SteadyStateBroken { t: f64::from(w.second), detail: describe_outcomes(&own) });
            } else if *broken {
                let from = self
                    .history
                    .iter()
                    .rev()
                    .take_while(|s| {
                        observe::all_hold(&observe::evaluate(&sc.steady_state.checks, std::slice::from_ref(*s)))
                    })
                    .count();
                let hold = sc.recovery.hold.as_secs().max(1) as usize;
                if from >= hold {
                    *broken = false;
                    let at = self.history[self.history.len() - from].window.second;
                    let _ = em.emit(Event::SteadyStateRestored { t: f64::from(at) });
                }
            }
        }
        stop_watch.observe(&sc.stop, &self.history).map(CancelReason::StopCondition)
    }

    async fn revert_one(
        &mut self,
        backend: &Backend,
        em: &mut Emitter,
        fi: usize,
        inj: &Injected,
        interrupts: &Interrupter,
    ) {
        let name = self.faults[fi].name.clone();
        let limit = if interrupts.hurry.is_cancelled() { Duration::from_secs(15) } else { Duration::from_secs(120) };
        let first = async {
            crate::util::failpoint_wait(self.failpoint.as_deref(), "slow-revert").await;
            backend.undo(inj).await
        };
        let result = tokio::select! {
            r = tokio::time::timeout(limit, first) => r.map_err(|_| BackendError::Api(format!("timed out after {}s", limit.as_secs()))).and_then(|r| r),
            // A second Ctrl-C while a long revert waits: retry once with the short limit.
            _ = interrupts.hurry.cancelled(), if !interrupts.hurry.is_cancelled() => {
                tokio::time::timeout(Duration::from_secs(15), backend.undo(inj)).await
                    .map_err(|_| BackendError::Api("timed out after 15s".into())).and_then(|r| r)
            }
        };
        match result {
            Ok(Reverted::Undone) => {
                let _ = em.emit(Event::FaultReverted { t: self.now(), fault: name });
            }
            // Nothing was left to undo: said as such, never as a revert.
            Ok(Reverted::NothingLeft) => {
                let _ = em.emit(Event::FaultSettled { t: self.now(), fault: name });
            }
            Err(e) => {
                self.revert_failures.push(format!("{name}: {e}"));
                let _ = em.emit(Event::FaultRevertFailed { t: self.now(), fault: name, error: e.to_string() });
            }
        }
    }
}

/// Resolves `f`'s targets and reads what undoes it, in the background; mutates nothing.
fn spawn_prepare(
    tasks: &mut JoinSet<TaskDone>,
    backend: &Arc<Backend>,
    f: Fault,
    mut rng: Rng,
    run_id: &str,
    fault: usize,
) {
    let (b, run_id) = (backend.clone(), run_id.to_string());
    tasks.spawn(async move {
        let (resolved, injected) = match b.resolve(&f, &mut rng).await {
            Ok(mut r) => {
                let inj = b.prepare(&f, &r, &run_id).await;
                if let Ok(inj) = &inj
                    && let Some(summary) = b.describe_prepared(&r, inj)
                {
                    r.summary = summary;
                }
                (r, inj)
            }
            Err(e) => (Resolved::default(), Err(e)),
        };
        TaskDone::Prepared { fault, resolved, injected }
    });
}

/// Puts `action` at `at` among the actions still to come (from `next`), after those due at the
/// same time.
fn insert_action(actions: &mut Vec<(Duration, Action)>, next: usize, at: Duration, action: Action) {
    let pos = next + actions[next..].partition_point(|(t, _)| *t <= at);
    actions.insert(pos, (at, action));
}

fn needs_revert(f: &Fault) -> bool {
    FaultKind::def(&f.kind).reverted()
}

fn summary_of(record: &RecordBuilder, fault: &str) -> String {
    record.faults.iter().rev().find(|f| f.name == fault).map(|f| f.summary.clone()).unwrap_or_default()
}

fn describe_outcomes(outcomes: &[observe::CheckOutcome]) -> String {
    outcomes
        .iter()
        .map(|o| {
            let v = o.value.map(|v| observe::format_value(o.check.metric, v)).unwrap_or_else(|| "not observed".into());
            let want =
                format!("{} {}", o.check.cmp.op.symbol(), observe::format_value(o.check.metric, o.check.cmp.value));
            format!("{} {v} ({} {want})", o.check.metric.name(), if o.ok { "ok," } else { "want" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(scenario: &str, reports: &str) -> String {
        let opts = RunOptions { reports_dir: Some(PathBuf::from(reports)), seed: None };
        runbook_link(scenario, &opts, "../runbooks/task-kill.md")
    }

    #[test]
    fn published_events_carry_no_secret_value_and_the_journal_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (bus, publisher) = super::super::bus::Bus::new(16);
        let secrets = crate::redact::Secrets::default();
        let mut em = Emitter::new("r1".into(), Journal::in_dir(dir.path().to_owned()), publisher, secrets.clone());
        secrets.register("hunter2-in-events");
        let started = Event::RunStarted {
            run_id: "r1".into(),
            scenario: "s.yaml".into(),
            seed: 1,
            backend: "lab".into(),
            locator: serde_json::json!({}),
        };
        em.emit(started).unwrap();
        let injected = Injected {
            fault: "drift".into(),
            kind: "secret-drift".into(),
            targets: vec!["db".into()],
            undo: serde_json::json!({"previous": "hunter2-in-events"}),
        };
        em.emit(Event::FaultInjecting { t: 1.0, fault: "drift".into(), resolved: Resolved::default(), injected })
            .unwrap();
        em.emit(Event::Note { t: 2.0, text: "connect failed: password hunter2-in-events".into() }).unwrap();
        let published = serde_json::to_string(&bus.history().iter().map(|e| &**e).collect::<Vec<_>>()).unwrap();
        assert!(!published.contains("hunter2"), "{published}");
        assert!(published.contains("password [redacted]"), "{published}");
        assert_eq!(bus.history().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
        let journal = std::fs::read_to_string(dir.path().join("r1.jsonl")).unwrap();
        assert!(journal.contains("hunter2-in-events"), "the journal keeps what a revert needs: {journal}");
    }

    #[test]
    fn runbook_links_are_relative_to_the_report_directory() {
        assert_eq!(link("scenarios/task-kill.yaml", "reports"), "../../runbooks/task-kill.md");
        assert_eq!(link("/srv/gd/scenarios/task-kill.yaml", "/srv/gd/reports"), "../../runbooks/task-kill.md");
        assert_eq!(link("/srv/gd/scenarios/task-kill.yaml", "/tmp/out"), "/srv/gd/runbooks/task-kill.md");
        let cwd = std::env::current_dir().unwrap();
        let abs = cwd.join("scenarios/task-kill.yaml");
        assert_eq!(link(abs.to_str().unwrap(), "reports"), "../../runbooks/task-kill.md");
    }
}
