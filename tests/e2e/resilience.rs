//! Resilience on real processes: checkpoint commits, `kill -9` at many points, the failure
//! journal, concurrent writers, retries against a flaky HTTP server, and storage faults
//! (read-only and full file systems) on real mounts.

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Work, cube_pixels, gdal_pixels, t, tile_names};
use icechunk::format::manifest::ChunkPayload;
use icechunk::format::{ChunkIndices, SnapshotId};
use icechunk::repository::VersionInfo;
use tilecube::cube::{Cube, TileState};
use tilecube::demo::Flaw;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Every tile the head holds is complete and equal to its GeoTIFF; nothing else is stored.
async fn assert_consistent(w: &Work) -> usize {
    let cube = w.cube().await;
    let coverage = cube.coverage().await.expect("coverage");
    let present = cube
        .chunks_present(&VersionInfo::BranchTipRef("main".into()))
        .await
        .expect("chunks");
    for ((year, tile), state) in &coverage.tiles {
        assert!(
            matches!(state, TileState::Written { .. }),
            "{year}/{tile}: {state:?}"
        );
        let path = tilecube::demo::tile_path(&w.source(), *year, *tile);
        assert!(
            cube_pixels(&cube, *year, *tile).await == gdal_pixels(&path),
            "{year}/{tile}"
        );
    }
    let recorded: BTreeSet<_> = coverage.tiles.keys().collect();
    let stored: BTreeSet<_> = present.keys().collect();
    assert!(stored.is_subset(&recorded), "chunks outside recorded tiles");
    coverage.tiles.len()
}

