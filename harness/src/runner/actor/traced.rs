//! A `run` step's program under the tracer (host mode): the same stdio,
//! cap and answer as [`crate::runner::actor::program::run`], plus every segment the
//! program's process tree creates, reported as it happens.
//!
//! The tracer T is the actor's child (it dies with the actor, and every
//! tracee dies with T: `PTRACE_O_EXITKILL`). A program that leaves
//! descendants behind (a daemon) keeps T alive after its step: the actor
//! keeps the [`Tracer`] and drains its events while it serves other steps
//! ([`drain_ready`]), and at teardown kills the tree and reads what is left
//! ([`finish`]). Anything the tracer cannot vouch for (an unverified
//! `shmget`, a tracer failure, garbage, a tracer that vanished while its
//! program ran) is an `Err`: the step is a harness error, never a pass.

#![allow(unsafe_code)] // opts in: ptrace, seccomp and waitpid on raw pids

use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::trace::{self, Event, Exit, Ledger, Program, Stdio, TraceError, Tracer};

use crate::interp::{Failure, Identity, Outcome, Value};

/// What a traced process did to a segment, as the actor books it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Traced {
    /// `shmget` created this segment (with this key).
    Created(Identity, i32),
    /// `shmctl(IPC_SET)` gave the segment this identity; its `ctime` before
    /// the call, if the tracer could read it.
    Changed(Identity, Option<i64>),
    /// The tracer's guard refused a call on a segment that is not the
    /// scenario's: what it says (program, call, segment, errno).
    Refused(String),
}

/// What to do with each [`Traced`] report, before anything else happens
/// (the actor journals it). An `Err` fails the step closed.
pub(crate) type Sink<'a> = dyn FnMut(Traced) -> Result<(), String> + 'a;

/// The caller's side of a traced run: where its reports go, and the
/// caller's other living tracers (a spawned program's, a daemon's), whose
/// reports are read and journaled while this program runs, not only after.
pub(crate) trait Reports {
    /// Journals and queues one report of this run (see [`Sink`]).
    ///
    /// # Errors
    /// Fail closed: the report cannot be recorded.
    fn take(&mut self, t: Traced) -> Result<(), String>;
    /// The event fds of the caller's other tracers, to poll.
    fn others(&self) -> Vec<RawFd>;
    /// Reads (and journals) what the other tracers reported, without waiting.
    fn drain_others(&mut self);
}

/// How long output is still read after the program ended (a daemon it
/// started may hold its stdout open).
const AFTER_EXIT: Duration = Duration::from_millis(100);

/// Runs `args` in `dir` under the tracer until the program (its first
/// process) ends and its output is read, or until `deadline` or a hang-up
/// of `life` (the supervisor's life pipe: it died) (then the whole tree is
/// killed and the step is an error). `life` matters for a forked actor,
/// which has no death signal: without it, it would wait for the program
/// long after its scenario died. Every creation is given
/// to `sink` as it is read. `ledger` guards the tree: it may change only
/// the scenario's segments ([`Program::guard`]); a refusal is a report too. Returns the step's outcome and, if descendants
/// live on, the tracer (to be drained later and killed at teardown).
///
/// # Errors
/// Fail closed: a message for the scenario's report (the tree was killed).
pub(crate) fn run(
    args: &[String],
    dir: &Path,
    deadline: Instant,
    life: RawFd,
    ledger: Ledger,
    reports: &mut dyn Reports,
) -> Result<(Outcome, Option<Tracer>), String> {
    let call = format!("run {}", args.join(" "));
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("run: pipe2: {e}"));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let program = Program::new(args, dir)
        .map_err(|e| format!("run `{}`: {e}", args[0]))?
        .stdio(1, Stdio::Fd(out_w))
        .stdio(2, Stdio::Fd(err_w))
        .guard(ledger);
    // `spawn` consumes the program: our copies of the write ends are closed
    // once it returns, so end of file means the tree closed them.
    let tracer = trace::spawn(program).map_err(|e| format!("run `{}`: {e}", args[0]))?;
    let mut running = Running {
        tracer,
        open: [Some(out_r), Some(err_r)],
        out: [(Vec::new(), 0), (Vec::new(), 0)],
        state: State::default(),
    };
    running.follow(&args[0], deadline, life, reports)?;
    running.ended(call, (&args[0], dir), reports)
}

/// A traced program while it runs: its tracer, the output pipes still
/// open, what they gave (and how many bytes were cut), what its events said.
struct Running {
    tracer: Tracer,
    open: [Option<OwnedFd>; 2],
    out: [(Vec<u8>, u64); 2],
    state: State,
}

