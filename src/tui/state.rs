//! The console's state: everything the screen shows, with no terminal in it.
//!
//! Writes are detached runs the console watches, never owns: what the grid shows of a
//! write in progress (running, queued, written but not yet committed, failed) is derived
//! from the runs' progress records ([`App::apply_runs`]), so two consoles on one run show
//! the same thing, and a console reopened on a run shows what the first one did.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tilecube::cube::{Commit, Coverage, LevelImage, TileState};
use tilecube::grid::{Cell, Grid, TileName};
use tilecube::runs::{Run, RunState};
use tilecube::scaleout::record::parse_tile_key;

pub use crate::cell::CellState;

/// Which panel has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Grid,
    History,
    Runs,
}

/// A dialog over the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    Help,
    /// The write's confirmation, with the commit message being typed.
    ConfirmWrite(WriteAsk),
    /// Cancelling the runs going: asked first.
    ConfirmCancel {
        runs: Vec<String>,
    },
    /// Quitting while runs are going: leave them running (the default) or cancel them.
    Leave,
    TagPrompt {
        snapshot: String,
        name: String,
        /// Why the name typed is refused, if it is.
        refused: Option<&'static str>,
    },
    /// A tile's whole story: state, source, the whole failure reason.
    Tile {
        year: i32,
        tile: TileName,
    },
    /// A run's log, scrolled `scroll` lines up from its end.
    Log {
        run: String,
        scroll: usize,
    },
    /// Going to a tile by name: what is typed, and why it was not found.
    Find {
        text: String,
        error: Option<String>,
    },
    QuickLook {
        year: i32,
        tile: TileName,
    },
    /// The scale-out plan's progress, per shard.
    Plan,
}

/// What the write's confirmation says, and the message typed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteAsk {
    pub tiles: usize,
    pub years: usize,
    pub threads: usize,
    pub branch: String,
    /// Tiles of the selection the branch head holds already: written again.
    pub rewrites: usize,
    /// The commits' message (empty: each commit names its tiles).
    pub message: String,
    /// What the tiles weigh at the source, once looked up.
    pub bytes: Option<SelectionBytes>,
}

/// The scale-out plan the console watches (opened with `--plan`).
#[derive(Debug, Clone)]
pub struct PlanView {
    /// Where the plan is.
    pub at: String,
    /// Its progress as last read.
    pub status: Option<tilecube::scaleout::PlanStatus>,
    /// Why the last read failed.
    pub error: Option<String>,
}

/// Why the console is leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The operator quit (after confirming, if work was unsaved).
    Quit,
    /// A signal arrived (its number).
    Signal(i32),
    /// The terminal went away (a dropped SSH link).
    TerminalLost,
}

impl Exit {
    /// The process's exit status: 128 + the signal; a lost terminal counts as a hang-up.
    pub fn code(self) -> i32 {
        match self {
            Self::Quit => 0,
            Self::Signal(n) => 128 + n,
            Self::TerminalLost => 128 + libc::SIGHUP,
        }
    }
}

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

/// A snapshot being browsed instead of the branch head.
#[derive(Debug, Clone, PartialEq)]
pub struct Browse {
    pub snapshot: String,
    pub message: String,
    pub coverage: BTreeSet<(i32, TileName)>,
    /// Tiles that changed against another snapshot (`d`), if asked.
    pub diff_against: Option<String>,
    pub changed: BTreeSet<(i32, TileName)>,
}

