//! The runner owns every process and every segment it makes, under faults:
//! one deterministic regression test per failure of issue 8.
//!
//! Runs on the main thread (libtest-mimic, one test thread), so each test can
//! fork through the library's guarded fork: every test body runs in a child
//! process that first enters a private IPC namespace of its own, so no test,
//! passing or failing, touches the machine's IPC namespace. Tests that need
//! root (another uid, a PID namespace of their own) say so and pass vacuously
//! without it, printing why.

#![allow(unsafe_code)] // opts in: raw calls against the kernel under test

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use libtest_mimic::{Arguments, Failed, Trial};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use shm_harness::runner::fork::{fork_guarded, Child, PANIC_STATUS};
use shm_harness::runner::journal::ANCHOR_SIZE;
use shm_harness::runner::wire::{recv, FromActor};
use shm_harness::sysv::{self, CreateOptions, Mode};

use common::{bin, ensure, harness_with_state, processes_with_arg, scan_proc, text, Res};

type TestFn = fn() -> Res;

/// Runs `body` in a forked child inside a private IPC namespace of its own;
/// its error (or panic) fails the test.
fn isolated(body: fn() -> Res) -> Result<(), Failed> {
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let wfd = w.as_raw_fd();
    let child = fork_guarded(&Child { name: "ownership-test", keep: &[wfd], ..Child::default() }, || {
        let say = |m: &str| {
            // SAFETY: the pipe's write end is kept open in this child.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(wfd) };
            let _ = nix::unistd::write(fd, m.as_bytes());
        };
        if let Err(e) = shm_harness::namespace::enter_private_ipc_namespace() {
            say(&format!("skipped: {e}"));
            return 0;
        }
        match body() {
            Ok(()) => 0,
            Err(e) => {
                say(&e);
                1
            }
        }
    })
    .map_err(|e| e.to_string())?;
    drop(w);
    let mut msg = String::new();
    let _ = std::fs::File::from(r).read_to_string(&mut msg);
    match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, 0)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            Ok(())
        }
        Ok(WaitStatus::Exited(_, PANIC_STATUS)) => Err(format!("the test panicked (see stderr) {msg}").into()),
        other => Err(format!("{msg} ({other:?})").into()),
    }
}

/// Root of the machine's user namespace: may take any uid (root of a user
/// namespace, as an unprivileged run's `isolated` is, has only its own
/// mapped).
fn root() -> bool {
    nix::unistd::Uid::effective().is_root()
        && std::fs::read_to_string("/proc/self/uid_map")
            .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

/// The segments of the current IPC namespace: (shmid, cpid, ctime).
fn segments() -> Vec<(i32, i32, i64)> {
    sysv::proc_segments().expect("/proc/sysvipc/shm").iter().map(|r| (r.shmid.raw(), r.cpid, r.ctime)).collect()
}

/// A segment made by a process that has since exited (its pid is free).
fn orphan_segment(key: i32) -> i32 {
    let (r, w) = nix::unistd::pipe().unwrap();
    let wfd = w.as_raw_fd();
    let child = fork_guarded(&Child { name: "canary-maker", keep: &[wfd], ..Child::default() }, || {
        let opts = CreateOptions::new(100).mode(Mode::ALL_RW);
        let seg = if key == 0 { opts.create_private() } else { opts.create_exclusive(sysv::Key::from_raw(key)) };
        let id = seg.expect("canary").release().id().raw();
        // SAFETY: the pipe's write end is kept open in this child.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(wfd) };
        let _ = nix::unistd::write(fd, &id.to_le_bytes());
        0
    })
    .unwrap();
    drop(w);
    let mut buf = [0u8; 4];
    std::fs::File::from(r).read_exact(&mut buf).unwrap();
    waitpid(child, None).unwrap();
    i32::from_le_bytes(buf)
}

// ---------------------------------------------------------------------------

/// A panic in a forked child never unwinds into the parent's copied stack:
/// the helper catches it, sends its message on the child's pipe as a
/// harness error, and exits with PANIC_STATUS.
fn panic_in_a_forked_child_is_a_harness_error() -> Res {
    let (r, w) = nix::unistd::pipe().map_err(|e| e.to_string())?;
    let wfd = w.as_raw_fd();
    let child =
        fork_guarded(&Child { name: "shm-act-P", keep: &[wfd], panic_fd: Some(wfd), ..Child::default() }, || {
            panic!("attachment `m` is not held by process A")
        })
        .map_err(|e| e.to_string())?;
    drop(w);
    let got: FromActor = recv(r.as_fd(), Some(Duration::from_secs(10))).map_err(|e| format!("{e:?}"))?;
    let status = waitpid(child, None).map_err(|e| e.to_string())?;
    ensure(matches!(status, WaitStatus::Exited(_, PANIC_STATUS)), || format!("child ended {status:?}"))?;
    match got {
        FromActor::Panic(m) => ensure(
            m.contains("process shm-act-P panicked: attachment `m` is not held by process A")
                && m.contains("harness bug"),
            || m.clone(),
        ),
        other => Err(format!("expected a panic report, got {other:?}")),
    }?;
    // And the input that reached such a panic before (parser and actor
    // disagreed about `m`) is now refused by the parser, by the actor's rule.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(
        dir.path().join("d.scn"),
        "process A\nA: create s = private size 8\nA: attach m = s\nA: detach m => ok | EINVAL\nA: read m 0 1\nA: rm s\n",
    )
    .map_err(|e| e.to_string())?;
    let out = harness_with_state(&["run", "--jobs", "1", "d.scn"], dir.path());
    let all = text(&out.stdout) + &text(&out.stderr);
    ensure(
        out.status.code() == Some(2) && all.contains("is not attached in process A") && !all.contains("panicked"),
        || all.clone(),
    )
}

