//! `shmat`/`shmdt`: attachments and bounds-checked access to their memory.
//!
//! Other processes may write a segment at any moment, so no `&[u8]` or
//! `&mut [u8]` over it is ever handed out: that would promise Rust that the
//! bytes cannot change, which another process can break. The safe access is
//! copies (`read_at`, `write_at`, `fill`) and word atomics, all made of
//! relaxed word-sized atomic operations (module `atomic_copy`); see the
//! memory model in [`crate::sysv`].

#![allow(unsafe_code)] // opts in: the raw SysV calls and the memory other processes share

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};

use super::atomic_copy;
use super::control::Shmid;
use super::error::{Error, Result};
use super::flags::{describe_attach_flags, AttachFlags};
use super::planted::{self, Bug};
use super::raw;

/// An attached segment: a mapping in this process, detached on drop.
///
/// Two sizes matter and are kept apart: [`size`](Attachment::size) is the
/// segment's `shm_segsz`, what was asked for at creation and what the
/// bounds-checked accessors allow; [`mapping_len`](Attachment::mapping_len) is
/// what the kernel mapped, the size rounded up to whole pages of the
/// mapping's own page size ([`page_size`](Attachment::page_size): a huge
/// page for a hugetlb segment, as the kernel reports it for the mapping).
///
/// After `fork` the child has the same mapping (the kernel counts it in
/// `shm_nattch`), and dropping the inherited `Attachment` there detaches the
/// child's copy only.
#[derive(Debug)]
pub struct Attachment {
    pub(super) addr: NonNull<u8>,
    pub(super) size: usize,
    pub(super) mapping_len: usize,
    /// The mapping's page size, as the kernel reports it (`KernelPageSize`).
    pub(super) page_size: usize,
    pub(super) id: Shmid,
    pub(super) flags: AttachFlags,
    /// Bytes from `addr` known mapped with the rights of the attach: the safe
    /// accessors stop here (see [`crate::sysv::mapping`]).
    pub(super) limit: usize,
    /// The longest the mapping has ever been: how far a raw touch may reach.
    pub(super) extent: usize,
    /// Whether anything of it may still be mapped (false after a detach in
    /// place or an unmap of the whole: then drop does not call `shmdt`).
    pub(super) mapped: bool,
}

// SAFETY: the mapping is process-wide, not tied to the thread that made it.
unsafe impl Send for Attachment {}
// SAFETY: every safe `&Attachment` method touches the mapping only through
// relaxed word-sized atomics (`atomic_copy`, `atomic_word`), so calls from
// several threads at once are atomic accesses of one size, never a data
// race; the non-atomic and other-sized accessors are `unsafe` and say so.
unsafe impl Sync for Attachment {}

/// Integer types that can be read and written as a whole with volatile
/// accesses ([`Attachment::read_volatile`], [`Attachment::write_volatile`]).
pub trait Scalar: Copy + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! scalar {
    ($($t:ty)*) => {$(
        impl sealed::Sealed for $t {}
        impl Scalar for $t {}
    )*};
}
scalar!(u8 u16 u32 u64 i8 i16 i32 i64);

impl Attachment {
    /// `shmat(shmid, NULL, flags)`—Attaches a segment where the kernel chooses.
    ///
    /// Also reads the segment's size (`IPC_STAT`), which attaching needs read
    /// permission for anyway.
    ///
    /// # Errors
    /// `EACCES` (no read, or no write without `RDONLY`, or no execute with
    /// `EXEC`), `EINVAL` (bad id, `REMAP` without an address), `EIDRM`, `ENOMEM`.
    ///
    /// # References
    /// - [Linux `shmat(2)`](https://man7.org/linux/man-pages/man2/shmat.2.html)
    #[doc(alias = "shmat")]
    pub fn attach(id: Shmid, flags: AttachFlags) -> Result<Attachment> {
        Self::attach_with_page(id, flags, None)
    }

