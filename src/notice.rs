//! Notices the engine gives while it works (a wait on a lock, a refresh that failed), for
//! the face to show: the headless CLI prints them on stderr, the console logs them.
//!
//! Invariant: the engine never prints; a face that sets no hook gets the notices as log
//! records.

use std::sync::OnceLock;

static HOOK: OnceLock<fn(&str)> = OnceLock::new();

/// Show the engine's notices with `hook` (set once, by the face, at start-up).
pub fn set_hook(hook: fn(&str)) {
    let _ = HOOK.set(hook);
}

/// Give a notice.
pub fn notice(text: &str) {
    match HOOK.get() {
        Some(hook) => hook(text),
        None => log::warn!("{text}"),
    }
}
