//! The lab's secret store (Secrets Manager's role): the database password with a current and a
//! previous version. Tasks read the current version when they start; passwords never leave the
//! supervisor except into a task's environment and the database nodes' stdin.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::proc::random_hex;

#[derive(Debug)]
struct Inner {
    versions: Vec<(u32, String)>,
    current: u32,
    previous: Option<u32>,
}

/// The secret store.
#[derive(Debug)]
pub struct SecretStore {
    inner: Mutex<Inner>,
}

/// What status shows of the secret: versions only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretView {
    pub name: String,
    pub current_version: u32,
    pub previous_version: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret version {0} does not exist")]
    UnknownVersion(u32),
    #[error("secret store lock poisoned")]
    Poisoned,
}

pub const SECRET_NAME: &str = "lab/db-password";

impl Default for SecretStore {
    fn default() -> Self {
        SecretStore { inner: Mutex::new(Inner { versions: vec![(1, random_hex())], current: 1, previous: None }) }
    }
}

impl SecretStore {
    /// (version, password) of the current version.
    pub fn current(&self) -> Result<(u32, String), SecretError> {
        let g = self.inner.lock().map_err(|_| SecretError::Poisoned)?;
        let pw = g.versions.iter().find(|(v, _)| *v == g.current).map(|(_, p)| p.clone()).unwrap_or_default();
        Ok((g.current, pw))
    }

    /// Creates a new version and makes it current: (previous version, new version, new password).
    pub fn rotate(&self) -> Result<(u32, u32, String), SecretError> {
        let mut g = self.inner.lock().map_err(|_| SecretError::Poisoned)?;
        let new = g.versions.iter().map(|(v, _)| *v).max().unwrap_or(0) + 1;
        let pw = random_hex();
        g.versions.push((new, pw.clone()));
        let prev = g.current;
        g.previous = Some(prev);
        g.current = new;
        Ok((prev, new, pw))
    }

    /// Makes `version` current again. `Ok(None)` when it already is (idempotent), else its password.
    pub fn restore(&self, version: u32) -> Result<Option<String>, SecretError> {
        let mut g = self.inner.lock().map_err(|_| SecretError::Poisoned)?;
        if g.current == version {
            return Ok(None);
        }
        let pw = g
            .versions
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, p)| p.clone())
            .ok_or(SecretError::UnknownVersion(version))?;
        g.previous = Some(g.current);
        g.current = version;
        Ok(Some(pw))
    }

    pub fn view(&self) -> SecretView {
        let (current, previous) = self.inner.lock().map(|g| (g.current, g.previous)).unwrap_or((0, None));
        SecretView { name: SECRET_NAME.into(), current_version: current, previous_version: previous }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_then_restore_is_idempotent() {
        let s = SecretStore::default();
        let (v1, p1) = s.current().unwrap();
        let (prev, v2, p2) = s.rotate().unwrap();
        assert_eq!((prev, v2), (v1, v1 + 1));
        assert_ne!(p1, p2);
        assert_eq!(s.restore(v1).unwrap(), Some(p1.clone()));
        assert_eq!(s.restore(v1).unwrap(), None);
        assert_eq!(s.current().unwrap(), (v1, p1));
        assert_eq!(s.view().previous_version, Some(v2));
        assert!(s.restore(99).is_err());
    }
}
