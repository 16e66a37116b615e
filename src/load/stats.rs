//! Recording and merging: each worker records into its own per-second slots (counts and an
//! HdrHistogram of latency from the intended send time) and hands every closed second to the
//! aggregator, which merges the workers' slots into one [`Window`] per second and those into the
//! run's totals. Slots are dropped once merged, so memory stays flat however long the run.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use super::{ErrorCounts, LoadReport, Window};

use super::hdr::{histogram, percentiles as latency};

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response with this status code.
    Status(u16),
    Connect,
    /// The TLS handshake failed, or a TLS record was bad.
    Tls,
    Reset,
    Timeout,
    Other,
}

impl Outcome {
    fn is_error(self) -> bool {
        !matches!(self, Outcome::Status(s) if s < 400)
    }

    /// Counts this outcome into `errors` if it is an error.
    fn count(self, errors: &mut ErrorCounts) {
        match self {
            Outcome::Status(s) if s < 400 => {}
            Outcome::Status(502) => errors.status_502 += 1,
            Outcome::Status(503) => errors.status_503 += 1,
            Outcome::Status(504) => errors.status_504 += 1,
            Outcome::Status(s) if s >= 500 => errors.status_5xx += 1,
            Outcome::Status(_) => errors.status_4xx += 1,
            Outcome::Connect => errors.connect += 1,
            Outcome::Tls => errors.tls += 1,
            Outcome::Reset => errors.reset += 1,
            Outcome::Timeout => errors.timeout += 1,
            Outcome::Other => errors.other += 1,
        }
    }
}

/// One second of one worker.
#[derive(Debug)]
pub(crate) struct Slot {
    pub requests: u64,
    pub errors: ErrorCounts,
    pub missed: u64,
    pub scheduled: u64,
    /// Latency from the intended send time, microseconds.
    pub latency: Histogram<u64>,
    /// When the failed (or missed) and the slow requests were due, see [`Window::failed_at_ms`].
    pub failed: Vec<u32>,
    pub slow: Vec<u32>,
}

/// The most send times a slot notes of each kind (in the order the requests completed, one per
/// 10 ms of their due times): a second of thousands of failures stays bounded; the earliest due
/// is kept unless more than this many completed before it in the same second.
const NOTED: usize = 4096;

/// Notes `ms` unless the last noted one is in the same 10 ms.
fn note(list: &mut Vec<u32>, ms: u32) {
    if list.len() < NOTED && list.last().is_none_or(|l| l / 10 != ms / 10) {
        list.push(ms);
    }
}

/// Sorted, one per 10 ms, at most [`NOTED`]: the earliest are kept.
fn noted(mut list: Vec<u32>) -> std::sync::Arc<[u32]> {
    list.sort_unstable();
    list.dedup_by_key(|ms| *ms / 10);
    list.truncate(NOTED);
    list.into()
}

impl Slot {
    fn new() -> Slot {
        Slot {
            requests: 0,
            errors: ErrorCounts::default(),
            missed: 0,
            scheduled: 0,
            latency: histogram(),
            failed: vec![],
            slow: vec![],
        }
    }

    fn merge(&mut self, other: &Slot) {
        self.requests += other.requests;
        self.errors.add(&other.errors);
        self.missed += other.missed;
        self.scheduled += other.scheduled;
        // Same bounds everywhere: addition cannot fail.
        let _ = self.latency.add(&other.latency);
        self.failed.extend(&other.failed);
        self.slow.extend(&other.slow);
    }
}

/// What a recorder notes of each request for the time to detect (see [`super::Notice`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Noticing {
    epoch: Instant,
    /// Microseconds; `u64::MAX`: no latency bound.
    slow_after_us: u64,
}

impl Noticing {
    pub fn new(notice: super::Notice, start: Instant) -> Noticing {
        let slow_after_us = notice.slow_after.map_or(u64::MAX, |d| d.as_micros() as u64);
        Noticing { epoch: notice.epoch.unwrap_or(start), slow_after_us }
    }

    fn ms(&self, intended: Instant) -> u32 {
        intended.saturating_duration_since(self.epoch).as_millis().min(u128::from(u32::MAX)) as u32
    }
}

/// What a worker sends to the aggregator.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A closed second of one worker. Every worker sends every second from 0, in order.
    Second { second: u32, slot: Slot },
    /// The worker has stopped; its last seconds were sent before this.
    Done { uncorrected: Histogram<u64>, connections: usize, stopped: Instant, tls_error: Option<String> },
    /// The worker could not start.
    Failed(String),
}

/// A worker's recorder.
#[derive(Debug)]
pub(crate) struct Recorder {
    start: Instant,
    notice: Noticing,
    /// Completions after the planned end (requests in flight when it came) count in the last second.
    last_second: u32,
    /// Second of `slots[0]`.
    base: u32,
    slots: VecDeque<Slot>,
    /// Latency from the actual send time, for comparison (what a load tool without
    /// coordinated-omission correction would report).
    uncorrected: Histogram<u64>,
    /// The first TLS error, for the report.
    tls_error: Option<String>,
    tx: mpsc::UnboundedSender<Msg>,
}

