//! What a step expects (`Expect`) and the fields its checks name.

use serde::Serialize;

use crate::sysv::Errno;

use super::*;
use crate::scenario::number::NumExp;

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

pub(super) fn serialize_errno<S: serde::Serializer>(errno: &Errno, s: S) -> Result<S::Ok, S::Error> {
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
