//! The crash-safety journal: one JSON-lines file per run under `<state dir>/journal/`. A fault
//! is appended (and synced) *before* it is injected and marked reverted after; a run that ends
//! with everything reverted removes its file. `siege recover` reverts whatever a killed run left.
//!
//! A journal is read strictly: only a torn last line (the crash came mid-write) is ignored. Any
//! other line that does not parse makes the journal unreadable, and `siege recover` then reverts
//! nothing from it, keeps it and says which file and line, until the user has checked by hand
//! and removed it with `siege recover --discard FILE`. So does a journal with no complete run
//! entry (empty, or its only line torn): nothing ties it to a run, its target or its process.
//! Whatever is named like a journal but is not a regular file is skipped, and said to be.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::events::Event;
use crate::backend::{Backend, Connection, Injected};
use crate::lab::proc::{self, Identity};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Entry {
    Run {
        run_id: String,
        pid: u32,
        /// Which process `pid` was, so that a later process given the same pid is not taken for
        /// the run. Absent in journals of older versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        process: Option<Identity>,
        scenario: String,
        locator: serde_json::Value,
    },
    Injecting {
        fault: String,
        injected: Injected,
    },
    Reverted {
        fault: String,
    },
    Finished,
}

/// Directory of the journal files.
pub fn dir() -> PathBuf {
    crate::util::state_dir().join("journal")
}

/// The journal file of run `run_id` in `dir`.
pub fn path_in(dir: &Path, run_id: &str) -> PathBuf {
    dir.join(format!("{run_id}.jsonl"))
}

/// Appends entries for one run. The engine's own consumer of events, called synchronously; it
/// fails loudly, because the engine must not inject a fault it could not journal.
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
        if let Entry::Run { run_id, .. } = entry
            && self.file.is_none()
        {
            // The journal appears under its name with its run line in it, never empty: a
            // `siege recover` looking at that moment must not take it for a finished run's.
            self.path = path_in(&self.dir, run_id);
            let fresh = self.dir.join(format!("{run_id}.jsonl.new"));
            std::fs::create_dir_all(&self.dir)?;
            let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&fresh)?;
            append_line(&mut f, entry, false)?;
            std::fs::rename(&fresh, &self.path)?;
            File::open(&self.dir)?.sync_all()?;
            self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
            return Ok(());
        }
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            self.file = Some(OpenOptions::new().create(true).append(true).open(&self.path)?);
        }
        let Some(f) = self.file.as_mut() else { return Ok(()) };
        append_line(f, entry, false)
    }
}

/// Appends one entry as a line (after a newline first when `newline_first`) and syncs it. A
/// write that fails half-way is cut off again, so that the next entry does not run into it and
/// turn both into one unreadable line in the middle of the journal.
fn append_line(f: &mut File, entry: &Entry, newline_first: bool) -> std::io::Result<()> {
    let len = f.metadata()?.len();
    let mut line = if newline_first { vec![b'\n'] } else { vec![] };
    line.extend(serde_json::to_vec(entry).map_err(std::io::Error::other)?);
    line.push(b'\n');
    let written = f.write_all(&line).and_then(|()| f.sync_data());
    if written.is_err() {
        let _ = f.set_len(len);
    }
    written
}

impl Journal {
    /// Journals what `event` changes; `Err` when it could not be written and synced.
    pub fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::RunStarted { run_id, scenario, locator, .. } => self.append(&Entry::Run {
                run_id: run_id.clone(),
                pid: std::process::id(),
                process: proc::identity(std::process::id()),
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
    /// From the run entry; the file name's stem while none was read.
    pub run_id: String,
    pub pid: u32,
    pub process: Option<Identity>,
    pub scenario: String,
    pub locator: serde_json::Value,
    pub finished: bool,
    /// Faults journaled as injecting and not marked reverted, in injection order.
    pub pending: Vec<Injected>,
}

/// Why a journal cannot be recovered from automatically.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{}: cannot read: {source}; {}", path.display(), check_by_hand(path))]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: cannot parse journal entry: {reason}; {}", path.display(), check_by_hand(path))]
    Entry { path: PathBuf, line: usize, reason: String },
    /// No complete run entry: nothing says which run, which target, or whether that run is
    /// still alive. siege writes a journal with its run line already in it, so such a file was
    /// not left by a crash of this version; it is kept like any journal that cannot be trusted.
    #[error(
        "{}: cannot be traced to a run: {what} and holds no complete run entry; siege reverts nothing from it and keeps it; {}",
        path.display(),
        check_by_hand(path)
    )]
    NoRun { path: PathBuf, what: &'static str },
}

impl JournalError {
    fn read(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
        move |source| JournalError::Read { path: path.to_owned(), source }
    }

    /// The problem without the advice, e.g. `line 2: …`.
    pub fn problem(&self) -> String {
        match self {
            JournalError::Read { source, .. } => source.to_string(),
            JournalError::Entry { line, reason, .. } => format!("line {line}: {reason}"),
            JournalError::NoRun { what, .. } => format!("{what}, no complete run entry"),
        }
    }
}

/// What to do about a journal siege cannot act on by itself.
fn check_by_hand(path: &Path) -> String {
    format!(
        "check by hand what that run left injected (siege lab status / the AWS console), then run \
         siege recover --discard {}",
        path.display()
    )
}

/// The complete lines of a journal (up to its last newline) and what follows them: nothing, or a
/// last line without its newline.
fn split_tail(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().rposition(|b| *b == b'\n') {
        Some(i) => data.split_at(i + 1),
        None => (&[], data),
    }
}

