//! The parsed form of a scenario: declarations, then steps in file order.

use std::time::Duration;

use serde::Serialize;

use crate::sysv::{Errno, Sysctl};

/// A parsed, checked scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Where it came from (a path, or `<input>`).
    pub file: String,
    /// Actors in declaration order.
    pub processes: Vec<ProcessDecl>,
    /// What the scenario needs from the runner.
    pub needs: Needs,
    /// Files made in the scenario's own directory before it starts.
    pub files: Vec<FileDecl>,
    /// Namespace sysctls set before any actor starts.
    pub sysctls: Vec<(SysctlName, u64, usize)>,
    /// The per-step timeout, if the file sets one.
    pub timeout: Option<Duration>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Index of the first step after `finally:` (those steps always run).
    pub finally: Option<usize>,
}

/// What a scenario needs; unmet needs make it skip, not fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Needs {
    /// Root (another uid, `SHM_LOCK` beyond limits, `IPC_SET` to other owners).
    pub root: bool,
    /// A private IPC namespace (sysctls).
    pub namespace: bool,
}

/// A sysctl as written in the file.
pub type SysctlName = Sysctl;

/// `process NAME [uid N] [gid N]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessDecl {
    /// Its name.
    pub name: String,
    /// Run as this uid.
    pub uid: Option<u32>,
    /// Run as this gid.
    pub gid: Option<u32>,
    /// Started by a `fork` step of this parent instead of at the start.
    pub forked_from: Option<String>,
    /// Declaration line.
    pub line: usize,
}

/// `file NAME ["content"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDecl {
    /// Path relative to the scenario directory.
    pub name: String,
    /// Its content.
    pub content: String,
}

/// One step: a process performs an operation and the answer is checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// 1-based line in the file.
    pub line: usize,
    /// The text of the line, trimmed, for reports.
    pub text: String,
    /// The acting process.
    pub process: String,
    /// What it does.
    pub op: Op,
    /// What must come of it.
    pub expect: Expect,
    /// Runs together with the previous step (`&` prefix): both are sent
    /// before either answer is awaited.
    pub concurrent: bool,
}

/// How a key is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum KeyRef {
    /// A bound key name.
    Name(String),
    /// `private`: `IPC_PRIVATE`.
    Private,
    /// A literal value.
    Literal(i32),
}

/// Bytes to write or expect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Data {
    /// `"text"` (with `\n`, `\t`, `\\`, `\"`, `\0`, `\xHH` escapes).
    Text(Vec<u8>),
    /// `hex "01 02 ff"`.
    Hex(Vec<u8>),
    /// `pattern "ab" LEN`: the bytes repeated to LEN.
    Pattern(Vec<u8>, usize),
    /// `zero LEN`: LEN zero bytes.
    Zero(usize),
}

