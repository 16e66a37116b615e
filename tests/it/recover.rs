//! Integration tests: `siege recover` with journals it must not trust blindly (an unreadable
//! line, a corrupt or missing run line, an empty file, a pid now held by another process) and
//! what only looks like a journal (a directory), against a real detached lab where a fault is
//! reverted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::wait_for;
use crate::lab::TestLab;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn recover(lab: &TestLab, args: &[&str]) -> (Option<i32>, String) {
    let out = lab.siege().arg("recover").args(args).output().expect("siege recover");
    (out.status.code(), text(&out))
}

fn secret_version(lab: &TestLab) -> u64 {
    lab.state()["secret"]["current_version"].as_u64().expect("secret version")
}

/// Drifts the lab's secret as a `secret-drift` fault does: v2 becomes current, tasks keep v1.
fn drift_secret(lab: &TestLab) {
    let r = lab.post("/v1/secret/rotate", json!({}));
    assert_eq!(r["current_version"], 2, "{r}");
}

/// The journal entry of that drift, as `siege run` writes it before injecting.
fn drift_entry(name: &str) -> Value {
    json!({
        "type": "injecting",
        "fault": name,
        "injected": {
            "fault": name,
            "kind": "secret-drift",
            "targets": ["lab/db-password"],
            "undo": { "restore_version": 1 }
        }
    })
}

fn run_entry(lab: &TestLab, run_id: &str, pid: u32, process: Option<Value>) -> Value {
    let mut run = json!({
        "type": "run",
        "run_id": run_id,
        "pid": pid,
        "scenario": "drift.yaml",
        "locator": { "lab": { "control_url": lab.control, "owned": false } }
    });
    if let Some(p) = process {
        run["process"] = p;
    }
    run
}

/// Writes `<home>/journal/<run_id>.jsonl` from raw lines (each gets its newline).
fn write_journal(lab: &TestLab, run_id: &str, lines: &[String]) -> PathBuf {
    let dir = lab.home.path().join("journal");
    std::fs::create_dir_all(&dir).expect("journal dir");
    let path = dir.join(format!("{run_id}.jsonl"));
    std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write journal");
    path
}

/// The pid of a process that has ended.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().expect("spawn true");
    let pid = c.id();
    c.wait().expect("wait true");
    pid
}

/// A child process, killed when the test ends however it ends.
struct Process(Child);

