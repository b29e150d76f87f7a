//! What a scenario run produced, and how it is shown: a progress line, a
//! transcript with one column per process, JSON and JUnit XML.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

mod junit;
mod transcript;

pub use junit::{render_junit, render_junit_with};

/// How a scenario was isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// In a private IPC namespace of its own.
    Namespace,
    /// In the host's IPC namespace, touching only what it created.
    Host,
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::Namespace => "namespace",
            Isolation::Host => "host",
        })
    }
}

/// The verdict.
///
/// Every rendering (progress line, summary, JSON, JUnit) matches on it
/// exhaustively or goes through [`Status::label`], so a new verdict (XFAIL)
/// is one arm in each and the compiler lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every step answered as expected and nothing leaked.
    Pass,
    /// A step did not, or something leaked, or the harness failed.
    Fail,
    /// A need of the scenario is not available here.
    Skip,
    /// A step marked `xfail` failed as written (a known defect); nothing else failed.
    Xfail,
    /// A step marked `xfail` passed: the defect may be fixed. Fails the run under `--strict`.
    Xpass,
    /// The file does not parse: nothing of it ran (the reason is the
    /// parser's `file:line:col: ...`). Fails the run.
    Error,
}

impl Status {
    /// The tag shown in progress lines: `PASS`, `FAIL`, `SKIP`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
            Status::Xfail => "XFAIL",
            Status::Xpass => "XPASS",
            Status::Error => "ERROR",
        }
    }

    /// Whether this verdict makes the run fail whatever the options: a
    /// failure (exit status 1) or a file that does not parse (exit status 2).
    pub fn fails_run(self) -> bool {
        matches!(self, Status::Fail | Status::Error)
    }

    /// Whether this verdict makes a run fail: a failure, a file that does
    /// not parse, and the verdicts `fail_on` names (an XPASS under
    /// `--strict`, a SKIP under `--fail-on-skip`).
    pub fn fails(self, fail_on: FailOn) -> bool {
        self.fails_run() || (fail_on.xpass && self == Status::Xpass) || (fail_on.skip && self == Status::Skip)
    }
}

/// The verdicts that pass by default and fail the run when asked to: the
/// one place `--strict` and `--fail-on-skip` are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailOn {
    /// `--strict`: an XPASS fails the run (a `<failure type="Xpass">` in JUnit).
    pub xpass: bool,
    /// `--fail-on-skip`: a SKIP fails the run (a `<failure type="Skip">` in JUnit).
    pub skip: bool,
}

/// One step as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// File line.
    pub line: usize,
    /// Acting process.
    pub process: String,
    /// The call with its arguments.
    pub call: String,
    /// The kernel's (or the harness's) answer.
    pub answer: String,
    /// Whether it was what the step expected.
    pub ok: bool,
    /// The pid of the program a `run` step started (of its last try under
    /// `eventually`) or a `wait` step reaped, as the scenario's processes
    /// see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// When the step started, in microseconds since the scenario's start
    /// (its turn): when the supervisor sent it to its process (a step
    /// chained after another: when that one's answer came; a local step:
    /// when the supervisor began it). `None`: it did not run.
    #[serde(default)]
    pub started_us: Option<u64>,
    /// When its answer came, in microseconds since the scenario's start:
    /// when the supervisor first saw it (or the process's end, or the
    /// timeout). `None`: it did not run.
    #[serde(default)]
    pub ended_us: Option<u64>,
    /// Whether its time overlapped that of another step of its `&` group
    /// (the text transcript marks it `&`).
    #[serde(default)]
    pub overlapped: bool,
}

/// The step that did not answer as expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// File line.
    pub line: usize,
    /// Acting process.
    pub process: String,
    /// The step as written.
    pub step: String,
    /// What the file expects.
    pub expected: String,
    /// What happened.
    pub actual: String,
}

/// Something left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leak {
    /// What, where, and who made it.
    pub message: String,
    /// The line that created it, when known.
    pub line: Option<usize>,
    /// The process that created or holds it.
    pub process: Option<String>,
    /// The segment.
    pub shmid: i32,
}

