//! Shared by the integration tests: isolation and skips.

#![allow(unsafe_code)] // opts in: raw calls against the kernel under test
#![allow(dead_code)]

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
