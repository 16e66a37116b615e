//! `db-failover`: the database cluster loses its writer and promotes a replica.

use super::{FaultDef, FaultKind, Param, ParamKind, Params, Timing};

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
};

fn build(p: &Params) -> FaultKind {
    FaultKind::DbFailover { outage: p.duration("outage"), target_instance: p.text("target_instance") }
}
