//! The quit confirmation: quitting (`q`, Ctrl-C) while runs are going asks whether to
//! leave them running (the default) or cancel them first; with none going, the console
//! quits at once.
//!
//! Invariant: leaving never stops a run unless the operator chose `c` here: the runs are
//! not the console's.

use ratatui::crossterm::event::KeyEvent;
use ratatui::text::Line;

use super::{Dialog, Popup, Reply};
use crate::tui::keys::{self, Command, Scope};
use crate::tui::msg::Action;
use crate::tui::state::{App, Exit};

/// `q`: quit, or ask first while runs are going.
pub fn ask(app: &mut App) -> Vec<Action> {
    if app.runs.active().next().is_some() {
        app.popup = Some(Popup::Leave);
        return Vec::new();
    }
    app.exit = Some(Exit::Quit);
    vec![Action::Quit]
}

pub fn on_key(app: &mut App, key: &KeyEvent) -> Reply {
    match keys::command(Scope::Leave, key, app.cube.years.len()) {
        Some(Command::Yes) => {
            app.exit = Some(Exit::Quit);
            Reply::close(vec![Action::Quit])
        }
        Some(Command::CancelAndLeave) => {
            app.exit = Some(Exit::Quit);
            let going = app.runs.going();
            app.status_line = "cancelling the runs, then leaving".into();
            Reply::close(vec![Action::CancelRuns(going), Action::Quit])
        }
        Some(Command::No) => Reply::close(Vec::new()),
        _ => Reply::stay(Popup::Leave),
    }
}

pub fn dialog(app: &App) -> Dialog {
    let runs: Vec<_> = app.runs.active().collect();
    let tally = runs
        .iter()
        .fold(tilecube::runs::Tally::default(), |t, r| t + r.tally());
    Dialog::new(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::state::fixtures::{app, ch, key, record, run};
    use crate::tui::update::on_key;
    use ratatui::crossterm::event::KeyCode;

    #[test]
    fn quit_with_a_run_going_asks_to_leave_it_running_or_cancel_it() {
        let going = || {
            let mut a = app();
            a.apply_runs(vec![run("R1", "running", record(&[], 0))]);
            assert!(on_key(&mut a, ch('q')).is_empty());
            assert_eq!(a.popup, Some(Popup::Leave));
            a
        };
        let mut a = going();
        assert!(on_key(&mut a, key(KeyCode::Esc)).is_empty());
        assert!(a.exit.is_none() && a.popup.is_none(), "Esc stays");
        let mut a = going();
        assert_eq!(
            on_key(&mut a, key(KeyCode::Enter)),
            vec![Action::Quit],
            "the default leaves the run going"
        );
        assert_eq!(a.exit, Some(Exit::Quit));
        let mut a = going();
        assert_eq!(
            on_key(&mut a, ch('c')),
            vec![Action::CancelRuns(vec!["R1".into()]), Action::Quit]
        );
        let mut b = app();
        b.apply_runs(vec![run("R0", "done", record(&["80N_180W"], 1))]);
        assert_eq!(
            on_key(&mut b, ch('q')),
            vec![Action::Quit],
            "no run going: quits at once"
        );
    }
}
