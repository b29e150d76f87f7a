//! The segment steps an actor performs: `key ... ftok`, `create`, `open`,
//! `stat`, `set`, `rm`, `lock` and `unlock`; and the journaling of the
//! identity a step gives a segment (a creation, an `IPC_SET`) before the
//! step is answered.

use crate::scenario::{HugeSize, KeyRef, Op};
use crate::sysv::{self, GetFlags, Key, Shmid};

use crate::interp::judge::Judge;
use crate::interp::{Failure, Globals, Identity, Outcome, Value};
use crate::runner::actor::{answer, fail, shmid_of, target_shmid, Actor};
use crate::runner::journal;

/// The mode, uid and gid a `set` step gives (`None`: unchanged).
type SetFields = (Option<u16>, Option<u32>, Option<u32>);

impl Actor<'_> {
    /// Performs one of the steps of this module.
    pub(super) fn segment_step(&mut self, index: usize, op: &Op, globals: &Globals) -> Outcome {
        // Literal keys get the same host-mode translation as in the supervisor.
        let judge = Judge { globals, keys: &self.keys };
        let key_of = |k: &KeyRef| -> Key { Key::from_raw(judge.resolve_key(k)) };
        match op {
            Op::Ftok { path, proj, .. } => {
                let call = format!("ftok({path:?}, {proj:#04x})");
                answer(call, sysv::ftok(self.dir.join(path), *proj).map(|k| Value::Key(k.raw())))
            }
            Op::Create { key, size, .. } => self.create(index, op, key_of(key), *size),
            Op::Open { key, size, mode, excl, flags, .. } => {
                let key = key_of(key);
                let size = usize::try_from(*size).unwrap_or(usize::MAX);
                let raw =
                    i32::from(mode.unwrap_or(0)) | if *excl { GetFlags::EXCL.bits() } else { 0 } | flags.unwrap_or(0);
                let call = format!("shmget({key}, {size}, {})", sysv::describe_get_flags(raw));
                self.shmget(call, index, op, key, size, raw)
            }
            Op::Stat { segment } => {
                let id = target_shmid(globals, segment);
                answer(format!("shmctl({id}, IPC_STAT)"), id.stat().map(Value::Stat))
            }
            Op::Set { segment, mode, uid, gid, ignored } => {
                let ignored = sysv::IgnoredFields::new(ignored);
                self.set(index, shmid_of(globals, segment), (*mode, *uid, *gid), ignored)
            }
            Op::Remove { segment } => {
                let id = target_shmid(globals, segment);
                answer(format!("shmctl({id}, IPC_RMID)"), id.remove().map(|()| Value::Unit))
            }
            Op::Lock { segment } | Op::Unlock { segment } => {
                let id = shmid_of(globals, segment);
                let lock = matches!(op, Op::Lock { .. });
                let call = format!("shmctl({id}, {})", if lock { "SHM_LOCK" } else { "SHM_UNLOCK" });
                answer(call, if lock { id.lock() } else { id.unlock() }.map(|()| Value::Unit))
            }
            _ => unreachable!("`{}` is not a segment step", op.keyword()),
        }
    }

    /// `create`: `shmget` with `IPC_CREAT` and the step's flags, then the
    /// new segment's identity recorded before the step is answered.
    fn create(&mut self, index: usize, op: &Op, key: Key, size: u64) -> Outcome {
        let Op::Create { mode, excl, hugetlb, noreserve, huge_size, flags: raw_flags, .. } = op else {
            unreachable!("`{}` is not `create`", op.keyword())
        };
        let mut flags = GetFlags::CREAT;
        flags.set(GetFlags::EXCL, *excl);
        flags.set(GetFlags::HUGETLB, *hugetlb);
        flags.set(GetFlags::NORESERVE, *noreserve);
        let huge = huge_size.map_or(0, |h| match h {
            HugeSize::Mb2 => sysv::HugePageSize::Mb2.flag_bits(),
            HugeSize::Gb1 => sysv::HugePageSize::Gb1.flag_bits(),
        });
        // The mode's bits above 0777 go in raw, as a C caller's would.
        let shown = flags.bits() | huge | i32::from(*mode) | raw_flags.unwrap_or(0);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let call = format!("shmget({key}, {size}, {})", sysv::describe_get_flags(shown));
        self.shmget(call, index, op, key, size, shown)
    }

    /// The `shmget` of `create` and `open`. One that can create (the
    /// language's rule, [`Op::creates`]: `create`, `open` of `IPC_PRIVATE`)
    /// is preceded by an intent in the journal (host mode), and the segment
    /// it creates is recorded before the step is answered.
    fn shmget(&self, call: String, index: usize, op: &Op, key: Key, size: usize, raw: i32) -> Outcome {
        let creates = op.creates(key.raw());
        if creates {
            if let Err(message) = self.journal_intent(index, key) {
                return Outcome { call, result: Err(Failure::Refused { message }) };
            }
        }
        match sysv::shmget_raw(key, size, raw) {
            Ok(id) if creates => self.created(call, index, id, key),
            Ok(id) => Outcome { call, result: Ok(Value::Shmid(id.raw())) },
            Err(e) => fail(call, e),
        }
    }

    /// The answer of a `shmget` that created `id`: its identity, recorded
    /// (and journaled in host isolation) before the step is answered.
    fn created(&self, call: String, index: usize, id: Shmid, key: Key) -> Outcome {
        match self.record_creation(index, id, key) {
            Ok(identity) => Outcome { call, result: Ok(Value::Created(identity)) },
            Err(message) => Outcome { call, result: Err(Failure::Refused { message }) },
        }
    }

    /// `set`: `IPC_SET` with the values the step gives and the segment's
    /// current ones for the rest.
    fn set(&mut self, index: usize, id: Shmid, given: SetFields, ignored: sysv::IgnoredFields) -> Outcome {
        let (mode, uid, gid) = given;
        // IPC_SET takes uid, gid and mode together: start from the
        // current values, read without the read-permission check
        // (SHM_STAT_ANY) when IPC_STAT is refused, so that the
        // answer is IPC_SET's own (EPERM for a non-owner).
        let current = match id.stat() {
            Ok(st) => st,
            Err(e) => match sysv::all_segments().ok().and_then(|all| all.into_iter().find(|(i, _)| *i == id)) {
                Some((_, st)) => st,
                None => return fail(format!("shmctl({id}, IPC_STAT) before IPC_SET"), e),
            },
        };
        // A mode's bits above 0777 go in raw (the kernel keeps the low nine).
        let mode = mode.map_or(u32::from(current.mode.bits()), u32::from);
        let (uid, gid) = (uid.unwrap_or(current.uid), gid.unwrap_or(current.gid));
        let shown = if mode <= 0o777 { format!("{mode:04o}") } else { format!("0{mode:o}") };
        let others: String = ignored.given().map(|(f, v)| format!(", {}={v}", f.name())).collect();
        let call = format!("shmctl({id}, IPC_SET, uid={uid}, gid={gid}, mode={shown}{others})");
        let buf = sysv::CtlBuffer::Set { uid, gid, mode, ignored };
        match sysv::shmctl_command(id.raw(), sysv::ShmctlCmd::IpcSet, buf) {
            // IPC_SET changed the ctime: the segment's new identity.
            Ok(_) => self.reset_answer(call, index, id),
            Err(e) => fail(call, e),
        }
    }

    /// The answer of an `IPC_SET` that succeeded (`set`, or `shmctl ...
    /// IPC_SET`): the segment's new identity, journaled first in host mode.
    pub(super) fn reset_answer(&self, call: String, index: usize, id: Shmid) -> Outcome {
        match self.record_reset(index, id) {
            Ok(Some(identity)) => Outcome { call, result: Ok(Value::Reset(identity)) },
            Ok(None) => Outcome { call, result: Ok(Value::Unit) },
            Err(message) => Outcome { call, result: Err(Failure::Refused { message }) },
        }
    }

    /// After a create: the new segment's identity (`IPC_STAT`, or the
    /// `/proc/sysvipc/shm` row when the mode forbids reading), appended to
    /// the journal in host mode, all before the step is answered. If either
    /// fails, the segment (ours: it was created a moment ago) is removed
    /// and the step refused.
    fn record_creation(&self, index: usize, id: Shmid, key: Key) -> Result<Identity, String> {
        let identity = match crate::runner::host::current_identity(id.raw()) {
            Ok(Some(i)) => i,
            Ok(None) | Err(_) => {
                let _ = id.remove();
                return Err(format!("shmid {id}: cannot read its identity (IPC_STAT, /proc/sysvipc/shm); removed"));
            }
        };
        if let Err(e) = self.journal_append(index, identity, key) {
            let _ = id.remove();
            return Err(format!("shmid {id}: {e}; removed"));
        }
        Ok(identity)
    }

    /// After a `set`: the segment's new identity, journaled (host mode).
    fn record_reset(&self, index: usize, id: Shmid) -> Result<Option<Identity>, String> {
        let Some(identity) = crate::runner::host::current_identity(id.raw())? else { return Ok(None) };
        let key = id.stat().map_or(0, |st| st.key.raw());
        self.journal_append(index, identity, Key::from_raw(key))?;
        Ok(Some(identity))
    }

    /// Appends, before a `shmget` that can create at `key`, the intent of
    /// step `index` to the run's journal (host mode; nothing otherwise): a
    /// SIGKILL of every process of the run between the `shmget` and its
    /// record leaves this trace for the sweep, which reports (never
    /// removes) what the creation may have left.
    ///
    /// # Errors
    /// The message: the journal cannot be written (nothing is created).
    fn journal_intent(&self, index: usize, key: Key) -> Result<(), String> {
        let Some(fd) = self.journal else { return Ok(()) };
        let intent = journal::Intent {
            scenario: self.scenario.file.clone(),
            line: self.scenario.steps[index].line,
            process: self.name.clone(),
            cpid: journal::host_pid(),
            key: key.raw(),
            ns: journal::ipc_namespace().ok_or("cannot read /proc/thread-self/ns/ipc")?,
            since: journal::wall_seconds(),
        };
        journal::append_intent(fd, &intent)
            .map_err(|e| format!("the run's journal, before creating: {e}; nothing created"))
    }

    /// Appends the segment step `index` gave `identity` to the run's
    /// journal (host mode; nothing otherwise).
    fn journal_append(&self, index: usize, identity: Identity, key: Key) -> Result<(), String> {
        let Some(fd) = self.journal else { return Ok(()) };
        let step = &self.scenario.steps[index];
        let rec = journal::Record {
            scenario: self.scenario.file.clone(),
            line: step.line,
            process: self.name.clone(),
            shmid: identity.shmid,
            // The creator is this process: its pid as the host sees it.
            cpid: journal::host_pid(),
            ctime: identity.ctime,
            key: key.raw(),
            ns: journal::ipc_namespace().ok_or("cannot read /proc/thread-self/ns/ipc")?,
        };
        journal::append(fd, &rec).map_err(|e| e.to_string())
    }
}
