//! The console's state machine, Elm-shaped: one message type ([`Msg`]: keys, engine events,
//! finished background work, signals, ticks) and one [`update`] that turns a message into
//! state changes and [`Action`]s for the runtime to run.
//!
//! Invariants: nothing here touches the terminal or the repository; every state change of
//! the console happens here, so each is unit-testable; keys are looked up in the one key
//! table ([`super::keys`]).

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use tilecube::cube::{Commit, Committed, Coverage};
use tilecube::ingest::{Event, IngestReport};

use super::keys::{self, Command, Scope};
use super::state::{App, Browse, CellState, Exit, Failure, Focus, Popup};
use tilecube::grid::{Cell, Grid, TileName};

/// Everything that can happen to the console.
#[derive(Debug)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// An event of the running ingest.
    Engine(Event),
    /// Background work finished.
    Done(Done),
    /// A signal arrived: its number.
    Signal(i32),
    /// The terminal is gone (a dropped SSH link): reading keys or drawing failed.
    TerminalLost,
    /// Time to look whether another process moved the branch.
    Poll,
}

/// The results of background work.
#[derive(Debug)]
pub enum Done {
    /// The repository is open: the cube's grid and years, as the repository lays them out.
    Opened {
        grid: Grid,
        years: Vec<i32>,
    },
    /// A year's tile list was read from the source (or could not be).
    Listed {
        year: i32,
        tiles: Result<Vec<TileName>, String>,
    },
    /// The branch head's coverage and history, read afresh.
    Refreshed {
        coverage: Coverage,
        history: Vec<Commit>,
        head: Option<String>,
    },
    /// The branch head now.
    Head(Option<String>),
    Write(Result<IngestReport, String>),
    Commit(Result<Option<Committed>, String>),
    Browse(Result<Browse, String>),
    Tagged(Result<String, String>),
    QuickLook(Result<(usize, Vec<u8>), String>),
    /// The watched plan's progress, read afresh.
    Plan(Result<tilecube::scaleout::PlanStatus, String>),
    Error(String),
}

/// Work the runtime does for the console, off the UI task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these tiles (year, tile).
    Write(Vec<(i32, TileName)>),
    /// Stop the running write at the next strip.
    Cancel,
    /// Commit the uncommitted tiles with this message.
    Commit(String),
    /// Show the tiles of a snapshot.
    Browse { snapshot: String, message: String },
    /// Show the tiles changed between two snapshots.
    Diff { from: String, to: String },
    /// Tag a snapshot.
    Tag { snapshot: String, name: String },
    /// Read a tile back from the cube for a quick-look.
    QuickLook { year: i32, tile: TileName },
    /// Read the branch head's coverage and history again.
    Refresh,
    /// Look up the branch head.
    CheckHead,
    /// Read the watched plan's progress.
    PlanStatus,
    /// Leave the console.
    Quit,
}

/// Apply one message.
pub fn update(app: &mut App, msg: Msg) -> Vec<Action> {
    match msg {
        Msg::Key(k) => on_key(app, k),
        Msg::Engine(ev) => on_event(app, &ev),
        Msg::Done(d) => on_done(app, d),
        Msg::Signal(n) => stop(app, Exit::Signal(n)),
        Msg::TerminalLost => stop(app, Exit::TerminalLost),
        Msg::Poll => {
            let mut actions = Vec::new();
            if app.plan.is_some() && app.loading.is_none() && app.exit.is_none() {
                actions.push(Action::PlanStatus);
            }
            if !(app.writing || app.committing || app.exit.is_some()) {
                actions.push(Action::CheckHead);
            }
            actions
        }
    }
}

/// A signal or a lost terminal: running tiles stop at their next strip; the runtime then
/// commits the finished ones and leaves.
fn stop(app: &mut App, exit: Exit) -> Vec<Action> {
    if app.exit.is_none() {
        app.exit = Some(exit);
        app.status_line = "stopping: finished tiles will be committed".into();
        log::warn!("{exit:?}: stopping; finished tiles are committed");
    }
    vec![Action::Cancel]
}

