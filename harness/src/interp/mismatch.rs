//! What a step expected, in the words of its transcript, and why a result
//! is not it: the [`Mismatch`] a failed [`Judge::judge_step`] returns. Pure:
//! the words depend only on the step and the names bound so far.

use std::fmt;

use crate::scenario::{signal_name, CtlField, Expect, MapField, OutputCheck, StatField};
use crate::sysv::{errno_name, Key};

use crate::interp::judge::{Judge, StepResult};
use crate::interp::output::{first_failure, holding_alternative, Ended};
use crate::interp::Value;

/// A step's result is not what the step expected.
///
/// Shown (its [`fmt::Display`]) as the failure's `expected` text: the whole
/// expectation, then `; fails at: CHECK` when one check of a `run`'s output
/// is singled out, or, for alternatives (`status 0 | status 1`),
/// `; no alternative holds: 1. fails at: CHECK; 2. fails at: CHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// The whole expectation, as the transcript words it (number names and
    /// addresses shown with their values).
    pub expected: String,
    /// For a `run` whose program's output was judged: the first check that
    /// does not hold, one for each alternative. Other expectations are
    /// shown whole (their answer shows every field they compare).
    pub failed_checks: Vec<FailedCheck>,
}

/// The first output check of a `run` step that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedCheck {
    /// Its place among the step's checks (0-based).
    pub index: usize,
    /// The check as written (`stdout "${s}"`).
    pub written: String,
    /// The check as applied to what the program wrote: `${NAME}` substituted,
    /// with what was found where it looked (`stdout line 2 "7" (found "8")`).
    pub applied: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expected)?;
        let fails_at = |c: &FailedCheck| {
            if c.applied == c.written {
                format!("fails at: {}", c.written)
            } else {
                format!("fails at: {}, that is {}", c.written, c.applied)
            }
        };
        match self.failed_checks.as_slice() {
            [] => Ok(()),
            [c] => write!(f, "; {}", fails_at(c)),
            all => {
                let each: Vec<String> =
                    all.iter().enumerate().map(|(i, c)| format!("{}. {}", i + 1, fails_at(c))).collect();
                write!(f, "; no alternative holds: {}", each.join("; "))
            }
        }
    }
}

impl Judge<'_> {
    /// Why `result` is not what `step` expects (called once the judge found it is not).
    pub(crate) fn mismatch(&self, step: &crate::scenario::Step, result: &StepResult) -> Mismatch {
        if let crate::scenario::Op::Repeat { max, until, .. } = &step.op {
            // A repetition is judged by how it ended, then by its count.
            let mut expected = format!("-1 {} within {max} tries", errno_name(*until));
            if let Expect::Number(e) = &step.expect {
                expected.push_str(&format!(", count {}", e.describe(|n| self.number(n))));
            }
            return Mismatch { expected, failed_checks: Vec::new() };
        }
        Mismatch { expected: self.describe_expect(&step.expect), failed_checks: failed_checks(self, step, result) }
    }

    /// For a step whose output checks list alternatives, the one that holds
    /// for `result`, as the transcript words it: `alternative 2 of 2 holds:
    /// status 1, stderr contains "x"`.
    pub(crate) fn held_alternative(&self, step: &crate::scenario::Step, result: &StepResult) -> Option<String> {
        let (Expect::Outputs(alternatives), StepResult::Answered(o)) = (&step.expect, result) else {
            return None;
        };
        let Ok(Value::Output { status, signal, stdout, stderr, .. }) = &o.result else {
            return None;
        };
        let out = Ended { status: *status, signal: *signal, stdout, stderr };
        let (i, _) = holding_alternative(alternatives, out, self.globals)?;
        let checks = join(alternatives[i].iter().map(describe_check));
        Some(format!("alternative {} of {} holds: {checks}", i + 1, alternatives.len()))
    }

    /// An expectation, as the transcript words it.
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
            Expect::Mapped(fields) => join(fields.iter().map(|f| match f {
                MapField::At(a) => match self.resolve_addr(a) {
                    Some(v) => format!("at {a} ({v:#x})"),
                    None => format!("at {a}"),
                },
                other => other.to_string(),
            })),
            Expect::Stat(fields) => join(fields.iter().map(|f| self.describe_field(f))),
            Expect::Ctl(fields) => join(fields.iter().map(|f| match f {
                CtlField::Stat(s) => self.describe_field(s),
                CtlField::Id(s) => format!("id {s}"),
                CtlField::Info(i, e) => format!("{} {}", i.name(), e.describe(|n| self.number(n))),
            })),
            Expect::Output(checks) => join(checks.iter().map(describe_check)),
            Expect::Outputs(alternatives) => alternatives
                .iter()
                .map(|checks| join(checks.iter().map(describe_check)))
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }

    /// A stat field of an expectation, as the transcript words it.
    fn describe_field(&self, f: &StatField) -> String {
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
}

/// For a `run` whose output was judged: the first check that does not
/// hold, of each alternative.
fn failed_checks(judge: &Judge<'_>, step: &crate::scenario::Step, result: &StepResult) -> Vec<FailedCheck> {
    let alternatives = match &step.expect {
        Expect::Output(checks) => std::slice::from_ref(checks),
        Expect::Outputs(alternatives) => alternatives.as_slice(),
        _ => return Vec::new(),
    };
    let StepResult::Answered(o) = result else { return Vec::new() };
    let Ok(Value::Output { status, signal, stdout, stderr, .. }) = &o.result else {
        return Vec::new();
    };
    let out = Ended { status: *status, signal: *signal, stdout, stderr };
    let fails = |checks: &Vec<OutputCheck>| {
        let (index, applied) = first_failure(checks, out, judge.globals)?;
        Some(FailedCheck { index, written: describe_check(&checks[index]), applied })
    };
    alternatives.iter().filter_map(fails).collect()
}

