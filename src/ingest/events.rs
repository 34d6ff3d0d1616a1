//! Progress events the engine posts while it works.

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

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
    /// The ingest is over.
    Finished {
        written: usize,
        failed: usize,
        cancelled: bool,
    },
}

/// Where events go; sending never blocks and a closed receiver is ignored.
#[derive(Debug, Clone, Default)]
pub struct EventSink(Option<UnboundedSender<Event>>);

impl EventSink {
    pub fn new(tx: UnboundedSender<Event>) -> Self {
        Self(Some(tx))
    }

    /// A sink that drops every event.
    pub fn none() -> Self {
        Self(None)
    }

    pub fn send(&self, event: Event) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(event);
        }
    }
}
