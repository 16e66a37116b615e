//! Builds the [`RunRecord`] of a run: the timeline and faults from the events as they happen,
//! the verdict, timings and steady-state table from the history at the end.

use super::events::{CancelReason, Event};
use crate::observe::{self, Second};
use crate::report::{
    CheckRecord, FaultEffect, FaultRecord, LoadTotals, Mark, Outcome, PhaseName, PhaseRecord, RunRecord,
    SCHEMA_VERSION, ScenarioInfo, TimelineEntry, TimelineKind, Timings, Verdict, WindowRecord,
};
use crate::scenario::{Scenario, Target};

#[derive(Debug, Default)]
pub struct RecordBuilder {
    pub timeline: Vec<TimelineEntry>,
    pub faults: Vec<FaultRecord>,
    pub notes: Vec<String>,
    pub marks: Vec<Mark>,
    /// When each fault's injection started, as it happened (a failover on AWS breaks the service
    /// while its injection is under way; the record rounds times to 100 ms, the time to detect is
    /// read at 10 ms).
    started_at: Vec<(String, f64)>,
    /// When each load stage started, the commanded spikes with the scenario's.
    stages_at: Vec<f64>,
}

impl RecordBuilder {
    fn push(&mut self, t: f64, kind: TimelineKind, text: String) {
        self.timeline.push(TimelineEntry { t_s: round(t), kind, text });
    }

    fn fault(&mut self, name: &str) -> Option<&mut FaultRecord> {
        self.faults.iter_mut().rev().find(|f| f.name == name)
    }

    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::PhaseChanged { t, phase } => self.push(*t, TimelineKind::Phase, format!("phase: {}", phase.label())),
            Event::BaselineChecked { t, held, detail } => self.push(
                *t,
                TimelineKind::Phase,
                if *held {
                    format!("steady state held before the faults ({detail})")
                } else {
                    format!("steady state did NOT hold before the faults ({detail})")
                },
            ),
            Event::StageStarted { t, rate } => {
                self.stages_at.push(*t);
                self.push(*t, TimelineKind::Stage, format!("load rate → {rate:.0}/s"))
            }
            Event::FaultInjecting { t, fault, resolved, injected } => {
                self.started_at.push((fault.clone(), *t));
                let (targets, summary) = (resolved.targets.clone(), resolved.summary.clone());
                self.faults.push(FaultRecord::not_injected(fault.clone(), injected.kind.clone(), targets, summary))
            }
            Event::FaultInjected { t, fault, kind, summary } => {
                if let Some(f) = self.fault(fault) {
                    f.injected_s = Some(round(*t));
                }
                self.push(*t, TimelineKind::FaultInjected, format!("{fault} ({kind}) injected: {summary}"));
            }
            Event::FaultInjectFailed { t, fault, error } => {
                self.push(*t, TimelineKind::Note, format!("{fault}: injection failed: {error}"))
            }
            Event::FaultReverted { t, fault } => {
                if let Some(f) = self.fault(fault) {
                    f.reverted_s = Some(round(*t));
                }
                self.push(*t, TimelineKind::FaultReverted, format!("{fault} reverted"));
            }
            Event::FaultRevertFailed { t, fault, error } => {
                if let Some(f) = self.fault(fault) {
                    f.revert_error = Some(error.clone());
                }
                self.push(*t, TimelineKind::RevertFailed, format!("{fault}: revert FAILED: {error}"));
            }
            Event::SteadyStateBroken { t, detail } => {
                self.push(*t, TimelineKind::SteadyStateBroken, format!("steady state broken: {detail}"))
            }
            Event::SteadyStateRestored { t } => {
                self.push(*t, TimelineKind::SteadyStateRestored, "steady state restored".into())
            }
            Event::Cancelled { t, reason } => {
                let (kind, text) = match reason {
                    CancelReason::StopCondition(c) => {
                        (TimelineKind::StopCondition, format!("stop condition tripped: {c}"))
                    }
                    CancelReason::Interrupted(s) => (TimelineKind::Note, format!("interrupted by {s}")),
                    CancelReason::Precondition(d) => (TimelineKind::Note, format!("precondition failed: {d}")),
                    CancelReason::Error(e) => (TimelineKind::Note, format!("error: {e}")),
                };
                self.push(*t, kind, text);
            }
            Event::ServiceEvent { t, text } => self.push(*t, TimelineKind::Event, text.clone()),
            Event::Note { t, text } => {
                self.notes.push(text.clone());
                self.push(*t, TimelineKind::Note, text.clone());
            }
            Event::MarkAdded { t, mark } => {
                self.push(*t, TimelineKind::Mark, mark.describe());
                self.marks.push(Mark { t: round(*t), ..mark.clone() });
            }
            Event::MarkMoved { t, id, fault, from } => {
                if let Some(m) = self.marks.iter_mut().find(|m| m.id == *id) {
                    m.moved_from.get_or_insert_with(|| from.clone());
                    m.fault = Some(fault.clone());
                }
                self.push(*t, TimelineKind::Note, format!("mark {id} moved from {from} to {fault} by the instructor"));
            }
            // A type that is normally reverted but left nothing to revert (a failover's new
            // writer) says what stays; a kill or a redeploy, never reverted, says nothing.
            Event::FaultSettled { t, fault } => {
                let kept = self.fault(fault).and_then(|f| {
                    let kept = crate::faults::lookup(&f.kind).map(|d| d.kept).filter(|k| !k.is_empty())?;
                    f.no_revert = Some(kept.to_string());
                    Some(kept)
                });
                if let Some(kept) = kept {
                    self.push(*t, TimelineKind::Note, format!("{fault}: no revert: {kept}"));
                }
            }
            Event::LoadStarted { .. }
            | Event::RunStarted { .. }
            | Event::BackendReady { .. }
            | Event::SecondClosed { .. }
            | Event::RunFinished { .. } => {}
        }
    }
}

fn round(t: f64) -> f64 {
    (t * 10.0).round() / 10.0
}

