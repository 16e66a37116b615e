//! Reports of a finished run: `report.json` (the stored record, versioned schema),
//! `report.md` for the debrief with SVG charts beside it, and `junit.xml` for CI systems.
//! Renderers read only the [`RunRecord`]; `siege report DIR` re-renders from `report.json`.
//!
//! Every writer goes through one path: the record is redacted of registered secret values
//! ([`crate::redact`]) first, and everything is rendered from the redacted record, so that a secret
//! cannot reach an output however a renderer escapes or splits text.

pub(crate) mod charts;
mod debrief;
pub(crate) mod format;
pub mod html;
mod junit;
mod markdown;
mod marks;
pub mod record;
pub(crate) mod svg;

pub use crate::redact::{Secrets, redact};
pub use format::Redactor;
pub use marks::attribute_marks;
pub use record::*;

use std::path::{Path, PathBuf};

/// What can go wrong reading or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{dir} is not a run directory: there is no report.json in it")]
    Missing { dir: PathBuf },
    #[error("{path} is not a valid report: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{path} has schema_version {found}, but this siege reads versions {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}; re-render it with the siege that wrote it"
    )]
    UnknownVersion { path: PathBuf, found: String },
}

/// The stored run record, the source of every other file.
pub const REPORT_JSON: &str = "report.json";
/// The debrief document.
pub const REPORT_MD: &str = "report.md";
/// `report.md` as a web page with its charts inline, served by the daemon (not written).
pub const REPORT_HTML: &str = "report.html";
/// The CI test report.
pub const JUNIT_XML: &str = "junit.xml";

/// The directory name of a run: `<scenario>-<UTC time>`, e.g. `task-kill-20261122T030405Z`.
pub fn run_dir_name(record: &RunRecord) -> String {
    let slug: String = record
        .scenario
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let slug = slug.trim_matches('-');
    let slug = if slug.is_empty() { "run" } else { slug };
    // `2026-11-22T03:04:05Z` -> `20261122T030405Z`; anything else falls back to the clock.
    let compact: String = record.started_at.chars().filter(|c| c.is_ascii_digit() || *c == 'T' || *c == 'Z').collect();
    let compact = if compact.len() >= 16 && compact.starts_with(|c: char| c.is_ascii_digit()) {
        compact[..16].to_string()
    } else {
        crate::util::compact_utc(std::time::SystemTime::now())
    };
    format!("{slug}-{compact}")
}

/// Creates `reports_root/<scenario>-<UTC time>/` for `record` and returns it; a second run of
/// the same scenario in the same second gets `-2`, `-3`… rather than overwriting the first.
pub fn create_run_dir(reports_root: &Path, record: &RunRecord) -> Result<PathBuf, ReportError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReportError::Write { path, source }
    };
    std::fs::create_dir_all(reports_root).map_err(write_err(reports_root))?;
    let base = run_dir_name(record);
    for n in 1..1000 {
        let name = if n == 1 { base.clone() } else { format!("{base}-{n}") };
        let dir = reports_root.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ReportError::Write { path: dir, source: e }),
        }
    }
    Err(ReportError::Write {
        path: reports_root.join(base),
        source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "too many runs in the same second"),
    })
}

