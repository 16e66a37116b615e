//! Checks a scenario tree against the format and builds the validated [`Scenario`]: every key,
//! unit and range, then the rules that span several keys (the timeline fits in the load, the
//! recovery deadline fits after the last disruption, alarms need an aws target…). Every problem is
//! collected; nothing stops at the first.

use std::path::Path;
use std::time::Duration;

use super::check::{Checker, Fields, index, join};
use super::did_you_mean;
use super::expr::{metric_example, parse_comparison, parse_metric, parse_threshold};
use super::model::*;
use super::units::{format_duration, parse_duration};
use super::yaml::{Kind, Node};
use crate::faults::{self, FaultDef, ParamKind, Params, Timing, Value};

pub(crate) const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "runbook",
    "seed",
    "target",
    "load",
    "steady_state",
    "faults",
    "manual",
    "stop",
    "recovery",
];
pub(crate) const TARGET_KEYS: &[&str] = &["lab", "aws"];
pub(crate) const LAB_KEYS: &[&str] = &["service", "tasks", "control", "autoscaling"];
pub(crate) const AUTOSCALING_KEYS: &[&str] = &["min", "max", "target_cpu", "cooldown"];
pub(crate) const AWS_KEYS: &[&str] = &[
    "region",
    "account",
    "cluster",
    "service",
    "target_group",
    "load_balancer",
    "db_cluster",
    "secret",
    "url",
    "endpoint",
    "fis_role",
    "max_select",
    "allow_full_outage",
];
pub(crate) const LOAD_KEYS: &[&str] = &["url", "rate", "stages", "duration", "timeout", "insecure_tls"];
pub(crate) const STAGE_KEYS: &[&str] = &["at", "rate", "for", "duration", "ramp"];
pub(crate) const STOP_KEYS: &[&str] = &["alarm", "max_duration"];
pub(crate) const RECOVERY_KEYS: &[&str] = &["within", "hold"];

/// Defaults of the format (documented in docs/scenario.md).
pub(crate) const DEFAULT_LAB_SERVICE: &str = "api";
pub(crate) const DEFAULT_LAB_TASKS: u32 = 3;
pub(crate) const MAX_LAB_TASKS: u64 = 20;
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const DEFAULT_HOLD: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_COOLDOWN: Duration = Duration::from_secs(20);
pub(crate) const DEFAULT_MAX_SELECT: f64 = 0.5;

fn none(_: &str) -> Option<String> {
    None
}

/// A fault with the nodes that later checks point at.
struct FaultAt<'n> {
    fault: Fault,
    at: &'n Node,
    window: Option<&'n Node>,
}

/// One checked entry of `faults:` or `manual:`, before the two lists are named together.
struct FaultEntry<'n> {
    /// `faults[i]` or `manual[i]`.
    path: String,
    name: String,
    name_node: Option<&'n Node>,
    /// `None` in the manual catalog.
    at: Option<(Duration, &'n Node)>,
    window: Option<(Duration, &'n Node)>,
    kind: FaultKind,
}

/// A manual fault with the node that later checks point at.
struct ManualAt<'n> {
    fault: ManualFault,
    window: Option<&'n Node>,
    path: String,
}

/// A stage with the nodes that later checks point at.
struct StageAt<'n> {
    stage: Stage,
    at: &'n Node,
    window: &'n Node,
}

/// Checks `root` (a whole file) and builds the scenario; `None` when any problem was found.
/// `dir` is the scenario file's directory, against which `runbook` is resolved.
pub(crate) fn check(cx: &mut Checker, root: &Node, dir: &Path) -> Option<Scenario> {
    if !matches!(root.kind, Kind::Map(_)) {
        cx.error(
            root,
            "",
            format!("a scenario is a mapping of keys (name, target, load…), found {}", root.kind.describe()),
            Some("see docs/scenario.md".into()),
        );
        return None;
    }
    let f = cx.fields(root, "", TOP_KEYS, &none)?;

    let name = cx.require(&f, "name", "a short identifier such as `task-kill`").and_then(|n| identifier(cx, n, "name"));
    let description = f.get("description").and_then(|n| cx.text(n, "description"));
    let runbook = f.get("runbook").and_then(|n| runbook(cx, n, dir));
    let seed = f.get("seed").and_then(|n| cx.count(n, "seed", 0, u64::MAX));

    let target = match f.get("target") {
        None => Some(Target::Lab(default_lab())),
        Some(n) => target(cx, n),
    };
    let load = cx.require(&f, "load", "the load profile: `url`, `rate`, `duration`").and_then(|n| load(cx, n));
    let steady = cx
        .require(&f, "steady_state", "the checks that must hold, e.g. `error_rate: \"< 1%\"`")
        .and_then(|n| steady_state(cx, n, target.as_ref()));
    let entries = |cx: &mut Checker, key: &str| match f.get(key) {
        Some(n) => fault_list(cx, n, key, target.as_ref()),
        None => Some(Vec::new()),
    };
    let (timed, manual) = (entries(cx, "faults"), entries(cx, "manual"));
    let (faults, manual) = match (timed, manual) {
        (Some(mut timed), Some(mut manual)) => {
            name_faults(cx, timed.iter_mut().chain(manual.iter_mut()));
            (Some(timed.into_iter().filter_map(FaultEntry::timed).collect::<Vec<_>>()), Some(manual_faults(manual)))
        }
        _ => (None, None),
    };
    let stop = match f.get("stop") {
        Some(n) => stop_list(cx, n, target.as_ref()),
        None => Some(Vec::new()),
    };
    let recovery =
        cx.require(&f, "recovery", "the recovery deadline, e.g. `{ within: 60s }`").and_then(|n| recovery(cx, n));

    if let (Some((load, stages)), Some(faults), Some((recovery, within_node))) = (&load, &faults, &recovery) {
        timeline(cx, load, stages, faults, recovery, within_node);
    }
    if let (Some((load, _)), Some(manual)) = (&load, &manual) {
        manual_rules(cx, load, manual);
    }
    if let (Some(Target::Aws(a)), Some((load, _)), Some(url_node)) =
        (&target, &load, f.get("load").and_then(|n| load_url_node(n)))
        && load.url.starts_with('/')
        && a.url.is_none()
        && a.load_balancer.is_none()
    {
        cx.error(
            url_node,
            "load.url",
            format!("`{}` is relative, but the aws target has no entry point", load.url),
            Some("set target.aws.url to the ALB's address, or target.aws.load_balancer, or use an absolute URL".into()),
        );
    }
    if let (Some((load, _)), Some(stop)) = (&load, &stop) {
        for (cond, node) in stop {
            if let StopCondition::MaxDuration { limit } = cond
                && *limit < load.duration
            {
                cx.error(
                    node,
                    &f.path("stop"),
                    format!(
                        "max_duration {} is shorter than load.duration {}: every run would be stopped",
                        format_duration(*limit),
                        format_duration(load.duration)
                    ),
                    None,
                );
            }
        }
    }

    let (
        Some(name),
        Some(target),
        Some((load, _)),
        Some(steady),
        Some(faults),
        Some(manual),
        Some(stop),
        Some((recovery, _)),
    ) = (name, target, load, steady, faults, manual, stop, recovery)
    else {
        return None;
    };
    if !cx.diags.is_empty() {
        return None;
    }
    Some(Scenario {
        name,
        description,
        runbook,
        seed,
        target,
        load,
        steady_state: steady,
        faults: faults.into_iter().map(|f| f.fault).collect(),
        manual: manual.into_iter().map(|m| m.fault).collect(),
        stop: stop.into_iter().map(|(c, _)| c).collect(),
        recovery,
    })
}

/// Names end up in report directory names and journal entries: keep them to a safe alphabet.
pub(crate) fn identifier(cx: &mut Checker, node: &Node, path: &str) -> Option<String> {
    let s = cx.text(node, path)?;
    let ok = s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        let suggestion: String =
            s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        cx.error(
            node,
            path,
            format!("`{s}` is not a valid name"),
            Some(format!("use at most 64 letters, digits, `-`, `_` or `.`, e.g. `{}`", suggestion.trim_matches('-'))),
        );
        return None;
    }
    Some(s)
}

