//! The checks a tile passes before a byte of it is written, and what a failed tile says.
//!
//! Proves, on real GeoTIFFs edited with GDAL's own tools and the real `tilecube` binary:
//! each tile check that `tests/ingest.rs` does not already exercise (pixel size, a rotated
//! geotransform, no geotransform, a missing CRS, an upper-left corner that is another tile's)
//! fails that tile alone, with a line naming the tile and the exact reason, journaled and
//! tried once, while the good tiles are written pixel for pixel in the one commit; a truncated
//! and a corrupt tile fail with the messages GDAL raised before the failure
//! (`(after: …)`), exactly as GDAL words them; and `TILECUBE_GDAL_CACHEMAX` sets the size of
//! GDAL's block cache (64 MB when unset), seen in the writer's peak memory.

use crate::common;

use std::collections::BTreeSet;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Work, cube_pixels, gdal_pixels, t};
use icechunk::repository::VersionInfo;
use tilecube::demo::Flaw;

/// Run one of GDAL's command-line tools; it must succeed.
fn gdal_tool(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (gdal-bin): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The line of `stderr` that reports `year/tile` failed.
fn failure_line<'a>(stderr: &'a str, year: i32, tile: &str) -> &'a str {
    let prefix = format!("failed: {year}/{tile}: ");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(lines.len(), 1, "one failure line for {tile}:\n{stderr}");
    lines[0]
}

/// Offset and size of each strip of a GeoTIFF, as GDAL reads them from its TIFF tags.
fn strips(path: &Path) -> Vec<(u64, u64)> {
    use gdal::Metadata;
    let ds = gdal::Dataset::open(path).expect("open tile");
    let band = ds.rasterband(1).expect("band");
    let (bw, bh) = band.block_size();
    let (w, h) = ds.raster_size();
    assert_eq!(bw, w, "a striped tile");
    (0..h.div_ceil(bh))
        .map(|k| {
            let get = |what: &str| -> u64 {
                band.metadata_item(&format!("{what}_0_{k}"), "TIFF")
                    .expect("strip tag")
                    .parse()
                    .expect("a number")
            };
            (get("BLOCK_OFFSET"), get("BLOCK_SIZE"))
        })
        .collect()
}

/// Rows per strip of a GeoTIFF.
fn strip_rows(path: &Path) -> usize {
    let ds = gdal::Dataset::open(path).expect("open tile");
    ds.rasterband(1).expect("band").block_size().1
}

/// The strip stored last in the file (its index, offset and size); it must end the file, so
/// that cutting or overwriting it harms no other strip and no header.
fn last_strip(path: &Path) -> (usize, u64, u64) {
    let all = strips(path);
    let (k, &(offset, size)) = all
        .iter()
        .enumerate()
        .max_by_key(|(_, (o, _))| *o)
        .expect("strips");
    assert_eq!(
        offset + size,
        std::fs::metadata(path).unwrap().len(),
        "the last strip ends the file"
    );
    (k, offset, size)
}

