//! Integration tests: `siege run`, `plan` and `recover` end to end against real labs.
//!
//! Every test gets its own state directory (`SIEGE_HOME`), so journals and background labs of
//! parallel tests never meet, and so leftover processes can be found by that directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::{pid_alive, siege, wait_for};

/// A private state directory, a reports directory, and the labs started in it.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Home { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn reports(&self) -> PathBuf {
        self.path().join("reports")
    }

    fn siege(&self) -> Command {
        let mut c = siege();
        c.env("SIEGE_HOME", self.path());
        c
    }

    fn run(&self, scenario: &Path) -> Output {
        self.siege().arg("run").arg(scenario).arg("--reports").arg(self.reports()).output().expect("run siege")
    }

    /// Starts a background lab and returns its control URL.
    fn lab_up(&self) -> String {
        let out = self.siege().args(["lab", "up", "--detach"]).output().expect("lab up");
        assert!(out.status.success(), "lab up failed: {}", String::from_utf8_lossy(&out.stderr));
        let file = std::fs::read_to_string(self.path().join("lab.json")).expect("lab.json");
        let v: serde_json::Value = serde_json::from_str(&file).expect("lab.json is JSON");
        v["control_url"].as_str().expect("control_url").to_string()
    }

    fn lab_status(&self) -> serde_json::Value {
        let out = self.siege().args(["lab", "status", "--json"]).output().expect("lab status");
        assert!(out.status.success(), "lab status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }

    fn healthy_targets(&self) -> usize {
        let st = self.lab_status();
        st["targets"].as_array().map(|t| t.iter().filter(|t| t["health"] == "healthy").count()).unwrap_or(0)
    }

    fn active_faults(&self) -> Vec<String> {
        let st = self.lab_status();
        st["faults"].as_array().map(|f| f.iter().map(|x| x.to_string()).collect()).unwrap_or_default()
    }

    /// Writes a scenario file into the home and returns its path.
    fn scenario(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.path().join(format!("{name}.yaml"));
        std::fs::write(&p, yaml).expect("write scenario");
        p
    }

    /// Processes started with this home in their environment (the lab and its children).
    fn processes(&self) -> Vec<u32> {
        let needle = format!("SIEGE_HOME={}", self.path().display());
        let mut pids = vec![];
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            if pid == std::process::id() || !pid_alive(pid) {
                continue;
            }
            if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ"))
                && env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
            {
                pids.push(pid);
            }
        }
        pids
    }

    fn assert_no_processes_left(&self) {
        let left = wait_for(Duration::from_secs(10), || {
            let p = self.processes();
            p.is_empty().then_some(())
        });
        assert!(left.is_some(), "processes left behind: {:?}", self.processes());
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.siege().args(["lab", "down"]).output();
        for pid in self.processes() {
            kill_9(pid);
        }
    }
}

