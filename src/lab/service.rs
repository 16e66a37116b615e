//! The lab service and its scheduler (ECS's role): keeps the desired count of task processes,
//! replaces a stopped task after a placement delay, registers started tasks with the balancer,
//! rolls deployments without dropping below the minimum healthy percent, and scales on average
//! task CPU (target tracking) when autoscaling is on.
//!
//! Like ECS with an ALB, a task that dies on its own stays registered until the scheduler
//! replaces it: in between, the balancer routes to it until health checks mark it unhealthy, and
//! those requests fail with 502 — what a game day on ECS shows.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::balancer::{Balancer, TargetHealth};
use super::db::Cluster;
use super::events::Events;
use super::proc;
use super::secrets::SecretStore;
use super::task::PASSWORD_ENV;

/// Target-tracking autoscaling on average task CPU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AutoscalingConfig {
    pub min: u32,
    pub max: u32,
    /// Target average CPU, percent of one core.
    pub target_cpu_percent: f64,
    pub cooldown_ms: u64,
}

/// Static service settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub desired: u32,
    pub placement_delay: Duration,
    /// Fraction of the desired count that must stay healthy during a deployment.
    pub min_healthy: f64,
    /// Upper bound of running tasks during a deployment, as a fraction of the desired count
    /// (ECS's maximum percent, 2.0 by default: all replacements may start at once).
    pub max_percent: f64,
    pub autoscaling: Option<AutoscalingConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Running,
    Stopping,
    Stopped,
}

struct Task {
    id: String,
    revision: u32,
    secret_version: u32,
    pid: u32,
    port: u16,
    started: Instant,
    status: TaskStatus,
    stopped_at: Option<Instant>,
    control: Arc<proc::Control>,
    /// Marked for replacement by a deployment.
    replace: bool,
    cpu_percent: f64,
    last_ticks: Option<(u64, Instant)>,
    latency: Option<(u64, u64)>,
    stress: Option<(u32, Instant)>,
}

/// A task as shown by status and read by the lab backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskView {
    pub id: String,
    pub pid: u32,
    pub port: u16,
    pub revision: u32,
    pub secret_version: u32,
    pub status: TaskStatus,
    /// Balancer health; `None` once deregistered.
    pub health: Option<TargetHealth>,
    pub cpu_percent: f64,
    pub uptime_s: u64,
    /// Active latency fault: (delay ms, jitter ms).
    pub latency_ms: Option<(u64, u64)>,
    /// Active cpu-stress fault: (percent, remaining ms).
    pub stress: Option<(u32, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    pub desired: u32,
    pub running: u32,
    pub pending: u32,
    pub revision: u32,
    pub deploying: bool,
    pub avg_cpu_percent: f64,
    pub autoscaling: Option<AutoscalingConfig>,
    pub tasks: Vec<TaskView>,
}

struct State {
    tasks: Vec<Task>,
    next_id: u32,
    revision: u32,
    desired: u32,
    /// Extra tasks a deployment runs while it replaces old ones.
    surge: u32,
    /// Due times of placements not started yet, plus the count being started right now.
    placements: Vec<Instant>,
    starting: u32,
    deploying: bool,
    autoscaling: Option<AutoscalingConfig>,
    last_scale: Option<Instant>,
    cpu_history: Vec<f64>,
}

/// The service and its scheduler.
pub struct Service {
    cfg: ServiceConfig,
    state: Mutex<State>,
    balancer: Arc<Balancer>,
    cluster: Arc<Cluster>,
    secrets: Arc<SecretStore>,
    events: Arc<Events>,
    exits: mpsc::UnboundedSender<(String, String)>,
    /// Task processes not yet reaped.
    children: Arc<AtomicUsize>,
    shutting_down: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("service state lock poisoned")]
    Poisoned,
}

const TICK: Duration = Duration::from_millis(100);
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Time between deregistering a task the scheduler stops and signalling it.
const DRAIN: Duration = Duration::from_millis(300);

