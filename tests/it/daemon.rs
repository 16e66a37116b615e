//! Integration tests: `siege daemon` through its HTTP API on real sockets, running real runs on
//! a detached lab, killed with `kill -9` and restarted, stopped with SIGTERM, on a schedule.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use siege::daemon::store::{Firing, FiringOutcome, NewRun, RunEnd, RunState, Store, Trigger};

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
    /// Starts the daemon with `SIEGE_HOME` = `home`, `home` as a directory runs may be started
    /// from (`--scenarios`), and `extra` arguments; waits for its "listening" line.
    fn start(home: &Path, data: &Path, extra: &[&str]) -> TestDaemon {
        TestDaemon::spawn(home, data, extra, &[], None)
    }

    /// As [`TestDaemon::start`], with environment variables, and its stderr into `log` if given.
    fn spawn(home: &Path, data: &Path, extra: &[&str], env: &[(&str, &str)], log: Option<&Path>) -> TestDaemon {
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).expect("create the log")),
            None => Stdio::inherit(),
        };
        let mut child = common::siege()
            .env("SIEGE_HOME", home)
            .envs(env.iter().copied())
            .args(["daemon", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--scenarios")
            .arg(home)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn siege daemon");
        let addr = common::daemon_address(&mut child);
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

    /// A POST with a body of type `kind`, as given.
    fn post_raw(&self, path: &str, kind: &str, body: &[u8]) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let (s, b) = http(&self.addr, "POST", path, &[("Authorization", auth.as_str()), ("Content-Type", kind)], body);
        (s, json_of(&b))
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to the daemon this test started.
        unsafe { libc::kill(self.child.id() as i32, sig) };
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
        self.signal(libc::SIGTERM);
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
    // resolve the same way. (Not the same body: that, within a second, is a repeated start.)
    let (s, v) = d.post("/v1/runs", json!({ "scenario": file, "blind": false }));
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
    webhook_answering(&[])
}

/// As [`webhook`], answering the n-th connection with `statuses[n]`, and 200 after those.
fn webhook_answering(statuses: &[u16]) -> (String, std::sync::mpsc::Receiver<String>) {
    let statuses = statuses.to_vec();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
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
            let status = statuses.get(n).copied().unwrap_or(200);
            let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = std::io::Write::write_all(&mut conn, answer.as_bytes());
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
fn an_alert_still_queued_at_sigterm_is_sent_within_the_grace_period() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    // The first attempt is answered 503: the retry comes a second later, once the run has ended
    // and the daemon is on its way out.
    let (url, posted) = webhook_answering(&[503]);
    let config = write_config(lab.home.path(), &format!("webhook: {url}\n"));
    let mut d = TestDaemon::start(lab.home.path(), data.path(), &["--config", config.to_str().unwrap()]);
    let id = d.start_run(&scenario(lab.home.path(), &lab, "quick", 30, ""));
    // Under way: its load has started (in the history, written every 250 ms).
    let store = d.store();
    let started = wait_for(Duration::from_secs(20), || {
        let events = store.events(&id, 0, 10_000).expect("the run's events");
        events.iter().any(|e| e.json.contains(r#""type":"load-started""#)).then_some(())
    });
    assert!(started.is_some(), "the run's load never started");
    drop(store);
    let t0 = Instant::now();
    assert_eq!(d.sigterm(), Some(0));
    let took = t0.elapsed();
    let bodies: Vec<String> = (0..2).filter_map(|_| posted.recv_timeout(Duration::from_secs(1)).ok()).collect();
    assert_eq!(bodies.len(), 2, "the first attempt and its retry, before the exit: {bodies:?}");
    assert!(bodies.iter().all(|b| b.contains(&id) && b.contains("interrupted")), "{bodies:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
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
fn a_request_reads_no_file_outside_the_scenario_directories_and_quotes_none_that_is_not_a_scenario() {
    let (home, data, outside) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A file shaped like /etc/shadow outside every scenario directory, and one inside a scenario
    // directory that is YAML but not a scenario.
    let secret = outside.path().join("shadow.yaml");
    std::fs::write(&secret, "root:$6$SECRET-HASH$x:19000:0:99999:7:::\ndaemon: \"*:19000\"\n").unwrap();
    std::fs::write(home.path().join("notes.yaml"), "db_password: NOT-TO-BE-SHOWN\n").unwrap();
    std::os::unix::fs::symlink(&secret, home.path().join("link.yaml")).unwrap();
    let d = TestDaemon::start(home.path(), data.path(), &[]);
    let up = "../".repeat(16);
    let relative = format!("{up}{}", secret.display().to_string().trim_start_matches('/'));
    let givens = [
        "../../../../etc/shadow".to_string(),
        format!("{up}etc/shadow"),
        "/etc/passwd".to_string(),
        secret.display().to_string(),
        relative,
        format!("{}/../{}", home.path().display(), secret.display()),
        home.path().join("link.yaml").display().to_string(),
        "link".to_string(),
    ];
    for given in &givens {
        let (s, v) = d.post("/v1/runs", json!({ "scenario": given }));
        assert_eq!((s, v["error"]["code"].as_str()), (404, Some("unknown-scenario")), "{given}: {v}");
        let text = v.to_string();
        assert!(!text.contains("SECRET-HASH") && !text.contains("root:"), "{given}: {text}");
    }
    for given in ["notes", &home.path().join("notes.yaml").display().to_string()] {
        let (s, v) = d.post("/v1/runs", json!({ "scenario": given }));
        assert_eq!((s, v["error"]["code"].as_str()), (422, Some("not-a-scenario")), "{given}: {v}");
        assert!(!v.to_string().contains("NOT-TO-BE-SHOWN") && v["error"]["diagnostics"].is_null(), "{v}");
    }
    // A posted scenario cannot ask whether a file exists elsewhere through its runbook.
    let yaml = b"name: probe\nrunbook: /etc/shadow\ntarget: { lab: { service: api, tasks: 2 } }\n";
    let (s, v) = d.post_raw("/v1/runs", "application/yaml", yaml);
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("not-a-scenario")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("runbook"), "{v}");
    assert!(d.store().list_runs(&Default::default()).unwrap().runs.is_empty(), "nothing was started");
}

#[test]
fn a_second_daemon_on_the_same_data_directory_is_refused_naming_the_first() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut first = TestDaemon::start(home.path(), data.path(), &[]);
    let second = |args: &[&str]| {
        let mut child = common::siege()
            .env("SIEGE_HOME", home.path())
            .args(args)
            .arg("--data")
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a second daemon");
        let status = wait_for(Duration::from_secs(30), || child.try_wait().unwrap());
        if status.is_none() {
            let _ = child.kill();
            panic!("a second daemon on the same data directory kept running");
        }
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status.unwrap().code(), err)
    };
    for args in [&["daemon", "--listen", "127.0.0.1:0"][..], &["gameday", "--listen", "127.0.0.1:0"]] {
        let (code, err) = second(args);
        assert_eq!(code, Some(4), "{args:?}: {err}");
        assert!(err.contains("in use by another siege daemon"), "{err}");
        assert!(err.contains(&format!("pid {}", first.child.id())) && err.contains(&first.addr), "{err}");
    }
    // The first is untouched, and once it is gone the directory is free again.
    assert_eq!(first.get("/healthz").0, 200);
    first.kill_9();
    let again = TestDaemon::start(home.path(), data.path(), &[]);
    assert_eq!(again.get("/healthz").0, 200);
}

#[test]
fn a_lab_that_another_process_holds_is_refused_with_409_before_a_run_starts() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(lab.home.path(), data.path(), &[]);
    let file = scenario(lab.home.path(), &lab, "quick", 3, "");
    // What `siege run` against this lab takes first.
    let taken = lab.post("/v1/lease", json!({ "run_id": "cli-run-1", "ttl_ms": 60_000 }));
    assert_eq!(taken["granted"], true, "{taken}");
    let (s, v) = d.post("/v1/runs", json!({ "scenario": file }));
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("target-busy")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("run cli-run-1 since"), "{v}");
    assert!(d.store().list_runs(&Default::default()).unwrap().runs.is_empty(), "no run was recorded");
    assert_eq!(lab.post("/v1/lease/release", json!({ "run_id": "cli-run-1" }))["released"], true);
    let id = d.start_run(&file);
    assert_eq!(d.wait_finished(&id)["state"], "passed");
}