/// The whole console state.
#[derive(Debug, Clone)]
pub struct App {
    pub repo: String,
    pub branch: String,
    pub grid: Grid,
    pub years: Vec<i32>,
    pub year_index: usize,
    pub cursor: Cell,
    pub focus: Focus,
    pub popup: Option<Popup>,
    /// Tiles listed in the source, per year.
    pub listed: BTreeMap<i32, BTreeSet<TileName>>,
    /// What the branch head holds.
    pub coverage: Coverage,
    pub selected: BTreeSet<(i32, TileName)>,
    pub queued: BTreeSet<(i32, TileName)>,
    pub running: BTreeMap<(i32, TileName), (u64, u64)>,
    /// Tiles a run wrote; those the head does not hold yet show as not committed.
    pub uncommitted: BTreeSet<(i32, TileName)>,
    pub failed: BTreeMap<(i32, TileName), Failure>,
    /// Written tiles whose source changed since they were written (re-issued upstream), as
    /// the last look at the sources found them.
    pub changed: BTreeSet<(i32, TileName)>,
    /// Written tiles whose write recorded no source (written before sources were recorded).
    pub source_unknown: BTreeSet<(i32, TileName)>,
    pub history: Vec<Commit>,
    pub history_index: usize,
    pub browse: Option<Browse>,
    pub progress: Progress,
    /// Whether a run of this repository is going (or being launched).
    pub writing: bool,
    pub threads: usize,
    pub status_line: String,
    pub color: bool,
    /// Set when the console is to leave, and why.
    pub exit: Option<Exit>,
    /// The branch head the coverage and history were read at.
    pub head: Option<String>,
    /// The last poll or refresh of the repository failed (its error is on the status line
    /// until a read succeeds).
    pub read_failed: bool,
    /// Quick-look pixels of the tile in the popup (row-major, `side`²).
    pub quicklook: Option<(usize, Vec<u8>)>,
    /// Where tiles are read from, if a source is configured.
    pub source: Option<tilecube::source::Source>,
    /// Show the log panel (off in snapshot tests: it carries timestamps).
    pub show_logs: bool,
    /// What is still being read before the grid is complete (the repository, its coverage),
    /// shown instead of a blank screen; `None` once the branch head's coverage is in.
    pub loading: Option<String>,
    /// The scale-out plan being watched, if any.
    pub plan: Option<PlanView>,
    /// The runs of this repository, newest first (at most [`RUNS_KEPT`]).
    pub runs: Vec<Run>,
    /// A read of the runs is under way (polls do not pile up behind a slow disk).
    pub reading_runs: bool,
    /// Runs seen ending here whose last tiles the head read since may not hold yet: their
    /// written tiles stay `+` until the next head read lands (not a run's record alone).
    pub ended_unread: BTreeSet<String>,
    /// Tiles of a launch not answered yet: queued until the run is there to say more.
    pub launching: BTreeSet<(i32, TileName)>,
    /// The time now, as the last tick said (the model reads no clock).
    pub now: chrono::DateTime<chrono::Utc>,
    /// The world map is shown in place of the grid (`m`).
    pub show_map: bool,
    /// The map as last read (or why it could not be), and what it shows.
    pub map: Option<(MapKey, Result<LevelImage, String>)>,
    /// The map being read.
    pub map_reading: Option<MapKey>,
    /// Tags by the snapshot they name.
    pub tags: BTreeMap<String, Vec<String>>,
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
    /// The log shown (`L`): its last lines as read, or why it could not be.
    pub log_lines: Result<Vec<String>, String>,
    /// Only the failed and re-issued tiles are drawn (`F`).
    pub filter: bool,
    /// Tiles' sizes at the source as looked up for a selection (`None`: not there).
    pub source_sizes: BTreeMap<(i32, TileName), Option<u64>>,
    /// A lookup of sizes is under way.
    pub sizing: bool,
}

/// The tiles of a run that ended cancelled or dead, and when it started.
pub type Reselect = (BTreeSet<(i32, TileName)>, chrono::DateTime<chrono::Utc>);

/// What the selected tiles weigh at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectionBytes {
    /// Bytes of the selected tiles the source holds.
    pub bytes: u64,
    /// Selected tiles the source does not hold.
    pub absent: usize,
}

impl SelectionBytes {
    /// "3.4 GB at the source" (and how many are not there).
    pub fn text(&self) -> String {
        let mut s = format!("{} at the source", tilecube::text::bytes_text(self.bytes));
        if self.absent > 0 {
            s.push_str(&format!(" ({} not there)", self.absent));
        }
        s
    }
}