fn runbook(cx: &mut Checker, node: &Node, dir: &Path) -> Option<String> {
    let s = cx.text(node, "runbook")?;
    let resolved = dir.join(&s);
    if !resolved.is_file() {
        cx.error(
            node,
            "runbook",
            format!("runbook not found: {}", resolved.display()),
            Some("the path is relative to the scenario file's directory".into()),
        );
        return None;
    }
    Some(s)
}

fn default_lab() -> LabTarget {
    LabTarget { service: DEFAULT_LAB_SERVICE.into(), tasks: DEFAULT_LAB_TASKS, control: None, autoscaling: None }
}

fn target(cx: &mut Checker, node: &Node) -> Option<Target> {
    if let Kind::Str(s) = &node.kind {
        let hint = match s.as_str() {
            "lab" => "write `target: { lab: {} }` for the lab with its defaults, or leave `target` out",
            _ => "e.g. `target: { lab: { tasks: 3 } }` or `target: { aws: { region: …, cluster: …, service: … } }`",
        };
        cx.error(node, "target", format!("expected a mapping with `lab` or `aws`, found `{s}`"), Some(hint.into()));
        return None;
    }
    let f = cx.fields(node, "target", TARGET_KEYS, &none)?;
    match (f.get("lab"), f.get("aws")) {
        (Some(_), Some(_)) => {
            let k = f.key_node("aws").unwrap_or(node);
            cx.error(k, "target", "both `lab` and `aws` given: a scenario runs against one target", None);
            None
        }
        (Some(n), None) => lab(cx, n).map(Target::Lab),
        (None, Some(n)) => aws(cx, n).map(Target::Aws),
        (None, None) => {
            if f.key_node("lab").is_some() {
                // `lab:` with nothing after it: the lab with every default.
                return Some(Target::Lab(default_lab()));
            }
            cx.error(node, "target", "expected `lab` or `aws`", Some("e.g. `target: { lab: { tasks: 3 } }`".into()));
            None
        }
    }
}

fn lab(cx: &mut Checker, node: &Node) -> Option<LabTarget> {
    let path = "target.lab";
    let f = cx.fields(node, path, LAB_KEYS, &|k| {
        AWS_KEYS.contains(&k).then(|| format!("`{k}` belongs to an aws target, not the lab"))
    })?;
    let mut ok = true;
    let service = match f.get("service") {
        Some(n) => identifier(cx, n, &f.path("service")),
        None => Some(DEFAULT_LAB_SERVICE.to_string()),
    };
    let tasks = match f.get("tasks") {
        Some(n) => cx.count(n, &f.path("tasks"), 1, MAX_LAB_TASKS).map(|n| n as u32),
        None => Some(DEFAULT_LAB_TASKS),
    };
    let control = match f.get("control") {
        Some(n) => http_url(cx, n, &f.path("control"), "the lab's control address, e.g. `http://127.0.0.1:7070`"),
        None => None,
    };
    if f.get("control").is_some() && control.is_none() {
        ok = false;
    }
    let autoscaling = match f.get("autoscaling") {
        Some(n) => {
            let a = autoscaling(cx, n, tasks);
            ok &= a.is_some();
            a
        }
        None => None,
    };
    Some(LabTarget { service: service?, tasks: tasks?, control, autoscaling }).filter(|_| ok)
}

fn http_url(cx: &mut Checker, node: &Node, path: &str, hint: &str) -> Option<String> {
    let s = cx.text(node, path)?;
    if !(s.starts_with("http://") || s.starts_with("https://")) || s.len() <= "https://".len() {
        cx.error(node, path, format!("`{s}` is not an http:// or https:// URL"), Some(hint.to_string()));
        return None;
    }
    Some(s)
}

fn autoscaling(cx: &mut Checker, node: &Node, tasks: Option<u32>) -> Option<Autoscaling> {
    let path = "target.lab.autoscaling";
    let f = cx.fields(node, path, AUTOSCALING_KEYS, &none)?;
    let min =
        cx.require(&f, "min", "the fewest tasks, e.g. `3`").and_then(|n| cx.count(n, &f.path("min"), 1, MAX_LAB_TASKS));
    let max =
        cx.require(&f, "max", "the most tasks, e.g. `5`").and_then(|n| cx.count(n, &f.path("max"), 1, MAX_LAB_TASKS));
    let target_cpu = cx
        .require(&f, "target_cpu", "the average CPU to keep, e.g. `50%`")
        .and_then(|n| cx.percent(n, &f.path("target_cpu")));
    let cooldown = match f.get("cooldown") {
        Some(n) => cx.duration(n, &f.path("cooldown")),
        None => Some(DEFAULT_COOLDOWN),
    };
    let (min, max, target_cpu, cooldown) = (min?, max?, target_cpu?, cooldown?);
    let mut ok = true;
    if min > max {
        let n = f.get("min").unwrap_or(node);
        cx.error(n, &f.path("min"), format!("min {min} is above max {max}"), None);
        ok = false;
    } else if let Some(t) = tasks.map(u64::from)
        && (t < min || t > max)
    {
        cx.error(node, path, format!("target.lab.tasks ({t}) must be between min {min} and max {max}"), None);
        ok = false;
    }
    if target_cpu <= 0.0 {
        let n = f.get("target_cpu").unwrap_or(node);
        cx.error(n, &f.path("target_cpu"), "must be above 0%", None);
        ok = false;
    }
    ok.then_some(Autoscaling { min: min as u32, max: max as u32, target_cpu, cooldown })
}

fn aws(cx: &mut Checker, node: &Node) -> Option<AwsTarget> {
    let path = "target.aws";
    let f = cx.fields(node, path, AWS_KEYS, &|k| {
        LAB_KEYS.contains(&k).then(|| format!("`{k}` belongs to a lab target, not aws"))
    })?;
    let before = cx.diags.len();
    let text = |cx: &mut Checker, key: &str| -> Option<String> { f.get(key).and_then(|n| cx.text(n, &f.path(key))) };
    // Optional: without it the SDK's region chain (AWS_REGION, the profile) decides.
    let region = text(cx, "region");
    if let (Some(r), Some(n)) = (&region, f.get("region"))
        && !looks_like_region(r)
    {
        cx.error(n, &f.path("region"), format!("`{r}` is not an AWS region"), Some("e.g. `us-east-1`".into()));
    }
    let account = match f.get("account") {
        Some(n) => match &n.kind {
            Kind::Str(s) if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) => Some(s.clone()),
            Kind::Int(_) => {
                cx.error(
                    n,
                    &f.path("account"),
                    "the account id must be a quoted string",
                    Some(
                        "account ids can start with 0, which a YAML number would drop: write `\"123456789012\"`".into(),
                    ),
                );
                None
            }
            _ => {
                let shown = n.scalar_text().unwrap_or_default();
                cx.error(n, &f.path("account"), format!("`{shown}` is not a 12-digit account id"), None);
                None
            }
        },
        None => None,
    };
    // Names, not ARNs: siege matches tasks by their `service:NAME` group and reads CloudWatch by
    // `ClusterName` / `ServiceName`.
    let name = |cx: &mut Checker, key: &str, what: &str| {
        let n = cx.require(&f, key, what)?;
        let v = cx.text(n, &f.path(key))?;
        if !v.starts_with("arn:") {
            return Some(v);
        }
        let short = v.rsplit('/').next().unwrap_or(&v).to_string();
        cx.error(n, &f.path(key), format!("give {what}, not its ARN"), Some(format!("`{key}: {short}`")));
        None
    };
    let cluster = name(cx, "cluster", "the ECS cluster name");
    let service = name(cx, "service", "the ECS service name");
    let target_group = text(cx, "target_group");
    let load_balancer = text(cx, "load_balancer");
    let db_cluster = text(cx, "db_cluster");
    let secret = text(cx, "secret");
    let url =
        f.get("url").and_then(|n| http_url(cx, n, &f.path("url"), "the service's base URL, e.g. the ALB's DNS name"));
    let endpoint = f
        .get("endpoint")
        .and_then(|n| http_url(cx, n, &f.path("endpoint"), "an AWS endpoint override, e.g. `http://127.0.0.1:5000`"));
    let fis_role = text(cx, "fis_role");
    if let (Some(r), Some(n)) = (&fis_role, f.get("fis_role"))
        && !r.starts_with("arn:")
    {
        cx.error(
            n,
            &f.path("fis_role"),
            format!("`{r}` is not an IAM role ARN"),
            Some("e.g. `arn:aws:iam::123456789012:role/fis`".into()),
        );
    }
    let max_select = match f.get("max_select") {
        Some(n) => cx.percent(n, &f.path("max_select")),
        None => Some(DEFAULT_MAX_SELECT),
    };
    let allow_full_outage = match f.get("allow_full_outage") {
        Some(n) => cx.boolean(n, &f.path("allow_full_outage")),
        None => Some(false),
    };
    let t = AwsTarget {
        region,
        account,
        cluster: cluster?,
        service: service?,
        target_group,
        load_balancer,
        db_cluster,
        secret,
        url,
        endpoint,
        fis_role,
        max_select: max_select?,
        allow_full_outage: allow_full_outage?,
    };
    (cx.diags.len() == before).then_some(t)
}

