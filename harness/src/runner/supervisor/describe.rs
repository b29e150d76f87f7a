//! The words of a scenario's transcript and failures: what a step expected
//! and what its process answered, as people read them.

use crate::scenario::{signal_name, CtlField, Expect, OutputCheck, StatField};
use crate::sysv::{errno_name, CtlAnswer, Errno as SysErrno, Key};

use crate::interp::judge::StepResult;
use crate::interp::{Ending, Failure, Value};
use crate::runner::supervisor::Supervisor;

impl Supervisor<'_> {
    /// A number name's value, as bound so far.
    pub(crate) fn number(&self, name: &str) -> Option<crate::scenario::Number> {
        self.judge().number(name)
    }

    pub(crate) fn describe_expect(&self, e: &Expect) -> String {
        match e {
            Expect::Ok => "ok".into(),
            Expect::Errno { errnos, ok_too } if errnos.is_empty() && !ok_too => {
                "refused (out of bounds or read-only)".into()
            }
            Expect::Errno { errnos, ok_too } => {
                let mut alts: Vec<String> =
                    errnos.iter().map(|e| format!("-1 {} ({})", errno_name(*e), e.desc())).collect();
                if *ok_too {
                    alts.push("ok".into());
                }
                alts.join(" or ")
            }
            Expect::Signal(s) => format!("dies of {}", signal_name(*s)),
            Expect::Exited(c) => format!("exits with status {c}"),
            Expect::Data(d) => {
                let bytes = d.bytes();
                format!("{} ({} bytes)", show_bytes(&bytes[..bytes.len().min(32)], bytes.len() > 32), bytes.len())
            }
            Expect::Byte(b) => format!("{b:#04x}"),
            Expect::Number(e) => e.describe(|n| self.number(n)),
            Expect::Present(p) => if *p { "present" } else { "absent" }.into(),
            Expect::Mapped(fields) => fields
                .iter()
                .map(|f| match f {
                    crate::scenario::MapField::At(a) => match self.resolve_addr(a) {
                        Some(v) => format!("at {a} ({v:#x})"),
                        None => format!("at {a}"),
                    },
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Expect::Stat(fields) => fields.iter().map(|f| self.describe_field(f)).collect::<Vec<_>>().join(", "),
            Expect::Ctl(fields) => fields
                .iter()
                .map(|f| match f {
                    CtlField::Stat(s) => self.describe_field(s),
                    CtlField::Id(s) => format!("id {s}"),
                    CtlField::Info(i, e) => format!("{} {}", i.name(), e.describe(|n| self.number(n))),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Expect::Output(checks) => checks
                .iter()
                .map(|c| match c {
                    OutputCheck::Status(s) => format!("status {s}"),
                    OutputCheck::Signal(s) => format!("killed by {}", signal_name(*s)),
                    OutputCheck::Stdout(t) => format!("stdout {t:?}"),
                    OutputCheck::StdoutContains(t) => format!("stdout contains {t:?}"),
                    OutputCheck::StderrContains(t) => format!("stderr contains {t:?}"),
                    OutputCheck::Stderr(t) => format!("stderr {t:?}"),
                    OutputCheck::Matches(s, re) => format!("{} matches {re:?}", s.name()),
                    OutputCheck::Line { stream, line, column: None, template } => {
                        format!("{} line {line} {template:?}", stream.name())
                    }
                    OutputCheck::Line { stream, line, column: Some(c), template } => {
                        format!("{} line {line} column {c} {template:?}", stream.name())
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// For a `run` whose output checks failed: `; fails at: CHECK` naming
    /// the first check that does not hold (`${NAME}` substituted), else nothing.
    pub(crate) fn failing_output_check(
        &self,
        step: &crate::scenario::Step,
        result: &StepResult,
        globals: &crate::interp::Globals,
    ) -> String {
        let (Expect::Output(checks), StepResult::Answered(o)) = (&step.expect, result) else {
            return String::new();
        };
        let Ok(Value::Output { status, signal, stdout, stderr, .. }) = &o.result else {
            return String::new();
        };
        match crate::interp::output::first_failure(
            checks,
            crate::interp::output::Ended { status: *status, signal: *signal, stdout, stderr },
            globals,
        ) {
            Some((i, shown)) => {
                let one = self.describe_expect(&Expect::Output(vec![checks[i].clone()]));
                if shown == one {
                    format!("; fails at: {one}")
                } else {
                    format!("; fails at: {one}, that is {shown}")
                }
            }
            None => String::new(),
        }
    }

    pub(crate) fn describe_field(&self, f: &StatField) -> String {
        match f {
            StatField::Num(f, e) => format!("{} {}", f.name(), e.describe(|n| self.number(n))),
            StatField::Mode(m) => format!("mode {m:04o}"),
            StatField::Key(k) => format!("key {}", Key::from_raw(self.resolve_key(k))),
            StatField::Dest(b) => format!("dest {}", yes(*b)),
            StatField::Locked(b) => format!("locked {}", yes(*b)),
            StatField::Cpid(p) => format!("cpid {p}"),
            StatField::Lpid(p) => format!("lpid {}", p.as_deref().unwrap_or("none")),
        }
    }

    /// The call and the answer, for the transcript.
    pub(crate) fn describe(&self, r: &StepResult) -> (String, String) {
        match r {
            StepResult::Answered(o) => {
                let mut answer = self.describe_result(&o.result);
                // `stat S` answers the status alone; the id it asked about is
                // in the call: show the id's `index` and `seq` too, which a
                // stat expectation may compare.
                if let (Ok(Value::Stat(_)), Some(id)) = (&o.result, ipc_stat_id(&o.call)) {
                    answer.push_str(&format!(", {}", index_seq(id)));
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
            Err(Failure::Errno { errno, .. }) => {
                let e = SysErrno::from_raw(*errno);
                format!("-1 {} ({})", errno_name(e), e.desc())
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
                    format!("returned {ret}; {}, {}", self.describe_stat(st), index_seq(*ret))
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

/// `index I, seq Q` of a shmid, as the stat fields `index` and `seq` read it.
fn index_seq(id: i32) -> String {
    let m = crate::interp::judge::SEQ_MULTIPLIER;
    format!("index {}, seq {}", id.rem_euclid(m), id.div_euclid(m))
}

pub(crate) fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub(crate) fn show_bytes(bytes: &[u8], more: bool) -> String {
    let printable = bytes.iter().all(|b| (0x20..0x7f).contains(b) || matches!(b, b'\n' | b'\t'));
    let mut s = if printable {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        format!("hex \"{}\"", bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))
    };
    if more {
        s.push_str("...");
    }
    s
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
