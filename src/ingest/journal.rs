//! The failure journal: failed tiles (name, year, reason, attempts, time) kept in a directory
//! the face names (the user data dir's `journal/`), one file per cube (its key), so failures
//! survive restarts until the tile is written.
//!
//! Invariants: the journal is fed by the ingest's own events (`JournalSink`, attached to an
//! [`super::EventSink`]), so both faces keep it the same way; it is saved atomically (write,
//! then rename) and only when an entry changes; a file that cannot be parsed is never
//! overwritten: it is moved aside (`….corrupt-<time>.json`) and reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::grid::TileName;

/// One failed tile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub year: i32,
    pub tile: TileName,
    pub reason: String,
    pub attempts: u32,
    pub time: DateTime<Utc>,
}

/// The failures of one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub repo: String,
    pub failed: Vec<JournalEntry>,
}

/// Trouble with a journal file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failure journal {path} cannot be read; kept aside as {kept}")]
    Corrupt {
        path: String,
        kept: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failure journal {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The journal file of a cube (its key) in the journal directory `dir`.
pub fn journal_path(dir: &Path, repo_key: &str) -> PathBuf {
    let safe: String = repo_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe}.json"))
}

/// A name for an unreadable journal next to it that no earlier one holds.
fn aside_name(path: &std::path::Path) -> PathBuf {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3f");
    (0u32..)
        .map(|n| match n {
            0 => path.with_extension(format!("corrupt-{stamp}.json")),
            n => path.with_extension(format!("corrupt-{stamp}-{n}.json")),
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| path.with_extension("corrupt.json"))
}

impl Journal {
    fn empty(repo_key: &str) -> Self {
        Self {
            repo: repo_key.to_string(),
            failed: Vec::new(),
        }
    }

    /// The journal of a repository (empty if none was kept). A file that cannot be parsed
    /// is moved aside and reported; the journal then starts empty.
    pub fn load(dir: &Path, repo_key: &str) -> Result<Self, JournalError> {
        let path = journal_path(dir, repo_key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::empty(repo_key));
            }
            Err(source) => {
                return Err(JournalError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        match serde_json::from_slice::<Self>(&bytes) {
            Ok(j) => Ok(j),
            Err(source) => {
                let kept = aside_name(&path);
                std::fs::rename(&path, &kept).map_err(|source| JournalError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                Err(JournalError::Corrupt {
                    path: path.display().to_string(),
                    kept: kept.display().to_string(),
                    source,
                })
            }
        }
    }

    /// [`Journal::load`], reporting trouble through `warn` and going on with what there is.
    pub fn load_or_report(dir: &Path, repo_key: &str, warn: impl FnOnce(String)) -> Self {
        match Self::load(dir, repo_key) {
            Ok(j) => j,
            Err(e) => {
                warn(crate::error_chain(&e));
                Self::empty(repo_key)
            }
        }
    }

    /// Save atomically (write then rename) in the journal directory `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), JournalError> {
        let path = journal_path(dir, &self.repo);
        let io = |source| JournalError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| io(e.into()))?;
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(tmp, &path).map_err(io)
    }

    /// Record a failure, counting attempts across runs.
    pub fn fail(&mut self, year: i32, tile: TileName, reason: &str, attempts: u32) {
        let before = self
            .failed
            .iter()
            .find(|e| e.year == year && e.tile == tile)
            .map(|e| e.attempts)
            .unwrap_or(0);
        self.failed.retain(|e| !(e.year == year && e.tile == tile));
        self.failed.push(JournalEntry {
            year,
            tile,
            reason: reason.to_string(),
            attempts: before + attempts,
            time: Utc::now(),
        });
    }

    /// Forget a tile's failure (it was written); whether there was one.
    pub fn clear(&mut self, year: i32, tile: TileName) -> bool {
        let before = self.failed.len();
        self.failed.retain(|e| !(e.year == year && e.tile == tile));
        self.failed.len() != before
    }

    /// Failures by (year, tile).
    pub fn by_tile(&self) -> BTreeMap<(i32, TileName), &JournalEntry> {
        self.failed.iter().map(|e| ((e.year, e.tile), e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_accumulate_attempts_and_clear_on_success() {
        let t: TileName = "00N_000E".parse().unwrap();
        let mut j = Journal {
            repo: "k".into(),
            failed: vec![],
        };
        j.fail(2000, t, "timeout", 3);
        j.fail(2000, t, "timeout again", 2);
        assert_eq!(j.failed.len(), 1);
        assert_eq!(j.failed[0].attempts, 5);
        assert_eq!(j.failed[0].reason, "timeout again");
        assert!(j.clear(2000, t), "the failure was there");
        assert!(j.failed.is_empty());
        assert!(!j.clear(2000, t), "nothing left to clear");
    }

    #[test]
    fn a_corrupt_journal_is_reported_and_kept_aside_never_overwritten() {
        use crate::ingest::events::{Event, JournalSink};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let key = "file:///some/repo";
        let path = journal_path(&dir, key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{ this is not json").unwrap();

        let err = Journal::load(&dir, key).unwrap_err();
        let JournalError::Corrupt { kept, .. } = &err else {
            panic!("expected a corrupt journal, got {err}");
        };
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            std::fs::read(kept).unwrap(),
            b"{ this is not json",
            "the unreadable file is kept as it was"
        );
        assert!(!path.exists(), "moved aside, not left to be overwritten");

        // The sink reports it too, and then keeps a fresh journal.
        std::fs::write(&path, b"[1, 2").unwrap();
        let sink = JournalSink::new(dir.clone(), key);
        let t: TileName = "10N_010E".parse().unwrap();
        let warning = sink.record(&Event::TileFailed {
            year: 2000,
            tile: t,
            error: "bad".into(),
            transient: false,
            attempts: 1,
        });
        assert!(
            warning.as_deref().is_some_and(|w| w.contains("kept aside")),
            "{warning:?}"
        );
        let set_aside: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .collect();
        assert_eq!(set_aside.len(), 2, "both unreadable files kept");
        let j = Journal::load(&dir, key).unwrap();
        assert_eq!(j.failed.len(), 1);
        assert_eq!(j.failed[0].tile, t);
    }
}
