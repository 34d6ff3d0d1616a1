//! The preset model: the built-in presets, and each refusal naming its key.

use super::*;

/// The GLAD preset with `from` replaced by `to` (which must be there).
fn glad_with(from: &str, to: &str) -> String {
    assert!(GLAD_TOML.contains(from), "{from:?} is in the GLAD preset");
    GLAD_TOML.replacen(from, to, 1)
}

/// The Hansen GFC preset with `from` replaced by `to` (which must be there).
fn gfc_with(from: &str, to: &str) -> String {
    assert!(
        HANSEN_GFC_TOML.contains(from),
        "{from:?} is in the GFC preset"
    );
    HANSEN_GFC_TOML.replacen(from, to, 1)
}

fn refusal(text: &str) -> String {
    Preset::parse(text, "mine.toml").unwrap_err().to_string()
}

#[test]
fn embedded_glad_preset_describes_the_glad_grid() {
    let p = Preset::glad();
    assert_eq!(p.grid.columns, 36);
    assert_eq!(p.grid.rows, 14);
    assert_eq!(p.grid.tile_pixels, 40_000);
    assert_eq!(p.years(), vec![2000, 2005, 2010, 2015, 2020]);
    assert_eq!(p.variable().fill_value, 255.0);
    assert_eq!(p.variable().chunk_pixels, 1000);
    assert_eq!(p.attributes["license"], "CC BY 4.0");
    assert_eq!(p.unsupported(), None);
    assert_eq!(p.source_spec().tile, "{year}/{tile}.tif");
    assert!(p.naming().is_upper_left_default());
}

#[test]
fn the_gfc_preset_describes_six_layers_two_with_bands_and_no_time_axis() {
    let p = Preset::built_in("hansen-gfc").unwrap();
    let names: Vec<&str> = p.variables.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "treecover2000",
            "gain",
            "lossyear",
            "datamask",
            "first",
            "last"
        ]
    );
    assert!(p.years.is_none());
    let first = &p.variables[4];
    assert_eq!(
        first.bands.as_deref(),
        Some(&["red", "nir", "swir1", "swir2"].map(String::from)[..])
    );
    assert_eq!(p.resampling(&p.variables[0]), Resampling::Average);
    assert_eq!(p.resampling(&p.variables[3]), Resampling::Mode);
    assert_eq!(
        p.file_template(&p.variables[2]),
        "Hansen_GFC-2023-v1.11_lossyear_{tile}.tif"
    );
    let lossyear = &p.variables[2].attributes;
    assert_eq!(lossyear["flag_values"].as_array().unwrap().len(), 24);
    assert!(p.unsupported().unwrap().contains("6 variables"));
    // Both names for GLAD find it; an unknown one is named with the built-in ones.
    assert_eq!(Preset::find("glad").unwrap().name, "glad-lclu");
    assert_eq!(Preset::find("glad-lclu").unwrap().name, "glad-lclu");
    let err = Preset::find("worldcover").unwrap_err().to_string();
    assert!(
        err.contains("\"worldcover\"") && err.contains("glad-lclu, hansen-gfc"),
        "{err}"
    );
}

#[test]
fn an_old_preset_file_of_one_variable_and_no_naming_still_reads() {
    // The shape preset files had before the model: no tile_name, a [variable] table.
    let old = GLAD_TOML
        .replace("tile_name = \"{lat:02}{NS}_{lon:03}{EW}\"\n", "")
        .replace("name_corner = \"upper-left\"\n", "");
    let p = Preset::parse(&old, "old.toml").unwrap();
    assert!(p.naming().is_upper_left_default());
    assert_eq!(p.variables.len(), 1);
}

