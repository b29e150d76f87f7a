//! The operation-sequence target: create, open, attach, write, read,
//! detach, stat, set, rm, lock and fork-and-exit over a few keys, with live
//! objects chosen by index. Every answer is judged by the model; data
//! written through one attachment must read back through every other
//! attachment of the same segment.

#![allow(unsafe_code)] // opts in: fork and raw mappings of the fuzz world

use arbitrary::Arbitrary;

use crate::sysv::{self, AttachFlags, Attachment, CreateOptions, Errno, Key, Mode};

use super::world::{Att, Handle, World};

/// Most operations in one input: keeps each input fast.
pub const MAX_OPS: usize = 64;

/// One input: a swarm switch and the operations.
///
/// Decoding takes operations until the bytes run out (not a coin flip per
/// element, as derived `take_rest` does), so every byte of an input means
/// something and random inputs are long enough to reach deep states.
#[derive(Debug, Clone)]
pub struct OpsInput {
    /// Bit `k` turns operation kind `k` off (swarm testing: inputs that
    /// never remove, say, reach deeper states of the others).
    pub swarm_off: u16,
    /// The operations, cut to [`MAX_OPS`].
    pub ops: Vec<OpsOp>,
}

/// One operation. Segments and attachments are picked by index among the
/// ones this input holds.
#[derive(Debug, Clone, Arbitrary)]
pub enum OpsOp {
    /// `shmget` with `IPC_CREAT` (and `IPC_EXCL`), key from the pool.
    Create {
        /// Key pick (0: IPC_PRIVATE).
        key: u8,
        /// Size, 1 to 65536.
        size: u16,
        /// `IPC_EXCL`.
        excl: bool,
        /// Permission bits.
        mode: u16,
    },
    /// `shmget` without `IPC_CREAT`.
    Open {
        /// Key pick.
        key: u8,
        /// Minimum size (0 to 65535).
        size: u16,
    },
    /// `shmat`.
    Attach {
        /// Segment pick.
        seg: u8,
        /// `SHM_RDONLY`.
        read_only: bool,
    },
    /// Write bytes, then read them back through every attachment of the segment.
    Write {
        /// Attachment pick.
        att: u8,
        /// Offset.
        offset: u16,
        /// Length.
        len: u8,
        /// The byte.
        byte: u8,
    },
    /// `shmdt`.
    Detach {
        /// Attachment pick.
        att: u8,
    },
    /// `IPC_STAT`.
    Stat {
        /// Segment pick.
        seg: u8,
    },
    /// `IPC_SET` of the mode.
    Set {
        /// Segment pick.
        seg: u8,
        /// New permission bits.
        mode: u16,
    },
    /// `IPC_RMID` (through the guard when the input owns it).
    Remove {
        /// Segment pick.
        seg: u8,
    },
    /// `SHM_LOCK` / `SHM_UNLOCK`.
    Lock {
        /// Segment pick.
        seg: u8,
        /// Lock (else unlock).
        lock: bool,
    },
    /// A child inherits every attachment and exits.
    ForkExit,
    /// `IPC_INFO` and `SHM_INFO` against the model.
    Info,
    /// Attach at an address, detach at an address, change a mapping
    /// (see [`super::mapping`]).
    Map(super::mapping::MapOp),
}

