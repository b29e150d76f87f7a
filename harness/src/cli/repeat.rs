//! `run --repeat N` and `run --stress DURATION` (cargo-nextest's
//! `--stress-count` and `--stress-duration`): every scenario runs again and
//! again, each run a report of its own numbered by its iteration.

use std::time::{Duration, Instant};

use shm_harness::runner::{self, Isolation, RunOptions, ScenarioReport};
use shm_harness::scenario::{self, Scenario};

use super::story::Story;

/// How many times the scenarios run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iterations {
    /// Once, unnumbered (no `--repeat` or `--stress`).
    Once,
    /// `--repeat N`: N times.
    Count(u32),
    /// `--stress DURATION`: again and again while the run is younger than this (at least once).
    For(Duration),
}

impl Iterations {
    /// From `--repeat` and `--stress` (clap lets at most one through).
    pub fn from_args(repeat: Option<u32>, stress: Option<Duration>) -> Iterations {
        match (repeat, stress) {
            (Some(n), _) => Iterations::Count(n),
            (None, Some(d)) => Iterations::For(d),
            (None, None) => Iterations::Once,
        }
    }

    /// For the run's first line: `, N iterations each`, `, again and again for 30s`, or nothing.
    pub fn describe(self) -> String {
        match self {
            Iterations::Once => String::new(),
            Iterations::Count(n) => format!(", {n} iteration{} each", if n == 1 { "" } else { "s" }),
            Iterations::For(d) => format!(", again and again for {d:?}"),
        }
    }

    /// Whether another iteration starts, `done` having run since `since`.
    fn another(self, done: u32, since: Instant) -> bool {
        match self {
            Iterations::Once => done == 0,
            Iterations::Count(n) => done < n,
            Iterations::For(d) => done == 0 || since.elapsed() < d,
        }
    }
}

/// Runs `scenarios` as `iterations` says, telling each report to `story` as
/// it comes; every report of iteration `k` carries `iteration: Some(k)`
/// (none when running once). The reports come iteration by iteration, each
/// in the order of `scenarios`.
///
/// # Errors
/// The runner's error, as text.
pub fn run_iterations(
    scenarios: &[Scenario],
    opts: &RunOptions,
    mode: Isolation,
    iterations: Iterations,
    story: &mut Story,
) -> Result<Vec<ScenarioReport>, String> {
    let mut all = Vec::new();
    let since = Instant::now();
    let mut done = 0;
    while !scenarios.is_empty() && iterations.another(done, since) {
        done += 1;
        let nth = (iterations != Iterations::Once).then_some(done);
        let numbered = |r: &ScenarioReport| ScenarioReport { iteration: nth, ..r.clone() };
        let reports =
            runner::run(scenarios, opts, mode, |r| story.progress(&numbered(r))).map_err(|e| e.to_string())?;
        all.extend(reports.iter().map(numbered));
    }
    Ok(all)
}

/// `--repeat`'s value: a whole number from 1.
pub fn parse_repeat(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("--repeat must be at least 1 (how many times each scenario runs)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("bad --repeat `{s}`: expected a whole number of iterations, e.g. 100")),
    }
}

/// `--stress`'s value: a duration above 0, `500ms` or `30s`.
pub fn parse_stress(s: &str) -> Result<Duration, String> {
    match scenario::parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("bad --stress `{s}`: expected a duration above 0 with ms or s, e.g. 500ms or 30s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_stop_where_asked_and_run_at_least_once() {
        let now = Instant::now();
        assert!(Iterations::Once.another(0, now) && !Iterations::Once.another(1, now));
        assert!(Iterations::Count(3).another(2, now) && !Iterations::Count(3).another(3, now));
        assert!(Iterations::For(Duration::from_nanos(1)).another(0, now - Duration::from_secs(1)));
        assert!(!Iterations::For(Duration::from_nanos(1)).another(1, now - Duration::from_secs(1)));
        assert!(Iterations::For(Duration::from_secs(3600)).another(5, now));
        assert_eq!(parse_repeat("0").unwrap_err(), "--repeat must be at least 1 (how many times each scenario runs)");
        assert!(parse_repeat("x").unwrap_err().starts_with("bad --repeat `x`"));
        assert_eq!(parse_stress("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_stress("0s").unwrap_err().starts_with("bad --stress `0s`: expected a duration above 0"));
        assert!(parse_stress("10").is_err());
    }
}
