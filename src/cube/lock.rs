//! The reference lock: one process at a time moves a branch or tag of a local repository.
//!
//! Icechunk's local-filesystem storage has no conditional writes, so two processes that
//! commit at the same moment would both overwrite the branch reference and the later one
//! would silently drop the other's snapshot. Object stores (S3, GCS) reject the loser's
//! write instead and Icechunk rebases it. On a local directory tilecube gets the same
//! guarantee by holding an exclusive advisory lock on a file inside the repository for the
//! length of every reference update: the second committer waits, then finds the branch
//! moved and rebases onto it.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::{CubeError, RepoLocation};

/// The lock file's name inside a local repository.
pub const LOCK_FILE: &str = ".tilecube-refs.lock";

/// A held reference lock; released when dropped. Remote repositories need none and hold
/// nothing.
#[derive(Debug)]
pub struct RefLock {
    _file: Option<File>,
}

impl RefLock {
    /// Wait for the reference lock of `location` (returns at once for remote repositories).
    pub async fn acquire(location: &RepoLocation) -> Result<Self, CubeError> {
        let RepoLocation::Local(dir) = location else {
            return Ok(Self { _file: None });
        };
        let path = dir.join(LOCK_FILE);
        let file = tokio::task::spawn_blocking(move || lock_file(&path))
            .await
            .map_err(|e| location.error(format!("waiting for the commit lock: {e}")))?
            .map_err(|e| location.error(e))?;
        Ok(Self { _file: Some(file) })
    }
}

/// The lock file could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("commit lock {path}")]
struct LockError {
    path: String,
    #[source]
    source: std::io::Error,
}

fn lock_file(path: &Path) -> Result<File, LockError> {
    let err = |source| LockError {
        path: path.display().to_string(),
        source,
    };
    let file = open(path).map_err(err)?;
    file.lock().map_err(err)?;
    Ok(file)
}

/// Open the lock file for writing, creating it; on a repository that has become read-only,
/// an existing lock file still locks (and the commit then fails with the storage's error).
fn open(path: &Path) -> std::io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        Ok(f) => Ok(f),
        Err(e) => File::open(path).map_err(|_| e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let location = RepoLocation::Local(dir.path().to_path_buf());
        let first = RefLock::acquire(&location).await.unwrap();
        // Another handle on the lock file (as another process has) cannot take it.
        let other = File::open(dir.path().join(LOCK_FILE)).unwrap();
        assert!(
            matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "the lock is held exclusively"
        );
        let released = Arc::new(AtomicBool::new(false));
        let (r, l) = (Arc::clone(&released), location.clone());
        let waiter = tokio::spawn(async move {
            let _second = RefLock::acquire(&l).await.unwrap();
            r.load(Ordering::SeqCst)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "the second holder must wait");
        released.store(true, Ordering::SeqCst);
        drop(first);
        assert!(
            waiter.await.unwrap(),
            "the second holder got the lock only after the first let go"
        );
        // Released by every holder: the other handle can take it now.
        assert!(other.try_lock().is_ok(), "the lock is free again");
    }

    #[tokio::test]
    async fn remote_repositories_hold_no_file() {
        let location = RepoLocation::parse("s3://bucket/cube", &Default::default()).unwrap();
        let lock = RefLock::acquire(&location).await.unwrap();
        assert!(lock._file.is_none());
    }

    #[tokio::test]
    async fn a_missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let location = RepoLocation::Local(dir.path().join("no/such/dir"));
        let err = crate::error_chain(&RefLock::acquire(&location).await.unwrap_err());
        assert!(
            err.contains("commit lock") && err.contains("no/such/dir"),
            "{err}"
        );
    }
}
