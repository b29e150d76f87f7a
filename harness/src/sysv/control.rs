//! `shmctl`: status, attributes, removal, locking and the namespace's limits.

#![allow(unsafe_code)] // opts in: the raw SysV calls and the memory other processes share

use std::fmt;

use libc::c_int;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::flags::Mode;
use super::key::Key;
use super::raw;

/// A segment's identifier, as returned by `shmget`. 0 is a valid shmid.
///
/// A `Shmid` is a plain number: it owns nothing, and copying or dropping it
/// does nothing to the segment. The control calls live here because the kernel
/// needs only the id for them (`IPC_RMID` works without attaching).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Shmid(c_int);

impl Shmid {
    /// A shmid from its raw value.
    pub const fn from_raw(raw: c_int) -> Shmid {
        Shmid(raw)
    }

    /// The raw value.
    pub const fn raw(self) -> c_int {
        self.0
    }

    /// `shmctl(shmid, IPC_STAT, &buf)`—Reads the segment's status.
    ///
    /// Needs read permission. Works on a segment already marked for removal
    /// (its key then reads as [`Key::PRIVATE`] and [`SegmentStat::dest`] is set).
    ///
    /// # Errors
    /// `EINVAL` (no such id), `EIDRM`, `EACCES`.
    ///
    /// # References
    /// - [Linux `shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "IPC_STAT")]
    pub fn stat(self) -> Result<SegmentStat> {
        raw::shmctl_stat(self.0)
            .map(|ds| SegmentStat::from_raw(&ds))
            .map_err(|e| Error::sys(e, || format!("shmctl(shmid={}, IPC_STAT)", self.0)))
    }

    /// `shmctl(shmid, IPC_SET, &buf)`—Sets owner uid, gid and permission bits.
    ///
    /// The kernel takes only these three fields (and only the low nine mode bits).
    ///
    /// # Errors
    /// `EPERM` unless the caller is the owner, the creator or privileged; `EINVAL`.
    #[doc(alias = "IPC_SET")]
    // The field types differ between targets: a conversion that is the
    // identity on x86_64 widens on aarch64 or i686.
    #[allow(clippy::useless_conversion)]
    pub fn set(self, uid: u32, gid: u32, mode: Mode) -> Result<()> {
        // SAFETY: shmid_ds is plain integers; all-zero is a valid value.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        ds.shm_perm.uid = uid;
        ds.shm_perm.gid = gid;
        ds.shm_perm.mode = mode.bits().into();
        raw::shmctl_set(self.0, &ds).map_err(|e| {
            Error::sys(e, || format!("shmctl(shmid={}, IPC_SET, uid={uid}, gid={gid}, mode={mode})", self.0))
        })
    }

    /// Changes only the permission bits: `IPC_STAT`, then `IPC_SET` with the
    /// current uid and gid.
    ///
    /// # Errors
    /// As [`Shmid::stat`] and [`Shmid::set`].
    pub fn set_mode(self, mode: Mode) -> Result<()> {
        let st = self.stat()?;
        self.set(st.uid, st.gid, mode)
    }

    /// `shmctl(shmid, IPC_RMID, NULL)`—Marks the segment for destruction.
    ///
    /// The segment is destroyed once nothing is attached; until then its key
    /// reads as `IPC_PRIVATE` (so a new segment may take the key) and existing
    /// attachments stay usable.
    ///
    /// # Errors
    /// `EINVAL` (no such id), `EIDRM`, `EPERM`.
    #[doc(alias = "IPC_RMID")]
    pub fn remove(self) -> Result<()> {
        raw::shmctl_rmid(self.0).map_err(|e| Error::sys(e, || format!("shmctl(shmid={}, IPC_RMID)", self.0)))
    }

    /// `shmctl(shmid, SHM_LOCK, NULL)`—Keeps the segment's pages from being swapped.
    ///
    /// # Errors
    /// `EPERM` without `CAP_IPC_LOCK` beyond `RLIMIT_MEMLOCK`, `ENOMEM`, `EINVAL`.
    #[doc(alias = "SHM_LOCK")]
    pub fn lock(self) -> Result<()> {
        raw::shmctl_lock(self.0, true).map_err(|e| Error::sys(e, || format!("shmctl(shmid={}, SHM_LOCK)", self.0)))
    }

    /// `shmctl(shmid, SHM_UNLOCK, NULL)`—Undoes [`Shmid::lock`].
    ///
    /// # Errors
    /// `EPERM`, `EINVAL`.
    #[doc(alias = "SHM_UNLOCK")]
    pub fn unlock(self) -> Result<()> {
        raw::shmctl_lock(self.0, false).map_err(|e| Error::sys(e, || format!("shmctl(shmid={}, SHM_UNLOCK)", self.0)))
    }
}

