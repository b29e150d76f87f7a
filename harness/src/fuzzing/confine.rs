//! Confinement: a fuzz target enters a private IPC namespace once, before
//! its first input, and lowers the namespace's limits (as syzkaller does) so
//! that no input can exhaust the machine's memory. libFuzzer's `-fork` and
//! `-jobs` workers are separate processes: each enters a namespace of its
//! own, so they never see each other's segments.
//!
//! The targets that touch shared memory confine themselves in libFuzzer's
//! `LLVMFuzzerInitialize` (the `init:` of `fuzz_target!`, [`confine_at_start`]),
//! before libFuzzer starts its threads: a user namespace (how a non-root
//! user gets a private IPC namespace) can only be entered by a
//! single-threaded process. At exit, a target in a private namespace says how
//! many segments its namespace still holds (`scripts/fuzz.sh` checks it).
//!
//! A target refuses to run in the host IPC namespace unless told which keys
//! it owns: `SHM_HARNESS_FUZZ_KEYS=0xLOW-0xHIGH`, or a file
//! `<target>.fuzz-keys` beside the executable holding the same (how the
//! ClusterFuzzLite build says it).

#![allow(unsafe_code)] // opts in: fork and raw mappings of the fuzz world

use std::sync::OnceLock;

use crate::sysv::{Sysctl, Sysctls};

/// The largest segment a fuzz input may create (`kernel.shmmax` in the namespace).
pub const SHMMAX: u64 = 1 << 20;
/// All segments together, in pages (`kernel.shmall`): 4 MiB.
pub const SHMALL: u64 = 1024;
/// Segments at once (`kernel.shmmni`).
pub const SHMMNI: u64 = 16;

/// Where a fuzz target runs.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// In a private IPC namespace of its own (else: the host's).
    pub private: bool,
    /// The namespace's limits, as set (private) or read (host).
    pub limits: Sysctls,
    /// The keys it owns: all of them in a private namespace, the range given
    /// by `SHM_HARNESS_FUZZ_KEYS` on the host.
    pub keys: (u32, u32),
    /// Huge page sizes the kernel supports, as log2 (21 for 2 MiB).
    pub huge_sizes: Vec<u32>,
}

static CONFINEMENT: OnceLock<Confinement> = OnceLock::new();

/// Confines this process on first use and says how; exits with status 2 and
/// a message if it may not run here.
///
/// Call it before the process starts threads where possible: a private
/// namespace is entered by the calling thread, and threads started later
/// inherit it.
pub fn confinement() -> &'static Confinement {
    match try_confinement() {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("shm-harness fuzzing: {msg}");
            std::process::exit(2)
        }
    }
}

/// Confines this process at once, from libFuzzer's `LLVMFuzzerInitialize`
/// (`fuzz_target!(init: confine_at_start(), ...)`), while it is still
/// single-threaded; says where on stderr; exits with status 2 if it may not
/// run here. In a private namespace it also registers the end-of-run count
/// of what the namespace still holds.
pub fn confine_at_start() {
    let c = confinement();
    if c.private {
        eprintln!(
            "shm-harness fuzzing: private IPC namespace (shmmax {} bytes, shmall {} pages, shmmni {})",
            c.limits.shmmax, c.limits.shmall, c.limits.shmmni
        );
        // SAFETY: `report_at_exit` is an `extern "C" fn()` that touches no
        // state of the exiting program but stderr and /proc.
        unsafe { libc::atexit(report_at_exit) };
    } else {
        eprintln!("shm-harness fuzzing: host IPC namespace, owning keys {:#x}-{:#x}", c.keys.0, c.keys.1);
    }
}

/// At exit: how many segments the private namespace still holds (0 unless
/// an input leaked one past its own checks), or that it could not tell.
extern "C" fn report_at_exit() {
    match crate::sysv::proc_segments() {
        Ok(segs) => eprintln!("shm-harness fuzzing: at exit the private IPC namespace holds {} segments", segs.len()),
        Err(e) => eprintln!("shm-harness fuzzing: at exit the private IPC namespace could not be read: {e}"),
    }
}

