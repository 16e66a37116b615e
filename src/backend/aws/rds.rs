//! RDS: db-failover (`FailoverDBCluster`, optionally to a named replica, then wait for the new
//! writer), the writer sampler, and the master password of secret-drift (`ModifyDBCluster`).
//!
//! The revert does not fail back: the cluster has a healthy writer after a failover, and moving
//! it again would be a second outage nobody asked for.

use std::time::{Duration, Instant};

use super::query::Element;
use super::{AwsBackend, undo_str};
use crate::backend::{BackendError, Injected, Resolved};
use crate::faults::Action;
use crate::scenario::Fault;

/// How long a failover may take to show a new writer before siege reports it as stuck.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(5 * 60);
/// The cluster's status while RDS applies a new master password.
const RESETTING: &str = "resetting-master-credentials";
const POLL: Duration = Duration::from_secs(1);

impl AwsBackend {
    /// The cluster a db-failover acts on; only the one the target names.
    pub(super) fn db_cluster_name(&self, fault: &Fault) -> Result<&str, BackendError> {
        self.target
            .db_cluster
            .as_deref()
            .ok_or_else(|| BackendError::Precondition(format!("fault `{}` needs `target.aws.db_cluster`", fault.name)))
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
    pub(super) async fn set_master_password(
        &self,
        cluster: &str,
        password: &str,
        deadline: Duration,
    ) -> Result<(), BackendError> {
        self.secrets.register(password);
        let params = [("DBClusterIdentifier", cluster), ("MasterUserPassword", password), ("ApplyImmediately", "true")];
        self.clients.rds.call("ModifyDBCluster", &params).await?;
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
        let out = self.clients.rds.call("DescribeDBClusters", &[("DBClusterIdentifier", name)]).await?;
        out.at("DescribeDBClustersResult/DBClusters")
            .and_then(|c| c.child("DBCluster"))
            .map(DbCluster::from_xml)
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

    pub(super) async fn prepare_failover(&self, fault: &Fault) -> Result<serde_json::Value, BackendError> {
        let name = self.db_cluster_name(fault)?;
        let cluster = self.describe_db_cluster(name).await?;
        // The replica's identifier as RDS spells it (identifiers are lower case; a scenario may
        // not be).
        let target_instance = match fault.kind.action() {
            Action::FailOverDatabase { promote: Some(t), .. } => {
                let members: Vec<String> = cluster.members.iter().map(|m| m.id.clone()).collect();
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
        let mut params = vec![("DBClusterIdentifier", cluster)];
        if let Some(t) = target_instance {
            params.push(("TargetDBInstanceIdentifier", t));
        }
        self.clients.rds.call("FailoverDBCluster", &params).await?;
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
    fn from_xml(el: &Element) -> DbCluster {
        let members = el
            .child("DBClusterMembers")
            .into_iter()
            .flat_map(|m| m.all("DBClusterMember"))
            .filter_map(|m| {
                let id = m.text_of("DBInstanceIdentifier").filter(|id| !id.is_empty())?;
                Some(Member { id: id.to_string(), writer: m.text_of("IsClusterWriter") == Some("true") })
            })
            .collect();
        DbCluster {
            arn: el.text_of("DBClusterArn").map(str::to_string),
            status: el.text_of("Status").map(str::to_string),
            members,
            master_username: el.text_of("MasterUsername").filter(|u| !u.is_empty()).map(str::to_string),
            managed_password: el.text_of("MasterUserSecret/SecretArn").is_some_and(|a| !a.is_empty()),
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
        let xml = "<DBCluster><DBClusterArn>arn:aws:rds:eu-west-1:1:cluster:prod-db</DBClusterArn>\
            <Status>available</Status><DBClusterMembers>\
            <DBClusterMember><DBInstanceIdentifier>db-1</DBInstanceIdentifier><IsClusterWriter>false</IsClusterWriter></DBClusterMember>\
            <DBClusterMember><DBInstanceIdentifier>db-2</DBInstanceIdentifier><IsClusterWriter>true</IsClusterWriter></DBClusterMember>\
            </DBClusterMembers><MasterUsername>app</MasterUsername></DBCluster>";
        let c = DbCluster::from_xml(&Element::parse(xml).unwrap());
        assert_eq!((c.master_username.as_deref(), c.managed_password), (Some("app"), false));
        let managed = xml.replace(
            "</DBCluster>",
            "<MasterUserSecret><SecretArn>arn:aws:secretsmanager:eu-west-1:1:secret:rds!cluster</SecretArn></MasterUserSecret></DBCluster>",
        );
        assert!(DbCluster::from_xml(&Element::parse(&managed).unwrap()).managed_password);
        assert_eq!(c.arn.as_deref(), Some("arn:aws:rds:eu-west-1:1:cluster:prod-db"));
        assert_eq!(c.status.as_deref(), Some("available"));
        assert_eq!(writer_of(&c).as_deref(), Some("db-2"));
        assert_eq!(c.members.len(), 2);
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
