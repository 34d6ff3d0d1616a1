//! The headless front end: `tilecube init|write|status|log|demo`, for scripts and CI.
//!
//! It resolves settings (flags over config file over defaults), calls the engine, and prints
//! results as text or `--json`. Errors name the setting or tile at fault.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use tilecube::config::{Settings, data_dir, io_runtime, journal_dir};
use tilecube::cube::{Coverage, Cube, InitOptions, Layout, TileState, WriteSession};
use tilecube::grid::{Grid, TileName};
use tilecube::ingest::{self, Event, EventSink, Journal, Selection};
use tilecube::scaleout::record::Recorder;
use tilecube::source::{ListProblem, TileList};

mod flags;
mod pyramid;
mod runs;
mod shard;

/// tilecube: assemble analysis-ready raster datacubes in Icechunk from tiled GeoTIFFs.
#[derive(Debug, Parser)]
#[command(name = "tilecube", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: flags::GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repository and the cube's layout (no data) in one commit.
    Init {
        /// Lay out a fresh, empty cube over an existing repository (history is kept).
        #[arg(long)]
        force: bool,
    },
    /// Write tiles into the cube and commit them.
    Write(WriteArgs),
    /// Show which tiles are listed and written, per year (or a plan's progress).
    Status {
        #[arg(long)]
        json: bool,
        /// Only these years.
        #[arg(long = "year")]
        years: Vec<i32>,
        /// Show this scale-out plan's progress: per shard, tiles landed or staged, failures.
        #[arg(long)]
        plan: Option<String>,
        /// The plan's stage location (default: the one its shards' records name).
        #[arg(long, requires = "plan")]
        stage: Option<String>,
    },
    /// Fix the work of a scale-out write once: the base snapshot, the (year, tile) jobs and
    /// their split into balanced shards, saved for every task to read.
    Plan(shard::PlanArgs),
    /// Merge the staged shards of a plan into the branch as one commit.
    Merge(shard::MergeArgs),
    /// Detached runs (`write --detach`): list them, stop one, show its log.
    Runs {
        #[command(subcommand)]
        action: Option<RunsAction>,
        #[arg(long)]
        json: bool,
    },
    /// Build or refresh the overview pyramid of a cube (one written before it had one).
    Overviews(pyramid::OverviewsArgs),
    /// Draw a level of one year as a PNG coloured with the legend.
    Map(pyramid::MapArgs),
    /// Check every chunk the branch head references against the objects in storage.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Drop the branch head's references to manifests and chunk objects lost from storage,
    /// in one commit, so the branch can move again (see `verify`).
    Repair {
        #[arg(long)]
        json: bool,
    },
    /// Show the branch's commits and the tiles each wrote.
    Log {
        #[arg(long)]
        json: bool,
    },
    /// Make a GLAD-like demo source and cube under the user data dir, write it, show it.
    Demo {
        /// Where to put the demo (default: the user data dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Tile side in pixels of the demo tiles.
        #[arg(long, default_value_t = 400)]
        pixels: u64,
    },
    /// Measure ingest speed and memory against the hardware's floor (full-size tiles).
    #[cfg(feature = "bench")]
    Bench(crate::bench::BenchArgs),
    /// Print a completion script for a shell: `tilecube completions bash > /etc/bash_completion.d/tilecube`
    /// (or `source <(tilecube completions bash)`; zsh and fish alike).
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The operator console (also what `tilecube` alone opens on a terminal).
    Tui {
        /// Watch this scale-out plan's shards (its repository and branch are opened).
        #[arg(long)]
        plan: Option<String>,
    },
}

/// Which tiles to write (or plan).
#[derive(Debug, Args, Default)]
pub struct Choice {
    /// Year to write (repeatable; default: every year of the cube).
    #[arg(long = "year")]
    pub years: Vec<i32>,
    /// Tiles to write, comma separated (e.g. 70N_180W,60N_170W).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["all", "missing"])]
    pub tiles: Vec<String>,
    /// Every tile in the year's list.
    #[arg(long, conflicts_with = "missing")]
    pub all: bool,
    /// Listed tiles the branch head does not hold yet.
    #[arg(long, conflicts_with = "failed")]
    pub missing: bool,
    /// The tiles of the failure journal (tiles that failed before).
    #[arg(long, conflicts_with_all = ["all", "tiles"])]
    pub failed: bool,
}

