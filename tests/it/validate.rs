//! Integration tests: `siege validate` and `siege schema`, through the real binary.
//!
//! The invalid corpus lives in `tests/validate/invalid/`: one realistic mistake per file, whose
//! first line `# expect: LINE:COL: PATH: ` says where the first diagnostic must point. The exact
//! rendered output of each is pinned by an insta snapshot in `tests/validate/snapshots/`.
//!
//! After a deliberate change of a message: `INSTA_UPDATE=always cargo nextest run -E
//! 'test(/validate::/)'`, then review the snapshot diff. After a change of the format or of the
//! fault registry: `SIEGE_UPDATE_DOCS=1` regenerates `docs/scenario.schema.json` and the fault
//! reference of `docs/scenario.md`.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{repo_root, siege};

const SHIPPED: &[&str] =
    &["task-kill", "cpu-stress", "latency", "db-failover", "traffic-spike", "secret-drift", "secret-drift-redeploy"];

fn validate(args: &[&Path]) -> Output {
    let mut c = siege();
    c.arg("validate").args(args);
    c.output().expect("run siege validate")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// `scenarios/x.yaml` relative to the repository root, as `siege validate` prints it.
fn rel(p: &Path) -> PathBuf {
    p.strip_prefix(repo_root()).unwrap_or(p).to_path_buf()
}

/// Every line is `file:line:col: …` with line and column >= 1.
fn assert_diagnostic_lines(file: &str, stderr: &str) {
    assert!(!stderr.trim().is_empty(), "{file}: no diagnostic");
    assert!(!stderr.contains("panicked"), "{file}: panic: {stderr}");
    for line in stderr.lines() {
        let rest = line.strip_prefix(&format!("{file}:")).unwrap_or_else(|| panic!("{file}: bad line {line:?}"));
        let mut parts = rest.splitn(3, ':');
        let l: usize = parts.next().unwrap().parse().unwrap_or_else(|_| panic!("no line number: {line:?}"));
        let c: usize = parts.next().unwrap().parse().unwrap_or_else(|_| panic!("no column: {line:?}"));
        assert!(l >= 1 && c >= 1, "{line:?}");
        assert!(parts.next().unwrap().starts_with(' '), "{line:?}");
    }
}

#[test]
fn shipped_scenarios_are_valid() {
    for dir in ["scenarios", "scenarios/aws"] {
        let files = yaml_files(&repo_root().join(dir));
        let names: Vec<String> = files.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
        let mut expected: Vec<String> = SHIPPED.iter().map(|s| s.to_string()).collect();
        expected.sort();
        let mut got = names.clone();
        got.sort();
        assert_eq!(got, expected, "{dir}");
        for f in &files {
            let s = siege::scenario::load_file(&rel(f)).unwrap_or_else(|d| {
                panic!("{}:\n{}", f.display(), d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))
            });
            assert!(s.runbook.is_some(), "{}: no runbook", f.display());
            // secret-drift fails every /db request by design and must end failed, not aborted: its
            // stop condition watches the fleet instead of the error rate. Every other game day has
            // an error-rate stop condition.
            let watched = |m: siege::scenario::Metric| {
                s.stop
                    .iter()
                    .any(|c| matches!(c, siege::scenario::StopCondition::Threshold { metric, .. } if *metric == m))
            };
            if f.ends_with("secret-drift.yaml") {
                assert!(
                    watched(siege::scenario::Metric::HealthyTargets),
                    "{}: no healthy-targets stop condition",
                    f.display()
                );
                assert!(
                    !watched(siege::scenario::Metric::ErrorRate),
                    "{}: an error-rate stop would abort the drill",
                    f.display()
                );
            } else {
                assert!(watched(siege::scenario::Metric::ErrorRate), "{}: no error-rate stop condition", f.display());
            }
            let aws = matches!(s.target, siege::scenario::Target::Aws(_));
            assert_eq!(aws, dir.ends_with("aws"), "{}", f.display());
            if aws {
                assert!(s.stop.iter().any(|c| matches!(c, siege::scenario::StopCondition::Alarm { .. })));
            } else {
                // A lab game day takes about a minute and a half.
                assert!((80..=120).contains(&s.load.duration.as_secs()), "{}", f.display());
            }
        }
        let rels: Vec<PathBuf> = files.iter().map(|f| rel(f)).collect();
        let args: Vec<&Path> = rels.iter().map(|p| p.as_path()).collect();
        let out = validate(&args);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty());
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.ends_with(": ok")).count(), 7);
    }
}