impl<'a> Arbitrary<'a> for OpsInput {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let swarm_off = u.arbitrary()?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            ops.push(u.arbitrary()?);
        }
        Ok(OpsInput { swarm_off, ops })
    }

    fn arbitrary_take_rest(mut u: arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

impl OpsOp {
    fn kind(&self) -> u16 {
        match self {
            OpsOp::Create { .. } => 0,
            OpsOp::Open { .. } => 1,
            OpsOp::Attach { .. } => 2,
            OpsOp::Write { .. } => 3,
            OpsOp::Detach { .. } => 4,
            OpsOp::Stat { .. } => 5,
            OpsOp::Set { .. } => 6,
            OpsOp::Remove { .. } => 7,
            OpsOp::Lock { .. } => 8,
            OpsOp::ForkExit => 9,
            OpsOp::Info => 10,
            OpsOp::Map(_) => 11,
        }
    }
}

/// Runs one input against the kernel and the model; panics on any
/// disagreement or leak.
pub fn run(input: &OpsInput) {
    let mut w = World::new();
    let history = input.clone();
    w.history = Some(Box::new(move |upto| {
        history.ops.iter().take(upto + 1).enumerate().map(|(i, op)| format!("  #{i} {op:?}\n")).collect()
    }));
    // Creation is never switched off: without it nothing else has an object.
    let off = input.swarm_off & !1;
    for (i, op) in input.ops.iter().take(MAX_OPS).enumerate() {
        if off & (1 << op.kind()) != 0 {
            continue;
        }
        w.step = i;
        step(&mut w, op);
    }
    w.finish();
}

fn pick<T>(v: &[T], n: u8) -> Option<usize> {
    (!v.is_empty()).then(|| usize::from(n) % v.len())
}

fn step(w: &mut World, op: &OpsOp) {
    match *op {
        OpsOp::Create { key, size, excl, mode } => {
            let key = w.key(key);
            let size = usize::from(size) + 1;
            let mode = Mode::from_bits_truncate(u32::from(mode));
            let mut flags = sysv::raw::IPC_CREAT | i32::from(mode.bits());
            if excl {
                flags |= sysv::raw::IPC_EXCL;
            }
            let prediction = w.model.predict_get(key, size, flags);
            let opts = CreateOptions::new(size).mode(mode);
            // Exclusive and private creations come with a guard; the rest may
            // find an existing segment, so the wrapper gives no ownership.
            let got = if excl || key == 0 {
                opts.create_exclusive(Key::from_raw(key)).map(|o| Handle { id: o.id(), owned: Some(o) })
            } else {
                opts.open_or_create(Key::from_raw(key)).map(|s| Handle { id: s.id(), owned: None })
            };
            w.judge_get("create", key, size, flags, prediction, got);
        }
        OpsOp::Open { key, size } => {
            let key = w.key(key);
            let size = usize::from(size);
            let prediction = w.model.predict_get(key, size, 0);
            let got = sysv::open(Key::from_raw(key), size).map(|s| Handle { id: s.id(), owned: None });
            w.judge_get("open", key, size, 0, prediction, got);
        }
        OpsOp::Attach { seg, read_only } => {
            let Some(i) = pick(&w.segs, seg) else { return };
            let id = w.segs[i].id;
            let flags = if read_only { AttachFlags::RDONLY } else { AttachFlags::empty() };
            match (Attachment::attach(id, flags), w.model.segs.contains_key(&id.raw())) {
                (Ok(att), true) => {
                    if att.size() != w.model.segs[&id.raw()].size {
                        w.disagree("the attached size", att.size(), w.model.segs[&id.raw()].size);
                    }
                    w.model.attach(id.raw(), w.pid);
                    w.atts.push(Att { att, id: id.raw() });
                }
                (Err(e), false) => w.check_errno("shmat of a segment that is gone", &e, &[Errno::EINVAL, Errno::EIDRM]),
                (got, exists) => w.disagree("shmat", got.map(|a| a.shmid()), exists),
            }
        }
        OpsOp::Write { att, offset, len, byte } => {
            let Some(i) = pick(&w.atts, att) else { return };
            let id = w.atts[i].id;
            let (offset, len) = (usize::from(offset), usize::from(len));
            let a = &w.atts[i].att;
            let result = a.fill(offset, len, byte);
            // The wrapper's bounds: the size, cut by mapping changes.
            let in_bounds = offset + len <= a.size().min(a.limit());
            match (result, a.is_read_only(), in_bounds) {
                (Err(sysv::Error::ReadOnly { .. }), true, _) | (Err(sysv::Error::OutOfBounds { .. }), false, false) => {
                    return;
                }
                (Ok(()), false, true) => {}
                (got, ro, ib) => {
                    w.disagree("a write through the wrapper", got, format!("read_only={ro} in_bounds={ib}"))
                }
            }
            // Every attachment of the segment reads back what was just written.
            for other in w.atts.iter().filter(|o| o.id == id && offset + len <= o.att.limit()) {
                let mut buf = vec![0u8; len];
                other.att.read_at(offset, &mut buf).expect("in bounds");
                if let Some(at) = buf.iter().position(|b| *b != byte) {
                    w.disagree(
                        &format!("byte {} of {offset}..+{len} read through another attachment", offset + at),
                        buf[at],
                        byte,
                    );
                }
            }
        }
        OpsOp::Detach { att } => {
            let Some(i) = pick(&w.atts, att) else { return };
            let a = w.atts.remove(i);
            super::mapping::detached(w, &a.att, a.id);
            if let Err(e) = a.att.detach() {
                w.disagree("shmdt of a live attachment", e.to_string(), "ok");
            }
        }
        OpsOp::Stat { seg } => {
            let Some(i) = pick(&w.segs, seg) else { return };
            let id = w.segs[i].id;
            match (id.stat(), w.model.segs.get(&id.raw())) {
                (Ok(st), Some(m)) => {
                    let kernel =
                        (st.key.raw(), st.size, st.nattch, st.mode.bits(), st.dest, st.locked, st.cpid, st.lpid);
                    let model = (m.key, m.size, m.nattch, m.mode, m.dest, m.locked, w.pid, m.lpid);
                    if kernel != model {
                        w.disagree("IPC_STAT (key, size, nattch, mode, dest, locked, cpid, lpid)", kernel, model);
                    }
                }
                (Err(e), None) => {
                    w.check_errno("IPC_STAT of a segment that is gone", &e, &[Errno::EINVAL, Errno::EIDRM])
                }
                (got, model) => w.disagree("IPC_STAT", got, model),
            }
        }
        OpsOp::Set { seg, mode } => {
            let Some(i) = pick(&w.segs, seg) else { return };
            let id = w.segs[i].id;
            let mode = Mode::from_bits_truncate(u32::from(mode));
            match (id.set_mode(mode), w.model.segs.get_mut(&id.raw())) {
                (Ok(()), Some(m)) => m.mode = mode.bits(),
                (Err(e), None) => {
                    w.check_errno("IPC_SET of a segment that is gone", &e, &[Errno::EINVAL, Errno::EIDRM])
                }
                (got, model) => {
                    let model = model.is_some();
                    w.disagree("IPC_SET", got, model)
                }
            }
        }
        OpsOp::Remove { seg } => {
            let Some(i) = pick(&w.segs, seg) else { return };
            let id = w.segs[i].id;
            let got = match w.segs[i].owned.take() {
                Some(owned) => owned.remove(),
                None => id.remove(),
            };
            match (got, w.model.remove(id.raw())) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(_)) => {
                    w.check_errno("IPC_RMID of a segment that is gone", &e, &[Errno::EINVAL, Errno::EIDRM])
                }
                (got, model) => w.disagree("IPC_RMID", got, model),
            }
        }
        OpsOp::Lock { seg, lock } => {
            let Some(i) = pick(&w.segs, seg) else { return };
            let id = w.segs[i].id;
            let got = if lock { id.lock() } else { id.unlock() };
            match (got, w.model.segs.get_mut(&id.raw())) {
                (Ok(()), Some(m)) => m.locked = lock,
                (Err(e), None) => {
                    w.check_errno("SHM_LOCK of a segment that is gone", &e, &[Errno::EINVAL, Errno::EIDRM])
                }
                // Root of a user namespace is held to RLIMIT_MEMLOCK.
                (Err(e), Some(_)) if !real_root() => w.check_errno("SHM_LOCK", &e, &[Errno::ENOMEM, Errno::EPERM]),
                (got, model) => {
                    let model = model.is_some();
                    w.disagree("SHM_LOCK/SHM_UNLOCK", got, model)
                }
            }
        }
        // A fork costs more than all the other operations of an input
        // together (under libFuzzer, whose process is large): two per input.
        OpsOp::ForkExit if w.forks < 2 => {
            w.forks += 1;
            fork_exit(w)
        }
        OpsOp::ForkExit => {}
        OpsOp::Info => {
            let usage = sysv::usage().expect("SHM_INFO");
            if w.conf.private {
                let kernel = (usage.used_ids as usize, usage.shm_tot);
                let model = (w.model.segs.len(), w.model.pages_used());
                if kernel != model {
                    w.disagree("SHM_INFO (used_ids, shm_tot)", kernel, model);
                }
                let limits = sysv::limits().expect("IPC_INFO");
                let kernel = (limits.shmmax, limits.shmall, limits.shmmni);
                if kernel != (w.model.shmmax, w.model.shmall, w.model.shmmni) {
                    w.disagree(
                        "IPC_INFO (shmmax, shmall, shmmni)",
                        kernel,
                        (w.model.shmmax, w.model.shmall, w.model.shmmni),
                    );
                }
                // The raw shmctl commands: INFO answers, SHM_STAT(_ANY) by
                // index, an invalid command, a bad buffer.
                super::control::check(w);
            }
        }
        OpsOp::Map(ref m) => super::mapping::step(w, m),
    }
}

