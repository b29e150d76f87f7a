//! The `shm-harness` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use shm_harness::listing;

/// Tests Linux System V shared memory against the real kernel.
#[derive(Debug, Parser)]
#[command(name = "shm-harness", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the segments of the current IPC namespace, as `ipcs -m` does, plus cpid and lpid.
    Ls {
        /// Print a JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ls { json } => match listing::rows() {
            Ok(rows) => {
                if json {
                    println!("{}", listing::render_json(&rows));
                } else {
                    print!("{}", listing::render_text(&rows));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shm-harness ls: {e}");
                ExitCode::from(1)
            }
        },
    }
}
