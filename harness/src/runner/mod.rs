//! The scenario runner.
//!
//! Process tree of a run:
//!
//! ```text
//! coordinator (single-threaded: `shm-harness run`)
//!  └─ supervisor, one per scenario (own IPC namespace; subreaper; dies with the coordinator)
//!      ├─ actor A (process group G; dies with the supervisor)
//!      ├─ actor B
//!      │   └─ actor C (forked by B's `fork` step; inherits B's attachments)
//!      └─ ...external programs run by actors, in group G
//! ```
//!
//! The coordinator and supervisors share nothing after `fork`: a supervisor
//! reports back over a pipe, and talks to its actors over pipes too
//! ([`wire`]). Forking is only ever done by single-threaded processes (the
//! coordinator checks that it is one), so a child may allocate and lock
//! without the risk of a lock held by a thread that did not survive the fork.
//! A multi-threaded program such as `cargo test` runs scenarios through the
//! `shm-harness` binary instead.

mod actor;
mod check;
mod janitor;
pub mod report;
mod supervisor;
pub mod wire;

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use actor::exit_now;
pub use actor::sysv_mappings;
pub use report::{Isolation, ScenarioReport, Status, Summary};

use crate::scenario::Scenario;
use supervisor::{supervise, ScenarioOptions};
use wire::{recv, send, WireError};

/// Which isolation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationChoice {
    /// A private IPC namespace per scenario where the kernel allows it, else host.
    #[default]
    Auto,
    /// Private IPC namespaces, or fail.
    Namespace,
    /// The host's IPC namespace, touching only what the scenario creates.
    Host,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Scenarios at once (host isolation always runs one at a time).
    pub jobs: usize,
    /// Isolation.
    pub isolation: IsolationChoice,
    /// Per-step timeout (a scenario's `timeout` line overrides it).
    pub timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            isolation: IsolationChoice::Auto,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The caller has more than one thread.
    #[error("the scenario runner forks, so it must be called from a single-threaded process (this one has {0} threads); run the `shm-harness` binary instead")]
    MultiThreaded(usize),
    /// Namespace isolation was demanded and refused.
    #[error("--isolation namespace: {0}")]
    NoNamespace(String),
    /// A system call of the coordinator failed.
    #[error("{0}")]
    Sys(String),
}

/// The number of threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(1)
}

/// Whether a child of this process can enter a private IPC namespace; the
/// error says why not.
pub fn probe_namespace() -> Result<(), String> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
    // SAFETY: the caller is single-threaded (checked by `run`); the child
    // only unshares, writes a message and exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(r);
            let msg = match crate::namespace::enter_private_ipc_namespace() {
                Ok(()) => String::new(),
                Err(e) => e.to_string(),
            };
            let _ = send(w.as_fd(), &msg);
            exit_now(0)
        }
        ForkResult::Parent { child } => {
            drop(w);
            let msg: Result<String, _> = recv(r.as_fd(), Some(Duration::from_secs(10)));
            let _ = waitpid(child, None);
            match msg {
                Ok(m) if m.is_empty() => Ok(()),
                Ok(m) => Err(m),
                Err(e) => Err(format!("namespace probe failed: {e:?}")),
            }
        }
    }
}

/// The isolation `choice` resolves to on this machine, with the reason when
/// auto falls back to host.
///
/// # Errors
/// [`RunError::NoNamespace`] when namespaces are demanded and refused.
pub fn resolve_isolation(choice: IsolationChoice) -> Result<(Isolation, Option<String>), RunError> {
    match choice {
        IsolationChoice::Host => Ok((Isolation::Host, None)),
        IsolationChoice::Namespace => {
            probe_namespace().map(|()| (Isolation::Namespace, None)).map_err(RunError::NoNamespace)
        }
        IsolationChoice::Auto => Ok(match probe_namespace() {
            Ok(()) => (Isolation::Namespace, None),
            Err(why) => (Isolation::Host, Some(why)),
        }),
    }
}

struct Running {
    pid: Pid,
    report: OwnedFd,
    index: usize,
    deadline: Instant,
}

