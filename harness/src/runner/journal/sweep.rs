//! The sweep: what dead host-mode runs left, removed where their journal's
//! anchor proves the namespace; journals that cannot be proven anywhere
//! any more are deleted past [`MAX_AGE`].

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::anchor::{Anchor, AnchorLine, Found};
use super::intent::{self, IntentLine};
use super::{flock_exclusive, ipc_namespace, JournalError, Record};
use crate::sysv::Shmid;

/// A journal whose run's IPC namespace cannot be proven (its anchor is not
/// found) is deleted once its file is this old (by its mtime, the time of
/// its last record) and no process the sweep can see is in an IPC
/// namespace of the recorded number: 7 days.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a sweep found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Segments removed (or, dry run, that would be).
    pub removed: usize,
    /// Recorded shmids that now show another identity (left alone).
    pub not_ours: usize,
    /// Segments an unfinished creation (an intent with no record: its
    /// process killed between `shmget` and the journal write) may have
    /// made: reported, never removed.
    pub unrecorded: usize,
    /// Segments (or journals) that could not be removed, checked or read.
    pub failed: usize,
    /// Journals of dead runs settled here (their anchor found).
    pub journals: usize,
    /// Journals of dead runs whose namespace cannot be proven here: left.
    pub unproven: usize,
    /// Of those, deleted (or, dry run, that would be) past [`MAX_AGE`].
    pub expired: usize,
}

/// How to sweep.
#[derive(Debug, Default, Clone, Copy)]
pub struct SweepOptions {
    /// Report only; remove and delete nothing.
    pub dry_run: bool,
    /// Say a line for each journal whose namespace cannot be proven (else
    /// only those deleted are said: a run's start stays quiet about them).
    pub each_unproven: bool,
}

/// [`sweep_with`] as a run does it before it starts: of the journals whose
/// namespace cannot be proven here, only those deleted are said.
///
/// # Errors
/// As [`sweep_with`].
pub fn sweep(dir: &Path, dry_run: bool, say: impl FnMut(String)) -> Result<Swept, JournalError> {
    sweep_with(dir, SweepOptions { dry_run, each_unproven: false }, say)
}

/// Scans the state directory: for each journal whose run is provably dead
/// (its lock can be taken) and whose anchor `IPC_STAT` shows here with its
/// recorded identity, removes every recorded segment of that namespace
/// that still shows the recorded identity, reporting each through `say`,
/// then the anchor, then the journal. A journal without its anchor here is
/// left alone (reported), and deleted past [`MAX_AGE`]; one that cannot be
/// read, or whose anchor cannot be checked, is an error and kept.
///
/// # Errors
/// [`JournalError::DirRead`]: the state directory cannot be read.
pub fn sweep_with(dir: &Path, opts: SweepOptions, mut say: impl FnMut(String)) -> Result<Swept, JournalError> {
    let mut out = Swept::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(JournalError::DirRead { path: dir.to_path_buf(), source }),
    };
    let mut namespaces = None;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let age = entry.metadata().ok().and_then(|m| m.modified().ok()).map(age_of);
        let old = age.is_some_and(|a| a > MAX_AGE);
        // A `.new` file is a journal being made (locked right after it is
        // opened, renamed once anchored) or one whose run died making it.
        let made = match path.extension().and_then(|x| x.to_str()) {
            Some("journal") => true,
            Some("new") => false,
            _ => continue,
        };
        let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(&path) else { continue };
        // Alive: its lock is held by a process of the run.
        if flock_exclusive(&file).is_err() {
            continue;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                out.failed += 1;
                say(format!("shm-harness: cannot read journal {}: {e}; kept", path.display()));
                continue;
            }
        };
        let j = Dead { path: &path, text: &text, old };
        // Its maker takes the lock before it plants the anchor and writes
        // the anchor line: a `.new` file with that line and a free lock was
        // made by a run now dead (killed between the anchor and the
        // rename), and its anchor segment is settled now like any dead
        // run's. Without the line it may be a file opened a moment ago and
        // not locked yet: left until it is old.
        if !made && !old && j.anchor().is_none() {
            continue;
        }
        j.settle(opts, &mut namespaces, &mut say, &mut out);
        // Closing `file` releases the lock.
        drop(file);
    }
    Ok(out)
}

fn age_of(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or(Duration::ZERO)
}

/// A dead run's journal, read.
struct Dead<'a> {
    path: &'a Path,
    text: &'a str,
    /// Past [`MAX_AGE`].
    old: bool,
}