/// To the 10 ms the requests' send times are noted at.
fn round_ms(t: f64) -> f64 {
    (t * 100.0).round() / 100.0
}

/// Everything the engine knows at the end of a run.
pub struct Finish<'a> {
    pub scenario: &'a Scenario,
    pub scenario_file: String,
    pub runbook: Option<String>,
    pub run_id: String,
    pub seed: u64,
    pub started_at: String,
    pub finished_at: String,
    pub history: &'a [Second],
    pub cancel: Option<CancelReason>,
    pub revert_failures: Vec<String>,
    pub first_disruption: Option<f64>,
    pub last_disruption_end: Option<f64>,
    pub load: LoadTotals,
    pub duration_s: f64,
}

impl RecordBuilder {
    pub fn finish(mut self, f: Finish<'_>) -> RunRecord {
        let sc = f.scenario;
        let checks = &sc.steady_state.checks;
        let hold = sc.recovery.hold.as_secs().max(1) as usize;
        let within = sc.recovery.within.as_secs_f64();
        let first = f.first_disruption.map(|t| t.floor() as u32);
        let last_end = f.last_disruption_end.map(|t| t.ceil() as u32);

        // Baseline: the `hold` seconds before the first disruption.
        let before_span: &[Second] = match first {
            Some(first) => {
                let end = f.history.iter().position(|s| s.window.second >= first).unwrap_or(f.history.len());
                &f.history[end.saturating_sub(hold)..end]
            }
            None => &f.history[f.history.len().saturating_sub(hold)..],
        };
        let recovered = f.last_disruption_end.and_then(|end| {
            observe::restored_after(checks, f.history, first.unwrap_or(0), end, end + within, sc.recovery.hold)
        });
        let after_span: &[Second] = match recovered {
            Some(r) => {
                let i = f.history.iter().position(|s| s.window.second == r).unwrap_or(0);
                &f.history[i..(i + hold).min(f.history.len())]
            }
            None => &f.history[f.history.len().saturating_sub(hold)..],
        };
        let before = observe::evaluate(checks, before_span);
        let after = observe::evaluate(checks, after_span);
        let faults_ran = self.faults.iter().any(|x| x.injected_s.is_some()) || f.cancel.is_none();

        let steady_state = steady_state_records(&before, &after, faults_ran);

        // Detected after the first disruption as it happened: the first injection (its planned
        // time is up to an injection's duration earlier), or the first stage.
        let stages = sc.load.stages.iter().map(|s| s.at.as_secs_f64()).chain(self.stages_at.iter().copied());
        let began = self.started_at.iter().map(|(_, t)| *t).chain(stages).reduce(f64::min);
        let ttd = first.and_then(|s| observe::first_broken(checks, f.history, s)).map(|b| {
            let from = began.or(f.first_disruption).unwrap_or(0.0);
            round_ms(observe::detected_after(checks, f.history, from, b))
        });
        let mttr = match (recovered, f.last_disruption_end) {
            (Some(r), Some(end)) => Some((f64::from(r) - end).max(0.0)),
            _ => None,
        };

        let outcome_reason = self.verdict(&f, &after, mttr);
        let (outcome, reason) = outcome_reason;
        let interrupted_by = match &f.cancel {
            Some(CancelReason::Interrupted(s)) => Some(s.clone()),
            _ => None,
        };

        let steady_seconds: Vec<bool> =
            f.history.iter().map(|s| observe::all_hold(&observe::evaluate(checks, std::slice::from_ref(s)))).collect();
        let windows: Vec<WindowRecord> =
            f.history.iter().zip(steady_seconds).map(|(s, steady)| window_record(s, steady)).collect();
        let worst_window = first
            .and_then(|first| observe::worst_second(f.history, first))
            .and_then(|w| windows.iter().find(|r| r.second == w.window.second).cloned());

        let faults = self.fault_records(&f);

        let (target, service) = match &sc.target {
            Target::Lab(l) => ("lab", l.service.clone()),
            Target::Aws(a) => ("aws", a.service.clone()),
        };
        RunRecord {
            schema_version: SCHEMA_VERSION,
            run_id: f.run_id,
            scenario: ScenarioInfo {
                name: sc.name.clone(),
                description: sc.description.clone(),
                file: f.scenario_file,
                runbook: f.runbook,
                target: target.into(),
                service,
                hash: Some(scenario_hash(sc)),
                target_size: f.history.iter().find_map(|s| s.sample.as_ref().and_then(|x| x.running_tasks)),
                load_schedule: Some(load_schedule(sc)),
                fault_plan: fault_plan(sc),
            },
            started_at: f.started_at,
            finished_at: f.finished_at,
            seed: f.seed,
            verdict: Verdict { outcome, exit_code: outcome.exit().code(), reason, interrupted_by },
            timings: Timings {
                first_fault_s: f.first_disruption,
                last_fault_end_s: f.last_disruption_end,
                time_to_detect_s: ttd,
                time_to_recover_s: mttr,
                recovery_deadline_s: within,
                recovery_deadline_at_s: f.last_disruption_end.map(|end| end + within),
                duration_s: round(f.duration_s),
            },
            worst_window,
            steady_state,
            timeline: self.timeline,
            faults,
            marks: self.marks,
            phases: phases(f.history, first, recovered.map(|r| r.max(last_end.unwrap_or(0))), &mut self.notes),
            windows,
            load: f.load,
            debrief_questions: vec![],
            notes: self.notes,
        }
    }

