//! The parsed form of a scenario: declarations, then steps in file order.

use std::time::Duration;

use serde::Serialize;

use crate::sysv::{Errno, Sysctl};

use super::number::NumExp;

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
    /// Programs and commands the scenario needs (`needs program "X"`,
    /// `needs command "X"`), in file order; unmet, it skips.
    pub requires: Vec<Requirement>,
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
    /// `needs hugepages [2M|1G] [N]`: at least N free huge pages of that
    /// size (default: the kernel's default size, 1 page).
    pub hugepages: Option<HugepagesNeed>,
}

/// `needs hugepages [SIZE] [N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HugepagesNeed {
    /// The page size (`None`: the kernel's default).
    pub size: Option<HugeSize>,
    /// How many free pages.
    pub pages: u64,
}

/// `needs program "NAME"` or `needs command "CMD ARGS"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Requirement {
    /// A program found on `PATH`, or an executable path (`${here}`
    /// substituted; relative to the scenario file's folder).
    Program(String),
    /// A command line (split as `run` splits it) that must exit 0 within
    /// the step timeout.
    Command(String),
    /// `needs kernel >= X.Y[.Z]` / `needs kernel < X.Y[.Z]`: the running
    /// kernel's version (the numeric prefix of `uname -r`) compared with
    /// the given one; checked before anything runs.
    Kernel(KernelNeed),
}

/// `kernel >= X.Y[.Z]` or `kernel < X.Y[.Z]` in `needs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelNeed {
    /// `true`: `>=` (the behaviour arrived in that version); `false`: `<`
    /// (it changed in that version).
    pub at_least: bool,
    /// The version: major, minor, patch (0 when not written).
    pub version: [u32; 3],
    /// Whether the patch level was written (`6.1.5`, not `6.1`).
    pub patch_written: bool,
}

impl KernelNeed {
    /// Whether a kernel of version `running` (major, minor, patch) meets it.
    pub fn holds(&self, running: [u32; 3]) -> bool {
        (running >= self.version) == self.at_least
    }

    /// The version as written: `4.17` or `6.1.5`.
    pub fn version_text(&self) -> String {
        let [a, b, c] = self.version;
        if self.patch_written {
            format!("{a}.{b}.{c}")
        } else {
            format!("{a}.{b}")
        }
    }
}

impl std::fmt::Display for KernelNeed {
    /// `kernel >= 4.17`, as a `needs` line writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kernel {} {}", if self.at_least { ">=" } else { "<" }, self.version_text())
    }
}

