//! Integration tests: `siege daemon` through its HTTP API on real sockets, running real runs on
//! a detached lab, killed with `kill -9` and restarted, stopped with SIGTERM, on a schedule.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use siege::daemon::store::{Firing, FiringOutcome, Store};

use crate::common::{self, pid_alive, wait_for};
use crate::lab::TestLab;

/// One HTTP/1.0 exchange (the body ends with the connection): (status, body).
pub(crate) fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = vec![];
    s.read_to_end(&mut resp).expect("read the response");
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

pub(crate) fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The SSE messages of a stream: (id, event, data).
fn sse_messages(body: &str) -> Vec<(u64, String, String)> {
    body.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut ev, mut data) = (None, String::new(), String::new());
            for l in block.lines() {
                if let Some(v) = l.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = l.strip_prefix("event:") {
                    ev = v.trim().to_string();
                } else if let Some(v) = l.strip_prefix("data:") {
                    data += v.strip_prefix(' ').unwrap_or(v);
                }
            }
            Some((id?, ev, data))
        })
        .collect()
}

/// A `siege daemon` on a free loopback port; killed on drop.
struct TestDaemon {
    child: Child,
    addr: String,
    token: String,
    data: PathBuf,
}

impl TestDaemon {
    /// Starts the daemon with `SIEGE_HOME` = `home` and `extra` arguments; waits for its
    /// "listening" line.
    fn start(home: &Path, data: &Path, extra: &[&str]) -> TestDaemon {
        let mut child = common::siege()
            .env("SIEGE_HOME", home)
            .args(["daemon", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn siege daemon");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("the daemon's first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        std::thread::spawn(move || for _ in out.lines() {});
        let token = std::fs::read_to_string(data.join("token")).expect("token").trim().to_string();
        TestDaemon { child, addr, token, data: data.to_path_buf() }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (s, b) = http(&self.addr, "GET", path, &[], b"");
        (s, if path.contains("/events") { Value::String(b) } else { json_of(&b) })
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let (s, b) = http(&self.addr, "POST", path, &headers, body.to_string().as_bytes());
        (s, json_of(&b))
    }

    fn start_run(&self, scenario: &Path) -> String {
        let (s, v) = self.post("/v1/runs", json!({ "scenario": scenario }));
        assert_eq!(s, 202, "{v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// Waits (up to 2 minutes) until the run is no longer running; its JSON.
    fn wait_finished(&self, id: &str) -> Value {
        wait_for(Duration::from_secs(120), || {
            let (_, v) = self.get(&format!("/v1/runs/{id}"));
            (v["state"] != "running").then_some(v)
        })
        .unwrap_or_else(|| panic!("run {id} never finished"))
    }

    fn sigterm(&mut self) -> Option<i32> {
        // SAFETY: SIGTERM to the daemon this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().ok().and_then(|s| s.code())
    }

    fn kill_9(&mut self) {
        // SAFETY: kill -9 of the daemon this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    fn store(&self) -> Store {
        Store::open(&self.data.join("history.db")).expect("open the history")
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A short scenario on the lab at its control URL: `secs` of load, `faults` as YAML flow items.
fn scenario(dir: &Path, lab: &TestLab, name: &str, secs: u32, faults: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "name: {name}\ntarget:\n  lab: {{ service: api, tasks: 3, control: \"{}\" }}\n\
         load: {{ url: /, rate: 20/s, duration: {secs}s, timeout: 2s }}\nsteady_state: {{ error_rate: \"< 5%\" }}\n\
         faults: [ {faults} ]\nrecovery: {{ within: 10s, hold: 1s }}\n",
        lab.control
    );
    std::fs::write(&path, yaml).expect("write scenario");
    path
}

fn secret_version(lab: &TestLab) -> u64 {
    lab.state()["secret"]["current_version"].as_u64().expect("secret version")
}

/// The pids of the processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // `pid (comm) state ppid …`; comm may hold spaces, so read after the last `)`.
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)).and_then(|v| v.parse().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_run_started_by_the_api_passes_its_files_are_served_and_its_target_is_busy_meanwhile() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(lab.home.path(), data.path(), &[]);
    let file = scenario(lab.home.path(), &lab, "quick", 3, "");
    let id = d.start_run(&file);
    // The same target is busy; by name, from the working directory's scenarios/ it would
    // resolve the same way.
    let (s, v) = d.post("/v1/runs", json!({ "scenario": file }));
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("target-busy")), "{v}");
    let (s, v) = d.get(&format!("/v1/runs/{id}"));
    assert_eq!((s, v["state"].as_str()), (200, Some("running")), "{v}");
    // The live stream, read until the run ends.
    let live = d.get(&format!("/v1/runs/{id}/events")).1.as_str().unwrap().to_string();
    let v = d.wait_finished(&id);
    assert_eq!(v["state"], "passed", "{v}");
    assert_eq!(v["record"]["verdict"]["outcome"], "passed", "{v}");
    let live = sse_messages(&live);
    let seqs: Vec<u64> = live.iter().map(|m| m.0).collect();
    assert_eq!(seqs, (0..live.len() as u64).collect::<Vec<_>>(), "in order, without gaps");
    assert_eq!(live.last().map(|m| m.1.as_str()), Some("run-finished"));
    for (seq, ev, data) in &live {
        let e = json_of(data);
        assert_eq!((e["seq"].as_u64(), e["event"]["type"].as_str()), (Some(*seq), Some(ev.as_str())));
    }
    // The replay of the finished run is the live stream; Last-Event-ID resumes after it.
    let replay = sse_messages(d.get(&format!("/v1/runs/{id}/events")).1.as_str().unwrap());
    assert_eq!(replay, live);
    let (_, resumed) = http(&d.addr, "GET", &format!("/v1/runs/{id}/events"), &[("Last-Event-ID", "4")], b"");
    assert_eq!(sse_messages(&resumed), live[5..].to_vec());
    // The report files, from the history.
    for f in ["report.md", "report.json", "junit.xml"] {
        assert!(v["files"].as_array().unwrap().iter().any(|n| n == f), "{f} in {}", v["files"]);
        let (s, body) = http(&d.addr, "GET", &format!("/v1/runs/{id}/report/{f}"), &[], b"");
        assert_eq!(s, 200, "{f}: {body}");
        assert!(!body.is_empty());
    }
    let (s, body) = http(&d.addr, "GET", &format!("/v1/runs/{id}/report/report.json"), &[], b"");
    assert_eq!((s, json_of(&body)["run_id"].as_str()), (200, Some(id.as_str())));
    let (s, v) = d.get(&format!("/v1/runs/{id}/report/nope.txt"));
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("no-such-file")));
    // The history lists it; now the target is free again.
    let (_, list) = d.get("/v1/runs?scenario=quick&verdict=passed");
    assert_eq!(list["runs"][0]["id"], id.as_str(), "{list}");
    let (s, v) = d.post(&format!("/v1/runs/{id}/stop"), json!({}));
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("run-ended")), "{v}");
    // Its figures: in the metrics and in the scenario's trend.
    let (s, metrics) = http(&d.addr, "GET", "/metrics", &[], b"");
    assert_eq!(s, 200, "{metrics}");
    assert!(metrics.contains("siege_runs_total{scenario=\"quick\",state=\"passed\"} 1\n"), "{metrics}");
    assert!(metrics.contains("siege_runs_in_progress 0\n"), "{metrics}");
    let (s, trend) = d.get("/v1/scenarios/quick/trend");
    assert_eq!((s, trend["runs"][0]["id"].as_str()), (200, Some(id.as_str())), "{trend}");
    assert_eq!(trend["runs"][0]["state"], "passed", "{trend}");
    // `siege compare` takes the daemon's run ids: their reports are fetched into reports/.
    let cwd = tempfile::tempdir().unwrap();
    let out = common::siege()
        .current_dir(cwd.path())
        .args(["compare", &id, &id, "--daemon", &d.addr])
        .output()
        .expect("siege compare");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(cwd.path().join("reports").join(&id).join("report.json").is_file());
    let out =
        common::siege().current_dir(cwd.path()).args(["compare", &id, "no-such-run", "--daemon", &d.addr]).output();
    assert_eq!(out.unwrap().status.code(), Some(3), "an unknown run id is refused");
}

