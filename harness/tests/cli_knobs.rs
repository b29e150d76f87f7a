//! The knobs of `run` a test runner has: a file that does not parse is an
//! error case in every report (the others still run), `--fail-on-skip`,
//! repeated `--filter` and `--exclude`, `--repeat` and `--stress`.

use quick_junit::{NonSuccessKind, Report, TestCaseStatus};

mod common;
use common::{all, harness, text, write};

const PASS: &str = "process A\nA: create s = private size 1\nA: rm s\n";
const TYPO: &str = "process A\nA: create s = private size 1\nA: frobnicate s\n";

/// A folder with two good files around one with a typo on line 3.
fn typo_among_good() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a-good.scn", PASS);
    write(dir.path(), "b-typo.scn", TYPO);
    write(dir.path(), "c-good.scn", PASS);
    dir
}

#[test]
fn a_file_that_does_not_parse_is_a_junit_error_and_the_others_run() {
    let dir = typo_among_good();
    let out = harness(&["run", "--format", "junit", "--output", "j.xml", "."], dir.path());
    assert_eq!(out.status.code(), Some(2), "a file that does not parse is bad input: {}", all(&out));
    let xml = std::fs::read_to_string(dir.path().join("j.xml")).unwrap();
    let report = Report::deserialize_from_str(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let suite = &report.test_suites[0];
    let cases: Vec<(&str, &TestCaseStatus)> = suite.test_cases.iter().map(|c| (c.name.as_str(), &c.status)).collect();
    assert_eq!(cases.len(), 3, "{xml}");
    assert!(matches!(cases[0], ("a-good", TestCaseStatus::Success { .. })), "{xml}");
    assert!(matches!(cases[2], ("c-good", TestCaseStatus::Success { .. })), "{xml}");
    let ("b-typo", TestCaseStatus::NonSuccess { kind: NonSuccessKind::Error, message, ty, .. }) = cases[1] else {
        panic!("the typo'd file is not an <error>: {xml}")
    };
    assert_eq!(ty.as_deref(), Some("ParseError"), "{xml}");
    let message = message.as_deref().unwrap_or_default();
    assert!(message.starts_with("./b-typo.scn:3:4: unknown operation `frobnicate`"), "{message}");
    assert_eq!((suite.tests, suite.errors, suite.failures), (3, 1, 0), "{xml}");
}

#[test]
fn a_file_that_does_not_parse_is_an_error_in_json_and_text() {
    let dir = typo_among_good();
    let out = harness(&["run", "--format", "json", "."], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", all(&out)));
    let statuses: Vec<&str> =
        doc["scenarios"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["pass", "error", "pass"], "{doc}");
    let reason = doc["scenarios"][1]["reason"].as_str().unwrap();
    assert!(reason.starts_with("./b-typo.scn:3:4: unknown operation `frobnicate`"), "{reason}");
    assert_eq!(doc["summary"]["unparsed"], 1, "{doc}");
    assert_eq!(doc["summary"]["passed"], 2, "{doc}");

    let out = harness(&["run", "-q", "."], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let said = text(&out.stdout);
    assert!(said.contains("ERROR ./b-typo.scn:3:4: unknown operation `frobnicate`"), "{said}");
    assert!(said.contains(": 2 passed, 0 failed, 0 skipped, 1 not parsed ("), "{said}");
    // `check` still stops before running anything.
    let out = harness(&["check", "."], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(!all(&out).contains("PASS"), "{}", all(&out));
}

/// Skipped everywhere: the program does not exist.
const SKIPPED: &str = "needs program \"no-such-program-shm-harness\"\nprocess A\nA: segments => 0\n";

#[test]
fn fail_on_skip_makes_a_skip_a_failure_and_q_names_each_skip() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.scn", PASS);
    write(dir.path(), "s.scn", SKIPPED);
    // By default a skip passes; -q still names it, with its reason.
    let out = harness(&["run", "-q", "."], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let said = text(&out.stdout);
    assert!(said.contains("\n  SKIP ./s.scn: needs program `no-such-program-shm-harness`"), "{said}");
    assert!(!said.contains("--fail-on-skip"), "{said}");

    let out = harness(&["run", "-q", "--fail-on-skip", "--format", "junit", "--output", "j.xml", "."], dir.path());
    assert_eq!(out.status.code(), Some(1), "a skip fails the run: {}", all(&out));
    let said = text(&out.stdout);
    assert!(said.contains("  SKIP ./s.scn: needs program") && said.contains("(failing: --fail-on-skip)"), "{said}");
    let xml = std::fs::read_to_string(dir.path().join("j.xml")).unwrap();
    let report = Report::deserialize_from_str(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let suite = &report.test_suites[0];
    let skip = suite.test_cases.iter().find(|c| c.name.as_str() == "s").unwrap();
    let TestCaseStatus::NonSuccess { kind: NonSuccessKind::Failure, ty, message, .. } = &skip.status else {
        panic!("under --fail-on-skip a skip is a <failure>: {xml}")
    };
    assert_eq!(ty.as_deref(), Some("Skip"), "{xml}");
    assert!(message.as_deref().unwrap_or_default().contains("needs program"), "{xml}");
    assert_eq!((suite.failures, suite.skipped), (1, 0), "{xml}");
}

#[test]
fn filters_are_ored_excludes_win_and_both_see_the_listed_path() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["scenarios/happy/a.scn", "scenarios/happy/b.scn", "scenarios/sad/c.scn", "scenarios/d.scn"] {
        write(dir.path(), name, PASS);
    }
    let list = |args: &[&str]| {
        let mut all_args = vec!["run", "--list"];
        all_args.extend_from_slice(args);
        all_args.push("scenarios/");
        let out = harness(&all_args, dir.path());
        (out.status.code(), text(&out.stdout))
    };
    let (_, listed) = list(&[]);
    assert_eq!(listed, "scenarios/d.scn\nscenarios/happy/a.scn\nscenarios/happy/b.scn\nscenarios/sad/c.scn\n");
    // The folder given is part of the path matched, as --list prints it.
    assert_eq!(
        list(&["--filter", "scenarios/happy"]),
        (Some(0), "scenarios/happy/a.scn\nscenarios/happy/b.scn\n".into())
    );
    // Two filters: either.
    assert_eq!(
        list(&["--filter", "sad/", "--filter", "/d.scn"]),
        (Some(0), "scenarios/d.scn\nscenarios/sad/c.scn\n".into())
    );
    // An exclusion wins over a filter, and works alone.
    assert_eq!(list(&["--filter", "happy", "--exclude", "b.scn"]), (Some(0), "scenarios/happy/a.scn\n".into()));
    assert_eq!(list(&["--exclude", "happy", "--exclude", "sad"]), (Some(0), "scenarios/d.scn\n".into()));
    let out = harness(&["run", "--exclude", "scenarios", "scenarios/"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(all(&out).contains("has none of `scenarios` in its path (--exclude)"), "{}", all(&out));
    // run runs what --list lists.
    let out = harness(&["run", "--filter", "happy/a", "--filter", "sad", "scenarios/"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let said = text(&out.stdout);
    assert!(said.contains("PASS scenarios/happy/a.scn") && said.contains("PASS scenarios/sad/c.scn"), "{said}");
    assert!(said.contains("Summary 2 scenarios"), "{said}");
}
