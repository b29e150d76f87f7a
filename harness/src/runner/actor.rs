//! An actor: one process of a scenario, forked from the supervisor (or from
//! another actor by a `fork` step). It waits for steps on its command pipe,
//! performs them with the wrapper, and answers on its answer pipe.
//!
//! Actors are forked from a single-threaded supervisor, so they may allocate
//! and take locks freely: no other thread's lock state was copied.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::scenario::{Data, Expect, KeyRef, Op, Scenario};
use crate::sysv::{self, AttachFlags, Attachment, Key, Shmid};

use super::check::{Judge, StepResult};
use super::wire::{
    flush, frame_into, recv, send, Ending, Failure, FromActor, Global, Globals, Outcome, Run, ToActor, Value,
};

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
    pub salt: u32,
    pub attachments: HashMap<String, Attachment>,
}

/// Ends the process at once: no destructors, no atexit handlers, no stdio
/// flush; the kernel detaches every attachment.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

fn fd(raw: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the actor's pipe fds stay open for the life of the process
    // (closed only by `_exit`).
    unsafe { BorrowedFd::borrow_raw(raw) }
}

impl Actor<'_> {
    /// Serves commands until told to finish or the supervisor goes away.
    pub(crate) fn serve(mut self) -> ! {
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
                ToActor::Finish { report_maps } => {
                    if report_maps {
                        let _ = send(fd(my.ans), &FromActor::Maps(self.maps()));
                    }
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
    fn wait_for_command(&self, cmd: RawFd) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds = [PollFd::new(fd(cmd), PollFlags::POLLIN), PollFd::new(fd(self.life), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {
                    if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                        return false;
                    }
                    if fds[0].revents().is_some_and(|r| !r.is_empty()) {
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
            if may_end_process(&step.op) {
                self.flush(&mut out);
            }
            let outcome = match &step.op {
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
                bind_local(&step.op, v, &mut globals);
            }
            let result = StepResult::Answered(outcome);
            match (Judge { globals: &globals, salt: self.salt }).verdict(step, &result) {
                Ok(captured) => globals.extend(captured),
                Err(()) => stopped = true,
            }
            let StepResult::Answered(outcome) = result else { unreachable!() };
            let _ = frame_into(&mut out, &FromActor::Done(outcome));
            if stopped {
                break;
            }
        }
        self.flush(&mut out);
        match runs.get(1) {
            Some(next) if !stopped => {
                let to = self.peers[&next.process];
                let rest = ToActor::Chain { runs: runs[1..].to_vec(), globals };
                if send(fd(to), &rest).is_err() {
                    self.end_chain();
                }
            }
            _ => self.end_chain(),
        }
    }

    fn flush(&self, out: &mut Vec<u8>) {
        if !out.is_empty() && flush(fd(self.fds[&self.name].ans), out).is_err() {
            exit_now(0);
        }
    }

    fn end_chain(&self) {
        // SAFETY: writing one byte from a constant; the pipe is non-blocking.
        unsafe { libc::write(self.done, b"!".as_ptr().cast(), 1) };
    }

    /// `fork` step: the child becomes actor `child` and serves from here on;
    /// the parent closes the child's pipe ends and reports its pid.
    fn fork_child(&mut self, child: &str) -> Result<i32, nix::errno::Errno> {
        // SAFETY: this process is single-threaded (forked from the
        // single-threaded supervisor), so the child may allocate.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let keep: Vec<String> = descendants(self.scenario, child);
                let mut fds = std::mem::take(&mut self.fds);
                for (name, f) in fds.iter() {
                    if !keep.contains(name) {
                        let _ = nix::unistd::close(f.cmd);
                        let _ = nix::unistd::close(f.ans);
                    }
                }
                fds.retain(|name, _| keep.contains(name));
                self.fds = fds;
                self.name = child.to_string();
                // Continue in the caller's loop as the child: unwind is not
                // possible across fork, so serve from here.
                let me = Actor {
                    scenario: self.scenario,
                    name: std::mem::take(&mut self.name),
                    dir: std::mem::take(&mut self.dir),
                    fds: std::mem::take(&mut self.fds),
                    peers: std::mem::take(&mut self.peers),
                    done: self.done,
                    life: self.life,
                    salt: self.salt,
                    attachments: std::mem::take(&mut self.attachments),
                };
                me.serve()
            }
            ForkResult::Parent { child: pid } => {
                if let Some(f) = self.fds.remove(child) {
                    let _ = nix::unistd::close(f.cmd);
                    let _ = nix::unistd::close(f.ans);
                }
                for name in descendants(self.scenario, child) {
                    if let Some(f) = self.fds.remove(&name) {
                        let _ = nix::unistd::close(f.cmd);
                        let _ = nix::unistd::close(f.ans);
                    }
                }
                Ok(pid.as_raw())
            }
        }
    }

    fn maps(&self) -> Vec<(String, i64, Option<String>)> {
        let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        sysv_mappings(&text)
            .into_iter()
            .map(|(range, start, shmid)| {
                let name = self.attachments.iter().find(|(_, a)| a.as_ptr() as usize == start).map(|(n, _)| n.clone());
                (range, shmid, name)
            })
            .collect()
    }

    fn execute(&mut self, index: usize, op: &Op, expect: &Expect, globals: &Globals) -> Outcome {
        // Literal keys get the same host-mode translation as in the supervisor.
        let judge = Judge { globals, salt: self.salt };
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
            Op::Create { key, size, mode, excl, hugetlb, noreserve, .. } => {
                let mut flags = sysv::raw::IPC_CREAT | i32::from(*mode);
                if *excl {
                    flags |= sysv::raw::IPC_EXCL;
                }
                if *hugetlb {
                    flags |= sysv::raw::SHM_HUGETLB;
                }
                if *noreserve {
                    flags |= sysv::raw::SHM_NORESERVE;
                }
                let key = key_of(key);
                let size = usize::try_from(*size).unwrap_or(usize::MAX);
                let call = format!("shmget({key}, {size}, {})", sysv::describe_get_flags(flags));
                match sysv::shmget_raw(key, size, flags) {
                    Ok(id) => {
                        // Host mode: tell the janitor at once (a no-op unless armed).
                        super::janitor::record(id.raw(), std::process::id() as i32);
                        ok(call, Value::Shmid(id.raw()))
                    }
                    Err(e) => fail(call, e),
                }
            }
            Op::Open { key, size, .. } => {
                let key = key_of(key);
                let size = usize::try_from(*size).unwrap_or(usize::MAX);
                let call = format!("shmget({key}, {size}, 0)");
                match sysv::shmget_raw(key, size, 0) {
                    Ok(id) => ok(call, Value::Shmid(id.raw())),
                    Err(e) => fail(call, e),
                }
            }
            Op::Attach { name, segment, read_only, exec } => {
                let mut flags = AttachFlags::empty();
                if *read_only {
                    flags |= AttachFlags::RDONLY;
                }
                if *exec {
                    flags |= AttachFlags::EXEC;
                }
                let id = shmid_of(segment);
                let call = format!("shmat({id}, NULL, {})", sysv::describe_attach_flags(flags.bits()));
                match Attachment::attach(id, flags) {
                    Ok(att) => {
                        let v = Value::Attached {
                            addr: att.as_ptr() as usize,
                            size: att.size(),
                            mapping_len: att.mapping_len(),
                        };
                        let label = name.clone().unwrap_or_else(|| format!("#{index}"));
                        self.attachments.insert(label, att);
                        ok(call, v)
                    }
                    Err(e) => fail(call, e),
                }
            }
            Op::Detach { attachment } => {
                let Some(att) = self.attachments.remove(attachment) else {
                    return Outcome {
                        call: format!("shmdt({attachment})"),
                        result: Err(Failure::Refused { message: format!("no attachment `{attachment}` here") }),
                    };
                };
                let call = format!("shmdt({:p}) [{attachment}]", att.as_ptr());
                match att.detach() {
                    Ok(()) => ok(call, Value::Unit),
                    Err(e) => fail(call, e),
                }
            }
            Op::Write { attachment, offset, data } => {
                let att = &self.attachments[attachment];
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
                let att = &self.attachments[attachment];
                let offset = usize::try_from(*offset).unwrap_or(usize::MAX);
                let len = usize::try_from(*len).unwrap_or(usize::MAX);
                let call = format!("read {attachment}[{offset}..+{len}]");
                // Bounds first, so a huge bogus length allocates nothing.
                if offset.checked_add(len).is_none_or(|end| end > att.size()) {
                    return fail(call, sysv::Error::OutOfBounds { op: "read_at", offset, len, limit: att.size() });
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
                let att = &self.attachments[attachment];
                let offset = usize::try_from(*offset).unwrap_or(usize::MAX);
                let call = format!("peek {attachment}[{offset}]");
                match att.peek(offset) {
                    Ok(b) => ok(call, Value::Byte(b)),
                    Err(e) => fail(call, e),
                }
            }
            Op::Poke { attachment, offset, value } => {
                let att = &self.attachments[attachment];
                let offset = usize::try_from(*offset).unwrap_or(usize::MAX);
                let call = format!("poke {attachment}[{offset}] = {value:#04x}");
                // SAFETY: a scenario's actor is a disposable process; dying of
                // SIGSEGV on a read-only mapping is what this step tests.
                match unsafe { att.poke(offset, *value) } {
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
                let mode = mode.map_or(current.mode, |m| sysv::Mode::from_bits_truncate(u32::from(m)));
                let (uid, gid) = (uid.unwrap_or(current.uid), gid.unwrap_or(current.gid));
                let call = format!("shmctl({id}, IPC_SET, uid={uid}, gid={gid}, mode={mode})");
                match id.set(uid, gid, mode) {
                    Ok(()) => ok(call, Value::Unit),
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
            Op::Run { argv } => self.run(argv, globals),
            Op::Sysctl { name, value } => {
                let call = match value {
                    Some(v) => format!("write {} = {v}", name.path()),
                    None => format!("read {}", name.path()),
                };
                let result = match value {
                    Some(v) => crate::namespace::write_sysctl(*name, *v).map(|()| Value::Unit),
                    None => name.read().map(Value::Number),
                };
                match result {
                    Ok(v) => ok(call, v),
                    Err(e) => Outcome { call, result: Err(Failure::Refused { message: e.to_string() }) },
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

    fn run(&self, argv: &[String], globals: &Globals) -> Outcome {
        let here = std::path::Path::new(&self.scenario.file).parent().map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
        let here = here.and_then(|p| p.canonicalize().ok()).unwrap_or_default();
        let args: Vec<String> = argv.iter().map(|a| substitute(a, globals, &self.dir, &here)).collect();
        let call = format!("run {}", args.join(" "));
        let spawned = Command::new(&args[0])
            .args(&args[1..])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                return Outcome {
                    call,
                    result: Err(Failure::Errno {
                        errno: e.raw_os_error().unwrap_or(libc::EIO),
                        message: format!("cannot start `{}`: {e}", args[0]),
                    }),
                }
            }
        };
        let pid = child.id() as i32;
        match child.wait_with_output() {
            Ok(out) => {
                use std::os::unix::process::ExitStatusExt;
                Outcome {
                    call,
                    result: Ok(Value::Output {
                        pid,
                        status: out.status.code(),
                        signal: out.status.signal(),
                        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    }),
                }
            }
            Err(e) => {
                Outcome { call, result: Err(Failure::Refused { message: format!("waiting for `{}`: {e}", args[0]) }) }
            }
        }
    }
}

/// Steps that may end the process: memory accesses (a fault), and the
/// steps whose purpose is to end it.
fn may_end_process(op: &Op) -> bool {
    matches!(op, Op::Write { .. } | Op::Read { .. } | Op::Peek { .. } | Op::Poke { .. } | Op::Exit { .. } | Op::Crash)
}

/// Records in the actor's copy of the globals what a successful step bound.
fn bind_local(op: &Op, v: &Value, globals: &mut Globals) {
    match (op, v) {
        (Op::Create { name: Some(n), .. } | Op::Open { name: Some(n), .. }, Value::Shmid(id)) => {
            globals.insert(n.clone(), Global::Segment(*id));
        }
        (Op::Ftok { name: Some(n), .. }, Value::Key(k)) => {
            globals.insert(n.clone(), Global::Key(*k));
        }
        (Op::Fork { child }, Value::Forked(pid)) => {
            globals.insert(child.clone(), Global::Process(*pid));
        }
        _ => {}
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
    if offset.checked_add(len).is_none_or(|end| end > att.size()) {
        return Err(sysv::Error::OutOfBounds { op: "write_at", offset, len, limit: att.size() });
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

/// `process` and every process forked from it, transitively.
pub(crate) fn descendants(scenario: &Scenario, process: &str) -> Vec<String> {
    let mut out = vec![process.to_string()];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].clone();
        for p in &scenario.processes {
            if p.forked_from.as_deref() == Some(parent.as_str()) && !out.contains(&p.name) {
                out.push(p.name.clone());
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
