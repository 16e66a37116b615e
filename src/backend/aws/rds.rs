//! RDS: db-failover (`FailoverDBCluster`, optionally to a named replica, then wait for the new
//! writer), the writer sampler, and the master password of secret-drift (`ModifyDBCluster`).
//!
//! The revert does not fail back: the cluster has a healthy writer after a failover, and moving
//! it again would be a second outage nobody asked for.
//!
//! The two mutating calls are never repeated blindly: the SDK's retries are off for them, and
//! when their outcome is unknown (no answer in time, a connection lost after the request may
//! have gone out, a 5xx) the cluster is read back first, so that a failover is never triggered
//! twice ([`AwsBackend::failover`], [`AwsBackend::set_master_password`]).

use std::time::{Duration, Instant};

use aws_sdk_rds::config::retry::RetryConfig;

use super::AwsBackend;
use super::error::{Outcome, aws_error, outcome};
use crate::backend::undo::{AuroraFailover, Failover, UndoRecord};
use crate::backend::{BackendError, Resolved};
use crate::faults::{Action, Step};

/// How long a failover may take to show a new writer before siege reports it as stuck.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(5 * 60);
/// The cluster's status while RDS applies a new master password.
const RESETTING: &str = "resetting-master-credentials";
const POLL: Duration = Duration::from_secs(1);
/// How long after a call with an unknown outcome the cluster is read back: RDS shows a change
/// it accepted within moments.
const READ_BACK_AFTER: Duration = Duration::from_secs(1);
/// Longest wait between two attempts of a throttled mutating call, as in the SDK's standard mode.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

impl AwsBackend {
    /// The cluster a db-failover acts on; only the one the target names.
    pub(super) fn db_cluster_name(&self, step: &Step) -> Result<&str, BackendError> {
        self.target
            .db_cluster
            .as_deref()
            .ok_or_else(|| BackendError::Precondition(format!("fault `{}` needs `target.aws.db_cluster`", step.fault)))
    }

    /// Checks that secret-drift can rotate the master password of `name` together with a secret
    /// whose user is `username`: RDS must not manage that password itself, and the secret must be
    /// the master user's. Mutates nothing.
    pub(super) async fn check_master_password(&self, name: &str, username: Option<&str>) -> Result<(), BackendError> {
        let cluster = self.describe_db_cluster(name).await?;
        if cluster.managed_password {
            return Err(BackendError::Precondition(format!(
                "Aurora cluster {name} has its master password managed by RDS in Secrets Manager (ManageMasterUserPassword): siege cannot set it; point `target.aws.secret` and `db_cluster` at a cluster whose password the application's secret holds"
            )));
        }
        if let (Some(user), Some(master)) = (username, cluster.master_username.as_deref())
            && user != master
        {
            return Err(BackendError::Precondition(format!(
                "the secret's username `{user}` is not the master user `{master}` of Aurora cluster {name}: siege rotates the master user's password only; name the secret that holds the master user's password"
            )));
        }
        Ok(())
    }

