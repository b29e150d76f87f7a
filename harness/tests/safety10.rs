//! Issue 10's adversarial safety review (R2): scenarios that try to reach
//! what they did not make with the new features, pinned with a control that
//! shows each check can fail. Every test runs in its own process
//! (rusty-fork) and its own private IPC namespace, where the segments the
//! test itself makes play the machine's ("foreign") segments.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rusty_fork::rusty_fork_test;
use shm_harness::sysv::{self, CreateOptions, Key, Mode};

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `shm-harness run --isolation ISO FILE` in `dir`, its state directory `dir/state`.
fn run(dir: &Path, iso: &str, file: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shm-harness"))
        .args(["run", "--isolation", iso, file])
        .current_dir(dir)
        .env("SHM_HARNESS_STATE_DIR", dir.join("state"))
        .env_remove("SHM_HARNESS_NO_TRACE")
        .output()
        .expect("run shm-harness")
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
            assert_eq!(out.status.code(), Some(0), "{iso}: {}", text(&out));
            assert_eq!(shmids(), vec![other], "{iso}: the needs command removed a foreign segment: {}", text(&out));
        }
        // The control: the same command, run here, does remove it.
        assert!(Command::new("ipcrm").arg("--all=shm").status().unwrap().success());
        assert_eq!(shmids(), Vec::<i32>::new());
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
            assert_eq!(out.status.code(), Some(0), "{iso} {file}: {}", text(&out));
            let left = sleeping(&secs);
            for &pid in &left {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            assert_eq!(left, Vec::<i32>::new(), "{iso} {file}: the needs command's sleeps outlived it: {}", text(&out));
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
