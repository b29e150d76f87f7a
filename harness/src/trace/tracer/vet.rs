//! The guard's side of the dispatcher: whether a trapped call may run,
//! and refusing it when not (see [`guard`](super::super::guard)).

#![allow(unsafe_code)] // opts in: kill on a raw tracee id

use libc::pid_t;
use nix::errno::Errno;

use super::super::event::{Event, GuardedCall, Refused, Why};
use super::super::guard::{self, Check, Seen};
use super::super::raw;
use super::Tracer;
use crate::namespace::ipc_namespace_id;

impl Tracer {
    /// Whether the guard applies to `tid`'s calls: there is a guard, and
    /// `tid` is in T's IPC namespace (or that cannot be read: fail closed).
    pub(super) fn guards(&self, tid: pid_t) -> bool {
        self.guard.is_some() && ipc_namespace_id(Some(tid)).is_none_or(|ns| Some(ns) == self.my_ipc_ns)
    }

    /// At the seccomp stop of `call` on `shmid`: lets it run (with what the
    /// guard saw of the segment, if it looked and the segment exists), or
    /// refuses it before the kernel sees it ([`Tracer::refuse`]).
    pub(super) fn vet(&mut self, tid: pid_t, shmid: i32, call: GuardedCall) -> Vetted {
        if !self.guards(tid) {
            return Vetted::Runs(None);
        }
        let Some(guard) = self.guard.as_mut() else { return Vetted::Runs(None) };
        let why = match guard.check(shmid) {
            Check::Absent => return Vetted::Runs(None),
            Check::Ours(seen) => return Vetted::Runs(Some(seen)),
            Check::NotOurs(Seen { key, uid, .. }) => Why::NotOurs { key, uid },
            Check::Unverifiable(why) => Why::Unverifiable(why),
        };
        self.refuse(tid, shmid, call, why, raw::skip_syscall);
        Vetted::Refused
    }

    /// At the exit of a `shmget` that returned `shmid` without creating it:
    /// if the segment is not the caller's, the call returns `EACCES`
    /// instead (opening changed nothing in the kernel).
    pub(super) fn vet_open(&mut self, tid: pid_t, shmid: i32, call: GuardedCall) {
        let Some(guard) = self.guard.as_mut() else { return };
        let why = match guard.check(shmid) {
            Check::Absent | Check::Ours(_) => return,
            Check::NotOurs(Seen { key, uid, .. }) => Why::NotOurs { key, uid },
            Check::Unverifiable(why) => Why::Unverifiable(why),
        };
        self.refuse(tid, shmid, call, why, raw::set_return);
    }

    /// Makes `tid`'s call fail with `EACCES` (`apply`: skip it at its entry,
    /// or replace its return at its exit) and reports the refusal before
    /// the tracee goes on. If the registers cannot be written, the tracee
    /// is killed instead: the call never runs, or its id is never seen.
    fn refuse(
        &mut self,
        tid: pid_t,
        shmid: i32,
        call: GuardedCall,
        why: Why,
        apply: fn(pid_t, i64) -> Result<(), Errno>,
    ) {
        match apply(tid, -i64::from(libc::EACCES)) {
            Ok(()) | Err(Errno::ESRCH) => {}
            // SAFETY: `tid` is a stopped tracee whose exit T has not consumed.
            Err(_) => unsafe {
                libc::kill(tid, libc::SIGKILL);
            },
        }
        let program = guard::program_name(tid);
        self.emit(&Event::Refused(Refused { pid: tid, program, call, shmid, errno: libc::EACCES, why }));
    }
}

/// What the guard decided at a call's seccomp stop.
pub(super) enum Vetted {
    /// The call runs; what the guard saw of the segment, if it looked and
    /// the segment exists.
    Runs(Option<Seen>),
    /// The call was refused (skipped, reported).
    Refused,
}
