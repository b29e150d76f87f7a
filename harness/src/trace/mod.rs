//! Seeing every SysV segment an external program's process tree creates,
//! and keeping it off segments that are not its caller's: a ptrace tracer
//! with a seccomp filter that stops only at `shmget`, `shmat` and the
//! `shmctl` commands that are not pure reads.
//!
//! [`spawn`] forks a tracer process T (a child of the caller, killed with
//! it by `PR_SET_PDEATHSIG`). T forks the program P, which sets up its
//! stdio and directory, stops itself, is seized by T
//! (`PTRACE_SEIZE` with `PTRACE_O_TRACESECCOMP | TRACEFORK | TRACEVFORK |
//! TRACECLONE | TRACEEXEC | EXITKILL`), installs the filter and execs. Every
//! descendant of P is traced, and every tracee dies if T dies.
//!
//! At a trapped `shmget`, T lets the call run to its syscall-exit stop,
//! reads the return value (`PTRACE_GET_SYSCALL_INFO`, Linux 5.3+, the same on
//! every architecture), `IPC_STAT`s the returned id while the tracee is still
//! stopped, and reports [`Event::Created`] only if the segment's creator pid
//! is the tracee's thread-group id (and the call had `IPC_CREAT` or
//! `IPC_PRIVATE`, and the segment's ctime is not older than the call): a
//! `shmget` that opened someone else's segment is no creation. The event is
//! written to the pipe *before* the tracee continues, so a program can never
//! have seen a creation that the caller was not told about.
//!
//! With a [`Ledger`] ([`Program::guard`]), T also refuses, before the
//! kernel sees it, a `shmat` or a changing `shmctl` (`IPC_RMID`, `IPC_SET`,
//! `SHM_LOCK`, `SHM_UNLOCK`, ...) on a segment the ledger does not give the
//! caller and the tree did not create, and makes a `shmget` that opened
//! such a segment return `EACCES` instead of its id; the program gets
//! `EACCES`, the caller [`Event::Refused`] (see [`guard`](self)'s module).
//! Reads (`IPC_STAT`, `SHM_STAT`, `IPC_INFO`, ..., `/proc`) are never stopped.
//!
//! The caller reads the events with [`Tracer::recv`] and ends everything with
//! [`Tracer::stop`]: the program tree dies *before* the tracer. T, asked by
//! SIGTERM, SIGKILLs every tracee, reports what each did as it dies, then
//! sends [`Event::AllExited`] and exits; the caller reads to that event.
//!
//! A tracee may die inside a trapped `shmget` (SIGKILL, another thread's
//! `exit_group`: no syscall-exit stop comes), or be killed before its
//! result is read, after the kernel created a segment. T settles such a
//! call before it reaps the tracee (it peeks at every exit with
//! `waitid(WNOWAIT)`): the unreaped tracee still holds its thread-group id,
//! so a segment in `/proc/sysvipc/shm` with that creator pid, the tracee's
//! effective uid as creator uid, the key and size asked for and a ctime
//! not before the call is its creation, reported as [`Event::Created`]. If
//! T cannot read what it needs, it reports [`Event::Unverified`] with
//! `shmid` -1 (the caller fails closed).
//!
//! [`Tracer::kill_all`] (SIGKILL of T; `EXITKILL` kills the tracees) is the
//! last resort, when T does not drain. After it returns, every tracee has a SIGKILL pending
//! and none can get past a trapped call any more (the kernel skips a system
//! call whose seccomp stop ends in a fatal signal), so no creation can
//! happen unreported after it; the tracees themselves are reaped by their
//! new parent shortly after.
//!
//! # Wiring into a runner
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use shm_harness::trace::{self, Event, Program, TraceError};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! trace::available()?; // else: fall back, printing the reason
//! let program = Program::new(&["sh", "-c", "ipcmk -M 100"], Path::new("."))?;
//! let mut tracer = trace::spawn(program)?; // from a single-threaded process
//! loop {
//!     match tracer.recv(Duration::from_secs(30)) {
//!         // Record (shmid, cpid, ctime) durably *before* anything else.
//!         Ok(Event::Created { shmid, cpid, ctime, .. }) => println!("record {shmid} {cpid} {ctime}"),
//!         Ok(Event::Changed { shmid, cpid, ctime, .. }) => println!("update {shmid} {cpid} {ctime}"),
//!         Ok(Event::Unverified { .. } | Event::NotStarted { .. } | Event::Failed(_)) => {
//!             tracer.kill_all()?; // fail closed: the run cannot be verified
//!             break;
//!         }
//!         Ok(Event::AllExited) => break,
//!         Ok(_) => {}
//!         Err(TraceError::Timeout(_)) => {
//!             // A step timeout: the tree dies first; record what T reports
//!             // as it dies (an Err: T did not drain, fail closed).
//!             tracer.stop(Duration::from_secs(2), &mut |e| println!("record {e:?}"))?;
//!             break;
//!         }
//!         Err(e) => return Err(e.into()), // T died or garbage: fail closed
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The events are written to a pipe of the kernel's default size; while
//! nobody reads it, a full pipe blocks T, and every tracee waits at its next
//! ptrace stop (a trapped call, a fork, a signal): back-pressure, never a
//! lost event. A program's stdout and
//! stderr are the caller's to drain, as with `std::process::Command`.
//!
//! # Caveats
//! - Unprivileged callers (without `CAP_SYS_ADMIN` in their user namespace)
//!   need `PR_SET_NO_NEW_PRIVS` for the filter, so setuid and file-capability
//!   programs run without their privileges when traced that way.
//! - A segment created in an IPC namespace other than T's (the program
//!   `unshare`s one) is not reported: its identity is not visible to T.
//! - A system call under an ABI the filter does not know (see
//!   [`filter`](self)) kills the process that made it.
//! - If T itself is killed (SIGKILL, not [`Tracer::stop`]) between the
//!   kernel creating a segment and T writing the event, the tracee dies
//!   before returning from `shmget`: the program never saw the id, but the
//!   segment exists unreported. [`Tracer::stop`] ends the tracees first.
//! - T reads `/proc/TID` with the pids it sees: in a PID namespace whose
//!   `/proc` is not its own (the host's mount), every creation comes out
//!   [`Event::Unverified`] (fail closed) rather than misread.
//! - T detaches the SysV attachments it inherits from the caller at fork,
//!   so a long-lived T does not raise their `nattch`.
//! - The same identity may be reported twice (a `shmget` with `IPC_CREAT`
//!   of the tracee's own existing segment); callers keep a set.

