//! The scenario runner: the process driver between a checked scenario and
//! its report.
//!
//! # Architecture
//!
//! Data flows one way, top to bottom:
//!
//! ```text
//!  scenario text (.scn)
//!       │  scenario::parse (every per-step rule in scenario/rules.rs)
//!       ▼
//!  checked AST (scenario::ast)
//!       │  runner::run (this file): one supervisor process per scenario
//!       ▼
//!  supervisor: schedule.rs decides what runs next ◀────────────┐
//!       │  commands over pipes (wire): chains of steps        │ events: answered, ended,
//!       ▼                                                     │ timed out, traced
//!  actors ── system calls ──▶ kernel ──▶ answers ─────────────┘
//!       │  interp::judge: each answer against its expectation
//!       ▼  interp::effects: what it bound and made, in the books
//!  verdict + leak oracle (supervisor/teardown.rs, leaks.rs)
//!       │
//!       ▼
//!  report (report::): summary, text, JSON, JUnit
//! ```
//!
//! | module | owns |
//! | --- | --- |
//! | `runner` (this file) | the coordinator: one supervisor per scenario, at most `jobs` at once, reports in input order |
//! | [`fork`] | the one guarded `fork`/`clone` every runner process comes from |
//! | `interrupt` | SIGINT, SIGTERM and SIGHUP read as news through a `signalfd`, and the coordinator's death of one |
//! | [`wire`] | the messages between supervisor and actors, and their framing |
//! | [`journal`] | host mode's durable record of what each run created, and the sweep |
//! | `host` | host isolation's policy: key translation, what host mode cannot judge, identity checks |
//! | `supervisor/mod.rs` | the supervisor process: skip, start, the driver of the schedule, judging, the verdict |
//! | `supervisor/event.rs` | the typed events the driver sees and the commands the scheduler gives |
//! | `supervisor/schedule.rs` | the pure scheduler: chains, `&` groups, local and `eventually` steps, `finally` (one `handle_event`) |
//! | `supervisor/start.rs`, `lives.rs`, `waiting.rs` | forking the actors; how processes are and ended; where the supervisor sleeps |
//! | `supervisor/local.rs`, `finally.rs` | steps the supervisor answers, host-mode guards; `finally` steps not run |
//! | `supervisor/teardown.rs`, `leaks.rs` | ending every process, the leak oracle, removal by identity |
//! | `supervisor/describe.rs`, `needs.rs`, `procs.rs`, `hugepages.rs` | transcript text; `needs` lines; reaping and killing (looking before reaping); huge page pools |
//! | `actor/*` | the actor process: performs steps by family (segment, memory, mapping, control, process), runs and traces programs |
//! | [`crate::scenario`] | text ⇄ AST: lexer, parser, printer, and every per-step rule (`rules.rs`) |
//! | [`crate::interp`] | pure rules, no system call: values, effects and the books, judging answers and output |
//! | [`crate::report`] | summary, text, JSON and JUnit reports |
//! | [`crate::sysv`] | the only home of `libc::shm*` |
//! | [`crate::trace`] | ptrace + seccomp tracer for programs in host isolation |
//!
//! # Processes
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
pub mod fork;
mod host;
mod interrupt;
pub mod journal;
mod supervisor;
pub mod wire;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, Pid};

pub use crate::report::{Isolation, ScenarioReport, Status, Summary};
pub use actor::reexec::{resume_exec_actor, EXEC_ACTOR_ENV};
pub use fork::thread_count;
pub use host::HOST_KEY_BASE;

