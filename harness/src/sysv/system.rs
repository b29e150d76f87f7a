//! The system's view: `/proc/sysvipc/shm` and the `kernel.shm*` sysctls.

use std::fs;

use serde::Serialize;

use super::control::Shmid;
use super::error::{Error, Result};
use super::flags::Mode;
use super::key::Key;
use super::raw;

/// Where the kernel lists the namespace's segments.
pub const SYSVIPC_SHM: &str = "/proc/sysvipc/shm";

/// One row of `/proc/sysvipc/shm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcSegment {
    /// `key`, printed by the kernel as a signed decimal.
    pub key: Key,
    /// `shmid`.
    pub shmid: Shmid,
    /// The permission bits of `perms`.
    pub mode: Mode,
    /// `SHM_DEST` in `perms`.
    pub dest: bool,
    /// `SHM_LOCKED` in `perms`.
    pub locked: bool,
    /// `size` (`shm_segsz`).
    pub size: u64,
    /// `cpid`.
    pub cpid: i32,
    /// `lpid`.
    pub lpid: i32,
    /// `nattch`.
    pub nattch: u64,
    /// `uid`.
    pub uid: u32,
    /// `gid`.
    pub gid: u32,
    /// `cuid`.
    pub cuid: u32,
    /// `cgid`.
    pub cgid: u32,
    /// `atime`.
    pub atime: i64,
    /// `dtime`.
    pub dtime: i64,
    /// `ctime`.
    pub ctime: i64,
    /// `rss` in bytes, absent before Linux 2.6.31-ish kernels added the column.
    pub rss: Option<u64>,
    /// `swap` in bytes, absent likewise.
    pub swap: Option<u64>,
}

/// Reads `/proc/sysvipc/shm`: the segments of the calling thread's IPC namespace.
///
/// # Errors
/// [`Error::Proc`] if the file cannot be read or a row does not parse.
pub fn proc_segments() -> Result<Vec<ProcSegment>> {
    let text = fs::read_to_string(SYSVIPC_SHM)
        .map_err(|e| Error::Proc { path: SYSVIPC_SHM.into(), message: format!("cannot read: {e}") })?;
    parse_proc_segments(&text).map_err(|message| Error::Proc { path: SYSVIPC_SHM.into(), message })
}

/// Parses the text of `/proc/sysvipc/shm`, locating columns by the header's
/// names (so a kernel without `rss`/`swap` parses too).
///
/// # Errors
/// A message naming the line and column that did not parse.
pub fn parse_proc_segments(text: &str) -> std::result::Result<Vec<ProcSegment>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty file, expected a header line")?.split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let need = |name: &str| col(name).ok_or(format!("header has no `{name}` column: {header:?}"));
    let (c_key, c_id, c_perms, c_size) = (need("key")?, need("shmid")?, need("perms")?, need("size")?);
    let (c_cpid, c_lpid, c_nattch) = (need("cpid")?, need("lpid")?, need("nattch")?);
    let (c_uid, c_gid, c_cuid, c_cgid) = (need("uid")?, need("gid")?, need("cuid")?, need("cgid")?);
    let (c_atime, c_dtime, c_ctime) = (need("atime")?, need("dtime")?, need("ctime")?);
    let (c_rss, c_swap) = (col("rss"), col("swap"));

    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let lineno = n + 2;
        let get = |c: usize, name: &str| -> std::result::Result<&str, String> {
            fields.get(c).copied().ok_or(format!("line {lineno}: missing `{name}` column"))
        };
        macro_rules! num {
            ($c:expr, $name:expr, $t:ty) => {
                get($c, $name)?.parse::<$t>().map_err(|e| format!("line {lineno}: `{}` is not a number: {e}", $name))?
            };
        }
        let perms = u32::from_str_radix(get(c_perms, "perms")?, 8)
            .map_err(|e| format!("line {lineno}: perms is not octal: {e}"))?;
        let opt = |c: Option<usize>| c.and_then(|c| fields.get(c)).and_then(|v| v.parse::<u64>().ok());
        out.push(ProcSegment {
            key: Key::from_raw(num!(c_key, "key", i32)),
            shmid: Shmid::from_raw(num!(c_id, "shmid", i32)),
            mode: Mode::from_bits_truncate(perms),
            dest: perms & raw::SHM_DEST != 0,
            locked: perms & raw::SHM_LOCKED != 0,
            size: num!(c_size, "size", u64),
            cpid: num!(c_cpid, "cpid", i32),
            lpid: num!(c_lpid, "lpid", i32),
            nattch: num!(c_nattch, "nattch", u64),
            uid: num!(c_uid, "uid", u32),
            gid: num!(c_gid, "gid", u32),
            cuid: num!(c_cuid, "cuid", u32),
            cgid: num!(c_cgid, "cgid", u32),
            atime: num!(c_atime, "atime", i64),
            dtime: num!(c_dtime, "dtime", i64),
            ctime: num!(c_ctime, "ctime", i64),
            rss: opt(c_rss),
            swap: opt(c_swap),
        });
    }
    Ok(out)
}

