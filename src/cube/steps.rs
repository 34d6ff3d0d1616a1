//! The steps of a commit, named, and a test-only stop at one of them.
//!
//! A commit goes: `chunks-uploaded` (tilecube: every chunk of the tiles stored and referenced
//! in the session, the commit not started), then, inside Icechunk (a hook of the patched crate,
//! `patches/README.md`), `manifests-written`, `snapshot-written` (the branch not moved yet) and
//! `branch-updated`. With the `test-support` feature, a process whose environment sets
//! `TILECUBE_TEST_STOP_AT` to one of them (`step`, or `step#N` for the N-th time a step is
//! reached, as in the second batch of a merge) says so on stderr and kills itself with
//! `SIGKILL` there, as `kill -9` would: tests reach each step for sure, not by timing.
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

#[cfg(feature = "test-support")]
static STOP_AT: std::sync::OnceLock<(String, usize)> = std::sync::OnceLock::new();

#[cfg(feature = "test-support")]
static PASSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Read `TILECUBE_TEST_STOP_AT` and arm the stop (feature `test-support`; a no-op without).
pub fn arm_from_env() {
    #[cfg(feature = "test-support")]
    if let Ok(text) = std::env::var("TILECUBE_TEST_STOP_AT") {
        let (step, nth) = match text.split_once('#') {
            Some((s, n)) => (s.to_string(), n.parse().unwrap_or(1)),
            None => (text.clone(), 1),
        };
        if STEPS.contains(&step.as_str()) {
            let _ = STOP_AT.set((step, nth));
            let _ = icechunk::session::COMMIT_STEP_HOOK.set(reached);
        }
    }
}

/// A commit reached `step`.
pub fn reached(step: &str) {
    #[cfg(feature = "test-support")]
    if let Some((at, nth)) = STOP_AT.get()
        && at == step
        && PASSED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == *nth
    {
        eprintln!("tilecube: stopping at {step} #{nth} (TILECUBE_TEST_STOP_AT)");
        // SAFETY: sending a signal to this very process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    #[cfg(not(feature = "test-support"))]
    let _ = step;
}
