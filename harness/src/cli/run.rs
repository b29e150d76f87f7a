//! `shm-harness run`: parse everything, open the report file, run, and tell
//! the story as cargo-nextest does (a header, a coloured line per scenario,
//! the failures, a summary with the failed and the slowest).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use shm_harness::report::{render_json, render_junit_with, FailOn, RunInfo};
use shm_harness::runner::{self, Isolation, IsolationChoice, RunOptions, ScenarioReport, Status};
use shm_harness::scenario::{self, Scenario};

use super::console::{heading, styled, ColorArg, Console, Target};
use super::files;
use super::repeat::{parse_repeat, parse_stress, run_iterations, Iterations};
use super::select::{Loaded, Selection};
use super::story::{failures, summary, Story};

/// The most scenarios at once: each is a supervisor and its actors, so a
/// thousand-fold `--jobs` would only exhaust the process table.
pub const MAX_JOBS: usize = 256;

/// `run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Files or folders (default: scenarios/).
    pub paths: Vec<PathBuf>,
    /// Scenarios at once, 1 to 256 (default: the number of cores; host isolation runs one at a time).
    #[arg(long, short = 'j', value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Run only scenarios whose path, as --list prints it, contains this text (repeatable: any of them).
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
    /// Leave out scenarios whose path, as --list prints it, contains this text (repeatable; wins over --filter).
    #[arg(long, value_name = "TEXT")]
    pub exclude: Vec<String>,
    /// The report: text (the progress and summary), json or junit.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report in --format to this file (created before anything runs); progress stays on the terminal.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// auto: a private IPC namespace per scenario where the kernel allows it, else host.
    #[arg(long, value_enum, default_value_t = IsolationArg::Auto)]
    pub isolation: IsolationArg,
    /// Per-step timeout, above 0, e.g. 500ms or 10s.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Multiply every timeout by this factor (1 to 100): --timeout, each
    /// scenario's `timeout` line and `eventually` limit. For machines slower
    /// as a whole, e.g. an emulated VM (scripts/kernels.sh uses it).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub timeout_scale: u32,
    /// Print the scenarios that would run, then stop.
    #[arg(long)]
    pub list: bool,
    /// Only failures and the summary.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also the transcript of every scenario that passed.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// An XPASS (a step marked `xfail` that passed) fails the run (exit status 1).
    #[arg(long)]
    pub strict: bool,
    /// `--set NAME=VALUE`: values for `${NAME}` in program commands.
    #[command(flatten)]
    pub values: files::SetArgs,
    /// A SKIP (a need of the scenario missing here) fails the run (exit status 1), for a job that must run everything.
    #[arg(long)]
    pub fail_on_skip: bool,
    /// Run every scenario N times (each run reported with its iteration number).
    #[arg(long, value_name = "N", value_parser = parse_repeat, conflicts_with = "stress")]
    pub repeat: Option<u32>,
    /// Run every scenario again and again for this long (at least once), e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_stress)]
    pub stress: Option<Duration>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Progress lines, failures and the summary.
    Text,
    /// One JSON document (`"version"`, `"summary"`, `"scenarios"`).
    Json,
    /// JUnit XML (Jenkins/Surefire schema).
    Junit,
}

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationArg {
    /// A private IPC namespace per scenario where the kernel allows it, else host.
    Auto,
    /// A private IPC namespace per scenario, or stop.
    Namespace,
    /// The host's IPC namespace, one scenario at a time.
    Host,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad timeout `{s}`: expected a number with ms or s, e.g. 500ms or 10s");
    let (number, unit) = match (s.strip_suffix("ms"), s.strip_suffix('s')) {
        (Some(n), _) => (n, "ms"),
        (None, Some(n)) => (n, "s"),
        (None, None) => (s, ""),
    };
    let value = number.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(bad)?;
    if value <= 0.0 {
        return Err(format!("`{s}`: the timeout must be above 0 (e.g. 500ms or 10s)"));
    }
    if unit.is_empty() {
        return Err(bad());
    }
    match scenario::parse_duration(s) {
        Some(d) if d.is_zero() => Err(format!("`{s}`: the timeout must be above 0 (e.g. 500ms or 10s)")),
        Some(d) => Ok(d),
        None if unit == "ms" && value.fract() != 0.0 => {
            Err(format!("`{s}`: milliseconds must be whole (write fractions in seconds, e.g. 0.0005s)"))
        }
        None => Err(format!("`{s}`: too long a timeout (at most 999999999s)")),
    }
}

fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("--jobs must be at least 1 (the number of scenarios run at once)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("bad number of jobs `{s}`: expected a whole number from 1 to {MAX_JOBS}")),
    }
}

/// Why `run` stopped before any verdict (exit status 2): what to print
/// after `shm-harness run: `.
struct Stop(String);

/// Runs `shm-harness run`.
pub fn main(args: RunArgs, color: ColorArg) -> ExitCode {
    match run(args, color) {
        Ok(code) => code,
        Err(Stop(msg)) => {
            let _ = writeln!(std::io::stderr(), "shm-harness run: {msg}");
            ExitCode::from(2)
        }
    }
}

/// The run in order: the report file, the scenarios, the isolation, the
/// scenarios run, the failures and summary, the report.
fn run(args: RunArgs, color: ColorArg) -> Result<ExitCode, Stop> {
    let RunArgs {
        paths,
        jobs,
        filter,
        exclude,
        format,
        output,
        isolation,
        timeout,
        timeout_scale,
        list,
        quiet,
        verbose,
        strict,
        values,
        fail_on_skip,
        repeat,
        stress,
    } = args;
    let fail_on = FailOn { xpass: strict, skip: fail_on_skip };
    let timeout = timeout.saturating_mul(timeout_scale);
    // The report file first: a path that cannot be written stops everything
    // before any scenario runs, and a stale report never survives this run.
    let mut out_file = match &output {
        Some(path) if !list => Some(create_report(path)?),
        _ => None,
    };
    let selection = Selection { filters: filter, excludes: exclude };
    let loaded = Loaded::from(&paths, &selection, timeout_scale, &values.values()).map_err(Stop)?;
    if list {
        let mut console = Console::new(Target::Stdout, color);
        for sc in &loaded.scenarios {
            console.line(&list_line(sc, verbose));
        }
        return Ok(list_errors(&loaded));
    }
    let mut story = story_for(format, out_file.is_some(), color, quiet, verbose, fail_on);
    let jobs = capped_jobs(jobs.unwrap_or_else(|| RunOptions::default().jobs), &mut story);
    let choice = match isolation {
        IsolationArg::Auto => IsolationChoice::Auto,
        IsolationArg::Namespace => IsolationChoice::Namespace,
        IsolationArg::Host => IsolationChoice::Host,
    };
    let (mode, why) = runner::resolve_isolation(choice).map_err(|e| Stop(e.to_string()))?;
    let scenarios = &loaded.scenarios;
    let effective_jobs = if mode == Isolation::Host { 1 } else { jobs.min(scenarios.len()).max(1) };
    if let Some(why) = &why {
        story.always(&format!("note: host isolation: no private IPC namespace here ({why})"));
    }
    let errors = loaded.errors(mode);
    let n = scenarios.len() + errors.len();
    let iterations = Iterations::from_args(repeat, stress);
    story.say(&format!(
        "{} {n} scenario{}{}, isolation {mode}, jobs {effective_jobs}",
        styled(heading(), "Starting"),
        if n == 1 { "" } else { "s" },
        iterations.describe()
    ));
    let opts = RunOptions { jobs, isolation: choice, timeout };
    let started_at = SystemTime::now();
    let started = Instant::now();
    for (_, error) in &errors {
        story.progress(error);
    }
    let reports = run_iterations(scenarios, &opts, mode, iterations, &mut story).map_err(Stop)?;
    let reports = Loaded::reports_with(reports, errors);
    let run = RunInfo { isolation: mode, jobs: effective_jobs, started: started_at, duration: started.elapsed() };
    failures(&mut story, &reports);
    summary(&mut story, &reports, &run);
    let doc = match format {
        Format::Text => story.file_text.take(),
        Format::Json => Some(render_json(&reports, &run)),
        Format::Junit => Some(render_junit_with(&reports, &run, fail_on)),
    };
    if let Some(doc) = doc {
        write_report(out_file.as_mut(), &doc)?;
    }
    Ok(exit_code(&reports, fail_on))
}

