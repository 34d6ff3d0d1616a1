//! The history panel: the branch's commits, newest first, with their tags; the snapshot
//! chosen; its keys (choose, open read-only, diff with the one open, tag) and its drawing
//! (a line a commit, the chosen one's whole message at the bottom when focused).
//!
//! Invariants: the chosen index stays within the history (clamped when it is read again);
//! a diff always compares the older snapshot with the newer, whichever was opened first.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use tilecube::cube::Commit;

use super::look::{panel, short};
use super::popups::tag;
use crate::tui::keys::Command;
use crate::tui::msg::Action;
use crate::tui::state::{App, Focus};

/// The history panel's own state.
#[derive(Debug, Clone, Default)]
pub struct HistoryPanel {
    /// The snapshot chosen: an index into the history, newest first.
    pub index: usize,
}

impl HistoryPanel {
    /// The history was read again: the choice stays within it.
    pub fn clamp(&mut self, len: usize) {
        self.index = self.index.min(len.saturating_sub(1));
    }
}

/// The commit chosen, if the history has any.
pub fn chosen(app: &App) -> Option<&Commit> {
    app.cube.history.get(app.history.index)
}

/// A command of the history panel.
pub fn on_command(app: &mut App, command: Command) -> Vec<Action> {
    let n = app.cube.history.len();
    match command {
        Command::Up => app.history.index = app.history.index.saturating_sub(1),
        Command::Down => app.history.index = (app.history.index + 1).min(n.saturating_sub(1)),
        Command::Open => {
            if let Some(c) = chosen(app) {
                return vec![Action::Browse {
                    snapshot: c.id.clone(),
                    message: c.message.clone(),
                }];
            }
        }
        Command::Diff => {
            let (Some(b), Some(c)) = (&app.cube.browse, chosen(app)) else {
                app.status_line = "open a snapshot with Enter, then d on another".into();
                return Vec::new();
            };
            // Old → new: the history is newest first.
            let (from, to) = if app.cube.position(&b.snapshot) > app.cube.position(&c.id) {
                (b.snapshot.clone(), c.id.clone())
            } else {
                (c.id.clone(), b.snapshot.clone())
            };
            return vec![Action::Diff { from, to }];
        }
        Command::Tag => tag::open(app),
        _ => {}
    }
    Vec::new()
}

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.focus == Focus::History;
    let history = &app.cube.history;
    let index = app.history.index;
    // Focused, the chosen snapshot's whole message (and tags) sits at the bottom, wrapped.
    let about: Option<(String, u16)> = chosen(app).filter(|_| focused).map(|c| {
        let tags = app
            .cube
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
    let start = index.saturating_sub(height.saturating_sub(1));
    let mut lines: Vec<Line> = history
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
                .cube
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
            if i == index && focused {
                s = s.add_modifier(Modifier::REVERSED);
            }
            if app.cube.browse.as_ref().is_some_and(|b| b.snapshot == c.id) {
                s = s.add_modifier(Modifier::BOLD);
            }
            Line::styled(text, s)
        })
        .collect();
    lines.truncate(height);
    let list_rows = lines.len();
    let title = match history.len() {
        0 => " history ".to_string(),
        n => format!(" history {}/{n} ", index + 1),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::state::Browse;
    use crate::tui::state::fixtures::{app, ch, commit, key};
    use crate::tui::update::on_key;
    use ratatui::crossterm::event::KeyCode;

    #[test]
    fn a_diff_compares_the_older_snapshot_with_the_newer() {
        let mut a = app();
        let epoch = chrono::DateTime::from_timestamp(0, 0).unwrap();
        a.cube.history = vec![
            commit("NEW", epoch),
            commit("MID", epoch),
            commit("OLD", epoch),
        ];
        a.focus = Focus::History;
        // The newest browsed, d on the oldest; then the oldest browsed, d on the newest.
        a.cube.browse = Some(Browse {
            snapshot: "NEW".into(),
            message: "m".into(),
            coverage: Default::default(),
            diff_against: None,
            changed: Default::default(),
        });
        a.history.index = 2;
        let want = vec![Action::Diff {
            from: "OLD".into(),
            to: "NEW".into(),
        }];
        assert_eq!(on_key(&mut a, ch('d')), want);
        a.cube.browse.as_mut().unwrap().snapshot = "OLD".into();
        a.history.index = 0;
        assert_eq!(on_key(&mut a, ch('d')), want);
    }

    #[test]
    fn open_browses_the_snapshot_with_its_message() {
        let mut a = app();
        a.cube.history = vec![Commit {
            message: "write 1 tile".into(),
            ..commit("S1", chrono::Utc::now())
        }];
        on_key(&mut a, key(KeyCode::Tab));
        assert_eq!(
            on_key(&mut a, key(KeyCode::Enter)),
            vec![Action::Browse {
                snapshot: "S1".into(),
                message: "write 1 tile".into()
            }]
        );
    }
}
