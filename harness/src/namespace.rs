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

/// The IPC namespace this process was in when it first entered a private
/// one through [`enter_private_ipc_namespace`] (0: it never did): the one
/// it left, the only one known to be possibly the host's.
static LEFT: AtomicU64 = AtomicU64::new(0);

/// Whether the calling thread is in an IPC namespace other than the host's.
///
/// True if the calling thread's namespace is one that a thread of this
/// process (or of the one it was forked from) entered through
/// [`enter_private_ipc_namespace`], or, once it did, any namespace but the
/// one it left (a later `unshare(CLONE_NEWIPC)` or `setns` of a process of
/// its own lands there: a scenario's `unshare ipc`); else if some ancestor
/// process whose namespace can be read (PID 1 first, then the parent chain)
/// is in a different one. Another thread of the same process may be
/// elsewhere. Answers `false` when it cannot tell, which is the safe answer
/// for callers that refuse to touch the host namespace.
pub fn in_private_ipc_namespace() -> bool {
    in_private_ipc_namespace_seen_by(&ipc_namespace_id)
}

/// [`in_private_ipc_namespace`] with `read` in place of
/// [`ipc_namespace_id`]: the seam through which a test makes `/proc/1/ns/ipc`
/// (or any process's) unreadable.
fn in_private_ipc_namespace_seen_by(read: &dyn Fn(Option<i32>) -> Option<u64>) -> bool {
    let Some(mine) = read(None) else { return false };
    if ENTERED.load(Ordering::Relaxed) == mine {
        return true;
    }
    let left = LEFT.load(Ordering::Relaxed);
    if left != 0 && left != mine {
        return true;
    }
    if let Some(init) = read(Some(1)) {
        return init != mine;
    }
    let mut pid = std::os::unix::process::parent_id() as i32;
    for _ in 0..64 {
        if pid <= 1 {
            break;
        }
        if let Some(theirs) = read(Some(pid)) {
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

/// Records that the calling thread, in namespace `left` before, is now in
/// the private namespace it has just entered (the first departure is kept:
/// that is the one that may be the host's).
fn record_entered(left: Option<u64>) {
    if let Some(left) = left {
        let _ = LEFT.compare_exchange(0, left, Ordering::Relaxed, Ordering::Relaxed);
    }
    ENTERED.store(ipc_namespace_id(None).unwrap_or(0), Ordering::Relaxed);
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
    let left = ipc_namespace_id(None);
    let first = match unshare(CloneFlags::CLONE_NEWIPC) {
        Ok(()) => {
            record_entered(left);
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
    record_entered(left);
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusty_fork::rusty_fork_test;

    /// Sees only the calling thread's namespace: `/proc/1/ns/ipc` and every
    /// ancestor's are unreadable, as on machines that hide PID 1's entries.
    fn blind(pid: Option<i32>) -> Option<u64> {
        if pid.is_some() {
            None
        } else {
            ipc_namespace_id(None)
        }
    }

    rusty_fork_test! {
        /// A scenario's `unshare ipc` (a bare `unshare(CLONE_NEWIPC)` after
        /// the harness entered its private namespace) leaves the thread in a
        /// private namespace, known without reading PID 1's.
        #[test]
        fn unshared_again_is_private_without_pid_1() {
            if let Err(e) = enter_private_ipc_namespace() {
                eprintln!("skipped: {e}");
                return;
            }
            assert!(in_private_ipc_namespace_seen_by(&blind), "the namespace entered");
            unshare(CloneFlags::CLONE_NEWIPC).expect("unshare(CLONE_NEWIPC) as root of the namespace");
            assert_ne!(ipc_namespace_id(None), Some(ENTERED.load(Ordering::Relaxed)), "moved on");
            assert!(in_private_ipc_namespace_seen_by(&blind), "a namespace made after the private one");
        }

        /// Without having entered a private namespace, a thread that can
        /// read no other process's namespace cannot tell: the safe answer.
        #[test]
        fn unknown_without_pid_1_is_not_private() {
            assert!(!in_private_ipc_namespace_seen_by(&blind));
        }

        /// Back in the namespace it left (`setns` to a process there), the
        /// thread is judged as before: by PID 1, here unreadable, so not
        /// private.
        #[test]
        fn back_in_the_namespace_left_is_not_private() {
            let Some(left) = ipc_namespace_id(None) else { return };
            let home = std::fs::File::open("/proc/thread-self/ns/ipc").expect("own namespace");
            if let Err(e) = enter_private_ipc_namespace() {
                eprintln!("skipped: {e}");
                return;
            }
            use std::os::fd::AsFd;
            if nix::sched::setns(home.as_fd(), CloneFlags::CLONE_NEWIPC).is_err() {
                eprintln!("skipped: cannot setns back (the namespace left belongs to another user namespace)");
                return;
            }
            assert_eq!(ipc_namespace_id(None), Some(left));
            assert!(!in_private_ipc_namespace_seen_by(&blind));
        }
    }
}
