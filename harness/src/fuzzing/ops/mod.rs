//! The operation-sequence target: create, open, attach, write, read,
//! detach, stat, set, rm, lock and fork-and-exit over a few keys, with live
//! objects chosen by index. Every answer is judged by the model; data
//! written through one attachment must read back through every other
//! attachment of the same segment.

#![allow(unsafe_code)] // opts in: fork and raw mappings of the fuzz world

mod bare;
mod input;

pub use bare::run_bare;
pub use input::{MapOp, OpsInput, OpsOp, MAX_OPS};

use crate::sysv::{self, AttachFlags, Attachment, CreateOptions, Errno, Key, Mode};

use super::world::{pick, Att, Handle, World};

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

/// Performs one operation and judges it: the steps by family, segments
/// (create, open, remove), memory (attach, write, detach), control (stat,
/// set, lock, the INFO commands), processes (fork and exit) and mappings
/// ([`super::mapping`]).
fn step(w: &mut World, op: &OpsOp) {
    match *op {
        OpsOp::Create { key, size, excl, mode } => create(w, key, size, excl, mode),
        OpsOp::Open { key, size } => open(w, key, size),
        OpsOp::Remove { seg } => remove(w, seg),
        OpsOp::Attach { seg, read_only } => attach(w, seg, read_only),
        OpsOp::Write { att, offset, len, byte } => write(w, att, offset, len, byte),
        OpsOp::Detach { att } => detach(w, att),
        OpsOp::Stat { seg } => stat(w, seg),
        OpsOp::Set { seg, mode } => set(w, seg, mode),
        OpsOp::Lock { seg, lock } => lock_or_unlock(w, seg, lock),
        OpsOp::Info => info(w),
        // A fork costs more than all the other operations of an input
        // together (under libFuzzer, whose process is large): two per input.
        OpsOp::ForkExit if w.forks < 2 => {
            w.forks += 1;
            fork_exit(w)
        }
        OpsOp::ForkExit => {}
        OpsOp::Map(ref m) => super::mapping::step(w, m),
    }
}

// Segments.