use crate::scenario::Scenario;
use fork::{clone_guarded, Child, Namespaces};
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
    #[error("{call}: {errno}")]
    Sys {
        /// The call (`pipe2`, `poll`).
        call: &'static str,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// A supervisor could not be forked (or the thread count is unknown).
    #[error(transparent)]
    Fork(#[from] fork::ForkError),
    /// Host isolation: the journal or its state directory is unusable.
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
}

/// The namespaces a scenario's supervisor is cloned into.
fn namespaces_for(isolation: Isolation, root: bool) -> Namespaces {
    match isolation {
        // A PID namespace of the scenario's own (and, unprivileged, a user
        // namespace to be allowed it); the supervisor then enters a private
        // IPC namespace itself (`namespace::enter_private_ipc_namespace`,
        // which also remembers it for the sysctl guard).
        Isolation::Namespace => Namespaces { pid: true, ipc: false, user: !root },
        // The host's IPC namespace; a PID namespace where allowed (root).
        Isolation::Host => Namespaces { pid: root, ipc: false, user: false },
    }
}

/// Whether a child of this process can be cloned into the namespaces a
/// scenario needs (a PID and an IPC namespace); the error says why not.
pub fn probe_namespace() -> Result<(), String> {
    let root = nix::unistd::Uid::effective().is_root();
    let ns = namespaces_for(Isolation::Namespace, root);
    let child = clone_guarded(&Child { name: "shm-probe", ..Child::default() }, ns, || {
        i32::from(crate::namespace::enter_private_ipc_namespace().is_err()) * 3
    })
    .map_err(|e| format!("cannot create private PID and IPC namespaces: {e}"))?;
    match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, 0)) => Ok(()),
        Ok(WaitStatus::Exited(_, fork::CREDENTIALS_STATUS)) => {
            Err("the new user namespace could not be set up (uid_map/gid_map refused)".into())
        }
        Ok(WaitStatus::Exited(_, 3)) => {
            Err("unshare(CLONE_NEWIPC) refused in the new PID namespace (the kernel may lack CONFIG_IPC_NS)".into())
        }
        other => Err(format!("namespace probe ended as {other:?}")),
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
    /// Write end of the gate while the supervisor is prepared, not yet released.
    gate: Option<OwnedFd>,
    /// How long it may take once released.
    budget: Duration,
}

impl Running {
    /// Lets a prepared supervisor start its steps; its time starts now.
    fn release(&mut self) {
        self.gate = None;
        self.deadline = Instant::now() + self.budget;
    }
}

/// Runs scenarios, calling `progress` as each finishes, and returns their
/// reports in input order.
///
/// Before anything runs, segments left by dead host-mode runs (their
/// journals in the state directory) are swept, each reported on stderr.
/// Each scenario gets a supervisor process of its own (in namespace mode
/// PID 1 of fresh PID and IPC namespaces), which dies (namespace mode) or
/// tears its scenario down (host mode) when this process dies.
///
/// SIGINT, SIGTERM and SIGHUP (those not ignored or handled already) are
/// blocked and read as news (`runner::interrupt`; no signal handler is
/// installed): on one, no further scenario starts, the supervisors are
/// told (their life pipe hangs up), host-mode ones are given
/// `interrupt::STOP_GRACE` to tear their scenarios down and remove what they made,
/// and the process then dies of the signal it got.
///
/// # Errors
/// [`RunError`] if the run cannot start (never for a failing scenario).
pub fn run(
    scenarios: &[Scenario],
    opts: &RunOptions,
    isolation: Isolation,
    mut progress: impl FnMut(&ScenarioReport),
) -> Result<Vec<ScenarioReport>, RunError> {
    match fork::ensure_single_threaded() {
        Ok(()) => {}
        Err(fork::ForkError::MultiThreaded(n)) => return Err(RunError::MultiThreaded(n)),
        Err(e) => return Err(RunError::Fork(e)),
    }
    let interrupts = interrupt::Interrupts::take().map_err(|errno| RunError::Sys { call: "signalfd", errno })?;
    fork::prepare_heap();
    let root = nix::unistd::Uid::effective().is_root();
    let journal = open_journal(isolation)?;
    // The supervisors' view of this process: its hang-up is our death.
    let (life_r, life_w) = pipe2(OFlag::O_CLOEXEC).map_err(|errno| RunError::Sys { call: "pipe2", errno })?;
    let sopts = ScenarioOptions {
        isolation,
        timeout: opts.timeout,
        root,
        pid_namespace: namespaces_for(isolation, root).pid,
        key_slot: host::run_slot(),
        coordinator: Some(life_r.as_raw_fd()),
        journal: journal.as_ref().map(journal::Journal::fd),
        gate: None,
    };
    let jobs = if isolation == Isolation::Host { 1 } else { opts.jobs.max(1) };
    let mut reports: Vec<Option<ScenarioReport>> = vec![None; scenarios.len()];
    let mut running: Vec<Running> = Vec::new();
    let mut exiting: Vec<Pid> = Vec::new();
    let mut next = 0;
    while next < scenarios.len() || !running.is_empty() {
        // `jobs` supervisors run their steps; one more is prepared (cloned,
        // namespaces made, actors forked) meanwhile, so that its scenario
        // starts the moment a place is free.
        while running.len() < jobs + 1 && next < scenarios.len() {
            running.push(spawn_supervisor(&scenarios[next], next, &sopts)?);
            next += 1;
        }
        release(&mut running, jobs, scenarios);
        let (ready, interrupted) = poll_reports(&running, interrupts.fd())?;
        if let Some(sig) = interrupted.then(|| interrupts.pending()).flatten() {
            // Dropping the report pipes: a supervisor that sends one now
            // gets EPIPE at once instead of blocking on a full pipe.
            let (mut pids, files): (Vec<Pid>, Vec<&str>) =
                running.into_iter().map(|r| (r.pid, scenarios[r.index].file.as_str())).unzip();
            pids.extend(exiting);
            interrupt::stop(sig, &pids, &files, life_w, journal);
        }
        let now = Instant::now();
        if let Some(i) = (0..running.len()).find(|&i| ready[i] || now >= running[i].deadline) {
            let r = running.remove(i);
            let journal_path = journal.as_ref().map(journal::Journal::path);
            let report = finish_supervisor(&scenarios[r.index], &r, !ready[i], isolation, journal_path, &mut exiting);
            progress(&report);
            reports[r.index] = Some(report);
        }
        // Supervisors that reported are exiting (their namespaces take a
        // moment to go): reap them as they finish, while the next ones run.
        exiting.retain(|&pid| {
            matches!(waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive))
        });
    }
    for pid in exiting {
        let _ = waitpid(pid, None);
    }
    drop(life_w);
    if let Some(j) = journal {
        // Every supervisor has ended and removed what its scenario left.
        j.finish();
    }
    // An interrupt after the last poll: everything is settled, and the
    // process ends as the signal says all the same.
    if let Some(sig) = interrupts.pending() {
        interrupt::die_of(sig);
    }
    Ok(reports.into_iter().map(|r| r.expect("every scenario reported")).collect())
}

