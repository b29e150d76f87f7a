//! Containment: a scenario reaches only what it made. Scenarios that try to
//! reach foreign segments, recycled pids, reused shmids or the host's
//! segments (through `needs command`, stale names, signals), pinned with a
//! control that shows each check can fail (found by issue 10's adversarial
//! safety review, R2). Every test runs in its own process
//! (rusty-fork) and its own private IPC namespace, where the segments the
//! test itself makes play the machine's ("foreign") segments.

mod common;
use common::{all, harness_traced};

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rusty_fork::rusty_fork_test;
use shm_harness::sysv::{self, CreateOptions, Key, Mode};

/// `shm-harness run --isolation ISO FILE` in `dir`, its state directory `dir/state`.
fn run(dir: &Path, iso: &str, file: &str) -> Output {
    harness_traced(&["run", "--isolation", iso, file], dir, &[])
}

/// The shmids of the current IPC namespace.
fn shmids() -> Vec<i32> {
    sysv::proc_segments().expect("/proc/sysvipc/shm").iter().map(|r| r.shmid.raw()).collect()
}

/// A segment the test made (not the harness's): left in place, keyed.
fn foreign(key: i32) -> i32 {
    let seg = CreateOptions::new(100).mode(Mode::ALL_RW).create_exclusive(Key::from_raw(key)).expect("foreign segment");
    seg.release().id().raw()
}