#[test]
fn secret_drift_has_no_remediation_and_its_partner_has_one() {
    let drift = siege::scenario::load_file(Path::new("scenarios/secret-drift.yaml")).unwrap();
    let fixed = siege::scenario::load_file(Path::new("scenarios/secret-drift-redeploy.yaml")).unwrap();
    let types = |s: &siege::scenario::Scenario| s.faults.iter().map(|f| f.kind.type_name()).collect::<Vec<_>>();
    assert_eq!(types(&drift), ["secret-drift"]);
    assert_eq!(types(&fixed), ["secret-drift", "redeploy"]);
}

#[test]
fn invalid_corpus_matches_snapshots() {
    let files = yaml_files(&repo_root().join("tests/validate/invalid"));
    assert!(files.len() >= 40, "the corpus has {} files", files.len());
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../validate/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let _guard = settings.bind_to_scope();
    for f in &files {
        let r = rel(f);
        let name = r.display().to_string();
        let out = validate(&[&r]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(3), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}");
        assert_diagnostic_lines(&name, &stderr);
        let first_line = std::fs::read(f).unwrap();
        let first_line = String::from_utf8_lossy(&first_line);
        let expect = first_line
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: the first line must be `# expect: LINE:COL: PATH: `"));
        let want = format!("{name}:{}", expect.trim_end());
        assert!(
            stderr.starts_with(&want),
            "{name}: expected the first diagnostic to start with\n  {want}\ngot\n  {stderr}"
        );
        insta::assert_snapshot!(f.file_stem().unwrap().to_string_lossy().into_owned(), stderr);
    }
}

#[test]
fn missing_files_directories_and_empty_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.path().join("missing.yaml");
    let out = validate(&[&empty, &missing, dir.path()]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{}:1:1: the file is empty (a scenario needs at least `name`, `load`, `steady_state` and `recovery`; see docs/scenario.md)",
                empty.display()
            ),
            format!("{}:1:1: no such file", missing.display()),
            format!("{}:1:1: is a directory, not a scenario file", dir.path().display()),
        ]
    );
}

#[test]
fn one_invalid_file_among_valid_ones_fails_the_whole_command() {
    let good = Path::new("scenarios/task-kill.yaml");
    let bad = Path::new("tests/validate/invalid/01-unknown-top-level-key.yaml");
    let out = validate(&[good, bad]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "scenarios/task-kill.yaml: ok\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("tests/validate/invalid/01-unknown-top-level-key.yaml:5:1: ")
    );
}

#[test]
fn validate_without_files_is_a_usage_error() {
    let out = siege().arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
}

/// Mangled versions of every shipped scenario (each line removed, the file cut short at every
/// line) must give `file:line:col:` diagnostics or pass, never a panic.
#[test]
fn mangled_scenarios_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for src in ["scenarios", "scenarios/aws"] {
        for f in yaml_files(&repo_root().join(src)) {
            let text = std::fs::read_to_string(&f).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let mut variants = Vec::new();
            for i in 0..lines.len() {
                let mut v = lines.clone();
                v.remove(i);
                variants.push(v.join("\n"));
                variants.push(lines[..i].join("\n"));
                // Cut mid-line too: half a key or half a flow mapping.
                let l = lines[i];
                let cut = l.char_indices().nth(l.chars().count() / 2).map(|(b, _)| b).unwrap_or(0);
                variants.push(format!("{}\n{}", lines[..i].join("\n"), &l[..cut]));
            }
            for v in variants {
                n += 1;
                let p = dir.path().join(format!("m{n}.yaml"));
                std::fs::write(&p, v).unwrap();
                if let Err(diags) = siege::scenario::load_file(&p) {
                    assert!(!diags.is_empty());
                    for d in diags {
                        assert!(d.line >= 1 && d.column >= 1, "{d}");
                        assert!(d.to_string().starts_with(&format!("{}:{}:{}: ", p.display(), d.line, d.column)));
                    }
                }
            }
        }
    }
    assert!(n > 500);
}

#[test]
fn schema_is_json_and_matches_the_committed_file() {
    let out = siege().arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("siege schema prints JSON");
    assert_eq!(printed["title"], "siege scenario");
    let path = repo_root().join("docs/scenario.schema.json");
    if std::env::var_os("SIEGE_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &out.stdout).unwrap();
    }
    let committed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(printed, committed, "docs/scenario.schema.json is stale: run the tests with SIEGE_UPDATE_DOCS=1");
}

