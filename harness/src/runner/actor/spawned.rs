//! Background programs of a scenario (`spawn`, `wait`): started by an
//! actor in the scenario's directory, stdin on `/dev/null`, stdout and
//! stderr each into a memory file (`memfd_create`) that `wait` reads back,
//! so a chatty program never blocks on a full pipe while nobody reads it.
//!
//! Ownership: a spawned program is the actor's child (namespace mode) with
//! a death signal (SIGKILL when the actor dies), in the actor's process
//! group; whatever it forks and leaves behind is re-parented to the
//! supervisor (PID 1 of the scenario's PID namespace, or a subreaper) and
//! killed at teardown with everything else. In host mode the program runs
//! under the tracer ([`crate::trace`]), kept in the actor's [`crate::runner::actor::watch::Watch`]
//! while its tree lives, so every segment it creates is journaled and the
//! scenario's; its exit is read from the tracer's events.

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use nix::unistd::Pid;

use crate::interp::{Ending, Failure, Outcome, Value, OUTPUT_CAP};
use crate::runner::supervisor::procs;

/// A program started by `spawn`, until its `wait`.
#[derive(Debug)]
pub(crate) struct Spawned {
    /// Its pid (the actor's view; in host mode the host's).
    pub pid: i32,
    /// The line of the `spawn` step.
    pub line: usize,
    /// Memory files holding its stdout and stderr.
    pub out: [OwnedFd; 2],
    /// Traced (host mode): its exit comes from the tracer's events.
    pub traced: bool,
}

/// A fresh memory file (close-on-exec) for one output stream.
pub(crate) fn memfd(name: &str) -> Result<OwnedFd, String> {
    let cname = std::ffi::CString::new(name).map_err(|_| format!("memfd name {name:?}"))?;
    // SAFETY: a valid C string and flags; returns a new fd or -1.
    let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Starts `args` (substituted) in `dir`, as a child of this actor that dies
/// with it. `Err` is the step's failure (ENOENT: no such program).
pub(crate) fn spawn(args: &[String], dir: &Path, line: usize) -> Result<Spawned, Failure> {
    use std::process::{Command, Stdio};
    let out = [memfd("spawn-stdout"), memfd("spawn-stderr")];
    let [Ok(o), Ok(e)] = out else {
        let why = out.into_iter().find_map(Result::err).unwrap_or_default();
        return Err(Failure::Refused { message: why });
    };
    let dup = |f: &OwnedFd| f.try_clone().map_err(|e| Failure::Refused { message: format!("dup: {e}") });
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]).current_dir(dir).stdin(Stdio::null()).stdout(dup(&o)?).stderr(dup(&e)?);
    crate::runner::actor::program::die_with_actor(&mut cmd);
    match cmd.spawn() {
        // The std handle is dropped (that neither kills nor waits): `wait`
        // reaps the pid itself.
        Ok(child) => Ok(Spawned { pid: child.id() as i32, line, out: [o, e], traced: false }),
        Err(err) => Err(Failure::Errno {
            errno: err.raw_os_error().unwrap_or(libc::EIO),
            message: crate::runner::actor::program::not_started(&args[0], dir, ""),
        }),
    }
}

/// Waits (until `deadline`) for an untraced spawned program and reaps it.
pub(crate) fn wait_plain(sp: &Spawned, deadline: Instant) -> Ending {
    procs::wait_exit(Pid::from_raw(sp.pid), deadline.saturating_duration_since(Instant::now()))
}

/// The answer of a `wait`: how the program ended and what it wrote.
pub(crate) fn answer(sp: &Spawned, ending: Ending, name: &str) -> Outcome {
    let call = format!("waitpid({}) [{name}]", sp.pid);
    let (status, signal) = match ending {
        Ending::Exited(c) => (Some(c), None),
        Ending::Signaled(s) => (None, Some(s)),
        Ending::Unknown => {
            return Outcome {
                call,
                result: Err(Failure::Refused {
                    message: format!(
                        "program {name} (pid {}) did not end within the step's timeout; it is killed at teardown",
                        sp.pid
                    ),
                }),
            }
        }
    };
    let [(stdout, cut_o), (stderr, cut_e)] = [read_all(&sp.out[0]), read_all(&sp.out[1])];
    Outcome {
        call,
        result: Ok(Value::Output { pid: sp.pid, status, signal, stdout, stderr, truncated: (cut_o, cut_e) }),
    }
}

/// A memory file's content (at most [`OUTPUT_CAP`] bytes, lossy UTF-8) and
/// how many bytes beyond the cap it holds.
fn read_all(f: &OwnedFd) -> (String, u64) {
    let total = nix::sys::stat::fstat(f.as_raw_fd()).map_or(0, |st| st.st_size.max(0) as u64);
    let keep = total.min(OUTPUT_CAP as u64) as usize;
    let mut buf = vec![0u8; keep];
    let mut at = 0;
    while at < keep {
        // The cap fits any target's off_t.
        let Ok(offset) = libc::off_t::try_from(at) else { break };
        match nix::sys::uio::pread(f, &mut buf[at..], offset) {
            Ok(0) | Err(_) => break,
            Ok(n) => at += n,
        }
    }
    buf.truncate(at);
    (String::from_utf8_lossy(&buf).into_owned(), total - at as u64)
}

