//! Drawing the console: title, year tabs, the tile grid, the panels and the dialogs.
//!
//! At 80×24 the grid always fits and one panel (the focused one) sits below it; wider and
//! taller terminals show the details, runs and history panels beside the grid, grow the
//! grid's cells to the room there is and add a legend panel. The world map (`m`) is drawn in
//! the grid's place, on the same cells, so the cursor and marks sit where the grid's would.

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::keys::{self, Footer};
use super::state::{App, CellState, Focus, Popup};
use super::widgets::quicklook_lines;
use tilecube::grid::Cell;

/// The grid's width at two columns a cell: row labels and the cells (the header's last label,
/// `170E`, reaches two columns further: the grid panel is this + 3 wide).
fn grid_width(app: &App) -> u16 {
    4 + app.grid.columns as u16 * 2
}

fn color_of(state: CellState) -> Color {
    match state {
        CellState::NoTile => Color::DarkGray,
        CellState::Listed => Color::Gray,
        CellState::Queued => Color::Blue,
        CellState::Running { .. } => Color::Yellow,
        CellState::Written => Color::Green,
        CellState::Uncommitted => Color::Cyan,
        CellState::Failed => Color::Red,
        CellState::Inconsistent => Color::Magenta,
        CellState::Loading => Color::DarkGray,
    }
}

fn style(app: &App, color: Color) -> Style {
    if app.color {
        Style::default().fg(color)
    } else {
        Style::default()
    }
}

/// Draw the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let wide = area.width >= grid_width(app) + 40 && area.height >= 24;
    let cell = cell_size(area, app);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1 + app.grid.rows as u16 * cell.1),
            Constraint::Min(if wide { 1 } else { 3 }),
            Constraint::Length(1),
        ])
        .split(area);
    draw_title(frame, app, rows[0]);
    draw_tabs(frame, app, rows[1]);
    if wide {
        let grid_width = 4 + app.grid.columns as u16 * cell.0 + 3;
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Length(grid_width), Constraint::Min(30)])
            .split(Rect {
                height: rows[2].height + rows[3].height,
                ..rows[2]
            });
        draw_tiles(frame, app, cols[0], cell);
        let below = Rect {
            y: rows[3].y,
            height: rows[3].height,
            ..cols[0]
        };
        draw_status(frame, app, Rect { height: 1, ..below });
        let side = Layout::default()
            .direction(Direction::Vertical)
            .constraints([
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Min(4),
            ])
            .split(cols[1]);
        draw_details(frame, app, side[0]);
        draw_runs(frame, app, side[1]);
        // A tall terminal also shows the legend: the tiles' states per year, or the map's
        // classes.
        let legend_height = 2 + if app.show_map {
            tilecube::legend::classes().len() as u16
        } else {
            SUMMARY_STATES.len() as u16 + 1
        };
        let side2 = if side[2].height >= legend_height + 8 {
            let parts = Layout::default()
                .direction(Direction::Vertical)
                .constraints([Constraint::Length(legend_height), Constraint::Min(4)])
                .split(side[2]);
            draw_legend(frame, app, parts[0]);
            parts[1]
        } else {
            side[2]
        };
        let side = [side[0], side[1], side2];
        if app.show_logs && side[2].height > 12 {
            let parts = Layout::default()
                .direction(Direction::Vertical)
                .constraints([Constraint::Min(6), Constraint::Length(8)])
                .split(side[2]);
            draw_history(frame, app, parts[0]);
            draw_logs(frame, parts[1]);
        } else {
            draw_history(frame, app, side[2]);
        }
    } else {
        draw_tiles(frame, app, rows[2], cell);
        let panel = rows[3];
        draw_status(frame, app, Rect { height: 1, ..panel });
        let rest = Rect {
            y: panel.y + 1,
            height: panel.height.saturating_sub(1),
            ..panel
        };
        match app.focus {
            Focus::Grid => draw_details(frame, app, rest),
            Focus::Runs if app.show_logs && rest.height > 6 => {
                let parts = Layout::default()
                    .direction(Direction::Vertical)
                    .constraints([Constraint::Length(4), Constraint::Min(2)])
                    .split(rest);
                draw_runs(frame, app, parts[0]);
                draw_logs(frame, parts[1]);
            }
            Focus::Runs => draw_runs(frame, app, rest),
            Focus::History => draw_history(frame, app, rest),
        }
    }
    draw_footer(frame, app, rows[4]);
    if let Some(popup) = &app.popup {
        draw_popup(frame, app, popup, area);
    }
}

