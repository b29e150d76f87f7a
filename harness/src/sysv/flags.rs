//! Typed flags and permission bits.
//!
//! `IPC_CREAT` and `SHM_DEST` share the bit `0o1000`, `IPC_EXCL` and
//! `SHM_LOCKED` share `0o2000`, and the permission bits share the low nine bits
//! of the same `int`. Here they are distinct types, so a mode can never be
//! passed where a creation flag belongs, nor the other way round.

use std::fmt;

use libc::c_int;

use super::raw;

/// Permission bits of a segment (the low nine bits: `rwxrwxrwx`).
///
/// The default is `0o600` (owner read and write). The kernel ignores the
/// execute bits for `shmget`, but `shmat(SHM_EXEC)` checks them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mode(u16);

impl Mode {
    /// `0o600`: owner read and write, the default.
    pub const OWNER_RW: Mode = Mode(0o600);
    /// `0o666`: everyone reads and writes.
    pub const ALL_RW: Mode = Mode(0o666);
    /// No permission at all. Only ever used when asked for explicitly.
    pub const NONE: Mode = Mode(0);

    /// Mode from permission bits; `None` if any bit outside `0o777` is set.
    pub const fn new(bits: u16) -> Option<Mode> {
        if bits & !0o777 == 0 {
            Some(Mode(bits))
        } else {
            None
        }
    }

    /// Mode from the low nine bits of `bits`; the rest (such as `SHM_DEST`) is dropped.
    pub const fn from_bits_truncate(bits: u32) -> Mode {
        Mode((bits & 0o777) as u16)
    }

    /// The permission bits.
    pub const fn bits(self) -> u16 {
        self.0
    }
}

impl Default for Mode {
    fn default() -> Self {
        Mode::OWNER_RW
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mode({:#o})", self.0)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// Serialized as octal text, as `ipcs` prints it (`"600"`).
impl serde::Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:o}", self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        u32::from_str_radix(&s, 8).map(Mode::from_bits_truncate).map_err(serde::de::Error::custom)
    }
}

bitflags::bitflags! {
    /// `shmget` flags, without permission bits ([`Mode`]) and without the huge
    /// page size field ([`HugePageSize`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct GetFlags: c_int {
        /// `IPC_CREAT`: create the segment if the key is new.
        const CREAT = raw::IPC_CREAT;
        /// `IPC_EXCL`: with `CREAT`, fail with `EEXIST` if the key exists.
        const EXCL = raw::IPC_EXCL;
        /// `SHM_HUGETLB`: back the segment with huge pages.
        const HUGETLB = raw::SHM_HUGETLB;
        /// `SHM_NORESERVE`: do not reserve swap (or huge pages) for it.
        const NORESERVE = raw::SHM_NORESERVE;
    }
}

bitflags::bitflags! {
    /// `shmat` flags.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct AttachFlags: c_int {
        /// `SHM_RDONLY`: attach read-only; a write through it is `SIGSEGV`.
        const RDONLY = raw::SHM_RDONLY;
        /// `SHM_EXEC`: map the segment executable (needs execute permission).
        const EXEC = raw::SHM_EXEC;
        /// `SHM_RND`: round a given address down to a multiple of `SHMLBA`.
        const RND = raw::SHM_RND;
        /// `SHM_REMAP`: replace any existing mapping at the given address.
        const REMAP = raw::SHM_REMAP;
    }
}

/// The huge page size requested with `SHM_HUGETLB`, encoded in bits 26..32 of
/// the `shmget` flags as its log2 (`SHM_HUGE_2MB` = 21 << 26).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HugePageSize {
    /// The system's default huge page size (field left 0).
    Default,
    /// 2 MiB pages (`SHM_HUGE_2MB`).
    Mb2,
    /// 1 GiB pages (`SHM_HUGE_1GB`).
    Gb1,
    /// Any other size, as its log2 (only the low 6 bits are encodable).
    Log2(u8),
}

impl HugePageSize {
    /// The bits this size contributes to the `shmget` flags.
    pub const fn flag_bits(self) -> c_int {
        match self {
            HugePageSize::Default => 0,
            HugePageSize::Mb2 => raw::SHM_HUGE_2MB,
            HugePageSize::Gb1 => raw::SHM_HUGE_1GB,
            HugePageSize::Log2(log2) => ((log2 as c_int) & raw::SHM_HUGE_MASK) << raw::SHM_HUGE_SHIFT,
        }
    }

    /// The page size in bytes, or `None` for the system default.
    pub fn bytes(self) -> Option<usize> {
        match self {
            HugePageSize::Default => None,
            HugePageSize::Mb2 => Some(2 << 20),
            HugePageSize::Gb1 => Some(1 << 30),
            HugePageSize::Log2(log2) => 1usize.checked_shl(u32::from(log2 & 0x3f)),
        }
    }
}

