//! Remote repositories and sources on a real S3-compatible server (moto on loopback):
//! init → write → read back with both the tiles and the cube on S3, a spec-version-1 cube
//! read from Python, concurrent commits rebased, and the secret key never printed.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use common::s3::{Moto, SECRET_KEY};
use common::{Work, cube_pixels, gdal_pixels, t};
use tilecube::cube::{Cube, RepoLocation, WriteSession};
use tilecube::demo::Flaw;
use tilecube::ingest::{self, EventSink, IngestOptions, Selection};
use tilecube::source::Source;
use tilecube::storage_settings::StorageSettings;

fn check_no_secret(what: &str, out: &std::process::Output) {
    for text in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains(SECRET_KEY),
            "{what} printed the secret key:\n{text}"
        );
    }
}

/// `tilecube init` of a cube at an s3:// URL on the test's server; it must succeed.
fn init_on_s3(w: &Work, moto: &Moto, repo: &str) {
    let out = w.run_with(&["--repo", repo, "init"], &moto.env());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s3_cube(url: &str) -> RepoLocation {
    RepoLocation::parse(url, &StorageSettings::from_env().expect("storage settings"))
        .expect("s3 location")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cube_and_tiles_on_s3_round_trip_and_never_print_the_secret() {
    let moto = Moto::start();
    moto.export();
    moto.create_bucket("tiles");
    moto.create_bucket("cubes");
    let w = Work::new();
    let names = ["00N_000E", "10N_010E", "50S_170E"];
    for n in names {
        w.tile(2010, n, Flaw::None);
    }
    w.list(2010, &names, "");
    moto.upload_dir(&w.source(), "tiles", "glad/v2").await;
    let env = moto.env();
    let repo = "s3://cubes/glad";
    let source = "s3://tiles/glad/v2";
    let args = |extra: &[&'static str]| {
        let mut a = vec!["--repo", repo, "--source", source];
        a.extend_from_slice(extra);
        a
    };
    let mut outputs = vec![];
    for cmd in [
        &["init"][..],
        &["write", "--all", "--year", "2010", "--json"],
        &["status", "--json"],
        &["log", "--json"],
        &["log"],
    ] {
        let out = w.run_with(&args(cmd), &env);
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        check_no_secret(&format!("{cmd:?}"), &out);
        outputs.push(out);
    }
    let report: serde_json::Value = serde_json::from_slice(&outputs[1].stdout).unwrap();
    assert_eq!(
        report["written"]["2010"].as_object().unwrap().len(),
        3,
        "{report}"
    );
    let status: serde_json::Value = serde_json::from_slice(&outputs[2].stdout).unwrap();
    assert_eq!(status["years"]["2010"]["written"], 3);
    assert_eq!(status["years"]["2010"]["listed"], 3);

    // Failures, on S3 too, name the tile and print no secret.
    let out = w.run_with(
        &args(&["write", "--year", "2010", "--tiles", "20N_020E"]),
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2010/20N_020E"));
    check_no_secret("failing write", &out);
    // A year whose list is not in the bucket: named, and the exit status says so.
    let out = w.run_with(&args(&["write", "--all", "--year", "2020"]), &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("s3://tiles/glad/v2/2020.txt"), "{stderr}");
    check_no_secret("missing list", &out);
    let out = w.run_with(&["--repo", "s3://no-such-bucket/x", "status"], &env);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a repository error exits with 2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("s3://no-such-bucket/x"),
        "the error names the repository"
    );
    check_no_secret("status on a missing bucket", &out);

    let cube = Cube::open(s3_cube(repo), "main").await.expect("open on s3");
    for n in names {
        let local = tilecube::demo::tile_path(&w.source(), 2010, t(n));
        assert!(
            cube_pixels(&cube, 2010, t(n)).await == gdal_pixels(&local),
            "{n}"
        );
    }
}

#[test]
fn spec_version_1_cube_on_s3_reads_in_python() {
    let moto = Moto::start();
    moto.create_bucket("cubes");
    let w = Work::new();
    w.tile(2000, "70N_180W", Flaw::None);
    w.list(2000, &["70N_180W"], "");
    let env = moto.env();
    let repo = "s3://cubes/v1cube";
    for cmd in [&["init", "--spec-version", "1"][..], &["write", "--all"]] {
        let mut a = vec!["--repo", repo];
        a.extend_from_slice(cmd);
        let out = w.run_with(&a, &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let expect_dir = w.dir.path().join("expect");
    std::fs::create_dir_all(&expect_dir).unwrap();
    let path = tilecube::demo::tile_path(&w.source(), 2000, t("70N_180W"));
    std::fs::write(expect_dir.join("t.raw"), gdal_pixels(&path)).unwrap();
    let (h, wd) = w.grid.shape();
    let p = w.grid.pixel_size();
    let expect = serde_json::json!({
        "shape": [5, h, wd], "years": [2000, 2005, 2010, 2015, 2020], "pixel_size": p,
        "geotransform": format!("-180.0 {p} 0.0 80.0 0.0 -{p}"),
        "tiles": [{"name": "2000/70N_180W", "file": "t.raw", "size": common::TILE,
                   "year_index": 0, "y0": common::TILE, "x0": 0}],
        "unwritten": [{"year_index": 1, "y0": common::TILE, "x0": 0, "size": common::TILE}],
    });
    std::fs::write(expect_dir.join("expect.json"), expect.to_string()).unwrap();
    let stdout = common::python_readback(repo, &expect_dir, &env);
    assert!(
        stdout.contains("readback ok: 1 tiles, 1 unwritten regions"),
        "{stdout}"
    );
}

/// Many writers committing at the same moment on S3: the storage's conditional writes reject
/// every stale branch update, Icechunk rebases it, and no commit is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_on_s3_all_land() {
    let moto = Moto::start();
    moto.export();
    moto.create_bucket("cubes");
    let w = Work::new();
    let names = common::tile_names(12);
    w.listed_tiles(2005, &names);
    let repo = "s3://cubes/racing";
    init_on_s3(&w, &moto, repo);
    let cube = common::race_writers(&w, s3_cube(repo), 2005, &names, 4).await;
    let history = cube.history().await.unwrap();
    assert_eq!(
        history.iter().filter(|c| c.tile_count() == 1).count(),
        12,
        "every one-tile commit is in the branch's history"
    );
    let coverage = cube.coverage().await.unwrap();
    assert_eq!(coverage.written_count(2005), 12);
    for n in &names {
        let path = tilecube::demo::tile_path(&w.source(), 2005, t(n));
        assert!(
            cube_pixels(&cube, 2005, t(n)).await == gdal_pixels(&path),
            "{n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_on_s3_are_rebased_and_lose_no_tile() {
    let moto = Moto::start();
    moto.export();
    moto.create_bucket("cubes");
    let w = Work::new();
    let (a, b) = ("00N_000E", "40N_100W");
    w.tile(2015, a, Flaw::None);
    w.tile(2015, b, Flaw::None);
    w.list(2015, &[a, b], "");
    let repo = "s3://cubes/race";
    init_on_s3(&w, &moto, repo);

    // Two writers open the branch at the same snapshot and write different tiles.
    let cube = Cube::open(s3_cube(repo), "main").await.unwrap();
    let source = Source::new(
        w.source().to_str().unwrap(),
        &tilecube::preset::Preset::glad().source,
    )
    .unwrap();
    let options = IngestOptions {
        commit: false,
        threads: 2,
        ..IngestOptions::default()
    };
    let mut sessions = vec![];
    for tile in [a, b] {
        let session = WriteSession::open(&cube).await.unwrap();
        let plan = ingest::plan(
            &cube,
            &source,
            &[2015],
            &Selection::Tiles(vec![t(tile)]),
            None,
        )
        .await
        .unwrap();
        let report = ingest::ingest_into(
            &session,
            plan.jobs,
            &options,
            EventSink::none(),
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .unwrap();
        assert_eq!(report.pending[&2015].len(), 1);
        sessions.push((session, report.pending));
    }
    let base = cube.head().await.unwrap().to_string();
    let first = sessions[0]
        .0
        .commit(None)
        .await
        .unwrap()
        .expect("a tile to commit")
        .snapshot;
    // The second commit finds the branch moved on: the conflict is detected and rebased.
    let second = sessions[1]
        .0
        .commit(None)
        .await
        .unwrap()
        .expect("a tile to commit")
        .snapshot;
    let history = cube.history().await.unwrap();
    assert_eq!(history[0].id, second);
    assert_eq!(
        history[0].parent.as_deref(),
        Some(first.as_str()),
        "rebased onto the first"
    );
    assert_eq!(history[1].id, first);
    assert_eq!(history[1].parent.as_deref(), Some(base.as_str()));
    let coverage = cube.coverage().await.unwrap();
    assert!(coverage.is_written(2015, t(a)) && coverage.is_written(2015, t(b)));
    for n in [a, b] {
        let local = tilecube::demo::tile_path(&w.source(), 2015, t(n));
        assert!(
            cube_pixels(&cube, 2015, t(n)).await == gdal_pixels(&local),
            "{n}"
        );
    }
}

#[test]
fn the_s3_flags_reach_a_server_the_environment_does_not_name() {
    // Credentials only in the environment: the endpoint, region and addressing come from
    // the flags alone.
    let moto = Moto::start();
    moto.create_bucket("cubes");
    let w = Work::new();
    w.tile(2000, "00N_000E", Flaw::None);
    w.list(2000, &["00N_000E"], "");
    let config = w.dir.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[storage_retries]\ntries = 1\n");
    std::fs::write(&config, text).expect("config");
    let env: Vec<(&str, String)> = moto
        .env()
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "AWS_ENDPOINT_URL" | "AWS_REGION"))
        .collect();
    let repo = "s3://cubes/flags";
    let flags = [
        "--repo",
        repo,
        "--s3-endpoint",
        moto.endpoint.as_str(),
        "--s3-region",
        "us-east-1",
        "--s3-path-style",
        "true",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = flags.iter().chain(extra).copied().collect();
        let out = w.run_with(&args, &env);
        check_no_secret(&format!("{extra:?}"), &out);
        out
    };
    for step in [
        &["init"][..],
        &["write", "--year", "2000", "--tiles", "00N_000E"],
    ] {
        let out = run(step);
        assert!(
            out.status.success(),
            "{step:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status = String::from_utf8_lossy(&run(&["status"]).stdout).into_owned();
    assert!(status.contains("1 written"), "{status}");
    // Unsigned requests: the server, which wants them signed, refuses them.
    let out = run(&["--s3-anonymous", "status"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unsigned read was taken: {said}");
    assert!(said.contains("s3://cubes/flags"), "{said}");
}
