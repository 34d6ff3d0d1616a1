//! Memory stays bounded whatever the tile size: `write` of a tile whose pixels alone would
//! not fit in the bound keeps its peak RSS under 512 MB.

use crate::common;

use std::process::{Command, Stdio};

use common::{Work, wait_peak_rss_mb};

#[test]
fn writing_a_tile_larger_than_the_memory_bound_stays_under_it() {
    // 24 000² uint8 = 576 MB of pixels, more than the 512 MB bound; chunks of 1000². Uniform
    // land (two classes, a half each): every chunk compresses below Icechunk's inline
    // threshold and is held in the session until the commit.
    let w = Work::with_grid(24_000, 1_000);
    w.two_class_tile(2000, "00N_000E", 30, 50);
    w.list(2000, &["00N_000E"], "");
    w.ok(&["init"]);
    let child = Command::new(env!("CARGO_BIN_EXE_tilecube"))
        .arg("--config")
        .arg(w.dir.path().join("config.toml"))
        .args(["write", "--all", "--threads", "2"])
        .env("TILECUBE_DATA_DIR", w.dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (code, peak) = wait_peak_rss_mb(child);
    assert_eq!(code, Some(0), "the write succeeded");
    assert!(peak > 20.0, "the child's memory was read: {peak} MB");
    eprintln!("peak RSS {peak:.0} MB for a 576 MB tile");
    assert!(peak < 512.0, "peak RSS {peak:.0} MB");
    let status: serde_json::Value = serde_json::from_str(&w.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["years"]["2000"]["written"], 1);
}
