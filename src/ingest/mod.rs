//! Ingest: turning tiles into committed chunks of the cube.
//!
//! `plan` picks the tiles to write; `pipeline` reads and encodes them on a rayon pool (CPU),
//! uploads them on tokio (I/O), with a bounded channel between the two, and commits through
//! the cube's [`crate::cube::WriteSession`]; progress is reported as [`Event`]s on a channel,
//! and the failure journal is kept from those same events, so front ends stay thin.

pub mod changed;
mod events;
mod journal;
mod pipeline;
mod plan;
mod sizes;

pub use changed::{SourceCheck, check_sources};
pub use events::JournalSink;
pub use events::{Event, EventSink};
pub use journal::{Journal, JournalEntry, JournalError, journal_path};
pub use pipeline::{
    DEFAULT_COMMIT_INTERVAL, DEFAULT_COMMIT_REFS, DEFAULT_READ_AHEAD, DEFAULT_READ_AHEAD_BYTES,
    IngestOptions, IngestReport, TileFailure, ingest, ingest_into,
};
pub use plan::{Plan, Selection, TileJob, plan};
pub use sizes::source_sizes;