#[test]
fn checkpoints_commit_every_n_tiles_each_recording_its_tiles() {
    let w = Work::new();
    let n = tile_names(6);
    w.listed_tiles(2000, &n);
    w.ok(&["init"]);
    let report = json(&w.ok(&[
        "write",
        "--all",
        "--commit-every",
        "2",
        "--threads",
        "1",
        "--json",
    ]));
    assert_eq!(report["commits"].as_array().unwrap().len(), 3, "{report}");
    let log = json(&w.ok(&["log", "--json"]));
    let writes: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["message"].as_str().unwrap().starts_with("write"))
        .collect();
    assert_eq!(writes.len(), 3);
    for c in writes {
        assert_eq!(c["written"]["2000"].as_object().unwrap().len(), 2, "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_moment_leaves_a_complete_head_and_missing_completes_it() {
    let w = Work::new();
    let n = tile_names(96);
    w.listed_tiles(2000, &n);
    w.ok(&["init"]);
    let config = w.dir.path().join("config.toml");
    let mut killed = 0;
    let mut partial = 0;
    let mut held_before = 0;
    // Each run resumes with --missing and is killed right after its k-th tile finished:
    // before, on and after a checkpoint (every 3 tiles), so kills land mid-strip, mid-upload
    // and mid-commit.
    for i in 0..10u64 {
        let k = 1 + (i * 5) % 7;
        let mut child = Command::new(env!("CARGO_BIN_EXE_tilecube"))
            .arg("--config")
            .arg(&config)
            .args([
                "write",
                "--missing",
                "--commit-every",
                "3",
                "--threads",
                "1",
            ])
            .env("TILECUBE_DATA_DIR", w.dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut finished = 0;
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.starts_with("  2000/") && line.contains(" chunks, ") {
                finished += 1;
                if finished == k {
                    break;
                }
            }
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let held = assert_consistent(&w).await;
        eprintln!("kill point {i} after {finished} finished tiles: {held} tiles in the head");
        assert!(held >= held_before, "a kill lost committed tiles");
        if held > 0 && held < 96 {
            partial += 1;
        }
        held_before = held;
    }
    assert!(
        killed >= 8,
        "only {killed} of 10 runs were killed mid-write"
    );
    assert!(
        partial >= 5,
        "only {partial} of 10 kills left a partly written cube"
    );
    w.ok(&["write", "--missing"]);
    assert_eq!(
        assert_consistent(&w).await,
        96,
        "write --missing completes the cube"
    );
    let status = json(&w.ok(&["status", "--json"]));
    assert_eq!(status["years"]["2000"]["written"], 96);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_journal_keeps_failures_until_write_failed_succeeds() {
    let w = Work::new();
    w.tile(2000, "00N_000E", Flaw::None);
    w.tile(2000, "00N_010E", Flaw::Int16);
    w.list(2000, &["00N_000E", "00N_010E"], "");
    w.ok(&["init"]);
    assert_eq!(w.run(&["write", "--all"]).status.code(), Some(1));
    let status = json(&w.ok(&["status", "--json"]));
    let failed = status["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{status}");
    assert_eq!(failed[0]["tile"], "00N_010E");
    assert_eq!(failed[0]["year"], 2000);
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("expected uint8")
    );
    assert_eq!(failed[0]["attempts"], 1);
    assert!(failed[0]["time"].is_string());
    let on_disk = w.journal_entries();
    assert_eq!(on_disk.len(), 1, "{on_disk:?}");
    assert_eq!(on_disk[0]["tile"], "00N_010E");
    assert_eq!(status["years"]["2000"]["tiles"]["00N_010E"], "failed");
    let text = w.ok(&["status"]);
    assert!(
        text.contains("failed: 2000/00N_010E: data type is int16"),
        "{text}"
    );
    // Still broken: the attempts add up.
    assert_eq!(w.run(&["write", "--failed"]).status.code(), Some(1));
    let status = json(&w.ok(&["status", "--json"]));
    assert_eq!(status["failed"][0]["attempts"], 2);
    // Fixed: write --failed writes it and the journal forgets it.
    w.tile(2000, "00N_010E", Flaw::None);
    let report = json(&w.ok(&["write", "--failed", "--json"]));
    assert_eq!(
        report["written"]["2000"].as_object().unwrap().len(),
        1,
        "{report}"
    );
    let status = json(&w.ok(&["status", "--json"]));
    assert_eq!(status["failed"].as_array().unwrap().len(), 0);
    assert_eq!(status["years"]["2000"]["written"], 2);
    assert!(
        w.journal_entries().is_empty(),
        "the journal on disk forgot the tile: {:?}",
        w.journal_entries()
    );
    // Nothing left to retry: `write --failed` says so, writes nothing, exits 0.
    let again = w.run(&["write", "--failed"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(again.status.success(), "{said}");
    assert!(
        said.contains("the failure journal of this cube holds no tile: nothing to retry")
            && said.contains("0 tiles written"),
        "{said}"
    );
}

async fn chunk_ids(
    cube: &Cube,
    version: &VersionInfo,
    year_index: usize,
    tile: &str,
) -> Vec<Option<String>> {
    let session = cube.session_at(version).await.unwrap();
    let path = icechunk::format::Path::new("/lclu").unwrap();
    let grid = cube.layout.grid();
    let mut out = vec![];
    for c in cube
        .layout
        .tile_chunks(year_index, grid.cell(t(tile)).unwrap())
    {
        let idx = ChunkIndices(c.iter().map(|&v| v as u32).collect());
        let r = session.get_chunk_ref(&path, &idx).await.unwrap();
        out.push(r.map(|p| match p {
            ChunkPayload::Ref(r) => r.id.to_string(),
            other => format!("{other:?}"),
        }));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_both_land_and_never_mix_chunks_of_one_tile() {
    let w = Work::new();
    let n = tile_names(12);
    let refs: Vec<&str> = n.iter().map(|s| s.as_str()).collect();
    w.listed_tiles(2010, &n);
    w.ok(&["init"]);
    // Different tiles at the same time: A uploads its chunks and is held before its commit
    // while B writes and commits; A then rebases onto B's commit. Both land, no tile lost.
    let a = refs[..6].join(",");
    let b = refs[6..].join(",");
    let pa = w.spawn_with(
        &["write", "--tiles", &a, "--year", "2010"],
        &w.hold_env("chunks-uploaded#1"),
    );
    w.wait_held("chunks-uploaded", 1);
    w.ok(&["write", "--tiles", &b, "--year", "2010"]);
    w.release("chunks-uploaded", 1);
    let out = pa.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history = w.cube().await.history().await.unwrap();
    assert_eq!(history[0].written[&2010].len(), 6, "A's commit is the head");
    assert!(
        history[1].written[&2010].contains_key(&t(refs[6])),
        "B's before it"
    );
    assert_eq!(
        history[0].parent.as_deref(),
        Some(history[1].id.as_str()),
        "A's commit was rebased onto B's"
    );
    assert_eq!(assert_consistent(&w).await, 12);

    // The same tiles from two sources with different pixels: A (this source) is held before
    // its commit while B (the other source) writes and commits them; A rebases over B's
    // commit and lands later. Each tile in the head is wholly A's: its pixels are A's source's,
    // and none of its chunks is one B committed.
    let same = refs[..3].join(",");
    let other = w.dir.path().join("other-source");
    for name in &refs[..3] {
        let path = tilecube::demo::tile_path(&other, 2010, t(name));
        tilecube::demo::write_tile(&path, &w.grid, t(name), 2015).unwrap();
    }
    let other_root = other.display().to_string();
    let before = w.cube().await.history().await.unwrap().len();
    let pa = w.spawn_with(
        &["write", "--tiles", &same, "--year", "2010"],
        &[
            ("TILECUBE_TEST_HOLD_AT", "chunks-uploaded#1".to_string()),
            (
                "TILECUBE_TEST_HOLD_FILE",
                w.dir.path().join("hold-same").display().to_string(),
            ),
        ],
    );
    let reached = w.dir.path().join("hold-same-chunks-uploaded-1.reached");
    while !reached.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    w.ok(&[
        "write",
        "--tiles",
        &same,
        "--year",
        "2010",
        "--source",
        &other_root,
    ]);
    std::fs::write(w.dir.path().join("hold-same-chunks-uploaded-1"), "go").unwrap();
    let o = pa.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "both writers land: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cube = w.cube().await;
    let history = cube.history().await.unwrap();
    assert_eq!(history.len(), before + 2, "two commits landed");
    let (later, earlier) = (&history[0], &history[1]);
    assert_eq!(
        later.parent.as_deref(),
        Some(earlier.id.as_str()),
        "A's commit was rebased onto B's"
    );
    let later_source = w.source();
    let head = VersionInfo::BranchTipRef("main".into());
    for tile in &refs[..3] {
        for c in [later, earlier] {
            assert!(
                c.written[&2010].contains_key(&t(tile)),
                "{tile}: recorded by {}",
                c.id
            );
        }
        let path = tilecube::demo::tile_path(&later_source, 2010, t(tile));
        assert!(
            cube_pixels(&cube, 2010, t(tile)).await == gdal_pixels(&path),
            "{tile}: the head holds the later run's pixels, every chunk of them"
        );
        let now = chunk_ids(&cube, &head, 2, tile).await;
        let id = SnapshotId::try_from(earlier.id.as_str()).unwrap();
        let then = chunk_ids(&cube, &VersionInfo::SnapshotId(id), 2, tile).await;
        let shared = now.iter().zip(&then).filter(|(a, b)| a == b).count();
        assert_eq!(
            shared,
            0,
            "{tile}: {shared} of {} chunks in the head are the earlier run's",
            now.len()
        );
    }
    // The first source's pixels again, for the consistency check below.
    w.ok(&["write", "--tiles", &same, "--year", "2010"]);
    assert_eq!(assert_consistent(&w).await, 12);
}

/// Commits racing on one local branch, from two processes: Icechunk's local storage has no
/// conditional writes, so without tilecube's reference lock a commit made while another has
/// written its snapshot but not yet moved the branch would be overwritten by it. Writer A is
/// held there, at `snapshot-written`; writer B, started then, must wait for the lock (it is
/// still running seconds later), and lands after A, onto A's commit.
async fn racing_commits_are_never_lost(spec_version: &str) {
    let w = Work::new();
    let n = tile_names(2);
    w.listed_tiles(2015, &n);
    w.ok(&["init", "--spec-version", spec_version]);
    let pa = w.spawn_with(
        &["write", "--tiles", &n[0], "--year", "2015"],
        &w.hold_env("snapshot-written#1"),
    );
    w.wait_held("snapshot-written", 1);
    let mut pb = w.spawn_with(&["write", "--tiles", &n[1], "--year", "2015"], &[]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        pb.try_wait().expect("writer B").is_none(),
        "writer B committed while A held the reference lock"
    );
    w.release("snapshot-written", 1);
    for p in [pa, pb] {
        let o = p.wait_with_output().expect("writer");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let history = w.cube().await.history().await.expect("history");
    let (b, a) = (&history[0], &history[1]);
    assert!(
        a.written[&2015].contains_key(&t(&n[0])),
        "A's commit: {a:?}"
    );
    assert!(
        b.written[&2015].contains_key(&t(&n[1])),
        "B's commit: {b:?}"
    );
    assert_eq!(b.parent.as_deref(), Some(a.id.as_str()), "B landed onto A");
    assert_eq!(assert_consistent(&w).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_commits_on_a_local_spec_1_repository_are_never_lost() {
    racing_commits_are_never_lost("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_commits_on_a_local_spec_2_repository_are_never_lost() {
    racing_commits_are_never_lost("2").await;
}

fn start_flaky(root: &Path, always_fail: &[&str]) -> (std::process::Child, u16) {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/flaky_http.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(root).args(["--fail-first", "1"]);
    for a in always_fail {
        cmd.args(["--always-fail", a]);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("flaky server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().parse().expect("port"))
}

#[test]
fn transient_http_errors_are_retried_and_permanent_ones_are_not() {
    let w = Work::new();
    w.tile(2000, "00N_000E", Flaw::None); // 503 once, then serves: written
    w.tile(2000, "00N_010E", Flaw::None); // always 503
    w.tile(2000, "00N_020E", Flaw::ThreeBands); // 503 once, then a permanent error
    w.list(
        2000,
        &[
            "00N_000E", "00N_010E", "00N_020E", "00N_030E", /* 404 */
        ],
        "",
    );
    w.ok(&["init"]);
    let (mut server, port) = start_flaky(&w.source(), &["2000/00N_010E.tif"]);
    let source = format!("http://127.0.0.1:{port}");
    let out = w.run(&["--source", &source, "write", "--all", "--json"]);
    let _ = server.kill();
    let _ = server.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // A persistent 503 is retried with backoff, up to the limit.
    assert!(
        stderr.contains("2000/00N_010E: retry 1 after:")
            && stderr.contains("2000/00N_010E: retry 2 after:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("HTTP 503") || stderr.contains("HTTP error code: 503"),
        "the failure gives the status: {stderr}"
    );
    assert_eq!(
        report["written"]["2000"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["00N_000E"]
    );
    let failed = report["failed"].as_array().unwrap();
    let get = |tile: &str| {
        failed
            .iter()
            .find(|f| f["tile"] == tile)
            .unwrap_or_else(|| panic!("{tile} not failed: {report}"))
    };
    let always = get("00N_010E");
    assert_eq!(always["transient"], true);
    assert_eq!(
        always["attempts"], 3,
        "transient errors are retried up to the limit"
    );
    let bands = get("00N_020E");
    assert_eq!(bands["transient"], false);
    assert!(
        bands["error"].as_str().unwrap().contains("has 3 bands"),
        "{bands}"
    );
    let missing = get("00N_030E");
    assert_eq!(missing["transient"], false);
    assert_eq!(missing["attempts"], 1, "permanent errors are not retried");
    assert!(!stderr.contains("00N_030E: retry"), "{stderr}");
    let cube_ok = w.ok(&["status", "--json"]);
    assert_eq!(json(&cube_ok)["years"]["2000"]["written"], 1);
}

/// A tmpfs mounted for a test, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mounting a tmpfs (the storage-fault tests run as root)");
        Self(dir.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {opts}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_and_full_storage_fail_clearly_keep_the_head_and_resume() {
    let w = Work::new();
    let n = tile_names(12);
    let refs: Vec<&str> = n.iter().map(|s| s.as_str()).collect();
    w.listed_tiles(2020, &n);
    let mount = Mount::tmpfs(&w.repo(), "64m");
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2020", "--tiles", &refs[..2].join(",")]);

    // Read-only: a clear error, the head intact, then resumable.
    mount.remount("ro");
    let out = w.run(&["write", "--year", "2020", "--tiles", &refs[2..4].join(",")]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.to_lowercase().contains("read-only file system"),
        "{err}"
    );
    assert_eq!(assert_consistent(&w).await, 2);
    mount.remount("rw");

    // Full: a clear error, the head intact, then resumable once there is room. The file
    // system gets room for about one more tile.
    let df = Command::new("df")
        .args(["-B1", "--output=used"])
        .arg(&mount.0)
        .output()
        .unwrap();
    let used: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    mount.remount(&format!("size={}", used + 96 * 1024));
    let out = w.run(&["write", "--missing"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.to_lowercase().contains("no space left on device"),
        "{err}"
    );
    let held = assert_consistent(&w).await;
    assert!((2..12).contains(&held), "{held}");
    mount.remount("size=64m");
    w.ok(&["write", "--missing"]);
    assert_eq!(assert_consistent(&w).await, 12);
    drop(mount);
}

#[test]
fn commit_minutes_checkpoints_a_headless_write_by_time() {
    let w = Work::with_tile(2400);
    let n = tile_names(8);
    w.listed_tiles(2000, &n);
    let config = w.dir.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("commit_minutes = 0.01\n");
    std::fs::write(&config, text).unwrap();
    w.ok(&["init"]);
    let started = chrono::Utc::now();
    let report = json(&w.ok(&["write", "--all", "--threads", "1", "--json"]));
    let commits = report["commits"].as_array().unwrap().len();
    assert!(commits >= 2, "checkpoints every 0.6 s: {report}");
    // None before its time: each checkpoint 0.6 s or more after the one before.
    let timed = w.assert_checkpoints_by_time(2000, started, std::time::Duration::from_millis(600));
    assert_eq!(timed, commits);
    let recorded: Vec<usize> = w.written_by_commit(2000).iter().map(Vec::len).collect();
    assert_eq!(recorded.len(), commits, "{recorded:?}");
    assert_eq!(
        recorded.iter().sum::<usize>(),
        8,
        "each tile in one commit: {recorded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_commit_racing_checkpoints_records_exactly_its_tiles() {
    use std::sync::Arc;
    use tilecube::cube::WriteSession;
    use tilecube::ingest::{self, EventSink, IngestOptions, Selection};
    let w = Work::new();
    let n = tile_names(24);
    w.listed_tiles(2000, &n);
    w.ok(&["init"]);
    let cube = w.cube().await;
    let session = WriteSession::open(&cube).await.unwrap();
    let source = tilecube::source::Source::new(
        &w.source().display().to_string(),
        &tilecube::preset::Preset::glad().source,
    )
    .unwrap();
    let plan = ingest::plan(&cube, &source, &[2000], &Selection::All, None)
        .await
        .unwrap();
    let options = IngestOptions {
        threads: 1,
        commit_every: 3,
        final_commit: false,
        ..IngestOptions::default()
    };
    // Checkpoints every three tiles, and the "operator" committing whatever is pending as
    // often as it can, both through the one session.
    let writer = {
        let session = Arc::clone(&session);
        tokio::spawn(async move {
            ingest::ingest_into(
                &session,
                plan.jobs,
                &options,
                EventSink::none(),
                Arc::default(),
            )
            .await
            .unwrap()
        })
    };
    let mut operator = 0;
    while !writer.is_finished() {
        if session.commit(Some("operator")).await.unwrap().is_some() {
            operator += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let report = writer.await.unwrap();
    if session.commit(Some("operator")).await.unwrap().is_some() {
        operator += 1;
    }
    assert_eq!(report.written_count(), 24);
    assert!(operator > 0, "the operator's commits raced the checkpoints");
    // Every commit records exactly the tiles whose chunks it changed.
    let cube = w.cube().await;
    let history = cube.history().await.unwrap();
    let mut seen = BTreeSet::new();
    for c in history.iter().filter(|c| !c.written.is_empty()) {
        let parent = c.parent.as_deref().unwrap();
        let at = |id: &str| VersionInfo::SnapshotId(SnapshotId::try_from(id).unwrap());
        for name in &n {
            let now = chunk_ids(&cube, &at(&c.id), 0, name).await;
            let before = chunk_ids(&cube, &at(parent), 0, name).await;
            let recorded = c.written[&2000].contains_key(&t(name));
            assert_eq!(
                now != before,
                recorded,
                "{name} in commit {} ({}): changed {} but recorded {recorded}",
                c.id,
                c.message,
                now != before
            );
            if recorded {
                assert!(seen.insert(name.clone()), "{name} recorded twice");
            }
        }
    }
    assert_eq!(seen.len(), 24);
    assert_eq!(assert_consistent(&w).await, 24);
}
