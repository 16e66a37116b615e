//! The run manager: starts runs through [`engine::start`], one per target at a time, and keeps
//! the history of each in the [`Store`]: the run as it starts, its events while it runs (in
//! batches, from the run's bus, so the run never waits for the database), its report files and
//! its final state once it ends. Also what the daemon does at start (recovery) and at shutdown.
//!
//! The store is synchronous (rusqlite): every call goes through [`Db::call`], on tokio's blocking
//! pool, so a slow disk holds up neither the runs nor the API.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use super::config::Config;
use super::store::{NewRun, RunEnd, RunState, Store, StoreError, StoredEvent, Trigger};
use crate::backend::{Backend, Connection};
use crate::engine::bus::Bus;
use crate::engine::{self, Commander, Interrupter, RunOptions, RunRequest, journal};
use crate::report::Outcome;
use crate::scenario::{Scenario, Target};

/// How often a running run's new events are written to the history.
const EVENT_FLUSH: Duration = Duration::from_millis(250);

/// How long a start waits for a detached lab or an ECS service to say who holds it.
const LEASE_ASK: Duration = Duration::from_secs(3);

/// What the daemon's shutdown interrupts its runs with; such a run ends `interrupted`.
pub const SHUTDOWN_REASON: &str = "SIGTERM (the daemon is stopping)";

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    /// `run`: "run ID", or the lease of another process's run ("run ID since …").
    #[error("the target {target} is busy with {run}")]
    Busy { target: String, run: String },
    #[error("the daemon is shutting down and starts no more runs")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a history database task failed: {0}")]
    Task(String),
}

/// The history, shared; every call on the blocking pool.
#[derive(Clone)]
pub struct Db {
    store: Arc<Mutex<Store>>,
    /// Set once SQLite has said the file is damaged (`/healthz` and `/metrics` tell).
    damaged: Arc<Mutex<Option<String>>>,
}

impl Db {
    pub fn new(store: Store) -> Db {
        Db { store: Arc::new(Mutex::new(store)), damaged: Default::default() }
    }

    /// Runs `f` on the store, off the async threads.
    pub async fn call<T, F>(&self, f: F) -> Result<T, RunsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        let r = tokio::task::spawn_blocking(move || f(&mut store.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|e| RunsError::Task(e.to_string()))?;
        if let Err(StoreError::Sqlite(e)) = &r
            && matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            )
        {
            *self.damaged.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
        Ok(r?)
    }

