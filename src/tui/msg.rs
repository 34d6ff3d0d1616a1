//! What flows through the console's one `update`: the messages in ([`Msg`]: keys, finished
//! background work, signals, ticks) and the work out ([`Action`]s the runtime runs).
//!
//! Invariant: plain data only — no state, no terminal, no repository handle: a message says
//! what happened, an action what to do, and the runtime alone does it.

use ratatui::crossterm::event::KeyEvent;
use tilecube::cube::{Commit, Coverage, LevelImage};
use tilecube::grid::{Grid, TileName};
use tilecube::runs::Run;

use super::components::map::MapKey;
use super::state::Browse;

/// Everything that can happen to the console.
#[derive(Debug)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// Background work finished.
    Done(Done),
    /// A signal arrived: its number.
    Signal(i32),
    /// The terminal is gone (a dropped SSH link): reading keys or drawing failed.
    TerminalLost,
    /// Time to look whether another process moved the branch, or launched a run.
    Poll,
    /// Time to read the progress of the runs going (a few times a second).
    Watch,
    /// The clock, at every frame: what the progress line's rates and time left are
    /// measured against.
    Tick(chrono::DateTime<chrono::Utc>),
}

/// The results of background work.
#[derive(Debug)]
pub enum Done {
    /// The repository is open: the cube's grid and years, as the repository lays them out.
    Opened {
        grid: Grid,
        years: Vec<i32>,
        /// The cube's failure journal, and what was wrong reading it.
        failed: Vec<tilecube::ingest::JournalEntry>,
        warning: Option<String>,
    },
    /// A year's tile list was read from the source (or could not be).
    Listed {
        year: i32,
        tiles: Result<Vec<TileName>, String>,
    },
    /// The branch head's coverage and history, read afresh, and the tags by snapshot.
    Refreshed {
        coverage: Coverage,
        history: Vec<Commit>,
        head: Option<String>,
        tags: std::collections::BTreeMap<String, Vec<String>>,
        /// The cube's years, when the head's layout has others than the console's (an
        /// `extend` landed while it was open).
        years: Option<Vec<i32>>,
    },
    /// The branch head now.
    Head(Option<String>),
    /// A poll or refresh of the repository failed; the next poll tries again.
    ReadFailed(String),
    /// A run was launched (its id), or could not be.
    Launched(Result<String, String>),
    /// Runs of the repository as just read: every one (a scan) or those watched.
    Runs(Vec<Run>),
    /// Runs were cancelled (what each said), or could not be.
    Cancelled(Result<Vec<String>, String>),
    Browse(Result<Browse, String>),
    Tagged(Result<String, String>),
    QuickLook(Result<(usize, Vec<u8>), String>),
    /// A map was read (or could not be).
    Map(MapKey, Result<LevelImage, String>),
    /// The watched plan's progress, read afresh.
    Plan(Result<tilecube::scaleout::PlanStatus, String>),
    /// The written tiles' sources compared with what their writes recorded (or why not).
    Sources(Result<tilecube::ingest::SourceCheck, String>),
    /// A run's log, its last lines (or why it could not be read).
    Log(Result<Vec<String>, String>),
    /// Tiles' sizes at the source (`None`: not there), or why they could not be looked up.
    Sizes(Result<std::collections::BTreeMap<(i32, TileName), Option<u64>>, String>),
    Error(String),
}

/// Work the runtime does for the console, off the UI task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Launch a run writing these tiles (year, tile), its commits with this message (none:
    /// each names its tiles).
    Launch {
        tiles: Vec<(i32, TileName)>,
        message: Option<String>,
    },
    /// Put this text on the terminal's clipboard (OSC 52, which works over SSH).
    Copy(String),
    /// Read the last lines of a run's log.
    ReadLog(std::path::PathBuf),
    /// Cancel these runs: each stops at its next strip with its finished tiles committed.
    CancelRuns(Vec<String>),
    /// Read the runs of the repository (new ones too).
    ScanRuns,
    /// Read the progress of these runs.
    WatchRuns(Vec<String>),
    /// Show the tiles of a snapshot.
    Browse { snapshot: String, message: String },
    /// Show the tiles changed between two snapshots.
    Diff { from: String, to: String },
    /// Tag a snapshot.
    Tag { snapshot: String, name: String },
    /// Read a tile back from the cube for a quick-look.
    QuickLook { year: i32, tile: TileName },
    /// Read the map of `key` from the coarsest level at least `width` pixels wide.
    LoadMap { key: MapKey, width: u64 },
    /// Read the branch head's coverage and history again.
    Refresh,
    /// Read the tile lists of these years from the source.
    ReadLists(Vec<i32>),
    /// Look up the branch head.
    CheckHead,
    /// Read the watched plan's progress.
    PlanStatus,
    /// Compare the written tiles' sources with what their writes recorded.
    CheckSources,
    /// Look up these tiles' sizes at the source (for the selection's bytes).
    SizeTiles(std::collections::BTreeSet<(i32, TileName)>),
    /// Leave the console.
    Quit,
}