/// A webhook on loopback: the bodies it was posted, one per accepted connection.
fn webhook() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then as many body bytes as Content-Length says.
            let body = loop {
                let Ok(n) = std::io::Read::read(&mut conn, &mut chunk) else { break None };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body.to_string());
                    }
                }
            };
            let _ = std::io::Write::write_all(
                &mut conn,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            );
            if let Some(b) = body {
                let _ = tx.send(b);
            }
        }
    });
    (url, rx)
}

#[test]
fn a_stopped_run_is_alerted_on_the_webhook() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    let (url, posted) = webhook();
    let config = write_config(lab.home.path(), &format!("webhook: {url}\n"));
    let d = TestDaemon::start(lab.home.path(), data.path(), &["--config", config.to_str().unwrap()]);
    let id = d.start_run(&scenario(lab.home.path(), &lab, "quick", 30, ""));
    let stopped = wait_for(Duration::from_secs(20), || {
        let (s, _) = d.post(&format!("/v1/runs/{id}/stop"), json!({ "reason": "enough" }));
        (s == 202 || s == 200).then_some(())
    });
    assert!(stopped.is_some(), "the stop was accepted");
    assert_eq!(d.wait_finished(&id)["state"], "aborted");
    let body = posted.recv_timeout(Duration::from_secs(20)).expect("an alert");
    let alert = json_of(&body);
    let text = alert["text"].as_str().unwrap_or_default();
    assert!(text.contains("quick") && text.contains("aborted"), "{alert}");
    assert!(body.contains(&id), "{body}");
}

