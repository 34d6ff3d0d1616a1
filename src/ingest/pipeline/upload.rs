//! The upload stage, on tokio: encoded chunks are uploaded with bounded concurrency; a tile
//! whose chunks are all uploaded, and whose reader said it ended well, is recorded in the
//! write session; checkpoints commit on a count of tiles, a count of chunk references held
//! by the session, or time.
//!
//! Invariants: at most `max_uploads` uploads run at once, and no message is taken from the
//! reader while that many run (so the bounded channel holds the reader back); a tile is
//! recorded only when its reader ended it and none of its uploads is still running or
//! failed; a failed or retried attempt's uploaded chunks are referenced by nothing; a write
//! the storage refuses for every tile alike (permission, read-only, full) stops the ingest at
//! the first one instead of failing every tile in turn.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use icechunk::format::manifest::ChunkPayload;
use tokio::sync::mpsc;

use super::{IngestOptions, IngestReport, Msg, TileFailure};
use crate::cube::{CubeError, TileChunks, WriteSession};
use crate::grid::Grid;
use crate::ingest::events::{Event, EventSink};
use crate::ingest::plan::TileJob;
use crate::source::TileError;

/// One finished upload: the tile attempt it belongs to, its chunk, and the payload.
type Uploaded = (
    (usize, u32),
    (usize, [u64; 3]),
    Result<Option<(ChunkPayload, u64)>, CubeError>,
);

/// A tile attempt being uploaded.
#[derive(Default)]
struct InProgress {
    chunks: TileChunks,
    /// Uploads still running.
    running: usize,
    done: u64,
    /// The reader's word on the attempt, and whether it will try again.
    ended: Option<(Result<(), TileError>, bool)>,
    /// What its reader read (the source's size and version).
    provenance: Option<crate::source::Provenance>,
    upload_error: Option<CubeError>,
}

/// The tokio side of an ingest.
/// Tiles in a row that do not fit the cube, none written, that stop a write: enough that
/// one bad tile among good ones is not taken for a source of another resolution.
const MISFITS_TO_STOP: usize = 3;

pub(super) struct Uploader {
    session: Arc<WriteSession>,
    jobs: Arc<Vec<TileJob>>,
    options: IngestOptions,
    events: EventSink,
    per_side: u64,
    chunks_per_tile: u64,
    pixel_bytes: u64,
    tiles: HashMap<(usize, u32), InProgress>,
    report: IngestReport,
    uncommitted: usize,
    last_commit: Instant,
    /// Set to stop the reader (the ingest's cancel flag).
    cancel: Arc<AtomicBool>,
    /// The storage's refusal that stopped the ingest.
    refused: Option<CubeError>,
    /// Tiles that told the source does not fit the cube, while none was written.
    misfits: usize,
}

impl Uploader {
    pub fn new(
        session: Arc<WriteSession>,
        jobs: Arc<Vec<TileJob>>,
        options: &IngestOptions,
        events: EventSink,
        grid: &Grid,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        Self {
            session,
            jobs,
            options: options.clone(),
            events,
            per_side: grid.chunks_per_side(),
            chunks_per_tile: grid.chunks_per_tile(),
            pixel_bytes: grid.tile_pixels * grid.tile_pixels,
            tiles: HashMap::new(),
            report: IngestReport::default(),
            uncommitted: 0,
            last_commit: Instant::now(),
            cancel,
            refused: None,
            misfits: 0,
        }
    }

