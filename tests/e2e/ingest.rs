//! End to end through the real binary: GDAL-made tiles into a real Icechunk repository, read
//! back through zarrs and compared with GDAL's own read, pixel for pixel.

use crate::common;

use std::collections::BTreeSet;
use std::io::{Seek, SeekFrom, Write};

use common::{Work, cube_pixels, gdal_pixels, t};
use icechunk::repository::VersionInfo;
use tilecube::demo::Flaw;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_tiles_read_back_equal_to_gdal_and_untouched_chunks_stay_unstored() {
    let w = Work::new();
    let y2000 = ["80N_180W", "00N_000E", "10N_010E", "50S_170E", "00N_010E"];
    let y2020 = ["00N_000E", "50S_170E"];
    for name in y2000 {
        let flaw = if name == "00N_010E" {
            Flaw::AllFill
        } else {
            Flaw::None
        };
        w.tile(2000, name, flaw);
    }
    for name in y2020 {
        w.tile(2020, name, Flaw::None);
    }
    w.list(2000, &y2000, "");
    w.list(2020, &y2020, "");

    // The default format, as a user gets it (the workspace's config names none).
    let out = w.ok(&["init"]);
    assert!(out.contains("initialized"), "{out}");
    let cube = w.cube().await;
    assert_eq!(
        cube.repo.spec_version(),
        icechunk::format::format_constants::SpecVersionBin::V2,
        "init makes spec-2 repositories by default"
    );
    assert!(
        cube.chunks_present(&VersionInfo::BranchTipRef("main".into()))
            .await
            .unwrap()
            .is_empty(),
        "init writes no chunk of the data variable"
    );

    let report = json(&w.ok(&["write", "--all", "--json"]));
    assert_eq!(report["failed"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["written"]["2000"].as_object().unwrap().len(), 5);
    assert_eq!(report["written"]["2020"].as_object().unwrap().len(), 2);
    assert_eq!(report["commits"].as_array().unwrap().len(), 1);
    assert_eq!(
        report["written"]["2000"]["00N_010E"], 0,
        "an all-fill tile stores no chunk"
    );

    let cube = w.cube().await;
    for (year, names) in [(2000, &y2000[..]), (2020, &y2020[..])] {
        for name in names {
            let path = tilecube::demo::tile_path(&w.source(), year, t(name));
            let expected = gdal_pixels(&path);
            let got = cube_pixels(&cube, year, t(name)).await;
            assert_eq!(got.len(), expected.len());
            assert!(got == expected, "{year}/{name} differs from GDAL's read");
        }
    }
    // A tile nobody wrote reads as fill, and none of its chunks is stored.
    let untouched = cube_pixels(&cube, 2000, t("40N_100W")).await;
    assert!(untouched.iter().all(|&p| p == 255));
    let untouched = cube_pixels(&cube, 2005, t("00N_000E")).await;
    assert!(untouched.iter().all(|&p| p == 255));
    let present = cube
        .chunks_present(&VersionInfo::BranchTipRef("main".into()))
        .await
        .unwrap();
    let tiles: BTreeSet<String> = present.keys().map(|(y, t)| format!("{y}/{t}")).collect();
    let expected: BTreeSet<String> = [
        "2000/80N_180W",
        "2000/00N_000E",
        "2000/10N_010E",
        "2000/50S_170E",
        "2020/00N_000E",
        "2020/50S_170E",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(tiles, expected);
    let stored: u64 = present.values().sum();
    let reported: u64 = ["2000", "2020"]
        .iter()
        .flat_map(|y| report["written"][y].as_object().unwrap().values())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(stored, reported);

    // status and log read it all back from the repository.
    let status = json(&w.ok(&["status", "--json"]));
    assert_eq!(status["years"]["2000"]["written"], 5);
    assert_eq!(status["years"]["2000"]["listed"], 5);
    assert_eq!(status["years"]["2020"]["tiles"]["50S_170E"], "written");
    assert_eq!(status["years"]["2005"]["written"], 0);
    let text = w.ok(&["status", "--year", "2000"]);
    assert!(text.contains("2000: 5 written / 5 listed"), "{text}");
    let log = json(&w.ok(&["log", "--json"]));
    let log = log.as_array().unwrap();
    assert_eq!(
        log[0]["message"].as_str().unwrap(),
        "write 7 tiles: 2000/80N_180W, 2000/10N_010E, 2000/00N_000E, 2000/00N_010E, 2000/50S_170E, 2020/00N_000E, 2020/50S_170E"
    );
    assert_eq!(log[1]["message"], "initialize array");
    let text = w.ok(&["log"]);
    assert!(
        text.lines().next().unwrap().contains("2000/80N_180W"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_tile_fails_alone_naming_itself_and_leaves_no_chunk() {
    let w = Work::new();
    let good = ["00N_000E", "20N_020E"];
    for g in good {
        w.tile(2000, g, Flaw::None);
    }
    let bad: &[(&str, Flaw, &str)] = &[
        ("10N_010E", Flaw::Int16, "expected uint8"),
        ("10N_020E", Flaw::ThreeBands, "has 3 bands"),
        (
            "10N_030E",
            Flaw::WrongSize,
            "size is 399x399 px; expected 400x400, the cube's tile size (a cube of other tiles is laid out with `init --tile-pixels N`)",
        ),
        ("10N_040E", Flaw::OffGrid, "not on a tile corner"),
        ("10N_050E", Flaw::WrongCrs, "EPSG:3857"),
    ];
    for (name, flaw, _) in bad {
        w.tile(2000, name, *flaw);
    }
    // Truncated: the strips' bytes are cut off.
    let trunc = w.tile(2000, "30N_030E", Flaw::None);
    let len = std::fs::metadata(&trunc).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&trunc)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // Corrupt: the middle of the file overwritten with garbage.
    let corrupt = w.tile(2000, "30N_040E", Flaw::None);
    let len = std::fs::metadata(&corrupt).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&corrupt)
        .unwrap();
    f.seek(SeekFrom::Start(len / 3)).unwrap();
    f.write_all(&vec![0xA5; (len / 3) as usize]).unwrap();
    drop(f);
    // Not a TIFF at all.
    let junk = tilecube::demo::tile_path(&w.source(), 2000, t("30N_050E"));
    std::fs::write(&junk, b"this is not a tiff").unwrap();

    let mut listed: Vec<&str> = good.to_vec();
    listed.extend(bad.iter().map(|b| b.0));
    listed.extend([
        "30N_030E", "30N_040E", "30N_050E", "40N_040E", /* missing */
    ]);
    w.list(
        2000,
        &listed,
        "\n\n00N_000E.tif\ngarbage line\n2000/95N_000E.tif\n",
    );

    w.ok(&["init"]);
    let out = w.run(&["write", "--all", "--year", "2000"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed tile makes the exit status non-zero"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (name, _, reason) in bad {
        let line = stderr
            .lines()
            .find(|l| l.starts_with("failed:") && l.contains(&format!("2000/{name}")))
            .unwrap_or_else(|| panic!("no failure line for {name}:\n{stderr}"));
        assert!(line.contains(reason), "{name}: {line}");
    }
    for name in ["30N_030E", "30N_040E", "30N_050E"] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with("failed:") && l.contains(&format!("2000/{name}")))
            .unwrap_or_else(|| panic!("no failure line for {name}:\n{stderr}"));
        eprintln!("{line}");
    }
    let junk_line = stderr
        .lines()
        .find(|l| l.starts_with("failed:") && l.contains("2000/30N_050E"))
        .unwrap();
    assert!(
        junk_line.contains("30N_050E.tif") && junk_line.contains("not a GeoTIFF, or corrupt"),
        "the not-a-TIFF tile names its file and why: {junk_line}"
    );
    // The truncated and the corrupt tile fail while their strips are read, after some chunks
    // of theirs were already uploaded: none of those may reach the commit (checked below).
    for name in ["30N_030E", "30N_040E"] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with("failed:") && l.contains(name))
            .unwrap();
        assert!(line.contains("reading rows"), "{line}");
    }
    let missing = stderr
        .lines()
        .find(|l| l.contains("2000/40N_040E"))
        .unwrap();
    assert!(missing.contains("not found"), "{missing}");
    // The list's bad lines are reported, each with its own line number: eleven tile lines,
    // two blank ones, then the repeated tile (14), the garbage (15) and the tile off the grid
    // (16).
    let list_line = |needle: &str| {
        stderr
            .lines()
            .find(|l| l.contains("tile list") && l.contains(needle))
            .unwrap_or_else(|| panic!("no list problem about {needle}:\n{stderr}"))
            .to_string()
    };
    assert!(list_line("listed again").contains("line 14:"), "{stderr}");
    assert!(
        list_line("\"garbage line\"").contains("line 15:"),
        "{stderr}"
    );
    assert!(list_line("95N_000E").contains("line 16:"), "{stderr}");

    let cube = w.cube().await;
    let present = cube
        .chunks_present(&VersionInfo::BranchTipRef("main".into()))
        .await
        .unwrap();
    let tiles: BTreeSet<String> = present.keys().map(|(_, t)| t.to_string()).collect();
    assert_eq!(
        tiles,
        good.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()
    );
    for g in good {
        let path = tilecube::demo::tile_path(&w.source(), 2000, t(g));
        assert!(cube_pixels(&cube, 2000, t(g)).await == gdal_pixels(&path));
    }
    let history = cube.history().await.unwrap();
    let recorded: BTreeSet<String> = history[0].written[&2000]
        .keys()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        recorded,
        good.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()
    );

    // The truncated and the corrupt tile each uploaded chunks before failing (so "none of its
    // chunks in the commit" is not trivially true): written alone, each adds chunk objects to
    // the repository, and the head does not move.
    for name in ["30N_030E", "30N_040E"] {
        let before = chunk_objects(&w);
        let head = cube.reopen().await.unwrap().head().await.unwrap();
        let out = w.run(&["write", "--year", "2000", "--tiles", name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let after = chunk_objects(&w);
        assert!(
            after > before,
            "{name}: no chunk was uploaded before it failed ({before} → {after} objects)"
        );
        let cube = cube.reopen().await.unwrap();
        assert_eq!(
            cube.head().await.unwrap(),
            head,
            "{name}: nothing committed"
        );
        let present = cube
            .chunks_present(&VersionInfo::BranchTipRef("main".into()))
            .await
            .unwrap();
        assert!(
            !present.keys().any(|(_, t)| t.to_string() == name),
            "{name}: none of its chunks is referenced"
        );
    }
}

/// Chunk objects stored in the local test repository.
fn chunk_objects(w: &Work) -> usize {
    std::fs::read_dir(w.repo().join("chunks"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_is_idempotent_and_missing_writes_only_what_is_missing() {
    let w = Work::new();
    let listed = ["00N_000E", "00N_010E", "10N_000E", "10N_010E"];
    for n in listed {
        w.tile(2005, n, Flaw::None);
    }
    w.list(2005, &listed, "");
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2005", "--tiles", "00N_000E,10N_010E"]);
    let cube = w.cube().await;
    let first = cube_pixels(&cube, 2005, t("00N_000E")).await;
    let head = VersionInfo::BranchTipRef("main".into());
    let chunks_first = cube.chunks_present(&head).await.unwrap();

    w.ok(&["write", "--year", "2005", "--tiles", "00N_000E"]);
    let cube = w.cube().await;
    assert!(cube_pixels(&cube, 2005, t("00N_000E")).await == first);
    assert_eq!(cube.chunks_present(&head).await.unwrap(), chunks_first);

    let report = json(&w.ok(&["write", "--missing", "--json"]));
    let written: BTreeSet<String> = report["written"]["2005"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        written,
        ["00N_010E", "10N_000E"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(report["written"].as_object().unwrap().len(), 1, "{report}");
    let report = json(&w.ok(&["write", "--missing", "--json"]));
    assert_eq!(
        report["written"].as_object().unwrap().len(),
        0,
        "nothing left: {report}"
    );
    assert_eq!(report["commits"].as_array().unwrap().len(), 0);
    let status = json(&w.ok(&["status", "--json"]));
    assert_eq!(status["years"]["2005"]["written"], 4);
}

#[test]
fn init_refuses_an_existing_cube_unless_forced_and_checks_chunking() {
    let w = Work::new();
    w.ok(&["init"]);
    let out = w.run(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already holds a repository") && err.contains("--force"),
        "{err}"
    );
    w.ok(&["init", "--force"]);
    let log = json(&w.ok(&["log", "--json"]));
    assert_eq!(
        log.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["message"] == "initialize array")
            .count(),
        2
    );

    // Without a config file: the GLAD preset's 1000 px chunks do not divide 1500 px tiles.
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tilecube"))
        .args([
            "init",
            "--repo",
            repo.to_str().unwrap(),
            "--tile-pixels",
            "1500",
        ])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chunk side 1000 px does not divide the tile side 1500 px"),
        "{err}"
    );

    // A stored layout disagreeing with the flags is refused.
    let out = w.run(&["status", "--tile-pixels", "800"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tile-pixels 800"));
}

#[test]
fn a_source_or_a_list_that_is_not_there_is_an_error_naming_it() {
    let w = Work::new();
    w.tile(2000, "00N_000E", Flaw::None);
    w.list(2000, &["00N_000E"], "");
    w.ok(&["init"]);
    // A mistyped source directory.
    let out = w.run(&["--source", "/no/such/glad", "write", "--all"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/no/such/glad") && stderr.contains("not there"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("tiles written"));
    // A year named whose list is absent.
    let out = w.run(&["write", "--all", "--year", "2005"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("2005.txt") && stderr.contains("no tile list for 2005"),
        "{stderr}"
    );
    // Every year implied: the years without a list are named and left out, the rest written.
    let out = w.run(&["write", "--all"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("no tile list for 2010") && stderr.contains("2010.txt"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 tile written"));
    // status shows such a year as having no list.
    let status = w.ok(&["status", "--year", "2000", "--year", "2005"]);
    assert!(status.contains("2000: 1 written / 1 listed"), "{status}");
    assert!(status.contains("2005: 0 written / no list ("), "{status}");
    let status = json(&w.ok(&["status", "--json"]));
    assert!(
        status["years"]["2005"]["no_list"]
            .as_str()
            .unwrap()
            .ends_with("2005.txt"),
        "{status}"
    );
    assert!(status["years"]["2000"]["no_list"].is_null());
}
