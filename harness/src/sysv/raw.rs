//! The raw layer: the SysV shared-memory system calls as thin functions that
//! return [`nix::errno::Errno`] on failure, plus the uapi constants and
//! structures that the `libc` crate lacks.
//!
//! Nothing here allocates, builds strings or tracks ownership; the safe layer
//! in [`crate::sysv`] does that. Every function is async-signal-safe (a plain
//! system call through glibc), so it may be used in a child after `fork` of a
//! multi-threaded parent.

#![allow(unsafe_code)] // opts in: the raw SysV calls and the memory other processes share

use std::ffi::c_void;
use std::mem::MaybeUninit;

use libc::{c_int, c_ulong, key_t};
use nix::errno::Errno;

/// `IPC_PRIVATE`: the key that always creates a new segment.
pub const IPC_PRIVATE: key_t = 0;
/// `IPC_CREAT` (shmget flag): create the segment if the key is new.
pub const IPC_CREAT: c_int = 0o1000;
/// `IPC_EXCL` (shmget flag): with `IPC_CREAT`, fail with `EEXIST` if the key exists.
pub const IPC_EXCL: c_int = 0o2000;
/// `SHM_HUGETLB` (shmget flag): back the segment with huge pages.
pub const SHM_HUGETLB: c_int = 0o4000;
/// `SHM_NORESERVE` (shmget flag): do not reserve swap space.
pub const SHM_NORESERVE: c_int = 0o10000;
/// `SHM_HUGE_SHIFT`: where the log2 of the huge page size sits in shmget flags.
pub const SHM_HUGE_SHIFT: c_int = 26;
/// `SHM_HUGE_MASK`: the width of the huge page size field.
pub const SHM_HUGE_MASK: c_int = 0x3f;
/// `SHM_HUGE_2MB` = 21 << `SHM_HUGE_SHIFT`.
pub const SHM_HUGE_2MB: c_int = 21 << SHM_HUGE_SHIFT;
/// `SHM_HUGE_1GB` = 30 << `SHM_HUGE_SHIFT`.
pub const SHM_HUGE_1GB: c_int = 30 << SHM_HUGE_SHIFT;

/// `SHM_RDONLY` (shmat flag): attach read-only.
pub const SHM_RDONLY: c_int = 0o10000;
/// `SHM_RND` (shmat flag): round the attach address down to `SHMLBA`.
pub const SHM_RND: c_int = 0o20000;
/// `SHM_REMAP` (shmat flag): replace any mapping at the address.
pub const SHM_REMAP: c_int = 0o40000;
/// `SHM_EXEC` (shmat flag): map the segment executable.
pub const SHM_EXEC: c_int = 0o100000;

/// `SHM_DEST` (bit of `shm_perm.mode`): removed, destroyed at the last detach.
/// Same value as `IPC_CREAT`, which is why flags and modes have distinct types.
/// A `u32`, the widest of `ipc_perm.mode`'s types across targets.
pub const SHM_DEST: u32 = 0o1000;
/// `SHM_LOCKED` (bit of `shm_perm.mode`): locked in memory by `SHM_LOCK`.
/// Same value as `IPC_EXCL`.
pub const SHM_LOCKED: u32 = 0o2000;

/// `IPC_RMID` (shmctl command).
pub const IPC_RMID: c_int = 0;
/// `IPC_SET` (shmctl command).
pub const IPC_SET: c_int = 1;
/// `IPC_STAT` (shmctl command).
pub const IPC_STAT: c_int = 2;
/// `IPC_INFO` (shmctl command).
pub const IPC_INFO: c_int = 3;
/// `SHM_LOCK` (shmctl command).
pub const SHM_LOCK: c_int = 11;
/// `SHM_UNLOCK` (shmctl command).
pub const SHM_UNLOCK: c_int = 12;
/// `SHM_STAT` (shmctl command): stat by index, returns the shmid.
pub const SHM_STAT: c_int = 13;
/// `SHM_INFO` (shmctl command).
pub const SHM_INFO: c_int = 14;
/// `SHM_STAT_ANY` (shmctl command, Linux 4.17+): `SHM_STAT` without the read
/// permission check.
pub const SHM_STAT_ANY: c_int = 15;

/// `struct shminfo` as filled by `shmctl(_, IPC_INFO, _)` (uapi `shminfo64`
/// on 64-bit targets; glibc's `struct shminfo` has the same layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct shminfo {
    pub shmmax: c_ulong,
    pub shmmin: c_ulong,
    pub shmmni: c_ulong,
    pub shmseg: c_ulong,
    pub shmall: c_ulong,
    pub unused: [c_ulong; 4],
}

