//! The crash-safety journal: one JSON-lines file per run under `<state dir>/journal/`. A fault
//! is appended (and synced) *before* it is injected and marked reverted after; a run that ends
//! with everything reverted removes its file. `siege recover` reverts whatever a killed run left.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::events::{Event, EventSink};
use crate::backend::{Backend, Injected};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Entry {
    Run { run_id: String, pid: u32, scenario: String, locator: serde_json::Value },
    Injecting { fault: String, injected: Injected },
    Reverted { fault: String },
    Finished,
}

/// Directory of the journal files.
pub fn dir() -> PathBuf {
    crate::util::state_dir().join("journal")
}

/// Appends entries for one run; an [`EventSink`] that fails loudly, because the engine must not
/// inject a fault it could not journal.
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
    pending: usize,
}

impl Default for Journal {
    fn default() -> Self {
        Journal::new()
    }
}

impl Journal {
    /// A journal in the state directory; its file is created when the run starts (the event
    /// names the run).
    pub fn new() -> Self {
        Journal::in_dir(dir())
    }

    pub fn in_dir(dir: PathBuf) -> Self {
        Journal { dir, path: PathBuf::new(), file: None, pending: 0 }
    }

    fn append(&mut self, entry: &Entry) -> std::io::Result<()> {
        if let Entry::Run { run_id, .. } = entry {
            self.path = self.dir.join(format!("{run_id}.jsonl"));
        }
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            self.file = Some(OpenOptions::new().create(true).append(true).open(&self.path)?);
        }
        let Some(f) = self.file.as_mut() else { return Ok(()) };
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()
    }
}

impl EventSink for Journal {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::RunStarted { run_id, scenario, locator, .. } => self.append(&Entry::Run {
                run_id: run_id.clone(),
                pid: std::process::id(),
                scenario: scenario.clone(),
                locator: locator.clone(),
            }),
            Event::FaultInjecting { fault, injected, .. } => {
                self.pending += 1;
                self.append(&Entry::Injecting { fault: fault.clone(), injected: injected.clone() })
            }
            Event::FaultReverted { fault, .. } | Event::FaultSettled { fault, .. } => {
                self.pending = self.pending.saturating_sub(1);
                self.append(&Entry::Reverted { fault: fault.clone() })
            }
            Event::RunFinished { .. } => {
                if self.pending == 0 && self.file.is_some() {
                    self.file = None;
                    std::fs::remove_file(&self.path)
                } else {
                    self.append(&Entry::Finished)
                }
            }
            _ => Ok(()),
        }
    }
}

/// A journal read back from disk.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: PathBuf,
    pub run_id: String,
    pub pid: u32,
    pub scenario: String,
    pub locator: serde_json::Value,
    pub finished: bool,
    /// Faults journaled as injecting and not marked reverted, in injection order.
    pub pending: Vec<Injected>,
}

pub fn read(path: &Path) -> std::io::Result<Recorded> {
    let mut rec = Recorded {
        path: path.to_owned(),
        run_id: String::new(),
        pid: 0,
        scenario: String::new(),
        locator: serde_json::Value::Null,
        finished: false,
        pending: vec![],
    };
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        // A line cut short by a crash is the last one; everything before it is intact.
        let Ok(entry) = serde_json::from_str::<Entry>(&line) else { continue };
        match entry {
            Entry::Run { run_id, pid, scenario, locator } => {
                (rec.run_id, rec.pid, rec.scenario, rec.locator) = (run_id, pid, scenario, locator)
            }
            Entry::Injecting { injected, .. } => rec.pending.push(injected),
            Entry::Reverted { fault } => rec.pending.retain(|i| i.fault != fault),
            Entry::Finished => rec.finished = true,
        }
    }
    Ok(rec)
}

/// Marks a fault of a recorded run reverted.
pub fn mark_reverted(path: &Path, fault: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().append(true).open(path)?;
    let mut line = serde_json::to_vec(&Entry::Reverted { fault: fault.into() }).map_err(std::io::Error::other)?;
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()
}

/// Every journal file in `dir`, oldest first.
pub fn list_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v = vec![];
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let p = e?.path();
                if p.extension().is_some_and(|x| x == "jsonl") {
                    v.push(p);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    v.sort();
    Ok(v)
}

/// Every journal file in the state directory, oldest first.
pub fn list() -> std::io::Result<Vec<PathBuf>> {
    list_in(&dir())
}

