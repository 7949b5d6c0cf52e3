//! The data directory and its lock file.
//!
//! Invariant: at most one process at a time opens a data directory. The
//! lock is an advisory `flock` on `<data>/LOCK`, released by the kernel when
//! the process dies, so a crash never leaves a stale lock behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the log directory inside the data directory.
pub const LOG_DIR: &str = "log";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirError {
    #[error("data directory {path} is in use by another process{holder}; stop it first")]
    Locked { path: PathBuf, holder: String },
    #[error("no data directory at {path}")]
    Missing { path: PathBuf },
    #[error("cannot open data directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// An open, locked data directory. Dropping it releases the lock.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed and takes its lock.
    pub fn open(path: impl AsRef<Path>) -> Result<DataDir, DirError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| DirError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&path).map_err(io_err)?;
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(LOCK_FILE))
            .map_err(io_err)?;
        if !lock_with_retry(&lock).map_err(io_err)? {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(DirError::Locked { path, holder });
        }
        lock.set_len(0).map_err(io_err)?;
        lock.seek(io::SeekFrom::Start(0)).map_err(io_err)?;
        write!(lock, "{}", std::process::id()).map_err(io_err)?;
        Ok(DataDir { path, _lock: lock })
    }

    /// Takes the lock of an existing data directory; fails if `path` is not
    /// a directory (tools must not create empty data directories by typo).
    pub fn open_existing(path: impl AsRef<Path>) -> Result<DataDir, DirError> {
        let path = path.as_ref();
        if !path.is_dir() {
            return Err(DirError::Missing {
                path: path.to_path_buf(),
            });
        }
        DataDir::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn log_dir(&self) -> PathBuf {
        self.path.join(LOG_DIR)
    }
}

/// How long a busy lock is retried before the directory is reported in use.
///
/// A process that just closed the directory may still be holding the lock
/// for a moment: between `fork` and `exec`, a child it spawns holds a copy
/// of every descriptor, the lock file's included.
pub const LOCK_RETRY: Duration = Duration::from_millis(500);

fn lock_with_retry(lock: &File) -> io::Result<bool> {
    let started = Instant::now();
    loop {
        if sys::lock_exclusive(lock)? {
            return Ok(true);
        }
        if started.elapsed() >= LOCK_RETRY {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// fsyncs a directory so that entries created or renamed in it are durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_with_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DataDir::open(tmp.path()).unwrap();
        // flock locks are per open file description, so a second open in
        // the same process conflicts just like another process would.
        let err = DataDir::open(tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("in use by another process"), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        drop(first);
        DataDir::open(tmp.path()).unwrap();
    }
}
