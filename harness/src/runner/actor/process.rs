//! The process steps an actor performs: `fork`, `run`, `spawn`, `signal`,
//! `wait`, `exec`, `unshare ipc` and `setns` (`exit` and `crash` end the
//! actor where its chain meets them).

#![allow(unsafe_code)] // opts in: kill, pidfds and setns

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use crate::scenario::{signal_name, Op};

use crate::interp::output::argument;
use crate::interp::{Failure, Global, Globals, Outcome, Value};
use crate::runner::actor::watch::{Origin, RunReports, Watch};
use crate::runner::actor::{actor_comm, descendants, program, spawned, traced, Actor};
use crate::runner::fork::{fork_guarded, Child, ForkError};
use crate::runner::journal;
use crate::runner::wire::FromActor;

/// At `Finish`: if this actor is no longer in the scenario's IPC
/// namespace `home`, the segments left in the one it is in.
pub(crate) fn foreign_segments(home: Option<(u64, u64)>) -> Option<FromActor> {
    let now = crate::runner::journal::ipc_namespace();
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

enum SignalRefused {
    Errno(nix::errno::Errno),
    /// The pid's process is not in the scenario's tree: why.
    NotOurs(String),
}

/// The parent pid and `comm` of `pid`, from `/proc/PID/stat`.
fn parent_and_comm(pid: i32) -> Option<(i32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat[open + 1..close].to_string();
    let ppid = stat[close + 1..].split_whitespace().nth(1)?.parse().ok()?;
    Some((ppid, comm))
}

/// The supervisor of this actor: its nearest ancestor named `shm-sup`
/// (our own ancestors are the scenario's, so the name cannot be forged).
fn supervisor_pid() -> Option<i32> {
    let mut pid = std::process::id() as i32;
    for _ in 0..64 {
        let (ppid, comm) = parent_and_comm(pid)?;
        if comm == "shm-sup" {
            return Some(pid);
        }
        if ppid <= 1 {
            return None;
        }
        pid = ppid;
    }
    None
}

/// Whether `pid` descends from `sup` (orphans are re-parented to it: it is
/// a subreaper), reading `/proc/PID/stat` up the chain.
fn descends_from(pid: i32, sup: i32) -> bool {
    let mut p = pid;
    for _ in 0..256 {
        match parent_and_comm(p) {
            Some((ppid, _)) if ppid == sup => return true,
            Some((ppid, _)) if ppid > 1 => p = ppid,
            _ => return false,
        }
    }
    false
}

/// Signals `pid` only if it is a process of the scenario's tree, without a
/// window for pid reuse: a pidfd pins the process first, the tree is
/// checked through `/proc`, and the signal goes through the pidfd (its
/// success shows the process lived throughout, so the pid named it when
/// the tree was checked).
fn signal_in_tree(pid: i32, signal: i32) -> Result<(), SignalRefused> {
    use nix::errno::Errno;
    let sup = supervisor_pid().ok_or_else(|| {
        SignalRefused::NotOurs("cannot be checked (no `shm-sup` among the actor's ancestors in /proc)".into())
    })?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(SignalRefused::Errno(Errno::last()));
    }
    // SAFETY: a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    // A process of the tree whose parent just died is re-parented to the
    // supervisor in a moment: look again before saying no.
    let ours = (0..5).any(|i| {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        descends_from(pid, sup)
    });
    if !ours {
        return Err(SignalRefused::NotOurs(format!("is not a descendant of the scenario's supervisor (pid {sup})")));
    }
    // SAFETY: pidfd_send_signal with a pidfd we own, a signal number, no
    // siginfo and no flags.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), signal, std::ptr::null::<u8>(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(SignalRefused::Errno(Errno::last()))
    }
}

fn errno_outcome(call: String, errno: nix::errno::Errno) -> Outcome {
    Outcome {
        call: call.clone(),
        result: Err(Failure::Errno { errno: errno as i32, message: format!("{call}: {errno}") }),
    }
}

