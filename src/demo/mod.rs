//! GLAD-like sources made with GDAL: the demo cube, and the tiles tests and benchmarks use.
//!
//! Tiles are real GeoTIFFs: LZW-compressed, striped, EPSG:4326, on the grid, with land-cover
//! classes that change a little from year to year, in one of two textures ([`Texture`]):
//! GLAD-like (patches of class groups with per-pixel quantities, the default of `demo` and
//! `bench`) or blocky (smooth; what tests check pixel by pixel). A coarse land mask leaves
//! ocean cells without a tile, as GLAD does.

use std::path::{Path, PathBuf};

use gdal::DriverManager;
use gdal::raster::{Buffer, GdalType, RasterCreationOptions};
use gdal::spatial_ref::SpatialRef;

use crate::grid::{Grid, TileName};
use crate::source::Source;

mod texture;

pub use texture::Texture;

/// Errors making synthetic tiles.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("writing {path}: {reason}")]
    Write { path: String, reason: String },
}

#[cfg(feature = "test-support")]
pub use flaw::Flaw;
#[cfg(not(feature = "test-support"))]
use flaw::Flaw;

mod flaw {
    /// How a synthetic tile departs from a good one (for tests of bad input; public with the
    /// `test-support` feature only).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    #[cfg_attr(not(feature = "test-support"), allow(dead_code))]
    pub enum Flaw {
        #[default]
        None,
        /// Stored as int16.
        Int16,
        /// Three bands.
        ThreeBands,
        /// One pixel short on each side.
        WrongSize,
        /// Upper-left corner half a tile east of the grid.
        OffGrid,
        /// In Web Mercator (EPSG:3857).
        WrongCrs,
        /// Every pixel is the fill value.
        AllFill,
    }
}

/// Longitude ranges `[west, east)` of land per 10° row (north edge), for the demo land mask.
const LAND: &[(i32, &[(i32, i32)])] = &[
    (80, &[(-160, -10), (10, 30), (50, 180)]),
    (70, &[(-170, -20), (0, 180)]),
    (60, &[(-170, -60), (-50, -40), (0, 180)]),
    (50, &[(-130, -50), (-10, 160)]),
    (40, &[(-130, -60), (-10, 150)]),
    (30, &[(-120, -80), (-20, 130)]),
    (20, &[(-110, -60), (-20, 120)]),
    (10, &[(-90, -50), (-20, 130)]),
    (0, &[(-80, -30), (0, 50), (90, 150)]),
    (-10, &[(-80, -30), (10, 50), (110, 160)]),
    (-20, &[(-80, -40), (10, 40), (110, 160)]),
    (-30, &[(-80, -50), (10, 30), (110, 180)]),
    (-40, &[(-80, -60), (140, 150), (160, 180)]),
    (-50, &[(-80, -60)]),
];

/// Whether the demo land mask has land in a tile.
pub fn is_land(tile: TileName) -> bool {
    LAND.iter()
        .filter(|(lat, _)| *lat == tile.lat)
        .flat_map(|(_, ranges)| ranges.iter())
        .any(|&(w, e)| tile.lon >= w && tile.lon < e)
}

/// The tiles of the grid with land under them.
pub fn land_tiles(grid: &Grid) -> Vec<TileName> {
    grid.tiles().filter(|t| is_land(*t)).collect()
}

/// The class of a pixel of a blocky synthetic tile (the tiles tests check pixel by pixel):
/// blocky classes 0..=40 with speckle, some fill (255), a few blocks changing each year.
pub fn pixel(tile: TileName, year: i32, x: usize, y: usize) -> u8 {
    let mut one = [0u8; 1];
    Texture::Blocky.fill_row(tile, year, y, x, 0.0, &mut one);
    one[0]
}

/// Write one blocky synthetic tile as a striped, LZW-compressed GeoTIFF, strip by strip.
pub fn write_tile(path: &Path, grid: &Grid, tile: TileName, year: i32) -> Result<(), DemoError> {
    write_tile_with(path, grid, tile, year, Flaw::None, Texture::Blocky)
}

/// Write one synthetic tile of a texture as a striped, LZW-compressed GeoTIFF.
pub fn write_textured_tile(
    path: &Path,
    grid: &Grid,
    tile: TileName,
    year: i32,
    texture: Texture,
) -> Result<(), DemoError> {
    write_tile_with(path, grid, tile, year, Flaw::None, texture)
}

/// Write one synthetic tile with a flaw (for tests of bad input).
#[cfg(feature = "test-support")]
pub fn write_flawed_tile(
    path: &Path,
    grid: &Grid,
    tile: TileName,
    year: i32,
    flaw: Flaw,
) -> Result<(), DemoError> {
    write_tile_with(path, grid, tile, year, flaw, Texture::Blocky)
}