/// `struct shm_info` as filled by `shmctl(_, SHM_INFO, _)`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct shm_info {
    pub used_ids: c_int,
    pub shm_tot: c_ulong,
    pub shm_rss: c_ulong,
    pub shm_swp: c_ulong,
    pub swap_attempts: c_ulong,
    pub swap_successes: c_ulong,
}

/// `shmget(key, size, shmflg)`—Gets or creates a segment; returns its shmid.
///
/// # Errors
/// The kernel's errno (`EEXIST`, `ENOENT`, `EINVAL`, `EACCES`, `ENOSPC`, `ENOMEM`, `EPERM`).
///
/// # References
/// - [Linux `shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
pub fn shmget(key: key_t, size: usize, shmflg: c_int) -> Result<c_int, Errno> {
    // SAFETY: plain system call with integer arguments.
    let id = unsafe { libc::shmget(key, size, shmflg) };
    Errno::result(id)
}

/// `shmat(shmid, shmaddr, shmflg)`—Attaches a segment; returns the address.
///
/// Failure is `(void *)-1`, never `NULL`: this function checks for exactly that.
///
/// # Safety
/// With a non-null `shmaddr` and `SHM_REMAP`, the kernel replaces whatever is
/// mapped there; the caller must own that range. With a null address the call
/// is memory-safe, but the returned mapping must be detached only once.
///
/// # References
/// - [Linux `shmat(2)`](https://man7.org/linux/man-pages/man2/shmat.2.html)
pub unsafe fn shmat(shmid: c_int, shmaddr: *const c_void, shmflg: c_int) -> Result<*mut c_void, Errno> {
    // SAFETY: forwarded to the caller's contract.
    let addr = unsafe { libc::shmat(shmid, shmaddr, shmflg) };
    if addr as isize == -1 {
        Err(Errno::last())
    } else {
        Ok(addr)
    }
}

/// `shmdt(shmaddr)`—Detaches the segment attached at `shmaddr`.
///
/// # Safety
/// Nothing may use the mapping afterwards.
///
/// # References
/// - [Linux `shmdt(2)`](https://man7.org/linux/man-pages/man2/shmdt.2.html)
pub unsafe fn shmdt(shmaddr: *const c_void) -> Result<(), Errno> {
    // SAFETY: forwarded to the caller's contract.
    Errno::result(unsafe { libc::shmdt(shmaddr) }).map(drop)
}

/// `shmctl(shmid, cmd, buf)`—Performs a control command with a `shmid_ds` buffer.
///
/// This is the `shmctl` system call itself, not the C library's wrapper,
/// which may rewrite the command: glibc 2.37 and later strip `IPC_64`
/// (`0x100`, glibc bug 29771), so through it `0x102` would be `IPC_STAT`
/// and a test would see the library's answer, not the kernel's.
/// On the targets this crate builds for (x86_64, aarch64, i686's call 396)
/// the kernel's `shmctl` is `sys_shmctl`, which takes `cmd` as it is. Only
/// `ksys_old_shmctl` in `ipc/shm.c` strips `IPC_64` (`ipc_parse_version`):
/// the `ipc(2)` multiplexer, and the `shmctl` call of 32-bit arm and alpha
/// (`sys_old_shmctl`), on architectures that select
/// `CONFIG_ARCH_WANT_IPC_PARSE_VERSION`.
///
/// # Safety
/// `buf` must be null (for commands that ignore it) or point to memory large
/// enough for what `cmd` writes: `shmid_ds` for `IPC_STAT`/`IPC_SET`/`SHM_STAT*`,
/// [`shminfo`] for `IPC_INFO`, [`shm_info`] for `SHM_INFO`.
///
/// # References
/// - [Linux `shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
pub unsafe fn shmctl(shmid: c_int, cmd: c_int, buf: *mut c_void) -> Result<c_int, Errno> {
    // SAFETY: forwarded to the caller's contract; the arguments are those
    // of `shmctl(2)`, as ints and a pointer.
    let ret = unsafe { libc::syscall(SYS_SHMCTL, shmid, cmd, buf) };
    // The kernel returns an int (a shmid, an index, or 0) or -1 with errno.
    Errno::result(ret).map(|r| r as c_int)
}

/// The `shmctl` system call's number: libc names it on every Linux target
/// but 32-bit x86, where it is 396 (since Linux 5.1; before, only the
/// `ipc(2)` multiplexer had it).
#[cfg(not(target_arch = "x86"))]
const SYS_SHMCTL: libc::c_long = libc::SYS_shmctl;
#[cfg(target_arch = "x86")]
const SYS_SHMCTL: libc::c_long = 396;

