//! The `ops` target's attachment and mapping operations (issue 10, H1):
//! `shmat` at an address (with `SHM_RND`, `SHM_REMAP`), `shmdt` of an
//! arbitrary address, and `munmap`/`mprotect`/`mremap` of attachments.
//!
//! The model side is [`Pieces`]: an attachment as the kernel splits it, one
//! entry per page (unmapped, or mapped with a protection) and the pages
//! where a VMA starts. `shm_nattch` counts VMAs, not `shmat` calls
//! (`shm_vm_ops` has a `close`, so the kernel never merges two of them), so
//! the model predicts `nattch` and `lpid` after every change from the
//! pieces, following `mm/mprotect.c`, `mm/mmap.c` and `ipc/shm.c`:
//!
//! - a split calls `vm_ops->open` (`shm_open`: lpid := caller), an unmap
//!   `close` (nattch - 1, lpid := caller);
//! - `mprotect` splits a VMA only where the range ends inside one whose
//!   protection changes; one covered whole changes in place (no lpid);
//! - `mremap` shrinking unmaps the tail (lpid), growing in place touches no
//!   VMA count (no lpid), moving copies the VMA and closes the old (lpid);
//! - `shmdt(addr)` removes every piece whose segment offset lines up with
//!   `addr` (`vm_start - vm_pgoff * PAGE == addr`), `EINVAL` if none.
//!
//! After every operation here the oracle compares, besides
//! `/proc/sysvipc/shm` (nattch, via [`World::assert_agree`]), the number of
//! SysV VMAs per segment in `/proc/self/maps` with the model's.

#![allow(unsafe_code)] // opts in: fork and raw mappings of the fuzz world

use std::collections::{BTreeSet, HashMap};

use crate::sysv::planted;
use crate::sysv::{self, AttachFlags, Attachment, Errno, Protection};

use super::ops::MapOp;
use super::world::{pick, Att, World};

/// An attachment as the kernel has split it (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pieces {
    /// Per page: `None` unmapped, else the `PROT_*` bits.
    pub prot: Vec<Option<i32>>,
    /// Pages where a VMA starts (besides after a hole).
    pub starts: BTreeSet<usize>,
}

impl Pieces {
    /// A fresh attachment of `pages` pages.
    pub fn whole(pages: usize, prot: i32) -> Pieces {
        Pieces { prot: vec![Some(prot); pages], starts: BTreeSet::from([0]) }
    }

    fn starts_vma(&self, p: usize) -> bool {
        self.prot[p].is_some() && (p == 0 || self.prot[p - 1].is_none() || self.starts.contains(&p))
    }

    /// The VMAs it is now: what it adds to `shm_nattch`.
    pub fn vmas(&self) -> u64 {
        (0..self.prot.len()).filter(|&p| self.starts_vma(p)).count() as u64
    }

    /// `[start, end)` of the VMA holding page `p` (mapped).
    fn vma_of(&self, p: usize) -> (usize, usize) {
        let start = (0..=p).rev().find(|&q| self.starts_vma(q)).unwrap_or(0);
        let end =
            (p + 1..self.prot.len()).find(|&q| self.prot[q].is_none() || self.starts_vma(q)).unwrap_or(self.prot.len());
        (start, end)
    }

    /// Unmaps pages `first..first + n`.
    pub fn unmap(&mut self, first: usize, n: usize) {
        let end = (first + n).min(self.prot.len());
        for p in first..end {
            self.prot[p] = None;
        }
        self.starts.insert(end);
    }

    /// Protects pages `first..first + n` (all mapped); true if a VMA split.
    pub fn protect(&mut self, first: usize, n: usize, prot: i32) -> bool {
        let end = first + n;
        let mut split = false;
        let mut p = first;
        while p < end {
            let (s, e) = self.vma_of(p);
            if self.prot[p] != Some(prot) {
                for cut in [first.max(s), end.min(e)] {
                    if cut != s && cut != e {
                        split = true;
                        self.starts.insert(cut);
                    }
                }
                for q in first.max(s)..end.min(e) {
                    self.prot[q] = Some(prot);
                }
            }
            p = e;
        }
        split
    }

    /// Whether protecting pages `first..first + n` with `prot` is a change
    /// the model follows exactly: inside one VMA, and not a part of it next
    /// to a neighbour that already has `prot`. Recent kernels (seen on 6.18)
    /// merge such a part into the neighbour even for VMAs with a `close`
    /// (no VMA is deleted); the model leaves such inputs out.
    pub fn plain_protect(&self, first: usize, n: usize, prot: i32) -> bool {
        let (s, e) = self.vma_of(first);
        let end = first + n;
        if end > e {
            return false;
        }
        let whole = first == s && end == e;
        let prev_same = first == s && s > 0 && self.prot[s - 1] == Some(prot);
        let next_same = end == e && e < self.prot.len() && self.prot[e] == Some(prot);
        whole || !(prev_same || next_same)
    }

