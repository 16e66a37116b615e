//! `db-failover`: the database cluster loses its writer and promotes a replica.

use std::time::Duration;

use super::{Action, AwsNeed, BASE, FaultDef, FaultKind, Param, ParamKind, Params, Timing, Undo};
use crate::util::format_duration;

pub(super) static DEF: FaultDef = FaultDef {
    name: "db-failover",
    summary: "Fail the database cluster over: the writer goes away and a replica is promoted.",
    lab: "the lab cluster has no writer for `outage` (connections are dropped), then the replica is promoted",
    aws: "RDS `FailoverDBCluster` on `target.aws.db_cluster`, promoting `target_instance` if given",
    timing: Timing::Instant,
    note: "on the lab the disruption lasts until `at + outage`: recovery is timed from there",
    params: &[
        Param {
            name: "outage",
            kind: ParamKind::Duration,
            default: Some("5s"),
            backend: Some("lab"),
            doc: "how long the lab cluster has no writer (on aws, RDS decides)",
        },
        Param {
            name: "target_instance",
            kind: ParamKind::Text,
            default: None,
            backend: Some("aws"),
            doc: "the replica instance to promote; RDS picks one when absent",
        },
    ],
    build,
    for_hint: Some("db-failover is instantaneous; the lab's writer outage is set by `outage`"),
    aws_needs: Some(AwsNeed { key: "db_cluster", why: "fails over this Aurora cluster" }),
    // The revert promotes the lab's replica, should the run end inside the outage. Once a
    // writer is in (on AWS as soon as the failover is done), there is nothing to undo: the
    // cluster is not failed back, which would be a second outage.
    action,
    undo: Some(Undo::EndDatabaseOutage),
    kept: "the cluster keeps its new writer",
    ends_after,
    describe,
    lab_hits: "the lab database cluster's writer",
    debrief: &[
        "How long did database requests fail, compared with the failover window itself?",
        "Did the service reconnect on its own, or did tasks need a restart?",
        "Which alarm or log line would have told on-call that the writer changed?",
    ],
    remediates: false,
    ..BASE
};

fn build(p: &Params) -> FaultKind {
    FaultKind::DbFailover { outage: p.duration("outage"), target_instance: p.text("target_instance") }
}

/// On the lab the disruption lasts the writer outage.
fn ends_after(kind: &FaultKind) -> Duration {
    match kind {
        FaultKind::DbFailover { outage: Some(o), .. } => *o,
        _ => Duration::ZERO,
    }
}

fn describe(kind: &FaultKind) -> String {
    match kind {
        FaultKind::DbFailover { outage: Some(o), .. } => {
            format!("fail the database over (no writer for {})", format_duration(*o))
        }
        _ => "fail the database over".to_string(),
    }
}

fn action(kind: &FaultKind) -> Action {
    match kind {
        FaultKind::DbFailover { outage, target_instance } => {
            Action::FailOverDatabase { outage: *outage, promote: target_instance.clone() }
        }
        other => unreachable!("the db-failover entry was asked for {other:?}"),
    }
}