fn on_done(app: &mut App, done: Done) -> Vec<Action> {
    match done {
        Done::Opened { grid, years } => {
            if grid != app.grid {
                app.cursor = Cell { col: 0, row: 0 };
            }
            app.grid = grid;
            app.years = years;
            app.year_index = app.year_index.min(app.years.len().saturating_sub(1));
            app.loading = Some("reading the branch head's tiles".into());
            if app.plan.is_some() {
                return vec![Action::Refresh, Action::PlanStatus];
            }
            return vec![Action::Refresh];
        }
        Done::Plan(r) => {
            if let Some(plan) = app.plan.as_mut() {
                match r {
                    Ok(status) => {
                        plan.status = Some(status);
                        plan.error = None;
                    }
                    Err(e) => plan.error = Some(e),
                }
            }
        }
        Done::Listed { year, tiles } => match tiles {
            Ok(tiles) => {
                app.listed.insert(year, tiles.into_iter().collect());
            }
            Err(e) => app.status_line = e,
        },
        Done::Refreshed {
            coverage,
            history,
            head,
        } => {
            app.loading = None;
            app.coverage = coverage;
            app.history = history;
            app.history_index = app.history_index.min(app.history.len().saturating_sub(1));
            app.head = head;
        }
        Done::Head(head) => {
            if head != app.head {
                return vec![Action::Refresh];
            }
        }
        Done::Write(Ok(report)) => {
            app.writing = false;
            log::info!(
                "write finished: {} written, {} failed",
                report.written_count(),
                report.failed.len()
            );
        }
        Done::Write(Err(e)) | Done::Error(e) => {
            app.writing = false;
            app.status_line = format!("error: {e}");
            log::error!("{e}");
        }
        Done::Commit(Ok(Some(c))) => {
            app.committing = false;
            app.uncommitted.clear();
            app.status_line = format!("committed {}", c.snapshot);
            log::info!("committed {}", c.snapshot);
            return vec![Action::Refresh];
        }
        Done::Commit(Ok(None)) => {
            app.committing = false;
            app.status_line = "nothing to commit".into();
        }
        Done::Commit(Err(e)) => {
            app.committing = false;
            app.status_line = format!("commit failed: {e}");
            log::error!("commit failed: {e}");
        }
        Done::Browse(Ok(b)) => {
            app.status_line = format!("browsing {}", b.snapshot);
            app.browse = Some(b);
        }
        Done::Browse(Err(e)) | Done::Tagged(Err(e)) => app.status_line = format!("error: {e}"),
        Done::Tagged(Ok(msg)) => app.status_line = msg,
        Done::QuickLook(Ok(px)) => app.quicklook = Some(px),
        Done::QuickLook(Err(e)) => {
            app.popup = None;
            app.status_line = format!("quick-look: {e}");
        }
    }
    Vec::new()
}

/// Handle one key press: a popup takes it first, else the key table says what it means.
pub fn on_key(app: &mut App, key: KeyEvent) -> Vec<Action> {
    if let Some(popup) = app.popup.clone() {
        if keys::command(Scope::Any, &key, 0) == Some(Command::Quit)
            && key.code != KeyCode::Char('q')
        {
            return ask_quit(app);
        }
        return on_popup_key(app, popup, key);
    }
    let scope = match app.focus {
        Focus::History => Scope::History,
        _ => Scope::Grid,
    };
    let Some(command) = keys::command(scope, &key, app.years.len()) else {
        return Vec::new();
    };
    if app.loading.is_some() && command.needs_repository() {
        app.status_line = format!(
            "still loading ({}): this waits for the repository",
            app.loading.as_deref().unwrap_or_default()
        );
        return Vec::new();
    }
    match command {
        Command::Help => app.popup = Some(Popup::Help),
        Command::Plan => {
            if app.plan.is_some() {
                app.popup = Some(Popup::Plan);
            } else {
                app.status_line = "no plan watched: open the console with --plan PLAN".into();
            }
        }
        Command::Quit => return ask_quit(app),
        Command::Focus => {
            app.focus = match app.focus {
                Focus::Grid => Focus::History,
                Focus::History => Focus::Session,
                Focus::Session => Focus::Grid,
            }
        }
        Command::Year(i) => app.year_index = i,
        Command::PrevYear => app.year_index = app.year_index.saturating_sub(1),
        Command::NextYear => {
            app.year_index = (app.year_index + 1).min(app.years.len().saturating_sub(1))
        }
        Command::Back => {
            if app.browse.is_some() {
                app.browse = None;
                app.status_line = "back to the branch head".into();
            } else {
                app.selected.clear();
            }
        }
        _ if scope == Scope::History => return on_history_command(app, command),
        _ => return on_grid_command(app, command),
    }
    Vec::new()
}

