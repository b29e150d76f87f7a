//! The words of a scenario's transcript: what a step's process answered, as
//! people read them (processes named as the supervisor knows them). What a
//! step expected is worded by the judge (`interp::mismatch`).

use crate::scenario::signal_name;
use crate::sysv::{errno_name, CtlAnswer, Errno as SysErrno, Key};

use crate::interp::judge::StepResult;
use crate::interp::mismatch::{show_bytes, yes};
use crate::interp::{Ending, Failure, Value};
use crate::runner::supervisor::Supervisor;

impl Supervisor<'_> {
    /// The call and the answer, for the transcript.
    pub(crate) fn describe(&self, r: &StepResult) -> (String, String) {
        match r {
            StepResult::Answered(o) => {
                let mut answer = self.describe_result(&o.result);
                // `stat S` answers the status alone; the id it asked about is
                // in the call: show the id's `index` and `seq` too, which a
                // stat expectation may compare.
                if let (Ok(Value::Stat(st)), Some(id)) = (&o.result, ipc_stat_id(&o.call)) {
                    answer.push_str(&format!(", {}", index_seq(id, st.seq)));
                }
                (o.call.clone(), answer)
            }
            StepResult::Ended(Ending::Exited(c)) => ("(process ended)".into(), format!("exited with status {c}")),
            StepResult::Ended(Ending::Signaled(s)) => {
                ("(process ended)".into(), format!("died of {}", signal_name(*s)))
            }
            StepResult::Ended(Ending::Unknown) => ("(process ended)".into(), "ended, status unknown".into()),
            StepResult::TimedOut(state) => ("(waiting)".into(), state.clone()),
        }
    }

    pub(crate) fn describe_result(&self, r: &Result<Value, Failure>) -> String {
        match r {
            Err(Failure::Errno { errno, message }) => {
                let e = SysErrno::from_raw(*errno);
                // A program that did not start says where it was looked for.
                let why = if message.starts_with(crate::runner::actor::program::NOT_STARTED) {
                    format!(": {message}")
                } else {
                    String::new()
                };
                format!("-1 {} ({}){why}", errno_name(e), e.desc())
            }
            Err(Failure::Refused { message }) => format!("refused: {message}"),
            Ok(v) => match v {
                Value::Unit => "ok".into(),
                Value::Key(k) => Key::from_raw(*k).to_string(),
                Value::Shmid(id) => format!("shmid {id}"),
                Value::Created(id) => format!("shmid {}", id.shmid),
                Value::Reset(_) => "ok".into(),
                Value::Attached { addr, size, mapping_len } => format!("{addr:#x} (size {size}, mapped {mapping_len})"),
                Value::Read { len, mismatch, window_at, window } => match mismatch {
                    None => format!("{} ({len} bytes)", show_bytes(window, *len > window.len())),
                    Some(at) => format!(
                        "{len} bytes, first difference at byte {at}; bytes {window_at}..: {}",
                        show_bytes(window, *len > window_at + window.len())
                    ),
                },
                Value::Remapped { addr, mapping_len, moved } => {
                    format!("{addr:#x} (mapped {mapping_len}, {})", if *moved { "moved" } else { "in place" })
                }
                Value::Byte(b) => format!("{b:#04x}"),
                Value::Stat(st) => self.describe_stat(st),
                Value::Ctl(CtlAnswer::Stat(ret, st)) if *ret > 0 => {
                    format!("returned {ret}; {}, {}", self.describe_stat(st), index_seq(*ret, st.seq))
                }
                Value::Ctl(CtlAnswer::Stat(ret, st)) => format!("returned {ret}; {}", self.describe_stat(st)),
                Value::Ctl(CtlAnswer::Returned(ret)) => format!("returned {ret}"),
                Value::Ctl(CtlAnswer::Limits(l)) => format!(
                    "max_index {}, shmmax {}, shmmin {}, shmmni {}, shmseg {}, shmall {}",
                    l.max_index, l.shmmax, l.shmmin, l.shmmni, l.shmseg, l.shmall
                ),
                Value::Ctl(CtlAnswer::Usage(u)) => format!(
                    "max_index {}, used_ids {}, shm_tot {}, shm_rss {}, shm_swp {}",
                    u.max_index, u.used_ids, u.shm_tot, u.shm_rss, u.shm_swp
                ),
                Value::Number(n) => n.to_string(),
                Value::Present(p) => if *p { "present" } else { "absent" }.into(),
                Value::Forked(pid) | Value::Started(pid) => format!("pid {pid}"),
                Value::Repeated { count, stopped: Some(errno), .. } => {
                    let e = SysErrno::from_raw(*errno);
                    format!("count {count}, then -1 {} ({})", errno_name(e), e.desc())
                }
                Value::Repeated { count, stopped: None, .. } => {
                    format!("count {count}: every try succeeded, the most tries reached without an error")
                }
                Value::Output { status, signal, stdout, stderr, truncated, .. } => {
                    let how = match (status, signal) {
                        (Some(s), _) => format!("status {s}"),
                        (None, Some(sig)) => format!("killed by {}", signal_name(*sig)),
                        _ => "unknown status".into(),
                    };
                    let cut = |what: &str, n: u64| {
                        if n > 0 {
                            format!(" ({what} capped at {} bytes; {n} more bytes dropped)", crate::interp::OUTPUT_CAP)
                        } else {
                            String::new()
                        }
                    };
                    format!(
                        "{how}, stdout {}{}, stderr {}{}",
                        show_text(stdout),
                        cut("stdout", truncated.0),
                        show_text(stderr),
                        cut("stderr", truncated.1)
                    )
                }
            },
        }
    }

    /// A segment's status, as the transcript shows it.
    fn describe_stat(&self, st: &crate::sysv::SegmentStat) -> String {
        format!(
                    "size {}, nattch {}, mode {:04o}, key {}, dest {}, locked {}, cpid {}, lpid {}, uid {}, gid {}, cuid {}, cgid {}, atime {}, dtime {}, ctime {}",
                    st.size,
                    st.nattch,
                    st.mode.bits(),
                    st.key,
                    yes(st.dest),
                    yes(st.locked),
                    self.pid_name(st.cpid),
                    self.pid_name(st.lpid),
                    st.uid,
                    st.gid,
                    st.cuid,
                    st.cgid,
                    st.atime,
                    st.dtime,
                    st.ctime
                )
    }
}

/// The shmid of an `IPC_STAT` call as the actor writes it: `shmctl(ID, IPC_STAT)`.
fn ipc_stat_id(call: &str) -> Option<i32> {
    call.strip_prefix("shmctl(")?.strip_suffix(", IPC_STAT)")?.parse().ok()
}

/// `index I, seq Q`, as the stat fields `index` and `seq` read them: the
/// index of the shmid, the `seq` the kernel answered (`shm_perm.__seq`).
fn index_seq(id: i32, seq: u16) -> String {
    let m = crate::interp::judge::SEQ_MULTIPLIER;
    format!("index {}, seq {seq}", id.rem_euclid(m))
}

/// A program's output for the transcript: quoted, at most 200 characters.
fn show_text(t: &str) -> String {
    if t.chars().count() <= 200 {
        format!("{t:?}")
    } else {
        let head: String = t.chars().take(200).collect();
        format!("{head:?}... ({} bytes)", t.len())
    }
}
