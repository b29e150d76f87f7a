//! IPC namespace isolation: enter a private IPC namespace, or know that we are
//! in the host's, and the guard that keeps the host's sysctls untouched.
//!
//! In a private IPC namespace the process sees only the segments created
//! there, may change the namespace's `kernel.shm*` sysctls, and everything
//! left in it is destroyed when its last process exits. That is how the
//! harness keeps its hands off the machine's own segments.
//!
//! The IPC namespace belongs to a thread, not a process: `unshare` moves the
//! calling thread only, and `/proc/sys/kernel/shm*`, `/proc/sysvipc/shm` and
//! the system calls act in the namespace of the thread that makes them. So
//! every check here is about the calling thread (`/proc/thread-self/ns/ipc`).

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};

use crate::sysv::planted::{self, Bug};
use crate::sysv::{self, Sysctl};

/// Why a private IPC namespace could not be entered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot enter a private IPC namespace: {call}: {} ({}); {hint}", crate::sysv::errno_name(*.errno), .errno.desc())]
pub struct NamespaceError {
    /// The call that failed, e.g. `unshare(CLONE_NEWUSER|CLONE_NEWIPC)`.
    pub call: String,
    /// The kernel's answer.
    pub errno: Errno,
    /// What to do about it.
    pub hint: String,
}

/// The inode number identifying an IPC namespace, read from
/// `/proc/PID/ns/ipc` (`ipc:[4026531839]`): that of process `pid`'s main
/// thread, or with `None` that of the calling thread
/// (`/proc/thread-self/ns/ipc`, which differs from `/proc/self/ns/ipc`, the
/// main thread's, once a thread has called `unshare`).
pub fn ipc_namespace_id(pid: Option<i32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/ns/ipc"),
        None => "/proc/thread-self/ns/ipc".to_string(),
    };
    let link = fs::read_link(path).ok()?;
    let text = link.to_str()?;
    text.strip_prefix("ipc:[")?.strip_suffix(']')?.parse().ok()
}

/// The IPC namespace this process entered through
/// [`enter_private_ipc_namespace`] (0: none).
static ENTERED: AtomicU64 = AtomicU64::new(0);