#![allow(unsafe_code)] // opts in: ptrace, seccomp and waitpid on raw pids

mod event;
mod failure;
mod filter;
mod guard;
mod pending;
mod probe;
mod raw;
mod stream;
mod tracee;
mod tracer;

pub(crate) use pending::now_secs;

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;

pub use event::{DecodeError, Decoder, Event, Exit, GuardedCall, Refused, Why, MAX_FRAME};
pub use filter::Traps;
pub use guard::{Ledger, Owns};
pub use probe::{available, Unavailable};
pub use tracee::Step;

use crate::sysv;
use tracer::TracerFailure;

/// Why tracing could not start, or what went wrong while reading events.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// This architecture has no system call table in the filter.
    #[error("trace: no seccomp filter for this architecture ({arch}); tracing is unavailable here, run in a private IPC namespace instead")]
    UnsupportedArch {
        /// `std::env::consts::ARCH`.
        arch: &'static str,
    },
    /// The caller has more than one thread (fork would copy a broken state).
    #[error("trace: spawn needs a single-threaded caller, but {path} says Threads: {threads}; call it from the forked actor, not from a threaded process")]
    MultiThreaded {
        /// `/proc/self/status`.
        path: &'static str,
        /// The count read.
        threads: u64,
    },
    /// `/proc/self/status` could not be read or parsed (fail closed).
    #[error("trace: cannot read {what} from /proc/self/status: {message}; /proc must be mounted and readable")]
    Status {
        /// The field.
        what: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The caller ignores `SIGCHLD` (or set `SA_NOCLDWAIT`): the kernel
    /// would reap T by itself, and T's pid could be reused before
    /// [`Tracer::kill_all`] signals it.
    #[error("trace: the caller ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT), so the tracer's pid could be reused before it is killed; restore SIGCHLD to SIG_DFL before spawning")]
    ChildrenAutoReaped,
    /// An argument cannot be passed to `execve` (an interior NUL byte).
    #[error("trace: argument {index} contains a NUL byte")]
    NulInArgument {
        /// Its index in argv.
        index: usize,
    },
    /// `argv` is empty.
    #[error("trace: no program given (empty argv)")]
    NoProgram,
    /// A system call of the caller failed.
    #[error("trace: {call}: {errno}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },
    /// No event within the timeout.
    #[error("trace: no event within {0:?}")]
    Timeout(Duration),
    /// The stream ended properly ([`Event::AllExited`] or [`Event::Failed`]
    /// was already returned); no more events will come.
    #[error("trace: the tracer has ended; no more events")]
    Ended,
    /// The pipe closed without a final event: T died (killed, or crashed).
    #[error("trace: the tracer exited without a final event (killed?); its tracees were killed with it")]
    Vanished,
    /// Bytes on the pipe are not an event.
    #[error("trace: garbage on the event pipe: {0}")]
    Garbage(#[from] DecodeError),
}

/// Where one of the program's fds 0, 1, 2 comes from.
#[derive(Debug)]
pub enum Stdio {
    /// `/dev/null`.
    Null,
    /// The caller's own fd of that number.
    Inherit,
    /// This fd (e.g. a pipe's write end; the caller drains the read end).
    Fd(OwnedFd),
}

/// The program to trace.
#[derive(Debug)]
pub struct Program {
    argv: Vec<CString>,
    dir: CString,
    stdio: [Stdio; 3],
    traps: Traps,
    ledger: Option<Ledger>,
}

impl Program {
    /// `argv[0]` (searched in `PATH`) with its arguments, run in `dir`,
    /// with all stdio on `/dev/null`.
    ///
    /// # Errors
    /// [`TraceError::NoProgram`], [`TraceError::NulInArgument`].
    pub fn new<S: AsRef<OsStr>>(argv: &[S], dir: &Path) -> Result<Program, TraceError> {
        if argv.is_empty() {
            return Err(TraceError::NoProgram);
        }
        let argv = argv
            .iter()
            .enumerate()
            .map(|(index, a)| CString::new(a.as_ref().as_bytes()).map_err(|_| TraceError::NulInArgument { index }))
            .collect::<Result<Vec<_>, _>>()?;
        let dir =
            CString::new(dir.as_os_str().as_bytes()).map_err(|_| TraceError::NulInArgument { index: usize::MAX })?;
        Ok(Program { argv, dir, stdio: [Stdio::Null, Stdio::Null, Stdio::Null], traps: Traps::ShmCalls, ledger: None })
    }

    /// Sets where fd 0, 1 or 2 comes from.
    pub fn stdio(mut self, fd: usize, from: Stdio) -> Program {
        self.stdio[fd] = from;
        self
    }

    /// Guards the tree: a call that would change or open a segment the
    /// ledger does not give the caller (nor the tree created) is refused
    /// with `EACCES` and reported as [`Event::Refused`] (see the module
    /// docs). Without a ledger the tracer only reports.
    pub fn guard(mut self, ledger: Ledger) -> Program {
        self.ledger = Some(ledger);
        self
    }

    /// Test-only control: what the filter traps ([`Traps::Nothing`] makes
    /// the tracer blind, to prove that an oracle built on it can fail).
    #[doc(hidden)]
    pub fn traps(mut self, traps: Traps) -> Program {
        self.traps = traps;
        self
    }
}

/// A running tracer and its event stream. Dropping it kills T and with it
/// every tracee.
#[derive(Debug)]
pub struct Tracer {
    pid: libc::pid_t,
    events: OwnedFd,
    decoder: Decoder,
    ended: bool,
    eof: bool,
    reaped: bool,
}

/// Reads `Threads:` and the `CAP_SYS_ADMIN` bit of `CapEff:` from
/// `/proc/self/status`.
fn self_status() -> Result<(u64, bool), TraceError> {
    let text = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| TraceError::Status { what: "Threads", message: e.to_string() })?;
    let field = |name: &'static str, radix: u32| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), radix).ok())
            .ok_or(TraceError::Status { what: name, message: "missing or not a number".into() })
    };
    let threads = field("Threads:", 10)?;
    let cap_eff = field("CapEff:", 16)?;
    Ok((threads, cap_eff & (1 << raw::CAP_SYS_ADMIN) != 0))
}

