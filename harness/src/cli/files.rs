//! Which scenario files a command means, and reading them.

use std::path::{Path, PathBuf};

use shm_harness::scenario::{self, ParseError, Scenario};

/// The `.scn` files named by `paths` (folders: their `.scn` files, sorted;
/// default `scenarios/`).
///
/// # Errors
/// A path that does not exist or a folder that cannot be read.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
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
pub fn load(path: &Path) -> Result<Scenario, ParseError> {
    scenario::load(path)
}

/// What a scenario holds, for `check` and `run --list -v`: `1 process, 3 steps`.
pub fn shape(sc: &Scenario) -> String {
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!("{}, {}", plural(sc.processes.len(), "process", "processes"), plural(sc.steps.len(), "step", "steps"))
}
