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
//! - the console never owns a write: `w` launches a detached run ([`tilecube::runs`]) in a
//!   worker process of its own, and the console watches its progress record a few times a
//!   second; however the console ends — the operator's quit, a signal, the terminal gone (a
//!   dropped SSH link), a panic — runs keep going unless the operator chose to cancel them,
//!   and the terminal is restored (as far as it still exists);
//! - reopened on the same repository, the console finds the runs going and attaches to them.

mod clipboard;
mod keys;
pub mod state;
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

use state::{App, Browse, Exit};
use tilecube::config::{Settings, io_runtime};
use tilecube::cube::{Cube, Layout};
use tilecube::error_chain;
use tilecube::grid::Grid;
use tilecube::ingest::{Journal, Selection};
use update::{Action, Done, Msg};

/// How long a cancel waits for a run to stop at its next strip and commit.
const CANCEL_WAIT: Duration = Duration::from_secs(120);

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

/// The repository opened.
type Opened = Result<Cube, String>;

async fn run_async(settings: &Settings, plan: Option<WatchedPlan>) -> Result<i32> {
    let location = settings.location()?;
    let threads = settings.threads(None)?;
    // Until the repository is open, the grid and years are the preset's: the same as the
    // cube's unless it was laid out with another preset, and replaced once it is read.
    let grid = Grid::from_preset(&settings.preset, settings.tile_pixels)?;
    let years = Layout::new(&settings.preset, &grid).years;
    let mut app = App::new(
        location.to_string(),
        settings.branch.clone(),
        grid,
        years,
        threads,
    );
    app.loading = Some(format!("opening {location}"));
    app.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    app.source = settings.source().ok();
    if app.source.is_none() {
        app.status_line = "no source configured: pass --source to list and write tiles".into();
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
        let r = opening.open_cube().await;
        let _ = open_tx.send(r.map_err(|e| tilecube::anyhow_chain(&e)));
    });
    if let Some(source) = app.source.clone() {
        spawn_lists(source, app.years.clone(), app.grid.clone(), done_tx);
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
        let _ = tokio::time::timeout(CANCEL_WAIT, task).await;
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

/// Read the source's lists of `years`, off the UI task, each year as it comes.
fn spawn_lists(
    source: tilecube::source::Source,
    years: Vec<i32>,
    grid: Grid,
    tx: mpsc::UnboundedSender<Done>,
) {
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
                    Ok(Ok(cube)) => {
                        let (grid, years) = (cube.layout.grid(), cube.layout.years.clone());
                        // Years the cube gained past its preset's (`tilecube extend`): their
                        // lists are read too (the preset's years are being read already).
                        let gained: Vec<i32> =
                            years.iter().copied().filter(|y| !app.years.contains(y)).collect();
                        if let Some(source) = app.source.clone() && !gained.is_empty() {
                            spawn_lists(source, gained, grid.clone(), rt.done.clone());
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

/// Run one action off the UI loop; its result comes back as a [`Done`] message.
fn run_action(action: Action, app: &mut App, rt: &mut Runtime) {
    let tx = rt.done.clone();
    // Runs are found by their repository, whether or not it is open here yet.
    match action {
        Action::Quit => return,
        Action::ReadLog(path) => {
            tokio::task::spawn_blocking(move || {
                let r = read_log_tail(&path, LOG_LINES);
                let _ = tx.send(Done::Log(r));
            });
            return;
        }
        Action::Copy(text) => {
            // OSC 52: the terminal (local, or at the far end of SSH) puts it on its clipboard.
            use std::io::Write;
            let mut out = std::io::stdout();
            let _ = write!(out, "{}", clipboard::osc52(&text));
            let _ = out.flush();
            return;
        }
        Action::ScanRuns => {
            let repo = rt.runs_repo.clone();
            let cube = rt.cube.as_ref().map(|c| c.key()).unwrap_or_default();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(Done::Runs(tilecube::config::runs().for_repo(&repo, &cube)));
            });
            return;
        }
        Action::WatchRuns(ids) => {
            tokio::task::spawn_blocking(move || {
                let read = ids
                    .iter()
                    .filter_map(|id| tilecube::config::runs().load(id).ok())
                    .collect();
                let _ = tx.send(Done::Runs(read));
            });
            return;
        }
        Action::CancelRuns(ids) => {
            rt.cancels.push(tokio::task::spawn_blocking(move || {
                let r = ids
                    .iter()
                    .map(|id| {
                        tilecube::config::runs()
                            .cancel(id, CANCEL_WAIT)
                            .map(|run| format!("run {id}: {} ({})", run.state, run.tally()))
                    })
                    .collect::<Result<Vec<_>, _>>();
                let _ = tx.send(Done::Cancelled(r.map_err(|e| error_chain(&e))));
            }));
            return;
        }
        _ => {}
    }
    // Everything else acts on the repository; `update` asks for none of it while loading.
    let Some(cube) = rt.cube.clone() else {
        // The answer goes through `update` like every other: the runtime sets no state.
        let message = "the repository is not open yet".to_string();
        let _ = tx.send(match action {
            Action::Launch { .. } => Done::Launched(Err(message)),
            _ => Done::Error(message),
        });
        return;
    };
    match action {
        Action::Quit
        | Action::Copy(_)
        | Action::ReadLog(_)
        | Action::ScanRuns
        | Action::WatchRuns(_)
        | Action::CancelRuns(_) => {}
        Action::Launch { tiles, message } => {
            let settings = Arc::clone(&rt.settings);
            tokio::spawn(async move {
                let r = launch(&settings, tiles, message).await;
                let _ = tx.send(Done::Launched(r.map_err(|e| tilecube::anyhow_chain(&e))));
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
                    message: format!("{} changed", tilecube::text::plural(changed.len(), "tile")),
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
                    .tag(&name, &snapshot, None)
                    .await
                    .map(|done| match done {
                        tilecube::cube::Released::AlreadyThere => {
                            format!("tag {name} already names {snapshot}")
                        }
                        _ => format!("tagged {snapshot} as {name}"),
                    });
                let _ = tx.send(Done::Tagged(r.map_err(|e| error_chain(&e))));
            });
        }
        Action::LoadMap { key, width } => {
            tokio::spawn(async move {
                let k = cube.level_for_width(width);
                let r = cube
                    .read_level(key.snapshot.as_deref(), k, key.year, None)
                    .await
                    .map_err(|e| error_chain(&e));
                let _ = tx.send(Done::Map(key, r));
            });
        }
        Action::QuickLook { year, tile } => {
            tokio::spawn(async move {
                let r = cube.quicklook_fitting(year, tile, 64).await;
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
                    let history = cube.history_since(&known).await?;
                    // A layout commit since (an `extend`): the cube's years are read again.
                    let seen: std::collections::BTreeSet<&str> =
                        known.iter().map(|c| c.id.as_str()).collect();
                    let years = if history
                        .iter()
                        .any(|c| !seen.contains(c.id.as_str()) && c.changes_layout())
                    {
                        match cube.layout_at(&head).await? {
                            Some(l) if l.years != cube.layout.years => Some(l.years),
                            _ => None,
                        }
                    } else {
                        None
                    };
                    Ok::<_, tilecube::cube::CubeError>(Done::Refreshed {
                        coverage: cube.coverage_of(&head).await?,
                        history,
                        head: Some(head.to_string()),
                        tags: cube.tags().await?,
                        years,
                    })
                }
                .await;
                let _ = tx.send(r.unwrap_or_else(|e| Done::ReadFailed(error_chain(&e))));
            });
        }
        Action::ReadLists(years) => {
            if let Some(source) = app.source.clone() {
                spawn_lists(source, years, app.grid.clone(), tx);
            }
        }
        Action::SizeTiles(tiles) => {
            let Some(source) = app.source.clone() else {
                return;
            };
            tokio::spawn(async move {
                let r = tilecube::ingest::source_sizes(&source, &tiles)
                    .await
                    .map_err(|e| error_chain(&e));
                let _ = tx.send(Done::Sizes(r));
            });
        }
        Action::CheckSources => {
            let Some(source) = app.source.clone() else {
                return;
            };
            let years = app.years.clone();
            tokio::spawn(async move {
                let r = match cube.coverage().await {
                    Ok(coverage) => tilecube::ingest::check_sources(
                        &coverage,
                        &source,
                        &years,
                        &tilecube::config::digest_cache(),
                    )
                    .await
                    .map_err(|e| error_chain(&e)),
                    Err(e) => Err(error_chain(&e)),
                };
                let _ = tx.send(Done::Sources(r));
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
                let _ = tx.send(match cube.head().await {
                    Ok(head) => Done::Head(Some(head.to_string())),
                    Err(e) => Done::ReadFailed(error_chain(&e)),
                });
            });
        }
    }
}

/// Launch a run writing `tiles`: plan them (one shard) and start its worker, which reads
/// the console's config file. Returns the run's id.
/// The most of a run's log the console reads (its last lines).
const LOG_LINES: usize = 2000;

/// The last `n` lines of a run's log, read from at most its last 1 MB.
fn read_log_tail(path: &std::path::Path, n: usize) -> Result<Vec<String>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(1 << 20);
    f.seek(SeekFrom::Start(from))
        .and_then(|_| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map(|_| bytes)
        })
        .map(|bytes| {
            let text = String::from_utf8_lossy(&bytes);
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            // A read that starts mid-file starts mid-line: that first piece is dropped.
            if from > 0 && !lines.is_empty() {
                lines.remove(0);
            }
            let skip = lines.len().saturating_sub(n);
            lines.split_off(skip)
        })
        .map_err(|e| format!("{}: {e}", path.display()))
}

async fn launch(
    settings: &Settings,
    tiles: Vec<(i32, tilecube::grid::TileName)>,
    message: Option<String>,
) -> anyhow::Result<String> {
    use anyhow::Context;
    let cube = settings.open_cube().await?;
    let source = settings.source()?;
    let built = tilecube::scaleout::build_plan(
        &cube,
        &source,
        settings.plan_origin()?,
        &[],
        &Selection::Pairs(tiles),
        1,
    )
    .await?;
    if !built.found.rejected.is_empty() {
        anyhow::bail!("{}", built.found.rejected.join("; "));
    }
    let plan = built
        .plan
        .context("nothing to write: every tile chosen is already written")?;
    // The worker's command line is the CLI's, so both faces launch runs alike.
    let worker = crate::cli::runs::worker(
        settings.config_path.clone(),
        crate::cli::runs::WorkerFlags {
            message,
            ..Default::default()
        },
    )?;
    Ok(tilecube::config::runs().launch(&plan, &worker).await?.id)
}
