//! Creating and opening the cube's repository, its sessions and commits.

use std::sync::Arc;

use icechunk::config::{
    CachingConfig, ManifestConfig, ManifestPreloadCondition, ManifestPreloadConfig,
    ManifestSplitCondition, ManifestSplitDim, ManifestSplitDimCondition, ManifestSplittingConfig,
};
use icechunk::conflicts::basic_solver::BasicConflictSolver;
use icechunk::format::SnapshotId;
use icechunk::format::format_constants::SpecVersionBin;
use icechunk::format::snapshot::SnapshotProperties;
use icechunk::repository::VersionInfo;
use icechunk::session::Session;
use icechunk::{Repository, RepositoryConfig};
use serde_json::{Value, json};
use zarrs::array::{ArrayBuilder, data_type};
use zarrs::group::{Group, GroupBuilder};
use zarrs_icechunk::AsyncIcechunkStore;

use super::layout::{LAYOUT_ATTR, Layout};
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

/// Number of attempts to rebase a commit over concurrent commits to the branch.
const REBASE_ATTEMPTS: u16 = 50;

pub(crate) fn repo_config(layout: &Layout) -> RepositoryConfig {
    // One manifest per tile and year: a commit rewrites only the manifests of the tiles it
    // touched, so commits stay cheap however full the cube gets.
    let n = layout.tile_pixels.div_ceil(layout.chunk_pixels) as u32;
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
    for level in layout.levels() {
        let n = level
            .tile_pixels
            .map(|t| (t / level.chunk) as u32)
            .unwrap_or(u32::MAX);
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
    .merge(open_config())
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
/// manifest it writes or reads, up to 15 M references by default: a whole-GLAD write would
/// hold the references of every tile it wrote (2.24 M, hundreds of MB) until it ends. A
/// manifest is read again only when its tile is rewritten or looked at, so a few dozen
/// tiles' worth is plenty.
const MANIFEST_CACHE_REFS: u64 = 100_000;

/// What every open adds over the repository's stored config (cubes laid out before these
/// settings included): no manifest preload, a manifest cache bounded by the machine.
fn open_config() -> RepositoryConfig {
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
    /// Create the repository (or, with `force`, reuse it) and commit the cube's layout:
    /// the data variable with no chunk written, and its coordinates.
    pub async fn init(
        location: RepoLocation,
        layout: Layout,
        options: &InitOptions,
    ) -> Result<Self, CubeError> {
        let (storage, exists) = storage_and_existence(&location, true).await?;
        let mut layout = layout;
        layout.cube_id = crate::scaleout::plan::new_id();

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
            coverage_cache: CoverageCache::for_repository(&location.key()),
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
        write_layout(&store, &self.layout).await?;
        let session = store.session();
        let mut session = session.write().await;
        let mut props = SnapshotProperties::new();
        props.insert(
            LAYOUT_ATTR.into(),
            json!({ "init": { "shape": self.layout.shape(), "chunks": self.layout.chunk_shape() } }),
        );
        commit(self, &mut session, "initialize array", props).await?;
        Ok(())
    }

    /// Open an existing cube on a branch; its layout is read from the branch head.
    pub async fn open(location: RepoLocation, branch: &str) -> Result<Self, CubeError> {
        let (storage, exists) = storage_and_existence(&location, false).await?;

        if !exists {
            return Err(CubeError::NotACube {
                location: location.to_string(),
            });
        }
        let repo = Repository::open(storage)
            .config(open_config())
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
        let layout = read_layout(session)
            .await?
            .ok_or_else(|| CubeError::NotACube {
                location: location.to_string(),
            })?;
        Ok(Self {
            coverage_cache: CoverageCache::for_repository(&location.key()),
            location,
            repo: Arc::new(repo),
            layout,
            branch: branch.to_string(),
        })
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

    /// Refresh the repository handle (to see commits by other processes).
    pub async fn reopen(&self) -> Result<Self, CubeError> {
        Self::open(self.location.clone(), &self.branch).await
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

/// The storage of a location, and whether it holds a repository.
async fn storage_and_existence(
    location: &RepoLocation,
    create: bool,
) -> Result<(Arc<dyn icechunk::Storage + Send + Sync>, bool), CubeError> {
    let storage = location.storage(create).await?;
    let exists = Repository::exists(Arc::clone(&storage), None)
        .await
        .map_err(|e| location.error(e))?;
    Ok((storage, exists))
}

/// Commit a session to the cube's branch, rebasing over concurrent commits when they
/// touched other chunks. The reference lock is held throughout, so commits from other
/// processes are seen and rebased over, never overwritten.
pub(crate) async fn commit(
    cube: &Cube,
    session: &mut Session,
    message: &str,
    properties: SnapshotProperties,
) -> Result<SnapshotId, CubeError> {
    let _lock = RefLock::acquire(&cube.location).await?;
    let solver = BasicConflictSolver::default();
    session
        .commit(message)
        .properties(properties)
        .rebase(&solver, REBASE_ATTEMPTS)
        .execute()
        .await
        .map_err(|e| CubeError::icechunk("committing", e))
}

/// Amend the branch's tip commit with a session opened on it: the tip is replaced by one
/// holding its changes and the session's, so the branch gains no commit. Needs spec 2.
/// Under the reference lock; fails if the tip moved since the session opened.
pub(crate) async fn amend(
    cube: &Cube,
    session: &mut Session,
    message: &str,
    properties: SnapshotProperties,
) -> Result<SnapshotId, CubeError> {
    let _lock = RefLock::acquire(&cube.location).await?;
    session
        .commit(message)
        .properties(properties)
        .amend()
        .execute()
        .await
        .map_err(|e| CubeError::icechunk("amending the merge commit", e))
}

async fn read_layout(session: Session) -> Result<Option<Layout>, CubeError> {
    let store = Arc::new(AsyncIcechunkStore::new(session));
    let group = match Group::async_open(store, "/").await {
        Ok(g) => g,
        Err(zarrs::group::GroupCreateError::MissingMetadata) => return Ok(None),
        // The snapshot or its objects could not be read: say so, not "no cube".
        Err(e) => return Err(CubeError::icechunk("reading the cube's root group", e)),
    };
    Layout::from_root_attributes(group.attributes())
}

fn attrs(pairs: impl IntoIterator<Item = (String, Value)>) -> serde_json::Map<String, Value> {
    pairs.into_iter().collect()
}

fn zarr_err<E: Into<super::error::BoxError>>(what: &str) -> impl Fn(E) -> CubeError + '_ {
    move |e| CubeError::icechunk(what, e)
}

/// Write the cube's groups and arrays: the root group, the data variable and its
/// coordinates, and each overview level as a dataset of its own.
async fn write_layout(store: &Arc<AsyncIcechunkStore>, layout: &Layout) -> Result<(), CubeError> {
    write_root_group(store, layout).await?;
    write_dataset(store, layout, 0).await?;
    write_levels(store, layout).await
}

/// The overview levels' groups and datasets (none when the cube has no pyramid).
pub(crate) async fn write_levels(
    store: &Arc<AsyncIcechunkStore>,
    layout: &Layout,
) -> Result<(), CubeError> {
    let levels = layout.levels();
    if levels.is_empty() {
        return Ok(());
    }
    let dataset_attrs = attrs(
        layout
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    GroupBuilder::new()
        .build(Arc::clone(store), "/overviews")
        .map_err(zarr_err("overviews group"))?
        .async_store_metadata()
        .await
        .map_err(zarr_err("overviews group"))?;
    for (i, level) in levels.iter().enumerate() {
        let what = format!("group {}", level.group());
        let mut level_attrs = dataset_attrs.clone();
        level_attrs.insert("overview_factor".into(), json!(level.factor));
        GroupBuilder::new()
            .attributes(level_attrs)
            .build(Arc::clone(store), &format!("/{}", level.group()))
            .map_err(zarr_err(&what))?
            .async_store_metadata()
            .await
            .map_err(zarr_err(&what))?;
        write_dataset(store, layout, i + 1).await?;
    }
    Ok(())
}

/// The root group: the dataset's attributes, the layout, and the multiscales attributes.
pub(crate) async fn write_root_group(
    store: &Arc<AsyncIcechunkStore>,
    layout: &Layout,
) -> Result<(), CubeError> {
    let mut root_attrs = attrs(
        layout
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    root_attrs.insert(
        LAYOUT_ATTR.into(),
        serde_json::to_value(layout).map_err(|e| CubeError::Layout(e.to_string()))?,
    );
    root_attrs.extend(super::overviews::multiscales_attrs(layout));
    GroupBuilder::new()
        .attributes(root_attrs)
        .build(Arc::clone(store), "/")
        .map_err(zarr_err("root group"))?
        .async_store_metadata()
        .await
        .map_err(zarr_err("root group"))?;
    Ok(())
}

/// Level `k`'s dataset (0: the cube itself, at the root): the data variable with no chunk,
/// `year`, `x` and `y` at the level's pixel centres, and `spatial_ref` with its transform.
async fn write_dataset(
    store: &Arc<AsyncIcechunkStore>,
    layout: &Layout,
    k: usize,
) -> Result<(), CubeError> {
    let zstd = || -> Vec<Arc<dyn zarrs::array::BytesToBytesCodecTraits>> {
        vec![Arc::new(zarrs::array::codec::ZstdCodec::new(
            layout.zstd_level,
            false,
        ))]
    };
    let var_path = layout.level_path(k);
    let prefix = var_path
        .rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default();
    let factor = 1u64 << k;

    // The data variable: metadata only, no chunk.
    let mut var_attrs = attrs(
        layout
            .variable_attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    var_attrs.insert("grid_mapping".into(), json!("spatial_ref"));
    var_attrs.insert("coordinates".into(), json!("spatial_ref"));
    let what = format!("data variable {var_path}");
    super::writer::level_builder(layout, k)
        .attributes(var_attrs)
        .build(Arc::clone(store), &var_path)
        .map_err(zarr_err(&what))?
        .async_store_metadata()
        .await
        .map_err(zarr_err(&what))?;

    // year
    let years: Vec<i64> = layout.years.iter().map(|&y| y as i64).collect();
    let year = ArrayBuilder::new(
        vec![years.len() as u64],
        vec![years.len() as u64],
        data_type::int64(),
        0i64,
    )
    .bytes_to_bytes_codecs(zstd())
    .dimension_names(Some(["year"]))
    .attributes(attrs([("long_name".to_string(), json!("year"))]))
    .build(Arc::clone(store), &format!("{prefix}/year"))
    .map_err(zarr_err("year coordinate"))?;
    year.async_store_metadata()
        .await
        .map_err(zarr_err("year coordinate"))?;
    year.async_store_chunk(&[0], years)
        .await
        .map_err(zarr_err("year coordinate"))?;

    // x and y pixel centres
    let (shape, _) = layout.level_shape(k);
    let p = layout.grid().pixel_size() * factor as f64;
    let xs: Vec<f64> = (0..shape[2])
        .map(|i| layout.origin_lon as f64 + (i as f64 + 0.5) * p)
        .collect();
    let ys: Vec<f64> = (0..shape[1])
        .map(|j| layout.origin_lat as f64 - (j as f64 + 0.5) * p)
        .collect();
    for (name, values, std_name, units, axis) in [
        ("x", xs, "longitude", "degrees_east", "X"),
        ("y", ys, "latitude", "degrees_north", "Y"),
    ] {
        let what = format!("{name} coordinate");
        let len = values.len() as u64;
        let chunk = len.min(layout.tile_pixels * 4);
        let array = ArrayBuilder::new(vec![len], vec![chunk], data_type::float64(), f64::NAN)
            .bytes_to_bytes_codecs(zstd())
            .dimension_names(Some([name]))
            .attributes(attrs([
                ("standard_name".to_string(), json!(std_name)),
                ("long_name".to_string(), json!(std_name)),
                ("units".to_string(), json!(units)),
                ("axis".to_string(), json!(axis)),
            ]))
            .build(Arc::clone(store), &format!("{prefix}/{name}"))
            .map_err(zarr_err(&what))?;
        array
            .async_store_metadata()
            .await
            .map_err(zarr_err(&what))?;
        for (i, part) in values.chunks(chunk as usize).enumerate() {
            let mut buf = part.to_vec();
            buf.resize(chunk as usize, f64::NAN);
            array
                .async_store_chunk(&[i as u64], buf)
                .await
                .map_err(zarr_err(&what))?;
        }
    }

    // spatial_ref: scalar carrying the CRS
    let wkt = crate::source::crs_wkt(layout.epsg)
        .map_err(|e| CubeError::Layout(format!("CRS EPSG:{}: {e}", layout.epsg)))?;
    let sr = ArrayBuilder::new(
        Vec::<u64>::new(),
        Vec::<u64>::new(),
        data_type::int64(),
        0i64,
    )
    .attributes(attrs([
        ("crs_wkt".to_string(), json!(wkt)),
        ("spatial_ref".to_string(), json!(wkt)),
        (
            "GeoTransform".to_string(),
            json!(layout.geotransform_attr_at(factor)),
        ),
        ("grid_mapping_name".to_string(), json!("latitude_longitude")),
    ]))
    .build(Arc::clone(store), &format!("{prefix}/spatial_ref"))
    .map_err(zarr_err("spatial_ref"))?;
    sr.async_store_metadata()
        .await
        .map_err(zarr_err("spatial_ref"))?;
    Ok(())
}

/// The tiles of a written-tiles map as snapshot properties.
pub(crate) fn props_key() -> &'static str {
    LAYOUT_ATTR
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
