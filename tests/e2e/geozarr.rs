//! GeoZarr: the cube's `multiscales`, `proj` and `spatial` conventions, validated by
//! geozarr-toolkit (an independent validator) on every group of a cube written by `write`
//! and of a cube made by an earlier tilecube once `upgrade` rewrote its metadata (in one
//! commit that touches no chunk); every level opened by rioxarray with its CRS and
//! transform. Runs the Python 3.12 venv `.ci/setup` makes (`.venv-ic2`: icechunk-python
//! 2.x, geozarr-toolkit, rioxarray), or `TILECUBE_PYTHON_IC2`.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::nginx::copy_tree;
use common::{Work, cube_pixels, python_ic2, python_script, t};
use tilecube::cube::{Cube, RepoLocation};
use tilecube::demo::Flaw;

#[test]
fn a_written_cube_passes_the_geozarr_validator_and_rioxarray_at_every_level() {
    let w = Work::with_overviews(Some(100));
    let names = ["80N_180W", "00N_000E", "00N_010E", "50S_170E"];
    for name in names {
        w.tile(2010, name, Flaw::None);
    }
    w.list(2010, &names, "");
    // The default format: spec 2.
    w.ok(&["init", "--spec-version", "2"]);
    w.ok(&["write", "--all", "--commit-every", "2"]);
    let repo = w.repo().display().to_string();
    let (ok, out) = python_script(&python_ic2(), "geozarr.py", &[&repo]);
    assert!(ok && out.contains("geozarr ok: 9 groups"), "{out}");
    let (ok, out) = python_script(&python_ic2(), "levels_rio.py", &[&repo, "2", "00N_000E"]);
    assert!(ok && out.contains("rio ok: 9 levels"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cube_of_an_earlier_tilecube_upgrades_in_one_commit_that_touches_no_chunk() {
    for spec in ["1", "2"] {
        let w = Work::new();
        // Made by tilecube 0.1.0 before the conventions (tests/fixtures/README.md).
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/cube-0.1-spec{spec}"));
        copy_tree(&fixture, &w.repo());
        let repo = w.repo().display().to_string();
        let (ok, out) = python_script(&python_ic2(), "geozarr.py", &[&repo]);
        assert!(
            !ok,
            "spec {spec}: the old metadata fails the validator: {out}"
        );
        assert!(
            out.contains("/: proj: ") && out.contains("overviews/2: spatial: "),
            "spec {spec}: {out}"
        );

        let open = || async {
            Cube::open(RepoLocation::Local(w.repo()), "main")
                .await
                .expect("open")
        };
        let before_pixels = cube_pixels(&open().await, 2000, t("50N_070W")).await;
        let before = common::file_hashes(&w.repo());
        let commits = |out: String| {
            serde_json::from_str::<serde_json::Value>(&out)
                .expect("log JSON")
                .as_array()
                .expect("commits")
                .len()
        };
        let log_before = commits(w.ok(&["--repo", &repo, "log", "--json"]));

        let up: serde_json::Value =
            serde_json::from_str(&w.ok(&["--repo", &repo, "upgrade", "--json"])).expect("JSON");
        assert_eq!(
            up["groups"],
            serde_json::json!(["/", "/overviews/2", "/overviews/4", "/overviews/8"]),
            "spec {spec}: {up}"
        );
        assert!(up["snapshot"].is_string(), "{up}");
        // One commit, and not one chunk or manifest of chunks written or changed.
        assert_eq!(
            commits(w.ok(&["--repo", &repo, "log", "--json"])),
            log_before + 1
        );
        let after = common::file_hashes(&w.repo());
        for dir in ["chunks", "manifests"] {
            let of = |m: &BTreeMap<String, u64>| -> Vec<(String, u64)> {
                m.iter()
                    .filter(|(p, _)| p.starts_with(dir))
                    .map(|(p, b)| (p.clone(), *b))
                    .collect()
            };
            assert!(!of(&before).is_empty(), "spec {spec}: {dir} present");
            assert!(of(&before) == of(&after), "spec {spec}: {dir} changed");
        }
        // Every file there before is there after, unchanged: only new objects were added.
        for (p, b) in &before {
            // The lock's note names its last holder: not repository data.
            if p.starts_with("refs") || p.ends_with("repo") || p.contains(".tilecube-refs.lock") {
                continue;
            }
            assert!(after.get(p) == Some(b), "spec {spec}: {p} changed");
        }
        assert!(cube_pixels(&open().await, 2000, t("50N_070W")).await == before_pixels);

        let (ok, out) = python_script(&python_ic2(), "geozarr.py", &[&repo]);
        assert!(
            ok && out.contains("geozarr ok: 4 groups"),
            "spec {spec}: {out}"
        );
        let (ok, out) = python_script(&python_ic2(), "levels_rio.py", &[&repo, "0", "50N_070W"]);
        assert!(ok && out.contains("rio ok: 4 levels"), "spec {spec}: {out}");
        // A second upgrade has nothing to do.
        let again = w.ok(&["--repo", &repo, "upgrade"]);
        assert!(again.contains("nothing to upgrade"), "{again}");
        assert_eq!(
            commits(w.ok(&["--repo", &repo, "log", "--json"])),
            log_before + 1
        );
    }
}
