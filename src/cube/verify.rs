//! The cross-check against stored objects: every manifest the branch head's snapshot lists,
//! and every chunk those manifests reference, in every array of the cube (the data variable
//! and each overview level), must be in storage. `status` reads what snapshots record
//! (references), never the objects; an object deleted behind Icechunk's back shows here, named
//! by the level and tile (and year) it belongs to.
//!
//! Invariants: costs one listing of the chunk objects, one of the manifests, and one pass over
//! the head's manifests (O(chunks)): it is an explicit command, never run on open or refresh.
//! A manifest that is gone is reported with the tiles it held and its chunks are not read (they
//! cannot be); the other manifests are still checked. [`Cube::lost_manifests`] is the cheap
//! part alone (O(manifests)), for `status`; [`Cube::lost_manifests_of_tiles`] only the
//! manifests a commit of some tiles reads (O(tiles)), for `write`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::{StreamExt, TryStreamExt};
use icechunk::format::manifest::ChunkPayload;
use icechunk::format::snapshot::NodeData;
use icechunk::format::{IcechunkFormatErrorKind, Path, SnapshotId};
use serde::Serialize;

use super::{Cube, CubeError, Layout, LayoutError};

/// What `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Chunk references checked against storage, in every array.
    pub references: u64,
    /// Chunk objects in storage.
    pub objects: u64,
    /// Manifests of the snapshot checked.
    pub manifests: u64,
    /// Referenced chunk objects that are not in storage, by where they belong ("2000/20S_060W"
    /// for the cube itself, "2000/20S_060W ×4" for a level written with the tile, "2000 ×128
    /// chunk 0,1" for a coarse level), and how many.
    pub missing: BTreeMap<String, u64>,
    /// Manifests the snapshot lists that are not in storage.
    pub lost_manifests: Vec<LostManifest>,
    /// Referenced chunk objects that storage holds shorter than the reference says (cut
    /// short: a reader fails on them), by where they belong, and how many.
    #[serde(default)]
    pub short: BTreeMap<String, u64>,
    /// Chunks of an overview level that are not referenced although level 0 holds data
    /// under them (a reader finds fill there), by where they belong, and how many.
    #[serde(default)]
    pub holes: BTreeMap<String, u64>,
    /// The written tiles (year, tile) a reader would meet a hole in, on any level: a lost or
    /// short object, a level chunk missing.
    #[serde(skip)]
    pub tiles: BTreeSet<(i32, crate::grid::TileName)>,
}

/// A manifest the snapshot lists that storage no longer has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostManifest {
    /// The manifest's id (its object is `manifests/{id}`).
    pub manifest: String,
    /// The array it belongs to (`/VAR`, `/overviews/4/VAR`).
    pub array: String,
    /// The level's factor (1: the cube itself).
    pub factor: u64,
    /// The chunk references it held.
    pub chunks: u64,
    /// Where its chunks belong ("2000/20S_060W", or "2000 ×128 chunk 0,1" on a coarse level).
    pub tiles: Vec<String>,
    /// The (year, tile) pairs of level 0 it held (empty for a level).
    #[serde(skip)]
    pub level0_tiles: Vec<(i32, crate::grid::TileName)>,
    /// The years its chunks belong to (a manifest lies within one year when it follows the
    /// splits).
    #[serde(skip)]
    pub years: Vec<i32>,
}

impl std::fmt::Display for LostManifest {
    /// "ID of /VAR (1600 chunk references of 2000/20S_060W)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} ({} chunk references of {})",
            self.manifest,
            self.array,
            self.chunks,
            self.tiles.join(" ")
        )
    }
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty()
            && self.lost_manifests.is_empty()
            && self.short.is_empty()
            && self.holes.is_empty()
    }
}

