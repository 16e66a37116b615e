//! The daemon's run history: one SQLite database (WAL) holding every run, its events, its report
//! files and the schedules' firings.
//!
//! The schema is versioned with `PRAGMA user_version`, one migration per version, each applied in
//! its own transaction. A database written by a newer siege is refused before anything is
//! written to it (not even the switch to WAL), so an older binary never corrupts it.
//!
//! Durability: WAL with `synchronous = NORMAL`. A committed transaction survives the process
//! being killed (`kill -9`); a power loss may lose the last transactions, never the database.
//!
//! Times are stored as milliseconds since the Unix epoch (UTC) and handed out as
//! [`jiff::Timestamp`]. Lists are paged by key (newest first, `(started_at, rowid)` descending)
//! with an opaque cursor, so that a page never repeats or skips a run while runs are added.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The schema versions this build knows, in order: `MIGRATIONS[i]` takes version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE runs (
        rowid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        scenario TEXT NOT NULL,
        target TEXT NOT NULL,
        state TEXT NOT NULL,
        trigger TEXT NOT NULL,
        schedule TEXT,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        time_to_detect_ms INTEGER,
        mttr_ms INTEGER,
        record TEXT
    );
    CREATE INDEX runs_by_time ON runs (started_ms DESC, rowid DESC);
    CREATE INDEX runs_by_scenario ON runs (scenario, started_ms DESC, rowid DESC);
    CREATE INDEX runs_by_state ON runs (state, started_ms DESC, rowid DESC);
    CREATE TABLE run_events (
        run INTEGER NOT NULL REFERENCES runs (rowid) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (run, seq)
    ) WITHOUT ROWID;
    CREATE TABLE run_files (
        run INTEGER NOT NULL REFERENCES runs (rowid) ON DELETE CASCADE,
        name TEXT NOT NULL,
        bytes BLOB NOT NULL,
        PRIMARY KEY (run, name)
    ) WITHOUT ROWID;
    CREATE TABLE schedule_firings (
        rowid INTEGER PRIMARY KEY,
        schedule TEXT NOT NULL,
        due_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT,
        run_id TEXT,
        recorded_ms INTEGER NOT NULL
    );
    CREATE INDEX firings_by_schedule ON schedule_firings (schedule, due_ms DESC, rowid DESC);",
    // Version 2: the paused schedules, so that a pause outlives a restart.
    "CREATE TABLE paused_schedules (
        name TEXT PRIMARY KEY,
        paused_ms INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // Version 3: the runs started blind (a game day's), whose faults are hidden from the
    // participants until they end, after a restart too.
    "ALTER TABLE runs ADD COLUMN blind INTEGER NOT NULL DEFAULT 0;",
    // Version 4: how many runs of each scenario ended in each state, ever: a counter that
    // retention does not lower (`siege_runs_total`). Kept by triggers, so that no path that ends
    // a run can forget it; started from the runs the history holds.
    "CREATE TABLE run_totals (
        scenario TEXT NOT NULL,
        state TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (scenario, state)
    ) WITHOUT ROWID;
    INSERT INTO run_totals (scenario, state, n)
        SELECT scenario, state, count(*) FROM runs WHERE state <> 'running' GROUP BY scenario, state;
    CREATE TRIGGER run_totals_on_end AFTER UPDATE OF state ON runs
        WHEN OLD.state = 'running' AND NEW.state <> 'running'
    BEGIN
        INSERT INTO run_totals (scenario, state, n) VALUES (NEW.scenario, NEW.state, 1)
            ON CONFLICT (scenario, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER run_totals_on_insert AFTER INSERT ON runs
        WHEN NEW.state <> 'running'
    BEGIN
        INSERT INTO run_totals (scenario, state, n) VALUES (NEW.scenario, NEW.state, 1)
            ON CONFLICT (scenario, state) DO UPDATE SET n = n + 1;
    END;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// At most this many runs in one page.
pub const MAX_PAGE: usize = 500;

/// What can go wrong with the history.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the history database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "the history database {path} has schema version {found}, newer than version {supported} that this siege knows: use a newer siege (the database was not changed)"
    )]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    #[error(
        "the history database {path} cannot use WAL (journal mode stays `{mode}`): put the data directory on a local file system"
    )]
    NoWal { path: PathBuf, mode: String },
    #[error(
        "the history database {path} is damaged (SQLite's quick check: {detail}): move it aside to start a new \
         history, or restore it from a backup"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error("migrating the history database {path} to version {version}: {source}")]
    Migrate { path: PathBuf, version: i64, source: rusqlite::Error },
    #[error("history database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no run `{0}` in the history")]
    NoSuchRun(String),
    #[error("a run `{0}` is already in the history")]
    DuplicateRun(String),
    #[error("invalid cursor `{0}`: pass back the `next` value of a previous page")]
    BadCursor(String),
    #[error("the history holds an unknown {what} `{value}`")]
    Corrupt { what: &'static str, value: String },
}

/// A run's state. `Running` is the only state that is not final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Running,
    Passed,
    Failed,
    Aborted,
    PreconditionFailed,
    RevertFailed,
    Interrupted,
    Error,
}

impl RunState {
    pub const ALL: [RunState; 8] = [
        RunState::Running,
        RunState::Passed,
        RunState::Failed,
        RunState::Aborted,
        RunState::PreconditionFailed,
        RunState::RevertFailed,
        RunState::Interrupted,
        RunState::Error,
    ];

    /// The name stored and shown: `running`, `precondition-failed`…
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Passed => "passed",
            RunState::Failed => "failed",
            RunState::Aborted => "aborted",
            RunState::PreconditionFailed => "precondition-failed",
            RunState::RevertFailed => "revert-failed",
            RunState::Interrupted => "interrupted",
            RunState::Error => "error",
        }
    }
}

