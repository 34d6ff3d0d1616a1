//! Coverage: which tiles a snapshot holds, read from the repository alone.
//!
//! Two witnesses are cross-checked: the tiles the commits of the ancestry recorded writing
//! (snapshot properties) and the chunks the snapshot references. A recorded tile is
//! written when its chunks are there (a tile that is all fill value stores none); chunks in a
//! region no commit recorded are reported as unrecorded data.
//!
//! Invariants (costs follow the tiles, never the chunks):
//! - the chunks a snapshot references are counted from the snapshot file itself: its manifest
//!   list holds one manifest per tile and year (the cube's manifest split) with its number of
//!   chunk references, so coverage costs one snapshot read and O(manifests), whatever the
//!   number of chunks; only a repository whose manifests do not follow the tiles falls back
//!   to listing chunk coordinates;
//! - the recorded tiles are read from the ancestry only down to the newest snapshot whose
//!   coverage is cached (or the layout commit), and every coverage computed is cached by
//!   snapshot id ([`CoverageCache`]): a snapshot seen before costs no request, and a refresh
//!   after a commit reads only the commits since.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use icechunk::format::IcechunkFormatErrorKind;
use icechunk::format::snapshot::NodeData;
use icechunk::format::{Path, SnapshotId};
use icechunk::repository::VersionInfo;
use serde::{Deserialize, Serialize};

use super::{Commit, Cube, CubeError, LayoutError, TileKey};
use crate::grid::TileName;

pub use super::coverage_cache::{CoverageCache, ManifestsListed};

/// What the repository says of one tile of one year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TileState {
    /// Recorded by a commit and its chunks are present.
    Written { chunks: u64, snapshot: String },
    /// Recorded by a commit, but its chunks are not all there.
    Incomplete {
        recorded: u64,
        present: u64,
        snapshot: String,
    },
    /// Chunks present that no commit recorded.
    Unrecorded { present: u64 },
}

impl TileState {
    /// What a commit recorded of this tile (chunks, snapshot), if any did.
    fn recorded(&self) -> Option<(u64, String)> {
        match self {
            Self::Written { chunks, snapshot } => Some((*chunks, snapshot.clone())),
            Self::Incomplete {
                recorded, snapshot, ..
            } => Some((*recorded, snapshot.clone())),
            Self::Unrecorded { .. } => None,
        }
    }
}

/// The tiles a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    pub tiles: BTreeMap<(i32, TileName), TileState>,
    /// What the write that recorded each tile read it from (a [`crate::source::Provenance`]
    /// record), for the recorded tiles whose write knew it: cached with the rest, so that
    /// comparing the tiles with their source costs no read of the history.
    pub sources: BTreeMap<(i32, TileName), String>,
}

impl Coverage {
    /// State of a tile, if the repository holds anything of it.
    pub fn state(&self, year: i32, tile: TileName) -> Option<&TileState> {
        self.tiles.get(&(year, tile))
    }

    /// Whether a tile is fully written.
    pub fn is_written(&self, year: i32, tile: TileName) -> bool {
        matches!(self.state(year, tile), Some(TileState::Written { .. }))
    }

    /// Written tiles of a year.
    pub fn written_count(&self, year: i32) -> usize {
        self.tiles
            .iter()
            .filter(|((y, _), s)| *y == year && matches!(s, TileState::Written { .. }))
            .count()
    }
}

/// Stored chunks per tile and year.
pub type ChunkCounts = BTreeMap<TileKey, u64>;

impl Cube {
    /// Coverage at the branch head.
    pub async fn coverage(&self) -> Result<Coverage, CubeError> {
        self.coverage_at(&VersionInfo::BranchTipRef(self.branch.clone()))
            .await
    }

    /// Coverage at any version.
    pub async fn coverage_at(&self, version: &VersionInfo) -> Result<Coverage, CubeError> {
        // A snapshot named by its id needs no lookup (that would read the repository's
        // info): a cached one then costs no request at all.
        let id = match version {
            VersionInfo::SnapshotId(id) => id.clone(),
            other => self
                .repo
                .resolve_version(other)
                .await
                .map_err(|e| CubeError::icechunk("finding the snapshot", e))?,
        };
        self.coverage_of(&id).await
    }

