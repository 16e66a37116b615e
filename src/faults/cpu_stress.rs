//! `cpu-stress`: burn CPU inside some tasks for a while.

use super::{AWS_FIS, Action, BASE, FaultDef, FaultKind, Param, ParamKind, Params, Timing, Undo};

pub(super) static DEF: FaultDef = FaultDef {
    name: "cpu-stress",
    summary: "Burn CPU inside some tasks for a while (a noisy neighbour, a runaway loop).",
    lab: "the selected task processes spin to use `percent` of one core each until reverted",
    aws: "FIS `aws:ecs:task-cpu-stress` from an experiment template siege creates, tags with the run id and deletes",
    timing: Timing::Window,
    note: "",
    params: &[
        Param {
            name: "select",
            kind: ParamKind::Selection,
            default: None,
            backend: None,
            doc: "how many running tasks to stress",
        },
        Param {
            name: "percent",
            kind: ParamKind::Percent,
            default: None,
            backend: None,
            doc: "CPU load to add, in percent of one core (lab) or of the task's CPU (aws)",
        },
    ],
    build,
    aws_needs: Some(AWS_FIS),
    action,
    undo: Some(Undo::EndCpuBurn),
    describe,
    debrief: &[
        "What moved first under CPU pressure: latency, errors or the CPU alarm?",
        "Did autoscaling react? How long until new tasks were healthy, and did it scale back in afterwards?",
        "Is the CPU target of the scaling policy right for this service?",
    ],
    remediates: false,
    ..BASE
};

fn build(p: &Params) -> FaultKind {
    FaultKind::CpuStress { select: p.selection("select"), percent: p.percent("percent") }
}

fn describe(kind: &FaultKind) -> String {
    let FaultKind::CpuStress { select, percent } = kind else { return String::new() };
    format!("burn {percent}% CPU in {}", select.phrase())
}

fn action(kind: &FaultKind) -> Action {
    match kind {
        FaultKind::CpuStress { percent, .. } => Action::BurnCpu { percent: *percent },
        other => unreachable!("the cpu-stress entry was asked for {other:?}"),
    }
}
