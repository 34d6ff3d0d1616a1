//! The cube's overview pyramid in the repository: the levels' metadata, the `multiscales`
//! attributes that point readers at them, and the refresh of the coarse levels at commit.
//!
//! Level `k` (factor `2^k`) is the group `overviews/{2^k}`, a dataset like the root: the data
//! variable with the level's shape and chunks, `year`, `x` and `y` at the level's pixel
//! centres, and `spatial_ref` with the level's GeoTransform. The root group's `multiscales`
//! attribute (zarr-conventions `multiscales`, array layout) lists level 0 and every overview,
//! each derived from the one before by a 2×2 reduction.
//!
//! Invariants:
//! - the levels a tile maps to whole chunks of are written with the tile, in its session
//!   (`ingest`); the coarse levels (one chunk spanning several tiles) are refreshed here, from
//!   the level above, for the chunks of the tiles a commit records, right before that commit
//!   lands and after any rebase (`commit::commit_refreshing`), so at every snapshot each level is
//!   the 2×2 reduction of the level above;
//! - a refresh reads and writes only the chunks of the tiles committed: its cost follows the
//!   commit, not the cube.

use std::collections::BTreeSet;

use icechunk::format::{ByteRange, ChunkIndices, Path, SnapshotId};
use icechunk::session::Session;

use super::history::WrittenTiles;
use super::writer::ChunkEncoder;
use super::{Cube, CubeError, Layout, LayoutError};
use crate::overview::reduce;

/// Chunk reads in flight at once when a region is read.
const READS_IN_FLIGHT: usize = 32;

/// The chunks of level `k` (1-based; its factor `factor`, `height` rows, chunk `chunk`) that
/// the tiles cover, even in part.
fn chunks_of_tiles(
    layout: &Layout,
    tiles: &WrittenTiles,
    factor: u64,
    (height, width, chunk): (u64, u64, u64),
) -> Result<BTreeSet<[u64; 3]>, CubeError> {
    let grid = layout.grid();
    let t = grid.tile_pixels;
    let mut out = BTreeSet::new();
    for (year, names) in tiles {
        let Some(yi) = layout.year_index(*year) else {
            continue;
        };
        for tile in names.keys() {
            let cell = grid.cell(*tile)?;
            let region = grid.region(cell);
            let (y0, x0) = (region.y0, region.x0);
            let (r0, r1) = (y0 / factor, (y0 + t).div_ceil(factor).min(height));
            let (c0, c1) = (x0 / factor, (x0 + t).div_ceil(factor).min(width));
            if r0 >= r1 || c0 >= c1 {
                continue;
            }
            for cy in r0 / chunk..=(r1 - 1) / chunk {
                for cx in c0 / chunk..=(c1 - 1) / chunk {
                    out.insert([yi as u64, cy, cx]);
                }
            }
        }
    }
    Ok(out)
}

/// Recompute, from the level above, every chunk of the coarse levels that `tiles` cover,
/// finest first, writing each into the session (an all-fill chunk is removed). Returns the
/// chunks refreshed.
pub(crate) async fn refresh_coarse(
    session: &mut Session,
    layout: &Layout,
    tiles: &WrittenTiles,
) -> Result<u64, CubeError> {
    let levels = layout.levels();
    let Some(first) = levels.iter().position(|l| l.is_coarse()) else {
        return Ok(0);
    };
    let Some(o) = layout.overviews else {
        return Ok(0);
    };
    let fill = layout.fill_value;
    let mut refreshed = 0;
    for k in first + 1..=levels.len() {
        let level = levels[k - 1];
        let (h, w, c) = (level.height, level.width, level.chunk);
        let (above_shape, above_chunk) = layout.level_shape(k - 1);
        let (sh, sw) = (above_shape[1], above_shape[2]);
        let (above, path) = (layout.level_path(k - 1), layout.level_path(k));
        let above =
            Path::new(&above).map_err(LayoutError::node_path(&above, Some("level path")))?;
        let path = Path::new(&path).map_err(LayoutError::node_path(&path, Some("level path")))?;
        let above_enc = ChunkEncoder::for_level(layout, k - 1)?;
        let enc = ChunkEncoder::for_level(layout, k)?;
        for [yi, cy, cx] in chunks_of_tiles(layout, tiles, level.factor, (h, w, c))? {
            let (ry0, ry1) = (cy * c, ((cy + 1) * c).min(h));
            let (rx0, rx1) = (cx * c, ((cx + 1) * c).min(w));
            let rows = (2 * ry0, (2 * ry1).min(sh));
            let cols = (2 * rx0, (2 * rx1).min(sw));
            let src = read_region(
                session,
                &above,
                &above_enc,
                above_chunk[1],
                yi,
                rows,
                cols,
                fill,
            )
            .await?;
            let (srw, srh) = ((cols.1 - cols.0) as usize, (rows.1 - rows.0) as usize);
            let reduced = reduce(&src, srw, srh, fill, o.resampling);
            let (ow, oh) = ((rx1 - rx0) as usize, (ry1 - ry0) as usize);
            let c = c as usize;
            let mut pixels = vec![fill; c * c];
            for r in 0..oh {
                pixels[r * c..r * c + ow].copy_from_slice(&reduced[r * ow..(r + 1) * ow]);
            }
            let idx = ChunkIndices(vec![yi as u32, cy as u32, cx as u32]);
            let payload = match enc.encode(&pixels)? {
                None => None,
                Some(bytes) => {
                    let writer = session
                        .get_chunk_writer(&path, &idx)
                        .map_err(|e| CubeError::icechunk("preparing an overview upload", e))?;
                    Some(writer(bytes).await.map_err(|e| {
                        CubeError::icechunk(format!("uploading overview chunk {idx:?}"), e)
                    })?)
                }
            };
            session
                .set_chunk_refs(path.clone(), [(idx, payload)])
                .await
                .map_err(|e| CubeError::icechunk("recording an overview chunk", e))?;
            refreshed += 1;
        }
    }
    Ok(refreshed)
}

