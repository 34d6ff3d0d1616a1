//! The console's state machine, Elm-shaped: one message type ([`Msg`]: keys, finished
//! background work, signals, ticks) and one [`update`] that turns a message into state
//! changes and [`Action`]s for the runtime to run.
//!
//! Invariants: nothing here touches the terminal or the repository; every state change of
//! the console happens here, so each is unit-testable; keys are looked up in the one key
//! table ([`super::keys`]); writes are runs the console launches, watches and cancels, never
//! owns, so leaving the console — by `q`, a signal or a lost terminal — never stops one
//! unless the operator asked for it.

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use tilecube::cube::{Commit, Coverage, LevelImage};
use tilecube::runs::Run;

use super::keys::{self, Command, Scope};
use super::state::{App, Browse, CellState, Exit, Failure, Focus, MapKey, Popup, WriteAsk};
use tilecube::grid::{Cell, Grid, TileName};

/// Everything that can happen to the console.
#[derive(Debug)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// Background work finished.
    Done(Done),
    /// A signal arrived: its number.
    Signal(i32),
    /// The terminal is gone (a dropped SSH link): reading keys or drawing failed.
    TerminalLost,
    /// Time to look whether another process moved the branch, or launched a run.
    Poll,
    /// Time to read the progress of the runs going (a few times a second).
    Watch,
    /// The clock, at every frame: what the progress line's rates and time left are
    /// measured against.
    Tick(chrono::DateTime<chrono::Utc>),
}

/// The results of background work.
#[derive(Debug)]
pub enum Done {
    /// The repository is open: the cube's grid and years, as the repository lays them out.
    Opened {
        grid: Grid,
        years: Vec<i32>,
        /// The cube's failure journal, and what was wrong reading it.
        failed: Vec<tilecube::ingest::JournalEntry>,
        warning: Option<String>,
    },
    /// A year's tile list was read from the source (or could not be).
    Listed {
        year: i32,
        tiles: Result<Vec<TileName>, String>,
    },
    /// The branch head's coverage and history, read afresh, and the tags by snapshot.
    Refreshed {
        coverage: Coverage,
        history: Vec<Commit>,
        head: Option<String>,
        tags: std::collections::BTreeMap<String, Vec<String>>,
        /// The cube's years, when the head's layout has others than the console's (an
        /// `extend` landed while it was open).
        years: Option<Vec<i32>>,
    },
    /// The branch head now.
    Head(Option<String>),
    /// A poll or refresh of the repository failed; the next poll tries again.
    ReadFailed(String),
    /// A run was launched (its id), or could not be.
    Launched(Result<String, String>),
    /// Runs of the repository as just read: every one (a scan) or those watched.
    Runs(Vec<Run>),
    /// Runs were cancelled (what each said), or could not be.
    Cancelled(Result<Vec<String>, String>),
    Browse(Result<Browse, String>),
    Tagged(Result<String, String>),
    QuickLook(Result<(usize, Vec<u8>), String>),
    /// A map was read (or could not be).
    Map(MapKey, Result<LevelImage, String>),
    /// The watched plan's progress, read afresh.
    Plan(Result<tilecube::scaleout::PlanStatus, String>),
    /// The written tiles' sources compared with what their writes recorded (or why not).
    Sources(Result<tilecube::ingest::SourceCheck, String>),
    /// A run's log, its last lines (or why it could not be read).
    Log(Result<Vec<String>, String>),
    /// Tiles' sizes at the source (`None`: not there), or why they could not be looked up.
    Sizes(Result<std::collections::BTreeMap<(i32, TileName), Option<u64>>, String>),
    Error(String),
}

/// Work the runtime does for the console, off the UI task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Launch a run writing these tiles (year, tile), its commits with this message (none:
    /// each names its tiles).
    Launch {
        tiles: Vec<(i32, TileName)>,
        message: Option<String>,
    },
    /// Put this text on the terminal's clipboard (OSC 52, which works over SSH).
    Copy(String),
    /// Read the last lines of a run's log.
    ReadLog(std::path::PathBuf),
    /// Cancel these runs: each stops at its next strip with its finished tiles committed.
    CancelRuns(Vec<String>),
    /// Read the runs of the repository (new ones too).
    ScanRuns,
    /// Read the progress of these runs.
    WatchRuns(Vec<String>),
    /// Show the tiles of a snapshot.
    Browse { snapshot: String, message: String },
    /// Show the tiles changed between two snapshots.
    Diff { from: String, to: String },
    /// Tag a snapshot.
    Tag { snapshot: String, name: String },
    /// Read a tile back from the cube for a quick-look.
    QuickLook { year: i32, tile: TileName },
    /// Read the map of `key` from the coarsest level at least `width` pixels wide.
    LoadMap { key: MapKey, width: u64 },
    /// Read the branch head's coverage and history again.
    Refresh,
    /// Read the tile lists of these years from the source.
    ReadLists(Vec<i32>),
    /// Look up the branch head.
    CheckHead,
    /// Read the watched plan's progress.
    PlanStatus,
    /// Compare the written tiles' sources with what their writes recorded.
    CheckSources,
    /// Look up these tiles' sizes at the source (for the selection's bytes).
    SizeTiles(std::collections::BTreeSet<(i32, TileName)>),
    /// Leave the console.
    Quit,
}

/// Samples across the grid a map is read with: enough for the largest cells drawn.
pub const MAP_SAMPLES_PER_TILE: u64 = 8;

/// Apply one message.
pub fn update(app: &mut App, msg: Msg) -> Vec<Action> {
    let mut actions = apply(app, msg);
    actions.extend(map_action(app));
    actions.extend(size_action(app));
    actions
}