fn draw_title(frame: &mut Frame, app: &App, area: Rect) {
    let mut spans = vec![];
    // A browsed snapshot's banner comes first, so it shows however narrow the terminal.
    if let Some(b) = &app.browse {
        let what = match &b.diff_against {
            Some(other) => format!(
                "DIFF {}..{} ({}) Esc: head",
                short(other),
                short(&b.snapshot),
                b.message
            ),
            None => format!(
                "READ-ONLY SNAPSHOT {} \"{}\" Esc: head",
                short(&b.snapshot),
                b.message
            ),
        };
        spans.push(Span::styled(
            what,
            style(app, Color::Yellow).add_modifier(Modifier::REVERSED),
        ));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::styled(
        "tilecube ",
        Style::default().add_modifier(Modifier::BOLD),
    ));
    spans.push(Span::raw(format!("{} @ {}", app.repo, app.branch)));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn draw_tabs(frame: &mut Frame, app: &App, area: Rect) {
    let mut spans = vec![];
    for (i, &y) in app.years.iter().enumerate() {
        let (w, l) = app.completeness(y);
        let text = match app.loading {
            Some(_) => format!(" {}:{y} …/{l} ", i + 1),
            None => format!(" {}:{y} {w}/{l} ", i + 1),
        };
        let s = if i == app.year_index {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(text, s));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Characters a tile takes across and down: 2×1 at 80×24, growing with the room beside the
/// panels on a large terminal (3×3 at 160×48).
fn cell_size(area: Rect, app: &App) -> (u16, u16) {
    let wide = area.width >= grid_width(app) + 40 && area.height >= 24;
    if !wide {
        return (2, 1);
    }
    let (cols, rows) = (app.grid.columns.max(1) as u16, app.grid.rows.max(1) as u16);
    let w = (area.width.saturating_sub(4 + 3 + PANELS_MIN_WIDTH) / cols).clamp(2, 6);
    let h = (area.height.saturating_sub(5) / rows).clamp(1, 4);
    (w, h)
}

/// The narrowest the panels beside a grown grid get.
const PANELS_MIN_WIDTH: u16 = 40;

/// The grid, or the world map in its place (`m`) once the map is read.
fn draw_tiles(frame: &mut Frame, app: &App, area: Rect, cell: (u16, u16)) {
    if app.show_map
        && let Some(Ok(image)) = app.map_image()
    {
        return draw_map(frame, app, area, cell, image);
    }
    draw_grid(frame, app, area, cell);
}

/// The column labels every sixth column (and the last), above cells `cw` wide.
fn header_line(app: &App, cw: u16) -> Line<'static> {
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
fn row_label(app: &App, r: u32, line: u16) -> Span<'static> {
    if line == 0 {
        let label = app.grid.tile_at(Cell { col: 0, row: r }).to_string()[..3].to_string();
        Span::raw(format!("{label} "))
    } else {
        Span::raw("    ")
    }
}

fn draw_grid(frame: &mut Frame, app: &App, area: Rect, (cw, ch): (u16, u16)) {
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
                let glyph = state.glyph();
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
/// grid: the cursor's tile in brackets, selected tiles and tiles a diff changed marked.
fn draw_map(
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
                                .bg(super::widgets::legend_color(top))
                                .add_modifier(Modifier::BOLD),
                        ),
                        (Some(m), false) => Span::raw(m.to_string()),
                        (None, true) => Span::styled(
                            "▀",
                            Style::default()
                                .fg(super::widgets::legend_color(top))
                                .bg(super::widgets::legend_color(bottom)),
                        ),
                        (None, false) => Span::raw(super::widgets::shade(top).to_string()),
                    };
                    spans.push(span);
                }
            }
            lines.push(Line::from(spans));
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let now = app.now;
    let text = if app.writing {
        let p = &app.progress;
        let eta = p
            .eta(now)
            .map(|d| format!("{}s", d.as_secs()))
            .unwrap_or_else(|| "-".into());
        format!(
            "writing {}/{} tiles  {:.0} MB/s  ETA {eta}  threads {}/{} busy  queue {}",
            p.tiles_done,
            p.tiles_total,
            p.mb_per_s(now),
            p.busy.min(p.threads),
            p.threads,
            app.queued.len()
        )
    } else if let Some(what) = &app.loading {
        format!("loading: {what}…")
    } else {
        app.status_line.clone()
    };
    frame.render_widget(Paragraph::new(text).style(style(app, Color::Yellow)), area);
}