fn move_cursor(app: &mut App, command: Command) -> bool {
    let (cols, rows) = (app.grid.columns, app.grid.rows);
    let Cell { col, row } = app.cursor;
    app.cursor = match command {
        Command::Left => Cell {
            col: col.saturating_sub(1),
            row,
        },
        Command::Right => Cell {
            col: (col + 1).min(cols - 1),
            row,
        },
        Command::Up => Cell {
            col,
            row: row.saturating_sub(1),
        },
        Command::Down => Cell {
            col,
            row: (row + 1).min(rows - 1),
        },
        _ => return false,
    };
    true
}

fn on_grid_command(app: &mut App, command: Command) -> Vec<Action> {
    if move_cursor(app, command) {
        return Vec::new();
    }
    let year = app.year();
    let read_only = app.browse.is_some();
    match command {
        Command::Select if !read_only => {
            let key = (year, app.cursor_tile());
            if !app.selected.remove(&key) {
                app.selected.insert(key);
            }
        }
        Command::SelectAll if !read_only => {
            for t in app.grid.tiles().collect::<Vec<_>>() {
                if app.cell_state(year, t) == CellState::Listed {
                    app.selected.insert((year, t));
                }
            }
        }
        Command::SelectFailed if !read_only => {
            let failed: Vec<_> = app.failed.keys().copied().collect();
            app.selected.extend(failed);
        }
        Command::Write if !read_only => {
            if app.writing {
                app.status_line = "a write is already running".into();
            } else if app.selected.is_empty() {
                app.status_line =
                    "nothing selected: space selects a tile, a every listed one".into();
            } else {
                let years: std::collections::BTreeSet<i32> =
                    app.selected.iter().map(|(y, _)| *y).collect();
                app.popup = Some(Popup::ConfirmWrite {
                    tiles: app.selected.len(),
                    years: years.len(),
                    threads: app.threads,
                });
            }
        }
        Command::Cancel if app.writing => return vec![Action::Cancel],
        Command::Commit if !read_only => {
            if app.has_uncommitted() && !app.writing {
                app.popup = Some(Popup::CommitPrompt {
                    message: app.default_commit_message(),
                });
            } else if app.writing {
                app.status_line = "wait for the write to finish before committing".into();
            } else {
                app.status_line = "nothing to commit".into();
            }
        }
        Command::QuickLook => {
            let tile = app.cursor_tile();
            if matches!(
                app.cell_state(year, tile),
                CellState::Written | CellState::Uncommitted
            ) {
                app.popup = Some(Popup::QuickLook { year, tile });
                app.quicklook = None;
                return vec![Action::QuickLook { year, tile }];
            }
            app.status_line = format!("{year}/{tile} is not written");
        }
        _ => {}
    }
    Vec::new()
}