fn kill_9(pid: u32) {
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The single report directory of a run in `home`.
fn report_dir(home: &Home) -> PathBuf {
    crate::common::only_report_dir(&home.reports())
}

fn report_json(home: &Home) -> serde_json::Value {
    crate::common::read_report_json(&report_dir(home))
}

/// Spawns `siege run`, returning the child once a stderr line contains `marker`, with the lines
/// seen so far and a receiver for the rest.
fn run_until(home: &Home, scenario: &Path, marker: &str) -> (Child, Vec<String>, std::sync::mpsc::Receiver<String>) {
    run_until_with(home, scenario, marker, &[])
}

/// [`run_until`] with extra environment variables.
fn run_until_with(
    home: &Home,
    scenario: &Path,
    marker: &str,
    env: &[(&str, &str)],
) -> (Child, Vec<String>, std::sync::mpsc::Receiver<String>) {
    let mut child = home
        .siege()
        .envs(env.iter().copied())
        .arg("run")
        .arg(scenario)
        .arg("--reports")
        .arg(home.reports())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn siege run");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = vec![];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let hit = line.contains(marker);
                seen.push(line);
                if hit {
                    return (child, seen, rx);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("never saw {marker:?}; output:\n{}", seen.join("\n"));
}

fn kill9(child: &mut Child) {
    kill_9(child.id());
    let _ = child.wait();
}

/// A latency fault on every task of a lab started separately, for `secs` seconds.
fn latency_scenario(control: &str, delay: &str, secs: u32, stop: &str, timeout: &str) -> String {
    format!(
        r#"name: slow
target:
  lab: {{ service: api, tasks: 3, control: "{control}" }}
load: {{ url: /, rate: 50/s, duration: {duration}s, timeout: {timeout} }}
steady_state: {{ error_rate: "< 5%" }}
faults:
  - {{ type: latency, at: 7s, for: {secs}s, select: 100%, delay: {delay}, jitter: 0ms }}
stop: [ "{stop}" ]
recovery: {{ within: 20s, hold: 5s }}
"#,
        duration = 7 + secs + 25
    )
}

#[test]
fn plan_prints_the_timeline_and_starts_nothing() {
    let home = Home::new();
    let out = home.siege().args(["plan", "scenarios/task-kill.yaml"]).output().expect("plan");
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("inject task-kill (task-kill): 2 of the 3 tasks"), "{s}");
    assert!(s.contains("steady-state gate"), "{s}");
    // The manual catalog follows the timeline, numbered from 1, and is not on the timeline.
    let catalog = s.find("manual catalog (never on the timeline").expect("manual catalog");
    assert!(catalog > s.find("load ends").unwrap(), "{s}");
    assert!(s[catalog..].contains("\n   1. kill-one (task-kill): stop 1 task (SIGKILL on the lab), at once"), "{s}");
    assert!(
        s[catalog..].contains(
            "\n   2. slow-one (latency): delay every response of 1 task by 300ms, for 15s from its injection"
        ),
        "{s}"
    );
    assert!(!s[..catalog].contains("kill-one") && !s[..catalog].contains("slow-one"), "{s}");
    assert!(s.contains("nothing was injected"), "{s}");
    assert!(home.processes().is_empty());
}

#[test]
fn plan_replays_any_seed_a_report_prints() {
    let home = Home::new();
    let max = u64::MAX.to_string();
    let yaml = std::fs::read_to_string(crate::common::repo_root().join("scenarios/task-kill.yaml")).expect("scenario");
    let yaml: String = yaml
        .lines()
        .filter(|l| !l.starts_with("seed:") && !l.starts_with("runbook:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let p = home.scenario("seeded", &format!("seed: {max}\n{yaml}"));
    let out = home.siege().arg("plan").arg(&p).output().expect("plan");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("seed {max}")), "{}", text(&out));
    let big = ((1u64 << 63) + 5).to_string();
    let out = home.siege().args(["plan", "scenarios/task-kill.yaml", "--seed", &big]).output().expect("plan");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("seed {big}")), "{}", text(&out));
}

#[test]
fn run_of_an_invalid_scenario_exits_3_before_touching_anything() {
    let home = Home::new();
    let p = home.scenario("bad", "name: bad\nload: { url: /, rate: fast }\n");
    let out = home.run(&p);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("bad.yaml:2:"), "{}", text(&out));
    assert!(!home.reports().exists());
    assert!(home.processes().is_empty());
}

#[test]
fn recover_with_nothing_to_do_says_so() {
    let home = Home::new();
    let out = home.siege().arg("recover").output().expect("recover");
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("nothing to recover"), "{}", text(&out));
}

