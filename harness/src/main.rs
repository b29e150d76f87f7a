//! The `shm-harness` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

use cli::console::ColorArg;

/// Tests Linux System V shared memory against the real kernel.
#[derive(Debug, Parser)]
#[command(name = "shm-harness", version, about)]
struct Cli {
    /// Colour: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorArg::Auto)]
    color: ColorArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the segments of the current IPC namespace: as `ipcs -m` (plus cpid and lpid), or as `lsipc -m` with -o/--json.
    Ls(cli::inspect::LsArgs),
    /// Run scenario files: each in its own processes and (by default) its own IPC namespace.
    Run(cli::run::RunArgs),
    /// Check scenario files without running them.
    Check(cli::inspect::CheckArgs),
    /// Remove, and report on stderr, the segments that dead host-mode runs left
    /// (their journals in the state directory); exit 0 nothing left or all
    /// swept, 1 something could not be removed, 2 error.
    Sweep(cli::sweep::SweepArgs),
}

fn main() -> ExitCode {
    // An actor that re-executed itself (a scenario's `exec` step) serves on.
    shm_harness::runner::resume_exec_actor();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout (exit 0), usage errors to stderr (exit 2).
            if let Err(io) = e.print() {
                cli::console::write_failed(io);
            }
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Ls(args) => cli::inspect::ls(args, cli.color),
        Command::Run(args) => cli::run::main(args, cli.color),
        Command::Check(args) => cli::inspect::check(args, cli.color),
        Command::Sweep(args) => cli::sweep::main(args, cli.color),
    }
}
