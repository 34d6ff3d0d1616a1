//! The progress record of one shard: a small JSON object next to the plan
//! (`shards/NNNN.json`), replaced whole by the task as it works and read by `status --plan`
//! and the console.
//!
//! Invariants: a record is written at most about once a second, and at once when a commit or
//! stage lands, a tile fails or the shard ends, so what it says landed did land; a running
//! task rewrites it at least every [`HEARTBEAT`], so a record that has not changed for
//! [`STALE_AFTER`] belongs to a task that is gone; a new attempt of a shard replaces the
//! record of the earlier one.

use std::collections::BTreeMap;
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

/// Least time between two writes of a record, on a disk or remote storage alike, unless
/// something landed or failed: a plan's directory is often on a file system many nodes
/// share, whose server should not take a write per task four times a second.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Where a shard stands, in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardState {
    #[default]
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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
    /// Encoded bytes uploaded.
    pub bytes: u64,
    /// Reader/encoder threads of the task.
    #[serde(default)]
    pub threads: usize,
    /// Tiles not started yet, in the order they will be ("2000/10N_010E").
    #[serde(default)]
    pub queued: Vec<String>,
    /// Tiles being written now with their chunks done and in all.
    #[serde(default)]
    pub running: Vec<TileChunks>,
    /// Tiles this attempt wrote, landed or not yet ("2000/10N_010E").
    #[serde(default)]
    pub written_tiles: Vec<String>,
    /// Source pixel bytes of the tiles written (what MB/s is measured in).
    #[serde(default)]
    pub pixel_bytes: u64,
    /// Commits (or staged parts) this attempt made.
    #[serde(default)]
    pub commits: usize,
    /// What stopped the shard, when it failed as a whole (not a tile of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the shard last made progress (a chunk, a tile written or failed, a commit): the
    /// heartbeat moves `updated`, not this, so a task alive but stuck shows as stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressed: Option<DateTime<Utc>>,
}

/// A tile being written: its chunks done and in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileChunks {
    /// "2000/10N_010E".
    pub tile: String,
    pub done: u64,
    pub total: u64,
}

/// A tile as records name it: "2000/10N_010E".
pub fn tile_key(year: i32, tile: crate::grid::TileName) -> String {
    format!("{year}/{tile}")
}

/// The year and tile of a record's "2000/10N_010E", if it is one.
pub fn parse_tile_key(key: &str) -> Option<(i32, crate::grid::TileName)> {
    let (y, t) = key.split_once('/')?;
    Some((y.parse().ok()?, t.parse().ok()?))
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
            .map_err(|source| ScaleError::NotAShardRecord {
                address: place.address(&name),
                source,
            })
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
    /// Tiles being written: chunks done and in all.
    current: BTreeMap<String, (u64, u64)>,
    min_interval: Duration,
    last_write: Option<Instant>,
    dirty: bool,
}

