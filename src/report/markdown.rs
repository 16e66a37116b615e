//! `report.md`: the document a team reads in its debrief. The verdict and why come first, then
//! the figures a debrief asks for (time to detect, time to recover, the worst second), the
//! steady state before and after, the timeline, the faults, the charts, the runbook and the
//! questions to discuss. Plain Markdown with padded tables: it reads on GitHub and in `less`.

use std::fmt::Write as _;

use super::format::{self, Redactor, Table, code, md, offset, secs};
use super::{FaultRecord, Outcome, RunRecord, TimelineKind, charts::ChartFile};

fn kind_label(k: TimelineKind) -> &'static str {
    match k {
        TimelineKind::Phase => "phase",
        TimelineKind::Stage => "stage",
        TimelineKind::FaultInjected => "fault injected",
        TimelineKind::FaultReverted => "fault reverted",
        TimelineKind::RevertFailed => "REVERT FAILED",
        TimelineKind::SteadyStateBroken => "steady state broken",
        TimelineKind::SteadyStateRestored => "steady state restored",
        TimelineKind::StopCondition => "STOP CONDITION",
        TimelineKind::Event => "event",
        TimelineKind::Note => "note",
        TimelineKind::Mark => "mark",
    }
}

/// Renders `report.md`; `charts` are the files written beside it.
pub(crate) fn render(r: &RunRecord, charts: &[ChartFile], red: &Redactor) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {}: {}\n", md(&r.scenario.name), r.verdict.outcome.word());
    let reason = r.verdict.reason.trim();
    let reason = if reason.is_empty() { "no reason recorded" } else { reason };
    let _ = writeln!(
        o,
        "**Verdict: {}** (exit {}). {}\n",
        r.verdict.outcome.word(),
        r.verdict.exit_code,
        md(&sentence(reason))
    );
    for f in r.faults.iter().filter(|f| f.revert_error.is_some()) {
        let _ = writeln!(
            o,
            "**Warning:** reverting {} failed: {}. Something may still be broken: run `siege recover`.\n",
            code(&f.name),
            md(f.revert_error.as_deref().unwrap_or_default().trim_end_matches('.'))
        );
    }
    if let Some(d) = r.scenario.description.as_deref().filter(|d| !d.trim().is_empty()) {
        let _ = writeln!(o, "{}\n", md(d.trim()));
    }

    key_figures(&mut o, r, red);
    steady_state(&mut o, r);
    timeline(&mut o, r);
    faults(&mut o, r);

    let _ = writeln!(o, "## Charts\n");
    for c in charts {
        let _ = writeln!(o, "![{}]({})\n", c.title, c.file);
    }
    if let Some(l) = super::charts::legend_line(r) {
        let _ = writeln!(o, "{}\n", md(&l));
    }

    if !r.notes.is_empty() {
        let _ = writeln!(o, "## Notes\n");
        for n in &r.notes {
            let _ = writeln!(o, "- {}", md(n));
        }
        o.push('\n');
    }

    let _ = writeln!(o, "## Runbook\n");
    match r.scenario.runbook.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(rb) => {
            let _ = writeln!(o, "{}\n", runbook_link(rb.trim()));
        }
        None => {
            let _ = writeln!(
                o,
                "No runbook is linked to this scenario. Add `runbook:` to the scenario so that the debrief can compare it with what was done.\n"
            );
        }
    }

    let _ = writeln!(o, "## Debrief questions\n");
    for (i, q) in super::debrief::questions(r).iter().enumerate() {
        let _ = writeln!(o, "{}. {}", i + 1, md(q));
    }
    o.push('\n');

    run_details(&mut o, r, red);
    o
}

/// Ends `s` with a full stop unless it already ends a sentence.
fn sentence(s: &str) -> String {
    let s = s.trim();
    if s.ends_with(['.', '!', '?', ':']) {
        s.to_string()
    } else {
        let mut c = s.chars();
        let first = c.next().map(|f| f.to_uppercase().collect::<String>()).unwrap_or_default();
        format!("{first}{}.", c.as_str())
    }
}

