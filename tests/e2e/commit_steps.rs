//! A writer stopped at each step of a commit — the tiles' chunks uploaded and referenced,
//! manifests written, snapshot written with the branch not moved, the branch moved — by the
//! test-only stop of `tilecube::cube::steps` (a `SIGKILL` at that very step, as `kill -9`
//! would there, reached for sure rather than by timing) leaves a head that is the old
//! snapshot or the new one, never a torn one: `status` and the console (in a real terminal)
//! open it, `verify` is clean, and `write --missing` completes the cube pixel for pixel.

use crate::common;

use std::os::unix::process::ExitStatusExt;

use common::tmux::Tmux;
use common::{Work, cube_pixels, gdal_pixels, t, tile_names};
use tilecube::cube::steps::STEPS;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_at_each_step_of_a_commit_leaves_the_old_or_the_new_head() {
    for step in STEPS {
        let w = Work::new();
        let names = tile_names(3);
        w.listed_tiles(2000, &names);
        w.ok(&["init"]);
        w.ok(&["write", "--year", "2000", "--tiles", &names[0]]);
        let commits = |w: &Work| {
            json(&w.ok(&["log", "--json"]))
                .as_array()
                .map_or(0, Vec::len)
        };
        let before = commits(&w);

        let o = w.run_with(
            &["write", "--missing", "--year", "2000"],
            &[("TILECUBE_TEST_STOP_AT", step.to_string())],
        );
        let said = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.signal(),
            Some(9),
            "{step}: not killed there: {said}"
        );
        assert!(
            said.contains(&format!("stopping at {step}")),
            "{step}: {said}"
        );

        // The head is the old snapshot or the new one.
        let moved = step == "branch-updated";
        let after = commits(&w);
        assert_eq!(after, before + usize::from(moved), "{step}: commits");
        let status = json(&w.ok(&["status", "--json"]));
        assert_eq!(
            status["years"]["2000"]["written"],
            if moved { 3 } else { 1 },
            "{step}: {status}"
        );
        let verify = w.ok(&["verify"]);
        assert!(verify.contains("ok"), "{step}: {verify}");
        // The console opens the same head, and leaves cleanly.
        let console = Tmux::start(&format!(
            "TILECUBE_DATA_DIR={} {} --config {} tui; echo CONSOLE-EXITED $?; sleep 60",
            w.dir.path().join("data").display(),
            env!("CARGO_BIN_EXE_tilecube"),
            w.dir.path().join("config.toml").display()
        ));
        console.wait_for(&format!("1:2000 {}/3", if moved { 3 } else { 1 }));
        console.keys(&["q"]);
        console.wait_for("CONSOLE-EXITED 0");

        // The next write completes the cube.
        let out = w.ok(&["write", "--missing", "--year", "2000"]);
        let wrote = if moved { 0 } else { 2 };
        assert!(
            out.contains(&format!("{wrote} tiles written")),
            "{step}: {out}"
        );
        let cube = w.cube().await;
        for n in &names {
            let path = tilecube::demo::tile_path(&w.source(), 2000, t(n));
            assert!(
                cube_pixels(&cube, 2000, t(n)).await == gdal_pixels(&path),
                "{step}: {n} differs"
            );
        }
        eprintln!(
            "stopped at {step}: the head had {after} commits ({}), status and the console opened, verify ok, write --missing wrote {wrote}",
            if moved {
                "the new snapshot"
            } else {
                "the old snapshot"
            }
        );
    }
}

#[test]
fn a_merge_killed_at_each_step_of_its_first_or_second_batch_resumes_to_one_commit() {
    for step in STEPS {
        for nth in [1, 2] {
            let w = Work::new();
            let names = tile_names(6);
            w.listed_tiles(2000, &names);
            w.ok(&["--spec-version", "2", "init"]);
            let (p, stage) = w.staged_shards(3, &[]);
            let commits = |w: &Work| {
                json(&w.ok(&["log", "--json"]))
                    .as_array()
                    .map_or(0, Vec::len)
            };
            let before = commits(&w);
            // Two tiles' references a batch: three batches, each amending the first's commit.
            let merge = [
                "merge",
                "--plan",
                &p,
                "--stage",
                &stage,
                "--commit-refs",
                "32",
            ];
            let o = w.run_with(
                &merge,
                &[("TILECUBE_TEST_STOP_AT", format!("{step}#{nth}"))],
            );
            let said = String::from_utf8_lossy(&o.stderr);
            assert_eq!(
                o.status.signal(),
                Some(9),
                "{step}#{nth}: not killed there: {said}"
            );
            let out = w.ok(&merge);
            assert_eq!(commits(&w), before + 1, "{step}#{nth}: one commit: {out}");
            let status = json(&w.ok(&["status", "--json"]));
            assert_eq!(
                status["years"]["2000"]["written"], 6,
                "{step}#{nth}: {status}"
            );
            let log = json(&w.ok(&["log", "--json"]));
            assert_eq!(log[0]["plan"]["merged"], true, "{step}#{nth}: {log}");
            assert!(w.ok(&["verify"]).contains("ok"), "{step}#{nth}");
            eprintln!(
                "merge stopped at {step} of batch {nth}: resumed to one commit, 6 tiles, verify ok"
            );
        }
    }
}
