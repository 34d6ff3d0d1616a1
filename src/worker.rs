//! The command line of a detached run's worker, as both faces launch it: this binary,
//! reading the launcher's config file, executing the run's one-shard plan
//! (`write --plan DIR --shard 0`) with the `write` flags given. The engine's
//! [`tilecube::runs::Worker`] runs it and knows none of the CLI's flags; neither face
//! imports the other for it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tilecube::runs::Worker;

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