#[test]
fn heavy_steady_state_not_met_before_faults_exits_4_and_injects_nothing() {
    let home = Home::new();
    let p = home.scenario(
        "gate",
        r#"name: gate
target: { lab: { service: api, tasks: 3 } }
load: { url: /, rate: 20/s, duration: 30s }
steady_state: { p50: "< 0.1ms" }
faults: [ { type: task-kill, at: 7s, select: 1 } ]
recovery: { within: 10s, hold: 5s }
"#,
    );
    let out = home.run(&p);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(4), "{s}");
    assert!(s.contains("(want < 0.1ms)"), "{s}");
    assert!(!s.contains("fault injected"), "{s}");
    let r = report_json(&home);
    assert_eq!(r["verdict"]["outcome"], "precondition-failed");
    // The planned fault is listed, never injected.
    let faults = r["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 1, "{r}");
    assert_eq!(faults[0]["type"], "task-kill");
    assert!(faults[0]["injected_s"].is_null() && faults[0]["reverted_s"].is_null(), "{r}");
    let md = std::fs::read_to_string(report_dir(&home).join("report.md")).expect("report.md");
    assert!(md.contains("| not injected |"), "{md}");
    home.assert_no_processes_left();
}

#[test]
fn heavy_first_fault_at_recovery_hold_passes_the_gate() {
    let home = Home::new();
    // `siege validate` accepts a first fault at exactly `recovery.hold`: the run must too.
    let fault = "{ type: latency, at: 5s, for: 2s, select: 1, delay: 5ms }";
    let yaml = format!(
        "name: edge\nload: {{ url: /, rate: 20/s, duration: 16s }}\nsteady_state: {{ error_rate: \"< 50%\" }}\nfaults: [ {fault} ]\nrecovery: {{ within: 4s, hold: 5s }}\n"
    );
    let p = home.scenario("edge", &yaml);
    let check = home.siege().arg("validate").arg(&p).output().expect("validate");
    assert!(check.status.success(), "{}", text(&check));
    let out = home.run(&p);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    let r = report_json(&home);
    assert_eq!(r["verdict"]["outcome"], "passed", "{r}");
    let injected = r["faults"][0]["injected_s"].as_f64().expect("injected");
    assert!((5.0..6.0).contains(&injected), "injected at {injected}");
    assert_eq!(r["steady_state"][0]["before_ok"], true, "{r}");
}

#[test]
fn heavy_stop_condition_aborts_reverts_and_leaves_the_lab_healthy() {
    let home = Home::new();
    let control = home.lab_up();
    // 3 s of added latency against a 1 s timeout: every request fails until the stop trips.
    let p = home.scenario("stop", &latency_scenario(&control, "3s", 40, "error_rate > 50% for 3s", "1s"));
    let started = std::time::Instant::now();
    let out = home.run(&p);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(2), "{s}");
    assert!(started.elapsed() < Duration::from_secs(30), "the abort cut the 72 s run short");
    assert!(s.contains("STOP CONDITION: error_rate > 50% for 3s"), "{s}");
    assert!(s.contains("fault reverted: latency"), "{s}");
    assert!(home.active_faults().is_empty(), "{:?}", home.active_faults());
    assert!(wait_for(Duration::from_secs(10), || (home.healthy_targets() == 3).then_some(())).is_some());
    let r = report_json(&home);
    assert_eq!(r["verdict"]["outcome"], "aborted");
    assert!(r["faults"][0]["reverted_s"].is_number(), "{r}");
    assert!(std::fs::read_dir(home.path().join("journal")).map(|d| d.count()).unwrap_or(0) == 0, "journal removed");
}

#[test]
fn heavy_kill9_then_recover_reverts_the_fault_on_a_separate_lab() {
    let home = Home::new();
    let control = home.lab_up();
    let p = home.scenario("slow", &latency_scenario(&control, "200ms", 50, "error_rate > 90% for 30s", "2s"));
    let (mut child, _, _) = run_until(&home, &p, "fault injected: latency");
    // While the run is alive (its journal names its process by pid and start time), recover
    // leaves it alone.
    let out = home.siege().arg("recover").output().expect("recover during the run");
    assert!(text(&out).contains(&format!("is still running (pid {}); left alone", child.id())), "{}", text(&out));
    assert!(!home.active_faults().is_empty());
    kill9(&mut child);
    assert!(!home.active_faults().is_empty(), "the killed run left its fault active");

    let out = home.siege().arg("recover").output().expect("recover");
    let s = text(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("reverted latency (latency)"), "{s}");
    assert!(home.active_faults().is_empty(), "{:?}", home.active_faults());

    // Idempotent: a second recover has nothing left to do.
    let out = home.siege().arg("recover").output().expect("recover again");
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("nothing to recover"), "{}", text(&out));
}

