//! A new epoch: `tilecube extend --year Y` appends a year to a written cube in one commit
//! that keeps every chunk reference and every manifest of the earlier years, at every level;
//! `write --year Y --missing` (or a plan made after it) then fills the year, which reads back
//! pixel for pixel against GDAL, every level against numpy's mode chain, and in xarray
//! (icechunk-python 1.1 for spec 1, 2.x for spec 2); refusals name the year and why; the
//! same on a repository on S3 (moto); the console shows the sixth year's tab and its key.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::tmux::Tmux;
use common::{Work, cube_pixels, gdal_pixels, t};
use futures::StreamExt;
use icechunk::format::snapshot::NodeData;
use serde_json::{Value, json};
use tilecube::cube::Cube;
use zarrs::array::Array;
use zarrs::group::Group;
use zarrs_icechunk::AsyncIcechunkStore;

/// Every chunk reference of every data array (`/lclu` and each level's), by array and chunk
/// index: the payload as Icechunk holds it (chunk id, offset and length, or inline bytes).
type Refs = BTreeMap<(String, Vec<u32>), String>;

async fn data_refs(cube: &Cube) -> Refs {
    let session = cube.head_session().await.expect("session");
    let chunks = session.all_chunks().await.expect("all chunks");
    let mut chunks = std::pin::pin!(chunks);
    let mut out = Refs::new();
    while let Some(item) = chunks.next().await {
        let (path, info) = item.expect("chunk");
        let path = path.to_string();
        if path.ends_with("/lclu") {
            out.insert((path, info.coord.0.clone()), format!("{:?}", info.payload));
        }
    }
    out
}

/// The manifests each array of the head's snapshot lists (id and extents), by array path.
async fn array_manifests(cube: &Cube) -> BTreeMap<String, Vec<String>> {
    let session = cube.head_session().await.expect("session");
    let mut out = BTreeMap::new();
    let root = icechunk::format::Path::root();
    for node in session.list_nodes(&root).await.expect("nodes") {
        let node = node.expect("node");
        if let NodeData::Array { manifests, .. } = &node.node_data {
            out.insert(
                node.path.to_string(),
                manifests
                    .iter()
                    .map(|m| format!("{} {:?}", m.object_id, m.extents))
                    .collect(),
            );
        }
    }
    out
}

