//! The durable journal of host-mode runs: what each run created, written
//! before the step's answer is sent, so that a run killed by SIGKILL leaves
//! a record the next run (or `shm-harness sweep`) can act on.
//!
//! One file per run in the state directory (`$SHM_HARNESS_STATE_DIR`, else
//! `/run/shm-harness` as root, else `$XDG_RUNTIME_DIR/shm-harness`, else
//! `/tmp/shm-harness-UID`, made 0700 and checked to be ours). Each record
//! is one JSON line appended with a single `write` (`O_APPEND`) by the actor
//! that created the segment. The run holds an `flock` on its file through
//! one open file description that every process of the run inherits (not
//! exec'd programs: `O_CLOEXEC`), so "the run is dead" is "the lock can be
//! taken": no pid is trusted. A run that ends normally deletes its file.
//!
//! In namespace mode there is no journal: segments die with the namespace.

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sysv::Shmid;

/// One segment a run created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The scenario file.
    pub scenario: String,
    /// The step's line.
    pub line: usize,
    /// The process that created it.
    pub process: String,
    /// `shmid`.
    pub shmid: i32,
    /// `shm_cpid` as the sweeper (in the coordinator's PID namespace) sees it.
    pub cpid: i32,
    /// `shm_ctime`.
    pub ctime: i64,
    /// The key.
    pub key: i32,
    /// The IPC namespace (`/proc/thread-self/ns/ipc`): device and inode.
    pub ns: (u64, u64),
}

/// The state directory, made (0700) if missing and checked to be ours.
///
/// # Errors
/// A message naming the directory and what is wrong with it.
pub fn state_dir() -> Result<PathBuf, String> {
    let uid = nix::unistd::Uid::effective();
    // An explicit choice must work as given.
    if let Some(d) = std::env::var_os("SHM_HARNESS_STATE_DIR") {
        return usable_dir(&PathBuf::from(d), uid);
    }
    // Otherwise the first usable of the usual places. (Root of a user
    // namespace is uid 0 too, but `/run/shm-harness` then belongs to the
    // machine's root, not to it: it is passed over, never used.)
    let mut candidates = Vec::new();
    if uid.is_root() {
        candidates.push(PathBuf::from("/run/shm-harness"));
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(PathBuf::from(d).join("shm-harness"));
    }
    candidates.push(PathBuf::from(format!("/tmp/shm-harness-{uid}")));
    let mut why = Vec::new();
    for dir in candidates {
        match usable_dir(&dir, uid) {
            Ok(d) => return Ok(d),
            Err(e) => why.push(e),
        }
    }
    Err(format!("no usable state directory: {}", why.join("; ")))
}