fn looks_like_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn load<'n>(cx: &mut Checker, node: &'n Node) -> Option<(Load, Vec<StageAt<'n>>)> {
    let f = cx.fields(node, "load", LOAD_KEYS, &none)?;
    let url = cx.require(&f, "url", "a path such as `/` or `/work?ms=5`, or an absolute URL").and_then(|n| {
        let s = cx.text(n, &f.path("url"))?;
        if !(s.starts_with('/') || s.starts_with("http://") || s.starts_with("https://")) {
            cx.error(
                n,
                &f.path("url"),
                format!("`{s}` is neither a path nor an http(s) URL"),
                Some(format!("a path relative to the target's entry point starts with `/`: `/{s}`")),
            );
            return None;
        }
        Some(s)
    });
    let rate = cx.require(&f, "rate", "requests per second, e.g. `100/s`").and_then(|n| cx.rate(n, &f.path("rate")));
    let duration = cx
        .require(&f, "duration", "how long the load runs, e.g. `2m`")
        .and_then(|n| cx.positive_duration(n, &f.path("duration")));
    let timeout = match f.get("timeout") {
        Some(n) => cx.positive_duration(n, &f.path("timeout")),
        None => Some(DEFAULT_TIMEOUT),
    };
    let stages = match f.get("stages") {
        Some(n) => stages(cx, n, &f),
        None => Some(Vec::new()),
    };
    let insecure_tls = match f.get("insecure_tls") {
        Some(n) => cx.boolean(n, &f.path("insecure_tls")),
        None => Some(false),
    };
    let load = Load {
        url: url?,
        rate: Rate { per_second: rate? },
        stages: Vec::new(),
        duration: duration?,
        timeout: timeout?,
        insecure_tls: insecure_tls?,
    };
    let stages = stages?;
    Some((Load { stages: stages.iter().map(|s| s.stage.clone()).collect(), ..load }, stages))
}

/// The node of `load.url`, for checks made after the load was read.
fn load_url_node(load: &Node) -> Option<&Node> {
    match &load.kind {
        Kind::Map(entries) => entries.iter().find(|(k, _)| k.scalar_text().as_deref() == Some("url")).map(|(_, v)| v),
        _ => None,
    }
}

fn stages<'n>(cx: &mut Checker, node: &'n Node, load: &Fields<'_>) -> Option<Vec<StageAt<'n>>> {
    let path = load.path("stages");
    let Kind::Seq(items) = &node.kind else {
        cx.error(node, &path, format!("expected a list of stages, found {}", node.kind.describe()), None);
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = index(&path, i);
        match stage(cx, item, &p) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn stage<'n>(cx: &mut Checker, node: &'n Node, path: &str) -> Option<StageAt<'n>> {
    let f = cx.fields(node, path, STAGE_KEYS, &none)?;
    let at_node = cx.require(&f, "at", "when the stage starts, e.g. `60s`");
    let at = at_node.and_then(|n| cx.duration(n, &f.path("at")));
    let rate = cx.require(&f, "rate", "the stage's rate, e.g. `400/s`").and_then(|n| cx.rate(n, &f.path("rate")));
    let window_node = window_of(cx, &f, true, "how long the stage lasts, e.g. `for: 30s`");
    let window = window_node.and_then(|(n, key)| cx.positive_duration(n, &f.path(key)));
    let ramp_node = f.get("ramp");
    let ramp = match ramp_node {
        Some(n) => cx.duration(n, &f.path("ramp")),
        None => Some(Duration::ZERO),
    };
    let (at, rate, window, ramp) = (at?, rate?, window?, ramp?);
    if ramp > window {
        if let Some(n) = ramp_node {
            cx.error(
                n,
                &f.path("ramp"),
                format!("the ramp ({}) is longer than the stage ({})", format_duration(ramp), format_duration(window)),
                None,
            );
        }
        return None;
    }
    Some(StageAt {
        stage: Stage { at, rate: Rate { per_second: rate }, duration: window, ramp },
        at: at_node?,
        window: window_node?.0,
    })
}

/// The `for:` (or its synonym `duration:`) of a stage or fault: its node and the key used.
fn window_of<'n>(cx: &mut Checker, f: &Fields<'n>, required: bool, what: &str) -> Option<(&'n Node, &'static str)> {
    match (f.get("for"), f.get("duration")) {
        (Some(_), Some(d)) => {
            let k = f.key_node("duration").unwrap_or(d);
            cx.error(
                k,
                &f.path("duration"),
                "both `for` and `duration` given",
                Some("they are synonyms: keep one".into()),
            );
            None
        }
        (Some(n), None) => Some((n, "for")),
        (None, Some(n)) => Some((n, "duration")),
        (None, None) => {
            if required {
                cx.require(f, "for", what);
            }
            None
        }
    }
}

fn steady_state(cx: &mut Checker, node: &Node, target: Option<&Target>) -> Option<SteadyState> {
    let names: Vec<&str> = Metric::ALL.iter().map(|(n, _)| *n).collect();
    let f = cx.fields(node, "steady_state", &names, &none)?;
    let mut checks = Vec::new();
    let mut ok = true;
    for (key, _, value) in f.entries() {
        let path = f.path(key);
        let Ok(metric) = parse_metric(key) else { continue };
        match comparison(cx, value, &path, metric) {
            Some(cmp) => {
                if let Some(limit) = count_limit(metric, target)
                    && needs_at_least(cmp) > limit
                {
                    cx.error(
                        value,
                        &path,
                        format!("can never hold: the lab runs at most {limit} tasks"),
                        Some("raise target.lab.tasks or the autoscaling max, or lower the threshold".into()),
                    );
                    ok = false;
                }
                checks.push(Check { metric, cmp });
            }
            None => ok = false,
        }
    }
    if matches!(&node.kind, Kind::Map(m) if m.is_empty()) {
        cx.error(
            node,
            "steady_state",
            "no checks: the steady state needs at least one metric",
            Some("e.g. `error_rate: \"< 1%\"`".into()),
        );
        return None;
    }
    ok.then_some(SteadyState { checks })
}

/// The most tasks the lab can run, for counts that can never be reached.
fn count_limit(metric: Metric, target: Option<&Target>) -> Option<f64> {
    match (metric, target) {
        (Metric::HealthyTargets | Metric::RunningTasks, Some(Target::Lab(l))) => {
            Some(f64::from(l.autoscaling.as_ref().map(|a| a.max).unwrap_or(l.tasks).max(l.tasks)))
        }
        _ => None,
    }
}

