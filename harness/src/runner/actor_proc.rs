//! An actor's process steps: `spawn`, `signal`, `wait`, `exec`, `unshare
//! ipc`, `setns`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use crate::scenario::{signal_name, Op};

use super::actor::{substitute, Actor};
use super::spawned;
use super::watch::Origin;
use super::wire::{Failure, FromActor, Global, Globals, Outcome, Value};

/// At `Finish`: if this actor is no longer in the scenario's IPC
/// namespace `home`, the segments left in the one it is in.
pub(super) fn foreign_segments(home: Option<(u64, u64)>) -> Option<FromActor> {
    let now = super::journal::ipc_namespace();
    if home.is_none() || now == home {
        return None;
    }
    let Some(ns) = now else {
        return Some(FromActor::Foreign { ns: (0, 0), segments: Err("cannot read /proc/thread-self/ns/ipc".into()) });
    };
    let segments = crate::sysv::proc_segments().map_err(|e| e.to_string()).map(|rows| {
        rows.iter()
            .map(|r| {
                let dest = if r.dest { ", removed but still attached" } else { "" };
                (r.shmid.raw(), format!("key {}, {} bytes, nattch {}{dest}", r.key, r.size, r.nattch))
            })
            .collect()
    });
    Some(FromActor::Foreign { ns, segments })
}

fn errno_outcome(call: String, errno: nix::errno::Errno) -> Outcome {
    Outcome {
        call: call.clone(),
        result: Err(Failure::Errno { errno: errno as i32, message: format!("{call}: {errno}") }),
    }
}

impl Actor<'_> {
    /// What `op` names that this process does not hold (an attachment, a
    /// program): possible only in a `finally` step after a failure.
    pub(super) fn unmet(&self, op: &Op) -> Option<String> {
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

    /// Performs one of this module's steps.
    pub(super) fn process_step(&mut self, index: usize, op: &Op, globals: &Globals) -> Outcome {
        let pid_of = |n: &str| match globals.get(n) {
            Some(Global::Process(p)) => Some(*p),
            _ => None,
        };
        match op {
            Op::Spawn { name, argv } => self.spawn(index, name, argv, globals),
            Op::Signal { target, signal } => {
                let Some(pid) = pid_of(target).filter(|p| *p > 0) else {
                    return Outcome {
                        call: format!("kill({target}, {})", signal_name(*signal)),
                        result: Err(Failure::Refused { message: format!("`{target}` has no pid") }),
                    };
                };
                let call = format!("kill({pid}, {}) [{target}]", signal_name(*signal));
                // SAFETY: kill(2) with a pid of the scenario (bound by a
                // spawn or a fork, never reaped before: the parser checks)
                // and a signal number.
                if unsafe { libc::kill(pid, *signal) } == 0 {
                    Outcome { call, result: Ok(Value::Unit) }
                } else {
                    errno_outcome(call, nix::errno::Errno::last())
                }
            }
            Op::Wait { target } => self.wait_program(target),
            Op::Exec => self.exec_self(index),
            Op::Unshare => {
                let call = "unshare(CLONE_NEWIPC)".to_string();
                match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC) {
                    Ok(()) => Outcome { call, result: Ok(Value::Unit) },
                    Err(e) => errno_outcome(call, e),
                }
            }
            Op::Setns { target } => {
                let pid = pid_of(target).unwrap_or(0);
                let call = format!("setns(pidfd_open({pid}) [{target}], CLONE_NEWIPC)");
                // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
                let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
                if raw < 0 {
                    return errno_outcome(call, nix::errno::Errno::last());
                }
                // SAFETY: a fresh fd nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
                // SAFETY: setns with a pidfd and a namespace type.
                if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWIPC) } == 0 {
                    Outcome { call, result: Ok(Value::Unit) }
                } else {
                    errno_outcome(call, nix::errno::Errno::last())
                }
            }
            _ => unreachable!("`{}` is not a process step", op.keyword()),
        }
    }

    fn spawn(&mut self, index: usize, name: &Option<String>, argv: &[String], globals: &Globals) -> Outcome {
        let here = self.here();
        let args: Vec<String> = argv.iter().map(|a| substitute(a, globals, &self.dir, &here)).collect();
        let call = match name {
            Some(n) => format!("spawn {} [{n}]", args.join(" ")),
            None => format!("spawn {}", args.join(" ")),
        };
        let line = self.scenario.steps[index].line;
        let started = if self.journal.is_none() {
            spawned::spawn(&args, &self.dir, line)
        } else {
            let deadline = Instant::now() + self.timeout.saturating_sub(self.timeout / 10);
            spawned::spawn_traced(&args, &self.dir, line, deadline, &mut self.watch)
        };
        match started {
            Ok(sp) => {
                let pid = sp.pid;
                // An unnamed program is never waited for: teardown kills it.
                let key = name.clone().unwrap_or_else(|| format!("#{line}"));
                self.spawned.insert(key, sp);
                Outcome { call, result: Ok(Value::Started(pid)) }
            }
            Err(f) => Outcome { call, result: Err(f) },
        }
    }

    fn wait_program(&mut self, name: &str) -> Outcome {
        let Some(sp) = self.spawned.remove(name) else {
            panic!("program `{name}` is not a child of process {}: the parser and the actor disagree", self.name)
        };
        let deadline = Instant::now() + self.timeout.saturating_sub(self.timeout / 10);
        let ending = if sp.traced {
            let origin = Origin { journal: self.journal, scenario: &self.scenario.file, process: &self.name };
            self.watch.wait_exit(sp.line, deadline, &origin)
        } else {
            spawned::wait_plain(&sp, deadline)
        };
        spawned::answer(&sp, ending, name)
    }
}
