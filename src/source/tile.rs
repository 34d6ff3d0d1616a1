//! One GeoTIFF tile read through GDAL: validation against the grid, then strips of rows.
//!
//! A tile is checked before a byte of it is written: one band, uint8, the grid's CRS, the
//! grid's pixel size and tile size, and an upper-left corner on a tile corner of the grid that
//! matches the tile's name. Reads are windows of whole rows, so memory holds a few windows
//! and never the whole tile; a tiled source (a COG) read on whole block rows is decoded block
//! by block, past GDAL's block cache, into wherever its rows go.

use gdal::Dataset;
use gdal::raster::GdalDataType;
use gdal::spatial_ref::SpatialRef;

use std::ops::Range;
use std::sync::Arc;

use super::fetch::RemoteFile;
use crate::grid::{Cell, Grid, TileName};
use crate::storage_settings::StorageSettings;

/// Why a tile cannot be ingested.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TileError {
    #[error("file not found: {path}")]
    Missing { path: String },
    #[error("cannot open {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("cannot open {path}: {source}")]
    Remote {
        path: String,
        #[source]
        source: super::RemoteError,
    },
    #[error("has {0} bands; expected 1")]
    Bands(usize),
    #[error("data type is {0}; expected uint8")]
    DataType(String),
    #[error(
        "size is {width}x{height} px; expected {expected}x{expected}, the cube's tile size{}",
        size_hint(.fits, .expected)
    )]
    Size {
        width: usize,
        height: usize,
        expected: u64,
        /// The tile side a cube of this source's resolution would have, when the tile is
        /// square and covers its whole cell (the source, not the tile, differs from the cube).
        fits: Option<u64>,
    },
    #[error("CRS is {0}; expected EPSG:{1}")]
    Crs(String, u32),
    #[error("has no geotransform")]
    NoGeoTransform,
    #[error("pixel size is {x}x{y} degrees; expected {expected}x-{expected}")]
    PixelSize { x: f64, y: f64, expected: f64 },
    #[error("is rotated (geotransform terms {0}, {1}); expected a north-up grid")]
    Rotated(f64, f64),
    #[error("upper-left corner ({x}, {y}) is not on a tile corner of the grid")]
    OffGrid { x: f64, y: f64 },
    #[error("upper-left corner is that of tile {found}, not of the tile it is listed as")]
    WrongPlace { found: TileName },
    #[error("reading rows {row}..{end}: {reason}")]
    Read {
        row: usize,
        end: usize,
        reason: String,
        /// Whether trying again could succeed ([`TileError::read`] decides).
        transient: bool,
    },
    /// Writing its chunks failed; `transient` was decided from the typed cause.
    #[error("writing to the cube: {reason}")]
    Write { reason: String, transient: bool },
    #[error("cancelled before it finished")]
    Cancelled,
}

impl TileError {
    /// A failed read of rows `row..end`. It is transient when GDAL's messages tell of a
    /// passing fault (HTTP 5xx or 429, a network failure) or, for a remote tile, of an answer
    /// cut short ("got N bytes, expected M": the connection closed mid-block); a local file
    /// that is short is truncated, and stays so.
    pub fn read(row: usize, end: usize, reason: String, remote: bool) -> Self {
        let short = reason.contains("bytes, expected");
        let transient = gdal_message_is_transient(&reason) || (remote && short);
        Self::Read {
            row,
            end,
            reason,
            transient,
        }
    }

    /// Whether the tile tells that the whole source does not fit the cube (its tiles are of
    /// another resolution), not that this one tile is bad: the write stops at the first.
    pub fn is_cube_wide(&self) -> bool {
        matches!(self, Self::Size { fits: Some(_), .. })
    }

    /// Whether retrying could help (I/O trouble rather than a bad file). Typed causes
    /// decide (the HTTP status or network error of a remote open, the cube's error kind);
    /// GDAL reports read trouble only as text, so its messages are read as the last resort.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Remote { source, .. } => source.is_transient(),
            Self::Write { transient, .. } => *transient,
            Self::Read { transient, .. } => *transient,
            Self::Unreadable { reason, .. } => gdal_message_is_transient(reason),
            _ => false,
        }
    }
}

