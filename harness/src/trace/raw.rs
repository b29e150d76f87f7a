//! The raw layer: `ptrace`, `seccomp` and `prctl` calls as thin functions
//! returning an errno. Nothing here allocates, so the functions the tracee
//! calls between `fork` and `execve` are async-signal-safe.

#![allow(unsafe_code)] // opts in: ptrace, seccomp and waitpid on raw pids

use std::ffi::c_void;
use std::mem::MaybeUninit;

use libc::{c_int, c_long, c_uint, pid_t};
use nix::errno::Errno;

use super::filter::Insn;

/// Options set at `PTRACE_SEIZE`: trace seccomp stops, follow every kind of
/// child, report exec, mark syscall stops, and kill every tracee if the
/// tracer dies.
pub const OPTIONS: c_int = libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_EXITKILL;

fn check(r: c_long) -> Result<c_long, Errno> {
    if r == -1 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// `ptrace(req, pid, addr, data)`—Issues one ptrace request.
///
/// # Safety
/// `addr` and `data` must be what `req` expects (for requests that write,
/// valid writable memory of the size the request writes).
unsafe fn ptrace(req: c_uint, pid: pid_t, addr: usize, data: usize) -> Result<c_long, Errno> {
    Errno::clear();
    // SAFETY: forwarded to the caller's contract.
    let r = unsafe { libc::ptrace(req, pid, addr as *mut c_void, data as *mut c_void) };
    // PEEK requests return data; the ones used here return 0 or -1.
    check(r)
}

/// `ptrace(PTRACE_SEIZE, pid, 0, OPTIONS)`—Attaches to `pid` without stopping it.
///
/// # Errors
/// `EPERM` (Yama, a seccomp policy, no permission), `ESRCH`.
pub fn seize(pid: pid_t) -> Result<(), Errno> {
    // SAFETY: SEIZE takes the options in `data` and reads no memory.
    unsafe { ptrace(libc::PTRACE_SEIZE, pid, 0, OPTIONS as usize) }.map(drop)
}

/// `ptrace(req, pid, 0, sig)`—Resumes a stopped tracee (`PTRACE_CONT`,
/// `PTRACE_SYSCALL`, `PTRACE_LISTEN`), delivering `sig` (0: none).
///
/// # Errors
/// `ESRCH` if the tracee is gone or not stopped (e.g. killed meanwhile).
pub fn resume(req: c_uint, pid: pid_t, sig: c_int) -> Result<(), Errno> {
    // SAFETY: these requests take a signal number in `data` and read no memory.
    unsafe { ptrace(req, pid, 0, sig as usize) }.map(drop)
}

/// `ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg)`—Reads the event message (a new
/// child's pid, the former thread id at exec).
///
/// # Errors
/// `ESRCH`.
pub fn event_msg(pid: pid_t) -> Result<u64, Errno> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: GETEVENTMSG writes one unsigned long to `data`.
    unsafe { ptrace(libc::PTRACE_GETEVENTMSG, pid, 0, &mut msg as *mut _ as usize) }?;
    Ok(msg as u64)
}

/// `struct ptrace_syscall_info` (Linux 5.3), with the union as raw words.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawSyscallInfo {
    op: u8,
    _pad: [u8; 3],
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    /// entry: nr, args[6]; exit: rval, is_error; seccomp: nr, args[6], ret_data.
    data: [u64; 8],
}

/// `PTRACE_GET_SYSCALL_INFO` (Linux 5.3; not in the libc crate for every libc).
const PTRACE_GET_SYSCALL_INFO: c_uint = 0x420e;

/// `PTRACE_SYSCALL_INFO_*`: which stop the info describes.
const INFO_ENTRY: u8 = 1;
const INFO_EXIT: u8 = 2;
const INFO_SECCOMP: u8 = 3;

/// A tracee's system call, as `PTRACE_GET_SYSCALL_INFO` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallInfo {
    /// At a seccomp stop or syscall-entry stop: the call about to run.
    Call {
        /// `AUDIT_ARCH_*` of the calling ABI.
        arch: u32,
        /// The system call number.
        nr: u32,
        /// The arguments.
        args: [u64; 6],
    },
    /// At a syscall-exit stop: the return value (`Err(errno)` on failure).
    Return(Result<i64, i32>),
    /// Any other stop.
    None,
}

