//! The run's event bus: how every consumer other than the journal and the record builder reads a
//! run's events. The engine publishes without ever waiting: live events go through a bounded
//! broadcast buffer, so a consumer that reads slowly, stops reading, panics or goes away cannot
//! slow, block or cancel the run; one that falls more than the buffer behind is told how many
//! events it missed. The bus also keeps every event of the run in order, so a subscriber that
//! comes late first gets everything so far, then the live events, with no gap and no duplicate.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::events::Envelope;

/// Live events a subscriber may fall behind by before it misses some.
pub const DEFAULT_CAPACITY: usize = 4096;

struct Shared {
    history: Vec<Arc<Envelope>>,
    /// `None` once the run's publisher is gone: subscribers end after the history.
    tx: Option<broadcast::Sender<Arc<Envelope>>>,
}

/// A handle to subscribe to one run's events; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Mutex<Shared>>,
}

/// The engine's end of a [`Bus`]. Dropping it (the run ended, or panicked) ends every
/// subscription once its subscriber has read what was published.
pub struct Publisher {
    shared: Arc<Mutex<Shared>>,
}

/// What a subscriber reads next.
#[derive(Debug, Clone)]
pub enum Received {
    Event(Arc<Envelope>),
    /// The subscriber fell behind and this many events were dropped for it; the next event's
    /// `seq` is that much further on.
    Lagged(u64),
}

/// One consumer's view of a run's events.
pub struct Subscription {
    backlog: VecDeque<Arc<Envelope>>,
    rx: Option<broadcast::Receiver<Arc<Envelope>>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A subscriber cannot panic while holding the lock (it only clones under it): never poisoned
    // by a consumer; recover the data anyway rather than fail the run.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bus {
    /// A new bus whose live buffer holds `capacity` events, and its publisher.
    pub fn new(capacity: usize) -> (Bus, Publisher) {
        let (tx, _) = broadcast::channel(capacity.max(1));
        let shared = Arc::new(Mutex::new(Shared { history: vec![], tx: Some(tx) }));
        (Bus { shared: shared.clone() }, Publisher { shared })
    }

    /// Every event published so far, then the live ones.
    pub fn subscribe(&self) -> Subscription {
        let s = lock(&self.shared);
        // Under the lock that `publish` holds while it sends: each event is either in the
        // backlog or will reach the receiver, never both, never neither.
        Subscription { backlog: s.history.iter().cloned().collect(), rx: s.tx.as_ref().map(|tx| tx.subscribe()) }
    }

    /// Every event published so far.
    pub fn history(&self) -> Vec<Arc<Envelope>> {
        lock(&self.shared).history.clone()
    }

    /// The events published so far from the `from`-th on (`seq >= from`).
    pub fn history_since(&self, from: usize) -> Vec<Arc<Envelope>> {
        lock(&self.shared).history.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }
}

impl Publisher {
    /// Keeps the event and hands it to every subscriber; never waits.
    pub fn publish(&self, env: Envelope) {
        let env = Arc::new(env);
        let mut s = lock(&self.shared);
        s.history.push(env.clone());
        if let Some(tx) = &s.tx {
            // No receiver is not an error: nobody is watching.
            let _ = tx.send(env);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        lock(&self.shared).tx = None;
    }
}

impl Subscription {
    /// The next event, or how many were missed; `None` once the run ended and everything
    /// published was read.
    pub async fn recv(&mut self) -> Option<Received> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(Received::Event(e));
        }
        let rx = self.rx.as_mut()?;
        match rx.recv().await {
            Ok(e) => Some(Received::Event(e)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Received::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => {
                self.rx = None;
                None
            }
        }
    }
}

impl Subscription {
    /// [`Subscription::recv`] for a consumer on a thread of its own, outside the runtime.
    pub fn blocking_recv(&mut self) -> Option<Received> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(Received::Event(e));
        }
        let rx = self.rx.as_mut()?;
        match rx.blocking_recv() {
            Ok(e) => Some(Received::Event(e)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Received::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => {
                self.rx = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::Event;

    fn env(seq: u64) -> Envelope {
        Envelope {
            run_id: "r".into(),
            seq,
            at: "2026-11-22T03:04:05.000Z".into(),
            t: None,
            event: Event::Note { t: 0.0, text: format!("n{seq}") },
        }
    }

    async fn drain(mut s: Subscription) -> (Vec<u64>, u64) {
        let (mut seqs, mut missed) = (vec![], 0);
        while let Some(r) = s.recv().await {
            match r {
                Received::Event(e) => seqs.push(e.seq),
                Received::Lagged(n) => missed += n,
            }
        }
        (seqs, missed)
    }

    #[tokio::test]
    async fn a_late_subscriber_gets_the_same_sequence_as_an_early_one() {
        let (bus, publisher) = Bus::new(64);
        let early = bus.subscribe();
        for i in 0..10 {
            publisher.publish(env(i));
        }
        let late = bus.subscribe();
        for i in 10..20 {
            publisher.publish(env(i));
        }
        drop(publisher);
        let after_the_end = bus.subscribe();
        let all: Vec<u64> = (0..20).collect();
        assert_eq!(drain(early).await, (all.clone(), 0));
        assert_eq!(drain(late).await, (all.clone(), 0));
        assert_eq!(drain(after_the_end).await, (all, 0));
    }

    #[tokio::test]
    async fn subscribing_while_events_are_published_loses_and_repeats_nothing() {
        const N: u64 = 5_000;
        let (bus, publisher) = Bus::new(N as usize);
        let (go, ready) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            for i in 0..N {
                publisher.publish(env(i));
                if i % 250 == 0 {
                    let _ = go.send(());
                }
            }
        });
        // One subscription every 250 events, taken while the writer goes on.
        let mut subs = vec![];
        while ready.recv().is_ok() {
            subs.push(bus.subscribe());
        }
        writer.join().unwrap();
        subs.push(bus.subscribe());
        assert!(subs.len() > 2);
        let all: Vec<u64> = (0..N).collect();
        for s in subs {
            assert_eq!(drain(s).await, (all.clone(), 0));
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_never_holds_the_publisher_up_and_is_told_what_it_missed() {
        let (bus, publisher) = Bus::new(8);
        let idle = bus.subscribe();
        let dropped = bus.subscribe();
        drop(dropped);
        let started = std::time::Instant::now();
        for i in 0..10_000 {
            publisher.publish(env(i));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
        drop(publisher);
        let (seqs, missed) = drain(idle).await;
        assert_eq!(seqs, (10_000 - 8..10_000).collect::<Vec<_>>());
        assert_eq!(missed, 10_000 - 8);
        assert_eq!(bus.history().len(), 10_000);
    }
}