    /// Whether it is one VMA over every page.
    fn single(&self) -> bool {
        self.vmas() == 1 && self.prot.iter().all(Option::is_some)
    }
}

/// The pieces of attachment `i` (a fresh one if no change touched it yet).
fn pieces(w: &World, att: &Attachment) -> Pieces {
    let page = w.model.page;
    let prot = if att.is_read_only() { libc::PROT_READ } else { libc::PROT_READ | libc::PROT_WRITE };
    w.pieces.get(&(att.as_ptr() as usize)).cloned().unwrap_or_else(|| Pieces::whole(att.mapping_len() / page, prot))
}

/// What attachment `a` adds to its segment's `shm_nattch`.
pub fn vmas(w: &World, a: &Attachment) -> u64 {
    pieces(w, a).vmas()
}

/// The model after attachment `a` (of segment `id`) was detached whole by
/// this process: every piece closed.
pub fn detached(w: &mut World, a: &Attachment, id: i32) {
    let n = vmas(w, a);
    w.pieces.remove(&(a.as_ptr() as usize));
    for _ in 0..n {
        w.model.detach(id, w.pid);
    }
}

/// Performs one mapping operation and judges it.
pub fn step(w: &mut World, op: &MapOp) {
    match *op {
        MapOp::AttachAt { seg, att, misalign, rnd, remap } => attach_at(w, seg, att, misalign, rnd, remap),
        MapOp::DetachAt { att, page } => detach_at(w, att, page),
        MapOp::Unmap { att, first, pages } => unmap(w, att, first, pages),
        MapOp::Protect { att, first, pages, prot } => protect(w, att, first, pages, prot),
        MapOp::Resize { att, pages, may_move } => resize(w, att, pages, may_move),
    }
    assert_maps_agree(w);
}

fn attach_at(w: &mut World, seg: u8, att: u8, misalign: bool, rnd: bool, remap: bool) {
    let (Some(s), Some(i)) = (pick(&w.segs, seg), pick(&w.atts, att)) else { return };
    let id = w.segs[s].id;
    let base = w.atts[i].att.as_ptr() as usize;
    let addr = base + usize::from(misalign);
    let Some(len) = w.model.mapping_len(id.raw()) else {
        // Gone (or a length the model cannot tell): only the errno is judged.
        return attach_refused(w, id, addr, rnd, &[Errno::EINVAL, Errno::EIDRM]);
    };
    if misalign && !rnd {
        return attach_refused(w, id, addr, rnd, &[Errno::EINVAL]);
    }
    // The target's range is occupied (its first page at least, unless
    // unmapped): without SHM_REMAP the kernel refuses.
    if !remap {
        if pieces(w, &w.atts[i].att).prot[0].is_some() {
            return attach_refused(w, id, addr, rnd, &[Errno::EINVAL]);
        }
        return; // What lies past a hole is not the model's: not called.
    }
    // SHM_REMAP only over exactly one intact attachment of the same length:
    // anything else would replace memory that is not the input's.
    let target = &w.atts[i].att;
    if !pieces(w, target).single() || target.mapping_len() != len {
        return;
    }
    let mut flags = AttachFlags::REMAP;
    flags.set(AttachFlags::RND, rnd);
    // SAFETY: the range is exactly attachment i's, which is the input's and
    // is forgotten (no shmdt, no access) right after.
    match unsafe { Attachment::attach_at(id, addr as *const libc::c_void, flags) } {
        Ok(new) if new.as_ptr() as usize == base => {
            let mut old = w.atts.remove(i);
            old.att.forget_all();
            let n = w.pieces.remove(&base).map_or(1, |p| p.vmas());
            // The new attachment counts before the old one closes (the
            // mapping replaces it): a removed segment remapped over itself
            // lives on.
            w.model.attach(id.raw(), w.pid);
            for _ in 0..n {
                w.model.detach(old.id, w.pid);
            }
            w.atts.push(Att { att: new, id: id.raw() });
            w.assert_agree("after shmat with SHM_REMAP");
        }
        got => w.disagree(
            &format!("shmat({id}, {addr:#x}, SHM_REMAP) over the input's attachment"),
            got.map(|a| a.as_ptr()),
            format!("attached at {base:#x}"),
        ),
    }
}

/// A `shmat` the model predicts refused: made without `SHM_REMAP` (the
/// refusals predicted come before the kernel looks at it), so that a wrong
/// prediction can never replace memory.
fn attach_refused(w: &World, id: sysv::Shmid, addr: usize, rnd: bool, allowed: &[Errno]) {
    let mut flags = AttachFlags::empty();
    flags.set(AttachFlags::RND, rnd);
    // SAFETY: without SHM_REMAP the kernel never replaces a mapping.
    match unsafe { Attachment::attach_at(id, addr as *const libc::c_void, flags) } {
        Err(e) => w.check_errno(&format!("shmat({id}, {addr:#x}) where the model predicts {allowed:?}"), &e, allowed),
        Ok(a) => {
            let at = a.as_ptr();
            drop(a);
            w.disagree(&format!("shmat({id}, {addr:#x})"), format!("attached at {at:?}"), allowed);
        }
    }
}