#[test]
fn heavy_kill9_of_a_run_takes_its_own_lab_down_with_it() {
    let home = Home::new();
    let p = home.scenario(
        "own",
        r#"name: own
target: { lab: { service: api, tasks: 3 } }
load: { url: /, rate: 50/s, duration: 70s }
steady_state: { error_rate: "< 5%" }
faults: [ { type: latency, at: 7s, for: 40s, select: 1, delay: 100ms } ]
recovery: { within: 10s, hold: 5s }
"#,
    );
    let (mut child, _, _) = run_until(&home, &p, "fault injected: latency");
    assert!(home.processes().len() >= 6, "lab, 3 tasks, 2 DB nodes: {:?}", home.processes());
    kill9(&mut child);
    home.assert_no_processes_left();
    let out = home.siege().arg("recover").output().expect("recover");
    let s = text(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("its lab ended with it"), "{s}");
    let again = home.siege().arg("recover").output().expect("recover again");
    assert!(text(&again).contains("nothing to recover"), "{}", text(&again));
}

#[test]
fn heavy_sigterm_reverts_and_reports_aborted() {
    let home = Home::new();
    let control = home.lab_up();
    let p = home.scenario("term", &latency_scenario(&control, "200ms", 50, "error_rate > 90% for 30s", "2s"));
    let (mut child, _, _) = run_until(&home, &p, "fault injected: latency");
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(2));
    assert!(home.active_faults().is_empty(), "{:?}", home.active_faults());
    let r = report_json(&home);
    assert_eq!(r["verdict"]["outcome"], "aborted");
    assert!(r["verdict"]["reason"].as_str().unwrap_or("").contains("SIGTERM"), "{r}");
    assert_eq!(r["verdict"]["interrupted_by"], "SIGTERM", "{r}");
    let md = std::fs::read_to_string(report_dir(&home).join("report.md")).expect("report.md");
    let mttr = md.lines().find(|l| l.contains("Time to restore")).expect("MTTR row");
    assert!(mttr.contains("n/a: interrupted by SIGTERM"), "{mttr}");
    assert!(!md.contains("stop condition"), "{md}");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the failpoint exists in debug builds only")]
fn heavy_second_ctrl_c_cuts_a_slow_revert_short_and_still_reverts() {
    let home = Home::new();
    let control = home.lab_up();
    let p = home.scenario("twice", &latency_scenario(&control, "200ms", 50, "error_rate > 90% for 30s", "2s"));
    // The revert waits 30 s (a slow AWS revert), long enough for the operator to lose patience.
    let (mut child, _, lines) =
        run_until_with(&home, &p, "fault injected: latency", &[("SIEGE_FAILPOINT", "slow-revert")]);
    let pid = child.id() as i32;
    let first = std::time::Instant::now();
    // SAFETY: signals the child this test spawned.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let mut rest = vec![];
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(10)) {
        let reverting = l.contains("phase: reverting");
        rest.push(l);
        if reverting {
            break;
        }
    }
    assert!(rest.iter().any(|l| l.contains("phase: reverting")), "{rest:#?}");
    // Time passes on purpose: the revert must still be waiting after it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!home.active_faults().is_empty(), "the revert is still waiting: {rest:#?}");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = child.wait().expect("wait");
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(10)) {
        rest.push(l);
    }
    assert!(rest.iter().any(|l| l.contains("SIGINT (Ctrl-C) again: skipping waits")), "{rest:#?}");
    assert!(first.elapsed() < Duration::from_secs(20), "the second Ctrl-C cut the 30 s wait short");
    assert_eq!(status.code(), Some(2), "{rest:#?}");
    assert!(home.active_faults().is_empty(), "{:?}", home.active_faults());
    let r = report_json(&home);
    assert_eq!(r["verdict"]["outcome"], "aborted");
    assert!(r["verdict"]["reason"].as_str().unwrap_or("").contains("SIGINT"), "{r}");
    assert!(r["faults"][0]["reverted_s"].is_number(), "{r}");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the failpoint exists in debug builds only")]
