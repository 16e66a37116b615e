//! Integration tests: report. Snapshots of `report.md` and `junit.xml` rendered from the fixture
//! records in `tests/fixtures/reports/` (a passed task-kill, a failed secret drift, a run aborted
//! by a stop condition), the `report.json` schema, the charts, and `siege report DIR` through the
//! real binary.

use std::path::{Path, PathBuf};

use serde_json::Value;
use siege::report::{self, Redactor, RunRecord};

use crate::common;

const FIXTURES: &[&str] = &["passed", "secret-drift-failed", "aborted"];

fn fixture_path(name: &str) -> PathBuf {
    common::repo_root().join("tests/fixtures/reports").join(format!("{name}.json"))
}

fn fixture(name: &str) -> RunRecord {
    let text = std::fs::read_to_string(fixture_path(name)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Snapshots live beside the fixtures they are rendered from.
fn snapshot_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(common::repo_root().join("tests/fixtures/snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn report_md_snapshots() {
    for name in FIXTURES {
        let md = report::render_markdown(&fixture(name), &Redactor::for_snapshots());
        snapshot_settings().bind(|| insta::assert_snapshot!(format!("{name}.report.md"), md));
    }
}

#[test]
fn junit_xml_snapshots_are_well_formed() {
    for name in FIXTURES {
        let xml = report::render_junit(&fixture(name), &Redactor::for_snapshots());
        check_well_formed_xml(&xml).unwrap_or_else(|e| panic!("{name}: {e}\n{xml}"));
        snapshot_settings().bind(|| insta::assert_snapshot!(format!("{name}.junit.xml"), xml));
    }
}

#[test]
fn junit_counts_match_the_verdict() {
    let attr = |xml: &str, key: &str| -> usize {
        let start = xml.find(&format!(" {key}=\"")).unwrap() + key.len() + 3;
        xml[start..].split('"').next().unwrap().parse().unwrap()
    };
    let passed = report::render_junit(&fixture("passed"), &Redactor::noop());
    assert_eq!((attr(&passed, "tests"), attr(&passed, "failures"), attr(&passed, "skipped")), (7, 0, 0));
    let failed = report::render_junit(&fixture("secret-drift-failed"), &Redactor::noop());
    // error_rate after recovery, and the recovery deadline.
    assert_eq!(attr(&failed, "failures"), 2);
    assert!(failed.contains("did not hold after recovery: observed 100%"), "{failed}");
    let aborted = report::render_junit(&fixture("aborted"), &Redactor::noop());
    // The after-recovery checks were never evaluated: skipped, not passed.
    assert_eq!((attr(&aborted, "failures"), attr(&aborted, "skipped")), (1, 2));
    assert!(aborted.contains(r#"<failure type="stop-condition""#), "{aborted}");
}

#[test]
fn markdown_opens_with_the_verdict_and_why() {
    let md = report::render_markdown(&fixture("secret-drift-failed"), &Redactor::noop());
    let mut lines = md.lines().filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("# secret-drift-no-redeploy: FAILED"));
    assert!(lines.next().unwrap().starts_with("**Verdict: FAILED** (exit 1). Steady state not restored within 60s"));
    // A scenario question comes before the defaults; secret-drift defaults follow.
    let q = md.split("## Debrief questions").nth(1).unwrap();
    assert!(q.trim_start().starts_with("1. Nobody redeployed"), "{q}");
    assert!(q.contains("pick up a rotated secret"));
    // Text that looks like an HTML tag is escaped so GitHub shows it.
    assert!(md.contains("\\<stale credentials>"), "{md}");
}

#[test]
fn charts_shade_the_fault_windows() {
    let charts = report::render_charts(&fixture("aborted"));
    let names: Vec<&str> = charts.iter().map(|c| c.0).collect();
    assert_eq!(names, ["rate.svg", "errors.svg", "latency.svg", "targets.svg"]);
    for (name, svg) in &charts {
        check_well_formed_xml(svg).unwrap_or_else(|e| panic!("{name}: {e}"));
        // slow-api was injected; kill-one never was, so it has no window.
        assert_eq!(svg.matches(r#"class="fault-window""#).count(), 1, "{name}");
        // The window ends at the revert (the abort), not at the planned end.
        assert!(svg.contains("<title>slow-api (25s–36.3s)</title>"), "{name}: {svg}");
        assert!(svg.contains("stop condition"), "{name}");
        assert!(svg.contains("<polyline"), "{name}");
    }
    // A persistent fault (secret-drift) is shaded until its revert after the verdict.
    let failed = report::render_charts(&fixture("secret-drift-failed"));
    assert!(failed[1].1.contains("<title>drift (20s–1m20.6s)</title>"), "{}", failed[1].1);
    // Thresholds of the steady state are drawn where they apply.
    assert!(failed[1].1.contains(r#"class="threshold""#) && failed[1].1.contains("error_rate &lt; 1%"));
    assert!(!failed[0].1.contains(r#"class="threshold""#));
}

#[test]
fn charts_are_deterministic() {
    let a = report::render_charts(&fixture("passed"));
    let b = report::render_charts(&fixture("passed"));
    assert_eq!(a, b);
}

#[test]
fn report_json_round_trips_and_matches_the_documented_schema() {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path()).unwrap()).unwrap();
    for name in FIXTURES {
        let original: Value = serde_json::from_str(&std::fs::read_to_string(fixture_path(name)).unwrap()).unwrap();
        let record: RunRecord = serde_json::from_value(original.clone()).unwrap();
        let written = serde_json::to_value(&record).unwrap();
        assert_eq!(written, original, "{name}: report.json does not round-trip");
        validate(&schema, &schema, &written, "$").unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The validator is strict: an undocumented field fails it.
    let mut extra = serde_json::to_value(fixture("passed")).unwrap();
    extra["surprise"] = Value::Bool(true);
    assert!(validate(&schema, &schema, &extra, "$").unwrap_err().contains("surprise"));
}

fn schema_path() -> PathBuf {
    common::repo_root().join("docs/report.schema.json")
}

/// `docs/report.schema.json` is generated from the code; `SIEGE_BLESS=1` rewrites it.
#[test]
fn committed_schema_matches_the_code() {
    let generated = serde_json::to_string_pretty(&report::json_schema()).unwrap() + "\n";
    if std::env::var_os("SIEGE_BLESS").is_some() {
        std::fs::write(schema_path(), &generated).unwrap();
    }
    let committed = std::fs::read_to_string(schema_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/report.schema.json is out of date; regenerate it with\n  SIEGE_BLESS=1 cargo nextest run -E 'test(committed_schema_matches_the_code)'"
    );
}

/// Every field of the schema is documented in `docs/report-json.md`.
#[test]
fn every_field_is_documented() {
    let doc = std::fs::read_to_string(common::repo_root().join("docs/report-json.md")).unwrap();
    let schema = report::json_schema();
    let mut objects: Vec<(&str, &Value)> = vec![("RunRecord", &schema)];
    for (k, v) in schema["$defs"].as_object().unwrap() {
        objects.push((k, v));
    }
    let mut missing = Vec::new();
    for (name, def) in objects {
        if let Some(props) = def.get("properties").and_then(Value::as_object) {
            for field in props.keys() {
                if !doc.contains(&format!("`{field}`")) {
                    missing.push(format!("{name}.{field}"));
                }
            }
        }
        for v in def.get("enum").and_then(Value::as_array).into_iter().flatten() {
            if !doc.contains(&format!("`{}`", v.as_str().unwrap())) {
                missing.push(format!("{name} value {v}"));
            }
        }
    }
    assert!(missing.is_empty(), "not documented in docs/report-json.md: {missing:?}");
    assert!(doc.contains(&format!("`schema_version`: `{}`", report::SCHEMA_VERSION)));
}

#[test]
fn siege_report_re_renders_a_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("aborted-run");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(fixture_path("aborted"), dir.join("report.json")).unwrap();
    // A stale file from an older render is replaced.
    std::fs::write(dir.join("report.md"), "stale").unwrap();

    let out = common::siege().arg("report").arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("latency-spike: aborted"), "{stdout}");

    let record = fixture("aborted");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert_eq!(md, report::render_markdown(&record, &Redactor::noop()));
    assert_eq!(
        std::fs::read_to_string(dir.join("junit.xml")).unwrap(),
        report::render_junit(&record, &Redactor::noop())
    );
    for (file, svg) in report::render_charts(&record) {
        assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap(), svg, "{file}");
        assert!(md.contains(&format!("]({file})")), "report.md links {file}");
    }
    // The file itself may be named instead of its directory.
    std::fs::remove_file(dir.join("junit.xml")).unwrap();
    let out = common::siege().arg("report").arg(dir.join("report.json")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("junit.xml").exists());
    // report.json itself is left as it was.
    assert_eq!(std::fs::read(dir.join("report.json")).unwrap(), std::fs::read(fixture_path("aborted")).unwrap());
}

/// A `report.json` as the sieges before `recovery_deadline_at_s` and `interrupted_by` wrote it:
/// the deadline stored as a point in time (`last_fault_end_s` + within), the signal only in the
/// reason.
fn older_file(name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(fixture_path(name)).unwrap()).unwrap();
    let t = v["timings"].as_object_mut().unwrap();
    let at = t.remove("recovery_deadline_at_s").unwrap();
    t.insert("recovery_deadline_s".into(), at);
    v["verdict"].as_object_mut().unwrap().remove("interrupted_by");
    edit(&mut v);
    v
}

fn re_render(v: &Value) -> (String, String) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("report.json"), v.to_string()).unwrap();
    let out = common::siege().arg("report").arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |f: &str| std::fs::read_to_string(tmp.path().join(f)).unwrap();
    (read("report.md"), read("junit.xml"))
}

#[test]
fn siege_report_reads_older_files_as_their_writer_meant() {
    // passed: last disruption ended at t+20s, 60 s allowed, stored as 80.
    let old = older_file("passed", |_| {});
    assert_eq!(old["timings"]["recovery_deadline_s"], 80.0);
    let (md, xml) = re_render(&old);
    assert_eq!(md, report::render_markdown(&fixture("passed"), &Redactor::noop()));
    assert!(md.contains("allowed: 1m") && !md.contains("1m20s"), "{md}");
    assert!(xml.contains("steady state restored within 1m\""), "{xml}");

    // An interrupted run of an older siege: the signal comes from the reason.
    let old = older_file("aborted", |v| {
        v["verdict"]["reason"] = "interrupted by SIGTERM; every fault was reverted".into();
    });
    let (md, xml) = re_render(&old);
    let row = md.lines().find(|l| l.contains("Time to restore")).unwrap();
    assert!(row.contains("n/a: interrupted by SIGTERM"), "{row}");
    assert!(xml.contains(r#"<failure type="interrupted""#), "{xml}");
}

/// A version 1 file (before marks) is a version 2 file without marks.
#[test]
fn siege_report_reads_version_1_files_as_runs_without_marks() {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(fixture_path("aborted")).unwrap()).unwrap();
    v["schema_version"] = 1.into();
    v.as_object_mut().unwrap().remove("marks");
    for f in v["faults"].as_array_mut().unwrap() {
        f.as_object_mut().unwrap().remove("human");
    }
    let (md, _) = re_render(&v);
    assert_eq!(md, report::render_markdown(&fixture("aborted"), &Redactor::noop()));
}

/// A version 2 file (before the fields of `siege compare`) re-renders without the hash row.
#[test]
fn siege_report_reads_version_2_files_as_runs_without_compare_fields() {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(fixture_path("passed")).unwrap()).unwrap();
    v["schema_version"] = 2.into();
    v.as_object_mut().unwrap().remove("phases");
    for k in ["hash", "target_size", "load_schedule", "fault_plan"] {
        v["scenario"].as_object_mut().unwrap().remove(k);
    }
    let (md, _) = re_render(&v);
    let mut r = fixture("passed");
    r.schema_version = 2;
    r.phases.clear();
    (r.scenario.hash, r.scenario.target_size, r.scenario.load_schedule) = (None, None, None);
    r.scenario.fault_plan.clear();
    assert_eq!(md, report::render_markdown(&r, &Redactor::noop()));
    assert!(!md.contains("Scenario hash"), "{md}");
    let now = report::render_markdown(&fixture("passed"), &Redactor::noop());
    assert!(now.contains(&format!("| Scenario hash   | `sha256:{}` (", "a".repeat(64))), "{now}");
    assert!(now.contains("service `api`, 3 tasks running at the start"), "{now}");
}

#[test]
fn marks_are_on_the_timeline_and_give_human_times_per_fault() {
    let r = fixture("passed");
    assert_eq!(r.marks.len(), 5);
    let md = report::render_markdown(&r, &Redactor::noop());
    let timeline = md.split("## Timeline").nth(1).unwrap().split("\n## ").next().unwrap();
    for line in [
        "| t+24.5s | mark                  | detected (alice): 502s on the dashboard",
        "| t+27s   | mark                  | detected (bob)",
        "| t+28s   | mark                  | note (carol): the scheduler is placing t-4 and t-5",
        "| t+33s   | mark                  | mitigated (alice): both new tasks healthy",
    ] {
        assert!(timeline.contains(line), "{line}\n{timeline}");
    }
    let human = md.split("### Human times").nth(1).expect("a human times section").split("\n## ").next().unwrap();
    let rows: Vec<&str> = human.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(
        rows,
        [
            "| Who                                               | Time to detect | Time to mitigate |",
            "| siege (measured: detected, steady state restored) | 400ms after    | 11s after        |",
            "| alice                                             | 4.5s after     | 13s after        |",
            "| bob                                               | 7s after       | not marked       |",
        ],
        "{human}"
    );
    assert!(human.contains("`kill-two` (injected t+20s):"), "{human}");
    // Without marks there is no such section.
    let md = report::render_markdown(&fixture("aborted"), &Redactor::noop());
    assert!(!md.contains("Human times"), "{md}");
}

#[test]
fn siege_report_rejects_missing_invalid_and_unknown_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |dir: &Path| {
        let out = common::siege().arg("report").arg(dir).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, err) = run(&empty);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("is not a run directory: there is no report.json in it"), "{err}");

    let (code, err) = run(&tmp.path().join("does-not-exist"));
    assert_eq!(code, Some(3), "{err}");

    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("report.json"), "{\"schema_version\": 1, \"run_id\": ").unwrap();
    let (code, err) = run(&broken);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("is not a valid report") && err.contains("line 1"), "{err}");

    let incomplete = tmp.path().join("incomplete");
    std::fs::create_dir(&incomplete).unwrap();
    std::fs::write(incomplete.join("report.json"), "{\"schema_version\": 1, \"run_id\": \"r\"}").unwrap();
    let (code, err) = run(&incomplete);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("missing field"), "{err}");

    let newer = tmp.path().join("newer");
    std::fs::create_dir(&newer).unwrap();
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(fixture_path("passed")).unwrap()).unwrap();
    v["schema_version"] = 5.into();
    std::fs::write(newer.join("report.json"), v.to_string()).unwrap();
    let (code, err) = run(&newer);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("has schema_version 5, but this siege reads versions 1 to 4"), "{err}");
    assert!(!newer.join("report.md").exists(), "nothing is rendered from an unknown version");
}

