//! Secrets Manager and the Aurora master password: secret-drift rotates the database password
//! the way a real rotation does, in the database and in the secret together, while the running
//! tasks keep the copy they read at start.
//!
//! - **Inject**: `PutSecretValue` writes the new password as a new version (its id chosen in
//!   `prepare` and journaled), which becomes AWSCURRENT, then `ModifyDBCluster` sets it as the
//!   master password of the named Aurora cluster. The secret first: a crash between the two
//!   leaves the database on a password the secret still holds (the previous version), never on
//!   one stored nowhere.
//! - **Revert**: sets the database's password back to the one of the version that was AWSCURRENT
//!   before (read from Secrets Manager at revert time: no password is ever journaled), moves
//!   AWSCURRENT back to that version and AWSPREVIOUS back to where it was (Secrets Manager moves
//!   AWSPREVIOUS along with every move of AWSCURRENT, which would leave it on siege's value),
//!   then replaces the tasks that started during the drift (they read the drifted password,
//!   which no longer works) with a forced deployment of the service.
//!
//! The secret must be a JSON object with a `password` field (and, if it names one, the cluster's
//! master user): it keeps its shape, only `password` changes, so that applications still parse
//! it. Secret values are never logged, journaled or reported.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

use super::AwsBackend;
use super::error::aws_error;
use crate::backend::undo::{AwsSecretDrift, SecretDrift, UndoRecord};
use crate::backend::{BackendError, Resolved};
use crate::faults::Step;
use crate::util::Rng;

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";
/// How long the injection waits for RDS to apply the new master password.
const APPLY_DEADLINE: Duration = Duration::from_secs(5 * 60);
/// The same for the revert, which the engine gives two minutes in all.
const REVERT_APPLY_DEADLINE: Duration = Duration::from_secs(75);
/// Tasks created up to this long before the drift was prepared count as started during it:
/// ECS's clock and this machine's may differ a little, and replacing a task too many is harmless
/// where missing one leaves it broken.
const CLOCK_MARGIN_S: i64 = 30;