impl Data {
    /// The bytes this stands for.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Data::Text(b) | Data::Hex(b) => b.clone(),
            Data::Pattern(p, len) => p.iter().copied().cycle().take(*len).collect(),
            Data::Zero(len) => vec![0; *len],
        }
    }

    /// Fills `buf` with the bytes at `start..start + buf.len()` of this
    /// data (past its end: zeros), without building the whole of it: a
    /// 64 MiB pattern is written and checked a chunk at a time.
    pub fn chunk_into(&self, start: usize, buf: &mut [u8]) {
        match self {
            Data::Text(b) | Data::Hex(b) => {
                for (i, out) in buf.iter_mut().enumerate() {
                    *out = b.get(start + i).copied().unwrap_or(0);
                }
            }
            Data::Pattern(p, len) => {
                let end = len.saturating_sub(start).min(buf.len());
                // One period at the right phase, then doubling copies: a
                // memcpy's speed, not a byte loop's.
                let first = p.len().min(end);
                for (i, out) in buf[..first].iter_mut().enumerate() {
                    *out = p[(start + i) % p.len()];
                }
                let mut filled = first;
                while filled < end {
                    let n = filled.min(end - filled);
                    buf.copy_within(0..n, filled);
                    filled += n;
                }
                buf[end..].fill(0);
            }
            Data::Zero(_) => buf.fill(0),
        }
    }

    /// How many bytes this stands for.
    pub fn len(&self) -> usize {
        match self {
            Data::Text(b) | Data::Hex(b) => b.len(),
            Data::Pattern(_, len) | Data::Zero(len) => *len,
        }
    }

    /// Whether it stands for no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Op {
    /// `key K = ftok "path" PROJ`.
    Ftok {
        /// Bound key.
        name: Option<String>,
        /// Path relative to the scenario directory.
        path: String,
        /// Project id.
        proj: u8,
    },
    /// `key K = 0x1234` or `key K = private`.
    KeyLiteral {
        /// Bound key.
        name: String,
        /// The value (0 for private).
        value: i32,
    },
    /// `create [S =] KEY size N [mode M] [excl] [hugetlb] [noreserve]`.
    Create {
        /// Bound segment.
        name: Option<String>,
        /// Its key.
        key: KeyRef,
        /// `size`.
        size: u64,
        /// Permission bits (default 0600).
        mode: u16,
        /// `IPC_EXCL`.
        excl: bool,
        /// `SHM_HUGETLB`.
        hugetlb: bool,
        /// `SHM_NORESERVE`.
        noreserve: bool,
    },
    /// `open [S =] KEY [size N]`.
    Open {
        /// Bound segment.
        name: Option<String>,
        /// Its key.
        key: KeyRef,
        /// Minimum size (0: any).
        size: u64,
    },
    /// `attach [M =] S [ro] [exec]`.
    Attach {
        /// Bound attachment.
        name: Option<String>,
        /// The segment.
        segment: String,
        /// `SHM_RDONLY`.
        read_only: bool,
        /// `SHM_EXEC`.
        exec: bool,
    },
    /// `detach M`.
    Detach {
        /// The attachment.
        attachment: String,
    },
    /// `write M OFFSET DATA`.
    Write {
        /// The attachment.
        attachment: String,
        /// Byte offset.
        offset: u64,
        /// What to write.
        data: Data,
    },
    /// `read M OFFSET LEN`.
    Read {
        /// The attachment.
        attachment: String,
        /// Byte offset.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// `peek M OFFSET`: one byte anywhere in the mapping.
    Peek {
        /// The attachment.
        attachment: String,
        /// Byte offset.
        offset: u64,
    },
    /// `poke M OFFSET BYTE`: one byte, ignoring read-only protection.
    Poke {
        /// The attachment.
        attachment: String,
        /// Byte offset.
        offset: u64,
        /// The byte.
        value: u8,
    },
    /// `stat S`.
    Stat {
        /// The segment.
        segment: String,
    },
    /// `set S [mode M] [uid N] [gid N]`.
    Set {
        /// The segment.
        segment: String,
        /// New permission bits.
        mode: Option<u16>,
        /// New owner.
        uid: Option<u32>,
        /// New group.
        gid: Option<u32>,
    },
    /// `rm S`.
    Remove {
        /// The segment.
        segment: String,
    },
    /// `lock S`.
    Lock {
        /// The segment.
        segment: String,
    },
    /// `unlock S`.
    Unlock {
        /// The segment.
        segment: String,
    },
    /// `fork CHILD`.
    Fork {
        /// The child's declared name.
        child: String,
    },
    /// `exit [CODE]`: exits at once, without detaching or removing anything.
    Exit {
        /// Exit status.
        code: i32,
    },
    /// `kill`: the harness sends SIGKILL.
    Kill,
    /// `crash`: the process calls `abort()`.
    Crash,
    /// `run "program args..."`.
    Run {
        /// The argument vector, with `${name}` not yet substituted.
        argv: Vec<String>,
    },
    /// `sysctl NAME [= N]`.
    Sysctl {
        /// Which.
        name: SysctlName,
        /// Write this value (else: read).
        value: Option<u64>,
    },
    /// `segments`: how many segments the namespace has (host mode: of this scenario's).
    Segments,
    /// `lookup KEY`: whether a segment with the key exists.
    Lookup {
        /// The key.
        key: KeyRef,
    },
    /// `spawn [D =] "program args..."`: starts a program in the background.
    Spawn {
        /// The bound program name (its pid); none for a program that is
        /// only expected not to start, or left to the teardown.
        name: Option<String>,
        /// The argument vector, with `${name}` not yet substituted.
        argv: Vec<String>,
    },
    /// `signal D SIG`: `kill(2)` of a process of the scenario.
    Signal {
        /// An actor or a spawned program.
        target: String,
        /// The signal number.
        signal: i32,
    },
    /// `wait D`: `waitpid` of a program this process spawned.
    Wait {
        /// The spawned program.
        target: String,
    },
    /// `exec`: the actor re-executes itself (its attachments end).
    Exec,
    /// `unshare ipc`: the actor moves to a new IPC namespace.
    Unshare,
    /// `setns Q`: the actor joins process Q's IPC namespace.
    Setns {
        /// The process whose namespace is joined.
        target: String,
    },
}

