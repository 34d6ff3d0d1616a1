//! The tile popup (Enter on the grid): a tile's whole story — state, the whole failure
//! reason with its attempts, source, chunks — wrapped to the popup's width.
//!
//! Invariant: it says what the details panel says ([`crate::tui::components::details`]),
//! whole: the two draw one text.

use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use tilecube::grid::TileName;

use super::{Dialog, Popup, Reply, closes};
use crate::tui::components::details::tile_lines;
use crate::tui::state::App;

/// The tile shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileCard {
    pub year: i32,
    pub tile: TileName,
}

/// Enter on the grid: the tile under the cursor, whole.
pub fn open(app: &mut App) {
    app.popup = Some(Popup::Tile(TileCard {
        year: app.year(),
        tile: app.cursor_tile(),
    }));
}

impl TileCard {
    pub fn on_key(self, app: &mut App, key: &KeyEvent) -> Reply {
        closes(app, Popup::Tile(self), key)
    }

    pub fn dialog(&self, app: &App, area: Rect) -> Dialog {
        let inner_w = area.width.saturating_sub(4).min(100);
        let lines = tile_lines(app, self.year, self.tile, true);
        // Its height once wrapped to the popup's width.
        let rows: u16 = lines
            .iter()
            .map(|l| (l.width() as u16).div_ceil(inner_w.max(1)).max(1))
            .sum();
        Dialog::new(
            " tile (Esc closes) ",
            lines,
            inner_w + 2,
            (rows + 2).min(area.height),
        )
    }
}
