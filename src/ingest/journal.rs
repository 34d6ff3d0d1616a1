//! The failure journal: failed tiles (name, year, reason, attempts, time) kept under the user
//! data dir, one file per repository, so failures survive restarts until the tile is written.

use std::collections::BTreeMap;
use std::path::PathBuf;

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

fn file_for(repo_key: &str) -> PathBuf {
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
    crate::config::data_dir()
        .join("journal")
        .join(format!("{safe}.json"))
}

impl Journal {
    /// The journal of a repository (empty if none was kept).
    pub fn load(repo_key: &str) -> Self {
        std::fs::read(file_for(repo_key))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| Self {
                repo: repo_key.to_string(),
                failed: Vec::new(),
            })
    }

    /// Save atomically (write then rename).
    pub fn save(&self) -> std::io::Result<()> {
        let path = file_for(&self.repo);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, path)
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

    /// A tile was written: forget its failure.
    /// Forget a tile's failure; whether there was one.
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
}