impl Running {
    /// Reads the program's output, its tracer's events and the caller's
    /// other tracers' until the program ended and its output is read.
    ///
    /// # Errors
    /// The deadline passed, the supervisor died (`life` hung up), or the
    /// tracer reported what it cannot vouch for: the tree was killed.
    fn follow(&mut self, name: &str, deadline: Instant, life: RawFd, reports: &mut dyn Reports) -> Result<(), String> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            if let Some(at) = self.state.exited_at {
                if self.open.iter().all(Option::is_none) || at.elapsed() > AFTER_EXIT {
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let left = self.kill(reports);
                return Err(format!(
                    "`{name}` did not end within the step's timeout; its process tree was killed{}",
                    left.err().map_or_else(String::new, |e| format!(" ({e})"))
                ));
            }
            let mut wait = deadline - now;
            if self.state.exited_at.is_some() {
                wait = wait.min(Duration::from_millis(20));
            }
            let (mut fds, which) = crate::runner::actor::program::poll_open(&self.open);
            // SAFETY: the caller keeps the life pipe's read end open for the call.
            let life_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(life) };
            fds.push(PollFd::new(life_fd, PollFlags::POLLIN));
            let others = reports.others();
            for &o in &others {
                // SAFETY: the caller's tracers keep their event fds open for the call.
                fds.push(PollFd::new(unsafe { std::os::fd::BorrowedFd::borrow_raw(o) }, PollFlags::POLLIN));
            }
            let watch_events = !self.tracer.is_over();
            if watch_events {
                fds.push(PollFd::new(self.tracer.events_fd(), PollFlags::POLLIN));
            }
            let ms = PollTimeout::try_from(wait.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX);
            let polled = poll(&mut fds, ms);
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            drop(fds);
            match polled {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    let _ = self.kill(reports);
                    return Err(format!("run `{name}`: poll: {e}"));
                }
            }
            if ready[which.len()] {
                let left = self.kill(reports);
                return Err(format!(
                    "`{name}`: the scenario's supervisor died; its process tree was killed{}",
                    left.err().map_or_else(String::new, |e| format!(" ({e})"))
                ));
            }
            let base = which.len() + 1;
            if ready[base..base + others.len()].iter().any(|r| *r) {
                reports.drain_others();
            }
            if watch_events && ready[ready.len() - 1] {
                if let Err(e) = self.state.absorb_ready(&mut self.tracer, &mut |t| reports.take(t)) {
                    let _ = self.kill(reports);
                    return Err(format!("run `{name}`: {e}; its process tree was killed"));
                }
            }
            crate::runner::actor::program::read_ready(&which, &ready, &mut self.open, &mut self.out, &mut buf);
        }
    }

    /// The step's answer once the program ended (or never started), and the
    /// tracer if descendants live on.
    fn ended(
        mut self,
        call: String,
        (name, dir): (&str, &Path),
        reports: &mut dyn Reports,
    ) -> Result<(Outcome, Option<Tracer>), String> {
        if let Some((step, errno)) = self.state.not_started {
            let _ = self.kill(reports);
            let message = crate::runner::actor::program::not_started(name, dir, step.describe());
            return Ok((Outcome { call, result: Err(Failure::Errno { errno, message }) }, None));
        }
        let (status, signal) = match self.state.exited_at.and(self.state.exit) {
            Some(Exit::Code(c)) => (Some(c), None),
            Some(Exit::Signal { signal, .. }) => (None, Some(signal)),
            None => (None, None),
        };
        let [(o, cut_o), (e, cut_e)] = self.out;
        let outcome = Outcome {
            call,
            result: Ok(Value::Output {
                pid: self.state.pid.unwrap_or(0),
                status,
                signal,
                stdout: String::from_utf8_lossy(&o).into_owned(),
                stderr: String::from_utf8_lossy(&e).into_owned(),
                truncated: (cut_o, cut_e),
            }),
        };
        // Descendants live on: keep the tracer (and so them) until teardown.
        let keep = (!self.tracer.is_over()).then_some(self.tracer);
        Ok((outcome, keep))
    }

    /// Kills the tree and reads what the tracer reported before it died.
    fn kill(&mut self, reports: &mut dyn Reports) -> Result<(), String> {
        kill_and_read(&mut self.tracer, &mut |t| reports.take(t))
    }
}

/// What the events of a run said so far.
#[derive(Debug, Default)]
struct State {
    pid: Option<i32>,
    exit: Option<Exit>,
    exited_at: Option<Instant>,
    not_started: Option<(trace::Step, i32)>,
}

