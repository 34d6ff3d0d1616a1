//! The scale-out commands: `plan`, `write --plan … --shard …`, `merge` and
//! `status --plan`, over [`tilecube::scaleout`].
//!
//! A task's settings come from the plan (repository, branch, source, preset): the flags may
//! repeat them but not contradict them; connection settings (S3 endpoint, threads) stay the
//! task's own.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::Args;
use serde_json::json;

use super::{Choice, WriteArgs, print_report, report_plan_problems, run_ingest, selection};
use tilecube::config::{Overrides, Settings};
use tilecube::cube::WriteSession;
use tilecube::ids::new_id;
use tilecube::preset::Preset;
use tilecube::scaleout::plan::PLAN_FILE;
use tilecube::scaleout::record::{RecordFailure, Recorder, host_name};
use tilecube::scaleout::stage::plan_commits;
use tilecube::scaleout::{
    Place, PlanStatus, ShardPlan, ShardRecord, ShardState, ShardStatus, StageWriter, TaskIndex,
};

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub choice: Choice,
    /// Number of shards (array tasks) to split the jobs into.
    #[arg(long)]
    pub shards: usize,
    /// Where to save the plan: a directory, or an s3:// or gs:// prefix every task can read.
    #[arg(long)]
    pub out: String,
    /// Replace a plan already saved there.
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The plan whose shards staged their sessions.
    #[arg(long)]
    pub plan: String,
    /// The stage location the shards wrote to (`write --stage`).
    #[arg(long)]
    pub stage: String,
    /// Merge the shards that finished even if others are missing, unfinished or failed;
    /// a later merge adds those once they are re-run.
    #[arg(long)]
    pub partial: bool,
    /// Chunk references a batch of the merge holds before it lands (each batch after the
    /// first amends the same commit; default: the `commit_refs` setting, else 200000).
    #[arg(long)]
    pub commit_refs: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// Fix the work of `choice` as a plan of `shards` shards; `None` when there is nothing to
/// write (problems with the inputs are reported on stderr).
pub(crate) async fn build_plan(
    settings: &Settings,
    choice: &Choice,
    shards: usize,
) -> Result<Option<ShardPlan>> {
    let cube = settings.open_cube().await?;
    let source = settings.source()?;
    let chosen = selection(choice, &cube, &source).await?;
    let built = tilecube::scaleout::build_plan(
        &cube,
        &source,
        settings.plan_origin()?,
        &choice.years,
        &chosen,
        shards,
    )
    .await?;
    report_plan_problems(&built.found, &settings.source()?);
    if !built.found.rejected.is_empty() {
        bail!("the plan names tiles that are not in the cube (above); nothing was saved");
    }
    Ok(built.plan)
}

pub async fn plan(settings: &Settings, args: &PlanArgs) -> Result<i32> {
    if args.shards == 0 {
        bail!("--shards must be at least 1");
    }
    let place = Place::parse(&args.out, &settings.storage())
        .with_context(|| format!("--out {}", args.out))?;
    let Some(plan) = build_plan(settings, &args.choice, args.shards).await? else {
        eprintln!("nothing to plan: no tile to write (the branch already holds every one chosen)");
        return Ok(0);
    };
    plan.save(&place, args.force).await?;
    let sizes: Vec<usize> = plan.shards.iter().map(Vec::len).collect();
    let (min, max) = (
        sizes.iter().min().copied().unwrap_or(0),
        sizes.iter().max().copied().unwrap_or(0),
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "plan": plan.id,
                "saved": place.address(PLAN_FILE),
                "jobs": plan.job_count(),
                "shards": plan.shards.len(),
                "base": plan.base,
            }))?
        );
    } else {
        println!(
            "plan {}: {} tiles in {} shards of {min}–{max}, base {} of {} @ {}, saved to {}",
            plan.id,
            plan.job_count(),
            plan.shards.len(),
            plan.base,
            plan.repo,
            plan.branch,
            place.address(PLAN_FILE)
        );
        println!(
            "run it: tilecube write --plan {} --shard auto   (array tasks 0..{}; or --shard I from a loop)",
            args.out,
            plan.shards.len() - 1
        );
    }
    if settings.location()?.is_local_path() {
        eprintln!("{}", PATH_REPO_NOTE);
    }
    Ok(0)
}