/// Where a chunk of level `k` belongs, for people: its tile and year (and the level's factor
/// beyond level 0), or on a coarse level its year and chunk.
pub(super) fn chunk_label(layout: &Layout, k: usize, coords: &[u32]) -> String {
    let levels = layout.levels();
    let Some(level) = k.checked_sub(1).and_then(|i| levels.get(i)) else {
        return layout
            .tile_of_chunk(coords)
            .map(|(y, t)| format!("{y}/{t}"))
            .unwrap_or_else(|| format!("chunk {coords:?}"));
    };
    let year = coords
        .first()
        .and_then(|i| layout.years.get(*i as usize))
        .map(|y| y.to_string())
        .unwrap_or_else(|| "?".into());
    match (level.tile_pixels, coords) {
        (Some(_), [yi, r, c]) => {
            // The level-0 chunk at the same place names the tile.
            let per = layout.chunk_pixels;
            let (y0, x0) = (
                u64::from(*r) * level.chunk * level.factor,
                u64::from(*c) * level.chunk * level.factor,
            );
            let chunk0 = [*yi, (y0 / per) as u32, (x0 / per) as u32];
            match layout.tile_of_chunk(&chunk0) {
                Some((y, t)) => format!("{y}/{t} ×{}", level.factor),
                None => format!("{year} ×{} chunk {r},{c}", level.factor),
            }
        }
        (_, [_, r, c]) => format!("{year} ×{} chunk {r},{c}", level.factor),
        _ => format!("×{} chunk {coords:?}", level.factor),
    }
}

/// The ids of the objects stored under `prefix` (`chunks`, `manifests`).
pub(super) async fn stored_ids(cube: &Cube, prefix: &str) -> Result<HashSet<String>, CubeError> {
    let storage = cube.repo.storage();
    let ctx = cube.repo.storage_context();
    let listing = |e| CubeError::icechunk(format!("listing the {prefix} objects"), e);
    let mut stored = HashSet::new();
    let mut objects = storage.list_objects(&ctx, prefix).await.map_err(listing)?;
    while let Some(info) = objects.try_next().await.map_err(listing)? {
        let id = info.id.rsplit('/').next().unwrap_or(&info.id).to_string();
        stored.insert(id);
    }
    Ok(stored)
}

/// The chunk objects in storage, by id, with their sizes (one listing; 12-byte keys, so the
/// ~5.4 M chunks of a 2.2 TB cube with its pyramid take ~130 MB).
pub(super) async fn stored_chunk_sizes(
    cube: &Cube,
) -> Result<std::collections::HashMap<[u8; 12], u64>, CubeError> {
    let storage = cube.repo.storage();
    let ctx = cube.repo.storage_context();
    let listing = |e| CubeError::icechunk("listing the chunks objects", e);
    let mut stored = std::collections::HashMap::new();
    let mut objects = storage
        .list_objects(&ctx, "chunks")
        .await
        .map_err(listing)?;
    while let Some(info) = objects.try_next().await.map_err(listing)? {
        let id = info.id.rsplit('/').next().unwrap_or(&info.id);
        if let Ok(id) = icechunk::format::ChunkId::try_from(id) {
            stored.insert(id.0, info.size_bytes);
        }
    }
    Ok(stored)
}

/// The tile of the first level-0 chunk under chunk `coords` of level `k` (0: the cube).
pub(super) fn tile_under(
    layout: &Layout,
    k: usize,
    coords: &[u32],
) -> Option<(i32, crate::grid::TileName)> {
    let [yi, r, c] = coords else {
        return None;
    };
    let levels = layout.levels();
    let Some(level) = k.checked_sub(1).and_then(|i| levels.get(i)) else {
        return layout.tile_of_chunk(coords);
    };
    let per = layout.chunk_pixels;
    let (y0, x0) = (
        u64::from(*r) * level.chunk * level.factor,
        u64::from(*c) * level.chunk * level.factor,
    );
    layout.tile_of_chunk(&[*yi, (y0 / per) as u32, (x0 / per) as u32])
}

