//! Child processes of the bench: the tilecube binary run as an operator would, its wall
//! time, CPU and peak memory, and the scratch places its repositories go.

use super::*;

pub(super) fn cpu_thread() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A child process's wall time, CPU time and peak RSS.
///
/// The peak is read from `/proc` while the child runs (its `VmHWM`, and the sum of its
/// process tree's `VmRSS` for children that start workers), not from `wait4`: a child's
/// `ru_maxrss` starts from the bench's own peak when it is spawned, which would hide it.
pub(super) struct ChildRun {
    pub(super) wall: Duration,
    pub(super) cpu: Duration,
    pub(super) max_rss_mb: f64,
    pub(super) ok: bool,
    pub(super) stderr: String,
    pub(super) stdout: String,
}

pub(super) fn run_child(args: &[&str]) -> Result<ChildRun> {
    run_child_env(args, &[])
}

/// [`run_child`] with extra environment.
pub(super) fn run_child_env(args: &[&str], env: &[(&str, String)]) -> Result<ChildRun> {
    let exe = std::env::current_exe().context("locating the tilecube binary")?;
    run_program(&exe, args, env)
}

/// Run `program` with `args` and measure it as [`run_child`] does; its output is kept.
pub(super) fn run_program(
    program: &Path,
    args: &[impl AsRef<std::ffi::OsStr>],
    env: &[(&str, String)],
) -> Result<ChildRun> {
    let errfile = tempfile_path("bench-stderr");
    let outfile = tempfile_path("bench-stdout");
    let err = std::fs::File::create(&errfile)?;
    let out = std::fs::File::create(&outfile)?;
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak_kb = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                peak_kb = peak_kb
                    .max(status_kb(pid as u32, "VmHWM:"))
                    .max(tree_rss_kb(pid as u32));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak_kb
        })
    };
    // SAFETY: waiting for our own child, which std will not wait for (we never call wait).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let peak_kb = watcher.join().unwrap_or(0);
    if r != pid {
        bail!("waiting for tilecube failed");
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let stderr = std::fs::read_to_string(&errfile).unwrap_or_default();
    let stdout = std::fs::read_to_string(&outfile).unwrap_or_default();
    let _ = std::fs::remove_file(&errfile);
    let _ = std::fs::remove_file(&outfile);
    Ok(ChildRun {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_mb: peak_kb as f64 / 1024.0,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        stderr,
        stdout,
    })
}

/// A `kB` field of `/proc/{pid}/status` (0 once the process is gone).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The resident memory of `pid` and every process below it, now.
fn tree_rss_kb(pid: u32) -> u64 {
    let mut parents: Vec<(u32, u32)> = vec![];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // The parent is the field after the command's closing parenthesis.
            let parent = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
                });
            if let Some(parent) = parent {
                parents.push((p, parent));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree.iter().map(|&p| status_kb(p, "VmRSS:")).sum()
}

/// The arguments of a `tilecube write` of the bench tiles.
pub(super) fn write_args<'a>(
    repo: &'a str,
    source: &'a str,
    pixels: &'a str,
    tiles: &'a str,
    threads: Option<&'a str>,
) -> Vec<&'a str> {
    let mut args = vec![
        "--repo",
        repo,
        "--source",
        source,
        "--tile-pixels",
        pixels,
        "write",
        "--year",
        "2000",
        "--tiles",
        tiles,
    ];
    if let Some(t) = threads {
        args.extend(["--threads", t]);
    }
    args
}

pub(super) fn tempfile_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tilecube-{name}-{}", std::process::id()))
}

pub(super) fn scratch(name: &str) -> Result<PathBuf> {
    let p = tempfile_path(name);
    if p.exists() {
        std::fs::remove_dir_all(&p)?;
    }
    Ok(p)
}
