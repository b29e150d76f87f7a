//! Changing an attachment's mapping: `munmap`, `mprotect`, `mremap`,
//! `remap_file_pages`, and `shmdt` of an arbitrary address.
//!
//! The raw layer (free functions returning [`Errno`]) makes the calls; the
//! methods on [`Attachment`] make them on an attachment and keep its
//! *bounds* honest, so the safe accessors never touch memory that a change
//! took away:
//!
//! - `limit`: the bytes from the attachment's start still known to be mapped
//!   with the rights it was attached with. `read_at`/`write_at` and the other
//!   safe accessors allow `[0, min(size, limit))`, `peek`/`poke`
//!   `[0, min(mapping_len, limit))`; past that they answer
//!   [`Error::OutOfBounds`]. An unmap or a protection that removes rights
//!   cuts `limit` at the start of the range; a resize cuts it at the new
//!   length; `remap_file_pages` leaves it (the pages stay mapped, with the
//!   same rights, showing other pages of the same segment).
//! - `extent`: the longest the mapping has ever been. The raw touches
//!   ([`Attachment::peek_raw`], [`Attachment::poke_raw`]) may reach that far,
//!   whatever is (or is no longer) mapped there: they exist to see the
//!   kernel's `SIGSEGV`/`SIGBUS`.
//! - `mapped`: false once nothing of it can be left (an unmap of the whole,
//!   a detach in place, or [`Attachment::forget_all`]): drop and `detach`
//!   then make no `shmdt`, which could detach whatever was attached at the
//!   address since.
//!
//! What the kernel counts (verified on Linux 6.x, see the `map-*`
//! scenarios): every piece of a split attachment is a VMA that holds the
//! segment, so `shm_nattch` counts pieces: an unmap of the middle page of
//! three leaves `nattch 2`, an `mprotect` of the middle leaves `nattch 3`;
//! an unmap of the whole drops it and sets `shm_lpid` like `shmdt`.

#![allow(unsafe_code)] // opts in: the raw SysV calls and the memory other processes share

use std::ffi::c_void;
use std::ptr::NonNull;

use libc::c_int;
use nix::errno::Errno;

use super::atomic_copy;
use super::attach::Attachment;
use super::error::{Error, Result};
use super::flags::AttachFlags;
use super::raw;

/// Memory protection for [`Attachment::protect`] (`PROT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Protection {
    /// `PROT_NONE`.
    None,
    /// `PROT_READ`.
    Read,
    /// `PROT_READ|PROT_WRITE`.
    ReadWrite,
    /// `PROT_READ|PROT_EXEC`.
    ReadExec,
    /// `PROT_READ|PROT_WRITE|PROT_EXEC`.
    ReadWriteExec,
}

impl Protection {
    /// The `PROT_*` bits.
    pub fn bits(self) -> c_int {
        match self {
            Protection::None => libc::PROT_NONE,
            Protection::Read => libc::PROT_READ,
            Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
            Protection::ReadExec => libc::PROT_READ | libc::PROT_EXEC,
            Protection::ReadWriteExec => libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        }
    }

    /// The scenario word: `none`, `r`, `rw`, `rx`, `rwx`.
    pub fn word(self) -> &'static str {
        match self {
            Protection::None => "none",
            Protection::Read => "r",
            Protection::ReadWrite => "rw",
            Protection::ReadExec => "rx",
            Protection::ReadWriteExec => "rwx",
        }
    }

    /// The protection a scenario word names.
    pub fn from_word(w: &str) -> Option<Protection> {
        [Protection::None, Protection::Read, Protection::ReadWrite, Protection::ReadExec, Protection::ReadWriteExec]
            .into_iter()
            .find(|p| p.word() == w)
    }

    /// `PROT_READ|PROT_WRITE` as C spells it.
    pub fn describe(self) -> &'static str {
        match self {
            Protection::None => "PROT_NONE",
            Protection::Read => "PROT_READ",
            Protection::ReadWrite => "PROT_READ|PROT_WRITE",
            Protection::ReadExec => "PROT_READ|PROT_EXEC",
            Protection::ReadWriteExec => "PROT_READ|PROT_WRITE|PROT_EXEC",
        }
    }
}

