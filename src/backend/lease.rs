//! One run per target: a run holds a lease on its target from connect to shutdown, so that a
//! second run against a target already under test is refused before it touches anything.
//!
//! The lab grants leases itself (its control API); on AWS the lease is a tag on the ECS service
//! (see `aws::lease`). Either way a lease names the run, when it was taken and when it expires;
//! the holder renews it every third of its time to live while it runs ([`Keeper`]) and releases
//! it at the end. A lease left by a killed run expires, and `siege recover` releases it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::BackendError;
pub use crate::lease::{Lease, MAX_TTL, grant, renew, unix_ms};

/// Environment variable overriding the time to live of the leases this process takes.
pub const TTL_ENV: &str = "SIEGE_LEASE_TTL";
/// Time to live of a lease unless [`TTL_ENV`] says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The time to live of the leases this process takes: [`TTL_ENV`] (e.g. `5s`, at least 1s),
/// else [`DEFAULT_TTL`].
pub fn ttl_from_env() -> Result<Duration, BackendError> {
    match std::env::var(TTL_ENV) {
        Err(_) => Ok(DEFAULT_TTL),
        Ok(s) => match crate::scenario::units::parse_duration(&s) {
            Ok(d) if d >= Duration::from_secs(1) && d <= MAX_TTL => Ok(d),
            _ => Err(BackendError::Precondition(format!("{TTL_ENV}={s} is not a duration from 1s to 1h, e.g. 30s"))),
        },
    }
}

/// The refusal of a run that finds `target` held by `holder` (exit 4).
pub fn busy(holder: &Lease, target: &str) -> BackendError {
    BackendError::Precondition(format!(
        "target busy: {target} is held by {}; nothing was changed. Wait for that run to end; if it was killed, \
         `siege recover` releases its lease (or it expires)",
        holder.describe(SystemTime::now())
    ))
}

/// What one renewal found: the renewed lease, or why it is not ours any more (see [`renew`]).
pub type Renewal = Result<Result<Lease, Option<Lease>>, BackendError>;

