//! What `run` tells: the progress lines, the failures, the summary (as
//! cargo-nextest does), on the console and into a text report file.

use shm_harness::report::FailOn;
use shm_harness::report::RunInfo;
use shm_harness::runner::{ScenarioReport, Status, Summary};

use super::console::{heading, status_style, styled, Console};

/// How many of the slowest scenarios the summary names.
const SLOWEST: usize = 3;

/// What the run says, and where.
pub struct Story {
    /// Progress, failures and summary: stdout for text, stderr when stdout carries a document.
    pub console: Console,
    /// The text report for `--format text --output FILE`, without colour.
    pub file_text: Option<String>,
    /// `-q`.
    pub quiet: bool,
    /// `-v`.
    pub verbose: bool,
    /// `--strict`, `--fail-on-skip`.
    pub fail_on: FailOn,
}

impl Story {
    /// A line shown at normal verbosity (and always written to a text report file).
    pub fn say(&mut self, text: &str) {
        if !self.quiet {
            self.console.line(text);
        }
        self.keep(text);
    }

    /// A line shown even with `-q`.
    pub fn always(&mut self, text: &str) {
        self.console.line(text);
        self.keep(text);
    }

    fn keep(&mut self, text: &str) {
        if let Some(t) = &mut self.file_text {
            t.push_str(&anstream::adapter::strip_str(text).to_string());
            t.push('\n');
        }
    }

    /// The progress line of a report (failures and XPASSes even with `-q`).
    pub fn progress(&mut self, r: &ScenarioReport) {
        let line =
            format!("{} {}", styled(status_style(r.status), &format!("{:>4}", r.status.label())), r.progress_detail());
        if r.status.fails(self.fail_on) || r.status == Status::Xpass {
            self.always(&line);
        } else if let (Status::Xfail, Some(f)) = (r.status, &r.failure) {
            // The known defect, as it showed this time.
            self.say(&line);
            self.say(&format!("      {}:{}: {}", r.file, f.line, f.step));
            self.say(&format!("        expected: {}", f.expected));
            self.say(&format!("        actual:   {}", f.actual));
        } else {
            self.say(&line);
            if self.verbose && !r.transcript.is_empty() {
                self.say(r.failure_text().trim_end());
            }
        }
    }
}

/// The failures told in full (each with its transcript): under `--repeat`
/// or `--stress`, only the first failing run of each scenario, with how
/// many of its runs failed.
pub fn failures(story: &mut Story, reports: &[ScenarioReport]) {
    let fail_on = story.fail_on;
    let fails = |r: &ScenarioReport| r.status.fails(fail_on);
    let firsts: Vec<&ScenarioReport> = firsts_of_each_file(reports, fails);
    for r in firsts {
        story.always("");
        story.always(&format!("{} {}", styled(status_style(r.status), r.status.label()), r.failure_text().trim_end()));
        if let Some(n) = r.iteration {
            let (failed, runs) = tally(reports, &r.file, fails);
            story.always(&format!(
                "  (iteration {n}, the first of {failed} failing of {runs}; the JSON and JUnit reports hold every iteration)"
            ));
        }
    }
}

/// The first report of each file (in order) for which `pred` holds.
fn firsts_of_each_file(reports: &[ScenarioReport], pred: impl Fn(&ScenarioReport) -> bool) -> Vec<&ScenarioReport> {
    let mut firsts: Vec<&ScenarioReport> = Vec::new();
    for r in reports.iter().filter(|r| pred(r)) {
        if !firsts.iter().any(|f| f.file == r.file) {
            firsts.push(r);
        }
    }
    firsts
}

/// How many runs of `file` `pred` holds for, and how many runs it had.
fn tally(reports: &[ScenarioReport], file: &str, pred: impl Fn(&ScenarioReport) -> bool) -> (usize, usize) {
    let runs: Vec<&ScenarioReport> = reports.iter().filter(|r| r.file == file).collect();
    (runs.iter().filter(|r| pred(r)).count(), runs.len())
}