/// Sweeps what dead host-mode runs left (said on stderr), and in host
/// isolation opens this run's journal.
fn open_journal(isolation: Isolation) -> Result<Option<journal::Journal>, RunError> {
    let state = journal::state_dir();
    // Said on stderr without `eprintln!`, which panics when the reader of
    // stderr has gone (`run --format json 2>&1 | head`): the run goes on.
    let say = |line: &str| {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
    };
    if let Ok(dir) = &state {
        if let Ok(swept) = journal::sweep(dir, false, |line| say(&line)) {
            let kept = swept.unproven - swept.expired;
            if kept > 0 {
                say(&format!(
                    "shm-harness: {kept} journal(s) of dead runs in other IPC namespaces kept in {} (`shm-harness sweep` lists them)",
                    dir.display()
                ));
            }
        }
    }
    if isolation != Isolation::Host {
        // No journal: the directory the sweep needed must not outlive the run.
        if let Ok(dir) = &state {
            journal::release_state_dir(dir);
        }
        return Ok(None);
    }
    let dir = state?;
    Ok(Some(journal::Journal::create(&dir)?))
}

/// Releases prepared supervisors while fewer than `jobs` run their steps.
/// Huge page pools are the machine's: two scenarios that need one never
/// run at once (one would see the other's pages in `meminfo`).
fn release(running: &mut [Running], jobs: usize, scenarios: &[Scenario]) {
    let free = jobs.saturating_sub(running.iter().filter(|r| r.gate.is_none()).count());
    let huge = |r: &Running| scenarios[r.index].needs.hugepages.is_some();
    let mut huge_running = running.iter().any(|r| r.gate.is_none() && huge(r));
    for r in running.iter_mut().filter(|r| r.gate.is_some()).take(free) {
        if huge(r) {
            if huge_running {
                continue;
            }
            huge_running = true;
        }
        r.release();
    }
}

/// Waits for any supervisor to report (or the soonest deadline, 10 s at
/// most) or an interrupt; which ones did, and whether `interrupt` is readable.
fn poll_reports(running: &[Running], interrupt: Option<BorrowedFd<'_>>) -> Result<(Vec<bool>, bool), RunError> {
    let soonest = running.iter().map(|r| r.deadline).min().expect("non-empty");
    let wait = soonest.saturating_duration_since(Instant::now());
    let ms = u16::try_from(wait.as_millis().min(10_000)).unwrap_or(10_000);
    let mut fds: Vec<PollFd> = running.iter().map(|r| PollFd::new(r.report.as_fd(), PollFlags::POLLIN)).collect();
    fds.extend(interrupt.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(errno) => return Err(RunError::Sys { call: "poll", errno }),
    }
    let mut ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
    let interrupted = interrupt.is_some() && ready.pop() == Some(true);
    Ok((ready, interrupted))
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
        iteration: None,
    }
}