/// The rows `a..b` a failure line says were being read.
fn rows_read(line: &str) -> (usize, usize) {
    let rest = line
        .split("reading rows ")
        .nth(1)
        .unwrap_or_else(|| panic!("no rows in {line}"));
    let range = rest.split(':').next().unwrap();
    let (a, b) = range.split_once("..").expect("a..b");
    (a.parse().unwrap(), b.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tile_check_fails_its_tile_alone_naming_the_tile_and_the_reason() {
    let w = Work::new();
    let good = ["00N_000E", "20N_020E"];
    for g in good {
        w.tile(2000, g, Flaw::None);
    }
    // Good tiles broken with gdal_edit.py, each in one way, with the exact reason expected.
    // The test grid: 400 px tiles of 10°, so 0.025° pixels.
    let bad: &[(&str, &[&str], &str)] = &[
        (
            "10N_010E",
            &["-tr", "0.03", "-0.03"],
            "pixel size is 0.03x-0.03 degrees; expected 0.025x-0.025",
        ),
        (
            // Upper-right corner 2° north of the upper-left: a row term of 2/400.
            "10N_020E",
            &["-a_ulurll", "20", "10", "30", "12", "20", "0"],
            "is rotated (geotransform terms 0, 0.005); expected a north-up grid",
        ),
        ("10N_030E", &["-unsetgt"], "has no geotransform"),
        (
            "10N_040E",
            &["-a_srs", ""],
            "CRS is missing; expected EPSG:4326",
        ),
        (
            // A whole tile's georeferencing, but that of the tile east of its name.
            "10N_060E",
            &["-a_ullr", "70", "10", "80", "0"],
            "upper-left corner is that of tile 10N_070E, not of the tile it is listed as",
        ),
    ];
    for (name, edit, _) in bad {
        let path = w.tile(2000, name, Flaw::None);
        let mut args = edit.to_vec();
        let p = path.display().to_string();
        args.push(&p);
        gdal_tool("gdal_edit.py", &args);
    }
    let mut listed: Vec<&str> = good.to_vec();
    listed.extend(bad.iter().map(|b| b.0));
    w.list(2000, &listed, "");
    w.ok(&["init"]);
    let head_before = w.cube().await.head().await.unwrap();

    let out = w.run(&["write", "--all", "--year", "2000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "some tiles failed:\n{stderr}");
    assert!(
        stdout.contains("2 tiles written, 5 failed, 1 commit"),
        "{stdout}"
    );
    for (name, _, reason) in bad {
        assert_eq!(
            failure_line(&stderr, 2000, name),
            format!("failed: 2000/{name}: {reason}"),
            "{stderr}"
        );
    }
    for g in good {
        assert!(
            !stderr.contains(&format!("failed: 2000/{g}")),
            "{g} is good:\n{stderr}"
        );
    }

    // The failure journal keeps each bad tile with its reason; a bad file is tried once.
    let journal = w.journal_entries();
    assert_eq!(journal.len(), bad.len(), "{journal:?}");
    for (name, _, reason) in bad {
        let e = journal
            .iter()
            .find(|e| e["tile"] == *name)
            .unwrap_or_else(|| panic!("{name} not in the journal: {journal:?}"));
        assert_eq!(e["year"], 2000);
        assert_eq!(e["reason"], *reason);
        assert_eq!(e["attempts"], 1, "a bad file is not retried: {e}");
    }

    // One commit, on the old head, recording the good tiles; no chunk of a bad tile.
    let cube = w.cube().await;
    let history = cube.history().await.unwrap();
    assert_eq!(history[1].id, head_before.to_string(), "one new commit");
    let recorded: BTreeSet<String> = history[0].written[&2000]
        .keys()
        .map(|t| t.to_string())
        .collect();
    let want: BTreeSet<String> = good.iter().map(|s| s.to_string()).collect();
    assert_eq!(recorded, want);
    let present = cube
        .chunks_present(&VersionInfo::BranchTipRef("main".into()))
        .await
        .unwrap();
    let tiles: BTreeSet<String> = present.keys().map(|(_, t)| t.to_string()).collect();
    assert_eq!(tiles, want, "only the good tiles have chunks");
    for g in good {
        let path = tilecube::demo::tile_path(&w.source(), 2000, t(g));
        assert!(
            cube_pixels(&cube, 2000, t(g)).await == gdal_pixels(&path),
            "{g} pixel for pixel"
        );
    }
    // The tile another tile's georeferencing points at was not written in its place.
    assert!(!present.keys().any(|(_, t)| t.to_string() == "10N_070E"));

    // `status` shows each as failed, with its reason.
    let status: serde_json::Value = serde_json::from_str(&w.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["years"]["2000"]["written"], 2, "{status}");
    let st = w.run(&["status", "--year", "2000"]);
    let text = String::from_utf8_lossy(&st.stdout);
    for (name, _, reason) in bad {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("2000/{name}")) && l.contains(reason)),
            "status names {name} with its reason:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_and_a_corrupt_tile_fail_with_gdal_s_earlier_messages() {
    let w = Work::new();
    w.tile(2000, "00N_000E", Flaw::None);

    // Truncated: the file loses the second half of the strip stored last.
    let cut = w.tile(2000, "30N_030E", Flaw::None);
    let (cut_strip, offset, cut_size) = last_strip(&cut);
    let kept = cut_size / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(offset + kept)
        .unwrap();

    // Corrupt: the strip stored last overwritten with garbage, the file's length unchanged.
    let bad = w.tile(2000, "30N_040E", Flaw::None);
    let (bad_strip, offset, bad_size) = last_strip(&bad);
    let mut f = std::fs::OpenOptions::new().write(true).open(&bad).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&vec![0xA5; bad_size as usize]).unwrap();
    drop(f);

    w.list(2000, &["00N_000E", "30N_030E", "30N_040E"], "");
    w.ok(&["init"]);
    let out = w.run(&["write", "--all", "--year", "2000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 tile written, 2 failed, 1 commit"),
        "{stderr}"
    );

    // The failure names the tile, the rows being read, GDAL's last message (the strip that
    // failed) and, after it, the message GDAL raised first: libtiff's short read, with the
    // very byte counts of the cut strip.
    let line = failure_line(&stderr, 2000, "30N_030E");
    eprintln!("{line}");
    let rows = strip_rows(&cut);
    let (a, b) = rows_read(line);
    assert!(
        a <= cut_strip * rows && cut_strip * rows < b,
        "rows {a}..{b} hold strip {cut_strip}: {line}"
    );
    assert!(
        line.contains(&format!(
            "{}, band 1: IReadBlock failed at X offset 0, Y offset {cut_strip}: TIFFReadEncodedStrip() failed.",
            cut.display()
        )),
        "{line}"
    );
    assert!(
        line.contains(" (after: TIFFFillStrip:Read error at scanline ")
            && line.ends_with(&format!("; got {kept} bytes, expected {cut_size})")),
        "GDAL's earlier message, with the strip's byte counts: {line}"
    );

    // The corrupt strip: LZW's own complaint, raised before GDAL's failure, names the file.
    let line = failure_line(&stderr, 2000, "30N_040E");
    eprintln!("{line}");
    let (a, b) = rows_read(line);
    assert!(
        a <= bad_strip * rows && bad_strip * rows < b,
        "rows {a}..{b} hold strip {bad_strip}: {line}"
    );
    assert!(
        line.contains(&format!(
            "{}, band 1: IReadBlock failed at X offset 0, Y offset {bad_strip}: TIFFReadEncodedStrip() failed.",
            bad.display()
        )),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(
            " (after: {}:Using code not yet in table)",
            bad.display()
        )),
        "GDAL's earlier message: {line}"
    );

    // The journal keeps the same words; neither local file was retried.
    let journal = w.journal_entries();
    for (name, strip) in [("30N_030E", cut_strip), ("30N_040E", bad_strip)] {
        let e = journal
            .iter()
            .find(|e| e["tile"] == name)
            .unwrap_or_else(|| panic!("{name}: {journal:?}"));
        let reason = e["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("Y offset {strip}: TIFFReadEncodedStrip() failed."))
                && reason.contains(" (after: "),
            "{reason}"
        );
        assert_eq!(e["attempts"], 1, "a bad local file is not retried: {e}");
    }
    let cube = w.cube().await;
    let path = tilecube::demo::tile_path(&w.source(), 2000, t("00N_000E"));
    assert!(cube_pixels(&cube, 2000, t("00N_000E")).await == gdal_pixels(&path));
}

/// Run `write --all` of a workspace as a child and return its exit code and peak RSS in MB
/// (its `VmHWM`, read until it exits).
fn write_peak_mb(w: &Work, repo: &Path, cachemax: Option<&str>) -> (Option<i32>, f64) {
    let repo_s = repo.display().to_string();
    w.ok(&["--repo", &repo_s, "init"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tilecube"));
    cmd.arg("--config")
        .arg(w.dir.path().join("config.toml"))
        .args(["--repo", &repo_s, "write", "--all", "--threads", "2"])
        .env("TILECUBE_DATA_DIR", w.dir.path().join("data"))
        .env_remove("TILECUBE_GDAL_CACHEMAX")
        .env_remove("GDAL_CACHEMAX")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(v) = cachemax {
        cmd.env("TILECUBE_GDAL_CACHEMAX", v);
    }
    common::wait_peak_rss_mb(cmd.spawn().expect("spawn tilecube"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tilecube_gdal_cachemax_sets_the_size_of_gdal_s_block_cache() {
    // One 16 000² striped LZW tile: 256 MB of pixels once decoded. Its strips are read through
    // GDAL's block cache, which keeps them up to its cap; how much the writer's memory grows
    // above a 1 MB cache is what the cache held.
    const SIDE: u64 = 16_000;
    let w = Work::with_grid(SIDE, 1_000);
    let small = Work::new();
    let seed = small.tile(2000, "00N_000E", Flaw::None);
    let big = tilecube::demo::tile_path(&w.source(), 2000, t("00N_000E"));
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let side = SIDE.to_string();
    gdal_tool(
        "gdal_translate",
        &[
            "-q",
            "-outsize",
            &side,
            &side,
            "-co",
            "COMPRESS=LZW",
            &seed.display().to_string(),
            &big.display().to_string(),
        ],
    );
    w.list(2000, &["00N_000E"], "");

    let mut peaks = vec![];
    for (i, cachemax) in [Some("1"), None, Some("1024")].into_iter().enumerate() {
        let repo = w.dir.path().join(format!("repo-{i}"));
        let (code, peak) = write_peak_mb(&w, &repo, cachemax);
        assert_eq!(
            code,
            Some(0),
            "TILECUBE_GDAL_CACHEMAX={cachemax:?}: the write succeeded"
        );
        assert!(peak > 20.0, "the child's memory was read: {peak} MB");
        let out = w.ok(&["--repo", &repo.display().to_string(), "status", "--json"]);
        let st: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(st["years"]["2000"]["written"], 1, "{cachemax:?}: {st}");
        eprintln!("TILECUBE_GDAL_CACHEMAX={cachemax:?}: peak RSS {peak:.0} MB");
        peaks.push(peak);
    }
    let (one, default, large) = (peaks[0], peaks[1], peaks[2]);
    // 1024 MB: the cache holds the whole decoded tile (256 MB) — far above a 1 MB cache.
    assert!(
        large - one > 170.0,
        "a 1024 MB cache holds the tile's strips: {large:.0} MB vs {one:.0} MB with 1 MB"
    );
    // Unset: the cache is capped at 64 MB — above the 1 MB cache, far below the whole tile.
    assert!(
        (25.0..=110.0).contains(&(default - one)),
        "the default cache holds about 64 MB: {default:.0} MB vs {one:.0} MB with 1 MB"
    );
    assert!(
        large - default > 100.0,
        "the default caps the cache: {default:.0} MB vs {large:.0} MB with 1024 MB"
    );
    // A value GDAL would read as no cache at all is refused by name, nothing written.
    for bad in [
        "lots",
        "64MB",
        "",
        "150%",
        "100000",
        "99999999999999999999",
        "-5",
    ] {
        let repo = w.dir.path().join("repo-bad");
        let out = w.run_with(
            &["--repo", &repo.display().to_string(), "init"],
            &[("TILECUBE_GDAL_CACHEMAX", bad.to_string())],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(
            err.contains(&format!(
                "TILECUBE_GDAL_CACHEMAX={bad:?}: expected GDAL's block cache size"
            )),
            "{bad:?}: {err}"
        );
        assert!(!repo.exists(), "{bad:?}: nothing made");
    }
}