/// Root of the initial user namespace (whose uid_map maps all 2^32 ids),
/// not root of a user namespace made for an unprivileged run.
fn real_root() -> bool {
    nix::unistd::Uid::effective().is_root()
        && std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| m.contains("4294967295"))
}

fn fork_exit(w: &mut World) {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    // SAFETY: the child only calls _exit: nothing that could take a lock
    // another thread of this process held at the fork.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => {}
                other => panic!("fork-and-exit child ended badly: {other:?}"),
            }
            // The child had every attachment: each segment's last detach was its exit.
            let ids: Vec<i32> = w.atts.iter().map(|a| a.id).collect();
            for id in ids {
                if let Some(s) = w.model.segs.get_mut(&id) {
                    s.lpid = child.as_raw();
                }
            }
        }
        Err(e) => panic!("fork: {e}"),
    }
}

/// The calls of [`super::control::check`], unjudged (for [`run_bare`]).
fn bare_control() {
    use sysv::{CtlBuffer, ShmctlCmd};
    let max = sysv::usage().map_or(0, |u| u.max_index);
    for index in 0..=max + 1 {
        for cmd in [ShmctlCmd::ShmStat, ShmctlCmd::ShmStatAny] {
            let _ = sysv::shmctl_command(index, cmd, CtlBuffer::Zeroed);
        }
    }
    let _ = sysv::shmctl_command(0, ShmctlCmd::Other(super::control::INVALID_CMD), CtlBuffer::Zeroed);
    let _ = sysv::shmctl_command(0, ShmctlCmd::IpcInfo, CtlBuffer::Inaccessible);
}

