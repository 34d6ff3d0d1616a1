//! Progress events the engine posts while it works, and the sink that carries them.
//!
//! Invariant: sending never blocks the engine and never fails it; a front end that has gone
//! away simply stops receiving.

use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use super::journal::Journal;

use crate::grid::TileName;

/// Something that happened during an ingest.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The ingest begins.
    Started { tiles: usize, threads: usize },
    /// A tile passed validation and its strips are being read.
    TileStarted {
        year: i32,
        tile: TileName,
        chunks_total: u64,
    },
    /// Chunks of a tile uploaded so far.
    TileProgress {
        year: i32,
        tile: TileName,
        chunks_done: u64,
        chunks_total: u64,
        bytes: u64,
    },
    /// A tile is fully uploaded and recorded in the session (not yet committed).
    TileWritten {
        year: i32,
        tile: TileName,
        chunks_stored: u64,
        bytes: u64,
        pixel_bytes: u64,
    },
    /// A tile failed; nothing of it is recorded.
    TileFailed {
        year: i32,
        tile: TileName,
        error: String,
        transient: bool,
        attempts: u32,
    },
    /// A transient failure is being retried.
    TileRetry {
        year: i32,
        tile: TileName,
        attempt: u32,
        error: String,
    },
    /// A commit landed.
    Committed {
        snapshot: String,
        message: String,
        tiles: usize,
    },
    /// A staged session's part was saved (stage mode: nothing is committed to the branch).
    Staged { part: String, tiles: usize },
    /// Something the operator should know that stops nothing (e.g. a journal problem).
    Warning { message: String },
    /// The ingest is over.
    Finished {
        written: usize,
        failed: usize,
        cancelled: bool,
    },
}

impl Event {
    /// The event of a commit that landed.
    pub fn committed(c: &crate::cube::Committed) -> Self {
        if c.staged {
            return Self::Staged {
                part: c.snapshot.clone(),
                tiles: c.tile_count(),
            };
        }
        Self::Committed {
            snapshot: c.snapshot.clone(),
            message: c.message.clone(),
            tiles: c.tile_count(),
        }
    }
}

/// Where events go; sending never blocks and a closed receiver is ignored. A sink may keep
/// the failure journal from the events it carries ([`EventSink::journaled`]).
#[derive(Debug, Clone, Default)]
pub struct EventSink {
    tx: Option<UnboundedSender<Event>>,
    journal: Option<Arc<JournalSink>>,
}

impl EventSink {
    pub fn new(tx: UnboundedSender<Event>) -> Self {
        Self {
            tx: Some(tx),
            journal: None,
        }
    }

    /// A sink that drops every event.
    pub fn none() -> Self {
        Self::default()
    }

    /// This sink, also keeping the failure journal of a cube (its key) in the journal
    /// directory `dir`.
    pub fn journaled(mut self, dir: PathBuf, repo_key: &str) -> Self {
        self.journal = Some(Arc::new(JournalSink::new(dir, repo_key)));
        self
    }

    pub fn send(&self, event: Event) {
        if let Some(j) = &self.journal
            && let Some(message) = j.record(&event)
            && let Some(tx) = &self.tx
        {
            let _ = tx.send(Event::Warning { message });
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }
}

/// Keeps a repository's journal from the ingest's events: a failed tile is entered, a
/// written one cleared. Each change is applied to the file as it is now (another process
/// may keep the same journal), under a lock within this process.
#[derive(Debug)]
pub struct JournalSink {
    dir: PathBuf,
    repo_key: String,
    lock: std::sync::Mutex<()>,
}

impl JournalSink {
    /// The sink of the journal of the cube `repo_key` in the journal directory `dir`.
    pub fn new(dir: PathBuf, repo_key: &str) -> Self {
        Self {
            dir,
            repo_key: repo_key.to_string(),
            lock: std::sync::Mutex::new(()),
        }
    }

    /// Apply one event; returns what went wrong, if anything, for the caller to report.
    pub fn record(&self, event: &Event) -> Option<String> {
        let change = match event {
            Event::TileFailed {
                year,
                tile,
                error,
                attempts,
                ..
            } => (*year, *tile, Some((error.as_str(), *attempts))),
            Event::TileWritten { year, tile, .. } => (*year, *tile, None),
            _ => return None,
        };
        let _guard = self.lock.lock().ok()?;
        let mut warning = None;
        let mut journal = Journal::load_or_report(&self.dir, &self.repo_key, |w| warning = Some(w));
        let changed = match change {
            (year, tile, Some((reason, attempts))) => {
                journal.fail(year, tile, reason, attempts);
                true
            }
            (year, tile, None) => journal.clear(year, tile),
        };
        if changed && let Err(e) = journal.save(&self.dir) {
            warning = Some(crate::error_chain(&e));
        }
        warning
    }
}