/// A foreign segment whose creator's pid is recycled to an actor is neither
/// counted, reported as the scenario's, nor removed (host mode, no PID
/// namespace of the harness's: run as an unprivileged user inside a PID
/// namespace of the test's own, where `ns_last_pid` forces the reuse).
fn pid_reuse_does_not_make_a_foreign_segment_ours() -> Res {
    if !root() {
        eprintln!("skipped: needs root of the machine's user namespace (a PID namespace, ns_last_pid, and uid 65534 to run the harness as)");
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare(CLONE_NEWPID): {e}"))?;
    let (r, w) = nix::unistd::pipe().map_err(|e| e.to_string())?;
    let wfd = w.as_raw_fd();
    // PID 1 of the new namespace: it reaps, forks the foreign creator, then the harness.
    let init = fork_guarded(&Child { name: "pid-ns-init", keep: &[wfd], ..Child::default() }, || {
        let result = (|| -> Res {
            // Use up a few pids, so the foreign creator's is well above 4.
            for _ in 0..10 {
                let c = fork_guarded(&Child::default(), || 0).map_err(|e| e.to_string())?;
                waitpid(c, None).map_err(|e| e.to_string())?;
            }
            let foreign = orphan_segment(0);
            let (_, cpid, _) = *segments().iter().find(|s| s.0 == foreign).ok_or("no canary")?;
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let state = dir.path().join("state");
            std::fs::create_dir(&state).map_err(|e| e.to_string())?;
            nix::unistd::chown(&state, Some(65534.into()), Some(65534.into())).map_err(|e| e.to_string())?;
            nix::unistd::chown(dir.path(), Some(65534.into()), Some(65534.into())).map_err(|e| e.to_string())?;
            std::fs::write(
                dir.path().join("reuse.scn"),
                "process A, B\nA: segments => 0\nA: fork B\nB: segments => 0\nB: create s = private size 64\nB: segments => 1\nB: rm s\nB: exit\nA: segments => 0\n",
            )
            .map_err(|e| e.to_string())?;
            // Coordinator, supervisor, A, then B (the `fork` step) take the next four pids.
            std::fs::write("/proc/sys/kernel/ns_last_pid", (cpid - 4).to_string()).map_err(|e| e.to_string())?;
            let out = Command::new(bin())
                .args(["run", "--isolation", "host", "--format", "json", "reuse.scn"])
                .current_dir(dir.path())
                .env("SHM_HARNESS_STATE_DIR", &state)
                .uid(65534)
                .gid(65534)
                .output()
                .map_err(|e| e.to_string())?;
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("{e}: {} {}", text(&out.stdout), text(&out.stderr)))?;
            let sc = &doc["scenarios"][0];
            let transcript = sc["transcript"].to_string();
            ensure(transcript.contains(&format!("pid {cpid}")), || {
                format!("the reuse was not forced (B should have pid {cpid}): {transcript}")
            })?;
            ensure(sc["status"] == "pass" && sc["leaks"].as_array().is_some_and(|l| l.is_empty()), || {
                format!("the foreign segment was taken for the scenario's: {sc}")
            })?;
            ensure(segments().iter().any(|s| s.0 == foreign), || "the foreign segment was removed".into())
        })();
        // SAFETY: the pipe's write end is kept open in this child.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(wfd) };
        let _ = nix::unistd::write(fd, result.as_ref().err().map_or("", String::as_str).as_bytes());
        i32::from(result.is_err())
    })
    .map_err(|e| e.to_string())?;
    drop(w);
    let mut msg = String::new();
    let _ = std::fs::File::from(r).read_to_string(&mut msg);
    let status = waitpid(init, None).map_err(|e| e.to_string())?;
    ensure(matches!(status, WaitStatus::Exited(_, 0)), || format!("{msg} ({status:?})"))
}

/// The first steps take a while (two 64 MiB writes), so a test can stop
/// actor B before its first step (which must be one B performs itself, not
/// one the supervisor answers such as `segments`).
const SLOW_START: &str = "A: create big = private size 64M\nA: attach w = big\nA: write w 0 pattern \"ab\" 64M\nA: write w 0 pattern \"ba\" 64M\nA: detach w\nA: rm big\n";