/// One stored chunk's bytes (`None`: not stored, all fill), with its (row, column).
async fn read_chunk(
    session: &Session,
    path: &Path,
    [yi, cy, cx]: [u64; 3],
) -> Result<((u64, u64), Option<bytes::Bytes>), CubeError> {
    let idx = ChunkIndices(vec![yi as u32, cy as u32, cx as u32]);
    let reading = |e| CubeError::icechunk(format!("reading chunk {idx:?} of {path}"), e);
    let bytes = match session
        .get_chunk_reader(path, &idx, &ByteRange::From(0))
        .await
        .map_err(reading)?
    {
        Some(fetch) => Some(fetch.await.map_err(reading)?),
        None => None,
    };
    Ok(((cy, cx), bytes))
}

/// Read rows `rows` and columns `cols` of year `yi` of a level (chunk side `chunk`) from a
/// session, its chunks fetched side by side; missing chunks read as fill.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_region(
    session: &Session,
    path: &Path,
    encoder: &ChunkEncoder,
    chunk: u64,
    yi: u64,
    rows: (u64, u64),
    cols: (u64, u64),
    fill: u8,
) -> Result<Vec<u8>, CubeError> {
    let (w, h) = ((cols.1 - cols.0) as usize, (rows.1 - rows.0) as usize);
    let mut out = vec![fill; w * h];
    if w == 0 || h == 0 {
        return Ok(out);
    }
    let mut wanted = Vec::new();
    for cy in rows.0 / chunk..=(rows.1 - 1) / chunk {
        for cx in cols.0 / chunk..=(cols.1 - 1) / chunk {
            wanted.push((cy, cx));
        }
    }
    let mut fetched = Vec::with_capacity(wanted.len());
    for group in wanted.chunks(READS_IN_FLIGHT) {
        let reads = group
            .iter()
            .map(|&(cy, cx)| read_chunk(session, path, [yi, cy, cx]));
        fetched.extend(futures::future::try_join_all(reads).await?);
    }
    let c = chunk as usize;
    for ((cy, cx), bytes) in fetched {
        let Some(bytes) = bytes else {
            continue;
        };
        let pixels = encoder.decode(&bytes)?;
        let (y0, x0) = (cy * chunk, cx * chunk);
        let (a, b) = (rows.0.max(y0), rows.1.min(y0 + chunk));
        let (l, r) = (cols.0.max(x0), cols.1.min(x0 + chunk));
        for y in a..b {
            let from = (y - y0) as usize * c + (l - x0) as usize;
            let to = (y - rows.0) as usize * w + (l - cols.0) as usize;
            let n = (r - l) as usize;
            out[to..to + n].copy_from_slice(&pixels[from..from + n]);
        }
    }
    Ok(out)
}

/// One year of one level (or a window of it) read back from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelImage {
    /// 0: the cube itself; `k`: the `k`th overview.
    pub level: usize,
    /// Level-0 pixels a side one pixel covers.
    pub factor: u64,
    /// The window's first row and column in the level.
    pub row0: u64,
    pub col0: u64,
    pub width: usize,
    pub height: usize,
    /// Row-major.
    pub pixels: Vec<u8>,
}

/// The most pixels one read of a level may return (a whole global level 0 is not a picture).
pub const MAX_LEVEL_READ: u64 = 64 << 20;

