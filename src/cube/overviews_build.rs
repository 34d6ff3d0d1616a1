//! Building the pyramid of a cube after the fact (`tilecube overviews`): for a cube written
//! before overviews existed, or with them switched off, or to refresh them.
//!
//! Each written tile's level-0 strips are read back from the branch and fed to the same
//! [`TilePyramid`] the ingest uses, so the levels equal those a write with overviews makes;
//! the coarse levels are refreshed as every commit does.
//!
//! Invariants: level 0 is only read, never written, and no commit of this records tiles as
//! written (coverage and history stay as they were); tiles land in batches, each batch one
//! commit holding every level of its tiles; a cube whose pyramid was laid out with other
//! settings is refused, not half rebuilt.

use std::sync::Arc;

use icechunk::format::Path;
use icechunk::format::snapshot::SnapshotProperties;
use icechunk::session::Session;
use serde::Serialize;
use serde_json::json;
use zarrs_icechunk::AsyncIcechunkStore;

use super::commit::commit_refreshing;
use super::history::WrittenTiles;
use super::layout::{LAYOUT_ATTR, Overviews};
use super::overviews::read_region;
use super::writer::{ChunkEncoder, TileChunks};
use super::{Cube, CubeError, LayoutError, TileKey, TileState};
use crate::grid::TileName;
use crate::overview::{TileLevel, TilePyramid};

/// What `tilecube overviews` did.
#[derive(Debug, Default, Serialize)]
pub struct OverviewReport {
    /// Overview levels the cube has.
    pub levels: usize,
    /// Whether this run laid the pyramid out (the cube had none).
    pub laid_out: bool,
    /// Tiles whose levels were computed.
    pub tiles: usize,
    /// Snapshots committed, oldest first.
    pub commits: Vec<String>,
}

impl Cube {
    /// Lay out the pyramid `overviews` if the cube has none, then compute every level of
    /// every tile the branch head holds, `batch` tiles a commit; `progress(done, total)`
    /// follows the tiles.
    pub async fn build_overviews(
        &mut self,
        overviews: Overviews,
        batch: usize,
        progress: impl Fn(usize, usize),
    ) -> Result<OverviewReport, CubeError> {
        // Announced like a write: what it uploads waits for its batch's commit, and gc
        // spares it.
        let announced = self.announce_writer("overviews", None).await?;
        let report = self
            .build_overviews_announced(overviews, batch, progress)
            .await;
        announced.end().await;
        report
    }