/// `munmap(addr, len)`—Unmaps the pages of a range.
///
/// # Safety
/// Nothing may use the range afterwards; whatever is mapped there (not only
/// SysV attachments) goes.
///
/// # References
/// - [Linux `munmap(2)`](https://man7.org/linux/man-pages/man2/munmap.2.html)
pub unsafe fn munmap(addr: *mut c_void, len: usize) -> Result<(), Errno> {
    // SAFETY: forwarded to the caller's contract.
    Errno::result(unsafe { libc::munmap(addr, len) }).map(drop)
}

/// `mprotect(addr, len, prot)`—Changes the protection of a range.
///
/// # Safety
/// Removing rights makes later accesses fault: nothing may access the range
/// in a way the new protection forbids.
///
/// # References
/// - [Linux `mprotect(2)`](https://man7.org/linux/man-pages/man2/mprotect.2.html)
pub unsafe fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> Result<(), Errno> {
    // SAFETY: forwarded to the caller's contract.
    Errno::result(unsafe { libc::mprotect(addr, len, prot) }).map(drop)
}

/// `mremap(old, old_len, new_len, flags)`—Resizes (and with
/// `MREMAP_MAYMOVE` possibly moves) a mapping; returns its address.
///
/// # Safety
/// After a move, nothing may use the old address; after a shrink, nothing
/// may use the cut tail.
///
/// # References
/// - [Linux `mremap(2)`](https://man7.org/linux/man-pages/man2/mremap.2.html)
pub unsafe fn mremap(old: *mut c_void, old_len: usize, new_len: usize, flags: c_int) -> Result<*mut c_void, Errno> {
    // SAFETY: forwarded to the caller's contract.
    let p = unsafe { libc::mremap(old, old_len, new_len, flags) };
    if p == libc::MAP_FAILED {
        Err(Errno::last())
    } else {
        Ok(p)
    }
}

/// `remap_file_pages(addr, size, 0, pgoff, 0)`—Makes a range of a shared
/// mapping show other pages of its file (deprecated; emulated by the kernel
/// with a new mapping).
///
/// # Safety
/// The range's contents change under any reference into it.
///
/// # References
/// - [Linux `remap_file_pages(2)`](https://man7.org/linux/man-pages/man2/remap_file_pages.2.html)
pub unsafe fn remap_file_pages(addr: *mut c_void, size: usize, pgoff: usize) -> Result<(), Errno> {
    // SAFETY: forwarded to the caller's contract.
    Errno::result(unsafe { libc::remap_file_pages(addr, size, 0, pgoff, 0) }).map(drop)
}

/// `shmdt(addr)`—Detaches whatever attachment starts at an arbitrary address.
///
/// The kernel looks for the first SysV mapping at or above `addr` whose
/// segment offset 0 would sit at `addr` (so a partly unmapped attachment is
/// still found by its original start) and unmaps its pieces; `EINVAL` when
/// there is none.
///
/// # Safety
/// Any [`Attachment`] at that address is left dangling: call
/// [`Attachment::forget_all`] on it (its safe accessors would fault).
///
/// # Errors
/// `EINVAL`: no attachment starts at `addr`.
#[doc(alias = "shmdt")]
pub unsafe fn detach_at(addr: *const c_void) -> Result<()> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { raw::shmdt(addr) }.map_err(|e| Error::sys(e, || format!("shmdt(addr={addr:?})")))
}

impl Attachment {
    fn range_ptr(&self, offset: usize) -> *mut c_void {
        self.addr.as_ptr().wrapping_add(offset).cast()
    }