/// The level-`k` chunks (year index, row, column) under a level-0 chunk.
fn chunks_under(layout: &Layout, k: usize, coord: &[u32]) -> Vec<(u32, u32, u32)> {
    let levels = layout.levels();
    let (Some(level), [yi, r, c]) = (k.checked_sub(1).and_then(|i| levels.get(i)), coord) else {
        return Vec::new();
    };
    let per = layout.chunk_pixels;
    let span = |i: u32, extent: u64| -> std::ops::RangeInclusive<u32> {
        let p0 = u64::from(i) * per;
        let limit = extent * level.factor;
        if p0 >= limit {
            #[allow(clippy::reversed_empty_ranges)]
            return 1..=0;
        }
        let p1 = ((u64::from(i) + 1) * per).min(limit) - 1;
        let a = p0 / level.factor / level.chunk;
        let b = p1 / level.factor / level.chunk;
        (a as u32)..=(b as u32)
    };
    let mut out = Vec::new();
    for rr in span(*r, level.height) {
        for cc in span(*c, level.width) {
            out.push((*yi, rr, cc));
        }
    }
    out
}

/// One manifest of one array of a snapshot.
pub(super) struct ManifestOf {
    pub(super) k: usize,
    pub(super) array: String,
    pub(super) node: icechunk::format::NodeId,
    pub(super) id: icechunk::format::ManifestId,
    pub(super) size: u64,
    pub(super) chunks: u64,
    pub(super) first: Vec<u32>,
    pub(super) last: Vec<u32>,
}

impl Cube {
    /// Every manifest of every array of the cube in snapshot `id`.
    pub(super) async fn manifests_of(&self, id: &SnapshotId) -> Result<Vec<ManifestOf>, CubeError> {
        let snapshot = self
            .repo
            .asset_manager()
            .fetch_snapshot(id)
            .await
            .map_err(|e| CubeError::icechunk(format!("reading snapshot {id}"), e))?;
        let mut out = Vec::new();
        for k in 0..=self.layout.levels().len() {
            let array = self.layout.level_path(k);
            let path = Path::new(&array).map_err(LayoutError::node_path(&array, None))?;
            let node = match snapshot.get_node(&path) {
                Ok(node) => node,
                Err(e) if matches!(e.kind(), IcechunkFormatErrorKind::NodeNotFound { .. }) => {
                    continue;
                }
                Err(e) => return Err(CubeError::icechunk(format!("reading {array}"), e)),
            };
            let NodeData::Array { manifests, .. } = &node.node_data else {
                continue;
            };
            for mref in manifests {
                let info = snapshot
                    .manifest_info(&mref.object_id)
                    .map_err(|e| CubeError::icechunk("reading the manifest list", e))?;
                out.push(ManifestOf {
                    k,
                    array: array.clone(),
                    node: node.id.clone(),
                    id: mref.object_id.clone(),
                    size: info.as_ref().map_or(0, |i| i.size_bytes),
                    chunks: info.as_ref().map_or(0, |i| u64::from(i.num_chunk_refs)),
                    first: mref.extents.iter().map(|r| r.start).collect(),
                    last: mref
                        .extents
                        .iter()
                        .map(|r| r.end.saturating_sub(1))
                        .collect(),
                });
            }
        }
        Ok(out)
    }

    /// What a lost manifest held, by its extent.
    pub(super) fn lost(&self, m: &ManifestOf) -> LostManifest {
        let mut tiles = BTreeSet::new();
        let mut level0 = Vec::new();
        let (a, b) = (
            chunk_label(&self.layout, m.k, &m.first),
            chunk_label(&self.layout, m.k, &m.last),
        );
        tiles.insert(a.clone());
        if b != a {
            tiles.insert(format!("… {b}"));
        }
        if m.k == 0
            && let Some(key) = self.layout.tile_of_chunk(&m.first)
            && self.layout.tile_of_chunk(&m.last) == Some(key)
        {
            level0.push(key);
        }
        LostManifest {
            manifest: m.id.to_string(),
            array: m.array.clone(),
            factor: m
                .k
                .checked_sub(1)
                .and_then(|i| self.layout.levels().get(i).map(|l| l.factor))
                .unwrap_or(1),
            chunks: m.chunks,
            tiles: tiles.into_iter().collect(),
            level0_tiles: level0,
            years: {
                let year =
                    |i: Option<&u32>| i.and_then(|&i| self.layout.years.get(i as usize).copied());
                match (year(m.first.first()), year(m.last.first())) {
                    (Some(a), Some(b)) => self
                        .layout
                        .years
                        .iter()
                        .copied()
                        .filter(|y| (a..=b).contains(y))
                        .collect(),
                    _ => Vec::new(),
                }
            },
        }
    }

