//! The supervisor: one process per scenario, forked from the single-threaded
//! coordinator. It enters the scenario's IPC namespace, forks the actors,
//! sends them the steps in lockstep, checks every answer, runs the leak
//! oracle and tears everything down.

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{pipe2, Pid};

use crate::scenario::{Op, Scenario, Step};

mod describe;
mod finally;
mod hugepages;
mod local;
pub(crate) mod needs;
pub(crate) mod procs;
mod teardown;
mod waiting;

use crate::interp::effects::{Books, Effect};
use crate::interp::judge::{Judge, StepResult};
use crate::interp::{Ending, Global, Identity};
use crate::report::{Entry, Isolation, ScenarioReport, Status, StepFailure};
use crate::runner::actor::{actor_comm, descendants, Actor, ActorFds};
use crate::runner::fork::{fork_guarded, Child};
use crate::runner::host::{self, KeyMap};
use crate::runner::wire::{recv, send, FromActor, Run, ToActor, WireError};

/// How a supervisor runs its scenario.
#[derive(Debug, Clone)]
pub(crate) struct ScenarioOptions {
    pub isolation: Isolation,
    pub timeout: Duration,
    /// Whether the run has real root (not root of a user namespace of ours).
    pub root: bool,
    /// Whether the supervisor is PID 1 of a PID namespace of the scenario's own.
    pub pid_namespace: bool,
    /// Host mode: the slot of the run's key range.
    pub key_slot: u8,
    /// Read end of the coordinator's life pipe: its hang-up means the
    /// coordinator is gone, and the scenario is torn down.
    pub coordinator: Option<RawFd>,
    /// The run's journal (host mode).
    pub journal: Option<RawFd>,
    /// Read end of this scenario's gate: a supervisor prepared ahead of its
    /// turn (namespaces, directory, actors) starts the steps only when the
    /// coordinator closes the write end.
    pub gate: Option<RawFd>,
}

struct Proc {
    pid: Option<Pid>,
    /// Supervisor's ends: write commands, read answers.
    cmd_w: OwnedFd,
    ans_r: OwnedFd,
    /// Child's ends, until the process exists.
    child_ends: Option<(OwnedFd, OwnedFd)>,
    /// The actor that forks it (`None`: the supervisor).
    parent: Option<String>,
    ending: Option<Ending>,
}

pub(crate) struct Supervisor<'a> {
    sc: &'a Scenario,
    opts: &'a ScenarioOptions,
    dir: tempfile::TempDir,
    procs: BTreeMap<String, Proc>,
    /// What the steps bound and made (the interpreter's state).
    books: Books,
    /// Children reaped as they ended (orphans and actors), by pid.
    reaped: HashMap<i32, Ending>,
    /// Whether actors hand chains to each other (few processes) or the
    /// supervisor sends each process's run itself (many: no peer fds).
    handoff: bool,
    keys: KeyMap,
    transcript: Vec<Entry>,
    /// Read end of the pipe on which an actor says a chain is over (non-blocking).
    done_r: OwnedFd,
    /// Until the actors exist: the ends they inherit.
    actor_ends: Option<(OwnedFd, OwnedFd)>,
    /// Write end of the life pipe: never written; closed when we die.
    _life_w: OwnedFd,
    /// Steps marked `xfail` that answered as written: (line, reason).
    xpassed: Vec<(usize, String)>,
    /// Processes that cannot take another step after a failure (no answer
    /// in time, or answers of a concurrent group still unread).
    unsettled: Vec<String>,
    /// Failures of `finally` steps after the first failure.
    later_failures: Vec<StepFailure>,
}

/// Steps of one chain at most: a chain must answer within one step timeout.
const MAX_CHAIN: usize = 64;

/// Up to this many processes, actors hand chains to each other (each holds
/// every peer's command pipe); above it, each holds only its own pipes and
/// the supervisor sends every run itself, so fds stay linear.
const MAX_HANDOFF_PROCESSES: usize = 64;

