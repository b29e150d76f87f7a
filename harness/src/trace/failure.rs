//! Why the tracer process T gave up.

use libc::{c_int, pid_t};
use nix::errno::Errno;

use crate::sysv;

/// Why the tracer gave up: sent to the caller as the text of an
/// [`Event::Failed`](super::Event::Failed), after which T exits and every tracee dies with it.
#[derive(Debug, thiserror::Error)]
pub(super) enum TracerFailure {
    /// The program could not be forked.
    #[error("fork of the program: {0}")]
    ForkProgram(Errno),
    /// The caller's fds could not be closed in T.
    #[error("closing the caller's fds in the tracer: {0}")]
    CloseFds(Errno),
    /// Waiting for the program's self-stop failed.
    #[error("waitpid(program): {0}")]
    WaitProgram(Errno),
    /// Waiting for the next stop of any tracee failed.
    #[error("waitpid(-1, __WALL): {0}")]
    WaitAny(Errno),
    /// `PTRACE_SEIZE` of the program was refused.
    #[error("ptrace(PTRACE_SEIZE, {pid}): {errno}")]
    Seize {
        /// The program.
        pid: pid_t,
        /// The kernel's answer.
        errno: Errno,
    },
    /// The seized program could not be woken with `SIGCONT`.
    #[error("kill({pid}, SIGCONT): {errno}")]
    Continue {
        /// The program.
        pid: pid_t,
        /// The kernel's answer.
        errno: Errno,
    },
    /// Resuming a tracee failed (other than `ESRCH`).
    #[error("ptrace(request {request:#x}, {tid}, signal {signal}): {errno}")]
    Resume {
        /// `PTRACE_CONT`, `PTRACE_SYSCALL` or `PTRACE_LISTEN`.
        request: libc::c_uint,
        /// The tracee.
        tid: pid_t,
        /// The signal delivered.
        signal: c_int,
        /// The kernel's answer.
        errno: Errno,
    },
    /// `PTRACE_GET_SYSCALL_INFO` failed (other than `ESRCH`).
    #[error("ptrace(PTRACE_GET_SYSCALL_INFO, {tid}) at {at}: {errno}")]
    SyscallInfo {
        /// The tracee.
        tid: pid_t,
        /// `a seccomp stop` or `a syscall exit`.
        at: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },
    /// A trapped call's exit stop showed something else.
    #[error("tracee {tid}: expected a syscall-exit stop, got {got}")]
    NotAtExit {
        /// The tracee.
        tid: pid_t,
        /// What `PTRACE_GET_SYSCALL_INFO` showed.
        got: String,
    },
    /// T's own `/proc/self/maps` could not be read.
    #[error("tracer: {0}")]
    Maps(sysv::Error),
    /// An attachment T inherited from the caller could not be detached.
    #[error("tracer: shmdt({addr:#x}) of an inherited attachment: {errno}")]
    Shmdt {
        /// Its address.
        addr: usize,
        /// The kernel's answer.
        errno: Errno,
    },
}
