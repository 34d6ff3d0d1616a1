//! Maintenance beside running writes: `gc` spares what a held write may still commit (its
//! announcement in the repository), `repair` lands only on the head it checked, `verify`
//! sees short objects and the holes of a level, and the reference lock outlives the deletion
//! of its file. Each ends with a read-back of the tiles, pixel for pixel.

use crate::common::{Work, t, tile_names};
use crate::hostile::manifest_of_level;
use crate::hygiene::{assert_head_exact, verify_ok};

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

/// The object id of a stored level-0 chunk of `tile` in 2000, in the head.
async fn stored_chunk_of(w: &Work, tile: &str) -> String {
    use futures::TryStreamExt;
    let cube = w.cube().await;
    let session = cube.head_session().await.unwrap();
    let path = cube.layout.level_path(0);
    let mut all = Box::pin(session.all_chunks().await.unwrap());
    while let Some((p, info)) = all.try_next().await.unwrap() {
        if p.to_string() == path
            && cube.layout.tile_of_chunk(&info.coord.0) == Some((2000, t(tile)))
            && let icechunk::format::manifest::ChunkPayload::Ref(r) = info.payload
        {
            return r.id.to_string();
        }
    }
    panic!("no stored chunk of {tile}")
}

fn announcements(w: &Work) -> usize {
    std::fs::read_dir(w.repo().join("tilecube-writers"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A write held with its chunks uploaded and not committed: `gc` with an age that reaches
/// them is refused naming the write (its pid), a dry run still counts them, and once
/// released the write lands every tile whole.
#[test]
fn gc_beside_a_held_write_is_refused_and_the_write_lands_whole() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let w = Work::new();
    let names = tile_names(3);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let env = w.hold_env("chunks-uploaded#1");
    let writer = w.spawn_with(
        &["write", "--year", "2000", "--all", "--threads", "1"],
        &env,
    );
    let pid = writer.id();
    w.wait_held("chunks-uploaded", 1);
    assert_eq!(announcements(&w), 1, "the write announced itself");
    std::thread::sleep(std::time::Duration::from_secs(3));
    for age in ["1s", "0s"] {
        let o = w.run(&["gc", "--older-than", age]);
        let said = text(&o);
        assert_eq!(o.status.code(), Some(2), "gc {age} must be refused: {said}");
        assert!(
            said.contains(&format!("gc --older-than {age} is refused"))
                && said.contains(&format!("pid {pid}"))
                && said.contains("give an age of at least"),
            "{said}"
        );
    }
    let dry = json(&w.ok(&["gc", "--older-than", "0s", "--dry-run", "--json"]));
    assert!(
        dry["chunks"]["objects"].as_u64().unwrap_or(0) > 0,
        "the held write's uploads are unreferenced: {dry}"
    );
    assert_eq!(dry["writers"].as_array().map(Vec::len), Some(1), "{dry}");
    w.release("chunks-uploaded", 1);
    let out = writer.wait_with_output().expect("writer");
    assert!(
        out.status.success(),
        "the write failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        announcements(&w),
        0,
        "the ended write took its announcement back"
    );
    // Nothing holds back a gc now; it takes nothing the cube reads.
    w.ok(&["gc", "--older-than", "0s"]);
    rt.block_on(assert_head_exact(&w, &names, "after gc beside the write"));
    verify_ok(&w, &[], &[], "after gc beside the write");
}

/// A write killed at its commit leaves its announcement; on its own host gc knows the
/// process is gone and is not held back by it.
#[test]
fn a_killed_writers_announcement_holds_nothing_back() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let o = w.run_with(
        &["write", "--year", "2000", "--all"],
        &[("TILECUBE_TEST_STOP_AT", "chunks-uploaded".into())],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(
        announcements(&w),
        1,
        "the killed write's announcement stays"
    );
    let g = json(&w.ok(&["gc", "--older-than", "0s", "--json"]));
    assert!(g["chunks"]["objects"].as_u64().unwrap_or(0) > 0, "{g}");
    assert!(
        g.get("writers").is_none(),
        "a dead writer is not listed: {g}"
    );
}

/// `repair` checks the head, a write lands a new chunk of the tile whose chunk was lost,
/// then the repair's commit: it must not land over the write (which it did not check), so it
/// checks again and finds nothing to drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_racing_a_write_drops_nothing_the_write_landed() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    // One level-0 chunk of the first tile lost.
    let lost = stored_chunk_of(&w, &names[0]).await;
    std::fs::remove_file(w.repo().join("chunks").join(&lost)).unwrap();
    // The repair checks the head (the chunk is lost) and is held before its commit.
    let env = w.hold_env("repair-checked#1");
    let repair = w.spawn_with(&["repair"], &env);
    w.wait_held("repair-checked", 1);
    // Meanwhile the tile is written again: a new, valid chunk.
    w.ok(&["write", "--tiles", &names[0], "--year", "2000"]);
    w.release("repair-checked", 1);
    let out = repair.wait_with_output().expect("repair");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("nothing to repair"),
        "the repair checked the new head again and found nothing lost: {said}"
    );
    assert_head_exact(&w, &names, "after repair beside a write").await;
    verify_ok(&w, &[], &[], "after repair beside a write");
}