/// Which version of a secret to read.
enum Version<'a> {
    Stage(&'a str),
    Id(&'a str),
}

impl AwsBackend {
    /// The secret a secret-drift acts on; only the one the target names.
    pub(super) fn secret_name(&self, step: &Step) -> Result<&str, BackendError> {
        self.target
            .secret
            .as_deref()
            .ok_or_else(|| BackendError::Precondition(format!("fault `{}` needs `target.aws.secret`", step.fault)))
    }

    /// The secret's ARN and its version ids with their staging labels; an error when a label is
    /// on more than one version (see [`check_labels`]), so that no step acts on a guess.
    async fn secret_versions(&self, secret: &str) -> Result<(String, HashMap<String, Vec<String>>), BackendError> {
        let out = self
            .clients
            .secrets
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .map_err(|e| aws_error("secretsmanager:DescribeSecret", e))?;
        let arn = out.arn().unwrap_or(secret).to_string();
        let versions = out.version_ids_to_stages().cloned().unwrap_or_default();
        check_labels(secret, &versions)?;
        Ok((arn, versions))
    }

    /// The cluster whose master password a secret-drift rotates along with the secret.
    pub(super) fn drift_cluster(&self, step: &Step) -> Result<&str, BackendError> {
        self.target.db_cluster.as_deref().ok_or_else(|| {
            BackendError::Precondition(format!(
                "fault `{}` (secret-drift) rotates the database password in the Aurora cluster and the secret together: name the cluster in `target.aws.db_cluster`",
                step.fault
            ))
        })
    }

    /// Checks, changing nothing, what a secret-drift needs: the secret and the cluster named,
    /// the secret a JSON object with a `password` (of the cluster's master user, if it names a
    /// user), a password RDS does not manage itself, and a service whose tasks a forced
    /// deployment can replace (the revert's).
    pub(super) async fn preflight_secret(&self, step: &Step) -> Result<(), BackendError> {
        let name = self.secret_name(step)?;
        let cluster = self.drift_cluster(step)?;
        let value = self.secret_value(name, Version::Stage(CURRENT)).await?;
        let fields = json_fields(&value).ok_or_else(|| {
            BackendError::Precondition(format!(
                "secret {name} does not hold a JSON object with a string `password` field: secret-drift changes that field (the shape RDS and its rotation functions use, e.g. {{\"username\": \"app\", \"password\": \"...\", \"host\": \"...\"}})"
            ))
        })?;
        self.check_master_password(cluster, fields.username.as_deref()).await?;
        let service = self.describe_service().await?;
        self.check_rolling_update(
            &service,
            "secret-drift's revert replaces the tasks started during the drift with a forced deployment",
        )
    }

    pub(super) async fn resolve_secret(&self, step: &Step) -> Result<Resolved, BackendError> {
        let name = self.secret_name(step)?;
        let cluster = self.drift_cluster(step)?;
        let (arn, versions) = self.secret_versions(name).await?;
        let current = version_with(&versions, CURRENT)
            .ok_or_else(|| BackendError::Precondition(format!("secret {name} has no AWSCURRENT version")))?;
        Ok(Resolved {
            summary: format!(
                "rotate the master password of Aurora cluster {cluster} and secret {name} together: a new version replaces version {current} as AWSCURRENT; running tasks keep the old password; the run's end puts {current}'s password back in both and replaces the tasks started during the drift"
            ),
            targets: vec![arn],
        })
    }

    pub(super) async fn prepare_secret(&self, step: &Step, resolved: &Resolved) -> Result<UndoRecord, BackendError> {
        let secret =
            resolved.targets.first().ok_or_else(|| BackendError::Api("secret-drift resolved to no secret".into()))?;
        let cluster = self.drift_cluster(step)?;
        let (arn, versions) = self.secret_versions(secret).await?;
        let previous = version_with(&versions, CURRENT)
            .ok_or_else(|| BackendError::Precondition(format!("secret {secret} has no AWSCURRENT version")))?;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Ok(UndoRecord::RestoreSecret(SecretDrift::Aws(AwsSecretDrift {
            secret: arn,
            previous_version: previous,
            awsprevious_version: Some(version_with(&versions, PREVIOUS)),
            new_version: new_version_id(),
            db_cluster: Some(cluster.to_string()),
            injected_at: now as i64,
            tasks_before: self.live_tasks().await?.into_iter().map(|(arn, _)| arn).collect(),
        })))
    }

    /// What the journaled record says the drift does, for the timeline: the new version and the
    /// one it replaces.
    pub(super) fn describe_drift(&self, resolved: &Resolved, drift: &AwsSecretDrift) -> Option<String> {
        let (new, previous) = (&drift.new_version, &drift.previous_version);
        let cluster = drift.db_cluster.as_deref()?;
        let secret = self.target.secret.as_deref().or(resolved.targets.first().map(String::as_str))?;
        Some(format!(
            "rotate the master password of Aurora cluster {cluster} and secret {secret} together: new version {new} becomes AWSCURRENT, replacing version {previous} (AWSPREVIOUS from then on); running tasks keep the old password; the run's end puts {previous}'s password back in both and replaces the tasks started during the drift"
        ))
    }

    /// Reads a version of `secret` as text; registers it (and its password) as secret values.
    async fn secret_value(&self, secret: &str, version: Version<'_>) -> Result<String, BackendError> {
        let call = self.clients.secrets.get_secret_value().secret_id(secret);
        let call = match version {
            Version::Stage(stage) => call.version_stage(stage),
            Version::Id(id) => call.version_id(id),
        };
        let out = call.send().await.map_err(|e| aws_error("secretsmanager:GetSecretValue", e))?;
        let Some(value) = out.secret_string() else {
            return Err(BackendError::Precondition(format!(
                "secret {secret} holds binary data; secret-drift changes string secrets only"
            )));
        };
        self.secrets.register(value);
        if let Some(fields) = json_fields(value) {
            self.secrets.register(&fields.password);
        }
        Ok(value.to_string())
    }

    /// The `password` of a version of `secret`.
    async fn password_of(&self, secret: &str, version: Version<'_>) -> Result<String, BackendError> {
        let value = self.secret_value(secret, version).await?;
        json_fields(&value).map(|f| f.password).ok_or_else(|| {
            BackendError::Precondition(format!(
                "secret {secret} does not hold a JSON object with a string `password` field"
            ))
        })
    }

    /// `PutSecretValue` with a fresh random password under the journaled version id, then the
    /// same password as the cluster's master password.
    pub(super) async fn drift_secret(&self, drift: &AwsSecretDrift) -> Result<(), BackendError> {
        let (secret, new_version) = (drift.secret.as_str(), drift.new_version.as_str());
        let cluster = drift
            .db_cluster
            .as_deref()
            .ok_or_else(|| BackendError::Api(format!("the drift of secret {secret} names no database cluster")))?;
        let (_, versions) = self.secret_versions(secret).await?;
        let password = if versions.contains_key(new_version) {
            // Written by an earlier attempt: the database is given that password.
            self.password_of(secret, Version::Id(new_version)).await?
        } else {
            let old = self.secret_value(secret, Version::Stage(CURRENT)).await?;
            let password = random_text(32);
            let value = drifted_value(&old, &password).ok_or_else(|| {
                BackendError::Precondition(format!(
                    "secret {secret} does not hold a JSON object with a string `password` field"
                ))
            })?;
            // Neither the value siege read nor the one it writes may reach a report or a log line.
            self.secrets.register(&value);
            self.secrets.register(&password);
            self.clients
                .secrets
                .put_secret_value()
                .secret_id(secret)
                .client_request_token(new_version)
                .secret_string(value)
                .send()
                .await
                .map_err(|e| aws_error("secretsmanager:PutSecretValue", e))?;
            password
        };
        self.set_master_password(cluster, &password, APPLY_DEADLINE).await
    }

    /// Puts the previous version's password back in the database, moves AWSCURRENT back to the
    /// previous version and AWSPREVIOUS back to the version that had it, then replaces the tasks
    /// started during the drift. Nothing to do for what is already back; refuses, before
    /// changing anything, when AWSCURRENT is on a version siege did not write (someone rotated
    /// since). AWSPREVIOUS is only ever moved off siege's own version, and back to where someone
    /// else put it during the run, if someone did.
    pub(super) async fn revert_secret(&self, drift: &AwsSecretDrift) -> Result<(), BackendError> {
        let secret = drift.secret.as_str();
        let previous = drift.previous_version.as_str();
        let new_version = drift.new_version.as_str();
        let (_, versions) = self.secret_versions(secret).await?;
        // Where AWSPREVIOUS belongs: where it was before the run, unless someone moved it during
        // the run (siege's own write put it on `previous`; a revert cut short, on `new_version`).
        let previous_label = match version_with(&versions, PREVIOUS) {
            Some(v) if v != previous && v != new_version => Some(Some(v)),
            // Journals written before siege recorded AWSPREVIOUS have no such key: leave it be.
            _ => drift.awsprevious_version.clone(),
        };
        let drifted = match version_with(&versions, CURRENT).as_deref() {
            Some(c) if c == previous => false,
            Some(c) if c == new_version => true,
            other => {
                return Err(BackendError::Api(format!(
                    "secret {secret}: AWSCURRENT is on version {}, which siege did not write; not moving it back to {previous} (check the secret and the database password by hand)",
                    other.unwrap_or("<none>")
                )));
            }
        };
        if !versions.contains_key(new_version) {
            // Never written: neither the secret nor the database was changed.
            return Ok(());
        }
        // The database first: once AWSCURRENT is back, tasks that start read the old password,
        // which the database must accept by then. Journals written before siege rotated the
        // database too have no cluster: their database was never changed.
        if let Some(cluster) = drift.db_cluster.as_deref() {
            let password = self.password_of(secret, Version::Id(previous)).await?;
            self.set_master_password(cluster, &password, REVERT_APPLY_DEADLINE).await?;
        }
        if drifted {
            self.move_stage(secret, CURRENT, Some(previous), Some(new_version)).await?;
        }
        if let Some(to) = previous_label {
            let (_, versions) = self.secret_versions(secret).await?;
            if version_with(&versions, PREVIOUS).as_deref() == Some(new_version) {
                self.move_stage(secret, PREVIOUS, to.as_deref(), Some(new_version)).await?;
            }
        }
        // Only the revert that ends the drift knows which tasks started during it: those
        // created since it was prepared, up to now. A second revert leaves the tasks alone
        // (the first one's deployment is under way, and its tasks read the old password).
        if drifted && drift.db_cluster.is_some() {
            self.replace_drifted_tasks(drift).await?;
        }
        Ok(())
    }

    /// Replaces the service's tasks that started during the drift, if any: they read the
    /// drifted password, which the database no longer accepts.
    ///
    /// With a forced deployment (`UpdateService --force-new-deployment`) rather than `StopTask`
    /// on those tasks: after a redeploy during the drift (the remediation the seeds teach) they
    /// are the whole service, and stopping them all at once would be a full outage until ECS
    /// placed new ones; a deployment replaces them within the service's own minimum healthy
    /// percent and circuit breaker, and its new tasks read the restored secret. It replaces the
    /// tasks that hold the old password too, which is harmless. The revert starts it and does
    /// not wait for it to finish.
    async fn replace_drifted_tasks(&self, drift: &AwsSecretDrift) -> Result<(), BackendError> {
        let before = &drift.tasks_before;
        let since = drift.injected_at - CLOCK_MARGIN_S;
        let drifted: Vec<String> = self
            .live_tasks()
            .await?
            .into_iter()
            // Not running before the drift; and, where ECS says when it was created (some
            // emulators do not), created since.
            .filter(|(arn, created)| !before.contains(arn) && created.is_none_or(|c| c >= since))
            .map(|(arn, _)| arn)
            .collect();
        if drifted.is_empty() {
            return Ok(());
        }
        let previous = self.primary_deployment_id().await?;
        self.force_new_deployment(&previous).await?;
        Ok(())
    }

    /// `UpdateSecretVersionStage`: puts `stage` on `to` (if any) and takes it off `from` (if any).
    async fn move_stage(
        &self,
        secret: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), BackendError> {
        self.clients
            .secrets
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(stage)
            .set_move_to_version_id(to.map(str::to_string))
            .set_remove_from_version_id(from.map(str::to_string))
            .send()
            .await
            .map_err(|e| aws_error("secretsmanager:UpdateSecretVersionStage", e))?;
        Ok(())
    }
}

/// The version carrying the staging label `stage`.
fn version_with(versions: &HashMap<String, Vec<String>>, stage: &str) -> Option<String> {
    versions.iter().find(|(_, stages)| stages.iter().any(|s| s == stage)).map(|(id, _)| id.clone())
}

/// Refuses a secret whose AWSCURRENT or AWSPREVIOUS label is on more than one version: which one
/// the application reads, and which one a revert should go back to, is then anybody's guess
/// (and would differ between `siege run` and `siege recover`).
fn check_labels(secret: &str, versions: &HashMap<String, Vec<String>>) -> Result<(), BackendError> {
    for stage in [CURRENT, PREVIOUS] {
        let mut on: Vec<&str> = versions
            .iter()
            .filter(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
            .collect();
        if on.len() > 1 {
            on.sort_unstable();
            return Err(BackendError::Precondition(format!(
                "secret {secret}: {} versions carry {stage} ({}); siege does not act on an ambiguous label state; leave {stage} on one version (UpdateSecretVersionStage) and try again",
                on.len(),
                on.join(", ")
            )));
        }
    }
    Ok(())
}

/// The drifted value: the JSON object `old` with a new `password`; `None` when `old` is not a
/// JSON object with a string `password`.
fn drifted_value(old: &str, fresh: &str) -> Option<String> {
    let serde_json::Value::Object(mut map) = serde_json::from_str::<serde_json::Value>(old).ok()? else {
        return None;
    };
    if !map.get("password").is_some_and(serde_json::Value::is_string) {
        return None;
    }
    map.insert("password".into(), serde_json::Value::String(fresh.to_string()));
    Some(serde_json::Value::Object(map).to_string())
}

/// What siege reads of a database secret.
struct Fields {
    username: Option<String>,
    password: String,
}

/// The `username` and `password` of a JSON secret; `None` without a string `password`.
fn json_fields(value: &str) -> Option<Fields> {
    let v: serde_json::Value = serde_json::from_str(value).ok()?;
    let password = v.get("password")?.as_str()?.to_string();
    Some(Fields { username: v.get("username").and_then(|u| u.as_str()).map(str::to_string), password })
}

/// `n` random bytes from the kernel; falls back to the seeded generator with a fresh seed where
/// `/dev/urandom` cannot be read.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_ok();
    if !ok {
        let mut rng = Rng::new(Rng::fresh_seed());
        for b in &mut buf {
            *b = rng.next_u64() as u8;
        }
    }
    buf
}

fn random_text(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes(n).iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// A version id in UUID form, as Secrets Manager generates them.
fn new_version_id() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_secrets_keep_their_shape() {
        let v = drifted_value(r#"{"username":"app","password":"old","host":"db","port":5432}"#, "NEW").unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&v).unwrap();
        assert_eq!(parsed["username"], "app");
        assert_eq!((parsed["host"].as_str(), parsed["port"].as_i64()), (Some("db"), Some(5432)));
        assert_eq!(parsed["password"], "NEW");
        // Only a JSON object with a string password is rotated.
        assert_eq!(drifted_value("plain", "NEW"), None);
        assert_eq!(drifted_value(r#"{"token":"x"}"#, "NEW"), None);
        assert_eq!(drifted_value(r#"{"password":5}"#, "NEW"), None);
        let f = json_fields(r#"{"username":"app","password":"pw"}"#).unwrap();
        assert_eq!((f.username.as_deref(), f.password.as_str()), (Some("app"), "pw"));
        assert!(json_fields(r#"["password"]"#).is_none());
    }

    #[test]
    fn version_ids_look_like_uuids() {
        let a = new_version_id();
        assert_eq!(a.len(), 36);
        assert_ne!(a, new_version_id());
        assert_eq!(random_text(32).len(), 32);
    }

    #[test]
    fn a_label_on_two_versions_is_refused() {
        let labels = |pairs: &[(&str, &[&str])]| -> HashMap<String, Vec<String>> {
            pairs.iter().map(|(id, st)| (id.to_string(), st.iter().map(|s| s.to_string()).collect())).collect()
        };
        let fine = labels(&[("v1", &["AWSPREVIOUS"]), ("v2", &["AWSCURRENT", "custom"]), ("v3", &[])]);
        assert!(check_labels("s", &fine).is_ok());
        let two = labels(&[("v1", &["AWSCURRENT"]), ("v2", &["AWSCURRENT"]), ("v3", &["AWSPREVIOUS"])]);
        let e = check_labels("s", &two).unwrap_err();
        assert!(matches!(e, BackendError::Precondition(_)), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("2 versions carry AWSCURRENT (v1, v2)") && msg.contains("ambiguous"), "{msg}");
        let prev = labels(&[("v1", &["AWSPREVIOUS"]), ("v2", &["AWSCURRENT", "AWSPREVIOUS"])]);
        assert!(check_labels("s", &prev).unwrap_err().to_string().contains("AWSPREVIOUS"));
    }
}
