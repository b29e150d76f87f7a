//! The supervisor: one process per scenario, forked from the single-threaded
//! coordinator. It enters the scenario's IPC namespace, forks the actors
//! ([`start`]), runs the steps in lockstep, checks every answer, runs the
//! leak oracle and tears everything down ([`teardown`]).
//!
//! Running the steps is split in two: a pure scheduler
//! ([`schedule::Schedule`], one transition `handle_event`) decides what
//! runs next from [`event::Event`]s, and the driver here
//! ([`Supervisor::run_steps`]) performs its [`event::Command`]s (guards,
//! pipes, polls, judging) and feeds back what came of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::scenario::{Op, Scenario, Step};

mod describe;
pub(crate) mod event;
mod finally;
mod hugepages;
mod leaks;
mod lives;
mod local;
pub(crate) mod needs;
pub(crate) mod procs;
pub(crate) mod schedule;
mod start;
mod stuck;
mod teardown;
mod timing;
mod waiting;

use crate::interp::effects::{bindings_to_vouch_for, Books, Effect};
use crate::interp::judge::{Judge, StepResult};
use crate::interp::{Ending, Global, Identity, Value};
use crate::report::{Entry, Isolation, ScenarioReport, Status, StepFailure};
use crate::runner::host;
use crate::runner::host::KeyMap;
use crate::runner::wire::{send, Run, ToActor, WireError};
use event::{Command, Event};
use schedule::Schedule;

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

/// One process of the scenario, as the supervisor holds it.
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

/// A scenario's supervisor: its processes, books and transcript.
pub(crate) struct Supervisor<'a> {
    sc: &'a Scenario,
    opts: &'a ScenarioOptions,
    dir: tempfile::TempDir,
    procs: BTreeMap<String, Proc>,
    /// What the steps bound and made (the interpreter's state).
    books: Books,
    /// Children reaped as they ended (orphans and actors), by pid.
    reaped: HashMap<i32, Ending>,
    /// Why a look before reaping (host mode) could not see, if one could
    /// not: the teardown fails closed on it.
    unseen: Option<String>,
    /// Segments found by a look before reaping (host mode), with their
    /// creator's name: entered in the books at teardown.
    adopted: Vec<(Identity, String)>,
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
    /// Failures of `finally` steps after the first failure.
    later_failures: Vec<StepFailure>,
    /// When each step started and ended.
    timing: timing::Timing,
    /// Processes whose step did not answer in time: at teardown, the
    /// programs they run are ended first ([`Supervisor::end_stuck_programs`]).
    stuck: BTreeSet<String>,
}

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
        iteration: None,
    };
    if let Some(reason) = skip_reason(sc, opts) {
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
                // Settled: the run's anchor and journal go too, once no
                // scenario of the run has anything left (journal.rs).
                let settled =
                    sup.abandon().and_then(|()| opts.journal.map_or(Ok(()), crate::runner::journal::finish_orphaned));
                report.reason = Some(settled.err().unwrap_or_else(|| {
                    "the coordinator died; the scenario was killed and its segments removed".into()
                }));
                return report;
            }
            sup.conclude(failure, &mut report);
        }
    }
    report.duration_us = started.elapsed().as_micros() as u64;
    report
}

/// Why the scenario cannot run here, if it cannot: what it needs that
/// this run lacks (root, a private IPC namespace, huge pages, programs).
fn skip_reason(sc: &Scenario, opts: &ScenarioOptions) -> Option<String> {
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
    skip.or_else(|| crate::runner::supervisor::needs::unmet(sc, sc.timeout.unwrap_or(opts.timeout), opts.pid_namespace))
}

/// Why the steps stopped early.
#[derive(Debug)]
pub(crate) enum Abort {
    /// A step did not answer as expected.
    Step(StepFailure),
    /// A step marked `xfail` failed as expected: the reason given.
    Xfail(Box<(StepFailure, String)>),
    /// The harness cannot vouch for what happened.
    Harness(String),
    /// The coordinator died: nobody will read a report.
    Orphaned,
}

