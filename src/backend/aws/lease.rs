//! The lease of a run on an ECS service (see [`crate::backend::lease`]): a tag
//! `siege:lease:<run id>` = `since=<RFC 3339> expires=<RFC 3339>` on the service, which every
//! siege instance that can see the service sees.
//!
//! Taking it, after the account check and before the first mutation: read the tags; refuse when
//! another run's lease has not expired; write ours; read them back; if another run's unexpired
//! lease appeared meanwhile (two instances claiming at once), remove ours and try again after a
//! random pause — so at most one run ever proceeds (each run writes its own key, and a run
//! proceeds only when its read-back, later than its write, shows no other lease). The holder
//! renews its tag every third of the time to live and removes it at the end; `siege recover`
//! removes the one a killed run left, and a lease that is not renewed expires. Expired leases
//! of other runs are removed by the next run that takes the lease.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ecs::types::Tag;

use super::AwsBackend;
use super::error::aws_error;
use crate::backend::BackendError;
use crate::backend::lease::{self, Keeper, Lease, Renewal, unix_ms};

/// Key prefix of lease tags; the run id follows.
pub const PREFIX: &str = "siege:lease:";
/// Tries when another instance claims the lease at the same moment.
const ATTEMPTS: u32 = 5;

/// What one claim found.
#[derive(Debug, PartialEq)]
enum Claim {
    /// The lease is ours (taken or renewed).
    Held(Lease),
    /// Another run holds it: refused without writing anything.
    Busy(Lease),
    /// Another run claimed it at the same moment: ours was removed again.
    Contended(Lease),
    /// A renewal found no lease of ours any more (`siege recover` removed it).
    Gone,
}

/// The tag value of `l`.
fn tag_value(l: &Lease) -> String {
    let t = |ms: u64| crate::util::rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
    format!("since={} expires={}", t(l.since_ms), t(l.expires_ms))
}

/// The lease a tag describes, if it is a lease tag.
fn parse_tag(key: &str, value: &str) -> Option<Lease> {
    let run_id = key.strip_prefix(PREFIX).filter(|r| !r.is_empty())?;
    let mut since = None;
    let mut expires = None;
    for part in value.split_whitespace() {
        match part.split_once('=') {
            Some(("since", t)) => since = parse_rfc3339(t),
            Some(("expires", t)) => expires = parse_rfc3339(t),
            _ => {}
        }
    }
    Some(Lease { run_id: run_id.to_string(), since_ms: since?, expires_ms: expires? })
}

/// Unix milliseconds of `YYYY-MM-DDTHH:MM:SSZ` (what [`crate::util::rfc3339`] writes).
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d, h, mi, sec) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000).ok()
}

/// The lease in force that is not `run_id`'s: the oldest unexpired one of another run.
fn other_holder(leases: &[Lease], run_id: &str, now: SystemTime) -> Option<Lease> {
    leases
        .iter()
        .filter(|l| l.run_id != run_id && !l.expired(now))
        .min_by_key(|l| (l.since_ms, l.run_id.clone()))
        .cloned()
}

/// The ECS calls a lease needs, on one service.
#[derive(Clone)]
struct Tags {
    ecs: aws_sdk_ecs::Client,
    arn: String,
}

impl Tags {
    async fn leases(&self) -> Result<Vec<Lease>, BackendError> {
        let out = self
            .ecs
            .list_tags_for_resource()
            .resource_arn(&self.arn)
            .send()
            .await
            .map_err(|e| aws_error("ecs:ListTagsForResource", e))?;
        Ok(out.tags().iter().filter_map(|t| parse_tag(t.key()?, t.value()?)).collect())
    }

    async fn write(&self, l: &Lease) -> Result<(), BackendError> {
        let tag = Tag::builder().key(format!("{PREFIX}{}", l.run_id)).value(tag_value(l)).build();
        self.ecs
            .tag_resource()
            .resource_arn(&self.arn)
            .tags(tag)
            .send()
            .await
            .map_err(|e| aws_error("ecs:TagResource", e))?;
        Ok(())
    }

