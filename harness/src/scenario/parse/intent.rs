//! Parsing intent and waiting: `needs program "X"` / `needs command "X"`,
//! `needs kernel >= X.Y` / `needs kernel < X.Y`, `xfail "REASON"` before a step, the `eventually D:` prefix, and the
//! `finally:` line (every step after it always runs).

use super::super::ast::{KernelNeed, Op, Requirement};
use super::super::lexer::Tok;
use super::super::number::CmpOp;
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

    /// `>= X.Y[.Z]` or `< X.Y[.Z]` after `needs kernel` (the word is read).
    pub(super) fn kernel_need(&mut self, l: &mut Line) -> Result<(), ParseError> {
        const FORM: &str = "`kernel >= X.Y` (the behaviour arrived in X.Y) or `kernel < X.Y` (it changed in X.Y), e.g. `needs kernel >= 4.17`";
        let at_least = match l.peek() {
            Some(Tok::Cmp(CmpOp::Ge)) => true,
            Some(Tok::Cmp(CmpOp::Lt)) => false,
            Some(Tok::Cmp(op)) => {
                let op = op.symbol();
                return Err(self.err(l, format!("`needs kernel {op}` is not a need a version can state"), Some(FORM)));
            }
            _ => {
                return Err(self.err(l, format!("missing `>=` or `<` after `needs kernel`: {}", found(l)), Some(FORM)))
            }
        };
        l.pos += 1;
        let (w, col) = self.word(l, "a kernel version such as 4.17 or 6.1.5")?;
        let parts: Vec<Option<u32>> = w
            .split('.')
            .map(|p| if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) { p.parse().ok() } else { None })
            .collect();
        let mut version = [0u32; 3];
        if !(2..=3).contains(&parts.len()) || parts.iter().any(Option::is_none) {
            return Err(self.err_at(
                l.lineno,
                col,
                format!("bad kernel version `{w}`"),
                Some("MAJOR.MINOR or MAJOR.MINOR.PATCH in decimal, e.g. 4.17 or 6.1.5"),
            ));
        }
        for (slot, p) in version.iter_mut().zip(&parts) {
            *slot = p.unwrap_or(0);
        }
        let need = KernelNeed { at_least, version, patch_written: parts.len() == 3 };
        self.sc.requires.push(Requirement::Kernel(need));
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

#[cfg(test)]
mod tests {
    use crate::scenario::{kernel_release_version, parse, KernelNeed, Requirement};

    const BASE: &str = "process A\nA: create s = private size 4096\n";

    fn needs(line: &str) -> Result<Vec<Requirement>, String> {
        parse("t.scn", &format!("{line}\n{BASE}")).map(|sc| sc.requires).map_err(|e| e.to_string())
    }

    fn kernel(at_least: bool, version: [u32; 3], patch_written: bool) -> Requirement {
        Requirement::Kernel(KernelNeed { at_least, version, patch_written })
    }

    #[test]
    fn needs_kernel_forms_combine_and_print_back() {
        assert_eq!(needs("needs kernel >= 4.17").unwrap(), [kernel(true, [4, 17, 0], false)]);
        assert_eq!(needs("needs kernel < 6.1.5").unwrap(), [kernel(false, [6, 1, 5], true)]);
        let text = "needs kernel >= 4.17, program \"ipcs\"\nneeds kernel < 7.0\n";
        let sc = parse("t.scn", &format!("{text}{BASE}")).unwrap();
        assert_eq!(sc.requires.len(), 3);
        assert_eq!(sc.requires[2], kernel(false, [7, 0, 0], false));
        let printed = sc.to_string();
        assert!(printed.contains("needs kernel >= 4.17, program \"ipcs\", kernel < 7.0\n"), "{printed}");
        assert_eq!(parse("t.scn", &printed).unwrap().requires, sc.requires);
    }

    #[test]
    fn needs_kernel_misuse_says_where_and_what() {
        let e = needs("needs kernel 4.17").unwrap_err();
        assert!(
            e.starts_with(
                "t.scn:1:14: missing `>=` or `<` after `needs kernel`: found `4.17` (expected `kernel >= X.Y`"
            ),
            "{e}"
        );
        let e = needs("needs kernel == 4.17").unwrap_err();
        assert!(e.starts_with("t.scn:1:14: `needs kernel ==` is not a need a version can state (expected"), "{e}");
        for bad in ["4", "4.17.1.2", "4.x", "v4.17", "4..17", "4.17-rc1", "99999999999.1"] {
            let e = needs(&format!("needs kernel >= {bad}")).unwrap_err();
            assert!(e.starts_with(&format!("t.scn:1:17: bad kernel version `{bad}` (expected MAJOR.MINOR")), "{e}");
        }
        let e = needs("needs kernel >=").unwrap_err();
        assert!(e.starts_with("t.scn:1:16: missing a kernel version such as 4.17 or 6.1.5: the line ends here"), "{e}");
        let e = needs("needs kernal >= 4.17").unwrap_err();
        assert!(e.contains("unknown need `kernal`") && e.contains("`kernel >= X.Y`"), "{e}");
    }

    #[test]
    fn a_kernel_need_holds_by_the_numeric_prefix() {
        let ge = KernelNeed { at_least: true, version: [4, 17, 0], patch_written: false };
        let lt = KernelNeed { at_least: false, version: [6, 12, 0], patch_written: false };
        let v = |r: &str| kernel_release_version(r).unwrap_or_else(|| panic!("{r}"));
        assert!(ge.holds(v("4.17.0-1-amd64")) && ge.holds(v("6.1.0-57-amd64")) && ge.holds(v("10.0")));
        assert!(!ge.holds(v("4.16.18")) && !ge.holds(v("3.99")));
        assert!(lt.holds(v("6.1.0-57-amd64")) && lt.holds(v("6.11.9")));
        assert!(!lt.holds(v("6.12.118+deb12-amd64")) && !lt.holds(v("6.18.44-fc-v1300")));
        assert_eq!(v("6.12.118+deb12-amd64"), [6, 12, 118]);
        assert_eq!(v("6.18"), [6, 18, 0]);
        assert_eq!(v("5.4.0+"), [5, 4, 0]);
        assert_eq!(v("6.1."), [6, 1, 0]);
        for bad in ["", "6", "6.", "linux-6.1", "x"] {
            assert_eq!(kernel_release_version(bad), None, "{bad}");
        }
    }
}
