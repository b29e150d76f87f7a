//! Whether tracing works here: a real ptrace + seccomp round trip.

#![allow(unsafe_code)] // opts in: ptrace, seccomp and waitpid on raw pids

use nix::errno::Errno;

use super::filter::{self, classify, refusal, Call, Traps};
use super::raw::{self, SyscallInfo};
use crate::sysv;

/// Why tracing does not work here: what failed in the probe's round trip,
/// and what it likely means.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The seccomp filter has no system call table for this architecture.
    #[error("no seccomp filter for this architecture ({arch})")]
    UnsupportedArch {
        /// `std::env::consts::ARCH`.
        arch: &'static str,
    },
    /// `/proc/self/status` cannot be read.
    #[error("cannot read /proc/self/status: {0} (is /proc mounted?)")]
    Status(Errno),
    /// `/proc/self/status` has no `CapEff:` line.
    #[error("no CapEff line in /proc/self/status")]
    NoCapEff,
    /// The probe child could not be forked.
    #[error("fork: {0}")]
    Fork(Errno),
    /// Waiting for the probe child failed.
    #[error("waitpid(probe child): {0}")]
    Wait(Errno),
    /// The probe child ended before it stopped itself for seizing.
    #[error("probe child ended before stopping (status {0:#x}): prctl(PR_SET_NO_NEW_PRIVS) failed?")]
    EndedBeforeStop(i32),
    /// `PTRACE_SEIZE` of the probe child was refused.
    #[error("ptrace(PTRACE_SEIZE) of a child refused: {0} (Yama kernel.yama.ptrace_scope >= 2, or a container seccomp policy blocking ptrace)")]
    SeizeRefused(Errno),
    /// The probe's `shmget` ran without a seccomp stop.
    #[error("the seccomp filter did not stop the probe's shmget")]
    FilterDidNotStop,
    /// The probe's `shmget` stopped at seccomp, but its exit was not seen.
    #[error("the probe's shmget exit was not seen")]
    ExitNotSeen,
    /// Installing the filter failed in the probe child.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER) failed: {0} (seccomp filters unsupported or forbidden)")]
    FilterRefused(Errno),
    /// A call the filter refuses ran (or failed with another errno) in the probe.
    #[error("the seccomp filter did not refuse {call} with {want} (the kernel or an outer filter answered otherwise)")]
    NotRefused {
        /// The call, as the probe made it.
        call: &'static str,
        /// The errno the filter's refusal gives.
        want: Errno,
    },
    /// The probe child exited with an unexpected status.
    #[error("probe child exited with {0}")]
    Exited(i32),
    /// The probe child was killed.
    #[error("probe child killed by signal {0}")]
    Killed(i32),
    /// A stop of the probe child other than the expected one (`stop`: the
    /// kind of stop; `got`: what `PTRACE_GET_SYSCALL_INFO` showed).
    #[error("unexpected {stop} in the probe: {got}")]
    UnexpectedStop {
        /// `seccomp stop` or `syscall-exit`.
        stop: &'static str,
        /// What the kernel reported there.
        got: String,
    },
    /// `PTRACE_GET_SYSCALL_INFO` failed (`at`: empty at the seccomp stop).
    #[error("ptrace(PTRACE_GET_SYSCALL_INFO){at}: {errno} (Linux 5.3 or later is needed)")]
    NoSyscallInfo {
        /// Where: `""` or `" at syscall exit"`.
        at: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },
    /// Resuming the probe child failed.
    #[error("ptrace(resume) of the probe: {0}")]
    Resume(Errno),
}

