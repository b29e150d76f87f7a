//! `exec`: an actor re-executes itself (`/proc/self/exe`, the
//! `shm-harness` binary) and goes on serving its scenario from the new
//! image, with the same pid and the same pipes.
//!
//! The kernel detaches every SysV attachment at `execve` (nattch drops, the
//! segment's `dtime` and `lpid` change), which is what the step is for.
//! Before the call the actor writes what it is (the scenario as canonical
//! text with its line numbers, its name, its pipes, host-mode keys, the
//! journal) into a memory file, clears close-on-exec on the pipes, and names
//! the memory file in [`EXEC_ACTOR_ENV`]. The new image's `main` calls
//! [`resume_exec_actor`] first: it reads the file back, restores
//! close-on-exec, answers the `exec` step and serves on.
//!
//! A death signal set by `prctl(PR_SET_PDEATHSIG)` survives `execve` (of a
//! binary that is not set-user-ID), so the re-executed actor still dies
//! with its supervisor. Only the `shm-harness` binary resumes: a library
//! user whose `main` does not call [`resume_exec_actor`] sees the step time
//! out.

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

use crate::interp::{Failure, Outcome, Value};
use crate::runner::actor::{actor_comm, Actor, ActorFds};
use crate::runner::host::KeyMap;
use crate::runner::wire::{send, FromActor};

/// The environment variable that names the memory file holding a
/// re-executed actor's state (a decimal fd).
pub const EXEC_ACTOR_ENV: &str = "SHM_HARNESS_EXEC_ACTOR";

/// What an actor is, across its own `execve`.
#[derive(Debug, Serialize, Deserialize)]
struct ExecState {
    /// The scenario, printed canonically (it parses back to the same steps).
    text: String,
    /// Its file name.
    file: String,
    /// Each step's line in the file.
    lines: Vec<usize>,
    /// Each step's source text.
    texts: Vec<String>,
    name: String,
    dir: PathBuf,
    fds: Vec<(String, RawFd, RawFd)>,
    peers: Vec<(String, RawFd)>,
    done: RawFd,
    life: RawFd,
    keys: KeyMap,
    journal: Option<RawFd>,
    timeout_ms: u64,
    /// The `exec` step's index.
    index: usize,
}

fn set_cloexec(fd: RawFd, on: bool) {
    // SAFETY: fcntl on an fd this actor holds, with an integer argument.
    unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) };
}

impl ExecState {
    fn all_fds(&self) -> Vec<RawFd> {
        let mut out = vec![self.done, self.life];
        out.extend(self.journal);
        out.extend(self.fds.iter().flat_map(|(_, c, a)| [*c, *a]));
        out.extend(self.peers.iter().map(|(_, p)| *p));
        out
    }
}

impl Actor<'_> {
    /// `exec` step: re-executes this actor. Returns only if it could not
    /// (the step's failure); the new image answers the step itself.
    pub(crate) fn exec_self(&mut self, index: usize) -> Outcome {
        let call = "execve(\"/proc/self/exe\")".to_string();
        let refused = |message: String| Outcome { call: call.clone(), result: Err(Failure::Refused { message }) };
        if !self.watch.is_empty() {
            // Their tracers are this image's: lost at execve, and with them
            // what their trees create. Fail closed.
            return refused("a traced program's process tree still lives; it would be lost across exec".into());
        }
        let state = ExecState {
            text: self.scenario.to_string(),
            file: self.scenario.file.clone(),
            lines: self.scenario.steps.iter().map(|s| s.line).collect(),
            texts: self.scenario.steps.iter().map(|s| s.text.clone()).collect(),
            name: self.name.clone(),
            dir: self.dir.clone(),
            fds: self.fds.iter().map(|(n, f)| (n.clone(), f.cmd, f.ans)).collect(),
            peers: self.peers.iter().map(|(n, p)| (n.clone(), *p)).collect(),
            done: self.done,
            life: self.life,
            keys: self.keys.clone(),
            journal: self.journal,
            timeout_ms: self.timeout.as_millis() as u64,
            index,
        };
        let json = match serde_json::to_vec(&state) {
            Ok(j) => j,
            Err(e) => return refused(format!("cannot serialize the actor's state: {e}")),
        };
        let file = match crate::runner::actor::spawned::memfd("shm-actor-state") {
            Ok(f) => f,
            Err(e) => return refused(e),
        };
        if let Err(e) = nix::unistd::write(&file, &json) {
            return refused(format!("writing the actor's state: {e}"));
        }
        let fds = state.all_fds();
        for &fd in &fds {
            set_cloexec(fd, false);
        }
        set_cloexec(file.as_raw_fd(), false);
        std::env::set_var(EXEC_ACTOR_ENV, file.as_raw_fd().to_string());
        let exe = c"/proc/self/exe";
        let argv = [c"shm-harness".as_ptr(), std::ptr::null()];
        // SAFETY: execv with NUL-terminated strings and a NULL-terminated
        // argv; on success this image is gone, on failure it returns -1.
        unsafe { libc::execv(exe.as_ptr(), argv.as_ptr()) };
        let errno = nix::errno::Errno::last();
        std::env::remove_var(EXEC_ACTOR_ENV);
        for &fd in &fds {
            set_cloexec(fd, true);
        }
        Outcome { call, result: Err(Failure::Errno { errno: errno as i32, message: format!("execve: {errno}") }) }
    }
}

