//! `gs://` sources, read as the published GLAD bucket is (anonymously, over the GCS XML API),
//! from a real HTTP server: nginx on loopback serves a directory as the bucket. The endpoint
//! is set by the flag, the config file or GDAL's own `CPL_GS_ENDPOINT`, and applies to the
//! tile reads (GDAL's `/vsigs/`) and the list fetches alike.

use crate::common;

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

    // A year without a list in the bucket, and a source prefix the bucket does not hold:
    // each an error naming the list's address, nothing written.
    for (root, year) in [
        (source, "2005"),
        ("gs://glad-bucket/no-such-prefix", "2000"),
    ] {
        let out = w.run_with(
            &[
                "--source",
                root,
                "--gcs-endpoint",
                &url,
                "write",
                "--all",
                "--year",
                year,
            ],
            &anonymous,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{root} {year}: {stderr}");
        assert!(
            stderr.contains(&format!("no tile list for {year}"))
                && stderr.contains(&format!("{root}/{year}.txt")),
            "{stderr}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("tiles written"));
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

#[test]
fn remote_read_errors_name_the_tile_and_the_reason() {
    // Over HTTP: a tile the server forbids (403), one it keeps failing (503: retried, then
    // failed), one it does not have (404), next to a good one; then a server that is not
    // there at all (connection refused).
    let w = Work::new();
    let names = ["00N_000E", "10N_010E", "20N_020E"];
    for n in names {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &["00N_000E", "10N_010E", "20N_020E", "30N_030E"], "");
    let www = w.dir.path().join("www");
    copy_tree(&w.source(), &www.join("src"));
    let nginx = Nginx::serve_with(
        &www,
        "location = /src/2000/10N_010E.tif { return 403; } \
         location = /src/2000/20N_020E.tif { return 503; }",
    );
    w.ok(&["init"]);
    let source = format!("{}/src", nginx.url());
    let out = w.run(&["--source", &source, "write", "--all", "--year", "2000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("1 tile written, 3 failed"),
        "{stdout}{stderr}"
    );
    let failure = |tile: &str| {
        stderr
            .lines()
            .find(|l| l.starts_with(&format!("failed: 2000/{tile}")))
            .unwrap_or_else(|| panic!("no failure line for {tile}:\n{stderr}"))
            .to_string()
    };
    let forbidden = failure("10N_010E");
    assert!(http_status(&forbidden, 403), "{forbidden}");
    let failing = failure("20N_020E");
    assert!(http_status(&failing, 503), "{failing}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("retry") && l.contains("2000/20N_020E")),
        "a 5xx is retried before it fails:\n{stderr}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("retry") && l.contains("2000/10N_010E")),
        "a 403 is not retried:\n{stderr}"
    );
    let missing = failure("30N_030E");
    assert!(missing.contains("not found"), "{missing}");

    // A server that is not there: the list fetch fails, naming it and why; nothing written.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let gone = format!("http://127.0.0.1:{closed}/src");
    let out = w.run(&["--source", &gone, "write", "--all", "--year", "2000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{gone}/2000.txt")) && stderr.to_lowercase().contains("connect"),
        "{stderr}"
    );
}

/// A tile truncated on the server (served whole, shorter than its blocks say) fails once,
/// named by its URL — not the read-ahead's internal path — and is not retried: it stays so.
#[test]
fn a_tile_truncated_on_the_server_fails_by_its_url_without_retries() {
    let w = Work::new();
    let names = ["00N_000E", "10N_010E"];
    for n in names {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &names, "");
    let www = w.dir.path().join("www");
    copy_tree(&w.source(), &www.join("src"));
    let served = www.join("src/2000/10N_010E.tif");
    let len = std::fs::metadata(&served).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&served)
        .unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    let nginx = Nginx::serve(&www);
    w.ok(&["init"]);
    let source = format!("{}/src", nginx.url());
    let out = w.run(&["--source", &source, "write", "--all", "--year", "2000"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("1 tile written, 1 failed"), "{said}");
    let failed = said
        .lines()
        .find(|l| l.starts_with("failed: 2000/10N_010E"))
        .unwrap_or_else(|| panic!("no failure line:\n{said}"));
    assert!(
        !said.contains("/vsitilecube/"),
        "the read-ahead's path is not shown: {said}"
    );
    assert!(
        failed.contains("reading rows") || failed.contains("GDAL cannot read it"),
        "{failed}"
    );
    assert!(
        !said
            .lines()
            .any(|l| l.contains("retry") && l.contains("10N_010E")),
        "a truncated tile is not retried: {said}"
    );
}

#[test]
fn a_connection_cut_mid_tile_leaves_nothing_of_it_and_the_retry_writes_it() {
    // The server's answers go through a proxy that cuts the connection once, mid-tile: that
    // attempt fails, none of its chunks reaches the commit, and the retry writes the tile.
    let w = Work::new();
    let names = ["00N_000E", "10N_010E"];
    for n in names {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &names, "");
    let www = w.dir.path().join("www");
    copy_tree(&w.source(), &www.join("src"));
    let nginx = Nginx::serve(&www);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let upstream = format!("127.0.0.1:{}", nginx.port)
        .parse()
        .expect("address");
    let proxy = rt
        .block_on(tilecube::netem::LatencyProxy::start(
            upstream,
            std::time::Duration::from_millis(2),
        ))
        .expect("proxy");
    let tile_bytes = std::fs::metadata(tilecube::demo::tile_path(&w.source(), 2000, t("00N_000E")))
        .expect("tile")
        .len();
    // Past the list and the first tile's header, inside its strips.
    proxy.cut_responses(tile_bytes * 2 / 3, 1);
    w.ok(&["init"]);
    let source = format!("{}/src", proxy.url());
    let out = w.run(&[
        "--source",
        &source,
        "write",
        "--all",
        "--year",
        "2000",
        "--threads",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(proxy.cuts_left(), 0, "the connection was cut");
    assert!(
        stderr.lines().any(|l| l.contains("retry")),
        "the cut attempt was retried:\n{stderr}"
    );
    let cube = rt.block_on(w.cube());
    let cov = rt.block_on(cube.coverage()).expect("coverage");
    for n in names {
        let local = tilecube::demo::tile_path(&w.source(), 2000, t(n));
        assert!(
            rt.block_on(cube_pixels(&cube, 2000, t(n))) == gdal_pixels(&local),
            "{n}: the cube holds the retry's pixels, whole"
        );
        assert!(
            cov.is_written(2000, t(n)),
            "{n}: its recorded chunks are all there"
        );
    }
}

/// Whether a failure line gives HTTP status `code` as a status (not as part of a port or a
/// byte count): "HTTP 503" from tilecube's own reads, "HTTP error code: 503" from GDAL's.
fn http_status(line: &str, code: u16) -> bool {
    line.contains(&format!("HTTP {code}")) || line.contains(&format!("HTTP error code: {code}"))
}