/// The numeric prefix of a kernel release (`uname -r`): `6.1.0-57-amd64`
/// is `[6, 1, 0]`, `6.18` is `[6, 18, 0]`, `4.19.0+` is `[4, 19, 0]`.
/// `None` unless it starts with at least `MAJOR.MINOR`.
pub fn kernel_release_version(release: &str) -> Option<[u32; 3]> {
    let mut parts = [0u32; 3];
    let mut rest = release;
    for (i, part) in parts.iter_mut().enumerate() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return (i >= 2).then_some(parts);
        }
        *part = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        match rest.strip_prefix('.') {
            Some(r) if i < 2 => rest = r,
            _ => return (i >= 1).then_some(parts),
        }
    }
    Some(parts)
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
    /// `eventually D:`: repeated (10 ms, doubling to 100 ms, between
    /// tries) until it answers as expected or D has passed.
    pub eventually: Option<Duration>,
    /// `xfail "REASON"` on the line before: expected to fail (a known defect).
    pub xfail: Option<String>,
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
        /// `hugetlb 2M` / `hugetlb 1G`: the page size field (`SHM_HUGE_*`).
        huge_size: Option<HugeSize>,
        /// `flags 0x...`: raw bits or-ed into the `shmget` flags.
        flags: Option<i32>,
    },
    /// `open [S =] KEY [size N] [mode M] [excl] [flags 0x...]`.
    Open {
        /// Bound segment.
        name: Option<String>,
        /// Its key.
        key: KeyRef,
        /// Minimum size (0: any).
        size: u64,
        /// Permission bits asked for (`shmget`'s access check).
        mode: Option<u16>,
        /// `IPC_EXCL` without `IPC_CREAT`.
        excl: bool,
        /// Raw bits or-ed into the flags (never `IPC_CREAT`).
        flags: Option<i32>,
    },
    /// `attach [M =] S [ro] [exec] [at ADDR] [rnd] [remap]`.
    Attach {
        /// Bound attachment.
        name: Option<String>,
        /// The segment: a name, or a raw id (`attach id N`).
        segment: CtlTarget,
        /// `SHM_RDONLY`.
        read_only: bool,
        /// `SHM_EXEC`.
        exec: bool,
        /// `at ADDR`: the address asked for (else NULL).
        at: Option<Addr>,
        /// `SHM_RND`.
        rnd: bool,
        /// `SHM_REMAP`.
        remap: bool,
    },
    /// `detach M`.
    Detach {
        /// The attachment.
        attachment: String,
    },
    /// `detach at ADDR`: a raw `shmdt(ADDR)`.
    DetachAt {
        /// The address.
        addr: Addr,
    },
    /// `mapping M CHANGE`: munmap, mprotect, mremap or remap_file_pages on
    /// an attachment.
    Mapping {
        /// The attachment.
        attachment: String,
        /// What is done to it.
        change: MapChange,
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
        /// The segment: a name, or a raw id (`id N`).
        segment: CtlTarget,
    },
    /// `set S [mode M] [uid N] [gid N] [FIELD N ...]`.
    Set {
        /// The segment.
        segment: String,
        /// New permission bits.
        mode: Option<u16>,
        /// New owner.
        uid: Option<u32>,
        /// New group.
        gid: Option<u32>,
        /// Values for the buffer's other fields (`size 1`, `key 7`...),
        /// which `IPC_SET` ignores, in the order given.
        ignored: Vec<(crate::sysv::IgnoredField, u32)>,
    },
    /// `rm S`.
    Remove {
        /// The segment: a name, or a raw id (`id N`).
        segment: CtlTarget,
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
        value: Option<super::Number>,
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
    /// `shmctl [T =] TARGET CMD [badbuf | buffer null | buffer -1]`: one
    /// raw `shmctl` call.
    Shmctl {
        /// Bound to the returned shmid (`SHM_STAT`, `SHM_STAT_ANY`).
        name: Option<String>,
        /// The first argument.
        target: CtlTarget,
        /// The command.
        cmd: crate::sysv::ShmctlCmd,
        /// The buffer pointer passed.
        buffer: CtlBuf,
    },
    /// `rlimit RESOURCE SOFT [HARD]`: `setrlimit` in the acting process.
    Rlimit {
        /// Which limit.
        resource: RlimitResource,
        /// The soft limit (`None`: `inf`).
        soft: Option<u64>,
        /// The hard limit (`None`: unchanged; `Some(None)`: `inf`).
        hard: Option<Option<u64>>,
    },
    /// `umask M`: `umask` in the acting process.
    Umask {
        /// The new mask.
        mask: u16,
    },
    /// `meminfo NAME`: a line of `/proc/meminfo`, answered by the harness.
    Meminfo {
        /// The field, as before the `:` (`HugePages_Free`).
        field: String,
    },
    /// `repeat MAX OP until ERRNO`: `OP` (an unnamed `create` or a plain
    /// `attach`) made again and again until the kernel refuses it with
    /// `ERRNO`, at most `MAX` times; it answers how many succeeded.
    Repeat {
        /// The most tries (the step fails if all succeed).
        max: u64,
        /// What is repeated.
        op: Box<Op>,
        /// The errno that ends the repetition.
        #[serde(serialize_with = "serialize_errno")]
        until: Errno,
    },
}

