//! The cube's layout: shape, chunks, coordinates and metadata, and where each tile lands.
//!
//! The layout is derived from a preset at `init` and stored in the root group's attributes
//! (key `tilecube`), so every later command reads it back from the repository itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::grid::{Cell, Grid, TileName};
use crate::overview::{Level, Resampling, pyramid_to};
use crate::preset::Preset;

use super::{CubeError, LayoutError};

/// Root attribute key holding the serialized layout.
pub const LAYOUT_ATTR: &str = "tilecube";

/// The key of tilecube's own snapshot properties (the tiles a commit wrote, a layout).
pub(crate) fn props_key() -> &'static str {
    LAYOUT_ATTR
}
/// Name of the scalar coordinate carrying the CRS.
pub const SPATIAL_REF_ATTRS_KEY: &str = "spatial_ref";

/// Everything needed to place tiles in the cube and describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    pub preset: String,
    pub variable: String,
    pub fill_value: u8,
    /// The source files' nodata where it is not the fill value, made the fill value as
    /// tiles are read (`None`: the files' values are taken as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodata: Option<u8>,
    pub zstd_level: i32,
    pub years: Vec<i32>,
    pub origin_lon: i32,
    pub origin_lat: i32,
    pub tile_degrees: u32,
    pub columns: u32,
    pub rows: u32,
    pub tile_pixels: u64,
    pub chunk_pixels: u64,
    pub epsg: u32,
    #[serde(default)]
    pub variable_attributes: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The overview pyramid, when the cube has one (`None`: a cube laid out without, or
    /// before overviews existed; `tilecube overviews` adds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overviews: Option<Overviews>,
    /// This cube's identity: made anew by every `init` (`--force` too), so state kept
    /// outside the repository (runs, the failure journal, plans) is tied to the cube, not
    /// to its path. Empty for cubes laid out before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cube_id: String,
    /// The preset's text as `init` read it, so later commands need no `--preset`; empty for
    /// cubes laid out before it was recorded (their preset is the built-in of that name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub preset_text: String,
}

/// How a cube's overview levels are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overviews {
    pub resampling: Resampling,
    pub coarsest_width: u64,
    /// The zstd level of the levels' chunks; `None` for cubes laid out before it was
    /// chosen apart, whose levels use the cube's own level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zstd_level: Option<i32>,
}

impl Overviews {
    /// The pyramid of a preset, unless it switches overviews off.
    pub fn of_preset(preset: &Preset) -> Option<Self> {
        let o = &preset.overviews;
        o.enabled.then_some(Self {
            resampling: preset.resampling(preset.variable()),
            coarsest_width: o.coarsest_width,
            zstd_level: Some(o.zstd_level),
        })
    }
}

