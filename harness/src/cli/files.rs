//! Which scenario files a command means, and reading them.

use std::path::{Path, PathBuf};

use shm_harness::scenario::{self, ParseError, Scenario};

/// The `.scn` files named by `paths` (default `scenarios/`): a file as
/// given, a folder's `.scn` files at any depth, sorted by path.
///
/// # Errors
/// A path that does not exist, or anything under a folder that cannot be
/// read (see [`scenario_files_under`]).
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let paths = if paths.is_empty() { vec![PathBuf::from("scenarios")] } else { paths.to_vec() };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(scenario_files_under(&path)?);
        } else if path.exists() {
            files.push(path);
        } else {
            return Err(format!("{}: no such file or folder", path.display()));
        }
    }
    Ok(files)
}

/// Every file ending in `.scn` under `dir`, at any depth, sorted by path;
/// symbolic links are followed, and files with other names are ignored.
///
/// # Errors
/// Nothing is skipped silently: a folder that cannot be read, a symbolic
/// link that leads nowhere or back to a folder above it (a loop) is an
/// error naming it.
pub fn scenario_files_under(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(true) {
        let entry = entry.map_err(|e| {
            let at = e.path().map_or_else(|| dir.display().to_string(), |p| p.display().to_string());
            match (e.loop_ancestor(), e.io_error()) {
                (Some(ancestor), _) => format!(
                    "{at}: a symbolic link loop (it leads back to {}); remove the link or run the folders separately",
                    ancestor.display()
                ),
                (None, Some(io)) if io.kind() == std::io::ErrorKind::NotFound => {
                    format!("{at}: a broken symbolic link (or it vanished while being read); remove it")
                }
                (None, Some(io)) => format!("{at}: cannot read it: {io}; fix its permissions or leave it out"),
                (None, None) => format!("{at}: {e}"),
            }
        })?;
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|x| x == "scn") {
            found.push(entry.into_path());
        }
    }
    found.sort();
    Ok(found)
}

/// What to say when `paths` (filtered by `filter`) hold no scenario file.
pub fn none_found(paths: &[PathBuf], filter: Option<&str>) -> String {
    let paths: Vec<String> = if paths.is_empty() {
        vec!["scenarios".into()]
    } else {
        paths.iter().map(|p| p.display().to_string()).collect()
    };
    match filter {
        Some(f) => format!("no scenario file (.scn) in {} has `{f}` in its path (--filter)", paths.join(", ")),
        None => format!("no scenario file (.scn) in {}", paths.join(", ")),
    }
}

/// A parse error as the command line shows it: `file:line:col: ...`, or
/// `file: ...` when it is about the whole file (it could not be read).
pub fn describe(e: &ParseError) -> String {
    if e.line == 0 {
        format!("{}: {}", e.file, e.message)
    } else {
        e.to_string()
    }
}

/// Reads and parses a scenario file ([`scenario::load`]: a file that is not
/// UTF-8 is reported at its first bad byte, with the byte offset).
///
/// # Errors
/// A [`ParseError`]: unreadable, not UTF-8, or the first problem in it.
pub fn load(path: &Path, values: &scenario::Values) -> Result<Scenario, ParseError> {
    scenario::load_with(path, values)
}

/// `--set NAME=VALUE` of `run` and `check`: a value for `${NAME}` in the
/// scenarios' program commands (a build directory, a binary's path).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SetArgs {
    /// A value for `${NAME}` in program commands, e.g. --set bin=target/release/prog (repeatable; a name the scenario binds itself is an error).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = scenario::setting)]
    pub set: Vec<(String, String)>,
}

impl SetArgs {
    /// The values, by name (the last `--set` of a name wins).
    pub fn values(&self) -> scenario::Values {
        self.set.iter().cloned().collect()
    }
}

/// What a scenario holds, for `check` and `run --list -v`: `1 process, 3 steps`.
pub fn shape(sc: &Scenario) -> String {
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!("{}, {}", plural(sc.processes.len(), "process", "processes"), plural(sc.steps.len(), "step", "steps"))
}