/// Checks that this process can trace a child through the seccomp filter,
/// by doing it: a forked child stops itself, is seized, installs the filter
/// makes each call the filter refuses in a form the kernel itself would
/// reject (it must fail with the refusal's errno instead), and
/// calls `shmget(IPC_PRIVATE, 0, 0)` (always `EINVAL`: it creates
/// nothing); the probe must see the seccomp stop, then the syscall exit
/// with `EINVAL`, through `PTRACE_GET_SYSCALL_INFO`.
///
/// Safe to call from a multi-threaded process: the child makes only raw
/// system calls.
///
/// # Errors
/// [`Unavailable`]: what failed and what it likely means (an unknown
/// architecture, ptrace refused by Yama `ptrace_scope` or a container's
/// seccomp policy, seccomp filters unsupported, a kernel before 5.3).
pub fn available() -> Result<(), Unavailable> {
    let Some(_) = filter::native_arch() else {
        return Err(Unavailable::UnsupportedArch { arch: std::env::consts::ARCH });
    };
    let prog = filter::program(Traps::ShmCalls);
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Unavailable::Status(e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)))?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or(Unavailable::NoCapEff)?;
    let no_new_privs = cap_eff & (1 << super::raw::CAP_SYS_ADMIN) == 0;
    // SAFETY: the child makes only async-signal-safe raw system calls on
    // data prepared before the fork, then _exits; it never returns.
    let child = match unsafe { libc::fork() } {
        -1 => return Err(Unavailable::Fork(Errno::last())),
        0 => probe_child(&prog, no_new_privs),
        pid => pid,
    };
    let result = trace_probe(child);
    // SAFETY: `child` is our unreaped child; then reap it.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        while libc::waitpid(child, std::ptr::null_mut(), libc::__WALL) == -1 && Errno::last() == Errno::EINTR {}
    }
    result
}

/// The refused calls the probe makes, as `(what, number, arguments)`. Each
/// fails in the kernel without effect if the filter lets it through:
/// `clone` with `CLONE_SIGHAND` but no `CLONE_VM` (`EINVAL`), `seccomp` with
/// a null program (`EFAULT`, or `EACCES` without no-new-privs), `ptrace` of
/// pid 0 (`ESRCH`), `clone3` of size 0 (`EINVAL`).
#[allow(clippy::unnecessary_cast)] // the flag is a c_ulong: u32 on 32-bit targets
const ESCAPES: [(&str, libc::c_long, [u64; 3]); 4] = [
    (
        "clone(CLONE_UNTRACED)",
        libc::SYS_clone,
        [(libc::CLONE_UNTRACED | libc::CLONE_SIGHAND | libc::SIGCHLD) as u64, 0, 0],
    ),
    (
        "seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER)",
        libc::SYS_seccomp,
        [libc::SECCOMP_SET_MODE_FILTER as u64, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u64, 0],
    ),
    ("ptrace(PTRACE_CONT)", libc::SYS_ptrace, [libc::PTRACE_CONT as u64, 0, 0]),
    ("clone3", libc::SYS_clone3, [0, 0, 0]),
];
/// The probe child's exit status for [`ESCAPES`]`[i]` not refused: `FIRST_ESCAPE + i`.
const FIRST_ESCAPE: i32 = 20;

/// The errno [`ESCAPES`]`[i]` must fail with under the filter.
fn escape_errno(i: usize) -> Errno {
    let (_, nr, [a, b, c]) = ESCAPES[i];
    let arch = filter::native_arch().unwrap_or(0);
    Errno::from_raw(refusal(arch, nr as u32, &[a, b, c, 0, 0, 0]).map_or(0, |r| r.errno()))
}

fn probe_child(prog: &[filter::Insn], no_new_privs: bool) -> ! {
    let _ = raw::kill_me_with_parent();
    if no_new_privs && raw::set_no_new_privs().is_err() {
        // SAFETY: ends the child.
        unsafe { libc::_exit(10) }
    }
    let _ = raw::stop_self();
    if let Err(e) = raw::install_filter(prog) {
        // SAFETY: ends the child with the errno as status.
        unsafe { libc::_exit(100 + (e as i32).min(100)) }
    }
    for (i, &(_, nr, [a, b, c])) in ESCAPES.iter().enumerate() {
        let want = escape_errno(i);
        // SAFETY: each call is made in a form the kernel rejects without
        // effect (see ESCAPES); none reads memory (null pointers, size 0).
        let r =
            unsafe { libc::syscall(nr, a as libc::c_long, b as libc::c_long, c as libc::c_long, 0 as libc::c_long) };
        if r != -1 || Errno::last() != want || want == Errno::UnknownErrno {
            // SAFETY: ends the child (and whatever `r` may have made dies with it).
            unsafe { libc::_exit(FIRST_ESCAPE + i as i32) }
        }
    }
    // Size 0 is always EINVAL: it creates nothing.
    let _ = sysv::raw::shmget(sysv::raw::IPC_PRIVATE, 0, 0);
    // SAFETY: ends the child.
    unsafe { libc::_exit(0) }
}

