//! Integration tests: `siege compare`. Lab runs of one scenario (B on a lab with a longer
//! placement delay, and the same scenario run twice), the comparability check, older reports,
//! snapshots of `compare.md` from fixture records, and the overlaid charts parsed as SVG.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use siege::compare;
use siege::report::Redactor;

use crate::common;
use crate::lab::TestLab;

fn fixture_path(name: &str) -> PathBuf {
    common::repo_root().join("tests/fixtures/reports").join(format!("{name}.json"))
}

fn run_compare(args: &[&Path], extra: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = common::siege().arg("compare").args(args).args(extra).output().expect("run siege compare");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of fixture `name` in its own report directory under `root`, edited by `edit`.
fn report_dir(root: &Path, dir: &str, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(fixture_path(name)).unwrap()).unwrap();
    edit(&mut v);
    let d = root.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("report.json"), serde_json::to_string_pretty(&v).unwrap()).unwrap();
    d
}

/// The row of `measure` in `section` of compare.md.
fn md_row<'a>(md: &'a str, section: &str, measure: &str) -> &'a str {
    md.lines()
        .find(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            cells.len() > 3 && cells[1] == section && cells[2] == measure
        })
        .unwrap_or_else(|| panic!("no row {section} / {measure} in\n{md}"))
}

