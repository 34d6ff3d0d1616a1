//! Coverage at scale: what a snapshot holds is read from its own metadata (one manifest per
//! tile and year, with its chunk count), equals the chunk-listing cross-check, is cached by
//! snapshot id, and costs a bounded number of requests on remote storage whatever the
//! number of tiles; long writes checkpoint by chunk references.

use crate::common;

use std::time::Duration;

use common::s3::Moto;
use common::{Work, t, tile_names};
use icechunk::repository::VersionInfo;
use tilecube::cube::{ChunkCounts, Cube, RepoLocation, TileState};
use tilecube::demo::Flaw;
use tilecube::netem::LatencyProxy;

/// Truncate a tile's file to half its length: it fails while its strips are read.
fn truncate(path: &std::path::Path) {
    let len = std::fs::metadata(path).expect("tile").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
}

/// For every snapshot of the branch: the chunk counts from the manifest list equal those
/// from listing every chunk coordinate.
async fn metadata_equals_listing(cube: &Cube) -> usize {
    let history = cube.history().await.expect("history");
    // From the head down to the layout commit (before it there is no data variable).
    let laid_out = history
        .iter()
        .position(|c| c.init)
        .expect("a layout commit")
        + 1;
    for c in &history[..laid_out] {
        let id = icechunk::format::SnapshotId::try_from(c.id.as_str()).expect("id");
        let from_metadata: ChunkCounts = cube
            .manifest_chunk_counts(&id)
            .await
            .expect("manifest counts")
            .expect("one manifest per tile and year");
        let listed = cube
            .chunks_present(&VersionInfo::SnapshotId(id))
            .await
            .expect("listing");
        assert_eq!(from_metadata, listed, "snapshot {} ({})", c.id, c.message);
    }
    laid_out
}

async fn coverage_matches_listing(spec: &str) {
    let w = Work::new();
    // This process's cube handles keep their cache where the binary's runs keep theirs.
    // SAFETY: set before this test starts any thread that reads the environment.
    unsafe { std::env::set_var("TILECUBE_DATA_DIR", w.dir.path().join("data")) };
    let good = ["00N_000E", "00N_010E", "10N_000E"];
    for name in good {
        w.tile(2000, name, Flaw::None);
        w.tile(2005, name, Flaw::None);
    }
    w.tile(2000, "10N_010E", Flaw::AllFill);
    let bad = w.tile(2000, "20N_000E", Flaw::None);
    truncate(&bad);
    let mut listed = good.to_vec();
    listed.extend(["10N_010E", "20N_000E"]);
    w.list(2000, &listed, "");
    w.list(2005, &good, "");

    w.ok(&["init", "--spec-version", spec]);
    // Written tiles, an all-fill tile and a tile that fails halfway, checkpointed by count.
    let out = w.run(&["write", "--all", "--year", "2000", "--commit-every", "2"]);
    assert_eq!(out.status.code(), Some(1), "the truncated tile fails");
    // Another year, then a rewrite of a tile with other pixels.
    w.ok(&["write", "--all", "--year", "2005"]);
    w.two_class_tile(2000, "00N_010E", 30, 50);
    w.ok(&["write", "--tiles", "00N_010E", "--year", "2000"]);

    let cube = w.cube().await;
    let snapshots = metadata_equals_listing(&cube).await;
    // The layout commit, two checkpoints of 2000's four good tiles, 2005, the rewrite.
    assert_eq!(snapshots, 5, "snapshots checked");

    let cov = cube.coverage().await.expect("coverage");
    for name in good {
        for year in [2000, 2005] {
            assert!(
                matches!(
                    cov.state(year, t(name)),
                    Some(TileState::Written { chunks: 16, .. })
                ),
                "{year}/{name}: {:?}",
                cov.state(year, t(name))
            );
        }
    }
    assert!(
        matches!(
            cov.state(2000, t("10N_010E")),
            Some(TileState::Written { chunks: 0, .. })
        ),
        "the all-fill tile is written with no chunk"
    );
    assert_eq!(cov.state(2000, t("20N_000E")), None, "the failed tile");
    // The rewritten tile was last written by the head.
    let head = cube.head().await.expect("head").to_string();
    assert!(
        matches!(cov.state(2000, t("00N_010E")), Some(TileState::Written { snapshot, .. }) if *snapshot == head)
    );

    // Tampered behind tilecube's back: the metadata still agrees with the listing, and the
    // two tiles show as they should.
    common::tamper(&w, 2005, "00N_000E", "30N_000E").await;
    let cube = w.cube().await;
    metadata_equals_listing(&cube).await;
    let cov = cube.coverage().await.expect("coverage");
    assert!(matches!(
        cov.state(2005, t("00N_000E")),
        Some(TileState::Incomplete {
            recorded: 16,
            present: 15,
            ..
        })
    ));
    assert_eq!(
        cov.state(2005, t("30N_000E")),
        Some(&TileState::Unrecorded { present: 1 })
    );

    // What was computed is cached by snapshot id, and a fresh handle gives the same answer
    // from the cache; with the cache emptied, from the repository again.
    let cache = w.dir.path().join("data").join("cache").join("coverage");
    let entries = std::fs::read_dir(&cache)
        .expect("cache dir")
        .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("repo dir"))
        .count();
    // The two heads whose coverage was asked for: before and after the tampering.
    assert_eq!(entries, 2, "cached snapshots");
    let again = w.cube().await.coverage().await.expect("coverage");
    assert_eq!(again, cov);
    std::fs::remove_dir_all(&cache).expect("empty the cache");
    let fresh = w.cube().await.coverage().await.expect("coverage");
    assert_eq!(fresh, cov);
}

