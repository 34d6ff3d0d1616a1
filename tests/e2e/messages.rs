//! What the operator is told where a new user met a guess: a source of another resolution,
//! a lost manifest of one year under a multi-year write, a status without a source, the
//! demo's cube found again, a second demo, `log` lines, a repository made again or removed
//! under a detached write.

use crate::common;

use std::time::{Duration, Instant};

use common::{TILE, Work, tile_names};

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A source whose tiles are of another resolution than the cube's: each tile says which
/// `--tile-pixels` fits, and the write stops at the third in a row (none written) instead of
/// failing every tile alike.
#[test]
fn a_source_of_another_resolution_stops_at_its_third_tile_naming_the_tile_pixels_that_fit() {
    let w = Work::new();
    let names = tile_names(4);
    w.listed_tiles(2000, &names);
    let double = (2 * TILE).to_string();
    w.ok(&["--tile-pixels", &double, "init"]);
    let o = w.run(&[
        "--tile-pixels",
        &double,
        "write",
        "--missing",
        "--year",
        "2000",
        "--threads",
        "1",
    ]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("`init --tile-pixels {TILE}`"))
            && said.contains(&format!("this one is of {double}-px tiles"))
            && said.contains("stopped after 3 tiles in a row that do not fit, none written"),
        "{said}"
    );
    let st = json(&w.ok(&["--tile-pixels", &double, "status", "--json"]));
    let failed = st["failed"].as_array().expect("failed");
    assert_eq!(
        failed.len(),
        3,
        "three tiles journaled, not every one: {st}"
    );
}

/// One tile of another resolution among tiles that fit fails alone, naming the
/// `--tile-pixels` it would fit; the others are written, whatever their order.
#[test]
fn one_tile_of_another_resolution_among_good_ones_fails_alone() {
    let w = Work::with_tile(2 * TILE);
    let names = tile_names(4);
    w.listed_tiles(2000, &names);
    // The first tile in the write's order is of the resolution of a TILE-pixel cube.
    let small = Work::new();
    let made = small.tile(2000, &names[0], tilecube::demo::Flaw::None);
    let at = tilecube::demo::tile_path(&w.source(), 2000, common::t(&names[0]));
    std::fs::copy(&made, &at).unwrap();
    w.ok(&["init"]);
    let o = w.run(&["write", "--missing", "--year", "2000", "--threads", "1"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("2000/{}", names[0]))
            && said.contains(&format!("`init --tile-pixels {TILE}`"))
            && said.contains("3 tiles written, 1 failed")
            && !said.contains("stopped after"),
        "{said}"
    );
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 3, "{st}");
}

/// A lost manifest of one year refuses a write of several years, naming the year to leave out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_manifest_of_one_year_names_the_year_to_leave_out() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.listed_tiles(2005, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let lost = crate::hostile::manifest_of_level(&w, 0, 2000, &names[0]).await;
    std::fs::remove_file(w.repo().join("manifests").join(&lost)).unwrap();
    let o = w.run(&[
        "write", "--tiles", &names[0], "--year", "2000", "--year", "2005",
    ]);
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(
        said.contains(
            "only year 2000 is affected: leave it out to write the others now (--year 2005)"
        ),
        "{said}"
    );
    // And leaving it out writes.
    let out = w.ok(&["write", "--tiles", &names[0], "--year", "2005"]);
    assert!(out.contains("1 tile written"), "{out}");
}

/// `status` without a source says why the lists were not read; `log` names a write's tiles
/// once a line.
#[test]
fn status_without_a_source_says_so_and_log_names_tiles_once() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let repo = w.repo().display().to_string();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tilecube"))
        .args(["--repo", &repo, "status"])
        .env("TILECUBE_DATA_DIR", w.dir.path().join("data"))
        .env("XDG_CONFIG_HOME", w.dir.path().join("no-config"))
        .output()
        .expect("status");
    let said = text(&o);
    assert!(
        said.contains("lists not read (no source: give --source or `source =` in the config)"),
        "{said}"
    );
    assert!(!said.contains("? listed"), "{said}");
    let log = w.ok(&["log"]);
    let line = log
        .lines()
        .find(|l| l.contains(&format!("2000/{}", names[0])))
        .expect("the write's line");
    assert_eq!(
        line.matches(&format!("2000/{}", names[0])).count(),
        1,
        "once a line: {line}"
    );
    // A message of one's own keeps the tiles beside it.
    // A year named twice is written once.
    let out = w.ok(&[
        "write",
        "--tiles",
        &names[1],
        "--year",
        "2000",
        "--year",
        "2000",
        "--message",
        "fix one",
    ]);
    assert!(out.contains("1 tile written"), "{out}");
    let log = w.ok(&["log"]);
    let line = log.lines().find(|l| l.contains("fix one")).expect("line");
    assert!(line.contains(&format!("[2000/{}]", names[1])), "{line}");
}

