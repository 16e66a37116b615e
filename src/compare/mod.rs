//! `siege compare A B`: two runs of one scenario side by side. [`load`] reads a run's
//! `report.json` (version 3 or later: older ones lack the phases and the scenario hash),
//! [`check`] tells whether the runs are comparable, [`compare`] computes every measure with its
//! difference and noise, and [`write_all`] writes `compare.md`, `compare.json` and the overlaid
//! charts. Documented in `docs/compare.md`.

mod charts;
mod markdown;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::load::hdr;
use crate::report::{PhaseName, PhaseRecord, Redactor, ReportError, RunRecord, WindowRecord};

/// The oldest `report.json` layout `siege compare` reads.
pub const OLDEST_COMPARABLE: u32 = 4;

/// Layout version of `compare.json`.
pub const COMPARE_VERSION: u32 = 2;

pub const COMPARE_MD: &str = "compare.md";
pub const COMPARE_JSON: &str = "compare.json";

/// Times to restore, outages and time to detect are judged on one-second windows, with target samples taken once a
/// second (a sample may be up to a second old when its window closes).
const TIMING_NOISE_S: f64 = 2.0;
/// Latencies closer than this are not told apart (a scheduler tick, a GC pause).
const LATENCY_FLOOR_MS: f64 = 1.0;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(
        "{path} has schema_version {found}: siege compare reads version {OLDEST_COMPARABLE} and later (older reports lack the phases and the scenario hash it needs, or time detection and restoration differently); run the scenario again with this siege"
    )]
    TooOld { path: PathBuf, found: u32 },
    #[error("{path}: the {phase} latency histogram cannot be read: {source}")]
    Histogram { path: PathBuf, phase: &'static str, source: hdr::HdrError },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// A run to compare: its record and where it was read from.
#[derive(Debug, Clone)]
pub struct Run {
    pub path: PathBuf,
    pub record: RunRecord,
}

/// Reads `path` (a report directory or its `report.json`) for comparing.
pub fn load(path: &Path) -> Result<Run, CompareError> {
    let record = crate::report::load_record(path)?;
    if record.schema_version < OLDEST_COMPARABLE {
        return Err(CompareError::TooOld { path: path.to_path_buf(), found: record.schema_version });
    }
    for p in &record.phases {
        if let Some(t) = &p.latency_hdr {
            hdr::from_text(t).map_err(|source| CompareError::Histogram {
                path: path.to_path_buf(),
                phase: p.phase.label(),
                source,
            })?;
        }
    }
    Ok(Run { path: path.to_path_buf(), record })
}

/// One way in which two runs are not comparable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// `scenario hash`, `load schedule`, `fault timeline`, `target kind`, `target size`.
    pub what: String,
    pub a: String,
    pub b: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} differs: A {}, B {}", self.what, self.a, self.b)
    }
}

/// What makes `a` and `b` not comparable; empty when they are.
pub fn check(a: &RunRecord, b: &RunRecord) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut differ = |what: &str, x: String, y: String| {
        if x != y {
            out.push(Difference { what: what.into(), a: x, b: y });
        }
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    differ("scenario hash", opt(&a.scenario.hash), opt(&b.scenario.hash));
    differ("load schedule", opt(&a.scenario.load_schedule), opt(&b.scenario.load_schedule));
    let plan =
        |r: &RunRecord| if r.scenario.fault_plan.is_empty() { "none".into() } else { r.scenario.fault_plan.join("; ") };
    differ("fault timeline", plan(a), plan(b));
    differ("target kind", a.scenario.target.clone(), b.scenario.target.clone());
    let size = |r: &RunRecord| r.scenario.target_size.map_or("unknown".into(), |n| format!("{n} tasks"));
    differ("target size", size(a), size(b));
    out
}

/// Which way a measure should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Better {
    Lower,
    Higher,
    /// Neither way is better (time to detect of the steady state: a later break can mean the
    /// service held longer).
    Neither,
}

/// How B compares with A on one measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Judgement {
    /// The difference is within the measure's noise.
    WithinNoise,
    /// B is better than A beyond the noise.
    Better,
    /// B is worse than A beyond the noise.
    Worse,
    /// B differs beyond the noise, on a measure without a better direction.
    Differs,
    /// One run has no value (not recovered, no such phase): see the values.
    NotComparable,
}

