//! Messages between a scenario's supervisor and its actors, and the framing
//! that carries them over pipes: a little-endian `u32` length, then JSON.
//!
//! The two sides share no memory after `fork`; everything they tell each
//! other goes through here.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::interp::{Ending, Globals, Outcome, TracedSegment, OUTPUT_CAP};

/// Consecutive steps `from..to` of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The process.
    pub process: String,
    /// First step index.
    pub from: usize,
    /// One past the last.
    pub to: usize,
}

/// From the supervisor (or, for a chain, the previous actor) to an actor.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToActor {
    /// Perform the first run of the chain (this actor's steps), answer each
    /// step with `Done`, then hand the rest of the chain to the next actor,
    /// or, at the end of the chain or at the first step that did not go as
    /// expected, write a token to the supervisor's `done` pipe.
    Chain {
        /// The runs left, the first one this actor's.
        runs: Vec<Run>,
        /// Key values after host-mode translation, shmids and pids.
        globals: Globals,
    },
    /// Reap this forked child and say how it ended.
    WaitChild {
        /// The child.
        pid: i32,
    },
    /// The scenario is over: report the SysV mappings still in this process
    /// (for the leak oracle) if asked, then exit.
    Finish {
        /// Read `/proc/self/maps` and answer with `Maps` before exiting.
        report_maps: bool,
        /// The scenario's IPC namespace (device, inode): an actor that
        /// moved to another (`unshare ipc`, `setns`) first reports the
        /// segments left there, with `Foreign`.
        #[serde(default)]
        home_ns: Option<(u64, u64)>,
    },
}

/// The largest frame [`recv`] accepts: a bigger length prefix is garbage.
/// (The largest real one is a `run` answer: twice [`OUTPUT_CAP`] bytes of
/// output, at most six bytes of JSON each.)
pub const MAX_FRAME: usize = 16 * OUTPUT_CAP;

/// From an actor to the supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromActor {
    /// The answer to `Step`.
    Done(Outcome),
    /// The answer to `WaitChild`.
    ChildEnded(Ending),
    /// The answer to `Finish`: `(address range, shmid, attachment name)`,
    /// or why `/proc/self/maps` could not be read (the oracle is blind).
    Maps(Result<Vec<(String, i64, Option<String>)>, String>),
    /// The process panicked (a harness bug): the message.
    Panic(String),
    /// Segments a traced program's process tree created or changed (host
    /// mode), already journaled; sent before the answer of the step during
    /// which they were seen, and at `Finish` before `Maps`.
    Traced(Vec<TracedSegment>),
    /// The actor cannot vouch for what happened (a traced program's
    /// creation could not be verified, the tracer failed, a program ran
    /// past its step's timeout): the scenario fails with this reason.
    Harness(String),
    /// At `Finish`, from an actor in another IPC namespace than the
    /// scenario's: that namespace and the segments left in it (shmid and a
    /// description), which die with it.
    Foreign {
        /// The namespace (device, inode of `/proc/PID/ns/ipc`).
        ns: (u64, u64),
        /// What is left there, or why it cannot be read.
        segments: Result<Vec<(i32, String)>, String>,
    },
}

/// A framing or transport failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The other end closed the pipe before a message began (the process
    /// died or exited).
    #[error("the other end closed the pipe (its process ended)")]
    Closed,
    /// Nothing arrived in time.
    #[error("no message arrived in time")]
    Timeout,
    /// The pipe ended in the middle of a message: the sender died while
    /// writing it.
    #[error("message cut short: the pipe ended after {got} of its {len} bytes (the sender died while writing it)")]
    ShortRead {
        /// Bytes of the body that arrived.
        got: usize,
        /// The length its prefix announced.
        len: usize,
    },
    /// A length prefix over [`MAX_FRAME`]: the stream is garbage (or out
    /// of step).
    #[error("a frame of {len} bytes is over the limit of {MAX_FRAME}")]
    TooLong {
        /// The length the prefix announced.
        len: usize,
    },
    /// The body is not the JSON of the expected message.
    #[error("bad message: {0}")]
    BadJson(String),
    /// A message could not be encoded (serde's message).
    #[error("cannot encode a message: {0}")]
    Encode(String),
    /// A system call on the pipe failed.
    #[error("{call}: {errno}")]
    Io {
        /// `read`, `write` or `poll`.
        call: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// Sends one message. Blocks until all of it is written.
///
/// # Errors
/// `Closed` if the reader is gone, `Encode` or `Io` on other errors.
pub fn send<T: Serialize>(fd: BorrowedFd<'_>, msg: &T) -> Result<(), WireError> {
    let body = serde_json::to_vec(msg).map_err(|e| WireError::Encode(e.to_string()))?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    write_all(fd, &frame)
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), WireError> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EPIPE) => return Err(WireError::Closed),
            Err(errno) => return Err(WireError::Io { call: "write", errno }),
        }
    }
    Ok(())
}

