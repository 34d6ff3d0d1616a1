//! Making a cube: the repository created (or, with `--force`, reused), the branch made when
//! the repository has none of its name, and the cube's layout committed as "initialize
//! array" with a new identity.
//!
//! Invariants: nothing is written to a directory that holds anything but a repository; the
//! branch exists before the layout commit; every init gives the cube a new `cube_id`.

use std::sync::Arc;

use icechunk::Repository;
use icechunk::format::format_constants::SpecVersionBin;
use icechunk::format::snapshot::SnapshotProperties;
use serde_json::json;
use zarrs_icechunk::AsyncIcechunkStore;

use super::layout::{LAYOUT_ATTR, Layout};
use super::lock::RefLock;
use super::repo::{repo_config, storage_and_existence};
use super::{CoverageCache, Cube, CubeError, InitOptions, RepoLocation, SpecVersion};

impl Cube {
    /// Create the repository (or, with `force`, reuse it) and commit the cube's layout:
    /// the data variable with no chunk written, and its coordinates.
    pub async fn init(
        location: RepoLocation,
        layout: Layout,
        options: &InitOptions,
    ) -> Result<Self, CubeError> {
        let (storage, exists) = storage_and_existence(&location, true).await?;
        let mut layout = layout;
        layout.cube_id = crate::ids::new_id();

        let config = repo_config(&layout);
        let repo = if exists {
            if !options.force {
                return Err(CubeError::AlreadyExists {
                    location: location.to_string(),
                });
            }
            let repo = Repository::open(storage)
                .config(config)
                .execute()
                .await
                .map_err(|e| location.error(e))?;
            repo.save_config().await.map_err(|e| location.error(e))?;
            repo
        } else {
            if let RepoLocation::Local(dir) = &location {
                let non_empty = std::fs::read_dir(dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false);
                if non_empty {
                    return Err(location.error(
                        "directory is not empty and holds no repository; choose an empty or new directory",
                    ));
                }
            }
            let spec = match options.spec_version {
                SpecVersion::V1 => SpecVersionBin::V1,
                SpecVersion::V2 => SpecVersionBin::V2,
            };
            let repo = Repository::create(storage)
                .config(config)
                .spec_version(spec)
                .execute()
                .await
                .map_err(|e| location.error(e))?;
            repo.save_config().await.map_err(|e| location.error(e))?;
            repo
        };
        ensure_branch(&repo, &options.branch, &location).await?;
        let cube = Self {
            coverage_cache: CoverageCache::disabled(),
            location,
            repo: Arc::new(repo),
            layout,
            branch: options.branch.clone(),
        };
        cube.commit_layout().await?;
        Ok(cube)
    }

    async fn commit_layout(&self) -> Result<(), CubeError> {
        let mut session = self.writable_session().await?;
        session
            .clear()
            .await
            .map_err(|e| CubeError::icechunk("clearing the old cube", e))?;
        let store = Arc::new(AsyncIcechunkStore::new(session));
        super::dataset::write_layout(&store, &self.layout).await?;
        let session = store.session();
        let mut session = session.write().await;
        let mut props = SnapshotProperties::new();
        props.insert(
            LAYOUT_ATTR.into(),
            json!({ "init": { "shape": self.layout.shape(), "chunks": self.layout.chunk_shape() } }),
        );
        super::commit::commit(self, &mut session, "initialize array", props).await?;
        Ok(())
    }
}

/// Make `branch` if the repository has none of that name, at the tip of `main` (where a new
/// repository's first snapshot is), so `init --branch B` lays the cube out on B.
async fn ensure_branch(
    repo: &Repository,
    branch: &str,
    location: &RepoLocation,
) -> Result<(), CubeError> {
    let branches = repo
        .list_branches()
        .await
        .map_err(|e| CubeError::icechunk("listing the branches", e))?;
    if branches.contains(branch) {
        return Ok(());
    }
    let base = repo.lookup_branch("main").await.map_err(|e| {
        CubeError::icechunk(
            format!("making branch {branch} of {location}: reading branch main"),
            e,
        )
    })?;
    let _lock = RefLock::acquire(location).await?;
    repo.create_branch(branch, &base)
        .await
        .map_err(|e| CubeError::icechunk(format!("making branch {branch} of {location}"), e))
}
