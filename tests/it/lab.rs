//! Integration tests: the lab, with real processes and sockets. Each test starts its own lab
//! through the real binary (`siege lab up --detach` with its own `SIEGE_HOME`) and stops it,
//! checking by PID that nothing is left behind.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{self, pid_alive, wait_for};

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
fn http(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

fn status_of(url: &str) -> u16 {
    http("GET", url, None, None).map(|(s, _)| s).unwrap_or(0)
}

/// A lab started with `siege lab up --detach` in its own state directory; stopped on drop.
pub(crate) struct TestLab {
    pub(crate) home: tempfile::TempDir,
    pub(crate) control: String,
    token: String,
    balancer: String,
    pid: u32,
}

impl TestLab {
    pub(crate) fn up(extra: &[&str]) -> TestLab {
        let home = tempfile::tempdir().expect("tempdir");
        let out = common::siege()
            .env("SIEGE_HOME", home.path())
            .args(["lab", "up", "--detach"])
            .args(extra)
            .output()
            .expect("run siege lab up");
        assert!(out.status.success(), "lab up failed: {}", String::from_utf8_lossy(&out.stderr));
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(home.path().join("lab.json")).expect("lab.json"))
                .expect("json");
        TestLab {
            control: file["control_url"].as_str().expect("control_url").into(),
            token: file["token"].as_str().expect("token").into(),
            balancer: file["balancer_url"].as_str().expect("balancer_url").into(),
            pid: file["pid"].as_u64().expect("pid") as u32,
            home,
        }
    }

    pub(crate) fn siege(&self) -> Command {
        let mut c = common::siege();
        c.env("SIEGE_HOME", self.home.path());
        c
    }

    pub(crate) fn state(&self) -> Value {
        let (s, b) = http("GET", &format!("{}/v1/state", self.control), Some(&self.token), None).expect("state");
        assert_eq!(s, 200, "{b}");
        serde_json::from_str(&b).expect("state json")
    }

    pub(crate) fn post(&self, path: &str, body: Value) -> Value {
        let (s, b) = http("POST", &format!("{}{path}", self.control), Some(&self.token), Some(&body)).expect("post");
        assert_eq!(s, 200, "{path}: {b}");
        serde_json::from_str(&b).expect("post json")
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (s, b) = http("GET", &format!("{}{path}", self.balancer), None, None).unwrap_or((0, String::new()));
        (s, serde_json::from_str(&b).unwrap_or(Value::Null))
    }

    fn healthy(&self) -> Vec<String> {
        self.state()["targets"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter(|t| t["health"] == "healthy")
                    .map(|t| t["id"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn task_ids(&self) -> Vec<String> {
        self.state()["service"]["tasks"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter(|t| t["status"] == "running")
                    .map(|t| t["id"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn all_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.state()["child_pids"]
            .as_array()
            .expect("pids")
            .iter()
            .map(|p| p.as_u64().unwrap_or(0) as u32)
            .collect();
        pids.push(self.pid);
        pids
    }

    fn down(&self) {
        let out = self.siege().args(["lab", "down"]).output().expect("lab down");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.siege().args(["lab", "down"]).output();
        if pid_alive(self.pid) {
            // SAFETY: a plain kill of the lab this test started; its children die with it.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
    }
}

#[test]
fn killed_task_is_replaced_and_back_in_rotation() {
    let lab = TestLab::up(&[]);
    let before = lab.state();
    let victim = before["service"]["tasks"][0].clone();
    let victim_id = victim["id"].as_str().unwrap().to_string();
    let victim_pid = victim["pid"].as_u64().unwrap() as u32;
    let t0 = Instant::now();
    let r = lab.post("/v1/tasks/kill", json!({ "tasks": [victim_id], "signal": "SIGKILL" }));
    assert_eq!(r["tasks"], json!([victim_id]));
    assert!(wait_for(Duration::from_secs(2), || (!pid_alive(victim_pid)).then_some(())).is_some());
    // A replacement with another id is placed, registered and healthy: three in rotation again.
    let replaced = wait_for(Duration::from_secs(15), || {
        let h = lab.healthy();
        (h.len() == 3 && !h.contains(&victim_id)).then_some(h)
    })
    .expect("the killed task was not replaced within 15s");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(10), "replacement took {took:?}");
    let new_id =
        replaced.iter().find(|id| !before.to_string().contains(&format!("\"{id}\""))).expect("a new task").clone();
    // Round robin reaches the new task through the balancer.
    let seen = (0..6).filter_map(|_| lab.get("/").1["task"].as_str().map(String::from)).collect::<Vec<_>>();
    assert!(seen.contains(&new_id), "new task {new_id} not in rotation: {seen:?}");
    assert!(!seen.contains(&victim_id));
    let events = lab.state()["events"].to_string();
    assert!(events.contains("stopped unexpectedly"), "{events}");
    lab.down();
}

#[test]
fn balancer_answers_502_while_a_dead_target_is_in_rotation_then_503() {
    // A long placement delay keeps the dead targets registered: 502 until the health checks
    // notice (2 × 1s), then 503 (no healthy target) until replacements are healthy.
    let lab = TestLab::up(&["--placement-delay", "6s"]);
    let ids = lab.task_ids();
    lab.post("/v1/tasks/kill", json!({ "tasks": ids, "signal": "SIGKILL" }));
    assert_eq!(status_of(&format!("{}/", lab.balancer)), 502);
    let got503 = wait_for(Duration::from_secs(5), || (status_of(&format!("{}/", lab.balancer)) == 503).then_some(()));
    assert!(got503.is_some(), "no 503 once every target is unhealthy");
    assert!(lab.healthy().is_empty());
    let back = wait_for(Duration::from_secs(20), || (status_of(&format!("{}/", lab.balancer)) == 200).then_some(()));
    assert!(back.is_some(), "service did not recover");
    // Metrics named like ALB's count both.
    let metrics = wait_for(Duration::from_secs(3), || {
        let (_, b) = http("GET", &format!("{}/v1/metrics", lab.control), Some(&lab.token), None)?;
        let m: Vec<Value> = serde_json::from_str(&b).ok()?;
        let sum = |k: &str| m.iter().map(|s| s[k].as_u64().unwrap_or(0)).sum::<u64>();
        (sum("HTTPCode_ELB_502_Count") > 0 && sum("HTTPCode_ELB_503_Count") > 0).then_some(m)
    })
    .expect("502 and 503 counted in the metrics");
    let last = metrics.last().unwrap();
    for k in [
        "RequestCount",
        "HTTPCode_ELB_5XX_Count",
        "HTTPCode_Target_5XX_Count",
        "TargetResponseTime",
        "HealthyHostCount",
        "UnHealthyHostCount",
    ] {
        assert!(last.get(k).is_some(), "metric {k} missing: {last}");
    }
    lab.down();
}

#[test]
fn balancer_answers_504_when_a_target_is_too_slow() {
    let lab = TestLab::up(&["--target-timeout", "300ms", "--health-timeout", "900ms"]);
    let ids = lab.task_ids();
    lab.post("/v1/tasks/latency", json!({ "tasks": ids, "delay_ms": 600, "jitter_ms": 0 }));
    let t0 = Instant::now();
    assert_eq!(status_of(&format!("{}/", lab.balancer)), 504);
    assert!(t0.elapsed() < Duration::from_millis(600));
    lab.post("/v1/tasks/clear", json!({ "what": "latency" }));
    assert_eq!(status_of(&format!("{}/", lab.balancer)), 200);
    lab.down();
}

#[test]
fn health_thresholds_are_honoured() {
    let lab = TestLab::up(&[
        "--health-interval",
        "300ms",
        "--health-timeout",
        "150ms",
        "--healthy-threshold",
        "3",
        "--unhealthy-threshold",
        "4",
    ]);
    let id = lab.task_ids()[0].clone();
    let t0 = Instant::now();
    lab.post("/v1/tasks/latency", json!({ "tasks": [id], "delay_ms": 400 }));
    wait_for(Duration::from_secs(5), || (!lab.healthy().contains(&id)).then_some(())).expect("never marked unhealthy");
    let down = t0.elapsed();
    // Four failed checks 300ms apart: at least three intervals after the first failure.
    assert!(down >= Duration::from_millis(850), "unhealthy after {down:?}, before 4 failed checks");
    assert!(down < Duration::from_secs(4), "unhealthy only after {down:?}");
    // Out of rotation: the balancer does not route to it.
    for _ in 0..6 {
        assert_ne!(lab.get("/").1["task"], json!(id));
    }
    let t1 = Instant::now();
    lab.post("/v1/tasks/clear", json!({ "tasks": [id], "what": "latency" }));
    wait_for(Duration::from_secs(5), || lab.healthy().contains(&id).then_some(())).expect("never healthy again");
    let up = t1.elapsed();
    assert!(up >= Duration::from_millis(550), "healthy after {up:?}, before 3 passed checks");
    lab.down();
}

#[test]
fn db_failover_window_is_observed_from_db() {
    let lab = TestLab::up(&["--failover-outage", "2s"]);
    let (s, v) = lab.get("/db");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"], "db-1");
    let t0 = Instant::now();
    let r = lab.post("/v1/db/failover", json!({}));
    assert_eq!(r["new_writer"], "db-2");
    assert_eq!(lab.state()["db"]["writer"], Value::Null);
    let mut first_fail = None;
    let mut recovered = None;
    while t0.elapsed() < Duration::from_secs(10) {
        let (s, v) = lab.get("/db");
        if s != 200 && first_fail.is_none() {
            first_fail = Some(t0.elapsed());
        }
        if s == 200 && first_fail.is_some() {
            assert_eq!(v["node"], "db-2");
            assert_eq!(v["role"], "writer");
            recovered = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let first_fail = first_fail.expect("/db never failed during the failover");
    let recovered = recovered.expect("/db did not recover after the failover");
    assert!(first_fail < Duration::from_millis(500), "{first_fail:?}");
    assert!(recovered >= Duration::from_millis(1900), "window too short: {recovered:?}");
    assert!(recovered < Duration::from_secs(5), "window too long: {recovered:?}");
    assert_eq!(lab.state()["db"]["writer"], "db-2");
    lab.down();
}

#[test]
fn a_failover_ended_early_does_not_cut_the_next_one_short() {
    let lab = TestLab::up(&[]);
    let outage = json!({ "outage_ms": 3000 });
    lab.post("/v1/db/failover", outage.clone());
    // Time passes on purpose: the first outage is ended a second into its 3 s.
    std::thread::sleep(Duration::from_millis(1000));
    // Ended early, as a revert does: its 3 s timer is still to fire, 2 s from now.
    assert_eq!(lab.post("/v1/db/promote", json!({}))["writer"], "db-2");
    let second = Instant::now();
    assert_eq!(lab.post("/v1/db/failover", outage)["new_writer"], "db-1");
    let mut restored = None;
    while second.elapsed() < Duration::from_secs(8) {
        if lab.state()["db"]["writer"] != Value::Null {
            restored = Some(second.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let restored = restored.expect("the second failover never ended");
    assert!(restored >= Duration::from_millis(2900), "the second 3 s outage ended after {restored:?}");
    assert!(restored < Duration::from_secs(5), "{restored:?}");
    assert_eq!(lab.state()["db"]["writer"], "db-1");
    lab.down();
}

#[test]
fn secret_drift_breaks_db_on_old_tasks_only_until_redeploy() {
    let lab = TestLab::up(&["--placement-delay", "500ms"]);
    assert_eq!(lab.get("/db").0, 200);
    let r = lab.post("/v1/secret/rotate", json!({}));
    assert_eq!(r["current_version"], 2);
    // Every running task still holds v1: /db fails everywhere, other paths still work.
    for _ in 0..6 {
        let (s, v) = lab.get("/db");
        assert_eq!(s, 500, "{v}");
        assert!(v["error"].as_str().unwrap_or("").contains("authentication"), "{v}");
    }
    assert_eq!(lab.get("/").0, 200);
    // A task started now reads v2 and works; the old ones still fail.
    let old = lab.task_ids();
    lab.post("/v1/tasks/kill", json!({ "tasks": [old[0]] }));
    let fresh = wait_for(Duration::from_secs(10), || {
        let st = lab.state();
        st["service"]["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["secret_version"] == 2 && t["health"] == "healthy")
            .cloned()
    })
    .expect("replacement with the new secret");
    let fresh_id = fresh["id"].as_str().unwrap().to_string();
    let mut ok_on = Vec::new();
    for _ in 0..9 {
        let (s, v) = lab.get("/db");
        let task = v["task"].as_str().unwrap_or("").to_string();
        if s == 200 {
            ok_on.push(task);
        } else {
            assert_ne!(task, fresh_id, "the new task failed: {v}");
        }
    }
    assert!(!ok_on.is_empty() && ok_on.iter().all(|t| *t == fresh_id), "{ok_on:?}");
    assert!(lab.state()["faults"].to_string().contains("secret-drift"));
    // Redeploy: every task replaced, min healthy kept, /db works everywhere.
    lab.post("/v1/service/redeploy", json!({}));
    let mut min_healthy = 3;
    let done = wait_for(Duration::from_secs(40), || {
        let st = lab.state();
        let healthy = st["targets"].as_array()?.iter().filter(|t| t["health"] == "healthy").count();
        min_healthy = min_healthy.min(healthy);
        let tasks = st["service"]["tasks"].as_array()?;
        (st["service"]["deploying"] == false && tasks.iter().all(|t| t["secret_version"] == 2) && healthy == 3)
            .then_some(())
    });
    assert!(done.is_some(), "redeploy did not finish: {}", lab.state());
    assert!(min_healthy >= 2, "healthy dropped to {min_healthy} during the redeploy");
    for _ in 0..6 {
        assert_eq!(lab.get("/db").0, 200);
    }
    // Revert: v1 current again and tasks holding v2 replaced; the lab ends healthy.
    lab.post("/v1/secret/restore", json!({ "version": 1, "replace_stale": true }));
    let healed = wait_for(Duration::from_secs(40), || {
        let st = lab.state();
        let tasks = st["service"]["tasks"].as_array()?;
        (st["service"]["deploying"] == false
            && st["secret"]["current_version"] == 1
            && tasks.iter().all(|t| t["secret_version"] == 1)
            && lab.healthy().len() == 3)
            .then_some(())
    });
    assert!(healed.is_some(), "{}", lab.state());
    for _ in 0..6 {
        assert_eq!(lab.get("/db").0, 200);
    }
    lab.down();
}

#[test]
fn latency_is_visible_at_the_balancer() {
    let lab = TestLab::up(&[]);
    // The fastest of three requests, so that a busy machine does not pass for latency.
    let time = |lab: &TestLab| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(lab.get("/").0, 200);
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    assert!(time(&lab) < Duration::from_millis(150));
    let ids = lab.task_ids();
    lab.post("/v1/tasks/latency", json!({ "tasks": ids, "delay_ms": 300, "jitter_ms": 50 }));
    let d = time(&lab);
    assert!(d >= Duration::from_millis(250) && d < Duration::from_secs(2), "{d:?}");
    // The balancer's own metric sees it too. It is the average of a second's responses: keep
    // sending slow requests, so that some second holds none of the fast ones from before.
    let rt = wait_for(Duration::from_secs(6), || {
        assert_eq!(lab.get("/").0, 200);
        let (_, b) = http("GET", &format!("{}/v1/metrics", lab.control), Some(&lab.token), None)?;
        let m: Vec<Value> = serde_json::from_str(&b).ok()?;
        m.iter().filter_map(|s| s["TargetResponseTime"].as_f64()).find(|t| *t >= 0.25)
    });
    assert!(rt.is_some(), "TargetResponseTime did not show the latency");
    assert!(lab.state()["faults"].to_string().contains("latency 300ms"));
    lab.post("/v1/tasks/clear", json!({ "tasks": ids, "what": "latency" }));
    assert!(time(&lab) < Duration::from_millis(150));
    lab.down();
}

#[test]
fn cpu_stress_is_visible_in_task_cpu() {
    let lab = TestLab::up(&[]);
    let ids = lab.task_ids();
    let target = ids[0].clone();
    lab.post("/v1/tasks/stress", json!({ "tasks": [target], "percent": 80, "duration_ms": 20000 }));
    let cpu_of = |st: &Value, id: &str| -> f64 {
        st["service"]["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["id"] == id))
            .map(|t| t["cpu_percent"].as_f64().unwrap_or(0.0))
            .unwrap_or(0.0)
    };
    // The machine may be shared: ask for a clear signal rather than the exact 80%.
    let st = wait_for(Duration::from_secs(10), || {
        let st = lab.state();
        let busy = cpu_of(&st, &target);
        let others = ids[1..].iter().map(|o| cpu_of(&st, o)).fold(0.0, f64::max);
        (busy >= 25.0 && busy >= 5.0 * others.max(1.0)).then_some(st)
    })
    .unwrap_or_else(|| panic!("stressed task CPU not visible: {}", lab.state()["service"]));
    assert!(st["service"]["avg_cpu_percent"].as_f64().unwrap() > 5.0);
    lab.post("/v1/tasks/clear", json!({ "tasks": [target], "what": "stress" }));
    wait_for(Duration::from_secs(6), || (cpu_of(&lab.state(), &target) < 20.0).then_some(()))
        .expect("CPU did not drop after the revert");
    // A stress ends by itself after its duration.
    let other = ids[1].clone();
    lab.post("/v1/tasks/stress", json!({ "tasks": [other], "percent": 100, "duration_ms": 1500 }));
    let stress_of = |st: &Value| {
        st["service"]["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["id"] == other.as_str()))
            .map(|t| t["stress"].clone())
    };
    assert!(stress_of(&lab.state()).is_some_and(|s| !s.is_null()));
    wait_for(Duration::from_secs(8), || {
        let st = lab.state();
        (stress_of(&st).is_some_and(|s| s.is_null()) && cpu_of(&st, &other) < 20.0).then_some(())
    })
    .expect("the stress did not end after its duration");
    lab.down();
}

#[test]
fn sigterm_task_kill_stops_the_task_gracefully_and_it_is_replaced() {
    let lab = TestLab::up(&["--tasks", "2", "--placement-delay", "500ms"]);
    let before = lab.task_ids();
    let id = before[0].clone();
    let r = lab.post("/v1/tasks/kill", json!({ "tasks": [id], "signal": "SIGTERM" }));
    assert_eq!(r["tasks"], json!([id]));
    wait_for(Duration::from_secs(10), || {
        let h = lab.healthy();
        (h.len() == 2 && !h.contains(&id) && h.iter().any(|t| !before.contains(t))).then_some(())
    })
    .expect("not replaced");
    let stopped = format!("task {id} stopped unexpectedly (exit code 0)");
    let events = wait_for(Duration::from_secs(5), || {
        let events = lab.state()["events"].to_string();
        events.contains(&stopped).then_some(events)
    });
    assert!(events.is_some(), "{}", lab.state()["events"]);
    // Only the two documented signals are accepted.
    let body = json!({ "tasks": [lab.task_ids()[0]], "signal": "SIGSTOP" });
    let (s, _) = http("POST", &format!("{}/v1/tasks/kill", lab.control), Some(&lab.token), Some(&body)).unwrap();
    assert_eq!(s, 400);
    lab.down();
}

#[test]
fn control_api_requires_the_token() {
    let lab = TestLab::up(&["--tasks", "1"]);
    let (s, _) = http("GET", &format!("{}/v1/state", lab.control), None, None).unwrap();
    assert_eq!(s, 401);
    let (s, _) = http("POST", &format!("{}/v1/tasks/kill", lab.control), Some("wrong"), Some(&json!({}))).unwrap();
    assert_eq!(s, 401);
    let (s, _) = http("GET", &format!("{}/v1/ping", lab.control), None, None).unwrap();
    assert_eq!(s, 200);
    // The lab file holding the token is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(lab.home.path().join("lab.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "lab.json is readable by others: {mode:o}");
    lab.down();
}

#[test]
fn status_shows_tasks_writer_secret_and_faults() {
    let lab = TestLab::up(&["--tasks", "2"]);
    let id = lab.task_ids()[0].clone();
    lab.post("/v1/tasks/latency", json!({ "tasks": [id], "delay_ms": 100 }));
    let out = lab.siege().args(["lab", "status"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in
        ["service api: 2 running / 2 desired", "writer db-1", "current v1", &format!("latency 100ms ±0ms on {id}")]
    {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let out = lab.siege().args(["lab", "status", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["service"]["running"], 2);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&lab.token));
    lab.down();
    // After down, status says no lab (exit 4) and a second down is harmless.
    let out = lab.siege().args(["lab", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(lab.siege().args(["lab", "down"]).output().unwrap().status.success());
}

#[test]
fn lab_down_leaves_no_process_behind() {
    let lab = TestLab::up(&[]);
    let pids = lab.all_pids();
    assert_eq!(pids.len(), 3 + 2 + 1, "{pids:?}");
    assert!(pids.iter().all(|p| pid_alive(*p)));
    lab.down();
    let gone = wait_for(Duration::from_secs(5), || pids.iter().all(|p| !pid_alive(*p)).then_some(()));
    assert!(gone.is_some(), "left running: {:?}", pids.iter().filter(|p| pid_alive(**p)).collect::<Vec<_>>());
    assert!(!lab.home.path().join("lab.json").exists());
}

#[test]
fn killing_the_supervisor_kills_every_child() {
    let lab = TestLab::up(&["--tasks", "2"]);
    let pids = lab.all_pids();
    // SAFETY: kill -9 of the lab this test started.
    unsafe { libc::kill(lab.pid as i32, libc::SIGKILL) };
    let gone = wait_for(Duration::from_secs(5), || pids.iter().all(|p| !pid_alive(*p)).then_some(()));
    assert!(
        gone.is_some(),
        "children outlived the supervisor: {:?}",
        pids.iter().filter(|p| pid_alive(**p)).collect::<Vec<_>>()
    );
}

#[test]
fn second_lab_up_is_refused_while_one_runs() {
    let lab = TestLab::up(&["--tasks", "1"]);
    let out = lab.siege().args(["lab", "up", "--detach"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    lab.down();
}

/// Sends `/work?ms=N` requests back to back from `threads` threads until `stop`.
fn work_load(
    balancer: &str,
    ms: u32,
    threads: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let url = format!("{balancer}/work?ms={ms}");
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = http("GET", &url, None, None);
                }
            })
        })
        .collect()
}

#[test]
fn heavy_autoscaling_adds_tasks_under_work_load() {
    let lab = TestLab::up(&[
        "--tasks",
        "1",
        "--autoscale-max",
        "3",
        "--autoscale-target",
        "30%",
        "--autoscale-cooldown",
        "2s",
        "--placement-delay",
        "500ms",
    ]);
    assert_eq!(lab.state()["service"]["desired"], 1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = work_load(&lab.balancer, 50, 1, stop.clone());
    let scaled = wait_for(Duration::from_secs(30), || {
        let st = lab.state();
        (st["service"]["desired"].as_u64()? >= 2 && lab.healthy().len() >= 2).then_some(st)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let st = scaled.expect("autoscaling did not add a task under load");
    assert!(st["events"].to_string().contains("autoscaling: average CPU"), "{}", st["events"]);
    lab.down();
}

/// Drives `rate` requests/s at `url` for `secs` over `conns` keep-alive connections, each request
/// timed from its scheduled send time; returns (p50, p99) in microseconds and the error count.
fn open_load(url: &str, rate: u64, secs: u64, conns: usize) -> (u64, u64, u64) {
    use http_body_util::{BodyExt, Empty};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let path = uri.path_and_query().unwrap().to_string();
    rt.block_on(async move {
        let start = tokio::time::Instant::now() + Duration::from_millis(100);
        let total = rate * secs;
        let mut handles = Vec::new();
        for c in 0..conns {
            let (host, path) = (host.clone(), path.clone());
            handles.push(tokio::spawn(async move {
                let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                let mut errors = 0u64;
                let stream = tokio::net::TcpStream::connect(&host).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
                tokio::spawn(conn);
                let mut i = c as u64;
                while i < total {
                    let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                    tokio::time::sleep_until(due).await;
                    let req =
                        http::Request::get(&path).header("host", &host).body(Empty::<bytes::Bytes>::new()).unwrap();
                    match send.send_request(req).await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.into_body().collect().await;
                        }
                        _ => errors += 1,
                    }
                    hist.record(due.elapsed().as_micros() as u64).unwrap();
                    i += conns as u64;
                }
                (hist, errors)
            }));
        }
        let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        let mut errors = 0;
        for h in handles {
            let (h, e) = h.await.unwrap();
            all.add(h).unwrap();
            errors += e;
        }
        (all.value_at_quantile(0.5), all.value_at_quantile(0.99), errors)
    })
}

/// Prints the idle footprint of the default lab and the balancer's added latency at 1,000
/// requests/s. Figures, not assertions: see docs/lab.md.
#[test]
fn heavy_lab_footprint_and_balancer_latency() {
    let lab = TestLab::up(&[]);
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    // Start-up allocations have settled once the processes and their total RSS are the same in
    // two readings half a second apart (a figure, so at worst it is read after 5 s anyway).
    let reading = || {
        let pids = lab.all_pids();
        let total: u64 = pids.iter().map(|p| rss(*p)).sum();
        (pids, total)
    };
    let mut last = reading();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        let now = reading();
        let settled = now == last;
        last = now;
        if settled {
            break;
        }
    }
    let (pids, total) = last;
    println!(
        "lab idle footprint: {} processes, RSS {:.1} MiB (supervisor {:.1} MiB)",
        pids.len(),
        total as f64 / 1024.0,
        rss(lab.pid) as f64 / 1024.0
    );
    let st = lab.state();
    let task_port = st["service"]["tasks"][0]["port"].as_u64().unwrap();
    let direct = format!("http://127.0.0.1:{task_port}/");
    let via = format!("{}/", lab.balancer);
    let (d50, d99, de) = open_load(&direct, 1000, 5, 32);
    let (b50, b99, be) = open_load(&via, 1000, 5, 32);
    println!("direct to one task at 1000 req/s: p50 {d50}us p99 {d99}us errors {de}");
    println!("through the balancer at 1000 req/s: p50 {b50}us p99 {b99}us errors {be}");
    println!("balancer added latency: p50 {}us p99 {}us", b50.saturating_sub(d50), b99.saturating_sub(d99));
    assert_eq!(be, 0);
    lab.down();
}

/// Children of `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

#[test]
fn run_owned_lab_through_the_backend() {
    use siege::backend::Backend;
    use siege::scenario::{Fault, FaultKind, LabTarget, Selection, Target};
    use siege::util::Rng;
    let home = tempfile::tempdir().unwrap();
    // SAFETY: nextest runs each test in its own process; nothing else reads the environment here.
    unsafe {
        std::env::set_var("SIEGE_HOME", home.path());
        std::env::set_var("SIEGE_EXE", common::siege_bin());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let target = Target::Lab(LabTarget { service: "api".into(), tasks: 2, control: None, autoscaling: None });
        let b = Backend::connect(&target, "run-test", &siege::backend::Connection::from_env().unwrap())
            .await
            .expect("connect starts a lab");
        let locator = b.locator();
        assert_eq!(locator["lab"]["owned"], true);
        assert!(locator["lab"].get("token").is_none(), "token journaled: {locator}");
        let lab_pid = *children_of(std::process::id()).first().expect("the lab is our child");
        let mut pids = children_of(lab_pid);
        pids.push(lab_pid);
        assert_eq!(pids.len(), 2 + 2 + 1, "{pids:?}");
        let s = b.sample().await.unwrap();
        assert_eq!((s.healthy_targets, s.running_tasks, s.desired_tasks), (Some(2), Some(2), Some(2)));
        assert_eq!(s.db_writer.as_deref(), Some("db-1"));
        assert!(!s.events.is_empty());
        // The balancer's figures say which second they are of (the report joins them by it).
        let mut s = s;
        for _ in 0..40 {
            if s.lb_rps.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            s = b.sample().await.unwrap();
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let at = s.lb_second.expect("a balancer second is named");
        assert!(s.lb_rps.is_some() && at < now && at + 3 >= now, "{at} vs {now}: {s:?}");

        // Latency: seeded selection, inject, visible at the entry point, idempotent revert.
        let latency = Fault {
            name: "slow".into(),
            at: Duration::ZERO,
            duration: Some(Duration::from_secs(30)),
            kind: FaultKind::Latency {
                select: Selection::Percent(1.0),
                delay: Duration::from_millis(300),
                jitter: Duration::ZERO,
            },
        };
        let r = b.resolve(&latency.step(), &mut Rng::new(7)).await.unwrap();
        assert_eq!(r, b.resolve(&latency.step(), &mut Rng::new(7)).await.unwrap());
        assert_eq!(r.targets.len(), 2);
        let inj = b.prepare(&latency.step(), &r, "run-test").await.unwrap();
        b.inject(&latency.step(), &inj, "run-test").await.unwrap();
        let url = format!("{}/", b.entry_url());
        let t = Instant::now();
        assert_eq!(status_of(&url), 200);
        assert!(t.elapsed() >= Duration::from_millis(280));
        b.revert(&inj).await.unwrap();
        b.revert(&inj).await.unwrap();
        let fastest = (0..3)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(status_of(&url), 200);
                t.elapsed()
            })
            .min()
            .unwrap();
        assert!(fastest < Duration::from_millis(250), "{fastest:?}");

        // DB failover with a long outage: the revert ends the window at once.
        let failover = Fault {
            name: "failover".into(),
            at: Duration::ZERO,
            duration: None,
            kind: FaultKind::DbFailover { outage: Some(Duration::from_secs(60)), target_instance: None },
        };
        let r = b.resolve(&failover.step(), &mut Rng::new(1)).await.unwrap();
        assert_eq!(r.targets, vec!["db-1".to_string()]);
        let inj = b.prepare(&failover.step(), &r, "run-test").await.unwrap();
        b.inject(&failover.step(), &inj, "run-test").await.unwrap();
        assert_eq!(b.sample().await.unwrap().db_writer, None);
        b.revert(&inj).await.unwrap();
        assert_eq!(b.sample().await.unwrap().db_writer.as_deref(), Some("db-2"));
        b.revert(&inj).await.unwrap();

        // Secret drift: /db breaks; the revert from the journaled record alone heals the lab.
        let drift = Fault { name: "drift".into(), at: Duration::ZERO, duration: None, kind: FaultKind::SecretDrift };
        let r = b.resolve(&drift.step(), &mut Rng::new(1)).await.unwrap();
        let inj = b.prepare(&drift.step(), &r, "run-test").await.unwrap();
        let undo = serde_json::to_value(&inj.undo).unwrap();
        assert_eq!(undo, json!({ "op": "restore-secret", "on": "lab", "restore_version": 1 }));
        b.inject(&drift.step(), &inj, "run-test").await.unwrap();
        let db = format!("{}/db", b.entry_url());
        assert_eq!(status_of(&db), 500);
        let journaled: siege::backend::Injected = serde_json::from_str(&serde_json::to_string(&inj).unwrap()).unwrap();
        b.revert(&journaled).await.unwrap();
        b.revert(&journaled).await.unwrap();
        let mut healed = false;
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end && !healed {
            healed = (0..4).all(|_| status_of(&db) == 200) && b.sample().await.unwrap().healthy_targets == Some(2);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(healed, "lab not healthy after the secret-drift revert");
        let events = b.sample().await.unwrap().events.join("\n");
        let _ = events;

        b.shutdown().await.unwrap();
        let gone = wait_for(Duration::from_secs(5), || pids.iter().all(|p| !pid_alive(*p)).then_some(()));
        assert!(gone.is_some(), "left running: {pids:?}");
        // The run's own lab is gone for good: nothing left to revert.
        assert!(
            Backend::reconnect(&locator, &siege::backend::Connection::from_env().unwrap()).await.unwrap().is_none()
        );
    });
}

#[test]
fn backend_attaches_to_a_lab_started_separately() {
    use siege::backend::Backend;
    use siege::scenario::{LabTarget, Target};
    let lab = TestLab::up(&["--tasks", "1"]);
    // SAFETY: nextest runs each test in its own process.
    unsafe { std::env::set_var("SIEGE_HOME", lab.home.path()) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let target = Target::Lab(LabTarget {
            service: "api".into(),
            tasks: 1,
            control: Some(lab.control.clone()),
            autoscaling: None,
        });
        let b =
            Backend::connect(&target, "run-x", &siege::backend::Connection::from_env().unwrap()).await.expect("attach");
        assert_eq!(b.entry_url(), lab.balancer);
        assert_eq!(b.sample().await.unwrap().running_tasks, Some(1));
        let loc = b.locator();
        assert_eq!(loc["lab"]["owned"], false);
        b.shutdown().await.unwrap();
        // Not ours: still running after shutdown, and reachable again from the journal.
        assert!(pid_alive(lab.pid));
        assert!(Backend::reconnect(&loc, &siege::backend::Connection::from_env().unwrap()).await.unwrap().is_some());
        // Without the lab file and without SIEGE_LAB_TOKEN there is no token: target not found.
        unsafe { std::env::set_var("SIEGE_HOME", "/nonexistent-siege-home") };
        assert!(matches!(
            Backend::connect(&target, "run-y", &siege::backend::Connection::from_env().unwrap()).await,
            Err(siege::backend::BackendError::NotFound(_))
        ));
    });
    lab.down();
}

#[test]
fn foreground_lab_stops_every_process_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let mut child = common::siege()
        .env("SIEGE_HOME", home.path())
        .args(["lab", "up", "--tasks", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let file = home.path().join("lab.json");
    wait_for(Duration::from_secs(20), || file.exists().then_some(())).expect("lab.json written when ready");
    let pid = child.id();
    let mut pids = children_of(pid);
    assert_eq!(pids.len(), 4, "{pids:?}");
    pids.push(pid);
    // SAFETY: SIGTERM to the lab this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(pids.iter().all(|p| !pid_alive(*p)), "left running: {pids:?}");
    assert!(!file.exists());
}

#[test]
fn redeploy_without_surge_room_keeps_the_minimum_healthy() {
    let lab = TestLab::up(&["--max-percent", "100%", "--min-healthy", "66%", "--placement-delay", "500ms"]);
    let old = lab.task_ids();
    let r = lab.post("/v1/service/redeploy", json!({}));
    assert_eq!(r["replacing"].as_array().unwrap().len(), 3);
    let (mut min_healthy, mut max_running) = (3, 0);
    let done = wait_for(Duration::from_secs(40), || {
        let st = lab.state();
        let healthy = st["targets"].as_array()?.iter().filter(|t| t["health"] == "healthy").count();
        min_healthy = min_healthy.min(healthy);
        max_running = max_running.max(st["service"]["running"].as_u64()?);
        let ids = lab.task_ids();
        (st["service"]["deploying"] == false && healthy == 3 && ids.iter().all(|id| !old.contains(id))).then_some(())
    });
    assert!(done.is_some(), "redeploy did not finish: {}", lab.state()["service"]);
    assert!(min_healthy >= 2, "healthy dropped to {min_healthy}");
    assert!(max_running <= 3, "ran {max_running} tasks with a maximum of 100%");
    assert!(lab.state()["events"].to_string().contains("deployment completed"));
    lab.down();
}

#[test]
fn a_stale_lab_file_is_not_trusted() {
    // A lab file left by a lab that died, whose pid now belongs to another process (this test).
    let home = tempfile::tempdir().unwrap();
    let stale = json!({
        "control_url": "http://127.0.0.1:9", "token": "x", "balancer_url": "http://127.0.0.1:9", "pid": std::process::id(),
    });
    std::fs::write(home.path().join("lab.json"), stale.to_string()).unwrap();
    let siege = || {
        let mut c = common::siege();
        c.env("SIEGE_HOME", home.path());
        c
    };
    assert_eq!(siege().args(["lab", "status"]).output().unwrap().status.code(), Some(4));
    let out = siege().args(["lab", "down"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("stale"));
    assert!(!home.path().join("lab.json").exists());
}

#[test]
fn ctrl_c_at_the_terminal_stops_the_lab_in_order() {
    use std::os::unix::process::CommandExt;
    let home = tempfile::tempdir().unwrap();
    let child = common::siege()
        .env("SIEGE_HOME", home.path())
        .args(["lab", "up", "--tasks", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let file = home.path().join("lab.json");
    wait_for(Duration::from_secs(20), || file.exists().then_some(())).expect("lab ready");
    let pid = child.id();
    let mut pids = children_of(pid);
    pids.push(pid);
    // What a terminal does on Ctrl-C: SIGINT to the whole foreground process group.
    // SAFETY: signals the process group this test created.
    unsafe { libc::kill(-(pid as i32), libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    // Tasks end on the supervisor's SIGTERM (exit code 0), not on the terminal's SIGINT.
    assert!(!log.contains("signal 2") && !log.contains("stopped unexpectedly"), "children got the SIGINT:\n{log}");
    assert!(log.contains("stopped by the scheduler (exit code 0)"), "{log}");
    assert!(pids.iter().all(|p| !pid_alive(*p)), "left running: {pids:?}");
}

#[test]
fn balancer_listens_on_a_fixed_port_when_asked() {
    // Held until the lab listens on it: the balancer's listener takes it over (both have
    // SO_REUSEADDR), nothing else can.
    let held = crate::common::reserved_port();
    let port = held.port;
    let lab = TestLab::up(&["--tasks", "1", "--balancer-port", &port.to_string()]);
    drop(held);
    assert_eq!(lab.balancer, format!("http://127.0.0.1:{port}"));
    let (s, v) = lab.get("/");
    assert_eq!(s, 200);
    assert_eq!(v["service"], "api");
    lab.down();
}

/// A scenario on the lab at `control`: `faults` (YAML flow items) on a `secs`-second load.
fn lab_scenario(lab: &TestLab, name: &str, control: &str, secs: u32, faults: &str) -> std::path::PathBuf {
    let path = lab.home.path().join(format!("{name}.yaml"));
    let yaml = format!(
        "name: {name}\ntarget:\n  lab: {{ service: api, tasks: 3, control: \"{control}\" }}\n\
         load: {{ url: /, rate: 20/s, duration: {secs}s, timeout: 2s }}\nsteady_state: {{ error_rate: \"< 5%\" }}\n\
         faults: [ {faults} ]\nrecovery: {{ within: 20s, hold: 3s }}\n"
    );
    std::fs::write(&path, yaml).expect("write scenario");
    path
}

/// Spawns `siege run FILE` with `env` on the lab's state directory; its stderr lines arrive on
/// the receiver.
fn spawn_run(lab: &TestLab, file: &std::path::Path, env: &[(&str, &str)]) -> (std::process::Child, Receiver) {
    use std::io::BufRead;
    let mut child = lab
        .siege()
        .envs(env.iter().copied())
        .arg("run")
        .arg(file)
        .arg("--reports")
        .arg(lab.home.path().join("reports"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn siege run");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

type Receiver = std::sync::mpsc::Receiver<String>;

/// Waits (up to a minute) for a line containing `marker`; every line seen on failure.
fn wait_line(rx: &Receiver, marker: &str) -> String {
    let mut seen = vec![];
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains(marker) => return line,
            Ok(line) => seen.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("never saw {marker:?}:\n{}", seen.join("\n"));
}

fn kill_9(child: &mut std::process::Child) {
    // SAFETY: kill -9 of a `siege run` this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// The run holding the lab's lease, if any.
fn lease_holder(lab: &TestLab) -> Option<String> {
    lab.state()["lease"]["run_id"].as_str().map(String::from)
}

fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn control_api_grants_the_lease_to_one_run_at_a_time() {
    let lab = TestLab::up(&["--tasks", "1"]);
    let take = |run: &str| lab.post("/v1/lease", json!({ "run_id": run, "ttl_ms": 60_000 }));
    let a = take("run-a");
    assert_eq!((a["granted"].as_bool(), a["lease"]["run_id"].as_str()), (Some(true), Some("run-a")), "{a}");
    // Another run is refused and told who holds it since when; the holder renews, same since.
    let b = take("run-b");
    assert_eq!((b["granted"].as_bool(), b["lease"]["run_id"].as_str()), (Some(false), Some("run-a")), "{b}");
    assert_eq!(b["lease"]["since_ms"], a["lease"]["since_ms"]);
    let renewed = take("run-a");
    assert_eq!((renewed["granted"].as_bool(), &renewed["lease"]["since_ms"]), (Some(true), &a["lease"]["since_ms"]));
    assert_eq!(lease_holder(&lab).as_deref(), Some("run-a"));
    // Only the holder releases it.
    assert_eq!(lab.post("/v1/lease/release", json!({ "run_id": "run-b" }))["released"], false);
    assert_eq!(lab.post("/v1/lease/release", json!({ "run_id": "run-a" }))["released"], true);
    assert_eq!(lease_holder(&lab), None);
    // A renewal is the holder's only: once released, renewing takes nothing back.
    let renew = |run: &str| lab.post("/v1/lease", json!({ "run_id": run, "ttl_ms": 60_000, "renew": true }));
    assert_eq!(renew("run-a"), json!({ "granted": false, "lease": null }));
    assert_eq!(lease_holder(&lab), None);
    assert_eq!(take("run-b")["granted"], true);
    assert_eq!(renew("run-a")["lease"]["run_id"], "run-b", "not the holder: refused");
    assert_eq!(renew("run-b")["granted"], true);
    // A lease that is not renewed expires, and another run takes it.
    lab.post("/v1/lease/release", json!({ "run_id": "run-b" }));
    assert_eq!(lab.post("/v1/lease", json!({ "run_id": "run-c", "ttl_ms": 300 }))["granted"], true);
    assert_eq!(take("run-d")["granted"], false);
    let expired = wait_for(Duration::from_secs(5), || lease_holder(&lab).is_none().then_some(()));
    assert!(expired.is_some(), "an expired lease is no lease: {:?}", lease_holder(&lab));
    assert_eq!(take("run-d")["granted"], true);
    let out = lab.siege().args(["lab", "status"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("lease: held by run run-d since"), "{out:?}");
    // Without a run id or with a silly time to live: 400.
    let url = format!("{}/v1/lease", lab.control);
    assert_eq!(http("POST", &url, Some(&lab.token), Some(&json!({ "ttl_ms": 1000 }))).unwrap().0, 400);
    assert_eq!(http("POST", &url, Some(&lab.token), Some(&json!({ "run_id": "x", "ttl_ms": 0 }))).unwrap().0, 400);
    lab.down();
}

#[test]
fn a_second_run_against_a_busy_lab_is_refused_and_touches_nothing() {
    let lab = TestLab::up(&[]);
    let first =
        lab_scenario(&lab, "first", &lab.control, 70, "{ type: latency, at: 4s, for: 40s, select: 1, delay: 50ms }");
    let second = lab_scenario(
        &lab,
        "second",
        &lab.control,
        30,
        "{ type: task-kill, at: 3s, select: 1 }, { type: secret-drift, at: 3s }",
    );
    let (mut run1, rx) = spawn_run(&lab, &first, &[]);
    wait_line(&rx, "fault injected: latency");
    let before = lab.state();
    let holder = lease_holder(&lab).expect("the first run holds the lab");
    assert!(holder.starts_with("first-"), "{holder}");
    assert_eq!(before["faults"].as_array().map(Vec::len), Some(1), "{}", before["faults"]);

    // `siege plan` says so, and takes nothing.
    let out = lab.siege().args(["plan".as_ref(), second.as_os_str()]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("target busy: held by run {holder} since ")), "{text}");

    // A second run is refused at once, naming the holder and since when.
    let t0 = Instant::now();
    let out = lab.siege().arg("run").arg(&second).arg("--reports").arg(lab.home.path().join("reports2")).output();
    let out = out.unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    let since = crate::common::read_report_json(&crate::common::only_report_dir(&lab.home.path().join("reports2")));
    assert_eq!(since["verdict"]["outcome"], "precondition-failed", "{since}");
    assert!(text.contains(&format!("target busy: lab at {} is held by run {holder} since 20", lab.control)), "{text}");
    assert!(text.contains("(lease expires in "), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(15), "refused after {:?}", t0.elapsed());
    // Nothing touched: same tasks, same secret, only the first run's fault, same holder.
    let after = lab.state();
    assert_eq!(after["faults"], before["faults"]);
    assert_eq!(after["secret"]["current_version"], before["secret"]["current_version"]);
    assert_eq!(
        lab.task_ids(),
        before["service"]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["status"] == "running")
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(lease_holder(&lab).as_deref(), Some(holder.as_str()));

    // A killed run's lease stays (until it expires); `siege recover` reverts and releases it.
    kill_9(&mut run1);
    assert_eq!(lease_holder(&lab).as_deref(), Some(holder.as_str()));
    let out = lab.siege().arg("recover").output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("run {holder}: released its lease on the target")), "{text}");
    assert_eq!(lease_holder(&lab), None, "{text}");
    assert_eq!(lab.state()["faults"], json!([]), "{text}");
    lab.down();
}

#[test]
fn a_lease_left_by_a_killed_run_expires_or_is_released_by_recover() {
    let lab = TestLab::up(&["--tasks", "1"]);
    let file = lab_scenario(&lab, "killed", &lab.control, 60, "{ type: task-kill, at: 30s, select: 1 }");
    // With a 4 s lease, killed before any fault: the lease expires by itself.
    let (mut run, rx) = spawn_run(&lab, &file, &[("SIEGE_LEASE_TTL", "4s")]);
    wait_line(&rx, "siege: run killed-");
    let holder = wait_for(Duration::from_secs(10), || lease_holder(&lab)).expect("the run holds the lab");
    kill_9(&mut run);
    let killed = Instant::now();
    assert_eq!(lease_holder(&lab).as_deref(), Some(holder.as_str()), "released by a killed run?");
    wait_for(Duration::from_secs(10), || lease_holder(&lab).is_none().then_some(())).expect("the lease expired");
    assert!(killed.elapsed() < Duration::from_secs(5), "took {:?}", killed.elapsed());
    let out = lab.siege().args(["plan".as_ref(), file.as_os_str()]).output().unwrap();
    assert!(output_text(&out).contains("target free"), "{}", output_text(&out));
    let out = lab.siege().arg("recover").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // With the default lease (30 s), killed with nothing injected: `siege recover` releases it.
    let (mut run, rx) = spawn_run(&lab, &file, &[]);
    wait_line(&rx, "siege: run killed-");
    let holder = wait_for(Duration::from_secs(10), || lease_holder(&lab)).expect("the run holds the lab");
    kill_9(&mut run);
    let out = lab.siege().arg("recover").output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("run {holder}: nothing left to revert")), "{text}");
    assert!(text.contains(&format!("run {holder}: released its lease on the target")), "{text}");
    assert_eq!(lease_holder(&lab), None);
    lab.down();
}

#[test]
fn plan_and_run_pick_the_same_tasks_whatever_the_order_of_the_faults() {
    let lab = TestLab::up(&["--tasks", "6"]);
    // Listed out of time order: the later fault first.
    let path = lab.home.path().join("order.yaml");
    let yaml = format!(
        "name: order\nseed: 11\ntarget:\n  lab: {{ service: api, tasks: 6, control: \"{}\" }}\n\
         load: {{ url: /, rate: 20/s, duration: 10s, timeout: 2s }}\nsteady_state: {{ error_rate: \"< 5%\" }}\n\
         faults:\n\
         \x20 - {{ type: latency, name: late, at: 5s, for: 2s, select: 2, delay: 20ms }}\n\
         \x20 - {{ type: latency, name: early, at: 3s, for: 2s, select: 2, delay: 20ms }}\n\
         recovery: {{ within: 1s, hold: 2s }}\n",
        lab.control
    );
    std::fs::write(&path, yaml).unwrap();
    let out = lab.siege().args(["plan".as_ref(), path.as_os_str()]).output().unwrap();
    let plan = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{plan}");
    let reports = lab.home.path().join("reports");
    let out = lab.siege().arg("run").arg(&path).arg("--reports").arg(&reports).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report = crate::common::read_report_json(&crate::common::only_report_dir(&reports));
    for name in ["early", "late"] {
        let fault = report["faults"].as_array().unwrap().iter().find(|f| f["name"] == name).expect(name);
        let summary = fault["summary"].as_str().unwrap();
        assert!(summary.contains("2 of 6 tasks"), "{summary}");
        assert!(plan.contains(&format!("inject {name} (latency): {summary}")), "run: {summary}\nplan:\n{plan}");
    }
    lab.down();
}

/// `siege run --interactive` on a real pseudo-terminal (`script` gives the command one, and
/// passes what is written to its stdin on as key presses): the instructor injects the manual
/// task-kill with key 1, marks detected, then mitigated; the report has the fault, the marks
/// and the human times.
#[test]
fn interactive_keys_inject_a_manual_fault_and_mark_it_through_a_terminal() {
    use std::sync::{Arc, Mutex};
    let lab = TestLab::up(&["--tasks", "3"]);
    let path = lab.home.path().join("interactive.yaml");
    let yaml = format!(
        "name: interactive\ntarget:\n  lab: {{ service: api, tasks: 3, control: \"{}\" }}\n\
         load: {{ url: /, rate: 20/s, duration: 20s, timeout: 2s }}\nsteady_state: {{ error_rate: \"< 5%\" }}\n\
         manual:\n  - {{ type: task-kill, name: kill-one, select: 1 }}\nrecovery: {{ within: 10s, hold: 2s }}\n",
        lab.control
    );
    std::fs::write(&path, yaml).unwrap();
    let reports = lab.home.path().join("reports");
    let cmd = format!(
        "{} run --interactive --author alice {} --reports {}",
        common::siege_bin().display(),
        path.display(),
        reports.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("SIEGE_HOME", lab.home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs the command on a pseudo-terminal");
    let screen = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let seen = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let wait_text = |text: &str| {
        wait_for(Duration::from_secs(30), || screen.lock().unwrap().contains(text).then_some(()))
            .unwrap_or_else(|| panic!("never showed {text:?}:\n{}", screen.lock().unwrap()))
    };
    let mut keys = child.stdin.take().unwrap();
    let mut press = |k: &str| keys.write_all(k.as_bytes()).and_then(|()| keys.flush()).unwrap();
    wait_text("keys: 1-9 inject");
    wait_text("phase: faults");
    let before = lab.task_ids();
    press("1");
    wait_text("fault injected: kill-one");
    press("d");
    wait_text("mark: detected (alice)");
    // Time passes on purpose: the report's mitigated time is checked to be a second or more
    // after the detected one.
    std::thread::sleep(Duration::from_millis(1500));
    press("m");
    wait_text("mark: mitigated (alice)");
    let status = child.wait().unwrap();
    let text = screen.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("PASSED"), "{text}");
    assert_ne!(lab.task_ids(), before, "a task was killed and replaced");

    let dir = common::only_report_dir(&reports);
    let report = common::read_report_json(&dir);
    let fault = &report["faults"][0];
    assert_eq!(fault["name"], "kill-one", "{report}");
    assert!(fault["injected_s"].as_f64().is_some(), "{fault}");
    let marks: Vec<&str> = report["marks"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(marks, ["detected", "mitigated"], "{report}");
    let human = &fault["human"][0];
    assert_eq!(human["author"], "alice", "{fault}");
    let (d, m) = (human["detected_s"].as_f64().unwrap(), human["mitigated_s"].as_f64().unwrap());
    assert!(0.0 <= d && d + 1.0 <= m, "{human}");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("detected (alice)") && md.contains("mitigated (alice)"), "{md}");
    lab.down();
}

/// Two runs in one process, each on a lab of its own and with a journal of its own; one panics
/// after injecting. The other passes untouched, and only the panicking run's fault is reverted
/// (from its own journal).
#[test]
#[cfg_attr(not(debug_assertions), ignore = "the failpoint exists in debug builds only")]
fn two_runs_in_one_process_one_panics_the_other_passes_and_only_its_faults_are_reverted() {
    use siege::engine::{RunOptions, RunRequest};
    let (a, b) = (TestLab::up(&["--tasks", "2"]), TestLab::up(&["--tasks", "2"]));
    // The runs find lab a's token in its lab file, lab b's in the environment.
    // SAFETY: nextest runs each test in its own process, before any thread reads the environment.
    unsafe {
        std::env::set_var("SIEGE_HOME", a.home.path());
        std::env::set_var("SIEGE_LAB_TOKEN", &b.token);
    }
    let request = |lab: &TestLab, name: &str, fault_for: &str, failpoint: Option<&str>| {
        let yaml = format!(
            "name: {name}\ntarget:\n  lab: {{ service: api, tasks: 2, control: \"{}\" }}\n\
             load: {{ url: /, rate: 20/s, duration: 8s, timeout: 2s }}\nsteady_state: {{ error_rate: \"< 5%\" }}\n\
             faults:\n  - {{ type: latency, name: slow, at: 2s, for: {fault_for}, select: 1, delay: 10ms }}\n\
             recovery: {{ within: 2s, hold: 1s }}\n",
            lab.control
        );
        RunRequest {
            options: RunOptions { reports_dir: None, seed: Some(5) },
            journal_dir: lab.home.path().join(format!("journal-{name}")),
            failpoint: failpoint.map(String::from),
            ..crate::events::request_from(lab.home.path(), name, &yaml, 5)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let panics = siege::engine::start(request(&a, "panics", "3s", Some("after-inject")));
        let passes = siege::engine::start(request(&b, "passes", "1s", None));
        let (panicked, passed) = tokio::join!(panics.outcome(), passes.outcome());
        let panicked = panicked.err().expect("the failpoint panics");
        assert!(!panicked.revert_failed, "{panicked:?}");
        let passed = passed.expect("no panic").record;
        assert_eq!(passed.verdict.outcome, siege::report::Outcome::Passed, "{:?}", passed.verdict);
        assert!(passed.faults[0].reverted_s.is_some(), "{:?}", passed.faults);
    });
    // The panicking run's latency is gone from its lab, its journal closed; the other lab clean.
    assert_eq!(a.state()["faults"], json!([]), "{}", a.state());
    assert_eq!(b.state()["faults"], json!([]), "{}", b.state());
    for dir in [a.home.path().join("journal-panics"), b.home.path().join("journal-passes")] {
        assert!(std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(true), "{dir:?} not empty");
    }
    a.down();
    b.down();
}

/// The terminal of a run closes (SIGHUP): the run stops like on SIGTERM, every fault reverted.
#[test]
fn a_closed_terminal_stops_the_run_and_reverts_its_faults() {
    let lab = TestLab::up(&["--tasks", "2"]);
    let file =
        lab_scenario(&lab, "hangup", &lab.control, 60, "{ type: latency, at: 3s, for: 30s, select: 1, delay: 20ms }");
    let (mut run, rx) = spawn_run(&lab, &file, &[]);
    wait_line(&rx, "fault injected: latency");
    assert_eq!(lab.state()["faults"].as_array().map(Vec::len), Some(1));
    // SAFETY: a signal to the `siege run` this test started.
    unsafe { libc::kill(run.id() as i32, libc::SIGHUP) };
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert_eq!(lab.state()["faults"], json!([]));
    let report = common::read_report_json(&common::only_report_dir(&lab.home.path().join("reports")));
    assert_eq!(report["verdict"]["interrupted_by"], "SIGHUP (the terminal closed)", "{report}");
    lab.down();
}