    /// Take the reader's messages until it closes the channel and every upload is done.
    /// Returns the report, and the storage's refusal if one stopped the ingest.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
    ) -> Result<(IngestReport, Option<CubeError>), CubeError> {
        let mut uploads: FuturesUnordered<tokio::task::JoinHandle<Uploaded>> =
            FuturesUnordered::new();
        let max_uploads = self.options.max_uploads.max(1);
        let mut channel_open = true;
        while channel_open || !uploads.is_empty() {
            let touched = tokio::select! {
                msg = rx.recv(), if channel_open && uploads.len() < max_uploads => match msg {
                    None => {
                        channel_open = false;
                        None
                    }
                    Some(Msg::Chunk { job, attempt, level, coords, data }) => {
                        self.tiles.entry((job, attempt)).or_default().running += 1;
                        let session = Arc::clone(&self.session);
                        uploads.push(tokio::spawn(async move {
                            let result = match session.prepare_upload(level, coords).await {
                                Ok(upload) => upload.run(data).await,
                                Err(e) => Err(e),
                            };
                            ((job, attempt), (level, coords), result)
                        }));
                        None
                    }
                    Some(Msg::End { job, attempt, result, retrying, provenance }) => {
                        let t = self.tiles.entry((job, attempt)).or_default();
                        t.ended = Some((result, retrying));
                        t.provenance = provenance;
                        Some((job, attempt))
                    }
                },
                Some(joined) = uploads.next(), if !uploads.is_empty() => {
                    let (key, coords, result) = joined
                        .map_err(|source| CubeError::Task { what: "uploading a chunk", source })?;
                    self.uploaded(key, coords, result);
                    Some(key)
                }
            };
            if let Some(key) = touched {
                self.finish_if_ready(key).await?;
            }
        }
        Ok((self.report, self.refused))
    }

    /// Note one finished upload and report the tile's progress (in level-0 chunks; the
    /// overview chunks written with the tile ride along).
    fn uploaded(
        &mut self,
        key: (usize, u32),
        (level, coords): (usize, [u64; 3]),
        result: Result<Option<(ChunkPayload, u64)>, CubeError>,
    ) {
        let t = self.tiles.entry(key).or_default();
        t.running -= 1;
        match result {
            Ok(payload) => {
                t.chunks.push_level(level, coords, payload);
                if level > 0 {
                    return;
                }
                t.done += 1;
                if t.done.is_multiple_of(self.per_side) || t.done == self.chunks_per_tile {
                    let j = &self.jobs[key.0];
                    self.events.send(Event::TileProgress {
                        year: j.year,
                        tile: j.tile,
                        chunks_done: t.done,
                        chunks_total: self.chunks_per_tile,
                        bytes: t.chunks.bytes,
                    });
                }
            }
            Err(e) if e.is_storage_refusal() && self.refused.is_none() => {
                // Every other tile would meet the same refusal: stop the reader, keep the
                // cause for the ingest's error, and fail this tile with its text.
                let j = &self.jobs[key.0];
                t.upload_error.get_or_insert(CubeError::icechunk(
                    format!("writing the chunks of {}/{}", j.year, j.tile),
                    crate::error_chain(&e),
                ));
                self.cancel.store(true, Ordering::SeqCst);
                self.refused = Some(CubeError::StorageRefused {
                    what: format!(
                        "the repository's storage refused a chunk of {}/{}; the write stopped",
                        j.year, j.tile
                    ),
                    source: Box::new(e),
                });
            }
            Err(e) => {
                t.upload_error.get_or_insert(e);
            }
        }
    }

    /// A tile attempt whose reader ended and whose uploads are all done is recorded (or
    /// failed); then a checkpoint commits if one is due.
    async fn finish_if_ready(&mut self, key: (usize, u32)) -> Result<(), CubeError> {
        let ready = self
            .tiles
            .get(&key)
            .is_some_and(|t| t.ended.is_some() && t.running == 0);
        if !ready {
            return Ok(());
        }
        let Some(t) = self.tiles.remove(&key) else {
            return Ok(());
        };
        let job = self.jobs[key.0].clone();
        let (result, retrying) = t.ended.unwrap_or((Err(TileError::Cancelled), false));
        // An upload that failed fails the tile, even when its reader then stopped because
        // that very failure cancelled the write (a storage refusal).
        let result = match (result, t.upload_error) {
            (Ok(()) | Err(TileError::Cancelled), Some(e)) => Err(e.as_tile_error()),
            (r, _) => r,
        };
        match result {
            Ok(()) => {
                let bytes = t.chunks.bytes;
                match self
                    .session
                    .record_tile(job.year, job.tile, t.chunks, t.provenance)
                    .await
                {
                    Ok(stored) => {
                        self.report.bytes += bytes;
                        self.report
                            .written
                            .entry(job.year)
                            .or_default()
                            .insert(job.tile, stored);
                        self.uncommitted += 1;
                        self.events.send(Event::TileWritten {
                            year: job.year,
                            tile: job.tile,
                            chunks_stored: stored,
                            bytes,
                            pixel_bytes: self.pixel_bytes,
                        });
                    }
                    Err(e) => self.fail(&job, &e.as_tile_error(), key.1),
                }
            }
            Err(_) if retrying => {}
            Err(TileError::Cancelled) => self.report.cancelled = true,
            Err(e) => self.fail(&job, &e, key.1),
        }
        self.checkpoint_if_due().await
    }

    async fn checkpoint_if_due(&mut self) -> Result<(), CubeError> {
        // The repository removed under the write: it stops here, at the end of a tile,
        // writing nothing more there.
        if self.refused.is_none()
            && let Some(e) = self.session.repository_gone().await
        {
            self.cancel.store(true, Ordering::SeqCst);
            self.refused = Some(e);
            return Ok(());
        }
        let o = &self.options;
        let due = o.commit
            && self.refused.is_none()
            && self.uncommitted > 0
            && ((o.commit_every > 0 && self.uncommitted >= o.commit_every)
                || (o.commit_refs > 0 && self.session.pending_refs() >= o.commit_refs as u64)
                || o.commit_interval
                    .is_some_and(|d| self.last_commit.elapsed() >= d));
        if !due {
            return Ok(());
        }
        match self.session.commit(None).await {
            Ok(Some(c)) => {
                self.events.send(Event::committed(&c));
                self.report.commits.push(c.snapshot);
            }
            Ok(None) => {}
            // The storage failed past its retries: the session is as before the commit,
            // its tiles wait for the next checkpoint (or the final commit).
            Err(e) if e.is_transient() => {
                let message = format!(
                    "a checkpoint commit failed ({}); its {} stay in the session for the next commit",
                    crate::error_chain(&e),
                    crate::text::plural(self.uncommitted, "tile")
                );
                log::warn!("{message}");
                self.events.send(Event::Warning { message });
                self.last_commit = Instant::now();
                return Ok(());
            }
            // The commit cannot land (the arrays or the branch changed under the write, its
            // announcement lapsed): the write stops; what landed before is reported.
            Err(e) => {
                self.cancel.store(true, Ordering::SeqCst);
                self.refused.get_or_insert(e);
                return Ok(());
            }
        }
        self.uncommitted = 0;
        self.last_commit = Instant::now();
        Ok(())
    }

    fn fail(&mut self, job: &TileJob, e: &TileError, attempt: u32) {
        // Tiles read before the stop for a source that does not fit meet the same misfit:
        // the first one tells it; they are not failed one by one.
        if e.is_cube_wide() && matches!(self.refused, Some(CubeError::SourceDoesNotFit { .. })) {
            return;
        }
        let failure = TileFailure {
            year: job.year,
            tile: job.tile,
            error: e.to_string(),
            transient: e.is_transient(),
            attempts: attempt + 1,
        };
        log::warn!("{failure}");
        self.events.send(Event::TileFailed {
            year: job.year,
            tile: job.tile,
            error: failure.error.clone(),
            transient: failure.transient,
            attempts: failure.attempts,
        });
        // Tiles that tell the source does not fit the cube, and none written: every other
        // would fail alike, so the write stops at the [`MISFITS_TO_STOP`]th instead of failing
        // them one by one. One such tile among tiles that fit fails alone.
        if e.is_cube_wide() && self.report.written.is_empty() {
            self.misfits += 1;
            if self.misfits >= MISFITS_TO_STOP && self.refused.is_none() {
                self.cancel.store(true, Ordering::SeqCst);
                self.refused = Some(CubeError::SourceDoesNotFit {
                    tile: format!("{}/{}", job.year, job.tile),
                    reason: failure.error.clone(),
                    tiles: self.misfits,
                });
            }
        }
        self.report.failed.push(failure);
    }
}
