//! Dataset presets: a tiled global raster described as data — its grid and tile names, its
//! years (or none), its variables (type, fill, nodata, bands, attributes, overview
//! resampling, the file each is read from) and where its files and lists sit.
//!
//! The built-in presets ship in `assets/presets/` and are embedded in the binary; `--preset`
//! or `preset =` in the config file names one of them or a preset file of the same shape.
//! Invariant: a [`Preset`] has passed [`check`] (every refusal names its key), and keeps the
//! text it was read from, which `init` records in the cube.

mod check;
pub mod dtype;
mod spec;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use dtype::DType;
pub use spec::{
    GridSpec, OVERVIEW_ZSTD_LEVEL, OverviewSpec, Parts, SourceSpec, VariableSpec, YEARS, YearRange,
    YearSpec, ZSTD_LEVELS, fields, fill_year,
};

use crate::grid::naming::{NamePattern, TileNaming};
use crate::overview::Resampling;

/// The GLAD preset, the default one (first of [`BUILT_IN`]).
pub const GLAD_TOML: &str = include_str!("../../assets/presets/glad.toml");
/// Hansen Global Forest Change v1.11.
pub const HANSEN_GFC_TOML: &str = include_str!("../../assets/presets/hansen-gfc.toml");

/// The built-in presets: the name `--preset` takes, other names it answers to, the text.
pub const BUILT_IN: [(&str, &[&str], &str); 2] = [
    ("glad-lclu", &["glad"], GLAD_TOML),
    ("hansen-gfc", &[], HANSEN_GFC_TOML),
];

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
    #[error("preset {origin}: {key}: {why}")]
    Invalid {
        origin: String,
        key: String,
        why: String,
    },
    #[error(
        "no preset {name:?}: the built-in ones are {} (see `tilecube presets`), or give a preset file's path",
        built_in_names()
    )]
    Unknown { name: String },
    #[error(
        "the cube was laid out with preset {recorded:?}, and {given:?} was given: leave --preset (and preset =) out to use the cube's own, or init another repository"
    )]
    Differs { recorded: String, given: String },
    #[error(
        "{given} differs from the preset {name:?} the cube was laid out with in {keys}: a preset given to a cube may change only its [source] and [overviews]; leave --preset (and preset =) out to use the cube's own"
    )]
    SameNameDiffers {
        name: String,
        given: String,
        keys: String,
    },
    #[error(
        "preset {preset}: {what}; this tilecube writes cubes of one single-band uint8 variable with a year axis and tile lists, named by their upper-left corner, so far"
    )]
    NotYet { preset: String, what: String },
}

fn built_in_names() -> String {
    BUILT_IN.map(|(n, _, _)| n).join(", ")
}

/// A whole dataset preset, checked.
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: String,
    pub title: String,
    pub grid: GridSpec,
    /// The years of the time axis; `None`: the cube has none (one release).
    pub years: Option<YearSpec>,
    /// The variables, as the preset orders them.
    pub variables: Vec<VariableSpec>,
    pub attributes: BTreeMap<String, String>,
    pub source: SourceSpec,
    /// The multiscale pyramid written with every tile (on unless the preset says `off`).
    pub overviews: OverviewSpec,
    /// The TOML the preset was read from.
    pub text: String,
}

/// A preset as its TOML spells it: `[variable]` is one table or an array of them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    #[serde(default)]
    title: String,
    grid: GridSpec,
    #[serde(default)]
    years: Option<YearSpec>,
    variable: toml::Value,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    source: SourceSpec,
    #[serde(default)]
    overviews: OverviewSpec,
}

impl Preset {
    /// The default preset: the first built-in one.
    pub fn default_preset() -> Self {
        Self::parse(BUILT_IN[0].2, BUILT_IN[0].0).expect("embedded preset is valid")
    }

    /// The embedded GLAD preset.
    pub fn glad() -> Self {
        Self::built_in("glad-lclu").expect("GLAD's preset is built in")
    }

