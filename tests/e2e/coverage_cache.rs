//! Coverage beyond the cube's own manifest split, and what its cache keeps. A repository
//! whose manifests another tool (Python icechunk's `rewrite_manifests`, one manifest per
//! array) made span many tiles and years is read by the fallback that lists chunk
//! coordinates, and `status` still names exactly the tiles written; on an S3 repository
//! (moto), after `status` and the console have cached coverage, no file tilecube wrote —
//! cache, data dir, home, temporary files — and no object in the bucket holds the access key
//! or the secret.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::s3::{ACCESS_KEY, Moto, SECRET_KEY};
use common::tmux::Tmux;
use common::{Work, t};
use tilecube::cube::TileState;
use tilecube::demo::Flaw;

/// Rewrite every manifest of a local repository's `main` as Python icechunk does with a
/// splitting of its own: one manifest per array, whatever the tiles and years.
const REWRITE: &str = r#"
import sys
import icechunk as ic

split = ic.ManifestSplittingConfig.from_dict(
    {ic.ManifestSplitCondition.path_matches(".*"): {ic.ManifestSplitDimCondition.Any(): 1_000_000}}
)
config = ic.RepositoryConfig(manifest=ic.ManifestConfig(splitting=split))
repo = ic.Repository.open(ic.local_filesystem_storage(sys.argv[1]), config=config)
print(repo.rewrite_manifests("manifests rewritten by another tool", branch="main"))
"#;

/// `status --json` of a year: its written count and each tile's state.
fn status_year(w: &Work, year: i32) -> (u64, serde_json::Value) {
    let doc: serde_json::Value =
        serde_json::from_str(&w.ok(&["status", "--json"])).expect("status JSON");
    let y = &doc["years"][year.to_string()];
    (y["written"].as_u64().expect("written"), y["tiles"].clone())
}

