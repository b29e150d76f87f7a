//! The steps the supervisor answers itself, and host mode's guards: a key
//! or a captured shmid that is not the scenario's own stops it.

use nix::sys::signal::{kill, Signal};

use crate::scenario::{Op, Step};
use crate::sysv::{self, Key};

use crate::interp::judge::StepResult;
use crate::interp::{Failure, Global, Outcome, Value};
use crate::report::Isolation;
use crate::runner::host;
use crate::runner::supervisor::{Abort, Supervisor};

impl Supervisor<'_> {
    /// Local step `k`, answered here, with its start and end recorded.
    pub(super) fn timed_local_step(&mut self, k: usize) -> Result<StepResult, Abort> {
        let start = std::time::Instant::now();
        let sc = self.sc;
        let result = self.local_step(&sc.steps[k]);
        self.timing.local(k, start, std::time::Instant::now());
        result
    }

    /// In host mode: refuse a key that a segment not of this scenario holds
    /// (one whose identity is not among those the scenario recorded).
    pub(super) fn host_guard(&self, key: i32) -> Result<(), String> {
        if self.opts.isolation != Isolation::Host || key == 0 {
            return Ok(());
        }
        let ours = self.identities();
        let rows = sysv::proc_segments().map_err(|e| e.to_string())?;
        match rows.iter().find(|r| r.key.raw() == key && !host::row_is_ours(r, &ours)) {
            Some(r) => Err(format!(
                "key {} belongs to a segment this scenario did not create (shmid {}, cpid {}); host isolation never touches it — run with namespace isolation or change the key",
                Key::from_raw(key),
                r.shmid,
                r.cpid
            )),
            None => Ok(()),
        }
    }

    /// In host mode, refuses a create or open of a key held by a segment
    /// this scenario did not create, and a step that would change, attach
    /// or remove a segment by a name whose shmid is now another segment's.
    pub(super) fn guard(&self, step: &Step) -> Result<(), Abort> {
        if let Op::Create { key, .. } | Op::Open { key, .. } = &step.op {
            let k = self.resolve_key(key);
            self.host_guard(k).map_err(|m| Abort::Harness(format!("line {}: {m}", step.line)))?;
        }
        self.guard_segment(step)
    }

    /// Host mode: a segment name keeps its shmid after `rm`, and a shmid
    /// can come back as another segment (`kernel.shm_next_id`, CRIU, seq
    /// wrap-around): `rm s` twice removed it, `attach`/`poke` wrote into it,
    /// `set` re-recorded it as the scenario's. Before such a step, the
    /// shmid must be gone (the kernel then answers EINVAL/EIDRM) or still
    /// show an identity the scenario recorded. Not checked once a process
    /// of the scenario has moved to another IPC namespace (`unshare ipc`,
    /// `setns`): its shmids are not the supervisor's to look up.
    fn guard_segment(&self, step: &Step) -> Result<(), Abort> {
        use crate::sysv::ShmctlCmd as C;
        if self.opts.isolation != Isolation::Host {
            return Ok(());
        }
        let segment = match &step.op {
            Op::Remove { segment: crate::scenario::CtlTarget::Segment(segment) }
            | Op::Attach { segment: crate::scenario::CtlTarget::Segment(segment), .. }
            | Op::Set { segment, .. }
            | Op::Lock { segment }
            | Op::Unlock { segment } => segment,
            Op::Shmctl { target: crate::scenario::CtlTarget::Segment(segment), cmd, .. }
                if !matches!(cmd, C::IpcStat | C::ShmStat | C::ShmStatAny | C::IpcInfo | C::ShmInfo) =>
            {
                segment
            }
            _ => return Ok(()),
        };
        let Some(Global::Segment(id)) = self.books.globals.get(segment) else { return Ok(()) };
        if self
            .sc
            .steps
            .iter()
            .take_while(|s| s.line < step.line)
            .any(|s| matches!(s.op, Op::Unshare | Op::Setns { .. }))
        {
            return Ok(());
        }
        match host::current_identity(*id) {
            Ok(None) => Ok(()),
            Ok(Some(now)) if self.identities().contains(&now) => Ok(()),
            Ok(Some(now)) => Err(Abort::Harness(format!(
                "line {}: `{segment}` (shmid {id}) is now another segment (cpid {}, ctime {}), not one this scenario created; host isolation never touches it",
                step.line, now.cpid, now.ctime
            ))),
            Err(e) => Err(Abort::Harness(format!("line {}: whose segment shmid {id} (`{segment}`) is cannot be told: {e}", step.line))),
        }
    }

    /// In host mode, a shmid captured from a program's output must be a
    /// segment this scenario created, by identity: a program could print any
    /// id, and later steps (`rm`) must never reach a segment that is not ours.
    pub(super) fn guard_captures(&self, step: &Step, binds: &[(String, Global)]) -> Result<(), Abort> {
        if self.opts.isolation != Isolation::Host {
            return Ok(());
        }
        for (name, g) in binds {
            let Global::Segment(id) = g else { continue };
            let mine = host::current_identity(*id).ok().flatten().is_some_and(|now| self.identities().contains(&now));
            if !mine {
                return Err(Abort::Harness(format!(
                    "line {}: `{name}` captured shmid {id}, which is not a segment this scenario's processes created; host isolation never touches it",
                    step.line
                )));
            }
        }
        Ok(())
    }

    /// The steps the supervisor performs itself.
    pub(super) fn local_step(&mut self, step: &Step) -> Result<StepResult, Abort> {
        let local = |call: String, result: Result<Value, Failure>| Ok(StepResult::Answered(Outcome { call, result }));
        match &step.op {
            Op::KeyLiteral { value, .. } => {
                let v = self.translate_key(*value);
                local(format!("key {}", Key::from_raw(v)), Ok(Value::Key(v)))
            }
            Op::Segments => {
                let ours = self.identities();
                match sysv::proc_segments() {
                    Ok(rows) => {
                        let n = rows
                            .iter()
                            .filter(|r| self.opts.isolation == Isolation::Namespace || host::row_is_ours(r, &ours))
                            .count();
                        local("count /proc/sysvipc/shm".into(), Ok(Value::Number(n as crate::scenario::Number)))
                    }
                    Err(e) => Err(Abort::Harness(format!("line {}: {e}", step.line))),
                }
            }
            Op::Lookup { key } => {
                let k = self.resolve_key(key);
                let call = format!("lookup {} in /proc/sysvipc/shm", Key::from_raw(k));
                match sysv::proc_segments() {
                    Ok(rows) => local(call, Ok(Value::Present(rows.iter().any(|r| r.key.raw() == k)))),
                    Err(e) => local(call, Err(Failure::Refused { message: e.to_string() })),
                }
            }
            Op::Kill => {
                let pid = self.pid_of(&step.process);
                kill(pid, Signal::SIGKILL)
                    .map_err(|e| Abort::Harness(format!("line {}: kill({pid}, SIGKILL): {e}", step.line)))?;
                Ok(StepResult::Ended(self.ending_of(&step.process)))
            }
            _ => unreachable!("only local steps come here"),
        }
    }
}
