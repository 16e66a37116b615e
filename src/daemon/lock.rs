//! One daemon per data directory. Two daemons on one history would both fire every schedule,
//! mark each other's live runs `interrupted` at start and not see each other's pauses, so the
//! daemon holds an exclusive `flock` on `DATA/daemon.lock` for as long as it runs (the kernel
//! releases it when the process dies, even by `kill -9`), and writes into the file who holds it.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "daemon.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the data directory {} is in use by another siege daemon ({holder}); stop it, or give this one \
         another --data",
        .dir.display()
    )]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock the data directory ({}): {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The lock on a data directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataLock {
    file: File,
}

impl DataLock {
    /// Takes the lock of `dir`, or says who holds it.
    pub fn take(dir: &Path) -> Result<DataLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(e));
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim() {
                "" => "it has not said where it listens yet".to_string(),
                t => t.lines().collect::<Vec<_>>().join(", "),
            };
            return Err(LockError::Held { dir: dir.to_path_buf(), holder });
        }
        let mut lock = DataLock { file };
        lock.describe(&format!("pid {}", std::process::id())).map_err(io)?;
        Ok(lock)
    }

    /// Says in the lock file who holds it (`pid 1234, listening on http://127.0.0.1:7878`).
    pub fn describe(&mut self, holder: &str) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(format!("{holder}\n").as_bytes())?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = DataLock::take(dir.path()).unwrap();
        first.describe("pid 42, listening on http://127.0.0.1:9").unwrap();
        let e = DataLock::take(dir.path()).unwrap_err().to_string();
        assert!(e.contains("pid 42, listening on http://127.0.0.1:9"), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        drop(first);
        DataLock::take(dir.path()).expect("free once the holder is gone");
    }
}
