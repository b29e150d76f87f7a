//! What the tracer reports, and its wire format on the event pipe.
//!
//! A frame is a little-endian `u16` payload length, then the payload: a tag
//! byte and the event's fields as fixed-width little-endian integers (a
//! failure's text is UTF-8 to the end of the frame). Frames are at most
//! [`MAX_FRAME`] bytes; the [`Decoder`] refuses longer frames, unknown tags,
//! wrong lengths and invalid text, so garbage on the pipe is an error, never
//! an event.

use super::tracee::Step;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal; whether it dumped core.
    Signal {
        /// The signal number.
        signal: i32,
        /// Whether a core was dumped.
        core: bool,
    },
}

/// One report from the tracer, in the order things happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The program was started (it is stopped before `execve` until traced).
    Started {
        /// The program's pid.
        pid: i32,
    },
    /// A tracee's `shmget` created a segment. Written while the tracee is
    /// still stopped after the call, so it comes before the program can act
    /// on the id.
    Created {
        /// The new segment.
        shmid: i32,
        /// Its key (0: `IPC_PRIVATE`).
        key: i32,
        /// Its size in bytes.
        size: u64,
        /// Its creator's pid (the tracee's thread-group id), from `IPC_STAT`.
        cpid: i32,
        /// Its `shm_ctime`, from `IPC_STAT`.
        ctime: i64,
        /// The thread that called `shmget`.
        by_pid: i32,
    },
    /// A tracee's `shmctl(IPC_SET)` succeeded: the segment's identity now
    /// has this `ctime`. `old_ctime` is what `IPC_STAT` read before the call
    /// (`None` if it could not).
    Changed {
        /// The segment.
        shmid: i32,
        /// Its creator's pid (unchanged by `IPC_SET`).
        cpid: i32,
        /// `shm_ctime` before the call, if it could be read.
        old_ctime: Option<i64>,
        /// `shm_ctime` after the call.
        ctime: i64,
        /// The thread that called `shmctl`.
        by_pid: i32,
    },
    /// A tracee's `shmctl(IPC_RMID)` succeeded (the segment lives on until
    /// its last detach, keyless).
    Removed {
        /// The segment.
        shmid: i32,
        /// The thread that called `shmctl`.
        by_pid: i32,
    },
    /// A tracee's `shmget` returned `shmid`, but the tracer could not read
    /// the segment's identity (`errno`), so it cannot say whether the call
    /// created it; or (`shmid` -1) the tracee died in a `shmget` that may
    /// have created a segment and T could not look for it. The caller must
    /// treat the run as unverifiable.
    Unverified {
        /// The id `shmget` returned; -1 if the tracee died in the call.
        shmid: i32,
        /// The thread that called `shmget`.
        by_pid: i32,
        /// Why the identity could not be read.
        errno: i32,
    },
    /// The guard refused a call of a tracee on a segment that is not the
    /// caller's (see [`Program::guard`](super::Program::guard)): the program got `errno`.
    Refused(Refused),
    /// The program could not be started: `step` of the setup between `fork`
    /// and `execve` failed with `errno`. `ProgramExited(Code(127))` follows.
    NotStarted {
        /// The step that failed.
        step: Step,
        /// The kernel's answer.
        errno: i32,
    },
    /// The program itself (the first tracee) ended; descendants may live on.
    ProgramExited(Exit),
    /// Every tracee has ended; the tracer exits after this event.
    AllExited,
    /// The tracer failed and killed every tracee; it exits after this event.
    Failed(String),
}

/// A call the guard refused, as T saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The calling process (thread-group id).
    pub pid: i32,
    /// Its `argv[0]` (at most 80 bytes).
    pub program: String,
    /// The call.
    pub call: GuardedCall,
    /// The segment it reached.
    pub shmid: i32,
    /// What the program got instead (`EACCES`).
    pub errno: i32,
    /// Why.
    pub why: Why,
}

/// A call the guard checks, with the arguments a message names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardedCall {
    /// `shmget(key, size, flags)` that returned someone else's segment.
    Shmget {
        /// The key asked for.
        key: i32,
        /// The flags.
        flags: i32,
    },
    /// `shmat(shmid, ...)`.
    Shmat,
    /// `shmctl(shmid, cmd, ...)`.
    Shmctl {
        /// The command (without `IPC_64`).
        cmd: i32,
    },
}

