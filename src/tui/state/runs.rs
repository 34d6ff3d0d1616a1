//! The runs of the repository as the console watches them, and what the grid shows of them:
//! the tiles running, queued, written but not yet committed, the failed ones and why, the
//! live figures of the write in progress.
//!
//! Invariants: the console never owns a run; everything here is derived from the runs'
//! progress records as last read ([`Runs::apply`]) and from a launch not answered yet, so
//! two consoles on one run show the same thing; a run's written tiles show as not
//! committed only while it goes, or once it ended here until the next head read lands.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tilecube::grid::TileName;
use tilecube::runs::{Run, RunState};
use tilecube::scaleout::record::parse_tile_key;

/// How many runs of the repository the console keeps in view.
pub const RUNS_KEPT: usize = 8;

/// A failed tile and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub error: String,
    pub attempts: u32,
}

/// Live figures of the write in progress.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// When the earliest run going started (its record's word).
    pub started: Option<chrono::DateTime<chrono::Utc>>,
    /// The runs' tiles: written, landed, failed, of total.
    pub tally: tilecube::runs::Tally,
    pub tiles_total: usize,
    pub tiles_done: usize,
    pub pixel_bytes_done: u64,
    pub threads: usize,
    pub busy: usize,
}

impl Progress {
    /// Throughput in MB/s of source pixels.
    pub fn mb_per_s(&self, now: chrono::DateTime<chrono::Utc>) -> f64 {
        match self.started {
            Some(t) if now > t => {
                let secs = (now - t).to_std().unwrap_or_default().as_secs_f64();
                self.pixel_bytes_done as f64 / 1e6 / secs
            }
            _ => 0.0,
        }
    }

    /// Estimated time left.
    pub fn eta(&self, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        let started = self.started?;
        if self.tiles_done == 0 {
            return None;
        }
        let elapsed = (now - started).to_std().unwrap_or_default();
        let per_tile = elapsed.as_secs_f64() / self.tiles_done as f64;
        let left = self.tiles_total.saturating_sub(self.tiles_done) as f64;
        Some(Duration::from_secs_f64(per_tile * left))
    }
}

/// The tiles of a run that ended cancelled or dead, and when it started.
pub type Reselect = (BTreeSet<(i32, TileName)>, chrono::DateTime<chrono::Utc>);

/// The runs watched and what the grid shows of them.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    /// The runs of this repository, newest first (at most [`RUNS_KEPT`]).
    pub list: Vec<Run>,
    /// A read of the runs is under way (polls do not pile up behind a slow disk).
    pub reading: bool,
    /// Runs seen ending here whose last tiles the head read since may not hold yet: their
    /// written tiles stay `+` until the next head read lands (not a run's record alone).
    pub ended_unread: BTreeSet<String>,
    /// Tiles of a launch not answered yet: queued until the run is there to say more.
    pub launching: BTreeSet<(i32, TileName)>,
    pub running: BTreeMap<(i32, TileName), (u64, u64)>,
    pub queued: BTreeSet<(i32, TileName)>,
    /// Tiles a run wrote; those the head does not hold yet show as not committed.
    pub uncommitted: BTreeSet<(i32, TileName)>,
    /// Failed tiles and why: the cube's failure journal, then what the runs' records say.
    pub failed: BTreeMap<(i32, TileName), Failure>,
    pub progress: Progress,
    /// Whether a run of this repository is going (or being launched).
    pub writing: bool,
    /// Runs asked to cancel, until they end.
    pub cancelling: BTreeSet<String>,
    /// The tiles of the last launch: what a cancelled or dead run did not land is selected
    /// again once the head is read, so a retry is one key.
    pub last_launch: BTreeSet<(i32, TileName)>,
    /// The run that launch became, once answered.
    pub last_launch_id: Option<String>,
    /// A cancelled or dead run ended: its tiles (and when it started) are re-selected at the
    /// next head read, but for those it landed.
    pub reselect: Option<Reselect>,
}