/// A chunk object cut short fails `verify` naming its tile, `repair` drops it, `write
/// --missing` writes the tile again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chunk_fails_verify_and_repair_drops_it() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let cut = stored_chunk_of(&w, &names[1]).await;
    std::fs::write(w.repo().join("chunks").join(&cut), b"").unwrap();
    let o = w.run(&["verify"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("short: 2000/{}: 1 chunk objects", names[1])),
        "{said}"
    );
    let o = w.run(&["status"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "status marks the tile verify found: {}",
        text(&o)
    );
    let out = w.ok(&["repair"]);
    assert!(
        out.contains("dropped references to chunk objects cut short: 2000 level 0: 1 chunk"),
        "{out}"
    );
    let out = w.ok(&["write", "--missing"]);
    assert!(out.contains("1 tile written"), "{out}");
    assert_head_exact(&w, &names, "after the short chunk's repair").await;
    verify_ok(&w, &[], &[], "after the short chunk's repair");
}

/// A lost manifest of a level written with the tile: after `repair` the level has a hole
/// where level 0 holds data; `verify` names it, `status` marks the tile and exits 1, `repair`
/// says the level is incomplete, `overviews` fills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_level_manifest_after_repair_is_a_hole_verify_and_status_report() {
    let w = Work::with_overviews(Some(400));
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let lost = manifest_of_level(&w, 1, 2000, &names[0]).await;
    std::fs::remove_file(w.repo().join("manifests").join(&lost)).unwrap();
    let out = w.ok(&["repair"]);
    assert!(
        out.contains(&format!("dropped lost manifest {lost}")),
        "{out}"
    );
    assert!(
        out.contains("left incomplete: overview levels ×2") && out.contains("`tilecube overviews`"),
        "{out}"
    );
    let o = w.run(&["verify"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("hole: 2000/{} ×2:", names[0])),
        "verify names the level and the tile: {said}"
    );
    let o = w.run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let st = json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(st["years"]["2000"]["tiles"][&names[0]], "hole", "{st}");
    assert_eq!(st["years"]["2000"]["tiles"][&names[1]], "written", "{st}");
    w.ok(&["overviews"]);
    verify_ok(&w, &[], &[], "after overviews");
    w.ok(&["status"]);
    assert_head_exact(&w, &names, "after overviews").await;
}

/// The lock file deleted while a commit holds the lock: a second committer still waits
/// (the lock is on the directory), says who holds it, and both commits land.
#[test]
fn deleting_the_lock_file_lets_no_second_committer_in() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let env = w.hold_env("snapshot-written#1");
    let first = w.spawn_with(&["write", "--year", "2000", "--tiles", &names[0]], &env);
    w.wait_held("snapshot-written", 1);
    let note = w.repo().join(tilecube::cube::LOCK_FILE);
    let holder = std::fs::read_to_string(&note).unwrap_or_default();
    assert!(holder.contains(&format!("pid {}", first.id())), "{holder}");
    std::fs::remove_file(&note).unwrap();
    let second = w.spawn_with(&["write", "--year", "2000", "--tiles", &names[1]], &[]);
    std::thread::sleep(std::time::Duration::from_secs(6));
    w.release("snapshot-written", 1);
    let a = first.wait_with_output().expect("first");
    let b = second.wait_with_output().expect("second");
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let waited = String::from_utf8_lossy(&b.stderr);
    assert!(
        waited.contains("waiting") && waited.contains("commit lock"),
        "the second committer said what it waited for: {waited}"
    );
    let log = w.ok(&["log"]);
    for n in &names {
        assert!(log.contains(n.as_str()), "{n} is in the history: {log}");
    }
    rt.block_on(assert_head_exact(&w, &names, "after the deleted lock"));
}

/// A write with checkpoints ended by a concurrent `extend`: it names the tile that landed at
/// its first checkpoint and those that did not; `write --missing` writes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_ended_by_extend_names_what_landed_and_what_did_not() {
    let w = Work::new();
    let names = tile_names(3);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let env = w.hold_env("chunks-uploaded#2");
    let writer = w.spawn_with(
        &[
            "write",
            "--year",
            "2000",
            "--all",
            "--threads",
            "1",
            "--commit-every",
            "1",
        ],
        &env,
    );
    w.wait_held("chunks-uploaded", 2);
    let o = w.run(&["extend", "--year", "2025"]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("warning: 1 write going on this repository")
            && said.contains("running: write on"),
        "extend names the write going on: {said}"
    );
    w.release("chunks-uploaded", 2);
    let out = writer.wait_with_output().expect("writer");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("1 tile of this write landed at its checkpoints (2000/")
            && said.contains("in 1 commit; 2 tiles did not (")
            && said.contains("`write --missing` writes them"),
        "{said}"
    );
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 1, "{st}");
    let out = w.ok(&["write", "--missing", "--year", "2000"]);
    assert!(out.contains("2 tiles written"), "{out}");
    assert_head_exact(&w, &names, "after the write ended by extend").await;
    verify_ok(&w, &[], &[], "after the write ended by extend");
}

