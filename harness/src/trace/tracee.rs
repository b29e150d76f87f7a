//! The program's side, between `fork` (from the tracer) and `execve`.
//!
//! The tracee sets up its stdio and directory, stops itself so that the
//! tracer can seize it, installs the seccomp filter and execs. Everything it
//! needs was prepared before the fork; a failed step is reported to the
//! tracer on a close-on-exec pipe as `(step, errno)` and ends the process
//! with status 127.

#![allow(unsafe_code)] // opts in: ptrace, seccomp and waitpid on raw pids

use std::ffi::CString;
use std::os::fd::RawFd;

use libc::c_char;
use nix::errno::Errno;

use super::filter::Insn;
use super::raw;

/// The step of the tracee's setup that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    /// Checking that the tracer is still the parent (it died).
    Parent = 1,
    /// Setting up fds 0, 1 and 2.
    Stdio = 2,
    /// `chdir` to the program's directory.
    Chdir = 3,
    /// `prctl(PR_SET_NO_NEW_PRIVS)`.
    NoNewPrivs = 4,
    /// Stopping itself for the tracer.
    Stop = 5,
    /// Installing the seccomp filter.
    Filter = 6,
    /// `execvp`.
    Exec = 7,
}

impl Step {
    /// The step from its wire value.
    pub fn from_u8(v: u8) -> Option<Step> {
        Some(match v {
            1 => Step::Parent,
            2 => Step::Stdio,
            3 => Step::Chdir,
            4 => Step::NoNewPrivs,
            5 => Step::Stop,
            6 => Step::Filter,
            7 => Step::Exec,
            _ => return None,
        })
    }

    /// What the step does, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Step::Parent => "checking that the tracer is alive (getppid)",
            Step::Stdio => "setting up stdin/stdout/stderr (dup2)",
            Step::Chdir => "changing to the program's directory (chdir)",
            Step::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS)",
            Step::Stop => "stopping for the tracer (kill SIGSTOP)",
            Step::Filter => "installing the seccomp filter (seccomp(SECCOMP_SET_MODE_FILTER))",
            Step::Exec => "starting the program (execvp)",
        }
    }
}

/// Everything the tracee needs, prepared before the fork.
pub struct Prepared<'a> {
    /// `argv`, null-terminated, pointing into `_args`.
    pub argv: &'a [*const c_char],
    /// The directory.
    pub dir: &'a CString,
    /// The fds that become 0, 1 and 2.
    pub stdio: [RawFd; 3],
    /// Whether to set no-new-privs (not privileged).
    pub no_new_privs: bool,
    /// The compiled filter.
    pub filter: &'a [Insn],
    /// The write end of the setup-error pipe (close-on-exec).
    pub error_fd: RawFd,
    /// The tracer's pid (our parent).
    pub tracer: libc::pid_t,
}

/// Runs the tracee's setup and execs; never returns.
pub fn exec(p: &Prepared<'_>) -> ! {
    let fail = |step: Step, errno: Errno| -> ! {
        let mut msg = [0u8; 5];
        msg[0] = step as u8;
        msg[1..].copy_from_slice(&(errno as i32).to_le_bytes());
        // SAFETY: writes 5 bytes from a local buffer; then ends the process
        // without running the tracer's destructors.
        unsafe {
            libc::write(p.error_fd, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        }
    };
    if raw::kill_me_with_parent().is_err() {
        fail(Step::Parent, Errno::last());
    }
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != p.tracer {
        fail(Step::Parent, Errno::ESRCH);
    }
    if let Err(e) = setup_stdio(p.stdio) {
        fail(Step::Stdio, e);
    }
    // SAFETY: `dir` is a valid C string.
    if unsafe { libc::chdir(p.dir.as_ptr()) } == -1 {
        fail(Step::Chdir, Errno::last());
    }
    if p.no_new_privs {
        if let Err(e) = raw::set_no_new_privs() {
            fail(Step::NoNewPrivs, e);
        }
    }
    // Signals as an untraced program would get them from `Command`:
    // default SIGPIPE (the tracer ignores it) and nothing blocked.
    // SAFETY: resetting a disposition and the mask; no handlers involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    if let Err(e) = raw::stop_self() {
        fail(Step::Stop, e);
    }
    // Seized and continued by the tracer from here on; PTRACE_O_EXITKILL
    // now kills us with it, so the program need not inherit a death signal.
    if raw::clear_death_signal().is_err() {
        fail(Step::Stop, Errno::last());
    }
    if let Err(e) = raw::install_filter(p.filter) {
        fail(Step::Filter, e);
    }
    // SAFETY: argv is null-terminated and points to live C strings.
    unsafe { libc::execvp(p.argv[0], p.argv.as_ptr()) };
    fail(Step::Exec, Errno::last())
}

/// Makes `fds` the process's 0, 1 and 2 even when they overlap those
/// numbers: first moved above 2 (close-on-exec copies), then `dup2`ed down.
fn setup_stdio(fds: [RawFd; 3]) -> Result<(), Errno> {
    let mut high = [0; 3];
    for (h, fd) in high.iter_mut().zip(fds) {
        // SAFETY: fcntl on an fd number; an invalid one gives EBADF.
        let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if r == -1 {
            return Err(Errno::last());
        }
        *h = r;
    }
    for (target, h) in high.into_iter().enumerate() {
        // SAFETY: dup2 between fd numbers; the copy is not close-on-exec.
        if unsafe { libc::dup2(h, target as RawFd) } == -1 {
            return Err(Errno::last());
        }
    }
    Ok(())
}