    /// Coverage of a snapshot: from the cache, else from the snapshot's own metadata and
    /// the commits since the newest cached ancestor.
    pub async fn coverage_of(&self, id: &SnapshotId) -> Result<Coverage, CubeError> {
        let key = id.to_string();
        if let Some(cov) = self.coverage_cache.get(&key) {
            return Ok(cov);
        }
        let (recorded, sources) = self.recorded_at(id).await?;
        let present = match self.manifest_chunk_counts(id).await? {
            Some(counts) => counts,
            None => {
                self.chunks_present(&VersionInfo::SnapshotId(id.clone()))
                    .await?
            }
        };
        let mut cov = cross_check(recorded, present);
        cov.sources = sources;
        self.coverage_cache.put(&key, &cov);
        Ok(cov)
    }

    /// The tiles recorded as written at a snapshot, each with its chunk count and the
    /// snapshot that last wrote it: the ancestry is walked only down to the newest snapshot
    /// whose coverage is cached, or to the latest layout commit. With them, the source each
    /// tile's recording commit noted (none when that commit knew none).
    async fn recorded_at(
        &self,
        id: &SnapshotId,
    ) -> Result<(BTreeMap<TileKey, (u64, String)>, BTreeMap<TileKey, String>), CubeError> {
        let reading = |e| CubeError::icechunk("reading the history", e);
        let mut stream = Box::pin(
            self.repo
                .ancestry(&VersionInfo::SnapshotId(id.clone()))
                .await
                .map_err(reading)?,
        );
        let mut newer = Vec::new();
        let mut base = None;
        while let Some(info) = stream.try_next().await.map_err(reading)? {
            if info.id != *id
                && let Some(cov) = self.coverage_cache.get(&info.id.to_string())
            {
                base = Some(cov);
                break;
            }
            let commit = Commit::from_info(info);
            let init = commit.init;
            newer.push(commit);
            if init {
                break;
            }
        }
        let mut recorded = Cube::recorded_tiles(&newer);
        let mut sources = Cube::recorded_sources(&newer, &recorded);
        if let Some(base) = base {
            for (k, state) in base.tiles {
                if let Some(r) = state.recorded()
                    && !recorded.contains_key(&k)
                {
                    recorded.insert(k, r);
                    if let Some(s) = base.sources.get(&k) {
                        sources.insert(k, s.clone());
                    }
                }
            }
        }
        Ok((recorded, sources))
    }

    /// Chunks referenced per tile and year, from the snapshot's manifest list alone (one
    /// snapshot read): `None` when a manifest of the data variable spans more than one tile,
    /// so the counts cannot be told apart without reading the manifests.
    pub async fn manifest_chunk_counts(
        &self,
        id: &SnapshotId,
    ) -> Result<Option<ChunkCounts>, CubeError> {
        let snapshot = self
            .repo
            .asset_manager()
            .fetch_snapshot(id)
            .await
            .map_err(|e| CubeError::icechunk(format!("reading snapshot {id}"), e))?;
        let variable = self.layout.variable_path();
        let path = Path::new(&variable)
            .map_err(LayoutError::node_path(&variable, Some("variable path")))?;
        let node = match snapshot.get_node(&path) {
            Ok(node) => node,
            // A snapshot from before the cube was laid out holds no data variable.
            Err(e) if matches!(e.kind(), IcechunkFormatErrorKind::NodeNotFound { .. }) => {
                return Ok(Some(ChunkCounts::new()));
            }
            Err(e) => return Err(CubeError::icechunk("reading the data variable's node", e)),
        };
        let NodeData::Array { manifests, .. } = &node.node_data else {
            return Err(LayoutError::NotAnArray { path: variable }.into());
        };
        let mut counts = ChunkCounts::new();
        for mref in manifests {
            let first: Vec<u32> = mref.extents.iter().map(|r| r.start).collect();
            let last: Vec<u32> = mref
                .extents
                .iter()
                .map(|r| r.end.saturating_sub(1))
                .collect();
            let tile = self.layout.tile_of_chunk(&first);
            if tile.is_none() || tile != self.layout.tile_of_chunk(&last) {
                return Ok(None);
            }
            let Some(info) = snapshot
                .manifest_info(&mref.object_id)
                .map_err(|e| CubeError::icechunk("reading the manifest list", e))?
            else {
                return Ok(None);
            };
            if let Some(tile) = tile {
                *counts.entry(tile).or_insert(0) += info.num_chunk_refs as u64;
            }
        }
        Ok(Some(counts))
    }