/// What a map shows: a year of the branch head (at the head read) or of a browsed snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapKey {
    pub year: i32,
    pub snapshot: Option<String>,
    pub head: Option<String>,
}

/// How many runs of the repository the console keeps in view.
pub const RUNS_KEPT: usize = 8;

impl App {
    /// A read of the repository succeeded: a read failure shown is over.
    pub fn read_back(&mut self) {
        if std::mem::take(&mut self.read_failed) {
            self.status_line = "the repository answers again".into();
            log::info!("{}", self.status_line);
        }
    }

    pub fn new(repo: String, branch: String, grid: Grid, years: Vec<i32>, threads: usize) -> Self {
        Self {
            repo,
            branch,
            grid,
            years,
            year_index: 0,
            cursor: Cell { col: 0, row: 0 },
            focus: Focus::Grid,
            popup: None,
            listed: BTreeMap::new(),
            coverage: Coverage::default(),
            selected: BTreeSet::new(),
            queued: BTreeSet::new(),
            running: BTreeMap::new(),
            uncommitted: BTreeSet::new(),
            failed: BTreeMap::new(),
            changed: BTreeSet::new(),
            source_unknown: BTreeSet::new(),
            history: Vec::new(),
            history_index: 0,
            browse: None,
            progress: Progress::default(),
            writing: false,
            threads,
            status_line: String::new(),
            color: true,
            exit: None,
            head: None,
            read_failed: false,
            quicklook: None,
            source: None,
            show_logs: false,
            loading: None,
            plan: None,
            runs: Vec::new(),
            reading_runs: false,
            ended_unread: BTreeSet::new(),
            launching: BTreeSet::new(),
            now: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            show_map: false,
            map: None,
            map_reading: None,
            tags: BTreeMap::new(),
            cancelling: BTreeSet::new(),
            last_launch: BTreeSet::new(),
            reselect: None,
            last_launch_id: None,
            log_lines: Ok(Vec::new()),
            filter: false,
            source_sizes: BTreeMap::new(),
            sizing: false,
        }
    }

    /// "no progress for 45 s" when every run going has been idle that long.
    pub fn stall_note(&self) -> Option<String> {
        let idle = self.active_runs().filter_map(|r| r.idle(self.now)).min()?;
        tilecube::runs::stall_note(idle)
    }

    /// What the keys offer now (the footer and the help show only those).
    pub fn offer(&self) -> crate::tui::keys::Offer {
        crate::tui::keys::Offer {
            years: self.years.len(),
            plan: self.plan.is_some(),
            runs_going: self.active_runs().next().is_some(),
            failures: !self.failed.is_empty(),
            runs: !self.runs.is_empty(),
        }
    }

    /// The failed tiles in the grid's order (year, then row, then column).
    pub fn failed_in_order(&self) -> Vec<(i32, TileName)> {
        let mut keys: Vec<(i32, TileName)> = self.failed.keys().copied().collect();
        keys.sort_by_key(|&(y, t)| {
            let c = self.grid.cell(t).ok();
            (y, c.map(|c| (c.row, c.col)))
        });
        keys
    }

    /// Put the cursor on a tile of a year of the cube; `false` if the grid has no such tile.
    pub fn go_to(&mut self, year: i32, tile: TileName) -> bool {
        let (Some(cell), Some(yi)) = (
            self.grid.cell(tile).ok(),
            self.years.iter().position(|&y| y == year),
        ) else {
            return false;
        };
        self.cursor = cell;
        self.year_index = yi;
        true
    }

    /// What the map should show now.
    pub fn map_key(&self) -> MapKey {
        match &self.browse {
            Some(b) => MapKey {
                year: self.year(),
                snapshot: Some(b.snapshot.clone()),
                head: None,
            },
            None => MapKey {
                year: self.year(),
                snapshot: None,
                head: self.head.clone(),
            },
        }
    }