fn on_history_command(app: &mut App, command: Command) -> Vec<Action> {
    let n = app.history.len();
    match command {
        Command::Up => app.history_index = app.history_index.saturating_sub(1),
        Command::Down => app.history_index = (app.history_index + 1).min(n.saturating_sub(1)),
        Command::Open => {
            if let Some(c) = app.history.get(app.history_index) {
                return vec![Action::Browse {
                    snapshot: c.id.clone(),
                    message: c.message.clone(),
                }];
            }
        }
        Command::Diff => {
            let (Some(b), Some(c)) = (&app.browse, app.history.get(app.history_index)) else {
                app.status_line = "open a snapshot with Enter, then d on another".into();
                return Vec::new();
            };
            return vec![Action::Diff {
                from: c.id.clone(),
                to: b.snapshot.clone(),
            }];
        }
        Command::Tag => {
            if let Some(c) = app.history.get(app.history_index) {
                app.popup = Some(Popup::TagPrompt {
                    snapshot: c.id.clone(),
                    name: String::new(),
                });
            }
        }
        _ => {}
    }
    Vec::new()
}

fn ask_quit(app: &mut App) -> Vec<Action> {
    let reason = if app.writing {
        Some("writes are running")
    } else if app.has_uncommitted() {
        Some("written tiles are not committed")
    } else {
        None
    };
    match reason {
        Some(r) => {
            app.popup = Some(Popup::ConfirmQuit { reason: r.into() });
            Vec::new()
        }
        None => {
            app.exit = Some(Exit::Quit);
            vec![Action::Quit]
        }
    }
}

fn is_yes(key: &KeyEvent) -> bool {
    matches!(
        key.code,
        KeyCode::Enter | KeyCode::Char('y') | KeyCode::Char('Y')
    )
}

fn is_no(key: &KeyEvent) -> bool {
    matches!(
        key.code,
        KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('N')
    )
}

fn edit(text: &mut String, key: &KeyEvent) {
    match key.code {
        KeyCode::Char(c) => text.push(c),
        KeyCode::Backspace => {
            text.pop();
        }
        _ => {}
    }
}

fn on_popup_key(app: &mut App, popup: Popup, key: KeyEvent) -> Vec<Action> {
    match popup {
        Popup::Help | Popup::QuickLook { .. } | Popup::Plan => {
            if matches!(
                key.code,
                KeyCode::Esc
                    | KeyCode::Enter
                    | KeyCode::Char('q')
                    | KeyCode::Char('?')
                    | KeyCode::Char('p')
                    | KeyCode::Char('S')
            ) {
                app.popup = None;
            }
        }
        Popup::ConfirmWrite { .. } => {
            if is_yes(&key) {
                app.popup = None;
                let tiles: Vec<_> = std::mem::take(&mut app.selected).into_iter().collect();
                for t in &tiles {
                    app.failed.remove(t);
                    app.queued.insert(*t);
                }
                app.writing = true;
                return vec![Action::Write(tiles)];
            } else if is_no(&key) {
                app.popup = None;
            }
        }
        Popup::CommitPrompt { mut message } => match key.code {
            KeyCode::Enter if !message.trim().is_empty() => {
                app.popup = None;
                app.committing = true;
                return vec![Action::Commit(message)];
            }
            KeyCode::Esc => app.popup = None,
            _ => {
                edit(&mut message, &key);
                app.popup = Some(Popup::CommitPrompt { message });
            }
        },
        Popup::TagPrompt { snapshot, mut name } => match key.code {
            KeyCode::Enter if !name.trim().is_empty() => {
                app.popup = None;
                return vec![Action::Tag { snapshot, name }];
            }
            KeyCode::Esc => app.popup = None,
            _ => {
                edit(&mut name, &key);
                app.popup = Some(Popup::TagPrompt { snapshot, name });
            }
        },
        Popup::ConfirmQuit { .. } => {
            if is_yes(&key) {
                app.popup = None;
                app.exit = Some(Exit::Quit);
                return vec![Action::Quit];
            } else if is_no(&key) {
                app.popup = None;
            }
        }
    }
    Vec::new()
}

