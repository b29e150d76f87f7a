//! Background programs (`spawn`) are owned like every other process of a
//! scenario: their whole tree is killed and reaped at teardown, in both
//! isolations; what they leave attached or created is reported; and a
//! coordinator killed while they run leaves nothing behind.
//!
//! Each test moves its own thread into a private IPC namespace first
//! (`unshare(CLONE_NEWIPC)` is per thread; the runs it starts inherit it),
//! so host-mode runs never touch the machine's namespace. Without the
//! privilege to do so a test passes vacuously, printing why.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{bin, ensure, harness_with_state, processes_with_arg, text, Res};

/// This thread in a private IPC namespace; false (after saying why) if it
/// cannot be.
fn private_ipc() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (a private IPC namespace for a test thread)");
        return false;
    }
    match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipped: unshare(CLONE_NEWIPC): {e}");
            false
        }
    }
}

/// A `sleep` argument no other process has: `1000.<pid><n>`.
fn tag(n: u32) -> String {
    format!("1000.{}{n}", std::process::id())
}

/// Waits (up to 10 s) until no process has `arg` in its command line.
fn gone(arg: &str) -> Res {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = processes_with_arg(arg);
        if alive.is_empty() {
            return Ok(());
        }
        ensure(Instant::now() < deadline, || format!("processes {alive:?} ({arg}) outlived their scenario"))?;
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn isolations() -> [&'static str; 2] {
    ["namespace", "host"]
}

/// A daemon that double-forks out of its spawned parent (which is waited
/// for), and a program never waited for with a child of its own, are killed
/// at teardown in both isolations, and the scenario passes: the teardown
/// owns them. The control: while the scenario runs, they do live.
#[test]
fn a_double_forking_spawned_daemon_is_killed_and_reaped_at_teardown() -> Res {
    if !private_ipc() {
        return Ok(());
    }
    for (n, iso) in isolations().into_iter().enumerate() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (daemon, kept, child) = (tag(10 * n as u32 + 1), tag(10 * n as u32 + 2), tag(10 * n as u32 + 3));
        let scn = format!(
            "process A, B\n\
             A: spawn D = \"sh -c '(sleep {daemon} </dev/null >/dev/null 2>&1 &) ; exit 0'\"\n\
             A: wait D => status 0\n\
             A: spawn E = \"sh -c 'sleep {child} & exec sleep {kept}'\"\n\
             B: run \"sh -c 'pgrep -f -x \\\"sleep {daemon}\\\" >/dev/null && pgrep -f -x \\\"sleep {child}\\\" >/dev/null'\" => status 0\n"
        );
        std::fs::write(dir.path().join("d.scn"), scn).map_err(|e| e.to_string())?;
        let out = harness_with_state(&["run", "--isolation", iso, "d.scn"], dir.path());
        let s = text(&out.stdout);
        if s.contains("SKIP") {
            eprintln!("{iso}: skipped: {s}");
            continue;
        }
        ensure(out.status.code() == Some(0), || format!("{iso}: {s}{}", text(&out.stderr)))?;
        for t in [&daemon, &kept, &child] {
            gone(t).map_err(|e| format!("{iso}: {e}"))?;
        }
    }
    Ok(())
}

fn attacher(ready: &str) -> String {
    format!(
        "perl -MPOSIX -e '$n = {{x86_64 => 30, aarch64 => 196}}->{{(uname())[4]}}; $r = $n ? syscall($n, $ARGV[0] + 0, 0, 0) : -1; open(F, q(>), q({ready})) or die; print F ($r == -1 ? qq(no shmat: $!) : 1); close F; sleep 1000' ${{s}}"
    )
}

/// A spawned program still attached at the end, and the segment nobody
/// removed, are both reported (naming the program and its line), in both
/// isolations; the control, which stops the program and removes the
/// segment, passes.
#[test]
fn a_spawned_programs_leaked_attachment_and_segment_are_reported() -> Res {
    if !private_ipc() {
        return Ok(());
    }
    for iso in isolations() {
        for leak in [true, false] {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let end = if leak { "" } else { "A: signal D KILL\nA: wait D => signal KILL\nA: rm s\n" };
            let scn = format!(
                "process A\nA: create s = private size 4096\nA: run \"mkfifo ready\"\nA: spawn D = \"{}\"\nA: run \"cat ready\" => stdout \"1\"\nA: stat s => nattch 1, lpid D\n{end}",
                attacher("ready")
            );
            std::fs::write(dir.path().join("l.scn"), scn).map_err(|e| e.to_string())?;
            let out = harness_with_state(&["run", "--isolation", iso, "l.scn"], dir.path());
            let s = text(&out.stdout);
            if leak {
                ensure(
                    out.status.code() == Some(1)
                        && s.contains("l.scn:4: leak: program D still has shmid")
                        && s.contains("created by A at line 2 was never removed"),
                    || format!("{iso}, leaking: {s}"),
                )?;
            } else {
                ensure(out.status.code() == Some(0), || format!("{iso}, control: {s}"))?;
            }
        }
    }
    ensure(std::fs::read_to_string("/proc/sysvipc/shm").is_ok_and(|t| t.lines().count() <= 1), || {
        "segments left in the test's namespace".into()
    })
}

