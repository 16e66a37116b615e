//! Human times: which marks belong to which fault, and how long after its injection people
//! detected and mitigated it.
//!
//! The rule (documented in `docs/report-json.md`): a mark belongs to the fault injected last at
//! or before the mark's time. Marks before the first injection belong to no fault, and neither
//! do `note` marks. For each fault and each author, the first `detected` and the first
//! `mitigated` mark that belong to it give `detected_s` and `mitigated_s`, in seconds after the
//! injection. A fault that was never injected has no human times.
//!
//! Beside them the report puts what siege measured for the same fault ([`measured`]), by the same
//! rule: the first second that broke the steady state after the injection and before the next
//! fault's, and the first steady second after that one.

use super::record::{FaultRecord, HumanTimes, Mark, MarkKind, RunRecord};

/// What siege measured for fault `i` of `r`, in seconds after its injection: when the steady
/// state first broke (at or after the injection's second, before the next injection), and when
/// a second was steady again after that.
pub(crate) fn measured(r: &RunRecord, i: usize) -> (Option<f64>, Option<f64>) {
    let Some(at) = r.faults.get(i).and_then(|f| f.injected_s) else { return (None, None) };
    let next = r
        .faults
        .iter()
        .enumerate()
        .filter_map(|(k, f)| f.injected_s.filter(|t| *t > at || (*t == at && k > i)))
        .fold(f64::INFINITY, f64::min);
    let from = at.floor();
    let Some(broken) =
        r.windows.iter().find(|w| f64::from(w.second) >= from && f64::from(w.second) < next && !w.steady)
    else {
        return (None, None);
    };
    let restored = r.windows.iter().find(|w| w.second > broken.second && w.steady);
    let since = |second: u32| ((f64::from(second) - at).max(0.0) * 10.0).round() / 10.0;
    (Some(since(broken.second)), restored.map(|w| since(w.second)))
}

