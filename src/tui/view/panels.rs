//! The panels beside or below the grid: the legend, the tile's details, the runs, the log,
//! the history, and a watched plan's shards.

use super::*;

/// The states the legend counts, in its order.
pub(super) const SUMMARY_STATES: [CellState; 9] = [
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
pub(super) const LEGEND_NARROW_WIDTH: u16 = 20;

/// The legend right of the grid on a terminal of 100 columns or so: each state's glyph and
/// how many of the year's tiles are in it (with the map: the classes).
pub(super) fn draw_legend_narrow(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = vec![Line::from(format!(" {}", app.year()))];
    if app.show_map {
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
        Span::styled("██", style(app, crate::tui::widgets::legend_color(from)))
    } else {
        let g = crate::tui::widgets::shade(from);
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
pub(super) fn draw_legend(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = Vec::new();
    if app.show_map {
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
    let title = if app.show_map {
        " classes "
    } else {
        " tiles per year "
    };
    frame.render_widget(Paragraph::new(lines).block(panel(title, false)), area);
}

pub(super) fn draw_details(frame: &mut Frame, app: &App, area: Rect) {
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
pub(super) fn tile_lines(
    app: &App,
    year: i32,
    tile: tilecube::grid::TileName,
    full: bool,
) -> Vec<Line<'static>> {
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
    // With the map: which level it is drawn from, and (where no legend panel shows it) the
    // classes it shows.
    if app.show_map && !full {
        lines.push(Line::from(match app.map_image() {
            Some(Ok(m)) => format!(
                "map: {year} from level {} (1:{}), {}×{} px",
                m.level, m.factor, m.width, m.height
            ),
            Some(Err(e)) => format!("map: {e}"),
            None => format!("map: reading {year}…"),
        }));
        if let Some(Ok(m)) = app.map_image() {
            lines.push(crate::tui::widgets::classes_line(&m.pixels, 78, app.color));
        }
    }
    if state == CellState::NoTile && !app.failed.contains_key(&(year, tile)) {
        if app.browse.is_none() {
            lines.push(Line::from(format!(
                "the source lists no tile here for {year} (ocean, or not published)"
            )));
        }
        return lines;
    }
    if let Some(f) = app.failed.get(&(year, tile)) {
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
    if let Some(src) = &app.source_of(year, tile) {
        let note = if app.source_unknown.contains(&(year, tile)) {
            "  (source unknown: written before sources were recorded)"
        } else if app.changed.contains(&(year, tile)) {
            "  (changed since written)"
        } else {
            ""
        };
        lines.push(Line::from(format!("source {src}{note}")));
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
    lines
}

/// The runs panel: the newest run of the repository (going or how it ended), its log, and
/// the failed tiles and last commit.
/// The failed tiles by name, the first with its reason: `Enter` in the runs panel goes
/// there.
fn failed_lines(app: &App) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let failed = app.failed_in_order();
    if let Some(&(y, t)) = failed.first() {
        let names: Vec<String> = failed
            .iter()
            .take(4)
            .map(|(y, t)| format!("{y}/{t}"))
            .collect();
        let more = failed.len().saturating_sub(names.len());
        lines.push(Line::styled(
            format!(
                "failed: {}{} (Enter goes there, f selects, w retries)",
                names.join(" "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            style(app, Color::Red),
        ));
        if let Some(f) = app.failed.get(&(y, t)) {
            lines.push(Line::styled(
                format!("{y}/{t}: {}", f.error),
                style(app, Color::Red),
            ));
        }
    }
    lines
}

pub(super) fn draw_runs(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = Vec::new();
    match app.runs.first() {
        Some(run) => {
            let commits = run.record.as_ref().map(|r| r.commits).unwrap_or(0);
            let state = if app.cancelling.contains(&run.info.id) && run.is_active() {
                "cancelling…".to_string()
            } else {
                run.state.to_string()
            };
            lines.push(Line::from(format!(
                "run {} {state}: {}, {}",
                run.info.id,
                run.tally(),
                tilecube::text::plural(commits, "commit")
            )));
            if let Some(note) = run.stall_note(app.now) {
                lines.push(Line::styled(
                    format!("{note} (worker pid {} alive; its log below)", run.info.pid),
                    style(app, Color::Yellow),
                ));
            }
            if let Some(reason) = run.stop_reason() {
                lines.push(Line::styled(
                    format!("stopped: {reason}"),
                    style(app, Color::Red),
                ));
            }
            lines.extend(failed_lines(app));
            let more = app
                .active_runs()
                .filter(|r| r.info.id != run.info.id)
                .count();
            if more > 0 {
                lines.push(Line::from(format!(
                    "{} going (x cancels all)",
                    tilecube::text::plural(more, "more run")
                )));
            }
            lines.push(Line::from(format!("log {}", run.log.display())));
        }
        None => {
            lines.push(Line::from(
                "no run yet: w launches one; it goes on if the console leaves",
            ));
            lines.extend(failed_lines(app));
        }
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

/// The log panel: engine and console messages go here, never to the screen underneath; an
/// operator's words only (time, level, message), no source file or line.
pub(super) fn draw_logs(frame: &mut Frame, area: Rect) {
    let w = tui_logger::TuiLoggerWidget::default()
        .output_target(false)
        .output_file(false)
        .output_line(false)
        .output_timestamp(Some("%H:%M:%S".into()))
        .block(panel(" log ", false));
    frame.render_widget(w, area);
}

pub(super) fn draw_history(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.focus == Focus::History;
    let chosen = app.history.get(app.history_index);
    // Focused, the chosen snapshot's whole message (and tags) sits at the bottom, wrapped.
    let about: Option<(String, u16)> = chosen.filter(|_| focused).map(|c| {
        let tags = app
            .tags
            .get(&c.id)
            .map(|t| format!(" (tag: {})", t.join(", ")))
            .unwrap_or_default();
        let text = format!("{}{tags}: {}", c.id, c.message);
        let width = area.width.max(1) as usize;
        let rows = text.chars().count().div_ceil(width).clamp(1, 3) as u16;
        (text, rows)
    });
    let about_rows = about.as_ref().map(|(_, r)| *r).unwrap_or(0);
    let list_height = area.height.saturating_sub(1).saturating_sub(about_rows) as usize;
    let height = list_height.max(1);
    let start = app.history_index.saturating_sub(height.saturating_sub(1));
    let mut lines: Vec<Line> = app
        .history
        .iter()
        .enumerate()
        .skip(start)
        .take(height)
        .map(|(i, c)| {
            let local = c.time.with_timezone(&chrono::Local);
            let tiles = if c.tile_count() > 0 {
                format!(" [{}]", tilecube::text::plural(c.tile_count(), "tile"))
            } else {
                String::new()
            };
            let tags = app
                .tags
                .get(&c.id)
                .map(|t| format!("({}) ", t.join(", ")))
                .unwrap_or_default();
            let text = format!(
                "{} {} {tags}{}{tiles}",
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
    lines.truncate(height);
    let list_rows = lines.len();
    let title = match app.history.len() {
        0 => " history ".to_string(),
        n => format!(" history {}/{n} ", app.history_index + 1),
    };
    let p = Paragraph::new(lines).block(panel(&title, focused));
    frame.render_widget(p, area);
    if let Some((text, _)) = about {
        let rect = Rect {
            y: area.y + 1 + list_rows as u16,
            height: area.height.saturating_sub(1 + list_rows as u16),
            ..area
        };
        frame.render_widget(
            Paragraph::new(text)
                .style(Style::default().add_modifier(Modifier::DIM))
                .wrap(Wrap { trim: true }),
            rect,
        );
    }
}

/// The plan popup's lines, at most `height` of at most `width` characters: the plan, what
/// landed, a row per shard (as many as fit, those still to finish first), then failures.
pub(super) fn plan_lines(
    view: &crate::tui::state::PlanView,
    width: usize,
    height: usize,
) -> Vec<Line<'static>> {
    plan_text(view, height)
        .into_iter()
        .map(|l| Line::from(l.chars().take(width).collect::<String>()))
        .collect()
}

pub(super) fn plan_text(view: &crate::tui::state::PlanView, height: usize) -> Vec<String> {
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
