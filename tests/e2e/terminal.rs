//! The terminal is given back when the console panics: in a real terminal (tmux at 80×24),
//! a console made to panic in its event loop by a test-only key
//! (`TILECUBE_TEST_PANIC_ON_KEY`, feature `test-support`) exits with 134 (128 + SIGABRT),
//! prints the panic's message on the normal screen, and leaves the alternate screen, raw
//! mode and the hidden cursor behind it: the shell after it echoes typed text again.

use crate::common;

use common::Work;
use common::tmux::Tmux;
use tilecube::demo::Flaw;

/// After the console: TTY-SANE when the terminal is out of raw mode (canonical input and
/// echo back on), TTY-RAW otherwise.
const TTY_CHECK: &str = "if stty -a | grep -Eq '(^|[ ;])icanon([ ;]|$)' && stty -a | grep -Eq '(^|[ ;])echo([ ;]|$)'; then echo TTY-SANE; else echo TTY-RAW; fi";

/// A tmux format variable of the pane (`alternate_on`, `cursor_flag`).
fn pane_flag(tmux: &Tmux, name: &str) -> String {
    let out = tmux.cmd(&["display", "-p", "-t", "t", &format!("#{{{name}}}")]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_panic_in_the_console_restores_the_terminal_and_tells_the_panic() {
    let w = Work::new();
    w.tile(2000, "80N_180W", Flaw::None);
    w.list(2000, &["80N_180W"], "");
    w.ok(&["init"]);
    let cmd = format!(
        "RUST_BACKTRACE=0 TILECUBE_TEST_PANIC_ON_KEY=P TILECUBE_DATA_DIR={} {} --config {} tui; echo CONSOLE-EXITED $?; {TTY_CHECK}; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    );
    let tmux = Tmux::start(&cmd);
    tmux.wait_for("1:2000 0/1");
    // While the console runs: the alternate screen, the cursor hidden.
    assert_eq!(pane_flag(&tmux, "alternate_on"), "1", "{}", tmux.screen());
    assert_eq!(pane_flag(&tmux, "cursor_flag"), "0", "{}", tmux.screen());
    // Keys other than the trigger leave it running: `?` opens the help, Esc closes it.
    tmux.keys(&["?"]);
    tmux.wait_for("select / unselect tile");
    tmux.keys(&["Escape"]);
    tmux.wait_for("←↓↑→ move");

    tmux.keys(&["P"]);
    let s = tmux.wait_for("TTY-");
    assert!(
        s.contains("CONSOLE-EXITED 134"),
        "a panic ends the console with 128 + SIGABRT: {s}"
    );
    assert!(
        s.contains("TTY-SANE"),
        "raw mode is off after the panic: {s}"
    );
    // Back on the normal screen, the cursor shown: the console's grid went with the
    // alternate screen.
    assert_eq!(pane_flag(&tmux, "alternate_on"), "0", "{s}");
    assert_eq!(pane_flag(&tmux, "cursor_flag"), "1", "{s}");
    assert!(!s.contains("80N "), "the console is still on screen: {s}");
    // The terminal echoes what is typed, as a shell's terminal does.
    tmux.text("typed-after-the-panic");
    let s = tmux.wait_for("typed-after-the-panic");
    // The panic is told, and what the shell prints next comes after it (the cursor is left
    // below the message, not moved back over it).
    let line = |what: &str| s.lines().position(|l| l.contains(what));
    let (panicked, message, exited, sane) = (
        line("panicked at src/tui/mod.rs"),
        line("test panic on key 'P' (TILECUBE_TEST_PANIC_ON_KEY)"),
        line("CONSOLE-EXITED 134"),
        line("TTY-SANE"),
    );
    assert!(
        panicked.is_some() && message.is_some(),
        "the panic's message is on screen after the console: {s}"
    );
    assert!(
        panicked < message && message < exited && exited < sane,
        "the shell's next lines come below the panic's message, in order \
         (panicked at line {panicked:?}, message {message:?}, exit {exited:?}, stty {sane:?}): {s}"
    );
}
