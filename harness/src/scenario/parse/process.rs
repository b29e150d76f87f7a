//! Parsing the process forms: `fork`, `exit`, `kill`, `crash`, `run`,
//! `spawn`, `signal`, `wait`, `exec`, `unshare ipc` and `setns`, with the checks
//! that keep a scenario's processes sound (only a parent waits for its
//! program, a reaped pid is never signalled, ...).

use crate::scenario::{Expect, Op};

use super::{parse_signal, split_command, Kind, Line, ParseError, Parser};

/// What the parser knows of a spawned program.
#[derive(Debug, Clone)]
pub(super) struct ProgramState {
    /// The actor that spawned it (its parent).
    pub parent: String,
    /// Where it was reaped (`wait`), or where its parent went away.
    pub gone: Option<(usize, &'static str)>,
}

/// Signals whose default action neither ends nor stops a process.
const HARMLESS: &[i32] = &[libc::SIGCHLD, libc::SIGCONT, libc::SIGURG, libc::SIGWINCH];
/// Signals that stop a process.
const STOPPING: &[i32] = &[libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// Whether `sig`'s default action ends a process.
pub(crate) fn deadly(sig: i32) -> bool {
    !HARMLESS.contains(&sig) && !STOPPING.contains(&sig)
}

/// `TERM`, `SIGTERM` or a number (1 to 64).
pub(crate) fn signal_word(w: &str) -> Option<i32> {
    if let Ok(n) = w.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    if w.starts_with("SIG") {
        parse_signal(w)
    } else {
        parse_signal(&format!("SIG{w}"))
    }
}

impl Parser {
    /// A name of a process of the scenario: an actor or a spawned program.
    fn pid_name(&self, l: &mut Line, what: &str) -> Result<(String, Kind), ParseError> {
        let col = l.col();
        let (name, _) = self.word(l, what)?;
        match self.names.get(&name) {
            Some((k @ (Kind::Process | Kind::Program), _)) => Ok((name, *k)),
            Some((k, at)) => Err(self.err_at(
                l.lineno,
                col,
                format!("`{name}` is {} (line {at}), not a process or a spawned program", k.noun()),
                None,
            )),
            None => Err(self.unknown(
                l.lineno,
                col,
                format!("unknown name `{name}`: not bound before this line"),
                &name,
                [self.bound(Some(Kind::Process)), self.bound(Some(Kind::Program))].concat(),
                Some("a process or a program bound by `spawn`"),
            )),
        }
    }

    /// A stat field's process: an actor or a spawned program (`cpid D`).
    pub(super) fn pid_field(&self, l: &mut Line) -> Result<String, ParseError> {
        self.pid_name(l, "a process name").map(|(n, _)| n)
    }

    /// The operations of this module; `None` if `kw` is not one of them.
    /// A process step, after its keyword `kw`.
    pub(super) fn process_op(&mut self, l: &mut Line, kw: &str, proc_: &str) -> Result<Op, ParseError> {
        match kw {
            "fork" => self.fork(l, proc_),
            "exit" => Ok(Op::Exit { code: if l.at_end_of_op() { 0 } else { self.small(l, "the exit status")? } }),
            "kill" => Ok(Op::Kill),
            "crash" => Ok(Op::Crash),
            "run" => {
                let scol = l.col();
                let cmd = self.text(l, "the command line")?;
                let mut argv = split_command(&cmd).map_err(|m| self.err_at(l.lineno, scol, m, None))?;
                self.check_substitutions(l.lineno, scol, &mut argv)?;
                Ok(Op::Run { argv })
            }
            "spawn" => self.spawn(l),
            "signal" => self.signal(l, proc_),
            "wait" => self.wait(l, proc_),
            "exec" => self.exec(l, proc_),
            "unshare" => self.keyword(l, "ipc").map(|()| Op::Unshare),
            "setns" => self.setns(l, proc_),
            _ => unreachable!("Parser::op sends only process keywords here"),
        }
    }

    /// `fork CHILD`: a declared process that has not acted yet, without
    /// credentials of its own.
    fn fork(&mut self, l: &mut Line, proc_: &str) -> Result<Op, ParseError> {
        let ccol = l.col();
        let child = self.use_name(l, Kind::Process)?;
        let Some(decl) = self.sc.processes.iter().find(|p| p.name == child) else {
            return Err(self.err_at(
                l.lineno,
                ccol,
                format!("`{child}` is a pid captured from a program's output, not a declared process"),
                Some("a process declared with `process`"),
            ));
        };
        if child == proc_ || self.procs[&child].started.is_some() || decl.forked_from.is_some() {
            let at = self.procs[&child].started.unwrap_or(decl.line);
            return Err(self.err_at(l.lineno, ccol, format!("process {child} already runs (since line {at}); fork needs a declared process that has not acted yet"), None));
        }
        if decl.uid.is_some() || decl.gid.is_some() {
            return Err(self.err_at(
                l.lineno,
                ccol,
                format!("process {child} is declared with uid/gid; a forked child has its parent's credentials"),
                None,
            ));
        }
        Ok(Op::Fork { child })
    }

    fn spawn(&mut self, l: &mut Line) -> Result<Op, ParseError> {
        let name = self.binding(l, Kind::Program)?;
        let scol = l.col();
        let cmd = self.text(l, "the command line")?;
        let mut argv = split_command(&cmd).map_err(|m| self.err_at(l.lineno, scol, m, None))?;
        self.check_substitutions(l.lineno, scol, &mut argv)?;
        Ok(Op::Spawn { name, argv })
    }

    fn signal(&mut self, l: &mut Line, proc_: &str) -> Result<Op, ParseError> {
        let tcol = l.col();
        let (target, kind) = self.pid_name(l, "a process or program to signal")?;
        let scol = l.col();
        let (w, _) = self.word(l, "a signal")?;
        let signal = signal_word(&w).ok_or_else(|| {
            self.unknown_in(
                l.lineno,
                scol,
                format!("unknown signal `{w}`"),
                &w,
                "TERM, KILL, STOP, CONT, USR1, USR2, HUP, INT, QUIT, ... or a number 1 to 64",
            )
        })?;
        match kind {
            Kind::Program => {
                if let Some((at, how)) = self.programs[&target].gone {
                    return Err(self.err_at(
                        l.lineno,
                        tcol,
                        format!("program {target} {how} at line {at}; its pid may be another process's now"),
                        Some("a program not yet waited for, whose parent lives"),
                    ));
                }
            }
            _ => {
                self.acting_process(
                    l.lineno,
                    tcol,
                    &target,
                    "signalled",
                    "a declared process or a program bound by `spawn`",
                )?;
                if target == proc_ {
                    return Err(self.err_at(
                        l.lineno,
                        tcol,
                        format!("process {proc_} signals itself; use `kill` or `crash` to end it"),
                        None,
                    ));
                }
                if let Some(dead) = self.procs[&target].dead {
                    return Err(self.err_at(
                        l.lineno,
                        tcol,
                        format!("process {target} is gone since line {dead}"),
                        None,
                    ));
                }
                if self.procs[&target].started.is_none()
                    && self.sc.processes.iter().any(|p| p.name == target && p.forked_from.is_none())
                {
                    // Initial actors run from the start: fine.
                } else if self.procs[&target].started.is_none() {
                    return Err(self.err_at(
                        l.lineno,
                        tcol,
                        format!("process {target} has not been forked yet"),
                        Some("a process that runs"),
                    ));
                }
                if STOPPING.contains(&signal) {
                    return Err(self.err_at(
                        l.lineno,
                        scol,
                        format!("stopping actor {target} would stall the scenario; stop spawned programs instead"),
                        None,
                    ));
                }
            }
        }
        Ok(Op::Signal { target, signal })
    }

    fn wait(&mut self, l: &mut Line, proc_: &str) -> Result<Op, ParseError> {
        let col = l.col();
        let target = self.use_name(l, Kind::Program)?;
        let st = &self.programs[&target];
        if st.parent != proc_ {
            return Err(self.err_at(
                l.lineno,
                col,
                format!("program {target} is a child of {}; only its parent can wait for it", st.parent),
                Some(&format!("`{}: wait {target}`", st.parent)),
            ));
        }
        if let Some((at, how)) = st.gone {
            return Err(self.err_at(l.lineno, col, format!("program {target} {how} at line {at}"), None));
        }
        Ok(Op::Wait { target })
    }

    fn exec(&mut self, l: &mut Line, proc_: &str) -> Result<Op, ParseError> {
        if let Some(p) = self.programs.iter().find(|(_, s)| s.parent == proc_ && s.gone.is_none()).map(|(n, _)| n) {
            return Err(self.err(
                l,
                format!("process {proc_} execs while its program {p} runs; wait for it first"),
                Some(&format!("`{proc_}: wait {p}` before `exec`")),
            ));
        }
        Ok(Op::Exec)
    }

    fn setns(&mut self, l: &mut Line, proc_: &str) -> Result<Op, ParseError> {
        let col = l.col();
        let target = self.use_name(l, Kind::Process)?;
        if target == proc_ {
            return Err(self.err_at(l.lineno, col, format!("process {proc_} is already in its own namespace"), None));
        }
        self.acting_process(l.lineno, col, &target, "joined", "a declared process")?;
        if let Some(dead) = self.procs[&target].dead {
            return Err(self.err_at(l.lineno, col, format!("process {target} is gone since line {dead}"), None));
        }
        Ok(Op::Setns { target })
    }

    /// A process name that names a scenario process (declared), not a pid
    /// captured from a program's output (`{pid:NAME}`), which may be any
    /// process of the machine: only `cpid`/`lpid` and `${NAME}` take those.
    fn acting_process(
        &self,
        lineno: usize,
        col: usize,
        name: &str,
        how: &str,
        expected: &str,
    ) -> Result<(), ParseError> {
        if self.procs.contains_key(name) {
            return Ok(());
        }
        let at = self.names.get(name).map_or(0, |(_, at)| *at);
        Err(self.err_at(
            lineno,
            col,
            format!("`{name}` is a pid captured from a program's output (line {at}), not a process of the scenario; it cannot be {how}"),
            Some(expected),
        ))
    }

    /// Updates the books of programs and processes after a process step.
    ///
    /// # Errors
    /// A deadly signal to an actor expected to answer `ok | ERRNO`: whether
    /// the actor still lives after it would not be known.
    pub(super) fn apply_proc(
        &mut self,
        lineno: usize,
        proc_: &str,
        op: &Op,
        expect: &Expect,
        succeeds: bool,
    ) -> Result<(), ParseError> {
        if let (Op::Signal { target, signal }, Expect::Errno { ok_too: true, .. }) = (op, expect) {
            if self.procs.contains_key(target) && deadly(*signal) {
                return Err(self.err_at(
                    lineno,
                    1,
                    format!("whether process {target} survives this signal would not be known"),
                    Some("`=> ok` or errnos without `| ok` for a signal that ends an actor"),
                ));
            }
        }
        match op {
            Op::Spawn { name: Some(name), .. } => {
                self.programs.insert(name.clone(), ProgramState { parent: proc_.to_string(), gone: None });
            }
            Op::Wait { target } => {
                if let Some(p) = self.programs.get_mut(target) {
                    p.gone = Some((lineno, "was reaped by `wait`"));
                }
            }
            Op::Signal { target, signal } if succeeds && deadly(*signal) => {
                if let Some(st) = self.procs.get_mut(target) {
                    st.dead = Some(lineno);
                    self.orphan_programs(target, lineno);
                }
            }
            Op::Exec if succeeds => {
                if let Some(st) = self.procs.get_mut(proc_) {
                    st.attachments.clear();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Programs of `parent` die with it (their death signal) and are reaped
    /// by the supervisor: their pids may be recycled.
    pub(super) fn orphan_programs(&mut self, parent: &str, lineno: usize) {
        for p in self.programs.values_mut().filter(|p| p.parent == parent && p.gone.is_none()) {
            p.gone = Some((lineno, "died with its parent"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::parse;

    /// The error of `text` at `line:col`, whose message contains `needle`.
    fn refused(text: &str, line: usize, col: usize, needle: &str) {
        let e = parse("t.scn", text).expect_err(text);
        assert_eq!((e.line, e.col), (line, col), "{e}");
        assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
    }

    const P: &str = "process A, B\n";

    #[test]
    fn spawn_needs_a_command_and_known_names() {
        refused(&format!("{P}A: spawn D =\n"), 2, 13, "missing the command line");
        refused(&format!("{P}A: spawn D = \"x ${{nope}}\"\n"), 2, 14, "unknown name `${nope}`");
        refused(&format!("{P}A: spawn D = \"x\" => ENOENT\n"), 2, 1, "binds `D` but is not expected to succeed");
        refused(&format!("{P}A: spawn D = \"x\"\nA: spawn D = \"y\"\n"), 3, 10, "duplicate name `D`");
    }

    /// A pid captured from a program's output names no scenario process:
    /// signalling or joining it is a check error (it was a parser panic).
    #[test]
    fn a_captured_pid_is_neither_signalled_nor_joined() {
        let cap = "A: run \"echo 1\" => stdout \"{pid:g}\"\n";
        refused(&format!("{P}{cap}A: signal g KILL\n"), 3, 11, "is a pid captured from a program's output (line 2)");
        refused(&format!("{P}{cap}A: setns g\n"), 3, 10, "it cannot be joined");
        // The control: a declared process is signalled and joined.
        let sc = parse("t.scn", &format!("{P}{cap}A: setns B\nA: signal B KILL\n"));
        assert!(sc.is_ok(), "{sc:?}");
    }

    #[test]
    fn a_program_takes_no_steps() {
        refused(&format!("{P}A: spawn D = \"x\"\nD: exit\n"), 3, 1, "is a spawned program, not an actor");
    }

    #[test]
    fn signal_checks_its_target_and_signal() {
        refused(&format!("{P}A: spawn D = \"x\"\nB: signal D FOO\n"), 3, 13, "unknown signal `FOO`");
        refused(&format!("{P}A: spawn D = \"x\"\nB: signal D 65\n"), 3, 13, "unknown signal `65`");
        refused(
            &format!("{P}A: create s = private size 1\nB: signal s TERM\n"),
            3,
            11,
            "not a process or a spawned program",
        );
        refused(&format!("{P}B: signal Z TERM\n"), 2, 11, "unknown name `Z`");
        refused(&format!("{P}A: signal A TERM\n"), 2, 11, "signals itself");
        refused(&format!("{P}B: signal A STOP\n"), 2, 13, "would stall the scenario");
        refused(
            &format!("{P}A: spawn D = \"x\"\nA: wait D\nB: signal D KILL\n"),
            4,
            11,
            "was reaped by `wait` at line 3",
        );
        refused(
            &format!("{P}A: spawn D = \"x\"\nA: exit\nB: signal D KILL\n"),
            4,
            11,
            "died with its parent at line 3",
        );
        refused(&format!("{P}B: signal A KILL\nB: signal A KILL\n"), 3, 11, "gone since line 2");
        refused(&format!("{P}B: signal A TERM\nA: stat s\n"), 3, 1, "gone since line 2");
        refused(&format!("{P}A: spawn D = \"x\"\n& B: signal D TERM\n"), 3, 6, "cannot run concurrently");
        refused(&format!("{P}B: signal A TERM => ok | EPERM\n"), 2, 1, "whether process A survives");
    }

    /// A command is not handed the pid of a program after `wait` (or after
    /// its parent died), nor of a process killed by `signal`: it may be any
    /// process of the machine's by then (host isolation has no PID
    /// namespace when it traces programs). Before, `run "kill -9 ${D}"`
    /// after `wait D` passed `check`.
    #[test]
    fn a_command_is_not_handed_a_stale_pid() {
        refused(
            &format!("{P}A: spawn D = \"x\"\nA: wait D\nB: run \"kill -9 ${{D}}\"\n"),
            4,
            8,
            "`${D}` in the command: program D was reaped by `wait` at line 3",
        );
        refused(
            &format!("{P}A: spawn D = \"x\"\nA: exit\nB: spawn E = \"kill ${{D}}\"\n"),
            4,
            14,
            "program D died with its parent at line 3",
        );
        refused(&format!("{P}B: signal A KILL\nB: run \"kill ${{A}}\"\n"), 3, 8, "process A is gone since line 2");
        // The control: the same commands while the pid is still theirs.
        for ok in [
            format!("{P}A: spawn D = \"x\"\nB: run \"kill -9 ${{D}}\"\nA: wait D\n"),
            format!("{P}B: run \"kill -0 ${{A}}\"\nB: signal A KILL\n"),
        ] {
            parse("t.scn", &ok).expect(&ok);
        }
    }

    #[test]
    fn only_the_parent_waits_once() {
        refused(&format!("{P}A: spawn D = \"x\"\nB: wait D\n"), 3, 9, "only its parent can wait");
        refused(&format!("{P}A: spawn D = \"x\"\nA: wait D\nA: wait D\n"), 4, 9, "was reaped by `wait` at line 3");
        refused(&format!("{P}A: wait B\n"), 2, 9, "`B` is a process");
        refused(&format!("{P}A: spawn D = \"x\"\nA: wait D => signal NOPE\n"), 3, 21, "unknown signal `NOPE`");
        refused(&format!("{P}A: spawn D = \"x\"\nA: wait D => size 1\n"), 3, 14, "unknown output check `size`");
    }

    #[test]
    fn exec_unshare_setns_misuse() {
        refused(&format!("{P}A: spawn D = \"x\"\nA: exec\n"), 3, 8, "execs while its program D runs");
        refused(&format!("{P}A: exec now\n"), 2, 9, "unexpected input");
        refused(&format!("{P}A: unshare\n"), 2, 11, "missing `ipc`");
        refused(&format!("{P}A: unshare net\n"), 2, 12, "missing `ipc`");
        refused(&format!("{P}A: setns A\n"), 2, 10, "already in its own namespace");
        refused(&format!("{P}B: exit\nA: setns B\n"), 3, 10, "gone since line 2");
        refused(
            &format!("{P}A: create s = private size 1\nA: attach m = s\nA: exec\nA: read m 0 1\n"),
            5,
            9,
            "not attached",
        );
    }

    #[test]
    fn finally_stands_alone_once_and_before_steps() {
        refused(
            &format!("{P}finally:\nA: exit\nfinally:\nB: exit\n"),
            4,
            1,
            "a second `finally:` (the first is at line 2)",
        );
        refused(&format!("{P}finally: A: exit\n"), 2, 10, "stands on its own line");
        refused(&format!("{P}A: exit\nfinally:\n"), 3, 1, "`finally:` with no steps after it");
        refused(&format!("{P}A: exit 0\nfinally:\n& B: exit\n"), 4, 1, "`&` would join");
        let sc = parse("t.scn", &format!("{P}A: exit\nfinally:\nB: exit\n")).expect("parses");
        assert_eq!(sc.finally, Some(1));
    }
}
