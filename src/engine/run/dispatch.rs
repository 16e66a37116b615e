//! One run's dispatcher, from the start of its load to the end of its revert pass: the run's
//! [`Phase`] with one transition function ([`Dispatcher::enter`]), the timeline of actions, and
//! one handler per input of the `select!` loop (an interrupt, the time limit, an alarm, a
//! command, a fault task that finished, a sample, a load window, a timeline action that is due,
//! the end of the load). Each handler says whether the loop goes on ([`Flow`]); every way out
//! goes through the revert pass.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::command::{Envelope as CommandEnvelope, Refused, RunCommand};
use super::super::events::{CancelReason, Event, Health, HealthState, Phase, Upcoming};
use super::{
    Action, Ctx, Emitter, Interrupter, LATE_NOTE_S, TaskDone, classify, describe_outcomes, failing, hold_seconds,
    insert_action, needs_revert, spawn_prepare, summary_of,
};
use crate::backend::{Backend, BackendError, Injected, Sample};
use crate::load::{self, LoadPlan, LoadReport, Mode, Window};
use crate::observe::{self, StopWatch};
use crate::scenario::StopCondition;
use crate::scenario::units::format_duration;
use crate::util::Rng;
use crate::vocab::MarkKind;

/// Whether the loop goes on after a handler.
#[must_use]
pub(super) enum Flow {
    Go,
    /// The loop ends (the reason, if any, is recorded): on to the revert pass.
    End,
}

/// The actions of the run's timeline in time order, and the next one due.
struct Timeline {
    actions: Vec<(Duration, Action)>,
    next: usize,
    /// The gate judges the seconds before it; the last of them closes at the gate's own time, a
    /// few milliseconds before its window arrives. Set while the gate waits for it.
    gate_waits_until: Option<Instant>,
}

impl Timeline {
    fn new(cx: &Ctx) -> Timeline {
        let sc = cx.sc;
        let mut actions: Vec<(Duration, Action)> = vec![];
        match cx.span.0 {
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
        Timeline { actions, next: 0, gate_waits_until: None }
    }

    /// When the loop next wakes for the timeline.
    fn next_at(&self, t0: Instant) -> Option<Instant> {
        self.gate_waits_until.or_else(|| self.actions.get(self.next).map(|(at, _)| t0 + *at))
    }

    fn upcoming(&self) -> &[(Duration, Action)] {
        &self.actions[self.next..]
    }
}

/// The span of the run's disruptions, seconds since the load started: the scenario's, moved by
/// commanded faults, rate changes and faults that took effect late.
#[derive(Clone, Copy)]
struct Span {
    first: Option<f64>,
    first_second: Option<u32>,
    last_end: Option<f64>,
}

impl Span {
    /// A disruption from `at` to `end`.
    fn add(&mut self, at: f64, end: f64) {
        self.first = self.first.or(Some(at));
        self.first_second = self.first_second.or(Some(at.floor() as u32));
        self.extend(end);
    }