    /// `ModifyDBCluster` with a new master password, applied at once; then waits (until
    /// `deadline`) while RDS applies it. The password goes to RDS and nowhere else.
    ///
    /// Sent again only when it was surely not applied (throttled, refused), or when its outcome
    /// is unknown and the cluster, read back, is not applying a new password: setting the same
    /// password twice changes nothing, but each time costs the database a reset.
    pub(super) async fn set_master_password(
        &self,
        cluster: &str,
        password: &str,
        deadline: Duration,
    ) -> Result<(), BackendError> {
        self.secrets.register(password);
        let send = || {
            self.clients
                .rds
                .modify_db_cluster()
                .db_cluster_identifier(cluster)
                .master_user_password(password)
                .apply_immediately(true)
                .customize()
                .config_override(no_retries())
                .send()
        };
        self.mutate("rds:ModifyDBCluster", send, || async {
            Ok(self.describe_db_cluster(cluster).await?.status.as_deref() == Some(RESETTING))
        })
        .await?;
        let until = Instant::now() + deadline;
        loop {
            let c = self.describe_db_cluster(cluster).await?;
            if c.status.as_deref() != Some(RESETTING) {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(BackendError::Api(format!(
                    "Aurora cluster {cluster} was still applying its new master password {}s after rds:ModifyDBCluster",
                    deadline.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn describe_db_cluster(&self, name: &str) -> Result<DbCluster, BackendError> {
        let out = self
            .clients
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(name)
            .send()
            .await
            .map_err(|e| aws_error("rds:DescribeDBClusters", e))?;
        out.db_clusters()
            .first()
            .map(DbCluster::from_sdk)
            .ok_or_else(|| BackendError::NotFound(format!("Aurora cluster {name} (region {})", self.region)))
    }

    /// Sends the mutating call `send` (whose SDK retries are off) until it is known to have been
    /// applied, without ever repeating one that may have been. A throttled call was not applied
    /// and is sent again with backoff (up to [`super::MIN_ATTEMPTS`] in all, as the SDK would).
    /// A call whose outcome is unknown is checked with `applied` (a read of the cluster, after a
    /// moment for RDS to show the change) and sent again only if it was not applied, and only
    /// once; once an outcome was unknown, a later refusal (RDS refuses a failover while the
    /// cluster fails over) is checked the same way before it is reported.
    async fn mutate<T, E, S, SF, A, AF>(&self, action: &str, send: S, applied: A) -> Result<(), BackendError>
    where
        S: Fn() -> SF,
        SF: Future<Output = Result<T, aws_sdk_rds::error::SdkError<E, aws_sdk_rds::config::http::HttpResponse>>>,
        E: aws_sdk_rds::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        A: Fn() -> AF,
        AF: Future<Output = Result<bool, BackendError>>,
    {
        let mut attempts = 0;
        let mut was_unknown = false;
        let mut backoff = self.clients.rds.config().retry_config().map(|r| r.initial_backoff()).unwrap_or(POLL);
        loop {
            attempts += 1;
            let err = match send().await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            match outcome(&err) {
                Outcome::NotApplied { retryable: true } if attempts < super::MIN_ATTEMPTS => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Outcome::Unknown if !was_unknown => {
                    was_unknown = true;
                    tokio::time::sleep(READ_BACK_AFTER).await;
                    if applied().await? {
                        return Ok(());
                    }
                    continue;
                }
                _ => {}
            }
            if was_unknown && applied().await? {
                return Ok(());
            }
            return Err(aws_error(action, err));
        }
    }

    /// The current writer instance of `cluster`; `None` while it has none (mid-failover).
    pub(super) async fn writer(&self, cluster: &str) -> Result<Option<String>, BackendError> {
        let c = self.describe_db_cluster(cluster).await?;
        Ok(writer_of(&c))
    }

    pub(super) async fn resolve_failover(
        &self,
        step: &Step,
        target_instance: Option<&str>,
    ) -> Result<Resolved, BackendError> {
        let name = self.db_cluster_name(step)?;
        let cluster = self.describe_db_cluster(name).await?;
        let writer = writer_of(&cluster)
            .ok_or_else(|| BackendError::Precondition(format!("Aurora cluster {name} has no writer right now")))?;
        let readers: Vec<String> = cluster.members.iter().filter(|m| !m.writer).map(|m| m.id.clone()).collect();
        if readers.is_empty() {
            return Err(BackendError::Precondition(format!(
                "Aurora cluster {name} has no replica to fail over to (writer {writer} is its only member)"
            )));
        }
        let to = match target_instance {
            Some(t) if let Some(r) = replica_named(&readers, t) => r.to_string(),
            Some(t) => {
                return Err(BackendError::Precondition(format!(
                    "target_instance {t} is not a replica of Aurora cluster {name} (replicas: {})",
                    readers.join(", ")
                )));
            }
            None => format!("a replica RDS picks ({})", readers.join(", ")),
        };
        let arn = cluster.arn.as_deref().unwrap_or(name).to_string();
        Ok(Resolved {
            summary: format!("fail over Aurora cluster {name}: writer {writer} -> {to}"),
            targets: vec![arn],
        })
    }

    pub(super) async fn prepare_failover(&self, step: &Step) -> Result<UndoRecord, BackendError> {
        let name = self.db_cluster_name(step)?;
        let cluster = self.describe_db_cluster(name).await?;
        // The replica's identifier as RDS spells it (identifiers are lower case; a scenario may
        // not be).
        let target_instance = match &step.action {
            Action::FailOverDatabase { promote: Some(t), .. } => {
                let members: Vec<String> = cluster.members.iter().map(|m| m.id.clone()).collect();
                Some(replica_named(&members, t).unwrap_or(t).to_string())
            }
            _ => None,
        };
        Ok(UndoRecord::EndDatabaseOutage(Failover::Aurora(AuroraFailover {
            cluster: name.to_string(),
            previous_writer: writer_of(&cluster),
            target_instance,
        })))
    }

    /// `FailoverDBCluster`, then waits until a writer other than the previous one is reported and
    /// the cluster is no longer `failing-over` (which would refuse the next failover).
    ///
    /// A failover whose answer was lost is not asked for again blindly: the cluster is read back,
    /// and a cluster that is failing over, or whose writer is no longer the previous one, counts
    /// as failed over; only a cluster still on its previous writer is asked once more.
    pub(super) async fn failover(&self, record: &AuroraFailover) -> Result<(), BackendError> {
        let cluster = record.cluster.as_str();
        let previous = &record.previous_writer;
        let target_instance = record.target_instance.as_deref();
        let send = || {
            self.clients
                .rds
                .failover_db_cluster()
                .db_cluster_identifier(cluster)
                .set_target_db_instance_identifier(target_instance.map(str::to_string))
                .customize()
                .config_override(no_retries())
                .send()
        };
        self.mutate("rds:FailoverDBCluster", send, || async {
            Ok(failover_started(&self.describe_db_cluster(cluster).await?, previous.as_deref()))
        })
        .await?;
        let deadline = Instant::now() + FAILOVER_DEADLINE;
        loop {
            if failover_done(&self.describe_db_cluster(cluster).await?, previous.as_deref()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Api(format!(
                    "Aurora cluster {cluster} had no new writer, or was still failing over, {}s after the failover",
                    FAILOVER_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The SDK's retries off, for a call that must not be repeated before siege knows whether it was
/// applied.
fn no_retries() -> aws_sdk_rds::config::Builder {
    aws_sdk_rds::config::Builder::default().retry_config(RetryConfig::disabled())
}

/// A failover has been started (and must not be asked for again) when the cluster is failing over
/// or its writer is no longer `previous`.
fn failover_started(cluster: &DbCluster, previous: Option<&str>) -> bool {
    cluster.status.as_deref() == Some("failing-over")
        || writer_of(cluster).is_some_and(|w| Some(w.as_str()) != previous)
}

/// A failover is over when the cluster has a writer other than `previous` and has left the
/// `failing-over` status (for `available`, or whatever else it is busy with, e.g. a backup).
fn failover_done(cluster: &DbCluster, previous: Option<&str>) -> bool {
    let writer = writer_of(cluster);
    writer.is_some() && writer.as_deref() != previous && cluster.status.as_deref() != Some("failing-over")
}

/// The member of `ids` named `name`, compared as RDS does: without regard to case.
fn replica_named<'a>(ids: &'a [String], name: &str) -> Option<&'a str> {
    ids.iter().find(|id| id.eq_ignore_ascii_case(name)).map(String::as_str)
}

fn writer_of(cluster: &DbCluster) -> Option<String> {
    cluster.members.iter().find(|m| m.writer).map(|m| m.id.clone())
}

/// What siege reads of an Aurora cluster (`DBCluster` of `DescribeDBClusters`).
#[derive(Debug, Clone, PartialEq)]
struct DbCluster {
    arn: Option<String>,
    status: Option<String>,
    members: Vec<Member>,
    master_username: Option<String>,
    /// RDS keeps the master password in a secret of its own (`ManageMasterUserPassword`).
    managed_password: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Member {
    id: String,
    writer: bool,
}

impl DbCluster {
    fn from_sdk(c: &aws_sdk_rds::types::DbCluster) -> DbCluster {
        let members = c
            .db_cluster_members()
            .iter()
            .filter_map(|m| {
                let id = m.db_instance_identifier().filter(|id| !id.is_empty())?;
                Some(Member { id: id.to_string(), writer: m.is_cluster_writer() == Some(true) })
            })
            .collect();
        DbCluster {
            arn: c.db_cluster_arn().map(str::to_string),
            status: c.status().map(str::to_string),
            members,
            master_username: c.master_username().filter(|u| !u.is_empty()).map(str::to_string),
            managed_password: c.master_user_secret().and_then(|s| s.secret_arn()).is_some_and(|a| !a.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(status: &str, writer: &str) -> DbCluster {
        let member = |id: &str| Member { id: id.to_string(), writer: id == writer };
        DbCluster {
            arn: None,
            status: Some(status.to_string()),
            members: vec![member("db-1"), member("db-2")],
            master_username: None,
            managed_password: false,
        }
    }

    #[test]
    fn clusters_are_read_from_the_answer() {
        use aws_sdk_rds::types::{DbCluster as Sdk, DbClusterMember, MasterUserSecret};
        let member = |id: &str, writer| DbClusterMember::builder().db_instance_identifier(id).is_cluster_writer(writer);
        let sdk = Sdk::builder()
            .db_cluster_arn("arn:aws:rds:eu-west-1:1:cluster:prod-db")
            .status("available")
            .db_cluster_members(member("db-1", false).build())
            .db_cluster_members(member("db-2", true).build())
            .db_cluster_members(DbClusterMember::builder().build())
            .master_username("app");
        let c = DbCluster::from_sdk(&sdk.clone().build());
        assert_eq!((c.master_username.as_deref(), c.managed_password), (Some("app"), false));
        let secret = MasterUserSecret::builder().secret_arn("arn:aws:secretsmanager:eu-west-1:1:secret:rds!cluster");
        assert!(DbCluster::from_sdk(&sdk.master_user_secret(secret.build()).build()).managed_password);
        assert_eq!(c.arn.as_deref(), Some("arn:aws:rds:eu-west-1:1:cluster:prod-db"));
        assert_eq!(c.status.as_deref(), Some("available"));
        assert_eq!(writer_of(&c).as_deref(), Some("db-2"));
        assert_eq!(c.members.len(), 2, "a member without an identifier is left out");
    }

    #[test]
    fn a_failover_has_started_once_the_cluster_fails_over_or_has_another_writer() {
        assert!(!failover_started(&cluster("available", "db-1"), Some("db-1")), "still the previous writer");
        assert!(failover_started(&cluster("failing-over", "db-1"), Some("db-1")));
        assert!(failover_started(&cluster("available", "db-2"), Some("db-1")));
        let mut none = cluster("failing-over", "db-3");
        assert!(failover_started(&none, Some("db-1")), "failing over, no writer yet");
        none.status = Some("available".into());
        assert!(!failover_started(&none, Some("db-1")), "no writer and not failing over");
    }

    #[test]
    fn a_failover_is_over_once_a_new_writer_is_in_and_the_cluster_left_failing_over() {
        assert!(!failover_done(&cluster("failing-over", "db-1"), Some("db-1")));
        assert!(!failover_done(&cluster("failing-over", "db-2"), Some("db-1")), "still failing over");
        assert!(!failover_done(&cluster("available", "db-1"), Some("db-1")), "the old writer");
        assert!(failover_done(&cluster("available", "db-2"), Some("db-1")));
        assert!(failover_done(&cluster("backing-up", "db-2"), Some("db-1")), "busy with something else");
    }

    #[test]
    fn replicas_are_named_without_regard_to_case() {
        let ids = vec!["prod-db-instance-2".to_string()];
        assert_eq!(replica_named(&ids, "Prod-DB-Instance-2"), Some("prod-db-instance-2"));
        assert_eq!(replica_named(&ids, "prod-db-instance-3"), None);
    }
}
