//! Dataset presets: the tiling grid, years, variable and attributes of a cube, as data.
//!
//! The GLAD preset ships in `assets/glad.toml` and is embedded in the binary; a config file
//! may point at another preset file with the same shape.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::overview::Resampling;

/// The preset embedded in the binary: GLAD land cover and land use 2000-2020.
pub const GLAD_TOML: &str = include_str!("../assets/glad.toml");

/// Errors reading or checking a preset.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("cannot read preset {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("preset {origin} is not valid TOML for a preset: {message}")]
    Parse { origin: String, message: String },
    #[error("preset {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// A whole dataset preset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    #[serde(default)]
    pub title: String,
    pub grid: GridSpec,
    pub years: YearSpec,
    pub variable: VariableSpec,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub source: SourceSpec,
    /// The multiscale pyramid written with every tile (on unless the preset says `off`).
    #[serde(default)]
    pub overviews: OverviewSpec,
}

/// The overview pyramid of a preset's cubes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverviewSpec {
    /// Write overview levels at all.
    pub enabled: bool,
    /// How a 2×2 block becomes one pixel: `mode` for classes, `average` for quantities.
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

/// The tiling grid: where tiles sit on the globe and how many pixels they hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSpec {
    pub origin_lon: i32,
    pub origin_lat: i32,
    pub tile_degrees: u32,
    pub columns: u32,
    pub rows: u32,
    pub tile_pixels: u64,
    pub epsg: u32,
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
/// Every year lies in [`YEARS`]. A cube keeps the years it was laid out with, and
/// `tilecube extend --year Y` appends one after its last.
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

/// The cube's one data variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableSpec {
    pub name: String,
    pub dtype: String,
    pub fill_value: u8,
    pub chunk_pixels: u64,
    pub zstd_level: i32,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Where tiles and tile lists sit under a source root.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub tile: String,
    pub list: String,
    #[serde(default)]
    pub published: Option<String>,
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

    /// Why these years cannot lay out a cube, if they cannot: an empty range or list, a list
    /// out of order or with a year twice, a year outside [`YEARS`].
    fn problem(&self) -> Option<String> {
        match self {
            Self::Range(r) if r.step <= 0 || r.last < r.first => Some(format!(
                "years {}..{} step {} is empty",
                r.first, r.last, r.step
            )),
            Self::List(years) if years.is_empty() => {
                Some("years = []: a preset lists at least one year".into())
            }
            Self::List(years) => years
                .windows(2)
                .find(|w| w[1] <= w[0])
                .map(|w| {
                    format!(
                        "years = {years:?}: list the years in increasing order, each once ({} after {})",
                        w[1], w[0]
                    )
                })
                .or_else(|| out_of_range(years)),
            Self::Range(r) => out_of_range(&[r.first, r.last]),
        }
    }
}

/// The first year outside [`YEARS`], named.
fn out_of_range(years: &[i32]) -> Option<String> {
    years.iter().find(|y| !YEARS.contains(y)).map(|y| {
        format!(
            "year {y} is not a year a cube takes ({} to {})",
            YEARS.start(),
            YEARS.end()
        )
    })
}

impl Preset {
    /// The embedded GLAD preset.
    pub fn glad() -> Self {
        // The embedded preset is part of the binary and checked by a unit test.
        Self::parse(GLAD_TOML, "assets/glad.toml").expect("embedded preset is valid")
    }

