//! The actor's side of the attachment and mapping steps (issue 10, H1):
//! `attach ... at ADDR [rnd] [remap]`, `detach M`, `detach at ADDR`,
//! `mapping M CHANGE`, and raw touches of changed or detached attachments.
//!
//! A detached attachment stays in the actor's table (the wrapper handle
//! knows it is gone and refuses safe access) so that its old address can be
//! named and touched. After every step here that changes mappings, every
//! handle's safe bounds are re-derived from `/proc/self/maps`
//! ([`Attachment::recheck_bounds`]): a change through one name (a
//! `SHM_REMAP` over another attachment, an unmap reaching past its own,
//! `shmdt` of a raw address) never leaves another name's safe accessors
//! pointing at memory that is gone.

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use crate::scenario::{Addr, MapChange, Op};
use crate::sysv::{self, AttachFlags, Attachment, Shmid};

use crate::interp::judge::Judge;
use crate::interp::{Failure, Global, Globals, Outcome, Value};
use crate::runner::actor::Actor;

fn fail(call: String, e: sysv::Error) -> Outcome {
    let result = match e.errno() {
        Some(errno) => Err(Failure::Errno { errno: errno as i32, message: e.to_string() }),
        None => Err(Failure::Refused { message: e.to_string() }),
    };
    Outcome { call, result }
}

/// The page size the range checks round to (x86-64 and aarch64 with 4K
/// pages; a larger page only makes the checked range larger).
const PAGE: usize = 4096;

