//! The embedded practice lab: a service of real task processes kept at its desired count by a
//! scheduler, a balancer with health checks in front, a database cluster (writer + replica behind
//! a cluster endpoint), a secret store, and a token-protected control API through which the lab
//! backend injects faults and reads state.
//!
//! Process tree: the supervisor (`siege lab up`) runs the balancer, the cluster endpoint, the
//! scheduler and the control API; every task and database node is a child process re-executing
//! this binary (`siege lab task`, `siege lab db-node`, hidden), started with `PR_SET_PDEATHSIG`
//! so that none outlives the supervisor, even on `kill -9`.

pub mod balancer;
pub mod client;
pub mod control;
pub mod db;
pub mod events;
pub mod proc;
pub mod secrets;
pub mod service;
pub mod supervisor;
pub mod task;
pub mod web;

use std::io::Write;
use std::path::PathBuf;

use supervisor::{LabAddress, LabState};

/// `state_dir()/lab.json`: where a background lab can be found.
pub fn lab_file() -> PathBuf {
    lab_file_in(&crate::util::state_dir())
}

fn lab_file_in(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("lab.json")
}

/// The address of the background lab, when one is recorded.
pub fn read_lab_file() -> Option<LabAddress> {
    read_lab_file_in(&crate::util::state_dir())
}

/// The address of the background lab recorded in the state directory `dir`.
pub fn read_lab_file_in(dir: &std::path::Path) -> Option<LabAddress> {
    let s = std::fs::read_to_string(lab_file_in(dir)).ok()?;
    serde_json::from_str(&s).ok()
}

/// Records the address of a background lab (mode 0600: it holds the control token).
pub fn write_lab_file(addr: &LabAddress) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = lab_file();
    let ctx = |what: &str, p: &std::path::Path| {
        let what = format!("{what} {}", p.display());
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(ctx("create", dir))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(ctx("write", &tmp))?;
    f.write_all(serde_json::to_string_pretty(addr)?.as_bytes()).map_err(ctx("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(ctx("write", &path))
}

/// Removes the record of the background lab when it is the one of `pid`.
pub fn remove_lab_file_if(pid: u32) {
    if read_lab_file().is_some_and(|a| a.pid == pid) {
        let _ = std::fs::remove_file(lab_file());
    }
}

/// Whether `pid` is a running lab supervisor (`siege lab up`), not some process that reused the
/// pid of a lab that died without cleaning up.
pub fn is_lab(pid: u32) -> bool {
    proc::runs_command(pid, &["lab", "up"])
}

/// The background lab that is still running, if any.
pub fn running_lab() -> Option<LabAddress> {
    read_lab_file().filter(|a| is_lab(a.pid))
}

/// The human view of `siege lab status`.
pub fn render_status(st: &LabState) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let s = &st.service;
    let _ = writeln!(o, "lab (pid {})  balancer {}  control {}", st.pid, st.balancer_url, st.control_url);
    let _ = match &st.lease {
        Some(l) => writeln!(o, "lease: held by {}", l.describe(std::time::SystemTime::now())),
        None => writeln!(o, "lease: free (no run under way)"),
    };
    let _ = writeln!(
        o,
        "service {}: {} running / {} desired / {} pending, revision {}{}, avg CPU {:.0}%{}",
        s.name,
        s.running,
        s.desired,
        s.pending,
        s.revision,
        if s.deploying { " (deploying)" } else { "" },
        s.avg_cpu_percent,
        match &s.autoscaling {
            Some(a) => format!(", autoscaling {}..{} at {:.0}% CPU", a.min, a.max, a.target_cpu_percent),
            None => String::new(),
        }
    );
    let _ = writeln!(
        o,
        "  {:<6} {:>7} {:>6} {:>4} {:>6} {:<9} {:<10} {:>6}",
        "TASK", "PID", "PORT", "REV", "SECRET", "STATUS", "HEALTH", "CPU%"
    );
    for t in &s.tasks {
        let health = t.health.map(|h| format!("{h:?}").to_lowercase()).unwrap_or_else(|| "-".into());
        let status = format!("{:?}", t.status).to_lowercase();
        let _ = writeln!(
            o,
            "  {:<6} {:>7} {:>6} {:>4} {:>6} {:<9} {:<10} {:>6.1}",
            t.id,
            t.pid,
            t.port,
            t.revision,
            format!("v{}", t.secret_version),
            status,
            health,
            t.cpu_percent
        );
    }
    let healthy = st.targets.iter().filter(|t| supervisor::in_rotation(t)).count();
    let _ = writeln!(o, "balancer: {healthy} healthy / {} registered targets", st.targets.len());
    if let Some(m) = &st.metrics {
        let _ = writeln!(
            o,
            "  last second: {} requests, {} ELB 5xx, {} target 5xx, target response time {}",
            m.request_count,
            m.elb_5xx,
            m.target_5xx,
            m.target_response_time.map(|t| format!("{:.1}ms", t * 1000.0)).unwrap_or_else(|| "-".into())
        );
    }
    let _ = writeln!(
        o,
        "db: writer {}  ({})  endpoint {}",
        st.db.writer.as_deref().unwrap_or("NONE (failover in progress)"),
        st.db.nodes.iter().map(|n| format!("{} {} pid {}", n.name, n.role, n.pid)).collect::<Vec<_>>().join(", "),
        st.db.endpoint
    );
    let _ = writeln!(
        o,
        "secret {}: current v{}{}",
        st.secret.name,
        st.secret.current_version,
        st.secret.previous_version.map(|v| format!(", previous v{v}")).unwrap_or_default()
    );
    if st.faults.is_empty() {
        let _ = writeln!(o, "faults: none");
    } else {
        let _ = writeln!(o, "faults:");
        for f in &st.faults {
            let _ = writeln!(o, "  {f}");
        }
    }
    let recent: Vec<_> = st.events.iter().rev().take(8).collect();
    if !recent.is_empty() {
        let _ = writeln!(o, "recent events:");
        for e in recent.into_iter().rev() {
            let _ = writeln!(o, "  {} {}", e.time, e.message);
        }
    }
    o
}