/// Why a name is not one of a fixed set of words; says which words are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`: expected one of {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

fn from_name<T: Copy>(what: &'static str, s: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T, UnknownName> {
    all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| UnknownName {
        what,
        value: s.to_string(),
        expected: all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", "),
    })
}

impl FromStr for RunState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_name("run state", s, &RunState::ALL, RunState::as_str)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Api,
    Schedule,
    CatchUp,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [Trigger::Api, Trigger::Schedule, Trigger::CatchUp];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch-up",
        }
    }
}

impl FromStr for Trigger {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_name("trigger", s, &Trigger::ALL, Trigger::as_str)
    }
}

/// What became of a schedule's due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FiringOutcome {
    /// A run was started.
    Fired,
    /// The daemon was up but did not start a run (the target was busy, the schedule paused…).
    Skipped,
    /// The daemon was down at the due time and it was too late to catch up.
    Missed,
}

impl FiringOutcome {
    pub const ALL: [FiringOutcome; 3] = [FiringOutcome::Fired, FiringOutcome::Skipped, FiringOutcome::Missed];

    pub fn as_str(self) -> &'static str {
        match self {
            FiringOutcome::Fired => "fired",
            FiringOutcome::Skipped => "skipped",
            FiringOutcome::Missed => "missed",
        }
    }
}

impl FromStr for FiringOutcome {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_name("firing outcome", s, &FiringOutcome::ALL, FiringOutcome::as_str)
    }
}

/// A run as it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Unique, chosen by the caller.
    pub id: String,
    pub scenario: String,
    /// The target's lease key: one run per target at a time.
    pub target: String,
    pub trigger: Trigger,
    /// The schedule that started it, if one did.
    pub schedule: Option<String>,
    pub started_at: Timestamp,
    /// Started blind: its faults are hidden from a game day's participants until it ends.
    pub blind: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    pub state: RunState,
    pub finished_at: Timestamp,
    pub time_to_detect: Option<Duration>,
    pub mttr: Option<Duration>,
    /// The run record (report.json's content).
    pub record: Option<String>,
}

/// A run in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRun {
    pub id: String,
    pub scenario: String,
    pub target: String,
    pub state: RunState,
    pub trigger: Trigger,
    pub schedule: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub time_to_detect: Option<Duration>,
    pub mttr: Option<Duration>,
    pub blind: bool,
    /// Only filled by [`Store::run`]; lists leave it out.
    pub record: Option<String>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    pub scenario: Option<String>,
    pub state: Option<RunState>,
    /// Runs started at or after this instant.
    pub since: Option<Timestamp>,
    /// At most this many (1 to [`MAX_PAGE`]; 0 means 50).
    pub limit: usize,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

/// One page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPage {
    pub runs: Vec<StoredRun>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// One event of a run, as the engine numbered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    pub json: String,
}

/// What became of one due time of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub schedule: String,
    pub due: Timestamp,
    pub outcome: FiringOutcome,
    /// Why it was skipped or missed; for a catch-up run, that it was one.
    pub reason: Option<String>,
    /// The run it started.
    pub run_id: Option<String>,
    pub recorded_at: Timestamp,
}

/// How much history to keep, applied to each scenario on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many finished runs per scenario (the newest).
    pub keep_runs: Option<usize>,
    /// Delete finished runs that started longer ago than this.
    pub max_age: Option<Duration>,
}

/// A scenario's latest finished runs, as [`Store::latest_per_scenario`] finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioLatest {
    pub scenario: String,
    /// The newest finished run.
    pub last: StoredRun,
    /// The newest finished run that had a time-to-detect.
    pub last_with_ttd: Option<StoredRun>,
    /// The newest finished run that had an MTTR.
    pub last_with_mttr: Option<StoredRun>,
}

/// The history database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const RUN_COLUMNS: &str =
    "id, scenario, target, state, trigger, schedule, started_ms, finished_ms, time_to_detect_ms, mttr_ms, blind";

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn from_ms(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms).map_err(|_| StoreError::Corrupt { what: "time", value: ms.to_string() })
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn corrupt(what: &'static str) -> impl Fn(UnknownName) -> StoreError {
    move |e| StoreError::Corrupt { what, value: e.value }
}

/// A row of [`RUN_COLUMNS`] (plus `record` when `with_record`) as read, before checking.
struct RawRun {
    id: String,
    scenario: String,
    target: String,
    state: String,
    trigger: String,
    schedule: Option<String>,
    started_ms: i64,
    finished_ms: Option<i64>,
    ttd_ms: Option<i64>,
    mttr_ms: Option<i64>,
    blind: bool,
    record: Option<String>,
    rowid: i64,
}

impl RawRun {
    /// Reads `RUN_COLUMNS, rowid[, record]`.
    fn read(row: &Row<'_>, with_record: bool) -> rusqlite::Result<RawRun> {
        Ok(RawRun {
            id: row.get(0)?,
            scenario: row.get(1)?,
            target: row.get(2)?,
            state: row.get(3)?,
            trigger: row.get(4)?,
            schedule: row.get(5)?,
            started_ms: row.get(6)?,
            finished_ms: row.get(7)?,
            ttd_ms: row.get(8)?,
            mttr_ms: row.get(9)?,
            blind: row.get(10)?,
            rowid: row.get(11)?,
            record: if with_record { row.get(12)? } else { None },
        })
    }

