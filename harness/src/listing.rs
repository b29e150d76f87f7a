//! `shm-harness ls`: the segments of the current IPC namespace. The default
//! table is laid out row for row as `ipcs -m` prints it, plus the creating
//! and last pids; `-o COLUMNS` and `--json` speak `lsipc -m`'s language
//! (its column names, its `{"sharedmemory": [...]}` document, permissions as
//! `rw-r-----`, status as `dest,locked`), with sizes in bytes (as `lsipc -b`)
//! and times in ISO 8601 (as `lsipc --time-format=iso`).

#![allow(unsafe_code)] // opts in: raw file descriptors

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

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
    let mut names = Names::default();
    Ok(proc_segments()?
        .into_iter()
        .map(|seg| Row {
            key: format!("{:#010x}", seg.key.raw() as u32),
            shmid: seg.shmid.raw(),
            owner: names.owner(seg.uid),
            perms: format!("{:o}", seg.mode.bits()),
            bytes: seg.size,
            nattch: seg.nattch,
            dest: seg.dest,
            locked: seg.locked,
            cpid: seg.cpid,
            lpid: seg.lpid,
            raw: seg,
        })
        .collect())
}

/// User and group names, each looked up once.
#[derive(Default)]
struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    /// The user name of `uid`, or the uid when it has none (as `OWNER`).
    fn owner(&mut self, uid: u32) -> String {
        self.user(uid).unwrap_or_else(|| uid.to_string())
    }

    /// The user name of `uid`, `None` when it has none (as `USER`, `CUSER`:
    /// `lsipc` leaves them empty, `null` in JSON).
    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
            })
            .clone()
    }

    /// The group name of `gid`, `None` when it has none (as `GROUP`, `CGROUP`).
    fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)).ok().flatten().map(|g| g.name)
            })
            .clone()
    }
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

/// A column of `lsipc -m`, by its name there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// `KEY`: `0x%08x`.
    Key,
    /// `ID`: the shmid.
    Id,
    /// `PERMS`: `rw-r-----`.
    Perms,
    /// `OWNER`: the owner's name (else uid).
    Owner,
    /// `SIZE`: bytes.
    Size,
    /// `NATTCH`.
    Nattch,
    /// `STATUS`: `dest`, `locked`, `dest,locked`, or nothing.
    Status,
    /// `CTIME`: last change.
    Ctime,
    /// `ATTACH`: last attach, if any.
    Attach,
    /// `DETACH`: last detach, if any.
    Detach,
    /// `CPID`.
    Cpid,
    /// `LPID`.
    Lpid,
    /// `COMMAND`: the creator's command line, while it lives.
    Command,
    /// `UID`.
    Uid,
    /// `USER`: the owner's name (empty when the uid has none).
    User,
    /// `GID`.
    Gid,
    /// `GROUP`.
    Group,
    /// `CUID`.
    Cuid,
    /// `CUSER`.
    Cuser,
    /// `CGID`.
    Cgid,
    /// `CGROUP`.
    Cgroup,
}

impl Column {
    /// Every column, in `lsipc --help`'s order.
    pub const ALL: [Column; 21] = [
        Column::Key,
        Column::Id,
        Column::Owner,
        Column::Perms,
        Column::Cuid,
        Column::Cuser,
        Column::Cgid,
        Column::Cgroup,
        Column::Uid,
        Column::User,
        Column::Gid,
        Column::Group,
        Column::Ctime,
        Column::Size,
        Column::Nattch,
        Column::Status,
        Column::Attach,
        Column::Detach,
        Column::Command,
        Column::Cpid,
        Column::Lpid,
    ];

    /// `lsipc -m`'s default columns.
    pub const LSIPC_DEFAULT: [Column; 11] = [
        Column::Key,
        Column::Id,
        Column::Perms,
        Column::Owner,
        Column::Size,
        Column::Nattch,
        Column::Status,
        Column::Ctime,
        Column::Cpid,
        Column::Lpid,
        Column::Command,
    ];

