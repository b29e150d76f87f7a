//! The command line: bad input, exit statuses, reports, host mode, and the
//! runner's safety when many runs happen at once.

use std::path::Path;
use std::process::{Command, Output};

use serial_test::file_serial;

fn harness(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shm-harness")).args(args).current_dir(dir).output().expect("run shm-harness")
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn malformed_scenarios_get_file_line_col_and_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("process A\nA: creat s = private size 1\n", "bad.scn:2:4: unknown operation `creat`"),
        ("process A\nB: create s = private size 1\n", "bad.scn:2:1: unknown process `B`"),
        ("process A\nA: attach m = s\n", "bad.scn:2:15: unknown name `s`: not bound before this line"),
        ("process A\nA: create s = private size 12x\n", "bad.scn:2:28: bad number `12x` for the size"),
        ("process A\nA: create private size 1 excl => EWHAT\n", "bad.scn:2:34: unknown errno `EWHAT`"),
        ("process A, A\nA: exit\n", "bad.scn:1:12: duplicate name `A`"),
        (
            "process A\nA: create s = private size 1\nA: rm s => \"hello\"\n",
            "bad.scn:3:12: `rm` has no value to expect",
        ),
        ("process A\nA: create s = private size 1 => EEXIST\n", "the step binds `s` but is not expected to succeed"),
        ("process A\nA: exit\nA: segments => 0\n", "bad.scn:3:1: process A is gone since line 2"),
        ("process A, B\nA: create s = private size 8\nA: attach m = s\nB: detach m\n", "is not attached in process B"),
        ("process A\nA: write m 0 \"unterminated\n", "unterminated string"),
        (
            "process A, B\nA: segments => 0\n& B: segments => 0\n& A: segments => 0\n",
            "bad.scn:4:3: `&` runs steps of different processes together; A already has a step in this group (line 2)",
        ),
        ("process A\nA: key k = ftok \"f\" 1 => ENOENT\n", "the step binds `k` but is not expected to succeed"),
        ("process A\nA: key ftok \"f\" 300\n", "bad.scn:2:17: project id 300 does not fit in 8 bits"),
    ];
    for (input, want) in cases {
        write(dir.path(), "bad.scn", input);
        for verb in ["check", "run"] {
            let out = harness(&[verb, "bad.scn"], dir.path());
            let all = text(&out.stdout) + &text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{verb} {input:?}: {all}");
            assert!(all.contains(want), "{verb} {input:?}\nwant: {want}\ngot: {all}");
            assert!(!all.contains("panicked"), "{all}");
        }
    }
}

#[test]
fn a_file_that_does_not_parse_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a-good.scn", "process A\nA: create s = private size 1\nA: rm s\n");
    write(dir.path(), "b-bad.scn", "process A\nA: frobnicate\n");
    let out = harness(&["run", "."], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out.stdout).contains("PASS"), "{}", text(&out.stdout));
}

#[test]
fn usage_errors_are_status_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(harness(&["run", "--isolation", "sideways"], dir.path()).status.code(), Some(2));
    assert_eq!(harness(&["run", "missing.scn"], dir.path()).status.code(), Some(2));
    assert_eq!(harness(&["run", "--timeout", "soon"], dir.path()).status.code(), Some(2));
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_transcript() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "wrong.scn",
        "process A, B\nA: create s = private size 100\nA: attach w = s\nB: attach r = s\nA: write w 0 \"hello\"\nB: read r 0 5 => \"hellp\"\n",
    );
    let out = harness(&["run", "wrong.scn"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(s.contains("FAIL wrong.scn"), "{s}");
    assert!(s.contains("wrong.scn:6: B: read r 0 5 => \"hellp\""), "{s}");
    assert!(s.contains("expected: \"hellp\" (5 bytes)"), "{s}");
    assert!(s.contains("first difference at byte 4"), "{s}");
    // One column per process, the failing row marked.
    let header = s.lines().find(|l| l.contains("line |")).expect("transcript header");
    assert!(header.contains("| A") && header.contains("| B"), "{header}");
    assert!(s.lines().any(|l| l.starts_with('X') && l.contains("read r[0..+5]")), "{s}");

    let junit = harness(&["run", "--format", "junit", "wrong.scn"], dir.path());
    let xml = text(&junit.stdout);
    assert!(xml.contains("<failure message=\"line 6"), "{xml}");
    let json = harness(&["run", "--format", "json", "wrong.scn"], dir.path());
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["summary"]["failed"], 1);
    assert_eq!(doc["scenarios"][0]["failure"]["line"], 6);
}

#[test]
fn a_leak_fails_the_scenario_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "leak.scn", "process A, B\nA: create s = private size 100\nB: attach m = s\n");
    let out = harness(&["run", "leak.scn"], dir.path());
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(s.contains("leak.scn:3: leak: process B still has shmid"), "{s}");
    assert!(s.contains("leak.scn:2: leak: segment shmid"), "{s}");
    assert!(s.contains("created by A at line 2"), "{s}");
}

