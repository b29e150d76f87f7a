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
use nix::sys::signal::{kill, killpg, signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, setpgid, ForkResult, Gid, Pid, Uid};

use crate::scenario::{signal_name, Expect, KeyRef, Op, OutputCheck, Scenario, StatField, Step};
use crate::sysv::{self, errno_name, Errno as SysErrno, Key};

use super::actor::{descendants, exit_now, Actor, ActorFds};
use super::report::{Entry, Isolation, Leak, ScenarioReport, Status, StepFailure};
use super::wire::{recv, send, Ending, Failure, FromActor, Global, Globals, Outcome, ToActor, Value, WireError};

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

enum Pending {
    /// Answered by the supervisor itself.
    Local(Outcome),
    /// Waiting for the actor's answer.
    Answer,
    /// Waiting for the process to end (kill).
    Ending,
}

enum StepResult {
    Answered(Outcome),
    Ended(Ending),
    TimedOut(String),
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
}

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
        Some("needs a private IPC namespace (it sets sysctls), and this run uses host isolation".to_string())
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
            let leaks = sup.leak_check();
            sup.teardown();
            sup.remove_leaked(&leaks);
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
        let dir = tempfile::Builder::new()
            .prefix("shm-harness-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
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
            name.write(*value).map_err(|e| format!("line {line}: sysctl {} = {value}: {e}", name.name()))?;
        }
        let key_salt = if opts.isolation == Isolation::Host { host_salt(sc) } else { 0 };
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
        };
        for p in sc.processes.iter().filter(|p| p.forked_from.is_none()) {
            let pid = sup.fork_actor(&p.name, p.uid, p.gid)?;
            sup.globals.insert(p.name.clone(), Global::Process(pid.as_raw()));
        }
        // Every child end now lives in the actors that need it.
        for proc_ in sup.procs.values_mut() {
            proc_.child_ends = None;
        }
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
                let _ = setpgid(Pid::from_raw(0), pgid.unwrap_or(Pid::from_raw(0)));
                let mut fds = HashMap::new();
                for (pname, p) in &self.procs {
                    // Our copies of the supervisor's ends are never used here.
                    let _ = nix::unistd::close(p.cmd_w.as_raw_fd());
                    let _ = nix::unistd::close(p.ans_r.as_raw_fd());
                    if let Some((cmd_r, ans_w)) = &p.child_ends {
                        if keep.contains(pname) {
                            fds.insert(pname.clone(), ActorFds { cmd: cmd_r.as_raw_fd(), ans: ans_w.as_raw_fd() });
                        } else {
                            let _ = nix::unistd::close(cmd_r.as_raw_fd());
                            let _ = nix::unistd::close(ans_w.as_raw_fd());
                        }
                    }
                }
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
                    attachments: HashMap::new(),
                };
                actor.serve()
            }
            ForkResult::Parent { child } => {
                let group = *self.pgid.get_or_insert(child);
                // Both sides set the group, so neither order can race.
                let _ = setpgid(child, group);
                self.procs.get_mut(name).expect("declared").pid = Some(child);
                Ok(child)
            }
        }
    }

    fn resolve_key(&self, k: &KeyRef) -> i32 {
        match k {
            KeyRef::Private => 0,
            KeyRef::Literal(v) => self.translate_key(*v),
            KeyRef::Name(n) => match self.globals.get(n) {
                Some(Global::Key(v)) => *v,
                _ => 0,
            },
        }
    }

    /// Host mode moves literal keys to a per-scenario range, so scenarios
    /// written with fixed keys do not collide with the machine's own.
    fn translate_key(&self, literal: i32) -> i32 {
        if literal == 0 || self.key_salt == 0 {
            literal
        } else {
            (literal as u32 ^ self.key_salt) as i32
        }
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

    fn run_steps(&mut self) -> Result<(), Abort> {
        let steps = &self.sc.steps;
        let mut i = 0;
        while i < steps.len() {
            let end = i + 1 + steps[i + 1..].iter().take_while(|s| s.concurrent).count();
            let mut pending = Vec::new();
            for (j, step) in steps.iter().enumerate().take(end).skip(i) {
                pending.push(self.start_step(j, step)?);
            }
            let mut first_failure = None;
            for (j, p) in (i..end).zip(pending) {
                let step = &steps[j];
                let result = self.finish_step(step, p)?;
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
                    Ok(binds) => self.apply(step, &result, binds),
                    Err(expected) => {
                        first_failure.get_or_insert(StepFailure {
                            line: step.line,
                            process: step.process.clone(),
                            step: step.text.clone(),
                            expected,
                            actual: answer,
                        });
                    }
                }
            }
            if let Some(f) = first_failure {
                return Err(Abort::Step(f));
            }
            i = end;
        }
        Ok(())
    }

    fn start_step(&mut self, index: usize, step: &Step) -> Result<Pending, Abort> {
        let local = |call: String, result: Result<Value, Failure>| Ok(Pending::Local(Outcome { call, result }));
        match &step.op {
            Op::KeyLiteral { value, .. } => {
                let v = self.translate_key(*value);
                return local(format!("key {}", Key::from_raw(v)), Ok(Value::Key(v)));
            }
            Op::Segments => {
                let ours = self.our_pids();
                return match sysv::proc_segments() {
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
                };
            }
            Op::Lookup { key } => {
                let k = self.resolve_key(key);
                let call = format!("lookup {} in /proc/sysvipc/shm", Key::from_raw(k));
                return match sysv::proc_segments() {
                    Ok(rows) => local(call, Ok(Value::Present(rows.iter().any(|r| r.key.raw() == k)))),
                    Err(e) => local(call, Err(Failure::Refused { message: e.to_string() })),
                };
            }
            Op::Kill => {
                let pid = self.pid_of(&step.process);
                kill(pid, Signal::SIGKILL)
                    .map_err(|e| Abort::Harness(format!("line {}: kill({pid}, SIGKILL): {e}", step.line)))?;
                return Ok(Pending::Ending);
            }
            Op::Create { key, .. } | Op::Open { key, .. } => {
                let k = self.resolve_key(key);
                self.host_guard(k).map_err(|m| Abort::Harness(format!("line {}: {m}", step.line)))?;
            }
            _ => {}
        }
        let msg = ToActor::Step { index, globals: self.globals.clone() };
        let proc_ = &self.procs[&step.process];
        match send(proc_.cmd_w.as_fd(), &msg) {
            Ok(()) => Ok(Pending::Answer),
            // Gone already: finish_step will find out how it ended.
            Err(WireError::Closed) => Ok(Pending::Answer),
            Err(e) => Err(Abort::Harness(format!("line {}: sending the step to {}: {e:?}", step.line, step.process))),
        }
    }

    fn pid_of(&self, name: &str) -> Pid {
        self.procs[name].pid.unwrap_or(Pid::from_raw(0))
    }

    fn finish_step(&mut self, step: &Step, pending: Pending) -> Result<StepResult, Abort> {
        match pending {
            Pending::Local(o) => Ok(StepResult::Answered(o)),
            Pending::Ending => Ok(StepResult::Ended(self.ending_of(&step.process))),
            Pending::Answer => {
                let timeout = self.timeout();
                let answer = recv::<FromActor>(self.procs[&step.process].ans_r.as_fd(), Some(timeout));
                match answer {
                    Ok(FromActor::Done(o)) => Ok(StepResult::Answered(o)),
                    Ok(other) => Err(Abort::Harness(format!(
                        "line {}: {} answered out of turn: {other:?}",
                        step.line, step.process
                    ))),
                    Err(WireError::Closed) => Ok(StepResult::Ended(self.ending_of(&step.process))),
                    Err(WireError::Timeout) => Ok(StepResult::TimedOut(self.state_of(&step.process))),
                    Err(WireError::Broken(m)) => {
                        Err(Abort::Harness(format!("line {}: reading {}'s answer: {m}", step.line, step.process)))
                    }
                }
            }
        }
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
            wait_with_timeout(pid, self.timeout())
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

    /// Checks a result against the step's expectation. On success returns
    /// the names captured from a `run`'s output.
    fn check(&self, step: &Step, result: &StepResult) -> Result<Vec<(String, Global)>, String> {
        let expected = self.describe_expect(&step.expect);
        let fail = || Err(expected.clone());
        let StepResult::Answered(o) = result else {
            return match (&step.expect, result) {
                (Expect::Signal(s), StepResult::Ended(Ending::Signaled(got))) if s == got => Ok(vec![]),
                (Expect::Exited(c), StepResult::Ended(Ending::Exited(got))) if c == got => Ok(vec![]),
                _ => fail(),
            };
        };
        match (&step.expect, &o.result) {
            (Expect::Ok, Ok(_)) => Ok(vec![]),
            (Expect::Errno { errnos, .. }, Err(Failure::Refused { .. })) if errnos.is_empty() => Ok(vec![]),
            (Expect::Errno { ok_too: true, .. }, Ok(_)) => Ok(vec![]),
            (Expect::Errno { errnos, .. }, Err(Failure::Errno { errno, .. }))
                if errnos.iter().any(|e| *e as i32 == *errno) =>
            {
                Ok(vec![])
            }
            (Expect::Data(d), Ok(Value::Read { len, mismatch: None, .. })) if *len == d.len() => Ok(vec![]),
            (Expect::Byte(b), Ok(Value::Byte(got))) if b == got => Ok(vec![]),
            (Expect::Number(n), Ok(Value::Number(got))) if n == got => Ok(vec![]),
            (Expect::Present(p), Ok(Value::Present(got))) if p == got => Ok(vec![]),
            (Expect::Stat(fields), Ok(Value::Stat(st))) => {
                if fields.iter().all(|f| self.stat_field_matches(f, st)) {
                    Ok(vec![])
                } else {
                    fail()
                }
            }
            (Expect::Output(checks), Ok(Value::Output { status, stdout, stderr, .. })) => {
                let mut binds = Vec::new();
                for c in checks {
                    let good = match c {
                        OutputCheck::Status(s) => *status == Some(*s),
                        OutputCheck::StdoutContains(t) => stdout.contains(t.as_str()),
                        OutputCheck::StderrContains(t) => stderr.contains(t.as_str()),
                        OutputCheck::Stdout(template) => match match_template(template, stdout) {
                            Some(caps) => {
                                binds.extend(caps);
                                true
                            }
                            None => false,
                        },
                    };
                    if !good {
                        return fail();
                    }
                }
                Ok(binds)
            }
            _ => fail(),
        }
    }

    fn stat_field_matches(&self, f: &StatField, st: &sysv::SegmentStat) -> bool {
        let pid = |name: &str| match self.globals.get(name) {
            Some(Global::Process(p)) => *p,
            _ => -1,
        };
        match f {
            StatField::Size(n) => st.size as u64 == *n,
            StatField::Nattch(n) => st.nattch == *n,
            StatField::Mode(m) => st.mode.bits() == *m,
            StatField::Key(k) => st.key.raw() == self.resolve_key(k),
            StatField::Dest(b) => st.dest == *b,
            StatField::Locked(b) => st.locked == *b,
            StatField::Cpid(p) => st.cpid == pid(p),
            StatField::Lpid(None) => st.lpid == 0,
            StatField::Lpid(Some(p)) => st.lpid == pid(p),
            StatField::Uid(u) => st.uid == *u,
            StatField::Gid(g) => st.gid == *g,
            StatField::Cuid(u) => st.cuid == *u,
            StatField::Cgid(g) => st.cgid == *g,
        }
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

    /// The leak oracle: every living process must hold no SysV mapping, and
    /// every segment this scenario created must be gone.
    fn leak_check(&mut self) -> Vec<Leak> {
        let mut leaks = Vec::new();
        let timeout = self.timeout();
        let alive: Vec<String> =
            self.procs.iter().filter(|(_, p)| p.pid.is_some() && p.ending.is_none()).map(|(n, _)| n.clone()).collect();
        for name in alive {
            let p = &self.procs[&name];
            let answer =
                send(p.cmd_w.as_fd(), &ToActor::Maps).and_then(|()| recv::<FromActor>(p.ans_r.as_fd(), Some(timeout)));
            if let Ok(FromActor::Maps(maps)) = answer {
                for (range, shmid, att) in maps {
                    let line = att.as_ref().and_then(|a| self.attach_lines.get(&(name.clone(), a.clone())).copied());
                    let what = att.map_or_else(String::new, |a| format!(" (attachment `{a}`)"));
                    leaks.push(Leak {
                        message: format!("process {name} still has shmid {shmid} attached at {range}{what}; detach it before the scenario ends"),
                        line,
                        process: Some(name.clone()),
                        shmid: shmid as i32,
                    });
                }
            }
        }
        let ours = self.our_pids();
        if let Ok(rows) = sysv::proc_segments() {
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
        }
        leaks
    }

    /// Quit, then SIGTERM, a grace period, SIGKILL; reap everything.
    fn teardown(&mut self) {
        for p in self.procs.values() {
            if p.pid.is_some() && p.ending.is_none() {
                let _ = send(p.cmd_w.as_fd(), &ToActor::Quit);
            }
        }
        if reap_all(Duration::from_millis(200)) {
            return;
        }
        if let Some(g) = self.pgid {
            let _ = killpg(g, Signal::SIGTERM);
            if reap_all(Duration::from_millis(200)) {
                return;
            }
            let _ = killpg(g, Signal::SIGKILL);
        }
        reap_all(Duration::from_secs(2));
    }

    /// Removes what leaked, once every process is gone: in a namespace,
    /// everything; on the host, only segments this scenario or its programs made.
    fn remove_leaked(&self, leaks: &[Leak]) {
        match self.opts.isolation {
            Isolation::Namespace => {
                for l in leaks {
                    let _ = sysv::raw::shmctl_rmid(l.shmid);
                }
            }
            Isolation::Host => {
                let ours = self.our_pids();
                if let Ok(rows) = sysv::proc_segments() {
                    for r in rows.iter().filter(|r| ours.contains(&r.cpid) || self.created.contains_key(&r.shmid.raw()))
                    {
                        let _ = sysv::raw::shmctl_rmid(r.shmid.raw());
                    }
                }
            }
        }
    }
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

/// Matches `text` against a template where `{name}` (a segment id) and
/// `{key:name}` (a key) capture a number. A trailing newline of the output
/// may be left out of the template.
fn match_template(template: &str, text: &str) -> Option<Vec<(String, Global)>> {
    let text = if template.ends_with('\n') { text } else { text.strip_suffix('\n').unwrap_or(text) };
    let mut caps = Vec::new();
    let (mut t, mut s) = (template, text);
    loop {
        match t.find('{') {
            None => return (t == s).then_some(caps),
            Some(open) => {
                let close = open + t[open..].find('}')?;
                if s.get(..open)? != &t[..open] {
                    return None;
                }
                s = &s[open..];
                let inner = &t[open + 1..close];
                let len = s.find(|c: char| !(c.is_ascii_hexdigit() || c == 'x' || c == '-')).unwrap_or(s.len());
                let word = &s[..len];
                let g = match inner.strip_prefix("key:") {
                    Some(_) => Global::Key(crate::scenario::parse_key(word)?),
                    None => Global::Segment(word.parse().ok()?),
                };
                caps.push((inner.strip_prefix("key:").unwrap_or(inner).to_string(), g));
                s = &s[len..];
                t = &t[close + 1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_capture_ids_and_keys() {
        let caps = match_template("Shared memory id: {s}", "Shared memory id: 42\n").unwrap();
        assert_eq!(caps, vec![("s".to_string(), Global::Segment(42))]);
        let caps = match_template("key {key:k} id {s}\n", "key 0x0000abcd id 7\n").unwrap();
        assert_eq!(caps[0], ("k".to_string(), Global::Key(0xabcd)));
        assert!(match_template("id: {s}", "id: x").is_none());
        assert!(match_template("exact", "exact but more").is_none());
    }

    #[test]
    fn sysv_maps_lines_are_found() {
        let maps = "7f0000000000-7f0000001000 rw-s 00000000 00:01 5  /SYSV00001234 (deleted)\n7f0000002000-7f0000003000 r--p 00000000 08:01 77 /usr/lib/x.so\n";
        let found = super::super::actor::sysv_mappings(maps);
        assert_eq!(found, vec![("7f0000000000-7f0000001000".to_string(), 0x7f00_0000_0000, 5)]);
    }
}