/// Everything about one scenario run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// The file.
    pub file: String,
    /// Its name (the file stem).
    pub name: String,
    /// The verdict.
    pub status: Status,
    /// How it was isolated.
    pub isolation: Isolation,
    /// Why it was skipped, or why the harness failed it outside a step.
    pub reason: Option<String>,
    /// The failing step.
    pub failure: Option<StepFailure>,
    /// What leaked.
    pub leaks: Vec<Leak>,
    /// Process names, in column order.
    pub processes: Vec<String>,
    /// Every step performed.
    pub transcript: Vec<Entry>,
    /// Wall time in microseconds.
    pub duration_us: u64,
    /// Which run of the scenario this is (1, 2, ...) under `run --repeat` or
    /// `--stress`; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u32>,
}

impl ScenarioReport {
    /// Settles the status of a scenario that ran, by the rule in
    /// [`crate::interp::verdict::scenario_status`], from its reason, leaks
    /// and failure: `xfail` is the reason of a marked step that failed as
    /// written, `xpassed` the marked steps that passed (line, reason). Sets
    /// the reason of an XFAIL or XPASS.
    pub(crate) fn settle(&mut self, xfail: Option<&str>, xpassed: &[(usize, String)]) {
        use crate::interp::verdict::{scenario_status, Ran, ScenarioStatus};
        let ran = Ran {
            harness_failed: self.reason.is_some(),
            leaked: !self.leaks.is_empty(),
            step_failed: self.failure.is_some(),
            xfail,
            xpassed,
        };
        self.status = match scenario_status(ran) {
            ScenarioStatus::Pass => Status::Pass,
            ScenarioStatus::Fail => Status::Fail,
            ScenarioStatus::Xfail { reason } => {
                self.reason = Some(reason);
                Status::Xfail
            }
            ScenarioStatus::Xpass { reason } => {
                self.reason = Some(reason);
                Status::Xpass
            }
        };
    }
}

impl ScenarioReport {
    /// The report of a file that does not parse: status [`Status::Error`],
    /// the parser's message (`file:line:col: ...`) as its reason, nothing run.
    pub fn not_parsed(file: &str, message: String, isolation: Isolation) -> ScenarioReport {
        ScenarioReport {
            file: file.to_string(),
            name: std::path::Path::new(file)
                .file_stem()
                .map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned()),
            status: Status::Error,
            isolation,
            reason: Some(message),
            failure: None,
            leaks: Vec::new(),
            processes: Vec::new(),
            transcript: Vec::new(),
            duration_us: 0,
            iteration: None,
        }
    }

    /// The one-line progress report: `PASS file [isolation] 1.2 ms`, with the
    /// reason of a skip.
    pub fn progress_line(&self) -> String {
        format!("{} {}", self.status.label(), self.progress_detail())
    }

    /// The progress line without its status tag (for a terminal that colours
    /// the tag); for a file that does not parse, the parser's message.
    pub fn progress_detail(&self) -> String {
        if let (Status::Error, Some(reason)) = (self.status, &self.reason) {
            return reason.clone();
        }
        let mut line =
            format!("{}{} [{}] {:.1} ms", self.file, self.nth(), self.isolation, self.duration_us as f64 / 1000.0);
        if let (Status::Skip | Status::Xfail | Status::Xpass, Some(reason)) = (self.status, &self.reason) {
            let _ = write!(line, ": {reason}");
        }
        line
    }

    /// ` (iteration N)` under `--repeat`/`--stress`, else nothing.
    pub fn nth(&self) -> String {
        self.iteration.map_or_else(String::new, |n| format!(" (iteration {n})"))
    }

    /// A failure of the harness itself (it could not run the scenario to its
    /// end: `EMFILE`, a supervisor that died, ...), as opposed to a step that
    /// answered wrongly or a leak: a `reason` on a failed report without a
    /// step `failure`.
    pub fn is_harness_error(&self) -> bool {
        self.status == Status::Fail && self.failure.is_none() && self.reason.is_some()
    }

    /// The one-line gist of a failure (JUnit's `message`).
    pub fn failure_message(&self) -> String {
        match (&self.failure, &self.reason, self.leaks.first()) {
            (Some(f), _, _) => format!("line {}: {}: expected {}, got {}", f.line, f.step, f.expected, f.actual),
            (None, Some(reason), _) => reason.clone(),
            (None, None, Some(l)) => format!("leak: {}", l.message),
            (None, None, None) => self.status.label().to_lowercase(),
        }
    }

    /// The whole failure story: what failed, then the transcript in columns.
    pub fn failure_text(&self) -> String {
        let mut out = String::new();
        if let (Status::Error, Some(reason)) = (self.status, &self.reason) {
            // The parser's message names the file already.
            let _ = writeln!(out, "{reason}");
            return out;
        }
        if let Some(f) = &self.failure {
            let _ = writeln!(out, "{}:{}: {}", self.file, f.line, f.step);
            let _ = writeln!(out, "  expected: {}", f.expected);
            let _ = writeln!(out, "  actual:   {}", f.actual);
        }
        if let Some(reason) = &self.reason {
            let _ = writeln!(out, "{}: {reason}", self.file);
        }
        if self.failure.is_some() && !self.leaks.is_empty() {
            let _ = writeln!(out, "  left behind when the scenario stopped (the harness removed it):");
        }
        for leak in &self.leaks {
            let indent = if self.failure.is_some() { "    " } else { "" };
            match leak.line {
                Some(line) => {
                    let _ = writeln!(out, "{indent}{}:{line}: leak: {}", self.file, leak.message);
                }
                None => {
                    let _ = writeln!(out, "{indent}{}: leak: {}", self.file, leak.message);
                }
            }
        }
        if !self.transcript.is_empty() {
            let _ = writeln!(out, "transcript ({} isolation):", self.isolation);
            let width = (140 / self.processes.len().max(1)).clamp(30, 60);
            out.push_str(&self.transcript_columns(width));
        }
        out
    }
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passed.
    pub passed: usize,
    /// Failed (harness errors included).
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Failed as marked (`xfail`).
    pub xfailed: usize,
    /// Passed though marked `xfail`.
    pub xpassed: usize,
    /// Files that do not parse ([`Status::Error`]).
    pub unparsed: usize,
}

