//! The tracer process T: forks the program, seizes it, and runs the ptrace
//! dispatcher until every tracee is gone.
//!
//! Per stop, what T does (peeked at with `waitid(P_ALL, WNOWAIT | __WALL)`,
//! then consumed with `waitpid(tid, __WALL)`):
//!
//! | stop | action |
//! |---|---|
//! | seccomp stop at a trapped call | decode it ([`classify`]); `shmat`, `shmctl`: the guard checks the segment ([`vet`](self::vet)) and refuses (skips) the call, or lets it run; resume with `PTRACE_SYSCALL` to stop at the exit of `shmget`, `IPC_SET`, `IPC_RMID` |
//! | syscall-exit stop after a trapped call | read the return value (`PTRACE_GET_SYSCALL_INFO`), `IPC_STAT`, write the event (a `shmget` that opened a segment not the caller's: return `EACCES` instead, report the refusal), then resume |
//! | fork/vfork/clone event | note the new tracee (it starts in its own stop) |
//! | exec event | the execing thread now has the thread-group id; forget the former thread id |
//! | group-stop (`PTRACE_EVENT_STOP` with a stop signal) | `PTRACE_LISTEN`: stays stopped, as untraced |
//! | other `PTRACE_EVENT_STOP` (new tracee, after SIGCONT) | resume |
//! | signal-delivery stop | resume, delivering the signal |
//! | exit or death, peeked (not reaped yet) | a `shmget` it was in: settle it from `/proc/sysvipc/shm` ([`pending`]) |
//! | exit or death | forget the tracee; for the program, report [`Event::ProgramExited`] |
//! | any stop after a stop request (SIGTERM to T) | SIGKILL the tracee (all known ones at the request) |
//!
//! `ECHILD` from `waitid` means no tracee is left: T reports
//! [`Event::AllExited`] and exits. If writing an event fails (the caller is
//! gone), T exits and `PTRACE_O_EXITKILL` kills every tracee.

#![allow(unsafe_code)] // opts in: ptrace, seccomp and waitpid on raw pids

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use libc::{c_int, pid_t};
use nix::errno::Errno;

use super::event::{Event, Exit, GuardedCall};
pub(super) use super::failure::TracerFailure;
use super::filter::{classify, Call, IPC_RMID, IPC_SET};
use super::guard::{Guard, Ledger};
use super::pending::{self, identity, now_secs, Pending};
use super::raw::{self, SyscallInfo};
use super::tracee::{self, Prepared, Step};
use vet::Vetted;

mod vet;
use crate::interp::Identity;
use crate::namespace::ipc_namespace_id;

/// The dispatcher's state.
struct Tracer {
    events: RawFd,
    errors: RawFd,
    program: pid_t,
    /// Thread id -> the call it is stopped in, if any.
    tracees: HashMap<pid_t, Option<Pending>>,
    program_done: bool,
    my_ipc_ns: Option<u64>,
    /// The caller asked for the tree to end ([`STOP`]): every tracee has
    /// been sent SIGKILL, and every new one is.
    stopping: bool,
    /// What the tree may change (see [`guard`]); `None`: everything.
    guard: Option<Guard>,
}