    fn extend(&mut self, end: f64) {
        self.last_end = Some(self.last_end.map_or(end, |e| e.max(end)));
    }
}

pub(super) struct Dispatcher<'r, 'a> {
    cx: &'r mut Ctx<'a>,
    em: &'r mut Emitter,
    backend: &'r Arc<Backend>,
    interrupts: &'r Interrupter,
    phase: Phase,
    timeline: Timeline,
    span: Span,
    rate_control: load::RateControl,
    latest_sample: Option<Sample>,
    stop_watch: StopWatch,
    /// The steady state is broken now (after the first disruption).
    broken: bool,
    /// The service's health as of the last closed second (every second, the gate or not).
    health: Option<Health>,
    /// Faults being prepared or injected.
    tasks: JoinSet<TaskDone>,
    /// Faults in place, to revert.
    active: Vec<(usize, Injected)>,
    /// Faults whose injection is under way.
    injecting: Vec<(usize, Injected)>,
    alarm_errors_noted: bool,
    load_done: bool,
    load_joined: bool,
}

/// The channels and tasks the loop reads, set up by [`drive`].
struct Inputs {
    windows: mpsc::UnboundedReceiver<Window>,
    samples: mpsc::Receiver<Result<Sample, BackendError>>,
    alarms: mpsc::Receiver<Result<String, BackendError>>,
    load: tokio::task::JoinHandle<Result<LoadReport, load::LoadError>>,
}

/// Load, timeline, observation, then revert. Returns when the load has ended or the run was
/// cancelled, with every fault reverted (or its failure recorded).
pub(super) async fn drive(
    cx: &mut Ctx<'_>,
    backend: &Arc<Backend>,
    em: &mut Emitter,
    interrupts: &Interrupter,
    mut commands: mpsc::Receiver<CommandEnvelope>,
) {
    let mut plan = match load_plan(cx, backend).await {
        Ok(p) => p,
        Err(reason) => return cx.cancel(em, reason),
    };
    let stop_all = CancellationToken::new();
    // However `drive` ends (a panic included), the load stops with it.
    let _stop_load = stop_all.clone().drop_guard();
    let (win_tx, windows) = mpsc::unbounded_channel::<Window>();
    let (sample_tx, samples) = mpsc::channel::<Result<Sample, BackendError>>(4);
    let (alarm_tx, alarms) = mpsc::channel::<Result<String, BackendError>>(4);

    let setup_s = cx.t0.elapsed().as_secs_f64();
    cx.t0 = Instant::now();
    // The failed and slow requests' send times on the run's clock, which faults are timed on.
    plan.notice.epoch = Some(cx.t0.into_std());
    em.load_started = Some(cx.t0);
    cx.load_started = Some(SystemTime::now());
    let _ = em.emit(Event::LoadStarted { setup_s });
    let rate_control = load::RateControl::default();
    let load = backend.drive_load(plan, stop_all.clone(), win_tx, rate_control.clone());
    let mut inputs = Inputs { windows, samples, alarms, load };
    let alarm_names: Vec<String> = cx
        .sc
        .stop
        .iter()
        .filter_map(|c| if let StopCondition::Alarm { name } = c { Some(name.clone()) } else { None })
        .collect();
    let sampling = sample_loop(backend, sample_tx);
    let alarming = alarm_loop(backend, &alarm_names, alarm_tx);
    tokio::pin!(sampling);
    tokio::pin!(alarming);

    let mut d = Dispatcher::new(cx, em, backend, interrupts, rate_control);
    d.enter(Phase::Baseline);
    let max_duration = d.cx.sc.stop.iter().find_map(|c| match c {
        StopCondition::MaxDuration { limit } => Some(*limit),
        _ => None,
    });
    loop {
        let next_at = d.timeline.next_at(d.cx.t0);
        let deadline = max_duration.map(|m| d.cx.t0 + m);
        let flow = tokio::select! {
            biased;
            _ = interrupts.cancel.cancelled() => d.on_interrupt(),
            _ = sleep_until(deadline), if deadline.is_some() => d.on_time_limit(max_duration.unwrap_or_default()),
            Some(a) = inputs.alarms.recv() => d.on_alarm(a),
            Some(c) = commands.recv() => d.on_command(c),
            Some(done) = d.tasks.join_next(), if !d.tasks.is_empty() => d.on_task(done),
            Some(s) = inputs.samples.recv() => d.on_sample(s),
            w = inputs.windows.recv(), if !d.load_done => d.on_window(w),
            _ = sleep_until(next_at), if next_at.is_some() => d.on_timeline().await,
            r = &mut inputs.load => d.on_load_end(r),
            _ = &mut sampling => Flow::Go,
            _ = &mut alarming => Flow::Go,
        };
        if let Flow::End = flow {
            break;
        }
    }
    // No more commands: whoever waits for an answer is told the run has ended.
    drop(commands);
    d.cx.replies.clear();
    d.cx.span = (d.span.first, d.span.last_end);
    d.revert_pass().await;
    let stopped_at = d.cx.t0.elapsed().as_secs_f64();
    stop_all.cancel();
    d.finish_load(&mut inputs, stopped_at).await;
}

async fn sleep_until(at: Option<Instant>) {
    tokio::time::sleep_until(at.unwrap_or_else(Instant::now)).await
}

/// The load of the scenario against the target's entry point; a URL or a certificate the load
/// cannot use is a failed precondition, said before a baseline of nothing but errors.
async fn load_plan(cx: &Ctx<'_>, backend: &Backend) -> Result<LoadPlan, CancelReason> {
    let sc = cx.sc;
    let base = backend.entry_url();
    let url = if sc.load.url.starts_with("http://") || sc.load.url.starts_with("https://") {
        sc.load.url.clone()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), sc.load.url.trim_start_matches('/'))
    };
    let uri: http::Uri = url.parse().map_err(|e| CancelReason::Precondition(format!("load url {url}: {e}")))?;
    let plan = LoadPlan {
        url: uri,
        mode: Mode::Open { rate: sc.load.rate.per_second, stages: sc.load.stages.clone(), max_connections: 512 },
        duration: sc.load.duration,
        timeout: sc.load.timeout,
        insecure_tls: sc.load.insecure_tls,
        notice: load::Notice { epoch: None, slow_after: observe::latency_bound(&sc.steady_state.checks) },
    };
    load::check_certificate(&plan).await.map_err(|e| {
        CancelReason::Precondition(format!(
            "load: {e}; `load.insecure_tls: true` in the scenario accepts a self-signed certificate"
        ))
    })?;
    Ok(plan)
}

