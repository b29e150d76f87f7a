//! A reference model of System V shared memory in one IPC namespace: keys,
//! ids, sizes, modes, attachments, the dest and locked flags and the
//! namespace's limits. It predicts what each call should answer; the
//! oracles fail an input wherever the kernel disagrees.
//!
//! The model follows `ipc/shm.c` (`newseg`, `ksys_shmget` through
//! `ipcget`, `do_shmat`, `shmctl_down`, `shmctl_do_lock`), for a caller with
//! `CAP_IPC_OWNER` (root of the namespace's user namespace), so permission
//! bits never refuse anything here; the scenario suite covers permissions.

use std::collections::BTreeMap;

use crate::sysv::{raw, Errno};

/// One segment as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    /// Its key (0 once removed, or if private).
    pub key: i32,
    /// `shm_segsz`.
    pub size: usize,
    /// Permission bits.
    pub mode: u16,
    /// Attachments.
    pub nattch: u64,
    /// Removed while attached.
    pub dest: bool,
    /// `SHM_LOCK`ed.
    pub locked: bool,
    /// Last process to attach or detach (0: none yet).
    pub lpid: i32,
    /// Backed by huge pages of this size (log2).
    pub huge: Option<u32>,
}

/// What a `shmget` should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetPrediction {
    /// Return this existing segment.
    Existing(i32),
    /// Create a new segment.
    Create,
    /// Create one, or fail with one of these (where the kernel's answer
    /// depends on what the machine has: huge pages).
    CreateOr(Vec<Errno>),
    /// Fail with one of these.
    Fail(Vec<Errno>),
}

/// The namespace as the model sees it.
#[derive(Debug, Clone)]
pub struct Model {
    /// `kernel.shmmax`.
    pub shmmax: u64,
    /// `kernel.shmall`, in pages.
    pub shmall: u64,
    /// `kernel.shmmni`.
    pub shmmni: u64,
    /// Whether the namespace is the model's alone (else: the host's, where
    /// other segments count against the limits too).
    pub exclusive: bool,
    /// Huge page sizes the kernel supports (log2).
    pub huge_sizes: Vec<u32>,
    /// Base page size.
    pub page: usize,
    /// Segments by shmid.
    pub segs: BTreeMap<i32, Seg>,
}

impl Model {
    /// An empty namespace with these limits.
    pub fn new(c: &super::confine::Confinement) -> Model {
        Model {
            shmmax: c.limits.shmmax,
            shmall: c.limits.shmall,
            shmmni: c.limits.shmmni,
            exclusive: c.private,
            huge_sizes: c.huge_sizes.clone(),
            page: raw::page_size(),
            segs: BTreeMap::new(),
        }
    }

    /// Pages held by all segments (removed ones too, until destroyed).
    pub fn pages_used(&self) -> u64 {
        self.segs.values().map(|s| s.size.div_ceil(self.page) as u64).sum()
    }

    /// The live (not removed) segment with this key.
    pub fn by_key(&self, key: i32) -> Option<i32> {
        if key == 0 {
            return None;
        }
        self.segs.iter().find(|(_, s)| s.key == key && !s.dest).map(|(id, _)| *id)
    }

    /// What `shmget(key, size, flags)` should do.
    pub fn predict_get(&self, key: i32, size: usize, flags: i32) -> GetPrediction {
        use GetPrediction::*;
        let creat = flags & raw::IPC_CREAT != 0;
        let excl = flags & raw::IPC_EXCL != 0;
        if let Some(id) = self.by_key(key) {
            if creat && excl {
                return Fail(vec![Errno::EEXIST]);
            }
            // shm_more_checks: a larger size than the segment's is EINVAL.
            if self.segs[&id].size < size {
                return Fail(vec![Errno::EINVAL]);
            }
            return Existing(id);
        }
        if key != 0 && !creat {
            return Fail(vec![Errno::ENOENT]);
        }
        // newseg, in the kernel's order.
        if size < 1 || size as u64 > self.shmmax {
            return Fail(vec![Errno::EINVAL]);
        }
        let pages = size.div_ceil(self.page) as u64;
        let room = |errnos: Vec<Errno>| if self.exclusive { Fail(errnos) } else { CreateOr(errnos) };
        if self.pages_used() + pages > self.shmall {
            return room(vec![Errno::ENOSPC]);
        }
        let full = self.segs.len() as u64 >= self.shmmni;
        if flags & raw::SHM_HUGETLB != 0 {
            let log = ((flags >> raw::SHM_HUGE_SHIFT) & raw::SHM_HUGE_MASK) as u32;
            let known = if log == 0 { !self.huge_sizes.is_empty() } else { self.huge_sizes.contains(&log) };
            if !known {
                return Fail(vec![Errno::EINVAL]);
            }
            // Whether huge pages can be reserved is the machine's business;
            // without SHM_NORESERVE and free pages it is ENOMEM. Then the
            // id table's limit.
            let mut errnos = vec![Errno::ENOMEM, Errno::EPERM];
            if full {
                errnos.push(Errno::ENOSPC);
                return Fail(errnos);
            }
            return CreateOr(errnos);
        }
        if full {
            return room(vec![Errno::ENOSPC]);
        }
        if self.exclusive {
            Create
        } else {
            CreateOr(vec![Errno::ENOSPC, Errno::ENOMEM])
        }
    }

    /// Records a segment the kernel created.
    pub fn created(&mut self, id: i32, key: i32, size: usize, flags: i32) {
        self.segs.insert(
            id,
            Seg {
                key,
                size,
                mode: (flags & 0o777) as u16,
                nattch: 0,
                dest: false,
                locked: false,
                lpid: 0,
                huge: (flags & raw::SHM_HUGETLB != 0).then(|| {
                    let log = ((flags >> raw::SHM_HUGE_SHIFT) & raw::SHM_HUGE_MASK) as u32;
                    if log == 0 {
                        self.huge_sizes.first().copied().unwrap_or(21)
                    } else {
                        log
                    }
                }),
            },
        );
    }

    /// `IPC_RMID`: destroyed now if unattached, else marked and its key freed.
    pub fn remove(&mut self, id: i32) -> Result<(), Errno> {
        let seg = self.segs.get_mut(&id).ok_or(Errno::EINVAL)?;
        if seg.nattch == 0 {
            self.segs.remove(&id);
        } else {
            seg.dest = true;
            seg.key = 0;
        }
        Ok(())
    }

    /// The length `shmat` maps for a segment: its size in whole pages.
    pub fn mapping_len(&self, id: i32) -> Option<usize> {
        let s = self.segs.get(&id)?;
        let page = s.huge.map_or(self.page, |log| 1usize << log);
        Some(s.size.div_ceil(page).saturating_mul(page))
    }

    /// One attachment more, by `pid`.
    pub fn attach(&mut self, id: i32, pid: i32) {
        if let Some(s) = self.segs.get_mut(&id) {
            s.nattch += 1;
            s.lpid = pid;
        }
    }

    /// One attachment less, by `pid`; a removed segment goes with its last.
    pub fn detach(&mut self, id: i32, pid: i32) {
        if let Some(s) = self.segs.get_mut(&id) {
            s.nattch = s.nattch.saturating_sub(1);
            s.lpid = pid;
            if s.nattch == 0 && s.dest {
                self.segs.remove(&id);
            }
        }
    }
}
