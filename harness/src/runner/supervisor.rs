//! The supervisor: one process per scenario, forked from the single-threaded
//! coordinator. It enters the scenario's IPC namespace, forks the actors,
//! sends them the steps in lockstep, checks every answer, runs the leak
//! oracle and tears everything down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, setpgid, ForkResult, Gid, Pid, Uid};

use crate::scenario::{signal_name, Expect, KeyRef, Op, OutputCheck, Scenario, StatField, Step};
use crate::sysv::{self, errno_name, Errno as SysErrno, Key};

use super::actor::{descendants, exit_now, Actor, ActorFds};
use super::check::{Judge, StepResult};
use super::report::{Entry, Isolation, Leak, ScenarioReport, Status, StepFailure};
use super::wire::{recv, send, Ending, Failure, FromActor, Global, Globals, Outcome, Run, ToActor, Value, WireError};

/// How a supervisor runs its scenario.
#[derive(Debug, Clone)]
pub(crate) struct ScenarioOptions {
    pub isolation: Isolation,
    pub timeout: Duration,
    /// Whether the run has real root (not root of a user namespace of ours).
    pub root: bool,
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

struct Supervisor<'a> {
    sc: &'a Scenario,
    opts: &'a ScenarioOptions,
    dir: tempfile::TempDir,
    procs: BTreeMap<String, Proc>,
    pgid: Option<Pid>,
    globals: Globals,
    /// shmid -> (line, process) of the step that created it.
    created: BTreeMap<i32, (usize, String)>,
    /// pid -> (line, process) of `run` steps.
    spawned: HashMap<i32, (usize, String)>,
    /// (process, attachment) -> line that attached it.
    attach_lines: HashMap<(String, String), usize>,
    key_salt: u32,
    transcript: Vec<Entry>,
    /// Read end of the pipe on which an actor says a chain is over (non-blocking).
    done_r: OwnedFd,
    /// Until the actors exist: the ends they inherit.
    actor_ends: Option<(OwnedFd, OwnedFd)>,
    /// Write end of the life pipe: never written; closed when we die.
    _life_w: OwnedFd,
}

/// Steps of one chain at most: a chain must answer within one step timeout.
const MAX_CHAIN: usize = 64;

/// Runs one scenario to its report. Called in the supervisor process.
pub(crate) fn supervise(sc: &Scenario, opts: &ScenarioOptions) -> ScenarioReport {
    let started = Instant::now();
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
        Some(format!("needs root (another uid, or a privileged call), and this run is uid {}", Uid::effective()))
    } else if sc.needs.namespace && opts.isolation == Isolation::Host {
        Some(
            "needs a private IPC namespace (`needs namespace`, or it sets sysctls), and this run uses host isolation"
                .to_string(),
        )
    } else {
        None
    };
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
            let failure = sup.run_steps();
            let mut leaks = sup.segment_leaks();
            let mapped = sup.finish(!leaks.is_empty());
            // Every segment left, mapped or not, is among the segment leaks.
            sup.remove_leaked(&leaks);
            leaks.splice(0..0, mapped);
            super::janitor::clear();
            report.transcript = std::mem::take(&mut sup.transcript);
            match failure {
                Err(Abort::Step(f)) => report.failure = Some(f),
                Err(Abort::Harness(reason)) => report.reason = Some(reason),
                Ok(()) => {}
            }
            report.leaks = leaks;
            if report.failure.is_some() || report.reason.is_some() || !report.leaks.is_empty() {
                report.status = Status::Fail;
            }
        }
    }
    report.duration_us = started.elapsed().as_micros() as u64;
    report
}

