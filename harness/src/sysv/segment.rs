//! `shmget`: creating and opening segments, and who removes them.

use libc::c_int;

use super::attach::Attachment;
use super::control::{SegmentStat, Shmid};
use super::error::{Error, Result};
use super::flags::{describe_get_flags, AttachFlags, GetFlags, HugePageSize, Mode};
use super::key::Key;
use super::planted::{self, Bug};
use super::raw;

/// `shmget(key, size, flags | huge | mode)`—Gets or creates a segment; returns its id.
///
/// The typed form of the call, with no ownership attached: whoever calls this
/// decides who removes the segment. Prefer [`CreateOptions`] and [`open`].
///
/// Every combination a caller that tracks removal itself needs (as the
/// scenario runner does) is expressible without raw flag words:
///
/// ```no_run
/// use shm_harness::sysv::{shmget, GetFlags, Key, Mode};
/// # fn main() -> shm_harness::sysv::Result<()> {
/// let key = Key::from_raw(0x5eed_0001);
/// let mode = Mode::from_bits_truncate(0o640);
/// // create, exclusive, huge pages of the default size, no reservation
/// let flags = GetFlags::CREAT | GetFlags::EXCL | GetFlags::HUGETLB | GetFlags::NORESERVE;
/// let id = shmget(key, 4096, flags, None, mode)?;
/// // open whatever size it has (size 0), permission bits ignored
/// assert_eq!(shmget(key, 0, GetFlags::empty(), None, Mode::NONE)?, id);
/// id.remove()?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// - `EEXIST`: `CREAT|EXCL` and the key exists.
/// - `ENOENT`: no `CREAT` and the key does not exist.
/// - `EINVAL`: creating with a size below 1 or above `shmmax`, or opening an
///   existing segment with a size larger than its own.
/// - `EACCES`: no permission for the existing segment.
/// - `ENOSPC`: `shmmni` segments exist, or `shmall` pages would be exceeded.
/// - `ENOMEM`, `EPERM` (huge pages without the right).
///
/// # References
/// - [Linux `shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
pub fn shmget(key: Key, size: usize, flags: GetFlags, huge: Option<HugePageSize>, mode: Mode) -> Result<Shmid> {
    let raw_flags = flags.bits() | huge.map_or(0, HugePageSize::flag_bits) | c_int::from(mode.bits());
    shmget_raw(key, size, raw_flags)
}

/// `shmget(key, size, flags)` with an untyped flag word, for fuzzing odd bits.
///
/// # Errors
/// As [`shmget`].
pub fn shmget_raw(key: Key, size: usize, flags: c_int) -> Result<Shmid> {
    let size = planted::shmget_size(size);
    if let Some(refused) = planted::shmget_refusal(key, size, flags) {
        return Err(refused);
    }
    let id = raw::shmget(key.raw(), size, flags)
        .map_err(|e| Error::sys(e, || format!("shmget(key={key}, size={size}, {})", describe_get_flags(flags))))?;
    Ok(Shmid::from_raw(planted::shmget_id(id)))
}

/// Opens an existing segment by key (`shmget` without `IPC_CREAT`).
///
/// `min_size` 0 accepts any size; otherwise the kernel refuses (`EINVAL`) a
/// segment smaller than `min_size`, and returns the same id for any size up
/// to the segment's own.
///
/// # Errors
/// `ENOENT` if the key does not exist, `EINVAL`, `EACCES`.
pub fn open(key: Key, min_size: usize) -> Result<Segment> {
    let id = shmget(key, min_size, GetFlags::empty(), None, Mode::NONE)?;
    Ok(Segment { id, key, huge_page: None })
}

/// How to create a segment: size, permission bits, huge pages.
///
/// ```no_run
/// use shm_harness::sysv::{CreateOptions, Key, Mode};
/// # fn main() -> shm_harness::sysv::Result<()> {
/// let owned = CreateOptions::new(4096).mode(Mode::OWNER_RW).create_exclusive(Key::from_raw(0x1234))?;
/// // ... removed when `owned` is dropped.
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    size: usize,
    mode: Mode,
    huge: Option<HugePageSize>,
    noreserve: bool,
}

impl CreateOptions {
    /// `size` bytes, mode `0600`, normal pages.
    pub fn new(size: usize) -> CreateOptions {
        CreateOptions { size, mode: Mode::default(), huge: None, noreserve: false }
    }

    /// The permission bits (default `0600`).
    pub fn mode(mut self, mode: Mode) -> CreateOptions {
        self.mode = mode;
        self
    }

    /// `SHM_HUGETLB` with a page size encoding.
    pub fn hugetlb(mut self, size: HugePageSize) -> CreateOptions {
        self.huge = Some(size);
        self
    }

    /// `SHM_NORESERVE`.
    pub fn noreserve(mut self, noreserve: bool) -> CreateOptions {
        self.noreserve = noreserve;
        self
    }

    fn get(&self, key: Key, flags: GetFlags) -> Result<Segment> {
        let mut flags = flags;
        if self.huge.is_some() {
            flags |= GetFlags::HUGETLB;
        }
        if self.noreserve {
            flags |= GetFlags::NORESERVE;
        }
        let id = shmget(key, self.size, flags, self.huge, self.mode)?;
        // The mapping is rounded to the huge page size; where the default size
        // cannot be read, to base pages (as for an attachment by bare id).
        let huge_page = self.huge.and_then(|h| h.bytes().or_else(super::system::default_huge_page_size));
        Ok(Segment { id, key, huge_page })
    }

