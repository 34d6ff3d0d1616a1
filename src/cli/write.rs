//! `tilecube write` and what every write of the command line shares: the tiles chosen,
//! the ingest run with its progress on stderr and its signals, the report.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use serde_json::json;

use tilecube::config::{Settings, journal_dir};
use tilecube::cube::{Cube, WriteSession};
use tilecube::grid::TileName;
use tilecube::ingest::{self, Event, EventSink, Journal, Selection};
use tilecube::scaleout::record::Recorder;
use tilecube::source::Source;

use super::{Choice, REPAIR_HINT, WriteArgs};

/// The tiles `args` choose; `--changed` compares the written tiles' sources with what
/// their writes recorded (one listing or a lookup per tile).
pub(crate) async fn selection(args: &Choice, cube: &Cube, source: &Source) -> Result<Selection> {
    if args.changed {
        let years = if args.years.is_empty() {
            cube.layout.years.clone()
        } else {
            args.years.clone()
        };
        let coverage = cube.coverage().await?;
        let check =
            ingest::check_sources(&coverage, source, &years, &tilecube::config::digest_cache())
                .await?;
        if check.changed.is_empty() {
            eprintln!(
                "no written tile's source changed since it was written ({} compared{})",
                check.compared,
                if check.unknown.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} written before sources were recorded",
                        check.unknown.len()
                    )
                }
            );
        }
        return Ok(Selection::Pairs(check.changed.into_iter().collect()));
    }
    let repo_key = &cube.key();
    if args.failed {
        let journal =
            Journal::load_or_report(&journal_dir(), repo_key, |w| eprintln!("warning: {w}"));
        if journal.failed.is_empty() {
            eprintln!("the failure journal of this cube holds no tile: nothing to retry");
        }
        return Ok(Selection::Pairs(
            journal.failed.iter().map(|e| (e.year, e.tile)).collect(),
        ));
    }
    if !args.tiles.is_empty() {
        let mut tiles = Vec::new();
        for t in &args.tiles {
            let tile = t.trim().parse::<TileName>()?;
            // A tile named twice is written once.
            if !tiles.contains(&tile) {
                tiles.push(tile);
            }
        }
        Ok(Selection::Tiles(tiles))
    } else if args.all {
        Ok(Selection::All)
    } else if args.missing {
        Ok(Selection::Missing)
    } else {
        bail!("say which tiles to write: --tiles A,B, --all, --missing, --failed or --changed")
    }
}

/// Refuse to write tiles whose commit would read a manifest lost from storage: it could not
/// land. Only the manifests the tiles' commit reads are looked up (the cost follows the
/// tiles), or, with `whole` (`--missing`, which reads the whole cube's coverage anyway and
/// would not see the tiles of a lost manifest as missing), every manifest of the head.
pub(crate) async fn refuse_lost_manifests(
    cube: &Cube,
    jobs: &[ingest::TileJob],
    whole: bool,
) -> Result<()> {
    let head = cube.head().await?;
    let lost = if whole {
        cube.lost_manifests(&head).await?
    } else {
        let grid = cube.layout.grid();
        let tiles: Vec<_> = jobs
            .iter()
            .filter_map(|j| grid.cell(j.tile).ok().map(|cell| (j.year_index, cell)))
            .collect();
        if tiles.is_empty() {
            return Ok(());
        }
        cube.lost_manifests_of_tiles(&head, &tiles).await?
    };
    if let Some(m) = lost.first() {
        // Years of the write no lost manifest belongs to: written now without the others.
        let lost_years: std::collections::BTreeSet<i32> =
            lost.iter().flat_map(|m| m.years.iter().copied()).collect();
        let asked: std::collections::BTreeSet<i32> = jobs.iter().map(|j| j.year).collect();
        let clear: Vec<i32> = asked.difference(&lost_years).copied().collect();
        let leave_out = if !lost_years.is_empty() && !clear.is_empty() {
            format!(
                "; only year{} {} {} affected: leave {} out to write the others now ({})",
                if lost_years.len() == 1 { "" } else { "s" },
                lost_years
                    .iter()
                    .map(|y| y.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if lost_years.len() == 1 { "is" } else { "are" },
                if lost_years.len() == 1 { "it" } else { "them" },
                clear
                    .iter()
                    .map(|y| format!("--year {y}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        } else {
            String::new()
        };
        bail!(
            "{} manifest{} of {} @ {} {} lost from storage (first: {} of {}, holding {}): no commit of these tiles can land over it{leave_out}; {REPAIR_HINT}",
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

pub(crate) async fn write(settings: &Settings, args: &WriteArgs) -> Result<i32> {
    let cube = settings.open_cube().await?;
    if let Some(y) = args
        .choice
        .years
        .iter()
        .find(|y| !cube.layout.years.contains(y))
    {
        bail!(
            "--year {y}: year {y} is not in the cube (years: {:?}); `tilecube extend --year {y}` appends a year after the last",
            cube.layout.years
        );
    }
    let source = settings.source()?;
    let selection = selection(&args.choice, &cube, &source).await?;
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
    refuse_lost_manifests(&cube, &plan.jobs, matches!(selection, Selection::Missing)).await?;
    if let Some(note) = settings.threads_note(args.threads) {
        eprintln!("{note}");
    }
    let mut options = settings.write_options(args.threads, args.commit_every, args.commit_refs)?;
    if let Some(n) = args.read_ahead {
        options.read_ahead = n;
    }
    let session = WriteSession::open(&cube).await?;
    if let Some(m) = &args.message {
        session.set_message(m);
    }
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
        "{} written, {} failed, {}{}",
        tilecube::text::plural(report.written_count(), "tile"),
        report.failed.len(),
        tilecube::text::plural(report.commits.len(), "commit"),
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
    // A staged shard keeps its announcement until the plan's merge (its caller turns it
    // into a staged one); any other write is done with it.
    if !session.is_staged() {
        session.close().await;
    }
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
