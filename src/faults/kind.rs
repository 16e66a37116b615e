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
    /// The registry entry of this fault's type: what callers ask instead of matching on the
    /// type.
    pub fn def(&self) -> &'static super::FaultDef {
        use super::*;
        match self {
            FaultKind::TaskKill { .. } => &task_kill::DEF,
            FaultKind::CpuStress { .. } => &cpu_stress::DEF,
            FaultKind::Latency { .. } => &latency::DEF,
            FaultKind::DbFailover { .. } => &db_failover::DEF,
            FaultKind::SecretDrift => &secret_drift::DEF,
            FaultKind::Redeploy => &redeploy::DEF,
        }
    }

    /// The `type:` tag of this fault in YAML.
    pub fn type_name(&self) -> &'static str {
        self.def().name
    }

    /// What it asks of its target (see [`super::Action`]).
    pub fn action(&self) -> super::Action {
        (self.def().action)(self)
    }

    /// What injecting it does, in a phrase ("stop 2 tasks (SIGKILL on the lab)").
    pub fn describe(&self) -> String {
        (self.def().describe)(self)
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
    /// The selection in words: "1 task", "3 tasks", "50% of the tasks".
    pub fn phrase(self) -> String {
        match self {
            Selection::Count(1) => "1 task".to_string(),
            Selection::Count(n) => format!("{n} tasks"),
            Selection::Percent(p) => format!("{}% of the tasks", (p * 100.0).round()),
        }
    }

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