fn panel<'a>(title: &'a str, focused: bool) -> Block<'a> {
    let b = Block::default().borders(Borders::TOP).title(title);
    if focused {
        b.title_style(Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED))
    } else {
        b
    }
}

/// The states the legend counts, in its order.
const SUMMARY_STATES: [CellState; 8] = [
    CellState::Written,
    CellState::Uncommitted,
    CellState::Running { done: 0, total: 1 },
    CellState::Queued,
    CellState::Failed,
    CellState::Inconsistent,
    CellState::Listed,
    CellState::NoTile,
];

/// The legend panel: with the map, each class's colour (or shading glyph) and name; with
/// the grid, each tile state's glyph and how many tiles of each year are in it.
fn draw_legend(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = Vec::new();
    if app.show_map {
        for class in tilecube::legend::classes() {
            let swatch = if app.color {
                Span::styled("██", style(app, super::widgets::legend_color(class.from)))
            } else {
                let g = super::widgets::shade(class.from);
                Span::raw(format!("{g}{g}"))
            };
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
        for y in &app.years {
            header.push_str(&format!("{y:>5}"));
        }
        lines.push(Line::from(header));
        let mut counts = vec![[0usize; SUMMARY_STATES.len()]; app.years.len()];
        for (yi, &year) in app.years.iter().enumerate() {
            for tile in app.grid.tiles() {
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
    let title = if app.show_map {
        " classes "
    } else {
        " tiles per year "
    };
    frame.render_widget(Paragraph::new(lines).block(panel(title, false)), area);
}

fn draw_details(frame: &mut Frame, app: &App, area: Rect) {
    let year = app.year();
    let tile = app.cursor_tile();
    let state = app.cell_state(year, tile);
    let (w, s, e, n) = app.grid.bounds(tile);
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("{year}/{tile}"),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("  {}  ", state.name())),
        Span::raw(format!("bounds {w} {s} {e} {n}")),
    ])];
    if let Some(src) = &app.source_of(year, tile) {
        lines.push(Line::from(format!("source {src}")));
    }
    let chunks = match app.chunks_done(year, tile) {
        Some((d, t)) => format!("chunks {d}/{t}"),
        None => format!("chunks 0/{}", app.grid.chunks_per_tile()),
    };
    let by = app
        .written_by(year, tile)
        .map(|s| format!("  written by {}", short(s)))
        .unwrap_or_default();
    lines.push(Line::from(format!("{chunks}{by}")));
    if app.show_map {
        lines.push(Line::from(match app.map_image() {
            Some(Ok(m)) => format!(
                "map: {year} from level {} (1:{}), {}×{} px",
                m.level, m.factor, m.width, m.height
            ),
            Some(Err(e)) => format!("map: {e}"),
            None => format!("map: reading {year}…"),
        }));
    }
    if let Some(f) = app.failed.get(&(year, tile)) {
        lines.push(Line::styled(
            format!("error ({} attempts): {}", f.attempts, f.error),
            style(app, Color::Red),
        ));
    }
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .block(panel(" tile ", app.focus == Focus::Grid));
    frame.render_widget(p, area);
}

