//! The words of a scenario's transcript and failures: what a step expected
//! and what its process answered, as people read them.

use crate::scenario::{signal_name, Expect, OutputCheck, StatField};
use crate::sysv::{errno_name, Errno as SysErrno, Key};

use super::check::StepResult;
use super::supervisor::Supervisor;
use super::wire::{Ending, Failure, Value};

impl Supervisor<'_> {
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
            Expect::Number(n) => n.to_string(),
            Expect::Present(p) => if *p { "present" } else { "absent" }.into(),
            Expect::Stat(fields) => fields.iter().map(|f| self.describe_field(f)).collect::<Vec<_>>().join(", "),
            Expect::Output(checks) => checks
                .iter()
                .map(|c| match c {
                    OutputCheck::Status(s) => format!("status {s}"),
                    OutputCheck::Signal(s) => format!("killed by {}", signal_name(*s)),
                    OutputCheck::Stdout(t) => format!("stdout {t:?}"),
                    OutputCheck::StdoutContains(t) => format!("stdout contains {t:?}"),
                    OutputCheck::StderrContains(t) => format!("stderr contains {t:?}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    pub(crate) fn describe_field(&self, f: &StatField) -> String {
        match f {
            StatField::Size(n) => format!("size {n}"),
            StatField::Nattch(n) => format!("nattch {n}"),
            StatField::Mode(m) => format!("mode {m:04o}"),
            StatField::Key(k) => format!("key {}", Key::from_raw(self.resolve_key(k))),
            StatField::Dest(b) => format!("dest {}", yes(*b)),
            StatField::Locked(b) => format!("locked {}", yes(*b)),
            StatField::Cpid(p) => format!("cpid {p}"),
            StatField::Lpid(p) => format!("lpid {}", p.as_deref().unwrap_or("none")),
            StatField::Uid(u) => format!("uid {u}"),
            StatField::Gid(g) => format!("gid {g}"),
            StatField::Cuid(u) => format!("cuid {u}"),
            StatField::Cgid(g) => format!("cgid {g}"),
        }
    }

    /// The call and the answer, for the transcript.
    pub(crate) fn describe(&self, r: &StepResult) -> (String, String) {
        match r {
            StepResult::Answered(o) => (o.call.clone(), self.describe_result(&o.result)),
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
                Value::Byte(b) => format!("{b:#04x}"),
                Value::Stat(st) => format!(
                    "size {}, nattch {}, mode {:04o}, key {}, dest {}, locked {}, cpid {}, lpid {}, uid {}, gid {}, cuid {}, cgid {}",
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
                    st.cgid
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
                            format!(" ({what} capped at {} bytes; {n} more bytes dropped)", super::wire::OUTPUT_CAP)
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