#[test]
fn every_error_has_the_json_shape_numbers_are_range_checked_and_any_body_type_is_read_as_json() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(home.path(), data.path(), &[]);
    let auth = format!("Bearer {}", d.token);
    let call = |path: &str, kind: Option<&str>, body: &[u8]| {
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend(kind.map(|k| ("Content-Type", k)));
        let (s, b) = http(&d.addr, "POST", path, &headers, body);
        (s, json_of(&b))
    };
    // Numbers out of range: 400 with the JSON shape, before the run is even looked up.
    for body in [
        r#"{"rate": 10, "duration": 1e308}"#,
        r#"{"rate": 10, "duration": -1}"#,
        r#"{"rate": 1e308, "duration": 5}"#,
        r#"{"rate": "1e300/s", "duration": "5s"}"#,
        r#"{"rate": 10, "duration": "99999999999h"}"#,
    ] {
        let (s, v) = call("/v1/runs/nope/spike", None, body.as_bytes());
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid-request")), "{body}: {v}");
    }
    // The daemon is still there.
    assert_eq!(d.get("/healthz").0, 200);
    // curl's `-d` sends a form type: the JSON body is read all the same, on every JSON route.
    for kind in [Some("application/x-www-form-urlencoded"), Some("text/plain"), None] {
        let (s, v) = call("/v1/runs", kind, br#"{"scenario": "no-such-scenario"}"#);
        assert_eq!((s, v["error"]["code"].as_str()), (404, Some("unknown-scenario")), "{kind:?}: {v}");
        let (s, v) = call("/v1/runs/nope/inject", kind, br#"{"fault": "x"}"#);
        assert_eq!((s, v["error"]["code"].as_str()), (404, Some("no-such-run")), "{kind:?}: {v}");
    }
    // A body over the limit: 413 in the JSON shape.
    // The server may answer before it has read it all: what it answered counts.
    let mut conn = TcpStream::connect(&d.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let big = vec![b' '; 3 << 20];
    let head = format!(
        "POST /v1/runs HTTP/1.0\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    let _ = conn.write_all(&big);
    let mut resp = vec![];
    let _ = conn.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    let (status, body) = resp.split_once("\r\n\r\n").expect("an answer");
    assert!(status.starts_with("HTTP/1.0 413") || status.starts_with("HTTP/1.1 413"), "{resp}");
    let v = json_of(body);
    assert_eq!(v["error"]["code"], "body-too-large", "{v}");
    // Not JSON at all: 400, not a plain-text answer.
    let (s, v) = call("/v1/runs", Some("application/json"), b"{nope");
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid-request")), "{v}");
}

#[test]
fn a_history_damaged_in_the_middle_is_refused_at_start_with_what_to_do() {
    let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let path = data.path().join("history.db");
    {
        let store = Store::open(&path).unwrap();
        for i in 0..400 {
            let id = format!("run-{i:04}");
            let started_at = "2026-12-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap();
            let new = NewRun {
                id: id.clone(),
                scenario: "task-kill".into(),
                target: "lab".into(),
                trigger: Trigger::Api,
                schedule: None,
                started_at,
                blind: false,
            };
            store.insert_run(&new).unwrap();
            let record = Some(format!("{{\"pad\": \"{}\"}}", "x".repeat(2000)));
            let end =
                RunEnd { state: RunState::Passed, finished_at: started_at, time_to_detect: None, mttr: None, record };
            store.finish_run(&id, &end).unwrap();
        }
    }
    // Garbage over pages in the middle of the file, as a disk or a copy gone wrong leaves it.
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 200_000, "{len}");
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(len / 2 / 4096 * 4096)).unwrap();
    f.write_all(&[0xA5; 3 * 4096]).unwrap();
    drop(f);
    let out = common::siege()
        .env("SIEGE_HOME", home.path())
        .args(["daemon", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .output()
        .expect("run siege daemon");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("is damaged") && err.contains("move it aside"), "{err}");
    assert!(out.stdout.is_empty(), "it never said it listens: {}", String::from_utf8_lossy(&out.stdout));
}

/// The `curl` commands of a Markdown file's `sh` blocks, continuation lines joined.
fn curl_examples(doc: &str) -> Vec<String> {
    let mut out = vec![];
    let mut in_sh = false;
    let mut cmd = String::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        cmd += line.trim_end_matches('\\');
        if line.ends_with('\\') {
            continue;
        }
        if cmd.trim_start().starts_with("curl ") {
            out.push(cmd.trim().to_string());
        }
        cmd.clear();
    }
    out
}

#[test]
fn the_curl_examples_of_the_docs_work_as_written() {
    let (home, data, cwd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let d = TestDaemon::start(home.path(), data.path(), &[]);
    let root = common::repo_root();
    let mut examples = curl_examples(&std::fs::read_to_string(root.join("docs/daemon.md")).unwrap());
    examples.extend(curl_examples(&std::fs::read_to_string(root.join("README.md")).unwrap()));
    assert!(examples.len() >= 9, "{examples:#?}");
    let token_file = data.path().join("token");
    let mut started: Vec<String> = vec![];
    for example in &examples {
        // This daemon's address and token; a stream is read for a moment only.
        let cmd = example
            .replace("http://127.0.0.1:7878", &format!("http://{}", d.addr))
            .replace("~/.local/state/siege/daemon/token", &token_file.display().to_string())
            .replace("@scenarios/", &format!("@{}/scenarios/", root.display()))
            .replace("curl -N", "curl -N --max-time 1");
        let id = started.first().cloned().unwrap_or_default();
        let out = std::process::Command::new("bash")
            .args(["-c", &cmd])
            .current_dir(cwd.path())
            .env("TOKEN", &d.token)
            .env("ID", &id)
            .output()
            .expect("run bash");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            // A stream or a downloaded file: it was answered.
            assert!(out.status.success() || cmd.contains("--max-time"), "{cmd}: {out:?}");
            continue;
        };
        if let Some(id) = v["id"].as_str() {
            started.push(id.to_string());
            continue;
        }
        // Understood as written: no complaint about the body, its type or the route.
        let code = v["error"]["code"].as_str().unwrap_or("");
        assert!(
            ![
                "invalid-request",
                "unsupported-media-type",
                "not-found",
                "method-not-allowed",
                "internal",
                "unauthorized",
                "forbidden"
            ]
            .contains(&code),
            "{example}\n→ {v}"
        );
    }
    assert!(started.len() >= 2, "the task-kill and latency runs: {started:?}");
    for id in &started {
        let (s, v) = d.post(&format!("/v1/runs/{id}/stop"), json!({}));
        assert!(s == 200 || v["error"]["code"] == "run-ended", "{v}");
    }
    for id in &started {
        d.wait_finished(id);
    }
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

/// A lab, a data directory and a config with one schedule `often` of the 2 s scenario `quick`
/// every `every`.
fn lab_with_schedule(every: &str) -> (TestLab, tempfile::TempDir, PathBuf) {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    scenario(lab.home.path(), &lab, "quick", 2, "");
    let text = format!("schedules:\n  - {{ name: often, scenario: quick.yaml, every: {every} }}\n");
    let config = write_config(lab.home.path(), &text);
    (lab, data, config)
}

#[test]
fn a_schedule_fires_within_a_second_of_its_due_time_and_its_run_lands_in_history() {
    let (lab, data, config) = lab_with_schedule("3s");
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

/// The error code of an API answer.
fn code_of(v: &Value) -> Option<&str> {
    v["error"]["code"].as_str()
}

#[test]
fn a_running_run_takes_injections_a_spike_and_marks_through_the_api_and_refusals_have_stable_codes() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(lab.home.path(), data.path(), &[]);
    let file = lab.home.path().join("manual.yaml");
    let yaml = format!(
        "name: manual\ntarget:\n  lab: {{ service: api, tasks: 3, control: \"{}\" }}\n\
         load: {{ url: /, rate: 20/s, duration: 40s, timeout: 2s }}\nsteady_state: {{ error_rate: \"< 5%\" }}\n\
         recovery: {{ within: 5s, hold: 1s }}\n\
         manual:\n  - {{ name: drift, type: secret-drift }}\n  - {{ name: slow, type: latency, select: 1, delay: 20ms, for: 2s }}\n",
        lab.control
    );
    std::fs::write(&file, yaml).unwrap();
    let id = d.start_run(&file);
    let run = format!("/v1/runs/{id}");
    let inject = |body: Value| d.post(&format!("{run}/inject"), body);
    // Before the baseline is measured, an injection is refused and nothing changes.
    let (s, v) = inject(json!({ "fault": "drift" }));
    assert_eq!((s, code_of(&v)), (409, Some("not-now")), "{v}");
    assert_eq!(secret_version(&lab), 1);
    // By name, once the steady state held: the lab's secret is rotated.
    let (s, v) = wait_for(Duration::from_secs(30), || {
        let (s, v) = inject(json!({ "fault": "drift" }));
        (code_of(&v) != Some("not-now")).then_some((s, v))
    })
    .expect("the baseline gate passed");
    assert_eq!(s, 200, "{v}");
    assert_eq!(secret_version(&lab), 2);
    // The reply comes just before the event that /metrics counts.
    let counted = wait_for(Duration::from_secs(5), || {
        let (_, metrics) = http(&d.addr, "GET", "/metrics", &[], b"");
        metrics.contains("siege_active_faults{scenario=\"manual\"} 1\n").then_some(())
    });
    assert!(counted.is_some(), "{}", http(&d.addr, "GET", "/metrics", &[], b"").1);
    // By number; a fault given in full, as JSON and as a YAML body.
    let (s, v) = inject(json!({ "number": 2 }));
    assert_eq!(s, 200, "{v}");
    let given = json!({ "fault": { "type": "cpu-stress", "select": 1, "percent": 10, "for": "1s" } });
    let (s, v) = inject(given);
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.post_raw(
        &format!("{run}/inject"),
        "application/yaml",
        b"type: latency\nname: yaml-slow\nselect: 1\ndelay: 5ms\nfor: 1s\n",
    );
    assert_eq!(s, 200, "{v}");
    // A fault mapping that is not valid: 422 with the diagnostics, as for a scenario.
    let (s, v) = inject(json!({ "fault": { "type": "task_kil", "select": 1 } }));
    assert_eq!((s, code_of(&v)), (422, Some("invalid-fault")), "{v}");
    let text = v["error"]["diagnostics"][0]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("request:") && text.contains("did you mean `task-kill`"), "{v}");
    let (s, v) =
        d.post_raw(&format!("{run}/inject"), "application/yaml", b"type: latency\nselect: 1\ndelay: 10ms\nfor: 5m\n");
    assert_eq!((s, code_of(&v)), (422, Some("invalid-fault")), "{v}");
    let text = v["error"]["diagnostics"][0]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("request:4:") && text.contains("longer than the whole load"), "{v}");
    // Refusals, each with its code; the run goes on.
    for (body, status, code) in [
        (json!({ "fault": "nope" }), 422, "unknown-fault"),
        (json!({ "number": 9 }), 422, "unknown-fault"),
        (json!({ "fault": "drift", "number": 1 }), 400, "invalid-request"),
        (json!({ "fault": 5 }), 400, "invalid-request"),
        (json!({ "falt": "drift" }), 400, "invalid-request"),
    ] {
        let (s, v) = inject(body.clone());
        assert_eq!((s, code_of(&v)), (status, Some(code)), "{body}: {v}");
    }
    let spike = |body: Value| d.post(&format!("{run}/spike"), body);
    let (s, v) = spike(json!({ "rate": 40, "duration": "2s" }));
    assert_eq!(s, 200, "{v}");
    for (body, status, code) in [
        (json!({ "rate": "40/s", "duration": "soon" }), 400, "invalid-request"),
        (json!({ "rate": 40, "duration": -2 }), 400, "invalid-request"),
        (json!({ "rate": 40 }), 400, "invalid-request"),
        (json!({ "rate": -1, "duration": 2 }), 400, "invalid-request"),
    ] {
        let (s, v) = spike(body.clone());
        assert_eq!((s, code_of(&v)), (status, Some(code)), "{body}: {v}");
    }
    let mark = |body: Value| d.post(&format!("{run}/marks"), body);
    let (s, v) = mark(json!({ "kind": "detected", "author": "alice", "text": "p95 is up", "fault": "slow" }));
    assert_eq!(s, 200, "{v}");
    for (body, status, code) in [
        (json!({ "kind": "maybe", "text": "?" }), 400, "invalid-request"),
        // A mark says who made it, and which injected fault it is about.
        (json!({ "kind": "detected", "fault": "slow" }), 422, "invalid-command"),
        (json!({ "kind": "detected", "author": "  ", "fault": "slow" }), 422, "invalid-command"),
        (json!({ "kind": "mitigated", "author": "alice" }), 422, "invalid-command"),
        (json!({ "kind": "mitigated", "author": "alice", "fault": "kill-all" }), 422, "unknown-fault"),
    ] {
        let (s, v) = mark(body.clone());
        assert_eq!((s, code_of(&v)), (status, Some(code)), "{body}: {v}");
    }
    // The instructor credits it to the fault it was about.
    let (s, v) = d.post(&format!("{run}/marks/1"), json!({ "fault": "drift" }));
    assert_eq!((s, v["done"].as_str()), (200, Some("mark 1 moved from slow to drift")), "{v}");
    let (s, v) = d.post(&format!("{run}/marks/9"), json!({ "fault": "drift" }));
    assert_eq!((s, code_of(&v)), (422, Some("invalid-command")), "{v}");
    // What the run reports.
    let (s, v) = d.post(&format!("{run}/stop"), json!({ "reason": "done" }));
    assert_eq!(s, 200, "{v}");
    let v = d.wait_finished(&id);
    assert_eq!(v["state"], "aborted", "{v}");
    let record = &v["record"];
    let faults: Vec<&str> = record["faults"].as_array().unwrap().iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(faults, ["drift", "slow", "cpu-stress", "yaml-slow"], "{record}");
    for f in record["faults"].as_array().unwrap() {
        assert!(f["injected_s"].is_number() && f["reverted_s"].is_number(), "injected and reverted: {f}");
    }
    assert_eq!(secret_version(&lab), 1, "reverted");
    let m = &record["marks"][0];
    assert_eq!(
        (m["author"].as_str(), m["text"].as_str(), m["fault"].as_str(), m["moved_from"].as_str()),
        (Some("alice"), Some("p95 is up"), Some("drift"), Some("slow"))
    );
    let stages: Vec<&Value> = record["timeline"].as_array().unwrap().iter().filter(|e| e["kind"] == "stage").collect();
    assert!(stages.iter().any(|e| e["text"].as_str().unwrap_or_default().contains("40")), "{stages:?}");
    let events = sse_messages(d.get(&format!("{run}/events")).1.as_str().unwrap());
    let injected: Vec<String> = events
        .iter()
        .filter(|m| m.1 == "fault-injected")
        .map(|m| json_of(&m.2)["event"]["fault"].to_string())
        .collect();
    assert_eq!(injected, ["\"drift\"", "\"slow\"", "\"cpu-stress\"", "\"yaml-slow\""]);
    assert!(events.iter().any(|m| m.1 == "stage-started" && json_of(&m.2)["event"]["rate"] == 40.0), "{events:?}");
    let (s, md) = http(&d.addr, "GET", &format!("{run}/report/report.md"), &[], b"");
    assert!(s == 200 && md.contains("yaml-slow") && md.contains("p95 is up"), "{md}");
    // A finished run takes no command; an unknown one is not found.
    for (path, body) in [
        ("inject", json!({ "fault": "slow" })),
        ("inject", json!({ "fault": { "type": "latency", "select": 1, "delay": "5ms", "for": "1s" } })),
        ("spike", json!({ "rate": 40, "duration": 2 })),
        ("marks", json!({ "kind": "note", "author": "alice", "text": "late" })),
        ("marks/1", json!({ "fault": "slow" })),
    ] {
        let (s, v) = d.post(&format!("{run}/{path}"), body);
        assert_eq!((s, code_of(&v)), (409, Some("run-ended")), "{path}: {v}");
    }
    let (s, v) = d.post("/v1/runs/nope/inject", json!({ "fault": "slow" }));
    assert_eq!((s, code_of(&v)), (404, Some("no-such-run")), "{v}");
}

