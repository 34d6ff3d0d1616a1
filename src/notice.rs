//! Notices the engine gives while it works (a wait on a lock, a refresh that failed), for
//! the face to show: the headless CLI prints them on stderr, the console logs them.
//!
//! Invariant: the engine never prints; a face that sets no hook gets the notices as log
//! records.

use std::sync::OnceLock;

static HOOK: OnceLock<fn(&str)> = OnceLock::new();

/// What this process is, for people ("tilecube write"), set by the face.
static COMMAND: OnceLock<String> = OnceLock::new();

/// Name what this process is doing (set once, by the face, at start-up).
pub fn set_command(text: &str) {
    let _ = COMMAND.set(text.to_string());
}

/// What this process is doing, as the face named it ("tilecube" if it did not).
pub fn command() -> &'static str {
    COMMAND.get().map(String::as_str).unwrap_or("tilecube")
}

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
