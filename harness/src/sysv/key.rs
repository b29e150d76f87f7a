//! Keys: `IPC_PRIVATE`, raw keys and `ftok`.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libc::key_t;
use nix::errno::Errno;

use super::error::{Error, Result};
use super::raw;

/// A System V IPC key (`key_t`).
///
/// Printed as `ipcs` prints it, `0x%08x`; [`Key::PRIVATE`] prints as `IPC_PRIVATE`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(key_t);

impl Key {
    /// `IPC_PRIVATE` (0): every `shmget` with it creates a new segment that no
    /// other key can find. Also the key of a segment after `IPC_RMID`.
    pub const PRIVATE: Key = Key(raw::IPC_PRIVATE);

    /// A key from its raw value. `0` is [`Key::PRIVATE`].
    pub const fn from_raw(raw: key_t) -> Key {
        Key(raw)
    }

    /// The raw value as the kernel sees it (signed: `/proc/sysvipc/shm` prints it in decimal).
    pub const fn raw(self) -> key_t {
        self.0
    }

    /// Whether this is `IPC_PRIVATE`.
    pub const fn is_private(self) -> bool {
        self.0 == raw::IPC_PRIVATE
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_private() {
            f.write_str("IPC_PRIVATE")
        } else {
            write!(f, "{:#010x}", self.0 as u32)
        }
    }
}

/// The key glibc's `ftok` computes from an inode number, a device number and a
/// project id: `(ino & 0xffff) | (dev & 0xff) << 16 | (proj_id & 0xff) << 24`.
pub const fn ftok_key(ino: u64, dev: u64, proj_id: u8) -> Key {
    let key = (ino as u32 & 0xffff) | ((dev as u32 & 0xff) << 16) | ((proj_id as u32) << 24);
    Key(key as key_t)
}

/// `ftok(path, proj_id)`—Derives a key from a file's identity, bit for bit as glibc does.
///
/// Only the low 16 bits of the inode and the low 8 bits of the device number
/// are used, so two files can give the same key; keys are not unique.
/// `proj_id` is a `u8` because only its low 8 bits matter.
///
/// The path is followed through symbolic links (`stat`, as glibc).
///
/// # Errors
/// - [`Error::FtokPath`] if the path cannot be `stat`ed (e.g. `ENOENT`).
/// - [`Error::FtokNul`] if the path holds a NUL byte (no C path can).
/// - [`Error::FtokPrivate`] if the key comes out 0 (`proj_id` 0 and a file
///   whose low inode and device bits are 0). glibc returns 0 here without
///   complaint, and 0 is `IPC_PRIVATE`: every `shmget` would then silently
///   create a new, unshared segment. This wrapper refuses instead; use
///   [`ftok_key`] for the raw value.
///
/// # References
/// - [Linux `ftok(3)`](https://man7.org/linux/man-pages/man3/ftok.3.html)
pub fn ftok(path: impl AsRef<Path>, proj_id: u8) -> Result<Key> {
    let path = path.as_ref();
    // A C path ends at its first NUL: glibc's ftok could never be given this
    // path, and `stat` never sees it, so there is no errno to report.
    if let Some(at) = path.as_os_str().as_bytes().iter().position(|b| *b == 0) {
        return Err(Error::FtokNul { path: path.to_path_buf(), proj_id, at });
    }
    let meta = std::fs::metadata(path).map_err(|e| match e.raw_os_error() {
        Some(errno) => Error::FtokPath { path: path.to_path_buf(), proj_id, errno: Errno::from_raw(errno) },
        None => Error::Proc { path: path.display().to_string(), message: format!("ftok cannot stat it: {e}") },
    })?;
    let key = ftok_key(meta.ino(), meta.dev(), proj_id);
    if key.is_private() {
        return Err(Error::FtokPrivate { path: path.to_path_buf(), proj_id });
    }
    Ok(key)
}

/// Serialized as `ipcs` prints it: `"0x%08x"`.
impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:#010x}", self.0 as u32))
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Key, D::Error> {
        let s = String::deserialize(d)?;
        let hex = s.strip_prefix("0x").ok_or_else(|| serde::de::Error::custom("a key is 0x-prefixed hex"))?;
        u32::from_str_radix(hex, 16).map(|v| Key(v as key_t)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_matches_glibc() {
        assert_eq!(ftok_key(0x1234_5678, 0xabcd, 0x14).raw(), 0x14cd_5678);
        assert_eq!(ftok_key(0, 0, 0), Key::PRIVATE);
        // proj_id with the high bit set gives a negative key_t, as glibc does.
        assert!(ftok_key(1, 1, 0xff).raw() < 0);
    }

    #[test]
    fn display_is_ipcs_style() {
        assert_eq!(Key::from_raw(0x14010203).to_string(), "0x14010203");
        assert_eq!(Key::from_raw(-1).to_string(), "0xffffffff");
        assert_eq!(Key::PRIVATE.to_string(), "IPC_PRIVATE");
        assert_eq!(format!("{:?}", Key::from_raw(0x5eed)), "Key(0x00005eed)");
        assert!(Key::PRIVATE.is_private() && !Key::from_raw(1).is_private());
    }

    #[test]
    fn serializes_as_ipcs_prints() {
        assert_eq!(serde_json::to_string(&Key::from_raw(-2)).unwrap(), "\"0xfffffffe\"");
        assert_eq!(serde_json::from_str::<Key>("\"0xfffffffe\"").unwrap(), Key::from_raw(-2));
        assert!(serde_json::from_str::<Key>("\"1234\"").is_err());
    }
}