impl Recorder {
    pub fn new(start: Instant, duration: Duration, notice: Noticing, tx: mpsc::UnboundedSender<Msg>) -> Recorder {
        let last_second = (duration.as_secs_f64().ceil() as u32).max(1) - 1;
        Recorder {
            start,
            notice,
            last_second,
            base: 0,
            slots: VecDeque::new(),
            uncorrected: histogram(),
            tls_error: None,
            tx,
        }
    }

    /// The second `t` falls in, clamped to the run.
    pub fn second_of(&self, t: Instant) -> u32 {
        (t.saturating_duration_since(self.start).as_secs().min(self.last_second as u64)) as u32
    }

    fn slot(&mut self, second: u32) -> &mut Slot {
        // A second already handed over cannot receive more; the oldest open one takes it.
        let i = second.saturating_sub(self.base) as usize;
        while self.slots.len() <= i {
            self.slots.push_back(Slot::new());
        }
        &mut self.slots[i]
    }

    /// A request intended at `intended`, sent at `sent`, ended at `done` with `outcome`.
    pub fn record(&mut self, intended: Instant, sent: Instant, done: Instant, outcome: Outcome) {
        // A request sent a little early (the scheduler wakes early rather than late) is timed
        // from when it was sent; a late one from when it should have been.
        let from = intended.min(sent);
        let second = self.second_of(done);
        let notice = self.notice;
        let slot = self.slot(second);
        slot.requests += 1;
        outcome.count(&mut slot.errors);
        let latency = micros(done.saturating_duration_since(from));
        slot.latency.saturating_record(latency);
        if outcome.is_error() {
            note(&mut slot.failed, notice.ms(intended));
        } else if latency > notice.slow_after_us {
            note(&mut slot.slow, notice.ms(intended));
        }
        self.uncorrected.saturating_record(micros(done.saturating_duration_since(sent)));
    }

    /// A request that was due at `intended` but given up at `now` without being sent.
    pub fn missed(&mut self, intended: Instant, now: Instant) {
        let second = self.second_of(now);
        let at = self.notice.ms(intended);
        let slot = self.slot(second);
        slot.missed += 1;
        note(&mut slot.failed, at);
        slot.latency.saturating_record(micros(now.saturating_duration_since(intended)));
    }

    /// Keeps the first TLS error's text (a certificate rejected says why once, not per request).
    pub fn tls_error(&mut self, e: &std::io::Error) {
        if self.tls_error.is_none() {
            self.tls_error = Some(super::tls::describe(e));
        }
    }

    /// A request became due at `intended`.
    pub fn scheduled(&mut self, intended: Instant) {
        let second = self.second_of(intended);
        self.slot(second).scheduled += 1;
    }

    /// Hands every second before `second` to the aggregator.
    pub fn flush_before(&mut self, second: u32) {
        while self.base < second {
            let slot = self.slots.pop_front().unwrap_or_else(Slot::new);
            let _ = self.tx.send(Msg::Second { second: self.base, slot });
            self.base += 1;
        }
    }

    /// Flushes everything up to and including `last` and reports the worker done.
    pub fn finish(mut self, last: u32, connections: usize, stopped: Instant) {
        self.flush_before(last.max(self.base.saturating_sub(1)) + 1);
        let _ =
            self.tx.send(Msg::Done { uncorrected: self.uncorrected, connections, stopped, tls_error: self.tls_error });
    }

    pub fn last_second(&self) -> u32 {
        self.last_second
    }
}

/// Merges the workers' seconds into windows, as soon as every worker has sent a second.
pub(crate) struct Aggregator {
    workers: usize,
    pending: BTreeMap<u32, (usize, Slot)>,
    next: u32,
    total: Slot,
    uncorrected: Histogram<u64>,
    windows: Vec<Window>,
    live: Option<mpsc::UnboundedSender<Window>>,
    pub connections: usize,
    pub stopped: Option<Instant>,
    pub done: usize,
    tls_error: Option<String>,
}

impl Aggregator {
    pub fn new(workers: usize, live: Option<mpsc::UnboundedSender<Window>>) -> Aggregator {
        Aggregator {
            workers,
            pending: BTreeMap::new(),
            next: 0,
            total: Slot::new(),
            uncorrected: histogram(),
            windows: Vec::new(),
            live,
            connections: 0,
            stopped: None,
            done: 0,
            tls_error: None,
        }
    }