/// The pids of living processes that run `sleep SECS` (SECS unique to a test).
fn sleeping(secs: &str) -> Vec<i32> {
    let want = format!("sleep\0{secs}\0").into_bytes();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

rusty_fork_test! {
    /// `needs command` runs before the scenario's supervisor enters the
    /// scenario's namespace: it ran in the caller's IPC namespace (the
    /// host's), untraced, in BOTH isolations, and `needs command "ipcrm
    /// --all=shm"` removed every segment of the machine. Now it runs in an
    /// empty IPC namespace of its own.
    #[test]
    fn a_needs_command_cannot_reach_the_hosts_segments() {
        private_namespace_or_skip!();
        if !have("ipcrm") {
            eprintln!("skipped: ipcrm (util-linux) is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rm.scn"),
            "needs command \"ipcrm --all=shm\"\nprocess A\nA: create s = private size 4096\nA: rm s\n",
        )
        .unwrap();
        let other = foreign(0x7ace_2001);
        for iso in ["namespace", "host"] {
            let out = run(dir.path(), iso, "rm.scn");
            assert_eq!(out.status.code(), Some(0), "{iso}: {}", all(&out));
            assert_eq!(shmids(), vec![other], "{iso}: the needs command removed a foreign segment: {}", all(&out));
        }
        // The control: the same command, run here, does remove it.
        assert!(Command::new("ipcrm").arg("--all=shm").status().unwrap().success());
        assert_eq!(shmids(), Vec::<i32>::new());
    }

    /// `SHM_STAT_ANY` keeps only an id's index bits: after `rm s`, `shmctl
    /// t = s SHM_STAT_ANY` binds t to whatever segment holds s's old index,
    /// here one the machine made in the meantime (with `kernel.shm_next_id`,
    /// as CRIU or an admin may); in host isolation `rm t` removed it (PASS).
    /// Now the binding is guarded like a capture (and ends the actor's
    /// chain, so no later step runs before the guard). The control: bound
    /// to its own segment, the same steps pass.
    #[test]
    fn a_stale_name_cannot_bind_a_foreign_segment_by_index() {
        private_namespace_or_skip!();
        if let Err(why) = shm_harness::trace::available() {
            eprintln!("skipped: the scenario waits with `run`, and tracing is unavailable: {why}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().to_path_buf();
        std::fs::write(
            dir.path().join("stale.scn"),
            "process A\nA: create s = private size 4096\nA: stat s => index 1\nA: rm s\nA: run \"touch ${here}/removed\" => status 0\n\
             A: run \"sh -c 'while ! test -e ${here}/planted; do sleep 0.01; done'\" => status 0\n\
             A: shmctl t = s SHM_STAT_ANY => size 8192\nA: rm t\n",
        )
        .unwrap();
        // A fresh namespace: the run's anchor gets index 0, `s` index 1.
        let planter = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !here.join("removed").exists() {
                assert!(Instant::now() < deadline, "the scenario never removed s");
                std::thread::sleep(Duration::from_millis(5));
            }
            std::fs::write("/proc/sys/kernel/shm_next_id", (1 + 32768).to_string()).unwrap();
            let seg = CreateOptions::new(8192).mode(Mode::ALL_RW).create_exclusive(Key::from_raw(0x7ace_2003)).unwrap();
            std::fs::write(here.join("planted"), "").unwrap();
            seg.release().id().raw()
        });
        let out = run(dir.path(), "host", "stale.scn");
        let other = planter.join().unwrap();
        assert_eq!(other % 32768, 1, "the foreign segment is not at s's index");
        let said = all(&out);
        assert!(said.contains(&format!("`t` captured shmid {other}, which is not a segment this scenario's processes created")), "{said}");
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert_eq!(shmids(), vec![other], "the foreign segment was removed: {said}");
        // The control: bound to its own segment, `rm t` is the scenario's to make.
        std::fs::write(
            dir.path().join("own.scn"),
            "process A\nA: create s = private size 4096\nA: shmctl t = s SHM_STAT_ANY => id s\nA: rm t\nA: segments => 0\n",
        )
        .unwrap();
        let out = run(dir.path(), "host", "own.scn");
        assert_eq!(out.status.code(), Some(0), "{}", all(&out));
        assert_eq!(shmids(), vec![other]);
    }

    /// In host isolation a spawned program is the tracer's child, reaped
    /// the moment it ends, not at `wait`: `signal D` after D ended sent
    /// kill(2) to a pid that may be another process's by then. Here the
    /// test makes the pid come back at once (in a PID namespace of its own,
    /// with `unshare -p` and `ns_last_pid`) for a process that is not the
    /// scenario's: it was killed and the step passed; so was it by `run
    /// "kill -9 ${D}"`. Now `signal` needs the pid to still name a process
    /// of the scenario's tree (checked through a pidfd), and a command is
    /// not handed `${D}` of an ended program; the control is a scenario
    /// signalling D while it runs.
    #[test]
    fn a_signal_never_reaches_a_recycled_pid() {
        skip_if_not_root!();
        private_namespace_or_skip!();
        if let Err(why) = shm_harness::trace::available() {
            eprintln!("skipped: host isolation traces spawned programs, and tracing is unavailable: {why}");
            return;
        }
        if !have("unshare") {
            eprintln!("skipped: unshare (util-linux) is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("live.scn"), "process A, B\nA: spawn D = \"sleep 30\"\nB: signal D KILL\nA: wait D => signal KILL\n").unwrap();
        // In a PID namespace of its own (`ns_last_pid` is then ours to
        // set): run the scenario; once D has ended, give its pid to a
        // `sleep` that is not the scenario's; say whether it survived.
        let script = r#"
set -u
rm -f dpid planted
"$0" run --isolation host recycle.scn > recycle.out 2>&1 & c=$!
while ! test -s dpid; do sleep 0.005; done; d=$(cat dpid)
while test -e /proc/$d; do sleep 0.005; done
f=none
for i in 1 2 3 4 5 6 7 8 9 10; do
  echo $((d-1)) > /proc/sys/kernel/ns_last_pid; sleep 86 & f=$!
  [ "$f" = "$d" ] && break; kill $f; f=none
done
touch planted
wait $c; echo "rc=$?"
if [ "$f" = none ]; then echo "not-recycled"; elif test -e /proc/$f; then echo "foreign-alive"; kill $f; else echo "foreign-killed"; fi
"$0" run --isolation host live.scn > live.out 2>&1; echo "live-rc=$?"
"#;
        // `signal D`, and the same pid handed to a program as `${D}`.
        for (step, refusal) in [
            ("B: signal D KILL", "of `D` is not a descendant of the scenario's supervisor"),
            ("B: run \"kill -9 ${D}\" => status 0", "`${D}`: pid"),
        ] {
            let steps = format!(
                "process A, B\nA: spawn D = \"sleep 0.3\"\nA: run \"sh -c 'echo ${{D}} > ${{here}}/dpid'\" => status 0\n\
                 A: run \"sh -c 'while ! test -e ${{here}}/planted; do sleep 0.01; done'\" => status 0\n{step}\nA: wait D => status 0\n"
            );
            std::fs::write(dir.path().join("recycle.scn"), steps).unwrap();
            let out = Command::new("unshare")
                .args(["-p", "-f", "--mount-proc", "bash", "-c", script, common::bin()])
                .current_dir(dir.path())
                .env("SHM_HARNESS_STATE_DIR", dir.path().join("state"))
                .env_remove("SHM_HARNESS_NO_TRACE")
                .output()
                .unwrap();
            let said = all(&out) + &std::fs::read_to_string(dir.path().join("recycle.out")).unwrap_or_default();
            assert!(!said.contains("not-recycled"), "{step}: the test could not give D's pid to another process: {said}");
            assert!(said.contains("foreign-alive"), "{step}: killed another process that had D's pid: {said}");
            assert!(said.contains("rc=1") && said.contains(refusal), "{step}: {said}");
            // The control: while D runs, the signal reaches it.
            let live = std::fs::read_to_string(dir.path().join("live.out")).unwrap_or_default();
            assert!(said.contains("live-rc=0"), "{said}{live}");
        }
    }

    /// A segment name keeps its shmid after `rm`, and the kernel can hand
    /// the same shmid to another segment (`kernel.shm_next_id`, as CRIU or
    /// an admin may; or seq wrap-around). In host isolation a second `rm s`
    /// then removed the machine's segment (and `attach` + `poke` wrote into
    /// it, `set` re-recorded it as the scenario's). Now a step that changes,
    /// attaches or removes a segment by name first checks the shmid's
    /// identity. The control: with nothing planted, `rm s => EINVAL` passes.
    #[test]
    fn a_stale_name_cannot_reach_a_segment_that_reused_its_shmid() {
        private_namespace_or_skip!();
        if let Err(why) = shm_harness::trace::available() {
            eprintln!("skipped: the scenario waits with `run`, and tracing is unavailable: {why}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for op in ["rm s => EINVAL", "attach m = s", "set s mode 0666", "lock s"] {
            std::fs::write(
                dir.path().join("stale.scn"),
                format!(
                    "process A\nA: create s = private size 4096\nA: rm s\nA: run \"sh -c 'echo ${{s}} > ${{here}}/removed'\" => status 0\n\
                     A: run \"sh -c 'while ! test -e ${{here}}/planted; do sleep 0.01; done'\" => status 0\nA: {op}\n"
                ),
            )
            .unwrap();
            for plant in [true, false] {
                let _ = std::fs::remove_file(dir.path().join("removed"));
                let _ = std::fs::remove_file(dir.path().join("planted"));
                let here = dir.path().to_path_buf();
                let planter = std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    let s_id = loop {
                        let text = std::fs::read_to_string(here.join("removed")).unwrap_or_default();
                        if let Ok(id) = text.trim().parse::<i32>() {
                            break id;
                        }
                        assert!(Instant::now() < deadline, "the scenario never removed s");
                        std::thread::sleep(Duration::from_millis(5));
                    };
                    let other = plant.then(|| {
                        std::fs::write("/proc/sys/kernel/shm_next_id", s_id.to_string()).unwrap();
                        let seg = CreateOptions::new(8192).mode(Mode::ALL_RW).create_exclusive(Key::from_raw(0x7ace_2004)).unwrap();
                        let id = seg.release().id().raw();
                        assert_eq!(id, s_id, "the foreign segment did not get s's shmid");
                        id
                    });
                    std::fs::write(here.join("planted"), "").unwrap();
                    other
                });
                let out = run(dir.path(), "host", "stale.scn");
                let other = planter.join().unwrap();
                let said = all(&out);
                match other {
                    Some(other) => {
                        assert!(said.contains(&format!("`s` (shmid {other}) is now another segment")), "{op}: {said}");
                        assert_eq!(out.status.code(), Some(1), "{op}: {said}");
                        assert_eq!(shmids(), vec![other], "{op}: the foreign segment was removed: {said}");
                        let seg = sysv::Shmid::from_raw(other);
                        let stat = seg.stat().unwrap();
                        assert_eq!((stat.atime, stat.mode, stat.locked), (0, Mode::ALL_RW, false), "{op}: the foreign segment was touched: {said}");
                        seg.remove().unwrap();
                    }
                    // The control: nothing planted, the stale name answers as the kernel says.
                    None if op.starts_with("rm") => assert_eq!(out.status.code(), Some(0), "{said}"),
                    None => assert!(!said.contains("is now another segment"), "{said}"),
                }
            }
        }
    }

    /// What a `needs command` leaves running (`cmd &`, even `setsid cmd &`)
    /// is killed before the scenario starts, in both isolations, with and
    /// without a traced program (host mode then has no PID namespace); it
    /// outlived the scenario before.
    #[test]
    fn what_a_needs_command_leaves_running_is_killed() {
        private_namespace_or_skip!();
        let dir = tempfile::tempdir().unwrap();
        let secs = format!("79.{}", std::process::id());
        let need = format!("needs command \"sh -c 'sleep {secs} & setsid sleep {secs} & exit 0'\"\n");
        let steps = "process A\nA: create s = private size 4096\nA: rm s\n";
        std::fs::write(dir.path().join("plain.scn"), format!("{need}{steps}")).unwrap();
        std::fs::write(dir.path().join("traced.scn"), format!("{need}{steps}A: run \"true\" => status 0\n")).unwrap();
        let traced = shm_harness::trace::available().is_ok();
        for (iso, file) in [("namespace", "plain.scn"), ("host", "plain.scn"), ("host", "traced.scn")] {
            if file == "traced.scn" && !traced {
                eprintln!("not tried: {file} in host mode: tracing unavailable");
                continue;
            }
            let out = run(dir.path(), iso, file);
            assert_eq!(out.status.code(), Some(0), "{iso} {file}: {}", all(&out));
            let left = sleeping(&secs);
            for &pid in &left {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            assert_eq!(left, Vec::<i32>::new(), "{iso} {file}: the needs command's sleeps outlived it: {}", all(&out));
        }
        // The control: a `sleep` that nobody kills is seen alive.
        let mut own = Command::new("sleep").arg(&secs).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while sleeping(&secs).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen = sleeping(&secs) == vec![own.id() as i32];
        own.kill().unwrap();
        own.wait().unwrap();
        assert!(seen, "the check does not see a live sleep");
    }
}
