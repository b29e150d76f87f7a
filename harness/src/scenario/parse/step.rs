//! Parsing a line: a declaration, `xfail`, `finally:`, or a step
//! `[&] [eventually D:] PROCESS: OPERATION [=> EXPECTATION]`; the checks that
//! tie an operation to its expectation and a step to its group; and what a
//! step changes in what the parser knows (names, attachments, live processes).

use super::*;

impl Parser {
    /// One line that is not blank (`text`: the line, trimmed).
    pub(super) fn line(&mut self, l: &mut Line, text: &str) -> Result<(), ParseError> {
        if l.peek_word() == Some("finally") && l.toks.get(1).map(|t| &t.tok) == Some(&Tok::Colon) {
            return self.finally_line(l);
        }
        let concurrent = l.eat(&Tok::Amp);
        if concurrent && self.sc.finally == Some(self.sc.steps.len()) {
            return Err(self.err_at(
                l.lineno,
                1,
                "`&` would join the first step after `finally:` to a step before it",
                Some("a step without `&` right after `finally:`"),
            ));
        }
        if !concurrent {
            if let Some(done) = self.declaration_or_xfail(l) {
                return done;
            }
        }
        self.step(l, text, concurrent)
    }

    /// A declaration or an `xfail "REASON"` line, if that is what `l` is.
    fn declaration_or_xfail(&mut self, l: &mut Line) -> Option<Result<(), ParseError>> {
        let (Some(Tok::Word(w)), next) = (l.peek(), l.toks.get(1).map(|t| &t.tok)) else {
            return None;
        };
        if next != Some(&Tok::Colon) && ["process", "needs", "file", "sysctl", "timeout"].contains(&w.as_str()) {
            if let Some((_, at)) = &self.pending_xfail {
                return Some(Err(self.err_at(
                    l.lineno,
                    1,
                    format!("the `xfail` on line {at} must come right before a step, not a declaration"),
                    Some("a step after `xfail \"REASON\"`"),
                )));
            }
            let w = w.clone();
            l.pos += 1;
            return Some(self.declaration(l, &w).and_then(|()| self.end(l)));
        }
        if w == "xfail" && next != Some(&Tok::Colon) {
            return Some(self.xfail_line(l).and_then(|()| self.end(l)));
        }
        None
    }

    /// A step: `[eventually D:] PROCESS: OPERATION [=> EXPECTATION]` (after
    /// its `&`, if `concurrent`).
    fn step(&mut self, l: &mut Line, text: &str, concurrent: bool) -> Result<(), ParseError> {
        let eventually = self.eventually_prefix(l, concurrent)?;
        let (proc_, col) = self.actor(l, concurrent)?;
        let op_col = l.col();
        let op = self.op(l, &proc_)?;
        let expect = if l.eat(&Tok::Arrow) { self.expectation(l, &op, &proc_)? } else { default_expect(&op) };
        self.end(l)?;
        self.check_fit(l.lineno, op_col, &op, &expect)?;
        if eventually.is_some() {
            self.check_repeatable(l.lineno, op_col, &op)?;
        }
        if concurrent {
            self.check_group(l.lineno, (col, op_col), &proc_, &op)?;
        }
        let xfail = self.pending_xfail.take().map(|(reason, _)| reason);
        self.apply(l.lineno, &proc_, &op, &expect)?;
        self.procs.get_mut(&proc_).expect("known").started.get_or_insert(l.lineno);
        self.sc.steps.push(Step {
            line: l.lineno,
            text: text.to_string(),
            process: proc_,
            op,
            expect,
            concurrent,
            eventually,
            xfail,
        });
        Ok(())
    }

