//! The scheduler loop on top of [`super::schedule`]: at start, the catch-up decision of every
//! schedule; then each due time fires a run through the [`Manager`], or is recorded as skipped
//! (target busy, schedule paused, scenario invalid). Every due time ends up in the history as a
//! [`Firing`], whose `recorded_at` minus `due` is the firing's lateness.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::ScheduleConfig;
use super::runs::{Manager, RunsError, Start};
use super::schedule::CatchUp;
use super::store::{Firing, FiringOutcome, Trigger};

/// The longest the loop sleeps without looking at the clock again.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The schedules' runtime state: which are paused (kept in the history too, read at start).
pub struct Scheduler {
    manager: Arc<Manager>,
    paused: Mutex<HashSet<String>>,
    wake: Notify,
    /// The config changed: due times are computed afresh.
    reset: AtomicBool,
}

/// Why a schedule could not be acted on.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleActionError {
    #[error("no schedule `{0}`")]
    NoSuchSchedule(String),
    #[error("the scenario of schedule `{name}` is not valid: {first}")]
    InvalidScenario { name: String, first: String },
    #[error(transparent)]
    Runs(#[from] RunsError),
}

impl Scheduler {
    pub fn new(manager: Arc<Manager>) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            manager,
            paused: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            reset: AtomicBool::new(false),
        })
    }

    fn paused_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_paused(&self, name: &str) -> bool {
        self.paused_set().contains(name)
    }

    fn find(&self, name: &str) -> Result<ScheduleConfig, ScheduleActionError> {
        self.manager
            .config()
            .schedules
            .iter()
            .find(|s| s.schedule.name == name)
            .cloned()
            .ok_or_else(|| ScheduleActionError::NoSuchSchedule(name.to_string()))
    }

    /// Reads which schedules are paused from the history; at start, before any schedule fires.
    pub async fn load_paused(&self) -> Result<(), RunsError> {
        let names = self.manager.db.call(|s| s.paused_schedules()).await?;
        self.paused_set().extend(names);
        Ok(())
    }

    /// Pauses (`true`) or resumes a schedule, in the history first (a pause outlives a
    /// restart); a paused schedule's due times are recorded as skipped.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), ScheduleActionError> {
        self.find(name)?;
        let n = name.to_string();
        self.manager.db.call(move |s| s.set_paused(&n, paused, Timestamp::now())).await?;
        let mut set = self.paused_set();
        if paused {
            set.insert(name.to_string());
        } else {
            set.remove(name);
        }
        Ok(())
    }

    /// Starts the schedule's scenario now (trigger `api`, the schedule named), whatever its
    /// due times; records no firing.
    pub async fn trigger(&self, name: &str) -> Result<String, ScheduleActionError> {
        let sc = self.find(name)?;
        let start = load(&sc).map_err(|first| ScheduleActionError::InvalidScenario { name: name.into(), first })?;
        Ok(self.manager.start(Start { trigger: Trigger::Api, ..start }).await?)
    }

    /// The config was replaced: compute due times afresh.
    pub fn reload(&self) {
        self.reset.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The catch-up decision of every schedule at start (see [`super::schedule::Schedule::catch_up`]).
    pub async fn catch_up(&self) {
        let now = Timestamp::now();
        for sc in &self.manager.config().schedules {
            let name = sc.schedule.name.clone();
            let last = match self.manager.db.call(move |s| s.last_firing(&name)).await {
                Ok(l) => l.map(|f| f.due),
                Err(e) => {
                    eprintln!("siege daemon: schedule {}: cannot read its firings: {e}", sc.schedule.name);
                    continue;
                }
            };
            match sc.schedule.catch_up(last, now) {
                CatchUp::UpToDate => {}
                CatchUp::RunNow { due } => self.fire(sc, due, Trigger::CatchUp).await,
                CatchUp::Missed { due } => {
                    let reason = "the daemon was down at the due time, and it is older than `catch_up`";
                    self.record(sc, due, FiringOutcome::Missed, Some(reason.into()), None, now).await
                }
            }
        }
    }

    /// The loop: fires due schedules until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut next: HashMap<String, Timestamp> = HashMap::new();
        loop {
            if self.reset.swap(false, Ordering::SeqCst) {
                next.clear();
            }
            let config = self.manager.config();
            let now = Timestamp::now();
            next.retain(|name, _| config.schedules.iter().any(|s| &s.schedule.name == name && s.schedule.enabled));
            for sc in config.schedules.iter().filter(|s| s.schedule.enabled) {
                if let (false, Some(due)) = (next.contains_key(&sc.schedule.name), sc.schedule.next_due(now)) {
                    next.insert(sc.schedule.name.clone(), due);
                }
            }
            for sc in config.schedules.iter().filter(|s| s.schedule.enabled) {
                let Some(due) = next.get(&sc.schedule.name).copied().filter(|d| *d <= now) else { continue };
                if stop.is_cancelled() {
                    return;
                }
                self.fire(sc, due, Trigger::Schedule).await;
                // After a long pause of the process, the due times it slept through fire once.
                match sc.schedule.next_due(due.max(Timestamp::now())) {
                    Some(n) => next.insert(sc.schedule.name.clone(), n),
                    None => next.remove(&sc.schedule.name),
                };
            }
            let now = Timestamp::now();
            let sleep = next
                .values()
                .min()
                .map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Acts on one due time: a run, or a firing recorded as skipped with why.
    async fn fire(&self, sc: &ScheduleConfig, due: Timestamp, trigger: Trigger) {
        let now = Timestamp::now();
        let catch_up =
            (trigger == Trigger::CatchUp).then_some("catch-up of a due time missed while the daemon was down");
        if self.is_paused(&sc.schedule.name) {
            return self
                .record(sc, due, FiringOutcome::Skipped, Some("the schedule is paused".into()), None, now)
                .await;
        }
        let start = match load(sc) {
            Ok(s) => s,
            Err(first) => {
                let why = format!("the scenario is not valid: {first}");
                eprintln!("siege daemon: schedule {}: {why}", sc.schedule.name);
                return self.record(sc, due, FiringOutcome::Skipped, Some(why), None, now).await;
            }
        };
        match self.manager.start(Start { trigger, ..start }).await {
            Ok(id) => self.record(sc, due, FiringOutcome::Fired, catch_up.map(String::from), Some(id), now).await,
            Err(e) => {
                let why = match &e {
                    RunsError::Busy { .. } => format!("target busy: {e}"),
                    e => e.to_string(),
                };
                self.record(sc, due, FiringOutcome::Skipped, Some(why), None, now).await
            }
        }
    }

    async fn record(
        &self,
        sc: &ScheduleConfig,
        due: Timestamp,
        outcome: FiringOutcome,
        reason: Option<String>,
        run_id: Option<String>,
        recorded_at: Timestamp,
    ) {
        let f = Firing { schedule: sc.schedule.name.clone(), due, outcome, reason, run_id, recorded_at };
        if let Err(e) = self.manager.db.call(move |s| s.record_firing(&f)).await {
            eprintln!("siege daemon: schedule {}: cannot record its firing: {e}", sc.schedule.name);
        }
    }
}

/// The schedule's scenario, read now (it may have changed since the config was read); `Err`
/// is the first diagnostic.
fn load(sc: &ScheduleConfig) -> Result<Start, String> {
    let scenario = crate::scenario::load_file(&sc.scenario)
        .map_err(|d| d.first().map(|d| d.to_string()).unwrap_or_else(|| "invalid".into()))?;
    Ok(Start {
        scenario,
        source: sc.scenario.display().to_string(),
        trigger: Trigger::Schedule,
        schedule: Some(sc.schedule.name.clone()),
        blind: false,
    })
}
