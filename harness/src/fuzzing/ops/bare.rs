//! The same system calls as [`super::run`], without the model, the checks
//! or the log: the bare cost the oracle is measured against
//! (`cargo bench --bench fuzz_ops`).

#![allow(unsafe_code)] // opts in: fork in the fork-and-exit operation

use crate::sysv::{self, AttachFlags, Attachment, CreateOptions, Key, Mode};

use super::{OpsInput, OpsOp, MAX_OPS};
use crate::fuzzing::confine::{confinement, Confinement};
use crate::fuzzing::world::{pick, pool_key, Handle};

/// What a bare run holds between calls.
struct Bare {
    conf: &'static Confinement,
    segs: Vec<Handle>,
    atts: Vec<Attachment>,
    forks: usize,
}

/// Makes the calls [`super::run`] makes for `input`, judging nothing.
pub fn run_bare(input: &OpsInput) {
    let mut b = Bare { conf: confinement(), segs: Vec::new(), atts: Vec::new(), forks: 0 };
    let off = input.swarm_off & !1;
    for op in input.ops.iter().take(MAX_OPS) {
        if off & (1 << op.kind()) != 0 {
            continue;
        }
        b.step(op);
    }
    b.finish();
}

impl Bare {
    /// One operation's calls, by family as in [`super::run`].
    fn step(&mut self, op: &OpsOp) {
        match *op {
            OpsOp::Create { key, size, excl, mode } => self.create(key, size, excl, mode),
            OpsOp::Open { key, size } => self.segs.extend(
                sysv::open(Key::from_raw(self.key(key)), usize::from(size)).map(|s| Handle { id: s.id(), owned: None }),
            ),
            OpsOp::Remove { seg } => {
                if let Some(i) = pick(&self.segs, seg) {
                    let _ = match self.segs[i].owned.take() {
                        Some(o) => o.remove(),
                        None => self.segs[i].id.remove(),
                    };
                }
            }
            OpsOp::Attach { seg, read_only } => {
                if let Some(i) = pick(&self.segs, seg) {
                    let flags = if read_only { AttachFlags::RDONLY } else { AttachFlags::empty() };
                    self.atts.extend(Attachment::attach(self.segs[i].id, flags));
                }
            }
            OpsOp::Write { att, offset, len, byte } => self.write(att, offset, len, byte),
            OpsOp::Detach { att } => {
                if let Some(i) = pick(&self.atts, att) {
                    let _ = self.atts.remove(i).detach();
                }
            }
            OpsOp::Stat { .. } | OpsOp::Set { .. } | OpsOp::Lock { .. } | OpsOp::Info => self.control(op),
            OpsOp::ForkExit if self.forks < 2 => {
                self.forks += 1;
                fork_exit();
            }
            OpsOp::ForkExit => {}
            // The mapping operations are not part of the bare baseline.
            OpsOp::Map(_) => {}
        }
    }

    /// The pool's key for `pick`.
    fn key(&self, pick: u8) -> i32 {
        pool_key(self.conf, pick)
    }

    /// `shmget` with `IPC_CREAT`, kept if made.
    fn create(&mut self, key: u8, size: u16, excl: bool, mode: u16) {
        let k = self.key(key);
        let opts = CreateOptions::new(usize::from(size) + 1).mode(Mode::from_bits_truncate(u32::from(mode)));
        let got = if excl || k == 0 {
            opts.create_exclusive(Key::from_raw(k)).map(|o| Handle { id: o.id(), owned: Some(o) })
        } else {
            opts.open_or_create(Key::from_raw(k)).map(|s| Handle { id: s.id(), owned: None })
        };
        self.segs.extend(got);
    }

    /// A write, read back through every attachment of the segment.
    fn write(&self, att: u8, offset: u16, len: u8, byte: u8) {
        let atts = &self.atts;
        if let Some(i) = pick(atts, att) {
            if atts[i].fill(usize::from(offset), usize::from(len), byte).is_ok() {
                let id = atts[i].shmid();
                for other in atts.iter().filter(|o| o.shmid() == id) {
                    let mut buf = vec![0u8; usize::from(len)];
                    let _ = other.read_at(usize::from(offset), &mut buf);
                }
            }
        }
    }

    /// The control family: stat, set, lock and the INFO commands.
    fn control(&mut self, op: &OpsOp) {
        match *op {
            OpsOp::Stat { seg } => {
                if let Some(i) = pick(&self.segs, seg) {
                    let _ = self.segs[i].id.stat();
                }
            }
            OpsOp::Set { seg, mode } => {
                if let Some(i) = pick(&self.segs, seg) {
                    let _ = self.segs[i].id.set_mode(Mode::from_bits_truncate(u32::from(mode)));
                }
            }
            OpsOp::Lock { seg, lock } => {
                if let Some(i) = pick(&self.segs, seg) {
                    let _ = if lock { self.segs[i].id.lock() } else { self.segs[i].id.unlock() };
                }
            }
            OpsOp::Info => {
                let _ = sysv::usage();
                let _ = sysv::limits();
                if self.conf.private {
                    bare_control();
                }
            }
            _ => unreachable!("not a control operation: {op:?}"),
        }
    }

    /// Detaches everything, then removes what no guard removes.
    fn finish(self) {
        drop(self.atts);
        for h in self.segs {
            if h.owned.is_none() {
                let _ = h.id.remove();
            }
        }
    }
}

/// A child that exits at once, waited for.
fn fork_exit() {
    // SAFETY: as in `super::fork_exit`: the child only calls _exit.
    match unsafe { nix::unistd::fork() } {
        // SAFETY: _exit in the forked child touches nothing shared.
        Ok(nix::unistd::ForkResult::Child) => unsafe { libc::_exit(0) },
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let _ = nix::sys::wait::waitpid(child, None);
        }
        Err(_) => {}
    }
}

/// The calls of [`crate::fuzzing::control::check`], unjudged (for [`run_bare`]).
fn bare_control() {
    use sysv::{CtlBuffer, ShmctlCmd};
    let max = sysv::usage().map_or(0, |u| u.max_index);
    for index in 0..=max + 1 {
        for cmd in [ShmctlCmd::ShmStat, ShmctlCmd::ShmStatAny] {
            let _ = sysv::shmctl_command(index, cmd, CtlBuffer::Zeroed);
        }
    }
    let _ = sysv::shmctl_command(0, ShmctlCmd::Other(crate::fuzzing::control::INVALID_CMD), CtlBuffer::Zeroed);
    let _ = sysv::shmctl_command(0, ShmctlCmd::IpcInfo, CtlBuffer::Inaccessible);
}
