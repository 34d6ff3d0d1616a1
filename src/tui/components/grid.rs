//! The tile grid: the year shown, the cursor and the filter; its keys (moving, selecting,
//! writing, going to a failed or missing tile, opening a tile's popups) and its drawing
//! (header, row labels, each tile's glyph by state, the cursor and the selection marks).
//! The world map is drawn in its place when shown ([`super::map`]).
//!
//! Invariants: the cursor stays on the grid; a snapshot browsed is read-only, so the keys
//! that select or write say why they do nothing; with the filter on, only failed and
//! re-issued tiles (and the cursor's) are drawn.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use tilecube::grid::{Cell, TileName};

use super::look::{color_of, style};
use super::popups::{cancel, find, quicklook, tile, write};
use crate::tui::keys::Command;
use crate::tui::msg::Action;
use crate::tui::state::{App, CellState};

/// The grid's own state.
#[derive(Debug, Clone)]
pub struct GridPanel {
    /// The year shown: an index into the cube's years.
    pub year_index: usize,
    pub cursor: Cell,
    /// Only the failed and re-issued tiles are drawn (`F`).
    pub filter: bool,
}

impl Default for GridPanel {
    fn default() -> Self {
        Self {
            year_index: 0,
            cursor: Cell { col: 0, row: 0 },
            filter: false,
        }
    }
}

/// A command of the grid (the runs panel passes on the grid's keys too).
pub fn on_command(app: &mut App, command: Command) -> Vec<Action> {
    if move_cursor(app, command) {
        return Vec::new();
    }
    let year = app.year();
    let read_only = app.cube.browse.is_some();
    match command {
        Command::Select
        | Command::SelectAll
        | Command::SelectAllYears
        | Command::SelectFailed
        | Command::SelectChanged
        | Command::Write
            if read_only =>
        {
            app.status_line =
                "read-only snapshot: it cannot be written; Esc returns to the head".into();
        }
        Command::Select => {
            let key = (year, app.cursor_tile());
            if !app.selection.tiles.remove(&key) {
                app.selection.tiles.insert(key);
            }
            app.status_line = app.selection.line();
        }
        Command::SelectAll | Command::SelectAllYears => {
            let years = if command == Command::SelectAll {
                vec![year]
            } else {
                app.cube.years.clone()
            };
            let before = app.selection.tiles.len();
            for y in &years {
                for t in app.cube.grid.tiles().collect::<Vec<_>>() {
                    if app.is_missing(*y, t) {
                        app.selection.tiles.insert((*y, t));
                    }
                }
            }
            let selected = &app.selection.tiles;
            app.status_line = if selected.len() == before && selected.is_empty() {
                let which = if years.len() == 1 {
                    format!("of {}", years[0])
                } else {
                    "of any year".to_string()
                };
                format!(
                    "nothing to select: every listed tile {which} is written already (space selects one tile to write again)"
                )
            } else {
                app.selection.line()
            };
        }
        Command::SelectFailed => {
            let failed: Vec<_> = app.runs.failed.keys().copied().collect();
            app.selection.tiles.extend(failed);
            app.status_line = app.selection.line();
        }
        Command::SelectChanged => {
            let changed: Vec<_> = app.cube.changed.iter().copied().collect();
            app.selection.tiles.extend(changed);
            app.status_line = if app.cube.changed.is_empty() {
                "no written tile's source changed since it was written".into()
            } else {
                app.selection.line()
            };
        }
        Command::Write => write::open(app),
        Command::Cancel => cancel::open(app),
        Command::QuickLook => return quicklook::open(app),
        Command::Filter => {
            app.grid.filter = !app.grid.filter;
            app.status_line = if app.grid.filter {
                "only the failed (!) and re-issued (%) tiles are drawn: F again shows all".into()
            } else {
                "every tile drawn".into()
            };
        }
        Command::TileDetails => tile::open(app),
        Command::Find => find::open(app),
        Command::NextFailed => match next_tile(app, |y, t| app.runs.failed.contains_key(&(y, t))) {
            Some((y, t)) => {
                app.go_to(y, t);
                app.status_line = format!("{y}/{t} failed: Enter shows why");
            }
            None => app.status_line = "no failed tile".into(),
        },
        Command::NextMissing => match next_tile(app, |y, t| app.is_missing(y, t)) {
            Some((y, t)) => {
                app.go_to(y, t);
                app.status_line = format!("{y}/{t} is listed, not written");
            }
            None => app.status_line = "every listed tile is written".into(),
        },
        _ => {}
    }
    Vec::new()
}

