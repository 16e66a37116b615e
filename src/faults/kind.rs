//! The fault model: what a fault does, as the scenario checker builds it from a `faults:` entry
//! and the backends carry it out. It lives here, beside the registry, so that the registry does
//! not depend on the scenario format (`scenario` re-exports these types).

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FaultKind {
    TaskKill {
        select: Selection,
        signal: KillSignal,
    },
    CpuStress {
        select: Selection,
        percent: u32,
    },
    Latency {
        select: Selection,
        delay: Duration,
        jitter: Duration,
    },
    /// `outage`: how long the cluster has no writer (lab); `target_instance`: replica to promote (aws).
    DbFailover {
        outage: Option<Duration>,
        target_instance: Option<String>,
    },
    SecretDrift,
    Redeploy,
}

impl FaultKind {
    /// The `type:` tag of this fault in YAML.
    pub fn type_name(&self) -> &'static str {
        match self {
            FaultKind::TaskKill { .. } => "task-kill",
            FaultKind::CpuStress { .. } => "cpu-stress",
            FaultKind::Latency { .. } => "latency",
            FaultKind::DbFailover { .. } => "db-failover",
            FaultKind::SecretDrift => "secret-drift",
            FaultKind::Redeploy => "redeploy",
        }
    }

    pub fn selection(&self) -> Option<Selection> {
        match self {
            FaultKind::TaskKill { select, .. }
            | FaultKind::CpuStress { select, .. }
            | FaultKind::Latency { select, .. } => Some(*select),
            _ => None,
        }
    }
}

/// How many tasks a fault selects.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    Count(u32),
    /// A fraction in `0.0..=1.0`.
    Percent(f64),
}

impl Selection {
    /// How many of `n` candidates are selected (a non-zero percentage selects at least one).
    pub fn of(self, n: usize) -> usize {
        match self {
            Selection::Count(c) => (c as usize).min(n),
            Selection::Percent(p) => {
                let k = (p * n as f64).round() as usize;
                if p > 0.0 && n > 0 { k.clamp(1, n) } else { 0 }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum KillSignal {
    Sigkill,
    Sigterm,
}