impl Recorder {
    pub fn new(place: Arc<Place>, record: ShardRecord) -> Self {
        Self {
            place,
            record,
            current: BTreeMap::new(),
            min_interval: MIN_INTERVAL,
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
        if matches!(
            ev,
            Event::TileProgress { .. }
                | Event::TileWritten { .. }
                | Event::TileFailed { .. }
                | Event::Committed { .. }
                | Event::Staged { .. }
        ) {
            self.record.progressed = Some(Utc::now());
        }
        match ev {
            Event::Started { threads, .. } => {
                self.record.threads = *threads;
                false
            }
            Event::TileStarted {
                year,
                tile,
                chunks_total,
            } => {
                let key = tile_key(*year, *tile);
                self.record.queued.retain(|q| *q != key);
                self.current.insert(key, (0, *chunks_total));
                false
            }
            Event::TileProgress {
                year,
                tile,
                chunks_done,
                chunks_total,
                ..
            } => {
                self.current
                    .insert(tile_key(*year, *tile), (*chunks_done, *chunks_total));
                false
            }
            Event::TileWritten {
                year,
                tile,
                bytes,
                pixel_bytes,
                ..
            } => {
                let key = tile_key(*year, *tile);
                self.current.remove(&key);
                self.record.written += 1;
                self.record.bytes += bytes;
                self.record.pixel_bytes += pixel_bytes;
                self.record.written_tiles.push(key);
                false
            }
            Event::TileFailed {
                year,
                tile,
                error,
                attempts,
                ..
            } => {
                let key = tile_key(*year, *tile);
                self.current.remove(&key);
                self.record.queued.retain(|q| *q != key);
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
                self.record.commits += 1;
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
            Some(s) => s >= HEARTBEAT || (self.dirty && (now || s >= self.min_interval)),
        };
        if !due {
            return Ok(());
        }
        self.record.running = self
            .current
            .iter()
            .map(|(tile, &(done, total))| TileChunks {
                tile: tile.clone(),
                done,
                total,
            })
            .collect();
        self.record.updated = Utc::now();
        let bytes =
            serde_json::to_vec_pretty(&self.record).map_err(|source| ScaleError::Encode {
                what: "shard record".into(),
                source,
            })?;
        self.place
            .put(&record_name(self.record.shard), Bytes::from(bytes))
            .await?;
        self.last_write = Some(Instant::now());
        self.dirty = false;
        Ok(())
    }

    /// What this attempt landed is in no cube any more (the cube was laid out again, or the
    /// repository removed, under it): its landed count goes back to none.
    pub fn forget_landed(&mut self) {
        self.record.landed = 0;
        self.record.skipped = 0;
        self.dirty = true;
    }

    /// Record that the shard failed as a whole, and why.
    pub async fn fail(&mut self, reason: String) -> Result<(), ScaleError> {
        self.record.error = Some(reason);
        self.finish(ShardState::Failed).await
    }

    /// Write the record's final state.
    pub async fn finish(&mut self, state: ShardState) -> Result<(), ScaleError> {
        self.record.state = state;
        self.current.clear();
        self.record.queued.clear();
        self.dirty = true;
        self.flush(true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> crate::grid::TileName {
        s.parse().expect("tile")
    }

    #[tokio::test]
    async fn the_record_follows_the_tiles_from_queue_to_landed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let place = Arc::new(Place::Local(dir.path().to_path_buf()));
        let record = ShardRecord {
            jobs: 3,
            queued: ["80N_180W", "80N_170W", "80N_160W"]
                .iter()
                .map(|n| tile_key(2000, t(n)))
                .collect(),
            ..Default::default()
        };
        let mut r = Recorder::new(Arc::clone(&place), record);
        for ev in [
            Event::Started {
                tiles: 3,
                threads: 2,
            },
            Event::TileStarted {
                year: 2000,
                tile: t("80N_180W"),
                chunks_total: 16,
            },
            Event::TileProgress {
                year: 2000,
                tile: t("80N_180W"),
                chunks_done: 8,
                chunks_total: 16,
                bytes: 10,
            },
            Event::TileStarted {
                year: 2000,
                tile: t("80N_170W"),
                chunks_total: 16,
            },
            Event::TileWritten {
                year: 2000,
                tile: t("80N_170W"),
                chunks_stored: 16,
                bytes: 100,
                pixel_bytes: 1000,
            },
        ] {
            assert!(!r.on_event(&ev), "nothing landed yet");
        }
        r.flush(true).await.expect("flush");
        let on_disk = ShardRecord::load(&place, 0)
            .await
            .expect("load")
            .expect("record");
        assert_eq!(on_disk.threads, 2);
        assert_eq!(on_disk.queued, vec!["2000/80N_160W".to_string()]);
        assert_eq!(
            on_disk.running,
            vec![TileChunks {
                tile: "2000/80N_180W".into(),
                done: 8,
                total: 16
            }]
        );
        assert_eq!(on_disk.written_tiles, vec!["2000/80N_170W".to_string()]);
        assert_eq!((on_disk.pixel_bytes, on_disk.bytes), (1000, 100));
        let landed = Event::Committed {
            snapshot: "S".into(),
            message: "m".into(),
            tiles: 1,
        };
        assert!(r.on_event(&landed), "a commit is written at once");
        r.finish(ShardState::Cancelled).await.expect("finish");
        let end = ShardRecord::load(&place, 0)
            .await
            .expect("load")
            .expect("record");
        assert_eq!((end.landed, end.commits), (1, 1));
        assert_eq!(end.state, ShardState::Cancelled);
        assert!(end.queued.is_empty() && end.running.is_empty());
    }

    #[test]
    fn tile_keys_round_trip() {
        assert_eq!(
            parse_tile_key(&tile_key(2005, t("10S_020E"))),
            Some((2005, t("10S_020E")))
        );
        assert_eq!(parse_tile_key("2005-10S_020E"), None);
        assert_eq!(parse_tile_key("x/10S_020E"), None);
    }
}
