//! What one fuzz input acts on: the model, the live objects the wrapper
//! returned (picked by index, never by raw id), and the checks that end
//! every input: the kernel's view agrees with the model, and nothing is left
//! behind, neither a segment nor a mapping.

#![allow(unsafe_code)] // opts in: fork and raw mappings of the fuzz world

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sysv::{self, Attachment, Errno, Key, OwnedSegment, Shmid};

use super::confine::{confinement, Confinement};
use super::model::{GetPrediction, Model};

/// Whether the last input ended with the namespace proven clean.
static CLEAN: AtomicBool = AtomicBool::new(false);

/// A segment handle the input holds.
pub struct Handle {
    /// Its id.
    pub id: Shmid,
    /// The guard, if the wrapper made this process the owner.
    pub owned: Option<OwnedSegment>,
}

/// An attachment the input holds.
pub struct Att {
    /// The wrapper's attachment.
    pub att: Attachment,
    /// Of which segment.
    pub id: i32,
}

/// The state of one input.
pub struct World {
    /// Where we run.
    pub conf: &'static Confinement,
    /// The model.
    pub model: Model,
    /// Segment handles, in creation order.
    pub segs: Vec<Handle>,
    /// Attachments, in creation order.
    pub atts: Vec<Att>,
    /// This process.
    pub pid: i32,
    /// Index of the step being performed.
    pub step: usize,
    /// Fork-and-exit operations so far.
    pub forks: usize,
    /// Renders the input's steps up to a given one, for failure messages
    /// (built only when something fails: formatting every step of every
    /// input would cost more than the checks).
    pub history: Option<Box<dyn Fn(usize) -> String>>,
    /// Where attachments were, to prove them gone after the input.
    pub dropped: Vec<usize>,
    /// Notes after the steps (cleanup stages), for failure messages.
    pub log: String,
    /// Attachments a mapping change split, by address (see [`super::mapping`]).
    pub pieces: std::collections::HashMap<usize, super::mapping::Pieces>,
}

impl World {
    /// A fresh world: confines the process on first use. In a private
    /// namespace, whatever an earlier input left after a failure (a replay
    /// under `cargo test` goes on after one) is removed first; on the host,
    /// nothing of ours may be there.
    pub fn new() -> World {
        let conf = confinement();
        let world = World {
            conf,
            model: Model::new(conf),
            segs: Vec::new(),
            atts: Vec::new(),
            pid: std::process::id() as i32,
            step: 0,
            forks: 0,
            history: None,
            dropped: Vec::new(),
            log: String::new(),
            pieces: std::collections::HashMap::new(),
        };
        // The previous input ended with `finish`, which proved the namespace
        // clean; only after a failure (a replay goes on) is there anything
        // to clear, and the check to repeat.
        if !CLEAN.swap(false, Ordering::SeqCst) {
            if conf.private {
                for r in sysv::proc_segments().unwrap_or_default() {
                    let _ = sysv::raw::shmctl_rmid(r.shmid.raw());
                }
            }
            world.assert_clean("before the input");
        }
        world
    }

