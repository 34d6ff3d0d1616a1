//! Repository faults, proven: tilecube writing to a real S3-compatible server (moto) through a
//! proxy that answers a seeded share of connections `503 SlowDown` or `500`, and resets others
//! in the middle of a request, an upload or a download, or stalls them (`tilecube::netfault`). Every tile lands
//! in one run, the exit status says so, and the cube reads back pixel for pixel from the server
//! itself; the fault counts are printed so a failing seed can be replayed.

mod common;

use common::s3::Moto;
use common::{Work, cube_pixels, gdal_pixels, t, tile_names};
use tilecube::cube::{Cube, RepoLocation, S3Settings};
use tilecube::netfault::{FaultProxy, Faults};

fn s3_cube(url: &str) -> RepoLocation {
    RepoLocation::parse(url, &S3Settings::default()).expect("s3 location")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A moto server with a `cubes` bucket, the fault proxy in front of it, and the environment
/// that sends every process's requests through the proxy.
async fn behind_proxy(faults: Faults) -> (Moto, FaultProxy, Vec<(&'static str, String)>) {
    let moto = Moto::start();
    moto.create_bucket("cubes");
    let upstream: std::net::SocketAddr = moto
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("moto address");
    let proxy = FaultProxy::start(upstream, faults).await.expect("proxy");
    let mut env = moto.env();
    for (k, v) in env.iter_mut() {
        if *k == "AWS_ENDPOINT_URL" {
            *v = proxy.url();
        }
    }
    (moto, proxy, env)
}

/// Read the cube back from the server itself, past the proxy: every tile of 2000 pixel for
/// pixel, and `verify` clean.
async fn read_back_from_the_server(moto: &Moto, w: &Work, repo: &str, names: &[String]) {
    moto.export();
    let cube = Cube::open(s3_cube(repo), "main").await.expect("open");
    for n in names {
        let local = tilecube::demo::tile_path(&w.source(), 2000, t(n));
        assert!(
            cube_pixels(&cube, 2000, t(n)).await == gdal_pixels(&local),
            "{n} differs"
        );
    }
    let verify = w.run_with(&["--repo", repo, "verify"], &moto.env());
    assert!(
        verify.status.success() && text(&verify).contains("ok"),
        "verify: {}",
        text(&verify)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_slowdowns_errors_and_resets_lands_every_tile_in_one_run() {
    let seed = std::env::var("TILECUBE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(27);
    let (moto, proxy, env) = behind_proxy(Faults {
        slow_down: 0.07,
        server_error: 0.05,
        reset: 0.07,
        stall: 0.03,
        stall_for: std::time::Duration::from_secs(2),
        seed,
        ..Faults::default()
    })
    .await;
    let w = Work::new();
    let names = tile_names(12);
    w.listed_tiles(2000, &names);
    let repo = "s3://cubes/faults";
    let init = w.run_with(&["--repo", repo, "init"], &env);
    assert!(init.status.success(), "init: {}", text(&init));
    let write = w.run_with(
        &["--repo", repo, "write", "--all", "--year", "2000", "--json"],
        &env,
    );
    let counts = proxy.counts();
    eprintln!("seed {seed}: {counts}");
    assert!(
        write.status.success(),
        "write (seed {seed}; {counts}): {}",
        text(&write)
    );
    let report: serde_json::Value = serde_json::from_slice(&write.stdout).expect("report");
    assert_eq!(
        report["written"]["2000"].as_object().map(|o| o.len()),
        Some(12),
        "{report}"
    );
    // Faults happened, of every kind asked for.
    assert!(
        counts.slow_down > 0 && counts.server_error > 0 && counts.reset > 0 && counts.stall > 0,
        "{counts}"
    );

    read_back_from_the_server(&moto, &w, repo, &names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_merge_through_the_faults_lands_its_one_commit() {
    let (moto, proxy, env) = behind_proxy(Faults {
        slow_down: 0.07,
        server_error: 0.05,
        reset: 0.07,
        seed: 4,
        ..Faults::default()
    })
    .await;
    let w = Work::new();
    let names = tile_names(6);
    w.listed_tiles(2000, &names);
    let repo = "s3://cubes/merged";
    let run = |args: &[&str]| {
        let o = w.run_with(args, &env);
        assert!(
            o.status.success(),
            "{args:?} ({}): {}",
            proxy.counts(),
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    run(&["--repo", repo, "--spec-version", "2", "init"]);
    let plan = w.dir.path().join("plan").display().to_string();
    let stage = w.dir.path().join("stage").display().to_string();
    run(&[
        "--repo", repo, "plan", "--all", "--shards", "3", "--out", &plan,
    ]);
    for shard in ["0", "1", "2"] {
        run(&[
            "--repo", repo, "write", "--plan", &plan, "--shard", shard, "--stage", &stage,
        ]);
    }
    let commits = |w: &Work, env: &[(&str, String)]| {
        let o = w.run_with(&["--repo", repo, "log", "--json"], env);
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0)
    };
    let before = commits(&w, &moto.env());
    let out = run(&[
        "--repo",
        repo,
        "merge",
        "--plan",
        &plan,
        "--stage",
        &stage,
        "--commit-refs",
        "32",
    ]);
    eprintln!("merge through the faults: {}", proxy.counts());
    assert_eq!(commits(&w, &moto.env()), before + 1, "one commit: {out}");
    assert!(proxy.counts().slow_down + proxy.counts().server_error + proxy.counts().reset > 0);
    read_back_from_the_server(&moto, &w, repo, &names).await;
}