fn spawn_supervisor(sc: &Scenario, index: usize, sopts: &ScenarioOptions) -> Result<Running, RunError> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|errno| RunError::Sys { call: "pipe2", errno })?;
    let (gate_r, gate_w) = pipe2(OFlag::O_CLOEXEC).map_err(|errno| RunError::Sys { call: "pipe2", errno })?;
    let mut keep = vec![w.as_raw_fd(), gate_r.as_raw_fd()];
    keep.extend(sopts.coordinator);
    keep.extend(sopts.journal);
    let mut ns = namespaces_for(sopts.isolation, sopts.root);
    if sopts.isolation == Isolation::Host && host::traces_programs(sc) {
        // Traced programs: host pids everywhere (see `host::traces_programs`).
        ns.pid = false;
    }
    let sopts = &ScenarioOptions { pid_namespace: ns.pid, gate: Some(gate_r.as_raw_fd()), ..sopts.clone() };
    // Namespace mode: the supervisor dies with us, and the kernel kills its
    // PID namespace with it. Host mode: it sees our death on the life pipe
    // and tears the scenario down (removing what it made) itself.
    let death_signal = (sopts.isolation == Isolation::Namespace).then_some(libc::SIGKILL);
    // It keeps the interrupts blocked: a terminal's SIGINT to the whole
    // process group cannot end it before its teardown (see `stop`).
    let spec = Child { name: "shm-sup", keep: &keep, death_signal, interrupts_blocked: true, ..Child::default() };
    let child = clone_guarded(&spec, ns, || {
        fork::mark_runner_process();
        let report = supervise(sc, sopts);
        // The report pipe's write end, kept open in this process (`keep`).
        let failed = send(w.as_fd(), &report).is_err();
        // Reported: what is left is the exit (in namespace mode the kernel
        // taking the PID namespace down); `ps` shows it as such.
        fork::set_name("shm-sup-end");
        i32::from(failed)
    })
    .map_err(RunError::Fork)?;
    drop(w);
    drop(gate_r);
    let budget = sopts.timeout.saturating_mul(sc.steps.len() as u32 + 5)
        + Duration::from_secs(5)
        + sc.steps.iter().filter_map(|s| s.eventually).sum::<Duration>()
        + sopts.timeout.saturating_mul(sc.requires.len() as u32);
    // Not yet released: a prepared supervisor has no deadline of its own
    // (its preparation is bounded by the fork helper's; a scenario it skips
    // or cannot start reports at once).
    let unreleased = Instant::now() + Duration::from_secs(24 * 3600);
    Ok(Running { pid: child, report: r, index, deadline: unreleased, gate: Some(gate_w), budget })
}

/// The report of a supervisor that is ready (or overdue: then it is killed).
/// A supervisor that reported is left to exit on its own and pushed onto
/// `exiting`, to be reaped later: the exit of a PID namespace's init takes
/// the kernel a while, and the next scenario need not wait for it.
fn finish_supervisor(
    sc: &Scenario,
    r: &Running,
    overdue: bool,
    isolation: Isolation,
    journal: Option<&std::path::Path>,
    exiting: &mut Vec<Pid>,
) -> ScenarioReport {
    // A supervisor that died without tearing its scenario down (killed, or
    // killed by us when overdue) leaves, in host mode, the segments its
    // scenario made: remove those the journal proves ours, and say so.
    let failed = |reason: String| {
        let mut reason = reason;
        if let Some(path) = journal {
            let mut said = Vec::new();
            match journal::settle_scenario(path, &sc.file, |line| said.push(line)) {
                Ok(_) if said.is_empty() => {}
                Ok(_) => reason.push_str(&format!("; {}", said.join("; "))),
                Err(e) => reason.push_str(&format!("; the segments it made cannot be settled: {e}")),
            }
        }
        failed_report(sc, isolation, reason)
    };
    if overdue {
        let _ = kill(r.pid, Signal::SIGKILL);
        let _ = waitpid(r.pid, None);
        return failed(
            "the scenario's supervisor did not finish in time and was killed (its processes die with it)".into(),
        );
    }
    let got: Result<ScenarioReport, WireError> = recv(r.report.as_fd(), Some(Duration::from_secs(30)));
    if let Ok(report) = got {
        exiting.push(r.pid);
        return report;
    }
    let status = waitpid(r.pid, None);
    match got {
        Ok(report) => report,
        Err(e) => {
            let how = match status {
                // Killed from outside (an operator, the OOM killer): its scenario died with it.
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    format!("was killed by {sig} without a report ({e}); its processes died with it")
                }
                Ok(WaitStatus::Exited(_, c)) => {
                    format!("exited with status {c} without a report ({e}); this is a harness bug")
                }
                _ => format!("ended without a report ({e}); this is a harness bug"),
            };
            failed(format!("the scenario's supervisor {how}"))
        }
    }
}
