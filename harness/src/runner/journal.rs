//! The durable journal of host-mode runs: what each run created, written
//! before the step's answer is sent, so that a run killed by SIGKILL leaves
//! a record the next run (or `shm-harness sweep`) can act on.
//!
//! One file per run in the state directory ([`state_dir`]: a directory of
//! the real user's own, made 0700 and checked to be ours, never a
//! predictable name in a shared `/tmp`). Its first record is the run's
//! [`Anchor`], a segment of its own that proves its IPC namespace to a
//! later sweep. Each further record is one JSON line appended with a single
//! `write` (`O_APPEND`) by the actor that created the segment, after an
//! [`Intent`] line it appended before the `shmget` (so that a SIGKILL of
//! the whole run between the two still leaves a trace). The run
//! holds an `flock` on its file through one open file description that
//! every process of the run inherits (not exec'd programs: `O_CLOEXEC`), so
//! "the run is dead" is "the lock can be taken": no pid is trusted. A run
//! that ends normally removes its anchor and deletes its file.
//!
//! In namespace mode there is no journal: segments die with the namespace.

#![allow(unsafe_code)] // opts in: write(2) and flock(2) on raw file descriptors

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod anchor;
mod intent;
mod state;
mod sweep;

pub use anchor::{Anchor, ANCHOR_SIZE};
pub use intent::{wall_seconds, Intent};
pub use state::{release_state_dir, state_dir, DirProblem, RealUser};
pub use sweep::{finish_orphaned, settle_scenario, sweep, sweep_with, SweepOptions, Swept, MAX_AGE};

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
    #[error("state directory {} is {problem}, not a directory owned by {user} and writable only by it; remove it or set SHM_HARNESS_STATE_DIR", path.display())]
    DirRefused {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: DirProblem,
        /// Who we are ([`RealUser::describe`]).
        user: String,
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
    /// The run's anchor segment could not be made.
    #[error("cannot create the run's anchor segment ({ANCHOR_SIZE} byte, mode 0600, a random key) that proves its IPC namespace to a later sweep: {0}")]
    Anchor(String),
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

/// This run's journal: held (locked) until the run ends.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    anchor: Anchor,
}

impl Journal {
    /// Creates and locks a new journal in `dir`, anchored in the current
    /// IPC namespace: its first record is the [`Anchor`], planted before
    /// anything else. It is made under a temporary name and renamed once
    /// locked and anchored, so a sweep never sees it unlocked or without
    /// its anchor.
    ///
    /// # Errors
    /// [`JournalError::File`] (open, rename), [`JournalError::Lock`],
    /// naming the file, [`JournalError::Anchor`], or as [`append`].
    pub fn create(dir: &Path) -> Result<Journal, JournalError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("run-{}-{nanos}", std::process::id());
        let tmp = dir.join(format!("{name}.new"));
        let path = dir.join(format!("{name}.journal"));
        let file = create_in_state_dir(dir, &tmp)?;
        flock_exclusive(&file).map_err(|errno| JournalError::Lock { path: tmp.clone(), errno })?;
        let ns = ipc_namespace().ok_or_else(|| JournalError::Anchor("cannot read /proc/thread-self/ns/ipc".into()))?;
        let anchor = Anchor::plant(ns).map_err(JournalError::Anchor)?;
        let journal = Journal { file, path: tmp, anchor };
        let line = serde_json::to_vec(&anchor::AnchorLine { anchor }).map_err(|e| JournalError::Encode(e.to_string()));
        if let Err(e) = line.and_then(|mut l| {
            l.push(b'\n');
            write_all(journal.fd(), &l)
        }) {
            let _ = anchor.remove();
            let _ = std::fs::remove_file(&journal.path);
            return Err(e);
        }
        if let Err(source) = std::fs::rename(&journal.path, &path) {
            let _ = anchor.remove();
            let _ = std::fs::remove_file(&journal.path);
            return Err(JournalError::File { path, source });
        }
        Ok(Journal { path, ..journal })
    }

    /// The run's anchor.
    pub fn anchor(&self) -> &Anchor {
        &self.anchor
    }

    /// The fd every process of the run inherits (keep it open across forks).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run ended normally: its segments are accounted for. Removes the
    /// anchor, then the journal (kept, and said on stderr, if the anchor
    /// cannot be removed: a sweep will), then the state directory if that
    /// left it empty ([`release_state_dir`]).
    pub fn finish(self) {
        match self.anchor.remove() {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.path);
                if let Some(dir) = self.path.parent() {
                    release_state_dir(dir);
                }
            }
            Err(e) => eprintln!(
                "shm-harness: cannot remove the run's {}: {e}; its journal {} is kept for `shm-harness sweep`",
                self.anchor.describe(),
                self.path.display()
            ),
        }
    }
}