    /// `PROCESS:` at the start of a step: a declared process that still
    /// lives; its name and column.
    fn actor(&self, l: &mut Line, concurrent: bool) -> Result<(String, usize), ParseError> {
        let (proc_, col) = self.word(l, "a process name or a declaration")?;
        if !self.procs.contains_key(&proc_) {
            let msg = if matches!(self.names.get(&proc_), Some((Kind::Program, _))) {
                format!("`{proc_}` is a spawned program, not an actor: it takes no steps (signal or wait for it)")
            } else if self.names.contains_key(&proc_) {
                format!("`{proc_}` is not a process")
            } else {
                format!("unknown process `{proc_}`: declare it first with `process {proc_}`")
            };
            let mut known: Vec<&str> = self.procs.keys().map(String::as_str).collect();
            known.sort_unstable();
            known.extend(["process", "needs", "file", "sysctl", "timeout", "xfail", "eventually", "finally"]);
            let candidates = if self.names.contains_key(&proc_) { Vec::new() } else { known };
            return Err(self.unknown(
                l.lineno,
                col,
                msg,
                &proc_,
                candidates,
                Some("a declared process, a declaration (process, needs, file, sysctl, timeout), `xfail \"REASON\"`, `eventually D:`, `finally:` or `& PROCESS:`"),
            ));
        }
        if !l.eat(&Tok::Colon) {
            return Err(self.err(
                l,
                format!("missing `:` after the process name: {}", found(l)),
                Some("`PROCESS: OPERATION`"),
            ));
        }
        if concurrent && self.sc.steps.is_empty() {
            return Err(self.err_at(l.lineno, 1, "`&` joins a step to the one before it, and there is none", None));
        }
        if let Some(dead) = self.procs[&proc_].dead {
            return Err(self.err_at(l.lineno, col, format!("process {proc_} is gone since line {dead}"), None));
        }
        Ok((proc_, col))
    }

    /// A step joined by `&` to the group before it (the last step without
    /// `&` and the `&` steps after it): one step per process, none that
    /// forks, ends or changes a process, none repeated by `eventually`.
    /// `cols`: the process's and the operation's columns.
    fn check_group(&self, lineno: usize, cols: (usize, usize), proc_: &str, op: &Op) -> Result<(), ParseError> {
        let (col, op_col) = cols;
        let start = self.sc.steps.iter().rposition(|s| !s.concurrent).unwrap_or(0);
        if let Some(same) = self.sc.steps[start..].iter().find(|s| s.process == proc_) {
            return Err(self.err_at(
                lineno,
                col,
                format!(
                    "`&` runs steps of different processes together; {proc_} already has a step in this group (line {})",
                    same.line
                ),
                None,
            ));
        }
        if matches!(
            op,
            Op::Fork { .. }
                | Op::Exit { .. }
                | Op::Kill
                | Op::Crash
                | Op::Signal { .. }
                | Op::Wait { .. }
                | Op::Exec
                | Op::Unshare
                | Op::Setns { .. }
        ) {
            return Err(self.err_at(lineno, op_col, format!("`{}` cannot run concurrently", op.keyword()), None));
        }
        if let Some(first) = self.sc.steps[start..].iter().find(|s| s.eventually.is_some()) {
            return Err(self.err_at(
                lineno,
                1,
                format!("`&` cannot join the `eventually` step of line {}: it is repeated alone", first.line),
                None,
            ));
        }
        Ok(())
    }

    /// Nothing more on the line (a `# comment` is gone already).
    pub(super) fn end(&self, l: &Line) -> Result<(), ParseError> {
        match l.peek() {
            None => Ok(()),
            Some(_) => Err(self.err(
                l,
                format!("unexpected input at the end of the line: {}", found(l)),
                Some("the end of the line or a `# comment`"),
            )),
        }
    }