impl Op {
    /// The operation's keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Op::Ftok { .. } | Op::KeyLiteral { .. } => "key",
            Op::Create { .. } => "create",
            Op::Open { .. } => "open",
            Op::Attach { .. } => "attach",
            Op::Detach { .. } => "detach",
            Op::Write { .. } => "write",
            Op::Read { .. } => "read",
            Op::Peek { .. } => "peek",
            Op::Poke { .. } => "poke",
            Op::Stat { .. } => "stat",
            Op::Set { .. } => "set",
            Op::Remove { .. } => "rm",
            Op::Lock { .. } => "lock",
            Op::Unlock { .. } => "unlock",
            Op::Fork { .. } => "fork",
            Op::Exit { .. } => "exit",
            Op::Kill => "kill",
            Op::Crash => "crash",
            Op::Run { .. } => "run",
            Op::Sysctl { .. } => "sysctl",
            Op::Segments => "segments",
            Op::Lookup { .. } => "lookup",
            Op::Spawn { .. } => "spawn",
            Op::Signal { .. } => "signal",
            Op::Wait { .. } => "wait",
            Op::Exec => "exec",
            Op::Unshare => "unshare",
            Op::Setns { .. } => "setns",
        }
    }
}

/// A stat field expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StatField {
    /// `size N`.
    Size(u64),
    /// `nattch N`.
    Nattch(u64),
    /// `mode 0600`.
    Mode(u16),
    /// `key private|NAME|0x..`.
    Key(KeyRef),
    /// `dest yes|no`.
    Dest(bool),
    /// `locked yes|no`.
    Locked(bool),
    /// `cpid PROC`.
    Cpid(String),
    /// `lpid PROC` (or `none` for 0).
    Lpid(Option<String>),
    /// `uid N`.
    Uid(u32),
    /// `gid N`.
    Gid(u32),
    /// `cuid N`.
    Cuid(u32),
    /// `cgid N`.
    Cgid(u32),
}

/// What `run` must produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum OutputCheck {
    /// `status N`.
    Status(i32),
    /// `stdout "template"`: the whole output, where `{name}` captures a number and binds it.
    Stdout(String),
    /// `stdout contains "text"`.
    StdoutContains(String),
    /// `stderr contains "text"`.
    StderrContains(String),
    /// `signal SIG`: the program was killed by this signal.
    Signal(i32),
}

/// What a step must produce.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Expect {
    /// Success (the default).
    Ok,
    /// The call fails with one of these errnos (or succeeds, if `ok_too`).
    Errno {
        /// Accepted errnos.
        #[serde(serialize_with = "serialize_errnos")]
        errnos: Vec<Errno>,
        /// `| ok` was among the alternatives.
        ok_too: bool,
    },
    /// The process dies of this signal.
    Signal(i32),
    /// The process exits with this status.
    Exited(i32),
    /// `read` returns these bytes.
    Data(Data),
    /// `peek` returns this byte.
    Byte(u8),
    /// `stat` shows these fields.
    Stat(Vec<StatField>),
    /// `run` produces this.
    Output(Vec<OutputCheck>),
    /// `sysctl` or `segments` reads this number.
    Number(u64),
    /// `lookup` finds the key or not.
    Present(bool),
}

fn serialize_errnos<S: serde::Serializer>(errnos: &[Errno], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(errnos.len()))?;
    for e in errnos {
        seq.serialize_element(&crate::sysv::errno_name(*e))?;
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_equal_the_whole() {
        for d in [
            Data::Pattern(b"abc".to_vec(), 1000),
            Data::Text(b"hello".to_vec()),
            Data::Zero(40),
            Data::Pattern(b"x".to_vec(), 7),
        ] {
            let whole = d.bytes();
            for (start, size) in [(0, 10), (1, 100), (997, 10), (5, 300), (0, 2000)] {
                let mut buf = vec![0xee; size];
                d.chunk_into(start, &mut buf);
                let want: Vec<u8> = (start..start + size).map(|i| whole.get(i).copied().unwrap_or(0)).collect();
                assert_eq!(buf, want, "{d:?} at {start}+{size}");
            }
        }
    }
}
