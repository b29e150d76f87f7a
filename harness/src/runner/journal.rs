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

#![allow(unsafe_code)] // opts in: write(2) and flock(2) on raw file descriptors

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sysv::Shmid;

/// Why the journal (or its state directory) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The state directory could not be made.
    #[error("state directory {}: {source}; set SHM_HARNESS_STATE_DIR", path.display())]
    DirCreate {
        /// The directory.
        path: PathBuf,
        /// What `mkdir` said.
        source: std::io::Error,
    },
    /// The state directory could not be read (`lstat`, `readdir`).
    #[error("state directory {}: {source}", path.display())]
    DirRead {
        /// The directory.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The state directory is not safe to use: another user could plant or
    /// remove journals there.
    #[error("state directory {} is {problem}, not a directory owned by uid {uid} and writable only by it; remove it or set SHM_HARNESS_STATE_DIR", path.display())]
    DirRefused {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: DirProblem,
        /// This process's effective uid.
        uid: u32,
    },
    /// None of the usual places is usable: why not, for each.
    #[error("no usable state directory: {}", join(.0))]
    NoStateDir(Vec<JournalError>),
    /// A journal could not be opened, renamed or read.
    #[error("journal {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A new journal could not be locked.
    #[error("flock {}: {errno}", path.display())]
    Lock {
        /// The file.
        path: PathBuf,
        /// What `flock` said.
        errno: nix::errno::Errno,
    },
    /// Appending a record failed (`write`).
    #[error("journal write: {errno}")]
    Write {
        /// What `write` said.
        errno: nix::errno::Errno,
    },
    /// Appending a record wrote only part of it (the disk is full?).
    #[error("journal write: {wrote} of {len} bytes written; is the state directory's file system full?")]
    ShortWrite {
        /// Bytes written.
        wrote: usize,
        /// The record's length.
        len: usize,
    },
    /// A record could not be encoded (serde's message).
    #[error("cannot encode a journal record: {0}")]
    Encode(String),
}

/// What makes a state directory unsafe to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirProblem {
    /// A symbolic link (it could point anywhere).
    Symlink,
    /// Not a directory at all.
    NotADirectory,
    /// Owned by another user.
    Owner(u32),
    /// Writable by group or others.
    Mode(u32),
}

impl std::fmt::Display for DirProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirProblem::Symlink => write!(f, "a symbolic link"),
            DirProblem::NotADirectory => write!(f, "not a directory"),
            DirProblem::Owner(uid) => write!(f, "owned by uid {uid}"),
            DirProblem::Mode(mode) => write!(f, "writable by others (mode {mode:04o})"),
        }
    }
}

