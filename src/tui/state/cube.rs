//! The cube as the console last read it: where it is, its grid and years, the branch head's
//! tiles, history and tags, the source's lists and what the last look at the sources found,
//! and a snapshot browsed instead of the head.
//!
//! Invariants: only finished reads change it (each a `Done` message through `update`); it
//! holds what was read, never what a run is doing (that is [`super::runs`]); while
//! `loading` is set the head's tiles are not known yet, and keys that act on the
//! repository wait.

use std::collections::{BTreeMap, BTreeSet};

use tilecube::cube::{Commit, Coverage, TileState};
use tilecube::grid::{Grid, TileName};

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

/// The cube as read.
#[derive(Debug, Clone)]
pub struct CubeView {
    pub repo: String,
    pub branch: String,
    pub grid: Grid,
    pub years: Vec<i32>,
    /// Tiles listed in the source, per year.
    pub listed: BTreeMap<i32, BTreeSet<TileName>>,
    /// Where tiles are read from, if a source is configured.
    pub source: Option<tilecube::source::Source>,
    /// What the branch head holds.
    pub coverage: Coverage,
    /// The branch head the coverage and history were read at.
    pub head: Option<String>,
    /// The branch's commits, newest first.
    pub history: Vec<Commit>,
    /// Tags by the snapshot they name.
    pub tags: BTreeMap<String, Vec<String>>,
    /// A snapshot browsed read-only (or a diff), shown instead of the head.
    pub browse: Option<Browse>,
    /// Written tiles whose source changed since they were written (re-issued upstream), as
    /// the last look at the sources found them.
    pub changed: BTreeSet<(i32, TileName)>,
    /// Written tiles whose write recorded no source (written before sources were recorded).
    pub source_unknown: BTreeSet<(i32, TileName)>,
    /// What is still being read before the grid is complete (the repository, its coverage),
    /// shown instead of a blank screen; `None` once the branch head's coverage is in.
    pub loading: Option<String>,
    /// The last poll or refresh of the repository failed (its error is on the status line
    /// until a read succeeds).
    pub read_failed: bool,
}

impl CubeView {
    pub fn new(repo: String, branch: String, grid: Grid, years: Vec<i32>) -> Self {
        Self {
            repo,
            branch,
            grid,
            years,
            listed: BTreeMap::new(),
            source: None,
            coverage: Coverage::default(),
            head: None,
            history: Vec::new(),
            tags: BTreeMap::new(),
            browse: None,
            changed: BTreeSet::new(),
            source_unknown: BTreeSet::new(),
            loading: None,
            read_failed: false,
        }
    }

    pub fn is_listed(&self, year: i32, tile: TileName) -> bool {
        self.listed.get(&year).is_some_and(|l| l.contains(&tile))
    }

    /// Where a tile of a year is read from.
    pub fn source_of(&self, year: i32, tile: TileName) -> Option<String> {
        self.source.as_ref().map(|s| s.tile_location(year, tile))
    }

    /// The snapshot that last wrote a tile in the branch head.
    pub fn written_by(&self, year: i32, tile: TileName) -> Option<&str> {
        match self.coverage.state(year, tile) {
            Some(TileState::Written { snapshot, .. })
            | Some(TileState::Incomplete { snapshot, .. }) => Some(snapshot),
            _ => None,
        }
    }

    /// Whether the branch head holds the tile from a commit made at or after `since` (by a
    /// run that started then): what a run landed, rewrites included.
    pub fn landed_since(
        &self,
        year: i32,
        tile: TileName,
        since: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        match self.coverage.state(year, tile) {
            Some(TileState::Written { snapshot, .. }) => self
                .history
                .iter()
                .find(|c| c.id == *snapshot)
                .is_some_and(|c| c.time >= since),
            _ => false,
        }
    }

    /// The commit of the history a snapshot is, by its id (newest first: a lower index is
    /// newer).
    pub fn position(&self, id: &str) -> Option<usize> {
        self.history.iter().position(|h| h.id == id)
    }
}
