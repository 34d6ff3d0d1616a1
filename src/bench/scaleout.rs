//! `tilecube bench --scaleout`: what scale-out costs.
//!
//! - Merge at the whole cube's size: 1,400 tile-years of the real GLAD layout (40,000 px
//!   tiles in 1,000 px chunks: 1,600 chunk references a tile, 2.24 M in all) staged by 10,
//!   100 and 1,000 shards through the real stage writer (cheap fills: references to chunk
//!   objects that are never uploaded, no pixels), then the real `tilecube merge` as a child process: wall time with
//!   the commit, and its peak RSS.
//! - The same tiles written by 4 shard processes of 1 thread each against 1 process of 2
//!   threads (real `tilecube write`, side by side, twice): the overhead of sharding, and a
//!   shard's peak RSS.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use chrono::Utc;

use super::{BenchArgs, ChildRun, run_child, scratch};
use tilecube::cube::{Cube, InitOptions, Layout, RepoLocation, TileChunks, WriteSession};
use tilecube::grid::{Grid, TileName};
use tilecube::ids::new_id;
use tilecube::preset::{GLAD_TOML, Preset};
use tilecube::scaleout::plan::{PLAN_FORMAT, split};
use tilecube::scaleout::{Place, PlanJob, ShardPlan, ShardState, StageWriter};

/// Tile-years of the whole GLAD cube, as the brief counts them.
const GLAD_TILE_YEARS: usize = 1_400;

pub fn run(args: &BenchArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for &shards in args.merge_shards.iter().filter(|&&s| s > 0) {
        rt.block_on(merge_at_scale(shards))?;
    }
    shards_against_threads(args)
}

/// The whole cube's jobs: the land tiles of each year, then others, to 280 a year.
fn glad_jobs(grid: &Grid, years: &[i32]) -> Vec<PlanJob> {
    let per_year = GLAD_TILE_YEARS / years.len();
    let land = tilecube::demo::land_tiles(grid);
    let mut tiles: Vec<TileName> = land.clone();
    tiles.extend(grid.tiles().filter(|t| !land.contains(t)));
    tiles.truncate(per_year);
    years
        .iter()
        .flat_map(|&year| {
            tiles.iter().map(move |&tile| PlanJob {
                year,
                tile,
                path: format!("/nonexistent/{year}/{tile}.tif"),
            })
        })
        .collect()
}