fn detach_at(w: &mut World, att: u8, page: u8) {
    let Some(i) = pick(&w.atts, att) else { return };
    let addr = w.atts[i].att.as_ptr() as usize + usize::from(page % 4) * w.model.page;
    // The attachment that starts there, if any (pieces line up with it).
    let found = w.atts.iter().position(|a| a.att.as_ptr() as usize == addr);
    // SAFETY: the address is one of the input's attachments (then forgotten
    // below) or inside one (the kernel refuses).
    let got = unsafe { sysv::detach_at(addr as *const libc::c_void) };
    match (got, found) {
        (Ok(()), Some(j)) => {
            let mut a = w.atts.remove(j);
            a.att.forget_all();
            w.dropped.push(addr);
            detached(w, &a.att, a.id);
            w.assert_agree("after shmdt at an address");
        }
        (Err(e), None) => w.check_errno(&format!("shmdt({addr:#x}) inside an attachment"), &e, &[Errno::EINVAL]),
        (got, found) => {
            w.disagree(&format!("shmdt({addr:#x})"), got.map_err(|e| e.to_string()), found.map_or("EINVAL", |_| "ok"))
        }
    }
}

/// Page range `first..first + n` within the attachment's pages.
fn range(total: usize, first: u8, pages: u8) -> (usize, usize) {
    let first = usize::from(first) % total;
    (first, 1 + usize::from(pages) % (total - first))
}

fn unmap(w: &mut World, att: u8, first: u8, pages: u8) {
    let Some(i) = pick(&w.atts, att) else { return };
    let page = w.model.page;
    let mut p = pieces(w, &w.atts[i].att);
    let (first, n) = range(p.prot.len(), first, pages);
    if p.prot[first..first + n].iter().any(Option::is_none) {
        // A hole may hold something else by now (the kernel places new
        // mappings in free gaps): only pages still the attachment's.
        return;
    }
    let before = p.vmas();
    let touched = true;
    p.unmap(first, n);
    let after = p.vmas();
    if first == 0 && after > 0 {
        // The base would be free while the rest lives: a new attachment
        // could land there, and shmdt at the address would then pick by a
        // rule (lowest lined-up piece of one file) the oracle does not
        // follow. The scenarios cover it (map-munmap-first-page-shmdt).
        return;
    }
    let id = w.atts[i].id;
    // SAFETY: the range is inside the input's attachment i, which is not
    // accessed there again (its bounds shrink).
    if let Err(e) = unsafe { w.atts[i].att.unmap(first * page, n * page) } {
        w.disagree("munmap of pages of an attachment", e.to_string(), "ok");
    }
    let base = w.atts[i].att.as_ptr() as usize;
    // Splits open pieces, the unmap closes them: net after - before, and
    // the caller is the last to touch the segment if anything was mapped.
    apply(w, id, before, planted::unmap_nattch(before, after), touched);
    if after == 0 {
        let mut a = w.atts.remove(i);
        a.att.forget_all();
        w.pieces.remove(&base);
        w.dropped.push(base);
    } else {
        w.pieces.insert(base, p);
    }
    w.assert_agree("after munmap");
}

fn apply(w: &mut World, id: i32, before: u64, after: u64, lpid: bool) {
    for _ in after..before {
        w.model.detach(id, w.pid);
    }
    for _ in before..after {
        w.model.attach(id, w.pid);
    }
    if let (true, Some(s)) = (lpid, w.model.segs.get_mut(&id)) {
        s.lpid = w.pid;
    }
}