#[test]
fn every_mutating_call_needs_the_token_and_remote_reads_too() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut d = TestDaemon::start(home.path(), data.path(), &[]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.path().join("token")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mutating = [
        "/v1/runs",
        "/v1/runs/r/stop",
        "/v1/runs/r/inject",
        "/v1/runs/r/spike",
        "/v1/runs/r/marks",
        "/v1/schedules/s/pause",
        "/v1/schedules/s/resume",
        "/v1/schedules/s/trigger",
        "/v1/reload",
    ];
    for p in mutating {
        let (s, b) = http(&d.addr, "POST", p, &[], b"{}");
        assert_eq!((s, json_of(&b)["error"]["code"].as_str()), (401, Some("unauthorized")), "{p}: {b}");
        let (s, b) = http(&d.addr, "POST", p, &[("Authorization", "Bearer nope")], b"{}");
        assert_eq!((s, json_of(&b)["error"]["code"].as_str()), (403, Some("forbidden")), "{p}: {b}");
    }
    assert_eq!(d.get("/v1/runs").0, 200, "reads are open on loopback");
    assert_eq!(d.get("/healthz").1["status"], "ok");
    assert_eq!(d.sigterm(), Some(0));
    // The token is kept across restarts; with --allow-remote, reads need it too.
    let token = d.token.clone();
    let d = TestDaemon::start(home.path(), data.path(), &["--allow-remote"]);
    assert_eq!(d.token, token);
    let (s, _) = http(&d.addr, "GET", "/v1/runs", &[], b"");
    assert_eq!(s, 401);
    let auth = format!("Bearer {token}");
    assert_eq!(http(&d.addr, "GET", "/v1/runs", &[("Authorization", &auth)], b"").0, 200);
    // A non-loopback address without --allow-remote is a usage error.
    let out = common::siege()
        .env("SIEGE_HOME", home.path())
        .args(["daemon", "--listen", "0.0.0.0:0", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"), "{out:?}");
}

#[test]
fn a_posted_invalid_scenario_gets_422_with_its_diagnostics_and_an_unknown_name_404() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(home.path(), data.path(), &[]);
    let auth = format!("Bearer {}", d.token);
    let yaml = b"name: bad\ntarget: { lab: { service: api, tasks: 2 } }\nload: { url: /, rate: 10/s, duraton: 5s }\n";
    let (s, b) =
        http(&d.addr, "POST", "/v1/runs", &[("Authorization", &auth), ("Content-Type", "application/yaml")], yaml);
    let v = json_of(&b);
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("invalid-scenario")), "{v}");
    let diags = v["error"]["diagnostics"].as_array().expect("diagnostics");
    assert!(diags.iter().any(|d| d["text"].as_str().unwrap().starts_with("posted.yaml:3:")), "{v}");
    let (s, v) = d.post("/v1/runs", json!({ "scenario": "no-such-thing" }));
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("unknown-scenario")), "{v}");
    let (s, v) = d.get("/v1/runs/nope");
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("no-such-run")), "{v}");
}

