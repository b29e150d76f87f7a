//! The `shm-harness` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use shm_harness::runner::{self, IsolationChoice, RunOptions, Status, Summary};
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
    /// Run scenario files: each in its own processes and (by default) its own IPC namespace.
    Run {
        /// Files or folders (default: scenarios/).
        paths: Vec<PathBuf>,
        /// Scenarios at once (default: the number of cores; host isolation runs one at a time).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Run only scenarios whose file path contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also write the report in --format to this file (progress still goes to the terminal).
        #[arg(long)]
        output: Option<PathBuf>,
        /// auto: a private IPC namespace per scenario where the kernel allows it, else host.
        #[arg(long, value_enum, default_value_t = IsolationArg::Auto)]
        isolation: IsolationArg,
        /// Per-step timeout, e.g. 500ms or 10s.
        #[arg(long, default_value = "10s", value_parser = parse_timeout)]
        timeout: Duration,
    },
    /// Remove, and report on stderr, the segments that dead host-mode runs left
    /// (their journals in the state directory); exit 0 nothing left or all
    /// swept, 1 something could not be removed, 2 error.
    Sweep {
        /// Report only; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check scenario files without running them.
    Check {
        /// Files or folders (default: scenarios/).
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Junit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IsolationArg {
    Auto,
    Namespace,
    Host,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    scenario::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("bad timeout `{s}`: expected e.g. 500ms or 10s"))
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
        Command::Run { paths, jobs, filter, format, output, isolation, timeout } => {
            run(&paths, jobs, filter.as_deref(), format, output.as_deref(), isolation, timeout)
        }
        Command::Sweep { dry_run } => sweep(dry_run),
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

fn sweep(dry_run: bool) -> ExitCode {
    let dir = match runner::journal::state_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("shm-harness sweep: {e}");
            return ExitCode::from(2);
        }
    };
    match runner::journal::sweep(&dir, dry_run, |line| eprintln!("{line}")) {
        Ok(s) => {
            eprintln!(
                "shm-harness sweep: {} dead run(s), {} segment(s) {}, {} not ours any more, {} could not be removed",
                s.journals,
                s.removed,
                if dry_run { "to remove" } else { "removed" },
                s.not_ours,
                s.failed
            );
            ExitCode::from(u8::from(s.failed > 0))
        }
        Err(e) => {
            eprintln!("shm-harness sweep: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(
    paths: &[PathBuf],
    jobs: Option<usize>,
    filter: Option<&str>,
    format: Format,
    output: Option<&Path>,
    isolation: IsolationArg,
    timeout: Duration,
) -> ExitCode {
    let files = match scenario_files(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("shm-harness run: {e}");
            return ExitCode::from(2);
        }
    };
    let files: Vec<PathBuf> =
        files.into_iter().filter(|f| filter.is_none_or(|pat| f.display().to_string().contains(pat))).collect();
    // Parse everything first: a file that does not parse runs nothing at all.
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for f in &files {
        match scenario::load(f) {
            Ok(sc) => scenarios.push(sc),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        eprintln!("shm-harness run: {} file(s) do not parse; nothing was run", errors.len());
        return ExitCode::from(2);
    }
    if scenarios.is_empty() {
        eprintln!("shm-harness run: no scenario files matched");
        return ExitCode::from(2);
    }
    let choice = match isolation {
        IsolationArg::Auto => IsolationChoice::Auto,
        IsolationArg::Namespace => IsolationChoice::Namespace,
        IsolationArg::Host => IsolationChoice::Host,
    };
    let (mode, why) = match runner::resolve_isolation(choice) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("shm-harness run: {e}");
            return ExitCode::from(2);
        }
    };
    // Progress goes to stdout in text mode, to stderr when stdout carries a document.
    let to_stdout = format == Format::Text;
    let say = |line: &str| {
        if to_stdout {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    match &why {
        Some(why) => say(&format!("isolation: host (no private IPC namespace: {why})")),
        None => say(&format!("isolation: {mode}")),
    }
    let opts = RunOptions { jobs: jobs.unwrap_or_else(|| RunOptions::default().jobs), isolation: choice, timeout };
    let started = std::time::Instant::now();
    let reports = match runner::run(&scenarios, &opts, mode, |r| say(&r.progress_line())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shm-harness run: {e}");
            return ExitCode::from(2);
        }
    };
    for r in reports.iter().filter(|r| r.status == Status::Fail) {
        say("");
        say(r.failure_text().trim_end());
    }
    let s = Summary::of(&reports);
    say(&format!(
        "\n{} passed, {} failed, {} skipped ({} isolation, {:.2} s)",
        s.passed,
        s.failed,
        s.skipped,
        mode,
        started.elapsed().as_secs_f64()
    ));
    let doc = match format {
        Format::Text => None,
        Format::Json => Some(runner::report::render_json(&reports)),
        Format::Junit => Some(runner::report::render_junit(&reports)),
    };
    if let Some(doc) = &doc {
        match output {
            Some(path) => {
                if let Err(e) = std::fs::write(path, doc) {
                    eprintln!("shm-harness run: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            None => println!("{doc}"),
        }
    }
    if s.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
