//! The model's answers to `shmctl`'s namespace-wide commands (`IPC_INFO`,
//! `SHM_INFO`, `SHM_STAT`, `SHM_STAT_ANY` by index, an invalid command),
//! and the judgement of the kernel's answers against them. Pure: the `ops`
//! target makes the calls ([`check`]) and unit tests feed wrong answers to
//! show each judgement can fail.
//!
//! The model follows `ipc/shm.c` (`shmctl_ipc_info`, `shmctl_shm_info`,
//! `shmctl_stat`) and `ipc/util.c` (`ipc_get_maxidx`, `ipcid_to_idx`), for
//! a caller with `CAP_IPC_OWNER`, so `SHM_STAT`'s read check never refuses.

use crate::sysv::{self, CtlAnswer, CtlBuffer, Errno, ShmctlCmd};

use super::model::Model;

/// The index bits of an id: `SEQ_MULTIPLIER` is 32768 unless the kernel
/// was booted with `ipcmni_extend`.
pub const SEQ_MULTIPLIER: i32 = 32768;

/// A command number no kernel knows (the named ones are 0..=3 and 11..=15).
pub const INVALID_CMD: i32 = 4242;

impl Model {
    /// The highest index in use, as `IPC_INFO` and `SHM_INFO` return it
    /// (`ipc_get_maxidx`; 0 when no segment exists).
    pub fn max_index(&self) -> i32 {
        self.segs.keys().map(|id| id % SEQ_MULTIPLIER).max().unwrap_or(0)
    }

    /// What `SHM_STAT`/`SHM_STAT_ANY` at `index` should answer: the shmid
    /// of the segment there (the kernel keeps only the index bits of what
    /// it is given), or `EINVAL`.
    pub fn predict_stat_index(&self, index: i32) -> Result<i32, Errno> {
        if index < 0 {
            return Err(Errno::EINVAL);
        }
        let idx = index % SEQ_MULTIPLIER;
        self.segs.keys().copied().find(|id| id % SEQ_MULTIPLIER == idx).ok_or(Errno::EINVAL)
    }

    /// Judges an `IPC_INFO` or `SHM_INFO` answer.
    ///
    /// # Errors
    /// What disagrees: `(what, kernel, model)`.
    pub fn judge_info(&self, got: &CtlAnswer) -> Result<(), (String, String, String)> {
        let differ = |what: &str, k: String, m: String| Err((what.to_string(), k, m));
        match got {
            CtlAnswer::Usage(u) => {
                let kernel = (i64::from(u.used_ids), u.shm_tot, u.max_index);
                let model = (self.segs.len() as i64, self.pages_used(), self.max_index());
                if kernel != model {
                    return differ(
                        "SHM_INFO (used_ids, shm_tot, max_index)",
                        format!("{kernel:?}"),
                        format!("{model:?}"),
                    );
                }
            }
            CtlAnswer::Limits(l) => {
                let kernel = (l.shmmax, l.shmall, l.shmmni, l.shmseg, l.shmmin, l.max_index);
                let model = (self.shmmax, self.shmall, self.shmmni, self.shmmni, 1, self.max_index());
                if kernel != model {
                    return differ(
                        "IPC_INFO (shmmax, shmall, shmmni, shmseg, shmmin, max_index)",
                        format!("{kernel:?}"),
                        format!("{model:?}"),
                    );
                }
            }
            other => return differ("an INFO command's answer", format!("{other:?}"), "limits or usage".into()),
        }
        Ok(())
    }

    /// Judges `SHM_STAT`/`SHM_STAT_ANY` at `index`: the id, and the
    /// segment's size, nattch, mode and flags as the model has them.
    ///
    /// # Errors
    /// What disagrees: `(what, kernel, model)`.
    pub fn judge_stat_index(
        &self,
        index: i32,
        got: &Result<CtlAnswer, Option<Errno>>,
    ) -> Result<(), (String, String, String)> {
        let what = || format!("SHM_STAT at index {index}");
        match (got, self.predict_stat_index(index)) {
            (Ok(CtlAnswer::Stat(id, st)), Ok(want)) if *id == want => {
                let m = &self.segs[&want];
                let kernel = (st.size, st.nattch, st.mode.bits(), st.dest, st.locked, st.key.raw());
                let model = (m.size, m.nattch, m.mode, m.dest, m.locked, m.key);
                if kernel != model {
                    return Err((
                        format!("{} (size, nattch, mode, dest, locked, key)", what()),
                        format!("{kernel:?}"),
                        format!("{model:?}"),
                    ));
                }
                Ok(())
            }
            (Err(Some(e)), Err(want)) if *e == want => Ok(()),
            (got, want) => Err((what(), format!("{got:?}"), format!("{want:?}"))),
        }
    }
}