/// `shmget` with `IPC_CREAT` (and `IPC_EXCL`), judged by the model.
fn create(w: &mut World, key: u8, size: u16, excl: bool, mode: u16) {
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

/// `shmget` without `IPC_CREAT`, judged by the model.
fn open(w: &mut World, key: u8, size: u16) {
    let key = w.key(key);
    let size = usize::from(size);
    let prediction = w.model.predict_get(key, size, 0);
    let got = sysv::open(Key::from_raw(key), size).map(|s| Handle { id: s.id(), owned: None });
    w.judge_get("open", key, size, 0, prediction, got);
}

/// `IPC_RMID` (through the guard when the input owns the segment).
fn remove(w: &mut World, seg: u8) {
    let Some(i) = pick(&w.segs, seg) else { return };
    let id = w.segs[i].id;
    let got = match w.segs[i].owned.take() {
        Some(owned) => owned.remove(),
        None => id.remove(),
    };
    match (got, w.model.remove(id.raw())) {
        (Ok(()), Ok(())) => {}
        (Err(e), Err(_)) => w.check_errno("IPC_RMID of a segment that is gone", &e, &[Errno::EINVAL, Errno::EIDRM]),
        (got, model) => w.disagree("IPC_RMID", got, model),
    }
}

// Memory.

/// `shmat`: the attached size is the segment's.
fn attach(w: &mut World, seg: u8, read_only: bool) {
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

/// Writes `len` bytes `byte` at `offset`, then reads them back through
/// every attachment of the segment.
fn write(w: &mut World, att: u8, offset: u16, len: u8, byte: u8) {
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
        (got, ro, ib) => w.disagree("a write through the wrapper", got, format!("read_only={ro} in_bounds={ib}")),
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

/// `shmdt` of a live attachment.
fn detach(w: &mut World, att: u8) {
    let Some(i) = pick(&w.atts, att) else { return };
    let a = w.atts.remove(i);
    super::mapping::detached(w, &a.att, a.id);
    if let Err(e) = a.att.detach() {
        w.disagree("shmdt of a live attachment", e.to_string(), "ok");
    }
}

// Control.

/// `IPC_STAT` against the model's segment.
fn stat(w: &mut World, seg: u8) {
    let Some(i) = pick(&w.segs, seg) else { return };
    let id = w.segs[i].id;
    match (id.stat(), w.model.segs.get(&id.raw())) {
        (Ok(st), Some(m)) => {
            let kernel = (st.key.raw(), st.size, st.nattch, st.mode.bits(), st.dest, st.locked, st.cpid, st.lpid);
            let model = (m.key, m.size, m.nattch, m.mode, m.dest, m.locked, w.pid, m.lpid);
            if kernel != model {
                w.disagree("IPC_STAT (key, size, nattch, mode, dest, locked, cpid, lpid)", kernel, model);
            }
        }
        (Err(e), None) => w.check_errno("IPC_STAT of a segment that is gone", &e, &[Errno::EINVAL, Errno::EIDRM]),
        (got, model) => w.disagree("IPC_STAT", got, model),
    }
}

/// `IPC_SET` of the mode.
fn set(w: &mut World, seg: u8, mode: u16) {
    let Some(i) = pick(&w.segs, seg) else { return };
    let id = w.segs[i].id;
    let mode = Mode::from_bits_truncate(u32::from(mode));
    match (id.set_mode(mode), w.model.segs.get_mut(&id.raw())) {
        (Ok(()), Some(m)) => m.mode = mode.bits(),
        (Err(e), None) => w.check_errno("IPC_SET of a segment that is gone", &e, &[Errno::EINVAL, Errno::EIDRM]),
        (got, model) => {
            let model = model.is_some();
            w.disagree("IPC_SET", got, model)
        }
    }
}

/// `SHM_LOCK` or `SHM_UNLOCK`.
fn lock_or_unlock(w: &mut World, seg: u8, lock: bool) {
    let Some(i) = pick(&w.segs, seg) else { return };
    let id = w.segs[i].id;
    let got = if lock { id.lock() } else { id.unlock() };
    match (got, w.model.segs.get_mut(&id.raw())) {
        (Ok(()), Some(m)) => m.locked = lock,
        (Err(e), None) => w.check_errno("SHM_LOCK of a segment that is gone", &e, &[Errno::EINVAL, Errno::EIDRM]),
        // Root of a user namespace is held to RLIMIT_MEMLOCK.
        (Err(e), Some(_)) if !real_root() => w.check_errno("SHM_LOCK", &e, &[Errno::ENOMEM, Errno::EPERM]),
        (got, model) => {
            let model = model.is_some();
            w.disagree("SHM_LOCK/SHM_UNLOCK", got, model)
        }
    }
}

/// `SHM_INFO` and `IPC_INFO` against the model, then the raw `shmctl`
/// commands ([`super::control::check`]), in a namespace of the input's own.
fn info(w: &mut World) {
    let usage = sysv::usage().expect("SHM_INFO");
    if !w.conf.private {
        return;
    }
    let kernel = (usage.used_ids as usize, usage.shm_tot);
    let model = (w.model.segs.len(), w.model.pages_used());
    if kernel != model {
        w.disagree("SHM_INFO (used_ids, shm_tot)", kernel, model);
    }
    let limits = sysv::limits().expect("IPC_INFO");
    let kernel = (limits.shmmax, limits.shmall, limits.shmmni);
    if kernel != (w.model.shmmax, w.model.shmall, w.model.shmmni) {
        w.disagree("IPC_INFO (shmmax, shmall, shmmni)", kernel, (w.model.shmmax, w.model.shmall, w.model.shmmni));
    }
    // The raw shmctl commands: INFO answers, SHM_STAT(_ANY) by
    // index, an invalid command, a bad buffer.
    super::control::check(w);
}

// Processes.

/// Root of the initial user namespace (whose uid_map maps all 2^32 ids),
/// not root of a user namespace made for an unprivileged run.
fn real_root() -> bool {
    nix::unistd::Uid::effective().is_root()
        && std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| m.contains("4294967295"))
}

/// A child inherits every attachment and exits: each segment's last
/// detach was its exit.
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
