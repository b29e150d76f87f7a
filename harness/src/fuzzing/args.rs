//! The arguments target: odd keys, sizes, `shmget` flags (every bit, the
//! huge page size encodings, stray high bits), `shmat` flags and addresses,
//! each judged by the model.
//!
//! Fixed addresses are only ever inside a range this process reserved
//! (`PROT_NONE`), so `SHM_REMAP` can never replace memory that is in use.
//! Memory of the segments is never touched: a hugetlb segment made with
//! `SHM_NORESERVE` on a machine without huge pages would fault.

#![allow(unsafe_code)] // opts in: fork and raw mappings of the fuzz world

use std::ffi::c_void;
use std::sync::OnceLock;

use arbitrary::Arbitrary;

use crate::sysv::{self, AttachFlags, Attachment, Errno, Key};

use super::world::{pick, Att, Handle, World};

/// Most calls in one input.
pub const MAX_CALLS: usize = 16;

/// One input: calls until the bytes run out (see [`super::ops::OpsInput`]).
#[derive(Debug, Clone)]
pub struct ArgsInput {
    /// The calls, cut to [`MAX_CALLS`].
    pub calls: Vec<ArgsCall>,
}

impl<'a> Arbitrary<'a> for ArgsInput {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut calls = Vec::new();
        while !u.is_empty() && calls.len() < MAX_CALLS {
            calls.push(u.arbitrary()?);
        }
        Ok(ArgsInput { calls })
    }

    fn arbitrary_take_rest(mut u: arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

/// One call with odd arguments.
#[derive(Debug, Clone, Arbitrary)]
pub enum ArgsCall {
    /// `shmget(key, size, flags)`.
    Get {
        /// The key.
        key: KeyArg,
        /// The size.
        size: SizeArg,
        /// Every bit of the flag word, as given (permission bits included).
        flags: u32,
    },
    /// `shmat(shmid, addr, flags)` of a segment this input got.
    Attach {
        /// Segment pick.
        seg: u8,
        /// Every bit of the flag word.
        flags: u32,
        /// The address.
        addr: AddrArg,
    },
    /// `shmdt` of an attachment.
    Detach {
        /// Attachment pick.
        att: u8,
    },
    /// `IPC_RMID`.
    Remove {
        /// Segment pick.
        seg: u8,
    },
}

/// Keys.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum KeyArg {
    /// From the pool (0: IPC_PRIVATE).
    Pool(u8),
    /// `IPC_PRIVATE`.
    Private,
    /// A key with the sign bit set (negative `key_t`).
    SignBit(u8),
}

/// Sizes around the interesting boundaries.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum SizeArg {
    /// 0.
    Zero,
    /// 1.
    One,
    /// A page, plus or minus a little.
    NearPage(i8),
    /// Some pages.
    Pages(u8),
    /// `shmmax`, plus or minus a little.
    NearShmmax(i8),
    /// Just below `usize::MAX`: the page count overflows.
    Overflow(u8),
    /// Anything.
    Raw(u64),
}

/// Attach addresses.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum AddrArg {
    /// NULL: the kernel chooses.
    Null,
    /// The reserved range's start (aligned to 2 MiB).
    Base,
    /// The reserved range's start plus an offset (misaligned unless a multiple of the page).
    BasePlus(u16),
}

/// Mappings longer than this may not fit the address space: 2^39 bytes,
/// the smallest user address space of a 64-bit Linux target (aarch64 with
/// 3-level, 4 KiB pages); 1 GiB on 32-bit targets, whose 3 GiB is shared
/// with everything else. Only a host-mode input, whose `shmmax` is the
/// kernel's default, can create such a segment.
#[cfg(target_pointer_width = "64")]
const MAY_NOT_MAP: usize = 1 << 39;
#[cfg(not(target_pointer_width = "64"))]
const MAY_NOT_MAP: usize = 1 << 30;