#[tokio::test(flavor = "multi_thread")]
async fn coverage_from_snapshot_metadata_equals_the_chunk_listing_spec1() {
    coverage_matches_listing("1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn coverage_from_snapshot_metadata_equals_the_chunk_listing_spec2() {
    coverage_matches_listing("2").await;
}

/// A cube of `n` tiles of 2000 on the test S3 server, written in one commit, reached
/// through a latency proxy; returns the proxy and the repository URL.
async fn s3_cube(moto: &Moto, w: &Work, name: &str, n: usize) -> String {
    let names = tile_names(n);
    w.listed_tiles(2000, &names);
    let repo = format!("s3://cubes/{name}");
    let env = moto.env();
    let run = |args: &[&str]| {
        let mut all = vec!["--repo", repo.as_str(), "--spec-version", "2"];
        all.extend_from_slice(args);
        let out = w.run_with(&all, &env);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["init"]);
    run(&["write", "--all", "--year", "2000", "--threads", "1"]);
    repo
}

/// Requests `tilecube status` makes through the proxy, with an empty cache and then with
/// the head's coverage cached.
fn status_requests(w: &Work, proxy: &LatencyProxy, moto: &Moto, repo: &str) -> (u64, u64) {
    let mut env = moto.env();
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", proxy.url()));
    let cache = w.dir.path().join("data").join("cache");
    let _ = std::fs::remove_dir_all(&cache);
    let mut counts = vec![];
    for _ in 0..2 {
        proxy.reset();
        let out = w.run_with(&["--repo", repo, "status", "--json"], &env);
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(proxy.unparsed(), 0, "every request was counted");
        counts.push(proxy.requests());
    }
    (counts[0], counts[1])
}

#[tokio::test(flavor = "multi_thread")]
async fn status_makes_a_bounded_number_of_requests_whatever_the_tiles() {
    let moto = Moto::start();
    moto.create_bucket("cubes");
    let upstream = moto
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("moto address");
    let proxy = LatencyProxy::start(upstream, Duration::from_millis(20))
        .await
        .expect("proxy");

    let small = Work::new();
    let repo_small = s3_cube(&moto, &small, "small", 2).await;
    let large = Work::new();
    let repo_large = s3_cube(&moto, &large, "large", 24).await;

    let (cold_small, warm_small) = status_requests(&small, &proxy, &moto, &repo_small);
    let (cold_large, warm_large) = status_requests(&large, &proxy, &moto, &repo_large);
    eprintln!(
        "status requests: 2 tiles {cold_small} cold / {warm_small} cached; \
         24 tiles {cold_large} cold / {warm_large} cached"
    );
    // Twelve times the tiles (and chunks, and manifests), the same requests.
    assert_eq!(cold_small, cold_large, "cold status follows the tiles");
    assert_eq!(warm_small, warm_large, "cached status follows the tiles");
    assert!(
        warm_large < cold_large,
        "a cached coverage saves requests ({warm_large} vs {cold_large})"
    );
    // As measured for this layout and Icechunk version: any change in what status reads
    // shows here (the sources the tiles were read from come with the coverage, so comparing
    // them with the source reads no history of its own, and the manifest objects are not
    // listed: `status --deep` and `verify` do that).
    assert_eq!((cold_large, warm_large), (9, 8), "requests for status");

    // Coverage of an older snapshot, and a diff, through the proxy: once read, a snapshot
    // costs no request at all.
    proxy.reset();
    let mut env = moto.env();
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", proxy.url()));
    let cache = tempfile::tempdir().expect("cache dir");
    for (k, v) in &env {
        // SAFETY: set before this test reads the environment from other threads.
        unsafe { std::env::set_var(k, v) };
    }
    // SAFETY: as above.
    unsafe { std::env::set_var("TILECUBE_CACHE_DIR", cache.path()) };
    let cube = Cube::open(
        RepoLocation::parse(
            &repo_large,
            &tilecube::storage_settings::StorageSettings::from_env().expect("storage settings"),
        )
        .expect("location"),
        "main",
    )
    .await
    .expect("open")
    .with_coverage_cache(cache.path().to_path_buf());
    let history = cube.history().await.expect("history");
    let (newest, oldest) = (&history[0].id, &history[history.len() - 1].id);
    let first = cube.diff(oldest, newest).await.expect("diff");
    assert_eq!(
        first.len(),
        24,
        "every tile changed since the layout commit"
    );
    let before = proxy.requests();
    let second = cube.diff(oldest, newest).await.expect("diff again");
    assert_eq!(second, first);
    assert_eq!(
        proxy.requests(),
        before,
        "a diff of snapshots already read makes no request"
    );
}

#[test]
fn a_long_write_with_a_low_ref_limit_checkpoints_by_references() {
    let w = Work::new();
    let names = tile_names(7);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    // 22 chunk references a tile (16 of level 0, 4 + 1 + 1 of the overview levels written
    // with it): a limit of 40 references commits after every second tile.
    let out = w.ok(&[
        "write",
        "--all",
        "--year",
        "2000",
        "--threads",
        "1",
        "--commit-refs",
        "40",
    ]);
    let commits = w.written_by_commit(2000);
    let sizes: Vec<usize> = commits.iter().rev().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 2, 2, 1], "{out}");
    // Each commit records exactly its tiles: together every tile, each once.
    let mut all: Vec<String> = commits.into_iter().flatten().collect();
    all.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(all, expected);
}
