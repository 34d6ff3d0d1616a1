//! What a preset must hold to lay out a cube, each refusal naming the key at fault and why.
//!
//! Invariant: a preset that passes [`check`] has a grid whose every tile prints a name its
//! pattern reads back, variables of known types whose fill and nodata values their type
//! holds, chunks that divide the tile, bands within the file's, and templates whose every
//! field is known and filled for every year.

use std::collections::BTreeSet;

use super::spec::{YEARS, ZSTD_LEVELS, fields};
use super::{DType, Preset, YearSpec};
use crate::grid::TileName;
use crate::grid::naming::{NamePattern, TileNaming};

/// A refusal: the key at fault and why.
pub struct Fault {
    pub key: String,
    pub why: String,
}

fn fault(key: impl Into<String>, why: impl Into<String>) -> Fault {
    Fault {
        key: key.into(),
        why: why.into(),
    }
}

/// The first thing wrong with a preset, if any.
pub fn check(p: &Preset) -> Result<(), Fault> {
    // The name is recorded in the cube and compared: a word, as `--preset` takes it.
    if p.name.is_empty()
        || !p
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        || p.name.ends_with(".toml")
    {
        return Err(fault(
            format!("name = {:?}", p.name),
            "a preset's name is ASCII letters, digits, '.', '_' and '-' (not ending in .toml)",
        ));
    }
    grid(p)?;
    if let Some(years) = &p.years {
        self::years(years)?;
    }
    if p.variables.is_empty() {
        return Err(fault("variable", "a preset has at least one variable"));
    }
    let mut names = BTreeSet::new();
    for v in &p.variables {
        if !names.insert(v.name.as_str()) {
            return Err(fault(
                format!("variable {:?}", v.name),
                "two variables have this name",
            ));
        }
    }
    for v in &p.variables {
        variable(p, v)?;
    }
    source(p)?;
    if p.overviews.coarsest_width == 0 {
        return Err(fault("overviews.coarsest_width", "must be positive"));
    }
    zstd("overviews.zstd_level", p.overviews.zstd_level)?;
    Ok(())
}

fn zstd(key: &str, level: i32) -> Result<(), Fault> {
    // Zarr's zstd codec (and so every reader of the cube) takes levels up to 22.
    if ZSTD_LEVELS.contains(&level) {
        return Ok(());
    }
    Err(fault(
        format!("{key} = {level}"),
        format!(
            "zstd levels run from {} to {}",
            ZSTD_LEVELS.start(),
            ZSTD_LEVELS.end()
        ),
    ))
}

