//! Repository faults, proven: tilecube writing to a real S3-compatible server (moto) through a
//! proxy that answers a seeded share of connections `503 SlowDown` or `500`, and resets others
//! in the middle of a request, an upload or a download, or stalls them (`tilecube::netfault`). Every tile lands
//! in one run, the exit status says so, and the cube reads back pixel for pixel from the server
//! itself; the fault counts are printed so a failing seed can be replayed.

use crate::common;

use common::s3::Moto;
use common::{Work, cube_pixels, gdal_pixels, t, tile_names};
use tilecube::cube::{Cube, RepoLocation, TileState};
use tilecube::netfault::{FaultProxy, Faults};
use tilecube::storage_settings::StorageSettings;

fn s3_cube(url: &str) -> RepoLocation {
    RepoLocation::parse(url, &StorageSettings::from_env().expect("storage settings"))
        .expect("s3 location")
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

/// Whether `path` appears within two minutes.
async fn appears(path: &std::path::Path) -> bool {
    for _ in 0..1200 {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// A workspace of `n` tiles of 2000 whose config gives one try per request to the
/// repository and one attempt per tile: any fault outlives the retries.
fn one_try(n: usize) -> (Work, Vec<String>) {
    let w = Work::new();
    let names = tile_names(n);
    w.listed_tiles(2000, &names);
    let config = w.dir.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("retries = 1\n\n[storage_retries]\ntries = 1\n");
    std::fs::write(&config, text).expect("config");
    (w, names)
}

/// A `write` of every tile of 2000 through the proxy, held at each commit step of `holds`
/// (`TILECUBE_TEST_HOLD_AT`).
fn held_write(
    w: &Work,
    env: &[(&'static str, String)],
    repo: &str,
    extra: &[&str],
    holds: &str,
) -> std::process::Child {
    let mut args = vec!["--repo", repo, "write", "--all", "--year", "2000", "--json"];
    args.extend_from_slice(extra);
    let env: Vec<_> = env.iter().cloned().chain(w.hold_env(holds)).collect();
    w.spawn_with(&args, &env)
}

/// Wait until the held write reaches `step-N`, do `act`, release it.
async fn at_hold(w: &Work, step_n: &str, act: impl FnOnce()) {
    let release = w.dir.path().join(format!("hold-{step_n}"));
    let reached = w.dir.path().join(format!("hold-{step_n}.reached"));
    assert!(appears(&reached).await, "the writer never reached {step_n}");
    act();
    std::fs::write(&release, "go").expect("release");
}

async fn finished(child: std::process::Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("write")
}

/// The tiles of 2000 a write's JSON report says were written, and those it says failed.
fn written_and_failed(write: &std::process::Output) -> (Vec<String>, Vec<String>) {
    let report: serde_json::Value = serde_json::from_slice(&write.stdout)
        .unwrap_or_else(|e| panic!("report ({e}): {}", text(write)));
    let written = report["written"]["2000"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let failed = report["failed"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["tile"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (written, failed)
}

/// The tiles of 2000 in the branch head, read past the proxy, sorted.
async fn committed_tiles(moto: &Moto, repo: &str) -> Vec<String> {
    moto.export();
    let cube = Cube::open(s3_cube(repo), "main").await.expect("open");
    let head = cube.head().await.expect("head");
    let coverage = cube.coverage_of(&head).await.expect("coverage");
    let mut tiles: Vec<String> = cube
        .layout
        .grid()
        .tiles()
        .filter(|t| matches!(coverage.state(2000, *t), Some(TileState::Written { .. })))
        .map(|t| t.to_string())
        .collect();
    tiles.sort();
    tiles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_commit_failing_for_good_keeps_its_tiles_for_the_next_commit() {
    let (moto, proxy, env) = behind_proxy(Faults::default()).await;
    let (w, names) = one_try(12);
    let repo = "s3://cubes/outage";
    let init = w.run_with(&["--repo", repo, "init"], &moto.env());
    assert!(init.status.success(), "init: {}", text(&init));

    // The repository fails every request from the second checkpoint commit until the
    // commit after it.
    let child = held_write(
        &w,
        &env,
        repo,
        &["--commit-every", "4", "--threads", "1"],
        "chunks-uploaded#2,chunks-uploaded#3",
    );
    at_hold(&w, "chunks-uploaded-2", || proxy.outage(true)).await;
    at_hold(&w, "chunks-uploaded-3", || proxy.outage(false)).await;
    let write = finished(child).await;
    let out = text(&write);
    eprintln!("outage: {}\n{out}", proxy.counts());

    // The commit met the outage and said why; its tiles waited for the next commit.
    assert!(
        out.contains("a checkpoint commit failed (committing: ")
            && out.contains("SlowDown")
            && out.contains("stay in the session for the next commit"),
        "{out}"
    );
    let (written, failed) = written_and_failed(&write);
    // Every tile accounted for; the exit status says whether one failed, each one named.
    assert_eq!(written.len() + failed.len(), 12, "{out}");
    assert_eq!(write.status.success(), failed.is_empty(), "{out}");
    for f in &failed {
        assert!(
            out.contains(&format!("2000/{f}: ")),
            "failed tile {f} not named: {out}"
        );
    }
    // What the run reported written is what the branch holds.
    let mut reported = written.clone();
    reported.sort();
    assert_eq!(committed_tiles(&moto, repo).await, reported);
    if !failed.is_empty() {
        let again = w.run_with(&["--repo", repo, "write", "--failed"], &moto.env());
        assert!(again.status.success(), "write --failed: {}", text(&again));
    }
    read_back_from_the_server(&moto, &w, repo, &names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_commit_failing_for_good_fails_its_tiles_for_write_failed() {
    let (moto, proxy, env) = behind_proxy(Faults::default()).await;
    let (w, names) = one_try(4);
    let repo = "s3://cubes/final";
    let init = w.run_with(&["--repo", repo, "init"], &moto.env());
    assert!(init.status.success(), "init: {}", text(&init));

    // Every tile written; the repository fails from the one commit to the run's end.
    let child = held_write(&w, &env, repo, &[], "chunks-uploaded#1");
    at_hold(&w, "chunks-uploaded-1", || proxy.outage(true)).await;
    let write = finished(child).await;
    proxy.outage(false);
    let out = text(&write);
    eprintln!("outage: {}\n{out}", proxy.counts());

    // Exit 1, every tile a failure named with the commit's error, none in the branch.
    assert_eq!(write.status.code(), Some(1), "{out}");
    let (written, mut failed) = written_and_failed(&write);
    assert!(written.is_empty(), "{out}");
    failed.sort();
    assert_eq!(failed, names, "{out}");
    for n in &names {
        assert!(
            out.contains(&format!(
                "2000/{n}: FAILED: written, but its commit failed: committing: "
            )),
            "{n} not named with the commit's error: {out}"
        );
    }
    assert!(committed_tiles(&moto, repo).await.is_empty());

    // The journal holds them: `write --failed` lands all four.
    let again = w.run_with(
        &["--repo", repo, "write", "--failed", "--json"],
        &moto.env(),
    );
    assert!(again.status.success(), "write --failed: {}", text(&again));
    let (written, failed) = written_and_failed(&again);
    assert_eq!((written.len(), failed.len()), (4, 0), "{}", text(&again));
    read_back_from_the_server(&moto, &w, repo, &names).await;
}