#[test]
fn mistakes_are_refused_at_load_naming_the_key_and_why() {
    for (text, says) in [
        (
            glad_with("dtype = \"uint8\"", "dtype = \"int64\""),
            "preset mine.toml: variable \"lclu\": dtype = \"int64\": not a type tilecube writes (uint8, int16, uint16, float32)",
        ),
        (
            glad_with("fill_value = 255", "fill_value = 256"),
            "preset mine.toml: variable \"lclu\": fill_value = 256: 256 is not a uint8 value (0 to 255, whole)",
        ),
        (
            glad_with("chunk_pixels = 1000", "chunk_pixels = 3000"),
            "preset mine.toml: variable \"lclu\": chunk_pixels = 3000: does not divide grid.tile_pixels = 40000: a chunk would straddle two tiles",
        ),
        (
            glad_with(
                "tile_name = \"{lat:02}{NS}_{lon:03}{EW}\"",
                "tile_name = \"{lat:02}{NS}_{lon:02}{EW}\"",
            ),
            "preset mine.toml: grid.tile_name = \"{lat:02}{NS}_{lon:02}{EW}\": cannot spell the upper-left corner of the tile at 80°, -180° (too few digits)",
        ),
        (
            glad_with(
                "tile_name = \"{lat:02}{NS}_{lon:03}{EW}\"",
                "tile_name = \"{lat:02}_{lon:03}{EW}\"",
            ),
            "preset mine.toml: grid.tile_name: \"{lat:02}_{lon:03}{EW}\" is not a tile-name pattern: {NS} appears 0 times, not once",
        ),
        (
            glad_with("tile_degrees = 10", "tile_degrees = 2.5"),
            "preset mine.toml: grid.tile_degrees = 2.5: tile names give whole degrees, so a tile's side must be a whole number of degrees (at most 360)",
        ),
        (
            glad_with("name = \"lclu\"", "name = \"lclu\"\nband = 2"),
            "preset mine.toml: variable \"lclu\": band = 2: beyond the file's 1 band (bands count from 1; set file_bands if the file has more)",
        ),
        (
            glad_with(
                "tile = \"{year}/{tile}.tif\"",
                "tile = \"{year}/{tile}_{versoin}.tif\"",
            ),
            "preset mine.toml: source.tile = \"{year}/{tile}_{versoin}.tif\": {versoin} is not a field: the fields are {tile}, {year}, {layer}",
        ),
        (
            glad_with("tile = \"{year}/{tile}.tif\"", "tile = \"{tile}.tif\""),
            "preset mine.toml: source.tile = \"{tile}.tif\": the cube has several years: a tile's file template holds {year} (or a part that differs by year)",
        ),
        (
            glad_with("zstd_level = 3", "zstd_level = 23"),
            "preset mine.toml: variable \"lclu\": zstd_level = 23: zstd levels run from -131072 to 22",
        ),
        (
            glad_with("zstd_level = 1", "zstd_level = 99"),
            "preset mine.toml: overviews.zstd_level = 99: zstd levels run from -131072 to 22",
        ),
        (
            glad_with("name = \"lclu\"", "name = \"year\""),
            "preset mine.toml: variable name \"year\": the cube's coordinates take this name",
        ),
        (
            gfc_with(
                "bands = [\"red\", \"nir\", \"swir1\", \"swir2\"]",
                "bands = [\"red\", \"nir\", \"swir1\", \"swir2\"]\nfile_bands = 3",
            ),
            "preset mine.toml: variable \"first\": bands: names 4 bands, beyond the file's 3",
        ),
        (
            gfc_with(
                "flag_meanings = \"no_gain gain\"",
                "flag_meanings = \"no_gain\"",
            ),
            "preset mine.toml: variable \"gain\": attributes.flag_meanings: 1 meanings for 2 flag_values: one word a class",
        ),
        (
            gfc_with("flag_values = [0, 1, 2]", "flag_values = [0, 1, 300]"),
            "preset mine.toml: variable \"datamask\": attributes.flag_values: 300 is not a uint8 value (0 to 255, whole)",
        ),
        (
            gfc_with("list = \"{layer}.txt\"", "list = \"{year}/{layer}.txt\""),
            "preset mine.toml: source.list = \"{year}/{layer}.txt\": the preset has no years (no time axis)",
        ),
        (
            gfc_with("name = \"gain\"", "name = \"datamask\""),
            "preset mine.toml: variable \"datamask\": two variables have this name",
        ),
    ] {
        assert_eq!(refusal(&text), says);
    }
    // A key a variable does not know is named with the variable.
    let err = refusal(&glad_with("zstd_level = 3", "zstd_level = 3\nfill = 1"));
    assert!(
        err.contains("variable \"lclu\"") && err.contains("fill"),
        "{err}"
    );
}