    async fn remove(&self, run_ids: &[&str]) -> Result<(), BackendError> {
        if run_ids.is_empty() {
            return Ok(());
        }
        let keys = run_ids.iter().map(|r| format!("{PREFIX}{r}")).collect();
        self.ecs
            .untag_resource()
            .resource_arn(&self.arn)
            .set_tag_keys(Some(keys))
            .send()
            .await
            .map_err(|e| aws_error("ecs:UntagResource", e))?;
        Ok(())
    }

    /// Takes the lease for `run_id`, or with `renew` renews it (see the module docs).
    async fn claim(&self, run_id: &str, ttl: Duration, renew: bool) -> Result<Claim, BackendError> {
        let before = self.leases().await?;
        // The clock is read after the tags: a slow read must not make an expired lease of ours
        // look still in force.
        let now = SystemTime::now();
        let mine = before.iter().find(|l| l.run_id == run_id);
        if renew && mine.is_none() {
            return Ok(Claim::Gone);
        }
        let lease = Lease {
            run_id: run_id.to_string(),
            since_ms: mine.map_or(unix_ms(now), |l| l.since_ms),
            expires_ms: unix_ms(now) + ttl.as_millis() as u64,
        };
        // Ours and still in force: every other claimer backs off on seeing it. Should another
        // run's unexpired lease sit beside it all the same (ours ran out unseen while a renewal
        // was late, and it took the service), the older of the two keeps the service.
        if let Some(mine) = mine.filter(|l| !l.expired(now)) {
            if let Some(other) = other_holder(&before, run_id, now)
                && (other.since_ms, &other.run_id) < (mine.since_ms, &mine.run_id)
            {
                return Ok(Claim::Busy(other));
            }
            self.write(&lease).await?;
            return Ok(Claim::Held(lease));
        }
        if let Some(other) = other_holder(&before, run_id, now) {
            return Ok(Claim::Busy(other));
        }
        self.write(&lease).await?;
        let after = self.leases().await?;
        let now = SystemTime::now();
        if let Some(other) = other_holder(&after, run_id, now) {
            self.remove(&[run_id]).await?;
            return Ok(Claim::Contended(other));
        }
        let stale: Vec<&str> =
            after.iter().filter(|l| l.run_id != run_id && l.expired(now)).map(|l| l.run_id.as_str()).collect();
        let _ = self.remove(&stale).await;
        Ok(Claim::Held(lease))
    }
}

impl AwsBackend {
    /// The target as the lease refusal names it.
    fn lease_target(&self) -> String {
        format!("ECS service {} in cluster {} (region {})", self.target.service, self.target.cluster, self.region)
    }

    async fn tags(&self) -> Result<Tags, BackendError> {
        let service = self.describe_service().await?;
        let arn = service.service_arn().ok_or_else(|| {
            BackendError::Api(format!("ecs:DescribeServices returned no ARN for service {}", self.target.service))
        })?;
        Ok(Tags { ecs: self.clients.ecs.clone(), arn: arn.to_string() })
    }

