//! An actor: one process of a scenario, forked from the supervisor (or from
//! another actor by a `fork` step). It waits for steps on its command pipe,
//! performs them with the wrapper, and answers on its answer pipe.
//!
//! Actors are forked from a single-threaded supervisor, so they may allocate
//! and take locks freely: no other thread's lock state was copied.

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::scenario::{Data, Expect, KeyRef, Op, Scenario};
use crate::sysv::{self, Attachment, GetFlags, Key, Shmid};

use crate::interp::judge::{Judge, StepResult};
use crate::runner::actor::watch::{Origin, Watch};
use crate::runner::fork::{exit_now, fork_guarded, Child};
use crate::runner::host::KeyMap;
use crate::runner::journal;
mod control;
mod mapping;
mod process;
mod program;
pub(crate) mod reexec;
mod spawned;
mod traced;
pub(crate) mod watch;

use crate::interp::{Ending, Failure, Global, Globals, Identity, Outcome, Value};
use crate::runner::wire::{flush, frame_into, recv, send, FromActor, Run, ToActor};

/// The pipe ends one process needs: where its commands come from and where
/// its answers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActorFds {
    /// Read end of the command pipe.
    pub cmd: RawFd,
    /// Write end of the answer pipe.
    pub ans: RawFd,
}

pub(crate) struct Actor<'a> {
    pub scenario: &'a Scenario,
    pub name: String,
    pub dir: PathBuf,
    /// This process's fds and those of the processes it will fork.
    pub fds: HashMap<String, ActorFds>,
    /// Write ends of every process's command pipe, to hand a chain on.
    pub peers: HashMap<String, RawFd>,
    /// Write end of the supervisor's `done` pipe (end of a chain).
    pub done: RawFd,
    /// Read end of a pipe only the supervisor writes: end of file means the
    /// supervisor is gone, and so should we be.
    pub life: RawFd,
    /// Host-mode key translation.
    pub keys: KeyMap,
    /// The run's journal (host mode): every segment created is appended
    /// here before the step is answered.
    pub journal: Option<RawFd>,
    pub attachments: HashMap<String, Attachment>,
    /// The step timeout (a traced program is killed a little before the
    /// supervisor would give up on its step).
    pub timeout: std::time::Duration,
    /// Host mode: the tracers of programs whose trees live on, and what
    /// they reported.
    pub watch: Watch,
    /// Programs this actor spawned and has not waited for yet.
    pub spawned: HashMap<String, crate::runner::actor::spawned::Spawned>,
}

/// The process name of actor `name` (`/proc/PID/comm`, 15 bytes at most).
pub(crate) fn actor_comm(name: &str) -> String {
    format!("shm-act-{name}")
}

fn fd(raw: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the actor's pipe fds stay open for the life of the process
    // (closed only by `_exit`).
    unsafe { BorrowedFd::borrow_raw(raw) }
}