    pub fn second(&mut self, second: u32, slot: Slot) {
        let entry = self.pending.entry(second).or_insert_with(|| (0, Slot::new()));
        entry.0 += 1;
        entry.1.merge(&slot);
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.next || entry.get().0 < self.workers {
                break;
            }
            let (second, (_, slot)) = entry.remove_entry();
            self.emit(second, slot);
        }
    }

    pub fn done(
        &mut self,
        uncorrected: &Histogram<u64>,
        connections: usize,
        stopped: Instant,
        tls_error: Option<String>,
    ) {
        let _ = self.uncorrected.add(uncorrected);
        if self.tls_error.is_none() {
            self.tls_error = tls_error;
        }
        self.connections += connections;
        self.stopped = Some(self.stopped.map_or(stopped, |s| s.max(stopped)));
        self.done += 1;
    }

    fn emit(&mut self, second: u32, mut slot: Slot) {
        let window = Window {
            second,
            requests: slot.requests,
            errors: slot.errors,
            missed: slot.missed,
            scheduled: slot.scheduled,
            latency_ms: latency(&slot.latency),
            latency_hist: super::hdr::encode(&slot.latency).into(),
            // Taken out: the run's totals keep no send times.
            failed_at_ms: noted(std::mem::take(&mut slot.failed)),
            slow_at_ms: noted(std::mem::take(&mut slot.slow)),
        };
        self.total.merge(&slot);
        if let Some(tx) = &self.live {
            let _ = tx.send(window.clone());
        }
        self.windows.push(window);
        self.next = second + 1;
    }

    /// Emits whatever is still pending (seconds not every worker reached) and builds the report.
    pub fn finish(mut self, duration: Duration) -> LoadReport {
        while let Some((second, (_, slot))) = self.pending.pop_first() {
            self.emit(second, slot);
        }
        let duration_s = duration.as_secs_f64();
        LoadReport {
            requests: self.total.requests,
            duration_s,
            rps: if duration_s > 0.0 { self.total.requests as f64 / duration_s } else { 0.0 },
            errors: self.total.errors,
            missed: self.total.missed,
            scheduled: self.total.scheduled,
            connections: self.connections,
            latency_ms: latency(&self.total.latency),
            uncorrected_latency_ms: latency(&self.uncorrected),
            tls_error: self.tls_error,
            per_second: self.windows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_classified() {
        let mut e = ErrorCounts::default();
        for o in [
            Outcome::Status(200),
            Outcome::Status(302),
            Outcome::Status(404),
            Outcome::Status(500),
            Outcome::Status(502),
            Outcome::Status(503),
            Outcome::Status(504),
            Outcome::Connect,
            Outcome::Tls,
            Outcome::Reset,
            Outcome::Timeout,
            Outcome::Other,
        ] {
            o.count(&mut e);
        }
        let want = ErrorCounts {
            connect: 1,
            tls: 1,
            reset: 1,
            timeout: 1,
            status_502: 1,
            status_503: 1,
            status_504: 1,
            status_5xx: 1,
            status_4xx: 1,
            other: 1,
        };
        assert_eq!(e, want);
    }

    #[test]
    fn windows_are_emitted_once_every_worker_closed_the_second() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (wtx, mut wrx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let mut a = Recorder::new(
            start,
            Duration::from_secs(3),
            Noticing::new(super::super::Notice::default(), start),
            tx.clone(),
        );
        let mut b =
            Recorder::new(start, Duration::from_secs(3), Noticing::new(super::super::Notice::default(), start), tx);
        let at = |ms| start + Duration::from_millis(ms);
        a.record(at(100), at(100), at(110), Outcome::Status(200));
        b.record(at(200), at(250), at(1250), Outcome::Status(503));
        a.missed(at(300), at(2400));
        let mut agg = Aggregator::new(2, Some(wtx));
        a.flush_before(1);
        while let Ok(Msg::Second { second, slot }) = rx.try_recv() {
            agg.second(second, slot);
        }
        assert!(wrx.try_recv().is_err(), "second 0 must wait for worker b");
        b.flush_before(2);
        a.finish(2, 1, at(3000));
        b.finish(2, 1, at(3000));
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Second { second, slot } => agg.second(second, slot),
                Msg::Done { uncorrected, connections, stopped, tls_error } => {
                    agg.done(&uncorrected, connections, stopped, tls_error)
                }
                Msg::Failed(e) => panic!("{e}"),
            }
        }
        let w: Vec<Window> = std::iter::from_fn(|| wrx.try_recv().ok()).collect();
        assert_eq!(
            w.iter().map(|w| (w.second, w.requests, w.missed)).collect::<Vec<_>>(),
            vec![(0, 1, 0), (1, 1, 0), (2, 0, 1)]
        );
        assert_eq!(w[1].errors.status_503, 1);
        // Latency from the intended time (200ms), not from the late send (250ms).
        assert!((w[1].latency_ms.max - 1050.0).abs() < 2.0, "{:?}", w[1].latency_ms);
        let r = agg.finish(Duration::from_secs(3));
        assert_eq!((r.requests, r.missed, r.connections), (2, 1, 2));
        assert!((r.uncorrected_latency_ms.max - 1000.0).abs() < 2.0);
        assert!((r.latency_ms.max - 2100.0).abs() < 3.0);
    }
}
