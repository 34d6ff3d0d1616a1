//! The help popup (`?`): the keys offered now, in two columns, then each glyph the grid
//! draws and what it means.
//!
//! Invariants: its keys come from the one key table ([`crate::tui::keys::help`]), only
//! those that would do something now; it fits 80×24 and no line runs into its border.

use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use super::{Dialog, Popup, Reply, closes};
use crate::tui::components::look::{color_of, style};
use crate::tui::keys;
use crate::tui::state::{App, CellState};

pub fn on_key(app: &mut App, key: &KeyEvent) -> Reply {
    closes(app, Popup::Help, key)
}

/// The help's dialog.
pub fn dialog(app: &App, area: Rect) -> Dialog {
    // Two columns of keys, then the glyphs: it fits 80x24.
    let items: Vec<String> = keys::help(app.offer())
        .into_iter()
        .map(|(k, v)| format!("{k:<9} {v}"))
        .collect();
    let half = items.len().div_ceil(2);
    let mut lines: Vec<Line> = (0..half)
        .map(|i| {
            let left = items.get(i).cloned().unwrap_or_default();
            let right = items.get(i + half).cloned().unwrap_or_default();
            Line::from(format!("{left:<37}  {right}"))
        })
        .collect();
    lines.push(Line::from(""));
    lines.extend(glyph_lines(app));
    let n = lines.len() as u16;
    // As wide as its longest line and a space either side, within the screen: no line runs
    // into the border.
    let widest = lines.iter().map(Line::width).max().unwrap_or(0) as u16;
    let lines = lines
        .into_iter()
        .map(|l| {
            let mut spans = vec![Span::raw(" ")];
            spans.extend(l.spans);
            Line::from(spans).style(l.style)
        })
        .collect();
    Dialog::new(
        " keys and glyphs (Esc closes) ",
        lines,
        (widest + 4).max(78).min(area.width),
        n + 2,
    )
}

/// The help's legend: each glyph the grid draws and what it means, in three columns.
fn glyph_lines(app: &App) -> Vec<Line<'static>> {
    let states = [
        CellState::Written,
        CellState::Changed,
        CellState::Uncommitted,
        CellState::Running { done: 5, total: 10 },
        CellState::Queued,
        CellState::Failed,
        CellState::Inconsistent,
        CellState::Listed,
        CellState::NoTile,
        CellState::Differs,
        CellState::Loading,
    ];
    let name = |s: CellState| match s {
        CellState::Running { .. } => "running (tenths)",
        CellState::Written => "written",
        CellState::Changed => "source changed",
        CellState::Uncommitted => "not committed",
        CellState::Listed => "listed",
        CellState::NoTile => "no tile",
        CellState::Differs => "differs (diff)",
        CellState::Loading => "being read",
        other => other.name(),
    };
    let mut out = Vec::new();
    for row in states.chunks(3) {
        let mut spans = Vec::new();
        for &s in row {
            let glyph = match s {
                CellState::Running { .. } => "0-9".to_string(),
                s => s.glyph().to_string(),
            };
            spans.push(Span::styled(format!("{glyph:>3}"), style(app, color_of(s))));
            spans.push(Span::raw(format!(" {:<21}", name(s))));
        }
        out.push(Line::from(spans));
    }
    out.push(Line::from("  * selected   cursor: reversed"));
    out
}

#[cfg(test)]
mod tests {
    use crate::tui::components::popups::Popup;
    use crate::tui::state::fixtures::{render, small_cube};

    #[test]
    fn help_lines_keep_off_the_border() {
        for (w, h) in [(80, 24), (100, 30), (160, 48)] {
            let mut a = small_cube();
            a.popup = Some(Popup::Help);
            let s = render(&a, w, h);
            for line in s.lines() {
                let chars: Vec<char> = line.chars().collect();
                // Inside the popup's box: the character before its right border is blank.
                if let Some(end) = chars.iter().rposition(|&c| c == '│')
                    && let Some(start) = chars.iter().position(|&c| c == '│')
                    && end > start + 2
                {
                    assert_eq!(
                        chars[end - 1],
                        ' ',
                        "{w}x{h}: a help line runs into the border:\n{s}"
                    );
                    assert_eq!(chars[start + 1], ' ', "{w}x{h}:\n{s}");
                }
            }
        }
    }
}