/// The runs panel: the newest run of the repository (going or how it ended), its log, and
/// the failed tiles and last commit.
fn draw_runs(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = Vec::new();
    match app.runs.first() {
        Some(run) => {
            let commits = run.record.as_ref().map(|r| r.commits).unwrap_or(0);
            lines.push(Line::from(format!(
                "run {} {}  {}/{} tiles  {} failed  {} commits",
                run.info.id, run.state, run.tiles_done, run.tiles_total, run.failed, commits
            )));
            let more = app
                .active_runs()
                .filter(|r| r.info.id != run.info.id)
                .count();
            if more > 0 {
                lines.push(Line::from(format!(
                    "{more} more runs going (x cancels all)"
                )));
            }
            lines.push(Line::from(format!("log {}", run.log.display())));
        }
        None => lines.push(Line::from(
            "no run yet: w launches one; it goes on if the console leaves",
        )),
    }
    if !app.failed.is_empty() {
        lines.push(Line::styled(
            format!(
                "failed tiles {} (f selects them, w retries)",
                app.failed.len()
            ),
            style(app, Color::Red),
        ));
    }
    if let Some(c) = app.history.first() {
        let local = c.time.with_timezone(&chrono::Local);
        lines.push(Line::from(format!(
            "last commit {} {} {}",
            short(&c.id),
            local.format("%H:%M:%S"),
            c.message
        )));
    }
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .block(panel(" runs ", app.focus == Focus::Runs));
    frame.render_widget(p, area);
}

/// The log panel: engine and console messages go here, never to the screen underneath.
fn draw_logs(frame: &mut Frame, area: Rect) {
    let w = tui_logger::TuiLoggerWidget::default()
        .output_target(false)
        .output_timestamp(Some("%H:%M:%S".into()))
        .block(panel(" log ", false));
    frame.render_widget(w, area);
}

fn draw_history(frame: &mut Frame, app: &App, area: Rect) {
    let height = area.height.saturating_sub(1) as usize;
    let start = app.history_index.saturating_sub(height.saturating_sub(1));
    let lines: Vec<Line> = app
        .history
        .iter()
        .enumerate()
        .skip(start)
        .take(height)
        .map(|(i, c)| {
            let local = c.time.with_timezone(&chrono::Local);
            let tiles = if c.tile_count() > 0 {
                format!(" [{} tiles]", c.tile_count())
            } else {
                String::new()
            };
            let text = format!(
                "{} {} {}{tiles}",
                short(&c.id),
                local.format("%m-%d %H:%M"),
                c.message
            );
            let mut s = Style::default();
            if i == app.history_index && app.focus == Focus::History {
                s = s.add_modifier(Modifier::REVERSED);
            }
            if app.browse.as_ref().is_some_and(|b| b.snapshot == c.id) {
                s = s.add_modifier(Modifier::BOLD);
            }
            Line::styled(text, s)
        })
        .collect();
    let p = Paragraph::new(lines).block(panel(" history ", app.focus == Focus::History));
    frame.render_widget(p, area);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let which = match app.focus {
        Focus::History => Footer::History,
        _ if app.browse.is_some() => Footer::Browse,
        _ => Footer::Grid,
    };
    frame.render_widget(
        Paragraph::new(keys::footer(which, app.years.len()))
            .style(Style::default().add_modifier(Modifier::DIM)),
        area,
    );
}

/// The plan popup's lines, at most `height` of at most `width` characters: the plan, what
/// landed, a row per shard (as many as fit, those still to finish first), then failures.
fn plan_lines(
    view: &crate::tui::state::PlanView,
    width: usize,
    height: usize,
) -> Vec<Line<'static>> {
    plan_text(view, height)
        .into_iter()
        .map(|l| Line::from(l.chars().take(width).collect::<String>()))
        .collect()
}