impl Service {
    pub fn start(
        cfg: ServiceConfig,
        balancer: Arc<Balancer>,
        cluster: Arc<Cluster>,
        secrets: Arc<SecretStore>,
        events: Arc<Events>,
        cancel: CancellationToken,
    ) -> Arc<Service> {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = State {
            tasks: Vec::new(),
            next_id: 1,
            revision: 1,
            desired: cfg.desired,
            surge: 0,
            placements: Vec::new(),
            starting: 0,
            deploying: false,
            autoscaling: cfg.autoscaling,
            last_scale: None,
            cpu_history: Vec::new(),
        };
        let s = Arc::new(Service {
            cfg,
            state: Mutex::new(state),
            balancer,
            cluster,
            secrets,
            events,
            exits: tx,
            children: Arc::new(AtomicUsize::new(0)),
            shutting_down: AtomicBool::new(false),
        });
        // The first tasks are placed at once, without the placement delay.
        if let Ok(mut st) = s.state.lock() {
            let now = Instant::now();
            st.placements = (0..s.cfg.desired).map(|_| now).collect();
        }
        tokio::spawn(s.clone().run(rx, cancel));
        s
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, ServiceError> {
        self.state.lock().map_err(|_| ServiceError::Poisoned)
    }

    async fn run(self: Arc<Self>, mut exits: mpsc::UnboundedReceiver<(String, String)>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        let mut last_cpu = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some((id, how)) = exits.recv() => self.on_exit(&id, &how),
                _ = tick.tick() => {
                    if last_cpu.elapsed() >= Duration::from_secs(1) {
                        last_cpu = Instant::now();
                        self.measure_cpu();
                        self.autoscale();
                    }
                    self.reconcile();
                }
            }
        }
    }

    fn on_exit(&self, id: &str, how: &str) {
        let Ok(mut st) = self.lock() else { return };
        if let Some(t) = st.tasks.iter_mut().find(|t| t.id == id) {
            let expected = t.status == TaskStatus::Stopping;
            t.status = TaskStatus::Stopped;
            t.stopped_at = Some(Instant::now());
            let why = if expected { "stopped by the scheduler" } else { "stopped unexpectedly" };
            self.events.push(format!("service {}: task {id} {why} ({how})", self.cfg.name));
        }
    }

    /// One scheduler pass: forget stopped tasks, start due placements, add or remove placements
    /// and tasks to reach the wanted count.
    fn reconcile(self: &Arc<Self>) {
        if self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let mut to_start = 0;
        let mut to_stop = Vec::new();
        {
            let Ok(mut st) = self.lock() else { return };
            // A task that stopped stays registered until the scheduler has replaced it.
            let delay = self.cfg.placement_delay;
            let mut gone = Vec::new();
            st.tasks.retain(|t| {
                let done = t.status == TaskStatus::Stopped && t.stopped_at.is_some_and(|s| now >= s + delay);
                if done {
                    gone.push(t.id.clone());
                }
                !done
            });
            for id in gone {
                self.balancer.deregister(&id);
            }
            let live = st.tasks.iter().filter(|t| t.status == TaskStatus::Running).count() as u32;
            let wanted = st.desired + st.surge;
            let pending = st.placements.len() as u32 + st.starting;
            if live + pending < wanted {
                let n = wanted - live - pending;
                let due = now + delay;
                st.placements.extend((0..n).map(|_| due));
                self.events.push(format!(
                    "service {}: placing {n} task(s) in {}ms (desired {}, running {live})",
                    self.cfg.name,
                    delay.as_millis(),
                    st.desired
                ));
            } else if live + pending > wanted {
                // Drop placements first, then stop tasks: old deployments' first, newest next.
                let mut excess = live + pending - wanted;
                while excess > 0 && !st.placements.is_empty() {
                    st.placements.pop();
                    excess -= 1;
                }
                if excess > 0 && st.starting == 0 {
                    let mut running: Vec<&mut Task> =
                        st.tasks.iter_mut().filter(|t| t.status == TaskStatus::Running).collect();
                    running.sort_by_key(|t| (!t.replace, std::cmp::Reverse(t.started)));
                    for t in running.into_iter().take(excess as usize) {
                        t.status = TaskStatus::Stopping;
                        to_stop.push((t.id.clone(), t.pid));
                    }
                }
            }
            let before = st.placements.len();
            st.placements.retain(|due| *due > now);
            let due = before - st.placements.len();
            st.starting += due as u32;
            to_start += due;
        }
        for (id, pid) in to_stop {
            self.stop_task(&id, pid);
        }
        for _ in 0..to_start {
            let me = self.clone();
            tokio::spawn(async move { me.start_task().await });
        }
    }

    /// Deregisters, lets requests in flight drain (the ALB's deregistration delay), then
    /// SIGTERM, then SIGKILL after a grace period.
    fn stop_task(&self, id: &str, pid: u32) {
        self.balancer.deregister(id);
        tokio::spawn(async move {
            tokio::time::sleep(DRAIN).await;
            proc::signal(pid, libc::SIGTERM);
            tokio::time::sleep(STOP_GRACE).await;
            if proc::alive(pid) {
                proc::signal(pid, libc::SIGKILL);
            }
        });
    }

    async fn start_task(self: Arc<Self>) {
        let r = self.spawn_task().await;
        let Ok(mut st) = self.lock() else { return };
        st.starting = st.starting.saturating_sub(1);
        match r {
            Ok(t) => {
                self.events.push(format!(
                    "service {}: started task {} (pid {}, revision {}, secret v{})",
                    self.cfg.name, t.id, t.pid, t.revision, t.secret_version
                ));
                self.balancer.register(&t.id, t.port);
                st.tasks.push(t);
            }
            Err(e) => self.events.push(format!("service {}: failed to start a task: {e}", self.cfg.name)),
        }
    }

    async fn spawn_task(&self) -> std::io::Result<Task> {
        let (id, revision) = {
            let mut st = self.lock().map_err(std::io::Error::other)?;
            let id = format!("t-{}", st.next_id);
            st.next_id += 1;
            (id, st.revision)
        };
        let (secret_version, password) = self.secrets.current().map_err(std::io::Error::other)?;
        let mut cmd = Command::new(proc::siege_exe()?);
        cmd.args(["lab", "task", "--id", &id, "--service", &self.cfg.name])
            .args(["--revision", &revision.to_string(), "--secret-version", &secret_version.to_string()])
            .args(["--db", &format!("127.0.0.1:{}", self.cluster.endpoint_port)])
            .env(PASSWORD_ENV, password)
            .stderr(std::process::Stdio::null());
        let started = proc::spawn_ready(cmd, Duration::from_secs(10)).await?;
        let mut child = started.child;
        self.children.fetch_add(1, Ordering::SeqCst);
        let exits = self.exits.clone();
        let wait_id = id.clone();
        let done = self.children.clone();
        tokio::spawn(async move {
            let how = match child.wait().await {
                Ok(s) => describe_exit(s),
                Err(e) => format!("wait failed: {e}"),
            };
            done.fetch_sub(1, Ordering::SeqCst);
            let _ = exits.send((wait_id, how));
        });
        Ok(Task {
            id,
            revision,
            secret_version,
            pid: started.pid,
            port: started.port,
            started: Instant::now(),
            status: TaskStatus::Running,
            stopped_at: None,
            control: Arc::new(started.control),
            replace: false,
            cpu_percent: 0.0,
            last_ticks: None,
            latency: None,
            stress: None,
        })
    }

    fn measure_cpu(&self) {
        let tps = proc::ticks_per_second();
        let Ok(mut st) = self.lock() else { return };
        let now = Instant::now();
        for t in st.tasks.iter_mut().filter(|t| t.status != TaskStatus::Stopped) {
            let Some(ticks) = proc::cpu_ticks(t.pid) else { continue };
            if let Some((prev, at)) = t.last_ticks {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    t.cpu_percent = (ticks.saturating_sub(prev)) as f64 / tps / secs * 100.0;
                }
            }
            t.last_ticks = Some((ticks, now));
        }
        let avg = avg_cpu(&st.tasks);
        st.cpu_history.push(avg);
        if st.cpu_history.len() > 3 {
            st.cpu_history.remove(0);
        }
    }

    fn autoscale(&self) {
        let Ok(mut st) = self.lock() else { return };
        let Some(a) = st.autoscaling else { return };
        if st.cpu_history.len() < 3 || st.deploying {
            return;
        }
        if st.last_scale.is_some_and(|at| at.elapsed() < Duration::from_millis(a.cooldown_ms)) {
            return;
        }
        let metric = st.cpu_history.iter().sum::<f64>() / st.cpu_history.len() as f64;
        let running = st.tasks.iter().filter(|t| t.status == TaskStatus::Running).count() as u32;
        let current = st.desired;
        if let Some(wanted) = scaling_decision(&a, running, metric, current) {
            st.desired = wanted;
            st.last_scale = Some(Instant::now());
            st.cpu_history.clear();
            self.events.push(format!(
                "autoscaling: average CPU {metric:.0}% vs target {:.0}%: desired {current} -> {wanted}",
                a.target_cpu_percent
            ));
        }
    }

    /// Sends a fault command line to the selected running tasks; returns the ids that applied it.
    async fn tell(&self, ids: &[String], line: &str, update: impl Fn(&mut Task)) -> Vec<String> {
        let targets: Vec<(String, Arc<proc::Control>)> = match self.lock() {
            Ok(mut st) => st
                .tasks
                .iter_mut()
                .filter(|t| t.status == TaskStatus::Running && ids.contains(&t.id))
                .map(|t| {
                    update(t);
                    (t.id.clone(), t.control.clone())
                })
                .collect(),
            Err(_) => return Vec::new(),
        };
        let mut reached = Vec::new();
        for (id, control) in targets {
            if control.send(line).await {
                reached.push(id);
            }
        }
        reached
    }

    /// Adds `delay` ± `jitter` to everything the selected tasks serve and send.
    pub async fn set_latency(&self, ids: &[String], delay_ms: u64, jitter_ms: u64) -> Vec<String> {
        let r = self
            .tell(ids, &format!("latency {delay_ms} {jitter_ms}"), |t| t.latency = Some((delay_ms, jitter_ms)))
            .await;
        self.events.push(format!("fault: latency {delay_ms}ms ±{jitter_ms}ms on {}", list(&r)));
        r
    }

    /// Burns `percent` of one core inside the selected tasks for `duration`.
    pub async fn stress(&self, ids: &[String], percent: u32, duration: Duration) -> Vec<String> {
        let until = Instant::now() + duration;
        let r = self
            .tell(ids, &format!("stress {percent} {}", duration.as_millis()), |t| t.stress = Some((percent, until)))
            .await;
        self.events.push(format!("fault: cpu-stress {percent}% for {}s on {}", duration.as_secs(), list(&r)));
        r
    }

    /// Ends latency and/or stress (`what`: latency, stress, all) on the selected tasks (all when
    /// `ids` is empty). Idempotent.
    pub async fn clear(&self, ids: &[String], what: &str) -> Vec<String> {
        let all: Vec<String> = if ids.is_empty() {
            self.lock().map(|st| st.tasks.iter().map(|t| t.id.clone()).collect()).unwrap_or_default()
        } else {
            ids.to_vec()
        };
        let w = what.to_string();
        let r = self
            .tell(&all, &format!("clear {what}"), move |t| {
                if w == "latency" || w == "all" {
                    t.latency = None;
                }
                if w == "stress" || w == "all" {
                    t.stress = None;
                }
            })
            .await;
        self.events.push(format!("fault: cleared {what} on {}", list(&r)));
        r
    }

    /// Sends `sig` to the selected running tasks; returns the ids signalled.
    pub fn kill(&self, ids: &[String], sig: libc::c_int) -> Vec<String> {
        let Ok(st) = self.lock() else { return Vec::new() };
        let mut killed = Vec::new();
        for t in st.tasks.iter().filter(|t| t.status == TaskStatus::Running && ids.contains(&t.id)) {
            if proc::signal(t.pid, sig) {
                killed.push(t.id.clone());
            }
        }
        let name = if sig == libc::SIGKILL { "SIGKILL" } else { "SIGTERM" };
        self.events.push(format!("fault: sent {name} to {}", list(&killed)));
        killed
    }

    /// Starts a rolling replacement of every running task (`stale_only`: only those holding a
    /// secret version other than the current one). Returns the ids to be replaced.
    pub fn redeploy(self: &Arc<Self>, stale_only: bool) -> Vec<String> {
        let current = self.secrets.current().map(|(v, _)| v).unwrap_or(0);
        let (marked, start) = {
            let Ok(mut st) = self.lock() else { return Vec::new() };
            st.revision += 1;
            let mut marked = Vec::new();
            for t in st.tasks.iter_mut().filter(|t| t.status == TaskStatus::Running) {
                if !stale_only || t.secret_version != current {
                    t.replace = true;
                    marked.push(t.id.clone());
                }
            }
            let start = !st.deploying && !marked.is_empty();
            if start {
                st.deploying = true;
            }
            (marked, start)
        };
        self.events.push(format!("service {}: deployment started, replacing {}", self.cfg.name, list(&marked)));
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.deploy().await });
        }
        marked
    }

    /// Replaces marked tasks in batches, as ECS does with its minimum healthy and maximum
    /// percent: with room above the desired count, start a batch of replacements (surge), wait
    /// until they are healthy, then let the scheduler stop as many marked tasks — healthy tasks
    /// never drop below the desired count. Without room (maximum 100%), stop a batch of marked
    /// tasks first (as many as the minimum healthy percent allows, at least one) and wait for
    /// the scheduler's replacements to be healthy.
    async fn deploy(self: Arc<Self>) {
        loop {
            let (marked, desired) = match self.lock() {
                Ok(st) => (
                    st.tasks.iter().filter(|t| t.replace && t.status == TaskStatus::Running).count() as u32,
                    st.desired,
                ),
                Err(_) => return,
            };
            if marked == 0 || self.shutting_down.load(Ordering::SeqCst) {
                break;
            }
            let keep = (self.cfg.min_healthy * desired as f64).ceil() as u32;
            let room = ((self.cfg.max_percent * desired as f64).floor() as u32).saturating_sub(desired);
            if room == 0 {
                let batch = desired.saturating_sub(keep).max(1).min(marked);
                let victims: Vec<(String, u32)> = match self.lock() {
                    Ok(mut st) => st
                        .tasks
                        .iter_mut()
                        .filter(|t| t.replace && t.status == TaskStatus::Running)
                        .take(batch as usize)
                        .map(|t| {
                            t.status = TaskStatus::Stopping;
                            (t.id.clone(), t.pid)
                        })
                        .collect(),
                    Err(_) => return,
                };
                for (id, pid) in victims {
                    self.stop_task(&id, pid);
                }
                self.wait_replacements_healthy().await;
                continue;
            }
            let batch = room.min(marked);
            if let Ok(mut st) = self.lock() {
                st.surge = batch;
            }
            self.wait_replacements_healthy().await;
            if let Ok(mut st) = self.lock() {
                st.surge = 0;
            }
            // The scheduler now stops `batch` surplus tasks, marked ones first.
            let deadline = Instant::now() + DRAIN + STOP_GRACE * 2;
            while Instant::now() < deadline {
                let left = self
                    .lock()
                    .map(|st| st.tasks.iter().filter(|t| t.replace && t.status == TaskStatus::Running).count() as u32)
                    .unwrap_or(0);
                if left + batch <= marked {
                    break;
                }
                tokio::time::sleep(TICK).await;
            }
        }
        if let Ok(mut st) = self.lock() {
            st.deploying = false;
            st.surge = 0;
        }
        self.events.push(format!("service {}: deployment completed", self.cfg.name));
    }

    /// Waits until every placement has started and every unmarked running task is healthy;
    /// bounded, so that a task that never gets healthy cannot wedge a deployment forever.
    async fn wait_replacements_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        tokio::time::sleep(TICK * 2).await;
        while Instant::now() < deadline {
            let ready = match self.lock() {
                Ok(st) => {
                    st.placements.is_empty()
                        && st.starting == 0
                        && st
                            .tasks
                            .iter()
                            .filter(|t| t.status == TaskStatus::Running && !t.replace)
                            .all(|t| self.balancer.health_of(&t.id) == Some(TargetHealth::Healthy))
                }
                Err(_) => return,
            };
            if ready {
                return;
            }
            tokio::time::sleep(TICK).await;
        }
        self.events.push(format!("service {}: deployment step timed out waiting for healthy tasks", self.cfg.name));
    }

    /// Changes the desired count and/or autoscaling.
    pub fn configure(&self, desired: Option<u32>, autoscaling: Option<Option<AutoscalingConfig>>) {
        if let Ok(mut st) = self.lock() {
            if let Some(d) = desired {
                st.desired = d;
                self.events.push(format!("service {}: desired count set to {d}", self.cfg.name));
            }
            if let Some(a) = autoscaling {
                st.autoscaling = a;
            }
        }
    }

    pub fn view(&self) -> ServiceView {
        let Ok(st) = self.lock() else {
            return ServiceView {
                name: self.cfg.name.clone(),
                desired: 0,
                running: 0,
                pending: 0,
                revision: 0,
                deploying: false,
                avg_cpu_percent: 0.0,
                autoscaling: None,
                tasks: Vec::new(),
            };
        };
        let now = Instant::now();
        let targets = self.balancer.targets();
        let tasks: Vec<TaskView> = st
            .tasks
            .iter()
            .map(|t| TaskView {
                id: t.id.clone(),
                pid: t.pid,
                port: t.port,
                revision: t.revision,
                secret_version: t.secret_version,
                status: t.status,
                health: targets.iter().find(|x| x.id == t.id).map(|x| x.health),
                cpu_percent: (t.cpu_percent * 10.0).round() / 10.0,
                uptime_s: now.duration_since(t.started).as_secs(),
                latency_ms: t.latency,
                stress: t
                    .stress
                    .filter(|(_, until)| *until > now)
                    .map(|(p, until)| (p, (until - now).as_millis() as u64)),
            })
            .collect();
        ServiceView {
            name: self.cfg.name.clone(),
            desired: st.desired,
            running: st.tasks.iter().filter(|t| t.status == TaskStatus::Running).count() as u32,
            pending: st.placements.len() as u32 + st.starting,
            revision: st.revision,
            deploying: st.deploying,
            avg_cpu_percent: (avg_cpu(&st.tasks) * 10.0).round() / 10.0,
            autoscaling: st.autoscaling,
            tasks,
        }
    }

    /// Pids of task processes not yet reaped.
    pub fn pids(&self) -> Vec<u32> {
        self.lock()
            .map(|st| st.tasks.iter().filter(|t| t.status != TaskStatus::Stopped).map(|t| t.pid).collect())
            .unwrap_or_default()
    }

    /// Stops every task (SIGTERM, then SIGKILL) and waits until all are reaped.
    pub async fn stop_all(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        if let Ok(mut st) = self.lock() {
            for t in st.tasks.iter_mut().filter(|t| t.status == TaskStatus::Running) {
                t.status = TaskStatus::Stopping;
            }
        }
        for pid in self.pids() {
            proc::signal(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while self.children.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for pid in self.pids() {
            proc::signal(pid, libc::SIGKILL);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while self.children.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Target tracking: the new desired count when `running` tasks average `metric` percent CPU, or
/// `None` to keep `current`. Scales out as soon as the metric is above the target, in only when
/// it is well below (80% of the target), so that the count does not flap around it.
pub fn scaling_decision(a: &AutoscalingConfig, running: u32, metric: f64, current: u32) -> Option<u32> {
    if running == 0 || a.target_cpu_percent <= 0.0 || !metric.is_finite() {
        return None;
    }
    let wanted =
        ((running as f64 * metric / a.target_cpu_percent).ceil() as u32).clamp(a.min.max(1), a.max.max(a.min).max(1));
    let out = metric > a.target_cpu_percent && wanted > current;
    let inn = metric < a.target_cpu_percent * 0.8 && wanted < current;
    (out || inn).then_some(wanted)
}

fn avg_cpu(tasks: &[Task]) -> f64 {
    let running: Vec<f64> = tasks.iter().filter(|t| t.status == TaskStatus::Running).map(|t| t.cpu_percent).collect();
    if running.is_empty() { 0.0 } else { running.iter().sum::<f64>() / running.len() as f64 }
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() { "no task".into() } else { ids.join(", ") }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown exit".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: AutoscalingConfig = AutoscalingConfig { min: 2, max: 6, target_cpu_percent: 50.0, cooldown_ms: 0 };

    #[test]
    fn scales_out_proportionally_and_within_max() {
        assert_eq!(scaling_decision(&A, 2, 100.0, 2), Some(4));
        assert_eq!(scaling_decision(&A, 3, 400.0, 3), Some(6));
        // At the target: nothing to do.
        assert_eq!(scaling_decision(&A, 3, 50.0, 3), None);
    }

    #[test]
    fn scales_in_only_well_below_target_and_not_below_min() {
        assert_eq!(scaling_decision(&A, 4, 45.0, 4), None);
        assert_eq!(scaling_decision(&A, 4, 10.0, 4), Some(2));
        assert_eq!(scaling_decision(&A, 2, 0.0, 2), None);
        assert_eq!(scaling_decision(&A, 0, 90.0, 2), None);
    }
}