/// The story of a run whose report is in `format`, into a report file
/// (`to_file`) or onto stdout.
fn story_for(format: Format, to_file: bool, color: ColorArg, quiet: bool, verbose: bool, fail_on: FailOn) -> Story {
    let stdout_carries_document = format != Format::Text && !to_file;
    let console = Console::new(if stdout_carries_document { Target::Stderr } else { Target::Stdout }, color);
    // With a report file, or with the document on stdout and the progress
    // on stderr, a reader of the progress that goes away must not cost the
    // report: the run goes on, silently.
    let console = if to_file || stdout_carries_document { console.outlive_its_reader() } else { console };
    Story { console, file_text: (format == Format::Text && to_file).then(String::new), quiet, verbose, fail_on }
}

/// The run's exit status: 2 when a file did not parse (bad input, as for
/// `check`; the other files ran and the report holds it as an error), else
/// 1 when a scenario failed, else 0.
fn exit_code(reports: &[ScenarioReport], fail_on: FailOn) -> ExitCode {
    if reports.iter().any(|r| r.status == Status::Error) {
        ExitCode::from(2)
    } else if reports.iter().any(|r| r.status.fails(fail_on)) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `--list`'s end: each file that does not parse on stderr, and exit
/// status 2 if there was one.
fn list_errors(loaded: &Loaded) -> ExitCode {
    for (_, _, message) in &loaded.unparsed {
        let _ = writeln!(std::io::stderr(), "error: {message}");
    }
    if loaded.unparsed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// Creates (or empties) the report file at `path`.
fn create_report(path: &Path) -> Result<(PathBuf, File), Stop> {
    match File::create(path) {
        Ok(f) => Ok((path.to_path_buf(), f)),
        Err(e) => Err(Stop(format!("cannot create the report file {}: {e}", path.display()))),
    }
}

/// `jobs`, capped to [`MAX_JOBS`] with a note in the story.
fn capped_jobs(jobs: usize, story: &mut Story) -> usize {
    if jobs > MAX_JOBS {
        story.always(&format!("note: --jobs {jobs} capped to {MAX_JOBS} (each job is a process tree of its own)"));
        return MAX_JOBS;
    }
    jobs
}

/// Writes the report `doc` to the report file, or to stdout without one.
fn write_report(out_file: Option<&mut (PathBuf, File)>, doc: &str) -> Result<(), Stop> {
    match out_file {
        Some((path, f)) => f
            .write_all(doc.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Stop(format!("cannot write the report to {}: {e}", path.display()))),
        None => {
            Console::raw_stdout().write(doc);
            Ok(())
        }
    }
}

fn list_line(sc: &Scenario, verbose: bool) -> String {
    if !verbose {
        return sc.file.clone();
    }
    let mut needs = Vec::new();
    if sc.needs.root {
        needs.push("root".to_string());
    }
    if sc.needs.namespace {
        needs.push("namespace".to_string());
    }
    for r in &sc.requires {
        needs.push(match r {
            shm_harness::scenario::Requirement::Program(p) => format!("program {p:?}"),
            shm_harness::scenario::Requirement::Command(c) => format!("command {c:?}"),
            shm_harness::scenario::Requirement::Kernel(k) => k.to_string(),
        });
    }
    let needs = if needs.is_empty() { String::new() } else { format!(", needs {}", needs.join(", ")) };
    format!("{} ({}{needs})", sc.file, files::shape(sc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_jobs_and_timeouts_say_what_is_wrong() {
        assert_eq!(parse_jobs("0").unwrap_err(), "--jobs must be at least 1 (the number of scenarios run at once)");
        assert!(parse_jobs("many").unwrap_err().contains("expected a whole number from 1 to 256"));
        assert_eq!(parse_jobs("100000"), Ok(100_000));
        assert!(parse_timeout("0").unwrap_err().contains("must be above 0"));
        assert!(parse_timeout("0ms").unwrap_err().contains("must be above 0"));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_timeout("-1s").unwrap_err().contains("must be above 0"));
        assert!(parse_timeout("1e-12s").unwrap_err().contains("must be above 0"));
        assert!(parse_timeout("1e30s").unwrap_err().contains("too long a timeout (at most 999999999s)"));
        assert!(parse_timeout("0.5ms").unwrap_err().contains("milliseconds must be whole"));
        assert!(parse_timeout("ten").unwrap_err().starts_with("bad timeout `ten`: expected a number with ms or s"));
        assert!(parse_timeout("nans").unwrap_err().starts_with("bad timeout"));
        assert!(parse_timeout("10").unwrap_err().starts_with("bad timeout `10`: expected a number with ms or s"));
        assert_eq!(parse_timeout("1.5s"), Ok(Duration::from_millis(1500)));
    }
}