/// One measure of both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `run`, `baseline`, `faults`, `recovery`, `worst window`.
    pub section: String,
    /// e.g. `MTTR`, `p95`, `error rate`, `errors: status_502`.
    pub measure: String,
    /// `s`, `ms`, `%`, `count` or empty (a text value).
    pub unit: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// What `a`/`b` say in words when there is no number (`not recovered`, `PASSED`).
    pub a_text: String,
    pub b_text: String,
    /// `b - a`, when both are numbers.
    pub diff: Option<f64>,
    /// The noise of this measure in its unit; a difference within it is not a difference.
    pub noise: Option<f64>,
    /// How the noise was obtained.
    pub noise_rule: String,
    pub better: Better,
    pub judgement: Judgement,
    /// Whether a `worse` judgement here makes `siege compare` exit 1: MTTR, and the steady
    /// state's metrics in each phase.
    pub gates: bool,
}

/// Human times of one author for one fault, in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HumanRow {
    pub fault: String,
    pub author: String,
    pub a_detected_s: Option<f64>,
    pub b_detected_s: Option<f64>,
    pub a_mitigated_s: Option<f64>,
    pub b_mitigated_s: Option<f64>,
}

/// One run, as `compare.json` names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRef {
    pub path: String,
    pub run_id: String,
    pub started_at: String,
    pub outcome: crate::report::Outcome,
    pub reason: String,
}

/// Everything `compare.md` and `compare.json` show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub compare_version: u32,
    pub scenario: String,
    pub scenario_hash: Option<String>,
    pub a: RunRef,
    pub b: RunRef,
    /// Why the runs are not comparable; non-empty only when compared anyway (`--force`).
    pub differences: Vec<Difference>,
    pub rows: Vec<Row>,
    /// Human marks, for the faults and authors both runs have.
    pub human: Vec<HumanRow>,
    /// Whether B is worse than A beyond the noise on a gating row (the exit code 1).
    pub b_worse: bool,
    /// One line: why `b_worse` is what it is.
    pub summary: String,
}

fn run_ref(r: &Run) -> RunRef {
    RunRef {
        path: r.path.display().to_string(),
        run_id: r.record.run_id.clone(),
        started_at: r.record.started_at.clone(),
        outcome: r.record.verdict.outcome,
        reason: r.record.verdict.reason.clone(),
    }
}

/// The spread (max − min) of `values`; `None` when empty.
fn spread(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (lo, hi) = values.into_iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (lo <= hi).then_some(hi - lo)
}

fn phase(r: &RunRecord, name: PhaseName) -> Option<&PhaseRecord> {
    r.phases.iter().find(|p| p.phase == name)
}

/// The windows of a phase.
fn phase_windows<'a>(r: &'a RunRecord, p: Option<&PhaseRecord>) -> Vec<&'a WindowRecord> {
    match p {
        Some(p) => r.windows.iter().filter(|w| (p.from_s..p.to_s).contains(&w.second)).collect(),
        None => vec![],
    }
}

fn judge(a: Option<f64>, b: Option<f64>, noise: Option<f64>, better: Better) -> (Option<f64>, Judgement) {
    let (Some(a), Some(b)) = (a, b) else { return (None, Judgement::NotComparable) };
    let diff = b - a;
    let beyond = diff.abs() > noise.unwrap_or(0.0) + 1e-9;
    let j = match (beyond, better) {
        (false, _) => Judgement::WithinNoise,
        (true, Better::Neither) => Judgement::Differs,
        (true, Better::Lower) if diff > 0.0 => Judgement::Worse,
        (true, Better::Higher) if diff < 0.0 => Judgement::Worse,
        (true, _) => Judgement::Better,
    };
    (Some(diff), j)
}

struct RowSpec<'a> {
    section: &'a str,
    measure: String,
    unit: &'a str,
    a: Option<f64>,
    b: Option<f64>,
    noise: Option<f64>,
    noise_rule: String,
    better: Better,
    gates: bool,
}

fn row(s: RowSpec<'_>, a_text: String, b_text: String) -> Row {
    let (diff, judgement) = judge(s.a, s.b, s.noise, s.better);
    Row {
        section: s.section.into(),
        measure: s.measure,
        unit: s.unit.into(),
        a: s.a,
        b: s.b,
        a_text,
        b_text,
        diff,
        noise: s.noise,
        noise_rule: s.noise_rule,
        better: s.better,
        judgement,
        gates: s.gates,
    }
}

