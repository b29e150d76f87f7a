//! The mapping steps an actor performs: `attach ... [at ADDR [rnd]
//! [remap]]`, `detach M`, `detach at ADDR` and `mapping M CHANGE`; and the
//! check that keeps them, and the raw touches of changed or detached
//! attachments (`peek`/`poke`, in the memory module), off the actor's own
//! memory.
//!
//! A detached attachment stays in the actor's table (the wrapper handle
//! knows it is gone and refuses safe access) so that its old address can be
//! named and touched: the actor files and ends attachments by the
//! language's rule ([`Op::attachment_change`]), after each step. After every step here that changes mappings, every
//! handle's safe bounds are re-derived from `/proc/self/maps`
//! ([`Attachment::recheck_bounds`]): a change through one name (a
//! `SHM_REMAP` over another attachment, an unmap reaching past its own,
//! `shmdt` of a raw address) never leaves another name's safe accessors
//! pointing at memory that is gone.

#![allow(unsafe_code)] // opts in: shmat at an address, shmdt, munmap, mprotect, mremap

use crate::scenario::{Addr, MapChange, Op};
use crate::sysv::{self, AttachFlags, Attachment};

use crate::interp::judge::Judge;
use crate::interp::{Failure, Globals, Outcome, Value};
use crate::runner::actor::{answer, fail, target_shmid, Actor, Performed};

/// Reads `/proc/self/maps` and refuses when `[start, start + len)` (rounded
/// out to pages) overlaps a mapping that is not a SysV shared memory
/// attachment (`/SYSV...`): mapping steps and `SHM_REMAP` may change the
/// scenario's attachments, never the actor's own memory.
///
/// # Errors
/// The message names the first such mapping and the range, or says that
/// the maps could not be read (fail closed).
fn own_memory_in(start: usize, len: usize) -> Result<(), String> {
    let page = sysv::raw::page_size();
    let lo = start & !(page - 1);
    let hi = start.checked_add(len).and_then(|e| e.checked_add(page - 1)).map_or(usize::MAX, |e| e & !(page - 1));
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| format!("cannot read /proc/self/maps to check the range {lo:#x}-{hi:#x}: {e}"))?;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let Some((a, b)) = fields.next().and_then(|r| r.split_once('-')) else { continue };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else { continue };
        if a >= hi || b <= lo {
            continue;
        }
        let path = fields.nth(4).unwrap_or("");
        if !path.starts_with("/SYSV") {
            let what = if path.is_empty() { "anonymous memory" } else { path };
            return Err(format!(
                "the range {lo:#x}-{hi:#x} reaches {a:x}-{b:x} ({what}), the acting process's own memory, not a SysV \
                 attachment; keep OFFSET and LENGTH (or the remap address) within the scenario's attachments"
            ));
        }
    }
    Ok(())
}

