//! The quick-look popup (`p`): a written tile read back from the cube, drawn with half-block
//! cells in the legend's colours (or shading glyphs without colour), with the classes it
//! shows under it.
//!
//! Invariants: only a tile with data in the cube opens it (written, not yet committed, or
//! re-issued); it says it is reading until the pixels come; a read that failed closes it
//! and says why.

use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::text::Line;
use tilecube::grid::TileName;

use super::{Dialog, Popup, Reply, closes};
use crate::tui::msg::Action;
use crate::tui::state::{App, CellState};
use crate::tui::widgets::{classes_line, quicklook_lines};

/// The tile looked at, and its pixels once read (row-major, `side`²).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickLook {
    pub year: i32,
    pub tile: TileName,
    pub pixels: Option<(usize, Vec<u8>)>,
}

/// `p`: read the tile under the cursor back from the cube (or say it is not written).
pub fn open(app: &mut App) -> Vec<Action> {
    let (year, tile) = (app.year(), app.cursor_tile());
    if matches!(
        app.cell_state(year, tile),
        CellState::Written | CellState::Uncommitted | CellState::Changed
    ) {
        app.popup = Some(Popup::QuickLook(QuickLook {
            year,
            tile,
            pixels: None,
        }));
        return vec![Action::QuickLook { year, tile }];
    }
    app.status_line = format!("{year}/{tile} is not written");
    Vec::new()
}

/// The tile was read (or could not be): the popup shows it, or closes and says why.
pub fn on_read(app: &mut App, read: Result<(usize, Vec<u8>), String>) {
    match read {
        Ok(px) => {
            if let Some(Popup::QuickLook(look)) = &mut app.popup {
                look.pixels = Some(px);
            }
        }
        Err(e) => {
            app.popup = None;
            app.status_line = format!("quick-look: {e}");
        }
    }
}

impl QuickLook {
    pub fn on_key(self, app: &mut App, key: &KeyEvent) -> Reply {
        closes(app, Popup::QuickLook(self), key)
    }

    pub fn dialog(&self, app: &App, area: Rect) -> Dialog {
        let inner_w = area.width.saturating_sub(4).min(64);
        let inner_h = area.height.saturating_sub(4).min(32);
        // The picture, centred, then the legend of the classes it shows.
        let lines = match &self.pixels {
            Some((side, px)) => {
                let mut l = quicklook_lines(
                    *side,
                    px,
                    inner_w as usize,
                    inner_h.saturating_sub(2) as usize,
                    app.color,
                );
                l.push(Line::from(""));
                l.push(classes_line(px, inner_w as usize, app.color));
                l
            }
            None => vec![Line::from("reading the tile from the cube ...")],
        };
        Dialog {
            centred: true,
            ..Dialog::new(
                format!(" {}/{} quick-look (Esc closes) ", self.year, self.tile),
                lines,
                inner_w + 2,
                inner_h + 2,
            )
        }
    }
}
