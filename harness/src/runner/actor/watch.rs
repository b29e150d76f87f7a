//! An actor's traced programs (host mode): the tracers it keeps while
//! their process trees live, and what they reported, journaled the moment
//! it is read and queued for the supervisor.
//!
//! Order of facts for every traced creation: T writes the event while the
//! tracee is stopped in `shmget`; the actor reads it, appends the identity
//! to the run's journal (one `write`, `O_APPEND`), and only then queues it
//! as a [`TracedSegment`] for the supervisor's books, which receive it
//! before the answer of the step during which it was read (or at `Finish`).

use std::collections::{HashMap, HashSet};
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Instant;

use crate::trace::{Exit, Tracer};

use crate::interp::{Identity, TracedSegment};
use crate::runner::actor::traced::{self, Traced};
use crate::runner::journal;

/// How long the tracers have, together, to end their trees and report at
/// `Finish` (within the supervisor's grace for the actor's answer).
const FINISH_DRAIN: std::time::Duration = std::time::Duration::from_millis(400);

/// What an actor knows of its traced programs.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// Living tracers, with the line of the `run` step that started each.
    tracers: Vec<(Tracer, usize)>,
    /// Identities traced programs of this actor created (and their changes).
    owned: HashSet<Identity>,
    /// Reports not yet sent to the supervisor.
    pending: Vec<TracedSegment>,
    /// The first thing the tracers could not vouch for.
    blind: Option<String>,
    /// How the first process of each traced program ended, by the line of
    /// its step (a spawned program's `wait` reads it here).
    exits: HashMap<usize, Exit>,
}

/// Where journal records go, and what they say about their origin.
pub(crate) struct Origin<'a> {
    /// The run's journal.
    pub journal: Option<RawFd>,
    /// The scenario file.
    pub scenario: &'a str,
    /// The actor's name.
    pub process: &'a str,
}

impl Watch {
    /// Journals and queues one report of the `run` step at `line`.
    ///
    /// # Errors
    /// The journal write failed, or pids are not the host's (a PID
    /// namespace): the identity cannot be recorded as the sweep must see it.
    pub fn take(&mut self, origin: &Origin<'_>, line: usize, t: Traced) -> Result<(), String> {
        let (identity, key, journal_it, seg) = match t {
            Traced::Created(identity, key) => {
                let seg = TracedSegment::Created { line, identity };
                (identity, key, true, seg)
            }
            Traced::Changed(identity, old_ctime) => {
                // The guard let the `IPC_SET` run only on a segment the
                // ledger gives the scenario (the tracer reports no other):
                // its new identity is the scenario's too.
                let owned = old_ctime.is_some();
                let key = crate::sysv::Shmid::from_raw(identity.shmid).stat().map_or(0, |st| st.key.raw());
                (identity, key, owned, TracedSegment::Changed { line, identity, old_ctime })
            }
            Traced::Refused(what) => {
                // The program got the errno and runs on; the scenario fails.
                self.blind(format!("line {line}: {what}"));
                return Ok(());
            }
        };
        if journal_it {
            if let Some(fd) = origin.journal {
                if journal::host_pid() != std::process::id() as i32 {
                    return Err(format!(
                        "shmid {}: this actor is in a PID namespace, so the traced creator pid {} is not the host's; the journal cannot record it",
                        identity.shmid, identity.cpid
                    ));
                }
                let rec = journal::Record {
                    scenario: origin.scenario.to_string(),
                    line,
                    process: format!("{} (traced program)", origin.process),
                    shmid: identity.shmid,
                    cpid: identity.cpid,
                    ctime: identity.ctime,
                    key,
                    ns: journal::ipc_namespace().ok_or("cannot read /proc/thread-self/ns/ipc")?,
                };
                journal::append(fd, &rec).map_err(|e| format!("shmid {}: {e}", identity.shmid))?;
            }
            self.owned.insert(identity);
        }
        if !self.pending.contains(&seg) {
            self.pending.push(seg);
        }
        Ok(())
    }