fn key_figures(o: &mut String, r: &RunRecord, red: &Redactor) {
    let t = &r.timings;
    let mut table = Table::new(["Measure", "Value"]);

    // A scenario without faults (a traffic spike) is disrupted by its first stage instead.
    let first = if r.faults.iter().any(|f| f.injected_s.is_some()) { "fault" } else { "disruption" };
    let detect = match (t.time_to_detect_s, t.first_fault_s) {
        (Some(d), Some(at)) => format!("{} after the first {first} ({})", red.duration(d, secs), offset(at)),
        (Some(d), None) => red.duration(d, secs),
        (None, _) if r.verdict.outcome == Outcome::Error => "n/a: the run ended with an error".into(),
        (None, _) if r.verdict.outcome == Outcome::PreconditionFailed => {
            "n/a: the steady state did not hold before the faults".into()
        }
        (None, Some(_)) => "not detected: the steady state never broke".into(),
        (None, None) => "n/a: no fault was injected".into(),
    };
    table.row(vec!["Time to detect".into(), detect]);

    let within = secs(t.recovery_deadline_s);
    // Nothing to recover from: no fault was injected and no load stage ran.
    let disrupted =
        r.faults.iter().any(|f| f.injected_s.is_some()) || r.timeline.iter().any(|e| e.kind == TimelineKind::Stage);
    let recover = match (t.time_to_recover_s, t.last_fault_end_s) {
        (Some(m), Some(end)) => {
            format!("{} after the last disruption ended ({}); allowed: {within}", red.duration(m, secs), offset(end))
        }
        (Some(m), None) => red.duration(m, secs),
        (None, _) if r.verdict.interrupted_by.is_some() => {
            format!("n/a: interrupted by {}", r.verdict.interrupted_by.as_deref().unwrap_or_default())
        }
        (None, _) if r.verdict.outcome == Outcome::Aborted => "n/a: aborted by a stop condition".into(),
        (None, _) if r.verdict.outcome == Outcome::Error => "n/a: the run ended with an error".into(),
        (None, _) if !disrupted => "n/a: no fault was injected".into(),
        // Cut short (a stop condition whose revert then failed, a fault that could not be
        // injected): recovery was never judged.
        (None, Some(_))
            if r.verdict.outcome != Outcome::Failed && t.recovery_deadline_at_s.is_some_and(|at| t.duration_s < at) =>
        {
            format!(
                "n/a: the run ended at {}, before the deadline ({})",
                offset(t.duration_s),
                r.verdict.outcome.word().to_lowercase()
            )
        }
        (None, Some(end)) => format!(
            "not recovered by the deadline ({}, {within} after the last disruption ended at {})",
            offset(t.recovery_deadline_at_s.unwrap_or(end + t.recovery_deadline_s)),
            offset(end)
        ),
        (None, None) => "n/a: no fault was injected".into(),
    };
    table.row(vec!["Time to restore".into(), recover]);

    let worst = match &r.worst_window {
        Some(w) => {
            let mut s = format!(
                "{}: {} errors ({} of {} requests), p95 {}, p99 {}",
                offset(f64::from(w.second)),
                format::percent(w.error_rate),
                format::count(w.errors + w.missed),
                format::count(w.requests + w.missed),
                format::ms(w.latency_ms.p95),
                format::ms(w.latency_ms.p99)
            );
            if let Some(h) = w.healthy_targets {
                let _ = write!(s, ", {h} healthy target{}", if h == 1 { "" } else { "s" });
            }
            if let (Some(rps), Some(bad)) = (w.lb_rps, w.lb_5xx_rate) {
                let _ =
                    write!(s, "; the balancer counted {} req/s, {} 5xx", format::value(rps, ""), format::percent(bad));
                // The lab's figures are of that same second; CloudWatch's are per minute.
                if r.scenario.target == "aws" {
                    s.push_str(" (CloudWatch, the latest minute)");
                }
            }
            s
        }
        None => "n/a".into(),
    };
    table.row(vec!["Worst window".into(), md(&worst)]);

    let l = &r.load;
    let failed = l.errors.total() + l.missed;
    let all = l.requests + l.missed;
    let rate = if all == 0 { 0.0 } else { failed as f64 / all as f64 };
    let load = if all == 0 {
        "no requests were sent".to_string()
    } else {
        format!(
            "{} requests, {} req/s; {} errors ({}); p50 {}, p95 {}, p99 {}",
            format::count(l.requests),
            format::value(l.rps, ""),
            format::percent(rate),
            format::count(failed),
            format::ms(l.latency_ms.p50),
            format::ms(l.latency_ms.p95),
            format::ms(l.latency_ms.p99)
        )
    };
    table.row(vec!["Load".into(), load]);
    let _ = writeln!(o, "{}", table.render());
}

