//! The leak oracle: which segments the scenario left (all of a private
//! namespace's, or in host isolation those whose identity the books
//! record), which mappings its programs still hold, and the removal, by
//! identity, of what it left.

use crate::sysv;

use crate::interp::Identity;
use crate::report::{Isolation, Leak};
use crate::runner::host;
use crate::runner::journal;
use crate::runner::supervisor::procs;
use crate::runner::supervisor::Supervisor;

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
                Some((0, p)) => format!(
                    "created by {p} in a call no step answered (after the failure, or its process was killed first)"
                ),
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

    /// Removes, by identity, the segments `repeat` steps created (no name
    /// reaches them, so no step could: they are the teardown's, not
    /// leaks), once every process is gone. One that shows another identity
    /// now (removed by the scenario, its id taken again) is left to the
    /// oracle.
    ///
    /// # Errors
    /// A segment could not be read or removed.
    pub(super) fn remove_repeated(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for id in &self.books.repeated {
            match host::remove_if_ours(*id) {
                host::Removal::Removed | host::Removal::Gone | host::Removal::NotOurs(_) => {}
                host::Removal::Failed(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("segments made by `repeat` could not all be removed: {}", problems.join("; ")))
        }
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
                0 => format!("created by {process} in a call no step answered (after the failure, or its process was killed first)"),
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

    /// The leak oracle for processes that are not actors (spawned
    /// programs, what `run` left behind, their children): the SysV mappings
    /// each still holds, from `/proc/PID/maps`, before they are killed.
    ///
    /// # Errors
    /// The process tree or a living process's maps cannot be read.
    pub(super) fn program_mappings(&self) -> Result<Vec<Leak>, String> {
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

    /// Look before reaping (host mode): adopts into the books, and
    /// journals, every segment whose creator is one of `unreaped` (ended
    /// processes of the scenario not reaped yet, so their pids are still
    /// theirs) and that was not made before that process started. Such a
    /// segment is provably the scenario's though nothing recorded it (its
    /// creator died between `shmget` and its journal write); it is then a
    /// leak naming that process, removed by identity like the others
    /// ([`Supervisor::settle_adopted`] enters it in the books at teardown).
    ///
    /// # Errors
    /// `/proc/sysvipc/shm` cannot be read, or the journal not written: the
    /// oracle would be blind.
    pub(super) fn adopt_unrecorded(&mut self, unreaped: &[procs::Unreaped]) -> Result<(), String> {
        if unreaped.is_empty() || self.opts.isolation != Isolation::Host {
            return Ok(());
        }
        let rows = sysv::proc_segments().map_err(|e| format!("look before reaping: {e}"))?;
        let known = self.identities();
        for r in rows {
            let Some(u) = unreaped.iter().find(|u| u.pid == r.cpid && r.ctime >= u.started) else { continue };
            let id = Identity { shmid: r.shmid.raw(), cpid: r.cpid, ctime: r.ctime };
            if known.contains(&id) || self.adopted.iter().any(|(i, _)| *i == id) {
                continue;
            }
            let name = self.pid_name(r.cpid);
            if let Some(fd) = self.opts.journal {
                let rec = journal::Record {
                    scenario: self.sc.file.clone(),
                    line: 0,
                    process: name.clone(),
                    shmid: id.shmid,
                    cpid: u.proc_pid,
                    ctime: id.ctime,
                    key: r.key.raw(),
                    ns: journal::ipc_namespace().ok_or("look before reaping: cannot read /proc/thread-self/ns/ipc")?,
                };
                journal::append(fd, &rec).map_err(|e| format!("look before reaping: the run's journal: {e}"))?;
            }
            self.adopted.push((id, name));
        }
        Ok(())
    }

    /// Enters the adopted segments into the books, once every report is
    /// in: one a step, a journal line or a traced program's report also
    /// recorded keeps that better account (its line).
    pub(super) fn settle_adopted(&mut self) {
        for (id, name) in std::mem::take(&mut self.adopted) {
            self.books.journaled(id, 0, name);
        }
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
