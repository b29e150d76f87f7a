//! The tracer (`shm_harness::trace`) against real programs. Every test runs
//! in its own process (rusty-fork, single-threaded: libtest runs the one
//! test on the main thread) and its own private IPC namespace.

#![allow(unsafe_code)] // opts in: raw calls against the kernel under test

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rusty_fork::rusty_fork_test;
use shm_harness::sysv::{self, CreateOptions, Key};
use shm_harness::trace::{self, Event, Exit, Program, Stdio, Step, Traps};

const PY: &str = "/usr/bin/python3";
/// A freestanding i386 program: `ipc(SHMGET, IPC_PRIVATE, 100, 0600)`
/// then `shmget(IPC_PRIVATE, 200, 0600)` (i386 number 395), printing each
/// result on a line.
const I386_PROGRAM: &str = r#"
static long sys(long nr, long a, long b, long c, long d, long e) {
    long r;
    __asm__ volatile ("push %%ebp; mov %6, %%ebp; int $0x80; pop %%ebp"
                      : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e) : "memory");
    return r;
}
static void put(long v) {
    char buf[16]; int i = 15; int neg = v < 0; unsigned long u = neg ? -v : v;
    buf[i--] = '\n';
    do { buf[i--] = '0' + u % 10; u /= 10; } while (u);
    if (neg) buf[i--] = '-';
    sys(4, 1, (long)(buf + i + 1), 15 - i, 0, 0);
}
void _start(void) {
    put(sys(117, 23, 0, 100, 0600, 0));
    put(sys(395, 0, 200, 0600, 0, 0));
    sys(1, 0, 0, 0, 0, 0);
}
"#;
/// A freestanding i386 program on shmid 0: `ipc(SHMAT)`, `shmat` (397),
/// `shmctl(SHM_LOCK)` (396), `ipc(SHMCTL, IPC_RMID | IPC_64)`,
/// then `shmctl(IPC_STAT)` (a read), printing each result (0, or -errno).
const I386_GUARDED: &str = r#"
static long sys(long nr, long a, long b, long c, long d, long e) {
    long r;
    __asm__ volatile ("push %%ebp; mov %6, %%ebp; int $0x80; pop %%ebp"
                      : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e) : "memory");
    return r;
}
static long err(long r) { return (unsigned long)r > -4096UL ? r : 0; }
static void put(long v) {
    char buf[16]; int i = 15; int neg = v < 0; unsigned long u = neg ? -v : v;
    buf[i--] = '\n';
    do { buf[i--] = '0' + u % 10; u /= 10; } while (u);
    if (neg) buf[i--] = '-';
    sys(4, 1, (long)(buf + i + 1), 15 - i, 0, 0);
}
void _start(void) {
    long addr = 0;
    char ds[128];
    put(err(sys(117, 21, 0, 0, (long)&addr, 0)));
    put(err(sys(397, 0, 0, 0, 0, 0)));
    put(err(sys(396, 0, 11, (long)ds, 0, 0)));
    put(err(sys(117, 24, 0, 0 | 0x100, 0, (long)ds)));
    put(err(sys(396, 0, 2, (long)ds, 0, 0)));
    sys(1, 0, 0, 0, 0, 0);
}
"#;
const K1: Key = Key::from_raw(0x7ace_0001);

/// Skips the test (with the reason printed) if tracing is unavailable here.
macro_rules! trace_or_skip {
    () => {
        if let Err(why) = trace::available() {
            eprintln!("skipped: {}: tracing unavailable: {why}", module_path!());
            return;
        }
    };
}

/// What a traced run gave.
struct Run {
    events: Vec<Event>,
    stdout: String,
}