    /// Read a preset from a TOML file.
    pub fn load(path: &Path) -> Result<Self, PresetError> {
        let text = std::fs::read_to_string(path).map_err(|source| PresetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse and check a preset; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PresetError> {
        let preset: Preset = toml::from_str(text).map_err(|e| PresetError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        preset.check(origin)?;
        Ok(preset)
    }

    fn check(&self, origin: &str) -> Result<(), PresetError> {
        let invalid = |message: String| PresetError::Invalid {
            origin: origin.to_string(),
            message,
        };
        if self.variable.dtype != "uint8" {
            return Err(invalid(format!(
                "variable dtype {:?} is not supported (tilecube writes uint8 cubes)",
                self.variable.dtype
            )));
        }
        let g = &self.grid;
        if g.columns == 0 || g.rows == 0 || g.tile_degrees == 0 || g.tile_pixels == 0 {
            return Err(invalid(
                "grid columns, rows, tile_degrees and tile_pixels must be positive".into(),
            ));
        }
        if g.epsg == 4326 {
            let deg = i64::from(g.tile_degrees);
            let (north, south) = (
                i64::from(g.origin_lat),
                i64::from(g.origin_lat) - i64::from(g.rows) * deg,
            );
            if north > 90 || south < -90 {
                return Err(invalid(format!(
                    "grid rows run from {north}° to {south}° of latitude: {} rows of {deg}° from origin_lat {north} pass the pole (latitudes lie within ±90°)",
                    g.rows
                )));
            }
            let (west, east) = (
                i64::from(g.origin_lon),
                i64::from(g.origin_lon) + i64::from(g.columns) * deg,
            );
            if west < -180 || east > 180 {
                return Err(invalid(format!(
                    "grid columns run from {west}° to {east}° of longitude: {} columns of {deg}° from origin_lon {west} leave -180..180",
                    g.columns
                )));
            }
        }
        if let Some(problem) = self.years.problem() {
            return Err(invalid(problem));
        }
        if self.variable.chunk_pixels == 0 {
            return Err(invalid("variable chunk_pixels must be positive".into()));
        }
        for key in ["{year}", "{tile}"] {
            if !self.source.tile.contains(key) {
                return Err(invalid(format!("source.tile must contain {key}")));
            }
        }
        if self.overviews.coarsest_width == 0 {
            return Err(invalid("overviews.coarsest_width must be positive".into()));
        }
        // Zarr's zstd codec (and so every reader of the cube) takes levels up to 22.
        for (key, level) in [
            ("variable.zstd_level", self.variable.zstd_level),
            ("overviews.zstd_level", self.overviews.zstd_level),
        ] {
            if !ZSTD_LEVELS.contains(&level) {
                return Err(invalid(format!(
                    "{key} = {level}: zstd levels run from {} to {}",
                    ZSTD_LEVELS.start(),
                    ZSTD_LEVELS.end()
                )));
            }
        }
        if !self.source.list.contains("{year}") {
            return Err(invalid("source.list must contain {year}".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_glad_preset_describes_the_glad_grid() {
        let p = Preset::glad();
        assert_eq!(p.grid.columns, 36);
        assert_eq!(p.grid.rows, 14);
        assert_eq!(p.grid.tile_pixels, 40_000);
        assert_eq!(p.years.all(), vec![2000, 2005, 2010, 2015, 2020]);
        assert_eq!(p.variable.fill_value, 255);
        assert_eq!(p.variable.chunk_pixels, 1000);
        assert_eq!(p.attributes["license"], "CC BY 4.0");
    }

    #[test]
    fn preset_with_wrong_dtype_is_refused_with_its_name() {
        let text = GLAD_TOML.replace("dtype = \"uint8\"", "dtype = \"int16\"");
        let err = Preset::parse(&text, "mine.toml").unwrap_err().to_string();
        assert!(err.contains("mine.toml") && err.contains("int16"), "{err}");
    }

    #[test]
    fn a_grid_past_the_pole_is_refused() {
        let text = GLAD_TOML.replace("rows = 14", "rows = 18");
        let err = Preset::parse(&text, "mine.toml").unwrap_err().to_string();
        assert!(err.contains("mine.toml") && err.contains("-100°"), "{err}");
        let text = GLAD_TOML.replace("columns = 36", "columns = 37");
        let err = Preset::parse(&text, "mine.toml").unwrap_err().to_string();
        assert!(err.contains("longitude"), "{err}");
    }

    /// The GLAD preset with its `[years]` table replaced by `years = LIST` at the top.
    fn with_year_list(list: &str) -> String {
        let (header, keys) = ("[years]\n", "first = 2000\nlast = 2020\nstep = 5\n");
        assert!(GLAD_TOML.contains(header) && GLAD_TOML.contains(keys));
        let text = GLAD_TOML.replace(header, "").replace(keys, "");
        format!("years = {list}\n{text}")
    }

    #[test]
    fn years_may_be_listed_and_a_list_is_checked() {
        let p = Preset::parse(&with_year_list("[2000, 2005, 2012, 2020]"), "mine.toml").unwrap();
        assert_eq!(p.years.all(), vec![2000, 2005, 2012, 2020]);
        for (list, says) in [
            (
                "[2005, 2000]",
                "preset mine.toml: years = [2005, 2000]: list the years in increasing order, each once (2000 after 2005)",
            ),
            (
                "[2000, 2005, 2005]",
                "preset mine.toml: years = [2000, 2005, 2005]: list the years in increasing order, each once (2005 after 2005)",
            ),
            (
                "[]",
                "preset mine.toml: years = []: a preset lists at least one year",
            ),
            (
                "[0, 2000]",
                "preset mine.toml: year 0 is not a year a cube takes (1 to 9999)",
            ),
            (
                "[2000, 20000]",
                "preset mine.toml: year 20000 is not a year a cube takes (1 to 9999)",
            ),
        ] {
            let err = Preset::parse(&with_year_list(list), "mine.toml").unwrap_err();
            assert_eq!(err.to_string(), says, "{list}");
        }
        // Neither a list nor a table: the message says which forms there are.
        let err = Preset::parse(&with_year_list("\"2000\""), "mine.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a list of years (years = [2000, 2005, 2010])"),
            "{err}"
        );
        // The table form is still checked as before.
        let text = GLAD_TOML.replace("step = 5", "step = 0");
        let err = Preset::parse(&text, "mine.toml").unwrap_err().to_string();
        assert!(err.ends_with("years 2000..2020 step 0 is empty"), "{err}");
        let text = GLAD_TOML.replace("first = 2000", "first = -5");
        let err = Preset::parse(&text, "mine.toml").unwrap_err().to_string();
        assert!(
            err.ends_with("year -5 is not a year a cube takes (1 to 9999)"),
            "{err}"
        );
    }

    #[test]
    fn zstd_levels_past_what_zarr_reads_are_refused_by_key() {
        let text = GLAD_TOML.replace("zstd_level = 1", "zstd_level = 99");
        let err = Preset::parse(&text, "mine.toml").unwrap_err().to_string();
        assert!(
            err.contains("mine.toml") && err.contains("overviews.zstd_level = 99"),
            "{err}"
        );
        let text = GLAD_TOML.replace("zstd_level = 3", "zstd_level = 23");
        let err = Preset::parse(&text, "mine.toml").unwrap_err().to_string();
        assert!(err.contains("variable.zstd_level = 23"), "{err}");
        let text = GLAD_TOML.replace("zstd_level = 1", "zstd_level = -7");
        assert_eq!(
            Preset::parse(&text, "mine.toml")
                .unwrap()
                .overviews
                .zstd_level,
            -7
        );
    }
}