fn heavy_panic_in_the_engine_still_reverts_from_the_journal() {
    let home = Home::new();
    let control = home.lab_up();
    let p = home.scenario("panics", &latency_scenario(&control, "200ms", 50, "error_rate > 90% for 30s", "2s"));
    let out = home
        .siege()
        .env("SIEGE_FAILPOINT", "after-inject")
        .arg("run")
        .arg(&p)
        .arg("--reports")
        .arg(home.reports())
        .output()
        .expect("run siege");
    let s = text(&out);
    assert_eq!(out.status.code(), Some(70), "{s}");
    assert!(s.contains("failpoint after-inject"), "the panic itself is shown: {s}");
    assert!(s.contains("reverting from the journal"), "{s}");
    assert!(s.contains("reverted latency (latency)"), "{s}");
    assert!(home.active_faults().is_empty(), "{:?}", home.active_faults());
    assert!(home.lab_status()["lease"].is_null(), "the lease outlived the run: {s}");
    let journal = home.path().join("journal");
    assert_eq!(std::fs::read_dir(&journal).expect("the run kept a journal").count(), 0, "journal closed");
}

/// Runs a shipped scenario on its own lab; checks the exit code, the report files and that
/// nothing is left running.
fn shipped(name: &str, expected: i32) -> (Home, String) {
    let home = Home::new();
    let out = home.run(Path::new(&format!("scenarios/{name}.yaml")));
    let s = text(&out);
    assert_eq!(out.status.code(), Some(expected), "{name}:\n{s}");
    let dir = report_dir(&home);
    for f in ["report.md", "report.json", "junit.xml"] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    home.assert_no_processes_left();
    (home, s)
}

