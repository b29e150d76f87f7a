//! The guard: a traced program may change only the segments its caller
//! (the scenario) owns.
//!
//! The caller hands [`spawn`](super::spawn) a [`Ledger`]: a function that
//! says whether a segment identity `(shmid, cpid, ctime)` is the caller's
//! (the runner's reads the run's journal). At a trapped call that can
//! change a segment or that opens one (`shmat`; `shmctl` with a command
//! that is not a pure read; `shmget` that returned an id its call did not
//! create), T reads the segment's identity as the kernel shows it now and
//! lets the call on only if the ledger, or T itself (what its tree created
//! or changed since), says it is the caller's. Otherwise the call is
//! refused: skipped at its seccomp stop (`shmat`, `shmctl`: the kernel never
//! runs it), or its return replaced at its exit (`shmget`: opening changes
//! nothing in the kernel), the program gets `EACCES`, and T reports
//! [`Event::Refused`](super::Event::Refused).
//!
//! A call on an id that names no segment runs (the kernel answers `EINVAL`
//! or `EIDRM`; nothing of anyone's is touched). Fail closed: a segment
//! whose identity cannot be read, or a ledger that cannot be read, is
//! refused as unverifiable.

use std::collections::HashSet;
use std::os::fd::RawFd;

use nix::errno::Errno;

use crate::interp::Identity;
use crate::sysv::{self, Shmid};

/// The function that says whether a segment is the caller's: `Ok(true)`
/// if `identity` is one of its own, `Err` (a message) if it cannot tell.
pub type Owns = dyn FnMut(Identity) -> Result<bool, String>;

/// What a traced program may change: the caller's segments, as `owns` says.
pub struct Ledger {
    /// Fds `owns` reads (kept open in T, which closes every other fd).
    keep: Vec<RawFd>,
    /// The decision.
    owns: Box<Owns>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("keep", &self.keep).finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger that asks `owns`, which reads the fds in `keep` (T keeps
    /// them open; they should be close-on-exec, so programs never get
    /// them).
    pub fn new(keep: Vec<RawFd>, owns: Box<Owns>) -> Ledger {
        Ledger { keep, owns }
    }

    /// The fds T must keep open.
    pub(super) fn fds(&self) -> &[RawFd] {
        &self.keep
    }
}

/// What the kernel shows of a segment now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    /// shmid, cpid, ctime.
    pub identity: Identity,
    /// Its key.
    pub key: i32,
    /// Its owner's uid.
    pub uid: u32,
}

/// The guard's answer about one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Check {
    /// No segment has that id: the call may run (the kernel refuses it).
    Absent,
    /// The caller's, or made by T's own tree.
    Ours(Seen),
    /// Someone else's.
    NotOurs(Seen),
    /// Its identity or the ledger could not be read (fail closed).
    Unverifiable(String),
}

/// T's side of the guard: the caller's ledger and what T's own tree made.
pub(super) struct Guard {
    ledger: Ledger,
    mine: HashSet<Identity>,
}

impl Guard {
    /// A guard over `ledger`, knowing nothing made by the tree yet.
    pub fn new(ledger: Ledger) -> Guard {
        Guard { ledger, mine: HashSet::new() }
    }

    /// The tree created this segment, or changed one of the caller's into
    /// this identity (`IPC_SET`): it is the caller's from now on.
    pub fn mine(&mut self, identity: Identity) {
        self.mine.insert(identity);
    }

    /// Whether a call on `shmid` may run; reads its identity now.
    pub fn check(&mut self, shmid: i32) -> Check {
        let seen = match seen(shmid) {
            Ok(None) => return Check::Absent,
            Ok(Some(s)) => s,
            Err(errno) => {
                return Check::Unverifiable(format!(
                    "neither IPC_STAT nor /proc/sysvipc/shm shows shmid {shmid}'s identity: {errno}"
                ))
            }
        };
        if self.mine.contains(&seen.identity) {
            return Check::Ours(seen);
        }
        match (self.ledger.owns)(seen.identity) {
            Ok(true) => Check::Ours(seen),
            Ok(false) => Check::NotOurs(seen),
            Err(why) => Check::Unverifiable(format!("the scenario's ledger cannot be read: {why}")),
        }
    }
}

/// What the kernel shows of `shmid`: `IPC_STAT`, or its `/proc/sysvipc/shm`
/// row when `IPC_STAT` is refused (a mode without read permission for T).
/// `Ok(None)`: no such segment.
fn seen(shmid: i32) -> Result<Option<Seen>, Errno> {
    let err = match Shmid::from_raw(shmid).stat() {
        Ok(st) => {
            let identity = Identity { shmid, cpid: st.cpid, ctime: st.ctime };
            return Ok(Some(Seen { identity, key: st.key.raw(), uid: st.uid }));
        }
        Err(e) => e.errno().unwrap_or(Errno::EIO),
    };
    if matches!(err, Errno::EINVAL | Errno::EIDRM) {
        return Ok(None);
    }
    let rows = sysv::proc_segments().map_err(|_| err)?;
    Ok(rows.iter().find(|r| r.shmid.raw() == shmid).map(|r| Seen {
        identity: Identity { shmid, cpid: r.cpid, ctime: r.ctime },
        key: r.key.raw(),
        uid: r.uid,
    }))
}

/// `argv[0]` of process `pid` (`/proc/PID/cmdline`; its `comm` if that is
/// empty), at most 80 bytes, cut at the front.
pub(super) fn program_name(pid: i32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let mut name = String::from_utf8_lossy(argv0).into_owned();
    if name.is_empty() {
        name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim_end().to_string();
    }
    let mut start = name.len().saturating_sub(80);
    while !name.is_char_boundary(start) {
        start += 1;
    }
    name.split_off(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_id_runs_and_the_ledger_decides_the_rest() {
        // No segment has id i32::MAX: the kernel will refuse the call.
        let mut g = Guard::new(Ledger::new(vec![], Box::new(|_| Ok(true))));
        assert_eq!(g.check(i32::MAX), Check::Absent);
    }

    #[test]
    fn the_program_is_named_by_its_argv0_cut_at_the_front() {
        let argv0 = std::env::args().next().unwrap();
        let want = &argv0[argv0.len().saturating_sub(80)..];
        assert_eq!(program_name(std::process::id() as i32), want);
    }
}
