//! The cube opens in Python exactly as the seed notebook reads its cube (icechunk-python 1.x,
//! zarr 3, xarray), with its coordinates and metadata, and every written tile equal to GDAL's
//! read. Runs the venv that `.ci/run` creates (or `TILECUBE_PYTHON`).

mod common;

use common::{Work, gdal_pixels, t};
use serde_json::json;
use tilecube::demo::Flaw;

#[test]
fn spec_version_1_cube_reads_in_python_like_the_seed() {
    let w = Work::new();
    let written = [(2000, "70N_180W"), (2000, "00N_000E"), (2015, "50S_170E")];
    for (year, name) in written {
        w.tile(year, name, Flaw::None);
    }
    w.list(2000, &["70N_180W", "00N_000E"], "");
    w.list(2015, &["50S_170E"], "");
    w.ok(&["init", "--spec-version", "1"]);
    w.ok(&["write", "--all"]);

    let expect_dir = w.dir.path().join("expect");
    std::fs::create_dir_all(&expect_dir).unwrap();
    let grid = &w.grid;
    let years = [2000, 2005, 2010, 2015, 2020];
    let mut tiles = vec![];
    for (year, name) in written {
        let path = tilecube::demo::tile_path(&w.source(), year, t(name));
        let file = format!("{year}_{name}.raw");
        std::fs::write(expect_dir.join(&file), gdal_pixels(&path)).unwrap();
        let r = grid.region(grid.cell(t(name)).unwrap());
        tiles.push(json!({
            "name": format!("{year}/{name}"), "file": file, "size": r.height,
            "year_index": years.iter().position(|y| *y == year).unwrap(),
            "y0": r.y0, "x0": r.x0,
        }));
    }
    let unwritten: Vec<_> = [(2005, "00N_000E"), (2000, "60N_170W")]
        .iter()
        .map(|(year, name)| {
            let r = grid.region(grid.cell(t(name)).unwrap());
            json!({"year_index": years.iter().position(|y| y == year).unwrap(),
                   "y0": r.y0, "x0": r.x0, "size": r.height})
        })
        .collect();
    let (h, wd) = grid.shape();
    let p = grid.pixel_size();
    let expect = json!({
        "shape": [5, h, wd], "years": years, "pixel_size": p,
        "geotransform": format!("-180.0 {p} 0.0 80.0 0.0 -{p}"),
        "tiles": tiles, "unwritten": unwritten,
    });
    std::fs::write(expect_dir.join("expect.json"), expect.to_string()).unwrap();

    let repo = w.repo().display().to_string();
    let stdout = common::python_readback(&repo, &expect_dir, &[]);
    assert!(
        stdout.contains("readback ok: 3 tiles, 2 unwritten regions"),
        "{stdout}"
    );
}
