//! Storage hygiene: `tilecube gc` deletes exactly the objects no branch or tag reaches (here
//! the uploads of a write killed after every chunk was stored), never one younger than its
//! age (a write running meanwhile loses nothing); `tilecube expire` drops old snapshots after
//! carrying their records of tiles forward, so `status` says the same and the head and a tag
//! read pixel for pixel as before, on spec 1 and spec 2, locally and on S3 (moto).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;

use common::s3::Moto;
use common::{Work, cube_pixels, gdal_pixels, t, tile_names};
use futures::TryStreamExt;
use icechunk::format::manifest::ChunkPayload;
use icechunk::repository::VersionInfo;
use tilecube::cube::{Cube, RepoLocation};
use tilecube::storage_settings::StorageSettings;
use zarrs::array::{Array, ArraySubset};
use zarrs_icechunk::AsyncIcechunkStore;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The object kinds of a repository, by their directory.
const KINDS: [&str; 4] = ["chunks", "manifests", "snapshots", "transactions"];

/// The objects of a local repository, by kind: name → size.
fn objects(repo: &Path) -> BTreeMap<&'static str, BTreeMap<String, u64>> {
    KINDS
        .iter()
        .map(|kind| {
            let files = std::fs::read_dir(repo.join(kind))
                .map(|d| {
                    d.flatten()
                        .map(|e| {
                            let size = e.metadata().expect("metadata").len();
                            (e.file_name().to_string_lossy().into_owned(), size)
                        })
                        .collect()
                })
                .unwrap_or_default();
            (*kind, files)
        })
        .collect()
}

/// The chunk objects referenced by any snapshot of any branch's or tag's ancestry.
async fn referenced_chunks(cube: &Cube) -> BTreeSet<String> {
    let mut versions: Vec<VersionInfo> = cube
        .repo
        .list_branches()
        .await
        .expect("branches")
        .into_iter()
        .map(VersionInfo::BranchTipRef)
        .collect();
    versions.extend(
        cube.repo
            .list_tags()
            .await
            .expect("tags")
            .into_iter()
            .map(VersionInfo::TagRef),
    );
    let mut snapshots = BTreeSet::new();
    for v in versions {
        let infos: Vec<_> = cube
            .repo
            .ancestry(&v)
            .await
            .expect("ancestry")
            .try_collect()
            .await
            .expect("ancestry");
        snapshots.extend(infos.into_iter().map(|i| i.id));
    }
    let mut out = BTreeSet::new();
    for id in snapshots {
        let session = cube
            .session_at(&VersionInfo::SnapshotId(id))
            .await
            .expect("session");
        let chunks: Vec<_> = session
            .all_chunks()
            .await
            .expect("chunks")
            .try_collect()
            .await
            .expect("chunks");
        for (_, info) in chunks {
            if let ChunkPayload::Ref(r) = info.payload {
                out.insert(r.id.to_string());
            }
        }
    }
    out
}

/// A tile's pixels read through zarrs at any version.
async fn pixels_at(cube: &Cube, version: &VersionInfo, year: i32, tile: &str) -> Vec<u8> {
    let session = cube.session_at(version).await.expect("session");
    let store = Arc::new(AsyncIcechunkStore::new(session));
    let array = Array::async_open(store, &cube.layout.variable_path())
        .await
        .expect("open array");
    let grid = cube.layout.grid();
    let region = grid.region(grid.cell(t(tile)).expect("cell"));
    let yi = cube.layout.year_index(year).expect("year") as u64;
    let subset = ArraySubset::new_with_ranges(&[
        yi..yi + 1,
        region.y0..region.y0 + region.height,
        region.x0..region.x0 + region.width,
    ]);
    array
        .async_retrieve_array_subset::<Vec<u8>>(&subset)
        .await
        .expect("read subset")
}

