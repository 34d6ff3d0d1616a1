//! The `tilecube` binary: parses the command line and hands over to the CLI front end.

use clap::Parser;

fn main() {
    let cli = tilecube::cli::Cli::parse();
    match tilecube::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
