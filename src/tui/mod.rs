//! The operator console: a terminal UI over the ingest engine.
//!
//! `state` holds what the screen shows, `update` turns keys and engine events into state
//! changes and [`update::Action`]s, `view` draws, `widgets` holds the quick-look. This file is
//! the runtime: it owns the terminal, reads keys on a thread of their own, runs every action
//! (writes, commits, snapshot reads) as a task off the UI loop, and redraws at a steady rate.

pub mod state;
pub mod update;
pub mod view;
pub mod widgets;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Stdout;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use icechunk::format::SnapshotId;
use icechunk::repository::VersionInfo;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui::crossterm::{cursor, execute, terminal};
use tokio::sync::mpsc;

use crate::cli::Settings;
use crate::cube::{Coverage, Cube, TileState};
use crate::grid::TileName;
use crate::ingest::{self, Event, EventSink, IngestOptions, Journal, TileJob, WriteSession};
use state::{App, Browse, Failure};
use update::Action;

/// Results of background work, back to the UI loop.
enum Done {
    Refreshed {
        coverage: Coverage,
        history: Vec<crate::cube::Commit>,
    },
    Write(Result<ingest::IngestReport, String>),
    Commit(Result<String, String>),
    Browse(Result<Browse, String>),
    Tagged(Result<String, String>),
    QuickLook(Result<(usize, Vec<u8>), String>),
    Error(String),
}

/// Puts the terminal back however the console ends.
struct TermGuard;

fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Run the console on a cube; returns the exit code.
pub fn run(settings: &Settings) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("tilecube-io")
        .build()
        .context("starting the I/O runtime")?;
    rt.block_on(run_async(settings))
}

async fn run_async(settings: &Settings) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let threads = settings
        .file
        .threads
        .unwrap_or_else(|| IngestOptions::default().threads);
    let mut app = App::new(
        cube.location.to_string(),
        cube.branch.clone(),
        cube.layout.grid(),
        cube.layout.years.clone(),
        threads,
    );
    app.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    app.source = settings.source().ok();
    if let Some(src) = &app.source {
        for &y in &app.years.clone() {
            match src.tile_list(y, &app.grid).await {
                Ok(list) => {
                    app.listed.insert(y, list.tiles.into_iter().collect());
                }
                Err(e) => app.status_line = e.to_string(),
            }
        }
    } else {
        app.status_line = "no source configured: pass --source to list and write tiles".into();
    }
    let journal_key = cube.location.key();
    for e in Journal::load(&journal_key).failed {
        app.failed.insert(
            (e.year, e.tile),
            Failure {
                error: e.reason,
                attempts: e.attempts,
            },
        );
    }
    app.coverage = cube.coverage().await?;
    app.history = cube.history().await?;
    app.show_logs = true;

    let _ = tui_logger::init_logger(log::LevelFilter::Info);
    tui_logger::set_default_level(log::LevelFilter::Info);

    // The terminal: raw mode on the alternate screen, restored on every way out.
    terminal::enable_raw_mode().context("terminal raw mode")?;
    let _guard = TermGuard;
    execute!(
        std::io::stdout(),
        terminal::EnterAlternateScreen,
        cursor::Hide
    )?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    term.clear()?;
    // Checkpoints: writes commit every `commit_every` tiles (config) or `commit_minutes`
    // (config, default ten); what is left at the end waits for the operator's `c`.
    let f = &settings.file;
    let write_options = IngestOptions {
        threads,
        max_uploads: f.max_uploads.unwrap_or(32),
        commit_every: f.commit_every.unwrap_or(0),
        commit_interval: Some(
            f.commit_interval()
                .unwrap_or(ingest::DEFAULT_COMMIT_INTERVAL),
        ),
        attempts: f.retries.unwrap_or(3),
        commit: true,
        final_commit: false,
        ..IngestOptions::default()
    };
    let code = event_loop(&mut term, &mut app, cube, journal_key, write_options).await;
    drop(term);
    code
}

