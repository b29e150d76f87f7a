//! `shmctl` as one general call: any command, any target, with a typed
//! answer. The friendly calls ([`Shmid::stat`], [`Shmid::remove`],
//! [`limits`](super::limits), ...) cover the usual uses; this is for
//! asking the kernel exactly what a test wants to ask (an index for
//! `SHM_STAT`, an invalid command, a buffer it cannot write).

#![allow(unsafe_code)] // opts in: the raw SysV calls and the memory other processes share

use std::ffi::c_void;
use std::fmt;

use libc::c_int;
use serde::{Deserialize, Serialize};

use super::control::{SegmentStat, ShmLimits, ShmUsage, Shmid};
use super::error::{Error, Result};
use super::ignored::IgnoredFields;
use super::raw;

/// `IPC_64`: the "new" `ipc_perm` layout flag. The `shmctl` system call
/// this crate makes (`sys_shmctl`: x86_64, aarch64, i686) does not strip
/// it, so `shmctl(id, IPC_STAT | IPC_64)` is `EINVAL`; only
/// `ksys_old_shmctl` does (`ipc_parse_version`: the `ipc(2)` multiplexer,
/// and 32-bit arm's and alpha's `shmctl`), see [`raw::shmctl`].
pub const IPC_64: c_int = 0x100;

/// A `shmctl` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShmctlCmd {
    /// `IPC_STAT`: a segment's `shmid_ds`, by id.
    IpcStat,
    /// `IPC_SET`: uid, gid and the low nine mode bits.
    IpcSet,
    /// `IPC_RMID`: mark for destruction.
    IpcRmid,
    /// `IPC_INFO`: the namespace's limits (`struct shminfo`).
    IpcInfo,
    /// `SHM_INFO`: the namespace's usage (`struct shm_info`).
    ShmInfo,
    /// `SHM_STAT`: a segment's `shmid_ds`, by index; returns its id.
    ShmStat,
    /// `SHM_STAT_ANY`: `SHM_STAT` without the read permission check.
    ShmStatAny,
    /// `SHM_LOCK`.
    ShmLock,
    /// `SHM_UNLOCK`.
    ShmUnlock,
    /// Any other number, passed as is.
    Other(c_int),
}

impl ShmctlCmd {
    /// The named commands.
    pub const NAMED: [ShmctlCmd; 9] = [
        ShmctlCmd::IpcStat,
        ShmctlCmd::IpcSet,
        ShmctlCmd::IpcRmid,
        ShmctlCmd::IpcInfo,
        ShmctlCmd::ShmInfo,
        ShmctlCmd::ShmStat,
        ShmctlCmd::ShmStatAny,
        ShmctlCmd::ShmLock,
        ShmctlCmd::ShmUnlock,
    ];

    /// The number passed to the kernel.
    pub const fn raw(self) -> c_int {
        match self {
            ShmctlCmd::IpcStat => raw::IPC_STAT,
            ShmctlCmd::IpcSet => raw::IPC_SET,
            ShmctlCmd::IpcRmid => raw::IPC_RMID,
            ShmctlCmd::IpcInfo => raw::IPC_INFO,
            ShmctlCmd::ShmInfo => raw::SHM_INFO,
            ShmctlCmd::ShmStat => raw::SHM_STAT,
            ShmctlCmd::ShmStatAny => raw::SHM_STAT_ANY,
            ShmctlCmd::ShmLock => raw::SHM_LOCK,
            ShmctlCmd::ShmUnlock => raw::SHM_UNLOCK,
            ShmctlCmd::Other(n) => n,
        }
    }