    async fn build_overviews_announced(
        &mut self,
        overviews: Overviews,
        batch: usize,
        progress: impl Fn(usize, usize),
    ) -> Result<OverviewReport, CubeError> {
        let mut report = OverviewReport::default();
        match self.layout.overviews {
            // A laid-out pyramid keeps the zstd level its levels were laid out with.
            Some(o)
                if (o.resampling, o.coarsest_width)
                    == (overviews.resampling, overviews.coarsest_width) => {}
            Some(o) => {
                return Err(LayoutError::OverviewsDiffer {
                    cube: o,
                    asked: overviews,
                }
                .into());
            }
            None => {
                let id = self.lay_out_overviews(overviews).await?;
                report.laid_out = true;
                report.commits.push(id);
            }
        }
        let levels = self.layout.levels();
        report.levels = levels.len();
        if levels.is_empty() {
            return Ok(report);
        }
        let tiles: Vec<TileKey> = self
            .coverage()
            .await?
            .tiles
            .into_iter()
            .filter(|(_, s)| matches!(s, TileState::Written { .. }))
            .map(|(k, _)| k)
            .collect();
        let tile_levels: Vec<TileLevel> = self
            .layout
            .tile_levels()
            .iter()
            .filter_map(TileLevel::of)
            .collect();
        let encoders = (1..=tile_levels.len())
            .map(|k| ChunkEncoder::for_level(&self.layout, k))
            .collect::<Result<Vec<_>, _>>()?;
        let paths = (0..=levels.len())
            .map(|k| {
                let level = self.layout.level_path(k);
                Path::new(&level).map_err(LayoutError::node_path(&level, Some("level path")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new((tile_levels, encoders));
        let total = tiles.len();
        for part in tiles.chunks(batch.max(1)) {
            let mut session = self.writable_session().await?;
            let mut done = WrittenTiles::new();
            for &(year, tile) in part {
                let chunks = self
                    .tile_overviews(&session, year, tile, Arc::clone(&shared))
                    .await?;
                chunks.record(&mut session, &paths).await?;
                done.entry(year).or_default().insert(tile, 0);
                report.tiles += 1;
                progress(report.tiles, total);
            }
            let mut props = SnapshotProperties::new();
            props.insert(
                LAYOUT_ATTR.into(),
                json!({ "overviews": { "tiles": part.len() } }),
            );
            let message = format!("overviews of {} tiles", part.len());
            let id = commit_refreshing(self, &mut session, &done, &message, props).await?;
            report.commits.push(id.to_string());
        }
        Ok(report)
    }

    /// Lay out the levels' groups and arrays and the root's multiscales attributes, in one
    /// commit; the repository's manifest split gains the levels.
    async fn lay_out_overviews(&mut self, overviews: Overviews) -> Result<String, CubeError> {
        let mut layout = self.layout.clone();
        layout.overviews = Some(overviews);
        let repo = self
            .repo
            .reopen(Some(super::repo::repo_config(&layout)), None)
            .await
            .map_err(|e| self.location.error(e))?;
        repo.save_config()
            .await
            .map_err(|e| self.location.error(e))?;
        self.repo = Arc::new(repo);
        let session = self.writable_session().await?;
        let store = Arc::new(AsyncIcechunkStore::new(session));
        super::dataset::write_root_group(&store, &layout).await?;
        super::dataset::write_levels(&store, &layout).await?;
        let session = store.session();
        let mut session = session.write().await;
        let mut props = SnapshotProperties::new();
        props.insert(
            LAYOUT_ATTR.into(),
            json!({ "overviews": { "levels": layout.levels().len() } }),
        );
        let id = super::commit::commit(self, &mut session, "lay out overviews", props).await?;
        self.layout = layout;
        Ok(id.to_string())
    }

    /// A tile's overview chunks, from its level-0 strips read back from `session`, uploaded.
    async fn tile_overviews(
        &self,
        session: &Session,
        year: i32,
        tile: TileName,
        shared: Arc<(Vec<TileLevel>, Vec<ChunkEncoder>)>,
    ) -> Result<TileChunks, CubeError> {
        let mut chunks = TileChunks::default();
        if shared.0.is_empty() {
            return Ok(chunks);
        }
        let layout = &self.layout;
        let grid = layout.grid();
        let cell = grid.cell(tile)?;
        let region = grid.region(cell);
        let yi = layout
            .year_index(year)
            .ok_or(LayoutError::YearNotInCube { year })? as u64;
        let side = grid.chunk_pixels;
        let width = grid.tile_pixels as usize;
        let variable = layout.variable_path();
        let level0 = Path::new(&variable)
            .map_err(LayoutError::node_path(&variable, Some("variable path")))?;
        let decoder = ChunkEncoder::new(layout)?;
        let pyramid = Arc::new(TilePyramid::new(
            width,
            side as usize,
            shared.0.clone(),
            layout.fill_value,
            layout.overviews.map(|o| o.resampling).unwrap_or_default(),
        ));
        for sy in 0..grid.chunks_per_side() {
            let rows = (region.y0 + sy * side, region.y0 + (sy + 1) * side);
            let cols = (region.x0, region.x0 + region.width);
            let strip = read_region(
                session,
                &level0,
                &decoder,
                side,
                yi,
                rows,
                cols,
                layout.fill_value,
            )
            .await?;
            let (p, s) = (Arc::clone(&pyramid), Arc::clone(&shared));
            let encoded = tokio::task::spawn_blocking(move || {
                p.add_strip(sy as usize, &strip)
                    .into_iter()
                    .map(|c| {
                        let data = s.1[c.level - 1].encode(&c.pixels)?;
                        Ok::<_, CubeError>((c.level, c.row, c.col, data))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|source| CubeError::OverviewTask { year, tile, source })??;
            let uploads = encoded.into_iter().map(|(level, row, col, data)| {
                let l = shared.0[level - 1];
                let per_tile = (l.tile / l.chunk) as u64;
                let coords = [
                    yi,
                    cell.row as u64 * per_tile + row,
                    cell.col as u64 * per_tile + col,
                ];
                let level_path = layout.level_path(level);
                let path = Path::new(&level_path)
                    .map_err(LayoutError::node_path(level_path, Some("level path")));
                async move {
                    let path = path?;
                    let upload = super::writer::prepare_upload(session, &path, coords)?;
                    Ok::<_, CubeError>((level, coords, upload.run(data).await?))
                }
            });
            for (level, coords, payload) in futures::future::try_join_all(uploads).await? {
                chunks.push_level(level, coords, payload);
            }
        }
        Ok(chunks)
    }
}
