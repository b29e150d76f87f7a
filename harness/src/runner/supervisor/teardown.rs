//! Teardown: the actors report their mappings and exit, every other
//! process of the scenario is killed and reaped, and only then are the
//! segments counted (in [`super::leaks`]) and the leaked ones removed.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::sysv;

use crate::interp::{Ending, Identity, TracedSegment, Value};
use crate::report::{Isolation, Leak};
use crate::runner::actor::descendants;
use crate::runner::journal;
use crate::runner::supervisor::procs;
use crate::runner::supervisor::Supervisor;
use crate::runner::wire::{recv, send, FromActor, ToActor};
use crate::scenario::{signal_name, Op};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// How long an actor has to answer `Finish`, and to exit after it.
const GRACE: Duration = Duration::from_millis(500);

/// What the teardown found: mapping leaks, and the first reason the
/// oracle could not see (it then fails the scenario, closed).
#[derive(Default)]
struct Found {
    leaks: Vec<Leak>,
    blind: Option<String>,
    /// Segments created by steps answered after the scenario stopped.
    late: Vec<(Identity, String)>,
    /// What traced programs' trees made, reported at `Finish`.
    traced: Vec<(Vec<TracedSegment>, String)>,
    /// (namespace, shmid) of segments reported in another IPC namespace.
    foreign_seen: Vec<((u64, u64), i32)>,
}

impl Found {
    /// Keeps `why` if it is the first reason the oracle cannot see.
    fn blind(&mut self, why: String) {
        self.blind.get_or_insert(why);
    }
}

