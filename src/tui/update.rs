//! The console's state machine, Elm-shaped: one [`update`] that turns a message
//! ([`Msg`]: keys, finished background work, signals, ticks) into state changes and
//! [`Action`]s for the runtime to run.
//!
//! Invariants: nothing here touches the terminal or the repository; every state change of
//! the console happens here or in the component a message is dispatched to, so each is
//! unit-testable; keys are looked up in the one key table ([`super::keys`]) and go to the
//! popup open, else to the keys that hold anywhere, else to the panel focused; writes are
//! runs the console launches, watches and cancels, never owns, so leaving the console — by
//! `q`, a signal or a lost terminal — never stops one unless the operator asked for it.

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::components::popups::{self, Popup, leave, plan, quicklook, write};
use super::components::{grid, history, map, runs};
use super::keys::{self, Command, Scope};
use super::msg::{Action, Done, Msg};
use super::state::runs::Failure;
use super::state::selection::SELECTION_TAIL;
use super::state::{App, Exit, Focus};

/// Apply one message.
pub fn update(app: &mut App, msg: Msg) -> Vec<Action> {
    let mut actions = apply(app, msg);
    actions.extend(map::follow(app));
    actions.extend(size_action(app));
    actions
}

/// The selection's bytes at the source follow the selection: tiles selected whose size is
/// not known yet are looked up (one lookup at a time; what is selected meanwhile follows).
fn size_action(app: &mut App) -> Option<Action> {
    if app.cube.source.is_none() || app.exit.is_some() {
        return None;
    }
    app.selection.start_sizing().map(Action::SizeTiles)
}

fn apply(app: &mut App, msg: Msg) -> Vec<Action> {
    match msg {
        Msg::Key(k) => on_key(app, k),
        Msg::Done(d) => on_done(app, d),
        Msg::Signal(n) => stop(app, Exit::Signal(n)),
        Msg::TerminalLost => stop(app, Exit::TerminalLost),
        Msg::Tick(now) => {
            app.now = now;
            Vec::new()
        }
        Msg::Poll => {
            let mut actions = Vec::new();
            if app.cube.loading.is_some() || app.exit.is_some() {
                return actions;
            }
            if app.plan.is_some() {
                actions.push(Action::PlanStatus);
            }
            actions.push(Action::CheckHead);
            if !app.runs.reading {
                app.runs.reading = true;
                actions.push(Action::ScanRuns);
            }
            actions
        }
        Msg::Watch => {
            let going = app.runs.going();
            if going.is_empty() || app.runs.reading || app.exit.is_some() {
                return Vec::new();
            }
            app.runs.reading = true;
            vec![Action::WatchRuns(going)]
        }
    }
}

/// A signal or a lost terminal: the console leaves; runs keep going (they are not its).
fn stop(app: &mut App, exit: Exit) -> Vec<Action> {
    if app.exit.is_none() {
        app.exit = Some(exit);
        app.status_line = "leaving: runs keep going".into();
        log::warn!("{exit:?}: leaving the console; runs keep going");
    }
    vec![Action::Quit]
}