#[test]
fn parts_that_differ_by_year_fill_templates_and_must_cover_every_year() {
    let text = with_year_list("[2020, 2021]").replace(
        "tile = \"{year}/{tile}.tif\"",
        "tile = \"{version}/{year}/map/X_{year}_{version}_{tile}_Map.tif\"",
    );
    let with_parts = format!("{text}\n[source.parts.version]\n2020 = \"v100\"\n2021 = \"v200\"\n");
    let p = Preset::parse(&with_parts, "mine.toml").unwrap();
    let spec = p.source_spec();
    assert_eq!(
        spec.fill(&spec.tile, Some(2021), "map"),
        "v200/2021/map/X_2021_v200_{tile}_Map.tif"
    );
    let missing = format!("{text}\n[source.parts.version]\n2020 = \"v100\"\n");
    assert_eq!(
        refusal(&missing),
        "preset mine.toml: source.parts.version: has no value for 2021"
    );
    let extra = format!(
        "{text}\n[source.parts.version]\n2020 = \"v100\"\n2021 = \"v200\"\n2019 = \"v0\"\n"
    );
    assert_eq!(
        refusal(&extra),
        "preset mine.toml: source.parts.version.2019: not a year of the cube"
    );
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
    assert_eq!(p.years(), vec![2000, 2005, 2012, 2020]);
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
            "preset mine.toml: years = []: a preset lists at least one year (or leaves years out: no time axis)",
        ),
        (
            "[0, 2000]",
            "preset mine.toml: year 0: not a year a cube takes (1 to 9999)",
        ),
        (
            "[2000, 20000]",
            "preset mine.toml: year 20000: not a year a cube takes (1 to 9999)",
        ),
    ] {
        assert_eq!(refusal(&with_year_list(list)), says, "{list}");
    }
    let err = refusal(&with_year_list("\"2000\""));
    assert!(
        err.contains("a list of years (years = [2000, 2005, 2010])"),
        "{err}"
    );
    let err = refusal(&glad_with("step = 5", "step = 0"));
    assert!(
        err.ends_with(
            "years: 2000..2020 step 0 is empty (last comes after first, and step is positive)"
        ),
        "{err}"
    );
    let err = refusal(&glad_with("step = 5", "step = 7"));
    assert!(
        err.ends_with(
            "years: 2000..2020 step 7 does not end on 2020: make last 2014 or list the years"
        ),
        "{err}"
    );
    let err = refusal(&glad_with("epsg = 4326", "epsg = 99999"));
    assert!(
        err.ends_with("grid.epsg = 99999: not an EPSG code of a CRS GDAL knows"),
        "{err}"
    );
    let err = refusal(&glad_with("epsg = 4326", "epsg = 3857"));
    assert!(
        err.contains("grid.epsg = 3857: WGS 84 / Pseudo-Mercator is not a geographic CRS"),
        "{err}"
    );
    // Without years there is no time axis, and a {year} in a template is refused.
    let no_years = GLAD_TOML
        .replace("[years]\n", "")
        .replace("first = 2000\nlast = 2020\nstep = 5\n", "");
    let err = refusal(&no_years);
    assert!(
        err.contains("source.tile = \"{year}/{tile}.tif\": the preset has no years"),
        "{err}"
    );
}

#[test]
fn a_grid_past_the_pole_is_refused() {
    let err = refusal(&glad_with("rows = 14", "rows = 18"));
    assert!(err.contains("grid.rows") && err.contains("-100°"), "{err}");
    let err = refusal(&glad_with("columns = 36", "columns = 37"));
    assert!(
        err.contains("grid.columns") && err.contains("longitude"),
        "{err}"
    );
}

#[test]
fn negative_zstd_levels_are_zstds_fastest() {
    let p = Preset::parse(&glad_with("zstd_level = 1", "zstd_level = -7"), "mine.toml").unwrap();
    assert_eq!(p.overviews.zstd_level, -7);
}
