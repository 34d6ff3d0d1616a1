//! The one-node Slurm cluster `.ci/slurm` starts: submitting batch scripts (the deploy
//! recipes of `assets/deploy/slurm/`), waiting for jobs, cancelling a task.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Fail the test unless the cluster answers with an idle (or busy) node.
pub fn require() {
    let out = Command::new("sinfo").args(["-h", "-o", "%T"]).output();
    let up = out.as_ref().is_ok_and(|o| {
        let s = String::from_utf8_lossy(&o.stdout);
        s.lines()
            .any(|l| ["idle", "mixed", "allocated"].contains(&l.trim()))
    });
    assert!(
        up,
        "no Slurm node is up: run `bash .ci/slurm` (`.ci/setup` does): {out:?}"
    );
}

/// `sbatch --parsable ARGS SCRIPT`: the job id.
pub fn submit(script: &Path, args: &[&str]) -> String {
    submit_env(script, args, &[])
}

/// [`submit`] with `env` added to what the job inherits (sbatch exports the submitter's
/// environment).
pub fn submit_env(script: &Path, args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .arg(script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run sbatch");
    assert!(
        out.status.success(),
        "sbatch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().split(';').next().unwrap_or("").to_string()
}

/// Wait until no task of job `id` is queued or running.
pub fn wait(id: &str) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let out = Command::new("squeue")
            .args(["-h", "-j", id, "-o", "%i %T"])
            .output()
            .expect("squeue");
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "job {id} still going: {text}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `scancel TASK` (e.g. `123_2`): Slurm sends the task SIGTERM, then SIGKILL after KillWait.
pub fn cancel(task: &str) {
    let out = Command::new("scancel").arg(task).output().expect("scancel");
    assert!(
        out.status.success(),
        "scancel {task}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
