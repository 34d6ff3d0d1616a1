//! The reader stage: tiles one after another on a thread of its own, the strips of each read,
//! cut into chunks and encoded in parallel on a rayon pool.
//!
//! Invariants: each worker holds at most one GDAL handle and one strip buffer, both reused
//! from strip to strip and tile to tile; a tile ends with exactly one [`Msg::End`] per
//! attempt, after all of that attempt's chunks were sent; a cancelled tile stops at its next
//! strip. Workers run a little below normal priority.

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
        // GDAL handles of this tile: a worker holds one only while it decodes a strip, so
        // there are never more than there are workers.
        let readers = std::sync::Mutex::new(vec![reader]);
        (0..per_side).into_par_iter().try_for_each(|sy| {
            if self.cancel.load(Ordering::SeqCst) {
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
                    self.encoder.encode(chunk)
                });
                let data = data.map_err(|e| TileError::write(&e))?;
                self.tx
                    .blocking_send(Msg::Chunk {
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