#[test]
fn after_kill_9_a_restart_marks_the_run_interrupted_and_reverts_its_fault() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    let mut d = TestDaemon::start(lab.home.path(), data.path(), &[]);
    let earlier = d.start_run(&scenario(lab.home.path(), &lab, "quick", 2, ""));
    assert_eq!(d.wait_finished(&earlier)["state"], "passed");
    let drift = scenario(lab.home.path(), &lab, "drift", 60, "{ name: drift, type: secret-drift, at: 1s }");
    let id = d.start_run(&drift);
    // A run with a lab of its own, on another target at the same time.
    let own = lab.home.path().join("own.yaml");
    std::fs::write(
        &own,
        "name: own\ntarget: { lab: { service: api, tasks: 1 } }\nload: { url: /, rate: 5/s, duration: 60s }\n\
         steady_state: { error_rate: \"< 50%\" }\nrecovery: { within: 10s }\n",
    )
    .unwrap();
    let own_id = d.start_run(&own);
    assert!(wait_for(Duration::from_secs(30), || (secret_version(&lab) == 2).then_some(())).is_some());
    let labs = wait_for(Duration::from_secs(30), || {
        let c = children_of(d.child.id());
        (!c.is_empty()).then_some(c)
    })
    .expect("the run's own lab");
    d.kill_9();
    assert_eq!(secret_version(&lab), 2, "the fault is still in place");
    assert!(
        wait_for(Duration::from_secs(5), || labs.iter().all(|p| !pid_alive(*p)).then_some(())).is_some(),
        "the lab started for a run dies with the daemon"
    );
    let (url, posted) = webhook();
    let config = write_config(lab.home.path(), &format!("webhook: {url}\n"));
    let d = TestDaemon::start(lab.home.path(), data.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(d.get(&format!("/v1/runs/{id}")).1["state"], "interrupted");
    // Both interrupted runs are alerted.
    let alerts: Vec<String> = (0..2).filter_map(|_| posted.recv_timeout(Duration::from_secs(20)).ok()).collect();
    assert!(alerts.iter().any(|b| b.contains(&id) && b.contains("interrupted")), "{alerts:?}");
    assert!(alerts.iter().any(|b| b.contains(&own_id)), "{alerts:?}");
    assert_eq!(d.get(&format!("/v1/runs/{own_id}")).1["state"], "interrupted");
    assert_eq!(secret_version(&lab), 1, "reverted from the journal at start");
    assert_eq!(d.get(&format!("/v1/runs/{earlier}")).1["state"], "passed", "earlier history intact");
    assert!(std::fs::read_dir(data.path().join("journals")).unwrap().next().is_none(), "no journal left");
    // The target is free again.
    let again = d.start_run(&drift);
    assert!(!again.is_empty());
}

#[test]
fn sigterm_interrupts_the_running_run_reverts_stores_its_report_and_exits_0() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    let mut d = TestDaemon::start(lab.home.path(), data.path(), &[]);
    let id = d.start_run(&scenario(lab.home.path(), &lab, "drift", 60, "{ name: drift, type: secret-drift, at: 1s }"));
    assert!(wait_for(Duration::from_secs(30), || (secret_version(&lab) == 2).then_some(())).is_some());
    assert_eq!(d.sigterm(), Some(0));
    assert_eq!(secret_version(&lab), 1);
    let run = d.store().run(&id).unwrap().expect("the run");
    assert_eq!(run.state.as_str(), "interrupted");
    assert!(d.store().file(&id, "report.md").unwrap().is_some(), "its report is stored");
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("daemon.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_schedule_fires_within_a_second_of_its_due_time_and_its_run_lands_in_history() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    scenario(lab.home.path(), &lab, "quick", 2, "");
    let config = write_config(lab.home.path(), "schedules:\n  - { name: often, scenario: quick.yaml, every: 3s }\n");
    let d = TestDaemon::start(lab.home.path(), data.path(), &["--config", config.to_str().unwrap()]);
    let started = Instant::now();
    let fired: Firing = wait_for(Duration::from_secs(10), || {
        d.store().firings("often", 10).unwrap().into_iter().find(|f| f.outcome == FiringOutcome::Fired)
    })
    .expect("a firing");
    assert!(started.elapsed() < Duration::from_secs(5));
    let late = fired.recorded_at.as_millisecond() - fired.due.as_millisecond();
    assert!((0..1000).contains(&late), "lateness {late} ms");
    let id = fired.run_id.expect("its run");
    let run = d.wait_finished(&id);
    assert_eq!((run["trigger"].as_str(), run["schedule"].as_str()), (Some("schedule"), Some("often")), "{run}");
    // While it ran, the next due time found the target busy: skipped, with the reason.
    let skipped = d.store().firings("often", 20).unwrap().into_iter().find(|f| f.outcome == FiringOutcome::Skipped);
    if let Some(s) = skipped {
        assert!(s.reason.unwrap_or_default().contains("target busy"));
    }
    let (_, list) = d.get("/v1/schedules");
    assert_eq!(list["schedules"][0]["name"], "often", "{list}");
    // A bad config is refused by reload and the old one stays.
    write_config(lab.home.path(), "schedules:\n  - { name: often, scenario: quick.yaml, evry: 3s }\n");
    let (s, v) = d.post("/v1/reload", json!({}));
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("invalid-config")), "{v}");
    assert_eq!(d.get("/v1/schedules").1["schedules"][0]["name"], "often");
}