    /// `ls --json`'s columns: `lsipc -m`'s default, then the owner's and creator's ids.
    pub const JSON_DEFAULT: [Column; 15] = [
        Column::Key,
        Column::Id,
        Column::Perms,
        Column::Owner,
        Column::Size,
        Column::Nattch,
        Column::Status,
        Column::Ctime,
        Column::Cpid,
        Column::Lpid,
        Column::Command,
        Column::Uid,
        Column::Gid,
        Column::Cuid,
        Column::Cgid,
    ];

    /// The name as `lsipc` spells it in JSON (lower case).
    pub fn name(self) -> &'static str {
        match self {
            Column::Key => "key",
            Column::Id => "id",
            Column::Perms => "perms",
            Column::Owner => "owner",
            Column::Size => "size",
            Column::Nattch => "nattch",
            Column::Status => "status",
            Column::Ctime => "ctime",
            Column::Attach => "attach",
            Column::Detach => "detach",
            Column::Cpid => "cpid",
            Column::Lpid => "lpid",
            Column::Command => "command",
            Column::Uid => "uid",
            Column::User => "user",
            Column::Gid => "gid",
            Column::Group => "group",
            Column::Cuid => "cuid",
            Column::Cuser => "cuser",
            Column::Cgid => "cgid",
            Column::Cgroup => "cgroup",
        }
    }

    /// Parses `lsipc -o`'s list: names separated by commas, any case; a
    /// list that starts with `+` extends `lsipc -m`'s default columns
    /// ([`Column::LSIPC_DEFAULT`]), as `lsipc -o +CUID` does.
    ///
    /// # Errors
    /// The first unknown name, with the list of known ones.
    pub fn parse_list(list: &str) -> std::result::Result<Vec<Column>, String> {
        let (mut columns, list) = match list.strip_prefix('+') {
            Some(rest) => (Column::LSIPC_DEFAULT.to_vec(), rest),
            None => (Vec::new(), list),
        };
        for name in list.split(',') {
            let name = name.trim();
            let column =
                Column::ALL.iter().copied().find(|c| c.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
                    let known: Vec<String> = Column::ALL.iter().map(|c| c.name().to_uppercase()).collect();
                    format!(
                        "unknown column `{name}` (known: {}; a leading + adds to the default ones)",
                        known.join(",")
                    )
                })?;
            columns.push(column);
        }
        Ok(columns)
    }

    fn value(self, r: &Row, names: &mut Names) -> Value {
        let s = &r.raw;
        match self {
            Column::Key => Value::from(r.key.clone()),
            Column::Id => Value::from(r.shmid),
            Column::Perms => Value::from(perms_text(u32::from(s.mode.bits()))),
            Column::Owner => Value::from(r.owner.clone()),
            Column::Size => Value::from(r.bytes),
            Column::Nattch => Value::from(r.nattch),
            Column::Status => {
                let flags: Vec<&str> = [(r.dest, "dest"), (r.locked, "locked")]
                    .into_iter()
                    .filter_map(|(set, name)| set.then_some(name))
                    .collect();
                if flags.is_empty() {
                    Value::Null
                } else {
                    Value::from(flags.join(","))
                }
            }
            Column::Ctime => iso_time(s.ctime),
            Column::Attach => iso_time(s.atime),
            Column::Detach => iso_time(s.dtime),
            Column::Cpid => Value::from(r.cpid),
            Column::Lpid => Value::from(r.lpid),
            Column::Command => command_line(r.cpid).map_or(Value::Null, Value::from),
            Column::Uid => Value::from(s.uid),
            Column::User => names.user(s.uid).map_or(Value::Null, Value::from),
            Column::Gid => Value::from(s.gid),
            Column::Group => names.group(s.gid).map_or(Value::Null, Value::from),
            Column::Cuid => Value::from(s.cuid),
            Column::Cuser => names.user(s.cuid).map_or(Value::Null, Value::from),
            Column::Cgid => Value::from(s.cgid),
            Column::Cgroup => names.group(s.cgid).map_or(Value::Null, Value::from),
        }
    }
}

