//! `secret-drift`: rotate the database secret under running tasks.

use super::{FaultDef, FaultKind, Params, Timing};

pub(super) static DEF: FaultDef = FaultDef {
    name: "secret-drift",
    summary: "Rotate the database secret while tasks keep the stale copy they read at start: \
              new database connections fail until the tasks are replaced (see `redeploy`).",
    lab: "the lab secret store gets a new current version and the database accepts only it; running tasks keep the old one",
    aws: "Secrets Manager `PutSecretValue` on `target.aws.secret`; the revert makes the previous version AWSCURRENT again",
    timing: Timing::Persistent,
    note: "without a later `redeploy` the service stays broken and the run fails; that is the lesson of `scenarios/secret-drift.yaml`",
    params: &[],
    build,
};

fn build(_: &Params) -> FaultKind {
    FaultKind::SecretDrift
}
