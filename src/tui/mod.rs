//! The operator console: a terminal UI over the ingest engine.
//!
//! `state` holds what the screen shows, `update` turns every [`Msg`] into state changes and
//! [`Action`]s, `keys` is the one key table, `view` draws, `widgets` holds the quick-look.
//! This file is the runtime only: it owns the terminal, reads keys on a thread of their own,
//! runs each action as a task off the UI loop (through engine functions only), feeds the
//! results back as messages, and redraws at a steady rate.
//!
//! Invariant: however the console ends — the operator's quit, a signal, the terminal gone
//! (a dropped SSH link), a panic — running tiles stop at their next strip and, unless the
//! operator chose to quit, every finished tile is committed before the process leaves; only
//! then is the terminal restored (as far as it still exists).

mod keys;
pub mod state;
pub mod update;
pub mod view;
pub mod widgets;

use std::io::Stdout;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use futures::FutureExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui::crossterm::{cursor, execute, terminal};
use tokio::sync::mpsc;

use state::{App, Browse, Exit, Failure};
use tilecube::config::{Settings, io_runtime};
use tilecube::cube::{Cube, WriteSession};
use tilecube::error_chain;
use tilecube::ingest::{self, Event, EventSink, IngestOptions, Journal, Selection};
use update::{Action, Done, Msg};

/// How long leaving waits for running tiles to stop at their next strip.
const STOP_WAIT: Duration = Duration::from_secs(60);

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
    io_runtime()?.block_on(run_async(settings))
}

/// What the runtime holds besides the state: the engine handles and the channels back.
struct Runtime {
    cube: Arc<Cube>,
    session: Arc<WriteSession>,
    cancel: Arc<AtomicBool>,
    write_options: IngestOptions,
    journal_key: String,
    events: mpsc::UnboundedSender<Event>,
    done: mpsc::UnboundedSender<Done>,
    /// The running write, if any.
    write_task: Option<tokio::task::JoinHandle<()>>,
}

async fn run_async(settings: &Settings) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let write_options = settings.console_options()?;
    let mut app = App::new(
        cube.location.to_string(),
        cube.branch.clone(),
        cube.layout.grid(),
        cube.layout.years.clone(),
        write_options.threads,
    );
    app.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    app.source = settings.source().ok();
    if let Some(src) = &app.source {
        for &y in &app.years.clone() {
            match src.tile_list(y, &app.grid).await {
                Ok(list) => {
                    app.listed.insert(y, list.tiles.into_iter().collect());
                }
                // A dataset need not have every year: that year shows no listed tile.
                Err(tilecube::source::SourceError::NoList { .. }) => {}
                Err(e) => app.status_line = error_chain(&e),
            }
        }
    } else {
        app.status_line = "no source configured: pass --source to list and write tiles".into();
    }
    let journal_key = cube.location.key();
    let journal = Journal::load_or_report(&journal_key, |w| app.status_line = w);
    for e in journal.failed {
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
    app.head = cube.head().await.ok().map(|s| s.to_string());
    app.show_logs = true;

    let _ = tui_logger::init_logger(log::LevelFilter::Info);
    tui_logger::set_default_level(log::LevelFilter::Info);

    let session = WriteSession::open(&cube).await?;
    let (ev_tx, ev_rx) = mpsc::unbounded_channel::<Event>();
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    let mut rt = Runtime {
        cube: Arc::new(cube),
        session,
        cancel: Arc::new(AtomicBool::new(false)),
        write_options,
        journal_key,
        events: ev_tx,
        done: done_tx,
        write_task: None,
    };

    // The terminal: raw mode on the alternate screen, restored on every way out.
    terminal::enable_raw_mode().map_err(|e| anyhow::anyhow!("terminal raw mode: {e}"))?;
    let guard = TermGuard;
    let _ = execute!(
        std::io::stdout(),
        terminal::EnterAlternateScreen,
        cursor::Hide
    );
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    let _ = term.clear();

    let outcome =
        std::panic::AssertUnwindSafe(event_loop(&mut term, &mut app, &mut rt, ev_rx, done_rx))
            .catch_unwind()
            .await;
    let exit = match outcome {
        Ok(Ok(())) => app.exit.unwrap_or(Exit::Quit),
        Ok(Err(e)) => {
            log::error!("console: {e:#}");
            Exit::TerminalLost
        }
        Err(_) => Exit::Signal(libc::SIGABRT),
    };
    let committed = shut_down(&mut rt, exit).await;
    drop(term);
    drop(guard);
    if let Err(e) = committed {
        eprintln!("error: committing the finished tiles: {e}");
        return Ok(2);
    }
    Ok(exit.code())
}

/// The way out: stop the running tiles at their next strip, wait for them, and commit the
/// finished ones unless the operator chose to quit without them.
async fn shut_down(rt: &mut Runtime, exit: Exit) -> Result<(), String> {
    rt.cancel.store(true, Ordering::SeqCst);
    if let Some(task) = rt.write_task.take() {
        let _ = tokio::time::timeout(STOP_WAIT, task).await;
    }
    if exit.commits_finished_tiles() && rt.session.has_pending() {
        rt.session.commit(None).await.map_err(|e| error_chain(&e))?;
    }
    Ok(())
}

