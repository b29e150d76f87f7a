//! The one guarded `fork` of the runner: every process the runner makes
//! (supervisors, actors, forked actors, the namespace probe) comes from
//! [`fork_guarded`] or [`clone_guarded`], which
//!
//! - refuse, fail-closed, in a multi-threaded process (a thread count that
//!   cannot be read is an error, not "one thread");
//! - name the child (`PR_SET_NAME`, at most 15 bytes);
//! - close every fd of the child but 0, 1, 2 and a keep-list
//!   (`close_range` around it), so each process holds only its own pipes and
//!   the cost of a fork does not grow with the depth of a chain of forks;
//! - change credentials first, then set the death signal
//!   (`PR_SET_PDEATHSIG`: a credential change clears it), then re-check the
//!   parent with `getppid()` (a parent that died before the death signal was
//!   armed would never send it);
//! - give the child the signal mask it would have had (the coordinator
//!   blocks its interrupts, `runner::interrupt`); a supervisor
//!   keeps them blocked: it ends by its life pipe and death signal, never
//!   by a signal meant for the run (a terminal's SIGINT to the whole
//!   process group, the SIGHUP of an orphaned group with a stopped member);
//! - run the child's body under `catch_unwind`: a panic never unwinds into
//!   the parent's copied stack; its message goes to the caller's panic sink
//!   (a pipe the parent reads) and to stderr, and the child `_exit`s.

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nix::unistd::{Gid, Pid, Uid};

/// Exit status of a child whose body panicked.
pub const PANIC_STATUS: i32 = 101;
/// Exit status of a child whose parent died before it was armed.
pub const ORPHAN_STATUS: i32 = 70;
/// Exit status of a child that could not take its credentials.
pub const CREDENTIALS_STATUS: i32 = 71;

/// Why a fork was refused or failed, or a scenario does not fit the
/// machine's process and file limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForkError {
    /// This process has more than one thread.
    #[error("refusing to fork: this process has {0} threads (a child of a multi-threaded process may inherit a lock held by a thread that is not copied); run the `shm-harness` binary from a single-threaded process")]
    MultiThreaded(usize),
    /// The thread count could not be read.
    #[error("refusing to fork: cannot read the thread count from /proc/self/status ({0}); mount /proc")]
    UnknownThreads(ThreadCountError),
    /// The supervisor would need more file descriptors than `RLIMIT_NOFILE`.
    #[error("{processes} processes need about {need} file descriptors in the supervisor, and RLIMIT_NOFILE is {limit} (hard limit); raise it (ulimit -Hn) or use fewer processes")]
    FdLimit {
        /// The scenario's processes.
        processes: usize,
        /// Descriptors needed.
        need: usize,
        /// The limit in force (raised to the hard one).
        limit: u64,
    },
    /// The processes would exceed this user's `RLIMIT_NPROC`.
    #[error(
        "{processes} processes, with the {running} this user already runs, exceed RLIMIT_NPROC {limit} (ulimit -u)"
    )]
    ProcessLimit {
        /// The scenario's processes.
        processes: usize,
        /// Processes this user runs already.
        running: usize,
        /// The soft limit.
        limit: u64,
    },
    /// `/proc/sys/kernel/pid_max` could not be read.
    #[error("/proc/sys/kernel/pid_max: {0}; mount /proc")]
    PidMaxUnreadable(nix::errno::Errno),
    /// `/proc/sys/kernel/pid_max` holds no number (its text).
    #[error("/proc/sys/kernel/pid_max: not a number: {0:?}")]
    PidMaxGarbled(String),
    /// The processes would exceed `kernel.pid_max`.
    #[error("{processes} processes exceed kernel.pid_max {pid_max}")]
    PidMax {
        /// The scenario's processes.
        processes: usize,
        /// The system's pid limit.
        pid_max: usize,
    },
    /// The system call failed.
    #[error("{call}: {errno}{hint}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The kernel's answer.
        errno: nix::errno::Errno,
        /// What to do about it.
        hint: String,
    },
}

/// The message, for callers whose errors are still text (`?` in the
/// actor's and the supervisor's string-error functions, and in tests).
impl From<ForkError> for String {
    fn from(e: ForkError) -> String {
        e.to_string()
    }
}

/// Why the thread count of this process is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThreadCountError {
    /// `/proc/self/status` cannot be read.
    #[error("/proc/self/status: {0}")]
    Read(nix::errno::Errno),
    /// It has no `Threads:` line with a number.
    #[error("/proc/self/status has no Threads: line")]
    NoThreadsLine,
}

