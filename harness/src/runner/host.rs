//! Host isolation's policy, in one place: which keys a scenario's literal
//! keys become, which scenarios host mode cannot judge, and how a segment
//! is proved to be the scenario's own before anything touches it.

use crate::scenario::{Op, Scenario};
use crate::sysv::{self, Shmid};

use crate::interp::Identity;

pub(crate) use crate::interp::keys::KeyMap;
pub use crate::interp::keys::HOST_KEY_BASE;

/// A slot for this run's host-mode keys (8 bits from the clock and the pid).
pub(crate) fn run_slot() -> u8 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mix = nanos ^ std::process::id().rotate_left(7) ^ (nanos >> 13);
    (mix ^ (mix >> 8) ^ (mix >> 16)) as u8
}

/// The environment variable that turns tracing off (any value but empty or
/// `0`): host mode then skips scenarios that run programs, as it must
/// without a tracer.
pub const NO_TRACE_ENV: &str = "SHM_HARNESS_NO_TRACE";

/// What host mode does with a scenario that runs external programs.
///
/// THE one decision point for host mode's blind spot: the harness sees what
/// a program (and its children: `sh -c ipcmk`) creates in the host
/// namespace only by tracing it ([`crate::trace`]). `None`: run it, its
/// `run` steps traced, every creation journaled and owned by the books.
/// Otherwise the scenario is skipped with the reason, which names why
/// tracing is unavailable (from [`crate::trace::available`]) or that
/// [`NO_TRACE_ENV`] turned it off.
pub(crate) fn programs_in_host_mode(sc: &Scenario) -> Option<String> {
    let line = sc.steps.iter().find(|s| matches!(s.op, Op::Run { .. } | Op::Spawn { .. }))?.line;
    let blind = "host isolation sees the segments a program's processes create only by tracing them";
    if tracing_disabled() {
        return Some(format!(
            "line {line} runs a program: {blind}, and {NO_TRACE_ENV} turns tracing off; unset it, or run in namespace mode"
        ));
    }
    match crate::trace::available() {
        Ok(()) => None,
        Err(why) => Some(format!(
            "line {line} runs a program: {blind}, and tracing is unavailable here: {why}; fix that, or run in namespace mode"
        )),
    }
}

/// Whether [`NO_TRACE_ENV`] turns tracing off.
pub(crate) fn tracing_disabled() -> bool {
    std::env::var_os(NO_TRACE_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether host mode will trace this scenario's programs (it has a `run`
/// step and tracing is not turned off). Such a scenario gets no PID
/// namespace: the tracer reads `/proc/<pid>` and `IPC_STAT`'s creator pids
/// as it sees them, and the journal needs the host's view. The tracer's
/// `EXITKILL`, the death signals and the supervisor's descendant-tree kill
/// own every process without one.
pub(crate) fn traces_programs(sc: &Scenario) -> bool {
    !tracing_disabled() && sc.steps.iter().any(|s| matches!(s.op, Op::Run { .. } | Op::Spawn { .. }))
}

/// Whether a segment is still there cannot be told: `IPC_STAT` was refused
/// and `/proc/sysvipc/shm` cannot be read either.
#[derive(Debug, thiserror::Error)]
#[error("shmid {shmid}: {stat}, and {proc_rows}: cannot tell whether it is still there")]
pub(crate) struct IdentityUnknown {
    /// The segment asked about.
    shmid: i32,
    /// Why `IPC_STAT` failed.
    stat: sysv::Error,
    /// Why `/proc/sysvipc/shm` could not be read.
    proc_rows: sysv::Error,
}

/// The message, for callers whose errors are still text (`?` in the
/// actor's and the supervisor's string-error functions, and in tests).
impl From<IdentityUnknown> for String {
    fn from(e: IdentityUnknown) -> String {
        e.to_string()
    }
}

/// The identity the kernel shows for `shmid` now: `IPC_STAT`, or, when
/// the segment's mode forbids reading it, its `/proc/sysvipc/shm` row (no
/// permission check there). `Ok(None)`: no such segment (`IPC_STAT` says
/// `EINVAL`/`EIDRM`, or the row is absent).
///
/// # Errors
/// Fail closed, [`IdentityUnknown`]: `IPC_STAT` refused and
/// `/proc/sysvipc/shm` cannot be read, so whether the segment is still
/// there is unknown (before, that read as "gone": a sweep then forgot the
/// segment and deleted its journal).
pub(crate) fn current_identity(shmid: i32) -> Result<Option<Identity>, IdentityUnknown> {
    Ok(current_view(shmid)?.map(|v| v.identity))
}

/// What the kernel shows of a segment: its identity, key and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    /// shmid, cpid, ctime.
    pub identity: Identity,
    /// The key.
    pub key: i32,
    /// The size in bytes.
    pub size: u64,
}

/// [`current_identity`], with the segment's key and size (the journal's
/// anchor is proved by all of them).
///
/// # Errors
/// As [`current_identity`].
pub(crate) fn current_view(shmid: i32) -> Result<Option<View>, IdentityUnknown> {
    let stat_err = match Shmid::from_raw(shmid).stat() {
        Ok(st) => {
            let identity = Identity { shmid, cpid: st.cpid, ctime: st.ctime };
            return Ok(Some(View { identity, key: st.key.raw(), size: st.size as u64 }));
        }
        Err(e) => e,
    };
    if matches!(stat_err.errno(), Some(nix::errno::Errno::EINVAL | nix::errno::Errno::EIDRM)) {
        return Ok(None);
    }
    let rows = sysv::proc_segments().map_err(|proc_rows| IdentityUnknown { shmid, stat: stat_err, proc_rows })?;
    Ok(rows.iter().find(|r| r.shmid.raw() == shmid).map(|r| View {
        identity: Identity { shmid, cpid: r.cpid, ctime: r.ctime },
        key: r.key.raw(),
        size: r.size,
    }))
}

/// What became of a recorded segment when asked to remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Removal {
    /// `IPC_STAT` showed the recorded identity; `IPC_RMID` succeeded.
    Removed,
    /// Gone already.
    Gone,
    /// The shmid now belongs to another segment: left alone.
    NotOurs(Identity),
    /// `IPC_RMID` failed.
    Failed(String),
}