    /// Cuts the safe bounds where `[start, start + len)` (absolute
    /// addresses) overlaps this attachment's extent: for changes made
    /// through another handle or a raw call. Only ever shrinks the bounds.
    pub fn forget(&mut self, start: usize, len: usize) {
        let base = self.addr.as_ptr() as usize;
        let end = start.saturating_add(len);
        if end > base && start < base.saturating_add(self.extent) {
            self.limit = self.limit.min(start.saturating_sub(base));
        }
    }

    /// Marks the whole attachment as gone (detached behind this handle's
    /// back, e.g. by [`detach_at`] or a `SHM_REMAP` over it): the safe
    /// accessors refuse everything and drop makes no `shmdt`.
    pub fn forget_all(&mut self) {
        self.limit = 0;
        self.mapped = false;
    }

    /// `shmdt(addr)`—Detaches now but keeps the handle, with its address,
    /// for raw touches ([`Attachment::peek_raw`]) of what is left there. On
    /// a handle already gone (unmapped whole, detached, forgotten) it makes
    /// no call and returns `Ok`, as [`Attachment::detach`] does.
    ///
    /// # Errors
    /// `EINVAL` if the kernel has no attachment at the address.
    #[doc(alias = "shmdt")]
    pub fn detach_in_place(&mut self) -> Result<()> {
        let id = self.id;
        let addr = self.addr;
        let was = std::mem::replace(&mut self.mapped, false);
        self.limit = 0;
        if !was {
            return Ok(());
        }
        // SAFETY: the safe accessors refuse everything from now on (limit 0),
        // and the raw touches are `unsafe` with their own terms.
        unsafe { raw::shmdt(addr.as_ptr().cast()) }
            .map_err(|e| Error::sys(e, || format!("shmdt(addr={:?}) [shmid={id}]", addr.as_ptr())))
    }

    /// `munmap(addr + offset, len)`—Unmaps part or all of the attachment
    /// (all when `offset` is 0 and `len` covers [`mapping_len`](Attachment::mapping_len)).
    ///
    /// Unmapping the whole detaches the segment (`shm_nattch` drops); part
    /// of it leaves the rest attached, in pieces that each count in
    /// `shm_nattch`. The safe bounds end at `offset` afterwards.
    ///
    /// # Safety
    /// The range may reach past the attachment: whatever is mapped there goes
    /// too, and nothing may use it afterwards.
    ///
    /// # Errors
    /// The kernel's errno (`EINVAL` for an unaligned address or a zero length).
    #[doc(alias = "munmap")]
    pub unsafe fn unmap(&mut self, offset: usize, len: usize) -> Result<()> {
        let addr = self.range_ptr(offset);
        // The bounds shrink whatever the answer: a failed munmap may have
        // split the mapping on the way.
        self.limit = self.limit.min(offset);
        // SAFETY: forwarded to the caller's contract.
        unsafe { munmap(addr, len) }
            .map_err(|e| Error::sys(e, || format!("munmap(addr={addr:?}, len={len:#x}) [shmid={}]", self.id)))?;
        if offset == 0 && len >= self.mapping_len {
            self.mapped = false;
        }
        Ok(())
    }

    /// `mprotect(addr + offset, len, prot)`—Changes the protection of part or
    /// all of the attachment. If `prot` lacks a right the attachment was
    /// attached with (read; write unless `SHM_RDONLY`), the safe bounds end
    /// at `offset`.
    ///
    /// # Safety
    /// As [`mprotect`]: the range may reach past the attachment.
    ///
    /// # Errors
    /// The kernel's errno (`EACCES` for write on a read-only attachment,
    /// `ENOMEM` for a range not all mapped, `EINVAL` for an unaligned address).
    #[doc(alias = "mprotect")]
    pub unsafe fn protect(&mut self, offset: usize, len: usize, prot: Protection) -> Result<()> {
        let addr = self.range_ptr(offset);
        let needed =
            if self.flags.contains(AttachFlags::RDONLY) { libc::PROT_READ } else { libc::PROT_READ | libc::PROT_WRITE };
        if prot.bits() & needed != needed {
            self.limit = self.limit.min(offset);
        }
        // SAFETY: forwarded to the caller's contract.
        unsafe { mprotect(addr, len, prot.bits()) }.map_err(|e| {
            Error::sys(e, || format!("mprotect(addr={addr:?}, len={len:#x}, {}) [shmid={}]", prot.describe(), self.id))
        })
    }