/// The number of threads of this process, from `/proc/self/status`.
///
/// # Errors
/// [`ThreadCountError`] when the file cannot be read or has no `Threads:` line.
pub fn thread_count() -> Result<usize, ThreadCountError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| ThreadCountError::Read(io_errno(&e)))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").and_then(|v| v.trim().parse().ok()))
        .ok_or(ThreadCountError::NoThreadsLine)
}

/// The errno of an I/O error (`EIO` for one that carries none).
fn io_errno(e: &std::io::Error) -> nix::errno::Errno {
    e.raw_os_error().map_or(nix::errno::Errno::EIO, nix::errno::Errno::from_raw)
}

/// Set by the runner's own children (supervisors, actors): a process forked
/// from a single-threaded one has one thread, and the runner's code starts
/// none, so they need not read `/proc` again before each fork.
static FORKED_BY_HELPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Refuses unless this process has exactly one thread (read from
/// `/proc/self/status`, except in the runner's own supervisors and actors,
/// which have one thread by construction: forked from a single-threaded
/// process, they run only the runner's code, which starts no thread).
///
/// # Errors
/// [`ForkError::MultiThreaded`] or [`ForkError::UnknownThreads`].
pub fn ensure_single_threaded() -> Result<(), ForkError> {
    if FORKED_BY_HELPER.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    match thread_count() {
        Ok(1) => Ok(()),
        Ok(n) => Err(ForkError::MultiThreaded(n)),
        Err(e) => Err(ForkError::UnknownThreads(e)),
    }
}

/// Marks this process as one of the runner's own children (a supervisor or
/// an actor): forked from a single-threaded process by the helper, running
/// only the runner's code, which starts no thread.
pub(crate) fn mark_runner_process() {
    FORKED_BY_HELPER.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// What the child is and keeps.
#[derive(Debug, Clone, Default)]
pub struct Child<'a> {
    /// Its name (`/proc/PID/comm`), truncated to 15 bytes.
    pub name: &'a str,
    /// Fds it keeps besides 0, 1 and 2.
    pub keep: &'a [RawFd],
    /// Signal it gets when this process dies (`None`: none).
    pub death_signal: Option<i32>,
    /// Group id to take (with no supplementary groups).
    pub gid: Option<u32>,
    /// User id to take (supplementary groups dropped).
    pub uid: Option<u32>,
    /// Where a panic's message goes (besides stderr), as a framed
    /// [`crate::runner::wire::FromActor::Panic`]-style string chosen by the caller.
    pub panic_fd: Option<RawFd>,
    /// Keeps the interrupts the coordinator blocked (a supervisor: it ends
    /// by its life pipe or death signal, never by a signal meant for the
    /// run, nor by the SIGHUP the kernel sends an orphaned process group
    /// with a stopped member). Its own children get them unblocked.
    pub interrupts_blocked: bool,
}

/// The clone flags of [`clone_guarded`] beyond `fork`'s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// `CLONE_NEWPID`: the child is PID 1 of a new PID namespace.
    pub pid: bool,
    /// `CLONE_NEWIPC`: the child is in a new IPC namespace.
    pub ipc: bool,
    /// `CLONE_NEWUSER`: the child is root of a new user namespace (for an
    /// unprivileged caller); it maps its uid and gid itself.
    pub user: bool,
}

/// `fork()`—Runs `body` in a new child process and returns the child's pid.
///
/// The child is set up as [`Child`] says, runs `body`, and `_exit`s with its
/// return value (or [`PANIC_STATUS`] if it panicked). It never returns here.
///
/// # Errors
/// [`ForkError`] if this process is multi-threaded or `fork` fails.
pub fn fork_guarded(child: &Child<'_>, body: impl FnOnce() -> i32) -> Result<Pid, ForkError> {
    clone_guarded(child, Namespaces::default(), body)
}

