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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::BackendError;

/// Environment variable overriding the time to live of the leases this process takes.
pub const TTL_ENV: &str = "SIEGE_LEASE_TTL";
/// Time to live of a lease unless [`TTL_ENV`] says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The longest lease the lab grants, and so the longest [`TTL_ENV`] may ask for.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// The time to live of the leases this process takes: [`TTL_ENV`] (e.g. `5s`, at least 1s),
/// else [`DEFAULT_TTL`].
pub fn ttl() -> Result<Duration, BackendError> {
    match std::env::var(TTL_ENV) {
        Err(_) => Ok(DEFAULT_TTL),
        Ok(s) => match crate::scenario::units::parse_duration(&s) {
            Ok(d) if d >= Duration::from_secs(1) && d <= MAX_TTL => Ok(d),
            _ => Err(BackendError::Precondition(format!("{TTL_ENV}={s} is not a duration from 1s to 1h, e.g. 30s"))),
        },
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A lease on a target: who holds it, since when, until when (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub run_id: String,
    pub since_ms: u64,
    pub expires_ms: u64,
}

impl Lease {
    pub fn expired(&self, now: SystemTime) -> bool {
        unix_ms(now) >= self.expires_ms
    }

    /// "run R since 2026-12-01T15:02:03Z (lease expires in 25s)".
    pub fn describe(&self, now: SystemTime) -> String {
        let left = self.expires_ms.saturating_sub(unix_ms(now)).div_ceil(1000);
        format!(
            "run {} since {} (lease expires in {left}s)",
            self.run_id,
            crate::util::rfc3339(from_unix_ms(self.since_ms))
        )
    }

    /// The refusal of a run that finds `target` held by this lease (exit 4).
    pub fn busy(&self, target: &str) -> BackendError {
        BackendError::Precondition(format!(
            "target busy: {target} is held by {}; nothing was changed. Wait for that run to end; if it was killed, \
             `siege recover` releases its lease (or it expires)",
            self.describe(SystemTime::now())
        ))
    }
}

/// Grants the lease to `run_id` for `ttl` from `now` unless another run holds `current` and it
/// has not expired. The holder taking it again renews it and keeps its `since`. `Err` carries
/// the other holder's lease.
pub fn grant(current: Option<&Lease>, run_id: &str, ttl: Duration, now: SystemTime) -> Result<Lease, Lease> {
    let expires_ms = unix_ms(now) + ttl.as_millis() as u64;
    match current {
        Some(l) if l.run_id == run_id => Ok(Lease { expires_ms, ..l.clone() }),
        Some(l) if !l.expired(now) => Err(l.clone()),
        _ => Ok(Lease { run_id: run_id.to_string(), since_ms: unix_ms(now), expires_ms }),
    }
}

/// Renews the lease of `run_id`, the holder only: `Err` with the other run's lease, or `None`
/// when nobody holds it any more (released by `siege recover`, as for a run taken for dead).
pub fn renew(current: Option<&Lease>, run_id: &str, ttl: Duration, now: SystemTime) -> Result<Lease, Option<Lease>> {
    match current {
        Some(l) if l.run_id == run_id => grant(current, run_id, ttl, now).map_err(Some),
        Some(l) if !l.expired(now) => Err(Some(l.clone())),
        _ => Err(None),
    }
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
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_316_645 + s)
    }

    #[test]
    fn a_free_target_is_granted_and_a_held_one_refused_until_it_expires() {
        let a = grant(None, "a", TTL, at(0)).unwrap();
        assert_eq!((a.since_ms, a.expires_ms), (unix_ms(at(0)), unix_ms(at(30))));
        assert_eq!(grant(Some(&a), "b", TTL, at(29)), Err(a.clone()));
        let b = grant(Some(&a), "b", TTL, at(30)).unwrap();
        assert_eq!((b.run_id.as_str(), b.since_ms), ("b", unix_ms(at(30))));
    }

    #[test]
    fn only_the_holder_renews_and_keeps_its_since() {
        let a = grant(None, "a", TTL, at(0)).unwrap();
        let renewed = grant(Some(&a), "a", TTL, at(20)).unwrap();
        assert_eq!((renewed.since_ms, renewed.expires_ms), (a.since_ms, unix_ms(at(50))));
        // Still held at 45 thanks to the renewal: another run is refused.
        assert_eq!(grant(Some(&renewed), "b", TTL, at(45)), Err(renewed.clone()));
    }

    #[test]
    fn a_renewal_is_the_holders_only() {
        let a = grant(None, "a", TTL, at(0)).unwrap();
        assert_eq!(
            renew(Some(&a), "a", TTL, at(40)).map(|l| (l.since_ms, l.expires_ms)),
            Ok((a.since_ms, unix_ms(at(70))))
        );
        assert_eq!(renew(Some(&a), "b", TTL, at(10)), Err(Some(a.clone())));
        // Released, or expired and gone: nothing to renew, and a renewal takes nothing.
        assert_eq!(renew(None, "a", TTL, at(10)), Err(None));
        assert_eq!(renew(Some(&a), "b", TTL, at(31)), Err(None));
    }

    #[test]
    fn the_refusal_names_the_holder_and_since_when() {
        let a = Lease { run_id: "slow-20261122T030405Z-1a2b".into(), since_ms: unix_ms(at(0)), expires_ms: u64::MAX };
        let msg = a.busy("lab at http://127.0.0.1:1").to_string();
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
