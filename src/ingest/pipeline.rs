//! The ingest pipeline.
//!
//! A driver thread walks the tiles in order; each tile is validated, then its strips of chunk
//! rows are read in parallel on the rayon pool (one GDAL handle per worker), cut into chunks
//! and encoded there. Encoded chunks cross a bounded channel to the tokio side, which uploads
//! them with bounded concurrency. Only when every chunk of a tile is uploaded are its chunk
//! references recorded in the session, so a tile that fails halfway leaves nothing in a
//! commit. Commits come every `commit_every` tiles or `commit_interval`, and at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use icechunk::format::Path;
use icechunk::format::manifest::ChunkPayload;
use icechunk::session::Session;
use rayon::prelude::*;
use serde::Serialize;
use tokio::sync::{RwLock, mpsc};

use super::events::{Event, EventSink};
use super::plan::TileJob;
use crate::cube::{ChunkEncoder, Cube, CubeError, EncodedChunk, TileChunks, WrittenTiles};
use crate::grid::{Grid, TileName};
use crate::source::{TileError, TileReader};

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
    /// Attempts per tile for transient errors.
    pub attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    pub retry_delay: Duration,
    /// Commit at all (checkpoints and the final commit).
    pub commit: bool,
    /// Commit what is left at the end (the console leaves it to the operator).
    pub final_commit: bool,
}

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
            attempts: 3,
            retry_delay: Duration::from_millis(500),
            commit: true,
            final_commit: true,
        }
    }
}

/// A writable Icechunk session and the tiles recorded in it since its last commit. Tiles are
/// added while the session is locked for writing, and a commit takes them under the same
/// lock, so every commit records exactly the tiles it holds, whoever triggers it.
pub struct WriteSession {
    pub session: RwLock<Session>,
    pending: std::sync::Mutex<WrittenTiles>,
}

impl WriteSession {
    /// A session at the branch head with nothing pending.
    pub async fn open(cube: &Cube) -> Result<Arc<Self>, CubeError> {
        Ok(Arc::new(Self {
            session: RwLock::new(cube.writable_session().await?),
            pending: std::sync::Mutex::new(WrittenTiles::new()),
        }))
    }

    /// Tiles written and not yet committed.
    pub fn pending(&self) -> WrittenTiles {
        self.pending.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn add_pending(&self, year: i32, tile: TileName, chunks: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.entry(year).or_default().insert(tile, chunks);
        }
    }

