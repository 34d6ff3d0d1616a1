//! The operator console: a terminal UI over the ingest engine, Elm-shaped.
//!
//! - `state`: what the screen shows — the components and what they share (the cube as read,
//!   the selection, the runs);
//! - `components`: the console by feature — the grid, the map, the history, the runs panel,
//!   the details, the legend and each popup — each owning its state, its commands and its
//!   drawing;
//! - `msg`: the messages in and the actions out; `update`: every [`Msg`] into state changes
//!   and [`Action`](msg::Action)s, keys dispatched to the popup open or the panel focused;
//! - `keys`: the one key table; `view`: the screen's layout; `widgets`: the quick-look;
//! - `tasks`: what each action does, off the UI loop.
//!
//! This file is the runtime only: it owns the terminal, reads keys on a thread of their own,
//! runs each action as a task off the UI loop (`tasks`, through engine functions only),
//! feeds the results back as messages, and redraws at a steady rate.
//!
//! Invariants:
//! - the first frame never waits for storage: the repository is opened, its head's tiles
//!   read and the source's lists fetched in tasks of their own, and the grid fills in as they
//!   arrive (loading shown until then);
//! - the console never owns a write: `w` launches a detached run ([`tilecube::runs`]) in a
//!   worker process of its own, and the console watches its progress record a few times a
//!   second; however the console ends — the operator's quit, a signal, the terminal gone (a
//!   dropped SSH link), a panic — runs keep going unless the operator chose to cancel them,
//!   and the terminal is restored (as far as it still exists);
//! - reopened on the same repository, the console finds the runs going and attaches to them.

mod clipboard;
pub mod components;
mod keys;
pub mod msg;
pub mod state;
mod tasks;
pub mod update;
pub mod view;
pub mod widgets;

use std::io::Stdout;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::FutureExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui::crossterm::{cursor, execute, terminal};
use tokio::sync::mpsc;

use msg::{Done, Msg};
use state::{App, Exit};
use tilecube::config::{Settings, io_runtime};
use tilecube::cube::{Cube, Layout};
use tilecube::grid::Grid;
use tilecube::ingest::Journal;

/// How often the progress of the runs going is read.
const WATCH_EVERY: Duration = Duration::from_millis(300);

/// Puts the terminal back however the console ends.
struct TermGuard;

/// Whether the terminal was restored since the console took it: the restore runs once, as
/// leaving the alternate screen again would put the cursor back over what was printed after
/// the first (a panic's message, say).
static RESTORED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn restore_terminal() {
    if RESTORED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
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
    /// What runs are launched with (the repository, source, preset, config file).
    settings: Arc<Settings>,
    /// The repository as runs name it (absolute path or URL).
    runs_repo: String,
    done: mpsc::UnboundedSender<Done>,
    /// Cancels asked for, which leaving waits for.
    cancels: Vec<tokio::task::JoinHandle<()>>,
    /// The scale-out plan watched, if any.
    plan: Option<WatchedPlan>,
}

/// The repository opened, and the source as the cube's own preset lays it out (when no
/// preset was given, the cube's may not be the one the console started with).
type Opened = Result<(Cube, Option<tilecube::source::Source>), String>;

async fn run_async(settings: &Settings, plan: Option<WatchedPlan>) -> Result<i32> {
    let location = settings.location()?;
    let threads = settings.threads(None)?;
    // Until the repository is open, the grid and years are the preset's: the same as the
    // cube's unless it was laid out with another preset, and replaced once it is read.
    let grid = Grid::from_preset(settings.preset(), settings.tile_pixels)?;
    let years = Layout::new(settings.preset(), &grid).years;
    let mut app = App::new(
        location.to_string(),
        settings.branch.clone(),
        grid,
        years,
        threads,
    );
    app.cube.loading = Some(format!("opening {location}"));
    app.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    app.cube.source = settings.source().ok();
    if app.cube.source.is_none() {
        app.status_line = "no source configured: pass --source to list and write tiles".into();
    }
    app.show_logs = true;
    if let Some(p) = &plan {
        app.plan = Some(components::popups::plan::PlanView {
            at: p.0.to_string(),
            status: None,
            error: None,
        });
        app.popup = Some(components::popups::Popup::Plan);
    }

    let _ = tui_logger::init_logger(log::LevelFilter::Info);
    tui_logger::set_default_level(log::LevelFilter::Info);

    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    let mut rt = Runtime {
        cube: None,
        settings: Arc::new(settings.clone()),
        runs_repo: tilecube::scaleout::build::absolute(settings.repo.as_deref().unwrap_or("")),
        done: done_tx.clone(),
        cancels: Vec::new(),
        plan,
    };

    // Off the UI task: open the repository (then its head's tiles are read, as a refresh)
    // and read the source's lists, each year as it comes.
    let (open_tx, open_rx) = tokio::sync::oneshot::channel::<Opened>();
    let opening = settings.clone();
    tokio::spawn(async move {
        let r = opening
            .open_cube()
            .await
            .map(|cube| (cube, opening.source().ok()));
        let _ = open_tx.send(r.map_err(|e| tilecube::anyhow_chain(&e)));
    });
    if let Some(source) = app.cube.source.clone() {
        tasks::spawn_lists(
            source,
            app.cube.years.clone(),
            app.cube.grid.clone(),
            done_tx,
        );
    }

    // The terminal: raw mode on the alternate screen, restored on every way out.
    terminal::enable_raw_mode().map_err(|e| anyhow::anyhow!("terminal raw mode: {e}"))?;
    RESTORED.store(false, std::sync::atomic::Ordering::SeqCst);
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
            log::error!("console: {}", tilecube::anyhow_chain(&e));
            Exit::TerminalLost
        }
        Err(_) => Exit::Signal(libc::SIGABRT),
    };
    // Runs keep going; only cancels the operator asked for are waited for.
    for task in rt.cancels.drain(..) {
        let _ = tokio::time::timeout(tasks::CANCEL_WAIT, task).await;
    }
    drop(term);
    drop(guard);
    for run in app.active_runs() {
        eprintln!(
            "run {} keeps going: tilecube runs   (log {})",
            run.info.id,
            run.log.display()
        );
    }
    Ok(exit.code())
}

