//! The fault registry: one entry per fault type (one file each), with its parameters and their
//! checks, how it sits on the timeline, when its disruption ends, how `siege plan` words it, its
//! debrief questions, the operation it asks of the target ([`Action`], which the backends carry
//! out) and the one that undoes it ([`Undo`]). Callers reach an entry with [`FaultKind::def`] (or
//! [`lookup`] by name) instead of matching on fault types. This one table drives the parsing of
//! `faults:` and `manual:` entries (which keys a type takes, their defaults, did-you-mean hints),
//! the JSON Schema and the fault reference in `docs/scenario.md`. The fault model the entries are
//! built into ([`FaultKind`], [`Selection`], [`KillSignal`]) lives here too, so that `faults`
//! depends on no other module of the crate but `util`.

mod cpu_stress;
mod db_failover;
mod kind;
mod latency;
mod redeploy;
mod secret_drift;
mod task_kill;

use std::time::Duration;

pub use kind::{FaultKind, KillSignal, Selection};

/// One fault type.
#[derive(Debug)]
pub struct FaultDef {
    /// The `type:` tag in YAML.
    pub name: &'static str,
    /// One line for listings.
    pub summary: &'static str,
    /// What it does on the embedded lab.
    pub lab: &'static str,
    /// What it does on AWS.
    pub aws: &'static str,
    pub timing: Timing,
    /// What else a scenario author should know (empty: nothing).
    pub note: &'static str,
    pub params: &'static [Param],
    /// Builds the fault from its parameters, which the scenario checker has already parsed and
    /// completed with defaults (so every required parameter is present).
    pub build: fn(&Params) -> FaultKind,
    /// Rules on the built fault's parameters beyond their value types (a latency's jitter at
    /// most its delay); the scenario checker reports each problem at the parameter it names.
    pub check: fn(&FaultKind) -> Vec<ParamProblem>,
    /// Why `for` does not apply, when the timing alone does not say enough (`None`: the
    /// checker words it from the timing).
    pub for_hint: Option<&'static str>,
    /// The `target.aws` key this type needs on AWS, and why.
    pub aws_needs: Option<AwsNeed>,
    /// What the fault asks of its target, for the backends (which know these operations, never
    /// fault types).
    pub action: fn(&FaultKind) -> Action,
    /// How the engine undoes the fault once injected (`None`: it does not, the effect settles
    /// by itself): every one that lasts, and an instantaneous one whose effect can be undone (a
    /// lab db-failover's writer outage is ended).
    pub undo: Option<Undo>,
    /// What stays in place when a fault that is normally undone leaves nothing to undo (an
    /// Aurora failover, which is not failed back; a lab failover whose outage is over), for the
    /// timeline and the report: "no revert: " and this phrase. Empty for the types that are
    /// always reverted, or never are (their journal entry is settled at injection).
    pub kept: &'static str,
    /// How long the disruption lasts from the injection whatever `for` says (a lab
    /// db-failover's writer outage); zero for most types.
    pub ends_after: fn(&FaultKind) -> Duration,
    /// What injecting the fault does, in a phrase for `siege plan` ("stop 2 tasks").
    pub describe: fn(&FaultKind) -> String,
    /// What the fault hits on a lab started for the run, for a type that selects no tasks
    /// (empty for the ones that do: the plan counts their tasks).
    pub lab_hits: &'static str,
    /// Debrief questions for a run in which this type was injected, in the order a debrief
    /// would take them.
    pub debrief: &'static [&'static str],
    /// Set when the fault stays in effect until a later remediating fault (see
    /// [`FaultDef::remediates`]) replaces what holds it, however long the run goes on.
    pub lingers: Option<Lingering>,
    /// Whether this type remediates the faults that linger before it on the timeline.
    pub remediates: bool,
}

/// What a fault asks of its target: the operations every backend carries out. Each fault type
/// maps itself onto one ([`FaultDef::action`]); a backend implements these, so a new fault type
/// made of them needs no change to any backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stop the selected tasks (`signal` on the lab; ECS `StopTask` on AWS).
    StopTasks { signal: KillSignal },
    /// Burn `percent` of a core (lab) or of the task's CPU (AWS) in the selected tasks.
    BurnCpu { percent: u32 },
    /// Delay the selected tasks' network by `delay` ± `jitter`.
    DelayNetwork { delay: Duration, jitter: Duration },
    /// Fail the database over: the lab's writer is gone for `outage`; on AWS, `promote` names
    /// the replica to promote.
    FailOverDatabase { outage: Option<Duration>, promote: Option<String> },
    /// Rotate the service's secret; running tasks keep the value they read.
    RotateSecret,
    /// Replace every task of the service, as a redeploy does.
    ReplaceTasks,
}

