//! The ingest pipeline, one stage per file.
//!
//! - [`read`]: the reader, on a thread of its own driving a rayon pool: tiles one after
//!   another, each validated, then its strips of chunk rows read in parallel (one GDAL handle
//!   per worker), cut into chunks and encoded; transient failures are retried with backoff.
//! - [`upload`]: the uploader, on tokio: encoded chunks arrive over a bounded channel and are
//!   uploaded with bounded concurrency; a tile whose chunks are all uploaded is recorded in
//!   the [`WriteSession`] at once, and checkpoints commit on count or time.
//!
//! Invariants: memory holds a bounded number of strips and chunks (the channel's capacity,
//! the uploads in flight); a tile that fails or is cancelled halfway leaves nothing in the
//! session; every commit goes through [`WriteSession::commit`].

mod read;
mod upload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::events::{Event, EventSink};
use super::plan::TileJob;
use crate::cube::{ChunkEncoder, Cube, CubeError, EncodedChunk, WriteSession, WrittenTiles};
use crate::grid::TileName;
use crate::source::TileError;
use crate::storage_settings::StorageSettings;

/// How to run an ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Worker threads for reading and encoding.
    pub threads: usize,
    /// Uploads in flight at once.
    pub max_uploads: usize,
    /// Commit after this many finished tiles (0: only at the end).
    pub commit_every: usize,
    /// Commit when this long has passed since the last commit (with tiles to commit).
    pub commit_interval: Option<Duration>,
    /// Commit when the session holds at least this many chunk references (0: no limit), so
    /// memory follows the machine, not the length of the run.
    pub commit_refs: usize,
    /// Attempts per tile for transient errors.
    pub attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    pub retry_delay: Duration,
    /// Commit at all (checkpoints and the final commit).
    pub commit: bool,
    /// Commit what is left at the end (the console leaves it to the operator).
    pub final_commit: bool,
    /// Windows each worker fetches ahead of its decoding from a remote tile (0: GDAL
    /// fetches each window's blocks when a worker asks for them).
    pub read_ahead: usize,
    /// Bytes a remote tile's read-ahead may hold (a window being decoded is always
    /// fetched).
    pub read_ahead_bytes: u64,
    /// How remote tiles are reached, and GDAL's settings (default: empty — no endpoint,
    /// region or no-sign from the environment, GDAL's cache at 64 MB).
    pub storage: Arc<StorageSettings>,
}

/// Default windows each worker reads ahead from a remote tile.
pub const DEFAULT_READ_AHEAD: usize = 2;

/// Default bytes a remote tile's read-ahead holds: some 12 compressed windows of 1,000 rows
/// of a 40 000-pixel-wide tile.
pub const DEFAULT_READ_AHEAD_BYTES: u64 = 128 << 20;

/// Default limit of chunk references a session holds before a checkpoint: about 125 tiles of
/// 1,600 chunks, some 80 MB of references, so a long write stays far below 512 MB.
pub const DEFAULT_COMMIT_REFS: usize = 200_000;

/// Default checkpoint interval: long ingests commit every ten minutes.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(600);

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            max_uploads: 32,
            commit_every: 0,
            commit_interval: None,
            commit_refs: DEFAULT_COMMIT_REFS,
            attempts: 3,
            retry_delay: Duration::from_millis(500),
            commit: true,
            final_commit: true,
            read_ahead: DEFAULT_READ_AHEAD,
            read_ahead_bytes: DEFAULT_READ_AHEAD_BYTES,
            storage: Arc::default(),
        }
    }
}

/// A tile that could not be written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TileFailure {
    pub year: i32,
    pub tile: TileName,
    pub error: String,
    pub transient: bool,
    pub attempts: u32,
}

impl std::fmt::Display for TileFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}: {}", self.year, self.tile, self.error)
    }
}