impl Layout {
    /// The layout of a preset on a settled grid.
    pub fn new(preset: &Preset, grid: &Grid) -> Self {
        Self {
            preset: preset.name.clone(),
            variable: preset.variable().name.clone(),
            // A uint8 value (the grid took the preset: Grid::from_preset).
            fill_value: preset.variable().fill_value as u8,
            // Only a nodata apart from the fill value is anything to replace.
            nodata: preset
                .variable()
                .nodata
                .filter(|n| *n != preset.variable().fill_value)
                .map(|n| n as u8),
            zstd_level: preset.variable().zstd_level,
            years: preset.years(),
            origin_lon: grid.origin_lon,
            origin_lat: grid.origin_lat,
            tile_degrees: grid.tile_degrees,
            columns: grid.columns,
            rows: grid.rows,
            tile_pixels: grid.tile_pixels,
            chunk_pixels: grid.chunk_pixels,
            epsg: grid.epsg,
            variable_attributes: preset
                .variable()
                .attributes
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), crate::preset::attribute_json(v)?)))
                .collect(),
            attributes: preset.attributes.clone(),
            overviews: Overviews::of_preset(preset),
            cube_id: String::new(),
            preset_text: preset.text.clone(),
        }
    }

    /// The overview levels, finest first (none when the cube has no pyramid).
    pub fn levels(&self) -> Vec<Level> {
        let Some(o) = self.overviews else {
            return Vec::new();
        };
        let (h, w) = self.grid().shape();
        pyramid_to(w, h, self.tile_pixels, self.chunk_pixels, o.coarsest_width)
    }

    /// The overview levels written with each tile (a tile maps to whole chunks of them).
    pub fn tile_levels(&self) -> Vec<Level> {
        self.levels()
            .into_iter()
            .take_while(|l| !l.is_coarse())
            .collect()
    }

    /// Path of the data variable of level `k` (0: the cube itself, `k`: the `k`th overview).
    pub fn level_path(&self, k: usize) -> String {
        match k.checked_sub(1).and_then(|i| self.levels().get(i).copied()) {
            Some(level) => format!("/{}/{}", level.group(), self.variable),
            None => self.variable_path(),
        }
    }

    /// Array shape (year, y, x) and chunk shape of level `k` (0: the cube itself).
    pub fn level_shape(&self, k: usize) -> ([u64; 3], [u64; 3]) {
        match k.checked_sub(1).and_then(|i| self.levels().get(i).copied()) {
            Some(l) => (
                [self.years.len() as u64, l.height, l.width],
                [1, l.chunk, l.chunk],
            ),
            None => (self.shape(), self.chunk_shape()),
        }
    }

    /// The grid this layout tiles.
    pub fn grid(&self) -> Grid {
        Grid {
            origin_lon: self.origin_lon,
            origin_lat: self.origin_lat,
            tile_degrees: self.tile_degrees,
            columns: self.columns,
            rows: self.rows,
            tile_pixels: self.tile_pixels,
            chunk_pixels: self.chunk_pixels,
            epsg: self.epsg,
        }
    }

    /// Array shape of the data variable: (year, y, x).
    pub fn shape(&self) -> [u64; 3] {
        let (h, w) = self.grid().shape();
        [self.years.len() as u64, h, w]
    }

    /// Chunk shape of the data variable.
    pub fn chunk_shape(&self) -> [u64; 3] {
        [1, self.chunk_pixels, self.chunk_pixels]
    }

    /// Index of a year on the year axis.
    pub fn year_index(&self, year: i32) -> Option<usize> {
        self.years.iter().position(|&y| y == year)
    }

    /// Path of the data variable in the repository.
    pub fn variable_path(&self) -> String {
        format!("/{}", self.variable)
    }

    /// Chunk indices (year, y, x) of every chunk of a tile, strip by strip.
    pub fn tile_chunks(&self, year_index: usize, cell: Cell) -> impl Iterator<Item = [u64; 3]> {
        let grid = self.grid();
        let n = grid.chunks_per_side();
        let (cy0, cx0) = grid.first_chunk(cell);
        (0..n).flat_map(move |dy| (0..n).map(move |dx| [year_index as u64, cy0 + dy, cx0 + dx]))
    }

    /// The tile a chunk belongs to, with its year.
    pub fn tile_of_chunk(&self, chunk: &[u32]) -> Option<(i32, TileName)> {
        if chunk.len() != 3 {
            return None;
        }
        let year = *self.years.get(chunk[0] as usize)?;
        let grid = self.grid();
        let cell = grid.cell_of_chunk(chunk[1] as u64, chunk[2] as u64)?;
        Some((year, grid.tile_at(cell)))
    }

    /// Parse the layout from the root group's attributes.
    pub fn from_root_attributes(
        attrs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Self>, CubeError> {
        match attrs.get(LAYOUT_ATTR) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|source| {
                    LayoutError::Attribute {
                        name: LAYOUT_ATTR,
                        source,
                    }
                    .into()
                }),
        }
    }

    /// The zstd level of level `k`'s chunks (0: the cube itself).
    pub fn zstd_level_of(&self, k: usize) -> i32 {
        match (k, self.overviews.and_then(|o| o.zstd_level)) {
            (1.., Some(level)) => level,
            _ => self.zstd_level,
        }
    }

    /// A check that flags given on the command line agree with the stored layout.
    pub fn check_tile_pixels(&self, tile_pixels: Option<u64>) -> Result<(), CubeError> {
        match tile_pixels {
            Some(given) if given != self.tile_pixels => Err(LayoutError::TilePixelsMismatch {
                given,
                cube: self.tile_pixels,
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// x coordinate values (pixel centres, degrees east).
    pub fn x_values(&self) -> Vec<f64> {
        let p = self.grid().pixel_size();
        let (_, w) = self.grid().shape();
        (0..w)
            .map(|i| self.origin_lon as f64 + (i as f64 + 0.5) * p)
            .collect()
    }

    /// y coordinate values (pixel centres, degrees north, decreasing).
    pub fn y_values(&self) -> Vec<f64> {
        let p = self.grid().pixel_size();
        let (h, _) = self.grid().shape();
        (0..h)
            .map(|j| self.origin_lat as f64 - (j as f64 + 0.5) * p)
            .collect()
    }

    /// The GDAL geotransform of the whole cube, as GDAL writes it in attributes.
    pub fn geotransform_attr(&self) -> String {
        self.geotransform_attr_at(1)
    }

    /// The GDAL geotransform of a level `factor` times coarser, as GDAL writes it.
    pub fn geotransform_attr_at(&self, factor: u64) -> String {
        let mut g = self.grid().geotransform();
        g[1] *= factor as f64;
        g[5] *= factor as f64;
        format!(
            "{:.1} {} {:.1} {:.1} {:.1} {}",
            g[0], g[1], g[2], g[3], g[4], g[5]
        )
    }
}

#[cfg(test)]
impl Layout {
    /// The built-in GLAD preset's layout at full size, for unit tests.
    pub(crate) fn glad() -> Self {
        let p = crate::preset::Preset::glad();
        Self::new(&p, &crate::grid::Grid::from_preset(&p, None).unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overview_levels_take_their_own_zstd_level_and_older_cubes_the_cubes() {
        let l = Layout::glad();
        assert_eq!(l.zstd_level_of(0), l.zstd_level);
        assert_eq!(l.zstd_level_of(1), crate::preset::OVERVIEW_ZSTD_LEVEL);
        assert_eq!(l.zstd_level_of(5), crate::preset::OVERVIEW_ZSTD_LEVEL);
        // A layout stored before the level was chosen apart reads back with the cube's.
        let mut stored = serde_json::to_value(&l).unwrap();
        stored["overviews"]
            .as_object_mut()
            .unwrap()
            .remove("zstd_level");
        let older: Layout = serde_json::from_value(stored).unwrap();
        assert_eq!(older.overviews.unwrap().zstd_level, None);
        assert_eq!(older.zstd_level_of(1), l.zstd_level);
    }

    #[test]
    fn glad_layout_has_the_published_shape_and_geotransform() {
        let l = Layout::glad();
        assert_eq!(l.shape(), [5, 560_000, 1_440_000]);
        assert_eq!(l.chunk_shape(), [1, 1000, 1000]);
        assert_eq!(
            l.geotransform_attr(),
            "-180.0 0.00025 0.0 80.0 0.0 -0.00025"
        );
        let x = l.x_values();
        assert_eq!(x.len(), 1_440_000);
        assert!((x[0] - (-180.0 + 0.000125)).abs() < 1e-12);
        let y = l.y_values();
        assert!((y[559_999] - (-60.0 + 0.000125)).abs() < 1e-9);
    }

    #[test]
    fn chunks_of_a_tile_cover_its_region_and_map_back() {
        let l = Layout::glad();
        let grid = l.grid();
        let tile: TileName = "50S_170E".parse().unwrap();
        let cell = grid.cell(tile).unwrap();
        let chunks: Vec<_> = l.tile_chunks(4, cell).collect();
        assert_eq!(chunks.len(), 1600);
        assert_eq!(chunks[0], [4, 520, 1400]);
        assert_eq!(chunks[1599], [4, 559, 1439]);
        assert_eq!(l.tile_of_chunk(&[4, 559, 1439]), Some((2020, tile)));
        assert_eq!(l.tile_of_chunk(&[5, 0, 0]), None);
    }

    #[test]
    fn layout_round_trips_through_root_attributes() {
        let l = Layout::glad();
        let mut attrs = serde_json::Map::new();
        attrs.insert(LAYOUT_ATTR.into(), serde_json::to_value(&l).unwrap());
        assert_eq!(
            Layout::from_root_attributes(&attrs).unwrap(),
            Some(l.clone())
        );
        assert!(l.check_tile_pixels(Some(40_000)).is_ok());
        assert!(l.check_tile_pixels(Some(400)).is_err());
    }
}
