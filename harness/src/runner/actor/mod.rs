//! An actor: one process of a scenario, forked from the supervisor (or from
//! another actor by a `fork` step). It waits for steps on its command pipe,
//! performs them with the wrapper, and answers on its answer pipe.
//!
//! Actors are forked from a single-threaded supervisor, so they may allocate
//! and take locks freely: no other thread's lock state was copied.
//!
//! A step is performed by its family, one module each, with the names the
//! parser and the printer use:
//!
//! | module      | steps                                                         |
//! |-------------|---------------------------------------------------------------|
//! | `segment`   | `key ... ftok`, `create`, `open`, `stat`, `set`, `rm`, `lock`, `unlock` |
//! | `memory`    | `write`, `read`, `peek`, `poke`                               |
//! | `mapping`   | `attach`, `detach`, `detach at`, `mapping`                    |
//! | `control`   | `shmctl`, `sysctl`, `rlimit`, `umask`, `meminfo`              |
//! | `process`   | `fork`, `run`, `spawn`, `signal`, `wait`, `exec`, `unshare`, `setns` |
//!
//! Programs: `program` (a `run`), `spawned` (`spawn`/`wait`), `traced` and
//! `watch` (programs under the tracer, host mode), `reexec` (`exec`).
//! `exit` and `crash` end the actor where its chain meets them; `kill`,
//! `segments`, `lookup` and literal keys are the supervisor's.
//!
//! After each step, what it did to the process's attachments is applied in
//! one place by the language's rule ([`Op::attachment_change`]), the rule
//! the parser admits scenarios by.

#![allow(unsafe_code)] // opts in: the raw file descriptors of the actor's pipes

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::scenario::{AttachmentChange, Expect, Op, Scenario, Step};
use crate::sysv::{self, Attachment, Shmid};

use crate::interp::judge::{Judge, StepResult};
use crate::interp::{Ending, Failure, Global, Globals, Outcome, Value};
use crate::runner::actor::watch::{Origin, Watch};
use crate::runner::fork::exit_now;
use crate::runner::host::KeyMap;
use crate::runner::wire::{flush, frame_into, recv, send, FromActor, Run, ToActor};

