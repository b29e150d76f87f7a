//! The caller's side of a running tracer: reading its events, ending it.

#![allow(unsafe_code)] // opts in: ptrace, seccomp and waitpid on raw pids

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{DecodeError, Event, TraceError, Tracer};

impl Tracer {
    /// The tracer process's pid (T, the caller's child).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The read end of the event pipe, to `poll` it beside other fds (then
    /// call [`Tracer::recv`] with a zero timeout).
    pub fn events_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.events.as_fd()
    }

    /// Whether the stream has ended (a final event was returned, or T's end
    /// of the pipe closed and everything was read).
    pub fn is_over(&self) -> bool {
        self.ended || (self.eof && !self.decoder.has_partial())
    }

    /// The next event, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`TraceError::Timeout`] (nothing yet; call again),
    /// [`TraceError::Ended`] (after [`Event::AllExited`] or [`Event::Failed`]),
    /// [`TraceError::Vanished`] (T died without a final event),
    /// [`TraceError::Garbage`] (fail closed: the stream is unusable from then on),
    /// [`TraceError::Sys`] (poll or read failed).
    pub fn recv(&mut self, timeout: Duration) -> Result<Event, TraceError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.decoder.next_event()? {
                if matches!(e, Event::AllExited | Event::Failed(_)) {
                    self.ended = true;
                }
                return Ok(e);
            }
            if self.eof {
                return Err(if self.decoder.has_partial() {
                    TraceError::Garbage(DecodeError::Truncated)
                } else if self.ended {
                    TraceError::Ended
                } else {
                    TraceError::Vanished
                });
            }
            if self.ended && self.decoder.has_partial() {
                return Err(TraceError::Garbage(DecodeError::AfterFinal));
            }
            if !self.read_some(deadline)? {
                return Err(TraceError::Timeout(timeout));
            }
        }
    }

    /// Waits for input until `deadline`; reads what is there. `false` on timeout.
    fn read_some(&mut self, deadline: Instant) -> Result<bool, TraceError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.events.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(true),
            Err(errno) => return Err(TraceError::Sys { call: "poll(event pipe)", errno }),
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(self.events.as_raw_fd(), &mut buf) {
            Ok(0) => self.eof = true,
            Ok(n) => self.decoder.push(&buf[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(errno) => return Err(TraceError::Sys { call: "read(event pipe)", errno }),
        }
        Ok(true)
    }

    /// Every event until the final one ([`Event::AllExited`] or
    /// [`Event::Failed`]), waiting at most `timeout` in all.
    ///
    /// # Errors
    /// As [`Tracer::recv`]; [`TraceError::Timeout`] if the tree is still
    /// running at the deadline (it is left running: call
    /// [`Tracer::kill_all`]).
    pub fn collect(&mut self, timeout: Duration) -> Result<Vec<Event>, TraceError> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.recv(left)?;
            let last = matches!(e, Event::AllExited | Event::Failed(_));
            out.push(e);
            if last {
                return Ok(out);
            }
        }
    }

    /// Asks T to end the program tree (`kill(T, SIGTERM)`): T SIGKILLs
    /// every tracee, reports what each did as it dies (a `shmget` it died
    /// in included, settled before it is reaped), then sends
    /// [`Event::AllExited`] and exits. Read the rest with [`Tracer::stop`].
    pub fn request_stop(&self) {
        if !self.reaped && !self.is_over() {
            // SAFETY: T is our unreaped child, so its pid cannot have been reused.
            unsafe { libc::kill(self.pid, libc::SIGTERM) };
        }
    }

    /// Ends the program tree *before* the tracer, and hands every event T
    /// wrote until its last to `on_event` ([`Tracer::request_stop`],
    /// repeated while nothing arrives, then reading to the final event and
    /// reaping T). If T has not finished within `timeout`, it is killed
    /// ([`Tracer::kill_all`]: the tracees die with it, possibly in a call
    /// nobody sees return) and this fails.
    ///
    /// # Errors
    /// [`TraceError::Timeout`] (T did not drain in time),
    /// [`TraceError::Vanished`] (T died without a final event), or as
    /// [`Tracer::recv`]: what T reported may be incomplete.
    pub fn stop(&mut self, timeout: Duration, on_event: &mut dyn FnMut(Event)) -> Result<(), TraceError> {
        let deadline = Instant::now() + timeout;
        self.request_stop();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left.min(Duration::from_millis(20))) {
                Ok(e) => on_event(e),
                Err(TraceError::Ended) => return self.reap(),
                Err(TraceError::Timeout(_)) if !left.is_zero() => self.request_stop(),
                Err(TraceError::Timeout(_)) => {
                    self.kill_all()?;
                    return Err(TraceError::Timeout(timeout));
                }
                Err(e) => {
                    self.kill_all()?;
                    return Err(e);
                }
            }
        }
    }

    /// `kill(T, SIGKILL)`—Kills the tracer, and with it (`PTRACE_O_EXITKILL`)
    /// every tracee, then reaps T. The tracees die asynchronously: they are
    /// SIGKILLed when T's exit is processed, and reaped by their new parent.
    ///
    /// # Errors
    /// [`TraceError::Sys`] if `waitpid` fails.
    pub fn kill_all(&mut self) -> Result<(), TraceError> {
        if self.reaped {
            return Ok(());
        }
        // SAFETY: T is our unreaped child, so its pid cannot have been reused.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        self.reap()
    }

    /// Waits for T to exit (after [`Event::AllExited`] it exits by itself).
    ///
    /// # Errors
    /// [`TraceError::Sys`] if `waitpid` fails.
    pub fn reap(&mut self) -> Result<(), TraceError> {
        if self.reaped {
            return Ok(());
        }
        loop {
            let mut status = 0;
            // SAFETY: writes the status to a local.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == -1 && Errno::last() == Errno::EINTR {
                continue;
            }
            self.reaped = true;
            if r == -1 {
                return Err(TraceError::Sys { call: "waitpid(tracer)", errno: Errno::last() });
            }
            return Ok(());
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.kill_all();
    }
}