/// How far an attachment of a `size`-byte segment at `base` can reach:
/// `size`, or, where `base` is a multiple of a huge page size the kernel
/// offers (`huge_sizes`, smallest first), `size` rounded up to the largest
/// such size. A hugetlb segment maps whole huge pages and attaches only on
/// a multiple of its page size, and `IPC_STAT` does not say whether a
/// segment is hugetlb: the guard assumes the widest mapping possible there.
fn remap_extent(base: usize, size: usize, huge_sizes: &[usize]) -> usize {
    match huge_sizes.iter().rev().find(|&&h| h > 0 && base % h == 0) {
        Some(&h) => size.div_ceil(h).saturating_mul(h),
        None => size,
    }
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Actor<'_> {
    /// Performs one of the steps of this module. A successful `attach`
    /// hands its new handle back in [`Performed::made`]: the actor files it
    /// under the name the language's rule gives ([`Op::attachment_change`]).
    pub(super) fn mapping_step(&mut self, op: &Op, globals: &Globals) -> Performed {
        let judge = Judge { globals, keys: &self.keys };
        let out = match op {
            Op::Attach { segment, read_only, exec, at, rnd, remap, .. } => {
                let addr = match at {
                    None => None,
                    Some(a) => match judge.resolve_addr(a) {
                        Some(v) => Some(v),
                        None => return unresolved(a).into(),
                    },
                };
                let flags = [
                    (*read_only, AttachFlags::RDONLY),
                    (*exec, AttachFlags::EXEC),
                    (*rnd, AttachFlags::RND),
                    (*remap, AttachFlags::REMAP),
                ]
                .into_iter()
                .filter(|(on, _)| *on)
                .fold(AttachFlags::empty(), |all, (_, f)| all | f);
                return self.attach(target_shmid(globals, segment), addr, flags);
            }
            Op::Detach { attachment } => match self.detach(attachment) {
                Some(outcome) => outcome,
                None => return missing(&format!("shmdt({attachment})"), attachment).into(),
            },
            Op::DetachAt { addr } => {
                let Some(a) = judge.resolve_addr(addr) else { return unresolved(addr).into() };
                let call = format!("shmdt({a:#x}) [{addr}]");
                // SAFETY: a disposable actor; every handle's bounds are
                // rechecked below, so none points at what this detached.
                answer(call, unsafe { sysv::detach_at(a as *const std::ffi::c_void) }.map(|()| Value::Unit))
            }
            Op::Mapping { attachment, change } => {
                let Some(att) = self.attachments.get_mut(attachment) else {
                    return missing(&format!("mapping {attachment}"), attachment).into();
                };
                if let Some(refused) = reaches_own_memory(att, attachment, change) {
                    return refused.into();
                }
                change_in_place(att, attachment, change)
            }
            _ => unreachable!("`{}` is not a mapping step", op.keyword()),
        };
        self.recheck_all();
        out.into()
    }

    /// `attach`: `shmat` at `addr` (`None`: where the kernel chooses). A
    /// fixed address with `SHM_REMAP` is refused before the call if the
    /// segment would cover the process's own memory there.
    fn attach(&mut self, id: sysv::Shmid, addr: Option<usize>, flags: AttachFlags) -> Performed {
        let call = format!("shmat({id}, {:#x}, {})", addr.unwrap_or(0), sysv::describe_attach_flags(flags.bits()));
        if let (Some(addr), true) = (addr, flags.contains(AttachFlags::REMAP)) {
            // SHM_REMAP replaces whatever is mapped there: only the
            // scenario's attachments may be. A segment that cannot be
            // stated cannot be attached either: the kernel answers.
            if let Ok(st) = id.stat() {
                let page = sysv::raw::page_size();
                let base = if flags.contains(AttachFlags::RND) { addr & !(page - 1) } else { addr };
                if let Err(message) = own_memory_in(base, remap_extent(base, st.size, &sysv::huge_page_sizes())) {
                    return Outcome { call, result: Err(Failure::Refused { message }) }.into();
                }
            }
        }
        let got = match addr {
            None => Attachment::attach(id, flags),
            // SAFETY: an actor is a disposable process; replacing its
            // own mappings (SHM_REMAP) is what the step tests, and
            // every handle's bounds are rechecked right after.
            Some(addr) => unsafe { Attachment::attach_at(id, addr as *const std::ffi::c_void, flags) },
        };
        match got {
            Ok(att) => {
                let v =
                    Value::Attached { addr: att.as_ptr() as usize, size: att.size(), mapping_len: att.mapping_len() };
                if addr.is_some() {
                    // Only a fixed address can replace a mapping.
                    self.recheck_all();
                }
                Performed { outcome: Outcome { call, result: Ok(v) }, made: Some(att) }
            }
            Err(e) => fail(call, e).into(),
        }
    }

    /// `detach M`: `shmdt` at the attachment's address, whatever its handle
    /// knows (a SHM_REMAP over it, a raw detach): the step tests the
    /// kernel. `None` if this process has no such attachment.
    fn detach(&mut self, attachment: &str) -> Option<Outcome> {
        let att = self.attachments.get(attachment)?;
        let call = format!("shmdt({:p}) [{attachment}]", att.as_ptr());
        // SAFETY: a disposable actor; the handle ends with the step (the
        // language's rule: a detach ends the attachment whatever its
        // answer) and every bound is rechecked after it.
        Some(answer(call, unsafe { sysv::detach_at(att.as_ptr().cast()) }.map(|()| Value::Unit)))
    }

    /// Re-derives every handle's safe bounds from `/proc/self/maps`. If the
    /// file cannot be read, every handle is marked gone: fail closed (the
    /// safe accessors refuse; the leak oracle still reads the maps itself).
    fn recheck_all(&mut self) {
        match std::fs::read_to_string("/proc/self/maps") {
            Ok(maps) => self.attachments.values_mut().for_each(|a| a.recheck_bounds(&maps)),
            Err(_) => self.attachments.values_mut().for_each(Attachment::forget_all),
        }
    }
}