/// Whether `SIGCHLD` is ignored or has `SA_NOCLDWAIT` (`sigaction` read).
fn children_auto_reaped() -> Result<bool, TraceError> {
    // SAFETY: reads the current action into a zeroed local; changes nothing.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads.
    if unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) } == -1 {
        return Err(TraceError::Sys { call: "sigaction(SIGCHLD)", errno: Errno::last() });
    }
    Ok(old.sa_sigaction == libc::SIG_IGN || old.sa_flags & libc::SA_NOCLDWAIT != 0)
}

fn sys<T>(call: &'static str, r: Result<T, Errno>) -> Result<T, TraceError> {
    r.map_err(|errno| TraceError::Sys { call, errno })
}

/// `shmdt`—Detaches every SysV segment mapped in this process (found in
/// `/proc/self/maps` by [`sysv::sysv_mappings`]).
///
/// # Errors
/// [`TracerFailure::Maps`]: `/proc/self/maps` cannot be read;
/// [`TracerFailure::Shmdt`]: a `shmdt` fails.
fn detach_inherited() -> Result<(), TracerFailure> {
    for m in sysv::sysv_mappings(None).map_err(TracerFailure::Maps)? {
        // SAFETY: `m.start` is the start of a SysV attachment of this
        // process (the kernel's own maps line); nothing in T uses that memory.
        unsafe { sysv::raw::shmdt(m.start as *const libc::c_void) }
            .map_err(|errno| TracerFailure::Shmdt { addr: m.start, errno })?;
    }
    Ok(())
}