/// What an ingest did.
#[derive(Debug, Default, Serialize)]
pub struct IngestReport {
    /// Tiles written (and committed, if the ingest commits).
    pub written: WrittenTiles,
    pub failed: Vec<TileFailure>,
    /// Snapshots committed, oldest first.
    pub commits: Vec<String>,
    pub cancelled: bool,
    /// Encoded bytes uploaded.
    pub bytes: u64,
    /// Tiles written but left uncommitted in the session (when the ingest does not commit).
    pub pending: WrittenTiles,
}

impl IngestReport {
    pub fn written_count(&self) -> usize {
        self.written.values().map(|t| t.len()).sum()
    }
}

/// From the reader to the uploader. `job` indexes the ingest's jobs; `attempt` tells a
/// retried tile's chunks from those of its earlier, abandoned attempt.
enum Msg {
    Chunk {
        job: usize,
        attempt: u32,
        /// 0: the cube itself; `k`: the `k`th overview level.
        level: usize,
        coords: [u64; 3],
        data: EncodedChunk,
    },
    End {
        job: usize,
        attempt: u32,
        result: Result<(), TileError>,
        /// The reader will try this tile again.
        retrying: bool,
        /// What the attempt read (its source's size and version), when it was known.
        provenance: Option<crate::source::Provenance>,
    },
}

/// Write tiles into the cube on a session of its own. `cancel` stops new strips from
/// starting; tiles that were cut short are reported as cancelled and leave nothing behind.
pub async fn ingest(
    cube: &Cube,
    jobs: Vec<TileJob>,
    options: &IngestOptions,
    events: EventSink,
    cancel: Arc<AtomicBool>,
) -> Result<IngestReport, CubeError> {
    let session = WriteSession::open(cube).await?;
    let report = ingest_into(&session, jobs, options, events, cancel).await;
    session.close().await;
    report
}

/// Like [`ingest`], on a session the caller holds: with `options.final_commit` false the
/// written tiles stay uncommitted in it (see [`IngestReport::pending`]) for a later
/// [`WriteSession::commit`].
pub async fn ingest_into(
    session: &Arc<WriteSession>,
    jobs: Vec<TileJob>,
    options: &IngestOptions,
    events: EventSink,
    cancel: Arc<AtomicBool>,
) -> Result<IngestReport, CubeError> {
    crate::source::gdal_setup(&options.storage);
    let layout = &session.cube().layout;
    let grid = layout.grid();
    let threads = options.threads.max(1);
    events.send(Event::Started {
        tiles: jobs.len(),
        threads,
    });
    let per_side = grid.chunks_per_side() as usize;
    let (tx, rx) = mpsc::channel::<Msg>(2 * per_side + 2 * threads + 8);
    let jobs_of: Vec<(i32, TileName)> = jobs.iter().map(|j| (j.year, j.tile)).collect();
    let jobs = Arc::new(jobs);
    let reader = read::Reader {
        jobs: Arc::clone(&jobs),
        grid: grid.clone(),
        encoder: Arc::new(ChunkEncoder::new(layout)?),
        overviews: read::TileOverviews::of(layout)?.map(Arc::new),
        nodata: layout.nodata.map(|n| (n, layout.fill_value)),
        tx,
        events: events.clone(),
        cancel: Arc::clone(&cancel),
        options: options.clone(),
        threads,
    };
    let driver = std::thread::Builder::new()
        .name("tilecube-driver".into())
        .spawn(move || reader.run())
        .map_err(|source| CubeError::Thread {
            what: "reader",
            source,
        })?;

    let uploader = upload::Uploader::new(
        Arc::clone(session),
        jobs,
        options,
        events.clone(),
        &grid,
        Arc::clone(&cancel),
    );
    let (mut report, refused) = uploader.run(rx).await?;
    if driver.join().is_err() {
        return Err(CubeError::Panicked("reader"));
    }
    if let Some(refused) = refused {
        // The tiles recorded before a storage refusal land if the storage still takes a
        // commit (a full disk may not); the refusal is the ingest's outcome either way.
        if matches!(refused, CubeError::StorageRefused { .. })
            && options.commit
            && options.final_commit
            && let Ok(Some(c)) = session.commit(None).await
        {
            events.send(Event::committed(&c));
            report.commits.push(c.snapshot);
        }
        return Err(stopped(session, &mut report, &jobs_of, &events, refused).await);
    }
    if cancel.load(Ordering::SeqCst) {
        report.cancelled = true;
    }
    if options.commit && options.final_commit {
        match session.commit(None).await {
            Ok(Some(c)) => {
                events.send(Event::committed(&c));
                report.commits.push(c.snapshot);
            }
            Ok(None) => {}
            // The storage failed past its retries: the tiles that waited for this commit
            // are not in the cube. Each is a failure, journaled for `write --failed`.
            Err(e) if e.is_transient() => {
                let error = format!("written, but its commit failed: {}", crate::error_chain(&e));
                fail_pending(session, &mut report, &events, &error).await;
            }
            Err(e) => return Err(stopped(session, &mut report, &jobs_of, &events, e).await),
        }
    }
    report.pending = session.pending();
    events.send(Event::Finished {
        written: report.written_count(),
        failed: report.failed.len(),
        cancelled: report.cancelled,
    });
    Ok(report)
}