/// `clone(flags|SIGCHLD)`—As [`fork_guarded`], with the child in new
/// namespaces (a raw `clone` without `CLONE_VM`: the child gets a copy of
/// this process, as with `fork`).
///
/// # Errors
/// [`ForkError`] if this process is multi-threaded or `clone` fails.
pub fn clone_guarded(child: &Child<'_>, ns: Namespaces, body: impl FnOnce() -> i32) -> Result<Pid, ForkError> {
    ensure_single_threaded()?;
    let parent = Pid::this();
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    let pid = if ns == Namespaces::default() {
        // SAFETY: this process has one thread (checked above), so the child
        // inherits no lock held by another thread; the child below never
        // returns into the caller (it `_exit`s), and a panic is caught.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => 0,
            Ok(nix::unistd::ForkResult::Parent { child }) => child.as_raw(),
            Err(errno) => return Err(sys_error("fork", errno)),
        }
    } else {
        let mut flags = libc::SIGCHLD as libc::c_ulong;
        if ns.pid {
            flags |= libc::CLONE_NEWPID as libc::c_ulong;
        }
        if ns.ipc {
            flags |= libc::CLONE_NEWIPC as libc::c_ulong;
        }
        if ns.user {
            flags |= libc::CLONE_NEWUSER as libc::c_ulong;
        }
        // SAFETY: a raw clone without CLONE_VM and with a null stack is a
        // fork: the child runs on a copy of this stack. This process has one
        // thread (checked above); the child never returns into the caller.
        // (glibc's cached thread id in the child is stale; nothing the
        // runner uses depends on it: Rust's locks are futexes, and raise()
        // asks the kernel for the tid.)
        // (s390x takes the stack first and the flags second; everywhere
        // else the flags come first. The other arguments are all zero.)
        #[cfg(target_arch = "s390x")]
        // SAFETY: a raw clone without a new stack is a fork (see above).
        let r = unsafe { libc::syscall(libc::SYS_clone, 0usize, flags, 0usize, 0usize, 0usize) };
        #[cfg(not(target_arch = "s390x"))]
        // SAFETY: a raw clone without a new stack is a fork (see above).
        let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
        if r < 0 {
            return Err(sys_error("clone", nix::errno::Errno::last()));
        }
        r as i32
    };
    if pid > 0 {
        return Ok(Pid::from_raw(pid));
    }
    // The child.
    if !child.interrupts_blocked {
        crate::runner::interrupt::restore_in_child();
    }
    if ns.user {
        let ok = std::fs::write("/proc/self/setgroups", "deny").is_ok()
            && std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).is_ok()
            && std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).is_ok();
        if !ok {
            exit_now(CREDENTIALS_STATUS);
        }
    }
    set_name(child.name);
    close_all_but(child.keep, child.panic_fd);
    if let Some(g) = child.gid {
        if nix::unistd::setgroups(&[]).is_err() || nix::unistd::setgid(Gid::from_raw(g)).is_err() {
            exit_now(CREDENTIALS_STATUS);
        }
    }
    if let Some(u) = child.uid {
        if child.gid.is_none() {
            let _ = nix::unistd::setgroups(&[]);
        }
        if nix::unistd::setuid(Uid::from_raw(u)).is_err() {
            exit_now(CREDENTIALS_STATUS);
        }
    }
    if child.uid.is_some() || child.gid.is_some() {
        // SAFETY: prctl with integer arguments. A credential change makes
        // the process non-dumpable, and then its own children (a host-mode
        // tracer and the program it seizes, both of this uid) could not be
        // traced: PTRACE_SEIZE would fail with EPERM.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    }
    if let Some(sig) = child.death_signal {
        // SAFETY: prctl with integer arguments. After the credential
        // changes above, which would clear it.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) };
        // The parent of a child in a new PID namespace shows as 0 there.
        let expected = if ns.pid { 0 } else { parent.as_raw() };
        if nix::unistd::getppid().as_raw() != expected {
            exit_now(ORPHAN_STATUS);
        }
    }
    let code = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(code) => code,
        Err(panic) => {
            let what = panic_message(&*panic);
            let msg = format!("process {} panicked: {what}; this is a harness bug", child.name);
            if let Some(fd) = child.panic_fd {
                write_panic(fd, &msg);
            }
            PANIC_STATUS
        }
    };
    exit_now(code)
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Sends a panic's message as a framed `FromActor::Panic` on `fd`.
fn write_panic(fd: RawFd, msg: &str) {
    // SAFETY: the fd was kept open for this purpose and is not closed while
    // this borrow lives (the process ends right after).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = crate::runner::wire::send(fd, &crate::runner::wire::FromActor::Panic(msg.to_string()));
}

/// Ends the process at once: no destructors, no atexit handlers, no stdio
/// flush; the kernel detaches every attachment.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// `prctl(PR_SET_NAME)`—Names this process (at most 15 bytes are kept).
pub fn set_name(name: &str) {
    if name.is_empty() {
        return;
    }
    let mut buf = [0u8; 16];
    let bytes = name.as_bytes();
    let n = bytes.len().min(15);
    buf[..n].copy_from_slice(&bytes[..n]);
    // SAFETY: a NUL-terminated 16-byte buffer that outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr(), 0, 0, 0) };
}