/// `shmctl(shmid, IPC_STAT, &buf)`—Reads a segment's `shmid_ds`.
#[doc(alias = "IPC_STAT")]
pub fn shmctl_stat(shmid: c_int) -> Result<libc::shmid_ds, Errno> {
    stat_cmd(shmid, IPC_STAT).map(|(_, ds)| ds)
}

/// `shmctl(index, SHM_STAT or SHM_STAT_ANY, &buf)`—Reads the segment at a
/// kernel index; returns its shmid and `shmid_ds`.
#[doc(alias = "SHM_STAT")]
#[doc(alias = "SHM_STAT_ANY")]
pub fn shmctl_stat_index(index: c_int, any: bool) -> Result<(c_int, libc::shmid_ds), Errno> {
    stat_cmd(index, if any { SHM_STAT_ANY } else { SHM_STAT })
}

fn stat_cmd(id: c_int, cmd: c_int) -> Result<(c_int, libc::shmid_ds), Errno> {
    let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` is a `shmid_ds`, which is what these commands write.
    let ret = unsafe { shmctl(id, cmd, ds.as_mut_ptr().cast())? };
    // SAFETY: zeroed is a valid `shmid_ds` (plain integers), and the kernel filled it.
    Ok((ret, unsafe { ds.assume_init() }))
}

/// `shmctl(shmid, IPC_SET, &buf)`—Sets uid, gid and the low 9 mode bits.
#[doc(alias = "IPC_SET")]
pub fn shmctl_set(shmid: c_int, ds: &libc::shmid_ds) -> Result<(), Errno> {
    let mut copy = *ds;
    // SAFETY: `copy` is a `shmid_ds`; IPC_SET only reads it.
    unsafe { shmctl(shmid, IPC_SET, (&mut copy as *mut libc::shmid_ds).cast()) }.map(drop)
}

/// `shmctl(shmid, IPC_RMID, NULL)`—Marks a segment for destruction.
#[doc(alias = "IPC_RMID")]
pub fn shmctl_rmid(shmid: c_int) -> Result<(), Errno> {
    // SAFETY: IPC_RMID ignores the buffer.
    unsafe { shmctl(shmid, IPC_RMID, std::ptr::null_mut()) }.map(drop)
}

/// `shmctl(shmid, SHM_LOCK or SHM_UNLOCK, NULL)`—Locks or unlocks a segment in memory.
#[doc(alias = "SHM_LOCK")]
#[doc(alias = "SHM_UNLOCK")]
pub fn shmctl_lock(shmid: c_int, lock: bool) -> Result<(), Errno> {
    let cmd = if lock { SHM_LOCK } else { SHM_UNLOCK };
    // SAFETY: SHM_LOCK and SHM_UNLOCK ignore the buffer.
    unsafe { shmctl(shmid, cmd, std::ptr::null_mut()) }.map(drop)
}

/// `shmctl(0, IPC_INFO, &buf)`—Reads the namespace's limits; returns the
/// highest used index (0 when none is used) and the limits.
#[doc(alias = "IPC_INFO")]
pub fn shmctl_ipc_info() -> Result<(c_int, shminfo), Errno> {
    let mut info = shminfo::default();
    // SAFETY: IPC_INFO writes a `struct shminfo`.
    let ret = unsafe { shmctl(0, IPC_INFO, (&mut info as *mut shminfo).cast())? };
    Ok((ret, info))
}

/// `shmctl(0, SHM_INFO, &buf)`—Reads the namespace's usage; returns the
/// highest used index (0 when none is used) and the usage.
#[doc(alias = "SHM_INFO")]
pub fn shmctl_shm_info() -> Result<(c_int, shm_info), Errno> {
    let mut info = shm_info::default();
    // SAFETY: SHM_INFO writes a `struct shm_info`.
    let ret = unsafe { shmctl(0, SHM_INFO, (&mut info as *mut shm_info).cast())? };
    Ok((ret, info))
}

/// The system page size (`sysconf(_SC_PAGESIZE)`).
///
/// # Panics
/// If `sysconf` fails, which glibc never does for `_SC_PAGESIZE` (it is the
/// kernel's `AT_PAGESZ`); guessing 4096 would be wrong on 16 KiB and 64 KiB
/// page kernels (aarch64).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|s| s.is_power_of_two()).expect("sysconf(_SC_PAGESIZE) failed")
}