    /// Takes the service's lease for this run and keeps renewing it; refuses (exit 4) when
    /// another run holds it. Checks the account first: the tag is the run's first change.
    pub async fn acquire_lease(&self, ttl: Duration) -> Result<(), BackendError> {
        self.ensure_account().await?;
        let tags = self.tags().await?;
        let run_id = self.run_id.clone();
        let mut rng = crate::util::Rng::new(crate::util::Rng::fresh_seed());
        for attempt in 1..=ATTEMPTS {
            match tags.claim(&run_id, ttl, false).await? {
                Claim::Held(taken) => {
                    let (tags, run) = (tags.clone(), run_id.clone());
                    *self.lease.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Keeper::start(&taken, ttl, move || {
                            let (tags, run) = (tags.clone(), run.clone());
                            async move { renewal(tags.claim(&run, ttl, true).await) }
                        }));
                    return Ok(());
                }
                Claim::Busy(holder) => return Err(lease::busy(&holder, &self.lease_target())),
                Claim::Gone => return Err(BackendError::Api("the lease vanished while it was taken".into())),
                Claim::Contended(holder) if attempt == ATTEMPTS => {
                    return Err(BackendError::Precondition(format!(
                        "target busy: {} was claimed by run {} at the same moment, again and again; \
                         nothing was changed. Try again in a few seconds",
                        self.lease_target(),
                        holder.run_id
                    )));
                }
                Claim::Contended(_) => {
                    tokio::time::sleep(Duration::from_millis(100 + rng.below(400 * u64::from(attempt)))).await;
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Refuses to inject once this run's lease is lost.
    pub(super) fn lease_check(&self) -> Result<(), BackendError> {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map_or(Ok(()), Keeper::check)
    }

    /// Once, after this run's lease was lost: a line for the run's events.
    pub(super) fn lease_lost_note(&self) -> Option<String> {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(Keeper::lost_note)
    }

    /// The run holding the service's lease, if any; changes nothing.
    pub async fn lease_holder(&self) -> Result<Option<Lease>, BackendError> {
        let leases = self.tags().await?.leases().await?;
        Ok(other_holder(&leases, "", SystemTime::now()))
    }

    /// Removes the lease tag of `run_id`, if there is one; whether there was.
    pub async fn release_lease(&self, run_id: &str) -> Result<bool, BackendError> {
        let tags = self.tags().await?;
        if !tags.leases().await?.iter().any(|l| l.run_id == run_id) {
            return Ok(false);
        }
        self.ensure_account().await?;
        tags.remove(&[run_id]).await?;
        Ok(true)
    }

    /// Stops renewing and removes this run's lease (at the end of the run).
    pub(super) async fn end_lease(&self) -> Result<(), BackendError> {
        let Some(k) = self.lease.lock().unwrap_or_else(|e| e.into_inner()).take() else { return Ok(()) };
        k.stop().await;
        let run_id = self.run_id.clone();
        self.release_lease(&run_id).await.map(|_| ())
    }
}

fn renewal(claim: Result<Claim, BackendError>) -> Renewal {
    Ok(match claim? {
        Claim::Held(l) => Ok(l),
        Claim::Busy(other) | Claim::Contended(other) => Err(Some(other)),
        Claim::Gone => Err(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_other_tags_are_not_leases() {
        let l = Lease {
            run_id: "aws-lease-20261201T150203Z-0a1b".into(),
            since_ms: 1_795_316_645_000,
            expires_ms: 1_795_316_675_000,
        };
        let v = tag_value(&l);
        assert_eq!(v, "since=2026-11-22T03:04:05Z expires=2026-11-22T03:04:35Z");
        assert_eq!(parse_tag(&format!("{PREFIX}{}", l.run_id), &v), Some(l));
        assert_eq!(parse_tag("siege:run-id", &v), None);
        assert_eq!(parse_tag(PREFIX, &v), None);
        assert_eq!(parse_tag("siege:lease:r", "since=yesterday expires=2026-11-22T03:04:35Z"), None);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00Z")
                .map(|ms| crate::util::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))),
            Some("2024-02-29T12:00:00Z".into())
        );
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn the_holder_is_the_oldest_unexpired_lease_of_another_run() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let l = |run: &str, since: u64, expires: u64| Lease {
            run_id: run.into(),
            since_ms: since * 1000,
            expires_ms: expires * 1000,
        };
        let leases = vec![l("dead", 100, 130), l("me", 900, 1030), l("b", 995, 1025), l("a", 990, 1020)];
        assert_eq!(other_holder(&leases, "me", now).map(|l| l.run_id), Some("a".into()));
        assert_eq!(other_holder(&leases[..2], "me", now), None, "an expired lease holds nothing");
        assert_eq!(other_holder(&leases[..2], "", now).map(|l| l.run_id), Some("me".into()));
    }
}
