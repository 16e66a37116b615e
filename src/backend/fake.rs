//! An in-process target for engine tests under paused tokio time: a service of tasks in memory
//! that faults act on, and a load source that turns the service's state into one window per
//! second of tokio time. A killed task is back after `replace_after`; a slowed task adds its
//! delay to the p95 of the windows; a task that never comes back (`replace_after: None`) keeps
//! its share of the requests failing. Every call is recorded, so a test can check what was
//! injected and reverted, and in which order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{BackendError, Injected, Resolved, Reverted, Sample};
use crate::faults::{Action, Step, Undo};
use crate::load::{Latency, LoadPlan, LoadReport, Mode, Window};
use crate::util::Rng;

/// The fake service; clones share it.
#[derive(Debug, Clone)]
pub struct FakeBackend {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    tasks: usize,
    replace_after: Option<Duration>,
    /// Killed tasks: when they were killed and when they are back (`None`: never).
    down: Vec<(Instant, Option<Instant>)>,
    /// How long after a kill the target counts as unhealthy (the balancer's health checks).
    notice_after: Duration,
    /// Added latency per slowed task, by task index.
    slow: Vec<(usize, Duration)>,
    /// `inject NAME`, `revert NAME`, in order.
    log: Vec<String>,
    /// How long an injection takes before it takes effect (a FIS experiment that starts late).
    inject_delay: Duration,
}

impl FakeBackend {
    /// `tasks` tasks; a killed one is replaced after `replace_after` (never with `None`).
    pub fn new(tasks: usize, replace_after: Option<Duration>) -> Self {
        let state = State {
            tasks,
            replace_after,
            down: vec![],
            notice_after: Duration::ZERO,
            slow: vec![],
            log: vec![],
            inject_delay: Duration::ZERO,
        };
        FakeBackend { state: Arc::new(Mutex::new(state)) }
    }

    /// Every injection takes `delay` (of tokio time) before it takes effect and returns.
    pub fn with_inject_delay(self, delay: Duration) -> Self {
        self.with(|s| s.inject_delay = delay);
        self
    }