/// `(offset, length)` of a change's optional range: the whole mapping
/// (`whole` bytes) when the step gives none.
fn range(r: &Option<(u64, u64)>, whole: usize) -> (usize, usize) {
    r.map_or((0, whole), |(o, l)| (usize_of(o), usize_of(l)))
}

/// `mapping M CHANGE` whose range would reach past the scenario's
/// attachments into the actor's own memory (code, heap, stack, wire
/// buffers): the refusal, answered before any call so that the actor can
/// neither crash nor answer wrongly because of it.
fn reaches_own_memory(att: &Attachment, name: &str, change: &MapChange) -> Option<Outcome> {
    let reach = match change {
        MapChange::Unmap(r) | MapChange::Protect(_, r) => range(r, att.mapping_len()),
        MapChange::Pages { offset, len, .. } => (usize_of(*offset), usize_of(*len)),
        MapChange::Resize { .. } => return None,
    };
    let (off, len) = reach;
    let message = own_memory_in((att.as_ptr() as usize).saturating_add(off), len).err()?;
    Some(Outcome { call: format!("mapping {name} (not called)"), result: Err(Failure::Refused { message }) })
}

/// Performs a mapping change on attachment `name`'s handle `att` (already
/// checked not to reach the process's own memory).
///
/// Each call below: a disposable actor; the step tests what the kernel does
/// to the mapping, and every handle's bounds are rechecked after it.
fn change_in_place(att: &mut Attachment, name: &str, change: &MapChange) -> Outcome {
    let start = att.as_ptr();
    let whole = att.mapping_len();
    let (call, result) = match change {
        MapChange::Unmap(r) => {
            let (off, len) = range(r, whole);
            let call = format!("munmap({:p}, {len:#x}) [{name}+{off}]", start.wrapping_add(off));
            // SAFETY: see above; nothing touches the range but raw touches.
            (call, unsafe { att.unmap(off, len) }.map(|()| Value::Unit))
        }
        MapChange::Protect(p, r) => {
            let (off, len) = range(r, whole);
            let at = start.wrapping_add(off);
            let call = format!("mprotect({at:p}, {len:#x}, {}) [{name}+{off}]", p.describe());
            // SAFETY: see above; a fault on access is what later steps may expect.
            (call, unsafe { att.protect(off, len, *p) }.map(|()| Value::Unit))
        }
        MapChange::Resize { len, may_move } => {
            let len = usize_of(*len);
            let flag = if *may_move { "MREMAP_MAYMOVE" } else { "0" };
            let call = format!("mremap({start:p}, {whole:#x}, {len:#x}, {flag}) [{name}]");
            // SAFETY: see above; the handle follows the new address and length.
            let r = unsafe { att.resize(len, *may_move) }.map(|moved| Value::Remapped {
                addr: att.as_ptr() as usize,
                mapping_len: att.mapping_len(),
                moved,
            });
            (call, r)
        }
        MapChange::Pages { offset, len, pgoff } => {
            let (off, len, pgoff) = (usize_of(*offset), usize_of(*len), usize_of(*pgoff));
            let at = start.wrapping_add(off);
            let call = format!("remap_file_pages({at:p}, {len:#x}, 0, {pgoff}, 0) [{name}+{off}]");
            // SAFETY: see above; the pages stay mapped with the same rights.
            (call, unsafe { att.remap_pages(off, len, pgoff) }.map(|()| Value::Unit))
        }
    };
    answer(call, result)
}

