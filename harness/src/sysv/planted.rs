//! Known bugs that can be planted in the wrapper, to prove the fuzz oracles
//! catch them (`--features planted-bugs`, then
//! `SHM_HARNESS_PLANTED=name[,name...]`). Never enabled in a normal build.
//!
//! This file is the only one with `cfg(feature = "planted-bugs")` code. The
//! rest of the crate reaches a planted bug through one call without
//! operators of its own: [`active`] for a bug that skips a step, or a hook
//! that returns the planted answer ([`shmget_size`], [`shmget_refusal`],
//! [`shmget_id`], [`shmctl_target`], [`plain_copy`], [`unmap_nattch`]).
//! Without the feature every hook is a `const fn` that answers as if no bug
//! were planted, so a normal build compiles to the same code as before,
//! and mutation testing (`scripts/mutants.sh`) excludes this one file
//! instead of chasing planted branches elsewhere.

#![allow(unsafe_code)] // opts in: `plain-copies` is a racy copy on purpose

use libc::c_int;

use super::command::ShmctlCmd;
use super::error::Error;
use super::key::Key;

/// The bugs that can be planted, by the name `SHM_HARNESS_PLANTED` gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// `no-remove-on-drop`: the segment guard forgets to remove.
    NoRemoveOnDrop,
    /// `no-detach-on-drop`: the attachment forgets to detach.
    NoDetachOnDrop,
    /// `accept-size-0`: `shmget` turns size 0 into 1 instead of letting the
    /// kernel refuse.
    AcceptSize0,
    /// `shmid-as-index`: `shmget` returns the kernel's index, not the id.
    ShmidAsIndex,
    /// `spurious-enospc`: the create path reports `ENOSPC` without asking the
    /// kernel for sizes that are not whole pages (a rounding bug in a limit
    /// pre-check); in host mode only a model that knows the namespace's
    /// limits can tell.
    SpuriousEnospc,
    /// `plain-copies`: `read_at`/`write_at` are plain `memcpy`s, a data race
    /// that ThreadSanitizer must report (`tests/race.rs`).
    PlainCopies,
    /// `stat-index-shifted`: the raw `shmctl` asks `SHM_STAT`/`SHM_STAT_ANY`
    /// for the index after the one given (an off-by-one in an index walk).
    StatIndexShifted,
    /// `no-ipc-namespace`: not a bug in the wrapper;
    /// `enter_private_ipc_namespace` fails as on a host without the right, so
    /// that host mode can be tested inside a namespace the test made.
    NoIpcNamespace,
    /// `model-unmap-keeps-nattch`: not a bug in the wrapper; the `ops` model
    /// forgets that an unmap of a whole attachment detaches it (the control
    /// for the mapping oracle, `fuzzing::mapping`).
    ModelUnmapKeepsNattch,
}

impl Bug {
    /// Every bug that can be planted.
    pub const ALL: [Bug; 9] = [
        Bug::NoRemoveOnDrop,
        Bug::NoDetachOnDrop,
        Bug::AcceptSize0,
        Bug::ShmidAsIndex,
        Bug::SpuriousEnospc,
        Bug::PlainCopies,
        Bug::StatIndexShifted,
        Bug::NoIpcNamespace,
        Bug::ModelUnmapKeepsNattch,
    ];

    /// The name `SHM_HARNESS_PLANTED` plants it by.
    pub const fn name(self) -> &'static str {
        match self {
            Bug::NoRemoveOnDrop => "no-remove-on-drop",
            Bug::NoDetachOnDrop => "no-detach-on-drop",
            Bug::AcceptSize0 => "accept-size-0",
            Bug::ShmidAsIndex => "shmid-as-index",
            Bug::SpuriousEnospc => "spurious-enospc",
            Bug::PlainCopies => "plain-copies",
            Bug::StatIndexShifted => "stat-index-shifted",
            Bug::NoIpcNamespace => "no-ipc-namespace",
            Bug::ModelUnmapKeepsNattch => "model-unmap-keeps-nattch",
        }
    }
}

/// Whether `bug` is planted in this process (named in `SHM_HARNESS_PLANTED`).
#[cfg(feature = "planted-bugs")]
pub fn active(bug: Bug) -> bool {
    use std::sync::OnceLock;
    static ACTIVE: OnceLock<Vec<String>> = OnceLock::new();
    ACTIVE
        .get_or_init(|| {
            std::env::var("SHM_HARNESS_PLANTED")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default()
        })
        .iter()
        .any(|b| b == bug.name())
}

