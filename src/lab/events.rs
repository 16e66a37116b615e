//! The lab's event log: scheduler, balancer, database and fault events, numbered so that a
//! reader (the lab backend's sampler) can ask for everything after the last one it saw.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// One thing that happened in the lab, in the past tense.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Event {
    pub seq: u64,
    /// RFC 3339 UTC.
    pub time: String,
    pub message: String,
}

/// A bounded, numbered log.
#[derive(Debug, Default)]
pub struct Events {
    inner: Mutex<(u64, VecDeque<Event>)>,
    /// Echo events to stderr (foreground `siege lab up`).
    pub echo: bool,
}

const KEEP: usize = 1000;

impl Events {
    pub fn new(echo: bool) -> Self {
        Events { inner: Mutex::default(), echo }
    }

    pub fn push(&self, message: impl Into<String>) {
        let message = message.into();
        let time = crate::util::rfc3339(SystemTime::now());
        if self.echo {
            eprintln!("{time} {message}");
        }
        if let Ok(mut g) = self.inner.lock() {
            g.0 += 1;
            let seq = g.0;
            g.1.push_back(Event { seq, time, message });
            if g.1.len() > KEEP {
                g.1.pop_front();
            }
        }
    }

    /// Events with a sequence number above `after`.
    pub fn since(&self, after: u64) -> Vec<Event> {
        self.inner.lock().map(|g| g.1.iter().filter(|e| e.seq > after).cloned().collect()).unwrap_or_default()
    }

    /// The sequence number of the latest event.
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().map(|g| g.0).unwrap_or(0)
    }
}