/// Runs one scenario to its report. Called in the supervisor process.
pub(crate) fn supervise(sc: &Scenario, opts: &ScenarioOptions) -> ScenarioReport {
    let mut started = Instant::now();
    let mut report = ScenarioReport {
        file: sc.file.clone(),
        name: Path::new(&sc.file).file_stem().map_or_else(|| sc.file.clone(), |s| s.to_string_lossy().into_owned()),
        status: Status::Pass,
        isolation: opts.isolation,
        reason: None,
        failure: None,
        leaks: Vec::new(),
        processes: sc.processes.iter().map(|p| p.name.clone()).collect(),
        transcript: Vec::new(),
        duration_us: 0,
    };
    let skip = if sc.needs.root && !opts.root {
        Some("needs root (another uid, or a privileged call), and this run is not root".to_string())
    } else if sc.needs.namespace && opts.isolation == Isolation::Host {
        Some(
            "needs a private IPC namespace (`needs namespace`, or it sets sysctls), and this run uses host isolation"
                .to_string(),
        )
    } else if let Some(reason) = sc.needs.hugepages.and_then(crate::runner::supervisor::hugepages::missing) {
        Some(reason)
    } else if opts.isolation == Isolation::Host && !opts.root {
        // `unshare ipc` / `setns` need CAP_SYS_ADMIN, which a namespace run
        // has in its user namespace and an unprivileged host run lacks.
        sc.steps.iter().find(|s| matches!(s.op, Op::Unshare | Op::Setns { .. })).map(|s| {
            format!("line {} moves a process to another IPC namespace, which host isolation allows only to root; run as root or in namespace isolation", s.line)
        }).or_else(|| host::programs_in_host_mode(sc))
    } else if opts.isolation == Isolation::Host {
        host::programs_in_host_mode(sc)
    } else {
        None
    };
    let skip = skip.or_else(|| {
        crate::runner::supervisor::needs::unmet(sc, sc.timeout.unwrap_or(opts.timeout), opts.pid_namespace)
    });
    if let Some(reason) = skip {
        report.status = Status::Skip;
        report.reason = Some(reason);
        return report;
    }
    match Supervisor::start(sc, opts) {
        Err(reason) => {
            report.status = Status::Fail;
            report.reason = Some(reason);
        }
        Ok(mut sup) => {
            let failure = sup.wait_for_turn().and_then(|()| {
                // The scenario's time starts with its turn, not with its preparation.
                started = Instant::now();
                sup.run_steps()
            });
            if matches!(failure, Err(Abort::Orphaned)) {
                // No report will be read, and every moment counts: no
                // polite teardown, kill everything now and remove (by
                // identity) what the scenario made.
                report.status = Status::Fail;
                report.reason = Some(sup.abandon().err().unwrap_or_else(|| {
                    "the coordinator died; the scenario was killed and its segments removed".into()
                }));
                return report;
            }
            // Teardown: the actors report their mappings and exit, every
            // other process of the scenario is killed and reaped, and only
            // then are the segments counted: no step completes after this.
            let (mapped, blind) = sup.finish();
            let mut xfail = None;
            let mut reason = match failure {
                Err(Abort::Step(f)) => {
                    report.failure = Some(f);
                    None
                }
                Err(Abort::Xfail(marked)) => {
                    let (f, why) = *marked;
                    report.failure = Some(f);
                    xfail = Some(why);
                    None
                }
                Err(Abort::Harness(reason)) => Some(reason),
                Err(Abort::Orphaned) => unreachable!("handled above"),
                Ok(()) => None,
            };
            let mut leaks = match sup.segment_leaks() {
                Ok(l) => l,
                Err(e) => {
                    reason.get_or_insert(format!("the leak oracle cannot see: {e}"));
                    // Host mode still removes, by identity, what the books
                    // prove the scenario made (the run's journal is deleted
                    // at its end: nothing else would ever remove it).
                    if opts.isolation == Isolation::Host {
                        sup.known_leaks()
                    } else {
                        Vec::new()
                    }
                }
            };
            if let Some(b) = blind {
                reason.get_or_insert(b);
            }
            // Every segment left, mapped or not, is among the segment leaks.
            if let Err(e) = sup.remove_leaked(&leaks) {
                reason.get_or_insert(e);
            }
            leaks.splice(0..0, mapped);
            if let Some(later) = sup.later_failures_text() {
                reason = Some(match reason {
                    Some(r) => format!("{r}; {later}"),
                    None => later,
                });
            }
            report.reason = reason;
            report.transcript = std::mem::take(&mut sup.transcript);
            report.leaks = leaks;
            report.settle(xfail.as_deref(), &sup.xpassed);
        }
    }
    report.duration_us = started.elapsed().as_micros() as u64;
    report
}