/// SIGKILL of the coordinator while a spawned (traced, in host mode)
/// program lives and has created a segment: the supervisor kills the whole
/// tree and removes, by the identity the journal recorded, the segment the
/// program made. Nothing of the scenario is left: no process, no segment.
#[test]
fn sigkill_of_the_coordinator_mid_spawn_leaves_nothing() -> Res {
    if !private_ipc() {
        return Ok(());
    }
    // The segment is made while the spawning process idles (B runs the
    // long program) or while it runs a program itself (A does): its actor
    // reads the tracer's report either way before the kill.
    let cases = isolations().into_iter().flat_map(|iso| ["A", "B"].map(move |who| (iso, who)));
    for (n, (iso, who)) in cases.enumerate() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (prog, other) = (tag(100 + 10 * n as u32), tag(101 + 10 * n as u32));
        let scn = format!(
            "timeout 60s\nprocess A, B\n\
             A: spawn D = \"sh -c 'sleep 0.05; ipcmk -M 4096 >/dev/null; exec sleep {prog}'\"\n\
             {who}: run \"sleep {other}\"\n"
        );
        std::fs::write(dir.path().join("k.scn"), scn).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin())
            .args(["run", "--isolation", iso, "k.scn"])
            .current_dir(dir.path())
            .env("SHM_HARNESS_STATE_DIR", dir.path().join("state"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        // The program has made its segment (host mode: in this namespace)
        // and both sleeps run.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let made =
                iso == "namespace" || std::fs::read_to_string("/proc/sysvipc/shm").is_ok_and(|t| t.lines().count() > 1);
            if made && !processes_with_arg(&prog).is_empty() && !processes_with_arg(&other).is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{iso}/{who}: the scenario never got going"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Give the actor a moment to read (and journal) the tracer's report.
        std::thread::sleep(Duration::from_millis(100));
        child.kill().map_err(|e| e.to_string())?;
        let _ = child.wait();
        gone(&prog).map_err(|e| format!("{iso}/{who}: {e}"))?;
        gone(&other).map_err(|e| format!("{iso}/{who}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = std::fs::read_to_string("/proc/sysvipc/shm").map_err(|e| e.to_string())?;
            if rows.lines().count() <= 1 {
                break;
            }
            ensure(Instant::now() < deadline, || {
                format!("{iso}/{who}: segments left after the coordinator's death:\n{rows}")
            })?;
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// After a failure, the `finally` steps still run for the living
/// processes (the segment is removed, the program stopped: no leak is
/// reported), a failing `finally` step is reported after the first
/// failure and never instead of it, and a step of a process that ended is
/// not run. The control without `finally:` leaks the segment.
#[test]
fn finally_runs_after_a_failure_without_masking_it() -> Res {
    if !private_ipc() {
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // C dies at line 4 where it should not (it kills itself through a
    // program): the first failure, after which C takes no step.
    let body = "process A, B, C\nA: create s = private size 4096\nA: spawn D = \"sleep 30\"\nC: run \"kill -9 ${C}\"\n";
    let cleanup = "A: signal D KILL\nA: wait D => signal KILL\nB: stat s => nattch 9\nC: segments => 1\nB: rm s\n";
    std::fs::write(dir.path().join("f.scn"), format!("{body}finally:\n{cleanup}")).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("c.scn"), body).map_err(|e| e.to_string())?;
    let out = harness_with_state(&["run", "-v", "f.scn"], dir.path());
    let s = text(&out.stdout);
    ensure(out.status.code() == Some(1), || format!("finally: {s}"))?;
    ensure(s.contains("FAIL f.scn:4: C: run"), || format!("the first failure must be reported: {s}"))?;
    ensure(s.contains("finally steps failed too: line 8: B: stat s => nattch 9"), || format!("later failure: {s}"))?;
    ensure(!s.contains("leak"), || format!("finally should have removed the segment: {s}"))?;
    ensure(s.contains("(finally step not run)") && s.contains("process C has ended"), || s.clone())?;
    let out = harness_with_state(&["run", "c.scn"], dir.path());
    let s = text(&out.stdout);
    ensure(out.status.code() == Some(1) && s.contains("was never removed"), || format!("control: {s}"))
}