impl Runs {
    /// The runs still going.
    pub fn active(&self) -> impl Iterator<Item = &Run> {
        self.list.iter().filter(|r| r.is_active())
    }

    /// The ids of the runs still going.
    pub fn going(&self) -> Vec<String> {
        self.active().map(|r| r.info.id.clone()).collect()
    }

    /// "no progress for 45 s" when every run going has been idle that long.
    pub fn stall_note(&self, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
        let idle = self.active().filter_map(|r| r.idle(now)).min()?;
        tilecube::runs::stall_note(idle)
    }

    /// Take the runs as just read (new ones, or newer reads of known ones) and derive what
    /// the grid shows of them. Returns whether a run landed tiles or ended since the last
    /// read (the head moved), and how the last run that ended here ended, in one line.
    pub fn apply(&mut self, read: Vec<Run>) -> (bool, Option<String>) {
        let mut head_moved = false;
        let mut said = None;
        for run in read {
            let before = self.list.iter().position(|r| r.info.id == run.info.id);
            let previous = before.map(|i| self.list.remove(i));
            let (moved, ended) = self.note_change(previous.as_ref(), &run);
            head_moved |= moved;
            said = ended.or(said);
            self.list.push(run);
        }
        self.list
            .sort_by_key(|r| std::cmp::Reverse((r.info.started, r.info.id.clone())));
        self.list.truncate(RUNS_KEPT);
        self.derive();
        (head_moved, said)
    }

    /// What a new read of a run says happened: failures and writes since the last read go
    /// to the failed set (a run that had ended before the console saw it leaves the failure
    /// journal to speak); the end of a run is said (and logged).
    fn note_change(&mut self, previous: Option<&Run>, run: &Run) -> (bool, Option<String>) {
        let Some(record) = &run.record else {
            return (false, None);
        };
        let seen_going = previous.map(Run::is_active).unwrap_or(run.is_active());
        if seen_going {
            let (old_failed, old_written) = previous
                .and_then(|p| p.record.as_ref())
                .map(|r| (r.failed.len(), r.written_tiles.len()))
                .unwrap_or((0, 0));
            for f in record.failed.iter().skip(old_failed) {
                if let Ok(tile) = f.tile.parse::<TileName>() {
                    self.failed.insert(
                        (f.year, tile),
                        Failure {
                            error: f.error.clone(),
                            attempts: f.attempts,
                        },
                    );
                    log::warn!("{}/{}: {}", f.year, f.tile, f.error);
                }
            }
            for key in record.written_tiles.iter().skip(old_written) {
                if let Some(k) = parse_tile_key(key) {
                    self.failed.remove(&k);
                }
            }
        }
        let ended = previous.is_some_and(Run::is_active) && !run.is_active();
        if ended && run.state != RunState::Dead {
            self.ended_unread.insert(run.info.id.clone());
        }
        let mut said = None;
        if ended {
            let outcome = run_outcome(run);
            log::info!("{outcome}");
            said = Some(outcome);
            self.cancelling.remove(&run.info.id);
            if matches!(run.state, RunState::Cancelled | RunState::Dead) {
                // Every tile of the run, from its record (a run launched elsewhere too).
                let mut tiles: BTreeSet<(i32, TileName)> = record
                    .queued
                    .iter()
                    .chain(record.running.iter().map(|r| &r.tile))
                    .chain(record.written_tiles.iter())
                    .filter_map(|k| parse_tile_key(k))
                    .collect();
                tiles.extend(
                    record
                        .failed
                        .iter()
                        .filter_map(|f| Some((f.year, f.tile.parse::<TileName>().ok()?))),
                );
                if self.last_launch_id.as_deref() == Some(run.info.id.as_str()) {
                    tiles.extend(self.last_launch.iter().copied());
                }
                let (mut all, _) = self.reselect.take().unwrap_or_default();
                all.extend(tiles);
                self.reselect = Some((all, record.started));
            }
        }
        let landed_before = previous
            .and_then(|p| p.record.as_ref())
            .map(|r| r.landed)
            .unwrap_or(0);
        (ended || record.landed > landed_before, said)
    }

