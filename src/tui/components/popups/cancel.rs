//! The cancel confirmation (`x`): which runs are going and what they did so far; yes
//! cancels them, no keeps them going.
//!
//! Invariants: it names the runs going when it opened, and cancels only those; a cancel
//! lets finished tiles land (running ones stop at their next strip); the runs' own records
//! say how they ended.

use ratatui::crossterm::event::KeyEvent;
use ratatui::text::Line;

use super::{Dialog, Popup, Reply};
use crate::tui::keys::{self, Command, Scope};
use crate::tui::msg::Action;
use crate::tui::state::App;

/// The runs the confirmation would cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelAsk {
    pub runs: Vec<String>,
}

/// `x`: ask before cancelling the runs going (or say there is none).
pub fn open(app: &mut App) {
    let going = app.runs.going();
    if going.is_empty() {
        app.status_line = "no run is going".into();
    } else {
        app.popup = Some(Popup::ConfirmCancel(CancelAsk { runs: going }));
    }
}

impl CancelAsk {
    pub fn on_key(self, app: &mut App, key: &KeyEvent) -> Reply {
        match keys::command(Scope::Confirm, key, app.cube.years.len()) {
            Some(Command::Yes) => {
                let runs = self.runs;
                app.runs.cancelling.extend(runs.iter().cloned());
                app.status_line = format!(
                    "cancelling {} {}: running tiles stop at their next strip, finished ones land",
                    if runs.len() == 1 { "run" } else { "runs" },
                    runs.join(", ")
                );
                Reply::close(vec![Action::CancelRuns(runs)])
            }
            Some(Command::No) => Reply::close(Vec::new()),
            _ => Reply::stay(Popup::ConfirmCancel(self)),
        }
    }

    pub fn dialog(&self, app: &App) -> Dialog {
        let tally = app
            .runs
            .active()
            .filter(|r| self.runs.contains(&r.info.id))
            .fold(tilecube::runs::Tally::default(), |t, r| t + r.tally());
        Dialog::new(
            " cancel ",
            vec![
                Line::from(format!(
                    "Cancel {} going ({})?",
                    tilecube::text::plural(self.runs.len(), "run"),
                    self.runs.join(", ")
                )),
                Line::from(format!("So far: {tally}.")),
                Line::from("Finished tiles land; running ones stop at their next strip."),
                Line::from("Enter/y: cancel them   Esc/n: keep them going"),
            ],
            66,
            6,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::msg::{Done, Msg};
    use crate::tui::state::fixtures::{app, ch, commit, key, record, run, t};
    use crate::tui::update::{on_key, update};
    use ratatui::crossterm::event::KeyCode;
    use tilecube::cube::Coverage;

    #[test]
    fn x_asks_before_cancelling_and_a_cancelled_runs_tiles_are_selected_again() {
        let mut a = app();
        a.selection.tiles = [(2000, t("80N_180W")), (2000, t("80N_170W"))].into();
        on_key(&mut a, ch('w'));
        let launched = on_key(&mut a, key(KeyCode::Enter));
        assert!(matches!(&launched[..], [Action::Launch { .. }]));
        update(&mut a, Msg::Done(Done::Launched(Ok("R1".into()))));
        a.apply_runs(vec![run("R1", "running", record(&["80N_180W"], 1))]);
        // x asks; Esc keeps the run going; x then Enter cancels it.
        assert!(on_key(&mut a, ch('x')).is_empty());
        assert_eq!(
            a.popup,
            Some(Popup::ConfirmCancel(CancelAsk {
                runs: vec!["R1".into()]
            }))
        );
        on_key(&mut a, key(KeyCode::Esc));
        assert!(a.popup.is_none() && a.runs.cancelling.is_empty());
        on_key(&mut a, ch('x'));
        assert_eq!(
            on_key(&mut a, key(KeyCode::Enter)),
            vec![Action::CancelRuns(vec!["R1".into()])]
        );
        assert!(a.runs.cancelling.contains("R1"));
        assert!(a.status_line.starts_with("cancelling run R1"));
        // It ends cancelled, one tile landed: once the head is read, the other is selected.
        // The other was written before the run began (a rewrite): it did not land either.
        let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
        let mut ended = record(&["80N_180W"], 1);
        ended.started = at(100);
        a.apply_runs(vec![run("R1", "cancelled", ended)]);
        assert!(a.runs.cancelling.is_empty());
        let mut coverage = Coverage::default();
        for (tile, snapshot) in [("80N_180W", "S"), ("80N_170W", "OLD")] {
            coverage.tiles.insert(
                (2000, t(tile)),
                tilecube::cube::TileState::Written {
                    chunks: 16,
                    snapshot: snapshot.into(),
                },
            );
        }
        update(
            &mut a,
            Msg::Done(Done::Refreshed {
                tags: Default::default(),
                years: None,
                coverage,
                history: vec![commit("S", at(200)), commit("OLD", at(0))],
                head: Some("S".into()),
            }),
        );
        assert_eq!(a.selection.tiles, [(2000, t("80N_170W"))].into());
        assert!(
            a.status_line
                .contains("1 tile not landed selected again: w writes it"),
            "{}",
            a.status_line
        );
    }
}
