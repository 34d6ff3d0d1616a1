//! Dataset presets: the GLAD cube is the same, bit for bit, whatever form its preset takes.

use crate::common;

use common::Work;
use tilecube::demo::Flaw;
use tilecube::preset::GLAD_TOML;

/// Every key of the head of `main` with the SHA-256 of its stored bytes (see
/// `tests/python/store_digest.py`).
fn store_digest(w: &Work) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/store_digest.py");
    let out = std::process::Command::new(common::python_ic2())
        .arg(script)
        .arg(w.repo())
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "store_digest.py ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("digest JSON")
}

/// The GLAD test cube written by tilecube before presets described datasets (commit d211878,
/// `tests/fixtures/README.md`) and now: every array's metadata, coordinate and chunk, and the
/// root group's metadata but tilecube's own record, are the same bytes.
#[test]
fn the_glad_cube_is_the_same_bit_for_bit_as_before_the_dataset_model() {
    let w = Work::new();
    let tiles: Vec<String> = ["80N_180W", "50N_070W", "00N_000E", "10S_170E"]
        .map(String::from)
        .to_vec();
    for year in [2000, 2020] {
        w.listed_tiles(year, &tiles);
    }
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let now = store_digest(&w);
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/glad-cube-digest.json");
    if std::env::var_os("TILECUBE_BLESS_GLAD_DIGEST").is_some() {
        std::fs::write(&fixture, serde_json::to_string_pretty(&now).unwrap()).unwrap();
    }
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).expect("fixture")).unwrap();
    let (now, before) = (now.as_object().unwrap(), before.as_object().unwrap());
    assert!(
        before.len() > 100,
        "the fixture holds the cube's keys: {}",
        before.len()
    );
    let differ: Vec<&String> = before
        .keys()
        .chain(now.keys())
        .filter(|k| now.get(*k) != before.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "keys that differ from before: {differ:?}"
    );
}