    /// The verdict and its reason in words.
    fn verdict(&self, f: &Finish<'_>, after: &[observe::CheckOutcome], mttr: Option<f64>) -> (Outcome, String) {
        let sc = f.scenario;
        let hold = sc.recovery.hold.as_secs().max(1) as usize;
        let within = sc.recovery.within.as_secs_f64();
        let outcome_reason = match &f.cancel {
            Some(CancelReason::Interrupted(s)) => {
                (Outcome::Aborted, format!("interrupted by {s}; every fault was reverted"))
            }
            Some(CancelReason::StopCondition(c)) => {
                (Outcome::Aborted, format!("stop condition tripped: {c}; every fault was reverted"))
            }
            Some(CancelReason::Precondition(d)) => (Outcome::PreconditionFailed, d.clone()),
            Some(CancelReason::Error(e)) => (Outcome::Error, e.clone()),
            // A load-only check with nothing to recover from: the steady state must hold at the end.
            None if f.last_disruption_end.is_none() => {
                let broken: Vec<String> = after.iter().filter(|o| !o.ok).map(describe_broken).collect();
                if broken.is_empty() {
                    (
                        Outcome::Passed,
                        format!("no disruption; the steady state held over the last {}", secs(hold as f64)),
                    )
                } else {
                    (
                        Outcome::Failed,
                        format!(
                            "no disruption, and the steady state did not hold over the last {}: {}",
                            secs(hold as f64),
                            broken.join(", ")
                        ),
                    )
                }
            }
            None => match mttr {
                Some(m) if m <= within => (
                    Outcome::Passed,
                    format!("steady state restored {} after the last disruption (deadline {})", secs(m), secs(within)),
                ),
                _ => {
                    let broken: Vec<String> = after.iter().filter(|o| !o.ok).map(describe_broken).collect();
                    let late = match mttr {
                        Some(m) => format!("steady state restored only after {} (deadline {})", secs(m), secs(within)),
                        None => format!("steady state not restored within {} of the last disruption", secs(within)),
                    };
                    // A lingering fault (a secret drift) that no later remediating one (a
                    // redeploy) took away stays in effect until the run ends: the usual reason
                    // such a drill fails, so name it.
                    let lingering: Vec<(&str, &str)> = sc
                        .faults
                        .iter()
                        .filter_map(|x| x.kind.def().lingers.map(|l| (x, l.still)))
                        .filter(|(x, _)| !sc.faults.iter().any(|r| r.kind.def().remediates && r.at > x.at))
                        .filter(|(x, _)| self.faults.iter().any(|fr| fr.name == x.name && fr.injected_s.is_some()))
                        .map(|(x, still)| (x.name.as_str(), still))
                        .collect();
                    let mut why =
                        if broken.is_empty() { late } else { format!("{late}: at the end, {}", broken.join(", ")) };
                    if !lingering.is_empty() {
                        let names: Vec<&str> = lingering.iter().map(|(n, _)| *n).collect();
                        let mut reasons: Vec<&str> = Vec::new();
                        for (_, r) in &lingering {
                            if !reasons.contains(r) {
                                reasons.push(r);
                            }
                        }
                        why += &format!(
                            "; still in effect: {} ({} — see the runbook)",
                            names.join(", "),
                            reasons.join("; ")
                        );
                    }
                    (Outcome::Failed, why)
                }
            },
        };
        if !f.revert_failures.is_empty() {
            return (
                Outcome::RevertFailed,
                format!(
                    "revert failed: {}; something may still be broken — run `siege recover`",
                    f.revert_failures.join("; ")
                ),
            );
        }
        outcome_reason
    }

    /// Every fault of the scenario, in its order (one the run never reached listed as not
    /// injected: the debrief should see what was planned and did not happen), then the manual
    /// faults injected on command, in the order they were injected; marks attributed to them.
    fn fault_records(&mut self, f: &Finish<'_>) -> Vec<FaultRecord> {
        let sc = f.scenario;
        let faults: Vec<FaultRecord> = sc
            .faults
            .iter()
            .map(|fault| match self.faults.iter().position(|r| r.name == fault.name) {
                Some(i) => {
                    let mut fr = self.faults.swap_remove(i);
                    fr.ends_s = fr.injected_s.map(|t| t + (fault.ends_at() - fault.at).as_secs_f64());
                    // A persistent fault lasts until its revert, or the end of the run.
                    if fault.duration.is_none() && fault.kind.def().timing == crate::faults::Timing::Persistent {
                        fr.ends_s = fr.reverted_s.or(Some(f.duration_s));
                    }
                    fr
                }
                None => FaultRecord::not_injected(
                    fault.name.clone(),
                    fault.kind.type_name().to_string(),
                    vec![],
                    String::new(),
                ),
            })
            .collect();
        // Manual faults the run injected on command, in the order they were injected.
        let mut faults = faults;
        self.faults.sort_by(|a, b| a.injected_s.unwrap_or(f64::MAX).total_cmp(&b.injected_s.unwrap_or(f64::MAX)));
        for mut fr in self.faults.drain(..) {
            // A repeated injection is `NAME#2`, `NAME#3`…
            let of = |m: &&crate::scenario::ManualFault| {
                fr.name == m.name || fr.name.strip_prefix(m.name.as_str()).is_some_and(|k| k.starts_with('#'))
            };
            if let Some(m) = sc.manual.iter().find(of) {
                let lasts = m.at(std::time::Duration::ZERO).ends_at().as_secs_f64();
                fr.ends_s = fr.injected_s.map(|t| t + lasts);
            }
            faults.push(fr);
        }
        measure_effects(&mut faults, sc, f.history, &self.started_at);
        crate::report::attribute_marks(&mut faults, &self.marks);
        faults
    }
}