impl fmt::Display for Shmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A segment's status (`struct shmid_ds`), with the `shm_perm.mode` bits decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentStat {
    /// `shm_perm.__key`: [`Key::PRIVATE`] once the segment is removed.
    pub key: Key,
    /// `shm_perm.uid`: owner.
    pub uid: u32,
    /// `shm_perm.gid`: owner's group.
    pub gid: u32,
    /// `shm_perm.cuid`: creator.
    pub cuid: u32,
    /// `shm_perm.cgid`: creator's group.
    pub cgid: u32,
    /// The permission bits of `shm_perm.mode`.
    pub mode: Mode,
    /// `SHM_DEST` in `shm_perm.mode`: removed, destroyed at the last detach.
    pub dest: bool,
    /// `SHM_LOCKED` in `shm_perm.mode`: locked in memory.
    pub locked: bool,
    /// `shm_perm.__seq`: the slot's reuse counter.
    pub seq: u16,
    /// `shm_segsz`: the size asked for at creation (not page-rounded).
    pub size: usize,
    /// `shm_atime`: last attach (seconds since the epoch, 0 if never).
    pub atime: i64,
    /// `shm_dtime`: last detach.
    pub dtime: i64,
    /// `shm_ctime`: creation or last change by `IPC_SET`.
    pub ctime: i64,
    /// `shm_cpid`: the creating process.
    pub cpid: i32,
    /// `shm_lpid`: the last process to attach or detach.
    pub lpid: i32,
    /// `shm_nattch`: current attachments.
    pub nattch: u64,
}

impl SegmentStat {
    /// Decodes a raw `shmid_ds`.
    ///
    /// The field types of `shmid_ds` differ between targets (`mode` is a
    /// `u16` on x86_64 and a `u32` on aarch64, `shm_nattch` and the times are
    /// 32-bit on i686); every conversion here widens losslessly (`From`), so
    /// a target where one would truncate does not compile.
    // The field types differ between targets: a conversion that is the
    // identity on x86_64 widens on aarch64 or i686.
    #[allow(clippy::useless_conversion)]
    pub fn from_raw(ds: &libc::shmid_ds) -> SegmentStat {
        let perm = &ds.shm_perm;
        let mode = u32::from(perm.mode);
        SegmentStat {
            key: Key::from_raw(perm.__key),
            uid: perm.uid,
            gid: perm.gid,
            cuid: perm.cuid,
            cgid: perm.cgid,
            mode: Mode::from_bits_truncate(mode),
            dest: mode & raw::SHM_DEST != 0,
            locked: mode & raw::SHM_LOCKED != 0,
            seq: perm.__seq,
            size: ds.shm_segsz,
            atime: i64::from(ds.shm_atime),
            dtime: i64::from(ds.shm_dtime),
            ctime: i64::from(ds.shm_ctime),
            cpid: ds.shm_cpid,
            lpid: ds.shm_lpid,
            nattch: u64::from(ds.shm_nattch),
        }
    }
}

/// The namespace's limits as `IPC_INFO` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmLimits {
    /// Largest segment in bytes (`kernel.shmmax`).
    pub shmmax: u64,
    /// Smallest segment in bytes (always 1).
    pub shmmin: u64,
    /// Most segments in the namespace (`kernel.shmmni`).
    pub shmmni: u64,
    /// Most attachments per process (Linux reports `SHMSEG`, not enforced).
    pub shmseg: u64,
    /// Most pages in all segments together (`kernel.shmall`).
    pub shmall: u64,
    /// The highest index in use (0 when none is; see [`stat_index`]).
    pub max_index: i32,
}

/// `shmctl(0, IPC_INFO, &buf)`—Reads the IPC namespace's shared-memory limits.
///
/// # Errors
/// Only if a security module forbids it.
#[doc(alias = "IPC_INFO")]
// The field types differ between targets: a conversion that is the
// identity on x86_64 widens on i686.
#[allow(clippy::useless_conversion)]
pub fn limits() -> Result<ShmLimits> {
    let (max_index, info) = raw::shmctl_ipc_info().map_err(|e| Error::sys(e, || "shmctl(0, IPC_INFO)".into()))?;
    Ok(ShmLimits {
        shmmax: u64::from(info.shmmax),
        shmmin: u64::from(info.shmmin),
        shmmni: u64::from(info.shmmni),
        shmseg: u64::from(info.shmseg),
        shmall: u64::from(info.shmall),
        max_index,
    })
}

/// The namespace's usage as `SHM_INFO` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmUsage {
    /// Segments that exist (`used_ids`).
    pub used_ids: i32,
    /// Pages allocated to all segments (`shm_tot`).
    pub shm_tot: u64,
    /// Resident pages (`shm_rss`).
    pub shm_rss: u64,
    /// Swapped pages (`shm_swp`).
    pub shm_swp: u64,
    /// The highest index in use (0 when none is).
    pub max_index: i32,
}