impl Run {
    fn created(&self) -> Vec<(i32, i32, i64, u64)> {
        self.events
            .iter()
            .filter_map(|e| match *e {
                Event::Created { shmid, cpid, ctime, size, .. } => Some((shmid, cpid, ctime, size)),
                _ => None,
            })
            .collect()
    }
    fn started(&self) -> i32 {
        match self.events.first() {
            Some(Event::Started { pid }) => *pid,
            other => panic!("first event is not Started: {other:?} in {:?}", self.events),
        }
    }
    fn exit(&self) -> Exit {
        self.events
            .iter()
            .find_map(|e| match e {
                Event::ProgramExited(x) => Some(*x),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no ProgramExited in {:?}", self.events))
    }
}

fn tempfile_fd() -> (File, OwnedFd) {
    let f = tempfile::tempfile().unwrap();
    let fd = OwnedFd::from(f.try_clone().unwrap());
    (f, fd)
}

fn read_all(mut f: &File) -> String {
    let mut s = String::new();
    f.rewind().unwrap();
    f.read_to_string(&mut s).unwrap();
    s
}

fn program(argv: &[&str]) -> Program {
    Program::new(argv, Path::new("/")).unwrap()
}

/// Traces `argv` to the end (stdout to a file, stderr inherited).
fn trace_with(argv: &[&str], traps: Traps) -> Run {
    let (out, fd) = tempfile_fd();
    let p = program(argv).stdio(1, Stdio::Fd(fd)).stdio(2, Stdio::Inherit).traps(traps);
    let mut t = trace::spawn(p).unwrap();
    let events = t.collect(Duration::from_secs(30)).unwrap();
    t.reap().unwrap();
    assert_eq!(events.last(), Some(&Event::AllExited), "{events:?}");
    Run { events, stdout: read_all(&out) }
}

fn traced(argv: &[&str]) -> Run {
    trace_with(argv, Traps::ShmCalls)
}

/// The oracle: segments alive now that were not there `before` and that
/// no `Created` event claims, by full identity (shmid, cpid, ctime).
fn unseen(before: &BTreeSet<i32>, run: &Run) -> Vec<i32> {
    let claimed: BTreeSet<(i32, i32, i64)> = run.created().iter().map(|&(s, c, t, _)| (s, c, t)).collect();
    sysv::proc_segments()
        .unwrap()
        .iter()
        .filter(|r| !before.contains(&r.shmid.raw()) && !claimed.contains(&(r.shmid.raw(), r.cpid, r.ctime)))
        .map(|r| r.shmid.raw())
        .collect()
}

fn ids_now() -> BTreeSet<i32> {
    sysv::proc_segments().unwrap().iter().map(|r| r.shmid.raw()).collect()
}

/// `ipcmk`'s "Shared memory id: N" lines.
fn ipcmk_ids(stdout: &str) -> Vec<i32> {
    stdout.lines().filter_map(|l| l.strip_prefix("Shared memory id: ")).map(|v| v.trim().parse().unwrap()).collect()
}

/// The process state letter from `/proc/PID/stat`; `None` if gone.
fn proc_state(pid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `argv` untraced, as the runner does today: status and stdout.
fn untraced(argv: &[&str]) -> (Exit, String) {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(argv[0]).args(&argv[1..]).current_dir("/").output().unwrap();
    let exit = match out.status.code() {
        Some(c) => Exit::Code(c),
        None => Exit::Signal { signal: out.status.signal().unwrap(), core: out.status.core_dumped() },
    };
    (exit, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `body` in a forked child, which is single-threaded (the rusty-fork
/// test process is not: libtest keeps a second thread), as
/// `trace::spawn` requires; the test fails if `body` panics.
fn single_threaded(body: impl FnOnce()) {
    let child = common::fork_child(|| match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(()) => 0,
        Err(_) => 101,
    });
    assert_eq!(
        common::wait(child),
        nix::sys::wait::WaitStatus::Exited(child, 0),
        "the test's child failed (see its panic above)"
    );
}

rusty_fork_test! {
    #![rusty_fork(timeout_ms = 60_000)]

    #[test]
    fn ipcmk_creation_is_reported_with_its_identity() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            let before = ids_now();
            let run = traced(&["ipcmk", "-M", "100"]);
            let pid = run.started();
            assert_eq!(run.exit(), Exit::Code(0));
            let ids = ipcmk_ids(&run.stdout);
            assert_eq!(ids.len(), 1, "{}", run.stdout);
            let created = run.created();
            assert_eq!(created.len(), 1, "{:?}", run.events);
            let (shmid, cpid, ctime, size) = created[0];
            assert_eq!((shmid, cpid, size), (ids[0], pid, 100));
            let st = sysv::Shmid::from_raw(shmid).stat().unwrap();
            assert_eq!((st.cpid, st.ctime, st.size), (cpid, ctime, 100));
            assert_eq!(unseen(&before, &run), Vec::<i32>::new());
        });
    }

    #[test]
    fn a_shells_grandchild_is_traced() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            let before = ids_now();
            // `; true` keeps sh from exec'ing ipcmk in place: ipcmk is a child.
            let run = traced(&["sh", "-c", "ipcmk -M 100; true"]);
            let created = run.created();
            assert_eq!(created.len(), 1, "{:?}", run.events);
            assert_ne!(created[0].1, run.started(), "ipcmk should be the shell's child");
            assert_eq!(ipcmk_ids(&run.stdout), vec![created[0].0]);
            assert_eq!(unseen(&before, &run), Vec::<i32>::new());
        });
    }

    #[test]
    fn two_creations_are_two_events() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            let before = ids_now();
            let run = traced(&["sh", "-c", "ipcmk -M 100; ipcmk -M 200"]);
            let sizes: Vec<u64> = run.created().iter().map(|c| c.3).collect();
            assert_eq!(sizes, vec![100, 200]);
            assert_eq!(ipcmk_ids(&run.stdout), run.created().iter().map(|c| c.0).collect::<Vec<_>>());
            assert_eq!(unseen(&before, &run), Vec::<i32>::new());
        });
    }

    #[test]
    fn a_daemon_creating_after_the_program_exited_is_traced() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            let before = ids_now();
            // Double fork: the subshell's child outlives both shells.
            let run = traced(&["sh", "-c", "( (sleep 0.3; ipcmk -M 300) & ); exit 0"]);
            let exited = run.events.iter().position(|e| matches!(e, Event::ProgramExited(_))).unwrap();
            let created = run.events.iter().position(|e| matches!(e, Event::Created { .. })).expect("no Created");
            assert!(exited < created, "the creation should come after the program's exit: {:?}", run.events);
            assert_eq!(run.exit(), Exit::Code(0));
            assert_eq!(run.created()[0].3, 300);
            assert_eq!(unseen(&before, &run), Vec::<i32>::new());
        });
    }

    #[test]
    fn opening_an_existing_segment_is_not_a_creation() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            if !Path::new(PY).exists() { eprintln!("skipped: no {PY}"); return; }
            let mine = CreateOptions::new(100).create_exclusive(K1).unwrap();
            // IPC_CREAT on an existing key: returns the test's segment.
            let code = format!("import ctypes; print(ctypes.CDLL(None).shmget({}, 100, 0o1600))", K1.raw());
            let run = traced(&[PY, "-c", &code]);
            assert_eq!(run.stdout.trim(), mine.id().raw().to_string(), "the program should have opened the test's segment");
            assert_eq!(run.created(), vec![], "{:?}", run.events);
            assert!(!run.events.iter().any(|e| matches!(e, Event::Unverified { .. })), "{:?}", run.events);
        });
    }

    #[test]
    fn a_failing_shmget_reports_nothing() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            let _mine = CreateOptions::new(100).create_exclusive(K1).unwrap();
            let before = ids_now();
            let run = traced(&["ipcmk", "-M", "0"]);
            assert_eq!(run.exit(), Exit::Code(1));
            assert_eq!(run.events.len(), 3, "Started, ProgramExited, AllExited: {:?}", run.events);
            if Path::new(PY).exists() {
                let code = format!("import ctypes; print(ctypes.CDLL(None).shmget({}, 100, 0o3600))", K1.raw());
                let run = traced(&[PY, "-c", &code]);
                assert_eq!(run.stdout.trim(), "-1", "IPC_CREAT|IPC_EXCL of an existing key must fail");
                assert_eq!(run.events.len(), 3, "{:?}", run.events);
            }
            assert_eq!(ids_now(), before);
        });
    }

    #[test]
    fn ipc_set_reports_the_new_ctime_and_ipc_rmid_the_removal() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            if !Path::new(PY).exists() { eprintln!("skipped: no {PY}"); return; }
            let code = "import ctypes, time\n\
                        l = ctypes.CDLL(None, use_errno=True)\n\
                        i = l.shmget(0, 100, 0o600)\n\
                        time.sleep(1.1)\n\
                        buf = ctypes.create_string_buffer(512)\n\
                        assert l.shmctl(i, 2, buf) == 0\n\
                        assert l.shmctl(i, 1, buf) == 0\n\
                        print(i)";
            let run = traced(&[PY, "-c", code]);
            assert_eq!(run.exit(), Exit::Code(0), "{}", run.stdout);
            let id: i32 = run.stdout.trim().parse().unwrap();
            let created = run.created();
            assert_eq!(created.len(), 1, "{:?}", run.events);
            let (shmid, cpid, ctime0, _) = created[0];
            assert_eq!(shmid, id);
            let changed: Vec<_> = run.events.iter().filter(|e| matches!(e, Event::Changed { .. })).collect();
            let [Event::Changed { shmid: s, cpid: c, old_ctime, ctime, .. }] = changed[..] else {
                panic!("expected one Changed: {:?}", run.events)
            };
            assert_eq!((*s, *c, *old_ctime), (shmid, cpid, Some(ctime0)));
            assert!(*ctime > ctime0);
            assert_eq!(sysv::Shmid::from_raw(shmid).stat().unwrap().ctime, *ctime);

            // IPC_RMID by a program: reported.
            let run = traced(&["ipcrm", "-m", &id.to_string()]);
            assert_eq!(run.exit(), Exit::Code(0));
            assert!(run.events.contains(&Event::Removed { shmid: id, by_pid: run.started() }), "{:?}", run.events);
            assert!(sysv::Shmid::from_raw(id).stat().is_err());
        });
    }

    #[test]
    fn a_thread_creating_a_segment_is_claimed_for_its_process() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            if !Path::new(PY).exists() { eprintln!("skipped: no {PY}"); return; }
            let before = ids_now();
            let code = "import ctypes, threading\n\
                        l = ctypes.CDLL(None)\n\
                        r = []\n\
                        t = threading.Thread(target=lambda: r.append(l.shmget(0, 4096, 0o600)))\n\
                        t.start(); t.join()\n\
                        print(r[0])";
            let run = traced(&[PY, "-c", code]);
            assert_eq!(run.exit(), Exit::Code(0));
            let by = run.events.iter().find_map(|e| match *e {
                Event::Created { shmid, cpid, by_pid, .. } => Some((shmid, cpid, by_pid)),
                _ => None,
            });
            let (shmid, cpid, by_pid) = by.unwrap_or_else(|| panic!("no Created: {:?}", run.events));
            assert_eq!(run.stdout.trim(), shmid.to_string());
            assert_eq!(cpid, run.started(), "cpid is the thread-group id");
            assert_ne!(by_pid, cpid, "the call came from the second thread");
            assert_eq!(unseen(&before, &run), Vec::<i32>::new());
        });
    }

    #[test]
    fn killing_the_tracer_kills_a_daemon() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            let (out, fd) = tempfile_fd();
            let p = program(&["sh", "-c", "sh -c 'echo $$; exec sleep 60' & exit 0"]).stdio(1, Stdio::Fd(fd));
            let mut t = trace::spawn(p).unwrap();
            loop {
                match t.recv(Duration::from_secs(10)).unwrap() {
                    Event::ProgramExited(x) => {
                        assert_eq!(x, Exit::Code(0));
                        break;
                    }
                    Event::Started { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            let mut daemon = 0;
            wait_for("the daemon's pid", || {
                daemon = read_all(&out).trim().parse().unwrap_or(0);
                daemon > 0
            });
            wait_for("the daemon to exec sleep", || {
                std::fs::read_to_string(format!("/proc/{daemon}/comm")).is_ok_and(|c| c.trim() == "sleep")
            });
            // The control: alive, and the tracer still running, before the kill.
            assert!(matches!(proc_state(daemon), Some(s) if s != 'Z'), "daemon {daemon} should be alive");
            assert!(matches!(t.recv(Duration::from_millis(200)), Err(trace::TraceError::Timeout(_))));
            t.kill_all().unwrap();
            wait_for("the daemon to die", || matches!(proc_state(daemon), None | Some('Z' | 'X')));
        });
    }

    #[test]
    fn traced_programs_behave_as_untraced_ones() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            let cases: &[&[&str]] = &[
                &["true"],
                &["false"],
                &["sh", "-c", "echo hello | tr a-z A-Z | cat; exit 3"],
                &["sh", "-c", "kill -TERM $$"],
                &["sh", "-c", "kill -KILL $$"],
                &["sh", "-c", "trap 'echo got-usr1' USR1; kill -USR1 $$; echo after"],
                &["sh", "-c", "sleep 5 & kill -TERM $!; wait $!; echo status=$?"],
                &["sh", "-c", "exec ipcs -m"],
                &["sh", "-c", "kill -TRAP $$"],
                &["sh", "-c", "sleep 0.5 & p=$!; kill -STOP $p; sleep 0.1; kill -CONT $p; wait $p; echo status=$?"],
                &["sh", "-c", "sleep 5 & p=$!; kill -TSTP $p; kill -KILL $p; wait $p; echo status=$?"],
            ];
            for argv in cases {
                let run = traced(argv);
                let (exit, stdout) = untraced(argv);
                assert_eq!((run.exit(), run.stdout.as_str()), (exit, stdout.as_str()), "{argv:?}");
            }
        });
    }

    #[test]
    fn a_program_that_stops_itself_stays_stopped_until_sigcont() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            let (out, fd) = tempfile_fd();
            let p = program(&["sh", "-c", "echo before; kill -STOP $$; echo resumed"]).stdio(1, Stdio::Fd(fd));
            let mut t = trace::spawn(p).unwrap();
            let Event::Started { pid } = t.recv(Duration::from_secs(10)).unwrap() else { panic!("no Started") };
            wait_for("the program to stop", || matches!(proc_state(pid), Some('T' | 't')));
            std::thread::sleep(Duration::from_millis(300));
            assert!(matches!(proc_state(pid), Some('T' | 't')), "the program should still be stopped");
            assert_eq!(read_all(&out), "before\n");
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGCONT).unwrap();
            let events = t.collect(Duration::from_secs(10)).unwrap();
            assert_eq!(events, vec![Event::ProgramExited(Exit::Code(0)), Event::AllExited]);
            assert_eq!(read_all(&out), "before\nresumed\n");

            // Stopped (listening) tracees die with the tracer too.
            let mut t = trace::spawn(program(&["sh", "-c", "kill -STOP $$"])).unwrap();
            let Event::Started { pid } = t.recv(Duration::from_secs(10)).unwrap() else { panic!("no Started") };
            wait_for("the program to stop", || matches!(proc_state(pid), Some('T' | 't')));
            t.kill_all().unwrap();
            wait_for("the stopped program to die", || matches!(proc_state(pid), None | Some('Z' | 'X')));
        });
    }

    #[test]
    fn a_creation_the_program_saw_survives_a_kill_of_everyone() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            // The shell kills its parent, the tracer, right after ipcmk
            // returned: EXITKILL then kills the shell. The creation must
            // already be on the pipe, as the program saw it succeed.
            let (out, fd) = tempfile_fd();
            let p = program(&["sh", "-c", "ipcmk -M 100; kill -9 $PPID; sleep 60"]).stdio(1, Stdio::Fd(fd));
            let mut t = trace::spawn(p).unwrap();
            let mut events = vec![];
            let end = loop {
                match t.recv(Duration::from_secs(20)) {
                    Ok(e) => events.push(e),
                    Err(e) => break e,
                }
            };
            assert!(matches!(end, trace::TraceError::Vanished), "{end}: {events:?}");
            let ids = ipcmk_ids(&read_all(&out));
            assert_eq!(ids.len(), 1);
            assert!(
                events.iter().any(|e| matches!(e, Event::Created { shmid, .. } if *shmid == ids[0])),
                "{events:?}"
            );
        });
    }

    #[test]
    fn exec_from_a_second_thread_keeps_tracing() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            if !Path::new(PY).exists() { eprintln!("skipped: no {PY}"); return; }
            let before = ids_now();
            let code = "import os, threading, time\n\
                        t = threading.Thread(target=lambda: os.execv('/bin/sh', ['sh', '-c', 'ipcmk -M 100; true']))\n\
                        t.start(); time.sleep(30)";
            let run = traced(&[PY, "-c", code]);
            assert_eq!(run.exit(), Exit::Code(0), "{:?}", run.events);
            assert_eq!(run.created().len(), 1, "{:?}", run.events);
            assert_eq!(unseen(&before, &run), Vec::<i32>::new());
        });
    }

    #[test]
    fn no_new_privs_is_set_only_without_cap_sys_admin() {
        // No segment is created: runs in whatever namespace the test has.
        single_threaded(|| {
            trace_or_skip!();
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let cap_eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap();
            let privileged = u64::from_str_radix(cap_eff.trim(), 16).unwrap() & (1 << 21) != 0;
            let run = traced(&["grep", "NoNewPrivs", "/proc/self/status"]);
            let want = if privileged { "NoNewPrivs:\t0\n" } else { "NoNewPrivs:\t1\n" };
            assert_eq!(run.stdout, want, "privileged={privileged}");
        });
    }

    #[test]
    fn the_tracer_holds_no_fd_of_the_caller() {
        single_threaded(|| {
            trace_or_skip!();
            // A close-on-exec pipe: the program (after exec) does not hold
            // it; the tracer (no exec) must have closed its copy itself.
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
            let mut t = trace::spawn(program(&["sleep", "5"])).unwrap();
            assert!(matches!(t.recv(Duration::from_secs(10)).unwrap(), Event::Started { .. }));
            drop(w);
            let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&r), nix::poll::PollFlags::POLLIN)];
            let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(2000u16)).unwrap();
            assert_eq!(n, 1, "no EOF on the caller's pipe: the tracer still holds its write end");
            let mut buf = [0u8; 1];
            assert_eq!(nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut buf).unwrap(), 0);
            t.kill_all().unwrap();
        });
    }

    #[test]
    fn without_capabilities_a_mode_000_segment_is_still_claimed() {
        single_threaded(|| {
            private_namespace_or_skip!();
            // Drop every capability: the tracer then cannot IPC_STAT a
            // segment without read permission (no CAP_IPC_OWNER) and reads
            // /proc/sysvipc/shm instead; the filter needs no-new-privs.
            #[repr(C)]
            struct Header {
                version: u32,
                pid: i32,
            }
            let hdr = Header { version: 0x2008_0522, pid: 0 };
            let data = [0u32; 6];
            // SAFETY: capset(2) with a v3 header and two zeroed data structs.
            let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) };
            assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());
            trace_or_skip!();
            let before = ids_now();
            let run = traced(&["ipcmk", "-M", "100", "-p", "0000"]);
            assert_eq!(run.exit(), Exit::Code(0));
            let ids = ipcmk_ids(&run.stdout);
            assert_eq!(ids.len(), 1);
            assert!(sysv::Shmid::from_raw(ids[0]).stat().is_err(), "the control: IPC_STAT must be refused here");
            assert_eq!(run.created().iter().map(|c| c.0).collect::<Vec<_>>(), ids, "{:?}", run.events);
            assert_eq!(unseen(&before, &run), Vec::<i32>::new());
        });
    }

    #[test]
    fn vfork_and_posix_spawn_children_are_traced() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            if !Path::new(PY).exists() { eprintln!("skipped: no {PY}"); return; }
            let before = ids_now();
            // subprocess uses vfork (CLONE_VFORK) where it can; os.posix_spawn
            // is glibc's clone(CLONE_VM|CLONE_VFORK).
            let code = "import os, subprocess, sys\n\
                        subprocess.run(['ipcmk', '-M', '100'], check=True)\n\
                        pid = os.posix_spawnp('ipcmk', ['ipcmk', '-M', '200'], os.environ)\n\
                        assert os.waitpid(pid, 0)[1] == 0";
            let run = traced(&[PY, "-c", code]);
            assert_eq!(run.exit(), Exit::Code(0), "{:?}", run.events);
            let sizes: Vec<u64> = run.created().iter().map(|c| c.3).collect();
            assert_eq!(sizes, vec![100, 200], "{:?}", run.events);
            assert_eq!(unseen(&before, &run), Vec::<i32>::new());
        });
    }

    #[test]
    fn the_program_inherits_no_death_signal() {
        single_threaded(|| {
            trace_or_skip!();
            if !Path::new(PY).exists() { eprintln!("skipped: no {PY}"); return; }
            let code = "import ctypes; s = ctypes.c_int(-1); ctypes.CDLL(None).prctl(2, ctypes.byref(s)); print(s.value)";
            assert_eq!(traced(&[PY, "-c", code]).stdout, "0\n");
        });
    }

    #[test]
    fn an_i386_program_is_traced_through_ipc_and_direct_calls() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            if !cfg!(target_arch = "x86_64") { eprintln!("skipped: x86_64 only"); return; }
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("i386.c");
            let exe = dir.path().join("i386");
            std::fs::write(&src, I386_PROGRAM).unwrap();
            let built = Command::new("cc")
                .args(["-m32", "-O1", "-nostdlib", "-static", "-fno-pie", "-no-pie", "-fno-stack-protector", "-o"])
                .arg(&exe)
                .arg(&src)
                .output();
            match built {
                Ok(o) if o.status.success() => {}
                other => { eprintln!("skipped: cannot build an i386 program with cc -m32: {other:?}"); return; }
            }
            let before = ids_now();
            let run = traced(&[exe.to_str().unwrap()]);
            assert_eq!(run.exit(), Exit::Code(0), "{:?}", run.events);
            let ids: Vec<i32> = run.stdout.lines().map(|l| l.parse().unwrap()).collect();
            let created: Vec<(i32, u64)> = run.created().iter().map(|c| (c.0, c.3)).collect();
            assert_eq!(created, vec![(ids[0], 100), (ids[1], 200)], "{:?}", run.events);
            assert_eq!(unseen(&before, &run), Vec::<i32>::new());
        });
    }

    /// The guard under the i386 ABI, direct calls and the `ipc()`
    /// multiplexer: with a ledger that gives the program nothing, both
    /// `shmat`s, `SHM_LOCK` and `IPC_RMID` on a segment it did not create
    /// get EACCES and are reported (the segment stays, unattached,
    /// unlocked); `IPC_STAT` runs. Control: with a ledger that gives it
    /// the segment, the same program does all of it.
    #[test]
    fn an_i386_program_is_refused_a_segment_the_ledger_does_not_give() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            if !cfg!(target_arch = "x86_64") { eprintln!("skipped: x86_64 only"); return; }
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("guarded.c");
            let exe = dir.path().join("guarded");
            std::fs::write(&src, I386_GUARDED).unwrap();
            let built = Command::new("cc")
                .args(["-m32", "-O1", "-nostdlib", "-static", "-fno-pie", "-no-pie", "-fno-stack-protector", "-o"])
                .arg(&exe)
                .arg(&src)
                .output();
            match built {
                Ok(o) if o.status.success() => {}
                other => { eprintln!("skipped: cannot build an i386 program with cc -m32: {other:?}"); return; }
            }
            let seg = CreateOptions::new(4096).mode(sysv::Mode::ALL_RW).create_exclusive(K1).unwrap().release();
            assert_eq!(seg.id().raw(), 0, "the program works on shmid 0");
            let run = |owns: bool| {
                let (out, fd) = tempfile_fd();
                let ledger = trace::Ledger::new(vec![], Box::new(move |_| Ok(owns)));
                let p = program(&[exe.to_str().unwrap()]).stdio(1, Stdio::Fd(fd)).guard(ledger);
                let mut t = trace::spawn(p).unwrap();
                let events = t.collect(Duration::from_secs(30)).unwrap();
                t.reap().unwrap();
                (events, read_all(&out))
            };
            let (events, stdout) = run(false);
            assert_eq!(stdout, "-13\n-13\n-13\n-13\n0\n", "{events:?}");
            let refused: Vec<trace::GuardedCall> = events.iter().filter_map(|e| match e {
                Event::Refused(r) => Some(r.call),
                _ => None,
            }).collect();
            use trace::GuardedCall::{Shmat, Shmctl};
            assert_eq!(refused, vec![Shmat, Shmat, Shmctl { cmd: 11 }, Shmctl { cmd: 0 }], "{events:?}");
            let Some(Event::Refused(r)) = events.iter().find(|e| matches!(e, Event::Refused(_))) else { unreachable!() };
            assert!(r.program.ends_with("/guarded") && r.shmid == 0 && r.why == trace::Why::NotOurs { key: K1.raw(), uid: 0 }, "{r:?}");
            let st = seg.id().stat().expect("the segment is still there");
            assert!(st.nattch == 0 && !st.locked && !st.dest, "{st:?}");
            // Control: the ledger gives it the segment.
            let (events, stdout) = run(true);
            assert_eq!(stdout, "0\n0\n0\n0\n0\n", "{events:?}");
            assert!(!events.iter().any(|e| matches!(e, Event::Refused(_))), "{events:?}");
            assert!(seg.id().stat().is_err(), "removed once its last attachment went");
        });
    }

    #[test]
    fn a_missing_program_is_not_started() {
        single_threaded(|| {
            trace_or_skip!();
            let mut t = trace::spawn(program(&["/nonexistent/program"])).unwrap();
            let events = t.collect(Duration::from_secs(10)).unwrap();
            assert_eq!(
                events,
                vec![
                    Event::Started { pid: match events[0] { Event::Started { pid } => pid, _ => -1 } },
                    Event::NotStarted { step: Step::Exec, errno: libc::ENOENT },
                    Event::ProgramExited(Exit::Code(127)),
                    Event::AllExited,
                ]
            );
            let mut t = trace::spawn(Program::new(&["true"], Path::new("/nonexistent")).unwrap()).unwrap();
            let events = t.collect(Duration::from_secs(10)).unwrap();
            assert_eq!(
                events,
                vec![
                    Event::NotStarted { step: Step::Chdir, errno: libc::ENOENT },
                    Event::ProgramExited(Exit::Code(127)),
                    Event::AllExited,
                ]
            );
        });
    }

    #[test]
    fn a_caller_ignoring_sigchld_is_refused() {
        single_threaded(|| {
            trace_or_skip!();
            // The control: allowed with the default disposition.
            assert_eq!(traced(&["sh", "-c", "exit 7"]).exit(), Exit::Code(7));
            // SAFETY: sets a disposition in this single-threaded test child.
            unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
            let err = trace::spawn(program(&["true"])).unwrap_err();
            assert!(matches!(err, trace::TraceError::ChildrenAutoReaped), "{err}");
        });
    }

    #[test]
    fn a_multi_threaded_caller_is_refused() {
        single_threaded(|| {
            let (_tx, rx) = std::sync::mpsc::channel::<()>();
            let _thread = std::thread::spawn(move || rx.recv());
            let err = trace::spawn(program(&["true"])).unwrap_err();
            assert!(matches!(err, trace::TraceError::MultiThreaded { threads: 2, .. }), "{err}");
        });
    }

    #[test]
    fn control_a_blind_tracer_fails_the_oracle() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            let before = ids_now();
            let run = trace_with(&["sh", "-c", "ipcmk -M 100; true"], Traps::Nothing);
            assert_eq!(run.created(), vec![]);
            let missed = unseen(&before, &run);
            assert_eq!(missed, ipcmk_ids(&run.stdout), "the oracle must report the segment the blind tracer missed");
            assert_eq!(missed.len(), 1);
        });
    }

    #[test]
    fn cost_of_tracing() {
        single_threaded(|| {
            private_namespace_or_skip!();
            trace_or_skip!();
            const N: u32 = 20;
            let time = |f: &mut dyn FnMut()| {
                let start = Instant::now();
                for _ in 0..N {
                    f();
                }
                start.elapsed() / N
            };
            let mk_rm = "ipcrm -m $(ipcmk -M 4096 | sed 's/.*: //')";
            let t_true = time(&mut || drop(traced(&["true"])));
            let u_true = time(&mut || drop(untraced(&["true"])));
            let t_mk = time(&mut || {
                let run = traced(&["sh", "-c", mk_rm]);
                assert_eq!(run.created().len(), 1, "{:?}", run.events);
            });
            let u_mk = time(&mut || assert_eq!(untraced(&["sh", "-c", mk_rm]).0, Exit::Code(0)));
            println!("trace cost (mean of {N}): true: traced {t_true:?} untraced {u_true:?}; ipcmk -M 4096 + ipcrm: traced {t_mk:?} untraced {u_mk:?}");
            assert_eq!(ids_now(), BTreeSet::new());
        });
    }
}

#[test]
fn available_here_unless_a_known_blocker() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let seccomp_mode = status.lines().find_map(|l| l.strip_prefix("Seccomp:")).map(|v| v.trim().to_string());
    let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok();
    let blocked = yama.as_deref().is_some_and(|v| v.trim() >= "2") || seccomp_mode.as_deref() == Some("2");
    match trace::available() {
        Ok(()) => {}
        Err(why) if blocked => eprintln!("tracing unavailable, as expected here: {why}"),
        Err(why) => panic!("tracing unavailable without a known blocker: {why}"),
    }
}