#[test]
fn heavy_scenario_task_kill_passes() {
    let (home, _) = shipped("task-kill", 0);
    let r = report_json(&home);
    assert_eq!(r["faults"][0]["targets"].as_array().map(Vec::len), Some(2), "50% of 3 tasks");
    assert!(r["timings"]["time_to_recover_s"].is_number());
    // The balancer's own view and the tasks' CPU are in every window once the lab has a second
    // of metrics; the balancer counts at least siege's load.
    let windows = r["windows"].as_array().unwrap();
    for w in &windows[2..] {
        assert!(w["cpu_percent"].is_number(), "{w}");
        assert!(w["lb_rps"].as_f64().is_some_and(|n| n > 0.0), "{w}");
        assert!(w["lb_5xx_rate"].is_number(), "{w}");
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let lb = median(windows.iter().filter_map(|w| w["lb_rps"].as_f64()).collect());
    let ours = median(windows.iter().filter_map(|w| w["requests"].as_f64()).collect());
    assert!((lb - ours).abs() <= ours * 0.1, "balancer {lb} req/s, load {ours} req/s");
}

#[test]
fn heavy_scenario_cpu_stress_passes() {
    shipped("cpu-stress", 0);
}

#[test]
fn heavy_scenario_latency_passes() {
    shipped("latency", 0);
}

#[test]
fn heavy_scenario_db_failover_passes() {
    shipped("db-failover", 0);
}

#[test]
fn heavy_scenario_traffic_spike_passes() {
    shipped("traffic-spike", 0);
}

#[test]
fn heavy_scenario_secret_drift_redeploy_passes() {
    let (home, _) = shipped("secret-drift-redeploy", 0);
    // The drift's outage runs from its first broken second until the redeploy's new tasks
    // serve; its disruption ended with the redeploy, which has no outage of its own (the
    // service was broken when it came) and the same time to restore, the run's.
    let r = report_json(&home);
    let (drift, redeploy) = (&r["faults"][0]["effect"], &r["faults"][1]["effect"]);
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("a number: {r}"));
    let (broken, restored) = (num(&drift["broken_s"]), num(&drift["restored_s"]));
    let redeployed = num(&r["faults"][1]["injected_s"]);
    assert!(broken >= 20.0 && broken < redeployed && restored > redeployed, "{drift}");
    assert_eq!(num(&drift["outage_s"]), restored - broken, "{drift}");
    assert_eq!(num(&drift["disruption_end_s"]), redeployed, "{drift}");
    assert!((num(&drift["time_to_restore_s"]) - (restored - redeployed)).abs() < 0.06, "{drift}");
    assert_eq!(redeploy["already_broken"], true, "{redeploy}");
    assert_eq!(redeploy["time_to_restore_s"], drift["time_to_restore_s"], "{redeploy}");
    let run = num(&r["timings"]["time_to_recover_s"]);
    assert!((run - num(&drift["time_to_restore_s"])).abs() <= 0.1, "{}", r["timings"]);
    // What the windows show: broken at `broken`, steady for the hold from `restored`.
    let steady =
        |s: f64| r["windows"].as_array().unwrap().iter().find(|w| w["second"] == s as u64).unwrap()["steady"].clone();
    assert_eq!(steady(broken), false);
    assert!((0..5).all(|k| steady(restored + f64::from(k)) == true), "hold 5s from {restored}");
    // Detected by the first failed request of its first broken second.
    let drifted = num(&r["faults"][0]["injected_s"]);
    let detected = drifted + num(&drift["detected_after_s"]);
    assert!(detected >= broken - 2.0 && detected < broken + 1.0, "{drift}");
}

#[test]
fn heavy_scenario_secret_drift_fails_and_says_why() {
    let (home, out) = shipped("secret-drift", 1);
    let md = std::fs::read_to_string(report_dir(&home).join("report.md")).expect("report.md");
    assert!(md.contains("FAILED"), "{md}");
    assert!(md.contains("error_rate"), "the verdict names the broken check:\n{md}");
    assert!(out.contains("FAILED: steady state not restored"), "{out}");
}

#[test]
fn heavy_no_secret_value_reaches_any_output() {
    let home = Home::new();
    let control = home.lab_up();
    let password_of = |pid: u32| -> Option<String> {
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        env.split(|b| *b == 0).find_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.strip_prefix("SIEGE_LAB_DB_PASSWORD=").map(str::to_string)
        })
    };
    let mut secrets: Vec<String> = vec![];
    // Adds the passwords the lab's processes hold now; how many were seen in all.
    let mut collect = |home: &Home| {
        for pid in home.lab_status()["child_pids"].as_array().into_iter().flatten().filter_map(|p| p.as_u64()) {
            if let Some(pw) = password_of(pid as u32)
                && !secrets.contains(&pw)
            {
                secrets.push(pw);
            }
        }
        secrets.len()
    };
    collect(&home);
    let p = home.scenario(
        "drift",
        &format!(
            r#"name: drift
target: {{ lab: {{ service: api, tasks: 3, control: "{control}" }} }}
load: {{ url: /db, rate: 30/s, duration: 40s }}
steady_state: {{ error_rate: "< 1%" }}
faults:
  - {{ type: secret-drift, at: 7s }}
  - {{ type: redeploy, at: 12s }}
recovery: {{ within: 25s, hold: 3s }}
"#
        ),
    );
    let (mut child, mut lines, rest) = run_until(&home, &p, "fault injected: redeploy");
    // The redeployed tasks hold the rotated secret: seen once one of them has started.
    let rotated = wait_for(Duration::from_secs(30), || (collect(&home) >= 2).then_some(()));
    assert!(rotated.is_some(), "no task with the rotated password within 30s");
    child.wait().expect("run");
    lines.extend(rest.iter());
    assert!(secrets.len() >= 2, "the old and the rotated password were seen: {}", secrets.len());
    let mut outputs = lines.join("\n");
    for f in std::fs::read_dir(report_dir(&home)).expect("report dir").flatten() {
        outputs.push_str(&std::fs::read_to_string(f.path()).unwrap_or_default());
    }
    let status = home.siege().args(["lab", "status", "--json"]).output().expect("status");
    outputs.push_str(&String::from_utf8_lossy(&status.stdout));
    for s in &secrets {
        assert!(!outputs.contains(s.as_str()), "a secret value leaked into an output");
    }
}

