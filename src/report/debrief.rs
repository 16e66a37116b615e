//! Debrief questions: the ones the scenario or the engine put in the record first (they are the
//! most specific), then defaults for each fault type that ran, then questions every game day
//! should end with. A default that asks what the record already asks is dropped: the same
//! question, or one opening with nearly the same words ("What did we notice first, …" and
//! "What did we see first, …").

use super::{Outcome, RunRecord};

/// Questions for a fault type (the registry's), in the order a debrief would take them.
fn for_fault(kind: &str) -> &'static [&'static str] {
    crate::faults::lookup(kind).map_or(&[], |d| d.debrief)
}

/// Questions for every run, closing the debrief.
const GENERAL: &[&str] = &[
    "What did we see first, and how long after the fault? Would a person on call have noticed?",
    "Which alarm fired, and which one should have but did not?",
    "Did the runbook match what we did? What should change in it?",
    "What would have made recovery faster?",
];

/// Questions for an aborted run: the stop condition is itself a finding.
const ABORTED: &[&str] =
    &["The run was aborted by a stop condition: was the blast radius larger than we expected, and why?"];

/// The lowercase words of the opening clause of a question (up to the first `,`, `?`, `.`,
/// `:` or `;`).
fn opening(q: &str) -> Vec<String> {
    let clause = q.split([',', '?', '.', ':', ';']).next().unwrap_or("");
    clause.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Whether two questions ask the same thing: equal ignoring case, or opening clauses of at
/// least three words that share most of them.
fn same_question(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (wa, wb) = (opening(a), opening(b));
    if wa.len() < 3 || wb.len() < 3 {
        return false;
    }
    let shared = wa.iter().filter(|w| wb.contains(w)).count();
    let union = wa.len() + wb.len() - shared;
    shared as f64 / union as f64 >= 0.6
}

/// The questions to print for `record`: its own, then per fault type, then general ones.
pub fn questions(record: &RunRecord) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |q: &str| {
        let q = q.trim();
        if !q.is_empty() && !out.iter().any(|o| same_question(o, q)) {
            out.push(q.to_string());
        }
    };
    for q in &record.debrief_questions {
        push(q);
    }
    // An interrupt is someone's decision, not a finding about the system.
    if record.verdict.outcome == Outcome::Aborted && record.verdict.interrupted_by.is_none() {
        ABORTED.iter().for_each(|q| push(q));
    }
    // Types of the faults that were injected, in the order they ran, each once: a fault the run
    // never reached has nothing to discuss.
    let mut kinds: Vec<&str> = Vec::new();
    for f in record.faults.iter().filter(|f| f.injected_s.is_some()) {
        if !kinds.contains(&f.kind.as_str()) {
            kinds.push(&f.kind);
        }
    }
    let remedied = kinds.iter().any(|k| crate::faults::lookup(k).is_some_and(|d| d.remediates));
    for k in &kinds {
        for_fault(k).iter().for_each(|q| push(q));
        // Whether the scenario remediated a lingering fault changes what there is to ask.
        if let Some(l) = crate::faults::lookup(k).and_then(|d| d.lingers) {
            push(if remedied { l.remedied } else { l.unremedied });
        }
    }
    GENERAL.iter().for_each(|q| push(q));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{FaultRecord, Verdict};

    fn record(kinds: &[&str], own: &[&str]) -> RunRecord {
        let mut r = crate::report::tests_support::minimal_record();
        r.faults = kinds
            .iter()
            .map(|k| FaultRecord {
                name: k.to_string(),
                kind: k.to_string(),
                targets: vec![],
                summary: String::new(),
                injected_s: Some(1.0),
                ends_s: Some(1.0),
                reverted_s: None,
                revert_error: None,
                no_revert: None,
                effect: None,
                human: vec![],
            })
            .collect();
        r.debrief_questions = own.iter().map(|q| q.to_string()).collect();
        r
    }

    #[test]
    fn own_questions_come_first_then_fault_defaults_then_general() {
        let r = record(&["secret-drift", "redeploy", "secret-drift"], &["Who paged whom?"]);
        let q = questions(&r);
        assert_eq!(q[0], "Who paged whom?");
        assert!(q[1].contains("database path"), "{q:?}");
        let redeploy = q.iter().position(|x| x.contains("deployment take")).unwrap();
        let general = q.iter().position(|x| x.contains("runbook match")).unwrap();
        assert!(1 < redeploy && redeploy < general);
        // secret-drift twice still yields its questions once.
        assert_eq!(q.iter().filter(|x| x.contains("pick up a rotated secret")).count(), 1);
        assert!(q.iter().any(|x| x.contains("Was a redeploy the right remediation")));
        let alone = questions(&record(&["secret-drift"], &[]));
        assert!(alone.iter().any(|x| x.starts_with("Nothing remediated the drift")), "{alone:?}");
    }

    #[test]
    fn questions_opening_alike_count_as_the_same() {
        assert!(same_question(
            "What did we notice first, and how long after the fault? Which signal told us?",
            "What did we see first, and how long after the fault? Would a person on call have noticed?"
        ));
        assert!(same_question(
            "Was a redeploy the right remediation, and who is allowed to run it?",
            "Was a redeploy the right remediation, and how long did it take to replace every task?"
        ));
        assert!(!same_question(
            "How long did the scheduler take to place replacement tasks, and how long until healthy?",
            "How long did the deployment take to replace every task, and did it drop requests?"
        ));
        assert!(!same_question("Why?", "Why?!") || "Why?".eq_ignore_ascii_case("Why?!"));
    }

    #[test]
    fn duplicates_of_defaults_are_dropped_and_aborts_ask_about_blast_radius() {
        let mut r = record(&["task-kill"], &["  which alarm fired, and which one should have but did not?  "]);
        r.verdict = Verdict { outcome: Outcome::Aborted, exit_code: 2, reason: String::new(), interrupted_by: None };
        let q = questions(&r);
        assert_eq!(q.iter().filter(|x| x.to_lowercase().contains("which alarm fired")).count(), 1);
        assert!(q[1].contains("blast radius"));
    }
}
