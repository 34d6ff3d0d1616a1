//! The cube opens in Python exactly as the seed notebook reads its cube (zarr 3, xarray), with
//! its coordinates and metadata, every written tile equal to GDAL's read, and every overview
//! level equal to numpy's reduction: spec-1 repositories through icechunk-python 1.1 (the
//! `.venv` that `.ci/setup` creates, or `TILECUBE_PYTHON`), spec-2 repositories (the default)
//! through icechunk-python 2.x (the Python 3.12 `.venv-ic2`, or `TILECUBE_PYTHON_IC2`).

use crate::common;

use std::path::Path;

use common::{Work, gdal_pixels, t};
use serde_json::json;
use tilecube::demo::Flaw;

#[test]
fn spec_version_1_cube_reads_in_python_like_the_seed() {
    reads_like_the_seed("1", &common::python());
}

#[test]
fn spec_version_2_cube_reads_in_icechunk_python_2_like_the_seed() {
    reads_like_the_seed("2", &common::python_ic2());
}

fn reads_like_the_seed(spec: &str, python: &Path) {
    let w = Work::new();
    let written = [(2000, "70N_180W"), (2000, "00N_000E"), (2015, "50S_170E")];
    for (year, name) in written {
        w.tile(year, name, Flaw::None);
    }
    w.list(2000, &["70N_180W", "00N_000E"], "");
    w.list(2015, &["50S_170E"], "");
    w.ok(&["init", "--spec-version", spec]);
    w.ok(&["write", "--all"]);

    let expect_dir = w.dir.path().join("expect");
    std::fs::create_dir_all(&expect_dir).unwrap();
    // Where each tile lies in the cube, worked out by hand (not by the code under test):
    // 400 px tiles of 10°, rows from 80N down, columns from 180W east; year indices of
    // 2000, 2005, 2010, 2015, 2020.
    let placed = [
        ((2000, "70N_180W"), 0, 400, 0),
        ((2000, "00N_000E"), 0, 3200, 7200),
        ((2015, "50S_170E"), 3, 5200, 14000),
    ];
    let mut tiles = vec![];
    for ((year, name), year_index, y0, x0) in placed {
        let path = tilecube::demo::tile_path(&w.source(), year, t(name));
        let file = format!("{year}_{name}.raw");
        std::fs::write(expect_dir.join(&file), gdal_pixels(&path)).unwrap();
        tiles.push(json!({
            "name": format!("{year}/{name}"), "file": file, "size": 400,
            "year_index": year_index, "y0": y0, "x0": x0,
        }));
    }
    // 2005/00N_000E and 2000/60N_170W were never written.
    let unwritten = [
        json!({"year_index": 1, "y0": 3200, "x0": 7200, "size": 400}),
        json!({"year_index": 0, "y0": 800, "x0": 400, "size": 400}),
    ];
    let expect = json!({
        "shape": [5, 5600, 14400], "years": [2000, 2005, 2010, 2015, 2020],
        "pixel_size": 0.025,
        "geotransform": "-180.0 0.025 0.0 80.0 0.0 -0.025",
        "tiles": tiles, "unwritten": unwritten,
    });
    std::fs::write(expect_dir.join("expect.json"), expect.to_string()).unwrap();

    let repo = w.repo().display().to_string();
    let stdout = common::python_readback_with(python, &repo, &expect_dir, &[]);
    assert!(
        stdout.contains("readback ok: 3 tiles, 2 unwritten regions"),
        "{stdout}"
    );
}

#[test]
fn xarray_opens_every_overview_level_of_spec_1_and_each_equals_numpys_reduction() {
    every_level_equals_numpys_reduction("1", &common::python());
}

#[test]
fn xarray_opens_every_overview_level_of_spec_2_and_each_equals_numpys_reduction() {
    every_level_equals_numpys_reduction("2", &common::python_ic2());
}

fn every_level_equals_numpys_reduction(spec: &str, python: &Path) {
    let w = Work::with_overviews(Some(100));
    let names = ["80N_180W", "00N_000E", "00N_010E", "50S_170E"];
    for name in names {
        w.tile(2010, name, Flaw::None);
    }
    w.list(2010, &names, "");
    w.ok(&["init", "--spec-version", spec]);
    w.ok(&["write", "--all", "--commit-every", "2"]);
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/overviews.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(w.repo())
        .arg("2")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("overviews ok: 8 levels"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