impl Actor<'_> {
    /// Serves commands until told to finish or the supervisor goes away.
    pub(crate) fn serve(mut self) -> ! {
        crate::runner::fork::mark_runner_process();
        loop {
            let my = self.fds[&self.name];
            if !self.wait_for_command(my.cmd) {
                exit_now(0);
            }
            let msg: ToActor = match recv(fd(my.cmd), None) {
                Ok(m) => m,
                Err(_) => exit_now(0),
            };
            let reply = match msg {
                ToActor::Finish { report_maps, home_ns } => {
                    // Kill the traced trees first: no creation after this.
                    self.finish_watch();
                    let mut out = Vec::new();
                    self.frame_reports(&mut out);
                    if let Some(foreign) = crate::runner::actor::process::foreign_segments(home_ns) {
                        let _ = frame_into(&mut out, &foreign);
                    }
                    self.flush(&mut out);
                    if report_maps {
                        let _ = send(fd(my.ans), &FromActor::Maps(self.maps()));
                    }
                    // Done with the scenario: say so to whoever looks (ps,
                    // the chaos campaign's choice of victims).
                    crate::runner::fork::set_name(&format!("shm-end-{}", self.name));
                    exit_now(0)
                }
                ToActor::WaitChild { pid } => FromActor::ChildEnded(reap(pid)),
                ToActor::Chain { runs, globals } => {
                    self.chain(runs, globals);
                    continue;
                }
            };
            let my = self.fds[&self.name];
            if send(fd(my.ans), &reply).is_err() {
                exit_now(0);
            }
        }
    }

    /// Sleeps until a command arrives; false if the supervisor is gone.
    /// Meanwhile reads (and journals) what traced programs' trees report.
    fn wait_for_command(&mut self, cmd: RawFd) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds = vec![PollFd::new(fd(cmd), PollFlags::POLLIN), PollFd::new(fd(self.life), PollFlags::POLLIN)];
            let tracer_fds = self.watch.fds();
            fds.extend(tracer_fds.iter().map(|f| PollFd::new(*f, PollFlags::POLLIN)));
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {
                    let traced = fds[2..].iter().any(|f| f.revents().is_some_and(|r| !r.is_empty()));
                    let life = fds[1].revents().is_some_and(|r| !r.is_empty());
                    let command = fds[0].revents().is_some_and(|r| !r.is_empty());
                    drop(fds);
                    drop(tracer_fds);
                    if traced {
                        self.drain_watch();
                    }
                    if life {
                        return false;
                    }
                    if command {
                        return true;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return false,
            }
        }
    }

    /// Runs this actor's run of a chain, answers every step, then hands the
    /// rest on, or ends the chain (at its end, or at the first step that did
    /// not go as expected).
    fn chain(&mut self, runs: Vec<Run>, mut globals: Globals) {
        let run = &runs[0];
        let mut out = Vec::new();
        let mut stopped = false;
        for index in run.from..run.to {
            let step = &self.scenario.steps[index];
            // Answers so far must be out before a step that may end this
            // process (a fault, an exit), or they would be lost with it.
            if !self.watch.is_empty() {
                self.drain_watch();
            }
            if matches!(step.op, Op::Exit { .. } | Op::Crash) {
                // The traced trees die with this process: read them first.
                self.finish_watch();
                self.frame_reports(&mut out);
            }
            // Before a program runs too: the supervisor's clock for its step
            // starts from the answers before it, and ours must end first.
            if step.op.may_end_process() || matches!(step.op, Op::Run { .. } | Op::Wait { .. } | Op::Exec) {
                self.flush(&mut out);
            }
            let unmet = if self.scenario.finally.is_some_and(|f| index >= f) { self.unmet(&step.op) } else { None };
            let outcome = match &step.op {
                // A `finally` step after a failure may name what the failed
                // part never made: refused, not a harness bug.
                _ if unmet.is_some() => Outcome {
                    call: format!("{} (finally)", step.op.keyword()),
                    result: Err(Failure::Refused { message: unmet.unwrap_or_default() }),
                },
                Op::Exit { code } => exit_now(*code),
                Op::Crash => std::process::abort(),
                Op::Fork { child } => {
                    let call = format!("fork() [{child}]");
                    match self.fork_child(child) {
                        Ok(pid) => Outcome { call, result: Ok(Value::Forked(pid)) },
                        Err(errno) => Outcome {
                            call,
                            result: Err(Failure::Errno { errno: errno as i32, message: format!("fork: {errno}") }),
                        },
                    }
                }
                op => self.execute(index, op, &step.expect, &globals),
            };
            if let Ok(v) = &outcome.result {
                crate::interp::effects::bind(&crate::interp::effects::effects(&step.op, v), &mut globals);
            }
            let result = StepResult::Answered(outcome);
            match (Judge { globals: &globals, keys: &self.keys }).judge_step(step, &result) {
                Ok(captured) => globals.extend(captured),
                Err(_) => stopped = true,
            }
            let StepResult::Answered(outcome) = result else { unreachable!() };
            if self.frame_reports(&mut out) {
                // Not answered: the supervisor fails the scenario instead.
                stopped = true;
                break;
            }
            let _ = frame_into(&mut out, &FromActor::Done(outcome));
            if stopped {
                break;
            }
        }
        self.flush(&mut out);
        match runs.get(1) {
            Some(next) if !stopped => {
                let Some(&to) = self.peers.get(&next.process) else {
                    // No hand-off to this peer (the supervisor sends chains of one process then).
                    return self.end_chain();
                };
                let rest = ToActor::Chain { runs: runs[1..].to_vec(), globals };
                if send(fd(to), &rest).is_err() {
                    self.end_chain();
                }
            }
            _ => self.end_chain(),
        }
    }

    /// Reads (and journals) what the traced trees reported, without waiting.
    fn drain_watch(&mut self) {
        let origin = Origin { journal: self.journal, scenario: &self.scenario.file, process: &self.name };
        self.watch.drain(&origin);
    }

    /// Kills the traced trees and reads (and journals) what they reported.
    fn finish_watch(&mut self) {
        let origin = Origin { journal: self.journal, scenario: &self.scenario.file, process: &self.name };
        self.watch.finish(&origin);
    }

    /// Frames what traced programs reported since the last answer; true if
    /// something could not be vouched for (then a `Harness` frame follows).
    fn frame_reports(&mut self, out: &mut Vec<u8>) -> bool {
        let (segments, blind) = self.watch.take_reports();
        if !segments.is_empty() {
            let _ = frame_into(out, &FromActor::Traced(segments));
        }
        match blind {
            Some(why) => {
                let _ = frame_into(out, &FromActor::Harness(why));
                true
            }
            None => false,
        }
    }

    fn flush(&self, out: &mut Vec<u8>) {
        if !out.is_empty() && flush(fd(self.fds[&self.name].ans), out).is_err() {
            exit_now(0);
        }
    }

    pub(crate) fn end_chain(&self) {
        // SAFETY: writing one byte from a constant; the pipe is non-blocking.
        unsafe { libc::write(self.done, b"!".as_ptr().cast(), 1) };
    }

    /// `fork` step: the child becomes actor `child` and serves from here on;
    /// the parent closes the child's pipe ends and reports its pid.
    fn fork_child(&mut self, child: &str) -> Result<i32, nix::errno::Errno> {
        let keep_names = descendants(self.scenario, child);
        let mut keep: Vec<RawFd> = vec![self.done, self.life];
        keep.extend(self.journal);
        keep.extend(self.peers.values().copied());
        for name in &keep_names {
            if let Some(f) = self.fds.get(name) {
                keep.extend([f.cmd, f.ans]);
            }
        }
        let Some(own) = self.fds.get(child).copied() else {
            return Err(nix::errno::Errno::EBADF);
        };
        let comm = actor_comm(child);
        // The forked actor has no death signal: it must outlive its parent
        // (`A: fork D`, `A: exit`, then D goes on). The scenario's PID
        // namespace (or host mode's tree kill) ends it with the scenario.
        let spec = Child { name: &comm, keep: &keep, panic_fd: Some(own.ans), ..Child::default() };
        let forked = fork_guarded(&spec, || {
            let mut fds = std::mem::take(&mut self.fds);
            fds.retain(|name, _| keep_names.contains(name));
            let me = Actor {
                scenario: self.scenario,
                name: child.to_string(),
                dir: std::mem::take(&mut self.dir),
                fds,
                peers: std::mem::take(&mut self.peers),
                done: self.done,
                life: self.life,
                keys: std::mem::take(&mut self.keys),
                journal: self.journal,
                attachments: std::mem::take(&mut self.attachments),
                timeout: self.timeout,
                // The parent's tracers stay the parent's (their fds are
                // closed here; a Tracer is never dropped: we end by _exit).
                watch: Watch::default(),
                // Its programs are not our children.
                spawned: HashMap::new(),
            };
            me.serve()
        });
        match forked {
            Ok(pid) => {
                for name in &keep_names {
                    if let Some(f) = self.fds.remove(name) {
                        let _ = nix::unistd::close(f.cmd);
                        let _ = nix::unistd::close(f.ans);
                    }
                }
                Ok(pid.as_raw())
            }
            Err(crate::runner::fork::ForkError::Sys { errno, .. }) => Err(errno),
            Err(e) => panic!("{e}"),
        }
    }

    fn maps(&self) -> Result<Vec<(String, i64, Option<String>)>, String> {
        let text = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
        Ok(sysv_mappings(&text)
            .into_iter()
            .map(|(range, start, shmid)| {
                // A piece of a split attachment starts inside its extent.
                let name = self
                    .attachments
                    .iter()
                    .find(|(_, a)| {
                        let base = a.as_ptr() as usize;
                        a.is_mapped() && start >= base && start < base.saturating_add(a.extent())
                    })
                    .map(|(n, _)| n.clone());
                (range, shmid, name)
            })
            .collect())
    }

    fn execute(&mut self, index: usize, op: &Op, expect: &Expect, globals: &Globals) -> Outcome {
        // Literal keys get the same host-mode translation as in the supervisor.
        let judge = Judge { globals, keys: &self.keys };
        let key_of = |k: &KeyRef| -> Key { Key::from_raw(judge.resolve_key(k)) };
        let shmid_of = |n: &str| -> Shmid {
            match globals.get(n) {
                Some(Global::Segment(id)) => Shmid::from_raw(*id),
                _ => Shmid::from_raw(-1),
            }
        };
        let ok = |call: String, v: Value| Outcome { call, result: Ok(v) };
        let fail = |call: String, e: sysv::Error| Outcome { call, result: Err(failure(e)) };
        match op {
            Op::Ftok { path, proj, .. } => {
                let call = format!("ftok({path:?}, {proj:#04x})");
                match sysv::ftok(self.dir.join(path), *proj) {
                    Ok(k) => ok(call, Value::Key(k.raw())),
                    Err(e) => fail(call, e),
                }
            }
            Op::Create { key, size, mode, excl, hugetlb, noreserve, huge_size, flags: raw_flags, .. } => {
                let mut flags = GetFlags::CREAT;
                flags.set(GetFlags::EXCL, *excl);
                flags.set(GetFlags::HUGETLB, *hugetlb);
                flags.set(GetFlags::NORESERVE, *noreserve);
                let huge = huge_size.map_or(0, |h| match h {
                    crate::scenario::HugeSize::Mb2 => sysv::HugePageSize::Mb2.flag_bits(),
                    crate::scenario::HugeSize::Gb1 => sysv::HugePageSize::Gb1.flag_bits(),
                });
                // The mode's bits above 0777 go in raw, as a C caller's would.
                let shown = flags.bits() | huge | i32::from(*mode) | raw_flags.unwrap_or(0);
                let key = key_of(key);
                let size = usize::try_from(*size).unwrap_or(usize::MAX);
                let call = format!("shmget({key}, {size}, {})", sysv::describe_get_flags(shown));
                match sysv::shmget_raw(key, size, shown) {
                    Ok(id) => match self.record_creation(index, id, key) {
                        Ok(identity) => ok(call, Value::Created(identity)),
                        Err(message) => Outcome { call, result: Err(Failure::Refused { message }) },
                    },
                    Err(e) => fail(call, e),
                }
            }
            Op::Open { key, size, mode, excl, flags, .. } => {
                let key = key_of(key);
                let size = usize::try_from(*size).unwrap_or(usize::MAX);
                let raw =
                    i32::from(mode.unwrap_or(0)) | if *excl { GetFlags::EXCL.bits() } else { 0 } | flags.unwrap_or(0);
                let call = format!("shmget({key}, {size}, {})", sysv::describe_get_flags(raw));
                match sysv::shmget_raw(key, size, raw) {
                    Ok(id) => ok(call, Value::Shmid(id.raw())),
                    Err(e) => fail(call, e),
                }
            }
            Op::Attach { .. } | Op::Detach { .. } | Op::DetachAt { .. } | Op::Mapping { .. } => {
                self.execute_mapping(index, op, globals).expect("an H1 step")
            }
            Op::Write { attachment, offset, data } => {
                let att = self.attachment(attachment);
                let offset = usize::try_from(*offset).unwrap_or(usize::MAX);
                let call = format!("write {attachment}[{offset}..+{}]", data.len());
                let result = match data {
                    Data::Zero(len) => att.fill(offset, *len, 0),
                    Data::Pattern(p, len) if p.len() == 1 => att.fill(offset, *len, p[0]),
                    Data::Text(b) | Data::Hex(b) => att.write_at(offset, b),
                    Data::Pattern(_, len) => write_chunked(att, offset, data, *len),
                };
                match result {
                    Ok(()) => ok(call, Value::Unit),
                    Err(e) => fail(call, e),
                }
            }
            Op::Read { attachment, offset, len } => {
                let att = self.attachment(attachment);
                let offset = usize::try_from(*offset).unwrap_or(usize::MAX);
                let len = usize::try_from(*len).unwrap_or(usize::MAX);
                let call = format!("read {attachment}[{offset}..+{len}]");
                // Bounds first, so a huge bogus length allocates nothing.
                let limit = att.size().min(att.limit());
                if offset.checked_add(len).is_none_or(|end| end > limit) {
                    return fail(call, sysv::Error::OutOfBounds { op: "read_at", offset, len, limit });
                }
                // Read and compare a chunk at a time: megabytes are never
                // held twice, and the expected bytes are never built whole.
                let expected = match expect {
                    Expect::Data(d) if d.len() == len => Some(d),
                    _ => None,
                };
                let mut got = vec![0u8; len.min(CHUNK)];
                let mut want = vec![0u8; if expected.is_some() { len.min(CHUNK) } else { 0 }];
                let (mut mismatch, mut window_at, mut window) = (None, 0, Vec::new());
                let mut at = 0;
                while at < len {
                    let n = (len - at).min(CHUNK);
                    if let Err(e) = att.read_at(offset + at, &mut got[..n]) {
                        return fail(call, e);
                    }
                    if at == 0 {
                        window = got[..n.min(32)].to_vec();
                    }
                    if let Some(d) = expected {
                        d.chunk_into(at, &mut want[..n]);
                        let differs = got[..n] != want[..n];
                        if let Some(i) =
                            differs.then(|| got[..n].iter().zip(&want[..n]).position(|(a, b)| a != b)).flatten()
                        {
                            let m = at + i;
                            mismatch = Some(m);
                            // A little context before the difference, within this chunk.
                            window_at = m.saturating_sub(8).max(at);
                            window = got[window_at - at..(window_at - at + 32).min(n)].to_vec();
                            break;
                        }
                    }
                    at += n;
                }
                if matches!(expect, Expect::Data(d) if d.len() != len) {
                    mismatch = Some(0);
                }
                ok(call, Value::Read { len, mismatch, window_at, window })
            }
            Op::Peek { attachment, offset } => {
                let att = self.attachment(attachment);
                let offset = usize::try_from(*offset).unwrap_or(usize::MAX);
                let call = format!("peek {attachment}[{offset}]");
                match self.peek(att, offset) {
                    Ok(b) => ok(call, Value::Byte(b)),
                    Err(e) => fail(call, e),
                }
            }
            Op::Poke { attachment, offset, value } => {
                let att = self.attachment(attachment);
                let offset = usize::try_from(*offset).unwrap_or(usize::MAX);
                let call = format!("poke {attachment}[{offset}] = {value:#04x}");
                match self.poke(att, offset, *value) {
                    Ok(()) => ok(call, Value::Unit),
                    Err(e) => fail(call, e),
                }
            }
            Op::Stat { segment } => {
                let id = shmid_of(segment);
                let call = format!("shmctl({id}, IPC_STAT)");
                match id.stat() {
                    Ok(st) => ok(call, Value::Stat(st)),
                    Err(e) => fail(call, e),
                }
            }
            Op::Set { segment, mode, uid, gid } => {
                let id = shmid_of(segment);
                // IPC_SET takes uid, gid and mode together: start from the
                // current values, read without the read-permission check
                // (SHM_STAT_ANY) when IPC_STAT is refused, so that the
                // answer is IPC_SET's own (EPERM for a non-owner).
                let current = match id.stat() {
                    Ok(st) => st,
                    Err(e) => match sysv::all_segments().ok().and_then(|all| all.into_iter().find(|(i, _)| *i == id)) {
                        Some((_, st)) => st,
                        None => return fail(format!("shmctl({id}, IPC_STAT) before IPC_SET"), e),
                    },
                };
                // A mode's bits above 0777 go in raw (the kernel keeps the low nine).
                let mode = mode.map_or(u32::from(current.mode.bits()), u32::from);
                let (uid, gid) = (uid.unwrap_or(current.uid), gid.unwrap_or(current.gid));
                let shown = if mode <= 0o777 { format!("{mode:04o}") } else { format!("0{mode:o}") };
                let call = format!("shmctl({id}, IPC_SET, uid={uid}, gid={gid}, mode={shown})");
                let buf = sysv::CtlBuffer::Set { uid, gid, mode };
                match sysv::shmctl_command(id.raw(), sysv::ShmctlCmd::IpcSet, buf).map(drop) {
                    // IPC_SET changed the ctime: the segment's new identity.
                    Ok(()) => match self.record_reset(index, id) {
                        Ok(Some(identity)) => ok(call, Value::Reset(identity)),
                        Ok(None) => ok(call, Value::Unit),
                        Err(message) => Outcome { call, result: Err(Failure::Refused { message }) },
                    },
                    Err(e) => fail(call, e),
                }
            }
            Op::Remove { segment } => {
                let id = shmid_of(segment);
                let call = format!("shmctl({id}, IPC_RMID)");
                match id.remove() {
                    Ok(()) => ok(call, Value::Unit),
                    Err(e) => fail(call, e),
                }
            }
            Op::Lock { segment } | Op::Unlock { segment } => {
                let id = shmid_of(segment);
                let lock = matches!(op, Op::Lock { .. });
                let call = format!("shmctl({id}, {})", if lock { "SHM_LOCK" } else { "SHM_UNLOCK" });
                match if lock { id.lock() } else { id.unlock() } {
                    Ok(()) => ok(call, Value::Unit),
                    Err(e) => fail(call, e),
                }
            }
            Op::Run { argv } => self.run(index, argv, globals),
            Op::Shmctl { .. } | Op::Rlimit { .. } | Op::Umask { .. } | Op::Meminfo { .. } => {
                self.control_step(index, op, globals)
            }
            Op::Spawn { .. } | Op::Signal { .. } | Op::Wait { .. } | Op::Exec | Op::Unshare | Op::Setns { .. } => {
                self.process_step(index, op, globals)
            }
            Op::Sysctl { name, value } => {
                let call = match value {
                    Some(v) => format!("write {} = {v}", name.path()),
                    None => format!("read {}", name.path()),
                };
                let result = match value {
                    Some(v) => crate::namespace::write_sysctl(*name, *v).map(|()| Value::Unit),
                    None => name.read_signed().map(Value::Number),
                };
                match result {
                    Ok(v) => ok(call, v),
                    // A write the kernel refuses has its errno (`=> EINVAL`).
                    Err(e) => fail(call, e),
                }
            }
            // Answered by the supervisor (`is_local`), or by `chain` itself:
            // never sent here.
            Op::KeyLiteral { .. }
            | Op::Kill
            | Op::Segments
            | Op::Lookup { .. }
            | Op::Exit { .. }
            | Op::Crash
            | Op::Fork { .. } => unreachable!("`{}` is not executed by `execute`", op.keyword()),
        }
    }

    /// `${here}`: the folder of the scenario file.
    pub(crate) fn here(&self) -> PathBuf {
        let here = std::path::Path::new(&self.scenario.file).parent().map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
        here.and_then(|p| p.canonicalize().ok()).unwrap_or_default()
    }

    fn run(&mut self, index: usize, argv: &[String], globals: &Globals) -> Outcome {
        if let Some(f) = self.stale_pid(argv, globals) {
            return Outcome { call: format!("run {}", argv.join(" ")), result: Err(f) };
        }
        let here = self.here();
        let args: Vec<String> = argv.iter().map(|a| substitute(a, globals, &self.dir, &here)).collect();
        if self.journal.is_none() {
            return crate::runner::actor::program::run(&args, &self.dir);
        }
        // Host mode: under the tracer (the supervisor checked it works).
        let line = self.scenario.steps[index].line;
        let deadline = std::time::Instant::now() + self.timeout.saturating_sub(self.timeout / 10);
        let origin = Origin { journal: self.journal, scenario: &self.scenario.file, process: &self.name };
        let mut reports = crate::runner::actor::watch::RunReports { watch: &mut self.watch, origin, line };
        let ran = crate::runner::actor::traced::run(&args, &self.dir, deadline, self.life, &mut reports);
        match ran {
            Ok((outcome, tracer)) => {
                if let Some(t) = tracer {
                    self.watch.keep(t, line);
                }
                outcome
            }
            Err(why) => {
                self.watch.blind(format!("line {line}: {why}"));
                Outcome { call: format!("run {}", args.join(" ")), result: Err(Failure::Refused { message: why }) }
            }
        }
    }

    /// The attachment a memory step names. The parser admits only
    /// attachments this process holds, by the rule the actor follows
    /// ([`Op::attachment_change`]); a missing one is a harness
    /// bug, which the fork helper reports as such.
    fn attachment(&self, name: &str) -> &Attachment {
        match self.attachments.get(name) {
            Some(a) => a,
            None => {
                panic!("attachment `{name}` is not held by process {}: the parser and the actor disagree", self.name)
            }
        }
    }

    /// After a create: the new segment's identity (`IPC_STAT`, or the
    /// `/proc/sysvipc/shm` row when the mode forbids reading), appended to
    /// the journal in host mode, all before the step is answered. If either
    /// fails, the segment (ours: it was created a moment ago) is removed
    /// and the step refused.
    fn record_creation(&self, index: usize, id: Shmid, key: Key) -> Result<Identity, String> {
        let identity = match crate::runner::host::current_identity(id.raw()) {
            Ok(Some(i)) => i,
            Ok(None) | Err(_) => {
                let _ = id.remove();
                return Err(format!("shmid {id}: cannot read its identity (IPC_STAT, /proc/sysvipc/shm); removed"));
            }
        };
        if let Err(e) = self.journal_append(index, identity, key) {
            let _ = id.remove();
            return Err(format!("shmid {id}: {e}; removed"));
        }
        Ok(identity)
    }

    /// After a `set`: the segment's new identity, journaled (host mode).
    fn record_reset(&self, index: usize, id: Shmid) -> Result<Option<Identity>, String> {
        let Some(identity) = crate::runner::host::current_identity(id.raw())? else { return Ok(None) };
        let key = id.stat().map_or(0, |st| st.key.raw());
        self.journal_append(index, identity, Key::from_raw(key))?;
        Ok(Some(identity))
    }

    fn journal_append(&self, index: usize, identity: Identity, key: Key) -> Result<(), String> {
        let Some(fd) = self.journal else { return Ok(()) };
        let step = &self.scenario.steps[index];
        let rec = journal::Record {
            scenario: self.scenario.file.clone(),
            line: step.line,
            process: self.name.clone(),
            shmid: identity.shmid,
            // The creator is this process: its pid as the host sees it.
            cpid: journal::host_pid(),
            ctime: identity.ctime,
            key: key.raw(),
            ns: journal::ipc_namespace().ok_or("cannot read /proc/thread-self/ns/ipc")?,
        };
        journal::append(fd, &rec)
    }
}

