//! How a supervisor starts its scenario: this process made ready (signals,
//! namespaces, `/proc`, subreaper), the scenario's directory, files and
//! sysctls, a pair of pipes per process, and the initial actors forked.

#![allow(unsafe_code)] // opts in: fork, prctl and raw file descriptors

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{pipe2, Pid};

use crate::interp::effects::Books;
use crate::report::Isolation;
use crate::runner::actor::{actor_comm, descendants, Actor, ActorFds};
use crate::runner::fork::{fork_guarded, Child};
use crate::runner::host::KeyMap;
use crate::runner::supervisor::{procs, Proc, ScenarioOptions, Supervisor};
use crate::scenario::{Op, Scenario};

/// Up to this many processes, actors hand chains to each other (each holds
/// every peer's command pipe); above it, each holds only its own pipes and
/// the supervisor sends every run itself, so fds stay linear.
const MAX_HANDOFF_PROCESSES: usize = 64;

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))
}

impl<'a> Supervisor<'a> {
    /// Prepares the scenario and forks its initial actors.
    ///
    /// # Errors
    /// What could not be set up, and why.
    pub(super) fn start(sc: &'a Scenario, opts: &'a ScenarioOptions) -> Result<Supervisor<'a>, String> {
        prepare_this_process(sc, opts)?;
        let dir = scenario_dir()?;
        write_files(sc, dir.path())?;
        for (name, value, line) in &sc.sysctls {
            crate::namespace::write_sysctl(*name, *value)
                .map_err(|e| format!("line {line}: sysctl {} = {value}: {e}", name.name()))?;
        }
        let keys =
            if opts.isolation == Isolation::Host { KeyMap::host(sc, opts.key_slot)? } else { KeyMap::identity() };
        let handoff = sc.processes.len() <= MAX_HANDOFF_PROCESSES;
        // Per process: 4 pipe ends here, plus a few of our own. A small
        // scenario is not checked (a fork refused later names the limit too).
        if sc.processes.len() > MAX_HANDOFF_PROCESSES {
            crate::runner::fork::check_limits(sc.processes.len(), 4 * sc.processes.len() + 16)?;
        }
        let procs = process_pipes(sc)?;
        let (done_r, done_w) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| format!("pipe2: {e}"))?;
        let (life_r, life_w) = pipe()?;
        let mut sup = Supervisor {
            sc,
            opts,
            dir,
            procs,
            books: Books::default(),
            reaped: HashMap::new(),
            unseen: None,
            adopted: Vec::new(),
            handoff,
            keys,
            transcript: Vec::new(),
            done_r,
            actor_ends: Some((done_w, life_r)),
            _life_w: life_w,
            xpassed: Vec::new(),
            later_failures: Vec::new(),
            timing: super::timing::Timing::new(sc.steps.len()),
            stuck: Default::default(),
        };
        for p in sc.processes.iter().filter(|p| p.forked_from.is_none()) {
            let pid = sup.fork_actor(&p.name, p.uid, p.gid)?;
            sup.books.started(&p.name, pid.as_raw());
        }
        // Every child end now lives in the actors that need it.
        for proc_ in sup.procs.values_mut() {
            proc_.child_ends = None;
        }
        sup.actor_ends = None;
        Ok(sup)
    }

    fn fork_actor(&mut self, name: &str, uid: Option<u32>, gid: Option<u32>) -> Result<Pid, String> {
        let family = descendants(self.sc, name);
        let (done, life) = match &self.actor_ends {
            Some((d, l)) => (d.as_raw_fd(), l.as_raw_fd()),
            None => return Err("the actors' pipes are gone".into()),
        };
        let mut keep: Vec<RawFd> = vec![done, life];
        keep.extend(self.opts.journal);
        let mut fds = HashMap::new();
        let mut peers = HashMap::new();
        for (pname, p) in &self.procs {
            if self.handoff {
                // Any actor may hand a chain to any other.
                peers.insert(pname.clone(), p.cmd_w.as_raw_fd());
                keep.push(p.cmd_w.as_raw_fd());
            }
            if let Some((cmd_r, ans_w)) = &p.child_ends {
                if family.contains(pname) {
                    fds.insert(pname.clone(), ActorFds { cmd: cmd_r.as_raw_fd(), ans: ans_w.as_raw_fd() });
                    keep.extend([cmd_r.as_raw_fd(), ans_w.as_raw_fd()]);
                }
            }
        }
        let own = fds.get(name).map(|f| f.ans);
        let comm = actor_comm(name);
        let spec = Child {
            name: &comm,
            keep: &keep,
            death_signal: Some(libc::SIGKILL),
            uid,
            gid,
            panic_fd: own,
            interrupts_blocked: false,
        };
        let scenario = self.sc;
        let dir = self.dir.path().to_path_buf();
        let keys = self.keys.clone();
        let journal = self.opts.journal;
        let timeout = self.timeout();
        let child = fork_guarded(&spec, move || {
            // The supervisor's resources (its TempDir, its books) are never
            // dropped here: the actor ends with _exit.
            let actor = Actor {
                scenario,
                name: name.to_string(),
                dir,
                fds,
                peers,
                done,
                life,
                keys,
                journal,
                attachments: HashMap::new(),
                repeated: Vec::new(),
                timeout,
                watch: crate::runner::actor::watch::Watch::default(),
                spawned: HashMap::new(),
            };
            actor.serve()
        })
        .map_err(|e| e.to_string())?;
        self.procs.get_mut(name).expect("declared").pid = Some(child);
        Ok(child)
    }
}

