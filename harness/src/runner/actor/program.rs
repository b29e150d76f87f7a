//! A `run` step's external program: started in the scenario's directory
//! with a death signal (set between fork and exec), its stdout and stderr
//! read while it runs and capped, then waited for.

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use std::path::Path;
use std::process::{Command, Stdio};

use nix::unistd::Pid;

use crate::interp::{Failure, Outcome, Value, OUTPUT_CAP};

/// Why program `prog` (run in `dir`) did not start, with where it was
/// looked for: `cannot start `nosuch`: looked for it in PATH
/// (/usr/local/bin:/usr/bin:/bin)`, or `...: looked for /abs/path`, after
/// the failed step when one is known (`starting the program (execvp)`).
/// The one wording of every `run` and `spawn`, traced or not; the
/// transcript shows it after the errno (`Supervisor::describe_result`).
pub(crate) fn not_started(prog: &str, dir: &Path, step: &str) -> String {
    let looked = if prog.contains('/') {
        format!("looked for {}", dir.join(prog).display())
    } else {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin (no PATH set)".into());
        format!("looked for it in PATH ({path})")
    };
    let step = if step.is_empty() { String::new() } else { format!("{step}: ") };
    format!("{NOT_STARTED}`{prog}`: {step}{looked}")
}

/// How [`not_started`] begins.
pub(crate) const NOT_STARTED: &str = "cannot start ";

/// Runs `args` (already substituted) in `dir` and answers the step.
pub(crate) fn run(args: &[String], dir: &Path) -> Outcome {
    let call = format!("run {}", args.join(" "));
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    die_with_actor(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                call,
                result: Err(Failure::Errno {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                    message: not_started(&args[0], dir, ""),
                }),
            }
        }
    };
    let pid = child.id() as i32;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let drained = drain(pid, stdout, stderr);
    match child.wait() {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            let [(out, cut_out), (err, cut_err)] = drained;
            Outcome {
                call,
                result: Ok(Value::Output {
                    pid,
                    status: status.code(),
                    signal: status.signal(),
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                    stderr: String::from_utf8_lossy(&err).into_owned(),
                    truncated: (cut_out, cut_err),
                }),
            }
        }
        Err(e) => {
            Outcome { call, result: Err(Failure::Refused { message: format!("waiting for `{}`: {e}", args[0]) }) }
        }
    }
}

/// Reads a program's stdout and stderr while it runs, keeping at most
/// [`OUTPUT_CAP`] bytes of each and counting the rest; stops when both
/// close, or shortly after the program itself has ended (a daemon it
/// started may hold them open).
fn drain(
    pid: i32,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
) -> [(Vec<u8>, u64); 2] {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    let mut out: [(Vec<u8>, u64); 2] = [(Vec::new(), 0), (Vec::new(), 0)];
    let mut open: [Option<OwnedFd>; 2] = [stdout.map(OwnedFd::from), stderr.map(OwnedFd::from)];
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh fd nothing else owns.
    let mut pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as i32) });
    let mut ended_at: Option<std::time::Instant> = None;
    let mut buf = vec![0u8; 64 << 10];
    while open.iter().any(Option::is_some) {
        if ended_at.is_some_and(|t| t.elapsed() > std::time::Duration::from_millis(100)) {
            break;
        }
        let (mut fds, which) = crate::runner::actor::program::poll_open(&open);
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        let timeout = if ended_at.is_some() { PollTimeout::from(20u16) } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        if pidfd.is_some() && ready[ready.len() - 1] {
            pidfd = None;
            ended_at = Some(std::time::Instant::now());
        }
        read_ready(&which, &ready, &mut open, &mut out, &mut buf);
    }
    out
}

/// Reads once from each of the program's output pipes that `poll` found
/// ready (`which[k]` is the stream polled at `ready[k]`), keeping at most
/// [`OUTPUT_CAP`] bytes of each and counting the rest; a stream that ends
/// or fails is closed.
pub(crate) fn read_ready(
    which: &[usize],
    ready: &[bool],
    open: &mut [Option<std::os::fd::OwnedFd>; 2],
    out: &mut [(Vec<u8>, u64); 2],
    buf: &mut [u8],
) {
    for (k, &i) in which.iter().enumerate() {
        if !ready[k] {
            continue;
        }
        let Some(f) = &open[i] else { continue };
        match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(f), buf) {
            Ok(0) => open[i] = None,
            Ok(n) => {
                let (kept, cut) = &mut out[i];
                let room = OUTPUT_CAP.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
                *cut += (n - room) as u64;
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => open[i] = None,
        }
    }
}

/// The poll set of a program's output pipes still open, and for each entry
/// the stream it stands for (0 stdout, 1 stderr), for [`read_ready`].
pub(crate) fn poll_open(open: &[Option<std::os::fd::OwnedFd>; 2]) -> (Vec<nix::poll::PollFd<'_>>, Vec<usize>) {
    use std::os::fd::AsFd;
    let mut fds = Vec::new();
    let mut which = Vec::new();
    for (i, f) in open.iter().enumerate() {
        if let Some(f) = f {
            fds.push(nix::poll::PollFd::new(f.as_fd(), nix::poll::PollFlags::POLLIN));
            which.push(i);
        }
    }
    (fds, which)
}

/// Makes the program `cmd` will start die with the calling actor (and so
/// with the scenario): `PR_SET_PDEATHSIG` between fork and exec, then a
/// check that the actor did not die before it was armed.
pub(crate) fn die_with_actor(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let actor = Pid::this();
    // SAFETY: runs in the child between fork and exec, and only makes
    // async-signal-safe system calls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != actor.as_raw() {
                libc::_exit(70);
            }
            Ok(())
        });
    }
}
