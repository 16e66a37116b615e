//! `task-kill`: stop some of the service's tasks at once.

use super::{FaultDef, FaultKind, Param, ParamKind, Params, Timing};

pub(super) static DEF: FaultDef = FaultDef {
    name: "task-kill",
    summary: "Stop some of the service's tasks at once; the scheduler must replace them.",
    lab: "sends SIGKILL (or SIGTERM) to the selected task processes; the lab scheduler starts replacements after a placement delay",
    aws: "ECS `StopTask` on the selected tasks, with a reason naming the run",
    timing: Timing::Instant,
    note: "",
    params: &[
        Param {
            name: "select",
            kind: ParamKind::Selection,
            default: None,
            backend: None,
            doc: "how many running tasks to stop, chosen at random with the scenario's seed",
        },
        Param {
            name: "signal",
            kind: ParamKind::Signal,
            default: Some("SIGKILL"),
            backend: Some("lab"),
            doc: "SIGTERM lets a task drain; SIGKILL is a crash (ECS `StopTask` always drains)",
        },
    ],
    build,
};

fn build(p: &Params) -> FaultKind {
    FaultKind::TaskKill { select: p.selection("select"), signal: p.signal("signal") }
}
