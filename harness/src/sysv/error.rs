//! The wrapper's error type: every failure names the call, its arguments and
//! the kernel's errno, e.g.
//! `shmget(key=0x14010203, size=4096, IPC_CREAT|IPC_EXCL|0600): EEXIST (File exists)`.

use std::path::PathBuf;

use nix::errno::Errno;

/// Result of the wrapper's calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a SysV shared-memory call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused a system call.
    #[error("{call}: {} ({})", errno_name(*.errno), .errno.desc())]
    Sys {
        /// The call with its arguments, e.g. `shmctl(shmid=3, IPC_RMID)`.
        call: String,
        /// The kernel's answer.
        errno: Errno,
    },
    /// `ftok` could not `stat` its path.
    #[error("ftok(path={path:?}, proj_id={proj_id:#04x}): cannot stat the path: {} ({}); ftok needs an existing file", errno_name(*.errno), .errno.desc())]
    FtokPath {
        /// The path given.
        path: PathBuf,
        /// The low 8 bits of the project id.
        proj_id: u8,
        /// Why `stat` failed.
        errno: Errno,
    },
    /// `ftok` was given a path with a NUL byte, which no C path can hold.
    #[error("ftok(path={path:?}, proj_id={proj_id:#04x}): the path has a NUL byte at index {at}; a C path ends at its first NUL, so no file has this name; remove the NUL")]
    FtokNul {
        /// The path given.
        path: PathBuf,
        /// The low 8 bits of the project id.
        proj_id: u8,
        /// Where the first NUL is.
        at: usize,
    },
    /// `ftok` produced key 0, which the kernel reads as `IPC_PRIVATE`.
    #[error("ftok(path={path:?}, proj_id={proj_id:#04x}) = 0, which is IPC_PRIVATE: shmget would create a new private segment every time instead of sharing one; use a non-zero proj_id")]
    FtokPrivate {
        /// The path given.
        path: PathBuf,
        /// The low 8 bits of the project id.
        proj_id: u8,
    },
    /// A copy or element access fell outside the attachment.
    #[error("{op}(offset={offset}, len={len}): outside the segment ({limit} bytes usable); offset + len must be at most {limit}")]
    OutOfBounds {
        /// The access (`read_at`, `write_at`, `load_u32`, ...).
        op: &'static str,
        /// The offset asked for.
        offset: usize,
        /// The length of the access.
        len: usize,
        /// The bytes the access may touch.
        limit: usize,
    },
    /// An atomic access at an offset not aligned for its type.
    #[error("{op}(offset={offset}): offset is not a multiple of {align}, the alignment the atomic access needs")]
    Misaligned {
        /// The access.
        op: &'static str,
        /// The offset asked for.
        offset: usize,
        /// The alignment needed.
        align: usize,
    },
    /// A write through an attachment made with `SHM_RDONLY`.
    #[error("{op}: the attachment is read-only (SHM_RDONLY); attach without read_only to write")]
    ReadOnly {
        /// The access.
        op: &'static str,
    },
    /// Reading the system's view (`/proc/sysvipc/shm`, `/proc/sys/kernel/shm*`) failed.
    #[error("{path}: {message}")]
    Proc {
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// The errno of a failed system call, if this error is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { errno, .. } | Error::FtokPath { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    pub(crate) fn sys(errno: Errno, call: impl FnOnce() -> String) -> Error {
        Error::Sys { call: call(), errno }
    }
}

/// The symbolic name of an errno (`EEXIST`), as `errno(3)` spells it.
pub fn errno_name(errno: Errno) -> String {
    // nix's Debug output is exactly the constant's name.
    format!("{errno:?}")
}

/// The errno whose symbolic name is `name` (`"EEXIST"`), if any.
pub fn errno_from_name(name: &str) -> Option<Errno> {
    // Errno values on Linux are below 134; scan them rather than keep a table
    // that could drift from nix's.
    (1..256).map(Errno::from_raw).find(|e| *e != Errno::UnknownErrno && errno_name(*e) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_call_errno_and_meaning() {
        let err = Error::sys(Errno::EEXIST, || "shmget(key=0x14010203, size=4096, IPC_CREAT|IPC_EXCL|0600)".into());
        assert_eq!(err.to_string(), "shmget(key=0x14010203, size=4096, IPC_CREAT|IPC_EXCL|0600): EEXIST (File exists)");
        assert_eq!(err.errno(), Some(Errno::EEXIST));
    }

    #[test]
    fn errno_names_round_trip() {
        for name in ["EEXIST", "ENOENT", "EINVAL", "EACCES", "EPERM", "EIDRM", "ENOSPC", "ENOMEM"] {
            assert_eq!(errno_name(errno_from_name(name).unwrap()), name);
        }
        assert_eq!(errno_from_name("ENOTANERRNO"), None);
    }
}
