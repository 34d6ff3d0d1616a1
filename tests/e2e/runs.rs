//! Detached runs end to end: `write --detach` hands the write to a worker process of its own
//! that outlives the terminal it was launched from, `tilecube runs` finds it, `runs cancel`
//! stops it cleanly, and a worker killed with -9 shows as dead and its plan is finished by a
//! relaunch.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::nginx::slow_source;
use common::{Work, cube_pixels, gdal_pixels, t, tile_names};

/// The runs, as `runs --json` lists them.
fn runs(w: &Work) -> Vec<serde_json::Value> {
    let out: serde_json::Value =
        serde_json::from_str(&w.ok(&["runs", "--json"])).expect("runs JSON");
    out.as_array().expect("runs").clone()
}

/// Wait until the only run is in `state`; returns it.
fn wait_state(w: &Work, states: &[&str]) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let all = runs(w);
        if let Some(r) = all.first()
            && states.iter().any(|s| r["state"] == *s)
        {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "runs never reached {states:?}: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until the only run has landed at least `n` tiles, still running.
fn wait_landed(w: &Work, n: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let all = runs(w);
        if let Some(r) = all.first()
            && r["tiles_done"].as_u64().unwrap_or(0) >= n
        {
            assert_eq!(r["state"], "running", "the run ended too soon: {r}");
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no tile landed: {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `write --detach` of every 2000 tile from `url`, one thread, a commit after every tile.
fn launch_slowly(w: &Work, url: &str) -> String {
    w.ok(&[
        "--source",
        url,
        "write",
        "--detach",
        "--all",
        "--year",
        "2000",
        "--threads",
        "1",
        "--commit-every",
        "1",
    ])
}

async fn assert_pixels(w: &Work, names: &[String]) {
    let cube = w.cube().await;
    for n in names {
        let want = gdal_pixels(&tilecube::demo::tile_path(&w.source(), 2000, t(n)));
        assert!(
            cube_pixels(&cube, 2000, t(n)).await == want,
            "2000/{n} differs from its source"
        );
    }
}

/// The tiles the branch's commits recorded, each with how many commits recorded it.
fn recorded(w: &Work) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for tiles in w.written_by_commit(2000) {
        for t in tiles {
            *out.entry(t).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_detached_write_outlives_the_terminal_that_launched_it() {
    let w = Work::new();
    let names = tile_names(6);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let (_nginx, _proxy, url) = slow_source(&w, Duration::from_millis(150)).await;
    // Launched inside a terminal that is then killed (a dropped SSH link: SIGHUP to its
    // session), the worker carries on: it runs in a session of its own.
    let socket = format!("tilecube-runs-{}", std::process::id());
    let cmd = format!(
        "TILECUBE_DATA_DIR={} {} --config {} --source {url} write --detach --all --year 2000 --threads 1; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .output()
            .expect("tmux")
    };
    assert!(
        tmux(&["new-session", "-d", "-s", "t", "-x", "80", "-y", "24", &cmd])
            .status
            .success()
    );
    let r = wait_state(&w, &["starting", "running"]);
    tmux(&["kill-server"]);
    let pid = r["pid"].as_u64().expect("pid");
    let r = wait_state(&w, &["done", "failed", "cancelled", "dead"]);
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["tiles_done"], 6);
    assert_eq!(r["tiles_total"], 6);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z")
        }
    );
    assert_pixels(&w, &names).await;
    let id = r["id"].as_str().expect("id");
    let log = w.ok(&["runs", "log", id]);
    assert!(log.contains("6 tiles written"), "{log}");
    // One vocabulary: written, landed, failed, of all.
    let listed = w.ok(&["runs"]);
    let mut lines = listed.lines();
    let whose = lines.next().unwrap();
    assert!(
        whose.contains("of every repository") && whose.contains("runs"),
        "the list says whose runs it shows: {listed}"
    );
    let header_line = lines.next().unwrap();
    let header: Vec<&str> = header_line.split_whitespace().collect();
    assert_eq!(
        header[..8],
        [
            "id",
            "state",
            "written",
            "landed",
            "failed",
            "of",
            "started",
            "repository"
        ],
        "{listed}"
    );
    let row_line = listed
        .lines()
        .find(|l| l.starts_with(id))
        .expect("the run's row");
    let row: Vec<&str> = row_line.split_whitespace().collect();
    assert_eq!(row[1..6], ["done", "6", "6", "0", "6"], "{listed}");
    // The columns line up: each count ends where its heading ends, the state and the
    // repository start where theirs start.
    let end_of = |line: &str, word: &str, from: usize| {
        line[from..].find(word).map(|i| from + i + word.len())
    };
    let mut at = 0;
    for (word, value) in [
        ("written", "6"),
        ("landed", "6"),
        ("failed", "0"),
        ("of", "6"),
    ] {
        let end = end_of(header_line, word, at).expect(word);
        assert_eq!(&row_line[end - 1..end], value, "{word} column:\n{listed}");
        at = end;
    }
    assert_eq!(header_line.find("state"), row_line.find("done"), "{listed}");
    assert_eq!(
        header_line.find("repository"),
        row_line.find(&w.repo().display().to_string()),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_cancel_stops_a_run_with_its_finished_tiles_committed() {
    let w = Work::new();
    let names = tile_names(8);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let (_nginx, _proxy, url) = slow_source(&w, Duration::from_millis(200)).await;
    let out = launch_slowly(&w, &url);
    assert!(out.contains("8 tiles"), "{out}");
    let r = wait_landed(&w, 1);
    let id = r["id"].as_str().expect("id").to_string();
    let out = w.ok(&["runs", "cancel", &id]);
    assert!(out.contains("cancelled"), "{out}");
    let r = &runs(&w)[0];
    assert_eq!(r["state"], "cancelled", "{r}");
    let landed = r["tiles_done"].as_u64().expect("done") as usize;
    assert!((1..8).contains(&landed), "{r}");
    // Exactly the tiles the run says landed are in the branch, whole, once each.
    let rec = recorded(&w);
    assert_eq!(rec.len(), landed, "{rec:?}");
    assert!(rec.values().all(|&n| n == 1));
    let status: serde_json::Value =
        serde_json::from_str(&w.ok(&["status", "--json"])).expect("status");
    let tiles = status["years"]["2000"]["tiles"].as_object().expect("tiles");
    assert!(
        tiles
            .values()
            .all(|s| s != "incomplete" && s != "unrecorded"),
        "{tiles:?}"
    );
    let again = w.run(&["runs", "cancel", &id]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_with_9_shows_dead_and_a_relaunch_finishes_the_plan() {
    let w = Work::new();
    let names = tile_names(8);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let (_nginx, _proxy, url) = slow_source(&w, Duration::from_millis(200)).await;
    launch_slowly(&w, &url);
    let r = wait_landed(&w, 1);
    let pid = r["pid"].as_i64().expect("pid") as i32;
    // SAFETY: killing the worker this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let r = wait_state(&w, &["dead"]);
    let landed = r["tiles_done"].as_u64().expect("done") as usize;
    assert!((1..8).contains(&landed), "{r}");
    // A new run does not wait on the dead one, and finishes the rest.
    w.ok(&[
        "--source",
        &url,
        "write",
        "--detach",
        "--missing",
        "--year",
        "2000",
        "--threads",
        "1",
    ]);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let all = runs(&w);
        if all.len() == 2 && all[0]["state"] == "done" {
            assert_eq!(
                all[0]["tiles_total"].as_u64(),
                Some((8 - landed) as u64),
                "{all:?}"
            );
            assert_eq!(all[1]["state"], "dead");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relaunch did not finish: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let rec = recorded(&w);
    assert_eq!(rec.len(), 8, "{rec:?}");
    assert!(rec.values().all(|&n| n == 1), "{rec:?}");
    assert_pixels(&w, &names).await;
}

/// A detached run whose final commit is refused (its repository made again under it) ends
/// `failed` and says why in `tilecube runs`, not only in its log.
#[test]
fn a_detached_run_whose_commit_is_refused_says_why_in_runs() {
    let w = Work::new();
    let names = tile_names(2);
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
        ],
        &w.hold_env("chunks-uploaded#1"),
    );
    assert!(launched.status.success(), "{launched:?}");
    w.wait_held("chunks-uploaded", 1);
    std::fs::remove_dir_all(w.repo()).unwrap();
    w.ok(&["init"]);
    w.release("chunks-uploaded", 1);
    let r = wait_state(&w, &["failed", "done", "dead", "cancelled"]);
    assert_eq!(r["state"], "failed", "{r}");
    let listed = w.ok(&["runs"]);
    assert!(
        listed.contains("stopped: ")
            && listed.contains("no longer descends from snapshot")
            && listed.contains("the repository was made again at its place"),
        "{listed}"
    );
    let st: serde_json::Value = serde_json::from_str(&w.ok(&["status", "--json"])).unwrap();
    assert_eq!(st["years"]["2000"]["written"], 0, "{st}");
}
