//! Opening a tile for reading: the one call a reader makes ([`OpenTile::open`]), whatever the
//! tile's location. A local tile is opened by GDAL from its path; a remote one, with read-ahead
//! on, through its read-ahead file ([`super::fetch`]), whose first windows start arriving at
//! once; with read-ahead off, through GDAL's own network file systems.
//!
//! A tile is read in windows of whole source blocks (see [`window_rows`]); the reader says when
//! it starts and finishes each window ([`OpenTile::started`], [`OpenTile::finished`]) and the
//! read-ahead runs in front of it. It takes GDAL handles with [`OpenTile::handle`] and gives
//! them back with [`OpenTile::give_back`].
//!
//! Invariants: an open tile was checked against the grid and the name it is listed under; its
//! read-ahead file stays reachable by GDAL as long as the `OpenTile` lives; handles are reused,
//! so there are never more than the threads that read at once.

use std::sync::Mutex;

use super::fetch::{ReadAhead, Registered, RemoteFile};
use super::location::TileLocation;
use super::tile::{TileError, TileReader};
use crate::fault::RemoteError;
use crate::grid::{Cell, Grid, TileName};
use crate::storage_settings::StorageSettings;

/// How far a remote tile is read ahead of its decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAheadOptions {
    /// Windows fetched ahead of the newest one being decoded (0: read-ahead off).
    pub windows: usize,
    /// Bytes of windows held at most.
    pub bytes: u64,
}

/// A tile opened and checked, ready to be read window by window.
pub struct OpenTile {
    location: TileLocation,
    /// Its read-ahead file, when it is read through one.
    fetched: Option<Registered>,
    handles: Mutex<Vec<TileReader>>,
    cell: Cell,
    window: usize,
    windows: usize,
    ahead: Option<ReadAhead>,
    /// What the tile was read from (`None`: its source could not be looked at).
    provenance: Option<super::Provenance>,
}

impl OpenTile {
    /// Open the tile at `location`, listed as `listed_as`, and check it against `grid`; a
    /// remote one is reached as `storage` says.
    pub fn open(
        location: &TileLocation,
        grid: &Grid,
        listed_as: TileName,
        ahead: ReadAheadOptions,
        storage: &StorageSettings,
    ) -> Result<Self, TileError> {
        let fetched = match location.url() {
            Some(url) if ahead.windows > 0 => Some(RemoteFile::open(url, storage).map_err(
                |source| match source {
                    RemoteError::NotFound { url } => TileError::Missing { path: url },
                    source => TileError::Remote {
                        path: url.to_string(),
                        source,
                    },
                },
            )?),
            _ => None,
        };
        // What is read: looked at before the first byte, so a source replaced while it is
        // read shows as changed afterwards, never the other way round.
        let provenance = match (&fetched, location) {
            (Some(file), _) => Some(file.provenance().clone()),
            (None, TileLocation::Local(path)) => super::Provenance::of_file(path).ok(),
            (None, object) => super::fetch::runtime()
                .block_on(super::Provenance::look_up(object, storage))
                .ok()
                .flatten(),
        };
        let (reader, cell) = match &fetched {
            Some(file) => TileReader::open_fetched(file, grid, listed_as)?,
            None => TileReader::open(&location.gdal_path(), grid, listed_as, storage)?,
        };
        let tile_rows = grid.tile_pixels as usize;
        let window = window_rows(grid.chunk_pixels as usize, reader.block_rows());
        let windows = tile_rows.div_ceil(window);
        let ahead = fetched.as_ref().and_then(|file| {
            let ranges = (0..windows)
                .map(|w| reader.block_ranges(w * window, window.min(tile_rows - w * window)))
                .collect::<Option<Vec<_>>>()?;
            Some(ReadAhead::new(
                (*file).clone(),
                ranges,
                ahead.windows,
                ahead.bytes,
            ))
        });
        Ok(Self {
            location: location.clone(),
            fetched,
            handles: Mutex::new(vec![reader]),
            cell,
            window,
            windows,
            ahead,
            provenance,
        })
    }

    /// What the tile was read from: its source's size and version when it was opened.
    pub fn provenance(&self) -> Option<&super::Provenance> {
        self.provenance.as_ref()
    }

    /// The remote object it is read from through the read-ahead, if it is.
    pub fn fetched(&self) -> Option<std::sync::Arc<RemoteFile>> {
        self.fetched.as_ref().map(|f| (**f).clone())
    }

    /// The tile's cell in the grid, from its own geotransform.
    pub fn cell(&self) -> Cell {
        self.cell
    }

    /// Rows of a read window.
    pub fn window_rows(&self) -> usize {
        self.window
    }

    /// How many windows the tile is read in.
    pub fn windows(&self) -> usize {
        self.windows
    }

    /// A GDAL handle on the tile: one given back earlier, or a new one.
    pub fn handle(&self) -> Result<TileReader, TileError> {
        if let Some(r) = self.handles.lock().ok().and_then(|mut h| h.pop()) {
            return Ok(r);
        }
        match &self.fetched {
            Some(file) => TileReader::reopen_fetched(file),
            None => TileReader::reopen(&self.location.gdal_path()),
        }
    }

    /// A handle the reader is done with for now.
    pub fn give_back(&self, reader: TileReader) {
        if let Ok(mut h) = self.handles.lock() {
            h.push(reader);
        }
    }

    /// A reader starts window `w`: its bytes are fetched now if they were not yet.
    pub fn started(&self, w: usize) {
        if let Some(a) = &self.ahead {
            a.start(w);
        }
    }

    /// Window `w` is decoded: its bytes go, and more windows are fetched.
    pub fn finished(&self, w: usize) {
        if let Some(a) = &self.ahead {
            a.done(w);
        }
    }

    /// Forget what GDAL cached of a remote tile (sizes, failed lookups), before a retry.
    pub fn forget_cached(location: &TileLocation) {
        if location.is_remote() {
            TileReader::forget_cached(&location.gdal_path());
        }
    }
}

/// Rows of a read window: the chunk side when the source's blocks divide it (or are too tall
/// to follow), else whole blocks: as many as fit in a chunk side, at least one.
pub fn window_rows(chunk: usize, block: usize) -> usize {
    if chunk.is_multiple_of(block) || block > 4 * chunk {
        chunk
    } else {
        (chunk / block).max(1) * block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_source_blocks() {
        // Strips whose rows divide the chunk side: a window is a chunk strip.
        assert_eq!(window_rows(1000, 1), 1000);
        assert_eq!(window_rows(1000, 8), 1000);
        assert_eq!(window_rows(1000, 1000), 1000);
        // 512-row COG tiles under 1000-row chunks: one block row a window.
        assert_eq!(window_rows(1000, 512), 512);
        assert_eq!(window_rows(1000, 256), 768);
        assert_eq!(window_rows(100, 64), 64);
        // Blocks taller than a chunk: one block a window, unless far taller.
        assert_eq!(window_rows(1000, 1024), 1024);
        assert_eq!(window_rows(1000, 40_000), 1000);
    }
}