fn write_tile_with(
    path: &Path,
    grid: &Grid,
    tile: TileName,
    year: i32,
    flaw: Flaw,
    texture: Texture,
) -> Result<(), DemoError> {
    let err = |e: &dyn std::fmt::Display| DemoError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    }
    let n = grid.tile_pixels as usize;
    let size = if flaw == Flaw::WrongSize { n - 1 } else { n };
    let bands = if flaw == Flaw::ThreeBands { 3 } else { 1 };
    let driver = DriverManager::get_driver_by_name("GTiff").map_err(|e| err(&e))?;
    let options = RasterCreationOptions::from_iter(["COMPRESS=LZW"]);
    let p = grid.pixel_size();
    let (mut ox, oy) = (tile.lon as f64, tile.lat as f64);
    if flaw == Flaw::OffGrid {
        ox += grid.tile_degrees as f64 / 2.0;
    }
    let gt = [ox, p, 0.0, oy, 0.0, -p];
    match flaw {
        Flaw::Int16 => {
            let mut ds = driver
                .create_with_band_type_with_options::<i16, _>(path, size, size, bands, &options)
                .map_err(|e| err(&e))?;
            georef(&mut ds, &gt, grid.epsg, false).map_err(|e| err(&e))?;
            fill_bands(&ds, size, bands, |x, y| pixel(tile, year, x, y) as i16)
                .map_err(|e| err(&e))?;
        }
        _ => {
            let mut ds = driver
                .create_with_band_type_with_options::<u8, _>(path, size, size, bands, &options)
                .map_err(|e| err(&e))?;
            georef(&mut ds, &gt, grid.epsg, flaw == Flaw::WrongCrs).map_err(|e| err(&e))?;
            let all_fill = flaw == Flaw::AllFill;
            fill_rows(&ds, size, bands, |y, row| {
                if all_fill {
                    row.fill(255);
                } else {
                    texture.fill_row(tile, year, y, 0, p, row);
                }
            })
            .map_err(|e| err(&e))?;
        }
    }
    Ok(())
}

fn georef(
    ds: &mut gdal::Dataset,
    gt: &[f64; 6],
    epsg: u32,
    mercator: bool,
) -> gdal::errors::Result<()> {
    ds.set_geo_transform(gt)?;
    let sr = SpatialRef::from_epsg(if mercator { 3857 } else { epsg })?;
    ds.set_spatial_ref(&sr)
}

fn fill_rows(
    ds: &gdal::Dataset,
    size: usize,
    bands: usize,
    row: impl Fn(usize, &mut [u8]),
) -> gdal::errors::Result<()> {
    let rows = ((8 << 20) / size.max(1)).clamp(1, size);
    for b in 1..=bands {
        let mut band = ds.rasterband(b)?;
        let mut y0 = 0;
        while y0 < size {
            let h = rows.min(size - y0);
            let mut data = vec![0u8; size * h];
            for (i, r) in data.chunks_exact_mut(size).enumerate() {
                row(y0 + i, r);
            }
            let mut buf = Buffer::new((size, h), data);
            band.write((0, y0 as isize), (size, h), &mut buf)?;
            y0 += h;
        }
    }
    Ok(())
}

fn fill_bands<T: GdalType + Copy>(
    ds: &gdal::Dataset,
    size: usize,
    bands: usize,
    value: impl Fn(usize, usize) -> T,
) -> gdal::errors::Result<()> {
    let rows = (4 << 20) / size.max(1);
    let rows = rows.clamp(1, size);
    for b in 1..=bands {
        let mut band = ds.rasterband(b)?;
        let mut y0 = 0;
        while y0 < size {
            let h = rows.min(size - y0);
            let mut data = Vec::with_capacity(size * h);
            for y in y0..y0 + h {
                data.extend((0..size).map(|x| value(x, y)));
            }
            let mut buf = Buffer::new((size, h), data);
            band.write((0, y0 as isize), (size, h), &mut buf)?;
            y0 += h;
        }
    }
    Ok(())
}

/// Where a source's tile for a year goes under `root` (the preset's default layout).
pub fn tile_path(root: &Path, year: i32, tile: TileName) -> PathBuf {
    root.join(year.to_string()).join(format!("{tile}.tif"))
}

/// Write a year's tile list as GLAD does: one URL-like path per line.
pub fn write_list(root: &Path, year: i32, tiles: &[TileName]) -> Result<(), DemoError> {
    let lines = tiles.iter().map(|t| tile_path(root, year, *t));
    write_lines(&root.join(format!("{year}.txt")), lines)
}

