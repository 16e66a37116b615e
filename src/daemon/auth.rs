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

/// How long a read token ([`read_token`]) is good for.
pub const READ_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// A token that reads one run only (its events and report files), for what a browser cannot send
/// a header with (an `EventSource`, a link): `rt1.RUN.ROLE.EXPIRY_MS.MAC`, the MAC an
/// HMAC-SHA-256 of the rest under the instructor's token. It carries the role of whoever asked
/// for it (so a participant's stream stays blind) and expires; the daemon's own tokens never go
/// into an address, where they would land in browser history and server logs.
pub fn read_token(secret: &str, run: &str, role: &str, expires_ms: u64) -> String {
    let payload = format!("rt1.{run}.{role}.{expires_ms}");
    let mac: String = hmac_sha256(secret.as_bytes(), payload.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!("{payload}.{mac}")
}

/// The role a read token grants for `run` at `now_ms`, if it is one of this daemon's, for that
/// run, and not expired.
pub fn check_read_token(secret: &str, token: &str, run: &str, now_ms: u64) -> Option<String> {
    let (payload, mac) = token.rsplit_once('.')?;
    let (rest, expires) = payload.rsplit_once('.')?;
    // Digits only, as written: `+2000` or `02000` are not the token that was issued.
    if expires.is_empty()
        || !expires.bytes().all(|b| b.is_ascii_digit())
        || (expires.len() > 1 && expires.starts_with('0'))
    {
        return None;
    }
    let (rest, role) = rest.rsplit_once('.')?;
    let given_run = rest.strip_prefix("rt1.")?;
    let want = read_token(secret, given_run, role, expires.parse().ok()?);
    let want_mac = want.rsplit_once('.')?.1;
    let same =
        mac.len() == want_mac.len() && mac.bytes().zip(want_mac.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    (same && given_run == run && now_ms < expires.parse::<u64>().ok()?).then(|| role.to_string())
}

/// HMAC-SHA-256 (RFC 2104).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    let outer = Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
    outer.into()
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

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 2.
        let mac = super::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn a_read_token_reads_its_run_only_until_it_expires() {
        let t = super::read_token("secret", "task-kill-1.x", "participant", 2_000);
        assert_eq!(super::check_read_token("secret", &t, "task-kill-1.x", 1_999).as_deref(), Some("participant"));
        assert_eq!(super::check_read_token("secret", &t, "task-kill-1.x", 2_000), None, "expired");
        assert_eq!(super::check_read_token("secret", &t, "other-run", 1_000), None, "another run");
        assert_eq!(super::check_read_token("other secret", &t, "task-kill-1.x", 1_000), None, "another daemon");
        let forged = t.replace(".participant.", ".instructor.");
        assert_eq!(super::check_read_token("secret", &forged, "task-kill-1.x", 1_000), None, "a changed role");
        assert_eq!(super::check_read_token("secret", "secret", "task-kill-1.x", 1_000), None);
        let padded = t.replace(".2000.", ".02000.");
        assert_eq!(
            super::check_read_token("secret", &padded, "task-kill-1.x", 1_000),
            None,
            "the expiry as issued only"
        );
    }
}