    /// The map shown, when it is the one [`App::map_key`] asks for.
    pub fn map_image(&self) -> Option<&Result<LevelImage, String>> {
        self.map
            .as_ref()
            .filter(|(k, _)| *k == self.map_key())
            .map(|(_, m)| m)
    }

    /// Where a tile of a year is read from.
    pub fn source_of(&self, year: i32, tile: TileName) -> Option<String> {
        self.source.as_ref().map(|s| s.tile_location(year, tile))
    }

    pub fn year(&self) -> i32 {
        self.years.get(self.year_index).copied().unwrap_or_default()
    }

    pub fn cursor_tile(&self) -> TileName {
        self.grid.tile_at(self.cursor)
    }

    pub fn is_listed(&self, year: i32, tile: TileName) -> bool {
        self.listed.get(&year).is_some_and(|l| l.contains(&tile))
    }

    /// The state of a tile as the grid shows it.
    pub fn cell_state(&self, year: i32, tile: TileName) -> CellState {
        let key = (year, tile);
        if let Some(b) = &self.browse {
            if b.diff_against.is_some() {
                return if b.changed.contains(&key) {
                    CellState::Differs
                } else {
                    CellState::NoTile
                };
            }
            return if b.coverage.contains(&key) {
                CellState::Written
            } else if self.is_listed(year, tile) {
                CellState::Listed
            } else {
                CellState::NoTile
            };
        }
        if let Some(&(done, total)) = self.running.get(&key) {
            return CellState::Running { done, total };
        }
        if self.queued.contains(&key) {
            return CellState::Queued;
        }
        let state = self.coverage.state(year, tile);
        let in_head = matches!(state, Some(TileState::Written { .. }));
        if self.uncommitted.contains(&key) && !in_head {
            return CellState::Uncommitted;
        }
        if self.failed.contains_key(&key) {
            return CellState::Failed;
        }
        match state {
            Some(TileState::Written { .. }) if self.changed.contains(&key) => CellState::Changed,
            Some(TileState::Written { .. }) => CellState::Written,
            Some(_) => CellState::Inconsistent,
            None if self.is_listed(year, tile) && self.loading.is_some() => CellState::Loading,
            None if self.is_listed(year, tile) => CellState::Listed,
            None => CellState::NoTile,
        }
    }

    /// Written and listed counts of a year (what the year tab shows).
    pub fn completeness(&self, year: i32) -> (usize, usize) {
        let listed = self.listed.get(&year).map(|l| l.len()).unwrap_or(0);
        let written = self
            .grid
            .tiles()
            .filter(|t| self.cell_state(year, *t) == CellState::Written)
            .count();
        (written, listed)
    }

    /// The snapshot that last wrote a tile in the branch head.
    pub fn written_by(&self, year: i32, tile: TileName) -> Option<&str> {
        match self.coverage.state(year, tile) {
            Some(TileState::Written { snapshot, .. })
            | Some(TileState::Incomplete { snapshot, .. }) => Some(snapshot),
            _ => None,
        }
    }

    /// Chunks written of a tile: in progress, uncommitted or in the head.
    pub fn chunks_done(&self, year: i32, tile: TileName) -> Option<(u64, u64)> {
        let key = (year, tile);
        let total = self.grid.chunks_per_tile();
        if let Some(&(d, t)) = self.running.get(&key) {
            return Some((d, t));
        }
        if self.uncommitted.contains(&key) {
            return Some((total, total));
        }
        match self.coverage.state(year, tile) {
            Some(TileState::Written { .. }) => Some((total, total)),
            _ => None,
        }
    }

    /// The runs still going.
    /// Whether the branch head holds the tile from a commit made at or after `since` (by a
    /// run that started then): what a run landed, rewrites included.
    pub fn landed_since(
        &self,
        year: i32,
        tile: TileName,
        since: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        match self.coverage.state(year, tile) {
            Some(tilecube::cube::TileState::Written { snapshot, .. }) => self
                .history
                .iter()
                .find(|c| c.id == *snapshot)
                .is_some_and(|c| c.time >= since),
            _ => false,
        }
    }