/// Removes the segment `id` only if `IPC_STAT` still shows its identity,
/// checked right before `IPC_RMID`.
pub(crate) fn remove_if_ours(id: Identity) -> Removal {
    match current_identity(id.shmid) {
        Err(e) => Removal::Failed(e.to_string()),
        Ok(None) => Removal::Gone,
        Ok(Some(now)) if now != id => Removal::NotOurs(now),
        Ok(Some(_)) => match Shmid::from_raw(id.shmid).remove() {
            Ok(()) => Removal::Removed,
            Err(e) => Removal::Failed(e.to_string()),
        },
    }
}

/// Whether a `/proc/sysvipc/shm` row is one of `ours` (same shmid, cpid and ctime).
pub(crate) fn row_is_ours(row: &sysv::ProcSegment, ours: &[Identity]) -> bool {
    ours.iter().any(|i| i.shmid == row.shmid.raw() && i.cpid == row.cpid && i.ctime == row.ctime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_come_from_the_documented_range_one_per_literal() {
        let sc = crate::scenario::parse(
            "k.scn",
            "process A\nA: key k = 0x1234\nA: create 0x99 size 8 excl\nA: create private size 8\nA: key j = 0x1234\n",
        )
        .unwrap();
        let m = KeyMap::host(&sc, 0xab).unwrap();
        assert_eq!(m.translate(0x1234) as u32, 0x5348_ab00);
        assert_eq!(m.translate(0x99) as u32, 0x5348_ab01);
        assert_eq!(m.translate(0), 0);
        assert_eq!(KeyMap::identity().translate(0x1234), 0x1234);
    }

    #[test]
    fn a_scenario_with_a_program_runs_traced_in_host_mode_or_is_skipped_saying_why() {
        let sc = crate::scenario::parse("p.scn", "process A\nA: segments => 0\nA: run \"true\"\n").unwrap();
        match (tracing_disabled(), crate::trace::available()) {
            (false, Ok(())) => assert_eq!(programs_in_host_mode(&sc), None),
            (true, _) => {
                let why = programs_in_host_mode(&sc).unwrap();
                assert!(why.contains("line 3 runs a program") && why.contains(NO_TRACE_ENV), "{why}");
            }
            (false, Err(e)) => {
                let why = programs_in_host_mode(&sc).unwrap();
                assert!(why.contains("line 3 runs a program") && why.contains(&e.to_string()), "{why}");
            }
        }
        let sc = crate::scenario::parse("q.scn", "process A\nA: segments => 0\n").unwrap();
        assert_eq!(programs_in_host_mode(&sc), None);
    }
}