/// What the event loop listens to besides keys, ticks and signals.
struct Channels {
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
    let mut watch = tokio::time::interval(WATCH_EVERY);
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    loop {
        let (msg, redraw_now) = tokio::select! {
            opened = &mut open_rx, if opening => {
                opening = false;
                match opened {
                    Ok(Ok((cube, source))) => {
                        let (grid, years) = (cube.layout.grid(), cube.layout.years.clone());
                        // Years the cube gained past its preset's (`tilecube extend`): their
                        // lists are read too (the preset's years are being read already).
                        let mut gained: Vec<i32> =
                            years.iter().copied().filter(|y| !app.cube.years.contains(y)).collect();
                        // The cube's own preset lays its source out otherwise: every list is
                        // read from there.
                        if source.is_some() && source != app.cube.source {
                            app.cube.source = source;
                            gained = years.clone();
                        }
                        if let Some(source) = app.cube.source.clone() && !gained.is_empty() {
                            tasks::spawn_lists(source, gained, grid.clone(), rt.done.clone());
                        }
                        // The failure journal is the cube's (by its key), read once it is open.
                        let mut warning = None;
                        let journal = Journal::load_or_report(&tilecube::config::journal_dir(), &cube.key(), |w| warning = Some(w));
                        rt.cube = Some(Arc::new(cube));
                        let opened = Done::Opened { grid, years, failed: journal.failed, warning };
                        (Some(Msg::Done(opened)), true)
                    }
                    Ok(Err(e)) => return Ok(Some(e)),
                    Err(_) => return Ok(Some("opening the repository stopped".into())),
                }
            }
            Some(msg) = key_rx.recv() => {
                #[cfg(feature = "test-support")]
                panic_on_test_key(&msg);
                (Some(msg), true)
            }
            Some(done) = done_rx.recv() => {
                // The cube grew years (an `extend` landed): the runtime's cube learns them,
                // so what it reads next (maps, quick-looks) knows the new year.
                if let Done::Refreshed { years: Some(years), .. } = &done
                    && let Some(cube) = &rt.cube
                {
                    let mut grown = (**cube).clone();
                    grown.layout.years = years.clone();
                    rt.cube = Some(Arc::new(grown));
                }
                (Some(Msg::Done(done)), false)
            }
            _ = tick.tick() => (Some(Msg::Tick(chrono::Utc::now())), true),
            _ = poll.tick() => (Some(Msg::Poll), false),
            _ = watch.tick() => (Some(Msg::Watch), false),
            _ = sigterm.recv() => (Some(Msg::Signal(libc::SIGTERM)), false),
            _ = sighup.recv() => (Some(Msg::Signal(libc::SIGHUP)), false),
            _ = sigint.recv() => (Some(Msg::Signal(libc::SIGINT)), false),
        };
        if let Some(msg) = msg {
            for action in update::update(app, msg) {
                tasks::run_action(action, app, rt);
            }
        }
        if app.exit.is_some() {
            return Ok(None);
        }
        // Redraw at once after a key: the operator sees the answer within a frame. A draw
        // that fails means the terminal is gone.
        if redraw_now && term.draw(|f| view::draw(f, app)).is_err() {
            for action in update::update(app, Msg::TerminalLost) {
                tasks::run_action(action, app, rt);
            }
            return Ok(None);
        }
    }
}

/// Test-only: panic when the key named by `TILECUBE_TEST_PANIC_ON_KEY` (one character) is
/// pressed, so a test can make the console panic in its event loop and check that the
/// terminal is restored and the panic told (feature `test-support`; without the variable a
/// key costs one environment lookup and changes nothing).
#[cfg(feature = "test-support")]
fn panic_on_test_key(msg: &Msg) {
    use ratatui::crossterm::event::KeyCode;
    if let Msg::Key(k) = msg
        && let KeyCode::Char(c) = k.code
        && let Ok(want) = std::env::var("TILECUBE_TEST_PANIC_ON_KEY")
        && want.chars().eq(std::iter::once(c))
    {
        panic!("test panic on key {c:?} (TILECUBE_TEST_PANIC_ON_KEY)");
    }
}