/// `record` ready to be written: every registered secret value replaced in every string, and
/// every non-finite number (a 0/0 somewhere upstream) replaced, because JSON has no NaN and a
/// `null` in a number field would make `report.json` unreadable. Replacements are noted.
fn prepared(record: &RunRecord, secrets: &[String]) -> Result<RunRecord, serde_json::Error> {
    let mut r = record.clone();
    let mut fixed: Vec<String> = Vec::new();
    {
        let mut num = |v: &mut f64, path: &dyn Fn() -> String| {
            if !v.is_finite() {
                *v = 0.0;
                fixed.push(path());
            }
        };
        let t = &mut r.timings;
        num(&mut t.recovery_deadline_s, &|| "timings.recovery_deadline_s".into());
        num(&mut t.duration_s, &|| "timings.duration_s".into());
        num(&mut r.load.rps, &|| "load.rps".into());
        let lat = |l: &mut crate::load::Latency, num: &mut dyn FnMut(&mut f64, &dyn Fn() -> String), at: &str| {
            for (name, v) in [
                ("p50", &mut l.p50),
                ("p90", &mut l.p90),
                ("p95", &mut l.p95),
                ("p99", &mut l.p99),
                ("max", &mut l.max),
            ] {
                num(v, &|| format!("{at}.latency_ms.{name}"));
            }
        };
        lat(&mut r.load.latency_ms, &mut num, "load");
        let windows = r.windows.iter_mut().enumerate().map(|(i, w)| (format!("windows[{i}]"), w));
        for (at, w) in windows.chain(r.worst_window.iter_mut().map(|w| ("worst_window".to_string(), w))) {
            num(&mut w.error_rate, &|| format!("{at}.error_rate"));
            lat(&mut w.latency_ms, &mut num, &at);
        }
        for (i, p) in r.phases.iter_mut().enumerate() {
            let at = format!("phases[{i}]");
            num(&mut p.error_rate, &|| format!("{at}.error_rate"));
            if let Some(l) = &mut p.latency_ms {
                lat(l, &mut num, &at);
            }
        }
        for (i, e) in r.timeline.iter_mut().enumerate() {
            num(&mut e.t_s, &|| format!("timeline[{i}].t_s"));
        }
    }
    // Optional numbers simply become unknown.
    let opt = |v: &mut Option<f64>| {
        if v.is_some_and(|x| !x.is_finite()) {
            *v = None;
        }
    };
    let t = &mut r.timings;
    for v in [
        &mut t.first_fault_s,
        &mut t.last_fault_end_s,
        &mut t.time_to_detect_s,
        &mut t.time_to_recover_s,
        &mut t.recovery_deadline_at_s,
    ] {
        opt(v);
    }
    for c in &mut r.steady_state {
        for v in [&mut c.before, &mut c.after, &mut c.threshold] {
            opt(v);
        }
    }
    for f in &mut r.faults {
        for v in [&mut f.injected_s, &mut f.ends_s, &mut f.reverted_s] {
            opt(v);
        }
    }
    if !fixed.is_empty() {
        r.notes.push(format!("report: non-finite values were written as 0: {}", fixed.join(", ")));
    }
    if !secrets.is_empty() {
        // Through JSON, so that every string field is covered, including ones added later. The
        // numbers are finite now, so the round trip does not fail; if it ever did, nothing is
        // written rather than something unredacted.
        let mut v = serde_json::to_value(&r)?;
        crate::redact::redact_json(&mut v, secrets);
        r = serde_json::from_value(v)?;
    }
    Ok(r)
}

/// The report's files, rendered in memory with every value of `secrets` redacted: `report.json`,
/// `report.md`, the charts and `junit.xml`, as (file name, bytes). The CLI writes them into
/// `reports/<scenario>-<time>/` ([`write_all`]); the daemon stores them.
pub fn files(record: &RunRecord, secrets: &Secrets) -> Result<Vec<(&'static str, Vec<u8>)>, ReportError> {
    let invalid =
        |e: serde_json::Error| ReportError::Write { path: REPORT_JSON.into(), source: std::io::Error::other(e) };
    let record = prepared(record, &secrets.values()).map_err(invalid)?;
    let json = serde_json::to_string_pretty(&record).map_err(invalid)?;
    let red = Redactor::noop();
    let charts = charts::charts(&record);
    let mut out = vec![(REPORT_JSON, (json + "\n").into_bytes())];
    out.push((REPORT_MD, markdown::render(&record, &charts, &red).into_bytes()));
    for c in charts {
        out.push((c.file, c.svg.into_bytes()));
    }
    out.push((JUNIT_XML, junit::render(&record, &red).into_bytes()));
    Ok(out)
}

/// Writes [`files`] into `dir` (created if missing). Use [`create_run_dir`] for the conventional
/// `reports/<scenario>-<time>/`.
pub fn write_all(record: &RunRecord, dir: &Path, secrets: &Secrets) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write { path: dir.to_path_buf(), source })?;
    let files = files(record, secrets).map_err(|e| match e {
        ReportError::Write { path, source } => ReportError::Write { path: dir.join(path), source },
        e => e,
    })?;
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| ReportError::Write { path, source })?;
    }
    Ok(())
}

/// `report.md` of `record`, as [`write_all`] writes it (without secret redaction).
pub fn render_markdown(record: &RunRecord, redactor: &Redactor) -> String {
    markdown::render(record, &charts::charts(record), redactor)
}

