//! The tile grid and the world map in its place: header, row labels, cells by state (or
//! the map's pixels), the cursor, selection and diff marks.

use super::*;

/// The grid, or the world map in its place (`m`) once the map is read.
pub(super) fn draw_tiles(frame: &mut Frame, app: &App, area: Rect, cell: (u16, u16)) {
    if app.show_map
        && let Some(Ok(image)) = app.map_image()
    {
        return draw_map(frame, app, area, cell, image);
    }
    draw_grid(frame, app, area, cell);
}

/// The column labels every sixth column (and the last), above cells `cw` wide.
pub(super) fn header_line(app: &App, cw: u16) -> Line<'static> {
    let grid = &app.grid;
    let cw = cw as usize;
    let mut header = String::from("    ");
    for c in 0..grid.columns {
        if c % 6 == 0 {
            let name = grid.tile_at(Cell { col: c, row: 0 }).to_string();
            header.push_str(&format!("{:<w$}", &name[4..], w = 6 * cw));
        }
    }
    // The last column's label closes the header (170E on the GLAD grid).
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
pub(super) fn row_label(app: &App, r: u32, line: u16) -> Span<'static> {
    if line == 0 {
        let label = app.grid.tile_at(Cell { col: 0, row: r }).to_string()[..3].to_string();
        Span::raw(format!("{label} "))
    } else {
        Span::raw("    ")
    }
}

pub(super) fn draw_grid(frame: &mut Frame, app: &App, area: Rect, (cw, ch): (u16, u16)) {
    let grid = &app.grid;
    let year = app.year();
    let mut lines = Vec::with_capacity(grid.rows as usize * ch as usize + 1);
    lines.push(header_line(app, cw));
    for r in 0..grid.rows {
        for line in 0..ch {
            let mut spans = vec![row_label(app, r, line)];
            for c in 0..grid.columns {
                let cell = Cell { col: c, row: r };
                let tile = grid.tile_at(cell);
                let state = app.cell_state(year, tile);
                let selected = app.selected.contains(&(year, tile));
                let mut s = style(app, color_of(state));
                if matches!(state, CellState::Written | CellState::Failed) {
                    s = s.add_modifier(Modifier::BOLD);
                }
                if cell == app.cursor {
                    s = s.add_modifier(Modifier::REVERSED);
                }
                // The filter (`F`): only failed and re-issued tiles are drawn.
                let hidden = app.filter
                    && !matches!(state, CellState::Failed | CellState::Changed)
                    && cell != app.cursor;
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

/// The world map: the year's data from an overview level, two samples a character (upper
/// half-blocks coloured with the legend, or shading glyphs without colour), under the tile
/// grid: the cursor's tile in brackets, selected tiles and tiles a diff changed marked; grown
/// cells (3 characters and more) draw each tile's right and bottom edge.
pub(super) fn draw_map(
    frame: &mut Frame,
    app: &App,
    area: Rect,
    (cw, ch): (u16, u16),
    image: &tilecube::cube::LevelImage,
) {
    let grid = &app.grid;
    let year = app.year();
    let (cols, rows) = (
        grid.columns as usize * cw as usize,
        grid.rows as usize * ch as usize,
    );
    let sample = |x: usize, y2: usize| -> u8 {
        let px = x * image.width / cols.max(1);
        let py = y2 * image.height / (2 * rows).max(1);
        image
            .pixels
            .get(py.min(image.height.saturating_sub(1)) * image.width + px)
            .copied()
            .unwrap_or(255)
    };
    let changed = app.browse.as_ref().map(|b| &b.changed);
    let mut lines = Vec::with_capacity(rows + 1);
    lines.push(header_line(app, cw));
    for r in 0..grid.rows {
        for line in 0..ch {
            let mut spans = vec![row_label(app, r, line)];
            let y = r as usize * ch as usize + line as usize;
            for c in 0..grid.columns {
                let cell = Cell { col: c, row: r };
                let tile = grid.tile_at(cell);
                let selected = app.selected.contains(&(year, tile));
                let diffed = changed.is_some_and(|set| set.contains(&(year, tile)));
                for i in 0..cw as usize {
                    let x = c as usize * cw as usize + i;
                    let (top, bottom) = (sample(x, 2 * y), sample(x, 2 * y + 1));
                    let first = i == 0 && line == 0;
                    let mark = if cell == app.cursor && i == 0 {
                        Some('[')
                    } else if cell == app.cursor && i + 1 == cw as usize {
                        Some(']')
                    } else if first && diffed {
                        Some('◆')
                    } else if first && selected {
                        Some('*')
                    } else {
                        None
                    };
                    let span = match (mark, app.color) {
                        (Some(m), true) => Span::styled(
                            m.to_string(),
                            Style::default()
                                .fg(Color::Yellow)
                                .bg(crate::tui::widgets::legend_color(top))
                                .add_modifier(Modifier::BOLD),
                        ),
                        (Some(m), false) => Span::raw(m.to_string()),
                        // Grown cells (a large terminal): a thin line on each tile's right
                        // and bottom edge, so tiles of one class do not merge into a block.
                        (None, true) if cw >= 3 && (i + 1 == cw as usize || line + 1 == ch) => {
                            let edge = if i + 1 == cw as usize { "▕" } else { "▁" };
                            Span::styled(
                                edge,
                                Style::default()
                                    .fg(Color::DarkGray)
                                    .bg(crate::tui::widgets::legend_color(top)),
                            )
                        }
                        (None, true) => Span::styled(
                            "▀",
                            Style::default()
                                .fg(crate::tui::widgets::legend_color(top))
                                .bg(crate::tui::widgets::legend_color(bottom)),
                        ),
                        (None, false) => Span::raw(crate::tui::widgets::shade(top).to_string()),
                    };
                    spans.push(span);
                }
            }
            lines.push(Line::from(spans));
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}
