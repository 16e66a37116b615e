//! Integration tests: `siege gameday` and its page. The roles through the real binary's API,
//! and the page driven in a real headless chromium through chromedriver's WebDriver protocol
//! (plain HTTP + JSON; Debian's `chromium` and `chromium-driver`, installed by scripts/test). A
//! browser that cannot start fails the test. Screenshots and figures go to
//! `target/gameday-artifacts/`.

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{self, wait_for};
use crate::daemon::{http, json_of};
use crate::lab::TestLab;

/// A `siege gameday` on a free loopback port; its links. Stopped with SIGINT on drop.
struct Gameday {
    child: Child,
    addr: String,
    instructor: String,
    participant: String,
    token: String,
    participant_token: String,
}

impl Gameday {
    fn start(home: &Path, data: &Path, scenarios: &Path) -> Gameday {
        Gameday::start_with(home, data, scenarios, &[])
    }

    fn start_with(home: &Path, data: &Path, scenarios: &Path, extra: &[&str]) -> Gameday {
        let mut child = common::siege()
            .env("SIEGE_HOME", home)
            .arg("gameday")
            .arg(scenarios)
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn siege gameday");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut lines = vec![];
        for _ in 0..3 {
            let mut l = String::new();
            out.read_line(&mut l).expect("a line of siege gameday");
            lines.push(l.trim().to_string());
        }
        std::thread::spawn(move || for _ in out.lines() {});
        let after = |prefix: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` line in {lines:?}"))
                .trim()
                .to_string()
        };
        let (instructor, participant) = (after("siege gameday: instructor:"), after("siege gameday: participants:"));
        let addr = instructor.trim_start_matches("http://").split('/').next().unwrap().to_string();
        let token_of = |url: &str| url.split("#token=").nth(1).expect("a token in the link").to_string();
        let (token, participant_token) = (token_of(&instructor), token_of(&participant));
        Gameday { child, addr, instructor, participant, token, participant_token }
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let (s, b) = http(&self.addr, method, path, &headers, body.to_string().as_bytes());
        (s, if b.trim().is_empty() { Value::Null } else { json_of(&b) })
    }

    fn get_text(&self, path: &str) -> (u16, String) {
        http(&self.addr, "GET", path, &[], b"")
    }

    fn run(&self, id: &str) -> Value {
        json_of(&self.get_text(&format!("/v1/runs/{id}")).1)
    }

    /// SIGINT (Ctrl-C); the exit code.
    fn ctrl_c(&mut self) -> Option<i32> {
        // SAFETY: SIGINT to the process this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Gameday {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.ctrl_c();
        }
    }
}

/// A short scenario on the lab at its control URL, with a task kill on the timeline and a manual
/// catalog (a latency fault, a task kill).
fn scenario(dir: &Path, lab: &TestLab, name: &str, secs: u32) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let yaml = format!(
        "name: {name}\ntarget:\n  lab: {{ service: api, tasks: 3, control: \"{}\" }}\n\
         load: {{ url: /, rate: 20/s, duration: {secs}s, timeout: 2s }}\n\
         steady_state: {{ error_rate: \"< 5%\", p95: \"< 1500ms\", healthy_targets: \">= 1\" }}\n\
         faults: [ {{ type: task-kill, at: 4s, select: 1 }} ]\n\
         manual:\n  - {{ type: latency, name: slow-one, for: 6s, select: 1, delay: 300ms }}\n  - {{ type: task-kill, name: kill-one, select: 1 }}\n\
         recovery: {{ within: 10s, hold: 2s }}\n",
        lab.control
    );
    std::fs::write(&path, yaml).expect("write scenario");
    path
}

fn start_run(g: &Gameday, file: &Path, blind: bool) -> String {
    let (s, v) = g.call("POST", "/v1/runs", &g.token, json!({ "scenario": file, "blind": blind }));
    assert_eq!(s, 202, "{v}");
    v["id"].as_str().expect("id").to_string()
}

/// Injects `fault` as the instructor, again while the run says "not now" (the baseline).
fn inject_when_ready(g: &Gameday, id: &str, fault: &str) {
    let path = format!("/v1/runs/{id}/inject");
    let r = wait_for(Duration::from_secs(60), || {
        let (s, v) = g.call("POST", &path, &g.token, json!({ "fault": fault }));
        (v["error"]["code"] != "not-now").then_some((s, v))
    });
    let (s, v) = r.expect("the run never took a manual fault");
    let events = || g.get_text(&format!("/v1/runs/{id}/events")).1;
    assert_eq!(s, 200, "{v}: {}", events());
}

fn lab_faults(lab: &TestLab) -> Vec<String> {
    lab.state()["faults"].as_array().unwrap().iter().map(|f| f.as_str().unwrap_or_default().to_string()).collect()
}

#[test]
fn a_participant_may_mark_but_not_inject_spike_stop_or_start_and_ctrl_c_reverts_every_fault() {
    let (data, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lab = TestLab::up(&[]);
    let file = scenario(dir.path(), &lab, "roles", 40);
    let mut g = Gameday::start(lab.home.path(), data.path(), dir.path());
    assert_ne!(g.token, g.participant_token);
    let mode = std::fs::metadata(data.path().join("participant-token")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_to_string(data.path().join("participant-token")).unwrap().trim(), g.participant_token);

    // The page and the scenarios it lists: only the given directory's.
    let (s, page) = g.get_text("/");
    assert_eq!(s, 200);
    assert!(page.contains("/ui/app.js"), "{page}");
    let (_, v) = g.call("GET", "/v1/scenarios", &g.participant_token, Value::Null);
    let names: Vec<&str> = v["scenarios"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["roles"], "{v}");
    assert_eq!(v["scenarios"][0]["manual"][0]["name"], "slow-one");
    assert_eq!(g.call("GET", "/v1/whoami", &g.participant_token, Value::Null).1["role"], "participant");
    assert_eq!(g.call("GET", "/v1/whoami", &g.token, Value::Null).1["role"], "instructor");

    // A second `siege gameday` on that address uses the running daemon and prints its links.
    let again_with = |data: &Path| {
        common::siege()
            .env("SIEGE_HOME", lab.home.path())
            .args(["gameday", "--listen", &g.addr, "--data"])
            .arg(data)
            .output()
            .expect("run siege gameday again")
    };
    let again = again_with(data.path());
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{text}");
    assert!(text.contains("using the siege daemon already on"), "{text}");
    assert!(text.contains(&g.instructor) && text.contains(&g.participant), "{text}");
    // With another daemon's data directory: refused, and no token is made up there.
    let other = tempfile::tempdir().unwrap();
    for tokens in [false, true] {
        if tokens {
            std::fs::write(other.path().join("token"), "not-this-daemons").unwrap();
            std::fs::write(other.path().join("participant-token"), "nor-this").unwrap();
        }
        let wrong = again_with(other.path());
        let err = String::from_utf8_lossy(&wrong.stderr);
        assert_eq!(wrong.status.code(), Some(4), "{err}");
        assert!(err.contains("pass that daemon's --data"), "{err}");
        assert!(!String::from_utf8_lossy(&wrong.stdout).contains("#token="));
        if !tokens {
            assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0, "no token file is made up");
        }
    }

    let p = g.participant_token.clone();
    let (s, v) = g.call("POST", "/v1/runs", &p, json!({ "scenario": file }));
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("participant-forbidden")), "{v}");
    // By the name the page lists: the game day's directory is where names are looked up too.
    let (s, v) = g.call("POST", "/v1/runs", &g.token, json!({ "scenario": "roles", "blind": true }));
    assert_eq!(s, 202, "{v}");
    // The same start again at once is a double click: refused, naming the run the first began.
    let (s2, v2) = g.call("POST", "/v1/runs", &g.token, json!({ "scenario": "roles", "blind": true }));
    assert_eq!((s2, v2["error"]["code"].as_str()), (409, Some("repeated-start")), "{v2}");
    let first = v["id"].as_str().unwrap();
    assert!(v2["error"]["message"].as_str().is_some_and(|m| m.contains(first)), "{v2}");
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(g.run(&id)["blind"], true);
    for (path, body) in [
        ("inject", json!({ "fault": "slow-one" })),
        ("spike", json!({ "rate": 40, "duration": 3 })),
        ("stop", json!({})),
        ("marks/1", json!({ "fault": "slow-one" })),
    ] {
        let (s, v) = g.call("POST", &format!("/v1/runs/{id}/{path}"), &p, body);
        assert_eq!((s, v["error"]["code"].as_str()), (403, Some("participant-forbidden")), "{path}: {v}");
    }
    let (s, v) = g.call("POST", &format!("/v1/runs/{id}/marks"), "nope", json!({ "kind": "note", "text": "x" }));
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");

    // The instructor injects, a participant marks; Ctrl-C stops everything, the fault reverted.
    inject_when_ready(&g, &id, "slow-one");
    // The participant names the fault by the alias its stream shows; the daemon maps it back.
    let alias = siege::daemon::web::fault_alias(&g.token, &id, "slow-one");
    let mark = json!({ "kind": "detected", "author": "bob", "fault": alias });
    let (s, v) = g.call("POST", &format!("/v1/runs/{id}/marks"), &p, mark);
    assert_eq!(s, 200, "{v}");
    let done = v["done"].as_str().unwrap_or_default();
    assert!(done.contains(&format!("for {alias}")) && !done.contains("slow-one"), "the answer keeps the alias: {v}");
    // A guessed name is not confirmed: only an alias is taken from a participant.
    let guessed = json!({ "kind": "note", "author": "bob", "fault": "slow-one" });
    let (s, v) = g.call("POST", &format!("/v1/runs/{id}/marks"), &p, guessed);
    assert!(s == 422 && v["error"]["code"] == "unknown-fault" && !v.to_string().contains("slow-one"), "{v}");
    // A refusal lists the faults injected by their aliases too.
    let unnamed = json!({ "kind": "mitigated", "author": "bob" });
    let (s, v) = g.call("POST", &format!("/v1/runs/{id}/marks"), &p, unnamed);
    let refused = v["error"]["message"].as_str().unwrap_or_default();
    assert!(s == 422 && refused.contains(&alias) && !refused.contains("slow-one"), "{v}");
    assert!(lab_faults(&lab).iter().any(|f| f.starts_with("latency 300ms")), "{:?}", lab_faults(&lab));

    // A blind run's stream names the fault to the instructor only; the others get an alias.
    let events = format!("/v1/runs/{id}/events");
    let teacher = stream_for(&g.addr, &events, Some(&g.token));
    assert!(teacher.contains(r#""fault":"slow-one""#) && teacher.contains("300ms"), "{teacher}");
    // What a browser's stream carries: a read token for this run, with the asker's role.
    let read_token = |who: &str| {
        let (s, v) = g.call("GET", &format!("/v1/runs/{id}/read-token"), who, Value::Null);
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().expect("a read token").to_string()
    };
    let teacher = stream_for(&g.addr, &format!("{events}?token={}", read_token(&g.token)), None);
    assert!(teacher.contains(r#""fault":"slow-one""#), "the instructor's read token: {teacher}");
    for (who, seen) in [
        ("participant", stream_for(&g.addr, &format!("{events}?token={}", read_token(&p)), None)),
        ("no token", stream_for(&g.addr, &events, None)),
        // The daemon's own tokens are never taken from an address.
        ("the instructor's token in the address", stream_for(&g.addr, &format!("{events}?token={}", g.token), None)),
    ] {
        let injected: Vec<&str> = seen.lines().filter(|l| l.contains(r#""type":"fault-injected""#)).collect();
        assert!(!injected.is_empty(), "{who}: {seen}");
        assert!(injected.iter().all(|l| l.contains(r#""fault":"fault-"#) && l.contains("hidden until the run ends")));
        for leak in ["slow-one", "300ms", "task-kill", "fault-injecting", "\"next\":{"] {
            assert!(!seen.contains(leak), "{who} sees {leak}: {seen}");
        }
        assert!(seen.contains(r#""author":"bob""#) && seen.contains("second-closed"), "{who}: {seen}");
    }
    assert_eq!(g.ctrl_c(), Some(0));
    assert_eq!(lab_faults(&lab), Vec::<String>::new());
    let store = siege::daemon::store::Store::open(&data.path().join("history.db")).unwrap();
    let run = store.run(&id).unwrap().expect("the run in the history");
    assert_eq!(run.state.to_string(), "interrupted");
    let events: Vec<String> = store.events(&id, 0, 10_000).unwrap().into_iter().map(|e| e.json).collect();
    assert!(events.iter().any(|e| e.contains("\"type\":\"fault-reverted\"") && e.contains("slow-one")), "{events:?}");
    assert!(events.iter().any(|e| e.contains("\"author\":\"bob\"")));
    drop(store);

    // Blind is kept in the history; once the run has ended, everyone sees the fault's name.
    let g = Gameday::start(lab.home.path(), data.path(), dir.path());
    assert_eq!(g.run(&id)["blind"], true);
    let seen = stream_for(&g.addr, &format!("/v1/runs/{id}/events?token={p}"), None);
    assert!(seen.contains(r#""fault":"slow-one""#), "{seen}");
}

/// What a server-sent event stream of the daemon gives within a second and a half (all of a
/// finished run's; what a running run has said so far).
fn stream_for(addr: &str, path: &str, token: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the daemon");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let (mut out, mut buf, t0) = (vec![], [0u8; 65536], Instant::now());
    while t0.elapsed() < Duration::from_millis(1500) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn with_allow_remote_reads_need_a_token_in_a_header_or_a_read_token_for_one_run_and_the_page_needs_none() {
    let (home, data, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    {
        use siege::daemon::store::{NewRun, RunEnd, RunState, Store, Trigger};
        let store = Store::open(&data.path().join("history.db")).unwrap();
        let at = "2026-12-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap();
        for id in ["r1", "r2"] {
            let new = NewRun {
                id: id.into(),
                scenario: "s".into(),
                target: "lab".into(),
                trigger: Trigger::Api,
                schedule: None,
                started_at: at,
                blind: false,
            };
            store.insert_run(&new).unwrap();
            let end =
                RunEnd { state: RunState::Passed, finished_at: at, time_to_detect: None, mttr: None, record: None };
            store.finish_run(id, &end).unwrap();
            store.put_file(id, "report.md", b"# report").unwrap();
        }
    }
    let g = Gameday::start_with(home.path(), data.path(), dir.path(), &["--allow-remote"]);
    for asset in ["/", "/ui/app.js", "/ui/app.css"] {
        assert_eq!(g.get_text(asset).0, 200, "{asset}");
    }
    assert_eq!(g.get_text("/v1/runs").0, 401);
    assert_eq!(g.get_text("/v1/scenarios").0, 401);
    // A token in the address is not taken: it would land in browser history and server logs.
    assert_eq!(g.get_text(&format!("/v1/runs?token={}", g.participant_token)).0, 401);
    assert_eq!(g.get_text(&format!("/v1/runs/r1/report/report.md?token={}", g.token)).0, 401);
    assert_eq!(g.call("GET", "/v1/scenarios", &g.participant_token, Value::Null).0, 200);
    assert_eq!(g.call("GET", "/v1/runs", &g.token, Value::Null).0, 200);
    // A read token reads its own run's events and files, nothing else.
    assert_eq!(g.get_text("/v1/runs/r1/read-token").0, 401);
    let (s, v) = g.call("GET", "/v1/runs/r1/read-token", &g.participant_token, Value::Null);
    assert_eq!((s, v["role"].as_str()), (200, Some("participant")), "{v}");
    let rt = v["token"].as_str().unwrap();
    assert!(!rt.contains(&g.participant_token) && !rt.contains(&g.token), "{rt}");
    let (s, body) = g.get_text(&format!("/v1/runs/r1/report/report.md?token={rt}"));
    assert_eq!((s, body.as_str()), (200, "# report"));
    assert_eq!(g.get_text(&format!("/v1/runs/r1/events?token={rt}")).0, 200);
    for other in ["/v1/runs/r2/report/report.md", "/v1/runs/r1", "/v1/runs", "/v1/scenarios"] {
        assert_eq!(g.get_text(&format!("{other}?token={rt}")).0, 401, "{other}");
    }
    assert_eq!(g.get_text(&format!("/v1/runs/r1/report/report.md?token={}x", &rt[..rt.len() - 1])).0, 401);
}

// ---- WebDriver -------------------------------------------------------------------------------

/// A chromedriver on a loopback port it chose; killed on drop.
struct Driver {
    child: Child,
    addr: String,
}

/// One HTTP/1.1 exchange with chromedriver: the JSON answer's `value`, or the WebDriver error.
fn wd(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect to chromedriver: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open: the answer ends after its Content-Length.
    let mut r = std::io::BufReader::new(s);
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).map_err(|e| e.to_string())? == 0 || l == "\r\n" {
            break;
        }
        if let Some((k, v)) = l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
            len = v.trim().parse().map_err(|_| format!("{k}: {v}"))?;
        }
        head += &l;
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(&buf);
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{head}: not JSON ({e}): {body}"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(format!("{method} {path}: {}", v["value"]));
    }
    Ok(v["value"].clone())
}

impl Driver {
    /// Starts chromedriver and waits for it to be ready; panics (the test fails) if it cannot.
    fn start() -> Driver {
        let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chromedriver is not installed: scripts/test installs Debian's chromium and chromium-driver");
        // Port 0: chromedriver binds a free port itself and names it on stdout, in
        // "ChromeDriver was started successfully on port N.".
        let mut child = Command::new(bin)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let mut said = String::new();
            for line in lines.by_ref().map_while(Result::ok) {
                let port = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok());
                if let Some(port) = port {
                    let _ = tx.send(Ok(port));
                    // Whatever else it prints is read and dropped: a full pipe would block it.
                    lines.for_each(drop);
                    return;
                }
                said += &line;
                said.push('\n');
            }
            let _ = tx.send(Err(said));
        });
        let mut d = Driver { child, addr: String::new() };
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(port)) => port,
            Ok(Err(said)) => panic!("chromedriver exited without saying its port:\n{said}"),
            Err(_) => panic!("chromedriver did not say its port within 20s"),
        };
        d.addr = format!("127.0.0.1:{port}");
        wait_for(Duration::from_secs(20), || wd(&d.addr, "GET", "/status", None).ok().filter(|v| v["ready"] == true))
            .expect("chromedriver never became ready");
        d
    }

    /// A new headless chromium with a fresh profile; panics if it cannot start.
    fn session(&self, profile: &Path) -> Session {
        self.session_sized(profile, (1400, 1100))
    }

    /// The same, with the window at `size` (a projector's 1600×1000, a laptop's 1280×720).
    fn session_sized(&self, profile: &Path, size: (u32, u32)) -> Session {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", format!("--window-size={},{}", size.0, size.1), format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let v =
            wd(&self.addr, "POST", "/session", Some(&caps)).unwrap_or_else(|e| panic!("chromium did not start: {e}"));
        Session { addr: self.addr.clone(), id: v["sessionId"].as_str().expect("sessionId").to_string() }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser.
struct Session {
    addr: String,
    id: String,
}

impl Session {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.id);
        let body = Some(&body).filter(|b| !b.is_null());
        wd(&self.addr, method, &path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page; its return value.
    fn js(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Waits until `script` returns something truthy; that value.
    fn wait(&self, what: &str, within: Duration, script: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.js(script);
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            if t0.elapsed() > within {
                let errors = self.js("return window.__siege && window.__siege.errors");
                panic!("{what}: not within {within:?} (page errors {errors})");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the status of `control` (a button's) says the run confirmed it.
    fn confirmed(&self, control: &str) {
        let script =
            format!("return document.querySelector('[data-control={control}]').textContent.startsWith('confirmed')");
        self.wait(&format!("{control} confirmed"), Duration::from_secs(10), &script);
    }

    fn element(&self, css: &str) -> String {
        let v = self.call("POST", "/element", json!({ "using": "css selector", "value": css }));
        v.as_object().and_then(|o| o.values().next()).and_then(|v| v.as_str()).expect("element id").to_string()
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), json!({}));
    }

    fn type_in(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/clear"), json!({}));
        self.call("POST", &format!("/element/{e}/value"), json!({ "text": text }));
    }

    fn screenshot(&self, path: &Path) {
        let v = self.call("GET", "/screenshot", Value::Null);
        std::fs::write(path, base64_decode(v.as_str().expect("base64"))).expect("write screenshot");
    }

    /// Fails if an event (a seq) stands twice on the run's timeline.
    fn timeline_shows_each_event_once(&self) {
        let seqs = self.js("return [...document.querySelectorAll('#timeline li')].map(l => l.dataset.seq)");
        let mut seen = std::collections::HashSet::new();
        assert!(seqs.as_array().unwrap().iter().all(|s| seen.insert(s.to_string())), "{seqs}");
    }

    /// The page's console messages at level SEVERE, and what its error collector caught.
    fn errors(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.js("return window.__siege.errors").as_array().unwrap().iter().map(|e| e.to_string()).collect();
        let logs = self.call("POST", "/se/log", json!({ "type": "browser" }));
        for l in logs.as_array().unwrap() {
            if l["level"] == "SEVERE" {
                out.push(l["message"].to_string());
            }
        }
        out
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = wd(&self.addr, "DELETE", &format!("/session/{}", self.id), None);
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).map(val).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn artifacts() -> PathBuf {
    let dir = common::repo_root().join("target/gameday-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn base64_decodes_what_webdriver_sends() {
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
    assert_eq!(base64_decode("iVBORw0KGgo="), [0x89, b'P', b'N', b'G', 13, 10, 26, 10]);
}

#[test]
fn heavy_a_class_runs_a_game_day_from_the_page() {
    let (data, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (prof_a, prof_b, prof_c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lab = TestLab::up(&[]);
    let file = scenario(dir.path(), &lab, "class-day", 45);
    // Every task must be healthy: the timeline's kill breaks the steady state until the
    // replacement is, which the health banner shows.
    let yaml =
        std::fs::read_to_string(&file).unwrap().replace("healthy_targets: \">= 1\"", "healthy_targets: \">= 3\"");
    let yaml = format!("description: the drill where a slow task hides among healthy ones\n{yaml}");
    std::fs::write(&file, yaml).unwrap();
    let g = Gameday::start(lab.home.path(), data.path(), dir.path());
    let driver = Driver::start();
    // The instructor's page is on the projector, the class's on laptops.
    let teacher = driver.session_sized(prof_a.path(), (1600, 1000));
    let class = driver.session_sized(prof_b.path(), (1280, 720));
    // The presenter view, opened by the instructor for the projector.
    let screen = driver.session_sized(prof_c.path(), (1600, 1000));
    let out = artifacts();

    // The instructor starts the scenario from the page.
    teacher.go(&g.instructor);
    teacher.wait(
        "the scenario's start button",
        Duration::from_secs(10),
        "return document.querySelector('button.start[data-scenario=\"class-day\"]')",
    );
    assert_eq!(teacher.js("return document.getElementById('role').textContent"), "instructor");
    // A blind run: the participants do not see which fault was injected until it ends.
    teacher.click("input.blind");
    // A double click starts one run.
    teacher.js("const b = document.querySelector('button.start[data-scenario=\"class-day\"]'); b.click(); b.click();");
    let id = teacher.wait(
        "the run's page",
        Duration::from_secs(10),
        "return new URLSearchParams(location.hash.slice(1)).get('run')",
    );
    let id = id.as_str().unwrap().to_string();
    teacher.wait(
        "the run running",
        Duration::from_secs(10),
        "return document.getElementById('verdict')?.textContent === 'running'",
    );

    let present = teacher.js("return document.getElementById('present-link').getAttribute('href')");
    screen.go(&format!("{}/{}", g.instructor.split("/#").next().unwrap(), present.as_str().unwrap()));
    screen.wait("the presenter's banner", Duration::from_secs(10), "return document.getElementById('health')");
    assert_eq!(screen.js("return location.hash"), format!("#present={id}"), "the token left the address bar");
    assert_eq!(screen.js("return !!document.getElementById('controls')"), false, "read only");
    let join = screen.js("return document.querySelector('#join b').textContent");
    let join = join.as_str().unwrap().to_string();
    assert!(join.contains(&format!("#token={}", g.participant_token)) && join.ends_with(&id), "{join}");
    // Its QR code, read back from what the projector shows.
    screen.wait("the QR code", Duration::from_secs(10), "return document.querySelector('#join-qr svg')");
    screen.screenshot(&out.join("presenter-join-1600.png"));
    let scan = std::process::Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(out.join("presenter-join-1600.png"))
        .output()
        .expect("zbarimg (Debian's zbar-tools; scripts/test installs it)");
    assert_eq!(String::from_utf8_lossy(&scan.stdout).trim(), join, "{scan:?}");

    // The timeline's kill: the banner turns red (the failing check in words), amber while the
    // steady state holds again but not yet for `hold`, green once held; on the projector and on
    // the laptops alike.
    class.go(&format!("{}&run={id}", g.participant));
    for (state, within) in [("broken", 30), ("recovering", 20), ("steady", 5)] {
        for (page, size) in [(&teacher, "1600"), (&class, "1280")] {
            page.wait(
                &format!("the banner {state} at {size}"),
                Duration::from_secs(within),
                &format!("return window.__siege.health.some(c => c.state === '{state}' && c.since > 0)"),
            );
            if state != "steady" {
                page.screenshot(&out.join(format!("live-{state}-{size}.png")));
            }
        }
    }
    let text = teacher.js("return document.getElementById('health').textContent").to_string();
    assert!(text.contains("STEADY"), "{text}");
    // New points on the charts within 2 s, again and again.
    let points = "return +document.querySelector('#chart-rate svg').dataset.points || 0";
    teacher.wait("the first points", Duration::from_secs(20), points);
    // (`wait` fails unless a check that started within the 2 s saw the new point.)
    for _ in 0..3 {
        let n = teacher.js(points).as_u64().unwrap();
        teacher.wait(
            "a new point",
            Duration::from_secs(2),
            &format!("return (+document.querySelector('#chart-rate svg').dataset.points || 0) > {n}"),
        );
    }
    assert!(teacher.js("return document.querySelectorAll('#chart-errors .threshold').length").as_u64() >= Some(1));
    let (_, runs) = g.call("GET", "/v1/runs", &g.token, Value::Null);
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "one run for a double click: {runs}");

    let changes = teacher.js("return window.__siege.health");
    let broke = changes.as_array().unwrap().iter().find(|c| c["state"] == "broken" && c["since"].as_f64() > Some(0.0));
    let broke = broke.expect("a break").clone();
    // The failing check in words: the dead task's errors, or the balancer's count of healthy targets.
    let detail = broke["detail"].as_str().unwrap_or_default();
    assert!(
        (detail.starts_with("error_rate ") && detail.contains("(want < 5%)"))
            || detail.contains("healthy_targets 2 (want >= 3)"),
        "{changes}"
    );
    let shown_after = broke["shownAt"].as_f64().unwrap() - broke["eventAt"].as_f64().unwrap();
    assert!((0.0..2000.0).contains(&shown_after), "shown {shown_after} ms after its second closed: {changes}");

    // Charts a room can read: text of at least 14 px, drawn at its own size (not stretched).
    let sizes = teacher.js(
        "return [...document.querySelectorAll('.chart svg text')].map(t => parseFloat(getComputedStyle(t).fontSize))",
    );
    let smallest = sizes.as_array().unwrap().iter().filter_map(Value::as_f64).fold(f64::INFINITY, f64::min);
    assert!((14.0..100.0).contains(&smallest), "smallest chart text {smallest} px: {sizes}");
    assert_eq!(teacher.js("return document.querySelectorAll('svg[preserveAspectRatio=\"none\"]').length"), 0);

    // The participant follows the run from their link; no instructor control there.
    class.go(&format!("{}&run={id}", g.participant));
    class.wait("the participant's controls", Duration::from_secs(10), "return document.getElementById('detected')");
    assert_eq!(class.js("return document.getElementById('role').textContent"), "participant");
    assert_eq!(class.js("return !!document.getElementById('inject') || !!document.getElementById('stop')"), false);
    let (s, v) = g.call("POST", &format!("/v1/runs/{id}/inject"), &g.participant_token, json!({ "fault": "slow-one" }));
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("participant-forbidden")), "{v}");

    // The instructor injects a manual fault with the button: pending, then confirmed by the run.
    // (Past the gate: in the faults or, once the timeline's kill is over, the recovery phase.)
    teacher.wait(
        "the gate passed",
        Duration::from_secs(30),
        "return ['faults', 'recovery'].includes(document.getElementById('phase')?.textContent)",
    );
    teacher.js("document.getElementById('fault-pick').value = 'slow-one'");
    // The injection window, as the run judges it: 45 s of load, less slow-one's 6 s, `within`
    // 10 s and `hold` 2 s.
    teacher.wait(
        "the injection window",
        Duration::from_secs(3),
        "return document.getElementById('inject-window').textContent.startsWith('until 27.0 s')",
    );
    teacher.click("#inject");
    teacher.confirmed("inject");
    let statuses = teacher.js("return window.__siege.statuses.filter(s => s.startsWith('inject'))").to_string();
    assert!(statuses.starts_with("[\"inject: pending…\",\"inject: confirmed"), "{statuses}");
    wait_for(Duration::from_secs(5), || lab_faults(&lab).iter().any(|f| f.starts_with("latency 300ms")).then_some(()))
        .unwrap_or_else(|| panic!("the lab never showed the fault: {:?}", lab_faults(&lab)));
    teacher.wait(
        "the active fault's countdown",
        Duration::from_secs(3),
        "return document.querySelector('#active-faults .countdown')",
    );
    teacher.wait(
        "the fault's band",
        Duration::from_secs(3),
        "return document.querySelectorAll('#chart-latency .fault-band').length >= 2",
    );

    class.wait(
        "the hidden fault on the participant's timeline",
        Duration::from_secs(5),
        "return document.getElementById('timeline').textContent.includes('blind run: hidden')",
    );
    let seen = class.js("return document.getElementById('main').textContent").to_string();
    assert!(!seen.contains("slow-one") && !seen.contains("300ms"), "{seen}");
    assert!(
        teacher
            .js("return document.getElementById('timeline').textContent")
            .to_string()
            .contains("fault slow-one injected")
    );

    // A spike for 3 s from the page, confirmed by the stage it started.
    teacher.type_in("#spike-secs", "3");
    teacher.click("#spike");
    teacher.confirmed("spike");
    teacher.wait(
        "the spike on the timeline",
        Duration::from_secs(2),
        "return document.getElementById('timeline').textContent.includes('rate 60/s')",
    );
    teacher.wait(
        "the spike shaded",
        Duration::from_secs(2),
        "return document.querySelector('#chart-rate .spike-band')",
    );

    // Stop asks first: the run goes on when the instructor says no.
    teacher.click("#stop");
    assert_eq!(teacher.js("return document.getElementById('stop-confirm').hidden"), false);
    teacher.click("#stop-no");
    assert_eq!(teacher.js("return document.getElementById('stop-confirm').hidden"), true);
    assert_eq!(teacher.js("return document.getElementById('verdict').textContent"), "running");

    // A reconnect without Last-Event-ID replays the stream: nothing shown twice.
    teacher.js("window.__siege.reconnect()");

    // A mark without a name is refused on the page, and sends nothing.
    class.js("document.getElementById('mark-name').value = ''");
    class.click("#detected");
    let refused = class.js("return document.querySelector('[data-control=detected]').textContent").to_string();
    assert!(refused.contains("write your name first"), "{refused}");
    // The mark is about the active fault, by the alias the class sees.
    let about = class.js("return document.getElementById('mark-fault').value").to_string();
    assert!(about.contains("fault-"), "the blind run's alias of the active fault: {about}");
    class.type_in("#mark-name", "alice");
    class.click("#detected");
    class.confirmed("detected");
    teacher.screenshot(&out.join("live.png"));
    // The presenter view of the blind run names no fault and says nothing of the scenario, but
    // shows who has marked.
    screen.wait(
        "alice's mark",
        Duration::from_secs(5),
        "return document.getElementById('marked')?.textContent.includes('alice (detected)')",
    );
    // (The run's id, in the address, names its scenario: docs/gameday.md says so.)
    let html = screen.js("return document.documentElement.outerHTML").to_string().replace(&id, "RUN");
    let text = screen.js("return document.body.innerText").to_string().replace(&id, "RUN");
    for secret in ["slow-one", "kill-one", "task-kill", "300ms", "slow task hides"] {
        assert!(!html.contains(secret), "the presenter view's page holds {secret}");
    }
    assert!(!text.contains("class-day"), "the presenter view shows the scenario's name: {text}");
    screen.screenshot(&out.join("presenter-1600.png"));
    class.click("#mitigated");
    class.confirmed("mitigated");
    teacher.type_in("#note-text", "the class found the slow task");
    teacher.click("#note");
    teacher.confirmed("note");
    assert_eq!(teacher.js("return document.getElementById('note-text').value"), "", "a sent note leaves its box");

    // The run ends: verdict, report with the marks and their times, the report's links.
    teacher.wait("the report", Duration::from_secs(90), "return document.querySelector('#report #marks')");
    // Once the run ended, the participants' page names the fault.
    class.wait(
        "the fault named",
        Duration::from_secs(20),
        "return document.getElementById('timeline')?.textContent.includes('fault slow-one injected')",
    );
    class.wait("the report", Duration::from_secs(20), "return document.querySelector('#report #marks')");
    let verdict = teacher.js("return document.getElementById('verdict').textContent");
    assert!(verdict == "passed" || verdict == "failed", "{verdict}");
    // The verdict replaces the banner; the timeline is in time order, the latest first.
    assert_eq!(teacher.js("return document.getElementById('health').dataset.state"), verdict);
    let times = teacher.js(
        "return [...document.querySelectorAll('#timeline li')].map(l => l.dataset.t).filter(t => t !== '').map(Number)",
    );
    let times: Vec<f64> = times.as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    assert!(times.len() > 5 && times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    // The banner's break began at the run's own first failing second after a steady one.
    let (_, stream) = g.get_text(&format!("/v1/runs/{id}/events"));
    let steady: Vec<(f64, bool)> = stream
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"]["type"] == "second-closed")
        .map(|e| (e["event"]["window"]["second"].as_f64().unwrap(), e["event"]["steady"] == true))
        .collect();
    let since = broke["since"].as_f64().unwrap();
    let at = |t: f64| steady.iter().find(|(s, _)| *s == t).map(|(_, ok)| *ok);
    assert_eq!((at(since - 1.0), at(since)), (Some(true), Some(false)), "{since}: {steady:?}");
    let marks = class.js("return document.getElementById('marks').textContent").to_string();
    assert!(marks.contains("detected (alice) for slow-one") && marks.contains("mitigated (alice)"), "{marks}");
    let human = teacher.js("return document.getElementById('human-times').textContent").to_string();
    assert!(human.contains("slow-one") && human.contains("alice"), "{human}");
    assert!(human.contains("siege (measured)"), "siege's own row beside the people's: {human}");
    let links = teacher.js("return [...document.querySelectorAll('#files a')].map(a => a.textContent).join(' ')");
    assert_eq!(links, "report.html junit.xml report.json report.md");
    // The report as a page: report.md's sections, its four charts inline.
    let html_href = teacher.js("return document.querySelectorAll('#files a')[0].getAttribute('href')");
    let (s, html) = g.get_text(html_href.as_str().expect("report.html's address"));
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("<h3>Human times</h3>") && html.contains("<td>alice</td>"), "{html}");
    assert_eq!(html.matches("<figure><svg").count(), 4, "{html}");
    // The fault's outage on the page is the one report.json measured.
    let json_href = teacher.js("return document.querySelectorAll('#files a')[2].getAttribute('href')");
    let (s, json) = g.get_text(json_href.as_str().expect("report.json's address"));
    assert_eq!(s, 200, "{json}");
    let rec: Value = serde_json::from_str(&json).expect("report.json");
    let faults = rec["faults"].as_array().expect("faults");
    let i = faults.iter().position(|f| f["name"] == "slow-one").unwrap_or_else(|| panic!("{rec}"));
    let effect = &faults[i]["effect"];
    let row = teacher.js(
        "return [...document.querySelectorAll('#fault-times tr')].map(r => r.textContent).find(t => t.startsWith('slow-one'))",
    );
    let row = row.as_str().unwrap_or_default();
    let shown = match effect["outage_s"].as_f64() {
        Some(o) => format!("{o:.1} s"),
        None if effect["already_broken"] == true => "–".to_string(),
        None if effect["broken_s"].is_null() => "none".to_string(),
        None => "not restored".to_string(),
    };
    assert!(row.starts_with("slow-one") && row.contains(&shown), "{row} against {effect}");
    // The link carries a read token of this run, never the instructor's token, and it opens.
    let href = teacher.js("return document.querySelector('#files a:last-child').getAttribute('href')");
    let href = href.as_str().expect("the link's address");
    assert!(href.contains("report.md?token=rt1.") && !href.contains(&g.token), "{href}");
    let (s, md) = g.get_text(href);
    assert_eq!(s, 200, "{md}");
    assert!(md.contains("Human times"), "{md}");
    assert!(md.contains("alice") && md.contains("detected") && md.contains("Human times"), "{md}");
    assert_eq!(lab_faults(&lab), Vec::<String>::new());

    // Every event once, none lost; no console error on either page.
    let (shown, last) = (teacher.js("return window.__siege.events"), teacher.js("return window.__siege.view.lastSeq"));
    assert_eq!(shown.as_i64(), last.as_i64().map(|l| l + 1));
    teacher.timeline_shows_each_event_once();
    for s in [&teacher, &class] {
        assert_eq!(s.errors(), Vec::<String>::new());
    }

    // Figures: engine event → page, page weight.
    let mut lat: Vec<f64> =
        teacher.js("return window.__siege.latencies").as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    lat.sort_by(f64::total_cmp);
    assert!(lat.len() > 30, "{} latencies", lat.len());
    let figures = format!(
        "events measured: {}\nevent to page p50: {} ms\nevent to page p99: {} ms\npage weight: {} bytes\n",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        siege::daemon::web::page_weight()
    );
    eprint!("{figures}");
    std::fs::write(out.join("figures.txt"), figures).unwrap();
    assert!(out.join("live.png").metadata().unwrap().len() > 1000);

    // The finished run's page opened afresh: the same charts from the replayed events, the report.
    teacher.js("location.reload()");
    teacher.wait(
        "the replayed charts",
        Duration::from_secs(10),
        "return (+document.querySelector('#chart-rate svg')?.dataset.points || 0) >= 40",
    );
    teacher.wait("the report", Duration::from_secs(10), "return document.querySelector('#report #human-times')");
    teacher.screenshot(&out.join("finished-1600.png"));
    // Once the run ended, the presenter view names the faults.
    screen.wait(
        "the faults named on the projector",
        Duration::from_secs(20),
        "return document.getElementById('timeline')?.textContent.includes('fault slow-one injected')",
    );
    screen.screenshot(&out.join("presenter-finished-1600.png"));
    screen.call("POST", "/window/rect", json!({ "width": 1280, "height": 720 }));
    screen.screenshot(&out.join("presenter-finished-1280.png"));
    assert_eq!(screen.errors(), Vec::<String>::new());
    // The debrief as the class reads it: report.html in the browser.
    screen.go(&format!("{}{}", g.instructor.split("/#").next().unwrap(), html_href.as_str().unwrap()));
    screen.wait(
        "the report's charts",
        Duration::from_secs(10),
        "return document.querySelectorAll('figure svg').length === 4",
    );
    screen.screenshot(&out.join("report-1600.png"));
    class.screenshot(&out.join("finished-1280.png"));
    assert_eq!(teacher.errors(), Vec::<String>::new());
}

/// A run cut off by a killed daemon has no final event: its stream ends each time it is opened.
/// Its page shows it ended (interrupted) and stops reconnecting.
#[test]
fn heavy_the_page_of_a_run_cut_off_by_a_killed_daemon_shows_it_ended_and_stops_reconnecting() {
    let (data, dir, profile) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lab = TestLab::up(&[]);
    let file = scenario(dir.path(), &lab, "cut-off", 60);
    let mut g = Gameday::start(lab.home.path(), data.path(), dir.path());
    let id = start_run(&g, &file, false);
    assert!(wait_for(Duration::from_secs(30), || (g.run(&id)["state"] == "running").then_some(())).is_some());
    // A few seconds of load, written to the history (every 250 ms): read back from there.
    let history = siege::daemon::store::Store::open(&data.path().join("history.db")).expect("open the history");
    let seconds = || {
        let events = history.events(&id, 0, 10_000).expect("the run's events");
        events.iter().filter(|e| e.json.contains(r#""type":"second-closed""#)).count()
    };
    assert!(wait_for(Duration::from_secs(30), || (seconds() >= 3).then_some(())).is_some(), "{}", seconds());
    drop(history);
    g.child.kill().expect("kill -9 the daemon");
    g.child.wait().unwrap();
    let g = Gameday::start(lab.home.path(), data.path(), dir.path());
    assert_eq!(g.run(&id)["state"], "interrupted");

    let driver = Driver::start();
    let page = driver.session(profile.path());
    page.go(&format!("{}&run={id}", g.instructor));
    page.wait(
        "the run shown ended",
        Duration::from_secs(15),
        "return document.getElementById('conn').textContent === 'ended'",
    );
    assert_eq!(page.js("return document.getElementById('verdict').textContent"), "interrupted");
    assert!(page.js("return +document.querySelector('#chart-rate svg').dataset.points || 0").as_u64() >= Some(2));
    // No reconnecting afterwards (the browser would reopen an ended stream every few seconds):
    // time passes on purpose, what is checked is that nothing happens in it.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(page.js("return document.getElementById('conn').textContent"), "ended");
    assert_eq!(page.errors(), Vec::<String>::new());
}

/// A loopback TCP proxy in front of the daemon whose connections can be cut, as a flaky network
/// would; it counts the connections it took.
struct Proxy {
    addr: String,
    open: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(to: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (open, accepted) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicUsize::new(0)));
        let (o, a, to) = (open.clone(), accepted.clone(), to.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(&to) else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                o.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut into) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, open, accepted }
    }

    /// Cuts every connection open now.
    fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The page's connections cut twice in the middle of a run: the page reconnects by itself and,
/// by the end, has shown every event of the run once.
#[test]
fn heavy_the_page_reconnects_after_its_connections_are_cut_and_shows_every_event_once() {
    let (data, dir, profile) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lab = TestLab::up(&[]);
    let file = scenario(dir.path(), &lab, "flaky-wifi", 25);
    let g = Gameday::start(lab.home.path(), data.path(), dir.path());
    let proxy = Proxy::start(&g.addr);
    let id = start_run(&g, &file, false);
    let driver = Driver::start();
    let page = driver.session(profile.path());
    page.go(&format!("{}&run={id}", g.instructor.replace(&g.addr, &proxy.addr)));
    let seq = "return window.__siege.view ? window.__siege.view.lastSeq : -1";
    page.wait("events on the page", Duration::from_secs(30), "return window.__siege.view?.lastSeq >= 5");
    for _ in 0..2 {
        let (before, conns) = (page.js(seq).as_i64().unwrap(), proxy.accepted.load(Ordering::SeqCst));
        proxy.cut();
        page.wait(
            "the page reconnected and got newer events",
            Duration::from_secs(20),
            &format!("return window.__siege.view.lastSeq > {before} + 3"),
        );
        assert!(proxy.accepted.load(Ordering::SeqCst) > conns, "no new connection: the events came another way");
    }
    page.wait(
        "the run's end",
        Duration::from_secs(60),
        "return document.getElementById('conn').textContent === 'ended'",
    );

    // Every event of the run once: as many shown as the run has, each seq once on the timeline.
    let all = stream_for(&g.addr, &format!("/v1/runs/{id}/events"), Some(&g.token));
    let last = all.lines().filter_map(|l| l.strip_prefix("id:")).filter_map(|v| v.trim().parse::<i64>().ok()).max();
    assert_eq!(page.js(seq).as_i64(), last, "the page's last event is the run's");
    assert_eq!(page.js("return window.__siege.events").as_i64(), last.map(|l| l + 1), "each event applied once");
    page.timeline_shows_each_event_once();
    // A cut stream is no page error; the browser's own note of the lost connection may be.
    let errors: Vec<String> = page.errors().into_iter().filter(|e| !e.contains("net::ERR_")).collect();
    assert_eq!(errors, Vec::<String>::new());
}