/// Starts `scenario` (file `slow.scn`, process B stopped before its first
/// step) in host mode in its own process group and waits until `want`
/// segments more than `before` exist. Returns the run and its group.
fn start_until_segments(
    dir: &Path,
    scenario: &str,
    before: &[(i32, i32, i64)],
    want: usize,
) -> Result<(std::process::Child, Pid), String> {
    std::fs::write(dir.join("slow.scn"), scenario).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin())
        .args(["run", "--isolation", "host", "slow.scn"])
        .current_dir(dir)
        .env("SHM_HARNESS_STATE_DIR", dir.join("state"))
        .process_group(0)
        .stdout(std::fs::File::create(dir.join("out.txt")).map_err(|e| e.to_string())?)
        .stderr(std::fs::File::create(dir.join("err.txt")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| e.to_string())?;
    let group = Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for p in in_group(group, processes_named("shm-act-B")) {
            let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
        }
        // Count the scenario's own small segments (not the slow start's 64
        // MiB one, nor the run's 1-byte anchor).
        let rows = sysv::proc_segments().map_err(|e| e.to_string())?;
        let ours = |r: &sysv::ProcSegment| r.size < 1 << 20 && r.size != ANCHOR_SIZE as u64;
        let new = rows.iter().filter(|r| !before.iter().any(|b| b.0 == r.shmid.raw()) && ours(r)).count();
        if new >= want {
            break;
        }
        if Instant::now() > deadline {
            let states: Vec<String> = in_group(group, processes_named("shm-"))
                .iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
                .collect();
            let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            let out = std::fs::read_to_string(dir.join("out.txt")).unwrap_or_default()
                + &std::fs::read_to_string(dir.join("err.txt")).unwrap_or_default();
            return Err(format!(
                "the scenario never created its segments: {rows:?}; processes: {states:?}; output: {out}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok((child, group))
}

/// [`start_until_segments`], then SIGKILL of the whole group at once, and a
/// wait until every process of it is gone. Returns what the run left.
fn run_then_kill_everything(
    dir: &Path,
    scenario: &str,
    before: &[(i32, i32, i64)],
    want: usize,
) -> Result<Vec<(i32, i32, i64)>, String> {
    let (mut child, group) = start_until_segments(dir, scenario, before, want)?;
    nix::sys::signal::killpg(group, Signal::SIGKILL).map_err(|e| e.to_string())?;
    let _ = child.wait();
    // The journal's lock is released with the last process of the run.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !in_group(group, processes_named("shm-")).is_empty() {
        ensure(Instant::now() < deadline, || "processes of the killed run are still alive".into())?;
        std::thread::sleep(Duration::from_millis(10));
    }
    // The run's anchor is left with its journal (the sweep removes it last).
    let rows = sysv::proc_segments().map_err(|e| e.to_string())?;
    let anchors: Vec<i32> = rows.iter().filter(|r| r.size == ANCHOR_SIZE as u64).map(|r| r.shmid.raw()).collect();
    let left: Vec<_> = segments().into_iter().filter(|s| !before.contains(s)).collect();
    ensure(left.iter().filter(|s| anchors.contains(&s.0)).count() == 1, || format!("not one anchor left: {rows:?}"))?;
    Ok(left.into_iter().filter(|s| !anchors.contains(&s.0)).collect())
}

/// SIGKILL of the whole run (coordinator, supervisor and actors at once, as
/// an OOM kill or a CI job cancel does) in host mode: `sweep` reports and
/// removes exactly what the run left, and nothing else; a rerun finds
/// nothing more.
fn sigkill_then_sweep_removes_exactly_what_the_run_left() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let canary_private = orphan_segment(0);
    let canary_key = orphan_segment(0x5348_0000);
    let before = segments();
    let scenario = format!(
        "timeout 60s\nprocess A, B\n{SLOW_START}A: key k = 0x1234\nA: create s = k size 4096 excl\nA: create p = private size 100\nB: attach m = s\nB: segments => 2\nB: detach m\nA: rm s\nA: rm p\n"
    );
    let left = run_then_kill_everything(dir.path(), &scenario, &before, 2)?;
    ensure(left.len() == 2, || format!("the killed run should have left 2 segments, found {left:?}"))?;
    let out = harness_with_state(&["sweep", "--dry-run"], dir.path());
    // The two, and the run's anchor.
    ensure(out.status.code() == Some(0) && segments().len() == before.len() + 3, || {
        format!("dry run: {}", text(&out.stderr))
    })?;
    let out = harness_with_state(&["sweep"], dir.path());
    let err = text(&out.stderr);
    ensure(out.status.code() == Some(0), || format!("sweep exit {:?}: {err}", out.status))?;
    for (id, _, _) in &left {
        ensure(err.contains(&format!("removed shmid {id} ")), || format!("sweep did not report shmid {id}: {err}"))?;
    }
    ensure(err.contains("slow.scn:10 (A)") && err.contains("slow.scn:11 (A)"), || err.clone())?;
    ensure(segments() == before, || format!("after the sweep: {:?}, before: {before:?}", segments()))?;
    ensure(segments().iter().any(|s| s.0 == canary_private) && segments().iter().any(|s| s.0 == canary_key), || {
        "a canary was harmed".into()
    })?;
    // Nothing left for a second sweep.
    let out = harness_with_state(&["sweep"], dir.path());
    ensure(!text(&out.stderr).contains("removed shmid"), || text(&out.stderr))
}

/// SIGKILL of a host-mode supervisor alone, mid-scenario: the coordinator
/// lives on, so it removes (by identity) and reports what that scenario's
/// journal records, instead of deleting the journal at the end of the run
/// with the segments still there (found by scripts/chaos.sh). A canary at
/// the same moment survives.
fn sigkill_of_a_host_supervisor_is_settled_by_the_coordinator() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let canary = orphan_segment(0);
    let before = segments();
    let scenario = format!(
        "timeout 60s\nprocess A, B\n{SLOW_START}A: key k = 0x1234\nA: create s = k size 4096 excl\nA: create p = private size 100\nB: attach m = s\nB: detach m\nA: rm s\nA: rm p\n"
    );
    let (mut child, group) = start_until_segments(dir.path(), &scenario, &before, 2)?;
    for p in in_group(group, processes_named("shm-sup")) {
        kill(Pid::from_raw(p), Signal::SIGKILL).map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let out = std::fs::read_to_string(dir.path().join("out.txt")).unwrap_or_default();
    ensure(status.code() == Some(1), || format!("exit {status:?}: {out}"))?;
    ensure(out.contains("supervisor was killed by SIGKILL") && out.matches("removed shmid").count() == 2, || {
        out.clone()
    })?;
    ensure(segments() == before, || format!("left: {:?}, before: {before:?}; {out}", segments()))?;
    ensure(segments().iter().any(|s| s.0 == canary), || "the canary was harmed".into())
}

/// The same kill, then a plain rerun: its start sweeps the dead run.
fn a_rerun_after_sigkill_sweeps_the_dead_run() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let before = segments();
    let scenario =
        format!("timeout 60s\nprocess A, B\n{SLOW_START}A: create p = private size 100\nB: attach m = p\nB: detach m\nA: rm p\n");
    let left = run_then_kill_everything(dir.path(), &scenario, &before, 1)?;
    ensure(left.len() == 1, || format!("{left:?}"))?;
    std::fs::write(dir.path().join("ok.scn"), "process A\nA: segments => 0\n").map_err(|e| e.to_string())?;
    let out = harness_with_state(&["run", "--isolation", "host", "ok.scn"], dir.path());
    let err = text(&out.stderr);
    ensure(out.status.code() == Some(0), || format!("{}{err}", text(&out.stdout)))?;
    ensure(err.contains(&format!("removed shmid {} ", left[0].0)) && err.contains("slow.scn:9 (A)"), || err.clone())?;
    ensure(segments() == before, || format!("{:?}", segments()))
}