fn plan_text(view: &crate::tui::state::PlanView, height: usize) -> Vec<String> {
    let mut out = vec![];
    let Some(st) = &view.status else {
        out.push(format!("reading plan {} ...", view.at));
        if let Some(e) = &view.error {
            out.push(format!("error: {e}"));
        }
        return out;
    };
    out.push(format!(
        "plan {}: {} tiles in {} shards",
        st.id,
        st.jobs,
        st.shards.len()
    ));
    out.push(format!("shards: {}", st.states_line()));
    out.push(st.landed_line());
    if let Some(e) = &view.error {
        out.push(format!("last read failed: {e}"));
    }
    out.push(tilecube::scaleout::ShardStatus::HEADER.to_string());
    let room = height.saturating_sub(out.len() + st.failed.len().min(3) + 1);
    // Shards still to finish first: they are what the operator watches.
    let mut rows: Vec<&tilecube::scaleout::ShardStatus> = st.shards.iter().collect();
    rows.sort_by_key(|s| (s.state == "done", s.shard));
    out.extend(rows.iter().take(room).map(|s| s.row()));
    if rows.len() > room {
        out.push(format!("… {} more shards", rows.len() - room));
    }
    for f in st.failed.iter().take(3) {
        out.push(format!(
            "! {}/{} (shard {}): {}",
            f.failure.year, f.failure.tile, f.shard, f.failure.error
        ));
    }
    out.truncate(height);
    out
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_popup(frame: &mut Frame, app: &App, popup: &Popup, area: Rect) {
    let (title, lines, w, h): (&str, Vec<Line>, u16, u16) = match popup {
        Popup::Help => {
            let lines = keys::help(app.years.len())
                .into_iter()
                .map(|(k, v)| Line::from(format!("{k:<14} {v}")))
                .collect::<Vec<_>>();
            let n = lines.len() as u16;
            (" keys ", lines, 66, n + 2)
        }
        Popup::ConfirmWrite {
            tiles,
            years,
            threads,
        } => (
            " write ",
            vec![
                Line::from(format!(
                    "Write {tiles} tiles of {years} year(s) on {threads} threads?"
                )),
                Line::from("It runs on its own: leaving the console never stops it."),
                Line::from("Enter/y: write   Esc/n: cancel"),
            ],
            60,
            5,
        ),
        Popup::TagPrompt { snapshot, name } => (
            " tag ",
            vec![
                Line::from(format!("tag snapshot {}: {name}_", short(snapshot))),
                Line::from("Enter: tag   Esc: cancel"),
            ],
            50,
            4,
        ),
        Popup::Leave => {
            let (going, done, total) = app.active_runs().fold((0, 0, 0), |(n, d, t), r| {
                (n + 1, d + r.tiles_done, t + r.tiles_total)
            });
            (
                " quit ",
                vec![
                    Line::from(format!("{going} run(s) going: {done}/{total} tiles.")),
                    Line::from("Enter/l: leave running and quit"),
                    Line::from("c: cancel (finished tiles kept) and quit"),
                    Line::from("Esc: stay"),
                ],
                50,
                6,
            )
        }
        Popup::Plan => {
            let inner_w = area.width.saturating_sub(2).min(78);
            let inner_h = area.height.saturating_sub(2);
            let lines = match &app.plan {
                Some(view) => plan_lines(view, inner_w as usize, inner_h as usize),
                None => vec![],
            };
            let n = lines.len() as u16;
            (
                " plan (Esc closes) ",
                lines,
                inner_w + 2,
                (n + 2).min(area.height),
            )
        }
        Popup::QuickLook { .. } => {
            let inner_w = area.width.saturating_sub(4).min(64);
            let inner_h = area.height.saturating_sub(4).min(32);
            let lines = match &app.quicklook {
                Some((side, px)) => {
                    quicklook_lines(*side, px, inner_w as usize, inner_h as usize, app.color)
                }
                None => vec![Line::from("reading the tile from the cube ...")],
            };
            let title: &'static str = " quick-look (Esc closes) ";
            (title, lines, inner_w + 2, inner_h + 2)
        }
    };
    let rect = centered(area, w, h);
    frame.render_widget(Clear, rect);
    let title = match popup {
        Popup::QuickLook { year, tile } => format!(" {year}/{tile}{title}"),
        _ => title.to_string(),
    };
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(p, rect);
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::tui::state::{Browse, Failure};
    use tilecube::cube::{Commit, Coverage, TileState, WrittenTiles};
    use tilecube::grid::{Grid, TileName};
    use tilecube::preset::Preset;

    fn t(s: &str) -> TileName {
        s.parse().unwrap()
    }

    /// A console on a small cube: three tiles listed in 2000, one written, one history entry.
    fn app() -> App {
        // SAFETY: each test runs in its own process under nextest; set before any thread.
        unsafe { std::env::set_var("TZ", "UTC") };
        let grid = Grid::from_preset(&Preset::glad(), Some(400)).unwrap();
        let mut app = App::new(
            "/data/cube".into(),
            "main".into(),
            grid,
            vec![2000, 2005, 2010, 2015, 2020],
            2,
        );
        let listed = ["80N_180W", "80N_170W", "80N_160W", "70N_180W", "00N_000E"].map(t);
        app.listed.insert(2000, listed.into_iter().collect());
        app.listed
            .insert(2005, [t("00N_000E")].into_iter().collect());
        app.coverage = Coverage {
            tiles: [(
                (2000, t("80N_170W")),
                TileState::Written {
                    chunks: 1,
                    snapshot: "SNAPAAAAAAAAAAAAAAAA".into(),
                },
            )]
            .into(),
        };
        let mut w = WrittenTiles::new();
        w.entry(2000).or_default().insert(t("80N_170W"), 1);
        let time = Utc.with_ymd_and_hms(2026, 11, 24, 12, 30, 0).unwrap();
        app.history = vec![
            Commit {
                id: "SNAPAAAAAAAAAAAAAAAA".into(),
                parent: Some("INITBBBBBBBBBBBBBBBB".into()),
                time,
                message: "write 1 tile: 2000/80N_170W".into(),
                written: w,
                init: false,
                plan: None,
            },
            Commit {
                id: "INITBBBBBBBBBBBBBBBB".into(),
                parent: None,
                time,
                message: "initialize array".into(),
                written: WrittenTiles::new(),
                init: true,
                plan: None,
            },
        ];
        app
    }

    fn render(app: &App, w: u16, h: u16) -> String {
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| draw(f, app)).unwrap();
        let buf = term.backend().buffer();
        (0..h)
            .map(|y| {
                let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
                line.trim_end().to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn both(name: &str, app: &App) {
        insta::assert_snapshot!(format!("{name}_80x24"), render(app, 80, 24));
        insta::assert_snapshot!(format!("{name}_160x48"), render(app, 160, 48));
    }

    #[test]
    fn loading() {
        // The first frame on a repository still being read: tiles listed, none known yet.
        let mut a = app();
        a.coverage = Coverage::default();
        a.history.clear();
        a.loading = Some("opening s3://bucket/cube".into());
        both("loading", &a);
    }

    #[test]
    fn idle() {
        both("idle", &app());
    }

    #[test]
    fn plan_watched() {
        use tilecube::scaleout::record::{RecordFailure, ShardRecord, ShardState};
        use tilecube::scaleout::watch::PlanFailure;
        use tilecube::scaleout::{PlanStatus, ShardStatus};
        let time = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let record = |shard: usize, state: ShardState, failed: Vec<RecordFailure>| ShardRecord {
            plan: "3f2a9c81d07e".into(),
            shard,
            attempt: "a".into(),
            host: format!("node{shard:02}"),
            pid: 100,
            task: format!("SLURM_ARRAY_TASK_ID={shard} (Slurm)"),
            mode: "checkpoint".into(),
            stage: None,
            state,
            started: time,
            updated: time,
            jobs: 4,
            skipped: 0,
            written: 2,
            landed: 2,
            failed,
            ..Default::default()
        };
        let failure = RecordFailure {
            year: 2000,
            tile: "80N_160W".into(),
            error: "not a GeoTIFF".into(),
            attempts: 1,
        };
        let shard =
            |i: usize, state: &str, landed: usize, record: Option<ShardRecord>| ShardStatus {
                shard: i,
                jobs: 4,
                state: state.into(),
                landed,
                staged: None,
                record,
            };
        let mut a = app();
        a.plan = Some(crate::tui::state::PlanView {
            at: "s3://bucket/plans/glad".into(),
            status: Some(PlanStatus {
                id: "3f2a9c81d07e".into(),
                repo: "s3://bucket/glad".into(),
                branch: "main".into(),
                base: "INITBBBBBBBBBBBBBBBB".into(),
                jobs: 16,
                landed: 9,
                staged: None,
                merged: None,
                commits: 5,
                shards: vec![
                    shard(0, "done", 4, Some(record(0, ShardState::Done, vec![]))),
                    shard(
                        1,
                        "running",
                        2,
                        Some(record(1, ShardState::Running, vec![])),
                    ),
                    shard(
                        2,
                        "failed",
                        3,
                        Some(record(2, ShardState::Failed, vec![failure.clone()])),
                    ),
                    shard(3, "not started", 0, None),
                ],
                failed: vec![PlanFailure { shard: 2, failure }],
            }),
            error: None,
        });
        a.popup = Some(Popup::Plan);
        both("plan", &a);
    }

    #[test]
    fn selection() {
        let mut a = app();
        a.selected.insert((2000, t("80N_180W")));
        a.selected.insert((2000, t("80N_160W")));
        a.cursor = tilecube::grid::Cell { col: 2, row: 0 };
        both("selection", &a);
    }

    #[test]
    fn running_with_progress() {
        use tilecube::scaleout::ShardRecord;
        use tilecube::scaleout::record::TileChunks;
        let mut a = app();
        let record = ShardRecord {
            jobs: 3,
            written: 1,
            threads: 2,
            running: vec![TileChunks {
                tile: "2000/80N_180W".into(),
                done: 3,
                total: 16,
            }],
            queued: vec!["2000/80N_160W".into()],
            written_tiles: vec!["2000/70N_180W".into()],
            // Started now: the ETA reads 0 s whenever the test runs.
            started: chrono::Utc::now(),
            ..Default::default()
        };
        a.apply_runs(vec![crate::tui::state::fixtures::run(
            "7c1e0a9b3f21",
            "running",
            record,
        )]);
        both("running", &a);
        a.focus = Focus::Runs;
        both("running_runs_panel", &a);
    }

    #[test]
    fn failed_tile_with_its_error() {
        let mut a = app();
        a.failed.insert(
            (2000, t("80N_180W")),
            Failure {
                error: "has 3 bands; expected 1".into(),
                attempts: 1,
            },
        );
        both("failed", &a);
    }

    #[test]
    fn snapshot_browse_and_diff() {
        let mut a = app();
        a.browse = Some(Browse {
            snapshot: "INITBBBBBBBBBBBBBBBB".into(),
            message: "initialize array".into(),
            coverage: Default::default(),
            diff_against: None,
            changed: Default::default(),
        });
        both("browse", &a);
        a.browse = Some(Browse {
            snapshot: "SNAPAAAAAAAAAAAAAAAA".into(),
            message: "1 tiles changed".into(),
            coverage: [(2000, t("80N_170W"))].into(),
            diff_against: Some("INITBBBBBBBBBBBBBBBB".into()),
            changed: [(2000, t("80N_170W"))].into(),
        });
        a.focus = Focus::History;
        both("diff", &a);
    }

    /// A map image of the whole grid: ocean (254) around a land block of classes by
    /// column, no data (255) in the north.
    fn map_app() -> App {
        let mut a = app();
        let (w, h) = (36 * 8, 14 * 8);
        let pixels = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                if y < 8 {
                    255
                } else if (60..230).contains(&x) && (20..90).contains(&y) {
                    [10, 30, 60, 120, 244, 250][(x / 30) % 6]
                } else {
                    254
                }
            })
            .collect();
        a.show_map = true;
        a.head = Some("SNAPAAAAAAAAAAAAAAAA".into());
        let key = a.map_key();
        a.map = Some((
            key,
            Ok(tilecube::cube::LevelImage {
                level: 3,
                factor: 8,
                row0: 0,
                col0: 0,
                width: w,
                height: h,
                pixels,
            }),
        ));
        a.cursor = tilecube::grid::Cell { col: 12, row: 5 };
        a.selected.insert((2000, t("00N_000E")));
        a
    }

    /// Share of a rendered screen's cells that are blank.
    fn blank_share(screen: &str, w: usize, h: usize) -> f64 {
        let filled: usize = screen
            .lines()
            .map(|l| l.chars().filter(|c| *c != ' ').count())
            .sum();
        1.0 - filled as f64 / (w * h) as f64
    }

    #[test]
    fn world_map_in_colour_and_without() {
        let a = map_app();
        both("map", &a);
        let mut plain = map_app();
        plain.color = false;
        both("map_no_color", &plain);
        // Without colour the data still reads: ocean, classes and no data by glyph.
        let screen = render(&plain, 80, 24);
        for glyph in ['░', '▒', '▓', '%', '#', '@', '~', '[', '*'] {
            assert!(screen.contains(glyph), "{glyph} missing:\n{screen}");
        }
    }

    /// A console on a cube being written: a history that fills its panel.
    fn with_history(mut a: App) -> App {
        let first = a.history[0].clone();
        for i in 0..30 {
            let mut c = first.clone();
            c.id = format!("SNAP{i:0>16}");
            c.message = format!("write 12 tiles: 2000/{i:02}N_010E, 2000/{i:02}N_020E, …");
            a.history.insert(0, c);
        }
        a
    }

    #[test]
    fn a_large_terminal_grows_the_cells_and_leaves_little_blank() {
        let grid = render(&with_history(app()), 160, 48);
        let map = render(&with_history(map_app()), 160, 48);
        for (name, screen) in [("grid", &grid), ("map", &map)] {
            let blank = blank_share(screen, 160, 48);
            assert!(
                blank <= 0.25,
                "{name}: {:.0} % blank at 160×48:\n{screen}",
                blank * 100.0
            );
        }
        // Three columns and three lines a tile: the grid's rows reach line 45.
        assert!(grid.lines().nth(44).is_some_and(|l| l.starts_with("    ")));
        let small = render(&app(), 80, 24);
        assert!(blank_share(&small, 80, 24) < 0.6, "80×24 still fits");
    }

    #[test]
    fn quicklook_help_and_quit_confirm() {
        let mut a = app();
        a.popup = Some(Popup::QuickLook {
            year: 2000,
            tile: t("80N_170W"),
        });
        let px: Vec<u8> = (0..64 * 64)
            .map(|i| if (i / 64) < 20 { 255 } else { (i % 64) as u8 })
            .collect();
        a.quicklook = Some((64, px));
        a.color = false;
        both("quicklook", &a);
        let mut a = app();
        a.popup = Some(Popup::Help);
        both("help", &a);
        let record = tilecube::scaleout::ShardRecord {
            jobs: 10,
            landed: 4,
            ..Default::default()
        };
        a.apply_runs(vec![crate::tui::state::fixtures::run(
            "7c1e0a9b3f21",
            "running",
            record,
        )]);
        a.popup = Some(Popup::Leave);
        both("quit_confirm", &a);
    }

    #[test]
    fn no_color_keeps_every_state_readable_by_glyph() {
        let mut a = app();
        a.failed.insert(
            (2000, t("80N_180W")),
            Failure {
                error: "bad".into(),
                attempts: 1,
            },
        );
        a.uncommitted.insert((2000, t("80N_160W")));
        a.color = false;
        both("no_color", &a);
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        term.draw(|f| draw(f, &a)).unwrap();
        let buf = term.backend().buffer();
        for cell in buf.content() {
            assert_eq!(cell.fg, Color::Reset, "no colour with NO_COLOR");
            assert_eq!(cell.bg, Color::Reset, "no colour with NO_COLOR");
        }
        let row = render(&a, 80, 24).lines().nth(3).unwrap().to_string();
        assert!(row.starts_with("80N ! # + "), "{row}");
        // With colour the same states differ by colour as well.
        a.color = true;
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        term.draw(|f| draw(f, &a)).unwrap();
        assert_eq!(term.backend().buffer()[(4, 3)].fg, Color::Red);
        assert_eq!(term.backend().buffer()[(6, 3)].fg, Color::Green);
    }
}
