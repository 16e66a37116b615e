//! What a journal record keeps to undo a fault: one variant per way a fault is undone
//! ([`crate::faults::Undo`]), and [`UndoRecord::Nothing`] for the faults that settle by
//! themselves, each with what the backend that injected it needs to undo it from the record
//! alone (after a crash, in another process: `siege recover`).
//!
//! The records are written as a tagged JSON object, `{"op": "restore-secret", "on": "lab",
//! "restore_version": 1}`. Journals written before the records were typed hold a bare object
//! whose keys depend on the backend (`{"restore_version": 1}`); [`UndoRecord::from_untyped`]
//! reads those from the fault type the record names, so a journal an older siege left still
//! reverts.

use serde::{Deserialize, Serialize};

use crate::faults::Undo;

/// How to undo one injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum UndoRecord {
    /// Nothing to undo: stopped tasks are replaced, a deployment finishes.
    Nothing(Settles),
    /// Stop the CPU burn in the tasks the record names.
    EndCpuBurn(OnTasks),
    /// Remove the added delay from the tasks the record names.
    EndNetworkDelay(OnTasks),
    /// End a database outage that is still going; a failover that is over is not failed back.
    EndDatabaseOutage(Failover),
    /// Put back the secret version the fault replaced.
    RestoreSecret(SecretDrift),
}

/// A fault that settles by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "kebab-case")]
pub enum Settles {
    Lab,
    Ecs {
        /// The service's primary deployment before a forced one (a redeploy): a retried
        /// injection that finds another primary started it already.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_deployment: Option<String>,
    },
}

/// A fault in the tasks the record names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "kebab-case")]
pub enum OnTasks {
    /// The lab's tasks: the fault is cleared in those still running.
    Lab,
    /// A FIS experiment, found again by its tags: this run's id and the fault's name.
    Fis { run_id: String },
}

/// A database failover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "kebab-case")]
pub enum Failover {
    /// The lab's writer outage: ended by promoting a writer, if none is in yet.
    Lab,
    /// An Aurora failover, over once its new writer is in.
    Aurora(AuroraFailover),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuroraFailover {
    pub cluster: String,
    /// The writer before the failover (`None`: the cluster had none).
    #[serde(default)]
    pub previous_writer: Option<String>,
    /// The replica to promote, as RDS spells its identifier.
    #[serde(default)]
    pub target_instance: Option<String>,
}

/// A rotated secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "kebab-case")]
pub enum SecretDrift {
    /// The lab's secret version the drift replaced.
    Lab { restore_version: u32 },
    /// A Secrets Manager secret and the Aurora cluster's master password.
    Aws(AwsSecretDrift),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwsSecretDrift {
    /// The secret's ARN.
    pub secret: String,
    /// The version that was AWSCURRENT before the drift.
    pub previous_version: String,
    /// The version that had AWSPREVIOUS before the drift: `Some(None)` when none had it; `None`
    /// in journals written before siege recorded it (AWSPREVIOUS is then left where it is).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub awsprevious_version: Option<Option<String>>,
    /// The version id the drift writes.
    pub new_version: String,
    /// The cluster whose master password changes with the secret; `None` in journals written
    /// before siege rotated the database too (their database was never changed).
    #[serde(default)]
    pub db_cluster: Option<String>,
    /// Unix seconds, before the drift: tasks created since may hold the drifted password.
    #[serde(default)]
    pub injected_at: i64,
    /// The tasks that read their secret before the drift.
    #[serde(default)]
    pub tasks_before: Vec<String>,
}

/// A key that is present, even as `null`, is `Some`; a missing one is `None` (the default).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl UndoRecord {
    /// How the fault is undone (`None`: it is not).
    pub fn undo(&self) -> Option<Undo> {
        match self {
            UndoRecord::Nothing(_) => None,
            UndoRecord::EndCpuBurn(_) => Some(Undo::EndCpuBurn),
            UndoRecord::EndNetworkDelay(_) => Some(Undo::EndNetworkDelay),
            UndoRecord::EndDatabaseOutage(_) => Some(Undo::EndDatabaseOutage),
            UndoRecord::RestoreSecret(_) => Some(Undo::RestoreSecret),
        }
    }

    /// A record as journals written before the records were typed hold it: a bare object whose
    /// keys the backend chose, read from how the registry undoes `kind` (`None`: a type this
    /// version does not know) and from which backend's keys are there.
    pub fn from_untyped(undo: Option<Undo>, v: &serde_json::Value) -> Result<UndoRecord, String> {
        let has = |key: &str| v.get(key).is_some_and(|x| !x.is_null());
        let text = |key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_string);
        let tasks = || match text("run_id") {
            Some(run_id) => OnTasks::Fis { run_id },
            None => OnTasks::Lab,
        };
        Ok(match undo {
            None if has("cluster") || has("previous_deployment") => {
                UndoRecord::Nothing(Settles::Ecs { previous_deployment: text("previous_deployment") })
            }
            None => UndoRecord::Nothing(Settles::Lab),
            Some(Undo::EndCpuBurn) => UndoRecord::EndCpuBurn(tasks()),
            Some(Undo::EndNetworkDelay) => UndoRecord::EndNetworkDelay(tasks()),
            Some(Undo::EndDatabaseOutage) if has("cluster") => UndoRecord::EndDatabaseOutage(Failover::Aurora(
                serde_json::from_value(v.clone()).map_err(|e| format!("an Aurora failover record: {e}"))?,
            )),
            Some(Undo::EndDatabaseOutage) => UndoRecord::EndDatabaseOutage(Failover::Lab),
            Some(Undo::RestoreSecret) => match v.get("restore_version") {
                Some(n) => {
                    let restore_version = n
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| format!("a lab secret record with restore_version {n}"))?;
                    UndoRecord::RestoreSecret(SecretDrift::Lab { restore_version })
                }
                None => UndoRecord::RestoreSecret(SecretDrift::Aws(
                    serde_json::from_value(v.clone()).map_err(|e| format!("a secret-drift record: {e}"))?,
                )),
            },
        })
    }
}
