//! The daemon's bearer tokens: created at first start in `DATA/token` (the instructor's: every
//! call) and `DATA/participant-token` (a game day's participants: reads and marks only), mode
//! 0600, and reused afterwards; and the check of an `Authorization` header against one.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The token file's name in the data directory.
pub const TOKEN_FILE: &str = "token";

/// The participants' token file's name in the data directory.
pub const PARTICIPANT_TOKEN_FILE: &str = "participant-token";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot create the token file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the token file {path} is empty: remove it and a new token is created at the next start")]
    Empty { path: PathBuf },
}

/// The token in `data/token`, created (32 random bytes, hex) if there is none yet.
pub fn load_or_create(data: &Path) -> Result<String, TokenError> {
    load_or_create_file(&data.join(TOKEN_FILE))
}

/// The token in the file `path`, if it holds one; never creates it (for a client of a daemon).
pub fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// The token in the file `path`, created (32 random bytes, hex, mode 0600) if there is none yet.
pub fn load_or_create_file(path: &Path) -> Result<String, TokenError> {
    let path = path.to_path_buf();
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let t = s.trim().to_string();
            if t.is_empty() {
                return Err(TokenError::Empty { path });
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(source) => Err(TokenError::Read { path, source }),
    }
}

fn create(path: &Path) -> Result<String, TokenError> {
    let err = |source| TokenError::Write { path: path.to_path_buf(), source };
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(err)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // `create_new`: two daemons starting at once on one data directory never overwrite each
    // other's token; the one that lost reads the winner's.
    let mut f = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return load_or_create_file(path);
        }
        Err(e) => return Err(err(e)),
    };
    f.write_all(format!("{token}\n").as_bytes()).and_then(|_| f.sync_all()).map_err(err)?;
    Ok(token)
}

/// What an `Authorization` header says about the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No `Authorization: Bearer …` header (401).
    Missing,
    /// A bearer token, not the daemon's (403).
    Wrong,
}

/// Checks an `Authorization` header value against `token`, in constant time for equal lengths.
pub fn check(header: Option<&str>, token: &str) -> Verdict {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))) else {
        return Verdict::Missing;
    };
    let given = given.trim().as_bytes();
    let want = token.as_bytes();
    let same = given.len() == want.len() && given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same { Verdict::Allowed } else { Verdict::Wrong }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_token_is_created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(dir.path()).unwrap(), a);
        let p = load_or_create_file(&dir.path().join(PARTICIPANT_TOKEN_FILE)).unwrap();
        assert_eq!(p.len(), 64);
        assert_ne!(p, a);
        let mode = std::fs::metadata(dir.path().join(PARTICIPANT_TOKEN_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_header_is_allowed_missing_or_wrong() {
        assert_eq!(check(Some("Bearer abc"), "abc"), Verdict::Allowed);
        assert_eq!(check(None, "abc"), Verdict::Missing);
        assert_eq!(check(Some("Basic abc"), "abc"), Verdict::Missing);
        assert_eq!(check(Some("Bearer abd"), "abc"), Verdict::Wrong);
        assert_eq!(check(Some("Bearer ab"), "abc"), Verdict::Wrong);
    }
}
