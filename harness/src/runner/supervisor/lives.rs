//! How the scenario's processes are: their pids, how each ended (reaped
//! by us or by the actor that forked it), and why one does not answer.

use std::ops::Range;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::unistd::Pid;

use crate::interp::Ending;
use crate::report::Isolation;
use crate::runner::supervisor::event::Life;
use crate::runner::supervisor::{procs, Supervisor};
use crate::runner::wire::{recv, send, FromActor, ToActor};

impl Supervisor<'_> {
    /// The pid of process `name` (0 before it is started).
    pub(super) fn pid_of(&self, name: &str) -> Pid {
        self.procs[name].pid.unwrap_or(Pid::from_raw(0))
    }

    /// How the processes of steps `steps` are, one per step.
    pub(super) fn lives(&self, steps: Range<usize>) -> Vec<Life> {
        self.sc.steps[steps]
            .iter()
            .map(|s| {
                let p = &self.procs[&s.process];
                if p.ending.is_some() {
                    Life::Ended
                } else if p.pid.is_none() {
                    Life::NeverStarted
                } else {
                    Life::Alive
                }
            })
            .collect()
    }

    /// Reaps every child that has ended, keeping how it ended. In host
    /// mode each is looked at before it is reaped (orphans included):
    /// what it created and nothing recorded is adopted
    /// ([`Supervisor::adopt_unrecorded`]).
    pub(super) fn reap_ended(&mut self) {
        if self.opts.isolation != Isolation::Host {
            while let Some((pid, ending)) = procs::reap_one() {
                self.reaped.insert(pid, ending);
            }
            return;
        }
        while let Some(pid) = procs::peek_ended() {
            self.look_at(pid);
            match procs::wait_exit(pid, Duration::ZERO) {
                Ending::Unknown => break,
                ending => self.reaped.insert(pid.as_raw(), ending),
            };
        }
    }

    /// Looks at child `pid`, ended and not reaped, for segments it created
    /// that nothing recorded; a look that cannot see is kept in `unseen`
    /// (the teardown fails closed on it).
    fn look_at(&mut self, pid: Pid) {
        let looked = procs::unreaped_child(pid).and_then(|u| self.adopt_unrecorded(&[u]));
        if let Err(e) = looked {
            self.unseen.get_or_insert(format!("look before reaping pid {pid}: {e}"));
        }
    }

    /// How a process ended: reaped by us (initial actors, orphans) or by its
    /// parent actor.
    pub(super) fn ending_of(&mut self, name: &str) -> Ending {
        if let Some(e) = self.procs[name].ending {
            return e;
        }
        let pid = self.pid_of(name);
        let parent = self.procs[name].parent.clone();
        let parent_alive =
            parent.as_ref().is_some_and(|p| self.procs[p].ending.is_none() && self.procs[p].pid.is_some());
        let ending = if parent_alive {
            let parent = parent.expect("checked");
            let p = &self.procs[&parent];
            let asked = send(p.cmd_w.as_fd(), &ToActor::WaitChild { pid: pid.as_raw() });
            match asked.and_then(|()| recv::<FromActor>(p.ans_r.as_fd(), Some(self.timeout()))) {
                Ok(FromActor::ChildEnded(e)) => e,
                _ => Ending::Unknown,
            }
        } else {
            self.wait_child(pid, self.timeout())
        };
        self.procs.get_mut(name).expect("known").ending = Some(ending);
        ending
    }

    /// How child `pid` ended: reaped already, or waited for now.
    pub(super) fn wait_child(&mut self, pid: Pid, timeout: Duration) -> Ending {
        if let Some(e) = self.reaped.remove(&pid.as_raw()) {
            return e;
        }
        let mut timeout = timeout;
        if self.opts.isolation == Isolation::Host && procs::wait_ended(pid, timeout) {
            self.look_at(pid);
            timeout = Duration::ZERO;
        }
        match procs::wait_exit(pid, timeout) {
            Ending::Unknown => self.reaped.remove(&pid.as_raw()).unwrap_or(Ending::Unknown),
            e => e,
        }
    }

    /// The number `/proc` knows `name` by (in the scenario's PID namespace
    /// the pid we hold may not be the `/proc` mount's number).
    pub(super) fn proc_pid(&self, name: &str) -> Option<i32> {
        let pid = self.pid_of(name);
        if self.opts.pid_namespace {
            procs::host_pid_of(pid)
        } else {
            Some(pid.as_raw())
        }
    }

    /// `name`'s state letter in `/proc/PID/stat` (`R`, `S`, `T`, ...).
    pub(crate) fn proc_state(&self, name: &str) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.proc_pid(name)?)).ok()?;
        stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).map(str::to_string)
    }

    /// Why `name` has not answered within `waited`: the programs it runs
    /// or waits for, if it has any living, else its own state and where it
    /// sleeps.
    pub(crate) fn state_of(&self, name: &str, waited: Duration) -> String {
        let pid = self.pid_of(name);
        if let Some(programs) = self.stuck_programs(name) {
            return format!("no answer within {waited:?}: process {name} (pid {pid}) waits for {programs}");
        }
        let host_pid = self.proc_pid(name);
        let state = self.proc_state(name);
        let state = state.as_deref().unwrap_or("?");
        let what = super::stuck::state_word(state.chars().next().unwrap_or('?'));
        let wchan = host_pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/wchan")).ok()).unwrap_or_default();
        let wchan = if wchan.is_empty() || wchan == "0" { String::new() } else { format!(", waiting in {wchan}") };
        format!("no answer within {waited:?}: process {name} (pid {pid}) is {what} ({state}){wchan}")
    }
}