/// Set by T's SIGTERM handler: the caller asks T to kill every tracee,
/// report what they did as they die, and exit after [`Event::AllExited`].
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGTERM a request to stop the tree (no `SA_RESTART`: it wakes T
/// from `waitid`).
fn handle_stop_requests() {
    // SAFETY: a zeroed sigaction is a valid start; the handler only stores
    // to an atomic, which is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = request_stop as extern "C" fn(c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// T's body after the fork from the caller; never returns.
pub fn run(p: &Prepared<'_>, events: RawFd, error_read: RawFd, ledger: Option<Ledger>) -> ! {
    // SAFETY: ignoring SIGPIPE: a write to a closed event pipe fails with
    // EPIPE instead, and T exits on it; the tracee resets it before exec.
    // SIGCHLD back to default: inherited as ignored, the kernel would reap
    // exited children itself and waitpid would miss the program's status.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    // SAFETY: T is single-threaded (forked from a single-threaded caller),
    // so the child may do anything; it never returns (tracee::exec ends in
    // execvp or _exit).
    let program = match unsafe { libc::fork() } {
        -1 => fail_before_start(events, &TracerFailure::ForkProgram(Errno::last())),
        0 => tracee::exec(p),
        pid => pid,
    };
    // T holds nothing of the caller's but its two pipe ends: no pipe of the
    // caller's stays open (delaying an EOF) while daemons keep T alive. This
    // closes our copy of the setup-error pipe's write end too, so reading it
    // ends at the tracee's exit.
    let mut keep = vec![events, error_read];
    keep.extend(ledger.iter().flat_map(|l| l.fds().iter().copied()));
    if let Err(e) = raw::close_fds_except(&keep) {
        fail_before_start(events, &TracerFailure::CloseFds(e));
    }
    // SAFETY: the program has its own stdio by now (forked above); T's own
    // 0, 1, 2 become /dev/null so the caller's terminal or pipes are not
    // held open by T either.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    let mut t = Tracer {
        events,
        errors: error_read,
        program,
        tracees: HashMap::new(),
        program_done: false,
        my_ipc_ns: ipc_namespace_id(None),
        stopping: false,
        guard: ledger.map(Guard::new),
    };
    handle_stop_requests();
    if let Err(e) = t.attach() {
        t.fail(&e)
    }
    loop {
        if let Err(e) = t.step() {
            t.fail(&e)
        }
    }
}

fn fail_before_start(events: RawFd, why: &TracerFailure) -> ! {
    let _ = write_all(events, &Event::Failed(why.to_string()).encode());
    // SAFETY: ends T without unwinding into the caller's code.
    unsafe { libc::_exit(1) }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n == -1 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return Err(Errno::last());
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// The next tracee with something to report, and whether it is its exit,
/// without consuming it (`waitid(WNOWAIT)`): an exited tracee stays
/// unreaped, its id held. EINTR is returned (a stop request).
fn peek() -> Result<(pid_t, bool), Errno> {
    // SAFETY: a zeroed siginfo is a valid buffer for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WSTOPPED | libc::__WALL | libc::WNOWAIT;
    // SAFETY: fills a local siginfo; WNOWAIT leaves the child waitable.
    if unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) } == -1 {
        return Err(Errno::last());
    }
    // SAFETY: waitid succeeded without WNOHANG, so it filled in a child's
    // SIGCHLD information, whose si_pid is set.
    let pid = unsafe { info.si_pid() };
    let exited = matches!(info.si_code, libc::CLD_EXITED | libc::CLD_KILLED | libc::CLD_DUMPED);
    Ok((pid, exited))
}

/// `waitpid(pid, &status, flags)`, retried on EINTR.
fn wait(pid: pid_t, flags: c_int) -> Result<(pid_t, c_int), Errno> {
    loop {
        let mut status = 0;
        // SAFETY: writes the status to a local.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        match r {
            -1 if Errno::last() == Errno::EINTR => continue,
            -1 => return Err(Errno::last()),
            pid => return Ok((pid, status)),
        }
    }
}

impl Tracer {
    /// Writes an event; if the caller is gone, exits (EXITKILL kills all).
    fn emit(&self, e: &Event) {
        if write_all(self.events, &e.encode()).is_err() {
            // SAFETY: ends T; PTRACE_O_EXITKILL then SIGKILLs every tracee.
            unsafe { libc::_exit(2) }
        }
    }

    /// Reports a tracer failure and exits, which kills every tracee.
    fn fail(&self, why: &TracerFailure) -> ! {
        let _ = write_all(self.events, &Event::Failed(why.to_string()).encode());
        // SAFETY: ends T; PTRACE_O_EXITKILL then SIGKILLs every tracee, and
        // the program, if not seized yet, dies by its PR_SET_PDEATHSIG.
        unsafe { libc::_exit(1) }
    }