/// Every named tile of 2000 reads pixel for pixel as its source.
pub(crate) async fn assert_head_exact(w: &Work, names: &[String], what: &str) {
    let cube = w.cube().await;
    for n in names {
        let path = tilecube::demo::tile_path(&w.source(), 2000, t(n));
        assert!(
            cube_pixels(&cube, 2000, t(n)).await == gdal_pixels(&path),
            "{what}: {n} differs from its source"
        );
    }
}

pub(crate) fn verify_ok(w: &Work, extra: &[&str], env: &[(&str, String)], what: &str) {
    let mut args = extra.to_vec();
    args.push("verify");
    let out = w.ok_with(&args, env);
    assert!(out.trim_end().ends_with("ok"), "{what}: verify: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_exactly_the_uploads_of_a_write_killed_before_its_commit() {
    let w = Work::new();
    let names = tile_names(4);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", &names[0]]);
    let before = objects(&w.repo());

    // Killed with every chunk of three tiles uploaded, before the commit.
    let o = w.run_with(
        &["write", "--missing", "--year", "2000"],
        &[("TILECUBE_TEST_STOP_AT", "chunks-uploaded".into())],
    );
    assert_eq!(
        o.status.signal(),
        Some(9),
        "not killed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let killed = objects(&w.repo());
    // The garbage: the chunk objects no snapshot references, counted from the snapshots.
    let referenced = referenced_chunks(&w.cube().await).await;
    let garbage: BTreeMap<&String, u64> = killed["chunks"]
        .iter()
        .filter(|(name, _)| !referenced.contains(*name))
        .map(|(name, size)| (name, *size))
        .collect();
    let garbage_bytes: u64 = garbage.values().sum();
    assert!(!garbage.is_empty(), "the killed write uploaded no chunk");
    assert_eq!(
        garbage.len(),
        killed["chunks"].len() - before["chunks"].len(),
        "the garbage is what the killed write uploaded"
    );
    for kind in &KINDS[1..] {
        assert_eq!(killed[kind], before[kind], "{kind}: the kill left none");
    }

    let dry = w.run(&["gc", "--older-than", "0s", "--dry-run", "--json"]);
    assert!(dry.status.success(), "{dry:?}");
    let warned = String::from_utf8_lossy(&dry.stderr);
    assert!(
        warned.contains("warning") && warned.contains("quiet repository"),
        "0s must warn: {warned}"
    );
    let dry = json(&String::from_utf8_lossy(&dry.stdout));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["chunks"]["objects"], garbage.len() as u64, "{dry}");
    assert_eq!(dry["chunks"]["bytes"], garbage_bytes, "{dry}");
    for kind in ["snapshots", "transaction_logs", "manifests", "attributes"] {
        assert_eq!(dry[kind]["objects"], 0, "{kind}: {dry}");
        assert_eq!(dry[kind]["bytes"], 0, "{kind}: {dry}");
    }
    let text = w.ok(&["gc", "--older-than", "0s", "--dry-run"]);
    eprintln!("{text}");
    assert!(
        text.contains("dry run, nothing deleted")
            && text.contains(&format!("would remove {} objects", garbage.len())),
        "{text}"
    );
    assert_eq!(objects(&w.repo()), killed, "a dry run deletes nothing");

    let real = json(&w.ok(&["gc", "--older-than", "0s", "--json"]));
    assert_eq!(real["dry_run"], false);
    for kind in [
        "snapshots",
        "transaction_logs",
        "manifests",
        "attributes",
        "chunks",
    ] {
        assert_eq!(
            real[kind], dry[kind],
            "{kind}: the same figures as the dry run"
        );
    }
    let after = objects(&w.repo());
    assert_eq!(
        after, before,
        "exactly the killed write's chunks are gone, nothing else"
    );
    eprintln!(
        "gc removed {} chunk objects ({garbage_bytes} bytes) of the killed write, nothing else",
        garbage.len()
    );

    verify_ok(&w, &[], &[], "after gc");
    assert_head_exact(&w, &names[..1], "after gc").await;
    // The branch moves on: the rest is written and reads exactly.
    w.ok(&["write", "--missing", "--year", "2000"]);
    assert_head_exact(&w, &names, "written after gc").await;
    verify_ok(&w, &[], &[], "written after gc");
}

/// The pixels of every named tile, head and tag, against what each must hold.
async fn assert_versions_exact(
    w: &Work,
    expected_head: &BTreeMap<String, Vec<u8>>,
    expected_tag: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let cube = w.cube().await;
    for (n, pixels) in expected_head {
        assert!(
            cube_pixels(&cube, 2000, t(n)).await == *pixels,
            "{what}: the head's {n} differs"
        );
    }
    for (n, pixels) in expected_tag {
        let at_tag = pixels_at(&cube, &VersionInfo::TagRef("v1".into()), 2000, n).await;
        assert!(at_tag == *pixels, "{what}: the tag's {n} differs");
    }
}

/// Write a good tile of 2000 whose pixels are noise from `seed` (classes 0..200): its
/// chunks do not compress to the few bytes Icechunk keeps inside a manifest, so each is an
/// object of its own.
fn noise_tile(w: &Work, tile: &str, seed: u64) {
    let n = w.grid.tile_pixels as usize;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<u8> = (0..n * n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 200) as u8
        })
        .collect();
    w.tile_of_pixels(2000, tile, data);
}