/// Said when many machines would commit to a repository on a path.
const PATH_REPO_NOTE: &str = "note: the repository is a path: checkpoint commits from many machines rely on file locks \
that shared file systems (NFS, Lustre) may not honour; use an s3:// or gs:// repository, or \
`write --stage` (then only `tilecube merge` commits)";

/// The settings of a task of `plan`: the plan's repository, branch, source and preset over
/// this machine's settings (whose explicit flags may repeat the plan's but not contradict
/// them); connection settings stay this machine's, the plan's fill their gaps.
fn plan_settings(local: &Settings, flags: &Overrides, plan: &ShardPlan) -> Result<Settings> {
    for (name, given, planned) in [
        ("--repo", &flags.repo, &plan.repo),
        ("--source", &flags.source, &plan.source),
        ("--branch", &flags.branch, &plan.branch),
    ] {
        if let Some(g) = given
            && !same_location(g, planned)
        {
            bail!("{name} {g} is not the plan's ({planned}): a shard writes what its plan says");
        }
    }
    let mut s = local.clone();
    s.repo = Some(plan.repo.clone());
    s.source = Some(plan.source.clone());
    s.branch = plan.branch.clone();
    s.tile_pixels = plan.tile_pixels;
    s.preset = Preset::parse(&plan.preset, &format!("the preset of plan {}", plan.id))?;
    if let Some(given) = &local.preset_given
        && (local.preset.name != s.preset.name || !local.preset.differs_from(&s.preset).is_empty())
    {
        bail!(
            "the preset given ({given}) is not the plan's ({}): a shard writes what its plan says; leave --preset (and preset =) out",
            s.preset.name
        );
    }
    // The plan's preset is a given one: a cube laid out with another is refused.
    s.preset_given = Some(format!("the preset of plan {}", plan.id));
    let s3 = &mut s.file.s3;
    s3.endpoint_url = s3.endpoint_url.take().or(plan.s3.endpoint_url.clone());
    s3.region = s3.region.take().or(plan.s3.region.clone());
    s3.path_style = s3.path_style.or(plan.s3.path_style);
    s3.anonymous = s3.anonymous.or(plan.s3.anonymous);
    if s.file.gcs.endpoint.is_none() {
        s.file.gcs.endpoint = plan.gcs_endpoint.clone();
    }
    Ok(s)
}

/// Whether two locations name the same place: URLs compared without a trailing slash, paths
/// by their canonical form (relative ones against this directory, links resolved).
fn same_location(a: &str, b: &str) -> bool {
    let canonical = |s: &str| -> String {
        let s = s.trim_end_matches('/');
        if s.contains("://") {
            return s.to_string();
        }
        std::fs::canonicalize(s)
            .or_else(|_| std::path::absolute(s))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| s.to_string())
    };
    canonical(a) == canonical(b)
}

/// Load a plan and the settings its tasks run with.
pub(crate) async fn load_plan(
    local: &Settings,
    flags: &Overrides,
    at: &str,
) -> Result<(Place, ShardPlan, Settings)> {
    let place = Place::parse(at, &local.storage()).with_context(|| format!("--plan {at}"))?;
    let plan = ShardPlan::load(&place).await?;
    let settings = plan_settings(local, flags, &plan)?;
    Ok((place, plan, settings))
}

