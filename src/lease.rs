//! Leases on a target: which run holds it, since when, until when, and the rules by which a
//! lease is granted and renewed. The lab's control API grants them with these rules; the
//! backends take, renew and release them (`backend::lease`), so that a second run against a
//! target already under test is refused before it touches anything.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The longest lease the lab grants, and so the longest time to live a run may ask for.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

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
}
