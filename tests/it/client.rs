//! Integration tests: the daemon's client commands (`siege runs`, `siege schedules`, `siege
//! compare` with `--daemon`) against a real `siege daemon` on loopback: the daemon's address in
//! URL form, bad addresses as usage errors, and an event stream whose reader goes away.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, wait_for};
use crate::lab::TestLab;

/// A `siege daemon --listen 127.0.0.1:0` with its own data directory; killed on drop.
struct Daemon {
    child: Child,
    /// `HOST:PORT`, from its first line.
    addr: String,
    home: PathBuf,
    data: tempfile::TempDir,
}

impl Daemon {
    fn start(home: &Path) -> Daemon {
        let data = tempfile::tempdir().expect("tempdir");
        let mut child = common::siege()
            .env("SIEGE_HOME", home)
            .args(["daemon", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .arg("--scenarios")
            .arg(home)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn siege daemon");
        let addr = common::daemon_address(&mut child);
        Daemon { child, addr, home: home.to_path_buf(), data }
    }

    /// `siege ARGS --data DIR` with the daemon's state directory.
    fn client(&self, args: &[&str]) -> Command {
        let mut c = common::siege();
        c.env("SIEGE_HOME", &self.home).args(args).arg("--data").arg(self.data.path());
        c
    }

    fn output(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.client(args).output().expect("siege");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn run_state(&self, id: &str) -> String {
        let (code, out, err) = self.output(&["runs", "show", id, "--daemon", &self.addr]);
        assert_eq!(code, Some(0), "{err}");
        let v: Value = serde_json::from_str(&out).expect("run JSON");
        v["state"].as_str().unwrap_or_default().to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_daemon_address_is_taken_as_the_url_the_daemon_prints_and_a_bad_one_is_a_usage_error() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(home.path());
    for form in [d.addr.clone(), format!("http://{}", d.addr), format!("http://{}/", d.addr)] {
        let (code, _, err) = d.output(&["runs", "list", "--daemon", &form]);
        assert_eq!(code, Some(0), "{form}: {err}");
        let (code, out, err) = d.output(&["schedules", "list", "--daemon", &form]);
        assert_eq!(code, Some(0), "{form}: {err}");
        assert!(out.trim_start().starts_with('{') || out.trim_start().starts_with('['), "{form}: {out}");
    }
    for (bad, why) in [
        (format!("http://{}/v1/runs", d.addr), "`/v1/runs` after the address"),
        (format!("https://{}/", d.addr), "over http, not `https://`"),
        ("127.0.0.1:notaport".to_string(), "`notaport` is not a port number"),
        ("http://:7878/".to_string(), "no host"),
    ] {
        for args in [vec!["runs", "list"], vec!["schedules", "list"], vec!["compare", "a", "b"]] {
            let mut args = args.clone();
            args.extend(["--daemon", bad.as_str()]);
            let (code, _, err) = d.output(&args);
            assert_eq!(code, Some(3), "{args:?}: {err}");
            assert!(err.contains("--daemon") && err.contains(why), "{args:?}: {err}");
        }
    }
}

#[test]
fn runs_events_stops_when_its_reader_goes_away() {
    let lab = TestLab::up(&[]);
    let d = Daemon::start(lab.home.path());
    // Long enough to be still running when the reader has gone.
    let scenario = lab.home.path().join("long.yaml");
    std::fs::write(
        &scenario,
        format!(
            "name: long\ntarget:\n  lab: {{ service: api, tasks: 3, control: \"{}\" }}\n\
             load: {{ url: /, rate: 20/s, duration: 60s, timeout: 2s }}\nsteady_state: {{ error_rate: \"< 5%\" }}\n\
             recovery: {{ within: 10s, hold: 1s }}\n",
            lab.control
        ),
    )
    .expect("write scenario");
    let url = format!("http://{}/", d.addr);
    let (code, out, err) = d.output(&["runs", "start", &scenario.display().to_string(), "--daemon", &url]);
    assert_eq!(code, Some(0), "{err}");
    let id = out.trim().to_string();

    let mut events = d
        .client(&["runs", "events", &id, "--daemon", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("siege runs events");
    let mut reader = BufReader::new(events.stdout.take().expect("stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("the first event");
    assert!(first.starts_with('{'), "{first:?}");
    // The reader goes away, as `| head -1` does.
    drop(reader);
    let closed = Instant::now();
    let status = wait_for(Duration::from_secs(10), || events.try_wait().expect("try_wait"));
    let Some(status) = status else {
        let _ = events.kill();
        let _ = events.wait();
        panic!("siege runs events still streams 10 s after its reader went away");
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(closed.elapsed() < Duration::from_secs(10));
    assert_eq!(d.run_state(&id), "running", "the stream would still be open");

    let (code, _, err) = d.output(&["runs", "stop", &id, "--daemon", &url]);
    assert_eq!(code, Some(0), "{err}");
    let ended = wait_for(Duration::from_secs(60), || Some(d.run_state(&id)).filter(|s| s != "running"));
    assert!(ended.is_some(), "the run never ended");
}
