//! Detached runs from the command line: `write --detach` launches a worker of its own, and
//! `tilecube runs [cancel ID | log ID]` lists, stops and shows them (over [`tilecube::runs`]).
//! The worker's command line is spelled here ([`worker`]), for the console's launches too.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::WriteArgs;
use super::shard::build_plan;
use tilecube::config::Settings;
use tilecube::runs::Worker;

/// How long `runs cancel` waits for the worker to stop at its next strip and commit.
const CANCEL_WAIT: Duration = Duration::from_secs(120);

/// The `write` flags a run's worker is given beside its plan (`None`: left out).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerFlags {
    pub threads: Option<usize>,
    pub commit_every: Option<usize>,
    pub commit_refs: Option<usize>,
    pub read_ahead: Option<usize>,
    pub message: Option<String>,
}

/// The worker of a detached run, as both faces launch it: this binary, reading the
/// launcher's config file (`config`), executing the run's plan (`write --plan DIR --shard 0`)
/// with `flags`.
pub fn worker(config: Option<PathBuf>, flags: WorkerFlags) -> Result<Worker> {
    let program = std::env::current_exe().context("locating the tilecube binary")?;
    Ok(Worker::new(program, move |plan_dir| {
        worker_args(config.as_deref(), plan_dir, &flags)
    }))
}

/// `[--config FILE] write --plan DIR --shard 0 [--threads N] [--commit-every N]
/// [--commit-refs N] [--read-ahead N] [--message TEXT]`.
fn worker_args(config: Option<&Path>, plan_dir: &Path, flags: &WorkerFlags) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(c) = config {
        args.extend(["--config".into(), c.into()]);
    }
    args.extend([
        "write".into(),
        "--plan".into(),
        plan_dir.into(),
        "--shard".into(),
        "0".into(),
    ]);
    for (flag, value) in [
        ("--threads", flags.threads),
        ("--commit-every", flags.commit_every),
        ("--commit-refs", flags.commit_refs),
        ("--read-ahead", flags.read_ahead),
    ] {
        if let Some(v) = value {
            args.extend([flag.into(), v.to_string().into()]);
        }
    }
    if let Some(m) = &flags.message {
        args.extend(["--message".into(), m.into()]);
    }
    args
}

/// `write --detach`: plan the tiles now, then hand the plan to a worker process in a
/// session of its own (immune to this terminal's hang-up), logging to the run's directory.
pub async fn detach(settings: &Settings, args: &WriteArgs) -> Result<i32> {
    let Some(plan) = build_plan(settings, &args.choice, 1).await? else {
        eprintln!("nothing to write: the branch already holds every tile chosen");
        return Ok(0);
    };
    let worker = worker(
        settings.config_path.clone(),
        WorkerFlags {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_executes_the_plan_with_the_config_and_the_flags_given() {
        let plan = Path::new("/runs/abc/plan");
        let args = |config: Option<&Path>, flags| -> Vec<String> {
            worker_args(config, plan, &flags)
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            args(None, WorkerFlags::default()),
            ["write", "--plan", "/runs/abc/plan", "--shard", "0"]
        );
        let flags = WorkerFlags {
            threads: Some(4),
            commit_every: None,
            commit_refs: Some(9),
            read_ahead: Some(2),
            message: Some("GLAD 2020".into()),
        };
        assert_eq!(
            args(Some(Path::new("/etc/c.toml")), flags),
            [
                "--config",
                "/etc/c.toml",
                "write",
                "--plan",
                "/runs/abc/plan",
                "--shard",
                "0",
                "--threads",
                "4",
                "--commit-refs",
                "9",
                "--read-ahead",
                "2",
                "--message",
                "GLAD 2020",
            ]
        );
    }
}