/// Fills `human` of every fault from `marks` (replacing what was there).
pub fn attribute_marks(faults: &mut [FaultRecord], marks: &[Mark]) {
    // Injection times, in order; a tie keeps the order of the faults (the later one wins).
    let mut injected: Vec<(f64, usize)> =
        faults.iter().enumerate().filter_map(|(i, f)| f.injected_s.map(|t| (t, i))).collect();
    injected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for f in faults.iter_mut() {
        f.human.clear();
    }
    let mut ordered: Vec<&Mark> = marks.iter().collect();
    ordered.sort_by(|a, b| a.t.total_cmp(&b.t));
    for m in ordered {
        if m.kind == MarkKind::Note {
            continue;
        }
        // The fault the mark names; in files written before marks named one, the fault
        // injected last at or before it.
        let named = |(_, i): &&(f64, usize)| m.fault.as_deref().is_none_or(|f| faults[*i].name == f);
        let found = match &m.fault {
            Some(_) => injected.iter().rev().find(named),
            None => injected.iter().rev().find(|(at, _)| *at <= m.t),
        };
        let Some(&(at, i)) = found else { continue };
        let human = &mut faults[i].human;
        let entry = match human.iter().position(|h| h.author == m.author) {
            Some(k) => &mut human[k],
            None => {
                human.push(HumanTimes { author: m.author.clone(), detected_s: None, mitigated_s: None });
                let last = human.len() - 1;
                &mut human[last]
            }
        };
        let slot = match m.kind {
            MarkKind::Detected => &mut entry.detected_s,
            MarkKind::Mitigated => &mut entry.mitigated_s,
            MarkKind::Note => continue,
        };
        if slot.is_none() {
            *slot = Some(((m.t - at) * 10.0).round() / 10.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(name: &str, injected: Option<f64>) -> FaultRecord {
        FaultRecord {
            name: name.into(),
            kind: "task-kill".into(),
            targets: vec![],
            summary: String::new(),
            injected_s: injected,
            ends_s: injected,
            reverted_s: None,
            revert_error: None,
            no_revert: None,
            effect: None,
            human: vec![],
        }
    }

    /// A mark as files written before marks named their fault hold it.
    fn mark(t: f64, kind: MarkKind, author: &str) -> Mark {
        Mark { t, kind, author: author.into(), text: String::new(), fault: None, id: 0, moved_from: None }
    }

    fn mark_for(t: f64, kind: MarkKind, author: &str, fault: &str) -> Mark {
        Mark { fault: Some(fault.into()), ..mark(t, kind, author) }
    }

    fn times(f: &FaultRecord) -> Vec<(&str, Option<f64>, Option<f64>)> {
        f.human.iter().map(|h| (h.author.as_str(), h.detected_s, h.mitigated_s)).collect()
    }

    use MarkKind::{Detected, Mitigated, Note};

    #[test]
    fn each_author_gets_their_first_detected_and_mitigated_after_the_injection() {
        let mut faults = vec![fault("kill", Some(20.0))];
        let marks = [
            mark(5.0, Detected, "alice"), // before any fault: ignored
            mark(31.0, Detected, "bob"),
            mark(26.5, Detected, "alice"),
            mark(29.0, Detected, "alice"), // not her first
            mark(40.0, Note, "carol"),     // notes give no times
            mark(52.0, Mitigated, "alice"),
            mark(60.0, Mitigated, "bob"),
            mark(70.0, Mitigated, "bob"),
        ];
        attribute_marks(&mut faults, &marks);
        // Authors in the order of their first mark, whatever the order received.
        assert_eq!(times(&faults[0]), [("alice", Some(6.5), Some(32.0)), ("bob", Some(11.0), Some(40.0))]);
    }

    #[test]
    fn a_mark_counts_for_the_fault_it_names_even_after_another_was_injected() {
        // A kill at 20 s, a latency at 25 s; the class fixes the kill at 30 s.
        let mut faults = vec![fault("kill", Some(20.0)), fault("slow", Some(25.0))];
        let marks = [
            mark_for(22.0, Detected, "alice", "kill"),
            mark_for(27.0, Detected, "alice", "slow"),
            mark_for(30.0, Mitigated, "alice", "kill"),
            mark_for(31.0, Mitigated, "bob", "slow"),
        ];
        attribute_marks(&mut faults, &marks);
        assert_eq!(times(&faults[0]), [("alice", Some(2.0), Some(10.0))]);
        assert_eq!(times(&faults[1]), [("alice", Some(2.0), None), ("bob", None, Some(6.0))]);
    }

    #[test]
    fn a_mark_of_an_older_file_belongs_to_the_fault_injected_last_before_it() {
        let mut faults = vec![fault("first", Some(20.0)), fault("second", Some(50.0)), fault("never", None)];
        let marks = [
            mark(25.0, Detected, "alice"),
            mark(50.0, Mitigated, "alice"), // at the second injection: the second fault's
            mark(58.0, Detected, "alice"),
            mark(61.0, Detected, "bob"),
            mark(75.0, Mitigated, "bob"),
        ];
        attribute_marks(&mut faults, &marks);
        assert_eq!(times(&faults[0]), [("alice", Some(5.0), None)]);
        assert_eq!(times(&faults[1]), [("alice", Some(8.0), Some(0.0)), ("bob", Some(11.0), Some(25.0))]);
        assert!(faults[2].human.is_empty(), "a fault never injected has no human times");
    }

    #[test]
    fn measured_times_follow_the_same_rule() {
        let mut r = crate::report::tests_support::minimal_record();
        r.faults = vec![fault("first", Some(10.5)), fault("second", Some(30.0)), fault("never", None)];
        // Broken in 12..15 and 33..40.
        r.windows = (0..50)
            .map(|s| crate::report::WindowRecord {
                second: s,
                steady: !(12..15).contains(&s) && !(33..40).contains(&s),
                ..Default::default()
            })
            .collect();
        assert_eq!(measured(&r, 0), (Some(1.5), Some(4.5)));
        assert_eq!(measured(&r, 1), (Some(3.0), Some(10.0)));
        assert_eq!(measured(&r, 2), (None, None));
        // Broken only after the next injection: the first fault is not charged with it.
        r.windows.iter_mut().filter(|w| w.second < 30).for_each(|w| w.steady = true);
        assert_eq!(measured(&r, 0), (None, None));
    }

    #[test]
    fn injection_order_decides_not_the_order_of_the_faults() {
        // A manual fault injected before the timeline's fault is listed after it.
        let mut faults = vec![fault("timeline", Some(40.0)), fault("manual", Some(10.0))];
        attribute_marks(&mut faults, &[mark(15.0, Detected, "a"), mark(45.0, Detected, "a")]);
        assert_eq!(times(&faults[1]), [("a", Some(5.0), None)]);
        assert_eq!(times(&faults[0]), [("a", Some(5.0), None)]);
        // Attributing again replaces the times; without marks there are none.
        attribute_marks(&mut faults, &[]);
        assert!(faults.iter().all(|f| f.human.is_empty()));
    }
}