enum Abort {
    Step(StepFailure),
    Harness(String),
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
        // Orphaned grandchildren (a forked actor whose parent exited) come to
        // us, so we can reap them and see how they ended.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
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
        let key_salt = if opts.isolation == Isolation::Host { host_salt(sc) } else { 0 };
        // Before the actors exist: they write to its table.
        super::janitor::arm();
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
            pgid: None,
            globals: Globals::new(),
            created: BTreeMap::new(),
            spawned: HashMap::new(),
            attach_lines: HashMap::new(),
            key_salt,
            transcript: Vec::new(),
            done_r,
            actor_ends: Some((done_w, life_r)),
            _life_w: life_w,
        };
        for p in sc.processes.iter().filter(|p| p.forked_from.is_none()) {
            let pid = sup.fork_actor(&p.name, p.uid, p.gid)?;
            sup.globals.insert(p.name.clone(), Global::Process(pid.as_raw()));
        }
        // Every child end now lives in the actors that need it.
        for proc_ in sup.procs.values_mut() {
            proc_.child_ends = None;
        }
        sup.actor_ends = None;
        Ok(sup)
    }

    fn fork_actor(&mut self, name: &str, uid: Option<u32>, gid: Option<u32>) -> Result<Pid, String> {
        let supervisor = Pid::this();
        let keep = descendants(self.sc, name);
        let pgid = self.pgid;
        // SAFETY: the supervisor is single-threaded (forked from the
        // single-threaded coordinator), so the child may allocate and lock.
        match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
            ForkResult::Child => {
                // Die with the supervisor; no core dumps from planned crashes.
                // SAFETY: prctl with integer arguments.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
                }
                if nix::unistd::getppid() != supervisor {
                    exit_now(70);
                }
                // The supervisor's interrupt handlers (host mode's janitor) are not the actor's.
                for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                    // SAFETY: restores the default action; no handler code runs.
                    let _ = unsafe { signal(sig, SigHandler::SigDfl) };
                }
                let _ = setpgid(Pid::from_raw(0), pgid.unwrap_or(Pid::from_raw(0)));
                let mut fds = HashMap::new();
                let mut peers = HashMap::new();
                for (pname, p) in &self.procs {
                    // Answers are read only by the supervisor.
                    let _ = nix::unistd::close(p.ans_r.as_raw_fd());
                    // Any actor may hand a chain to any other.
                    peers.insert(pname.clone(), p.cmd_w.as_raw_fd());
                    if let Some((cmd_r, ans_w)) = &p.child_ends {
                        if keep.contains(pname) {
                            fds.insert(pname.clone(), ActorFds { cmd: cmd_r.as_raw_fd(), ans: ans_w.as_raw_fd() });
                        } else {
                            let _ = nix::unistd::close(cmd_r.as_raw_fd());
                            let _ = nix::unistd::close(ans_w.as_raw_fd());
                        }
                    }
                }
                let _ = nix::unistd::close(self.done_r.as_raw_fd());
                let _ = nix::unistd::close(self._life_w.as_raw_fd());
                let (done, life) = match &self.actor_ends {
                    Some((d, l)) => (d.as_raw_fd(), l.as_raw_fd()),
                    None => exit_now(73),
                };
                if let Some(gid) = gid {
                    if nix::unistd::setgroups(&[]).is_err() || nix::unistd::setgid(Gid::from_raw(gid)).is_err() {
                        exit_now(71);
                    }
                }
                if let Some(uid) = uid {
                    if gid.is_none() {
                        let _ = nix::unistd::setgroups(&[]);
                    }
                    if nix::unistd::setuid(Uid::from_raw(uid)).is_err() {
                        exit_now(72);
                    }
                }
                // The supervisor's other resources (its TempDir, its maps)
                // are never dropped here: the actor ends with _exit.
                let actor = Actor {
                    scenario: self.sc,
                    name: name.to_string(),
                    dir: self.dir.path().to_path_buf(),
                    fds,
                    peers,
                    done,
                    life,
                    salt: self.key_salt,
                    attachments: HashMap::new(),
                };
                actor.serve()
            }
            ForkResult::Parent { child } => {
                let group = *self.pgid.get_or_insert(child);
                super::janitor::set_group(group.as_raw());
                // Both sides set the group, so neither order can race.
                let _ = setpgid(child, group);
                self.procs.get_mut(name).expect("declared").pid = Some(child);
                Ok(child)
            }
        }
    }

    fn resolve_key(&self, k: &KeyRef) -> i32 {
        self.judge().resolve_key(k)
    }

    fn translate_key(&self, literal: i32) -> i32 {
        self.judge().translate_key(literal)
    }

    fn pid_name(&self, pid: i32) -> String {
        if pid == 0 {
            return "none".into();
        }
        for (name, g) in &self.globals {
            if *g == Global::Process(pid) {
                return name.clone();
            }
        }
        if let Some((line, _)) = self.spawned.get(&pid) {
            return format!("pid {pid} (run at line {line})");
        }
        format!("pid {pid}")
    }

    fn our_pids(&self) -> HashSet<i32> {
        let mut pids: HashSet<i32> = self.procs.values().filter_map(|p| p.pid.map(Pid::as_raw)).collect();
        pids.extend(self.spawned.keys());
        pids
    }

    /// In host mode: refuse a key that a segment not of this scenario holds.
    fn host_guard(&self, key: i32) -> Result<(), String> {
        if self.opts.isolation != Isolation::Host || key == 0 {
            return Ok(());
        }
        let ours = self.our_pids();
        let rows = sysv::proc_segments().map_err(|e| e.to_string())?;
        match rows.iter().find(|r| r.key.raw() == key && !self.created.contains_key(&r.shmid.raw()) && !ours.contains(&r.cpid)) {
            Some(r) => Err(format!(
                "key {} belongs to a segment this scenario did not create (shmid {}, cpid {}); host isolation never touches it — run with namespace isolation or change the key",
                Key::from_raw(key),
                r.shmid,
                r.cpid
            )),
            None => Ok(()),
        }
    }

    /// Steps the supervisor answers itself.
    fn is_local(step: &Step) -> bool {
        matches!(step.op, Op::KeyLiteral { .. } | Op::Kill | Op::Segments | Op::Lookup { .. })
    }

    /// Whether a chain must end after this step: its process ends (the
    /// supervisor reaps it before anything else happens), or an external
    /// program runs (which gets a step timeout of its own).
    fn ends_chain(step: &Step) -> bool {
        matches!(step.op, Op::Exit { .. } | Op::Crash | Op::Run { .. })
            || matches!(step.expect, Expect::Signal(_) | Expect::Exited(_))
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
    fn run_steps(&mut self) -> Result<(), Abort> {
        let steps = &self.sc.steps;
        let host = self.opts.isolation == Isolation::Host;
        let mut i = 0;
        while i < steps.len() {
            let group = 1 + steps[i + 1..].iter().take_while(|s| s.concurrent).count();
            if group > 1 {
                // A concurrent group: every step sent before any answer is awaited.
                for (j, step) in steps.iter().enumerate().skip(i).take(group) {
                    self.guard(step)?;
                    let run = Run { process: step.process.clone(), from: j, to: j + 1 };
                    self.send_chain(vec![run], step)?;
                }
                self.collect(i..i + group)?;
                i += group;
            } else if Self::is_local(&steps[i]) {
                let result = self.local_step(&steps[i])?;
                self.record(&steps[i], result)?;
                i += 1;
            } else {
                self.guard(&steps[i])?;
                let mut runs: Vec<Run> = Vec::new();
                let mut j = i;
                loop {
                    let step = &steps[j];
                    match runs.last_mut() {
                        Some(r) if r.process == step.process => r.to = j + 1,
                        _ => runs.push(Run { process: step.process.clone(), from: j, to: j + 1 }),
                    }
                    j += 1;
                    if Self::ends_chain(step) || j >= steps.len() || j - i >= MAX_CHAIN {
                        break;
                    }
                    let next = &steps[j];
                    // In host mode a create or open needs the guard first: it starts a chain.
                    if next.concurrent
                        || Self::is_local(next)
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

    /// In host mode, refuses a create or open of a key held by a segment
    /// this scenario did not create.
    fn guard(&self, step: &Step) -> Result<(), Abort> {
        if let Op::Create { key, .. } | Op::Open { key, .. } = &step.op {
            let k = self.resolve_key(key);
            self.host_guard(k).map_err(|m| Abort::Harness(format!("line {}: {m}", step.line)))?;
        }
        Ok(())
    }

    fn send_chain(&self, runs: Vec<Run>, first: &Step) -> Result<(), Abort> {
        let to = &self.procs[&runs[0].process];
        match send(to.cmd_w.as_fd(), &ToActor::Chain { runs, globals: self.globals.clone() }) {
            // Gone already: `collect` finds out how it ended.
            Ok(()) | Err(WireError::Closed) => Ok(()),
            Err(e) => Err(Abort::Harness(format!("line {}: sending to {}: {e:?}", first.line, first.process))),
        }
    }

    /// Reads and judges the answers of `steps`, in order, sleeping while
    /// they are not there yet. Stops at the first failure.
    fn collect(&mut self, steps: std::ops::Range<usize>) -> Result<(), Abort> {
        let mut deadline = Instant::now() + self.timeout();
        let mut involved: Vec<String> = Vec::new();
        for step in &self.sc.steps[steps.clone()] {
            if !involved.contains(&step.process) {
                involved.push(step.process.clone());
            }
        }
        let mut k = steps.start;
        while k < steps.end {
            let step = &self.sc.steps[k];
            let answer = recv::<FromActor>(self.procs[&step.process].ans_r.as_fd(), Some(Duration::ZERO));
            let result = match answer {
                Ok(FromActor::Done(o)) => StepResult::Answered(o),
                Ok(other) => {
                    return Err(Abort::Harness(format!(
                        "line {}: {} answered out of turn: {other:?}",
                        step.line, step.process
                    )))
                }
                Err(WireError::Closed) => StepResult::Ended(self.ending_of(&step.process)),
                Err(WireError::Timeout) if Instant::now() < deadline => {
                    self.wait_for_news(&involved, deadline);
                    continue;
                }
                Err(WireError::Timeout) => StepResult::TimedOut(self.state_of(&step.process)),
                Err(WireError::Broken(m)) => {
                    return Err(Abort::Harness(format!("line {}: reading {}'s answer: {m}", step.line, step.process)))
                }
            };
            deadline = Instant::now() + self.timeout();
            self.record(step, result)?;
            k += 1;
        }
        Ok(())
    }

    /// Sleeps until a chain ends (an actor's token), a process of it dies
    /// (its answer pipe hangs up), or the deadline.
    fn wait_for_news(&self, involved: &[String], deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis().min(60_000)).unwrap_or(u16::MAX);
        let mut fds = vec![PollFd::new(self.done_r.as_fd(), PollFlags::POLLIN)];
        for name in involved {
            let p = &self.procs[name];
            if p.ending.is_none() {
                // No events asked: only a hang-up (the process died) wakes us.
                fds.push(PollFd::new(p.ans_r.as_fd(), PollFlags::empty()));
            }
        }
        let _ = poll(&mut fds, PollTimeout::from(ms.max(1)));
        // Drain the end-of-chain tokens; answers are read by `collect`.
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(self.done_r.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
    }

    /// Judges a result, adds it to the transcript, and records what it bound.
    fn record(&mut self, step: &Step, result: StepResult) -> Result<(), Abort> {
        let verdict = self.check(step, &result);
        let (call, answer) = self.describe(&result);
        self.transcript.push(Entry {
            line: step.line,
            process: step.process.clone(),
            call,
            answer: answer.clone(),
            ok: verdict.is_ok(),
        });
        match verdict {
            Ok(binds) => {
                self.guard_captures(step, &result, &binds)?;
                self.apply(step, &result, binds);
                Ok(())
            }
            Err(expected) => Err(Abort::Step(StepFailure {
                line: step.line,
                process: step.process.clone(),
                step: step.text.clone(),
                expected,
                actual: answer,
            })),
        }
    }

    /// In host mode, a shmid captured from a program's output must be a
    /// segment this scenario's processes made: a program could print any id,
    /// and later steps (`rm`) must never reach a segment that is not ours.
    fn guard_captures(&self, step: &Step, result: &StepResult, binds: &[(String, Global)]) -> Result<(), Abort> {
        if self.opts.isolation != Isolation::Host {
            return Ok(());
        }
        let mut ours = self.our_pids();
        // The program this step ran is ours too (recorded only after this check).
        if let StepResult::Answered(Outcome { result: Ok(Value::Output { pid, .. }), .. }) = result {
            ours.insert(*pid);
        }
        if !binds.iter().any(|(_, g)| matches!(g, Global::Segment(_))) {
            return Ok(());
        }
        let rows = sysv::proc_segments().map_err(|e| Abort::Harness(e.to_string()))?;
        for (name, g) in binds {
            let Global::Segment(id) = g else { continue };
            let row = rows.iter().find(|r| r.shmid.raw() == *id);
            let mine = self.created.contains_key(id) || row.is_some_and(|r| ours.contains(&r.cpid));
            if !mine {
                return Err(Abort::Harness(format!(
                    "line {}: `{name}` captured shmid {id}, which is not a segment this scenario's processes created; host isolation never touches it",
                    step.line
                )));
            }
        }
        Ok(())
    }

    /// The steps the supervisor performs itself.
    fn local_step(&mut self, step: &Step) -> Result<StepResult, Abort> {
        let local = |call: String, result: Result<Value, Failure>| Ok(StepResult::Answered(Outcome { call, result }));
        match &step.op {
            Op::KeyLiteral { value, .. } => {
                let v = self.translate_key(*value);
                local(format!("key {}", Key::from_raw(v)), Ok(Value::Key(v)))
            }
            Op::Segments => {
                let ours = self.our_pids();
                match sysv::proc_segments() {
                    Ok(rows) => {
                        let n = rows
                            .iter()
                            .filter(|r| {
                                self.opts.isolation == Isolation::Namespace
                                    || self.created.contains_key(&r.shmid.raw())
                                    || ours.contains(&r.cpid)
                            })
                            .count();
                        local("count /proc/sysvipc/shm".into(), Ok(Value::Number(n as u64)))
                    }
                    Err(e) => local("count /proc/sysvipc/shm".into(), Err(Failure::Refused { message: e.to_string() })),
                }
            }
            Op::Lookup { key } => {
                let k = self.resolve_key(key);
                let call = format!("lookup {} in /proc/sysvipc/shm", Key::from_raw(k));
                match sysv::proc_segments() {
                    Ok(rows) => local(call, Ok(Value::Present(rows.iter().any(|r| r.key.raw() == k)))),
                    Err(e) => local(call, Err(Failure::Refused { message: e.to_string() })),
                }
            }
            Op::Kill => {
                let pid = self.pid_of(&step.process);
                kill(pid, Signal::SIGKILL)
                    .map_err(|e| Abort::Harness(format!("line {}: kill({pid}, SIGKILL): {e}", step.line)))?;
                Ok(StepResult::Ended(self.ending_of(&step.process)))
            }
            _ => unreachable!("only local steps come here"),
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
            wait_exit(pid, self.timeout())
        };
        self.procs.get_mut(name).expect("known").ending = Some(ending);
        ending
    }

    fn state_of(&self, name: &str) -> String {
        let pid = self.pid_of(name);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).unwrap_or("?");
        let what = match state {
            "R" => "running",
            "S" => "sleeping",
            "D" => "in uninterruptible sleep",
            "T" | "t" => "stopped",
            "Z" => "a zombie",
            _ => "in an unknown state",
        };
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let wchan = if wchan.is_empty() || wchan == "0" { String::new() } else { format!(", waiting in {wchan}") };
        format!("no answer within {:?}: process {name} (pid {pid}) is {what} ({state}){wchan}", self.timeout())
    }

    /// Checks a result against the step's expectation (see [`Judge`]); on
    /// failure says what was expected.
    fn check(&self, step: &Step, result: &StepResult) -> Result<Vec<(String, Global)>, String> {
        self.judge().verdict(step, result).map_err(|()| self.describe_expect(&step.expect))
    }

    fn judge(&self) -> Judge<'_> {
        Judge { globals: &self.globals, salt: self.key_salt }
    }

    fn describe_expect(&self, e: &Expect) -> String {
        match e {
            Expect::Ok => "ok".into(),
            Expect::Errno { errnos, ok_too } if errnos.is_empty() && !ok_too => {
                "refused (out of bounds or read-only)".into()
            }
            Expect::Errno { errnos, ok_too } => {
                let mut alts: Vec<String> =
                    errnos.iter().map(|e| format!("-1 {} ({})", errno_name(*e), e.desc())).collect();
                if *ok_too {
                    alts.push("ok".into());
                }
                alts.join(" or ")
            }
            Expect::Signal(s) => format!("dies of {}", signal_name(*s)),
            Expect::Exited(c) => format!("exits with status {c}"),
            Expect::Data(d) => {
                let bytes = d.bytes();
                format!("{} ({} bytes)", show_bytes(&bytes[..bytes.len().min(32)], bytes.len() > 32), bytes.len())
            }
            Expect::Byte(b) => format!("{b:#04x}"),
            Expect::Number(n) => n.to_string(),
            Expect::Present(p) => if *p { "present" } else { "absent" }.into(),
            Expect::Stat(fields) => fields.iter().map(|f| self.describe_field(f)).collect::<Vec<_>>().join(", "),
            Expect::Output(checks) => checks
                .iter()
                .map(|c| match c {
                    OutputCheck::Status(s) => format!("status {s}"),
                    OutputCheck::Stdout(t) => format!("stdout {t:?}"),
                    OutputCheck::StdoutContains(t) => format!("stdout contains {t:?}"),
                    OutputCheck::StderrContains(t) => format!("stderr contains {t:?}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn describe_field(&self, f: &StatField) -> String {
        match f {
            StatField::Size(n) => format!("size {n}"),
            StatField::Nattch(n) => format!("nattch {n}"),
            StatField::Mode(m) => format!("mode {m:04o}"),
            StatField::Key(k) => format!("key {}", Key::from_raw(self.resolve_key(k))),
            StatField::Dest(b) => format!("dest {}", yes(*b)),
            StatField::Locked(b) => format!("locked {}", yes(*b)),
            StatField::Cpid(p) => format!("cpid {p}"),
            StatField::Lpid(p) => format!("lpid {}", p.as_deref().unwrap_or("none")),
            StatField::Uid(u) => format!("uid {u}"),
            StatField::Gid(g) => format!("gid {g}"),
            StatField::Cuid(u) => format!("cuid {u}"),
            StatField::Cgid(g) => format!("cgid {g}"),
        }
    }

    /// The call and the answer, for the transcript.
    fn describe(&self, r: &StepResult) -> (String, String) {
        match r {
            StepResult::Answered(o) => (o.call.clone(), self.describe_result(&o.result)),
            StepResult::Ended(Ending::Exited(c)) => ("(process ended)".into(), format!("exited with status {c}")),
            StepResult::Ended(Ending::Signaled(s)) => {
                ("(process ended)".into(), format!("died of {}", signal_name(*s)))
            }
            StepResult::Ended(Ending::Unknown) => ("(process ended)".into(), "ended, status unknown".into()),
            StepResult::TimedOut(state) => ("(waiting)".into(), state.clone()),
        }
    }

    fn describe_result(&self, r: &Result<Value, Failure>) -> String {
        match r {
            Err(Failure::Errno { errno, .. }) => {
                let e = SysErrno::from_raw(*errno);
                format!("-1 {} ({})", errno_name(e), e.desc())
            }
            Err(Failure::Refused { message }) => format!("refused: {message}"),
            Ok(v) => match v {
                Value::Unit => "ok".into(),
                Value::Key(k) => Key::from_raw(*k).to_string(),
                Value::Shmid(id) => format!("shmid {id}"),
                Value::Attached { addr, size, mapping_len } => format!("{addr:#x} (size {size}, mapped {mapping_len})"),
                Value::Read { len, mismatch, window_at, window } => match mismatch {
                    None => format!("{} ({len} bytes)", show_bytes(window, *len > window.len())),
                    Some(at) => format!(
                        "{len} bytes, first difference at byte {at}; bytes {window_at}..: {}",
                        show_bytes(window, *len > window_at + window.len())
                    ),
                },
                Value::Byte(b) => format!("{b:#04x}"),
                Value::Stat(st) => format!(
                    "size {}, nattch {}, mode {:04o}, key {}, dest {}, locked {}, cpid {}, lpid {}, uid {}, gid {}, cuid {}, cgid {}",
                    st.size,
                    st.nattch,
                    st.mode.bits(),
                    st.key,
                    yes(st.dest),
                    yes(st.locked),
                    self.pid_name(st.cpid),
                    self.pid_name(st.lpid),
                    st.uid,
                    st.gid,
                    st.cuid,
                    st.cgid
                ),
                Value::Number(n) => n.to_string(),
                Value::Present(p) => if *p { "present" } else { "absent" }.into(),
                Value::Forked(pid) => format!("pid {pid}"),
                Value::Output { status, signal, stdout, stderr, .. } => {
                    let how = match (status, signal) {
                        (Some(s), _) => format!("status {s}"),
                        (None, Some(sig)) => format!("killed by {}", signal_name(*sig)),
                        _ => "unknown status".into(),
                    };
                    format!("{how}, stdout {stdout:?}, stderr {stderr:?}")
                }
            },
        }
    }

    /// Records what a successful step bound.
    fn apply(&mut self, step: &Step, result: &StepResult, captured: Vec<(String, Global)>) {
        let StepResult::Answered(o) = result else {
            return;
        };
        let Ok(v) = &o.result else { return };
        match (&step.op, v) {
            (Op::Ftok { name: Some(n), .. }, Value::Key(k)) | (Op::KeyLiteral { name: n, .. }, Value::Key(k)) => {
                self.globals.insert(n.clone(), Global::Key(*k));
            }
            (Op::Create { name, .. }, Value::Shmid(id)) => {
                self.created.entry(*id).or_insert((step.line, step.process.clone()));
                if let Some(n) = name {
                    self.globals.insert(n.clone(), Global::Segment(*id));
                }
            }
            (Op::Open { name: Some(n), .. }, Value::Shmid(id)) => {
                self.globals.insert(n.clone(), Global::Segment(*id));
            }
            (Op::Attach { name: Some(n), .. }, Value::Attached { .. }) => {
                self.attach_lines.insert((step.process.clone(), n.clone()), step.line);
            }
            (Op::Fork { child }, Value::Forked(pid)) => {
                self.globals.insert(child.clone(), Global::Process(*pid));
                // Inherited attachments keep their lines.
                let inherited: Vec<_> = self
                    .attach_lines
                    .iter()
                    .filter(|((p, _), _)| *p == step.process)
                    .map(|((_, a), l)| ((child.clone(), a.clone()), *l))
                    .collect();
                self.attach_lines.extend(inherited);
                self.procs.get_mut(child).expect("declared").pid = Some(Pid::from_raw(*pid));
            }
            (Op::Run { .. }, Value::Output { pid, .. }) => {
                self.spawned.insert(*pid, (step.line, step.process.clone()));
            }
            _ => {}
        }
        for (name, g) in captured {
            self.globals.insert(name, g);
        }
    }

    /// The leak oracle, part one: every segment this scenario created must be gone.
    fn segment_leaks(&self) -> Vec<Leak> {
        let mut leaks = Vec::new();
        let ours = self.our_pids();
        let Ok(rows) = sysv::proc_segments() else { return leaks };
        for r in rows {
            let id = r.shmid.raw();
            let made_here = self.created.get(&id).cloned().or_else(|| self.spawned.get(&r.cpid).cloned());
            let mine = self.opts.isolation == Isolation::Namespace || made_here.is_some() || ours.contains(&r.cpid);
            if !mine {
                continue;
            }
            let by = match &made_here {
                Some((line, p)) => format!("created by {p} at line {line}"),
                None => format!("created by {}", self.pid_name(r.cpid)),
            };
            leaks.push(Leak {
                message: format!(
                    "segment shmid {id} (key {}, {} bytes, nattch {}{}) {by} was never removed; rm it before the scenario ends",
                    r.key,
                    r.size,
                    r.nattch,
                    if r.dest { ", removed but still attached" } else { "" }
                ),
                line: made_here.as_ref().map(|(l, _)| *l),
                process: made_here.map(|(_, p)| p),
                shmid: id,
            });
        }
        leaks
    }

    /// Ends every process. The leak oracle, part two: each living actor
    /// reports the SysV mappings it still holds, then exits. Stragglers
    /// (external programs) get SIGTERM, a grace period, then SIGKILL.
    ///
    /// In a private namespace an actor's maps are only read when a segment
    /// is left: a SysV mapping keeps its segment in `/proc/sysvipc/shm` (as
    /// `dest` once removed), so with none left there can be no mapping, and
    /// the maps then only serve to say who holds what. On the host every
    /// actor always reports.
    fn finish(&mut self, segments_left: bool) -> Vec<Leak> {
        let report_maps = segments_left || self.opts.isolation == Isolation::Host;
        let mut leaks = Vec::new();
        let grace = Duration::from_millis(500);
        // Parents before the children they forked, so orphans are ours to reap.
        let order: Vec<String> = self
            .sc
            .processes
            .iter()
            .filter(|p| p.forked_from.is_none())
            .flat_map(|p| descendants(self.sc, &p.name))
            .filter(|n| self.procs[n].pid.is_some() && self.procs[n].ending.is_none())
            .collect();
        for name in &order {
            let _ = send(self.procs[name].cmd_w.as_fd(), &ToActor::Finish { report_maps });
        }
        for name in order.iter().filter(|_| report_maps) {
            let p = &self.procs[name];
            // Answers of steps after a failure may still be queued: skip them.
            let mut answer = recv::<FromActor>(p.ans_r.as_fd(), Some(grace));
            while let Ok(FromActor::Done(_)) = answer {
                answer = recv::<FromActor>(p.ans_r.as_fd(), Some(grace));
            }
            if let Ok(FromActor::Maps(maps)) = answer {
                for (range, shmid, att) in maps {
                    let line = att.as_ref().and_then(|a| self.attach_lines.get(&(name.clone(), a.clone())).copied());
                    let what = att.map_or_else(String::new, |a| format!(" (attachment `{a}`)"));
                    leaks.push(Leak {
                        message: format!(
                            "process {name} still has shmid {shmid} attached at {range}{what}; detach it before the scenario ends"
                        ),
                        line,
                        process: Some(name.clone()),
                        shmid: shmid as i32,
                    });
                }
            }
        }
        for name in &order {
            let pid = self.pid_of(name);
            let ending = wait_exit(pid, grace);
            self.procs.get_mut(name).expect("known").ending = Some(ending);
        }
        if reap_all(Duration::ZERO) {
            return leaks;
        }
        if let Some(g) = self.pgid {
            let _ = killpg(g, Signal::SIGTERM);
            if reap_all(Duration::from_millis(200)) {
                return leaks;
            }
            let _ = killpg(g, Signal::SIGKILL);
        }
        reap_all(Duration::from_secs(2));
        leaks
    }

    /// Removes the segments the leak oracle found, once every process is
    /// gone. They are the scenario's own by construction (`segment_leaks`
    /// counts only those in host mode).
    fn remove_leaked(&self, leaks: &[Leak]) {
        for l in leaks {
            let _ = sysv::raw::shmctl_rmid(l.shmid);
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

/// Reaps children until none is left or `grace` passes; true if none is left.
fn reap_all(grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::ECHILD) => return true,
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

/// Waits until `pid` (a child of ours) has exited and reaps it: sleeps on a
/// pidfd until it is readable (Linux 5.3+), else polls.
fn wait_exit(pid: Pid, timeout: Duration) -> Ending {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if raw >= 0 {
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }
    wait_with_timeout(pid, timeout)
}

fn wait_with_timeout(pid: Pid, timeout: Duration) -> Ending {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_micros(20);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return Ending::Exited(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ending::Signaled(s as i32),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return Ending::Unknown,
        }
        if Instant::now() >= deadline {
            return Ending::Unknown;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(2));
    }
}

fn host_salt(sc: &Scenario) -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut salt = (std::process::id().rotate_left(16) ^ nanos ^ 0x5348_4d00) | 1;
    let literals: Vec<u32> = sc
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::KeyLiteral { value, .. } => Some(*value as u32),
            Op::Create { key: KeyRef::Literal(v), .. } | Op::Open { key: KeyRef::Literal(v), .. } => Some(*v as u32),
            _ => None,
        })
        .collect();
    while literals.contains(&salt) {
        salt = salt.wrapping_add(2);
    }
    salt
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn show_bytes(bytes: &[u8], more: bool) -> String {
    let printable = bytes.iter().all(|b| (0x20..0x7f).contains(b) || matches!(b, b'\n' | b'\t'));
    let mut s = if printable {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        format!("hex \"{}\"", bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))
    };
    if more {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn sysv_maps_lines_are_found() {
        let maps = "7f0000000000-7f0000001000 rw-s 00000000 00:01 5  /SYSV00001234 (deleted)\n7f0000002000-7f0000003000 r--p 00000000 08:01 77 /usr/lib/x.so\n";
        let found = super::super::actor::sysv_mappings(maps);
        assert_eq!(found, vec![("7f0000000000-7f0000001000".to_string(), 0x7f00_0000_0000, 5)]);
    }
}