/// Names the bits of a raw `shmget` flag word, as in
/// `IPC_CREAT|IPC_EXCL|SHM_HUGETLB|SHM_HUGE_2MB|0600`; unknown bits are shown in hex.
pub fn describe_get_flags(flags: c_int) -> String {
    let mut parts: Vec<String> = Vec::new();
    let known = [
        (raw::IPC_CREAT, "IPC_CREAT"),
        (raw::IPC_EXCL, "IPC_EXCL"),
        (raw::SHM_HUGETLB, "SHM_HUGETLB"),
        (raw::SHM_NORESERVE, "SHM_NORESERVE"),
    ];
    let mut rest = flags & !0o777;
    for (bit, name) in known {
        if flags & bit != 0 {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    let huge = (flags >> raw::SHM_HUGE_SHIFT) & raw::SHM_HUGE_MASK;
    if huge != 0 {
        parts.push(match huge {
            21 => "SHM_HUGE_2MB".to_string(),
            30 => "SHM_HUGE_1GB".to_string(),
            n => format!("SHM_HUGE_2^{n}"),
        });
        rest &= !(raw::SHM_HUGE_MASK << raw::SHM_HUGE_SHIFT);
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.push(format!("{:04o}", flags & 0o777));
    parts.join("|")
}

/// Names the bits of a raw `shmat` flag word, as in `SHM_RDONLY|SHM_RND`, or `0`.
pub fn describe_attach_flags(flags: c_int) -> String {
    let mut parts: Vec<String> = Vec::new();
    let known = [
        (raw::SHM_RDONLY, "SHM_RDONLY"),
        (raw::SHM_EXEC, "SHM_EXEC"),
        (raw::SHM_RND, "SHM_RND"),
        (raw::SHM_REMAP, "SHM_REMAP"),
    ];
    let mut rest = flags;
    for (bit, name) in known {
        if flags & bit != 0 {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    if parts.is_empty() {
        "0".to_string()
    } else {
        parts.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_rejects_bits_outside_permissions() {
        assert_eq!(Mode::new(0o600), Some(Mode::OWNER_RW));
        assert_eq!(Mode::new(0o1600), None);
        assert_eq!(Mode::from_bits_truncate(0o3644).bits(), 0o644);
        assert_eq!(Mode::default().bits(), 0o600);
    }

    #[test]
    fn huge_page_encodings_match_uapi() {
        assert_eq!(HugePageSize::Mb2.flag_bits(), 0x5400_0000);
        assert_eq!(HugePageSize::Gb1.flag_bits(), 0x7800_0000);
        assert_eq!(HugePageSize::Log2(21).flag_bits(), HugePageSize::Mb2.flag_bits());
        assert_eq!(HugePageSize::Mb2.bytes(), Some(2 * 1024 * 1024));
        assert_eq!(HugePageSize::Gb1.bytes(), Some(1 << 30));
        assert_eq!(HugePageSize::Default.bytes(), None);
        assert_eq!(HugePageSize::Default.flag_bits(), 0);
        assert_eq!(HugePageSize::Log2(16).bytes(), Some(1 << 16));
        assert_eq!(HugePageSize::Log2(16).flag_bits(), 16 << 26);
        // Only the low 6 bits are encodable, in the flags and in the size.
        assert_eq!(HugePageSize::Log2(64 + 21).flag_bits(), HugePageSize::Mb2.flag_bits());
        assert_eq!(HugePageSize::Log2(64 + 21).bytes(), Some(2 << 20));
        assert_eq!(HugePageSize::Log2(63).bytes(), 1usize.checked_shl(63));
    }

    #[test]
    fn modes_print_as_octal() {
        assert_eq!(Mode::OWNER_RW.to_string(), "0600");
        assert_eq!(Mode::new(0o7).unwrap().to_string(), "0007");
        assert_eq!(format!("{:?}", Mode::ALL_RW), "Mode(0o666)");
        assert_eq!(serde_json::to_string(&Mode::new(0o640).unwrap()).unwrap(), "\"640\"");
        assert_eq!(serde_json::from_str::<Mode>("\"1640\"").unwrap(), Mode::new(0o640).unwrap());
    }

    #[test]
    fn describes_flags_like_the_man_page() {
        assert_eq!(describe_get_flags(raw::IPC_CREAT | raw::IPC_EXCL | 0o600), "IPC_CREAT|IPC_EXCL|0600");
        assert_eq!(describe_get_flags(0), "0000");
        assert_eq!(describe_get_flags(raw::SHM_HUGETLB | raw::SHM_HUGE_2MB | 0o640), "SHM_HUGETLB|SHM_HUGE_2MB|0640");
        assert_eq!(describe_get_flags(0x10_0000 | 0o600), "0x100000|0600");
        assert_eq!(describe_attach_flags(0), "0");
        assert_eq!(describe_attach_flags(raw::SHM_RDONLY | raw::SHM_RND), "SHM_RDONLY|SHM_RND");
        assert_eq!(describe_attach_flags(raw::SHM_RDONLY), "SHM_RDONLY");
        assert_eq!(describe_attach_flags(raw::SHM_EXEC | 0x1), "SHM_EXEC|0x1");
        assert_eq!(describe_attach_flags(0x1), "0x1");
    }
}
