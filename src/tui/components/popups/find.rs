//! The find prompt (`/`): a tile's name typed ("10N_020E"), or a year and a name
//! ("2005/10N_020E"); Enter puts the cursor there, the grid focused.
//!
//! Invariant: a name that is not a tile of the cube's grid, or a year not the cube's, is
//! said under the text and the prompt stays.

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use tilecube::grid::TileName;

use super::{Dialog, Popup, Reply, edit};
use crate::tui::components::look::style;
use crate::tui::state::{App, Focus};

/// What is typed, and why it was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindPrompt {
    pub text: String,
    pub error: Option<String>,
}

/// `/`: an empty prompt.
pub fn open(app: &mut App) {
    app.popup = Some(Popup::Find(FindPrompt {
        text: String::new(),
        error: None,
    }));
}

/// Find's text: a tile name ("10N_020E"), or a year and a tile ("2005/10N_020E").
fn find_tile(app: &App, text: &str) -> Result<(i32, TileName), String> {
    let text = text.trim();
    let years = &app.cube.years;
    let (year, name) = match text.split_once('/') {
        Some((y, n)) => match y.trim().parse::<i32>() {
            Ok(y) if years.contains(&y) => (y, n.trim()),
            _ => {
                return Err(format!(
                    "{y:?} is not a year of the cube ({})",
                    years
                        .iter()
                        .map(|y| y.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        },
        None => (app.year(), text),
    };
    let tile: TileName = name
        .parse()
        .map_err(|_| format!("{name:?} is not a tile name (like 10N_020E)"))?;
    if app.cube.grid.cell(tile).is_err() {
        return Err(format!("{tile} is not a tile of this cube's grid"));
    }
    Ok((year, tile))
}

impl FindPrompt {
    pub fn on_key(mut self, app: &mut App, key: &KeyEvent) -> Reply {
        match key.code {
            KeyCode::Enter => match find_tile(app, &self.text) {
                Ok((y, t)) => {
                    app.go_to(y, t);
                    app.focus = Focus::Grid;
                    app.status_line = format!("{y}/{t}: {}", app.cell_state(y, t).name());
                    Reply::close(Vec::new())
                }
                Err(e) => {
                    self.error = Some(e);
                    Reply::stay(Popup::Find(self))
                }
            },
            KeyCode::Esc => Reply::close(Vec::new()),
            _ => {
                edit(&mut self.text, key);
                self.error = None;
                Reply::stay(Popup::Find(self))
            }
        }
    }

    pub fn dialog(&self, app: &App) -> Dialog {
        let mut lines = vec![Line::from(format!("go to tile: {}_", self.text))];
        match &self.error {
            Some(e) => lines.push(Line::styled(e.clone(), style(app, Color::Red))),
            None => lines.push(Line::styled(
                "a name (10N_020E) or a year and a name (2005/10N_020E)",
                Style::default().add_modifier(Modifier::DIM),
            )),
        }
        lines.push(Line::from("Enter: go   Esc: cancel"));
        Dialog::new(" find ", lines, 60, 5)
    }
}