/// One fault as a backend carries it out: the operation, what it selects and how long it
/// lasts, from the scenario's entry with its defaults applied. Backends receive this, never the
/// scenario's fault, and act on the operation, never on the fault's type.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The fault's name in the scenario (journal records, FIS tags, ECS stop reasons).
    pub fault: String,
    /// Its type (`latency`), for messages and the journal.
    pub kind: &'static str,
    pub action: Action,
    /// Which of the running tasks it acts on, for an action on tasks.
    pub select: Option<Selection>,
    /// How long it lasts before the engine reverts it; `None`: until the revert (a persistent
    /// fault) or not at all (an instantaneous one).
    pub duration: Option<Duration>,
}

/// How an injected fault is undone, from its journal record alone (the record names its type,
/// [`lookup`] gives this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    /// Stop the CPU burn in the tasks that are left.
    EndCpuBurn,
    /// Remove the added delay from the tasks that are left.
    EndNetworkDelay,
    /// End a database outage that is still going (promote a writer); a failover that is over is
    /// not failed back, which would be a second outage.
    EndDatabaseOutage,
    /// Put back the secret version the record names.
    RestoreSecret,
}

impl FaultDef {
    /// Whether the engine reverts the fault once injected.
    pub fn reverted(&self) -> bool {
        self.undo.is_some()
    }
}

/// A problem with a fault's parameters, found by [`FaultDef::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamProblem {
    /// The parameter the problem is reported at.
    pub param: &'static str,
    pub message: String,
}

/// A `target.aws` key a fault type needs on AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsNeed {
    pub key: &'static str,
    /// Why, as a clause after "it" ("fails over this Aurora cluster").
    pub why: &'static str,
}

/// What the debrief asks about a lingering fault, depending on whether a remediating fault ran
/// in the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lingering {
    /// Why it is still in effect, for a failed verdict ("nothing replaced the tasks holding
    /// the stale secret").
    pub still: &'static str,
    pub remedied: &'static str,
    pub unremedied: &'static str,
}

/// What the faults that run through AWS FIS need.
const AWS_FIS: AwsNeed = AwsNeed { key: "fis_role", why: "runs through AWS FIS, which assumes this role" };

/// What a fault file takes for the fields it does not write (`..BASE`): no parameter rules, no
/// `for` hint, nothing needed on AWS, not reverted, no outage, nothing lingering or remediated.
/// Every file writes the fields from `name` to `build`, `describe` and `debrief` itself; the
/// registry tests fail on a file that leaves them empty.
const BASE: FaultDef = FaultDef {
    name: "",
    summary: "",
    lab: "",
    aws: "",
    timing: Timing::Instant,
    note: "",
    params: &[],
    build: |_| FaultKind::Redeploy,
    check: |_| Vec::new(),
    for_hint: None,
    aws_needs: None,
    action: |k| unreachable!("the entry of {k:?} names no action"),
    undo: None,
    kept: "",
    ends_after: |_| Duration::ZERO,
    describe: |_| String::new(),
    lab_hits: "",
    debrief: &[],
    lingers: None,
    remediates: false,
};

/// How a fault sits on the timeline, which decides whether `for:` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Happens at `at` and needs no revert; `for:` is refused.
    Instant,
    /// Lasts `for:` (required), then the engine reverts it.
    Window,
    /// Stays until the run ends (reverted after the verdict); `for:` is refused.
    Persistent,
}

/// One parameter of a fault type.
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    pub kind: ParamKind,
    /// The default as written in YAML; `None` means the parameter is required.
    pub default: Option<&'static str>,
    /// Only meaningful on this backend (`"aws"`, `"lab"`); `None`: both.
    pub backend: Option<&'static str>,
    pub doc: &'static str,
}

/// The value type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A task count (`2`) or a percentage of the tasks (`50%`).
    Selection,
    /// A duration such as `200ms` or `5s`.
    Duration,
    /// A whole percentage, 1–100, written `80` or `80%`.
    Percent,
    /// `SIGKILL` or `SIGTERM`.
    Signal,
    /// Free text (an identifier).
    Text,
}