/// The smallest value that satisfies a lower-bound comparison (0 for upper bounds).
fn needs_at_least(c: Comparison) -> f64 {
    match c.op {
        Op::Ge | Op::Eq => c.value,
        Op::Gt => c.value + 1.0,
        Op::Lt | Op::Le => 0.0,
    }
}

fn comparison(cx: &mut Checker, node: &Node, path: &str, metric: Metric) -> Option<Comparison> {
    let text = match &node.kind {
        Kind::Str(s) => s.clone(),
        Kind::Int(_) | Kind::Float(_) => {
            let v = node.scalar_text().unwrap_or_default();
            cx.error(
                node,
                path,
                format!("`{v}` is not a comparison: it needs an operator"),
                Some(format!("write the operator too, quoted: \">= {v}\"")),
            );
            return None;
        }
        k => {
            cx.error(
                node,
                path,
                format!("expected a comparison string, found {}", k.describe()),
                Some(format!("{} takes {}", metric.name(), metric_example(metric))),
            );
            return None;
        }
    };
    match parse_comparison(metric, &text) {
        Ok(c) => Some(c),
        Err(e) => {
            cx.error(node, path, e.message, e.hint);
            None
        }
    }
}

/// The entries of `faults:` (`key` = `"faults"`, each with `at`) or of the manual catalog
/// (`"manual"`, without `at`); unnamed ones are named later, across both lists.
fn fault_list<'n>(cx: &mut Checker, node: &'n Node, key: &str, target: Option<&Target>) -> Option<Vec<FaultEntry<'n>>> {
    let manual = key == "manual";
    let Kind::Seq(items) = &node.kind else {
        let example =
            if manual { "`- { type: task-kill, select: 1 }`" } else { "`- { type: task-kill, at: 20s, select: 50% }`" };
        cx.error(
            node,
            key,
            format!("expected a list of faults, found {}", node.kind.describe()),
            Some(format!("each fault is an item {example}")),
        );
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match fault(cx, item, &index(key, i), manual, target) {
            Some(f) => out.push(f),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

impl<'n> FaultEntry<'n> {
    /// A `faults:` entry as a timeline fault.
    fn timed(self) -> Option<FaultAt<'n>> {
        let (at, at_node) = self.at?;
        Some(FaultAt {
            fault: Fault { name: self.name, at, duration: self.window.map(|w| w.0), kind: self.kind },
            at: at_node,
            window: self.window.map(|w| w.1),
        })
    }
}

fn manual_faults(entries: Vec<FaultEntry<'_>>) -> Vec<ManualAt<'_>> {
    entries
        .into_iter()
        .map(|e| ManualAt {
            fault: ManualFault { name: e.name, duration: e.window.map(|w| w.0), kind: e.kind },
            window: e.window.map(|w| w.1),
            path: e.path,
        })
        .collect()
}

/// A fault entry of `faults:` or, with `manual`, of the manual catalog (which refuses `at`).
fn fault<'n>(
    cx: &mut Checker,
    node: &'n Node,
    path: &str,
    manual: bool,
    target: Option<&Target>,
) -> Option<FaultEntry<'n>> {
    let types = faults::names();
    let Kind::Map(entries) = &node.kind else {
        cx.error(
            node,
            path,
            format!("expected a fault (a mapping with `type:`), found {}", node.kind.describe()),
            None,
        );
        return None;
    };
    let Some((_, type_node)) = entries.iter().find(|(k, _)| k.scalar_text().as_deref() == Some("type")) else {
        cx.error(node, path, "missing required key `type`", Some(format!("fault types: {}", types.join(", "))));
        return None;
    };
    let type_path = join(path, "type");
    let tname = cx.text(type_node, &type_path)?;
    let Some(def) = faults::lookup(&tname) else {
        let hint = match did_you_mean(&tname, &types) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("fault types: {}", types.join(", ")),
        };
        cx.error(type_node, &type_path, format!("unknown fault type `{tname}`"), Some(hint));
        return None;
    };
    let allowed = def.keys();
    // An unknown key (a misspelt parameter) is enough to refuse the entry: checking it further
    // would report the parameter it meant as missing or zero.
    let before = cx.diags.len();
    let f = cx.fields(node, path, &allowed, &|k| param_hint(def, k))?;

    let name_node = f.get("name");
    let name = name_node.and_then(|n| identifier(cx, n, &f.path("name")));
    let at = if manual {
        if let Some(k) = f.key_node("at") {
            cx.error(
                k,
                &f.path("at"),
                "a manual fault has no `at`: it is injected when commanded during the run",
                Some("move it under `faults:` to put it on the timeline".into()),
            );
        }
        None
    } else {
        let at_node = cx.require(&f, "at", "when to inject it, e.g. `at: 20s`");
        let at = at_node.and_then(|n| cx.duration(n, &f.path("at")));
        Some(at.zip(at_node))
    };
    let window_node = if def.timing == Timing::Window {
        window_of(cx, &f, true, &format!("how long {} lasts, e.g. `for: 30s`", def.name))
    } else {
        None
    };
    let window = window_node.and_then(|(n, key)| cx.positive_duration(n, &f.path(key)));

    let backend = target.map(|t| match t {
        Target::Lab(_) => "lab",
        Target::Aws(_) => "aws",
    });
    let mut params = Params::default();
    for p in def.params {
        let ppath = f.path(p.name);
        match f.get(p.name) {
            Some(n) => {
                if let (Some(only), Some(b)) = (p.backend, backend)
                    && only != b
                {
                    let k = f.key_node(p.name).unwrap_or(n);
                    cx.error(
                        k,
                        &ppath,
                        format!("`{}` applies only to an {only} target", p.name),
                        Some(p.doc.to_string()),
                    );
                    continue;
                }
                if let Some(v) = param_value(cx, n, &ppath, p.kind) {
                    params.0.push((p.name, v));
                }
            }
            None => match p.default {
                Some(d) if p.backend.is_none() || p.backend == backend => {
                    if let Some(v) = default_value(p.kind, d) {
                        params.0.push((p.name, v));
                    }
                }
                Some(_) => {}
                None if p.backend.is_some() => {}
                None => {
                    cx.require(&f, p.name, &format!("{}: {}", p.doc, p.kind.example()));
                }
            },
        }
    }
    if cx.diags.len() > before {
        return None;
    }
    let kind = (def.build)(&params);
    fault_rules(cx, &f, def, &kind, target, type_node);
    if cx.diags.len() > before {
        return None;
    }
    let at = match at {
        Some(at) => Some(at?),
        None => None,
    };
    let window = match window_node {
        Some((n, _)) => Some((window?, n)),
        None => None,
    };
    Some(FaultEntry { path: path.to_string(), name: name.unwrap_or_default(), name_node, at, window, kind })
}

/// Why a key does not belong in a fault of type `def`, when that says more than did-you-mean.
fn param_hint(def: &FaultDef, key: &str) -> Option<String> {
    if matches!(key, "for" | "duration") {
        return Some(match (def.timing, def.for_hint, faults::remedy()) {
            (_, Some(hint), _) => hint.into(),
            (Timing::Persistent, None, Some(remedy)) => {
                format!("{} persists until the run ends; remediate it with a later `{}` fault", def.name, remedy.name)
            }
            (Timing::Persistent, None, None) => format!("{} persists until the run ends", def.name),
            (_, None, _) => format!("{} is instantaneous: `for` does not apply", def.name),
        });
    }
    if let Some(other) = faults::REGISTRY.iter().find(|d| d.name != def.name && d.param(key).is_some()) {
        let takes: Vec<&str> = def.params.iter().map(|p| p.name).collect();
        let takes = if takes.is_empty() { "no parameters".to_string() } else { format!("takes {}", takes.join(", ")) };
        if did_you_mean(key, &def.keys()).is_none() {
            return Some(format!("`{key}` is a parameter of {}; {} {takes}", other.name, def.name));
        }
    }
    None
}

