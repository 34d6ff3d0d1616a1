//! Real signals on the real binary, headless: SIGINT, SIGTERM and SIGHUP stop a write
//! cleanly — the tiles that finished are committed and equal their GeoTIFFs, nothing else is
//! in the head, the exit status is 128 + the signal — and `write --missing` completes the cube.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{Work, cube_pixels, gdal_pixels, t};
use icechunk::repository::VersionInfo;
use tilecube::demo::Flaw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_stop_a_write_commit_what_finished_and_leave_a_resumable_cube() {
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let w = Work::new();
        // Enough tiles that the write is still running when the signal lands.
        let names: Vec<String> = (0..60)
            .map(|i| format!("{:02}N_{:03}E", (i / 12) * 10, (i % 12) * 10))
            .collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        for n in &refs {
            w.tile(2000, n, Flaw::None);
        }
        w.list(2000, &refs, "");
        w.ok(&["init"]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_tilecube"))
            .arg("--config")
            .arg(w.dir.path().join("config.toml"))
            .args(["write", "--all", "--threads", "1"])
            .env("TILECUBE_DATA_DIR", w.dir.path().join("data"))
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        // Signal once the first tile is written.
        loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap() == 0 {
                break;
            }
            seen.push_str(&line);
            if line.contains(" chunks, ") {
                break;
            }
        }
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "SIG{signal}: {seen}{rest}");
        assert!(
            rest.contains("stopping; tiles that finish are committed"),
            "{rest}"
        );

        let cube = w.cube().await;
        let coverage = cube.coverage().await.unwrap();
        let written: Vec<_> = coverage.tiles.keys().collect();
        assert!(
            !written.is_empty(),
            "SIG{signal}: the finished tiles are committed"
        );
        assert!(written.len() < 60, "SIG{signal}: the write stopped early");
        for ((year, tile), state) in &coverage.tiles {
            assert!(
                matches!(state, tilecube::cube::TileState::Written { .. }),
                "{state:?}"
            );
            let path = tilecube::demo::tile_path(&w.source(), *year, *tile);
            assert!(cube_pixels(&cube, *year, *tile).await == gdal_pixels(&path));
        }
        w.ok(&["write", "--missing"]);
        let cube = w.cube().await;
        let present = cube
            .chunks_present(&VersionInfo::BranchTipRef("main".into()))
            .await
            .unwrap();
        assert_eq!(present.len(), 60);
        for n in &refs {
            let path = tilecube::demo::tile_path(&w.source(), 2000, t(n));
            assert!(
                cube_pixels(&cube, 2000, t(n)).await == gdal_pixels(&path),
                "{n}"
            );
        }
    }
}