/// Host mode: starts `args` under the tracer, reads its events until the
/// program runs (or could not start), and hands the tracer to `watch`,
/// which journals what the tree creates and keeps its exit for `wait`;
/// `ledger` guards the tree ([`crate::trace::Program::guard`]).
pub(crate) fn spawn_traced(
    args: &[String],
    dir: &Path,
    line: usize,
    deadline: Instant,
    ledger: crate::trace::Ledger,
    watch: &mut crate::runner::actor::watch::Watch,
) -> Result<Spawned, Failure> {
    use crate::trace::{self, Event, Program, Stdio, TraceError};
    let refused = |message: String| Failure::Refused { message };
    // The tracer reports a failed `execvp` only when the program ends,
    // and `spawn` answers as soon as it runs: find the program first, as
    // `execvp` would (not found or not executable: the step's errno).
    if let Err(errno) = find_program(&args[0], dir) {
        let message = crate::runner::actor::program::not_started(&args[0], dir, "");
        return Err(Failure::Errno { errno: errno as i32, message });
    }
    let o = memfd("spawn-stdout").map_err(refused)?;
    let e = memfd("spawn-stderr").map_err(refused)?;
    let dup = |f: &OwnedFd| f.try_clone().map_err(|e| Failure::Refused { message: format!("dup: {e}") });
    let program = Program::new(args, dir)
        .map_err(|e| refused(format!("spawn `{}`: {e}", args[0])))?
        .stdio(1, Stdio::Fd(dup(&o)?))
        .stdio(2, Stdio::Fd(dup(&e)?))
        .guard(ledger);
    let mut tracer = trace::spawn(program).map_err(|e| refused(format!("spawn `{}`: {e}", args[0])))?;
    // The first event is the program's start (or why it did not start).
    let left = deadline.saturating_duration_since(Instant::now());
    let first = tracer.recv(left);
    if let Ok(Event::Started { pid }) = first {
        watch.keep(tracer, line);
        return Ok(Spawned { pid, line, out: [o, e], traced: true });
    }
    // Anything else: nothing of the program runs on.
    let _ = tracer.kill_all();
    Err(match first {
        Ok(Event::NotStarted { step, errno }) => Failure::Errno {
            errno,
            message: crate::runner::actor::program::not_started(&args[0], dir, step.describe()),
        },
        Ok(Event::Failed(m)) => {
            watch.blind(format!("line {line}: the tracer failed: {m}"));
            refused(format!("the tracer failed: {m}"))
        }
        // Nothing is created before the program starts; fail closed.
        Ok(other) => refused(format!("the tracer reported {other:?} before the program started")),
        Err(TraceError::Timeout(_)) => refused(format!("`{}` did not start within the step's timeout", args[0])),
        Err(err) => refused(format!("spawn `{}`: {err}", args[0])),
    })
}

/// Finds `prog` as `execvp` would: a name with a `/` as a path (relative
/// to `dir`), else the first executable regular file of that name in
/// `PATH`. `ENOENT` if there is none, `EACCES` if one is not executable.
fn find_program(prog: &str, dir: &Path) -> Result<(), nix::errno::Errno> {
    use nix::errno::Errno;
    use nix::unistd::{access, AccessFlags};
    let check = |p: &Path| -> Result<(), Errno> {
        let meta = std::fs::metadata(p).map_err(|_| Errno::ENOENT)?;
        if !meta.is_file() {
            return Err(Errno::EACCES);
        }
        access(p, AccessFlags::X_OK)
    };
    if prog.contains('/') {
        return check(&dir.join(prog));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut seen = Errno::ENOENT;
    for d in std::env::split_paths(&path) {
        match check(&dir.join(d).join(prog)) {
            Ok(()) => return Ok(()),
            Err(Errno::ENOENT) => {}
            Err(e) => seen = e,
        }
    }
    Err(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::effects::{effects, Effect};
    use crate::interp::Global;

    #[test]
    fn a_spawn_binds_its_program_and_books_its_pid() {
        let sc = crate::scenario::parse("t.scn", "process A\nA: spawn D = \"true\"\nA: spawn \"x\" => ENOENT\n")
            .expect("parses");
        assert_eq!(
            effects(&sc.steps[0].op, &Value::Started(9)),
            vec![Effect::Bind("D".into(), Global::Process(9)), Effect::Spawned(9)]
        );
        assert_eq!(effects(&sc.steps[1].op, &Value::Started(9)), vec![Effect::Spawned(9)]);
        assert!(effects(&sc.steps[0].op, &Value::Unit).is_empty());
    }

    #[test]
    fn output_is_read_back_whole_and_capped() {
        let f = memfd("t").expect("memfd");
        nix::unistd::write(&f, b"hello").expect("write");
        assert_eq!(read_all(&f), ("hello".to_string(), 0));
        let big = vec![b'x'; OUTPUT_CAP + 10];
        nix::unistd::write(&f, &big).expect("write");
        let (text, cut) = read_all(&f);
        assert_eq!((text.len(), cut), (OUTPUT_CAP, 15));
    }

    #[test]
    fn programs_are_found_as_execvp_would() {
        let dir = Path::new("/");
        assert_eq!(find_program("sh", dir), Ok(()));
        assert_eq!(find_program("/bin/sh", dir), Ok(()));
        assert_eq!(find_program("./no-such-program-here", dir), Err(nix::errno::Errno::ENOENT));
        // A directory is not a program.
        assert_eq!(find_program("/tmp", dir), Err(nix::errno::Errno::EACCES));
    }
}