/// `${name}`, `${dir}` (the scenario's directory) and `${here}` (the folder
/// of the scenario file) replaced by their values.
pub(crate) fn substitute(arg: &str, globals: &Globals, dir: &Path, here: &Path) -> String {
    let mut out = arg.to_string();
    for name in crate::scenario::substitutions(arg) {
        let value = if name == "dir" {
            dir.display().to_string()
        } else if name == "here" {
            here.display().to_string()
        } else {
            globals.get(name).map_or_else(|| format!("${{{name}}}"), |g| g.substitute())
        };
        out = out.replace(&format!("${{{name}}}"), &value);
    }
    out
}

fn failure(e: sysv::Error) -> Failure {
    match e.errno() {
        Some(errno) => Failure::Errno { errno: errno as i32, message: e.to_string() },
        None => Failure::Refused { message: e.to_string() },
    }
}

/// Bytes per chunk when writing or reading large data.
const CHUNK: usize = 64 << 10;

/// Writes `data`'s `len` bytes at `offset` a chunk at a time.
fn write_chunked(att: &Attachment, offset: usize, data: &Data, len: usize) -> sysv::Result<()> {
    // Refuse before touching anything, as `write_at` would for the whole.
    if att.is_read_only() {
        return Err(sysv::Error::ReadOnly { op: "write_at" });
    }
    let limit = att.size().min(att.limit());
    if offset.checked_add(len).is_none_or(|end| end > limit) {
        return Err(sysv::Error::OutOfBounds { op: "write_at", offset, len, limit });
    }
    let mut buf = vec![0u8; len.min(CHUNK)];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(CHUNK);
        data.chunk_into(at, &mut buf[..n]);
        att.write_at(offset + at, &buf[..n])?;
        at += n;
    }
    Ok(())
}

