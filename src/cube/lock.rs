//! The reference lock: one process at a time moves a branch or tag of a local repository.
//!
//! Icechunk's local-filesystem storage has no conditional writes, so two processes that
//! commit at the same moment would both overwrite the branch reference and the later one
//! would silently drop the other's snapshot. Object stores (S3, GCS) reject the loser's
//! write instead and Icechunk rebases it. On a local directory tilecube gets the same
//! guarantee by holding an exclusive advisory lock for the length of every reference update:
//! the second committer waits, then finds the branch moved and rebases onto it.
//!
//! Invariants:
//! - the lock is taken on the repository's directory itself, which no one deletes without
//!   deleting the repository: removing a file an operator takes for stale cannot let two
//!   committers in at once;
//! - the holder writes who it is (process, host, command, since when) into
//!   `.tilecube-refs.lock`, for people only: nothing reads it to decide anything;
//! - a command that waits more than [`WAIT_NOTICE`] says what it waits for and who holds it,
//!   and again every [`WAIT_REPEAT`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{CubeError, RepoLocation};

/// The file naming the lock's holder inside a local repository (for people: the lock itself
/// is on the directory).
pub const LOCK_FILE: &str = ".tilecube-refs.lock";

/// A wait this long is said.
pub const WAIT_NOTICE: Duration = Duration::from_millis(1500);

/// A wait that goes on is said again this often.
pub const WAIT_REPEAT: Duration = Duration::from_secs(15);

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
        let dir = dir.clone();
        let shown = location.to_string();
        let file = tokio::task::spawn_blocking(move || lock_dir(&dir, &shown))
            .await
            .map_err(|source| location.error(LockWaitError { source }))?
            .map_err(|e| location.error(e))?;
        Ok(Self { _file: Some(file) })
    }
}

/// The wait for the lock ended without its result (the waiting task panicked).
#[derive(Debug, thiserror::Error)]
#[error("waiting for the commit lock")]
struct LockWaitError {
    #[source]
    source: tokio::task::JoinError,
}

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("commit lock {path}")]
struct LockError {
    path: String,
    #[source]
    source: std::io::Error,
}

fn lock_dir(dir: &Path, shown: &str) -> Result<File, LockError> {
    let err = |source| LockError {
        path: dir.join(LOCK_FILE).display().to_string(),
        source,
    };
    let handle = File::open(dir).map_err(err)?;
    let started = Instant::now();
    let mut said = None::<Instant>;
    loop {
        match handle.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        let waited = started.elapsed();
        let due = match said {
            None => waited >= WAIT_NOTICE,
            Some(t) => t.elapsed() >= WAIT_REPEAT,
        };
        if due {
            let holder = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap_or_default();
            let holder = holder.trim();
            crate::notice::notice(&format!(
                "waiting {:.1} s for the commit lock of {shown}: held by {}",
                waited.as_secs_f64(),
                if holder.is_empty() {
                    "another process (it did not say which)".to_string()
                } else {
                    holder.to_string()
                }
            ));
            said = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    note_holder(&dir.join(LOCK_FILE));
    Ok(handle)
}

/// Write who holds the lock into the lock file (best effort: a read-only repository keeps
/// the old text, and the commit then fails with the storage's error).
fn note_holder(path: &Path) {
    let text = format!(
        "pid {} on {} ({}), since {}\n",
        std::process::id(),
        super::writers::host_name(),
        crate::notice::command(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    if let Ok(mut f) = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
    {
        let _ = f.write_all(text.as_bytes());
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
        // Another handle on the repository's directory (as another process has) cannot take
        // it, even once the holder's note is deleted.
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        let other = File::open(dir.path()).unwrap();
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
