//! The parts of a preset as its TOML spells them: the grid, the years, each variable, the
//! source, the overviews. [`super::Preset::parse`] reads them and [`super::check`] holds them
//! to what a cube needs, naming the key at fault.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::grid::naming::{Corner, UPPER_LEFT_PATTERN};
use crate::overview::Resampling;

/// The overview pyramid of a preset's cubes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverviewSpec {
    /// Write overview levels at all.
    pub enabled: bool,
    /// How a 2×2 block becomes one pixel where a variable does not say: `mode` for
    /// classes, `average` for quantities, `nearest`.
    pub resampling: Resampling,
    /// The coarsest level is the first at most this many pixels wide.
    pub coarsest_width: u64,
    /// The zstd level of the overview levels' chunks (the cube's own stay at the
    /// variable's): they are encoded with every tile, a third of its bytes again, and level
    /// 1 encodes them about twice as fast as 3 for some 15 % more bytes.
    pub zstd_level: i32,
}

/// The zstd levels Zarr's codec takes (negative ones are zstd's fastest).
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = -131_072..=22;

/// The default zstd level of overview levels.
pub const OVERVIEW_ZSTD_LEVEL: i32 = 1;

impl Default for OverviewSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            resampling: Resampling::Mode,
            coarsest_width: crate::overview::MAX_COARSEST_WIDTH,
            zstd_level: OVERVIEW_ZSTD_LEVEL,
        }
    }
}

/// The tiling grid: where tiles sit on the globe, how many pixels they hold, how they are
/// named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSpec {
    /// Longitude of the west edge of the grid's first column, in whole degrees.
    pub origin_lon: i32,
    /// Latitude of the north edge of the grid's first row, in whole degrees.
    pub origin_lat: i32,
    /// A tile's side in degrees (a decimal; tile names give whole degrees, so corners must
    /// fall on them).
    pub tile_degrees: f64,
    pub columns: u32,
    pub rows: u32,
    /// Pixels along one side of a tile.
    pub tile_pixels: u64,
    /// EPSG code of the tiles' coordinate reference system.
    pub epsg: u32,
    /// How a tile's name spells its corner (see [`crate::grid::naming`]).
    #[serde(default = "default_tile_name")]
    pub tile_name: String,
    /// Which corner a name gives.
    #[serde(default = "default_corner")]
    pub name_corner: Corner,
}

fn default_tile_name() -> String {
    UPPER_LEFT_PATTERN.to_string()
}

fn default_corner() -> Corner {
    Corner::UpperLeft
}

/// The years a cube may hold: calendar years of four digits at most (a tile list is named
/// `{year}.txt`, and a year is a Zarr `int64` coordinate readers show as such).
pub const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// The years of the cube, in either form a preset may give them:
///
/// - `years = [2000, 2005, 2012]` (at the top of the file, before any table): the years
///   listed, which must be increasing, each once;
/// - a `[years]` table of `first`, `last` and `step`: `first..=last` by `step`.
///
/// A preset without years has no time axis: one release is one cube.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "years: a list of years (years = [2000, 2005, 2010]) or a [years] table of first, last and step"
)]
pub enum YearSpec {
    List(Vec<i32>),
    Range(YearRange),
}

/// The `[years]` table: `first..=last` by `step`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YearRange {
    pub first: i32,
    pub last: i32,
    pub step: i32,
}

impl YearSpec {
    /// Every year of the cube, in order.
    pub fn all(&self) -> Vec<i32> {
        match self {
            Self::List(years) => years.clone(),
            Self::Range(r) => {
                let step = r.step.max(1) as usize;
                (r.first..=r.last).step_by(step).collect()
            }
        }
    }
}

/// One variable of the cube: an array of its own, read from a file (or some bands of one)
/// of every tile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableSpec {
    /// The array's name in the cube.
    pub name: String,
    /// `uint8`, `int16`, `uint16` or `float32` ([`super::DType`]).
    pub dtype: String,
    /// The cube's value where no tile has data (Zarr's fill value).
    pub fill_value: f64,
    /// The source files' nodata value, when they have one apart from the fill value: such
    /// pixels become the fill value in the cube and are left out of averages.
    #[serde(default)]
    pub nodata: Option<f64>,
    /// Chunk side in pixels (a time or band axis is chunked by 1).
    pub chunk_pixels: u64,
    pub zstd_level: i32,
    /// The `{layer}` of the file templates for this variable (its name if not given).
    #[serde(default)]
    pub layer: Option<String>,
    /// The file this variable is read from, under the source root (`source.tile` if not
    /// given).
    #[serde(default)]
    pub file: Option<String>,
    /// The one band of the file this variable is (1 if not given).
    #[serde(default)]
    pub band: Option<u32>,
    /// A band axis: the names of the file's bands 1, 2, … taken in order, the `band`
    /// coordinate of the variable's `(band, y, x)` array.
    #[serde(default)]
    pub bands: Option<Vec<String>>,
    /// How many bands the file has (1, or as many as `bands` names, if not given).
    #[serde(default)]
    pub file_bands: Option<u32>,
    /// How its overview levels are made (the `[overviews]` resampling if not given).
    #[serde(default)]
    pub resampling: Option<Resampling>,
    /// CF attributes: `long_name`, `units`, `flag_values` with `flag_meanings`, any other.
    #[serde(default)]
    pub attributes: BTreeMap<String, toml::Value>,
}

impl VariableSpec {
    /// The `{layer}` of its file templates.
    pub fn layer(&self) -> &str {
        self.layer.as_deref().unwrap_or(&self.name)
    }
}

/// Where a dataset's files and lists sit under a source root.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A tile's file under the root: `{tile}`, `{year}`, `{layer}` and the named parts are
    /// substituted.
    pub tile: String,
    /// The publisher's lists of existing tiles, one path or URL a line (a line is taken by
    /// its file name); none for a dataset found by listing its source.
    #[serde(default)]
    pub list: Option<String>,
    /// Where the published dataset lives.
    #[serde(default)]
    pub published: Option<String>,
    /// Named parts of the templates that differ by year: `[source.parts.version]` with
    /// `2020 = "v100"`, `2021 = "v200"` makes `{version}` in a template.
    #[serde(default)]
    pub parts: Parts,
}

impl SourceSpec {
    /// A template with `{year}`, the named parts of `year` and `{layer}` filled in
    /// (`{tile}` and unknown fields left as they are).
    pub fn fill(&self, template: &str, year: Option<i32>, layer: &str) -> String {
        let s = template.replace("{layer}", layer);
        match year {
            Some(year) => fill_year(&s, year, &self.parts),
            None => s,
        }
    }
}

/// The named parts of the templates, by part and year.
pub type Parts = BTreeMap<String, BTreeMap<String, String>>;

/// A template with `{year}` and the named parts of `year` filled in.
pub fn fill_year(template: &str, year: i32, parts: &Parts) -> String {
    let y = year.to_string();
    let mut s = template.replace("{year}", &y);
    for (name, by_year) in parts {
        if let Some(v) = by_year.get(&y) {
            s = s.replace(&format!("{{{name}}}"), v);
        }
    }
    s
}

/// The `{field}`s of a template, in order.
pub fn fields(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            out.push(&rest[open..]);
            break;
        };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
}
