//! A load worker: one OS thread with its own single-threaded runtime, a set of keep-alive
//! connections and one recorder. There is one connection loop for both models: it takes the
//! intended send time of its next request from the worker's [`Source`] — "now" in the closed
//! model, the open model's backlog of due requests otherwise — sends, waits (bounded by the
//! timeout), and records.
//!
//! Open model: a dispatcher walks the schedule, wakes a little early (the timer fires up to a
//! millisecond late) and queues every request that is due; an idle connection takes it, or a new
//! connection is opened when none is idle and the bound allows. A request that finds every
//! allowed connection busy waits in the queue and is sent as soon as one frees up, its latency
//! still counted from when it was due; one that waits longer than the timeout is given up and
//! counted as missed.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::http1::{Conn, ConnectError};
use super::schedule::Schedule;
use super::stats::{Msg, Outcome, Recorder};

/// How early the dispatcher wakes before a request is due (tokio's timer has millisecond
/// resolution and never fires early).
const EARLY: Duration = Duration::from_millis(1);
/// Windows are handed over this long after their second closes.
const FLUSH_DELAY: Duration = Duration::from_millis(2);

/// What every worker sends to.
#[derive(Debug)]
pub(crate) struct Target {
    pub addr: SocketAddr,
    pub request: Vec<u8>,
    /// For an `https://` URL.
    pub tls: Option<super::tls::Tls>,
}

/// One worker's part of the plan.
pub(crate) struct WorkerSpec {
    pub target: Arc<Target>,
    pub source: SourceSpec,
    pub start: Instant,
    pub duration: Duration,
    pub timeout: Duration,
    pub notice: super::stats::Noticing,
    pub cancel: CancellationToken,
    pub tx: mpsc::UnboundedSender<Msg>,
}

pub(crate) enum SourceSpec {
    Closed { connections: usize },
    Open { schedule: Schedule, max_connections: usize },
}

/// Starts a worker thread; it reports through `spec.tx` and ends with `Msg::Done`.
pub(crate) fn spawn(name: String, spec: WorkerSpec) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        let tx = spec.tx.clone();
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Msg::Failed(format!("cannot start a worker runtime: {e}")));
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        let (recorder, last, connections, stopped) = local.block_on(&rt, run_worker(spec));
        // Dropping the set drops every connection still open (a cancelled run's requests in flight).
        drop(local);
        recorder.finish(last, connections, stopped);
    })
}

/// State shared by the tasks of one worker (one thread: `Rc` and `Cell` suffice).
struct Worker {
    target: Arc<Target>,
    timeout: Duration,
    recorder: RefCell<Recorder>,
    /// `None` in the closed model.
    queue: Option<RefCell<VecDeque<Instant>>>,
    stopping: Cell<bool>,
    /// Connections waiting for work that nobody has woken yet.
    idle: Cell<usize>,
    /// Connection tasks alive.
    live: Cell<usize>,
    /// Connection tasks ever started (the report's `connections`).
    opened: Cell<usize>,
    work: Notify,
    exited: Notify,
}

async fn run_worker(spec: WorkerSpec) -> (Recorder, u32, usize, Instant) {
    let end = spec.start + spec.duration;
    let recorder = Recorder::new(spec.start, spec.duration, spec.notice, spec.tx.clone());
    let last_second = recorder.last_second();
    let open = matches!(spec.source, SourceSpec::Open { .. });
    let w = Rc::new(Worker {
        target: spec.target,
        timeout: spec.timeout,
        recorder: RefCell::new(recorder),
        queue: open.then(|| RefCell::new(VecDeque::new())),
        stopping: Cell::new(false),
        idle: Cell::new(0),
        live: Cell::new(0),
        opened: Cell::new(0),
        work: Notify::new(),
        exited: Notify::new(),
    });
    tokio::task::spawn_local(ticker(w.clone(), spec.start, last_second));
    let mut dispatcher = None;
    match spec.source {
        SourceSpec::Closed { connections } => {
            for _ in 0..connections {
                start_connection(&w);
            }
        }
        SourceSpec::Open { schedule, max_connections } => {
            dispatcher = Some(tokio::task::spawn_local(dispatch(w.clone(), schedule, spec.start, max_connections)));
        }
    }
    let finish = async {
        tokio::time::sleep_until(end.into()).await;
        // A dispatcher that fell behind (a starved CPU) still queues every request that fell due
        // before the end, so that none goes uncounted.
        if let Some(d) = dispatcher {
            let _ = d.await;
        }
        w.stopping.set(true);
        let stopped = Instant::now();
        w.work.notify_waiters();
        // Requests in flight finish (each bounded by the timeout) and are counted; requests
        // still waiting for a connection are sent or given up by the same rule as during the
        // run, so the end of the load hides nothing.
        while w.live.get() > 0 {
            w.exited.notified().await;
        }
        stopped
    };
    let stopped = tokio::select! {
        biased;
        _ = spec.cancel.cancelled() => {
            w.stopping.set(true);
            Instant::now()
        }
        stopped = finish => stopped,
    };
    let last = {
        let rec = w.recorder.borrow();
        rec.second_of(stopped)
    };
    let opened = w.opened.get();
    // The tasks still hold clones of `w`; take the recorder out by swapping in a spare.
    let spare = Recorder::new(spec.start, spec.duration, spec.notice, spec.tx.clone());
    let recorder = w.recorder.replace(spare);
    (recorder, last.min(last_second), opened, stopped)
}

