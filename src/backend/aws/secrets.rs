//! Secrets Manager: secret-drift. `PutSecretValue` writes a new random value as a new version
//! (its id chosen in `prepare` and journaled), which becomes AWSCURRENT; the revert moves
//! AWSCURRENT back to the version that held it before, and AWSPREVIOUS back to where it was
//! (Secrets Manager moves AWSPREVIOUS along with every move of AWSCURRENT, which would leave it
//! on siege's random value and the version it used to label unlabelled, that is deprecated).
//!
//! A JSON secret keeps its shape: only its `password` field changes, so that applications still
//! parse it and fail the way a real rotation would make them fail. Secret values are never
//! logged, journaled or reported.

use std::collections::HashMap;
use std::io::Read;

use super::error::aws_error;
use super::{AwsBackend, undo_str};
use crate::backend::{BackendError, Injected, Resolved};
use crate::scenario::Fault;
use crate::util::Rng;

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";

impl AwsBackend {
    /// The secret a secret-drift acts on; only the one the target names.
    pub(super) fn secret_name(&self, fault: &Fault) -> Result<&str, BackendError> {
        self.target
            .secret
            .as_deref()
            .ok_or_else(|| BackendError::Precondition(format!("fault `{}` needs `target.aws.secret`", fault.name)))
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

    pub(super) async fn resolve_secret(&self, fault: &Fault) -> Result<Resolved, BackendError> {
        let name = self.secret_name(fault)?;
        let (arn, versions) = self.secret_versions(name).await?;
        let current = version_with(&versions, CURRENT)
            .ok_or_else(|| BackendError::Precondition(format!("secret {name} has no AWSCURRENT version")))?;
        Ok(Resolved {
            summary: format!(
                "put a new random value into secret {name} (AWSCURRENT now version {current}); the run's end moves AWSCURRENT back to {current}"
            ),
            targets: vec![arn],
        })
    }

    pub(super) async fn prepare_secret(&self, resolved: &Resolved) -> Result<serde_json::Value, BackendError> {
        let secret =
            resolved.targets.first().ok_or_else(|| BackendError::Api("secret-drift resolved to no secret".into()))?;
        let (arn, versions) = self.secret_versions(secret).await?;
        let previous = version_with(&versions, CURRENT)
            .ok_or_else(|| BackendError::Precondition(format!("secret {secret} has no AWSCURRENT version")))?;
        Ok(serde_json::json!({
            "secret": arn,
            "previous_version": previous,
            // `null` when no version had it.
            "awsprevious_version": version_with(&versions, PREVIOUS),
            "new_version": new_version_id(),
        }))
    }

    /// `PutSecretValue` with a fresh random value under the journaled version id.
    pub(super) async fn drift_secret(&self, injected: &Injected) -> Result<(), BackendError> {
        let secret = undo_str(injected, "secret")?;
        let new_version = undo_str(injected, "new_version")?;
        let (_, versions) = self.secret_versions(secret).await?;
        if versions.contains_key(new_version) {
            return Ok(()); // Already written by an earlier attempt.
        }
        let out = self
            .clients
            .secrets
            .get_secret_value()
            .secret_id(secret)
            .version_stage(CURRENT)
            .send()
            .await
            .map_err(|e| aws_error("secretsmanager:GetSecretValue", e))?;
        let Some(old) = out.secret_string() else {
            return Err(BackendError::Precondition(format!(
                "secret {secret} holds binary data; secret-drift changes string secrets only"
            )));
        };
        let password = random_text(32);
        let value = drifted_value(old, &password);
        // Neither the value siege read nor the one it writes may reach a report or a log line.
        for secret_value in [old, value.as_str(), password.as_str()] {
            self.secrets.register(secret_value);
        }
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(old)
            && let Some(serde_json::Value::String(pw)) = m.get("password")
        {
            self.secrets.register(pw);
        }
        self.clients
            .secrets
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(new_version)
            .secret_string(value)
            .send()
            .await
            .map_err(|e| aws_error("secretsmanager:PutSecretValue", e))?;
        Ok(())
    }

    /// Moves AWSCURRENT back to the previous version, then AWSPREVIOUS back to the version that
    /// had it. Nothing to do for a label already there; refuses when AWSCURRENT is on a version
    /// siege did not write (someone rotated since). AWSPREVIOUS is only ever moved off siege's
    /// own version, and back to where someone else put it during the run, if someone did.
    pub(super) async fn revert_secret(&self, injected: &Injected) -> Result<(), BackendError> {
        let secret = undo_str(injected, "secret")?;
        let previous = undo_str(injected, "previous_version")?;
        let new_version = undo_str(injected, "new_version")?;
        let (_, versions) = self.secret_versions(secret).await?;
        // Where AWSPREVIOUS belongs: where it was before the run, unless someone moved it during
        // the run (siege's own write put it on `previous`; a revert cut short, on `new_version`).
        let previous_label = match version_with(&versions, PREVIOUS) {
            Some(v) if v != previous && v != new_version => Some(Some(v)),
            // Journals written before siege recorded AWSPREVIOUS have no such key: leave it be.
            _ => injected.undo.get("awsprevious_version").map(|v| v.as_str().map(str::to_string)),
        };
        match version_with(&versions, CURRENT).as_deref() {
            Some(c) if c == previous => {}
            Some(c) if c == new_version => {
                self.move_stage(secret, CURRENT, Some(previous), Some(new_version)).await?;
            }
            other => {
                return Err(BackendError::Api(format!(
                    "secret {secret}: AWSCURRENT is on version {}, which siege did not write; not moving it back to {previous} (check the secret by hand)",
                    other.unwrap_or("<none>")
                )));
            }
        }
        let Some(to) = previous_label else { return Ok(()) };
        let (_, versions) = self.secret_versions(secret).await?;
        if version_with(&versions, PREVIOUS).as_deref() == Some(new_version) {
            self.move_stage(secret, PREVIOUS, to.as_deref(), Some(new_version)).await?;
        }
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

/// The drifted value: a JSON object keeps its shape with a new `password`; anything else is
/// replaced whole.
fn drifted_value(old: &str, fresh: &str) -> String {
    if let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(old)
        && map.contains_key("password")
    {
        map.insert("password".into(), serde_json::Value::String(fresh.to_string()));
        return serde_json::Value::Object(map).to_string();
    }
    fresh.to_string()
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
        let v = drifted_value(r#"{"username":"app","password":"old"}"#, "NEW");
        let parsed: serde_json::Value = serde_json::from_str(&v).unwrap();
        assert_eq!(parsed["username"], "app");
        assert_eq!(parsed["password"], "NEW");
        assert_eq!(drifted_value("plain", "NEW"), "NEW");
        assert_eq!(drifted_value(r#"{"token":"x"}"#, "NEW"), "NEW");
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