/// What each injected fault did to the steady state ([`observe::effect`]). A fault that lingers
/// (a secret drift) is disrupting until a later fault remedies it (a redeploy), else until its
/// revert; a break counts as a fault's effect until its disruption's end plus
/// `recovery.within`, or until the next injection if that comes sooner.
fn measure_effects(faults: &mut [FaultRecord], sc: &Scenario, history: &[Second], started_at: &[(String, f64)]) {
    let def = |f: &FaultRecord| crate::faults::lookup(&f.kind);
    // Each injected fault's start: when its injection began (its completion in older events).
    let start = |f: &FaultRecord| {
        let at = f.injected_s?;
        Some(started_at.iter().rev().find(|(name, _)| *name == f.name).map_or(at, |(_, t)| *t))
    };
    let starts: Vec<Option<f64>> = faults.iter().map(start).collect();
    let remedies: Vec<f64> = faults
        .iter()
        .zip(&starts)
        .filter(|(f, _)| def(f).is_some_and(|d| d.remediates))
        .filter_map(|(_, s)| *s)
        .collect();
    let injections: Vec<f64> = starts.iter().flatten().copied().collect();
    let after = |times: &[f64], at: f64| times.iter().copied().filter(|t| *t > at).reduce(f64::min);
    let within = sc.recovery.within.as_secs_f64();
    // In the order of injection: a break that begins in a second two faults were injected in
    // is the first one's.
    let mut order: Vec<(usize, f64)> = starts.iter().enumerate().filter_map(|(i, s)| s.map(|s| (i, s))).collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut claimed = vec![];
    for (i, at) in order {
        let fr = &mut faults[i];
        let lingers = def(fr).is_some_and(|d| d.lingers.is_some());
        let end = match after(&remedies, at) {
            Some(remedy) if lingers => remedy,
            _ => fr.ends_s.unwrap_or(at),
        };
        let until = (end + within).min(after(&injections, at).unwrap_or(f64::INFINITY));
        let e = observe::effect(&sc.steady_state.checks, history, (at, end, until), sc.recovery.hold, &claimed);
        claimed.extend(e.broken);
        let (broken, restored) = (e.broken.map(f64::from), e.restored.map(f64::from));
        let detected = e.broken.map(|b| round_ms(observe::detected_after(&sc.steady_state.checks, history, at, b)));
        fr.effect = Some(FaultEffect {
            detected_after_s: detected,
            disruption_end_s: round(end),
            counted_until_s: round(until),
            already_broken: e.already_broken,
            broken_s: broken,
            restored_s: restored,
            outage_s: broken.zip(restored).map(|(b, r)| r - b),
            time_to_restore_s: restored.map(|r| round((r - end).max(0.0))),
        });
    }
}

/// The steady-state table: each check before the first disruption and after the recovery (none
/// after when no fault ran).
fn steady_state_records(
    before: &[observe::CheckOutcome],
    after: &[observe::CheckOutcome],
    faults_ran: bool,
) -> Vec<CheckRecord> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let unit = observe::display_units(b.check.metric, 0.0).1.to_string();
            CheckRecord {
                check: observe::describe_check(&b.check),
                metric: b.check.metric.name().to_string(),
                before: b.value.map(|v| round2(observe::display_units(b.check.metric, v).0)),
                before_ok: b.ok,
                after: if faults_ran {
                    a.value.map(|v| round2(observe::display_units(a.check.metric, v).0))
                } else {
                    None
                },
                after_ok: if faults_ran { Some(a.ok) } else { None },
                unit,
                threshold: Some(round2(observe::display_units(b.check.metric, b.check.cmp.value).0)),
            }
        })
        .collect()
}