fn param_value(cx: &mut Checker, node: &Node, path: &str, kind: ParamKind) -> Option<Value> {
    match kind {
        ParamKind::Selection => cx.selection(node, path).map(Value::Selection),
        ParamKind::Duration => cx.duration(node, path).map(Value::Duration),
        ParamKind::Percent => {
            let n = match &node.kind {
                Kind::Int(i) => Some(*i as f64),
                // A whole percentage, written as one: `007`, `8e1` or `80.0` would be taken for
                // a number other than what the author meant, or read another way elsewhere.
                Kind::Float(x) => {
                    let msg =
                        super::check::not_whole(node, *x).unwrap_or_else(|| format!("`{x}` is not a whole number"));
                    cx.error(node, path, msg, Some("a whole percentage from 1 to 100, such as `80` or `80%`".into()));
                    return None;
                }
                Kind::Str(s) if s.trim().ends_with('%') => cx.percent(node, path).map(|p| p * 100.0),
                _ => {
                    cx.error(
                        node,
                        path,
                        format!("expected a percentage, found {}", node.kind.describe()),
                        Some("e.g. `80` or `80%`".into()),
                    );
                    return None;
                }
            }?;
            if !(1.0..=100.0).contains(&n) || n.fract() != 0.0 {
                cx.error(node, path, format!("{n}% is out of range: expected a whole percentage from 1 to 100"), None);
                return None;
            }
            Some(Value::Percent(n as u32))
        }
        ParamKind::Signal => {
            let s = cx.text(node, path)?;
            match s.to_ascii_uppercase().trim_start_matches("SIG") {
                "KILL" => Some(Value::Signal(KillSignal::Sigkill)),
                "TERM" => Some(Value::Signal(KillSignal::Sigterm)),
                _ => {
                    cx.error(node, path, format!("unsupported signal `{s}`"), Some("use SIGKILL or SIGTERM".into()));
                    None
                }
            }
        }
        ParamKind::Text => cx.text(node, path).map(Value::Text),
    }
}

fn default_value(kind: ParamKind, text: &str) -> Option<Value> {
    match kind {
        ParamKind::Duration => parse_duration(text).ok().map(Value::Duration),
        ParamKind::Signal => {
            Some(Value::Signal(if text == "SIGTERM" { KillSignal::Sigterm } else { KillSignal::Sigkill }))
        }
        ParamKind::Percent => text.trim_end_matches('%').parse().ok().map(Value::Percent),
        ParamKind::Text => Some(Value::Text(text.into())),
        ParamKind::Selection => None,
    }
}

/// Rules of one fault that depend on its parameters and on the target.
fn fault_rules(
    cx: &mut Checker,
    f: &Fields<'_>,
    def: &FaultDef,
    kind: &FaultKind,
    target: Option<&Target>,
    type_node: &Node,
) {
    for problem in (def.check)(kind) {
        let n = f.get(problem.param).unwrap_or(f.node);
        cx.error(n, &f.path(problem.param), problem.message, None);
    }
    if let (Some(sel), Some(n)) = (kind.selection(), f.get("select")) {
        match (target, sel) {
            (Some(Target::Lab(l)), Selection::Count(c)) if c > l.tasks => cx.error(
                n,
                &f.path("select"),
                format!("selects {c} tasks, but the lab service runs {}", l.tasks),
                Some("select fewer tasks, or a percentage such as `50%`".into()),
            ),
            (Some(Target::Aws(a)), Selection::Percent(p)) if p > a.max_select && !a.allow_full_outage => cx.error(
                n,
                &f.path("select"),
                format!("selects {}% of the tasks, above target.aws.max_select ({}%)", pct(p), pct(a.max_select)),
                Some("raise max_select, or set `allow_full_outage: true` if you mean it".into()),
            ),
            _ => {}
        }
    }
    let missing = match target {
        Some(Target::Aws(a)) => def.aws_needs.filter(|n| aws_key_set(a, n.key) == Some(false)),
        _ => None,
    };
    if let Some(faults::AwsNeed { key, why }) = missing {
        cx.error(
            type_node,
            &f.path("type"),
            format!("{} on aws needs `target.aws.{key}`", def.name),
            Some(format!("it {why}")),
        );
    }
}

/// Whether `target.aws.<key>` is set, for the keys a fault type may need (see
/// [`faults::AwsNeed`]); `None` for a key this checker does not know.
fn aws_key_set(a: &AwsTarget, key: &str) -> Option<bool> {
    match key {
        "fis_role" => Some(a.fis_role.is_some()),
        "db_cluster" => Some(a.db_cluster.is_some()),
        "secret" => Some(a.secret.is_some()),
        _ => None,
    }
}

fn pct(f: f64) -> String {
    let v = (f * 1000.0).round() / 10.0;
    if v.fract() == 0.0 { format!("{}", v as i64) } else { format!("{v}") }
}

/// Gives unnamed faults their type as a name (suffixed when repeated) and reports duplicates,
/// across `faults:` and then `manual:`.
fn name_faults<'a, 'n: 'a>(cx: &mut Checker, faults: impl Iterator<Item = &'a mut FaultEntry<'n>>) {
    let mut faults: Vec<&mut FaultEntry<'n>> = faults.collect();
    let mut taken: Vec<String> = Vec::new();
    for f in &faults {
        if let Some(n) = f.name_node {
            if taken.contains(&f.name) {
                cx.error(
                    n,
                    &join(&f.path, "name"),
                    format!("duplicate fault name `{}`", f.name),
                    Some("fault names must be unique: the report and the journal refer to faults by name".into()),
                );
            }
            taken.push(f.name.clone());
        }
    }
    for f in faults.iter_mut().filter(|f| f.name_node.is_none()) {
        let base = f.kind.type_name();
        let mut name = base.to_string();
        let mut k = 2;
        while taken.contains(&name) {
            name = format!("{base}-{k}");
            k += 1;
        }
        taken.push(name.clone());
        f.name = name;
    }
}

/// One fault mapping given on its own (a fault injected by command, outside the catalog),
/// checked like an entry of `scenario`'s manual catalog: its parameters against the scenario's
/// target, what it lasts against the load. Without `name` it is named after its type.
pub(crate) fn check_given_fault(cx: &mut Checker, root: &Node, scenario: &Scenario) -> Option<ManualFault> {
    let mut entry = fault(cx, root, "", true, Some(&scenario.target))?;
    if entry.name_node.is_none() {
        entry.name = entry.kind.type_name().to_string();
    }
    let load = scenario.load.clone();
    let manual = manual_faults(vec![entry]);
    manual_rules(cx, &load, &manual);
    let m = manual.into_iter().next()?;
    cx.diags.is_empty().then_some(m.fault)
}