#[test]
fn write_all_creates_a_run_directory_per_run() {
    let tmp = tempfile::tempdir().unwrap();
    let record = fixture("passed");
    let dir = report::create_run_dir(&tmp.path().join("reports"), &record).unwrap();
    report::write_all(&record, &dir, &Default::default()).unwrap();
    assert_eq!(dir.file_name().unwrap(), "task-kill-20261122T030405Z");
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(
        files,
        ["errors.svg", "junit.xml", "latency.svg", "rate.svg", "report.json", "report.md", "targets.svg"]
    );
    assert_eq!(report::load_record(&dir).unwrap(), record);
}

/// A small well-formedness check: tags balance, attribute values are quoted, `<` and `&` appear
/// only as markup or entities. Enough to catch an escaping mistake in our own output.
pub(crate) fn check_well_formed_xml(xml: &str) -> Result<(), String> {
    fn entities(text: &str) -> Result<(), String> {
        let mut rest = text;
        while let Some(i) = rest.find('&') {
            let after = &rest[i + 1..];
            let end = after.find(';').ok_or_else(|| format!("bare & in {text:?}"))?;
            let name = &after[..end];
            let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
                || name.strip_prefix('#').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !ok {
                return Err(format!("unknown entity &{name}; in {text:?}"));
            }
            rest = &after[end..];
        }
        Ok(())
    }
    let body = match xml.strip_prefix("<?xml") {
        Some(rest) => &rest[rest.find("?>").ok_or("unterminated declaration")? + 2..],
        None => xml,
    };
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    let mut roots = 0;
    while let Some(i) = rest.find('<') {
        entities(&rest[..i])?;
        if stack.is_empty() && !rest[..i].trim().is_empty() {
            return Err(format!("text outside the root: {:?}", &rest[..i]));
        }
        rest = &rest[i + 1..];
        // Find the end of the tag, skipping `>` inside quoted attribute values.
        let mut quote = None;
        let end = rest
            .char_indices()
            .find(|&(_, c)| match (quote, c) {
                (None, '"' | '\'') => {
                    quote = Some(c);
                    false
                }
                (Some(q), c) if c == q => {
                    quote = None;
                    false
                }
                (None, '>') => true,
                _ => false,
            })
            .map(|(j, _)| j)
            .ok_or("unterminated tag")?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or_else(|| format!("unbalanced </{name}>"))?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().ok_or("empty tag")?;
        // Attributes: name="value" pairs, values without raw `<`.
        let mut attrs = tag[name.len()..].trim();
        while !attrs.is_empty() {
            let eq = attrs.find('=').ok_or_else(|| format!("attribute without value in <{tag}>"))?;
            let q = attrs[eq + 1..].chars().next().ok_or("attribute without value")?;
            if q != '"' && q != '\'' {
                return Err(format!("unquoted attribute in <{tag}>"));
            }
            let value_end = attrs[eq + 2..].find(q).ok_or("unterminated attribute")? + eq + 2;
            let value = &attrs[eq + 2..value_end];
            if value.contains('<') {
                return Err(format!("raw < in attribute of <{name}>"));
            }
            entities(value)?;
            attrs = attrs[value_end + 1..].trim_start();
        }
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed elements: {stack:?}"));
    }
    if roots != 1 || !rest.trim().is_empty() {
        return Err("expected exactly one root element".into());
    }
    Ok(())
}