/// A task-kill scenario on the lab at `control`: one task killed at 4 s of a 19 s load; the
/// steady state needs all three targets healthy, so the time to restore is the replacement's. The hold
/// (4 s) is longer than the balancer takes to notice the dead task (two failed checks, 1 s
/// apart); the seconds before it noticed never count as a recovery.
fn kill_scenario(lab: &TestLab) -> PathBuf {
    let path = lab.home.path().join("kill.yaml");
    let yaml = format!(
        "name: kill-one\ntarget:\n  lab: {{ service: api, tasks: 3, control: \"{}\" }}\n\
         load: {{ url: /, rate: 20/s, duration: 19s, timeout: 2s }}\n\
         steady_state: {{ error_rate: \"< 50%\", healthy_targets: \">= 3\" }}\n\
         faults: [ {{ type: task-kill, at: 4s, select: 1 }} ]\nrecovery: {{ within: 11s, hold: 4s }}\n",
        lab.control
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs `file` on `lab`, its report written under `reports`; returns the report directory.
fn lab_run(lab: &TestLab, file: &Path, reports: &Path) -> PathBuf {
    let out = lab.siege().arg("run").arg(file).arg("--reports").arg(reports).output().expect("siege run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    common::only_report_dir(reports)
}

#[test]
fn lab_runs_b_with_slower_replacements_is_worse_on_time_to_restore_and_a_rerun_is_not() {
    let (fast, slow) = std::thread::scope(|s| {
        let fast = s.spawn(|| TestLab::up(&["--placement-delay", "300ms"]));
        let slow = s.spawn(|| TestLab::up(&["--placement-delay", "6s"]));
        (fast.join().unwrap(), slow.join().unwrap())
    });
    let tmp = tempfile::tempdir().unwrap();
    let (a, a2, b) = std::thread::scope(|s| {
        let b = s.spawn(|| lab_run(&slow, &kill_scenario(&slow), &tmp.path().join("b")));
        let file = kill_scenario(&fast);
        let a = lab_run(&fast, &file, &tmp.path().join("a"));
        let a2 = lab_run(&fast, &file, &tmp.path().join("a2"));
        (a, a2, b.join().unwrap())
    });

    // B replaced the killed task 6 s after A: worse beyond the noise on the time to restore,
    // exit 1; the kill's own outage is longer too.
    let out_dir = tmp.path().join("a-vs-b");
    let (code, stdout, stderr) = run_compare(&[&a, &b], &["--out", out_dir.to_str().unwrap()]);
    let md = std::fs::read_to_string(out_dir.join("compare.md")).unwrap();
    assert_eq!(code, Some(1), "{stdout}{stderr}\n{md}");
    assert!(
        stdout.contains("worse: run time to restore"),
        "{stdout}\n{md}\n{}",
        std::fs::read_to_string(b.join("report.md")).unwrap()
    );
    let row = md_row(&md, "run", "time to restore");
    assert!(row.contains("**WORSE**"), "{row}");
    let row = md_row(&md, "fault", "task-kill outage");
    assert!(row.contains("**WORSE**") || row.contains("worse"), "{row}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["b_worse"], true);
    let mttr = json["rows"].as_array().unwrap().iter().find(|r| r["measure"] == "time to restore").unwrap();
    assert!(mttr["diff"].as_f64().unwrap() > 2.0 && mttr["judgement"] == "worse", "{mttr}");
    assert!(md.contains("Scenario hash `sha256:"), "same hash although the labs listen elsewhere: {md}");
    // The overlaid charts carry both runs.
    let svg = std::fs::read_to_string(out_dir.join("targets.svg")).unwrap();
    assert!(svg.contains(r#"data-series="A""#) && svg.contains(r#"data-series="B""#), "{svg}");

    // The same scenario on the same lab, run again: no worse, exit 0 (and --json prints compare.json).
    let out_dir = tmp.path().join("a-vs-a2");
    let (code, stdout, stderr) = run_compare(&[&a, &a2], &["--json", "--out", out_dir.to_str().unwrap()]);
    let md = std::fs::read_to_string(out_dir.join("compare.md")).unwrap();
    assert_eq!(code, Some(0), "{stderr}\n{md}");
    let json: Value = serde_json::from_str(&stdout).expect("--json prints compare.json");
    assert_eq!(json["b_worse"], false, "{md}");
    assert!(!md.contains("| **WORSE** |"), "{md}");
    assert!(md_row(&md, "run", "time to restore").contains("within noise"), "{md}");
    assert!(md_row(&md, "fault", "task-kill outage").contains("within noise"), "{md}");
}

#[test]
fn a_different_scenario_is_refused_naming_the_difference_and_force_compares_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let a = report_dir(tmp.path(), "a", "passed", |_| {});
    let b = report_dir(tmp.path(), "b", "passed-slower", |v| {
        v["scenario"]["hash"] = format!("sha256:{}", "f".repeat(64)).into();
        v["scenario"]["load_schedule"] = "/ at 200/s for 1m, timeout 2s".into();
    });
    let (code, stdout, stderr) = run_compare(&[&a, &b], &[]);
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("not comparable"), "{stderr}");
    assert!(
        stderr.contains("load schedule differs: A / at 100/s for 1m, timeout 2s, B / at 200/s for 1m, timeout 2s"),
        "{stderr}"
    );
    assert!(stderr.contains("scenario hash differs"), "{stderr}");
    assert!(!tmp.path().join("compare-a-vs-b").exists(), "nothing is written when refused");

    // --force: compared, with the warning at the top; written beside B by default.
    let (code, stdout, stderr) = run_compare(&[&a, &b], &["--force"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("warning: these runs are not comparable"), "{stderr}");
    let md = std::fs::read_to_string(tmp.path().join("compare-a-vs-b/compare.md")).unwrap();
    let first = md.lines().filter(|l| !l.is_empty()).nth(1).unwrap();
    assert!(first.starts_with("**Warning: these runs are not comparable; compared anyway (`--force`).**"), "{md}");
    assert!(first.contains("load schedule differs"), "{first}");

    // Another target size is a difference too.
    let c = report_dir(tmp.path(), "c", "passed", |v| v["scenario"]["target_size"] = 5.into());
    let (code, _, stderr) = run_compare(&[&a, &c], &[]);
    assert_eq!(code, Some(3));
    assert!(stderr.contains("target size differs: A 3 tasks, B 5 tasks"), "{stderr}");
}

#[test]
fn older_reports_and_missing_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = report_dir(tmp.path(), "a", "passed", |_| {});
    let old = report_dir(tmp.path(), "old", "passed", |v| {
        v["schema_version"] = 2.into();
        v.as_object_mut().unwrap().remove("phases");
    });
    let (code, _, stderr) = run_compare(&[&old, &a], &[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("has schema_version 2: siege compare reads version 4 and later"), "{stderr}");
    // Version 3 timed detection and restoration otherwise: not compared with version 4.
    let v3 = report_dir(tmp.path(), "v3", "passed", |v| v["schema_version"] = 3.into());
    let (code, _, stderr) = run_compare(&[&v3, &a], &[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("has schema_version 3: siege compare reads version 4 and later"), "{stderr}");
    let (code, _, stderr) = run_compare(&[&a, &tmp.path().join("nowhere")], &[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("there is no report.json"), "{stderr}");
    let bad = report_dir(tmp.path(), "bad", "passed", |v| v["phases"][0]["latency_hdr"] = "AAAA".into());
    let (code, _, stderr) = run_compare(&[&a, &bad], &[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("baseline latency histogram cannot be read"), "{stderr}");
}

fn fixture_run(name: &str) -> compare::Run {
    compare::load(&fixture_path(name)).unwrap()
}

#[test]
fn compare_md_snapshots() {
    let (a, b) = (fixture_run("passed"), fixture_run("passed-slower"));
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(common::repo_root().join("tests/fixtures/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    let c = compare::compare(&a, &b, compare::check(&a.record, &b.record));
    assert!(c.differences.is_empty() && c.b_worse, "{c:?}");
    let md = compare::render_markdown(&c, &Redactor::for_snapshots());
    settings.bind(|| insta::assert_snapshot!("passed-vs-slower.compare.md", md));
    // The human times of both runs are side by side.
    assert!(md.contains("## Human times"), "{md}");
    // B against itself: no worse.
    let c = compare::compare(&b, &b, vec![]);
    assert!(!c.b_worse, "{}", c.summary);
    // Forced: the warning heads the document.
    let mut other = b.clone();
    other.record.scenario.target = "aws".into();
    let diffs = compare::check(&a.record, &other.record);
    let md = compare::render_markdown(&compare::compare(&a, &other, diffs), &Redactor::for_snapshots());
    settings.bind(|| insta::assert_snapshot!("passed-vs-aws.compare.md", md));
}

/// The `<rect class="fault-window">` titles and the series name of each data `<polyline>`
/// (the axes are a polyline too).
fn parse_svg(svg: &str) -> (Vec<String>, Vec<String>) {
    let (mut windows, mut series) = (vec![], vec![]);
    for tag in svg.split('<').skip(1) {
        let attr = |name: &str| {
            tag.split(&format!(" {name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).map(String::from)
        };
        if tag.starts_with("rect ") && attr("class").as_deref() == Some("fault-window") {
            let title =
                svg[svg.find(tag).unwrap()..].split("<title>").nth(1).unwrap().split("</title>").next().unwrap();
            windows.push(title.to_string());
        }
        if tag.starts_with("polyline ") && attr("class").as_deref() == Some("series") {
            series.push(attr("data-series").expect("a named series"));
        }
    }
    (windows, series)
}

#[test]
fn overlaid_charts_have_both_series_and_both_runs_fault_windows() {
    let a = fixture_run("aborted").record;
    let mut b = fixture_run("aborted").record;
    for f in &mut b.faults {
        f.injected_s = f.injected_s.map(|t| t + 2.0);
        f.ends_s = f.ends_s.map(|t| t + 2.0);
        f.reverted_s = f.reverted_s.map(|t| t + 2.0);
    }
    let charts = compare::render_charts(&a, &b);
    assert_eq!(charts.iter().map(|c| c.0).collect::<Vec<_>>(), ["errors.svg", "latency.svg", "targets.svg"]);
    for (name, svg) in &charts {
        crate::report::check_well_formed_xml(svg).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (windows, series) = parse_svg(svg);
        assert_eq!(windows, ["A: slow-api (25s–36.3s)", "B: slow-api (27s–38.3s)"], "{name}");
        assert!(series.contains(&"A".to_string()) && series.contains(&"B".to_string()), "{name}: {series:?}");
        assert!(series.iter().all(|s| s == "A" || s == "B"), "{name}: {series:?}");
    }
    assert_eq!(charts, compare::render_charts(&a, &b), "deterministic");
    // The example in the docs is what this code draws for the two fixture runs.
    let (pa, pb) = (fixture_run("passed").record, fixture_run("passed-slower").record);
    let example = compare::render_charts(&pa, &pb).into_iter().find(|c| c.0 == "targets.svg").unwrap().1;
    let path = common::repo_root().join("docs/compare-targets.svg");
    if std::env::var_os("SIEGE_BLESS").is_some() {
        std::fs::write(&path, &example).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        example,
        "docs/compare-targets.svg is out of date; SIEGE_BLESS=1 rewrites it"
    );
}