    fn check(self) -> Result<StoredRun, StoreError> {
        let dur = |v: Option<i64>| v.map(|m| Duration::from_millis(m.max(0) as u64));
        Ok(StoredRun {
            state: self.state.parse().map_err(corrupt("run state"))?,
            trigger: self.trigger.parse().map_err(corrupt("trigger"))?,
            started_at: from_ms(self.started_ms)?,
            finished_at: self.finished_ms.map(from_ms).transpose()?,
            time_to_detect: dur(self.ttd_ms),
            mttr: dur(self.mttr_ms),
            id: self.id,
            scenario: self.scenario,
            target: self.target,
            schedule: self.schedule,
            blind: self.blind,
            record: self.record,
        })
    }
}

/// A cursor is the sort key of the last run of a page: `<started ms>.<rowid>`, in hexadecimal
/// behind a version prefix so that nobody mistakes it for a time.
fn encode_cursor(started_ms: i64, rowid: i64) -> String {
    format!("c1{:016x}{:016x}", started_ms as u64, rowid as u64)
}

fn decode_cursor(s: &str) -> Result<(i64, i64), StoreError> {
    let bad = || StoreError::BadCursor(s.to_string());
    let hex = s.strip_prefix("c1").filter(|h| h.len() == 32 && h.is_ascii()).ok_or_else(bad)?;
    let started = u64::from_str_radix(&hex[..16], 16).map_err(|_| bad())? as i64;
    let rowid = u64::from_str_radix(&hex[16..], 16).map_err(|_| bad())? as i64;
    Ok((started, rowid))
}

