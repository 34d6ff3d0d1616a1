//! What the repository promises about itself: a committed snapshot's files are never touched
//! again, whatever comes later (writes, checkpoints, a failed tile, a kill -9); a one-tile
//! commit writes one new manifest; and `status` shows `?` for exactly the tiles whose record
//! and chunks disagree.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{Work, cube_pixels, gdal_pixels, t, tile_names};
use icechunk::repository::VersionInfo;
use tilecube::demo::Flaw;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Every file of the repository but the moving references (branches, tags, the lock, and on
/// spec 2 the repository's info object `repo`, which every commit replaces as it moves the
/// branch) and the writers' announcements, with a hash of its bytes.
fn files(repo: &Path) -> BTreeMap<String, u64> {
    let mut all = common::file_hashes(repo);
    all.retain(|rel, _| {
        !rel.starts_with("refs")
            && rel != "repo"
            && !rel.starts_with("tilecube-writers")
            && !rel.contains(".tilecube-refs.lock")
    });
    all
}

fn assert_untouched(before: &BTreeMap<String, u64>, repo: &Path, after_what: &str) {
    let now = files(repo);
    for (f, h) in before {
        assert_eq!(
            now.get(f),
            Some(h),
            "{f} of a committed snapshot changed or vanished after {after_what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_snapshot_is_never_touched_again() {
    let w = Work::new();
    let n = tile_names(30);
    w.listed_tiles(2000, &n);
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", &n[..3].join(",")]);
    let cube = w.cube().await;
    let snapshot = cube.head().await.unwrap();
    let pixels = cube_pixels(&cube, 2000, t(&n[0])).await;
    let before = files(&w.repo());
    assert!(
        before.keys().any(|f| f.starts_with("manifests"))
            && before.keys().any(|f| f.starts_with("snapshots")),
        "{before:?}"
    );

    // Rewrites of the same tiles and new ones, with checkpoints.
    w.ok(&[
        "write",
        "--year",
        "2000",
        "--tiles",
        &n[..6].join(","),
        "--commit-every",
        "2",
    ]);
    assert_untouched(&before, &w.repo(), "later writes and checkpoints");

    // A failed tile next to good ones.
    w.tile(2000, &n[6], Flaw::Int16);
    let out = w.run(&["write", "--year", "2000", "--tiles", &n[6..9].join(",")]);
    assert_eq!(out.status.code(), Some(1));
    assert_untouched(&before, &w.repo(), "a failed tile");

    // A writer killed with -9 in the middle of its work: after its first checkpoint landed,
    // within its second commit (its manifests written, its snapshot not yet).
    let head_before = w.cube().await.head().await.unwrap();
    let mut child = w.spawn_with(
        &["write", "--all", "--commit-every", "4", "--threads", "1"],
        &w.hold_env("manifests-written#2"),
    );
    w.wait_held("manifests-written", 2);
    let head_held = w.cube().await.head().await.unwrap();
    assert_ne!(
        head_held, head_before,
        "the writer had committed before the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(w.cube().await.head().await.unwrap(), head_held);
    assert_untouched(&before, &w.repo(), "a kill -9");

    // And the snapshot still reads as it did.
    let cube = w.cube().await;
    let session = cube
        .session_at(&VersionInfo::SnapshotId(snapshot))
        .await
        .unwrap();
    let store = std::sync::Arc::new(zarrs_icechunk::AsyncIcechunkStore::new(session));
    let array = zarrs::array::Array::async_open(store, "/lclu")
        .await
        .unwrap();
    let grid = cube.layout.grid();
    let first = cube
        .layout
        .tile_chunks(0, grid.cell(t(&n[0])).unwrap())
        .next()
        .unwrap();
    let chunk: Vec<u8> = array.async_retrieve_chunk(&first).await.unwrap();
    let (side, width) = (common::CHUNK as usize, common::TILE as usize);
    for r in 0..side {
        assert_eq!(
            &chunk[r * side..(r + 1) * side],
            &pixels[r * width..r * width + side],
            "row {r} of the old snapshot's first chunk of {}",
            n[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_tile_commit_writes_exactly_one_new_manifest() {
    // Level 0 alone (the overview levels' manifests follow the same split: below).
    let w = Work::with_overviews(None);
    let n = tile_names(8);
    w.listed_tiles(2005, &n);
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2005", "--tiles", &n[..6].join(",")]);
    let manifests = |w: &Work| {
        std::fs::read_dir(w.repo().join("manifests"))
            .unwrap()
            .count()
    };
    let before = manifests(&w);
    assert!(before >= 6, "one manifest per tile at least: {before}");
    w.ok(&["write", "--year", "2005", "--tiles", &n[6]]);
    assert_eq!(manifests(&w), before + 1, "a new tile: one new manifest");
    w.ok(&["write", "--year", "2005", "--tiles", &n[2]]);
    assert_eq!(
        manifests(&w),
        before + 2,
        "a rewritten tile: one new manifest"
    );

    // With overviews, a one-tile commit adds exactly one manifest for each array it writes:
    // level 0 and each level written with the tile (split per tile like level 0); the test
    // cube has no coarse level, which would add one per year.
    let w = Work::new();
    w.listed_tiles(2005, &n);
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2005", "--tiles", &n[..6].join(",")]);
    let before = manifests(&w);
    w.ok(&["write", "--year", "2005", "--tiles", &n[6]]);
    let added = manifests(&w) - before;
    let levels = w.cube().await.layout.levels();
    assert!(levels.iter().all(|l| !l.is_coarse()), "{levels:?}");
    assert_eq!(
        added,
        1 + levels.len(),
        "a new tile with its {} overview levels: {added} manifests",
        levels.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_inconsistent_for_exactly_the_tiles_whose_record_and_chunks_disagree() {
    let w = Work::new();
    let n = tile_names(5);
    w.listed_tiles(2000, &n);
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", &n[..4].join(",")]);
    common::tamper(&w, 2000, &n[1], &n[4]).await;

    // A recorded tile with chunks missing is a hole a reader meets: status exits 1.
    let o = w.run(&["status", "--json", "--year", "2000"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let status = json(&String::from_utf8_lossy(&o.stdout));
    let tiles = &status["years"]["2000"]["tiles"];
    assert_eq!(tiles[&n[1]], "incomplete", "{status}");
    assert_eq!(tiles[&n[4]], "unrecorded", "{status}");
    for name in [&n[0], &n[2], &n[3]] {
        assert_eq!(tiles[name], "written", "{name}: {status}");
    }
    let o = w.run(&["status", "--year", "2000"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let row = text.lines().find(|l| l.starts_with("00N")).unwrap();
    // 00N_000E..00N_040E are columns 18..22, after the row label "00N  ".
    assert_eq!(&row[5 + 18..5 + 23], "#?##?", "{text}");
}

#[test]
fn demo_makes_a_source_writes_every_tile_and_writes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tilecube"))
            .args(["demo", "--pixels", "100", "--dir"])
            .arg(dir.path())
            .env("TILECUBE_DATA_DIR", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
            .output()
            .unwrap()
    };
    let first = run();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    let per_year: usize = stderr
        .lines()
        .find_map(|l| l.strip_suffix(" land tiles per year, 5 years"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(per_year > 100, "{per_year}");
    // In a pipe it reports the write and ends with the status grid.
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains(&format!("{} tiles written, 0 failed", per_year * 5)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("2000: {per_year} written / {per_year} listed")),
        "{stdout}"
    );
    assert!(dir.path().join("source/2000.txt").exists());
    let second = run();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("0 tiles written, 0 failed, 0 commits"),
        "{stdout}"
    );
    // Its tiles are GLAD-like (the world texture), and a demo asked for another texture over them is refused by
    // name rather than mixing the two.
    let other = Command::new(env!("CARGO_BIN_EXE_tilecube"))
        .args(["demo", "--pixels", "100", "--texture", "blocky", "--dir"])
        .arg(dir.path())
        .env("TILECUBE_DATA_DIR", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(
        other.status.code() == Some(2) && said.contains("were made with --texture world"),
        "{said}"
    );
    // The cube holds every tile, pixel for pixel.
    let rt = tilecube::config::io_runtime().unwrap();
    let cube = rt
        .block_on(tilecube::cube::Cube::open(
            tilecube::cube::RepoLocation::Local(dir.path().join("cube")),
            "main",
        ))
        .unwrap();
    let coverage = rt.block_on(cube.coverage()).unwrap();
    assert_eq!(coverage.tiles.len(), per_year * 5);
    // Exactly the listed tiles, each equal to GDAL's read of its file.
    let mut listed = std::collections::BTreeSet::new();
    for year in [2000, 2005, 2010, 2015, 2020] {
        let list = std::fs::read_to_string(dir.path().join(format!("source/{year}.txt"))).unwrap();
        for name in list.lines().filter(|l| !l.trim().is_empty()) {
            let name = name.trim().trim_end_matches(".tif");
            let name = name.rsplit('/').next().unwrap();
            listed.insert((year, t(name)));
        }
    }
    let held: std::collections::BTreeSet<_> = coverage.tiles.keys().copied().collect();
    assert_eq!(held, listed);
    for &(year, tile) in &held {
        let path = tilecube::demo::tile_path(&dir.path().join("source"), year, tile);
        assert!(
            rt.block_on(cube_pixels(&cube, year, tile)) == gdal_pixels(&path),
            "{year}/{tile} differs from its file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_tile_whose_chunk_objects_were_deleted_from_storage() {
    use icechunk::format::ChunkIndices;
    let w = Work::new();
    let n = tile_names(4);
    w.listed_tiles(2000, &n);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    assert!(w.ok(&["verify"]).contains("\nok"), "a sound cube verifies");
    // Delete the stored objects of one tile behind Icechunk's back.
    let cube = w.cube().await;
    let session = cube.head_session().await.unwrap();
    let path = icechunk::format::Path::new("/lclu").unwrap();
    let grid = cube.layout.grid();
    let mut deleted = 0;
    for c in cube.layout.tile_chunks(0, grid.cell(t(&n[2])).unwrap()) {
        let idx = ChunkIndices(c.iter().map(|&v| v as u32).collect());
        if let Some(icechunk::format::manifest::ChunkPayload::Ref(r)) =
            session.get_chunk_ref(&path, &idx).await.unwrap()
        {
            std::fs::remove_file(w.repo().join("chunks").join(r.id.to_string())).unwrap();
            deleted += 1;
        }
    }
    assert!(deleted > 0, "the tile's chunks are stored as objects");
    let out = w.run(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "a damaged cube fails verify");
    let v = json(&String::from_utf8_lossy(&out.stdout));
    let missing = v["missing"].as_object().unwrap();
    assert_eq!(missing.len(), 1, "{v}");
    assert_eq!(missing[&format!("2000/{}", n[2])], deleted, "{v}");
    let text = String::from_utf8_lossy(&w.run(&["verify"]).stdout).into_owned();
    assert!(
        text.contains(&format!("missing: 2000/{}: {deleted} chunk objects", n[2])),
        "{text}"
    );
}
