//! `eventually D:` steps: the supervisor repeats one step until it answers
//! as expected or D has passed, and judges only the last answer.

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::interp::judge::StepResult;
use crate::runner::supervisor::{Abort, Supervisor};
use crate::runner::wire::Run;

impl Supervisor<'_> {
    /// Runs `eventually D:` step `i` until it answers as expected or D has
    /// passed (10 ms between tries, doubling up to 100 ms); only the last
    /// answer is judged, shown with the number of tries. A process that
    /// ended or did not answer within the step timeout is not tried again.
    pub(super) fn eventually(&mut self, i: usize, limit: Duration) -> Result<(), Abort> {
        let step = &self.sc.steps[i];
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        let mut tries = 0u32;
        loop {
            tries += 1;
            let result = if step.op.is_local() {
                self.local_step(step)?
            } else {
                self.guard(step)?;
                self.send_chain(vec![Run { process: step.process.clone(), from: i, to: i + 1 }], step)?;
                self.await_answer(i, std::slice::from_ref(&step.process))?
            };
            self.note_program(step, &result);
            let settled = !matches!(result, StepResult::Answered(_)) || self.check(step, &result).is_ok();
            if settled || started.elapsed() + pause > limit {
                return self.record_tries(step, result, Some((tries, started.elapsed())));
            }
            // Still bounded by the coordinator: its death ends the wait.
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
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}
