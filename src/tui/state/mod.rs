//! The console's state: the components and what they share, with no terminal in it.
//!
//! [`App`] holds what every part of the screen reads — the cube as last read ([`cube`]), the
//! tiles chosen to write ([`selection`]), the runs and what the grid shows of them
//! ([`runs`]) — and the components, each owning its own state: the tile grid (year, cursor,
//! filter), the world map, the history panel and the popup open, if any
//! ([`crate::tui::components`]). What each tile shows is derived from the shared parts
//! ([`tiles`]).
//!
//! Invariants: the model reads no clock (the time is the last tick's) and touches neither
//! the terminal nor the repository; writes are detached runs the console watches, never
//! owns, so what the grid shows of a write in progress is derived from the runs' progress
//! records: two consoles on one run show the same thing, and a console reopened on a run
//! shows what the first one did.

pub mod cube;
pub mod runs;
pub mod selection;
mod tiles;

use tilecube::grid::{Cell, Grid, TileName};
use tilecube::runs::Run;

pub use crate::cell::CellState;
pub use cube::{Browse, CubeView};

use crate::tui::components::grid::GridPanel;
use crate::tui::components::history::HistoryPanel;
use crate::tui::components::map::MapView;
use crate::tui::components::popups::Popup;
use crate::tui::components::popups::plan::PlanView;
use runs::Runs;
use selection::Selection;

/// Which panel has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Grid,
    History,
    Runs,
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

/// The whole console state: the shared parts, then the components.
#[derive(Debug, Clone)]
pub struct App {
    /// The cube as last read: its grid and years, the branch head's tiles, history and tags,
    /// the source's lists, a snapshot browsed.
    pub cube: CubeView,
    /// The tiles chosen to write, and what they weigh at the source.
    pub selection: Selection,
    /// The runs of the repository, what the grid shows of them, and the tiles' failures.
    pub runs: Runs,
    /// Which panel has the keyboard.
    pub focus: Focus,
    /// The tile grid: the year shown, the cursor, the filter.
    pub grid: GridPanel,
    /// The world map, drawn in the grid's place (`m`).
    pub map: MapView,
    /// The history panel: the snapshot chosen.
    pub history: HistoryPanel,
    /// The dialog over the screen, if one is open (it owns its own state).
    pub popup: Option<Popup>,
    /// The scale-out plan being watched, if any.
    pub plan: Option<PlanView>,
    /// The threads a write launched here runs on.
    pub threads: usize,
    pub status_line: String,
    pub color: bool,
    /// Show the log panel (off in snapshot tests: it carries timestamps).
    pub show_logs: bool,
    /// Set when the console is to leave, and why.
    pub exit: Option<Exit>,
    /// The time now, as the last tick said (the model reads no clock).
    pub now: chrono::DateTime<chrono::Utc>,
}

impl App {
    pub fn new(repo: String, branch: String, grid: Grid, years: Vec<i32>, threads: usize) -> Self {
        Self {
            cube: CubeView::new(repo, branch, grid, years),
            selection: Selection::default(),
            runs: Runs::default(),
            focus: Focus::Grid,
            grid: GridPanel::default(),
            map: MapView::default(),
            history: HistoryPanel::default(),
            popup: None,
            plan: None,
            threads,
            status_line: String::new(),
            color: true,
            show_logs: false,
            exit: None,
            now: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        }
    }

    /// A read of the repository succeeded: a read failure shown is over.
    pub fn read_back(&mut self) {
        if std::mem::take(&mut self.cube.read_failed) {
            self.status_line = "the repository answers again".into();
            log::info!("{}", self.status_line);
        }
    }

    /// "no progress for 45 s" when every run going has been idle that long.
    pub fn stall_note(&self) -> Option<String> {
        self.runs.stall_note(self.now)
    }

    /// What the keys offer now (the footer and the help show only those).
    pub fn offer(&self) -> crate::tui::keys::Offer {
        crate::tui::keys::Offer {
            years: self.cube.years.len(),
            plan: self.plan.is_some(),
            runs_going: self.runs.active().next().is_some(),
            failures: !self.runs.failed.is_empty(),
            runs: !self.runs.list.is_empty(),
        }
    }

    /// The year shown.
    pub fn year(&self) -> i32 {
        self.cube
            .years
            .get(self.grid.year_index)
            .copied()
            .unwrap_or_default()
    }

    /// The tile under the cursor.
    pub fn cursor_tile(&self) -> TileName {
        self.cube.grid.tile_at(self.grid.cursor)
    }

    /// Put the cursor on a tile of a year of the cube; `false` if the grid has no such tile.
    pub fn go_to(&mut self, year: i32, tile: TileName) -> bool {
        let (Some(cell), Some(yi)) = (
            self.cube.grid.cell(tile).ok(),
            self.cube.years.iter().position(|&y| y == year),
        ) else {
            return false;
        };
        self.grid.cursor = cell;
        self.grid.year_index = yi;
        true
    }

    /// The cube's years changed (or its grid did, on opening): the year shown stays within
    /// them, and a grid laid out otherwise puts the cursor back at its corner.
    pub fn relayout(&mut self, grid: Option<Grid>, years: Vec<i32>) {
        if let Some(grid) = grid {
            if grid != self.cube.grid {
                self.grid.cursor = Cell { col: 0, row: 0 };
            }
            self.cube.grid = grid;
        }
        self.cube.years = years;
        self.grid.year_index = self
            .grid
            .year_index
            .min(self.cube.years.len().saturating_sub(1));
    }

    /// The runs still going.
    pub fn active_runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.active()
    }

    /// Take the runs as just read (new ones, or newer reads of known ones) and derive what
    /// the grid and the status line show of them. Returns `true` when a run landed tiles or
    /// ended since the last read (the head moved).
    pub fn apply_runs(&mut self, read: Vec<Run>) -> bool {
        let (head_moved, said) = self.runs.apply(read);
        if let Some(said) = said {
            self.status_line = said;
        }
        head_moved
    }
}

/// Console fixtures the tests of every component share.
#[cfg(test)]
pub mod fixtures;
