//! The operator console: a terminal UI over the ingest engine.
//!
//! `state` holds what the screen shows, `update` turns every [`Msg`] into state changes and
//! [`Action`]s, `keys` is the one key table, `view` draws, `widgets` holds the quick-look.
//! This file is the runtime only: it owns the terminal, reads keys on a thread of their own,
//! runs each action as a task off the UI loop (through engine functions only), feeds the
//! results back as messages, and redraws at a steady rate.
//!
//! Invariants:
//! - the first frame never waits for storage: the repository is opened, its head's tiles
//!   read and the source's lists fetched in tasks of their own, and the grid fills in as they
//!   arrive (loading shown until then);
//! - however the console ends — the operator's quit, a signal, the terminal gone (a dropped
//!   SSH link), a panic — running tiles stop at their next strip and, unless the operator
//!   chose to quit, every finished tile is committed before the process leaves; only then is
//!   the terminal restored (as far as it still exists).

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
use tilecube::cube::{Cube, Layout, WriteSession};
use tilecube::error_chain;
use tilecube::grid::Grid;
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
    io_runtime()?.block_on(run_async(settings, None))
}

/// A scale-out plan to watch: where it is, and the plan.
pub type WatchedPlan = Arc<(tilecube::scaleout::Place, tilecube::scaleout::ShardPlan)>;

/// Run the console on a plan's cube, watching the plan's shards (`S`, and at start).
pub fn run_watching(settings: &Settings, plan: WatchedPlan) -> Result<i32> {
    io_runtime()?.block_on(run_async(settings, Some(plan)))
}

/// What the runtime holds besides the state: the engine handles (once the repository is
/// open) and the channels back.
struct Runtime {
    cube: Option<Arc<Cube>>,
    session: Option<Arc<WriteSession>>,
    cancel: Arc<AtomicBool>,
    write_options: IngestOptions,
    journal_key: String,
    events: mpsc::UnboundedSender<Event>,
    done: mpsc::UnboundedSender<Done>,
    /// The running write, if any.
    write_task: Option<tokio::task::JoinHandle<()>>,
    /// The scale-out plan watched, if any.
    plan: Option<WatchedPlan>,
}

/// The repository opened, with a write session on its branch.
type Opened = Result<(Cube, Arc<WriteSession>), String>;

async fn run_async(settings: &Settings, plan: Option<WatchedPlan>) -> Result<i32> {
    let location = settings.location()?;
    let write_options = settings.console_options()?;
    // Until the repository is open, the grid and years are the preset's: the same as the
    // cube's unless it was laid out with another preset, and replaced once it is read.
    let grid = Grid::from_preset(&settings.preset, settings.tile_pixels)?;
    let years = Layout::new(&settings.preset, &grid).years;
    let mut app = App::new(
        location.to_string(),
        settings.branch.clone(),
        grid,
        years,
        write_options.threads,
    );
    app.loading = Some(format!("opening {location}"));
    app.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    app.source = settings.source().ok();
    if app.source.is_none() {
        app.status_line = "no source configured: pass --source to list and write tiles".into();
    }
    let journal_key = location.key();
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
    app.show_logs = true;
    if let Some(p) = &plan {
        app.plan = Some(state::PlanView {
            at: p.0.to_string(),
            status: None,
            error: None,
        });
        app.popup = Some(state::Popup::Plan);
    }

    let _ = tui_logger::init_logger(log::LevelFilter::Info);
    tui_logger::set_default_level(log::LevelFilter::Info);

    let (ev_tx, ev_rx) = mpsc::unbounded_channel::<Event>();
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    let mut rt = Runtime {
        cube: None,
        session: None,
        cancel: Arc::new(AtomicBool::new(false)),
        write_options,
        journal_key,
        events: ev_tx,
        done: done_tx.clone(),
        write_task: None,
        plan,
    };

    // Off the UI task: open the repository (then its head's tiles are read, as a refresh)
    // and read the source's lists, each year as it comes.
    let (open_tx, open_rx) = tokio::sync::oneshot::channel::<Opened>();
    let opening = settings.clone();
    tokio::spawn(async move {
        let r = async {
            let cube = opening.open_cube().await?;
            let session = WriteSession::open(&cube).await?;
            Ok::<_, anyhow::Error>((cube, session))
        }
        .await;
        let _ = open_tx.send(r.map_err(|e| format!("{e:#}")));
    });
    if let Some(source) = app.source.clone() {
        let (years, grid, tx) = (app.years.clone(), app.grid.clone(), done_tx);
        tokio::spawn(async move {
            for year in years {
                let tiles = match source.tile_list(year, &grid).await {
                    Ok(list) => Ok(list.tiles),
                    // A dataset need not have every year: that year shows no listed tile.
                    Err(tilecube::source::SourceError::NoList { .. }) => Ok(Vec::new()),
                    Err(e) => Err(error_chain(&e)),
                };
                let _ = tx.send(Done::Listed { year, tiles });
            }
        });
    }

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

    let channels = Channels {
        events: ev_rx,
        done: done_rx,
        opened: open_rx,
    };
    let outcome = std::panic::AssertUnwindSafe(event_loop(&mut term, &mut app, &mut rt, channels))
        .catch_unwind()
        .await;
    let exit = match outcome {
        Ok(Ok(Some(open_error))) => {
            drop(term);
            drop(guard);
            eprintln!("error: {open_error}");
            return Ok(2);
        }
        Ok(Ok(None)) => app.exit.unwrap_or(Exit::Quit),
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
    if let Some(session) = &rt.session
        && exit.commits_finished_tiles()
        && session.has_pending()
    {
        session.commit(None).await.map_err(|e| error_chain(&e))?;
    }
    Ok(())
}

/// What the event loop listens to besides keys, ticks and signals.
struct Channels {
    events: mpsc::UnboundedReceiver<Event>,
    done: mpsc::UnboundedReceiver<Done>,
    opened: tokio::sync::oneshot::Receiver<Opened>,
}

/// Run the console until it is to leave; `Some(reason)` when the repository could not be
/// opened.
async fn event_loop(
    term: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    rt: &mut Runtime,
    channels: Channels,
) -> Result<Option<String>> {
    let Channels {
        events: mut ev_rx,
        done: mut done_rx,
        opened: mut open_rx,
    } = channels;
    let mut opening = true;
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
            opened = &mut open_rx, if opening => {
                opening = false;
                match opened {
                    Ok(Ok((cube, session))) => {
                        let (grid, years) = (cube.layout.grid(), cube.layout.years.clone());
                        rt.cube = Some(Arc::new(cube));
                        rt.session = Some(session);
                        (Some(Msg::Done(Done::Opened { grid, years })), true)
                    }
                    Ok(Err(e)) => return Ok(Some(e)),
                    Err(_) => return Ok(Some("opening the repository stopped".into())),
                }
            }
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
            return Ok(None);
        }
        // Redraw at once after a key: the operator sees the answer within a frame. A draw
        // that fails means the terminal is gone.
        if redraw_now && term.draw(|f| view::draw(f, app)).is_err() {
            for action in update::update(app, Msg::TerminalLost) {
                run_action(action, app, rt);
            }
            return Ok(None);
        }
    }
}