/// One output check, as written.
fn describe_check(c: &OutputCheck) -> String {
    match c {
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
    }
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(", ")
}

/// `yes` or `no`.
pub(crate) fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Bytes as the transcript shows them: a quoted string when printable, else
/// `hex "..."`; `...` after them when `more` follow.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::keys::KeyMap;
    use crate::interp::{Failure, Global, Globals, Outcome};

    fn last_step(src: &str) -> crate::scenario::Step {
        let sc = crate::scenario::parse("t.scn", src).expect("parses");
        sc.steps.last().expect("a step").clone()
    }

    fn ran(stdout: &str) -> StepResult {
        let result = Ok(Value::Output {
            pid: 9,
            status: Some(0),
            signal: None,
            stdout: stdout.into(),
            stderr: String::new(),
            truncated: (0, 0),
        });
        StepResult::Answered(Outcome { call: "run".into(), result })
    }

    fn globals() -> Globals {
        let mut g = Globals::new();
        g.insert("s".into(), Global::Segment(7));
        g
    }

    const RUN: &str = "process A\nA: create s = private size 1\n";

    #[test]
    fn a_failed_output_check_is_named_as_written_and_as_applied() {
        let (g, keys) = (globals(), KeyMap::default());
        let judge = Judge { globals: &g, keys: &keys };
        let step = last_step(&format!(
            "{RUN}A: run \"ipcs\" => status 0, stdout line 1 \"id {{t}}\", stdout contains \"${{s}} ${{t}}\"\n"
        ));
        let m = judge.judge_step(&step, &ran("id 3\n7 4\n")).expect_err("`7 3` is not there");
        let expected = r#"status 0, stdout line 1 "id {t}", stdout contains "${s} ${t}""#;
        assert_eq!(m.expected, expected);
        assert_eq!(
            m.failed_checks,
            vec![FailedCheck {
                index: 2,
                written: r#"stdout contains "${s} ${t}""#.into(),
                applied: r#"stdout contains "7 3""#.into()
            }]
        );
        assert_eq!(
            m.to_string(),
            format!(r#"{expected}; fails at: stdout contains "${{s}} ${{t}}", that is stdout contains "7 3""#)
        );
        // The control: the same step passes on output that holds, and binds its capture.
        assert_eq!(judge.judge_step(&step, &ran("id 3\n7 3\n")), Ok(vec![("t".to_string(), Global::Segment(3))]));
    }

    /// Alternatives (`|`): the first that holds is the answer, and the
    /// transcript says which; when none holds, each says where it fails.
    #[test]
    fn output_alternatives_hold_one_or_say_why_none_does() {
        let (g, keys) = (globals(), KeyMap::default());
        let judge = Judge { globals: &g, keys: &keys };
        let step = last_step(&format!(
            "{RUN}A: run \"ipcs\" => status 1 | status 0, stdout contains \"${{s}}\", stdout \"7\\n\"\n"
        ));
        assert_eq!(judge.judge_step(&step, &ran("7\n")), Ok(vec![]));
        assert_eq!(
            judge.held_alternative(&step, &ran("7\n")).as_deref(),
            Some(r#"alternative 2 of 2 holds: status 0, stdout contains "${s}", stdout "7\n""#)
        );
        let m = judge.judge_step(&step, &ran("8\n")).expect_err("neither holds");
        assert_eq!(
            m.to_string(),
            r#"status 1 | status 0, stdout contains "${s}", stdout "7\n"; no alternative holds: 1. fails at: status 1; 2. fails at: stdout contains "${s}", that is stdout contains "7""#
        );
    }

    #[test]
    fn a_check_without_names_is_shown_once() {
        let (g, keys) = (globals(), KeyMap::default());
        let judge = Judge { globals: &g, keys: &keys };
        let step = last_step(&format!("{RUN}A: run \"ipcs\" => status 1\n"));
        let m = judge.judge_step(&step, &ran("")).expect_err("status 0 is not 1");
        assert_eq!(m.failed_checks.first().map(|c| c.index), Some(0));
        assert_eq!(m.to_string(), "status 1; fails at: status 1");
    }

    #[test]
    fn other_expectations_are_shown_whole() {
        let (g, keys) = (globals(), KeyMap::default());
        let judge = Judge { globals: &g, keys: &keys };
        let step = last_step(&format!("{RUN}A: stat s => size 4096, dest no\n"));
        // An answer of another kind than the expectation's is a mismatch too.
        let refused = StepResult::Answered(Outcome {
            call: "shmctl".into(),
            result: Err(Failure::Errno { errno: libc::EINVAL, message: String::new() }),
        });
        let m = judge.judge_step(&step, &refused).expect_err("an errno is no stat");
        assert_eq!(m, Mismatch { expected: "size 4096, dest no".into(), failed_checks: vec![] });
        let step = last_step(&format!("{RUN}A: rm s => ENOENT | ok\n"));
        assert_eq!(
            judge.judge_step(&step, &refused).unwrap_err().to_string(),
            "-1 ENOENT (No such file or directory) or ok"
        );
        let step = last_step(&format!("{RUN}A: rm s => EINVAL\n"));
        assert_eq!(judge.judge_step(&step, &refused), Ok(vec![]));
    }
}
