//! The look the components share: each tile state's colour, the panels' frame, short
//! snapshot ids, a centred rectangle.
//!
//! Invariant: with colour off (`NO_COLOR`) nothing is coloured: [`style`] gives the plain
//! style, and every state still reads by its glyph.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Borders};

use crate::tui::state::{App, CellState};

/// The colour of a tile state.
pub fn color_of(state: CellState) -> Color {
    match state {
        CellState::NoTile => Color::DarkGray,
        CellState::Listed => Color::Gray,
        CellState::Queued => Color::Blue,
        CellState::Running { .. } => Color::Yellow,
        CellState::Written => Color::Green,
        CellState::Uncommitted => Color::Cyan,
        CellState::Failed => Color::Red,
        CellState::Inconsistent => Color::Magenta,
        CellState::Changed => Color::LightYellow,
        CellState::Loading => Color::DarkGray,
        CellState::Differs => Color::LightMagenta,
    }
}

/// A style in `color`, or none with colour off.
pub fn style(app: &App, color: Color) -> Style {
    if app.color {
        Style::default().fg(color)
    } else {
        Style::default()
    }
}

/// A panel's frame: a top border with its title, reversed when it has the focus.
pub fn panel<'a>(title: &'a str, focused: bool) -> Block<'a> {
    let b = Block::default().borders(Borders::TOP).title(title);
    if focused {
        b.title_style(Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED))
    } else {
        b
    }
}

/// A snapshot id's first eight characters.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// A `width`×`height` rectangle centred in `area` (within it).
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}
