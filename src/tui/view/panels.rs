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

/// The legend panel: with the map, each class's colour (or shading glyph) and name; with
/// the grid, each tile state's glyph and how many tiles of each year are in it.
pub(super) fn draw_legend(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = Vec::new();
    if app.show_map {
        for class in tilecube::legend::classes() {
            let swatch = if app.color {
                Span::styled(
                    "██",
                    style(app, crate::tui::widgets::legend_color(class.from)),
                )
            } else {
                let g = crate::tui::widgets::shade(class.from);
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
pub(super) fn draw_runs(frame: &mut Frame, app: &App, area: Rect) {
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
pub(super) fn draw_logs(frame: &mut Frame, area: Rect) {
    let w = tui_logger::TuiLoggerWidget::default()
        .output_target(false)
        .output_timestamp(Some("%H:%M:%S".into()))
        .block(panel(" log ", false));
    frame.render_widget(w, area);
}

pub(super) fn draw_history(frame: &mut Frame, app: &App, area: Rect) {
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