async fn event_loop(
    term: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    cube: Cube,
    journal_key: String,
    write_options: IngestOptions,
) -> Result<i32> {
    // Keys come from a thread of their own, so a busy runtime never delays them.
    let (key_tx, mut key_rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("tilecube-keys".into())
        .spawn(move || {
            while let Ok(ev) = event::read() {
                if key_tx.send(ev).is_err() {
                    break;
                }
            }
        })?;
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    // The failure journal is a file: changes are applied one after another off the loop
    // that answers the keys.
    let (journal_tx, mut journal_rx) = mpsc::unbounded_channel::<JournalChange>();
    let journal_writer = tokio::spawn(async move {
        while let Some(change) = journal_rx.recv().await {
            let key = journal_key.clone();
            let _ = tokio::task::spawn_blocking(move || apply_journal_change(&key, change)).await;
        }
    });
    let session = WriteSession::open(&cube).await?;
    let cancel = Arc::new(AtomicBool::new(false));
    let cube = Arc::new(cube);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut poll = tokio::time::interval(Duration::from_secs(5));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut exit_code = 0;
    // After a signal: (exit status, when); running tiles stop at their next strip, finished
    // ones are committed, then the console leaves.
    let mut stopping: Option<(i32, std::time::Instant)> = None;
    let mut stop_commit_started = false;
    let mut head = cube.head().await.ok().map(|s| s.to_string());

    loop {
        tokio::select! {
            Some(ev) = key_rx.recv() => {
                if let TermEvent::Key(k) = ev {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    for action in update::on_key(app, k) {
                        run_action(action, app, &cube, &session, &cancel, &ev_tx, &done_tx, &write_options);
                    }
                }
                // Redraw at once after a key: the operator sees the answer within a frame.
                term.draw(|f| view::draw(f, app))?;
            }
            Some(ev) = ev_rx.recv() => {
                let mut journal_change = None;
                match &ev {
                    Event::TileFailed { year, tile, error, attempts, .. } => {
                        log::warn!("{year}/{tile}: {error}");
                        journal_change = Some((*year, *tile, Some((error.clone(), *attempts))));
                    }
                    Event::TileWritten { year, tile, .. } => {
                        journal_change = Some((*year, *tile, None));
                    }
                    _ => {}
                }
                if let Some(change) = journal_change {
                    let _ = journal_tx.send(change);
                }
                if let Event::Committed { .. } = ev {
                    // A checkpoint commit takes every pending tile of the session.
                    app.uncommitted.clear();
                    spawn_refresh(&cube, &done_tx);
                }
                update::on_event(app, &ev);
            }
            Some(done) = done_rx.recv() => {
                apply_done(app, done, &cube, &done_tx);
                head = cube.head().await.ok().map(|s| s.to_string());
            }
            _ = tick.tick() => {
                term.draw(|f| view::draw(f, app))?;
            }
            _ = poll.tick() => {
                if !app.writing && !app.committing {
                    let now = cube.head().await.ok().map(|s| s.to_string());
                    if now != head {
                        head = now;
                        spawn_refresh(&cube, &done_tx);
                    }
                }
            }
            _ = sigterm.recv() => { cancel.store(true, Ordering::SeqCst); stopping.get_or_insert((143, std::time::Instant::now())); }
            _ = sighup.recv() => { cancel.store(true, Ordering::SeqCst); stopping.get_or_insert((129, std::time::Instant::now())); }
            _ = sigint.recv() => { cancel.store(true, Ordering::SeqCst); stopping.get_or_insert((130, std::time::Instant::now())); }
        }
        if let Some((code, since)) = stopping {
            if !app.writing && !app.committing {
                if app.has_uncommitted() && !stop_commit_started {
                    stop_commit_started = true;
                    app.committing = true;
                    let message = app.default_commit_message();
                    log::warn!("signal: committing the finished tiles before leaving");
                    run_action(
                        Action::Commit(message),
                        app,
                        &cube,
                        &session,
                        &cancel,
                        &ev_tx,
                        &done_tx,
                        &write_options,
                    );
                } else {
                    exit_code = code;
                    break;
                }
            } else if since.elapsed() > Duration::from_secs(60) {
                exit_code = code;
                break;
            }
        }
        if app.quit {
            cancel.store(true, Ordering::SeqCst);
            break;
        }
    }
    drop(journal_tx);
    let _ = journal_writer.await;
    Ok(exit_code)
}

/// A tile's change in the failure journal: its failure (reason, attempts), or its success.
type JournalChange = (i32, TileName, Option<(String, u32)>);

fn apply_journal_change(key: &str, (year, tile, failure): JournalChange) {
    let mut j = Journal::load(key);
    let changed = match failure {
        Some((reason, attempts)) => {
            j.fail(year, tile, &reason, attempts);
            true
        }
        None => j.clear(year, tile),
    };
    if changed && let Err(e) = j.save() {
        log::warn!("failure journal: {e}");
    }
}

fn spawn_refresh(cube: &Arc<Cube>, done_tx: &mpsc::UnboundedSender<Done>) {
    let (cube, tx) = (Arc::clone(cube), done_tx.clone());
    tokio::spawn(async move {
        let fresh = match cube.reopen().await {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Done::Error(e.to_string()));
                return;
            }
        };
        let r = async {
            Ok::<_, crate::cube::CubeError>((fresh.coverage().await?, fresh.history().await?))
        }
        .await;
        let _ = tx.send(match r {
            Ok((coverage, history)) => Done::Refreshed { coverage, history },
            Err(e) => Done::Error(e.to_string()),
        });
    });
}

