//! The AWS samplers: one task per source (the ECS service, ELB target health, the Aurora writer,
//! three groups of CloudWatch metrics, FIS experiments), each on its own cadence and with its own deadline per
//! read, keeping the latest value of its fields and when it was read. [`Samplers::sample`]
//! answers at once from there: a field whose value is older than its source's freshness bound is
//! `None` and named in [`Sample::stale`], so that a slow or failing source (the SDK retries for
//! seconds) leaves only its own fields unknown, never the others.
//!
//! What the samplers see change (task counts, healthy targets, the writer) and a source failing
//! or answering again become events, which the run's timeline shows at the time they were seen.

use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;

use super::ecs::ServiceCounts;
use super::watch::{CloudMetrics, MetricGroup, PERIOD_SECS};
use super::{AwsBackend, State};
use crate::backend::{BackendError, Sample};

/// Longest one `DescribeAlarms` of an `alarm:` stop condition may take.
pub(super) const ALARM_DEADLINE: Duration = Duration::from_secs(5);
/// Longest the first sample waits for the sources' first answers.
const FIRST_WAIT: Duration = Duration::from_secs(3);

/// Where sampled values come from; one task each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Service,
    Targets,
    Writer,
    Metrics(MetricGroup),
    Experiments,
}

/// How often a source is read, how long one read may take, and how long its value stays current.
#[derive(Debug, Clone, Copy)]
struct Cadence {
    every: Duration,
    deadline: Duration,
    fresh: Duration,
}

impl Source {
    const ALL: [Source; 7] = [
        Source::Service,
        Source::Targets,
        Source::Writer,
        Source::Metrics(MetricGroup::AlbCounts),
        Source::Metrics(MetricGroup::AlbLatency),
        Source::Metrics(MetricGroup::Cpu),
        Source::Experiments,
    ];

    fn cadence(self) -> Cadence {
        let secs = Duration::from_secs;
        match self {
            Source::Service => Cadence { every: secs(1), deadline: secs(4), fresh: secs(5) },
            Source::Targets | Source::Writer => Cadence { every: secs(1), deadline: secs(3), fresh: secs(5) },
            // Minute-grained and priced per metric: once a minute; each metric has its own
            // deadline inside, this one bounds them all.
            Source::Metrics(_) => Cadence { every: secs(60), deadline: secs(12), fresh: secs(150) },
            Source::Experiments => Cadence { every: secs(2), deadline: secs(5), fresh: secs(5) },
        }
    }

    /// Whether the target has this source at all.
    fn configured(self, state: &State) -> bool {
        match self {
            Source::Targets => state.target.target_group.is_some(),
            Source::Writer => state.target.db_cluster.is_some(),
            Source::Metrics(MetricGroup::AlbCounts | MetricGroup::AlbLatency) => state.lb_dimension.is_some(),
            Source::Service | Source::Metrics(MetricGroup::Cpu) | Source::Experiments => true,
        }
    }

    /// What is read, for the events: `ECS service api`.
    fn label(self, state: &State) -> String {
        let t = &state.target;
        match self {
            Source::Service => format!("ECS service {}", t.service),
            Source::Targets => format!("target group {}", short_name(t.target_group.as_deref().unwrap_or_default())),
            Source::Writer => format!("Aurora cluster {}", t.db_cluster.as_deref().unwrap_or_default()),
            Source::Metrics(g) => format!("CloudWatch {}", g.label()),
            Source::Experiments => "FIS experiments".into(),
        }
    }

    /// The calls of one read, for a read that ran out of time.
    fn calls(self) -> &'static str {
        match self {
            Source::Service => "ecs DescribeServices/ListTasks/DescribeTasks",
            Source::Targets => "elasticloadbalancing DescribeTargetHealth",
            Source::Writer => "rds DescribeDBClusters",
            Source::Metrics(_) => "cloudwatch GetMetricData",
            Source::Experiments => "fis GetExperiment",
        }
    }
}

/// The name in a target group ARN (`…:targetgroup/NAME/ID`), or the name as given.
fn short_name(tg: &str) -> &str {
    tg.split_once(":targetgroup/").and_then(|(_, rest)| rest.split('/').next()).unwrap_or(tg)
}

/// What one read of a source returned.
enum Observation {
    Service(ServiceCounts, Vec<String>),
    Targets(u32, u32),
    Writer(Option<String>),
    Metrics(MetricGroup, CloudMetrics),
    Experiments(Vec<String>),
}

/// The latest value of one field (or group of fields) and when its read started.
struct Reading<T> {
    value: Option<(T, Instant)>,
    /// The read failed last time (reported once, until it answers again).
    failing: bool,
}

impl<T> Default for Reading<T> {
    fn default() -> Self {
        Reading { value: None, failing: false }
    }
}