    /// A killed task's target is reported unhealthy only `delay` after the kill (its requests
    /// fail at once), as a balancer notices a dead task after its health checks.
    pub fn with_notice_after(self, delay: Duration) -> Self {
        self.with(|s| s.notice_after = delay);
        self
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// What was injected and reverted, in order: `inject NAME`, `revert NAME`.
    pub fn log(&self) -> Vec<String> {
        self.with(|s| s.log.clone())
    }

    /// Faults in effect now (slowed tasks).
    pub fn active(&self) -> usize {
        self.with(|s| s.slow.len())
    }

    pub(super) fn resolve(&self, step: &Step, rng: &mut Rng) -> Result<Resolved, BackendError> {
        let n = self.with(|s| s.tasks);
        let k = step.select.map(|s| s.of(n)).unwrap_or(0);
        let mut ids: Vec<usize> = (0..n).collect();
        let mut chosen = vec![];
        for _ in 0..k {
            chosen.push(ids.remove(rng.below(ids.len() as u64) as usize));
        }
        let targets: Vec<String> = chosen.iter().map(|i| format!("t-{i}")).collect();
        Ok(Resolved { summary: format!("{} of {n} fake tasks: {}", targets.len(), targets.join(", ")), targets })
    }

    pub(super) async fn inject(&self, step: &Step, injected: &Injected) -> Result<(), BackendError> {
        let delay = self.with(|s| s.inject_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let now = Instant::now();
        self.with(|s| {
            s.log.push(format!("inject {}", step.fault));
            let targets = injected.targets.iter().filter_map(|t| t.strip_prefix("t-")?.parse::<usize>().ok());
            match step.action {
                Action::StopTasks { .. } => {
                    let back = s.replace_after.map(|d| now + d);
                    s.down.extend(targets.map(|_| (now, back)));
                }
                Action::DelayNetwork { delay, .. } => s.slow.extend(targets.map(|t| (t, delay))),
                _ => {}
            }
        });
        Ok(())
    }

    pub(super) fn revert(&self, injected: &Injected) -> Result<Reverted, BackendError> {
        if self.settled_once_injected(injected) {
            return Ok(Reverted::NothingLeft);
        }
        self.with(|s| {
            s.log.push(format!("revert {}", injected.fault));
            let targets: Vec<usize> =
                injected.targets.iter().filter_map(|t| t.strip_prefix("t-")?.parse().ok()).collect();
            s.slow.retain(|(t, _)| !targets.contains(t));
        });
        Ok(Reverted::Undone)
    }

    /// As on AWS, a failover is over once injected: its new writer stays.
    pub(super) fn settled_once_injected(&self, injected: &Injected) -> bool {
        injected.undo_kind() == Some(Undo::EndDatabaseOutage)
    }

    fn running(&self, now: Instant) -> usize {
        self.with(|s| {
            s.down.retain(|(_, back)| back.is_none_or(|b| b > now));
            s.tasks - s.down.len().min(s.tasks)
        })
    }

    pub(super) fn sample(&self) -> Sample {
        let now = Instant::now();
        let running = self.running(now) as u32;
        let noticed = self.with(|s| s.down.iter().filter(|(killed, _)| *killed + s.notice_after <= now).count());
        let healthy = self.with(|s| s.tasks.saturating_sub(noticed)) as u32;
        Sample { healthy_targets: Some(healthy), running_tasks: Some(running), ..Sample::default() }
    }

    /// The load of `plan` on this service: one window per second of tokio time, at the plan's
    /// base rate; the share of the tasks that are down fails, and the slowest slowed task's
    /// delay is the p95.
    pub fn load(
        &self,
        plan: LoadPlan,
        cancel: CancellationToken,
        windows: mpsc::UnboundedSender<Window>,
    ) -> impl Future<Output = Result<LoadReport, crate::load::LoadError>> + Send + 'static {
        let me = self.clone();
        async move {
            let rate = match plan.mode {
                Mode::Open { rate, .. } => rate,
                Mode::Closed { .. } => 100.0,
            };
            let start = Instant::now();
            let seconds = plan.duration.as_secs() as u32;
            let mut report = LoadReport::default();
            for second in 0..seconds {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep_until(start + Duration::from_secs(u64::from(second) + 1)) => {}
                }
                let (tasks, slowest, slowed) =
                    me.with(|s| (s.tasks, s.slow.iter().map(|(_, d)| *d).max().unwrap_or_default(), s.slow.len()));
                let running = me.running(Instant::now());
                let requests = rate.round() as u64;
                let down = tasks - running.min(tasks);
                let failed = requests * down as u64 / tasks.max(1) as u64;
                let ms = 5.0 + slowest.as_secs_f64() * 1000.0;
                // Request `j` of the second is due at `j / rate` into it and goes to task
                // `j % tasks`: the first `down` tasks are the dead ones, the next the slowed ones.
                let due = |j: u64| second * 1000 + (j as f64 * 1000.0 / rate) as u32;
                let to = |j: u64| (j % tasks.max(1) as u64) as usize;
                let is_slow = plan.notice.slow_after.is_some_and(|b| slowest > b);
                let mut w = Window {
                    second,
                    requests,
                    scheduled: requests,
                    latency_ms: Latency { p50: 5.0, p90: ms, p95: ms, p99: ms, max: ms },
                    failed_at_ms: (0..requests).filter(|j| to(*j) < down).map(due).collect(),
                    slow_at_ms: (0..requests)
                        .filter(|j| is_slow && (down..down + slowed).contains(&to(*j)))
                        .map(due)
                        .collect(),
                    ..Window::default()
                };
                w.errors.status_503 = failed;
                report.requests += requests;
                report.errors.status_503 += failed;
                report.per_second.push(w.clone());
                let _ = windows.send(w);
            }
            report.duration_s = start.elapsed().as_secs_f64();
            report.rps = report.requests as f64 / report.duration_s.max(1e-9);
            Ok(report)
        }
    }
}
