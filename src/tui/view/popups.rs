//! The popups over the screen: help, confirmations, quick-look, tag entry, the plan.

use super::*;

pub(super) fn draw_popup(frame: &mut Frame, app: &App, popup: &Popup, area: Rect) {
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
