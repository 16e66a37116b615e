//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The `siege` binary built for these tests.
pub fn siege_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_siege"))
}

/// A `siege` command run from the repository root.
pub fn siege() -> Command {
    let mut c = Command::new(siege_bin());
    c.current_dir(repo_root());
    c
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The single report directory a run wrote under `reports`.
pub fn only_report_dir(reports: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(reports).expect("reports dir").flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    assert_eq!(dirs.len(), 1, "one report directory: {dirs:?}");
    dirs.remove(0)
}

/// `report.json` of a run's report directory, parsed.
pub fn read_report_json(dir: &Path) -> serde_json::Value {
    let s = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&s).expect("report.json parses")
}

/// Polls `f` until it returns `Some` or `deadline` passes.
pub fn wait_for<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    siege::lab::proc::alive(pid)
}

/// A loopback port held by a socket that is bound but not listening, for as long as this lives.
/// Connections to it are refused, and no other socket can take the port meanwhile, as one could
/// between dropping a listener and using its port.
pub struct HeldPort {
    socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl HeldPort {
    fn bind(reuse: bool) -> HeldPort {
        // Creating and binding a socket needs no runtime.
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(reuse).expect("SO_REUSEADDR");
        socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind a loopback port");
        let port = socket.local_addr().expect("local addr").port();
        HeldPort { socket, port }
    }
}

/// A loopback port that nothing listens on, and nothing can start to while it is held: without
/// `SO_REUSEADDR` on it, every other bind of the port fails.
pub fn closed_port() -> HeldPort {
    HeldPort::bind(false)
}

/// A loopback port kept for a child to listen on. The held socket has `SO_REUSEADDR` and does not
/// listen, so a child binding the port with `SO_REUSEADDR` too (as std's and tokio's listeners
/// do) gets it, while a socket without it cannot take the port, and a bind to port 0 is not given
/// it. Drop it once the child listens.
pub fn reserved_port() -> HeldPort {
    HeldPort::bind(true)
}

/// The address a `siege daemon` child with piped stdout says it listens on, from its first line
/// (`… listening on http://ADDR …`); the rest of its output is drained in the background.
pub fn daemon_address(child: &mut std::process::Child) -> String {
    use std::io::BufRead as _;
    let mut out = std::io::BufReader::new(child.stdout.take().expect("the daemon's stdout is piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("the daemon's first line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(|a| a.trim_end_matches('/').to_string())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    std::thread::spawn(move || for _ in out.lines() {});
    addr
}
