//! The popups over the screen: help (keys and glyphs), confirmations, a tile's details,
//! quick-look, tag and tile-name entry, the plan.

use super::*;

pub(super) fn draw_popup(frame: &mut Frame, app: &App, popup: &Popup, area: Rect) {
    let (title, lines, w, h): (&str, Vec<Line>, u16, u16) = match popup {
        Popup::Help => {
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
            // As wide as its longest line and a space either side, within the screen: no
            // line runs into the border.
            let widest = lines.iter().map(Line::width).max().unwrap_or(0) as u16;
            let lines = lines
                .into_iter()
                .map(|l| {
                    let mut spans = vec![Span::raw(" ")];
                    spans.extend(l.spans);
                    Line::from(spans).style(l.style)
                })
                .collect();
            (
                " keys and glyphs (Esc closes) ",
                lines,
                (widest + 4).max(78).min(area.width),
                n + 2,
            )
        }
        Popup::ConfirmWrite(ask) => {
            let mut lines = vec![Line::from(format!(
                "Write {} of {} to branch {} on {}?",
                tilecube::text::plural(ask.tiles, "tile"),
                tilecube::text::plural(ask.years, "year"),
                ask.branch,
                tilecube::text::plural(ask.threads, "thread")
            ))];
            if app.source.is_some() {
                lines.push(Line::from(match &ask.bytes {
                    Some(b) => format!("It reads {}.", b.text()),
                    None => "It reads: looking up the tiles' sizes at the source…".to_string(),
                }));
            }
            if ask.rewrites > 0 {
                lines.push(Line::styled(
                    format!(
                        "{} written already: written again over the old.",
                        if ask.rewrites == 1 {
                            "1 of them is".to_string()
                        } else {
                            format!("{} of them are", ask.rewrites)
                        }
                    ),
                    style(app, Color::Yellow),
                ));
            }
            lines.push(Line::from(format!("commit message: {}_", ask.message)));
            lines.push(Line::styled(
                "  (empty: each commit names its tiles)",
                Style::default().add_modifier(Modifier::DIM),
            ));
            lines.push(Line::from(
                "It runs on its own: leaving the console never stops it.",
            ));
            lines.push(Line::from("Enter: write   Esc: cancel"));
            let n = lines.len() as u16;
            (" write ", lines, 66, n + 2)
        }
        Popup::ConfirmCancel { runs } => {
            let tally = app
                .active_runs()
                .filter(|r| runs.contains(&r.info.id))
                .fold(tilecube::runs::Tally::default(), |t, r| t + r.tally());
            (
                " cancel ",
                vec![
                    Line::from(format!(
                        "Cancel {} going ({})?",
                        tilecube::text::plural(runs.len(), "run"),
                        runs.join(", ")
                    )),
                    Line::from(format!("So far: {tally}.")),
                    Line::from("Finished tiles land; running ones stop at their next strip."),
                    Line::from("Enter/y: cancel them   Esc/n: keep them going"),
                ],
                66,
                6,
            )
        }
        Popup::TagPrompt {
            snapshot,
            name,
            refused,
        } => {
            let mut lines = vec![Line::from(format!(
                "tag snapshot {}: {name}_",
                short(snapshot)
            ))];
            match refused {
                Some(why) => lines.push(Line::styled(
                    format!("refused: {why}"),
                    style(app, Color::Red),
                )),
                None => lines.push(Line::styled(
                    "letters, digits, . _ - (a release: v1.0)",
                    Style::default().add_modifier(Modifier::DIM),
                )),
            }
            lines.push(Line::from("Enter: tag   Esc: cancel"));
            (" tag ", lines, 60, 5)
        }
        Popup::Find { text, error } => {
            let mut lines = vec![Line::from(format!("go to tile: {text}_"))];
            match error {
                Some(e) => lines.push(Line::styled(e.clone(), style(app, Color::Red))),
                None => lines.push(Line::styled(
                    "a name (10N_020E) or a year and a name (2005/10N_020E)",
                    Style::default().add_modifier(Modifier::DIM),
                )),
            }
            lines.push(Line::from("Enter: go   Esc: cancel"));
            (" find ", lines, 60, 5)
        }
        Popup::Log { scroll, .. } => {
            let inner_w = area.width.saturating_sub(4);
            let inner_h = area.height.saturating_sub(4);
            let lines: Vec<Line> = match &app.log_lines {
                Ok(all) if all.is_empty() => vec![Line::from("reading the log …")],
                Ok(all) => {
                    // The window ending `scroll` lines above the last one, a line a row (long
                    // lines cut: the popup is as wide as the terminal allows); near the top it
                    // stays whole, from the first line (Home shows the oldest lines, not one).
                    let end = all
                        .len()
                        .saturating_sub(*scroll)
                        .max(all.len().min(inner_h as usize));
                    let start = end.saturating_sub(inner_h as usize);
                    all[start..end]
                        .iter()
                        .map(|l| Line::from(l.chars().take(inner_w as usize).collect::<String>()))
                        .collect()
                }
                Err(e) => vec![Line::styled(e.clone(), style(app, Color::Red))],
            };
            let title: &'static str = " log (↑↓ PgUp PgDn Home End, Esc closes) ";
            (title, lines, inner_w + 2, inner_h + 2)
        }
        Popup::Tile { year, tile } => {
            let inner_w = area.width.saturating_sub(4).min(100);
            let lines = tile_lines(app, *year, *tile, true);
            // Its height once wrapped to the popup's width.
            let rows: u16 = lines
                .iter()
                .map(|l| (l.width() as u16).div_ceil(inner_w.max(1)).max(1))
                .sum();
            (
                " tile (Esc closes) ",
                lines,
                inner_w + 2,
                (rows + 2).min(area.height),
            )
        }
        Popup::Leave => {
            let runs: Vec<_> = app.active_runs().collect();
            let tally = runs
                .iter()
                .fold(tilecube::runs::Tally::default(), |t, r| t + r.tally());
            (
                " quit ",
                vec![
                    Line::from(format!(
                        "{} going: {tally}.",
                        tilecube::text::plural(runs.len(), "run")
                    )),
                    Line::from("Enter/l: leave running and quit"),
                    Line::from("c: cancel (finished tiles kept) and quit"),
                    Line::from("Esc: stay"),
                ],
                60,
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
            // The picture, centred, then the legend of the classes it shows.
            let lines = match &app.quicklook {
                Some((side, px)) => {
                    let mut l = quicklook_lines(
                        *side,
                        px,
                        inner_w as usize,
                        inner_h.saturating_sub(2) as usize,
                        app.color,
                    );
                    l.push(Line::from(""));
                    l.push(crate::tui::widgets::classes_line(
                        px,
                        inner_w as usize,
                        app.color,
                    ));
                    l
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
        Popup::Log { run, .. } => format!(" run {run}{title}"),
        _ => title.to_string(),
    };
    let mut p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::default().borders(Borders::ALL).title(title));
    if matches!(popup, Popup::QuickLook { .. }) {
        p = p.alignment(ratatui::layout::Alignment::Center);
    }
    frame.render_widget(p, rect);
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