/// The object names under a local repository's `dir` (`manifests`, `chunks`).
fn objects(repo: &Path, dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(repo.join(dir))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The data arrays (level 0 first) and their datasets' prefixes.
fn datasets(cube: &Cube) -> Vec<(String, String)> {
    (0..=cube.layout.levels().len())
        .map(|k| {
            let path = cube.layout.level_path(k);
            let prefix = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            (path.clone(), prefix.to_string())
        })
        .collect()
}

/// A group's attributes at the head.
async fn group_attrs(cube: &Cube, path: &str) -> serde_json::Map<String, Value> {
    let store = std::sync::Arc::new(AsyncIcechunkStore::new(
        cube.head_session().await.expect("session"),
    ));
    Group::async_open(store, path)
        .await
        .expect("group")
        .attributes()
        .clone()
}

/// An array's shape and, for the `year` coordinates, its values, at the head.
async fn array_at(cube: &Cube, path: &str) -> (Vec<u64>, Option<Vec<i64>>) {
    let store = std::sync::Arc::new(AsyncIcechunkStore::new(
        cube.head_session().await.expect("session"),
    ));
    let array = Array::async_open(store, path).await.expect("array");
    let shape = array.shape().to_vec();
    let values = if path.ends_with("/year") {
        Some(
            array
                .async_retrieve_array_subset::<Vec<i64>>(&array.subset_all())
                .await
                .expect("year values"),
        )
    } else {
        None
    };
    (shape, values)
}

fn log(w: &Work) -> Vec<Value> {
    serde_json::from_str::<Value>(&w.ok(&["log", "--json"]))
        .expect("log JSON")
        .as_array()
        .expect("commits")
        .clone()
}

/// Where a tile of the test grid lies (row y0, column x0), worked out by hand from its name:
/// 400 px tiles of 10°, rows from 80N down, columns from 180W east.
fn placed(name: &str) -> (u64, u64) {
    let (lat, lon) = name.split_once('_').expect("tile name");
    let lat: i64 = lat[..2].parse::<i64>().unwrap() * if lat.ends_with('S') { -1 } else { 1 };
    let lon: i64 = lon[..3].parse::<i64>().unwrap() * if lon.ends_with('W') { -1 } else { 1 };
    (
        ((80 - lat) / 10 * 400) as u64,
        ((lon + 180) / 10 * 400) as u64,
    )
}

/// The expectations of `tests/python/readback.py`: the cube of `years` holding `written`
/// (year, year index, tile), GDAL's read of each, and regions that must read as fill.
fn expect_readback(
    w: &Work,
    years: &[i32],
    written: &[(i32, u64, &str)],
    unwritten: &[(u64, &str)],
) -> std::path::PathBuf {
    let dir = w.dir.path().join("expect");
    std::fs::create_dir_all(&dir).unwrap();
    let mut tiles = vec![];
    for &(year, year_index, name) in written {
        let path = tilecube::demo::tile_path(&w.source(), year, t(name));
        let file = format!("{year}_{name}.raw");
        std::fs::write(dir.join(&file), gdal_pixels(&path)).unwrap();
        let (y0, x0) = placed(name);
        tiles.push(json!({
            "name": format!("{year}/{name}"), "file": file, "size": 400,
            "year_index": year_index, "y0": y0, "x0": x0,
        }));
    }
    let unwritten: Vec<Value> = unwritten
        .iter()
        .map(|&(year_index, name)| {
            let (y0, x0) = placed(name);
            json!({"year_index": year_index, "y0": y0, "x0": x0, "size": 400})
        })
        .collect();
    let expect = json!({
        "shape": [years.len(), 5600, 14400], "years": years,
        "pixel_size": 0.025,
        "geotransform": "-180.0 0.025 0.0 80.0 0.0 -0.025",
        "tiles": tiles, "unwritten": unwritten,
    });
    std::fs::write(dir.join("expect.json"), expect.to_string()).unwrap();
    dir
}

/// `tests/python/overviews.py` on a year of the cube: every level equals numpy's mode chain
/// of level 0 (8 levels on this grid down to 100 px).
fn overviews_equal_numpys_chain(w: &Work, python: &Path, year_index: usize) {
    let (ok, out) = common::python_script(
        python,
        "overviews.py",
        &[w.repo().to_str().unwrap(), &year_index.to_string()],
    );
    assert!(
        ok && out.contains("overviews ok: 8 levels"),
        "year index {year_index}: {out}"
    );
}

const Y2000: [&str; 3] = ["80N_180W", "00N_000E", "00N_010E"];
const Y2020: [&str; 2] = ["00N_000E", "50S_170E"];
const Y2025: [&str; 3] = ["00N_000E", "10N_010E", "50S_170E"];
const ALL_YEARS: [i32; 6] = [2000, 2005, 2010, 2015, 2020, 2025];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_on_spec_1_keeps_every_earlier_chunk_and_the_new_year_reads_back() {
    extend_keeps_earlier_chunks_and_the_new_year_reads_back("1", &common::python()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_on_spec_2_keeps_every_earlier_chunk_and_the_new_year_reads_back() {
    extend_keeps_earlier_chunks_and_the_new_year_reads_back("2", &common::python_ic2()).await;
}

async fn extend_keeps_earlier_chunks_and_the_new_year_reads_back(spec: &str, python: &Path) {
    // Overviews down to 100 px: 8 levels, the coarse ones spanning several tiles.
    let w = Work::with_overviews(Some(100));
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    w.listed_tiles(2000, &names(&Y2000));
    w.listed_tiles(2020, &names(&Y2020));
    w.ok(&["init", "--spec-version", spec]);
    w.ok(&["write", "--all"]);

    let before = w.cube().await;
    assert_eq!(before.layout.levels().len(), 8);
    let refs = data_refs(&before).await;
    let earlier_years: BTreeSet<u32> = refs.keys().map(|(_, c)| c[0]).collect();
    assert_eq!(
        earlier_years,
        BTreeSet::from([0, 4]),
        "2000 and 2020 hold chunks"
    );
    let every_level: BTreeSet<&str> = refs.keys().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        every_level.len(),
        9,
        "level 0 and 8 levels hold chunks: {every_level:?}"
    );
    let manifests = array_manifests(&before).await;
    let manifest_files = objects(&w.repo(), "manifests");
    let chunk_files = objects(&w.repo(), "chunks");
    let root_before = group_attrs(&before, "/").await;
    let mut level_groups_before = vec![];
    for level in before.layout.levels() {
        level_groups_before.push(group_attrs(&before, &format!("/{}", level.group())).await);
    }
    let commits = log(&w).len();

    let said = w.ok(&["extend", "--year", "2025"]);
    assert!(
        said.starts_with(&format!("added year 2025 to {} @ main in commit ", w.repo().display()))
            && said.contains(
                "its years are 2000, 2005, 2010, 2015, 2020, 2025 (6); 9 arrays grew, no chunk of an earlier year was written"
            )
            && said.contains("next: list the year's tiles in the source (2025.txt) and run `tilecube write --year 2025 --missing`"),
        "{said}"
    );

    // One commit, recording no tile.
    let history = log(&w);
    assert_eq!(history.len(), commits + 1, "one commit");
    assert_eq!(
        history[0]["message"],
        "add year 2025: the cube's years are 2000, 2005, 2010, 2015, 2020, 2025"
    );
    assert!(
        history[0]["written"]
            .as_object()
            .is_none_or(|w| w.is_empty()),
        "{}",
        history[0]
    );

    let after = w.cube().await;
    assert_eq!(after.layout.years, ALL_YEARS);
    // Exactly the same chunk references, at every level: nothing rewritten, nothing added.
    assert_eq!(data_refs(&after).await, refs);
    // Every data array lists exactly the manifests it listed (same ids, same extents).
    let manifests_after = array_manifests(&after).await;
    for (path, _) in datasets(&after) {
        assert_eq!(manifests_after[&path], manifests[&path], "{path}");
    }
    // The only manifests written are the `year` coordinates' (one each), and no chunk
    // object at all (a year coordinate's chunk is inline).
    let new_manifests: BTreeSet<String> = objects(&w.repo(), "manifests")
        .difference(&manifest_files)
        .cloned()
        .collect();
    let year_manifests: BTreeSet<String> = manifests_after
        .iter()
        .filter(|(path, _)| path.ends_with("/year"))
        .flat_map(|(_, ms)| ms.iter().map(|m| m.split(' ').next().unwrap().to_string()))
        .collect();
    assert_eq!(new_manifests.len(), 9, "{new_manifests:?}");
    assert!(
        new_manifests.is_subset(&year_manifests),
        "{new_manifests:?}"
    );
    assert_eq!(
        objects(&w.repo(), "chunks"),
        chunk_files,
        "no chunk object written"
    );

    // Every data array and `year` coordinate grew; the root's layout lists the year and
    // nothing else of the root group, nor any level group, changed.
    for (k, (path, prefix)) in datasets(&after).into_iter().enumerate() {
        let (shape, _) = array_at(&after, &path).await;
        let (want, _) = after.layout.level_shape(k);
        assert_eq!(shape, want.to_vec(), "{path}");
        assert_eq!(shape[0], 6, "{path}");
        let (shape, values) = array_at(&after, &format!("{prefix}/year")).await;
        assert_eq!(shape, vec![6], "{prefix}/year");
        assert_eq!(values.unwrap(), vec![2000, 2005, 2010, 2015, 2020, 2025]);
    }
    let mut root_after = group_attrs(&after, "/").await;
    assert_eq!(root_after["tilecube"]["years"], json!(ALL_YEARS));
    root_after["tilecube"]["years"] = root_before["tilecube"]["years"].clone();
    assert_eq!(root_after, root_before, "only the layout's years changed");
    for (level, attrs) in after.layout.levels().iter().zip(&level_groups_before) {
        assert_eq!(
            &group_attrs(&after, &format!("/{}", level.group())).await,
            attrs
        );
    }

    // status names the year (its list is not there yet); the coverage holds none of it.
    let status: Value = serde_json::from_str(&w.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["years"]["2025"]["written"], 0, "{status}");
    assert!(
        status["years"]["2025"]["no_list"]
            .as_str()
            .is_some_and(|p| p.ends_with("2025.txt")),
        "{status}"
    );

    // The source lists the year: write --missing fills it.
    w.listed_tiles(2025, &names(&Y2025));
    let report: Value =
        serde_json::from_str(&w.ok(&["write", "--year", "2025", "--missing", "--json"])).unwrap();
    assert_eq!(
        report["written"]["2025"].as_object().map(|t| t.len()),
        Some(3),
        "{report}"
    );
    let cube = w.cube().await;
    // The write of 2025 touched no chunk of the earlier years either.
    let now = data_refs(&cube).await;
    let earlier: Refs = now
        .iter()
        .filter(|((_, c), _)| c[0] < 5)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(earlier, refs);
    assert!(
        now.keys()
            .filter(|(_, c)| c[0] == 5)
            .map(|(p, _)| p)
            .collect::<BTreeSet<_>>()
            .len()
            == 9,
        "2025 holds chunks at every level"
    );
    for name in Y2025 {
        let path = tilecube::demo::tile_path(&w.source(), 2025, t(name));
        assert_eq!(
            cube_pixels(&cube, 2025, t(name)).await,
            gdal_pixels(&path),
            "2025/{name}"
        );
    }
    for (year, names) in [(2000, &Y2000[..]), (2020, &Y2020[..])] {
        for name in names {
            let path = tilecube::demo::tile_path(&w.source(), year, t(name));
            assert_eq!(
                cube_pixels(&cube, year, t(name)).await,
                gdal_pixels(&path),
                "{year}/{name}"
            );
        }
    }
    // status, log and the coverage show the year written.
    let coverage = cube.coverage_of(&cube.head().await.unwrap()).await.unwrap();
    assert_eq!(coverage.written_count(2025), 3);
    assert!(Y2025.iter().all(|n| coverage.is_written(2025, t(n))));
    assert_eq!(coverage.written_count(2000), 3);
    let status: Value =
        serde_json::from_str(&w.ok(&["status", "--json", "--year", "2025"])).unwrap();
    assert_eq!(status["years"]["2025"]["written"], 3, "{status}");
    assert_eq!(status["years"]["2025"]["listed"], 3, "{status}");
    let text = w.ok(&["status", "--year", "2025"]);
    assert!(text.contains("2025"), "{text}");
    let history = log(&w);
    assert_eq!(
        history[0]["written"]["2025"].as_object().map(|t| t.len()),
        Some(3)
    );
    let verify = w.run(&["verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // Python: every level of the new year and of an earlier year is numpy's mode chain of
    // level 0; xarray reads every year's tiles as GDAL does, and fill where none was written.
    overviews_equal_numpys_chain(&w, python, 5);
    overviews_equal_numpys_chain(&w, python, 0);
    let mut written: Vec<(i32, u64, &str)> = vec![];
    written.extend(Y2000.iter().map(|n| (2000, 0, *n)));
    written.extend(Y2020.iter().map(|n| (2020, 4, *n)));
    written.extend(Y2025.iter().map(|n| (2025, 5, *n)));
    let expect = expect_readback(
        &w,
        &ALL_YEARS,
        &written,
        &[(5, "80N_180W"), (4, "10N_010E")],
    );
    let out = common::python_readback_with(python, &w.repo().display().to_string(), &expect, &[]);
    assert!(
        out.contains("readback ok: 8 tiles, 2 unwritten regions"),
        "{out}"
    );
}

/// The exact error a refused command prints, and its exit code 2.
fn refused(w: &Work, args: &[&str]) -> String {
    let out = w.run(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn extend_refuses_a_year_there_one_before_the_last_an_absurd_one_and_a_repository_with_no_cube() {
    let w = Work::new();
    w.ok(&["init"]);
    let commits = log(&w).len();
    let repo = w.repo().display().to_string();
    let years = "2000, 2005, 2010, 2015, 2020";
    assert_eq!(
        refused(&w, &["extend", "--year", "2020"]),
        format!(
            "error: extending {repo} @ main: year 2020 is already in the cube (years: {years}); there is nothing to extend\n"
        )
    );
    assert_eq!(
        refused(&w, &["extend", "--year", "2005"]),
        format!(
            "error: extending {repo} @ main: year 2005 is already in the cube (years: {years}); there is nothing to extend\n"
        )
    );
    assert_eq!(
        refused(&w, &["extend", "--year", "2012"]),
        format!(
            "error: extending {repo} @ main: year 2012 comes before the cube's last year, 2020: a year is only appended after the last one (inserting it would move every chunk of the later years)\n"
        )
    );
    for year in ["0", "-5", "10000"] {
        assert_eq!(
            refused(&w, &["extend", "--year", year]),
            format!(
                "error: extending {repo} @ main: year {year} is not a year a cube takes (1 to 9999)\n"
            )
        );
    }
    assert_eq!(log(&w).len(), commits, "no refusal commits");

    // Once 2025 is appended, it is the last year: 2025 again and 2021 are refused.
    w.ok(&["extend", "--year", "2025"]);
    assert_eq!(
        refused(&w, &["extend", "--year", "2025"]),
        format!(
            "error: extending {repo} @ main: year 2025 is already in the cube (years: {years}, 2025); there is nothing to extend\n"
        )
    );
    assert_eq!(
        refused(&w, &["extend", "--year", "2021"]),
        format!(
            "error: extending {repo} @ main: year 2021 comes before the cube's last year, 2025: a year is only appended after the last one (inserting it would move every chunk of the later years)\n"
        )
    );
    assert_eq!(log(&w).len(), commits + 1);

    // Repositories that hold no cube: a directory of something else, a path that is not
    // there, and an Icechunk repository made by another tool.
    let other = w.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "not a repository").unwrap();
    let other = other.display().to_string();
    assert_eq!(
        refused(&w, &["--repo", &other, "extend", "--year", "2025"]),
        format!(
            "error: {other} holds no repository but is not empty (notes.txt): `tilecube init` makes one only in an empty or new directory, so remove what is there or choose another path\n"
        )
    );
    let nowhere = w.dir.path().join("nowhere").display().to_string();
    assert_eq!(
        refused(&w, &["--repo", &nowhere, "extend", "--year", "2025"]),
        format!(
            "error: repository {nowhere} is not there (no such directory); check the path, or run `tilecube init`\n"
        )
    );
    assert!(!Path::new(&nowhere).exists(), "extend never creates a path");
    let plain = w.dir.path().join("plain").display().to_string();
    let made = std::process::Command::new(common::python())
        .args([
            "-c",
            "import sys, icechunk as ic; ic.Repository.create(ic.local_filesystem_storage(sys.argv[1]))",
            &plain,
        ])
        .output()
        .expect("python");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert_eq!(
        refused(&w, &["--repo", &plain, "extend", "--year", "2025"]),
        format!(
            "error: no tilecube cube in repository {plain}; `tilecube init --force` lays one out in it (its history is kept)\n"
        )
    );
}

/// The test preset with its years listed instead of a `[years]` table.
fn listed_years(list: &str) -> Work {
    Work::with_preset(common::TILE, common::CHUNK, |text| {
        let (header, keys) = ("[years]\n", "first = 2000\nlast = 2020\nstep = 5\n");
        assert!(text.contains(header) && text.contains(keys));
        format!(
            "years = {list}\n{}",
            text.replace(header, "").replace(keys, "")
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preset_listing_its_years_and_a_plan_made_after_extend_lands_the_new_year() {
    let w = listed_years("[2000, 2020]");
    let tiles: Vec<String> = common::tile_names(6);
    w.listed_tiles(2000, &tiles[..2]);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    assert_eq!(w.cube().await.layout.years, vec![2000, 2020]);
    let said = w.ok(&["extend", "--year", "2025"]);
    assert!(
        said.contains("its years are 2000, 2020, 2025 (3)"),
        "{said}"
    );
    let before = data_refs(&w.cube().await).await;

    w.listed_tiles(2025, &tiles);
    let plan = w.dir.path().join("plan").display().to_string();
    w.ok(&[
        "plan",
        "--missing",
        "--year",
        "2025",
        "--shards",
        "2",
        "--out",
        &plan,
    ]);
    for shard in ["0", "1"] {
        w.ok(&["write", "--plan", &plan, "--shard", shard]);
    }
    let cube = w.cube().await;
    assert_eq!(cube.layout.years, vec![2000, 2020, 2025]);
    let coverage = cube.coverage_of(&cube.head().await.unwrap()).await.unwrap();
    assert_eq!(coverage.written_count(2025), 6);
    for name in &tiles {
        let path = tilecube::demo::tile_path(&w.source(), 2025, t(name));
        assert_eq!(
            cube_pixels(&cube, 2025, t(name)).await,
            gdal_pixels(&path),
            "2025/{name}"
        );
    }
    let status: Value = serde_json::from_str(&w.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["years"]["2025"]["written"], 6, "{status}");
    assert_eq!(status["years"]["2000"]["written"], 2, "{status}");
    // The earlier year's chunks are the ones written before extend.
    let now: Refs = data_refs(&cube)
        .await
        .into_iter()
        .filter(|((_, c), _)| c[0] < 2)
        .collect();
    assert_eq!(now, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_write_missing_and_status_on_a_repository_on_s3() {
    let moto = common::s3::Moto::start();
    moto.export();
    moto.create_bucket("cubes");
    let w = Work::new();
    w.listed_tiles(2000, &["00N_000E".to_string(), "10N_010E".to_string()]);
    let env = moto.env();
    let repo = "s3://cubes/epoch";
    let run = |args: &[&str]| {
        let mut a = vec!["--repo", repo];
        a.extend_from_slice(args);
        w.ok_with(&a, &env)
    };
    run(&["init"]);
    run(&["write", "--all"]);
    let location = tilecube::cube::RepoLocation::parse(
        repo,
        &tilecube::storage_settings::StorageSettings::from_env().unwrap(),
    )
    .unwrap();
    let cube = Cube::open(location.clone(), "main").await.unwrap();
    let refs = data_refs(&cube).await;
    let manifests = array_manifests(&cube).await;
    let commits = cube.history().await.unwrap().len();

    let said = run(&["extend", "--year", "2025"]);
    assert!(
        said.starts_with("added year 2025 to s3://cubes/epoch @ main in commit "),
        "{said}"
    );
    let cube = Cube::open(location.clone(), "main").await.unwrap();
    assert_eq!(cube.history().await.unwrap().len(), commits + 1);
    assert_eq!(data_refs(&cube).await, refs);
    let after = array_manifests(&cube).await;
    for (path, _) in datasets(&cube) {
        assert_eq!(after[&path], manifests[&path], "{path}");
    }
    // Refused on S3 alike.
    let out = w.run_with(&["--repo", repo, "extend", "--year", "2020"], &env);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: extending s3://cubes/epoch @ main: year 2020 is already in the cube (years: 2000, 2005, 2010, 2015, 2020, 2025); there is nothing to extend\n"
    );

    w.listed_tiles(2025, &["10N_010E".to_string(), "50S_170E".to_string()]);
    run(&["write", "--year", "2025", "--missing"]);
    let status: Value = serde_json::from_str(&run(&["status", "--json"])).unwrap();
    assert_eq!(status["years"]["2025"]["written"], 2, "{status}");
    assert_eq!(status["years"]["2000"]["written"], 2, "{status}");
    let cube = Cube::open(location, "main").await.unwrap();
    for (year, name) in [(2025, "10N_010E"), (2025, "50S_170E"), (2000, "00N_000E")] {
        let path = tilecube::demo::tile_path(&w.source(), year, t(name));
        assert_eq!(
            cube_pixels(&cube, year, t(name)).await,
            gdal_pixels(&path),
            "{year}/{name}"
        );
    }
    let earlier: Refs = data_refs(&cube)
        .await
        .into_iter()
        .filter(|((_, c), _)| c[0] < 5)
        .collect();
    assert_eq!(earlier, refs);
    // xarray (icechunk-python 2.x: the workspace's cubes are of the default spec 2) reads
    // every year.
    let expect = expect_readback(
        &w,
        &ALL_YEARS,
        &[
            (2000, 0, "00N_000E"),
            (2000, 0, "10N_010E"),
            (2025, 5, "10N_010E"),
            (2025, 5, "50S_170E"),
        ],
        &[(5, "00N_000E")],
    );
    let out = common::python_readback_with(&common::python_ic2(), repo, &expect, &env);
    assert!(
        out.contains("readback ok: 4 tiles, 1 unwritten regions"),
        "{out}"
    );
}

/// The console's command on a workspace.
fn console_cmd(w: &Work) -> String {
    format!(
        "TILECUBE_DATA_DIR={} {} --config {} tui; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    )
}

#[test]
fn the_console_shows_the_sixth_years_tab_and_its_key_selects_it() {
    let w = Work::new();
    w.listed_tiles(2000, &["80N_180W".to_string()]);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    w.ok(&["extend", "--year", "2025"]);
    w.listed_tiles(2025, &["80N_170W".to_string(), "80N_160W".to_string()]);
    w.ok(&["write", "--year", "2025", "--tiles", "80N_170W"]);
    let tmux = Tmux::start(&console_cmd(&w));
    // The tabs come from the cube's layout, and the year the preset does not name is listed.
    let s = tmux.wait_for("6:2025 1/2");
    assert!(s.contains("1:2000 1/1"), "{s}");
    assert!(s.contains("80N # . . "), "2000's row: {s}");
    tmux.keys(&["6"]);
    let s = tmux.wait_for("80N . # o ");
    assert!(s.contains("6:2025 1/2"), "{s}");
    tmux.keys(&["1"]);
    tmux.wait_for("80N # . . ");
    tmux.keys(&["q"]);
}

#[test]
fn a_console_open_during_extend_gains_the_new_years_tab_without_reopening() {
    let w = Work::new();
    w.listed_tiles(2000, &["80N_180W".to_string()]);
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let tmux = Tmux::start(&console_cmd(&w));
    let s = tmux.wait_for("1:2000 1/1");
    assert!(!s.contains("6:"), "{s}");
    // Another process extends the cube and lists the year's tiles: the console's next poll
    // sees the head move, reads the layout again, and shows the sixth year with its list.
    w.listed_tiles(2025, &["80N_170W".to_string(), "80N_160W".to_string()]);
    w.ok(&["extend", "--year", "2025"]);
    let s = tmux.wait_for("6:2025 0/2");
    assert!(
        s.contains("the cube's years are now 2000, 2005, 2010, 2015, 2020, 2025"),
        "{s}"
    );
    tmux.keys(&["6"]);
    tmux.wait_for("80N . o o ");
    tmux.keys(&["q"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_opened_before_extend_cannot_land_over_it_and_write_missing_lands_its_tiles()
{
    let w = Work::new();
    let names: Vec<String> = common::tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    // The writer uploads its tiles' chunks and is held before its commit; the cube gains a
    // year meanwhile. Icechunk does not rebase chunk changes over an array's metadata update:
    // the writer's commit is refused, saying why, and nothing of it lands.
    let writer = w.spawn_with(
        &["write", "--all", "--year", "2000"],
        &w.hold_env("chunks-uploaded#1"),
    );
    w.wait_held("chunks-uploaded", 1);
    w.ok(&["extend", "--year", "2025"]);
    w.release("chunks-uploaded", 1);
    let out = writer.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(
            "error: another commit changed the cube's arrays while this one was written (an `extend` or `overviews` landed on main meanwhile), so it cannot land over it; the tiles of this commit did not land: write them again (`write --missing`)"
        ),
        "{said}"
    );
    // It names every tile of the write as not landed.
    assert!(
        said.contains("no tile of this write landed; 2 tiles not landed (")
            && names.iter().all(|n| said.contains(&format!("2000/{n}"))),
        "{said}"
    );
    let cube = w.cube().await;
    assert_eq!(cube.layout.years, ALL_YEARS);
    let coverage = cube.coverage_of(&cube.head().await.unwrap()).await.unwrap();
    assert_eq!(coverage.written_count(2000), 0, "{said}");
    assert!(
        data_refs(&cube).await.is_empty(),
        "no chunk of the writer landed"
    );
    // `write --missing` writes them again, over the extended cube.
    w.ok(&["write", "--missing", "--year", "2000"]);
    let cube = w.cube().await;
    for name in &names {
        let path = tilecube::demo::tile_path(&w.source(), 2000, t(name));
        assert_eq!(
            cube_pixels(&cube, 2000, t(name)).await,
            gdal_pixels(&path),
            "{name}"
        );
    }
    assert_eq!(cube.layout.years, ALL_YEARS);
    assert!(w.run(&["verify"]).status.success());
}
