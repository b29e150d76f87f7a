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
/// what the kernel mapped, the size rounded up to whole pages.
///
/// After `fork` the child has the same mapping (the kernel counts it in
/// `shm_nattch`), and dropping the inherited `Attachment` there detaches the
/// child's copy only.
#[derive(Debug)]
pub struct Attachment {
    pub(super) addr: NonNull<u8>,
    pub(super) size: usize,
    pub(super) mapping_len: usize,
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
        let page = page.unwrap_or_else(raw::page_size);
        let mapping_len = size.div_ceil(page) * page;
        Ok(Attachment {
            addr: mapped,
            size,
            mapping_len,
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
    /// whole pages (huge pages for a hugetlb segment created through this
    /// crate; the kernel does not report hugetlb through `IPC_STAT`, so an
    /// attachment by bare id assumes base pages).
    pub fn mapping_len(&self) -> usize {
        self.mapping_len
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