/// What to do with runs.
#[derive(Debug, Subcommand)]
pub enum RunsAction {
    /// Stop a run: it stops at its next strip, its finished tiles committed.
    Cancel { id: String },
    /// Print a run's log.
    Log { id: String },
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub choice: Choice,
    /// Write one shard of a plan made by `tilecube plan` (a directory or s3:// / gs://
    /// location) instead of choosing tiles.
    #[arg(long, conflicts_with_all = ["tiles", "all", "missing", "failed", "year"])]
    pub plan: Option<String>,
    /// The plan's shard to write: its number, or `auto` (the default) from the scheduler's
    /// array task variables (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, …).
    #[arg(long, requires = "plan")]
    pub shard: Option<String>,
    /// Stage the shard's session under this location instead of committing; `tilecube merge`
    /// then lands every shard in one commit.
    #[arg(long, requires = "plan")]
    pub stage: Option<String>,
    /// Run the write in a worker process of its own that outlives this terminal (see
    /// `tilecube runs`).
    #[arg(long, conflicts_with = "plan")]
    pub detach: bool,
    /// Reader/encoder threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Commit after this many finished tiles (default: config, else only at the end).
    #[arg(long)]
    pub commit_every: Option<usize>,
    /// Commit whenever the session holds this many chunk references, so memory stays
    /// bounded however long the run (default: config, else 200000; 0: no limit).
    #[arg(long)]
    pub commit_refs: Option<usize>,
    /// Windows each worker fetches ahead of its decoding from a remote tile, so network
    /// and CPU overlap (default: config, else 2; 0: GDAL fetches on demand).
    #[arg(long)]
    pub read_ahead: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run the CLI; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    #[cfg(feature = "bench")]
    if let Some(Command::Bench(args)) = &cli.command {
        crate::bench::run(args)?;
        return Ok(0);
    }
    if let Some(Command::Completions { shell }) = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut cmd, "tilecube", &mut std::io::stdout());
        return Ok(0);
    }
    let overrides = cli.global.overrides();
    let settings = Settings::resolve(&overrides)?;
    if let Some(Command::Merge(_)) = &cli.command {
        tilecube::cube::limit_allocator_arenas();
    }
    let rt = io_runtime()?;
    match cli.command {
        Some(Command::Init { force }) => rt.block_on(init(&settings, force)),
        Some(Command::Write(args)) if args.detach => rt.block_on(runs::detach(&settings, &args)),
        Some(Command::Runs { action, json }) => match action {
            None => runs::list(json),
            Some(RunsAction::Cancel { id }) => runs::cancel(&id),
            Some(RunsAction::Log { id }) => runs::log(&id),
        },
        Some(Command::Write(args)) if args.plan.is_some() => {
            rt.block_on(shard::write(&settings, &overrides, &args))
        }
        Some(Command::Write(args)) => rt.block_on(write(&settings, &args)),
        Some(Command::Status {
            json,
            plan: Some(plan),
            stage,
            ..
        }) => rt.block_on(shard::status(&settings, &plan, stage.as_deref(), json)),
        Some(Command::Status { json, years, .. }) => rt.block_on(status(&settings, json, &years)),
        Some(Command::Plan(args)) => rt.block_on(shard::plan(&settings, &args)),
        Some(Command::Merge(args)) => rt.block_on(shard::merge(&settings, &overrides, &args)),
        Some(Command::Log { json }) => rt.block_on(log(&settings, json)),
        Some(Command::Verify { json }) => rt.block_on(verify(&settings, json)),
        Some(Command::Repair { json }) => rt.block_on(repair(&settings, json)),
        Some(Command::Overviews(args)) => rt.block_on(pyramid::overviews(&settings, &args)),
        Some(Command::Map(args)) => rt.block_on(pyramid::map(&settings, &args)),
        Some(Command::Demo { dir, pixels }) => rt.block_on(demo(&settings, dir, pixels)),
        #[cfg(feature = "bench")]
        Some(Command::Bench(_)) => Ok(0),
        Some(Command::Completions { .. }) => Ok(0),
        Some(Command::Tui { plan: None }) => {
            drop(rt);
            crate::tui::run(&settings)
        }
        Some(Command::Tui { plan: Some(at) }) => {
            let (place, plan, settings) =
                rt.block_on(shard::load_plan(&settings, &overrides, &at))?;
            drop(rt);
            crate::tui::run_watching(&settings, Arc::new((place, plan)))
        }
        None => {
            use std::io::IsTerminal;
            if settings.repo.is_some() && std::io::stdout().is_terminal() {
                drop(rt);
                crate::tui::run(&settings)
            } else if settings.repo.is_some() {
                rt.block_on(status(&settings, false, &[]))
            } else {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                cmd.print_help()?;
                Ok(0)
            }
        }
    }
}

