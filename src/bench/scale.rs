//! `tilecube bench --scale`: the whole GLAD cube's shape, cheaply, on a local repository and
//! (with `--scale-s3`) on an S3 server reached through a proxy that adds a round trip.
//!
//! The cube has the GLAD grid (36 × 14 tiles, five years) with every land tile written, each
//! tile 400 px a side in chunks of 10 px: the full 1,600 chunks a tile, so 2.07 M chunk
//! references, with pixels small enough to write in minutes. It is written by the real
//! `tilecube write --missing` with default settings (so the long write's peak RSS and its
//! checkpoints by reference count are the defaults'), then it measures what an operator
//! waits for: `status` (cold and cached), the console's first frame and full grid (tmux),
//! opening a snapshot, a diff, and a one-tile write into the full cube against one into an
//! empty cube.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{BenchArgs, ChildRun, run_child_env, scratch};
use tilecube::cube::{ChunkEncoder, CoverageCache, Cube, RepoLocation, TileChunks, WriteSession};
use tilecube::grid::{Grid, TileName};
use tilecube::netem::LatencyProxy;
use tilecube::preset::{GLAD_TOML, Preset};
use tilecube::storage_settings::StorageSettings;

const TILE: u64 = 400;
const CHUNK: u64 = 10;

/// One repository under test: where it is and the environment its processes need.
struct Target {
    name: String,
    repo: String,
    env: Vec<(&'static str, String)>,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let work = scratch("bench-scale")?;
    std::fs::create_dir_all(&work)?;
    let preset_text = GLAD_TOML.replace("chunk_pixels = 1000", &format!("chunk_pixels = {CHUNK}"));
    let preset_path = work.join("preset.toml");
    std::fs::write(&preset_path, &preset_text)?;
    let preset = Preset::parse(&preset_text, "bench preset")?;
    let grid = Grid::from_preset(&preset, Some(TILE))?;
    let source = work.join("source");
    let years = tilecube::cube::Layout::new(&preset, &grid).years;
    let tiles = make_source(&source, &grid, &years, args.scale_tiles)?;
    let per_year = tiles.len();
    let config = work.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "preset = {preset_path:?}\nsource = {source:?}\ntile_pixels = {TILE}\nspec_version = 2\n"
        ),
    )?;
    println!(
        "tilecube bench --scale: GLAD grid, {per_year} land tiles x {} years = {} tiles of {TILE} px in chunks of {CHUNK} ({} chunks a tile, {} chunk references)",
        years.len(),
        per_year * years.len(),
        grid.chunks_per_tile(),
        per_year as u64 * years.len() as u64 * grid.chunks_per_tile()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut targets = vec![Target {
        name: "local".into(),
        repo: work.join("cube").display().to_string(),
        env: vec![],
    }];
    let mut _proxy = None;
    if let Some(endpoint) = &args.scale_s3 {
        let upstream = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("--scale-s3 {endpoint}: expected http://HOST:PORT"))?;
        let proxy = rt.block_on(LatencyProxy::start(
            upstream,
            Duration::from_millis(args.rtt_ms),
        ))?;
        let bucket = format!("bench-scale-{}", std::process::id());
        create_bucket(endpoint, &bucket)?;
        targets.push(Target {
            name: format!("S3 +{} ms RTT", args.rtt_ms),
            repo: format!("s3://{bucket}/cube"),
            env: vec![("AWS_ENDPOINT_URL", proxy.url())],
        });
        _proxy = Some(proxy);
    }

    for target in &targets {
        println!("\n== {} ({})", target.name, target.repo);
        let proxy = if target.env.is_empty() {
            None
        } else {
            _proxy
                .as_ref()
                .map(|p| (p, Duration::from_millis(args.rtt_ms)))
        };
        measure(&rt, &work, &config, target, tiles[0], proxy)?;
    }
    // Where the long write's time on S3 goes: the same write straight to the S3 server, no
    // round trip added (the server's own cost), against the local disk and the proxied one.
    if let Some(endpoint) = &args.scale_s3 {
        let bucket = format!("bench-scale-direct-{}", std::process::id());
        create_bucket(endpoint, &bucket)?;
        let direct = Target {
            name: "S3, no added round trip".into(),
            repo: format!("s3://{bucket}/cube"),
            env: vec![("AWS_ENDPOINT_URL", endpoint.clone())],
        };
        let cache = work.join("cache-direct");
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::create_dir_all(&cache)?;
        child(&config, &direct, &cache, &["init"])?;
        let build = child(&config, &direct, &cache, &["write", "--missing"])?;
        println!(
            "\n== {}: long write of every tile {} wall (the server's own share of the S3 write)",
            direct.name,
            secs(build.wall)
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The GLAD-like source, `limit` land tiles a year (all by default); returns the tiles.
fn make_source(
    root: &Path,
    grid: &Grid,
    years: &[i32],
    limit: Option<usize>,
) -> Result<Vec<TileName>> {
    let tiles: Vec<_> = tilecube::demo::land_tiles(grid)
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    for &year in years {
        for &t in &tiles {
            let path = tilecube::demo::tile_path(root, year, t);
            if !path.exists() {
                tilecube::demo::write_tile(&path, grid, t, year)?;
            }
        }
        tilecube::demo::write_list(root, year, &tiles)?;
    }
    Ok(tiles)
}

/// Create a bucket on an S3-compatible server that accepts unsigned requests (moto).
fn create_bucket(endpoint: &str, bucket: &str) -> Result<()> {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connecting {addr}"))?;
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    if !resp.starts_with("HTTP/1.1 200") {
        bail!(
            "creating bucket {bucket}: {}",
            resp.lines().next().unwrap_or("")
        );
    }
    Ok(())
}

fn child(config: &Path, target: &Target, cache: &Path, args: &[&str]) -> Result<ChildRun> {
    let config = config.display().to_string();
    let mut all = vec!["--config", config.as_str(), "--repo", target.repo.as_str()];
    all.extend_from_slice(args);
    let mut env = target.env.clone();
    env.push(("TILECUBE_CACHE_DIR", cache.display().to_string()));
    env.push((
        "TILECUBE_DATA_DIR",
        cache.join("data").display().to_string(),
    ));
    let run = run_child_env(&all, &env)?;
    if !run.ok {
        bail!("tilecube {args:?} failed: {}", run.stderr);
    }
    Ok(run)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn measure(
    rt: &tokio::runtime::Runtime,
    work: &Path,
    config: &Path,
    target: &Target,
    tile: TileName,
    proxy: Option<(&LatencyProxy, Duration)>,
) -> Result<()> {
    let cache = work.join(format!("cache-{}", target.name.replace(' ', "-")));
    let fresh_cache = || -> Result<()> {
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::create_dir_all(&cache)?;
        Ok(())
    };
    fresh_cache()?;
    child(config, target, &cache, &["init"])?;
    let requests_before = proxy.map(|(p, _)| p.requests());
    let build = child(config, target, &cache, &["write", "--missing"])?;
    println!(
        "long write of every tile (default settings): {} wall, peak RSS {:.0} MB",
        secs(build.wall),
        build.max_rss_mb
    );
    let commits = child(config, target, &cache, &["log", "--json"])
        .ok()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.stdout).ok())
        .and_then(|v| v.as_array().map(|a| a.len()))
        .unwrap_or(0);
    match (proxy, requests_before) {
        (Some((p, rtt)), Some(before)) => {
            let n = p.requests() - before;
            println!(
                "  {n} requests in {commits} commits ({:.0} a commit); {:.1} s of round trips if each waited alone",
                n as f64 / commits.max(1) as f64,
                n as f64 * rtt.as_secs_f64()
            );
        }
        _ => println!("  {commits} commits"),
    }

    // status: cold (nothing cached), then cached.
    fresh_cache()?;
    let cold = child(config, target, &cache, &["status", "--json"])?;
    let warm = child(config, target, &cache, &["status", "--json"])?;
    let log = child(config, target, &cache, &["log", "--json"])?;
    println!(
        "status: {} cold, {} with the head's coverage cached; log: {}",
        secs(cold.wall),
        secs(warm.wall),
        secs(log.wall)
    );

    // The console: first frame and full grid, cold.
    fresh_cache()?;
    match console_times(config, target, &cache) {
        Ok((first, full)) => println!(
            "console (80x24, cold cache): first frame {}, grid complete {}",
            secs(first),
            secs(full)
        ),
        Err(e) => println!("console: not measured ({e:#})"),
    }

    // Snapshot open and diff, in process, each from an empty cache.
    for (k, v) in &target.env {
        // SAFETY: the bench's own threads read these only through the cube opened below.
        unsafe { std::env::set_var(k, v) };
    }
    // The target's storage settings, read as the children read them.
    let storage = StorageSettings::from_env()?;
    let (open, diff, diff_again, changed) = rt.block_on(async {
        let location = RepoLocation::parse(&target.repo, &storage)?;
        let mut cube = Cube::open(location.clone(), "main").await?;
        let history = cube.history().await?;
        let with_tiles: Vec<_> = history.iter().filter(|c| c.tile_count() > 0).collect();
        let (Some(head), Some(older)) = (with_tiles.first(), with_tiles.last()) else {
            bail!("the cube has no commits with tiles");
        };
        let head = head.id.clone();
        let older = older.id.clone();
        let fresh = work.join(format!("snap-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&fresh);
        cube.coverage_cache = CoverageCache::at(fresh.clone(), &location.key());
        let t = Instant::now();
        cube.snapshot_tiles(&older).await?;
        let open = t.elapsed();
        let _ = std::fs::remove_dir_all(&fresh);
        let t = Instant::now();
        let changed = cube.diff(&older, &head).await?;
        let diff = t.elapsed();
        let t = Instant::now();
        cube.diff(&older, &head).await?;
        let again = t.elapsed();
        let _ = std::fs::remove_dir_all(&fresh);
        Ok::<_, anyhow::Error>((open, diff, again, changed.len()))
    })?;
    println!(
        "snapshot open (cold): {}; diff of two snapshots ({changed} tiles changed): {} cold, {} cached",
        secs(open),
        secs(diff),
        secs(diff_again)
    );

    // One-tile write into the full cube against one into an empty cube, same tile.
    let tile_name = tile.to_string();
    let tile_arg = tile_name.as_str();
    let mut full = vec![];
    for _ in 0..3 {
        full.push(
            child(
                config,
                target,
                &cache,
                &["write", "--year", "2000", "--tiles", tile_arg],
            )?
            .wall,
        );
    }
    let empty_target = Target {
        name: format!("{}-empty", target.name),
        repo: format!("{}-empty", target.repo),
        env: target.env.clone(),
    };
    child(config, &empty_target, &cache, &["init"])?;
    let mut empty = vec![];
    for _ in 0..3 {
        empty.push(
            child(
                config,
                &empty_target,
                &cache,
                &["write", "--year", "2000", "--tiles", tile_arg],
            )?
            .wall,
        );
    }
    let (full, empty) = (median(full), median(empty));
    // The repository's share of a tile, in process: record 1,600 chunk references and
    // commit, into the full cube and into the empty one.
    let (rec_full, rec_empty) = rt.block_on(async {
        let open = |repo: String| {
            let storage = &storage;
            async move { Cube::open(RepoLocation::parse(&repo, storage)?, "main").await }
        };
        let full = record_and_commit(&open(target.repo.clone()).await?, tile, 5).await?;
        let empty = record_and_commit(&open(empty_target.repo.clone()).await?, tile, 5).await?;
        Ok::<_, anyhow::Error>((full, empty))
    })?;
    println!(
        "one tile's references recorded and committed (in process, median of 5): {} into the full cube, {} into an empty one; on a 40,000² tile written in 3.94 s that is {:.3}x",
        secs(rec_full),
        secs(rec_empty),
        (3.94 + rec_full.as_secs_f64()) / (3.94 + rec_empty.as_secs_f64())
    );
    println!(
        "one-tile write ({} chunks, process included, median of 3): {} into the full cube, {} into an empty one ({:.2}x)",
        TILE * TILE / (CHUNK * CHUNK),
        secs(full),
        secs(empty),
        full.as_secs_f64() / empty.as_secs_f64()
    );
    Ok(())
}

/// Launch the console in tmux at 80×24 and time its first frame and its complete grid.
fn console_times(config: &Path, target: &Target, cache: &Path) -> Result<(Duration, Duration)> {
    let exe = std::env::current_exe()?;
    let socket = format!("tilecube-scale-{}", std::process::id());
    let tmux = |args: &[&str]| -> Result<String> {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&socket).args(args);
        // The tmux server inherits this environment, so no setting shows on a command line.
        c.envs(target.env.iter().map(|(k, v)| (*k, v.as_str())));
        c.env("TILECUBE_CACHE_DIR", cache);
        c.env("TILECUBE_DATA_DIR", cache.join("data"));
        let out = c.output().context("running tmux")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let cmd = format!(
        "{} --config {} --repo {} tui",
        exe.display(),
        config.display(),
        target.repo
    );
    let start = Instant::now();
    tmux(&["new-session", "-d", "-s", "s", "-x", "80", "-y", "24", &cmd])?;
    let mut first = None;
    let deadline = start + Duration::from_secs(300);
    let result = loop {
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("the grid did not complete in 300 s"));
        }
        let screen = tmux(&["capture-pane", "-p", "-t", "s"])?;
        if screen.contains("tilecube") {
            first.get_or_insert_with(|| start.elapsed());
            if !screen.contains("loading") && screen.contains(" 1:") {
                break Ok((first.unwrap_or_default(), start.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = tmux(&["kill-server"]);
    result
}

/// The repository's share of a one-tile write, in process: record one tile's chunks (each
/// referencing one uploaded chunk object, as the cube's do) and commit, median of `n`.
async fn record_and_commit(cube: &Cube, tile: TileName, n: usize) -> Result<Duration> {
    let layout = &cube.layout;
    let grid = layout.grid();
    let encoder = ChunkEncoder::new(layout)?;
    let chunk = encoder
        .encode(&vec![7u8; encoder.chunk_len()])?
        .context("encoding a chunk")?;
    let session = WriteSession::open(cube).await?;
    let payload = session
        .prepare_upload(0, [0, 0, 0])
        .await?
        .run(Some(chunk))
        .await?
        .context("uploading the shared chunk")?;
    let mut times = vec![];
    for _ in 0..n {
        let mut chunks = TileChunks::default();
        for coords in layout.tile_chunks(0, grid.cell(tile)?) {
            chunks.push(coords, Some(payload.clone()));
        }
        let t = Instant::now();
        session
            .record_tile(layout.years[0], tile, chunks, None)
            .await?;
        session.commit(Some("bench: one tile")).await?;
        times.push(t.elapsed());
    }
    Ok(median(times))
}
