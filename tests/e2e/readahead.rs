//! The read-ahead of remote tiles, on a real HTTP server (nginx on loopback): the windows
//! after the one being read are fetched ahead within the budget, every byte arrives as the
//! server holds it and is fetched once, and failures keep their typed cause; a write over
//! HTTP fetches its tiles in parts of at most 4 MB that cover each file once, with never
//! more than 16 requests in flight, as the server's access log counts them.

use crate::common;

use std::ops::Range;

use common::nginx::Nginx;
use tilecube::source::RemoteError;
use tilecube::source::fetch::{ReadAhead, RemoteFile};

#[test]
fn read_ahead_stays_within_its_budget_and_reads_every_byte_as_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(www.join("f.bin"), &data).expect("file");
    let nginx = Nginx::serve(&www);

    let file =
        RemoteFile::open(&format!("{}/f.bin", nginx.url()), &Default::default()).expect("open");
    assert_eq!(file.size(), data.len() as u64);
    let window = 100_000u64;
    let windows: Vec<Vec<Range<u64>>> = (0..30)
        .map(|w| std::iter::once(w * window..(w + 1) * window).collect())
        .collect();
    let budget = 350_000;
    let ahead = ReadAhead::new((*file).clone(), windows.clone(), 8, budget);
    assert_eq!(
        file.window_bytes(),
        3 * window,
        "the first windows are asked for at once, as many as the budget holds"
    );
    for (w, ranges) in windows.iter().enumerate() {
        ahead.start(w);
        let held = file.window_bytes();
        assert!(
            held <= budget + window,
            "window {w}: {held} bytes held, over the budget"
        );
        let mut buf = vec![0u8; window as usize];
        let r = ranges[0].clone();
        assert_eq!(file.read_at(r.start, &mut buf), window as usize);
        assert!(
            buf[..] == data[r.start as usize..r.end as usize],
            "window {w}: the bytes differ from the server's"
        );
        ahead.done(w);
    }
    assert_eq!(file.window_bytes(), 0, "every window was let go");
    let stats = file.stats();
    assert_eq!(stats.bytes, data.len() as u64, "each byte was fetched once");

    // A read across the end is short; a missing object is told as such.
    let mut buf = vec![0u8; 10];
    assert_eq!(file.read_at(file.size() - 4, &mut buf), 4);
    assert!(buf[..4] == data[data.len() - 4..]);
    match RemoteFile::open(&format!("{}/nope.bin", nginx.url()), &Default::default()) {
        Err(RemoteError::NotFound { url }) => assert!(url.ends_with("/nope.bin"), "{url}"),
        Err(e) => panic!("a missing object: {e}"),
        Ok(_) => panic!("a missing object opened"),
    }
}

#[test]
fn a_fetch_that_fails_is_kept_with_its_cause_and_the_read_comes_back_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("f.bin"), vec![7u8; 200_000]).expect("file");
    let nginx = Nginx::serve(&www);
    let file =
        RemoteFile::open(&format!("{}/f.bin", nginx.url()), &Default::default()).expect("open");
    // The server goes away after the file was looked at.
    drop(nginx);
    let mut buf = vec![0u8; 1000];
    assert_eq!(file.read_at(0, &mut buf), 0, "nothing read");
    let cause = file.take_error().expect("the cause is kept");
    assert!(
        cause.is_transient(),
        "a refused connection may pass: {cause}"
    );
    assert!(cause.to_string().contains("/f.bin"), "{cause}");
    assert!(file.take_error().is_none(), "taken once");
}