fn join(errors: &[JournalError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// The message, for callers whose errors are still text (`?` in the
/// actor's and the supervisor's string-error functions, and in tests).
impl From<JournalError> for String {
    fn from(e: JournalError) -> String {
        e.to_string()
    }
}

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
/// [`JournalError::DirCreate`], [`JournalError::DirRead`] or
/// [`JournalError::DirRefused`] for `$SHM_HARNESS_STATE_DIR`, else
/// [`JournalError::NoStateDir`] with why each usual place was passed over.
pub fn state_dir() -> Result<PathBuf, JournalError> {
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
    Err(JournalError::NoStateDir(why))
}

/// `dir`, made (0700) if missing, if it is a directory owned by `uid` and
/// writable only by it.
fn usable_dir(dir: &Path, uid: nix::unistd::Uid) -> Result<PathBuf, JournalError> {
    let path = dir.to_path_buf();
    if let Err(source) = std::fs::DirBuilder::new().mode(0o700).recursive(true).create(dir) {
        return Err(JournalError::DirCreate { path, source });
    }
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(source) => return Err(JournalError::DirRead { path, source }),
    };
    let mode = meta.permissions().mode() & 0o7777;
    let problem = if meta.file_type().is_symlink() {
        DirProblem::Symlink
    } else if !meta.is_dir() {
        DirProblem::NotADirectory
    } else if meta.uid() != uid.as_raw() {
        DirProblem::Owner(meta.uid())
    } else if mode & 0o022 != 0 {
        DirProblem::Mode(mode)
    } else {
        return Ok(path);
    };
    Err(JournalError::DirRefused { path, problem, uid: uid.as_raw() })
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
    /// [`JournalError::File`] (open, rename) or [`JournalError::Lock`],
    /// naming the file.
    pub fn create(dir: &Path) -> Result<Journal, JournalError> {
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
            .map_err(|source| JournalError::File { path: tmp.clone(), source })?;
        flock_exclusive(&file).map_err(|errno| JournalError::Lock { path: tmp.clone(), errno })?;
        if let Err(source) = std::fs::rename(&tmp, &path) {
            return Err(JournalError::File { path, source });
        }
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
/// [`JournalError::Write`] or [`JournalError::ShortWrite`].
pub fn append(fd: RawFd, rec: &Record) -> Result<(), JournalError> {
    let line = record_line(rec)?;
    // SAFETY: writes from a live buffer to an fd the caller keeps open.
    let n = unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
    match usize::try_from(n) {
        Err(_) => Err(JournalError::Write { errno: nix::errno::Errno::last() }),
        Ok(wrote) if wrote != line.len() => Err(JournalError::ShortWrite { wrote, len: line.len() }),
        Ok(_) => Ok(()),
    }
}

/// `rec` as one JSON line.
fn record_line(rec: &Record) -> Result<Vec<u8>, JournalError> {
    let mut line = serde_json::to_vec(rec).map_err(|e| JournalError::Encode(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
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
/// [`JournalError::DirRead`]: the state directory cannot be read.
pub fn sweep(dir: &Path, dry_run: bool, mut say: impl FnMut(String)) -> Result<Swept, JournalError> {
    let mut out = Swept::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(JournalError::DirRead { path: dir.to_path_buf(), source }),
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
/// [`JournalError::File`]: the journal cannot be read.
pub fn settle_scenario(path: &Path, scenario: &str, mut say: impl FnMut(String)) -> Result<Swept, JournalError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| JournalError::File { path: path.to_path_buf(), source })?;
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
/// [`JournalError::File`]: the file cannot be opened or written.
pub fn append_to(path: &Path, rec: &Record) -> Result<(), JournalError> {
    let file_error = |source| JournalError::File { path: path.to_path_buf(), source };
    let mut f = OpenOptions::new().append(true).open(path).map_err(file_error)?;
    f.write_all(&record_line(rec)?).map_err(file_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(dir: &Path) -> Option<DirProblem> {
        match usable_dir(dir, nix::unistd::Uid::effective()) {
            Err(JournalError::DirRefused { problem, .. }) => Some(problem),
            Err(e) => panic!("{e}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn a_state_directory_is_refused_saying_why() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = tmp.path().join("ok");
        assert_eq!(refused(&ok), None, "made 0700 and ours");
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(refused(&open), Some(DirProblem::Mode(0o777)));
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert_eq!(refused(&link), Some(DirProblem::Symlink));
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        match usable_dir(&file, nix::unistd::Uid::effective()) {
            Err(e @ JournalError::DirCreate { .. }) => {
                assert!(e.to_string().contains("set SHM_HARNESS_STATE_DIR"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let e = JournalError::DirRefused { path: link, problem: DirProblem::Symlink, uid: 1000 };
        assert!(e.to_string().contains("link is a symbolic link, not a directory owned by uid 1000"), "{e}");
    }

    #[test]
    fn a_record_is_appended_as_one_line_and_a_missing_journal_names_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.journal");
        let rec = Record {
            scenario: "s.scn".into(),
            line: 3,
            process: "A".into(),
            shmid: 7,
            cpid: 8,
            ctime: 9,
            key: 10,
            ns: (1, 2),
        };
        match append_to(&path, &rec) {
            Err(e @ JournalError::File { .. }) => assert!(e.to_string().contains("x.journal"), "{e}"),
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, "").unwrap();
        append_to(&path, &rec).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().map(|l| serde_json::from_str::<Record>(l).unwrap()).collect::<Vec<_>>(), vec![rec]);
    }
}