/// Makes this process ready to supervise: a dead actor's pipe is an error,
/// not our death; the scenario's IPC namespace, its own `/proc` where
/// programs run, and orphans coming to us.
fn prepare_this_process(sc: &Scenario, opts: &ScenarioOptions) -> Result<(), String> {
    // A write to a dead actor's pipe must be an error, not our death.
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.map_err(|e| format!("signal(SIGPIPE): {e}"))?;
    if opts.isolation == Isolation::Namespace {
        crate::namespace::enter_private_ipc_namespace().map_err(|e| e.to_string())?;
    }
    // Programs read `/proc/PID` for the pids they are shown: give them
    // the scenario's own (only where they run: it costs a mount).
    if opts.pid_namespace && sc.steps.iter().any(|s| matches!(s.op, Op::Run { .. } | Op::Spawn { .. })) {
        procs::mount_private_proc()?;
    }
    if !opts.pid_namespace {
        // Orphaned descendants (a forked actor whose parent exited, a
        // program's daemon) come to us, to be reaped and, at the end,
        // killed. (As PID 1 of the scenario's PID namespace we are
        // their reaper anyway.)
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    Ok(())
}

/// Writes the scenario's `file` blocks into its directory (readable by
/// the other uids its processes may run as).
fn write_files(sc: &Scenario, dir: &Path) -> Result<(), String> {
    let other_uids = sc.processes.iter().any(|p| p.uid.is_some() || p.gid.is_some());
    if other_uids {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
    for f in &sc.files {
        let path = dir.join(&f.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, &f.content).map_err(|e| format!("file {}: {e}", f.name))?;
    }
    Ok(())
}

/// A command pipe and an answer pipe for every process of the scenario.
fn process_pipes(sc: &Scenario) -> Result<BTreeMap<String, Proc>, String> {
    let mut procs = BTreeMap::new();
    for p in &sc.processes {
        let (cmd_r, cmd_w) = pipe()?;
        let (ans_r, ans_w) = pipe()?;
        procs.insert(
            p.name.clone(),
            Proc {
                pid: None,
                cmd_w,
                ans_r,
                child_ends: Some((cmd_r, ans_w)),
                parent: p.forked_from.clone(),
                ending: None,
            },
        );
    }
    Ok(procs)
}

/// The scenario's own directory: on tmpfs (`/dev/shm`) when there is one,
/// where creating and removing it costs a few microseconds instead of a
/// journaled disk's hundreds.
fn scenario_dir() -> Result<tempfile::TempDir, String> {
    let fast = Path::new("/dev/shm");
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("shm-harness-");
        b
    };
    builder().tempdir_in(fast).or_else(|_| builder().tempdir()).map_err(|e| format!("temporary directory: {e}"))
}