    /// The manifests snapshot `id` lists that storage no longer has, with what they held:
    /// one listing of the manifests and one snapshot read (O(manifests), never O(chunks)).
    /// What it found is kept ([`Cube::known_lost_manifests`]).
    pub async fn lost_manifests(&self, id: &SnapshotId) -> Result<Vec<LostManifest>, CubeError> {
        let at = chrono::Utc::now().to_rfc3339();
        let (stored, manifests) =
            futures::try_join!(stored_ids(self, "manifests"), self.manifests_of(id))?;
        let lost: Vec<&ManifestOf> = manifests
            .iter()
            .filter(|m| !stored.contains(&m.id.to_string()))
            .collect();
        self.keep_manifests_listed(at, lost.iter().map(|m| m.id.to_string()).collect());
        Ok(lost.into_iter().map(|m| self.lost(m)).collect())
    }

    /// Keep what a listing of the manifest objects found (replacing what was kept).
    pub(super) fn keep_manifests_listed(&self, at: String, lost: Vec<String>) {
        self.coverage_cache
            .put_manifests_listed(&super::ManifestsListed { at, lost });
    }

    /// The manifests of snapshot `id` known lost from storage, as the last listing of the
    /// manifest objects found them (`verify`, `repair`, [`Cube::lost_manifests`], a write's
    /// lookups), and what that listing was, if there was one here: no listing, and no request
    /// at all when none is known lost. A lost manifest is rare and `verify`'s to find; this is
    /// what `status` shows, so that its cost follows the tiles.
    pub async fn known_lost_manifests(
        &self,
        id: &SnapshotId,
    ) -> Result<(Vec<LostManifest>, Option<super::ManifestsListed>), CubeError> {
        let listed = self.coverage_cache.manifests_listed();
        let known: HashSet<&str> = listed
            .iter()
            .flat_map(|l| l.lost.iter().map(String::as_str))
            .collect();
        if known.is_empty() {
            return Ok((Vec::new(), listed));
        }
        let lost = self
            .manifests_of(id)
            .await?
            .iter()
            .filter(|m| known.contains(m.id.to_string().as_str()))
            .map(|m| self.lost(m))
            .collect();
        Ok((lost, listed))
    }

    /// [`Cube::lost_manifests`] of a snapshot named as `tilecube log` shows it.
    pub async fn lost_manifests_of_snapshot(
        &self,
        id: &str,
    ) -> Result<Vec<LostManifest>, CubeError> {
        let sid =
            SnapshotId::try_from(id).map_err(|_| CubeError::UnknownSnapshot(id.to_string()))?;
        self.lost_manifests(&sid).await
    }