/// Whether the calling thread is in an IPC namespace other than the host's.
///
/// True if the calling thread's namespace is one that a thread of this
/// process (or of the one it was forked from) entered through
/// [`enter_private_ipc_namespace`], or if some ancestor process whose
/// namespace can be read (PID 1 first, then the parent chain) is in a
/// different one. Another thread of the same process may be elsewhere.
/// Answers `false` when it cannot tell, which is the safe answer for callers
/// that refuse to touch the host namespace.
pub fn in_private_ipc_namespace() -> bool {
    let Some(mine) = ipc_namespace_id(None) else { return false };
    if ENTERED.load(Ordering::Relaxed) == mine {
        return true;
    }
    if let Some(init) = ipc_namespace_id(Some(1)) {
        return init != mine;
    }
    let mut pid = std::os::unix::process::parent_id() as i32;
    for _ in 0..64 {
        if pid <= 1 {
            break;
        }
        if let Some(theirs) = ipc_namespace_id(Some(pid)) {
            if theirs != mine {
                return true;
            }
        }
        match parent_of(pid) {
            Some(ppid) => pid = ppid,
            None => break,
        }
    }
    false
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: skip to the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `unshare(CLONE_NEWIPC)`—Moves this process into a new, empty IPC namespace.
///
/// As root (`CAP_SYS_ADMIN`) this is one call. Otherwise it tries
/// `unshare(CLONE_NEWUSER|CLONE_NEWIPC)` and maps the caller's uid and gid to
/// root of the new user namespace, which the kernel allows only in a
/// single-threaded process and where unprivileged user namespaces are enabled.
///
/// Affects the calling thread only, and the threads and processes it starts
/// afterwards: other threads of the process stay where they are. Call it
/// before starting threads. The namespace, with every segment in it, goes
/// away when its last process exits.
///
/// # Errors
/// [`NamespaceError`] with the refused call and a hint naming the likely cause
/// (not root; `kernel.apparmor_restrict_unprivileged_userns=1`;
/// `user.max_user_namespaces=0`; a multi-threaded caller).
///
/// # References
/// - [Linux `unshare(2)`](https://man7.org/linux/man-pages/man2/unshare.2.html)
/// - [Linux `ipc_namespaces(7)`](https://man7.org/linux/man-pages/man7/ipc_namespaces.7.html)
#[doc(alias = "unshare")]
pub fn enter_private_ipc_namespace() -> Result<(), NamespaceError> {
    if planted::active(Bug::NoIpcNamespace) {
        return Err(NamespaceError {
            call: "unshare(CLONE_NEWIPC)".into(),
            errno: Errno::EPERM,
            hint: "refused on purpose: planted `no-ipc-namespace` (testing host mode)".into(),
        });
    }
    let first = match unshare(CloneFlags::CLONE_NEWIPC) {
        Ok(()) => {
            ENTERED.store(ipc_namespace_id(None).unwrap_or(0), Ordering::Relaxed);
            return Ok(());
        }
        Err(e) => e,
    };
    if first != Errno::EPERM {
        return Err(NamespaceError {
            call: "unshare(CLONE_NEWIPC)".into(),
            errno: first,
            hint: "the kernel may lack CONFIG_IPC_NS".into(),
        });
    }
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    if let Err(errno) = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWIPC) {
        let hint = match errno {
            Errno::EINVAL => "the process is multi-threaded (a user namespace needs a single-threaded caller); run as root or from a single-threaded process",
            Errno::EPERM | Errno::EACCES => "not root, and unprivileged user namespaces are refused (Ubuntu 24.04: sysctl kernel.apparmor_restrict_unprivileged_userns=0); run as root, or use host isolation",
            Errno::ENOSPC | Errno::EUSERS => match fs::read_to_string("/proc/sys/user/max_user_namespaces").map(|v| v.trim().to_string()) {
                Ok(v) if v == "0" => "user.max_user_namespaces is 0 (unprivileged user namespaces are off); run as root, or use host isolation",
                _ => "user namespaces are already nested 32 deep here (the kernel's limit; e.g. inside containers or fuzzers that each add one), or user.max_user_namespaces is used up",
            },
            _ => "run as root, or use host isolation",
        };
        return Err(NamespaceError { call: "unshare(CLONE_NEWUSER|CLONE_NEWIPC)".into(), errno, hint: hint.into() });
    }
    let write = |path: &str, text: String| {
        fs::write(path, text).map_err(|e| NamespaceError {
            call: format!("write {path}"),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            hint: "the new user namespace could not be set up".into(),
        })
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    ENTERED.store(ipc_namespace_id(None).unwrap_or(0), Ordering::Relaxed);
    Ok(())
}

/// Writes a `kernel.shm*` sysctl in the calling thread's IPC namespace,
/// refusing the host's: this project never changes a host sysctl.
///
/// The guard lives here, not in [`crate::sysv`], so that the wrapper depends
/// on nothing above it; [`Sysctl::write_unchecked`] is the bare write.
///
/// # Errors
/// [`sysv::Error::Proc`] if the calling thread is not in a private IPC
/// namespace (or that cannot be told), or if the write fails.
pub fn write_sysctl(sysctl: Sysctl, value: impl std::fmt::Display) -> sysv::Result<()> {
    if !in_private_ipc_namespace() {
        return Err(sysv::Error::Proc {
            path: sysctl.path(),
            message: format!(
                "refusing to write {value}: the calling thread is in the host IPC namespace (or /proc/thread-self/ns/ipc cannot be read); enter a private one first (namespace::enter_private_ipc_namespace, or unshare -i)"
            ),
        });
    }
    sysctl.write_unchecked(value)
}