/// `sweep` touches a journaled segment only when the run is provably dead
/// (its journal's lock can be taken) and the segment still shows the
/// recorded identity: a live run's segment, and a shmid whose identity
/// changed, are left alone.
fn sweep_needs_a_dead_run_and_the_same_identity() -> Res {
    use shm_harness::runner::journal::{self, Journal, Record};
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let state = dir.path().join("state");
    std::fs::create_dir(&state).map_err(|e| e.to_string())?;
    let mine = orphan_segment(0);
    let other = orphan_segment(0);
    let row = |id: i32| segments().into_iter().find(|s| s.0 == id).ok_or("segment gone");
    let (_, cpid, ctime) = row(mine)?;
    let (_, ocpid, octime) = row(other)?;
    let ns = journal::ipc_namespace().ok_or("no ipc namespace")?;
    let rec = |shmid, cpid, ctime| Record {
        scenario: "j.scn".into(),
        line: 3,
        process: "A".into(),
        shmid,
        cpid,
        ctime,
        key: 0,
        ns,
    };
    // A live run (this process holds the lock): nothing is touched.
    let live = Journal::create(&state)?;
    journal::append_to(live.path(), &rec(mine, cpid, ctime))?;
    // `other` recorded with a ctime it does not have: not ours.
    journal::append_to(live.path(), &rec(other, ocpid, octime - 1))?;
    let out = harness_with_state(&["sweep"], dir.path());
    ensure(out.status.code() == Some(0) && !text(&out.stderr).contains("removed shmid"), || text(&out.stderr))?;
    ensure(segments().iter().any(|s| s.0 == mine), || "a live run's segment was removed".into())?;
    // The run dies (its lock goes with the last fd): now the sweep acts.
    drop(live);
    let out = harness_with_state(&["sweep"], dir.path());
    let err = text(&out.stderr);
    ensure(out.status.code() == Some(0), || err.clone())?;
    ensure(err.contains(&format!("removed shmid {mine} ")) && err.contains("j.scn:3 (A)"), || err.clone())?;
    ensure(err.contains(&format!("shmid {other} ")) && err.contains("not ours any more, left alone"), || err.clone())?;
    ensure(!segments().iter().any(|s| s.0 == mine), || "the dead run's segment is still there".into())?;
    ensure(segments().iter().any(|s| s.0 == other), || "a segment of another identity was removed".into())
}

/// A dead run's journal (`state/`, anchored here) with an intent of
/// process A at line 7 of `j.scn`: creator `cpid`, key `key`, since `since`;
/// `then`, if any, appended after it. Returns the sweep's lines and counts.
fn sweep_after_intent(
    cpid: i32,
    key: i32,
    since: i64,
    then: Option<shm_harness::runner::journal::Record>,
) -> Result<(Vec<String>, shm_harness::runner::journal::Swept, std::path::PathBuf), String> {
    use shm_harness::runner::journal::{self, Intent, Journal, SweepOptions};
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let state = dir.path().join("state");
    std::fs::create_dir(&state).map_err(|e| e.to_string())?;
    let ns = journal::ipc_namespace().ok_or("no ipc namespace")?;
    let dead = Journal::create(&state)?;
    let intent = Intent { scenario: "j.scn".into(), line: 7, process: "A".into(), cpid, key, ns, since };
    journal::append_intent_to(dead.path(), &intent)?;
    if let Some(rec) = then {
        journal::append_to(dead.path(), &rec)?;
    }
    let path = dead.path().to_path_buf();
    // The run dies (its lock goes with the last fd).
    drop(dead);
    let mut said = Vec::new();
    let swept = journal::sweep_with(&state, SweepOptions::default(), |l| said.push(l))?;
    Ok((said, swept, path))
}

/// A run killed inside `Journal::create`, after its anchor line and before
/// the rename: the `.new` file holds the anchor and its lock is free. The
/// sweep settles it at once (the anchor removed, the file deleted), not a
/// week later. Control: a fresh `.new` file without an anchor line (one
/// being made, not locked yet) is left alone.
fn a_run_killed_while_making_its_journal_leaves_nothing() -> Res {
    use shm_harness::runner::journal::{self, Journal, SweepOptions};
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let state = dir.path().join("state");
    std::fs::create_dir(&state).map_err(|e| e.to_string())?;
    let dead = Journal::create(&state)?;
    let anchor_id = dead.anchor().shmid;
    let made = dead.path().with_extension("new");
    std::fs::rename(dead.path(), &made).map_err(|e| e.to_string())?;
    drop(dead);
    let fresh = state.join("run-1-2.new");
    std::fs::write(&fresh, "").map_err(|e| e.to_string())?;
    ensure(row(anchor_id).is_ok(), || "the anchor was not planted".into())?;
    let mut said = Vec::new();
    journal::sweep_with(&state, SweepOptions::default(), |l| said.push(l))?;
    ensure(row(anchor_id).is_err(), || format!("the dead run's anchor is left: {said:?}"))?;
    ensure(!made.exists(), || format!("the dead run's .new journal is left: {said:?}"))?;
    ensure(fresh.exists(), || format!("a .new journal being made was acted on: {said:?}"))
}

/// The segment `id`'s row: (shmid, cpid, ctime).
fn row(id: i32) -> Result<(i32, i32, i64), String> {
    segments().into_iter().find(|s| s.0 == id).ok_or_else(|| format!("shmid {id} is gone"))
}

/// SIGKILL of every process of a run between an actor's `shmget` and its
/// journal write: the journal holds the step's intent and no record. The
/// sweep reports the segment the dead process made at that key since the
/// intent (with how to remove it), and removes none of it (its identity
/// was never recorded); the journal is then settled (deleted, the report
/// made once). Other segments (another key) are left unsaid.
fn an_unfinished_creation_is_reported_and_left_alone() -> Res {
    let since = shm_harness::runner::journal::wall_seconds();
    let id = orphan_segment(0x1234);
    let other = orphan_segment(0x1235);
    let (_, cpid, ctime) = row(id)?;
    let (said, swept, path) = sweep_after_intent(cpid, 0x1234, since, None)?;
    let all = said.join("\n");
    let when = said.iter().find(|l| l.starts_with(&format!("shm-harness: shmid {id} "))).ok_or_else(|| all.clone())?;
    let at = when.split("created at ").nth(1).and_then(|t| t.split(')').next()).unwrap_or("?");
    ensure(at.len() == 23 && at.ends_with(" UTC"), || format!("not a UTC time: {when}"))?;
    let want =
        format!("shm-harness: shmid {id} (key 0x00001234, cpid {cpid}, created at {at}): process A of j.scn:7 (");
    ensure(when.starts_with(&want), || format!("{when}\nwanted it to start with {want}"))?;
    let tail = format!(
        ") was killed between its shmget and its journal write, so its identity was never recorded; left alone (pid {cpid} may have been reused): ipcrm -m {id} if it is yours"
    );
    ensure(when.ends_with(&tail), || format!("{when}\nwanted it to end with {tail}"))?;
    ensure(ctime >= since && swept.unrecorded == 1 && swept.removed == 0, || format!("{swept:?}: {all}"))?;
    ensure(!all.contains(&format!("shmid {other} ")), || format!("another key was reported: {all}"))?;
    ensure(row(id).is_ok() && row(other).is_ok(), || format!("a segment was removed: {all}"))?;
    ensure(!path.exists(), || format!("the journal was kept: {all}"))
}