fn sources(w: &Work, names: &[String]) -> BTreeMap<String, Vec<u8>> {
    names
        .iter()
        .map(|n| {
            let path = tilecube::demo::tile_path(&w.source(), 2000, t(n));
            (n.clone(), gdal_pixels(&path))
        })
        .collect()
}

/// `status --json` but its head's id: the tiles written, per year, and what else it says of
/// them.
fn status_years(w: &Work, extra: &[&str], env: &[(&str, String)]) -> serde_json::Value {
    let mut args = extra.to_vec();
    args.extend(["status", "--json"]);
    let mut doc = json(&w.ok_with(&args, env));
    doc.as_object_mut().expect("status").remove("head");
    // When the manifest objects were last listed moves with any listing (a write's own).
    doc.as_object_mut()
        .expect("status")
        .remove("manifests_listed");
    doc
}

fn expire_then_gc_shrinks_and_keeps_every_record(spec: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let w = Work::new();
    let names = tile_names(3);
    w.listed_tiles(2000, &names);
    w.ok(&["--spec-version", spec, "init"]);
    w.ok(&["write", "--year", "2000", "--all"]);
    // Rewrites of the same tiles, with other pixels.
    for seed in [1, 2] {
        for (i, n) in names.iter().enumerate() {
            noise_tile(&w, n, seed * 10 + i as u64);
        }
        w.ok(&["write", "--year", "2000", "--tiles", &names.join(",")]);
    }
    w.ok(&["tag", "v1"]);
    let tagged = sources(&w, &names);
    // Rewrite two of the three again: the third's newest record is the tagged commit's.
    for (i, n) in names[..2].iter().enumerate() {
        noise_tile(&w, n, 30 + i as u64);
    }
    w.ok(&["write", "--year", "2000", "--tiles", &names[..2].join(",")]);
    let mut head = sources(&w, &names);
    let status = status_years(&w, &[], &[]);
    assert_eq!(status["years"]["2000"]["written"], 3, "{status}");
    let chunks_before = objects(&w.repo())["chunks"].len();

    let mut previous_carry: Option<String> = None;
    for round in 1..=2 {
        let what = format!("spec {spec}, expire #{round}");
        if round == 2 {
            // Between two expiries the branch moved on: one tile rewritten.
            noise_tile(&w, &names[0], 70);
            w.ok(&["write", "--year", "2000", "--tiles", &names[0]]);
            head = sources(&w, &names);
            assert_eq!(status_years(&w, &[], &[]), status, "{what}");
        }
        let log_before = json(&w.ok(&["log", "--json"]));
        let e = w.run(&["expire", "--older-than", "0s", "--json"]);
        assert!(e.status.success(), "{what}: {e:?}");
        let e = json(&String::from_utf8_lossy(&e.stdout));
        let carried = e["carried"].as_array().expect("carried");
        assert_eq!(carried.len(), 1, "{what}: one carry commit: {e}");
        assert_eq!(carried[0]["branch"], "main", "{what}: {e}");
        assert_eq!(carried[0]["tiles"], 3, "{what}: every record: {e}");
        assert_eq!(
            carried[0]["layout"], true,
            "{what}: the layout commit went: {e}"
        );
        let released = e["released"].as_array().expect("released").len();
        assert!(released > 0, "{what}: nothing released: {e}");
        let carry = carried[0]["snapshot"].as_str().expect("id").to_string();

        let chunks_pre_gc = objects(&w.repo())["chunks"].len();
        let g = json(&w.ok(&["gc", "--older-than", "0s", "--json"]));
        let removed = g["chunks"]["objects"].as_u64().expect("chunks removed");
        let chunks_after = objects(&w.repo())["chunks"].len();
        assert_eq!(
            chunks_pre_gc - chunks_after,
            removed as usize,
            "{what}: the report counts the chunks deleted: {g}"
        );
        assert!(
            removed > 0 && chunks_after < chunks_pre_gc,
            "{what}: the chunk objects shrink: {chunks_pre_gc} → {chunks_after}: {g}"
        );
        if round == 1 {
            assert!(
                g["snapshots"]["objects"].as_u64() > Some(0)
                    && g["manifests"]["objects"].as_u64() > Some(0),
                "{what}: expired snapshots and their manifests go: {g}"
            );
        }
        eprintln!(
            "{what}: released {released} snapshots; gc removed {} snapshots, {} transaction logs, {} manifests, {removed} chunks ({} bytes in all); chunk objects {chunks_pre_gc} → {chunks_after} (before any expire: {chunks_before})",
            g["snapshots"]["objects"],
            g["transaction_logs"]["objects"],
            g["manifests"]["objects"],
            g["snapshots"]["bytes"].as_u64().unwrap_or(0)
                + g["transaction_logs"]["bytes"].as_u64().unwrap_or(0)
                + g["manifests"]["bytes"].as_u64().unwrap_or(0)
                + g["chunks"]["bytes"].as_u64().unwrap_or(0),
        );

        // The same tiles written, the head and the tag pixel for pixel, verify clean.
        assert_eq!(
            status_years(&w, &[], &[]),
            status,
            "{what}: status says the same"
        );
        rt.block_on(assert_versions_exact(&w, &head, &tagged, &what));
        verify_ok(&w, &[], &[], &what);
        // The log shows the carry commit on top, carrying the records under their writers.
        let log = json(&w.ok(&["log", "--json"]));
        assert_eq!(log[0]["id"], carry.as_str(), "{what}: {log}");
        let message = log[0]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(
                "carry the records of 3 tiles and the layout marker before expiring snapshots older than 0s"
            ),
            "{what}: {message}"
        );
        // Each record is carried under the commit that wrote the tile (round 1: the third
        // tile's is the tagged commit's; round 2: the first's is the new write's, the others
        // come from the first carry commit, under their writers still).
        // The holder of each tile's newest record before the expiry: its writer (or the
        // first carry commit, which names the writer), and the source it noted.
        let holder_of = |n: &str| -> (String, serde_json::Value) {
            let c = log_before
                .as_array()
                .expect("log")
                .iter()
                .find(|c| c["written"]["2000"][n].is_number() || c["carried"]["2000"][n].is_array())
                .expect("a holder");
            let writer = c["carried"]["2000"][n][1]
                .as_str()
                .or(c["id"].as_str())
                .expect("id");
            (writer.to_string(), c["sources"]["2000"][n].clone())
        };
        for n in &names {
            let (writer, source) = holder_of(n);
            assert_eq!(
                log[0]["carried"]["2000"][n][1],
                writer.as_str(),
                "{what}: {n} carried under the commit that wrote it: {}",
                log[0]
            );
            assert_eq!(
                log[0]["sources"]["2000"][n], source,
                "{what}: {n}'s source carried with it: {}",
                log[0]
            );
        }
        eprintln!("{what}: the carry commit: {}", log[0]);
        let text = w.ok(&["log"]);
        assert!(
            text.contains("carry the records of 3 tiles"),
            "{what}: {text}"
        );
        if let Some(p) = &previous_carry {
            assert!(
                !text.contains(p.as_str()),
                "{what}: the first carry commit was expired in turn: {text}"
            );
        }
        previous_carry = Some(carry);
    }
    // Nothing but the head is old enough now: an expiry drops nothing, carries nothing.
    let text = w.ok(&["expire", "--older-than", "0s"]);
    eprintln!("{text}");
    assert!(
        text.starts_with("released 0 snapshots older than 0s"),
        "{text}"
    );
    assert_eq!(
        json(&w.ok(&["log", "--json"]))[0]["id"].as_str(),
        previous_carry.as_deref(),
        "the head is never expired"
    );
    // The branch moves on from the carried records.
    w.two_class_tile(2000, &names[2], 50, 60);
    w.ok(&["write", "--year", "2000", "--tiles", &names[2]]);
    let status_after = status_years(&w, &[], &[]);
    assert_eq!(
        status_after["years"]["2000"]["written"], 3,
        "{status_after}"
    );
    rt.block_on(assert_head_exact(&w, &names, "written after expire"));
}

