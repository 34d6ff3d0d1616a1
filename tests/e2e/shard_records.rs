//! Scale-out without a scheduler: the shards' progress records, merge's refusals, and the
//! note about repositories on shared file systems.
//!
//! Proves, with the real `tilecube` binary running shards in the foreground (`--shard I`, or
//! an index from a scheduler's variable): a running record older than a minute is shown as
//! `stale` by `status --plan` (one younger is `running`, a finished one never goes stale,
//! and a re-run replaces it); a running task rewrites its record (on a real S3 server) at
//! most about once a second while tiles progress, and at least every 10 s while nothing
//! does (the task held inside its commit); `merge` refuses a shard that staged nothing and
//! one with a failed tile, each by name, commits nothing, and merges everything once they
//! are re-run; `plan` and a scheduler's task on a repository that is a path print the NFS /
//! Lustre note on stderr, a stage-mode task and an `s3://` repository do not.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::s3::Moto;
use common::{Work, tile_names};
use tilecube::demo::Flaw;

/// What `plan` and a scheduler's task print when the repository is a path.
const NFS_NOTE: &str = "note: the repository is a path: checkpoint commits from many machines rely on file locks that shared file systems (NFS, Lustre) may not honour; use an s3:// or gs:// repository, or `write --stage` (then only `tilecube merge` commits)";

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Shard `shard`'s record in a local plan.
fn record_path(plan: &Path, shard: usize) -> std::path::PathBuf {
    plan.join(format!("shards/{shard:04}.json"))
}

/// Edit a record's fields by hand, as an operator (or a task gone) would have left them.
fn edit_record(plan: &Path, shard: usize, fields: &[(&str, serde_json::Value)]) {
    let path = record_path(plan, shard);
    let mut r = json(&std::fs::read_to_string(&path).unwrap());
    for (k, v) in fields {
        r[*k] = v.clone();
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&r).unwrap()).unwrap();
}

/// Rewrite a record's `updated` to `age` ago, as a task gone that long would have left it.
fn age_record(plan: &Path, shard: usize, age: chrono::Duration) {
    edit_record(
        plan,
        shard,
        &[("updated", serde_json::json!(chrono::Utc::now() - age))],
    );
}

