//! tilecube used as a careless or hostile operator would: relative paths from other
//! directories, hand-edited plans and lists, lost objects, concurrent merges, recreated and
//! moved repositories, absurd flags. Each test reproduces a way the operator could lose data
//! or be misled, and checks the clear error or the right outcome.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Work, cube_pixels, gdal_pixels, t, tile_names};
use tilecube::demo::Flaw;

const BIN: &str = env!("CARGO_BIN_EXE_tilecube");

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Run tilecube in `dir` with the workspace's data dir, no config file.
fn run_in(w: &Work, dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env("TILECUBE_DATA_DIR", w.dir.path().join("data"))
        .output()
        .expect("run tilecube")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok_in(w: &Work, dir: &Path, args: &[&str]) -> String {
    let o = run_in(w, dir, args);
    assert!(o.status.success(), "tilecube {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A config file naming only the workspace's preset (its small chunks), no repository or
/// source: those come as (relative) flags.
fn preset_args(w: &Work) -> Vec<String> {
    let config = w.dir.path().join("preset-only.toml");
    let text = format!(
        "preset = {:?}\ntile_pixels = {}\n",
        w.preset_path(),
        common::TILE
    );
    std::fs::write(&config, text).unwrap();
    vec!["--config".into(), config.display().to_string()]
}

fn with<'a>(base: &'a [String], rest: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(rest.iter().copied())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_made_with_a_relative_source_reads_its_own_tiles_from_any_directory() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    // Another directory holds a `source` of the same layout with other pixels: a task started
    // there must not read it.
    let elsewhere = w.dir.path().join("elsewhere");
    let decoy = Work::new();
    decoy.listed_tiles(2000, &names);
    for n in &names {
        decoy.two_class_tile(2000, n, 7, 9);
    }
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::rename(decoy.source(), elsewhere.join("source")).unwrap();

    let p = preset_args(&w);
    ok_in(&w, w.dir.path(), &with(&p, &["--repo", "repo", "init"]));
    ok_in(
        &w,
        w.dir.path(),
        &with(
            &p,
            &[
                "--repo", "repo", "--source", "source", "plan", "--all", "--shards", "1", "--out",
                "plan",
            ],
        ),
    );
    let plan = json(&std::fs::read_to_string(w.dir.path().join("plan/plan.json")).unwrap());
    for job in plan["shards"][0].as_array().unwrap() {
        let path = job["path"].as_str().unwrap();
        assert!(
            path.starts_with(&w.source().display().to_string()),
            "a plan's paths are absolute, under its source: {path}"
        );
    }
    let plan_dir = w.dir.path().join("plan").display().to_string();
    // The task runs in the other directory, with a relative --repo that names the plan's.
    let out = ok_in(
        &w,
        &elsewhere,
        &[
            "--repo", "../repo", "write", "--plan", &plan_dir, "--shard", "0",
        ],
    );
    assert!(out.contains("2 tiles written"), "{out}");
    let cube = w.cube().await;
    for n in &names {
        let want = gdal_pixels(&tilecube::demo::tile_path(&w.source(), 2000, t(n)));
        assert_eq!(
            cube_pixels(&cube, 2000, t(n)).await,
            want,
            "{n}: the plan's own tile"
        );
    }

    // A plan edited by hand is refused; one whose checksum was made again after the edit
    // still cannot send a task outside its source.
    let path = w.dir.path().join("plan/plan.json");
    let mut edited: tilecube::scaleout::ShardPlan =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edited.shards[0][0].path = "source/2000/00N_000E.tif".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
    let o = run_in(
        &w,
        &elsewhere,
        &[
            "--repo", "../repo", "write", "--plan", &plan_dir, "--shard", "0",
        ],
    );
    assert!(
        o.status.code() == Some(2) && text(&o).contains("changed after it was made"),
        "{}",
        text(&o)
    );
    let resealed = edited.sealed();
    std::fs::write(&path, serde_json::to_vec_pretty(&resealed).unwrap()).unwrap();
    let o = run_in(
        &w,
        &elsewhere,
        &[
            "--repo", "../repo", "write", "--plan", &plan_dir, "--shard", "0",
        ],
    );
    let said = text(&o);
    assert!(
        o.status.code() == Some(2)
            && said.contains("does not lie under the plan's source")
            && said.contains("00N_000E"),
        "{said}"
    );
    // A job in two shards is refused by name.
    let mut twice = resealed.clone();
    twice.shards[0][0].path = w.source().join("2000/00N_000E.tif").display().to_string();
    twice.shards.push(vec![twice.shards[0][0].clone()]);
    std::fs::write(&path, serde_json::to_vec_pretty(&twice.sealed()).unwrap()).unwrap();
    let o = run_in(
        &w,
        w.dir.path(),
        &["--repo", "repo", "status", "--plan", &plan_dir],
    );
    let said = text(&o);
    assert!(
        o.status.code() == Some(2) && said.contains("2000/00N_000E is in shard 0 and in shard 1"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_every_level_and_overviews_rebuilds_lost_level_chunks() {
    let w = Work::with_overviews(Some(400));
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    // Delete the chunk objects of level ×4 of the first tile.
    let cube = w.cube().await;
    let level = cube
        .layout
        .levels()
        .iter()
        .position(|l| l.factor == 4)
        .unwrap()
        + 1;
    let path = cube.layout.level_path(level);
    let session = cube.head_session().await.unwrap();
    let mut gone = 0;
    {
        use futures::TryStreamExt;
        let mut all = Box::pin(session.all_chunks().await.unwrap());
        while let Some((p, info)) = all.try_next().await.unwrap() {
            if p.to_string() != path {
                continue;
            }
            if let icechunk::format::manifest::ChunkPayload::Ref(r) = info.payload {
                let label = cube.layout.tile_of_chunk(&[
                    info.coord.0[0],
                    info.coord.0[1] * 4,
                    info.coord.0[2] * 4,
                ]);
                if label == Some((2000, t(&names[0]))) {
                    std::fs::remove_file(w.repo().join("chunks").join(r.id.to_string())).unwrap();
                    gone += 1;
                }
            }
        }
    }
    assert!(gone > 0, "level ×4 of the tile has chunks");
    let o = w.run(&["verify"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "missing: 2000/{} ×4: {gone} chunk objects",
            names[0]
        )),
        "verify names the level and the tile: {said}"
    );
    let out = w.ok(&["overviews"]);
    assert!(out.contains("tiles"), "{out}");
    let out = w.ok(&["verify"]);
    assert!(out.trim_end().ends_with("ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_manifest_is_named_with_its_tiles_and_repair_lets_the_branch_move() {
    let w = Work::new();
    let names = tile_names(3);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let lost = manifest_of_level(&w, 0, 2000, &names[1]).await;
    std::fs::remove_file(w.repo().join("manifests").join(&lost)).unwrap();

    // Plain status does not list the manifest objects (its cost follows the tiles): it shows
    // what the last listing found, here none yet.
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["manifests_listed"], serde_json::Value::Null, "{st}");
    assert_eq!(st["years"]["2000"]["tiles"][&names[1]], "written", "{st}");
    // `--deep` lists them and finds the loss; plain status shows it from then on.
    for deep in [true, false] {
        let args: &[&str] = if deep {
            &["status", "--json", "--deep"]
        } else {
            &["status", "--json"]
        };
        let o = w.run(args);
        assert_eq!(o.status.code(), Some(1), "{deep}: {}", text(&o));
        let st = json(&String::from_utf8_lossy(&o.stdout));
        assert_eq!(
            st["years"]["2000"]["tiles"][&names[1]], "lost_manifest",
            "{deep}: {st}"
        );
        assert_eq!(st["years"]["2000"]["tiles"][&names[0]], "written");
        assert!(st["manifests_listed"].is_string(), "{st}");
    }
    let o = w.run(&["status"]);
    let said = text(&o);
    assert!(
        said.contains(&format!("lost manifest: {lost}"))
            && said.contains("tilecube repair")
            && said.contains("status --deep"),
        "{said}"
    );

    let o = w.run(&["verify"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("lost manifest: {lost} of /lclu"))
            && said.contains(&format!("2000/{}", names[1])),
        "verify names the manifest and its tile: {said}"
    );
    // A write refuses to start on a head with lost manifests (its commit could not land).
    let o = w.run(&["write", "--missing"]);
    let said = text(&o);
    assert!(
        o.status.code() == Some(2) && said.contains("tilecube repair"),
        "{said}"
    );

    // The way back: repair, then write the tiles that lost chunks.
    let out = w.ok(&["repair"]);
    assert!(
        out.contains(&format!("dropped lost manifest {lost}")),
        "{out}"
    );
    let o = w.run(&["status", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the tile's chunks are missing: {}",
        text(&o)
    );
    let st = json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        st["years"]["2000"]["tiles"][&names[1]], "incomplete",
        "{st}"
    );
    let out = w.ok(&["write", "--missing"]);
    assert!(out.contains("1 tile written"), "{out}");
    let out = w.ok(&["verify"]);
    assert!(out.trim_end().ends_with("ok"), "{out}");
    let cube = w.cube().await;
    for n in &names {
        let want = gdal_pixels(&tilecube::demo::tile_path(&w.source(), 2000, t(n)));
        assert_eq!(cube_pixels(&cube, 2000, t(n)).await, want, "{n}");
    }
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 3, "{st}");
}

/// The manifest of `tile` in `year` on level `k` (0: the cube itself), where the level maps
/// the tile to whole chunks (one manifest a tile and year).
pub(crate) async fn manifest_of_level(w: &Work, k: usize, year: i32, tile: &str) -> String {
    let cube = w.cube().await;
    let (side, chunk) = match k.checked_sub(1) {
        None => (cube.layout.tile_pixels, cube.layout.chunk_pixels),
        Some(i) => {
            let level = cube.layout.levels()[i];
            (
                level.tile_pixels.expect("a level written with the tile"),
                level.chunk,
            )
        }
    };
    let n = (side / chunk) as u32;
    let cell = cube.layout.grid().cell(t(tile)).unwrap();
    let yi = cube.layout.year_index(year).unwrap() as u32;
    let want = vec![yi, cell.row * n, cell.col * n];
    let head = cube.head().await.unwrap();
    let snap = cube
        .repo
        .asset_manager()
        .fetch_snapshot(&head)
        .await
        .unwrap();
    let path = icechunk::format::Path::new(&cube.layout.level_path(k)).unwrap();
    let node = snap.get_node(&path).unwrap();
    let icechunk::format::snapshot::NodeData::Array { manifests, .. } = &node.node_data else {
        panic!("not an array")
    };
    manifests
        .iter()
        .find(|m| m.extents.iter().map(|r| r.start).collect::<Vec<u32>>() == want)
        .map(|m| m.object_id.to_string())
        .unwrap_or_else(|| panic!("no manifest of {tile} on level {k}"))
}

/// A lost manifest stops only the writes whose commit would read it: its own tile's, and a
/// neighbour's whose coarse-level refresh reads the level it belongs to; every other tile
/// still lands, and the lost manifest stays reported. The check looks up only the manifests
/// the tiles' commit reads (its cost follows the tiles).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_manifest_refuses_only_the_writes_whose_commit_reads_it() {
    // Levels ×2 … ×16 written with each tile, ×32 … coarse: a ×32 chunk spans 8×8 tiles.
    let w = Work::with_overviews(Some(100));
    // Tiles side by side at 0N from 0E (columns 18..24): 18..23 share ×32 chunks, 24 not.
    let names = tile_names(7);
    let far = &names[6];
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let cube = w.cube().await;
    let levels = cube.layout.levels();
    let last_tile_level = levels.iter().take_while(|l| !l.is_coarse()).count();
    assert!(
        last_tile_level >= 1 && levels.len() > last_tile_level,
        "the test layout has levels written with the tile and coarse levels: {levels:?}"
    );
    let gone = |id: &str| std::fs::remove_file(w.repo().join("manifests").join(id)).unwrap();
    let write = |tile: &str| w.run(&["write", "--year", "2000", "--tiles", tile]);
    let refused = |tile: &str, lost: &str| {
        let o = write(tile);
        let said = text(&o);
        assert!(
            o.status.code() == Some(2)
                && said.contains(&format!("first: {lost} of"))
                && said.contains("no commit of these tiles can land")
                && said.contains("tilecube repair"),
            "{tile}: {said}"
        );
    };
    let lands = |tile: &str| {
        let o = write(tile);
        let said = text(&o);
        assert!(
            o.status.success() && said.contains("1 tile written"),
            "{tile}: {said}"
        );
    };

    // Level 0 of tile 1 lost: tile 1 is refused, tile 0 beside it lands (its commit reads
    // level 0 of its own tile only, and the levels above level 0 of its neighbours).
    let lost0 = manifest_of_level(&w, 0, 2000, &names[1]).await;
    gone(&lost0);
    refused(&names[1], &lost0);
    lands(&names[0]);
    let o = w.run(&["status", "--json"]);
    let st = json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        st["years"]["2000"]["tiles"][&names[1]], "lost_manifest",
        "{st}"
    );
    assert_eq!(st["years"]["2000"]["tiles"][&names[0]], "written", "{st}");

    // The last level written with the tile lost for tile 3: every tile whose commit refreshes
    // the ×32 chunk they share reads that level there, so tiles 3, 2 and 0 are refused; the
    // tile of the next ×32 chunk lands.
    let lost_k = manifest_of_level(&w, last_tile_level, 2000, &names[3]).await;
    gone(&lost_k);
    for tile in [&names[3], &names[2], &names[0]] {
        refused(tile, &lost_k);
    }
    lands(far);

    // The way back is unchanged: repair, then the missing tiles and the levels.
    w.ok(&["repair"]);
    w.ok(&["write", "--missing"]);
    w.ok(&["overviews"]);
    let out = w.ok(&["verify"]);
    assert!(out.trim_end().ends_with("ok"), "{out}");
}

#[test]
fn a_list_with_a_byte_order_mark_keeps_its_first_tile_and_a_useless_list_fails() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    let list = w.source().join("2000.txt");
    let body = std::fs::read_to_string(&list).unwrap();
    std::fs::write(&list, format!("\u{feff}{}", body.replace('\n', "\r\n"))).unwrap();
    w.ok(&["init"]);
    let out = w.ok(&["write", "--all", "--year", "2000"]);
    assert!(out.contains("2 tiles written"), "{out}");

    // A list whose every line is rejected writes nothing, and says so with a failure.
    std::fs::write(
        w.source().join("2005.txt"),
        "not a tile\n2005/77N_999E.tif\n",
    )
    .unwrap();
    let o = w.run(&["write", "--all", "--year", "2005"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains("2 lines of the tile lists were left out")
            && said.contains("nothing was written"),
        "{said}"
    );
}

#[test]
fn threads_are_capped_and_the_write_still_ends() {
    let w = Work::new();
    w.listed_tiles(2000, &tile_names(1));
    w.ok(&["init"]);
    let started = std::time::Instant::now();
    let o = w.run(&["write", "--all", "--threads", "100000"]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    let cap = std::thread::available_parallelism().unwrap().get() * 4;
    assert!(
        said.contains(&format!("100000 threads asked for; using {cap}")),
        "{said}"
    );
    assert!(said.contains("1 tile written"), "{said}");
    eprintln!("capped write took {:?}", started.elapsed());
}

#[test]
fn merges_of_one_plan_exclude_each_other() {
    let w = Work::new();
    let names = tile_names(12);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let plan = w.dir.path().join("plan").display().to_string();
    let stage = w.dir.path().join("stage").display().to_string();
    w.ok(&["plan", "--all", "--shards", "3", "--out", &plan]);
    for i in 0..3 {
        w.ok(&[
            "write",
            "--plan",
            &plan,
            "--shard",
            &i.to_string(),
            "--stage",
            &stage,
        ]);
    }
    let config = w.dir.path().join("config.toml");
    let spawn = || {
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["merge", "--plan", &plan, "--stage", &stage])
            .env("TILECUBE_DATA_DIR", w.dir.path().join("data"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let said: Vec<String> = outs.iter().map(text).collect();
    let merged = said
        .iter()
        .filter(|s| s.contains("merged 12 tiles"))
        .count();
    assert_eq!(merged, 1, "exactly one merge lands: {said:?}");
    let other = said
        .iter()
        .find(|s| !s.contains("merged 12 tiles"))
        .unwrap();
    assert!(
        other.contains("another merge of plan") || other.contains("was merged before"),
        "the other merge says why it landed nothing: {other}"
    );
    let log = json(&w.ok(&["log", "--json"]));
    let merges = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["plan"]["merged"] == true)
        .count();
    assert_eq!(merges, 1, "{log}");
    eprintln!("the second merge said: {other}");
}

#[test]
fn demo_refuses_a_directory_it_did_not_make() {
    let w = Work::new();
    let d = w.dir.path().join("mine");
    std::fs::create_dir_all(d.join("source")).unwrap();
    std::fs::write(d.join("source/2000.txt"), "my/own/2000/00N_000E.tif\n").unwrap();
    let o = w.run(&["demo", "--dir", &d.display().to_string(), "--pixels", "100"]);
    let said = text(&o);
    assert!(
        o.status.code() == Some(2) && said.contains("is not the demo's"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("source/2000.txt")).unwrap(),
        "my/own/2000/00N_000E.tif\n",
        "the operator's list is untouched"
    );
    assert!(!d.join("source/2005.txt").exists() && !d.join("cube").exists());
}

#[test]
fn init_on_a_new_branch_makes_it_and_mistyped_paths_make_nothing() {
    let w = Work::new();
    w.listed_tiles(2000, &tile_names(1));
    let out = w.ok(&["--branch", "dev", "init"]);
    assert!(out.contains("initialized"), "{out}");
    let out = w.ok(&["--branch", "dev", "write", "--all", "--year", "2000"]);
    assert!(out.contains("1 tile written"), "{out}");
    let st = json(&w.ok(&["--branch", "dev", "status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 1);

    let typo = w.dir.path().join("repo-typo");
    for cmd in ["status", "verify", "log"] {
        let o = w.run(&["--repo", &typo.display().to_string(), cmd]);
        let said = text(&o);
        assert!(
            o.status.code() == Some(2) && said.contains("is not there"),
            "{cmd}: {said}"
        );
        assert!(!said.contains("context:"), "no empty context lines: {said}");
        assert!(!typo.exists(), "{cmd} made {}", typo.display());
    }
    // An error from Icechunk prints its chain without empty "context:" lines.
    let o = w.run(&["--branch", "nosuch", "status"]);
    let said = text(&o);
    assert!(
        o.status.code() == Some(2) && said.contains("nosuch") && !said.contains("context:"),
        "{said}"
    );
}

#[test]
fn a_preset_past_the_pole_is_refused() {
    let w = Work::new();
    let text_of = std::fs::read_to_string(w.preset_path()).unwrap();
    std::fs::write(w.preset_path(), text_of.replace("rows = 14", "rows = 18")).unwrap();
    let o = w.run(&["init"]);
    let said = text(&o);
    assert!(
        o.status.code() == Some(2) && said.contains("pass the pole"),
        "{said}"
    );
    assert!(!w.repo().exists(), "nothing made");
}

#[test]
fn map_takes_a_bbox_of_negative_numbers() {
    let w = Work::new();
    let tile = "70N_160W";
    w.tile(2000, tile, Flaw::None);
    w.list(2000, &[tile], "");
    w.ok(&["init"]);
    w.ok(&["write", "--all", "--year", "2000"]);
    let png = w.dir.path().join("m.png").display().to_string();
    let out = w.ok(&[
        "map",
        "--year",
        "2000",
        "--factor",
        "2",
        "--bbox",
        "-160,70,-150,80",
        "--out",
        &png,
    ]);
    assert!(Path::new(&png).exists(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_repository_starts_afresh_and_a_moved_one_keeps_its_journal() {
    let w = Work::new();
    // The runs the test's commands launch are found where they keep them (each test runs in
    // a process of its own).
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("TILECUBE_DATA_DIR", w.dir.path().join("data")) };
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.tile(2000, &names[1], Flaw::WrongCrs);
    w.ok(&["init"]);
    let o = w.run(&["write", "--all", "--year", "2000"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["tiles"][&names[1]], "failed", "{st}");

    // Moved: the journal follows the cube.
    let moved = w.dir.path().join("moved");
    std::fs::rename(w.repo(), &moved).unwrap();
    let st = json(&w.ok(&["--repo", &moved.display().to_string(), "status", "--json"]));
    assert_eq!(st["years"]["2000"]["tiles"][&names[1]], "failed", "{st}");

    // A new cube at the old path knows nothing of the old one's failures, nor of its runs.
    let out = w.ok(&["init"]);
    assert!(out.contains("initialized"), "{out}");
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["tiles"][&names[1]], "listed", "{st}");
    let o = w.run(&["write", "--detach", "--tiles", &names[0], "--year", "2000"]);
    assert!(o.status.success(), "{}", text(&o));
    let wait = std::time::Instant::now();
    loop {
        let runs = json(&w.ok(&["runs", "--json"]));
        if runs
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] != "running" && r["state"] != "starting")
        {
            break;
        }
        assert!(wait.elapsed().as_secs() < 60, "{runs}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let cube = w.cube().await;
    let repo = w.repo().display().to_string();
    assert_eq!(
        tilecube::config::runs().for_repo(&repo, &cube.key()).len(),
        1,
        "the cube's run"
    );
    // Deleted and made again: the run was the old cube's, not the new one's.
    std::fs::remove_dir_all(w.repo()).unwrap();
    w.ok(&["init"]);
    let again = w.cube().await;
    assert_ne!(again.key(), cube.key(), "every init makes a new cube");
    assert_eq!(
        tilecube::config::runs().for_repo(&repo, &again.key()).len(),
        0
    );
    // `init --force` too.
    w.ok(&["init", "--force"]);
    let forced = w.cube().await;
    assert_ne!(forced.key(), again.key());
}

#[test]
fn unwritable_chunks_stop_the_write_at_the_first_refusal() {
    let w = Work::new();
    let names = tile_names(6);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let chunks = w.repo().join("chunks");
    std::fs::create_dir_all(&chunks).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&chunks)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mounting a read-only tmpfs (the tests run as root)");
    let o = w.run(&["write", "--all", "--threads", "1"]);
    let _ = Command::new("umount").arg("-l").arg(&chunks).status();
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains("refused a chunk of 2000/") && said.to_lowercase().contains("read-only"),
        "{said}"
    );
    let failed = said.lines().filter(|l| l.contains("failed:")).count();
    assert!(
        failed <= 1,
        "one tile met the refusal, the rest were not tried: {said}"
    );
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 0, "{st}");
    let out = w.ok(&["write", "--missing"]);
    assert!(out.contains("6 tiles written"), "{out}");
}

#[test]
fn a_shard_whose_stage_is_unwritable_records_its_failure() {
    let w = Work::new();
    w.listed_tiles(2000, &tile_names(2));
    w.ok(&["init"]);
    let plan = w.dir.path().join("plan").display().to_string();
    w.ok(&["plan", "--all", "--shards", "1", "--out", &plan]);
    // The stage is a file where a directory should be.
    let stage = w.dir.path().join("stage");
    std::fs::write(&stage, "not a directory").unwrap();
    let o = w.run(&[
        "write",
        "--plan",
        &plan,
        "--shard",
        "0",
        "--stage",
        &stage.display().to_string(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let record =
        json(&std::fs::read_to_string(w.dir.path().join("plan/shards/0000.json")).unwrap());
    assert_eq!(record["state"], "failed", "{record}");
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("stage")),
        "{record}"
    );
    assert!(text(&o).contains("staging shard 0"), "{}", text(&o));
}

#[test]
fn config_paths_are_the_files_and_bad_branch_names_and_years_are_refused() {
    let w = Work::new();
    w.listed_tiles(2000, &tile_names(1));
    // A config file with relative paths, used from another directory.
    let cfg_dir = w.dir.path().join("cfg");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::copy(w.preset_path(), cfg_dir.join("preset.toml")).unwrap();
    std::fs::write(
        cfg_dir.join("c.toml"),
        format!(
            "preset = \"preset.toml\"\nrepo = \"./cube\"\nsource = \"../source\"\ntile_pixels = {}\n",
            common::TILE
        ),
    )
    .unwrap();
    let elsewhere = w.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    ok_in(&w, &elsewhere, &["--config", "../cfg/c.toml", "init"]);
    assert!(
        cfg_dir.join("cube").is_dir(),
        "the repository is next to the config file"
    );
    assert!(!elsewhere.join("cube").exists());
    let out = ok_in(
        &w,
        &elsewhere,
        &[
            "--config",
            "../cfg/c.toml",
            "write",
            "--all",
            "--year",
            "2000",
        ],
    );
    assert!(out.contains("1 tile written"), "{out}");

    for bad in ["", "../../evil", "a b", ".hidden"] {
        let o = w.run(&["--branch", bad, "status"]);
        let said = text(&o);
        assert!(
            o.status.code() == Some(2) && said.contains("a branch name is"),
            "{bad:?}: {said}"
        );
    }
    w.ok(&["init"]);
    let o = w.run(&["status", "--year", "1999"]);
    let said = text(&o);
    assert!(
        o.status.code() == Some(2) && said.contains("year 1999 is not in the cube"),
        "{said}"
    );
    let o = w.run(&["--branch", "dev", "status"]);
    let said = text(&o);
    assert!(
        o.status.code() == Some(2)
            && said.contains("has no branch \"dev\"")
            && said.contains("main"),
        "{said}"
    );
}

#[test]
fn a_stage_holding_another_plans_shard_is_not_replaced() {
    let w = Work::new();
    w.listed_tiles(2000, &tile_names(2));
    w.ok(&["init"]);
    let (p1, p2) = (w.dir.path().join("p1"), w.dir.path().join("p2"));
    let stage = w.dir.path().join("stage").display().to_string();
    w.ok(&[
        "plan",
        "--all",
        "--shards",
        "1",
        "--out",
        &p1.display().to_string(),
    ]);
    w.ok(&[
        "plan",
        "--all",
        "--shards",
        "1",
        "--out",
        &p2.display().to_string(),
    ]);
    w.ok(&[
        "write",
        "--plan",
        &p1.display().to_string(),
        "--shard",
        "0",
        "--stage",
        &stage,
    ]);
    let o = w.run(&[
        "write",
        "--plan",
        &p2.display().to_string(),
        "--shard",
        "0",
        "--stage",
        &stage,
    ]);
    let said = text(&o);
    assert!(
        o.status.code() == Some(2) && said.contains("a stage is one plan's"),
        "{said}"
    );
    let out = w.ok(&[
        "merge",
        "--plan",
        &p1.display().to_string(),
        "--stage",
        &stage,
    ]);
    assert!(
        out.contains("merged 2 tiles"),
        "the first plan's stage is intact: {out}"
    );
}

#[test]
fn a_plan_made_with_dot_dot_paths_runs_after_its_directory_is_gone() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    let p = preset_args(&w);
    ok_in(&w, w.dir.path(), &with(&p, &["--repo", "repo", "init"]));
    let wd = w.dir.path().join("a/wd");
    std::fs::create_dir_all(&wd).unwrap();
    ok_in(
        &w,
        &wd,
        &with(
            &p,
            &[
                "--repo",
                "../../repo",
                "--source",
                "../../source",
                "plan",
                "--all",
                "--shards",
                "1",
                "--out",
                "../../plan",
            ],
        ),
    );
    let plan_text = std::fs::read_to_string(w.dir.path().join("plan/plan.json")).unwrap();
    assert!(
        !plan_text.contains("/./") && !plan_text.contains("/../"),
        "a plan records no . or .. step: {plan_text}"
    );
    // The directory the plan was made from goes; the task runs from the workspace.
    std::fs::remove_dir_all(w.dir.path().join("a")).unwrap();
    let out = ok_in(
        &w,
        w.dir.path(),
        &["write", "--plan", "plan", "--shard", "0"],
    );
    assert!(out.contains("2 tiles written"), "{out}");
}

#[test]
fn map_names_a_missing_directory_refuses_another_format_and_says_when_it_is_blank() {
    let w = Work::new();
    let names = tile_names(1);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all", "--year", "2000"]);
    let out = w.dir.path().join("nodir/world.png").display().to_string();
    let o = w.run(&["map", "--year", "2000", "--out", &out]);
    let said = text(&o);
    assert!(
        o.status.code() == Some(2) && said.contains("is not there") && said.contains("nodir"),
        "{said}"
    );
    assert!(
        !said.contains("NULL pointer") && !said.contains("ERROR 4"),
        "{said}"
    );
    let jpg = w.dir.path().join("world.jpg").display().to_string();
    let o = w.run(&["map", "--year", "2000", "--out", &jpg]);
    assert!(
        o.status.code() == Some(2) && text(&o).contains("writes a PNG"),
        "{}",
        text(&o)
    );
    assert!(!w.dir.path().join("world.jpg").exists());
    // A year with no tile: the picture is made, and the operator is told it is blank.
    let png = w.dir.path().join("empty.png").display().to_string();
    let o = w.run(&["map", "--year", "2005", "--out", &png]);
    let said = text(&o);
    assert!(
        o.status.success() && said.contains("the picture is blank"),
        "{said}"
    );
    let o = w.run(&["map", "--year", "2000", "--out", &png]);
    assert!(!text(&o).contains("blank"), "{}", text(&o));
}

/// A repository deleted and made again at its place while a write is held before its commit:
/// the write must not land over the new one a commit recording tiles whose chunks went with
/// the old repository. It fails saying so, and the new cube holds nothing of it.
#[test]
fn a_write_whose_repository_was_made_again_under_it_lands_nothing_and_says_why() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let writer = w.spawn_with(
        &["write", "--year", "2000", "--tiles", &names.join(",")],
        &w.hold_env("chunks-uploaded#1"),
    );
    w.wait_held("chunks-uploaded", 1);
    std::fs::remove_dir_all(w.repo()).unwrap();
    w.ok(&["init"]);
    let before = w.ok(&["log", "--json"]);
    w.release("chunks-uploaded", 1);
    let out = writer.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("no longer descends from snapshot")
            && said.contains("the repository was made again at its place"),
        "{said}"
    );
    assert!(!said.contains("2 tiles written"), "{said}");
    // The new cube is as `init` left it: no commit, no tile.
    assert_eq!(w.ok(&["log", "--json"]), before);
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 0, "{st}");
    let out = w.ok(&["write", "--missing"]);
    assert!(out.contains("2 tiles written"), "{out}");
}
