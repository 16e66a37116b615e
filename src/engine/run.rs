//! One run end to end: connecting to its target and checking it, the dispatcher
//! ([`dispatch`]: the load, the timeline, observation and the revert pass), then the run record.
//! Everything it does is emitted as events; it writes no file and prints nothing. Runs are
//! started through [`super::handle::start`].

mod dispatch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::bus::Publisher;
use super::command::{Envelope as CommandEnvelope, FaultChoice, Refused, Reply, RunCommand};
use super::events::{CancelReason, Envelope, Event, Phase};
pub use super::interrupt::Interrupter;
use super::journal::Journal;
use super::record::{Finish, RecordBuilder};
use crate::backend::{Backend, BackendError, Injected, Resolved, Reverted, Sample};
use crate::faults::Step;
use crate::load::{LoadReport, Window};
use crate::observe::{self, Second};
use crate::report::{LoadTotals, RunRecord};
use crate::scenario::{Fault, FaultKind, Rate, Scenario, Stage};
use crate::util::Rng;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where the consumer writes `reports/<scenario>-<time>/`: the record's runbook link is
    /// relative to it. The engine itself writes no file.
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
    /// The secret values the run registered: every file written of the record redacts them.
    pub secrets: crate::redact::Secrets,
    /// What went wrong once the verdict was in (shutting the target's connection down), for
    /// whoever consumes the run to say.
    pub warnings: Vec<String>,
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
    let backend = match connect(&scenario.target, &run_id, &connection, connected, &interrupts, &mut commands).await {
        Ok(b) => Some(Arc::new(b)),
        Err(reason) => {
            ctx.cancel = Some(reason);
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
            Ok(()) => dispatch::drive(&mut ctx, backend, &mut em, &interrupts, commands).await,
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
    let about = About { source: &source, opts: &opts, run_id: &run_id, seed, started_wall };
    let record = record_of(&mut ctx, &mut em, backend.as_deref(), &about).await;
    let report_ms = reporting.elapsed().as_secs_f64() * 1000.0;
    let _ = em.emit(Event::RunFinished {
        outcome: record.verdict.outcome,
        reason: record.verdict.reason.clone(),
        report_ms,
    });
    let warnings = match backend {
        Some(b) => shut_down(b).await,
        None => vec![],
    };
    RunOutcome { record, secrets, warnings }
}

/// Connects to the run's target (unless a connection is given) while answering commands; why
/// the run cannot go on otherwise.
async fn connect(
    target: &crate::scenario::Target,
    run_id: &str,
    connection: &crate::backend::Connection,
    connected: Option<Backend>,
    interrupts: &Interrupter,
    commands: &mut mpsc::Receiver<CommandEnvelope>,
) -> Result<Backend, CancelReason> {
    if let Some(b) = connected {
        return Ok(b);
    }
    let connect = async {
        let connect = Backend::connect(target, run_id, connection);
        tokio::pin!(connect);
        tokio::select! {
            b = &mut connect => b,
            _ = interrupts.cancel.cancelled() => {
                // Connecting may have taken the target's lease: let it finish and release what
                // it took (a second interrupt gives up on it).
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
    answering(connect, commands, interrupts, "connecting to its target").await.map_err(|e| {
        if interrupts.cancel.is_cancelled() {
            CancelReason::Interrupted(interrupts.reason())
        } else {
            classify_start(&e)
        }
    })
}

/// What the record says of the run besides what happened in it.
struct About<'s> {
    source: &'s str,
    opts: &'s RunOptions,
    run_id: &'s str,
    seed: u64,
    started_wall: SystemTime,
}

/// The run's record, once it has ended: the balancer's seconds joined to the load's, then
/// everything the events and the history say.
async fn record_of(ctx: &mut Ctx<'_>, em: &mut Emitter, backend: Option<&Backend>, about: &About<'_>) -> RunRecord {
    let scenario = ctx.sc;
    let (first, last_end) = ctx.span;
    let load = ctx.load_report.take().unwrap_or_default();
    let duration_s = if load.duration_s > 0.0 { load.duration_s } else { ctx.now() };
    let runbook = scenario.runbook.as_ref().map(|r| runbook_link(about.source, about.opts, r));
    if let Some(start) = ctx.load_started {
        let start = start.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        if let Some(b) = backend {
            super::balancer::fill_balancer(b, &mut ctx.balancer, &ctx.history, start).await;
        }
        super::balancer::align_balancer(&mut ctx.history, &ctx.balancer, start);
    }
    let record_builder = std::mem::take(&mut em.record);
    record_builder.finish(Finish {
        scenario,
        scenario_file: about.source.to_string(),
        runbook,
        run_id: about.run_id.to_string(),
        seed: about.seed,
        started_at: crate::util::rfc3339(about.started_wall),
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
    })
}

/// Shuts the target's connection down (a lab started for the run stops); what went wrong.
async fn shut_down(backend: Arc<Backend>) -> Vec<String> {
    match Arc::try_unwrap(backend) {
        Ok(b) => match b.shutdown().await {
            Ok(()) => vec![],
            Err(e) => vec![format!("shutting the target's connection down: {e}")],
        },
        Err(_) => vec!["the target's connection is still in use; not shut down".into()],
    }
}

/// The runbook path as seen from the run's report directory (`<reports>/<run>/`), so the
/// markdown link works on GitHub and locally; absolute when the two share no root.
fn runbook_link(source: &str, opts: &RunOptions, runbook: &str) -> String {
    let base = Path::new(source).parent().unwrap_or(Path::new(""));
    let target = crate::util::absolute(&base.join(runbook));
    match &opts.reports_dir {
        Some(root) => crate::util::relative_to(&crate::util::absolute(&root.join("run")), &target),
        None => target,
    }
    .display()
    .to_string()
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
    balancer: BTreeMap<u64, super::balancer::BalancerSecond>,
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
        let hold = hold_seconds(sc);
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
        Ok(())
    }

    fn push_second(&mut self, w: Window, sample: &Option<Sample>) {
        if self.history.last().is_some_and(|s| s.window.second >= w.second) {
            return;
        }
        self.history.push(Second { window: w, sample: sample.clone() });
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
    step: Step,
    mut rng: Rng,
    run_id: &str,
    fault: usize,
) {
    let (b, run_id) = (backend.clone(), run_id.to_string());
    tasks.spawn(async move {
        let (resolved, injected) = match b.resolve(&step, &mut rng).await {
            Ok(mut r) => {
                let inj = b.prepare(&step, &r, &run_id).await;
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

/// How many steady seconds in a row hold the steady state: `recovery.hold` in whole seconds, at
/// least one. The gate, the restore and the health banner all count with it.
fn hold_seconds(sc: &Scenario) -> usize {
    sc.recovery.hold.as_secs().max(1) as usize
}

/// The checks that failed, in words: `error_rate 98% (want < 1%)`.
fn failing(outcomes: &[observe::CheckOutcome]) -> String {
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.ok).cloned().collect();
    describe_outcomes(&failed)
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
            kind: "redeploy".into(),
            targets: vec!["db".into()],
            undo: crate::backend::UndoRecord::Nothing(crate::backend::undo::Settles::Ecs {
                previous_deployment: Some("hunter2-in-events".into()),
            }),
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