impl Summary {
    /// Tallies reports.
    pub fn of(reports: &[ScenarioReport]) -> Summary {
        let mut s = Summary::default();
        for r in reports {
            match r.status {
                Status::Pass => s.passed += 1,
                Status::Fail => s.failed += 1,
                Status::Skip => s.skipped += 1,
                Status::Xfail => s.xfailed += 1,
                Status::Xpass => s.xpassed += 1,
                Status::Error => s.unparsed += 1,
            }
        }
        s
    }
}

/// What a run was, beside its reports: for the JSON summary and JUnit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The isolation the run resolved to.
    pub isolation: Isolation,
    /// Scenarios at once.
    pub jobs: usize,
    /// When the first scenario started.
    pub started: SystemTime,
    /// Wall time of the whole run.
    pub duration: Duration,
}

/// The JSON document's layout version: bumped when a field changes meaning
/// or goes away (added fields do not bump it).
pub const JSON_VERSION: u32 = 1;

/// All reports as one JSON document:
/// `{"version", "summary": {counts, errors, total, duration_s, isolation, jobs, started[, iterations]}, "scenarios"}`;
/// under `--repeat`/`--stress` every run of a scenario is one report with its `"iteration"`.
pub fn render_json(reports: &[ScenarioReport], run: &RunInfo) -> String {
    #[derive(Serialize)]
    struct RunSummary {
        #[serde(flatten)]
        counts: Summary,
        /// Harness errors among the failed.
        errors: usize,
        total: usize,
        duration_s: f64,
        isolation: Isolation,
        jobs: usize,
        started: String,
        /// Under `--repeat`/`--stress`: how many times the scenarios ran.
        #[serde(skip_serializing_if = "Option::is_none")]
        iterations: Option<u32>,
    }
    #[derive(Serialize)]
    struct Doc<'a> {
        version: u32,
        summary: RunSummary,
        scenarios: &'a [ScenarioReport],
    }
    let summary = RunSummary {
        counts: Summary::of(reports),
        errors: reports.iter().filter(|r| r.is_harness_error()).count(),
        total: reports.len(),
        duration_s: run.duration.as_secs_f64(),
        isolation: run.isolation,
        jobs: run.jobs,
        started: chrono::DateTime::<chrono::Utc>::from(run.started)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        iterations: reports.iter().filter_map(|r| r.iteration).max(),
    };
    let mut doc = serde_json::to_string_pretty(&Doc { version: JSON_VERSION, summary, scenarios: reports })
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    doc.push('\n');
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: Status) -> ScenarioReport {
        ScenarioReport {
            file: "scenarios/x.scn".into(),
            name: "x".into(),
            status,
            isolation: Isolation::Namespace,
            reason: None,
            failure: (status == Status::Fail).then(|| StepFailure {
                line: 7,
                process: "B".into(),
                step: "B: read m 0 5 => \"hello\"".into(),
                expected: "\"hello\"".into(),
                actual: "\"hell<o>\"".into(),
            }),
            leaks: vec![],
            processes: vec!["A".into(), "B".into()],
            transcript: vec![
                Entry {
                    line: 3,
                    process: "A".into(),
                    call: "shmget(IPC_PRIVATE, 4096, IPC_CREAT|0600)".into(),
                    answer: "0".into(),
                    ok: true,
                    pid: None,
                    started_us: Some(10),
                    ended_us: Some(90),
                    overlapped: false,
                },
                Entry {
                    line: 7,
                    process: "B".into(),
                    call: "read m[0..+5]".into(),
                    answer: "\"hell<o>\"".into(),
                    ok: false,
                    pid: None,
                    started_us: Some(100),
                    ended_us: Some(180),
                    overlapped: true,
                },
            ],
            duration_us: 1500,
            iteration: None,
        }
    }

    #[test]
    fn transcript_has_a_column_per_process() {
        let text = report(Status::Fail).failure_text();
        assert!(text.starts_with("scenarios/x.scn:7: B: read m 0 5"), "{text}");
        assert!(!text.contains("B: B:"), "{text}");
        let row = text.lines().find(|l| l.contains("read m[0..+5]")).unwrap();
        assert!(row.starts_with("X    &7 |"), "an overlap is marked `&` by the line: {row}");
        // B's column comes after A's empty one.
        assert!(row.find("read").unwrap() > row.find('|').unwrap() + 10, "{row}");
        let row = text.lines().find(|l| l.contains("shmget")).unwrap();
        assert!(row.starts_with("      3 |"), "no mark without an overlap: {row}");
    }

    #[test]
    fn junit_escapes_and_counts() {
        let run = RunInfo {
            isolation: Isolation::Namespace,
            jobs: 2,
            started: SystemTime::UNIX_EPOCH,
            duration: Duration::from_micros(1_234_567),
        };
        let mut error = report(Status::Fail);
        error.failure = None;
        error.reason = Some("cannot fork: EMFILE".into());
        let xml = render_junit(&[report(Status::Pass), report(Status::Fail), report(Status::Skip), error], &run);
        assert!(
            xml.contains("<testsuites name=\"shm-harness\" tests=\"4\" failures=\"1\" errors=\"1\" time=\"1.235\">"),
            "{xml}"
        );
        assert!(xml.contains("tests=\"4\" skipped=\"1\" errors=\"1\" failures=\"1\""), "{xml}");
        assert!(xml.contains("<error message=\"cannot fork: EMFILE\" type=\"HarnessError\">"), "{xml}");
        assert!(xml.contains("<failure message=\"line 7:"), "{xml}");
        assert!(xml.contains("classname=\"scenarios\""), "{xml}");
        assert!(xml.contains("&lt;o&gt;") && !xml.contains("<o>"));
        let json: serde_json::Value = serde_json::from_str(&render_json(&[report(Status::Pass)], &run)).unwrap();
        assert_eq!(json["version"], JSON_VERSION);
        assert_eq!(json["summary"]["passed"], 1);
        assert_eq!(json["summary"]["isolation"], "namespace");
        assert_eq!(json["summary"]["duration_s"], 1.234567);
        assert_eq!(json["summary"]["started"], "1970-01-01T00:00:00.000Z");
    }
}