fn reap(pid: i32) -> Ending {
    match waitpid(Pid::from_raw(pid), None) {
        Ok(WaitStatus::Exited(_, code)) => Ending::Exited(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ending::Signaled(sig as i32),
        _ => Ending::Unknown,
    }
}

/// `process` and every process forked from it, transitively (linear in
/// the number of processes).
pub(crate) fn descendants(scenario: &Scenario, process: &str) -> Vec<String> {
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in &scenario.processes {
        if let Some(parent) = p.forked_from.as_deref() {
            children.entry(parent).or_default().push(&p.name);
        }
    }
    let mut out = vec![process.to_string()];
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::from([process]);
    let mut i = 0;
    while i < out.len() {
        let kids = children.get(out[i].as_str()).cloned().unwrap_or_default();
        for kid in kids {
            if seen.insert(kid) {
                out.push(kid.to_string());
            }
        }
        i += 1;
    }
    out
}

/// SysV mappings in a `/proc/PID/maps` text: `(range, start address, shmid)`.
///
/// The kernel names them `/SYSV%08x (deleted)` after the key, and puts the
/// shmid in the inode column.
pub fn sysv_mappings(maps: &str) -> Vec<(String, usize, i64)> {
    // One parser for the SysV lines (exact `/SYSV%08x` names), in the wrapper.
    sysv::parse_sysv_mappings(maps)
        .into_iter()
        .map(|m| (format!("{:08x}-{:08x}", m.start, m.end), m.start, i64::from(m.shmid.raw())))
        .collect()
}
