//! The runs panel: the newest run of the repository (going, or how it ended), the failed
//! tiles with the first one's reason, the last commit; its key (`Enter`: the cursor to the
//! first failed tile) and its drawing. It has no state of its own: the runs are the state's
//! ([`crate::tui::state::runs`]).
//!
//! Invariant: the grid's keys hold here too (the key table says so): what this panel does
//! not take, the grid does.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use super::look::{panel, short, style};
use crate::tui::keys::Command;
use crate::tui::msg::Action;
use crate::tui::state::{App, Focus};

/// A command of the runs panel: its own, or the grid's.
pub fn on_command(app: &mut App, command: Command) -> Vec<Action> {
    match command {
        Command::JumpFailed => {
            match app.failed_in_order().first().copied() {
                Some((y, t)) => {
                    app.go_to(y, t);
                    app.focus = Focus::Grid;
                    app.status_line = format!("{y}/{t} failed: Enter shows why, n the next one");
                }
                None => app.status_line = "no failed tile".into(),
            }
            Vec::new()
        }
        _ => super::grid::on_command(app, command),
    }
}

/// The failed tiles by name, the first with its reason: `Enter` in the runs panel goes
/// there.
fn failed_lines(app: &App) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let failed = app.failed_in_order();
    if let Some(&(y, t)) = failed.first() {
        let names: Vec<String> = failed
            .iter()
            .take(4)
            .map(|(y, t)| format!("{y}/{t}"))
            .collect();
        let more = failed.len().saturating_sub(names.len());
        lines.push(Line::styled(
            format!(
                "failed: {}{} (Enter goes there, f selects, w retries)",
                names.join(" "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            style(app, Color::Red),
        ));
        if let Some(f) = app.runs.failed.get(&(y, t)) {
            lines.push(Line::styled(
                format!("{y}/{t}: {}", f.error),
                style(app, Color::Red),
            ));
        }
    }
    lines
}

/// The runs panel: the newest run of the repository (going or how it ended), its log, and
/// the failed tiles and last commit.
pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = Vec::new();
    match app.runs.list.first() {
        Some(run) => {
            let commits = run.record.as_ref().map(|r| r.commits).unwrap_or(0);
            let state = if app.runs.cancelling.contains(&run.info.id) && run.is_active() {
                "cancelling…".to_string()
            } else {
                run.state.to_string()
            };
            lines.push(Line::from(format!(
                "run {} {state}: {}, {}",
                run.info.id,
                run.tally(),
                tilecube::text::plural(commits, "commit")
            )));
            if let Some(note) = run.stall_note(app.now) {
                lines.push(Line::styled(
                    format!("{note} (worker pid {} alive; its log below)", run.info.pid),
                    style(app, Color::Yellow),
                ));
            }
            if let Some(reason) = run.stop_reason() {
                lines.push(Line::styled(
                    format!("stopped: {reason}"),
                    style(app, Color::Red),
                ));
            }
            lines.extend(failed_lines(app));
            let more = app
                .runs
                .active()
                .filter(|r| r.info.id != run.info.id)
                .count();
            if more > 0 {
                lines.push(Line::from(format!(
                    "{} going (x cancels all)",
                    tilecube::text::plural(more, "more run")
                )));
            }
            lines.push(Line::from(format!("log {}", run.log.display())));
        }
        None => {
            lines.push(Line::from(
                "no run yet: w launches one; it goes on if the console leaves",
            ));
            lines.extend(failed_lines(app));
        }
    }
    if let Some(c) = app.cube.history.first() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::components::popups::Popup;
    use crate::tui::components::popups::find::FindPrompt;
    use crate::tui::components::popups::tile::TileCard;
    use crate::tui::state::fixtures::{app, ch, key, render, run, small_cube, t};
    use crate::tui::state::runs::Failure;
    use crate::tui::update::on_key;
    use ratatui::crossterm::event::KeyCode;
    use tilecube::grid::Cell;

    #[test]
    fn n_and_enter_in_the_runs_panel_find_the_failed_tiles_and_slash_finds_any() {
        let mut a = app();
        for (y, tile) in [(2000, "70N_180W"), (2005, "10N_010E")] {
            a.runs.failed.insert(
                (y, t(tile)),
                Failure {
                    error: "bad".into(),
                    attempts: 1,
                },
            );
        }
        on_key(&mut a, ch('n'));
        assert_eq!((a.year(), a.cursor_tile()), (2000, t("70N_180W")));
        on_key(&mut a, ch('n'));
        assert_eq!((a.year(), a.cursor_tile()), (2005, t("10N_010E")));
        on_key(&mut a, ch('n'));
        assert_eq!((a.year(), a.cursor_tile()), (2000, t("70N_180W")), "wraps");
        // N: the next listed tile not written.
        on_key(&mut a, ch('N'));
        assert_eq!((a.year(), a.cursor_tile()), (2000, t("80N_180W")));
        // Enter in the runs panel goes to the first failed tile, the grid focused.
        a.focus = Focus::Runs;
        a.grid.cursor = Cell { col: 3, row: 3 };
        on_key(&mut a, key(KeyCode::Enter));
        assert_eq!((a.year(), a.cursor_tile()), (2000, t("70N_180W")));
        assert_eq!(a.focus, Focus::Grid);
        // Enter on the grid opens the tile's details.
        on_key(&mut a, key(KeyCode::Enter));
        assert_eq!(
            a.popup,
            Some(Popup::Tile(TileCard {
                year: 2000,
                tile: t("70N_180W")
            }))
        );
        on_key(&mut a, key(KeyCode::Esc));
        // `/` takes a name, or a year and a name; a bad one is said and the popup stays.
        on_key(&mut a, ch('/'));
        for c in "2005/10n_020e".chars() {
            on_key(&mut a, ch(c));
        }
        on_key(&mut a, key(KeyCode::Enter));
        assert_eq!(a.popup, None);
        assert_eq!((a.year(), a.cursor_tile()), (2005, t("10N_020E")));
        on_key(&mut a, ch('/'));
        for c in "99N_000E".chars() {
            on_key(&mut a, ch(c));
        }
        on_key(&mut a, key(KeyCode::Enter));
        assert!(
            matches!(&a.popup, Some(Popup::Find(FindPrompt { error: Some(e), .. })) if e.contains("not a tile name")),
            "{:?}",
            a.popup
        );
        on_key(&mut a, key(KeyCode::Esc));
        on_key(&mut a, ch('/'));
        for c in "1999/10N_020E".chars() {
            on_key(&mut a, ch(c));
        }
        on_key(&mut a, key(KeyCode::Enter));
        assert!(
            matches!(&a.popup, Some(Popup::Find(FindPrompt { error: Some(e), .. })) if e.contains("not a year of the cube (2000, 2005)")),
            "{:?}",
            a.popup
        );
    }

    #[test]
    fn a_run_stopped_as_a_whole_says_why_in_the_runs_panel() {
        use tilecube::scaleout::{ShardRecord, ShardState};
        let mut a = small_cube();
        let record = ShardRecord {
            jobs: 2,
            written: 2,
            state: ShardState::Failed,
            error: Some(
                "committing 2 tiles:\nthe branch main no longer descends from snapshot X".into(),
            ),
            ..Default::default()
        };
        a.apply_runs(vec![run("7c1e0a9b3f21", "failed", record)]);
        let s = render(&a, 160, 48);
        assert!(
            s.contains("stopped: committing 2 tiles: the branch main")
                && s.contains("no longer descends from snapshot X"),
            "{s}"
        );
    }
}
