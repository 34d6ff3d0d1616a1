//! Detached runs: a write that runs in a worker process of its own, outliving the shell or
//! console that launched it (a dropped SSH link), found again by any later `tilecube runs`
//! or console on the same repository ([`for_repo`]). Every write the console launches is one
//! ([`launch`]); the console only reads runs and cancels them.
//!
//! A run is a directory under the user data dir (`runs/{id}/`) holding a one-shard plan
//! (`plan/plan.json`), the worker's progress record next to it (`plan/shards/0000.json`, the
//! same record a scale-out shard keeps), `run.json` (the worker's pid and its start time, the
//! repository, when it started) and the worker's log (`log.txt`). The worker is the command
//! line the launching binary hands over ([`Worker`]: tilecube's `write` of the run's plan, its
//! one shard), started in a session and process group of its own, so the launching terminal's
//! SIGHUP never reaches it; it executes the plan exactly as a shard does (checkpoints, failure
//! journal, retries, signals). This module knows nothing of the command line's flags.
//!
//! Invariants: nothing needs to be started or left running besides the worker itself (no
//! daemon, no port); a run whose record says running but whose worker is gone (killed -9, the
//! machine rebooted) shows as dead, judged by its pid *and* that process's start time, so a
//! reused pid never passes for the worker; a stale run never blocks a new one; cancelling
//! sends the worker SIGTERM, which stops it at its next strip with finished tiles committed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::process_start;
use crate::scaleout::{Place, ShardPlan, ShardRecord, ShardState};

/// The runs kept in one directory (one per machine and user: the user data dir's `runs/`).
#[derive(Debug, Clone)]
pub struct Runs {
    dir: PathBuf,
}

/// What a run's directory says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub id: String,
    /// The repository written, for display.
    pub repo: String,
    /// The cube written ([`crate::cube::Cube::key`]): runs of an earlier cube at the same
    /// path are not this cube's.
    #[serde(default)]
    pub cube: String,
    /// The worker's process id.
    pub pid: u32,
    /// The worker's start time in clock ticks since boot (`/proc/PID/stat` field 22): with
    /// the pid, it names the process uniquely.
    pub pid_start: u64,
    pub started: DateTime<Utc>,
}

/// A run as it stands.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    #[serde(flatten)]
    pub info: RunInfo,
    pub state: RunState,
    pub tiles_done: usize,
    pub tiles_total: usize,
    pub failed: usize,
    /// The plan the worker executes.
    pub plan: PathBuf,
    pub log: PathBuf,
    /// The worker's record, once it wrote one.
    pub record: Option<ShardRecord>,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// The worker is alive and has written no record yet.
    Starting,
    Running,
    /// Every tile written and landed.
    Done,
    /// Ended with tiles that failed.
    Failed,
    /// Stopped by a signal (`runs cancel`, the console's `x`); finished tiles landed.
    Cancelled,
    /// The worker is gone while its record says it runs (killed -9, the machine rebooted).
    Dead,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Dead => "dead",
        }
    }

    /// Whether the run is still going (its worker alive, starting or writing).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Starting | Self::Running)
    }

    /// The state a run's record says (`None`: no record yet), its worker alive or not.
    pub fn of(record: Option<ShardState>, alive: bool) -> Self {
        match (record, alive) {
            (None, true) => Self::Starting,
            (None, false) | (Some(ShardState::Running), false) => Self::Dead,
            (Some(ShardState::Running), true) => Self::Running,
            (Some(ShardState::Done), _) => Self::Done,
            (Some(ShardState::Failed), _) => Self::Failed,
            (Some(ShardState::Cancelled), _) => Self::Cancelled,
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors about runs.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("run {0}: no such run (see `tilecube runs`)")]
    Unknown(String),
    #[error("run {id}: {path}")]
    Io {
        id: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("run {id}: {path} is not a run record")]
    Bad {
        id: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("run {0} is not running")]
    NotRunning(String),
    #[error("run {0} did not stop within {1:?}")]
    DidNotStop(String, Duration),
    #[error("run {id}: saving its plan")]
    Plan {
        id: String,
        #[source]
        source: crate::scaleout::ScaleError,
    },
    #[error("run {id}: starting its worker {exe}")]
    Spawn {
        id: String,
        exe: String,
        #[source]
        source: std::io::Error,
    },
}

/// The arguments of a run's worker, given the directory of the run's plan.
type WorkerArgs = dyn Fn(&Path) -> Vec<OsString> + Send + Sync;

/// How a run's worker is started, as the binary that launches runs spells it: the program,
/// and its arguments given the directory where the run keeps its plan (they make it execute
/// that plan's one shard). [`Runs::launch`] starts it as it is handed over.
pub struct Worker {
    pub program: PathBuf,
    args: Box<WorkerArgs>,
}

