//! Which scenarios `run` runs: the files under the paths given, chosen by
//! `--filter` and `--exclude` on the path `--list` prints, each parsed (or
//! kept as an error case when it does not parse).

use std::path::{Path, PathBuf};

use shm_harness::runner::{Isolation, ScenarioReport};
use shm_harness::scenario::Scenario;

use super::files;

/// `--filter` and `--exclude`: substrings of a scenario's path as `--list`
/// prints it (`scenarios/happy/x.scn`, `./x.scn`: the folder given joined
/// with the path under it, or a file as given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// A file is chosen when its path contains any of these (all files when empty).
    pub filters: Vec<String>,
    /// A file is left out when its path contains any of these, whatever `filters` say.
    pub excludes: Vec<String>,
}

impl Selection {
    /// Whether the scenario at `path` is chosen.
    pub fn chooses(&self, path: &Path) -> bool {
        let path = path.display().to_string();
        let chosen = self.filters.is_empty() || self.filters.iter().any(|f| path.contains(f.as_str()));
        chosen && !self.excludes.iter().any(|x| path.contains(x.as_str()))
    }

    /// What `paths` holding nothing chosen means, for the error message.
    fn none_found(&self, paths: &[PathBuf]) -> String {
        let base = files::none_found(paths, None);
        if self.filters.is_empty() && self.excludes.is_empty() {
            return base;
        }
        let quoted = |v: &[String]| v.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" or ");
        let mut what = Vec::new();
        if !self.filters.is_empty() {
            what.push(format!("has {} in its path (--filter)", quoted(&self.filters)));
        }
        if !self.excludes.is_empty() {
            what.push(format!("has none of {} in its path (--exclude)", quoted(&self.excludes)));
        }
        format!("{base} {}", what.join(" and "))
    }
}

/// The files of a run: the scenarios that parsed, and the files that did
/// not, each with its place among all the files, its name and the
/// parser's message (`file:line:col: ...`).
pub struct Loaded {
    /// The files that parsed, in order.
    pub scenarios: Vec<Scenario>,
    /// The files that did not: (place among all, file, message).
    pub unparsed: Vec<(usize, String, String)>,
}

impl Loaded {
    /// What `paths` hold (chosen by `selection`), in order: each file
    /// parsed, with its times scaled by `timeout_scale`, or its parse
    /// error. A file that does not parse is reported as an error case and
    /// the others still run ([`Loaded::reports_with`]).
    ///
    /// # Errors
    /// A path that cannot be read (see [`files::scenario_files`]), or no file chosen.
    pub fn from(
        paths: &[PathBuf],
        selection: &Selection,
        timeout_scale: u32,
        values: &shm_harness::scenario::Values,
    ) -> Result<Loaded, String> {
        let files: Vec<PathBuf> = files::scenario_files(paths)?.into_iter().filter(|f| selection.chooses(f)).collect();
        let mut loaded = Loaded { scenarios: Vec::new(), unparsed: Vec::new() };
        for (at, f) in files.iter().enumerate() {
            match files::load(f, values) {
                Ok(mut sc) => {
                    sc.scale_time(timeout_scale);
                    loaded.scenarios.push(sc);
                }
                Err(e) => loaded.unparsed.push((at, e.file.clone(), files::describe(&e))),
            }
        }
        if loaded.scenarios.is_empty() && loaded.unparsed.is_empty() {
            return Err(selection.none_found(paths));
        }
        Ok(loaded)
    }

    /// The reports of the files that did not parse (status `error`).
    pub fn errors(&self, isolation: Isolation) -> Vec<(usize, ScenarioReport)> {
        self.unparsed
            .iter()
            .map(|(at, file, message)| (*at, ScenarioReport::not_parsed(file, message.clone(), isolation)))
            .collect()
    }

    /// The run's `reports` (of [`Loaded::scenarios`], in order) with the
    /// `errors` put back in their places: every file's report in file order.
    pub fn reports_with(mut reports: Vec<ScenarioReport>, errors: Vec<(usize, ScenarioReport)>) -> Vec<ScenarioReport> {
        for (at, error) in errors {
            reports.insert(at.min(reports.len()), error);
        }
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_or_and_excludes_win_on_the_listed_path() {
        let sel = |f: &[&str], x: &[&str]| Selection {
            filters: f.iter().map(|s| s.to_string()).collect(),
            excludes: x.iter().map(|s| s.to_string()).collect(),
        };
        let p = Path::new("scenarios/happy/a.scn");
        assert!(sel(&[], &[]).chooses(p));
        assert!(sel(&["scenarios/happy"], &[]).chooses(p), "the folder given is part of the path");
        assert!(sel(&["nope", "happy/"], &[]).chooses(p), "any filter");
        assert!(!sel(&["nope", "other"], &[]).chooses(p));
        assert!(!sel(&["happy"], &["a.scn"]).chooses(p), "an exclusion wins");
        assert!(!sel(&[], &["zzz", "/happy/"]).chooses(p));
        assert_eq!(
            sel(&["a", "b"], &["c"]).none_found(&[PathBuf::from("t")]),
            "no scenario file (.scn) in t has `a` or `b` in its path (--filter) and has none of `c` in its path (--exclude)"
        );
    }
}