#[test]
fn expire_and_gc_shrink_the_repository_and_keep_every_record_spec_1() {
    expire_then_gc_shrinks_and_keeps_every_record("1");
}

#[test]
fn expire_and_gc_shrink_the_repository_and_keep_every_record_spec_2() {
    expire_then_gc_shrinks_and_keeps_every_record("2");
}

#[test]
fn gc_with_the_default_age_while_a_write_runs_loses_nothing() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let w = Work::new();
    let names = tile_names(24);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    // A write held with its first checkpoint's chunks uploaded, not committed.
    let env = w.hold_env("chunks-uploaded#1");
    let mut writer = w.spawn_with(
        &[
            "write",
            "--year",
            "2000",
            "--all",
            "--commit-every",
            "4",
            "--threads",
            "1",
        ],
        &env,
    );
    w.wait_held("chunks-uploaded", 1);
    // Its uploads are garbage to a gc that ignores the age…
    let dry = json(&w.ok(&["gc", "--older-than", "0s", "--dry-run", "--json"]));
    let unreferenced = dry["chunks"]["objects"].as_u64().expect("chunks");
    assert!(
        unreferenced > 0,
        "the held write's chunks are not referenced yet: {dry}"
    );
    // …and the default age keeps them.
    let g = json(&w.ok(&["gc", "--json"]));
    assert_eq!(g["older_than"], "1d", "{g}");
    for kind in ["snapshots", "transaction_logs", "manifests", "chunks"] {
        assert_eq!(g[kind]["objects"], 0, "{kind}: {g}");
    }
    w.release("chunks-uploaded", 1);
    // More gcs while the write goes on.
    let mut during = 0;
    while writer.try_wait().expect("writer").is_none() {
        let g = json(&w.ok(&["gc", "--json"]));
        assert_eq!(g["chunks"]["objects"], 0, "{g}");
        during += 1;
    }
    let out = writer.wait_with_output().expect("writer");
    assert!(
        out.status.success(),
        "the write failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "a held write's {unreferenced} unreferenced chunks survived gc with the default age; {during} more gcs ran during the write"
    );
    let status = status_years(&w, &[], &[]);
    assert_eq!(status["years"]["2000"]["written"], 24, "{status}");
    rt.block_on(assert_head_exact(&w, &names, "after gcs during the write"));
    verify_ok(&w, &[], &[], "after gcs during the write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_and_expire_work_on_an_s3_repository() {
    let moto = Moto::start();
    moto.create_bucket("cubes");
    let env = moto.env();
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    let repo = "s3://cubes/hygiene";
    let on_s3 = |args: &[&str]| {
        let mut a = vec!["--repo", repo];
        a.extend_from_slice(args);
        w.ok_with(&a, &env)
    };
    on_s3(&["--spec-version", "2", "init"]);
    on_s3(&["write", "--year", "2000", "--all"]);
    for n in &names {
        w.two_class_tile(2000, n, 10, 20);
    }
    on_s3(&["write", "--year", "2000", "--tiles", &names.join(",")]);
    let status = status_years(&w, &["--repo", repo], &env);
    let chunks = || async { moto.list("cubes", "hygiene/chunks").await.len() };
    let before = chunks().await;

    let e = json(&on_s3(&["expire", "--older-than", "0s", "--json"]));
    assert_eq!(e["carried"][0]["tiles"], 2, "{e}");
    assert!(
        !e["released"].as_array().expect("released").is_empty(),
        "{e}"
    );
    // S3 gives object times to the second: what was just written is not older than now yet.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let dry = json(&on_s3(&["gc", "--older-than", "0s", "--dry-run", "--json"]));
    assert_eq!(chunks().await, before, "a dry run deletes nothing");
    let g = json(&on_s3(&["gc", "--older-than", "0s", "--json"]));
    let removed = g["chunks"]["objects"].as_u64().expect("chunks");
    assert!(removed > 0, "{g}");
    assert_eq!(g["chunks"], dry["chunks"], "the dry run said so: {dry} {g}");
    assert_eq!(chunks().await, before - removed as usize, "{g}");
    eprintln!(
        "s3: chunk objects {before} → {}; gc removed {} snapshots, {} manifests, {removed} chunks ({} bytes)",
        before - removed as usize,
        g["snapshots"]["objects"],
        g["manifests"]["objects"],
        g["chunks"]["bytes"]
    );
    assert_eq!(status_years(&w, &["--repo", repo], &env), status);
    verify_ok(&w, &["--repo", repo], &env, "s3 after gc");
    moto.export();
    let cube = Cube::open(
        RepoLocation::parse(
            repo,
            &StorageSettings::from_env().expect("storage settings"),
        )
        .expect("location"),
        "main",
    )
    .await
    .expect("open");
    for n in &names {
        let path = tilecube::demo::tile_path(&w.source(), 2000, t(n));
        assert!(
            cube_pixels(&cube, 2000, t(n)).await == gdal_pixels(&path),
            "{n} differs"
        );
    }
}

