//! The reader stage: tiles one after another on a thread of its own, the strips of each read,
//! cut into chunks and encoded in parallel on a rayon pool.
//!
//! Reads follow the source's layout: a tile is read in windows of whole source blocks (strips
//! or the tiles of a COG), each window decoded once by one worker. When the blocks' rows
//! divide the chunk side, a window is a chunk strip; otherwise (512-row COG tiles under
//! 1000-row chunks, say) windows are cut at block rows and their rows are assembled into chunk
//! strips, so no block is decoded twice.
//!
//! Invariants: each worker holds at most one GDAL handle and one window buffer, reused from
//! window to window and tile to tile, and at most one strip per worker (plus one) waits for
//! rows from a neighbouring window; a tile ends with exactly one [`Msg::End`] per attempt,
//! after all of that attempt's chunks were sent; a cancelled tile stops at its next window.
//! Workers run a little below normal priority.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rayon::prelude::*;
use tokio::sync::mpsc;

use super::{IngestOptions, Msg};
use crate::cube::ChunkEncoder;
use crate::grid::Grid;
use crate::ingest::events::{Event, EventSink};
use crate::ingest::plan::TileJob;
use crate::source::{TileError, TileReader};

/// Everything the reader needs, moved onto its thread.
pub(super) struct Reader {
    pub jobs: Arc<Vec<TileJob>>,
    pub grid: Grid,
    pub encoder: Arc<ChunkEncoder>,
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
                    });
                }
                return;
            }
        };
        let attempts = self.options.attempts.max(1);
        let strips = StripBuffers::default();
        for (i, job) in self.jobs.iter().enumerate() {
            for attempt in 0..attempts {
                if self.cancel.load(Ordering::SeqCst) {
                    let _ = self.tx.blocking_send(Msg::End {
                        job: i,
                        attempt,
                        result: Err(TileError::Cancelled),
                        retrying: false,
                    });
                    break;
                }
                let result = pool.install(|| self.read_tile(i, attempt, job, &strips));
                let retrying =
                    matches!(&result, Err(e) if e.is_transient()) && attempt + 1 < attempts;
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
                };
                if self.tx.blocking_send(end).is_err() {
                    return;
                }
                if !retrying {
                    break;
                }
                std::thread::sleep(backoff(self.options.retry_delay, attempt));
                TileReader::forget_cached(&job.path);
            }
        }
    }

    /// One attempt at one tile: validate, then strips in parallel.
    fn read_tile(
        &self,
        job_index: usize,
        attempt: u32,
        job: &TileJob,
        strips: &StripBuffers,
    ) -> Result<(), TileError> {
        let grid = &self.grid;
        let (reader, cell) = TileReader::open(&job.path, grid, job.tile)?;
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
        // GDAL handles of this tile: a worker holds one only while it decodes a window, so
        // there are never more than there are workers.
        let tile_rows = grid.tile_pixels as usize;
        let window = window_rows(side, reader.block_rows());
        let windows = tile_rows.div_ceil(window);
        let readers = std::sync::Mutex::new(vec![reader]);
        let assembly = Assembly::default();
        (0..windows).into_par_iter().try_for_each(|w| {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(TileError::Cancelled);
            }
            let reader = readers.lock().ok().and_then(|mut r| r.pop());
            let reader = match reader {
                Some(r) => r,
                None => TileReader::reopen(&job.path)?,
            };
            let y0 = w * window;
            let rows = window.min(tile_rows - y0);
            let mut buf = strips.take(rows * width);
            let read = reader.read_rows(y0, rows, &mut buf);
            if let Ok(mut r) = readers.lock() {
                r.push(reader);
            }
            if let Err(e) = read {
                strips.give(buf);
                return Err(e);
            }
            let place = |sy: u64, strip: &[u8]| {
                self.send_strip(job_index, attempt, [year, cy0 + sy, cx0], strip, per_side)
            };
            let sent = if window == side {
                // The window is a chunk strip.
                place(w as u64, &buf)
            } else {
                // Hand each chunk strip the window's rows of it; a strip whose rows are all
                // there is cut and sent by the worker that completed it.
                let (first, last) = (y0 / side, (y0 + rows - 1) / side);
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
        })
    }

    /// Cut a chunk strip (`side` rows of the tile) into chunks, encode them in parallel and
    /// send them; `first` is the chunk index of the strip's first chunk.
    fn send_strip(
        &self,
        job_index: usize,
        attempt: u32,
        first: [u64; 3],
        strip: &[u8],
        per_side: u64,
    ) -> Result<(), TileError> {
        let side = self.grid.chunk_pixels as usize;
        let width = self.grid.tile_pixels as usize;
        (0..per_side).into_par_iter().try_for_each(|sx| {
            let x0 = sx as usize * side;
            let data = CHUNK.with_borrow_mut(|chunk| {
                chunk.clear();
                for row in strip.chunks_exact(width) {
                    chunk.extend_from_slice(&row[x0..x0 + side]);
                }
                self.encoder.encode(chunk)
            });
            let data = data.map_err(|e| TileError::write(&e))?;
            self.tx
                .blocking_send(Msg::Chunk {
                    job: job_index,
                    attempt,
                    coords: [first[0], first[1], first[2] + sx],
                    data,
                })
                .map_err(|_| TileError::Cancelled)
        })
    }
}

/// Rows of a read window: the chunk side when the source's blocks divide it (or are too tall
/// to follow), else whole blocks: as many as fit in a chunk side, at least one.
fn window_rows(chunk: usize, block: usize) -> usize {
    if chunk.is_multiple_of(block) || block > 4 * chunk {
        chunk
    } else {
        (chunk / block).max(1) * block
    }
}

/// Chunk strips being put together from the windows that hold their rows.
#[derive(Default)]
struct Assembly(std::sync::Mutex<std::collections::HashMap<usize, (Vec<u8>, usize)>>);

impl Assembly {
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
        let mut strips = self.0.lock().ok()?;
        let (strip, filled) = strips
            .entry(sy)
            .or_insert_with(|| (buffers.take(side * width), 0));
        strip[at..at + rows.len()].copy_from_slice(rows);
        *filled += rows.len() / width;
        if *filled < side {
            return None;
        }
        strips.remove(&sy).map(|(strip, _)| strip)
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
    fn windows_follow_the_source_blocks() {
        // Strips whose rows divide the chunk side: a window is a chunk strip.
        assert_eq!(window_rows(1000, 1), 1000);
        assert_eq!(window_rows(1000, 8), 1000);
        assert_eq!(window_rows(1000, 1000), 1000);
        // 512-row COG tiles under 1000-row chunks: one block row a window.
        assert_eq!(window_rows(1000, 512), 512);
        assert_eq!(window_rows(1000, 256), 768);
        assert_eq!(window_rows(100, 64), 64);
        // Blocks taller than a chunk: one block a window, unless far taller.
        assert_eq!(window_rows(1000, 1024), 1024);
        assert_eq!(window_rows(1000, 40_000), 1000);
    }

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