/// `dir`, made (0700) if missing, if it is a directory owned by `uid` and
/// writable only by it.
fn usable_dir(dir: &Path, uid: nix::unistd::Uid) -> Result<PathBuf, String> {
    match std::fs::DirBuilder::new().mode(0o700).recursive(true).create(dir) {
        Ok(()) => {}
        Err(e) => return Err(format!("state directory {}: {e}; set SHM_HARNESS_STATE_DIR", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("state directory {}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid.as_raw() || meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "state directory {} is not a directory owned by uid {uid} and writable only by it; remove it or set SHM_HARNESS_STATE_DIR",
            dir.display()
        ));
    }
    Ok(dir.to_path_buf())
}

/// This run's journal: held (locked) until the run ends.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Creates and locks a new journal in `dir`. It is made under a
    /// temporary name and renamed once locked, so a sweep never sees it
    /// unlocked.
    ///
    /// # Errors
    /// A message naming the file and the failed call.
    pub fn create(dir: &Path) -> Result<Journal, String> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("run-{}-{nanos}", std::process::id());
        let tmp = dir.join(format!("{name}.new"));
        let path = dir.join(format!("{name}.journal"));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| format!("journal {}: {e}", tmp.display()))?;
        flock_exclusive(&file).map_err(|e| format!("flock {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("journal {}: {e}", path.display()))?;
        Ok(Journal { file, path })
    }

    /// The fd every process of the run inherits (keep it open across forks).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run ended normally: its segments are accounted for.
    pub fn finish(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The IPC namespace of the calling thread: device and inode.
pub fn ipc_namespace() -> Option<(u64, u64)> {
    let m = std::fs::metadata("/proc/thread-self/ns/ipc").ok()?;
    Some((m.dev(), m.ino()))
}

/// This process's pid as the host's `/proc` shows it (also from inside a
/// PID namespace of ours: `/proc` is the host's mount).
pub fn host_pid() -> i32 {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| std::process::id() as i32)
}

/// Appends `rec` to the journal open at `fd` with one `write`.
///
/// # Errors
/// The `write` failed or was short.
pub fn append(fd: RawFd, rec: &Record) -> Result<(), String> {
    let mut line = serde_json::to_vec(rec).map_err(|e| e.to_string())?;
    line.push(b'\n');
    // SAFETY: writes from a live buffer to an fd the caller keeps open.
    let n = unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
    if n != line.len() as isize {
        return Err(format!("journal write: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// What a sweep found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Segments removed (or, dry run, that would be).
    pub removed: usize,
    /// Recorded shmids that now show another identity (left alone).
    pub not_ours: usize,
    /// Segments that could not be removed.
    pub failed: usize,
    /// Journals of dead runs handled.
    pub journals: usize,
}

/// Scans the state directory: for each journal whose run is provably dead
/// (its lock can be taken), removes every recorded segment of the current
/// IPC namespace that `IPC_STAT` still shows with the recorded identity,
/// reporting each through `say`; then deletes the journal. Records of other
/// IPC namespaces are left (and the journal with them) for a sweep there.
///
/// # Errors
/// The state directory cannot be read.
pub fn sweep(dir: &Path, dry_run: bool, mut say: impl FnMut(String)) -> Result<Swept, String> {
    let mut out = Swept::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(format!("state directory {}: {e}", dir.display())),
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "journal") {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(&path) else { continue };
        // Alive: its lock is held by a process of the run.
        if flock_exclusive(&file).is_err() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let run = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let failed_before = out.failed;
        let elsewhere = settle(&text, &run, |_| true, dry_run, &mut say, &mut out);
        out.journals += 1;
        if !dry_run && !elsewhere && out.failed == failed_before {
            let _ = std::fs::remove_file(&path);
        }
        // Closing `file` releases the lock.
        drop(file);
    }
    Ok(out)
}

/// Removes the segments a run recorded while it is still alive, for one
/// scenario whose supervisor died without tearing it down (killed): every
/// record of `scenario` in the current IPC namespace that `IPC_STAT` still
/// shows with the recorded identity is removed and reported through `say`;
/// anything else is reported and left alone.
///
/// # Errors
/// The journal cannot be read.
pub fn settle_scenario(path: &Path, scenario: &str, mut say: impl FnMut(String)) -> Result<Swept, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("journal {}: {e}", path.display()))?;
    let mut out = Swept::default();
    settle(&text, "this run", |r| r.scenario == scenario, false, &mut say, &mut out);
    Ok(out)
}

/// Acts on the records of a journal's `text` that `pick` selects, in the
/// current IPC namespace: removes (or, dry run, reports) each segment the
/// kernel still shows with a recorded identity; counts into `out`. True if
/// some picked record belongs to another IPC namespace.
fn settle(
    text: &str,
    run: &str,
    pick: impl Fn(&Record) -> bool,
    dry_run: bool,
    say: &mut impl FnMut(String),
    out: &mut Swept,
) -> bool {
    let here = ipc_namespace();
    let records: Vec<Record> = text.lines().filter_map(|l| serde_json::from_str::<Record>(l).ok()).collect();
    let mut elsewhere = false;
    let mut done: Vec<i32> = Vec::new();
    for rec in records.iter().filter(|r| pick(r)) {
        if Some(rec.ns) != here {
            elsewhere = true;
            continue;
        }
        if done.contains(&rec.shmid) {
            continue;
        }
        let made = format!("made by {run}, {}:{} ({})", rec.scenario, rec.line, rec.process);
        let key = crate::sysv::Key::from_raw(rec.key);
        match crate::runner::host::current_identity(rec.shmid) {
            Ok(None) => {}
            Err(e) => {
                // Cannot tell: keep the journal for a sweep that can see.
                out.failed += 1;
                say(format!("shm-harness: cannot check shmid {} (key {key}), {made}: {e}; journal kept", rec.shmid));
            }
            Ok(Some(st)) if st.cpid != rec.cpid || st.ctime != rec.ctime => {
                // Another record may carry the identity after a `set`.
                if records
                    .iter()
                    .any(|r| r.shmid == rec.shmid && r.cpid == st.cpid && r.ctime == st.ctime && r.ns == rec.ns)
                {
                    continue;
                }
                out.not_ours += 1;
                say(format!(
                    "shm-harness: shmid {} (key {key}) {made}: now another segment (cpid {}, ctime {}), not ours any more, left alone",
                    rec.shmid, st.cpid, st.ctime
                ));
            }
            Ok(Some(_)) if dry_run => {
                out.removed += 1;
                say(format!("shm-harness: would remove shmid {} (key {key}), {made}", rec.shmid));
            }
            Ok(Some(_)) => match Shmid::from_raw(rec.shmid).remove() {
                Ok(()) => {
                    out.removed += 1;
                    say(format!("shm-harness: removed shmid {} (key {key}) left behind, {made}", rec.shmid));
                }
                Err(e) => {
                    out.failed += 1;
                    say(format!("shm-harness: cannot remove shmid {} (key {key}), {made}: {e}", rec.shmid));
                }
            },
        }
        done.push(rec.shmid);
    }
    elsewhere
}

/// `flock(fd, LOCK_EX|LOCK_NB)`—Takes the lock of the file's open file
/// description, or fails at once (`EWOULDBLOCK`) if another holds it.
fn flock_exclusive(file: &File) -> Result<(), nix::errno::Errno> {
    // SAFETY: flock on an fd `file` keeps open for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// Appends to a journal file by path (for tests and tools).
///
/// # Errors
/// The file cannot be opened or written.
pub fn append_to(path: &Path, rec: &Record) -> Result<(), String> {
    let mut f = OpenOptions::new().append(true).open(path).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(rec).map_err(|e| e.to_string())?;
    line.push(b'\n');
    f.write_all(&line).map_err(|e| e.to_string())
}
