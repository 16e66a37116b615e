//! `compare.md`: the two runs side by side for the debrief. A warning first when the runs were
//! compared although they differ, then the answer (is B worse?), the table of measures with
//! the difference and the noise, the human times, and the charts.

use std::fmt::Write as _;

use super::{Comparison, Judgement, Row};
use crate::report::Redactor;
use crate::report::format::{Table, code, md, secs, value};

fn show(v: Option<f64>, text: &str, unit: &str) -> String {
    match v {
        Some(v) if unit == "s" => secs(v),
        Some(v) if unit == "count" => format!("{}", v.round() as i64),
        Some(v) => value(v, unit),
        None if text.is_empty() => "n/a".into(),
        None => text.into(),
    }
}

fn signed(v: f64, unit: &str) -> String {
    let body = show(Some(v.abs()), "", unit);
    // What rounds to nothing in the display has no sign.
    if body.chars().all(|c| !c.is_ascii_digit() || c == '0') {
        "0".into()
    } else if v > 0.0 {
        format!("+{body}")
    } else if v < 0.0 {
        format!("−{body}")
    } else {
        "0".into()
    }
}

fn judgement(r: &Row) -> String {
    let word = match r.judgement {
        Judgement::WithinNoise => "within noise",
        Judgement::Better => "better",
        Judgement::Worse if r.gates => "**WORSE**",
        Judgement::Worse => "worse",
        Judgement::Differs => "differs",
        Judgement::NotComparable => "n/a",
    };
    word.to_string()
}

pub(super) fn render(c: &Comparison, red: &Redactor) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Compare {}: A vs B\n", md(&c.scenario));
    if !c.differences.is_empty() {
        let _ = writeln!(
            o,
            "**Warning: these runs are not comparable; compared anyway (`--force`).** {}.\n",
            md(&c.differences.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; "))
        );
    }
    let _ = writeln!(o, "**{}.**\n", md(&c.summary));
    let mut t = Table::new(["Run", "Report", "Run id", "Started", "Verdict"]);
    for (name, r) in [("A", &c.a), ("B", &c.b)] {
        t.row(vec![
            name.into(),
            code(&red.path(&r.path)),
            code(&red.run_id(&r.run_id)),
            md(&red.timestamp(&r.started_at)),
            format!("{}: {}", r.outcome.word(), md(r.reason.trim())),
        ]);
    }
    let _ = writeln!(o, "{}", t.render());
    if let Some(h) = &c.scenario_hash {
        let _ = writeln!(o, "Scenario hash {}.\n", code(h));
    }

    let _ = writeln!(o, "## Side by side\n");
    let _ = writeln!(
        o,
        "Per phase from the merged latency histograms of its seconds (never an average of \
         percentiles). A difference counts only beyond the measure's noise; **WORSE** marks a \
         measure that makes `siege compare` exit 1 (the time to restore and the steady state's metrics).\n"
    );
    let mut t = Table::new(["Phase", "Measure", "A", "B", "B − A", "Noise", "Judgement"]);
    for r in &c.rows {
        t.row(vec![
            r.section.clone(),
            md(&r.measure),
            show(r.a, &r.a_text, &r.unit),
            show(r.b, &r.b_text, &r.unit),
            r.diff.map_or(String::new(), |d| signed(d, &r.unit)),
            r.noise.map_or(String::new(), |n| format!("±{}", show(Some(n), "", &r.unit))),
            judgement(r),
        ]);
    }
    let _ = writeln!(o, "{}", t.render());
    let _ = writeln!(o, "How the noise is measured:\n");
    let mut rules: Vec<String> = Vec::new();
    for r in c.rows.iter().filter(|r| !r.noise_rule.is_empty()) {
        let measure =
            if r.section == "worst window" { format!("worst window {}", r.measure) } else { r.measure.clone() };
        let line = format!("- {}: {}", md(&measure), md(&r.noise_rule));
        if !rules.contains(&line) {
            let _ = writeln!(o, "{line}");
            rules.push(line);
        }
    }
    o.push('\n');

    if !c.human.is_empty() {
        let _ = writeln!(o, "## Human times\n");
        let _ = writeln!(o, "After each fault's injection, for the people who marked it in both runs.\n");
        let mut t = Table::new(["Fault", "Who", "Detected A", "Detected B", "Mitigated A", "Mitigated B"]);
        let v = |x: Option<f64>| x.map_or("not marked".into(), secs);
        for h in &c.human {
            t.row(vec![
                code(&h.fault),
                md(&h.author),
                v(h.a_detected_s),
                v(h.b_detected_s),
                v(h.a_mitigated_s),
                v(h.b_mitigated_s),
            ]);
        }
        let _ = writeln!(o, "{}", t.render());
    }

    let _ = writeln!(o, "## Charts\n");
    for (file, title) in super::charts::FILES {
        let _ = writeln!(o, "![{title}]({file})\n");
    }
    let _ = writeln!(o, "A solid, B dashed, on the load's clock; both runs' fault windows are shaded.");
    o
}
