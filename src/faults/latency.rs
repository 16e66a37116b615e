//! `latency`: slow down all traffic of some tasks for a while.

use std::time::Duration;

use super::{AWS_FIS, Action, BASE, FaultDef, FaultKind, Param, ParamKind, ParamProblem, Params, Timing, Undo};
use crate::util::format_duration as d;

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
    check,
    aws_needs: Some(AWS_FIS),
    action,
    undo: Some(Undo::EndNetworkDelay),
    describe,
    debrief: &[
        "Which percentile showed the added delay first, and does any alarm watch it?",
        "Did timeouts or retries turn the delay into errors?",
        "Are the timeouts of the client, the balancer, the service and the database set in a sensible order?",
    ],
    remediates: false,
    ..BASE
};

fn build(p: &Params) -> FaultKind {
    FaultKind::Latency {
        select: p.selection("select"),
        delay: p.duration("delay").unwrap_or_default(),
        jitter: p.duration("jitter").unwrap_or(Duration::ZERO),
    }
}

/// A delay of zero does nothing, and a jitter larger than the delay would ask for negative
/// delays.
fn check(kind: &FaultKind) -> Vec<ParamProblem> {
    let FaultKind::Latency { delay, jitter, .. } = kind else { return Vec::new() };
    if delay.is_zero() {
        vec![ParamProblem { param: "delay", message: "the delay must be longer than zero".into() }]
    } else if jitter > delay {
        let message = format!("the jitter ({}) is larger than the delay ({})", d(*jitter), d(*delay));
        vec![ParamProblem { param: "jitter", message }]
    } else {
        Vec::new()
    }
}

fn describe(kind: &FaultKind) -> String {
    let FaultKind::Latency { select, delay, jitter } = kind else { return String::new() };
    if jitter.is_zero() {
        format!("delay every response of {} by {}", select.phrase(), d(*delay))
    } else {
        format!("delay every response of {} by {} ± {}", select.phrase(), d(*delay), d(*jitter))
    }
}

fn action(kind: &FaultKind) -> Action {
    match kind {
        FaultKind::Latency { delay, jitter, .. } => Action::DelayNetwork { delay: *delay, jitter: *jitter },
        other => unreachable!("the latency entry was asked for {other:?}"),
    }
}