/// The namespace's shared-memory sysctls (`/proc/sys/kernel/shm*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sysctls {
    /// `kernel.shmmax`: largest segment in bytes.
    pub shmmax: u64,
    /// `kernel.shmall`: most pages in all segments.
    pub shmall: u64,
    /// `kernel.shmmni`: most segments.
    pub shmmni: u64,
    /// `kernel.shm_rmid_forced`: segments are removed when their last
    /// attached process exits, even without `IPC_RMID`.
    pub shm_rmid_forced: bool,
}

/// One of the shared-memory sysctls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sysctl {
    /// `kernel.shmmax`.
    Shmmax,
    /// `kernel.shmall`.
    Shmall,
    /// `kernel.shmmni`.
    Shmmni,
    /// `kernel.shm_rmid_forced`.
    ShmRmidForced,
    /// `kernel.shm_next_id`: the id the next new segment gets (-1: the
    /// kernel's choice; reset to -1 once used).
    ShmNextId,
}

impl Sysctl {
    /// Every shared-memory sysctl.
    pub const ALL: [Sysctl; 5] =
        [Sysctl::Shmmax, Sysctl::Shmall, Sysctl::Shmmni, Sysctl::ShmRmidForced, Sysctl::ShmNextId];

    /// The name as in `sysctl` (`shmmax`), without the `kernel.` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Sysctl::Shmmax => "shmmax",
            Sysctl::Shmall => "shmall",
            Sysctl::Shmmni => "shmmni",
            Sysctl::ShmRmidForced => "shm_rmid_forced",
            Sysctl::ShmNextId => "shm_next_id",
        }
    }

    /// The sysctl named `name` (`shmmax` or `kernel.shmmax`).
    pub fn from_name(name: &str) -> Option<Sysctl> {
        let name = name.strip_prefix("kernel.").unwrap_or(name);
        Sysctl::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Its file under `/proc/sys/kernel`.
    pub fn path(self) -> String {
        format!("/proc/sys/kernel/{}", self.name())
    }

    /// Reads the value in the calling thread's IPC namespace.
    ///
    /// # Errors
    /// [`Error::Proc`] if the file cannot be read or parsed, or holds a
    /// negative number (`shm_next_id` reads -1: use [`Sysctl::read_signed`]).
    pub fn read(self) -> Result<u64> {
        let path = self.path();
        let text = fs::read_to_string(&path)
            .map_err(|e| Error::Proc { path: path.clone(), message: format!("cannot read: {e}") })?;
        text.trim().parse().map_err(|e| Error::Proc { path, message: format!("not a number ({:?}): {e}", text.trim()) })
    }

    /// Reads the value as a signed number: every one of these sysctls fits
    /// (`shmmax`'s default, 2^64 - 2^24 - 1, and the -1 of `shm_next_id`).
    ///
    /// # Errors
    /// [`Error::Proc`] if the file cannot be read or parsed.
    pub fn read_signed(self) -> Result<i128> {
        let path = self.path();
        let text = fs::read_to_string(&path)
            .map_err(|e| Error::Proc { path: path.clone(), message: format!("cannot read: {e}") })?;
        text.trim().parse().map_err(|e| Error::Proc { path, message: format!("not a number ({:?}): {e}", text.trim()) })
    }

    /// Writes the value in the calling thread's IPC namespace, whichever it
    /// is: no check that it is not the host's. (This project writes only
    /// through `shm_harness::namespace::write_sysctl`, which refuses the
    /// host namespace.)
    ///
    /// # Errors
    /// [`Error::Sys`] with the kernel's errno if the write fails (`EACCES`
    /// without privilege over the namespace, `EINVAL` for a value out of
    /// the sysctl's range), [`Error::Proc`] for a failure without one.
    pub fn write_unchecked(self, value: impl std::fmt::Display) -> Result<()> {
        let path = self.path();
        fs::write(&path, value.to_string()).map_err(|e| match e.raw_os_error() {
            Some(errno) => {
                Error::Sys { call: format!("write {path} = {value}"), errno: nix::errno::Errno::from_raw(errno) }
            }
            None => Error::Proc { path, message: format!("cannot write {value}: {e}") },
        })
    }
}