enum Abort {
    Step(StepFailure),
    /// A step marked `xfail` failed as expected: the reason given.
    Xfail(Box<(StepFailure, String)>),
    Harness(String),
    /// The coordinator died: nobody will read a report.
    Orphaned,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))
}

impl<'a> Supervisor<'a> {
    fn start(sc: &'a Scenario, opts: &'a ScenarioOptions) -> Result<Supervisor<'a>, String> {
        // A write to a dead actor's pipe must be an error, not our death.
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.map_err(|e| format!("signal(SIGPIPE): {e}"))?;
        if opts.isolation == Isolation::Namespace {
            crate::namespace::enter_private_ipc_namespace().map_err(|e| e.to_string())?;
        }
        // Programs read `/proc/PID` for the pids they are shown: give them
        // the scenario's own (only where they run: it costs a mount).
        if opts.pid_namespace && sc.steps.iter().any(|s| matches!(s.op, Op::Run { .. } | Op::Spawn { .. })) {
            procs::mount_private_proc()?;
        }
        if !opts.pid_namespace {
            // Orphaned descendants (a forked actor whose parent exited, a
            // program's daemon) come to us, to be reaped and, at the end,
            // killed. (As PID 1 of the scenario's PID namespace we are
            // their reaper anyway.)
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        }
        let dir = scenario_dir()?;
        let other_uids = sc.processes.iter().any(|p| p.uid.is_some() || p.gid.is_some());
        if other_uids {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
        }
        for f in &sc.files {
            let path = dir.path().join(&f.name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            std::fs::write(&path, &f.content).map_err(|e| format!("file {}: {e}", f.name))?;
        }
        for (name, value, line) in &sc.sysctls {
            crate::namespace::write_sysctl(*name, *value)
                .map_err(|e| format!("line {line}: sysctl {} = {value}: {e}", name.name()))?;
        }
        let keys =
            if opts.isolation == Isolation::Host { KeyMap::host(sc, opts.key_slot)? } else { KeyMap::identity() };
        let handoff = sc.processes.len() <= MAX_HANDOFF_PROCESSES;
        // Per process: 4 pipe ends here, plus a few of our own. A small
        // scenario is not checked (a fork refused later names the limit too).
        if sc.processes.len() > MAX_HANDOFF_PROCESSES {
            crate::runner::fork::check_limits(sc.processes.len(), 4 * sc.processes.len() + 16)?;
        }
        let mut procs = BTreeMap::new();
        for p in &sc.processes {
            let (cmd_r, cmd_w) = pipe()?;
            let (ans_r, ans_w) = pipe()?;
            procs.insert(
                p.name.clone(),
                Proc {
                    pid: None,
                    cmd_w,
                    ans_r,
                    child_ends: Some((cmd_r, ans_w)),
                    parent: p.forked_from.clone(),
                    ending: None,
                },
            );
        }
        let (done_r, done_w) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| format!("pipe2: {e}"))?;
        let (life_r, life_w) = pipe()?;
        let mut sup = Supervisor {
            sc,
            opts,
            dir,
            procs,
            books: Books::default(),
            reaped: HashMap::new(),
            handoff,
            keys,
            transcript: Vec::new(),
            done_r,
            actor_ends: Some((done_w, life_r)),
            _life_w: life_w,
            xpassed: Vec::new(),
            unsettled: Vec::new(),
            later_failures: Vec::new(),
        };
        for p in sc.processes.iter().filter(|p| p.forked_from.is_none()) {
            let pid = sup.fork_actor(&p.name, p.uid, p.gid)?;
            sup.books.globals.insert(p.name.clone(), Global::Process(pid.as_raw()));
        }
        // Every child end now lives in the actors that need it.
        for proc_ in sup.procs.values_mut() {
            proc_.child_ends = None;
        }
        sup.actor_ends = None;
        Ok(sup)
    }

    fn fork_actor(&mut self, name: &str, uid: Option<u32>, gid: Option<u32>) -> Result<Pid, String> {
        let family = descendants(self.sc, name);
        let (done, life) = match &self.actor_ends {
            Some((d, l)) => (d.as_raw_fd(), l.as_raw_fd()),
            None => return Err("the actors' pipes are gone".into()),
        };
        let mut keep: Vec<RawFd> = vec![done, life];
        keep.extend(self.opts.journal);
        let mut fds = HashMap::new();
        let mut peers = HashMap::new();
        for (pname, p) in &self.procs {
            if self.handoff {
                // Any actor may hand a chain to any other.
                peers.insert(pname.clone(), p.cmd_w.as_raw_fd());
                keep.push(p.cmd_w.as_raw_fd());
            }
            if let Some((cmd_r, ans_w)) = &p.child_ends {
                if family.contains(pname) {
                    fds.insert(pname.clone(), ActorFds { cmd: cmd_r.as_raw_fd(), ans: ans_w.as_raw_fd() });
                    keep.extend([cmd_r.as_raw_fd(), ans_w.as_raw_fd()]);
                }
            }
        }
        let own = fds.get(name).map(|f| f.ans);
        let comm = actor_comm(name);
        let spec = Child { name: &comm, keep: &keep, death_signal: Some(libc::SIGKILL), uid, gid, panic_fd: own };
        let scenario = self.sc;
        let dir = self.dir.path().to_path_buf();
        let keys = self.keys.clone();
        let journal = self.opts.journal;
        let timeout = self.timeout();
        let child = fork_guarded(&spec, move || {
            // The supervisor's resources (its TempDir, its books) are never
            // dropped here: the actor ends with _exit.
            let actor = Actor {
                scenario,
                name: name.to_string(),
                dir,
                fds,
                peers,
                done,
                life,
                keys,
                journal,
                attachments: HashMap::new(),
                timeout,
                watch: crate::runner::actor::watch::Watch::default(),
                spawned: HashMap::new(),
            };
            actor.serve()
        })
        .map_err(|e| e.to_string())?;
        self.procs.get_mut(name).expect("declared").pid = Some(child);
        Ok(child)
    }

    pub(crate) fn resolve_key(&self, k: &crate::scenario::KeyRef) -> i32 {
        self.judge().resolve_key(k)
    }

    fn translate_key(&self, literal: i32) -> i32 {
        self.judge().translate_key(literal)
    }

    pub(crate) fn pid_name(&self, pid: i32) -> String {
        if pid == 0 {
            return "none".into();
        }
        for (name, g) in &self.books.globals {
            if *g == Global::Process(pid) {
                return name.clone();
            }
        }
        if let Some((line, _)) = self.books.spawned.get(&pid) {
            return format!("pid {pid} (run at line {line})");
        }
        format!("pid {pid}")
    }

    fn identities(&self) -> Vec<Identity> {
        self.books.identities()
    }

    /// Runs the steps in lockstep.
    ///
    /// Actors hand work to each other directly: the supervisor sends a chain
    /// of runs (consecutive steps of one process) to the first actor; each
    /// actor does its run, answers every step on its own answer pipe, and
    /// passes the rest of the chain to the next actor, so a step still starts
    /// only once the previous one is done, with one pipe hand-off per change
    /// of process, as a hand-written test would have. The supervisor sleeps
    /// until the chain is over, then reads and judges every answer in order.
    fn run_range(&mut self, range: std::ops::Range<usize>) -> Result<(), Abort> {
        let steps = &self.sc.steps;
        let host = self.opts.isolation == Isolation::Host;
        let mut i = range.start;
        while i < range.end {
            let group = 1 + steps[i + 1..range.end].iter().take_while(|s| s.concurrent).count();
            if let Some(limit) = steps[i].eventually {
                self.eventually(i, limit)?;
                i += 1;
            } else if group > 1 {
                // A concurrent group: every step guarded, then every step
                // sent before any answer is awaited.
                for step in steps.iter().skip(i).take(group) {
                    self.guard(step)?;
                }
                for (j, step) in steps.iter().enumerate().skip(i).take(group) {
                    let run = Run { process: step.process.clone(), from: j, to: j + 1 };
                    self.send_chain(vec![run], step)?;
                }
                self.collect(i..i + group)?;
                i += group;
            } else if steps[i].op.is_local() {
                let result = self.local_step(&steps[i])?;
                self.record(&steps[i], result)?;
                i += 1;
            } else {
                self.guard(&steps[i])?;
                let mut runs: Vec<Run> = Vec::new();
                let mut j = i;
                loop {
                    let step = &steps[j];
                    if j > i {
                        // Each chained step is guarded before the chain is sent.
                        self.guard(step)?;
                    }
                    match runs.last_mut() {
                        Some(r) if r.process == step.process => r.to = j + 1,
                        _ => runs.push(Run { process: step.process.clone(), from: j, to: j + 1 }),
                    }
                    j += 1;
                    if step.ends_chain() || j >= range.end || j - i >= MAX_CHAIN {
                        break;
                    }
                    let next = &steps[j];
                    // In host mode a create or open needs the guard first: it starts a chain.
                    // An `eventually` step is repeated alone (see `eventually`).
                    if next.concurrent
                        || next.eventually.is_some()
                        || next.op.is_local()
                        || next.eventually.is_some()
                        || (!self.handoff && next.process != step.process)
                        || (host && matches!(next.op, Op::Create { .. } | Op::Open { .. }))
                    {
                        break;
                    }
                }
                self.send_chain(runs, &steps[i])?;
                self.collect(i..j)?;
                i = j;
            }
        }
        Ok(())
    }

    fn send_chain(&self, runs: Vec<Run>, first: &Step) -> Result<(), Abort> {
        let to = &self.procs[&runs[0].process];
        match send(to.cmd_w.as_fd(), &ToActor::Chain { runs, globals: self.books.globals.clone() }) {
            // Gone already: `collect` finds out how it ended.
            Ok(()) | Err(WireError::Closed) => Ok(()),
            Err(e) => Err(Abort::Harness(format!("line {}: sending to {}: {e:?}", first.line, first.process))),
        }
    }

    /// Reads and judges the answers of `steps`, in order, sleeping while
    /// they are not there yet. Stops at the first failure.
    fn collect(&mut self, steps: std::ops::Range<usize>) -> Result<(), Abort> {
        let mut involved: Vec<String> = Vec::new();
        for step in &self.sc.steps[steps.clone()] {
            if !involved.contains(&step.process) {
                involved.push(step.process.clone());
            }
        }
        for k in steps.clone() {
            let result = self.await_answer(k, &involved)?;
            if let Err(e) = self.record(&self.sc.steps[k], result) {
                // Steps of a concurrent group not yet read: their answers
                // may still come; those processes take no more steps.
                for later in &self.sc.steps[k + 1..steps.end] {
                    if later.concurrent && !self.unsettled.contains(&later.process) {
                        self.unsettled.push(later.process.clone());
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Waits (one step timeout at most) for the answer to step `k`, taking
    /// in what traced programs report meanwhile.
    fn await_answer(&mut self, k: usize, involved: &[String]) -> Result<StepResult, Abort> {
        let deadline = Instant::now() + self.timeout();
        let step = &self.sc.steps[k];
        loop {
            let answer = recv::<FromActor>(self.procs[&step.process].ans_r.as_fd(), Some(Duration::ZERO));
            return Ok(match answer {
                Ok(FromActor::Done(o)) => StepResult::Answered(o),
                Ok(FromActor::Panic(message)) => return Err(Abort::Harness(format!("line {}: {message}", step.line))),
                Ok(FromActor::Traced(segments)) => {
                    // Journaled by the actor already; the books own them now.
                    self.books.traced(&segments, &step.process);
                    continue;
                }
                Ok(FromActor::Harness(why)) => return Err(Abort::Harness(why)),
                Ok(other) => {
                    return Err(Abort::Harness(format!(
                        "line {}: {} answered out of turn: {other:?}",
                        step.line, step.process
                    )))
                }
                Err(WireError::Closed) => StepResult::Ended(self.ending_of(&step.process)),
                Err(WireError::Timeout) if Instant::now() < deadline => {
                    self.wait_for_news(involved, deadline)?;
                    continue;
                }
                Err(WireError::Timeout) => {
                    self.unsettled.push(step.process.clone());
                    StepResult::TimedOut(self.state_of(&step.process, self.timeout()))
                }
                Err(m) => {
                    return Err(Abort::Harness(format!("line {}: reading {}'s answer: {m}", step.line, step.process)))
                }
            });
        }
    }

    /// A prepared supervisor waits here, actors forked, until the
    /// coordinator releases it (closes the gate's write end).
    ///
    /// # Errors
    /// The coordinator is gone (its life pipe hung up).
    fn wait_for_turn(&mut self) -> Result<(), Abort> {
        let Some(gate) = self.opts.gate else { return Ok(()) };
        loop {
            // SAFETY: the gate's read end and the coordinator's life pipe stay
            // open in this process for its whole life.
            let gate_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(gate) };
            // SAFETY: as above, the coordinator's life pipe stays open.
            let coord = self.opts.coordinator.map(|fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
            let mut fds = vec![PollFd::new(gate_fd, PollFlags::POLLIN)];
            if let Some(c) = coord {
                fds.push(PollFd::new(c, PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Abort::Harness(format!("poll (waiting for its turn): {e}"))),
            }
            // The coordinator's death also closes the gate: look at it first.
            if coord.is_some() && fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return Err(Abort::Orphaned);
            }
            if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                return Ok(());
            }
        }
    }

    /// Sleeps until a chain ends (an actor's token), an answer arrives, a
    /// process of it dies (its answer pipe hangs up), or the deadline; reaps
    /// whatever child ended meanwhile (orphans included: no zombie stays).
    ///
    /// # Errors
    /// The coordinator is gone (its life pipe hung up).
    fn wait_for_news(&mut self, involved: &[String], deadline: Instant) -> Result<(), Abort> {
        let left = deadline.saturating_duration_since(Instant::now());
        // Wake at least every 20 ms to reap orphans as they die.
        let ms = u16::try_from(left.as_millis().min(20)).unwrap_or(20);
        let mut fds = vec![PollFd::new(self.done_r.as_fd(), PollFlags::POLLIN)];
        // SAFETY: the coordinator's life pipe stays open in this process for its whole life.
        let coord = self.opts.coordinator.map(|fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        if let Some(c) = coord {
            fds.push(PollFd::new(c, PollFlags::POLLIN));
        }
        for name in involved {
            let p = &self.procs[name];
            if p.ending.is_none() {
                // An answer, or a hang-up (the process died).
                fds.push(PollFd::new(p.ans_r.as_fd(), PollFlags::POLLIN));
            }
        }
        let _ = poll(&mut fds, PollTimeout::from(ms.max(1)));
        let coordinator_gone = coord.is_some() && fds[1].revents().is_some_and(|r| !r.is_empty());
        drop(fds);
        // Drain the end-of-chain tokens; answers are read by `collect`.
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(self.done_r.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
        self.reap_ended();
        if coordinator_gone {
            return Err(Abort::Orphaned);
        }
        Ok(())
    }

    /// Reaps every child that has ended, keeping how it ended.
    fn reap_ended(&mut self) {
        while let Some((pid, ending)) = procs::reap_one() {
            self.reaped.insert(pid, ending);
        }
    }

    /// Judges a result, adds it to the transcript, and records what it bound.
    fn record(&mut self, step: &Step, result: StepResult) -> Result<(), Abort> {
        self.record_tries(step, result, None)
    }

    /// [`Self::record`], for the last of `tries` (count, time spent) of an `eventually` step.
    fn record_tries(&mut self, step: &Step, result: StepResult, tries: Option<(u32, Duration)>) -> Result<(), Abort> {
        self.note_program(step, &result);
        let verdict = self.check(step, &result);
        let (call, mut answer) = self.describe(&result);
        if let Some((n, spent)) = tries {
            answer = format!("{answer} (try {n}, after {} ms)", spent.as_millis());
        }
        self.transcript.push(Entry {
            line: step.line,
            process: step.process.clone(),
            call,
            answer: answer.clone(),
            ok: verdict.is_ok(),
        });
        match verdict {
            Ok(binds) => {
                // `shmctl t = s SHM_STAT_ANY` binds t to whatever holds s's
                // index now (the kernel keeps only an id's index bits there):
                // after `rm s`, a segment of the machine's: guarded as a capture.
                let mut guarded = binds.clone();
                if let (
                    Op::Shmctl { name: Some(n), .. },
                    StepResult::Answered(crate::interp::Outcome { result: Ok(crate::interp::Value::Ctl(a)), .. }),
                ) = (&step.op, &result)
                {
                    guarded.push((n.clone(), Global::Segment(a.returned())));
                }
                self.guard_captures(step, &guarded)?;
                self.apply(step, &result, binds);
                if let Some(reason) = &step.xfail {
                    self.xpassed.push((step.line, reason.clone()));
                }
                Ok(())
            }
            Err(expected) => {
                let f = StepFailure {
                    line: step.line,
                    process: step.process.clone(),
                    step: step.text.clone(),
                    expected,
                    actual: answer,
                };
                Err(match &step.xfail {
                    Some(reason) => Abort::Xfail(Box::new((f, reason.clone()))),
                    None => Abort::Step(f),
                })
            }
        }
    }

    /// A `run` step's program ran, whatever its answer is judged to be (a
    /// failure, an `eventually` try that is not judged): what its processes
    /// leave (a segment, a daemon) is named with this line.
    fn note_program(&mut self, step: &Step, result: &StepResult) {
        if let (Op::Run { .. }, StepResult::Answered(o)) = (&step.op, result) {
            if let Ok(crate::interp::Value::Output { pid, .. }) = &o.result {
                self.books.spawned.insert(*pid, (step.line, step.process.clone()));
            }
        }
    }

    fn pid_of(&self, name: &str) -> Pid {
        self.procs[name].pid.unwrap_or(Pid::from_raw(0))
    }

    fn timeout(&self) -> Duration {
        self.sc.timeout.unwrap_or(self.opts.timeout)
    }

    /// How a process ended: reaped by us (initial actors, orphans) or by its
    /// parent actor.
    fn ending_of(&mut self, name: &str) -> Ending {
        if let Some(e) = self.procs[name].ending {
            return e;
        }
        let pid = self.pid_of(name);
        let parent = self.procs[name].parent.clone();
        let parent_alive =
            parent.as_ref().is_some_and(|p| self.procs[p].ending.is_none() && self.procs[p].pid.is_some());
        let ending = if parent_alive {
            let parent = parent.expect("checked");
            let p = &self.procs[&parent];
            let asked = send(p.cmd_w.as_fd(), &ToActor::WaitChild { pid: pid.as_raw() });
            match asked.and_then(|()| recv::<FromActor>(p.ans_r.as_fd(), Some(self.timeout()))) {
                Ok(FromActor::ChildEnded(e)) => e,
                _ => Ending::Unknown,
            }
        } else {
            self.wait_child(pid, self.timeout())
        };
        self.procs.get_mut(name).expect("known").ending = Some(ending);
        ending
    }

    /// How child `pid` ended: reaped already, or waited for now.
    fn wait_child(&mut self, pid: Pid, timeout: Duration) -> Ending {
        if let Some(e) = self.reaped.remove(&pid.as_raw()) {
            return e;
        }
        match procs::wait_exit(pid, timeout) {
            Ending::Unknown => self.reaped.remove(&pid.as_raw()).unwrap_or(Ending::Unknown),
            e => e,
        }
    }

    /// The number `/proc` knows `name` by (in the scenario's PID namespace
    /// the pid we hold may not be the `/proc` mount's number).
    fn proc_pid(&self, name: &str) -> Option<i32> {
        let pid = self.pid_of(name);
        if self.opts.pid_namespace {
            procs::host_pid_of(pid)
        } else {
            Some(pid.as_raw())
        }
    }

    /// `name`'s state letter in `/proc/PID/stat` (`R`, `S`, `T`, ...).
    pub(crate) fn proc_state(&self, name: &str) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.proc_pid(name)?)).ok()?;
        stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).map(str::to_string)
    }

    /// Why `name` has not answered within `waited`: its state and where it sleeps.
    pub(crate) fn state_of(&self, name: &str, waited: Duration) -> String {
        let pid = self.pid_of(name);
        let host_pid = self.proc_pid(name);
        let state = self.proc_state(name);
        let state = state.as_deref().unwrap_or("?");
        let what = match state {
            "R" => "running",
            "S" => "sleeping",
            "D" => "in uninterruptible sleep",
            "T" | "t" => "stopped",
            "Z" => "a zombie",
            _ => "in an unknown state",
        };
        let wchan = host_pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/wchan")).ok()).unwrap_or_default();
        let wchan = if wchan.is_empty() || wchan == "0" { String::new() } else { format!(", waiting in {wchan}") };
        format!("no answer within {waited:?}: process {name} (pid {pid}) is {what} ({state}){wchan}")
    }

    /// Checks a result against the step's expectation (see [`Judge`]); on
    /// failure says what was expected.
    fn check(&self, step: &Step, result: &StepResult) -> Result<Vec<(String, Global)>, String> {
        self.judge().judge_step(step, result).map_err(|m| m.to_string())
    }

    pub(crate) fn judge(&self) -> Judge<'_> {
        Judge { globals: &self.books.globals, keys: &self.keys }
    }

    /// Records what a successful step did in the books (see
    /// [`Books::answered`]); a forked process's pid goes to the driver's table.
    fn apply(&mut self, step: &Step, result: &StepResult, captured: Vec<(String, Global)>) {
        let StepResult::Answered(o) = result else {
            return;
        };
        let Ok(v) = &o.result else { return };
        for effect in self.books.answered(step, v, captured) {
            if let Effect::Forked(child, pid) = effect {
                self.procs.get_mut(&child).expect("declared").pid = Some(Pid::from_raw(pid));
            }
        }
        // An actor signalled to death: reaped now, as `kill` would have it.
        if let Op::Signal { target, signal } = &step.op {
            if self.procs.contains_key(target) && crate::scenario::deadly(*signal) {
                let _ = self.ending_of(target);
            }
        }
    }
}

/// The scenario's own directory: on tmpfs (`/dev/shm`) when there is one,
/// where creating and removing it costs a few microseconds instead of a
/// journaled disk's hundreds.
fn scenario_dir() -> Result<tempfile::TempDir, String> {
    let fast = Path::new("/dev/shm");
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("shm-harness-");
        b
    };
    builder().tempdir_in(fast).or_else(|_| builder().tempdir()).map_err(|e| format!("temporary directory: {e}"))
}