/// Asks the kernel everything [`Model::judge_info`] and
/// [`Model::judge_stat_index`] judge, in a namespace that is the model's
/// alone, and panics (through `disagree`) at the first difference: both
/// INFO commands, `SHM_STAT` and `SHM_STAT_ANY` at every index up to one
/// past the highest, an invalid command on each segment (`EINVAL`), and
/// `IPC_INFO` into an inaccessible buffer (`EFAULT`).
pub fn check(w: &super::world::World) {
    let fail = |(what, kernel, model): (String, String, String)| w.disagree(&what, kernel, model);
    for cmd in [ShmctlCmd::ShmInfo, ShmctlCmd::IpcInfo] {
        match sysv::shmctl_command(0, cmd, CtlBuffer::Zeroed) {
            Ok(a) => w.model.judge_info(&a).unwrap_or_else(fail),
            Err(e) => w.disagree(&format!("shmctl({cmd})"), e.to_string(), "an answer"),
        }
    }
    for index in 0..=w.model.max_index() + 1 {
        for cmd in [ShmctlCmd::ShmStat, ShmctlCmd::ShmStatAny] {
            let got = sysv::shmctl_command(index, cmd, CtlBuffer::Zeroed).map_err(|e| e.errno());
            w.model.judge_stat_index(index, &got).unwrap_or_else(fail);
        }
    }
    for id in w.model.segs.keys().copied().take(2) {
        match sysv::shmctl_command(id, ShmctlCmd::Other(INVALID_CMD), CtlBuffer::Zeroed) {
            Err(e) if e.errno() == Some(Errno::EINVAL) => {}
            got => w.disagree(&format!("shmctl({id}, {INVALID_CMD})"), format!("{got:?}"), "EINVAL"),
        }
    }
    match sysv::shmctl_command(0, ShmctlCmd::IpcInfo, CtlBuffer::Inaccessible) {
        Err(e) if e.errno() == Some(Errno::EFAULT) => {}
        got => w.disagree("shmctl(0, IPC_INFO) into an inaccessible buffer", format!("{got:?}"), "EFAULT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::model::{Accounting, Model};
    use crate::sysv::{raw, Key, Mode, SegmentStat, ShmLimits, ShmUsage};

    fn model() -> Model {
        let mut m = Model {
            shmmax: 1 << 20,
            shmall: 16,
            shmmni: 3,
            exclusive: true,
            huge_sizes: vec![],
            default_huge: None,
            accounting: Accounting::Always,
            page: 4096,
            segs: Default::default(),
        };
        m.created(0, 7, 100, raw::IPC_CREAT | 0o600);
        m.created(SEQ_MULTIPLIER + 2, 0, 5000, raw::IPC_CREAT | 0o640);
        m
    }

    /// A status with only a size and permission bits (the rest zero).
    fn stat(size: usize, mode: u32) -> SegmentStat {
        SegmentStat {
            key: Key::PRIVATE,
            uid: 0,
            gid: 0,
            cuid: 0,
            cgid: 0,
            mode: Mode::from_bits_truncate(mode),
            dest: false,
            locked: false,
            seq: 0,
            size,
            atime: 0,
            dtime: 0,
            ctime: 0,
            cpid: 0,
            lpid: 0,
            nattch: 0,
        }
    }

    #[test]
    fn indices_and_max_index() {
        let m = model();
        assert_eq!(m.max_index(), 2);
        assert_eq!(m.predict_stat_index(0), Ok(0));
        assert_eq!(m.predict_stat_index(2), Ok(SEQ_MULTIPLIER + 2));
        // A full id is taken for its index.
        assert_eq!(m.predict_stat_index(5 * SEQ_MULTIPLIER + 2), Ok(SEQ_MULTIPLIER + 2));
        assert_eq!(m.predict_stat_index(1), Err(Errno::EINVAL));
        assert_eq!(m.predict_stat_index(-1), Err(Errno::EINVAL));
        assert_eq!(Model { segs: Default::default(), ..model() }.max_index(), 0);
    }

    #[test]
    fn right_answers_pass_and_each_wrong_one_fails() {
        let m = model();
        let usage = |used_ids, shm_tot, max_index| {
            CtlAnswer::Usage(ShmUsage { used_ids, shm_tot, shm_rss: 0, shm_swp: 0, max_index })
        };
        assert!(m.judge_info(&usage(2, 3, 2)).is_ok());
        // The controls: a wrong count, page total or highest index.
        assert!(m.judge_info(&usage(3, 3, 2)).is_err());
        assert!(m.judge_info(&usage(2, 2, 2)).is_err());
        assert!(m.judge_info(&usage(2, 3, 1)).is_err());
        let limits = |shmseg, shmmin| {
            CtlAnswer::Limits(ShmLimits { shmmax: 1 << 20, shmmin, shmmni: 3, shmseg, shmall: 16, max_index: 2 })
        };
        assert!(m.judge_info(&limits(3, 1)).is_ok());
        assert!(m.judge_info(&limits(4096, 1)).is_err());
        assert!(m.judge_info(&limits(3, 0)).is_err());
        assert!(m.judge_info(&CtlAnswer::Returned(0)).is_err());

        let good = Ok(CtlAnswer::Stat(SEQ_MULTIPLIER + 2, stat(5000, 0o640)));
        assert!(m.judge_stat_index(2, &good).is_ok());
        assert!(m.judge_stat_index(1, &Err(Some(Errno::EINVAL))).is_ok());
        // The controls: the index's id as the id (the seq lost), another
        // segment, a wrong size or mode, success where there is none, the
        // wrong errno.
        assert!(m.judge_stat_index(2, &Ok(CtlAnswer::Stat(2, stat(5000, 0o640)))).is_err());
        assert!(m.judge_stat_index(2, &Ok(CtlAnswer::Stat(0, stat(100, 0o600)))).is_err());
        assert!(m.judge_stat_index(2, &Ok(CtlAnswer::Stat(SEQ_MULTIPLIER + 2, stat(4096, 0o640)))).is_err());
        assert!(m.judge_stat_index(2, &Ok(CtlAnswer::Stat(SEQ_MULTIPLIER + 2, stat(5000, 0o600)))).is_err());
        assert!(m.judge_stat_index(1, &good).is_err());
        assert!(m.judge_stat_index(1, &Err(Some(Errno::EACCES))).is_err());
        assert!(m.judge_stat_index(2, &Err(Some(Errno::EINVAL))).is_err());
    }
}
