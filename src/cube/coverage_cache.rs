//! The coverage cache: what a snapshot holds, kept on disk under the user cache dir, keyed
//! by repository and snapshot id.
//!
//! Invariants:
//! - snapshots never change, so an entry never goes stale: it is written once and only read
//!   after that; a cached snapshot is opened, browsed and diffed without a request;
//! - an entry is written atomically (a temporary file renamed over the name), so a reader
//!   sees a whole entry or none; an entry that cannot be read is a miss, never an error;
//! - what a listing of the manifest objects found (the manifests lost from storage, and when)
//!   is kept per repository (`manifests-listed.json`): a lost manifest is rare, so `status`
//!   shows what the last listing (`verify`, `repair`, `status --deep`, a write's lookups)
//!   found instead of listing every manifest object each time; a listing replaces it, a
//!   write's lookups add to it;
//! - the key is a hash of the repository's name (`RepoLocation::key`), which holds no
//!   credential; entries hold tile names, states and snapshot ids only.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Coverage, TileState};
use crate::grid::TileName;

/// Format of an entry; entries of another version are misses.
const FORMAT: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    tiles: Vec<EntryTile>,
}

#[derive(Serialize, Deserialize)]
struct EntryTile {
    year: i32,
    tile: TileName,
    #[serde(flatten)]
    state: TileState,
    /// The source record of the tile's write, if it noted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

/// What the last listing of a repository's manifest objects found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestsListed {
    /// When it was listed (RFC 3339).
    pub at: String,
    /// The manifests found lost from storage (ids), among those the listing checked.
    pub lost: Vec<String>,
}

/// The cache directory of one repository.
#[derive(Debug, Clone)]
pub struct CoverageCache {
    dir: Option<PathBuf>,
}