/// What a tile of the wrong size tells the operator to do.
fn size_hint(fits: &Option<u64>, expected: &u64) -> String {
    match fits {
        Some(n) => format!(
            ": the tile covers its whole cell at another resolution, so the source's tiles fit a cube laid out with `init --tile-pixels {n}` (this one is of {expected}-px tiles)"
        ),
        None => " (a cube of other tiles is laid out with `init --tile-pixels N`)".to_string(),
    }
}

/// Whether a GDAL error message tells of a passing fault: an HTTP status of 5xx or 429
/// after GDAL's "HTTP error code" / "HTTP response code" marker, or a network failure.
/// Numbers elsewhere in the message ("scanline 15000") mean nothing.
fn gdal_message_is_transient(message: &str) -> bool {
    let t = message.to_ascii_lowercase();
    for marker in ["http error code:", "http response code:", "http status"] {
        for part in t.split(marker).skip(1) {
            let digits: String = part
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(code) = digits.parse::<u16>()
                && digits.len() == 3
            {
                return code >= 500 || code == 429;
            }
        }
    }
    [
        "timed out",
        "timeout",
        "connection reset",
        "connection refused",
        "connection was reset",
        "temporarily unavailable",
        "slow down",
        "broken pipe",
        // An answer cut short: curl's "transfer closed with outstanding read data
        // remaining", "partial file", "empty reply from server".
        "transfer closed",
        "partial file",
        "empty reply",
    ]
    .iter()
    .any(|needle| t.contains(needle))
}

/// The WKT of an EPSG code.
pub fn crs_wkt(epsg: u32) -> Result<String, gdal::errors::GdalError> {
    SpatialRef::from_epsg(epsg)?.to_wkt()
}

fn epsg_of(sr: &mut SpatialRef) -> Option<i32> {
    if sr.auth_name().as_deref() == Some("EPSG")
        && let Ok(code) = sr.auth_code()
    {
        return Some(code);
    }
    sr.auto_identify_epsg().ok()?;
    sr.auth_code().ok()
}

/// An open, validated tile.
pub struct TileReader {
    dataset: Dataset,
    width: usize,
    height: usize,
    /// Width and height of the source's blocks (strips or tiles), at least 1 each.
    block: (usize, usize),
    /// Read through one of GDAL's network file systems or the read-ahead.
    remote: bool,
    /// The read-ahead file it reads, whose fetch errors explain a failed read.
    fetch: Option<Arc<RemoteFile>>,
}

impl TileReader {
    /// Open a tile by its GDAL path and check it against the grid and the name it is listed
    /// under. Returns the reader and the tile's cell (from its own geotransform). A remote
    /// tile GDAL could not open is looked at once, reached as `storage` says.
    pub fn open(
        path: &str,
        grid: &Grid,
        listed_as: TileName,
        storage: &StorageSettings,
    ) -> Result<(Self, Cell), TileError> {
        if !path.starts_with("/vsi") && !std::path::Path::new(path).exists() {
            return Err(TileError::Missing {
                path: path.to_string(),
            });
        }
        let dataset = match Dataset::open(path) {
            Ok(ds) => ds,
            Err(e) => {
                let reason = e.to_string();
                match super::TileLocation::from_gdal_path(path)
                    .and_then(|l| l.url().map(str::to_string))
                {
                    Some(url) => open_remote_again(path, &url, reason, storage)?,
                    None => return Err(local_open_error(path, reason)),
                }
            }
        };
        let cell = validate(&dataset, grid, listed_as)?;
        Ok((Self::new(dataset, path.starts_with("/vsi"), None), cell))
    }

    fn new(dataset: Dataset, remote: bool, fetch: Option<Arc<RemoteFile>>) -> Self {
        let (width, height) = dataset.raster_size();
        let block = dataset
            .rasterband(1)
            .map(|b| b.block_size())
            .unwrap_or((width, 1));
        Self {
            dataset,
            width,
            height,
            block: (block.0.max(1), block.1.max(1)),
            remote,
            fetch,
        }
    }

    /// Open a remote tile through its read-ahead file and check it as [`TileReader::open`]
    /// does. A fetch that failed is the reason given, with its typed cause.
    pub fn open_fetched(
        file: &Arc<RemoteFile>,
        grid: &Grid,
        listed_as: TileName,
    ) -> Result<(Self, Cell), TileError> {
        let reader = Self::reopen_fetched(file)?;
        let cell = validate(&reader.dataset, grid, listed_as)?;
        Ok((reader, cell))
    }