    /// What every branch head and tag reaches that storage no longer has, as people read it:
    /// "tag v1 (snapshot S): manifest M of /VAR (… of 2000/10N_020E) is not in storage";
    /// one listing of the manifests and a snapshot read a ref (what `gc` names when it cannot
    /// read an object).
    pub async fn unreadable_refs(&self) -> Result<Vec<(String, String)>, CubeError> {
        let stored = stored_ids(self, "manifests").await?;
        let mut refs: Vec<(String, SnapshotId)> = Vec::new();
        let listing = |e| CubeError::icechunk("listing the refs", e);
        for b in self.repo.list_branches().await.map_err(listing)? {
            if let Ok(id) = self.repo.lookup_branch(&b).await {
                refs.push((format!("branch {b}"), id));
            }
        }
        for t in self.repo.list_tags().await.map_err(listing)? {
            if let Ok(id) = self.repo.lookup_tag(&t).await {
                refs.push((format!("tag {t}"), id));
            }
        }
        let mut out = Vec::new();
        for (name, id) in refs {
            // The ref's own snapshot first, then its history (gc reads every snapshot a ref
            // reaches): the newest damaged one is named.
            let history = self
                .history_of(&icechunk::repository::VersionInfo::SnapshotId(id.clone()))
                .await
                .unwrap_or_default();
            let mut found = None;
            for (back, commit) in history.iter().enumerate() {
                let Ok(sid) = SnapshotId::try_from(commit.id.as_str()) else {
                    continue;
                };
                match self.manifests_of(&sid).await {
                    Ok(ms) => {
                        if let Some(m) = ms.iter().find(|m| !stored.contains(&m.id.to_string())) {
                            found = Some((
                                back,
                                commit.time,
                                sid,
                                format!(
                                    "lists manifest {} that storage no longer has",
                                    self.lost(m)
                                ),
                            ));
                            break;
                        }
                    }
                    Err(e) => {
                        found = Some((
                            back,
                            commit.time,
                            sid,
                            format!("cannot be read: {}", crate::error_chain(&e)),
                        ));
                        break;
                    }
                }
            }
            let Some((back, time, sid, why)) = found else {
                continue;
            };
            let text = if back == 0 {
                format!("its snapshot {sid} {why}")
            } else {
                let age = (chrono::Utc::now() - time).num_seconds().max(0);
                format!(
                    "snapshot {sid}, {} back in its history, {why}; `tilecube expire --older-than {age}s` drops it and what is older from the history (heads and tags kept), then gc runs",
                    crate::text::plural(back, "commit")
                )
            };
            out.push((name, text));
        }
        Ok(out)
    }

