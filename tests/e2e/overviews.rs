//! The overview pyramid end to end: every level of cubes written by the real binary (several
//! years, edge tiles, an all-fill tile, a rewritten tile, checkpoints, two writers racing on
//! a shared coarse chunk, `tilecube overviews` after the fact) equals the 2×2 chain from
//! level 0 computed here by a plain loop; `map` draws a level through the legend; xarray
//! opens every level.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Work, t, tile_names};
use tilecube::cube::Cube;
use tilecube::demo::Flaw;
use zarrs::array::Array;
use zarrs_icechunk::AsyncIcechunkStore;

const FILL: u8 = 255;

/// The 2×2 reduction as the issue defines it, one output pixel at a time: the most frequent
/// value present, ties to the smallest, fill only when all present pixels are fill; at cut
/// edges only the pixels present count.
fn reference_mode(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let (ow, oh) = (w.div_ceil(2), h.div_ceil(2));
    let mut out = vec![FILL; ow * oh];
    for oy in 0..oh {
        for ox in 0..ow {
            let mut counts = BTreeMap::<u8, usize>::new();
            for y in 2 * oy..(2 * oy + 2).min(h) {
                for x in 2 * ox..(2 * ox + 2).min(w) {
                    let v = src[y * w + x];
                    if v != FILL {
                        *counts.entry(v).or_default() += 1;
                    }
                }
            }
            if let Some(top) = counts.values().max() {
                out[oy * ow + ox] = *counts.iter().find(|(_, c)| *c == top).unwrap().0;
            }
        }
    }
    out
}

/// One year of an array of the cube's head, read whole through zarrs, chunk by chunk (a
/// chunk not stored reads as fill).
async fn read_year(cube: &Cube, path: &str, year: i32) -> (usize, usize, Vec<u8>) {
    let session = cube.head_session().await.expect("session");
    let store = Arc::new(AsyncIcechunkStore::new(session));
    let array = Array::async_open(store, path).await.expect("open level");
    let shape = array.shape().to_vec();
    let (h, w) = (shape[1] as usize, shape[2] as usize);
    let chunk = array.chunk_shape(&[0, 0, 0]).expect("chunk shape")[1].get() as usize;
    let yi = cube.layout.year_index(year).expect("year") as u64;
    let mut px = vec![FILL; w * h];
    for cy in 0..h.div_ceil(chunk) {
        for cx in 0..w.div_ceil(chunk) {
            let data: Vec<u8> = array
                .async_retrieve_chunk(&[yi, cy as u64, cx as u64])
                .await
                .expect("read chunk");
            for r in 0..chunk.min(h - cy * chunk) {
                let n = chunk.min(w - cx * chunk);
                let at = (cy * chunk + r) * w + cx * chunk;
                px[at..at + n].copy_from_slice(&data[r * chunk..r * chunk + n]);
            }
        }
    }
    (w, h, px)
}