fn grid(p: &Preset) -> Result<(), Fault> {
    let g = &p.grid;
    for (key, zero) in [
        ("grid.columns", g.columns == 0),
        ("grid.rows", g.rows == 0),
        ("grid.tile_pixels", g.tile_pixels == 0),
        (
            "grid.tile_degrees",
            g.tile_degrees.is_nan() || g.tile_degrees <= 0.0,
        ),
    ] {
        if zero {
            return Err(fault(key, "must be positive"));
        }
    }
    if g.tile_degrees.fract() != 0.0 || g.tile_degrees > 360.0 {
        return Err(fault(
            format!("grid.tile_degrees = {}", g.tile_degrees),
            "tile names give whole degrees, so a tile's side must be a whole number of degrees (at most 360)",
        ));
    }
    // Origins and tile sides are in degrees: the CRS is a geographic one GDAL knows.
    match gdal::spatial_ref::SpatialRef::from_epsg(g.epsg) {
        Ok(srs) if srs.is_geographic() => {}
        Ok(srs) => {
            return Err(fault(
                format!("grid.epsg = {}", g.epsg),
                format!(
                    "{} is not a geographic CRS: tiles are placed by degrees of latitude and longitude (EPSG:4326 and its kind)",
                    srs.name().unwrap_or_else(|| "it".into())
                ),
            ));
        }
        Err(_) => {
            return Err(fault(
                format!("grid.epsg = {}", g.epsg),
                "not an EPSG code of a CRS GDAL knows",
            ));
        }
    }
    let deg = g.tile_degrees as i64;
    if g.epsg == 4326 {
        let (north, south) = (
            i64::from(g.origin_lat),
            i64::from(g.origin_lat) - i64::from(g.rows) * deg,
        );
        if north > 90 || south < -90 {
            return Err(fault(
                "grid.rows",
                format!(
                    "grid rows run from {north}° to {south}° of latitude: {} rows of {deg}° from origin_lat {north} pass the pole (latitudes lie within ±90°)",
                    g.rows
                ),
            ));
        }
        let (west, east) = (
            i64::from(g.origin_lon),
            i64::from(g.origin_lon) + i64::from(g.columns) * deg,
        );
        if west < -180 || east > 180 {
            return Err(fault(
                "grid.columns",
                format!(
                    "grid columns run from {west}° to {east}° of longitude: {} columns of {deg}° from origin_lon {west} leave -180..180",
                    g.columns
                ),
            ));
        }
    }
    let pattern =
        NamePattern::parse(&g.tile_name).map_err(|e| fault("grid.tile_name", e.to_string()))?;
    let naming = TileNaming {
        pattern,
        corner: g.name_corner,
        tile_degrees: deg as i32,
    };
    // Every tile's name reads back as that tile: a pattern too narrow for the grid's
    // corners, or names two tiles share, are found here rather than at the first write.
    for row in 0..i64::from(g.rows) {
        for col in 0..i64::from(g.columns) {
            let tile = TileName::new(
                (i64::from(g.origin_lat) - row * deg) as i32,
                (i64::from(g.origin_lon) + col * deg) as i32,
            );
            let Some(name) = naming.print(tile) else {
                return Err(fault(
                    format!("grid.tile_name = {:?}", g.tile_name),
                    format!(
                        "cannot spell the {} corner of the tile at {}°, {}° (too few digits)",
                        g.name_corner, tile.lat, tile.lon
                    ),
                ));
            };
            if naming.read(&name) != Some(tile) {
                return Err(fault(
                    format!("grid.tile_name = {:?}", g.tile_name),
                    format!("{name:?} does not read back as the tile it names"),
                ));
            }
        }
    }
    Ok(())
}

fn years(years: &YearSpec) -> Result<(), Fault> {
    let out_of_range = |list: &[i32]| {
        list.iter().find(|y| !YEARS.contains(y)).map(|y| {
            fault(
                format!("year {y}"),
                format!(
                    "not a year a cube takes ({} to {})",
                    YEARS.start(),
                    YEARS.end()
                ),
            )
        })
    };
    let problem = match years {
        YearSpec::Range(r) if r.step <= 0 || r.last < r.first => Some(fault(
            "years",
            format!(
                "{}..{} step {} is empty (last comes after first, and step is positive)",
                r.first, r.last, r.step
            ),
        )),
        YearSpec::Range(r) if (r.last - r.first) % r.step != 0 => Some(fault(
            "years",
            format!(
                "{}..{} step {} does not end on {}: make last {} or list the years",
                r.first,
                r.last,
                r.step,
                r.last,
                r.last - (r.last - r.first) % r.step
            ),
        )),
        YearSpec::List(list) if list.is_empty() => Some(fault(
            "years = []",
            "a preset lists at least one year (or leaves years out: no time axis)",
        )),
        YearSpec::List(list) => list
            .windows(2)
            .find(|w| w[1] <= w[0])
            .map(|w| {
                fault(
                    format!("years = {list:?}"),
                    format!(
                        "list the years in increasing order, each once ({} after {})",
                        w[1], w[0]
                    ),
                )
            })
            .or_else(|| out_of_range(list)),
        YearSpec::Range(r) => out_of_range(&[r.first, r.last]),
    };
    problem.map_or(Ok(()), Err)
}

/// Names the cube's coordinates and groups take, which no variable may take.
const RESERVED: [&str; 6] = ["x", "y", "year", "band", "spatial_ref", "overviews"];

