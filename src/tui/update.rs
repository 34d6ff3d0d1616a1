//! The console's state machine: keys and engine events change the state and ask the runtime
//! for work ([`Action`]s). Nothing here touches the terminal or the repository.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::state::{App, CellState, Failure, Focus, Popup};
use crate::grid::{Cell, TileName};
use crate::ingest::Event;

/// Work the runtime does for the console, off the UI task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these tiles (year, tile).
    Write(Vec<(i32, TileName)>),
    /// Stop the running write.
    Cancel,
    /// Commit the uncommitted tiles with this message.
    Commit(String),
    /// Show the tiles of a snapshot.
    Browse(String),
    /// Show the tiles changed between two snapshots.
    Diff { from: String, to: String },
    /// Tag a snapshot.
    Tag { snapshot: String, name: String },
    /// Read a tile back from the cube for a quick-look.
    QuickLook { year: i32, tile: TileName },
    /// Leave the console.
    Quit,
}

/// Handle one key press.
pub fn on_key(app: &mut App, key: KeyEvent) -> Vec<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return ask_quit(app);
    }
    if let Some(popup) = app.popup.clone() {
        return on_popup_key(app, popup, key);
    }
    match key.code {
        KeyCode::Char('?') => app.popup = Some(Popup::Help),
        KeyCode::Char('q') => return ask_quit(app),
        KeyCode::Tab => {
            app.focus = match app.focus {
                Focus::Grid => Focus::History,
                Focus::History => Focus::Session,
                Focus::Session => Focus::Grid,
            }
        }
        KeyCode::Char(c @ '1'..='9') => {
            let i = c as usize - '1' as usize;
            if i < app.years.len() {
                app.year_index = i;
            }
        }
        KeyCode::Char('[') => app.year_index = app.year_index.saturating_sub(1),
        KeyCode::Char(']') => {
            app.year_index = (app.year_index + 1).min(app.years.len().saturating_sub(1))
        }
        KeyCode::Esc => {
            if app.browse.is_some() {
                app.browse = None;
                app.status_line = "back to the branch head".into();
            } else {
                app.selected.clear();
            }
        }
        _ if app.focus == Focus::History => return on_history_key(app, key),
        _ => return on_grid_key(app, key),
    }
    Vec::new()
}

fn move_cursor(app: &mut App, code: KeyCode) -> bool {
    let (cols, rows) = (app.grid.columns, app.grid.rows);
    let Cell { col, row } = app.cursor;
    app.cursor = match code {
        KeyCode::Left | KeyCode::Char('h') => Cell {
            col: col.saturating_sub(1),
            row,
        },
        KeyCode::Right | KeyCode::Char('l') => Cell {
            col: (col + 1).min(cols - 1),
            row,
        },
        KeyCode::Up | KeyCode::Char('k') => Cell {
            col,
            row: row.saturating_sub(1),
        },
        KeyCode::Down | KeyCode::Char('j') => Cell {
            col,
            row: (row + 1).min(rows - 1),
        },
        _ => return false,
    };
    true
}

fn on_grid_key(app: &mut App, key: KeyEvent) -> Vec<Action> {
    if move_cursor(app, key.code) {
        return Vec::new();
    }
    let year = app.year();
    let read_only = app.browse.is_some();
    match key.code {
        KeyCode::Char(' ') if !read_only => {
            let key = (year, app.cursor_tile());
            if !app.selected.remove(&key) {
                app.selected.insert(key);
            }
        }
        KeyCode::Char('a') if !read_only => {
            for t in app.grid.tiles().collect::<Vec<_>>() {
                if app.cell_state(year, t) == CellState::Listed {
                    app.selected.insert((year, t));
                }
            }
        }
        KeyCode::Char('f') if !read_only => {
            let failed: Vec<_> = app.failed.keys().copied().collect();
            app.selected.extend(failed);
        }
        KeyCode::Char('w') if !read_only => {
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
        KeyCode::Char('x') if app.writing => return vec![Action::Cancel],
        KeyCode::Char('c') if !read_only => {
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
        KeyCode::Char('p') => {
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

fn on_history_key(app: &mut App, key: KeyEvent) -> Vec<Action> {
    let n = app.history.len();
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => app.history_index = app.history_index.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => {
            app.history_index = (app.history_index + 1).min(n.saturating_sub(1))
        }
        KeyCode::Enter => {
            if let Some(c) = app.history.get(app.history_index) {
                return vec![Action::Browse(c.id.clone())];
            }
        }
        KeyCode::Char('d') => {
            let (Some(b), Some(c)) = (&app.browse, app.history.get(app.history_index)) else {
                app.status_line = "open a snapshot with Enter, then d on another".into();
                return Vec::new();
            };
            return vec![Action::Diff {
                from: c.id.clone(),
                to: b.snapshot.clone(),
            }];
        }
        KeyCode::Char('t') => {
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
            app.quit = true;
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
        Popup::Help | Popup::QuickLook { .. } => {
            if matches!(
                key.code,
                KeyCode::Esc
                    | KeyCode::Enter
                    | KeyCode::Char('q')
                    | KeyCode::Char('?')
                    | KeyCode::Char('p')
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
                app.quit = true;
                return vec![Action::Quit];
            } else if is_no(&key) {
                app.popup = None;
            }
        }
    }
    Vec::new()
}

/// Apply one engine event.
pub fn on_event(app: &mut App, event: &Event) {
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
            app.status_line = format!("committed {tiles} tiles as {snapshot}");
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::preset::Preset;

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
        assert!(!a.quit);
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
}
