//! The tiling grid: tile names, grid cells, pixel regions and chunk ranges.
//!
//! A tile is named by its upper-left corner (`70N_180W`, `00N_010E`, `50S_170E`). Its cell is
//! its column and row in the grid; its region is the block of cube pixels it fills. A chunk
//! never straddles two tiles: the chunk side always divides the tile side. How a dataset
//! spells its tiles' names (another pattern, another corner) is [`naming`]'s.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::preset::Preset;

pub mod naming;

/// Errors about tile names, cells and grid shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    #[error("{0:?} is not a tile name (expected the upper-left corner, like 70N_180W)")]
    BadName(String),
    #[error("tile {name} is not on the grid ({reason})")]
    OffGrid { name: String, reason: String },
    #[error(
        "chunk side {chunk} px does not divide the tile side {tile} px: a chunk would straddle two tiles"
    )]
    ChunkDoesNotDivide { chunk: u64, tile: u64 },
    #[error("tile side must be a positive number of pixels, got {0}")]
    BadTilePixels(u64),
    /// A preset whose cube this tilecube does not lay out (the preset's own words).
    #[error("{0}")]
    Unsupported(String),
}

/// A tile's name: the latitude and longitude of its upper-left corner, in whole degrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TileName {
    /// Latitude of the upper edge (north positive).
    pub lat: i32,
    /// Longitude of the left edge (east positive).
    pub lon: i32,
}

impl TileName {
    pub fn new(lat: i32, lon: i32) -> Self {
        Self { lat, lon }
    }
}

/// Tiles sort as the grid reads: rows from the north, then columns from the west.
impl Ord for TileName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.lat.cmp(&self.lat).then(self.lon.cmp(&other.lon))
    }
}

impl PartialOrd for TileName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for TileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = if self.lat < 0 { 'S' } else { 'N' };
        let ew = if self.lon < 0 { 'W' } else { 'E' };
        write!(
            f,
            "{:02}{}_{:03}{}",
            self.lat.unsigned_abs(),
            ns,
            self.lon.unsigned_abs(),
            ew
        )
    }
}

impl FromStr for TileName {
    type Err = GridError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || GridError::BadName(s.to_string());
        let (lat_part, lon_part) = s.split_once('_').ok_or_else(bad)?;
        let parse = |part: &str, digits: usize, pos: char, neg: char| -> Option<i32> {
            let (num, hemi) = part.split_at(part.len().checked_sub(1)?);
            if num.len() != digits || !num.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let value: i32 = num.parse().ok()?;
            let hemi = hemi.chars().next()?.to_ascii_uppercase();
            if hemi == pos {
                Some(value)
            } else if hemi == neg {
                Some(-value)
            } else {
                None
            }
        };
        let lat = parse(lat_part, 2, 'N', 'S').ok_or_else(bad)?;
        let lon = parse(lon_part, 3, 'E', 'W').ok_or_else(bad)?;
        if !(-90..=90).contains(&lat) || !(-180..=180).contains(&lon) {
            return Err(bad());
        }
        Ok(Self { lat, lon })
    }
}

impl TryFrom<String> for TileName {
    type Error = GridError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TileName> for String {
    fn from(t: TileName) -> Self {
        t.to_string()
    }
}

/// A tile's place in the grid: column from the west, row from the north.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    pub col: u32,
    pub row: u32,
}

/// A block of pixels of the cube's (y, x) plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRegion {
    pub y0: u64,
    pub x0: u64,
    pub height: u64,
    pub width: u64,
}

/// The tiling grid of a cube, with its pixel and chunk sizes settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub origin_lon: i32,
    pub origin_lat: i32,
    pub tile_degrees: u32,
    pub columns: u32,
    pub rows: u32,
    pub tile_pixels: u64,
    pub chunk_pixels: u64,
    pub epsg: u32,
}

impl Grid {
    /// The grid of a preset, optionally with another tile side in pixels (tiles keep their
    /// size in degrees, so the pixel size follows). With tiles smaller than the preset's
    /// chunk side the chunk side becomes the tile side.
    pub fn from_preset(preset: &Preset, tile_pixels: Option<u64>) -> Result<Self, GridError> {
        preset
            .supported()
            .map_err(|e| GridError::Unsupported(e.to_string()))?;
        let g = &preset.grid;
        let tile_pixels = tile_pixels.unwrap_or(g.tile_pixels);
        if tile_pixels == 0 {
            return Err(GridError::BadTilePixels(tile_pixels));
        }
        let chunk_pixels = preset.variable().chunk_pixels.min(tile_pixels);
        if !tile_pixels.is_multiple_of(chunk_pixels) {
            return Err(GridError::ChunkDoesNotDivide {
                chunk: chunk_pixels,
                tile: tile_pixels,
            });
        }
        Ok(Self {
            origin_lon: g.origin_lon,
            origin_lat: g.origin_lat,
            // A whole number of degrees (checked at parse).
            tile_degrees: g.tile_degrees as u32,
            columns: g.columns,
            rows: g.rows,
            tile_pixels,
            chunk_pixels,
            epsg: g.epsg,
        })
    }

