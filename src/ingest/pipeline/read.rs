//! The reader stage: tiles one after another on a thread of its own, the strips of each read,
//! cut into chunks and encoded in parallel on a rayon pool.
//!
//! Reads follow the source's layout: a tile is read in windows of whole source blocks (strips
//! or the tiles of a COG), each window decoded once by one worker. When the blocks' rows
//! divide the chunk side, a window is a chunk strip; otherwise (512-row COG tiles under
//! 1000-row chunks, say) windows are cut at block rows and their rows are assembled into chunk
//! strips, so no block is decoded twice. A tiled source's blocks are decoded one by one
//! straight into the strips their rows belong to (each strip behind its own lock).
//!
//! Workers take a tile's windows in row order. A tile is opened by one call
//! ([`crate::source::OpenTile`]); a remote one is read through its read-ahead: the bytes of the windows after those being decoded are fetched
//! meanwhile, and the next remote tile is opened (its header, block offsets and first
//! windows fetched) on a thread of its own while this one is decoded, so the workers wait for
//! the network only when it is slower than they are.
//!
//! A cube with overviews gets each tile's overview chunks from the same strips as they are
//! sent ([`crate::overview::TilePyramid`]): no second read; they travel with the tile's
//! chunks and are recorded with them, all or nothing.
//!
//! Invariants: each worker holds at most one GDAL handle and one window buffer, reused from
//! window to window and tile to tile (plus, for the next tile opened ahead, one handle and
//! its first windows' bytes), and at most one strip per worker (plus one) waits for
//! rows from a neighbouring window; a tile ends with exactly one [`Msg::End`] per attempt,
//! after all of that attempt's chunks were sent; a cancelled tile stops at its next window.
//! Workers run a little below normal priority.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rayon::prelude::*;
use tokio::sync::mpsc;

use super::{IngestOptions, Msg};
use crate::cube::ChunkEncoder;
use crate::grid::Grid;
use crate::ingest::events::{Event, EventSink};
use crate::ingest::plan::TileJob;
use crate::overview::{LevelChunk, Resampling, TileLevel, TilePyramid};
use crate::source::{OpenTile, ReadAheadOptions, TileError, TileReader};

/// Everything the reader needs, moved onto its thread.
pub(super) struct Reader {
    pub jobs: Arc<Vec<TileJob>>,
    pub grid: Grid,
    pub encoder: Arc<ChunkEncoder>,
    /// The overview levels written with each tile, if the cube has any.
    pub overviews: Option<Arc<TileOverviews>>,
    /// The source's nodata and the cube's fill value, when they differ: such pixels are
    /// made fill as they are read.
    pub nodata: Option<(u8, u8)>,
    pub tx: mpsc::Sender<Msg>,
    pub events: EventSink,
    pub cancel: Arc<AtomicBool>,
    pub options: IngestOptions,
    pub threads: usize,
}

impl Reader {
    /// Read every job, retrying transient failures; returns when all are done or the
    /// uploader has gone.
    pub fn run(self) {
        let pool = match rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("tilecube-worker-{i}"))
            .start_handler(|_| lower_priority())
            .build()
        {
            Ok(p) => p,
            Err(e) => {
                for i in 0..self.jobs.len() {
                    let _ = self.tx.blocking_send(Msg::End {
                        job: i,
                        attempt: 0,
                        result: Err(TileError::Write {
                            reason: format!("cannot start the pool: {e}"),
                            transient: false,
                        }),
                        retrying: false,
                        provenance: None,
                    });
                }
                return;
            }
        };
        let attempts = self.options.attempts.max(1);
        let strips = StripBuffers::default();
        std::thread::scope(|scope| {
            // The next remote tile, opened (and its first windows fetched) while this one is
            // decoded, so the workers never wait for a tile's first round trips.
            let mut next_open: Option<(usize, std::thread::ScopedJoinHandle<'_, Opening>)> = None;
            for (i, job) in self.jobs.iter().enumerate() {
                self.read_job(i, job, attempts, &strips, &pool, &mut next_open, scope);
                if self.tx.is_closed() {
                    return;
                }
            }
        });
    }

