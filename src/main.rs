//! The `tilecube` binary: the two faces over the engine library — the headless CLI ([`cli`])
//! and the operator console ([`tui`]) — and the benchmark harness ([`bench`]).
//!
//! Invariant: these modules only call the library; the library never calls them (it cannot:
//! they are not part of it).

#[cfg(feature = "bench")]
mod bench;
mod cell;
mod cli;
mod progress;
mod tui;
mod worker;

use clap::Parser;

fn main() {
    // Behave like other command-line tools when output is piped into `head`.
    // SAFETY: resetting a signal disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tilecube::cube::steps::arm_from_env();
    tilecube::notice::set_hook(|text| eprintln!("{text}"));
    let cli = cli::Cli::parse();
    tilecube::notice::set_command(&cli::command_name(&cli));
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {}", tilecube::anyhow_chain(&e));
            std::process::exit(2);
        }
    }
}