    /// The command's name (`IPC_STAT`), or its number.
    pub fn name(self) -> String {
        match self {
            ShmctlCmd::IpcStat => "IPC_STAT".into(),
            ShmctlCmd::IpcSet => "IPC_SET".into(),
            ShmctlCmd::IpcRmid => "IPC_RMID".into(),
            ShmctlCmd::IpcInfo => "IPC_INFO".into(),
            ShmctlCmd::ShmInfo => "SHM_INFO".into(),
            ShmctlCmd::ShmStat => "SHM_STAT".into(),
            ShmctlCmd::ShmStatAny => "SHM_STAT_ANY".into(),
            ShmctlCmd::ShmLock => "SHM_LOCK".into(),
            ShmctlCmd::ShmUnlock => "SHM_UNLOCK".into(),
            ShmctlCmd::Other(n) => n.to_string(),
        }
    }

    /// The command called `name`.
    pub fn from_name(name: &str) -> Option<ShmctlCmd> {
        ShmctlCmd::NAMED.into_iter().find(|c| c.name() == name)
    }

    /// What the `shmctl` system call takes `n` for: a named command when
    /// `n` is its number exactly (the call does not strip [`IPC_64`]), else
    /// `Other(n)`, negative numbers included (`EINVAL` before anything
    /// else: `cmd < 0` in `ksys_shmctl`).
    pub fn from_raw(n: c_int) -> ShmctlCmd {
        ShmctlCmd::NAMED.into_iter().find(|c| c.raw() == n).unwrap_or(ShmctlCmd::Other(n))
    }

    /// Whether it writes a `shmid_ds` into the buffer.
    pub const fn reads_stat(self) -> bool {
        matches!(self, ShmctlCmd::IpcStat | ShmctlCmd::ShmStat | ShmctlCmd::ShmStatAny)
    }

    /// Whether it changes a segment (or may: an unknown number is not
    /// assumed harmless).
    pub const fn changes(self) -> bool {
        matches!(
            self,
            ShmctlCmd::IpcSet | ShmctlCmd::IpcRmid | ShmctlCmd::ShmLock | ShmctlCmd::ShmUnlock | ShmctlCmd::Other(_)
        )
    }
}

impl fmt::Display for ShmctlCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What a raw [`shmctl_command`] passes as its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtlBuffer {
    /// A zeroed buffer large enough for every command's structure.
    Zeroed,
    /// For `IPC_SET`: these owner ids and mode bits (raw: the kernel keeps
    /// only the low nine).
    Set {
        /// `shm_perm.uid`.
        uid: u32,
        /// `shm_perm.gid`.
        gid: u32,
        /// `shm_perm.mode`, as given.
        mode: u32,
        /// The other fields' values (the kernel ignores them).
        ignored: IgnoredFields,
    },
    /// A pointer to a page the kernel cannot read or write (mapped
    /// `PROT_NONE` for the duration of the call): `EFAULT` for every
    /// command that uses its buffer.
    Inaccessible,
    /// The pointer `NULL`: `EFAULT` for every command that uses its buffer.
    Null,
    /// The pointer `(void *)-1`, the last byte of the address space, never
    /// a user address: `EFAULT` for every command that uses its buffer.
    AllOnes,
}

impl CtlBuffer {
    /// Whether the kernel can write an answer into it (a decoded answer is
    /// read from it after the call).
    pub const fn holds_answer(self) -> bool {
        matches!(self, CtlBuffer::Zeroed | CtlBuffer::Set { .. })
    }

    /// How the call is written for a pointer the kernel cannot use
    /// (`, <no access>`), else nothing.
    fn shown(self) -> &'static str {
        match self {
            CtlBuffer::Inaccessible => ", <no access>",
            CtlBuffer::Null => ", NULL",
            CtlBuffer::AllOnes => ", (void *)-1",
            CtlBuffer::Zeroed | CtlBuffer::Set { .. } => "",
        }
    }
}

/// What a `shmctl` command answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtlAnswer {
    /// The return value of a command that fills no structure.
    Returned(c_int),
    /// `IPC_STAT`, `SHM_STAT`, `SHM_STAT_ANY`: the return value (the shmid
    /// for the `SHM_STAT`s, 0 for `IPC_STAT`) and the status.
    Stat(c_int, SegmentStat),
    /// `IPC_INFO`: the limits (with the return value, the highest index in use).
    Limits(ShmLimits),
    /// `SHM_INFO`: the usage (with the return value, the highest index in use).
    Usage(ShmUsage),
}