impl ParamKind {
    /// How the value is written, in a sentence, for hints.
    pub fn example(self) -> &'static str {
        match self {
            ParamKind::Selection => "a task count such as `2` or a percentage such as `50%`",
            ParamKind::Duration => "a duration such as `200ms`",
            ParamKind::Percent => "a percentage such as `80`",
            ParamKind::Signal => "`SIGKILL` or `SIGTERM`",
            ParamKind::Text => "a string",
        }
    }

    /// How the value is written, for docs and messages.
    pub fn syntax(self) -> &'static str {
        match self {
            ParamKind::Selection => "count or percentage (`2`, `50%`)",
            ParamKind::Duration => "duration (`200ms`, `5s`)",
            ParamKind::Percent => "percentage 1–100 (`80` or `80%`)",
            ParamKind::Signal => "`SIGKILL` or `SIGTERM`",
            ParamKind::Text => "string",
        }
    }
}

/// A parsed parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Selection(Selection),
    Duration(Duration),
    Percent(u32),
    Signal(KillSignal),
    Text(String),
}

/// The parsed parameters of one fault, by name.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(&'static str, Value)>);

impl Params {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
    /// Missing values fall back to harmless ones; the checker guarantees they are present.
    pub fn selection(&self, name: &str) -> Selection {
        match self.get(name) {
            Some(Value::Selection(s)) => *s,
            _ => Selection::Count(1),
        }
    }
    pub fn duration(&self, name: &str) -> Option<Duration> {
        match self.get(name) {
            Some(Value::Duration(d)) => Some(*d),
            _ => None,
        }
    }
    pub fn percent(&self, name: &str) -> u32 {
        match self.get(name) {
            Some(Value::Percent(p)) => *p,
            _ => 0,
        }
    }
    pub fn signal(&self, name: &str) -> KillSignal {
        match self.get(name) {
            Some(Value::Signal(s)) => *s,
            _ => KillSignal::Sigkill,
        }
    }
    pub fn text(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }
}

/// Every fault type, in the order the docs list them.
pub static REGISTRY: &[&FaultDef] =
    &[&task_kill::DEF, &cpu_stress::DEF, &latency::DEF, &db_failover::DEF, &secret_drift::DEF, &redeploy::DEF];

/// Keys every fault entry takes, whatever its type.
pub const COMMON_KEYS: &[&str] = &["type", "name", "at", "for", "duration"];

/// The fault type named `name`.
pub fn lookup(name: &str) -> Option<&'static FaultDef> {
    REGISTRY.iter().copied().find(|d| d.name == name)
}

/// The type that remediates lingering faults (`redeploy`).
pub fn remedy() -> Option<&'static FaultDef> {
    REGISTRY.iter().copied().find(|d| d.remediates)
}

/// Every `type:` tag.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|d| d.name).collect()
}

impl FaultDef {
    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Whether, once injected, it lingers until a remediating fault runs.
    pub fn lingers(&self) -> bool {
        self.lingers.is_some()
    }

    /// Every key an entry of this type takes.
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = match self.timing {
            Timing::Window => COMMON_KEYS.to_vec(),
            Timing::Instant | Timing::Persistent => vec!["type", "name", "at"],
        };
        keys.extend(self.params.iter().map(|p| p.name));
        keys
    }
}