/// Why the guard refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The segment is not the caller's: its key and owner uid.
    NotOurs {
        /// Its key.
        key: i32,
        /// Its owner's uid.
        uid: u32,
    },
    /// Its identity or the ledger could not be read (fail closed).
    Unverifiable(String),
}

impl Refused {
    /// The sentence for a report: the program, the call, the segment and
    /// what it got.
    pub fn describe(&self) -> String {
        let call = match self.call {
            GuardedCall::Shmget { key, flags } => format!("shmget({:#010x}, flags 0{flags:o})", key as u32),
            GuardedCall::Shmat => format!("shmat({})", self.shmid),
            GuardedCall::Shmctl { cmd } => format!("shmctl({}, {})", self.shmid, cmd_name(cmd)),
        };
        let errno = nix::errno::Errno::from_raw(self.errno);
        let what = match &self.why {
            Why::NotOurs { key, uid } => format!(
                "shmid {} (key {:#010x}, owner uid {uid}), which is not this scenario's",
                self.shmid, *key as u32
            ),
            Why::Unverifiable(why) => format!("shmid {}, whose owner cannot be verified ({why})", self.shmid),
        };
        format!(
            "program {} (pid {}) called {call} on {what}: refused with {errno:?} (host isolation lets programs change only the scenario's segments)",
            self.program, self.pid
        )
    }
}

/// A `shmctl` command's name, or `cmd N` (the wrapper's table).
fn cmd_name(cmd: i32) -> String {
    match crate::sysv::ShmctlCmd::from_raw(cmd) {
        crate::sysv::ShmctlCmd::Other(n) => format!("cmd {n}"),
        named => named.name(),
    }
}

/// The longest frame, length prefix included.
pub const MAX_FRAME: usize = 256;

const T_STARTED: u8 = 1;
const T_CREATED: u8 = 2;
const T_CHANGED: u8 = 3;
const T_REMOVED: u8 = 4;
const T_UNVERIFIED: u8 = 5;
const T_EXITED: u8 = 6;
const T_ALL_EXITED: u8 = 7;
const T_FAILED: u8 = 8;
const T_NOT_STARTED: u8 = 9;
const T_REFUSED: u8 = 10;

impl Event {
    /// The event as one frame. A failure's text is cut (on a character
    /// boundary) to fit in [`MAX_FRAME`].
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(64);
        match self {
            Event::Started { pid } => {
                p.push(T_STARTED);
                p.extend(pid.to_le_bytes());
            }
            Event::Created { shmid, key, size, cpid, ctime, by_pid } => {
                p.push(T_CREATED);
                p.extend(shmid.to_le_bytes());
                p.extend(key.to_le_bytes());
                p.extend(size.to_le_bytes());
                p.extend(cpid.to_le_bytes());
                p.extend(ctime.to_le_bytes());
                p.extend(by_pid.to_le_bytes());
            }
            Event::Changed { shmid, cpid, old_ctime, ctime, by_pid } => {
                p.push(T_CHANGED);
                p.extend(shmid.to_le_bytes());
                p.extend(cpid.to_le_bytes());
                p.push(u8::from(old_ctime.is_some()));
                p.extend(old_ctime.unwrap_or(0).to_le_bytes());
                p.extend(ctime.to_le_bytes());
                p.extend(by_pid.to_le_bytes());
            }
            Event::Removed { shmid, by_pid } => {
                p.push(T_REMOVED);
                p.extend(shmid.to_le_bytes());
                p.extend(by_pid.to_le_bytes());
            }
            Event::Unverified { shmid, by_pid, errno } => {
                p.push(T_UNVERIFIED);
                p.extend(shmid.to_le_bytes());
                p.extend(by_pid.to_le_bytes());
                p.extend(errno.to_le_bytes());
            }
            Event::ProgramExited(exit) => {
                p.push(T_EXITED);
                match *exit {
                    Exit::Code(c) => {
                        p.push(0);
                        p.extend(c.to_le_bytes());
                    }
                    Exit::Signal { signal, core } => {
                        p.push(1 + u8::from(core));
                        p.extend(signal.to_le_bytes());
                    }
                }
            }
            Event::NotStarted { step, errno } => {
                p.push(T_NOT_STARTED);
                p.push(*step as u8);
                p.extend(errno.to_le_bytes());
            }
            Event::Refused(r) => encode_refused(r, &mut p),
            Event::AllExited => p.push(T_ALL_EXITED),
            Event::Failed(text) => {
                p.push(T_FAILED);
                p.extend(cut(text, MAX_FRAME - 3).as_bytes());
            }
        }
        let mut frame = (p.len() as u16).to_le_bytes().to_vec();
        frame.extend(p);
        debug_assert!(frame.len() <= MAX_FRAME);
        frame
    }
}