/// A sample of the target a second, for as long as the loop reads them.
async fn sample_loop(backend: &Backend, tx: mpsc::Sender<Result<Sample, BackendError>>) {
    loop {
        let s = backend.sample().await;
        if tx.send(s).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The stop conditions' alarms, each checked every two seconds: a firing one (or a failed check).
async fn alarm_loop(backend: &Backend, alarms: &[String], tx: mpsc::Sender<Result<String, BackendError>>) {
    if alarms.is_empty() {
        return std::future::pending::<()>().await;
    }
    loop {
        for a in alarms {
            let r = match backend.alarm_firing(a).await {
                Ok(true) => Ok(a.clone()),
                Ok(false) => continue,
                Err(e) => Err(e),
            };
            if tx.send(r).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

impl<'r, 'a> Dispatcher<'r, 'a> {
    fn new(
        cx: &'r mut Ctx<'a>,
        em: &'r mut Emitter,
        backend: &'r Arc<Backend>,
        interrupts: &'r Interrupter,
        rate_control: load::RateControl,
    ) -> Self {
        let (first, last_end) = cx.span;
        Dispatcher {
            timeline: Timeline::new(cx),
            span: Span { first, first_second: first.map(|f| f.floor() as u32), last_end },
            cx,
            em,
            backend,
            interrupts,
            phase: Phase::Connecting,
            rate_control,
            latest_sample: None,
            stop_watch: StopWatch::default(),
            broken: false,
            health: None,
            tasks: JoinSet::new(),
            active: vec![],
            injecting: vec![],
            alarm_errors_noted: false,
            load_done: false,
            load_joined: false,
        }
    }

    /// The one transition function of a run's phase: connecting → baseline → faults ⇄ recovery,
    /// and from anywhere → reverting. Each change is an event; entering the phase the run is in
    /// is nothing.
    fn enter(&mut self, to: Phase) {
        use Phase::*;
        if self.phase == to {
            return;
        }
        let allowed = matches!(
            (self.phase, to),
            (Connecting, Baseline) | (Baseline, Faults) | (Faults, Recovery) | (Recovery, Faults) | (_, Reverting)
        );
        debug_assert!(allowed, "a run does not go from {:?} to {to:?}", self.phase);
        self.phase = to;
        let t = if to == Baseline { 0.0 } else { self.cx.now() };
        let _ = self.em.emit(Event::PhaseChanged { t, phase: to });
    }

    /// The steady state held before the first disruption: faults and rate changes may come.
    fn gate_passed(&self) -> bool {
        matches!(self.phase, Phase::Faults | Phase::Recovery)
    }

    /// A disruption begins: a run in recovery is back in its faults.
    fn disrupted(&mut self) {
        if self.phase == Phase::Recovery {
            self.enter(Phase::Faults);
        }
    }

    /// Ends the loop for `reason` (the first reason is the one recorded).
    fn stop(&mut self, reason: CancelReason) -> Flow {
        self.cx.cancel(self.em, reason);
        Flow::End
    }

    fn note(&mut self, text: String) {
        let _ = self.em.emit(Event::Note { t: self.cx.now(), text });
    }

    fn on_interrupt(&mut self) -> Flow {
        let why = self.interrupts.reason();
        self.stop(CancelReason::Interrupted(why))
    }

    fn on_time_limit(&mut self, limit: Duration) -> Flow {
        self.stop(CancelReason::StopCondition(format!("max_duration {} reached", format_duration(limit))))
    }

    fn on_alarm(&mut self, alarm: Result<String, BackendError>) -> Flow {
        match alarm {
            Ok(name) => self.stop(CancelReason::StopCondition(format!("alarm {name} is in ALARM"))),
            Err(e) => {
                if !self.alarm_errors_noted {
                    self.alarm_errors_noted = true;
                    self.note(format!("alarm check failed: {e}"));
                }
                Flow::Go
            }
        }
    }

    fn on_command(&mut self, CommandEnvelope { command, reply }: CommandEnvelope) -> Flow {
        match command {
            RunCommand::Stop { reason } => {
                let _ = reply.send(Ok("stopping the run: every fault is reverted".into()));
                return self.stop(CancelReason::Interrupted(format!("stop command: {reason}")));
            }
            RunCommand::Mark { kind, author, text, fault } => {
                let answer = self.mark(kind, author, text, fault);
                let _ = reply.send(answer);
            }
            RunCommand::MoveMark { id, fault } => {
                let answer = self.move_mark(id, fault);
                let _ = reply.send(answer);
            }
            RunCommand::SetRate { rate, duration } => {
                let answer = self.cx.rate_stage(rate, duration, self.gate_passed()).map(|stage| {
                    let (at, end) = (stage.at.as_secs_f64(), (stage.at + stage.duration).as_secs_f64());
                    self.rate_control.set(stage);
                    self.span.add(at, end);
                    self.disrupted();
                    let _ = self.em.emit(Event::StageStarted { t: self.cx.now(), rate });
                    format!("rate {rate}/s for {}", format_duration(duration))
                });
                let _ = reply.send(answer);
            }
            RunCommand::Inject(choice) => match self.cx.commanded_fault(choice, self.gate_passed()) {
                Ok(f) => {
                    let fault = self.cx.faults.len();
                    let rng = Rng::derive(self.cx.seed, &f.name);
                    self.cx.faults.push(f.clone());
                    self.cx.replies.insert(fault, reply);
                    spawn_prepare(&mut self.tasks, self.backend, f.step(), rng, &self.cx.run_id, fault);
                }
                Err(refused) => {
                    let _ = reply.send(Err(refused));
                }
            },
        }
        Flow::Go
    }

    fn on_task(&mut self, done: Result<TaskDone, JoinError>) -> Flow {
        match done {
            Err(e) => self.stop(CancelReason::Error(format!("a fault task failed: {e}"))),
            Ok(TaskDone::Prepared { fault, resolved, injected: Ok(injected) }) => {
                let f = self.cx.faults[fault].clone();
                let journaled = self.em.emit(Event::FaultInjecting {
                    t: self.cx.now(),
                    fault: f.name.clone(),
                    resolved,
                    injected: injected.clone(),
                });
                if let Err(e) = journaled {
                    let why = format!("cannot write the journal, not injecting {}: {e}", f.name);
                    return self.stop(CancelReason::Error(why));
                }
                self.injecting.push((fault, injected.clone()));
                let (b, run_id, step) = (self.backend.clone(), self.cx.run_id.clone(), f.step());
                self.tasks.spawn(async move {
                    let result = b.inject(&step, &injected, &run_id).await;
                    TaskDone::Injected { fault, result }
                });
                Flow::Go
            }
            Ok(TaskDone::Prepared { fault, injected: Err(e), .. }) => self.on_refused(fault, e),
            Ok(TaskDone::Injected { fault, result }) => {
                let Some(pos) = self.injecting.iter().position(|(i, _)| *i == fault) else { return Flow::Go };
                let (_, injected) = self.injecting.remove(pos);
                match result {
                    Ok(()) => self.on_injected(fault, injected),
                    Err(e) => {
                        if let Some(reply) = self.cx.replies.remove(&fault) {
                            let _ = reply.send(Err(Refused::Failed(e.to_string())));
                        }
                        // Half-injected: keep it for the revert pass.
                        self.active.push((fault, injected));
                        let name = self.cx.faults[fault].name.clone();
                        let _ = self.em.emit(Event::FaultInjectFailed {
                            t: self.cx.now(),
                            fault: name,
                            error: e.to_string(),
                        });
                        self.stop(classify(&e))
                    }
                }
            }
        }
    }

    /// A fault the target would not take (prepare mutates nothing): a commanded one is refused
    /// and the run goes on; a timeline one ends the run.
    fn on_refused(&mut self, fault: usize, e: BackendError) -> Flow {
        if let Some(reply) = self.cx.replies.remove(&fault) {
            // Its name is free again for the next injection.
            let name = std::mem::take(&mut self.cx.faults[fault].name);
            self.note(format!("{name} not injected: {e}"));
            let _ = reply.send(Err(Refused::Target(e.to_string())));
            return Flow::Go;
        }
        let name = self.cx.faults[fault].name.clone();
        let _ = self.em.emit(Event::FaultInjectFailed { t: self.cx.now(), fault: name, error: e.to_string() });
        self.stop(classify(&e))
    }

    /// A fault took effect: it lasts from now, its revert goes on the timeline, and a commanded
    /// one (or a late one) moves the span of the disruptions.
    fn on_injected(&mut self, fault: usize, injected: Injected) -> Flow {
        let f = self.cx.faults[fault].clone();
        let reply = self.cx.replies.remove(&fault);
        let summary = summary_of(&self.em.record, &f.name);
        let t = self.cx.now();
        let end = t + (f.ends_at() - f.at).as_secs_f64();
        if let Some(d) = f.duration {
            let tl = &mut self.timeline;
            insert_action(&mut tl.actions, tl.next, Duration::from_secs_f64(t) + d, Action::Revert(fault));
        }
        let late = t - f.at.as_secs_f64();
        if reply.is_none() {
            // A timeline fault that took effect late moves the end of its disruption with it.
            self.span.extend(end);
        }
        if reply.is_none() && late >= LATE_NOTE_S {
            // Late enough to matter: the report says so.
            let (planned, late) = (format_duration(f.at), format_duration(Duration::from_secs_f64(late.round())));
            let text = format!(
                "{}: started {late} late (planned at t+{planned}); it is timed from when it took effect",
                f.name
            );
            let _ = self.em.emit(Event::Note { t, text });
        }
        if let Some(reply) = reply {
            // A commanded fault starts now, on the clock the record uses: it moves the recovery
            // clock.
            self.cx.faults[fault].at = Duration::from_secs_f64(t);
            self.span.add(t, end);
            self.disrupted();
            let _ = reply.send(Ok(format!("injected {}: {summary}", f.name)));
        }
        let _ = self.em.emit(Event::FaultInjected { t, fault: f.name.clone(), kind: injected.kind.clone(), summary });
        crate::util::failpoint(self.cx.failpoint.as_deref(), "after-inject");
        if needs_revert(&f) && !self.backend.settled_once_injected(&injected) {
            self.active.push((fault, injected));
        } else {
            // Nothing to undo (a kill, a redeploy, an Aurora failover once its new writer is in):
            // close the journal entry.
            let _ = self.em.emit(Event::FaultSettled { t: self.cx.now(), fault: f.name.clone() });
        }
        Flow::Go
    }

    fn on_sample(&mut self, s: Result<Sample, BackendError>) -> Flow {
        match s {
            Ok(s) => {
                if let Some(at) = s.lb_second {
                    self.cx.balancer.insert(at, (s.lb_rps, s.lb_5xx_rate, s.lb_response_ms));
                }
                for ev in &s.events {
                    let _ = self.em.emit(Event::ServiceEvent { t: self.cx.now(), text: ev.clone() });
                }
                self.latest_sample = Some(Sample { events: vec![], ..s });
            }
            Err(e) => self.note(format!("sampling the target failed: {e}")),
        }
        Flow::Go
    }

    fn on_window(&mut self, w: Option<Window>) -> Flow {
        let Some(w) = w else {
            self.load_done = true;
            return Flow::Go;
        };
        let closed_at = f64::from(w.second) + 1.0;
        if self.phase == Phase::Faults && self.tasks.is_empty() && self.span.last_end.is_some_and(|e| closed_at >= e) {
            self.enter(Phase::Recovery);
        }
        if let Some(reason) = self.on_second(w) {
            return self.stop(reason);
        }
        if self.timeline.gate_waits_until.is_some()
            && self.cx.baseline_complete(self.timeline.actions[self.timeline.next].0)
        {
            self.timeline.gate_waits_until = None;
            self.timeline.next += 1;
            if let Flow::End = self.gate() {
                return Flow::End;
            }
        }
        // Past the deadline without recovery the verdict cannot change: end the drill now rather
        // than keep a broken service under load.
        let sc = self.cx.sc;
        if let Some(end) = self.span.last_end
            && self.phase == Phase::Recovery
            && closed_at >= end + (sc.recovery.within + sc.recovery.hold).as_secs_f64()
            && observe::restored_after(
                &sc.steady_state.checks,
                &self.cx.history,
                self.span.first_second.unwrap_or(0),
                end,
                end + sc.recovery.within.as_secs_f64(),
                sc.recovery.hold,
            )
            .is_none()
        {
            self.note("the steady state was not restored by the recovery deadline; ending the run".into());
            return Flow::End;
        }
        Flow::Go
    }

    /// One second of load closed: into the history, told with its sample and what comes next,
    /// judged (the steady state broken or restored after the first disruption) and checked
    /// against the stop conditions.
    fn on_second(&mut self, w: Window) -> Option<CancelReason> {
        let sc = self.cx.sc;
        self.cx.push_second(w.clone(), &self.latest_sample);
        let last = self.cx.history.last()?;
        let own = observe::evaluate(&sc.steady_state.checks, std::slice::from_ref(last));
        let steady = observe::all_hold(&own);
        let next = self.timeline.upcoming().first().map(|(at, a)| {
            let what = match a {
                Action::Gate => "steady-state gate".to_string(),
                Action::Stage(i) => format!("stage {:.0}/s", sc.load.stages[*i].rate.per_second),
                Action::Inject(i) => format!("inject {}", self.cx.faults[*i].name),
                Action::Revert(i) => format!("revert {}", self.cx.faults[*i].name),
            };
            Upcoming { at: at.as_secs_f64(), what }
        });
        let sample = self.latest_sample.clone();
        let health = self.health_after(w.second, steady, &own);
        let _ = self.em.emit(Event::SecondClosed { window: w.clone(), sample, steady, health, next });
        if self.gate_passed() && self.span.first_second.is_some_and(|f| w.second >= f) {
            self.judge_second(w.second, steady, &own);
        }
        self.stop_watch.observe(&sc.stop, &self.cx.history).map(CancelReason::StopCondition)
    }

    /// The service's health after `second`: broken while a second fails (since the first of
    /// them), recovering from the first steady second after a break until `recovery.hold` steady
    /// seconds, steady otherwise.
    fn health_after(&mut self, second: u32, steady: bool, own: &[observe::CheckOutcome]) -> Health {
        let t = f64::from(second);
        // As `judge_second` counts them: the banner turns green with the restore.
        let hold = hold_seconds(self.cx.sc) as f64;
        let detail = (!steady).then(|| failing(own));
        let failing: Vec<String> = own.iter().filter(|o| !o.ok).map(|o| o.check.metric.name().to_string()).collect();
        let health = match (self.health.take(), steady) {
            (Some(p), false) if p.state == HealthState::Broken => Health { detail, failing, ..p },
            (_, false) => Health { state: HealthState::Broken, since: t, detail, failing },
            (Some(p), true) if p.state == HealthState::Broken => {
                Health { state: HealthState::Recovering, since: t, detail: None, failing }
            }
            (Some(p), true) => Health { failing, ..p },
            (None, true) => Health { state: HealthState::Steady, since: t, detail: None, failing },
        };
        // A recovery is over once it has held for `hold` seconds, this one included.
        let health = match health.state {
            HealthState::Recovering if t + 1.0 - health.since >= hold => {
                Health { state: HealthState::Steady, ..health }
            }
            _ => health,
        };
        self.health = Some(health.clone());
        health
    }

    /// The steady state broke at `second`, or held again for `recovery.hold`.
    fn judge_second(&mut self, second: u32, steady: bool, own: &[observe::CheckOutcome]) {
        let sc = self.cx.sc;
        if !steady && !self.broken {
            self.broken = true;
            let _ = self.em.emit(Event::SteadyStateBroken { t: f64::from(second), detail: describe_outcomes(own) });
        } else if self.broken {
            let history = &self.cx.history;
            let from = history
                .iter()
                .rev()
                .take_while(|s| {
                    observe::all_hold(&observe::evaluate(&sc.steady_state.checks, std::slice::from_ref(*s)))
                })
                .count();
            let hold = hold_seconds(sc);
            if from >= hold {
                self.broken = false;
                let at = history[history.len() - from].window.second;
                let _ = self.em.emit(Event::SteadyStateRestored { t: f64::from(at) });
            }
        }
    }

    /// A person's mark: it names who made it and, for `detected` and `mitigated`, a fault this
    /// run injected.
    fn mark(&mut self, kind: MarkKind, author: String, text: String, fault: Option<String>) -> Result<String, Refused> {
        let author = author.trim().to_string();
        if author.is_empty() {
            return Err(Refused::Invalid("a mark needs the name of who makes it (`author`)".into()));
        }
        match &fault {
            Some(f) => self.injected_fault(f)?,
            None if kind != MarkKind::Note => {
                return Err(Refused::Invalid(format!(
                    "a `{}` mark names the fault it is about (`fault`): {}",
                    kind.label(),
                    self.injected_names()
                )));
            }
            None => {}
        }
        let t = self.cx.now();
        let id = self.em.record.marks.len() as u32 + 1;
        let mark = crate::report::Mark { t, kind, author, text, fault, id, moved_from: None };
        let done = format!("marked {}", mark.describe());
        let _ = self.em.emit(Event::MarkAdded { t, mark });
        Ok(done)
    }

    /// Credits mark `id` to `fault` instead of the fault it named.
    fn move_mark(&mut self, id: u32, fault: String) -> Result<String, Refused> {
        self.injected_fault(&fault)?;
        let mark = self.em.record.marks.iter().find(|m| m.id == id);
        let Some(mark) = mark.filter(|m| m.kind != MarkKind::Note) else {
            return Err(Refused::Invalid(format!("this run has no `detected` or `mitigated` mark {id}")));
        };
        let from = mark.fault.clone().unwrap_or_default();
        let injected = self.em.record.faults.iter().rev().find(|f| f.name == fault).and_then(|f| f.injected_s);
        if injected.is_some_and(|at| at > mark.t + 0.05) {
            return Err(Refused::Invalid(format!("mark {id} was made before {fault} was injected")));
        }
        if from == fault {
            return Ok(format!("mark {id} is already about {fault}"));
        }
        let _ = self.em.emit(Event::MarkMoved { t: self.cx.now(), id, fault: fault.clone(), from: from.clone() });
        Ok(format!("mark {id} moved from {from} to {fault}"))
    }

    /// `Ok` when this run injected a fault named `name`.
    fn injected_fault(&self, name: &str) -> Result<(), Refused> {
        if self.em.record.faults.iter().any(|f| f.name == name && f.injected_s.is_some()) {
            return Ok(());
        }
        Err(Refused::UnknownFault(format!("no fault `{name}` was injected in this run: {}", self.injected_names())))
    }

    /// The faults injected so far, for a refusal.
    fn injected_names(&self) -> String {
        let names: Vec<&str> =
            self.em.record.faults.iter().filter(|f| f.injected_s.is_some()).map(|f| f.name.as_str()).collect();
        if names.is_empty() { "none was injected yet".into() } else { format!("injected: {}", names.join(", ")) }
    }

    /// The steady-state gate: held, the run is in its faults; not, it ends.
    fn gate(&mut self) -> Flow {
        match self.cx.gate(self.em) {
            Ok(()) => {
                self.enter(Phase::Faults);
                Flow::Go
            }
            Err(reason) => self.stop(reason),
        }
    }

    /// The timeline action that is due.
    async fn on_timeline(&mut self) -> Flow {
        let tl = &mut self.timeline;
        let at = tl.actions[tl.next].0;
        if matches!(tl.actions[tl.next].1, Action::Gate)
            && tl.gate_waits_until.is_none()
            && !self.cx.baseline_complete(at)
        {
            // Wait for the window closing now, but not forever: without it the gate judges what
            // there is.
            tl.gate_waits_until = Some(Instant::now() + Duration::from_secs(1));
            return Flow::Go;
        }
        tl.gate_waits_until = None;
        tl.next += 1;
        match tl.actions[tl.next - 1].1 {
            Action::Gate => return self.gate(),
            Action::Stage(i) => {
                let rate = self.cx.sc.load.stages[i].rate.per_second;
                let _ = self.em.emit(Event::StageStarted { t: self.cx.now(), rate });
            }
            Action::Inject(i) => {
                let f = self.cx.faults[i].clone();
                let rng = Rng::derive(self.cx.seed, &f.name);
                spawn_prepare(&mut self.tasks, self.backend, f.step(), rng, &self.cx.run_id, i);
            }
            Action::Revert(i) => {
                if let Some(pos) = self.active.iter().position(|(f, _)| *f == i) {
                    let (fi, inj) = self.active.remove(pos);
                    self.cx.revert_one(self.backend, self.em, fi, &inj, self.interrupts).await;
                }
            }
        }
        Flow::Go
    }

    fn on_load_end(&mut self, r: Result<Result<LoadReport, load::LoadError>, JoinError>) -> Flow {
        self.load_joined = true;
        match r {
            Ok(Ok(report)) => {
                self.cx.load_report = Some(report);
                Flow::End
            }
            // The target's address or its TLS trust is a precondition of the run.
            Ok(Err(e @ (load::LoadError::Resolve { .. } | load::LoadError::Tls(_)))) => {
                self.stop(CancelReason::Precondition(format!("load: {e}")))
            }
            Ok(Err(e)) => self.stop(CancelReason::Error(format!("load: {e}"))),
            Err(e) => self.stop(CancelReason::Error(format!("the load driver failed: {e}"))),
        }
    }

    /// Stops injecting, then undoes everything still active, newest first. An injection under
    /// way is waited for (for a while) rather than cut short: its request may already be on its
    /// way, and a revert that overtook it would leave the fault in place with its journal entry
    /// closed. Preparations mutate nothing; they end with the rest.
    async fn revert_pass(&mut self) {
        self.enter(Phase::Reverting);
        let wait = if self.interrupts.hurry.is_cancelled() { Duration::from_secs(5) } else { Duration::from_secs(30) };
        let settle_until = Instant::now() + wait;
        while !self.injecting.is_empty() {
            let Ok(Some(done)) = tokio::time::timeout_at(settle_until, self.tasks.join_next()).await else {
                // Not done in time: what is left is reverted anyway.
                break;
            };
            if let Ok(TaskDone::Injected { fault, result: Ok(()) }) = done
                && let Some(pos) = self.injecting.iter().position(|(i, _)| *i == fault)
            {
                let done = self.injecting.remove(pos);
                self.active.push(done);
            }
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        // Injections cut short may have half-run: revert them too (revert is idempotent).
        self.active.append(&mut self.injecting);
        while let Some((fi, inj)) = self.active.pop() {
            self.cx.revert_one(self.backend, self.em, fi, &inj, self.interrupts).await;
        }
    }

    /// The load's report once it has stopped, and the windows that closed while the loop was
    /// ending; the last one, cut short by the stop, is left out (two requests in it would read
    /// as a rate).
    async fn finish_load(&mut self, inputs: &mut Inputs, stopped_at: f64) {
        if !self.load_joined {
            match tokio::time::timeout(Duration::from_secs(10), &mut inputs.load).await {
                Ok(Ok(Ok(report))) => self.cx.load_report = Some(report),
                Ok(Ok(Err(e))) => self.note(format!("load: {e}")),
                _ => inputs.load.abort(),
            }
        }
        while let Ok(w) = inputs.windows.try_recv() {
            if self.load_joined || f64::from(w.second) + 1.0 <= stopped_at {
                self.cx.push_second(w, &self.latest_sample);
            }
        }
    }
}