#[test]
fn heavy_lab_still_replaces_tasks_after_its_binary_file_is_replaced() {
    // A rebuild or an upgrade during a game day replaces the binary the lab re-executes.
    let home = Home::new();
    let copy = home.path().join("siege-copy");
    std::fs::copy(crate::common::siege_bin(), &copy).expect("copy siege");
    let out =
        Command::new(&copy).args(["lab", "up", "--detach"]).env("SIEGE_HOME", home.path()).output().expect("lab up");
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_file(&copy).expect("remove the binary");
    let st = home.lab_status();
    let pid = st["service"]["tasks"][0]["pid"].as_u64().expect("task pid") as u32;
    kill_9(pid);
    let replaced = wait_for(Duration::from_secs(20), || {
        let st = home.lab_status();
        let tasks = st["service"]["tasks"].as_array()?.clone();
        let fresh = tasks.iter().all(|t| t["pid"].as_u64() != Some(u64::from(pid)));
        (fresh && tasks.len() == 3 && home.healthy_targets() == 3).then_some(())
    });
    assert!(replaced.is_some(), "the killed task was not replaced: {}", home.lab_status());
}

#[test]
fn a_bad_lease_time_to_live_in_the_environment_is_a_usage_error_before_anything_starts() {
    let home = Home::new();
    for cmd in [&["run", "scenarios/task-kill.yaml"][..], &["plan", "scenarios/task-kill.yaml"], &["recover"]] {
        let out = home.siege().env("SIEGE_LEASE_TTL", "forever").args(cmd).output().expect("siege");
        let s = text(&out);
        assert_eq!(out.status.code(), Some(3), "{cmd:?}: {s}");
        assert!(s.contains("SIEGE_LEASE_TTL=forever is not a duration from 1s to 1h"), "{cmd:?}: {s}");
    }
    // Nothing was started: no lab log, no journal.
    assert!(!home.path().join("labs").exists() && !home.path().join("journal").exists());
}