/// `junit.xml` of `record`, as [`write_all`] writes it (without secret redaction).
pub fn render_junit(record: &RunRecord, redactor: &Redactor) -> String {
    junit::render(record, redactor)
}

/// The charts of `record`: (file name, SVG document).
pub fn render_charts(record: &RunRecord) -> Vec<(&'static str, String)> {
    charts::charts(record).into_iter().map(|c| (c.file, c.svg)).collect()
}

/// The debrief questions `report.md` lists: the record's own, then defaults per fault type.
pub fn debrief_questions(record: &RunRecord) -> Vec<String> {
    debrief::questions(record)
}

/// Reads and checks `dir/report.json` (or the file itself, if `dir` names it).
pub fn load_record(dir: &Path) -> Result<RunRecord, ReportError> {
    let path = if dir.is_file() { dir.to_path_buf() } else { dir.join(REPORT_JSON) };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReportError::Missing { dir: dir.to_path_buf() });
        }
        Err(source) => return Err(ReportError::Read { path, source }),
    };
    // The version is checked before the layout, so that a newer file says so instead of
    // failing on its first new field.
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ReportError::Invalid { path: path.clone(), message: e.to_string() })?;
    match value.get("schema_version") {
        // Version 1 is version 2 without marks: its fields all have defaults.
        Some(v)
            if v.as_u64()
                .is_some_and(|n| (u64::from(OLDEST_SCHEMA_VERSION)..=u64::from(SCHEMA_VERSION)).contains(&n)) => {}
        Some(v) => return Err(ReportError::UnknownVersion { path, found: v.to_string() }),
        None => {
            return Err(ReportError::Invalid {
                path,
                message: "no `schema_version`: this is not a siege report.json".into(),
            });
        }
    }
    // Parsed again from the text, so that errors carry a line and column.
    let mut record: RunRecord =
        serde_json::from_str(&text).map_err(|e| ReportError::Invalid { path, message: e.to_string() })?;
    read_older_fields(&mut record, &value);
    Ok(record)
}

/// Reads a file written before `timings.recovery_deadline_at_s` and `verdict.interrupted_by`
/// existed the way its writer meant it, so that `siege report` renders it right.
fn read_older_fields(record: &mut RunRecord, raw: &serde_json::Value) {
    let t = &mut record.timings;
    if raw.pointer("/timings/recovery_deadline_at_s").is_none() {
        // Those writers stored the deadline as a point in time in `recovery_deadline_s`:
        // `last_fault_end_s + recovery.within` (`recovery.within` alone without a disruption).
        // A value that cannot be such a point (not after the end) is already the duration.
        let within = t.recovery_deadline_s - t.last_fault_end_s.unwrap_or(0.0);
        if within > 0.0 {
            t.recovery_deadline_s = within;
        }
        t.recovery_deadline_at_s = t.last_fault_end_s.map(|end| end + t.recovery_deadline_s);
    }
    let v = &mut record.verdict;
    if raw.pointer("/verdict/interrupted_by").is_none() && v.interrupted_by.is_none() {
        // Their verdict said it: "interrupted by SIGTERM; every fault was reverted".
        v.interrupted_by = v
            .reason
            .strip_prefix("interrupted by ")
            .and_then(|rest| rest.split(';').next())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
    }
}

/// The JSON Schema of `report.json` as written (every field present), committed as
/// `docs/report.schema.json`.
pub fn json_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().for_serialize().into_generator();
    let mut schema = generator.into_root_schema_for::<RunRecord>();
    schema.insert("title".into(), "siege report.json".into());
    schema.insert("$comment".into(), format!("schema_version {SCHEMA_VERSION}; see docs/report-json.md").into());
    schema.to_value()
}

