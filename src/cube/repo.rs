//! Creating and opening the cube's repository, its sessions and commits.

use std::sync::Arc;

use icechunk::config::{
    CachingConfig, ManifestConfig, ManifestPreloadCondition, ManifestPreloadConfig,
    ManifestSplitCondition, ManifestSplitDim, ManifestSplitDimCondition, ManifestSplittingConfig,
};
use icechunk::format::SnapshotId;
use icechunk::repository::VersionInfo;
use icechunk::session::Session;
use icechunk::{Repository, RepositoryConfig};

use super::layout::Layout;
use super::lock::RefLock;
use super::{CoverageCache, CubeError, RepoLocation};

/// Icechunk format version for new repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpecVersion {
    /// Readable by icechunk-python 1.x.
    V1,
    #[default]
    V2,
}

impl SpecVersion {
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

/// Options of `init`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub spec_version: SpecVersion,
    /// Lay out a fresh, empty cube over an existing repository (as a new commit).
    pub force: bool,
    pub branch: String,
}

/// An open cube: its repository, branch and layout.
#[derive(Clone)]
pub struct Cube {
    pub location: RepoLocation,
    pub repo: Arc<Repository>,
    pub layout: Layout,
    pub branch: String,
    /// Coverage of snapshots already read, by snapshot id.
    pub coverage_cache: CoverageCache,
}

/// The side, in chunks, of the manifest splits of level `k` (0: the cube itself) along y and
/// x (along the year axis a split is one year): a tile's chunks where the tile maps to whole
/// chunks, the whole level (`u32::MAX`) for the coarse levels.
pub(crate) fn split_chunks(layout: &Layout, k: usize) -> u32 {
    match k.checked_sub(1) {
        None => layout.tile_pixels.div_ceil(layout.chunk_pixels) as u32,
        Some(i) => layout
            .levels()
            .get(i)
            .and_then(|level| level.tile_pixels.map(|t| (t / level.chunk) as u32))
            .unwrap_or(u32::MAX),
    }
}

pub(crate) fn repo_config(layout: &Layout) -> RepositoryConfig {
    // One manifest per tile and year: a commit rewrites only the manifests of the tiles it
    // touched, so commits stay cheap however full the cube gets.
    let n = split_chunks(layout, 0);
    let dims = vec![
        ManifestSplitDim {
            condition: ManifestSplitDimCondition::DimensionName("year".into()),
            num_chunks: 1,
        },
        ManifestSplitDim {
            condition: ManifestSplitDimCondition::DimensionName("y".into()),
            num_chunks: n,
        },
        ManifestSplitDim {
            condition: ManifestSplitDimCondition::DimensionName("x".into()),
            num_chunks: n,
        },
    ];
    let mut split_sizes = vec![(
        ManifestSplitCondition::PathMatches {
            regex: format!("^/{}$", regex_escape(&layout.variable)),
        },
        dims,
    )];
    // Overview levels: one manifest per tile and year where a tile maps to whole chunks,
    // one per year for the coarse levels (small: a few hundred chunks a year).
    for (i, level) in layout.levels().into_iter().enumerate() {
        let n = split_chunks(layout, i + 1);
        split_sizes.push((
            ManifestSplitCondition::PathMatches {
                regex: format!(
                    "^/{}/{}$",
                    regex_escape(&level.group()),
                    regex_escape(&layout.variable)
                ),
            },
            ["year", "y", "x"]
                .into_iter()
                .map(|name| ManifestSplitDim {
                    condition: ManifestSplitDimCondition::DimensionName(name.into()),
                    num_chunks: if name == "year" { 1 } else { n },
                })
                .collect(),
        ));
    }
    let splitting = ManifestSplittingConfig {
        split_sizes: Some(split_sizes),
    };
    RepositoryConfig {
        manifest: Some(ManifestConfig {
            splitting: Some(splitting),
            ..Default::default()
        }),
        ..Default::default()
    }
    .merge(manifest_handling())
}

/// No manifest preloading. Icechunk preloads the manifests of coordinate-like arrays when a
/// session opens, deciding for each manifest reference of each array by compiling its path
/// rules anew: on a cube split into thousands of manifests that cost half a second of CPU per
/// open, for manifests tilecube never reads on open (coverage comes from the snapshot alone).
fn no_preload() -> ManifestPreloadConfig {
    ManifestPreloadConfig {
        max_total_refs: Some(0),
        preload_if: Some(ManifestPreloadCondition::False),
        max_arrays_to_scan: Some(0),
    }
}