/// Room for the largest structure a command writes, 8-byte aligned.
#[repr(C, align(8))]
struct AnyBuf([u8; 256]);

const _: () = assert!(std::mem::size_of::<libc::shmid_ds>() <= 256);
const _: () = assert!(std::mem::size_of::<raw::shminfo>() <= 256);
const _: () = assert!(std::mem::size_of::<raw::shm_info>() <= 256);

/// `shmctl(target, cmd, buf)`—Performs any control command and decodes
/// what it wrote.
///
/// `target` is a shmid, an index (`SHM_STAT`, `SHM_STAT_ANY`) or ignored
/// (the `INFO` commands; a negative one is `EINVAL` all the same). `cmd`
/// goes to the system call as it is ([`IPC_64`] included: `EINVAL`).
///
/// # Errors
/// The kernel's errno: `EINVAL` (no such id or index, unknown command),
/// `EACCES`, `EPERM`, `EIDRM`, `EFAULT` (with [`CtlBuffer::Inaccessible`],
/// [`CtlBuffer::Null`], [`CtlBuffer::AllOnes`]),
/// `ENOMEM` (`SHM_LOCK` over `RLIMIT_MEMLOCK`); [`Error::Sys`] names the
/// call. If the inaccessible page cannot be mapped, the `mmap` errno.
///
/// # References
/// - [Linux `shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
#[doc(alias = "shmctl")]
// The field types differ between targets: a conversion that is the
// identity on x86_64 widens on i686 (see `SegmentStat::from_raw`).
#[allow(clippy::useless_conversion)]
pub fn shmctl_command(target: c_int, cmd: ShmctlCmd, buf: CtlBuffer) -> Result<CtlAnswer> {
    let target = super::planted::shmctl_target(target, cmd);
    let what = || format!("shmctl({target}, {cmd}{})", buf.shown());
    let mut room = AnyBuf([0; 256]);
    if let CtlBuffer::Set { uid, gid, mode, ignored } = buf {
        // SAFETY: shmid_ds is plain integers; all-zero is a valid value.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        ds.shm_perm.uid = uid;
        ds.shm_perm.gid = gid;
        // `mode`'s type is u16 on x86_64: the kernel keeps the low nine bits
        // anyway; the cut is the same as the C caller's.
        ds.shm_perm.mode = mode as _;
        for (field, v) in ignored.given() {
            field.write(&mut ds, v);
        }
        // SAFETY: `room` is 256 aligned bytes, larger than a shmid_ds (checked above).
        unsafe { std::ptr::write(room.0.as_mut_ptr().cast::<libc::shmid_ds>(), ds) };
    }
    let ret = match buf {
        CtlBuffer::Inaccessible => {
            let page =
                NoAccessPage::map().map_err(|e| Error::sys(e, || "mmap(PROT_NONE) for a shmctl buffer".into()))?;
            // SAFETY: the kernel checks every access to the buffer (copy_to_user /
            // copy_from_user) and answers EFAULT for a page without access; no
            // Rust reference to it exists.
            unsafe { raw::shmctl(target, cmd.raw(), page.0) }
        }
        // SAFETY: as above: NULL and (void *)-1 are never user memory the
        // kernel may write; it answers EFAULT (or ignores the pointer).
        CtlBuffer::Null => unsafe { raw::shmctl(target, cmd.raw(), std::ptr::null_mut()) },
        // SAFETY: as for NULL.
        CtlBuffer::AllOnes => unsafe { raw::shmctl(target, cmd.raw(), usize::MAX as *mut c_void) },
        // SAFETY: `room` is larger than every structure a command writes.
        CtlBuffer::Zeroed | CtlBuffer::Set { .. } => unsafe {
            raw::shmctl(target, cmd.raw(), room.0.as_mut_ptr().cast())
        },
    }
    .map_err(|e| Error::sys(e, what))?;
    Ok(match ShmctlCmd::from_raw(cmd.raw()) {
        c if c.reads_stat() && buf.holds_answer() => {
            // SAFETY: the kernel wrote a shmid_ds at the start of `room`
            // (zeroed before: a valid value either way), which is aligned.
            let ds = unsafe { std::ptr::read(room.0.as_ptr().cast::<libc::shmid_ds>()) };
            CtlAnswer::Stat(ret, SegmentStat::from_raw(&ds))
        }
        ShmctlCmd::IpcInfo if buf.holds_answer() => {
            // SAFETY: as above, a `struct shminfo`.
            let info = unsafe { std::ptr::read(room.0.as_ptr().cast::<raw::shminfo>()) };
            CtlAnswer::Limits(ShmLimits {
                shmmax: u64::from(info.shmmax),
                shmmin: u64::from(info.shmmin),
                shmmni: u64::from(info.shmmni),
                shmseg: u64::from(info.shmseg),
                shmall: u64::from(info.shmall),
                max_index: ret,
            })
        }
        ShmctlCmd::ShmInfo if buf.holds_answer() => {
            // SAFETY: as above, a `struct shm_info`.
            let info = unsafe { std::ptr::read(room.0.as_ptr().cast::<raw::shm_info>()) };
            CtlAnswer::Usage(ShmUsage {
                used_ids: info.used_ids,
                shm_tot: u64::from(info.shm_tot),
                shm_rss: u64::from(info.shm_rss),
                shm_swp: u64::from(info.shm_swp),
                max_index: ret,
            })
        }
        _ => CtlAnswer::Returned(ret),
    })
}