#[test]
fn docs_fault_reference_matches_the_registry() {
    let path = repo_root().join("docs/scenario.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- fault-reference:begin -->\n", "<!-- fault-reference:end -->");
    let start = doc.find(begin).expect("begin marker") + begin.len();
    let stop = doc.find(end).expect("end marker");
    let generated = siege::faults::reference_markdown();
    if std::env::var_os("SIEGE_UPDATE_DOCS").is_some() && doc[start..stop] != generated {
        std::fs::write(&path, format!("{}{}{}", &doc[..start], generated, &doc[stop..])).unwrap();
        return;
    }
    assert_eq!(doc[start..stop], generated, "docs/scenario.md is stale: run the tests with SIEGE_UPDATE_DOCS=1");
}

/// `siege validate PATH`, killed if it has not answered within 20 s (an input read to its end
/// would never answer).
fn validate_within_20s(path: &Path) -> Output {
    let mut child = siege()
        .arg("validate")
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run siege validate");
    let done = crate::common::wait_for(std::time::Duration::from_secs(20), || child.try_wait().ok().flatten());
    if done.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("siege validate {} did not finish within 20 s", path.display());
    }
    child.wait_with_output().expect("output")
}

#[test]
fn endless_inputs_are_refused_after_the_size_limit() {
    let out = validate_within_20s(Path::new("/dev/zero"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("/dev/zero:1:1: the input is larger than 1 MiB"), "{err}");

    // A pipe whose writer never stops.
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("endless.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let writer_path = fifo.clone();
    std::thread::spawn(move || {
        use std::io::Write as _;
        let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(&writer_path) else { return };
        let line = b"# a comment line, again and again\n".repeat(1000);
        while w.write_all(&line).is_ok() {}
    });
    let out = validate_within_20s(&fifo);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("endless.yaml:1:1: the input is larger than 1 MiB"), "{err}");

    // A regular file still says how large it is.
    let big = tmp.path().join("big.yaml");
    std::fs::write(&big, b"# padding\n".repeat(200_000)).unwrap();
    let out = validate_within_20s(&big);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("big.yaml:1:1: the file is 2000000 bytes: a scenario is at most 1 MiB"), "{err}");
}

/// A daemon config (top-level `schedules` / `webhook` / `retention`, no scenario key) is
/// validated as one: `FILE: ok (daemon config)`, or its diagnostics as `file:line:col: path:
/// message` with exit 3, beside scenarios in the same command.
#[test]
fn daemon_configs_are_validated_as_configs() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = repo_root().join("scenarios/task-kill.yaml");
    let good = dir.path().join("daemon.yaml");
    std::fs::write(
        &good,
        format!(
            "webhook: http://127.0.0.1:9/hook\nretention:\n  keep_runs: 10\nschedules:\n  - name: nightly\n    scenario: {}\n    cron: \"30 2 * * *\"\n    timezone: Europe/Berlin\n",
            scenario.display()
        ),
    )
    .unwrap();
    let only_webhook = dir.path().join("webhook-only.yaml");
    std::fs::write(&only_webhook, "webhook: https://hooks.example.com/T000\n").unwrap();
    let out = validate(&[&good, &only_webhook, Path::new("scenarios/task-kill.yaml")]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}: ok (daemon config)\n{}: ok (daemon config)\nscenarios/task-kill.yaml: ok\n",
            good.display(),
            only_webhook.display()
        )
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "schedules:\n  - name: a\n    scenario: missing.yaml\n    every: 6h\n    timezone: Europe/Berln\n  - name: a\n    scenario: missing.yaml\n    every: 0s\nwebhok: x\n",
    )
    .unwrap();
    let out = validate(&[&bad]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = bad.display().to_string();
    assert_diagnostic_lines(&file, &stderr);
    assert!(stderr.lines().count() >= 4, "every problem at once: {stderr}");
    assert!(stderr.contains(&format!("{file}:6:11: schedules[1].name: duplicate schedule name `a`")), "{stderr}");
    assert!(stderr.contains(&format!("{file}:9:1: webhok: ")), "{stderr}");
    // A scenario with a `webhook` key is still a scenario (and refused as one).
    let mixed = dir.path().join("mixed.yaml");
    std::fs::write(&mixed, "name: x\nwebhook: http://h/\n").unwrap();
    let out = validate(&[&mixed]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{}:2:1: webhook: ", mixed.display())));
}

/// `siege … | head`: a standard output closed before the command writes is no panic, and the
/// command's outcome is what it would have been.
#[test]
fn a_standard_output_closed_early_is_no_panic() {
    for args in [&["schema"][..], &["validate", "scenarios/task-kill.yaml"], &["compare", "--help"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = siege().args(args).current_dir(repo_root()).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