impl<T: PartialEq> Reading<T> {
    /// The value if read within `fresh` of `now`.
    fn fresh(&self, now: Instant, fresh: Duration) -> Option<&T> {
        self.value.as_ref().filter(|(_, at)| now.saturating_duration_since(*at) <= fresh).map(|(v, _)| v)
    }

    /// Stores `value` read at `at`; returns the previous value when it differs.
    fn set(&mut self, value: T, at: Instant) -> Option<T> {
        let previous = self.value.take().map(|(v, _)| v);
        let changed = previous.filter(|p| *p != value);
        self.value = Some((value, at));
        changed
    }
}

/// The CloudWatch-derived fields of a [`Sample`], by name.
const METRIC_FIELDS: [&str; 4] = ["lb_rps", "lb_5xx_rate", "lb_response_ms", "cpu_percent"];

#[derive(Default)]
struct Latest {
    service: Reading<ServiceCounts>,
    targets: Reading<(u32, u32)>,
    writer: Reading<Option<String>>,
    /// One per [`METRIC_FIELDS`] entry.
    metrics: [Reading<Option<f64>>; 4],
    /// CloudWatch metrics whose last read failed (reported once each).
    failing_metrics: Vec<&'static str>,
    /// Sources that have answered (or failed) at least once.
    tried: Vec<Source>,
    /// Events not yet returned by a sample, oldest first.
    events: Vec<String>,
}

