//! Teardown and the leak oracle: the actors report their mappings and
//! exit, every other process of the scenario is killed and reaped, and only
//! then are the segments counted and the leaked ones removed.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::sysv;

use crate::interp::{Ending, Identity, TracedSegment, Value};
use crate::report::{Isolation, Leak};
use crate::runner::actor::descendants;
use crate::runner::host;
use crate::runner::journal;
use crate::runner::supervisor::procs;
use crate::runner::supervisor::Supervisor;
use crate::runner::wire::{recv, send, FromActor, ToActor};
use crate::scenario::signal_name;

impl Supervisor<'_> {
    /// The leak oracle, part one: every segment this scenario created must
    /// be gone. In namespace mode every segment of the namespace is the
    /// scenario's; in host mode only those whose identity it recorded.
    ///
    /// # Errors
    /// `/proc/sysvipc/shm` cannot be read: the oracle cannot see.
    pub(super) fn segment_leaks(&self) -> Result<Vec<Leak>, String> {
        let mut leaks = Vec::new();
        let ours = self.identities();
        let rows = sysv::proc_segments().map_err(|e| e.to_string())?;
        for r in rows {
            let id = r.shmid.raw();
            if self.opts.isolation == Isolation::Host && !host::row_is_ours(&r, &ours) {
                continue;
            }
            // The latest creation of this id is the one alive: an id is
            // reused once its segment is gone (`shm_next_id`, or wrapping).
            let made_here = self
                .books
                .created
                .iter()
                .rev()
                .find(|(i, _, _)| i.shmid == id)
                .map(|(_, l, p)| (*l, p.clone()))
                .or_else(|| self.books.spawned.get(&r.cpid).cloned());
            let by = match &made_here {
                // Line 0: answered after the scenario had already stopped.
                Some((0, p)) => format!("created by {p} (a step after the failure)"),
                Some((line, p)) => format!("created by {p} at line {line}"),
                None => format!("created by {}", self.pid_name(r.cpid)),
            };
            leaks.push(Leak {
                message: format!(
                    "segment shmid {id} (key {}, {} bytes, nattch {}{}) {by} was never removed; rm it before the scenario ends",
                    r.key,
                    r.size,
                    r.nattch,
                    if r.dest { ", removed but still attached" } else { "" }
                ),
                line: made_here.as_ref().map(|(l, _)| *l).filter(|&l| l > 0),
                process: made_here.map(|(_, p)| p),
                shmid: id,
            });
        }
        Ok(leaks)
    }

    /// Host mode, when `/proc/sysvipc/shm` cannot be read: the segments
    /// the books record that `IPC_STAT` still shows with their recorded
    /// identity. The scenario fails closed all the same (the caller keeps
    /// the reason); this only keeps what the scenario provably made from
    /// staying on the host, and its journal being deleted with it, because
    /// the full listing was unreadable. A recorded segment `IPC_STAT` cannot
    /// read (its mode) is left to the journal's sweep.
    pub(super) fn known_leaks(&self) -> Vec<Leak> {
        let mut leaks: Vec<Leak> = Vec::new();
        for (id, line, process) in &self.books.created {
            let Ok(st) = sysv::Shmid::from_raw(id.shmid).stat() else { continue };
            if st.cpid != id.cpid || st.ctime != id.ctime || leaks.iter().any(|l| l.shmid == id.shmid) {
                continue;
            }
            let by = match line {
                0 => format!("created by {process} (a step after the failure)"),
                l => format!("created by {process} at line {l}"),
            };
            leaks.push(Leak {
                message: format!(
                    "segment shmid {} (key {}, {} bytes, nattch {}{}) {by} was never removed; rm it before the scenario ends",
                    id.shmid,
                    st.key,
                    st.size,
                    st.nattch,
                    if st.dest { ", removed but still attached" } else { "" }
                ),
                line: Some(*line).filter(|&l| l > 0),
                process: Some(process.clone()),
                shmid: id.shmid,
            });
        }
        leaks
    }

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
        use crate::scenario::Op;
        let moves = self.sc.steps.iter().any(|s| matches!(s.op, Op::Unshare | Op::Setns { .. }));
        let report_maps = segments_left || self.opts.isolation == Isolation::Host || moves;
        let home_ns = if moves { journal::ipc_namespace() } else { None };
        let mut foreign_seen: Vec<((u64, u64), i32)> = Vec::new();
        let mut leaks = Vec::new();
        let mut blind = None;
        // Programs (spawned, run's daemons) first, while they all still
        // live: the actors kill their traced trees when told to finish.
        if report_maps {
            match self.program_mappings() {
                Ok(found) => leaks.extend(found),
                Err(e) => blind = Some(format!("the leak oracle cannot see the scenario's programs: {e}")),
            }
        }
        let grace = Duration::from_millis(500);
        // Parents before the children they forked.
        let order: Vec<String> = self
            .sc
            .processes
            .iter()
            .filter(|p| p.forked_from.is_none())
            .flat_map(|p| descendants(self.sc, &p.name))
            .filter(|n| self.procs[n].pid.is_some() && self.procs[n].ending.is_none())
            .collect();
        for name in &order {
            // A stopped actor (SIGSTOP from outside) fails the scenario, and
            // is continued first: whatever system call it is in finishes and
            // is recorded (a segment it was creating is journaled and
            // answered late, below) instead of dying unrecorded under the
            // kill that would otherwise follow.
            if matches!(self.proc_state(name).as_deref(), Some("T" | "t")) {
                blind.get_or_insert(format!(
                    "at teardown, process {name} was stopped (by a signal from outside the scenario); continued to finish"
                ));
                let _ = nix::sys::signal::kill(self.pid_of(name), nix::sys::signal::Signal::SIGCONT);
            }
            let _ = send(self.procs[name].cmd_w.as_fd(), &ToActor::Finish { report_maps, home_ns });
        }
        let mut late: Vec<(Identity, String)> = Vec::new();
        let mut traced: Vec<(Vec<TracedSegment>, String)> = Vec::new();
        for name in order.iter().filter(|_| report_maps) {
            let p = &self.procs[name];
            // Answers of steps after a failure may still be queued: not
            // judged, but a segment one of them created is the scenario's.
            let mut answer = recv::<FromActor>(p.ans_r.as_fd(), Some(grace));
            loop {
                match &answer {
                    Ok(FromActor::Done(o)) => {
                        if let Ok(Value::Created(id) | Value::Reset(id)) = &o.result {
                            late.push((*id, name.clone()));
                        }
                    }
                    // What its traced programs' trees made, up to their kill.
                    Ok(FromActor::Traced(segments)) => traced.push((segments.clone(), name.clone())),
                    Ok(FromActor::Harness(why)) => {
                        blind.get_or_insert(why.clone());
                    }
                    Ok(FromActor::Foreign { segments: Err(e), .. }) => {
                        blind.get_or_insert(format!(
                            "the leak oracle cannot see the IPC namespace process {name} moved to: {e}"
                        ));
                    }
                    Ok(FromActor::Foreign { ns, segments: Ok(rows) }) => {
                        // Reported once per namespace, however many actors share it.
                        for (shmid, what) in rows {
                            if foreign_seen.contains(&(*ns, *shmid)) {
                                continue;
                            }
                            foreign_seen.push((*ns, *shmid));
                            leaks.push(Leak {
                                message: format!(
                                    "segment shmid {shmid} ({what}) in the IPC namespace process {name} moved to was never removed; it dies with that namespace, but rm it before the scenario ends"
                                ),
                                line: None,
                                process: Some(name.clone()),
                                shmid: *shmid,
                            });
                        }
                    }
                    _ => break,
                }
                answer = recv::<FromActor>(p.ans_r.as_fd(), Some(grace));
            }
            match answer {
                Ok(FromActor::Maps(Ok(maps))) => {
                    for (range, shmid, att) in maps {
                        let line =
                            att.as_ref().and_then(|a| self.books.attach_lines.get(&(name.clone(), a.clone())).copied());
                        let what = att.map_or_else(String::new, |a| format!(" (attachment `{a}`)"));
                        leaks.push(Leak {
                            message: format!(
                                "process {name} still has shmid {shmid} attached at {range}{what}; detach it before the scenario ends"
                            ),
                            line,
                            process: Some(name.clone()),
                            shmid: shmid as i32,
                        });
                    }
                }
                Ok(FromActor::Maps(Err(e))) => {
                    blind.get_or_insert(format!("the leak oracle cannot see process {name}'s mappings: {e}"));
                }
                Ok(FromActor::Panic(m)) => {
                    blind.get_or_insert(m);
                }
                // Ended before it could answer (a fault, a kill): it holds nothing now.
                _ => {}
            }
        }
        for (id, name) in late {
            self.books.late_creation(id, name);
        }
        for (segments, name) in traced {
            self.books.traced(&segments, &name);
        }
        // Give the actors a moment to exit by themselves; then no mercy.
        // Told to finish, a healthy actor exits with status 0 (parents
        // first, so a forked child is ours to reap by the time it is
        // waited for). Anything else, a process killed or stopped after
        // its last step, is a scenario that did not run as written, and
        // the mapping check cannot vouch for it: fail closed.
        let until = Instant::now() + grace;
        for name in &order {
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
                Ending::Unknown => Some(format!("at teardown, {}", self.state_of(name, grace))),
            };
            if let Some(p) = problem {
                blind.get_or_insert(p);
            }
            self.procs.get_mut(name).expect("known").ending = Some(ending);
        }
        if let Err(e) = procs::kill_everything(self.opts.pid_namespace) {
            blind.get_or_insert(e);
        }
        self.reap_ended();
        // Host mode: an actor killed in the middle of a traced program had
        // journaled creations it never got to report. The journal is the
        // durable truth: whatever it holds for this scenario is its own.
        if let Err(e) = self.absorb_journal() {
            blind.get_or_insert(e);
        }
        (leaks, blind)
    }

    /// The leak oracle for processes that are not actors (spawned
    /// programs, what `run` left behind, their children): the SysV mappings
    /// each still holds, from `/proc/PID/maps`, before they are killed.
    ///
    /// # Errors
    /// The process tree or a living process's maps cannot be read.
    fn program_mappings(&self) -> Result<Vec<Leak>, String> {
        use crate::scenario::Op;
        let programs = self.sc.steps.iter().any(|s| matches!(s.op, Op::Run { .. } | Op::Spawn { .. }));
        if !programs {
            // Only actors run (and without a `/proc` of the scenario's PID
            // namespace, its pids could not be looked up anyway).
            return Ok(Vec::new());
        }
        let actors: Vec<i32> = self.procs.values().filter_map(|p| p.pid.map(|p| p.as_raw())).collect();
        let mut leaks = Vec::new();
        for pid in procs::descendants_of(std::process::id() as i32)? {
            if actors.contains(&pid) {
                continue;
            }
            let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
                Ok(m) => m,
                // Ended meanwhile: it holds nothing now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
                Err(e) => return Err(format!("/proc/{pid}/maps: {e}")),
            };
            let spawned = self.books.spawned.get(&pid).cloned();
            for (range, shmid) in crate::sysv::parse_sysv_mappings(&maps).iter().map(|m| (m.range(), m.shmid)) {
                // Only a `spawn`ed program can be waited for or signalled; a
                // process some program left behind (a daemon) cannot.
                let message = match &spawned {
                    Some(_) => format!(
                        "program {} still has shmid {shmid} attached at {range}; wait for it (or signal it) before the scenario ends",
                        self.pid_name(pid)
                    ),
                    None => format!(
                        "process {} (left by a program of the scenario, not spawned by it) still has shmid {shmid} attached at {range}; stop it before the scenario ends (`run \"kill ${{PID}}\"` with its pid captured as `{{pid:PID}}`)",
                        self.pid_name(pid)
                    ),
                };
                leaks.push(Leak {
                    message,
                    line: spawned.as_ref().map(|(l, _)| *l),
                    process: spawned.as_ref().map(|(_, p)| p.clone()),
                    shmid: shmid.raw(),
                });
            }
        }
        Ok(leaks)
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
        if let Err(e) = procs::kill_everything(self.opts.pid_namespace) {
            problems.push(e);
        }
        self.reap_ended();
        if let Err(e) = self.absorb_journal() {
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

    /// Adds to the books every identity the run's journal records for this
    /// scenario in this IPC namespace (all are the scenario's own: the
    /// journal is written only by its actors, for what they or their traced
    /// programs created).
    ///
    /// # Errors
    /// The journal cannot be read (the leak oracle would be blind).
    fn absorb_journal(&mut self) -> Result<(), String> {
        let Some(fd) = self.opts.journal else { return Ok(()) };
        let path = format!("/proc/self/fd/{fd}");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("the run's journal ({path}): {e}"))?;
        let here = journal::ipc_namespace();
        for rec in text.lines().filter_map(|l| serde_json::from_str::<journal::Record>(l).ok()) {
            if rec.scenario == self.sc.file && Some(rec.ns) == here {
                let id = Identity { shmid: rec.shmid, cpid: rec.cpid, ctime: rec.ctime };
                self.books.journaled(id, rec.line, rec.process);
            }
        }
        Ok(())
    }

    /// Removes the segments the leak oracle found, once every process is
    /// gone. In host mode each is re-checked by identity right before
    /// `IPC_RMID`; anything else is reported, never removed.
    ///
    /// # Errors
    /// A segment could not be removed, or was not ours any more.
    pub(super) fn remove_leaked(&self, leaks: &[Leak]) -> Result<(), String> {
        let mut problems = Vec::new();
        for l in leaks {
            if self.opts.isolation == Isolation::Namespace {
                // The namespace holds nothing but the scenario's own.
                if let Err(e) = sysv::Shmid::from_raw(l.shmid).remove() {
                    problems.push(e.to_string());
                }
                continue;
            }
            for (id, _, _) in self.books.created.iter().filter(|(i, _, _)| i.shmid == l.shmid) {
                match host::remove_if_ours(*id) {
                    host::Removal::Removed | host::Removal::Gone => {}
                    host::Removal::NotOurs(now) => problems.push(format!(
                        "shmid {} now shows cpid {} ctime {}, not the recorded {} {}: left alone",
                        id.shmid, now.cpid, now.ctime, id.cpid, id.ctime
                    )),
                    host::Removal::Failed(e) => problems.push(e),
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("leaked segments could not all be removed: {}", problems.join("; ")))
        }
    }
}