/// Forks the tracer, which starts `program` traced; see the [module
/// docs](self).
///
/// # Errors
/// [`TraceError::UnsupportedArch`], [`TraceError::MultiThreaded`],
/// [`TraceError::ChildrenAutoReaped`],
/// [`TraceError::Status`] (fail closed), [`TraceError::Sys`] (pipe, open,
/// fork). Failures after the fork (ptrace refused, exec failed) arrive as
/// events: [`Event::Failed`], [`Event::NotStarted`].
pub fn spawn(program: Program) -> Result<Tracer, TraceError> {
    let privileged = check_caller()?;
    let prog = filter::program(program.traps);
    let mut argv: Vec<*const libc::c_char> = program.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut keep = Vec::new();
    let stdio = child_stdio(&program.stdio, &mut keep)?;
    let (events_read, events_write) = sys("pipe2(events)", nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC))?;
    let (errors_read, errors_write) = sys("pipe2(setup errors)", nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC))?;
    let caller = std::process::id() as libc::pid_t;
    let ledger = program.ledger;
    // SAFETY: the caller is single-threaded (checked above), so the child
    // may allocate; it never returns into the caller's code (`tracer_child`
    // ends in _exit).
    match unsafe { libc::fork() } {
        -1 => Err(TraceError::Sys { call: "fork(tracer)", errno: Errno::last() }),
        0 => {
            drop(events_read);
            let prepared = tracee::Prepared {
                argv: &argv,
                dir: &program.dir,
                stdio,
                no_new_privs: !privileged,
                filter: &prog,
                error_fd: errors_write.as_raw_fd(),
                // SAFETY: getpid has no preconditions.
                tracer: unsafe { libc::getpid() },
            };
            tracer_child(caller, &prepared, events_write.as_raw_fd(), errors_read.as_raw_fd(), ledger)
        }
        pid => {
            drop(events_write);
            drop(errors_write);
            drop(errors_read);
            Ok(Tracer { pid, events: events_read, decoder: Decoder::new(), ended: false, eof: false, reaped: false })
        }
    }
}