    pub(crate) fn attach_with_page(id: Shmid, flags: AttachFlags, page: Option<usize>) -> Result<Attachment> {
        // SAFETY: a null address lets the kernel pick a free range; nothing
        // existing is replaced (SHM_REMAP with NULL is EINVAL).
        unsafe { Self::attach_raw(id, std::ptr::null(), flags, page) }
    }

    /// `shmat(shmid, addr, flags)`—Attaches a segment at a given address
    /// (rounded down to `SHMLBA` with [`AttachFlags::RND`]).
    ///
    /// # Safety
    /// With [`AttachFlags::REMAP`], whatever is mapped in the range is replaced
    /// without warning: the caller must own the range and nothing may use it.
    /// Without `REMAP` the kernel refuses (`EINVAL`) a range already in use.
    ///
    /// # Errors
    /// As [`Attachment::attach`], and `EINVAL` for a misaligned address
    /// without `RND` or a range in use without `REMAP`.
    #[doc(alias = "shmat")]
    pub unsafe fn attach_at(id: Shmid, addr: *const c_void, flags: AttachFlags) -> Result<Attachment> {
        // SAFETY: forwarded to the caller's contract.
        unsafe { Self::attach_raw(id, addr, flags, None) }
    }

    unsafe fn attach_raw(
        id: Shmid,
        addr: *const c_void,
        flags: AttachFlags,
        page: Option<usize>,
    ) -> Result<Attachment> {
        let call = || format!("shmat(shmid={id}, addr={addr:?}, {})", describe_attach_flags(flags.bits()));
        // SAFETY: forwarded to the caller's contract.
        let mapped = unsafe { raw::shmat(id.raw(), addr, flags.bits()) }.map_err(|e| Error::sys(e, call))?;
        let mapped = NonNull::new(mapped.cast::<u8>()).expect("shmat returned NULL on success");
        let size = match raw::shmctl_stat(id.raw()) {
            Ok(ds) => ds.shm_segsz,
            Err(e) => {
                // SAFETY: we just attached it and nothing else has the address.
                let _ = unsafe { raw::shmdt(mapped.as_ptr().cast()) };
                return Err(Error::sys(e, || format!("shmctl(shmid={id}, IPC_STAT) after shmat")));
            }
        };
        // The kernel's own answer for this mapping first: a hugetlb segment
        // attached by bare id maps whole huge pages, which IPC_STAT does not
        // say. Without /proc, the caller's page (a segment it created) or
        // the base page: never longer than the mapping.
        let page = kernel_page_size(mapped.as_ptr() as usize).or(page).unwrap_or_else(raw::page_size);
        let mapping_len = size.div_ceil(page) * page;
        Ok(Attachment {
            addr: mapped,
            size,
            mapping_len,
            page_size: page,
            id,
            flags,
            limit: mapping_len,
            extent: mapping_len,
            mapped: true,
        })
    }

    /// `shmdt(addr)`—Detaches now and reports the kernel's answer.
    ///
    /// # Errors
    /// `EINVAL` if the kernel has no attachment at the address (which would
    /// mean someone else detached it behind this handle's back).
    ///
    /// # References
    /// - [Linux `shmdt(2)`](https://man7.org/linux/man-pages/man2/shmdt.2.html)
    #[doc(alias = "shmdt")]
    pub fn detach(self) -> Result<()> {
        let addr = self.addr;
        let id = self.id;
        let mapped = self.mapped;
        std::mem::forget(self);
        if !mapped {
            // Unmapped whole (or detached in place): nothing of it is left,
            // and `shmdt` at the address could detach someone else's.
            return Ok(());
        }
        // SAFETY: the handle is consumed, so nothing can use the mapping again.
        unsafe { raw::shmdt(addr.as_ptr().cast()) }
            .map_err(|e| Error::sys(e, || format!("shmdt(addr={:?}) [shmid={id}]", addr.as_ptr())))
    }