/// The buffer pointer a raw `shmctl` passes (its third argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CtlBuf {
    /// (no word) a buffer large enough for every command's structure.
    Given,
    /// `badbuf`: a page the kernel cannot access (`PROT_NONE`).
    NoAccess,
    /// `buffer null`: the pointer `NULL`.
    Null,
    /// `buffer -1`: the pointer `(void *)-1`.
    AllOnes,
}

impl CtlBuf {
    /// Its words in a scenario, after the command (empty for [`CtlBuf::Given`]).
    pub fn words(self) -> &'static str {
        match self {
            CtlBuf::Given => "",
            CtlBuf::NoAccess => "badbuf",
            CtlBuf::Null => "buffer null",
            CtlBuf::AllOnes => "buffer -1",
        }
    }
}

/// A segment as a step names it: a bound name, or a raw number. The first
/// argument of a raw `shmctl` (`shmctl 4242 IPC_STAT`: an id or an index,
/// `-` is 0), and the segment of `attach`, `stat` and `rm`, where a raw id
/// is written `id N` (`attach id -1`, `stat id 4242`, `rm id 0`). A raw id
/// never creates and binds no segment name; it implies `needs namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CtlTarget {
    /// A bound segment: its shmid.
    Segment(String),
    /// A literal id or index (`-` is 0).
    Number(i32),
}

impl CtlTarget {
    /// As `attach`, `stat` and `rm` write it: the name, or `id N`.
    pub fn as_segment_operand(&self) -> String {
        match self {
            CtlTarget::Segment(s) => s.clone(),
            CtlTarget::Number(n) => format!("id {n}"),
        }
    }
}

/// The page size of `create ... hugetlb SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HugeSize {
    /// `2M`: `SHM_HUGE_2MB`.
    Mb2,
    /// `1G`: `SHM_HUGE_1GB`.
    Gb1,
}

/// A resource of `rlimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RlimitResource {
    /// `memlock`: `RLIMIT_MEMLOCK` (what `SHM_LOCK` may lock without `CAP_IPC_LOCK`).
    Memlock,
    /// `as`: `RLIMIT_AS` (address space: `shmat` maps into it).
    As,
    /// `nofile`: `RLIMIT_NOFILE`.
    Nofile,
}

impl RlimitResource {
    /// Its word in a scenario.
    pub fn name(self) -> &'static str {
        match self {
            RlimitResource::Memlock => "memlock",
            RlimitResource::As => "as",
            RlimitResource::Nofile => "nofile",
        }
    }
}

impl Op {
    /// Whether the step implies `needs namespace`: sysctls, raw `shmctl`
    /// calls on a number (an index or raw id names the namespace's
    /// segments; in host isolation it would reach the machine's), except
    /// the read-only `IPC_INFO` and `SHM_INFO`, and `attach`, `stat`, `rm`
    /// of a raw id (`id N`).
    pub fn implies_namespace(&self) -> bool {
        use crate::sysv::ShmctlCmd;
        match self {
            Op::Sysctl { .. } => true,
            Op::Shmctl { target: CtlTarget::Number(_), cmd, .. } => {
                !matches!(cmd, ShmctlCmd::IpcInfo | ShmctlCmd::ShmInfo)
            }
            Op::Attach { segment: CtlTarget::Number(_), .. }
            | Op::Stat { segment: CtlTarget::Number(_) }
            | Op::Remove { segment: CtlTarget::Number(_) } => true,
            _ => false,
        }
    }

    /// The operation's keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Op::Ftok { .. } | Op::KeyLiteral { .. } => "key",
            Op::Create { .. } => "create",
            Op::Open { .. } => "open",
            Op::Attach { .. } => "attach",
            Op::Detach { .. } | Op::DetachAt { .. } => "detach",
            Op::Mapping { .. } => "mapping",
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
            Op::Shmctl { .. } => "shmctl",
            Op::Rlimit { .. } => "rlimit",
            Op::Umask { .. } => "umask",
            Op::Meminfo { .. } => "meminfo",
            Op::Spawn { .. } => "spawn",
            Op::Signal { .. } => "signal",
            Op::Wait { .. } => "wait",
            Op::Exec => "exec",
            Op::Unshare => "unshare",
            Op::Setns { .. } => "setns",
            Op::Repeat { .. } => "repeat",
        }
    }
}