pub async fn write(local: &Settings, flags: &Overrides, args: &WriteArgs) -> Result<i32> {
    let at = args.plan.as_deref().unwrap_or_default();
    let (place, plan, settings) = load_plan(local, flags, at).await?;
    let task = TaskIndex::resolve(
        args.shard.as_deref().unwrap_or("auto"),
        plan.shards.len(),
        |k| std::env::var(k).ok(),
    )?;
    let shard = task.index;
    if let Some(count) = task.count
        && count != plan.shards.len()
    {
        eprintln!(
            "warning: the array has {count} tasks and plan {} has {} shards; shards without a task are not written",
            plan.id,
            plan.shards.len()
        );
    }
    let cube = settings.open_cube().await?;
    plan.check_cube(&cube)?;
    let mut jobs = plan.tile_jobs(shard, &cube.layout, &settings.source()?)?;
    super::refuse_lost_manifests(&cube, &jobs, false).await?;
    let stage = args
        .stage
        .as_deref()
        .map(|s| Place::parse(s, &settings.storage()).with_context(|| format!("--stage {s}")))
        .transpose()?
        .map(Arc::new);
    if stage.is_none() && task.scheduler.is_some() && cube.location.is_local_path() {
        eprintln!("{PATH_REPO_NOTE}");
    }
    // Checkpoint mode: tiles an earlier attempt of the plan landed are not written again, nor,
    // in a plan of the missing tiles, those another writer landed since the plan was made.
    let total = jobs.len();
    if stage.is_none() {
        let since = if plan.selection == "missing" {
            cube.history_until(&plan.base).await?
        } else {
            plan_commits(&cube, &plan).await?
        };
        let landed: BTreeSet<(i32, tilecube::grid::TileName)> = since
            .iter()
            .flat_map(|c| {
                c.written
                    .iter()
                    .flat_map(|(y, t)| t.keys().map(move |t| (*y, *t)))
            })
            .collect();
        jobs.retain(|j| !landed.contains(&(j.year, j.tile)));
    }
    let skipped = total - jobs.len();
    let attempt = new_id();
    let mode = if stage.is_some() {
        "stage"
    } else {
        "checkpoint"
    };
    let now = Utc::now();
    // Another task of this very shard that is still alive would write the same tiles twice.
    if let Ok(Some(other)) = tilecube::scaleout::ShardRecord::load(&place, shard).await
        && other.plan == plan.id
        && other.state == tilecube::scaleout::record::ShardState::Running
        && !other.is_stale(now)
    {
        eprintln!(
            "warning: shard {shard}'s record says another task is running it (host {}, pid {}, \
             updated {} s ago): two tasks of one shard write the same tiles twice; stop one \
             (its record goes stale a minute after it stops)",
            other.host,
            other.pid,
            now.signed_duration_since(other.updated)
                .num_seconds()
                .max(0)
        );
    }
    let mut recorder = Recorder::new(
        Arc::new(place),
        ShardRecord {
            plan: plan.id.clone(),
            shard,
            attempt: attempt.clone(),
            host: host_name(),
            pid: std::process::id(),
            task: task.origin.clone(),
            mode: mode.into(),
            stage: args.stage.clone(),
            state: ShardState::Running,
            started: now,
            updated: now,
            jobs: total,
            skipped,
            written: 0,
            landed: 0,
            failed: vec![],
            bytes: 0,
            threads: 0,
            queued: jobs
                .iter()
                .map(|j| tilecube::scaleout::record::tile_key(j.year, j.tile))
                .collect(),
            running: vec![],
            written_tiles: vec![],
            pixel_bytes: 0,
            commits: 0,
            error: None,
            progressed: None,
        },
    );
    recorder
        .flush(true)
        .await
        .with_context(|| format!("writing shard {shard}'s progress record next to the plan"))?;
    eprintln!(
        "shard {shard} of plan {} ({}): {}{}, {mode} mode",
        plan.id,
        task.origin,
        tilecube::text::plural(jobs.len(), "tile"),
        if skipped > 0 {
            format!(
                " ({skipped} already landed {})",
                if plan.selection == "missing" {
                    "since the plan was made"
                } else {
                    "by an earlier attempt"
                }
            )
        } else {
            String::new()
        }
    );
    if let Some(note) = settings.threads_note(args.threads) {
        eprintln!("{note}");
    }
    // From here on the record says running: whatever stops the shard is recorded in it.
    let prepared = async {
        let mut options =
            settings.write_options(args.threads, args.commit_every, args.commit_refs)?;
        if let Some(n) = args.read_ahead {
            options.read_ahead = n;
        }
        let (session, stager) = match &stage {
            Some(stage) => {
                let w = StageWriter::begin(Arc::clone(stage), &plan.id, shard, &attempt)
                    .await
                    .with_context(|| format!("staging shard {shard} in {}", stage.address("")))?;
                let session = WriteSession::open_staged(&cube, Arc::clone(&w) as _).await?;
                (session, Some(w))
            }
            None => (
                WriteSession::open_tagged(&cube, plan.tags(Some(shard), false)).await?,
                None,
            ),
        };
        if let Some(m) = &args.message {
            session.set_message(m);
        }
        anyhow::Ok((options, session, stager))
    }
    .await;
    let (options, session, stager) = match prepared {
        Ok(p) => p,
        Err(e) => {
            record_failure(&mut recorder, shard, &e).await;
            return Err(e);
        }
    };
    let run = run_ingest(
        &cube,
        Arc::clone(&session),
        jobs,
        &options,
        args.json,
        Some(recorder),
    )
    .await?;
    let report = match run.report {
        Ok(r) => r,
        Err(e) => {
            session.close().await;
            let e = anyhow::Error::from(e);
            if let Some(mut r) = run.recorder {
                record_failure(&mut r, shard, &e).await;
            }
            return Err(e);
        }
    };
    let report = &report;
    let state = if report.cancelled || run.signal != 0 {
        ShardState::Cancelled
    } else if !report.failed.is_empty() {
        ShardState::Failed
    } else {
        ShardState::Done
    };
    let failures: Vec<RecordFailure> = report
        .failed
        .iter()
        .map(|f| RecordFailure {
            year: f.year,
            tile: f.tile.to_string(),
            error: f.error.clone(),
            attempts: f.attempts,
        })
        .collect();
    if let Some(w) = &stager {
        // The staged uploads stay announced until the plan's merge, so a gc meanwhile keeps
        // them; said before the shard is recorded done, so a done shard is always announced.
        if state == ShardState::Done {
            session
                .close_staged(
                    &plan.id,
                    &format!(
                        "plan {} shard {shard} ({})",
                        plan.id,
                        tilecube::text::plural(report.written_count(), "tile")
                    ),
                )
                .await
                .with_context(|| format!("announcing shard {shard}'s staged uploads"))?;
        } else {
            session.close().await;
        }
        w.finish(state, failures).await?;
    }
    if let Some(mut r) = run.recorder {
        r.finish(state)
            .await
            .with_context(|| format!("writing shard {shard}'s final progress record"))?;
    }
    if args.json {
        let out = json!({
            "plan": plan.id,
            "shard": shard,
            "state": state.name(),
            "mode": mode,
            "skipped": skipped,
            "written": report.written,
            "failed": report.failed,
            "commits": if stager.is_some() { vec![] } else { report.commits.clone() },
            "staged": if stager.is_some() { report.commits.clone() } else { vec![] },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if stager.is_some() {
        println!(
            "shard {shard}: {} staged in {}, {} failed ({})",
            tilecube::text::plural(report.written_count(), "tile"),
            tilecube::text::plural(report.commits.len(), "part"),
            report.failed.len(),
            state.name()
        );
        for f in &report.failed {
            eprintln!("failed: {f}");
        }
    } else {
        print_report(report);
    }
    if run.signal != 0 {
        return Ok(128 + run.signal);
    }
    Ok(if state == ShardState::Done { 0 } else { 1 })
}

/// Record in the shard's record that the shard failed as a whole, and why (a record that
/// cannot be written is warned about: the error itself is what the task reports).
async fn record_failure(recorder: &mut Recorder, shard: usize, e: &anyhow::Error) {
    // Tiles landed in a cube that is not there any more (laid out again, removed) are not
    // claimed as landed.
    if e.chain().any(|c| {
        c.downcast_ref::<tilecube::cube::CubeError>()
            .is_some_and(|c| c.cube_replaced())
    }) {
        recorder.forget_landed();
    }
    if let Err(w) = recorder.fail(tilecube::anyhow_chain(e)).await {
        eprintln!(
            "warning: shard {shard}'s progress record: {}",
            tilecube::error_chain(&w)
        );
    }
}

pub async fn merge(local: &Settings, flags: &Overrides, args: &MergeArgs) -> Result<i32> {
    let (_, plan, settings) = load_plan(local, flags, &args.plan).await?;
    let stage = Place::parse(&args.stage, &settings.storage())
        .with_context(|| format!("--stage {}", args.stage))?;
    let cube = settings.open_cube().await?;
    plan.check_cube(&cube)?;
    let started = std::time::Instant::now();
    let batch = settings
        .write_options(None, None, args.commit_refs)?
        .commit_refs;
    let outcome = tilecube::scaleout::merge(&cube, &plan, &stage, args.partial, batch).await?;
    let secs = started.elapsed().as_secs_f64();
    // Every shard merged: the staged uploads are the branch's now, and no longer held back
    // from gc by their announcements.
    if outcome.omitted.is_empty()
        && let Err(e) = cube.end_staged(&plan.id).await
    {
        eprintln!(
            "warning: the staged shards of plan {} stay announced (gc keeps what they uploaded for {} days): {}",
            plan.id,
            tilecube::cube::STAGED_KEEP.as_secs() / 86_400,
            tilecube::error_chain(&e)
        );
    }
    if args.json {
        let mut v = serde_json::to_value(&outcome)?;
        v["seconds"] = json!(secs);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Some(id) = &outcome.already {
        println!(
            "plan {} was merged before, as {id} ({} tiles); nothing to do",
            plan.id, outcome.tiles
        );
    } else {
        for o in &outcome.omitted {
            eprintln!("left out: {o}");
        }
        match &outcome.snapshot {
            Some(id) => println!(
                "merged {} from {} ({} staged, {}, {}) into {} as {id} in {secs:.1} s",
                tilecube::text::plural(outcome.tiles, "tile"),
                tilecube::text::plural(outcome.shards, "shard"),
                tilecube::text::plural(outcome.parts, "part"),
                tilecube::text::plural(outcome.batches, "batch"),
                tilecube::text::plural(outcome.commits, "new commit"),
                cube.branch
            ),
            None => println!("nothing staged to merge"),
        }
    }
    Ok(0)
}

pub async fn status(local: &Settings, at: &str, stage: Option<&str>, as_json: bool) -> Result<i32> {
    let flags = Overrides::default();
    let (place, plan, settings) = load_plan(local, &flags, at).await?;
    let stage = stage
        .map(|s| Place::parse(s, &settings.storage()).with_context(|| format!("--stage {s}")))
        .transpose()?;
    let cube = settings.open_cube().await?;
    // A repository made again since the plan: its tiles say nothing of the plan's.
    plan.check_cube(&cube)?;
    let st = PlanStatus::gather(&plan, &place, &cube, stage.as_ref(), &settings.storage()).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(0);
    }
    println!(
        "plan {}: {} tiles in {} shards ({}); {} @ {} from base {}",
        st.id,
        st.jobs,
        st.shards.len(),
        st.states_line(),
        st.repo,
        st.branch,
        st.base
    );
    println!("{}", st.landed_line());
    println!("{:<64} updated", ShardStatus::HEADER);
    for s in &st.shards {
        let updated = s
            .record
            .as_ref()
            .map(|r| r.updated.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "-".into());
        println!("{:<64} {updated}", s.row());
        if let Some(p) = &s.problem {
            println!("      shard {}: {p}", s.shard);
        }
    }
    for f in &st.failed {
        println!(
            "failed: {}/{} (shard {}): {} ({})",
            f.failure.year,
            f.failure.tile,
            f.shard,
            f.failure.error,
            tilecube::text::plural(f.failure.attempts as usize, "attempt")
        );
    }
    Ok(0)
}