mod control;
mod mapping;
mod memory;
mod process;
pub(crate) mod program;
pub(crate) mod reexec;
mod repeat;
mod segment;
mod spawned;
mod traced;
pub(crate) mod watch;

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
    /// The attachments `repeat ... attach` steps made (no name reaches
    /// them): detached when the actor finishes, before it reports its
    /// mappings.
    pub repeated: Vec<Attachment>,
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
                    // What `repeat` attached is the scenario's to undo:
                    // dropping a handle detaches it.
                    self.repeated.clear();
                    let mut out = Vec::new();
                    self.frame_reports(&mut out);
                    if let Some(foreign) = crate::runner::actor::process::foreign_segments(home_ns) {
                        let _ = frame_into(&mut out, &foreign);
                    }
                    self.flush(&mut out);
                    if report_maps {
                        let _ = send(fd(my.ans), &FromActor::Maps(self.maps()));
                    }
                    self.end(0)
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
            let outcome = self.perform(index, step, &globals);
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

    /// Exits with `code`, done with the scenario: renamed `shm-end-NAME`
    /// first, so that whoever looks (ps, the chaos campaign's choice of
    /// victims) sees a process whose end is under way. A signal that
    /// arrives once `_exit` has begun changes nothing; one that arrives
    /// before it does, and the scenario sees it.
    fn end(&self, code: i32) -> ! {
        crate::runner::fork::set_name(&format!("shm-end-{}", self.name));
        exit_now(code)
    }

    pub(crate) fn end_chain(&self) {
        // SAFETY: writing one byte from a constant; the pipe is non-blocking.
        unsafe { libc::write(self.done, b"!".as_ptr().cast(), 1) };
    }

    fn maps(&self) -> Result<Vec<(String, i64, Option<String>)>, String> {
        let text = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
        Ok(sysv::parse_sysv_mappings(&text)
            .into_iter()
            .map(|m| {
                let start = m.start;
                // A piece of a split attachment starts inside its extent.
                let name = self
                    .attachments
                    .iter()
                    .find(|(_, a)| {
                        let base = a.as_ptr() as usize;
                        a.is_mapped() && start >= base && start < base.saturating_add(a.extent())
                    })
                    .map(|(n, _)| n.clone());
                (m.range(), i64::from(m.shmid.raw()), name)
            })
            .collect())
    }

    /// Performs step `index` (`step`) and applies what it does to this
    /// process's attachments. A `finally` step after a failure may name
    /// what the failed part never made: refused, not a harness bug.
    fn perform(&mut self, index: usize, step: &Step, globals: &Globals) -> Outcome {
        let unmet = if self.scenario.finally.is_some_and(|f| index >= f) { self.unmet(&step.op) } else { None };
        let Performed { outcome, made } = match (&step.op, unmet) {
            (op, Some(message)) => {
                Outcome { call: format!("{} (finally)", op.keyword()), result: Err(Failure::Refused { message }) }
                    .into()
            }
            (Op::Exit { code }, None) => self.end(*code),
            (Op::Crash, None) => std::process::abort(),
            (op, None) => self.execute(index, op, &step.expect, globals),
        };
        self.apply_attachment_change(index, &step.op, &outcome, made);
        outcome
    }

    /// Performs a step by its family, each in its own module: segment,
    /// memory, mapping, control and process steps.
    fn execute(&mut self, index: usize, op: &Op, expect: &Expect, globals: &Globals) -> Performed {
        match op {
            Op::Ftok { .. }
            | Op::Create { .. }
            | Op::Open { .. }
            | Op::Stat { .. }
            | Op::Set { .. }
            | Op::Remove { .. }
            | Op::Lock { .. }
            | Op::Unlock { .. } => self.segment_step(index, op, globals).into(),
            Op::Write { .. } | Op::Read { .. } | Op::Peek { .. } | Op::Poke { .. } => {
                self.memory_step(op, expect).into()
            }
            Op::Attach { .. } | Op::Detach { .. } | Op::DetachAt { .. } | Op::Mapping { .. } => {
                self.mapping_step(op, globals)
            }
            Op::Shmctl { .. } | Op::Sysctl { .. } | Op::Rlimit { .. } | Op::Umask { .. } | Op::Meminfo { .. } => {
                self.control_step(index, op, globals).into()
            }
            Op::Fork { .. }
            | Op::Run { .. }
            | Op::Spawn { .. }
            | Op::Signal { .. }
            | Op::Wait { .. }
            | Op::Exec
            | Op::Unshare
            | Op::Setns { .. } => self.process_step(index, op, globals).into(),
            Op::Repeat { .. } => self.repeat_step(index, op, globals).into(),
            // Answered by the supervisor (`is_local`), or by `perform`
            // itself: never sent here.
            Op::KeyLiteral { .. } | Op::Kill | Op::Segments | Op::Lookup { .. } | Op::Exit { .. } | Op::Crash => {
                unreachable!("`{}` is not executed by `execute`", op.keyword())
            }
        }
    }

    /// What `op` names that this process does not hold (an attachment, a
    /// program): possible only in a `finally` step after a failure.
    pub(crate) fn unmet(&self, op: &Op) -> Option<String> {
        let attachment = match op {
            Op::Detach { attachment }
            | Op::Write { attachment, .. }
            | Op::Read { attachment, .. }
            | Op::Peek { attachment, .. }
            | Op::Poke { attachment, .. } => attachment,
            Op::Wait { target } if !self.spawned.contains_key(target) => {
                return Some(format!("program {target} was never started (an earlier step failed)"))
            }
            _ => return None,
        };
        (!self.attachments.contains_key(attachment))
            .then(|| format!("attachment {attachment} was never made (an earlier step failed)"))
    }

    /// What step `op` did to this process's attachments, by the language's
    /// rule ([`Op::attachment_change`], which the parser follows too): an
    /// attachment it adds is filed under its name if the step succeeded; one
    /// it ends is marked gone whatever the answer (its handle stays, stale,
    /// so that its old address can still be named and touched). An unnamed
    /// attach's handle is held under `#INDEX`, a label no step can name:
    /// dropping it would detach it.
    fn apply_attachment_change(&mut self, index: usize, op: &Op, outcome: &Outcome, made: Option<Attachment>) {
        let unfiled = match (op.attachment_change(), made) {
            (AttachmentChange::Adds(name), Some(att)) if outcome.result.is_ok() => {
                self.attachments.insert(name, att);
                None
            }
            (AttachmentChange::Ends(name), made) => {
                if let Some(att) = self.attachments.get_mut(&name) {
                    att.forget_all();
                }
                made
            }
            (_, made) => made,
        };
        if let Some(att) = unfiled {
            self.attachments.insert(format!("#{index}"), att);
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
}

/// What performing a step gave: its answer, and the attachment handle it
/// made (a successful `attach`), for [`Actor::apply_attachment_change`]
/// to file.
pub(super) struct Performed {
    /// The step's answer.
    pub outcome: Outcome,
    /// The handle a successful `attach` made.
    pub made: Option<Attachment>,
}

impl From<Outcome> for Performed {
    fn from(outcome: Outcome) -> Self {
        Performed { outcome, made: None }
    }
}

/// The segment a step names: its shmid if the name is bound to one, else
/// -1 (which the kernel refuses, as it would a stale id).
pub(super) fn target_shmid(globals: &Globals, target: &crate::scenario::CtlTarget) -> Shmid {
    match target {
        crate::scenario::CtlTarget::Segment(name) => shmid_of(globals, name),
        crate::scenario::CtlTarget::Number(id) => Shmid::from_raw(*id),
    }
}

/// The shmid segment name `name` stands for (-1, which the kernel refuses,
/// for a name not bound to a segment).
pub(super) fn shmid_of(globals: &Globals, name: &str) -> Shmid {
    match globals.get(name) {
        Some(Global::Segment(id)) => Shmid::from_raw(*id),
        _ => Shmid::from_raw(-1),
    }
}

/// The answer of call `call` the wrapper refused: the errno if the kernel
/// gave one, else refused with the wrapper's message.
pub(super) fn fail(call: String, e: sysv::Error) -> Outcome {
    let result = match e.errno() {
        Some(errno) => Err(Failure::Errno { errno: errno as i32, message: e.to_string() }),
        None => Err(Failure::Refused { message: e.to_string() }),
    };
    Outcome { call, result }
}

/// The answer of call `call` from what the wrapper returned.
pub(super) fn answer(call: String, result: sysv::Result<Value>) -> Outcome {
    match result {
        Ok(v) => Outcome { call, result: Ok(v) },
        Err(e) => fail(call, e),
    }
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