/// The control: the intent is followed by its creation's record, so the
/// segment is the run's and is removed as before, not reported unrecorded.
fn a_finished_creation_is_removed_as_recorded() -> Res {
    let since = shm_harness::runner::journal::wall_seconds();
    let id = orphan_segment(0);
    let (_, cpid, ctime) = row(id)?;
    let ns = shm_harness::runner::journal::ipc_namespace().ok_or("no ipc namespace")?;
    let rec = shm_harness::runner::journal::Record {
        scenario: "j.scn".into(),
        line: 7,
        process: "A".into(),
        shmid: id,
        cpid,
        ctime,
        key: 0,
        ns,
    };
    let (said, swept, _) = sweep_after_intent(cpid, 0, since, Some(rec))?;
    let all = said.join("\n");
    ensure(!all.contains("never recorded") && swept.unrecorded == 0, || all.clone())?;
    ensure(all.contains(&format!("removed shmid {id} ")) && row(id).is_err(), || all.clone())
}

/// The control: a segment of the same creator and key made before the
/// intent's `since` is not the unfinished creation's: not reported.
fn a_segment_older_than_the_intent_is_not_its_creation() -> Res {
    let id = orphan_segment(0);
    let (_, cpid, ctime) = row(id)?;
    let (said, swept, _) = sweep_after_intent(cpid, 0, ctime + 1, None)?;
    let all = said.join("\n");
    ensure(!all.contains(&format!("shmid {id} ")) && swept.unrecorded == 0, || all.clone())?;
    ensure(row(id).is_ok(), || "the segment was removed".into())
}

/// An actor appends the intent of each step that can create before its
/// `shmget` (same process, line and key as the creation's record, and a
/// `since` not after the segment's ctime), then the record.
fn an_actor_journals_its_intent_before_it_creates() -> Res {
    use shm_harness::runner::journal::{Intent, Record};
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let before = segments();
    let scenario = format!(
        "timeout 60s\nprocess A, B\n{SLOW_START}A: key k = 0x1234\nA: create s = k size 4096 excl\nA: create p = private size 100\nB: attach m = s\nB: detach m\nA: rm s\nA: rm p\n"
    );
    let left = run_then_kill_everything(dir.path(), &scenario, &before, 2)?;
    let journals: Vec<_> = std::fs::read_dir(dir.path().join("state"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "journal"))
        .collect();
    let [journal] = &journals[..] else { return Err(format!("not one journal: {journals:?}")) };
    let jtext = std::fs::read_to_string(journal).map_err(|e| e.to_string())?;
    #[derive(serde::Deserialize)]
    struct IntentLine {
        intent: Intent,
    }
    // Every record (the slow start's at line 3, then lines 10 and 11) just
    // after its intent: one actor, and B stopped.
    let lines: Vec<&str> = jtext.lines().collect();
    let mut seen = Vec::new();
    for (n, l) in lines.iter().enumerate().skip(1) {
        let Ok(r) = serde_json::from_str::<Record>(l) else { continue };
        let Some(i) = serde_json::from_str::<IntentLine>(lines[n - 1]).ok().map(|l| l.intent) else {
            return Err(format!("no intent before the record of line {}: {jtext}", r.line));
        };
        ensure(i.line == r.line && i.cpid == r.cpid && i.key == r.key && i.ns == r.ns, || jtext.clone())?;
        ensure(i.since <= r.ctime, || jtext.clone())?;
        if left.contains(&(r.shmid, r.cpid, r.ctime)) {
            seen.push(r.line);
        }
    }
    ensure(seen == [10, 11], || format!("{left:?}: {jtext}"))?;
    let out = harness_with_state(&["sweep"], dir.path());
    ensure(segments() == before, || text(&out.stderr))
}

/// A `run` program that creates a segment and then hangs: at the step
/// timeout the program is killed and its segment reported and removed, in
/// namespace mode and (traced) in host mode; with tracing off, host mode
/// skips the scenario.
fn a_program_segment_at_a_step_timeout_is_reported() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("mk.sh"), "ipcmk -M 100 >/dev/null\nexec sleep 30\n").map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("t.scn"), "process A\nA: run \"sh ${here}/mk.sh\"\n").map_err(|e| e.to_string())?;
    let out = harness_with_state(&["run", "--isolation", "namespace", "--timeout", "1s", "t.scn"], dir.path());
    let s = text(&out.stdout);
    ensure(out.status.code() == Some(1), || s.clone())?;
    ensure(s.contains("no answer within 1s"), || s.clone())?;
    ensure(s.contains("leak: segment shmid") && s.contains("(key 0x"), || format!("no leak reported: {s}"))?;
    ensure(segments().is_empty(), || format!("{:?}", segments()))?;
    if shm_harness::trace::available().is_ok() {
        let out = harness_with_state(&["run", "--isolation", "host", "--timeout", "1s", "t.scn"], dir.path());
        let s = text(&out.stdout);
        ensure(out.status.code() == Some(1), || s.clone())?;
        ensure(s.contains("did not end within the step's timeout; its process tree was killed"), || s.clone())?;
        ensure(s.contains("leak: segment shmid") && s.contains("created by A at line 2"), || s.clone())?;
        ensure(segments().is_empty(), || format!("{:?}", segments()))?;
    }
    let out = Command::new(bin())
        .args(["run", "--isolation", "host", "--timeout", "1s", "t.scn"])
        .current_dir(dir.path())
        .env("SHM_HARNESS_STATE_DIR", dir.path().join("state"))
        .env("SHM_HARNESS_NO_TRACE", "1")
        .output()
        .map_err(|e| e.to_string())?;
    let s = text(&out.stdout);
    ensure(out.status.code() == Some(0) && s.contains("SKIP") && s.contains("SHM_HARNESS_NO_TRACE"), || s.clone())?;
    ensure(segments().is_empty(), || format!("{:?}", segments()))
}