async fn init(settings: &Settings, force: bool) -> Result<i32> {
    let grid = Grid::from_preset(&settings.preset, settings.tile_pixels)?;
    let layout = Layout::new(&settings.preset, &grid);
    let location = settings.location()?;
    let started = std::time::Instant::now();
    let cube = Cube::init(
        location,
        layout,
        &InitOptions {
            spec_version: settings.spec_version,
            force,
            branch: settings.branch.clone(),
        },
    )
    .await?;
    let [t, h, w] = cube.layout.shape();
    println!(
        "initialized {} ({}): {}(year={t}, y={h}, x={w}) chunks {:?}, in {:.2} s",
        cube.location,
        cube.head().await?,
        cube.layout.variable,
        cube.layout.chunk_shape(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

pub(crate) fn selection(args: &Choice, repo_key: &str) -> Result<Selection> {
    if args.failed {
        let journal =
            Journal::load_or_report(&journal_dir(), repo_key, |w| eprintln!("warning: {w}"));
        return Ok(Selection::Pairs(
            journal.failed.iter().map(|e| (e.year, e.tile)).collect(),
        ));
    }
    if !args.tiles.is_empty() {
        let tiles = args
            .tiles
            .iter()
            .map(|t| t.trim().parse::<TileName>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Selection::Tiles(tiles))
    } else if args.all {
        Ok(Selection::All)
    } else if args.missing {
        Ok(Selection::Missing)
    } else {
        bail!("say which tiles to write: --tiles A,B, --all, --missing or --failed")
    }
}

/// Refuse to write over a head whose manifests are lost from storage: no commit could land.
pub(crate) async fn refuse_lost_manifests(cube: &Cube) -> Result<()> {
    let lost = cube.lost_manifests(&cube.head().await?).await?;
    if let Some(m) = lost.first() {
        bail!(
            "{} manifest{} of {} @ {} {} lost from storage (first: {} of {}, holding {}): no commit can land over it; {REPAIR_HINT}",
            lost.len(),
            if lost.len() == 1 { "" } else { "s" },
            cube.location,
            cube.branch,
            if lost.len() == 1 { "is" } else { "are" },
            m.manifest,
            m.array,
            m.tiles.join(" ")
        );
    }
    Ok(())
}

async fn write(settings: &Settings, args: &WriteArgs) -> Result<i32> {
    let cube = settings.open_cube().await?;
    refuse_lost_manifests(&cube).await?;
    let selection = selection(&args.choice, &cube.key())?;
    let source = settings.source()?;
    let coverage = match selection {
        Selection::Missing => Some(cube.coverage().await?),
        _ => None,
    };
    let plan = ingest::plan(
        &cube,
        &source,
        &args.choice.years,
        &selection,
        coverage.as_ref(),
    )
    .await?;
    report_plan_problems(&plan, &source);
    if let Some(note) = settings.threads_note(args.threads) {
        eprintln!("{note}");
    }
    let mut options = settings.write_options(args.threads, args.commit_every, args.commit_refs)?;
    if let Some(n) = args.read_ahead {
        options.read_ahead = n;
    }
    let session = WriteSession::open(&cube).await?;
    let run = run_ingest(&cube, session, plan.jobs.clone(), &options, args.json, None).await?;
    let report = &run.report?;
    if args.json {
        let out = json!({
            "written": report.written,
            "failed": report.failed,
            "commits": report.commits,
            "rejected": plan.rejected,
            "list_problems": plan.list_problems.iter()
                .map(|(y, p)| json!({"year": y, "line": p.line, "text": p.text, "reason": p.reason}))
                .collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_report(report);
    }
    if run.signal != 0 {
        return Ok(128 + run.signal);
    }
    let left_out = plan.list_problems.len();
    if left_out > 0 {
        eprintln!(
            "{left_out} line{} of the tile lists {} left out (above)",
            if left_out == 1 { "" } else { "s" },
            if left_out == 1 { "was" } else { "were" }
        );
    }
    let listed_none = matches!(selection, Selection::All | Selection::Missing)
        && plan.listed == 0
        && plan.missing_lists.len() < cube.layout.years.len();
    let nothing = plan.jobs.is_empty() && (left_out > 0 || listed_none);
    if nothing {
        eprintln!(
            "error: nothing was written: {}",
            if left_out > 0 {
                "the tile lists' lines were left out (above); fix the lists"
            } else {
                "the tile lists name no tile"
            }
        );
    }
    let bad = !report.failed.is_empty() || !plan.rejected.is_empty() || report.cancelled || nothing;
    Ok(if bad { 1 } else { 0 })
}

/// What was wrong with the inputs that chose the tiles, on stderr.
pub(crate) fn report_plan_problems(plan: &ingest::Plan, source: &tilecube::source::Source) {
    for (year, path) in &plan.missing_lists {
        eprintln!("warning: no tile list for {year} ({path}): the year is left out");
    }
    for (year, p) in &plan.list_problems {
        eprintln!("warning: tile list {}: {p}", source.list_location(*year));
    }
    for r in &plan.rejected {
        eprintln!("error: {r}");
    }
}

/// The report of a write, for people.
pub(crate) fn print_report(report: &ingest::IngestReport) {
    println!(
        "{} tiles written, {} failed, {} commits{}",
        report.written_count(),
        report.failed.len(),
        report.commits.len(),
        report
            .commits
            .last()
            .map(|c| format!(" (head {c})"))
            .unwrap_or_default()
    );
    for f in &report.failed {
        eprintln!("failed: {f}");
    }
}

/// An ingest run from the command line, and the signal that stopped it (0 if none).
pub(crate) struct IngestRun {
    /// The ingest's report, or what stopped it as a whole.
    pub report: Result<ingest::IngestReport, tilecube::cube::CubeError>,
    pub signal: i32,
    /// The shard's record keeper, handed back for its final word.
    pub recorder: Option<Recorder>,
}

/// Run an ingest on `session` with progress on stderr: one live line on a terminal, a line
/// per tile on a pipe, in a log or with `json`. SIGINT, SIGTERM and SIGHUP (a dropped SSH
/// session, `scancel`) stop new strips from starting; tiles that finished are committed (or
/// staged). A shard's `recorder` keeps its progress record from the same events.
pub(crate) async fn run_ingest(
    cube: &Cube,
    session: Arc<WriteSession>,
    jobs: Vec<ingest::TileJob>,
    options: &ingest::IngestOptions,
    json: bool,
    recorder: Option<Recorder>,
) -> Result<IngestRun> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let live = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let printer = tokio::spawn(async move {
        let mut recorder = recorder;
        let mut line = crate::progress::Line::default();
        // Often enough that a record changed since its last write goes out within its
        // interval (flush writes only when due).
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            let urgent = tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    if live {
                        line.on_event(&ev, &mut std::io::stderr().lock());
                    } else {
                        print_event(&ev);
                    }
                    recorder.as_mut().map(|r| r.on_event(&ev)).unwrap_or(false)
                }
                _ = tick.tick() => false,
            };
            if let Some(r) = recorder.as_mut()
                && let Err(e) = r.flush(urgent).await
            {
                eprintln!("warning: shard record: {}", tilecube::error_chain(&e));
            }
        }
        recorder
    });
    let cancel = Arc::new(AtomicBool::new(false));
    let signalled = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let watcher = {
        use tokio::signal::unix::{SignalKind, signal};
        let (cancel, signalled) = (Arc::clone(&cancel), Arc::clone(&signalled));
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            let n = tokio::select! {
                _ = int.recv() => libc::SIGINT,
                _ = term.recv() => libc::SIGTERM,
                _ = hup.recv() => libc::SIGHUP,
            };
            eprintln!("signal {n}: stopping; tiles that finish are committed");
            signalled.store(n, std::sync::atomic::Ordering::SeqCst);
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    // The failure journal is kept from the ingest's own events.
    let events = EventSink::new(tx).journaled(journal_dir(), &cube.key());
    let report = ingest::ingest_into(&session, jobs, options, events, cancel).await;
    watcher.abort();
    let recorder = printer.await.ok().flatten();
    Ok(IngestRun {
        report,
        signal: signalled.load(std::sync::atomic::Ordering::SeqCst),
        recorder,
    })
}

fn print_event(ev: &Event) {
    if let Some(line) = crate::progress::event_line(ev) {
        eprintln!("{line}");
    }
}

/// The state of one tile for display.
fn tile_state_name(state: Option<&TileState>, listed: Option<bool>) -> &'static str {
    match (state, listed) {
        (Some(TileState::Written { .. }), _) => "written",
        (Some(TileState::Incomplete { .. }), _) => "incomplete",
        (Some(TileState::Unrecorded { .. }), _) => "unrecorded",
        (None, Some(true)) => "listed",
        (None, Some(false)) => "not_listed",
        (None, None) => "not_written",
    }
}

fn glyph(name: &str) -> char {
    match name {
        "written" => '#',
        "incomplete" | "unrecorded" => '?',
        "listed" => 'o',
        _ => '.',
    }
}

async fn status(settings: &Settings, as_json: bool, years: &[i32]) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let head_id = cube.head().await?;
    let coverage: Coverage = cube.coverage_of(&head_id).await?;
    let grid = cube.layout.grid();
    let source = settings.source().ok();
    if let Some(y) = years.iter().find(|y| !cube.layout.years.contains(y)) {
        bail!(
            "--year {y}: year {y} is not in the cube (years: {:?})",
            cube.layout.years
        );
    }
    let years: Vec<i32> = if years.is_empty() {
        cube.layout.years.clone()
    } else {
        years.to_vec()
    };
    let mut lists: BTreeMap<i32, TileList> = BTreeMap::new();
    let mut problems: Vec<(i32, ListProblem)> = Vec::new();
    // Years whose list is not there: shown as "no list".
    let mut no_list: BTreeMap<i32, String> = BTreeMap::new();
    if let Some(src) = &source {
        for &y in &years {
            match src.tile_list(y, &grid).await {
                Ok(l) => {
                    problems.extend(l.problems.iter().cloned().map(|p| (y, p)));
                    lists.insert(y, l);
                }
                Err(tilecube::source::SourceError::NoList { path, .. }) => {
                    no_list.insert(y, path);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let head = head_id.to_string();
    // Manifests lost from storage: their tiles show as `?` (one listing, O(manifests)).
    let lost = cube.lost_manifests(&head_id).await?;
    let lost_tiles: std::collections::BTreeSet<(i32, TileName)> = lost
        .iter()
        .flat_map(|m| m.level0_tiles.iter().copied())
        .collect();
    let journal =
        Journal::load_or_report(&journal_dir(), &cube.key(), |w| eprintln!("warning: {w}"));
    let failed: BTreeMap<(i32, TileName), &tilecube::ingest::JournalEntry> = journal
        .by_tile()
        .into_iter()
        .filter(|((y, t), _)| years.contains(y) && !coverage.is_written(*y, *t))
        .collect();
    if as_json {
        let mut out = serde_json::Map::new();
        for &y in &years {
            let list = lists.get(&y);
            let mut tiles = serde_json::Map::new();
            for t in grid.tiles() {
                let mut name = tile_state_name(coverage.state(y, t), list.map(|l| l.contains(t)));
                if failed.contains_key(&(y, t)) {
                    name = "failed";
                }
                if lost_tiles.contains(&(y, t)) {
                    name = "lost_manifest";
                }
                if name != "not_listed" && name != "not_written" {
                    tiles.insert(t.to_string(), json!(name));
                }
            }
            out.insert(
                y.to_string(),
                json!({
                    "listed": list.map(|l| l.tiles.len()),
                    "no_list": no_list.get(&y),
                    "written": coverage.written_count(y),
                    "tiles": tiles,
                }),
            );
        }
        let doc = json!({
            "repo": cube.location.to_string(),
            "branch": cube.branch,
            "head": head,
            "years": out,
            "list_problems": problems.iter()
                .map(|(y, p)| json!({"year": y, "line": p.line, "text": p.text, "reason": p.reason}))
                .collect::<Vec<_>>(),
            "failed": failed.values().collect::<Vec<_>>(),
            "lost_manifests": lost,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(if lost.is_empty() { 0 } else { 1 });
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} @ {} ({head})  legend: # written  o listed  . no tile  ! failed  ? inconsistent",
        cube.location, cube.branch
    )?;
    for &y in &years {
        let list = lists.get(&y);
        let listed = match (list, no_list.get(&y)) {
            (Some(l), _) => format!("{} listed", l.tiles.len()),
            (None, Some(path)) => format!("no list ({path})"),
            (None, None) => "? listed".into(),
        };
        writeln!(
            out,
            "\n{y}: {} written / {listed}",
            coverage.written_count(y)
        )?;
        // Column labels every 6 columns.
        let mut header = String::from("     ");
        for c in 0..grid.columns {
            if c % 6 == 0 {
                let t = grid.tile_at(tilecube::grid::Cell { col: c, row: 0 });
                let lon = t.to_string();
                let label = &lon[4..];
                header.push_str(&format!("{label:<6}"));
            }
        }
        writeln!(out, "{}", header.trim_end())?;
        for r in 0..grid.rows {
            let row_tile = grid.tile_at(tilecube::grid::Cell { col: 0, row: r });
            let lat = &row_tile.to_string()[..3];
            let mut line = format!("{lat}  ");
            for c in 0..grid.columns {
                let t = grid.tile_at(tilecube::grid::Cell { col: c, row: r });
                line.push(if lost_tiles.contains(&(y, t)) {
                    '?'
                } else if failed.contains_key(&(y, t)) {
                    '!'
                } else {
                    glyph(tile_state_name(
                        coverage.state(y, t),
                        list.map(|l| l.contains(t)),
                    ))
                });
            }
            writeln!(out, "{line}")?;
        }
    }
    for (y, p) in &problems {
        writeln!(out, "warning: tile list {y}: {p}")?;
    }
    for e in failed.values() {
        writeln!(
            out,
            "failed: {}/{}: {} ({} attempts, {})",
            e.year,
            e.tile,
            e.reason,
            e.attempts,
            e.time.format("%Y-%m-%d %H:%M:%S UTC")
        )?;
    }
    for m in &lost {
        writeln!(
            out,
            "lost manifest: {m} is not in storage: its chunks cannot be read"
        )?;
    }
    if !lost.is_empty() {
        writeln!(out, "{REPAIR_HINT}")?;
        return Ok(1);
    }
    Ok(0)
}

async fn repair(settings: &Settings, as_json: bool) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let report = cube
        .repair()
        .await
        .with_context(|| format!("repairing {} @ {}", cube.location, cube.branch))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    let Some(id) = &report.snapshot else {
        println!("nothing to repair: every manifest and chunk the head references is in storage");
        return Ok(0);
    };
    for m in &report.manifests {
        println!("dropped lost manifest {m}");
    }
    for (at, n) in &report.chunks {
        println!("dropped {n} references to lost chunk objects of {at}");
    }
    println!(
        "committed {id}; now `tilecube write --missing` writes the tiles that lost chunks (shown as ?) again, \
         and `tilecube overviews` rebuilds the levels"
    );
    Ok(0)
}

/// How to get back from lost objects, said by `verify` and `status`.
const REPAIR_HINT: &str = "to recover: `tilecube repair` drops the references to lost objects in one commit \
(the tiles they held then show as `?`), `tilecube write --missing` writes those tiles again, and \
`tilecube overviews` rebuilds the levels";

async fn verify(settings: &Settings, as_json: bool) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let v = cube.verify().await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} manifests and {} chunk references of {} @ {} (every level) checked against {} stored chunk objects",
            v.manifests, v.references, cube.location, cube.branch, v.objects
        );
        for m in &v.lost_manifests {
            println!("lost manifest: {m} is not in storage");
        }
        for (tile, n) in &v.missing {
            println!("missing: {tile}: {n} chunk objects are not in storage");
        }
        if v.is_ok() {
            println!("ok");
        } else {
            println!("{REPAIR_HINT}");
        }
    }
    Ok(if v.is_ok() { 0 } else { 1 })
}