    /// Pixel size in degrees.
    pub fn pixel_size(&self) -> f64 {
        self.tile_degrees as f64 / self.tile_pixels as f64
    }

    /// Cube plane shape: (y, x) pixels.
    pub fn shape(&self) -> (u64, u64) {
        (
            self.rows as u64 * self.tile_pixels,
            self.columns as u64 * self.tile_pixels,
        )
    }

    /// Chunks along one side of a tile.
    pub fn chunks_per_side(&self) -> u64 {
        self.tile_pixels / self.chunk_pixels
    }

    /// Chunks in one tile.
    pub fn chunks_per_tile(&self) -> u64 {
        self.chunks_per_side() * self.chunks_per_side()
    }

    /// The cell of a tile, or why it is off the grid.
    pub fn cell(&self, tile: TileName) -> Result<Cell, GridError> {
        let deg = self.tile_degrees as i32;
        let off = |reason: String| GridError::OffGrid {
            name: tile.to_string(),
            reason,
        };
        let dx = tile.lon - self.origin_lon;
        let dy = self.origin_lat - tile.lat;
        if dx % deg != 0 || dy % deg != 0 {
            return Err(off(format!("corners fall every {deg} degrees")));
        }
        let (col, row) = (dx / deg, dy / deg);
        if col < 0 || col >= self.columns as i32 {
            return Err(off(format!(
                "longitude outside {}..{}",
                self.origin_lon,
                self.origin_lon + deg * self.columns as i32
            )));
        }
        if row < 0 || row >= self.rows as i32 {
            return Err(off(format!(
                "latitude outside {}..{}",
                self.origin_lat - deg * self.rows as i32,
                self.origin_lat
            )));
        }
        Ok(Cell {
            col: col as u32,
            row: row as u32,
        })
    }

    /// The tile at a cell. Cells come from this grid, so they are in range.
    pub fn tile_at(&self, cell: Cell) -> TileName {
        let deg = self.tile_degrees as i32;
        TileName {
            lat: self.origin_lat - deg * cell.row as i32,
            lon: self.origin_lon + deg * cell.col as i32,
        }
    }