/// Validates `value` against the subset of JSON Schema (2020-12) that schemars emits. Strict on
/// purpose: an object may carry only the properties its schema lists, and a keyword the
/// validator does not know fails rather than being ignored.
fn validate(root: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let s = schema.as_object().ok_or_else(|| format!("{at}: schema is not an object"))?;
    for key in s.keys() {
        let known = [
            "$schema",
            "$comment",
            "$defs",
            "title",
            "description",
            "default",
            "format",
            "type",
            "properties",
            "required",
            "items",
            "enum",
            "const",
            "anyOf",
            "oneOf",
            "$ref",
            "minimum",
            "maximum",
        ];
        if !known.contains(&key.as_str()) {
            return Err(format!("{at}: the test validator does not know the keyword `{key}`"));
        }
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").ok_or_else(|| format!("{at}: unsupported $ref {r}"))?;
        validate(root, &root["$defs"][name], value, at)?;
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad type {t}")),
        };
        let ok = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_u64() || value.is_i64(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: expected {types:?}, found {value}"));
        }
    }
    if let (Some(min), Some(v)) = (s.get("minimum").and_then(Value::as_f64), value.as_f64())
        && v < min
    {
        return Err(format!("{at}: {v} < minimum {min}"));
    }
    if let (Some(max), Some(v)) = (s.get("maximum").and_then(Value::as_f64), value.as_f64())
        && v > max
    {
        return Err(format!("{at}: {v} > maximum {max}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {e:?}"));
    }
    if let Some(c) = s.get("const")
        && c != value
    {
        return Err(format!("{at}: expected {c}, found {value}"));
    }
    for (key, need) in [("anyOf", 1usize), ("oneOf", 1)] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let matched = alts.iter().filter(|a| validate(root, a, value, at).is_ok()).count();
            if matched < need || (key == "oneOf" && matched != 1) {
                return Err(format!("{at}: {value} matches {matched} of the {key} alternatives"));
            }
        }
    }
    if let Value::Object(obj) = value
        && let Some(props) = s.get("properties").and_then(Value::as_object)
    {
        for (k, v) in obj {
            let sub = props.get(k).ok_or_else(|| format!("{at}: field `{k}` is not in the schema"))?;
            validate(root, sub, v, &format!("{at}.{k}"))?;
        }
        for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            let r = r.as_str().unwrap_or_default();
            if !obj.contains_key(r) {
                return Err(format!("{at}: missing required field `{r}`"));
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, s.get("items")) {
        for (i, v) in items.iter().enumerate() {
            validate(root, item_schema, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}
