//! The way back from objects lost behind Icechunk's back (`tilecube repair`): one commit that
//! drops the branch head's references to manifests and chunk objects that storage no longer
//! has, so the branch can move again.
//!
//! Invariants: nothing is written but that commit, and it drops only references whose object
//! is gone (a manifest is left out whole — its chunks cannot be read — and a missing chunk's
//! reference is removed); the tiles that lose chunks are named, and keep their record, so
//! they show as `?` (recorded, chunks missing) until `write --missing` writes them again;
//! overview levels that lose chunks are rebuilt by `tilecube overviews`. Costs what `verify`
//! costs (O(chunks)); a head with nothing lost commits nothing. The commit lands only on the
//! head that was checked (no rebase): when the branch moved, the new head is checked again,
//! so a newer commit's chunks are never dropped.

use std::collections::{BTreeMap, BTreeSet};

use icechunk::format::snapshot::{NodeData, SnapshotProperties};
use icechunk::format::{ChunkIndices, Path};
use serde::Serialize;
use serde_json::json;

use super::layout::LAYOUT_ATTR;
use super::{Cube, CubeError, LayoutError, LostManifest};

/// What `repair` did.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// Manifests left out, with what they held.
    pub manifests: Vec<LostManifest>,
    /// Chunk references dropped because their object is gone, by where they belong.
    pub chunks: BTreeMap<String, u64>,
    /// Chunk references dropped because their object is cut short, by where they belong.
    pub short: BTreeMap<String, u64>,
    /// Level chunks missing where level 0 holds data (found before the repair; the repair's
    /// drops of level chunks add to them): `tilecube overviews` rebuilds them.
    pub holes: BTreeMap<String, u64>,
    /// The written tiles a reader meets a hole in (year/tile).
    pub tiles: Vec<String>,
    /// The commit made (none when nothing was lost).
    pub snapshot: Option<String>,
}

impl Cube {
    /// Drop the branch head's references to lost manifests and chunk objects (missing, or cut
    /// short) in one commit. The commit lands only on the head that was checked: when another
    /// commit landed meanwhile (a write's new chunk for a tile whose old one was lost), the
    /// head is checked again, so nothing a newer commit wrote is ever dropped.
    pub async fn repair(&self) -> Result<RepairReport, CubeError> {
        for _ in 0..super::commit::ATTEMPTS {
            let mut session = self.writable_session().await?;
            let head = session.snapshot_id().clone();
            let mut dropped: BTreeMap<String, Vec<ChunkIndices>> = BTreeMap::new();
            let (found, forgotten) = self
                .scan(&head, |array, coord| {
                    dropped.entry(array.to_string()).or_default().push(coord)
                })
                .await?;
            let touched: BTreeSet<String> = found
                .lost_manifests
                .iter()
                .map(|m| m.array.clone())
                .collect();
            let mut report = RepairReport {
                manifests: found.lost_manifests.clone(),
                chunks: found.missing.clone(),
                short: found.short.clone(),
                holes: found.holes.clone(),
                tiles: found
                    .tiles
                    .iter()
                    .map(|(y, t)| format!("{y}/{t}"))
                    .collect(),
                snapshot: None,
            };
            if forgotten.is_empty() && dropped.is_empty() {
                return Ok(report);
            }
            session.forget_manifests(forgotten);
            for array in &touched {
                // The array's own metadata, set again: the change that carries the manifests
                // out.
                let path = Path::new(array).map_err(LayoutError::node_path(array, None))?;
                let node = session
                    .get_array(&path)
                    .await
                    .map_err(|e| CubeError::icechunk(format!("reading {array}"), e))?;
                let NodeData::Array {
                    shape,
                    dimension_names,
                    ..
                } = node.node_data
                else {
                    continue;
                };
                session
                    .update_array(&path, shape, dimension_names, node.user_data)
                    .await
                    .map_err(|e| CubeError::icechunk(format!("updating {array}"), e))?;
            }
            for (array, coords) in dropped {
                let path = Path::new(&array).map_err(LayoutError::node_path(&array, None))?;
                for coord in coords {
                    session
                        .set_chunk_ref(path.clone(), coord, None)
                        .await
                        .map_err(|e| {
                            CubeError::icechunk(format!("dropping a chunk of {array}"), e)
                        })?;
                }
            }
            let mut props = SnapshotProperties::new();
            props.insert(
                LAYOUT_ATTR.into(),
                json!({ "repair": {
                    "manifests": report.manifests.iter().map(|m| json!({
                        "manifest": m.manifest, "array": m.array, "chunks": m.chunks, "tiles": m.tiles,
                    })).collect::<Vec<_>>(),
                    "chunks": report.chunks,
                    "short": report.short,
                    "tiles": report.tiles,
                }}),
            );
            let message = format!(
                "repair: {} lost manifests and {} lost or short chunk objects dropped",
                report.manifests.len(),
                report.chunks.values().sum::<u64>() + report.short.values().sum::<u64>()
            );
            super::steps::reached("repair-checked");
            // Landed only on the head scanned: no rebase, which would drop references a newer
            // commit set.
            if let Some(id) =
                super::commit::commit_at_tip(self, &mut session, &message, props).await?
            {
                // What the repair leaves: the tiles whose level-0 chunks it dropped (`?` by
                // their records) and the levels' holes, kept for `status` by the new head.
                self.coverage_cache.put_holes(
                    &id.to_string(),
                    &found.tiles.iter().copied().collect::<Vec<_>>(),
                );
                report.snapshot = Some(id.to_string());
                return Ok(report);
            }
        }
        Err(CubeError::BranchKeptMoving {
            branch: self.branch.clone(),
            attempts: super::commit::ATTEMPTS,
        })
    }
}
