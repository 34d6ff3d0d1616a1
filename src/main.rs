//! The `tilecube` binary: parses the command line and hands over to the CLI front end.

use clap::Parser;

fn main() {
    // Behave like other command-line tools when output is piped into `head`.
    // SAFETY: resetting a signal disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = tilecube::cli::Cli::parse();
    match tilecube::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