fn parse_entry(line: &[u8]) -> Result<Entry, String> {
    if line.trim_ascii().is_empty() {
        return Err("an empty line (siege writes none: what was on it is unknown)".into());
    }
    serde_json::from_slice(line).map_err(|e| {
        // Every entry is one line: serde's "at line 1" would only confuse.
        let msg = e.to_string();
        let msg = msg.rsplit_once(" at line ").map_or(msg.as_str(), |(m, _)| m).to_owned();
        format!("{msg} (column {})", e.column())
    })
}

fn entry_type(e: &Entry) -> &'static str {
    match e {
        Entry::Run { .. } => "run",
        Entry::Injecting { .. } => "injecting",
        Entry::Reverted { .. } => "reverted",
        Entry::Finished => "finished",
    }
}

/// Reads a journal for recovery: an unparsable line (other than a torn last one), an unknown
/// entry type, or a journal that does not start with its run entry is an error naming the file
/// and the line.
///
/// Nothing is reverted from such a journal, not even the faults its readable lines name: a lost
/// line may be the `reverted` mark of one of them (reverting again would put back an old secret
/// version or promote a database the user has moved on from), or the run line with the target
/// the faults live in; and a lost `injecting` line names a fault no one could revert anyway. A
/// partial revert would make the run look recovered while something stays broken; the user is
/// told exactly what the readable lines say instead (see [`read_lenient`]).
pub fn read(path: &Path) -> Result<Recorded, JournalError> {
    let (rec, problem) = read_lenient(path)?;
    problem.map_or(Ok(rec), Err)
}

/// Reads what can be read: every entry that parses, applied in order, and the first problem
/// [`read`] would fail with. `Err` only when the file cannot be read at all.
pub fn read_lenient(path: &Path) -> Result<(Recorded, Option<JournalError>), JournalError> {
    let data = std::fs::read(path).map_err(JournalError::read(path))?;
    Ok(parse(path, &data))
}

fn parse(path: &Path, data: &[u8]) -> (Recorded, Option<JournalError>) {
    let mut rec = Recorded {
        path: path.to_owned(),
        run_id: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        pid: 0,
        process: None,
        scenario: String::new(),
        locator: serde_json::Value::Null,
        finished: false,
        pending: vec![],
    };
    let mut problem = None;
    let mut fail = |line: usize, reason: String| {
        problem.get_or_insert(JournalError::Entry { path: path.to_owned(), line, reason });
    };
    let (complete, tail) = split_tail(data);
    let mut lines: Vec<&[u8]> = complete.split(|b| *b == b'\n').collect();
    lines.pop(); // what follows the last newline is `tail`
    let torn = lines.len();
    lines.push(tail);
    let mut seen_run = false;
    for (i, line) in lines.into_iter().enumerate() {
        if i == torn && line.is_empty() {
            break;
        }
        let entry = match parse_entry(line) {
            Ok(e) => e,
            // A line cut short by a crash is the last one, and its fault was not injected yet:
            // the engine injects only after the whole line is synced.
            Err(_) if i == torn => break,
            Err(reason) => {
                fail(i + 1, reason);
                continue;
            }
        };
        match (&entry, seen_run) {
            (Entry::Run { .. }, true) => fail(i + 1, "a second run entry".into()),
            (Entry::Run { .. }, false) => {}
            (e, false) => {
                fail(i + 1, format!("the journal does not start with its run entry (found `{}`)", entry_type(e)))
            }
            _ => {}
        }
        match entry {
            Entry::Run { run_id, pid, process, scenario, locator } => {
                seen_run = true;
                if !run_id.is_empty() {
                    rec.run_id = run_id;
                }
                (rec.pid, rec.process, rec.scenario, rec.locator) = (pid, process, scenario, locator)
            }
            Entry::Injecting { injected, .. } => rec.pending.push(injected),
            Entry::Reverted { fault } => rec.pending.retain(|i| i.fault != fault),
            Entry::Finished => rec.finished = true,
        }
    }
    // An empty file, or one whose only line is cut short: there is no run to trace it to (no
    // target, no pid to tell whether that run still lives), so nothing is known to be safe to
    // delete. siege itself never leaves one (the file appears with its run line in it).
    if !seen_run && problem.is_none() {
        let what = if data.is_empty() { "the file is empty" } else { "its only line is cut short" };
        problem = Some(JournalError::NoRun { path: path.to_owned(), what });
    }
    (rec, problem)
}

/// One line per fault the journal lists as still injected, for the user to check by hand.
pub fn describe_pending(rec: &Recorded) -> Vec<String> {
    if rec.pending.is_empty() {
        return vec!["it lists no fault as still injected".into()];
    }
    let mut v = vec![format!("it lists {} fault(s) as still injected:", rec.pending.len())];
    for i in &rec.pending {
        v.push(format!("  - {} ({}) on {}", i.fault, i.kind, i.targets.join(", ")));
    }
    v
}

/// Marks a fault of a recorded run reverted. A torn last line (left by the crash) is cut off
/// first, and a last entry without its newline gets one, so that the mark is a line of its own.
pub fn mark_reverted(path: &Path, fault: &str) -> std::io::Result<()> {
    let data = std::fs::read(path)?;
    let mut f = OpenOptions::new().append(true).open(path)?;
    let (complete, tail) = split_tail(&data);
    let whole_entry = !tail.is_empty() && parse_entry(tail).is_ok();
    if !tail.is_empty() && !whole_entry {
        f.set_len(complete.len() as u64)?;
    }
    append_line(&mut f, &Entry::Reverted { fault: fault.into() }, whole_entry)
}