/// As [`confinement`], but says why instead of exiting (for test runners
/// that skip when fuzzing is not allowed here).
///
/// # Errors
/// Why this process may not fuzz here.
pub fn try_confinement() -> Result<&'static Confinement, String> {
    static ERROR: OnceLock<String> = OnceLock::new();
    if let Some(c) = CONFINEMENT.get() {
        return Ok(c);
    }
    if let Some(e) = ERROR.get() {
        return Err(e.clone());
    }
    match confine() {
        Ok(c) => Ok(CONFINEMENT.get_or_init(|| c)),
        Err(e) => Err(ERROR.get_or_init(|| e).clone()),
    }
}

fn confine() -> Result<Confinement, String> {
    let huge_sizes = huge_page_sizes();
    match crate::namespace::enter_private_ipc_namespace() {
        Ok(()) => {
            for (s, v) in [
                (Sysctl::Shmmax, SHMMAX),
                (Sysctl::Shmall, SHMALL),
                (Sysctl::Shmmni, SHMMNI),
                (Sysctl::ShmRmidForced, 0),
            ] {
                crate::namespace::write_sysctl(s, v)
                    .map_err(|e| format!("cannot lower the namespace's limits: {e}"))?;
            }
            Ok(Confinement {
                private: true,
                limits: Sysctls { shmmax: SHMMAX, shmall: SHMALL, shmmni: SHMMNI, shm_rmid_forced: false },
                keys: (1, u32::MAX),
                huge_sizes,
            })
        }
        Err(e) => {
            let Some(range) = std::env::var("SHM_HARNESS_FUZZ_KEYS").ok().or_else(keys_file) else {
                let early = match crate::runner::thread_count() {
                    Ok(threads) if threads > 1 => format!("; this process already has {threads} threads: a fuzz target must confine itself in `fuzz_target!(init: shm_harness::fuzzing::confine::confine_at_start(), ...)`, before libFuzzer starts its threads, or run under `unshare -Ur -i`"),
                    Ok(_) => String::new(),
                    Err(why) => format!("; {why}"),
                };
                return Err(format!(
                    "refusing to fuzz in the host IPC namespace ({e}){early}; run as root or where unprivileged user namespaces are allowed, or set SHM_HARNESS_FUZZ_KEYS=0xLOW-0xHIGH to the keys this run may own"
                ));
            };
            let keys =
                parse_range(&range).ok_or_else(|| format!("SHM_HARNESS_FUZZ_KEYS={range:?}: expected 0xLOW-0xHIGH"))?;
            let limits = crate::sysv::sysctls().map_err(|e| e.to_string())?;
            Ok(Confinement { private: false, limits, keys, huge_sizes })
        }
    }
}

/// `<executable>.fuzz-keys` beside the fuzz target: how a build for
/// ClusterFuzzLite, whose options files cannot set the environment, says
/// which keys the target owns.
fn keys_file() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let text = std::fs::read_to_string(exe.with_extension("fuzz-keys")).ok()?;
    Some(text.trim().to_string())
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    let (lo, hi) = s.split_once('-')?;
    let num = |v: &str| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok();
    let (lo, hi) = (num(lo)?, num(hi)?);
    (lo != 0 && lo <= hi).then_some((lo, hi))
}

fn huge_page_sizes() -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|d| {
            d.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let kib: u64 = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
                Some((kib * 1024).trailing_zeros())
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ranges_parse() {
        assert_eq!(parse_range("0x5eed0000-0x5eed00ff"), Some((0x5eed_0000, 0x5eed_00ff)));
        assert_eq!(parse_range("0-0x10"), None);
        assert_eq!(parse_range("nonsense"), None);
    }
}