#[test]
fn interactive_without_a_terminal_is_a_usage_error_before_anything_starts() {
    let home = Home::new();
    let out = home
        .siege()
        .args(["run", "--interactive", "scenarios/task-kill.yaml"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("siege");
    let s = text(&out);
    assert_eq!(out.status.code(), Some(3), "{s}");
    assert!(s.contains("--interactive needs a terminal on stdin: stdin is not a terminal"), "{s}");
    assert!(!home.path().join("labs").exists() && !home.path().join("journal").exists());
}

/// Runs `yaml` on `lab`; it must pass. Its report.json.
fn passing_run(lab: &crate::lab::TestLab, yaml: &str) -> serde_json::Value {
    let path = lab.home.path().join("scenario.yaml");
    std::fs::write(&path, yaml).unwrap();
    let reports = lab.home.path().join("reports");
    let out = lab.siege().arg("run").arg(&path).arg("--reports").arg(&reports).output().expect("siege run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dir = crate::common::only_report_dir(&reports);
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// A lab whose health checks notice a dead task later than `recovery.hold`: the steady state
/// (healthy targets) breaks seconds after the kill. That break is the kill's outage, and the
/// run's time to restore waits for it rather than counting the steady seconds before it.
#[test]
fn a_kill_the_balancer_notices_late_is_measured_as_an_outage() {
    let lab =
        crate::lab::TestLab::up(&["--health-interval", "2s", "--unhealthy-threshold", "2", "--placement-delay", "4s"]);
    let yaml = format!(
        "name: late\ntarget:\n  lab: {{ service: api, tasks: 3, control: \"{}\" }}\n\
         load: {{ url: /, rate: 20/s, duration: 30s, timeout: 2s }}\n\
         steady_state: {{ error_rate: \"< 50%\", healthy_targets: \">= 3\" }}\n\
         faults: [ {{ type: task-kill, name: kill, at: 6s, select: 1 }} ]\nrecovery: {{ within: 20s, hold: 2s }}\n",
        lab.control
    );
    let r = passing_run(&lab, &yaml);
    let (kill, timings) = (&r["faults"][0], &r["timings"]);
    let at = kill["injected_s"].as_f64().expect("injected");
    let e = &kill["effect"];
    let broken = e["broken_s"].as_f64().unwrap_or_else(|| panic!("the kill broke the steady state: {e}"));
    let restored = e["restored_s"].as_f64().unwrap_or_else(|| panic!("restored: {e}"));
    assert!(broken >= at.floor() + 1.0, "the balancer noticed after the kill's own second: {e}");
    assert!(restored > broken && e["outage_s"].as_f64() == Some(restored - broken), "{e}");
    // Not 0 s: restored after the late break, measured from the kill.
    let ttr = timings["time_to_recover_s"].as_f64().expect("a time to restore");
    assert!(ttr >= restored - at - 1.0 && ttr >= 2.0, "{timings} {e}");
    let end = e["disruption_end_s"].as_f64().expect("its disruption's end");
    let own = e["time_to_restore_s"].as_f64().expect("its time to restore");
    assert!((own - (restored - end)).abs() < 0.06 && (end - at).abs() < 0.06, "{e}");
}

/// On a real lab, a kill (its dead target answers 502 at once) and a latency fault are each
/// detected from the first request due after them that broke the steady state: below a second,
/// where the start of the broken second that held the injection said 0.
#[test]
fn a_kill_and_a_latency_fault_are_detected_from_the_requests_below_a_second() {
    let lab = crate::lab::TestLab::up(&[]);
    let yaml = format!(
        "name: detect\ntarget:\n  lab: {{ service: api, tasks: 3, control: \"{}\" }}\n\
         load: {{ url: /, rate: 50/s, duration: 28s, timeout: 2s }}\n\
         steady_state: {{ error_rate: \"< 5%\", p95: \"< 150ms\" }}\n\
         faults:\n  - {{ type: task-kill, name: kill, at: 4s, select: 1 }}\n\
         \x20 - {{ type: latency, name: slow, at: 15s, for: 3s, select: 1, delay: 300ms }}\n\
         recovery: {{ within: 8s, hold: 2s }}\n",
        lab.control
    );
    let r = passing_run(&lab, &yaml);
    for (i, name) in ["kill", "slow"].into_iter().enumerate() {
        let f = &r["faults"][i];
        assert_eq!(f["name"], name);
        let d = f["effect"]["detected_after_s"].as_f64().unwrap_or_else(|| panic!("{name} detected: {f}"));
        assert!((0.0..0.5).contains(&d), "{name}: {f}");
    }
    let ttd = r["timings"]["time_to_detect_s"].as_f64().expect("detected");
    assert_eq!(Some(ttd), r["faults"][0]["effect"]["detected_after_s"].as_f64(), "{}", r["timings"]);
}
