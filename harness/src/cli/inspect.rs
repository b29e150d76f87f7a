//! `shm-harness ls` and `shm-harness check`: commands that look, never run.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use shm_harness::listing::{self, Column};

use super::console::{ColorArg, Console, Target};
use super::files;

/// `ls`'s arguments.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Print `lsipc -m -J`'s document (`{"sharedmemory": [...]}`) instead of the table.
    #[arg(long, short = 'J')]
    pub json: bool,
    /// The columns, by `lsipc -m`'s names, e.g. KEY,ID,PERMS,SIZE,STATUS,CPID (text: an lsipc-style table).
    #[arg(long, short = 'o', value_parser = parse_columns)]
    pub output: Option<Columns>,
}

/// A list of `lsipc` columns (one argument: `KEY,ID,...`).
#[derive(Debug, Clone)]
pub struct Columns(Vec<Column>);

fn parse_columns(s: &str) -> Result<Columns, String> {
    Column::parse_list(s).map(Columns)
}

/// Runs `shm-harness ls`.
pub fn ls(args: LsArgs, color: ColorArg) -> ExitCode {
    let rows = match listing::rows() {
        Ok(rows) => rows,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "shm-harness ls: {e}");
            return ExitCode::from(1);
        }
    };
    let text = match (args.json, &args.output) {
        (true, columns) => listing::render_json(&rows, columns.as_ref().map_or(&Column::JSON_DEFAULT[..], |c| &c.0)),
        (false, Some(columns)) => listing::render_columns(&rows, &columns.0),
        (false, None) => listing::render_text(&rows),
    };
    if args.json {
        Console::raw_stdout().write(&text);
    } else {
        Console::new(Target::Stdout, color).write(&text);
    }
    ExitCode::SUCCESS
}

/// `check`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Files or folders (default: scenarios/).
    pub paths: Vec<PathBuf>,
    /// `--set NAME=VALUE`: values for `${NAME}` in program commands.
    #[command(flatten)]
    pub values: files::SetArgs,
}

/// Runs `shm-harness check`: exit 0 when every file parses, 2 otherwise.
pub fn check(args: CheckArgs, color: ColorArg) -> ExitCode {
    let files = match files::scenario_files(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "shm-harness check: {e}");
            return ExitCode::from(2);
        }
    };
    if files.is_empty() {
        let _ = writeln!(std::io::stderr(), "shm-harness check: {}", files::none_found(&args.paths, None));
        return ExitCode::from(2);
    }
    let mut console = Console::new(Target::Stdout, color);
    let mut bad = 0;
    let values = args.values.values();
    for f in &files {
        match files::load(f, &values) {
            Ok(sc) => console.line(&format!("ok    {} ({})", f.display(), files::shape(&sc))),
            Err(e) => {
                console.line(&format!("error {}", files::describe(&e)));
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