    /// `shmget(key, size, IPC_CREAT|IPC_EXCL|mode)`—Creates a new segment that
    /// the returned guard owns and removes on drop.
    ///
    /// With [`Key::PRIVATE`] this always creates.
    ///
    /// # Errors
    /// `EEXIST` if the key exists, and as [`shmget`].
    pub fn create_exclusive(&self, key: Key) -> Result<OwnedSegment> {
        self.get(key, GetFlags::CREAT | GetFlags::EXCL).map(OwnedSegment::adopt)
    }

    /// `shmget(IPC_PRIVATE, size, IPC_CREAT|mode)`—Creates a new segment
    /// that no key can find, owned by the returned guard.
    ///
    /// # Errors
    /// As [`shmget`].
    pub fn create_private(&self) -> Result<OwnedSegment> {
        self.get(Key::PRIVATE, GetFlags::CREAT).map(OwnedSegment::adopt)
    }

    /// `shmget(key, size, IPC_CREAT|mode)`—Opens the key's segment, creating it
    /// if the key is new.
    ///
    /// The result is a plain [`Segment`], never removed on drop: the segment
    /// may have existed before, so it is not this caller's to remove.
    ///
    /// # Errors
    /// `EINVAL` if the existing segment is smaller than `size`, and as [`shmget`].
    pub fn open_or_create(&self, key: Key) -> Result<Segment> {
        self.get(key, GetFlags::CREAT)
    }
}

/// A segment by id and the key it was got with. Copying or dropping it does
/// nothing to the segment: see [`OwnedSegment`] for removal on drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    id: Shmid,
    key: Key,
    huge_page: Option<usize>,
}

impl Segment {
    /// A handle on an existing id (no system call).
    pub fn from_id(id: Shmid, key: Key) -> Segment {
        Segment { id, key, huge_page: None }
    }

    /// The segment's id.
    pub fn id(&self) -> Shmid {
        self.id
    }

    /// The key it was got with (the kernel's key may since have turned private).
    pub fn key(&self) -> Key {
        self.key
    }

    /// `shmctl(IPC_STAT)`: see [`Shmid::stat`].
    ///
    /// # Errors
    /// As [`Shmid::stat`].
    pub fn stat(&self) -> Result<SegmentStat> {
        self.id.stat()
    }

    /// `shmat(shmid, NULL, flags)`: see [`Attachment`].
    ///
    /// # Errors
    /// As [`Attachment::attach`].
    pub fn attach(&self, flags: AttachFlags) -> Result<Attachment> {
        Attachment::attach_with_page(self.id, flags, self.huge_page)
    }

    /// `shmctl(IPC_RMID)`: see [`Shmid::remove`].
    ///
    /// # Errors
    /// As [`Shmid::remove`].
    pub fn remove(&self) -> Result<()> {
        self.id.remove()
    }
}

/// A segment this process created and owns: it is removed (`IPC_RMID`) when
/// the guard is dropped, including during a panic.
///
/// Only the process that created the guard removes: a copy inherited through
/// `fork` does nothing on drop, so a child that returns normally cannot take
/// the parent's segment away.
#[derive(Debug)]
#[must_use = "dropping an OwnedSegment removes the segment"]
pub struct OwnedSegment {
    segment: Segment,
    owner_pid: libc::pid_t,
}

impl OwnedSegment {
    /// Takes ownership of a segment: it will be removed on drop.
    pub fn adopt(segment: Segment) -> OwnedSegment {
        OwnedSegment { segment, owner_pid: std::process::id() as libc::pid_t }
    }

    /// The owned segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The segment's id.
    pub fn id(&self) -> Shmid {
        self.segment.id
    }

    /// The key it was created with.
    pub fn key(&self) -> Key {
        self.segment.key
    }

    /// `shmctl(IPC_STAT)`: see [`Shmid::stat`].
    ///
    /// # Errors
    /// As [`Shmid::stat`].
    pub fn stat(&self) -> Result<SegmentStat> {
        self.segment.stat()
    }

    /// `shmat`: see [`Segment::attach`].
    ///
    /// # Errors
    /// As [`Attachment::attach`].
    pub fn attach(&self, flags: AttachFlags) -> Result<Attachment> {
        self.segment.attach(flags)
    }

    /// Removes the segment now and reports the kernel's answer.
    ///
    /// # Errors
    /// As [`Shmid::remove`]; the guard is consumed either way.
    pub fn remove(self) -> Result<()> {
        let id = self.release().id;
        id.remove()
    }

    /// Gives up ownership: the segment outlives the guard.
    pub fn release(self) -> Segment {
        let segment = self.segment;
        std::mem::forget(self);
        segment
    }
}

impl Drop for OwnedSegment {
    fn drop(&mut self) {
        if std::process::id() as libc::pid_t != self.owner_pid {
            return;
        }
        if planted::active(Bug::NoRemoveOnDrop) {
            return;
        }
        // EINVAL/EIDRM mean someone removed it already; a drop cannot report
        // anything else, so errors are ignored here (use `remove` to see them).
        let _ = raw::shmctl_rmid(self.segment.id.raw());
    }
}