/// The refusal of a step that names an attachment this process does not
/// hold (possible only in a `finally` step after a failure).
fn missing(call: &str, attachment: &str) -> Outcome {
    Outcome {
        call: call.to_string(),
        result: Err(Failure::Refused { message: format!("no attachment `{attachment}` here") }),
    }
}

/// A raw touch of a changed or stale attachment (`peek`/`poke` after a
/// detach, unmap, protect or resize) may only reach a page that is
/// unmapped or still a SysV mapping: if the process's own memory (its
/// allocator, a stack) came to live at the old address since, the touch is
/// refused instead of reading or overwriting the harness's memory.
pub(super) fn raw_touch_allowed(att: &Attachment, offset: usize) -> sysv::Result<()> {
    if offset >= att.extent() {
        // The wrapper refuses it with its own message.
        return Ok(());
    }
    own_memory_in((att.as_ptr() as usize).wrapping_add(offset), 1)
        .map_err(|message| sysv::Error::Proc { path: "/proc/self/maps".into(), message })
}

/// The refusal of a step whose address has no value in this process.
fn unresolved(a: &Addr) -> Outcome {
    Outcome {
        call: format!("address {a}"),
        result: Err(Failure::Refused { message: format!("address `{a}` has no value in this process") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysv::{shmget, AttachFlags, GetFlags, Key, Mode};
    use rusty_fork::rusty_fork_test;

    #[test]
    fn a_remap_guard_covers_whole_huge_pages_where_one_can_start() {
        let (k4, m2, g1) = (4096, 2 << 20, 1 << 30);
        let sizes = [m2, g1];
        assert_eq!(remap_extent(m2 + k4, k4, &sizes), k4, "not huge-page aligned: the segment's size");
        assert_eq!(remap_extent(3 * m2, k4, &sizes), m2, "2 MiB aligned: a whole 2 MiB page");
        assert_eq!(remap_extent(3 * m2, m2 + 1, &sizes), 2 * m2);
        assert_eq!(remap_extent(g1, k4, &sizes), g1, "1 GiB aligned: the largest page that can start there");
        assert_eq!(remap_extent(g1, k4, &[]), k4, "no huge pages: the segment's size");
    }

    rusty_fork_test! {
        #![rusty_fork(timeout_ms = 60_000)]

        /// A stale attachment's old address taken over by the process's own
        /// memory: the raw touch is refused (it would read or overwrite the
        /// harness's memory); unmapped again, the touch is allowed (and would
        /// fault, as a scenario expects).
        #[test]
        fn a_raw_touch_never_reaches_the_processs_own_memory() {
            if let Err(e) = crate::namespace::enter_private_ipc_namespace() {
                eprintln!("skipped: needs a private IPC namespace: {e}");
                return;
            }
            let page = sysv::raw::page_size();
            let id = shmget(Key::PRIVATE, page, GetFlags::CREAT, None, Mode::from_bits_truncate(0o600)).expect("shmget");
            let mut a = Attachment::attach(id, AttachFlags::empty()).expect("shmat");
            id.remove().expect("rm");
            a.detach_in_place().expect("shmdt");
            assert!(raw_touch_allowed(&a, 0).is_ok(), "unmapped: the touch may fault");
            // SAFETY: MAP_FIXED_NOREPLACE at a range nothing maps now (the
            // detach above freed it); anonymous, private memory of this test.
            let own = unsafe {
                libc::mmap(
                    a.as_ptr().cast(),
                    page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            assert_eq!(own, a.as_ptr().cast(), "mmap at the old address");
            let refused = raw_touch_allowed(&a, 0).expect_err("own memory must be refused");
            assert!(refused.to_string().contains("own memory"), "{refused}");
            // SAFETY: the mapping made above, not used after this.
            assert_eq!(unsafe { libc::munmap(own, page) }, 0);
            assert!(raw_touch_allowed(&a, 0).is_ok());
        }
    }
}
