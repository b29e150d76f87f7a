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

#[test]
fn repeat_reports_every_iteration_of_a_passing_scenario() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.scn", PASS);
    let out = harness(&["run", "--repeat", "3", "--format", "junit", "--output", "j.xml", "a.scn"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let said = text(&out.stdout);
    for n in 1..=3 {
        assert!(said.contains(&format!("PASS a.scn (iteration {n}) [")), "{said}");
    }
    assert!(said.contains("Summary 3 runs (3 iterations of 1 scenario) in "), "{said}");
    let xml = std::fs::read_to_string(dir.path().join("j.xml")).unwrap();
    let report = Report::deserialize_from_str(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let names: Vec<&str> = report.test_suites[0].test_cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a[1]", "a[2]", "a[3]"], "{xml}");
    let out = harness(&["run", "--repeat", "2", "--format", "json", "a.scn"], dir.path());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", all(&out)));
    assert_eq!(doc["summary"]["iterations"], 2, "{doc}");
    let its: Vec<u64> = doc["scenarios"].as_array().unwrap().iter().map(|s| s["iteration"].as_u64().unwrap()).collect();
    assert_eq!(its, [1, 2], "{doc}");
    // --stress runs at least once, numbered.
    let out = harness(&["run", "--stress", "1ms", "a.scn"], dir.path());
    assert!(text(&out.stdout).contains("PASS a.scn (iteration 1) ["), "{}", all(&out));
    assert_eq!(harness(&["run", "--repeat", "0", "a.scn"], dir.path()).status.code(), Some(2));
}

#[test]
fn repeat_counts_failed_iterations_and_shows_the_first_failing_transcript() {
    let dir = tempfile::tempdir().unwrap();
    // Every second run fails: the 2nd and the 4th (a counter in a file).
    let count = dir.path().join("count");
    let flaky = format!(
        "process A\nA: run \"sh -c 'n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}; [ $((n % 2)) -eq 0 ]'\" => status 0\n",
        c = count.display()
    );
    write(dir.path(), "flaky.scn", &flaky);
    let out = harness(&["run", "--repeat", "4", "flaky.scn"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let said = text(&out.stdout);
    assert!(
        said.contains("FAIL flaky.scn (iteration 2) [") && said.contains("PASS flaky.scn (iteration 3) ["),
        "{said}"
    );
    assert!(said.contains(": 2 passed, 2 failed, 0 skipped"), "{said}");
    assert!(said.contains("  FAIL flaky.scn:2 [2 of 4 iterations; first: iteration 2]"), "{said}");
    // The first failing run's transcript, once.
    assert_eq!(said.matches("transcript (").count(), 1, "{said}");
    assert!(said.contains("(iteration 2, the first of 2 failing of 4;"), "{said}");
    std::fs::remove_file(&count).unwrap();
    let out = harness(&["run", "--repeat", "4", "--format", "json", "flaky.scn"], dir.path());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", all(&out)));
    let runs: Vec<(u64, &str)> = doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["iteration"].as_u64().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(runs, [(1, "pass"), (2, "fail"), (3, "pass"), (4, "fail")], "{doc}");
}

/// The interrupts a run takes are given back when it ends, so the next
/// iteration takes them again: SIGINT in iteration 2 still stops the run.
/// (`a-fast` reports while `b-slow` runs, one at a time: the signal comes
/// while iteration 2's `b-slow` sleeps.)
#[test]
fn an_interrupt_stops_a_later_iteration() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a-fast.scn", PASS);
    write(dir.path(), "b-slow.scn", "process A\nA: run \"sleep 2\" => status 0\n");
    let mut child =
        common::interruptible(&mut common::command(&["run", "--jobs", "1", "--repeat", "3", "."], dir.path()))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let second = lines.by_ref().map(|l| l.unwrap()).find(|l| l.contains("a-fast.scn (iteration 2)"));
    assert!(second.is_some_and(|l| l.starts_with("PASS")), "iteration 2 of a-fast did not pass");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGINT), "the run went on after SIGINT: {status:?}\n{}", rest.join("\n"));
}

/// `shm-harness ARGS` in `dir` with the state directory found as usual
/// (`$SHM_HARNESS_STATE_DIR` unset): `$XDG_RUNTIME_DIR/shm-harness`, the
/// runtime directory being `runtime`.
fn with_runtime_dir(args: &[&str], dir: &std::path::Path, runtime: &std::path::Path) -> std::process::Output {
    let prefix: &[&str] =
        if nix::unistd::Uid::effective().is_root() { &["unshare", "-i"] } else { &["unshare", "-r", "-i"] };
    let mut c = std::process::Command::new(prefix[0]);
    c.args(&prefix[1..])
        .arg(common::bin())
        .args(args)
        .current_dir(dir)
        .env_remove("SHM_HARNESS_STATE_DIR")
        .env("XDG_RUNTIME_DIR", runtime);
    c.output().unwrap()
}

#[test]
fn no_run_leaves_an_empty_state_directory_and_kept_journals_are_mentioned() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let state = runtime.path().join("shm-harness");
    write(dir.path(), "a.scn", PASS);
    if std::process::Command::new("unshare").args(["-r", "-i", "true"]).output().is_err() {
        eprintln!("skipped: no unshare (util-linux)");
        return;
    }
    // Host isolation (in an IPC namespace made for the test) keeps a journal
    // while it runs, then deletes it: the directory goes with it.
    let out = with_runtime_dir(&["run", "--isolation", "host", "a.scn"], dir.path(), runtime.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(text(&out.stdout).contains("PASS a.scn [host]"), "{}", all(&out));
    assert!(!state.exists(), "a host run left {} behind", state.display());
    // Namespace isolation keeps no journal: the sweep's directory goes too.
    let out = with_runtime_dir(&["run", "a.scn"], dir.path(), runtime.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(!state.exists(), "a namespace run left {} behind", state.display());
    let out = with_runtime_dir(&["sweep"], dir.path(), runtime.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(!state.exists(), "a sweep left {} behind", state.display());

    // A dead run's journal whose anchor is not here (another namespace):
    // kept, directory and all, and a run's start says so in one line.
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let anchor = r#"{"anchor": {"shmid": 2147483000, "cpid": 1, "ctime": 1, "key": 1234567, "ns": [4, 1]}}"#;
    std::fs::write(state.join("run-424246-1.journal"), format!("{anchor}\n")).unwrap();
    let out = with_runtime_dir(&["run", "a.scn"], dir.path(), runtime.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let err = text(&out.stderr);
    let said: Vec<&str> = err.lines().filter(|l| l.contains("journal")).collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(
        said[0].contains(&format!("1 journal(s) of dead runs in other IPC namespaces kept in {}", state.display())),
        "{err}"
    );
    assert!(state.join("run-424246-1.journal").exists(), "{err}");
}
