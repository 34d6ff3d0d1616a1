//! The way back from objects lost behind Icechunk's back (`tilecube repair`): one commit that
//! drops the branch head's references to manifests and chunk objects that storage no longer
//! has, so the branch can move again.
//!
//! Invariants: nothing is written but that commit, and it drops only references whose object
//! is gone (a manifest is left out whole — its chunks cannot be read — and a missing chunk's
//! reference is removed); the tiles that lose chunks are named, and keep their record, so
//! they show as `?` (recorded, chunks missing) until `write --missing` writes them again;
//! overview levels that lose chunks are rebuilt by `tilecube overviews`. Costs what `verify`
//! costs (O(chunks)); a head with nothing lost commits nothing.

use std::collections::{BTreeMap, BTreeSet};

use icechunk::format::snapshot::{NodeData, SnapshotProperties};
use icechunk::format::{ChunkIndices, Path};
use serde::Serialize;
use serde_json::json;

use super::layout::LAYOUT_ATTR;
use super::{Cube, CubeError, LostManifest};

/// What `repair` did.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// Manifests left out, with what they held.
    pub manifests: Vec<LostManifest>,
    /// Chunk references dropped because their object is gone, by where they belong.
    pub chunks: BTreeMap<String, u64>,
    /// The commit made (none when nothing was lost).
    pub snapshot: Option<String>,
}

impl Cube {
    /// Drop the branch head's references to lost manifests and chunk objects in one commit.
    pub async fn repair(&self) -> Result<RepairReport, CubeError> {
        let head = self.head().await?;
        let mut session = self.writable_session().await?;
        if *session.snapshot_id() != head {
            return Err(CubeError::Layout(format!(
                "the branch {} moved while the repair read it; run it again",
                self.branch
            )));
        }
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
            manifests: found.lost_manifests,
            chunks: found.missing,
            snapshot: None,
        };
        if forgotten.is_empty() && dropped.is_empty() {
            return Ok(report);
        }
        session.forget_manifests(forgotten);
        for array in &touched {
            // The array's own metadata, set again: the change that carries the manifests out.
            let path = Path::new(array).map_err(|e| CubeError::Layout(format!("{array}: {e}")))?;
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
            let path = Path::new(&array).map_err(|e| CubeError::Layout(format!("{array}: {e}")))?;
            for coord in coords {
                session
                    .set_chunk_ref(path.clone(), coord, None)
                    .await
                    .map_err(|e| CubeError::icechunk(format!("dropping a chunk of {array}"), e))?;
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
            }}),
        );
        let message = format!(
            "repair: {} lost manifests and {} lost chunk objects dropped",
            report.manifests.len(),
            report.chunks.values().sum::<u64>()
        );
        let id = super::commit::commit(self, &mut session, &message, props).await?;
        report.snapshot = Some(id.to_string());
        Ok(report)
    }
}
