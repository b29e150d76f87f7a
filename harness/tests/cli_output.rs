//! What the command line prints and writes: argument errors, the report
//! file, closed pipes, colour, the summary, JSON and JUnit (validated
//! against the Jenkins/Surefire schema), and `ls` against `lsipc`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use shm_harness::report::{render_junit, Entry, Leak, RunInfo, StepFailure};
use shm_harness::runner::{Isolation, ScenarioReport, Status};

mod common;
use common::{all, command, harness, text};

const PASS: &str = "process A\nA: create s = private size 100\nA: rm s\n";
const WRONG: &str = "process A, B\nA: create s = private size 100\nA: attach w = s\nA: write w 0 \"hello\"\n\
B: attach m = s\nB: read m 0 5 => \"hellp\"\nB: detach m\nA: detach w\nA: rm s\n";
const NEEDS_ROOT_AND_NS: &str = "needs root, namespace\nprocess A\nA: segments => 0\n";

/// A folder with the given scenario files.
fn suite(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir
}

#[test]
fn no_files_and_unreadable_files_are_errors_that_name_them() {
    let dir = suite(&[("p.scn", PASS), ("empty/README.md", "not a scenario")]);
    for verb in ["check", "run"] {
        let out = harness(&[verb, "empty"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{verb}: {}", all(&out));
        assert!(text(&out.stderr).contains("no scenario file (.scn) in empty"), "{verb}: {}", all(&out));
        // A file the kernel refuses to read: named, without a position.
        let out = harness(&[verb, "/proc/self/clear_refs"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{verb}: {}", all(&out));
        assert!(all(&out).contains("/proc/self/clear_refs: cannot read the file: "), "{verb}: {}", all(&out));
        assert!(!all(&out).contains(":0:0"), "{verb}: {}", all(&out));
    }
    let out = harness(&["run", "--filter", "zzz", "."], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(
        text(&out.stderr).contains("no scenario file (.scn) in . has `zzz` in its path (--filter)"),
        "{}",
        all(&out)
    );
}

#[test]
fn check_and_list_count_in_words() {
    let one = "process A\nA: segments => 0\n";
    let dir = suite(&[("one.scn", one), ("p.scn", PASS)]);
    let out = harness(&["check", "one.scn", "p.scn"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert_eq!(text(&out.stdout), "ok    one.scn (1 process, 1 step)\nok    p.scn (1 process, 2 steps)\n");
    let out = harness(&["run", "--list", "-v", "one.scn"], dir.path());
    assert_eq!(text(&out.stdout), "one.scn (1 process, 1 step)\n", "{}", all(&out));
}

#[test]
fn jobs_zero_and_timeout_zero_are_usage_errors() {
    let dir = suite(&[("p.scn", PASS)]);
    let out = harness(&["run", "--jobs", "0", "p.scn"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(text(&out.stderr).contains("--jobs must be at least 1"), "{}", all(&out));
    for t in ["0", "0ms", "0s"] {
        let out = harness(&["run", "--timeout", t, "p.scn"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", all(&out));
        assert!(text(&out.stderr).contains("the timeout must be above 0"), "{t}: {}", all(&out));
    }
    for (t, says) in [
        ("1e30s", "too long a timeout (at most 999999999s)"),
        ("0.5ms", "milliseconds must be whole"),
        ("--timeout=-2s", "the timeout must be above 0"),
    ] {
        let args: Vec<&str> =
            if t.starts_with("--") { vec!["run", t, "p.scn"] } else { vec!["run", "--timeout", t, "p.scn"] };
        let out = harness(&args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", all(&out));
        assert!(text(&out.stderr).contains(says), "{t}: {}", all(&out));
    }
    let out = harness(&["run", "--jobs", "lots", "p.scn"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(text(&out.stderr).contains("expected a whole number from 1 to 256"), "{}", all(&out));
    // The control: a good value runs.
    let out = harness(&["run", "--jobs", "1", "--timeout", "5s", "p.scn"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
}

#[test]
fn huge_jobs_are_capped_and_said_so() {
    let dir = suite(&[("p.scn", PASS)]);
    let out = harness(&["run", "--jobs", "100000", "p.scn"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(text(&out.stdout).contains("note: --jobs 100000 capped to 256"), "{}", all(&out));
    let out = harness(&["run", "--jobs", "256", "p.scn"], dir.path());
    assert!(!all(&out).contains("capped"), "{}", all(&out));
}

#[test]
fn non_utf8_input_is_reported_at_its_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.scn"), b"process A\nA: \xc3\xa9\xff segments => 0\n").unwrap();
    for verb in ["check", "run"] {
        let out = harness(&[verb, "bad.scn"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", all(&out));
        assert!(all(&out).contains("bad.scn:2:5: not UTF-8: byte 0xff at byte offset 15"), "{verb}: {}", all(&out));
    }
}

#[test]
fn the_report_file_is_opened_before_anything_runs() {
    let dir = suite(&[("p.scn", PASS)]);
    for (output, why) in [("missing/dir/r.xml", "No such file or directory"), (".", "Is a directory")] {
        let out = harness(&["run", "--format", "junit", "--output", output, "p.scn"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", all(&out));
        let s = all(&out);
        assert!(s.contains(&format!("cannot create the report file {output}")) && s.contains(why), "{s}");
        assert!(!s.contains("Starting") && !s.contains("PASS"), "ran before failing: {s}");
    }
    if !nix::unistd::Uid::effective().is_root() {
        // Root writes read-only files anyway; anyone else must be stopped.
        let ro = dir.path().join("ro.xml");
        std::fs::write(&ro, "old").unwrap();
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
        let out = harness(&["run", "--output", "ro.xml", "p.scn"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", all(&out));
        assert!(all(&out).contains("Permission denied") && !all(&out).contains("PASS"), "{}", all(&out));
    }
}

#[test]
fn every_format_writes_to_the_output_file() {
    let dir = suite(&[("p.scn", PASS), ("w.scn", WRONG)]);
    std::fs::write(dir.path().join("stale"), "a stale report from before").unwrap();
    for (format, marker) in [("text", "Summary 2 scenarios"), ("json", "\"version\": 1"), ("junit", "<testsuites")] {
        let out = harness(&["run", "--format", format, "--output", "stale", "."], dir.path());
        assert_eq!(out.status.code(), Some(1), "{format}: {}", all(&out));
        let written = std::fs::read_to_string(dir.path().join("stale")).unwrap();
        assert!(written.contains(marker) && !written.contains("stale report"), "{format}: {written}");
        assert!(!written.contains('\u{1b}'), "{format}: colour in the file: {written}");
        // Progress still goes to the terminal (stdout), the report only to the file.
        assert!(text(&out.stdout).contains("FAIL"), "{format}: {}", all(&out));
        if format != "text" {
            assert!(!text(&out.stdout).contains(marker), "{format}: {}", all(&out));
        }
    }
}

/// Spawns `args` with stdout a pipe whose reader is gone after `keep` lines.
fn closed_pipe(dir: &Path, args: &[&str], keep: usize) -> std::process::ExitStatus {
    let mut child = command(args, dir).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    for _ in 0..keep {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
    }
    drop(reader);
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    out.status
}

#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    // Enough scenarios that the writer outlives the reader.
    let files: Vec<(String, &str)> = (0..20).map(|i| (format!("p{i:02}.scn"), PASS)).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let dir = suite(&files);
    for (args, keep) in [(&["run", "--jobs", "1", "."][..], 2), (&["check", "."][..], 1), (&["ls"][..], 0)] {
        let status = closed_pipe(dir.path(), args, keep);
        // As `ls | head`: SIGPIPE, or a clean exit when everything fit in the pipe before the reader left.
        assert!(status.signal() == Some(libc::SIGPIPE) || status.code() == Some(0), "{args:?}: {status:?}");
    }
    // The control: `run` writes more than the pipe takes after its reader
    // is gone, so it must have met the closed pipe, and died of it.
    let status = closed_pipe(dir.path(), &["run", "--jobs", "1", "."], 1);
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}");
    // With a report file the run goes on without its reader, and the report is written.
    let status = closed_pipe(dir.path(), &["run", "--jobs", "1", "--format", "junit", "--output", "r.xml", "."], 1);
    assert_eq!(status.code(), Some(0), "{status:?}");
    let xml = std::fs::read_to_string(dir.path().join("r.xml")).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 20, "{xml}");
}

/// `--format json` with the document on stdout (a file) and the progress on
/// stderr (a pipe whose reader leaves): the document is still written whole.
#[test]
fn a_closed_progress_pipe_does_not_cost_the_document_on_stdout() {
    let files: Vec<(String, &str)> = (0..20).map(|i| (format!("p{i:02}.scn"), PASS)).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let dir = suite(&files);
    let doc = std::fs::File::create(dir.path().join("doc.json")).unwrap();
    let mut child = command(&["run", "--jobs", "1", "--format", "json", "."], dir.path())
        .stdout(doc)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("Starting 20 scenarios"), "{line}");
    drop(reader);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("doc.json")).unwrap()).expect("a whole JSON document");
    assert_eq!(doc["summary"]["total"], 20);
}

#[test]
fn colour_follows_the_flag_and_no_color() {
    let dir = suite(&[("p.scn", PASS)]);
    let green_pass = "\u{1b}[1m\u{1b}[32mPASS";
    let out = harness(&["run", "--color", "always", "p.scn"], dir.path());
    assert!(text(&out.stdout).contains(green_pass), "{:?}", text(&out.stdout));
    let out = harness(&["run", "--color", "never", "p.scn"], dir.path());
    assert!(!text(&out.stdout).contains('\u{1b}'), "{:?}", text(&out.stdout));
    // auto: not a terminal here, so no colour, unless forced; NO_COLOR beats the force.
    let out = harness(&["run", "p.scn"], dir.path());
    assert!(!text(&out.stdout).contains('\u{1b}'), "{:?}", text(&out.stdout));
    let out = command(&["run", "p.scn"], dir.path()).env("CLICOLOR_FORCE", "1").output().unwrap();
    assert!(text(&out.stdout).contains(green_pass), "{:?}", text(&out.stdout));
    let out = command(&["run", "p.scn"], dir.path()).env("CLICOLOR_FORCE", "1").env("NO_COLOR", "1").output().unwrap();
    assert!(!text(&out.stdout).contains('\u{1b}'), "{:?}", text(&out.stdout));
}

#[test]
fn json_has_version_duration_and_isolation() {
    let dir = suite(&[("a.scn", PASS), ("b.scn", WRONG)]);
    let out = harness(&["run", "--format", "json", "."], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["version"], 1);
    let s = &doc["summary"];
    assert_eq!((s["passed"].as_u64(), s["failed"].as_u64(), s["total"].as_u64()), (Some(1), Some(1), Some(2)));
    assert!(s["duration_s"].as_f64().unwrap() > 0.0, "{s}");
    assert!(matches!(s["isolation"].as_str(), Some("namespace" | "host")), "{s}");
    assert!(s["started"].as_str().unwrap().ends_with('Z'), "{s}");
    assert_eq!(doc["scenarios"][1]["failure"]["line"], 6);
    // Progress went to stderr, not into the document.
    assert!(text(&out.stderr).contains("FAIL ./b.scn"), "{}", text(&out.stderr));
}

#[test]
fn junit_names_are_unique_by_folder() {
    let dir = suite(&[("a/x.scn", PASS), ("b/x.scn", PASS)]);
    let out = harness(&["run", "--format", "junit", "a", "b"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let xml = text(&out.stdout);
    assert!(xml.contains("<testcase name=\"x\" classname=\"a\""), "{xml}");
    assert!(xml.contains("<testcase name=\"x\" classname=\"b\""), "{xml}");
    // Named as ./a and ./b, the same files get the same names.
    let out = harness(&["run", "--format", "junit", "./a", "./b"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let xml = text(&out.stdout);
    assert!(xml.contains("<testcase name=\"x\" classname=\"a\""), "{xml}");
    assert!(xml.contains("<testcase name=\"x\" classname=\"b\""), "{xml}");
}

/// A Python with `xmlschema`, in a venv kept in cargo's tmp dir; `Err` says
/// why there can be none (no python3, no venv module, no pip).
fn xmlschema_python() -> Result<PathBuf, String> {
    // Per user (a venv made by root may point at a Python only root can
    // run); in cargo's tmp dir when we may write there, else in TMPDIR.
    let name = format!("xsd-venv-{}", nix::unistd::Uid::effective());
    let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let writable = |d: &Path| tempfile::tempfile_in(d).is_ok();
    let venv = if writable(target_tmp) { target_tmp.join(&name) } else { std::env::temp_dir().join(&name) };
    let python = venv.join("bin/python");
    let has = |p: &Path| Command::new(p).args(["-c", "import xmlschema"]).output().is_ok_and(|o| o.status.success());
    if has(&python) {
        return Ok(python);
    }
    let made = Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv).output();
    match made {
        Err(e) => return Err(format!("python3 is not installed ({e})")),
        Ok(o) if !o.status.success() => {
            return Err(format!("python3 -m venv failed (no venv/ensurepip module?): {}", text(&o.stderr).trim()))
        }
        Ok(_) => {}
    }
    let pip = Command::new(venv.join("bin/pip")).args(["install", "--quiet", "xmlschema"]).output();
    match pip {
        Err(e) => Err(format!("the venv has no pip ({e})")),
        // pip is there: failing to install is a failure, not a skip.
        Ok(o) => {
            assert!(o.status.success(), "pip install xmlschema failed: {}", all(&o));
            Ok(python)
        }
    }
}

/// Validates `xml` against `junit-10.xsd`; `Err` has the validator's complaint.
fn validate(python: &Path, xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.xml");
    std::fs::write(&file, xml).unwrap();
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/junit-10.xsd");
    let out = Command::new(python)
        .args(["-c", "import sys, xmlschema; xmlschema.XMLSchema(sys.argv[1]).validate(sys.argv[2])"])
        .arg(&xsd)
        .arg(&file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(all(&out))
    }
}

fn report(file: &str, status: Status) -> ScenarioReport {
    ScenarioReport {
        file: file.into(),
        name: Path::new(file).file_stem().unwrap().to_string_lossy().into_owned(),
        status,
        isolation: Isolation::Namespace,
        reason: None,
        failure: None,
        leaks: vec![],
        processes: vec!["A".into()],
        transcript: vec![],
        duration_us: 1_234_567,
        iteration: None,
    }
}

#[test]
fn junit_validates_against_the_surefire_schema() {
    let python = match xmlschema_python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: cannot validate JUnit against junit-10.xsd: {why}");
            return;
        }
    };
    // A report with everything: control characters in a file name and in a
    // program's output, a failure, a leak, a harness error, a skip.
    let mut failure = report("scenarios/ctl\u{1}name.scn", Status::Fail);
    failure.failure = Some(StepFailure {
        line: 3,
        process: "A".into(),
        step: "A: run \"printf '\\001'\" => stdout \"\"".into(),
        expected: "stdout \"\"".into(),
        actual: "stdout \"\u{1}\u{0}\u{1b}[31m\u{fffe}\"".into(),
    });
    failure.transcript = vec![Entry {
        line: 3,
        process: "A".into(),
        call: "run printf".into(),
        answer: "status 0, stdout \"\u{1}\u{8}\"".into(),
        ok: false,
        pid: Some(7),
        started_us: Some(120),
        ended_us: Some(4500),
        overlapped: false,
    }];
    let mut leak = report("scenarios/leak.scn", Status::Fail);
    leak.leaks =
        vec![Leak { message: "segment shmid 3 was never removed".into(), line: Some(2), process: None, shmid: 3 }];
    let mut error = report("scenarios/emfile.scn", Status::Fail);
    error.reason = Some("pipe2: EMFILE (Too many open files)".into());
    let mut skip = report("scenarios/root.scn", Status::Skip);
    skip.reason = Some("needs root, and this run is uid 1000".into());
    let run = RunInfo {
        isolation: Isolation::Namespace,
        jobs: 2,
        started: SystemTime::now(),
        duration: Duration::from_micros(9_876_543),
    };
    let reports = [report("scenarios/ok.scn", Status::Pass), failure, leak, error, skip];
    let xml = render_junit(&reports, &run);
    validate(&python, &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert!(xml.contains("<error message=\"pipe2: EMFILE"), "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 2, "{xml}");
    assert!(xml.contains("<skipped message=\"needs root"), "{xml}");
    assert!(xml.contains("name=\"ctl\\x01name\"") && xml.contains("\\x01\\x00\\x1b[31m\\u{fffe}"), "{xml}");
    assert!(xml.contains("time=\"9.877\"") && xml.contains("time=\"1.235\""), "{xml}");

    // The controls: the schema does reject what the old writer produced.
    let bad = [
        (
            "`skipped` on <testsuites>",
            xml.replacen("<testsuites name=\"shm-harness\"", "<testsuites skipped=\"1\" name=\"shm-harness\"", 1),
        ),
        ("&#x1;", xml.replacen("ctl\\x01name", "ctl&#x1;name", 1)),
        ("`file` on <testcase>", xml.replacen("<testcase name=\"ok\"", "<testcase file=\"ok.scn\" name=\"ok\"", 1)),
        ("6-decimal time", xml.replacen("time=\"9.877\"", "time=\"9.876543\"", 1)),
        (
            "no `errors` on <testsuite>",
            xml.replacen(" errors=\"1\" failures=\"2\" timestamp=", " failures=\"2\" timestamp=", 1),
        ),
    ];
    for (what, doc) in bad {
        assert_ne!(doc, xml, "{what}: the control did not change the document");
        assert!(validate(&python, &doc).is_err(), "{what}: the schema accepted it\n{doc}");
    }
}

/// Host isolation inside a private IPC namespace made for the run (so that
/// a `needs namespace` scenario is skipped for sure, and the machine's
/// namespace is not touched).
#[test]
fn host_mode_header_summary_skip_list_quiet_verbose_and_junit() {
    let prefix = match private_ipc_prefix() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let host = |dir: &Path, args: &[&str]| -> Output {
        let mut all: Vec<&str> = prefix.clone();
        all.push(common::bin());
        all.extend_from_slice(args);
        let mut c = Command::new(all[0]);
        c.args(&all[1..]).current_dir(dir).env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        c.output().unwrap()
    };
    let dir = suite(&[("a.scn", PASS), ("b.scn", WRONG), ("c.scn", NEEDS_ROOT_AND_NS)]);
    let out = host(dir.path(), &["run", "--isolation", "host", "--jobs", "2", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let s = text(&out.stdout);
    assert_eq!(s.lines().next(), Some("Starting 3 scenarios, isolation host, jobs 1"), "{s}");
    assert!(s.contains("PASS ./a.scn") && s.contains("FAIL ./b.scn") && s.contains("SKIP ./c.scn"), "{s}");
    let summary = s.lines().find(|l| l.starts_with("Summary 3 scenarios in ")).expect("summary line");
    assert!(summary.contains(": 1 passed, 1 failed, 1 skipped ("), "{summary}");
    assert!(s.contains("\n  FAIL ./b.scn:6\n"), "the failed by name and line: {s}");
    let slowest = s.lines().find(|l| l.starts_with("  slowest: ")).expect("slowest line");
    assert!(slowest.contains("./a.scn (") && slowest.contains("./b.scn (") && !slowest.contains("c.scn"), "{slowest}");

    let out = host(dir.path(), &["run", "--isolation", "host", "-q", "."]);
    let s = text(&out.stdout);
    assert!(!s.contains("PASS") && !s.contains("SKIP ./c.scn [") && !s.contains("Starting"), "{s}");
    // No progress line for the skip, but the summary names it and why.
    assert!(s.contains("\n  SKIP ./c.scn: needs "), "{s}");
    assert!(s.contains("FAIL ./b.scn") && s.contains("Summary 3 scenarios"), "{s}");

    let out = harness(&["run", "-v", "a.scn"], dir.path());
    assert!(text(&out.stdout).contains("transcript ("), "a passing transcript with -v: {}", all(&out));
    let out = harness(&["run", "a.scn"], dir.path());
    assert!(!text(&out.stdout).contains("transcript ("), "{}", all(&out));

    let out = harness(&["run", "--list", "."], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert_eq!(text(&out.stdout), "./a.scn\n./b.scn\n./c.scn\n");
    let out = harness(&["run", "--list", "-v", "--filter", "c.scn", "."], dir.path());
    assert_eq!(text(&out.stdout), "./c.scn (1 process, 1 step, needs root, namespace)\n");

    // The same run's JUnit report (a pass, a failure, a skip) is valid.
    let out = host(dir.path(), &["run", "--isolation", "host", "--format", "junit", "--output", "r.xml", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let xml = std::fs::read_to_string(dir.path().join("r.xml")).unwrap();
    assert!(xml.contains("<skipped message=\"needs") && xml.contains("<failure "), "{xml}");
    match xmlschema_python() {
        Ok(python) => validate(&python, &xml).unwrap_or_else(|e| panic!("{e}\n{xml}")),
        Err(why) => eprintln!("JUnit not validated: {why}"),
    }
}

/// The command prefix that runs a program in a private IPC namespace of its
/// own: `unshare -i` as root, `unshare -r -i` (a user namespace) otherwise.
fn private_ipc_prefix() -> Result<Vec<&'static str>, String> {
    let prefix =
        if nix::unistd::Uid::effective().is_root() { vec!["unshare", "-i"] } else { vec!["unshare", "-r", "-i"] };
    match Command::new(prefix[0]).args(&prefix[1..]).arg("true").output() {
        Ok(o) if o.status.success() => Ok(prefix),
        Ok(o) => Err(format!("`{} true` fails here: {}", prefix.join(" "), all(&o).trim())),
        Err(e) => Err(format!("unshare (util-linux) is not installed: {e}")),
    }
}

/// A number that is neither a user's nor a group's uid/gid here.
fn nameless_id() -> u32 {
    (40_000..60_000u32)
        .find(|&id| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(id)).ok().flatten().is_none()
                && nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(id)).ok().flatten().is_none()
        })
        .unwrap()
}

/// The rows of an `ls --json`/`lsipc -J` document at `path`, each field as
/// text (lsipc's JSON quotes numbers in some versions).
fn rows_as_text(path: &Path) -> Vec<Vec<(String, String)>> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let field = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    v["sharedmemory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_object().unwrap().iter().map(|(k, v)| (k.clone(), field(v))).collect())
        .collect()
}

/// `ls --json -o COLUMNS` and `lsipc -m -J -b --time-format=iso -o COLUMNS`
/// run side by side by a scenario (in namespace isolation) while it holds a
/// keyed segment, an attached and removed one (`dest`), and as root a locked
/// one: the same rows, field for field.
#[test]
fn ls_json_agrees_with_lsipc_row_for_row() {
    if Command::new("lsipc").arg("-V").output().is_err() {
        eprintln!("skipped: lsipc (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cols = "KEY,ID,PERMS,OWNER,SIZE,NATTCH,STATUS,CTIME,ATTACH,DETACH,CPID,LPID,COMMAND,UID,USER,GID,GROUP,CUID,CUSER,CGID,CGROUP";
    let bin = common::bin();
    let root = nix::unistd::Uid::effective().is_root();
    let lock = if root { "A: lock k1\n" } else { "" };
    // As root, a segment handed to a uid and gid without names: lsipc shows
    // the numbers under OWNER but leaves USER and GROUP empty (null).
    let nameless = nameless_id();
    let chowned = if root {
        format!("A: create k2 = 0x5152 size 200 mode 0604 excl\nA: set k2 uid {nameless} gid {nameless}\n")
    } else {
        String::new()
    };
    let rm_chowned = if root { "A: rm k2\n" } else { "" };
    let scn = format!(
        "process A\nA: key k = 0x5151\nA: create k1 = k size 100 mode 0640 excl\n{lock}{chowned}A: create s = private size 5000\n\
A: attach m = s\nA: rm s\n\
A: run \"sh -c '{bin} ls --json -o {cols} > {d}/ours.json && {bin} ls --json > {d}/default.json && lsipc -m -J -b --time-format=iso -o {cols} > {d}/theirs.json && \
{bin} ls --json -o +CUID,cgid > {d}/plus-ours.json && lsipc -m -J -b --time-format=iso -o +CUID,cgid > {d}/plus-theirs.json'\" => status 0\n\
A: detach m\nA: rm k1\n{rm_chowned}"
    );
    std::fs::write(dir.path().join("ls.scn"), scn).unwrap();
    let out = harness(&["run", "--isolation", "namespace", "ls.scn"], dir.path());
    if out.status.code() == Some(2) && all(&out).contains("namespace") {
        eprintln!("skipped: no private IPC namespace here: {}", all(&out));
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let norm = |name: &str| rows_as_text(&dir.path().join(name));
    let (ours, theirs) = (norm("ours.json"), norm("theirs.json"));
    assert_eq!(theirs.len(), if root { 3 } else { 2 }, "{theirs:?}");
    assert_eq!(ours, theirs);
    // `-o +COLUMNS` adds to lsipc's default columns, as lsipc's does.
    assert_eq!(norm("plus-ours.json"), norm("plus-theirs.json"));
    let row = |i: usize| -> std::collections::HashMap<String, String> { ours[i].iter().cloned().collect() };
    assert_eq!(row(0)["perms"], "rw-r-----");
    let dest = if root { 2 } else { 1 };
    assert_eq!(row(dest)["status"], "dest");
    assert!(row(dest)["command"].contains("shm-harness"), "{:?}", row(dest));
    if root {
        let r = row(1);
        let n = nameless.to_string();
        assert_eq!((r["owner"].as_str(), r["uid"].as_str(), r["gid"].as_str()), (n.as_str(), n.as_str(), n.as_str()));
        assert_eq!((r["user"].as_str(), r["group"].as_str()), ("null", "null"), "{r:?}");
    }
    if !lock.is_empty() {
        assert_eq!(row(0)["status"], "locked");
    }
    // The default document: lsipc's default columns, then the ids.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("default.json")).unwrap()).unwrap();
    let got: Vec<&str> = doc["sharedmemory"][0].as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "key", "id", "perms", "owner", "size", "nattch", "status", "ctime", "cpid", "lpid", "command", "uid", "gid",
        "cuid", "cgid",
    ];
    want.sort_unstable();
    assert_eq!(got, want);
}
