//! What each tile of each year shows, derived from the shared parts of the state: the cube as
//! read, the runs, a snapshot browsed.
//!
//! Invariant: derived only, never stored: a tile's state is computed from the cube and the
//! runs each time it is asked, so the grid, the legend, the tabs and the details agree.

use tilecube::cube::TileState;
use tilecube::grid::TileName;

use super::{App, CellState};

impl App {
    /// The state of a tile as the grid shows it.
    pub fn cell_state(&self, year: i32, tile: TileName) -> CellState {
        let key = (year, tile);
        let cube = &self.cube;
        if let Some(b) = &cube.browse {
            if b.diff_against.is_some() {
                return if b.changed.contains(&key) {
                    CellState::Differs
                } else {
                    CellState::NoTile
                };
            }
            return if b.coverage.contains(&key) {
                CellState::Written
            } else if cube.is_listed(year, tile) {
                CellState::Listed
            } else {
                CellState::NoTile
            };
        }
        let runs = &self.runs;
        if let Some(&(done, total)) = runs.running.get(&key) {
            return CellState::Running { done, total };
        }
        if runs.queued.contains(&key) {
            return CellState::Queued;
        }
        let state = cube.coverage.state(year, tile);
        let in_head = matches!(state, Some(TileState::Written { .. }));
        if runs.uncommitted.contains(&key) && !in_head {
            return CellState::Uncommitted;
        }
        if runs.failed.contains_key(&key) {
            return CellState::Failed;
        }
        match state {
            Some(TileState::Written { .. }) if cube.changed.contains(&key) => CellState::Changed,
            Some(TileState::Written { .. }) => CellState::Written,
            Some(_) => CellState::Inconsistent,
            None if cube.is_listed(year, tile) && cube.loading.is_some() => CellState::Loading,
            None if cube.is_listed(year, tile) => CellState::Listed,
            None => CellState::NoTile,
        }
    }

    /// Written and listed counts of a year (what the year tab shows).
    pub fn completeness(&self, year: i32) -> (usize, usize) {
        let listed = self.cube.listed.get(&year).map(|l| l.len()).unwrap_or(0);
        let written = self
            .cube
            .grid
            .tiles()
            .filter(|t| self.cell_state(year, *t) == CellState::Written)
            .count();
        (written, listed)
    }

    /// Chunks written of a tile: in progress, uncommitted or in the head.
    pub fn chunks_done(&self, year: i32, tile: TileName) -> Option<(u64, u64)> {
        let key = (year, tile);
        let total = self.cube.grid.chunks_per_tile();
        if let Some(&(d, t)) = self.runs.running.get(&key) {
            return Some((d, t));
        }
        if self.runs.uncommitted.contains(&key) {
            return Some((total, total));
        }
        match self.cube.coverage.state(year, tile) {
            Some(TileState::Written { .. }) => Some((total, total)),
            _ => None,
        }
    }

    /// Whether `write --missing` would write the tile: listed, not written in the branch
    /// head, and no run is at it (a failed tile and one with stray chunks, `?`, included).
    pub fn is_missing(&self, year: i32, tile: TileName) -> bool {
        self.cube.is_listed(year, tile)
            && !self.cube.coverage.is_written(year, tile)
            && matches!(
                self.cell_state(year, tile),
                CellState::Listed | CellState::Failed | CellState::Inconsistent
            )
    }

    /// The failed tiles in the grid's order (year, then row, then column).
    pub fn failed_in_order(&self) -> Vec<(i32, TileName)> {
        let mut keys: Vec<(i32, TileName)> = self.runs.failed.keys().copied().collect();
        keys.sort_by_key(|&(y, t)| {
            let c = self.cube.grid.cell(t).ok();
            (y, c.map(|c| (c.row, c.col)))
        });
        keys
    }
}
