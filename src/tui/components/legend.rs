//! The legend: each tile state's glyph and how many of the year's tiles are in it (a panel
//! per year on a large terminal, a column right of the grid at about 100 columns), or with
//! the map, each class's colour (or shading glyph) and name.
//!
//! Invariant: a class's label is never cut: a label longer than the room goes on under
//! itself.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::look::{color_of, panel, style};
use crate::tui::state::{App, CellState};
use crate::tui::widgets::{legend_color, shade};

/// The states the legend counts, in its order.
pub const SUMMARY_STATES: [CellState; 9] = [
    CellState::Written,
    CellState::Changed,
    CellState::Uncommitted,
    CellState::Running { done: 0, total: 1 },
    CellState::Queued,
    CellState::Failed,
    CellState::Inconsistent,
    CellState::Listed,
    CellState::NoTile,
];

/// The narrowest the legend right of an 80-column grid is drawn.
pub const LEGEND_NARROW_WIDTH: u16 = 20;

/// The legend right of the grid on a terminal of 100 columns or so: each state's glyph and
/// how many of the year's tiles are in it (with the map: the classes).
pub fn draw_narrow(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = vec![Line::from(format!(" {}", app.year()))];
    if app.map.shown {
        // A label longer than the room goes on under itself, never cut.
        let room = (area.width as usize).saturating_sub(3).max(8);
        for class in tilecube::legend::classes() {
            let swatch = class_swatch(app, class.from);
            let mut parts = wrap_words(&class.label, room).into_iter();
            lines.push(Line::from(vec![
                swatch,
                Span::raw(format!(" {}", parts.next().unwrap_or_default())),
            ]));
            for rest in parts {
                lines.push(Line::from(format!("   {rest}")));
            }
        }
    } else {
        let year = app.year();
        for state in SUMMARY_STATES {
            let n = app
                .cube
                .grid
                .tiles()
                .filter(|t| {
                    std::mem::discriminant(&app.cell_state(year, *t))
                        == std::mem::discriminant(&state)
                })
                .count();
            let glyph = match state {
                CellState::Running { .. } => '5',
                s => s.glyph(),
            };
            lines.push(Line::from(vec![
                Span::styled(format!(" {glyph}"), style(app, color_of(state))),
                Span::raw(format!(" {:<13}{n:>4}", short_name(state))),
            ]));
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// `text` in lines of at most `width` characters, broken between words (a word longer than
/// the width is cut).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out.into_iter()
        .map(|l| l.chars().take(width.max(1)).collect())
        .collect()
}

/// A class's swatch in the legends: its colour, or its shading glyph without colour.
fn class_swatch(app: &App, from: u8) -> Span<'static> {
    if app.color {
        Span::styled("██", style(app, legend_color(from)))
    } else {
        let g = shade(from);
        Span::raw(format!("{g}{g}"))
    }
}

/// A state's name in the legends.
fn short_name(state: CellState) -> &'static str {
    match state {
        CellState::Running { .. } => "running",
        CellState::Uncommitted => "not committed",
        CellState::Written => "written",
        CellState::Inconsistent => "inconsistent",
        CellState::Changed => "src changed",
        CellState::NoTile => "no tile",
        CellState::Listed => "listed",
        other => other.name(),
    }
}

/// The legend panel: with the map, each class's colour (or shading glyph) and name; with
/// the grid, each tile state's glyph and how many tiles of each year are in it.
pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = Vec::new();
    if app.map.shown {
        for class in tilecube::legend::classes() {
            let swatch = class_swatch(app, class.from);
            lines.push(Line::from(vec![
                swatch,
                Span::raw(format!(
                    " {:>3}-{:<3} {}",
                    class.from, class.to, class.label
                )),
            ]));
        }
    } else {
        let mut header = format!("{:<14}", "");
        for y in &app.cube.years {
            header.push_str(&format!("{y:>5}"));
        }
        lines.push(Line::from(header));
        let mut counts = vec![[0usize; SUMMARY_STATES.len()]; app.cube.years.len()];
        for (yi, &year) in app.cube.years.iter().enumerate() {
            for tile in app.cube.grid.tiles() {
                let state = app.cell_state(year, tile);
                if let Some(i) = SUMMARY_STATES
                    .iter()
                    .position(|s| std::mem::discriminant(s) == std::mem::discriminant(&state))
                {
                    counts[yi][i] += 1;
                }
            }
        }
        for (i, state) in SUMMARY_STATES.iter().enumerate() {
            let name = match state {
                CellState::Running { .. } => "running",
                CellState::Uncommitted => "not committed",
                CellState::Written => "written",
                CellState::Inconsistent => "inconsistent",
                CellState::Changed => "source changed",
                CellState::NoTile => "no tile",
                CellState::Listed => "listed",
                other => other.name(),
            };
            let mut text = format!(" {name:<12}");
            for c in &counts {
                text.push_str(&format!("{:>5}", c[i]));
            }
            let glyph = match state {
                CellState::Running { .. } => '5',
                s => s.glyph(),
            };
            lines.push(Line::from(vec![
                Span::styled(glyph.to_string(), style(app, color_of(*state))),
                Span::raw(text),
            ]));
        }
    }
    let title = if app.map.shown {
        " classes "
    } else {
        " tiles per year "
    };
    frame.render_widget(Paragraph::new(lines).block(panel(title, false)), area);
}

#[cfg(test)]
mod tests {
    use crate::tui::state::fixtures::{render, small_cube};

    #[test]
    fn at_100x30_the_map_legend_names_every_class_whole() {
        let mut a = small_cube();
        a.map.shown = true;
        let s = render(&a, 100, 30);
        // The legend's words beside the grid, read in order: each class's label whole.
        let beside: String = s
            .lines()
            .map(|l| l.chars().skip(82).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ");
        let words: Vec<&str> = beside
            .split_whitespace()
            .filter(|w| {
                w.chars()
                    .all(|c| c.is_alphanumeric() || "-/,()".contains(c))
            })
            .collect();
        let text = words.join(" ");
        for class in tilecube::legend::classes() {
            assert!(
                text.contains(class.label.as_str()),
                "{:?} whole in the legend:\n{s}",
                class.label
            );
        }
    }
}