    /// Open a remote tile through its read-ahead file, for another reader thread.
    pub fn reopen_fetched(file: &Arc<RemoteFile>) -> Result<Self, TileError> {
        super::gdal::clear_recent_errors();
        let dataset = Dataset::open(file.gdal_path()).map_err(|e| match file.take_error() {
            Some(source) => TileError::Remote {
                path: file.url().to_string(),
                source,
            },
            None => local_open_error(
                file.url(),
                e.to_string().replace(file.gdal_path(), file.url()),
            ),
        })?;
        Ok(Self::new(dataset, true, Some(file.clone())))
    }

    /// The byte ranges of the blocks that hold rows `y0..y0 + rows`, from the TIFF's block
    /// offsets; `None` when GDAL does not give them (not a TIFF, or sparse blocks).
    pub fn block_ranges(&self, y0: usize, rows: usize) -> Option<Vec<Range<u64>>> {
        use gdal::Metadata;
        let band = self.dataset.rasterband(1).ok()?;
        let (bw, bh) = self.block;
        let across = self.width.div_ceil(bw);
        let mut out = vec![];
        for by in y0 / bh..(y0 + rows).div_ceil(bh) {
            for bx in 0..across {
                let offset: u64 = band
                    .metadata_item(&format!("BLOCK_OFFSET_{bx}_{by}"), "TIFF")?
                    .parse()
                    .ok()?;
                let size: u64 = band
                    .metadata_item(&format!("BLOCK_SIZE_{bx}_{by}"), "TIFF")?
                    .parse()
                    .ok()?;
                out.push(offset..offset + size);
            }
        }
        Some(out)
    }

    /// Forget what GDAL cached of a remote tile (sizes, failed lookups), before a retry.
    pub fn forget_cached(path: &str) {
        if path.starts_with("/vsi")
            && let Ok(c) = std::ffi::CString::new(path)
        {
            // SAFETY: a valid C string; GDAL copies the prefix.
            unsafe { gdal_sys::VSICurlPartialClearCache(c.as_ptr()) };
        }
    }