/// The end of the story: counts, the failed by name, the slowest.
pub fn summary(story: &mut Story, reports: &[ScenarioReport], run: &RunInfo) {
    story.always(&"-".repeat(12));
    let iterations = reports.iter().filter_map(|r| r.iteration).max();
    let what = match iterations {
        None => format!("{} scenario{}", reports.len(), if reports.len() == 1 { "" } else { "s" }),
        Some(n) => format!(
            "{} runs ({} iteration{} of {} scenario{})",
            reports.len(),
            n,
            if n == 1 { "" } else { "s" },
            files(reports),
            if files(reports) == 1 { "" } else { "s" }
        ),
    };
    story.always(&format!(
        "{} {what} in {:.2} s: {} ({} isolation, jobs {})",
        styled(heading(), "Summary"),
        run.duration.as_secs_f64(),
        counts(reports),
        run.isolation,
        run.jobs
    ));
    named(story, reports);
    let mut ran: Vec<&ScenarioReport> =
        reports.iter().filter(|r| !matches!(r.status, Status::Skip | Status::Error)).collect();
    ran.sort_by(|a, b| b.duration_us.cmp(&a.duration_us).then_with(|| a.file.cmp(&b.file)));
    if !ran.is_empty() {
        let slowest: Vec<String> = ran
            .iter()
            .take(SLOWEST)
            .map(|r| format!("{}{} ({:.1} ms)", r.file, r.nth(), r.duration_us as f64 / 1000.0))
            .collect();
        story.say(&format!("  slowest: {}", slowest.join(", ")));
    }
}

/// How many distinct files `reports` are of.
fn files(reports: &[ScenarioReport]) -> usize {
    firsts_of_each_file(reports, |_| true).len()
}

/// `3 passed, 1 failed, 0 skipped[, N xfailed][, N xpassed][, N not parsed]`.
fn counts(reports: &[ScenarioReport]) -> String {
    let s = Summary::of(reports);
    let mut counts = format!(
        "{} passed, {} failed, {} skipped",
        s.passed,
        if s.failed > 0 { styled(status_style(Status::Fail), &s.failed.to_string()) } else { "0".into() },
        s.skipped
    );
    if s.xfailed > 0 {
        counts.push_str(&format!(", {} xfailed", s.xfailed));
    }
    if s.xpassed > 0 {
        counts.push_str(&format!(", {} xpassed", styled(status_style(Status::Xpass), &s.xpassed.to_string())));
    }
    if s.unparsed > 0 {
        counts.push_str(&format!(", {} not parsed", styled(status_style(Status::Error), &s.unparsed.to_string())));
    }
    counts
}

/// The summary's list: each failed scenario by name and line, each XPASS,
/// each skip when its progress line was not shown (`-q`) or when it fails
/// the run (`--fail-on-skip`); under `--repeat`/`--stress` once per
/// scenario and verdict, with how many of its runs had it.
fn named(story: &mut Story, reports: &[ScenarioReport]) {
    let skips_named = story.quiet || story.fail_on.skip;
    let listed = |r: &ScenarioReport| {
        r.status.fails_run() || r.status == Status::Xpass || (r.status == Status::Skip && skips_named)
    };
    let mut shown: Vec<(&str, Status)> = Vec::new();
    for r in reports.iter().filter(|r| listed(r)) {
        if shown.contains(&(r.file.as_str(), r.status)) {
            continue;
        }
        shown.push((r.file.as_str(), r.status));
        let mut what = match (&r.failure, r.is_harness_error()) {
            _ if r.status == Status::Skip => format!(
                "{}: {}{}",
                r.file,
                r.reason.as_deref().unwrap_or("no reason given"),
                if story.fail_on.skip { " (failing: --fail-on-skip)" } else { "" }
            ),
            _ if r.status == Status::Xpass => {
                format!("{}{}", r.file, if story.fail_on.xpass { "" } else { " (not failing: no --strict)" })
            }
            _ if r.status == Status::Error => r.reason.clone().unwrap_or_else(|| r.file.clone()),
            (Some(f), _) => format!("{}:{}", r.file, f.line),
            (None, true) => format!("{} (harness error)", r.file),
            (None, false) => format!("{} (leak)", r.file),
        };
        if let Some(n) = r.iteration {
            let (had, runs) = tally(reports, &r.file, |o| o.status == r.status);
            what.push_str(&format!(" [{had} of {runs} iterations; first: iteration {n}]"));
        }
        story.always(&format!("  {} {what}", styled(status_style(r.status), r.status.label())));
    }
}