fn steady_state(o: &mut String, r: &RunRecord) {
    let _ = writeln!(o, "## Steady state\n");
    if r.steady_state.is_empty() {
        let _ = writeln!(o, "The scenario defines no steady-state checks.\n");
        return;
    }
    let mut t = Table::new(["Check", "Before the faults", "After recovery"]);
    for c in &r.steady_state {
        let before = match c.before {
            Some(v) => format!("{} ({})", format::value(v, &c.unit), if c.before_ok { "ok" } else { "FAIL" }),
            None if c.before_ok => "ok".into(),
            // A run that ended with an error before any load has nothing to judge.
            None if r.verdict.outcome == Outcome::Error => "not evaluated".into(),
            None => "no data (FAIL)".into(),
        };
        let after = match (c.after, c.after_ok) {
            (_, None) => "not evaluated".into(),
            (Some(v), Some(ok)) => format!("{} ({})", format::value(v, &c.unit), if ok { "ok" } else { "FAIL" }),
            (None, Some(ok)) => if ok { "ok" } else { "no data (FAIL)" }.into(),
        };
        t.row(vec![code(&c.check), md(&before), md(&after)]);
    }
    let _ = writeln!(o, "{}", t.render());
    let _ = writeln!(
        o,
        "Before: the baseline just ahead of the first fault. After: the hold window in which the steady state counted as restored, or the last seconds of the run if it never was.\n"
    );
}

fn timeline(o: &mut String, r: &RunRecord) {
    let _ = writeln!(o, "## Timeline\n");
    if r.timeline.is_empty() {
        let _ = writeln!(o, "Nothing was recorded.\n");
        return;
    }
    let mut entries: Vec<_> = r.timeline.iter().collect();
    // Stable: entries at the same second keep the order they were recorded in.
    entries.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    let mut t = Table::new(["Time", "Event", "Details"]);
    for e in entries {
        t.row(vec![offset(e.t_s), kind_label(e.kind).into(), md(&e.text)]);
    }
    let _ = writeln!(o, "{}", t.render());
}

fn reverted(f: &FaultRecord) -> String {
    match (&f.revert_error, f.reverted_s, f.injected_s) {
        (Some(e), _, _) => format!("FAILED: {e}"),
        (None, Some(t), _) => offset(t),
        (None, None, None) => "not injected".into(),
        (None, None, Some(_)) if let Some(kept) = &f.no_revert => format!("no revert: {kept}"),
        (None, None, Some(i)) if f.ends_s.is_none_or(|e| e <= i) => "no revert needed".into(),
        (None, None, Some(_)) => "not reverted".into(),
    }
}

fn faults(o: &mut String, r: &RunRecord) {
    let _ = writeln!(o, "## Faults\n");
    if r.faults.is_empty() {
        let _ = writeln!(o, "The scenario injects no faults.\n");
        return;
    }
    let mut t = Table::new(["Fault", "Type", "Injected", "Effect until", "Reverted", "What it hit"]);
    for f in &r.faults {
        let hit = if !f.summary.trim().is_empty() {
            f.summary.clone()
        } else if !f.targets.is_empty() {
            f.targets.join(", ")
        } else {
            "n/a".into()
        };
        t.row(vec![
            code(&f.name),
            md(&f.kind),
            f.injected_s.map(offset).unwrap_or_else(|| "not injected".into()),
            match (f.injected_s, super::charts::fault_end(f)) {
                (Some(i), Some(e)) if e > i => offset(e),
                (Some(_), Some(_)) => "instantaneous".into(),
                (Some(_), None) => "end of run".into(),
                (None, _) => "n/a".into(),
            },
            md(&reverted(f)),
            md(&hit),
        ]);
    }
    let _ = writeln!(o, "{}", t.render());
    fault_effects(o, r);
    human_times(o, r);
}