/// `ptrace(PTRACE_GET_SYSCALL_INFO, pid, size, &info)`—Reads the stopped
/// tracee's system call, independently of the architecture.
///
/// # Errors
/// `EIO` before Linux 5.3, `ESRCH`.
pub fn syscall_info(pid: pid_t) -> Result<SyscallInfo, Errno> {
    let mut info = MaybeUninit::<RawSyscallInfo>::zeroed();
    let size = size_of::<RawSyscallInfo>();
    // SAFETY: the kernel writes at most `size` bytes to `info`.
    let n = unsafe { ptrace(PTRACE_GET_SYSCALL_INFO, pid, size, info.as_mut_ptr() as usize) }?;
    // SAFETY: zeroed is a valid RawSyscallInfo; the kernel filled `n` bytes.
    let info = unsafe { info.assume_init() };
    let d = info.data;
    let args = [d[1], d[2], d[3], d[4], d[5], d[6]];
    Ok(match info.op {
        INFO_ENTRY | INFO_SECCOMP if n >= 24 + 56 => SyscallInfo::Call { arch: info.arch, nr: d[0] as u32, args },
        INFO_EXIT if n >= 24 + 9 => {
            let rval = d[0] as i64;
            let is_error = d[1] as u8 != 0;
            SyscallInfo::Return(if is_error { Err(-rval as i32) } else { Ok(rval) })
        }
        _ => SyscallInfo::None,
    })
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`—Execs can no longer gain privileges
/// (setuid, file capabilities); needed for an unprivileged seccomp filter.
///
/// # Errors
/// `EINVAL` on kernels before 3.5.
pub fn set_no_new_privs() -> Result<(), Errno> {
    // SAFETY: plain prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as c_long).map(drop)
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`—Dies when the parent (thread) dies.
///
/// # Errors
/// None in practice.
pub fn kill_me_with_parent() -> Result<(), Errno> {
    // SAFETY: plain prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } as c_long).map(drop)
}

/// `prctl(PR_SET_PDEATHSIG, 0)`—No longer dies with the parent.
///
/// # Errors
/// None in practice.
pub fn clear_death_signal() -> Result<(), Errno> {
    // SAFETY: plain prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) } as c_long).map(drop)
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog)`—Installs `filter` for this
/// thread and what it execs and forks.
///
/// # Errors
/// `EACCES` without `CAP_SYS_ADMIN` and without no-new-privs, `EINVAL`
/// (seccomp filters unsupported or the program rejected), `EFAULT`.
pub fn install_filter(filter: &[Insn]) -> Result<(), Errno> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const Insn,
    }
    let prog = SockFprog { len: filter.len() as u16, filter: filter.as_ptr() };
    // SAFETY: `prog` points to `filter.len()` instructions, alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const SockFprog) };
    check(r).map(drop)
}

/// `kill(getpid(), SIGSTOP)`—Stops this process until a `SIGCONT`.
///
/// # Errors
/// None in practice.
pub fn stop_self() -> Result<(), Errno> {
    // SAFETY: plain system calls.
    check(unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) } as c_long).map(drop)
}

/// `CAP_SYS_ADMIN`: the capability bit that lets seccomp filters be
/// installed without no-new-privs.
pub const CAP_SYS_ADMIN: u32 = 21;

/// `close_range(first, last, 0)`—Closes every fd in `first..=last`.
///
/// # Errors
/// `ENOSYS` before Linux 5.9, `EINVAL`.
pub fn close_range(first: u32, last: u32) -> Result<(), Errno> {
    // SAFETY: closes fds by number; the caller owns them all.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) }).map(drop)
}

/// Closes every fd from 3 up except those in `keep`: `close_range` around
/// them, or (before Linux 5.9) each fd listed in `/proc/self/fd`.
///
/// # Errors
/// `/proc/self/fd` unreadable on the fallback path.
pub fn close_fds_except(keep: &[i32]) -> Result<(), Errno> {
    let mut keep: Vec<u32> = keep.iter().filter(|&&k| k >= 3).map(|&k| k as u32).collect();
    keep.sort_unstable();
    let mut ranges = Vec::new();
    let mut lo = 3u32;
    for k in keep.iter().copied() {
        if k > lo {
            ranges.push((lo, k - 1));
        }
        lo = lo.max(k + 1);
    }
    ranges.push((lo, u32::MAX));
    for &(a, b) in &ranges {
        match close_range(a, b) {
            Ok(()) => {}
            Err(Errno::ENOSYS) => {
                let dir = std::fs::read_dir("/proc/self/fd").map_err(|_| Errno::EACCES)?;
                let fds: Vec<u32> =
                    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|&fd| fd >= 3).collect();
                for fd in fds.into_iter().filter(|fd| !keep.contains(fd)) {
                    // SAFETY: closing an fd number this process owns.
                    unsafe { libc::close(fd as i32) };
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The general registers of a stopped tracee, in the tracer's own layout
/// whatever the tracee's ABI (`PTRACE_GETREGS` on x86: the kernel converts
/// an i386 or x32 tracee's registers into it).
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
fn regs(pid: pid_t) -> Result<libc::user_regs_struct, Errno> {
    let mut regs = MaybeUninit::<libc::user_regs_struct>::zeroed();
    // SAFETY: GETREGS writes one user_regs_struct to `data`.
    unsafe { ptrace(libc::PTRACE_GETREGS, pid, 0, regs.as_mut_ptr() as usize) }?;
    // SAFETY: zeroed is a valid user_regs_struct; the kernel filled it.
    Ok(unsafe { regs.assume_init() })
}

/// Writes back the registers [`regs`] read.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
fn set_regs(pid: pid_t, regs: &mut libc::user_regs_struct) -> Result<(), Errno> {
    // SAFETY: SETREGS reads one user_regs_struct from `data`.
    unsafe { ptrace(libc::PTRACE_SETREGS, pid, 0, regs as *mut libc::user_regs_struct as usize) }.map(drop)
}

/// The general registers of a stopped tracee (`PTRACE_GETREGSET`,
/// `NT_PRSTATUS`, whose layout is the *tracee's*): `ENOSYS` unless it is
/// the tracer's own (a 32-bit arm tracee under an aarch64 tracer), so
/// nothing is written at the wrong offsets.
#[cfg(target_arch = "aarch64")]
fn regs(pid: pid_t) -> Result<libc::user_regs_struct, Errno> {
    let mut regs = MaybeUninit::<libc::user_regs_struct>::zeroed();
    let size = size_of::<libc::user_regs_struct>();
    let mut iov = libc::iovec { iov_base: regs.as_mut_ptr().cast(), iov_len: size };
    // SAFETY: the kernel writes at most `iov_len` bytes to `regs`.
    unsafe { ptrace(libc::PTRACE_GETREGSET, pid, libc::NT_PRSTATUS as usize, &mut iov as *mut _ as usize) }?;
    if iov.iov_len != size {
        return Err(Errno::ENOSYS);
    }
    // SAFETY: zeroed is a valid user_regs_struct; the kernel filled it.
    Ok(unsafe { regs.assume_init() })
}

/// Writes back the registers [`regs`] read.
#[cfg(target_arch = "aarch64")]
fn set_regs(pid: pid_t, regs: &mut libc::user_regs_struct) -> Result<(), Errno> {
    let mut iov = libc::iovec { iov_base: (regs as *mut libc::user_regs_struct).cast(), iov_len: size_of_val(regs) };
    // SAFETY: the kernel reads `iov_len` bytes from `regs`.
    unsafe { ptrace(libc::PTRACE_SETREGSET, pid, libc::NT_PRSTATUS as usize, &mut iov as *mut _ as usize) }.map(drop)
}

/// At a seccomp stop: skips the system call (its number becomes -1, so the
/// kernel never runs it) and makes it return `ret` (e.g. `-EACCES`).
///
/// # Errors
/// `ESRCH` (the tracee is gone), `ENOSYS` on an architecture without
/// register access here (the caller then kills the tracee instead).
pub fn skip_syscall(pid: pid_t, ret: i64) -> Result<(), Errno> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut r = regs(pid)?;
        r.orig_rax = u64::MAX;
        r.rax = ret as u64;
        set_regs(pid, &mut r)
    }
    #[cfg(target_arch = "x86")]
    {
        let mut r = regs(pid)?;
        r.orig_eax = -1;
        r.eax = ret as libc::c_long;
        set_regs(pid, &mut r)
    }
    #[cfg(target_arch = "aarch64")]
    {
        /// `NT_ARM_SYSTEM_CALL`: the regset holding the system call number.
        const NT_ARM_SYSTEM_CALL: usize = 0x404;
        let mut r = regs(pid)?;
        r.regs[0] = ret as u64;
        set_regs(pid, &mut r)?;
        let mut nr: c_int = -1;
        let mut iov = libc::iovec { iov_base: (&mut nr as *mut c_int).cast(), iov_len: size_of::<c_int>() };
        // SAFETY: the kernel reads one int from `nr`.
        unsafe { ptrace(libc::PTRACE_SETREGSET, pid, NT_ARM_SYSTEM_CALL, &mut iov as *mut _ as usize) }.map(drop)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        let _ = (pid, ret);
        Err(Errno::ENOSYS)
    }
}

/// At a syscall-exit stop: makes the call return `ret` instead (e.g.
/// `-EACCES`).
///
/// # Errors
/// As [`skip_syscall`].
pub fn set_return(pid: pid_t, ret: i64) -> Result<(), Errno> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut r = regs(pid)?;
        r.rax = ret as u64;
        set_regs(pid, &mut r)
    }
    #[cfg(target_arch = "x86")]
    {
        let mut r = regs(pid)?;
        r.eax = ret as libc::c_long;
        set_regs(pid, &mut r)
    }
    #[cfg(target_arch = "aarch64")]
    {
        let mut r = regs(pid)?;
        r.regs[0] = ret as u64;
        set_regs(pid, &mut r)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        let _ = (pid, ret);
        Err(Errno::ENOSYS)
    }
}