/// Re-renders the markdown (and charts, JUnit) of a stored run from `DIR/report.json` (or the
/// `report.json` file given), beside it. Returns the record, the directory and the files written.
pub fn rerender(dir: &Path) -> Result<(RunRecord, PathBuf, Vec<&'static str>), ReportError> {
    let record = load_record(dir)?;
    let out = if dir.is_file() { dir.parent().unwrap_or(Path::new(".")) } else { dir };
    // A stored record was redacted when it was written; its report.json stays as it is.
    let mut written = vec![];
    for (name, bytes) in files(&record, &Secrets::default())? {
        if name == REPORT_JSON {
            continue;
        }
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(|source| ReportError::Write { path, source })?;
        written.push(name);
    }
    Ok((record, out.to_path_buf(), written))
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// The smallest valid record, for unit tests to modify.
    pub(crate) fn minimal_record() -> RunRecord {
        RunRecord {
            schema_version: SCHEMA_VERSION,
            run_id: "r-1".into(),
            scenario: ScenarioInfo {
                name: "task-kill".into(),
                description: None,
                file: "scenarios/task-kill.yaml".into(),
                runbook: None,
                target: "lab".into(),
                service: "api".into(),
                hash: Some("sha256:00".into()),
                target_size: Some(3),
                load_schedule: Some("/ at 20/s for 2m, timeout 2s".into()),
                fault_plan: vec![],
            },
            started_at: "2026-11-22T03:04:05Z".into(),
            finished_at: "2026-11-22T03:06:05Z".into(),
            seed: 7,
            verdict: Verdict { outcome: Outcome::Passed, exit_code: 0, reason: "ok".into(), interrupted_by: None },
            timings: Timings::default(),
            worst_window: None,
            steady_state: vec![],
            timeline: vec![],
            faults: vec![],
            marks: vec![],
            windows: vec![],
            phases: vec![],
            load: LoadTotals::default(),
            debrief_questions: vec![],
            notes: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dir_names_are_safe_and_sortable() {
        let mut r = tests_support::minimal_record();
        r.scenario.name = "Task Kill/../x".into();
        assert_eq!(run_dir_name(&r), "task-kill----x-20261122T030405Z");
        r.started_at = "garbage".into();
        assert!(run_dir_name(&r).starts_with("task-kill----x-20"));
    }

    #[test]
    fn second_run_in_the_same_second_gets_its_own_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tests_support::minimal_record();
        let a = create_run_dir(tmp.path(), &r).unwrap();
        let b = create_run_dir(tmp.path(), &r).unwrap();
        assert_eq!(a.file_name().unwrap(), "task-kill-20261122T030405Z");
        assert_eq!(b.file_name().unwrap(), "task-kill-20261122T030405Z-2");
    }

    #[test]
    fn non_finite_numbers_do_not_make_report_json_unreadable() {
        let mut r = tests_support::minimal_record();
        r.windows.push(WindowRecord { error_rate: f64::NAN, ..WindowRecord::default() });
        r.timings.time_to_recover_s = Some(f64::INFINITY);
        r.load.rps = f64::NAN;
        let tmp = tempfile::tempdir().unwrap();
        write_all(&r, tmp.path(), &Secrets::default()).unwrap();
        let back = load_record(tmp.path()).unwrap();
        assert_eq!(back.windows[0].error_rate, 0.0);
        assert_eq!(back.timings.time_to_recover_s, None);
        assert_eq!(back.notes, ["report: non-finite values were written as 0: load.rps, windows[0].error_rate"]);
    }

    #[test]
    fn registered_secrets_reach_no_output() {
        let secret = "pw-Zq8!rotated\"value";
        let secrets = Secrets::default();
        secrets.register(secret);
        let mut r = tests_support::minimal_record();
        r.notes.push(format!("task t-2 printed: password authentication failed for {secret}"));
        r.timeline.push(TimelineEntry {
            t_s: 3.0,
            kind: TimelineKind::Event,
            text: format!("env DB_PASSWORD={secret}"),
        });
        r.verdict.reason = format!("db said {secret}");
        let tmp = tempfile::tempdir().unwrap();
        write_all(&r, tmp.path(), &secrets).unwrap();
        let mut files = 0;
        for entry in std::fs::read_dir(tmp.path()).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!text.contains("pw-Zq8"), "{text}");
            files += 1;
        }
        assert_eq!(files, 7, "report.json, report.md, junit.xml and four charts");
        let md = std::fs::read_to_string(tmp.path().join(REPORT_MD)).unwrap();
        assert!(md.contains("DB_PASSWORD=[redacted]"), "{md}");
        // report.json is still a valid record.
        assert_eq!(load_record(tmp.path()).unwrap().notes.len(), 1);
    }
}