fn wait(pid: libc::pid_t, flags: libc::c_int) -> Result<libc::c_int, Unavailable> {
    let mut status = 0;
    loop {
        // SAFETY: writes the status to a local.
        if unsafe { libc::waitpid(pid, &mut status, flags) } != -1 {
            return Ok(status);
        }
        if Errno::last() != Errno::EINTR {
            return Err(Unavailable::Wait(Errno::last()));
        }
    }
}

fn trace_probe(child: libc::pid_t) -> Result<(), Unavailable> {
    let status = wait(child, libc::WUNTRACED)?;
    if !libc::WIFSTOPPED(status) {
        return Err(Unavailable::EndedBeforeStop(status));
    }
    raw::seize(child).map_err(Unavailable::SeizeRefused)?;
    // SAFETY: signals our own unreaped child.
    unsafe { libc::kill(child, libc::SIGCONT) };
    let mut saw_seccomp = false;
    loop {
        let status = wait(child, libc::__WALL)?;
        if libc::WIFEXITED(status) {
            let code = libc::WEXITSTATUS(status);
            return match code {
                0 if saw_seccomp => Err(Unavailable::ExitNotSeen),
                0 => Err(Unavailable::FilterDidNotStop),
                101.. => Err(Unavailable::FilterRefused(Errno::from_raw(code - 100))),
                c if (FIRST_ESCAPE..FIRST_ESCAPE + ESCAPES.len() as i32).contains(&c) => {
                    let i = (c - FIRST_ESCAPE) as usize;
                    Err(Unavailable::NotRefused { call: ESCAPES[i].0, want: escape_errno(i) })
                }
                _ => Err(Unavailable::Exited(code)),
            };
        }
        if libc::WIFSIGNALED(status) {
            return Err(Unavailable::Killed(libc::WTERMSIG(status)));
        }
        let event = status >> 16;
        let sig = libc::WSTOPSIG(status);
        let mut req = libc::PTRACE_CONT;
        let mut deliver = 0;
        if event == libc::PTRACE_EVENT_SECCOMP {
            match raw::syscall_info(child) {
                Ok(SyscallInfo::Call { arch, nr, args })
                    if matches!(classify(arch, nr, &args), Some(Call::Shmget { .. })) =>
                {
                    saw_seccomp = true;
                    req = libc::PTRACE_SYSCALL;
                }
                Ok(other) => {
                    return Err(Unavailable::UnexpectedStop { stop: "seccomp stop", got: format!("{other:?}") })
                }
                Err(errno) => return Err(Unavailable::NoSyscallInfo { at: "", errno }),
            }
        } else if event == 0 && sig == libc::SIGTRAP | 0x80 {
            return match raw::syscall_info(child) {
                Ok(SyscallInfo::Return(Err(libc::EINVAL))) if saw_seccomp => Ok(()),
                Ok(other) => Err(Unavailable::UnexpectedStop { stop: "syscall-exit", got: format!("{other:?}") }),
                Err(errno) => Err(Unavailable::NoSyscallInfo { at: " at syscall exit", errno }),
            };
        } else if event == libc::PTRACE_EVENT_STOP {
            // The group-stop after seizing, or its end after SIGCONT.
        } else if event == 0 {
            deliver = if sig == libc::SIGCONT { 0 } else { sig };
        }
        raw::resume(req, child, deliver).map_err(Unavailable::Resume)?;
    }
}