/// Whether this process can fork a tracer: a known ABI, one thread,
/// children not auto-reaped. Returns whether it is privileged (root-like:
/// the tracee then needs no `no_new_privs` for its filter).
///
/// # Errors
/// As [`spawn`], before anything is made.
fn check_caller() -> Result<bool, TraceError> {
    if filter::native_arch().is_none() {
        return Err(TraceError::UnsupportedArch { arch: std::env::consts::ARCH });
    }
    let (threads, privileged) = self_status()?;
    if threads != 1 {
        return Err(TraceError::MultiThreaded { path: "/proc/self/status", threads });
    }
    if children_auto_reaped()? {
        return Err(TraceError::ChildrenAutoReaped);
    }
    Ok(privileged)
}

/// The program's fds 0, 1 and 2 as the tracer will hand them over; a
/// `/dev/null` opened here is kept open in `keep` until the fork.
///
/// # Errors
/// [`TraceError::Sys`]: `/dev/null` cannot be opened.
fn child_stdio(stdio: &[Stdio; 3], keep: &mut Vec<OwnedFd>) -> Result<[RawFd; 3], TraceError> {
    let mut fds = [0 as RawFd; 3];
    for (i, s) in stdio.iter().enumerate() {
        fds[i] = match s {
            Stdio::Inherit => i as RawFd,
            Stdio::Fd(fd) => fd.as_raw_fd(),
            Stdio::Null => {
                let null = sys(
                    "open /dev/null",
                    nix::fcntl::open(
                        "/dev/null",
                        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    ),
                )?;
                // SAFETY: `open` just returned this fd, owned by nobody else.
                let null = unsafe { OwnedFd::from_raw_fd(null) };
                let raw = null.as_raw_fd();
                keep.push(null);
                raw
            }
        };
    }
    Ok(fds)
}

/// The tracer process T, right after the fork: dies with its caller,
/// named `shm-trace`, drops the caller's SysV attachments, then traces the
/// program ([`tracer::run`]). Never returns.
fn tracer_child(
    caller: libc::pid_t,
    prepared: &tracee::Prepared<'_>,
    events: RawFd,
    errors: RawFd,
    ledger: Option<Ledger>,
) -> ! {
    // SAFETY: getppid has no preconditions.
    if raw::kill_me_with_parent().is_err() || unsafe { libc::getppid() } != caller {
        // SAFETY: the caller is gone; end without touching its state.
        unsafe { libc::_exit(1) }
    }
    // Named for `ps` (and not mistaken for the caller it was forked from).
    // SAFETY: prctl reads a NUL-terminated name from a static string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"shm-trace".as_ptr(), 0, 0, 0) };
    // T and the program are copies of the caller: without this they would
    // hold the caller's SysV attachments (`nattch` one higher, `lpid`
    // theirs) for as long as T lives.
    if let Err(why) = detach_inherited() {
        let frame = Event::Failed(why.to_string()).encode();
        // SAFETY: writes a local buffer to our end of the event pipe, then ends T.
        unsafe {
            libc::write(events, frame.as_ptr().cast(), frame.len());
            libc::_exit(1)
        }
    }
    tracer::run(prepared, events, errors, ledger)
}
