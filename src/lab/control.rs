//! The lab's control API as types: one request type per call, with its path and its answer,
//! shared by the lab's server (`supervisor`, which routes each path to its handler through one
//! table) and its client (`client::ControlClient::call`), so that the two cannot disagree on a
//! key. Absent keys take the defaults below, as older clients left them out.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::service::AutoscalingConfig;
use crate::lease::Lease;

/// A `POST` of the control API: its path and what it answers.
pub trait Call: Serialize + DeserializeOwned + Send + 'static {
    const PATH: &'static str;
    type Answer: Serialize + DeserializeOwned + Send + 'static;
}

/// The signal a killed task gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    #[default]
    #[serde(rename = "SIGKILL")]
    Kill,
    #[serde(rename = "SIGTERM")]
    Term,
}

impl Signal {
    pub fn number(self) -> libc::c_int {
        match self {
            Signal::Kill => libc::SIGKILL,
            Signal::Term => libc::SIGTERM,
        }
    }
}

/// The tasks a call acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tasks {
    pub tasks: Vec<String>,
}

/// `POST /v1/tasks/kill`: signal the tasks' processes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KillTasks {
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub signal: Signal,
}

impl Call for KillTasks {
    const PATH: &'static str = "/v1/tasks/kill";
    type Answer = Tasks;
}

/// `POST /v1/tasks/latency`: delay all traffic of the tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DelayTasks {
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
}

impl Call for DelayTasks {
    const PATH: &'static str = "/v1/tasks/latency";
    type Answer = Tasks;
}

/// `POST /v1/tasks/stress`: burn `percent` of a core in each task for `duration_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StressTasks {
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub percent: u32,
    #[serde(default = "StressTasks::default_ms")]
    pub duration_ms: u64,
}

impl StressTasks {
    fn default_ms() -> u64 {
        60_000
    }
}

impl Call for StressTasks {
    const PATH: &'static str = "/v1/tasks/stress";
    type Answer = Tasks;
}

/// What `POST /v1/tasks/clear` ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Clear {
    Latency,
    Stress,
    #[default]
    All,
}

impl Clear {
    pub fn name(self) -> &'static str {
        match self {
            Clear::Latency => "latency",
            Clear::Stress => "stress",
            Clear::All => "all",
        }
    }
}

/// `POST /v1/tasks/clear`: end the tasks' latency, stress or both (no tasks: every task).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClearTasks {
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub what: Clear,
}

impl Call for ClearTasks {
    const PATH: &'static str = "/v1/tasks/clear";
    type Answer = Tasks;
}

/// `POST /v1/db/failover`: the cluster loses its writer for `outage_ms` (the lab's default when
/// absent), then promotes the replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailOver {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedOver {
    pub old_writer: String,
    pub new_writer: String,
}

impl Call for FailOver {
    const PATH: &'static str = "/v1/db/failover";
    type Answer = FailedOver;
}

/// `POST /v1/db/promote`: end a failover window now (nothing to do with a writer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Promote {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promoted {
    pub writer: Option<String>,
}

impl Call for Promote {
    const PATH: &'static str = "/v1/db/promote";
    type Answer = Promoted;
}

/// `POST /v1/secret/rotate`: a new current version, the only one the database accepts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RotateSecret {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rotated {
    pub previous_version: u32,
    pub current_version: u32,
}

impl Call for RotateSecret {
    const PATH: &'static str = "/v1/secret/rotate";
    type Answer = Rotated;
}

/// `POST /v1/secret/restore`: make `version` current again; with `replace_stale`, replace the
/// tasks that hold another version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreSecret {
    pub version: u32,
    #[serde(default = "yes")]
    pub replace_stale: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restored {
    pub current_version: u32,
    pub replacing: Vec<String>,
}

impl Call for RestoreSecret {
    const PATH: &'static str = "/v1/secret/restore";
    type Answer = Restored;
}

/// `POST /v1/service/redeploy`: a rolling replacement of every task (or the stale ones).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Redeploy {
    #[serde(default)]
    pub stale_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replacing {
    pub replacing: Vec<String>,
}

impl Call for Redeploy {
    const PATH: &'static str = "/v1/service/redeploy";
    type Answer = Replacing;
}

/// `POST /v1/service`: the desired count and autoscaling (`null`: off; absent: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigureService {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Option<AutoscalingConfig>>,
}

/// A key that is present (`null` included) is `Some`; an absent one stays `None` by `default`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl Call for ConfigureService {
    const PATH: &'static str = "/v1/service";
    type Answer = super::service::ServiceView;
}

/// `POST /v1/lease`: take the lease for `run_id`, or with `renew` renew it (its holder only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeLease {
    pub run_id: String,
    pub ttl_ms: u64,
    #[serde(default)]
    pub renew: bool,
}

/// The lease granted, or the holder's when refused (`None`: nobody holds it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseAnswer {
    pub granted: bool,
    pub lease: Option<Lease>,
}

impl Call for TakeLease {
    const PATH: &'static str = "/v1/lease";
    type Answer = LeaseAnswer;
}

/// `POST /v1/lease/release`: free the lab if `run_id` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseLease {
    pub run_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Released {
    pub released: bool,
}

impl Call for ReleaseLease {
    const PATH: &'static str = "/v1/lease/release";
    type Answer = Released;
}

/// `POST /v1/shutdown`: stop the lab.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shutdown {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopping {
    pub stopping: bool,
}

impl Call for Shutdown {
    const PATH: &'static str = "/v1/shutdown";
    type Answer = Stopping;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_keys_take_their_defaults_and_a_null_autoscaling_turns_it_off() {
        let k: KillTasks = serde_json::from_str(r#"{"tasks": ["t1"]}"#).unwrap();
        assert_eq!(k.signal, Signal::Kill);
        let s: StressTasks = serde_json::from_str("{}").unwrap();
        assert_eq!((s.percent, s.duration_ms), (0, 60_000));
        let r: RestoreSecret = serde_json::from_str(r#"{"version": 3}"#).unwrap();
        assert!(r.replace_stale);
        let c: ConfigureService = serde_json::from_str(r#"{"desired": 4}"#).unwrap();
        assert_eq!((c.desired, c.autoscaling), (Some(4), None));
        let off: ConfigureService = serde_json::from_str(r#"{"autoscaling": null}"#).unwrap();
        assert_eq!(off.autoscaling, Some(None));
        assert_eq!(serde_json::to_string(&off).unwrap(), r#"{"autoscaling":null}"#);
        assert!(serde_json::from_str::<KillTasks>(r#"{"signal": "SIGHUP"}"#).is_err());
        assert!(serde_json::from_str::<ClearTasks>(r#"{"what": "everything"}"#).is_err());
    }
}
