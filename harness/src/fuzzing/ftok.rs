//! The ftok target: random paths and project ids; the wrapper's `ftok`
//! equals glibc's bit for bit, and both fail together.

#![allow(unsafe_code)] // opts in: fork and raw mappings of the fuzz world

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use arbitrary::Arbitrary;

use crate::sysv::{self, Errno};

/// One input.
#[derive(Debug, Clone, Arbitrary)]
pub struct FtokInput {
    /// The path.
    pub path: PathPick,
    /// The project id as glibc takes it (an `int`; only the low 8 bits count).
    pub proj: i32,
}

/// Where the path comes from.
#[derive(Debug, Clone, Arbitrary)]
pub enum PathPick {
    /// A file that exists on every Linux machine.
    Known(u8),
    /// Arbitrary text (capped at 256 bytes).
    Raw(String),
    /// A known directory, then arbitrary text.
    Under(u8, String),
}

const KNOWN: &[&str] =
    &["/", "/etc/passwd", "/dev/null", "/proc/self", "/proc/self/maps", "/tmp", "/usr/bin", "/dev/shm", "."];

fn path_of(p: &PathPick) -> PathBuf {
    let known = |n: u8| KNOWN[usize::from(n) % KNOWN.len()];
    let cap = |s: &str| s.chars().take(256).collect::<String>();
    match p {
        PathPick::Known(n) => PathBuf::from(known(*n)),
        PathPick::Raw(s) => PathBuf::from(cap(s)),
        PathPick::Under(n, s) => Path::new(known(*n)).join(cap(s)),
    }
}

/// Runs one input; panics if the wrapper and glibc disagree.
pub fn run(input: &FtokInput) {
    let path = path_of(&input.path);
    let ours = sysv::ftok(&path, input.proj as u8);
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        // glibc cannot even be asked; the wrapper must refuse too.
        assert!(ours.is_err(), "ftok({path:?}) with a NUL byte succeeded: {ours:?}");
        return;
    };
    // SAFETY: a valid C string; ftok only stats it.
    let theirs = unsafe { libc::ftok(c.as_ptr(), input.proj) };
    let errno = Errno::last();
    match ours {
        Ok(key) => assert_eq!(key.raw(), theirs, "ftok({path:?}, {:#x}): wrapper {key}, glibc {theirs:#x}", input.proj),
        Err(sysv::Error::FtokPrivate { .. }) => {
            assert_eq!(theirs, 0, "ftok({path:?}): wrapper says key 0, glibc {theirs:#x}")
        }
        Err(e) => {
            assert_eq!(theirs, -1, "ftok({path:?}, {:#x}): wrapper failed ({e}), glibc gave {theirs:#x}", input.proj);
            assert_eq!(e.errno(), Some(errno), "ftok({path:?}): wrapper {e}, glibc errno {errno}");
        }
    }
}
