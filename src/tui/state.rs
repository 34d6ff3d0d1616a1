//! The console's state: everything the screen shows, with no terminal in it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tilecube::cube::{Commit, Coverage, TileState};
use tilecube::grid::{Cell, Grid, TileName};

/// What one tile of one year is, as the grid shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    /// No tile in the source list.
    NoTile,
    /// Listed, not written.
    Listed,
    Queued,
    /// Being written: chunks done of total.
    Running {
        done: u64,
        total: u64,
    },
    /// Written in the branch head.
    Written,
    /// Written in the session, not yet committed.
    Uncommitted,
    Failed,
    /// Recorded but its chunks are not all there, or chunks no commit recorded.
    Inconsistent,
    /// Listed; whether the branch head holds it is still being read.
    Loading,
}

impl CellState {
    /// The glyph that shows the state without colour.
    pub fn glyph(self) -> char {
        match self {
            Self::NoTile => '.',
            Self::Listed => 'o',
            Self::Queued => 'q',
            Self::Running { done, total } => {
                let tenth = (done * 10).checked_div(total).unwrap_or(0).min(9);
                char::from_digit(tenth as u32, 10).unwrap_or('0')
            }
            Self::Written => '#',
            Self::Uncommitted => '+',
            Self::Failed => '!',
            Self::Inconsistent => '?',
            Self::Loading => '~',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::NoTile => "no tile in the source list",
            Self::Listed => "listed, not written",
            Self::Queued => "queued",
            Self::Running { .. } => "running",
            Self::Written => "written (committed)",
            Self::Uncommitted => "written, not committed",
            Self::Failed => "failed",
            Self::Inconsistent => "inconsistent",
            Self::Loading => "listed; reading the repository",
        }
    }
}

/// Which panel has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Grid,
    History,
    Session,
}

/// A dialog over the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    Help,
    ConfirmWrite {
        tiles: usize,
        years: usize,
        threads: usize,
    },
    CommitPrompt {
        message: String,
    },
    ConfirmQuit {
        reason: String,
    },
    TagPrompt {
        snapshot: String,
        name: String,
    },
    QuickLook {
        year: i32,
        tile: TileName,
    },
    /// The scale-out plan's progress, per shard.
    Plan,
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

    /// Whether the finished tiles are committed before leaving: always, but when the
    /// operator chose to quit without committing.
    pub fn commits_finished_tiles(self) -> bool {
        !matches!(self, Self::Quit)
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
    pub started: Option<Instant>,
    pub tiles_total: usize,
    pub tiles_done: usize,
    pub pixel_bytes_done: u64,
    pub threads: usize,
    pub busy: usize,
}

impl Progress {
    /// Throughput in MB/s of source pixels.
    pub fn mb_per_s(&self, now: Instant) -> f64 {
        match self.started {
            Some(t) if now > t => self.pixel_bytes_done as f64 / 1e6 / (now - t).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Estimated time left.
    pub fn eta(&self, now: Instant) -> Option<Duration> {
        let started = self.started?;
        if self.tiles_done == 0 {
            return None;
        }
        let per_tile = (now - started).as_secs_f64() / self.tiles_done as f64;
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
    pub uncommitted: BTreeMap<(i32, TileName), u64>,
    pub failed: BTreeMap<(i32, TileName), Failure>,
    pub history: Vec<Commit>,
    pub history_index: usize,
    pub browse: Option<Browse>,
    pub progress: Progress,
    pub writing: bool,
    pub committing: bool,
    pub threads: usize,
    pub status_line: String,
    pub color: bool,
    /// Set when the console is to leave, and why.
    pub exit: Option<Exit>,
    /// The branch head the coverage and history were read at.
    pub head: Option<String>,
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
}

impl App {
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
            uncommitted: BTreeMap::new(),
            failed: BTreeMap::new(),
            history: Vec::new(),
            history_index: 0,
            browse: None,
            progress: Progress::default(),
            writing: false,
            committing: false,
            threads,
            status_line: String::new(),
            color: true,
            exit: None,
            head: None,
            quicklook: None,
            source: None,
            show_logs: false,
            loading: None,
            plan: None,
        }
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
        if self.uncommitted.contains_key(&key) {
            return CellState::Uncommitted;
        }
        if self.failed.contains_key(&key) {
            return CellState::Failed;
        }
        match self.coverage.state(year, tile) {
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

    /// Tiles written in the session and not yet committed.
    pub fn has_uncommitted(&self) -> bool {
        !self.uncommitted.is_empty()
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
        if self.uncommitted.contains_key(&key) {
            return Some((total, total));
        }
        match self.coverage.state(year, tile) {
            Some(TileState::Written { .. }) => Some((total, total)),
            _ => None,
        }
    }

    /// A commit message naming the uncommitted tiles.
    pub fn default_commit_message(&self) -> String {
        let mut written = tilecube::cube::WrittenTiles::new();
        for ((y, t), n) in &self.uncommitted {
            written.entry(*y).or_default().insert(*t, *n);
        }
        tilecube::cube::commit_message(&written)
    }
}
