//! The tag prompt (`t` in the history): the name being typed for the snapshot chosen, and
//! why the repository would refuse it, said as it is typed.
//!
//! Invariants: Enter takes no name the repository would refuse (it says why, and the
//! prompt stays); a name is trimmed before it is used; Esc tags nothing.

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;

use super::{Dialog, Popup, Reply, edit};
use crate::tui::components::history;
use crate::tui::components::look::{short, style};
use crate::tui::msg::Action;
use crate::tui::state::App;

/// The snapshot to tag, the name typed, and why it is refused, if it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPrompt {
    pub snapshot: String,
    pub name: String,
    pub refused: Option<&'static str>,
}

/// `t`: tag the snapshot chosen in the history.
pub fn open(app: &mut App) {
    if let Some(c) = history::chosen(app) {
        app.popup = Some(Popup::TagPrompt(TagPrompt {
            snapshot: c.id.clone(),
            name: String::new(),
            refused: None,
        }));
    }
}

impl TagPrompt {
    /// A text field: every key edits, Enter and Esc as in a confirmation; a name the
    /// repository would refuse is said as it is typed, and Enter takes none.
    pub fn on_key(mut self, app: &mut App, key: &KeyEvent) -> Reply {
        match key.code {
            KeyCode::Enter => {
                if let Err(e) = tilecube::cube::check_tag_name(self.name.trim()) {
                    app.status_line = e.to_string();
                    self.refused =
                        tilecube::cube::tag_name_problem(self.name.trim()).or(Some("it is empty"));
                    Reply::stay(Popup::TagPrompt(self))
                } else {
                    let name = self.name.trim().to_string();
                    Reply::close(vec![Action::Tag {
                        snapshot: self.snapshot,
                        name,
                    }])
                }
            }
            KeyCode::Esc => Reply::close(Vec::new()),
            _ => {
                edit(&mut self.name, key);
                self.refused = tilecube::cube::tag_name_problem(&self.name);
                Reply::stay(Popup::TagPrompt(self))
            }
        }
    }

    pub fn dialog(&self, app: &App) -> Dialog {
        let mut lines = vec![Line::from(format!(
            "tag snapshot {}: {}_",
            short(&self.snapshot),
            self.name
        ))];
        match self.refused {
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
        Dialog::new(" tag ", lines, 60, 5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::state::fixtures::{app, ch, key};
    use crate::tui::update::on_key;

    #[test]
    fn a_tag_name_the_repository_would_refuse_is_said_as_it_is_typed() {
        let mut a = app();
        a.popup = Some(Popup::TagPrompt(TagPrompt {
            snapshot: "S1".into(),
            name: String::new(),
            refused: None,
        }));
        for c in "first release".chars() {
            on_key(&mut a, ch(c));
        }
        assert!(
            matches!(&a.popup, Some(Popup::TagPrompt(TagPrompt { refused: Some(why), .. })) if why.contains("no spaces")),
            "{:?}",
            a.popup
        );
        assert!(
            on_key(&mut a, key(KeyCode::Enter)).is_empty(),
            "Enter takes none"
        );
        assert!(
            a.status_line
                .contains("tag name \"first release\" is refused")
        );
        for _ in 0.." release".len() {
            on_key(&mut a, key(KeyCode::Backspace));
        }
        assert_eq!(
            on_key(&mut a, key(KeyCode::Enter)),
            vec![Action::Tag {
                snapshot: "S1".into(),
                name: "first".into()
            }]
        );
    }
}
