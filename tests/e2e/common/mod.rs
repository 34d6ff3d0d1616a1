//! Shared set-up for the end-to-end tests: GLAD-like sources made with GDAL, the real
//! `tilecube` binary, and read-back of the cube through zarrs.
#![allow(dead_code)]

pub mod nginx;
pub mod s3;
pub mod slurm;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use tilecube::cube::{Cube, RepoLocation};
use tilecube::demo::{self, Flaw};
use tilecube::grid::{Grid, TileName};
use tilecube::ingest::{self, EventSink, IngestOptions, TileJob};
use tilecube::preset::{GLAD_TOML, Preset};
use zarrs::array::{Array, ArraySubset};
use zarrs_icechunk::AsyncIcechunkStore;

/// Tile side of the test grid, and its chunk side (16 chunks a tile, 4 strips).
pub const TILE: u64 = 400;
pub const CHUNK: u64 = 100;

/// A scratch workspace: a preset with small chunks, a config file, a source dir, a repo dir.
pub struct Work {
    pub dir: tempfile::TempDir,
    pub grid: Grid,
}

pub fn t(name: &str) -> TileName {
    name.parse().expect("tile name")
}

impl Work {
    pub fn new() -> Self {
        Self::with_tile(TILE)
    }

    /// A workspace whose tiles are `tile` pixels a side (chunks stay `CHUNK`).
    pub fn with_tile(tile: u64) -> Self {
        Self::with_grid(tile, CHUNK)
    }

    /// A workspace whose tiles are `tile` pixels a side, in chunks of `chunk`.
    pub fn with_grid(tile: u64, chunk: u64) -> Self {
        Self::with_preset(tile, chunk, |text| text)
    }

    /// A workspace of the test grid whose overviews go down to `coarsest_width` pixels
    /// (`None`: switched off): small enough that its coarse levels span several tiles.
    pub fn with_overviews(coarsest_width: Option<u64>) -> Self {
        Self::with_preset(TILE, CHUNK, |text| match coarsest_width {
            Some(w) => text.replace("coarsest_width = 2048", &format!("coarsest_width = {w}")),
            None => text.replace("enabled = true", "enabled = false"),
        })
    }

    /// The workspace's preset file.
    pub fn preset_path(&self) -> PathBuf {
        self.dir.path().join("preset.toml")
    }