/// `shmctl(0, SHM_INFO, &buf)`—Reads the IPC namespace's shared-memory usage.
///
/// # Errors
/// Only if a security module forbids it.
#[doc(alias = "SHM_INFO")]
// The field types differ between targets: a conversion that is the
// identity on x86_64 widens on i686.
#[allow(clippy::useless_conversion)]
pub fn usage() -> Result<ShmUsage> {
    let (max_index, info) = raw::shmctl_shm_info().map_err(|e| Error::sys(e, || "shmctl(0, SHM_INFO)".into()))?;
    Ok(ShmUsage {
        used_ids: info.used_ids,
        shm_tot: u64::from(info.shm_tot),
        shm_rss: u64::from(info.shm_rss),
        shm_swp: u64::from(info.shm_swp),
        max_index,
    })
}

/// `shmctl(index, SHM_STAT or SHM_STAT_ANY, &buf)`—Reads the segment at a
/// kernel index (`0..=max_index`), returning its shmid and status.
///
/// `any` selects `SHM_STAT_ANY` (Linux 4.17+), which skips the read
/// permission check, as `ipcs` needs to list everything.
///
/// # Errors
/// `EINVAL` for an unused index, `EACCES` without read permission (`SHM_STAT`).
#[doc(alias = "SHM_STAT")]
#[doc(alias = "SHM_STAT_ANY")]
pub fn stat_index(index: i32, any: bool) -> Result<(Shmid, SegmentStat)> {
    raw::shmctl_stat_index(index, any).map(|(id, ds)| (Shmid(id), SegmentStat::from_raw(&ds))).map_err(|e| {
        Error::sys(e, || format!("shmctl(index={index}, {})", if any { "SHM_STAT_ANY" } else { "SHM_STAT" }))
    })
}

/// Every segment of the IPC namespace, found by `SHM_STAT_ANY` over the
/// kernel's indices (no `/proc` needed).
///
/// # Errors
/// As [`limits`] and [`stat_index`], except that unused indices are skipped.
pub fn all_segments() -> Result<Vec<(Shmid, SegmentStat)>> {
    let max_index = usage()?.max_index;
    let mut out = Vec::new();
    for index in 0..=max_index {
        match stat_index(index, true) {
            Ok(found) => out.push(found),
            // Unused index, or removed between the two calls.
            Err(e) if matches!(e.errno(), Some(nix::errno::Errno::EINVAL | nix::errno::Errno::EIDRM)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shmids_print_as_numbers_in_error_messages() {
        assert_eq!(Shmid::from_raw(32769).to_string(), "32769");
        assert_eq!(Shmid::from_raw(-1).to_string(), "-1");
        // No segment has id -1: the message names the call with it.
        let err = Shmid::from_raw(-1).stat().unwrap_err();
        assert_eq!(err.to_string(), "shmctl(shmid=-1, IPC_STAT): EINVAL (Invalid argument)");
        // (The calls that change segments are tested with the same id in a
        // private namespace, tests/wrapper.rs: a mutant of `from_raw` must
        // not be able to aim them at a host segment.)
        let err = stat_index(-1, true).unwrap_err();
        assert_eq!(err.to_string(), "shmctl(index=-1, SHM_STAT_ANY): EINVAL (Invalid argument)");
        let err = stat_index(-1, false).unwrap_err();
        assert_eq!(err.to_string(), "shmctl(index=-1, SHM_STAT): EINVAL (Invalid argument)");
    }

    #[test]
    fn decodes_mode_bits_and_widens_fields() {
        // SAFETY: shmid_ds is plain integers; all-zero is a valid value.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        ds.shm_perm.__key = 0x5eed;
        ds.shm_perm.mode = (0o640 | raw::SHM_DEST | raw::SHM_LOCKED) as _;
        ds.shm_segsz = 100;
        ds.shm_nattch = 2;
        ds.shm_ctime = 1_700_000_000;
        let st = SegmentStat::from_raw(&ds);
        assert_eq!((st.key.raw(), st.mode.bits(), st.dest, st.locked), (0x5eed, 0o640, true, true));
        assert_eq!((st.size, st.nattch, st.ctime), (100, 2, 1_700_000_000));
        ds.shm_perm.mode = (0o600 | raw::SHM_DEST) as _;
        let st = SegmentStat::from_raw(&ds);
        assert!(st.dest && !st.locked);
        ds.shm_perm.mode = (0o600 | raw::SHM_LOCKED) as _;
        let st = SegmentStat::from_raw(&ds);
        assert!(!st.dest && st.locked);
    }
}