async fn event_loop(
    term: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    rt: &mut Runtime,
    mut ev_rx: mpsc::UnboundedReceiver<Event>,
    mut done_rx: mpsc::UnboundedReceiver<Done>,
) -> Result<()> {
    // Keys come from a thread of their own, so a busy runtime never delays them; a terminal
    // that cannot be read any more is a lost terminal.
    let (key_tx, mut key_rx) = mpsc::unbounded_channel::<Msg>();
    std::thread::Builder::new()
        .name("tilecube-keys".into())
        .spawn(move || {
            loop {
                let msg = match event::read() {
                    Ok(TermEvent::Key(k)) if k.kind == KeyEventKind::Press => Msg::Key(k),
                    Ok(_) => continue,
                    Err(_) => Msg::TerminalLost,
                };
                let lost = matches!(msg, Msg::TerminalLost);
                if key_tx.send(msg).is_err() || lost {
                    break;
                }
            }
        })?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut poll = tokio::time::interval(Duration::from_secs(5));
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    loop {
        let (msg, redraw_now) = tokio::select! {
            Some(msg) = key_rx.recv() => (Some(msg), true),
            Some(ev) = ev_rx.recv() => (Some(Msg::Engine(ev)), false),
            Some(done) = done_rx.recv() => (Some(Msg::Done(done)), false),
            _ = tick.tick() => (None, true),
            _ = poll.tick() => (Some(Msg::Poll), false),
            _ = sigterm.recv() => (Some(Msg::Signal(libc::SIGTERM)), false),
            _ = sighup.recv() => (Some(Msg::Signal(libc::SIGHUP)), false),
            _ = sigint.recv() => (Some(Msg::Signal(libc::SIGINT)), false),
        };
        if let Some(msg) = msg {
            for action in update::update(app, msg) {
                run_action(action, app, rt);
            }
        }
        if app.exit.is_some() {
            return Ok(());
        }
        // Redraw at once after a key: the operator sees the answer within a frame. A draw
        // that fails means the terminal is gone.
        if redraw_now && term.draw(|f| view::draw(f, app)).is_err() {
            for action in update::update(app, Msg::TerminalLost) {
                run_action(action, app, rt);
            }
            return Ok(());
        }
    }
}

/// Run one action off the UI loop; its result comes back as a [`Done`] message.
fn run_action(action: Action, app: &mut App, rt: &mut Runtime) {
    let tx = rt.done.clone();
    let cube = Arc::clone(&rt.cube);
    match action {
        Action::Quit => {}
        Action::Cancel => {
            rt.cancel.store(true, Ordering::SeqCst);
            if app.exit.is_none() {
                app.status_line = "cancelling: running tiles stop at the next strip".into();
            }
        }
        Action::Write(tiles) => {
            let Some(source) = app.source.clone() else {
                app.writing = false;
                app.queued.clear();
                app.status_line = "no source configured".into();
                return;
            };
            rt.cancel.store(false, Ordering::SeqCst);
            let (session, cancel) = (Arc::clone(&rt.session), Arc::clone(&rt.cancel));
            let events = EventSink::new(rt.events.clone()).journaled(&rt.journal_key);
            let options = rt.write_options.clone();
            rt.write_task = Some(tokio::spawn(async move {
                let r = async {
                    let plan =
                        ingest::plan(&cube, &source, &[], &Selection::Pairs(tiles), None).await?;
                    Ok::<_, anyhow::Error>(
                        ingest::ingest_into(&session, plan.jobs, &options, events, cancel).await?,
                    )
                }
                .await;
                let _ = tx.send(Done::Write(r.map_err(|e| format!("{e:#}"))));
            }));
        }
        Action::Commit(message) => {
            let session = Arc::clone(&rt.session);
            tokio::spawn(async move {
                let r = session.commit(Some(&message)).await;
                let _ = tx.send(Done::Commit(r.map_err(|e| error_chain(&e))));
            });
        }
        Action::Browse { snapshot, message } => {
            tokio::spawn(async move {
                let r = cube.snapshot_tiles(&snapshot).await.map(|tiles| Browse {
                    snapshot: snapshot.clone(),
                    message,
                    coverage: tiles.keys().copied().collect(),
                    diff_against: None,
                    changed: Default::default(),
                });
                let _ = tx.send(Done::Browse(r.map_err(|e| error_chain(&e))));
            });
        }
        Action::Diff { from, to } => {
            tokio::spawn(async move {
                let r = cube.diff(&from, &to).await.map(|changed| Browse {
                    snapshot: to.clone(),
                    message: format!("{} tiles changed", changed.len()),
                    coverage: changed.clone(),
                    diff_against: Some(from.clone()),
                    changed,
                });
                let _ = tx.send(Done::Browse(r.map_err(|e| error_chain(&e))));
            });
        }
        Action::Tag { snapshot, name } => {
            tokio::spawn(async move {
                let r = cube
                    .tag(&name, &snapshot)
                    .await
                    .map(|()| format!("tagged {snapshot} as {name}"));
                let _ = tx.send(Done::Tagged(r.map_err(|e| error_chain(&e))));
            });
        }
        Action::QuickLook { year, tile } => {
            let session = Arc::clone(&rt.session);
            tokio::spawn(async move {
                let r = cube
                    .quicklook(session.snapshot().await, year, tile, 64)
                    .await;
                let _ = tx.send(Done::QuickLook(r.map_err(|e| error_chain(&e))));
            });
        }
        Action::Refresh => {
            tokio::spawn(async move {
                let r = async {
                    let fresh = cube.reopen().await?;
                    let head = fresh.head().await.ok().map(|s| s.to_string());
                    Ok::<_, tilecube::cube::CubeError>(Done::Refreshed {
                        coverage: fresh.coverage().await?,
                        history: fresh.history().await?,
                        head,
                    })
                }
                .await;
                let _ = tx.send(r.unwrap_or_else(|e| Done::Error(error_chain(&e))));
            });
        }
        Action::CheckHead => {
            tokio::spawn(async move {
                if let Ok(head) = cube.head().await {
                    let _ = tx.send(Done::Head(Some(head.to_string())));
                }
            });
        }
    }
}