fn on_done(app: &mut App, done: Done) -> Vec<Action> {
    match done {
        Done::Opened {
            grid,
            years,
            failed,
            warning,
        } => {
            for e in failed {
                app.runs.failed.insert(
                    (e.year, e.tile),
                    Failure {
                        error: e.reason,
                        attempts: e.attempts,
                    },
                );
            }
            if let Some(w) = warning {
                app.status_line = w;
            }
            app.relayout(Some(grid), years);
            app.cube.loading = Some("reading the branch head's tiles".into());
            app.runs.reading = true;
            let mut actions = vec![Action::Refresh, Action::ScanRuns];
            if app.plan.is_some() {
                actions.push(Action::PlanStatus);
            }
            return actions;
        }
        Done::Launched(r) => {
            app.runs.launching.clear();
            app.runs.derive();
            match r {
                Ok(id) => {
                    app.runs.last_launch_id = Some(id.clone());
                    app.status_line =
                        format!("run {id} launched: it goes on if the console leaves");
                    log::info!("run {id} launched");
                    return vec![Action::WatchRuns(vec![id])];
                }
                Err(e) => {
                    app.status_line = format!("error: {e}");
                    log::error!("{e}");
                }
            }
        }
        Done::Runs(read) => {
            app.runs.reading = false;
            if app.apply_runs(read) {
                return vec![Action::Refresh];
            }
        }
        // The runs' own records say how they ended (the watch puts it on the status line,
        // whichever of the two answers comes first); the cancel's word goes to the log.
        Done::Cancelled(Ok(said)) => {
            for line in &said {
                log::info!("{line}");
            }
        }
        Done::Plan(r) => plan::on_status(app, r),
        Done::Listed { year, tiles } => match tiles {
            Ok(tiles) => {
                app.cube.listed.insert(year, tiles.into_iter().collect());
            }
            Err(e) => app.status_line = e,
        },
        Done::Refreshed {
            coverage,
            history,
            head,
            tags,
            years,
        } => return refreshed(app, coverage, history, head, tags, years),
        Done::Sources(Ok(check)) => {
            // A re-issued tile's size may be another now.
            for k in &check.changed {
                app.selection.sizes.remove(k);
            }
            app.cube.changed = check.changed;
            app.cube.source_unknown = check.unknown;
            if !app.cube.changed.is_empty() {
                app.status_line = format!(
                    "{} written tiles' source changed since they were written (%): C selects them, w writes them again",
                    app.cube.changed.len()
                );
            }
        }
        Done::Sources(Err(e)) => {
            app.status_line = format!("the tiles were not compared with their source: {e}");
        }
        Done::Head(head) => {
            if head != app.cube.head {
                return vec![Action::Refresh];
            }
            app.read_back();
        }
        Done::ReadFailed(e) => {
            if !app.cube.read_failed {
                log::warn!("reading the repository: {e}");
            }
            app.cube.read_failed = true;
            app.status_line =
                format!("reading the repository failed, retried at the next poll: {e}");
        }
        Done::Error(e) | Done::Cancelled(Err(e)) => {
            app.status_line = format!("error: {e}");
            log::error!("{e}");
        }
        Done::Browse(Ok(b)) => {
            app.status_line = format!("browsing {}", b.snapshot);
            app.cube.browse = Some(b);
        }
        Done::Browse(Err(e)) | Done::Tagged(Err(e)) => app.status_line = format!("error: {e}"),
        // The tag shows in the history once read back (the coverage is cached: cheap).
        Done::Tagged(Ok(msg)) => {
            app.status_line = msg;
            return vec![Action::Refresh];
        }
        Done::QuickLook(r) => quicklook::on_read(app, r),
        Done::Log(lines) => popups::log::on_read(app, lines),
        Done::Sizes(r) => {
            app.selection.sizing = false;
            match r {
                Ok(sizes) => {
                    app.selection.sizes.extend(sizes);
                    if app.status_line.ends_with(SELECTION_TAIL) {
                        app.status_line = app.selection.line();
                    }
                    write::sizes_known(app);
                }
                // Not worth a retry loop: the bytes are a courtesy; the write reads anyway.
                Err(e) => log::warn!("looking up the selected tiles' sizes: {e}"),
            }
        }
        Done::Map(key, r) => map::on_read(app, key, r),
    }
    Vec::new()
}