/// `close_range(2)`—Closes every fd but 0, 1, 2, `keep` and `extra`.
fn close_all_but(keep: &[RawFd], extra: Option<RawFd>) {
    let mut keep: Vec<RawFd> = keep.iter().copied().chain(extra).filter(|&f| f > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from: u32 = 3;
    for &k in &keep {
        let k = k as u32;
        if k > from {
            close_range(from, k - 1);
        }
        from = k + 1;
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range closes fds only; the fds it closes are owned by
    // objects of the parent's copied state that this child never uses or
    // drops (it ends with `_exit`).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if r == 0 {
        return;
    }
    // Before Linux 5.9: close what is open, one at a time.
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let open: Vec<u32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
        for fd in open.into_iter().filter(|&fd| fd >= first && fd <= last) {
            // SAFETY: as above.
            unsafe { libc::close(fd as i32) };
        }
    }
}

fn sys_error(call: &'static str, errno: nix::errno::Errno) -> ForkError {
    let hint = match errno {
        nix::errno::Errno::EAGAIN => {
            "; the process limit is reached (RLIMIT_NPROC, kernel.pid_max or kernel.threads-max)".to_string()
        }
        nix::errno::Errno::ENOMEM => "; out of memory, or the PID namespace's init is gone".to_string(),
        nix::errno::Errno::EPERM | nix::errno::Errno::EINVAL if call == "clone" => {
            "; the kernel refused a new namespace (run as root, or allow unprivileged user namespaces)".to_string()
        }
        _ => String::new(),
    };
    ForkError::Sys { call, errno, hint }
}

/// Makes the heap grow in one large step, once, in this process.
///
/// Every process of a chain of `fork` steps is a fork of the one before, and
/// the kernel links each anonymous mapping of a child to the `anon_vma` of
/// every ancestor. If each generation grew the heap by `brk` a little, each
/// would add a heap mapping of its own (mappings of different ancestry do not
/// merge), and the cost of a fork would grow with the square of the depth
/// (measured: `anon_vma_clone` was 70% of a 200-deep chain's time). With a
/// 64 MiB top pad (address space only; pages cost nothing until touched)
/// the heap is one mapping made here, and the processes forked later stay
/// within it.
pub fn prepare_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes glibc's allocator; called while this process
    // has one thread.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
        // Grow the heap now, while this is the only process.
        let p = libc::malloc(1 << 20);
        libc::free(p);
    }
}

/// Raises the soft fd limit to the hard one; returns the limit now in force.
// `rlim_t` is 32 bits on i686: the widening is the identity on 64-bit targets.
#[allow(clippy::useless_conversion)]
pub fn raise_fd_limit() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit write/read the struct on this stack.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit { rlim_cur: rl.rlim_max, rlim_max: rl.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    u64::from(rl.rlim_cur)
}

/// Checks before any process is made that a scenario of `processes`
/// processes needing `fds` descriptors in its supervisor fits this
/// machine's limits; the error names the limit.
///
/// # Errors
/// [`ForkError::FdLimit`], [`ForkError::ProcessLimit`],
/// [`ForkError::PidMax`], [`ForkError::PidMaxUnreadable`] or
/// [`ForkError::PidMaxGarbled`].
// `rlim_t` is 32 bits on i686: the widening is the identity on 64-bit targets.
#[allow(clippy::useless_conversion)]
pub fn check_limits(processes: usize, fds: usize) -> Result<(), ForkError> {
    let nofile = raise_fd_limit();
    if fds as u64 + 64 > nofile {
        return Err(ForkError::FdLimit { processes, need: fds + 64, limit: nofile });
    }
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    let root = nix::unistd::Uid::effective().is_root();
    // SAFETY: getrlimit writes the struct on this stack.
    if !root && unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut rl) } == 0 && rl.rlim_cur != libc::RLIM_INFINITY {
        let running = count_own_processes();
        if (processes + running) as u64 > u64::from(rl.rlim_cur) {
            return Err(ForkError::ProcessLimit { processes, running, limit: u64::from(rl.rlim_cur) });
        }
    }
    let text =
        std::fs::read_to_string("/proc/sys/kernel/pid_max").map_err(|e| ForkError::PidMaxUnreadable(io_errno(&e)))?;
    let pid_max: usize = text.trim().parse().map_err(|_| ForkError::PidMaxGarbled(text.trim().to_string()))?;
    if processes + 16 > pid_max {
        return Err(ForkError::PidMax { processes, pid_max });
    }
    Ok(())
}

fn count_own_processes() -> usize {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::Uid::current().as_raw();
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
        .count()
}
