//! The cross-check against stored objects: every chunk the branch head references must be
//! in storage. `status` reads what snapshots record (references), never the objects; an
//! object deleted behind Icechunk's back shows only here.
//!
//! Invariant: costs one listing of the chunk objects and one pass over the head's manifests
//! (O(chunks)): it is an explicit command, never run on open or refresh.

use std::collections::{BTreeMap, HashSet};

use futures::TryStreamExt;
use icechunk::format::manifest::ChunkPayload;
use serde::Serialize;

use super::{Cube, CubeError, TileKey};

/// What `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Chunk references of the data variable checked against storage.
    pub references: u64,
    /// Chunk objects in storage.
    pub objects: u64,
    /// Tiles with referenced chunk objects that are not in storage, and how many.
    pub missing: BTreeMap<String, u64>,
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty()
    }
}

fn key_name((year, tile): TileKey) -> String {
    format!("{year}/{tile}")
}

impl Cube {
    /// Check every chunk the branch head references against the objects in storage.
    pub async fn verify(&self) -> Result<Verification, CubeError> {
        let storage = self.repo.storage();
        let ctx = self.repo.storage_context();
        let listing = |e| CubeError::icechunk("listing the chunk objects", e);
        let mut stored = HashSet::new();
        let mut objects = storage
            .list_objects(&ctx, "chunks")
            .await
            .map_err(listing)?;
        while let Some(info) = objects.try_next().await.map_err(listing)? {
            let id = info.id.rsplit('/').next().unwrap_or(&info.id).to_string();
            stored.insert(id);
        }
        let session = self.head_session().await?;
        let variable = self.layout.variable_path();
        let reading = |e| CubeError::icechunk("reading the chunk references", e);
        let mut out = Verification {
            objects: stored.len() as u64,
            ..Verification::default()
        };
        let mut chunks = Box::pin(session.all_chunks().await.map_err(reading)?);
        while let Some((path, info)) = chunks.try_next().await.map_err(reading)? {
            if path.to_string() != variable {
                continue;
            }
            let ChunkPayload::Ref(r) = info.payload else {
                continue;
            };
            out.references += 1;
            if !stored.contains(&r.id.to_string()) {
                let tile = self
                    .layout
                    .tile_of_chunk(&info.coord.0)
                    .map(key_name)
                    .unwrap_or_else(|| format!("chunk {:?}", info.coord.0));
                *out.missing.entry(tile).or_default() += 1;
            }
        }
        Ok(out)
    }
}