    /// Waits for the program's self-stop, seizes it and lets it go on.
    fn attach(&mut self) -> Result<(), TracerFailure> {
        let (_, status) = wait(self.program, libc::WUNTRACED).map_err(TracerFailure::WaitProgram)?;
        if !libc::WIFSTOPPED(status) {
            // It failed a setup step before stopping: report like any exit.
            self.tracees.insert(self.program, None);
            self.exited(self.program, status);
            return Ok(());
        }
        raw::seize(self.program).map_err(|errno| TracerFailure::Seize { pid: self.program, errno })?;
        // SAFETY: signals our own child, which cannot have been reaped.
        if unsafe { libc::kill(self.program, libc::SIGCONT) } == -1 {
            return Err(TracerFailure::Continue { pid: self.program, errno: Errno::last() });
        }
        self.tracees.insert(self.program, None);
        self.emit(&Event::Started { pid: self.program });
        Ok(())
    }

    /// Handles one stop or exit. An exit is first peeked at, so that a
    /// `shmget` its thread died in is settled while its pid is held.
    fn step(&mut self) -> Result<(), TracerFailure> {
        if STOP.load(Ordering::Relaxed) && !self.stopping {
            self.stop_all();
        }
        let tid = match peek() {
            Ok((tid, exited)) => {
                if exited {
                    self.settle(tid);
                }
                tid
            }
            Err(Errno::EINTR) => return Ok(()),
            Err(Errno::ECHILD) => {
                self.emit(&Event::AllExited);
                // SAFETY: ends T normally; nothing is left to trace.
                unsafe { libc::_exit(0) }
            }
            Err(e) => return Err(TracerFailure::WaitAny(e)),
        };
        let (tid, status) = wait(tid, libc::__WALL).map_err(TracerFailure::WaitAny)?;
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            self.exited(tid, status);
            return Ok(());
        }
        if !libc::WIFSTOPPED(status) {
            return Ok(());
        }
        let handled = self.stopped(tid, status);
        if self.stopping {
            // A tracee new since the stop request (or one that raced it).
            // SAFETY: `tid` is a tracee whose exit T has not consumed, so
            // it is not reaped and its id is not reused.
            unsafe { libc::kill(tid, libc::SIGKILL) };
        }
        handled
    }

    /// SIGKILLs every known tracee (the caller's stop request).
    fn stop_all(&mut self) {
        self.stopping = true;
        for &tid in self.tracees.keys() {
            // SAFETY: as in `step`: a tracee whose exit T has not consumed.
            unsafe { libc::kill(tid, libc::SIGKILL) };
        }
    }

    /// Before `tid`'s exit is consumed: a `shmget` it was in is settled
    /// from `/proc/sysvipc/shm` (see [`pending`]).
    fn settle(&mut self, tid: pid_t) {
        if let Some(Some(p @ Pending::Shmget { .. })) = self.tracees.get(&tid).copied() {
            self.tracees.insert(tid, None);
            for e in pending::settle_lost_shmget(tid, &p) {
                self.emit_created(&e);
            }
        }
    }

    /// Handles one ptrace stop (`status` from `waitpid`).
    fn stopped(&mut self, tid: pid_t, status: c_int) -> Result<(), TracerFailure> {
        // A new tracee may report before its parent's fork event.
        let pending = *self.tracees.entry(tid).or_insert(None);
        let sig = libc::WSTOPSIG(status);
        let event = status >> 16;
        let cont = if pending.is_some() { libc::PTRACE_SYSCALL } else { libc::PTRACE_CONT };
        match event {
            0 if sig == libc::SIGTRAP | 0x80 => {
                if let Some(p) = pending {
                    self.tracees.insert(tid, None);
                    self.returned(tid, p)?;
                }
                self.resume(libc::PTRACE_CONT, tid, 0)
            }
            0 => self.resume(cont, tid, sig),
            libc::PTRACE_EVENT_SECCOMP => self.seccomp_stop(tid),
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                if let Ok(child) = raw::event_msg(tid) {
                    self.tracees.entry(child as pid_t).or_insert(None);
                }
                self.resume(cont, tid, 0)
            }
            libc::PTRACE_EVENT_EXEC => {
                // The execing thread took the thread-group id; its former
                // id reports no exit.
                if let Ok(former) = raw::event_msg(tid) {
                    if former as pid_t != tid {
                        self.tracees.remove(&(former as pid_t));
                    }
                }
                self.tracees.insert(tid, None);
                self.resume(libc::PTRACE_CONT, tid, 0)
            }
            libc::PTRACE_EVENT_STOP => match sig {
                libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
                    self.resume(libc::PTRACE_LISTEN, tid, 0)
                }
                _ => self.resume(cont, tid, 0),
            },
            _ => self.resume(cont, tid, 0),
        }
    }

    /// Resumes; a tracee killed meanwhile (ESRCH) reports its death next.
    fn resume(&self, request: libc::c_uint, tid: pid_t, signal: c_int) -> Result<(), TracerFailure> {
        match raw::resume(request, tid, signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(TracerFailure::Resume { request, tid, signal, errno }),
        }
    }

    fn exited(&mut self, tid: pid_t, status: c_int) {
        self.tracees.remove(&tid);
        if tid != self.program || self.program_done {
            return;
        }
        self.program_done = true;
        let exit = if libc::WIFEXITED(status) {
            Exit::Code(libc::WEXITSTATUS(status))
        } else {
            Exit::Signal { signal: libc::WTERMSIG(status), core: libc::WCOREDUMP(status) }
        };
        if exit == Exit::Code(127) {
            let mut msg = [0u8; 5];
            // SAFETY: reads into a local buffer; the write end is closed
            // (ours above, the tracee's at exec or exit), so this never blocks.
            let n = unsafe { libc::read(self.errors, msg.as_mut_ptr().cast(), msg.len()) };
            if n == 5 {
                if let Some(step) = Step::from_u8(msg[0]) {
                    let errno = i32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]);
                    self.emit(&Event::NotStarted { step, errno });
                }
            }
        }
        self.emit(&Event::ProgramExited(exit));
    }

    fn seccomp_stop(&mut self, tid: pid_t) -> Result<(), TracerFailure> {
        let info = raw::syscall_info(tid);
        let call = match info {
            Ok(SyscallInfo::Call { arch, nr, args }) => classify(arch, nr, &args),
            Ok(_) => None,
            Err(Errno::ESRCH) => return Ok(()),
            Err(errno) => return Err(TracerFailure::SyscallInfo { tid, at: "a seccomp stop", errno }),
        };
        let pending = match call {
            Some(Call::Shmget { key, size, flags }) => {
                let creator =
                    if pending::may_create(key, flags) { pending::creator(tid, self.my_ipc_ns) } else { Ok(None) };
                let guarded = self.guards(tid);
                Some(Pending::Shmget { key, size, flags, entry_secs: now_secs(), creator, guarded })
            }
            Some(Call::Shmat { shmid }) => match self.vet(tid, shmid, GuardedCall::Shmat) {
                Vetted::Runs(_) | Vetted::Refused => None,
            },
            Some(Call::Shmctl { shmid, cmd }) => match self.vet(tid, shmid, GuardedCall::Shmctl { cmd }) {
                Vetted::Refused => None,
                Vetted::Runs(seen) if cmd == IPC_SET || cmd == IPC_RMID => {
                    let old_ctime = match seen {
                        Some(s) => Some(s.identity.ctime),
                        None if cmd == IPC_SET => identity(shmid).ok().map(|(_, _, c, _)| c),
                        None => None,
                    };
                    Some(Pending::Shmctl { shmid, cmd, old_ctime, guarded: seen.is_some() })
                }
                // SHM_LOCK, SHM_UNLOCK, ...: nothing to report at the exit.
                Vetted::Runs(_) => None,
            },
            // Another filter's SECCOMP_RET_TRACE (the program's own): not ours.
            None => None,
        };
        self.tracees.insert(tid, pending);
        let req = if pending.is_some() { libc::PTRACE_SYSCALL } else { libc::PTRACE_CONT };
        self.resume(req, tid, 0)
    }

    /// At the syscall-exit stop of a trapped call: reads the result and
    /// writes the event while the tracee is still stopped.
    fn returned(&mut self, tid: pid_t, pending: Pending) -> Result<(), TracerFailure> {
        let ret = match raw::syscall_info(tid) {
            Ok(SyscallInfo::Return(r)) => r,
            Ok(other) => return Err(TracerFailure::NotAtExit { tid, got: format!("{other:?}") }),
            // Killed while stopped: the result is lost, the call settled at
            // its exit.
            Err(Errno::ESRCH) => {
                self.tracees.insert(tid, Some(pending));
                return Ok(());
            }
            Err(errno) => return Err(TracerFailure::SyscallInfo { tid, at: "a syscall exit", errno }),
        };
        let Ok(value) = ret else { return Ok(()) };
        let id = value as i32;
        match pending {
            Pending::Shmget { key, flags, entry_secs, creator, guarded, .. } => {
                let created = pending::may_create(key, flags) && self.creation(tid, id, creator, entry_secs);
                if guarded && !created {
                    self.vet_open(tid, id, GuardedCall::Shmget { key, flags });
                }
            }
            Pending::Shmctl { shmid, cmd, old_ctime, guarded } => {
                // Under a guard, a change is reported only of a segment the
                // guard found to be the caller's (its new identity is too).
                let reported = guarded || self.guard.is_none();
                if cmd == IPC_SET && reported {
                    if let Ok((cpid, _, ctime, _)) = identity(shmid) {
                        self.mine(Identity { shmid, cpid, ctime });
                        self.emit(&Event::Changed { shmid, cpid, old_ctime, ctime, by_pid: tid });
                    }
                } else if cmd == IPC_RMID {
                    self.emit(&Event::Removed { shmid, by_pid: tid });
                }
            }
        }
        Ok(())
    }

    /// Whether `shmid`, returned by a `shmget` of `tid` that may have
    /// created a segment, was created by that call (the segment's creator
    /// is the caller's process and its ctime not before the call); reports
    /// the creation, or that it cannot be told.
    fn creation(
        &mut self,
        tid: pid_t,
        shmid: i32,
        creator: Result<Option<pending::Creator>, Errno>,
        entry_secs: i64,
    ) -> bool {
        match (creator, identity(shmid)) {
            (Err(errno), _) | (_, Err(errno)) => {
                self.emit(&Event::Unverified { shmid, by_pid: tid, errno: errno as i32 });
                false
            }
            (Ok(None), _) => false, // created in another IPC namespace: not ours to claim
            (Ok(Some(c)), Ok((cpid, size, ctime, key))) => {
                let created = cpid == c.tgid && ctime >= entry_secs;
                if created {
                    self.emit_created(&Event::Created { shmid, key, size, cpid, ctime, by_pid: tid });
                }
                created
            }
        }
    }

    /// Reports a creation of the tree, which the guard lets it change.
    fn emit_created(&mut self, e: &Event) {
        if let Event::Created { shmid, cpid, ctime, .. } = *e {
            self.mine(Identity { shmid, cpid, ctime });
        }
        self.emit(e);
    }

    /// Tells the guard the tree made (or changed into) this identity.
    fn mine(&mut self, identity: Identity) {
        if let Some(g) = self.guard.as_mut() {
            g.mine(identity);
        }
    }
}