/// Run the binary in `dir` with no config file but `args` (relative paths are `dir`'s).
fn run_in(w: &Work, dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tilecube"))
        .current_dir(dir)
        .args(args)
        .env("TILECUBE_DATA_DIR", w.dir.path().join("data"))
        .env("XDG_CONFIG_HOME", w.dir.path().join("no-config"))
        .output()
        .expect("run tilecube");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn presets_lists_the_built_in_ones_and_the_one_in_effect() {
    let w = Work::new();
    let (ok, out, err) = run_in(&w, w.dir.path(), &["presets"]);
    assert!(ok, "{err}");
    assert!(out.contains("* glad-lclu (also glad): GLAD"), "{out}");
    assert!(
        out.contains("  hansen-gfc: Hansen Global Forest Change 2000-2023 v1.11 — 36x14 tiles of 10° (40000 px), no time axis, treecover2000 gain lossyear datamask first[4] last[4]"),
        "{out}"
    );
    let (ok, out, _) = run_in(
        &w,
        w.dir.path(),
        &["--preset", "hansen-gfc", "presets", "--json"],
    );
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let gfc = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hansen-gfc")
        .expect("hansen-gfc listed");
    assert_eq!(gfc["in_effect"], true);
    assert_eq!(gfc["variables"].as_array().unwrap().len(), 6);
    assert_eq!(gfc["years"], serde_json::json!([]));
    // A preset file given by a relative path is listed as the one in effect.
    std::fs::write(
        w.dir.path().join("mine.toml"),
        GLAD_TOML.replace("name = \"glad-lclu\"", "name = \"mine\""),
    )
    .unwrap();
    let (ok, out, err) = run_in(&w, w.dir.path(), &["--preset", "mine.toml", "presets"]);
    assert!(ok, "{err}");
    assert!(out.contains("* mine.toml: GLAD"), "{out}");
    // A repository that holds no cube is said; the listing goes on.
    let (ok, out, err) = run_in(&w, w.dir.path(), &["--repo", "nowhere", "presets"]);
    assert!(ok, "{err}");
    assert!(err.contains("no cube read at nowhere"), "{err}");
    assert!(out.contains("* glad-lclu (also glad): GLAD"), "{out}");
}

#[test]
fn init_records_the_preset_later_commands_need_none_and_another_is_refused_naming_both() {
    let w = Work::new();
    // A dataset of its own: the GLAD grid, its files and lists under other folders.
    let preset = GLAD_TOML
        .replace("name = \"glad-lclu\"", "name = \"my-lclu\"")
        .replace("chunk_pixels = 1000", "chunk_pixels = 100")
        .replace(
            "tile = \"{year}/{tile}.tif\"",
            "tile = \"tiles/{year}/{tile}.tif\"",
        )
        .replace("list = \"{year}.txt\"", "list = \"lists/{year}.txt\"");
    std::fs::write(w.dir.path().join("my.toml"), preset).unwrap();
    let root = w.source();
    for name in ["50N_070W", "00N_000E"] {
        let made = w.tile(2000, name, Flaw::None);
        let to = root.join(format!("tiles/2000/{name}.tif"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(made, to).unwrap();
    }
    std::fs::create_dir_all(root.join("lists")).unwrap();
    std::fs::write(
        root.join("lists/2000.txt"),
        "https://example.invalid/tiles/2000/50N_070W.tif\nhttps://example.invalid/tiles/2000/00N_000E.tif\n",
    )
    .unwrap();
    let d = w.dir.path();
    let common = [
        "--repo",
        "repo",
        "--source",
        "source",
        "--tile-pixels",
        "400",
    ];
    let with = |args: &[&str]| -> Vec<String> {
        common.iter().chain(args).map(|s| s.to_string()).collect()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_in(&w, d, &refs)
    };
    let (ok, _, err) = run(with(&["--preset", "./my.toml", "init"]));
    assert!(ok, "{err}");
    // No --preset: the cube's own preset finds the files and lists in their folders.
    let (ok, out, err) = run(with(&["write", "--year", "2000", "--all"]));
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = run(with(&["status", "--json"]));
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(status["years"]["2000"]["written"], 2, "{out}");
    // The same preset given again is taken; another is refused, naming both.
    let (ok, _, err) = run(with(&["--preset", "my.toml", "status"]));
    assert!(ok, "{err}");
    let (ok, _, err) = run(with(&["--preset", "glad", "write", "--all"]));
    assert!(!ok);
    assert!(
        err.contains(
            "the cube was laid out with preset \"my-lclu\", and \"glad (glad-lclu)\" was given"
        ),
        "{err}"
    );
    // Of the same name but laying the cube out otherwise, a preset is refused naming what
    // differs; where its files are may change.
    let mine = std::fs::read_to_string(d.join("my.toml")).unwrap();
    std::fs::write(
        d.join("my-chunks.toml"),
        mine.replace("chunk_pixels = 100", "chunk_pixels = 200"),
    )
    .unwrap();
    let (ok, _, err) = run(with(&["--preset", "my-chunks.toml", "status"]));
    assert!(!ok);
    assert!(
        err.contains("my-chunks.toml (my-lclu) differs from the preset \"my-lclu\" the cube was laid out with in variable \"lclu\""),
        "{err}"
    );
    std::fs::write(
        d.join("my-moved.toml"),
        mine.replace("list = \"lists/{year}.txt\"", "list = \"moved/{year}.txt\""),
    )
    .unwrap();
    let (ok, _, err) = run(with(&["--preset", "my-moved.toml", "status"]));
    assert!(ok, "a preset whose files moved is taken: {err}");
    // `presets` on the repository marks the cube's own.
    let (ok, out, err) = run(with(&["presets"]));
    assert!(ok, "{err}");
    assert!(out.contains("* my-lclu (the cube's own): GLAD"), "{out}");
    // A shard of a plan writes with the plan's preset: another given is refused.
    let (ok, _, err) = run(with(&["plan", "--all", "--shards", "1", "--out", "plan"]));
    assert!(ok, "{err}");
    let (ok, _, err) = run(with(&[
        "--preset", "glad", "write", "--plan", "plan", "--shard", "0",
    ]));
    assert!(!ok);
    assert!(
        err.contains("the preset given (glad) is not the plan's (my-lclu)"),
        "{err}"
    );
    // Laid out again with --force and no preset, the cube keeps its own.
    let (ok, _, err) = run(with(&["init", "--force"]));
    assert!(ok, "{err}");
    assert!(err.contains("with its own preset my-lclu"), "{err}");
    let (ok, _, err) = run(with(&["--preset", "my.toml", "status"]));
    assert!(ok, "{err}");
    // A preset this tilecube describes but does not write yet is refused at init, by name.
    let (ok, _, err) = run(vec![
        "--repo".into(),
        "gfc".into(),
        "--preset".into(),
        "hansen-gfc".into(),
        "init".into(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("preset hansen-gfc: it has 6 variables (treecover2000, gain, lossyear, datamask, first, last)"),
        "{err}"
    );
    assert!(!d.join("gfc").exists(), "nothing made for a refused preset");
}

#[test]
fn a_preset_with_a_mistake_is_refused_naming_its_key() {
    let w = Work::new();
    for (from, to, says) in [
        (
            "dtype = \"uint8\"",
            "dtype = \"int64\"",
            "variable \"lclu\": dtype = \"int64\": not a type tilecube writes (uint8, int16, uint16, float32)",
        ),
        (
            "fill_value = 255",
            "fill_value = -1",
            "variable \"lclu\": fill_value = -1: -1 is not a uint8 value (0 to 255, whole)",
        ),
        (
            "tile_name = \"{lat:02}{NS}_{lon:03}{EW}\"",
            "tile_name = \"{lat:02}{NS}{lon:02}{EW}\"",
            "grid.tile_name = \"{lat:02}{NS}{lon:02}{EW}\": cannot spell the upper-left corner",
        ),
    ] {
        assert!(GLAD_TOML.contains(from));
        std::fs::write(w.dir.path().join("bad.toml"), GLAD_TOML.replace(from, to)).unwrap();
        let (ok, _, err) = run_in(
            &w,
            w.dir.path(),
            &["--preset", "bad.toml", "--repo", "r", "init"],
        );
        assert!(!ok);
        assert!(
            err.contains(&format!("preset bad.toml: {says}")),
            "{to}: {err}"
        );
        assert!(!w.dir.path().join("r").exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sources_nodata_becomes_the_cubes_fill_value() {
    let w = Work::with_preset(common::TILE, common::CHUNK, |text| {
        text.replace("fill_value = 255", "fill_value = 255\nnodata = 0")
    });
    w.two_class_tile(2000, "50N_070W", 0, 10);
    w.list(2000, &["50N_070W"], "");
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let cube = w.cube().await;
    assert_eq!(cube.layout.nodata, Some(0));
    let pixels = common::cube_pixels(&cube, 2000, common::t("50N_070W")).await;
    let half = pixels.len() / 2;
    assert!(
        pixels[..half].iter().all(|&p| p == 255),
        "nodata became fill"
    );
    assert!(pixels[half..].iter().all(|&p| p == 10), "data kept");
}

#[test]
fn demo_lays_its_source_out_as_the_preset_says() {
    let w = Work::new();
    // Six tiles of Europe, one year, files and lists in folders of their own.
    let preset = format!(
        "years = [2000]\n{}",
        GLAD_TOML
            .replace("[years]\n", "")
            .replace("first = 2000\nlast = 2020\nstep = 5\n", "")
            .replace("name = \"glad-lclu\"", "name = \"europe\"")
            .replace("origin_lon = -180", "origin_lon = 0")
            .replace("origin_lat = 80", "origin_lat = 60")
            .replace("columns = 36", "columns = 3")
            .replace("rows = 14", "rows = 2")
            .replace("chunk_pixels = 1000", "chunk_pixels = 100")
            .replace(
                "tile = \"{year}/{tile}.tif\"",
                "tile = \"maps/{year}/lc_{tile}.tif\""
            )
            .replace("list = \"{year}.txt\"", "list = \"lists/lc_{year}.txt\"")
    );
    std::fs::write(w.dir.path().join("europe.toml"), preset).unwrap();
    let (ok, out, err) = run_in(
        &w,
        w.dir.path(),
        &[
            "--preset",
            "europe.toml",
            "demo",
            "--dir",
            "d",
            "--pixels",
            "200",
        ],
    );
    assert!(ok, "{out}\n{err}");
    let source = w.dir.path().join("d/source");
    let list = std::fs::read_to_string(source.join("lists/lc_2000.txt")).expect("the list");
    let tiles: Vec<&str> = list.lines().collect();
    assert!(!tiles.is_empty(), "the demo made land tiles");
    assert!(
        tiles
            .iter()
            .all(|l| l.contains("/maps/2000/lc_") && std::path::Path::new(l).exists()),
        "{list}"
    );
    assert!(err.contains("1 year"), "{err}");
    // Its cube holds them: again with no preset, the cube's own lays the source out.
    let (ok, out, err) = run_in(
        &w,
        w.dir.path(),
        &[
            "--repo", "d/cube", "--source", "d/source", "status", "--json",
        ],
    );
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(status["years"]["2000"]["written"], tiles.len(), "{out}");
    // Another preset on this demo is refused before a file is made; with none, the demo
    // goes on with the cube's own.
    let (ok, _, err) = run_in(
        &w,
        w.dir.path(),
        &["--preset", "glad", "demo", "--dir", "d", "--pixels", "200"],
    );
    assert!(!ok);
    assert!(
        err.contains(
            "the cube was laid out with preset \"europe\", and \"glad (glad-lclu)\" was given"
        ),
        "{err}"
    );
    let (ok, _, err) = run_in(&w, w.dir.path(), &["demo", "--dir", "d", "--pixels", "200"]);
    assert!(ok, "{err}");
    assert!(err.contains("is there from an earlier demo"), "{err}");
    for glad_layout in ["2000", "2000.txt", "2005"] {
        assert!(!source.join(glad_layout).exists(), "{glad_layout} made");
    }
}

#[test]
fn a_cube_of_ones_own_preset_reads_back_with_xarray_and_rioxarray_at_each_lon_lat() {
    let w = Work::new();
    let preset = GLAD_TOML
        .replace("name = \"glad-lclu\"", "name = \"classes\"")
        .replace("name = \"lclu\"", "name = \"landcover\"")
        .replace("chunk_pixels = 1000", "chunk_pixels = 100")
        .replace(
            "long_name = \"land cover and land use class\"",
            "long_name = \"land cover class\"\nflag_values = [10, 20, 30]\nflag_meanings = \"forest grass water\"",
        )
        .replace(
            "title = \"GLAD Global Land Cover and Land Use 2000-2020\"\n\n[overviews]",
            "title = \"Classes of one's own\"\n\n[overviews]",
        );
    std::fs::write(w.dir.path().join("classes.toml"), &preset).unwrap();
    let names = ["80N_180W", "00N_000E", "10S_170E"];
    let mut points = Vec::new();
    for (year, name) in [(2000, names[0]), (2000, names[1]), (2005, names[2])] {
        let path = w.tile(year, name, Flaw::None);
        let pixels = common::gdal_pixels(&path);
        let tile = common::t(name);
        let (n, px) = (common::TILE as usize, 10.0 / common::TILE as f64);
        for (r, c) in [
            (0, 0),
            (0, n - 1),
            (n / 2, n / 3),
            (n - 1, 0),
            (n - 1, n - 1),
        ] {
            points.push(serde_json::json!({
                "year": year,
                "lon": tile.lon as f64 + (c as f64 + 0.5) * px,
                "lat": tile.lat as f64 - (r as f64 + 0.5) * px,
                "value": pixels[r * n + c],
            }));
        }
    }
    w.list(2000, &names[..2], "");
    w.list(2005, &names[2..], "");
    let args = |more: &[&str]| -> Vec<String> {
        [
            "--preset",
            "classes.toml",
            "--repo",
            "repo",
            "--source",
            "source",
            "--tile-pixels",
            "400",
        ]
        .iter()
        .chain(more)
        .map(|s| s.to_string())
        .collect()
    };
    for step in [args(&["init"]), args(&["write", "--all"])] {
        let refs: Vec<&str> = step.iter().map(String::as_str).collect();
        let (ok, out, err) = run_in(&w, w.dir.path(), &refs);
        assert!(ok, "{step:?}: {out}\n{err}");
    }
    let expect = serde_json::json!({
        "variable": "landcover",
        "title": "Classes of one's own",
        "pixel_size": 10.0 / common::TILE as f64,
        "attrs": {
            "long_name": "land cover class",
            "flag_values": [10, 20, 30],
            "flag_meanings": "forest grass water",
            "grid_mapping": "spatial_ref",
        },
        "points": points,
    });
    let expect_path = w.dir.path().join("expect.json");
    std::fs::write(&expect_path, expect.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/preset_readback.py"
    );
    let out = std::process::Command::new(common::python_ic2())
        .arg(script)
        .arg(w.repo())
        .arg(&expect_path)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "read-back: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("15 points and 4 attributes as expected")
    );
}