/// Creates the new journal file `tmp` in the state directory `dir` (0600,
/// close-on-exec), making `dir` again (0700, checked to be ours) when it is
/// gone: another run that ended may have just removed it, empty
/// ([`release_state_dir`]).
fn create_in_state_dir(dir: &Path, tmp: &Path) -> Result<File, JournalError> {
    let mut tries = 0;
    loop {
        let opened = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(tmp);
        match opened {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => {
                tries += 1;
                state::usable_dir(dir, &RealUser::current())?;
            }
            other => return other.map_err(|source| JournalError::File { path: tmp.to_path_buf(), source }),
        }
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
    write_all(fd, &record_line(rec)?)
}

/// Appends `intent` to the journal open at `fd` with one `write`, as
/// `{"intent": {...}}`.
///
/// # Errors
/// As [`append`].
pub fn append_intent(fd: RawFd, intent: &Intent) -> Result<(), JournalError> {
    write_all(fd, &json_line(&intent::IntentLine { intent: intent.clone() })?)
}

/// `line` with one `write` to `fd`.
fn write_all(fd: RawFd, line: &[u8]) -> Result<(), JournalError> {
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
    json_line(rec)
}

/// `value` as one JSON line.
fn json_line(value: &impl Serialize) -> Result<Vec<u8>, JournalError> {
    let mut line = serde_json::to_vec(value).map_err(|e| JournalError::Encode(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
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

/// Every record of the journal open at `fd` for `scenario` in the calling
/// thread's IPC namespace: the segments the ledger gives that scenario.
/// Read through `fd` itself (`pread` from the start), so a process that
/// changed its uid since can still read it; lines that are not records
/// (the anchor's) are skipped.
///
/// # Errors
/// [`JournalError::File`]: the journal cannot be read (or the namespace
/// cannot: `/proc/thread-self/ns/ipc`).
pub fn scenario_records(fd: RawFd, scenario: &str) -> Result<Vec<Record>, JournalError> {
    let path = PathBuf::from(format!("/proc/self/fd/{fd}"));
    let file_error = |source| JournalError::File { path: path.clone(), source };
    let here =
        ipc_namespace().ok_or_else(|| file_error(std::io::Error::other("cannot read /proc/thread-self/ns/ipc")))?;
    // SAFETY: the caller keeps `fd` open for the call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut text = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let offset = libc::off_t::try_from(text.len()).map_err(|_| file_error(std::io::Error::other("too long")))?;
        match nix::sys::uio::pread(borrowed, &mut buf, offset) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(file_error(e.into())),
        }
    }
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .filter(|r| r.scenario == scenario && r.ns == here)
        .collect())
}

/// The ledger a traced program's guard asks ([`crate::trace::Ledger`]):
/// a segment is the scenario's if the run's journal (open at `fd`)
/// records its identity for `scenario` in this IPC namespace
/// ([`scenario_records`], read afresh at each question: steps and other
/// programs journal as they go).
pub fn ledger(fd: RawFd, scenario: &str) -> crate::trace::Ledger {
    let scenario = scenario.to_string();
    crate::trace::Ledger::new(
        vec![fd],
        Box::new(move |id| {
            let records = scenario_records(fd, &scenario).map_err(|e| e.to_string())?;
            Ok(records.iter().any(|r| r.shmid == id.shmid && r.cpid == id.cpid && r.ctime == id.ctime))
        }),
    )
}

/// Appends an intent to a journal file by path (for tests and tools).
///
/// # Errors
/// [`JournalError::File`]: the file cannot be opened or written.
pub fn append_intent_to(path: &Path, intent: &Intent) -> Result<(), JournalError> {
    let file_error = |source| JournalError::File { path: path.to_path_buf(), source };
    let mut f = OpenOptions::new().append(true).open(path).map_err(file_error)?;
    f.write_all(&json_line(&intent::IntentLine { intent: intent.clone() })?).map_err(file_error)
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