    /// The expectation after `=>`, read as the operation `op` answers.
    fn expectation(&mut self, l: &mut Line, op: &Op, proc_: &str) -> Result<Expect, ParseError> {
        let col = l.col();
        // Outcomes: ok, errnos, a signal, alternatives joined by `|`.
        if let Some(w) = l.peek_word() {
            if w == "ok"
                || w == "refused"
                || (w.starts_with('E')
                    && w.len() > 1
                    && w[1..].chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
                || w.starts_with("SIG")
            {
                return self.outcomes(l);
            }
        }
        Ok(match op {
            Op::Read { .. } => Expect::Data(self.data(l)?),
            Op::Peek { .. } => Expect::Byte(self.small(l, "the byte")?),
            Op::Sysctl { value: None, .. } | Op::Segments | Op::Meminfo { .. } => {
                Expect::Number(self.num_exp(l, "a number")?)
            }
            Op::Shmctl { cmd, .. } => Expect::Ctl(self.ctl_fields(l, *cmd)?),
            Op::Lookup { .. } => {
                let (w, wcol) = self.word(l, "`present` or `absent`")?;
                match w.as_str() {
                    "present" => Expect::Present(true),
                    "absent" => Expect::Present(false),
                    _ => {
                        return Err(self.err_at(
                            l.lineno,
                            wcol,
                            format!("bad lookup result `{w}`"),
                            Some("`present` or `absent`"),
                        ))
                    }
                }
            }
            Op::Stat { .. } => Expect::Stat(self.stat_fields(l)?),
            Op::Repeat { .. } => {
                self.keyword(l, "count")?;
                Expect::Number(self.num_exp(l, "how many succeeded")?)
            }
            Op::Run { .. } | Op::Wait { .. } => {
                let mut alternatives = self.output_alternatives(l)?;
                if alternatives.len() == 1 {
                    Expect::Output(alternatives.remove(0))
                } else {
                    Expect::Outputs(alternatives)
                }
            }
            Op::Attach { .. } | Op::Mapping { change: MapChange::Resize { .. }, .. } => {
                Expect::Mapped(self.map_fields(l, op, proc_)?)
            }
            _ => {
                return Err(self.err_at(
                    l.lineno,
                    col,
                    format!("`{}` has no value to expect: {}", op.keyword(), found(l)),
                    Some("`ok`, an errno such as EACCES, or a signal such as SIGSEGV"),
                ))
            }
        })
    }

    /// `ok`, `refused`, errnos or a signal, alternatives joined by `|`.
    fn outcomes(&mut self, l: &mut Line) -> Result<Expect, ParseError> {
        let (mut errnos, mut ok, mut signal, mut refused) = (Vec::new(), false, None, false);
        loop {
            let (w, col) = self.word(l, "an outcome")?;
            if w == "ok" {
                ok = true;
            } else if w == "refused" {
                refused = true;
            } else if w.starts_with("SIG") {
                signal = Some(parse_signal(&w).ok_or_else(|| {
                    self.err_at(
                        l.lineno,
                        col,
                        format!("unknown signal `{w}`"),
                        Some("a signal name such as SIGSEGV or SIGKILL"),
                    )
                })?);
            } else {
                errnos.push(errno_from_name(&w).ok_or_else(|| {
                    self.err_at(
                        l.lineno,
                        col,
                        format!("unknown errno `{w}`"),
                        Some("an errno name such as EEXIST, ENOENT, EINVAL, EACCES"),
                    )
                })?);
            }
            if !l.eat(&Tok::Bar) {
                break;
            }
        }
        let kinds = usize::from(!errnos.is_empty() || ok) + usize::from(signal.is_some()) + usize::from(refused);
        if kinds > 1 {
            return Err(self.err(
                l,
                "a step either returns (ok or errnos), is refused, or dies of a signal; alternatives mix them",
                None,
            ));
        }
        Ok(if let Some(sig) = signal {
            Expect::Signal(sig)
        } else if refused {
            Expect::Errno { errnos: vec![], ok_too: false }
        } else if errnos.is_empty() {
            Expect::Ok
        } else {
            Expect::Errno { errnos, ok_too: ok }
        })
    }

    /// Whether an expectation can be met by its operation at all.
    fn check_fit(&self, lineno: usize, col: usize, op: &Op, expect: &Expect) -> Result<(), ParseError> {
        let bad = |msg: String, expected: &str| Err(self.err_at(lineno, col, msg, Some(expected)));
        match (op, expect) {
            (Op::Read { len, .. }, Expect::Data(d)) if d.len() as u64 != *len => bad(
                format!("read of {len} bytes expects {} bytes of data", d.len()),
                &format!("data of exactly {len} bytes, or a read of {} bytes", d.len()),
            ),
            (Op::Exit { .. } | Op::Kill | Op::Crash, Expect::Errno { .. } | Expect::Ok) => bad(
                format!("`{}` ends the process; it cannot return ok or an errno", op.keyword()),
                "a signal (`=> SIGKILL`) or no expectation",
            ),
            (Op::Segments | Op::Lookup { .. } | Op::Meminfo { .. }, Expect::Ok) => bad(
                format!("`{}` reads a value and must say what it expects", op.keyword()),
                if matches!(op, Op::Lookup { .. }) {
                    "`=> present` or `=> absent`"
                } else {
                    "`=>` and a number expectation"
                },
            ),
            (Op::Segments | Op::Lookup { .. } | Op::Meminfo { .. }, Expect::Errno { .. }) => bad(
                format!("`{}` reads /proc and has no errno to expect", op.keyword()),
                if matches!(op, Op::Lookup { .. }) { "`present` or `absent`" } else { "a number expectation" },
            ),
            (Op::Write { .. } | Op::Read { .. } | Op::Peek { .. } | Op::Poke { .. }, Expect::Errno { errnos, .. })
                if !errnos.is_empty() =>
            {
                bad(
                    format!("`{}` makes no system call and has no errno to expect", op.keyword()),
                    "`refused` (out of bounds or read-only) or a signal such as `SIGSEGV`",
                )
            }
            (Op::Repeat { until, .. }, Expect::Errno { .. } | Expect::Signal(_)) => bad(
                format!(
                    "`repeat` ends at its `until {}`; it answers how many succeeded",
                    crate::sysv::errno_name(*until)
                ),
                "`=> count NUMEXP` (such as `count 10` or `count {n}`) or no expectation",
            ),
            (op, Expect::Errno { errnos, .. })
                if errnos.is_empty()
                    && !matches!(op, Op::Write { .. } | Op::Read { .. } | Op::Peek { .. } | Op::Poke { .. }) =>
            {
                bad(
                    format!("only memory accesses (write, read, peek, poke) can be `refused`, not `{}`", op.keyword()),
                    "`ok`, an errno or a signal",
                )
            }
            _ => Ok(()),
        }
    }

    /// Updates process and attachment state after a step.
    fn apply(&mut self, lineno: usize, proc_: &str, op: &Op, expect: &Expect) -> Result<(), ParseError> {
        let succeeds = expect.succeeds();
        let binds = op.binds();
        if let Some(name) = &binds {
            if !succeeds {
                return Err(self.err_at(
                    lineno,
                    1,
                    format!("the step binds `{name}` but is not expected to succeed"),
                    Some("no `NAME =` on a step expected to fail"),
                ));
            }
        }
        let state = self.procs.get_mut(proc_).expect("known");
        // The same rule the actor follows when it performs the step.
        match op.attachment_change() {
            AttachmentChange::Adds(name) => {
                state.known.insert(name.clone());
                state.attachments.insert(name);
            }
            AttachmentChange::Ends(name) => {
                state.attachments.remove(&name);
            }
            AttachmentChange::None => {}
        }
        match op {
            Op::Exit { .. } | Op::Kill | Op::Crash => state.dead = Some(lineno),
            Op::Fork { child } if succeeds => {
                let inherited = state.attachments.clone();
                let known = state.known.clone();
                let c = self.procs.get_mut(child).expect("declared");
                c.attachments = inherited;
                c.known = known;
                c.started = Some(lineno);
                let decl = self.sc.processes.iter_mut().find(|p| &p.name == child).expect("declared");
                decl.forked_from = Some(proc_.to_string());
            }
            _ => {}
        }
        if expect.ends_process() {
            self.procs.get_mut(proc_).expect("known").dead = Some(lineno);
        }
        if op.ends_process() || expect.ends_process() {
            self.orphan_programs(proc_, lineno);
        }
        self.apply_proc(lineno, proc_, op, expect, succeeds)
    }
}

/// The expectation of a step written without `=>`.
fn default_expect(op: &Op) -> Expect {
    match op {
        Op::Exit { code } => Expect::Exited(*code),
        Op::Kill => Expect::Signal(libc::SIGKILL),
        Op::Crash => Expect::Signal(libc::SIGABRT),
        _ => Expect::Ok,
    }
}
