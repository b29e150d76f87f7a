//! A trapped call in flight, and how T settles a `shmget` whose return it
//! cannot see.
//!
//! A `shmget` is normally read at its syscall-exit stop. That stop never
//! comes when the tracee dies in the call (another thread's `exit_group`,
//! a SIGKILL: the kernel skips the stop when a fatal signal is pending),
//! and its result cannot be read when the tracee is killed while stopped
//! there. The call may still have created a segment. T then looks in
//! `/proc/sysvipc/shm` *before* it reaps the dead tracee (it peeks at the
//! exit with `waitid(WNOWAIT)`): an unreaped thread keeps its thread-group
//! id from being reused, so a segment whose creator pid is that id, whose
//! creator uid is the tracee's effective uid, with the key and size asked
//! for and a ctime not before the call, was created by that process (every
//! one of whose creations T sees): it is reported as a creation. If the
//! creator or the table cannot be read, the call is reported unverifiable.

#![allow(unsafe_code)] // opts in: clock_gettime into a local

use libc::pid_t;
use nix::errno::Errno;

use super::event::Event;
use crate::namespace::ipc_namespace_id;
use crate::sysv::{self, Shmid};

/// Who a `shmget` would create a segment as: the tracee's thread-group id
/// and effective uid, read at the call's seccomp stop (stable during its
/// own call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Creator {
    /// The creator pid a segment it creates gets.
    pub tgid: pid_t,
    /// The creator uid a segment it creates gets.
    pub euid: u32,
}

/// What a tracee stopped in a trapped call is waiting for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pending {
    /// `shmget` (entry second: a segment created by it has a later ctime);
    /// `creator` is `Ok(None)` if the tracee is in another IPC namespace,
    /// `Err` if that could not be read (only for a call that may create);
    /// `guarded`: the guard checks the segment it returns.
    Shmget { key: i32, size: u64, flags: i32, entry_secs: i64, creator: Result<Option<Creator>, Errno>, guarded: bool },
    /// `shmctl(IPC_SET or IPC_RMID)`; the ctime before, if readable;
    /// `guarded`: the guard found the segment to be the caller's.
    Shmctl { shmid: i32, cmd: i32, old_ctime: Option<i64>, guarded: bool },
}

/// Whether a `shmget` with these arguments may create a segment.
pub(super) fn may_create(key: i32, flags: i32) -> bool {
    key == 0 || flags & sysv::raw::IPC_CREAT != 0
}

/// The tracee's [`Creator`], `None` if it is in another IPC namespace
/// than `my_ns` (T's).
pub(super) fn creator(tid: pid_t, my_ns: Option<u64>) -> Result<Option<Creator>, Errno> {
    // `/proc/TID` names the tracee only if this `/proc` is of our PID
    // namespace; inside a PID namespace with the host's `/proc` it is
    // another process, whose IPC namespace and Tgid would silently hide a
    // creation. Fail closed (the report becomes `Unverified`) instead.
    if !proc_is_of_my_pid_namespace() {
        return Err(Errno::ENXIO);
    }
    let ns = ipc_namespace_id(Some(tid)).ok_or(Errno::EACCES)?;
    if Some(ns) != my_ns {
        return Ok(None);
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).map_err(|_| Errno::EACCES)?;
    let field = |name: &str, at: usize| -> Option<i64> {
        status.lines().find_map(|l| l.strip_prefix(name))?.split_whitespace().nth(at)?.parse().ok()
    };
    let tgid = field("Tgid:", 0).ok_or(Errno::EINVAL)?;
    let euid = field("Uid:", 1).ok_or(Errno::EINVAL)?;
    Ok(Some(Creator { tgid: tgid as pid_t, euid: euid as u32 }))
}

