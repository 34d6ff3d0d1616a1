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

mod child;
mod commit_cost;
mod console;
mod reduction;
mod remote_source;
mod rivals;
mod scale;
mod scaleout;
mod tiles;

use child::*;
use commit_cost::*;
use console::*;
use tiles::*;

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Where the generated tiles are cached, the tiles of each texture in a directory of its
    /// own under it (default: the user cache dir).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Number of tiles.
    #[arg(long, default_value_t = 2)]
    pub tiles: usize,
    /// Tile side in pixels.
    #[arg(long, default_value_t = 40_000)]
    pub pixels: u64,
    /// The tiles' pixels: `glad` (patches of class groups whose pixels vary, like GLAD's),
    /// `blocky` (smooth blocks of one class, the first benchmarks' tiles) or `world` (the
    /// demo's: glad's patches with classes following latitude).
    #[arg(long, default_value = "glad")]
    pub texture: tilecube::demo::Texture,
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
    /// (the preset's pyramid, every level of each tile from its decoded strips) and without,
    /// the seed's method (xarray + rioxarray + Dask, as many workers as threads) and GDAL's
    /// `gdal_translate` to Zarr on the same tiles.
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

/// Run the benchmark and print its figures.
pub fn run(args: &BenchArgs, storage: &tilecube::storage_settings::StorageSettings) -> Result<()> {
    tilecube::gdal_setup(storage);
    if args.scale {
        return scale::run(args);
    }
    if args.scaleout {
        return scaleout::run(args);
    }
    let preset = Preset::glad();
    let grid = Grid::from_preset(&preset, Some(args.pixels))?;
    if args.tiles == 0 {
        bail!("--tiles 0: the bench needs at least one tile");
    }
    // Tiles of each size and texture apart, so a run never measures another's tiles.
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(|| {
            tilecube::config::project_dirs()
                .map(|d| d.cache_dir().to_path_buf())
                .unwrap_or_else(std::env::temp_dir)
        })
        .join(format!("bench-{}-{}", args.pixels, args.texture));
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
        "tilecube bench: {} {} tiles of {}x{} px uint8 ({tile_mb:.0} MB each, LZW, striped), {cores} cores",
        tiles.len(),
        args.texture,
        args.pixels,
        args.pixels
    );
    generate(&cache, &grid, year, &tiles, args.texture)?;

    // The floor: single-threaded decode, then single-threaded encode, of the same tiles.
    let layout = Layout::new(&preset, &grid);
    let mut floor = TileFloor::default();
    let mut file_bytes = 0;
    for &t in &tiles {
        let path = tilecube::demo::tile_path(&cache, year, t);
        file_bytes += std::fs::metadata(&path)?.len();
        let f = floor_tile(&path.display().to_string(), &grid, t, &layout, 2)?;
        floor.decode += f.decode;
        floor.encode += f.encode;
        floor.pyramid += f.pyramid;
        floor.level_encode += f.level_encode;
        floor.level_bytes += f.level_bytes;
        floor.raw_bytes += f.raw_bytes;
        floor.chunk_bytes += f.chunk_bytes;
        floor.uniform_blocks += f.uniform_blocks;
        floor.blocks += f.blocks;
        floor.sample.extend(f.sample);
    }
    let n = tiles.len() as f64;
    println!(
        "tiles: {:.0} % of 2x2 blocks of one value, LZW ratio {:.2} (files), zstd ratio {:.2} (chunks)",
        floor.uniform_blocks as f64 * 100.0 / floor.blocks.max(1) as f64,
        floor.raw_bytes as f64 / file_bytes.max(1) as f64,
        floor.raw_bytes as f64 / floor.chunk_bytes.max(1) as f64
    );
    let floor_cpu = (floor.decode + floor.encode).as_secs_f64() / n;
    println!(
        "floor, per tile (1 thread): decode {:.2} s CPU + encode {:.2} s CPU = {floor_cpu:.2} s CPU",
        floor.decode.as_secs_f64() / n,
        floor.encode.as_secs_f64() / n,
    );
    println!(
        "overview levels, per tile (1 thread): reduce and cut {:.2} s CPU + encode {:.2} s CPU ({:.0} % of level 0's encoded bytes)",
        floor.pyramid.as_secs_f64() / n,
        floor.level_encode.as_secs_f64() / n,
        floor.level_bytes as f64 * 100.0 / floor.chunk_bytes.max(1) as f64
    );
    let side = grid.chunk_pixels as usize;
    let (now, before) = reduction::reduction_ns(
        &floor.sample,
        grid.tile_pixels as usize,
        side,
        layout.fill_value,
    )?;
    println!(
        "2x2 mode reduction, 1 core, {} chunk strips of the tiles: {now:.2} ns per output pixel (the sorting loop it replaced: {before:.2} ns, {:.1}x)",
        floor.sample.len(),
        before / now
    );
    drop(floor.sample);

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
            "overviews ({levels} levels) vs none, {threads} thread(s): {:.2} vs {:.2} s wall/tile (best of 2 each; {:.2}x, target <= 1.25x), peak RSS {:.0} vs {:.0} MB",
            best(&with),
            best(&without),
            best(&with) / best(&without),
            peak(&with),
            peak(&without)
        );
        let seed = rivals::seed_method(&cache, &tiles, year, threads);
        let gdal = rivals::gdal_zarr(&cache, &tiles, year, threads);
        let with_overviews = best(&with);
        match &seed {
            Ok((run, writes)) => println!(
                "the seed's method (xarray + rioxarray + Dask, {threads} workers, no overviews): {:.2} s wall/tile writing ({:.2} with its start), peak RSS {:.0} MB; tilecube with overviews / seed = {:.2}x (target <= 0.35x)",
                writes / n,
                run.wall.as_secs_f64() / n,
                run.max_rss_mb,
                with_overviews / (writes / n)
            ),
            Err(e) => println!("the seed's method: not measured ({e:#})"),
        }
        match &gdal {
            Ok(run) => println!(
                "gdalbuildvrt + gdal_translate to Zarr (zstd 3, 1000x1000 blocks, {threads} threads, no overviews): {:.2} s wall/tile, peak RSS {:.0} MB; tilecube with overviews / GDAL = {:.2}x (target <= 0.6x)",
                run.wall.as_secs_f64() / n,
                run.max_rss_mb,
                with_overviews / (run.wall.as_secs_f64() / n)
            ),
            Err(e) => println!("gdal_translate to Zarr: not measured ({e:#})"),
        }
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