/// Each shard's state, as `status --plan --json` gives it.
fn states(w: &Work, plan: &str) -> Vec<String> {
    let st = json(&w.ok(&["status", "--plan", plan, "--json"]));
    st["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap().to_string())
        .collect()
}

/// The state column of shard `shard`'s row in `status --plan`'s table.
fn state_in_table(text: &str, shard: usize) -> String {
    let row = text
        .lines()
        .skip_while(|l| !l.starts_with("shard state"))
        .skip(1)
        .find(|l| l.split_whitespace().next() == Some(&shard.to_string()))
        .unwrap_or_else(|| panic!("no row for shard {shard}:\n{text}"));
    // "1     stale        2 …" or "0     not started  2 …": the state is the text between
    // the number and the tile count.
    row[6..18].trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_record_older_than_a_minute_is_stale_and_a_finished_one_never_is() {
    let w = Work::new();
    w.listed_tiles(2000, &tile_names(4));
    w.ok(&["init"]);
    let plan = w.dir.path().join("plan");
    let p = plan.display().to_string();
    w.ok(&["plan", "--all", "--shards", "2", "--out", &p]);
    assert_eq!(states(&w, &p), ["not started", "not started"]);

    // Shard 0 runs to its end; shard 1 is killed with -9 inside its commit, its record left
    // saying `running`, as a task whose node was lost leaves it.
    w.ok(&["write", "--plan", &p, "--shard", "0"]);
    let mut task = w.spawn_with(
        &["write", "--plan", &p, "--shard", "1"],
        &w.hold_env("chunks-uploaded#1"),
    );
    w.wait_held("chunks-uploaded", 1);
    task.kill().unwrap();
    task.wait().unwrap();
    let left = json(&std::fs::read_to_string(record_path(&plan, 1)).unwrap());
    assert_eq!(left["state"], "running", "{left}");
    assert_eq!(states(&w, &p), ["done", "running"]);

    // 50 s without a word: still running. 70 s: stale (its task is gone).
    age_record(&plan, 1, chrono::Duration::seconds(50));
    assert_eq!(states(&w, &p), ["done", "running"]);
    age_record(&plan, 1, chrono::Duration::seconds(70));
    // A finished record never goes stale, however old.
    age_record(&plan, 0, chrono::Duration::hours(5));
    assert_eq!(states(&w, &p), ["done", "stale"]);
    let text = w.ok(&["status", "--plan", &p]);
    assert!(text.contains("(1 done, 1 stale)"), "{text}");
    assert_eq!(state_in_table(&text, 0), "done", "{text}");
    assert_eq!(state_in_table(&text, 1), "stale", "{text}");

    // The shard re-run replaces its record: done, both tiles landed.
    let out = w.ok(&["write", "--plan", &p, "--shard", "1"]);
    assert!(out.contains("2 tiles written"), "{out}");
    assert_eq!(states(&w, &p), ["done", "done"]);
    let st = json(&w.ok(&["status", "--plan", &p, "--json"]));
    assert_eq!(st["landed"], 4, "{st}");
    let r = json(&std::fs::read_to_string(record_path(&plan, 1)).unwrap());
    assert_ne!(r["attempt"], left["attempt"], "a new attempt's record");
}

/// A record as seen by a poller: when it changed, and its `updated`.
struct Seen {
    updated: chrono::DateTime<chrono::Utc>,
    state: String,
    landed: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_task_rewrites_its_record_at_most_once_a_second_and_at_least_every_ten() {
    let moto = Moto::start();
    moto.create_bucket("plans");
    // 48 tiles of 2000 px in 100 px chunks (400 a tile), one thread: progress events every
    // few milliseconds for several seconds.
    let w = Work::with_grid(2_000, 100);
    let names = tile_names(48);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let env = moto.env();
    let plan = "s3://plans/p";
    let made = w.run_with(&["plan", "--all", "--shards", "1", "--out", plan], &env);
    assert!(made.status.success(), "{}", stderr(&made));

    // The task is held inside its one commit, after every tile: nothing changes there.
    let mut run_env = env.clone();
    run_env.extend(w.hold_env("chunks-uploaded#1"));
    let mut task = w.spawn_with(
        &["write", "--plan", plan, "--shard", "0", "--threads", "1"],
        &run_env,
    );
    let held_marker = w.dir.path().join("hold-chunks-uploaded-1.reached");
    let mut seen: Vec<Seen> = vec![];
    let mut held_at: Option<Instant> = None;
    let mut held_wall: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut released_wall: Option<chrono::DateTime<chrono::Utc>> = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "the shard never finished");
        if moto.list("plans", "p/shards").await.len() == 1 {
            let r = json(&String::from_utf8_lossy(
                &moto.get("plans", "p/shards/0000.json").await,
            ));
            let updated: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(r["updated"].clone()).unwrap();
            if seen.last().is_none_or(|s| s.updated != updated) {
                seen.push(Seen {
                    updated,
                    state: r["state"].as_str().unwrap().to_string(),
                    landed: r["landed"].as_u64().unwrap(),
                });
            }
        }
        if held_at.is_none() && held_marker.exists() {
            held_at = Some(Instant::now());
            held_wall = Some(chrono::Utc::now());
        }
        // Held for 25 s: two heartbeats at least; then let the commit go.
        if let Some(t) = held_at
            && t.elapsed() > Duration::from_secs(25)
            && released_wall.is_none()
        {
            released_wall = Some(chrono::Utc::now());
            w.release("chunks-uploaded", 1);
        }
        if seen.last().is_some_and(|s| s.state != "running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = task.wait().unwrap();
    assert!(status.success(), "the shard succeeded");
    assert_eq!(seen.last().unwrap().state, "done");

    // Every rewrite until the commit was let go (then the commit lands and the shard ends,
    // each written at once), split at the moment the task was held.
    let held = held_wall.expect("the task reached its commit");
    let released = released_wall.expect("the commit was let go");
    let running: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.state == "running" && s.updated < released)
        .collect();
    let gap = |p: &[&Seen]| (p[1].updated - p[0].updated).as_seconds_f64();
    let gaps: Vec<f64> = running.windows(2).map(gap).collect();
    let busy: Vec<f64> = running
        .iter()
        .take_while(|s| s.updated < held)
        .copied()
        .collect::<Vec<_>>()
        .windows(2)
        .map(gap)
        .collect();
    let idle: Vec<f64> = running
        .iter()
        .filter(|s| s.updated >= held)
        .copied()
        .collect::<Vec<_>>()
        .windows(2)
        .map(gap)
        .collect();
    eprintln!(
        "{} rewrites while running; gaps while writing {busy:.2?}, while held {idle:.2?}, all {gaps:.2?}",
        running.len()
    );
    // At most about once a second, though tiles progressed many times a second.
    assert!(
        busy.len() >= 3,
        "several rewrites while tiles progressed: {busy:.2?}"
    );
    assert!(
        gaps.iter().all(|&g| g >= 0.95),
        "a record rewritten within a second of the last: {gaps:.2?}"
    );
    // At least every 10 s (and its interval's tick), busy or not.
    assert!(
        gaps.iter().all(|&g| g <= 11.0),
        "a running task left its record unchanged for over 10 s: {gaps:.2?}"
    );
    // Held 25 s with nothing changing: rewritten by the heartbeat alone, every 10 s.
    assert!(
        !idle.is_empty() && idle.iter().all(|&g| (9.5..=11.0).contains(&g)),
        "heartbeats every 10 s while held: {idle:.2?}"
    );
    let heartbeats = gaps.iter().filter(|&&g| g >= 9.5).count();
    assert!(heartbeats >= 2, "two heartbeats in 25 s held: {gaps:.2?}");
    let st = json(&String::from_utf8_lossy(
        &w.run_with(&["status", "--plan", plan, "--json"], &env)
            .stdout,
    ));
    assert_eq!(st["shards"][0]["state"], "done", "{st}");
    assert_eq!(st["landed"], names.len(), "{st}");
}

#[test]
fn a_task_whose_plan_is_a_directory_rewrites_its_record_at_most_once_a_second_too() {
    // The same busy shard as above, its plan in a directory (a shared file system's, for an
    // array of tasks): README's "rewritten at most about once a second" holds there too.
    let w = Work::with_grid(2_000, 100);
    let names = tile_names(48);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let plan = w.dir.path().join("plan");
    let p = plan.display().to_string();
    w.ok(&["plan", "--all", "--shards", "1", "--out", &p]);
    let mut task = w.spawn_with(
        &["write", "--plan", &p, "--shard", "0", "--threads", "1"],
        &[],
    );
    let mut seen: Vec<Seen> = vec![];
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "the shard never finished");
        // Replaced whole (written aside, then renamed): every read is a whole record.
        if let Ok(text) = std::fs::read_to_string(record_path(&plan, 0)) {
            let r = json(&text);
            let updated: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(r["updated"].clone()).unwrap();
            if seen.last().is_none_or(|s| s.updated != updated) {
                seen.push(Seen {
                    updated,
                    state: r["state"].as_str().unwrap().to_string(),
                    landed: r["landed"].as_u64().unwrap(),
                });
            }
        }
        if seen.last().is_some_and(|s| s.state != "running") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(task.wait().unwrap().success(), "the shard succeeded");
    // Until the commit lands (written at once, as the end is), nothing but progress.
    let busy: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.state == "running" && s.landed == 0)
        .collect();
    let gaps: Vec<f64> = busy
        .windows(2)
        .map(|p| (p[1].updated - p[0].updated).as_seconds_f64())
        .collect();
    eprintln!("{} rewrites while writing, gaps {gaps:.2?}", busy.len());
    assert!(
        gaps.len() >= 3,
        "several rewrites while writing: {gaps:.2?}"
    );
    assert!(
        gaps.iter().all(|&g| g >= 0.95),
        "a record in a plan directory rewritten within a second of the last: {gaps:.2?}"
    );
}