/// Per injected fault, what it did to the steady state: when it broke, how long the outage
/// lasted, and how long the service took to be restored once the fault's disruption ended.
fn fault_effects(o: &mut String, r: &RunRecord) {
    if !r.faults.iter().any(|f| f.effect.is_some()) {
        return;
    }
    let _ = writeln!(o, "### Detection, outage and time to restore per fault\n");
    let _ = writeln!(
        o,
        "Detected after: from the injection to the first request due after it that broke the steady state (failed, or slower than a latency check). Outage: from the first second that broke the steady state after the fault's injection (a break that begins before its disruption ended plus `within`, and before the next fault) to the first second from which it held for `hold` again. Time to restore: from the end of the fault's disruption to that second.\n"
    );
    let mut t =
        Table::new(["Fault", "Injected", "Detected after", "Broken", "Outage", "Disruption ended", "Time to restore"]);
    for f in &r.faults {
        let (Some(at), Some(e)) = (f.injected_s, &f.effect) else { continue };
        let broken = match (e.broken_s, e.already_broken) {
            (_, true) => "already broken".to_string(),
            (Some(b), false) => offset(b),
            (None, false) => format!("never (until {})", offset(e.counted_until_s)),
        };
        let outage = match (e.outage_s, e.broken_s) {
            (Some(d), _) => secs(d),
            (None, Some(_)) => "not restored by the end".into(),
            (None, None) if e.already_broken => "–".into(),
            (None, None) => "none".into(),
        };
        let restore = match (e.time_to_restore_s, e.broken_s.is_some() || e.already_broken) {
            (Some(d), _) => format!("{} ({})", secs(d), offset(e.restored_s.unwrap_or_default())),
            (None, true) => "not restored by the end".into(),
            (None, false) => "n/a".into(),
        };
        let detected = e.detected_after_s.map(secs).unwrap_or_else(|| "–".into());
        t.row(vec![code(&f.name), offset(at), detected, broken, outage, offset(e.disruption_end_s), restore]);
    }
    let _ = writeln!(o, "{}", t.render());
}

/// Per injected fault, when people marked it detected and mitigated, beside what siege measured
/// (only when the run received such marks).
fn human_times(o: &mut String, r: &RunRecord) {
    if !r.faults.iter().any(|f| !f.human.is_empty()) {
        return;
    }
    let _ = writeln!(
        o,
        "### Human times
"
    );
    let _ = writeln!(
        o,
        "After each fault's injection: a mark counts for the fault injected last before it; each author's first `detected` and first `mitigated` count.\n"
    );
    let after = |s: Option<f64>| s.map(|s| format!("{} after", secs(s))).unwrap_or_else(|| "not marked".into());
    for (i, f) in r.faults.iter().enumerate() {
        let Some(at) = f.injected_s else { continue };
        let _ = writeln!(o, "{} (injected {}):\n", code(&f.name), offset(at));
        let mut t = Table::new(["Who", "Time to detect", "Time to mitigate"]);
        let (detect, restored) = match &f.effect {
            Some(e) => (e.detected_after_s, e.restored_s.map(|t| (t - at).max(0.0))),
            // Reports of versions that did not measure each fault.
            None => super::marks::measured(r, i),
        };
        t.row(vec![
            "siege (measured: detected, steady state restored)".into(),
            match detect {
                Some(s) => format!("{} after", secs(s)),
                None if f.effect.as_ref().is_some_and(|e| e.already_broken) => "already broken".into(),
                None => "never broken".into(),
            },
            restored.map(|s| format!("{} after", secs(s))).unwrap_or_else(|| "n/a".into()),
        ]);
        for h in &f.human {
            t.row(vec![md(&h.author), after(h.detected_s), after(h.mitigated_s)]);
        }
        let _ = writeln!(o, "{}", t.render());
    }
}

/// A link to the runbook. The path is relative to the report directory; the text drops the
/// leading `../` so that it reads as the path people know.
fn runbook_link(path: &str) -> String {
    if path.starts_with("http://") || path.starts_with("https://") {
        return format!("Runbook: <{path}>");
    }
    let mut text = path;
    while let Some(rest) = text.strip_prefix("../") {
        text = rest;
    }
    let target = if path.contains([' ', '(', ')', '<', '>']) {
        format!("<{}>", path.replace('<', "%3C").replace('>', "%3E"))
    } else {
        path.to_string()
    };
    format!("Runbook: [{}]({target})", md(text).replace('[', "\\[").replace(']', "\\]"))
}

