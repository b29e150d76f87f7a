//! The fields of an `IPC_SET` buffer the kernel does not read: a scenario
//! writes them (`set s size 1 key 7`) to show that they are ignored.

use serde::{Deserialize, Serialize};

/// A field of a `shmid_ds` that `IPC_SET` does not read: the kernel copies
/// only `shm_perm.uid`, `gid` and `mode` from the buffer
/// (`copy_shmid_from_user`), so whatever these hold is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IgnoredField {
    /// `shm_segsz`.
    Size,
    /// `shm_perm.__key`.
    Key,
    /// `shm_perm.cuid`.
    Cuid,
    /// `shm_perm.cgid`.
    Cgid,
    /// `shm_perm.__seq` (its low 16 bits).
    Seq,
    /// `shm_nattch`.
    Nattch,
    /// `shm_cpid`.
    Cpid,
    /// `shm_lpid`.
    Lpid,
    /// `shm_atime`.
    Atime,
    /// `shm_dtime`.
    Dtime,
    /// `shm_ctime`.
    Ctime,
}

impl IgnoredField {
    /// Every field, in the order a scenario prints them.
    pub const ALL: [IgnoredField; 11] = [
        IgnoredField::Size,
        IgnoredField::Key,
        IgnoredField::Cuid,
        IgnoredField::Cgid,
        IgnoredField::Seq,
        IgnoredField::Nattch,
        IgnoredField::Cpid,
        IgnoredField::Lpid,
        IgnoredField::Atime,
        IgnoredField::Dtime,
        IgnoredField::Ctime,
    ];

    /// Its word in a scenario (as the stat field of the same name).
    pub const fn name(self) -> &'static str {
        match self {
            IgnoredField::Size => "size",
            IgnoredField::Key => "key",
            IgnoredField::Cuid => "cuid",
            IgnoredField::Cgid => "cgid",
            IgnoredField::Seq => "seq",
            IgnoredField::Nattch => "nattch",
            IgnoredField::Cpid => "cpid",
            IgnoredField::Lpid => "lpid",
            IgnoredField::Atime => "atime",
            IgnoredField::Dtime => "dtime",
            IgnoredField::Ctime => "ctime",
        }
    }

    /// The field called `name`.
    pub fn from_name(name: &str) -> Option<IgnoredField> {
        IgnoredField::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Writes `v` into this field of `ds`, as a C assignment would (cut
    /// to the field's width: `seq` keeps 16 bits).
    // The field types differ between targets (i686: 32-bit times and sizes).
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    pub(super) fn write(self, ds: &mut libc::shmid_ds, v: u32) {
        match self {
            IgnoredField::Size => ds.shm_segsz = v as _,
            IgnoredField::Key => ds.shm_perm.__key = v as _,
            IgnoredField::Cuid => ds.shm_perm.cuid = v as _,
            IgnoredField::Cgid => ds.shm_perm.cgid = v as _,
            IgnoredField::Seq => ds.shm_perm.__seq = v as _,
            IgnoredField::Nattch => ds.shm_nattch = v as _,
            IgnoredField::Cpid => ds.shm_cpid = v as _,
            IgnoredField::Lpid => ds.shm_lpid = v as _,
            IgnoredField::Atime => ds.shm_atime = v as _,
            IgnoredField::Dtime => ds.shm_dtime = v as _,
            IgnoredField::Ctime => ds.shm_ctime = v as _,
        }
    }
}

/// Values for the [`IgnoredField`]s of an `IPC_SET` buffer (0, as a
/// zeroed buffer has, for a field not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IgnoredFields([Option<u32>; 11]);

impl IgnoredFields {
    /// These fields with these values.
    pub fn new(fields: &[(IgnoredField, u32)]) -> IgnoredFields {
        let mut out = IgnoredFields::default();
        for (f, v) in fields {
            out.0[*f as usize] = Some(*v);
        }
        out
    }

    /// The fields given, with their values.
    pub fn given(&self) -> impl Iterator<Item = (IgnoredField, u32)> + '_ {
        IgnoredField::ALL.into_iter().filter_map(|f| self.0[f as usize].map(|v| (f, v)))
    }
}
