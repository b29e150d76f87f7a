//! Parsing intent and waiting: `needs program "X"` / `needs command "X"`,
//! `xfail "REASON"` before a step, the `eventually D:` prefix, and the
//! `finally:` line (every step after it always runs).

use super::super::ast::{Op, Requirement};
use super::super::lexer::Tok;
use super::{found, parse_duration, split_command, substitutions, Line, ParseError, Parser};
use std::time::Duration;

/// Operations an `eventually` step may repeat: those without side effects.
const REPEATABLE: &str =
    "run, lookup, segments, stat, read, peek, meminfo, a sysctl read, or shmctl IPC_STAT, IPC_INFO, SHM_INFO, SHM_STAT or SHM_STAT_ANY";

impl Parser {
    /// `finally:` on its own line: every later step always runs.
    pub(super) fn finally_line(&mut self, l: &mut Line) -> Result<(), ParseError> {
        l.pos += 2;
        if let Some(first) = self.finally_line {
            return Err(self.err_at(
                l.lineno,
                1,
                format!("a second `finally:` (the first is at line {first})"),
                Some("one `finally:` line; every step after it always runs"),
            ));
        }
        if l.peek().is_some() {
            return Err(self.err(
                l,
                format!("`finally:` stands on its own line: {}", found(l)),
                Some("the end of the line; the steps follow on their own lines"),
            ));
        }
        self.finally_line = Some(l.lineno);
        self.sc.finally = Some(self.sc.steps.len());
        Ok(())
    }

    /// `program "NAME"` or `command "CMD ARGS"` after `needs` (the word is read).
    pub(super) fn requirement(&mut self, l: &mut Line, what: &str) -> Result<(), ParseError> {
        let col = l.col();
        let text = self.text(l, if what == "program" { "the program" } else { "the command" })?;
        for name in substitutions(&text) {
            if name != "here" {
                return Err(self.err_at(
                    l.lineno,
                    col,
                    format!("`${{{name}}}` in a need: needs are checked before anything runs"),
                    Some("only ${here} (the scenario file's folder)"),
                ));
            }
        }
        let req = if what == "program" {
            if text.is_empty() || text.chars().any(char::is_whitespace) {
                return Err(self.err_at(
                    l.lineno,
                    col,
                    format!("bad program name {text:?}"),
                    Some("one program name or path, e.g. \"ipcs\" or \"${here}/tool\""),
                ));
            }
            Requirement::Program(text)
        } else {
            split_command(&text).map_err(|m| self.err_at(l.lineno, col, m, None))?;
            Requirement::Command(text)
        };
        self.sc.requires.push(req);
        Ok(())
    }

    /// `xfail "REASON"`: marks the next step.
    pub(super) fn xfail_line(&mut self, l: &mut Line) -> Result<(), ParseError> {
        let col = l.col();
        l.pos += 1; // `xfail`
        if let Some((_, at)) = &self.pending_xfail {
            return Err(self.err_at(
                l.lineno,
                col,
                format!("a second `xfail` before the step that the one on line {at} marks"),
                Some("one `xfail \"REASON\"` right before a step"),
            ));
        }
        let rcol = l.col();
        let reason = self.text(l, "the reason")?;
        if reason.trim().is_empty() {
            return Err(self.err_at(
                l.lineno,
                rcol,
                "empty xfail reason",
                Some("the known defect, e.g. \"util-linux ipcs prints cuid as cgid\""),
            ));
        }
        self.pending_xfail = Some((reason, l.lineno));
        Ok(())
    }

    /// `eventually D:` before `PROCESS: STEP`, if there.
    pub(super) fn eventually_prefix(&mut self, l: &mut Line, concurrent: bool) -> Result<Option<Duration>, ParseError> {
        if l.peek_word() != Some("eventually") {
            return Ok(None);
        }
        if concurrent {
            return Err(self.err(
                l,
                "an `eventually` step cannot run concurrently",
                Some("`eventually D: P: STEP` on a line of its own, without `&`"),
            ));
        }
        l.pos += 1;
        let col = l.col();
        let (w, _) = self.word(l, "a duration")?;
        let d = parse_duration(&w).filter(|d| !d.is_zero()).ok_or_else(|| {
            self.err_at(l.lineno, col, format!("bad duration `{w}`"), Some("a duration above 0 such as 500ms or 5s"))
        })?;
        if !l.eat(&Tok::Colon) {
            return Err(self.err(
                l,
                format!("missing `:` after the duration: {}", found(l)),
                Some("`eventually D: PROCESS: STEP`"),
            ));
        }
        Ok(Some(d))
    }

    /// An `eventually` step must have no side effects: repeating it changes nothing.
    pub(super) fn check_repeatable(&self, lineno: usize, col: usize, op: &Op) -> Result<(), ParseError> {
        let repeatable = matches!(
            op,
            Op::Run { .. }
                | Op::Lookup { .. }
                | Op::Segments
                | Op::Stat { .. }
                | Op::Read { .. }
                | Op::Peek { .. }
                | Op::Sysctl { value: None, .. }
                | Op::Meminfo { .. }
                | Op::Shmctl {
                    cmd: crate::sysv::ShmctlCmd::IpcStat
                        | crate::sysv::ShmctlCmd::IpcInfo
                        | crate::sysv::ShmctlCmd::ShmInfo
                        | crate::sysv::ShmctlCmd::ShmStat
                        | crate::sysv::ShmctlCmd::ShmStatAny,
                    ..
                }
        );
        if repeatable {
            Ok(())
        } else {
            Err(self.err_at(
                lineno,
                col,
                format!("`{}` has side effects and cannot be repeated by `eventually`", op.keyword()),
                Some(REPEATABLE),
            ))
        }
    }
}