/// Rewrite a tile uncompressed in strips of `rows` rows with `gdal_translate`.
fn uncompressed(path: &std::path::Path, rows: usize) {
    let tmp = path.with_extension("tmp.tif");
    let out = std::process::Command::new("gdal_translate")
        .args(["-co", "COMPRESS=NONE", "-co", &format!("BLOCKYSIZE={rows}")])
        .arg(path)
        .arg(&tmp)
        .output()
        .expect("gdal_translate (gdal-bin)");
    assert!(
        out.status.success(),
        "gdal_translate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, path).expect("replace the tile");
}

/// The most requests in flight at once, from each one's start and end at the server.
/// Times are whole milliseconds, so each interval is narrowed by 2 ms at both ends: a
/// request that starts the moment another ends never counts as overlapping it.
fn most_in_flight(requests: &[&common::nginx::Logged]) -> usize {
    let mut edges: Vec<(u64, i32)> = vec![];
    for r in requests {
        let (start, end) = (r.end_ms - r.duration_ms + 2, r.end_ms.saturating_sub(2));
        if start < end {
            edges.push((start, 1));
            edges.push((end, -1));
        }
    }
    // At one instant, ends before starts.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_tiles_are_fetched_in_parts_of_at_most_4_mb_with_at_most_16_requests_in_flight() {
    use common::nginx::{LoggedNginx, copy_tree};
    use common::{Work, cube_pixels, gdal_pixels, t};

    // Tiles of 6 000 px in chunks of 1 000, uncompressed in strips of 1 000 rows: a window
    // (one chunk row) is one strip of 6 MB, fetched as a part of 4 MB and one of the rest.
    let w = Work::with_grid(6000, 1000);
    let names = ["00N_000E", "00N_010E"];
    let mut paths = vec![];
    for name in names {
        let path = w.tile(2000, name, tilecube::demo::Flaw::None);
        uncompressed(&path, 1000);
        paths.push(path);
    }
    w.list(2000, &names, "");
    let www = w.dir.path().join("www");
    copy_tree(&w.source(), &www.join("src"));
    // Each response at 2 MB/s: a part takes a second or two, so the requests the read-ahead
    // keeps going overlap for long.
    let nginx = LoggedNginx::serve(&www, "2m");
    let source = format!("{}/src", nginx.url());
    w.ok(&["init"]);
    // Eight windows ahead per worker, two workers: every window of a tile is asked for at
    // once (6 windows, 12 parts), and the next tile's with them, more than 16 parts.
    let out = w.ok(&[
        "--source",
        &source,
        "write",
        "--all",
        "--year",
        "2000",
        "--threads",
        "2",
        "--read-ahead",
        "8",
    ]);
    assert!(out.contains("2 tiles written"), "{out}");

    const PART_MAX: u64 = 4 << 20;
    let requests = nginx.requests();
    for (name, path) in names.iter().zip(&paths) {
        let size = std::fs::metadata(path).expect("tile").len();
        let url_path = format!("/src/2000/{name}.tif");
        let of_tile: Vec<_> = requests.iter().filter(|r| r.path == url_path).collect();
        assert!(
            of_tile
                .iter()
                .all(|r| r.method == "HEAD" || r.range.is_some()),
            "{name}: a GET without a range: {of_tile:?}"
        );
        let mut ranges: Vec<std::ops::Range<u64>> = vec![];
        for r in of_tile.iter().filter(|r| r.method == "GET") {
            let range = r.range.clone().expect("a range");
            assert_eq!(r.status, 206, "{name}: {r:?}");
            assert_eq!(
                r.bytes,
                range.end - range.start,
                "{name}: the bytes sent: {r:?}"
            );
            assert!(
                range.end - range.start <= PART_MAX,
                "{name}: a request of {} bytes, over 4 MB: {r:?}",
                range.end - range.start
            );
            ranges.push(range);
        }
        // The parts cover the file, each byte once.
        ranges.sort_by_key(|r| r.start);
        let mut at = 0;
        for r in &ranges {
            assert_eq!(
                r.start, at,
                "{name}: parts {ranges:?} of a {size}-byte file"
            );
            at = r.end;
        }
        assert_eq!(at, size, "{name}: parts {ranges:?} of a {size}-byte file");
        assert!(
            ranges.iter().any(|r| r.end - r.start == PART_MAX),
            "{name}: a 6 MB window is cut at 4 MB: {ranges:?}"
        );
    }
    // The ranges asked for at once outnumber 16; the server never had more than 16 going.
    let ranged: Vec<_> = requests.iter().filter(|r| r.range.is_some()).collect();
    assert!(ranged.len() > 16, "{} range requests", ranged.len());
    assert_eq!(
        most_in_flight(&ranged),
        16,
        "range requests in flight at once, at the server: {ranged:#?}"
    );

    // And the cube holds each tile as GDAL reads it.
    let cube = w.cube().await;
    for (name, path) in names.iter().zip(&paths) {
        assert!(
            cube_pixels(&cube, 2000, t(name)).await == gdal_pixels(path),
            "{name}: the cube differs from the source"
        );
    }
}