/// Fail the tiles that wait for a commit (their commit cannot land): each is a failure,
/// journaled through its event for `write --failed`, and no longer counted as written.
async fn fail_pending(
    session: &WriteSession,
    report: &mut IngestReport,
    events: &EventSink,
    error: &str,
) {
    for (year, tiles) in session.take_pending().await {
        for tile in tiles.into_keys() {
            if let Some(w) = report.written.get_mut(&year) {
                w.remove(&tile);
            }
            let failure = TileFailure {
                year,
                tile,
                error: error.to_string(),
                transient: true,
                attempts: 1,
            };
            log::warn!("{failure}");
            events.send(Event::TileFailed {
                year,
                tile,
                error: error.to_string(),
                transient: true,
                attempts: 1,
            });
            report.failed.push(failure);
        }
    }
    report.written.retain(|_, w| !w.is_empty());
}

/// The error of an ingest stopped as a whole by `cause` (a concurrent `extend`, `expire` or
/// `overviews`, a recreated repository, a refusing storage, a lapsed announcement): the
/// tiles that landed at its checkpoints are named, and every other tile of the write is
/// named as not landed; those it had written wait for no commit any more and are failed into
/// the journal, so `write --failed` and `write --missing` take them.
async fn stopped(
    session: &WriteSession,
    report: &mut IngestReport,
    jobs: &[(i32, TileName)],
    events: &EventSink,
    cause: CubeError,
) -> CubeError {
    let cause_text = crate::error_chain(&cause);
    let error = format!("not committed: the write stopped: {cause_text}");
    fail_pending(session, report, events, &error).await;
    let landed: Vec<String> = report
        .written
        .iter()
        .flat_map(|(y, t)| t.keys().map(move |t| format!("{y}/{t}")))
        .collect();
    let mut not_landed: Vec<String> = jobs
        .iter()
        .filter(|(y, t)| !report.written.get(y).is_some_and(|w| w.contains_key(t)))
        .map(|(y, t)| format!("{y}/{t}"))
        .collect();
    not_landed.dedup();
    let list = |v: &[String]| {
        const SHOWN: usize = 12;
        let mut s = v.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(" ");
        if v.len() > SHOWN {
            s.push_str(&format!(" and {} more", v.len() - SHOWN));
        }
        s
    };
    let replaced = cause.cube_replaced();
    let misfit = matches!(cause, CubeError::SourceDoesNotFit { .. });
    let landed_text = match (landed.len(), not_landed.len()) {
        (0, n) if misfit => format!("none of its {} was written", crate::text::plural(n, "tile")),
        (l, n) if replaced && l > 0 => format!(
            "{} of this write landed at its checkpoints in the cube that was there before ({}); none of its {} is in the cube there now: write them again (`write --missing`)",
            crate::text::plural(l, "tile"),
            list(&landed),
            crate::text::plural(l + n, "tile")
        ),
        (0, n) => format!(
            "no tile of this write landed; {} not landed ({}): `write --missing` writes them",
            crate::text::plural(n, "tile"),
            list(&not_landed)
        ),
        (l, 0) => format!(
            "{} of this write landed at its checkpoints ({}), in {}",
            crate::text::plural(l, "tile"),
            list(&landed),
            crate::text::plural(report.commits.len(), "commit")
        ),
        (l, n) => format!(
            "{} of this write landed at its checkpoints ({}), in {}; {} did not ({}): `write --missing` writes them",
            crate::text::plural(l, "tile"),
            list(&landed),
            crate::text::plural(report.commits.len(), "commit"),
            crate::text::plural(n, "tile"),
            list(&not_landed)
        ),
    };
    CubeError::WriteStopped {
        cause_text: cause_text.into(),
        landed_text: landed_text.into(),
        tiles: Box::new((landed, not_landed)),
        cause: Box::new(cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cube::{InitOptions, Layout, RepoLocation};
    use crate::grid::Grid;
    use crate::preset::Preset;

    /// Nice values of this process's threads named `name` (comm is cut to 15 bytes), by
    /// thread id.
    fn nice_of_threads(name: &str) -> Vec<(String, i32)> {
        let mut out = vec![];
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return out;
        };
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.trim_end().starts_with(name) {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after "pid (comm) ": state is field 3, nice field 19.
            if let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r)
                && let Some(nice) = rest.split_whitespace().nth(16)
                && let Ok(n) = nice.parse()
            {
                out.push((task.file_name().to_string_lossy().into_owned(), n));
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_workers_of_a_real_ingest_run_below_normal_priority() {
        let dir = tempfile::tempdir().unwrap();
        let preset = Preset::glad();
        let grid = Grid::from_preset(&preset, Some(2000)).unwrap();
        let tiles: Vec<_> = crate::demo::land_tiles(&grid).into_iter().take(6).collect();
        let source = dir.path().join("source");
        for t in &tiles {
            crate::demo::write_tile(&crate::demo::tile_path(&source, 2000, *t), &grid, *t, 2000)
                .unwrap();
        }
        let cube = Cube::init(
            RepoLocation::Local(dir.path().join("repo")),
            Layout::new(&preset, &grid),
            &InitOptions {
                branch: "main".into(),
                ..InitOptions::default()
            },
        )
        .await
        .unwrap();
        let jobs = tiles
            .iter()
            .map(|t| TileJob {
                year: 2000,
                year_index: 0,
                tile: *t,
                location: crate::source::TileLocation::Local(crate::demo::tile_path(
                    &source, 2000, *t,
                )),
            })
            .collect();
        // SAFETY: reading this (the test's main) thread's own nice value.
        let base = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut seen = vec![];
                while !stop.load(Ordering::SeqCst) {
                    seen.extend(nice_of_threads("tilecube-worke"));
                    std::thread::sleep(Duration::from_millis(2));
                }
                seen
            })
        };
        let options = IngestOptions {
            threads: 2,
            ..IngestOptions::default()
        };
        let report = ingest(&cube, jobs, &options, EventSink::none(), Arc::default())
            .await
            .unwrap();
        stop.store(true, Ordering::SeqCst);
        let seen = watcher.join().unwrap();
        assert_eq!(report.written_count(), 6, "{:?}", report.failed);
        assert!(!seen.is_empty(), "the ingest's worker threads were seen");
        let expected = (base + read::WORKER_NICE).min(19);
        // A worker is named when rayon starts it and lowers itself first thing: a look in
        // between sees the default once. Once lowered, it never runs at another priority,
        // and every worker was seen lowered.
        let mut by_thread: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
        for (tid, n) in &seen {
            by_thread.entry(tid.as_str()).or_default().push(*n);
        }
        for (tid, values) in &by_thread {
            let lowered = values.iter().position(|&n| n == expected);
            assert!(
                lowered.is_some_and(|at| values[at..].iter().all(|&n| n == expected))
                    && values.iter().all(|&n| n == expected || n == base),
                "worker {tid}: nice values {values:?}, expected {expected}"
            );
        }
    }
}