/// What is in the journal directory: the journals, and what looks like one by its name but
/// is not a file siege could have written (a directory, a FIFO, a dangling link), each with a
/// line saying so; those are never read (a FIFO would block) nor removed.
#[derive(Debug, Default)]
pub struct Listing {
    /// Journal files, oldest first.
    pub journals: Vec<PathBuf>,
    /// One line per entry named like a journal that was skipped, and why.
    pub skipped: Vec<String>,
}

/// The journals in `dir` and what was skipped there.
pub fn scan_in(dir: &Path) -> std::io::Result<Listing> {
    let mut l = Listing::default();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(l),
        Err(e) => return Err(e),
    };
    for e in rd {
        let p = e?.path();
        if p.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        // Followed through a symbolic link: a link to a journal is read like one.
        let not_a_journal = match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => None,
            Ok(m) if m.is_dir() => Some("it is a directory"),
            Ok(_) => Some("it is not a regular file (a FIFO, socket or device)"),
            // Gone since the listing: a run that ended removed its own journal.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(&p).is_err() => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("it is a symbolic link to nothing"),
            Err(_) => None, // read as a journal, whose error then names the file
        };
        match not_a_journal {
            None => l.journals.push(p),
            Some(why) => l.skipped.push(format!(
                "skipped {}: named like a journal, but {why}, and siege writes its journals as regular files; \
                 nothing was read or reverted from it",
                p.display()
            )),
        }
    }
    l.journals.sort();
    l.skipped.sort();
    Ok(l)
}

/// Every journal file in `dir`, oldest first (see [`scan_in`] for what is left out).
pub fn list_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    scan_in(dir).map(|l| l.journals)
}

/// The journals in the state directory and what was skipped there.
pub fn scan() -> std::io::Result<Listing> {
    scan_in(&dir())
}

/// Why `siege recover --discard FILE` refused.
#[derive(Debug, thiserror::Error)]
pub enum DiscardError {
    #[error("{}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{} is not in the journal directory {}: only a journal can be discarded", path.display(), dir.display())]
    Outside { path: PathBuf, dir: PathBuf },
    #[error("{} is not a journal (a regular `.jsonl` file in {})", path.display(), dir.display())]
    NotAJournal { path: PathBuf, dir: PathBuf },
    #[error("{}: run {run_id} is still running (pid {pid}); its journal is how its faults get reverted if it dies: stop the run first", path.display())]
    StillRunning { path: PathBuf, run_id: String, pid: u32 },
}

/// Removes one journal the user checked by hand (`siege recover --discard FILE`), without
/// reverting anything; returns what to tell the user, including the faults it listed.
pub fn discard(path: &Path) -> Result<Vec<String>, DiscardError> {
    discard_in(&dir(), path)
}

pub fn discard_in(dir: &Path, path: &Path) -> Result<Vec<String>, DiscardError> {
    let open = |source| DiscardError::Open { path: path.to_owned(), source };
    let not_a_journal = || DiscardError::NotAJournal { path: path.to_owned(), dir: dir.to_owned() };
    let outside = || DiscardError::Outside { path: path.to_owned(), dir: dir.to_owned() };
    // The directory it is in, resolved; the file itself is not (a symlink is removed, not what
    // it points to), so that whatever `siege recover` lists can be discarded.
    let name = path.file_name().ok_or_else(not_a_journal)?;
    // A bare file name is one in the journal directory, wherever this runs from.
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(dir);
    let real = parent.canonicalize().map_err(open)?.join(name);
    let meta = std::fs::symlink_metadata(&real).map_err(open)?;
    if real.parent() != Some(dir.canonicalize().map_err(|_| outside())?.as_path()) {
        return Err(outside());
    }
    if meta.is_dir() || real.extension().is_none_or(|x| x != "jsonl") {
        return Err(not_a_journal());
    }
    let (rec, problem) = match std::fs::read(&real) {
        Ok(data) => parse(&real, &data),
        Err(e) => (parse(&real, b"").0, Some(JournalError::Read { path: real.clone(), source: e })),
    };
    if let RunProcess::Running(_) = run_process(&rec) {
        return Err(DiscardError::StillRunning { path: path.to_owned(), run_id: rec.run_id, pid: rec.pid });
    }
    std::fs::remove_file(&real).map_err(open)?;
    let scenario = if rec.scenario.is_empty() { String::new() } else { format!(", scenario {}", rec.scenario) };
    let mut lines =
        vec![format!("discarded {} (run {}{scenario}); siege reverted nothing from it", real.display(), rec.run_id)];
    if let Some(p) = problem {
        lines.push(format!("it could not be read in full ({}); by the lines that could be read,", p.problem()));
    }
    lines.extend(describe_pending(&rec));
    Ok(lines)
}

/// What to tell about a journal that cannot be recovered from: the error (file, line, what to
/// do) and what its readable lines list, to check by hand.
pub fn unreadable(e: &JournalError, readable: &Recorded) -> Vec<String> {
    let mut v = vec![e.to_string(), "by the lines that can be read,".to_string()];
    v.extend(describe_pending(readable));
    v
}