    /// `mremap(addr, mapping_len, new_len, MREMAP_MAYMOVE if may_move)`—Grows
    /// or shrinks the mapping (possibly moving it); returns whether it moved.
    ///
    /// Afterwards [`as_ptr`](Attachment::as_ptr) is the new address and
    /// [`mapping_len`](Attachment::mapping_len) the new length (whole pages);
    /// the safe bounds end at the old bounds or the new length, whichever is
    /// less: pages grown past the segment's end are mapped but raise
    /// `SIGBUS` when touched.
    ///
    /// # Safety
    /// Nothing may use the old address after a move or the cut tail after a
    /// shrink.
    ///
    /// # Errors
    /// The kernel's errno (`ENOMEM` when it cannot grow in place without
    /// `may_move`, `EFAULT` when the old range is not all mapped).
    #[doc(alias = "mremap")]
    pub unsafe fn resize(&mut self, new_len: usize, may_move: bool) -> Result<bool> {
        let old = self.addr.as_ptr().cast::<c_void>();
        let flags = if may_move { libc::MREMAP_MAYMOVE } else { 0 };
        let page = self.page_size;
        // SAFETY: forwarded to the caller's contract.
        let new = unsafe { mremap(old, self.mapping_len, new_len, flags) }.map_err(|e| {
            Error::sys(e, || {
                format!(
                    "mremap(addr={old:?}, old_len={:#x}, new_len={new_len:#x}, {}) [shmid={}]",
                    self.mapping_len,
                    if may_move { "MREMAP_MAYMOVE" } else { "0" },
                    self.id
                )
            })
        })?;
        let new_len = new_len.div_ceil(page) * page;
        self.addr = NonNull::new(new.cast::<u8>()).expect("mremap returned NULL on success");
        self.mapping_len = new_len;
        self.limit = self.limit.min(new_len);
        self.extent = if new == old { self.extent.max(new_len) } else { new_len };
        Ok(new != old)
    }

    /// `remap_file_pages(addr + offset, len, 0, pgoff, 0)`—Makes `len` bytes
    /// at `offset` show the segment's pages from page `pgoff` on. The pages
    /// stay mapped with the same rights, so the safe bounds do not change;
    /// what offset `n` reads is then page `pgoff + ...` of the segment. The
    /// kernel emulates this with a new mapping: `shm_nattch` counts it, and
    /// `shmdt` of the attachment's address no longer finds the remapped pages.
    ///
    /// # Safety
    /// The range's contents change under any reference into it.
    ///
    /// # Errors
    /// The kernel's errno (`EINVAL` for a range outside one shared mapping).
    #[doc(alias = "remap_file_pages")]
    pub unsafe fn remap_pages(&mut self, offset: usize, len: usize, pgoff: usize) -> Result<()> {
        let addr = self.range_ptr(offset);
        // SAFETY: forwarded to the caller's contract.
        unsafe { remap_file_pages(addr, len, pgoff) }.map_err(|e| {
            Error::sys(e, || {
                format!("remap_file_pages(addr={addr:?}, size={len:#x}, 0, pgoff={pgoff}, 0) [shmid={}]", self.id)
            })
        })
    }

    /// Bytes from the start the safe accessors may still reach (see the module doc).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The longest the mapping has ever been: how far raw touches reach.
    pub fn extent(&self) -> usize {
        self.extent
    }