fn protect(w: &mut World, att: u8, first: u8, pages: u8, prot: u8) {
    let Some(i) = pick(&w.atts, att) else { return };
    let page = w.model.page;
    let mut p = pieces(w, &w.atts[i].att);
    let (first, n) = range(p.prot.len(), first, pages);
    if p.prot[first..first + n].iter().any(Option::is_none) {
        return; // ENOMEM after a partial change: not modelled.
    }
    let prot = [Protection::None, Protection::Read, Protection::ReadWrite][usize::from(prot % 3)];
    if !p.plain_protect(first, n, prot.bits()) {
        return; // A merge with a neighbour: kernel-version dependent, not modelled.
    }
    let id = w.atts[i].id;
    let (addr, len) = (w.atts[i].att.as_ptr() as usize + first * page, n * page);
    // SAFETY: inside the input's attachment i, whose bounds shrink.
    let got = unsafe { w.atts[i].att.protect(first * page, len, prot) };
    if w.atts[i].att.is_read_only() && prot == Protection::ReadWrite {
        return match got {
            Err(e) => w.check_errno("mprotect(PROT_WRITE) of a read-only attachment", &e, &[Errno::EACCES]),
            Ok(()) => w.disagree(&format!("mprotect({addr:#x}, {len:#x}, rw) of SHM_RDONLY"), "ok", "EACCES"),
        };
    }
    if let Err(e) = got {
        w.disagree(&format!("mprotect({addr:#x}, {len:#x}, {})", prot.describe()), e.to_string(), "ok");
    }
    let before = p.vmas();
    let split = p.protect(first, n, prot.bits());
    let after = p.vmas();
    apply(w, id, before, after, split);
    w.pieces.insert(w.atts[i].att.as_ptr() as usize, p);
    w.assert_agree("after mprotect");
}

fn resize(w: &mut World, att: u8, pages: u8, may_move: bool) {
    let Some(i) = pick(&w.atts, att) else { return };
    let page = w.model.page;
    let p = pieces(w, &w.atts[i].att);
    if !p.single() {
        return; // EFAULT across pieces: not modelled.
    }
    let old = p.prot.len();
    // Never past the segment's own pages: shmdt removes only pieces that
    // end within the segment's size from the address, so a grown mapping
    // split later would outlive its detach (a kernel rule the model leaves
    // to the scenarios).
    let Some(seg_pages) = w.model.mapping_len(w.atts[i].id).map(|l| l / page) else { return };
    let new = 1 + usize::from(pages) % seg_pages.max(1);
    let prot = p.prot[0].expect("single");
    let base = w.atts[i].att.as_ptr() as usize;
    let id = w.atts[i].id;
    // SAFETY: the input's attachment i, whose bounds follow the change.
    match unsafe { w.atts[i].att.resize(new * page, may_move) } {
        Ok(moved) => {
            w.pieces.remove(&base);
            let now = w.atts[i].att.as_ptr() as usize;
            w.pieces.insert(now, Pieces::whole(new, prot));
            if moved {
                w.dropped.push(base);
            }
            // Shrinking unmaps the tail, moving closes the old VMA; growing
            // in place opens nothing.
            apply(w, id, 1, 1, new < old || moved);
        }
        // Growing in place needs free room after it: not the model's to know.
        Err(e) if new > old && !may_move => w.check_errno("mremap grow in place", &e, &[Errno::ENOMEM]),
        Err(e) => w.disagree(&format!("mremap to {new} pages"), e.to_string(), "ok"),
    }
    w.assert_agree("after mremap");
}

/// `/proc/self/maps` shows, per segment, as many SysV VMAs as the model's
/// pieces of the input's attachments. Unreadable maps fail the input.
pub fn assert_maps_agree(w: &World) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_else(|e| panic!("reading /proc/self/maps: {e}"));
    let mut kernel: HashMap<i32, u64> = HashMap::new();
    for m in sysv::parse_sysv_mappings(&maps) {
        *kernel.entry(m.shmid.raw()).or_default() += 1;
    }
    let mut model: HashMap<i32, u64> = HashMap::new();
    for a in &w.atts {
        *model.entry(a.id).or_default() += vmas(w, &a.att);
    }
    model.retain(|_, n| *n > 0);
    if kernel != model {
        let mut k: Vec<_> = kernel.into_iter().collect();
        let mut m: Vec<_> = model.into_iter().collect();
        k.sort_unstable();
        m.sort_unstable();
        w.disagree("SysV mappings per segment in /proc/self/maps (shmid, VMAs)", k, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
    const R: i32 = libc::PROT_READ;

    #[test]
    fn pieces_count_vmas_as_the_kernel_does() {
        let mut p = Pieces::whole(3, RW);
        assert_eq!(p.vmas(), 1);
        // Protecting the middle splits in three; the same again changes nothing.
        assert!(p.protect(1, 1, R));
        assert_eq!(p.vmas(), 3);
        assert!(!p.protect(1, 1, R));
        // A whole VMA changed back: no split, and no merge either.
        assert!(!p.protect(1, 1, RW));
        assert_eq!(p.vmas(), 3);
        let mut q = Pieces::whole(3, RW);
        q.unmap(1, 1);
        assert_eq!(q.vmas(), 2);
        q.unmap(0, 1);
        assert_eq!(q.vmas(), 1);
        q.unmap(2, 1);
        assert_eq!(q.vmas(), 0);
        let mut r = Pieces::whole(4, RW);
        r.unmap(0, 1);
        assert_eq!(r.vmas(), 1, "the first page gone: one piece left");
        assert!(r.protect(1, 3, R) || r.vmas() == 1);
        assert_eq!(r.vmas(), 1, "a whole piece protected in place");
    }
}