impl Cube {
    /// Every level, level 0 first, as (width, height, factor).
    pub fn level_sizes(&self) -> Vec<(u64, u64, u64)> {
        let (h, w) = self.layout.grid().shape();
        std::iter::once((w, h, 1))
            .chain(
                self.layout
                    .levels()
                    .iter()
                    .map(|l| (l.width, l.height, l.factor)),
            )
            .collect()
    }

    /// The coarsest level at least `width` pixels wide: what fills a view that wide with
    /// the least reading (the finest level when none is that wide).
    pub fn level_for_width(&self, width: u64) -> usize {
        self.level_sizes()
            .iter()
            .rposition(|(w, _, _)| *w >= width)
            .unwrap_or(0)
    }

    /// The level whose factor is `factor`, if the cube has it.
    pub fn level_of_factor(&self, factor: u64) -> Option<usize> {
        self.level_sizes().iter().position(|(_, _, f)| *f == factor)
    }

    /// Read year `year` of level `k` at a snapshot (`None`: the branch head), whole or the
    /// window `rows`×`cols` (in the level's pixels, clipped to it).
    pub async fn read_level(
        &self,
        snapshot: Option<&str>,
        k: usize,
        year: i32,
        window: Option<((u64, u64), (u64, u64))>,
    ) -> Result<LevelImage, CubeError> {
        let sizes = self.level_sizes();
        let &(w, h, factor) = sizes.get(k).ok_or(LayoutError::NoLevel { level: k })?;
        let yi = self
            .layout
            .year_index(year)
            .ok_or(LayoutError::YearNotInCube { year })?;
        let ((r0, r1), (c0, c1)) = window.unwrap_or(((0, h), (0, w)));
        let (r0, r1, c0, c1) = (r0.min(h), r1.min(h), c0.min(w), c1.min(w));
        if (r1 - r0) * (c1 - c0) > MAX_LEVEL_READ {
            if sizes.len() == 1 {
                return Err(LayoutError::TooLargeNoOverviews {
                    width: w,
                    height: h,
                }
                .into());
            }
            return Err(LayoutError::LevelTooLarge {
                level: k,
                factor,
                width: c1 - c0,
                height: r1 - r0,
            }
            .into());
        }
        let session = match snapshot {
            None => self.head_session().await?,
            Some(id) => {
                let id = SnapshotId::try_from(id)
                    .map_err(|_| CubeError::UnknownSnapshot(id.to_string()))?;
                self.session_at(&icechunk::repository::VersionInfo::SnapshotId(id))
                    .await?
            }
        };
        let level = self.layout.level_path(k);
        let path = Path::new(&level).map_err(LayoutError::node_path(&level, Some("level path")))?;
        let (_, chunk) = self.layout.level_shape(k);
        let encoder = ChunkEncoder::for_level(&self.layout, k)?;
        let pixels = read_region(
            &session,
            &path,
            &encoder,
            chunk[1],
            yi as u64,
            (r0, r1),
            (c0, c1),
            self.layout.fill_value,
        )
        .await?;
        Ok(LevelImage {
            level: k,
            factor,
            row0: r0,
            col0: c0,
            width: (c1 - c0) as usize,
            height: (r1 - r0) as usize,
            pixels,
        })
    }
}

impl Cube {
    /// A tile of the branch head decimated to at most `n`×`n` samples, read from the
    /// coarsest level where the tile is still at least `n` pixels a side (level 0 when no
    /// overview is): returns the side and the samples, row-major.
    pub async fn quicklook_fitting(
        &self,
        year: i32,
        tile: crate::grid::TileName,
        n: usize,
    ) -> Result<(usize, Vec<u8>), CubeError> {
        let grid = self.layout.grid();
        let t = grid.tile_pixels;
        let k = self
            .level_sizes()
            .iter()
            .rposition(|(_, _, f)| t / f >= n as u64)
            .unwrap_or(0);
        if k == 0 {
            return self.quicklook_head(year, tile, n).await;
        }
        let f = self.level_sizes()[k].2;
        let cell = grid.cell(tile)?;
        let region = grid.region(cell);
        let rows = (region.y0 / f, (region.y0 + t).div_ceil(f));
        let cols = (region.x0 / f, (region.x0 + t).div_ceil(f));
        let image = self.read_level(None, k, year, Some((rows, cols))).await?;
        let side = n.min(image.width).min(image.height).max(1);
        let mut out = Vec::with_capacity(side * side);
        for r in 0..side {
            for c in 0..side {
                let y = r * image.height / side;
                let x = c * image.width / side;
                out.push(image.pixels[y * image.width + x]);
            }
        }
        Ok((side, out))
    }
}
