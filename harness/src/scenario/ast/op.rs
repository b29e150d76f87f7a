//! Steps' operations: what a step does (`Op`) and the arguments only
//! operations take (targets, buffers, addresses, mapping changes).

use serde::Serialize;

use crate::sysv::Errno;

use super::*;

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
        value: Option<crate::scenario::Number>,
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
        #[serde(serialize_with = "super::expect::serialize_errno")]
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
