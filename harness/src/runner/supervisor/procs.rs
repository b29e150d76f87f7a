//! The process side of a supervisor: waiting for children, reaping them as
//! they end, and killing whatever of the scenario is left at teardown.

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::interp::Ending;

/// Reaps one child that has ended, if any: its pid and how it ended.
pub(crate) fn reap_one() -> Option<(i32, Ending)> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, c)) => return Some((pid.as_raw(), Ending::Exited(c))),
            Ok(WaitStatus::Signaled(pid, s, _)) => return Some((pid.as_raw(), Ending::Signaled(s as i32))),
            Err(Errno::EINTR) => {}
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Waits until `pid` (a child of ours) has exited and reaps it: sleeps on a
/// pidfd until it is readable (Linux 5.3+), else polls. `Unknown` if it did
/// not end in time or is not ours to reap (any more).
pub(crate) fn wait_exit(pid: Pid, timeout: Duration) -> Ending {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if raw >= 0 {
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_micros(20);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return Ending::Exited(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ending::Signaled(s as i32),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return Ending::Unknown,
        }
        if Instant::now() >= deadline {
            return Ending::Unknown;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(2));
    }
}

/// The host `/proc`'s number for `pid` of our PID namespace, read from a
/// pidfd's `fdinfo` (`Pid:` is in the namespace of the `/proc` mount).
pub(crate) fn host_pid_of(pid: Pid) -> Option<i32> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if raw < 0 {
        return None;
    }
    // SAFETY: a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).ok()?;
    info.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok())
}

/// Kills and reaps every process of the scenario but this one, within a
/// bounded time.
///
/// As PID 1 of the scenario's PID namespace, `kill(-1, SIGKILL)` reaches
/// every other process of the namespace (the kernel would also kill them
/// when we exit). Otherwise (host mode without root) our descendants are
/// found in `/proc/PID/task/TID/children` (orphans came to us: we are a
/// subreaper), killed, and the walk repeated until none is left.
///
/// # Errors
/// Processes are still there after the time allowed, or `/proc` cannot
/// be read to find them.
pub(crate) fn kill_everything(pid_namespace: bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = if pid_namespace {
            // ESRCH: nobody else is left.
            kill(Pid::from_raw(-1), Signal::SIGKILL).is_ok()
        } else {
            let tree = descendants_of(std::process::id() as i32)?;
            for &p in &tree {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            !tree.is_empty()
        };
        // Reap what died; orphans of the dead come to us and are killed next round.
        let mut reaped_any = false;
        while reap_one().is_some() {
            reaped_any = true;
        }
        if !found && !has_children() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("processes of the scenario survived SIGKILL for 5 s (uninterruptible sleep?)".into());
        }
        if !reaped_any {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Whether this process has a child (living or a zombie).
fn has_children() -> bool {
    !matches!(waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)), Err(Errno::ECHILD))
}

/// Every descendant of `root`, from `/proc/PID/task/TID/children`.
///
/// # Errors
/// `root`'s own `children` file cannot be read (the walk would be blind).
pub(crate) fn descendants_of(root: i32) -> Result<Vec<i32>, String> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        let tasks = match std::fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(t) => t,
            Err(e) if pid == root => return Err(format!("/proc/{pid}/task: {e}")),
            Err(_) => continue,
        };
        for task in tasks.filter_map(Result::ok) {
            let path = task.path().join("children");
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if pid == root => return Err(format!("{}: {e}", path.display())),
                Err(_) => continue,
            };
            for child in text.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                out.push(child);
                todo.push(child);
            }
        }
    }
    Ok(out)
}

/// Gives the calling process (PID 1 of a scenario's PID namespace) a
/// private mount namespace with a `/proc` of its PID namespace, so that
/// programs the scenario runs (`ipcs -p`, `lsipc`, `pmap`, anything that
/// reads `/proc/PID/...` for a pid it was shown) see the scenario's own
/// processes: with the host's `/proc`, `/proc/<pid of the scenario>` is
/// some other process of the machine.
///
/// `unshare(CLONE_NEWNS)`, then `mount(NULL, "/", MS_REC|MS_PRIVATE)` so
/// nothing propagates back to the machine, then `mount("proc", "/proc")`.
///
/// # Errors
/// The failed call and its errno, with what to do.
pub(crate) fn mount_private_proc() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let hint = "(a scenario with `run` steps needs a /proc of its own PID namespace; run as root or where unprivileged user namespaces may mount proc)";
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e} {hint}"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("mount(/, MS_REC|MS_PRIVATE): {e} {hint}"))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| format!("mount(proc, /proc): {e} {hint}"))
}