impl Dead<'_> {
    fn name(&self) -> String {
        self.path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned())
    }

    fn anchor(&self) -> Option<Anchor> {
        serde_json::from_str::<AnchorLine>(self.text.lines().next()?).ok().map(|l| l.anchor)
    }

    /// Acts on this journal as its anchor allows.
    fn settle(
        &self,
        opts: SweepOptions,
        namespaces: &mut Option<Vec<(u64, u64)>>,
        say: &mut impl FnMut(String),
        out: &mut Swept,
    ) {
        let Some(anchor) = self.anchor() else {
            return self.unproven(
                "it has no anchor (made before anchors, or by a run killed making it)",
                None,
                opts,
                namespaces,
                say,
                out,
            );
        };
        match anchor.find() {
            Found::Here => self.proven(&anchor, opts, say, out),
            Found::Absent(why) => self.unproven(
                &format!("its {} is not here: {why}", anchor.describe()),
                Some(anchor.ns),
                opts,
                namespaces,
                say,
                out,
            ),
            Found::Unknown(e) => {
                // Cannot tell: keep the journal for a sweep that can see.
                out.failed += 1;
                for rec in records(self.text) {
                    say(format!(
                        "shm-harness: cannot check shmid {} (key {}), made by {}, {}:{} ({}): the run's IPC namespace cannot be proven: its {}: {e}; journal kept",
                        rec.shmid, crate::sysv::Key::from_raw(rec.key), self.name(), rec.scenario, rec.line, rec.process, anchor.describe()
                    ));
                }
            }
        }
    }

    /// The anchor is here: remove what the run left, then the anchor, then
    /// the journal (nothing of it when something could not be removed).
    fn proven(&self, anchor: &Anchor, opts: SweepOptions, say: &mut impl FnMut(String), out: &mut Swept) {
        let run = self.name();
        let failed_before = out.failed;
        for (n, line) in self.text.lines().enumerate().skip(1) {
            if serde_json::from_str::<Record>(line).is_err() && serde_json::from_str::<IntentLine>(line).is_err() {
                out.failed += 1;
                say(format!("shm-harness: journal {} line {}: not a record; kept", self.path.display(), n + 1));
            }
        }
        settle(self.text, &run, |_| true, Some(anchor.ns), opts.dry_run, say, out);
        self.unfinished(&run, anchor.ns, say, out);
        out.journals += 1;
        if out.failed != failed_before {
            return;
        }
        if opts.dry_run {
            say(format!("shm-harness: would remove the run's {}, {run}", anchor.describe()));
            return;
        }
        match anchor.remove() {
            Ok(()) => {
                // Removed like the run's other segments, so reported like them.
                say(format!("shm-harness: removed the run's {}, {run}", anchor.describe()));
                let _ = std::fs::remove_file(self.path);
            }
            Err(e) => {
                out.failed += 1;
                say(format!("shm-harness: cannot remove the run's {}, {run}: {e}; journal kept", anchor.describe()));
            }
        }
    }

    /// The creations the run began and never recorded (its processes
    /// killed between `shmget` and the journal write): what they may have
    /// left here is reported, never removed. The journal is then settled
    /// as if they were not there: the report is made once, and the
    /// journal and the anchor go, rather than kept (until [`MAX_AGE`]) to
    /// repeat it at every run's start: keeping the journal would keep the
    /// anchor, a segment of ours, for as long as a segment that may not be
    /// ours stays, which may be for ever (after pid reuse, someone else's).
    fn unfinished(&self, run: &str, home: (u64, u64), say: &mut impl FnMut(String), out: &mut Swept) {
        if intent::unfinished(self.text).is_empty() {
            return;
        }
        match crate::sysv::proc_segments() {
            Ok(rows) => out.unrecorded += intent::report_unfinished(self.text, run, home, &rows, say),
            Err(e) => {
                // Cannot look: keep the journal for a sweep that can.
                out.failed += 1;
                say(format!(
                    "shm-harness: journal {}: a process of {run} was killed in a shmget before recording it, and what it may have made cannot be looked for: {e}; journal kept",
                    self.path.display()
                ));
            }
        }
    }

    /// The run's namespace cannot be proven here: reported, and deleted
    /// past [`MAX_AGE`] if no visible process is in a namespace of its number.
    #[allow(clippy::too_many_arguments)]
    fn unproven(
        &self,
        why: &str,
        ns: Option<(u64, u64)>,
        opts: SweepOptions,
        namespaces: &mut Option<Vec<(u64, u64)>>,
        say: &mut impl FnMut(String),
        out: &mut Swept,
    ) {
        out.unproven += 1;
        let recs = records(self.text);
        let mut all_ns: Vec<(u64, u64)> = recs.iter().map(|r| r.ns).chain(ns).collect();
        all_ns.dedup();
        // Looked at only for an old journal (a scan of /proc).
        let in_use = self.old && {
            let visible = namespaces.get_or_insert_with(visible_namespaces);
            all_ns.iter().any(|n| visible.contains(n))
        };
        let expire = self.old && !in_use;
        let what = format!("journal {} ({} record(s))", self.path.display(), recs.len());
        let fate = match (expire, opts.dry_run) {
            (false, _) if in_use => {
                "left alone (a process is in an IPC namespace of its number: a sweep there may prove it)".to_string()
            }
            (false, _) => format!("left alone (deleted once {} days old)", MAX_AGE.as_secs() / 86400),
            (true, true) => "would be deleted (older than the limit)".to_string(),
            (true, false) => match std::fs::remove_file(self.path) {
                Ok(()) => format!("deleted (older than {} days)", MAX_AGE.as_secs() / 86400),
                Err(e) => format!("cannot be deleted: {e}"),
            },
        };
        if expire {
            out.expired += 1;
        }
        if opts.each_unproven || expire {
            say(format!("shm-harness: {what}: its run's IPC namespace cannot be proven here: {why}; {fate}"));
        }
    }
}