#[allow(clippy::too_many_arguments)]
fn run_action(
    action: Action,
    app: &mut App,
    cube: &Arc<Cube>,
    session: &Arc<WriteSession>,
    cancel: &Arc<AtomicBool>,
    ev_tx: &mpsc::UnboundedSender<Event>,
    done_tx: &mpsc::UnboundedSender<Done>,
    write_options: &IngestOptions,
) {
    let tx = done_tx.clone();
    let cube2 = Arc::clone(cube);
    match action {
        Action::Quit => {}
        Action::Cancel => {
            cancel.store(true, Ordering::SeqCst);
            app.status_line = "cancelling: running tiles stop at the next strip".into();
        }
        Action::Write(tiles) => {
            let Some(source) = app.source.clone() else {
                app.writing = false;
                app.queued.clear();
                app.status_line = "no source configured".into();
                return;
            };
            let jobs: Vec<TileJob> = tiles
                .iter()
                .filter_map(|&(year, tile)| {
                    Some(TileJob {
                        year,
                        year_index: cube.layout.year_index(year)?,
                        tile,
                        path: source.gdal_path(year, tile),
                    })
                })
                .collect();
            cancel.store(false, Ordering::SeqCst);
            let (session, cancel, events) = (
                Arc::clone(session),
                Arc::clone(cancel),
                EventSink::new(ev_tx.clone()),
            );
            let options = write_options.clone();
            tokio::spawn(async move {
                let r = ingest::ingest_into(&cube2, &session, jobs, &options, events, cancel).await;
                let _ = tx.send(Done::Write(r.map_err(|e| e.to_string())));
            });
        }
        Action::Commit(message) => {
            let session = Arc::clone(session);
            tokio::spawn(async move {
                let r = ingest::commit_tiles_with_message(
                    &cube2,
                    &session,
                    Some(&message),
                    &EventSink::none(),
                )
                .await;
                let r = r
                    .map_err(|e| e.to_string())
                    .and_then(|id| id.ok_or_else(|| "nothing to commit".to_string()));
                let _ = tx.send(Done::Commit(r));
            });
        }
        Action::Browse(id) => {
            let message = app
                .history
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            tokio::spawn(async move {
                let r = snapshot_tiles(&cube2, &id).await.map(|coverage| Browse {
                    snapshot: id.clone(),
                    message,
                    coverage: coverage.keys().copied().collect(),
                    diff_against: None,
                    changed: BTreeSet::new(),
                });
                let _ = tx.send(Done::Browse(r));
            });
        }
        Action::Diff { from, to } => {
            tokio::spawn(async move {
                let r = async {
                    let a = snapshot_tiles(&cube2, &from).await?;
                    let b = snapshot_tiles(&cube2, &to).await?;
                    let keys: BTreeSet<_> = a.keys().chain(b.keys()).copied().collect();
                    let changed: BTreeSet<_> =
                        keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect();
                    Ok::<_, String>(Browse {
                        snapshot: to.clone(),
                        message: format!("{} tiles changed", changed.len()),
                        coverage: changed.clone(),
                        diff_against: Some(from.clone()),
                        changed,
                    })
                }
                .await;
                let _ = tx.send(Done::Browse(r));
            });
        }
        Action::Tag { snapshot, name } => {
            tokio::spawn(async move {
                let r = async {
                    let id = SnapshotId::try_from(snapshot.as_str()).map_err(|e| e.to_string())?;
                    cube2
                        .create_tag(&name, &id)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>(format!("tagged {snapshot} as {name}"))
                }
                .await;
                let _ = tx.send(Done::Tagged(r));
            });
        }
        Action::QuickLook { year, tile } => {
            let session = Arc::clone(session);
            tokio::spawn(async move {
                let r = quicklook(&cube2, &session, year, tile, 64).await;
                let _ = tx.send(Done::QuickLook(r));
            });
        }
    }
}