impl Worker {
    /// `program` started with `args(plan_dir)`.
    pub fn new(
        program: PathBuf,
        args: impl Fn(&Path) -> Vec<OsString> + Send + Sync + 'static,
    ) -> Self {
        Self {
            program,
            args: Box::new(args),
        }
    }

    /// The worker's arguments for the plan kept in `plan_dir`.
    pub fn args(&self, plan_dir: &Path) -> Vec<OsString> {
        (self.args)(plan_dir)
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

/// Start a run of `plan` (one shard): save the plan in the run's directory, start the
/// worker in a session of its own (the launching terminal's hang-up never reaches it) with
/// its output in the run's log, and record its pid. The worker is not waited for: it
/// outlives the launcher and is reaped by init.
impl Runs {
    /// The runs kept in `dir` (the faces use `runs/` under the user data dir).
    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub async fn launch(&self, plan: &ShardPlan, worker: &Worker) -> Result<RunInfo, RunError> {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let id = crate::ids::new_id();
        let dir = self.run_dir(&id);
        let io = |path: &Path, source| RunError::Io {
            id: id.clone(),
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        plan.save(&Place::Local(self.plan_dir(&id)), false)
            .await
            .map_err(|source| RunError::Plan {
                id: id.clone(),
                source,
            })?;
        let log_file = self.log_path(&id);
        let log = std::fs::File::create(&log_file).map_err(|e| io(&log_file, e))?;
        let log2 = log.try_clone().map_err(|e| io(&log_file, e))?;
        let mut cmd = Command::new(&worker.program);
        cmd.args(worker.args(&self.plan_dir(&id)));
        cmd.stdin(Stdio::null()).stdout(log2).stderr(log);
        // SAFETY: setsid is async-signal-safe; between fork and exec it only detaches the child
        // into a session (and process group) of its own, away from the launcher's terminal.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| RunError::Spawn {
            id: id.clone(),
            exe: worker.program.display().to_string(),
            source,
        })?;
        let pid = child.id();
        let info = RunInfo {
            id: id.clone(),
            repo: plan.repo.clone(),
            cube: plan.cube.clone(),
            pid,
            pid_start: process_start(pid).unwrap_or(0),
            started: Utc::now(),
        };
        info.save(&dir)?;
        // Not waited for: the worker outlives this process.
        std::mem::forget(child);
        Ok(info)
    }

    /// A run's directory.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The plan directory of a run.
    pub fn plan_dir(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("plan")
    }

    /// The log of a run.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("log.txt")
    }
}

/// Whether the worker of a run is alive: its pid exists and started when the worker did (a
/// zombie — exited, not yet reaped by its launcher — counts as gone).
pub fn worker_alive(info: &RunInfo) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{}/stat", info.pid))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.chars().next()))
        .flatten();
    process_start(info.pid) == Some(info.pid_start) && state.is_some_and(|c| c != 'Z')
}