/// The reserved range: 8 MiB of `PROT_NONE`, aligned to 2 MiB.
const REGION: usize = 8 << 20;

fn region() -> usize {
    static BASE: OnceLock<usize> = OnceLock::new();
    *BASE.get_or_init(|| {
        // SAFETY: a fresh anonymous mapping that nothing else knows of.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                REGION * 2,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "reserving the attach range");
        (p as usize).next_multiple_of(2 << 20)
    })
}

/// Puts the reservation back over the range (after an attachment in it went away).
fn re_reserve() {
    let base = region();
    // SAFETY: the range is ours, and nothing is attached in it any more
    // (callers make sure), so replacing it with PROT_NONE loses nothing.
    let p = unsafe {
        libc::mmap(
            base as *mut c_void,
            REGION,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "re-reserving the attach range");
}

fn size_of(w: &World, s: SizeArg) -> usize {
    let page = w.model.page;
    let shmmax = w.model.shmmax as usize;
    match s {
        SizeArg::Zero => 0,
        SizeArg::One => 1,
        SizeArg::NearPage(d) => page.saturating_add_signed(isize::from(d)),
        SizeArg::Pages(n) => page * (usize::from(n) % 64 + 1),
        SizeArg::NearShmmax(d) => shmmax.saturating_add_signed(isize::from(d)),
        SizeArg::Overflow(d) => usize::MAX - usize::from(d),
        SizeArg::Raw(v) => v as usize,
    }
}

/// Runs one input; panics on any disagreement or leak.
pub fn run(input: &ArgsInput) {
    let mut w = World::new();
    let history = input.clone();
    w.history = Some(Box::new(move |upto| {
        history.calls.iter().take(upto + 1).enumerate().map(|(i, c)| format!("  #{i} {c:?}\n")).collect()
    }));
    let base = region();
    for (i, call) in input.calls.iter().take(MAX_CALLS).enumerate() {
        w.step = i;
        match *call {
            ArgsCall::Get { key, size, flags } => get(&mut w, key, size, flags),
            ArgsCall::Attach { seg, flags, addr } => attach(&mut w, base, seg, flags, addr),
            ArgsCall::Detach { att } => detach(&mut w, base, att),
            ArgsCall::Remove { seg } => remove(&mut w, seg),
        }
    }
    let had_region = w.atts.iter().any(|a| (a.att.as_ptr() as usize).wrapping_sub(base) < REGION);
    w.finish();
    if had_region {
        re_reserve();
    }
}

/// `shmget` with raw arguments, judged by the model.
fn get(w: &mut World, key: KeyArg, size: SizeArg, flags: u32) {
    let key = match key {
        KeyArg::Pool(n) => w.key(n),
        KeyArg::Private => 0,
        KeyArg::SignBit(n) if w.conf.private => (0x8000_0000u32 | u32::from(n)) as i32,
        KeyArg::SignBit(n) => w.key(n),
    };
    let size = size_of(w, size);
    let flags = flags as i32;
    let prediction = w.model.predict_get(key, size, flags);
    let got = sysv::shmget_raw(Key::from_raw(key), size, flags).map(|id| Handle { id, owned: None });
    w.judge_get("shmget", key, size, flags, prediction, got);
}

/// `shmat` with raw flags at an address in or out of the reservation at
/// `base`, judged by [`predict_attach`].
fn attach(w: &mut World, base: usize, seg: u8, flags: u32, addr: AddrArg) {
    let Some(i) = pick(&w.segs, seg) else { return };
    let id = w.segs[i].id;
    let flags = AttachFlags::from_bits_retain(flags as i32);
    let in_region = w.atts.iter().any(|a| (a.att.as_ptr() as usize).wrapping_sub(base) < REGION);
    let remap = flags.contains(AttachFlags::REMAP);
    // SHM_REMAP may only ever replace the bare reservation.
    if remap && in_region {
        return;
    }
    let address = match addr {
        AddrArg::Null => 0,
        AddrArg::Base => base,
        AddrArg::BasePlus(off) => base + usize::from(off),
    };
    // ... and only with a mapping that fits inside the reservation.
    let fits = w
        .model
        .mapping_len(id.raw())
        .and_then(|len| (address - address % w.model.page).checked_add(len))
        .is_some_and(|end| end <= base + REGION);
    if remap && address != 0 && !fits {
        return;
    }
    let expected = predict_attach(w, id.raw(), flags, address);
    // SAFETY: a non-null address is inside our reservation, and
    // REMAP only when nothing is attached there: nothing in use
    // can be replaced.
    let got = unsafe { Attachment::attach_at(id, address as *const c_void, flags) };
    match (got, expected) {
        (Ok(att), Ok(at)) => {
            if at != 0 && att.as_ptr() as usize != at {
                w.disagree("the attach address", att.as_ptr(), at as *const u8);
            }
            w.model.attach(id.raw(), w.pid);
            w.atts.push(Att { att, id: id.raw() });
        }
        (Err(e), Err(errnos)) => w.check_errno("shmat", &e, &errnos),
        // A mapping larger than some address spaces may be refused.
        (Err(e), Ok(_)) if w.model.mapping_len(id.raw()).is_none_or(|len| len > MAY_NOT_MAP) => {
            w.check_errno("shmat of a segment too large to map", &e, &[Errno::EINVAL, Errno::ENOMEM])
        }
        (got, expected) => w.disagree(
            &format!("shmat(shmid {id}, {address:#x}, {})", sysv::describe_attach_flags(flags.bits())),
            got.map(|a| a.as_ptr()),
            expected,
        ),
    }
}

/// `shmdt` of a live attachment; the reservation at `base` is made again
/// where it was inside it.
fn detach(w: &mut World, base: usize, att: u8) {
    let Some(i) = pick(&w.atts, att) else { return };
    let a = w.atts.remove(i);
    let in_region = (a.att.as_ptr() as usize).wrapping_sub(base) < REGION;
    if let Err(e) = a.att.detach() {
        w.disagree("shmdt of a live attachment", e.to_string(), "ok");
    }
    w.model.detach(a.id, w.pid);
    if in_region {
        re_reserve();
    }
}

/// `IPC_RMID`, judged by the model.
fn remove(w: &mut World, seg: u8) {
    let Some(i) = pick(&w.segs, seg) else { return };
    let id = w.segs[i].id;
    match (id.remove(), w.model.remove(id.raw())) {
        (Ok(()), Ok(())) => {}
        (Err(e), Err(_)) => w.check_errno("IPC_RMID of a segment that is gone", &e, &[Errno::EINVAL, Errno::EIDRM]),
        (got, model) => w.disagree("IPC_RMID", got, model),
    }
}

/// Where `shmat` should map (0: wherever the kernel likes), or which errnos.
fn predict_attach(w: &World, id: i32, flags: AttachFlags, addr: usize) -> Result<usize, Vec<Errno>> {
    let Some(seg) = w.model.segs.get(&id) else { return Err(vec![Errno::EINVAL, Errno::EIDRM]) };
    let shmlba = w.model.page;
    if addr == 0 {
        return if flags.contains(AttachFlags::REMAP) { Err(vec![Errno::EINVAL]) } else { Ok(0) };
    }
    let mut at = addr;
    if at % shmlba != 0 {
        if !flags.contains(AttachFlags::RND) {
            return Err(vec![Errno::EINVAL]);
        }
        at -= at % shmlba;
    }
    // Without REMAP the reservation is in the way.
    if !flags.contains(AttachFlags::REMAP) {
        return Err(vec![Errno::EINVAL]);
    }
    if let Some(log) = seg.huge {
        // A hugetlb mapping must start on a huge page boundary.
        if at % (1usize << log) != 0 {
            return Err(vec![Errno::EINVAL]);
        }
    }
    Ok(at)
}