#[test]
fn a_step_that_hangs_times_out_and_nothing_hangs() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hang.scn", "process A\nA: run \"sleep 30\"\n");
    let started = std::time::Instant::now();
    let out = harness(&["run", "--timeout", "300ms", "hang.scn"], dir.path());
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(s.contains("no answer within 300ms: process A"), "{s}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
}

/// Host mode shares the machine's IPC namespace: serialised across test
/// processes, and it must leave no segment behind.
#[test]
#[file_serial(host_ipc)]
fn host_mode_touches_only_its_own_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "host.scn",
        "process A, B\nA: key k = 0x1234\nA: create s = k size 4096 excl\nB: attach m = s\nB: stat s => nattch 1, cpid A\nA: run \"ipcmk -M 100\" => status 0, stdout \"Shared memory id: {x}\"\nA: segments => 2\nB: detach m\nA: rm s\n",
    );
    let before = ipcs_ids();
    let out = harness(&["run", "--isolation", "host", "host.scn"], dir.path());
    let s = text(&out.stdout);
    // ipcmk's segment is left on purpose: the leak oracle must catch and remove it.
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(s.contains("[host]"), "{s}");
    // The segment is ipcmk's: known by the pid of the program line 6 ran.
    assert!(s.contains("host.scn:6: leak: segment shmid") && s.contains("created by A at line 6"), "{s}");
    assert_eq!(ipcs_ids(), before, "host mode left segments behind");
}

fn ipcs_ids() -> Vec<String> {
    let out = Command::new("ipcs").arg("-m").output().map(|o| text(&o.stdout)).unwrap_or_default();
    out.lines().filter(|l| l.starts_with("0x")).map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string()).collect()
}

#[test]
fn the_library_refuses_to_fork_from_a_multi_threaded_process() {
    // The test harness runs this on a thread of its own: the process has several.
    let sc = shm_harness::scenario::parse("x.scn", "process A\nA: segments => 0\n").unwrap();
    let err = shm_harness::runner::run(&[sc], &Default::default(), shm_harness::runner::Isolation::Namespace, |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("single-threaded"), "{err}");
}

/// Many runs at once from several threads, repeated: no deadlock, no
/// cross-talk between namespaces, everything passes.
#[test]
fn stress_many_runs_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        write(
            dir.path(),
            &format!("s{i}.scn"),
            &format!(
                "file keyfile\nprocess A, B, C, D\nA: key k = ftok \"keyfile\" {i}\nA: create s = k size 4096 excl\nB: create k size 4096 excl => EEXIST\nB: attach m = s\nC: attach r = s ro\nB: write m 0 \"run {i}\"\nC: read r 0 5 => \"run {i}\"\nA: fork D\nD: segments => 1\nD: exit\nB: detach m\nC: detach r\nA: rm s\n"
            ),
        );
    }
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let d = dir.path().to_path_buf();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let out = harness(&["run", "--jobs", "3", "."], &d);
                    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
                    assert!(text(&out.stdout).contains("6 passed, 0 failed"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// An interrupted run (SIGTERM mid-scenario) in host mode leaves neither
/// segments nor processes behind: the janitor kills the scenario's process
/// group and removes what its steps created.
#[test]
#[file_serial(host_ipc)]
fn an_interrupted_host_run_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "slow.scn",
        "process A, B\nA: key k = 0x1234\nA: create s = k size 4096 excl\nA: create p = private size 100\nB: attach m = s\nB: run \"sleep 31.25\"\nB: detach m\nA: rm s\nA: rm p\n",
    );
    let before = ipcs_ids();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shm-harness"))
        .args(["run", "--isolation", "host", "slow.scn"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ipcs_ids().len() < before.len() + 2 {
        assert!(std::time::Instant::now() < deadline, "the scenario never created its segments");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(ipcs_ids(), before, "an interrupted host run left segments");
    let ps = Command::new("pgrep").args(["-f", "sleep 31.25"]).output().unwrap();
    assert!(ps.stdout.is_empty(), "an interrupted run left its programs running: {}", text(&ps.stdout));
}

/// In host mode a shmid captured from a program's output is only used if
/// the scenario's own processes created that segment: a program may print
/// any id, and `rm` must never reach someone else's segment.
#[test]
#[file_serial(host_ipc)]
fn host_mode_refuses_a_captured_id_that_is_not_its_own() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "fake.scn",
        "process A\nA: run \"echo Shared memory id: 2147483000\" => stdout \"Shared memory id: {s}\"\nA: rm s\n",
    );
    let out = harness(&["run", "--isolation", "host", "fake.scn"], dir.path());
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(s.contains("captured shmid 2147483000, which is not a segment this scenario's processes created"), "{s}");
    // In a namespace of its own the same scenario may try (and the kernel answers).
    let out = harness(&["run", "--isolation", "namespace", "fake.scn"], dir.path());
    assert!(!text(&out.stdout).contains("captured shmid"), "{}", text(&out.stdout));
}