impl RunInfo {
    /// Record a run's worker in its directory `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), RunError> {
        let path = dir.join("run.json");
        let io = |source| RunError::Io {
            id: self.id.clone(),
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    fn load(dir: &Path) -> Result<Self, RunError> {
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let path = dir.join("run.json");
        let text = std::fs::read(&path).map_err(|source| RunError::Io {
            id: id.clone(),
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| RunError::Bad {
            id,
            path: path.display().to_string(),
            source,
        })
    }
}

impl Runs {
    /// One run, as it stands now.
    pub fn load(&self, id: &str) -> Result<Run, RunError> {
        let dir = self.run_dir(id);
        if !dir.join("run.json").exists() {
            return Err(RunError::Unknown(id.to_string()));
        }
        let info = RunInfo::load(&dir)?;
        let record_path = self
            .plan_dir(id)
            .join(crate::scaleout::record::record_name(0));
        let record: Option<ShardRecord> = std::fs::read(&record_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let alive = worker_alive(&info);
        let state = RunState::of(record.as_ref().map(|r| r.state), alive);
        let (tiles_done, tiles_total, failed) = record
            .as_ref()
            .map(|r| (r.skipped + r.landed, r.jobs, r.failed.len()))
            .unwrap_or((0, 0, 0));
        Ok(Run {
            info,
            state,
            tiles_done,
            tiles_total,
            failed,
            plan: self.plan_dir(id),
            log: self.log_path(id),
            record,
        })
    }
}

impl Run {
    /// Whether the run is still going (its worker alive, starting or writing).
    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }

    /// The run's tiles in the words every face of tilecube uses.
    pub fn tally(&self) -> Tally {
        match &self.record {
            Some(r) => Tally::of(r),
            None => Tally::default(),
        }
    }

    /// How long a run going has made no progress (no chunk, tile or commit), as of `now`:
    /// `None` for a run that ended or wrote no record yet.
    pub fn idle(&self, now: DateTime<Utc>) -> Option<Duration> {
        let r = self.record.as_ref().filter(|_| self.is_active())?;
        (now - r.progressed.unwrap_or(r.started)).to_std().ok()
    }

    /// Why the run stopped as a whole (its final commit refused, its repository gone), as its
    /// worker recorded it, on one line; `None` when it did not, or stopped only for tiles.
    pub fn stop_reason(&self) -> Option<String> {
        let reason = self.record.as_ref()?.error.as_deref()?;
        Some(reason.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// "no progress for 45 s" once a run going has been idle [`STALLED_AFTER`] or more.
    pub fn stall_note(&self, now: DateTime<Utc>) -> Option<String> {
        stall_note(self.idle(now)?)
    }
}

/// After this long with no progress, a run going is said to be stalled.
pub const STALLED_AFTER: Duration = Duration::from_secs(30);

/// "no progress for N s" (or minutes) when `idle` is [`STALLED_AFTER`] or more.
pub fn stall_note(idle: Duration) -> Option<String> {
    if idle < STALLED_AFTER {
        return None;
    }
    let s = idle.as_secs();
    Some(if s < 120 {
        format!("no progress for {s} s")
    } else {
        format!("no progress for {} min", s / 60)
    })
}

/// A run's (or several runs') tiles: `written` (their chunks uploaded), `landed` (committed
/// to the branch, or staged), `failed`, of `total`; tiles an earlier attempt landed count
/// as written and landed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub written: usize,
    pub landed: usize,
    pub failed: usize,
    pub total: usize,
}

impl Tally {
    pub fn of(r: &ShardRecord) -> Self {
        Self {
            written: r.skipped + r.written,
            landed: r.skipped + r.landed,
            failed: r.failed.len(),
            total: r.jobs,
        }
    }
}

impl std::ops::Add for Tally {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            written: self.written + o.written,
            landed: self.landed + o.landed,
            failed: self.failed + o.failed,
            total: self.total + o.total,
        }
    }
}

impl std::fmt::Display for Tally {
    /// "470/1295 written, 12 landed, 1 failed".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} written, {} landed, {} failed",
            self.written, self.total, self.landed, self.failed
        )
    }
}

impl Runs {
    /// The runs of one cube: at its repository (as a plan names it: an absolute path or a URL)
    /// and of its key ([`crate::cube::Cube::key`]; runs that recorded none match by repository
    /// alone), newest first.
    pub fn for_repo(&self, repo: &str, cube: &str) -> Vec<Run> {
        let repo = repo.trim_end_matches('/');
        self.list()
            .into_iter()
            .filter(|r| r.info.repo.trim_end_matches('/') == repo)
            .filter(|r| r.info.cube.is_empty() || r.info.cube == cube)
            .collect()
    }

    /// Every run, newest first; directories that are not runs are skipped.
    pub fn list(&self) -> Vec<Run> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut runs: Vec<Run> = entries
            .flatten()
            .filter_map(|e| self.load(&e.file_name().to_string_lossy()).ok())
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.info.started));
        runs
    }

    /// Stop a run's worker: SIGTERM, so it stops at its next strip and commits its finished
    /// tiles; waits up to `wait` for it to leave.
    pub fn cancel(&self, id: &str, wait: Duration) -> Result<Run, RunError> {
        let run = self.load(id)?;
        if !worker_alive(&run.info) {
            return Err(RunError::NotRunning(id.to_string()));
        }
        // SAFETY: signalling a process we checked is the run's worker (pid and start time).
        unsafe {
            libc::kill(run.info.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + wait;
        while worker_alive(&run.info) {
            if Instant::now() > deadline {
                return Err(RunError::DidNotStop(id.to_string(), wait));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.load(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_by_pid_and_start_time_and_a_changed_start_is_not() {
        let pid = std::process::id();
        let start = process_start(pid).expect("own start time");
        let info = RunInfo {
            id: "x".into(),
            repo: "r".into(),
            cube: String::new(),
            pid,
            pid_start: start,
            started: Utc::now(),
        };
        assert!(worker_alive(&info));
        let reused = RunInfo {
            pid_start: start + 1,
            ..info.clone()
        };
        assert!(!worker_alive(&reused), "a reused pid is not the worker");
        let gone = RunInfo {
            pid: u32::MAX - 1,
            ..info
        };
        assert!(!worker_alive(&gone));
    }
}
