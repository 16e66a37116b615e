//! `task-kill`: stop some of the service's tasks at once.

use super::{Action, BASE, FaultDef, FaultKind, KillSignal, Param, ParamKind, Params, Timing};

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
    action,
    describe,
    debrief: &[
        "Which signal showed the lost tasks first: errors in the load, the healthy-target count or an alarm?",
        "How long did the scheduler take to place replacement tasks, and how long until the balancer marked them healthy?",
        "Did the balancer keep routing to killed tasks (502s) before its health checks caught up? Would faster deregistration help?",
        "Was the remaining capacity enough to carry the load while tasks were replaced?",
    ],
    remediates: false,
    ..BASE
};

fn build(p: &Params) -> FaultKind {
    FaultKind::TaskKill { select: p.selection("select"), signal: p.signal("signal") }
}

fn describe(kind: &FaultKind) -> String {
    let FaultKind::TaskKill { select, signal } = kind else { return String::new() };
    let sig = match signal {
        KillSignal::Sigkill => "SIGKILL",
        KillSignal::Sigterm => "SIGTERM",
    };
    format!("stop {} ({sig} on the lab)", select.phrase())
}

fn action(kind: &FaultKind) -> Action {
    match kind {
        FaultKind::TaskKill { signal, .. } => Action::StopTasks { signal: *signal },
        other => unreachable!("the task-kill entry was asked for {other:?}"),
    }
}
