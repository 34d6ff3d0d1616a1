//! Bringing the metadata of a cube written by an earlier tilecube to today's form: the
//! GeoZarr conventions of [`super::conventions`] on the root group and every overview
//! level's group.
//!
//! Invariants: one commit, of group metadata only (no chunk, no array metadata, no manifest
//! of chunks changes); every attribute and convention entry that is not tilecube's is kept;
//! a cube already in today's form gets no commit.

use std::sync::Arc;

use icechunk::format::snapshot::SnapshotProperties;
use serde_json::json;
use zarrs::group::{Group, GroupBuilder};
use zarrs_icechunk::AsyncIcechunkStore;

use super::layout::LAYOUT_ATTR;
use super::{Cube, CubeError};

/// What [`Cube::upgrade_metadata`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Upgrade {
    /// The groups whose attributes changed (`/`, `/overviews/2`, …).
    pub groups: Vec<String>,
    /// The commit that holds the change; `None` when nothing had to change.
    pub snapshot: Option<String>,
}

impl Cube {
    /// Rewrite the root group's and each level group's convention attributes to today's
    /// form, in one metadata-only commit (none when they already are).
    pub async fn upgrade_metadata(&self) -> Result<Upgrade, CubeError> {
        let session = self.writable_session().await?;
        let store = Arc::new(AsyncIcechunkStore::new(session));
        let mut groups = vec![];
        for k in 0..=self.layout.levels().len() {
            let path = match k {
                0 => "/".to_string(),
                _ => format!("/{}", self.layout.levels()[k - 1].group()),
            };
            let what = format!("group {path}");
            let group = Group::async_open(Arc::clone(&store), &path)
                .await
                .map_err(|e| CubeError::icechunk(format!("reading {what}"), e))?;
            let now = group.attributes();
            let upgraded = super::conventions::upgrade(now, &self.layout, k);
            if &upgraded == now {
                continue;
            }
            GroupBuilder::new()
                .attributes(upgraded)
                .build(Arc::clone(&store), &path)
                .map_err(|e| CubeError::icechunk(format!("rewriting {what}"), e))?
                .async_store_metadata()
                .await
                .map_err(|e| CubeError::icechunk(format!("rewriting {what}"), e))?;
            groups.push(path);
        }
        if groups.is_empty() {
            return Ok(Upgrade {
                groups,
                snapshot: None,
            });
        }
        let session = store.session();
        let mut session = session.write().await;
        let mut props = SnapshotProperties::new();
        props.insert(
            LAYOUT_ATTR.into(),
            json!({ "upgrade": { "groups": groups.len() } }),
        );
        let message = format!(
            "upgrade the metadata of {} groups to the GeoZarr conventions",
            groups.len()
        );
        let id = super::commit::commit(self, &mut session, &message, props).await?;
        Ok(Upgrade {
            groups,
            snapshot: Some(id.to_string()),
        })
    }
}