impl Supervisor<'_> {
    /// Ends every process of the scenario. The leak oracle, part two: each
    /// living actor reports the SysV mappings it still holds, then exits.
    /// Then every process left (programs, their daemons, orphans) is killed
    /// and reaped: as PID 1 of the scenario's PID namespace, `kill(-1)`;
    /// otherwise the tree of our descendants, walked in `/proc`.
    ///
    /// In a private namespace an actor's maps are only read when a segment
    /// is left: a SysV mapping keeps its segment in `/proc/sysvipc/shm` (as
    /// `dest` once removed), so with none left there can be no mapping, and
    /// the maps then only serve to say who holds what. On the host every
    /// actor always reports.
    ///
    /// Returns the mapping leaks, and why the oracle could not see, if so.
    pub(super) fn finish(&mut self) -> (Vec<Leak>, Option<String>) {
        let segments_left = match sysv::proc_segments() {
            Ok(rows) => !rows.is_empty(),
            Err(_) => true,
        };
        let moves = self.sc.steps.iter().any(|s| matches!(s.op, Op::Unshare | Op::Setns { .. }));
        let report_maps = segments_left || self.opts.isolation == Isolation::Host || moves;
        let home_ns = if moves { journal::ipc_namespace() } else { None };
        let mut found = Found::default();
        // Programs (spawned, run's daemons) first, while they all still
        // live: the actors kill their traced trees when told to finish.
        if report_maps {
            match self.program_mappings() {
                Ok(leaks) => found.leaks.extend(leaks),
                Err(e) => found.blind(format!("the leak oracle cannot see the scenario's programs: {e}")),
            }
        }
        let order = self.living_actors();
        // An actor whose step timed out is still in its program (`run`,
        // `wait`): ended now, it answers the finish below at once.
        for name in order.iter().filter(|n| self.stuck.contains(*n)) {
            self.end_stuck_programs(name);
        }
        self.tell_to_finish(&order, report_maps, home_ns, &mut found);
        for name in order.iter().filter(|_| report_maps) {
            self.read_last_answers(name, &mut found);
        }
        for (id, name) in std::mem::take(&mut found.late) {
            self.books.late_creation(id, name);
        }
        for (segments, name) in std::mem::take(&mut found.traced) {
            self.books.traced(&segments, &name);
        }
        self.await_exits(&order, &mut found);
        if let Err(e) = self.kill_look_reap() {
            found.blind(e);
        }
        // Host mode: an actor killed in the middle of a traced program had
        // journaled creations it never got to report. The journal is the
        // durable truth: whatever it holds for this scenario is its own.
        if let Err(e) = self.absorb_journal() {
            found.blind(e);
        }
        self.settle_adopted();
        (found.leaks, found.blind)
    }

    /// The actors started and not ended, parents before the children they forked.
    fn living_actors(&self) -> Vec<String> {
        self.sc
            .processes
            .iter()
            .filter(|p| p.forked_from.is_none())
            .flat_map(|p| descendants(self.sc, &p.name))
            .filter(|n| self.procs[n].pid.is_some() && self.procs[n].ending.is_none())
            .collect()
    }

    /// Tells each actor of `order` to finish (reporting its maps if asked).
    fn tell_to_finish(&self, order: &[String], report_maps: bool, home_ns: Option<(u64, u64)>, found: &mut Found) {
        for name in order {
            // A stopped actor (SIGSTOP from outside) fails the scenario, and
            // is continued first: whatever system call it is in finishes and
            // is recorded (a segment it was creating is journaled and
            // answered late, below) instead of dying unrecorded under the
            // kill that would otherwise follow.
            if matches!(self.proc_state(name).as_deref(), Some("T" | "t")) {
                found.blind(format!(
                    "at teardown, process {name} was stopped (by a signal from outside the scenario); continued to finish"
                ));
                let _ = nix::sys::signal::kill(self.pid_of(name), nix::sys::signal::Signal::SIGCONT);
            }
            let _ = send(self.procs[name].cmd_w.as_fd(), &ToActor::Finish { report_maps, home_ns });
        }
    }

    /// Reads what actor `name` says last: answers of steps after a failure
    /// still queued (not judged, but a segment one of them created is the
    /// scenario's), what its traced programs made, the segments left in an
    /// IPC namespace it moved to, and then the mappings it holds.
    fn read_last_answers(&self, name: &str, found: &mut Found) {
        let p = &self.procs[name];
        let mut answer = recv::<FromActor>(p.ans_r.as_fd(), Some(GRACE));
        loop {
            match &answer {
                Ok(FromActor::Done(o)) => {
                    if let Ok(Value::Created(id) | Value::Reset(id)) = &o.result {
                        found.late.push((*id, name.to_string()));
                    }
                }
                // What its traced programs' trees made, up to their kill.
                Ok(FromActor::Traced(segments)) => found.traced.push((segments.clone(), name.to_string())),
                Ok(FromActor::Harness(why)) => found.blind(why.clone()),
                Ok(FromActor::Foreign { segments: Err(e), .. }) => {
                    found.blind(format!("the leak oracle cannot see the IPC namespace process {name} moved to: {e}"));
                }
                Ok(FromActor::Foreign { ns, segments: Ok(rows) }) => foreign_leaks(name, *ns, rows, found),
                _ => break,
            }
            answer = recv::<FromActor>(p.ans_r.as_fd(), Some(GRACE));
        }
        match answer {
            Ok(FromActor::Maps(Ok(maps))) => {
                for (range, shmid, att) in maps {
                    let line =
                        att.as_ref().and_then(|a| self.books.attach_lines.get(&(name.to_string(), a.clone())).copied());
                    let what = att.map_or_else(String::new, |a| format!(" (attachment `{a}`)"));
                    found.leaks.push(Leak {
                        message: format!(
                            "process {name} still has shmid {shmid} attached at {range}{what}; detach it before the scenario ends"
                        ),
                        line,
                        process: Some(name.to_string()),
                        shmid: shmid as i32,
                    });
                }
            }
            Ok(FromActor::Maps(Err(e))) => {
                found.blind(format!("the leak oracle cannot see process {name}'s mappings: {e}"));
            }
            Ok(FromActor::Panic(m)) => found.blind(m),
            // Ended before it could answer (a fault, a kill): it holds nothing now.
            _ => {}
        }
    }

    /// Gives the actors a moment to exit by themselves. Told to finish, a
    /// healthy actor exits with status 0 (parents first, so a forked child
    /// is ours to reap by the time it is waited for). Anything else, a
    /// process killed or stopped after its last step, is a scenario that
    /// did not run as written, and the mapping check cannot vouch for it:
    /// fail closed.
    fn await_exits(&mut self, order: &[String], found: &mut Found) {
        let until = Instant::now() + GRACE;
        for name in order {
            let pid = self.pid_of(name);
            let left = until.saturating_duration_since(Instant::now());
            let ending = self.wait_child(pid, left);
            let problem = match ending {
                Ending::Exited(0) => None,
                Ending::Exited(c) => Some(format!("process {name} exited with status {c} at teardown, not 0")),
                Ending::Signaled(sig) => Some(format!(
                    "process {name} was killed by {} before the scenario ended (after its last step)",
                    signal_name(sig)
                )),
                Ending::Unknown => Some(format!("at teardown, {}", self.state_of(name, GRACE))),
            };
            if let Some(p) = problem {
                found.blind(p);
            }
            self.procs.get_mut(name).expect("known").ending = Some(ending);
        }
    }

    /// Teardown when the coordinator is gone: every process of the scenario
    /// is killed at once (no actor is asked for anything: a program it is
    /// running would hold the teardown up), reaped, and every segment the
    /// books or the journal prove the scenario's is removed by identity.
    ///
    /// # Errors
    /// What could not be killed, read or removed.
    pub(super) fn abandon(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.opts.isolation == Isolation::Host && !self.opts.pid_namespace {
            problems.extend(self.let_tracing_actors_drain().err());
        }
        if let Err(e) = self.kill_look_reap() {
            problems.push(e);
        }
        if let Err(e) = self.absorb_journal() {
            problems.push(e);
        }
        self.settle_adopted();
        if let Err(e) = self.remove_repeated() {
            problems.push(e);
        }
        match self.segment_leaks() {
            Ok(leaks) => {
                if let Err(e) = self.remove_leaked(&leaks) {
                    problems.push(e);
                }
            }
            Err(e) => problems.push(e),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Teardown without the coordinator, host mode with traced programs:
    /// every process but the actors is killed, and each actor that was
    /// tracing is continued, and given [`GRACE`] at most to read and journal
    /// what its tracer had reported (it then answers its step, or sleeps
    /// again, which ends the wait).
    ///
    /// # Errors
    /// Our own `children` files cannot be read.
    fn let_tracing_actors_drain(&mut self) -> Result<(), String> {
        let actors: Vec<i32> =
            self.procs.values().filter(|p| p.ending.is_none()).filter_map(|p| p.pid).map(|p| p.as_raw()).collect();
        let tracing = procs::kill_all_but_actors(&actors)?;
        // One is done when it answers, or when it sleeps again (an idle one
        // at once): it has read (and journaled) what its dead tracer wrote.
        let mut waiting: Vec<String> = self
            .procs
            .iter()
            .filter(|(_, p)| p.pid.is_some_and(|pid| tracing.contains(&pid.as_raw())))
            .map(|(name, _)| name.clone())
            .collect();
        let deadline = Instant::now() + GRACE;
        std::thread::sleep(Duration::from_millis(2));
        while !waiting.is_empty() && Instant::now() < deadline {
            let mut fds: Vec<PollFd> =
                waiting.iter().map(|n| PollFd::new(self.procs[n].ans_r.as_fd(), PollFlags::POLLIN)).collect();
            let _ = poll(&mut fds, PollTimeout::from(2u16));
            let answered: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            drop(fds);
            let mut i = 0;
            waiting.retain(|name| {
                i += 1;
                !answered[i - 1] && self.proc_state(name).as_deref() != Some("S")
            });
        }
        Ok(())
    }

    /// Kills every process of the scenario, looks before reaping (host
    /// mode: everything killed and nothing reaped, `/proc/sysvipc/shm` is
    /// read once and every segment an unreaped process of the scenario
    /// created since it started is adopted, [`Supervisor::adopt_unrecorded`]),
    /// then reaps them all.
    ///
    /// # Errors
    /// What could not be killed, looked at or read; also a look during the
    /// run that could not see.
    fn kill_look_reap(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.opts.isolation == Isolation::Host {
            match procs::kill_without_reaping(self.opts.pid_namespace) {
                Ok(unreaped) => problems.extend(self.adopt_unrecorded(&unreaped).err()),
                Err(e) => problems.push(e),
            }
        }
        problems.extend(procs::kill_everything(self.opts.pid_namespace).err());
        self.reap_ended();
        problems.extend(self.unseen.take());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Adds to the books every identity the run's journal records for this
    /// scenario in this IPC namespace (all are the scenario's own: the
    /// journal is written only by its actors, for what they or their traced
    /// programs created).
    ///
    /// # Errors
    /// The journal cannot be read (the leak oracle would be blind).
    fn absorb_journal(&mut self) -> Result<(), String> {
        let Some(fd) = self.opts.journal else { return Ok(()) };
        let records = journal::scenario_records(fd, &self.sc.file).map_err(|e| format!("the run's {e}"))?;
        for rec in records {
            let id = Identity { shmid: rec.shmid, cpid: rec.cpid, ctime: rec.ctime };
            self.books.journaled(id, rec.line, rec.process);
        }
        Ok(())
    }
}

/// The segments left in the IPC namespace `ns` that process `name` moved
/// to: leaks, reported once per namespace however many actors share it.
fn foreign_leaks(name: &str, ns: (u64, u64), rows: &[(i32, String)], found: &mut Found) {
    for (shmid, what) in rows {
        if found.foreign_seen.contains(&(ns, *shmid)) {
            continue;
        }
        found.foreign_seen.push((ns, *shmid));
        found.leaks.push(Leak {
            message: format!(
                "segment shmid {shmid} ({what}) in the IPC namespace process {name} moved to was never removed; it dies with that namespace, but rm it before the scenario ends"
            ),
            line: None,
            process: Some(name.to_string()),
            shmid: *shmid,
        });
    }
}