    fn take_pending(&self) -> WrittenTiles {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    fn restore_pending(&self, tiles: WrittenTiles) {
        if let Ok(mut p) = self.pending.lock() {
            merge_written(&mut p, tiles);
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

/// From the readers to the uploader.
enum Msg {
    Chunk {
        job: usize,
        attempt: u32,
        coords: [u64; 3],
        data: EncodedChunk,
    },
    End {
        job: usize,
        attempt: u32,
        result: Result<(), TileError>,
        /// The reader will try this tile again.
        retrying: bool,
    },
}

type UploadResult = (
    usize,
    u32,
    [u64; 3],
    Result<Option<(ChunkPayload, u64)>, CubeError>,
);

#[derive(Default)]
struct InProgress {
    chunks: TileChunks,
    pending: usize,
    done: u64,
    ended: Option<(Result<(), TileError>, bool)>,
    upload_error: Option<String>,
}

/// Write tiles into the cube. `cancel` stops new strips from starting; tiles that were
/// cut short are reported as cancelled and leave nothing behind.
pub async fn ingest(
    cube: &Cube,
    jobs: Vec<TileJob>,
    options: &IngestOptions,
    events: EventSink,
    cancel: Arc<AtomicBool>,
) -> Result<IngestReport, CubeError> {
    let session = WriteSession::open(cube).await?;
    ingest_into(cube, &session, jobs, options, events, cancel).await
}

/// Like [`ingest`], on a session the caller holds: with `options.commit` false the written
/// tiles stay uncommitted in it (see [`IngestReport::pending`]) for a later
/// [`commit_tiles`].
pub async fn ingest_into(
    cube: &Cube,
    ws: &Arc<WriteSession>,
    jobs: Vec<TileJob>,
    options: &IngestOptions,
    events: EventSink,
    cancel: Arc<AtomicBool>,
) -> Result<IngestReport, CubeError> {
    crate::gdal_setup();
    let layout = cube.layout.clone();
    let grid = layout.grid();
    let path = Path::new(&layout.variable_path())
        .map_err(|e| CubeError::Layout(format!("variable path: {e}")))?;
    let encoder = Arc::new(ChunkEncoder::new(&layout)?);
    let threads = options.threads.max(1);
    events.send(Event::Started {
        tiles: jobs.len(),
        threads,
    });

    let per_side = grid.chunks_per_side() as usize;
    let (tx, mut rx) = mpsc::channel::<Msg>(2 * per_side + 2 * threads + 8);
    let jobs = Arc::new(jobs);
    let driver = {
        let jobs = Arc::clone(&jobs);
        let encoder = Arc::clone(&encoder);
        let events = events.clone();
        let cancel = Arc::clone(&cancel);
        let options = options.clone();
        let grid = grid.clone();
        std::thread::Builder::new()
            .name("tilecube-driver".into())
            .spawn(move || {
                drive(
                    &jobs, &grid, &encoder, &tx, &events, &cancel, &options, threads,
                )
            })
            .map_err(|e| CubeError::Layout(format!("cannot start reader thread: {e}")))?
    };

    let mut report = IngestReport::default();
    let mut tiles: HashMap<(usize, u32), InProgress> = HashMap::new();
    let mut uploads: FuturesUnordered<tokio::task::JoinHandle<UploadResult>> =
        FuturesUnordered::new();
    let mut uncommitted_count = 0usize;
    let mut last_commit = Instant::now();
    let max_uploads = options.max_uploads.max(1);
    let total_chunks = grid.chunks_per_tile();
    let pixel_bytes = grid.tile_pixels * grid.tile_pixels;
    let mut channel_open = true;

    while channel_open || !uploads.is_empty() {
        let mut finished: Option<(usize, u32)> = None;
        tokio::select! {
            msg = rx.recv(), if channel_open && uploads.len() < max_uploads => {
                match msg {
                    None => channel_open = false,
                    Some(Msg::Chunk { job, attempt, coords, data }) => {
                        tiles.entry((job, attempt)).or_default().pending += 1;
                        let ws = Arc::clone(ws);
                        let path = path.clone();
                        uploads.push(tokio::spawn(async move {
                            let result = {
                                let guard = ws.session.read().await;
                                let writer = crate::cube::prepare_upload(&guard, &path, coords);
                                drop(guard);
                                match writer {
                                    Ok(w) => w.run(data).await,
                                    Err(e) => Err(e),
                                }
                            };
                            (job, attempt, coords, result)
                        }));
                    }
                    Some(Msg::End { job, attempt, result, retrying }) => {
                        tiles.entry((job, attempt)).or_default().ended = Some((result, retrying));
                        finished = Some((job, attempt));
                    }
                }
            }
            Some(joined) = uploads.next(), if !uploads.is_empty() => {
                let (job, attempt, coords, result) = match joined {
                    Ok(r) => r,
                    Err(e) => return Err(CubeError::Layout(format!("upload task failed: {e}"))),
                };
                let t = tiles.entry((job, attempt)).or_default();
                t.pending -= 1;
                match result {
                    Ok(payload) => {
                        t.chunks.push(coords, payload);
                        t.done += 1;
                        if t.done.is_multiple_of(per_side as u64) || t.done == total_chunks {
                            let j = &jobs[job];
                            events.send(Event::TileProgress {
                                year: j.year,
                                tile: j.tile,
                                chunks_done: t.done,
                                chunks_total: total_chunks,
                                bytes: t.chunks.bytes,
                            });
                        }
                    }
                    Err(e) => {
                        if t.upload_error.is_none() {
                            t.upload_error = Some(e.to_string());
                        }
                    }
                }
                finished = Some((job, attempt));
            }
        }

        let Some(key) = finished else { continue };
        let ready = tiles
            .get(&key)
            .is_some_and(|t| t.ended.is_some() && t.pending == 0);
        if !ready {
            continue;
        }
        let Some(t) = tiles.remove(&key) else {
            continue;
        };
        let job = &jobs[key.0];
        let (result, retrying) = t.ended.unwrap_or((Err(TileError::Cancelled), false));
        let result = match (result, t.upload_error) {
            (Ok(()), Some(e)) => Err(TileError::Write(e)),
            (r, _) => r,
        };
        match result {
            Ok(()) => {
                let stored = t.chunks.stored() as u64;
                let bytes = t.chunks.bytes;
                {
                    let mut s = ws.session.write().await;
                    if let Err(e) = t.chunks.record(&mut s, &path).await {
                        drop(s);
                        fail(
                            &mut report,
                            &events,
                            job,
                            &TileError::Write(e.to_string()),
                            key.1,
                        );
                        continue;
                    }
                    ws.add_pending(job.year, job.tile, stored);
                }
                report.bytes += bytes;
                report
                    .written
                    .entry(job.year)
                    .or_default()
                    .insert(job.tile, stored);
                uncommitted_count += 1;
                events.send(Event::TileWritten {
                    year: job.year,
                    tile: job.tile,
                    chunks_stored: stored,
                    bytes,
                    pixel_bytes,
                });
            }
            Err(_) if retrying => {}
            Err(TileError::Cancelled) => report.cancelled = true,
            Err(e) => fail(&mut report, &events, job, &e, key.1),
        }

        let due = options.commit
            && uncommitted_count > 0
            && ((options.commit_every > 0 && uncommitted_count >= options.commit_every)
                || options
                    .commit_interval
                    .is_some_and(|d| last_commit.elapsed() >= d));
        if due {
            let id = commit_tiles(cube, ws, &events).await?;
            report.commits.extend(id);
            uncommitted_count = 0;
            last_commit = Instant::now();
        }
    }
    if driver.join().is_err() {
        return Err(CubeError::Layout("the reader thread panicked".into()));
    }
    if cancel.load(Ordering::SeqCst) {
        report.cancelled = true;
    }
    if options.commit && options.final_commit && uncommitted_count > 0 {
        let id = commit_tiles(cube, ws, &events).await?;
        report.commits.extend(id);
    }
    report.pending = ws.pending();
    events.send(Event::Finished {
        written: report.written_count(),
        failed: report.failed.len(),
        cancelled: report.cancelled,
    });
    Ok(report)
}

fn merge_written(into: &mut WrittenTiles, from: WrittenTiles) {
    for (year, tiles) in from {
        into.entry(year).or_default().extend(tiles);
    }
}

fn fail(
    report: &mut IngestReport,
    events: &EventSink,
    job: &TileJob,
    e: &TileError,
    attempts: u32,
) {
    let failure = TileFailure {
        year: job.year,
        tile: job.tile,
        error: e.to_string(),
        transient: e.is_transient(),
        attempts: attempts + 1,
    };
    log::warn!("{failure}");
    events.send(Event::TileFailed {
        year: job.year,
        tile: job.tile,
        error: failure.error.clone(),
        transient: failure.transient,
        attempts: failure.attempts,
    });
    report.failed.push(failure);
}

/// The commit message naming the tiles.
pub fn commit_message(written: &WrittenTiles) -> String {
    let names: Vec<String> = written
        .iter()
        .flat_map(|(y, t)| t.keys().map(move |t| format!("{y}/{t}")))
        .collect();
    let n = names.len();
    let shown = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    let more = if n > 8 {
        format!(" and {} more", n - 8)
    } else {
        String::new()
    };
    let s = if n == 1 { "" } else { "s" };
    format!("write {n} tile{s}: {shown}{more}")
}

/// Commit the tiles pending in a write session (message and snapshot properties name them),
/// then continue the session at the new head. Returns the new snapshot id, or `None` when
/// nothing was pending.
pub async fn commit_tiles(
    cube: &Cube,
    ws: &WriteSession,
    events: &EventSink,
) -> Result<Option<String>, CubeError> {
    commit_tiles_with_message(cube, ws, None, events).await
}

/// [`commit_tiles`] with the operator's own message (default: one naming the tiles).
pub async fn commit_tiles_with_message(
    cube: &Cube,
    ws: &WriteSession,
    message: Option<&str>,
    events: &EventSink,
) -> Result<Option<String>, CubeError> {
    let mut s = ws.session.write().await;
    let written = ws.take_pending();
    if written.is_empty() {
        return Ok(None);
    }
    let message = message
        .map(str::to_string)
        .unwrap_or_else(|| commit_message(&written));
    let props = crate::cube::written_properties(&written);
    let id = match crate::cube::commit(cube, &mut s, &message, props).await {
        Ok(id) => id,
        Err(e) => {
            ws.restore_pending(written);
            return Err(e);
        }
    };
    // Continue on a fresh session at the new head.
    *s = cube.writable_session().await?;
    let id = id.to_string();
    events.send(Event::Committed {
        snapshot: id.clone(),
        message,
        tiles: written.values().map(|t| t.len()).sum(),
    });
    Ok(Some(id))
}

/// The reader side: tiles one after another, strips of each in parallel on the pool.
#[allow(clippy::too_many_arguments)]
fn drive(
    jobs: &[TileJob],
    grid: &Grid,
    encoder: &ChunkEncoder,
    tx: &mpsc::Sender<Msg>,
    events: &EventSink,
    cancel: &AtomicBool,
    options: &IngestOptions,
    threads: usize,
) {
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("tilecube-worker-{i}"))
        .start_handler(|_| lower_priority())
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            for (i, _) in jobs.iter().enumerate() {
                let _ = tx.blocking_send(Msg::End {
                    job: i,
                    attempt: 0,
                    result: Err(TileError::Write(format!("cannot start the pool: {e}"))),
                    retrying: false,
                });
            }
            return;
        }
    };
    let attempts = options.attempts.max(1);
    let strips = StripBuffers::default();
    for (i, job) in jobs.iter().enumerate() {
        for attempt in 0..attempts {
            if cancel.load(Ordering::SeqCst) {
                let _ = tx.blocking_send(Msg::End {
                    job: i,
                    attempt,
                    result: Err(TileError::Cancelled),
                    retrying: false,
                });
                break;
            }
            let result = pool
                .install(|| read_tile(i, attempt, job, grid, encoder, tx, events, cancel, &strips));
            let retrying = matches!(&result, Err(e) if e.is_transient()) && attempt + 1 < attempts;
            if let (true, Err(e)) = (retrying, &result) {
                events.send(Event::TileRetry {
                    year: job.year,
                    tile: job.tile,
                    attempt: attempt + 1,
                    error: e.to_string(),
                });
            }
            let ok = result.is_ok();
            if tx
                .blocking_send(Msg::End {
                    job: i,
                    attempt,
                    result,
                    retrying,
                })
                .is_err()
            {
                return;
            }
            if !retrying {
                break;
            }
            debug_assert!(!ok);
            std::thread::sleep(backoff(options.retry_delay, attempt));
            TileReader::forget_cached(&job.path);
        }
    }
}

/// Workers run a little below normal priority: they keep every core busy, and the threads
/// that answer the operator's keys and feed the uploads must get a core as soon as they wake.
fn lower_priority() {
    // SAFETY: setpriority on this thread's own id (Linux sets the nice value per thread);
    // on failure the worker simply keeps the default priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, WORKER_NICE);
    }
}

