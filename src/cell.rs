//! What one tile of one year is, as the faces show it: the state, its glyph (readable
//! without colour) and its name. Shared by the console's grid and `status`'s map, so the two
//! show a tile alike; neither face imports the other for it.

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
    /// Written by a run, not yet committed (it lands at the run's next checkpoint).
    Uncommitted,
    Failed,
    /// Recorded but its chunks are not all there, or chunks no commit recorded.
    Inconsistent,
    /// Written, but its source changed since (re-issued upstream).
    Changed,
    /// Listed; whether the branch head holds it is still being read.
    Loading,
    /// In a diff: the tile differs between the two snapshots.
    Differs,
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
            Self::Changed => '%',
            Self::Loading => '~',
            Self::Differs => '◆',
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
            Self::Changed => "written; its source changed since",
            Self::Loading => "listed; reading the repository",
            Self::Differs => "differs between the two snapshots",
        }
    }
}