/// The events for a `shmget` (seen at its seccomp stop) whose tracee died
/// before its return was read; call it before the tracee is reaped.
pub(super) fn settle_lost_shmget(tid: pid_t, pending: &Pending) -> Vec<Event> {
    let Pending::Shmget { key, size, flags, entry_secs, creator, .. } = *pending else { return Vec::new() };
    if !may_create(key, flags) {
        return Vec::new();
    }
    let lost = |errno: Errno| vec![Event::Unverified { shmid: -1, by_pid: tid, errno: errno as i32 }];
    let c = match creator {
        Err(errno) => return lost(errno),
        // Created in another IPC namespace, if at all: not ours to claim.
        Ok(None) => return Vec::new(),
        Ok(Some(c)) => c,
    };
    let rows = match sysv::proc_segments() {
        Ok(rows) => rows,
        Err(_) => return lost(Errno::EACCES),
    };
    rows.iter()
        .filter(|r| {
            r.cpid == c.tgid && r.cuid == c.euid && r.key.raw() == key && r.size == size && r.ctime >= entry_secs
        })
        .map(|r| Event::Created {
            shmid: r.shmid.raw(),
            key: r.key.raw(),
            size: r.size,
            cpid: r.cpid,
            ctime: r.ctime,
            by_pid: tid,
        })
        .collect()
}

/// Whether `/proc` shows pids as this process sees them: `/proc/self`
/// names our own pid.
fn proc_is_of_my_pid_namespace() -> bool {
    let link = std::fs::read_link("/proc/self").ok();
    let shown = link.as_deref().and_then(|p| p.to_str()).and_then(|s| s.parse::<u32>().ok());
    shown == Some(std::process::id())
}

/// `(cpid, size, ctime, key)` of a segment: `IPC_STAT`, or the
/// `/proc/sysvipc/shm` row when `IPC_STAT` is refused (mode without read
/// permission for T).
pub(super) fn identity(shmid: i32) -> Result<(i32, u64, i64, i32), Errno> {
    match Shmid::from_raw(shmid).stat() {
        Ok(st) => Ok((st.cpid, st.size as u64, st.ctime, st.key.raw())),
        Err(e) if e.errno() == Some(Errno::EACCES) => {
            let rows = sysv::proc_segments().map_err(|_| Errno::EACCES)?;
            let row = rows.iter().find(|r| r.shmid.raw() == shmid).ok_or(Errno::EINVAL)?;
            Ok((row.cpid, row.size, row.ctime, row.key.raw()))
        }
        Err(e) => Err(e.errno().unwrap_or(Errno::EIO)),
    }
}

/// The coarse wall clock (`CLOCK_REALTIME_COARSE`) in seconds: the clock
/// the kernel stamps `shm_ctime` with (`ktime_get_real_seconds`). The
/// precise clock runs up to a tick ahead of it, so near a second boundary
/// it would date the call after the segment it created.
// `time_t` is 32 bits on i686: the widening is the identity on 64-bit targets.
#[allow(clippy::useless_conversion)]
pub(crate) fn now_secs() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec to a local.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    i64::from(ts.tv_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_creator_is_read_from_proc_as_the_kernel_stamps_it() {
        let me = std::process::id() as pid_t;
        let ns = ipc_namespace_id(None);
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(creator(me, ns), Ok(Some(Creator { tgid: me, euid })));
        // Another IPC namespace than the tracer's: not ours to claim.
        assert_eq!(creator(me, ns.map(|n| n + 1)), Ok(None));
        // A pid that names no process: unverifiable, never "nothing".
        assert!(creator(i32::MAX, ns).is_err());
    }

    #[test]
    fn only_a_call_that_may_create_is_settled() {
        assert!(may_create(0, 0));
        assert!(may_create(5, sysv::raw::IPC_CREAT));
        assert!(!may_create(5, 0));
        let open =
            Pending::Shmget { key: 5, size: 1, flags: 0, entry_secs: 0, creator: Err(Errno::EACCES), guarded: true };
        assert!(settle_lost_shmget(1, &open).is_empty());
        let blind =
            Pending::Shmget { key: 0, size: 1, flags: 0, entry_secs: 0, creator: Err(Errno::EACCES), guarded: true };
        assert_eq!(
            settle_lost_shmget(7, &blind),
            vec![Event::Unverified { shmid: -1, by_pid: 7, errno: Errno::EACCES as i32 }]
        );
    }
}