/// The fault reference of `docs/scenario.md`, generated from the registry (a test keeps the doc
/// in step with it).
pub fn reference_markdown() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for d in REGISTRY {
        let timing = match d.timing {
            Timing::Instant => "instantaneous: happens at `at`, nothing to revert; `for` does not apply",
            Timing::Window => "lasts `for` (required), then siege reverts it",
            Timing::Persistent => "persists until the run ends and is reverted after the verdict; `for` does not apply",
        };
        let _ = writeln!(out, "### `{}`\n\n{}\n\n- timing: {timing}", d.name, d.summary);
        let _ = writeln!(out, "- lab: {}\n- aws: {}", d.lab, d.aws);
        if !d.note.is_empty() {
            let _ = writeln!(out, "- note: {}", d.note);
        }
        out.push('\n');
        if d.params.is_empty() {
            let _ = writeln!(out, "No parameters besides `type`, `name` and `at`.\n");
            continue;
        }
        let _ = writeln!(out, "| parameter | value | default | |\n|---|---|---|---|");
        for p in d.params {
            let mut default = match (p.default, p.backend) {
                (Some(v), _) => format!("`{v}`"),
                (None, Some(_)) => "none".into(),
                (None, None) => "required".into(),
            };
            if let Some(b) = p.backend {
                default.push_str(&format!(" ({b} only)"));
            }
            let _ = writeln!(out, "| `{}` | {} | {default} | {} |", p.name, p.kind.syntax(), p.doc);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
/// A fault of type `d` with [`sample_params`], as a backend is given it.
pub fn sample_step(d: &FaultDef) -> Step {
    let kind = (d.build)(&sample_params(d));
    Step { fault: d.name.into(), kind: d.name, action: kind.action(), select: kind.selection(), duration: None }
}

#[cfg(test)]
/// Every parameter of `d` with a valid value.
pub fn sample_params(d: &FaultDef) -> Params {
    let mut p = Params::default();
    for param in d.params {
        let v = match param.kind {
            ParamKind::Selection => Value::Selection(Selection::Count(1)),
            ParamKind::Duration => Value::Duration(Duration::from_secs(1)),
            ParamKind::Percent => Value::Percent(50),
            ParamKind::Signal => Value::Signal(KillSignal::Sigterm),
            ParamKind::Text => Value::Text("x".into()),
        };
        p.0.push((param.name, v));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_kebab_case() {
        let mut n = names();
        assert!(n.iter().all(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
        n.sort();
        n.dedup();
        assert_eq!(n.len(), REGISTRY.len());
    }

    #[test]
    fn every_fault_type_has_debrief_questions_and_a_description() {
        for d in REGISTRY {
            assert!(!d.debrief.is_empty(), "{} has no debrief questions", d.name);
            assert!(d.debrief.iter().all(|q| q.trim().ends_with('?')), "{}: {:?}", d.name, d.debrief);
            let kind = (d.build)(&sample_params(d));
            assert!(!kind.describe().trim().is_empty(), "{} has no description", d.name);
            assert!((d.check)(&kind).is_empty(), "{}: valid parameters refused", d.name);
            // The plan says what a fault hits: its tasks, or else what the registry names.
            assert!(kind.selection().is_some() || !d.lab_hits.is_empty(), "{} says nothing it hits", d.name);
            assert!(kind.def().name == d.name);
        }
    }

    #[test]
    fn faults_that_last_are_reverted_and_lingering_ones_have_a_remedy() {
        for d in REGISTRY {
            assert!(d.timing == Timing::Instant || d.undo.is_some(), "{} lasts but is never reverted", d.name);
            if let Some(l) = d.lingers {
                assert_eq!(d.timing, Timing::Persistent, "{} lingers but is reverted by `for`", d.name);
                assert!(l.remedied.ends_with('?') && l.unremedied.ends_with('?'));
            }
        }
        // Nothing to undo after a kill or a redeploy; a db-failover's revert promotes the writer.
        let settled: Vec<&str> = REGISTRY.iter().filter(|d| d.undo.is_none()).map(|d| d.name).collect();
        assert_eq!(settled, ["task-kill", "redeploy"]);
        assert!(REGISTRY.iter().all(|d| !d.lingers() || remedy().is_some()));
        assert_eq!(remedy().map(|d| d.name), Some("redeploy"));
        assert!(lookup("secret-drift").is_some_and(FaultDef::lingers));
    }

    #[test]
    fn latency_checks_its_delay_and_jitter() {
        let l = |delay: u64, jitter: u64| FaultKind::Latency {
            select: Selection::Count(1),
            delay: Duration::from_millis(delay),
            jitter: Duration::from_millis(jitter),
        };
        let check = |k: &FaultKind| (k.def().check)(k);
        assert_eq!(check(&l(0, 0))[0].param, "delay");
        assert_eq!(check(&l(100, 200))[0].message, "the jitter (200ms) is larger than the delay (100ms)");
        assert!(check(&l(100, 100)).is_empty());
    }

    #[test]
    fn db_failover_disruption_lasts_its_outage() {
        let k = |outage| FaultKind::DbFailover { outage, target_instance: None };
        let after = |k: &FaultKind| (k.def().ends_after)(k);
        assert_eq!(after(&k(Some(Duration::from_secs(5)))), Duration::from_secs(5));
        assert_eq!(after(&k(None)), Duration::ZERO);
        assert_eq!(k(Some(Duration::from_secs(5))).describe(), "fail the database over (no writer for 5s)");
        assert_eq!(after(&FaultKind::Redeploy), Duration::ZERO);
    }

    #[test]
    fn build_matches_type_name() {
        for d in REGISTRY {
            assert_eq!((d.build)(&sample_params(d)).type_name(), d.name);
        }
    }
}