    /// Whether `write --missing` would write the tile: listed, not written in the branch
    /// head, and no run is at it (a failed tile and one with stray chunks, `?`, included).
    pub fn is_missing(&self, year: i32, tile: TileName) -> bool {
        self.listed.get(&year).is_some_and(|l| l.contains(&tile))
            && !self.coverage.is_written(year, tile)
            && matches!(
                self.cell_state(year, tile),
                CellState::Listed | CellState::Failed | CellState::Inconsistent
            )
    }

    /// What the selection weighs at the source, once every selected tile's size is known.
    pub fn selection_bytes(&self) -> Option<SelectionBytes> {
        let mut out = SelectionBytes {
            bytes: 0,
            absent: 0,
        };
        for k in &self.selected {
            match self.source_sizes.get(k)? {
                Some(b) => out.bytes += b,
                None => out.absent += 1,
            }
        }
        Some(out)
    }

    pub fn active_runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(|r| r.is_active())
    }

    /// Take the runs as just read (new ones, or newer reads of known ones) and derive what
    /// the grid and the status line show of them. Returns what changed that needs more
    /// reading: `true` when a run landed tiles or ended since the last read (the head moved).
    pub fn apply_runs(&mut self, read: Vec<Run>) -> bool {
        let mut head_moved = false;
        for run in read {
            let before = self.runs.iter().position(|r| r.info.id == run.info.id);
            let previous = before.map(|i| self.runs.remove(i));
            head_moved |= self.note_run_change(previous.as_ref(), &run);
            self.runs.push(run);
        }
        self.runs
            .sort_by_key(|r| std::cmp::Reverse((r.info.started, r.info.id.clone())));
        self.runs.truncate(RUNS_KEPT);
        self.derive_from_runs();
        head_moved
    }

    /// What a new read of a run says happened: failures and writes since the last read go
    /// to the failed set (a run that had ended before the console saw it leaves the failure
    /// journal to speak); the end of a run goes to the status line.
    fn note_run_change(&mut self, previous: Option<&Run>, run: &Run) -> bool {
        let Some(record) = &run.record else {
            return false;
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
        if ended {
            self.status_line = run_outcome(run);
            log::info!("{}", self.status_line);
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
        ended || record.landed > landed_before
    }

    /// The grid's running, queued and not-yet-committed tiles, the status line's figures and
    /// whether a write is going, from the runs (and a launch not answered yet).
    pub fn derive_from_runs(&mut self) {
        self.running.clear();
        self.queued.clear();
        self.uncommitted.clear();
        let mut p = Progress::default();
        for run in &self.runs {
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
        self.writing = self.runs.iter().any(Run::is_active) || !self.launching.is_empty();
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

/// Runs as the console's tests build them.
#[cfg(test)]
pub mod fixtures {
    use tilecube::runs::{Run, RunInfo, RunState};
    use tilecube::scaleout::ShardRecord;

    /// A run of `repo` in `state` with this record (tiles and failures counted from it).
    pub fn run(id: &str, state: &str, record: ShardRecord) -> Run {
        let state = match state {
            "starting" => RunState::Starting,
            "running" => RunState::Running,
            "done" => RunState::Done,
            "failed" => RunState::Failed,
            "cancelled" => RunState::Cancelled,
            _ => RunState::Dead,
        };
        let started = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        Run {
            info: RunInfo {
                id: id.into(),
                repo: "/data/cube".into(),
                cube: String::new(),
                pid: 4242,
                pid_start: 1,
                started,
            },
            state,
            tiles_done: record.skipped + record.landed,
            tiles_total: record.jobs,
            failed: record.failed.len(),
            plan: format!("/state/runs/{id}/plan").into(),
            log: format!("/state/runs/{id}/log.txt").into(),
            record: Some(record),
        }
    }
}