fn num_row(s: RowSpec<'_>) -> Row {
    row(s, String::new(), String::new())
}

/// The run's time to restore after its last disruption ended, or why there is none.
fn mttr(r: &RunRecord) -> (Option<f64>, String) {
    match (r.timings.time_to_recover_s, r.timings.last_fault_end_s) {
        (Some(m), _) => (Some(m), String::new()),
        (None, Some(_)) if r.verdict.outcome == crate::report::Outcome::Failed => (None, "not recovered".into()),
        (None, Some(_)) => (None, format!("n/a ({})", r.verdict.outcome.word().to_lowercase())),
        (None, None) => (None, "n/a (no disruption)".into()),
    }
}

/// For each fault both runs injected, in A's order: its outage and its time to restore after its
/// disruption ended (informing the debrief, not gating: the run's time to restore does).
fn fault_rows(ra: &RunRecord, rb: &RunRecord, rule: &str, rows: &mut Vec<Row>) {
    for fa in &ra.faults {
        let Some(fb) = rb.faults.iter().find(|f| f.name == fa.name) else { continue };
        let (Some(ea), Some(eb)) = (&fa.effect, &fb.effect) else { continue };
        let why = |e: &crate::report::FaultEffect, v: Option<f64>| match (v, e.broken_s, e.already_broken) {
            (Some(_), _, _) => String::new(),
            (None, _, true) => "already broken".to_string(),
            (None, None, false) => "never broken".to_string(),
            (None, Some(_), false) => "not restored".to_string(),
        };
        for (measure, a, b) in
            [("outage", ea.outage_s, eb.outage_s), ("time to restore", ea.time_to_restore_s, eb.time_to_restore_s)]
        {
            rows.push(row(
                RowSpec {
                    section: "fault",
                    measure: format!("{} {measure}", fa.name),
                    unit: "s",
                    a,
                    b,
                    noise: Some(TIMING_NOISE_S),
                    noise_rule: rule.to_string(),
                    better: Better::Lower,
                    gates: false,
                },
                why(ea, a),
                why(eb, b),
            ));
        }
    }
}

fn latency_of(p: Option<&PhaseRecord>, q: &str) -> Option<f64> {
    let l = p?.latency_ms?;
    Some(match q {
        "p50" => l.p50,
        "p95" => l.p95,
        _ => l.p99,
    })
}

fn window_latency(w: &WindowRecord, q: &str) -> f64 {
    match q {
        "p50" => w.latency_ms.p50,
        "p95" => w.latency_ms.p95,
        _ => w.latency_ms.p99,
    }
}