    /// The manifests of snapshot `id` a commit of these tiles (year index, cell) would read,
    /// found lost from storage: its cost follows the tiles, not the cube. A commit reads only
    /// the manifests of the splits it changes (one split a tile and year on level 0 and the
    /// levels written with the tile, one a year on the coarse levels) and carries the others
    /// over by reference, as long as every manifest lies within one split; when one does not
    /// (a cube whose manifests do not follow tiles), Icechunk rewrites it at any commit and
    /// every manifest is checked, as [`Cube::lost_manifests`] does. The manifests found are
    /// looked up one request each (a few at once), or by one listing when they are many.
    pub async fn lost_manifests_of_tiles(
        &self,
        id: &SnapshotId,
        tiles: &[(usize, crate::grid::Cell)],
    ) -> Result<Vec<LostManifest>, CubeError> {
        /// Beyond this many manifests, one listing costs less than a request each.
        const LOOKUPS: usize = 256;
        let manifests = self.manifests_of(id).await?;
        let levels = self.layout.levels();
        let splits: Vec<u64> = (0..=levels.len())
            .map(|k| u64::from(super::repo::split_chunks(&self.layout, k)))
            .collect();
        let split_of = |m: &ManifestOf, at: &[u32]| -> Option<(usize, u32, u64, u64)> {
            let n = *splits.get(m.k)?;
            (at.len() == 3).then(|| (m.k, at[0], u64::from(at[1]) / n, u64::from(at[2]) / n))
        };
        // Each manifest within one split, or Icechunk rewrites it at any commit.
        let within_one = |m: &ManifestOf| {
            let first = split_of(m, &m.first);
            first.is_some() && first == split_of(m, &m.last)
        };
        if !manifests.iter().all(within_one) {
            return self.lost_manifests(id).await;
        }
        // The splits the tiles change, on every level, and those the coarse levels' refresh
        // reads: the level above each coarse chunk the tiles cover, whole.
        let mut touched = HashSet::new();
        let t = self.layout.tile_pixels;
        let shape = |k: usize| -> (u64, u64, u64, u64) {
            match k.checked_sub(1).and_then(|i| levels.get(i)) {
                Some(l) => (l.factor, l.chunk, l.height, l.width),
                None => {
                    let [_, h, w] = self.layout.shape();
                    (1, self.layout.chunk_pixels, h, w)
                }
            }
        };
        for (year, cell) in tiles {
            let Ok(year) = u32::try_from(*year) else {
                continue;
            };
            let (y0, x0) = (u64::from(cell.row) * t, u64::from(cell.col) * t);
            for (k, n) in splits.iter().enumerate() {
                let (factor, chunk, height, width) = shape(k);
                // The tile's rows and columns at level k, as chunk ranges.
                let (r0, r1) = (y0 / factor, (y0 + t).div_ceil(factor).min(height));
                let (c0, c1) = (x0 / factor, (x0 + t).div_ceil(factor).min(width));
                if r0 >= r1 || c0 >= c1 {
                    continue;
                }
                let (cy, cx) = (r0 / chunk..=(r1 - 1) / chunk, c0 / chunk..=(c1 - 1) / chunk);
                for sy in cy.start() / n..=cy.end() / n {
                    for sx in cx.start() / n..=cx.end() / n {
                        touched.insert((k, year, sy, sx));
                    }
                }
                if k == 0 || !levels[k - 1].is_coarse() {
                    continue;
                }
                // A coarse chunk is made from the 2×2 footprint of it on level k - 1.
                let (_, above_chunk, above_h, above_w) = shape(k - 1);
                let above_n = splits[k - 1];
                let rows = (
                    2 * cy.start() * chunk,
                    (2 * (cy.end() + 1) * chunk).min(above_h),
                );
                let cols = (
                    2 * cx.start() * chunk,
                    (2 * (cx.end() + 1) * chunk).min(above_w),
                );
                if rows.0 >= rows.1 || cols.0 >= cols.1 {
                    continue;
                }
                for sy in rows.0 / above_chunk / above_n..=(rows.1 - 1) / above_chunk / above_n {
                    for sx in cols.0 / above_chunk / above_n..=(cols.1 - 1) / above_chunk / above_n
                    {
                        touched.insert((k - 1, year, sy, sx));
                    }
                }
            }
        }
        let read: Vec<&ManifestOf> = manifests
            .iter()
            .filter(|m| split_of(m, &m.first).is_some_and(|s| touched.contains(&s)))
            .collect();
        if read.len() > LOOKUPS {
            let stored = stored_ids(self, "manifests").await?;
            let lost: Vec<&ManifestOf> = read
                .into_iter()
                .filter(|m| !stored.contains(&m.id.to_string()))
                .collect();
            self.coverage_cache
                .add_lost_manifests(&lost.iter().map(|m| m.id.to_string()).collect::<Vec<_>>());
            return Ok(lost.into_iter().map(|m| self.lost(m)).collect());
        }
        let storage = self.repo.storage();
        let ctx = self.repo.storage_context();
        let found: Vec<Option<LostManifest>> = futures::stream::iter(read)
            .map(|m| {
                let (storage, ctx) = (&storage, &ctx);
                async move {
                    let path = format!("manifests/{}", m.id);
                    match storage.get_object_range(ctx, &path, Some(&(0..1))).await {
                        Ok(_) => Ok(None),
                        Err(e)
                            if matches!(
                                e.kind(),
                                icechunk::storage::StorageErrorKind::ObjectNotFound
                            ) =>
                        {
                            Ok(Some(self.lost(m)))
                        }
                        Err(e) => Err(CubeError::icechunk(format!("looking up {path}"), e)),
                    }
                }
            })
            .buffered(16)
            .try_collect()
            .await?;
        let found: Vec<LostManifest> = found.into_iter().flatten().collect();
        // What the lookups found lost, `status` shows too.
        self.coverage_cache
            .add_lost_manifests(&found.iter().map(|l| l.manifest.clone()).collect::<Vec<_>>());
        Ok(found)
    }

    /// Check every manifest and chunk the branch head references against storage.
    pub async fn verify(&self) -> Result<Verification, CubeError> {
        let head = self.head().await?;
        let found = self.scan(&head, |_, _| {}).await?.0;
        // Kept by snapshot, so `status` marks these tiles without a scan of its own.
        let tiles: Vec<_> = found.tiles.iter().copied().collect();
        self.coverage_cache.put_holes(&head.to_string(), &tiles);
        Ok(found)
    }