fn variable(p: &Preset, v: &super::VariableSpec) -> Result<(), Fault> {
    let key = |k: &str| format!("variable {:?}: {k}", v.name);
    if v.name.is_empty()
        || !v
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        || v.name.starts_with("__")
    {
        return Err(fault(
            format!("variable name {:?}", v.name),
            "a variable's name is ASCII letters, digits, _ and -",
        ));
    }
    if RESERVED.contains(&v.name.as_str()) {
        return Err(fault(
            format!("variable name {:?}", v.name),
            "the cube's coordinates take this name",
        ));
    }
    let Some(dtype) = DType::from_name(&v.dtype) else {
        return Err(fault(
            key(&format!("dtype = {:?}", v.dtype)),
            format!(
                "not a type tilecube writes ({})",
                DType::ALL.map(DType::name).join(", ")
            ),
        ));
    };
    if let Some(why) = dtype.holds(v.fill_value) {
        return Err(fault(key(&format!("fill_value = {}", v.fill_value)), why));
    }
    if let Some(nodata) = v.nodata
        && let Some(why) = dtype.holds(nodata)
    {
        return Err(fault(key(&format!("nodata = {nodata}")), why));
    }
    if v.chunk_pixels == 0 {
        return Err(fault(key("chunk_pixels"), "must be positive"));
    }
    if !p.grid.tile_pixels.is_multiple_of(v.chunk_pixels) {
        return Err(fault(
            key(&format!("chunk_pixels = {}", v.chunk_pixels)),
            format!(
                "does not divide grid.tile_pixels = {}: a chunk would straddle two tiles",
                p.grid.tile_pixels
            ),
        ));
    }
    zstd(&key("zstd_level"), v.zstd_level)?;
    let named = v.bands.as_ref().map(Vec::len);
    if v.band.is_some() && named.is_some() {
        return Err(fault(
            key("band"),
            "give either band (one band of the file) or bands (a band axis), not both",
        ));
    }
    if named == Some(0) {
        return Err(fault(
            key("bands = []"),
            "a band axis names at least one band",
        ));
    }
    if let Some(names) = &v.bands {
        let mut seen = BTreeSet::new();
        if let Some(n) = names
            .iter()
            .find(|n| n.is_empty() || !seen.insert(n.as_str()))
        {
            return Err(fault(
                key("bands"),
                format!("band name {n:?} is empty or given twice"),
            ));
        }
    }
    let file_bands = v.file_bands.unwrap_or(named.unwrap_or(1) as u32);
    if file_bands == 0 {
        return Err(fault(key("file_bands = 0"), "a file has at least one band"));
    }
    if let Some(band) = v.band
        && (band == 0 || band > file_bands)
    {
        return Err(fault(
            key(&format!("band = {band}")),
            format!(
                "beyond the file's {file_bands} band{} (bands count from 1; set file_bands if the file has more)",
                if file_bands == 1 { "" } else { "s" }
            ),
        ));
    }
    if let Some(n) = named
        && n as u32 > file_bands
    {
        return Err(fault(
            key("bands"),
            format!("names {n} bands, beyond the file's {file_bands}"),
        ));
    }
    for (name, value) in &v.attributes {
        if super::attribute_json(value).is_none() {
            return Err(fault(
                key(&format!("attributes.{name}")),
                "an attribute is a string, a number, a boolean or a list of them",
            ));
        }
    }
    let flag_values = v.attributes.get("flag_values");
    let flag_meanings = v.attributes.get("flag_meanings");
    match (flag_values, flag_meanings) {
        (None, None) => {}
        (Some(values), Some(meanings)) => {
            let Some(values) = values.as_array() else {
                return Err(fault(
                    key("attributes.flag_values"),
                    "a list of the class values",
                ));
            };
            for value in values {
                let n = value
                    .as_integer()
                    .map(|i| i as f64)
                    .or_else(|| value.as_float());
                match n.map(|n| (n, dtype.holds(n))) {
                    Some((_, None)) => {}
                    Some((_, Some(why))) => {
                        return Err(fault(key("attributes.flag_values"), why));
                    }
                    None => {
                        return Err(fault(
                            key("attributes.flag_values"),
                            format!("{value} is not a number"),
                        ));
                    }
                }
            }
            let Some(meanings) = meanings.as_str() else {
                return Err(fault(
                    key("attributes.flag_meanings"),
                    "one string of words, one a class, separated by spaces",
                ));
            };
            let words = meanings.split_whitespace().count();
            if words != values.len() {
                return Err(fault(
                    key("attributes.flag_meanings"),
                    format!(
                        "{words} meanings for {} flag_values: one word a class",
                        values.len()
                    ),
                ));
            }
        }
        (Some(_), None) => {
            return Err(fault(
                key("attributes.flag_values"),
                "comes with flag_meanings, a word for each class",
            ));
        }
        (None, Some(_)) => {
            return Err(fault(
                key("attributes.flag_meanings"),
                "comes with flag_values, the classes it names",
            ));
        }
    }
    let file_key = if v.file.is_some() {
        key("file")
    } else {
        "source.tile".to_string()
    };
    template(
        p,
        &file_key,
        v.file.as_deref().unwrap_or(&p.source.tile),
        true,
    )?;
    Ok(())
}

