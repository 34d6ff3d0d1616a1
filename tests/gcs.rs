//! `gs://` sources, read as the published GLAD bucket is (anonymously, over the GCS XML API),
//! from a real HTTP server: nginx on loopback serves a directory as the bucket. The endpoint
//! is set by the flag, the config file or GDAL's own `CPL_GS_ENDPOINT`, and applies to the
//! tile reads (GDAL's `/vsigs/`) and the list fetches alike.

mod common;

use common::nginx::{Nginx, copy_tree};
use common::{Work, cube_pixels, gdal_pixels, t};
use tilecube::demo::Flaw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gs_sources_write_the_same_cube_as_local_tiles_and_name_a_missing_one() {
    let w = Work::new();
    let names = ["00N_000E", "10N_010E", "50S_170E"];
    for n in names {
        w.tile(2000, n, Flaw::None);
    }
    // The list names a fourth tile the bucket does not hold.
    w.list(2000, &["00N_000E", "10N_010E", "50S_170E", "20N_020E"], "");
    let www = w.dir.path().join("www");
    copy_tree(&w.source(), &www.join("glad-bucket/v2"));
    let nginx = Nginx::serve(&www);
    let anonymous = [("GS_NO_SIGN_REQUEST", "YES".to_string())];
    w.ok(&["init"]);

    let source = "gs://glad-bucket/v2";
    let url = nginx.url();
    let out = w.run_with(
        &[
            "--source",
            source,
            "--gcs-endpoint",
            &url,
            "write",
            "--all",
            "--year",
            "2000",
        ],
        &anonymous,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "one tile is missing: {stderr}");
    assert!(
        stdout.contains("3 tiles written, 1 failed"),
        "{stdout}{stderr}"
    );
    let missing = stderr
        .lines()
        .find(|l| l.starts_with("failed: 2000/20N_020E"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        missing.contains("not found") && missing.contains("gs://glad-bucket/v2/2000/20N_020E.tif"),
        "{missing}"
    );
    let cube = w.cube().await;
    for n in names {
        let local = tilecube::demo::tile_path(&w.source(), 2000, t(n));
        assert!(
            cube_pixels(&cube, 2000, t(n)).await == gdal_pixels(&local),
            "{n} read from gs:// equals GDAL's read of the file"
        );
    }

    // GDAL's own CPL_GS_ENDPOINT points the list fetch too.
    let env = [
        ("GS_NO_SIGN_REQUEST", "YES".to_string()),
        ("CPL_GS_ENDPOINT", format!("{url}/")),
    ];
    let out = w.run_with(
        &["--source", source, "status", "--json", "--year", "2000"],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["years"]["2000"]["listed"], 4, "{status}");
    assert_eq!(status["years"]["2000"]["written"], 3, "{status}");

    // So does the config file's [gcs] endpoint.
    let config = w.dir.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        &format!("source = {:?}", w.source()),
        &format!("source = {source:?}"),
    );
    text.push_str(&format!("[gcs]\nendpoint = {url:?}\n"));
    std::fs::write(&config, text).unwrap();
    let out = w.run_with(
        &["write", "--year", "2000", "--tiles", "00N_000E"],
        &anonymous,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