/// Apply one engine event.
pub fn on_event(app: &mut App, event: &Event) -> Vec<Action> {
    match event {
        Event::Started { tiles, threads } => {
            app.progress = super::state::Progress {
                started: Some(std::time::Instant::now()),
                tiles_total: *tiles,
                threads: *threads,
                ..Default::default()
            };
        }
        Event::TileStarted {
            year,
            tile,
            chunks_total,
        } => {
            app.queued.remove(&(*year, *tile));
            app.running.insert((*year, *tile), (0, *chunks_total));
            app.progress.busy = app.running.len();
        }
        Event::TileProgress {
            year,
            tile,
            chunks_done,
            chunks_total,
            ..
        } => {
            app.running
                .insert((*year, *tile), (*chunks_done, *chunks_total));
        }
        Event::TileWritten {
            year,
            tile,
            chunks_stored,
            pixel_bytes,
            ..
        } => {
            let key = (*year, *tile);
            app.running.remove(&key);
            app.queued.remove(&key);
            app.failed.remove(&key);
            app.uncommitted.insert(key, *chunks_stored);
            app.progress.tiles_done += 1;
            app.progress.pixel_bytes_done += pixel_bytes;
            app.progress.busy = app.running.len();
        }
        Event::TileFailed {
            year,
            tile,
            error,
            attempts,
            ..
        } => {
            log::warn!("{year}/{tile}: {error}");
            let key = (*year, *tile);
            app.running.remove(&key);
            app.queued.remove(&key);
            app.failed.insert(
                key,
                Failure {
                    error: error.clone(),
                    attempts: *attempts,
                },
            );
            app.progress.tiles_done += 1;
            app.progress.busy = app.running.len();
        }
        Event::TileRetry {
            year,
            tile,
            attempt,
            error,
        } => {
            app.status_line = format!("{year}/{tile}: retry {attempt} after: {error}");
        }
        Event::Committed {
            snapshot, tiles, ..
        } => {
            // A checkpoint commit takes every pending tile of the session.
            app.uncommitted.clear();
            app.status_line = format!("committed {tiles} tiles as {snapshot}");
            return vec![Action::Refresh];
        }
        Event::Staged { part, tiles } => {
            app.uncommitted.clear();
            app.status_line = format!("staged {tiles} tiles as {part}");
        }
        Event::Warning { message } => {
            log::warn!("{message}");
            app.status_line = format!("warning: {message}");
        }
        Event::Finished {
            written,
            failed,
            cancelled,
        } => {
            app.writing = false;
            app.running.clear();
            app.queued.clear();
            app.progress.busy = 0;
            app.status_line = format!(
                "write finished: {written} written, {failed} failed{}",
                if *cancelled { ", cancelled" } else { "" }
            );
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyModifiers;
    use tilecube::grid::Grid;
    use tilecube::preset::Preset;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn ch(c: char) -> KeyEvent {
        key(KeyCode::Char(c))
    }

    fn app() -> App {
        let grid = Grid::from_preset(&Preset::glad(), Some(400)).unwrap();
        let mut app = App::new("repo".into(), "main".into(), grid, vec![2000, 2005], 2);
        let listed = ["80N_180W", "80N_170W", "70N_180W"].map(|s| s.parse().unwrap());
        app.listed.insert(2000, listed.into_iter().collect());
        app
    }

    fn t(s: &str) -> TileName {
        s.parse().unwrap()
    }

    #[test]
    fn while_loading_the_console_moves_but_waits_to_act_on_the_repository() {
        let mut a = app();
        a.loading = Some("opening repo".into());
        assert_eq!(a.cell_state(2000, t("80N_180W")), CellState::Loading);
        assert_eq!(a.cell_state(2000, t("00N_000E")), CellState::NoTile);
        on_key(&mut a, ch('l'));
        assert_eq!(a.cursor, Cell { col: 1, row: 0 });
        on_key(&mut a, ch('2'));
        assert_eq!(a.year(), 2005);
        on_key(&mut a, ch('1'));
        on_key(&mut a, ch('a'));
        assert!(a.selected.is_empty(), "select-all waits for the coverage");
        assert!(a.status_line.contains("still loading"), "{}", a.status_line);
        on_key(&mut a, ch('p'));
        assert!(a.popup.is_none());

        // The repository opens: its grid and years replace the preset's, and its head's
        // coverage is asked for.
        let grid = a.grid.clone();
        let actions = update(
            &mut a,
            Msg::Done(Done::Opened {
                grid,
                years: vec![2000, 2005, 2010],
            }),
        );
        assert_eq!(actions, vec![Action::Refresh]);
        assert_eq!(a.years, vec![2000, 2005, 2010]);
        assert!(a.loading.is_some());
        update(
            &mut a,
            Msg::Done(Done::Listed {
                year: 2005,
                tiles: Ok(vec![t("00N_000E")]),
            }),
        );
        assert!(a.is_listed(2005, t("00N_000E")));
        update(
            &mut a,
            Msg::Done(Done::Refreshed {
                coverage: Coverage::default(),
                history: vec![],
                head: Some("H".into()),
            }),
        );
        assert!(a.loading.is_none());
        assert_eq!(a.cell_state(2000, t("80N_180W")), CellState::Listed);
        on_key(&mut a, ch('a'));
        assert_eq!(a.selected.len(), 3, "select-all acts once loaded");
    }

    #[test]
    fn arrows_and_hjkl_move_within_the_grid() {
        let mut a = app();
        on_key(&mut a, key(KeyCode::Left));
        on_key(&mut a, ch('k'));
        assert_eq!(a.cursor, Cell { col: 0, row: 0 });
        on_key(&mut a, ch('l'));
        on_key(&mut a, key(KeyCode::Down));
        assert_eq!(a.cursor, Cell { col: 1, row: 1 });
        for _ in 0..50 {
            on_key(&mut a, key(KeyCode::Right));
            on_key(&mut a, ch('j'));
        }
        assert_eq!(a.cursor, Cell { col: 35, row: 13 });
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
    fn space_toggles_a_selects_listed_unwritten_and_esc_clears() {
        let mut a = app();
        on_key(&mut a, ch(' '));
        assert!(a.selected.contains(&(2000, t("80N_180W"))));
        on_key(&mut a, ch(' '));
        assert!(a.selected.is_empty());
        a.uncommitted.insert((2000, t("70N_180W")), 1);
        on_key(&mut a, ch('a'));
        let sel: Vec<_> = a.selected.iter().map(|(_, t)| t.to_string()).collect();
        assert_eq!(
            sel,
            ["80N_180W", "80N_170W"],
            "only listed, unwritten tiles"
        );
        on_key(&mut a, key(KeyCode::Esc));
        assert!(a.selected.is_empty());
    }

    #[test]
    fn f_selects_failed_tiles_and_w_confirms_then_launches() {
        let mut a = app();
        a.failed.insert(
            (2000, t("80N_170W")),
            Failure {
                error: "bad".into(),
                attempts: 1,
            },
        );
        on_key(&mut a, ch('f'));
        assert_eq!(a.selected.len(), 1);
        assert!(on_key(&mut a, ch('w')).is_empty());
        assert_eq!(
            a.popup,
            Some(Popup::ConfirmWrite {
                tiles: 1,
                years: 1,
                threads: 2
            })
        );
        assert!(on_key(&mut a, ch('n')).is_empty());
        assert_eq!(a.popup, None);
        on_key(&mut a, ch('w'));
        let actions = on_key(&mut a, key(KeyCode::Enter));
        assert_eq!(actions, vec![Action::Write(vec![(2000, t("80N_170W"))])]);
        assert!(a.writing && a.selected.is_empty());
        assert_eq!(a.cell_state(2000, t("80N_170W")), CellState::Queued);
        assert_eq!(on_key(&mut a, ch('x')), vec![Action::Cancel]);
    }

    #[test]
    fn events_drive_tile_states_and_commit_prompt_prefills_the_tiles() {
        let mut a = app();
        let tile = t("80N_180W");
        on_event(
            &mut a,
            &Event::Started {
                tiles: 1,
                threads: 2,
            },
        );
        on_event(
            &mut a,
            &Event::TileStarted {
                year: 2000,
                tile,
                chunks_total: 16,
            },
        );
        on_event(
            &mut a,
            &Event::TileProgress {
                year: 2000,
                tile,
                chunks_done: 8,
                chunks_total: 16,
                bytes: 10,
            },
        );
        assert_eq!(
            a.cell_state(2000, tile),
            CellState::Running { done: 8, total: 16 }
        );
        assert_eq!(a.cell_state(2000, tile).glyph(), '5');
        on_event(
            &mut a,
            &Event::TileWritten {
                year: 2000,
                tile,
                chunks_stored: 16,
                bytes: 10,
                pixel_bytes: 160_000,
            },
        );
        on_event(
            &mut a,
            &Event::Finished {
                written: 1,
                failed: 0,
                cancelled: false,
            },
        );
        assert_eq!(a.cell_state(2000, tile), CellState::Uncommitted);
        on_key(&mut a, ch('c'));
        assert_eq!(
            a.popup,
            Some(Popup::CommitPrompt {
                message: "write 1 tile: 2000/80N_180W".into()
            })
        );
        on_key(&mut a, key(KeyCode::Backspace));
        on_key(&mut a, ch('!'));
        let actions = on_key(&mut a, key(KeyCode::Enter));
        assert_eq!(
            actions,
            vec![Action::Commit("write 1 tile: 2000/80N_180!".into())]
        );
    }

    #[test]
    fn quit_asks_first_while_work_is_unsaved() {
        let mut a = app();
        a.uncommitted.insert((2000, t("80N_180W")), 1);
        assert!(on_key(&mut a, ch('q')).is_empty());
        assert!(matches!(a.popup, Some(Popup::ConfirmQuit { .. })));
        assert!(on_key(&mut a, key(KeyCode::Esc)).is_empty());
        assert!(a.exit.is_none());
        on_key(&mut a, ch('q'));
        assert_eq!(on_key(&mut a, ch('y')), vec![Action::Quit]);
        let mut b = app();
        assert_eq!(
            on_key(&mut b, ch('q')),
            vec![Action::Quit],
            "nothing to lose: quits at once"
        );
    }

    #[test]
    fn failed_tiles_keep_their_reason() {
        let mut a = app();
        let tile = t("70N_180W");
        on_event(
            &mut a,
            &Event::TileFailed {
                year: 2000,
                tile,
                error: "has 3 bands; expected 1".into(),
                transient: false,
                attempts: 1,
            },
        );
        assert_eq!(a.cell_state(2000, tile), CellState::Failed);
        assert_eq!(a.failed[&(2000, tile)].error, "has 3 bands; expected 1");
    }

    fn committed(tiles: &[(i32, &str)]) -> Committed {
        let mut written = tilecube::cube::WrittenTiles::new();
        for (y, n) in tiles {
            written.entry(*y).or_default().insert(t(n), 16);
        }
        Committed {
            snapshot: "SNAP1".into(),
            message: "m".into(),
            written,
            staged: false,
        }
    }

    #[test]
    fn finished_work_updates_the_state() {
        let mut a = app();
        a.writing = true;
        let done = update(&mut a, Msg::Done(Done::Write(Ok(IngestReport::default()))));
        assert!(done.is_empty());
        assert!(!a.writing, "a finished write frees the pool");
        a.writing = true;
        update(&mut a, Msg::Done(Done::Write(Err("boom".into()))));
        assert!(!a.writing);
        assert_eq!(a.status_line, "error: boom");

        a.popup = Some(Popup::QuickLook {
            year: 2000,
            tile: t("80N_180W"),
        });
        update(
            &mut a,
            Msg::Done(Done::QuickLook(Ok((2, vec![1, 2, 3, 4])))),
        );
        assert_eq!(a.quicklook, Some((2, vec![1, 2, 3, 4])));
        update(&mut a, Msg::Done(Done::QuickLook(Err("gone".into()))));
        assert_eq!(a.popup, None, "a failed quick-look closes its popup");

        let b = Browse {
            snapshot: "S2".into(),
            message: "x".into(),
            coverage: Default::default(),
            diff_against: None,
            changed: Default::default(),
        };
        update(&mut a, Msg::Done(Done::Browse(Ok(b))));
        assert_eq!(a.browse.as_ref().map(|b| b.snapshot.as_str()), Some("S2"));
        assert_eq!(a.status_line, "browsing S2");
    }

    #[test]
    fn commit_results_clear_or_keep_the_uncommitted_tiles() {
        let mut a = app();
        a.uncommitted.insert((2000, t("80N_180W")), 16);
        a.committing = true;
        let actions = update(&mut a, Msg::Done(Done::Commit(Err("conflict".into()))));
        assert!(actions.is_empty());
        assert!(!a.committing);
        assert_eq!(a.uncommitted.len(), 1, "a failed commit keeps the tiles");
        assert_eq!(a.status_line, "commit failed: conflict");

        a.committing = true;
        let actions = update(
            &mut a,
            Msg::Done(Done::Commit(Ok(Some(committed(&[(2000, "80N_180W")]))))),
        );
        assert_eq!(actions, vec![Action::Refresh], "the grid is read again");
        assert!(a.uncommitted.is_empty() && !a.committing);
        assert_eq!(a.status_line, "committed SNAP1");

        // A checkpoint commit by the ingest takes every pending tile too.
        a.uncommitted.insert((2000, t("80N_170W")), 16);
        let actions = update(
            &mut a,
            Msg::Engine(Event::Committed {
                snapshot: "SNAP2".into(),
                message: "m".into(),
                tiles: 1,
            }),
        );
        assert_eq!(actions, vec![Action::Refresh]);
        assert!(a.uncommitted.is_empty());
    }

    #[test]
    fn signals_and_a_lost_terminal_stop_the_writes_and_ask_to_leave() {
        for (msg, code) in [
            (Msg::Signal(libc::SIGHUP), 129),
            (Msg::Signal(libc::SIGTERM), 143),
            (Msg::TerminalLost, 129),
        ] {
            let mut a = app();
            a.writing = true;
            a.uncommitted.insert((2000, t("80N_180W")), 16);
            let actions = update(&mut a, msg);
            assert_eq!(actions, vec![Action::Cancel], "running tiles stop");
            let exit = a.exit.expect("the console leaves");
            assert_eq!(exit.code(), code);
            assert!(
                exit.commits_finished_tiles(),
                "finished tiles are committed"
            );
            // A second signal changes nothing.
            update(&mut a, Msg::Signal(libc::SIGINT));
            assert_eq!(a.exit.map(|e| e.code()), Some(code));
        }
        let mut a = app();
        on_key(&mut a, ch('q'));
        assert_eq!(a.exit, Some(Exit::Quit));
        assert!(
            !Exit::Quit.commits_finished_tiles(),
            "the operator chose to leave them"
        );
    }

    #[test]
    fn polling_checks_the_head_only_when_idle_and_refreshes_when_it_moved() {
        let mut a = app();
        a.head = Some("H1".into());
        assert_eq!(update(&mut a, Msg::Poll), vec![Action::CheckHead]);
        a.writing = true;
        assert!(update(&mut a, Msg::Poll).is_empty(), "not while writing");
        a.writing = false;
        assert!(update(&mut a, Msg::Done(Done::Head(Some("H1".into())))).is_empty());
        assert_eq!(
            update(&mut a, Msg::Done(Done::Head(Some("H2".into())))),
            vec![Action::Refresh]
        );
        update(
            &mut a,
            Msg::Done(Done::Refreshed {
                coverage: Coverage::default(),
                history: vec![],
                head: Some("H2".into()),
            }),
        );
        assert_eq!(a.head.as_deref(), Some("H2"));
    }

    #[test]
    fn open_browses_the_snapshot_with_its_message() {
        let mut a = app();
        a.history = vec![Commit {
            id: "S1".into(),
            parent: None,
            time: chrono::Utc::now(),
            message: "write 1 tile".into(),
            written: Default::default(),
            init: false,
            plan: None,
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
