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

/// A process of the scenario that has ended (or was killed) and is not
/// reaped yet: its pid is still its own, so a segment whose creator pid
/// it is and that was not made before it started is provably its.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unreaped {
    /// Its pid in this process's PID namespace (as `/proc/sysvipc/shm`
    /// and `IPC_STAT` show a creator to us).
    pub pid: i32,
    /// Its pid as the `/proc` mount shows it (the journal's creator pid).
    pub proc_pid: i32,
    /// When it started, in seconds since the epoch, rounded down (a
    /// segment it made has a `ctime` of this or later).
    pub started: i64,
}

/// Reads what `/proc/PROC_PID` says of a process not yet reaped: its pid
/// at the level of our PID namespace (`NSpid`) and its start.
///
/// # Errors
/// `/proc` cannot be read for it (the look would be blind).
pub(crate) fn unreaped(proc_pid: i32) -> Result<Unreaped, String> {
    let ours = nspids("self")?;
    let level = ours.len().checked_sub(1).ok_or("/proc/self/status: empty NSpid")?;
    let its = nspids(&proc_pid.to_string())?;
    let pid = *its.get(level).ok_or(format!("/proc/{proc_pid}/status: no pid in our PID namespace"))?;
    let stat =
        std::fs::read_to_string(format!("/proc/{proc_pid}/stat")).map_err(|e| format!("/proc/{proc_pid}/stat: {e}"))?;
    let ticks: i64 = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().nth(19))
        .and_then(|v| v.parse().ok())
        .ok_or(format!("/proc/{proc_pid}/stat: no start time"))?;
    Ok(Unreaped { pid, proc_pid, started: boot_time()? + ticks / clock_ticks() })
}

/// [`unreaped`] for our child `pid` (a pid of our PID namespace), found
/// among our children as the `/proc` mount numbers them (in a PID
/// namespace of ours, the host's `/proc` has other numbers).
///
/// # Errors
/// `/proc` cannot be read, or `pid` is not a child of ours there.
pub(crate) fn unreaped_child(pid: Pid) -> Result<Unreaped, String> {
    for child in children_of_self()? {
        let u = unreaped(child)?;
        if u.pid == pid.as_raw() {
            return Ok(u);
        }
    }
    Err(format!("pid {pid} is not among our children in /proc"))
}

/// Our children as the `/proc` mount numbers them.
fn children_of_self() -> Result<Vec<i32>, String> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task: {e}"))?;
    for task in tasks.filter_map(Result::ok) {
        let path = task.path().join("children");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        out.extend(text.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
    }
    Ok(out)
}

/// The `NSpid` line of `/proc/WHO/status`: the pid in each PID namespace
/// from the `/proc` mount's down to the process's own.
pub(crate) fn nspids(who: &str) -> Result<Vec<i32>, String> {
    let path = format!("/proc/{who}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let line = text.lines().find_map(|l| l.strip_prefix("NSpid:")).ok_or(format!("{path}: no NSpid line"))?;
    line.split_whitespace().map(|p| p.parse().map_err(|_| format!("{path}: NSpid {line:?}"))).collect()
}

/// The boot time in seconds since the epoch (`btime` of `/proc/stat`).
fn boot_time() -> Result<i64, String> {
    let text = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("/proc/stat: no btime line".into())
}

/// Clock ticks per second (`/proc/PID/stat` counts start times in them).
fn clock_ticks() -> i64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as i64
    } else {
        100
    }
}

/// A child that has ended and is not reaped, if any (`waitid` with
/// `WNOWAIT`: it stays a zombie, its pid its own).
pub(crate) fn peek_ended() -> Option<Pid> {
    use nix::sys::wait::{waitid, Id};
    loop {
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT) {
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => return Some(pid),
            Err(Errno::EINTR) => {}
            _ => return None,
        }
    }
}

/// Waits until child `pid` has ended, reaping nothing (`WNOWAIT`); whether
/// it did within `timeout`.
pub(crate) fn wait_ended(pid: Pid, timeout: Duration) -> bool {
    use nix::sys::wait::{waitid, Id};
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_micros(20);
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return true,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(2));
    }
}

