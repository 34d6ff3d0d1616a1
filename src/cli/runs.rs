//! Detached runs from the command line: `write --detach` launches a worker of its own, and
//! `tilecube runs [cancel ID | log ID]` lists, stops and shows them (over [`tilecube::runs`]).
//! The worker's command line is [`crate::worker`]'s, as the console's launches are.

use std::time::Duration;

use anyhow::{Context, Result};

use super::WriteArgs;
use super::shard::build_plan;
use tilecube::config::Settings;

/// How long `runs cancel` waits for the worker to stop at its next strip and commit.
const CANCEL_WAIT: Duration = Duration::from_secs(120);

/// `write --detach`: plan the tiles now, then hand the plan to a worker process in a
/// session of its own (immune to this terminal's hang-up), logging to the run's directory.
pub async fn detach(settings: &Settings, args: &WriteArgs) -> Result<i32> {
    let Some(plan) = build_plan(settings, &args.choice, 1).await? else {
        eprintln!("nothing to write: the branch already holds every tile chosen");
        return Ok(0);
    };
    let worker = crate::worker::worker(
        settings.config_path.clone(),
        crate::worker::WorkerFlags {
            threads: args.threads,
            commit_every: args.commit_every,
            commit_refs: args.commit_refs,
            read_ahead: args.read_ahead,
            message: args.message.clone(),
        },
    )?;
    let info = tilecube::config::runs().launch(&plan, &worker).await?;
    let id = &info.id;
    println!(
        "run {id}: {}, worker pid {}, log {}",
        tilecube::text::plural(plan.job_count(), "tile"),
        info.pid,
        tilecube::config::runs().log_path(id).display()
    );
    println!("  watch: tilecube runs    stop: tilecube runs cancel {id}");
    Ok(0)
}

/// `tilecube runs`: every run, newest first.
pub fn list(as_json: bool) -> Result<i32> {
    let all = tilecube::config::runs().list();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    if all.is_empty() {
        println!("no runs (start one with `tilecube write --detach …`)");
        return Ok(0);
    }
    let dir = tilecube::config::runs_dir();
    println!(
        "runs launched from this machine as this user, of every repository (their plans and logs under {}/ID):",
        dir.display()
    );
    println!(
        "{:<12}  {:<9}  {:>7}  {:>7}  {:>6}  {:>6}  {:<19}  repository",
        "id", "state", "written", "landed", "failed", "of", "started"
    );
    let now = chrono::Utc::now();
    for r in &all {
        let t = r.tally();
        println!(
            "{:<12}  {:<9}  {:>7}  {:>7}  {:>6}  {:>6}  {:<19}  {}",
            r.info.id,
            r.state.to_string(),
            t.written,
            t.landed,
            t.failed,
            t.total,
            r.info
                .started
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            r.info.repo,
        );
        if let Some(note) = r.stall_note(now) {
            println!(
                "{:<12}  {note}: its worker (pid {}) is alive; `tilecube runs log {}` shows its last words",
                "", r.info.pid, r.info.id
            );
        }
        if let Some(reason) = r.stop_reason() {
            println!("{:<12}  stopped: {reason}", "");
        }
    }
    Ok(0)
}

/// `tilecube runs cancel ID`.
pub fn cancel(id: &str) -> Result<i32> {
    let run = tilecube::config::runs().cancel(id, CANCEL_WAIT)?;
    println!("run {id}: {} ({})", run.state, run.tally());
    Ok(0)
}

/// `tilecube runs log ID`.
pub fn log(id: &str) -> Result<i32> {
    let run = tilecube::config::runs().load(id)?;
    let text = std::fs::read_to_string(&run.log)
        .with_context(|| format!("run {id}: reading {}", run.log.display()))?;
    print!("{text}");
    Ok(0)
}
