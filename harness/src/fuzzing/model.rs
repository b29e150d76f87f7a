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

use crate::sysv::{self, raw, Errno};

/// The kernel's memory accounting for a new segment without
/// `SHM_NORESERVE` (`shmem_acct_size`, then `__vm_enough_memory`), as
/// `vm.overcommit_memory` configures it: when it can answer `ENOMEM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accounting {
    /// Mode 0 (heuristic): refuses a segment of more pages than RAM and swap
    /// together (`MemTotal + SwapTotal`, in bytes here).
    Guess {
        /// `MemTotal + SwapTotal` in bytes.
        ram_and_swap: u64,
    },
    /// Mode 1: never refuses.
    Always,
    /// Mode 2 (strict): refuses past `CommitLimit`, which other processes'
    /// commitments share; the model allows `ENOMEM` once the segment would
    /// take more than what was left when it looked.
    Strict,
}

impl Accounting {
    /// Reads `vm.overcommit_memory` and `/proc/meminfo`.
    ///
    /// # Panics
    /// If they cannot be read: the model cannot judge `ENOMEM` without them.
    pub fn read() -> Accounting {
        let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory")
            .unwrap_or_else(|e| panic!("model: reading /proc/sys/vm/overcommit_memory: {e}"));
        match mode.trim() {
            "0" => Accounting::Guess { ram_and_swap: meminfo("MemTotal") + meminfo("SwapTotal") },
            "1" => Accounting::Always,
            "2" => Accounting::Strict,
            other => panic!("model: vm.overcommit_memory is {other:?}, expected 0, 1 or 2"),
        }
    }

    /// Whether creating `size` bytes may be refused with `ENOMEM`.
    pub fn may_refuse(self, size: usize) -> bool {
        match self {
            Accounting::Guess { ram_and_swap } => size as u64 > ram_and_swap,
            Accounting::Always => false,
            Accounting::Strict => {
                let left = meminfo("CommitLimit").saturating_sub(meminfo("Committed_AS"));
                size as u64 > left / 2
            }
        }
    }
}

/// A `/proc/meminfo` value in bytes.
fn meminfo(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_else(|e| panic!("model: reading /proc/meminfo: {e}"));
    parse_meminfo(&text, field).unwrap_or_else(|| panic!("model: /proc/meminfo has no readable {field:?}"))
}

fn parse_meminfo(text: &str, field: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

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
    /// The default huge page size (log2), what `SHM_HUGETLB` without a size
    /// field gets ([`sysv::default_huge_page_size`]).
    pub default_huge: Option<u32>,
    /// When the kernel's memory accounting may refuse a segment (`ENOMEM`).
    pub accounting: Accounting,
    /// Base page size.
    pub page: usize,
    /// Segments by shmid.
    pub segs: BTreeMap<i32, Seg>,
}

