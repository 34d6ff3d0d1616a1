//! `tilecube bench`: ingest speed and memory against the hardware's floor, in one run.
//!
//! It makes full-size GLAD-like tiles with GDAL when absent (cached outside the repository),
//! measures the floor — one single-threaded GDAL decode of each tile and one single-threaded
//! encode of its chunks — then runs the real `tilecube write` as a child process at each
//! thread count and reports wall and CPU seconds per tile, MB/s, peak RSS and the ratio of
//! wall time to floor CPU / threads. It also times `init` of the full GLAD shape and the cost
//! of a one-tile commit before and after 200 tiles' worth of chunk references.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use tilecube::cube::{
    ChunkEncoder, Cube, InitOptions, Layout, RepoLocation, SpecVersion, TileChunks, WriteSession,
};
use tilecube::grid::{Grid, TileName};
use tilecube::preset::Preset;
use tilecube::source::TileReader;

mod remote_source;
mod scale;
mod scaleout;

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Where the generated tiles are cached (default: the user cache dir).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Number of tiles.
    #[arg(long, default_value_t = 2)]
    pub tiles: usize,
    /// Tile side in pixels.
    #[arg(long, default_value_t = 40_000)]
    pub pixels: u64,
    /// Thread counts to run `write` with.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Tiles' worth of chunk references before the second commit timing.
    #[arg(long, default_value_t = 200)]
    pub commit_tiles: usize,
    /// Also write the tiles to this repository (e.g. s3://bucket/prefix) and compare its
    /// throughput with the local repository's.
    #[arg(long)]
    pub remote: Option<String>,
    /// Measure console key latency while the pool is saturated (needs tmux), with this many
    /// key presses.
    #[arg(long, default_value_t = 40)]
    pub keys: usize,
    /// Also write COG copies of the tiles (512² blocks, LZW, made with gdal_translate) and
    /// compare with the striped tiles at the highest thread count, side by side.
    #[arg(long)]
    pub cog: bool,
    /// Also compare, at the highest thread count and side by side, the write with overviews
    /// (the preset's pyramid, every level of each tile from its decoded strips) and without.
    #[arg(long)]
    pub overviews: bool,
    /// Also write the tiles from an HTTP source (nginx on loopback behind a proxy adding
    /// --rtt-ms of round trip), with and without read-ahead, next to the download time of
    /// the same files and the local write time.
    #[arg(long)]
    pub remote_source: bool,
    /// Full-scale mode instead: a cube of the GLAD shape with every land tile of every year
    /// written (small pixels, the full 1,600 chunks a tile), then status, the console's first
    /// frame and full grid, snapshot open, diff, one-tile writes and the long write's peak RSS.
    #[arg(long)]
    pub scale: bool,
    /// With --scale: also measure on this S3 endpoint (e.g. a moto server), reached through a
    /// proxy that adds --rtt-ms of round trip; credentials come from the AWS_* environment.
    #[arg(long)]
    pub scale_s3: Option<String>,
    /// With --scale-s3 or --remote-source: the round trip the proxy adds, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub rtt_ms: u64,
    /// With --scale: land tiles per year (default: all 259).
    #[arg(long)]
    pub scale_tiles: Option<usize>,
    /// Scale-out mode instead: `merge` of a whole GLAD cube's references (2.24 M) staged by
    /// --merge-shards shards, and 4 shard processes x 1 thread against 1 process x 2 threads.
    #[arg(long)]
    pub scaleout: bool,
    /// With --scaleout: the shard counts whose merge is timed.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub merge_shards: Vec<usize>,
    /// With --scaleout: tiles of the shards-against-threads run.
    #[arg(long, default_value_t = 8)]
    pub shard_tiles: usize,
    /// With --scaleout: tile side in pixels of the shards-against-threads run.
    #[arg(long, default_value_t = 20_000)]
    pub shard_pixels: u64,
}

fn cpu_thread() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A child process's wall time, CPU time and peak RSS.
struct ChildRun {
    wall: Duration,
    cpu: Duration,
    max_rss_mb: f64,
    ok: bool,
    stderr: String,
}

fn run_child(args: &[&str]) -> Result<ChildRun> {
    run_child_env(args, &[])
}