    /// Every attempt at job `i`, until it is written, fails for good or is cancelled.
    #[allow(clippy::too_many_arguments)]
    fn read_job<'s>(
        &'s self,
        i: usize,
        job: &'s TileJob,
        attempts: u32,
        strips: &StripBuffers,
        pool: &rayon::ThreadPool,
        next_open: &mut Option<(usize, std::thread::ScopedJoinHandle<'s, Opening>)>,
        scope: &'s std::thread::Scope<'s, '_>,
    ) {
        for attempt in 0..attempts {
            if self.cancel.load(Ordering::SeqCst) {
                let _ = self.tx.blocking_send(Msg::End {
                    job: i,
                    attempt,
                    result: Err(TileError::Cancelled),
                    retrying: false,
                    provenance: None,
                });
                break;
            }
            let opened = match next_open.take() {
                Some((j, handle)) if j == i => handle
                    .join()
                    .unwrap_or_else(|_| Err(open_panicked(&job.location))),
                other => {
                    *next_open = other;
                    self.open_tile(job)
                }
            };
            if next_open.is_none()
                && self.options.read_ahead > 0
                && let Some(next) = self.jobs.get(i + 1)
                && next.location.is_remote()
            {
                *next_open = Some((i + 1, scope.spawn(move || self.open_tile(next))));
            }
            let mut provenance = opened.as_ref().ok().and_then(|o| o.provenance().cloned());
            let fetched = opened.as_ref().ok().and_then(|o| o.fetched());
            let result = opened.and_then(|opened| {
                pool.install(|| self.read_tile(i, attempt, job, strips, opened))
            });
            // A local file read whole and unchanged meanwhile: its bytes' digest, from the
            // page cache its read filled, so a copy of it later is told from a change.
            if result.is_ok()
                && let (Some(p), crate::source::TileLocation::Local(path)) =
                    (&mut provenance, &job.location)
                && crate::source::Provenance::of_file(path).is_ok_and(|now| now.same_as(p))
            {
                p.digest = crate::source::Provenance::digest_of_file(path).ok();
            }
            // A remote object: its digest from the parts the read fetched (what it left out
            // fetched from the same version), so a re-upload of the same bytes is no change.
            if result.is_ok()
                && let (Some(p), Some(file)) = (&mut provenance, &fetched)
            {
                p.digest = file.digest().ok();
            }
            drop(fetched);
            let retrying = matches!(&result, Err(e) if e.is_transient()) && attempt + 1 < attempts;
            if let (true, Err(e)) = (retrying, &result) {
                self.events.send(Event::TileRetry {
                    year: job.year,
                    tile: job.tile,
                    attempt: attempt + 1,
                    error: e.to_string(),
                });
            }
            let end = Msg::End {
                job: i,
                attempt,
                result,
                retrying,
                provenance,
            };
            if self.tx.blocking_send(end).is_err() {
                return;
            }
            if !retrying {
                break;
            }
            std::thread::sleep(backoff(self.options.retry_delay, attempt));
            OpenTile::forget_cached(&job.location);
        }
    }

    /// Open a tile and check it; a remote one's first windows start arriving at once.
    fn open_tile(&self, job: &TileJob) -> Opening {
        OpenTile::open(
            &job.location,
            &self.grid,
            job.tile,
            ReadAheadOptions {
                windows: self.options.read_ahead * self.threads,
                bytes: self.options.read_ahead_bytes,
            },
            &self.options.storage,
        )
    }