    /// The cross-check of snapshot `head` against storage: what [`Cube::verify`] reports,
    /// the ids of the lost manifests, and each reference to a lost chunk object handed to
    /// `missing` with its array (the one walk `verify` and `repair` share).
    pub(super) async fn scan(
        &self,
        head: &SnapshotId,
        mut missing: impl FnMut(&str, icechunk::format::ChunkIndices),
    ) -> Result<(Verification, Vec<icechunk::format::ManifestId>), CubeError> {
        let at = chrono::Utc::now().to_rfc3339();
        let chunks = stored_chunk_sizes(self).await?;
        let manifests = stored_ids(self, "manifests").await?;
        let mut out = Verification {
            objects: chunks.len() as u64,
            ..Verification::default()
        };
        let levels = self.layout.levels().len();
        // Level `k`'s chunks that level 0's data implies, each with the first level-0 chunk
        // under it (a level's chunk holds data wherever level 0 does: fill never outvotes
        // data in a reduction); removed as the level's references are met.
        let mut implied: Vec<std::collections::HashMap<(u32, u32, u32), [u32; 3]>> =
            vec![std::collections::HashMap::new(); levels + 1];
        // Levels whose manifests are not all readable: their holes cannot be told.
        let mut unread_levels = BTreeSet::new();
        let tile_of = |coord: &[u32]| self.layout.tile_of_chunk(coord);
        let mut lost = Vec::new();
        for m in self.manifests_of(head).await? {
            out.manifests += 1;
            if !manifests.contains(&m.id.to_string()) {
                let l = self.lost(&m);
                out.tiles.extend(l.level0_tiles.iter().copied());
                out.lost_manifests.push(l);
                lost.push(m.id.clone());
                unread_levels.insert(m.k);
                continue;
            }
            let what = format!("reading manifest {} of {}", m.id, m.array);
            let manifest = self
                .repo
                .asset_manager()
                .fetch_manifest(&m.array, &m.id, m.size)
                .await
                .map_err(|e| CubeError::icechunk(what.clone(), e))?;
            let refs = manifest
                .iter(m.node.clone())
                .map_err(|e| CubeError::icechunk(what.clone(), e))?;
            for r in refs {
                let (coord, payload) = r.map_err(|e| CubeError::icechunk(what.clone(), e))?;
                if let [yi, row, col] = coord.0[..] {
                    if m.k == 0 {
                        for (k, of_level) in implied.iter_mut().enumerate().skip(1) {
                            for at in chunks_under(&self.layout, k, &coord.0) {
                                of_level.entry(at).or_insert([yi, row, col]);
                            }
                        }
                    } else {
                        implied[m.k].remove(&(yi, row, col));
                    }
                }
                let ChunkPayload::Ref(r) = payload else {
                    continue;
                };
                out.references += 1;
                let label = || chunk_label(&self.layout, m.k, &coord.0);
                let bad = match chunks.get(&r.id.0) {
                    None => Some(&mut out.missing),
                    Some(size) if *size < r.offset + r.length => Some(&mut out.short),
                    Some(_) => None,
                };
                if let Some(into) = bad {
                    *into.entry(label()).or_default() += 1;
                    if let Some(t) = tile_under(&self.layout, m.k, &coord.0) {
                        out.tiles.insert(t);
                    }
                    missing(&m.array, coord);
                }
            }
        }
        for (k, left) in implied.iter().enumerate().skip(1) {
            if unread_levels.contains(&k) {
                continue;
            }
            for (at, under) in left {
                let label = chunk_label(&self.layout, k, &[at.0, at.1, at.2]);
                *out.holes.entry(label).or_default() += 1;
                if let Some(t) = tile_of(under) {
                    out.tiles.insert(t);
                }
            }
        }
        self.keep_manifests_listed(at, lost.iter().map(|m| m.to_string()).collect());
        Ok((out, lost))
    }
}