    /// The grid's running, queued and not-yet-committed tiles, the status line's figures and
    /// whether a write is going, from the runs (and a launch not answered yet).
    pub fn derive(&mut self) {
        self.running.clear();
        self.queued.clear();
        self.uncommitted.clear();
        let mut p = Progress::default();
        for run in &self.list {
            let Some(record) = &run.record else { continue };
            // Only a run going has tiles pending its next checkpoint, and one that ended here
            // until the head is read again: a finished run's tiles show from the head (a dead
            // run's past its last checkpoint are lost).
            if run.is_active() || self.ended_unread.contains(&run.info.id) {
                self.uncommitted.extend(
                    record
                        .written_tiles
                        .iter()
                        .filter_map(|k| parse_tile_key(k)),
                );
            }
            if !run.is_active() {
                continue;
            }
            for t in &record.running {
                if let Some(k) = parse_tile_key(&t.tile) {
                    self.running.insert(k, (t.done, t.total));
                }
            }
            self.queued
                .extend(record.queued.iter().filter_map(|k| parse_tile_key(k)));
            p.started = Some(p.started.map_or(record.started, |a| a.min(record.started)));
            p.tiles_total += record.jobs - record.skipped.min(record.jobs);
            p.tiles_done += record.written + record.failed.len();
            p.tally = p.tally + tilecube::runs::Tally::of(record);
            p.pixel_bytes_done += record.pixel_bytes;
            p.threads += record.threads;
            p.busy += record.running.len();
        }
        self.queued.extend(self.launching.iter().copied());
        self.writing = self.list.iter().any(Run::is_active) || !self.launching.is_empty();
        self.progress = p;
    }
}