/// Called first by `shm-harness`'s `main`: if this process is an actor
/// that has just re-executed itself ([`EXEC_ACTOR_ENV`] is set), it answers
/// its `exec` step and serves its scenario to the end (never returning);
/// otherwise it returns at once.
pub fn resume_exec_actor() {
    let Some(raw) = std::env::var_os(EXEC_ACTOR_ENV) else { return };
    std::env::remove_var(EXEC_ACTOR_ENV);
    let fd: RawFd = match raw.to_str().and_then(|s| s.parse().ok()) {
        Some(fd) => fd,
        None => {
            eprintln!("shm-harness: {EXEC_ACTOR_ENV}={raw:?} is not an fd");
            std::process::exit(70);
        }
    };
    // SAFETY: the fd was left open for us by the image before `execve`.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let state: ExecState = match read_state(&file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shm-harness: resuming an actor after exec: {e}");
            std::process::exit(70);
        }
    };
    drop(file);
    for fd in state.all_fds() {
        set_cloexec(fd, true);
    }
    crate::runner::fork::mark_runner_process();
    crate::runner::fork::set_name(&actor_comm(&state.name));
    let own_ans = state.fds.iter().find(|(n, _, _)| *n == state.name).map(|(_, _, a)| *a);
    let fail = |msg: String| -> ! {
        if let Some(ans) = own_ans {
            // SAFETY: the answer pipe's write end stays open in this process.
            let _ = send(unsafe { std::os::fd::BorrowedFd::borrow_raw(ans) }, &FromActor::Panic(msg));
        }
        std::process::exit(70)
    };
    let mut sc = match crate::scenario::parse(&state.file, &state.text) {
        Ok(sc) => sc,
        Err(e) => fail(format!("process {} after exec: its scenario does not parse back: {e}", state.name)),
    };
    if sc.steps.len() != state.lines.len() {
        fail(format!("process {} after exec: the scenario changed shape", state.name));
    }
    for ((step, line), text) in sc.steps.iter_mut().zip(&state.lines).zip(&state.texts) {
        step.line = *line;
        step.text.clone_from(text);
    }
    let scenario: &'static Scenario = Box::leak(Box::new(sc));
    let actor = Actor {
        scenario,
        name: state.name.clone(),
        dir: state.dir.clone(),
        fds: state.fds.iter().map(|(n, c, a)| (n.clone(), ActorFds { cmd: *c, ans: *a })).collect(),
        peers: state.peers.iter().cloned().collect::<HashMap<_, _>>(),
        done: state.done,
        life: state.life,
        keys: state.keys.clone(),
        journal: state.journal,
        attachments: HashMap::new(),
        repeated: Vec::new(), // the kernel detached them at exec
        timeout: Duration::from_millis(state.timeout_ms),
        watch: crate::runner::actor::watch::Watch::default(),
        spawned: HashMap::new(),
    };
    let answer = Outcome { call: "execve(\"/proc/self/exe\")".into(), result: Ok(Value::Unit) };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || actor.resume(answer)));
    if let Err(panic) = result {
        fail(format!(
            "process {} panicked after exec: {}; this is a harness bug",
            state.name,
            crate::runner::fork::panic_message(&*panic)
        ));
    }
    std::process::exit(0)
}

fn read_state(file: &OwnedFd) -> Result<ExecState, String> {
    let size = nix::sys::stat::fstat(file.as_raw_fd()).map_err(|e| format!("fstat: {e}"))?.st_size.max(0) as usize;
    let mut buf = vec![0u8; size];
    let mut at = 0;
    while at < size {
        let offset = libc::off_t::try_from(at).map_err(|_| format!("its state is too large ({size} bytes)"))?;
        match nix::sys::uio::pread(file, &mut buf[at..], offset) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) => return Err(format!("pread: {e}")),
        }
    }
    serde_json::from_slice(&buf[..at]).map_err(|e| format!("its state: {e}"))
}

impl Actor<'_> {
    /// After `exec`: answers the step, ends its chain, and serves on.
    fn resume(self, answer: Outcome) -> ! {
        let ans = self.fds[&self.name].ans;
        // SAFETY: the answer pipe's write end stays open in this process.
        if send(unsafe { std::os::fd::BorrowedFd::borrow_raw(ans) }, &FromActor::Done(answer)).is_err() {
            crate::runner::fork::exit_now(0);
        }
        self.end_chain();
        self.serve()
    }
}