async fn merge_at_scale(shards: usize) -> Result<()> {
    let work = scratch(&format!("bench-merge-{shards}"))?;
    let preset = Preset::glad();
    let grid = Grid::from_preset(&preset, None)?;
    let layout = Layout::new(&preset, &grid);
    let repo = work.join("cube");
    let cube = Cube::init(
        RepoLocation::Local(repo.clone()),
        layout.clone(),
        &InitOptions {
            branch: "main".into(),
            ..InitOptions::default()
        },
    )
    .await?;
    let jobs = glad_jobs(&grid, &layout.years);
    let plan = ShardPlan {
        format: PLAN_FORMAT,
        id: new_id(),
        created: Utc::now(),
        repo: repo.display().to_string(),
        cube: cube.key(),
        branch: "main".into(),
        s3: Default::default(),
        source: "/nonexistent".into(),
        gcs_endpoint: None,
        preset: GLAD_TOML.into(),
        tile_pixels: None,
        base: cube.head().await?.to_string(),
        selection: "all".into(),
        years: layout.years.clone(),
        shards: split(jobs, shards),
        sum: String::new(),
    }
    .sealed();
    let plan_dir = work.join("plan");
    let plan_place = Place::parse(&plan_dir.display().to_string(), &Default::default())?;
    plan.save(&plan_place, true).await?;
    let stage_dir = work.join("stage");
    let stage = Arc::new(Place::parse(
        &stage_dir.display().to_string(),
        &Default::default(),
    )?);

    // Cheap fills: references to chunk objects of a typical GLAD chunk's size, not uploaded.
    let chunk_len = 40_000u64;
    let started = Instant::now();
    let mut refs = 0u64;
    for (i, shard_jobs) in plan.shards.iter().enumerate() {
        let attempt = new_id();
        let writer = StageWriter::begin(Arc::clone(&stage), &plan.id, i, &attempt).await?;
        let session = WriteSession::open_staged(&cube, Arc::clone(&writer) as _).await?;
        for job in shard_jobs {
            let year_index = layout.year_index(job.year).unwrap_or(0);
            let cell = grid.cell(job.tile)?;
            let mut chunks = TileChunks::default();
            for coords in layout.tile_chunks(year_index, cell) {
                chunks.push(coords, Some((chunk_ref(chunk_len), chunk_len)));
            }
            refs += chunks.len() as u64;
            session
                .record_tile(job.year, job.tile, chunks, None)
                .await?;
        }
        session.commit(None).await?;
        writer.finish(ShardState::Done, vec![]).await?;
    }
    let staging = started.elapsed().as_secs_f64();
    let stage_mb = dir_bytes(&stage_dir) as f64 / 1e6;
    let merge = run_child(&[
        "merge",
        "--plan",
        &plan_dir.display().to_string(),
        "--stage",
        &stage_dir.display().to_string(),
    ])?;
    if !merge.ok {
        bail!("merge of {shards} shards failed: {}", merge.stderr);
    }
    let merged = Cube::open(RepoLocation::Local(repo), "main").await?;
    let history = merged.history().await?;
    let tiles = history.first().map(|c| c.tile_count()).unwrap_or(0);
    println!(
        "merge of {shards} staged shards, {} tile-years, {refs} chunk refs ({stage_mb:.0} MB staged in {staging:.0} s): {:.1} s wall with the commit, {:.1} s CPU, peak RSS {:.0} MB; the commit records {tiles} tiles",
        plan.job_count(),
        merge.wall.as_secs_f64(),
        merge.cpu.as_secs_f64(),
        merge.max_rss_mb,
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// A reference to a chunk object (as a shard's upload makes), which this bench never
/// uploads: the merge reads references, not chunks.
fn chunk_ref(len: u64) -> icechunk::format::manifest::ChunkPayload {
    icechunk::format::manifest::ChunkPayload::Ref(icechunk::format::manifest::ChunkRef {
        id: icechunk::format::ChunkId::random(),
        offset: 0,
        length: len,
    })
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

/// 4 shard processes × 1 thread against 1 process × 2 threads, on the same tiles.
fn shards_against_threads(args: &BenchArgs) -> Result<()> {
    let px = args.shard_pixels;
    let n = args.shard_tiles;
    let work = scratch("bench-shards")?;
    let preset = Preset::glad();
    let grid = Grid::from_preset(&preset, Some(px))?;
    let source = work.join("source");
    let tiles: Vec<TileName> = tilecube::demo::land_tiles(&grid)
        .into_iter()
        .take(n)
        .collect();
    for &t in &tiles {
        tilecube::demo::write_tile(&tilecube::demo::tile_path(&source, 2000, t), &grid, t, 2000)?;
    }
    tilecube::demo::write_list(&source, 2000, &tiles)?;
    let names: Vec<String> = tiles.iter().map(|t| t.to_string()).collect();
    let (src, pxs, list) = (
        source.display().to_string(),
        px.to_string(),
        names.join(","),
    );
    let (mut one, mut four, mut shard_rss, mut one_rss) = (vec![], vec![], 0f64, 0f64);
    for round in 0..2 {
        // One process, two threads.
        let repo = work.join(format!("one-{round}")).display().to_string();
        let base = ["--repo", &repo, "--source", &src, "--tile-pixels", &pxs];
        check(run_child(&[&base[..], &["init"]].concat())?, "init")?;
        let w = run_child(
            &[
                &base[..],
                &[
                    "write",
                    "--year",
                    "2000",
                    "--tiles",
                    &list,
                    "--threads",
                    "2",
                ],
            ]
            .concat(),
        )?;
        one_rss = one_rss.max(w.max_rss_mb);
        one.push(check(w, "write")?.wall.as_secs_f64());

        // Four shards of one thread each, at once (the plan made beforehand, not timed).
        let repo = work.join(format!("four-{round}")).display().to_string();
        let plan = work.join(format!("plan-{round}")).display().to_string();
        let base = ["--repo", &repo, "--source", &src, "--tile-pixels", &pxs];
        check(run_child(&[&base[..], &["init"]].concat())?, "init")?;
        check(
            run_child(
                &[
                    &base[..],
                    &[
                        "plan", "--year", "2000", "--all", "--shards", "4", "--out", &plan,
                    ],
                ]
                .concat(),
            )?,
            "plan",
        )?;
        let started = Instant::now();
        let runs: Vec<Result<ChildRun>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let plan = plan.clone();
                    s.spawn(move || {
                        run_child(&[
                            "write",
                            "--plan",
                            &plan,
                            "--shard",
                            &i.to_string(),
                            "--threads",
                            "1",
                        ])
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("a shard thread panicked"))
                })
                .collect()
        });
        let wall = started.elapsed().as_secs_f64();
        for r in runs {
            let r = check(r?, "shard write")?;
            shard_rss = shard_rss.max(r.max_rss_mb);
        }
        four.push(wall);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{n} tiles of {px} px: 4 shard processes x 1 thread {:.2} s vs 1 process x 2 threads {:.2} s (best of 2 each; {:.3}x); peak RSS of a shard {shard_rss:.0} MB, of the 2-thread process {one_rss:.0} MB",
        best(&four),
        best(&one),
        best(&four) / best(&one)
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn check(run: ChildRun, what: &str) -> Result<ChildRun> {
    if !run.ok {
        bail!("{what} failed: {}", run.stderr);
    }
    Ok(run)
}
