//! The validated scenario: what the engine runs. Every value here has been checked; units are
//! normalised (durations as [`Duration`], percentages as fractions in `0.0..=1.0`, latencies in ms).

use std::time::Duration;

use serde::Serialize;

pub use crate::faults::{FaultKind, KillSignal, Selection};

/// A validated scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// Path of the runbook, relative to the scenario file's directory as written.
    pub runbook: Option<String>,
    /// Seed for random selections; `None` means "pick one and record it in the report".
    pub seed: Option<u64>,
    pub target: Target,
    pub load: Load,
    pub steady_state: SteadyState,
    pub faults: Vec<Fault>,
    /// The manual catalog: faults declared without `at`, injected only when commanded during the
    /// run (never by the timeline). Names are unique across `faults` and `manual`.
    pub manual: Vec<ManualFault>,
    pub stop: Vec<StopCondition>,
    pub recovery: Recovery,
}

/// What the scenario runs against.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Lab(LabTarget),
    Aws(AwsTarget),
}

#[derive(Debug, Clone, Serialize)]
pub struct LabTarget {
    /// Service name (the lab runs one service; the name labels reports).
    pub service: String,
    /// Desired task count of the lab service.
    pub tasks: u32,
    /// Control URL of a lab started separately (`siege lab up`); `None` starts one for the run.
    pub control: Option<String>,
    /// Target-tracking autoscaling on average task CPU; off when `None`.
    pub autoscaling: Option<Autoscaling>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Autoscaling {
    pub min: u32,
    pub max: u32,
    /// Target average CPU as a fraction of one core (0.5 = 50%).
    pub target_cpu: f64,
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct AwsTarget {
    /// `None`: the SDK's region chain (`AWS_REGION`, the profile) decides when connecting.
    pub region: Option<String>,
    /// 12-digit account id the credentials must belong to before anything is mutated.
    pub account: Option<String>,
    pub cluster: String,
    pub service: String,
    pub target_group: Option<String>,
    pub load_balancer: Option<String>,
    pub db_cluster: Option<String>,
    /// Secrets Manager secret id (name or ARN) for `secret-drift`.
    pub secret: Option<String>,
    /// Base URL the load is sent to (the ALB's DNS name, or a custom domain).
    pub url: Option<String>,
    /// Endpoint override for every AWS service (a local emulator); `AWS_ENDPOINT_URL` also works.
    pub endpoint: Option<String>,
    /// IAM role FIS assumes for experiments siege creates.
    pub fis_role: Option<String>,
    /// Largest selection (fraction) allowed unless `allow_full_outage` is set.
    pub max_select: f64,
    pub allow_full_outage: bool,
}

/// The load profile: open model, constant arrival rate with stages.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// Path (and query) relative to the target's entry point, or an absolute `http(s)://` URL.
    pub url: String,
    pub rate: Rate,
    pub stages: Vec<Stage>,
    pub duration: Duration,
    pub timeout: Duration,
    /// `https://`: accept any certificate (a self-signed test endpoint).
    pub insecure_tls: bool,
}

/// Requests per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub per_second: f64,
}

/// A change of rate for a while (a spike), optionally ramped.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub at: Duration,
    pub rate: Rate,
    pub duration: Duration,
    /// Time to ramp linearly from the previous rate to `rate`; zero for a step.
    pub ramp: Duration,
}

impl Load {
    /// The scheduled arrival rate at `t` since the load started.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let base = self.rate.per_second;
        for s in &self.stages {
            if t >= s.at && t < s.at + s.duration {
                if !s.ramp.is_zero() && t < s.at + s.ramp {
                    let f = (t - s.at).as_secs_f64() / s.ramp.as_secs_f64();
                    return base + (s.rate.per_second - base) * f;
                }
                return s.rate.per_second;
            }
        }
        base
    }
}

/// The hypothesis: all checks must hold before the faults and again after them.
#[derive(Debug, Clone, Serialize)]
pub struct SteadyState {
    pub checks: Vec<Check>,
}

/// A metric compared to a threshold, e.g. `error_rate < 1%`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub metric: Metric,
    pub cmp: Comparison,
}

/// What siege can observe and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Failed requests / all requests, as a fraction.
    ErrorRate,
    /// Achieved requests per second.
    Rps,
    /// Latency percentiles in milliseconds, from the scheduled send time.
    P50,
    P95,
    P99,
    /// Healthy targets behind the balancer.
    HealthyTargets,
    /// Running tasks of the service.
    RunningTasks,
}

impl Metric {
    pub const ALL: &'static [(&'static str, Metric)] = &[
        ("error_rate", Metric::ErrorRate),
        ("rps", Metric::Rps),
        ("p50", Metric::P50),
        ("p95", Metric::P95),
        ("p99", Metric::P99),
        ("healthy_targets", Metric::HealthyTargets),
        ("running_tasks", Metric::RunningTasks),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub op: Op,
    /// Normalised: a fraction for percentages, milliseconds for latencies, a count otherwise.
    pub value: f64,
}