/// A process killed or stopped after its last step: the scenario did not
/// run as written and the mapping check cannot vouch for that process, so
/// the run fails (it used to pass, the process silently killed at
/// teardown). Control: the same story without the fault passes.
fn a_process_killed_or_stopped_after_its_last_step_fails_the_scenario() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let story = |fault: &str| {
        format!("process A, B\nB: create s = private size 100\nB: rm s\nA: run \"{fault}\" => status 0\n")
    };
    for (file, fault, says) in [
        ("killed.scn", "kill -KILL ${B}", "process B was killed by SIGKILL before the scenario ended"),
        // The stop takes effect when B is next scheduled: found stopped
        // when the teardown looks ("was stopped"), or right after, when B
        // does not answer ("is stopped (T)"). Either way it is named.
        ("stopped.scn", "kill -STOP ${B}", "process B|stopped"),
        ("control.scn", "true", ""),
    ] {
        std::fs::write(dir.path().join(file), story(fault)).map_err(|e| e.to_string())?;
        let out = harness_with_state(&["run", "--isolation", "namespace", file], dir.path());
        let s = text(&out.stdout);
        if says.is_empty() {
            ensure(out.status.code() == Some(0), || format!("{file}: {s}"))?;
        } else {
            // `WHO|WHAT`: one line of the report names both.
            let named = match says.split_once('|') {
                Some((who, what)) => s.lines().any(|l| l.contains(who) && l.contains(what)),
                None => s.contains(says),
            };
            ensure(out.status.code() == Some(1) && named, || format!("{file}: {s}"))?;
        }
    }
    Ok(())
}

/// One scenario's supervisor is prepared (cloned, actors forked) while the
/// previous one runs, but starts its steps only when released: in host
/// mode, one scenario at a time, so two scenarios using the same literal
/// key (the same key of the run's range) never meet. (Traced programs give
/// each a window of 0.2 s in which the other would run into EEXIST.)
fn a_prepared_supervisor_waits_for_its_turn() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let story = "process A\nA: create s = 0x1 size 100 excl\nA: run \"sleep 0.2\" => status 0\nA: rm s\n";
    for f in ["a.scn", "b.scn", "c.scn"] {
        std::fs::write(dir.path().join(f), story).map_err(|e| e.to_string())?;
    }
    for jobs in ["1", "2"] {
        let out =
            harness_with_state(&["run", "--isolation", "host", "--jobs", jobs, "a.scn", "b.scn", "c.scn"], dir.path());
        let s = text(&out.stdout);
        if s.contains("SKIP") {
            eprintln!("skipped: programs are not traced here: {s}");
            return Ok(());
        }
        ensure(out.status.code() == Some(0) && s.matches("PASS").count() == 3, || format!("--jobs {jobs}: {s}"))?;
    }
    ensure(segments().is_empty(), || format!("{:?}", segments()))
}

/// A program printing megabytes: the step completes (no stall until the
/// timeout), the output is capped at 1 MiB and the answer says so.
fn megabytes_of_program_output_are_drained_and_capped() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("o.scn"), "process A\nA: run \"seq 1 400000\" => status 0, stdout \"nope\"\n")
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let out = harness_with_state(&["run", "--timeout", "20s", "o.scn"], dir.path());
    eprintln!("400000 lines of output: {:?}", started.elapsed());
    let s = text(&out.stdout);
    ensure(out.status.code() == Some(1) && !s.contains("no answer within"), || s.clone())?;
    ensure(s.contains("stdout capped at 1048576 bytes;") && s.contains("more bytes dropped"), || s.clone())?;
    std::fs::write(
        dir.path().join("p.scn"),
        "process A\nA: run \"seq 1 30000\" => status 0, stdout contains \"29999\"\n",
    )
    .map_err(|e| e.to_string())?;
    let out = harness_with_state(&["run", "--timeout", "20s", "p.scn"], dir.path());
    ensure(out.status.code() == Some(0), || text(&out.stdout))
}

/// `nohup shm-harness run --jobs 1`: an inherited ignored SIGHUP stays
/// ignored (the harness installs no handler in its place).
fn an_ignored_sighup_stays_ignored() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("h.scn"), "process A\nA: create s = private size 8\nA: run \"sleep 1\"\nA: rm s\n")
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--jobs", "1", "h.scn"]).current_dir(dir.path()).stdout(Stdio::piped());
    // SAFETY: between fork and exec; signal() is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(400));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    ensure(out.status.code() == Some(0) && text(&out.stdout).contains("1 passed"), || {
        format!("{:?}: {}", out.status, text(&out.stdout))
    })
}

/// A 300-deep chain of `fork` steps runs (its time printed; linear in depth).
fn a_300_deep_fork_chain_runs() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    for depth in [100usize, 300] {
        let names: Vec<String> = (0..=depth).map(|i| format!("P{i}")).collect();
        let mut s = format!("process {}\n", names.join(", "));
        for i in 0..depth {
            s.push_str(&format!("P{i}: fork P{}\n", i + 1));
        }
        s.push_str(&format!("P{depth}: create x = private size 8\nP{depth}: rm x\n"));
        let file = format!("chain{depth}.scn");
        std::fs::write(dir.path().join(&file), s).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let out = harness_with_state(&["run", "--timeout", "30s", &file], dir.path());
        eprintln!("fork chain {depth} deep: {:?}", started.elapsed());
        ensure(out.status.code() == Some(0), || format!("{}{}", text(&out.stdout), text(&out.stderr)))?;
    }
    Ok(())
}