    /// The id of the attached segment.
    pub fn shmid(&self) -> Shmid {
        self.id
    }

    /// The flags it was attached with.
    pub fn flags(&self) -> AttachFlags {
        self.flags
    }

    /// Whether it was attached with `SHM_RDONLY`.
    pub fn is_read_only(&self) -> bool {
        self.flags.contains(AttachFlags::RDONLY)
    }

    /// The address of the mapping. Reading or writing through it is `unsafe`
    /// and the caller's business; the handle keeps the mapping alive.
    pub fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }

    /// The segment's size, `shm_segsz`: the usable bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The length of the mapping: [`size`](Attachment::size) rounded up to
    /// whole pages of [`page_size`](Attachment::page_size) (huge pages for a
    /// hugetlb segment, however it was attached).
    pub fn mapping_len(&self) -> usize {
        self.mapping_len
    }

    /// The mapping's page size, read once at attach from the kernel's own
    /// answer for it (`KernelPageSize` of its entry in `/proc/self/smaps`):
    /// the huge page size of a hugetlb segment (which `IPC_STAT` does not
    /// report), else the base page. If `/proc/self/smaps` cannot be read:
    /// the huge page size this crate created the segment with, or the base
    /// page (never more than what is mapped).
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    fn check(&self, op: &'static str, offset: usize, len: usize, limit: usize) -> Result<*mut u8> {
        match offset.checked_add(len) {
            Some(end) if end <= limit.min(self.limit) => Ok(self.addr.as_ptr().wrapping_add(offset)),
            _ => Err(Error::OutOfBounds { op, offset, len, limit: limit.min(self.limit) }),
        }
    }

    fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.is_read_only() {
            Err(Error::ReadOnly { op })
        } else {
            Ok(())
        }
    }

    /// Copies `buf.len()` bytes at `offset` out of the segment.
    ///
    /// Atomic per aligned word, relaxed (see [the module's memory
    /// model](crate::sysv#memory-model)): bytes that another thread or
    /// process writes during the copy are seen old or new, word by word.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past [`size`](Attachment::size).
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let src = self.check("read_at", offset, buf.len(), self.size)?;
        // SAFETY: `src` is in bounds of the live mapping (checked above),
        // `buf` is ours and cannot overlap it; only a planted bug copies.
        if unsafe { planted::plain_copy(src, buf.as_mut_ptr(), buf.len()) } {
            return Ok(());
        }
        // SAFETY: in bounds of a live mapping, which is page-aligned and
        // whole pages long, so every word holding a byte of the range is
        // mapped and readable; this type touches the mapping only through
        // word-sized atomics (the `unsafe` accessors state their own terms).
        unsafe { atomic_copy::load(src, buf) };
        Ok(())
    }

    /// Copies `data` into the segment at `offset`.
    ///
    /// Atomic per aligned word, relaxed; the bytes around the range are never
    /// written, even where they share a word with it.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only attachment, [`Error::OutOfBounds`]
    /// past [`size`](Attachment::size).
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_writable("write_at")?;
        let dst = self.check("write_at", offset, data.len(), self.size)?;
        // SAFETY: `dst` is in bounds of the live, writable mapping (checked
        // above), `data` is ours and cannot overlap it; only a planted bug copies.
        if unsafe { planted::plain_copy(data.as_ptr(), dst, data.len()) } {
            return Ok(());
        }
        // SAFETY: as in `read_at`, and the mapping is writable.
        unsafe { atomic_copy::store(dst, data) };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `byte`, atomically per aligned word.
    ///
    /// # Errors
    /// As [`write_at`](Attachment::write_at).
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.check_writable("fill")?;
        let dst = self.check("fill", offset, len, self.size)?;
        // SAFETY: as in `write_at`.
        unsafe { atomic_copy::fill(dst, len, byte) };
        Ok(())
    }

    fn aligned<T>(&self, op: &'static str, offset: usize, limit: usize) -> Result<*mut T> {
        let ptr = self.check(op, offset, std::mem::size_of::<T>(), limit)?;
        let align = std::mem::align_of::<T>();
        if (ptr as usize) % align != 0 {
            return Err(Error::Misaligned { op, offset, align });
        }
        Ok(ptr.cast())
    }

    /// The machine word at `offset` as an atomic: the same size as every
    /// access the safe copies make, so it may be mixed with them freely.
    /// For flags, counters and publishing data (see [the memory
    /// model](crate::sysv#memory-model)).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] (a store would fault), [`Error::OutOfBounds`],
    /// [`Error::Misaligned`] unless `offset` is a multiple of the word size.
    pub fn atomic_word(&self, offset: usize) -> Result<&AtomicUsize> {
        self.check_writable("atomic_word")?;
        let ptr = self.aligned::<usize>("atomic_word", offset, self.size)?;
        // SAFETY: aligned, in bounds, writable, and live as long as `&self`
        // (detaching consumes the handle); a word-sized atomic is what every
        // other safe access here uses.
        Ok(unsafe { AtomicUsize::from_ptr(ptr) })
    }

    /// Loads the machine word at `offset` with one relaxed atomic load, on
    /// any attachment, read-only ones included (a relaxed load of at most a
    /// word is allowed on read-only memory, see `std::sync::atomic`). To
    /// acquire what a writer published with a `Release` store, follow it
    /// with `std::sync::atomic::fence(Ordering::Acquire)`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`], [`Error::Misaligned`] unless `offset` is a
    /// multiple of the word size.
    pub fn load_word(&self, offset: usize) -> Result<usize> {
        let ptr = self.aligned::<usize>("load_word", offset, self.size)?;
        // SAFETY: aligned, in bounds, readable, live as long as `&self`; a
        // relaxed word load is what `read_at` does, and never writes.
        Ok(unsafe { AtomicUsize::from_ptr(ptr) }.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The `u32` at `offset` as an atomic.
    ///
    /// # Safety
    /// Rust forbids unsynchronised atomic accesses of different sizes to
    /// partly overlapping bytes unless all are reads. While the returned
    /// reference is used, no other thread of this process may, without
    /// synchronising with it, write these bytes through anything but an
    /// `AtomicU32` at this offset ([`write_at`](Attachment::write_at),
    /// [`fill`](Attachment::fill), [`atomic_word`](Attachment::atomic_word)
    /// and [`atomic_u64`](Attachment::atomic_u64) over them are word- or
    /// 8-byte-sized), nor read them with another size while this atomic is
    /// written. Other processes are outside this contract.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] (an atomic store would fault), [`Error::OutOfBounds`],
    /// [`Error::Misaligned`].
    pub unsafe fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        self.check_writable("atomic_u32")?;
        let ptr = self.aligned::<u32>("atomic_u32", offset, self.size)?;
        // SAFETY: aligned, in bounds, writable, live as long as `&self`; the
        // sizes of concurrent accesses are the caller's contract.
        Ok(unsafe { AtomicU32::from_ptr(ptr) })
    }

    /// The `u64` at `offset` as an atomic.
    ///
    /// # Safety
    /// As [`atomic_u32`](Attachment::atomic_u32), for `AtomicU64`: on 32-bit
    /// targets the safe copies use 4-byte words, a different size.
    ///
    /// # Errors
    /// As [`atomic_u32`](Attachment::atomic_u32).
    pub unsafe fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        self.check_writable("atomic_u64")?;
        let ptr = self.aligned::<u64>("atomic_u64", offset, self.size)?;
        // SAFETY: as in `atomic_u32`.
        Ok(unsafe { AtomicU64::from_ptr(ptr) })
    }

    /// Reads one value at `offset` with a single volatile (non-atomic) load.
    ///
    /// # Safety
    /// A volatile access is not atomic: no other thread of this process may
    /// write these bytes during the call (through any accessor, or another
    /// attachment's, in Rust's view a different place). Prefer
    /// [`read_at`](Attachment::read_at) or [`atomic_word`](Attachment::atomic_word).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`], [`Error::Misaligned`].
    pub unsafe fn read_volatile<T: Scalar>(&self, offset: usize) -> Result<T> {
        let ptr = self.aligned::<T>("read_volatile", offset, self.size)?;
        // SAFETY: aligned, in bounds, readable; T is a plain integer; no
        // racing write is the caller's contract.
        Ok(unsafe { ptr.read_volatile() })
    }

    /// Writes one value at `offset` with a single volatile (non-atomic) store.
    ///
    /// # Safety
    /// As [`read_volatile`](Attachment::read_volatile), and no other thread
    /// of this process may read these bytes during the call either.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::OutOfBounds`], [`Error::Misaligned`].
    pub unsafe fn write_volatile<T: Scalar>(&self, offset: usize, value: T) -> Result<()> {
        self.check_writable("write_volatile")?;
        let ptr = self.aligned::<T>("write_volatile", offset, self.size)?;
        // SAFETY: aligned, in bounds, writable; T is a plain integer; no
        // racing access is the caller's contract.
        unsafe { ptr.write_volatile(value) };
        Ok(())
    }

    /// Reads the byte at `offset` anywhere in the mapping, including the
    /// page-rounding tail past [`size`](Attachment::size) (which the kernel
    /// zero-fills). One relaxed load of the word holding it.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past [`mapping_len`](Attachment::mapping_len).
    pub fn peek(&self, offset: usize) -> Result<u8> {
        let ptr = self.check("peek", offset, 1, self.mapping_len)?;
        let mut byte = [0u8];
        // SAFETY: inside the mapping, which is readable and whole pages long.
        unsafe { atomic_copy::load(ptr, &mut byte) };
        Ok(byte[0])
    }

    /// Writes the byte at `offset` anywhere in the mapping, ignoring
    /// read-only protection (one compare-exchange of the word holding it).
    /// For tests of the kernel's protection: on a `SHM_RDONLY` attachment
    /// the process dies of `SIGSEGV`.
    ///
    /// # Safety
    /// On a read-only attachment this is a store to memory mapped without
    /// write permission: undefined behaviour in Rust's terms, `SIGSEGV` in
    /// practice. Call it there only in a process meant to die (a forked
    /// child). On a writable attachment it is as safe as
    /// [`write_at`](Attachment::write_at).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past [`mapping_len`](Attachment::mapping_len).
    pub unsafe fn poke(&self, offset: usize, byte: u8) -> Result<()> {
        let ptr = self.check("poke", offset, 1, self.mapping_len)?;
        // SAFETY: inside the mapping; a protection fault is the caller's intent.
        unsafe { atomic_copy::store(ptr, &[byte]) };
        Ok(())
    }
}

