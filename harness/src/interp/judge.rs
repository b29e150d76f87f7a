//! Judging a step's result against its expectation: a pure function of the
//! step, the result and the names bound so far, shared by the supervisor
//! (which reports) and the actors (which stop a chain at the first
//! surprise). A failed judgement is a [`Mismatch`] (see `mismatch.rs`).

use crate::scenario::{
    Addr, CtlField, CtlTarget, Expect, InfoField, KeyRef, MapField, NumExp, NumField, Number, Op, StatField, Step,
};
use crate::sysv::{self, CtlAnswer};

use crate::interp::mismatch::Mismatch;
use crate::interp::{Ending, Failure, Global, Globals, Outcome, Value};

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
    pub keys: &'a crate::interp::keys::KeyMap,
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
    /// [`crate::interp::keys::KeyMap`]), so scenarios written with fixed keys do not
    /// collide with the machine's own.
    pub fn translate_key(&self, literal: i32) -> i32 {
        self.keys.translate(literal)
    }

    /// A number name's value.
    pub fn number(&self, name: &str) -> Option<Number> {
        match self.globals.get(name) {
            Some(Global::Number(n)) => Some(*n),
            _ => None,
        }
    }

    /// Judges one step: whether its result is what it expects. On success
    /// returns the names the result binds (captures of numbers and of a
    /// `run`'s output); else what was expected and which check failed.
    ///
    /// # Errors
    /// The [`Mismatch`]: the expectation in the transcript's words, and for
    /// a `run`'s output the first check that does not hold.
    pub fn judge_step(&self, step: &Step, result: &StepResult) -> Result<Vec<(String, Global)>, Mismatch> {
        self.holds(step, result).ok_or_else(|| self.mismatch(step, result))
    }

    /// The names a result binds if it is what the step expects, else `None`.
    fn holds(&self, step: &Step, result: &StepResult) -> Option<Vec<(String, Global)>> {
        let StepResult::Answered(o) = result else {
            return match (&step.expect, result) {
                (Expect::Signal(s), StepResult::Ended(Ending::Signaled(got))) if s == got => Some(vec![]),
                (Expect::Exited(c), StepResult::Ended(Ending::Exited(got))) if c == got => Some(vec![]),
                _ => None,
            };
        };
        if let (Op::Repeat { until, .. }, Ok(Value::Repeated { count, stopped, .. })) = (&step.op, &o.result) {
            // Only the errno it waits for ends a repetition as expected.
            if *stopped != Some(*until as i32) {
                return None;
            }
            let count = Number::from(*count);
            return match &step.expect {
                Expect::Ok => Some(vec![]),
                Expect::Number(e) if e.holds(count, |n| self.number(n)) => {
                    Some(e.captures().map(|n| (n.to_string(), Global::Number(count))).into_iter().collect())
                }
                _ => None,
            };
        }
        match (&step.expect, &o.result) {
            (Expect::Ok, Ok(_)) => Some(vec![]),
            (Expect::Errno { errnos, .. }, Err(Failure::Refused { .. })) if errnos.is_empty() => Some(vec![]),
            (Expect::Errno { ok_too: true, .. }, Ok(_)) => Some(vec![]),
            (Expect::Errno { errnos, .. }, Err(Failure::Errno { errno, .. }))
                if errnos.iter().any(|e| *e as i32 == *errno) =>
            {
                Some(vec![])
            }
            (Expect::Data(d), Ok(Value::Read { len, mismatch: None, .. })) if *len == d.len() => Some(vec![]),
            (Expect::Byte(b), Ok(Value::Byte(got))) if b == got => Some(vec![]),
            (Expect::Number(e), Ok(Value::Number(got))) if e.holds(*got, |n| self.number(n)) => {
                Some(e.captures().map(|n| (n.to_string(), Global::Number(*got))).into_iter().collect())
            }
            (Expect::Present(p), Ok(Value::Present(got))) if p == got => Some(vec![]),
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
                good.then(Vec::new)
            }
            (Expect::Stat(fields), Ok(Value::Stat(st))) => {
                let shmid = self.shmid_of(&step.op);
                self.stat_fields(fields, st, shmid)
            }
            (Expect::Ctl(fields), Ok(Value::Ctl(answer))) => self.ctl_fields(&step.op, fields, answer),

            (Expect::Output(checks), Ok(Value::Output { status, signal, stdout, stderr, .. })) => {
                crate::interp::output::judge_output(
                    checks,
                    crate::interp::output::Ended { status: *status, signal: *signal, stdout, stderr },
                    self.globals,
                )
            }
            (Expect::Outputs(alternatives), Ok(Value::Output { status, signal, stdout, stderr, .. })) => {
                crate::interp::output::holding_alternative(
                    alternatives,
                    crate::interp::output::Ended { status: *status, signal: *signal, stdout, stderr },
                    self.globals,
                )
                .map(|(_, binds)| binds)
            }
            _ => None,
        }
    }

    /// The shmid a stat-like step asked about (for `index` and `seq`).
    pub fn shmid_of(&self, op: &Op) -> i32 {
        let segment = |name: &str| match self.globals.get(name) {
            Some(Global::Segment(id)) => *id,
            _ => -1,
        };
        match op {
            Op::Stat { segment: t } | Op::Shmctl { target: t, .. } => match t {
                CtlTarget::Segment(s) => segment(s),
                CtlTarget::Number(n) => *n,
            },
            _ => -1,
        }
    }

    /// Whether a raw `shmctl`'s answer has every field; if so, the numbers
    /// its fields capture.
    fn ctl_fields(&self, op: &Op, fields: &[CtlField], answer: &CtlAnswer) -> Option<Vec<(String, Global)>> {
        let mut binds = Vec::new();
        let mut stat = Vec::new();
        for f in fields {
            match (f, answer) {
                (CtlField::Stat(s), CtlAnswer::Stat(..)) => stat.push(s.clone()),
                (CtlField::Id(s), a) => {
                    if self.globals.get(s) != Some(&Global::Segment(a.returned())) {
                        return None;
                    }
                }
                (CtlField::Info(field, e), a) => {
                    let got = info_number(*field, a)?;
                    if !e.holds(got, |n| self.number(n)) {
                        return None;
                    }
                    binds.extend(e.captures().map(|n| (n.to_string(), Global::Number(got))));
                }
                _ => return None,
            }
        }
        if let CtlAnswer::Stat(ret, st) = answer {
            // SHM_STAT returns the shmid; IPC_STAT returns 0 for the id it was given.
            let shmid =
                if matches!(op, Op::Shmctl { cmd: sysv::ShmctlCmd::IpcStat, .. }) { self.shmid_of(op) } else { *ret };
            binds.extend(self.stat_fields(&stat, st, shmid)?);
        }
        Some(binds)
    }

    /// Whether every field holds; if so, the numbers the fields capture.
    fn stat_fields(&self, fields: &[StatField], st: &sysv::SegmentStat, shmid: i32) -> Option<Vec<(String, Global)>> {
        if !fields.iter().all(|f| self.stat_field_matches(f, st, shmid)) {
            return None;
        }
        Some(
            fields
                .iter()
                .filter_map(|f| match f {
                    StatField::Num(field, NumExp::Capture(n)) => {
                        Some((n.clone(), Global::Number(stat_number(*field, st, shmid))))
                    }
                    _ => None,
                })
                .collect(),
        )
    }

    fn stat_field_matches(&self, f: &StatField, st: &sysv::SegmentStat, shmid: i32) -> bool {
        let pid = |name: &str| match self.globals.get(name) {
            Some(Global::Process(p)) => *p,
            _ => -1,
        };
        match f {
            StatField::Num(field, e) => e.holds(stat_number(*field, st, shmid), |n| self.number(n)),
            StatField::Mode(m) => st.mode.bits() == *m,
            StatField::Key(k) => st.key.raw() == self.resolve_key(k),
            StatField::Dest(b) => st.dest == *b,
            StatField::Locked(b) => st.locked == *b,
            StatField::Cpid(p) => st.cpid == pid(p),
            StatField::Lpid(None) => st.lpid == 0,
            StatField::Lpid(Some(p)) => st.lpid == pid(p),
        }
    }
}

