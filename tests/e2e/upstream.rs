//! Tiles re-issued upstream: every write records what each tile was read from (size and
//! ETag or modification time), `status` compares that with the source — a local directory,
//! S3 (one listing a year), HTTP and GCS-style over nginx (a HEAD a tile) — and shows the
//! tiles whose source changed as `changed` (`%` in the grid); `write --changed` writes
//! exactly those again. Tiles written before sources were recorded are "source unknown",
//! never changed; a source that cannot be reached is said, and the cube still shown.

use crate::common;

use std::path::PathBuf;

use common::nginx::{LoggedNginx, Nginx, copy_tree};
use common::s3::{ACCESS_KEY, Moto, SECRET_KEY};
use common::{Work, cube_pixels, gdal_pixels, t};
use tilecube::demo::Flaw;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

const NAMES: [&str; 3] = ["00N_000E", "10N_010E", "50S_170E"];

/// Each written tile's state in `status --json` for 2000, and the source check.
fn states(
    w: &Work,
    args: &[&str],
    env: &[(&str, String)],
) -> (Vec<(String, String)>, serde_json::Value) {
    let mut a = args.to_vec();
    a.extend(["status", "--json", "--year", "2000"]);
    let st = json(&w.ok_with(&a, env));
    let mut tiles: Vec<(String, String)> = st["years"]["2000"]["tiles"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    tiles.sort();
    (tiles, st["source_check"].clone())
}

fn all(state: &str, but: Option<(&str, &str)>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = NAMES
        .iter()
        .map(|n| match but {
            Some((b, s)) if b == *n => (n.to_string(), s.to_string()),
            _ => (n.to_string(), state.to_string()),
        })
        .collect();
    v.sort();
    v
}

/// Replace a source tile with another of the same place, other pixels.
fn reissue(w: &Work, name: &str) -> PathBuf {
    w.two_class_tile(2000, name, 30, 50)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_tile_reissued_shows_changed_and_write_changed_writes_it_alone() {
    let w = Work::new();
    for n in NAMES {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &NAMES, "");
    w.ok(&["init"]);
    w.ok(&["write", "--all", "--year", "2000"]);
    let (tiles, check) = states(&w, &[], &[]);
    assert_eq!(tiles, all("written", None));
    assert_eq!(check["compared"], 3);
    assert_eq!(check["changed"], 0);
    // Each tile's record: size, modification time and the digest of its bytes.
    let log = json(&w.ok(&["log", "--json"]));
    let rec = log[0]["sources"]["2000"]["10N_010E"]
        .as_str()
        .unwrap()
        .to_string();
    let file = tilecube::demo::tile_path(&w.source(), 2000, t("10N_010E"));
    assert_eq!(
        rec,
        format!(
            "{}/mtime:{}#{}",
            std::fs::metadata(&file).unwrap().len(),
            std::fs::metadata(&file)
                .unwrap()
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
            tilecube::source::Provenance::digest_of_file(&file).unwrap()
        )
    );

    std::thread::sleep(std::time::Duration::from_millis(20));
    let path = reissue(&w, "10N_010E");
    let (tiles, check) = states(&w, &[], &[]);
    assert_eq!(tiles, all("written", Some(("10N_010E", "changed"))));
    assert_eq!(check["changed"], 1);
    let text = w.ok(&["status", "--year", "2000"]);
    assert!(
        text.contains(
            "source changed since written (1): 2000/10N_010E; `tilecube write --changed`"
        ),
        "{text}"
    );
    let row = text.lines().find(|l| l.starts_with("10N ")).unwrap();
    assert_eq!(row.chars().nth(5 + 19), Some('%'), "{text}");

    let commits = w.written_by_commit(2000).len();
    let out = w.ok(&["write", "--changed", "--year", "2000"]);
    assert!(out.contains("1 tile written, 0 failed"), "{out}");
    let by_commit = w.written_by_commit(2000);
    assert_eq!(by_commit.len(), commits + 1);
    assert_eq!(by_commit[0], vec!["10N_010E".to_string()]);
    let (tiles, check) = states(&w, &[], &[]);
    assert_eq!(tiles, all("written", None));
    assert_eq!(check["changed"], 0);
    let cube = w.cube().await;
    assert!(cube_pixels(&cube, 2000, t("10N_010E")).await == gdal_pixels(&path));
    // Nothing changed: nothing to write.
    let out = w.run(&["write", "--changed", "--year", "2000"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no written tile's source changed since it was written (3 compared)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A source copied without keeping times (`cp -r`), or a tile uploaded again with the same
/// bytes, is no change: decided by the digest each write recorded. A change of the bytes at
/// the same size still is.
#[test]
fn a_copied_source_is_no_change_but_other_bytes_of_the_same_size_are() {
    let w = Work::new();
    for n in NAMES {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &NAMES, "");
    w.ok(&["init"]);
    w.ok(&["write", "--all", "--year", "2000"]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Copied away and back without -p: every file's time moves, no byte does.
    let copy = w.dir.path().join("copy");
    let out = std::process::Command::new("cp")
        .arg("-r")
        .arg(w.source())
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::remove_dir_all(w.source()).unwrap();
    let out = std::process::Command::new("cp")
        .arg("-r")
        .arg(&copy)
        .arg(w.source())
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = tilecube::demo::tile_path(&w.source(), 2000, t("10N_010E"));
    let (tiles, check) = states(&w, &[], &[]);
    assert_eq!(tiles, all("written", None), "{check}");
    assert_eq!(check["changed"], 0);
    assert_eq!(check["compared"], 3);
    // The digests taken are kept by path, size and time: the next status reads no file.
    let cache = json(
        &std::fs::read_to_string(w.dir.path().join("data").join("cache").join("digests.json"))
            .unwrap(),
    );
    assert_eq!(cache.as_object().unwrap().len(), 3, "{cache}");
    // One byte of one tile's pixels flipped: the same size, other bytes.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let (tiles, check) = states(&w, &[], &[]);
    assert_eq!(
        tiles,
        all("written", Some(("10N_010E", "changed"))),
        "{check}"
    );
    assert_eq!(check["changed"], 1);
}

/// A remote tile uploaded again with the same bytes — a new ETag over HTTP and the GCS-style
/// endpoint, a multipart upload's ETag on S3 — is no change: its write recorded the digest of
/// the object's bytes, taken from the parts the read fetched, and the check reads the object
/// whose ETag moved, once. Other bytes of the same size still are a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_tile_uploaded_again_with_the_same_bytes_is_no_change() {
    let w = Work::new();
    for n in NAMES {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &NAMES, "");
    let www = w.dir.path().join("www");
    copy_tree(&w.source(), &www.join("glad-bucket/v2"));
    let nginx = Nginx::serve(&www);
    // The HTTP source on a server that logs its requests, to count the object's reads.
    let logged = LoggedNginx::serve(&www, "0");
    w.ok(&["init"]);
    let http = format!("{}/glad-bucket/v2", logged.url());
    w.ok(&["--source", &http, "write", "--all", "--year", "2000"]);
    let file = tilecube::demo::tile_path(&w.source(), 2000, t("10N_010E"));
    let served = www.join("glad-bucket/v2/2000/10N_010E.tif");
    let log = json(&w.ok(&["log", "--json"]));
    let rec = log[0]["sources"]["2000"]["10N_010E"].as_str().unwrap();
    assert!(
        rec.ends_with(&format!(
            "#{}",
            tilecube::source::Provenance::digest_of_file(&file).unwrap()
        )),
        "the record carries the digest of the object's bytes: {rec}"
    );
    // Uploaded again, the same bytes: the server's ETag moves (its time did), no byte did.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&served, std::fs::read(&file).unwrap()).unwrap();
    let (tiles, check) = states(&w, &["--source", &http], &[]);
    assert_eq!(tiles, all("written", None), "{check}");
    assert_eq!(check["changed"], 0, "{check}");
    let anonymous = [("GS_NO_SIGN_REQUEST", "YES".to_string())];
    let url = nginx.url();
    let gs = ["--source", "gs://glad-bucket/v2", "--gcs-endpoint", &url];
    let (tiles, check) = states(&w, &gs, &anonymous);
    assert_eq!(tiles, all("written", None), "{check}");
    // The digest read is kept: the next status reads the object no more.
    let reads = |n: &LoggedNginx| {
        n.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/2000/10N_010E.tif"))
            .count()
    };
    let before = reads(&logged);
    assert!(before > 0, "the object whose ETag moved was read");
    let (tiles, _) = states(&w, &["--source", &http], &[]);
    assert_eq!(tiles, all("written", None));
    assert_eq!(reads(&logged), before, "a kept digest is not read again");
    // One byte flipped, the same size: changed.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&served, &bytes).unwrap();
    let (tiles, check) = states(&w, &["--source", &http], &[]);
    assert_eq!(
        tiles,
        all("written", Some(("10N_010E", "changed"))),
        "{check}"
    );

    // S3: uploaded again by a multipart upload, the same bytes under another ETag.
    let moto = Moto::start();
    moto.create_bucket("tiles");
    moto.upload_dir(&w.source(), "tiles", "glad").await;
    let env = moto.env();
    let src = ["--source", "s3://tiles/glad"];
    let mut write = src.to_vec();
    write.extend(["write", "--all", "--year", "2000"]);
    w.ok_with(&write, &env);
    let etag = |log: &serde_json::Value| {
        log[0]["sources"]["2000"]["10N_010E"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = etag(&json(&w.ok(&["log", "--json"])));
    moto.upload_multipart(&file, "tiles", "glad/2000/10N_010E.tif")
        .await;
    let (tiles, check) = states(&w, &src, &env);
    assert_eq!(tiles, all("written", None), "{check}");
    assert_eq!(check["changed"], 0, "{check}");
    assert!(before.contains("/etag:"), "{before}");
    std::fs::write(&file, &bytes).unwrap();
    moto.upload_multipart(&file, "tiles", "glad/2000/10N_010E.tif")
        .await;
    let (tiles, _) = states(&w, &src, &env);
    assert_eq!(tiles, all("written", Some(("10N_010E", "changed"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_written_before_sources_were_recorded_are_unknown_never_changed() {
    let w = Work::new();
    // A cube written by tilecube 0.1.0 (tests/fixtures/README.md): 2000/50N_070W and
    // 2000/50N_060W, no sources recorded.
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cube-0.1-spec2");
    copy_tree(&fixture, &w.repo());
    for n in ["50N_070W", "50N_060W"] {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &["50N_070W", "50N_060W"], "");
    let st = json(&w.ok(&["status", "--json", "--year", "2000"]));
    assert_eq!(st["years"]["2000"]["tiles"]["50N_070W"], "written", "{st}");
    assert_eq!(st["years"]["2000"]["tiles"]["50N_060W"], "written", "{st}");
    assert_eq!(st["source_check"]["unknown"], 2, "{st}");
    assert_eq!(st["source_check"]["changed"], 0, "{st}");
    let text = w.ok(&["status", "--year", "2000"]);
    assert!(
        text.contains(
            "2 written tiles have no recorded source (written before sources were recorded)"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_source_is_compared_by_its_listing_and_no_credential_is_recorded() {
    let moto = Moto::start();
    moto.create_bucket("tiles");
    let w = Work::new();
    for n in NAMES {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &NAMES, "");
    moto.upload_dir(&w.source(), "tiles", "glad").await;
    let env = moto.env();
    let src = ["--source", "s3://tiles/glad"];
    w.ok(&["init"]);
    let mut write = src.to_vec();
    write.extend(["write", "--all", "--year", "2000"]);
    w.ok_with(&write, &env);
    let (tiles, _) = states(&w, &src, &env);
    assert_eq!(tiles, all("written", None));
    let log = w.ok(&["log", "--json"]);
    let rec = json(&log)[0]["sources"]["2000"]["00N_000E"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(rec.contains("/etag:"), "{rec}");
    assert!(
        !log.contains(SECRET_KEY) && !log.contains(ACCESS_KEY),
        "{log}"
    );

    reissue(&w, "50S_170E");
    moto.upload_dir(&w.source(), "tiles", "glad").await;
    let (tiles, check) = states(&w, &src, &env);
    assert_eq!(tiles, all("written", Some(("50S_170E", "changed"))));
    assert_eq!(check["changed"], 1);
    let mut again = src.to_vec();
    again.extend(["write", "--changed", "--year", "2000"]);
    let out = w.ok_with(&again, &env);
    assert!(out.contains("1 tile written, 0 failed"), "{out}");
    assert_eq!(w.written_by_commit(2000)[0], vec!["50S_170E".to_string()]);
    let (tiles, _) = states(&w, &src, &env);
    assert_eq!(tiles, all("written", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_gcs_style_sources_are_compared_tile_by_tile_and_an_unreachable_one_is_said() {
    let w = Work::new();
    for n in NAMES {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &NAMES, "");
    let www = w.dir.path().join("www");
    copy_tree(&w.source(), &www.join("glad-bucket/v2"));
    let nginx = Nginx::serve(&www);
    w.ok(&["init"]);
    let http = format!("{}/glad-bucket/v2", nginx.url());
    w.ok(&["--source", &http, "write", "--all", "--year", "2000"]);
    let (tiles, _) = states(&w, &["--source", &http], &[]);
    assert_eq!(tiles, all("written", None));
    // Compared with a local copy instead (another kind of source: a file's time, not the
    // server's ETag): not comparable, so not changed.
    let (tiles, check) = states(&w, &[], &[]);
    assert_eq!(tiles, all("written", None));
    assert_eq!(
        (check["unknown"].as_u64(), check["changed"].as_u64()),
        (Some(3), Some(0)),
        "{check}"
    );
    // Re-issued on the server: changed over HTTP and over the GCS-style endpoint alike.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let path = reissue(&w, "00N_000E");
    std::fs::copy(&path, www.join("glad-bucket/v2/2000/00N_000E.tif")).unwrap();
    let (tiles, check) = states(&w, &["--source", &http], &[]);
    assert_eq!(tiles, all("written", Some(("00N_000E", "changed"))));
    assert_eq!(check["changed"], 1);
    let anonymous = [("GS_NO_SIGN_REQUEST", "YES".to_string())];
    let url = nginx.url();
    let gs = ["--source", "gs://glad-bucket/v2", "--gcs-endpoint", &url];
    let (tiles, _) = states(&w, &gs, &anonymous);
    assert_eq!(tiles, all("written", Some(("00N_000E", "changed"))));

    // The source gone: said on stderr, the cube still shown, nothing marked changed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("http://127.0.0.1:{closed}/glad-bucket/v2");
    let out = w.run(&["--source", &gone, "status", "--json", "--year", "2000"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: the tiles were not compared with their source: looking at the source of year 2000: "),
        "{err}"
    );
    // The list cannot be read either: said, and the cube's tiles still show.
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: tile list http://127.0.0.1:"),
        "{err}"
    );
    let st = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(st["years"]["2000"]["written"], 3, "{st}");
    assert!(st["source_check"]["error"].is_string(), "{st}");
    assert_eq!(st["years"]["2000"]["tiles"]["10N_010E"], "written", "{st}");
}

#[test]
fn the_console_shows_changed_tiles_counts_them_and_c_selects_them() {
    use common::tmux::Tmux;
    let w = Work::new();
    let row = ["80N_180W", "80N_170W", "80N_160W"];
    for n in row {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &row, "");
    w.ok(&["init"]);
    w.ok(&["write", "--all", "--year", "2000"]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    w.two_class_tile(2000, "80N_170W", 30, 50);
    let tmux = Tmux::start(&format!(
        "TILECUBE_DATA_DIR={} {} --config {} tui; echo CONSOLE-EXITED $?; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    ));
    let s = tmux.wait_for("1 written tiles' source changed since they were written (%)");
    let line = s.lines().find(|l| l.starts_with("80N ")).unwrap();
    assert_eq!(&line[4..9], "# % #", "{s}");
    // The details of the changed tile say so; C selects it alone, w offers to write it.
    tmux.keys(&["Right"]);
    tmux.wait_for("(changed since written)");
    tmux.keys(&["C", "w"]);
    tmux.wait_for("Write 1 tile of");
    tmux.keys(&["Escape", "q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}