/// A template's fields are known, `{tile}` is there when a file needs it (and not in a
/// list), `{year}` and the named parts only where the cube has years.
fn template(p: &Preset, key: &str, template: &str, is_file: bool) -> Result<(), Fault> {
    let fields = fields(template);
    for field in &fields {
        let known = match *field {
            "tile" => is_file,
            "year" => p.years.is_some(),
            "layer" => true,
            part => p.source.parts.contains_key(part),
        };
        if !known {
            let why = match *field {
                "tile" => "a list names many tiles: {tile} has no place in it".to_string(),
                "year" => "the preset has no years (no time axis)".to_string(),
                f => format!(
                    "{{{f}}} is not a field: the fields are {{tile}}, {{year}}, {{layer}}{}",
                    p.source
                        .parts
                        .keys()
                        .map(|k| format!(", {{{k}}}"))
                        .collect::<String>()
                ),
            };
            return Err(fault(format!("{key} = {template:?}"), why));
        }
    }
    if is_file && !fields.contains(&"tile") {
        return Err(fault(
            format!("{key} = {template:?}"),
            "a tile's file template holds {tile}",
        ));
    }
    if is_file
        && p.years.as_ref().is_some_and(|y| y.all().len() > 1)
        && !fields.contains(&"year")
        && !fields.iter().any(|f| p.source.parts.contains_key(*f))
    {
        return Err(fault(
            format!("{key} = {template:?}"),
            "the cube has several years: a tile's file template holds {year} (or a part that differs by year)",
        ));
    }
    Ok(())
}

fn source(p: &Preset) -> Result<(), Fault> {
    template(p, "source.tile", &p.source.tile, true)?;
    if let Some(list) = &p.source.list {
        template(p, "source.list", list, false)?;
        // A list's line is taken by its file name: that name must hold the tile's.
        for v in &p.variables {
            let file = p.file_template(v);
            if !file
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .contains("{tile}")
            {
                return Err(fault(
                    format!("source.list = {list:?}"),
                    format!(
                        "a list's line is taken by its file name, and variable {:?}'s files ({file}) hold {{tile}} in a directory",
                        v.name
                    ),
                ));
            }
        }
        if p.years.is_some() && !fields(list).contains(&"year") {
            return Err(fault(
                format!("source.list = {list:?}"),
                "the cube has years: a list is a year's, and its template holds {year}",
            ));
        }
    }
    for (name, by_year) in &p.source.parts {
        let Some(years) = &p.years else {
            return Err(fault(
                format!("source.parts.{name}"),
                "parts differ by year, and the preset has no years",
            ));
        };
        for year in years.all() {
            if !by_year.contains_key(&year.to_string()) {
                return Err(fault(
                    format!("source.parts.{name}"),
                    format!("has no value for {year}"),
                ));
            }
        }
        if let Some(extra) = by_year
            .keys()
            .find(|y| !years.all().iter().any(|year| year.to_string() == **y))
        {
            return Err(fault(
                format!("source.parts.{name}.{extra}"),
                "not a year of the cube",
            ));
        }
    }
    Ok(())
}