fn move_cursor(app: &mut App, command: Command) -> bool {
    let (cols, rows) = (app.cube.grid.columns, app.cube.grid.rows);
    let Cell { col, row } = app.grid.cursor;
    app.grid.cursor = match command {
        Command::Left => Cell {
            col: col.saturating_sub(1),
            row,
        },
        Command::Right => Cell {
            col: (col + 1).min(cols - 1),
            row,
        },
        Command::Up => Cell {
            col,
            row: row.saturating_sub(1),
        },
        Command::Down => Cell {
            col,
            row: (row + 1).min(rows - 1),
        },
        _ => return false,
    };
    true
}

/// The next tile after the cursor (this year first, then the following years, wrapping)
/// for which `want` holds.
fn next_tile(app: &App, want: impl Fn(i32, TileName) -> bool) -> Option<(i32, TileName)> {
    let tiles: Vec<TileName> = app.cube.grid.tiles().collect();
    let here = tiles
        .iter()
        .position(|t| *t == app.cursor_tile())
        .unwrap_or(0);
    let n = app.cube.years.len();
    (0..=n).find_map(|k| {
        let yi = (app.grid.year_index + k) % n.max(1);
        let year = *app.cube.years.get(yi)?;
        let order: Box<dyn Iterator<Item = usize>> = match k {
            0 => Box::new(here + 1..tiles.len()),
            k if k == n => Box::new(0..=here),
            _ => Box::new(0..tiles.len()),
        };
        order
            .filter_map(|i| tiles.get(i).copied())
            .find(|&t| want(year, t))
            .map(|t| (year, t))
    })
}

/// The grid, or the world map in its place (`m`) once the map is read.
pub fn draw(frame: &mut Frame, app: &App, area: Rect, cell: (u16, u16)) {
    if app.map.shown
        && let Some(Ok(image)) = super::map::shown(app)
    {
        return super::map::draw(frame, app, area, cell, image);
    }
    draw_grid(frame, app, area, cell);
}

/// The column labels every sixth column (and the last), above cells `cw` wide.
pub fn header_line(app: &App, cw: u16) -> Line<'static> {
    let grid = &app.cube.grid;
    let cw = cw as usize;
    let mut header = String::from("    ");
    for c in 0..grid.columns {
        if c % 6 == 0 {
            let name = grid.tile_at(Cell { col: c, row: 0 }).to_string();
            header.push_str(&format!("{:<w$}", &name[4..], w = 6 * cw));
        }
    }
    // The last column's label closes the header (170E on a grid of 10° tiles from 180W).
    let last = grid
        .tile_at(Cell {
            col: grid.columns - 1,
            row: 0,
        })
        .to_string();
    let at = 4 + (grid.columns as usize - 1) * cw;
    let mut header = header.trim_end().to_string();
    if header.len() + 1 < at {
        header.push_str(&" ".repeat(at - header.len()));
        header.push_str(&last[4..]);
    }
    Line::from(header)
}

/// A row's label on its first line, blank on the others.
pub fn row_label(app: &App, r: u32, line: u16) -> Span<'static> {
    if line == 0 {
        let label = app.cube.grid.tile_at(Cell { col: 0, row: r }).to_string()[..3].to_string();
        Span::raw(format!("{label} "))
    } else {
        Span::raw("    ")
    }
}