/// The schedule's firings whose due time is after `after`.
fn firings_after(d: &TestDaemon, name: &str, after: jiff::Timestamp) -> Vec<Firing> {
    d.store().firings(name, 100).unwrap().into_iter().filter(|f| f.due > after).collect()
}

#[test]
fn a_paused_schedule_stays_paused_across_a_restart_resume_fires_it_again_and_trigger_runs_it_now() {
    let (lab, data, config) = lab_with_schedule("2s");
    let args = ["--config", config.to_str().unwrap()];
    let mut d = TestDaemon::start(lab.home.path(), data.path(), &args);
    let (s, v) = d.post("/v1/schedules/often/pause", json!({}));
    assert_eq!((s, v["paused"].as_bool()), (200, Some(true)), "{v}");
    let paused_at = jiff::Timestamp::now();
    let (s, v) = d.post("/v1/schedules/nope/pause", json!({}));
    assert_eq!((s, code_of(&v)), (404, Some("no-such-schedule")), "{v}");
    // The pause is kept in the history: a restart does not resume it.
    assert_eq!(d.sigterm(), Some(0));
    let d = TestDaemon::start(lab.home.path(), data.path(), &args);
    assert_eq!(d.get("/v1/schedules").1["schedules"][0]["paused"], true);
    let skipped = wait_for(Duration::from_secs(10), || {
        let f: Vec<Firing> =
            firings_after(&d, "often", paused_at).into_iter().filter(|f| f.outcome != FiringOutcome::Missed).collect();
        (f.len() >= 2).then_some(f)
    })
    .expect("two due times while paused");
    for f in &skipped {
        assert_eq!((f.outcome, f.reason.as_deref()), (FiringOutcome::Skipped, Some("the schedule is paused")), "{f:?}");
    }
    assert!(d.get("/v1/runs").1["runs"].as_array().unwrap().iter().all(|r| r["state"] != "running"));
    // Trigger: its scenario now, paused or not; a second trigger finds the target busy.
    let (s, v) = d.post("/v1/schedules/often/trigger", json!({}));
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (s, v) = d.post("/v1/schedules/often/trigger", json!({}));
    assert_eq!((s, code_of(&v)), (409, Some("target-busy")), "{v}");
    let run = d.wait_finished(&id);
    assert_eq!(
        (run["state"].as_str(), run["trigger"].as_str(), run["schedule"].as_str()),
        (Some("passed"), Some("api"), Some("often")),
        "{run}"
    );
    let (_, list) = d.get("/v1/runs?scenario=quick");
    assert!(list["runs"].as_array().unwrap().iter().any(|r| r["id"] == id.as_str()), "{list}");
    // Resumed, it fires again.
    let (s, v) = d.post("/v1/schedules/often/resume", json!({}));
    assert_eq!((s, v["paused"].as_bool()), (200, Some(false)), "{v}");
    let resumed_at = jiff::Timestamp::now();
    assert_eq!(d.get("/v1/schedules").1["schedules"][0]["paused"], false);
    let fired = wait_for(Duration::from_secs(10), || {
        firings_after(&d, "often", resumed_at).into_iter().find(|f| f.outcome == FiringOutcome::Fired)
    })
    .expect("a firing after the resume");
    let run = d.wait_finished(fired.run_id.as_deref().expect("its run"));
    assert_eq!((run["trigger"].as_str(), run["schedule"].as_str()), (Some("schedule"), Some("often")), "{run}");
}

