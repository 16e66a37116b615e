//! `redeploy`: the remediation step, replace every task of the service.

use super::{FaultDef, FaultKind, Params, Timing};

pub(super) static DEF: FaultDef = FaultDef {
    name: "redeploy",
    summary: "Remediation, not a fault: replace every task of the service, so that the new tasks \
              read fresh secrets and configuration.",
    lab: "the lab scheduler replaces every task, one at a time, keeping the service serving",
    aws: "ECS `UpdateService --force-new-deployment`",
    timing: Timing::Instant,
    note: "as the last event of the timeline it ends the disruption: recovery is timed from it",
    params: &[],
    build,
};

fn build(_: &Params) -> FaultKind {
    FaultKind::Redeploy
}