#[test]
fn bad_ages_and_places_that_are_no_repository_are_refused_clearly() {
    let w = Work::new();
    w.listed_tiles(2000, &tile_names(1));
    w.ok(&["init"]);
    for (cmd, value) in [
        ("gc", "7w"),
        ("gc", "1.5h"),
        ("gc", "soon"),
        ("gc", "-1d"),
        ("expire", "12"),
        ("expire", "d"),
    ] {
        let flag = format!("--older-than={value}");
        let o = w.run(&[cmd, &flag]);
        let said = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd} {flag} was taken");
        assert!(
            said.contains("--older-than") && said.contains(&format!("'{value}'")),
            "{cmd} {flag}: the refusal names the flag and the value: {said}"
        );
    }
    let o = w.run(&["expire"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--older-than"),
        "expire needs an age: {o:?}"
    );
    let nowhere = w.dir.path().join("no-such-repo");
    let o = w.run(&["--repo", nowhere.to_str().expect("path"), "gc"]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(2)
            && said.contains("no-such-repo")
            && said.contains("is not there"),
        "{said}"
    );
    let empty = w.dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    for cmd in [&["gc"][..], &["expire", "--older-than", "1d"]] {
        let mut args = vec!["--repo", empty.to_str().expect("path")];
        args.extend_from_slice(cmd);
        let o = w.run(&args);
        let said = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code() == Some(2) && said.contains("empty") && said.contains("tilecube init"),
            "{cmd:?}: {said}"
        );
    }
}