/// Hands each second to the aggregator shortly after it closes. The last second is handed over
/// by the worker itself once the requests in flight at the end have finished.
async fn ticker(w: Rc<Worker>, start: Instant, last_second: u32) {
    for second in 1..=last_second {
        tokio::time::sleep_until((start + Duration::from_secs(second as u64) + FLUSH_DELAY).into()).await;
        w.recorder.borrow_mut().flush_before(second);
    }
}

fn start_connection(w: &Rc<Worker>) {
    w.live.set(w.live.get() + 1);
    w.opened.set(w.opened.get() + 1);
    tokio::task::spawn_local(connection(w.clone()));
}

/// Walks the schedule, queueing each request as it falls due and finding it a connection. Ends
/// when the schedule does (at the end of the duration); a cancelled run drops it.
async fn dispatch(w: Rc<Worker>, mut schedule: Schedule, start: Instant, max_connections: usize) {
    let Some(queue) = &w.queue else { return };
    let mut next = schedule.next().map(|t| start + t);
    while let Some(due) = next {
        let horizon = Instant::now() + EARLY;
        if due > horizon {
            tokio::select! {
                _ = tokio::time::sleep_until((due - EARLY).into()) => {}
                // The rate was changed while waiting: the next time is computed again from now.
                _ = schedule.changed() => {
                    schedule.replan(start.elapsed());
                    next = schedule.next().map(|t| start + t);
                }
            }
            continue;
        }
        w.recorder.borrow_mut().scheduled(due);
        queue.borrow_mut().push_back(due);
        if w.idle.get() > 0 {
            w.idle.set(w.idle.get() - 1);
            w.work.notify_one();
        } else if w.live.get() < max_connections {
            start_connection(&w);
        }
        next = schedule.next().map(|t| start + t);
    }
}

impl Worker {
    /// The intended send time of this connection's next request, or `None` when the load ends.
    async fn next_request(&self) -> Option<Instant> {
        let Some(queue) = &self.queue else {
            return (!self.stopping.get()).then(Instant::now);
        };
        loop {
            let due = queue.borrow_mut().pop_front();
            if let Some(due) = due {
                let now = Instant::now();
                if now.saturating_duration_since(due) > self.timeout {
                    self.recorder.borrow_mut().missed(due, now);
                    continue;
                }
                return Some(due);
            }
            if self.stopping.get() {
                return None;
            }
            self.idle.set(self.idle.get() + 1);
            self.work.notified().await;
        }
    }
}

/// The one connection loop of both models.
async fn connection(w: Rc<Worker>) {
    let mut conn: Option<Conn> = None;
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    while let Some(intended) = w.next_request().await {
        // In the closed model the intended time was read just now.
        let sent = if w.queue.is_some() { Instant::now() } else { intended };
        timer.as_mut().reset((sent + w.timeout).into());
        let outcome = tokio::select! {
            biased;
            outcome = exchange(&mut conn, &w) => outcome,
            _ = &mut timer => {
                conn = None;
                Outcome::Timeout
            }
        };
        let done = Instant::now();
        w.recorder.borrow_mut().record(intended, sent, done, outcome);
    }
    w.live.set(w.live.get() - 1);
    w.exited.notify_one();
}

/// One request on `conn`, connecting first if needed; leaves `conn` empty when it cannot be
/// reused.
async fn exchange(conn: &mut Option<Conn>, w: &Worker) -> Outcome {
    let target = &w.target;
    // A reused connection the server closed while idle fails before any byte of a response
    // arrives; such a request is sent once more on a fresh connection.
    for attempt in 0..2 {
        let reused = conn.is_some();
        let c = match conn {
            Some(c) => c,
            None => match Conn::connect(target.addr, target.tls.as_ref()).await {
                Ok(c) => conn.insert(c),
                Err(e) => return connect_outcome(&e, w),
            },
        };
        match c.exchange(&target.request).await {
            Ok(r) => {
                if !r.keep_alive {
                    *conn = None;
                }
                return Outcome::Status(r.status);
            }
            Err(e) => {
                *conn = None;
                let outcome = io_outcome(&e.error, w);
                if !(reused && !e.got_bytes && attempt == 0 && outcome == Outcome::Reset) {
                    return outcome;
                }
            }
        }
    }
    Outcome::Reset
}

fn connect_outcome(e: &ConnectError, w: &Worker) -> Outcome {
    match e {
        ConnectError::Tcp(e) if e.kind() == io::ErrorKind::TimedOut => Outcome::Timeout,
        ConnectError::Tcp(_) => Outcome::Connect,
        // A handshake cut off by the server (reset, closed) is a reset like any other.
        ConnectError::Handshake(e) => io_outcome(e, w),
    }
}

/// The class of a failed exchange; a TLS error's text is kept for the report.
fn io_outcome(e: &io::Error, w: &Worker) -> Outcome {
    use io::ErrorKind::*;
    if super::tls::is_tls_error(e) {
        w.recorder.borrow_mut().tls_error(e);
        return Outcome::Tls;
    }
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Outcome::Reset,
        TimedOut => Outcome::Timeout,
        _ => Outcome::Other,
    }
}