/// 10,000 processes either run or fail before any is made, naming the limit.
fn ten_thousand_processes_run_or_fail_up_front() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let n = 10_000;
    let names: Vec<String> = (0..n).map(|i| format!("P{i}")).collect();
    let mut s = format!("timeout 60s\nprocess {}\n", names.join(", "));
    for name in names.iter().step_by(1000) {
        s.push_str(&format!("{name}: segments => 0\n"));
    }
    std::fs::write(dir.path().join("many.scn"), s).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let out = harness_with_state(&["run", "many.scn"], dir.path());
    eprintln!("10,000 processes: {:?}", started.elapsed());
    let s = text(&out.stdout) + &text(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => ensure(
            ["RLIMIT_NOFILE", "RLIMIT_NPROC", "kernel.pid_max"].iter().any(|l| s.contains(l)) && !s.contains("EMFILE"),
            || s.clone(),
        ),
        _ => Err(s),
    }
}

/// A daemon a program started, killed mid-scenario, is reaped at once: no
/// zombie answers `kill(pid, 0)`.
fn a_killed_daemon_does_not_stay_a_zombie() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("start.sh"), "sleep 1000 >/dev/null 2>&1 &\necho $! > daemon.pid\n")
        .map_err(|e| e.to_string())?;
    std::fs::write(
        dir.path().join("check.sh"),
        "p=$(cat daemon.pid)\nkill -9 $p\nsleep 0.3\nif kill -0 $p 2>/dev/null; then echo zombie; exit 1; fi\n",
    )
    .map_err(|e| e.to_string())?;
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("z.scn"),
        format!("process A\nA: run \"sh {d}/start.sh\"\nA: run \"sh {d}/check.sh\" => status 0\n"),
    )
    .map_err(|e| e.to_string())?;
    let out = harness_with_state(&["run", "z.scn"], dir.path());
    ensure(out.status.code() == Some(0), || text(&out.stdout))
}

/// After a failed scenario nothing of it is alive: not the actors, not a
/// program's daemon.
fn after_a_failed_scenario_no_process_of_it_lives() -> Res {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tag = format!("1000.{}", std::process::id());
    std::fs::write(dir.path().join("start.sh"), format!("sleep {tag} >/dev/null 2>&1 &\n"))
        .map_err(|e| e.to_string())?;
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("f.scn"),
        format!("process A, B\nA: run \"sh {d}/start.sh\"\nB: create s = private size 8\nA: segments => 5\n"),
    )
    .map_err(|e| e.to_string())?;
    let out = harness_with_state(&["run", "f.scn"], dir.path());
    ensure(out.status.code() == Some(1), || text(&out.stdout))?;
    std::thread::sleep(Duration::from_millis(100));
    let alive = processes_with_arg(&tag);
    ensure(alive.is_empty(), || format!("the daemon outlived its failed scenario: {alive:?}"))
}

/// Pids whose `/proc/PID/comm` starts with `prefix`.
fn processes_named(prefix: &str) -> Vec<i32> {
    scan_proc(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(prefix)))
}

/// The pids among `pids` in process group `group`.
fn in_group(group: Pid, pids: Vec<i32>) -> Vec<i32> {
    pids.into_iter()
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
            rest.split_whitespace().nth(2).and_then(|g| g.parse::<i32>().ok()) == Some(group.as_raw())
        })
        .collect()
}