/// The sampler tasks of one backend and what they read.
#[derive(Default)]
pub(super) struct Samplers {
    started: tokio::sync::OnceCell<()>,
    latest: Mutex<Latest>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Drop for Samplers {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.get_mut() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// Starts the sampler tasks of `backend` (once) and waits up to [`FIRST_WAIT`] for the first
/// answer of every per-second source (task counts, target health, writer), so that the first
/// sample already holds them; CloudWatch, however slow, is not waited for.
pub(super) async fn start(backend: &AwsBackend) {
    backend
        .samplers
        .started
        .get_or_init(|| async {
            let sources: Vec<Source> = Source::ALL.into_iter().filter(|s| s.configured(backend)).collect();
            let mut handles = Vec::new();
            for source in &sources {
                let weak = std::sync::Arc::downgrade(&backend.0);
                handles.push(tokio::spawn(run(weak, *source)).abort_handle());
            }
            if let Ok(mut tasks) = backend.samplers.tasks.lock() {
                tasks.extend(handles);
            }
            let waited: Vec<&Source> = sources.iter().filter(|s| s.cadence().every <= Duration::from_secs(1)).collect();
            let until = Instant::now() + FIRST_WAIT;
            while Instant::now() < until {
                let all = backend.samplers.latest.lock().map(|l| waited.iter().all(|s| l.tried.contains(s)));
                if all.unwrap_or(true) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
}

/// One source's task: reads, records, waits for its next turn; ends with the backend.
async fn run(state: Weak<State>, source: Source) {
    let cadence = source.cadence();
    loop {
        let Some(strong) = state.upgrade() else { return };
        let backend = AwsBackend(strong);
        let at = Instant::now();
        let result = match tokio::time::timeout(cadence.deadline, observe(&backend, source)).await {
            Ok(r) => r,
            Err(_) => {
                Err(BackendError::Api(format!("{}: no answer within {}s", source.calls(), cadence.deadline.as_secs())))
            }
        };
        backend.samplers.record(&backend, source, at, result);
        drop(backend);
        tokio::time::sleep_until((at + cadence.every).into()).await;
    }
}

async fn observe(b: &AwsBackend, source: Source) -> Result<Observation, BackendError> {
    match source {
        Source::Service => b.service_counts().await.map(|(c, events)| Observation::Service(c, events)),
        Source::Targets => {
            let tg = b.target.target_group.as_deref().unwrap_or_default();
            b.target_health(tg).await.map(|(h, u)| Observation::Targets(h, u))
        }
        Source::Writer => b.writer(b.target.db_cluster.as_deref().unwrap_or_default()).await.map(Observation::Writer),
        Source::Metrics(g) => Ok(Observation::Metrics(g, b.metric_groups(&[g]).await)),
        Source::Experiments => Ok(Observation::Experiments(b.watch_experiments().await)),
    }
}

impl Samplers {
    /// Stores what one read of `source` returned, and the events it makes.
    fn record(&self, state: &State, source: Source, at: Instant, result: Result<Observation, BackendError>) {
        let Ok(mut l) = self.latest.lock() else { return };
        let l = &mut *l;
        if !l.tried.contains(&source) {
            l.tried.push(source);
        }
        let label = source.label(state);
        let fresh = source.cadence().fresh.as_secs();
        let obs = match result {
            Ok(obs) => obs,
            Err(e) => {
                let reading_failing = match source {
                    Source::Service => Some(&mut l.service.failing),
                    Source::Targets => Some(&mut l.targets.failing),
                    Source::Writer => Some(&mut l.writer.failing),
                    Source::Metrics(_) => None,
                    Source::Experiments => return,
                };
                match reading_failing {
                    Some(failing) => {
                        if !std::mem::replace(failing, true) {
                            l.events.push(format!("sampling {label} failed, its values are stale after {fresh}s: {e}"));
                        }
                    }
                    None => {
                        if let Source::Metrics(g) = source {
                            fail_metrics(l, &[g.label()], g.fields(), &e.to_string());
                        }
                    }
                }
                return;
            }
        };
        let recovered = |failing: &mut bool, events: &mut Vec<String>| {
            if std::mem::replace(failing, false) {
                events.push(format!("sampling {label} answers again"));
            }
        };
        match obs {
            Observation::Service(counts, events) => {
                recovered(&mut l.service.failing, &mut l.events);
                l.events.extend(events);
                if let Some(old) = l.service.set(counts, at)
                    && (old.running != counts.running || old.desired != counts.desired)
                {
                    l.events.push(format!(
                        "{label}: running tasks {} -> {} (desired {}, pending {})",
                        old.running, counts.running, counts.desired, counts.pending
                    ));
                }
            }
            Observation::Targets(healthy, unhealthy) => {
                recovered(&mut l.targets.failing, &mut l.events);
                if let Some((old_h, old_u)) = l.targets.set((healthy, unhealthy), at) {
                    l.events.push(format!(
                        "{label}: healthy targets {old_h} -> {healthy}, unhealthy {old_u} -> {unhealthy}"
                    ));
                }
            }
            Observation::Writer(writer) => {
                recovered(&mut l.writer.failing, &mut l.events);
                if let Some(old) = l.writer.set(writer.clone(), at) {
                    let name = |w: &Option<String>| w.clone().unwrap_or_else(|| "none (failing over)".into());
                    l.events.push(format!("{label}: writer {} -> {}", name(&old), name(&writer)));
                }
            }
            Observation::Metrics(g, m) => record_metrics(l, g, &m, at),
            Observation::Experiments(events) => l.events.extend(events),
        }
    }

    /// The latest values, at once; see the module docs.
    pub(super) fn sample(&self, state: &State) -> Sample {
        let now = Instant::now();
        let mut s = Sample::default();
        let Ok(mut l) = self.latest.lock() else { return s };
        let fresh = |source: Source| source.cadence().fresh;
        match l.service.fresh(now, fresh(Source::Service)) {
            Some(c) => {
                s.desired_tasks = Some(c.desired);
                s.running_tasks = Some(c.running);
                s.pending_tasks = Some(c.pending);
            }
            None => s.stale.extend(["running_tasks", "desired_tasks", "pending_tasks"].map(String::from)),
        }
        if Source::Targets.configured(state) {
            match l.targets.fresh(now, fresh(Source::Targets)) {
                Some((h, u)) => {
                    s.healthy_targets = Some(*h);
                    s.unhealthy_targets = Some(*u);
                }
                None => s.stale.extend(["healthy_targets", "unhealthy_targets"].map(String::from)),
            }
        }
        if Source::Writer.configured(state) {
            match l.writer.fresh(now, fresh(Source::Writer)) {
                Some(w) => s.db_writer = w.clone(),
                None => s.stale.push("db_writer".into()),
            }
        }
        let mut metric = |i: usize| match l.metrics[i].fresh(now, fresh(Source::Metrics(MetricGroup::Cpu))) {
            Some(v) => *v,
            None => {
                // Without a balancer the balancer's fields are not observable, not stale.
                if Source::Metrics(group_of(METRIC_FIELDS[i])).configured(state) {
                    s.stale.push(METRIC_FIELDS[i].to_string());
                }
                None
            }
        };
        let (rps, rate, response, cpu) = (metric(0), metric(1), metric(2), metric(3));
        s.lb_rps = rps;
        s.lb_5xx_rate = rate;
        s.lb_response_ms = response;
        s.cpu_percent = cpu;
        s.events = std::mem::take(&mut l.events);
        s
    }
}

/// The metric group a [`METRIC_FIELDS`] entry comes from.
fn group_of(field: &str) -> MetricGroup {
    MetricGroup::ALL.into_iter().find(|g| g.fields().contains(&field)).unwrap_or(MetricGroup::Cpu)
}

/// Stores one read of a group of CloudWatch metrics: each field read keeps its new value, each
/// field whose metric failed keeps its old one (until it is stale).
fn record_metrics(l: &mut Latest, group: MetricGroup, m: &CloudMetrics, at: Instant) {
    let values = [
        m.request_count.map(|n| n / f64::from(PERIOD_SECS)),
        match (m.http_5xx, m.request_count) {
            // ELB 503s are not in RequestCount (no target was chosen): at most 1.
            (Some(bad), Some(all)) if all > 0.0 => Some((bad / all).min(1.0)),
            _ => None,
        },
        m.target_response_p95_ms,
        m.cpu_percent,
    ];
    let mut failed_fields: Vec<&str> = Vec::new();
    for f in &m.failed {
        failed_fields.extend(f.fields);
        fail_metrics(l, &[f.metric], f.fields, &f.error);
    }
    let mine = |n: &&str| *n == group.label() || group.metrics().contains(n);
    let answered: Vec<&'static str> =
        l.failing_metrics.iter().copied().filter(mine).filter(|n| !m.failed.iter().any(|f| f.metric == *n)).collect();
    for name in answered {
        l.failing_metrics.retain(|n| *n != name);
        l.events.push(format!("sampling CloudWatch {name} answers again"));
    }
    for (i, value) in values.into_iter().enumerate() {
        if group.fields().contains(&METRIC_FIELDS[i]) && !failed_fields.contains(&METRIC_FIELDS[i]) {
            l.metrics[i].set(value, at);
        }
    }
}

/// Notes metrics that could not be read (once until they answer again); their fields keep their
/// old values until stale.
fn fail_metrics(l: &mut Latest, metrics: &[&'static str], fields: &[&str], error: &str) {
    for name in metrics {
        if !l.failing_metrics.contains(name) {
            l.failing_metrics.push(name);
            let fresh = Source::Metrics(MetricGroup::Cpu).cadence().fresh.as_secs();
            l.events.push(format!(
                "sampling CloudWatch {name} failed ({} stale after {fresh}s): {error}",
                fields.join(", ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_is_fresh_within_its_bound_and_reports_changes() {
        let mut r: Reading<u32> = Reading::default();
        let t0 = Instant::now();
        assert_eq!(r.fresh(t0, Duration::from_secs(5)), None, "never read");
        assert_eq!(r.set(3, t0), None, "a first value is no change");
        assert_eq!(r.set(3, t0), None);
        assert_eq!(r.set(2, t0), Some(3));
        assert_eq!(r.fresh(t0 + Duration::from_secs(5), Duration::from_secs(5)), Some(&2));
        assert_eq!(r.fresh(t0 + Duration::from_secs(6), Duration::from_secs(5)), None, "stale");
    }

    #[test]
    fn target_group_names_are_short() {
        assert_eq!(short_name("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/api/0123"), "api");
        assert_eq!(short_name("api"), "api");
    }

    #[test]
    fn a_failing_metric_keeps_the_others() {
        let mut l = Latest::default();
        let t0 = Instant::now();
        let all = CloudMetrics {
            request_count: Some(600.0),
            http_5xx: Some(6.0),
            target_response_p95_ms: Some(120.0),
            cpu_percent: Some(40.0),
            failed: vec![],
        };
        for g in MetricGroup::ALL {
            record_metrics(&mut l, g, &all, t0);
        }
        let p95_fails = CloudMetrics {
            request_count: Some(1200.0),
            target_response_p95_ms: None,
            failed: vec![super::super::MetricFailure {
                metric: "TargetResponseTime p95",
                fields: &["lb_response_ms"],
                error: "cloudwatch GetMetricData: HTTP 500 Internal Server Error".into(),
            }],
            ..all.clone()
        };
        let t1 = t0 + Duration::from_secs(60);
        for g in MetricGroup::ALL {
            record_metrics(&mut l, g, &p95_fails, t1);
        }
        let value = |l: &Latest, i: usize| l.metrics[i].value.as_ref().map(|(v, at)| (*v, *at));
        assert_eq!(value(&l, 0), Some((Some(20.0), t1)), "requests read anew");
        assert_eq!(value(&l, 2), Some((Some(120.0), t0)), "p95 keeps its old value and time");
        assert_eq!(value(&l, 3), Some((Some(40.0), t1)));
        assert_eq!(l.events.len(), 1, "{:?}", l.events);
        assert!(l.events[0].contains("TargetResponseTime p95") && l.events[0].contains("lb_response_ms"));
        record_metrics(&mut l, MetricGroup::AlbLatency, &p95_fails, t1);
        assert_eq!(l.events.len(), 1, "reported once");
        record_metrics(&mut l, MetricGroup::Cpu, &all, t1);
        assert_eq!(l.events.len(), 1, "another group's answer is not this one's");
        record_metrics(&mut l, MetricGroup::AlbLatency, &all, t1);
        assert_eq!(
            l.events.last().map(String::as_str),
            Some("sampling CloudWatch TargetResponseTime p95 answers again")
        );
    }
}