/// `expire --older-than 0s` beside a held write keeps the snapshot the write started from,
/// says so, and the write lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_beside_a_held_write_keeps_its_base_and_the_write_lands() {
    let w = Work::new();
    let names = tile_names(3);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", &names[0]]);
    w.ok(&["write", "--year", "2000", "--tiles", &names[1]]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let env = w.hold_env("chunks-uploaded#1");
    let writer = w.spawn_with(&["write", "--year", "2000", "--tiles", &names[2]], &env);
    w.wait_held("chunks-uploaded", 1);
    let out = w.ok(&["expire", "--older-than", "0s"]);
    assert!(
        out.contains("running: write on") && out.contains("kept the snapshots flushed since"),
        "{out}"
    );
    w.release("chunks-uploaded", 1);
    let o = writer.wait_with_output().expect("writer");
    assert!(o.status.success(), "{}", text(&o));
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 3, "{st}");
    assert_head_exact(&w, &names, "after expire beside a write").await;
    verify_ok(&w, &[], &[], "after expire beside a write");
}

/// A plan's shards staged and waiting for their merge: `gc` with an age that reaches their
/// uploads is refused naming the plan; the merge lands every tile whole and takes the
/// announcements back, after which gc runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_between_staged_shards_and_their_merge_takes_nothing_of_them() {
    let w = Work::new();
    let names = tile_names(4);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let (plan, stage) = w.staged_shards(2, &[]);
    assert_eq!(announcements(&w), 2, "each staged shard stays announced");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let o = w.run(&["gc", "--older-than", "1s"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains("gc --older-than 1s is refused") && said.contains("staged since"),
        "{said}"
    );
    let dry = json(&w.ok(&["gc", "--older-than", "0s", "--dry-run", "--json"]));
    assert!(
        dry["chunks"]["objects"].as_u64().unwrap_or(0) > 0,
        "the staged uploads are unreferenced until the merge: {dry}"
    );
    let out = w.ok(&["merge", "--plan", &plan, "--stage", &stage]);
    assert!(out.contains("merged 4 tiles from 2 shards"), "{out}");
    assert_eq!(
        announcements(&w),
        0,
        "the merge took the announcements back"
    );
    w.ok(&["gc", "--older-than", "0s"]);
    assert_head_exact(&w, &names, "after gc and merge").await;
    verify_ok(&w, &[], &[], "after gc and merge");
}