/// An address in the acting process: an attachment's (plus or minus bytes)
/// or a literal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Addr {
    /// `M`, `M+N`, `M-N`: where attachment M starts (or started) in this process.
    Of {
        /// The attachment.
        attachment: String,
        /// Bytes added.
        offset: i64,
    },
    /// `0x7f0000000000`.
    Literal(u64),
}

/// A byte range of an attachment: `OFFSET LEN`.
pub type Range = (u64, u64);

/// What a `mapping` step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MapChange {
    /// `unmap [OFF LEN]`: munmap the whole mapping or a range of it.
    Unmap(Option<Range>),
    /// `protect PROT [OFF LEN]`: mprotect.
    Protect(crate::sysv::Protection, Option<Range>),
    /// `resize N [move]`: mremap to N bytes (`MREMAP_MAYMOVE` with `move`).
    Resize {
        /// The new length.
        len: u64,
        /// `MREMAP_MAYMOVE`.
        may_move: bool,
    },
    /// `pages OFF LEN PGOFF`: remap_file_pages.
    Pages {
        /// Byte offset in the mapping.
        offset: u64,
        /// Length.
        len: u64,
        /// Page of the segment to show there.
        pgoff: u64,
    },
}

/// A field of what an attach or a resize answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MapField {
    /// `at ADDR`: where the mapping is (attach only).
    At(Addr),
    /// `mapped N`: the mapping's length in bytes (whole pages).
    Mapped(u64),
    /// `moved yes|no`: whether a resize moved it.
    Moved(bool),
}

/// A stat field expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StatField {
    /// A numeric field and its number expectation: `nattch >= 1`, `ctime {t0}`.
    Num(NumField, NumExp),
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
}

/// The numeric fields of a segment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum NumField {
    /// `size`: `shm_segsz`.
    Size,
    /// `nattch`: `shm_nattch`.
    Nattch,
    /// `uid`: owner.
    Uid,
    /// `gid`: owner's group.
    Gid,
    /// `cuid`: creator.
    Cuid,
    /// `cgid`: creator's group.
    Cgid,
    /// `atime`: last attach, seconds since the epoch (0: never).
    Atime,
    /// `dtime`: last detach (0: never).
    Dtime,
    /// `ctime`: creation or last `IPC_SET`.
    Ctime,
    /// `index`: the slot, `shmid % 32768` (`SEQ_MULTIPLIER`).
    Index,
    /// `seq`: the slot's reuse count, `shmid / 32768`.
    Seq,
}

impl NumField {
    /// Every numeric stat field.
    pub const ALL: [NumField; 11] = [
        NumField::Size,
        NumField::Nattch,
        NumField::Uid,
        NumField::Gid,
        NumField::Cuid,
        NumField::Cgid,
        NumField::Atime,
        NumField::Dtime,
        NumField::Ctime,
        NumField::Index,
        NumField::Seq,
    ];

    /// Its word in a scenario.
    pub fn name(self) -> &'static str {
        match self {
            NumField::Size => "size",
            NumField::Nattch => "nattch",
            NumField::Uid => "uid",
            NumField::Gid => "gid",
            NumField::Cuid => "cuid",
            NumField::Cgid => "cgid",
            NumField::Atime => "atime",
            NumField::Dtime => "dtime",
            NumField::Ctime => "ctime",
            NumField::Index => "index",
            NumField::Seq => "seq",
        }
    }

    /// The field named `w`.
    pub fn from_name(w: &str) -> Option<NumField> {
        NumField::ALL.into_iter().find(|f| f.name() == w)
    }
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
    /// `stderr "template"`: the whole standard error, as `Stdout`.
    Stderr(String),
    /// `stdout|stderr matches "REGEX"`: the regex finds a match; its named
    /// groups bind names (`(?P<s>..)` a segment, `(?P<key.k>..)` a key,
    /// `(?P<n.n>..)` a number, `(?P<pid.p>..)` a process).
    Matches(Stream, String),
    /// `stdout|stderr line N [column M] "template"`: that line (1-based,
    /// negative from the end) or whitespace-separated column of it matches
    /// the template.
    Line {
        /// Which output.
        stream: Stream,
        /// 1-based line; -1 is the last.
        line: i64,
        /// 1-based column.
        column: Option<u32>,
        /// What it must match.
        template: String,
    },
}