/// What recovering one journal did, for the user.
#[derive(Debug)]
pub struct RecoveryReport {
    pub run_id: String,
    pub lines: Vec<String>,
    pub failed: bool,
}

/// Reverts every pending fault of one recorded run (newest first) and removes the journal when
/// nothing is left. Safe to run twice. Skips a run whose process is still alive.
pub async fn recover(rec: &Recorded) -> RecoveryReport {
    let mut out = RecoveryReport { run_id: rec.run_id.clone(), lines: vec![], failed: false };
    if !rec.finished && rec.pid != std::process::id() && crate::lab::proc::alive(rec.pid) {
        out.lines.push(format!("run {} is still running (pid {}); left alone", rec.run_id, rec.pid));
        return out;
    }
    if rec.pending.is_empty() {
        out.lines.push(format!("run {}: nothing left to revert", rec.run_id));
        out.lines.extend(crate::backend::release_left_lease(&rec.locator, &rec.run_id).await);
        let _ = std::fs::remove_file(&rec.path);
        return out;
    }
    let backend = match Backend::reconnect(&rec.locator).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            out.lines.push(format!(
                "run {}: its lab ended with it; {} fault(s) went with it, nothing left to revert",
                rec.run_id,
                rec.pending.len()
            ));
            let _ = std::fs::remove_file(&rec.path);
            return out;
        }
        Err(e) => {
            out.failed = true;
            out.lines.push(format!("run {}: cannot reach its target: {e}", rec.run_id));
            return out;
        }
    };
    for inj in rec.pending.iter().rev() {
        match backend.revert(inj).await {
            Ok(()) => {
                let _ = mark_reverted(&rec.path, &inj.fault);
                out.lines.push(format!("run {}: reverted {} ({})", rec.run_id, inj.fault, inj.kind));
            }
            Err(e) => {
                out.failed = true;
                out.lines.push(format!("run {}: revert of {} ({}) FAILED: {e}", rec.run_id, inj.fault, inj.kind));
            }
        }
    }
    if !out.failed {
        let _ = std::fs::remove_file(&rec.path);
    }
    out.lines.extend(crate::backend::release_left_lease(&rec.locator, &rec.run_id).await);
    let _ = backend.shutdown().await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Injected, Resolved};

    fn injected(name: &str) -> Injected {
        Injected {
            fault: name.into(),
            kind: "latency".into(),
            targets: vec!["t-1".into()],
            undo: serde_json::json!({"x": 1}),
        }
    }

    fn injecting(name: &str) -> Event {
        Event::FaultInjecting { t: 1.0, fault: name.into(), resolved: Resolved::default(), injected: injected(name) }
    }

    fn started() -> Event {
        Event::RunStarted {
            run_id: "r1".into(),
            scenario: "s.yaml".into(),
            seed: 1,
            backend: "lab",
            locator: serde_json::json!({"lab": {"control": "http://127.0.0.1:1"}}),
        }
    }

    #[test]
    fn pending_faults_survive_a_crash_and_reverted_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::in_dir(dir.path().to_owned());
        j.on_event(&started()).unwrap();
        j.on_event(&injecting("a")).unwrap();
        j.on_event(&injecting("b")).unwrap();
        j.on_event(&Event::FaultReverted { t: 2.0, fault: "a".into() }).unwrap();
        // The process dies here: no RunFinished.
        let files = list_in(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        // A torn last line (crash mid-write) is ignored.
        std::fs::OpenOptions::new().append(true).open(&files[0]).unwrap().write_all(b"{\"type\":\"rev").unwrap();
        let rec = read(&files[0]).unwrap();
        assert_eq!(rec.run_id, "r1");
        assert_eq!(rec.pid, std::process::id());
        assert!(!rec.finished);
        assert_eq!(rec.pending, vec![injected("b")]);
    }

    #[test]
    fn a_clean_run_removes_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::in_dir(dir.path().to_owned());
        j.on_event(&started()).unwrap();
        j.on_event(&injecting("a")).unwrap();
        j.on_event(&Event::FaultSettled { t: 2.0, fault: "a".into() }).unwrap();
        assert_eq!(list_in(dir.path()).unwrap().len(), 1);
        let record = crate::report::tests_support::minimal_record();
        j.on_event(&Event::RunFinished { record: Box::new(record), report_dir: None, report_ms: 0.0 }).unwrap();
        assert!(list_in(dir.path()).unwrap().is_empty());
    }
}