    /// Keeps a tracer whose program left descendants.
    pub fn keep(&mut self, tracer: Tracer, line: usize) {
        self.tracers.push((tracer, line));
    }

    /// Records a failure to vouch, or a call the guard refused (the first
    /// one is kept; it fails the scenario).
    pub fn blind(&mut self, why: String) {
        self.blind.get_or_insert(why);
    }

    /// The living tracers' event fds, to poll.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.tracers.iter().map(|(t, _)| t.events_fd()).collect()
    }

    /// Whether any tracer is kept.
    pub fn is_empty(&self) -> bool {
        self.tracers.is_empty()
    }

    /// Reads whatever the living tracers reported, without waiting; drops
    /// those whose trees have all ended.
    pub fn drain(&mut self, origin: &Origin<'_>) {
        let mut tracers = std::mem::take(&mut self.tracers);
        tracers.retain_mut(|(t, line)| {
            let line = *line;
            let mut exit = None;
            let r = traced::drain_ready(t, &mut |x| self.take(origin, line, x), &mut exit);
            if let Some(x) = exit {
                self.exits.insert(line, x);
            }
            match r {
                Ok(over) => !over,
                Err(e) => {
                    self.blind(format!("line {line}: a traced program: {e}; its process tree was killed"));
                    let _ = t.kill_all();
                    false
                }
            }
        });
        self.tracers = tracers;
    }

    /// Waits until the traced program of the step at `line` has ended (its
    /// tracer said so), reading every tracer's reports meanwhile; `Unknown`
    /// at `deadline`, or if its tracer is gone without saying.
    pub fn wait_exit(&mut self, line: usize, deadline: Instant, origin: &Origin<'_>) -> crate::interp::Ending {
        use crate::interp::Ending;
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            self.drain(origin);
            if let Some(x) = self.exits.remove(&line) {
                return match x {
                    Exit::Code(c) => Ending::Exited(c),
                    Exit::Signal { signal, .. } => Ending::Signaled(signal),
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.tracers.iter().any(|(_, l)| *l == line) {
                return Ending::Unknown;
            }
            // Every tracer: what the others report is journaled meanwhile.
            let ms = u16::try_from(left.as_millis().min(1000)).unwrap_or(1000);
            let mut fds: Vec<PollFd> = self.fds().into_iter().map(|f| PollFd::new(f, PollFlags::POLLIN)).collect();
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
    }

    /// Ends every living program tree before its tracer (all at once),
    /// and reads (and journals) what each tracer reported as its tree died.
    pub fn finish(&mut self, origin: &Origin<'_>) {
        let tracers = std::mem::take(&mut self.tracers);
        for (t, _) in &tracers {
            t.request_stop();
        }
        let deadline = Instant::now() + FINISH_DRAIN;
        for (mut t, line) in tracers {
            if let Err(e) = traced::finish(&mut t, &mut |x| self.take(origin, line, x), deadline) {
                self.blind(format!("line {line}: a traced program: {e}"));
            }
        }
    }

    /// The reports to send now, and the failure to report (if any).
    pub fn take_reports(&mut self) -> (Vec<TracedSegment>, Option<String>) {
        (std::mem::take(&mut self.pending), self.blind.take())
    }
}

/// A traced `run` step's reports (see [`traced::Reports`]): journaled by
/// the watch as of the step's line; the watch's own tracers drained while
/// the program runs.
pub(crate) struct RunReports<'a> {
    /// The actor's watch.
    pub watch: &'a mut Watch,
    /// Where journal records go.
    pub origin: Origin<'a>,
    /// The `run` step's line.
    pub line: usize,
}

impl traced::Reports for RunReports<'_> {
    fn take(&mut self, t: Traced) -> Result<(), String> {
        self.watch.take(&self.origin, self.line, t)
    }

    fn others(&self) -> Vec<RawFd> {
        use std::os::fd::AsRawFd;
        self.watch.fds().iter().map(AsRawFd::as_raw_fd).collect()
    }

    fn drain_others(&mut self) {
        self.watch.drain(&self.origin);
    }
}