fn run_details(o: &mut String, r: &RunRecord, red: &Redactor) {
    let _ = writeln!(o, "## Run details\n");
    let mut t = Table::new(["Field", "Value"]);
    t.row(vec!["Scenario file".into(), code(&r.scenario.file)]);
    if let Some(h) = &r.scenario.hash {
        t.row(vec!["Scenario hash".into(), format!("{} (`siege compare` compares runs of one hash)", code(h))]);
    }
    let size = r.scenario.target_size.map(|n| format!(", {n} tasks running at the start")).unwrap_or_default();
    t.row(vec!["Target".into(), format!("{}, service {}{size}", md(&r.scenario.target), code(&r.scenario.service))]);
    t.row(vec!["Run id".into(), code(&red.run_id(&r.run_id))]);
    t.row(vec!["Started".into(), md(&red.timestamp(&r.started_at))]);
    t.row(vec!["Finished".into(), md(&red.timestamp(&r.finished_at))]);
    t.row(vec!["Duration".into(), red.duration(r.timings.duration_s, secs)]);
    t.row(vec![
        "Seed".into(),
        format!("{} (set `seed:` to this value to select the same targets again)", red.seed(r.seed)),
    ]);
    let classes: Vec<String> = r
        .load
        .errors
        .classes()
        .into_iter()
        .chain([("missed", r.load.missed)])
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}: {}", format::count(n)))
        .collect();
    t.row(vec!["Errors by class".into(), if classes.is_empty() { "none".into() } else { classes.join(", ") }]);
    let _ = write!(o, "{}", t.render());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runbook_links_are_relative_and_readable() {
        assert_eq!(
            runbook_link("../../runbooks/task-kill.md"),
            "Runbook: [runbooks/task-kill.md](../../runbooks/task-kill.md)"
        );
        assert_eq!(runbook_link("../../run books/a.md"), "Runbook: [run books/a.md](<../../run books/a.md>)");
        assert_eq!(runbook_link("https://wiki/x"), "Runbook: <https://wiki/x>");
    }

    #[test]
    fn a_run_that_ended_in_an_error_claims_nothing_it_did_not_see() {
        let mut r = crate::report::tests_support::minimal_record();
        r.verdict = crate::report::Verdict {
            outcome: Outcome::Error,
            exit_code: 70,
            reason: "lab did not start".into(),
            interrupted_by: None,
        };
        r.timings.first_fault_s = Some(20.0);
        r.timings.last_fault_end_s = Some(20.0);
        r.steady_state.push(crate::report::CheckRecord {
            check: "error_rate < 1%".into(),
            metric: "error_rate".into(),
            before: None,
            before_ok: false,
            after: None,
            after_ok: None,
            unit: "%".into(),
            threshold: Some(1.0),
        });
        let md = render(&r, &[], &Redactor::noop());
        assert!(md.starts_with("# task-kill: ERROR\n\n**Verdict: ERROR** (exit 70). Lab did not start.\n"), "{md}");
        assert!(md.contains("| Time to detect  | n/a: the run ended with an error |"), "{md}");
        assert!(md.contains("| Time to restore | n/a: the run ended with an error |"), "{md}");
        assert!(md.contains("| Load            | no requests were sent            |"), "{md}");
        assert!(md.contains("| `error_rate < 1%` | not evaluated     | not evaluated  |"), "{md}");
    }

    #[test]
    fn the_worst_window_says_when_the_balancer_figures_are_per_minute() {
        let mut r = crate::report::tests_support::minimal_record();
        r.worst_window = Some(crate::report::WindowRecord {
            second: 12,
            requests: 100,
            lb_rps: Some(40.0),
            lb_5xx_rate: Some(0.25),
            ..Default::default()
        });
        let line = |r: &RunRecord| {
            render(r, &[], &Redactor::noop()).lines().find(|l| l.contains("Worst window")).unwrap().to_string()
        };
        assert!(line(&r).contains("the balancer counted 40 req/s, 25% 5xx |"), "{}", line(&r));
        r.scenario.target = "aws".into();
        assert!(line(&r).contains("25% 5xx (CloudWatch, the latest minute)"), "{}", line(&r));
    }

    #[test]
    fn a_fault_that_left_nothing_to_revert_says_what_stays() {
        let mut f = crate::report::FaultRecord {
            name: "db".into(),
            kind: "db-failover".into(),
            targets: vec![],
            summary: String::new(),
            injected_s: Some(20.0),
            ends_s: Some(25.0),
            reverted_s: None,
            revert_error: None,
            no_revert: Some("the cluster keeps its new writer".into()),
            effect: None,
            human: vec![],
        };
        assert_eq!(reverted(&f), "no revert: the cluster keeps its new writer");
        f.no_revert = None;
        assert_eq!(reverted(&f), "not reverted");
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(sentence("steady state restored in 12s"), "Steady state restored in 12s.");
        assert_eq!(sentence("Done."), "Done.");
    }
}
