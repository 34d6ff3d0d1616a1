//! What the console and `status` ask of snapshots: the tiles one holds, the tiles that
//! changed between two, tags, and a quick-look of a tile read back from the cube.
//!
//! Invariant: snapshots never change, so everything here reads only the snapshot named; a
//! quick-look reads one chunk at a time, never a whole tile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use icechunk::format::SnapshotId;
use icechunk::repository::VersionInfo;
use icechunk::session::Session;

use super::{Cube, CubeError, LayoutError, TileState};
use crate::grid::TileName;

/// A tile of a year.
pub type TileKey = (i32, TileName);

fn snapshot_id(id: &str) -> Result<SnapshotId, CubeError> {
    SnapshotId::try_from(id).map_err(|_| CubeError::UnknownSnapshot(id.to_string()))
}

/// A snapshot id exactly as Icechunk writes it. Ids are read leniently (any case, `O` for
/// `0`, and the last character's spare bits ignored), so a mistyped id can name another's
/// snapshot: an id not written as its snapshot's is refused, naming the one it reads as.
pub fn canonical_snapshot_id(id: &str) -> Result<String, CubeError> {
    let canonical = snapshot_id(id.trim())?.to_string();
    if canonical == id.trim() {
        Ok(canonical)
    } else {
        Err(CubeError::NotCanonical {
            given: id.to_string(),
            canonical,
        })
    }
}

impl Cube {
    /// The tiles a snapshot holds, each with the snapshot that wrote it.
    pub async fn snapshot_tiles(&self, id: &str) -> Result<BTreeMap<TileKey, String>, CubeError> {
        let cov = self
            .coverage_at(&VersionInfo::SnapshotId(snapshot_id(id)?))
            .await?;
        Ok(cov
            .tiles
            .into_iter()
            .filter_map(|(k, s)| match s {
                TileState::Written { snapshot, .. } => Some((k, snapshot)),
                _ => None,
            })
            .collect())
    }

    /// The tiles that differ between two snapshots: held by one only, or written by
    /// different commits.
    pub async fn diff(&self, from: &str, to: &str) -> Result<BTreeSet<TileKey>, CubeError> {
        let a = self.snapshot_tiles(from).await?;
        let b = self.snapshot_tiles(to).await?;
        Ok(a.keys()
            .chain(b.keys())
            .filter(|k| a.get(k) != b.get(k))
            .copied()
            .collect())
    }

    /// Tag a snapshot named by its id, with an optional message ([`Cube::release`]).
    pub async fn tag(
        &self,
        name: &str,
        snapshot: &str,
        message: Option<&str>,
    ) -> Result<super::Released, CubeError> {
        self.release(name, &snapshot_id(snapshot)?, message).await
    }

    /// A tile read back from the branch head, decimated to at most `n`×`n` samples.
    pub async fn quicklook_head(
        &self,
        year: i32,
        tile: TileName,
        n: usize,
    ) -> Result<(usize, Vec<u8>), CubeError> {
        self.quicklook(self.head_session().await?, year, tile, n)
            .await
    }

    /// A tile read back from a session (uncommitted writes included), decimated to at most
    /// `n`×`n` samples: returns the side and the samples, row-major.
    pub async fn quicklook(
        &self,
        session: Session,
        year: i32,
        tile: TileName,
        n: usize,
    ) -> Result<(usize, Vec<u8>), CubeError> {
        use zarrs::array::Array;
        let store = Arc::new(zarrs_icechunk::AsyncIcechunkStore::new(session));
        let array = Array::async_open(store, &self.layout.variable_path())
            .await
            .map_err(|e| CubeError::icechunk("opening the data variable", e))?;
        let grid = self.layout.grid();
        let cell = grid.cell(tile)?;
        let yi = self
            .layout
            .year_index(year)
            .ok_or(LayoutError::YearNotInCube { year })? as u64;
        let side = grid.tile_pixels as usize;
        let n = n.min(side).max(1);
        let chunk = grid.chunk_pixels as usize;
        let (cy0, cx0) = grid.first_chunk(cell);
        let mut out = vec![self.layout.fill_value; n * n];
        let per_side = grid.chunks_per_side() as usize;
        for cy in 0..per_side {
            let rows: Vec<usize> = (0..n).filter(|r| r * side / n / chunk == cy).collect();
            for cx in 0..per_side {
                let cols: Vec<usize> = (0..n).filter(|c| c * side / n / chunk == cx).collect();
                if rows.is_empty() || cols.is_empty() {
                    continue;
                }
                let px: Vec<u8> = array
                    .async_retrieve_chunk(&[yi, cy0 + cy as u64, cx0 + cx as u64])
                    .await
                    .map_err(|e| CubeError::icechunk(format!("reading {year}/{tile}"), e))?;
                for &r in &rows {
                    for &c in &cols {
                        let y = r * side / n - cy * chunk;
                        let x = c * side / n - cx * chunk;
                        out[r * n + c] = px[y * chunk + x];
                    }
                }
            }
        }
        Ok((n, out))
    }
}