/// Whether `bug` is planted: never, without the `planted-bugs` feature.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub const fn active(_bug: Bug) -> bool {
    false
}

/// The size `shmget` asks the kernel for: `size`, or 1 for 0 with
/// `accept-size-0` planted.
#[cfg(feature = "planted-bugs")]
pub fn shmget_size(size: usize) -> usize {
    if size == 0 && active(Bug::AcceptSize0) {
        1
    } else {
        size
    }
}

/// The size `shmget` asks the kernel for: `size`.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub const fn shmget_size(size: usize) -> usize {
    size
}

/// The error `shmget(key, size, flags)` returns without asking the kernel:
/// `ENOSPC` for a new segment whose size is not whole pages, with
/// `spurious-enospc` planted; otherwise none.
#[cfg(feature = "planted-bugs")]
pub fn shmget_refusal(key: Key, size: usize, flags: c_int) -> Option<Error> {
    use super::raw;
    let refused = flags & raw::IPC_CREAT != 0
        && flags & raw::SHM_HUGETLB == 0
        && size % raw::page_size() != 0
        && active(Bug::SpuriousEnospc)
        && raw::shmget(key.raw(), 0, 0).is_err();
    refused.then(|| {
        Error::sys(nix::errno::Errno::ENOSPC, || {
            format!("shmget(key={key}, size={size}, {})", super::flags::describe_get_flags(flags))
        })
    })
}

/// The error `shmget` returns without asking the kernel: none.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub const fn shmget_refusal(_key: Key, _size: usize, _flags: c_int) -> Option<Error> {
    None
}

/// The id `shmget` hands out for the kernel's `id`: the id, or its index
/// (the low 15 bits) with `shmid-as-index` planted.
#[cfg(feature = "planted-bugs")]
pub fn shmget_id(id: c_int) -> c_int {
    if active(Bug::ShmidAsIndex) {
        id & 0x7fff
    } else {
        id
    }
}

/// The id `shmget` hands out for the kernel's `id`: the id.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub const fn shmget_id(id: c_int) -> c_int {
    id
}

/// The id or index the raw `shmctl` passes for `target`: `target`, or the
/// next index for `SHM_STAT`/`SHM_STAT_ANY` with `stat-index-shifted`
/// planted.
#[cfg(feature = "planted-bugs")]
pub fn shmctl_target(target: c_int, cmd: ShmctlCmd) -> c_int {
    if matches!(cmd, ShmctlCmd::ShmStat | ShmctlCmd::ShmStatAny) && active(Bug::StatIndexShifted) {
        target.wrapping_add(1)
    } else {
        target
    }
}

/// The id or index the raw `shmctl` passes for `target`: `target`.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub const fn shmctl_target(target: c_int, _cmd: ShmctlCmd) -> c_int {
    target
}

/// With `plain-copies` planted, copies `len` bytes from `src` to `dst` with a
/// plain `memcpy` (the data race ThreadSanitizer must report) and answers
/// true; otherwise copies nothing and answers false.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `len` bytes, and the
/// two ranges must not overlap. (Another thread or process writing the
/// shared range at the same time is the planted bug itself.)
#[cfg(feature = "planted-bugs")]
pub unsafe fn plain_copy(src: *const u8, dst: *mut u8, len: usize) -> bool {
    if !active(Bug::PlainCopies) {
        return false;
    }
    // SAFETY: the caller's terms; the race with other writers is the
    // planted bug ThreadSanitizer must report.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
    true
}

/// Copies nothing and answers false: no bug is planted.
///
/// # Safety
/// None needed (nothing is touched); the terms are those of the planted
/// version: `src` valid for reads and `dst` for writes of `len` bytes.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub const unsafe fn plain_copy(_src: *const u8, _dst: *mut u8, _len: usize) -> bool {
    false
}

/// The attachment count the `ops` model records after an unmap that leaves
/// `after` pieces of an attachment that had `before`: `after`, or `before`
/// for a whole unmap with `model-unmap-keeps-nattch` planted (a whole unmap
/// is then not a detach).
#[cfg(feature = "planted-bugs")]
pub fn unmap_nattch(before: u64, after: u64) -> u64 {
    if after == 0 && active(Bug::ModelUnmapKeepsNattch) {
        before
    } else {
        after
    }
}

/// The attachment count the `ops` model records after an unmap: `after`.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub const fn unmap_nattch(_before: u64, after: u64) -> u64 {
    after
}