async fn log(settings: &Settings, as_json: bool) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let history = cube.history().await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&history)?);
        return Ok(0);
    }
    for c in &history {
        let local = c.time.with_timezone(&chrono::Local);
        let tiles = if c.tile_count() > 0 {
            format!("  [{}]", c.tiles_summary(6))
        } else {
            String::new()
        };
        println!(
            "{}  {}  {}{tiles}",
            c.id,
            local.format("%Y-%m-%d %H:%M:%S"),
            c.message
        );
    }
    Ok(0)
}

/// The mark the demo leaves in the source it made.
const DEMO_MARK: &str = ".tilecube-demo";

/// Make sure the demo writes only what it owns: it writes `root/source` (tiles and lists) and
/// `root/cube`, so each must be new, empty, or an earlier demo's (its source carries the
/// demo's mark, or is exactly what an earlier demo wrote). Anything else there is refused by
/// name, so an operator's tiles, lists and cube are never overwritten; other files in `root`
/// are not the demo's business. Then the source is marked as the demo's.
fn claim_demo_dir(root: &std::path::Path, grid: &Grid, years: &[i32]) -> Result<()> {
    let source = root.join("source");
    let cube = root.join("cube");
    let holds_anything =
        |dir: &std::path::Path| std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    let ours =
        source.join(DEMO_MARK).exists() || tilecube::demo::looks_made_by_demo(&source, grid, years);
    if !ours {
        for dir in [&source, &cube] {
            if dir.exists() && (!dir.is_dir() || holds_anything(dir)) {
                bail!(
                    "demo: {} is not the demo's (no earlier demo made it): the demo writes its tiles, lists and cube \
                     at {} and {}, and would overwrite what is there; choose a new or empty --dir",
                    dir.display(),
                    source.display(),
                    cube.display()
                );
            }
        }
    }
    std::fs::create_dir_all(&source)
        .map_err(|e| anyhow::anyhow!("demo: making {}: {e}", source.display()))?;
    std::fs::write(
        source.join(DEMO_MARK),
        "made by `tilecube demo`: its tiles and lists are synthetic\n",
    )
    .map_err(|e| anyhow::anyhow!("demo: marking {}: {e}", source.display()))?;
    Ok(())
}