/// Renews a lease every `ttl / 3` in the background while it is alive, and remembers when the
/// lease was lost: taken by another run after it expired, or expired because renewals kept
/// failing. [`Keeper::stop`] ends the renewals and waits for one in flight, so that a late
/// renewal cannot write the lease back after the run released it.
pub struct Keeper {
    pub run_id: String,
    lost: Arc<Mutex<Option<String>>>,
    /// When the lease last confirmed runs out (Unix ms), by this machine's clock.
    expires_ms: Arc<AtomicU64>,
    /// How long before that this run stops counting on it.
    margin_ms: u64,
    /// Whether [`Keeper::lost_note`] already reported the loss.
    reported: Mutex<bool>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Keeper {
    /// Starts renewing `lease`, taken for `ttl`, with `renew`.
    pub fn start<F, Fut>(lease: &Lease, ttl: Duration, renew: F) -> Keeper
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Renewal> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let lost = Arc::new(Mutex::new(None));
        let expires = Arc::new(AtomicU64::new(lease.expires_ms));
        let (cancel, flag, until) = (stop.clone(), lost.clone(), expires.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(ttl / 3) => {}
                }
                // A renewal is never cut off half-way (its write would land unseen), but
                // `stop` waits for it before the lease is released.
                let why = match renew().await {
                    Ok(Ok(l)) => {
                        until.store(l.expires_ms, Ordering::SeqCst);
                        continue;
                    }
                    Ok(Err(Some(other))) => format!("taken by {}", other.describe(SystemTime::now())),
                    Ok(Err(None)) => "released by someone else".to_string(),
                    Err(_) if unix_ms(SystemTime::now()) < until.load(Ordering::SeqCst) => continue,
                    Err(e) => format!("expired: it could not be renewed ({e})"),
                };
                if let Ok(mut l) = flag.lock() {
                    *l = Some(why);
                }
                return;
            }
        });
        Keeper {
            run_id: lease.run_id.clone(),
            lost,
            expires_ms: expires,
            margin_ms: (ttl / 6).as_millis() as u64,
            reported: Mutex::new(false),
            stop,
            task: Some(task),
        }
    }

    /// Ends the renewals and waits for a renewal in flight to finish; call before releasing.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    /// Refuses to inject once the lease is lost, or is about to run out by this machine's clock
    /// without a renewal having confirmed it (the renewals may be failing or late): the target
    /// may be another run's by then.
    pub fn check(&self) -> Result<(), BackendError> {
        let why = self.lost().or_else(|| {
            let until = self.expires_ms.load(Ordering::SeqCst);
            (unix_ms(SystemTime::now()) + self.margin_ms >= until)
                .then(|| "it runs out before a renewal confirmed it".to_string())
        });
        match why {
            Some(why) => Err(BackendError::Precondition(format!(
                "the lease of run {} on the target was lost ({why}); no further fault is injected",
                self.run_id
            ))),
            None => Ok(()),
        }
    }

    /// Once, after the lease was lost: a line for the run's events.
    pub fn lost_note(&self) -> Option<String> {
        let why = self.lost()?;
        let mut reported = self.reported.lock().ok()?;
        if *reported {
            return None;
        }
        *reported = true;
        Some(format!("siege: the lease of run {} on the target was lost ({why})", self.run_id))
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_316_645 + s)
    }

    #[test]
    fn the_refusal_names_the_holder_and_since_when() {
        let a = Lease { run_id: "slow-20261122T030405Z-1a2b".into(), since_ms: unix_ms(at(0)), expires_ms: u64::MAX };
        let msg = busy(&a, "lab at http://127.0.0.1:1").to_string();
        assert!(
            msg.starts_with(
                "precondition failed: target busy: lab at http://127.0.0.1:1 is held by run slow-20261122T030405Z-1a2b since 2026-11-22T03:04:05Z (lease expires in"
            ),
            "{msg}"
        );
        let soon = Lease { expires_ms: unix_ms(at(0)) + 24_100, ..a };
        assert!(soon.describe(at(0)).ends_with("(lease expires in 25s)"), "{}", soon.describe(at(0)));
    }

    /// A keeper renewing every 100 ms (a lease of 300 ms) whose renewal `n` (from 1) answers
    /// `answer(n, the lease renewed now)`; returns it with the count of renewals.
    fn keeper(answer: fn(u32, Lease) -> Renewal) -> (Keeper, Arc<Mutex<u32>>) {
        let ttl = Duration::from_millis(300);
        let lease = grant(None, "a", ttl, SystemTime::now()).unwrap();
        let calls = Arc::new(Mutex::new(0u32));
        let (counter, granted) = (calls.clone(), lease.clone());
        let k = Keeper::start(&lease, ttl, move || {
            let (counter, lease) = (counter.clone(), granted.clone());
            async move {
                let mut n = counter.lock().unwrap();
                *n += 1;
                answer(*n, grant(Some(&lease), "a", ttl, SystemTime::now()).unwrap())
            }
        });
        (k, calls)
    }

    fn count(calls: &Arc<Mutex<u32>>) -> u32 {
        *calls.lock().unwrap()
    }

    /// Polls `f` every 10 ms for at most 5 s.
    async fn eventually(f: impl Fn() -> bool) -> bool {
        for _ in 0..500 {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_keeper_renews_and_reports_a_lost_lease_once() {
        let (k, calls) = keeper(|n, l| Ok(if n < 3 { Ok(l) } else { Err(Some(Lease { run_id: "b".into(), ..l })) }));
        assert!(eventually(|| count(&calls) == 2).await);
        assert!(k.check().is_ok() && k.lost_note().is_none(), "two renewals granted");
        assert!(eventually(|| k.check().is_err()).await);
        assert!(k.check().unwrap_err().to_string().contains("taken by run b"), "{:?}", k.check());
        assert!(k.lost_note().is_some());
        assert!(k.lost_note().is_none(), "reported once");
        // Lost: no more renewals.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(count(&calls), 3);
    }

    #[tokio::test]
    async fn failed_renewals_lose_the_lease_once_it_expired() {
        let start = std::time::Instant::now();
        let (k, calls) = keeper(|_, _| Err(BackendError::Api("unreachable".into())));
        assert!(eventually(|| count(&calls) >= 1).await);
        assert!(eventually(|| k.check().is_err()).await);
        // The holder stops counting on it a sixth of its time to live before it runs out.
        assert!(start.elapsed() >= Duration::from_millis(250), "given up long before it expired");
        assert!(
            eventually(|| k
                .check()
                .unwrap_err()
                .to_string()
                .contains("expired: it could not be renewed (unreachable)"))
            .await,
            "{:?}",
            k.check()
        );
    }

    #[tokio::test]
    async fn a_renewal_that_never_answers_does_not_keep_the_lease_alive_for_its_holder() {
        let ttl = Duration::from_millis(300);
        let lease = grant(None, "a", ttl, SystemTime::now()).unwrap();
        let k = Keeper::start(&lease, ttl, std::future::pending::<Renewal>);
        assert!(k.check().is_ok());
        assert!(eventually(|| k.check().is_err()).await, "a hung renewal kept the lease alive");
        let err = k.check().unwrap_err().to_string();
        assert!(err.contains("runs out before a renewal confirmed it"), "{err}");
    }

    #[tokio::test]
    async fn stop_waits_for_a_renewal_in_flight() {
        let ttl = Duration::from_millis(300);
        let lease = grant(None, "a", ttl, SystemTime::now()).unwrap();
        let (started, finished) = (Arc::new(Mutex::new(false)), Arc::new(Mutex::new(false)));
        let (s, f, granted) = (started.clone(), finished.clone(), lease.clone());
        let k = Keeper::start(&lease, ttl, move || {
            let (s, f, l) = (s.clone(), f.clone(), granted.clone());
            async move {
                *s.lock().unwrap() = true;
                tokio::time::sleep(Duration::from_millis(200)).await;
                *f.lock().unwrap() = true;
                Ok(Ok(l))
            }
        });
        assert!(eventually(|| *started.lock().unwrap()).await);
        k.stop().await;
        assert!(*finished.lock().unwrap(), "stop returned while a renewal could still write the lease back");
    }

    #[tokio::test]
    async fn dropping_the_keeper_stops_the_renewals() {
        let (k, calls) = keeper(|_, l| Ok(Ok(l)));
        assert!(eventually(|| count(&calls) >= 1).await);
        drop(k);
        let n = count(&calls);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(count(&calls) <= n + 1, "renewals went on after the drop");
    }
}