/// The selection's bytes at the source follow the selection: tiles selected whose size is
/// not known yet are looked up (one lookup at a time; what is selected meanwhile follows).
fn size_action(app: &mut App) -> Option<Action> {
    if app.source.is_none() || app.sizing || app.exit.is_some() || app.selected.is_empty() {
        return None;
    }
    let unknown: std::collections::BTreeSet<(i32, TileName)> = app
        .selected
        .iter()
        .filter(|k| !app.source_sizes.contains_key(k))
        .copied()
        .collect();
    if unknown.is_empty() {
        return None;
    }
    app.sizing = true;
    Some(Action::SizeTiles(unknown))
}

/// The map follows the year, the browsed snapshot and the branch head: when it is shown
/// and what it shows is neither read nor being read, read it.
fn map_action(app: &mut App) -> Option<Action> {
    if !app.show_map || app.loading.is_some() || app.exit.is_some() {
        return None;
    }
    let key = app.map_key();
    let known = app.map.as_ref().is_some_and(|(k, _)| *k == key);
    if known || app.map_reading.as_ref() == Some(&key) {
        return None;
    }
    app.map_reading = Some(key.clone());
    Some(Action::LoadMap {
        key,
        width: app.grid.columns as u64 * MAP_SAMPLES_PER_TILE,
    })
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
            if app.loading.is_some() || app.exit.is_some() {
                return actions;
            }
            if app.plan.is_some() {
                actions.push(Action::PlanStatus);
            }
            actions.push(Action::CheckHead);
            if !app.reading_runs {
                app.reading_runs = true;
                actions.push(Action::ScanRuns);
            }
            actions
        }
        Msg::Watch => {
            let going: Vec<String> = app.active_runs().map(|r| r.info.id.clone()).collect();
            if going.is_empty() || app.reading_runs || app.exit.is_some() {
                return Vec::new();
            }
            app.reading_runs = true;
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
                app.failed.insert(
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
            if grid != app.grid {
                app.cursor = Cell { col: 0, row: 0 };
            }
            app.grid = grid;
            app.years = years;
            app.year_index = app.year_index.min(app.years.len().saturating_sub(1));
            app.loading = Some("reading the branch head's tiles".into());
            app.reading_runs = true;
            let mut actions = vec![Action::Refresh, Action::ScanRuns];
            if app.plan.is_some() {
                actions.push(Action::PlanStatus);
            }
            return actions;
        }
        Done::Launched(r) => {
            app.launching.clear();
            app.derive_from_runs();
            match r {
                Ok(id) => {
                    app.last_launch_id = Some(id.clone());
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
        Done::Runs(runs) => {
            app.reading_runs = false;
            if app.apply_runs(runs) {
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
            tags,
            years,
        } => {
            app.read_back();
            app.loading = None;
            app.coverage = coverage;
            app.tags = tags;
            app.history = history;
            app.history_index = app.history_index.min(app.history.len().saturating_sub(1));
            let mut actions = Vec::new();
            if let Some(years) = years {
                let gained: Vec<i32> = years
                    .iter()
                    .copied()
                    .filter(|y| !app.years.contains(y))
                    .collect();
                app.status_line = format!(
                    "the cube's years are now {}",
                    years
                        .iter()
                        .map(|y| y.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                app.years = years;
                app.year_index = app.year_index.min(app.years.len().saturating_sub(1));
                if !gained.is_empty() && app.source.is_some() {
                    actions.push(Action::ReadLists(gained));
                }
            }
            if let Some((tiles, started)) = app.reselect.take() {
                // What a cancelled or dead run did not land is selected again: `w` retries.
                let left: Vec<_> = tiles
                    .iter()
                    .filter(|(y, t)| !app.landed_since(*y, *t, started))
                    .copied()
                    .collect();
                if !left.is_empty() {
                    app.status_line = format!(
                        "{}; {} not landed selected again: w writes {}",
                        app.status_line,
                        tilecube::text::plural(left.len(), "tile"),
                        if left.len() == 1 { "it" } else { "them" }
                    );
                    app.selected.extend(left);
                }
            }
            app.ended_unread.clear();
            app.derive_from_runs();
            let moved = app.head != head;
            app.head = head;
            if moved && app.source.is_some() {
                actions.push(Action::CheckSources);
            }
            return actions;
        }
        Done::Sources(Ok(check)) => {
            // A re-issued tile's size may be another now.
            for k in &check.changed {
                app.source_sizes.remove(k);
            }
            app.changed = check.changed;
            app.source_unknown = check.unknown;
            if !app.changed.is_empty() {
                app.status_line = format!(
                    "{} written tiles' source changed since they were written (%): C selects them, w writes them again",
                    app.changed.len()
                );
            }
        }
        Done::Sources(Err(e)) => {
            app.status_line = format!("the tiles were not compared with their source: {e}");
        }
        Done::Head(head) => {
            if head != app.head {
                return vec![Action::Refresh];
            }
            app.read_back();
        }
        Done::ReadFailed(e) => {
            if !app.read_failed {
                log::warn!("reading the repository: {e}");
            }
            app.read_failed = true;
            app.status_line =
                format!("reading the repository failed, retried at the next poll: {e}");
        }
        Done::Error(e) | Done::Cancelled(Err(e)) => {
            app.status_line = format!("error: {e}");
            log::error!("{e}");
        }
        Done::Browse(Ok(b)) => {
            app.status_line = format!("browsing {}", b.snapshot);
            app.browse = Some(b);
        }
        Done::Browse(Err(e)) | Done::Tagged(Err(e)) => app.status_line = format!("error: {e}"),
        // The tag shows in the history once read back (the coverage is cached: cheap).
        Done::Tagged(Ok(msg)) => {
            app.status_line = msg;
            return vec![Action::Refresh];
        }
        Done::QuickLook(Ok(px)) => app.quicklook = Some(px),
        Done::Log(lines) => app.log_lines = lines,
        Done::Sizes(r) => {
            app.sizing = false;
            match r {
                Ok(sizes) => {
                    app.source_sizes.extend(sizes);
                    if app.status_line.ends_with(SELECTION_TAIL) {
                        app.status_line = selection_line(app);
                    }
                    let bytes = app.selection_bytes();
                    if let Some(Popup::ConfirmWrite(ask)) = &mut app.popup {
                        ask.bytes = bytes;
                    }
                }
                // Not worth a retry loop: the bytes are a courtesy; the write reads anyway.
                Err(e) => log::warn!("looking up the selected tiles' sizes: {e}"),
            }
        }
        Done::Map(key, r) => {
            if app.map_reading.as_ref() == Some(&key) {
                app.map_reading = None;
            }
            if let Err(e) = &r {
                app.status_line = format!("map: {e}");
            }
            app.map = Some((key, r));
        }
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
        Focus::Runs => Scope::Runs,
        Focus::Grid => Scope::Grid,
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
        Command::Map => {
            app.show_map = !app.show_map;
            app.status_line = if app.show_map {
                "world map: the data of the year shown, from the cube's overviews".into()
            } else {
                "tile grid".into()
            };
        }
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
                Focus::History => Focus::Runs,
                Focus::Runs => Focus::Grid,
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
            } else if !app.selected.is_empty() {
                app.selected.clear();
                app.status_line = "selection cleared".into();
            }
        }
        Command::Log => match app.runs.first() {
            Some(run) => {
                app.log_lines = Ok(Vec::new());
                app.popup = Some(Popup::Log {
                    run: run.info.id.clone(),
                    scroll: 0,
                });
                return vec![Action::ReadLog(run.log.clone())];
            }
            None => app.status_line = "no run yet: w launches one, L then shows its log".into(),
        },
        Command::Copy => {
            let text = match app.focus {
                Focus::History => match app.history.get(app.history_index) {
                    Some(c) => c.id.clone(),
                    None => return Vec::new(),
                },
                _ => app.cursor_tile().to_string(),
            };
            app.status_line = format!("copied {text} (to the terminal's clipboard, OSC 52)");
            return vec![Action::Copy(text)];
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

/// How the selection's line on the status line ends (it is redrawn when sizes come in).
const SELECTION_TAIL: &str = ": w writes, Esc clears";

/// "12 tiles selected in 2 years, 3.4 GB at the source" (or nothing selected).
fn selection_line(app: &App) -> String {
    if app.selected.is_empty() {
        return "nothing selected".into();
    }
    let years: std::collections::BTreeSet<i32> = app.selected.iter().map(|(y, _)| *y).collect();
    format!(
        "{} selected in {}{}{SELECTION_TAIL}",
        tilecube::text::plural(app.selected.len(), "tile"),
        tilecube::text::plural(years.len(), "year"),
        app.selection_bytes()
            .map(|b| format!(", {}", b.text()))
            .unwrap_or_default()
    )
}

/// The next tile after the cursor (this year first, then the following years, wrapping)
/// for which `want` holds.
fn next_tile(app: &App, want: impl Fn(i32, TileName) -> bool) -> Option<(i32, TileName)> {
    let tiles: Vec<TileName> = app.grid.tiles().collect();
    let here = tiles
        .iter()
        .position(|t| *t == app.cursor_tile())
        .unwrap_or(0);
    let n = app.years.len();
    (0..=n).find_map(|k| {
        let yi = (app.year_index + k) % n.max(1);
        let year = *app.years.get(yi)?;
        let order: Box<dyn Iterator<Item = usize>> = match k {
            0 => Box::new(here + 1..tiles.len()),
            k if k == n => Box::new(0..=here),
            _ => Box::new(0..tiles.len()),
        };
        order
            .filter_map(|i| tiles.get(i).copied())
            .find(|&t| want(year, t))
            .map(|t| (year, t))
    })
}

fn on_grid_command(app: &mut App, command: Command) -> Vec<Action> {
    if move_cursor(app, command) {
        return Vec::new();
    }
    let year = app.year();
    let read_only = app.browse.is_some();
    match command {
        Command::Select
        | Command::SelectAll
        | Command::SelectAllYears
        | Command::SelectFailed
        | Command::SelectChanged
        | Command::Write
            if read_only =>
        {
            app.status_line =
                "read-only snapshot: it cannot be written; Esc returns to the head".into();
        }
        Command::Select => {
            let key = (year, app.cursor_tile());
            if !app.selected.remove(&key) {
                app.selected.insert(key);
            }
            app.status_line = selection_line(app);
        }
        Command::SelectAll | Command::SelectAllYears => {
            let years = if command == Command::SelectAll {
                vec![year]
            } else {
                app.years.clone()
            };
            let before = app.selected.len();
            for y in &years {
                for t in app.grid.tiles().collect::<Vec<_>>() {
                    if app.is_missing(*y, t) {
                        app.selected.insert((*y, t));
                    }
                }
            }
            app.status_line = if app.selected.len() == before && app.selected.is_empty() {
                let which = if years.len() == 1 {
                    format!("of {}", years[0])
                } else {
                    "of any year".to_string()
                };
                format!(
                    "nothing to select: every listed tile {which} is written already (space selects one tile to write again)"
                )
            } else {
                selection_line(app)
            };
        }
        Command::SelectFailed => {
            let failed: Vec<_> = app.failed.keys().copied().collect();
            app.selected.extend(failed);
            app.status_line = selection_line(app);
        }
        Command::SelectChanged => {
            let changed: Vec<_> = app.changed.iter().copied().collect();
            app.selected.extend(changed);
            app.status_line = if app.changed.is_empty() {
                "no written tile's source changed since it was written".into()
            } else {
                selection_line(app)
            };
        }
        Command::Write => {
            if app.writing {
                app.status_line = "a write is already running".into();
            } else if app.selected.is_empty() {
                app.status_line =
                    "nothing selected: space selects a tile, a every listed one".into();
            } else {
                let years: std::collections::BTreeSet<i32> =
                    app.selected.iter().map(|(y, _)| *y).collect();
                let rewrites = app
                    .selected
                    .iter()
                    .filter(|(y, t)| app.coverage.is_written(*y, *t))
                    .count();
                app.popup = Some(Popup::ConfirmWrite(WriteAsk {
                    tiles: app.selected.len(),
                    years: years.len(),
                    threads: app.threads,
                    branch: app.branch.clone(),
                    rewrites,
                    message: String::new(),
                    bytes: app.selection_bytes(),
                }));
            }
        }
        Command::Cancel => {
            let going: Vec<String> = app.active_runs().map(|r| r.info.id.clone()).collect();
            if going.is_empty() {
                app.status_line = "no run is going".into();
            } else {
                app.popup = Some(Popup::ConfirmCancel { runs: going });
            }
        }
        Command::QuickLook => {
            let tile = app.cursor_tile();
            if matches!(
                app.cell_state(year, tile),
                CellState::Written | CellState::Uncommitted | CellState::Changed
            ) {
                app.popup = Some(Popup::QuickLook { year, tile });
                app.quicklook = None;
                return vec![Action::QuickLook { year, tile }];
            }
            app.status_line = format!("{year}/{tile} is not written");
        }
        Command::Filter => {
            app.filter = !app.filter;
            app.status_line = if app.filter {
                "only the failed (!) and re-issued (%) tiles are drawn: F again shows all".into()
            } else {
                "every tile drawn".into()
            };
        }
        Command::TileDetails => {
            app.popup = Some(Popup::Tile {
                year,
                tile: app.cursor_tile(),
            });
        }
        Command::Find => {
            app.popup = Some(Popup::Find {
                text: String::new(),
                error: None,
            });
        }
        Command::NextFailed => match next_tile(app, |y, t| app.failed.contains_key(&(y, t))) {
            Some((y, t)) => {
                app.go_to(y, t);
                app.status_line = format!("{y}/{t} failed: Enter shows why");
            }
            None => app.status_line = "no failed tile".into(),
        },
        Command::NextMissing => match next_tile(app, |y, t| app.is_missing(y, t)) {
            Some((y, t)) => {
                app.go_to(y, t);
                app.status_line = format!("{y}/{t} is listed, not written");
            }
            None => app.status_line = "every listed tile is written".into(),
        },
        Command::JumpFailed => match app.failed_in_order().first().copied() {
            Some((y, t)) => {
                app.go_to(y, t);
                app.focus = Focus::Grid;
                app.status_line = format!("{y}/{t} failed: Enter shows why, n the next one");
            }
            None => app.status_line = "no failed tile".into(),
        },
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
            // Old → new: the history is newest first.
            let at = |id: &str| app.history.iter().position(|h| h.id == id);
            let (from, to) = if at(&b.snapshot) > at(&c.id) {
                (b.snapshot.clone(), c.id.clone())
            } else {
                (c.id.clone(), b.snapshot.clone())
            };
            return vec![Action::Diff { from, to }];
        }
        Command::Tag => {
            if let Some(c) = app.history.get(app.history_index) {
                app.popup = Some(Popup::TagPrompt {
                    snapshot: c.id.clone(),
                    name: String::new(),
                    refused: None,
                });
            }
        }
        _ => {}
    }
    Vec::new()
}

fn ask_quit(app: &mut App) -> Vec<Action> {
    if app.active_runs().next().is_some() {
        app.popup = Some(Popup::Leave);
        return Vec::new();
    }
    app.exit = Some(Exit::Quit);
    vec![Action::Quit]
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

/// Find's text: a tile name ("10N_020E"), or a year and a tile ("2005/10N_020E").
fn find_tile(app: &App, text: &str) -> Result<(i32, TileName), String> {
    let text = text.trim();
    let (year, name) = match text.split_once('/') {
        Some((y, n)) => match y.trim().parse::<i32>() {
            Ok(y) if app.years.contains(&y) => (y, n.trim()),
            _ => {
                return Err(format!(
                    "{y:?} is not a year of the cube ({})",
                    app.years
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
    if app.grid.cell(tile).is_err() {
        return Err(format!("{tile} is not a tile of this cube's grid"));
    }
    Ok((year, tile))
}

fn on_popup_key(app: &mut App, popup: Popup, key: KeyEvent) -> Vec<Action> {
    let years = app.years.len();
    let in_scope = |scope| keys::command(scope, &key, years);
    match popup {
        // The log scrolls: arrows a line, page keys a screen, Home the oldest, End the newest.
        Popup::Log { run, scroll } if in_scope(Scope::Dialog) != Some(Command::Close) => {
            let n = app.log_lines.as_ref().map(|l| l.len()).unwrap_or(0);
            let scroll = match key.code {
                KeyCode::Up | KeyCode::Char('k') => scroll + 1,
                KeyCode::Down | KeyCode::Char('j') => scroll.saturating_sub(1),
                KeyCode::PageUp => scroll + 10,
                KeyCode::PageDown => scroll.saturating_sub(10),
                KeyCode::Home => n,
                KeyCode::End => 0,
                _ => scroll,
            };
            app.popup = Some(Popup::Log {
                run,
                scroll: scroll.min(n.saturating_sub(1)),
            });
        }
        Popup::Help
        | Popup::QuickLook { .. }
        | Popup::Plan
        | Popup::Tile { .. }
        | Popup::Log { .. } => {
            if in_scope(Scope::Dialog) == Some(Command::Close) {
                app.popup = None;
            }
        }
        // A text field (the commit message): Enter writes, Esc does not, other keys edit.
        Popup::ConfirmWrite(mut ask) => match key.code {
            KeyCode::Enter => {
                app.popup = None;
                let tiles: Vec<_> = std::mem::take(&mut app.selected).into_iter().collect();
                app.last_launch = tiles.iter().copied().collect();
                app.launching = tiles.iter().copied().collect();
                app.derive_from_runs();
                app.status_line = format!(
                    "launching a run of {}",
                    tilecube::text::plural(tiles.len(), "tile")
                );
                let message = Some(ask.message.trim().to_string()).filter(|m| !m.is_empty());
                return vec![Action::Launch { tiles, message }];
            }
            KeyCode::Esc => app.popup = None,
            _ => {
                edit(&mut ask.message, &key);
                app.popup = Some(Popup::ConfirmWrite(ask));
            }
        },
        Popup::ConfirmCancel { runs } => match in_scope(Scope::Confirm) {
            Some(Command::Yes) => {
                app.popup = None;
                app.cancelling.extend(runs.iter().cloned());
                app.status_line = format!(
                    "cancelling {} {}: running tiles stop at their next strip, finished ones land",
                    if runs.len() == 1 { "run" } else { "runs" },
                    runs.join(", ")
                );
                return vec![Action::CancelRuns(runs)];
            }
            Some(Command::No) => app.popup = None,
            _ => {}
        },
        // A text field: every key edits, Enter and Esc as in a confirmation; a name the
        // repository would refuse is said as it is typed, and Enter takes none.
        Popup::TagPrompt {
            snapshot, mut name, ..
        } => match key.code {
            KeyCode::Enter => {
                if let Err(e) = tilecube::cube::check_tag_name(name.trim()) {
                    app.status_line = e.to_string();
                    let refused =
                        tilecube::cube::tag_name_problem(name.trim()).or(Some("it is empty"));
                    app.popup = Some(Popup::TagPrompt {
                        snapshot,
                        name,
                        refused,
                    });
                } else {
                    app.popup = None;
                    let name = name.trim().to_string();
                    return vec![Action::Tag { snapshot, name }];
                }
            }
            KeyCode::Esc => app.popup = None,
            _ => {
                edit(&mut name, &key);
                let refused = tilecube::cube::tag_name_problem(&name);
                app.popup = Some(Popup::TagPrompt {
                    snapshot,
                    name,
                    refused,
                });
            }
        },
        Popup::Find { mut text, .. } => match key.code {
            KeyCode::Enter => match find_tile(app, &text) {
                Ok((y, t)) => {
                    app.popup = None;
                    app.go_to(y, t);
                    app.focus = Focus::Grid;
                    app.status_line = format!("{y}/{t}: {}", app.cell_state(y, t).name());
                }
                Err(e) => {
                    app.popup = Some(Popup::Find {
                        text,
                        error: Some(e),
                    })
                }
            },
            KeyCode::Esc => app.popup = None,
            _ => {
                edit(&mut text, &key);
                app.popup = Some(Popup::Find { text, error: None });
            }
        },
        Popup::Leave => match in_scope(Scope::Leave) {
            Some(Command::Yes) => {
                app.popup = None;
                app.exit = Some(Exit::Quit);
                return vec![Action::Quit];
            }
            Some(Command::CancelAndLeave) => {
                app.popup = None;
                app.exit = Some(Exit::Quit);
                let going: Vec<String> = app.active_runs().map(|r| r.info.id.clone()).collect();
                app.status_line = "cancelling the runs, then leaving".into();
                return vec![Action::CancelRuns(going), Action::Quit];
            }
            Some(Command::No) => app.popup = None,
            _ => {}
        },
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::state::fixtures::run;
    use ratatui::crossterm::event::KeyModifiers;
    use tilecube::grid::Grid;
    use tilecube::preset::Preset;
    use tilecube::scaleout::ShardRecord;
    use tilecube::scaleout::ShardState;
    use tilecube::scaleout::record::{RecordFailure, TileChunks};

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
    fn a_failed_read_shows_until_a_poll_reads_again() {
        let mut a = app();
        a.head = Some("H".into());
        assert!(update(&mut a, Msg::Done(Done::ReadFailed("503 SlowDown".into()))).is_empty());
        assert!(a.read_failed);
        assert!(
            a.status_line.contains("retried at the next poll") && a.status_line.contains("503"),
            "{}",
            a.status_line
        );
        // The same head read back: the failure is over, nothing to refresh.
        assert!(update(&mut a, Msg::Done(Done::Head(Some("H".into())))).is_empty());
        assert!(!a.read_failed);
        assert_eq!(a.status_line, "the repository answers again");
        // A head that moved while reads failed is refreshed at the next poll.
        update(&mut a, Msg::Done(Done::ReadFailed("reset".into())));
        assert_eq!(
            update(&mut a, Msg::Done(Done::Head(Some("H2".into())))),
            vec![Action::Refresh]
        );
        assert!(a.read_failed, "still failed until the refresh lands");
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
                failed: vec![],
                warning: None,
            }),
        );
        assert_eq!(actions, vec![Action::Refresh, Action::ScanRuns]);
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
                tags: Default::default(),
                years: None,
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
        a.uncommitted.insert((2000, t("70N_180W")));
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
    fn the_selection_is_sized_at_the_source_and_the_confirmation_says_what_it_reads() {
        let mut a = app();
        let spec = tilecube::preset::Preset::glad().source;
        a.source = Some(tilecube::source::Source::new("/data/glad", &spec).unwrap());
        on_key(&mut a, ch('a'));
        let selected = a.selected.clone();
        let now = a.now;
        assert_eq!(selected.len(), 3);
        // Selecting asks for the sizes of what is selected, once.
        assert_eq!(
            update(&mut a, Msg::Tick(now)),
            vec![Action::SizeTiles(selected.clone())]
        );
        assert!(
            update(&mut a, Msg::Tick(now)).is_empty(),
            "one lookup at a time"
        );
        assert!(a.status_line.ends_with(SELECTION_TAIL), "{}", a.status_line);
        on_key(&mut a, ch('w'));
        assert!(matches!(&a.popup, Some(Popup::ConfirmWrite(ask)) if ask.bytes.is_none()));
        // Two tiles weigh 1.5 GB in all, one is not at the source.
        let mut sizes: std::collections::BTreeMap<_, _> = Default::default();
        for (i, k) in selected.iter().enumerate() {
            sizes.insert(*k, (i < 2).then_some(750_000_000u64));
        }
        update(&mut a, Msg::Done(Done::Sizes(Ok(sizes))));
        let Some(Popup::ConfirmWrite(ask)) = &a.popup else {
            panic!("{:?}", a.popup)
        };
        assert_eq!(
            ask.bytes.map(|b| b.text()).as_deref(),
            Some("1.5 GB at the source (1 not there)")
        );
        on_key(&mut a, key(KeyCode::Esc));
        // The status line says it too once the sizes are in; known sizes are not asked again.
        on_key(&mut a, ch(' '));
        on_key(&mut a, ch(' '));
        assert_eq!(
            a.status_line,
            "3 tiles selected in 1 year, 1.5 GB at the source (1 not there): w writes, Esc clears"
        );
        assert!(update(&mut a, Msg::Tick(now)).is_empty());
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
        assert!(a.failed.contains_key(&(2000, t("80N_170W"))));
        assert!(a.writing && a.selected.is_empty());
        assert_eq!(a.cell_state(2000, t("80N_170W")), CellState::Queued);
        // The launch is under way: a scan that does not show the run yet keeps the queue.
        update(&mut a, Msg::Done(Done::Runs(vec![])));
        assert!(a.writing);
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

    fn record(written: &[&str], landed: usize) -> ShardRecord {
        ShardRecord {
            jobs: 3,
            threads: 2,
            written: written.len(),
            landed,
            written_tiles: written.iter().map(|w| format!("2000/{w}")).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_runs_record_drives_the_grid_and_the_progress() {
        let mut a = app();
        let mut r = record(&["80N_180W"], 0);
        r.running = vec![TileChunks {
            tile: "2000/80N_170W".into(),
            done: 8,
            total: 16,
        }];
        r.queued = vec!["2000/70N_180W".into()];
        r.pixel_bytes = 160_000;
        a.apply_runs(vec![run("R1", "running", r)]);
        assert!(a.writing);
        assert_eq!(
            a.cell_state(2000, t("80N_170W")),
            CellState::Running { done: 8, total: 16 }
        );
        assert_eq!(a.cell_state(2000, t("80N_170W")).glyph(), '5');
        assert_eq!(a.cell_state(2000, t("70N_180W")), CellState::Queued);
        assert_eq!(
            a.cell_state(2000, t("80N_180W")),
            CellState::Uncommitted,
            "written by the run, not in the head yet"
        );
        assert_eq!(
            (
                a.progress.tiles_total,
                a.progress.tiles_done,
                a.progress.busy
            ),
            (3, 1, 1)
        );
        assert_eq!(a.progress.pixel_bytes_done, 160_000);
        // Once the head holds it, the tile shows as written.
        a.coverage = Coverage {
            tiles: [(
                (2000, t("80N_180W")),
                tilecube::cube::TileState::Written {
                    chunks: 16,
                    snapshot: "S".into(),
                },
            )]
            .into(),
            ..Default::default()
        };
        assert_eq!(a.cell_state(2000, t("80N_180W")), CellState::Written);
    }

    #[test]
    fn a_finished_runs_tiles_show_from_the_head_not_from_its_record() {
        // A run of an earlier cube at this path, done: its record says it wrote the tile,
        // the head (a new cube) holds nothing.
        let mut a = app();
        a.apply_runs(vec![run("R0", "done", record(&["80N_180W"], 1))]);
        assert_ne!(
            a.cell_state(2000, t("80N_180W")),
            CellState::Uncommitted,
            "a finished run has nothing pending"
        );
        a.apply_runs(vec![run("R1", "running", record(&["80N_170W"], 0))]);
        assert_eq!(a.cell_state(2000, t("80N_170W")), CellState::Uncommitted);
    }

    #[test]
    fn a_run_that_lands_or_ends_has_the_head_read_again_and_says_how_it_ended() {
        let mut a = app();
        update(
            &mut a,
            Msg::Done(Done::Runs(vec![run("R1", "running", record(&[], 0))])),
        );
        assert!(
            update(
                &mut a,
                Msg::Done(Done::Runs(vec![run(
                    "R1",
                    "running",
                    record(&["80N_180W"], 0)
                )]))
            )
            .is_empty(),
            "written, not landed: nothing new in the head"
        );
        assert_eq!(
            update(
                &mut a,
                Msg::Done(Done::Runs(vec![run(
                    "R1",
                    "running",
                    record(&["80N_180W"], 1)
                )]))
            ),
            vec![Action::Refresh],
            "a checkpoint landed"
        );
        let mut done = record(&["80N_180W", "80N_170W"], 2);
        done.state = ShardState::Cancelled;
        done.commits = 2;
        assert_eq!(
            update(
                &mut a,
                Msg::Done(Done::Runs(vec![run("R1", "cancelled", done)]))
            ),
            vec![Action::Refresh]
        );
        assert!(!a.writing);
        assert_eq!(
            a.status_line,
            "write cancelled: 2/3 written, 2 landed, 0 failed (run R1, 2 commits)"
        );
        // A worker gone without a word: dead, and its unlanded tiles are not pending.
        let mut b = app();
        b.apply_runs(vec![run("R2", "running", record(&["80N_180W"], 0))]);
        b.apply_runs(vec![run("R2", "dead", record(&["80N_180W"], 0))]);
        assert!(
            b.status_line.contains("run R2 is dead"),
            "{}",
            b.status_line
        );
        assert_eq!(b.cell_state(2000, t("80N_180W")), CellState::Listed);
    }

    #[test]
    fn a_runs_failures_show_with_their_reason_and_a_later_write_clears_them() {
        let mut a = app();
        let mut r = record(&[], 0);
        r.failed = vec![RecordFailure {
            year: 2000,
            tile: "70N_180W".into(),
            error: "has 3 bands; expected 1".into(),
            attempts: 1,
        }];
        a.apply_runs(vec![run("R1", "running", r.clone())]);
        let tile = t("70N_180W");
        assert_eq!(a.cell_state(2000, tile), CellState::Failed);
        assert_eq!(a.failed[&(2000, tile)].error, "has 3 bands; expected 1");
        r.written_tiles.push("2000/70N_180W".into());
        a.apply_runs(vec![run("R1", "running", r)]);
        assert!(a.failed.is_empty(), "written after all");
    }

    fn browsing(a: &mut App) {
        a.browse = Some(Browse {
            snapshot: "S1".into(),
            message: "m".into(),
            coverage: Default::default(),
            diff_against: None,
            changed: Default::default(),
        });
    }

    #[test]
    fn a_read_only_snapshot_says_why_it_takes_no_write_keys() {
        let mut a = app();
        browsing(&mut a);
        for c in [' ', 'a', 'A', 'f', 'C', 'w'] {
            a.status_line.clear();
            assert!(on_key(&mut a, ch(c)).is_empty(), "{c}");
            assert_eq!(
                a.status_line, "read-only snapshot: it cannot be written; Esc returns to the head",
                "{c}"
            );
            assert!(a.selected.is_empty() && a.popup.is_none(), "{c}");
        }
        on_key(&mut a, key(KeyCode::Esc));
        assert!(a.browse.is_none());
        on_key(&mut a, ch(' '));
        assert_eq!(a.selected.len(), 1, "at the head, space selects again");
        assert_eq!(
            a.status_line,
            "1 tile selected in 1 year: w writes, Esc clears"
        );
    }

    #[test]
    fn shift_a_selects_the_missing_tiles_of_every_year() {
        let mut a = app();
        a.listed
            .insert(2005, [t("80N_180W"), t("10N_010E")].into_iter().collect());
        on_key(&mut a, ch('A'));
        assert_eq!(a.selected.len(), 5);
        assert_eq!(
            a.status_line,
            "5 tiles selected in 2 years: w writes, Esc clears"
        );
        on_key(&mut a, key(KeyCode::Esc));
        on_key(&mut a, ch('a'));
        assert_eq!(a.selected.len(), 3, "a: this year only");
    }

    #[test]
    fn n_and_enter_in_the_runs_panel_find_the_failed_tiles_and_slash_finds_any() {
        let mut a = app();
        for (y, tile) in [(2000, "70N_180W"), (2005, "10N_010E")] {
            a.failed.insert(
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
        a.cursor = Cell { col: 3, row: 3 };
        on_key(&mut a, key(KeyCode::Enter));
        assert_eq!((a.year(), a.cursor_tile()), (2000, t("70N_180W")));
        assert_eq!(a.focus, Focus::Grid);
        // Enter on the grid opens the tile's details.
        on_key(&mut a, key(KeyCode::Enter));
        assert_eq!(
            a.popup,
            Some(Popup::Tile {
                year: 2000,
                tile: t("70N_180W")
            })
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
            matches!(&a.popup, Some(Popup::Find { error: Some(e), .. }) if e.contains("not a tile name")),
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
            matches!(&a.popup, Some(Popup::Find { error: Some(e), .. }) if e.contains("not a year of the cube (2000, 2005)")),
            "{:?}",
            a.popup
        );
    }

    #[test]
    fn y_copies_the_tile_name_or_the_snapshot_id() {
        let mut a = app();
        assert_eq!(
            on_key(&mut a, ch('y')),
            vec![Action::Copy("80N_180W".into())]
        );
        a.history = vec![Commit {
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
    fn x_asks_before_cancelling_and_a_cancelled_runs_tiles_are_selected_again() {
        let mut a = app();
        a.selected = [(2000, t("80N_180W")), (2000, t("80N_170W"))].into();
        on_key(&mut a, ch('w'));
        let launched = on_key(&mut a, key(KeyCode::Enter));
        assert!(matches!(&launched[..], [Action::Launch { .. }]));
        update(&mut a, Msg::Done(Done::Launched(Ok("R1".into()))));
        a.apply_runs(vec![run("R1", "running", record(&["80N_180W"], 1))]);
        // x asks; Esc keeps the run going; x then Enter cancels it.
        assert!(on_key(&mut a, ch('x')).is_empty());
        assert_eq!(
            a.popup,
            Some(Popup::ConfirmCancel {
                runs: vec!["R1".into()]
            })
        );
        on_key(&mut a, key(KeyCode::Esc));
        assert!(a.popup.is_none() && a.cancelling.is_empty());
        on_key(&mut a, ch('x'));
        assert_eq!(
            on_key(&mut a, key(KeyCode::Enter)),
            vec![Action::CancelRuns(vec!["R1".into()])]
        );
        assert!(a.cancelling.contains("R1"));
        assert!(a.status_line.starts_with("cancelling run R1"));
        // It ends cancelled, one tile landed: once the head is read, the other is selected.
        // The other was written before the run began (a rewrite): it did not land either.
        let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
        let mut ended = record(&["80N_180W"], 1);
        ended.started = at(100);
        a.apply_runs(vec![run("R1", "cancelled", ended)]);
        assert!(a.cancelling.is_empty());
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
        let commit = |id: &str, time| Commit {
            id: id.into(),
            parent: None,
            time,
            message: "m".into(),
            written: Default::default(),
            init: false,
            plan: None,
            carried: Default::default(),
            sources: Default::default(),
            layout_changed: false,
        };
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
        assert_eq!(a.selected, [(2000, t("80N_170W"))].into());
        assert!(
            a.status_line
                .contains("1 tile not landed selected again: w writes it"),
            "{}",
            a.status_line
        );
    }

    #[test]
    fn a_tag_name_the_repository_would_refuse_is_said_as_it_is_typed() {
        let mut a = app();
        a.popup = Some(Popup::TagPrompt {
            snapshot: "S1".into(),
            name: String::new(),
            refused: None,
        });
        for c in "first release".chars() {
            on_key(&mut a, ch(c));
        }
        assert!(
            matches!(&a.popup, Some(Popup::TagPrompt { refused: Some(why), .. }) if why.contains("no spaces")),
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
            Some(Popup::Log { scroll, .. }) => *scroll,
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
        assert!(a.filter);
        on_key(&mut a, ch('F'));
        assert!(!a.filter);
    }

    #[test]
    fn a_diff_compares_the_older_snapshot_with_the_newer() {
        let mut a = app();
        let commit = |id: &str| Commit {
            id: id.into(),
            parent: None,
            time: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            message: "m".into(),
            written: Default::default(),
            init: false,
            plan: None,
            carried: Default::default(),
            sources: Default::default(),
            layout_changed: false,
        };
        a.history = vec![commit("NEW"), commit("MID"), commit("OLD")];
        a.focus = Focus::History;
        // The newest browsed, d on the oldest; then the oldest browsed, d on the newest.
        a.browse = Some(Browse {
            snapshot: "NEW".into(),
            message: "m".into(),
            coverage: Default::default(),
            diff_against: None,
            changed: Default::default(),
        });
        a.history_index = 2;
        let want = vec![Action::Diff {
            from: "OLD".into(),
            to: "NEW".into(),
        }];
        assert_eq!(on_key(&mut a, ch('d')), want);
        a.browse.as_mut().unwrap().snapshot = "OLD".into();
        a.history_index = 0;
        assert_eq!(on_key(&mut a, ch('d')), want);
    }

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

    #[test]
    fn finished_work_updates_the_state() {
        let mut a = app();
        a.writing = true;
        update(&mut a, Msg::Done(Done::Launched(Err("boom".into()))));
        assert!(!a.writing, "a launch that failed frees the pool");
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
        a.head = Some("H1".into());
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
        assert_eq!(a.head.as_deref(), Some("H2"));
    }

    #[test]
    fn the_map_follows_the_year_the_head_and_a_browsed_snapshot() {
        let mut a = app();
        a.head = Some("HEAD1".into());
        let load = |actions: Vec<Action>| -> Option<MapKey> {
            actions.into_iter().find_map(|x| match x {
                Action::LoadMap { key, width } => {
                    assert_eq!(width, 36 * MAP_SAMPLES_PER_TILE);
                    Some(key)
                }
                _ => None,
            })
        };
        let key = load(update(&mut a, Msg::Key(ch('m')))).expect("m reads the map");
        assert!(a.show_map);
        assert_eq!((key.year, key.head.as_deref()), (2000, Some("HEAD1")));
        // While it is being read, nothing asks again.
        assert_eq!(load(update(&mut a, Msg::Key(ch('l')))), None);
        let image = LevelImage {
            level: 3,
            factor: 8,
            row0: 0,
            col0: 0,
            width: 2,
            height: 1,
            pixels: vec![10, 255],
        };
        update(&mut a, Msg::Done(Done::Map(key.clone(), Ok(image.clone()))));
        assert_eq!(a.map_image(), Some(&Ok(image)));
        assert_eq!(load(update(&mut a, Msg::Key(ch('h')))), None, "read once");
        // Another year, a moved head, a browsed snapshot: each is read.
        let k2 = load(update(&mut a, Msg::Key(ch('2')))).expect("year 2005");
        assert_eq!(k2.year, 2005);
        assert_eq!(
            a.map_image(),
            None,
            "the old year's map is not shown as this one's"
        );
        update(&mut a, Msg::Done(Done::Map(k2, Err("no overviews".into()))));
        assert!(a.status_line.contains("no overviews"), "{}", a.status_line);
        assert_eq!(
            load(update(&mut a, Msg::Poll)),
            None,
            "a failed read is not retried in a loop"
        );
        let refreshed = update(
            &mut a,
            Msg::Done(Done::Refreshed {
                tags: Default::default(),
                years: None,
                coverage: Coverage::default(),
                history: vec![],
                head: Some("HEAD2".into()),
            }),
        );
        let k3 = load(refreshed).expect("a new head is read");
        assert_eq!(k3.head.as_deref(), Some("HEAD2"));
        a.map_reading = None;
        a.browse = Some(Browse {
            snapshot: "SNAP".into(),
            message: String::new(),
            coverage: Default::default(),
            diff_against: None,
            changed: Default::default(),
        });
        let k4 = load(update(&mut a, Msg::Key(ch('h')))).expect("the browsed snapshot");
        assert_eq!((k4.snapshot.as_deref(), k4.head), (Some("SNAP"), None));
        // `m` again: the grid, and no more reads.
        update(&mut a, Msg::Key(ch('m')));
        assert!(!a.show_map);
        a.map_reading = None;
        assert_eq!(load(update(&mut a, Msg::Key(ch('1')))), None);
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
            carried: Default::default(),
            sources: Default::default(),
            layout_changed: false,
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