#[test]
fn at_start_a_missed_schedule_within_catch_up_runs_once_and_one_outside_is_recorded_missed() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    scenario(lab.home.path(), &lab, "quick", 2, "");
    let config = write_config(
        lab.home.path(),
        "schedules:\n  - { name: recent, scenario: quick.yaml, every: 60s, catch_up: 2m }\n  \
         - { name: yearly, scenario: quick.yaml, cron: \"0 0 1 1 *\", catch_up: 1h }\n",
    );
    // The daemon was last up long ago: both schedules have an old firing.
    {
        let store = Store::open(&data.path().join("history.db")).unwrap();
        let now = jiff::Timestamp::now();
        for (name, due) in
            [("recent", now - jiff::SignedDuration::from_mins(10)), ("yearly", "2020-01-01T00:00:00Z".parse().unwrap())]
        {
            store
                .record_firing(&Firing {
                    schedule: name.into(),
                    due,
                    outcome: FiringOutcome::Fired,
                    reason: None,
                    run_id: None,
                    recorded_at: due,
                })
                .unwrap();
        }
    }
    let d = TestDaemon::start(lab.home.path(), data.path(), &["--config", config.to_str().unwrap()]);
    let catch_up = wait_for(Duration::from_secs(10), || {
        let f = d.store().firings("recent", 10).unwrap();
        (f.len() >= 2).then_some(f)
    })
    .expect("the catch-up firing");
    let runs: Vec<&Firing> =
        catch_up.iter().filter(|f| f.reason.as_deref().is_some_and(|r| r.contains("catch-up"))).collect();
    assert_eq!(runs.len(), 1, "{catch_up:?}");
    let run = d.wait_finished(runs[0].run_id.as_deref().expect("a run"));
    assert_eq!(run["trigger"], "catch-up");
    let yearly = d.store().firings("yearly", 10).unwrap();
    assert_eq!(yearly[0].outcome, FiringOutcome::Missed, "{yearly:?}");
    assert_eq!(yearly.len(), 2);
    let (_, list) = d.get("/v1/runs?scenario=quick");
    let catch_ups = list["runs"].as_array().unwrap().iter().filter(|r| r["trigger"] == "catch-up").count();
    assert_eq!(catch_ups, 1, "{list}");
}

#[test]
fn the_client_commands_start_a_run_wait_for_its_verdict_and_list_it() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(lab.home.path(), data.path(), &[]);
    let file = scenario(lab.home.path(), &lab, "quick", 2, "");
    let client = |args: &[&str]| {
        common::siege()
            .env("SIEGE_HOME", lab.home.path())
            .args(args)
            .args(["--daemon", &d.addr, "--data"])
            .arg(data.path())
            .output()
            .expect("run the client")
    };
    let out = client(&["runs", "start", file.to_str().unwrap(), "--wait"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let out = client(&["runs", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(listed.contains("quick") && listed.contains("passed"), "{listed}");
    // Without the token (another data directory), a start is refused: exit 3.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("token"), "wrong\n").unwrap();
    let out = common::siege()
        .args(["runs", "start", file.to_str().unwrap(), "--daemon", &d.addr, "--data"])
        .arg(other.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}
