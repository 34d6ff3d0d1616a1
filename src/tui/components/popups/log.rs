//! The log popup (`L`): the newest run's log, its last lines as read, scrolled by the
//! arrows (a line), the page keys (a screen), Home (the oldest) and End (the newest).
//!
//! Invariants: the scroll never goes past the first line nor below the last; long lines are
//! cut to the popup's width, never wrapped; near the top the window stays whole, from the
//! first line.

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::text::Line;

use super::{Dialog, Popup, Reply, is_close};
use crate::tui::components::look::style;
use crate::tui::msg::Action;
use crate::tui::state::App;

/// A run's log as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogView {
    pub run: String,
    /// Lines up from the log's end.
    pub scroll: usize,
    /// Its last lines as read (none yet: being read), or why it could not be.
    pub lines: Result<Vec<String>, String>,
}

/// `L`: the newest run's log, read afresh (or why there is none).
pub fn open(app: &mut App) -> Vec<Action> {
    match app.runs.list.first() {
        Some(run) => {
            app.popup = Some(Popup::Log(LogView {
                run: run.info.id.clone(),
                scroll: 0,
                lines: Ok(Vec::new()),
            }));
            vec![Action::ReadLog(run.log.clone())]
        }
        None => {
            app.status_line = "no run yet: w launches one, L then shows its log".into();
            Vec::new()
        }
    }
}

/// The log was read (or could not be): the popup open shows it.
pub fn on_read(app: &mut App, lines: Result<Vec<String>, String>) {
    if let Some(Popup::Log(view)) = &mut app.popup {
        view.lines = lines;
    }
}

impl LogView {
    /// The log scrolls: arrows a line, page keys a screen, Home the oldest, End the newest.
    pub fn on_key(mut self, app: &mut App, key: &KeyEvent) -> Reply {
        if is_close(app, key) {
            return Reply::close(Vec::new());
        }
        let n = self.lines.as_ref().map(|l| l.len()).unwrap_or(0);
        let scroll = match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.scroll + 1,
            KeyCode::Down | KeyCode::Char('j') => self.scroll.saturating_sub(1),
            KeyCode::PageUp => self.scroll + 10,
            KeyCode::PageDown => self.scroll.saturating_sub(10),
            KeyCode::Home => n,
            KeyCode::End => 0,
            _ => self.scroll,
        };
        self.scroll = scroll.min(n.saturating_sub(1));
        Reply::stay(Popup::Log(self))
    }

    pub fn dialog(&self, app: &App, area: Rect) -> Dialog {
        let inner_w = area.width.saturating_sub(4);
        let inner_h = area.height.saturating_sub(4);
        let lines: Vec<Line<'static>> = match &self.lines {
            Ok(all) if all.is_empty() => vec![Line::from("reading the log …")],
            Ok(all) => {
                // The window ending `scroll` lines above the last one, a line a row (long
                // lines cut: the popup is as wide as the terminal allows); near the top it
                // stays whole, from the first line (Home shows the oldest lines, not one).
                let end = all
                    .len()
                    .saturating_sub(self.scroll)
                    .max(all.len().min(inner_h as usize));
                let start = end.saturating_sub(inner_h as usize);
                all[start..end]
                    .iter()
                    .map(|l| Line::from(l.chars().take(inner_w as usize).collect::<String>()))
                    .collect()
            }
            Err(e) => vec![Line::styled(e.clone(), style(app, Color::Red))],
        };
        Dialog::new(
            format!(" run {} log (↑↓ PgUp PgDn Home End, Esc closes) ", self.run),
            lines,
            inner_w + 2,
            inner_h + 2,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::msg::{Done, Msg};
    use crate::tui::state::fixtures::{app, ch, key, record, run};
    use crate::tui::update::{on_key, update};

    #[test]
    fn shift_l_shows_the_newest_runs_log_scrolled_within_it_and_f_filters() {
        let mut a = app();
        assert!(on_key(&mut a, ch('L')).is_empty());
        assert!(a.status_line.starts_with("no run yet"), "{}", a.status_line);
        a.apply_runs(vec![run("R1", "done", record(&["80N_180W"], 1))]);
        assert_eq!(
            on_key(&mut a, ch('L')),
            vec![Action::ReadLog("/state/runs/R1/log.txt".into())]
        );
        let lines: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        update(&mut a, Msg::Done(Done::Log(Ok(lines))));
        let scroll = |a: &App| match &a.popup {
            Some(Popup::Log(view)) => view.scroll,
            other => panic!("{other:?}"),
        };
        on_key(&mut a, key(KeyCode::PageUp));
        assert_eq!(scroll(&a), 10);
        on_key(&mut a, key(KeyCode::Home));
        assert_eq!(scroll(&a), 29, "never past the first line");
        on_key(&mut a, key(KeyCode::End));
        on_key(&mut a, key(KeyCode::Down));
        assert_eq!(scroll(&a), 0, "never past the last");
        on_key(&mut a, key(KeyCode::Esc));
        assert!(a.popup.is_none());
        // F: only the failed and re-issued tiles drawn; F again, all.
        on_key(&mut a, ch('F'));
        assert!(a.grid.filter);
        on_key(&mut a, ch('F'));
        assert!(!a.grid.filter);
    }
}