/// How a run ended, in one line: "write finished: 8 written, 1 failed, cancelled (run …)".
pub fn run_outcome(run: &Run) -> String {
    let Some(r) = &run.record else {
        return format!("run {}: {}", run.info.id, run.state);
    };
    match run.state {
        RunState::Dead => format!(
            "run {} is dead (its worker is gone): {}; w on the tiles resumes",
            run.info.id,
            run.tally()
        ),
        state => format!(
            "write {}: {} (run {}, {})",
            if state == RunState::Cancelled {
                "cancelled"
            } else {
                "finished"
            },
            run.tally(),
            run.info.id,
            tilecube::text::plural(r.commits, "commit")
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::tui::msg::{Action, Done, Msg};
    use crate::tui::state::CellState;
    use crate::tui::state::fixtures::{app, record, run, t};
    use crate::tui::update::update;
    use tilecube::cube::Coverage;
    use tilecube::scaleout::ShardState;
    use tilecube::scaleout::record::{RecordFailure, TileChunks};

    #[test]
    fn a_runs_record_drives_the_grid_and_the_progress() {
        let mut a = app();
        let mut r = record(&["80N_180W"], 0);
        r.running = vec![TileChunks {
            tile: "2000/80N_170W".into(),
            done: 8,
            total: 16,
        }];
        r.queued = vec!["2000/70N_180W".into()];
        r.pixel_bytes = 160_000;
        a.apply_runs(vec![run("R1", "running", r)]);
        assert!(a.runs.writing);
        assert_eq!(
            a.cell_state(2000, t("80N_170W")),
            CellState::Running { done: 8, total: 16 }
        );
        assert_eq!(a.cell_state(2000, t("80N_170W")).glyph(), '5');
        assert_eq!(a.cell_state(2000, t("70N_180W")), CellState::Queued);
        assert_eq!(
            a.cell_state(2000, t("80N_180W")),
            CellState::Uncommitted,
            "written by the run, not in the head yet"
        );
        assert_eq!(
            (
                a.runs.progress.tiles_total,
                a.runs.progress.tiles_done,
                a.runs.progress.busy
            ),
            (3, 1, 1)
        );
        assert_eq!(a.runs.progress.pixel_bytes_done, 160_000);
        // Once the head holds it, the tile shows as written.
        a.cube.coverage = Coverage {
            tiles: [(
                (2000, t("80N_180W")),
                tilecube::cube::TileState::Written {
                    chunks: 16,
                    snapshot: "S".into(),
                },
            )]
            .into(),
            ..Default::default()
        };
        assert_eq!(a.cell_state(2000, t("80N_180W")), CellState::Written);
    }

    #[test]
    fn a_finished_runs_tiles_show_from_the_head_not_from_its_record() {
        // A run of an earlier cube at this path, done: its record says it wrote the tile,
        // the head (a new cube) holds nothing.
        let mut a = app();
        a.apply_runs(vec![run("R0", "done", record(&["80N_180W"], 1))]);
        assert_ne!(
            a.cell_state(2000, t("80N_180W")),
            CellState::Uncommitted,
            "a finished run has nothing pending"
        );
        a.apply_runs(vec![run("R1", "running", record(&["80N_170W"], 0))]);
        assert_eq!(a.cell_state(2000, t("80N_170W")), CellState::Uncommitted);
    }

    #[test]
    fn a_run_that_lands_or_ends_has_the_head_read_again_and_says_how_it_ended() {
        let mut a = app();
        update(
            &mut a,
            Msg::Done(Done::Runs(vec![run("R1", "running", record(&[], 0))])),
        );
        assert!(
            update(
                &mut a,
                Msg::Done(Done::Runs(vec![run(
                    "R1",
                    "running",
                    record(&["80N_180W"], 0)
                )]))
            )
            .is_empty(),
            "written, not landed: nothing new in the head"
        );
        assert_eq!(
            update(
                &mut a,
                Msg::Done(Done::Runs(vec![run(
                    "R1",
                    "running",
                    record(&["80N_180W"], 1)
                )]))
            ),
            vec![Action::Refresh],
            "a checkpoint landed"
        );
        let mut done = record(&["80N_180W", "80N_170W"], 2);
        done.state = ShardState::Cancelled;
        done.commits = 2;
        assert_eq!(
            update(
                &mut a,
                Msg::Done(Done::Runs(vec![run("R1", "cancelled", done)]))
            ),
            vec![Action::Refresh]
        );
        assert!(!a.runs.writing);
        assert_eq!(
            a.status_line,
            "write cancelled: 2/3 written, 2 landed, 0 failed (run R1, 2 commits)"
        );
        // A worker gone without a word: dead, and its unlanded tiles are not pending.
        let mut b = app();
        b.apply_runs(vec![run("R2", "running", record(&["80N_180W"], 0))]);
        b.apply_runs(vec![run("R2", "dead", record(&["80N_180W"], 0))]);
        assert!(
            b.status_line.contains("run R2 is dead"),
            "{}",
            b.status_line
        );
        assert_eq!(b.cell_state(2000, t("80N_180W")), CellState::Listed);
    }

    #[test]
    fn a_runs_failures_show_with_their_reason_and_a_later_write_clears_them() {
        let mut a = app();
        let mut r = record(&[], 0);
        r.failed = vec![RecordFailure {
            year: 2000,
            tile: "70N_180W".into(),
            error: "has 3 bands; expected 1".into(),
            attempts: 1,
        }];
        a.apply_runs(vec![run("R1", "running", r.clone())]);
        let tile = t("70N_180W");
        assert_eq!(a.cell_state(2000, tile), CellState::Failed);
        assert_eq!(
            a.runs.failed[&(2000, tile)].error,
            "has 3 bands; expected 1"
        );
        r.written_tiles.push("2000/70N_180W".into());
        a.apply_runs(vec![run("R1", "running", r)]);
        assert!(a.runs.failed.is_empty(), "written after all");
    }
}
