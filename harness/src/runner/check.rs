//! Judging a step's result against its expectation: a pure function of the
//! step, the result and the names bound so far, shared by the supervisor
//! (which reports) and the actors (which stop a chain at the first
//! surprise).

use crate::scenario::{Expect, KeyRef, OutputCheck, StatField, Step};
use crate::sysv;

use super::wire::{Ending, Failure, Global, Globals, Outcome, Value};

/// What became of a step.
#[derive(Debug, Clone)]
pub(crate) enum StepResult {
    /// The actor (or the supervisor) answered.
    Answered(Outcome),
    /// The process ended instead.
    Ended(Ending),
    /// Nothing came in time; the process's state.
    TimedOut(String),
}

/// The context a verdict needs.
pub(crate) struct Judge<'a> {
    /// Names bound so far.
    pub globals: &'a Globals,
    /// Literal keys as this run uses them (host mode moves them).
    pub keys: &'a super::host::KeyMap,
}

impl Judge<'_> {
    /// The run-time value of a key reference.
    pub fn resolve_key(&self, k: &KeyRef) -> i32 {
        match k {
            KeyRef::Private => 0,
            KeyRef::Literal(v) => self.translate_key(*v),
            KeyRef::Name(n) => match self.globals.get(n) {
                Some(Global::Key(v)) => *v,
                _ => 0,
            },
        }
    }

    /// Host mode moves literal keys to the run's range (see
    /// [`super::host::KeyMap`]), so scenarios written with fixed keys do not
    /// collide with the machine's own.
    pub fn translate_key(&self, literal: i32) -> i32 {
        self.keys.translate(literal)
    }

    /// Whether a result is what the step expects. On success returns the
    /// names captured from a `run`'s output.
    pub fn verdict(&self, step: &Step, result: &StepResult) -> Result<Vec<(String, Global)>, ()> {
        let fail = || Err(());
        let StepResult::Answered(o) = result else {
            return match (&step.expect, result) {
                (Expect::Signal(s), StepResult::Ended(Ending::Signaled(got))) if s == got => Ok(vec![]),
                (Expect::Exited(c), StepResult::Ended(Ending::Exited(got))) if c == got => Ok(vec![]),
                _ => fail(),
            };
        };
        match (&step.expect, &o.result) {
            (Expect::Ok, Ok(_)) => Ok(vec![]),
            (Expect::Errno { errnos, .. }, Err(Failure::Refused { .. })) if errnos.is_empty() => Ok(vec![]),
            (Expect::Errno { ok_too: true, .. }, Ok(_)) => Ok(vec![]),
            (Expect::Errno { errnos, .. }, Err(Failure::Errno { errno, .. }))
                if errnos.iter().any(|e| *e as i32 == *errno) =>
            {
                Ok(vec![])
            }
            (Expect::Data(d), Ok(Value::Read { len, mismatch: None, .. })) if *len == d.len() => Ok(vec![]),
            (Expect::Byte(b), Ok(Value::Byte(got))) if b == got => Ok(vec![]),
            (Expect::Number(n), Ok(Value::Number(got))) if n == got => Ok(vec![]),
            (Expect::Present(p), Ok(Value::Present(got))) if p == got => Ok(vec![]),
            (Expect::Stat(fields), Ok(Value::Stat(st))) => {
                if fields.iter().all(|f| self.stat_field_matches(f, st)) {
                    Ok(vec![])
                } else {
                    fail()
                }
            }
            (Expect::Output(checks), Ok(Value::Output { status, signal, stdout, stderr, .. })) => {
                let mut binds = Vec::new();
                for c in checks {
                    let good = match c {
                        OutputCheck::Status(s) => *status == Some(*s),
                        OutputCheck::Signal(s) => *signal == Some(*s),
                        OutputCheck::StdoutContains(t) => stdout.contains(t.as_str()),
                        OutputCheck::StderrContains(t) => stderr.contains(t.as_str()),
                        OutputCheck::Stdout(template) => match match_template(template, stdout) {
                            Some(caps) => {
                                binds.extend(caps);
                                true
                            }
                            None => false,
                        },
                    };
                    if !good {
                        return fail();
                    }
                }
                Ok(binds)
            }
            _ => fail(),
        }
    }

    fn stat_field_matches(&self, f: &StatField, st: &sysv::SegmentStat) -> bool {
        let pid = |name: &str| match self.globals.get(name) {
            Some(Global::Process(p)) => *p,
            _ => -1,
        };
        match f {
            StatField::Size(n) => st.size as u64 == *n,
            StatField::Nattch(n) => st.nattch == *n,
            StatField::Mode(m) => st.mode.bits() == *m,
            StatField::Key(k) => st.key.raw() == self.resolve_key(k),
            StatField::Dest(b) => st.dest == *b,
            StatField::Locked(b) => st.locked == *b,
            StatField::Cpid(p) => st.cpid == pid(p),
            StatField::Lpid(None) => st.lpid == 0,
            StatField::Lpid(Some(p)) => st.lpid == pid(p),
            StatField::Uid(u) => st.uid == *u,
            StatField::Gid(g) => st.gid == *g,
            StatField::Cuid(u) => st.cuid == *u,
            StatField::Cgid(g) => st.cgid == *g,
        }
    }
}

/// Matches `text` against a template where `{name}` (a segment id) and
/// `{key:name}` (a key) capture a number. A trailing newline of the output
/// may be left out of the template.
fn match_template(template: &str, text: &str) -> Option<Vec<(String, Global)>> {
    let text = if template.ends_with('\n') { text } else { text.strip_suffix('\n').unwrap_or(text) };
    let mut caps = Vec::new();
    let (mut t, mut s) = (template, text);
    loop {
        match t.find('{') {
            None => return (t == s).then_some(caps),
            Some(open) => {
                let close = open + t[open..].find('}')?;
                if s.get(..open)? != &t[..open] {
                    return None;
                }
                s = &s[open..];
                let inner = &t[open + 1..close];
                let len = s.find(|c: char| !(c.is_ascii_hexdigit() || c == 'x' || c == '-')).unwrap_or(s.len());
                let word = &s[..len];
                let g = match inner.strip_prefix("key:") {
                    Some(_) => Global::Key(crate::scenario::parse_key(word)?),
                    None => Global::Segment(word.parse().ok()?),
                };
                caps.push((inner.strip_prefix("key:").unwrap_or(inner).to_string(), g));
                s = &s[len..];
                t = &t[close + 1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_capture_ids_and_keys() {
        let caps = match_template("Shared memory id: {s}", "Shared memory id: 42\n").unwrap();
        assert_eq!(caps, vec![("s".to_string(), Global::Segment(42))]);
        let caps = match_template("key {key:k} id {s}\n", "key 0x0000abcd id 7\n").unwrap();
        assert_eq!(caps[0], ("k".to_string(), Global::Key(0xabcd)));
        assert!(match_template("id: {s}", "id: x").is_none());
        assert!(match_template("exact", "exact but more").is_none());
    }
}