impl<'a> Supervisor<'a> {
    /// Teardown and verdict: the actors report their mappings and exit,
    /// every other process of the scenario is killed and reaped, and only
    /// then are the segments counted (no step completes after this); then
    /// the report gets its failure, leaks, transcript and status.
    fn conclude(mut self, failure: Result<(), Abort>, report: &mut ScenarioReport) {
        let (mapped, blind) = self.finish();
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
            Err(Abort::Orphaned) => unreachable!("handled by the caller"),
            Ok(()) => None,
        };
        if let Err(e) = self.remove_repeated() {
            reason.get_or_insert(e);
        }
        let mut leaks = match self.segment_leaks() {
            Ok(l) => l,
            Err(e) => {
                reason.get_or_insert(format!("the leak oracle cannot see: {e}"));
                // Host mode still removes, by identity, what the books
                // prove the scenario made (the run's journal is deleted
                // at its end: nothing else would ever remove it).
                if self.opts.isolation == Isolation::Host {
                    self.known_leaks()
                } else {
                    Vec::new()
                }
            }
        };
        if let Some(b) = blind {
            reason.get_or_insert(b);
        }
        // Every segment left, mapped or not, is among the segment leaks.
        if let Err(e) = self.remove_leaked(&leaks) {
            reason.get_or_insert(e);
        }
        leaks.splice(0..0, mapped);
        if let Some(later) = self.later_failures_text() {
            reason = Some(match reason {
                Some(r) => format!("{r}; {later}"),
                None => later,
            });
        }
        report.reason = reason;
        report.transcript = std::mem::take(&mut self.transcript);
        report.leaks = leaks;
        report.settle(xfail.as_deref(), &self.xpassed);
    }

    /// Runs the steps: the driver of [`Schedule`]. Performs each batch of
    /// its commands in order, feeds it what came of them, until it says
    /// the run is over (see [`event::Command`] for how a batch ends).
    fn run_steps(&mut self) -> Result<(), Abort> {
        let mut schedule = Schedule::new(self.sc, self.handoff, self.opts.isolation == Isolation::Host);
        self.timing.start(Instant::now());
        let mut batch = schedule.handle_event(Event::Begin, Instant::now());
        loop {
            let mut event = None;
            for command in batch {
                if let Command::Finish { outcome, later } = command {
                    self.later_failures = later;
                    return outcome;
                }
                event = self.perform(command);
                if event.is_some() {
                    break;
                }
            }
            let Some(event) = event else {
                return Err(Abort::Harness(
                    "the supervisor's schedule stalled (no command reports an event); this is a harness bug".into(),
                ));
            };
            batch = schedule.handle_event(event, Instant::now());
        }
    }

    /// Performs one command; what came of it, if it reports anything. A
    /// process whose step did not answer in time is kept in `stuck`.
    fn perform(&mut self, command: Command) -> Option<Event> {
        let event = self.perform_command(command);
        if let Some(Event::TimedOut { step, .. }) = &event {
            self.stuck.insert(self.sc.steps[*step].process.clone());
        }
        event
    }

    /// [`Supervisor::perform`]'s commands, one by one.
    fn perform_command(&mut self, command: Command) -> Option<Event> {
        let steps = &self.sc.steps;
        match command {
            Command::Guard(k) => self.guard(&steps[k]).err().map(Event::Failed),
            Command::Send(runs) => {
                self.timing.sent(&runs, Instant::now());
                self.send_chain(runs).err().map(Event::Failed)
            }
            Command::Await { step, involved, deadline } => {
                Some(self.await_answer(step, &involved, deadline).unwrap_or_else(Event::Failed))
            }
            Command::RecordTraced { process, segments } => {
                self.books.traced(&segments, &process);
                None
            }
            Command::AnswerLocally(k) => Some(match self.timed_local_step(k) {
                Ok(StepResult::Answered(outcome)) => Event::Answered { step: k, outcome },
                Ok(StepResult::Ended(ending)) => Event::Ended { step: k, ending },
                Ok(StepResult::TimedOut(state)) => Event::TimedOut { step: k, state },
                Err(e) => Event::Failed(e),
            }),
            Command::Check { step, result } => {
                self.note_program(&steps[step], &result);
                let settled = !matches!(result, StepResult::Answered(_)) || self.check(&steps[step], &result).is_ok();
                Some(Event::Checked { step, result, settled })
            }
            Command::Judge { step, result, tries } => {
                let tries = tries.map(|t| (t.count, t.since.elapsed()));
                Some(Event::Judged { step, verdict: self.record_tries(step, result, tries) })
            }
            Command::Pause(pause) => Some(self.pause(pause).map_or_else(Event::Failed, |()| Event::Paused)),
            Command::Survey(range) => Some(Event::Surveyed(self.lives(range))),
            Command::NotRun { step, reason } => {
                self.not_run(step, reason);
                None
            }
            Command::Finish { .. } => unreachable!("the driver's loop ends at Finish"),
        }
    }

    /// Sends a chain of runs to the actor of its first run.
    fn send_chain(&self, runs: Vec<Run>) -> Result<(), Abort> {
        let first = &self.sc.steps[runs[0].from];
        let to = &self.procs[&runs[0].process];
        match send(to.cmd_w.as_fd(), &ToActor::Chain { runs, globals: self.books.globals.clone() }) {
            // Gone already: its answer's wait finds out how it ended.
            Ok(()) | Err(WireError::Closed) => Ok(()),
            Err(e) => Err(Abort::Harness(format!("line {}: sending to {}: {e:?}", first.line, first.process))),
        }
    }

    pub(crate) fn resolve_key(&self, k: &crate::scenario::KeyRef) -> i32 {
        self.judge().resolve_key(k)
    }

    fn translate_key(&self, literal: i32) -> i32 {
        self.judge().translate_key(literal)
    }

    /// What to call `pid` in a report (see [`Books::pid_name`]).
    pub(crate) fn pid_name(&self, pid: i32) -> String {
        self.books.pid_name(pid)
    }

    fn identities(&self) -> Vec<Identity> {
        self.books.identities()
    }

    /// Judges a result, adds it to the transcript, and records what it
    /// bound; `tries` (count, time spent) for the last try of an
    /// `eventually` step.
    fn record_tries(&mut self, k: usize, result: StepResult, tries: Option<(u32, Duration)>) -> Result<(), Abort> {
        let step = &self.sc.steps[k];
        self.note_program(step, &result);
        let verdict = self.check(step, &result);
        let (call, mut answer) = self.describe(&result);
        let (started_us, ended_us) = self.timing.span_us(k);
        if let Some((n, spent)) = tries {
            answer = format!("{answer} (try {n}, after {} ms)", spent.as_millis());
        }
        if let Some(held) = verdict.as_ref().ok().and_then(|_| self.judge().held_alternative(step, &result)) {
            answer = format!("{answer} ({held})");
        }
        self.transcript.push(Entry {
            line: step.line,
            process: step.process.clone(),
            call,
            answer: answer.clone(),
            ok: verdict.is_ok(),
            pid: match &result {
                StepResult::Answered(crate::interp::Outcome { result: Ok(Value::Output { pid, .. }), .. }) => {
                    Some(*pid)
                }
                _ => None,
            },
            started_us,
            ended_us,
            overlapped: self.timing.overlapped(k, &self.sc.steps),
        });
        match verdict {
            Ok(binds) => {
                // Names captured from a program's output, and the segment a
                // `shmctl` reports, are guarded (see `bindings_to_vouch_for`).
                let value = match &result {
                    StepResult::Answered(crate::interp::Outcome { result: Ok(v), .. }) => Some(v),
                    _ => None,
                };
                self.guard_captures(step, &bindings_to_vouch_for(&step.op, value, &binds))?;
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
        if let StepResult::Answered(crate::interp::Outcome { result: Ok(v), .. }) = result {
            self.books.ran(step, v);
        }
    }

    fn timeout(&self) -> Duration {
        self.sc.timeout.unwrap_or(self.opts.timeout)
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