impl Actor<'_> {
    /// Performs one of this module's steps.
    pub(crate) fn process_step(&mut self, index: usize, op: &Op, globals: &Globals) -> Outcome {
        let pid_of = |n: &str| match globals.get(n) {
            Some(Global::Process(p)) => Some(*p),
            _ => None,
        };
        match op {
            Op::Fork { child } => self.fork_child(child),
            Op::Run { argv } => self.run(index, argv, globals),
            Op::Spawn { name, argv } => self.spawn(index, name, argv, globals),
            Op::Signal { target, signal } => {
                let Some(pid) = pid_of(target).filter(|p| *p > 0) else {
                    return Outcome {
                        call: format!("kill({target}, {})", signal_name(*signal)),
                        result: Err(Failure::Refused { message: format!("`{target}` has no pid") }),
                    };
                };
                let call = format!("kill({pid}, {}) [{target}]", signal_name(*signal));
                if self.journal.is_some() && crate::runner::host::traces_programs(self.scenario) {
                    // Host mode with programs: no PID namespace, and a
                    // traced program is reaped by its tracer the moment it
                    // ends, not at `wait`: its pid may be another's.
                    return match signal_in_tree(pid, *signal) {
                        Ok(()) => Outcome { call, result: Ok(Value::Unit) },
                        Err(SignalRefused::Errno(e)) => errno_outcome(call, e),
                        Err(SignalRefused::NotOurs(why)) => Outcome {
                            call,
                            result: Err(Failure::Refused {
                                message: format!("pid {pid} of `{target}` {why}: it ended, and its pid may be another process's now; not signalled"),
                            }),
                        },
                    };
                }
                // SAFETY: kill(2) with a pid of the scenario (bound by a
                // spawn or a fork, never reaped before: the parser checks;
                // here a program is its actor's child, reaped only by
                // `wait`, or all are in the scenario's PID namespace) and
                // a signal number.
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

    /// Host mode with programs: a command must not be handed `${D}` of a
    /// scenario process or program that has ended (a traced program is
    /// reaped by its tracer at once, so its pid may be another's already):
    /// the refusal, naming it. (The program may still race with an ending
    /// after this; the scenario's own pids are all it is handed.)
    pub(crate) fn stale_pid(&self, argv: &[String], globals: &Globals) -> Option<Failure> {
        if self.journal.is_none() || !crate::runner::host::traces_programs(self.scenario) {
            return None;
        }
        let ours = |n: &str| {
            self.scenario.processes.iter().any(|p| p.name == n)
                || self.scenario.steps.iter().any(|s| matches!(&s.op, Op::Spawn { name: Some(d), .. } if d == n))
        };
        let sup = supervisor_pid();
        for name in argv.iter().flat_map(|a| crate::scenario::substitutions(a)) {
            let Some(Global::Process(pid)) = globals.get(name) else { continue };
            if !ours(name) {
                continue;
            }
            if !sup.is_some_and(|sup| descends_from(*pid, sup)) {
                return Some(Failure::Refused {
                    message: format!(
                        "`${{{name}}}`: pid {pid} is no longer a process of the scenario (it ended, and its pid may be another process's now); not run"
                    ),
                });
            }
        }
        None
    }

    /// `fork` step: the child becomes actor `child` and serves from here on;
    /// the parent closes the child's pipe ends and reports its pid.
    pub(super) fn fork_child(&mut self, child: &str) -> Outcome {
        let call = format!("fork() [{child}]");
        match self.fork_actor(child) {
            Ok(pid) => Outcome { call, result: Ok(Value::Forked(pid)) },
            Err(errno) => {
                Outcome { call, result: Err(Failure::Errno { errno: errno as i32, message: format!("fork: {errno}") }) }
            }
        }
    }

    fn fork_actor(&mut self, child: &str) -> Result<i32, nix::errno::Errno> {
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
                // Inherited mappings: the child detaches them when it finishes.
                repeated: std::mem::take(&mut self.repeated),
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
            Err(ForkError::Sys { errno, .. }) => Err(errno),
            Err(e) => panic!("{e}"),
        }
    }

    /// The program arguments `argv` with `${...}` substituted
    /// ([`argument`]).
    fn arguments(&self, argv: &[String], globals: &Globals) -> Vec<String> {
        let here = self.here();
        argv.iter().map(|a| argument(a, globals, &self.dir, &here)).collect()
    }

    /// `run`: the program, to its end (under the tracer in host mode).
    fn run(&mut self, index: usize, argv: &[String], globals: &Globals) -> Outcome {
        if let Some(f) = self.stale_pid(argv, globals) {
            return Outcome { call: format!("run {}", argv.join(" ")), result: Err(f) };
        }
        let args = self.arguments(argv, globals);
        let Some(journal) = self.journal else {
            return program::run(&args, &self.dir);
        };
        // Host mode: under the tracer (the supervisor checked it works).
        let line = self.scenario.steps[index].line;
        let deadline = Instant::now() + self.timeout.saturating_sub(self.timeout / 10);
        let origin = Origin { journal: self.journal, scenario: &self.scenario.file, process: &self.name };
        let mut reports = RunReports { watch: &mut self.watch, origin, line };
        let ledger = journal::ledger(journal, &self.scenario.file);
        match traced::run(&args, &self.dir, deadline, self.life, ledger, &mut reports) {
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

    fn spawn(&mut self, index: usize, name: &Option<String>, argv: &[String], globals: &Globals) -> Outcome {
        if let Some(f) = self.stale_pid(argv, globals) {
            return Outcome { call: format!("spawn {}", argv.join(" ")), result: Err(f) };
        }
        let args = self.arguments(argv, globals);
        let call = match name {
            Some(n) => format!("spawn {} [{n}]", args.join(" ")),
            None => format!("spawn {}", args.join(" ")),
        };
        let line = self.scenario.steps[index].line;
        let started = match self.journal {
            None => spawned::spawn(&args, &self.dir, line),
            Some(journal) => {
                let deadline = Instant::now() + self.timeout.saturating_sub(self.timeout / 10);
                let ledger = journal::ledger(journal, &self.scenario.file);
                spawned::spawn_traced(&args, &self.dir, line, deadline, ledger, &mut self.watch)
            }
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
