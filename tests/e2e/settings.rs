//! Settings that choose what a command reads and writes: `--branch` (and `branch =`), and
//! the config file's keys against `config.example.toml`.
//!
//! Proves, with the real `tilecube` binary on a real repository: a write with `--branch dev`
//! lands on dev and leaves main's head, history and pixels untouched, and `status`, `log`,
//! `map` and the console (`tui`, in a real terminal) with `--branch dev` — or `branch = "dev"`
//! in the config file — read dev, and without it main. And that `config.example.toml`
//! documents every key the config file knows (taken from the settings' serde structs through
//! `tilecube::config::setting_keys`, not from a list kept by hand) and no other: the example
//! loads through the real loader as it is and with every commented-out key switched on, and
//! the binary runs with it.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::tmux::Tmux;
use common::{Work, cube_pixels, gdal_pixels, t};
use tilecube::cube::{Cube, RepoLocation};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Run the binary with `config` (instead of the workspace's own).
fn run_config(w: &Work, config: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tilecube"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("TILECUBE_DATA_DIR", w.dir.path().join("data"))
        .output()
        .expect("run tilecube")
}

/// The glyphs of 00N row's tiles at columns `cols` (000E is column 18) on an 80×24 screen.
fn row_00n(screen: &str, cols: std::ops::Range<usize>) -> String {
    let row = screen
        .lines()
        .find(|l| l.starts_with("00N "))
        .unwrap_or_else(|| panic!("no 00N row:\n{screen}"));
    let chars: Vec<char> = row.chars().collect();
    cols.map(|c| chars[4 + 2 * c]).collect()
}

/// `tilecube map` of level 0 over one tile's bounds; returns its stdout, stderr and the
/// picture's first pixel.
fn map_tile(w: &Work, branch: &[&str], tile: &str, out: &Path) -> (String, String, [u8; 3]) {
    let n = t(tile);
    let bbox = format!("--bbox={},{},{},{}", n.lon, n.lat - 10, n.lon + 10, n.lat);
    let mut args: Vec<&str> = branch.to_vec();
    let out_s = out.display().to_string();
    args.extend([
        "map", "--year", "2000", "--factor", "1", &bbox, "--out", &out_s,
    ]);
    let o = w.run(&args);
    assert!(
        o.status.success(),
        "map {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ds = gdal::Dataset::open(out).expect("open png");
    let mut px = [0u8; 3];
    for (b, v) in px.iter_mut().enumerate() {
        *v = ds
            .rasterband(b + 1)
            .unwrap()
            .read_as::<u8>((0, 0), (1, 1), (1, 1), None)
            .unwrap()
            .data()[0];
    }
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        px,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_another_branch_lands_there_and_the_readers_follow_the_branch() {
    let w = Work::new();
    // A on main; B and C written to dev. Top halves of distinct classes, to tell them apart.
    let (a, b, c) = ("00N_000E", "00N_010E", "00N_020E");
    w.two_class_tile(2000, a, 10, 20);
    w.two_class_tile(2000, b, 30, 40);
    w.two_class_tile(2000, c, 50, 60);
    w.list(2000, &[a, b, c], "");
    w.ok(&["init"]);
    let out = w.ok(&["write", "--tiles", a, "--year", "2000"]);
    assert!(out.contains("1 tile written"), "{out}");

    // dev made at main's head with Icechunk's own API, as an operator would.
    let main_cube = w.cube().await;
    let main_head = main_cube.head().await.unwrap();
    main_cube
        .repo
        .create_branch("dev", &main_head)
        .await
        .expect("create branch dev");
    let main_log = w.ok(&["log", "--json"]);

    let out = w.ok(&[
        "--branch",
        "dev",
        "write",
        "--tiles",
        &format!("{b},{c}"),
        "--year",
        "2000",
    ]);
    assert!(out.contains("2 tiles written"), "{out}");

    // main: untouched — same head, same history, A only.
    let main_cube = main_cube.reopen().await.unwrap();
    assert_eq!(
        main_cube.head().await.unwrap(),
        main_head,
        "main did not move"
    );
    assert_eq!(
        w.ok(&["log", "--json"]),
        main_log,
        "main's history is as it was"
    );
    let st = json(&w.ok(&["status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 1, "{st}");
    let fill = main_cube.layout.fill_value;
    let px = |tile: &str| tilecube::demo::tile_path(&w.source(), 2000, t(tile));
    assert!(cube_pixels(&main_cube, 2000, t(a)).await == gdal_pixels(&px(a)));
    for other in [b, c] {
        assert!(
            cube_pixels(&main_cube, 2000, t(other))
                .await
                .iter()
                .all(|&v| v == fill),
            "{other} is not on main"
        );
    }

    // dev: A (from main's head) and B, C in one commit on top of it.
    let dev = Cube::open(RepoLocation::Local(w.repo()), "dev")
        .await
        .expect("open dev");
    for tile in [a, b, c] {
        assert!(
            cube_pixels(&dev, 2000, t(tile)).await == gdal_pixels(&px(tile)),
            "{tile} on dev"
        );
    }
    let st = json(&w.ok(&["--branch", "dev", "status", "--json"]));
    assert_eq!(st["years"]["2000"]["written"], 3, "{st}");
    let log = json(&w.ok(&["--branch", "dev", "log", "--json"]));
    let log = log.as_array().unwrap();
    let mut newest: Vec<&String> = log[0]["written"]["2000"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    newest.sort();
    assert_eq!(newest, [b, c], "{log:?}");
    assert_eq!(
        log[1]["id"],
        main_head.to_string(),
        "dev's write sits on main's head"
    );

    // The config file's `branch =` does what the flag does.
    let cfg = w.dir.path().join("dev.toml");
    let text = std::fs::read_to_string(w.dir.path().join("config.toml")).unwrap();
    std::fs::write(&cfg, format!("{text}branch = \"dev\"\n")).unwrap();
    let o = run_config(&w, &cfg, &["status", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st = json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(st["years"]["2000"]["written"], 3, "branch = \"dev\": {st}");

    // `map` draws the branch it is given: B's tile in its class's colour on dev, blank on
    // main (and says so).
    let top_b = tilecube::legend::rgb(30);
    assert_ne!(
        top_b,
        tilecube::legend::rgb(fill),
        "B's class shows on a map"
    );
    let (out, err, first) = map_tile(&w, &["--branch", "dev"], b, &w.dir.path().join("dev.png"));
    assert!(
        out.contains("400×400 px of level 0 (factor 1), 2000"),
        "{out}"
    );
    assert!(!err.contains("holds no data there"), "{err}");
    assert_eq!(first, top_b, "dev's map shows B");
    let (_, err, first) = map_tile(&w, &[], b, &w.dir.path().join("main.png"));
    assert!(
        err.contains("holds no data there"),
        "main's map of B: {err}"
    );
    assert_eq!(
        first,
        tilecube::legend::rgb(fill),
        "main's map of B is blank"
    );

    // The console reads the branch it is given: its title, year tab and grid.
    for (flag, tab, glyphs) in [
        ("--branch dev", "1:2000 3/3", "###"),
        ("", "1:2000 1/3", "#oo"),
    ] {
        let tmux = Tmux::start(&format!(
            "TILECUBE_DATA_DIR={} {} --config {} {flag} tui; echo CONSOLE-EXITED $?; sleep 60",
            w.dir.path().join("data").display(),
            env!("CARGO_BIN_EXE_tilecube"),
            w.dir.path().join("config.toml").display()
        ));
        let screen = tmux.wait_for(tab);
        let branch = if flag.is_empty() { "main" } else { "dev" };
        assert!(
            screen
                .lines()
                .next()
                .is_some_and(|l| l.contains(&format!(" @ {branch}"))),
            "{screen}"
        );
        assert_eq!(row_00n(&screen, 18..21), glyphs, "{screen}");
        tmux.keys(&["q"]);
        tmux.wait_for("CONSOLE-EXITED 0");
    }
}

/// Every key of a TOML table, nested tables' keys dotted (`s3.region`).
fn toml_keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => toml_keys(t, &key, out),
            _ => {
                out.insert(key);
            }
        }
    }
}

/// The example with every commented-out key (`# key = value`) switched on.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_config_documents_every_setting_and_no_other() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("config.example.toml");
    let text = std::fs::read_to_string(&example).unwrap();

    // The settings' own keys, from their serde structs.
    let known: BTreeSet<String> = tilecube::config::setting_keys().into_iter().collect();
    for k in [
        "repo",
        "commit_refs",
        "s3.endpoint_url",
        "storage_retries.max_backoff_ms",
    ] {
        assert!(known.contains(k), "{k} in {known:?}");
    }

    // As it is, the example loads through the real loader and the settings over it.
    let (file, path) =
        tilecube::config::ConfigFile::load(Some(&example)).expect("the example loads");
    assert_eq!(path.as_deref(), Some(example.as_path()));
    assert_eq!(file.branch.as_deref(), Some("main"));
    let settings = tilecube::config::Settings::resolve(
        &tilecube::config::Overrides {
            config: Some(example.clone()),
            ..Default::default()
        },
        tilecube::storage_settings::StorageSettings::default(),
    )
    .expect("settings resolve over the example");
    assert_eq!(settings.branch, "main");

    // With every commented-out key switched on, it still loads — each is a key the settings
    // know, with a value they take — and its keys are exactly the settings'.
    let full = uncommented(&text);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("config.toml");
    std::fs::write(&copy, &full).unwrap();
    // Its `preset = "./assets/presets/glad.toml"` is taken from the file's directory.
    std::os::unix::fs::symlink(root.join("assets"), dir.path().join("assets")).unwrap();
    let loaded = tilecube::config::ConfigFile::load(Some(&copy))
        .unwrap_or_else(|e| panic!("the example with every key on: {e}\n{full}"));
    assert!(loaded.0.preset.is_some() && loaded.0.storage_retries.tries.is_some());
    let table: toml::Table = full.parse().expect("TOML");
    let mut documented = BTreeSet::new();
    toml_keys(&table, "", &mut documented);
    let undocumented: Vec<_> = known.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(
        undocumented.is_empty(),
        "settings not documented in config.example.toml: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "config.example.toml documents keys the settings do not know: {unknown:?}"
    );
    let settings = tilecube::config::Settings::resolve(
        &tilecube::config::Overrides {
            config: Some(copy.clone()),
            ..Default::default()
        },
        tilecube::storage_settings::StorageSettings::default(),
    )
    .expect("settings resolve over the example with every key on");
    assert_eq!(
        settings.file.storage_retries.tries.map(|t| t.get()),
        Some(10)
    );

    // The binary takes it: `status` gets as far as the repository it names.
    let w = Work::new();
    let o = run_config(&w, &copy, &["status"]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{said}");
    // (`repo = "./glad-cube"`, taken from the file's directory.)
    assert!(
        said.contains(&format!(
            "repository {}/./glad-cube is not there",
            dir.path().display()
        )),
        "the config was read, its repository looked for: {said}"
    );
    assert!(!said.contains("config file"), "{said}");
}