    /// One attempt at one tile: validate, then windows in parallel, taken in row order.
    /// A remote tile is read through its read-ahead file (when read-ahead is on): the
    /// bytes of the windows after those being decoded are fetched meanwhile.
    fn read_tile(
        &self,
        job_index: usize,
        attempt: u32,
        job: &TileJob,
        strips: &StripBuffers,
        tile: OpenTile,
    ) -> Result<(), TileError> {
        let grid = &self.grid;
        let (cell, window, windows) = (tile.cell(), tile.window_rows(), tile.windows());
        self.events.send(Event::TileStarted {
            year: job.year,
            tile: job.tile,
            chunks_total: grid.chunks_per_tile(),
        });
        let side = grid.chunk_pixels as usize;
        let width = grid.tile_pixels as usize;
        let per_side = grid.chunks_per_side();
        let (cy0, cx0) = grid.first_chunk(cell);
        let year = job.year_index as u64;
        let tile_rows = grid.tile_pixels as usize;
        // GDAL handles of this tile: a worker holds one only while it decodes a window, so
        // there are never more than there are workers.
        let assembly = Assembly::default();
        // The tile's overview levels, made from its strips as they are sent.
        let pyramid = self
            .overviews
            .as_ref()
            .map(|o| TilePyramid::new(width, side, o.levels.clone(), o.fill, o.how));
        let cell_at = (cy0 / per_side, cx0 / per_side);
        let one = |w: usize| -> Result<(), TileError> {
            let reader = tile.handle()?;
            let y0 = w * window;
            let rows = window.min(tile_rows - y0);
            tile.started(w);
            let place = |sy: u64, strip: &[u8]| {
                // The first overview level is reduced chunk by chunk as the strip is cut,
                // while each chunk is in cache, when the pyramid can start from it.
                let reduce_first = pyramid.as_ref().filter(|p| p.takes_first_level());
                let first_level = self.send_strip(
                    job_index,
                    attempt,
                    [year, cy0 + sy, cx0],
                    strip,
                    per_side,
                    reduce_first,
                )?;
                let chunks = match (&pyramid, first_level) {
                    (Some(p), Some(rows)) => p.add_first_level(sy as usize, rows),
                    (Some(p), None) => p.add_strip(sy as usize, strip),
                    (None, _) => return Ok(()),
                };
                self.send_level_chunks(job_index, attempt, year, cell_at, chunks)
            };
            let (first, last) = (y0 / side, (y0 + rows - 1) / side);
            if window != side && reader.reads_blocks(y0, rows) {
                // A tiled source: its blocks are decoded straight into the chunk strips
                // their rows belong to; the worker that completes a strip sends it.
                let result =
                    self.read_into_strips(&reader, &assembly, strips, (y0, rows), (first, last));
                tile.finished(w);
                tile.give_back(reader);
                return result?.into_iter().try_for_each(|(sy, mut strip)| {
                    self.nodata_to_fill(&mut strip);
                    let r = place(sy as u64, &strip);
                    strips.give(strip);
                    r
                });
            }
            let mut buf = strips.take(rows * width);
            let read = reader.read_rows(y0, rows, &mut buf);
            tile.finished(w);
            tile.give_back(reader);
            if let Err(e) = read {
                strips.give(buf);
                return Err(e);
            }
            self.nodata_to_fill(&mut buf);
            let sent = if window == side {
                // The window is a chunk strip.
                place(w as u64, &buf)
            } else {
                // Hand each chunk strip the window's rows of it; a strip whose rows are all
                // there is cut and sent by the worker that completed it.
                (first..=last).try_for_each(|sy| {
                    let s0 = sy * side;
                    let (a, b) = (y0.max(s0), (y0 + rows).min(s0 + side));
                    let rows_of = &buf[(a - y0) * width..(b - y0) * width];
                    match assembly.fill(sy, (a - s0) * width, rows_of, side, width, strips) {
                        Some(strip) => {
                            let r = place(sy as u64, &strip);
                            strips.give(strip);
                            r
                        }
                        None => Ok(()),
                    }
                })
            };
            strips.give(buf);
            sent
        };
        // Each worker takes the next window in row order, so the read-ahead runs just in
        // front of them all; the first failure stops the others at their next window.
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        (0..self.threads.clamp(1, windows.max(1)))
            .into_par_iter()
            .try_for_each(|_| {
                loop {
                    if self.cancel.load(Ordering::SeqCst) {
                        return Err(TileError::Cancelled);
                    }
                    if failed.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    let w = next.fetch_add(1, Ordering::SeqCst);
                    if w >= windows {
                        return Ok(());
                    }
                    if let Err(e) = one(w) {
                        failed.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            })
    }

    /// The source's nodata pixels made the cube's fill value.
    fn nodata_to_fill(&self, pixels: &mut [u8]) {
        if let Some((nodata, fill)) = self.nodata {
            for p in pixels.iter_mut().filter(|p| **p == nodata) {
                *p = fill;
            }
        }
    }

    /// Decode rows `y0..y0 + rows` of a tiled source block by block into the chunk strips
    /// `first..=last` they belong to; returns the strips this window completed.
    fn read_into_strips(
        &self,
        reader: &TileReader,
        assembly: &Assembly,
        strips: &StripBuffers,
        (y0, rows): (usize, usize),
        (first, last): (usize, usize),
    ) -> Result<Vec<(usize, Vec<u8>)>, TileError> {
        let side = self.grid.chunk_pixels as usize;
        let width = self.grid.tile_pixels as usize;
        let slots = (first..=last)
            .map(|sy| assembly.slot(sy, side * width, strips).map(|s| (sy, s)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| reader.read_error(y0, rows, "a strip's lock was poisoned".into()))?;
        reader
            .read_blocks(y0, rows, |r0, h, x0, w, block, bw| {
                for (sy, slot) in &slots {
                    let s0 = sy * side;
                    let (a, b) = (r0.max(s0), (r0 + h).min(s0 + side));
                    if a >= b {
                        continue;
                    }
                    if let Ok(mut strip) = slot.strip.lock() {
                        for r in a..b {
                            let at = (r - s0) * width + x0;
                            let from = (r - r0) * bw;
                            strip[at..at + w].copy_from_slice(&block[from..from + w]);
                        }
                    }
                }
            })
            .map_err(|e| reader.read_error(y0, rows, e))?;
        Ok(slots
            .iter()
            .filter_map(|(sy, _)| {
                let s0 = sy * side;
                let n = (y0 + rows).min(s0 + side) - y0.max(s0);
                assembly.add_rows(*sy, n, side).map(|strip| (*sy, strip))
            })
            .collect())
    }

    /// Encode a tile's overview chunks in parallel and send them; `cell` is the tile's row
    /// and column in the grid.
    fn send_level_chunks(
        &self,
        job_index: usize,
        attempt: u32,
        year: u64,
        cell: (u64, u64),
        chunks: Vec<LevelChunk>,
    ) -> Result<(), TileError> {
        let Some(o) = &self.overviews else {
            return Ok(());
        };
        chunks.into_par_iter().try_for_each(|c| {
            let level = &o.levels[c.level - 1];
            let per_tile = (level.tile / level.chunk) as u64;
            let data = o.encoders[c.level - 1]
                .encode(&c.pixels)
                .map_err(|e| e.as_tile_error())?;
            self.tx
                .blocking_send(Msg::Chunk {
                    job: job_index,
                    attempt,
                    level: c.level,
                    coords: [year, cell.0 * per_tile + c.row, cell.1 * per_tile + c.col],
                    data,
                })
                .map_err(|_| TileError::Cancelled)
        })
    }

    /// Cut a chunk strip (`side` rows of the tile) into chunks, encode them in parallel and
    /// send them; `first` is the chunk index of the strip's first chunk. With `pyramid`, each
    /// chunk is also reduced 2×2 while it is in cache, and the strip's first overview level
    /// (`side / 2` rows of half the tile's width) is returned.
    fn send_strip(
        &self,
        job_index: usize,
        attempt: u32,
        first: [u64; 3],
        strip: &[u8],
        per_side: u64,
        pyramid: Option<&TilePyramid>,
    ) -> Result<Option<Vec<u8>>, TileError> {
        let side = self.grid.chunk_pixels as usize;
        let width = self.grid.tile_pixels as usize;
        let pieces = (0..per_side)
            .into_par_iter()
            .map(|sx| {
                let x0 = sx as usize * side;
                let (data, piece) = CHUNK.with_borrow_mut(|chunk| {
                    chunk.clear();
                    for row in strip.chunks_exact(width) {
                        chunk.extend_from_slice(&row[x0..x0 + side]);
                    }
                    let piece = pyramid.map(|p| p.reduce_chunk(chunk, side));
                    (self.encoder.encode(chunk), piece)
                });
                let data = data.map_err(|e| e.as_tile_error())?;
                self.tx
                    .blocking_send(Msg::Chunk {
                        job: job_index,
                        attempt,
                        level: 0,
                        coords: [first[0], first[1], first[2] + sx],
                        data,
                    })
                    .map_err(|_| TileError::Cancelled)?;
                Ok(piece)
            })
            .collect::<Result<Vec<_>, TileError>>()?;
        Ok(pyramid.map(|p| p.join_first_level(pieces.into_iter().flatten())))
    }
}

/// The overview levels a tile maps to whole chunks of: their geometry and encoders.
pub(super) struct TileOverviews {
    pub levels: Vec<TileLevel>,
    /// Encoder of each level (index 0: the first overview).
    pub encoders: Vec<ChunkEncoder>,
    pub fill: u8,
    pub how: Resampling,
}

impl TileOverviews {
    /// The tile levels of a cube, or `None` when it has none.
    pub fn of(layout: &crate::cube::Layout) -> Result<Option<Self>, crate::cube::CubeError> {
        let levels = layout.tile_levels();
        let (Some(o), false) = (layout.overviews, levels.is_empty()) else {
            return Ok(None);
        };
        Ok(Some(Self {
            encoders: (1..=levels.len())
                .map(|k| ChunkEncoder::for_level(layout, k))
                .collect::<Result<_, _>>()?,
            levels: levels.iter().filter_map(TileLevel::of).collect(),
            fill: layout.fill_value,
            how: o.resampling,
        }))
    }
}

type Opening = Result<OpenTile, TileError>;

fn open_panicked(location: &crate::source::TileLocation) -> TileError {
    TileError::Unreadable {
        path: location.to_string(),
        reason: "opening it panicked".into(),
    }
}

/// Chunk strips being put together from the windows that hold their rows. Each strip has
/// its own lock, so workers filling different rows of one strip copy in turn, and those
/// filling different strips never wait for each other.
#[derive(Default)]
struct Assembly(std::sync::Mutex<std::collections::HashMap<usize, Arc<Slot>>>);

/// A strip being filled, and how many of its rows are in.
struct Slot {
    strip: std::sync::Mutex<Vec<u8>>,
    rows: AtomicUsize,
}

impl Assembly {
    /// The strip `sy` (of `len` bytes), made from a spare buffer when it is new.
    fn slot(&self, sy: usize, len: usize, buffers: &StripBuffers) -> Option<Arc<Slot>> {
        let mut strips = self.0.lock().ok()?;
        Some(
            strips
                .entry(sy)
                .or_insert_with(|| {
                    Arc::new(Slot {
                        strip: std::sync::Mutex::new(buffers.take(len)),
                        rows: AtomicUsize::new(0),
                    })
                })
                .clone(),
        )
    }

    /// `n` more rows of strip `sy` are in; returns the strip once all its `side` rows are.
    fn add_rows(&self, sy: usize, n: usize, side: usize) -> Option<Vec<u8>> {
        let mut strips = self.0.lock().ok()?;
        let slot = strips.get(&sy)?;
        if slot.rows.fetch_add(n, Ordering::SeqCst) + n < side {
            return None;
        }
        let slot = strips.remove(&sy)?;
        let strip = std::mem::take(&mut *slot.strip.lock().ok()?);
        Some(strip)
    }

    /// Copy `rows` (whole rows) into strip `sy` at byte `at`; returns the strip once all its
    /// `side` rows are in.
    fn fill(
        &self,
        sy: usize,
        at: usize,
        rows: &[u8],
        side: usize,
        width: usize,
        buffers: &StripBuffers,
    ) -> Option<Vec<u8>> {
        let slot = self.slot(sy, side * width, buffers)?;
        slot.strip.lock().ok()?[at..at + rows.len()].copy_from_slice(rows);
        self.add_rows(sy, rows.len() / width, side)
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
pub(crate) const WORKER_NICE: libc::c_int = 5;

/// Exponential backoff with jitter: `base * 2^attempt`, scaled by 0.75..1.25, so every
/// delay of attempt n+1 is longer than any of attempt n (1.5 > 1.25).
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    backoff_with(base, attempt, (nanos % 1000) as f64 / 1000.0)
}

/// [`backoff`] for a given jitter draw in `0..1`.
fn backoff_with(base: Duration, attempt: u32, draw: f64) -> Duration {
    let jitter = 0.75 + 0.5 * draw.clamp(0.0, 0.999);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_are_assembled_from_the_windows_that_hold_their_rows() {
        let (side, width) = (4, 3);
        let buffers = StripBuffers::default();
        let a = Assembly::default();
        let rows = |v: u8, n: usize| vec![v; n * width];
        // Strip 0 gets its last row first, then its first three.
        assert!(
            a.fill(0, 3 * width, &rows(9, 1), side, width, &buffers)
                .is_none()
        );
        let strip = a
            .fill(0, 0, &rows(1, 3), side, width, &buffers)
            .expect("complete");
        assert_eq!(strip, [rows(1, 3), rows(9, 1)].concat());
        assert!(
            a.0.lock().unwrap().is_empty(),
            "a complete strip is handed over"
        );
    }

    #[test]
    fn backoff_delays_of_each_attempt_all_exceed_the_previous_ones() {
        let base = Duration::from_millis(100);
        let mut previous_max = Duration::ZERO;
        for attempt in 0..6 {
            let min = backoff_with(base, attempt, 0.0);
            let max = backoff_with(base, attempt, 0.999);
            assert!(min < max, "jitter spreads the delays of attempt {attempt}");
            assert!(
                min > previous_max,
                "attempt {attempt}: shortest {min:?} not above the previous longest {previous_max:?}"
            );
            previous_max = max;
            // Sampled delays stay inside the bounds.
            for _ in 0..50 {
                let d = backoff(base, attempt);
                assert!(
                    d >= min && d <= max,
                    "{attempt}: {d:?} outside {min:?}..{max:?}"
                );
            }
        }
    }
}
