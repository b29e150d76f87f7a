//! The command line: bad input, exit statuses, reports, host mode, and the
//! runner's safety when many runs happen at once.

use std::path::Path;
use std::process::{Command, Output};

use std::os::unix::process::CommandExt;

use rusty_fork::rusty_fork_test;

#[macro_use]
mod common;

use common::{harness, text, write};

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

/// Issue 19: the steps of a `&` group overlap after a step that does not
/// end its chain (an ftok, a create, a step of the other process), and the
/// report says so: two programs that each wait for the other meet (on
/// ef20b72 the first timed out, status 124), each step has its start and
/// end, and the text transcript marks the group's steps `&`.
#[test]
fn a_group_after_a_chained_step_overlaps_and_the_report_shows_it() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let json = harness(&["run", "--format", "json", "conc-rendezvous-after-chain.scn"], &here);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let report = &doc["scenarios"][0];
    assert_eq!(report["status"], "pass", "{report}");
    let steps = report["transcript"].as_array().unwrap();
    let mut last_end = 0;
    for e in steps {
        let (start, end) = (e["started_us"].as_u64().unwrap(), e["ended_us"].as_u64().unwrap());
        assert!(start <= end, "{e}");
        let grouped = e["call"].as_str().unwrap().starts_with("run ");
        assert_eq!(e["overlapped"], grouped, "only the steps of groups overlap: {e}");
        if !grouped {
            // Lockstep around the groups: a step alone starts after every step before it ended.
            assert!(start >= last_end, "{e}");
        }
        last_end = last_end.max(end);
    }
    let text = text(&harness(&["run", "-v", "conc-rendezvous-after-chain.scn"], &here).stdout);
    let marked = text.lines().filter(|l| l.trim_start().starts_with('&')).count();
    assert_eq!(marked, 8, "{text}");
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

fn segment_ids() -> Vec<i32> {
    shm_harness::sysv::proc_segments().expect("/proc/sysvipc/shm").iter().map(|r| r.shmid.raw()).collect()
}

fn harness_in(args: &[&str], dir: &Path) -> Output {
    Command::new(common::bin())
        .args(args)
        .current_dir(dir)
        .env("SHM_HARNESS_STATE_DIR", dir.join("state"))
        .output()
        .expect("run shm-harness")
}

rusty_fork_test! {
    /// Host mode, exercised in a private IPC namespace this test makes (so
    /// no outcome of it can touch the machine's): it counts and removes only
    /// the segments its steps created, by identity; a canary made before it
    /// (a foreign segment) is neither counted nor touched.
    #[test]
    fn host_mode_touches_only_its_own_and_cleans_up() {
        private_namespace_or_skip!();
        let canary = shm_harness::sysv::CreateOptions::new(100).create_private().unwrap().release();
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "host.scn",
            "process A, B\nA: key k = 0x1234\nA: create s = k size 4096 excl\nB: attach m = s\nB: stat s => nattch 1, cpid A\nA: segments => 1\nA: create left = private size 100\nA: segments => 2\nB: detach m\nA: rm s\n",
        );
        let out = harness_in(&["run", "--isolation", "host", "host.scn"], dir.path());
        let s = text(&out.stdout);
        // `left` is left on purpose: the leak oracle must catch and remove it.
        assert_eq!(out.status.code(), Some(1), "{s}");
        assert!(s.contains("[host]"), "{s}");
        let leak = s.contains("host.scn:7: leak: segment shmid");
        let who = s.contains("created by A at line 7");
        assert!(leak && who, "{s}");
        assert_eq!(segment_ids(), vec![canary.id().raw()], "host mode left segments behind or removed the canary");
    }

    /// A program that prints an id it did not create (nothing it traced
    /// made that segment): host mode's capture guard refuses it, so the
    /// `rm` never runs; with tracing off (`SHM_HARNESS_NO_TRACE`) host mode
    /// cannot see programs' creations and skips the scenario, saying why;
    /// in a namespace of its own the same scenario runs.
    #[test]
    fn host_mode_traces_programs_or_skips_saying_why() {
        private_namespace_or_skip!();
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "fake.scn",
            "process A\nA: run \"echo Shared memory id: 2147483000\" => stdout \"Shared memory id: {s}\"\nA: rm s\n",
        );
        if shm_harness::trace::available().is_ok() {
            let out = harness_in(&["run", "--isolation", "host", "fake.scn"], dir.path());
            let s = text(&out.stdout);
            assert_eq!(out.status.code(), Some(1), "{s}");
            assert!(s.contains("FAIL fake.scn") && s.contains("`s` captured shmid 2147483000, which is not a segment this scenario's processes created"), "{s}");
            assert!(!s.contains("shmctl(2147483000, IPC_RMID)"), "{s}");
        }
        let out = Command::new(common::bin())
            .args(["run", "--isolation", "host", "fake.scn"])
            .current_dir(dir.path())
            .env("SHM_HARNESS_STATE_DIR", dir.path().join("state"))
            .env("SHM_HARNESS_NO_TRACE", "1")
            .output()
            .unwrap();
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{s}");
        assert!(s.contains("SKIP fake.scn") && s.contains("line 2 runs a program: host isolation sees the segments a program's processes create only by tracing them, and SHM_HARNESS_NO_TRACE turns tracing off"), "{s}");
        // In a namespace of its own the same scenario runs (and the kernel answers).
        let out = harness_in(&["run", "--isolation", "namespace", "fake.scn"], dir.path());
        assert!(text(&out.stdout).contains("FAIL fake.scn"), "{}", text(&out.stdout));
        assert!(segment_ids().is_empty());
    }

    /// An interrupted host run (SIGTERM to the coordinator mid-scenario,
    /// which installs no handler and dies of it) leaves neither segments nor
    /// processes: the supervisor sees the coordinator's death on its life
    /// pipe, kills the scenario's processes and removes what its steps made.
    #[test]
    fn an_interrupted_host_run_leaves_nothing_behind() {
        private_namespace_or_skip!();
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "slow.scn",
            "timeout 60s\nprocess A, B\nA: create big = private size 64M\nA: attach w = big\nA: write w 0 pattern \"ab\" 64M\nA: detach w\nA: rm big\nA: key k = 0x1234\nA: create s = k size 4096 excl\nA: create p = private size 100\nB: attach m = s\nB: detach m\nA: rm s\nA: rm p\n",
        );
        let mut child = Command::new(common::bin())
            .args(["run", "--isolation", "host", "slow.scn"])
            .current_dir(dir.path())
            .env("SHM_HARNESS_STATE_DIR", dir.path().join("state"))
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let group = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // Stop B before its first step (A's 64 MiB write comes first), so the run cannot end by itself.
        loop {
            for p in group_members(group, "shm-act-B") {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGSTOP);
            }
            // The scenario's small segments (not the 64 MiB one, nor the run's 1-byte anchor).
            let anchor = shm_harness::runner::journal::ANCHOR_SIZE as u64;
            let small = shm_harness::sysv::proc_segments().unwrap().iter().filter(|r| r.size < 1 << 20 && r.size != anchor).count();
            if small >= 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the scenario never created its segments");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(group), nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !group_members(group, "").is_empty() {
            assert!(std::time::Instant::now() < deadline, "an interrupted run left processes: {:?}", group_members(group, ""));
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(segment_ids(), Vec::<i32>::new(), "an interrupted host run left segments");
    }
}