impl Model {
    /// An empty namespace with these limits.
    pub fn new(c: &super::confine::Confinement) -> Model {
        // The machine's side (files in /proc) is read once per process: a
        // model is made per input, and reading /proc/meminfo costs more
        // than an input's system calls.
        static MACHINE: std::sync::OnceLock<(Accounting, Option<u32>)> = std::sync::OnceLock::new();
        let machine =
            *MACHINE.get_or_init(|| (Accounting::read(), sysv::default_huge_page_size().map(|b| b.trailing_zeros())));
        Model {
            shmmax: c.limits.shmmax,
            shmall: c.limits.shmall,
            shmmni: c.limits.shmmni,
            exclusive: c.private,
            huge_sizes: c.huge_sizes.clone(),
            default_huge: machine.1,
            accounting: machine.0,
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

    /// The namespace's segments and pages in use: the model's own when the
    /// namespace is the model's alone, else the kernel's count (`SHM_INFO`),
    /// which includes everyone else's.
    ///
    /// # Panics
    /// If `SHM_INFO` fails: without it the limits cannot be judged.
    pub fn namespace_usage(&self) -> (u64, u64) {
        if self.exclusive {
            return (self.segs.len() as u64, self.pages_used());
        }
        let u = sysv::usage().unwrap_or_else(|e| panic!("model: the host namespace's usage: {e}"));
        (u64::try_from(u.used_ids).unwrap_or(0), u.shm_tot)
    }

    /// Whether creating `size` bytes would pass `shmall` or `shmmni` with
    /// the namespace as it is now (see [`Model::namespace_usage`]).
    pub fn limits_reached(&self, size: usize) -> bool {
        let (ids, pages) = self.namespace_usage();
        let want = size.div_ceil(self.page) as u64;
        pages.saturating_add(want) > self.shmall || ids >= self.shmmni
    }

    /// What `shmget(key, size, flags)` should do.
    ///
    /// In the host namespace (not [`exclusive`](Model::exclusive)) others'
    /// segments count against `shmall` and `shmmni` too, so the limits are
    /// judged against `SHM_INFO`; `ENOSPC` is allowed only where they are
    /// reached, and `ENOMEM` only where the memory accounting may refuse
    /// ([`Accounting`]), in either namespace.
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
        let (ids_used, pages_used) = self.namespace_usage();
        // At the limit: certain in a namespace of our own; on the host
        // others may free room meanwhile.
        let room = |errnos: Vec<Errno>| if self.exclusive { Fail(errnos) } else { CreateOr(errnos) };
        if pages_used.saturating_add(pages) > self.shmall {
            return room(vec![Errno::ENOSPC]);
        }
        let full = ids_used >= self.shmmni;
        if flags & raw::SHM_HUGETLB != 0 {
            let log = ((flags >> raw::SHM_HUGE_SHIFT) & raw::SHM_HUGE_MASK) as u32;
            let known = if log == 0 { self.default_huge.is_some() } else { self.huge_sizes.contains(&log) };
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
        // shmem_kernel_file_setup: a file larger than MAX_LFS_FILESIZE
        // (LLONG_MAX on 64-bit) is EINVAL, then the memory accounting, which
        // SHM_NORESERVE skips unless overcommit is strict; only then the id.
        if size as u64 > i64::MAX as u64 {
            return Fail(vec![Errno::EINVAL]);
        }
        let accounted = flags & raw::SHM_NORESERVE == 0 || self.accounting == Accounting::Strict;
        if accounted && self.accounting.may_refuse(size) {
            return if full { Fail(vec![Errno::ENOMEM, Errno::ENOSPC]) } else { CreateOr(vec![Errno::ENOMEM]) };
        }
        if full {
            return room(vec![Errno::ENOSPC]);
        }
        Create
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
                    // The kernel created it, so a default size exists; the
                    // base page is the wrapper's fallback too.
                    if log == 0 {
                        self.default_huge.unwrap_or(self.page.trailing_zeros())
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

    /// The length `shmat` maps for a segment: its size in whole pages
    /// (huge pages for a hugetlb one); `None` for an unknown segment, or one
    /// whose rounded size does not fit a `usize`.
    pub fn mapping_len(&self, id: i32) -> Option<usize> {
        let s = self.segs.get(&id)?;
        let page = 1usize.checked_shl(s.huge.unwrap_or(self.page.trailing_zeros()))?;
        s.size.div_ceil(page).checked_mul(page)
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

#[cfg(test)]
mod tests {
    use super::GetPrediction::*;
    use super::*;

    const PAGE: usize = 4096;

    fn model(exclusive: bool) -> Model {
        Model {
            shmmax: 1 << 20,
            shmall: 16,
            shmmni: 3,
            exclusive,
            huge_sizes: vec![21, 30],
            default_huge: Some(21),
            accounting: Accounting::Guess { ram_and_swap: 1 << 30 },
            page: PAGE,
            segs: BTreeMap::new(),
        }
    }

    const CREAT: i32 = raw::IPC_CREAT;
    const EXCL: i32 = raw::IPC_EXCL;
    const HUGE: i32 = raw::SHM_HUGETLB;

    #[test]
    fn mapping_len_rounds_to_the_segments_page() {
        let mut m = model(true);
        m.created(1, 7, 1, CREAT);
        m.created(2, 8, PAGE + 1, CREAT);
        m.created(3, 9, 1, CREAT | HUGE);
        m.created(4, 10, 1, CREAT | HUGE | (30 << raw::SHM_HUGE_SHIFT));
        m.created(5, 11, usize::MAX - 1, CREAT);
        assert_eq!(m.mapping_len(1), Some(PAGE));
        assert_eq!(m.mapping_len(2), Some(2 * PAGE));
        assert_eq!(m.mapping_len(3), Some(2 << 20), "the default huge page size");
        assert_eq!(m.mapping_len(4), Some(1 << 30));
        assert_eq!(m.mapping_len(5), None, "rounding up overflows");
        assert_eq!(m.mapping_len(99), None);
        assert_eq!(m.segs[&3].huge, Some(21));
        assert_eq!(m.segs[&1].huge, None);
        assert_eq!(m.pages_used(), 1 + 2 + 1 + 1 + (usize::MAX - 1).div_ceil(PAGE) as u64);
    }

    #[test]
    fn a_huge_segment_without_a_known_default_rounds_to_base_pages() {
        let mut m = model(true);
        m.default_huge = None;
        m.created(1, 7, 1, CREAT | HUGE);
        assert_eq!(m.segs[&1].huge, Some(12));
        assert_eq!(m.mapping_len(1), Some(PAGE));
        assert_eq!(m.predict_get(0, 1, CREAT | HUGE), Fail(vec![Errno::EINVAL]));
    }

    #[test]
    fn keys_sizes_and_flags() {
        let mut m = model(true);
        assert_eq!(m.predict_get(5, 100, 0), Fail(vec![Errno::ENOENT]));
        assert_eq!(m.predict_get(5, 0, CREAT), Fail(vec![Errno::EINVAL]));
        assert_eq!(m.predict_get(5, (1 << 20) + 1, CREAT), Fail(vec![Errno::EINVAL]));
        assert_eq!(m.predict_get(5, 1 << 20, CREAT), Fail(vec![Errno::ENOSPC]), "257 pages > shmall 16");
        assert_eq!(m.predict_get(5, 16 * PAGE, CREAT), Create);
        assert_eq!(m.predict_get(0, 100, 0), Create, "IPC_PRIVATE creates without IPC_CREAT");
        m.created(1, 5, 100, CREAT | 0o640);
        assert_eq!(m.segs[&1].mode, 0o640);
        assert_eq!(m.by_key(5), Some(1));
        m.created(2, 6, 100, CREAT);
        assert_eq!(m.by_key(6), Some(2), "the segment with that key, not the first live one");
        assert_eq!(m.by_key(7), None);
        m.segs.remove(&2);
        assert_eq!(m.by_key(0), None);
        assert_eq!(m.predict_get(5, 100, 0), Existing(1));
        assert_eq!(m.predict_get(5, 0, 0), Existing(1));
        assert_eq!(m.predict_get(5, 101, 0), Fail(vec![Errno::EINVAL]));
        assert_eq!(m.predict_get(5, 1, CREAT | EXCL), Fail(vec![Errno::EEXIST]));
        assert_eq!(m.predict_get(5, 1, CREAT), Existing(1));
        // 15 pages left of shmall 16.
        assert_eq!(m.predict_get(6, 15 * PAGE, CREAT), Create);
        assert_eq!(m.predict_get(6, 15 * PAGE + 1, CREAT), Fail(vec![Errno::ENOSPC]));
    }

    #[test]
    fn the_id_limit_and_removal() {
        let mut m = model(true);
        for id in 1..=3 {
            m.created(id, 0, 1, CREAT);
        }
        assert_eq!(m.predict_get(0, 1, CREAT), Fail(vec![Errno::ENOSPC]), "shmmni 3 reached");
        assert_eq!(m.predict_get(0, 1, CREAT | HUGE), Fail(vec![Errno::ENOMEM, Errno::EPERM, Errno::ENOSPC]));
        m.attach(1, 42);
        assert_eq!((m.segs[&1].nattch, m.segs[&1].lpid), (1, 42));
        m.remove(1).unwrap();
        assert!(m.segs[&1].dest, "removed while attached: marked");
        assert_eq!(m.predict_get(0, 1, CREAT), Fail(vec![Errno::ENOSPC]), "a marked segment still counts");
        m.detach(1, 43);
        assert!(!m.segs.contains_key(&1), "the last detach destroys it");
        assert_eq!(m.predict_get(0, 1, CREAT), Create);
        m.attach(2, 1);
        m.detach(2, 1);
        assert_eq!(m.segs[&2].nattch, 0, "a live segment stays after its last detach");
        m.remove(2).unwrap();
        assert!(!m.segs.contains_key(&2), "removed unattached: gone at once");
        assert_eq!(m.remove(2), Err(Errno::EINVAL));
    }

    #[test]
    fn removal_frees_the_key() {
        let mut m = model(true);
        m.created(1, 5, 1, CREAT);
        m.attach(1, 1);
        m.remove(1).unwrap();
        assert_eq!(m.segs[&1].key, 0);
        assert_eq!(m.by_key(5), None);
        assert_eq!(m.predict_get(5, 1, CREAT | EXCL), Create);
    }

    #[test]
    fn accounting_as_this_machine_has_it() {
        let left = meminfo("CommitLimit").saturating_sub(meminfo("Committed_AS"));
        let strict = Accounting::Strict;
        assert!(strict.may_refuse(usize::MAX));
        assert!(!strict.may_refuse(1 << 20), "{left} bytes left");
        // Past half of what is left (with a margin for other processes).
        assert!(strict.may_refuse((left / 4 * 3) as usize), "{left} bytes left");
        assert!(!strict.may_refuse((left / 4) as usize), "{left} bytes left");
        match Accounting::read() {
            Accounting::Guess { ram_and_swap } => {
                assert_eq!(ram_and_swap, meminfo("MemTotal") + meminfo("SwapTotal"));
                assert!(ram_and_swap >= meminfo("MemTotal") && ram_and_swap > 1 << 20);
            }
            other => assert_ne!(other, Accounting::Guess { ram_and_swap: 0 }),
        }
    }

    #[test]
    fn huge_pages() {
        let m = model(true);
        assert_eq!(m.predict_get(0, 1, CREAT | HUGE), CreateOr(vec![Errno::ENOMEM, Errno::EPERM]));
        assert_eq!(
            m.predict_get(0, 1, CREAT | HUGE | (30 << raw::SHM_HUGE_SHIFT)),
            CreateOr(vec![Errno::ENOMEM, Errno::EPERM])
        );
        assert_eq!(m.predict_get(0, 1, CREAT | HUGE | (25 << raw::SHM_HUGE_SHIFT)), Fail(vec![Errno::EINVAL]));
    }

    #[test]
    fn memory_accounting() {
        let g = Accounting::Guess { ram_and_swap: 1000 };
        assert!(!g.may_refuse(1000));
        assert!(g.may_refuse(1001));
        assert!(!Accounting::Always.may_refuse(usize::MAX));
        let mut m = model(true);
        m.shmmax = u64::MAX;
        m.shmall = u64::MAX;
        m.accounting = Accounting::Guess { ram_and_swap: 1 << 30 };
        assert_eq!(m.predict_get(0, (1 << 30) + 1, CREAT), CreateOr(vec![Errno::ENOMEM]));
        assert_eq!(m.predict_get(0, (1 << 30) + 1, CREAT | raw::SHM_NORESERVE), Create);
        assert_eq!(m.predict_get(0, 1 << 30, CREAT), Create);
        assert_eq!(m.predict_get(0, i64::MAX as usize + 1, CREAT), Fail(vec![Errno::EINVAL]));
        m.accounting = Accounting::Always;
        assert_eq!(m.predict_get(0, i64::MAX as usize, CREAT), Create, "MAX_LFS_FILESIZE itself is allowed");
        // Strict overcommit ignores SHM_NORESERVE.
        m.accounting = Accounting::Strict;
        assert_eq!(m.predict_get(0, usize::MAX / 4, CREAT | raw::SHM_NORESERVE), CreateOr(vec![Errno::ENOMEM]));
        assert_eq!(m.predict_get(0, 1, CREAT | raw::SHM_NORESERVE), Create);
        assert_eq!(parse_meminfo("MemTotal:  2 kB\nSwapTotal: 0 kB\n", "MemTotal"), Some(2048));
        assert_eq!(parse_meminfo("MemTotal:  2 kB\n", "SwapTotal"), None);
        assert_eq!(parse_meminfo("MemTotalX: 2 kB\n", "MemTotal"), None);
    }
}
