//! The runtime's work off the UI loop: what each [`Action`] does — read the repository, the
//! source or the runs, launch or cancel a run, copy to the clipboard — each in a task of its
//! own, through engine functions only, its result sent back as a [`Done`] message.
//!
//! Invariants: nothing here changes the console's state (the answers go through `update`
//! like every other message); nothing here waits on the UI loop; a launched run is the
//! runs registry's, never this process's.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Runtime;
use super::clipboard;
use super::msg::{Action, Done};
use super::state::{App, Browse};
use tilecube::config::Settings;
use tilecube::error_chain;
use tilecube::grid::Grid;
use tilecube::ingest::Selection;

/// How long a cancel waits for a run to stop at its next strip and commit.
pub(super) const CANCEL_WAIT: Duration = Duration::from_secs(120);

/// Read the source's lists of `years`, off the UI task, each year as it comes.
pub(super) fn spawn_lists(
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

/// Run one action off the UI loop; its result comes back as a [`Done`] message.
pub(super) fn run_action(action: Action, app: &mut App, rt: &mut Runtime) {
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
            let known = app.cube.history.clone();
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
            if let Some(source) = app.cube.source.clone() {
                spawn_lists(source, years, app.cube.grid.clone(), tx);
            }
        }
        Action::SizeTiles(tiles) => {
            let Some(source) = app.cube.source.clone() else {
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
            let Some(source) = app.cube.source.clone() else {
                return;
            };
            let years = app.cube.years.clone();
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
            let storage = rt.settings.storage();
            tokio::spawn(async move {
                let (place, plan) = &*plan;
                let r = tilecube::scaleout::PlanStatus::gather(plan, place, &cube, None, &storage)
                    .await;
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

/// Launch a run writing `tiles`: plan them (one shard) and start its worker, which reads
/// the console's config file. Returns the run's id.
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
    let worker = crate::worker::worker(
        settings.config_path.clone(),
        crate::worker::WorkerFlags {
            message,
            ..Default::default()
        },
    )?;
    Ok(tilecube::config::runs().launch(&plan, &worker).await?.id)
}