/// [`run_child`] with extra environment.
fn run_child_env(args: &[&str], env: &[(&str, String)]) -> Result<ChildRun> {
    let exe = std::env::current_exe().context("locating the tilecube binary")?;
    let errfile = tempfile_path("bench-stderr");
    let err = std::fs::File::create(&errfile)?;
    let start = Instant::now();
    let child = Command::new(exe)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .spawn()
        .context("starting tilecube")?;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: waiting for our own child, which std will not wait for (we never call wait).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    if r != pid {
        bail!("waiting for tilecube failed");
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let stderr = std::fs::read_to_string(&errfile).unwrap_or_default();
    let _ = std::fs::remove_file(&errfile);
    Ok(ChildRun {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        stderr,
    })
}

/// The arguments of a `tilecube write` of the bench tiles.
fn write_args<'a>(
    repo: &'a str,
    source: &'a str,
    pixels: &'a str,
    tiles: &'a str,
    threads: Option<&'a str>,
) -> Vec<&'a str> {
    let mut args = vec![
        "--repo",
        repo,
        "--source",
        source,
        "--tile-pixels",
        pixels,
        "write",
        "--year",
        "2000",
        "--tiles",
        tiles,
    ];
    if let Some(t) = threads {
        args.extend(["--threads", t]);
    }
    args
}

fn tempfile_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tilecube-{name}-{}", std::process::id()))
}

fn scratch(name: &str) -> Result<PathBuf> {
    let p = tempfile_path(name);
    if p.exists() {
        std::fs::remove_dir_all(&p)?;
    }
    Ok(p)
}