fn draw_grid(frame: &mut Frame, app: &App, area: Rect, (cw, ch): (u16, u16)) {
    let grid = &app.cube.grid;
    let year = app.year();
    let cursor = app.grid.cursor;
    let mut lines = Vec::with_capacity(grid.rows as usize * ch as usize + 1);
    lines.push(header_line(app, cw));
    for r in 0..grid.rows {
        for line in 0..ch {
            let mut spans = vec![row_label(app, r, line)];
            for c in 0..grid.columns {
                let cell = Cell { col: c, row: r };
                let tile = grid.tile_at(cell);
                let state = app.cell_state(year, tile);
                let selected = app.selection.tiles.contains(&(year, tile));
                let mut s = style(app, color_of(state));
                if matches!(state, CellState::Written | CellState::Failed) {
                    s = s.add_modifier(Modifier::BOLD);
                }
                if cell == cursor {
                    s = s.add_modifier(Modifier::REVERSED);
                }
                // The filter (`F`): only failed and re-issued tiles are drawn.
                let hidden = app.grid.filter
                    && !matches!(state, CellState::Failed | CellState::Changed)
                    && cell != cursor;
                let glyph = if hidden { ' ' } else { state.glyph() };
                let mark = if selected { '*' } else { ' ' };
                // Two columns: the glyph and the selection mark; grown cells are filled
                // with the glyph, the mark last.
                let text: String = if cw <= 2 {
                    format!("{glyph}{mark}")
                } else if selected {
                    std::iter::repeat_n(glyph, cw as usize - 1)
                        .chain([mark])
                        .collect()
                } else {
                    std::iter::repeat_n(glyph, cw as usize).collect()
                };
                spans.push(Span::styled(text, s));
            }
            lines.push(Line::from(spans));
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::state::Browse;
    use crate::tui::state::fixtures::{app, ch, key, t};
    use crate::tui::update::on_key;
    use ratatui::crossterm::event::KeyCode;

    #[test]
    fn arrows_and_hjkl_move_within_the_grid() {
        let mut a = app();
        on_key(&mut a, key(KeyCode::Left));
        on_key(&mut a, ch('k'));
        assert_eq!(a.grid.cursor, Cell { col: 0, row: 0 });
        on_key(&mut a, ch('l'));
        on_key(&mut a, key(KeyCode::Down));
        assert_eq!(a.grid.cursor, Cell { col: 1, row: 1 });
        for _ in 0..50 {
            on_key(&mut a, key(KeyCode::Right));
            on_key(&mut a, ch('j'));
        }
        assert_eq!(a.grid.cursor, Cell { col: 35, row: 13 });
    }

    #[test]
    fn space_toggles_a_selects_listed_unwritten_and_esc_clears() {
        let mut a = app();
        on_key(&mut a, ch(' '));
        assert!(a.selection.tiles.contains(&(2000, t("80N_180W"))));
        on_key(&mut a, ch(' '));
        assert!(a.selection.tiles.is_empty());
        a.runs.uncommitted.insert((2000, t("70N_180W")));
        on_key(&mut a, ch('a'));
        let sel: Vec<_> = a
            .selection
            .tiles
            .iter()
            .map(|(_, t)| t.to_string())
            .collect();
        assert_eq!(
            sel,
            ["80N_180W", "80N_170W"],
            "only listed, unwritten tiles"
        );
        on_key(&mut a, key(KeyCode::Esc));
        assert!(a.selection.tiles.is_empty());
    }

    fn browsing(a: &mut App) {
        a.cube.browse = Some(Browse {
            snapshot: "S1".into(),
            message: "m".into(),
            coverage: Default::default(),
            diff_against: None,
            changed: Default::default(),
        });
    }

    #[test]
    fn a_read_only_snapshot_says_why_it_takes_no_write_keys() {
        let mut a = app();
        browsing(&mut a);
        for c in [' ', 'a', 'A', 'f', 'C', 'w'] {
            a.status_line.clear();
            assert!(on_key(&mut a, ch(c)).is_empty(), "{c}");
            assert_eq!(
                a.status_line, "read-only snapshot: it cannot be written; Esc returns to the head",
                "{c}"
            );
            assert!(a.selection.tiles.is_empty() && a.popup.is_none(), "{c}");
        }
        on_key(&mut a, key(KeyCode::Esc));
        assert!(a.cube.browse.is_none());
        on_key(&mut a, ch(' '));
        assert_eq!(
            a.selection.tiles.len(),
            1,
            "at the head, space selects again"
        );
        assert_eq!(
            a.status_line,
            "1 tile selected in 1 year: w writes, Esc clears"
        );
    }

    #[test]
    fn shift_a_selects_the_missing_tiles_of_every_year() {
        let mut a = app();
        a.cube
            .listed
            .insert(2005, [t("80N_180W"), t("10N_010E")].into_iter().collect());
        on_key(&mut a, ch('A'));
        assert_eq!(a.selection.tiles.len(), 5);
        assert_eq!(
            a.status_line,
            "5 tiles selected in 2 years: w writes, Esc clears"
        );
        on_key(&mut a, key(KeyCode::Esc));
        on_key(&mut a, ch('a'));
        assert_eq!(a.selection.tiles.len(), 3, "a: this year only");
    }
}