impl Process {
    /// Starts `cmd` and waits until its command line contains `marker` (it reads empty while
    /// the exec is under way).
    fn start(cmd: &mut Command, marker: &[u8]) -> Process {
        let p = Process(cmd.spawn().expect("spawn"));
        let pid = p.pid();
        let ready = wait_for(Duration::from_secs(5), || {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmdline.windows(marker.len()).any(|w| w == marker).then_some(())
        });
        assert!(ready.is_some(), "{cmd:?} never started");
        p
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A live process that is no siege run.
fn sleeper() -> Process {
    Process::start(Command::new("sleep").arg("60"), b"sleep\x0060")
}

fn assert_names_file_and_way_out(out: &str, path: &Path, line: usize) {
    let p = path.display();
    assert!(out.contains(&format!("{p}:{line}: cannot parse journal entry: ")), "{out}");
    assert!(out.contains(&format!("then run siege recover --discard {p}")), "{out}");
}

#[test]
fn recover_of_a_journal_with_an_unreadable_line_exits_5_keeps_it_and_reverts_nothing() {
    let lab = TestLab::up(&[]);
    drift_secret(&lab);
    let path = write_journal(
        &lab,
        "r-corrupt",
        &[
            run_entry(&lab, "r-corrupt", dead_pid(), None).to_string(),
            // Not the last line, so not a line torn by a crash: the journal cannot be trusted.
            "{\"type\":\"injecting\",\"fault\":\"lat".into(),
            drift_entry("drift").to_string(),
        ],
    );
    let (code, out) = recover(&lab, &[]);
    assert_eq!(code, Some(5), "{out}");
    assert_names_file_and_way_out(&out, &path, 2);
    assert!(out.contains("- drift (secret-drift) on lab/db-password"), "the readable lines are listed: {out}");
    assert!(path.exists(), "the journal is kept");
    assert_eq!(secret_version(&lab), 2, "nothing is reverted from an unreadable journal");
    // Every later recover says the same, until the user discards the journal.
    let (code, again) = recover(&lab, &[]);
    assert_eq!(code, Some(5), "{again}");
    assert_names_file_and_way_out(&again, &path, 2);

    let (code, out) = recover(&lab, &["--discard", &path.display().to_string()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("discarded ") && out.contains("(run r-corrupt, scenario drift.yaml)"), "{out}");
    assert!(out.contains("could not be read in full (line 2: "), "{out}");
    assert!(out.contains("- drift (secret-drift) on lab/db-password"), "{out}");
    assert!(!path.exists());
    let (code, out) = recover(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing to recover"), "{out}");
}

#[test]
fn recover_with_a_corrupt_run_line_names_the_file_and_discard_is_the_way_out() {
    let lab = TestLab::up(&[]);
    let path = write_journal(
        &lab,
        "r-norun",
        &["{\"type\":\"run\",\"run_id\":\"r-norun\",\"pid\":".into(), drift_entry("drift").to_string()],
    );
    let (code, out) = recover(&lab, &[]);
    assert_eq!(code, Some(5), "{out}");
    assert_names_file_and_way_out(&out, &path, 1);
    assert!(path.exists());

    // --discard removes journals only.
    let elsewhere = lab.home.path().join("r-norun.jsonl");
    std::fs::copy(&path, &elsewhere).expect("copy");
    let (code, out) = recover(&lab, &["--discard", &elsewhere.display().to_string()]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("is not in the journal directory"), "{out}");
    assert!(elsewhere.exists());
    let lab_json = lab.home.path().join("journal").join("..").join("lab.json");
    let (code, out) = recover(&lab, &["--discard", &lab_json.display().to_string()]);
    assert_eq!(code, Some(3), "{out}");
    assert!(lab.home.path().join("lab.json").exists());

    let (code, out) = recover(&lab, &["--discard", &path.display().to_string()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("could not be read in full (line 1: "), "{out}");
    assert!(!path.exists());
    let (code, out) = recover(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn recover_reverts_the_faults_of_a_run_whose_pid_now_belongs_to_another_process() {
    let lab = TestLab::up(&[]);
    drift_secret(&lab);
    let mut other = sleeper();
    let pid = other.pid();
    // A journal of an older siege (pid only), and one whose recorded start time is not the
    // start time of the process that holds the pid now.
    let old = write_journal(
        &lab,
        "r-old",
        &[run_entry(&lab, "r-old", pid, None).to_string(), drift_entry("drift").to_string()],
    );
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    let process = json!({ "boot_id": boot_id.trim(), "start_ticks": 1 });
    let new = write_journal(
        &lab,
        "r-new",
        &[run_entry(&lab, "r-new", pid, Some(process)).to_string(), drift_entry("drift-2").to_string()],
    );
    let (code, out) = recover(&lab, &[]);
    other.kill();
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("still running"), "{out}");
    assert!(out.contains(&format!("run r-old: pid {pid} now belongs to another process (`sleep 60`)")), "{out}");
    assert!(out.contains(&format!("run r-new: pid {pid} now belongs to another process")), "{out}");
    assert!(out.contains("run r-old: reverted drift (secret-drift)"), "{out}");
    assert!(out.contains("run r-new: reverted drift-2 (secret-drift)"), "{out}");
    assert!(!old.exists() && !new.exists());
    assert_eq!(secret_version(&lab), 1);
}

#[test]
fn recover_leaves_a_live_run_alone_and_then_reverts_it_once_killed() {
    let lab = TestLab::up(&[]);
    drift_secret(&lab);
    // A process that is a `siege … run` by its command line, as a journal of an older siege
    // can only check: the siege binary itself, waiting in `siege run` on a FIFO that never opens.
    let fifo = lab.home.path().join("never.yaml");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let mut run = Process::start(lab.siege().arg("run").arg(&fifo), b"\0run\0");
    let pid = run.pid();
    let path = write_journal(
        &lab,
        "r-live",
        &[run_entry(&lab, "r-live", pid, None).to_string(), drift_entry("drift").to_string()],
    );
    let (code, out) = recover(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("run r-live is still running (pid {pid}")), "{out}");
    assert!(out.contains("identified by its command line"), "{out}");
    assert!(path.exists());
    assert_eq!(secret_version(&lab), 2);
    let (code, out) = recover(&lab, &["--discard", &path.display().to_string()]);
    assert_eq!(code, Some(3), "the journal of a live run is not discarded: {out}");
    run.kill();
    let (code, out) = recover(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("run r-live: reverted drift (secret-drift)"), "{out}");
    assert_eq!(secret_version(&lab), 1);
}

/// `siege recover` with its own state directory and no lab.
fn recover_in(home: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = crate::common::siege().env("SIEGE_HOME", home).arg("recover").args(args).output().expect("siege recover");
    (out.status.code(), text(&out))
}

#[test]
fn a_journal_that_cannot_be_traced_to_a_run_is_kept_and_named_whatever_is_in_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join("journal");
    std::fs::create_dir_all(&dir).expect("journal dir");
    // Empty, only a torn run line, only a blank line: the same verdict for all three.
    for (name, data) in [("r-empty", ""), ("r-torn", "{\"type\":\"run\",\"run_id\":\"r-to"), ("r-blank", "\n")] {
        let path = dir.join(format!("{name}.jsonl"));
        std::fs::write(&path, data).expect("write journal");
        let (code, out) = recover_in(home.path(), &[]);
        assert_eq!(code, Some(5), "{name}: {out}");
        assert!(path.exists(), "{name}: the journal is kept: {out}");
        assert!(!out.contains("nothing left to revert"), "{name}: {out}");
        assert!(out.contains(&format!("then run siege recover --discard {}", path.display())), "{name}: {out}");
        match name {
            "r-blank" => {
                assert!(out.contains(&format!("{}:1: cannot parse journal entry: an empty line", path.display())))
            }
            _ => assert!(out.contains(&format!("{}: cannot be traced to a run: ", path.display())), "{name}: {out}"),
        }
        let (code, out) = recover_in(home.path(), &["--discard", &path.display().to_string()]);
        assert_eq!(code, Some(0), "{name}: {out}");
        assert!(!path.exists(), "{name}: {out}");
    }
    let (code, out) = recover_in(home.path(), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing to recover"), "{out}");
}

#[test]
fn a_directory_named_like_a_journal_is_skipped_and_named() {
    let home = tempfile::tempdir().expect("tempdir");
    let sub = home.path().join("journal").join("r-dir.jsonl");
    std::fs::create_dir_all(&sub).expect("dir");
    let (code, out) = recover_in(home.path(), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("skipped {}: named like a journal, but it is a directory", sub.display())), "{out}");
    assert!(sub.exists());
}

#[test]
fn recover_says_a_pid_held_by_an_older_process_was_never_the_run() {
    let lab = TestLab::up(&[]);
    drift_secret(&lab);
    let mut other = sleeper();
    let pid = other.pid();
    // The journal says the run's process started well after the one that holds its pid now.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat fields").1.split_whitespace().collect();
    let start_ticks: u64 = fields[22 - 3].parse().expect("start ticks");
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    let process = json!({ "boot_id": boot_id.trim(), "start_ticks": start_ticks + 1000 });
    let path = write_journal(
        &lab,
        "r-older",
        &[run_entry(&lab, "r-older", pid, Some(process)).to_string(), drift_entry("drift").to_string()],
    );
    let (code, out) = recover(&lab, &[]);
    other.kill();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "run r-older: pid {pid} belongs to a different process (`sleep 60`, which started before the run did"
        )),
        "{out}"
    );
    assert!(!out.contains("started after the run"), "{out}");
    assert!(out.contains("run r-older: reverted drift (secret-drift)"), "{out}");
    assert!(!path.exists());
    assert_eq!(secret_version(&lab), 1);
}

#[test]
fn recover_of_a_failover_that_is_over_says_there_was_nothing_to_revert_and_never_reverted() {
    let lab = TestLab::up(&[]);
    let writer = lab.state()["db"]["writer"].as_str().expect("a writer").to_string();
    let failover = json!({
        "type": "injecting",
        "fault": "db",
        "injected": { "fault": "db", "kind": "db-failover", "targets": [writer], "undo": { "writer": writer } }
    });
    let path = write_journal(
        &lab,
        "r-failover",
        &[run_entry(&lab, "r-failover", dead_pid(), None).to_string(), failover.to_string()],
    );
    // The lab's cluster has a writer: the outage a killed run started is over.
    let (code, out) = recover(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("run r-failover: no revert for db (db-failover): the cluster keeps its new writer"), "{out}");
    assert!(!out.contains("reverted db"), "{out}");
    assert!(!path.exists(), "nothing is left to revert: the journal is gone");
}

/// The journal fixtures of a lab run, as this version writes them and as older versions did
/// (tests/fixtures/journals), filled in for `lab`: a kill of `other`, a latency on `task`, a
/// secret drift from v1.
fn lab_fixture(name: &str, lab: &TestLab, task: &str, other: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journals").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.replace("{{CONTROL_URL}}", &lab.control)
        .replace("{{OTHER_TASK}}", other)
        .replace("{{TASK}}", task)
        .replace(r#""pid":0"#, &format!(r#""pid":{}"#, dead_pid()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn recover_reverts_journals_of_this_version_and_of_older_ones() {
    for fixture in ["lab-typed.jsonl", "lab-untyped.jsonl"] {
        let lab = TestLab::up(&[]);
        drift_secret(&lab);
        let tasks: Vec<String> = lab.state()["service"]["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .filter(|t| t["status"] == "running")
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .collect();
        assert!(tasks.len() >= 2, "{tasks:?}");
        lab.post("/v1/tasks/latency", json!({ "tasks": [&tasks[0]], "delay_ms": 300 }));
        assert!(lab.state()["faults"].to_string().contains("latency 300ms"));
        let path = write_journal(&lab, "r-fixture", &lab_fixture(fixture, &lab, &tasks[0], &tasks[1]));
        let (code, out) = recover(&lab, &[]);
        assert_eq!(code, Some(0), "{fixture}: {out}");
        for line in ["run r-fixture: reverted slow (latency)", "run r-fixture: reverted drift (secret-drift)"] {
            assert!(out.contains(line), "{fixture}: `{line}` missing: {out}");
        }
        assert!(!out.contains("reverted kill"), "a kill has nothing to revert: {out}");
        assert!(!path.exists(), "{fixture}: the journal is gone");
        assert_eq!(secret_version(&lab), 1, "{fixture}");
        assert!(!lab.state()["faults"].to_string().contains("latency"), "{fixture}: {}", lab.state()["faults"]);
    }
}