/// Runs scenarios, calling `progress` as each finishes, and returns their
/// reports in input order.
///
/// # Errors
/// [`RunError`] if the run cannot start (never for a failing scenario).
pub fn run(
    scenarios: &[Scenario],
    opts: &RunOptions,
    isolation: Isolation,
    mut progress: impl FnMut(&ScenarioReport),
) -> Result<Vec<ScenarioReport>, RunError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(RunError::MultiThreaded(threads));
    }
    let sopts = ScenarioOptions { isolation, timeout: opts.timeout, root: nix::unistd::Uid::effective().is_root() };
    let jobs = if isolation == Isolation::Host { 1 } else { opts.jobs.max(1) };
    if jobs == 1 {
        return Ok(run_inline(scenarios, &sopts, progress));
    }
    let mut reports: Vec<Option<ScenarioReport>> = vec![None; scenarios.len()];
    let mut running: Vec<Running> = Vec::new();
    let mut next = 0;
    while next < scenarios.len() || !running.is_empty() {
        while running.len() < jobs && next < scenarios.len() {
            running.push(spawn_supervisor(&scenarios[next], next, &sopts)?);
            next += 1;
        }
        // Wait for any supervisor to report (or its deadline).
        let soonest = running.iter().map(|r| r.deadline).min().expect("non-empty");
        let wait = soonest.saturating_duration_since(Instant::now());
        let ms = u16::try_from(wait.as_millis().min(10_000)).unwrap_or(10_000);
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> =
                running.iter().map(|r| PollFd::new(r.report.as_fd(), PollFlags::POLLIN)).collect();
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(RunError::Sys(format!("poll: {e}"))),
            }
            fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect()
        };
        let now = Instant::now();
        if let Some(i) = (0..running.len()).find(|&i| ready[i] || now >= running[i].deadline) {
            let r = running.remove(i);
            let report = finish_supervisor(&scenarios[r.index], &r, !ready[i], isolation);
            progress(&report);
            reports[r.index] = Some(report);
        }
    }
    Ok(reports.into_iter().map(|r| r.expect("every scenario reported")).collect())
}

/// One scenario at a time, supervised by this process itself: one process
/// fewer to fork per scenario. This process enters each scenario's IPC
/// namespace in turn and returns to its own at the end (where the kernel
/// lets it: as root).
fn run_inline(
    scenarios: &[Scenario],
    sopts: &ScenarioOptions,
    mut progress: impl FnMut(&ScenarioReport),
) -> Vec<ScenarioReport> {
    let home = std::fs::File::open("/proc/self/ns/ipc").ok();
    let mut reports = Vec::with_capacity(scenarios.len());
    for sc in scenarios {
        let report =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| supervise(sc, sopts))).unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed_report(sc, sopts.isolation, format!("the supervisor panicked ({what}); this is a harness bug"))
            });
        progress(&report);
        reports.push(report);
    }
    if let (Some(home), Isolation::Namespace) = (home, sopts.isolation) {
        let _ = nix::sched::setns(home, nix::sched::CloneFlags::CLONE_NEWIPC);
    }
    reports
}

fn failed_report(sc: &Scenario, isolation: Isolation, reason: String) -> ScenarioReport {
    ScenarioReport {
        file: sc.file.clone(),
        name: std::path::Path::new(&sc.file).file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
        status: Status::Fail,
        isolation,
        reason: Some(reason),
        failure: None,
        leaks: vec![],
        processes: sc.processes.iter().map(|p| p.name.clone()).collect(),
        transcript: vec![],
        duration_us: 0,
    }
}

fn spawn_supervisor(sc: &Scenario, index: usize, sopts: &ScenarioOptions) -> Result<Running, RunError> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| RunError::Sys(format!("pipe2: {e}")))?;
    let coordinator = Pid::this();
    // SAFETY: `run` checked that this process is single-threaded, so the
    // supervisor may allocate and lock freely.
    match unsafe { fork() }.map_err(|e| RunError::Sys(format!("fork: {e}")))? {
        ForkResult::Child => {
            // Die with the coordinator, by SIGTERM: the supervisor's janitor
            // then kills the scenario's processes and removes its segments.
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) };
            if nix::unistd::getppid() != coordinator {
                exit_now(70);
            }
            drop(r);
            let report = supervise(sc, sopts);
            let code = i32::from(send(w.as_fd(), &report).is_err());
            exit_now(code)
        }
        ForkResult::Parent { child } => {
            drop(w);
            let budget = sopts.timeout.saturating_mul(sc.steps.len() as u32 + 5) + Duration::from_secs(5);
            Ok(Running { pid: child, report: r, index, deadline: Instant::now() + budget })
        }
    }
}

fn finish_supervisor(sc: &Scenario, r: &Running, overdue: bool, isolation: Isolation) -> ScenarioReport {
    let failed = |reason: String| failed_report(sc, isolation, reason);
    if overdue {
        let _ = kill(r.pid, Signal::SIGKILL);
        let _ = waitpid(r.pid, None);
        return failed(
            "the scenario's supervisor did not finish in time and was killed (its processes die with it)".into(),
        );
    }
    let got: Result<ScenarioReport, WireError> = recv(r.report.as_fd(), Some(Duration::from_secs(30)));
    let status = waitpid(r.pid, None);
    match got {
        Ok(report) => report,
        Err(e) => {
            let how = match status {
                Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
                Ok(WaitStatus::Exited(_, c)) => format!("exited with status {c}"),
                _ => "ended".into(),
            };
            failed(format!("the scenario's supervisor {how} without a report ({e:?}); this is a harness bug"))
        }
    }
}