/// The same system calls as [`run`], without the model, the checks or the
/// log: the bare cost the oracle is measured against (`cargo bench --bench fuzz_ops`).
pub fn run_bare(input: &OpsInput) {
    let conf = super::confine::confinement();
    let key = |pick: u8| super::world::pool_key(conf, pick);
    let mut segs: Vec<Handle> = Vec::new();
    let mut atts: Vec<Attachment> = Vec::new();
    let mut forks = 0;
    let off = input.swarm_off & !1;
    for op in input.ops.iter().take(MAX_OPS) {
        if off & (1 << op.kind()) != 0 {
            continue;
        }
        match *op {
            OpsOp::Create { key: k, size, excl, mode } => {
                let k = key(k);
                let opts = CreateOptions::new(usize::from(size) + 1).mode(Mode::from_bits_truncate(u32::from(mode)));
                let got = if excl || k == 0 {
                    opts.create_exclusive(Key::from_raw(k)).map(|o| Handle { id: o.id(), owned: Some(o) })
                } else {
                    opts.open_or_create(Key::from_raw(k)).map(|s| Handle { id: s.id(), owned: None })
                };
                segs.extend(got);
            }
            OpsOp::Open { key: k, size } => segs.extend(
                sysv::open(Key::from_raw(key(k)), usize::from(size)).map(|s| Handle { id: s.id(), owned: None }),
            ),
            OpsOp::Attach { seg, read_only } => {
                if let Some(i) = pick(&segs, seg) {
                    let flags = if read_only { AttachFlags::RDONLY } else { AttachFlags::empty() };
                    atts.extend(Attachment::attach(segs[i].id, flags));
                }
            }
            OpsOp::Write { att, offset, len, byte } => {
                if let Some(i) = pick(&atts, att) {
                    if atts[i].fill(usize::from(offset), usize::from(len), byte).is_ok() {
                        let id = atts[i].shmid();
                        for other in atts.iter().filter(|o| o.shmid() == id) {
                            let mut buf = vec![0u8; usize::from(len)];
                            let _ = other.read_at(usize::from(offset), &mut buf);
                        }
                    }
                }
            }
            OpsOp::Detach { att } => {
                if let Some(i) = pick(&atts, att) {
                    let _ = atts.remove(i).detach();
                }
            }
            OpsOp::Stat { seg } => {
                if let Some(i) = pick(&segs, seg) {
                    let _ = segs[i].id.stat();
                }
            }
            OpsOp::Set { seg, mode } => {
                if let Some(i) = pick(&segs, seg) {
                    let _ = segs[i].id.set_mode(Mode::from_bits_truncate(u32::from(mode)));
                }
            }
            OpsOp::Remove { seg } => {
                if let Some(i) = pick(&segs, seg) {
                    let _ = match segs[i].owned.take() {
                        Some(o) => o.remove(),
                        None => segs[i].id.remove(),
                    };
                }
            }
            OpsOp::Lock { seg, lock } => {
                if let Some(i) = pick(&segs, seg) {
                    let _ = if lock { segs[i].id.lock() } else { segs[i].id.unlock() };
                }
            }
            OpsOp::ForkExit if forks < 2 => {
                forks += 1;
                // SAFETY: as in `fork_exit`: the child only calls _exit.
                match unsafe { nix::unistd::fork() } {
                    // SAFETY: _exit in the forked child touches nothing shared.
                    Ok(nix::unistd::ForkResult::Child) => unsafe { libc::_exit(0) },
                    Ok(nix::unistd::ForkResult::Parent { child }) => {
                        let _ = nix::sys::wait::waitpid(child, None);
                    }
                    Err(_) => {}
                }
            }
            OpsOp::ForkExit => {}
            OpsOp::Info => {
                let _ = sysv::usage();
                let _ = sysv::limits();
                if conf.private {
                    bare_control();
                }
            }
            // The mapping operations are not part of the bare baseline.
            OpsOp::Map(_) => {}
        }
    }
    drop(atts);
    for h in segs {
        if h.owned.is_none() {
            let _ = h.id.remove();
        }
    }
}
