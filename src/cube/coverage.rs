//! Coverage: which tiles a snapshot holds, read from the repository alone.
//!
//! Two witnesses are cross-checked: the tiles the commits of the ancestry recorded writing
//! (snapshot properties) and the chunks actually present in the snapshot. A recorded tile is
//! written when its chunks are there (a tile that is all fill value stores none); chunks in a
//! region no commit recorded are reported as unrecorded data.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use icechunk::format::Path;
use icechunk::repository::VersionInfo;
use serde::Serialize;

use super::{Commit, Cube, CubeError};
use crate::grid::TileName;

/// What the repository says of one tile of one year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// The tiles a snapshot holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    pub tiles: BTreeMap<(i32, TileName), TileState>,
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

impl Cube {
    /// Coverage at the branch head.
    pub async fn coverage(&self) -> Result<Coverage, CubeError> {
        self.coverage_at(&VersionInfo::BranchTipRef(self.branch.clone()))
            .await
    }

    /// Coverage at any version.
    pub async fn coverage_at(&self, version: &VersionInfo) -> Result<Coverage, CubeError> {
        let history = self.history_of(version).await?;
        let present = self.chunks_present(version).await?;
        Ok(cross_check(&history, present))
    }

    /// Stored chunks per (year, tile) in a version.
    pub async fn chunks_present(
        &self,
        version: &VersionInfo,
    ) -> Result<BTreeMap<(i32, TileName), u64>, CubeError> {
        let session = self.session_at(version).await?;
        let path = Path::new(&self.layout.variable_path())
            .map_err(|e| CubeError::Layout(format!("variable path: {e}")))?;
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
    history: &[Commit],
    mut present: BTreeMap<(i32, TileName), u64>,
) -> Coverage {
    let mut tiles = BTreeMap::new();
    for (key, (recorded, snapshot)) in Cube::recorded_tiles(history) {
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
    Coverage { tiles }
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
        }];
        let present = [
            ((2000, t("00N_000E")), 4),
            ((2000, t("20N_020E")), 2),
            ((2005, t("30N_030E")), 1),
        ]
        .into();
        let c = cross_check(&history, present);
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
