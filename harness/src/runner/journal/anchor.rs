//! The anchor: a segment of the run's own (1 byte, mode 0600, a random
//! key) that proves, to a later sweep, that it runs in the run's IPC
//! namespace. A namespace's inode number proves nothing: the kernel reuses
//! it for a new, unrelated namespace moments after the old one is gone.
//! The anchor's identity (shmid, cpid, ctime, key) is the journal's first
//! record; a sweep acts on the records only where `IPC_STAT` shows exactly
//! that segment, and removes it last.

#![allow(unsafe_code)] // opts in: getrandom(2) into a local buffer

use serde::{Deserialize, Serialize};

use crate::runner::host::{self, IdentityUnknown};
use crate::sysv::{CreateOptions, Key, Mode, Shmid};

/// The anchor's size in bytes.
pub const ANCHOR_SIZE: usize = 1;

/// A run's anchor, as its journal's first line records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// `shmid`.
    pub shmid: i32,
    /// `shm_cpid` as the run saw it.
    pub cpid: i32,
    /// `shm_ctime`.
    pub ctime: i64,
    /// The random key.
    pub key: i32,
    /// The IPC namespace it anchors (`/proc/thread-self/ns/ipc`): device
    /// and inode. Says which records it vouches for, never where we are.
    pub ns: (u64, u64),
}

/// The journal's first line: `{"anchor": {...}}` (a [`super::Record`]
/// never parses as one, nor this as a record).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AnchorLine {
    pub(super) anchor: Anchor,
}

/// Whether a journal's anchor is here.
#[derive(Debug)]
pub(super) enum Found {
    /// `IPC_STAT` shows its exact identity: this is the run's namespace.
    Here,
    /// Not here (why): the namespace cannot be proven.
    Absent(String),
    /// Cannot tell (`IPC_STAT` refused and `/proc/sysvipc/shm` unreadable).
    Unknown(IdentityUnknown),
}

impl Anchor {
    /// Creates an anchor in the current IPC namespace at a random key.
    ///
    /// # Errors
    /// `shmget` failed (after 16 keys already taken, `EEXIST`), or the new
    /// segment cannot be seen: the message.
    pub(super) fn plant(ns: (u64, u64)) -> Result<Anchor, String> {
        let mut last = None;
        for _ in 0..16 {
            let key = random_key();
            let seg = match CreateOptions::new(ANCHOR_SIZE).mode(Mode::OWNER_RW).create_exclusive(Key::from_raw(key)) {
                Ok(s) => s.release(),
                Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => {
                    last = Some(e.to_string());
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            let shmid = seg.id().raw();
            return match host::current_view(shmid) {
                Ok(Some(v)) => Ok(Anchor { shmid, cpid: v.identity.cpid, ctime: v.identity.ctime, key, ns }),
                other => {
                    let _ = seg.remove();
                    Err(match other {
                        Err(e) => e.to_string(),
                        _ => format!("the new anchor shmid {shmid} is not there"),
                    })
                }
            };
        }
        Err(last.expect("16 tries"))
    }

    /// Whether the current IPC namespace holds this exact anchor.
    pub(super) fn find(&self) -> Found {
        self.find_as(true)
    }

    /// [`Anchor::find`]; without `by_creator`, the creator's pid is not
    /// compared: for a process of the run itself, in a PID namespace of
    /// its own, where `IPC_STAT` shows the coordinator's pid as 0 (it
    /// knows it is in the run's IPC namespace: it never left it).
    fn find_as(&self, by_creator: bool) -> Found {
        match host::current_view(self.shmid) {
            Err(e) => Found::Unknown(e),
            Ok(None) => Found::Absent(format!("no shmid {} here", self.shmid)),
            Ok(Some(v))
                // An anchor always has a key (never IPC_PRIVATE).
                if self.key != 0
                    && (v.identity.cpid == self.cpid || !by_creator)
                    && v.identity.ctime == self.ctime
                    && v.key == self.key
                    && v.size == ANCHOR_SIZE as u64 =>
            {
                Found::Here
            }
            Ok(Some(v)) => Found::Absent(format!(
                "shmid {} here is another segment (key {}, cpid {}, ctime {})",
                self.shmid,
                Key::from_raw(v.key),
                v.identity.cpid,
                v.identity.ctime
            )),
        }
    }

    /// [`Anchor::find`] by a process of the run, which never left the run's
    /// IPC namespace (a supervisor): `ns` is this process's namespace, and
    /// a namespace that is alive (we are in it) has an inode number no
    /// other has; the creator's pid is not compared.
    pub(super) fn find_from_run(&self, ns: Option<(u64, u64)>) -> Found {
        if ns != Some(self.ns) {
            return Found::Absent("this process is not in the run's IPC namespace".into());
        }
        self.find_as(false)
    }

    /// Removes the anchor if it is still here with its identity.
    ///
    /// # Errors
    /// The message: it could not be checked or removed.
    pub(super) fn remove(&self) -> Result<(), String> {
        self.remove_if(self.find())
    }

    /// Removes the anchor if `found` says it is here.
    ///
    /// # Errors
    /// The message: it could not be checked or removed.
    pub(super) fn remove_if(&self, found: Found) -> Result<(), String> {
        match found {
            Found::Here => match Shmid::from_raw(self.shmid).remove() {
                // Removed meanwhile (by another process of the run).
                Err(e) if matches!(e.errno(), Some(nix::errno::Errno::EINVAL | nix::errno::Errno::EIDRM)) => Ok(()),
                r => r.map_err(|e| e.to_string()),
            },
            Found::Absent(_) => Ok(()),
            Found::Unknown(e) => Err(e.to_string()),
        }
    }

    /// "anchor shmid N (key K)".
    pub(super) fn describe(&self) -> String {
        format!("anchor shmid {} (key {})", self.shmid, Key::from_raw(self.key))
    }
}

/// A random positive key, never `IPC_PRIVATE` nor in host mode's range of
/// scenario keys (`0x5348_xxxx`).
fn random_key() -> i32 {
    let mut buf = [0u8; 4];
    // SAFETY: getrandom writes at most `buf.len()` bytes into the live buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    let mut r = u32::from_ne_bytes(buf);
    if n != 4 {
        // No getrandom (pre-3.17 kernel): the clock's nanoseconds and the pid.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        r = nanos ^ std::process::id().rotate_left(16);
    }
    let key = (r & 0x7fff_ffff) as i32;
    if key == 0 || key >> 16 == 0x5348 {
        key ^ 0x2000_0001
    } else {
        key
    }
}
