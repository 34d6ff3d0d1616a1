//! The steps of a commit, named, and a test-only stop at one of them.
//!
//! A commit goes: `chunks-uploaded` (tilecube: every chunk of the tiles stored and referenced
//! in the session, the commit not started, its reference lock not taken), then, inside Icechunk (a hook of the patched crate,
//! `patches/README.md`), `manifests-written`, `snapshot-written` (the branch not moved yet) and
//! `branch-updated`. With the `test-support` feature, a process whose environment sets
//! `TILECUBE_TEST_STOP_AT` to one of them (`step`, or `step#N` for the N-th time a step is
//! reached, as in the second batch of a merge) says so on stderr and kills itself with
//! `SIGKILL` there, as `kill -9` would: tests reach each step for sure, not by timing.
//! `TILECUBE_TEST_HOLD_AT` (the same form, or several, comma-separated) with
//! `TILECUBE_TEST_HOLD_FILE=path` holds the process there instead: at `step#N` it creates
//! `path-step-N.reached` and waits until `path-step-N` exists, so a test can act (another
//! writer commits, the network fails) while the process is at that very step. The wait
//! blocks the thread that reached the step.
//!
//! Invariant: without the variable (or without the feature) a step costs one load and changes
//! nothing.

/// Every step, in the order a commit takes them.
pub const STEPS: [&str; 4] = [
    "chunks-uploaded",
    "manifests-written",
    "snapshot-written",
    "branch-updated",
];

/// Steps of maintenance commands, outside a write's commit: `repair-checked` (`repair` has
/// scanned the head and not committed yet).
pub const MAINTENANCE_STEPS: [&str; 1] = ["repair-checked"];

#[cfg(feature = "test-support")]
static STOP_AT: std::sync::OnceLock<(String, usize)> = std::sync::OnceLock::new();

#[cfg(feature = "test-support")]
static PASSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The holds: each `(step, N)`, and the path the files are named from.
#[cfg(feature = "test-support")]
static HOLD_AT: std::sync::OnceLock<(Vec<(String, usize)>, std::path::PathBuf)> =
    std::sync::OnceLock::new();

/// Times each step was reached, for the holds.
#[cfg(feature = "test-support")]
static REACHED: std::sync::Mutex<Vec<(String, usize)>> = std::sync::Mutex::new(Vec::new());

/// `step` or `step#N`, if `step` is one of [`STEPS`].
#[cfg(feature = "test-support")]
fn step_and_nth(text: &str) -> Option<(String, usize)> {
    let (step, nth) = match text.split_once('#') {
        Some((s, n)) => (s, n.parse().ok()?),
        None => (text, 1),
    };
    (STEPS.contains(&step) || MAINTENANCE_STEPS.contains(&step)).then(|| (step.to_string(), nth))
}

/// Read `TILECUBE_TEST_STOP_AT` and `TILECUBE_TEST_HOLD_AT` and arm them (feature
/// `test-support`; a no-op without).
pub fn arm_from_env() {
    #[cfg(feature = "test-support")]
    {
        let mut armed = false;
        if let Some(at) = std::env::var("TILECUBE_TEST_STOP_AT")
            .ok()
            .and_then(|t| step_and_nth(&t))
        {
            armed |= STOP_AT.set(at).is_ok();
        }
        if let Ok(text) = std::env::var("TILECUBE_TEST_HOLD_AT")
            && let Some(file) = std::env::var_os("TILECUBE_TEST_HOLD_FILE")
        {
            let holds: Vec<_> = text.split(',').filter_map(step_and_nth).collect();
            armed |= !holds.is_empty() && HOLD_AT.set((holds, file.into())).is_ok();
        }
        if armed {
            let _ = icechunk::session::COMMIT_STEP_HOOK.set(reached);
        }
    }
}

/// A commit reached `step`.
pub fn reached(step: &str) {
    #[cfg(feature = "test-support")]
    {
        use std::sync::atomic::Ordering::SeqCst;
        if let Some((at, nth)) = STOP_AT.get()
            && at == step
            && PASSED.fetch_add(1, SeqCst) + 1 == *nth
        {
            eprintln!("tilecube: stopping at {step} #{nth} (TILECUBE_TEST_STOP_AT)");
            // SAFETY: sending a signal to this very process.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        if let Some((holds, file)) = HOLD_AT.get() {
            let nth = match REACHED.lock() {
                Ok(mut r) => match r.iter_mut().find(|(s, _)| s == step) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        r.push((step.to_string(), 1));
                        1
                    }
                },
                Err(_) => 0,
            };
            if holds.iter().any(|(s, n)| s == step && *n == nth) {
                eprintln!("tilecube: holding at {step} #{nth} (TILECUBE_TEST_HOLD_AT)");
                let mut release = file.clone().into_os_string();
                release.push(format!("-{step}-{nth}"));
                let mut reached = release.clone();
                reached.push(".reached");
                let _ = std::fs::write(&reached, std::process::id().to_string());
                let release = std::path::PathBuf::from(release);
                while !release.exists() {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                eprintln!("tilecube: released at {step} #{nth}");
            }
        }
    }
    #[cfg(not(feature = "test-support"))]
    let _ = step;
}

/// The mechanisms a test may switch off to show that its race test fails without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Rebasing a commit over another writer's commits to the branch.
    Rebase,
    /// Computing the coarse overview chunks again after such a rebase.
    RefreshAfterRebase,
}

/// Whether `mechanism` was switched off: with the `test-support` feature, by naming it in
/// `TILECUBE_TEST_DISABLE` (`rebase`, `refresh-after-rebase`, comma-separated). Always false
/// without the feature. Only for showing that the tests of races fail without what they
/// guard; the process says so on stderr.
pub fn disabled(mechanism: Mechanism) -> bool {
    #[cfg(feature = "test-support")]
    {
        let name = match mechanism {
            Mechanism::Rebase => "rebase",
            Mechanism::RefreshAfterRebase => "refresh-after-rebase",
        };
        let off = std::env::var("TILECUBE_TEST_DISABLE")
            .is_ok_and(|v| v.split(',').any(|n| n.trim() == name));
        if off {
            eprintln!("tilecube: {name} switched off (TILECUBE_TEST_DISABLE)");
        }
        off
    }
    #[cfg(not(feature = "test-support"))]
    {
        let _ = mechanism;
        false
    }
}
