//! The memory steps an actor performs: `write`, `read`, `peek` and `poke`.
//! `write` and `read` go through the wrapper's bounds; `peek` and `poke` go
//! through them on an intact attachment, and otherwise touch the address
//! raw (a detached, unmapped, protected or resized attachment: a fault is
//! what such a step may expect).

#![allow(unsafe_code)] // opts in: raw touches of changed or detached attachments

use crate::scenario::{Data, Expect, Op};
use crate::sysv::{self, Attachment};

use crate::interp::{Outcome, Value};
use crate::runner::actor::mapping::raw_touch_allowed;
use crate::runner::actor::{answer, Actor};

/// Bytes per chunk when writing or reading large data.
const CHUNK: usize = 64 << 10;

impl Actor<'_> {
    /// Performs one of the steps of this module.
    pub(super) fn memory_step(&self, op: &Op, expect: &Expect) -> Outcome {
        let usize_of = |n: &u64| usize::try_from(*n).unwrap_or(usize::MAX);
        match op {
            Op::Write { attachment, offset, data } => {
                let att = self.attachment(attachment);
                let offset = usize_of(offset);
                let call = format!("write {attachment}[{offset}..+{}]", data.len());
                let result = match data {
                    Data::Zero(len) => att.fill(offset, *len, 0),
                    Data::Pattern(p, len) if p.len() == 1 => att.fill(offset, *len, p[0]),
                    Data::Text(b) | Data::Hex(b) => att.write_at(offset, b),
                    Data::Pattern(_, len) => write_chunked(att, offset, data, *len),
                };
                answer(call, result.map(|()| Value::Unit))
            }
            Op::Read { attachment, offset, len } => {
                let (offset, len) = (usize_of(offset), usize_of(len));
                let call = format!("read {attachment}[{offset}..+{len}]");
                let expected = match expect {
                    Expect::Data(d) => Some(d),
                    _ => None,
                };
                answer(call, read_compared(self.attachment(attachment), offset, len, expected))
            }
            Op::Peek { attachment, offset } => {
                let offset = usize_of(offset);
                let call = format!("peek {attachment}[{offset}]");
                answer(call, self.peek(self.attachment(attachment), offset).map(Value::Byte))
            }
            Op::Poke { attachment, offset, value } => {
                let offset = usize_of(offset);
                let call = format!("poke {attachment}[{offset}] = {value:#04x}");
                answer(call, self.poke(self.attachment(attachment), offset, *value).map(|()| Value::Unit))
            }
            _ => unreachable!("`{}` is not a memory step", op.keyword()),
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

/// Writes `data`'s `len` bytes at `offset` a chunk at a time.
fn write_chunked(att: &Attachment, offset: usize, data: &Data, len: usize) -> sysv::Result<()> {
    // Refuse before touching anything, as `write_at` would for the whole.
    if att.is_read_only() {
        return Err(sysv::Error::ReadOnly { op: "write_at" });
    }
    let limit = att.size().min(att.limit());
    if offset.checked_add(len).is_none_or(|end| end > limit) {
        return Err(sysv::Error::OutOfBounds { op: "write_at", offset, len, limit });
    }
    let mut buf = vec![0u8; len.min(CHUNK)];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(CHUNK);
        data.chunk_into(at, &mut buf[..n]);
        att.write_at(offset + at, &buf[..n])?;
        at += n;
    }
    Ok(())
}

/// `read`: `len` bytes at `offset`, compared with `expected` (the step's
/// expected data, if any) a chunk at a time, so that megabytes are never
/// held twice and the expected bytes are never built whole. The answer
/// carries the first difference and a window of the bytes around it (or
/// of the first bytes).
fn read_compared(att: &Attachment, offset: usize, len: usize, expected: Option<&Data>) -> sysv::Result<Value> {
    // Bounds first, so a huge bogus length allocates nothing.
    let limit = att.size().min(att.limit());
    if offset.checked_add(len).is_none_or(|end| end > limit) {
        return Err(sysv::Error::OutOfBounds { op: "read_at", offset, len, limit });
    }
    // Data of another length differs at 0 (and is not read against).
    let (expected, wrong_len) = match expected {
        Some(d) if d.len() == len => (Some(d), false),
        Some(_) => (None, true),
        None => (None, false),
    };
    let mut got = vec![0u8; len.min(CHUNK)];
    let mut want = vec![0u8; if expected.is_some() { len.min(CHUNK) } else { 0 }];
    let (mut mismatch, mut window_at, mut window) = (None, 0, Vec::new());
    let mut at = 0;
    while at < len {
        let n = (len - at).min(CHUNK);
        att.read_at(offset + at, &mut got[..n])?;
        if at == 0 {
            window = got[..n.min(32)].to_vec();
        }
        if let Some(d) = expected {
            d.chunk_into(at, &mut want[..n]);
            if let Some(i) = got[..n].iter().zip(&want[..n]).position(|(a, b)| a != b) {
                let m = at + i;
                mismatch = Some(m);
                // A little context before the difference, within this chunk.
                window_at = m.saturating_sub(8).max(at);
                window = got[window_at - at..(window_at - at + 32).min(n)].to_vec();
                break;
            }
        }
        at += n;
    }
    if wrong_len {
        mismatch = Some(0);
    }
    Ok(Value::Read { len, mismatch, window_at, window })
}