/// `KernelPageSize` of the mapping that starts at `addr`, from
/// `/proc/self/smaps` (read up to that entry only); `None` if it cannot be
/// read or has no such mapping.
///
/// A huge-page mapping starts on a multiple of its page size, so an address
/// that is not a multiple of the smallest huge page size the kernel offers
/// is a base-page mapping: answered without reading `smaps` (whose read
/// walks every mapping of the process and costs more than the attach).
fn kernel_page_size(addr: usize) -> Option<usize> {
    static SMALLEST_HUGE: std::sync::OnceLock<HugePages> = std::sync::OnceLock::new();
    let smallest = *SMALLEST_HUGE
        .get_or_init(|| smallest_huge_page(std::fs::metadata("/sys/kernel/mm/hugepages"), super::huge_page_sizes));
    if let Some(page) = page_size_without_smaps(smallest, addr, raw::page_size()) {
        return Some(page);
    }
    let file = std::fs::File::open("/proc/self/smaps").ok()?;
    smaps_page_size(std::io::BufReader::new(file), addr)
}

/// What the kernel offers in huge pages, as far as the attach needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HugePages {
    /// None at all (no `/sys/kernel/mm/hugepages`): every mapping is base pages.
    None,
    /// The smallest huge page size.
    Smallest(usize),
    /// Unknown (the directory exists but cannot be read, or lists none):
    /// `smaps` decides.
    Unknown,
}

