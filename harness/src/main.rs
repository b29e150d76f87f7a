//! The `shm-harness` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use shm_harness::{listing, scenario};

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
    /// Check scenario files without running them.
    Check {
        /// Files or folders (default: scenarios/).
        paths: Vec<PathBuf>,
    },
}

fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let paths = if paths.is_empty() { vec![PathBuf::from("scenarios")] } else { paths.to_vec() };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|e| format!("{}: cannot read the folder: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "scn"))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.exists() {
            files.push(path);
        } else {
            return Err(format!("{}: no such file or folder", path.display()));
        }
    }
    Ok(files)
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
        Command::Check { paths } => {
            let files = match scenario_files(&paths) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("shm-harness check: {e}");
                    return ExitCode::from(2);
                }
            };
            let mut bad = 0;
            for f in &files {
                match scenario::load(f) {
                    Ok(sc) => {
                        println!("ok    {} ({} processes, {} steps)", f.display(), sc.processes.len(), sc.steps.len())
                    }
                    Err(e) => {
                        println!("error {e}");
                        bad += 1;
                    }
                }
            }
            if bad > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