fn schedule_names(d: &TestDaemon) -> Vec<String> {
    let (_, v) = d.get("/v1/schedules");
    v["schedules"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn sighup_and_reload_read_the_config_again_and_a_broken_one_leaves_the_old_in_force() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("s.yaml"), "name: s\n").unwrap();
    let config = write_config(home.path(), "schedules:\n  - { name: first, scenario: s.yaml, every: 1h }\n");
    let log = home.path().join("daemon.log");
    let d = TestDaemon::spawn(home.path(), data.path(), &["--config", config.to_str().unwrap()], &[], Some(&log));
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(schedule_names(&d), ["first"]);
    write_config(
        home.path(),
        "schedules:\n  - { name: second, scenario: s.yaml, every: 1h }\n  - { name: third, scenario: s.yaml, cron: \"@daily\" }\n",
    );
    d.signal(libc::SIGHUP);
    let reloaded = wait_for(Duration::from_secs(5), || (schedule_names(&d) == ["second", "third"]).then_some(()));
    assert!(reloaded.is_some(), "{:?}; log: {}", schedule_names(&d), logged());
    assert!(logged().contains("SIGHUP: config reloaded (2 schedule(s))"), "{}", logged());
    // A broken config: logged, and the old one stays.
    write_config(home.path(), "schedules:\n  - { name: fourth, scenario: s.yaml, evry: 1h }\n");
    d.signal(libc::SIGHUP);
    let refused = wait_for(Duration::from_secs(5), || logged().contains("the old one stays in force").then_some(()));
    assert!(refused.is_some(), "{}", logged());
    assert!(
        wait_for(Duration::from_secs(2), || logged().contains("daemon.yaml:2:").then_some(())).is_some(),
        "{}",
        logged()
    );
    assert_eq!(schedule_names(&d), ["second", "third"]);
    // Through the API: the diagnostics in the answer.
    let (s, v) = d.post("/v1/reload", json!({}));
    assert_eq!((s, code_of(&v)), (422, Some("invalid-config")), "{v}");
    let diags = v["error"]["diagnostics"].as_array().expect("diagnostics");
    assert!(
        diags.iter().any(|d| d["text"].as_str().is_some_and(|t| t.contains("daemon.yaml:2:39: schedules[0].evry"))),
        "{v}"
    );
    assert_eq!(schedule_names(&d), ["second", "third"]);
    write_config(home.path(), "schedules:\n  - { name: fifth, scenario: s.yaml, every: 1h }\n");
    let (s, v) = d.post("/v1/reload", json!({}));
    assert_eq!((s, v["reloaded"].as_bool(), v["schedules"].as_u64()), (200, Some(true), Some(1)), "{v}");
    assert_eq!(schedule_names(&d), ["fifth"]);
    // Without --config there is nothing to reload.
    let other = tempfile::tempdir().unwrap();
    let bare = TestDaemon::start(home.path(), other.path(), &[]);
    let (s, v) = bare.post("/v1/reload", json!({}));
    assert_eq!((s, code_of(&v)), (409, Some("no-config")), "{v}");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the failpoint exists in debug builds only")]
fn after_sigterm_new_runs_get_503_and_a_second_sigterm_hurries_a_slow_revert_to_the_end() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    // The first revert attempt waits 30 s.
    let mut d = TestDaemon::spawn(lab.home.path(), data.path(), &[], &[("SIEGE_FAILPOINT", "slow-revert")], None);
    let file = scenario(lab.home.path(), &lab, "drift", 60, "{ name: drift, type: secret-drift, at: 1s }");
    let id = d.start_run(&file);
    assert!(wait_for(Duration::from_secs(30), || (secret_version(&lab) == 2).then_some(())).is_some());
    d.signal(libc::SIGTERM);
    let first = Instant::now();
    let stopping =
        wait_for(Duration::from_secs(5), || (d.get("/healthz").1["status"] == "shutting-down").then_some(()));
    assert!(stopping.is_some(), "healthz says shutting-down");
    let (s, v) = d.post("/v1/runs", json!({ "scenario": file }));
    assert_eq!((s, code_of(&v)), (503, Some("shutting-down")), "{v}");
    // The revert is held up: the fault is still in place and the daemon still up. (A second
    // passes on purpose: what is checked is that nothing happens in it.)
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(secret_version(&lab), 2);
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon waits for its run");
    assert_eq!(d.get(&format!("/v1/runs/{id}")).1["state"], "running");
    d.signal(libc::SIGTERM);
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(first.elapsed() < Duration::from_secs(25), "the second SIGTERM cut the wait short: {:?}", first.elapsed());
    assert_eq!(secret_version(&lab), 1, "reverted all the same");
    let run = d.store().run(&id).unwrap().expect("the run");
    assert_eq!(run.state, RunState::Interrupted);
    let record = json_of(run.record.as_deref().expect("its record"));
    assert!(record["faults"][0]["reverted_s"].is_number(), "{}", record["faults"]);
    assert!(d.store().file(&id, "report.md").unwrap().is_some(), "its report is stored");
    assert!(std::fs::read_dir(data.path().join("journals")).unwrap().next().is_none(), "no journal left");
}