/// `text` cut (on a character boundary) to at most `max` bytes.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The longest program name in a [`Refused`] frame.
const MAX_PROGRAM: usize = 80;
/// The fixed part of a [`Refused`] payload after its tag: pid, call kind,
/// its argument pair, shmid, errno, why, key, uid, program length.
const REFUSED_FIXED: usize = 4 + 1 + 4 + 4 + 4 + 4 + 1 + 4 + 4 + 1;

/// A [`Refused`] after its tag: the fixed fields, the program name (its
/// length first), then an unverifiable reason's text (cut to fit).
fn encode_refused(r: &Refused, p: &mut Vec<u8>) {
    p.push(T_REFUSED);
    p.extend(r.pid.to_le_bytes());
    let (kind, a, b) = match r.call {
        GuardedCall::Shmget { key, flags } => (1u8, key, flags),
        GuardedCall::Shmat => (2, 0, 0),
        GuardedCall::Shmctl { cmd } => (3, cmd, 0),
    };
    p.push(kind);
    p.extend(a.to_le_bytes());
    p.extend(b.to_le_bytes());
    p.extend(r.shmid.to_le_bytes());
    p.extend(r.errno.to_le_bytes());
    let (why, key, uid, text) = match &r.why {
        Why::NotOurs { key, uid } => (0u8, *key, *uid, ""),
        Why::Unverifiable(t) => (1, 0, 0, t.as_str()),
    };
    p.push(why);
    p.extend(key.to_le_bytes());
    p.extend(uid.to_le_bytes());
    let program = cut(&r.program, MAX_PROGRAM);
    p.push(program.len() as u8);
    p.extend(program.as_bytes());
    p.extend(cut(text, MAX_FRAME - 3 - REFUSED_FIXED - program.len()).as_bytes());
}

/// A [`Refused`] payload (after its tag).
fn decode_refused(body: &[u8]) -> Result<Event, DecodeError> {
    let tag = T_REFUSED;
    if body.len() < REFUSED_FIXED {
        return Err(DecodeError::BadPayload { tag, len: body.len() });
    }
    let mut f = Fields { rest: body };
    let pid = f.i32();
    let kind = f.u8();
    let (a, b) = (f.i32(), f.i32());
    let call = match kind {
        1 => GuardedCall::Shmget { key: a, flags: b },
        2 => GuardedCall::Shmat,
        3 => GuardedCall::Shmctl { cmd: a },
        _ => return Err(DecodeError::BadField { tag, what: "call" }),
    };
    let (shmid, errno) = (f.i32(), f.i32());
    let (why, key, uid) = (f.u8(), f.i32(), f.i32() as u32);
    let len = usize::from(f.u8());
    let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_string);
    let program = f.rest.get(..len).and_then(|b| text(b).ok()).ok_or(DecodeError::BadField { tag, what: "program" })?;
    let rest = text(&f.rest[len..]).map_err(|_| DecodeError::BadField { tag, what: "reason" })?;
    let why = match why {
        0 if rest.is_empty() => Why::NotOurs { key, uid },
        1 => Why::Unverifiable(rest),
        _ => return Err(DecodeError::BadField { tag, what: "why" }),
    };
    Ok(Event::Refused(Refused { pid, program, call, shmid, errno, why }))
}

/// Why bytes on the event pipe are not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The length prefix is zero or exceeds [`MAX_FRAME`].
    #[error("event frame of {0} bytes (allowed: 1..={max})", max = MAX_FRAME - 2)]
    BadLength(usize),
    /// The tag byte names no event.
    #[error("unknown event tag {0}")]
    UnknownTag(u8),
    /// The payload is not the size its tag requires.
    #[error("event tag {tag} with {len} payload bytes")]
    BadPayload {
        /// The tag.
        tag: u8,
        /// The payload's length.
        len: usize,
    },
    /// The pipe closed in the middle of a frame.
    #[error("the event pipe closed in the middle of a frame")]
    Truncated,
    /// Bytes followed the final event (`AllExited` or `Failed`).
    #[error("bytes after the final event")]
    AfterFinal,
    /// A field holds a value no encoder writes.
    #[error("event tag {tag}: invalid field: {what}")]
    BadField {
        /// The tag.
        tag: u8,
        /// Which field.
        what: &'static str,
    },
}