/// Tiles a snapshot holds, with the snapshot that wrote each.
async fn snapshot_tiles(
    cube: &Cube,
    id: &str,
) -> Result<BTreeMap<(i32, TileName), String>, String> {
    let sid = SnapshotId::try_from(id).map_err(|e| e.to_string())?;
    let cov = cube
        .coverage_at(&VersionInfo::SnapshotId(sid))
        .await
        .map_err(|e| e.to_string())?;
    Ok(cov
        .tiles
        .into_iter()
        .filter_map(|(k, s)| match s {
            TileState::Written { snapshot, .. } => Some((k, snapshot)),
            _ => None,
        })
        .collect())
}

/// Read a tile back from the session (uncommitted writes included), decimated to at most
/// `n`×`n` samples, one chunk in memory at a time.
async fn quicklook(
    cube: &Cube,
    session: &Arc<WriteSession>,
    year: i32,
    tile: TileName,
    n: usize,
) -> Result<(usize, Vec<u8>), String> {
    use zarrs::array::Array;
    let s = session.session.read().await.clone();
    let store = Arc::new(zarrs_icechunk::AsyncIcechunkStore::new(s));
    let array = Array::async_open(store, &cube.layout.variable_path())
        .await
        .map_err(|e| e.to_string())?;
    let grid = cube.layout.grid();
    let cell = grid.cell(tile).map_err(|e| e.to_string())?;
    let yi = cube.layout.year_index(year).ok_or("year not in the cube")? as u64;
    let side = grid.tile_pixels as usize;
    let n = n.min(side);
    let chunk = grid.chunk_pixels as usize;
    let (cy0, cx0) = grid.first_chunk(cell);
    let mut out = vec![cube.layout.fill_value; n * n];
    let per_side = grid.chunks_per_side() as usize;
    for cy in 0..per_side {
        for cx in 0..per_side {
            // Samples falling in this chunk.
            let rows: Vec<usize> = (0..n).filter(|r| r * side / n / chunk == cy).collect();
            let cols: Vec<usize> = (0..n).filter(|c| c * side / n / chunk == cx).collect();
            if rows.is_empty() || cols.is_empty() {
                continue;
            }
            let px: Vec<u8> = array
                .async_retrieve_chunk(&[yi, cy0 + cy as u64, cx0 + cx as u64])
                .await
                .map_err(|e| e.to_string())?;
            for &r in &rows {
                for &c in &cols {
                    let y = r * side / n - cy * chunk;
                    let x = c * side / n - cx * chunk;
                    out[r * n + c] = px[y * chunk + x];
                }
            }
        }
    }
    Ok((n, out))
}

fn apply_done(app: &mut App, done: Done, cube: &Arc<Cube>, done_tx: &mpsc::UnboundedSender<Done>) {
    match done {
        Done::Refreshed { coverage, history } => {
            app.coverage = coverage;
            app.history = history;
            app.history_index = app.history_index.min(app.history.len().saturating_sub(1));
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
        Done::Commit(Ok(id)) => {
            app.committing = false;
            app.uncommitted.clear();
            app.status_line = format!("committed {id}");
            log::info!("committed {id}");
            spawn_refresh(cube, done_tx);
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
}