/// A manual fault may be injected while the load runs (the engine refuses an injection whose
/// recovery could not be judged before the load ends): what it lasts must fit in the load at
/// least when injected at its start.
fn manual_rules(cx: &mut Checker, load: &Load, manual: &[ManualAt<'_>]) {
    for m in manual {
        let lasts = m.fault.at(Duration::ZERO).ends_at();
        if lasts > load.duration
            && let Some(n) = m.window
        {
            cx.error(
                n,
                &m.path,
                format!(
                    "the fault lasts {}, longer than the whole load (load.duration: {})",
                    format_duration(lasts),
                    format_duration(load.duration)
                ),
                None,
            );
        }
    }
}

fn stop_list<'n>(cx: &mut Checker, node: &'n Node, target: Option<&Target>) -> Option<Vec<(StopCondition, &'n Node)>> {
    let Kind::Seq(items) = &node.kind else {
        cx.error(
            node,
            "stop",
            format!("expected a list of stop conditions, found {}", node.kind.describe()),
            Some("e.g. `stop: [ \"error_rate > 50% for 15s\", { max_duration: 5m } ]`".into()),
        );
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = index("stop", i);
        let cond = match &item.kind {
            Kind::Str(s) => match parse_threshold(s) {
                Ok((metric, cmp, window)) => {
                    Some(StopCondition::Threshold { metric, cmp, window, text: s.trim().to_string() })
                }
                Err(e) => {
                    cx.error(item, &path, e.message, e.hint);
                    None
                }
            },
            Kind::Map(_) => stop_map(cx, item, &path, target),
            k => {
                cx.error(
                    item,
                    &path,
                    format!("expected a stop condition, found {}", k.describe()),
                    Some("\"METRIC OP VALUE for DURATION\", `{ alarm: NAME }` or `{ max_duration: 5m }`".into()),
                );
                None
            }
        };
        match cond {
            Some(c) => out.push((c, item)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn stop_map(cx: &mut Checker, node: &Node, path: &str, target: Option<&Target>) -> Option<StopCondition> {
    let f = cx.fields(node, path, STOP_KEYS, &none)?;
    let given: Vec<&str> = f.entries().map(|(k, _, _)| k).collect();
    if given.len() != 1 {
        if given.len() > 1 {
            cx.error(node, path, "one stop condition per item: `alarm` or `max_duration`, not both", None);
        } else if f.entries().next().is_none() {
            cx.error(node, path, "empty stop condition", Some("`{ alarm: NAME }` or `{ max_duration: 5m }`".into()));
        }
        return None;
    }
    if let Some(n) = f.get("alarm") {
        let name = cx.text(n, &f.path("alarm"))?;
        if let Some(Target::Lab(_)) = target {
            cx.error(
                n,
                &f.path("alarm"),
                "alarm stop conditions need an aws target: they watch CloudWatch alarms",
                Some("on the lab, use a threshold such as \"error_rate > 50% for 15s\"".into()),
            );
            return None;
        }
        return Some(StopCondition::Alarm { name });
    }
    if let Some(n) = f.get("max_duration") {
        return cx.positive_duration(n, &f.path("max_duration")).map(|limit| StopCondition::MaxDuration { limit });
    }
    // The one key has no value.
    let (k, kn, _) = f.entries().next()?;
    cx.error(kn, &f.path(k), "has no value", None);
    None
}

fn recovery<'n>(cx: &mut Checker, node: &'n Node) -> Option<(Recovery, &'n Node)> {
    let f = cx.fields(node, "recovery", RECOVERY_KEYS, &none)?;
    let within_node = cx.require(&f, "within", "the recovery deadline, e.g. `60s`")?;
    let within = cx.duration(within_node, &f.path("within")).and_then(|d| {
        if d.is_zero() {
            cx.error(
                within_node,
                &f.path("within"),
                "the recovery deadline is zero: nothing can recover in no time",
                Some("give the service time to recover, e.g. `within: 60s`".into()),
            );
            return None;
        }
        Some(d)
    });
    let hold = match f.get("hold") {
        Some(n) => cx.positive_duration(n, &f.path("hold")),
        None => Some(DEFAULT_HOLD),
    };
    Some((Recovery { within: within?, hold: hold? }, within_node))
}

/// The rules of the timeline: stages and faults happen while the load runs, and the recovery
/// deadline (plus the hold that proves recovery) fits before the load ends.
fn timeline(
    cx: &mut Checker,
    load: &Load,
    stages: &[StageAt<'_>],
    faults: &[FaultAt<'_>],
    recovery: &Recovery,
    within_node: &Node,
) {
    let end = load.duration;
    let fmt = format_duration;
    let mut ok = true;
    for (i, s) in stages.iter().enumerate() {
        let path = format!("load.stages[{i}]");
        if s.stage.at >= end {
            cx.error(
                s.at,
                &join(&path, "at"),
                format!(
                    "the stage starts at {}, when the load has ended (load.duration: {})",
                    fmt(s.stage.at),
                    fmt(end)
                ),
                None,
            );
            ok = false;
        } else if s.stage.at + s.stage.duration > end {
            cx.error(
                s.window,
                &path,
                format!(
                    "the stage ends at {}, after the load ends (load.duration: {})",
                    fmt(s.stage.at + s.stage.duration),
                    fmt(end)
                ),
                None,
            );
            ok = false;
        }
    }
    let mut order: Vec<&StageAt<'_>> = stages.iter().collect();
    order.sort_by_key(|s| s.stage.at);
    for w in order.windows(2) {
        let (a, b) = (&w[0].stage, &w[1].stage);
        if b.at < a.at + a.duration {
            let i = stages.iter().position(|s| std::ptr::eq(s, w[1])).unwrap_or(0);
            cx.error(
                w[1].at,
                &format!("load.stages[{i}].at"),
                format!(
                    "the stage starts at {} while the stage at {} still runs (until {})",
                    fmt(b.at),
                    fmt(a.at),
                    fmt(a.at + a.duration)
                ),
                Some("stages must not overlap".into()),
            );
            ok = false;
        }
    }
    for (i, f) in faults.iter().enumerate() {
        let path = format!("faults[{i}]");
        let fault = &f.fault;
        if fault.at >= end {
            cx.error(
                f.at,
                &join(&path, "at"),
                format!(
                    "the fault is scheduled at {}, after the load ends (load.duration: {})",
                    fmt(fault.at),
                    fmt(end)
                ),
                Some("move it earlier or lengthen load.duration".into()),
            );
            ok = false;
        } else if fault.ends_at() > end {
            let node = f.window.unwrap_or(f.at);
            cx.error(
                node,
                &path,
                format!(
                    "the fault lasts until {}, after the load ends (load.duration: {})",
                    fmt(fault.ends_at()),
                    fmt(end)
                ),
                None,
            );
            ok = false;
        }
    }
    // The gate before the first disruption (a fault or a load stage) judges whole seconds of
    // load, at least one: the engine runs it over `max(hold, 1s)` of baseline.
    let baseline = recovery.hold.max(std::time::Duration::from_secs(1));
    let first_fault = faults.iter().enumerate().min_by_key(|(_, f)| f.fault.at);
    let first_stage = stages.iter().enumerate().min_by_key(|(_, s)| s.stage.at);
    let first = match (first_fault, first_stage) {
        (Some((i, f)), Some((_, s))) if f.fault.at <= s.stage.at => {
            Some((f.at, format!("faults[{i}].at"), "fault", f.fault.at))
        }
        (_, Some((i, s))) => Some((s.at, format!("load.stages[{i}].at"), "load stage", s.stage.at)),
        (Some((i, f)), None) => Some((f.at, format!("faults[{i}].at"), "fault", f.fault.at)),
        (None, None) => None,
    };
    if let Some((node, path, what, at)) = first
        && at < baseline
    {
        let why = if baseline > recovery.hold {
            format!("recovery.hold {}, and at least a second", fmt(recovery.hold))
        } else {
            "recovery.hold".to_string()
        };
        cx.error(
            node,
            &path,
            format!(
                "the first {what} is at {}, but the steady state is checked over the {} before it ({why})",
                fmt(at),
                fmt(baseline)
            ),
            Some(format!("{} it at {} or later", if what == "fault" { "inject" } else { "start" }, fmt(baseline))),
        );
        ok = false;
    }
    if !ok {
        return;
    }
    let last_fault = faults.iter().map(|f| f.fault.ends_at()).max();
    let last_stage = load.stages.iter().map(|s| s.at + s.duration).max();
    let Some(last) = last_fault.max(last_stage) else { return };
    let needed = last + recovery.within + recovery.hold;
    if needed > end {
        cx.error(
            within_node,
            "recovery.within",
            format!(
                "the recovery deadline does not fit in the load: the last disruption ends at {}, + within {} + hold {} = {}, after load.duration {}",
                fmt(last),
                fmt(recovery.within),
                fmt(recovery.hold),
                fmt(needed),
                fmt(end)
            ),
            Some(format!("lengthen load.duration to at least {}, or shorten recovery.within", fmt(needed))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Diagnostic, load_bytes};

    const MINIMAL: &str = "name: t\nload: { url: /, rate: 100/s, duration: 100s }\nsteady_state: { error_rate: \"< 1%\" }\nrecovery: { within: 45s }\n";

    fn load(text: &str) -> Result<Scenario, Vec<Diagnostic>> {
        load_bytes("t.yaml", text.as_bytes(), Path::new("."))
    }

    fn with_faults(faults: &str) -> Scenario {
        load(&format!("{MINIMAL}faults:\n{faults}")).unwrap_or_else(|d| panic!("{d:?}"))
    }

    fn errors(text: &str) -> Vec<String> {
        load(text).err().unwrap_or_default().iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn defaults_fill_what_is_not_written() {
        let s = load(MINIMAL).unwrap();
        let Target::Lab(lab) = &s.target else { panic!("default target is the lab") };
        assert_eq!((lab.service.as_str(), lab.tasks, lab.control.is_none()), ("api", 3, true));
        assert_eq!(s.load.timeout, Duration::from_secs(2));
        assert_eq!(s.recovery.hold, Duration::from_secs(5));
        assert!(s.faults.is_empty() && s.stop.is_empty() && s.seed.is_none());
        assert!(!s.load.insecure_tls);
    }

    #[test]
    fn insecure_tls_is_a_boolean_of_the_load() {
        let text = MINIMAL
            .replace("duration: 100s }", "duration: 100s, url: \"https://localhost:8443/\", insecure_tls: true }");
        let text = text.replace("url: /, ", "");
        let s = load(&text).unwrap_or_else(|d| panic!("{d:?}"));
        assert!(s.load.insecure_tls);
        assert_eq!(s.load.url, "https://localhost:8443/");
        let bad = MINIMAL.replace("duration: 100s }", "duration: 100s, insecure_tls: maybe }");
        let e = errors(&bad);
        assert!(e.len() == 1 && e[0].contains("load.insecure_tls"), "{e:?}");
    }

    #[test]
    fn every_seed_a_report_can_print_is_accepted_exactly() {
        for seed in [0u64, 7, 1 << 53, 1 << 63, (1 << 63) + 1, u64::MAX] {
            let s = load(&format!("{MINIMAL}seed: {seed}\n")).unwrap_or_else(|d| panic!("{seed}: {d:?}"));
            assert_eq!(s.seed, Some(seed));
            let quoted = load(&format!("{MINIMAL}seed: \"{seed}\"\n")).unwrap_or_else(|d| panic!("{seed}: {d:?}"));
            assert_eq!(quoted.seed, Some(seed));
        }
        for (big, shown) in [("18446744073709551616", "too large"), ("99999999999999999999999", "too large")] {
            let e = errors(&format!("{MINIMAL}seed: {big}\n"));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(e[0].contains(&format!("{shown}: at most 18446744073709551615")), "{e:?}");
            assert!(!e[0].contains("18446744073709552000") && !e[0].contains("e+"), "no rounded number: {e:?}");
        }
        let e = errors(&format!("{MINIMAL}seed: -1\n"));
        assert!(e.len() == 1 && e[0].contains("must not be negative"), "{e:?}");
    }

    #[test]
    fn a_whole_number_written_another_way_is_told_how_to_write_it() {
        let one = |text: String| -> String {
            let e = errors(&text);
            assert_eq!(e.len(), 1, "{text}: {e:?}");
            e[0].clone()
        };
        for (seed, what, fix) in [
            ("007", "has leading zeros", "`7`"),
            ("-007", "has leading zeros", "`-7`"),
            ("1e3", "is in exponent form", "`1000`"),
            ("!!float 5", "is tagged as a float", "`5`"),
            ("7.0", "has a decimal point", "`7`"),
        ] {
            let e = one(format!("{MINIMAL}seed: {seed}\n"));
            // A tagged value is placed at its scalar, after the tag.
            let col = if seed.starts_with('!') { 15 } else { 7 };
            assert!(e.starts_with(&format!("t.yaml:5:{col}: seed: ")), "{e}");
            assert!(e.contains(&format!("`{seed}` {what}: write it as a plain whole number, {fix}")), "{e}");
        }
        let e = one(format!("{MINIMAL}seed: 7.5\n"));
        assert!(e.ends_with("seed: `7.5` is not a whole number"), "{e}");
        // The other whole-number fields read numbers the same way.
        let e = one(format!("{MINIMAL}target: {{ lab: {{ tasks: 03 }} }}\n"));
        assert!(e.contains("target.lab.tasks: `03` has leading zeros: write it as a plain whole number, `3`"), "{e}");
        let fault =
            |params: &str| format!("{MINIMAL}faults:\n  - {{ type: cpu-stress, at: 20s, for: 10s, {params} }}\n");
        let e = one(fault("select: 2e0, percent: 80"));
        assert!(
            e.contains("faults[0].select: `2e0` is in exponent form: write it as a plain whole number, `2`"),
            "{e}"
        );
        let e = one(fault("select: 1, percent: 080"));
        assert!(
            e.contains("faults[0].percent: `080` has leading zeros: write it as a plain whole number, `80`"),
            "{e}"
        );
        let e = one(fault("select: 1, percent: !!float 80"));
        assert!(e.contains("faults[0].percent: `!!float 80` is tagged as a float"), "{e}");
        // Text keeps what was written.
        let s = load(&MINIMAL.replace("name: t", "name: t\ndescription: 1.10")).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(s.description.as_deref(), Some("1.10"));
    }

    #[test]
    fn the_baseline_before_the_first_disruption_is_what_the_gate_needs() {
        let base = "name: t\nsteady_state: { error_rate: \"< 1%\" }\n";
        let with = |load: &str, rest: &str| errors(&format!("{base}load: {load}\n{rest}"));
        let plain = "{ url: /, rate: 10/s, duration: 60s }";
        // A fault at exactly `hold` is fine (the engine waits for the last baseline second).
        assert!(
            with(plain, "faults: [ { type: task-kill, at: 5s, select: 1 } ]\nrecovery: { within: 10s, hold: 5s }")
                .is_empty()
        );
        // A load stage is a disruption too: the gate runs before it.
        let staged = "{ url: /, rate: 10/s, duration: 60s, stages: [ { at: 2s, rate: 50/s, for: 5s } ] }";
        let e = with(staged, "recovery: { within: 10s, hold: 5s }");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("load.stages[0].at: the first load stage is at 2s, but the steady state is checked over the 5s before it (recovery.hold) (start it at 5s or later)"), "{e:?}");
        // The gate judges at least one whole second.
        let e = with(
            plain,
            "faults: [ { type: task-kill, at: 500ms, select: 1 } ]\nrecovery: { within: 10s, hold: 500ms }",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(
                "checked over the 1s before it (recovery.hold 500ms, and at least a second) (inject it at 1s or later)"
            ),
            "{e:?}"
        );
        assert!(
            with(plain, "faults: [ { type: task-kill, at: 1s, select: 1 } ]\nrecovery: { within: 10s, hold: 500ms }")
                .is_empty()
        );
    }

    #[test]
    fn fault_parameters_are_normalised() {
        let s = with_faults(
            "  - { type: task-kill, at: 20s, select: 50% }\n  - { type: latency, at: 30s, for: 10s, select: 1, delay: 200ms }\n  - { type: cpu-stress, at: 30s, duration: 10s, select: 2, percent: 80% }\n",
        );
        assert_eq!(
            s.faults[0].kind,
            FaultKind::TaskKill { select: Selection::Percent(0.5), signal: KillSignal::Sigkill }
        );
        assert_eq!(
            s.faults[1].kind,
            FaultKind::Latency {
                select: Selection::Count(1),
                delay: Duration::from_millis(200),
                jitter: Duration::ZERO
            }
        );
        assert_eq!(s.faults[1].duration, Some(Duration::from_secs(10)));
        assert_eq!(s.faults[2].kind, FaultKind::CpuStress { select: Selection::Count(2), percent: 80 });
    }

    #[test]
    fn unnamed_faults_are_named_after_their_type() {
        let s = with_faults(
            "  - { type: task-kill, at: 20s, select: 1 }\n  - { type: task-kill, name: task-kill-2, at: 25s, select: 1 }\n  - { type: task-kill, at: 30s, select: 1 }\n",
        );
        let names: Vec<&str> = s.faults.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["task-kill", "task-kill-2", "task-kill-3"]);
    }

    #[test]
    fn manual_faults_are_checked_like_timeline_faults_without_at() {
        let s = load(&format!(
            "{MINIMAL}faults:\n  - {{ type: task-kill, at: 20s, select: 1 }}\nmanual:\n  - {{ type: task-kill, select: 1, signal: SIGTERM }}\n  - {{ type: latency, for: 15s, select: 1, delay: 300ms }}\n  - {{ type: secret-drift, name: drift }}\n"
        ))
        .unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(s.faults.len(), 1);
        let names: Vec<&str> = s.manual.iter().map(|m| m.name.as_str()).collect();
        // Unnamed entries are named across both lists: the timeline's task-kill came first.
        assert_eq!(names, ["task-kill-2", "latency", "drift"]);
        assert_eq!(s.manual[0].kind, FaultKind::TaskKill { select: Selection::Count(1), signal: KillSignal::Sigterm });
        assert_eq!(s.manual[0].duration, None);
        assert_eq!(s.manual[1].duration, Some(Duration::from_secs(15)));
        // Injected at 40s, the latency lasts its `for` from there.
        let f = s.manual[1].at(Duration::from_secs(40));
        assert_eq!((f.at, f.ends_at(), f.name.as_str()), (Duration::from_secs(40), Duration::from_secs(55), "latency"));
        assert!(load(MINIMAL).unwrap().manual.is_empty());
    }

    #[test]
    fn bad_manual_faults_get_the_same_diagnostics() {
        let cases = [
            (
                "{ type: task-kill, at: 30s, select: 1 }",
                "8:24: manual[0].at: a manual fault has no `at`: it is injected when commanded during the run (move it under `faults:` to put it on the timeline)",
            ),
            (
                "{ type: task_kil, select: 1 }",
                "8:13: manual[0].type: unknown fault type `task_kil` (did you mean `task-kill`?)",
            ),
            (
                "{ type: latency, select: 1, dealy: 1s, for: 5s }",
                "8:33: manual[0].dealy: unknown key `dealy` (did you mean `delay`?)",
            ),
            (
                "{ type: latency, select: 1, delay: 1s }",
                "8:5: manual[0]: missing required key `for` (how long latency lasts, e.g. `for: 30s`)",
            ),
            (
                "{ type: task-kill, select: 1, for: 5s }",
                "8:35: manual[0].for: unknown key `for` (task-kill is instantaneous: `for` does not apply)",
            ),
            (
                "{ type: task-kill, select: 9 }",
                "8:32: manual[0].select: selects 9 tasks, but the lab service runs 3 (select fewer tasks, or a percentage such as `50%`)",
            ),
            (
                "{ type: task-kill, name: slow, select: 1 }",
                "8:30: manual[0].name: duplicate fault name `slow` (fault names must be unique: the report and the journal refer to faults by name)",
            ),
            (
                "{ type: latency, select: 1, delay: 1s, for: 101s }",
                "8:49: manual[0]: the fault lasts 1m41s, longer than the whole load (load.duration: 1m40s)",
            ),
        ];
        let timed = "faults:\n  - { type: latency, name: slow, at: 20s, for: 5s, select: 1, delay: 1s }\n";
        for (entry, want) in cases {
            let e = errors(&format!("{MINIMAL}{timed}manual:\n  - {entry}\n"));
            assert_eq!(e, [format!("t.yaml:{want}")], "{entry}");
        }
        let e = errors(&format!("{MINIMAL}{timed}manual:\n  {{ type: task-kill }}\n"));
        assert_eq!(
            e,
            [
                "t.yaml:8:3: manual: expected a list of faults, found a mapping (each fault is an item `- { type: task-kill, select: 1 }`)"
            ]
        );
    }

    #[test]
    fn a_lab_failover_lasts_its_outage() {
        let s = with_faults("  - { type: db-failover, at: 20s, outage: 8s }\n");
        assert_eq!(s.faults[0].duration, None, "the engine does not revert a failover");
        assert_eq!(s.faults[0].ends_at(), Duration::from_secs(28));
        let s = with_faults("  - { type: db-failover, at: 20s }\n");
        assert_eq!(
            s.faults[0].kind,
            FaultKind::DbFailover { outage: Some(Duration::from_secs(5)), target_instance: None }
        );
    }

    #[test]
    fn lab_only_defaults_stay_off_aws() {
        let s = load(&format!(
            "{MINIMAL}target:\n  aws: {{ region: eu-west-1, cluster: c, service: s, db_cluster: d, url: http://lb }}\nfaults:\n  - {{ type: db-failover, at: 20s }}\n"
        ))
        .unwrap();
        assert_eq!(s.faults[0].kind, FaultKind::DbFailover { outage: None, target_instance: None });
        let Target::Aws(a) = &s.target else { panic!() };
        assert_eq!((a.max_select, a.allow_full_outage), (0.5, false));
    }

    #[test]
    fn a_db_failover_with_for_points_at_its_outage() {
        let e = errors(&format!("{MINIMAL}faults:\n  - {{ type: db-failover, at: 20s, for: 10s }}\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("db-failover is instantaneous; the lab's writer outage is set by `outage`"), "{e:?}");
    }

    #[test]
    fn every_aws_key_a_fault_type_needs_is_checked_on_the_target() {
        let s = load(&format!(
            "{MINIMAL}target:\n  aws: {{ region: eu-west-1, cluster: c, service: s, db_cluster: d, url: http://lb }}\n"
        ))
        .unwrap();
        let Target::Aws(a) = &s.target else { panic!() };
        for d in faults::REGISTRY {
            if let Some(need) = d.aws_needs {
                assert!(aws_key_set(a, need.key).is_some(), "{}: unknown target.aws key {}", d.name, need.key);
            }
        }
        assert_eq!(aws_key_set(a, "db_cluster"), Some(true));
        assert_eq!(aws_key_set(a, "secret"), Some(false));
    }

    #[test]
    fn the_recovery_deadline_must_fit_after_the_last_disruption() {
        // Stage ends at 80s; 80 + 15 + 5 = 100: fits exactly.
        let ok = "name: t\nload: { url: /, rate: 10/s, stages: [ { at: 50s, rate: 20/s, for: 30s } ], duration: 100s }\nsteady_state: { error_rate: \"< 1%\" }\nrecovery: { within: 15s }\n";
        assert!(load(ok).is_ok());
        let late = ok.replace("within: 15s", "within: 16s");
        let e = errors(&late);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("recovery.within: the recovery deadline does not fit"), "{e:?}");
        assert!(e[0].contains("at least 1m41s"), "{e:?}");
    }

    #[test]
    fn every_error_of_a_file_is_reported_in_file_order() {
        let text = "name: t\nload: { url: /, rate: 100, duration: 2 }\nsteady_state: { p95: \"< 250\" }\nfaults:\n  - { type: nope, at: 1s }\nrecovery: { within: 0s }\n";
        let e = errors(text);
        assert_eq!(e.len(), 5, "{e:#?}");
        let lines: Vec<&str> = e.iter().map(|d| d.split(':').nth(1).unwrap()).collect();
        assert_eq!(lines, ["2", "2", "3", "5", "6"]);
    }

    #[test]
    fn alarms_need_aws_and_stop_conditions_parse() {
        let e = errors(&format!("{MINIMAL}stop: [ {{ alarm: a }} ]\n"));
        assert!(e[0].contains("alarm stop conditions need an aws target"), "{e:?}");
        let s = load(&format!("{MINIMAL}stop: [ \"p99 > 2s for 10s\", {{ max_duration: 5m }} ]\n")).unwrap();
        assert_eq!(s.stop[1], StopCondition::MaxDuration { limit: Duration::from_secs(300) });
        let StopCondition::Threshold { metric, cmp, window, .. } = &s.stop[0] else { panic!() };
        assert_eq!((*metric, cmp.value, *window), (Metric::P99, 2000.0, Duration::from_secs(10)));
    }
}
