//! What a scenario run produced, and how it is shown: a progress line, a
//! transcript with one column per process, JSON and JUnit XML.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every step answered as expected and nothing leaked.
    Pass,
    /// A step did not, or something leaked, or the harness failed.
    Fail,
    /// A need of the scenario is not available here.
    Skip,
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
}

impl ScenarioReport {
    /// The one-line progress report.
    pub fn progress_line(&self) -> String {
        let tag = match self.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        let mut line = format!("{tag} {} [{}] {:.1} ms", self.file, self.isolation, self.duration_us as f64 / 1000.0);
        if let (Status::Skip, Some(reason)) = (self.status, &self.reason) {
            let _ = write!(line, ": {reason}");
        }
        line
    }

    /// The whole failure story: what failed, then the transcript in columns.
    pub fn failure_text(&self) -> String {
        let mut out = String::new();
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

    /// The transcript laid out as one column per process.
    pub fn transcript_columns(&self, width: usize) -> String {
        let mut out = String::new();
        let cols = &self.processes;
        let _ = write!(out, "  {:>5} ", "line");
        for p in cols {
            let _ = write!(out, "| {p:<width$} ");
        }
        out.push('\n');
        let _ = write!(out, "  {:->5}-", "");
        for _ in cols {
            let _ = write!(out, "+-{:-<width$}-", "");
        }
        out.push('\n');
        for e in &self.transcript {
            let mark = if e.ok { ' ' } else { 'X' };
            let lines: Vec<String> =
                wrap(&e.call, width).into_iter().chain(wrap(&format!("-> {}", e.answer), width)).collect();
            for (row, text) in lines.iter().enumerate() {
                if row == 0 {
                    let _ = write!(out, "{mark} {:>5} ", e.line);
                } else {
                    let _ = write!(out, "  {:>5} ", "");
                }
                for p in cols {
                    let cell = if *p == e.process { text.as_str() } else { "" };
                    let _ = write!(out, "| {cell:<width$} ");
                }
                out.truncate(out.trim_end().len());
                out.push('\n');
            }
        }
        out
    }
}

/// Splits `s` into pieces of at most `width` characters, continuation pieces indented.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= width {
        return vec![s.to_string()];
    }
    let mut out = vec![chars[..width].iter().collect::<String>()];
    for chunk in chars[width..].chunks(width.saturating_sub(3).max(1)) {
        out.push(format!("   {}", chunk.iter().collect::<String>()));
    }
    out
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
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
            }
        }
        s
    }
}

/// All reports as one JSON document.
pub fn render_json(reports: &[ScenarioReport]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        summary: Summary,
        scenarios: &'a [ScenarioReport],
    }
    serde_json::to_string_pretty(&Doc { summary: Summary::of(reports), scenarios: reports })
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
}

/// All reports as JUnit XML: one test case per scenario.
pub fn render_junit(reports: &[ScenarioReport]) -> String {
    let s = Summary::of(reports);
    let total: f64 = reports.iter().map(|r| r.duration_us as f64 / 1e6).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"shm-harness\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{total:.6}\">",
        reports.len(),
        s.failed,
        s.skipped
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"scenarios\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{total:.6}\">",
        reports.len(),
        s.failed,
        s.skipped
    );
    for r in reports {
        let _ = write!(
            out,
            "    <testcase classname=\"scenarios.{}\" name=\"{}\" file=\"{}\" time=\"{:.6}\"",
            xml(&r.isolation.to_string()),
            xml(&r.name),
            xml(&r.file),
            r.duration_us as f64 / 1e6
        );
        match r.status {
            Status::Pass => out.push_str("/>\n"),
            Status::Skip => {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml(r.reason.as_deref().unwrap_or(""))
                );
            }
            Status::Fail => {
                let message = match (&r.failure, r.leaks.first(), &r.reason) {
                    (Some(f), _, _) => {
                        format!("line {}: {}: expected {}, got {}", f.line, f.step, f.expected, f.actual)
                    }
                    (None, Some(l), _) => format!("leak: {}", l.message),
                    (None, None, Some(reason)) => reason.clone(),
                    _ => "failed".into(),
                };
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"ScenarioFailure\">{}</failure>\n    </testcase>",
                    xml(&message),
                    xml(&r.failure_text())
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {
                let _ = write!(out, "&#x{:x};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
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
                },
                Entry {
                    line: 7,
                    process: "B".into(),
                    call: "read m[0..+5]".into(),
                    answer: "\"hell<o>\"".into(),
                    ok: false,
                },
            ],
            duration_us: 1500,
        }
    }

    #[test]
    fn transcript_has_a_column_per_process() {
        let text = report(Status::Fail).failure_text();
        assert!(text.starts_with("scenarios/x.scn:7: B: read m 0 5"), "{text}");
        assert!(!text.contains("B: B:"), "{text}");
        let row = text.lines().find(|l| l.contains("read m[0..+5]")).unwrap();
        assert!(row.starts_with('X'), "{row}");
        // B's column comes after A's empty one.
        assert!(row.find("read").unwrap() > row.find('|').unwrap() + 10, "{row}");
    }

    #[test]
    fn junit_escapes_and_counts() {
        let xml = render_junit(&[report(Status::Pass), report(Status::Fail), report(Status::Skip)]);
        assert!(xml.contains("tests=\"3\" failures=\"1\" skipped=\"1\""));
        assert!(xml.contains("&lt;o&gt;") && !xml.contains("<o>"));
        let json: serde_json::Value = serde_json::from_str(&render_json(&[report(Status::Pass)])).unwrap();
        assert_eq!(json["summary"]["passed"], 1);
    }
}