    /// Appends a line to the log.
    pub fn note(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.log, "  {}", line.as_ref());
    }

    /// Fails the input: the model and the kernel disagree.
    pub fn disagree(&self, what: &str, kernel: impl std::fmt::Debug, model: impl std::fmt::Debug) -> ! {
        panic!(
            "model and kernel disagree on {what} (at step #{})\n  kernel: {kernel:?}\n  model:  {model:?}\n  the model's segments: {:?}\nsteps of this input:\n{}",
            self.step,
            self.model.segs,
            self.story()
        )
    }

    /// The steps so far, and the notes after them.
    pub fn story(&self) -> String {
        let steps = self.history.as_ref().map(|h| h(self.step)).unwrap_or_default();
        format!("{steps}{}", self.log)
    }

    /// A key of the input's small pool: see [`pool_key`].
    pub fn key(&self, pick: u8) -> i32 {
        pool_key(self.conf, pick)
    }

    /// Whether a kernel answer's errno is one the model allows.
    pub fn check_errno(&self, what: &str, err: &sysv::Error, allowed: &[Errno]) {
        match err.errno() {
            Some(e) if allowed.contains(&e) => {}
            _ => self.disagree(what, err.to_string(), format!("one of {allowed:?}")),
        }
    }

    /// Judges a `shmget` against the model's prediction, made just before the
    /// call, and records what it returned.
    ///
    /// In the host namespace another process may fill the namespace between
    /// the prediction and the call: an `ENOSPC` the prediction did not allow
    /// is accepted only if the limits are reached when looked at again.
    #[allow(clippy::too_many_arguments)]
    pub fn judge_get(
        &mut self,
        what: &str,
        key: i32,
        size: usize,
        flags: i32,
        prediction: GetPrediction,
        got: sysv::Result<Handle>,
    ) {
        match (prediction, got) {
            (GetPrediction::Existing(id), Ok(h)) if h.id.raw() == id => self.segs.push(h),
            (GetPrediction::Create | GetPrediction::CreateOr(_), Ok(h))
                if !self.model.segs.contains_key(&h.id.raw()) =>
            {
                self.model.created(h.id.raw(), key, size, flags);
                self.segs.push(h);
            }
            (GetPrediction::Fail(errnos) | GetPrediction::CreateOr(errnos), Err(e))
                if e.errno().is_some_and(|n| errnos.contains(&n)) => {}
            (_, Err(e)) if self.late_enospc(&e, size) => {}
            (prediction, got) => {
                let call =
                    format!("shmget(key {}, size {size}, {})", Key::from_raw(key), sysv::describe_get_flags(flags));
                self.disagree(&format!("{what}: {call}"), got.map(|h| h.id).map_err(|e| e.to_string()), prediction)
            }
        }
    }

    /// An `ENOSPC` the prediction did not allow, that the host namespace's
    /// state now explains.
    fn late_enospc(&self, err: &sysv::Error, size: usize) -> bool {
        !self.model.exclusive && err.errno() == Some(Errno::ENOSPC) && self.model.limits_reached(size)
    }

    /// The segments of this namespace the model is responsible for: all of
    /// them in a private namespace, ours by cpid on the host.
    fn kernel_segments(&self) -> Vec<sysv::ProcSegment> {
        let rows = sysv::proc_segments().unwrap_or_else(|e| panic!("reading /proc/sysvipc/shm: {e}"));
        rows.into_iter()
            .filter(|r| self.conf.private || r.cpid == self.pid || self.model.segs.contains_key(&r.shmid.raw()))
            .collect()
    }

    /// The kernel's `/proc/sysvipc/shm` and the model agree on every segment.
    pub fn assert_agree(&self, when: &str) {
        let rows = self.kernel_segments();
        let kernel: Vec<(i32, i32, u64, u64, bool, u16)> =
            rows.iter().map(|r| (r.shmid.raw(), r.key.raw(), r.size, r.nattch, r.dest, r.mode.bits())).collect();
        let model: Vec<(i32, i32, u64, u64, bool, u16)> =
            self.model.segs.iter().map(|(id, s)| (*id, s.key, s.size as u64, s.nattch, s.dest, s.mode)).collect();
        let mut k = kernel.clone();
        k.sort_unstable();
        if k != model {
            self.disagree(
                &format!("the segments in /proc/sysvipc/shm {when} (id, key, size, nattch, dest, mode)"),
                kernel,
                model,
            );
        }
    }

    /// Nothing of ours is left: no segment, and no SysV mapping in this process.
    pub fn assert_clean(&self, when: &str) {
        let rows = self.kernel_segments();
        if !rows.is_empty() {
            panic!(
                "leak {when}: segments left in the namespace: {:?}\nsteps of this input:\n{}",
                rows.iter().map(|r| (r.shmid.raw(), r.key.raw(), r.size, r.nattch)).collect::<Vec<_>>(),
                self.story()
            );
        }
        // Every address an attachment had must be unmapped now: msync on an
        // unmapped page is ENOMEM.
        for &addr in &self.dropped {
            // SAFETY: msync only inspects the mapping; nothing is accessed.
            if unsafe { libc::msync(addr as *mut libc::c_void, 1, libc::MS_ASYNC) } == 0 {
                let maps = std::fs::read_to_string("/proc/self/maps")
                    .unwrap_or_else(|e| format!("(cannot read /proc/self/maps: {e})"));
                let line =
                    maps.lines().find(|l| l.starts_with(&format!("{addr:x}-"))).unwrap_or("(not in maps)").to_string();
                panic!(
                    "leak {when}: a dropped attachment is still mapped at {addr:#x}: {line}\nsteps of this input:\n{}",
                    self.story()
                );
            }
        }
        // The whole map, now and then: in a private namespace an empty
        // /proc/sysvipc/shm already proves there is none (a mapping keeps
        // its segment), so this is a second line of defence, and reading
        // /proc/self/maps costs more than a whole input.
        static INPUTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if !self.conf.private || INPUTS.fetch_add(1, Ordering::Relaxed) % 64 == 0 {
            // Unreadable maps is a failure: a leak check that cannot look passes nothing.
            let left = sysv::sysv_mappings(None).unwrap_or_else(|e| panic!("leak check {when}: {e}"));
            if !left.is_empty() {
                panic!(
                    "leak {when}: SysV mappings left in this process: {left:?}\nsteps of this input:\n{}",
                    self.story()
                );
            }
        }
    }

    /// Ends the input: checks agreement, drops every attachment and guard
    /// (which must detach and remove), checks again, removes what the input
    /// made without a guard, and checks that nothing is left.
    pub fn finish(mut self) {
        self.assert_agree("at the end of the input");
        for a in std::mem::take(&mut self.atts) {
            let id = a.id;
            self.dropped.push(a.att.as_ptr() as usize);
            // Every piece of a split attachment goes with its shmdt.
            super::mapping::detached(&mut self, &a.att, id);
            drop(a.att);
        }
        let mut guarded = Vec::new();
        for h in std::mem::take(&mut self.segs) {
            if let Some(owned) = h.owned {
                guarded.push(h.id);
                drop(owned);
                let _ = self.model.remove(h.id.raw());
            }
        }
        self.note("(dropped every attachment and every owned guard)");
        // Every dropped guard removed its segment, every dropped attachment
        // detached: one IPC_STAT each (cheaper than reading /proc again).
        for id in guarded {
            if let Ok(st) = id.stat() {
                self.disagree(
                    &format!("segment {id} after its guard was dropped"),
                    format!("still there, nattch {}", st.nattch),
                    "removed",
                );
            }
        }
        for (&id, seg) in &self.model.segs {
            match sysv::Shmid::from_raw(id).stat() {
                Ok(st) if st.nattch == seg.nattch => {}
                got => self.disagree(
                    &format!("segment {id} after every attachment was dropped (nattch)"),
                    got.map(|s| s.nattch),
                    seg.nattch,
                ),
            }
        }
        let left: Vec<i32> = self.model.segs.keys().copied().collect();
        for id in left {
            let _ = sysv::raw::shmctl_rmid(id);
            let _ = self.model.remove(id);
        }
        self.assert_clean("after the input");
        CLEAN.store(true, Ordering::SeqCst);
    }
}

/// The `n`th of `v`'s elements, counted round (how inputs pick a live
/// segment or attachment by index); none when `v` is empty.
pub fn pick<T>(v: &[T], n: u8) -> Option<usize> {
    (!v.is_empty()).then(|| usize::from(n) % v.len())
}

/// A key of the fuzz inputs' small pool (pick 0: IPC_PRIVATE; one key with
/// the sign bit set). On the host, only keys of the owned range.
pub fn pool_key(conf: &Confinement, pick: u8) -> i32 {
    let (lo, hi) = conf.keys;
    match pick % 5 {
        0 => 0,
        n if conf.private => [0x5eed_0001u32, 0x5eed_0002, 0x8000_0001, 0xffff_fffe][n as usize - 1] as i32,
        n => (lo + (u32::from(n) - 1) % (hi - lo + 1)) as i32,
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}