/// Receives one message, waiting at most `timeout` (`None`: forever).
///
/// # Errors
/// `Closed` on end of file before a message, `Timeout`, `ShortRead`,
/// `TooLong`, `BadJson`, `Io`.
pub fn recv<T: DeserializeOwned>(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<T, WireError> {
    if let Some(t) = timeout {
        wait_readable(fd, t)?;
    }
    // Once a message has begun, the rest follows at once: allow plenty.
    let deadline = Some(Instant::now() + Duration::from_secs(10));
    let mut len = [0u8; 4];
    read_exact(fd, &mut len, deadline).map_err(|e| match e {
        WireError::ShortRead { .. } => WireError::Closed,
        e => e,
    })?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLong { len });
    }
    let mut body = vec![0u8; len];
    read_exact(fd, &mut body, deadline)?;
    serde_json::from_slice(&body).map_err(|e| WireError::BadJson(e.to_string()))
}

/// Appends one framed message to `buf`, to be written later with others.
///
/// # Errors
/// `Encode` if the message cannot be encoded.
pub fn frame_into<T: Serialize>(buf: &mut Vec<u8>, msg: &T) -> Result<(), WireError> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *buf, msg).map_err(|e| WireError::Encode(e.to_string()))?;
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Writes frames collected by [`frame_into`] and empties the buffer.
///
/// # Errors
/// As [`send`].
pub fn flush(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> Result<(), WireError> {
    let r = write_all(fd, buf);
    buf.clear();
    r
}

/// Waits until `fd` is readable (or at end of file), at most `timeout`.
///
/// # Errors
/// `Timeout`, or `Io` if `poll` fails.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> Result<(), WireError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis().min(60_000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if left.is_zero() => return Err(WireError::Timeout),
            Ok(0) => {}
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(WireError::Io { call: "poll", errno }),
        }
    }
}

/// Fills `buf`, polling until `deadline`; at end of file before it is
/// full, `ShortRead` with how much arrived.
fn read_exact(fd: BorrowedFd<'_>, buf: &mut [u8], deadline: Option<Instant>) -> Result<(), WireError> {
    let mut got = 0;
    while got < buf.len() {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis().min(60_000)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) if left.is_zero() => return Err(WireError::Timeout),
                Ok(0) => continue,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(WireError::Io { call: "poll", errno }),
            }
        }
        match nix::unistd::read(fd.as_raw_fd(), &mut buf[got..]) {
            Ok(0) => return Err(WireError::ShortRead { got, len: buf.len() }),
            Ok(n) => got += n,
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(errno) => return Err(WireError::Io { call: "read", errno }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
    }

    fn recv_raw(bytes: &[u8]) -> Result<Run, WireError> {
        let (r, w) = pipe();
        nix::unistd::write(w.as_fd(), bytes).expect("write");
        drop(w);
        recv::<Run>(r.as_fd(), Some(Duration::from_secs(5)))
    }

    #[test]
    fn a_message_goes_through() {
        let (r, w) = pipe();
        let run = Run { process: "A".into(), from: 1, to: 3 };
        send(w.as_fd(), &run).unwrap();
        assert_eq!(recv::<Run>(r.as_fd(), Some(Duration::from_secs(5))), Ok(run));
    }

    #[test]
    fn each_broken_frame_says_what_broke() {
        assert_eq!(recv_raw(&[]), Err(WireError::Closed));
        assert_eq!(recv_raw(&[9, 0]), Err(WireError::Closed));
        let mut cut = 10u32.to_le_bytes().to_vec();
        cut.extend_from_slice(b"{\"pro");
        assert_eq!(recv_raw(&cut), Err(WireError::ShortRead { got: 5, len: 10 }));
        let len = MAX_FRAME + 1;
        assert_eq!(recv_raw(&(len as u32).to_le_bytes()), Err(WireError::TooLong { len }));
        let mut bad = 2u32.to_le_bytes().to_vec();
        bad.extend_from_slice(b"{]");
        match recv_raw(&bad) {
            Err(e @ WireError::BadJson(_)) => assert!(e.to_string().starts_with("bad message: "), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_silent_pipe_times_out_and_a_closed_reader_is_closed() {
        let (r, w) = pipe();
        assert_eq!(recv::<Run>(r.as_fd(), Some(Duration::from_millis(10))), Err(WireError::Timeout));
        drop(r);
        // The test harness ignores SIGPIPE, so the write fails with EPIPE.
        assert_eq!(send(w.as_fd(), &Run { process: "A".into(), from: 0, to: 1 }), Err(WireError::Closed));
    }
}