impl Store {
    /// Opens (or creates) the history at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        // Read the version before anything writes: switching to WAL already changes the file.
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(open_err)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path: path.to_path_buf(), found, supported: SCHEMA_VERSION });
        }
        // A file damaged in the middle opens and answers its first queries; every run listing
        // would fail later. Checked once here, before anything is written.
        // Only SQLite saying the file is damaged is called damaged: a busy, unreadable or
        // unopenable file is an error of its own, whose advice is not to move the history aside.
        let damaged = |detail: String| StoreError::Damaged { path: path.to_path_buf(), detail };
        let failed = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => damaged(e.to_string()),
            _ => open_err(e),
        };
        let mut check = conn.prepare("PRAGMA quick_check(5)").map_err(failed)?;
        let lines: Vec<String> =
            check.query_map([], |r| r.get::<_, String>(0)).and_then(|rows| rows.collect()).map_err(failed)?;
        drop(check);
        if lines != ["ok"] {
            return Err(damaged(lines.join("; ")));
        }
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal { path: path.to_path_buf(), mode });
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;").map_err(open_err)?;
        let mut store = Store { conn, path: path.to_path_buf() };
        store.migrate(found)?;
        Ok(store)
    }

    /// The file the history lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn migrate(&mut self, from: i64) -> Result<(), StoreError> {
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            let version = i as i64 + 1;
            let err = |source| StoreError::Migrate { path: self.path.clone(), version, source };
            let tx = self.conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            // `user_version` is part of the transaction: a migration is applied whole or not at all.
            tx.pragma_update(None, "user_version", version).map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(())
    }

    /// Records a run that starts, in state `running`.
    pub fn insert_run(&self, run: &NewRun) -> Result<(), StoreError> {
        let r = self.conn.execute(
            "INSERT INTO runs (id, scenario, target, state, trigger, schedule, started_ms, blind)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                run.id,
                run.scenario,
                run.target,
                RunState::Running.as_str(),
                run.trigger.as_str(),
                run.schedule,
                ms(run.started_at),
                run.blind
            ],
        );
        match r {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::DuplicateRun(run.id.clone()))
            }
            r => r.map(|_| ()).map_err(StoreError::from),
        }
    }

    /// Records how a run ended (its final state, figures and record).
    pub fn finish_run(&self, id: &str, end: &RunEnd) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE runs SET state = ?2, finished_ms = ?3, time_to_detect_ms = ?4, mttr_ms = ?5, record = ?6
             WHERE id = ?1",
            params![
                id,
                end.state.as_str(),
                ms(end.finished_at),
                end.time_to_detect.map(duration_ms),
                end.mttr.map(duration_ms),
                end.record
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(id.to_string()));
        }
        Ok(())
    }

    /// Changes a run's state alone, without finishing it (e.g. to `error` for a run whose
    /// figures never came).
    pub fn set_state(&self, id: &str, state: RunState) -> Result<(), StoreError> {
        let n = self.conn.execute("UPDATE runs SET state = ?2 WHERE id = ?1", params![id, state.as_str()])?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(id.to_string()));
        }
        Ok(())
    }

    /// One run, with its record.
    pub fn run(&self, id: &str) -> Result<Option<StoredRun>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS}, rowid, record FROM runs WHERE id = ?1");
        let raw = self.conn.query_row(&sql, [id], |r| RawRun::read(r, true)).optional()?;
        raw.map(RawRun::check).transpose()
    }

    /// Runs newest first, filtered and paged (see [`RunQuery`]).
    pub fn list_runs(&self, q: &RunQuery) -> Result<RunPage, StoreError> {
        let limit = match q.limit {
            0 => 50,
            n => n.min(MAX_PAGE),
        };
        let mut sql = format!("SELECT {RUN_COLUMNS}, rowid FROM runs WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = &q.scenario {
            args.push(s.clone().into());
            sql += &format!(" AND scenario = ?{}", args.len());
        }
        if let Some(s) = q.state {
            args.push(s.as_str().to_string().into());
            sql += &format!(" AND state = ?{}", args.len());
        }
        if let Some(t) = q.since {
            args.push(ms(t).into());
            sql += &format!(" AND started_ms >= ?{}", args.len());
        }
        if let Some(c) = &q.cursor {
            let (started, rowid) = decode_cursor(c)?;
            args.push(started.into());
            args.push(rowid.into());
            sql += &format!(" AND (started_ms, rowid) < (?{}, ?{})", args.len() - 1, args.len());
        }
        // One more than the page, to know whether a next page exists.
        sql += &format!(" ORDER BY started_ms DESC, rowid DESC LIMIT {}", limit + 1);
        let mut stmt = self.conn.prepare(&sql)?;
        let raws = stmt
            .query_map(rusqlite::params_from_iter(args), |r| RawRun::read(r, false))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let more = raws.len() > limit;
        let mut runs = Vec::with_capacity(limit);
        let mut last = None;
        for raw in raws.into_iter().take(limit) {
            last = Some((raw.started_ms, raw.rowid));
            runs.push(raw.check()?);
        }
        let next = last.filter(|_| more).map(|(s, r)| encode_cursor(s, r));
        Ok(RunPage { runs, next })
    }

    fn rowid(&self, id: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT rowid FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))
    }

    /// Appends events of a run, all in one transaction. An event whose `seq` is already stored
    /// is left as it was, so a batch sent again after an error is harmless.
    pub fn append_events(&mut self, id: &str, events: &[StoredEvent]) -> Result<(), StoreError> {
        let run = self.rowid(id)?;
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare("INSERT OR IGNORE INTO run_events (run, seq, json) VALUES (?1, ?2, ?3)")?;
            for e in events {
                stmt.execute(params![run, e.seq as i64, e.json])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A run's events with `seq >= from`, in order, at most `limit`.
    pub fn events(&self, id: &str, from: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let run = self.rowid(id)?;
        let mut stmt =
            self.conn.prepare("SELECT seq, json FROM run_events WHERE run = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3")?;
        let rows = stmt.query_map(params![run, from as i64, limit as i64], |r| {
            Ok(StoredEvent { seq: r.get::<_, i64>(0)? as u64, json: r.get(1)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Stores (or replaces) one report file of a run.
    pub fn put_file(&self, id: &str, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let run = self.rowid(id)?;
        self.conn.execute(
            "INSERT INTO run_files (run, name, bytes) VALUES (?1, ?2, ?3)
             ON CONFLICT (run, name) DO UPDATE SET bytes = excluded.bytes",
            params![run, name, bytes],
        )?;
        Ok(())
    }

    /// One report file of a run.
    pub fn file(&self, id: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let run = self.rowid(id)?;
        Ok(self
            .conn
            .query_row("SELECT bytes FROM run_files WHERE run = ?1 AND name = ?2", params![run, name], |r| r.get(0))
            .optional()?)
    }

    /// The names of a run's report files, sorted.
    pub fn file_names(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let run = self.rowid(id)?;
        let mut stmt = self.conn.prepare("SELECT name FROM run_files WHERE run = ?1 ORDER BY name")?;
        let rows = stmt.query_map([run], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Marks every run still `running` as `interrupted`, finished at `now`, and returns their ids
    /// (oldest first). Called at daemon start, before any schedule fires: no run survives the
    /// daemon that ran it.
    pub fn mark_interrupted(&mut self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        let tx = self.conn.transaction()?;
        let ids = {
            let mut stmt = tx.prepare("SELECT id FROM runs WHERE state = ?1 ORDER BY started_ms, rowid")?;
            stmt.query_map([RunState::Running.as_str()], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?
        };
        tx.execute(
            "UPDATE runs SET state = ?1, finished_ms = ?2 WHERE state = ?3",
            params![RunState::Interrupted.as_str(), ms(now), RunState::Running.as_str()],
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// Deletes old finished runs (with their events and files) of every scenario as `policy`
    /// says, each scenario on its own; runs still `running` are never deleted. Returns how many
    /// runs were deleted.
    pub fn apply_retention(&mut self, policy: &Retention, now: Timestamp) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut deleted = 0;
        let running = RunState::Running.as_str();
        if let Some(age) = policy.max_age {
            let cutoff = ms(now).saturating_sub(duration_ms(age));
            deleted +=
                tx.execute("DELETE FROM runs WHERE state != ?1 AND started_ms < ?2", params![running, cutoff])?;
        }
        if let Some(keep) = policy.keep_runs {
            deleted += tx.execute(
                "DELETE FROM runs WHERE rowid IN (
                    SELECT rowid FROM (
                        SELECT rowid, ROW_NUMBER() OVER (
                            PARTITION BY scenario ORDER BY started_ms DESC, rowid DESC) AS n
                        FROM runs WHERE state != ?1)
                    WHERE n > ?2)",
                params![running, keep as i64],
            )?;
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Records what became of a schedule's due time.
    pub fn record_firing(&self, f: &Firing) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO schedule_firings (schedule, due_ms, outcome, reason, run_id, recorded_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![f.schedule, ms(f.due), f.outcome.as_str(), f.reason, f.run_id, ms(f.recorded_at)],
        )?;
        Ok(())
    }

    /// A schedule's firings, latest due time first, at most `limit`.
    pub fn firings(&self, schedule: &str, limit: usize) -> Result<Vec<Firing>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT schedule, due_ms, outcome, reason, run_id, recorded_ms FROM schedule_firings
             WHERE schedule = ?1 ORDER BY due_ms DESC, rowid DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![schedule, limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (schedule, due, outcome, reason, run_id, recorded) = row?;
            out.push(Firing {
                schedule,
                due: from_ms(due)?,
                outcome: outcome.parse().map_err(corrupt("firing outcome"))?,
                reason,
                run_id,
                recorded_at: from_ms(recorded)?,
            });
        }
        Ok(out)
    }

    /// Pauses (`true`) or resumes a schedule by name; pausing a paused one keeps its time.
    pub fn set_paused(&self, schedule: &str, paused: bool, now: Timestamp) -> Result<(), StoreError> {
        if paused {
            self.conn.execute(
                "INSERT OR IGNORE INTO paused_schedules (name, paused_ms) VALUES (?1, ?2)",
                params![schedule, ms(now)],
            )?;
        } else {
            self.conn.execute("DELETE FROM paused_schedules WHERE name = ?1", [schedule])?;
        }
        Ok(())
    }

    /// The names of the paused schedules, sorted.
    pub fn paused_schedules(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT name FROM paused_schedules ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The latest recorded due time of a schedule, whatever became of it: where the catch-up
    /// decision at start counts from.
    pub fn last_firing(&self, schedule: &str) -> Result<Option<Firing>, StoreError> {
        Ok(self.firings(schedule, 1)?.into_iter().next())
    }

    /// A scenario's finished runs (every state but `running`), newest first, at most `limit`:
    /// what its trend is computed from.
    pub fn finished_runs(&self, scenario: &str, limit: usize) -> Result<Vec<StoredRun>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS}, rowid FROM runs WHERE scenario = ?1 AND state != ?2
             ORDER BY started_ms DESC, rowid DESC LIMIT ?3"
        );
        self.query_runs(&sql, params![scenario, RunState::Running.as_str(), limit as i64])
    }

    /// The runs a `SELECT {RUN_COLUMNS}, rowid` returns, checked.
    fn query_runs(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<StoredRun>, StoreError> {
        let mut stmt = self.conn.prepare(sql)?;
        let raws = stmt.query_map(args, |r| RawRun::read(r, false))?.collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawRun::check).collect()
    }

    /// How many runs of each scenario ended in each state since the history began (retention
    /// does not lower it), sorted by scenario then state name.
    pub fn run_counts(&self) -> Result<Vec<(String, RunState, u64)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT scenario, state, n FROM run_totals ORDER BY scenario, state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (scenario, state, n) = row?;
            out.push((scenario, state.parse().map_err(corrupt("run state"))?, n.max(0) as u64));
        }
        Ok(out)
    }

    /// Per scenario (sorted by name), the latest finished run, and the latest finished runs that
    /// had a time-to-detect and an MTTR.
    pub fn latest_per_scenario(&self) -> Result<Vec<ScenarioLatest>, StoreError> {
        // The newest finished run of each scenario, and of those with each figure set.
        let newest = |filter: &str| {
            format!(
                "SELECT {RUN_COLUMNS}, rowid FROM (
                    SELECT *, ROW_NUMBER() OVER (PARTITION BY scenario ORDER BY started_ms DESC, rowid DESC) AS n
                    FROM runs WHERE state != ?1 {filter})
                 WHERE n = 1 ORDER BY scenario"
            )
        };
        let read = |sql: String| self.query_runs(&sql, [RunState::Running.as_str()]);
        let last = read(newest(""))?;
        let ttd = read(newest("AND time_to_detect_ms IS NOT NULL"))?;
        let mttr = read(newest("AND mttr_ms IS NOT NULL"))?;
        let find = |v: &[StoredRun], name: &str| v.iter().find(|r| r.scenario == name).cloned();
        Ok(last
            .iter()
            .map(|r| ScenarioLatest {
                scenario: r.scenario.clone(),
                last: r.clone(),
                last_with_ttd: find(&ttd, &r.scenario),
                last_with_mttr: find(&mttr, &r.scenario),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn new_run(id: &str, scenario: &str, started: Timestamp) -> NewRun {
        NewRun {
            id: id.to_string(),
            scenario: scenario.to_string(),
            target: "lab:api".to_string(),
            trigger: Trigger::Api,
            schedule: None,
            started_at: started,
            blind: false,
        }
    }

    fn end(state: RunState, at: Timestamp) -> RunEnd {
        RunEnd { state, finished_at: at, time_to_detect: None, mttr: None, record: None }
    }

    fn open_temp() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("history.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn runs_round_trip_with_their_figures_and_record() {
        let (_dir, store) = open_temp();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let start = t("2026-12-01T10:00:00.250Z");
        let mut run = new_run("r1", "task-kill", start);
        run.trigger = Trigger::CatchUp;
        run.schedule = Some("nightly".into());
        run.blind = true;
        store.insert_run(&run).unwrap();
        store.insert_run(&new_run("r0", "task-kill", start)).unwrap();
        let got = store.run("r1").unwrap().unwrap();
        assert_eq!(
            (got.state, got.trigger, got.started_at, got.finished_at),
            (RunState::Running, Trigger::CatchUp, start, None)
        );
        assert_eq!(got.schedule.as_deref(), Some("nightly"));
        let listed = store.list_runs(&RunQuery::default()).unwrap().runs;
        let blind: Vec<(&str, bool)> = listed.iter().map(|r| (r.id.as_str(), r.blind)).collect();
        assert_eq!(blind, [("r0", false), ("r1", true)]);
        assert!(matches!(store.insert_run(&run), Err(StoreError::DuplicateRun(id)) if id == "r1"));

        let finish = RunEnd {
            state: RunState::RevertFailed,
            finished_at: t("2026-12-01T10:05:00Z"),
            time_to_detect: Some(Duration::from_millis(4500)),
            mttr: Some(Duration::from_secs(31)),
            record: Some(r#"{"verdict":"revert-failed"}"#.into()),
        };
        store.finish_run("r1", &finish).unwrap();
        let got = store.run("r1").unwrap().unwrap();
        assert_eq!(got.state, RunState::RevertFailed);
        assert_eq!(got.finished_at, Some(finish.finished_at));
        assert_eq!((got.time_to_detect, got.mttr), (finish.time_to_detect, finish.mttr));
        assert_eq!(got.record, finish.record);
        assert!(store.run("nope").unwrap().is_none());
        assert!(matches!(store.finish_run("nope", &finish), Err(StoreError::NoSuchRun(_))));
        store.set_state("r1", RunState::Error).unwrap();
        assert_eq!(store.run("r1").unwrap().unwrap().state, RunState::Error);
    }

    #[test]
    fn states_and_triggers_have_stable_names() {
        let names: Vec<_> = RunState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            ["running", "passed", "failed", "aborted", "precondition-failed", "revert-failed", "interrupted", "error"]
        );
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for tr in Trigger::ALL {
            assert_eq!(tr.as_str().parse::<Trigger>(), Ok(tr));
        }
        assert_eq!(Trigger::CatchUp.as_str(), "catch-up");
        let e = "pass".parse::<RunState>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown run state `pass`: expected one of running, passed, failed, aborted, precondition-failed, revert-failed, interrupted, error"
        );
    }

    #[test]
    fn events_are_appended_in_batches_and_read_from_a_seq() {
        let (_dir, mut store) = open_temp();
        store.insert_run(&new_run("r1", "s", t("2026-12-01T10:00:00Z"))).unwrap();
        store.insert_run(&new_run("r2", "s", t("2026-12-01T10:00:01Z"))).unwrap();
        let batch: Vec<_> = (0..10).map(|i| StoredEvent { seq: i, json: format!(r#"{{"n":{i}}}"#) }).collect();
        store.append_events("r1", &batch[..6]).unwrap();
        // The same batch again after a failure, then the rest: nothing doubled.
        store.append_events("r1", &batch[..6]).unwrap();
        store.append_events("r1", &batch[6..]).unwrap();
        store.append_events("r2", &batch[..1]).unwrap();
        assert_eq!(store.events("r1", 0, 100).unwrap(), batch);
        assert_eq!(store.events("r1", 7, 100).unwrap(), batch[7..]);
        assert_eq!(store.events("r1", 2, 3).unwrap(), batch[2..5]);
        assert_eq!(store.events("r2", 0, 100).unwrap().len(), 1);
        assert!(matches!(store.append_events("nope", &batch), Err(StoreError::NoSuchRun(_))));
    }

    #[test]
    fn a_failed_batch_of_events_leaves_none_of_it() {
        let (_dir, mut store) = open_temp();
        store.insert_run(&new_run("r1", "s", t("2026-12-01T10:00:00Z"))).unwrap();
        // A trigger refuses the fourth event of the batch.
        store
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER fail_seq_3 BEFORE INSERT ON run_events WHEN NEW.seq = 3
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let batch: Vec<_> = (0..5).map(|i| StoredEvent { seq: i, json: "{}".into() }).collect();
        assert!(store.append_events("r1", &batch).is_err());
        assert!(store.events("r1", 0, 100).unwrap().is_empty(), "the batch is one transaction");
    }

    #[test]
    fn report_files_round_trip() {
        let (_dir, store) = open_temp();
        store.insert_run(&new_run("r1", "s", t("2026-12-01T10:00:00Z"))).unwrap();
        let svg = b"<svg>\x00\xff</svg>".to_vec();
        store.put_file("r1", "report.md", b"# old").unwrap();
        store.put_file("r1", "report.md", b"# report").unwrap();
        store.put_file("r1", "latency.svg", &svg).unwrap();
        assert_eq!(store.file("r1", "report.md").unwrap().as_deref(), Some(&b"# report"[..]));
        assert_eq!(store.file("r1", "latency.svg").unwrap(), Some(svg));
        assert_eq!(store.file("r1", "junit.xml").unwrap(), None);
        assert_eq!(store.file_names("r1").unwrap(), ["latency.svg", "report.md"]);
        assert!(matches!(store.put_file("nope", "a", b""), Err(StoreError::NoSuchRun(_))));
    }

    /// 300 runs, some sharing a start time (the tie is broken by insertion order), paged in
    /// pages of 7: every run exactly once, newest first, whatever the filter.
    #[test]
    fn keyset_paging_has_no_duplicates_and_no_gaps() {
        let (_dir, store) = open_temp();
        let base = t("2026-01-01T00:00:00Z");
        let mut expected = Vec::new();
        for i in 0..300i64 {
            // Three runs per second of start time.
            let started = base + jiff::SignedDuration::from_secs(i / 3);
            let scenario = if i % 4 == 0 { "a" } else { "b" };
            let id = format!("run-{i:03}");
            store.insert_run(&new_run(&id, scenario, started)).unwrap();
            if i % 5 == 0 {
                store.finish_run(&id, &end(RunState::Failed, started)).unwrap();
            }
            expected.push((id, scenario, i % 5 == 0, started));
        }
        expected.reverse();
        let collect = |q: RunQuery| {
            let mut q = q;
            q.limit = 7;
            let mut ids = Vec::new();
            let mut pages = 0;
            loop {
                let page = store.list_runs(&q).unwrap();
                assert!(page.runs.len() <= 7);
                ids.extend(page.runs.iter().map(|r| r.id.clone()));
                pages += 1;
                match page.next {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            (ids, pages)
        };
        let (all, pages) = collect(RunQuery::default());
        assert_eq!(all, expected.iter().map(|e| e.0.clone()).collect::<Vec<_>>());
        assert_eq!(pages, 300usize.div_ceil(7));

        let (a, _) = collect(RunQuery { scenario: Some("a".into()), ..Default::default() });
        assert_eq!(a, expected.iter().filter(|e| e.1 == "a").map(|e| e.0.clone()).collect::<Vec<_>>());

        let (failed, _) = collect(RunQuery { state: Some(RunState::Failed), ..Default::default() });
        assert_eq!(failed, expected.iter().filter(|e| e.2).map(|e| e.0.clone()).collect::<Vec<_>>());

        let since = base + jiff::SignedDuration::from_secs(90);
        let (recent, _) = collect(RunQuery { since: Some(since), scenario: Some("b".into()), ..Default::default() });
        let want: Vec<_> = expected.iter().filter(|e| e.3 >= since && e.1 == "b").map(|e| e.0.clone()).collect();
        assert_eq!(recent, want);
        assert!(!want.is_empty());

        // A run added while paging is newer than every cursor: it never shifts the pages.
        let mut q = RunQuery { limit: 10, ..Default::default() };
        let first = store.list_runs(&q).unwrap();
        store.insert_run(&new_run("late", "a", base + jiff::SignedDuration::from_secs(1000))).unwrap();
        q.cursor = first.next;
        let second = store.list_runs(&q).unwrap();
        assert_eq!(second.runs[0].id, expected[10].0);

        // Exactly one page: no cursor.
        let one = store.list_runs(&RunQuery { limit: 500, ..Default::default() }).unwrap();
        assert_eq!((one.runs.len(), one.next), (301, None));
    }

    #[test]
    fn a_bad_cursor_is_refused() {
        let (_dir, store) = open_temp();
        for c in ["", "42", "c1zz", "c10000000000000000000000000000000g"] {
            let q = RunQuery { cursor: Some(c.into()), ..Default::default() };
            assert!(matches!(store.list_runs(&q), Err(StoreError::BadCursor(_))), "{c}");
        }
        assert_eq!(decode_cursor(&encode_cursor(1_764_000_000_000, 77)).unwrap(), (1_764_000_000_000, 77));
    }

    #[test]
    fn mark_interrupted_ends_every_running_run() {
        let (_dir, mut store) = open_temp();
        store.insert_run(&new_run("old", "s", t("2026-12-01T09:00:00Z"))).unwrap();
        store.insert_run(&new_run("done", "s", t("2026-12-01T09:30:00Z"))).unwrap();
        store.finish_run("done", &end(RunState::Passed, t("2026-12-01T09:35:00Z"))).unwrap();
        store.insert_run(&new_run("new", "t", t("2026-12-01T10:00:00Z"))).unwrap();
        let now = t("2026-12-01T11:00:00Z");
        assert_eq!(store.mark_interrupted(now).unwrap(), ["old", "new"]);
        for id in ["old", "new"] {
            let r = store.run(id).unwrap().unwrap();
            assert_eq!((r.state, r.finished_at), (RunState::Interrupted, Some(now)));
        }
        assert_eq!(store.run("done").unwrap().unwrap().state, RunState::Passed);
        assert!(store.mark_interrupted(now).unwrap().is_empty());
    }

    #[test]
    fn retention_by_count_and_age_per_scenario() {
        let (_dir, mut store) = open_temp();
        let now = t("2026-12-01T00:00:00Z");
        // Scenario a: 6 finished runs one day apart (0 to 5 days old), b: 2 runs, plus a running
        // run of a that is 10 days old.
        for i in 0..6i64 {
            let id = format!("a{i}");
            let started = now - jiff::SignedDuration::from_hours(24 * i);
            store.insert_run(&new_run(&id, "a", started)).unwrap();
            store.finish_run(&id, &end(RunState::Passed, started)).unwrap();
            store.append_events(&id, &[StoredEvent { seq: 0, json: "{}".into() }]).unwrap();
            store.put_file(&id, "report.md", b"x").unwrap();
        }
        for i in 0..2i64 {
            let id = format!("b{i}");
            let started = now - jiff::SignedDuration::from_hours(24 * i + 1);
            store.insert_run(&new_run(&id, "b", started)).unwrap();
            store.finish_run(&id, &end(RunState::Failed, started)).unwrap();
        }
        store.insert_run(&new_run("a-running", "a", now - jiff::SignedDuration::from_hours(240))).unwrap();

        let ids = |store: &Store| {
            let mut v: Vec<_> = store
                .list_runs(&RunQuery { limit: 500, ..Default::default() })
                .unwrap()
                .runs
                .into_iter()
                .map(|r| r.id)
                .collect();
            v.sort();
            v
        };
        let n = store.apply_retention(&Retention { keep_runs: Some(4), max_age: None }, now).unwrap();
        assert_eq!(n, 2);
        assert_eq!(ids(&store), ["a-running", "a0", "a1", "a2", "a3", "b0", "b1"]);
        let n = store
            .apply_retention(&Retention { keep_runs: None, max_age: Some(Duration::from_secs(36 * 3600)) }, now)
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(ids(&store), ["a-running", "a0", "a1", "b0", "b1"]);
        let n = store.apply_retention(&Retention { keep_runs: Some(1), max_age: None }, now).unwrap();
        assert_eq!(n, 2);
        assert_eq!(ids(&store), ["a-running", "a0", "b0"]);
        assert_eq!(store.apply_retention(&Retention::default(), now).unwrap(), 0);
        // Events and files went with their runs.
        let left: i64 = store.conn.query_row("SELECT count(*) FROM run_events", [], |r| r.get(0)).unwrap();
        let files: i64 = store.conn.query_row("SELECT count(*) FROM run_files", [], |r| r.get(0)).unwrap();
        assert_eq!((left, files), (1, 1));
        // The counts of ended runs did not go down with them; the running one is not counted yet.
        let counts = store.run_counts().unwrap();
        assert_eq!(counts, [("a".into(), RunState::Passed, 6), ("b".into(), RunState::Failed, 2)]);
        store.finish_run("a-running", &end(RunState::Aborted, now)).unwrap();
        store.set_state("a-running", RunState::Error).unwrap();
        assert_eq!(store.run_counts().unwrap()[0], ("a".into(), RunState::Aborted, 1), "counted once, as it ended");
    }

    #[test]
    fn schedule_firings_are_recorded() {
        let (_dir, store) = open_temp();
        assert_eq!(store.last_firing("nightly").unwrap(), None);
        let f = |due: &str, outcome, reason: Option<&str>, run: Option<&str>| Firing {
            schedule: "nightly".into(),
            due: t(due),
            outcome,
            reason: reason.map(String::from),
            run_id: run.map(String::from),
            recorded_at: t(due) + jiff::SignedDuration::from_millis(3),
        };
        let fired = f("2026-12-01T02:00:00Z", FiringOutcome::Fired, None, Some("r1"));
        let skipped = f("2026-12-02T02:00:00Z", FiringOutcome::Skipped, Some("target lab:api is busy (run r9)"), None);
        let missed = f("2026-12-03T02:00:00Z", FiringOutcome::Missed, Some("the daemon was down"), None);
        for x in [&fired, &missed, &skipped] {
            store.record_firing(x).unwrap();
        }
        store
            .record_firing(&Firing {
                schedule: "other".into(),
                ..f("2026-12-09T00:00:00Z", FiringOutcome::Fired, None, None)
            })
            .unwrap();
        assert_eq!(store.last_firing("nightly").unwrap(), Some(missed.clone()));
        assert_eq!(store.firings("nightly", 10).unwrap(), [missed, skipped, fired]);
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE future (x); INSERT INTO future VALUES (1); PRAGMA user_version = 7;")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = match Store::open(&path) {
            Err(e) => e,
            Ok(_) => panic!("a newer schema was opened"),
        };
        assert!(matches!(err, StoreError::NewerSchema { found: 7, supported: SCHEMA_VERSION, .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "the history database {} has schema version 7, newer than version {SCHEMA_VERSION} that this siege knows: use a newer siege (the database was not changed)",
                path.display()
            )
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "not one byte changed");
        assert!(!dir.path().join("history.db-wal").exists(), "not switched to WAL");
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_runs_and_pauses_and_blind_runs_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO runs (id, scenario, target, state, trigger, started_ms)
                 VALUES ('r1', 's', 'lab:api', 'passed', 'api', 1764583200000);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let r1 = store.run("r1").unwrap().expect("the version 1 run");
        assert_eq!((r1.state, r1.blind), (RunState::Passed, false));
        assert_eq!(store.run_counts().unwrap(), [("s".into(), RunState::Passed, 1)], "counted from the runs held");
        let now = t("2026-12-01T11:00:00Z");
        store.set_paused("nightly", true, now).unwrap();
        store.set_paused("nightly", true, now).unwrap();
        store.set_paused("hourly", true, now).unwrap();
        store.set_paused("hourly", false, now).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.paused_schedules().unwrap(), ["nightly"]);
    }

    /// An in-memory database cannot be in WAL mode: refused, as a file system without shared
    /// memory would be.
    #[test]
    fn a_database_that_cannot_use_wal_is_refused() {
        let err = Store::open(Path::new(":memory:")).err().expect("opened without WAL");
        assert!(matches!(&err, StoreError::NoWal { mode, .. } if mode == "memory"), "{err}");
    }

    #[test]
    fn an_older_schema_is_migrated_and_reopening_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        // Version 0: an empty file, as a first start leaves it.
        drop(Connection::open(&path).unwrap());
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        store.insert_run(&new_run("r1", "s", t("2026-12-01T10:00:00Z"))).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(store.run("r1").unwrap().is_some());
        let mode: String = store.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    /// A child process commits a run and an event, then is killed with SIGKILL in the middle of
    /// its next transaction: the committed data is there, the uncommitted is not.
    #[test]
    fn a_process_killed_mid_transaction_loses_only_the_uncommitted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        // SAFETY: the child only opens its own connection, writes and kills itself; it never
        // returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let wrote = std::panic::catch_unwind(|| {
                let mut store = Store::open(&path).unwrap();
                store.insert_run(&new_run("r1", "s", t("2026-12-01T10:00:00Z"))).unwrap();
                store.append_events("r1", &[StoredEvent { seq: 0, json: "{}".into() }]).unwrap();
                let tx = store.conn.transaction().unwrap();
                tx.execute("INSERT INTO run_events (run, seq, json) VALUES (1, 1, '{}')", []).unwrap();
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            });
            // Only reached when a step failed: leave without running anything of the harness.
            unsafe { libc::_exit(if wrote.is_err() { 1 } else { 2 }) };
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL, "status {status}");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.run("r1").unwrap().unwrap().state, RunState::Running);
        assert_eq!(store.events("r1", 0, 10).unwrap(), [StoredEvent { seq: 0, json: "{}".into() }]);
    }

    /// The process dies without closing the database (no checkpoint, the WAL file left behind):
    /// everything committed is there at the next open.
    #[test]
    fn committed_data_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let mut store = Store::open(&path).unwrap();
        store.insert_run(&new_run("r1", "s", t("2026-12-01T10:00:00Z"))).unwrap();
        store.append_events("r1", &[StoredEvent { seq: 0, json: r#"{"started":true}"#.into() }]).unwrap();
        store.put_file("r1", "report.md", b"# r1").unwrap();
        std::mem::forget(store);
        assert!(dir.path().join("history.db-wal").exists(), "the data is still only in the WAL");

        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.run("r1").unwrap().unwrap().state, RunState::Running);
        assert_eq!(store.events("r1", 0, 10).unwrap().len(), 1);
        assert_eq!(store.file("r1", "report.md").unwrap().as_deref(), Some(&b"# r1"[..]));
        assert_eq!(store.mark_interrupted(t("2026-12-01T11:00:00Z")).unwrap(), ["r1"]);
    }
}
