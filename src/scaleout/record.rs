//! The progress record of one shard: a small JSON object next to the plan
//! (`shards/NNNN.json`), replaced whole by the task as it works and read by `status --plan`
//! and the console.
//!
//! Invariants: a record is written at most about once a second, and at once when a commit or
//! stage lands, a tile fails or the shard ends, so what it says landed did land; a running
//! task rewrites it at least every [`HEARTBEAT`], so a record that has not changed for
//! [`STALE_AFTER`] belongs to a task that is gone; a new attempt of a shard replaces the
//! record of the earlier one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Place, ScaleError};
use crate::ingest::Event;

/// How often a running task rewrites its record even when nothing happened.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// A running record older than this belongs to a task that stopped without a word (killed,
/// its node lost).
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// Least time between two writes of a record, unless something landed or failed.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Where a shard stands, in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardState {
    Running,
    /// Every job written (and landed).
    Done,
    /// Ended with tiles that failed.
    Failed,
    /// Stopped by a signal (scancel, a node drain); finished tiles landed.
    Cancelled,
}

impl ShardState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A tile that failed in a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFailure {
    pub year: i32,
    pub tile: String,
    pub error: String,
    pub attempts: u32,
}

/// One shard's progress, as its task last wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub plan: String,
    pub shard: usize,
    /// This attempt's id (a re-run shard has a new one).
    pub attempt: String,
    pub host: String,
    pub pid: u32,
    /// Where the task's index came from ("SLURM_ARRAY_TASK_ID=2 (Slurm)", "--shard 2").
    pub task: String,
    /// "checkpoint" (commits to the branch) or "stage".
    pub mode: String,
    /// The stage location, in stage mode.
    #[serde(default)]
    pub stage: Option<String>,
    pub state: ShardState,
    pub started: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// Jobs of the shard.
    pub jobs: usize,
    /// Jobs an earlier attempt had already landed, not written again.
    pub skipped: usize,
    /// Tiles written by this attempt.
    pub written: usize,
    /// Tiles this attempt landed: committed to the branch, or staged.
    pub landed: usize,
    pub failed: Vec<RecordFailure>,
    /// Tiles being written now ("2000/10N_010E").
    pub current: Vec<String>,
    /// Encoded bytes uploaded.
    pub bytes: u64,
}

/// The record's object name in the plan's place.
pub fn record_name(shard: usize) -> String {
    format!("shards/{shard:04}.json")
}

impl ShardRecord {
    /// Whether the task writing a running record is gone (no word for [`STALE_AFTER`]).
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        self.state == ShardState::Running
            && now
                .signed_duration_since(self.updated)
                .to_std()
                .unwrap_or_default()
                > STALE_AFTER
    }

    /// The record of a shard in the plan's place, if its task wrote one.
    pub async fn load(place: &Place, shard: usize) -> Result<Option<Self>, ScaleError> {
        let name = record_name(shard);
        let Some(bytes) = place.get(&name).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ScaleError::bad(place.address(&name), format!("not a shard record: {e}")))
    }
}

/// This machine's host name.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Keeps a shard's record from the ingest's events and writes it to the plan's place.
pub struct Recorder {
    place: Arc<Place>,
    record: ShardRecord,
    current: BTreeSet<String>,
    last_write: Option<Instant>,
    dirty: bool,
}

impl Recorder {
    pub fn new(place: Arc<Place>, record: ShardRecord) -> Self {
        Self {
            place,
            record,
            current: BTreeSet::new(),
            last_write: None,
            dirty: true,
        }
    }

    pub fn record(&self) -> &ShardRecord {
        &self.record
    }

    /// Take one event; `true` when the record should be written now (something landed or
    /// failed).
    pub fn on_event(&mut self, ev: &Event) -> bool {
        self.dirty = true;
        match ev {
            Event::TileStarted { year, tile, .. } => {
                self.current.insert(format!("{year}/{tile}"));
                false
            }
            Event::TileWritten {
                year, tile, bytes, ..
            } => {
                self.current.remove(&format!("{year}/{tile}"));
                self.record.written += 1;
                self.record.bytes += bytes;
                false
            }
            Event::TileFailed {
                year,
                tile,
                error,
                attempts,
                ..
            } => {
                self.current.remove(&format!("{year}/{tile}"));
                self.record.failed.push(RecordFailure {
                    year: *year,
                    tile: tile.to_string(),
                    error: error.clone(),
                    attempts: *attempts,
                });
                true
            }
            Event::Committed { tiles, .. } | Event::Staged { tiles, .. } => {
                self.record.landed += tiles;
                true
            }
            _ => false,
        }
    }

    /// Write the record if it changed and it is time (`now`: whatever the last write), or
    /// if the heartbeat is due.
    pub async fn flush(&mut self, now: bool) -> Result<(), ScaleError> {
        let since = self.last_write.map(|t| t.elapsed());
        let due = match since {
            None => true,
            Some(s) => s >= HEARTBEAT || (self.dirty && (now || s >= MIN_INTERVAL)),
        };
        if !due {
            return Ok(());
        }
        self.record.current = self.current.iter().cloned().collect();
        self.record.updated = Utc::now();
        let bytes = serde_json::to_vec_pretty(&self.record)
            .map_err(|e| ScaleError::bad("shard record", e.to_string()))?;
        self.place
            .put(&record_name(self.record.shard), Bytes::from(bytes))
            .await?;
        self.last_write = Some(Instant::now());
        self.dirty = false;
        Ok(())
    }

    /// Write the record's final state.
    pub async fn finish(&mut self, state: ShardState) -> Result<(), ScaleError> {
        self.record.state = state;
        self.current.clear();
        self.dirty = true;
        self.flush(true).await
    }
}
