//! Host isolation with traced programs: what a `run` step's process tree
//! creates is the scenario's own (leak oracle, removal, journal, sweep),
//! and nothing else is. Every test runs in its own process (rusty-fork) and
//! its own private IPC namespace, where it runs the `shm-harness` binary in
//! host mode; a test skips (printing why) when tracing is unavailable.

#![allow(unsafe_code)] // opts in: raw calls against the kernel under test

mod common;
use common::{bin, harness_traced, text};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rusty_fork::rusty_fork_test;
use shm_harness::sysv::{self, CreateOptions, Key, Mode};

/// The segments of the current IPC namespace: (shmid, cpid, ctime).
fn segments() -> Vec<(i32, i32, i64)> {
    sysv::proc_segments().expect("/proc/sysvipc/shm").iter().map(|r| (r.shmid.raw(), r.cpid, r.ctime)).collect()
}

/// A segment the test made (not the harness's): left in place, keyed.
fn foreign(key: i32) -> i32 {
    let seg = CreateOptions::new(100).mode(Mode::ALL_RW).create_exclusive(Key::from_raw(key)).expect("foreign segment");
    seg.release().id().raw()
}

/// The shmid `ipcmk` printed.
fn ipcmk_id(out: &str) -> i32 {
    let at = out.find("Shared memory id: ").expect("ipcmk's output in the transcript") + "Shared memory id: ".len();
    out[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("an id")
}

macro_rules! traced_or_skip {
    () => {
        private_namespace_or_skip!();
        if let Err(why) = shm_harness::trace::available() {
            eprintln!("skipped: {}: tracing unavailable: {why}", module_path!());
            return;
        }
    };
}

rusty_fork_test! {
    /// `ipcmk` run through `sh -c` and never removed: the leak oracle fails
    /// the scenario naming the segment and the step, and removes it; a
    /// foreign segment is neither named nor removed.
    #[test]
    fn a_traced_program_leak_fails_the_scenario_and_is_removed() {
        traced_or_skip!();
        let other = foreign(0x7ace_1001);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("leak.scn"), "process A\nA: segments => 0\nA: run \"sh -c 'ipcmk -M 4096'\" => status 0\n").unwrap();
        let out = harness_traced(&["run", "--isolation", "host", "leak.scn"], dir.path(), &[]);
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{s}{}", text(&out.stderr));
        let id = ipcmk_id(&s);
        assert!(s.contains(&format!("leak: segment shmid {id} (key 0x")) && s.contains("4096 bytes") && s.contains("created by A at line 3"), "{s}");
        assert!(!s.contains(&format!("shmid {other} ")), "{s}");
        assert_eq!(segments().iter().map(|s| s.0).collect::<Vec<_>>(), vec![other], "the leak was not removed, or the foreign segment was");
    }

    /// The control: the same program, its segment captured from the output,
    /// counted as the scenario's, and removed by a step: PASS.
    #[test]
    fn a_traced_program_segment_removed_by_the_scenario_passes() {
        traced_or_skip!();
        let other = foreign(0x7ace_1002);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ok.scn"),
            "process A\nA: run \"sh -c 'ipcmk -M 4096'\" => status 0, stdout \"Shared memory id: {s}\\n\"\nA: segments => 1\nA: stat s => size 4096\nA: rm s\nA: segments => 0\n",
        )
        .unwrap();
        let out = harness_traced(&["run", "--isolation", "host", "ok.scn"], dir.path(), &[]);
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(segments().iter().map(|s| s.0).collect::<Vec<_>>(), vec![other]);
    }

    /// A daemon left by its step creates a segment later: caught as a leak
    /// of that step and removed.
    #[test]
    fn a_daemon_creating_after_its_step_is_caught_and_removed() {
        traced_or_skip!();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("d.scn"),
            "process A\nA: run \"sh -c '(sleep 0.2; ipcmk -M 100) &'\" => status 0\nA: run \"sleep 0.6\"\nA: segments => 1\n",
        )
        .unwrap();
        let out = harness_traced(&["run", "--isolation", "host", "d.scn"], dir.path(), &[]);
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{s}{}", text(&out.stderr));
        assert!(s.contains("leak: segment shmid") && s.contains("100 bytes") && s.contains("created by A at line 2"), "{s}");
        assert!(segments().is_empty(), "{:?}", segments());
    }

    /// The tracer is forked from the actor, which holds an attachment: it
    /// detaches what it inherited, so while a daemon keeps it alive the
    /// segment's `nattch` is still the scenario's own count.
    #[test]
    fn the_tracer_does_not_hold_the_actors_attachments() {
        traced_or_skip!();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("n.scn"),
            "process A\nA: create s = private size 8\nA: attach m = s\nA: run \"sh -c 'sleep 0.5 &'\" => status 0\nA: stat s => nattch 1\nA: detach m\nA: stat s => nattch 0\nA: rm s\n",
        )
        .unwrap();
        let out = harness_traced(&["run", "--isolation", "host", "n.scn"], dir.path(), &[]);
        assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
        assert!(segments().is_empty(), "{:?}", segments());
    }

    /// The scenario fails (B's step) while A's traced program is still
    /// running: A is killed at teardown before it could report the creation
    /// it had journaled; the supervisor reads the journal, so the segment
    /// is still a leak of the scenario, named, and removed.
    #[test]
    fn a_creation_journaled_by_an_actor_killed_at_teardown_is_still_removed() {
        traced_or_skip!();
        let other = foreign(0x7ace_1005);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.scn"),
            "timeout 20s\nprocess A, B\nB: create s = private size 0\n& A: run \"sh -c 'ipcmk -M 100; exec sleep 30'\"\n",
        )
        .unwrap();
        let out = harness_traced(&["run", "--isolation", "host", "a.scn"], dir.path(), &[]);
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{s}{}", text(&out.stderr));
        assert!(s.contains("leak: segment shmid") && s.contains("100 bytes") && s.contains("at line 4"), "{s}");
        assert_eq!(segments().iter().map(|s| s.0).collect::<Vec<_>>(), vec![other], "the journaled segment was not removed");
    }

    /// A program that opens a segment the test made before the run: the
    /// guard makes its `shmget` return EACCES (the program sees -1, errno
    /// 13), the scenario fails naming the program, the call and the
    /// segment, its count does not include it, and it is not removed.
    #[test]
    fn a_foreign_segment_a_program_opens_is_refused_and_not_claimed() {
        traced_or_skip!();
        let key = 0x7ace_1003;
        let other = foreign(key);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("open.py"),
            format!("import ctypes\nl = ctypes.CDLL(None, use_errno=True)\nprint(l.shmget({key}, 0, 0o1000 | 0o600), ctypes.get_errno())\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("f.scn"), "process A\nA: run \"python3 ${here}/open.py\" => status 0, stdout \"-1 13\\n\"\nA: segments => 0\n").unwrap();
        let out = harness_traced(&["run", "--isolation", "host", "f.scn"], dir.path(), &[]);
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{s}{}", text(&out.stderr));
        let refusal = format!("called shmget(0x7ace1003, flags 01600) on shmid {other} (key 0x7ace1003, owner uid 0), which is not this scenario's: refused with EACCES");
        assert!(s.contains("line 2: program ") && s.contains("python3") && s.contains(&refusal), "{s}");
        assert!(!s.contains("leak:"), "{s}");
        assert_eq!(segments().iter().map(|s| s.0).collect::<Vec<_>>(), vec![other], "the foreign segment was removed");
    }

    /// The guard refuses nothing a program does to the scenario's own
    /// segments: one a step created is attached (`shmat`) and changed
    /// (`IPC_SET`, a second later, so its ctime moves) by one program, then
    /// removed by another (`ipcrm`) under its new identity, and a segment
    /// a program created is removed by the next. Control: the `IPC_SET`
    /// changed the identity (the program prints both ctimes), so the
    /// second program is let on only because the change was journaled.
    #[test]
    fn programs_may_change_the_scenarios_own_segments() {
        traced_or_skip!();
        let other = foreign(0x7ace_1006);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("set.py"),
            "import ctypes, sys, time\nl = ctypes.CDLL(None, use_errno=True)\nl.shmat.restype = ctypes.c_void_p\nid = int(sys.argv[1])\nbuf = ctypes.create_string_buffer(256)\nassert l.shmctl(id, 2, buf) == 0\nbefore = l.shmat(id, None, 0) != 2**64 - 1\ntime.sleep(1.1)\nassert l.shmctl(id, 1, buf) == 0, ctypes.get_errno()\nst = ctypes.create_string_buffer(256)\nl.shmctl(id, 2, st)\nprint(before, ctypes.c_int64.from_buffer(buf, 72).value < ctypes.c_int64.from_buffer(st, 72).value)\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("own.scn"),
            "process A\nA: create s = private size 4096\nA: run \"python3 ${here}/set.py ${s}\" => status 0, stdout \"True True\\n\"\nA: run \"ipcrm -m ${s}\" => status 0\nA: run \"ipcmk -M 100\" => status 0, stdout \"Shared memory id: {t}\\n\"\nA: run \"ipcrm -m ${t}\" => status 0\nA: segments => 0\n",
        )
        .unwrap();
        let out = harness_traced(&["run", "--isolation", "host", "own.scn"], dir.path(), &[]);
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{s}{}", text(&out.stderr));
        assert_eq!(segments().iter().map(|s| s.0).collect::<Vec<_>>(), vec![other], "the foreign segment was touched");
    }

    /// The guard is on the `spawn` path too: a spawned `ipcrm` given the
    /// id of a segment the test made is refused (it exits 1), the
    /// scenario fails naming it and the segment, which survives.
    #[test]
    fn a_spawned_program_is_refused_a_foreign_segment() {
        traced_or_skip!();
        let other = foreign(0x7ace_1007);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sp.scn"), format!("process A\nA: spawn P = \"ipcrm -m {other}\"\nA: wait P => status 1\n")).unwrap();
        let out = harness_traced(&["run", "--isolation", "host", "sp.scn"], dir.path(), &[]);
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{s}{}", text(&out.stderr));
        let call = format!("called shmctl({other}, IPC_RMID) on shmid {other} (key 0x7ace1007, owner uid 0), which is not this scenario's: refused with EACCES");
        assert!(s.contains("program ipcrm (pid ") && s.contains(&call), "{s}");
        assert_eq!(segments().iter().map(|s| s.0).collect::<Vec<_>>(), vec![other], "the foreign segment was removed");
    }

    /// SIGKILL of the whole run (coordinator, supervisor, actor, tracer,
    /// program at once) once the traced creation is journaled: `sweep`
    /// removes exactly that segment, whose journaled identity is the one
    /// `/proc/sysvipc/shm` shows from outside; a foreign segment survives.
    #[test]
    fn sigkill_after_a_traced_creation_then_sweep_removes_exactly_it() {
        use std::os::unix::process::CommandExt;
        traced_or_skip!();
        let other = foreign(0x7ace_1004);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.scn"), "timeout 60s\nprocess A\nA: run \"sh -c 'ipcmk -M 4096; exec sleep 60'\"\n").unwrap();
        let state = dir.path().join("state");
        let mut child = Command::new(bin())
            .args(["run", "--isolation", "host", "k.scn"])
            .current_dir(dir.path())
            .env("SHM_HARNESS_STATE_DIR", &state)
            .env_remove("SHM_HARNESS_NO_TRACE")
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let group = nix::unistd::Pid::from_raw(child.id() as i32);
        // Wait for the journal record (not just the segment: the kernel
        // shows it before the tracer has reported it).
        let deadline = Instant::now() + Duration::from_secs(20);
        let record = loop {
            let journals: Vec<String> = std::fs::read_dir(&state)
                .map(|d| d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect())
                .unwrap_or_default();
            if let Some(line) = journals.iter().flat_map(|j| j.lines()).find(|l| l.contains("traced program")) {
                break serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
            assert!(Instant::now() < deadline, "no journal record of the traced creation: {:?}", segments());
            std::thread::sleep(Duration::from_millis(5));
        };
        nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = child.wait();
        let shmid = record["shmid"].as_i64().unwrap() as i32;
        let row = segments().into_iter().find(|s| s.0 == shmid).expect("the traced segment is there after the kill");
        // The journal's identity is the one the sweep sees from outside.
        assert_eq!((i64::from(row.1), row.2), (record["cpid"].as_i64().unwrap(), record["ctime"].as_i64().unwrap()), "{record}");
        // The run's lock goes with its last process (the tracees die with the tracer).
        let deadline = Instant::now() + Duration::from_secs(10);
        let out = loop {
            let out = harness_traced(&["sweep"], dir.path(), &[]);
            if text(&out.stderr).contains("removed shmid") || Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(err.contains(&format!("removed shmid {shmid} ")) && err.contains("k.scn:3 (A (traced program))"), "{err}");
        assert_eq!(segments().iter().map(|s| s.0).collect::<Vec<_>>(), vec![other], "sweep removed too much or too little");
    }

    /// The control: with tracing turned off (`SHM_HARNESS_NO_TRACE=1`) host
    /// mode cannot see programs' creations and skips, saying why; the
    /// program never runs.
    #[test]
    fn without_tracing_a_program_scenario_is_skipped_saying_why() {
        private_namespace_or_skip!();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("leak.scn"), "process A\nA: run \"sh -c 'ipcmk -M 4096'\"\n").unwrap();
        let out = harness_traced(&["run", "--isolation", "host", "leak.scn"], dir.path(), &[("SHM_HARNESS_NO_TRACE", "1")]);
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{s}");
        assert!(s.contains("SKIP") && s.contains("line 2 runs a program") && s.contains("SHM_HARNESS_NO_TRACE turns tracing off"), "{s}");
        assert!(segments().is_empty(), "{:?}", segments());
    }

    /// The tracer inside a PID namespace that still sees the host's `/proc`
    /// (as a host-mode supervisor's PID namespace would): `/proc/TID` is
    /// another process there, so a creation must come out `Unverified`
    /// (fail closed), never silently dropped. (Host mode itself gives
    /// scenarios with traced programs no PID namespace.)
    #[test]
    fn in_a_pid_namespace_with_the_hosts_proc_a_creation_is_unverified_not_hidden() {
        traced_or_skip!();
        skip_if_not_root!();
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).expect("unshare(CLONE_NEWPID)");
        // SAFETY: this test process is single-threaded (rusty-fork runs the
        // test on the main thread); the child only traces and exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    let p = shm_harness::trace::Program::new(&["sh", "-c", "ipcmk -M 100"], Path::new("/")).ok()?;
                    let mut t = shm_harness::trace::spawn(p).ok()?;
                    let events = t.collect(Duration::from_secs(20)).ok()?;
                    let unverified = events.iter().any(|e| matches!(e, shm_harness::trace::Event::Unverified { .. }));
                    let created = events.iter().any(|e| matches!(e, shm_harness::trace::Event::Created { .. }));
                    Some(if unverified && !created { 0 } else { 3 })
                })()
                .unwrap_or(4);
                // SAFETY: ends the forked child without running the test's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0), "3: the creation was not reported as unverified; 4: tracing failed");
            }
        }
    }
}