    /// A built-in preset by its name or another it answers to.
    pub fn built_in(name: &str) -> Option<Self> {
        BUILT_IN
            .iter()
            .find(|(n, aliases, _)| *n == name || aliases.contains(&name))
            .map(|(n, _, text)| Self::parse(text, n).expect("built-in presets are valid"))
    }

    /// A preset by name (a built-in) or path (a file): a name with no `/` and no `.toml`
    /// is a built-in's.
    pub fn find(name_or_path: &str) -> Result<Self, PresetError> {
        if !is_path(name_or_path) {
            return Self::built_in(name_or_path).ok_or_else(|| PresetError::Unknown {
                name: name_or_path.to_string(),
            });
        }
        Self::load(Path::new(name_or_path))
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
        let parse_err = |message: String| PresetError::Parse {
            origin: origin.to_string(),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        let tables = match raw.variable {
            toml::Value::Array(items) => items,
            table @ toml::Value::Table(_) => vec![table],
            other => {
                return Err(parse_err(format!(
                    "variable is a {}: give a [variable] table, or [[variable]] tables for several",
                    other.type_str()
                )));
            }
        };
        let mut variables = Vec::with_capacity(tables.len());
        for (i, table) in tables.into_iter().enumerate() {
            let name = table.get("name").and_then(|n| n.as_str()).map_or_else(
                || format!("variable {}", i + 1),
                |n| format!("variable {n:?}"),
            );
            let v: VariableSpec = table
                .try_into()
                .map_err(|e: toml::de::Error| parse_err(format!("{name}: {}", e.message())))?;
            variables.push(v);
        }
        let preset = Self {
            name: raw.name,
            title: raw.title,
            grid: raw.grid,
            years: raw.years,
            variables,
            attributes: raw.attributes,
            source: raw.source,
            overviews: raw.overviews,
            text: text.to_string(),
        };
        check::check(&preset).map_err(|f| PresetError::Invalid {
            origin: origin.to_string(),
            key: f.key,
            why: f.why,
        })?;
        Ok(preset)
    }

    /// Every year of the time axis (none when the cube has none).
    pub fn years(&self) -> Vec<i32> {
        self.years.as_ref().map(YearSpec::all).unwrap_or_default()
    }

    /// How the dataset names its tiles.
    pub fn naming(&self) -> TileNaming {
        TileNaming {
            pattern: NamePattern::parse(&self.grid.tile_name).expect("checked at parse"),
            corner: self.grid.name_corner,
            tile_degrees: self.grid.tile_degrees as i32,
        }
    }

    /// A variable's type (checked at parse).
    pub fn dtype(v: &VariableSpec) -> DType {
        DType::from_name(&v.dtype).unwrap_or(DType::UInt8)
    }

    /// How a variable's overview levels are made.
    pub fn resampling(&self, v: &VariableSpec) -> Resampling {
        v.resampling.unwrap_or(self.overviews.resampling)
    }

    /// What the cube of this preset needs that this tilecube does not write yet, if any.
    pub fn unsupported(&self) -> Option<String> {
        if self.variables.len() != 1 {
            return Some(format!(
                "it has {} variables ({})",
                self.variables.len(),
                self.variables
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let v = &self.variables[0];
        if self.years.is_none() {
            return Some("it has no time axis".into());
        }
        if self.source.list.is_none() {
            return Some("it has no tile lists (tiles found by listing the source)".into());
        }
        if Self::dtype(v) != DType::UInt8 {
            return Some(format!("variable {:?} is {}", v.name, v.dtype));
        }
        if v.bands.is_some() {
            return Some(format!("variable {:?} has a band axis", v.name));
        }
        if v.band.is_some_and(|b| b != 1) || v.file_bands.is_some_and(|b| b != 1) {
            return Some(format!(
                "variable {:?} reads a band of a file of several",
                v.name
            ));
        }
        if !self.naming().is_upper_left_default() {
            return Some(format!(
                "its tiles are named {:?} by their {} corner",
                self.grid.tile_name, self.grid.name_corner
            ));
        }
        None
    }

    /// Refuse a preset whose cube this tilecube does not write yet.
    pub fn supported(&self) -> Result<(), PresetError> {
        match self.unsupported() {
            None => Ok(()),
            Some(what) => Err(PresetError::NotYet {
                preset: self.name.clone(),
                what,
            }),
        }
    }

    /// The cube's one variable (the first, for a preset [`Preset::supported`] takes).
    pub fn variable(&self) -> &VariableSpec {
        &self.variables[0]
    }

    /// The file template of a variable, `{layer}` filled.
    pub fn file_template(&self, v: &VariableSpec) -> String {
        v.file
            .as_deref()
            .unwrap_or(&self.source.tile)
            .replace("{layer}", v.layer())
    }

    /// Where the source's files and lists of the cube's variable are: the source spec with
    /// the variable's file and `{layer}` filled in.
    pub fn source_spec(&self) -> SourceSpec {
        let v = self.variable();
        SourceSpec {
            tile: self.file_template(v),
            list: self
                .source
                .list
                .as_ref()
                .map(|l| l.replace("{layer}", v.layer())),
            published: self.source.published.clone(),
            parts: self.source.parts.clone(),
        }
    }

    /// The parts of this preset that lay out a cube otherwise than `other`: `title`,
    /// `grid`, `years`, `attributes`, and each variable by name (`variable "lclu"`).
    /// Where files are (`[source]`) and the pyramid (`[overviews]`) are not compared.
    pub fn differs_from(&self, other: &Preset) -> Vec<String> {
        let mut out = Vec::new();
        let same =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
        if !same(&self.grid, &other.grid) {
            out.push("[grid]".to_string());
        }
        if self.years() != other.years() {
            out.push("years".to_string());
        }
        if self.attributes != other.attributes {
            out.push("[attributes]".to_string());
        }
        let names = |p: &Preset| {
            p.variables
                .iter()
                .map(|v| v.name.clone())
                .collect::<Vec<_>>()
        };
        if names(self) != names(other) {
            out.push("the variables".to_string());
        } else {
            for (a, b) in self.variables.iter().zip(&other.variables) {
                if !same(a, b) {
                    out.push(format!("variable {:?}", a.name));
                }
            }
        }
        out
    }

    /// One line for `tilecube presets`.
    pub fn summary(&self) -> String {
        let g = &self.grid;
        let years = match self.years() {
            y if y.is_empty() => "no time axis".to_string(),
            y if y.len() == 1 => format!("year {}", y[0]),
            y => format!("{} years {}..{}", y.len(), y[0], y[y.len() - 1]),
        };
        let vars: Vec<String> = self
            .variables
            .iter()
            .map(|v| match &v.bands {
                Some(b) => format!("{}[{}]", v.name, b.len()),
                None => v.name.clone(),
            })
            .collect();
        format!(
            "{}x{} tiles of {}° ({} px), {}, {}",
            g.columns,
            g.rows,
            g.tile_degrees,
            g.tile_pixels,
            years,
            vars.join(" ")
        )
    }
}

/// Whether a `--preset` or `preset =` value names a file (else a built-in preset): it
/// holds a path separator or ends in `.toml`.
pub fn is_path(name_or_path: &str) -> bool {
    name_or_path.contains('/')
        || name_or_path.contains(std::path::MAIN_SEPARATOR)
        || name_or_path.ends_with(".toml")
}

/// A preset attribute's value as JSON (strings, numbers, booleans and lists of them).
pub fn attribute_json(value: &toml::Value) -> Option<serde_json::Value> {
    Some(match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::json!(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number)?,
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .filter(|i| !i.is_array() && !i.is_table())
                .map(attribute_json)
                .collect::<Option<Vec<_>>>()
                .filter(|v| v.len() == items.len())?,
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