/// The kernel's `SEQ_MULTIPLIER` (`IPCMNI`, 32768 without
/// `ipcmni_extend`): a shmid is `seq * SEQ_MULTIPLIER + index`.
pub const SEQ_MULTIPLIER: i32 = 32768;

/// A numeric stat field's value. `index` is computed from the shmid the
/// step asked about (the kernel answers no index); `seq` is the kernel's
/// answer, `shm_perm.__seq` (the same number as `shmid / 32768` unless the
/// kernel runs with `ipcmni_extend`, whose ids put the seq higher).
pub(crate) fn stat_number(field: NumField, st: &sysv::SegmentStat, shmid: i32) -> Number {
    match field {
        NumField::Size => st.size as Number,
        NumField::Nattch => st.nattch.into(),
        NumField::Uid => st.uid.into(),
        NumField::Gid => st.gid.into(),
        NumField::Cuid => st.cuid.into(),
        NumField::Cgid => st.cgid.into(),
        NumField::Atime => st.atime.into(),
        NumField::Dtime => st.dtime.into(),
        NumField::Ctime => st.ctime.into(),
        NumField::Index => shmid.rem_euclid(SEQ_MULTIPLIER).into(),
        NumField::Seq => st.seq.into(),
    }
}

/// An info field's value in a raw `shmctl`'s answer (`None`: that answer
/// has no such field).
pub(crate) fn info_number(field: InfoField, a: &CtlAnswer) -> Option<Number> {
    Some(match (field, a) {
        (InfoField::MaxIndex, CtlAnswer::Limits(_) | CtlAnswer::Usage(_)) => a.returned().into(),
        (InfoField::Shmmax, CtlAnswer::Limits(l)) => l.shmmax.into(),
        (InfoField::Shmmin, CtlAnswer::Limits(l)) => l.shmmin.into(),
        (InfoField::Shmmni, CtlAnswer::Limits(l)) => l.shmmni.into(),
        (InfoField::Shmseg, CtlAnswer::Limits(l)) => l.shmseg.into(),
        (InfoField::Shmall, CtlAnswer::Limits(l)) => l.shmall.into(),
        (InfoField::UsedIds, CtlAnswer::Usage(u)) => u.used_ids.into(),
        (InfoField::ShmTot, CtlAnswer::Usage(u)) => u.shm_tot.into(),
        (InfoField::ShmRss, CtlAnswer::Usage(u)) => u.shm_rss.into(),
        (InfoField::ShmSwp, CtlAnswer::Usage(u)) => u.shm_swp.into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_step(src: &str) -> Step {
        let sc = crate::scenario::parse("t.scn", src).expect("parses");
        sc.steps.last().expect("a step").clone()
    }

    /// A `repeat` passes only when its `until` errno ended it, then by its
    /// count; reaching the most tries, or another errno, fails it, and the
    /// mismatch says what was expected.
    #[test]
    fn a_repeat_is_judged_by_its_errno_then_its_count() {
        let keys = crate::interp::keys::KeyMap::default();
        let globals = Globals::new();
        let judge = Judge { globals: &globals, keys: &keys };
        let step = |exp: &str| stat_step(&format!("process A\nA: repeat 5 create private size 8 until ENOSPC{exp}\n"));
        let ended = |count, stopped| {
            StepResult::Answered(Outcome {
                call: "shmget".into(),
                result: Ok(Value::Repeated { count, created: vec![], stopped }),
            })
        };
        let enospc = Some(libc::ENOSPC);
        assert_eq!(
            judge.judge_step(&step(" => count {c}"), &ended(3, enospc)).unwrap(),
            vec![("c".into(), Global::Number(3))]
        );
        assert!(judge.judge_step(&step(""), &ended(0, enospc)).is_ok());
        assert!(judge.judge_step(&step(" => count 3"), &ended(3, enospc)).is_ok());
        // The controls: a wrong count, the most tries reached, another errno.
        let m = judge.judge_step(&step(" => count 4"), &ended(3, enospc)).unwrap_err();
        assert_eq!(m.to_string(), "-1 ENOSPC within 5 tries, count 4");
        let m = judge.judge_step(&step(""), &ended(5, None)).unwrap_err();
        assert_eq!(m.to_string(), "-1 ENOSPC within 5 tries");
        assert!(judge.judge_step(&step(" => count 5"), &ended(5, None)).is_err());
        assert!(judge.judge_step(&step(" => count {c}"), &ended(2, Some(libc::ENOMEM))).is_err());
    }

    #[test]
    fn number_expectations_capture_compare_and_can_fail() {
        let st = sysv::SegmentStat {
            key: sysv::Key::PRIVATE,
            uid: 0,
            gid: 0,
            cuid: 0,
            cgid: 0,
            mode: sysv::Mode::from_bits_truncate(0o600),
            dest: false,
            locked: false,
            seq: 3,
            size: 1,
            atime: 1001,
            dtime: 0,
            ctime: 1000,
            cpid: 1,
            lpid: 1,
            nattch: 2,
        };
        let answered = |st| StepResult::Answered(Outcome { call: "shmctl".into(), result: Ok(Value::Stat(st)) });
        let keys = crate::interp::keys::KeyMap::default();
        let mut globals = Globals::new();
        globals.insert("s".into(), Global::Segment(3 * SEQ_MULTIPLIER + 7));
        let base = "process A\nA: create s = private size 1\n";
        let capture = stat_step(&format!("{base}A: stat s => ctime {{t}}, nattch >= 2, index 7, seq 3\n"));
        let got = Judge { globals: &globals, keys: &keys }.judge_step(&capture, &answered(st)).expect("holds");
        assert_eq!(got, vec![("t".to_string(), Global::Number(1000))]);
        globals.extend(got);
        let judge = Judge { globals: &globals, keys: &keys };
        let later = |exp: &str| stat_step(&format!("{base}A: stat s => ctime {{t}}\nA: stat s => {exp}\n"));
        for good in ["atime > t", "ctime t", "ctime <= t", "nattch != 1", "atime >= 1001"] {
            assert!(judge.judge_step(&later(good), &answered(st)).is_ok(), "{good}");
        }
        // The controls: each comparison fails when it does not hold.
        for bad in ["atime <= t", "ctime != t", "ctime > t", "nattch < 2", "index 8", "seq 2", "atime 1000"] {
            let m = judge.judge_step(&later(bad), &answered(st)).expect_err(bad);
            // The mismatch words the expectation, the number names with their values.
            assert_eq!(m, Mismatch { expected: judge.describe_expect(&later(bad).expect), failed_checks: vec![] });
        }
        let m = judge.judge_step(&later("ctime != t"), &answered(st)).unwrap_err();
        assert_eq!(m.to_string(), "ctime != t (1000)");
        // `seq` is the kernel's `shm_perm.__seq`, not computed from the shmid
        // (3 there): an answer with seq 5 holds `seq 5` only.
        let reseq = sysv::SegmentStat { seq: 5, ..st };
        assert!(judge.judge_step(&later("seq 5"), &answered(reseq)).is_ok());
        assert!(judge.judge_step(&later("seq 3"), &answered(reseq)).is_err());
        // An unbound number name (the step that captures it failed) never matches.
        let unbound = Judge { globals: &Globals::new(), keys: &keys };
        assert!(unbound.judge_step(&later("ctime t"), &answered(st)).is_err());
    }
}