/// The records of a journal's text (the anchor line and anything else left out).
fn records(text: &str) -> Vec<Record> {
    text.lines().filter_map(|l| serde_json::from_str::<Record>(l).ok()).collect()
}

/// The IPC namespaces of the processes this sweep may look at
/// (`/proc/PID/ns/ipc`; other users' are hidden to a user without
/// privilege).
fn visible_namespaces() -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.filter_map(Result::ok) {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(m) = std::fs::metadata(e.path().join("ns/ipc")) {
            if !out.contains(&(m.dev(), m.ino())) {
                out.push((m.dev(), m.ino()));
            }
        }
    }
    out
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
    settle(&text, "this run", |r| r.scenario == scenario, ipc_namespace(), false, &mut say, &mut out);
    Ok(out)
}

/// Acts on the records of a journal's `text` that `pick` selects, of the
/// IPC namespace `home` (the current one, proven by the caller): removes
/// (or, dry run, reports) each segment the kernel still shows with a
/// recorded identity; counts into `out`. Records of other namespaces (a
/// scenario's process moved) cannot be proven: reported, left.
fn settle(
    text: &str,
    run: &str,
    pick: impl Fn(&Record) -> bool,
    home: Option<(u64, u64)>,
    dry_run: bool,
    say: &mut impl FnMut(String),
    out: &mut Swept,
) {
    let records = records(text);
    let mut done: Vec<i32> = Vec::new();
    for rec in records.iter().filter(|r| pick(r)) {
        let made = format!("made by {run}, {}:{} ({})", rec.scenario, rec.line, rec.process);
        let key = crate::sysv::Key::from_raw(rec.key);
        if Some(rec.ns) != home {
            say(format!(
                "shm-harness: shmid {} (key {key}) {made}: in another IPC namespace (the process had moved), which cannot be proven; left alone",
                rec.shmid
            ));
            continue;
        }
        if done.contains(&rec.shmid) {
            continue;
        }
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
                done.push(rec.shmid);
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
        if !done.contains(&rec.shmid) {
            done.push(rec.shmid);
        }
    }
}

/// The coordinator died (interrupted, killed) and a supervisor has torn its
/// scenario down: if no record of the run's journal (open at `fd`) names a
/// segment still here with a recorded identity, the run is settled, and its
/// anchor is removed and its journal deleted, as at a normal end. Otherwise
/// (another scenario of the run still tearing down, something left) both
/// stay, for the run's last supervisor or a sweep.
///
/// # Errors
/// The journal cannot be read, or a segment or the anchor cannot be
/// checked or removed (both then stay).
pub fn finish_orphaned(fd: std::os::fd::RawFd) -> Result<(), String> {
    let proc_path = format!("/proc/self/fd/{fd}");
    let link = std::fs::read_link(&proc_path).map_err(|e| format!("the run's journal ({proc_path}): {e}"))?;
    let text = std::fs::read_to_string(&proc_path).map_err(|e| format!("the run's journal ({proc_path}): {e}"))?;
    let Some(anchor) = text.lines().next().and_then(|l| serde_json::from_str::<AnchorLine>(l).ok()).map(|l| l.anchor)
    else {
        return Ok(());
    };
    match anchor.find_from_run(ipc_namespace()) {
        Found::Here => {}
        Found::Absent(_) => return Ok(()),
        Found::Unknown(e) => return Err(format!("the run's {}: {e}", anchor.describe())),
    }
    let recs = records(&text);
    for rec in recs.iter().filter(|r| r.ns == anchor.ns) {
        let now = crate::runner::host::current_identity(rec.shmid).map_err(|e| e.to_string())?;
        if now.is_some_and(|st| recs.iter().any(|r| r.shmid == st.shmid && r.cpid == st.cpid && r.ctime == st.ctime)) {
            return Ok(());
        }
    }
    anchor.remove_if(anchor.find_from_run(ipc_namespace()))?;
    if !link.to_string_lossy().ends_with(" (deleted)") {
        let _ = std::fs::remove_file(&link);
        if let Some(dir) = link.parent() {
            super::release_state_dir(dir);
        }
    }
    Ok(())
}