    /// Whether any of the mapping may still be there.
    pub fn is_mapped(&self) -> bool {
        self.mapped
    }

    /// Whether no change has touched it: mapped whole with its attach rights.
    pub fn is_intact(&self) -> bool {
        self.mapped && self.limit >= self.mapping_len && self.extent == self.mapping_len
    }

    fn raw_ptr(&self, op: &'static str, offset: usize) -> Result<*mut u8> {
        if offset < self.extent {
            Ok(self.addr.as_ptr().wrapping_add(offset))
        } else {
            Err(Error::OutOfBounds { op, offset, len: 1, limit: self.extent })
        }
    }

    /// Reads the byte at `offset` whatever is mapped there now (within the
    /// [`extent`](Attachment::extent)): one relaxed load of its word.
    ///
    /// # Safety
    /// The address may be unmapped, protected, past the segment's end, or
    /// mapped to something else: `SIGSEGV`/`SIGBUS` is the expected outcome
    /// there. Call it only in a process meant to die of that.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past the extent.
    pub unsafe fn peek_raw(&self, offset: usize) -> Result<u8> {
        let ptr = self.raw_ptr("peek", offset)?;
        let mut byte = [0u8];
        // SAFETY: the caller's contract; a fault is the point.
        unsafe { atomic_copy::load(ptr, &mut byte) };
        Ok(byte[0])
    }

    /// Writes the byte at `offset` whatever is mapped there now (within the
    /// extent).
    ///
    /// # Safety
    /// As [`peek_raw`](Attachment::peek_raw); and if something else of this
    /// process is mapped there now, it is overwritten.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past the extent.
    pub unsafe fn poke_raw(&self, offset: usize, byte: u8) -> Result<()> {
        let ptr = self.raw_ptr("poke", offset)?;
        // SAFETY: the caller's contract; a fault is the point.
        unsafe { atomic_copy::store(ptr, &[byte]) };
        Ok(())
    }
}

/// One line of `/proc/self/maps` that maps a SysV segment: `(start, end,
/// readable, writable, shmid)`.
fn sysv_line(line: &str) -> Option<(usize, usize, bool, bool, i64)> {
    let mut f = line.split_ascii_whitespace();
    let (range, perms, _off, _dev, inode, name) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    name.strip_prefix("/SYSV")?;
    let (a, b) = range.split_once('-')?;
    let (start, end) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
    let p = perms.as_bytes();
    Some((start, end, p.first() == Some(&b'r'), p.get(1) == Some(&b'w'), inode.parse().ok()?))
}

impl Attachment {
    /// Re-derives the safe bounds from `maps` (the text of
    /// `/proc/self/maps`), for changes made behind this handle's back (a
    /// raw `munmap`, `SHM_REMAP` over it, `shmdt` of its address):
    /// `limit` becomes at most the bytes from the start that are mapped,
    /// contiguously, to this segment with the attach's rights; if no piece
    /// of the segment is left within the extent, the handle is marked gone
    /// (drop makes no `shmdt`). Only ever shrinks the bounds.
    pub fn recheck_bounds(&mut self, maps: &str) {
        let base = self.addr.as_ptr() as usize;
        let top = base.saturating_add(self.extent);
        let id = i64::from(self.id.raw());
        let need_write = !self.flags.contains(AttachFlags::RDONLY);
        let mut pieces: Vec<(usize, usize, bool)> = maps
            .lines()
            .filter_map(sysv_line)
            .filter(|&(s, e, _, _, shmid)| shmid == id && e > base && s < top)
            .map(|(s, e, r, w, _)| (s, e, r && (w || !need_write)))
            .collect();
        if pieces.is_empty() {
            self.forget_all();
            return;
        }
        pieces.sort_unstable();
        let mut reach = base;
        for (s, e, rights) in pieces {
            if s != reach || !rights {
                break;
            }
            reach = e;
        }
        self.limit = self.limit.min(reach - base);
    }
}
