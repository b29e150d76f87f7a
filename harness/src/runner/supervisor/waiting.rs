//! Where the supervisor sleeps: until its turn comes, until an answer (or
//! a process's end, or the coordinator's death) is news, and between the
//! tries of an `eventually` step. Each wait ends in an event for the
//! scheduler (see [`super::event`]).

#![allow(unsafe_code)] // opts in: raw file descriptors of the coordinator's pipes

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::runner::supervisor::event::Event;
use crate::runner::supervisor::{Abort, Supervisor};
use crate::runner::wire::{recv, FromActor, WireError};

impl Supervisor<'_> {
    /// A prepared supervisor waits here, actors forked, until the
    /// coordinator releases it (closes the gate's write end).
    ///
    /// # Errors
    /// The coordinator is gone (its life pipe hung up).
    pub(super) fn wait_for_turn(&mut self) -> Result<(), Abort> {
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

    /// Waits (until `deadline`, or one step timeout from now) for the
    /// answer to step `k`, sleeping on the answer pipes of `involved`: the
    /// answer, the end of its process, the timeout, or segments a traced
    /// program reported meanwhile (then the wait goes on after the books
    /// took them, with the same deadline).
    ///
    /// # Errors
    /// An actor panicked, cannot vouch for what happened, answered out of
    /// turn, or its pipe broke; the coordinator is gone.
    pub(super) fn await_answer(
        &mut self,
        k: usize,
        involved: &[String],
        deadline: Option<Instant>,
    ) -> Result<Event, Abort> {
        let deadline = deadline.unwrap_or_else(|| Instant::now() + self.timeout());
        let step = &self.sc.steps[k];
        loop {
            let answer = recv::<FromActor>(self.procs[&step.process].ans_r.as_fd(), Some(Duration::ZERO));
            let now = Instant::now();
            // When the answer came (or the process ended, or time ran out).
            match &answer {
                Ok(FromActor::Traced(_)) => self.timing.read_other(&step.process),
                Ok(FromActor::Done(_)) | Err(WireError::Closed) => self.timing.answered(k, &step.process, now),
                Err(WireError::Timeout) if now >= deadline => self.timing.answered(k, &step.process, now),
                _ => {}
            }
            return Ok(match answer {
                Ok(FromActor::Done(outcome)) => Event::Answered { step: k, outcome },
                Ok(FromActor::Panic(message)) => return Err(Abort::Harness(format!("line {}: {message}", step.line))),
                // Journaled by the actor already; the books take them next.
                Ok(FromActor::Traced(segments)) => Event::Traced { step: k, segments, deadline },
                Ok(FromActor::Harness(why)) => return Err(Abort::Harness(why)),
                Ok(other) => {
                    return Err(Abort::Harness(format!(
                        "line {}: {} answered out of turn: {other:?}",
                        step.line, step.process
                    )))
                }
                Err(WireError::Closed) => Event::Ended { step: k, ending: self.ending_of(&step.process) },
                Err(WireError::Timeout) if now < deadline => {
                    self.wait_for_news(&step.process, involved, deadline)?;
                    continue;
                }
                Err(WireError::Timeout) => {
                    Event::TimedOut { step: k, state: self.state_of(&step.process, self.timeout()) }
                }
                Err(m) => {
                    return Err(Abort::Harness(format!("line {}: reading {}'s answer: {m}", step.line, step.process)))
                }
            });
        }
    }

    /// Sleeps until a chain ends (an actor's token), an answer arrives, a
    /// process of it dies (its answer pipe hangs up), or the deadline; reaps
    /// whatever child ended meanwhile (orphans included: no zombie stays).
    /// A pipe seen readable is noted (when an answer came, for the report)
    /// and, unless it is `awaited`'s, not watched again until it is read:
    /// an answer of a group waiting its turn does not wake the wait.
    ///
    /// # Errors
    /// The coordinator is gone (its life pipe hung up).
    fn wait_for_news(&mut self, awaited: &str, involved: &[String], deadline: Instant) -> Result<(), Abort> {
        let left = deadline.saturating_duration_since(Instant::now());
        // Wake at least every 20 ms to reap orphans as they die.
        let ms = u16::try_from(left.as_millis().min(20)).unwrap_or(20);
        let mut fds = vec![PollFd::new(self.done_r.as_fd(), PollFlags::POLLIN)];
        // SAFETY: the coordinator's life pipe stays open in this process for its whole life.
        let coord = self.opts.coordinator.map(|fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        if let Some(c) = coord {
            fds.push(PollFd::new(c, PollFlags::POLLIN));
        }
        let mut watched: Vec<&str> = Vec::new();
        for name in involved {
            let p = &self.procs[name];
            if p.ending.is_none() && (name == awaited || !self.timing.is_readable(name)) {
                // An answer, or a hang-up (the process died).
                fds.push(PollFd::new(p.ans_r.as_fd(), PollFlags::POLLIN));
                watched.push(name);
            }
        }
        let _ = poll(&mut fds, PollTimeout::from(ms.max(1)));
        let now = Instant::now();
        let coordinator_gone = coord.is_some() && fds[1].revents().is_some_and(|r| !r.is_empty());
        let first = fds.len() - watched.len();
        let seen: Vec<String> = watched
            .iter()
            .zip(&fds[first..])
            .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(name, _)| name.to_string())
            .collect();
        drop(fds);
        for name in seen {
            self.timing.saw_readable(&name, now);
        }
        // Drain the end-of-chain tokens; answers are read by `await_answer`.
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(self.done_r.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
        self.reap_ended();
        if coordinator_gone {
            return Err(Abort::Orphaned);
        }
        Ok(())
    }

    /// The pause between two tries of an `eventually` step, still bounded
    /// by the coordinator: its death ends the wait.
    ///
    /// # Errors
    /// The coordinator is gone.
    pub(super) fn pause(&mut self, pause: Duration) -> Result<(), Abort> {
        let coordinator_gone = self.opts.coordinator.is_some_and(|fd| {
            // SAFETY: the coordinator's life pipe stays open in this process for its whole life.
            let c = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let mut fds = [PollFd::new(c, PollFlags::POLLIN)];
            let ms = u16::try_from(pause.as_millis()).unwrap_or(100);
            let _ = poll(&mut fds, PollTimeout::from(ms));
            fds[0].revents().is_some_and(|r| !r.is_empty())
        });
        if self.opts.coordinator.is_none() {
            std::thread::sleep(pause);
        }
        if coordinator_gone {
            return Err(Abort::Orphaned);
        }
        self.reap_ended();
        Ok(())
    }
}
