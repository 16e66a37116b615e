//! `redeploy`: the remediation step, replace every task of the service.

use super::{Action, BASE, FaultDef, FaultKind, Params, Timing};

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
    action,
    describe: |_| "replace every task of the service".to_string(),
    lab_hits: "every task of the lab service",
    debrief: &[
        "How long did the deployment take to replace every task, and did it drop requests?",
        "Did health checks and connection draining keep the service within its steady state during the deployment?",
    ],
    // The new tasks read fresh secrets and configuration.
    remediates: true,
    ..BASE
};

fn build(_: &Params) -> FaultKind {
    FaultKind::Redeploy
}

fn action(kind: &FaultKind) -> Action {
    match kind {
        FaultKind::Redeploy => Action::ReplaceTasks,
        other => unreachable!("the redeploy entry was asked for {other:?}"),
    }
}