    /// A workspace of `tile`-pixel tiles in `chunk`-pixel chunks, its preset edited.
    pub fn with_preset(tile: u64, chunk: u64, edit: impl Fn(String) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let preset_text =
            edit(GLAD_TOML.replace("chunk_pixels = 1000", &format!("chunk_pixels = {chunk}")));
        let preset_path = dir.path().join("preset.toml");
        std::fs::write(&preset_path, &preset_text).expect("preset");
        let config = format!(
            "preset = {:?}\nrepo = {:?}\nsource = {:?}\ntile_pixels = {tile}\n",
            preset_path,
            dir.path().join("repo"),
            dir.path().join("source"),
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("config");
        let preset = Preset::parse(&preset_text, "test preset").expect("preset parses");
        let grid = Grid::from_preset(&preset, Some(tile)).expect("grid");
        Self { dir, grid }
    }

    pub fn source(&self) -> PathBuf {
        self.dir.path().join("source")
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Write one tile of the source, good or flawed.
    pub fn tile(&self, year: i32, tile: &str, flaw: Flaw) -> PathBuf {
        let path = demo::tile_path(&self.source(), year, t(tile));
        demo::write_flawed_tile(&path, &self.grid, t(tile), year, flaw).expect("write tile");
        path
    }

    /// The tiles of `year` each commit of the branch recorded, newest first, for the
    /// commits that recorded any.
    pub fn written_by_commit(&self, year: i32) -> Vec<Vec<String>> {
        let log: serde_json::Value =
            serde_json::from_str(&self.ok(&["log", "--json"])).expect("log JSON");
        log.as_array()
            .expect("commits")
            .iter()
            .filter_map(|c| c["written"][year.to_string()].as_object())
            .map(|tiles| tiles.keys().cloned().collect())
            .collect()
    }

    /// Assert that the commits recording tiles of `year`, but the last (the final commit),
    /// were checkpoints by time: the first `every` or more after `started`, each next one
    /// `every` or more after the one before.
    pub fn assert_checkpoints_by_time(
        &self,
        year: i32,
        started: chrono::DateTime<chrono::Utc>,
        every: std::time::Duration,
    ) -> usize {
        let log: serde_json::Value =
            serde_json::from_str(&self.ok(&["log", "--json"])).expect("log JSON");
        let mut times: Vec<chrono::DateTime<chrono::Utc>> = log
            .as_array()
            .expect("commits")
            .iter()
            .filter(|c| c["written"][year.to_string()].is_object())
            .map(|c| {
                c["time"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .expect("commit time")
                    .to_utc()
            })
            .collect();
        times.reverse();
        let every = chrono::Duration::from_std(every).expect("duration");
        let mut previous = started;
        for (i, t) in times.iter().take(times.len().saturating_sub(1)).enumerate() {
            assert!(
                *t - previous >= every,
                "checkpoint {i} at {t}, {} ms after the one before ({previous}): {times:?}",
                (*t - previous).num_milliseconds()
            );
            previous = *t;
        }
        times.len()
    }

    /// The failure journal files kept for this workspace's repositories, parsed.
    pub fn journal_entries(&self) -> Vec<serde_json::Value> {
        let dir = self.dir.path().join("data").join("journal");
        let Ok(files) = std::fs::read_dir(&dir) else {
            return vec![];
        };
        let mut out = vec![];
        for f in files.flatten() {
            if f.path().extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(f.path()).expect("journal");
                let j: serde_json::Value = serde_json::from_str(&text).expect("journal JSON");
                out.extend(j["failed"].as_array().cloned().unwrap_or_default());
            }
        }
        out
    }

    /// Write a good tile whose upper half is class `top` and lower half class `bottom`.
    pub fn two_class_tile(&self, year: i32, tile: &str, top: u8, bottom: u8) -> PathBuf {
        let n = self.grid.tile_pixels as usize;
        let mut data = vec![top; n * n];
        data[n * n / 2..].fill(bottom);
        self.tile_of_pixels(year, tile, data)
    }

    /// Write a good tile whose pixels are `data` (row-major, the tile's side squared).
    pub fn tile_of_pixels(&self, year: i32, tile: &str, data: Vec<u8>) -> PathBuf {
        let path = self.tile(year, tile, Flaw::None);
        let n = self.grid.tile_pixels as usize;
        assert_eq!(data.len(), n * n, "a tile's pixels");
        let ds = gdal::Dataset::open_ex(
            &path,
            gdal::DatasetOptions {
                open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE,
                ..Default::default()
            },
        )
        .expect("open tile for update");
        let mut band = ds.rasterband(1).expect("band");
        let mut buf = gdal::raster::Buffer::new((n, n), data);
        band.write((0, 0), (n, n), &mut buf).expect("write pixels");
        path
    }

    /// Plan every listed tile in `shards` shards and stage each shard's tiles (one thread,
    /// `extra` flags added to each shard's write): the plan's and the stage's paths.
    pub fn staged_shards(&self, shards: usize, extra: &[&str]) -> (String, String) {
        let plan = self.dir.path().join("plan").display().to_string();
        let stage = self.dir.path().join("stage").display().to_string();
        self.ok(&[
            "plan",
            "--all",
            "--shards",
            &shards.to_string(),
            "--out",
            &plan,
        ]);
        for shard in 0..shards {
            let shard = shard.to_string();
            let mut args = vec![
                "write",
                "--plan",
                &plan,
                "--shard",
                &shard,
                "--stage",
                &stage,
                "--threads",
                "1",
            ];
            args.extend_from_slice(extra);
            self.ok(&args);
        }
        (plan, stage)
    }

    /// Write a year's tile list naming these tiles, plus any extra raw lines.
    pub fn list(&self, year: i32, tiles: &[&str], extra: &str) {
        let mut text: String = tiles
            .iter()
            .map(|n| format!("https://example.invalid/v2/{year}/{n}.tif\n"))
            .collect();
        text.push_str(extra);
        std::fs::create_dir_all(self.source()).expect("source dir");
        std::fs::write(self.source().join(format!("{year}.txt")), text).expect("list");
    }

    /// Write good tiles of a year and the year's list naming them.
    pub fn listed_tiles(&self, year: i32, names: &[String]) {
        for name in names {
            self.tile(year, name, Flaw::None);
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.list(year, &refs, "");
    }

    /// Run the tilecube binary with this workspace's config.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    /// Run the tilecube binary with this workspace's config and extra environment.
    pub fn run_with(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let config = self.dir.path().join("config.toml");
        std::process::Command::new(env!("CARGO_BIN_EXE_tilecube"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("TILECUBE_DATA_DIR", self.dir.path().join("data"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run tilecube")
    }

    /// Start the tilecube binary with this workspace's config and extra environment, its
    /// output piped.
    pub fn spawn_with(&self, args: &[&str], env: &[(&str, String)]) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_tilecube"))
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(args)
            .env("TILECUBE_DATA_DIR", self.dir.path().join("data"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn tilecube")
    }

    /// The environment that holds a tilecube process at each commit step of `holds`
    /// (`step#N`, comma-separated) until [`Work::release`] (feature `test-support`).
    pub fn hold_env(&self, holds: &str) -> Vec<(&'static str, String)> {
        vec![
            ("TILECUBE_TEST_HOLD_AT", holds.to_string()),
            (
                "TILECUBE_TEST_HOLD_FILE",
                self.dir.path().join("hold").display().to_string(),
            ),
        ]
    }

    /// Wait (two minutes at most) until a held process reached `step#N`.
    pub fn wait_held(&self, step: &str, n: usize) {
        let reached = self.dir.path().join(format!("hold-{step}-{n}.reached"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !reached.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no process reached {step}#{n}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Let the process held at `step#N` go on.
    pub fn release(&self, step: &str, n: usize) {
        std::fs::write(self.dir.path().join(format!("hold-{step}-{n}")), "go").expect("release");
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, &[])
    }

    /// Run with extra environment and require success; returns stdout.
    pub fn ok_with(&self, args: &[&str], env: &[(&str, String)]) -> String {
        let out = self.run_with(args, env);
        assert!(
            out.status.success(),
            "tilecube {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The workspace's cube, keeping coverage where the binary keeps it for this workspace
    /// (`TILECUBE_DATA_DIR/cache`).
    pub async fn cube(&self) -> Cube {
        let loc = RepoLocation::Local(self.repo());
        Cube::open(loc, "main")
            .await
            .expect("open cube")
            .with_coverage_cache(self.dir.path().join("data").join("cache"))
    }
}

/// The names of `n` test tiles, twelve to a row from 00N_000E.
pub fn tile_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{:02}N_{:03}E", (i / 12) * 10, (i % 12) * 10))
        .collect()
}

/// GDAL's read of a whole tile.
pub fn gdal_pixels(path: &Path) -> Vec<u8> {
    let ds = gdal::Dataset::open(path).expect("open tile");
    let (w, h) = ds.raster_size();
    let band = ds.rasterband(1).expect("band");
    band.read_as::<u8>((0, 0), (w, h), (w, h), None)
        .expect("read")
        .data()
        .to_vec()
}

/// The cube's pixels of a tile region, read through zarrs from the branch head.
pub async fn cube_pixels(cube: &Cube, year: i32, tile: TileName) -> Vec<u8> {
    let session = cube.head_session().await.expect("session");
    let store = Arc::new(AsyncIcechunkStore::new(session));
    let array = Array::async_open(store, &cube.layout.variable_path())
        .await
        .expect("open array");
    let grid = cube.layout.grid();
    let region = grid.region(grid.cell(tile).expect("cell"));
    let yi = cube.layout.year_index(year).expect("year") as u64;
    let subset = ArraySubset::new_with_ranges(&[
        yi..yi + 1,
        region.y0..region.y0 + region.height,
        region.x0..region.x0 + region.width,
    ]);
    array
        .async_retrieve_array_subset::<Vec<u8>>(&subset)
        .await
        .expect("read subset")
}

/// The venv's Python (`.ci/setup` makes it), or `TILECUBE_PYTHON`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("TILECUBE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python venv at {}: run `bash .ci/setup` (it installs icechunk 1.1, zarr 3, xarray)",
        venv.display()
    );
    venv
}

/// The second venv's Python (Python 3.12, icechunk-python 2.x, geozarr-toolkit, rioxarray;
/// `.ci/setup` makes it), or `TILECUBE_PYTHON_IC2`.
pub fn python_ic2() -> PathBuf {
    if let Ok(p) = std::env::var("TILECUBE_PYTHON_IC2") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-ic2/bin/python");
    assert!(
        venv.exists(),
        "no Python venv at {}: run `bash .ci/setup` (it makes it on Python 3.12 with icechunk 2.x)",
        venv.display()
    );
    venv
}

/// Run `tests/python/SCRIPT` with `python` and `args`; returns whether it succeeded and its
/// stdout and stderr.
pub fn python_script(python: &Path, script: &str, args: &[&str]) -> (bool, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = std::process::Command::new(python)
        .arg(path)
        .args(args)
        .output()
        .expect("run python");
    (
        out.status.success(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Run `tests/python/readback.py` on a repository (a directory or s3:// URL) against the
/// expectations in `expect_dir`; it must succeed. Returns its stdout.
pub fn python_readback(repo: &str, expect_dir: &Path, env: &[(&str, String)]) -> String {
    python_readback_with(&python(), repo, expect_dir, env)
}

/// [`python_readback`] with another Python (the icechunk-python 2.x venv, say).
pub fn python_readback_with(
    python: &Path,
    repo: &str,
    expect_dir: &Path,
    env: &[(&str, String)],
) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/readback.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(repo)
        .arg(expect_dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python read-back failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `writers` writers, each with a repository handle of its own (as separate processes have),
/// write their share of `tiles` of `year` at the same time, committing after every tile.
/// Each must finish with one commit per tile. Returns the cube, reopened.
pub async fn race_writers(
    w: &Work,
    location: RepoLocation,
    year: i32,
    tiles: &[String],
    writers: usize,
) -> Cube {
    let options = IngestOptions {
        threads: 1,
        commit_every: 1,
        ..Default::default()
    };
    let mut running = vec![];
    for part in tiles.chunks(tiles.len().div_ceil(writers)) {
        let cube = Cube::open(location.clone(), "main").await.expect("open");
        let year_index = cube.layout.year_index(year).expect("year");
        let jobs: Vec<_> = part
            .iter()
            .map(|name| TileJob {
                year,
                year_index,
                tile: t(name),
                location: tilecube::source::TileLocation::Local(demo::tile_path(
                    &w.source(),
                    year,
                    t(name),
                )),
            })
            .collect();
        let options = options.clone();
        running.push(tokio::spawn(async move {
            let n = jobs.len();
            let report = ingest::ingest(&cube, jobs, &options, EventSink::none(), Arc::default())
                .await
                .expect("ingest");
            assert!(report.failed.is_empty(), "{:?}", report.failed);
            assert_eq!(report.commits.len(), n, "one commit per tile");
        }));
    }
    for r in running {
        r.await.expect("writer");
    }
    Cube::open(location, "main").await.expect("reopen")
}

/// Tamper with the branch behind tilecube's back, as another tool could: the recorded tile
/// `loses` loses a chunk, and a chunk appears in `gains`, a tile no commit recorded.
pub async fn tamper(w: &Work, year: i32, loses: &str, gains: &str) {
    use icechunk::format::ChunkIndices;
    let cube = w.cube().await;
    let year_index = cube.layout.year_index(year).expect("year");
    let mut session = cube.writable_session().await.expect("session");
    let path = icechunk::format::Path::new("/lclu").expect("path");
    let grid = cube.layout.grid();
    let idx = |c: [u64; 3]| ChunkIndices(c.iter().map(|&v| v as u32).collect());
    let lost = cube
        .layout
        .tile_chunks(year_index, grid.cell(t(loses)).expect("cell"))
        .next()
        .expect("a chunk");
    let payload = session
        .get_chunk_ref(&path, &idx(lost))
        .await
        .expect("chunk ref")
        .expect("a stored chunk");
    session
        .set_chunk_ref(path.clone(), idx(lost), None)
        .await
        .expect("remove");
    let stray = cube
        .layout
        .tile_chunks(year_index, grid.cell(t(gains)).expect("cell"))
        .next()
        .expect("a chunk");
    session
        .set_chunk_ref(path.clone(), idx(stray), Some(payload))
        .await
        .expect("add");
    session.commit("tampered").execute().await.expect("commit");
}

/// Wait for a child and return its exit status and peak RSS in MB: the high-water mark of
/// its own address space (`VmHWM`), read until it exits. (`wait4`'s `ru_maxrss` would also
/// count the parent's memory the child started from.)
pub fn wait_peak_rss_mb(mut child: std::process::Child) -> (Option<i32>, f64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), peak_kb as f64 / 1024.0);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Every file under `dir`, by its path relative to `dir`, with a hash of its bytes: what a
/// test compares before and after an operation to show which objects it added or changed.
pub fn file_hashes(dir: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    use std::hash::{Hash, Hasher};
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .expect("under dir")
                    .display()
                    .to_string();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).expect("read file").hash(&mut h);
                out.insert(rel, h.finish());
            }
        }
    }
    out
}
