//! The command line as an operator over SSH meets it: each command's help lists its own
//! options first and the global ones under their own heading, and completion scripts.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tilecube");

fn stdout(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run tilecube");
    assert!(
        out.status.success(),
        "tilecube {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_commands_help_shows_its_own_options_before_the_global_ones() {
    let help = stdout(&["write", "--help"]);
    let own = help.find("--missing").expect("the command's own option");
    let heading = help
        .find("Global options:")
        .expect("a heading for the global ones");
    let global = help.find("--repo").expect("a global option");
    assert!(own < heading && heading < global, "{help}");
}

#[test]
fn completion_scripts_name_the_commands_and_their_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&["completions", shell]);
        for word in ["repair", "verify", "missing", "repo"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let bad = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .expect("run tilecube");
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is refused");
}