/// Which output of a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
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
    /// `run` or `wait` produces one of these (`=> status 0 | status 1,
    /// stderr contains "x"`): two or more alternatives, each a list of
    /// checks that must all hold; the first that holds is the answer.
    Outputs(Vec<Vec<OutputCheck>>),
    /// `sysctl` or `segments` reads a number that satisfies this.
    Number(NumExp),
    /// `lookup` finds the key or not.
    Present(bool),
    /// `attach` or `mapping M resize` answers a mapping with these fields.
    Mapped(Vec<MapField>),
    /// A raw `shmctl` answers these fields.
    Ctl(Vec<CtlField>),
}

/// A field of a raw `shmctl`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CtlField {
    /// A stat field (`IPC_STAT`, `SHM_STAT`, `SHM_STAT_ANY`).
    Stat(StatField),
    /// `id S`: the returned shmid is segment S's (`SHM_STAT`, `SHM_STAT_ANY`).
    Id(String),
    /// An `IPC_INFO` / `SHM_INFO` field.
    Info(InfoField, NumExp),
}

/// The fields of `IPC_INFO` and `SHM_INFO` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum InfoField {
    /// `shmmax` (IPC_INFO).
    Shmmax,
    /// `shmmin` (IPC_INFO).
    Shmmin,
    /// `shmmni` (IPC_INFO).
    Shmmni,
    /// `shmseg` (IPC_INFO).
    Shmseg,
    /// `shmall` (IPC_INFO).
    Shmall,
    /// `used_ids` (SHM_INFO).
    UsedIds,
    /// `shm_tot` (SHM_INFO): pages in all segments.
    ShmTot,
    /// `shm_rss` (SHM_INFO): resident pages.
    ShmRss,
    /// `shm_swp` (SHM_INFO): swapped pages.
    ShmSwp,
    /// `max_index` (both): the return value, the highest index in use.
    MaxIndex,
}

impl InfoField {
    /// Every info field.
    pub const ALL: [InfoField; 10] = [
        InfoField::Shmmax,
        InfoField::Shmmin,
        InfoField::Shmmni,
        InfoField::Shmseg,
        InfoField::Shmall,
        InfoField::UsedIds,
        InfoField::ShmTot,
        InfoField::ShmRss,
        InfoField::ShmSwp,
        InfoField::MaxIndex,
    ];

    /// Its word in a scenario.
    pub fn name(self) -> &'static str {
        match self {
            InfoField::Shmmax => "shmmax",
            InfoField::Shmmin => "shmmin",
            InfoField::Shmmni => "shmmni",
            InfoField::Shmseg => "shmseg",
            InfoField::Shmall => "shmall",
            InfoField::UsedIds => "used_ids",
            InfoField::ShmTot => "shm_tot",
            InfoField::ShmRss => "shm_rss",
            InfoField::ShmSwp => "shm_swp",
            InfoField::MaxIndex => "max_index",
        }
    }

    /// The field named `w`.
    pub fn from_name(w: &str) -> Option<InfoField> {
        InfoField::ALL.into_iter().find(|f| f.name() == w)
    }

    /// Whether `IPC_INFO` (else `SHM_INFO`) answers it; `max_index` both.
    pub fn of_ipc_info(self) -> bool {
        matches!(
            self,
            InfoField::Shmmax | InfoField::Shmmin | InfoField::Shmmni | InfoField::Shmseg | InfoField::Shmall
        )
    }
}

fn serialize_errno<S: serde::Serializer>(errno: &Errno, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::sysv::errno_name(*errno))
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
