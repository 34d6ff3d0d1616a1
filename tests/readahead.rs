//! The read-ahead of remote tiles, on a real HTTP server (nginx on loopback): the windows
//! after the one being read are fetched ahead within the budget, every byte arrives as the
//! server holds it and is fetched once, and failures keep their typed cause.

mod common;

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

    let file = RemoteFile::open(&format!("{}/f.bin", nginx.url())).expect("open");
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
    match RemoteFile::open(&format!("{}/nope.bin", nginx.url())) {
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
    let file = RemoteFile::open(&format!("{}/f.bin", nginx.url())).expect("open");
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
