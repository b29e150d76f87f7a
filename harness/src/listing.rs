//! `shm-harness ls`: the segments of the current IPC namespace, laid out row
//! for row as `ipcs -m` prints them, plus the creating and last pids.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::sysv::{proc_segments, ProcSegment, Result};

/// One row of the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The key as `ipcs` prints it (`0x%08x`).
    pub key: String,
    /// The shmid.
    pub shmid: i32,
    /// The owner's user name, or the uid when it has none.
    pub owner: String,
    /// The permission bits in octal, as `ipcs` prints them (`600`).
    pub perms: String,
    /// `shm_segsz`.
    pub bytes: u64,
    /// Attachments.
    pub nattch: u64,
    /// `SHM_DEST` set.
    pub dest: bool,
    /// `SHM_LOCKED` set.
    pub locked: bool,
    /// Creating process.
    pub cpid: i32,
    /// Last process to attach or detach.
    pub lpid: i32,
    /// Everything the kernel reports.
    #[serde(skip)]
    pub raw: ProcSegment,
}

/// Reads the current namespace's segments (from `/proc/sysvipc/shm`, as
/// `ipcs` does, in the kernel's order).
///
/// # Errors
/// As [`proc_segments`].
pub fn rows() -> Result<Vec<Row>> {
    let mut names: HashMap<u32, String> = HashMap::new();
    Ok(proc_segments()?
        .into_iter()
        .map(|seg| {
            let owner = names
                .entry(seg.uid)
                .or_insert_with(|| user_name(seg.uid).unwrap_or_else(|| seg.uid.to_string()))
                .clone();
            Row {
                key: format!("{:#010x}", seg.key.raw() as u32),
                shmid: seg.shmid.raw(),
                owner,
                perms: format!("{:o}", seg.mode.bits()),
                bytes: seg.size,
                nattch: seg.nattch,
                dest: seg.dest,
                locked: seg.locked,
                cpid: seg.cpid,
                lpid: seg.lpid,
                raw: seg,
            }
        })
        .collect())
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
}

/// The text table: `ipcs -m`'s header and columns, then `cpid` and `lpid`.
pub fn render_text(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("------ Shared Memory Segments --------\n");
    let _ = writeln!(
        out,
        "{:<10} {:<10} {:<10} {:<10} {:<10} {:<10} {:<13} {:<10} {:<10}",
        "key", "shmid", "owner", "perms", "bytes", "nattch", "status", "cpid", "lpid"
    );
    for r in rows {
        let owner: String = r.owner.chars().take(10).collect();
        let _ = writeln!(
            out,
            "{} {:<10} {:<10} {:<10} {:<10} {:<10} {:<6} {:<6} {:<10} {:<10}",
            r.key,
            r.shmid,
            owner,
            r.perms,
            r.bytes,
            r.nattch,
            if r.dest { "dest" } else { " " },
            if r.locked { "locked" } else { " " },
            r.cpid,
            r.lpid
        );
    }
    out
}

/// The rows as a JSON array.
pub fn render_json(rows: &[Row]) -> String {
    serde_json::to_string_pretty(rows).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