    /// Open a tile already validated, for another reader thread.
    pub fn reopen(path: &str) -> Result<Self, TileError> {
        let dataset = Dataset::open(path).map_err(|e| TileError::Unreadable {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(dataset, path.starts_with("/vsi"), None))
    }

    /// Rows of the source's blocks: a strip's rows, or a tile's height in a tiled GeoTIFF
    /// (a COG). A read that starts and ends on block rows decodes each block once.
    pub fn block_rows(&self) -> usize {
        self.block.1
    }

    /// Read `rows` whole rows from row `y0` into `buf` (row-major, `rows * width` bytes).
    /// A tiled source (a COG) read on whole block rows is decoded block by block straight
    /// into `buf`, past GDAL's block cache; anything else goes through GDAL's RasterIO.
    pub fn read_rows(&self, y0: usize, rows: usize, buf: &mut [u8]) -> Result<(), TileError> {
        let band = self
            .dataset
            .rasterband(1)
            .map_err(|e| TileError::read(y0, y0 + rows, e.to_string(), self.remote))?;
        super::gdal::clear_recent_errors();
        let width = self.width;
        let read = if self.reads_blocks(y0, rows) {
            self.read_blocks(y0, rows, |r0, h, x0, w, block, bw| {
                for r in 0..h {
                    let at = (r0 + r - y0) * width + x0;
                    buf[at..at + w].copy_from_slice(&block[r * bw..r * bw + w]);
                }
            })
        } else {
            band.read_into_slice::<u8>(
                (0, y0 as isize),
                (self.width, rows),
                (self.width, rows),
                buf,
                None,
            )
            .map_err(|e| e.to_string())
        };
        read.map_err(|e| self.read_error(y0, rows, e))
    }

    /// Whether rows `y0..y0 + rows` of this source are decoded block by block
    /// ([`TileReader::read_blocks`]): a tiled source (a COG) read on whole block rows.
    pub fn reads_blocks(&self, y0: usize, rows: usize) -> bool {
        let (bw, bh) = self.block;
        bw < self.width
            && y0.is_multiple_of(bh)
            && (rows.is_multiple_of(bh) || y0 + rows == self.height)
    }

    /// Decode the blocks of rows `y0..y0 + rows` (on block rows, see
    /// [`TileReader::reads_blocks`]) one by one into a block buffer of this thread, past
    /// GDAL's block cache, and hand each to `put(first_row, rows, x0, width, block,
    /// block_width)`: row `first_row + r` of the tile holds `block[r * block_width..][..width]`
    /// from column `x0`.
    pub fn read_blocks(
        &self,
        y0: usize,
        rows: usize,
        mut put: impl FnMut(usize, usize, usize, usize, &[u8], usize),
    ) -> Result<(), String> {
        let band = self.dataset.rasterband(1).map_err(|e| e.to_string())?;
        super::gdal::clear_recent_errors();
        let (bw, bh) = self.block;
        let (width, height) = (self.width, self.height);
        BLOCK.with_borrow_mut(|block| {
            block.resize(bw * bh, 0);
            for by in y0 / bh..(y0 + rows).div_ceil(bh) {
                let r0 = by * bh;
                let h = bh.min(height - r0);
                for bx in 0..width.div_ceil(bw) {
                    // SAFETY: the band is open; the buffer holds a whole block (GDAL
                    // writes bw * bh bytes, edge blocks padded).
                    let rc = unsafe {
                        gdal_sys::GDALReadBlock(
                            band.c_rasterband(),
                            bx as i32,
                            by as i32,
                            block.as_mut_ptr() as *mut std::ffi::c_void,
                        )
                    };
                    if rc != gdal_sys::CPLErr::CE_None {
                        return Err(format!("reading block ({bx}, {by}) failed"));
                    }
                    let x0 = bx * bw;
                    put(r0, h, x0, bw.min(width - x0), block, bw);
                }
            }
            Ok(())
        })
    }

    /// A failed read of rows `y0..y0 + rows`, explained by the read-ahead's fetch error
    /// when there is one, else by GDAL's messages.
    pub fn read_error(&self, y0: usize, rows: usize, message: String) -> TileError {
        let earlier = super::gdal::take_recent_errors();
        match self.fetch.as_ref().and_then(|f| f.take_error()) {
            Some(cause) => TileError::Read {
                row: y0,
                end: y0 + rows,
                transient: cause.is_transient(),
                reason: cause.to_string(),
            },
            None => {
                let mut reason = with_causes(message, earlier);
                // GDAL names the read-ahead's file; the operator knows the tile by its URL.
                if let Some(f) = &self.fetch {
                    reason = reason.replace(f.gdal_path(), f.url());
                }
                // Through the read-ahead a cut connection is a fetch error (above): a short
                // read with none is a file shorter than its blocks say, and stays so.
                TileError::read(y0, y0 + rows, reason, self.remote && self.fetch.is_none())
            }
        }
    }
}

thread_local! {
    /// One decoded block of a tiled source, reused by each worker thread.
    static BLOCK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A GDAL failure with the messages GDAL raised before it that it does not repeat: the
/// network cause of a failed remote block read ("transfer closed …") is one of them.
fn with_causes(last: String, earlier: Vec<String>) -> String {
    let causes: Vec<String> = earlier
        .into_iter()
        .filter(|m| !m.is_empty() && !last.contains(m.as_str()))
        .collect();
    if causes.is_empty() {
        last
    } else {
        format!("{last} (after: {})", causes.join("; "))
    }
}

fn local_open_error(path: &str, reason: String) -> TileError {
    if reason.contains("No such file") || reason.contains("does not exist") {
        TileError::Missing {
            path: path.to_string(),
        }
    } else {
        TileError::Unreadable {
            path: path.to_string(),
            reason: if reason.contains("NULL pointer") {
                "GDAL cannot read it: not a GeoTIFF, or corrupt".into()
            } else {
                reason
            },
        }
    }
}

/// A remote tile did not open, and GDAL rarely says why: look at the object once. Missing is
/// missing; an HTTP or network error is reported as such (and may be retried); an object that
/// is there gets one more open with GDAL's cache cleared, in case the first met a passing
/// fault, and is unreadable if that fails too.
fn open_remote_again(
    path: &str,
    url: &str,
    gdal_reason: String,
    storage: &StorageSettings,
) -> Result<Dataset, TileError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TileError::Unreadable {
            path: path.to_string(),
            reason: format!("cannot start a runtime to look at it: {e}"),
        })?;
    match rt.block_on(super::remote::probe(url, storage)) {
        Ok(None) => Err(TileError::Missing {
            path: url.to_string(),
        }),
        Ok(Some(_)) => {
            TileReader::forget_cached(path);
            Dataset::open(path).map_err(|_| local_open_error(path, gdal_reason))
        }
        Err(source) => Err(TileError::Remote {
            path: path.to_string(),
            source,
        }),
    }
}