impl Comparison {
    pub fn holds(&self, observed: f64) -> bool {
        match self.op {
            Op::Lt => observed < self.value,
            Op::Le => observed <= self.value,
            Op::Gt => observed > self.value,
            Op::Ge => observed >= self.value,
            Op::Eq => observed == self.value,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

/// One fault on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Unique within the scenario; defaults to the type, suffixed when repeated.
    pub name: String,
    pub at: Duration,
    /// How long the fault stays before the engine reverts it. `None`: instantaneous faults
    /// (task-kill, redeploy) need no revert; persistent ones (secret-drift) are reverted when the
    /// run ends.
    pub duration: Option<Duration>,
    pub kind: FaultKind,
}

impl Fault {
    /// What a backend carries out for this fault.
    pub fn step(&self) -> crate::faults::Step {
        crate::faults::Step {
            fault: self.name.clone(),
            kind: self.kind.type_name(),
            action: self.kind.action(),
            select: self.kind.selection(),
            duration: self.duration,
        }
    }

    /// When the fault's effect ends on the timeline: `at + for` for faults that last, the end of
    /// the writer outage for a lab `db-failover`, the injection time for instantaneous faults.
    pub fn ends_at(&self) -> Duration {
        let outage = (self.kind.def().ends_after)(&self.kind);
        self.at + self.duration.unwrap_or_default().max(outage)
    }
}

/// One fault of the manual catalog (`manual:`): a fault entry without `at`, injected when a
/// command asks for it during the run.
#[derive(Debug, Clone, Serialize)]
pub struct ManualFault {
    /// Unique within the scenario (across `faults` and `manual`).
    pub name: String,
    /// How long it stays from its injection before the engine reverts it; `None` as for
    /// [`Fault::duration`].
    pub duration: Option<Duration>,
    pub kind: FaultKind,
}

impl ManualFault {
    /// The fault as injected at `at` (time since the load started): it lasts its `for:` from
    /// there, like a timeline fault at `at`.
    pub fn at(&self, at: Duration) -> Fault {
        Fault { name: self.name.clone(), at, duration: self.duration, kind: self.kind.clone() }
    }

    /// One line for `siege plan`: what injecting it would do and how long it would last.
    pub fn describe(&self) -> String {
        use super::units::format_duration as d;
        let what = self.kind.describe();
        let lasts = match self.duration {
            Some(dur) => format!("for {} from its injection, then reverted", d(dur)),
            None if self.kind.def().timing == crate::faults::Timing::Persistent => "until the run ends".to_string(),
            None => "at once".to_string(),
        };
        let picked = if self.kind.selection().is_some() { "; tasks chosen when injected" } else { "" };
        format!("{} ({}): {what}, {lasts}{picked}", self.name, self.kind.type_name())
    }
}

/// Any one of these aborts the run; every fault is then reverted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StopCondition {
    /// `error_rate > 50% for 15s`: the comparison held in every one-second window for `window`.
    Threshold { metric: Metric, cmp: Comparison, window: Duration, text: String },
    /// A CloudWatch alarm in state ALARM (aws).
    Alarm { name: String },
    /// The run as a whole took longer than this.
    MaxDuration { limit: Duration },
}

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The steady state must hold again within this long after the last fault ends.
    pub within: Duration,
    /// How long the steady state must hold in a row to count as restored.
    pub hold: Duration,
}

#[cfg(test)]
mod tests {
    /// A scenario on a lab of 4 tasks whose manual catalog is `manual`.
    fn with_manual(manual: &str) -> super::Scenario {
        let text = format!(
            "name: t\ntarget: {{ lab: {{ tasks: 4 }} }}\nload: {{ url: /, rate: 10/s, duration: 100s }}\nsteady_state: {{ error_rate: \"< 1%\" }}\nrecovery: {{ within: 45s }}\nmanual:\n{manual}"
        );
        crate::scenario::load_bytes("t.yaml", text.as_bytes(), std::path::Path::new("."))
            .unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn a_manual_fault_is_described_by_its_type_and_its_timing() {
        let s = with_manual(
            "  - { type: task-kill, select: 2, signal: SIGTERM }\n  - { type: cpu-stress, for: 20s, select: 50%, percent: 80 }\n  - { type: latency, for: 10s, select: 1, delay: 200ms, jitter: 50ms }\n  - { type: db-failover, outage: 3s }\n  - { type: secret-drift }\n  - { type: redeploy }\n",
        );
        let lines: Vec<String> = s.manual.iter().map(super::ManualFault::describe).collect();
        assert_eq!(
            lines,
            [
                "task-kill (task-kill): stop 2 tasks (SIGTERM on the lab), at once; tasks chosen when injected",
                "cpu-stress (cpu-stress): burn 80% CPU in 50% of the tasks, for 20s from its injection, then reverted; tasks chosen when injected",
                "latency (latency): delay every response of 1 task by 200ms ± 50ms, for 10s from its injection, then reverted; tasks chosen when injected",
                "db-failover (db-failover): fail the database over (no writer for 3s), at once",
                "secret-drift (secret-drift): rotate the database secret under the running tasks, until the run ends",
                "redeploy (redeploy): replace every task of the service, at once",
            ]
        );
        assert_eq!(s.manual[3].at(std::time::Duration::from_secs(10)).ends_at(), std::time::Duration::from_secs(13));
    }
}