/// Nice value of the worker threads.
const WORKER_NICE: libc::c_int = 5;

/// Exponential backoff with jitter: `base * 2^attempt`, scaled by 0.5..1.5.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = 0.5 + (nanos % 1000) as f64 / 1000.0;
    base.mul_f64(2f64.powi(attempt.min(10) as i32) * jitter)
}

/// Strip buffers, kept from tile to tile: a worker takes one for a strip and gives it back,
/// so the pool allocates a handful of strips for the whole ingest.
#[derive(Default)]
struct StripBuffers(std::sync::Mutex<Vec<Vec<u8>>>);

impl StripBuffers {
    fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = self
            .0
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.0.lock() {
            free.push(buf);
        }
    }
}

thread_local! {
    /// The chunk being cut out of a strip, reused by each worker thread.
    static CHUNK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[allow(clippy::too_many_arguments)]
fn read_tile(
    job_index: usize,
    attempt: u32,
    job: &TileJob,
    grid: &Grid,
    encoder: &ChunkEncoder,
    tx: &mpsc::Sender<Msg>,
    events: &EventSink,
    cancel: &AtomicBool,
    strips: &StripBuffers,
) -> Result<(), TileError> {
    let (reader, cell) = TileReader::open(&job.path, grid, job.tile)?;
    events.send(Event::TileStarted {
        year: job.year,
        tile: job.tile,
        chunks_total: grid.chunks_per_tile(),
    });
    let side = grid.chunk_pixels as usize;
    let width = grid.tile_pixels as usize;
    let per_side = grid.chunks_per_side();
    let (cy0, cx0) = grid.first_chunk(cell);
    let year = job.year_index as u64;
    // GDAL handles of this tile: a worker holds one only while it decodes a strip, so there
    // are never more than there are workers.
    let readers = std::sync::Mutex::new(vec![reader]);
    (0..per_side).into_par_iter().try_for_each(|sy| {
        if cancel.load(Ordering::SeqCst) {
            return Err(TileError::Cancelled);
        }
        let reader = readers.lock().ok().and_then(|mut r| r.pop());
        let reader = match reader {
            Some(r) => r,
            None => TileReader::reopen(&job.path)?,
        };
        let mut strip = strips.take(side * width);
        let read = reader.read_rows(sy as usize * side, side, &mut strip);
        if let Ok(mut r) = readers.lock() {
            r.push(reader);
        }
        if let Err(e) = read {
            strips.give(strip);
            return Err(e);
        }
        let sent = (0..per_side).into_par_iter().try_for_each(|sx| {
            let x0 = sx as usize * side;
            let data = CHUNK.with_borrow_mut(|chunk| {
                chunk.clear();
                for row in strip.chunks_exact(width) {
                    chunk.extend_from_slice(&row[x0..x0 + side]);
                }
                encoder.encode(chunk)
            });
            let data = data.map_err(|e| TileError::Write(e.to_string()))?;
            tx.blocking_send(Msg::Chunk {
                job: job_index,
                attempt,
                coords: [year, cy0 + sy, cx0 + sx],
                data,
            })
            .map_err(|_| TileError::Cancelled)
        });
        strips.give(strip);
        sent
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_messages_name_the_tiles() {
        let t = |s: &str| s.parse::<TileName>().unwrap();
        let w: WrittenTiles = [(2000, [(t("70N_180W"), 3), (t("60N_170W"), 0)].into())].into();
        assert_eq!(
            commit_message(&w),
            "write 2 tiles: 2000/70N_180W, 2000/60N_170W"
        );
        let many: WrittenTiles = [(
            2005,
            (0..10).map(|i| (TileName::new(0, i * 10), 1)).collect(),
        )]
        .into();
        let m = commit_message(&many);
        assert!(
            m.starts_with("write 10 tiles: 2005/00N_000E") && m.ends_with("and 2 more"),
            "{m}"
        );
    }

    #[test]
    fn pool_workers_run_below_normal_priority() {
        let nice = |pool: &rayon::ThreadPool| {
            pool.install(|| {
                // SAFETY: reading this thread's own nice value.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::getpriority(libc::PRIO_PROCESS, tid)
                }
            })
        };
        let plain = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .start_handler(|_| lower_priority())
            .build()
            .unwrap();
        assert_eq!(nice(&workers), nice(&plain) + WORKER_NICE);
    }

    #[test]
    fn backoff_grows_and_jitters_within_bounds() {
        let base = Duration::from_millis(100);
        for attempt in 0..4 {
            let d = backoff(base, attempt);
            let nominal = 100.0 * 2f64.powi(attempt as i32);
            let ms = d.as_secs_f64() * 1000.0;
            assert!(
                ms >= nominal * 0.5 && ms <= nominal * 1.5,
                "{attempt}: {ms}"
            );
        }
    }
}
