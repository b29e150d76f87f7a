//! Shared by the integration tests: isolation and skips, running the
//! `shm-harness` binary, and reading what it printed.

#![allow(unsafe_code)] // opts in: raw calls against the kernel under test
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Enters a private IPC namespace, or returns from the test with a printed
/// reason. Call it first thing inside a `rusty_fork_test!` test, so that only
/// the forked test process changes namespace, never the test runner.
#[macro_export]
macro_rules! private_namespace_or_skip {
    () => {
        if let Err(e) = shm_harness::namespace::enter_private_ipc_namespace() {
            eprintln!("skipped: {}: {e}", module_path!());
            return;
        }
    };
}

/// Skips the test, with the reason printed, unless running as root.
#[macro_export]
macro_rules! skip_if_not_root {
    () => {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: {}: needs root", module_path!());
            return;
        }
    };
}

/// Forks a child that runs `body` and exits with its return value.
///
/// Why the child is safe: `body` only makes system calls through the wrapper
/// (no allocation on their success paths, no locks), then `_exit`s without
/// running destructors or atexit handlers of the parent's state.
pub fn fork_child(body: impl FnOnce() -> i32) -> Pid {
    // SAFETY: see above; the child never returns into the test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = body();
            // SAFETY: _exit is async-signal-safe and ends the child here.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// Waits for `pid` and returns how it ended.
pub fn wait(pid: Pid) -> WaitStatus {
    waitpid(pid, None).expect("waitpid")
}

/// Pids with `arg` in their command line (zombies have none).
pub fn processes_with_arg(arg: &str) -> Vec<i32> {
    scan_proc(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
    })
}

/// Pids under `/proc` for which `pred` holds. An unreadable `/proc` panics:
/// a test that looks for stray processes must not pass blind.
pub fn scan_proc(pred: impl Fn(i32) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc must be readable to look for processes")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| pred(p))
        .collect()
}

/// The `shm-harness` binary that cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shm-harness")
}

/// `shm-harness ARGS` in `dir`, not yet run, with no colour setting of the
/// caller's environment (`NO_COLOR`, `CLICOLOR`, `CLICOLOR_FORCE`) passed on.
pub fn command(args: &[&str], dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE").env_remove("CLICOLOR").args(args).current_dir(dir);
    c
}

/// Makes the process `c` starts take SIGINT, SIGTERM and SIGHUP as a
/// terminal's foreground job does (default dispositions), whatever this
/// test process inherited: a CI job started in the background (`cmd &`,
/// `nohup`) ignores SIGINT, and the harness keeps an inherited ignore, as
/// `nohup` asks. Tests of interrupts need the signals to arrive.
pub fn interruptible(c: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the child between fork and exec and only calls
    // signal(2), which is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

/// Runs `shm-harness ARGS` in `dir` and returns how it ended.
pub fn harness(args: &[&str], dir: &Path) -> Output {
    command(args, dir).output().expect("run shm-harness")
}

/// [`command`] with the state directory `dir/state`, so that sweeps and
/// records of one test never meet another's.
pub fn command_with_state(args: &[&str], dir: &Path) -> Command {
    let mut c = command(args, dir);
    c.env("SHM_HARNESS_STATE_DIR", dir.join("state"));
    c
}

/// Runs `shm-harness ARGS` in `dir` with the state directory `dir/state`.
pub fn harness_with_state(args: &[&str], dir: &Path) -> Output {
    command_with_state(args, dir).output().expect("run shm-harness")
}

/// Writes `text` to `dir/name`, making the folders on the way.
pub fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Bytes a process printed, as text.
pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Everything a run printed: its stdout, then its stderr.
pub fn all(o: &Output) -> String {
    text(&o.stdout) + &text(&o.stderr)
}

/// A check's outcome in the tests that run outside libtest: what failed.
pub type Res = Result<(), String>;

/// `Ok` if `cond` holds, else the failure `what` describes.
pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> Res {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// Runs `shm-harness ARGS` in `dir` with the state directory `dir/state`,
/// tracing left on whatever the caller's environment says
/// (`SHM_HARNESS_NO_TRACE` removed), and `envs` set.
pub fn harness_traced(args: &[&str], dir: &Path, envs: &[(&str, &str)]) -> Output {
    let mut c = command_with_state(args, dir);
    c.env_remove("SHM_HARNESS_NO_TRACE").envs(envs.iter().copied());
    c.output().expect("run shm-harness")
}
