//! Reads follow the source's layout: striped GeoTIFFs with any rows per strip, tiled ones
//! and COGs (with and without internal overviews) give the same cube, pixel for pixel, as
//! GDAL reads them, whether or not their blocks line up with the chunks.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::nginx::slow_source;
use common::{Work, cube_pixels, gdal_pixels, t};
use tilecube::cube::{Cube, RepoLocation};
use tilecube::demo::Flaw;

/// Rewrite a tile in another layout with `gdal_translate` (installed by `.ci/setup`).
fn translate(path: &Path, args: &[&str]) {
    let tmp = path.with_extension("tmp.tif");
    let out = Command::new("gdal_translate")
        .args(args)
        .arg(path)
        .arg(&tmp)
        .output()
        .expect("gdal_translate (gdal-bin)");
    assert!(
        out.status.success(),
        "gdal_translate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, path).expect("replace the tile");
}

/// Rows of the first band's blocks, as GDAL sees the file.
fn block_rows(path: &Path) -> usize {
    let ds = gdal::Dataset::open(path).expect("open");
    ds.rasterband(1).expect("band").block_size().1
}

#[tokio::test(flavor = "multi_thread")]
async fn cogs_tiled_and_striped_sources_give_identical_cubes() {
    // 400-px tiles in chunks of 100: 64-row COG tiles, 48-row GeoTIFF tiles and 30-row
    // strips do not divide the chunk side; 25-row strips and the demo's own do.
    let w = Work::new();
    let layouts: [(&str, &[&str]); 6] = [
        ("00N_000E", &[]),
        (
            "00N_010E",
            &["-of", "COG", "-co", "BLOCKSIZE=64", "-co", "COMPRESS=LZW"],
        ),
        (
            "00N_020E",
            &[
                "-of",
                "COG",
                "-co",
                "BLOCKSIZE=64",
                "-co",
                "OVERVIEWS=NONE",
                "-co",
                "COMPRESS=DEFLATE",
            ],
        ),
        (
            "00N_030E",
            &[
                "-co",
                "TILED=YES",
                "-co",
                "BLOCKXSIZE=48",
                "-co",
                "BLOCKYSIZE=48",
                "-co",
                "COMPRESS=LZW",
            ],
        ),
        ("00N_040E", &["-co", "BLOCKYSIZE=30", "-co", "COMPRESS=LZW"]),
        ("00N_050E", &["-co", "BLOCKYSIZE=25"]),
    ];
    let mut expected = vec![];
    for (name, args) in layouts {
        let path = w.tile(2000, name, Flaw::None);
        let before = gdal_pixels(&path);
        if !args.is_empty() {
            translate(&path, args);
        }
        assert_eq!(
            gdal_pixels(&path),
            before,
            "{name}: the layout keeps the pixels"
        );
        expected.push((name, before, block_rows(&path)));
    }
    let rows: Vec<usize> = expected.iter().map(|e| e.2).collect();
    assert_eq!(&rows[1..], &[64, 64, 48, 30, 25], "the layouts under test");
    let names: Vec<&str> = layouts.iter().map(|l| l.0).collect();
    w.list(2000, &names, "");
    w.ok(&["init"]);
    w.ok(&["write", "--all", "--year", "2000", "--threads", "2"]);
    let cube = w.cube().await;
    for (name, pixels, block) in &expected {
        let got = cube_pixels(&cube, 2000, t(name)).await;
        assert!(
            got == *pixels,
            "{name} ({block}-row blocks): the cube differs from GDAL's read"
        );
    }

    // The same tiles over HTTP, 20 ms away, through the read-ahead (whose windows follow
    // each layout's block offsets) and with GDAL fetching on demand: the same cube.
    let (_nginx, _proxy, source) = slow_source(&w, Duration::from_millis(20)).await;
    for read_ahead in ["2", "0"] {
        let repo = w.dir.path().join(format!("over-http-{read_ahead}"));
        let repo_s = repo.display().to_string();
        w.ok(&["--repo", &repo_s, "init"]);
        let args = [
            "--repo",
            &repo_s,
            "--source",
            &source,
            "write",
            "--all",
            "--year",
            "2000",
            "--threads",
            "2",
            "--read-ahead",
            read_ahead,
        ];
        let out = w.run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cube = Cube::open(RepoLocation::Local(repo), "main")
            .await
            .expect("open");
        for (name, pixels, block) in &expected {
            let got = cube_pixels(&cube, 2000, t(name)).await;
            assert!(
                got == *pixels,
                "{name} ({block}-row blocks) over HTTP, read-ahead {read_ahead}: the cube differs from GDAL's read"
            );
        }
    }
}