/// Reverts what the run of the journal at `path` left (after that run panicked in this
/// process); nothing when the file is gone (nothing was left). An unreadable journal reverts
/// nothing and says so (`failed`).
pub async fn recover_file(path: &Path, conn: &Connection) -> RecoveryReport {
    let nothing = |run_id: String| RecoveryReport { run_id, lines: vec![], failed: false };
    match read(path) {
        Ok(rec) => recover(&rec, conn).await,
        Err(JournalError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            nothing(path.file_stem().unwrap_or_default().to_string_lossy().into_owned())
        }
        Err(e) => {
            let (run_id, lines) = match read_lenient(path) {
                Ok((rec, _)) => (rec.run_id.clone(), unreadable(&e, &rec)),
                Err(_) => (String::new(), vec![e.to_string()]),
            };
            RecoveryReport { run_id, lines, failed: true }
        }
    }
}

/// Reverts what the runs of every journal in `paths` left, as `siege recover` does: a journal
/// that cannot be trusted reverts nothing, is kept and says what to do. Returns what was done,
/// line by line, and whether anything may still be in place.
pub async fn recover_all(paths: &[PathBuf], conn: &Connection) -> (Vec<String>, bool) {
    let (mut lines, mut failed) = (vec![], false);
    for path in paths {
        match read(path) {
            Ok(rec) => {
                let r = recover(&rec, conn).await;
                failed |= r.failed;
                lines.extend(r.lines);
            }
            // A run that ended between the listing and now removed its own journal.
            Err(JournalError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            // Reverts nothing from it (see `read`), keeps it, and says what to do.
            Err(e) => {
                failed = true;
                match read_lenient(path) {
                    Ok((rec, _)) => lines.extend(unreadable(&e, &rec)),
                    Err(_) => lines.push(e.to_string()),
                }
            }
        }
    }
    (lines, failed)
}

/// What recovering one journal did, for the user.
#[derive(Debug)]
pub struct RecoveryReport {
    pub run_id: String,
    pub lines: Vec<String>,
    pub failed: bool,
}

/// Whether the process that wrote a journal is still at it.
enum RunProcess {
    /// Still running: its faults are its own business (the line says so).
    Running(String),
    /// Ended (crashed, killed, or this very process after a panic).
    Gone,
    /// Ended, and its pid now belongs to an unrelated process (the line says which).
    Reused(String),
}

/// A live pid does not make a live run: once the run died, the pid may have been given to any
/// other process, whose liveness must not keep the run's faults injected. The journal records
/// the run's process identity (boot and start time) and that must match; a journal of an older
/// version has only the pid, and then the process must at least be a `siege … run …`.
fn run_process(rec: &Recorded) -> RunProcess {
    if rec.finished || rec.pid == std::process::id() || !proc::alive(rec.pid) {
        return RunProcess::Gone;
    }
    let (run, pid) = (&rec.run_id, rec.pid);
    match &rec.process {
        Some(id) if proc::is_process(pid, id) => {
            RunProcess::Running(format!("run {run} is still running (pid {pid}); left alone"))
        }
        Some(id) => RunProcess::Reused(reused_line(run, pid, id)),
        None => {
            let args = proc::args(pid).unwrap_or_default();
            let siege = args
                .first()
                .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n.to_string_lossy().contains("siege")));
            if siege && args.iter().skip(1).any(|a| a == "run") {
                RunProcess::Running(format!(
                    "run {run} is still running (pid {pid}; a journal of an older siege without the process start \
                     time, so identified by its command line `{}` only); left alone",
                    args.join(" ")
                ))
            } else {
                RunProcess::Reused(format!(
                    "run {run}: pid {pid} now belongs to another process (`{}`), not that siege run; the run is gone",
                    args.join(" ")
                ))
            }
        }
    }
}

/// What holds the pid of run `run` instead of the run's own process (`id`, as journaled), told
/// as it is: a pid reused after the run died belongs to a process that started later (or in
/// another boot); one that started *before* the run cannot have been it either (a journal from
/// another machine or pid namespace, or edited by hand), and the message must not claim it is
/// newer.
fn reused_line(run: &str, pid: u32, id: &Identity) -> String {
    let cmd = proc::args(pid).map(|a| a.join(" ")).filter(|c| !c.is_empty());
    let cmd = cmd.map(|c| format!("`{c}`, ")).unwrap_or_default();
    match proc::identity(pid) {
        Some(now) if now.boot_id != id.boot_id => format!(
            "run {run}: pid {pid} now belongs to another process ({cmd}the machine has restarted since the run); the \
             run is gone"
        ),
        Some(now) if now.start_ticks < id.start_ticks => format!(
            "run {run}: pid {pid} belongs to a different process ({cmd}which started before the run did, so it was \
             never the run's process); the run is taken for ended"
        ),
        Some(_) => {
            format!("run {run}: pid {pid} now belongs to another process ({cmd}started after the run); the run is gone")
        }
        // It ended just now as well.
        None => format!("run {run}: pid {pid} belonged to another process, which has ended too; the run is gone"),
    }
}

/// The way out for a journal recover had to keep.
fn kept(rec: &Recorded) -> String {
    format!(
        "run {}: journal {} kept: run siege recover again once the target answers, or {}",
        rec.run_id,
        rec.path.display(),
        check_by_hand(&rec.path)
    )
}