#[test]
fn merge_refuses_a_shard_that_staged_nothing_and_one_that_failed_each_by_name() {
    let w = Work::new();
    let names = tile_names(6);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let plan = w.dir.path().join("plan");
    let p = plan.display().to_string();
    let stage = w.dir.path().join("stage").display().to_string();
    w.ok(&["plan", "--all", "--shards", "3", "--out", &p]);
    let planned = json(&std::fs::read_to_string(plan.join("plan.json")).unwrap());
    let shard_tiles: Vec<Vec<String>> = planned["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|j| j["tile"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert!(shard_tiles.iter().all(|s| s.len() == 2), "{shard_tiles:?}");
    // Shard 0 stages its tiles; shard 1 never runs; shard 2 meets a bad tile.
    let bad = shard_tiles[2][1].clone();
    w.tile(2000, &bad, Flaw::Int16);
    let o = w.run(&["write", "--plan", &p, "--shard", "0", "--stage", &stage]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = w.run(&["write", "--plan", &p, "--shard", "2", "--stage", &stage]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let head = w.written_by_commit(2000);

    let o = w.run(&["merge", "--plan", &p, "--stage", &stage]);
    let said = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "merge refused: {said}");
    assert!(said.contains("merge refused:\n"), "{said}");
    assert!(
        said.contains(&format!("\nshard 1: nothing staged in {stage} (2 tiles)\n")),
        "the missing shard, by name: {said}"
    );
    assert!(
        said.contains(&format!(
            "\nshard 2: 1 of 2 tiles failed: 2000/{bad} (data type is int16; expected uint8)\n"
        )),
        "the failed shard, by name, with its tile and reason: {said}"
    );
    assert!(!said.contains("shard 0:"), "shard 0 is fine: {said}");
    assert!(
        said.contains("re-run those shards, or pass --partial"),
        "{said}"
    );
    assert_eq!(
        w.written_by_commit(2000),
        head,
        "a refused merge commits nothing"
    );

    // Shard 1 run, shard 2 re-run with its tile mended: the merge lands every tile at once.
    w.tile(2000, &bad, Flaw::None);
    for i in ["1", "2"] {
        let o = w.run(&["write", "--plan", &p, "--shard", i, "--stage", &stage]);
        assert!(o.status.success(), "shard {i}: {}", stderr(&o));
    }
    let o = w.run(&["merge", "--plan", &p, "--stage", &stage]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("merged 6 tiles from 3 shards"),
        "{}",
        stdout(&o)
    );
    let commits = w.written_by_commit(2000);
    assert_eq!(commits.len(), 1, "one merge commit: {commits:?}");
    let mut all = names.clone();
    all.sort();
    let mut got = commits[0].clone();
    got.sort();
    assert_eq!(got, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_repository_gets_the_shared_file_system_note_and_an_s3_one_does_not() {
    let w = Work::new();
    w.listed_tiles(2000, &tile_names(4));
    w.ok(&["init"]);
    let plan = w.dir.path().join("plan").display().to_string();
    let stage = w.dir.path().join("stage").display().to_string();

    let o = w.run(&["plan", "--all", "--shards", "2", "--out", &plan]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).lines().any(|l| l == NFS_NOTE),
        "plan says so: {}",
        stderr(&o)
    );
    assert!(
        !stdout(&o).contains("NFS"),
        "on stderr only: {}",
        stdout(&o)
    );
    // A scheduler's task in checkpoint mode says so too.
    let slurm = [("SLURM_ARRAY_TASK_ID", "0".to_string())];
    let o = w.run_with(&["write", "--plan", &plan, "--shard", "auto"], &slurm);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).lines().any(|l| l == NFS_NOTE),
        "the task says so: {}",
        stderr(&o)
    );
    // In stage mode only `merge` commits: nothing to warn of.
    let staged = w.dir.path().join("plan-staged").display().to_string();
    w.ok(&["plan", "--all", "--shards", "1", "--out", &staged]);
    let o = w.run_with(
        &[
            "write", "--plan", &staged, "--shard", "auto", "--stage", &stage,
        ],
        &slurm,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("NFS"), "{}", stderr(&o));

    // An s3:// repository: neither plan nor task says it.
    let moto = Moto::start();
    moto.create_bucket("cubes");
    let env = moto.env();
    let repo = "s3://cubes/c";
    let o = w.run_with(&["--repo", repo, "init"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let s3_plan = w.dir.path().join("plan-s3").display().to_string();
    let o = w.run_with(
        &[
            "--repo", repo, "plan", "--all", "--shards", "2", "--out", &s3_plan,
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("NFS"), "{}", stderr(&o));
    let mut task_env = env.clone();
    task_env.extend(slurm.iter().cloned());
    let o = w.run_with(&["write", "--plan", &s3_plan, "--shard", "auto"], &task_env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("NFS"), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 tiles written"), "{}", stdout(&o));
}

/// An operator's hand on the records: a record that is garbage, one that names another
/// shard, one dated in the future each show as that shard's problem while the other shards
/// still show; a repository made again since the plan is refused by `status --plan` as by
/// its tasks; a second task of a running shard is warned about.
#[test]
fn hand_edited_records_show_as_their_shards_problem_and_the_others_still_show() {
    let w = Work::new();
    w.listed_tiles(2000, &tile_names(8));
    w.ok(&["init"]);
    let plan = w.dir.path().join("plan");
    let p = plan.display().to_string();
    w.ok(&["plan", "--all", "--shards", "4", "--out", &p]);
    for shard in 0..4 {
        w.ok(&["write", "--plan", &p, "--shard", &shard.to_string()]);
    }
    // Shard 1: garbage. Shard 2: shard 3's record copied over it. Shard 3: running, dated
    // in 2099.
    std::fs::write(record_path(&plan, 1), "not json {").unwrap();
    std::fs::copy(record_path(&plan, 3), record_path(&plan, 2)).unwrap();
    edit_record(
        &plan,
        3,
        &[
            ("state", serde_json::json!("running")),
            ("updated", serde_json::json!("2099-01-01T00:00:00Z")),
        ],
    );

    let out = w.run(&["status", "--plan", &p]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert_eq!(state_in_table(&text, 0), "done", "{text}");
    assert_eq!(state_in_table(&text, 1), "unreadable", "{text}");
    assert_eq!(state_in_table(&text, 2), "unreadable", "{text}");
    assert_eq!(state_in_table(&text, 3), "stale", "{text}");
    let record1 = record_path(&plan, 1).display().to_string();
    assert!(
        text.contains(&format!("shard 1: {record1}: not a shard record: ")),
        "{text}"
    );
    assert!(
        text.contains("shard 2: its record says shard 3 (edited or copied by hand?)"),
        "{text}"
    );
    assert!(
        text.contains(
            "shard 3: its record is dated 2099-01-01 00:00:00 UTC, in the future (a clock off?)"
        ),
        "{text}"
    );
    // Every tile landed, whatever the records say: the branch is the truth.
    assert!(text.contains("landed in main: 8 of 8"), "{text}");
    let st = json(&w.ok(&["status", "--plan", &p, "--json"]));
    assert_eq!(
        st["shards"][1]["problem"]
            .as_str()
            .map(|s| s.contains("not a shard record")),
        Some(true),
        "{st}"
    );

    // A second task of a shard whose record says it is running now is warned about.
    edit_record(
        &plan,
        0,
        &[
            ("state", serde_json::json!("running")),
            ("updated", serde_json::json!(chrono::Utc::now())),
            ("host", serde_json::json!("node-17")),
            ("pid", serde_json::json!(4242)),
        ],
    );
    let again = w.run(&["write", "--plan", &p, "--shard", "0"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains(
            "warning: shard 0's record says another task is running it (host node-17, pid 4242, updated "
        ),
        "{}",
        stderr(&again)
    );

    // The repository made again at the same path: status --plan refuses, as the tasks do.
    std::fs::remove_dir_all(w.repo()).unwrap();
    w.ok(&["init"]);
    let out = w.run(&["status", "--plan", &p]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("is not the cube the plan was made for (it was made again since)"),
        "{}",
        stderr(&out)
    );
}