impl CtlAnswer {
    /// The shmid a `SHM_STAT`/`SHM_STAT_ANY` returned (the return value of
    /// any answer, as the kernel gave it).
    pub fn returned(&self) -> c_int {
        match self {
            CtlAnswer::Returned(r) | CtlAnswer::Stat(r, _) => *r,
            CtlAnswer::Limits(l) => l.max_index,
            CtlAnswer::Usage(u) => u.max_index,
        }
    }

    /// The id as a [`Shmid`] (meaningful after `SHM_STAT`/`SHM_STAT_ANY`).
    pub fn shmid(&self) -> Shmid {
        Shmid::from_raw(self.returned())
    }
}

/// One anonymous `PROT_NONE` page, unmapped on drop.
struct NoAccessPage(*mut c_void);

impl NoAccessPage {
    fn map() -> std::result::Result<NoAccessPage, nix::errno::Errno> {
        // SAFETY: a new anonymous private mapping at an address of the
        // kernel's choice replaces nothing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                raw::page_size(),
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            Err(nix::errno::Errno::last())
        } else {
            Ok(NoAccessPage(p))
        }
    }
}

impl Drop for NoAccessPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping of one page, never referenced.
        unsafe { libc::munmap(self.0, raw::page_size()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysv::IgnoredField;

    #[test]
    fn only_a_buffer_the_kernel_can_write_holds_an_answer() {
        assert!(CtlBuffer::Zeroed.holds_answer());
        for b in [CtlBuffer::Inaccessible, CtlBuffer::Null, CtlBuffer::AllOnes] {
            assert!(!b.holds_answer(), "{b:?}");
        }
    }

    #[test]
    fn which_commands_read_a_stat_and_which_change_a_segment() {
        use ShmctlCmd::*;
        let reads: Vec<_> = ShmctlCmd::NAMED.into_iter().filter(|c| c.reads_stat()).collect();
        assert_eq!(reads, [IpcStat, ShmStat, ShmStatAny]);
        let changes: Vec<_> = ShmctlCmd::NAMED.into_iter().filter(|c| c.changes()).collect();
        assert_eq!(changes, [IpcSet, IpcRmid, ShmLock, ShmUnlock]);
        assert!(Other(0x102).changes() && Other(-1).changes(), "an unknown number is not assumed harmless");
        assert!(!Other(0x102).reads_stat());
    }

    #[test]
    fn commands_by_name_and_number() {
        for c in ShmctlCmd::NAMED {
            assert_eq!(ShmctlCmd::from_name(&c.name()), Some(c));
            assert_eq!(ShmctlCmd::from_raw(c.raw()), c);
            let with_64 = c.raw() | IPC_64;
            assert_eq!(ShmctlCmd::from_raw(with_64), ShmctlCmd::Other(with_64), "{c} with IPC_64");
        }
        assert_eq!(ShmctlCmd::from_raw(99), ShmctlCmd::Other(99));
        assert_eq!(ShmctlCmd::from_raw(-1), ShmctlCmd::Other(-1));
        assert_eq!(ShmctlCmd::from_name("IPC_NOPE"), None);
        assert_eq!(ShmctlCmd::Other(42).to_string(), "42");
    }

    /// Each ignored field lands in its own place of the buffer, and only there.
    #[test]
    fn ignored_fields_are_written_into_the_buffer() {
        let fields: Vec<(IgnoredField, u32)> = IgnoredField::ALL.into_iter().zip(1..).collect();
        let given = IgnoredFields::new(&fields);
        assert_eq!(given.given().collect::<Vec<_>>(), fields);
        // SAFETY: shmid_ds is plain integers; all-zero is a valid value.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        for (f, v) in given.given() {
            f.write(&mut ds, v);
        }
        let got = [
            ds.shm_segsz as u64,
            ds.shm_perm.__key as u64,
            u64::from(ds.shm_perm.cuid),
            u64::from(ds.shm_perm.cgid),
            u64::from(ds.shm_perm.__seq),
            ds.shm_nattch as u64,
            ds.shm_cpid as u64,
            ds.shm_lpid as u64,
            ds.shm_atime as u64,
            ds.shm_dtime as u64,
            ds.shm_ctime as u64,
        ];
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!((ds.shm_perm.uid, ds.shm_perm.gid, ds.shm_perm.mode), (0, 0, 0), "uid, gid, mode untouched");
        assert_eq!(IgnoredField::from_name("nattch"), Some(IgnoredField::Nattch));
        assert_eq!(IgnoredField::from_name("uid"), None, "uid is read by IPC_SET");
    }
    #[test]
    fn read_only_calls_answer_without_a_namespace() {
        // Reading the limits and usage changes nothing: safe on the host.
        let CtlAnswer::Limits(l) = shmctl_command(0, ShmctlCmd::IpcInfo, CtlBuffer::Zeroed).unwrap() else {
            panic!("IPC_INFO answers limits")
        };
        assert_eq!(l.shmmin, 1);
        assert_eq!(l, super::super::limits().unwrap());
        let e = shmctl_command(0, ShmctlCmd::IpcInfo, CtlBuffer::Inaccessible).unwrap_err();
        assert_eq!(e.errno(), Some(nix::errno::Errno::EFAULT), "{e}");
        assert_eq!(e.to_string(), "shmctl(0, IPC_INFO, <no access>): EFAULT (Bad address)");
        for (buf, shown) in [(CtlBuffer::Null, "NULL"), (CtlBuffer::AllOnes, "(void *)-1")] {
            let e = shmctl_command(0, ShmctlCmd::IpcInfo, buf).unwrap_err();
            assert_eq!(e.to_string(), format!("shmctl(0, IPC_INFO, {shown}): EFAULT (Bad address)"));
        }
        let e = shmctl_command(0, ShmctlCmd::Other(99), CtlBuffer::Zeroed).unwrap_err();
        assert_eq!(e.errno(), Some(nix::errno::Errno::EINVAL), "{e}");
        let e = shmctl_command(-1, ShmctlCmd::ShmStatAny, CtlBuffer::Zeroed).unwrap_err();
        assert_eq!(e.errno(), Some(nix::errno::Errno::EINVAL), "{e}");
    }
}