    /// Every tile of the grid, row by row from the north-west.
    pub fn tiles(&self) -> impl Iterator<Item = TileName> + '_ {
        (0..self.rows)
            .flat_map(move |row| (0..self.columns).map(move |col| self.tile_at(Cell { col, row })))
    }

    /// The cube pixels a tile fills.
    pub fn region(&self, cell: Cell) -> PixelRegion {
        PixelRegion {
            y0: cell.row as u64 * self.tile_pixels,
            x0: cell.col as u64 * self.tile_pixels,
            height: self.tile_pixels,
            width: self.tile_pixels,
        }
    }

    /// The first chunk index (y, x) of a cell's region.
    pub fn first_chunk(&self, cell: Cell) -> (u64, u64) {
        let n = self.chunks_per_side();
        (cell.row as u64 * n, cell.col as u64 * n)
    }

    /// The cell holding a chunk index (y, x).
    pub fn cell_of_chunk(&self, cy: u64, cx: u64) -> Option<Cell> {
        let n = self.chunks_per_side();
        let (row, col) = (cy / n, cx / n);
        (row < self.rows as u64 && col < self.columns as u64).then_some(Cell {
            col: col as u32,
            row: row as u32,
        })
    }

    /// Geographic bounds of a tile: (west, south, east, north).
    pub fn bounds(&self, tile: TileName) -> (f64, f64, f64, f64) {
        let deg = self.tile_degrees as f64;
        (
            tile.lon as f64,
            tile.lat as f64 - deg,
            tile.lon as f64 + deg,
            tile.lat as f64,
        )
    }

    /// The GDAL geotransform of the whole cube.
    pub fn geotransform(&self) -> [f64; 6] {
        let p = self.pixel_size();
        [
            self.origin_lon as f64,
            p,
            0.0,
            self.origin_lat as f64,
            0.0,
            -p,
        ]
    }

    /// The cell whose upper-left corner is at this geotransform's origin, if the origin sits
    /// on a tile corner (within a tenth of a pixel).
    pub fn cell_at_origin(&self, origin_x: f64, origin_y: f64) -> Option<Cell> {
        let deg = self.tile_degrees as f64;
        let tol = self.pixel_size() * 0.1;
        let col = (origin_x - self.origin_lon as f64) / deg;
        let row = (self.origin_lat as f64 - origin_y) / deg;
        let (c, r) = (col.round(), row.round());
        if ((col - c) * deg).abs() > tol || ((row - r) * deg).abs() > tol {
            return None;
        }
        if c < 0.0 || r < 0.0 || c >= self.columns as f64 || r >= self.rows as f64 {
            return None;
        }
        Some(Cell {
            col: c as u32,
            row: r as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glad() -> Grid {
        Grid::from_preset(&Preset::glad(), None).unwrap()
    }

    #[test]
    fn names_round_trip_through_cells_and_regions_at_corners_and_edges() {
        let g = glad();
        let cases = [
            ("80N_180W", 0, 0),
            ("80N_170E", 35, 0),
            ("50S_180W", 0, 13),
            ("50S_170E", 35, 13),
            ("00N_000E", 18, 8),
        ];
        for (name, col, row) in cases {
            let tile: TileName = name.parse().unwrap();
            assert_eq!(tile.to_string(), name);
            let cell = g.cell(tile).unwrap();
            assert_eq!(cell, Cell { col, row }, "{name}");
            assert_eq!(g.tile_at(cell), tile);
            let r = g.region(cell);
            assert_eq!((r.y0, r.x0), (row as u64 * 40_000, col as u64 * 40_000));
            assert_eq!((r.height, r.width), (40_000, 40_000));
        }
        let r = g.region(g.cell("50S_170E".parse().unwrap()).unwrap());
        assert_eq!(r.y0 + r.height, 560_000);
        assert_eq!(r.x0 + r.width, 1_440_000);
        assert_eq!(g.shape(), (560_000, 1_440_000));
        assert_eq!(g.tiles().count(), 36 * 14);
    }

    #[test]
    fn tiles_sort_north_first_then_west_first() {
        let mut v: Vec<TileName> = ["50S_170E", "00N_010E", "70N_180W", "70N_000E"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let names: Vec<String> = v.iter().map(|t| t.to_string()).collect();
        assert_eq!(names, ["70N_180W", "70N_000E", "00N_010E", "50S_170E"]);
    }

    #[test]
    fn names_use_glad_padding() {
        assert_eq!(TileName::new(70, -180).to_string(), "70N_180W");
        assert_eq!(TileName::new(0, 10).to_string(), "00N_010E");
        assert_eq!(TileName::new(-50, 170).to_string(), "50S_170E");
        assert_eq!(TileName::new(-10, -60).to_string(), "10S_060W");
    }

    #[test]
    fn malformed_names_are_rejected() {
        for bad in [
            "",
            "70N",
            "70N180W",
            "7N_180W",
            "70N_18W",
            "70X_180W",
            "70N_180Q",
            "70N_1800W",
            "AAN_180W",
            "99N_180W",
            "70N_190E",
            "70N_180W.tif",
            " 70N_180W",
        ] {
            assert!(
                matches!(bad.parse::<TileName>(), Err(GridError::BadName(_))),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn tiles_off_the_grid_are_rejected() {
        let g = glad();
        for name in ["80N_175W", "90N_180W", "60S_000E", "75N_000E"] {
            let t: TileName = name.parse().unwrap();
            let err = g.cell(t).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn chunk_side_follows_small_tiles_and_must_divide_the_tile() {
        let p = Preset::glad();
        let g = Grid::from_preset(&p, Some(400)).unwrap();
        assert_eq!(g.chunk_pixels, 400);
        assert!((g.pixel_size() - 0.025).abs() < 1e-12);
        let g = Grid::from_preset(&p, Some(4000)).unwrap();
        assert_eq!((g.chunk_pixels, g.chunks_per_tile()), (1000, 16));
        let err = Grid::from_preset(&p, Some(1500)).unwrap_err();
        assert_eq!(
            err,
            GridError::ChunkDoesNotDivide {
                chunk: 1000,
                tile: 1500
            }
        );
        assert!(Grid::from_preset(&p, Some(0)).is_err());
    }

    #[test]
    fn chunks_map_back_to_their_cell() {
        let g = glad();
        let cell = g.cell("00N_000E".parse().unwrap()).unwrap();
        let (cy, cx) = g.first_chunk(cell);
        assert_eq!((cy, cx), (320, 720));
        assert_eq!(g.cell_of_chunk(cy + 39, cx + 39), Some(cell));
        assert_ne!(g.cell_of_chunk(cy + 40, cx), Some(cell));
        assert_eq!(g.cell_of_chunk(560, 0), None);
    }

    #[test]
    fn origins_snap_to_cells_within_a_tenth_of_a_pixel() {
        let g = glad();
        assert_eq!(
            g.cell_at_origin(-180.0, 80.0),
            Some(Cell { col: 0, row: 0 })
        );
        assert_eq!(
            g.cell_at_origin(-0.000_001, 0.000_001),
            Some(Cell { col: 18, row: 8 })
        );
        assert_eq!(g.cell_at_origin(-179.5, 80.0), None);
        assert_eq!(g.cell_at_origin(180.0, 80.0), None);
        assert_eq!(g.cell_at_origin(-180.0 + 0.00025, 80.0), None);
    }
}