/// After `demo`, a command with no repository configured points at the demo's cube, and a
/// second demo says it makes nothing.
#[test]
fn without_a_repository_the_demo_cube_is_pointed_at_and_a_second_demo_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tilecube"))
            .args(args)
            .current_dir(dir.path())
            .env("TILECUBE_DATA_DIR", &data)
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("HOME", dir.path())
            .output()
            .expect("tilecube")
    };
    let o = run(&["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        !text(&o).contains("tilecube demo"),
        "no demo made yet: {}",
        text(&o)
    );
    let o = run(&["demo", "--pixels", "100"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("making "), "{}", text(&o));
    let cube = data.join("demo").join("cube").display().to_string();
    let o = run(&["status"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains("no repository") && said.contains(&format!("--repo {cube}")),
        "{said}"
    );
    let o = run(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("--repo {cube}")),
        "plain tilecube points at the demo's cube: {}",
        text(&o)
    );
    let o = run(&["demo", "--pixels", "100"]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("is there from an earlier demo") && !said.contains("making "),
        "{said}"
    );
}

/// The only run, once it ended.
fn wait_ended(w: &Work) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = json(&w.ok(&["runs", "--json"]));
        if let Some(r) = all.as_array().and_then(|a| a.first())
            && r["state"] != "running"
        {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "the run never ended: {all}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A detached write of three tiles, a commit after each, held before its second commit.
fn held_detached_write() -> Work {
    let w = Work::new();
    let names = tile_names(3);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let launched = w.run_with(
        &[
            "write",
            "--detach",
            "--all",
            "--year",
            "2000",
            "--threads",
            "1",
            "--commit-every",
            "1",
        ],
        &w.hold_env("chunks-uploaded#2"),
    );
    assert!(launched.status.success(), "{}", text(&launched));
    w.wait_held("chunks-uploaded", 2);
    w
}

/// The columns of run `r`'s row in `tilecube runs`.
fn row_of<'a>(listed: &'a str, r: &serde_json::Value) -> Vec<&'a str> {
    listed
        .lines()
        .find(|l| l.starts_with(r["id"].as_str().unwrap_or("?")))
        .expect("the run's row")
        .split_whitespace()
        .collect()
}

/// `init --force` under a detached write with checkpoints: the run says the cube was made
/// again, and claims none of the old cube's tiles as landed.
#[test]
fn a_detached_write_under_init_force_says_the_cube_was_made_again_and_claims_no_tile() {
    let w = held_detached_write();
    let o = w.run(&["init", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    w.release("chunks-uploaded", 2);
    let r = wait_ended(&w);
    assert_eq!(r["state"], "failed", "{r}");
    let listed = w.ok(&["runs"]);
    assert!(
        listed.contains("a new cube was laid out on branch main")
            && !listed.contains("another commit changed the cube's arrays"),
        "{listed}"
    );
    let cols = row_of(&listed, &r);
    assert_eq!(cols[3], "0", "landed: none in the cube there now: {listed}");
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 0, "{st}");
}

/// A repository removed under a detached write: the worker stops at its next step saying
/// so, claims no tile, and leaves no repository-looking directory behind.
#[test]
fn a_repository_removed_under_a_detached_write_stops_it_saying_so() {
    let w = held_detached_write();
    std::fs::remove_dir_all(w.repo()).unwrap();
    w.release("chunks-uploaded", 2);
    let r = wait_ended(&w);
    assert_eq!(r["state"], "failed", "{r}");
    let listed = w.ok(&["runs"]);
    assert!(
        listed.contains("was removed while this write ran"),
        "{listed}"
    );
    let cols = row_of(&listed, &r);
    assert_eq!(cols[3], "0", "landed: {listed}");
    // status and init agree: there is no repository (if anything was left at the path,
    // both say it is not empty); init makes one where nothing is.
    let o = w.run(&["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    if w.repo().exists() {
        assert!(
            text(&o).contains("holds no repository but is not empty"),
            "{}",
            text(&o)
        );
        let i = w.run(&["init"]);
        assert_eq!(i.status.code(), Some(2), "{}", text(&i));
        std::fs::remove_dir_all(w.repo()).unwrap();
    }
    w.ok(&["init"]);
    // A directory holding files but no repository: status says what init would, by name.
    let junk = w.dir.path().join("junk");
    std::fs::create_dir_all(junk.join("chunks")).unwrap();
    std::fs::write(junk.join("chunks").join("X"), b"x").unwrap();
    let junk_arg = junk.display().to_string();
    let o = w.run(&["--repo", &junk_arg, "status"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains("holds no repository but is not empty (chunks)")
            && said.contains("only in an empty or new directory"),
        "{said}"
    );
    let o = w.run(&["--repo", &junk_arg, "init"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not empty"), "{}", text(&o));
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 0, "{st}");
}

/// A mistyped endpoint — in the environment, a flag or the config file — is named with its
/// setting before anything is read, never a panic deep in a client.
#[test]
fn a_mistyped_endpoint_is_named_with_its_setting() {
    let w = Work::new();
    let names = tile_names(1);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    for bad in ["not a url", "127.0.0.1:5555", "http://127.0.0.1:99999"] {
        let o = w.run_with(
            &["--source", "s3://bucket/src", "status", "--year", "2000"],
            &[("AWS_ENDPOINT_URL", bad.to_string())],
        );
        let said = text(&o);
        assert_eq!(o.status.code(), Some(2), "{said}");
        assert!(
            said.contains(&format!("AWS_ENDPOINT_URL={bad:?} is not an endpoint URL")),
            "{said}"
        );
        assert!(!said.contains("panicked"), "{said}");
    }
    let o = w.run(&["--s3-endpoint", "ftp://x", "status"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains("--s3-endpoint \"ftp://x\" is not an endpoint URL: its scheme is \"ftp\""),
        "{said}"
    );
}