    /// Stored chunks per (year, tile) in a version, by listing every chunk coordinate
    /// (O(chunks)): the cross-check, and the fallback for manifests that span tiles.
    pub async fn chunks_present(&self, version: &VersionInfo) -> Result<ChunkCounts, CubeError> {
        let session = self.session_at(version).await?;
        let variable = self.layout.variable_path();
        let path = Path::new(&variable)
            .map_err(LayoutError::node_path(&variable, Some("variable path")))?;
        let stream = session
            .chunk_coordinates(&path)
            .await
            .map_err(|e| CubeError::icechunk("listing chunks", e))?;
        let mut counts = BTreeMap::new();
        let mut stream = Box::pin(stream);
        while let Some(idx) = stream
            .try_next()
            .await
            .map_err(|e| CubeError::icechunk("listing chunks", e))?
        {
            if let Some(key) = self.layout.tile_of_chunk(&idx.0) {
                *counts.entry(key).or_insert(0u64) += 1;
            }
        }
        Ok(counts)
    }
}

/// Cross-check recorded tiles against present chunks.
pub(crate) fn cross_check(
    recorded: BTreeMap<TileKey, (u64, String)>,
    mut present: ChunkCounts,
) -> Coverage {
    let mut tiles = BTreeMap::new();
    for (key, (recorded, snapshot)) in recorded {
        let have = present.remove(&key).unwrap_or(0);
        let state = if have == recorded {
            TileState::Written {
                chunks: have,
                snapshot,
            }
        } else {
            TileState::Incomplete {
                recorded,
                present: have,
                snapshot,
            }
        };
        tiles.insert(key, state);
    }
    for (key, n) in present {
        tiles.insert(key, TileState::Unrecorded { present: n });
    }
    Coverage {
        tiles,
        sources: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cube::WrittenTiles;
    use chrono::Utc;

    #[test]
    fn recorded_tiles_are_checked_against_present_chunks() {
        let t = |s: &str| s.parse::<TileName>().unwrap();
        let written: WrittenTiles = [(
            2000,
            [(t("00N_000E"), 4), (t("10N_010E"), 0), (t("20N_020E"), 4)].into(),
        )]
        .into();
        let history = vec![Commit {
            id: "S1".into(),
            parent: None,
            time: Utc::now(),
            message: "w".into(),
            written,
            init: false,
            plan: None,
            carried: Default::default(),
            sources: Default::default(),
            layout_changed: false,
        }];
        let present = [
            ((2000, t("00N_000E")), 4),
            ((2000, t("20N_020E")), 2),
            ((2005, t("30N_030E")), 1),
        ]
        .into();
        let c = cross_check(Cube::recorded_tiles(&history), present);
        assert!(c.is_written(2000, t("00N_000E")));
        // an all-fill tile stores no chunk and is still written
        assert!(c.is_written(2000, t("10N_010E")));
        assert!(matches!(
            c.state(2000, t("20N_020E")),
            Some(TileState::Incomplete {
                recorded: 4,
                present: 2,
                ..
            })
        ));
        assert_eq!(
            c.state(2005, t("30N_030E")),
            Some(&TileState::Unrecorded { present: 1 })
        );
        assert_eq!(c.written_count(2000), 2);
    }
}
