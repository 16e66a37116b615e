//! `latency`: slow down all traffic of some tasks for a while.

use std::time::Duration;

use super::{FaultDef, FaultKind, Param, ParamKind, Params, Timing};

pub(super) static DEF: FaultDef = FaultDef {
    name: "latency",
    summary: "Add network latency to some tasks for a while (a slow dependency, a congested link).",
    lab: "every response of the selected tasks is delayed by `delay` ± `jitter`",
    aws: "FIS `aws:ecs:task-network-latency` from an experiment template siege creates, tags and deletes",
    timing: Timing::Window,
    note: "",
    params: &[
        Param {
            name: "select",
            kind: ParamKind::Selection,
            default: None,
            backend: None,
            doc: "how many running tasks to slow down",
        },
        Param { name: "delay", kind: ParamKind::Duration, default: None, backend: None, doc: "added latency" },
        Param {
            name: "jitter",
            kind: ParamKind::Duration,
            default: Some("0ms"),
            backend: None,
            doc: "random variation around `delay` (uniform in ± jitter); at most `delay`",
        },
    ],
    build,
};

fn build(p: &Params) -> FaultKind {
    FaultKind::Latency {
        select: p.selection("select"),
        delay: p.duration("delay").unwrap_or_default(),
        jitter: p.duration("jitter").unwrap_or(Duration::ZERO),
    }
}