/// Write a tile list at `path`: one path a line.
fn write_lines(path: &Path, lines: impl Iterator<Item = PathBuf>) -> Result<(), DemoError> {
    let text: String = lines.map(|l| format!("{}\n", l.display())).collect();
    std::fs::write(path, text).map_err(|e| DemoError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Whether `root` is a source an earlier demo made (before it marked its sources): it holds
/// only year lists and year directories, and every list it holds is exactly the demo's.
pub fn looks_made_by_demo(root: &Path, grid: &Grid, years: &[i32]) -> bool {
    let tiles = land_tiles(grid);
    let Ok(entries) = std::fs::read_dir(root) else {
        return false;
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    let known = |n: &String| {
        years
            .iter()
            .any(|y| *n == y.to_string() || *n == format!("{y}.txt"))
    };
    if names.is_empty() || !names.iter().all(known) {
        return false;
    }
    years.iter().all(|&year| {
        let path = root.join(format!("{year}.txt"));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let want: String = tiles
                    .iter()
                    .map(|t| format!("{}\n", tile_path(root, year, *t).display()))
                    .collect();
                text == want
            }
            Err(_) => !path.exists(),
        }
    })
}

/// Where a local source lays a tile's file out.
fn tile_file(source: &Source, year: i32, tile: TileName) -> PathBuf {
    PathBuf::from(source.tile_location(year, tile))
}

/// How many tiles of the whole demo source laid out as the local `source` says are not
/// there yet.
pub fn missing_tiles(source: &Source, grid: &Grid, years: &[i32]) -> usize {
    let tiles = land_tiles(grid);
    years
        .iter()
        .map(|&y| {
            tiles
                .iter()
                .filter(|&&t| !tile_file(source, y, t).exists())
                .count()
        })
        .sum()
}

/// Make a whole GLAD-like source laid out as the local `source` says: every land tile for
/// every year, and the lists.
/// Tiles already present are kept, and GDAL is set up as `storage` says (its block cache).
/// Returns the number of tiles per year.
pub fn make_source(
    source: &Source,
    grid: &Grid,
    years: &[i32],
    texture: Texture,
    storage: &crate::storage_settings::StorageSettings,
) -> Result<usize, DemoError> {
    use rayon::prelude::*;
    crate::source::gdal_setup(storage);
    let tiles = land_tiles(grid);
    let made_dir = |path: &Path| -> Result<(), DemoError> {
        match path.parent() {
            Some(dir) => std::fs::create_dir_all(dir).map_err(|e| DemoError::Write {
                path: dir.display().to_string(),
                reason: e.to_string(),
            }),
            None => Ok(()),
        }
    };
    for &year in years {
        tiles.par_iter().try_for_each(|&t| {
            let path = tile_file(source, year, t);
            if path.exists() {
                return Ok(());
            }
            made_dir(&path)?;
            let tmp = path.with_extension("tif.part");
            write_textured_tile(&tmp, grid, t, year, texture)?;
            std::fs::rename(&tmp, &path).map_err(|e| DemoError::Write {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        })?;
        let list = PathBuf::from(source.list_location(year));
        made_dir(&list)?;
        write_lines(&list, tiles.iter().map(|&t| tile_file(source, year, t)))?;
    }
    Ok(tiles.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::Preset;

    #[test]
    fn land_mask_leaves_ocean_cells_without_tiles() {
        let grid = Grid::from_preset(&Preset::glad(), Some(100)).unwrap();
        let land = land_tiles(&grid);
        assert!(land.len() > 150 && land.len() < 400, "{}", land.len());
        assert!(is_land("50N_010E".parse().unwrap()));
        assert!(!is_land("00N_170W".parse().unwrap()), "mid-Pacific");
    }

    #[test]
    fn synthetic_tiles_read_back_through_gdal() {
        let dir = tempfile::tempdir().unwrap();
        let grid = Grid::from_preset(&Preset::glad(), Some(400)).unwrap();
        let t: TileName = "40N_010E".parse().unwrap();
        let path = dir.path().join("t.tif");
        write_tile(&path, &grid, t, 2005).unwrap();
        let ds = gdal::Dataset::open(&path).unwrap();
        assert_eq!(ds.raster_size(), (400, 400));
        let gt = ds.geo_transform().unwrap();
        assert_eq!((gt[0], gt[3]), (10.0, 40.0));
        let buf = ds
            .rasterband(1)
            .unwrap()
            .read_as::<u8>((0, 0), (400, 400), (400, 400), None)
            .unwrap();
        let expected: Vec<u8> = (0..400)
            .flat_map(|y| (0..400).map(move |x| pixel(t, 2005, x, y)))
            .collect();
        assert_eq!(buf.data(), &expected[..]);
        assert!(expected.contains(&255) && expected.iter().any(|&v| v < 41));
    }
}
