//! A `run` or `spawn` step's command line: split on spaces with single
//! quotes, as `run` does (no shell), and its `${NAME}` references, which
//! must name something bound and still alive.

use super::*;

/// Splits a command line on spaces, honouring single quotes (as `run` does).
///
/// # Errors
/// An unterminated quote or an empty command.
pub fn split_command(cmd: &str) -> Result<Vec<String>, String> {
    let mut argv = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut quoted = false;
    for c in cmd.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_arg = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_arg {
                    argv.push(std::mem::take(&mut cur));
                    in_arg = false;
                }
            }
            c => {
                cur.push(c);
                in_arg = true;
            }
        }
    }
    if quoted {
        return Err("unterminated `'` in the command".into());
    }
    if in_arg {
        argv.push(cur);
    }
    if argv.is_empty() {
        return Err("empty command".into());
    }
    Ok(argv)
}

/// The `${name}` references in a command argument.
pub fn substitutions(arg: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}') else { break };
        out.push(&rest[start + 2..start + end]);
        rest = &rest[start + end + 1..];
    }
    out
}

impl Parser {
    /// Every `${name}` of a command is bound (or `dir`, `here`).
    pub(super) fn check_substitutions(&self, lineno: usize, col: usize, argv: &[String]) -> Result<(), ParseError> {
        for arg in argv {
            for name in substitutions(arg) {
                if name != "dir" && name != "here" && !self.names.contains_key(name) {
                    return Err(self.unknown(
                        lineno,
                        col,
                        format!("unknown name `${{{name}}}` in the command"),
                        name,
                        [self.bound(None), vec!["dir", "here"]].concat(),
                        Some("a bound key, segment, process or program, ${dir} or ${here}"),
                    ));
                }
                // A pid that is no longer the scenario's may be recycled to
                // any process of the machine: a command must not be handed
                // it (`run "kill -9 ${D}"` after `wait D`), as `signal`
                // is refused it.
                let gone = match (self.programs.get(name), self.procs.get(name)) {
                    (Some(p), _) => p.gone.map(|(at, how)| format!("program {name} {how} at line {at}")),
                    (None, Some(p)) => p.dead.map(|at| format!("process {name} is gone since line {at}")),
                    (None, None) => None,
                };
                if let Some(gone) = gone {
                    return Err(self.err_at(
                        lineno,
                        col,
                        format!("`${{{name}}}` in the command: {gone}; its pid may be another process's now"),
                        Some("a process or program that still lives (use its pid before `wait`)"),
                    ));
                }
            }
        }
        Ok(())
    }
}
