//! RDS: db-failover (`FailoverDBCluster`, optionally to a named replica, then wait for the new
//! writer) and the writer sampler.
//!
//! The revert does not fail back: the cluster has a healthy writer after a failover, and moving
//! it again would be a second outage nobody asked for.

use std::time::{Duration, Instant};

use aws_sdk_rds::types::DbCluster;

use super::error::aws_error;
use super::{AwsBackend, undo_str};
use crate::backend::{BackendError, Injected, Resolved};
use crate::faults::Action;
use crate::scenario::Fault;

/// How long a failover may take to show a new writer before siege reports it as stuck.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(5 * 60);
const POLL: Duration = Duration::from_secs(1);

impl AwsBackend {
    /// The cluster a db-failover acts on; only the one the target names.
    pub(super) fn db_cluster_name(&self, fault: &Fault) -> Result<&str, BackendError> {
        self.target
            .db_cluster
            .as_deref()
            .ok_or_else(|| BackendError::Precondition(format!("fault `{}` needs `target.aws.db_cluster`", fault.name)))
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
            .cloned()
            .ok_or_else(|| BackendError::NotFound(format!("Aurora cluster {name} (region {})", self.region)))
    }

    /// The current writer instance of `cluster`; `None` while it has none (mid-failover).
    pub(super) async fn writer(&self, cluster: &str) -> Result<Option<String>, BackendError> {
        let c = self.describe_db_cluster(cluster).await?;
        Ok(writer_of(&c))
    }

    pub(super) async fn resolve_failover(
        &self,
        fault: &Fault,
        target_instance: Option<&str>,
    ) -> Result<Resolved, BackendError> {
        let name = self.db_cluster_name(fault)?;
        let cluster = self.describe_db_cluster(name).await?;
        let writer = writer_of(&cluster)
            .ok_or_else(|| BackendError::Precondition(format!("Aurora cluster {name} has no writer right now")))?;
        let readers: Vec<String> = cluster
            .db_cluster_members()
            .iter()
            .filter(|m| m.is_cluster_writer() != Some(true))
            .filter_map(|m| m.db_instance_identifier().map(str::to_string))
            .collect();
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
        let arn = cluster.db_cluster_arn().unwrap_or(name).to_string();
        Ok(Resolved {
            summary: format!("fail over Aurora cluster {name}: writer {writer} -> {to}"),
            targets: vec![arn],
        })
    }

    pub(super) async fn prepare_failover(&self, fault: &Fault) -> Result<serde_json::Value, BackendError> {
        let name = self.db_cluster_name(fault)?;
        let cluster = self.describe_db_cluster(name).await?;
        // The replica's identifier as RDS spells it (identifiers are lower case; a scenario may
        // not be).
        let target_instance = match fault.kind.action() {
            Action::FailOverDatabase { promote: Some(t), .. } => {
                let members: Vec<String> = cluster
                    .db_cluster_members()
                    .iter()
                    .filter_map(|m| m.db_instance_identifier().map(str::to_string))
                    .collect();
                Some(replica_named(&members, &t).unwrap_or(&t).to_string())
            }
            _ => None,
        };
        Ok(serde_json::json!({
            "cluster": name,
            "previous_writer": writer_of(&cluster),
            "target_instance": target_instance,
        }))
    }

    /// `FailoverDBCluster`, then waits until a writer other than the previous one is reported and
    /// the cluster is no longer `failing-over` (which would refuse the next failover).
    pub(super) async fn failover(&self, injected: &Injected) -> Result<(), BackendError> {
        let cluster = undo_str(injected, "cluster")?;
        let previous = injected.undo.get("previous_writer").and_then(|v| v.as_str()).map(str::to_string);
        let target_instance = injected.undo.get("target_instance").and_then(|v| v.as_str());
        self.clients
            .rds
            .failover_db_cluster()
            .db_cluster_identifier(cluster)
            .set_target_db_instance_identifier(target_instance.map(str::to_string))
            .send()
            .await
            .map_err(|e| aws_error("rds:FailoverDBCluster", e))?;
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

/// A failover is over when the cluster has a writer other than `previous` and has left the
/// `failing-over` status (for `available`, or whatever else it is busy with, e.g. a backup).
fn failover_done(cluster: &DbCluster, previous: Option<&str>) -> bool {
    let writer = writer_of(cluster);
    writer.is_some() && writer.as_deref() != previous && cluster.status() != Some("failing-over")
}

/// The member of `ids` named `name`, compared as RDS does: without regard to case.
fn replica_named<'a>(ids: &'a [String], name: &str) -> Option<&'a str> {
    ids.iter().find(|id| id.eq_ignore_ascii_case(name)).map(String::as_str)
}

fn writer_of(cluster: &DbCluster) -> Option<String> {
    cluster
        .db_cluster_members()
        .iter()
        .find(|m| m.is_cluster_writer() == Some(true))
        .and_then(|m| m.db_instance_identifier().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_rds::types::DbClusterMember;

    fn cluster(status: &str, writer: &str) -> DbCluster {
        let member =
            |id: &str| DbClusterMember::builder().db_instance_identifier(id).is_cluster_writer(id == writer).build();
        DbCluster::builder()
            .status(status)
            .db_cluster_members(member("db-1"))
            .db_cluster_members(member("db-2"))
            .build()
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
