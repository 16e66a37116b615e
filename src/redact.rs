//! Keeps secret values out of every output. The run record names secrets by id only, but text
//! that reaches it from outside (a service event, a process's stderr quoted in a note) could
//! carry a value. Whoever handles a secret value (a backend rotating a password) registers it in
//! the run's [`Secrets`]; every writer passes its output through [`redact`] with their values.

use std::sync::{Arc, Mutex, PoisonError};

/// What a secret value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The secret values one run (or one daemon) has handled; cheap to clone, shared by its clones.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Arc<Mutex<Vec<String>>>);

/// Replaces every occurrence of each secret in `text` with [`REDACTED`]. Longer secrets are
/// replaced first, so that a secret containing another one is not left half visible. Empty
/// strings are ignored.
pub fn redact<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let mut sorted: Vec<&str> = secrets.iter().map(AsRef::as_ref).filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in sorted {
        if out.contains(s) {
            out = out.replace(s, REDACTED);
        }
    }
    out
}

impl Secrets {
    /// Registers a secret value: nothing written through these secrets afterwards contains it.
    pub fn register(&self, value: &str) {
        if value.is_empty() {
            return;
        }
        // A poisoned lock still holds a valid list: a panic elsewhere must not disable redaction.
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !list.iter().any(|v| v == value) {
            list.push(value.to_string());
        }
    }

    /// The secret values registered so far.
    pub fn values(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Redacts every string inside a JSON value (keys included), so that a serialised record stays
/// valid JSON however a secret would have been escaped.
pub(crate) fn redact_json<S: AsRef<str>>(value: &mut serde_json::Value, secrets: &[S]) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            let r = redact(s, secrets);
            if r != *s {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_json(v, secrets)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut v) in old {
                redact_json(&mut v, secrets);
                map.insert(redact(&k, secrets), v);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let secrets = ["hunter2", "hunter2-rotated", ""];
        assert_eq!(
            redact("old hunter2, new hunter2-rotated; hunter2 again", &secrets),
            "old [redacted], new [redacted]; [redacted] again"
        );
        assert_eq!(redact("nothing here", &secrets), "nothing here");
    }

    #[test]
    fn json_stays_valid_when_a_secret_contains_quotes() {
        let secret = "pa\"ss\\word";
        let mut v = serde_json::json!({ "notes": [format!("connect failed with {secret}")], "n": 1 });
        redact_json(&mut v, &[secret]);
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains("pa\\\"ss"), "{text}");
        assert_eq!(v["notes"][0], "connect failed with [redacted]");
    }

    #[test]
    fn registered_values_are_kept_once_and_shared_by_clones() {
        let secrets = Secrets::default();
        let other = secrets.clone();
        secrets.register("s3cr3t-registry-test");
        other.register("s3cr3t-registry-test");
        secrets.register("");
        let list = other.values();
        assert_eq!(list.iter().filter(|v| *v == "s3cr3t-registry-test").count(), 1);
        assert!(!list.iter().any(String::is_empty));
    }
}