/// [`HugePages`] from the metadata of `/sys/kernel/mm/hugepages` and the
/// sizes listed there (read only if the directory exists).
fn smallest_huge_page(dir: std::io::Result<std::fs::Metadata>, sizes: impl FnOnce() -> Vec<usize>) -> HugePages {
    match dir {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HugePages::None,
        Err(_) => HugePages::Unknown,
        Ok(_) => sizes().first().map_or(HugePages::Unknown, |&h| HugePages::Smallest(h)),
    }
}

/// The page size of a mapping at `addr` when it can be told without
/// `smaps`: `base` if the kernel has no huge pages, or if `addr` is not a
/// multiple of the smallest huge page size (a huge-page mapping starts on a
/// multiple of its page size). `None`: read `smaps`.
fn page_size_without_smaps(huge: HugePages, addr: usize, base: usize) -> Option<usize> {
    match huge {
        HugePages::None => Some(base),
        HugePages::Smallest(h) if addr % h != 0 => Some(base),
        HugePages::Smallest(_) | HugePages::Unknown => None,
    }
}

/// `KernelPageSize` (in bytes) of the entry of `smaps` (the text of
/// `/proc/PID/smaps`) whose range starts at `addr`.
fn smaps_page_size(smaps: impl std::io::BufRead, addr: usize) -> Option<usize> {
    let mut found = false;
    for line in smaps.lines() {
        let line = line.ok()?;
        let first = line.split_ascii_whitespace().next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(_)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) {
                if found {
                    return None; // the next entry: ours had no KernelPageSize
                }
                found = start == addr;
                continue;
            }
        }
        if found && first == "KernelPageSize:" {
            let mut f = line.split_ascii_whitespace().skip(1);
            let (n, unit) = (f.next()?.parse::<usize>().ok()?, f.next()?);
            return (unit == "kB").then(|| n.checked_mul(1024)).flatten().filter(|p| p.is_power_of_two());
        }
    }
    None
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if planted::active(Bug::NoDetachOnDrop) {
            return;
        }
        if !self.mapped {
            return;
        }
        // SAFETY: the handle is going away, so nothing can use the mapping.
        // A failure (EINVAL) can only mean it was detached behind our back.
        let _ = unsafe { raw::shmdt(self.addr.as_ptr().cast()) };
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_pointer_width = "64")]
    use super::smaps_page_size;
    use super::{page_size_without_smaps, smallest_huge_page, HugePages};
    use crate::sysv::{raw, shmget, AttachFlags, Attachment, GetFlags, HugePageSize, Key, Mode};
    use rusty_fork::rusty_fork_test;

    #[test]
    fn huge_pages_are_none_only_without_the_directory() {
        use std::io::{Error, ErrorKind};
        let meta = || std::fs::metadata("/");
        let no_read = || -> Vec<usize> { panic!("the sizes are read only where the directory is") };
        assert_eq!(smallest_huge_page(Err(Error::from(ErrorKind::NotFound)), no_read), HugePages::None);
        assert_eq!(smallest_huge_page(Err(Error::from(ErrorKind::PermissionDenied)), no_read), HugePages::Unknown);
        assert_eq!(smallest_huge_page(meta(), || vec![2 << 20, 1 << 30]), HugePages::Smallest(2 << 20));
        assert_eq!(smallest_huge_page(meta(), Vec::new), HugePages::Unknown, "a directory that lists no size");
    }

    #[test]
    fn smaps_is_read_only_where_a_huge_page_mapping_can_start() {
        let (base, huge) = (4096, 2 << 20);
        assert_eq!(page_size_without_smaps(HugePages::None, 2 * huge, base), Some(base));
        assert_eq!(page_size_without_smaps(HugePages::Smallest(huge), huge + base, base), Some(base));
        assert_eq!(page_size_without_smaps(HugePages::Smallest(huge), 3 * huge, base), None, "aligned: smaps decides");
        assert_eq!(page_size_without_smaps(HugePages::Unknown, huge + base, base), None);
    }

    rusty_fork_test! {
        #![rusty_fork(timeout_ms = 60_000)]

        /// Attached by bare id, a base-page segment maps base pages and a
        /// 2 MiB hugetlb one whole 2 MiB pages (the kernel's answer for the
        /// mapping; IPC_STAT does not say hugetlb). SHM_NORESERVE: no free
        /// huge page is needed to create and map it (only to touch it).
        #[test]
        fn the_mapping_is_whole_pages_of_the_kernels_page_size() {
            if let Err(e) = crate::namespace::enter_private_ipc_namespace() {
                eprintln!("skipped: needs a private IPC namespace: {e}");
                return;
            }
            let mode = Mode::from_bits_truncate(0o600);
            let id = shmget(Key::PRIVATE, 100, GetFlags::CREAT, None, mode).expect("shmget");
            let a = Attachment::attach(id, AttachFlags::empty()).expect("shmat");
            assert_eq!((a.page_size(), a.mapping_len(), a.size()), (raw::page_size(), raw::page_size(), 100));
            drop(a);
            id.remove().expect("rm");
            if !crate::sysv::huge_page_sizes().contains(&(2 << 20)) {
                eprintln!("hugetlb half skipped: this kernel has no 2 MiB huge pages");
                return;
            }
            let huge = GetFlags::CREAT | GetFlags::HUGETLB | GetFlags::NORESERVE;
            let id = shmget(Key::PRIVATE, 4096, huge, Some(HugePageSize::Mb2), mode).expect("shmget hugetlb");
            let a = Attachment::attach(id, AttachFlags::empty()).expect("shmat hugetlb");
            assert_eq!((a.page_size(), a.mapping_len(), a.size()), (2 << 20, 2 << 20, 4096));
            assert!(a.peek(2 << 20).is_err(), "past the huge page");
            drop(a);
            id.remove().expect("rm");
        }
    }

    // A 64-bit process's smaps (the addresses do not fit a 32-bit usize).
    #[cfg(target_pointer_width = "64")]
    const SMAPS: &str = "\
55d1c0000000-55d1c0021000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
VmFlags: rd wr mr mw me ac
7f3c1a200000-7f3c1a400000 rw-s 00000000 00:10 32769                      /SYSV00000000 (deleted)
Size:               2048 kB
KernelPageSize:     2048 kB
MMUPageSize:        2048 kB
VmFlags: rd wr sh mr mw me ms de ht sd
7f3c1a400000-7f3c1a401000 rw-s 00000000 00:01 32770                      /SYSV00000000 (deleted)
Size:                  4 kB
VmFlags: rd wr sh mr mw me ms sd
7f3c40000000-7f3c80000000 rw-s 00000000 00:11 32771                      /SYSV00000000 (deleted)
KernelPageSize:  1048576 kB
";

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_page_size_is_the_kernels_for_that_mapping() {
        let page = |addr: usize| smaps_page_size(SMAPS.as_bytes(), addr);
        assert_eq!(page(0x55d1c0000000), Some(4096));
        assert_eq!(page(0x7f3c1a200000), Some(2 << 20));
        assert_eq!(page(0x7f3c40000000), Some(1 << 30));
        // An entry without the field, an address inside a mapping, none at all.
        assert_eq!(page(0x7f3c1a400000), None);
        assert_eq!(page(0x7f3c1a201000), None);
        assert_eq!(page(0x1000), None);
    }
}
