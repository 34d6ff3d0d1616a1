//! Ingest: turning tiles into committed chunks of the cube.
//!
//! `plan` picks the tiles to write; `pipeline` reads and encodes them on a rayon pool (CPU),
//! uploads and commits on tokio (I/O), with a bounded channel between the two; progress is
//! reported as [`Event`]s on a channel, so front ends stay thin.

mod events;
mod journal;
mod pipeline;
mod plan;

pub use events::{Event, EventSink};
pub use journal::{Journal, JournalEntry};
pub use pipeline::{
    DEFAULT_COMMIT_INTERVAL, IngestOptions, IngestReport, TileFailure, WriteSession,
    commit_message, commit_tiles, commit_tiles_with_message, ingest, ingest_into,
};
pub use plan::{Plan, Selection, TileJob, plan};