/// A stable 64-bit FNV-1a hash, so the same repository maps to the same folder across runs
/// and builds.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl CoverageCache {
    /// The cache of a repository under `root`.
    pub fn at(root: PathBuf, repo_key: &str) -> Self {
        Self {
            dir: Some(
                root.join("coverage")
                    .join(format!("{:016x}", fnv1a(repo_key))),
            ),
        }
    }

    /// A cache that keeps nothing.
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    fn path(&self, snapshot: &str) -> Option<PathBuf> {
        // Snapshot ids are base32; anything else is not a name to put on disk.
        if snapshot.is_empty() || !snapshot.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        Some(self.dir.as_ref()?.join(format!("{snapshot}.json")))
    }

    /// The written tiles `verify` (or `repair`) found holes in, in a snapshot it checked: a
    /// snapshot never changes, so what was found in it holds for good (until a later commit,
    /// which is another snapshot).
    pub fn holes(&self, snapshot: &str) -> Option<Vec<(i32, TileName)>> {
        let path = self.path(snapshot)?.with_extension("holes.json");
        let text = std::fs::read(path).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Keep what [`CoverageCache::holes`] gives (written atomically, like an entry).
    pub fn put_holes(&self, snapshot: &str, tiles: &[(i32, TileName)]) {
        let Some(path) = self.path(snapshot).map(|p| p.with_extension("holes.json")) else {
            return;
        };
        let Ok(bytes) = serde_json::to_vec(tiles) else {
            return;
        };
        let Some(dir) = path.parent() else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let tmp = dir.join(format!(".{snapshot}.{}.holes.tmp", std::process::id()));
        if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// What the last listing of the manifest objects found, if one was kept.
    pub fn manifests_listed(&self) -> Option<ManifestsListed> {
        let path = self.dir.as_ref()?.join("manifests-listed.json");
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Keep what a listing of the manifest objects found (replacing what was kept).
    pub fn put_manifests_listed(&self, listed: &ManifestsListed) {
        let Some(dir) = self.dir.as_ref() else { return };
        let Ok(bytes) = serde_json::to_vec(listed) else {
            return;
        };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let tmp = dir.join(format!(
            ".manifests-listed.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        if std::fs::write(&tmp, bytes).is_ok()
            && std::fs::rename(&tmp, dir.join("manifests-listed.json")).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Add manifests found lost by lookups (a write's) to what the last listing found.
    pub fn add_lost_manifests(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let mut listed = self.manifests_listed().unwrap_or_default();
        for id in ids {
            if !listed.lost.contains(id) {
                listed.lost.push(id.clone());
            }
        }
        if listed.at.is_empty() {
            listed.at = chrono::Utc::now().to_rfc3339();
        }
        self.put_manifests_listed(&listed);
    }

    /// The coverage of a snapshot, if cached.
    pub fn get(&self, snapshot: &str) -> Option<Coverage> {
        let text = std::fs::read(self.path(snapshot)?).ok()?;
        let entry: Entry = serde_json::from_slice(&text).ok()?;
        (entry.format == FORMAT).then(|| {
            let mut coverage = Coverage::default();
            for t in entry.tiles {
                if let Some(s) = t.source {
                    coverage.sources.insert((t.year, t.tile), s);
                }
                coverage.tiles.insert((t.year, t.tile), t.state);
            }
            coverage
        })
    }

    /// Keep the coverage of a snapshot. Failing to write is not an error: the next open
    /// reads the snapshot again.
    pub fn put(&self, snapshot: &str, coverage: &Coverage) {
        let Some(path) = self.path(snapshot) else {
            return;
        };
        let entry = Entry {
            format: FORMAT,
            tiles: coverage
                .tiles
                .iter()
                .map(|(&(year, tile), state)| EntryTile {
                    year,
                    tile,
                    state: state.clone(),
                    source: coverage.sources.get(&(year, tile)).cloned(),
                })
                .collect(),
        };
        let Ok(bytes) = serde_json::to_vec(&entry) else {
            return;
        };
        let Some(dir) = path.parent() else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let tmp = dir.join(format!(
            ".{snapshot}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_listing_is_kept_replaced_and_added_to() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CoverageCache::at(dir.path().to_path_buf(), "repo");
        assert_eq!(cache.manifests_listed(), None);
        let listed = ManifestsListed {
            at: "2026-01-01T00:00:00+00:00".into(),
            lost: vec!["M1".into()],
        };
        cache.put_manifests_listed(&listed);
        assert_eq!(cache.manifests_listed(), Some(listed.clone()));
        cache.add_lost_manifests(&["M2".into(), "M1".into()]);
        let got = cache.manifests_listed().unwrap();
        assert_eq!(got.lost, vec!["M1".to_string(), "M2".to_string()]);
        assert_eq!(got.at, listed.at);
        cache.put_manifests_listed(&ManifestsListed {
            at: "2026-01-02T00:00:00+00:00".into(),
            lost: vec![],
        });
        assert!(cache.manifests_listed().unwrap().lost.is_empty());
        assert_eq!(CoverageCache::disabled().manifests_listed(), None);
    }

    fn sample() -> Coverage {
        let t = |s: &str| s.parse::<TileName>().unwrap();
        Coverage {
            tiles: [
                (
                    (2000, t("70N_180W")),
                    TileState::Written {
                        chunks: 1600,
                        snapshot: "ABC".into(),
                    },
                ),
                (
                    (2005, t("00N_000E")),
                    TileState::Incomplete {
                        recorded: 4,
                        present: 2,
                        snapshot: "DEF".into(),
                    },
                ),
                ((2020, t("10S_020W")), TileState::Unrecorded { present: 3 }),
            ]
            .into(),
            sources: [((2000, t("70N_180W")), "1462/etag:\"abc\"".to_string())].into(),
        }
    }

    #[test]
    fn entries_round_trip_and_are_kept_per_repository() {
        let dir = tempfile::tempdir().unwrap();
        let a = CoverageCache::at(dir.path().into(), "s3://bucket/a");
        let b = CoverageCache::at(dir.path().into(), "s3://bucket/b");
        assert!(a.get("SNAP1").is_none());
        a.put("SNAP1", &sample());
        assert_eq!(a.get("SNAP1").unwrap(), sample(), "states and sources");
        assert!(b.get("SNAP1").is_none(), "another repository's entry");
    }

    #[test]
    fn unreadable_entries_and_odd_names_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let c = CoverageCache::at(dir.path().into(), "file:///cube");
        c.put("SNAP1", &sample());
        let path = c.path("SNAP1").unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        assert!(c.get("SNAP1").is_none());
        c.put("../escape", &sample());
        assert!(c.get("../escape").is_none());
        assert!(!dir.path().join("coverage").join("escape.json").exists());
        let off = CoverageCache::disabled();
        off.put("SNAP1", &sample());
        assert!(off.get("SNAP1").is_none());
    }
}
