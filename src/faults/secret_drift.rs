//! `secret-drift`: rotate the database secret under running tasks.

use super::{Action, AwsNeed, BASE, FaultDef, FaultKind, Lingering, Params, Timing, Undo};

pub(super) static DEF: FaultDef = FaultDef {
    name: "secret-drift",
    summary: "Rotate the database secret while tasks keep the stale copy they read at start: \
              new database connections fail until the tasks are replaced (see `redeploy`).",
    lab: "the lab secret store gets a new current version and the database accepts only it; running tasks keep the old one",
    aws: "a new master password for the Aurora cluster `target.aws.db_cluster` (RDS `ModifyDBCluster`) and in the JSON secret `target.aws.secret` (Secrets Manager `PutSecretValue`, only its `password` field changes); the revert puts the previous version's password back in both and forces a new deployment if tasks started during the drift",
    timing: Timing::Persistent,
    note: "without a later `redeploy` the service stays broken and the run fails; that is the lesson of `scenarios/secret-drift.yaml`",
    params: &[],
    build,
    aws_needs: Some(AwsNeed { key: "secret", why: "rotates this Secrets Manager secret" }),
    action,
    undo: Some(Undo::RestoreSecret),
    describe: |_| "rotate the database secret under the running tasks".to_string(),
    lab_hits: "the lab's database secret",
    debrief: &[
        "What did we see first: errors on the database path, failing health checks or an alarm?",
        "How long until someone connected the errors to the rotated secret?",
        "How do running tasks pick up a rotated secret here, and how should they?",
    ],
    // Running tasks keep the stale copy until something replaces them.
    lingers: Some(Lingering {
        still: "nothing replaced the tasks holding the stale secret",
        remedied: "Was a redeploy the right remediation, and how long did it take to replace every task?",
        unremedied: "Nothing remediated the drift: what would have fixed it, who would have done it, and after how long?",
    }),
    remediates: false,
    ..BASE
};

fn build(_: &Params) -> FaultKind {
    FaultKind::SecretDrift
}

fn action(kind: &FaultKind) -> Action {
    match kind {
        FaultKind::SecretDrift => Action::RotateSecret,
        other => unreachable!("the secret-drift entry was asked for {other:?}"),
    }
}
