//! The write's confirmation (`w`): what is written where, what it reads at the source, the
//! rewrites, and the commit message being typed; Enter launches a run of the selection.
//!
//! Invariants: it opens only on the branch head, with tiles selected and no write going;
//! Enter hands the selection to a launch (the tiles show queued until the run answers) and
//! clears it; Esc writes nothing; every other key edits the message.

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;

use super::{Dialog, Popup, Reply, edit};
use crate::tui::components::look::style;
use crate::tui::msg::Action;
use crate::tui::state::App;
use crate::tui::state::selection::SelectionBytes;

/// What the write's confirmation says, and the message typed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteAsk {
    pub tiles: usize,
    pub years: usize,
    pub threads: usize,
    pub branch: String,
    /// Tiles of the selection the branch head holds already: written again.
    pub rewrites: usize,
    /// The commits' message (empty: each commit names its tiles).
    pub message: String,
    /// What the tiles weigh at the source, once looked up.
    pub bytes: Option<SelectionBytes>,
}

/// `w`: ask before writing the selection (or say why not).
pub fn open(app: &mut App) {
    if app.runs.writing {
        app.status_line = "a write is already running".into();
    } else if app.selection.tiles.is_empty() {
        app.status_line = "nothing selected: space selects a tile, a every listed one".into();
    } else {
        let rewrites = app
            .selection
            .tiles
            .iter()
            .filter(|(y, t)| app.cube.coverage.is_written(*y, *t))
            .count();
        app.popup = Some(Popup::ConfirmWrite(WriteAsk {
            tiles: app.selection.tiles.len(),
            years: app.selection.years().len(),
            threads: app.threads,
            branch: app.cube.branch.clone(),
            rewrites,
            message: String::new(),
            bytes: app.selection.bytes(),
        }));
    }
}

/// The selection's sizes came in: the confirmation open says what it reads.
pub fn sizes_known(app: &mut App) {
    let bytes = app.selection.bytes();
    if let Some(Popup::ConfirmWrite(ask)) = &mut app.popup {
        ask.bytes = bytes;
    }
}

impl WriteAsk {
    /// A text field (the commit message): Enter writes, Esc does not, other keys edit.
    pub fn on_key(mut self, app: &mut App, key: &KeyEvent) -> Reply {
        match key.code {
            KeyCode::Enter => {
                let tiles: Vec<_> = std::mem::take(&mut app.selection.tiles)
                    .into_iter()
                    .collect();
                app.runs.last_launch = tiles.iter().copied().collect();
                app.runs.launching = tiles.iter().copied().collect();
                app.runs.derive();
                app.status_line = format!(
                    "launching a run of {}",
                    tilecube::text::plural(tiles.len(), "tile")
                );
                let message = Some(self.message.trim().to_string()).filter(|m| !m.is_empty());
                Reply::close(vec![Action::Launch { tiles, message }])
            }
            KeyCode::Esc => Reply::close(Vec::new()),
            _ => {
                edit(&mut self.message, key);
                Reply::stay(Popup::ConfirmWrite(self))
            }
        }
    }

    pub fn dialog(&self, app: &App) -> Dialog {
        let mut lines = vec![Line::from(format!(
            "Write {} of {} to branch {} on {}?",
            tilecube::text::plural(self.tiles, "tile"),
            tilecube::text::plural(self.years, "year"),
            self.branch,
            tilecube::text::plural(self.threads, "thread")
        ))];
        if app.cube.source.is_some() {
            lines.push(Line::from(match &self.bytes {
                Some(b) => format!("It reads {}.", b.text()),
                None => "It reads: looking up the tiles' sizes at the source…".to_string(),
            }));
        }
        if self.rewrites > 0 {
            lines.push(Line::styled(
                format!(
                    "{} written already: written again over the old.",
                    if self.rewrites == 1 {
                        "1 of them is".to_string()
                    } else {
                        format!("{} of them are", self.rewrites)
                    }
                ),
                style(app, Color::Yellow),
            ));
        }
        lines.push(Line::from(format!("commit message: {}_", self.message)));
        lines.push(Line::styled(
            "  (empty: each commit names its tiles)",
            Style::default().add_modifier(Modifier::DIM),
        ));
        lines.push(Line::from(
            "It runs on its own: leaving the console never stops it.",
        ));
        lines.push(Line::from("Enter: write   Esc: cancel"));
        let n = lines.len() as u16;
        Dialog::new(" write ", lines, 66, n + 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::msg::{Done, Msg};
    use crate::tui::state::CellState;
    use crate::tui::state::fixtures::{app, ch, key, record, run, t};
    use crate::tui::state::runs::Failure;
    use crate::tui::update::{on_key, update};

    #[test]
    fn f_selects_failed_tiles_and_w_confirms_then_launches() {
        let mut a = app();
        a.runs.failed.insert(
            (2000, t("80N_170W")),
            Failure {
                error: "bad".into(),
                attempts: 1,
            },
        );
        on_key(&mut a, ch('f'));
        assert_eq!(a.selection.tiles.len(), 1);
        assert!(on_key(&mut a, ch('w')).is_empty());
        assert_eq!(
            a.popup,
            Some(Popup::ConfirmWrite(WriteAsk {
                tiles: 1,
                years: 1,
                threads: 2,
                branch: "main".into(),
                rewrites: 0,
                message: String::new(),
                bytes: None,
            }))
        );
        assert!(on_key(&mut a, key(KeyCode::Esc)).is_empty());
        assert_eq!(a.popup, None);
        // The confirmation takes a commit message: typed keys are its text.
        on_key(&mut a, ch('w'));
        for c in "fix 2000".chars() {
            on_key(&mut a, ch(c));
        }
        let actions = on_key(&mut a, key(KeyCode::Enter));
        assert_eq!(
            actions,
            vec![Action::Launch {
                tiles: vec![(2000, t("80N_170W"))],
                message: Some("fix 2000".into()),
            }]
        );
        // The last reason stays until the tile is written.
        assert!(a.runs.failed.contains_key(&(2000, t("80N_170W"))));
        assert!(a.runs.writing && a.selection.tiles.is_empty());
        assert_eq!(a.cell_state(2000, t("80N_170W")), CellState::Queued);
        // The launch is under way: a scan that does not show the run yet keeps the queue.
        update(&mut a, Msg::Done(Done::Runs(vec![])));
        assert!(a.runs.writing);
        assert_eq!(a.cell_state(2000, t("80N_170W")), CellState::Queued);
        assert_eq!(
            update(&mut a, Msg::Done(Done::Launched(Ok("R1".into())))),
            vec![Action::WatchRuns(vec!["R1".into()])]
        );
        update(
            &mut a,
            Msg::Done(Done::Runs(vec![run("R1", "running", record(&[], 0))])),
        );
        assert!(on_key(&mut a, ch('x')).is_empty(), "x asks first");
        assert_eq!(
            on_key(&mut a, ch('y')),
            vec![Action::CancelRuns(vec!["R1".into()])]
        );
    }
}