    /// Why the history cannot be used, once SQLite has said so.
    pub fn damaged(&self) -> Option<String> {
        self.damaged.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What identifies a target, for one run per target at a time: a lab by its control URL, an
/// AWS service by endpoint, region, cluster and service. A lab started for the run is its own
/// target (`None`).
pub fn target_key(t: &Target) -> Option<String> {
    match t {
        Target::Lab(l) => l.control.as_ref().map(|c| format!("lab {}", c.trim_end_matches('/'))),
        Target::Aws(a) => Some(format!(
            "aws {}{}/{}/{}",
            a.endpoint.as_ref().map(|e| format!("{} ", e.trim_end_matches('/'))).unwrap_or_default(),
            a.region.as_deref().unwrap_or("(default region)"),
            a.cluster,
            a.service
        )),
    }
}

/// A run to start.
pub struct Start {
    /// Validated.
    pub scenario: Scenario,
    /// Its file, or `posted.yaml`.
    pub source: String,
    pub trigger: Trigger,
    pub schedule: Option<String>,
    /// A game day's blind run: its faults are hidden from the participants until it ends.
    pub blind: bool,
}

/// A run in progress, as the API reaches it.
#[derive(Clone)]
pub struct Active {
    pub run_id: String,
    pub target: String,
    pub commander: Commander,
    pub interrupter: Interrupter,
    pub bus: Bus,
    /// What it runs: a fault given in full to `/inject` is checked against it.
    pub scenario: Arc<Scenario>,
    pub blind: bool,
    faults: Arc<Mutex<FaultTally>>,
}

impl Active {
    /// How many faults are in place now; each call reads only the events published since the
    /// previous one.
    pub fn faults_in_place(&self) -> usize {
        let mut t = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let new = self.bus.history_since(t.seen);
        t.update(&new);
        t.in_place.len()
    }
}

/// The faults in place, from a run's events: injected and neither reverted nor settled (a
/// fault whose revert failed stays in place).
#[derive(Default)]
struct FaultTally {
    /// Events read so far.
    seen: usize,
    in_place: std::collections::BTreeSet<String>,
}

impl FaultTally {
    fn update(&mut self, events: &[Arc<crate::engine::events::Envelope>]) {
        use crate::engine::events::Event;
        for e in events {
            match &e.event {
                Event::FaultInjected { fault, .. } => {
                    self.in_place.insert(fault.clone());
                }
                Event::FaultReverted { fault, .. } | Event::FaultSettled { fault, .. } => {
                    self.in_place.remove(fault);
                }
                _ => {}
            }
        }
        self.seen += events.len();
    }
}

#[derive(Default)]
struct Inner {
    runs: HashMap<String, Active>,
    /// Target key → the run on it.
    targets: HashMap<String, String>,
}

/// Starts, tracks and records the daemon's runs.
pub struct Manager {
    pub db: Db,
    conn: Connection,
    journals: PathBuf,
    reports: PathBuf,
    failpoint: Option<String>,
    config: RwLock<Arc<Config>>,
    inner: Mutex<Inner>,
    accepting: AtomicBool,
    /// How many runs are in progress.
    count: watch::Sender<usize>,
    /// Where alerts go, when the config names a webhook.
    webhook: Mutex<Option<super::webhook::Webhook>>,
    /// The webhooks' delivery tasks (a reload may have replaced the webhook while the old one
    /// still posts), waited for at exit.
    webhook_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Manager {
    /// A manager keeping journals in `data/journals` and reports (until stored) in
    /// `data/reports`.
    pub fn new(db: Db, data: &Path, conn: Connection, config: Config, failpoint: Option<String>) -> Manager {
        let m = Manager {
            db,
            conn,
            journals: data.join("journals"),
            reports: data.join("reports"),
            failpoint,
            config: RwLock::new(Arc::new(Config::default())),
            inner: Mutex::new(Inner::default()),
            accepting: AtomicBool::new(true),
            count: watch::channel(0).0,
            webhook: Mutex::new(None),
            webhook_tasks: Mutex::new(Vec::new()),
        };
        // The config through `set_config`, which starts its webhook.
        m.set_config(config);
        m
    }

    /// What the webhook has done, for `/metrics`; `None` without one.
    pub fn webhook_stats(&self) -> Option<super::webhook::WebhookStats> {
        self.webhook.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|w| w.stats())
    }

    /// Alerts on how run `id` ended (failed, aborted, interrupted, revert-failed) and on a
    /// regression it shows; never waits for the webhook.
    pub async fn alert_on(&self, id: &str) {
        if self.webhook.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            return;
        }
        let i = id.to_string();
        let found = self
            .db
            .call(move |s| {
                let Some(run) = s.run(&i)? else { return Ok(vec![]) };
                let mut alerts: Vec<super::webhook::Alert> = super::webhook::Alert::for_run(&run).into_iter().collect();
                if let Some(r) = super::trend::regression_of(s, &i)? {
                    alerts.push(super::webhook::Alert::regression(&run, &r));
                }
                Ok(alerts)
            })
            .await;
        match found {
            Ok(alerts) => {
                if let Some(w) = self.webhook.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    for a in alerts {
                        if !w.send(a) {
                            eprintln!("siege daemon: run {id}: the webhook's queue is full; an alert was dropped");
                        }
                    }
                }
            }
            Err(e) => eprintln!("siege daemon: run {id}: no alert: {e}"),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_config(&self, c: Config) {
        {
            let mut w = self.webhook.lock().unwrap_or_else(|p| p.into_inner());
            let same = w.as_ref().map(|w| w.url()) == c.webhook.as_deref();
            if !same {
                *w = match (&c.webhook, tokio::runtime::Handle::try_current()) {
                    (Some(url), Ok(_)) => {
                        match super::webhook::Webhook::start(url, super::webhook::WebhookOptions::default()) {
                            Ok((hook, task)) => {
                                let mut tasks = self.webhook_tasks.lock().unwrap_or_else(|p| p.into_inner());
                                tasks.retain(|t| !t.is_finished());
                                tasks.push(task);
                                Some(hook)
                            }
                            Err(e) => {
                                eprintln!("siege daemon: webhook {url}: {e}; no alerts are sent");
                                None
                            }
                        }
                    }
                    _ => None,
                };
            }
        }
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
    }

    pub fn journals(&self) -> &Path {
        &self.journals
    }

    /// The run in progress with this id.
    pub fn active(&self, id: &str) -> Option<Active> {
        self.inner().runs.get(id).cloned()
    }

    /// The ids of the runs in progress.
    pub fn active_ids(&self) -> Vec<String> {
        self.inner().runs.keys().cloned().collect()
    }

    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// At daemon start, before anything else runs: every run the history still has `running`
    /// becomes `interrupted`, and whatever faults the journals in `journals` list are reverted.
    /// Returns what was done, line by line.
    pub async fn recover_at_start(&self) -> Result<Vec<String>, RunsError> {
        let ids = self.db.call(|s| s.mark_interrupted(Timestamp::now())).await?;
        let mut lines: Vec<String> =
            ids.iter().map(|id| format!("run {id} was in progress when the daemon stopped: interrupted")).collect();
        let paths = journal::list_in(&self.journals).map_err(|e| RunsError::Task(e.to_string()))?;
        let (more, _) = journal::recover_all(&paths, &self.conn).await;
        lines.extend(more);
        for id in &ids {
            self.alert_on(id).await;
        }
        Ok(lines)
    }

    /// Starts a run unless its target is busy or the daemon is stopping; returns its id once the
    /// run is in the history.
    pub async fn start(self: &Arc<Self>, s: Start) -> Result<String, RunsError> {
        if !self.accepting() {
            return Err(RunsError::ShuttingDown);
        }
        let key = target_key(&s.scenario.target);
        let name = s.scenario.name.clone();
        let busy = |run: String| RunsError::Busy { target: key.clone().unwrap_or_default(), run };
        if let Some(run) = key.as_ref().and_then(|k| self.inner().targets.get(k).cloned()) {
            return Err(busy(format!("run {run}")));
        }
        // A run of another process (`siege run`) holds the target: refused now, as the docs
        // promise, rather than accepted to end `precondition-failed`. A target that does not
        // answer in time is left to the run's own checks.
        let asked = tokio::time::timeout(LEASE_ASK, Backend::holder_of(&s.scenario.target, &self.conn)).await;
        if let Ok(Ok(Some(l))) = asked {
            let now = std::time::SystemTime::now();
            if !l.expired(now) {
                return Err(busy(l.describe(now)));
            }
        }
        let (handle, target) = {
            let mut inner = self.inner();
            if let Some(run) = key.as_ref().and_then(|k| inner.targets.get(k)) {
                return Err(busy(format!("run {run}")));
            }
            let scenario = Arc::new(s.scenario.clone());
            let handle = engine::start(RunRequest {
                scenario: s.scenario,
                source: s.source,
                options: RunOptions { reports_dir: Some(self.reports.clone()), seed: None },
                journal_dir: self.journals.clone(),
                failpoint: self.failpoint.clone(),
                // Each run its own set of secrets.
                connection: Connection { secrets: Default::default(), ..self.conn.clone() },
            });
            let id = handle.run_id().to_string();
            let target = key.unwrap_or_else(|| format!("lab started for run {id}"));
            inner.targets.insert(target.clone(), id.clone());
            let active = Active {
                run_id: id.clone(),
                target: target.clone(),
                commander: handle.commander(),
                interrupter: handle.interrupter(),
                bus: handle.bus(),
                scenario,
                blind: s.blind,
                faults: Default::default(),
            };
            inner.runs.insert(id, active);
            self.count.send_replace(inner.runs.len());
            (handle, target)
        };
        let id = handle.run_id().to_string();
        let new = NewRun {
            id: id.clone(),
            scenario: name,
            target,
            trigger: s.trigger,
            schedule: s.schedule,
            started_at: Timestamp::now(),
            blind: s.blind,
        };
        let inserted = self.db.call(move |st| st.insert_run(&new)).await;
        if let Err(e) = &inserted {
            // A run the history does not know cannot be watched or recovered: stop it now.
            handle.interrupt(&format!("the daemon could not record the run: {e}"));
        }
        let (me, recorded) = (self.clone(), inserted.is_ok());
        tokio::spawn(async move { me.supervise(handle, recorded).await });
        inserted.map(|_| id)
    }

    /// Writes the run's events while it runs, then its files and end; forgets it last, so that
    /// whoever no longer finds it in progress finds it whole in the history.
    async fn supervise(self: Arc<Self>, handle: engine::RunHandle, recorded: bool) {
        let id = handle.run_id().to_string();
        let bus = handle.bus();
        let (done_tx, done_rx) = watch::channel(false);
        let writer = recorded.then(|| tokio::spawn(write_events(self.db.clone(), id.clone(), bus, done_rx)));
        let outcome = handle.outcome().await;
        let _ = done_tx.send(true);
        if let Some(w) = writer {
            let _ = w.await;
        }
        if recorded {
            let end = self.end_of(&id, outcome).await;
            let retention = self.config().retention;
            let r = self
                .db
                .call(move |s| {
                    s.finish_run(&end.0, &end.1)?;
                    s.apply_retention(&retention, Timestamp::now())
                })
                .await;
            match r {
                Ok(_) => self.alert_on(&id).await,
                Err(e) => eprintln!("siege daemon: run {id}: cannot record its end: {e}"),
            }
        }
        let mut inner = self.inner();
        if let Some(a) = inner.runs.remove(&id) {
            inner.targets.remove(&a.target);
        }
        self.count.send_replace(inner.runs.len());
    }

    /// The final state of a run and its record; stores its report files, rendered from the
    /// record.
    async fn end_of(&self, id: &str, outcome: Result<engine::RunOutcome, engine::RunPanicked>) -> (String, RunEnd) {
        let finished_at = Timestamp::now();
        let secs = |s: Option<f64>| s.filter(|v| v.is_finite() && *v >= 0.0).map(Duration::from_secs_f64);
        let end = match outcome {
            Ok(o) => {
                let v = &o.record.verdict;
                let state = match v.outcome {
                    Outcome::Passed => RunState::Passed,
                    Outcome::Failed => RunState::Failed,
                    Outcome::Aborted if v.interrupted_by.as_deref() == Some(SHUTDOWN_REASON) => RunState::Interrupted,
                    Outcome::Aborted => RunState::Aborted,
                    Outcome::PreconditionFailed => RunState::PreconditionFailed,
                    Outcome::RevertFailed => RunState::RevertFailed,
                    Outcome::Error => RunState::Error,
                };
                for w in &o.warnings {
                    eprintln!("siege daemon: run {id}: {w}");
                }
                // The files are rendered from the record and stored; nothing is read back from
                // disk. A run whose files cannot be stored says so, and keeps its record.
                let record = match crate::report::files(&o.record, &o.secrets) {
                    Ok(files) => {
                        let json = files
                            .iter()
                            .find(|(n, _)| *n == crate::report::REPORT_JSON)
                            .map(|(_, b)| String::from_utf8_lossy(b).into_owned());
                        let i = id.to_string();
                        let stored = self
                            .db
                            .call(move |s| files.iter().try_for_each(|(name, bytes)| s.put_file(&i, name, bytes)))
                            .await;
                        if let Err(e) = stored {
                            eprintln!("siege daemon: run {id}: its report files could not be stored: {e}");
                        }
                        json
                    }
                    Err(e) => {
                        eprintln!("siege daemon: run {id}: its report could not be rendered: {e}");
                        None
                    }
                };
                RunEnd {
                    state,
                    finished_at,
                    time_to_detect: secs(o.record.timings.time_to_detect_s),
                    mttr: secs(o.record.timings.time_to_recover_s),
                    record,
                }
            }
            Err(p) => {
                eprintln!("siege daemon: run {id}: {p}");
                for l in &p.lines {
                    eprintln!("siege daemon: {l}");
                }
                let state = if p.revert_failed { RunState::RevertFailed } else { RunState::Error };
                RunEnd { state, finished_at, time_to_detect: None, mttr: None, record: None }
            }
        };
        (id.to_string(), end)
    }

    /// Stops taking runs and interrupts every run in progress (`why` is the interrupt's
    /// reason); called again, hurries them. Returns how many runs were interrupted.
    pub fn shutdown(&self, why: &str) -> usize {
        self.accepting.store(false, Ordering::SeqCst);
        let runs: Vec<Active> = self.inner().runs.values().cloned().collect();
        for a in &runs {
            a.interrupter.interrupt(why);
        }
        runs.len()
    }

    /// At exit, once the runs have ended: no more alerts are queued, and those still queued are
    /// given `grace` to be delivered (retries included), or until `hurry`; what is left then is
    /// not sent.
    pub async fn flush_alerts(&self, grace: Duration, hurry: &tokio_util::sync::CancellationToken) {
        let hook = self.webhook.lock().unwrap_or_else(|p| p.into_inner()).take();
        let tasks = std::mem::take(&mut *self.webhook_tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let (done, queued) = super::webhook::drain(hook, tasks, grace, hurry).await;
        if !done {
            eprintln!(
                "siege daemon: stopped waiting for the webhook ({queued} alert(s) were queued at exit); what is left is not sent"
            );
        }
    }

    /// Waits until no run is in progress.
    pub async fn idle(&self) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Writes the run's new events every [`EVENT_FLUSH`], and all that remain once `done`. Reads
/// the bus's history rather than a subscription: nothing is ever missed, however slow the disk.
async fn write_events(db: Db, id: String, bus: Bus, mut done: watch::Receiver<bool>) {
    let mut written = 0usize;
    loop {
        let last = tokio::select! {
            _ = tokio::time::sleep(EVENT_FLUSH) => false,
            _ = done.wait_for(|d| *d) => true,
        };
        let new: Vec<StoredEvent> = bus
            .history_since(written)
            .iter()
            .map(|e| StoredEvent { seq: e.seq, json: serde_json::to_string(&**e).unwrap_or_default() })
            .collect();
        if !new.is_empty() {
            let n = new.len();
            let id = id.clone();
            match db.call(move |s| s.append_events(&id, &new)).await {
                Ok(()) => written += n,
                // Tried again at the next flush (a batch sent twice is harmless).
                Err(e) => eprintln!("siege daemon: writing events: {e}"),
            }
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(yaml_target: &str) -> Target {
        let text = format!(
            "name: t\ntarget: {yaml_target}\nload: {{ url: /, rate: 10/s, duration: 10s }}\nsteady_state: {{ error_rate: \"< 1%\" }}\nrecovery: {{ within: 5s }}\n"
        );
        crate::scenario::load_bytes("t.yaml", text.as_bytes(), Path::new("."))
            .unwrap_or_else(|d| panic!("{d:?}"))
            .target
    }

    #[tokio::test]
    async fn a_damaged_history_is_remembered_once_sqlite_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(&dir.path().join("history.db")).unwrap());
        let _ = db.call(|_| Err::<(), _>(StoreError::NoSuchRun("x".into()))).await;
        assert_eq!(db.damaged(), None, "an ordinary error says nothing of the file");
        let corrupt = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some("database disk image is malformed".into()),
        );
        let _ = db.call(move |_| Err::<(), _>(StoreError::Sqlite(corrupt))).await;
        assert!(db.damaged().is_some_and(|e| e.contains("malformed")), "{:?}", db.damaged());
    }

    #[test]
    fn the_faults_in_place_are_those_injected_and_neither_reverted_nor_settled() {
        use crate::engine::events::{Envelope, Event};
        let env =
            |seq: u64, event: Event| Arc::new(Envelope { run_id: "r".into(), seq, at: String::new(), t: None, event });
        let injected = |seq, f: &str| {
            env(seq, Event::FaultInjected { t: 1.0, fault: f.into(), kind: "k".into(), summary: String::new() })
        };
        let mut tally = FaultTally::default();
        tally.update(&[injected(0, "kill"), injected(1, "slow"), injected(2, "drift")]);
        assert_eq!(tally.in_place.len(), 3);
        tally.update(&[
            env(3, Event::FaultSettled { t: 2.0, fault: "kill".into() }),
            env(4, Event::FaultReverted { t: 3.0, fault: "slow".into() }),
            env(5, Event::FaultRevertFailed { t: 4.0, fault: "drift".into(), error: "x".into() }),
        ]);
        assert_eq!((tally.seen, tally.in_place.iter().map(String::as_str).collect::<Vec<_>>()), (6, vec!["drift"]));
    }

    #[test]
    fn a_target_is_a_labs_control_url_or_an_aws_service_and_a_lab_of_its_own_is_none() {
        assert_eq!(
            target_key(&target("{ lab: { service: api, tasks: 2, control: \"http://127.0.0.1:9/\" } }")),
            Some("lab http://127.0.0.1:9".into())
        );
        assert_eq!(target_key(&target("{ lab: { service: api, tasks: 2 } }")), None);
        assert_eq!(
            target_key(&target("{ aws: { region: eu-west-1, cluster: c, service: s, url: \"https://x.example\" } }")),
            Some("aws eu-west-1/c/s".into())
        );
    }
}