/// The snapshots whose coverage is cached under `cache` (one repository's folder).
fn cached(cache: &Path) -> BTreeSet<String> {
    let coverage = cache.join("coverage");
    let repos: Vec<PathBuf> = std::fs::read_dir(&coverage)
        .unwrap_or_else(|e| panic!("{}: {e}", coverage.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(repos.len(), 1, "one repository's folder: {repos:?}");
    std::fs::read_dir(&repos[0])
        .expect("repository folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .map(|n| n.strip_suffix(".json").unwrap_or(&n).to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_that_span_tiles_fall_back_to_listing_and_status_stays_exact() {
    let w = Work::new();
    // SAFETY: set before this test starts any thread that reads the environment; this
    // process's cube handles keep coverage where the binary keeps it.
    unsafe { std::env::set_var("TILECUBE_DATA_DIR", w.dir.path().join("data")) };
    // Two tiles side by side, one above, one all fill (written, no chunk), one listed only;
    // and a tile of another year.
    for name in ["00N_000E", "00N_010E", "10N_000E"] {
        w.tile(2000, name, Flaw::None);
    }
    w.tile(2000, "10N_010E", Flaw::AllFill);
    w.list(
        2000,
        &["00N_000E", "00N_010E", "10N_000E", "10N_010E", "20N_000E"],
        "",
    );
    w.tile(2005, "00N_000E", Flaw::None);
    w.list(2005, &["00N_000E"], "");
    w.ok(&["init"]);
    w.ok(&[
        "write",
        "--year",
        "2000",
        "--tiles",
        "00N_000E,00N_010E,10N_000E,10N_010E",
    ]);
    w.ok(&["write", "--all", "--year", "2005"]);
    let split_by_tile = w.cube().await.head().await.expect("head");

    let out = std::process::Command::new(common::python_ic2())
        .arg("-c")
        .arg(REWRITE)
        .arg(w.repo())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python rewrite_manifests: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The new snapshot's id is the last line (icechunk may log a warning before it).
    let rewritten = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();

    // The head is the other tool's commit, and its manifest list no longer tells the tiles
    // apart: coverage takes the fallback (the tile-split snapshot before it did not).
    let cube = w.cube().await;
    let head = cube.head().await.expect("head");
    assert_eq!(head.to_string(), rewritten);
    assert_eq!(
        cube.manifest_chunk_counts(&head).await.expect("manifests"),
        None,
        "one manifest spans the tiles"
    );
    assert!(
        cube.manifest_chunk_counts(&split_by_tile)
            .await
            .expect("manifests")
            .is_some(),
        "the cube's own split, before the rewrite"
    );

    // `status` names exactly the tiles written, as before the rewrite.
    let want_2000 = serde_json::json!({
        "00N_000E": "written",
        "00N_010E": "written",
        "10N_000E": "written",
        "10N_010E": "written",
        "20N_000E": "listed",
    });
    let want_2005 = serde_json::json!({ "00N_000E": "written" });
    assert_eq!(status_year(&w, 2000), (4, want_2000.clone()));
    assert_eq!(status_year(&w, 2005), (1, want_2005.clone()));
    // ... with each tile's chunks counted from the listing: 16 a tile, none for all fill.
    let cov = w.cube().await.coverage().await.expect("coverage");
    let chunks = |year: i32, name: &str| match cov.state(year, t(name)) {
        Some(TileState::Written { chunks, .. }) => *chunks,
        other => panic!("{year}/{name}: {other:?}"),
    };
    for name in ["00N_000E", "00N_010E", "10N_000E"] {
        assert_eq!(chunks(2000, name), 16, "2000/{name}");
    }
    assert_eq!(chunks(2000, "10N_010E"), 0);
    assert_eq!(chunks(2005, "00N_000E"), 16);
    assert_eq!(cov.tiles.len(), 5, "{:?}", cov.tiles.keys());
    // The fallback's answer is cached by the head's id, and read back the same.
    let cache = w.dir.path().join("data").join("cache");
    assert!(cached(&cache).contains(&head.to_string()));
    assert_eq!(status_year(&w, 2000), (4, want_2000));

    // tilecube writes on over the other tool's manifests: the new tile joins, nothing is lost.
    w.tile(2000, "20N_000E", Flaw::None);
    w.ok(&["write", "--year", "2000", "--tiles", "20N_000E"]);
    let (written, tiles) = status_year(&w, 2000);
    assert_eq!(written, 5);
    assert_eq!(
        tiles,
        serde_json::json!({
            "00N_000E": "written",
            "00N_010E": "written",
            "10N_000E": "written",
            "10N_010E": "written",
            "20N_000E": "written",
        })
    );
    assert_eq!(status_year(&w, 2005), (1, want_2005));
    w.ok(&["verify"]);
}

/// Every file under a directory.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether `hay` holds `needle`, as bytes.
fn holds(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_the_coverage_cache_of_an_s3_repository() {
    let moto = Moto::start();
    moto.create_bucket("cubes");
    let w = Work::new();
    let names = ["80N_180W", "80N_170W"];
    for name in names {
        w.tile(2000, name, Flaw::None);
    }
    w.list(2000, &names, "");
    // Whatever the processes write under the user's directories lands in the workspace:
    // home, XDG directories and temporary files, besides TILECUBE_DATA_DIR.
    let home = w.dir.path().join("home");
    let tmp = w.dir.path().join("tmp");
    for d in [&home, &tmp] {
        std::fs::create_dir_all(d).expect("dir");
    }
    let mut env = moto.env();
    env.extend([
        ("HOME", home.display().to_string()),
        ("XDG_CACHE_HOME", home.join(".cache").display().to_string()),
        (
            "XDG_CONFIG_HOME",
            home.join(".config").display().to_string(),
        ),
        (
            "XDG_DATA_HOME",
            home.join(".local/share").display().to_string(),
        ),
        ("TMPDIR", tmp.display().to_string()),
    ]);
    let repo = "s3://cubes/creds";
    let run = |args: &[&str]| {
        let mut all = vec!["--repo", repo];
        all.extend_from_slice(args);
        let out = w.run_with(&all, &env);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["init"]);
    run(&["write", "--year", "2000", "--tiles", "80N_180W"]);
    run(&["write", "--year", "2000", "--tiles", "80N_170W"]);
    let log: serde_json::Value = serde_json::from_str(&run(&["log", "--json"])).expect("log");
    let head = log[0]["id"].as_str().expect("id").to_string();
    let before = log[1]["id"].as_str().expect("id").to_string();

    // `status` caches the head's coverage, and only it.
    let status: serde_json::Value =
        serde_json::from_str(&run(&["status", "--json"])).expect("status");
    assert_eq!(status["years"]["2000"]["written"], 2);
    let cache = w.dir.path().join("data").join("cache");
    assert_eq!(cached(&cache), BTreeSet::from([head.clone()]));

    // The console browses the snapshot before the head and diffs the two: both cached.
    let exports: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    let cmd = format!(
        "{exports}TILECUBE_DATA_DIR={} {} --config {} --repo {repo} tui; echo CONSOLE-EXITED $?; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    );
    let tmux = Tmux::start(&cmd);
    tmux.wait_for("1:2000 2/2");
    tmux.keys(&["Tab"]);
    tmux.wait_for(" history ");
    tmux.keys(&["Down", "Enter"]);
    tmux.wait_for("READ-ONLY SNAPSHOT");
    tmux.keys(&["Up", "d"]);
    tmux.wait_for(": 1 tile differs (◆)");
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
    drop(tmux);
    let entries = cached(&cache);
    assert!(
        entries.contains(&head) && entries.contains(&before),
        "{entries:?}"
    );
    // The entries are coverage: the tiles written, by name.
    let repo_dir = std::fs::read_dir(cache.join("coverage"))
        .expect("cache")
        .next()
        .expect("repository folder")
        .expect("entry")
        .path();
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo_dir.join(format!("{head}.json"))).unwrap())
            .expect("entry JSON");
    let tiles: BTreeSet<&str> = entry["tiles"]
        .as_array()
        .expect("tiles")
        .iter()
        .map(|e| e["tile"].as_str().expect("tile"))
        .collect();
    assert_eq!(tiles, BTreeSet::from(names));

    // No file in the workspace — cache, data dir (journal, runs), home, temporary files —
    // holds the access key or the secret.
    let files = walk(w.dir.path());
    let cache_files: Vec<&PathBuf> = files.iter().filter(|f| f.starts_with(&cache)).collect();
    assert!(
        cache_files.len() >= 2,
        "the cache files are among those read: {files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (what, key) in [("secret", SECRET_KEY), ("access key", ACCESS_KEY)] {
            assert!(!holds(&bytes, key), "{} holds the {what}", f.display());
        }
    }
    // Nor does any object of the repository.
    let keys = moto.list("cubes", "creds").await;
    assert!(keys.len() > 10, "the repository's objects: {keys:?}");
    for key in &keys {
        let bytes = moto.get("cubes", key).await;
        for (what, secret) in [("secret", SECRET_KEY), ("access key", ACCESS_KEY)] {
            assert!(!holds(&bytes, secret), "s3://cubes/{key} holds the {what}");
        }
    }
}