/// Living processes of process group `group` whose name starts with `prefix`.
fn group_members(group: i32, prefix: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let Some(close) = stat.rfind(')') else { return false };
            let name = stat.find('(').map_or("", |o| &stat[o + 1..close]);
            let mut rest = stat[close + 1..].split_whitespace();
            let state = rest.next().unwrap_or("");
            let pgrp = rest.nth(1).and_then(|g| g.parse::<i32>().ok());
            pgrp == Some(group) && state != "Z" && name.starts_with(prefix)
        })
        .collect()
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

#[test]
fn misused_attachment_and_mapping_forms_are_check_errors() {
    let dir = tempfile::tempdir().unwrap();
    let head = "process A, B\nA: create s = private size 8192\nA: attach m = s\n";
    let cases: &[(&str, &str)] = &[
        ("A: attach s at m+x\n", "bad.scn:4:16: bad offset in address `m+x`"),
        ("B: attach s at m\n", "bad.scn:4:16: attachment `m` (line 3) was never attached in process B"),
        ("A: detach at\n", "bad.scn:4:13: missing an address"),
        ("A: mapping m shrink 4096\n", "bad.scn:4:14: unknown mapping change `shrink`"),
        ("A: mapping m protect wr\n", "bad.scn:4:22: unknown protection `wr`"),
        ("A: mapping m unmap\nA: read m 0 1\n", "bad.scn:5:9: attachment `m` (line 3) is not attached in process A"),
        ("A: mapping m resize 4096 => at m\n", "bad.scn:4:29: unknown field `at` for `mapping ... resize`"),
    ];
    for (tail, want) in cases {
        write(dir.path(), "bad.scn", &format!("{head}{tail}"));
        let out = harness(&["check", "bad.scn"], dir.path());
        let all = text(&out.stdout) + &text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tail:?}: {all}");
        assert!(all.contains(want), "{tail:?}\nwant: {want}\ngot: {all}");
    }
}

rusty_fork_test! {
    #![rusty_fork(timeout_ms = 60_000)]

    #[test]
    fn a_wrong_mapping_expectation_shows_both_addresses() {
        private_namespace_or_skip!();
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "at.scn",
            "process A\nA: create s = private size 4096\nA: attach m = s\nA: detach m\nA: attach n = s at m => at m+4096\nA: detach n\nA: rm s\n",
        );
        let out = harness(&["run", "at.scn"], dir.path());
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{s}");
        assert!(s.contains("at.scn:5: A: attach n = s at m => at m+4096"), "{s}");
        assert!(s.contains("expected: at m+4096 (0x"), "{s}");
        assert!(s.lines().any(|l| l.contains("actual:") && l.contains("(size 4096, mapped 4096)")), "{s}");
    }
}

/// The number expectations and the raw shmctl can fail, and say so with
/// the bound values: the controls of the oracle parts H2 added.
#[test]
fn number_expectations_and_raw_shmctl_fail_with_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "A: create s = private size 4096\nA: stat s => ctime {t0}\nA: stat s => ctime > t0\n",
            "expected: ctime > t0 (",
        ),
        ("A: create s = private size 4096\nA: stat s => size < 4096\n", "expected: size < 4096"),
        ("A: create s = private size 4096\nA: shmctl s IPC_STAT => index 1\n", "expected: index 1"),
        ("A: shmctl - SHM_INFO => used_ids 1\n", "expected: used_ids 1"),
        ("A: create s = private size 4096\nA: shmctl s 99 => ok\n", "-1 EINVAL"),
        ("A: create s = private size 4096\nA: shmctl s IPC_STAT badbuf => ok\n", "-1 EFAULT"),
        ("A: segments => != 0\n", "expected: != 0"),
    ];
    for (steps, want) in cases {
        write(dir.path(), "f.scn", &format!("process A\nneeds namespace\n{steps}"));
        let out = harness(&["run", "f.scn"], dir.path());
        let all = text(&out.stdout) + &text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{steps}: {all}");
        assert!(all.contains(want), "{steps}\nwant: {want}\ngot: {all}");
    }
}