/// The same guard on an S3 repository: the announcement lives in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_beside_a_held_write_on_s3_is_refused_and_the_write_lands_whole() {
    use crate::common::s3::Moto;
    let moto = Moto::start();
    moto.create_bucket("cubes");
    let env = moto.env();
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    let repo = "s3://cubes/beside";
    let with = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["--repo".to_string(), repo.to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        a
    };
    let run = |args: &[&str]| {
        let a = with(args);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        w.run_with(&refs, &env)
    };
    assert!(run(&["init"]).status.success());
    let mut hold = env.clone();
    hold.extend(w.hold_env("chunks-uploaded#1"));
    let a = with(&["write", "--year", "2000", "--all", "--threads", "1"]);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let writer = w.spawn_with(&refs, &hold);
    let pid = writer.id();
    w.wait_held("chunks-uploaded", 1);
    assert_eq!(
        moto.list("cubes", "beside/tilecube-writers").await.len(),
        1,
        "the write announced itself in the bucket"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let o = run(&["gc", "--older-than", "1s"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(said.contains(&format!("pid {pid}")), "{said}");
    w.release("chunks-uploaded", 1);
    let out = writer.wait_with_output().expect("writer");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        moto.list("cubes", "beside/tilecube-writers")
            .await
            .is_empty(),
        "the announcement was taken back"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let g = run(&["gc", "--older-than", "0s"]);
    assert!(g.status.success(), "{}", text(&g));
    let v = run(&["verify"]);
    assert!(v.status.success(), "{}", text(&v));
    moto.export();
    let cube = tilecube::cube::Cube::open(
        tilecube::cube::RepoLocation::parse(
            repo,
            &tilecube::storage_settings::StorageSettings::from_env().expect("storage settings"),
        )
        .expect("location"),
        "main",
    )
    .await
    .expect("open");
    for n in &names {
        let path = tilecube::demo::tile_path(&w.source(), 2000, t(n));
        assert!(
            crate::common::cube_pixels(&cube, 2000, t(n)).await
                == crate::common::gdal_pixels(&path),
            "{n} differs"
        );
    }
}

/// `overviews` announces itself like a write: a gc beside it is refused, and it lands every
/// level whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_beside_a_held_overviews_run_is_refused() {
    let w = Work::with_overviews(Some(400));
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let env = w.hold_env("chunks-uploaded#1");
    let run = w.spawn_with(&["overviews"], &env);
    w.wait_held("chunks-uploaded", 1);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let o = w.run(&["gc", "--older-than", "1s"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(said.contains("overviews on"), "{said}");
    w.release("chunks-uploaded", 1);
    let out = run.wait_with_output().expect("overviews");
    assert!(out.status.success(), "{}", text(&out));
    w.ok(&["gc", "--older-than", "0s"]);
    verify_ok(&w, &[], &[], "after gc beside overviews");
    assert_head_exact(&w, &names, "after gc beside overviews").await;
}

/// A tag on a snapshot whose manifest was lost: tagging it warns; gc fails naming the tag,
/// the snapshot and the manifest, and says to delete the tag; `tag --delete` does, and gc
/// runs. Tag names outside ASCII and empty messages are refused saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_names_a_damaged_tag_and_tag_delete_lets_it_run() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let lost = manifest_of_level(&w, 0, 2000, &names[0]).await;
    std::fs::remove_file(w.repo().join("manifests").join(&lost)).unwrap();
    let o = w.run(&["tag", "v1"]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("warning: snapshot") && said.contains("tilecube tag --delete v1"),
        "{said}"
    );
    w.ok(&["repair"]);
    let o = w.run(&["gc", "--older-than", "0s"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains("tag v1")
            && said.contains(&lost)
            && said.contains("tilecube tag --delete v1"),
        "gc names the tag, the manifest and what to do: {said}"
    );
    let out = w.ok(&["tag", "--delete", "v1"]);
    assert!(out.contains("deleted tag v1"), "{out}");
    let o = w.run(&["tag", "--delete", "v1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("there is no tag \"v1\""), "{}", text(&o));
    // The branch's own history still holds the damaged snapshot: gc says so, and how to drop
    // it.
    let o = w.run(&["gc", "--older-than", "0s"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains("branch main: snapshot")
            && said.contains("1 commit back in its history")
            && said.contains(&lost)
            && said.contains("tilecube expire --older-than"),
        "{said}"
    );
    w.ok(&["expire", "--older-than", "0s"]);
    w.ok(&["gc", "--older-than", "0s"]);
    w.ok(&["write", "--missing"]);
    verify_ok(&w, &[], &[], "after the tag's deletion");
    assert_head_exact(&w, &names, "after the tag's deletion").await;

    let o = w.run(&["tag", "über"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("outside ASCII"), "{}", text(&o));
    let o = w.run(&["tag", "v2", "--message", ""]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("the message is empty"), "{}", text(&o));
}

/// A new cube laid out (`init --force`) under a write with checkpoints: `init` names the
/// write, and the write says the cube was replaced, not that its tiles are in it.
#[test]
fn a_write_under_init_force_says_the_cube_was_replaced() {
    let w = Work::new();
    let names = tile_names(3);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let env = w.hold_env("chunks-uploaded#2");
    let writer = w.spawn_with(
        &[
            "write",
            "--year",
            "2000",
            "--all",
            "--threads",
            "1",
            "--commit-every",
            "1",
        ],
        &env,
    );
    w.wait_held("chunks-uploaded", 2);
    let o = w.run(&["init", "--force"]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("running: write on"), "{said}");
    w.release("chunks-uploaded", 2);
    let out = writer.wait_with_output().expect("writer");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("a new cube was laid out on branch main")
            && said.contains("landed at its checkpoints in the cube that was there before")
            && said.contains("none of its 3 tiles is in the cube there now"),
        "{said}"
    );
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 0, "{st}");
}

/// A branch whose head snapshot object is gone is named with the object.
#[test]
fn a_lost_head_snapshot_is_named_with_its_branch_and_object() {
    let w = Work::new();
    let names = tile_names(1);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let log = json(&w.ok(&["log", "--json"]));
    let head = log[0]["id"]
        .as_str()
        .or_else(|| log["commits"][0]["id"].as_str())
        .unwrap_or_else(|| panic!("log --json: {log}"))
        .to_string();
    std::fs::remove_file(w.repo().join("snapshots").join(&head)).unwrap();
    let o = w.run(&["status"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "branch main of {} points at snapshot {head}, whose object snapshots/{head} is not in storage",
            w.repo().display()
        )),
        "{said}"
    );
}