/// Host mode with `/proc/sysvipc/shm` unreadable at the leak snapshot (an
/// empty file bind-mounted over it, in a mount namespace of the test's
/// own): the scenario fails closed, and the segment it created and left is
/// still removed, by the identity recorded at its creation (before: left
/// on the host, and its journal deleted at the end of the run, so no sweep
/// could ever find it). `SHM_INFO` counts segments without `/proc`.
fn host_mode_blind_oracle_still_removes_what_it_made() -> Res {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (a mount namespace to hide /proc/sysvipc/shm)");
        return Ok(());
    }
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("mount / private: {e}"))?;
    mount(Some("/dev/null"), "/proc/sysvipc/shm", None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| format!("bind /dev/null over /proc/sysvipc/shm: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("l.scn"), "process A\nA: create s = private size 4096 mode 0600\n")
        .map_err(|e| e.to_string())?;
    let out = harness_with_state(&["run", "--isolation", "host", "l.scn"], dir.path());
    let s = text(&out.stdout);
    ensure(out.status.code() == Some(1) && s.contains("cannot see"), || s.clone())?;
    ensure(s.contains("leak: segment shmid") && s.contains("created by A at line 2"), || {
        format!("leak not named: {s}")
    })?;
    let used = sysv::usage().map_err(|e| e.to_string())?.used_ids;
    ensure(used == 0, || format!("{used} segment(s) left after the run: {s}"))
}

/// Host mode, SIGKILL of the coordinator and the supervisor while a forked
/// actor (no death signal, by design: it may outlive its parent) runs a
/// traced program: the actor sees its supervisor's life pipe hang up, kills
/// the program's tree and exits, at once. Before, it waited for the program
/// to end (up to the step's timeout), a stray holding the run's journal
/// lock, so no sweep could settle the dead run meanwhile.
fn a_forked_actor_in_a_traced_program_dies_with_its_supervisor() -> Res {
    if shm_harness::trace::available().is_err() {
        eprintln!("skipped: tracing is unavailable here");
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tag = format!("60.{}", std::process::id());
    std::fs::write(dir.path().join("f.scn"), format!("process A, B\nA: fork B\nB: run \"sleep {tag}\" => status 0\n"))
        .map_err(|e| e.to_string())?;
    let mut child = Command::new(bin())
        .args(["run", "--isolation", "host", "--timeout", "120s", "f.scn"])
        .current_dir(dir.path())
        .env("SHM_HARNESS_STATE_DIR", dir.path().join("state"))
        .process_group(0)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let group = Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_with_arg(&tag).is_empty() {
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            return Err("the program never started".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The coordinator and the supervisor only (their actors are left to
    // the death signals and the life pipe).
    for p in in_group(group, processes_named("shm-sup")) {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    kill(group, Signal::SIGKILL).map_err(|e| e.to_string())?;
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<i32> =
            in_group(group, processes_named("shm-")).into_iter().chain(processes_with_arg(&tag)).collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
            for p in processes_with_arg(&tag) {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            return Err(format!("3 s after the kill, processes of the run still live: {left:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// `sweep` run by a user whose recorded segment's mode forbids `IPC_STAT`
/// (mode 0000, owned by that user, who may still remove it), with
/// `/proc/sysvipc/shm` unreadable (an empty file bind-mounted over it in a
/// mount namespace of the test's own): whether the segment is still there
/// is unknown, so the sweep fails closed (exit 1, says why) and keeps the
/// journal. Before, "cannot see" read as "gone": exit 0, the journal
/// deleted, the segment forgotten for good.
fn a_sweep_that_cannot_see_keeps_the_journal() -> Res {
    use shm_harness::runner::journal::{self, Journal, Record};
    use std::os::unix::fs::PermissionsExt;
    if !root() {
        eprintln!("skipped: needs root (another uid, a mount namespace)");
        return Ok(());
    }
    const NOBODY: u32 = 65534;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let state = dir.path().join("state");
    std::fs::create_dir(&state).map_err(|e| e.to_string())?;
    let id = orphan_segment(0);
    sysv::Shmid::from_raw(id).set(NOBODY, NOBODY, Mode::from_bits_truncate(0)).map_err(|e| e.to_string())?;
    let (_, cpid, ctime) = segments().into_iter().find(|s| s.0 == id).ok_or("segment gone")?;
    let ns = journal::ipc_namespace().ok_or("no ipc namespace")?;
    let rec = Record { scenario: "j.scn".into(), line: 2, process: "A".into(), shmid: id, cpid, ctime, key: 0, ns };
    let dead = Journal::create(&state)?;
    journal::append_to(dead.path(), &rec)?;
    let path = dead.path().to_path_buf();
    drop(dead);
    for p in [&state, &path] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).map_err(|e| e.to_string())?;
    }
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("mount / private: {e}"))?;
    mount(Some("/dev/null"), "/proc/sysvipc/shm", None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| format!("bind /dev/null over /proc/sysvipc/shm: {e}"))?;
    let out = Command::new(bin())
        .arg("sweep")
        .current_dir(dir.path())
        .env("SHM_HARNESS_STATE_DIR", &state)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .map_err(|e| e.to_string())?;
    let err = text(&out.stderr);
    ensure(out.status.code() == Some(1) && err.contains(&format!("cannot check shmid {id} ")), || {
        format!("{:?}: {err}", out.status)
    })?;
    ensure(path.exists(), || format!("the journal was deleted: {err}"))?;
    ensure(sysv::Shmid::from_raw(id).stat().is_ok(), || "the segment is gone".into())
}

fn main() {
    let mut args = Arguments::from_args();
    // One thread: the main one, so the tests may fork.
    args.test_threads = Some(1);
    let tests: [(&str, TestFn); 23] = [
        ("a_run_killed_while_making_its_journal_leaves_nothing", a_run_killed_while_making_its_journal_leaves_nothing),
        ("an_unfinished_creation_is_reported_and_left_alone", an_unfinished_creation_is_reported_and_left_alone),
        ("a_finished_creation_is_removed_as_recorded", a_finished_creation_is_removed_as_recorded),
        ("a_segment_older_than_the_intent_is_not_its_creation", a_segment_older_than_the_intent_is_not_its_creation),
        ("an_actor_journals_its_intent_before_it_creates", an_actor_journals_its_intent_before_it_creates),
        ("a_sweep_that_cannot_see_keeps_the_journal", a_sweep_that_cannot_see_keeps_the_journal),
        (
            "a_forked_actor_in_a_traced_program_dies_with_its_supervisor",
            a_forked_actor_in_a_traced_program_dies_with_its_supervisor,
        ),
        ("host_mode_blind_oracle_still_removes_what_it_made", host_mode_blind_oracle_still_removes_what_it_made),
        ("sweep_needs_a_dead_run_and_the_same_identity", sweep_needs_a_dead_run_and_the_same_identity),
        ("panic_in_a_forked_child_is_a_harness_error", panic_in_a_forked_child_is_a_harness_error),
        ("pid_reuse_does_not_make_a_foreign_segment_ours", pid_reuse_does_not_make_a_foreign_segment_ours),
        ("sigkill_then_sweep_removes_exactly_what_the_run_left", sigkill_then_sweep_removes_exactly_what_the_run_left),
        ("a_rerun_after_sigkill_sweeps_the_dead_run", a_rerun_after_sigkill_sweeps_the_dead_run),
        ("a_program_segment_at_a_step_timeout_is_reported", a_program_segment_at_a_step_timeout_is_reported),
        ("megabytes_of_program_output_are_drained_and_capped", megabytes_of_program_output_are_drained_and_capped),
        ("an_ignored_sighup_stays_ignored", an_ignored_sighup_stays_ignored),
        ("a_300_deep_fork_chain_runs", a_300_deep_fork_chain_runs),
        ("ten_thousand_processes_run_or_fail_up_front", ten_thousand_processes_run_or_fail_up_front),
        ("a_killed_daemon_does_not_stay_a_zombie", a_killed_daemon_does_not_stay_a_zombie),
        ("after_a_failed_scenario_no_process_of_it_lives", after_a_failed_scenario_no_process_of_it_lives),
        (
            "sigkill_of_a_host_supervisor_is_settled_by_the_coordinator",
            sigkill_of_a_host_supervisor_is_settled_by_the_coordinator,
        ),
        (
            "a_process_killed_or_stopped_after_its_last_step_fails_the_scenario",
            a_process_killed_or_stopped_after_its_last_step_fails_the_scenario,
        ),
        ("a_prepared_supervisor_waits_for_its_turn", a_prepared_supervisor_waits_for_its_turn),
    ];
    let trials = tests.into_iter().map(|(name, body)| Trial::test(name, move || isolated(body))).collect();
    libtest_mimic::run(&args, trials).exit();
}
