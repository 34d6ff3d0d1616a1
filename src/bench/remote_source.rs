//! `tilecube bench --remote-source`: writing tiles read over HTTP with an added round trip,
//! against the two limits it cannot beat — downloading the same files, and writing them from
//! the local disk — side by side in one run.
//!
//! nginx serves the bench tiles on loopback (a config in a temp dir, an unprivileged port)
//! behind [`tilecube::netem::LatencyProxy`], which adds `--rtt-ms` of round trip. Measured,
//! each as its own process or request set: both files downloaded at once (whole GETs, bytes
//! discarded); `write` from the local disk; `write` from the URL with GDAL fetching each
//! window on demand (`--read-ahead 0`); `write` from the URL with the read-ahead (default).
//! The figure of merit is remote write ÷ max(download, local write).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tilecube::nginx::Nginx;

use super::{BenchArgs, run_child, scratch, write_args};
use tilecube::grid::TileName;

/// Download `urls` at once, whole, discarding the bytes; returns the wall time and bytes.
async fn download_all(urls: &[String]) -> Result<(Duration, u64)> {
    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut tasks = vec![];
    for url in urls {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut response = client.get(&url).send().await?.error_for_status()?;
            let mut bytes = 0u64;
            while let Some(chunk) = response.chunk().await? {
                bytes += chunk.len() as u64;
            }
            Ok::<_, reqwest::Error>(bytes)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?.context("downloading a bench tile")?;
    }
    Ok((start.elapsed(), total))
}

/// Run the remote-source comparison and print its figures.
pub fn run(args: &BenchArgs, cache: &Path, tiles: &[TileName], year: i32) -> Result<()> {
    let threads = args.threads.iter().max().copied().unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let nginx = Nginx::start(cache, "").context("starting nginx (Debian's nginx-light)")?;
    let upstream = format!("127.0.0.1:{}", nginx.port).parse()?;
    let rtt = Duration::from_millis(args.rtt_ms);
    let proxy = rt.block_on(tilecube::netem::LatencyProxy::start(upstream, rtt))?;
    let base = proxy.url();
    let urls: Vec<String> = tiles
        .iter()
        .map(|t| {
            let local = tilecube::demo::tile_path(cache, year, *t);
            let rel = local.strip_prefix(cache).unwrap_or(&local);
            format!("{base}/{}", rel.display())
        })
        .collect();
    let names: Vec<String> = tiles.iter().map(|t| t.to_string()).collect();
    let tiles_arg = names.join(",");
    let px = args.pixels.to_string();
    let th = threads.to_string();
    let local_src = cache.display().to_string();
    println!(
        "remote source: {} tiles over HTTP (nginx on loopback + {} ms of round trip), {threads} thread(s)",
        tiles.len(),
        args.rtt_ms
    );

    // Each write gets a fresh repository; two rounds, alternated, so drift on a noisy
    // machine hits every kind alike; the best of each is reported.
    let mut figures: [Vec<f64>; 4] = Default::default();
    let mut rss_read_ahead: f64 = 0.0;
    let mut repos = vec![];
    for round in 0..2 {
        let (took, bytes) = rt.block_on(download_all(&urls))?;
        figures[0].push(took.as_secs_f64());
        if round == 0 {
            println!(
                "  downloaded {:.0} MB in {:.2} s ({:.0} MB/s)",
                bytes as f64 / 1e6,
                took.as_secs_f64(),
                bytes as f64 / 1e6 / took.as_secs_f64()
            );
        }
        for (kind, source, read_ahead) in [
            (1, local_src.as_str(), None),
            (2, base.as_str(), Some("0")),
            (3, base.as_str(), None),
        ] {
            let repo = scratch(&format!("bench-remote-{round}-{kind}"))?;
            let repo_s = repo.display().to_string();
            let init = run_child(&["--repo", &repo_s, "--tile-pixels", &px, "init"])?;
            if !init.ok {
                bail!("init failed: {}", init.stderr);
            }
            let mut wargs = write_args(&repo_s, source, &px, &tiles_arg, Some(&th));
            if let Some(n) = read_ahead {
                wargs.extend(["--read-ahead", n]);
            }
            let w = run_child(&wargs)?;
            if !w.ok {
                bail!("write from {source} failed: {}", w.stderr);
            }
            figures[kind].push(w.wall.as_secs_f64());
            if kind == 3 {
                rss_read_ahead = rss_read_ahead.max(w.max_rss_mb);
            }
            repos.push(repo);
        }
    }
    for repo in repos {
        let _ = std::fs::remove_dir_all(&repo);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let [download, local, on_demand, read_ahead] = figures.map(|v| best(&v));
    let limit = download.max(local);
    println!("  download of every tile, at once: {download:.2} s");
    println!("  write from the local disk:        {local:.2} s");
    println!(
        "  write over HTTP, GDAL on demand:  {on_demand:.2} s = {:.2}x the limit",
        on_demand / limit
    );
    println!(
        "  write over HTTP, read-ahead:      {read_ahead:.2} s = {:.2}x the limit (max of download and local write; best of 2 each), peak RSS {rss_read_ahead:.0} MB",
        read_ahead / limit
    );
    drop(proxy);
    drop(nginx);
    Ok(())
}