impl State {
    /// Reads every event available now.
    fn absorb_ready(&mut self, tracer: &mut Tracer, sink: &mut Sink<'_>) -> Result<(), String> {
        loop {
            match tracer.recv(Duration::ZERO) {
                Ok(Event::Started { pid }) => self.pid = Some(pid),
                Ok(Event::ProgramExited(exit)) => {
                    self.exit = Some(exit);
                    self.exited_at = Some(Instant::now());
                }
                Ok(Event::NotStarted { step, errno }) => self.not_started = Some((step, errno)),
                Ok(e) => absorb(e, sink)?,
                Err(TraceError::Timeout(_) | TraceError::Ended) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Hands a creation or change to `sink`; fails closed on what cannot be
/// vouched for.
fn absorb(e: Event, sink: &mut Sink<'_>) -> Result<(), String> {
    match e {
        Event::Created { shmid, key, cpid, ctime, .. } => sink(Traced::Created(Identity { shmid, cpid, ctime }, key)),
        Event::Changed { shmid, cpid, old_ctime, ctime, .. } => {
            sink(Traced::Changed(Identity { shmid, cpid, ctime }, old_ctime))
        }
        Event::Unverified { shmid: -1, by_pid, errno } => Err(format!(
            "pid {by_pid} died in a shmget that may have created a segment, and the tracer could not look ({}): whether it did cannot be known",
            Errno::from_raw(errno)
        )),
        Event::Unverified { shmid, by_pid, errno } => Err(format!(
            "pid {by_pid}'s shmget returned shmid {shmid}, whose identity the tracer could not read ({}): whether it created it cannot be known",
            Errno::from_raw(errno)
        )),
        Event::Refused(r) => sink(Traced::Refused(r.describe())),
        Event::Failed(m) => Err(format!("the tracer failed: {m}")),
        Event::Started { .. }
        | Event::Removed { .. }
        | Event::NotStarted { .. }
        | Event::ProgramExited(_)
        | Event::AllExited => Ok(()),
    }
}

/// Reads what a living tracer has reported since (without waiting); `Ok(true)`
/// once its stream is over (every tracee ended).
///
/// # Errors
/// Fail closed: an unverifiable report, a tracer failure, garbage, or T
/// vanished.
pub(crate) fn drain_ready(tracer: &mut Tracer, sink: &mut Sink<'_>, exit: &mut Option<Exit>) -> Result<bool, String> {
    loop {
        match tracer.recv(Duration::ZERO) {
            // A spawned program's end (its `wait` reads it).
            Ok(Event::ProgramExited(x)) => *exit = Some(x),
            Ok(e) => absorb(e, sink)?,
            Err(TraceError::Timeout(_)) => return Ok(false),
            Err(TraceError::Ended) => return Ok(true),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// How long T has to end a program tree and report what it did, at a
/// step's timeout or a supervisor's death.
const DRAIN: Duration = Duration::from_secs(2);

/// Teardown: ends the program tree before the tracer (see
/// [`Tracer::stop`]) and takes every report T wrote, waiting at most until
/// `deadline`. Call [`Tracer::request_stop`] on every tracer first when
/// ending several, so that their trees die together.
///
/// # Errors
/// As [`drain_ready`], and T's failure to drain in time: what the tree
/// did as it died cannot be vouched for.
pub(crate) fn finish(tracer: &mut Tracer, sink: &mut Sink<'_>, deadline: Instant) -> Result<(), String> {
    stop_and_read(tracer, sink, deadline.saturating_duration_since(Instant::now()))
}

fn kill_and_read(tracer: &mut Tracer, sink: &mut Sink<'_>) -> Result<(), String> {
    stop_and_read(tracer, sink, DRAIN)
}

fn stop_and_read(tracer: &mut Tracer, sink: &mut Sink<'_>, timeout: Duration) -> Result<(), String> {
    let mut first_error = None;
    let stopped = tracer.stop(timeout, &mut |e| {
        if let Err(m) = absorb(e, sink) {
            first_error.get_or_insert(m);
        }
    });
    if let Err(e) = stopped {
        let why = match e {
            TraceError::Timeout(t) => format!(
                "the tracer did not end the program tree and report within {t:?}; it was killed, and a segment created as the tree died may be unreported"
            ),
            e => format!("{e}; a segment created as the tree died may be unreported"),
        };
        first_error.get_or_insert(why);
    }
    first_error.map_or(Ok(()), Err)
}