/// Reads the calling thread's IPC namespace's shared-memory sysctls.
///
/// # Errors
/// [`Error::Proc`] if a file cannot be read.
pub fn sysctls() -> Result<Sysctls> {
    Ok(Sysctls {
        shmmax: Sysctl::Shmmax.read()?,
        shmall: Sysctl::Shmall.read()?,
        shmmni: Sysctl::Shmmni.read()?,
        shm_rmid_forced: Sysctl::ShmRmidForced.read()? != 0,
    })
}

/// The kernel's default huge page size in bytes: what `SHM_HUGETLB` without
/// a size field ([`HugePageSize::Default`](super::HugePageSize::Default))
/// gets. Read from `Hugepagesize:` in `/proc/meminfo`, the kernel's
/// `default_hstate` (the `default_hugepagesz=` boot parameter; not always
/// the smallest size in [`huge_page_sizes`]). `None` if the kernel has no
/// huge pages or the file cannot be read.
pub fn default_huge_page_size() -> Option<usize> {
    parse_default_huge_page_size(&fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_default_huge_page_size(meminfo: &str) -> Option<usize> {
    let value = meminfo.lines().find_map(|l| l.strip_prefix("Hugepagesize:"))?;
    let kib: usize = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024).filter(|b| *b > 0)
}

/// Every huge page size the kernel supports, in bytes, smallest first
/// (`/sys/kernel/mm/hugepages/hugepages-<N>kB`); empty without huge pages.
pub fn huge_page_sizes() -> Vec<usize> {
    let mut out: Vec<usize> = fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|d| {
            d.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let kib: usize = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
                kib.checked_mul(1024)
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// The huge pages of one size that a new segment can still get: the
/// pool's free pages less those already reserved (`free_hugepages -
/// resv_hugepages` under `/sys/kernel/mm/hugepages/hugepages-<N>kB`).
/// `size` `None` is the kernel's default size.
///
/// # Errors
/// [`Error::Proc`] naming the file when the kernel has no huge pages of
/// that size or a file cannot be read.
pub fn available_huge_pages(size: Option<usize>) -> Result<u64> {
    let size = size.or_else(default_huge_page_size).ok_or_else(|| Error::Proc {
        path: "/proc/meminfo".into(),
        message: "no Hugepagesize: the kernel has no huge pages".into(),
    })?;
    let dir = format!("/sys/kernel/mm/hugepages/hugepages-{}kB", size / 1024);
    let read = |name: &str| -> Result<u64> {
        let path = format!("{dir}/{name}");
        let text = fs::read_to_string(&path)
            .map_err(|e| Error::Proc { path: path.clone(), message: format!("cannot read: {e}") })?;
        text.trim().parse().map_err(|e| Error::Proc { path, message: format!("not a number ({:?}): {e}", text.trim()) })
    };
    Ok(read("free_hugepages")?.saturating_sub(read("resv_hugepages")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sysctl_reads_as_the_number_its_file_holds() {
        for s in [Sysctl::Shmmni, Sysctl::Shmmax, Sysctl::ShmNextId] {
            let text = std::fs::read_to_string(s.path()).expect("readable");
            let want: i128 = text.trim().parse().expect("a number");
            assert_eq!(s.read_signed().expect("read"), want, "{s:?}");
        }
        assert!(Sysctl::Shmmni.read_signed().unwrap() > 0, "there is room for one segment at least");
    }

    const SAMPLE: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
        -1412562412          3  1600                  4096   123   456      2     0     0     0     0 1700000000          0 1700000000                  4096                     0\n";

    #[test]
    fn parses_signed_key_and_dest_bit() {
        let rows = parse_proc_segments(SAMPLE).unwrap();
        assert_eq!(rows.len(), 1);
        let r = rows[0];
        assert_eq!(r.key.raw(), -1412562412);
        assert_eq!(r.shmid.raw(), 3);
        assert_eq!(r.mode.bits(), 0o600);
        assert!(r.dest && !r.locked);
        assert_eq!((r.size, r.cpid, r.lpid, r.nattch), (4096, 123, 456, 2));
        assert_eq!(r.rss, Some(4096));
    }

    #[test]
    fn old_kernels_without_rss_and_swap_parse() {
        let text = "       key      shmid perms       size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime\n\
                    0 0 2600 100 1 1 0 0 0 0 0 0 0 0\n";
        let rows = parse_proc_segments(text).unwrap();
        assert!(rows[0].locked && !rows[0].dest);
        assert_eq!(rows[0].rss, None);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let err = parse_proc_segments("key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime\nx 0 600 1 1 1 0 0 0 0 0 0 0 0\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse_proc_segments("").is_err());
    }

    #[test]
    fn default_huge_page_size_is_meminfos() {
        let meminfo = "MemTotal:       16000000 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n";
        assert_eq!(parse_default_huge_page_size(meminfo), Some(2 << 20));
        assert_eq!(parse_default_huge_page_size("Hugepagesize:    1048576 kB\n"), Some(1 << 30));
        assert_eq!(parse_default_huge_page_size("MemTotal: 1 kB\n"), None);
        assert_eq!(parse_default_huge_page_size("Hugepagesize: 0 kB\n"), None);
        // The live value: there is one exactly when the kernel lists huge
        // page sizes, and it is one of them.
        let sizes = huge_page_sizes();
        assert_eq!(default_huge_page_size().is_some(), !sizes.is_empty(), "{sizes:?}");
        if let Some(size) = default_huge_page_size() {
            assert!(sizes.contains(&size), "{size} not in {sizes:?}");
        }
        assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
        assert!(sizes.iter().all(|s| s.is_power_of_two() && *s > 4096), "{sizes:?}");
    }

    #[test]
    fn available_huge_pages_name_what_is_missing() {
        // No kernel has 4 KiB "huge" pages: the error names the directory.
        let e = available_huge_pages(Some(4096)).unwrap_err().to_string();
        assert!(e.starts_with("/sys/kernel/mm/hugepages/hugepages-4kB/free_hugepages: cannot read"), "{e}");
        if let Some(size) = default_huge_page_size() {
            assert_eq!(available_huge_pages(None).unwrap(), available_huge_pages(Some(size)).unwrap());
        }
    }

    #[test]
    fn sysctl_names() {
        assert_eq!(Sysctl::from_name("kernel.shmmni"), Some(Sysctl::Shmmni));
        assert_eq!(Sysctl::from_name("shm_rmid_forced"), Some(Sysctl::ShmRmidForced));
        assert_eq!(Sysctl::from_name("msgmax"), None);
        assert_eq!(Sysctl::from_name("kernel.shm_next_id"), Some(Sysctl::ShmNextId));
        assert_eq!(Sysctl::ShmNextId.path(), "/proc/sys/kernel/shm_next_id");
    }
}