/// Run the benchmark and print its figures.
pub fn run(args: &BenchArgs) -> Result<()> {
    tilecube::gdal_setup();
    if args.scale {
        return scale::run(args);
    }
    if args.scaleout {
        return scaleout::run(args);
    }
    let preset = Preset::glad();
    let grid = Grid::from_preset(&preset, Some(args.pixels))?;
    let cache = args.cache.clone().unwrap_or_else(|| {
        tilecube::config::project_dirs()
            .map(|d| d.cache_dir().to_path_buf())
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("bench-{}", args.pixels))
    });
    let year = 2000;
    let tiles: Vec<TileName> = tilecube::demo::land_tiles(&grid)
        .into_iter()
        .take(args.tiles)
        .collect();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let tile_mb = (args.pixels * args.pixels) as f64 / 1e6;
    println!(
        "tilecube bench: {} tiles of {}x{} px uint8 ({tile_mb:.0} MB each, LZW, striped), {cores} cores",
        tiles.len(),
        args.pixels,
        args.pixels
    );
    generate(&cache, &grid, year, &tiles)?;

    // The floor: single-threaded decode, then single-threaded encode, of the same tiles.
    let layout = Layout::new(&preset, &grid);
    let encoder = ChunkEncoder::new(&layout)?;
    let (mut decode, mut encode) = (Duration::ZERO, Duration::ZERO);
    for &t in &tiles {
        let path = tilecube::demo::tile_path(&cache, year, t);
        let (d, e) = floor_tile(&path.display().to_string(), &grid, t, &encoder)?;
        decode += d;
        encode += e;
    }
    let n = tiles.len() as f64;
    let floor_cpu = (decode + encode).as_secs_f64() / n;
    println!(
        "floor, per tile (1 thread): decode {:.2} s CPU + encode {:.2} s CPU = {floor_cpu:.2} s CPU",
        decode.as_secs_f64() / n,
        encode.as_secs_f64() / n
    );

    let names: Vec<String> = tiles.iter().map(|t| t.to_string()).collect();
    let tiles_arg = names.join(",");
    let px = args.pixels.to_string();
    let src = cache.display().to_string();
    let mut local_mbs = None;
    // The write repositories stay until the end: creating a tile's 1,600 chunk files right
    // after deleting another run's makes the file system's inode allocator scan its recently
    // freed inodes, which would be charged to the run measured next.
    let mut repos = vec![];
    for &threads in &args.threads {
        let repo = scratch(&format!("bench-repo-{threads}"))?;
        let repo_s = repo.display().to_string();
        let init = run_child(&["--repo", &repo_s, "--tile-pixels", &px, "init"])?;
        if !init.ok {
            bail!("init failed: {}", init.stderr);
        }
        let th = threads.to_string();
        let w = run_child(&write_args(&repo_s, &src, &px, &tiles_arg, Some(&th)))?;
        if !w.ok {
            bail!("write failed: {}", w.stderr);
        }
        let wall = w.wall.as_secs_f64() / n;
        let mbs = tile_mb / wall;
        if threads == *args.threads.iter().max().unwrap_or(&threads) {
            local_mbs = Some(mbs);
        }
        println!(
            "write, {threads} thread(s): {wall:.2} s wall/tile, {:.2} s CPU/tile, {mbs:.0} MB/s, peak RSS {:.0} MB, wall / (floor CPU / {threads}) = {:.2}",
            w.cpu.as_secs_f64() / n,
            w.max_rss_mb,
            wall / (floor_cpu / threads as f64)
        );
        repos.push(repo);
    }

    if args.cog {
        let threads = args.threads.iter().max().copied().unwrap_or(1);
        let cog = cache.join("cog");
        make_cogs(&cache, &cog, year, &tiles)?;
        let cog_src = cog.display().to_string();
        let th = threads.to_string();
        let (mut striped, mut cogs) = (vec![], vec![]);
        // Alternate the two, twice, so drift on a noisy machine hits both alike.
        for round in 0..2 {
            for (source, out) in [(&src, &mut striped), (&cog_src, &mut cogs)] {
                let repo = scratch(&format!("bench-layout-{round}-{}", out.len()))?;
                let repo_s = repo.display().to_string();
                let init = run_child(&["--repo", &repo_s, "--tile-pixels", &px, "init"])?;
                if !init.ok {
                    bail!("init failed: {}", init.stderr);
                }
                let w = run_child(&write_args(&repo_s, source, &px, &tiles_arg, Some(&th)))?;
                if !w.ok {
                    bail!("write failed: {}", w.stderr);
                }
                out.push(w.wall.as_secs_f64() / n);
                repos.push(repo);
            }
        }
        let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "COG (512x512 blocks) vs striped, {threads} thread(s): {:.2} vs {:.2} s wall/tile (best of 2 each; {:.3}x)",
            best(&cogs),
            best(&striped),
            best(&cogs) / best(&striped)
        );
    }

    if args.overviews {
        let threads = args.threads.iter().max().copied().unwrap_or(1);
        // A config whose preset switches overviews off: `init` lays the cube out without
        // them, and the write follows the cube's layout.
        let off_dir = scratch("bench-overviews-off")?;
        std::fs::create_dir_all(&off_dir)?;
        let off_preset = off_dir.join("preset.toml");
        std::fs::write(
            &off_preset,
            tilecube::preset::GLAD_TOML.replace("enabled = true", "enabled = false"),
        )?;
        let off_config = off_dir.join("config.toml");
        std::fs::write(&off_config, format!("preset = {:?}\n", off_preset))?;
        let off_config = off_config.display().to_string();
        let th = threads.to_string();
        let (mut with, mut without) = (vec![], vec![]);
        // Alternate the two, twice, so drift on a noisy machine hits both alike.
        for round in 0..2 {
            for on in [true, false] {
                let repo = scratch(&format!("bench-overviews-{round}-{on}"))?;
                let repo_s = repo.display().to_string();
                let mut init_args = vec![];
                if !on {
                    init_args.extend(["--config", off_config.as_str()]);
                }
                init_args.extend(["--repo", &repo_s, "--tile-pixels", &px, "init"]);
                let init = run_child(&init_args)?;
                if !init.ok {
                    bail!("init failed: {}", init.stderr);
                }
                let w = run_child(&write_args(&repo_s, &src, &px, &tiles_arg, Some(&th)))?;
                if !w.ok {
                    bail!("write failed: {}", w.stderr);
                }
                let run = (w.wall.as_secs_f64() / n, w.max_rss_mb);
                if on {
                    with.push(run)
                } else {
                    without.push(run)
                }
                repos.push(repo);
            }
        }
        let best = |v: &[(f64, f64)]| v.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let peak = |v: &[(f64, f64)]| v.iter().map(|r| r.1).fold(0.0, f64::max);
        let levels = Layout::new(&preset, &grid).levels().len();
        println!(
            "overviews ({levels} levels) vs none, {threads} thread(s): {:.2} vs {:.2} s wall/tile (best of 2 each; +{:.0} %), peak RSS {:.0} vs {:.0} MB",
            best(&with),
            best(&without),
            (best(&with) / best(&without) - 1.0) * 100.0,
            peak(&with),
            peak(&without)
        );
    }

    if args.remote_source {
        remote_source::run(args, &cache, &tiles, year)?;
    }

    if let Some(remote) = &args.remote {
        let init = run_child(&["--repo", remote, "--tile-pixels", &px, "init", "--force"])?;
        if !init.ok {
            bail!("remote init failed: {}", init.stderr);
        }
        let w = run_child(&write_args(remote, &src, &px, &tiles_arg, None))?;
        if !w.ok {
            bail!("remote write failed: {}", w.stderr);
        }
        let mbs = tile_mb / (w.wall.as_secs_f64() / n);
        println!(
            "write to {remote}: {:.2} s wall/tile, {mbs:.0} MB/s, {:.2}x the local repository's throughput",
            w.wall.as_secs_f64() / n,
            local_mbs.map(|l| mbs / l).unwrap_or(f64::NAN)
        );
    }

    // init of the full GLAD shape.
    let repo = scratch("bench-init")?;
    let init = run_child(&["--repo", &repo.display().to_string(), "init"])?;
    if !init.ok {
        bail!("init failed: {}", init.stderr);
    }
    println!(
        "init of the full GLAD shape (5 x 560000 x 1440000, x/y coordinates): {:.3} s wall, process included",
        init.wall.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&repo);

    if args.keys > 0 {
        match key_latency(&cache, &px, &tiles, args.keys) {
            Ok(mut ms) if !ms.is_empty() => {
                ms.sort_by(f64::total_cmp);
                let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
                println!(
                    "console key latency while writing ({} presses, key sent to screen changed, via tmux): median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
                    ms.len(),
                    pct(0.5),
                    pct(0.95),
                    ms[ms.len() - 1]
                );
            }
            Ok(_) => println!("console key latency: the write ended before any key was measured"),
            Err(e) => println!("console key latency: not measured ({e:#})"),
        }
    }

    for repo in repos {
        let _ = std::fs::remove_dir_all(&repo);
    }

    if args.commit_tiles > 0 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (first, later) = rt.block_on(commit_cost(args.commit_tiles))?;
        println!(
            "one-tile commit: {:.3} s on an empty cube, {:.3} s with {} tiles' worth of chunk references ({:.2}x)",
            first.as_secs_f64(),
            later.as_secs_f64(),
            args.commit_tiles,
            later.as_secs_f64() / first.as_secs_f64()
        );
    }
    Ok(())
}

