//! Scale-out end to end: plans, shards written as array tasks of a real one-node Slurm
//! cluster (`.ci/slurm`), checkpoint and stage modes, a dependent merge job, a task
//! cancelled mid-write and re-submitted, plans made while another writer commits, and no
//! secret in any plan, record, stage or output.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::nginx::slow_source;
use common::s3::{Moto, SECRET_KEY};
use common::{Work, cube_pixels, slurm, t, tile_names};
use tilecube::cube::{Cube, RepoLocation};

const BIN: &str = env!("CARGO_BIN_EXE_tilecube");

/// A deploy recipe of `assets/deploy/`.
fn recipe(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/deploy")
        .join(path)
}

/// The environment the Slurm recipes take: the binary, its global flags (a config file that
/// adds `extra` lines to the workspace's), the plan and, in stage mode, the stage.
fn recipe_env(
    w: &Work,
    extra: &str,
    plan: &str,
    stage: Option<&str>,
) -> Vec<(&'static str, String)> {
    let config = w.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config") + extra;
    let shard_config = w.dir.path().join("shard-config.toml");
    std::fs::write(&shard_config, text).expect("shard config");
    let mut env = vec![
        ("TILECUBE", BIN.to_string()),
        (
            "TILECUBE_ARGS",
            format!("--config {}", shard_config.display()),
        ),
        ("PLAN", plan.to_string()),
        (
            "TILECUBE_DATA_DIR",
            w.dir.path().join("data").display().to_string(),
        ),
    ];
    if let Some(s) = stage {
        env.push(("STAGE", s.to_string()));
    }
    env
}

/// The source: `n` good tiles in each of 2000 and 2005, listed.
fn source(w: &Work, n: usize) -> Vec<String> {
    let names = tile_names(n);
    w.listed_tiles(2000, &names);
    w.listed_tiles(2005, &names);
    names
}

/// A reference cube written by one process from the local source: the truth to compare with.
async fn reference(w: &Work) -> Cube {
    let repo = w.dir.path().join("reference");
    let r = repo.display().to_string();
    w.ok(&["--repo", &r, "init"]);
    w.ok(&["--repo", &r, "write", "--all", "--threads", "2"]);
    Cube::open(RepoLocation::Local(repo), "main")
        .await
        .expect("reference")
}

/// Every (year, tile) recorded by the branch's commits, and how many commits recorded it.
fn records(w: &Work, repo: &str, env: &[(&str, String)]) -> BTreeMap<String, usize> {
    let out = w.run_with(&["--repo", repo, "log", "--json"], env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).expect("log JSON");
    let mut seen = BTreeMap::new();
    for c in log.as_array().expect("commits") {
        if let Some(years) = c["written"].as_object() {
            for (y, tiles) in years {
                for tile in tiles.as_object().expect("tiles").keys() {
                    *seen.entry(format!("{y}/{tile}")).or_default() += 1;
                }
            }
        }
    }
    seen
}

/// Every tile of both years, once.
fn all_once(names: &[String]) -> BTreeMap<String, usize> {
    [2000, 2005]
        .iter()
        .flat_map(|y| names.iter().map(move |n| (format!("{y}/{n}"), 1)))
        .collect()
}

async fn assert_same_pixels(cube: &Cube, truth: &Cube, names: &[String]) {
    for y in [2000, 2005] {
        for n in names {
            let (got, want) = (
                cube_pixels(cube, y, t(n)).await,
                cube_pixels(truth, y, t(n)).await,
            );
            assert!(
                got == want,
                "{y}/{n}: the cube differs from one process's write"
            );
        }
    }
}

