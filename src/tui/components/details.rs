//! The tile's details: its state first, then why it failed (the whole reason), then its
//! source and chunks — in the panel beside or below the grid, for the tile under the cursor,
//! and whole in the tile popup ([`super::popups::tile`]).
//!
//! Invariant: one text for both: the panel and the popup draw [`tile_lines`], so they never
//! disagree; a cell with no tile says only that.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::look::{panel, short, style};
use crate::tui::state::{App, CellState, Focus};

/// The details panel: the tile under the cursor, the state first.
pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let year = app.year();
    let tile = app.cursor_tile();
    let lines = tile_lines(app, year, tile, false);
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .block(panel(" tile (Enter: all of it) ", app.focus == Focus::Grid));
    frame.render_widget(p, area);
}

/// What the console says of a tile: its state first, then why it failed (the whole
/// reason: the panel wraps it, and it comes before what matters less), then its source and
/// chunks. A cell with no tile says only that. `full`: the popup's, with the attempts.
pub fn tile_lines(
    app: &App,
    year: i32,
    tile: tilecube::grid::TileName,
    full: bool,
) -> Vec<Line<'static>> {
    let state = app.cell_state(year, tile);
    let (w, s, e, n) = app.cube.grid.bounds(tile);
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("{year}/{tile}"),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  {}  ", state.name())),
        Span::raw(format!("bounds {w} {s} {e} {n}")),
    ])];
    // With the map: which level it is drawn from, and (where no legend panel shows it) the
    // classes it shows.
    if app.map.shown && !full {
        lines.push(Line::from(match super::map::shown(app) {
            Some(Ok(m)) => format!(
                "map: {year} from level {} (1:{}), {}×{} px",
                m.level, m.factor, m.width, m.height
            ),
            Some(Err(e)) => format!("map: {e}"),
            None => format!("map: reading {year}…"),
        }));
        if let Some(Ok(m)) = super::map::shown(app) {
            lines.push(crate::tui::widgets::classes_line(&m.pixels, 78, app.color));
        }
    }
    if state == CellState::NoTile && !app.runs.failed.contains_key(&(year, tile)) {
        if app.cube.browse.is_none() {
            lines.push(Line::from(format!(
                "the source lists no tile here for {year} (ocean, or not published)"
            )));
        }
        return lines;
    }
    if let Some(f) = app.runs.failed.get(&(year, tile)) {
        let when = if state == CellState::Failed {
            "failed"
        } else {
            "last attempt failed"
        };
        let attempts = tilecube::text::plural(f.attempts as usize, "attempt");
        lines.push(Line::styled(
            format!("{when} ({attempts}): {}", f.error),
            style(app, Color::Red),
        ));
        if full {
            lines.push(Line::from(""));
        }
    }
    if let Some(src) = &app.cube.source_of(year, tile) {
        let note = if app.cube.source_unknown.contains(&(year, tile)) {
            "  (source unknown: written before sources were recorded)"
        } else if app.cube.changed.contains(&(year, tile)) {
            "  (changed since written)"
        } else {
            ""
        };
        lines.push(Line::from(format!("source {src}{note}")));
    }
    let chunks = match app.chunks_done(year, tile) {
        Some((d, t)) => format!("chunks {d}/{t}"),
        None => format!("chunks 0/{}", app.cube.grid.chunks_per_tile()),
    };
    let by = app
        .cube
        .written_by(year, tile)
        .map(|s| format!("  written by {}", short(s)))
        .unwrap_or_default();
    lines.push(Line::from(format!("{chunks}{by}")));
    lines
}