/// Kills every process of the scenario but this one and waits until each
/// is dead, reaping none: the zombies keep their pids (orphans come to us,
/// unreaped too), and are returned. The descendants are walked from
/// `/proc/self`, and each is killed by its pid or, as PID 1 of the
/// scenario's PID namespace, with `kill(-1)` (the `/proc` mount may be the
/// host's, whose numbers are not ours).
///
/// # Errors
/// `/proc` cannot be read (the look would be blind), or processes
/// survived SIGKILL for 5 s.
pub(crate) fn kill_without_reaping(pid_namespace: bool) -> Result<Vec<Unreaped>, String> {
    stop_all(pid_namespace)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if pid_namespace {
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        }
        let tree = descendants_of_self()?;
        let living: Vec<i32> = tree.iter().copied().filter(|&p| !is_dead(p)).collect();
        if living.is_empty() {
            return tree.into_iter().map(unreaped).collect();
        }
        if !pid_namespace {
            for &p in &living {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        if Instant::now() >= deadline {
            return Err("processes of the scenario survived SIGKILL for 5 s (uninterruptible sleep?)".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Stops every process of the scenario (SIGSTOP) and waits, 50 ms at
/// most (one in `D` state or mid-`exec` may take longer: then it is killed
/// running), until each is stopped or dead, before any is killed: a process
/// that a SIGKILL wakes in `wait` could otherwise reap a child that died
/// first (a tracer its tracee), and that child's pid would be gone before
/// it is looked at; a stopped one dies without running again.
///
/// # Errors
/// Our own `children` files cannot be read.
fn stop_all(pid_namespace: bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(50);
    loop {
        if pid_namespace {
            let _ = kill(Pid::from_raw(-1), Signal::SIGSTOP);
        }
        let running: Vec<i32> = descendants_of_self()?
            .into_iter()
            .filter(|&p| state_of(p).is_some_and(|s| !matches!(s, 'T' | 't' | 'Z' | 'X')))
            .collect();
        if running.is_empty() || Instant::now() >= deadline {
            return Ok(());
        }
        if !pid_namespace {
            for &p in &running {
                let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
            }
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Teardown without the coordinator, host mode without a PID namespace:
/// everything is stopped, then every process that is not one of `actors`
/// (programs, their tracers, what they left) is killed, and the actors
/// that were tracing (the parents of a `shm-trace`) are continued: what
/// their tracers reported and they have not journaled yet is still in the
/// pipe, for them to read and journal. Returns those actors' pids.
///
/// # Errors
/// Our own `children` files cannot be read.
pub(crate) fn kill_all_but_actors(actors: &[i32]) -> Result<Vec<i32>, String> {
    stop_all(false)?;
    let others: Vec<i32> = descendants_of_self()?.into_iter().filter(|p| !actors.contains(p)).collect();
    let tracing: Vec<i32> = others.iter().filter_map(|&p| tracer_parent(p)).filter(|a| actors.contains(a)).collect();
    for &p in &others {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_millis(200);
    while others.iter().any(|&p| !is_dead(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
    for &a in &tracing {
        let _ = kill(Pid::from_raw(a), Signal::SIGCONT);
    }
    Ok(tracing)
}

/// The parent of `proc_pid` if it is a program's tracer (`shm-trace`).
fn tracer_parent(proc_pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{proc_pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    if &stat[open + 1..close] != "shm-trace" {
        return None;
    }
    stat[close + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// The state letter of `/proc/PID/stat` (`None`: gone).
fn state_of(proc_pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{proc_pid}/stat")).ok()?;
    stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).and_then(|s| s.chars().next())
}

/// Whether `/proc/PID` shows a zombie (or nothing: it is gone).
fn is_dead(proc_pid: i32) -> bool {
    state_of(proc_pid).is_none_or(|s| matches!(s, 'Z' | 'X'))
}

/// Every descendant of this process as the `/proc` mount numbers them.
///
/// # Errors
/// Our own `children` files cannot be read.
fn descendants_of_self() -> Result<Vec<i32>, String> {
    let me = std::fs::read_link("/proc/self").map_err(|e| format!("/proc/self: {e}"))?;
    let me: i32 = me.to_str().and_then(|s| s.parse().ok()).ok_or("/proc/self: not a pid")?;
    descendants_of(me)
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