/// A shard's progress record, once its task wrote one.
fn record(plan: &Path, shard: usize) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(plan.join(format!("shards/{shard:04}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Wait until shard `shard` has written at least one tile and is still running.
fn wait_mid_write(plan: &Path, shard: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(r) = record(plan, shard)
            && r["written"].as_u64().unwrap_or(0) >= 1
        {
            assert_eq!(
                r["state"], "running",
                "shard {shard} ended before the cancel: {r}"
            );
            return;
        }
        assert!(Instant::now() < deadline, "shard {shard} never got going");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Submit the shard recipe as an array of 4 tasks (one CPU each on this small node,
/// committing or staging after every tile), cancel task 2 once it wrote a tile, and wait for
/// the array to end. Returns the recipe, its environment and the log pattern, to re-submit.
fn array_with_shard_2_cancelled(
    w: &Work,
    plan: &Path,
    stage: Option<&str>,
) -> (std::path::PathBuf, Vec<(&'static str, String)>, String) {
    let job = recipe("slurm/shard.sbatch");
    let p = plan.display().to_string();
    let renv = recipe_env(w, "commit_every = 1\n", &p, stage);
    let logs = format!("{}/slurm-%A_%a.out", w.dir.path().display());
    let id = slurm::submit_env(
        &job,
        &["--array=0-3", "--cpus-per-task=1", "-o", &logs],
        &renv,
    );
    wait_mid_write(plan, 2);
    slurm::cancel(&format!("{id}_2"));
    slurm::wait(&id);
    (job, renv, logs)
}

fn env(w: &Work) -> Vec<(&'static str, String)> {
    vec![(
        "TILECUBE_DATA_DIR",
        w.dir.path().join("data").display().to_string(),
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slurm_array_in_checkpoint_mode_equals_one_process_even_with_a_task_cancelled() {
    slurm::require();
    let w = Work::new();
    let names = source(&w, 8);
    let truth = reference(&w).await;
    let (_nginx, _proxy, url) = slow_source(&w, Duration::from_millis(250)).await;
    w.ok(&["init"]);
    let plan = w.dir.path().join("plan");
    let p = plan.display().to_string();
    let out = w.ok(&[
        "--source", &url, "plan", "--all", "--shards", "4", "--out", &p,
    ]);
    assert!(out.contains("16 tiles in 4 shards of 4–4"), "{out}");

    // The deploy recipe, as a user submits it.
    let (job, renv, logs) = array_with_shard_2_cancelled(&w, &plan, None);
    let r2 = record(&plan, 2).expect("shard 2's record");
    assert_ne!(r2["state"], "done", "shard 2 was cancelled mid-write: {r2}");
    let landed_before = r2["landed"].as_u64().unwrap_or(0);
    assert!(landed_before < 4, "{r2}");
    for s in [0, 1, 3] {
        assert_eq!(
            record(&plan, s).expect("record")["state"],
            "done",
            "shard {s}"
        );
    }
    let status: serde_json::Value =
        serde_json::from_str(&w.ok(&["status", "--plan", &p, "--json"])).expect("status JSON");
    assert_eq!(status["jobs"], 16);
    assert!(status["landed"].as_u64().unwrap() < 16, "{status}");
    assert_eq!(status["shards"][0]["state"], "done");
    assert_ne!(status["shards"][2]["state"], "done");
    let text = w.ok(&["status", "--plan", &p]);
    assert!(
        text.contains("landed in main:") && text.contains("shard state"),
        "{text}"
    );

    // Re-submitted, shard 2 writes only what its cancelled attempt did not land.
    let again = slurm::submit_env(
        &job,
        &["--array=2", "--cpus-per-task=1", "--wait", "-o", &logs],
        &renv,
    );
    slurm::wait(&again);
    let r2 = record(&plan, 2).expect("record");
    assert_eq!(r2["state"], "done", "{r2}");
    assert_eq!(r2["skipped"].as_u64().unwrap(), landed_before, "{r2}");
    let repo = w.repo().display().to_string();
    assert_eq!(
        records(&w, &repo, &[]),
        all_once(&names),
        "each tile recorded once"
    );
    assert_same_pixels(&w.cube().await, &truth, &names).await;
    let status: serde_json::Value =
        serde_json::from_str(&w.ok(&["status", "--plan", &p, "--json"])).expect("status JSON");
    assert_eq!(status["landed"], 16, "{status}");
    assert!(status["failed"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slurm_array_in_stage_mode_and_a_dependent_merge_make_one_commit_without_secrets() {
    slurm::require();
    let w = Work::new();
    let names = source(&w, 6);
    let truth = reference(&w).await;
    let moto = Moto::start();
    moto.create_bucket("cubes");
    let mut env = moto.env();
    env.extend(self::env(&w));
    let repo = "s3://cubes/glad";
    let plan = "s3://cubes/plans/glad";
    let stage = "s3://cubes/stage/glad";
    let ok = |args: &[&str]| {
        let out = w.run_with(args, &env);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "tilecube {args:?} failed: {all}");
        assert!(
            !all.contains(SECRET_KEY),
            "the secret key was printed: {all}"
        );
        all
    };
    ok(&["--repo", repo, "init"]);
    ok(&[
        "--repo", repo, "plan", "--all", "--shards", "4", "--out", plan,
    ]);
    let before = records(&w, repo, &env);
    assert!(before.is_empty());
    let commits_before = commit_count(&w, repo, &env);

    // The deploy recipes: the shards as an array, the merge as a job depending on it.
    let mut renv = recipe_env(&w, "commit_every = 2\n", plan, Some(stage));
    renv.extend(moto.env());
    let logs = format!("{}/slurm-%A_%a.out", w.dir.path().display());
    let array = slurm::submit_env(
        &recipe("slurm/shard.sbatch"),
        &["--array=0-3", "--cpus-per-task=1", "-o", &logs],
        &renv,
    );
    let merged = slurm::submit_env(
        &recipe("slurm/merge.sbatch"),
        &[
            &format!("--dependency=afterok:{array}"),
            "--cpus-per-task=1",
            "--wait",
            "-o",
            &format!("{}/merge-%j.out", w.dir.path().display()),
        ],
        &renv,
    );
    slurm::wait(&merged);
    let merge_log = std::fs::read_to_string(w.dir.path().join(format!("merge-{merged}.out")))
        .expect("merge log");
    assert!(
        merge_log.contains("merged 12 tiles from 4 shards"),
        "{merge_log}"
    );

    assert_eq!(
        commit_count(&w, repo, &env),
        commits_before + 1,
        "exactly one new commit"
    );
    assert_eq!(records(&w, repo, &env), all_once(&names));
    moto.export();
    let cube = Cube::open(
        RepoLocation::parse(
            repo,
            &tilecube::storage_settings::StorageSettings::from_env().expect("storage settings"),
        )
        .expect("location"),
        "main",
    )
    .await
    .expect("open");
    assert_same_pixels(&cube, &truth, &names).await;
    // A second merge (a re-run job) changes nothing.
    let again = ok(&["merge", "--plan", plan, "--stage", stage]);
    assert!(again.contains("merged before"), "{again}");
    assert_eq!(commit_count(&w, repo, &env), commits_before + 1);
    let status = ok(&["status", "--plan", plan]);
    assert!(
        status.contains("12 of 12 tiles") && status.contains("12 staged"),
        "{status}"
    );

    // No plan, record, stage file or log holds the secret.
    let objects = moto.list("cubes", "").await;
    let mut looked = 0;
    for key in objects
        .iter()
        .filter(|k| k.starts_with("plans/") || k.starts_with("stage/"))
    {
        let bytes = moto.get("cubes", key).await;
        assert!(
            !bytes
                .windows(SECRET_KEY.len())
                .any(|w| w == SECRET_KEY.as_bytes()),
            "{key} holds the secret key"
        );
        looked += 1;
    }
    assert!(
        looked >= 1 + 4 + 4 + 6,
        "plan, records, manifests, parts: {objects:?}"
    );
    let mut logs_read = std::collections::BTreeSet::new();
    for f in std::fs::read_dir(w.dir.path()).expect("dir").flatten() {
        let name = f.file_name().to_string_lossy().to_string();
        if name.ends_with(".out") {
            let text = std::fs::read_to_string(f.path()).expect("log");
            assert!(!text.contains(SECRET_KEY), "{name} holds the secret key");
            logs_read.insert(name);
        }
    }
    // The four tasks' logs and the merge's.
    let shard_logs = (0..4)
        .map(|i| format!("slurm-{array}_{i}.out"))
        .chain([format!("merge-{merged}.out")])
        .collect();
    assert_eq!(logs_read, shard_logs, "the Slurm logs read");
}

fn commit_count(w: &Work, repo: &str, env: &[(&str, String)]) -> usize {
    let out = w.run_with(&["--repo", repo, "log", "--json"], env);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).expect("log JSON");
    log.as_array().expect("commits").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_stage_shard_is_refused_by_merge_by_name_merged_later_when_re_run() {
    slurm::require();
    let w = Work::new();
    let names = source(&w, 8);
    let truth = reference(&w).await;
    let (_nginx, _proxy, url) = slow_source(&w, Duration::from_millis(250)).await;
    // Spec 2: a later merge amends the partial one.
    w.ok(&["--spec-version", "2", "init"]);
    let plan = w.dir.path().join("plan");
    let p = plan.display().to_string();
    let stage = w.dir.path().join("stage").display().to_string();
    w.ok(&[
        "--source", &url, "plan", "--all", "--shards", "4", "--out", &p,
    ]);
    let (job, renv, logs) = array_with_shard_2_cancelled(&w, &plan, Some(&stage));

    let out = w.run(&["merge", "--plan", &p, "--stage", &stage]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "merge must refuse an unfinished shard"
    );
    assert!(err.contains("shard 2:"), "{err}");
    assert!(
        !err.contains("shard 0:") && !err.contains("shard 1:"),
        "{err}"
    );
    let repo = w.repo().display().to_string();
    assert!(
        records(&w, &repo, &[]).is_empty(),
        "a refused merge commits nothing"
    );

    // --partial merges the shards that finished, and leaves shard 2 for later.
    let out = w.run(&["merge", "--plan", &p, "--stage", &stage, "--partial"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("left out: shard 2:"), "{stderr}");
    assert!(stdout.contains("merged 12 tiles from 3 shards"), "{stdout}");
    let before = commit_count(&w, &repo, &[]);

    let again = slurm::submit_env(
        &job,
        &["--array=2", "--cpus-per-task=1", "--wait", "-o", &logs],
        &renv,
    );
    slurm::wait(&again);
    let out = w.ok(&["merge", "--plan", &p, "--stage", &stage]);
    assert!(out.contains("merged 16 tiles from 4 shards"), "{out}");
    assert_eq!(
        commit_count(&w, &repo, &[]),
        before,
        "the later merge amends the partial one"
    );
    assert_eq!(records(&w, &repo, &[]), all_once(&names));
    assert_same_pixels(&w.cube().await, &truth, &names).await;
    // The re-run replaced shard 2's earlier stage: only its own parts are left.
    let parts: Vec<_> = std::fs::read_dir(w.dir.path().join("stage/parts/0002"))
        .expect("parts")
        .flatten()
        .collect();
    assert_eq!(parts.len(), 4, "one part per tile of the re-run attempt");
}

#[test]
fn a_plan_made_with_missing_while_another_writer_commits_lands_each_tile_once() {
    let w = Work::new();
    let names = tile_names(12);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    // Another writer commits four tiles one at a time; it is held in its second commit, the
    // snapshot written and the branch not moved, while the plan is made.
    let tiles = names[..4].join(",");
    let writer = w.spawn_with(
        &[
            "write",
            "--year",
            "2000",
            "--tiles",
            &tiles,
            "--commit-every",
            "1",
            "--threads",
            "1",
        ],
        &w.hold_env("snapshot-written#2"),
    );
    w.wait_held("snapshot-written", 2);
    let p = w.dir.path().join("plan").display().to_string();
    let made = w.ok(&[
        "plan",
        "--missing",
        "--year",
        "2000",
        "--shards",
        "3",
        "--out",
        &p,
        "--json",
    ]);
    w.release("snapshot-written", 2);
    let out = writer.wait_with_output().expect("writer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The plan was made mid-commit: one tile had landed, the three others were still to come.
    let made: serde_json::Value = serde_json::from_str(&made).expect("plan --json");
    assert_eq!(made["jobs"], 11, "{made}");
    let mut skipped = 0;
    for shard in 0..3 {
        let run = w.run(&[
            "write",
            "--plan",
            &p,
            "--shard",
            &shard.to_string(),
            "--threads",
            "1",
        ]);
        assert!(run.status.success(), "{run:?}");
        let err = String::from_utf8_lossy(&run.stderr);
        if let Some(n) = err
            .split(" already landed since the plan was made")
            .next()
            .filter(|head| head.len() < err.len())
            .and_then(|head| head.rsplit('(').next())
        {
            skipped += n.parse::<usize>().expect("skipped count");
        }
    }
    // The writer's three later tiles were in the plan and skipped by its shards.
    assert_eq!(skipped, 3);
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.dir.path().join("plan/plan.json")).expect("plan"))
            .expect("plan JSON");
    // Each listed tile lands exactly once in the whole history, by the writer or the plan.
    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).expect("log");
    let mut by_plan = 0;
    let mut all: BTreeMap<String, usize> = BTreeMap::new();
    for c in log.as_array().expect("commits") {
        let of_plan = c["plan"]["id"] == plan["id"];
        for (y, tiles) in c["written"].as_object().into_iter().flatten() {
            for tile in tiles.as_object().expect("tiles").keys() {
                *all.entry(format!("{y}/{tile}")).or_default() += 1;
                by_plan += usize::from(of_plan);
            }
        }
    }
    assert_eq!(by_plan, 8, "{all:?}");
    assert_eq!(all.len(), 12, "{all:?}");
    for n in &names {
        assert_eq!(all.get(&format!("2000/{n}")), Some(&1), "2000/{n}: {all:?}");
    }
    // Re-running a finished shard writes nothing twice.
    let out = w.ok(&["write", "--plan", &p, "--shard", "0"]);
    assert!(out.contains("0 tiles written"), "{out}");
}

#[test]
fn shard_indexes_and_plan_mistakes_are_named() {
    let w = Work::new();
    w.listed_tiles(2000, &tile_names(3));
    w.ok(&["init"]);
    let p = w.dir.path().join("plan").display().to_string();
    w.ok(&["plan", "--all", "--shards", "2", "--out", &p]);
    let again = w.run(&["plan", "--all", "--shards", "2", "--out", &p]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already there"));
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "SLURM_ARRAY_TASK_ID"),
        (&[("JOB_COMPLETION_INDEX", "5")], "JOB_COMPLETION_INDEX=5"),
        (
            &[("AWS_BATCH_JOB_ARRAY_INDEX", "x")],
            "AWS_BATCH_JOB_ARRAY_INDEX=x",
        ),
    ];
    for (vars, named) in cases {
        let env: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let out = w.run_with(&["write", "--plan", &p, "--shard", "auto"], &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(named),
            "{vars:?}: {err}"
        );
    }
    let out = w.run(&[
        "write",
        "--plan",
        &p,
        "--shard",
        "1",
        "--repo",
        "/elsewhere",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--repo /elsewhere is not the plan's"));
    let out = w.run(&[
        "write",
        "--plan",
        &w.dir.path().join("none").display().to_string(),
        "--shard",
        "0",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no plan there"));
}

#[test]
fn a_merge_in_batches_amends_one_commit_and_records_every_tile() {
    let w = Work::new();
    let names = source(&w, 6);
    w.ok(&["--spec-version", "2", "init"]);
    let (p, stage) = w.staged_shards(4, &["--commit-every", "1"]);
    let repo = w.repo().display().to_string();
    let before = commit_count(&w, &repo, &[]);
    // 16 chunks a tile: a batch of 32 references holds 2 tiles, so shards of 3 tiles land
    // one by one, each batch amending the first one's commit.
    let out = w.ok(&[
        "merge",
        "--plan",
        &p,
        "--stage",
        &stage,
        "--commit-refs",
        "32",
    ]);
    assert!(out.contains("4 batches, 1 new commit"), "{out}");
    assert_eq!(
        commit_count(&w, &repo, &[]),
        before + 1,
        "one commit however many batches"
    );
    assert_eq!(records(&w, &repo, &[]), all_once(&names));
    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).expect("log");
    let tag = &log[0]["plan"];
    assert_eq!(tag["merged"], true);
    assert_eq!(tag["complete"], true, "{tag}");
    assert_eq!(tag["merged_shards"], serde_json::json!([0, 1, 2, 3]));
    let again = w.ok(&["merge", "--plan", &p, "--stage", &stage]);
    assert!(again.contains("merged before"), "{again}");
}