/// Permission bits as `lsipc` prints them: `rw-r-----`.
pub fn perms_text(mode: u32) -> String {
    let mut out = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

/// A time as `lsipc --time-format=iso` prints it (local time, `+hh:mm`);
/// `null` for 0 (never).
fn iso_time(secs: i64) -> Value {
    if secs == 0 {
        return Value::Null;
    }
    // SAFETY: `tm` is plain old data that localtime_r fills; a zeroed one is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // `time_t` is 32 bits on i686: a time it cannot hold is shown as a number.
    let t = match libc::time_t::try_from(secs) {
        Ok(t) => t,
        #[allow(unreachable_patterns)] // reachable where `time_t` is 32 bits
        Err(_) => return Value::from(secs.to_string()),
    };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return Value::from(secs.to_string());
    }
    let off = tm.tm_gmtoff;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.abs();
    Value::from(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off / 3600,
        (off % 3600) / 60
    ))
}

/// `/proc/PID/cmdline` with its NULs as spaces, as `lsipc` shows it; `None`
/// once the process is gone (or for pid 0).
fn command_line(pid: i32) -> Option<String> {
    if pid <= 0 {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let text = text.trim_end_matches('\0').replace('\0', " ");
    (!text.is_empty()).then_some(text)
}

/// The rows as `lsipc -m -J`'s document: `{"sharedmemory": [{column: value}]}`
/// with the given columns (default [`Column::JSON_DEFAULT`]); numbers are
/// JSON numbers, an empty field is `null`.
pub fn render_json(rows: &[Row], columns: &[Column]) -> String {
    /// One segment, its fields in the order of the columns.
    struct Obj(Vec<(&'static str, Value)>);
    impl Serialize for Obj {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
    #[derive(Serialize)]
    struct Doc {
        sharedmemory: Vec<Obj>,
    }
    let mut names = Names::default();
    let doc = Doc {
        sharedmemory: rows
            .iter()
            .map(|r| Obj(columns.iter().map(|c| (c.name(), c.value(r, &mut names))).collect()))
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// The rows as `lsipc -m -b -o COLUMNS` lays them out: an upper-case header,
/// one row per segment, columns padded to their widest cell.
pub fn render_columns(rows: &[Row], columns: &[Column]) -> String {
    let mut names = Names::default();
    let mut table: Vec<Vec<String>> = vec![columns.iter().map(|c| c.name().to_uppercase()).collect()];
    for r in rows {
        table.push(
            columns
                .iter()
                .map(|c| match c.value(r, &mut names) {
                    Value::Null => String::new(),
                    Value::String(s) => s,
                    v => v.to_string(),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> =
        (0..columns.len()).map(|i| table.iter().map(|row| row[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &table {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<w$} ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_as_lsipc() {
        assert_eq!(perms_text(0o640), "rw-r-----");
        assert_eq!(perms_text(0o1777), "rwxrwxrwx");
        assert_eq!(perms_text(0), "---------");
    }

    #[test]
    fn column_lists_parse_like_lsipc_o() {
        assert_eq!(Column::parse_list("KEY,id,Perms").unwrap(), vec![Column::Key, Column::Id, Column::Perms]);
        let mut extended = Column::LSIPC_DEFAULT.to_vec();
        extended.extend([Column::Cuid, Column::Cuser]);
        assert_eq!(Column::parse_list("+CUID,cuser").unwrap(), extended);
        let err = Column::parse_list("KEY,SHMID").unwrap_err();
        assert!(err.starts_with("unknown column `SHMID` (known: KEY,ID,"), "{err}");
    }
}