/// `sha256:HEX` of the scenario's canonical JSON (the validated model, serialised with sorted
/// keys), leaving out where a separately started target listens: a lab's `control` URL and an
/// AWS `endpoint` override change from one `siege lab up` (or emulator) to the next, not what
/// the scenario does.
pub fn scenario_hash(sc: &Scenario) -> String {
    use sha2::Digest as _;
    let mut v = serde_json::to_value(sc).unwrap_or_default();
    for at in ["/target/lab", "/target/aws"] {
        if let Some(o) = v.pointer_mut(at).and_then(|t| t.as_object_mut()) {
            o.remove("control");
            o.remove("endpoint");
        }
    }
    // `serde_json::Value` keeps object keys sorted: the text is canonical.
    let text = v.to_string();
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The load schedule in one line, e.g. `/ at 20/s for 30s, timeout 2s; stage at 10s: 100/s for 5s`.
fn load_schedule(sc: &Scenario) -> String {
    let l = &sc.load;
    let mut out = format!(
        "{} at {}/s for {}, timeout {}",
        l.url,
        l.rate.per_second,
        secs(l.duration.as_secs_f64()),
        secs(l.timeout.as_secs_f64())
    );
    for st in &l.stages {
        out += &format!(
            "; stage at {}: {}/s for {}",
            secs(st.at.as_secs_f64()),
            st.rate.per_second,
            secs(st.duration.as_secs_f64())
        );
        if !st.ramp.is_zero() {
            out += &format!(" (ramp {})", secs(st.ramp.as_secs_f64()));
        }
    }
    out
}

/// The planned faults, one line each: `kill-two: task-kill at 20s` or `slow: latency at 5s for 10s`.
fn fault_plan(sc: &Scenario) -> Vec<String> {
    sc.faults
        .iter()
        .map(|x| {
            let mut line = format!("{}: {} at {}", x.name, x.kind.type_name(), secs(x.at.as_secs_f64()));
            if let Some(d) = x.duration {
                line += &format!(" for {}", secs(d.as_secs_f64()));
            }
            line
        })
        .collect()
}

/// The three phases of `history`: before the second of the first disruption (`first`), from
/// there until the steady state was restored (`restored`; the end of the run if it never was),
/// and after it. A phase without any second is left out.
fn phases(history: &[Second], first: Option<u32>, restored: Option<u32>, notes: &mut Vec<String>) -> Vec<PhaseRecord> {
    let end = history.last().map_or(0, |s| s.window.second + 1);
    let first = first.unwrap_or(end).min(end);
    let last_end = restored.unwrap_or(end).clamp(first, end);
    let mut out = Vec::new();
    for (phase, from, to) in
        [(PhaseName::Baseline, 0, first), (PhaseName::Faults, first, last_end), (PhaseName::Recovery, last_end, end)]
    {
        let seconds: Vec<&Second> = history.iter().filter(|s| (from..to).contains(&s.window.second)).collect();
        if seconds.is_empty() {
            continue;
        }
        let mut errors = crate::load::ErrorCounts::default();
        let (mut requests, mut missed) = (0, 0);
        for s in &seconds {
            errors.add(&s.window.errors);
            requests += s.window.requests;
            missed += s.window.missed;
        }
        let all = requests + missed;
        let error_rate = if all == 0 { 0.0 } else { (errors.total() + missed) as f64 / all as f64 };
        let merged = match crate::load::hdr::merge(seconds.iter().map(|s| &*s.window.latency_hist)) {
            Ok(h) => h,
            Err(e) => {
                notes.push(format!("report: the {} latency histograms could not be merged: {e}", phase.label()));
                None
            }
        };
        out.push(PhaseRecord {
            phase,
            from_s: from,
            to_s: to,
            requests,
            missed,
            errors,
            error_rate,
            latency_ms: merged.as_ref().map(crate::load::hdr::percentiles),
            latency_hdr: merged.as_ref().map(crate::load::hdr::to_text),
        });
    }
    out
}

fn window_record(s: &Second, steady: bool) -> WindowRecord {
    let w = &s.window;
    let sample = s.sample.as_ref();
    WindowRecord {
        second: w.second,
        scheduled: w.scheduled,
        requests: w.requests,
        errors: w.errors.total(),
        error_rate: round4(w.error_rate()),
        missed: w.missed,
        latency_ms: w.latency_ms,
        healthy_targets: sample.and_then(|x| x.healthy_targets),
        running_tasks: sample.and_then(|x| x.running_tasks),
        db_writer: sample.and_then(|x| x.db_writer.clone()),
        cpu_percent: sample.and_then(|x| x.cpu_percent).map(round2),
        lb_rps: sample.and_then(|x| x.lb_rps).map(round2),
        lb_5xx_rate: sample.and_then(|x| x.lb_5xx_rate).map(round4),
        lb_response_ms: sample.and_then(|x| x.lb_response_ms).map(round2),
        stale: sample.map(|x| x.stale.clone()).unwrap_or_default(),
        steady,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn secs(s: f64) -> String {
    crate::scenario::units::format_duration(std::time::Duration::from_secs_f64(s.max(0.0)))
}

/// "error_rate < 1% was 3.2%", or "… was not observed".
fn describe_broken(o: &observe::CheckOutcome) -> String {
    match o.value {
        Some(v) => format!("{} was {}", observe::describe_check(&o.check), observe::format_value(o.check.metric, v)),
        None => format!("{} was not observed", observe::describe_check(&o.check)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Sample;
    use crate::load::{ErrorCounts, Window};
    use crate::report::{Outcome, Redactor};

    /// A latency fault from 10 s to 20 s; the steady state must hold again within 30 s.
    const SCENARIO: &str = "name: slow\nload: { url: /, rate: 100/s, duration: 60s }\nsteady_state: { error_rate: \"< 5%\" }\nfaults:\n  - { type: latency, at: 10s, for: 10s, select: 1, delay: 300ms }\nrecovery: { within: 30s, hold: 5s }\n";

    fn scenario() -> Scenario {
        crate::scenario::load_bytes("slow.yaml", SCENARIO.as_bytes(), std::path::Path::new("."))
            .unwrap_or_else(|d| panic!("{d:?}"))
    }

    /// `n` seconds of 100 requests; the seconds in `broken` fail half of them.
    fn history(n: u32, broken: std::ops::Range<u32>) -> Vec<Second> {
        (0..n)
            .map(|s| {
                let errors = if broken.contains(&s) { 50 } else { 0 };
                let window = Window {
                    second: s,
                    requests: 100,
                    scheduled: 100,
                    errors: ErrorCounts { timeout: errors, ..ErrorCounts::default() },
                    ..Window::default()
                };
                Second { window, sample: Some(Sample { healthy_targets: Some(3), ..Sample::default() }) }
            })
            .collect()
    }

    fn record(sc: &Scenario, events: &[Event], history: &[Second], cancel: Option<CancelReason>) -> RunRecord {
        record_of(sc, events, history, cancel, Some((10.0, 20.0)))
    }

    /// The record of a run whose disruptions span `disrupted` (first start, last end).
    fn record_of(
        sc: &Scenario,
        events: &[Event],
        history: &[Second],
        cancel: Option<CancelReason>,
        disrupted: Option<(f64, f64)>,
    ) -> RunRecord {
        let mut b = RecordBuilder::default();
        for e in events {
            b.on_event(e);
        }
        b.finish(Finish {
            scenario: sc,
            scenario_file: "slow.yaml".into(),
            runbook: None,
            run_id: "slow-1".into(),
            seed: 7,
            started_at: "2026-11-22T03:04:05Z".into(),
            finished_at: "2026-11-22T03:05:05Z".into(),
            history,
            cancel,
            revert_failures: vec![],
            first_disruption: disrupted.map(|d| d.0),
            last_disruption_end: disrupted.map(|d| d.1),
            load: LoadTotals::default(),
            duration_s: f64::from(history.len() as u32),
        })
    }

    #[test]
    fn phases_merge_the_histograms_of_their_seconds() {
        let sc = scenario();
        // Broken 10..25 (the fault 10..20, then five slow seconds): restored at 25.
        let mut h = history(40, 10..25);
        for s in &mut h {
            let mut hist = crate::load::hdr::histogram();
            let us = if (10..25).contains(&s.window.second) { 400_000 } else { 2_000 };
            hist.record_n(us, 100).unwrap();
            s.window.latency_hist = crate::load::hdr::encode(&hist).into();
        }
        h[0].sample.as_mut().unwrap().running_tasks = Some(3);
        let r = record(&sc, &injected(), &h, None);
        let spans: Vec<(PhaseName, u32, u32, u64)> =
            r.phases.iter().map(|p| (p.phase, p.from_s, p.to_s, p.errors.timeout)).collect();
        assert_eq!(
            spans,
            [(PhaseName::Baseline, 0, 10, 0), (PhaseName::Faults, 10, 25, 750), (PhaseName::Recovery, 25, 40, 0)]
        );
        let faults = &r.phases[1];
        assert_eq!((faults.requests, faults.error_rate), (1500, 0.5));
        assert!((faults.latency_ms.unwrap().p99 - 400.0).abs() < 0.5, "{:?}", faults.latency_ms);
        let back = crate::load::hdr::from_text(faults.latency_hdr.as_deref().unwrap()).unwrap();
        assert_eq!(back.len(), 1500);
        assert!((r.phases[0].latency_ms.unwrap().p50 - 2.0).abs() < 0.01);
        assert_eq!(r.scenario.target_size, Some(3));
        assert_eq!(r.scenario.load_schedule.as_deref(), Some("/ at 100/s for 1m, timeout 2s"));
        assert_eq!(r.scenario.fault_plan, ["latency: latency at 10s for 10s"]);
        // Without a disruption, the whole run is the baseline.
        let r = record_of(&sc, &[], &history(5, 0..0), None, None);
        assert_eq!(r.phases.iter().map(|p| (p.phase, p.to_s)).collect::<Vec<_>>(), [(PhaseName::Baseline, 5)]);
        assert_eq!(r.phases[0].latency_ms, None, "no histogram recorded");
    }

    #[test]
    fn the_scenario_hash_is_of_the_content_not_of_where_the_lab_listens() {
        let load = |yaml: &str| {
            crate::scenario::load_bytes("x.yaml", yaml.as_bytes(), std::path::Path::new("."))
                .unwrap_or_else(|d| panic!("{d:?}"))
        };
        let a = scenario_hash(&scenario());
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
        assert_eq!(scenario_hash(&scenario()), a);
        // Comments, key order and formatting do not count.
        let reordered =
            format!("# a comment\n{}", SCENARIO.replace("rate: 100/s, duration: 60s", "duration: 60s,  rate: 100/s"));
        assert_eq!(scenario_hash(&load(&reordered)), a);
        assert_ne!(scenario_hash(&load(&SCENARIO.replace("300ms", "301ms"))), a);
        let lab = |control: &str| {
            load(&format!("{SCENARIO}target:\n  lab: {{ service: api, tasks: 3, control: \"{control}\" }}\n"))
        };
        assert_eq!(scenario_hash(&lab("http://127.0.0.1:1000")), scenario_hash(&lab("http://127.0.0.1:2000")));
    }

    fn injected() -> Vec<Event> {
        let injected = crate::backend::Injected::on_lab("latency", "latency", &["t-1"]);
        vec![
            Event::FaultInjecting {
                t: 10.0,
                fault: "latency".into(),
                resolved: crate::backend::Resolved::default(),
                injected,
            },
            Event::FaultInjected { t: 10.0, fault: "latency".into(), kind: "latency".into(), summary: String::new() },
            Event::FaultReverted { t: 20.0, fault: "latency".into() },
        ]
    }

    /// A scenario drifting the secret at 10 s, with `more` faults after it.
    fn drift_scenario(more: &str) -> Scenario {
        let text = format!(
            "name: drift\nload: {{ url: /, rate: 100/s, duration: 60s }}\nsteady_state: {{ error_rate: \"< 5%\" }}\nfaults:\n  - {{ type: secret-drift, name: drift, at: 10s }}\n{more}recovery: {{ within: 30s, hold: 5s }}\n"
        );
        crate::scenario::load_bytes("drift.yaml", text.as_bytes(), std::path::Path::new("."))
            .unwrap_or_else(|d| panic!("{d:?}"))
    }

    /// The events of `fault` (of type `kind`) injected at `t`.
    fn injected_at(fault: &str, kind: &str, t: f64) -> Vec<Event> {
        let injected = crate::backend::Injected::on_lab(fault, kind, &[]);
        vec![
            Event::FaultInjecting { t, fault: fault.into(), resolved: crate::backend::Resolved::default(), injected },
            Event::FaultInjected { t, fault: fault.into(), kind: kind.into(), summary: String::new() },
        ]
    }

    #[test]
    fn a_lingering_fault_no_remedy_followed_is_named_in_the_verdict_and_lasts_the_run() {
        let sc = drift_scenario("");
        let r =
            record_of(&sc, &injected_at("drift", "secret-drift", 10.0), &history(60, 10..60), None, Some((10.0, 10.0)));
        assert_eq!(r.verdict.outcome, Outcome::Failed);
        assert!(
            r.verdict.reason.ends_with(
                "; still in effect: drift (nothing replaced the tasks holding the stale secret — see the runbook)"
            ),
            "{}",
            r.verdict.reason
        );
        assert_eq!(r.faults[0].ends_s, Some(60.0), "a persistent fault lasts until the run ends");

        // A later redeploy remediates it: the run may still fail, but not for the drift.
        let sc = drift_scenario("  - { type: redeploy, at: 20s }\n");
        let mut events = injected_at("drift", "secret-drift", 10.0);
        events.extend(injected_at("redeploy", "redeploy", 20.0));
        let r = record_of(&sc, &events, &history(60, 10..60), None, Some((10.0, 20.0)));
        assert_eq!(r.verdict.outcome, Outcome::Failed);
        assert!(!r.verdict.reason.contains("still in effect"), "{}", r.verdict.reason);
    }

    #[test]
    fn a_drift_fixed_by_a_redeploy_has_its_outage_and_the_redeploy_its_time_to_restore() {
        // Broken from the drift at 10 s until the redeploy's new tasks serve, from 24 s.
        let sc = drift_scenario("  - { type: redeploy, at: 20s }\n");
        let mut events = injected_at("drift", "secret-drift", 10.0);
        events.extend(injected_at("redeploy", "redeploy", 20.0));
        let r = record_of(&sc, &events, &history(60, 10..24), None, Some((10.0, 20.0)));
        assert_eq!(r.verdict.outcome, Outcome::Passed, "{}", r.verdict.reason);
        let effect = |i: usize| r.faults[i].effect.clone().unwrap();
        let (drift, redeploy) = (effect(0), effect(1));
        // The drift's disruption lasted until the redeploy that remedied it.
        assert_eq!((drift.broken_s, drift.restored_s, drift.outage_s), (Some(10.0), Some(24.0), Some(14.0)));
        assert_eq!((drift.disruption_end_s, drift.time_to_restore_s), (20.0, Some(4.0)));
        assert!(redeploy.already_broken && redeploy.outage_s.is_none(), "{redeploy:?}");
        assert_eq!(redeploy.time_to_restore_s, Some(4.0));
        // The run's figure is the time to restore after the last disruption, not the outage.
        assert_eq!(r.timings.time_to_recover_s, Some(4.0));
        let md = crate::report::render_markdown(&r, &Redactor::noop());
        assert!(
            md.contains("| `drift`    | t+10s    | 0s             | t+10s          | 14s    | t+20s            | 4s (t+24s)      |"),
            "{md}"
        );
    }

    fn mttr_row(md: &str) -> &str {
        md.lines().find(|l| l.contains("| Time to restore ")).unwrap_or_else(|| panic!("{md}"))
    }

    #[test]
    fn marks_become_the_records_marks_timeline_and_human_times() {
        use crate::report::{Mark, MarkKind, TimelineKind};
        let sc = crate::scenario::load_bytes(
            "slow.yaml",
            format!("{SCENARIO}manual:\n  - {{ type: task-kill, name: kill-one, select: 1 }}\n").as_bytes(),
            std::path::Path::new("."),
        )
        .unwrap_or_else(|d| panic!("{d:?}"));
        let mark = |t: f64, kind: MarkKind, author: &str, text: &str| Event::MarkAdded {
            t,
            mark: Mark { t: 0.0, kind, author: author.into(), text: text.into(), fault: None, id: 0, moved_from: None },
        };
        let mut events = vec![mark(5.0, MarkKind::Detected, "alice", "too early")];
        events.extend(injected());
        events.push(mark(12.34, MarkKind::Detected, "alice", "p95 is up"));
        // A manual fault injected on command at 30 s: later marks are its own.
        let manual = crate::backend::Injected::on_lab("kill-one", "task-kill", &["t-2"]);
        events.push(Event::FaultInjecting {
            t: 30.0,
            fault: "kill-one".into(),
            resolved: crate::backend::Resolved::default(),
            injected: manual,
        });
        events.push(Event::FaultInjected {
            t: 30.0,
            fault: "kill-one".into(),
            kind: "task-kill".into(),
            summary: "t-2".into(),
        });
        events.push(mark(33.0, MarkKind::Detected, "bob", ""));
        events.push(mark(36.0, MarkKind::Note, "carol", "scheduler is slow"));
        events.push(mark(40.0, MarkKind::Mitigated, "alice", ""));
        let r = record(&sc, &events, &history(60, 10..25), None);

        assert_eq!(r.marks.len(), 5);
        assert_eq!(
            r.marks[1],
            Mark {
                t: 12.3,
                kind: MarkKind::Detected,
                author: "alice".into(),
                text: "p95 is up".into(),
                fault: None,
                id: 0,
                moved_from: None
            }
        );
        let marks: Vec<(f64, &str)> =
            r.timeline.iter().filter(|e| e.kind == TimelineKind::Mark).map(|e| (e.t_s, e.text.as_str())).collect();
        assert_eq!(
            marks,
            [
                (5.0, "detected (alice): too early"),
                (12.3, "detected (alice): p95 is up"),
                (33.0, "detected (bob)"),
                (36.0, "note (carol): scheduler is slow"),
                (40.0, "mitigated (alice)"),
            ]
        );
        let names: Vec<&str> = r.faults.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["latency", "kill-one"], "the manual fault follows the timeline's");
        assert_eq!((r.faults[1].injected_s, r.faults[1].ends_s), (Some(30.0), Some(30.0)));
        let human = |i: usize| -> Vec<(String, Option<f64>, Option<f64>)> {
            r.faults[i].human.iter().map(|h| (h.author.clone(), h.detected_s, h.mitigated_s)).collect()
        };
        assert_eq!(human(0), [("alice".to_string(), Some(2.3), None)]);
        assert_eq!(human(1), [("bob".to_string(), Some(3.0), None), ("alice".to_string(), None, Some(10.0))]);
    }

    #[test]
    fn every_report_quotes_the_same_recovery_deadline() {
        let sc = scenario();
        let r = record(&sc, &injected(), &history(60, 10..25), None);
        assert_eq!(r.verdict.outcome, Outcome::Passed, "{}", r.verdict.reason);
        assert_eq!((r.timings.recovery_deadline_s, r.timings.recovery_deadline_at_s), (30.0, Some(50.0)));
        assert!(r.verdict.reason.contains("(deadline 30s)"), "{}", r.verdict.reason);
        let md = crate::report::render_markdown(&r, &Redactor::noop());
        assert!(mttr_row(&md).contains("allowed: 30s"), "{}", mttr_row(&md));
        let xml = crate::report::render_junit(&r, &Redactor::noop());
        assert!(xml.contains("steady state restored within 30s"), "{xml}");
        // The deadline (t+50s) is inside the 60 s time axis: every chart marks it.
        for (name, svg) in crate::report::render_charts(&r) {
            assert!(svg.contains(">recovery deadline</text>"), "{name}");
        }

        // Not recovered: the deadline is quoted as the point t+50s, 30 s after the end at t+20s.
        let r = record(&sc, &injected(), &history(60, 10..60), None);
        assert_eq!(r.verdict.outcome, Outcome::Failed);
        let md = crate::report::render_markdown(&r, &Redactor::noop());
        assert!(
            mttr_row(&md)
                .contains("not recovered by the deadline (t+50s, 30s after the last disruption ended at t+20s)"),
            "{}",
            mttr_row(&md)
        );
    }

    #[test]
    fn the_worst_window_quotes_the_balancer_of_that_second() {
        // The balancer's 5xx share of Unix second 1000 + k; the load started at 1000.2, so window
        // k is balancer second 1000 + k. Window 12 is the worst.
        let lb = |k: u64| {
            let bad = if k == 1012 {
                0.9
            } else if (1010..1025).contains(&k) {
                0.5
            } else {
                0.0
            };
            (Some(100.0), Some(bad), Some(3.0))
        };
        let mut h = history(40, 10..25);
        h[12].window.errors.timeout = 90;
        for s in &mut h {
            // As sampled: the balancer's last complete second, two seconds behind the window.
            let at = 1000 + u64::from(s.window.second).saturating_sub(2);
            let sample = s.sample.as_mut().unwrap();
            (sample.lb_rps, sample.lb_5xx_rate, sample.lb_response_ms) = lb(at);
            sample.lb_second = Some(at);
        }
        let mut balancer: std::collections::BTreeMap<u64, _> = (1000..1040).map(|k| (k, lb(k))).collect();
        let worst_line = |h: &[Second]| {
            let r = record(&scenario(), &injected(), h, None);
            assert_eq!(r.worst_window.as_ref().map(|w| w.second), Some(12));
            let md = crate::report::render_markdown(&r, &Redactor::noop());
            md.lines().find(|l| l.contains("Worst window")).unwrap().to_string()
        };
        let mut aligned = h.clone();
        super::super::balancer::align_balancer(&mut aligned, &balancer, 1000.2);
        let line = worst_line(&aligned);
        assert!(
            line.contains("t+12s: 90% errors") && line.contains("the balancer counted 100 req/s, 90% 5xx"),
            "{line}"
        );

        // No sample brought that balancer second: no balancer figures, rather than another second's.
        balancer.remove(&1012);
        let mut aligned = h.clone();
        super::super::balancer::align_balancer(&mut aligned, &balancer, 1000.2);
        let line = worst_line(&aligned);
        assert!(line.contains("t+12s: 90% errors") && !line.contains("balancer"), "{line}");
        assert_eq!(aligned[13].sample.as_ref().and_then(|s| s.lb_second), Some(1013));
    }

    #[test]
    fn a_load_only_run_without_a_disruption_is_judged_on_its_last_seconds() {
        let sc = scenario();
        let judge = |history: &[Second]| record_of(&sc, &[], history, None, None);
        let r = judge(&history(30, 0..0));
        assert_eq!(r.verdict.outcome, Outcome::Passed, "{}", r.verdict.reason);
        assert!(r.verdict.reason.starts_with("no disruption; the steady state held"), "{}", r.verdict.reason);
        let md = crate::report::render_markdown(&r, &Redactor::noop());
        assert!(mttr_row(&md).contains("n/a: no fault was injected"), "{}", mttr_row(&md));
        let r = judge(&history(30, 20..30));
        assert_eq!(r.verdict.outcome, Outcome::Failed);
        assert!(
            r.verdict.reason.contains("did not hold over the last") && r.verdict.reason.contains("error_rate"),
            "{}",
            r.verdict.reason
        );
    }

    #[test]
    fn a_run_cut_short_before_its_deadline_was_not_late_to_recover() {
        let sc = scenario();
        let mut r = record(
            &sc,
            &injected(),
            &history(15, 10..15),
            Some(CancelReason::StopCondition("error_rate > 20% for 3s".into())),
        );
        // A revert then failed: the outcome is no longer `aborted`, and recovery was never judged.
        r.verdict.outcome = Outcome::RevertFailed;
        let md = crate::report::render_markdown(&r, &Redactor::noop());
        assert!(
            mttr_row(&md).contains("n/a: the run ended at t+15s, before the deadline (revert failed)"),
            "{}",
            mttr_row(&md)
        );
    }

    #[test]
    fn a_run_that_injected_nothing_was_not_late_to_recover() {
        let sc = scenario();
        let why = CancelReason::Precondition("steady state did not hold before any fault".into());
        let r = record(&sc, &[], &history(10, 0..10), Some(why));
        assert_eq!(r.verdict.outcome, Outcome::PreconditionFailed);
        let md = crate::report::render_markdown(&r, &Redactor::noop());
        assert!(!md.contains("not recovered"), "{md}");
        assert!(mttr_row(&md).contains("n/a: no fault was injected"), "{}", mttr_row(&md));
    }

    #[test]
    fn an_interrupted_run_says_so_in_every_report() {
        let sc = scenario();
        let r =
            record(&sc, &injected(), &history(15, 10..15), Some(CancelReason::Interrupted("SIGINT (Ctrl-C)".into())));
        assert_eq!(r.verdict.outcome, Outcome::Aborted);
        assert_eq!(r.verdict.interrupted_by.as_deref(), Some("SIGINT (Ctrl-C)"));
        assert!(r.verdict.reason.starts_with("interrupted by SIGINT (Ctrl-C)"), "{}", r.verdict.reason);
        let md = crate::report::render_markdown(&r, &Redactor::noop());
        assert!(mttr_row(&md).contains("n/a: interrupted by SIGINT (Ctrl-C)"), "{}", mttr_row(&md));
        assert!(!md.contains("stop condition"), "{md}");
        let xml = crate::report::render_junit(&r, &Redactor::noop());
        assert!(xml.contains(r#"<failure type="interrupted""#) && !xml.contains("stop condition"), "{xml}");
        // Interrupted during the baseline: nothing to judge after it, and the reason is the signal.
        let r = record(&sc, &[], &history(8, 0..0), Some(CancelReason::Interrupted("SIGTERM".into())));
        let md = crate::report::render_markdown(&r, &Redactor::noop());
        assert!(mttr_row(&md).contains("n/a: interrupted by SIGTERM"), "{}", mttr_row(&md));
        let xml = crate::report::render_junit(&r, &Redactor::noop());
        assert!(xml.contains(r#"<skipped message="not evaluated: interrupted by SIGTERM"/>"#), "{xml}");

        // A stop condition keeps its own words.
        let stop = CancelReason::StopCondition("error_rate > 40% for 3s".into());
        let r = record(&sc, &injected(), &history(15, 10..15), Some(stop));
        assert_eq!((r.verdict.outcome, r.verdict.interrupted_by.as_deref()), (Outcome::Aborted, None));
        let md = crate::report::render_markdown(&r, &Redactor::noop());
        assert!(mttr_row(&md).contains("n/a: aborted by a stop condition"), "{}", mttr_row(&md));
        let xml = crate::report::render_junit(&r, &Redactor::noop());
        assert!(xml.contains(r#"<failure type="stop-condition""#), "{xml}");
    }
}