/// Splits a byte stream into events; fail-closed on anything malformed.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds bytes read from the pipe.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether bytes of an incomplete frame are buffered.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete event, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// [`DecodeError`] if the buffered bytes cannot be a frame; the decoder
    /// should then be dropped (the stream has lost its framing).
    pub fn next_event(&mut self) -> Result<Option<Event>, DecodeError> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_le_bytes([self.buf[0], self.buf[1]]));
        if len == 0 || len + 2 > MAX_FRAME {
            return Err(DecodeError::BadLength(len));
        }
        if self.buf.len() < len + 2 {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        decode(&payload).map(Some)
    }
}

/// Reads fixed-width fields off a payload.
struct Fields<'a> {
    rest: &'a [u8],
}

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.rest.split_at(N);
        self.rest = rest;
        head.try_into().expect("split_at gave N bytes")
    }
    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
}

fn decode(payload: &[u8]) -> Result<Event, DecodeError> {
    let tag = payload[0];
    let body = &payload[1..];
    let want = match tag {
        T_STARTED => Some(4),
        T_CREATED => Some(4 + 4 + 8 + 4 + 8 + 4),
        T_CHANGED => Some(4 + 4 + 1 + 8 + 8 + 4),
        T_REMOVED => Some(8),
        T_UNVERIFIED => Some(12),
        T_EXITED => Some(5),
        T_ALL_EXITED => Some(0),
        T_NOT_STARTED => Some(5),
        T_FAILED => None,
        T_REFUSED => return decode_refused(body),
        _ => return Err(DecodeError::UnknownTag(tag)),
    };
    if want.is_some_and(|w| w != body.len()) {
        return Err(DecodeError::BadPayload { tag, len: body.len() });
    }
    let mut f = Fields { rest: body };
    Ok(match tag {
        T_STARTED => Event::Started { pid: f.i32() },
        T_CREATED => Event::Created {
            shmid: f.i32(),
            key: f.i32(),
            size: f.u64(),
            cpid: f.i32(),
            ctime: f.i64(),
            by_pid: f.i32(),
        },
        T_CHANGED => {
            let shmid = f.i32();
            let cpid = f.i32();
            let has_old = f.u8();
            let old = f.i64();
            let old_ctime = match has_old {
                0 if old == 0 => None,
                1 => Some(old),
                _ => return Err(DecodeError::BadField { tag, what: "old_ctime" }),
            };
            Event::Changed { shmid, cpid, old_ctime, ctime: f.i64(), by_pid: f.i32() }
        }
        T_REMOVED => Event::Removed { shmid: f.i32(), by_pid: f.i32() },
        T_UNVERIFIED => Event::Unverified { shmid: f.i32(), by_pid: f.i32(), errno: f.i32() },
        T_EXITED => {
            let kind = f.u8();
            let value = f.i32();
            match kind {
                0 => Event::ProgramExited(Exit::Code(value)),
                1 | 2 => Event::ProgramExited(Exit::Signal { signal: value, core: kind == 2 }),
                _ => return Err(DecodeError::BadField { tag, what: "exit kind" }),
            }
        }
        T_ALL_EXITED => Event::AllExited,
        T_NOT_STARTED => {
            let step = Step::from_u8(f.u8()).ok_or(DecodeError::BadField { tag, what: "setup step" })?;
            Event::NotStarted { step, errno: f.i32() }
        }
        _ => match std::str::from_utf8(body) {
            Ok(text) => Event::Failed(text.to_string()),
            Err(_) => return Err(DecodeError::BadField { tag, what: "text (not UTF-8)" }),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Event> {
        vec![
            Event::Started { pid: 42 },
            Event::Created { shmid: 7, key: -1, size: u64::MAX, cpid: 42, ctime: 1_700_000_000, by_pid: 43 },
            Event::Changed { shmid: 7, cpid: 42, old_ctime: Some(5), ctime: 6, by_pid: 42 },
            Event::Changed { shmid: 7, cpid: 42, old_ctime: None, ctime: 6, by_pid: 42 },
            Event::Removed { shmid: 0, by_pid: 1 },
            Event::Unverified { shmid: 3, by_pid: 4, errno: 13 },
            Event::ProgramExited(Exit::Code(3)),
            Event::ProgramExited(Exit::Signal { signal: 9, core: false }),
            Event::ProgramExited(Exit::Signal { signal: 11, core: true }),
            Event::NotStarted { step: Step::Exec, errno: 2 },
            Event::Refused(Refused {
                pid: 812,
                program: "ipcrm".into(),
                call: GuardedCall::Shmctl { cmd: 0 },
                shmid: 5,
                errno: 13,
                why: Why::NotOurs { key: 0x5348_0001, uid: 65534 },
            }),
            Event::Refused(Refused {
                pid: 9,
                program: "/a/key_grab".into(),
                call: GuardedCall::Shmget { key: -1, flags: 0o1600 },
                shmid: 0,
                errno: 13,
                why: Why::Unverifiable("the ledger: EIO".into()),
            }),
            Event::AllExited,
            Event::Failed("ptrace(PTRACE_CONT): ESRCH".into()),
        ]
    }

    #[test]
    fn every_event_round_trips_byte_by_byte() {
        let mut d = Decoder::new();
        let mut got = vec![];
        for e in samples() {
            for b in e.encode() {
                d.push(&[b]);
                if let Some(ev) = d.next_event().unwrap() {
                    got.push(ev);
                }
            }
        }
        assert_eq!(got, samples());
        assert!(!d.has_partial());
    }

    #[test]
    fn long_failure_text_is_cut_to_the_frame_limit() {
        let e = Event::Failed("é".repeat(500));
        let frame = e.encode();
        assert!(frame.len() <= MAX_FRAME);
        let mut d = Decoder::new();
        d.push(&frame);
        let Some(Event::Failed(t)) = d.next_event().unwrap() else { panic!() };
        assert!(t.len() <= MAX_FRAME - 3 && t.starts_with("éé"));
    }

    #[test]
    fn a_refusal_fits_a_frame_and_says_who_did_what_to_which_segment() {
        let r = Refused {
            pid: 812,
            program: format!("/{}/ipcrm", "d".repeat(200)),
            call: GuardedCall::Shmctl { cmd: 0 },
            shmid: 5,
            errno: libc::EACCES,
            why: Why::Unverifiable("é".repeat(300)),
        };
        let frame = Event::Refused(r.clone()).encode();
        assert!(frame.len() <= MAX_FRAME);
        let mut d = Decoder::new();
        d.push(&frame);
        let Some(Event::Refused(got)) = d.next_event().unwrap() else { panic!() };
        assert!(
            got.program.len() == MAX_PROGRAM && got.program.starts_with('/') && r.program.starts_with(&got.program)
        );
        let Why::Unverifiable(t) = &got.why else { panic!() };
        assert!(t.starts_with("éé"));
        let ours = Refused { program: "ipcrm".into(), why: Why::NotOurs { key: 0, uid: 65534 }, ..r };
        assert_eq!(
            ours.describe(),
            "program ipcrm (pid 812) called shmctl(5, IPC_RMID) on shmid 5 (key 0x00000000, owner uid 65534), which is not this scenario's: refused with EACCES (host isolation lets programs change only the scenario's segments)"
        );
    }

    #[test]
    fn garbage_is_refused() {
        let refuse = |bytes: &[u8]| {
            let mut d = Decoder::new();
            d.push(bytes);
            d.next_event().expect_err(&format!("{bytes:?} accepted"))
        };
        assert_eq!(refuse(&[0, 0]), DecodeError::BadLength(0));
        assert_eq!(refuse(&[0xff, 0xff]), DecodeError::BadLength(0xffff));
        assert_eq!(refuse(&[1, 0, 99]), DecodeError::UnknownTag(99));
        assert_eq!(refuse(&[2, 0, T_STARTED, 1]), DecodeError::BadPayload { tag: T_STARTED, len: 1 });
        assert_eq!(refuse(&[2, 0, T_ALL_EXITED, 0]), DecodeError::BadPayload { tag: T_ALL_EXITED, len: 1 });
        assert_eq!(
            refuse(&[6, 0, T_EXITED, 7, 0, 0, 0, 0]),
            DecodeError::BadField { tag: T_EXITED, what: "exit kind" }
        );
        assert_eq!(
            refuse(&[6, 0, T_NOT_STARTED, 0, 0, 0, 0, 0]),
            DecodeError::BadField { tag: T_NOT_STARTED, what: "setup step" }
        );
        assert_eq!(
            refuse(&[3, 0, T_FAILED, 0xc3, 0x28]),
            DecodeError::BadField { tag: T_FAILED, what: "text (not UTF-8)" }
        );
        // A frame still arriving is not an error.
        let mut d = Decoder::new();
        d.push(&Event::Started { pid: 1 }.encode()[..4]);
        assert_eq!(d.next_event(), Ok(None));
        assert!(d.has_partial());
    }
}
