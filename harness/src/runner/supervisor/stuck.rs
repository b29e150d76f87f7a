//! What holds up a process that does not answer: the programs it runs or
//! waits for (their command, pid and state), named in the timeout instead
//! of the actor's own wait; and, at teardown, ending those programs so the
//! actor can answer at once instead of after a grace period.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::runner::supervisor::{procs, Supervisor};

/// At most this many programs are named in a timeout.
const SHOWN: usize = 4;

/// A process under an actor, as `/proc` shows it.
struct Program {
    /// Its number in the `/proc` mount.
    proc_pid: i32,
    /// Its pid in its own PID namespace (the one the scenario sees).
    pid: i32,
    /// Its command line (or `[comm]` when it has none).
    command: String,
    /// The state letter of `/proc/PID/stat`.
    state: char,
    /// The kernel function it sleeps in, if any.
    wchan: String,
}

impl Program {
    /// `"sleep 20" (pid 7, sleeping (S) in hrtimer_nanosleep)`.
    fn describe(&self) -> String {
        let wchan = if self.wchan.is_empty() { String::new() } else { format!(" in {}", self.wchan) };
        format!("\"{}\" (pid {}, {} ({}){wchan})", self.command, self.pid, state_word(self.state), self.state)
    }
}

/// What a `/proc` state letter means.
pub(super) fn state_word(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "in uninterruptible sleep",
        'T' | 't' => "stopped",
        'Z' => "a zombie",
        _ => "in an unknown state",
    }
}

impl Supervisor<'_> {
    /// The programs actor `name` runs or waits for, as a timeout names them
    /// (`None`: it has none living, so it is the actor itself that is stuck).
    pub(super) fn stuck_programs(&self, name: &str) -> Option<String> {
        let programs = programs_under(self.proc_pid(name)?, &self.actor_proc_pids());
        if programs.is_empty() {
            return None;
        }
        let mut shown: Vec<String> = programs.iter().take(SHOWN).map(Program::describe).collect();
        if programs.len() > SHOWN {
            shown.push(format!("and {} more", programs.len() - SHOWN));
        }
        let what = if programs.len() == 1 { "its program" } else { "its programs" };
        Some(format!("{what} {}", shown.join(", ")))
    }

    /// Kills the programs under actor `name`, which did not answer its
    /// step in time: its `run` or `wait` then ends, and it answers the
    /// teardown at once. (A program's tracer is left to see its tracee die
    /// and report what it made.)
    pub(super) fn end_stuck_programs(&self, name: &str) {
        let actors = self.actor_proc_pids();
        for p in self.proc_pid(name).map(|root| programs_under(root, &actors)).unwrap_or_default() {
            let _ = kill(Pid::from_raw(p.proc_pid), Signal::SIGKILL);
        }
    }

    /// The `/proc` numbers of the scenario's living processes (the actors):
    /// a process forked by a step is no program of its parent.
    fn actor_proc_pids(&self) -> Vec<i32> {
        self.procs
            .iter()
            .filter(|(_, p)| p.pid.is_some() && p.ending.is_none())
            .filter_map(|(n, _)| self.proc_pid(n))
            .collect()
    }
}

/// The living processes under `root` (a `/proc` number), tracers and
/// zombies left out, and nothing at or under an actor of `actors`; by pid.
fn programs_under(root: i32, actors: &[i32]) -> Vec<Program> {
    let mut found = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        let children = children_of(pid).into_iter().filter(|c| !actors.contains(c));
        for child in children {
            found.push(child);
            todo.push(child);
        }
    }
    found.sort_unstable();
    found.into_iter().filter_map(program).collect()
}

/// The children of `pid` (every thread's), as `/proc` numbers them.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| text.split_whitespace().filter_map(|c| c.parse().ok()).collect::<Vec<i32>>())
        .collect()
}

/// What `/proc` shows of `proc_pid`, if it lives and is no tracer.
fn program(proc_pid: i32) -> Option<Program> {
    let stat = std::fs::read_to_string(format!("/proc/{proc_pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].split_whitespace().next()?.chars().next()?;
    if comm == "shm-trace" || matches!(state, 'Z' | 'X') {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{proc_pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> =
        cmdline.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    let mut command = if words.is_empty() { format!("[{comm}]") } else { words.join(" ") };
    if command.chars().count() > 80 {
        command = command.chars().take(80).collect::<String>() + "...";
    }
    let pid = procs::nspids(&proc_pid.to_string()).ok().and_then(|p| p.last().copied()).unwrap_or(proc_pid);
    let wchan = std::fs::read_to_string(format!("/proc/{proc_pid}/wchan")).unwrap_or_default();
    let wchan = if wchan == "0" { String::new() } else { wchan };
    Some(Program { proc_pid, pid, command, state, wchan })
}