/// Reads `/proc/self/maps` and refuses when `[start, start + len)` (rounded
/// out to pages) overlaps a mapping that is not a SysV shared memory
/// attachment (`/SYSV...`): mapping steps and `SHM_REMAP` may change the
/// scenario's attachments, never the actor's own memory.
///
/// # Errors
/// The message names the first such mapping and the range, or says that
/// the maps could not be read (fail closed).
fn own_memory_in(start: usize, len: usize) -> Result<(), String> {
    let lo = start & !(PAGE - 1);
    let hi = start.checked_add(len).and_then(|e| e.checked_add(PAGE - 1)).map_or(usize::MAX, |e| e & !(PAGE - 1));
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

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Actor<'_> {
    /// Performs an H1 step; `None` for any other operation.
    pub(crate) fn execute_mapping(&mut self, index: usize, op: &Op, globals: &Globals) -> Option<Outcome> {
        let judge = Judge { globals, keys: &self.keys };
        let addr_of = |a: &Addr| judge.resolve_addr(a);
        let out = match op {
            Op::Attach { name, segment, read_only, exec, at, rnd, remap } => {
                let mut flags = AttachFlags::empty();
                for (on, f) in [
                    (*read_only, AttachFlags::RDONLY),
                    (*exec, AttachFlags::EXEC),
                    (*rnd, AttachFlags::RND),
                    (*remap, AttachFlags::REMAP),
                ] {
                    if on {
                        flags |= f;
                    }
                }
                let id = match globals.get(segment) {
                    Some(Global::Segment(id)) => Shmid::from_raw(*id),
                    _ => Shmid::from_raw(-1),
                };
                let addr = match at {
                    None => 0,
                    Some(a) => match addr_of(a) {
                        Some(v) => v,
                        None => return Some(unresolved(a)),
                    },
                };
                let call = format!("shmat({id}, {addr:#x}, {})", sysv::describe_attach_flags(flags.bits()));
                if *remap && at.is_some() {
                    // SHM_REMAP replaces whatever is mapped there: only the
                    // scenario's attachments may be. A segment that cannot be
                    // stated cannot be attached either: the kernel answers.
                    if let Ok(st) = id.stat() {
                        let base = if *rnd { addr & !(PAGE - 1) } else { addr };
                        if let Err(message) = own_memory_in(base, st.size) {
                            return Some(Outcome { call, result: Err(Failure::Refused { message }) });
                        }
                    }
                }
                let got = if at.is_none() {
                    Attachment::attach(id, flags)
                } else {
                    // SAFETY: an actor is a disposable process; replacing its
                    // own mappings (SHM_REMAP) is what the step tests, and
                    // every handle's bounds are rechecked right after.
                    unsafe { Attachment::attach_at(id, addr as *const std::ffi::c_void, flags) }
                };
                let outcome = match got {
                    Ok(att) => {
                        let v = Value::Attached {
                            addr: att.as_ptr() as usize,
                            size: att.size(),
                            mapping_len: att.mapping_len(),
                        };
                        let label = name.clone().unwrap_or_else(|| format!("#{index}"));
                        if at.is_some() {
                            // Only a fixed address can replace a mapping.
                            self.recheck_all();
                        }
                        self.attachments.insert(label, att);
                        Outcome { call, result: Ok(v) }
                    }
                    Err(e) => fail(call, e),
                };
                return Some(outcome);
            }
            Op::Detach { attachment } => {
                let Some(att) = self.attachments.get_mut(attachment) else {
                    return Some(Outcome {
                        call: format!("shmdt({attachment})"),
                        result: Err(Failure::Refused { message: format!("no attachment `{attachment}` here") }),
                    });
                };
                let call = format!("shmdt({:p}) [{attachment}]", att.as_ptr());
                // The kernel's answer at the address, whatever the handle
                // knows (a SHM_REMAP over it, a raw detach): the step tests
                // the kernel. The handle is gone either way.
                // SAFETY: a disposable actor; the handle is marked gone and
                // every bound rechecked below.
                let r = unsafe { sysv::detach_at(att.as_ptr().cast()) };
                att.forget_all();
                match r {
                    Ok(()) => Outcome { call, result: Ok(Value::Unit) },
                    Err(e) => fail(call, e),
                }
            }
            Op::DetachAt { addr } => {
                let Some(a) = addr_of(addr) else { return Some(unresolved(addr)) };
                let call = format!("shmdt({a:#x}) [{addr}]");
                // SAFETY: a disposable actor; every handle's bounds are
                // rechecked below, so none points at what this detached.
                match unsafe { sysv::detach_at(a as *const std::ffi::c_void) } {
                    Ok(()) => Outcome { call, result: Ok(Value::Unit) },
                    Err(e) => fail(call, e),
                }
            }
            Op::Mapping { attachment, change } => {
                let Some(att) = self.attachments.get_mut(attachment) else {
                    return Some(Outcome {
                        call: format!("mapping {attachment}"),
                        result: Err(Failure::Refused { message: format!("no attachment `{attachment}` here") }),
                    });
                };
                let start = att.as_ptr();
                let whole = att.mapping_len();
                let range = |r: &Option<(u64, u64)>| r.map_or((0, whole), |(o, l)| (usize_of(o), usize_of(l)));
                // A range that reaches past the scenario's attachments would
                // change the actor's own memory (code, heap, stack, wire
                // buffers): refused before the call, so the actor can neither
                // crash nor answer wrongly because of it.
                let reach = match change {
                    MapChange::Unmap(r) | MapChange::Protect(_, r) => Some(range(r)),
                    MapChange::Pages { offset, len, .. } => Some((usize_of(*offset), usize_of(*len))),
                    MapChange::Resize { .. } => None,
                };
                if let Some((off, len)) = reach {
                    if let Err(message) = own_memory_in((start as usize).saturating_add(off), len) {
                        let call = format!("mapping {attachment} (not called)");
                        return Some(Outcome { call, result: Err(Failure::Refused { message }) });
                    }
                }
                // Each call below: a disposable actor; the step tests what
                // the kernel does to the mapping, and every handle's bounds
                // are rechecked after it.
                let (call, result) = match change {
                    MapChange::Unmap(r) => {
                        let (off, len) = range(r);
                        let call = format!("munmap({:p}, {len:#x}) [{attachment}+{off}]", start.wrapping_add(off));
                        // SAFETY: see above; nothing touches the range but raw touches.
                        (call, unsafe { att.unmap(off, len) }.map(|()| Value::Unit))
                    }
                    MapChange::Protect(p, r) => {
                        let (off, len) = range(r);
                        let call = format!(
                            "mprotect({:p}, {len:#x}, {}) [{attachment}+{off}]",
                            start.wrapping_add(off),
                            p.describe()
                        );
                        // SAFETY: see above; a fault on access is what later steps may expect.
                        (call, unsafe { att.protect(off, len, *p) }.map(|()| Value::Unit))
                    }
                    MapChange::Resize { len, may_move } => {
                        let len = usize_of(*len);
                        let call = format!(
                            "mremap({start:p}, {whole:#x}, {len:#x}, {}) [{attachment}]",
                            if *may_move { "MREMAP_MAYMOVE" } else { "0" }
                        );
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
                        let call = format!(
                            "remap_file_pages({:p}, {len:#x}, 0, {pgoff}, 0) [{attachment}+{off}]",
                            start.wrapping_add(off)
                        );
                        // SAFETY: see above; the pages stay mapped with the same rights.
                        (call, unsafe { att.remap_pages(off, len, pgoff) }.map(|()| Value::Unit))
                    }
                };
                match result {
                    Ok(v) => Outcome { call, result: Ok(v) },
                    Err(e) => fail(call, e),
                }
            }
            _ => return None,
        };
        self.recheck_all();
        Some(out)
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

    /// `peek`: through the wrapper's bounds on an intact attachment, else a
    /// raw touch within the extent (detached, unmapped, protected, resized).
    pub(crate) fn peek(&self, att: &Attachment, offset: usize) -> sysv::Result<u8> {
        if att.is_intact() {
            att.peek(offset)
        } else {
            raw_touch_allowed(att, offset)?;
            // SAFETY: a disposable actor; SIGSEGV/SIGBUS is what such a
            // step may expect, and the page holds none of its own memory.
            unsafe { att.peek_raw(offset) }
        }
    }

    /// `poke`: as [`Actor::peek`], ignoring read-only protection.
    pub(crate) fn poke(&self, att: &Attachment, offset: usize, value: u8) -> sysv::Result<()> {
        // SAFETY: a disposable actor; dying of SIGSEGV on a read-only,
        // protected or unmapped page is what this step tests.
        unsafe {
            if att.is_intact() {
                att.poke(offset, value)
            } else {
                raw_touch_allowed(att, offset)?;
                att.poke_raw(offset, value)
            }
        }
    }
}

/// A raw touch of a changed or stale attachment (`peek`/`poke` after a
/// detach, unmap, protect or resize) may only reach a page that is
/// unmapped or still a SysV mapping: if the process's own memory (its
/// allocator, a stack) came to live at the old address since, the touch is
/// refused instead of reading or overwriting the harness's memory.
fn raw_touch_allowed(att: &Attachment, offset: usize) -> sysv::Result<()> {
    if offset >= att.extent() {
        // The wrapper refuses it with its own message.
        return Ok(());
    }
    own_memory_in((att.as_ptr() as usize).wrapping_add(offset), 1)
        .map_err(|message| sysv::Error::Proc { path: "/proc/self/maps".into(), message })
}

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
