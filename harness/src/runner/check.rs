//! Judging a step's result against its expectation: a pure function of the
//! step, the result and the names bound so far, shared by the supervisor
//! (which reports) and the actors (which stop a chain at the first
//! surprise).

use crate::scenario::{Addr, Expect, KeyRef, MapField, StatField, Step};
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

    /// The run-time value of an address (`M+N` from M's bound address).
    pub fn resolve_addr(&self, a: &Addr) -> Option<usize> {
        match a {
            Addr::Literal(v) => usize::try_from(*v).ok(),
            Addr::Of { attachment, offset } => match self.globals.get(attachment) {
                Some(Global::Address(base)) => base.checked_add_signed(isize::try_from(*offset).ok()?),
                _ => None,
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
            (Expect::Mapped(fields), Ok(v @ (Value::Attached { .. } | Value::Remapped { .. }))) => {
                let (addr, len, moved) = match v {
                    Value::Attached { addr, mapping_len, .. } => (*addr, *mapping_len, None),
                    Value::Remapped { addr, mapping_len, moved } => (*addr, *mapping_len, Some(*moved)),
                    _ => unreachable!("matched above"),
                };
                let good = fields.iter().all(|f| match f {
                    MapField::At(a) => self.resolve_addr(a) == Some(addr),
                    MapField::Mapped(n) => len as u64 == *n,
                    MapField::Moved(m) => moved == Some(*m),
                });
                if good {
                    Ok(vec![])
                } else {
                    fail()
                }
            }
            (Expect::Stat(fields), Ok(Value::Stat(st))) => {
                if fields.iter().all(|f| self.stat_field_matches(f, st)) {
                    Ok(vec![])
                } else {
                    fail()
                }
            }
            (Expect::Output(checks), Ok(Value::Output { status, stdout, stderr, .. })) => {
                super::output::judge_output(checks, *status, stdout, stderr, self.globals).ok_or(())
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