/// Chunk references of manifests kept in memory by a repository handle. Icechunk keeps every
/// manifest it writes or reads, up to 15 M references by default: a write of a whole global
/// cube would hold the references of every tile it wrote (2.24 M for 1,400 tiles, hundreds of MB) until it ends. A
/// manifest is read again only when its tile is rewritten or looked at, so a few dozen
/// tiles' worth is plenty.
const MANIFEST_CACHE_REFS: u64 = 100_000;

/// What every open adds over the repository's stored config: the manifest handling (for
/// cubes laid out before it) and the location's storage retries.
fn open_config(location: &RepoLocation) -> RepositoryConfig {
    RepositoryConfig {
        storage: location.storage_settings(),
        ..Default::default()
    }
    .merge(manifest_handling())
}

/// No manifest preload, a manifest cache bounded by the machine.
fn manifest_handling() -> RepositoryConfig {
    RepositoryConfig {
        manifest: Some(ManifestConfig {
            preload: Some(no_preload()),
            ..Default::default()
        }),
        caching: Some(CachingConfig {
            num_chunk_refs: Some(MANIFEST_CACHE_REFS),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

impl Cube {
    /// Open an existing cube on a branch; its layout is read from the branch head.
    pub async fn open(location: RepoLocation, branch: &str) -> Result<Self, CubeError> {
        let (storage, exists) = storage_and_existence(&location, false).await?;

        if !exists {
            // A directory with files in it and no repository: `init` refuses it, so it is
            // not "run init" that helps.
            if let RepoLocation::Local(dir) = &location
                && let Ok(read) = std::fs::read_dir(dir)
            {
                let mut names: Vec<String> = read
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                if !names.is_empty() {
                    names.sort();
                    let n = names.len();
                    names.truncate(4);
                    let mut entries = names.join(", ");
                    if n > 4 {
                        entries.push_str(&format!(" and {} more", n - 4));
                    }
                    return Err(CubeError::NotARepositoryDirectory {
                        location: location.to_string(),
                        entries,
                    });
                }
            }
            return Err(CubeError::NotACube {
                location: location.to_string(),
            });
        }
        let repo = Repository::open(storage)
            .config(open_config(&location))
            .execute()
            .await
            .map_err(|e| location.error(e))?;
        let session = match repo
            .readonly_session(&VersionInfo::BranchTipRef(branch.to_string()))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                if let Ok(branches) = repo.list_branches().await
                    && !branches.contains(branch)
                {
                    return Err(CubeError::NoBranch {
                        location: location.to_string(),
                        branch: branch.to_string(),
                        branches: branches.into_iter().collect::<Vec<_>>().join(", "),
                    });
                }
                return Err(CubeError::icechunk(format!("opening branch {branch}"), e));
            }
        };
        let head = session.snapshot_id().clone();
        let layout = match super::dataset::read_layout(session).await {
            Ok(l) => l,
            Err(e) => {
                // The branch names a snapshot whose object is gone: said by branch and object.
                if let Err(gone) = repo.asset_manager().fetch_snapshot(&head).await
                    && matches!(
                        gone.kind(),
                        icechunk::repository::RepositoryErrorKind::StorageError(
                            icechunk::storage::StorageErrorKind::ObjectNotFound
                        )
                    )
                {
                    return Err(CubeError::HeadSnapshotLost {
                        location: location.to_string(),
                        branch: branch.to_string(),
                        snapshot: head.to_string(),
                    });
                }
                return Err(e);
            }
        }
        .ok_or_else(|| CubeError::NoCubeInRepository {
            location: location.to_string(),
        })?;
        Ok(Self {
            coverage_cache: CoverageCache::disabled(),
            location,
            repo: Arc::new(repo),
            layout,
            branch: branch.to_string(),
        })
    }

    /// The cube's layout as a snapshot holds it (`None`: no cube laid out there): how a
    /// reader open since before an `extend` learns the cube's new years.
    pub async fn layout_at(&self, id: &SnapshotId) -> Result<Option<Layout>, CubeError> {
        let session = self
            .session_at(&VersionInfo::SnapshotId(id.clone()))
            .await?;
        super::dataset::read_layout(session).await
    }

    /// A session that writes to the branch.
    pub async fn writable_session(&self) -> Result<Session, CubeError> {
        self.repo
            .writable_session(&self.branch)
            .await
            .map_err(|e| CubeError::icechunk(format!("opening branch {}", self.branch), e))
    }

    /// A read-only session at the branch head.
    pub async fn head_session(&self) -> Result<Session, CubeError> {
        self.session_at(&VersionInfo::BranchTipRef(self.branch.clone()))
            .await
    }

    /// A read-only session at any version.
    pub async fn session_at(&self, version: &VersionInfo) -> Result<Session, CubeError> {
        self.repo
            .readonly_session(version)
            .await
            .map_err(|e| CubeError::icechunk("opening a snapshot", e))
    }

    /// The snapshot at the branch head.
    pub async fn head(&self) -> Result<SnapshotId, CubeError> {
        self.repo
            .lookup_branch(&self.branch)
            .await
            .map_err(|e| CubeError::icechunk(format!("reading branch {}", self.branch), e))
    }

    /// Tag a snapshot (under the reference lock, like commits).
    pub async fn create_tag(&self, name: &str, snapshot: &SnapshotId) -> Result<(), CubeError> {
        let _lock = RefLock::acquire(&self.location).await?;
        self.repo
            .create_tag(name, snapshot)
            .await
            .map(|_| ())
            .map_err(|e| CubeError::icechunk(format!("tagging {snapshot} as {name}"), e))
    }

    /// The repository's tags, by the snapshot each names (snapshot id → tag names, sorted):
    /// one listing and one read a tag, whatever the history's length.
    pub async fn tags(&self) -> Result<std::collections::BTreeMap<String, Vec<String>>, CubeError> {
        let reading = |e| CubeError::icechunk("reading the tags", e);
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for name in self.repo.list_tags().await.map_err(reading)? {
            let id = self.repo.lookup_tag(&name).await.map_err(reading)?;
            out.entry(id.to_string()).or_default().push(name);
        }
        Ok(out)
    }

    /// The key that names this cube in state kept outside the repository (runs, the failure
    /// journal): its identity, made by `init`, so a repository deleted and made again at the
    /// same path (or `init --force`) starts afresh, and a moved one keeps its journal. Cubes
    /// laid out before the identity existed are named by their location.
    pub fn key(&self) -> String {
        if self.layout.cube_id.is_empty() {
            self.location.key()
        } else {
            format!("cube:{}", self.layout.cube_id)
        }
    }

    /// This cube, keeping the coverage of the snapshots it reads in a cache under `root`
    /// (the faces pass the user cache dir; a cube opened without keeps none).
    pub fn with_coverage_cache(mut self, root: std::path::PathBuf) -> Self {
        self.coverage_cache = CoverageCache::at(root, &self.location.key());
        self
    }

    /// Refresh the repository handle (to see commits by other processes); the coverage
    /// cache goes with it.
    pub async fn reopen(&self) -> Result<Self, CubeError> {
        let mut cube = Self::open(self.location.clone(), &self.branch).await?;
        cube.coverage_cache = self.coverage_cache.clone();
        Ok(cube)
    }
}

/// The storage of a location, and whether it holds a repository.
pub(super) async fn storage_and_existence(
    location: &RepoLocation,
    create: bool,
) -> Result<(Arc<dyn icechunk::Storage + Send + Sync>, bool), CubeError> {
    let storage = location.storage(create).await?;
    // The first request makes the storage client, with these settings for good.
    let exists = Repository::exists(Arc::clone(&storage), location.storage_settings())
        .await
        .map_err(|e| location.error(e))?;
    Ok((storage, exists))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_are_escaped_in_split_rules() {
        assert_eq!(regex_escape("lclu"), "lclu");
        assert_eq!(regex_escape("a.b"), "a\\.b");
    }

    #[test]
    fn spec_versions_parse() {
        assert_eq!(SpecVersion::from_number(1), Some(SpecVersion::V1));
        assert_eq!(SpecVersion::from_number(2), Some(SpecVersion::V2));
        assert_eq!(SpecVersion::from_number(3), None);
    }
}