async fn demo(settings: &Settings, dir: Option<PathBuf>, pixels: u64) -> Result<i32> {
    let root = dir.unwrap_or_else(|| data_dir().join("demo"));
    let source_dir = root.join("source");
    let repo_dir = root.join("cube");
    let grid = Grid::from_preset(&settings.preset, Some(pixels))?;
    let years = settings.preset.years.all();
    claim_demo_dir(&root, &grid, &years)?;
    eprintln!("making a GLAD-like source in {} ...", source_dir.display());
    let per_year = {
        let (s, g, y) = (source_dir.clone(), grid.clone(), years.clone());
        tokio::task::spawn_blocking(move || tilecube::demo::make_source(&s, &g, &y)).await??
    };
    eprintln!("{per_year} land tiles per year, {} years", years.len());
    let mut demo_settings = settings.clone();
    demo_settings.repo = Some(repo_dir.display().to_string());
    demo_settings.source = Some(source_dir.display().to_string());
    demo_settings.tile_pixels = Some(pixels);
    let location = demo_settings.location()?;
    if Cube::open(location.clone(), &demo_settings.branch)
        .await
        .is_err()
    {
        init(&demo_settings, false).await?;
    }
    let args = WriteArgs {
        choice: Choice {
            missing: true,
            ..Choice::default()
        },
        plan: None,
        shard: None,
        stage: None,
        detach: false,
        threads: None,
        commit_every: Some(100),
        commit_refs: None,
        read_ahead: None,
        json: false,
    };
    let code = write(&demo_settings, &args).await?;
    {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
            let s = demo_settings.clone();
            // The console runs its own runtime: leave this one's context for it.
            return tokio::task::spawn_blocking(move || crate::tui::run(&s)).await?;
        }
    }
    status(&demo_settings, false, &[]).await?;
    eprintln!(
        "demo cube: {}\n  try: tilecube --repo {} --source {} log",
        repo_dir.display(),
        repo_dir.display(),
        source_dir.display()
    );
    Ok(code)
}