/// Every level of `year` equals the reference chain from level 0; returns the levels read.
async fn assert_levels_follow_level_0(cube: &Cube, year: i32) -> Vec<(usize, usize, Vec<u8>)> {
    let levels = cube.layout.levels();
    assert!(!levels.is_empty(), "the cube has overviews");
    let (mut w, mut h, mut cur) = read_year(cube, &cube.layout.level_path(0), year).await;
    let mut read = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        cur = reference_mode(&cur, w, h);
        (w, h) = (w.div_ceil(2), h.div_ceil(2));
        let (gw, gh, got) = read_year(cube, &cube.layout.level_path(i + 1), year).await;
        assert_eq!((gw, gh), (w, h), "level {} size", level.factor);
        let wrong = got.iter().zip(&cur).filter(|(a, b)| a != b).count();
        assert_eq!(
            wrong,
            0,
            "{year}: level ×{} differs from the reduction of level 0 in {wrong} of {} pixels",
            level.factor,
            cur.len()
        );
        read.push((gw, gh, got));
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_level_is_the_chain_from_level_0_after_checkpoints_edges_fill_and_a_rewrite() {
    // Levels ×2 … ×256: ×2–×16 written with each tile, ×32–×256 coarse (a ×32 chunk of 100
    // px spans 8×8 tiles); ×128 and ×256 round their sizes up.
    let w = Work::with_overviews(Some(100));
    let y2000 = ["80N_180W", "00N_000E", "00N_010E", "10N_010E", "50S_170E"];
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
    w.ok(&["init"]);
    w.ok(&["write", "--all", "--commit-every", "2"]);
    // A rewritten tile: its levels, and the coarse chunks it shares, follow its new pixels.
    w.two_class_tile(2000, "00N_000E", 20, 200);
    w.ok(&["write", "--year", "2000", "--tiles", "00N_000E"]);

    let cube = w.cube().await;
    let factors: Vec<u64> = cube.layout.levels().iter().map(|l| l.factor).collect();
    assert_eq!(factors, [2, 4, 8, 16, 32, 64, 128, 256]);
    assert_eq!(cube.layout.tile_levels().len(), 4);
    for year in [2000, 2020, 2010] {
        assert_levels_follow_level_0(&cube, year).await;
    }
    // The rewritten tile's two classes show at ×16 (25 px a tile): top 20, bottom 200.
    let (lw, _, x16) = read_year(&cube, &cube.layout.level_path(4), 2000).await;
    let (ty, tx) = (3200 / 16, 7200 / 16);
    assert_eq!(x16[(ty + 2) * lw + tx + 2], 20);
    assert_eq!(x16[(ty + 22) * lw + tx + 2], 200);

    // Coverage counts level 0 alone: the overview chunks never show as tiles.
    let cov = cube.coverage().await.expect("coverage");
    assert_eq!(cov.written_count(2000), 5);
    assert_eq!(cov.written_count(2020), 2);
    assert_eq!(cov.tiles.len(), 7, "{:?}", cov.tiles.keys());

    // `map` draws the coarsest level through the legend, pixel for pixel.
    let png = w.dir.path().join("world.png");
    let out = w.ok(&["map", "--year", "2000", "--out", png.to_str().unwrap()]);
    assert!(out.contains("57×22 px of level 8 (factor 256)"), "{out}");
    let (mw, mh, coarsest) = read_year(&cube, &cube.layout.level_path(8), 2000).await;
    let ds = gdal::Dataset::open(&png).expect("open png");
    let (pw, ph) = ds.raster_size();
    assert!(pw >= mw && ph > mh, "{pw}×{ph}");
    let bands: Vec<Vec<u8>> = (1..=3)
        .map(|b| {
            ds.rasterband(b)
                .unwrap()
                .read_as::<u8>((0, 0), (mw, mh), (mw, mh), None)
                .unwrap()
                .data()
                .to_vec()
        })
        .collect();
    let mut land = 0;
    for (i, &v) in coarsest.iter().enumerate() {
        let rgb = [bands[0][i], bands[1][i], bands[2][i]];
        assert_eq!(rgb, tilecube::legend::rgb(v), "map pixel {i} of value {v}");
        land += usize::from(v != FILL);
    }
    assert!(land > 0, "the map shows data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_sharing_a_coarse_chunk_both_land_in_it() {
    // 00N_000E … 00N_070E lie in one ×32 chunk (8 tiles of 12.5 px at 100 px a chunk).
    let w = Work::with_overviews(Some(100));
    let names = tile_names(8);
    for (i, name) in names.iter().enumerate() {
        // Distinct classes, so a tile missing from the coarse chunk shows.
        w.two_class_tile(2000, name, 10 + 10 * i as u8, 100 + 10 * i as u8);
    }
    w.ok(&["init"]);
    let (first, second) = (names[..4].join(","), names[4..].join(","));

    // Writer A uploads its tiles' chunks, coarse chunk included, and is held before its
    // commit; writer B writes the other four, sharing that coarse chunk, and commits.
    let a = w.spawn_with(
        &["write", "--year", "2000", "--tiles", &first],
        &w.hold_env("chunks-uploaded#1"),
    );
    w.wait_held("chunks-uploaded", 1);
    w.ok(&["write", "--year", "2000", "--tiles", &second]);
    w.release("chunks-uploaded", 1);
    let a = a.wait_with_output().expect("writer A");
    assert!(
        a.status.success(),
        "writer A: {}",
        String::from_utf8_lossy(&a.stderr)
    );

    // A's commit was rebased onto B's: its parent is B's commit, which A's session never saw.
    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    let (a_commit, b_commit) = (&log[0], &log[1]);
    let tiles_of = |c: &serde_json::Value| -> Vec<String> {
        c["written"]["2000"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(tiles_of(a_commit), names[..4].to_vec(), "{log}");
    assert_eq!(tiles_of(b_commit), names[4..].to_vec(), "{log}");
    assert_eq!(
        a_commit["parent"], b_commit["id"],
        "A rebased onto B: {log}"
    );

    // The coarse chunk A committed was computed after the rebase: it holds B's tiles too.
    let cube = w.cube().await;
    let levels = assert_levels_follow_level_0(&cube, 2000).await;
    let (lw, _, x32) = &levels[4];
    for (i, _) in names.iter().enumerate() {
        let (row, col) = (3200 / 32 + 2, 7200 / 32 + i * 400 / 32 + 6);
        assert_eq!(x32[row * lw + col], 10 + 10 * i as u8, "tile {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overviews_command_gives_the_levels_a_write_with_them_gives() {
    let names = ["00N_000E", "00N_010E", "10N_010E", "50S_170E"];
    let without = Work::with_overviews(None);
    let with = Work::with_overviews(Some(100));
    for w in [&without, &with] {
        for name in names {
            w.tile(2005, name, Flaw::None);
        }
        w.list(2005, &names, "");
        w.ok(&["init"]);
        w.ok(&["write", "--all"]);
    }
    let before = without.cube().await;
    assert!(
        before.layout.levels().is_empty(),
        "written without overviews"
    );
    let coverage_before = before.coverage().await.unwrap();

    // The preset switches them on; `overviews` lays them out and computes them.
    let text = std::fs::read_to_string(without.preset_path()).unwrap();
    let text = text
        .replace("enabled = false", "enabled = true")
        .replace("coarsest_width = 2048", "coarsest_width = 100");
    std::fs::write(without.preset_path(), text).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&without.ok(&["overviews", "--json", "--batch", "3"])).unwrap();
    assert_eq!(report["laid_out"], true, "{report}");
    assert_eq!(report["tiles"], 4, "{report}");
    assert_eq!(report["commits"].as_array().unwrap().len(), 3, "{report}");

    let built = without.cube().await;
    let written = with.cube().await;
    assert_eq!(built.layout.levels(), written.layout.levels());
    let a = assert_levels_follow_level_0(&built, 2005).await;
    let b = assert_levels_follow_level_0(&written, 2005).await;
    assert!(
        a == b,
        "the levels built afterwards equal those written with the tiles"
    );
    // Level 0, coverage and the tiles' history are untouched.
    let coverage_after = built.coverage().await.unwrap();
    assert_eq!(coverage_before, coverage_after);
    for name in names {
        assert_eq!(
            common::cube_pixels(&built, 2005, t(name)).await,
            common::cube_pixels(&written, 2005, t(name)).await
        );
    }
    // Run again: nothing to lay out, the same levels.
    let again: serde_json::Value =
        serde_json::from_str(&without.ok(&["overviews", "--json"])).unwrap();
    assert_eq!(again["laid_out"], false, "{again}");
    let rebuilt = without.cube().await;
    assert!(assert_levels_follow_level_0(&rebuilt, 2005).await == b);

    // A preset that switches them off is refused with its reason.
    let off = Work::with_overviews(None);
    off.ok(&["init"]);
    let out = off.run(&["overviews"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("switches overviews off"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_shards_merged_in_amended_batches_leave_every_level_the_chain() {
    // Eight neighbours in one coarse chunk, staged by three shards, merged in batches each
    // amending the merge's commit: the coarse chunk holds every shard's tiles.
    let w = Work::with_overviews(Some(100));
    let names = tile_names(8);
    for (i, name) in names.iter().enumerate() {
        w.two_class_tile(2015, name, 10 + 10 * i as u8, 100 + 10 * i as u8);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    w.list(2015, &refs, "");
    w.ok(&["--spec-version", "2", "init"]);
    let (plan, stage) = w.staged_shards(3, &["--commit-every", "1"]);
    let out = w.ok(&[
        "merge",
        "--plan",
        &plan,
        "--stage",
        &stage,
        "--commit-refs",
        "40",
    ]);
    assert!(out.contains("1 new commit"), "{out}");
    let cube = w.cube().await;
    let levels = assert_levels_follow_level_0(&cube, 2015).await;
    let (lw, _, x32) = &levels[4];
    for i in 0..names.len() {
        let (row, col) = (3200 / 32 + 2, 7200 / 32 + i * 400 / 32 + 6);
        assert_eq!(x32[row * lw + col], 10 + 10 * i as u8, "tile {i}");
    }
}
