//! The SysV shared-memory lines of `/proc/PID/maps`.
//!
//! The kernel names a SysV mapping `/SYSV%08x` after the segment's key
//! (`/SYSV00000000` for a private one), adds ` (deleted)` (its file was
//! never linked anywhere), and puts the shmid in the inode column:
//!
//! ```text
//! 7f3c1a200000-7f3c1a201000 rw-s 00000000 00:01 32769   /SYSV5eed0001 (deleted)
//! ```
//!
//! The name is matched exactly, field by field, so that a file whose path
//! merely contains `/SYSV` is not taken for a segment.

use super::control::Shmid;
use super::error::{Error, Result};
use super::key::Key;

/// One SysV mapping of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysvMapping {
    /// First address.
    pub start: usize,
    /// One past the last address.
    pub end: usize,
    /// Mapped writable (`w` in the permissions).
    pub writable: bool,
    /// Mapped executable (`x`).
    pub executable: bool,
    /// The segment's key when it was attached, from the name.
    pub key: Key,
    /// The segment's id, from the inode column.
    pub shmid: Shmid,
}

impl SysvMapping {
    /// The address range as `/proc/PID/maps` writes it, at least eight hex
    /// digits each side: `7f000000-7f001000`.
    pub fn range(&self) -> String {
        format!("{:08x}-{:08x}", self.start, self.end)
    }
}

/// Parses one line of `/proc/PID/maps`; `None` unless it is a SysV mapping.
pub fn parse_sysv_mapping(line: &str) -> Option<SysvMapping> {
    let mut f = line.split_ascii_whitespace();
    let (range, perms, _offset, _dev, inode) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let name = f.next()?;
    match (f.next(), f.next()) {
        (None, None) | (Some("(deleted)"), None) => {}
        _ => return None,
    }
    let hex = name.strip_prefix("/SYSV")?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let key = u32::from_str_radix(hex, 16).ok()?;
    let (start, end) = range.split_once('-')?;
    let perms = perms.as_bytes();
    if perms.len() != 4 || perms[3] != b's' {
        return None;
    }
    Some(SysvMapping {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
        writable: perms[1] == b'w',
        executable: perms[2] == b'x',
        key: Key::from_raw(key as i32),
        shmid: Shmid::from_raw(inode.parse().ok()?),
    })
}

/// The SysV mappings in the text of a `/proc/PID/maps`.
pub fn parse_sysv_mappings(maps: &str) -> Vec<SysvMapping> {
    maps.lines().filter_map(parse_sysv_mapping).collect()
}

/// Reads the SysV mappings of process `pid` (`None`: this one).
///
/// # Errors
/// [`Error::Proc`] if `/proc/PID/maps` cannot be read: a caller checking
/// for leaks must treat that as a failure, not as "no mappings".
pub fn sysv_mappings(pid: Option<i32>) -> Result<Vec<SysvMapping>> {
    let path = pid.map_or_else(|| "/proc/self/maps".to_string(), |p| format!("/proc/{p}/maps"));
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::Proc { path, message: format!("cannot read: {e}") })?;
    Ok(parse_sysv_mappings(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_sysv_lines() {
        // 32-bit addresses, so the test runs on i686 too.
        let maps = "7f000000-7f002000 rw-s 00000000 00:01 32769   /SYSV5eed0001 (deleted)\n\
                    7f003000-7f004000 r-xs 00000000 00:01 0      /SYSV00000000 (deleted)\n\
                    7f005000-7f006000 r--p 00000000 08:01 77     /usr/lib/x.so\n";
        let got = parse_sysv_mappings(maps);
        assert_eq!(
            got,
            vec![
                SysvMapping {
                    start: 0x7f00_0000,
                    end: 0x7f00_2000,
                    writable: true,
                    executable: false,
                    key: Key::from_raw(0x5eed_0001),
                    shmid: Shmid::from_raw(32769),
                },
                SysvMapping {
                    start: 0x7f00_3000,
                    end: 0x7f00_4000,
                    writable: false,
                    executable: true,
                    key: Key::PRIVATE,
                    shmid: Shmid::from_raw(0),
                },
            ]
        );
        assert_eq!(got[0].range(), "7f000000-7f002000");
        assert_eq!(
            parse_sysv_mapping("1000-2000 rw-s 00000000 00:01 3 /SYSV00000001").unwrap().range(),
            "00001000-00002000"
        );
        // The sign bit of a key survives.
        let neg = parse_sysv_mapping("1000-2000 rw-s 00000000 00:01 3 /SYSVfffffffe (deleted)").unwrap();
        assert_eq!(neg.key.raw(), -2);
    }

    #[test]
    fn paths_that_merely_contain_sysv_are_not_segments() {
        for line in [
            "1000-2000 rw-s 00000000 08:01 12 /home/me/SYSV00001234",
            "1000-2000 rw-s 00000000 08:01 12 /SYSVnothex0",
            "1000-2000 rw-s 00000000 08:01 12 /SYSV000012345",
            "1000-2000 rw-s 00000000 08:01 12 /SYSV00001234 (deleted) extra",
            "1000-2000 rw-p 00000000 08:01 12 /SYSV00001234 (deleted)",
            "1000-2000 rw-s 00000000 08:01 12",
            "garbage",
        ] {
            assert_eq!(parse_sysv_mapping(line), None, "{line}");
        }
    }
}