#[test]
fn retention_deletes_older_runs_with_their_events_and_files_once_a_run_finishes() {
    let lab = TestLab::up(&[]);
    let data = tempfile::tempdir().unwrap();
    // A run of another scenario, three hours old, with a file.
    {
        let store = Store::open(&data.path().join("history.db")).unwrap();
        let old = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(3);
        let new = NewRun {
            id: "ancient".into(),
            scenario: "other".into(),
            target: "lab".into(),
            trigger: Trigger::Api,
            schedule: None,
            started_at: old,
            blind: false,
        };
        store.insert_run(&new).unwrap();
        let end = RunEnd { state: RunState::Passed, finished_at: old, time_to_detect: None, mttr: None, record: None };
        store.finish_run("ancient", &end).unwrap();
        store.put_file("ancient", "report.md", b"# old").unwrap();
    }
    let config = write_config(lab.home.path(), "retention: { keep_runs: 1, max_age: 1h }\n");
    let d = TestDaemon::start(lab.home.path(), data.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(d.get("/v1/runs/ancient").0, 200, "nothing is deleted until a run ends");
    let file = scenario(lab.home.path(), &lab, "quick", 2, "");
    let first = d.start_run(&file);
    assert_eq!(d.wait_finished(&first)["state"], "passed");
    assert_eq!(d.get("/v1/runs/ancient").0, 404, "older than max_age, whatever its scenario");
    assert_eq!(d.get(&format!("/v1/runs/{first}")).0, 200, "the newest of its scenario");
    let second = d.start_run(&file);
    assert_eq!(d.wait_finished(&second)["state"], "passed");
    let (s, v) = d.get(&format!("/v1/runs/{first}"));
    assert_eq!((s, code_of(&v)), (404, Some("no-such-run")), "one run kept per scenario: {v}");
    let (s, _) = http(&d.addr, "GET", &format!("/v1/runs/{first}/report/report.md"), &[], b"");
    assert_eq!(s, 404);
    let (_, list) = d.get("/v1/runs");
    let ids: Vec<&str> = list["runs"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, [second.as_str()]);
    // Only the kept run's events and files are left in the database, and no report on disk.
    let db = rusqlite::Connection::open(data.path().join("history.db")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    let kept = "(SELECT rowid FROM runs WHERE id = ?)".replace('?', &format!("'{second}'"));
    assert_eq!(count(&format!("SELECT count(*) FROM run_files WHERE run != {kept}")), 0);
    assert_eq!(count(&format!("SELECT count(*) FROM run_events WHERE run != {kept}")), 0);
    assert!(count(&format!("SELECT count(*) FROM run_files WHERE run = {kept}")) >= 3);
    let on_disk = std::fs::read_dir(data.path().join("reports")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(on_disk, 0, "report directories are removed once stored");
    let (s, _) = http(&d.addr, "GET", &format!("/v1/runs/{second}/report/report.md"), &[], b"");
    assert_eq!(s, 200);
}
