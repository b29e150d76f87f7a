//! The interpreter's vocabulary: what names stand for at run time, what a
//! step answered, how a process ended, and a segment's identity. Plain
//! data, carried over the wire by [`crate::runner::wire`] but owned here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sysv::SegmentStat;

/// What a bound name stands for at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Global {
    /// A key value.
    Key(i32),
    /// A shmid.
    Segment(i32),
    /// A process id.
    Process(i32),
    /// A number: captured by `{NAME}` in a number expectation, or by
    /// `{n:NAME}` in a program's output.
    Number(crate::scenario::Number),
    /// Where an attachment starts (or started) in the processes that know it.
    Address(usize),
}

impl Global {
    /// How the value is substituted into a command line (`${name}`).
    pub fn substitute(self) -> String {
        match self {
            Global::Key(k) => format!("{:#010x}", k as u32),
            Global::Segment(id) => id.to_string(),
            Global::Process(pid) => pid.to_string(),
            Global::Number(n) => n.to_string(),
            Global::Address(a) => format!("{a:#x}"),
        }
    }
}

/// The names bound so far, as the supervisor knows them.
pub type Globals = BTreeMap<String, Global>;

/// A step's result as the actor saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Nothing to report.
    Unit,
    /// A key (ftok).
    Key(i32),
    /// A shmid (open).
    Shmid(i32),
    /// A segment this step created, known by its identity (read with
    /// `IPC_STAT` the moment `shmget` returned, before the answer was sent).
    Created(Identity),
    /// A `set` step succeeded and changed the segment's `ctime`: its new
    /// identity (for a segment that was the scenario's own).
    Reset(Identity),
    /// An attachment's address, size and mapping length.
    Attached {
        /// Address in the actor.
        addr: usize,
        /// `shm_segsz`.
        size: usize,
        /// Page-rounded length.
        mapping_len: usize,
    },
    /// A read: how many bytes, whether they matched what the step expects
    /// (checked in the actor, so megabytes never cross the pipe), and a
    /// window of what was read around the first mismatch (or the start).
    Read {
        /// Bytes read.
        len: usize,
        /// Offset (relative to the read) of the first byte that differs from the expectation.
        mismatch: Option<usize>,
        /// Offset of `window` relative to the read.
        window_at: usize,
        /// Up to 32 bytes of what was read.
        window: Vec<u8>,
    },
    /// A `mapping M resize` succeeded: the mapping's address and length now.
    Remapped {
        /// Address in the actor.
        addr: usize,
        /// Page-rounded length.
        mapping_len: usize,
        /// Whether it moved.
        moved: bool,
    },
    /// A byte (peek).
    Byte(u8),
    /// A status.
    Stat(SegmentStat),
    /// A number (sysctl, segments).
    Number(crate::scenario::Number),
    /// Whether a key exists (lookup).
    Present(bool),
    /// What a raw `shmctl` answered.
    Ctl(crate::sysv::CtlAnswer),
    /// A forked child's pid.
    Forked(i32),
    /// A spawned program's pid.
    Started(i32),
    /// A `repeat` step: how many tries succeeded, the segments they
    /// created (by identity), and the errno that ended it (`None`: every
    /// try succeeded, up to the most tries).
    Repeated {
        /// Tries that succeeded.
        count: u64,
        /// Segments created, in order.
        created: Vec<Identity>,
        /// The errno of the try that failed.
        stopped: Option<i32>,
    },
    /// An external program's result.
    Output {
        /// Its pid.
        pid: i32,
        /// Exit status, if it exited.
        status: Option<i32>,
        /// Signal, if it was killed.
        signal: Option<i32>,
        /// Standard output (lossy UTF-8), at most [`OUTPUT_CAP`] bytes.
        stdout: String,
        /// Standard error (lossy UTF-8), at most [`OUTPUT_CAP`] bytes.
        stderr: String,
        /// Bytes of output cut off beyond the cap: (stdout, stderr).
        #[serde(default)]
        truncated: (u64, u64),
    },
}

/// The most of a program's stdout (and, separately, stderr) that a `run`
/// step keeps; the rest is read and dropped, and the answer says how much.
pub const OUTPUT_CAP: usize = 1 << 20;

/// A segment as the harness knows it: `(shmid, cpid, ctime)`, recorded when
/// it was created (or when a `set` step changed its `ctime`). A segment is
/// the scenario's own only while `IPC_STAT` still shows all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identity {
    /// The shmid.
    pub shmid: i32,
    /// `shm_cpid` as the scenario's processes see it.
    pub cpid: i32,
    /// `shm_ctime`.
    pub ctime: i64,
}

/// Why a step did not succeed, as the actor saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// A system call failed.
    Errno {
        /// The errno.
        errno: i32,
        /// The wrapper's message (call, arguments, errno).
        message: String,
    },
    /// The wrapper refused without a system call (bounds, read-only).
    Refused {
        /// Why.
        message: String,
    },
}

/// An actor's answer to a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The call made, with its arguments.
    pub call: String,
    /// What came of it.
    pub result: Result<Value, Failure>,
}

/// A segment a traced program touched, with the line of its `run` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TracedSegment {
    /// `shmget` created it: the scenario's own.
    Created {
        /// The `run` step's line.
        line: usize,
        /// Its identity (host-view `cpid`).
        identity: Identity,
    },
    /// `shmctl(IPC_SET)` changed its `ctime`: the scenario's own only if
    /// `(shmid, cpid, old_ctime)` was.
    Changed {
        /// The `run` step's line.
        line: usize,
        /// Its new identity.
        identity: Identity,
        /// Its `ctime` before the call, if the tracer could read it.
        old_ctime: Option<i64>,
    },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    /// Exited with a status.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
    /// Unknown (could not be reaped).
    Unknown,
}