/// Run one action off the UI loop; its result comes back as a [`Done`] message.
fn run_action(action: Action, app: &mut App, rt: &mut Runtime) {
    let tx = rt.done.clone();
    if matches!(action, Action::Quit | Action::Cancel) {
        if let Action::Cancel = action {
            rt.cancel.store(true, Ordering::SeqCst);
            if app.exit.is_none() {
                app.status_line = "cancelling: running tiles stop at the next strip".into();
            }
        }
        return;
    }
    // Everything else acts on the repository; `update` asks for none of it while loading.
    let (Some(cube), Some(session)) = (rt.cube.clone(), rt.session.clone()) else {
        app.writing = false;
        app.committing = false;
        app.queued.clear();
        app.status_line = "the repository is not open yet".into();
        return;
    };
    match action {
        Action::Quit | Action::Cancel => {}
        Action::Write(tiles) => {
            let Some(source) = app.source.clone() else {
                app.writing = false;
                app.queued.clear();
                app.status_line = "no source configured".into();
                return;
            };
            rt.cancel.store(false, Ordering::SeqCst);
            let cancel = Arc::clone(&rt.cancel);
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
            tokio::spawn(async move {
                let r = cube
                    .quicklook(session.snapshot().await, year, tile, 64)
                    .await;
                let _ = tx.send(Done::QuickLook(r.map_err(|e| error_chain(&e))));
            });
        }
        Action::Refresh => {
            // Only what changed since the head shown is read: the coverage of a snapshot
            // seen before is cached, and the history is read down to the commit shown.
            let known = app.history.clone();
            tokio::spawn(async move {
                let r = async {
                    let head = cube.head().await?;
                    Ok::<_, tilecube::cube::CubeError>(Done::Refreshed {
                        coverage: cube.coverage_of(&head).await?,
                        history: cube.history_since(&known).await?,
                        head: Some(head.to_string()),
                    })
                }
                .await;
                let _ = tx.send(r.unwrap_or_else(|e| Done::Error(error_chain(&e))));
            });
        }
        Action::PlanStatus => {
            let Some(plan) = rt.plan.clone() else {
                return;
            };
            tokio::spawn(async move {
                let (place, plan) = &*plan;
                let r = tilecube::scaleout::PlanStatus::gather(plan, place, &cube, None).await;
                let _ = tx.send(Done::Plan(r.map_err(|e| error_chain(&e))));
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