/// Rows of one phase: error rate, latency, errors by class, and the other steady-state metrics.
fn phase_rows(a: &RunRecord, b: &RunRecord, name: PhaseName, metrics: &[String], rows: &mut Vec<Row>) {
    let (pa, pb) = (phase(a, name), phase(b, name));
    if pa.is_none() && pb.is_none() {
        return;
    }
    let section = name.label();
    let (wa, wb) = (phase_windows(a, pa), phase_windows(b, pb));
    let loaded = |w: &&&WindowRecord| w.requests + w.missed > 0;
    let gates = |m: &str| metrics.iter().any(|x| x == m);
    let phase_noise = |f: &dyn Fn(&WindowRecord) -> f64, floor: f64| -> Option<f64> {
        let sa = spread(wa.iter().filter(loaded).map(|w| f(w)));
        let sb = spread(wb.iter().filter(loaded).map(|w| f(w)));
        match (sa, sb) {
            (None, None) => None,
            (x, y) => Some(x.unwrap_or(0.0).max(y.unwrap_or(0.0)).max(floor)),
        }
    };
    rows.push(num_row(RowSpec {
        section,
        measure: "requests".into(),
        unit: "count",
        a: pa.map(|p| p.requests as f64),
        b: pb.map(|p| p.requests as f64),
        noise: None,
        noise_rule: "not judged: the phase lengths differ when the recovery does".into(),
        better: Better::Neither,
        gates: false,
    }));
    // Error rate: the spread of the per-second error rates of the phase in either run, and at
    // least three standard errors of a difference of two proportions over these requests.
    let binomial = match (pa, pb) {
        (Some(x), Some(y)) if x.requests + x.missed > 0 && y.requests + y.missed > 0 => {
            let (na, nb) = ((x.requests + x.missed) as f64, (y.requests + y.missed) as f64);
            let pooled = (x.error_rate * na + y.error_rate * nb) / (na + nb);
            3.0 * (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt() * 100.0
        }
        _ => 0.0,
    };
    rows.push(num_row(RowSpec {
        section,
        measure: "error rate".into(),
        unit: "%",
        a: pa.map(|p| p.error_rate * 100.0),
        b: pb.map(|p| p.error_rate * 100.0),
        noise: phase_noise(&|w| w.error_rate * 100.0, binomial),
        noise_rule: "spread of the phase's per-second error rates in A and B, at least 3 standard errors".into(),
        better: Better::Lower,
        gates: gates("error_rate"),
    }));
    for q in ["p50", "p95", "p99"] {
        rows.push(num_row(RowSpec {
            section,
            measure: q.into(),
            unit: "ms",
            a: latency_of(pa, q),
            b: latency_of(pb, q),
            noise: phase_noise(&|w| window_latency(w, q), LATENCY_FLOOR_MS),
            noise_rule: format!("spread of the phase's per-second {q} in A and B, at least 1ms"),
            better: Better::Lower,
            gates: gates(q),
        }));
    }
    let classes = |p: Option<&PhaseRecord>| p.map(|p| p.errors).unwrap_or_default().classes();
    let (ca, cb) = (classes(pa), classes(pb));
    for ((class, na), (_, nb)) in ca.iter().zip(&cb) {
        if *na == 0 && *nb == 0 {
            continue;
        }
        rows.push(num_row(RowSpec {
            section,
            measure: format!("errors: {class}"),
            unit: "count",
            a: pa.map(|_| *na as f64),
            b: pb.map(|_| *nb as f64),
            noise: None,
            noise_rule: "counts: see the error rate for the judgement".into(),
            better: Better::Neither,
            gates: false,
        }));
    }
    // Target counts of the steady state: the lowest sampled value of the phase; exact counts.
    for (metric, f) in [
        ("healthy_targets", (|w: &WindowRecord| w.healthy_targets) as fn(&WindowRecord) -> Option<u32>),
        ("running_tasks", |w: &WindowRecord| w.running_tasks),
    ] {
        if !gates(metric) {
            continue;
        }
        let lowest = |ws: &[&WindowRecord], p: Option<&PhaseRecord>| {
            p.and_then(|_| ws.iter().filter_map(|w| f(w)).min()).map(f64::from)
        };
        rows.push(num_row(RowSpec {
            section,
            measure: format!("lowest {metric}"),
            unit: "count",
            a: lowest(&wa, pa),
            b: lowest(&wb, pb),
            noise: Some(0.0),
            noise_rule: "exact counts".into(),
            better: Better::Higher,
            gates: true,
        }));
    }
    if gates("rps") {
        let mean = |ws: &[&WindowRecord]| {
            (!ws.is_empty()).then(|| ws.iter().map(|w| w.requests as f64).sum::<f64>() / ws.len() as f64)
        };
        rows.push(num_row(RowSpec {
            section,
            measure: "rps".into(),
            unit: "",
            a: mean(&wa),
            b: mean(&wb),
            noise: phase_noise(&|w| w.requests as f64, 1.0),
            noise_rule: "spread of the phase's per-second request counts in A and B".into(),
            better: Better::Higher,
            gates: true,
        }));
    }
}

/// Compares `b` with `a`; `differences` are the result of [`check`] (compared anyway).
pub fn compare(a: &Run, b: &Run, differences: Vec<Difference>) -> Comparison {
    let (ra, rb) = (&a.record, &b.record);
    let metrics: Vec<String> = ra.steady_state.iter().map(|c| c.metric.clone()).collect();
    let mut rows = Vec::new();
    let word = |r: &RunRecord| r.verdict.outcome.word().to_string();
    let verdict_j = match (ra.verdict.outcome, rb.verdict.outcome) {
        (x, y) if x == y => Judgement::WithinNoise,
        (crate::report::Outcome::Passed, _) => Judgement::Worse,
        (_, crate::report::Outcome::Passed) => Judgement::Better,
        _ => Judgement::Differs,
    };
    rows.push(Row {
        judgement: verdict_j,
        ..row(
            RowSpec {
                section: "run",
                measure: "verdict".into(),
                unit: "",
                a: None,
                b: None,
                noise: None,
                noise_rule: String::new(),
                better: Better::Neither,
                gates: false,
            },
            word(ra),
            word(rb),
        )
    });
    let timing_rule = "1s windows, plus 1s for the age of the target's sample".to_string();
    let text = |v: Option<f64>, none: &str| if v.is_some() { String::new() } else { none.to_string() };
    let (ta, tb) = (ra.timings.time_to_detect_s, rb.timings.time_to_detect_s);
    rows.push(row(
        RowSpec {
            section: "run",
            measure: "time to detect".into(),
            unit: "s",
            a: ta,
            b: tb,
            noise: Some(TIMING_NOISE_S),
            noise_rule: timing_rule.clone(),
            better: Better::Neither,
            gates: false,
        },
        text(ta, "not detected"),
        text(tb, "not detected"),
    ));
    let ((ma, ma_text), (mb, mb_text)) = (mttr(ra), mttr(rb));
    let mut mttr_row = row(
        RowSpec {
            section: "run",
            measure: "time to restore".into(),
            unit: "s",
            a: ma,
            b: mb,
            noise: Some(TIMING_NOISE_S),
            noise_rule: timing_rule.clone(),
            better: Better::Lower,
            gates: true,
        },
        ma_text.clone(),
        mb_text.clone(),
    );
    // Recovered against not recovered is a judgement too.
    if ma.is_some() && mb_text == "not recovered" {
        mttr_row.judgement = Judgement::Worse;
    } else if mb.is_some() && ma_text == "not recovered" {
        mttr_row.judgement = Judgement::Better;
    }
    rows.push(mttr_row);
    fault_rows(ra, rb, &timing_rule, &mut rows);
    let (wa, wb) = (ra.worst_window.as_ref(), rb.worst_window.as_ref());
    rows.push(num_row(RowSpec {
        section: "worst window",
        measure: "error rate".into(),
        unit: "%",
        a: wa.map(|w| w.error_rate * 100.0),
        b: wb.map(|w| w.error_rate * 100.0),
        noise: None,
        noise_rule: "one second: not judged".into(),
        better: Better::Lower,
        gates: false,
    }));
    rows.push(num_row(RowSpec {
        section: "worst window",
        measure: "p95".into(),
        unit: "ms",
        a: wa.map(|w| w.latency_ms.p95),
        b: wb.map(|w| w.latency_ms.p95),
        noise: None,
        noise_rule: "one second: not judged".into(),
        better: Better::Lower,
        gates: false,
    }));
    for name in [PhaseName::Baseline, PhaseName::Faults, PhaseName::Recovery] {
        phase_rows(ra, rb, name, &metrics, &mut rows);
    }
    // A row without noise is not judged.
    for r in rows.iter_mut().filter(|r| r.noise.is_none() && r.section != "run") {
        if r.judgement != Judgement::NotComparable {
            r.judgement = Judgement::WithinNoise;
        }
    }

    let mut human = Vec::new();
    for fa in &ra.faults {
        let Some(fb) = rb.faults.iter().find(|f| f.name == fa.name) else { continue };
        for ha in &fa.human {
            if let Some(hb) = fb.human.iter().find(|h| h.author == ha.author) {
                human.push(HumanRow {
                    fault: fa.name.clone(),
                    author: ha.author.clone(),
                    a_detected_s: ha.detected_s,
                    b_detected_s: hb.detected_s,
                    a_mitigated_s: ha.mitigated_s,
                    b_mitigated_s: hb.mitigated_s,
                });
            }
        }
    }

    let worse: Vec<String> = rows
        .iter()
        .filter(|r| r.gates && r.judgement == Judgement::Worse)
        .map(|r| if r.section == "run" { r.measure.clone() } else { format!("{} {}", r.section, r.measure) })
        .collect();
    let summary = if worse.is_empty() {
        "B is no worse than A beyond the noise on the steady state's metrics and the time to restore".to_string()
    } else {
        format!("B is worse than A beyond the noise: {}", worse.join(", "))
    };
    Comparison {
        compare_version: COMPARE_VERSION,
        scenario: ra.scenario.name.clone(),
        scenario_hash: ra.scenario.hash.clone(),
        a: run_ref(a),
        b: run_ref(b),
        differences,
        rows,
        human,
        b_worse: !worse.is_empty(),
        summary,
    }
}

/// `compare.md` of `c`.
pub fn render_markdown(c: &Comparison, redactor: &Redactor) -> String {
    markdown::render(c, redactor)
}

/// The overlaid charts of `a` and `b`: (file name, SVG document).
pub fn render_charts(a: &RunRecord, b: &RunRecord) -> Vec<(&'static str, String)> {
    charts::charts(a, b)
}

/// Where `siege compare` writes without `--out`: `compare-<A>-vs-<B>` beside B's report
/// directory, each run named by its directory.
pub fn default_out_dir(a: &Path, b: &Path) -> PathBuf {
    let dir_of =
        |p: &Path| if p.is_file() { p.parent().unwrap_or(Path::new(".")).to_path_buf() } else { p.to_path_buf() };
    let name = |p: &Path| {
        let d = dir_of(p);
        std::fs::canonicalize(&d)
            .unwrap_or(d)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    };
    let bdir = std::fs::canonicalize(dir_of(b)).unwrap_or_else(|_| dir_of(b));
    let parent = bdir.parent().unwrap_or(Path::new(".")).to_path_buf();
    parent.join(format!("compare-{}-vs-{}", name(a), name(b)))
}

/// Writes `compare.md`, `compare.json` and the charts into `dir` (created if missing); returns
/// the names of the files written.
pub fn write_all(c: &Comparison, a: &RunRecord, b: &RunRecord, dir: &Path) -> Result<Vec<&'static str>, CompareError> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| CompareError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| CompareError::Write { path: dir.to_path_buf(), source })?;
    let json = serde_json::to_string_pretty(c)
        .map_err(|e| CompareError::Write { path: dir.join(COMPARE_JSON), source: std::io::Error::other(e) })?;
    write(COMPARE_JSON, &(json + "\n"))?;
    write(COMPARE_MD, &render_markdown(c, &Redactor::noop()))?;
    let mut written = vec![COMPARE_MD, COMPARE_JSON];
    for (file, svg) in render_charts(a, b) {
        write(file, &svg)?;
        written.push(file);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests_support::minimal_record;
    use crate::report::{CheckRecord, Outcome};

    fn run(r: RunRecord) -> Run {
        Run { path: PathBuf::from("r"), record: r }
    }

    fn with_mttr(m: Option<f64>) -> RunRecord {
        let mut r = minimal_record();
        r.timings.last_fault_end_s = Some(20.0);
        r.timings.time_to_recover_s = m;
        if m.is_none() {
            r.verdict.outcome = Outcome::Failed;
        }
        r
    }

    fn row<'a>(c: &'a Comparison, section: &str, measure: &str) -> &'a Row {
        c.rows.iter().find(|r| r.section == section && r.measure == measure).unwrap()
    }

    #[test]
    fn mttr_is_judged_against_its_noise_and_not_recovering_is_worse() {
        let cmp = |a, b| compare(&run(with_mttr(a)), &run(with_mttr(b)), vec![]);
        let c = cmp(Some(5.0), Some(7.0));
        assert_eq!((row(&c, "run", "time to restore").judgement, c.b_worse), (Judgement::WithinNoise, false));
        let c = cmp(Some(5.0), Some(7.5));
        assert_eq!((row(&c, "run", "time to restore").judgement, c.b_worse), (Judgement::Worse, true));
        assert_eq!(c.summary, "B is worse than A beyond the noise: time to restore");
        let c = cmp(Some(9.0), Some(5.0));
        assert_eq!((row(&c, "run", "time to restore").judgement, c.b_worse), (Judgement::Better, false));
        let c = cmp(Some(5.0), None);
        let r = row(&c, "run", "time to restore");
        assert_eq!((r.judgement, r.b_text.as_str(), c.b_worse), (Judgement::Worse, "not recovered", true));
        let c = cmp(None, Some(5.0));
        assert_eq!((row(&c, "run", "time to restore").judgement, c.b_worse), (Judgement::Better, false));
        assert_eq!(row(&c, "run", "verdict").judgement, Judgement::Better);
    }

    fn phased(errors: u64, p95: f64, second_p95: [f64; 3]) -> RunRecord {
        let mut r = minimal_record();
        r.steady_state.push(CheckRecord {
            check: "p95 < 250ms".into(),
            metric: "p95".into(),
            before: None,
            before_ok: true,
            after: None,
            after_ok: None,
            unit: "ms".into(),
            threshold: Some(250.0),
        });
        for (s, p) in second_p95.iter().enumerate() {
            let mut w = WindowRecord { second: s as u32, requests: 1000, ..WindowRecord::default() };
            w.latency_ms.p95 = *p;
            r.windows.push(w);
        }
        r.phases.push(PhaseRecord {
            phase: PhaseName::Baseline,
            from_s: 0,
            to_s: 3,
            requests: 3000,
            missed: 0,
            errors: crate::load::ErrorCounts { status_503: errors, ..Default::default() },
            error_rate: errors as f64 / 3000.0,
            latency_ms: Some(crate::load::Latency { p95, ..Default::default() }),
            latency_hdr: None,
        });
        r
    }

    #[test]
    fn phase_latency_noise_is_the_spread_of_the_seconds_and_only_checked_metrics_gate() {
        // A's seconds spread over 4ms: B 3ms slower is noise; 6ms slower is worse, and p95 is a
        // steady-state metric, so it gates.
        let a = phased(0, 10.0, [8.0, 10.0, 12.0]);
        let c = compare(&run(a.clone()), &run(phased(0, 13.0, [10.0, 11.0, 12.0])), vec![]);
        let r = row(&c, "baseline", "p95");
        assert_eq!((r.noise, r.judgement, r.gates, c.b_worse), (Some(4.0), Judgement::WithinNoise, true, false));
        let c = compare(&run(a.clone()), &run(phased(0, 16.0, [15.0, 16.0, 17.0])), vec![]);
        assert_eq!((row(&c, "baseline", "p95").judgement, c.b_worse), (Judgement::Worse, true));
        assert_eq!(c.summary, "B is worse than A beyond the noise: baseline p95");
        // p99 is not checked by the steady state: shown, judged, but it does not gate.
        assert!(!row(&c, "baseline", "p99").gates);
        // The error rate is judged with at least 3 standard errors: 3 errors in 3000 is noise.
        let c = compare(&run(a.clone()), &run(phased(3, 10.0, [8.0, 10.0, 12.0])), vec![]);
        let r = row(&c, "baseline", "error rate");
        assert_eq!(r.judgement, Judgement::WithinNoise, "{r:?}");
        assert!(r.noise.unwrap() > 0.1 && !r.gates, "{r:?}");
        let c = compare(&run(a), &run(phased(300, 10.0, [8.0, 10.0, 12.0])), vec![]);
        assert_eq!(row(&c, "baseline", "error rate").judgement, Judgement::Worse);
        assert!(!c.b_worse, "error_rate is not a steady-state metric of this scenario");
    }

    #[test]
    fn the_check_names_every_difference() {
        let a = minimal_record();
        assert_eq!(check(&a, &a.clone()), vec![]);
        let mut b = minimal_record();
        b.scenario.hash = Some("sha256:11".into());
        b.scenario.target = "aws".into();
        b.scenario.fault_plan = vec!["kill: task-kill at 20s".into()];
        let what: Vec<String> = check(&a, &b).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            what,
            [
                "scenario hash differs: A sha256:00, B sha256:11",
                "fault timeline differs: A none, B kill: task-kill at 20s",
                "target kind differs: A lab, B aws",
            ]
        );
    }

    #[test]
    fn reports_before_version_4_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = minimal_record();
        r.schema_version = 3;
        std::fs::write(tmp.path().join("report.json"), serde_json::to_string(&r).unwrap()).unwrap();
        let e = load(tmp.path()).unwrap_err();
        assert!(matches!(e, CompareError::TooOld { found: 3, .. }), "{e}");
        r.schema_version = 4;
        std::fs::write(tmp.path().join("report.json"), serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(load(tmp.path()).unwrap().record, r);
    }
}
