//! JUnit XML through `quick-junit` (cargo-nextest's writer), shaped to pass
//! the Jenkins/Surefire `junit-10.xsd` (the schema pytest validates against;
//! `harness/tests/data/junit-10.xsd`): one `<testsuite>`, one `<testcase>`
//! per scenario, `<failure>` for a step that answered wrongly or a leak,
//! `<error>` for a harness error or a file that does not parse (type
//! `ParseError`, its message `file:line:col: ...`), `<skipped>` with the reason.

use std::path::Path;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::{FailOn, RunInfo, ScenarioReport, Status};

/// All reports as JUnit XML.
///
/// A test case is named by the scenario's file stem and classed by its
/// folder (`scenarios/x.scn` and `./scenarios/x.scn`: classname
/// `scenarios`, name `x`; `x.scn`: classname `.`), so two files of the same
/// name in different folders stay apart. Characters XML 1.0
/// forbids (control characters other than tab, newline and carriage
/// return; U+FFFE, U+FFFF) are written as visible escapes (`\x01`) instead.
pub fn render_junit(reports: &[ScenarioReport], run: &RunInfo) -> String {
    render_junit_with(reports, run, FailOn::default())
}

/// [`render_junit`], with `--strict` (`fail_on.xpass`): an XPASS is a
/// `<failure>` (type `Xpass`) instead of a passing test case with the news
/// in `<system-out>`; with `--fail-on-skip` (`fail_on.skip`): a SKIP is a
/// `<failure>` (type `Skip`, the reason its message) instead of `<skipped>`.
/// An XFAIL is always `<skipped>`, its message the reason and the step's diff.
pub fn render_junit_with(reports: &[ScenarioReport], run: &RunInfo, fail_on: FailOn) -> String {
    let started = chrono::DateTime::<chrono::Utc>::from(run.started).fixed_offset();
    let mut suite = TestSuite::new("shm-harness");
    suite.set_timestamp(started).set_time(run.duration);
    suite.add_property(Property::new("isolation", run.isolation.to_string()));
    suite.add_property(Property::new("jobs", run.jobs.to_string()));
    suite.add_property(Property::new("shm-harness-version", env!("CARGO_PKG_VERSION")));
    for r in reports {
        suite.add_test_case(test_case(r, fail_on));
    }
    let mut report = Report::new("shm-harness");
    report.set_time(run.duration);
    report.add_test_suite(suite);
    let xml = match report.to_string() {
        Ok(xml) => xml,
        // quick-junit fails only on an I/O error of its writer, and a String cannot fail.
        Err(e) => unreachable!("serializing JUnit into memory failed: {e}"),
    };
    without_root_skipped(xml)
}

fn test_case(r: &ScenarioReport, fail_on: FailOn) -> TestCase {
    let strict = fail_on.xpass;
    let status = match r.status {
        Status::Pass => TestCaseStatus::success(),
        Status::Xpass if !strict => TestCaseStatus::success(),
        Status::Xpass => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_type("Xpass").set_message(visible(r.reason.as_deref().unwrap_or("XPASS")));
            s
        }
        Status::Xfail => {
            let mut s = TestCaseStatus::skipped();
            s.set_type("Xfail").set_message(visible(&format!(
                "{}: {}",
                r.reason.as_deref().unwrap_or("xfail"),
                r.failure_message()
            )));
            s.set_description(visible(&r.failure_text()));
            s
        }
        Status::Skip if fail_on.skip => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_type("Skip").set_message(visible(&format!(
                "skipped, and --fail-on-skip makes a skip a failure: {}",
                r.reason.as_deref().unwrap_or("no reason given")
            )));
            s
        }
        Status::Skip => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(visible(r.reason.as_deref().unwrap_or("skipped")));
            s
        }
        Status::Error => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_type("ParseError")
                .set_message(visible(r.reason.as_deref().unwrap_or("does not parse")))
                .set_description(visible(&r.failure_text()));
            s
        }
        Status::Fail => {
            let (kind, ty) = if r.is_harness_error() {
                (NonSuccessKind::Error, "HarnessError")
            } else if r.failure.is_some() {
                (NonSuccessKind::Failure, "StepFailure")
            } else {
                (NonSuccessKind::Failure, "Leak")
            };
            let mut s = TestCaseStatus::non_success(kind);
            s.set_type(ty).set_message(visible(&r.failure_message())).set_description(visible(&r.failure_text()));
            s
        }
    };
    // The folder as written, without `.` components: `run .` and `run a`
    // class `./a/x.scn` and `a/x.scn` alike, so a test's history (kept by
    // classname and name) does not depend on how the run was started.
    let folder: std::path::PathBuf = Path::new(&r.file)
        .parent()
        .map(|dir| dir.components().filter(|c| *c != std::path::Component::CurDir).collect())
        .unwrap_or_default();
    let classname = match folder.to_string_lossy() {
        dir if dir.is_empty() => ".".to_string(),
        dir => dir.into_owned(),
    };
    // Under --repeat/--stress each run is a test case of its own, named as
    // pytest-repeat names them: `x[3]`.
    let name = r.iteration.map_or_else(|| r.name.clone(), |n| format!("{}[{n}]", r.name));
    let mut case = TestCase::new(visible(&name), status);
    if let (Status::Xpass, false, Some(reason)) = (r.status, strict, &r.reason) {
        case.set_system_out(visible(reason));
    }
    case.set_classname(visible(&classname));
    case.set_time(std::time::Duration::from_micros(r.duration_us));
    case
}

/// `s` with every character XML 1.0 cannot carry written as `\xNN` /
/// `\u{FFFE}` (quick-junit would silently drop them).
fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{fffe}' | '\u{ffff}' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// quick-junit writes `skipped` on `<testsuites>`, which `junit-10.xsd` does
/// not allow there (it stays on `<testsuite>`, where it does): removed from
/// the root tag only.
fn without_root_skipped(xml: String) -> String {
    let Some(start) = xml.find("<testsuites") else { return xml };
    let Some(end) = xml[start..].find('>').map(|e| start + e) else { return xml };
    let tag = &xml[start..end];
    let Some(attr) = tag.find(" skipped=\"") else { return xml };
    let value_start = start + attr + " skipped=\"".len();
    let Some(close) = xml[value_start..end].find('"') else { return xml };
    let mut out = String::with_capacity(xml.len());
    out.push_str(&xml[..start + attr]);
    out.push_str(&xml[value_start + close + 1..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_become_visible() {
        assert_eq!(visible("a\u{1}b\u{0}c\td\u{1b}[31m\u{fffe}"), "a\\x01b\\x00c\td\\x1b[31m\\u{fffe}");
    }

    #[test]
    fn root_skipped_goes_and_only_there() {
        let xml =
            "<?xml?>\n<testsuites name=\"n\" tests=\"2\" skipped=\"1\" failures=\"0\">\n<testsuite skipped=\"1\">";
        assert_eq!(
            without_root_skipped(xml.to_string()),
            "<?xml?>\n<testsuites name=\"n\" tests=\"2\" failures=\"0\">\n<testsuite skipped=\"1\">"
        );
    }
}