/// The branch head's coverage and history, read afresh: the grid shows them, the years
/// follow the cube's, what a cancelled or dead run did not land is selected again, and a
/// head that moved has the written tiles' sources compared again.
fn refreshed(
    app: &mut App,
    coverage: tilecube::cube::Coverage,
    history: Vec<tilecube::cube::Commit>,
    head: Option<String>,
    tags: std::collections::BTreeMap<String, Vec<String>>,
    years: Option<Vec<i32>>,
) -> Vec<Action> {
    app.read_back();
    app.cube.loading = None;
    app.cube.coverage = coverage;
    app.cube.tags = tags;
    app.cube.history = history;
    app.history.clamp(app.cube.history.len());
    let mut actions = Vec::new();
    if let Some(years) = years {
        let gained: Vec<i32> = years
            .iter()
            .copied()
            .filter(|y| !app.cube.years.contains(y))
            .collect();
        app.status_line = format!(
            "the cube's years are now {}",
            years
                .iter()
                .map(|y| y.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        app.relayout(None, years);
        if !gained.is_empty() && app.cube.source.is_some() {
            actions.push(Action::ReadLists(gained));
        }
    }
    if let Some((tiles, started)) = app.runs.reselect.take() {
        // What a cancelled or dead run did not land is selected again: `w` retries.
        let left: Vec<_> = tiles
            .iter()
            .filter(|(y, t)| !app.cube.landed_since(*y, *t, started))
            .copied()
            .collect();
        if !left.is_empty() {
            app.status_line = format!(
                "{}; {} not landed selected again: w writes {}",
                app.status_line,
                tilecube::text::plural(left.len(), "tile"),
                if left.len() == 1 { "it" } else { "them" }
            );
            app.selection.tiles.extend(left);
        }
    }
    app.runs.ended_unread.clear();
    app.runs.derive();
    let moved = app.cube.head != head;
    app.cube.head = head;
    if moved && app.cube.source.is_some() {
        actions.push(Action::CheckSources);
    }
    actions
}

/// Handle one key press: a popup takes it first, else the key table says what it means:
/// a key that holds anywhere is handled here, the others by the panel focused.
pub fn on_key(app: &mut App, key: KeyEvent) -> Vec<Action> {
    if app.popup.is_some() {
        if keys::command(Scope::Any, &key, 0) == Some(Command::Quit)
            && key.code != KeyCode::Char('q')
        {
            return leave::ask(app);
        }
        return popups::on_key(app, key);
    }
    let scope = match app.focus {
        Focus::History => Scope::History,
        Focus::Runs => Scope::Runs,
        Focus::Grid => Scope::Grid,
    };
    let Some(command) = keys::command(scope, &key, app.cube.years.len()) else {
        return Vec::new();
    };
    if app.cube.loading.is_some() && command.needs_repository() {
        app.status_line = format!(
            "still loading ({}): this waits for the repository",
            app.cube.loading.as_deref().unwrap_or_default()
        );
        return Vec::new();
    }
    let years = app.cube.years.len();
    match command {
        Command::Help => app.popup = Some(Popup::Help),
        Command::Map => map::toggle(app),
        Command::Plan => plan::open(app),
        Command::Quit => return leave::ask(app),
        Command::Focus => {
            app.focus = match app.focus {
                Focus::Grid => Focus::History,
                Focus::History => Focus::Runs,
                Focus::Runs => Focus::Grid,
            }
        }
        Command::Year(i) => app.grid.year_index = i,
        Command::PrevYear => app.grid.year_index = app.grid.year_index.saturating_sub(1),
        Command::NextYear => {
            app.grid.year_index = (app.grid.year_index + 1).min(years.saturating_sub(1))
        }
        Command::Back => {
            if app.cube.browse.is_some() {
                app.cube.browse = None;
                app.status_line = "back to the branch head".into();
            } else if !app.selection.tiles.is_empty() {
                app.selection.tiles.clear();
                app.status_line = "selection cleared".into();
            }
        }
        Command::Log => return popups::log::open(app),
        Command::Copy => {
            let text = match app.focus {
                Focus::History => match history::chosen(app) {
                    Some(c) => c.id.clone(),
                    None => return Vec::new(),
                },
                _ => app.cursor_tile().to_string(),
            };
            app.status_line = format!("copied {text} (to the terminal's clipboard, OSC 52)");
            return vec![Action::Copy(text)];
        }
        _ => {
            return match app.focus {
                Focus::History => history::on_command(app, command),
                Focus::Runs => runs::on_command(app, command),
                Focus::Grid => grid::on_command(app, command),
            };
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::components::popups::quicklook::QuickLook;
    use crate::tui::state::CellState;
    use crate::tui::state::fixtures::{app, ch, record, run, t};
    use tilecube::cube::{Commit, Coverage};
    use tilecube::grid::Cell;

    #[test]
    fn a_failed_read_shows_until_a_poll_reads_again() {
        let mut a = app();
        a.cube.head = Some("H".into());
        assert!(update(&mut a, Msg::Done(Done::ReadFailed("503 SlowDown".into()))).is_empty());
        assert!(a.cube.read_failed);
        assert!(
            a.status_line.contains("retried at the next poll") && a.status_line.contains("503"),
            "{}",
            a.status_line
        );
        // The same head read back: the failure is over, nothing to refresh.
        assert!(update(&mut a, Msg::Done(Done::Head(Some("H".into())))).is_empty());
        assert!(!a.cube.read_failed);
        assert_eq!(a.status_line, "the repository answers again");
        // A head that moved while reads failed is refreshed at the next poll.
        update(&mut a, Msg::Done(Done::ReadFailed("reset".into())));
        assert_eq!(
            update(&mut a, Msg::Done(Done::Head(Some("H2".into())))),
            vec![Action::Refresh]
        );
        assert!(a.cube.read_failed, "still failed until the refresh lands");
    }

    #[test]
    fn while_loading_the_console_moves_but_waits_to_act_on_the_repository() {
        let mut a = app();
        a.cube.loading = Some("opening repo".into());
        assert_eq!(a.cell_state(2000, t("80N_180W")), CellState::Loading);
        assert_eq!(a.cell_state(2000, t("00N_000E")), CellState::NoTile);
        on_key(&mut a, ch('l'));
        assert_eq!(a.grid.cursor, Cell { col: 1, row: 0 });
        on_key(&mut a, ch('2'));
        assert_eq!(a.year(), 2005);
        on_key(&mut a, ch('1'));
        on_key(&mut a, ch('a'));
        assert!(
            a.selection.tiles.is_empty(),
            "select-all waits for the coverage"
        );
        assert!(a.status_line.contains("still loading"), "{}", a.status_line);
        on_key(&mut a, ch('p'));
        assert!(a.popup.is_none());

        // The repository opens: its grid and years replace the preset's, and its head's
        // coverage is asked for.
        let grid = a.cube.grid.clone();
        let actions = update(
            &mut a,
            Msg::Done(Done::Opened {
                grid,
                years: vec![2000, 2005, 2010],
                failed: vec![],
                warning: None,
            }),
        );
        assert_eq!(actions, vec![Action::Refresh, Action::ScanRuns]);
        assert_eq!(a.cube.years, vec![2000, 2005, 2010]);
        assert!(a.cube.loading.is_some());
        update(
            &mut a,
            Msg::Done(Done::Listed {
                year: 2005,
                tiles: Ok(vec![t("00N_000E")]),
            }),
        );
        assert!(a.cube.is_listed(2005, t("00N_000E")));
        update(
            &mut a,
            Msg::Done(Done::Refreshed {
                tags: Default::default(),
                years: None,
                coverage: Coverage::default(),
                history: vec![],
                head: Some("H".into()),
            }),
        );
        assert!(a.cube.loading.is_none());
        assert_eq!(a.cell_state(2000, t("80N_180W")), CellState::Listed);
        on_key(&mut a, ch('a'));
        assert_eq!(a.selection.tiles.len(), 3, "select-all acts once loaded");
    }

    #[test]
    fn years_change_with_digits_and_brackets() {
        let mut a = app();
        on_key(&mut a, ch('2'));
        assert_eq!(a.year(), 2005);
        on_key(&mut a, ch('9'));
        assert_eq!(a.year(), 2005, "no ninth year");
        on_key(&mut a, ch('['));
        assert_eq!(a.year(), 2000);
        on_key(&mut a, ch('['));
        assert_eq!(a.year(), 2000);
        on_key(&mut a, ch(']'));
        assert_eq!(a.year(), 2005);
    }

    #[test]
    fn y_copies_the_tile_name_or_the_snapshot_id() {
        let mut a = app();
        assert_eq!(
            on_key(&mut a, ch('y')),
            vec![Action::Copy("80N_180W".into())]
        );
        a.cube.history = vec![Commit {
            id: "SNAPAAAA".into(),
            parent: None,
            time: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            message: "m".into(),
            written: Default::default(),
            init: true,
            plan: None,
            carried: Default::default(),
            sources: Default::default(),
            layout_changed: false,
        }];
        a.focus = Focus::History;
        assert_eq!(
            on_key(&mut a, ch('y')),
            vec![Action::Copy("SNAPAAAA".into())]
        );
        assert!(a.status_line.starts_with("copied SNAPAAAA"));
    }

    #[test]
    fn finished_work_updates_the_state() {
        let mut a = app();
        a.runs.writing = true;
        update(&mut a, Msg::Done(Done::Launched(Err("boom".into()))));
        assert!(!a.runs.writing, "a launch that failed frees the pool");
        assert_eq!(a.status_line, "error: boom");

        a.popup = Some(Popup::QuickLook(QuickLook {
            year: 2000,
            tile: t("80N_180W"),
            pixels: None,
        }));
        update(
            &mut a,
            Msg::Done(Done::QuickLook(Ok((2, vec![1, 2, 3, 4])))),
        );
        assert!(
            matches!(&a.popup, Some(Popup::QuickLook(q)) if q.pixels == Some((2, vec![1, 2, 3, 4])))
        );
        update(&mut a, Msg::Done(Done::QuickLook(Err("gone".into()))));
        assert_eq!(a.popup, None, "a failed quick-look closes its popup");

        let b = crate::tui::state::Browse {
            snapshot: "S2".into(),
            message: "x".into(),
            coverage: Default::default(),
            diff_against: None,
            changed: Default::default(),
        };
        update(&mut a, Msg::Done(Done::Browse(Ok(b))));
        assert_eq!(
            a.cube.browse.as_ref().map(|b| b.snapshot.as_str()),
            Some("S2")
        );
        assert_eq!(a.status_line, "browsing S2");
    }

    #[test]
    fn signals_and_a_lost_terminal_leave_the_console_and_never_the_runs() {
        for (msg, code) in [
            (Msg::Signal(libc::SIGHUP), 129),
            (Msg::Signal(libc::SIGTERM), 143),
            (Msg::TerminalLost, 129),
        ] {
            let mut a = app();
            a.apply_runs(vec![run("R1", "running", record(&[], 0))]);
            let actions = update(&mut a, msg);
            assert_eq!(actions, vec![Action::Quit], "no cancel: the run goes on");
            let exit = a.exit.expect("the console leaves");
            assert_eq!(exit.code(), code);
            // A second signal changes nothing.
            update(&mut a, Msg::Signal(libc::SIGINT));
            assert_eq!(a.exit.map(|e| e.code()), Some(code));
        }
    }

    #[test]
    fn runs_are_watched_only_while_one_is_going_and_never_twice_at_once() {
        let mut a = app();
        assert!(update(&mut a, Msg::Watch).is_empty(), "nothing to watch");
        a.apply_runs(vec![run("R1", "running", record(&[], 0))]);
        assert_eq!(
            update(&mut a, Msg::Watch),
            vec![Action::WatchRuns(vec!["R1".into()])]
        );
        assert!(update(&mut a, Msg::Watch).is_empty(), "a read is under way");
        update(
            &mut a,
            Msg::Done(Done::Runs(vec![run("R1", "running", record(&[], 0))])),
        );
        assert_eq!(update(&mut a, Msg::Watch).len(), 1);
    }

    #[test]
    fn polling_checks_the_head_and_the_runs_and_refreshes_when_the_head_moved() {
        let mut a = app();
        a.cube.head = Some("H1".into());
        assert_eq!(
            update(&mut a, Msg::Poll),
            vec![Action::CheckHead, Action::ScanRuns]
        );
        assert_eq!(
            update(&mut a, Msg::Poll),
            vec![Action::CheckHead],
            "the runs' read is under way"
        );
        assert!(update(&mut a, Msg::Done(Done::Head(Some("H1".into())))).is_empty());
        assert_eq!(
            update(&mut a, Msg::Done(Done::Head(Some("H2".into())))),
            vec![Action::Refresh]
        );
        update(
            &mut a,
            Msg::Done(Done::Refreshed {
                tags: Default::default(),
                years: None,
                coverage: Coverage::default(),
                history: vec![],
                head: Some("H2".into()),
            }),
        );
        assert_eq!(a.cube.head.as_deref(), Some("H2"));
    }
}