/// Drive the real console in tmux: launch a write of the tiles, then while it runs move the
/// cursor and time each key until the details panel names the new tile.
fn key_latency(cache: &Path, px: &str, tiles: &[TileName], presses: usize) -> Result<Vec<f64>> {
    let exe = std::env::current_exe()?;
    let repo = scratch("bench-console")?;
    let repo_s = repo.display().to_string();
    let init = run_child(&["--repo", &repo_s, "--tile-pixels", px, "init"])?;
    if !init.ok {
        bail!("init failed: {}", init.stderr);
    }
    let socket = format!("tilecube-bench-{}", std::process::id());
    let tmux = |args: &[&str]| -> Result<String> {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let cmd = format!(
        "{} --repo {repo_s} --source {} --tile-pixels {px} tui",
        exe.display(),
        cache.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "b",
        "-x",
        "120",
        "-y",
        "40",
        &cmd,
    ])?;
    tmux(&["set-option", "-g", "escape-time", "0"])?;
    let wait = |what: &str, secs: u64| -> Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if tmux(&["capture-pane", "-p", "-t", "b"])?.contains(what) {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    };
    let result = (|| -> Result<Vec<f64>> {
        if !wait("1:2000", 20)? {
            bail!("the console did not start");
        }
        let grid = Grid::from_preset(&Preset::glad(), Some(px.parse()?))?;
        // Select the bench tiles (all on the first rows), then write them.
        for t in tiles {
            let cell = grid.cell(*t)?;
            let mut keys = vec!["Home".to_string()];
            keys.extend(std::iter::repeat_n("l".to_string(), cell.col as usize));
            keys.extend(std::iter::repeat_n("j".to_string(), cell.row as usize));
            keys.push("Space".into());
            for k in [&["k"; 14][..], &["h"; 36][..]].concat() {
                tmux(&["send-keys", "-t", "b", k])?;
            }
            for k in &keys[1..] {
                tmux(&["send-keys", "-t", "b", k])?;
            }
        }
        tmux(&["send-keys", "-t", "b", "w"])?;
        wait("Write ", 10)?;
        tmux(&["send-keys", "-t", "b", "Enter"])?;
        if !wait("writing ", 30)? {
            bail!("the write did not start");
        }
        std::thread::sleep(Duration::from_millis(500));
        let mut out = Vec::new();
        let row0 = grid.tile_at(tilecube::grid::Cell { col: 0, row: 4 });
        for k in ["k"; 14]
            .iter()
            .chain(["h"; 36].iter())
            .chain(["j"; 4].iter())
        {
            tmux(&["send-keys", "-t", "b", k])?;
        }
        wait(&format!("2000/{row0}"), 10)?;
        for i in 0..presses {
            let (key, col) = if i % 2 == 0 { ("l", 1) } else { ("h", 0) };
            let target = grid.tile_at(tilecube::grid::Cell { col, row: 4 });
            let start = Instant::now();
            tmux(&["send-keys", "-t", "b", key])?;
            loop {
                let screen = tmux(&["capture-pane", "-p", "-t", "b"])?;
                if screen.contains("write finished") {
                    return Ok(out);
                }
                if screen.contains(&format!("2000/{target} ")) {
                    out.push(start.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                if start.elapsed() > Duration::from_secs(5) {
                    bail!("key {i} got no answer in 5 s");
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(out)
    })();
    let _ = tmux(&["kill-server"]);
    let _ = std::fs::remove_dir_all(&repo);
    result
}

fn generate(cache: &Path, grid: &Grid, year: i32, tiles: &[TileName]) -> Result<()> {
    use rayon::prelude::*;
    let missing: Vec<_> = tiles
        .iter()
        .filter(|t| !tilecube::demo::tile_path(cache, year, **t).exists())
        .collect();
    if !missing.is_empty() {
        println!(
            "generating {} tiles in {} ...",
            missing.len(),
            cache.display()
        );
        let start = Instant::now();
        missing.par_iter().try_for_each(|&&t| {
            let path = tilecube::demo::tile_path(cache, year, t);
            let tmp = path.with_extension("tif.part");
            tilecube::demo::write_tile(&tmp, grid, t, year)?;
            std::fs::rename(&tmp, &path)?;
            Ok::<_, anyhow::Error>(())
        })?;
        println!("  generated in {:.0} s", start.elapsed().as_secs_f64());
    }
    tilecube::demo::write_list(cache, year, tiles)?;
    Ok(())
}

/// COG copies of the tiles (512² blocks, LZW, no overviews: a writer reads full
/// resolution only), made with `gdal_translate` when absent, and their list.
fn make_cogs(striped: &Path, cog: &Path, year: i32, tiles: &[TileName]) -> Result<()> {
    for &t in tiles {
        let out = tilecube::demo::tile_path(cog, year, t);
        if out.exists() {
            continue;
        }
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = out.with_extension("tif.part");
        let status = Command::new("gdal_translate")
            .args([
                "-q",
                "-of",
                "COG",
                "-co",
                "BLOCKSIZE=512",
                "-co",
                "COMPRESS=LZW",
            ])
            .args(["-co", "OVERVIEWS=NONE", "-co", "NUM_THREADS=ALL_CPUS"])
            .arg(tilecube::demo::tile_path(striped, year, t))
            .arg(&tmp)
            .status()
            .context("running gdal_translate (gdal-bin)")?;
        if !status.success() {
            bail!("gdal_translate failed for {t}");
        }
        std::fs::rename(&tmp, &out)?;
    }
    tilecube::demo::write_list(cog, year, tiles)?;
    Ok(())
}

/// Single-threaded decode and encode CPU time of one tile.
fn floor_tile(
    path: &str,
    grid: &Grid,
    tile: TileName,
    encoder: &ChunkEncoder,
) -> Result<(Duration, Duration)> {
    let (reader, _) = TileReader::open(path, grid, tile)?;
    let side = grid.chunk_pixels as usize;
    let width = grid.tile_pixels as usize;
    let mut strip = vec![0u8; side * width];
    let mut chunk = Vec::with_capacity(side * side);
    let (mut decode, mut encode) = (Duration::ZERO, Duration::ZERO);
    let mut stored = 0usize;
    for sy in 0..grid.chunks_per_side() as usize {
        let t0 = cpu_thread();
        reader.read_rows(sy * side, side, &mut strip)?;
        let t1 = cpu_thread();
        for sx in 0..grid.chunks_per_side() as usize {
            chunk.clear();
            for row in strip.chunks_exact(width) {
                chunk.extend_from_slice(&row[sx * side..(sx + 1) * side]);
            }
            if encoder.encode(&chunk)?.is_some() {
                stored += 1;
            }
        }
        let t2 = cpu_thread();
        decode += t1 - t0;
        encode += t2 - t1;
    }
    std::hint::black_box(stored);
    Ok((decode, encode))
}

/// One-tile commits timed at each end of the commit-cost measurement.
const COMMIT_SAMPLES: usize = 9;

/// Time a one-tile commit on an empty full-shape cube, then after `tiles` tiles' worth of
/// chunk references are committed (median of [`COMMIT_SAMPLES`] each).
async fn commit_cost(tiles: usize) -> Result<(Duration, Duration)> {
    let preset = Preset::glad();
    let layout = Layout::new(&preset, &Grid::from_preset(&preset, None)?);
    let dir = scratch("bench-commit")?;
    let cube = Cube::init(
        RepoLocation::Local(dir.clone()),
        layout.clone(),
        &InitOptions {
            spec_version: SpecVersion::V2,
            force: false,
            branch: "main".into(),
        },
    )
    .await?;
    let encoder = ChunkEncoder::new(&layout)?;
    let chunk = encoder
        .encode(&vec![7u8; encoder.chunk_len()])?
        .context("encoding a chunk")?;
    let grid = layout.grid();
    let cells: Vec<_> = (0..layout.years.len())
        .flat_map(|y| grid.tiles().map(move |t| (y, t)))
        .collect();
    let mut next = 0usize;

    let mut stage = |count: usize| {
        let batch = &cells[next..next + count];
        next += count;
        batch.to_vec()
    };
    // Manifests hold one reference per chunk, whatever it points to: every chunk of the
    // filled tiles references one uploaded chunk object, so filling the cube does not create
    // (and later delete) hundreds of thousands of files.
    let payload = {
        let session = WriteSession::open(&cube).await?;
        session
            .prepare_upload(0, [0, 0, 0])
            .await?
            .run(Some(chunk))
            .await?
            .context("uploading the shared chunk")?
    };
    let record = |batch: Vec<(usize, TileName)>| {
        let cube = &cube;
        let payload = payload.clone();
        let grid = grid.clone();
        let layout = layout.clone();
        async move {
            let session = WriteSession::open(cube).await?;
            for (yi, t) in &batch {
                let mut tc = TileChunks::default();
                for coords in layout.tile_chunks(*yi, grid.cell(*t)?) {
                    tc.push(coords, Some(payload.clone()));
                }
                session.record_tile(layout.years[*yi], *t, tc).await?;
            }
            let start = Instant::now();
            session.commit(Some("bench")).await?;
            Ok::<_, anyhow::Error>(start.elapsed())
        }
    };
    let mut first = vec![];
    for _ in 0..COMMIT_SAMPLES {
        first.push(record(stage(1)).await?);
    }
    let mut filled = COMMIT_SAMPLES;
    while filled < tiles {
        let n = (tiles - filled).min(25);
        record(stage(n)).await?;
        filled += n;
    }
    let mut later = vec![];
    for _ in 0..COMMIT_SAMPLES {
        later.push(record(stage(1)).await?);
    }
    first.sort();
    later.sort();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((first[COMMIT_SAMPLES / 2], later[COMMIT_SAMPLES / 2]))
}