/// Reverts every pending fault of one recorded run (newest first) and removes the journal when
/// nothing is left. Safe to run twice. Skips a run whose process is still alive.
pub async fn recover(rec: &Recorded, conn: &Connection) -> RecoveryReport {
    let mut out = RecoveryReport { run_id: rec.run_id.clone(), lines: vec![], failed: false };
    match run_process(rec) {
        RunProcess::Running(line) => {
            out.lines.push(line);
            return out;
        }
        RunProcess::Reused(line) => out.lines.push(line),
        RunProcess::Gone => {}
    }
    if rec.pending.is_empty() {
        out.lines.push(format!("run {}: nothing left to revert", rec.run_id));
        out.lines.extend(crate::backend::release_left_lease(&rec.locator, &rec.run_id, conn).await);
        let _ = std::fs::remove_file(&rec.path);
        return out;
    }
    let backend = match Backend::reconnect(&rec.locator, conn).await {
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
            out.lines.push(kept(rec));
            return out;
        }
    };
    for inj in rec.pending.iter().rev() {
        match backend.undo(inj).await {
            Ok(crate::backend::Reverted::Undone) => {
                let _ = mark_reverted(&rec.path, &inj.fault);
                out.lines.push(format!("run {}: reverted {} ({})", rec.run_id, inj.fault, inj.kind));
            }
            // Nothing was left to undo (a failover that is over): said as such, never as a revert.
            Ok(crate::backend::Reverted::NothingLeft) => {
                let _ = mark_reverted(&rec.path, &inj.fault);
                let kept = crate::faults::lookup(&inj.kind).map(|d| d.kept).filter(|k| !k.is_empty());
                let why = kept.map(|k| format!(": {k}")).unwrap_or_default();
                out.lines.push(format!("run {}: no revert for {} ({}){why}", rec.run_id, inj.fault, inj.kind));
            }
            Err(e) => {
                out.failed = true;
                out.lines.push(format!("run {}: revert of {} ({}) FAILED: {e}", rec.run_id, inj.fault, inj.kind));
            }
        }
    }
    if out.failed {
        // Something the run injected may still be in place: the target is not free for another
        // run yet. Its lease is left to expire; the next recover releases it.
        out.lines.push(kept(rec));
    } else {
        let _ = std::fs::remove_file(&rec.path);
        out.lines.extend(backend.release_left_lease(&rec.run_id).await);
    }
    let _ = backend.shutdown().await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_connection() -> Connection {
        Connection {
            state_dir: std::env::temp_dir().join("siege-journal-tests"),
            lab_token: None,
            lease_ttl: std::time::Duration::from_secs(30),
            secrets: Default::default(),
        }
    }
    use crate::backend::{Injected, Resolved};

    fn injected(name: &str) -> Injected {
        Injected::on_lab(name, "latency", &["t-1"])
    }

    fn injecting(name: &str) -> Event {
        Event::FaultInjecting { t: 1.0, fault: name.into(), resolved: Resolved::default(), injected: injected(name) }
    }

    fn started() -> Event {
        Event::RunStarted {
            run_id: "r1".into(),
            scenario: "s.yaml".into(),
            seed: 1,
            backend: "lab".into(),
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
        j.on_event(&Event::RunFinished {
            outcome: crate::report::Outcome::Passed,
            reason: String::new(),
            report_ms: 0.0,
        })
        .unwrap();
        assert!(list_in(dir.path()).unwrap().is_empty());
    }

    /// A journal as siege writes it: run `r1` of this process, then `lines` as given.
    fn journal_with(dir: &Path, lines: &[&str]) -> PathBuf {
        let mut j = Journal::in_dir(dir.to_owned());
        j.on_event(&started()).unwrap();
        let path = list_in(dir).unwrap().remove(0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        for l in lines {
            f.write_all(l.as_bytes()).unwrap();
        }
        path
    }

    fn injecting_line(name: &str) -> String {
        let mut l = serde_json::to_string(&Entry::Injecting { fault: name.into(), injected: injected(name) }).unwrap();
        l.push('\n');
        l
    }

    fn entry_error(path: &Path) -> (usize, String, String) {
        match read(path) {
            Err(e @ JournalError::Entry { .. }) => {
                let JournalError::Entry { line, ref reason, .. } = e else { unreachable!() };
                (line, reason.clone(), e.to_string())
            }
            other => panic!("expected an entry error, got {other:?}"),
        }
    }

    #[test]
    fn an_unparsable_line_before_the_last_makes_the_journal_unreadable_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let b = injecting_line("b");
        let path = journal_with(dir.path(), &[&injecting_line("a"), "{\"type\":\"injec\n", &b]);
        let (line, _, msg) = entry_error(&path);
        assert_eq!(line, 3);
        assert!(msg.starts_with(&format!("{}:3: cannot parse journal entry: ", path.display())), "{msg}");
        assert!(msg.contains(&format!("then run siege recover --discard {}", path.display())), "{msg}");
        assert!(msg.contains("siege lab status / the AWS console"), "{msg}");
        assert!(!msg.contains("at line 1"), "serde's own line number is not the file's: {msg}");
        // What can be read is still there, for the user to check by hand.
        let (rec, problem) = read_lenient(&path).unwrap();
        assert!(problem.is_some());
        assert_eq!(rec.pending, vec![injected("a"), injected("b")]);
        let listed = describe_pending(&rec).join("\n");
        assert!(listed.contains("2 fault(s)") && listed.contains("- b (latency) on t-1"), "{listed}");
    }

    #[test]
    fn an_unknown_entry_type_makes_the_journal_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_with(dir.path(), &["{\"type\":\"paused\",\"fault\":\"a\"}\n", &injecting_line("a")]);
        let (line, reason, _) = entry_error(&path);
        assert_eq!(line, 2);
        assert!(reason.contains("unknown variant `paused`"), "{reason}");
    }

    #[test]
    fn a_complete_last_line_that_does_not_parse_is_not_taken_for_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_with(dir.path(), &[&injecting_line("a"), "garbage\n"]);
        assert_eq!(entry_error(&path).0, 3);
        // Nor is an empty line (siege writes none): what was on it is unknown.
        let dir = tempfile::tempdir().unwrap();
        let path = journal_with(dir.path(), &["\n", &injecting_line("a")]);
        assert_eq!(entry_error(&path).0, 2);
    }

    #[test]
    fn a_corrupt_or_missing_run_line_names_the_file_and_line_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r9.jsonl");
        std::fs::write(&path, format!("{{\"type\":\"run\",\"run_id\":\"r9\",\"pid\":\"x\"}}\n{}", injecting_line("a")))
            .unwrap();
        let (line, _, msg) = entry_error(&path);
        assert_eq!(line, 1);
        assert!(msg.starts_with(&format!("{}:1: ", path.display())), "{msg}");
        // The run id of the messages then comes from the file name, never empty.
        assert_eq!(read_lenient(&path).unwrap().0.run_id, "r9");

        std::fs::write(&path, injecting_line("a")).unwrap();
        let (line, reason, _) = entry_error(&path);
        assert_eq!(line, 1);
        assert!(reason.contains("does not start with its run entry"), "{reason}");
    }

    #[test]
    fn a_journal_with_no_complete_run_entry_cannot_be_traced_to_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r2.jsonl");
        // Empty, or only a torn run line: no run, no target, no pid. Kept, like a journal with
        // an empty line, never taken for one with nothing left to revert.
        for (data, what) in [("", "the file is empty"), ("{\"type\":\"ru", "its only line is cut short")] {
            std::fs::write(&path, data).unwrap();
            let e = read(&path).unwrap_err();
            assert!(matches!(e, JournalError::NoRun { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("{}: cannot be traced to a run: {what}", path.display())), "{msg}");
            assert!(msg.contains(&format!("then run siege recover --discard {}", path.display())), "{msg}");
            assert_eq!(read_lenient(&path).unwrap().0.run_id, "r2");
        }
        std::fs::write(&path, "\n").unwrap();
        let (line, reason, _) = entry_error(&path);
        assert_eq!(line, 1);
        assert!(reason.starts_with("an empty line"), "{reason}");
    }

    #[tokio::test]
    async fn recover_keeps_a_journal_that_cannot_be_traced_to_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("a.jsonl");
        std::fs::write(&empty, "").unwrap();
        let blank = dir.path().join("b.jsonl");
        std::fs::write(&blank, "\n").unwrap();
        let (lines, failed) = recover_all(&[empty.clone(), blank.clone()], &test_connection()).await;
        assert!(failed, "{lines:?}");
        assert!(empty.exists() && blank.exists(), "{lines:?}");
        let text = lines.join("\n");
        assert!(!text.contains("nothing left to revert"), "{text}");
        assert!(text.contains(&format!("siege recover --discard {}", empty.display())), "{text}");
        assert!(text.contains(&format!("siege recover --discard {}", blank.display())), "{text}");
    }

    #[test]
    fn what_is_named_like_a_journal_but_is_none_is_skipped_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("r1.jsonl"), "").unwrap();
        std::fs::write(d.join("notes.txt"), "").unwrap();
        std::fs::create_dir(d.join("r2.jsonl")).unwrap();
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("r3.jsonl")).unwrap();
        std::os::unix::fs::symlink(d.join("r1.jsonl"), d.join("r4.jsonl")).unwrap();
        let fifo = std::ffi::CString::new(d.join("r5.jsonl").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path of this test's own directory.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let l = scan_in(d).unwrap();
        assert_eq!(l.journals, vec![d.join("r1.jsonl"), d.join("r4.jsonl")]);
        assert_eq!(l.skipped.len(), 3, "{:?}", l.skipped);
        let said = |name: &str, why: &str| {
            let p = d.join(name);
            assert!(
                l.skipped.iter().any(|s| s.starts_with(&format!("skipped {}: ", p.display())) && s.contains(why)),
                "{name}: {:?}",
                l.skipped
            );
        };
        said("r2.jsonl", "it is a directory");
        said("r3.jsonl", "a symbolic link to nothing");
        said("r5.jsonl", "not a regular file");
        assert_eq!(list_in(d).unwrap(), l.journals);
    }

    #[test]
    fn marking_a_fault_reverted_after_a_crash_keeps_the_journal_readable() {
        let dir = tempfile::tempdir().unwrap();
        // A torn last line: cut off before the mark, else both would make one unreadable line.
        let path = journal_with(dir.path(), &[&injecting_line("a"), &injecting_line("b"), "{\"type\":\"rev"]);
        mark_reverted(&path, "b").unwrap();
        assert_eq!(read(&path).unwrap().pending, vec![injected("a")]);
        // A last entry that lost only its newline is kept, and the mark goes on a line of its own.
        let dir = tempfile::tempdir().unwrap();
        let path = journal_with(dir.path(), &[injecting_line("c").trim_end()]);
        assert_eq!(read(&path).unwrap().pending, vec![injected("c")]);
        mark_reverted(&path, "x").unwrap();
        assert_eq!(read(&path).unwrap().pending, vec![injected("c")]);
        mark_reverted(&path, "c").unwrap();
        assert!(read(&path).unwrap().pending.is_empty());
    }

    /// `cmd` started, once its command line is that of the new program (it reads empty while
    /// the exec is under way).
    fn started_child(cmd: &mut std::process::Command) -> std::process::Child {
        let child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proc::args(child.id()).is_none_or(|a| a.first().is_none_or(|a0| a0.is_empty())) {
            assert!(std::time::Instant::now() < deadline, "the child never ran");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child
    }

    /// A `sleep` child: a live process that is not a siege run.
    fn sleeper() -> std::process::Child {
        started_child(std::process::Command::new("sleep").arg("30"))
    }

    fn recorded(pid: u32, process: Option<Identity>) -> Recorded {
        Recorded {
            path: PathBuf::from("/nonexistent/r1.jsonl"),
            run_id: "r1".into(),
            pid,
            process,
            scenario: "s.yaml".into(),
            locator: serde_json::Value::Null,
            finished: false,
            pending: vec![injected("a")],
        }
    }

    #[test]
    fn the_run_entry_records_the_process_identity() {
        let dir = tempfile::tempdir().unwrap();
        let rec = read(&journal_with(dir.path(), &[])).unwrap();
        assert_eq!(rec.process, proc::identity(std::process::id()));
        assert!(rec.process.is_some());
    }

    #[test]
    fn a_live_pid_is_the_run_only_if_it_is_the_same_process() {
        let mut child = sleeper();
        let pid = child.id();
        let id = proc::identity(pid).unwrap();
        assert!(matches!(run_process(&recorded(pid, Some(id.clone()))), RunProcess::Running(_)));
        // Same pid, another start: the pid was reused after the run died.
        let other = Identity { start_ticks: id.start_ticks.saturating_sub(1), ..id.clone() };
        let RunProcess::Reused(line) = run_process(&recorded(pid, Some(other))) else { panic!("not reused") };
        assert!(line.contains(&format!("pid {pid} now belongs to another process")), "{line}");
        assert!(line.contains("started after the run"), "{line}");
        // Same pid, a process that started before the run: not the run's, and not said to be newer.
        let later = Identity { start_ticks: id.start_ticks + 1000, ..id.clone() };
        let RunProcess::Reused(line) = run_process(&recorded(pid, Some(later))) else { panic!("not reused") };
        assert!(
            line.contains(&format!("pid {pid} belongs to a different process (`sleep 30`, which started before")),
            "{line}"
        );
        assert!(!line.contains("after the run"), "{line}");
        let other_boot = Identity { boot_id: "another-boot".into(), ..id };
        let RunProcess::Reused(line) = run_process(&recorded(pid, Some(other_boot))) else { panic!("not reused") };
        assert!(line.contains("the machine has restarted since the run"), "{line}");
        // An older journal without the identity: `sleep` is no siege run.
        let RunProcess::Reused(line) = run_process(&recorded(pid, None)) else { panic!("not reused") };
        assert!(line.contains("(`sleep 30`), not that siege run"), "{line}");
        let _ = child.kill();
        let _ = child.wait();
        assert!(matches!(run_process(&recorded(pid, None)), RunProcess::Gone));
    }

    #[test]
    fn an_older_journal_is_matched_to_a_siege_run_by_its_command_line() {
        use std::os::unix::process::CommandExt;
        // Its own process group, so that the `sleep` goes with the shell.
        let mut sh = std::process::Command::new("sh");
        sh.arg0("/opt/bin/siege").args(["-c", "sleep 30; true", "run", "s.yaml"]).process_group(0);
        let mut child = started_child(&mut sh);
        let pid = child.id();
        let RunProcess::Running(line) = run_process(&recorded(pid, None)) else { panic!("not running") };
        assert!(line.contains("identified by its command line"), "{line}");
        // SAFETY: a plain kill of the process group this test started.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        let _ = child.wait();
    }

    #[tokio::test]
    async fn recover_leaves_a_run_that_is_still_running_alone_and_reverts_one_whose_pid_was_reused() {
        let mut child = sleeper();
        let pid = child.id();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r1.jsonl");
        std::fs::write(&path, b"").unwrap();
        let mut rec = recorded(pid, proc::identity(pid));
        rec.path = path.clone();
        let r = recover(&rec, &test_connection()).await;
        assert!(!r.failed && r.lines[0].contains("still running"), "{:?}", r.lines);
        assert!(path.exists());
        // Not that process: its faults are recovered (here: the target cannot be reached).
        rec.process = None;
        let r = recover(&rec, &test_connection()).await;
        assert!(r.failed, "{:?}", r.lines);
        assert!(r.lines[0].contains("not that siege run"), "{:?}", r.lines);
        assert!(r.lines[1].contains("cannot reach its target"), "{:?}", r.lines);
        assert!(r.lines[2].contains(&format!("siege recover --discard {}", path.display())), "{:?}", r.lines);
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn discard_removes_only_a_journal_and_lists_its_faults() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        let path = journal_with(&jdir, &[&injecting_line("a"), "garbage\n"]);
        // Not in the journal directory, not a journal.
        let outside = dir.path().join("x.jsonl");
        std::fs::write(&outside, "").unwrap();
        assert!(matches!(discard_in(&jdir, &outside), Err(DiscardError::Outside { .. })));
        let via_dots = jdir.join("..").join("x.jsonl");
        assert!(matches!(discard_in(&jdir, &via_dots), Err(DiscardError::Outside { .. })));
        let other = jdir.join("notes.txt");
        std::fs::write(&other, "").unwrap();
        assert!(matches!(discard_in(&jdir, &other), Err(DiscardError::NotAJournal { .. })));
        assert!(matches!(discard_in(&jdir, &jdir.join("none.jsonl")), Err(DiscardError::Open { .. })));
        assert!(matches!(discard_in(&jdir, Path::new("..")), Err(DiscardError::NotAJournal { .. })));
        let subdir = jdir.join("d.jsonl");
        std::fs::create_dir(&subdir).unwrap();
        assert!(matches!(discard_in(&jdir, &subdir), Err(DiscardError::NotAJournal { .. })));
        assert!(!list_in(&jdir).unwrap().contains(&subdir), "a directory is no journal");
        // A symlink in the journal directory is removed itself, never what it points to.
        let link = jdir.join("link.jsonl");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(discard_in(&jdir, &link).is_ok());
        assert!(!link.exists() && outside.exists());
        // The journal of a live run is refused.
        let mut child = sleeper();
        let live = jdir.join("live.jsonl");
        let run = Entry::Run {
            run_id: "live".into(),
            pid: child.id(),
            process: proc::identity(child.id()),
            scenario: "s.yaml".into(),
            locator: serde_json::Value::Null,
        };
        std::fs::write(&live, serde_json::to_string(&run).unwrap() + "\n").unwrap();
        assert!(matches!(discard_in(&jdir, &live), Err(DiscardError::StillRunning { .. })));
        let _ = child.kill();
        let _ = child.wait();
        assert!(live.exists() && outside.exists() && other.exists());

        // A bare file name is one in the journal directory.
        let lines = discard_in(&jdir, Path::new(path.file_name().unwrap())).unwrap().join("\n");
        assert!(!path.exists());
        assert!(lines.contains("discarded ") && lines.contains("(run r1, scenario s.yaml)"), "{lines}");
        assert!(lines.contains("could not be read in full (line 3: "), "{lines}");
        assert!(lines.contains("- a (latency) on t-1"), "{lines}");
    }

    /// The journal fixtures: this version's typed records and older versions' untyped ones.
    fn fixture(name: &str) -> (String, Recorded) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journals").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let rec = read(&path).unwrap_or_else(|e| panic!("{e}"));
        (text, rec)
    }

    #[test]
    fn this_version_writes_the_typed_fixtures_byte_for_byte() {
        for name in ["lab-typed.jsonl", "aws-typed.jsonl"] {
            let (text, rec) = fixture(name);
            let injecting: Vec<&str> = text.lines().filter(|l| l.contains(r#""type":"injecting""#)).collect();
            assert_eq!(injecting.len(), rec.pending.len(), "{name}");
            for (line, injected) in injecting.iter().zip(&rec.pending) {
                let entry = Entry::Injecting { fault: injected.fault.clone(), injected: injected.clone() };
                assert_eq!(serde_json::to_string(&entry).unwrap(), *line, "{name}");
            }
        }
    }

    #[test]
    fn journals_of_older_versions_read_as_the_typed_records_of_this_one() {
        use crate::backend::undo::*;
        for (typed, untyped) in [("lab-typed.jsonl", "lab-untyped.jsonl"), ("aws-typed.jsonl", "aws-untyped.jsonl")] {
            let (_, new) = fixture(typed);
            let (_, old) = fixture(untyped);
            assert_eq!(new.pending, old.pending[..new.pending.len()], "{untyped} reads as {typed}");
            assert_eq!((new.run_id, new.locator), (old.run_id, old.locator));
        }
        let (_, aws) = fixture("aws-untyped.jsonl");
        let undo: Vec<&UndoRecord> = aws.pending.iter().map(|i| &i.undo).collect();
        assert_eq!(undo[0], &UndoRecord::Nothing(Settles::Ecs { previous_deployment: None }));
        assert_eq!(undo[1], &UndoRecord::EndCpuBurn(OnTasks::Fis { run_id: "r-aws".into() }));
        let UndoRecord::RestoreSecret(SecretDrift::Aws(drift)) = undo[4] else { panic!("{:?}", undo[4]) };
        assert_eq!(drift.awsprevious_version, Some(None), "recorded: no version had AWSPREVIOUS");
        // The oldest drift records name neither AWSPREVIOUS nor the database: AWSPREVIOUS is
        // left where it is, and no database password is touched.
        let UndoRecord::RestoreSecret(SecretDrift::Aws(early)) = undo[6] else { panic!("{:?}", undo[6]) };
        assert_eq!((early.awsprevious_version.clone(), early.db_cluster.clone()), (None, None));
        assert_eq!((early.previous_version.as_str(), early.new_version.as_str()), ("v-1", "v-2"));
    }

    #[test]
    fn a_record_this_version_cannot_read_makes_the_journal_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r1.jsonl");
        let run = r#"{"type":"run","run_id":"r1","pid":1,"scenario":"s.yaml","locator":{}}"#;
        for (undo, kind, why) in [
            (r#"{"op":"end-cpu-burn","on":"mainframe"}"#, "cpu-stress", "unknown variant `mainframe`"),
            (r#"{"op":"restore-secret","on":"lab"}"#, "secret-drift", "missing field `restore_version`"),
            (r#"{"restore_version":-1}"#, "secret-drift", "restore_version -1"),
            (r#"{}"#, "meteor-strike", "type `meteor-strike`, which this version does not know"),
        ] {
            let line = format!(
                r#"{{"type":"injecting","fault":"f","injected":{{"fault":"f","kind":"{kind}","targets":[],"undo":{undo}}}}}"#
            );
            std::fs::write(&path, format!("{run}\n{line}\n")).unwrap();
            let err = read(&path).map(|_| ()).expect_err(undo).to_string();
            assert!(err.contains(":2: cannot parse journal entry: ") && err.contains(why), "{err}");
        }
    }
}
