//! Whether tracing works here: a real ptrace + seccomp round trip.

#![allow(unsafe_code)] // opts in: ptrace, seccomp and waitpid on raw pids

use nix::errno::Errno;

use super::filter::{self, classify, Call, Traps};
use super::raw::{self, SyscallInfo};

/// Checks that this process can trace a child through the seccomp filter,
/// by doing it: a forked child stops itself, is seized, installs the filter
/// and calls `shmget(IPC_PRIVATE, 0, 0)` (always `EINVAL`: it creates
/// nothing); the probe must see the seccomp stop, then the syscall exit
/// with `EINVAL`, through `PTRACE_GET_SYSCALL_INFO`.
///
/// Safe to call from a multi-threaded process: the child makes only raw
/// system calls.
///
/// # Errors
/// A sentence saying what failed and what it likely means (an unknown
/// architecture, ptrace refused by Yama `ptrace_scope` or a container's
/// seccomp policy, seccomp filters unsupported, a kernel before 5.3).
pub fn available() -> Result<(), String> {
    let Some(_) = filter::native_arch() else {
        return Err(format!("no seccomp filter for this architecture ({})", std::env::consts::ARCH));
    };
    let prog = filter::program(Traps::ShmCalls);
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e} (is /proc mounted?)"))?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("no CapEff line in /proc/self/status")?;
    let no_new_privs = cap_eff & (1 << super::raw::CAP_SYS_ADMIN) == 0;
    // SAFETY: the child makes only async-signal-safe raw system calls on
    // data prepared before the fork, then _exits; it never returns.
    let child = match unsafe { libc::fork() } {
        -1 => return Err(format!("fork: {}", Errno::last())),
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
    // SAFETY: shmget(IPC_PRIVATE, 0, 0): size 0 is always EINVAL.
    unsafe { libc::shmget(libc::IPC_PRIVATE, 0, 0) };
    // SAFETY: ends the child.
    unsafe { libc::_exit(0) }
}

fn wait(pid: libc::pid_t, flags: libc::c_int) -> Result<libc::c_int, String> {
    let mut status = 0;
    loop {
        // SAFETY: writes the status to a local.
        if unsafe { libc::waitpid(pid, &mut status, flags) } != -1 {
            return Ok(status);
        }
        if Errno::last() != Errno::EINTR {
            return Err(format!("waitpid(probe child): {}", Errno::last()));
        }
    }
}

fn trace_probe(child: libc::pid_t) -> Result<(), String> {
    let status = wait(child, libc::WUNTRACED)?;
    if !libc::WIFSTOPPED(status) {
        return Err(format!(
            "probe child ended before stopping (status {status:#x}): prctl(PR_SET_NO_NEW_PRIVS) failed?"
        ));
    }
    raw::seize(child).map_err(|e| {
        format!("ptrace(PTRACE_SEIZE) of a child refused: {e} (Yama kernel.yama.ptrace_scope >= 2, or a container seccomp policy blocking ptrace)")
    })?;
    // SAFETY: signals our own unreaped child.
    unsafe { libc::kill(child, libc::SIGCONT) };
    let mut saw_seccomp = false;
    loop {
        let status = wait(child, libc::__WALL)?;
        if libc::WIFEXITED(status) {
            let code = libc::WEXITSTATUS(status);
            return match code {
                0 if saw_seccomp => Err("the probe's shmget exit was not seen".into()),
                0 => Err("the seccomp filter did not stop the probe's shmget".into()),
                101.. => Err(format!(
                    "seccomp(SECCOMP_SET_MODE_FILTER) failed: {} (seccomp filters unsupported or forbidden)",
                    Errno::from_raw(code - 100)
                )),
                _ => Err(format!("probe child exited with {code}")),
            };
        }
        if libc::WIFSIGNALED(status) {
            return Err(format!("probe child killed by signal {}", libc::WTERMSIG(status)));
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
                Ok(other) => return Err(format!("unexpected seccomp stop in the probe: {other:?}")),
                Err(e) => return Err(format!("ptrace(PTRACE_GET_SYSCALL_INFO): {e} (Linux 5.3 or later is needed)")),
            }
        } else if event == 0 && sig == libc::SIGTRAP | 0x80 {
            return match raw::syscall_info(child) {
                Ok(SyscallInfo::Return(Err(libc::EINVAL))) if saw_seccomp => Ok(()),
                Ok(other) => Err(format!("unexpected syscall-exit in the probe: {other:?}")),
                Err(e) => {
                    Err(format!("ptrace(PTRACE_GET_SYSCALL_INFO) at syscall exit: {e} (Linux 5.3 or later is needed)"))
                }
            };
        } else if event == libc::PTRACE_EVENT_STOP {
            // The group-stop after seizing, or its end after SIGCONT.
        } else if event == 0 {
            deliver = if sig == libc::SIGCONT { 0 } else { sig };
        }
        raw::resume(req, child, deliver).map_err(|e| format!("ptrace(resume) of the probe: {e}"))?;
    }
}