fn validate(ds: &Dataset, grid: &Grid, listed_as: TileName) -> Result<Cell, TileError> {
    let bands = ds.raster_count();
    if bands != 1 {
        return Err(TileError::Bands(bands));
    }
    let band = ds.rasterband(1).map_err(|e| TileError::Unreadable {
        path: String::new(),
        reason: e.to_string(),
    })?;
    let dt = band.band_type();
    if dt != GdalDataType::UInt8 {
        return Err(TileError::DataType(dt.name().to_lowercase()));
    }
    let (width, height) = ds.raster_size();
    if width as u64 != grid.tile_pixels || height as u64 != grid.tile_pixels {
        // Square, and spanning its cell's degrees: the source is of another resolution.
        let cell = f64::from(grid.tile_degrees);
        let spans = |step: f64, n: usize| ((step.abs() * n as f64) - cell).abs() < cell * 1e-6;
        let fits = ds.geo_transform().ok().and_then(|gt| {
            (width == height && width > 0 && spans(gt[1], width) && spans(gt[5], height))
                .then_some(width as u64)
        });
        return Err(TileError::Size {
            width,
            height,
            expected: grid.tile_pixels,
            fits,
        });
    }
    match ds.spatial_ref() {
        Ok(mut sr) => {
            let code = epsg_of(&mut sr);
            if code != Some(grid.epsg as i32) {
                let name = match code {
                    Some(c) => format!("EPSG:{c}"),
                    None => sr.name().unwrap_or_else(|| "unknown".into()),
                };
                return Err(TileError::Crs(name, grid.epsg));
            }
        }
        Err(_) => return Err(TileError::Crs("missing".into(), grid.epsg)),
    }
    let gt = ds.geo_transform().map_err(|_| TileError::NoGeoTransform)?;
    let p = grid.pixel_size();
    let tol = p * 1e-6;
    if (gt[1] - p).abs() > tol || (gt[5] + p).abs() > tol {
        return Err(TileError::PixelSize {
            x: gt[1],
            y: gt[5],
            expected: p,
        });
    }
    if gt[2] != 0.0 || gt[4] != 0.0 {
        return Err(TileError::Rotated(gt[2], gt[4]));
    }
    let cell = grid
        .cell_at_origin(gt[0], gt[3])
        .ok_or(TileError::OffGrid { x: gt[0], y: gt[3] })?;
    let found = grid.tile_at(cell);
    if found != listed_as {
        return Err(TileError::WrongPlace { found });
    }
    Ok(cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_told_from_permanent_ones() {
        let read = |r: &str| TileError::read(0, 1, r.into(), false);
        let short = "TIFFFillStrip:Read error at scanline 220; got 1418 bytes, expected 1649";
        assert!(
            TileError::read(0, 1, short.into(), true).is_transient(),
            "a remote answer cut short"
        );
        assert!(!read(short).is_transient(), "a truncated local file");
        assert!(read("HTTP error code: 503").is_transient());
        assert!(read("HTTP response code: 429").is_transient(), "throttled");
        assert!(read("Connection reset by peer").is_transient());
        assert!(!read("HTTP error code: 404").is_transient());
        assert!(
            read("CURL error: transfer closed with 20000 bytes remaining to read").is_transient()
        );
        assert!(
            !read("Not enough data at scanline 15000").is_transient(),
            "a number in the message is not a status"
        );
        assert!(!read("TIFFReadEncodedStrip() failed at row 5029").is_transient());
        let write = |transient| TileError::Write {
            reason: "uploading".into(),
            transient,
        };
        assert!(write(true).is_transient() && !write(false).is_transient());
        let remote = |status| TileError::Remote {
            path: "/vsicurl/http://h/t.tif".into(),
            source: super::super::RemoteError::Status {
                url: "http://h/t.tif".into(),
                status,
                reason: None,
            },
        };
        assert!(remote(503).is_transient() && remote(429).is_transient());
        assert!(!remote(400).is_transient());
        assert!(!TileError::Bands(3).is_transient());
        assert!(!TileError::Crs("EPSG:3857".into(), 4326).is_transient());
    }

    #[test]
    fn epsg_4326_wkt_is_available() {
        let wkt = crs_wkt(4326).unwrap();
        assert!(wkt.contains("WGS 84"), "{wkt}");
    }
}
