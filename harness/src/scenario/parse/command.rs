//! A `run` or `spawn` step's command line: split on spaces with single
//! quotes, as `run` does (no shell), and its `${NAME}` references, which
//! must name a value set from outside (`--set NAME=VALUE`, put in as the
//! command is read) or something bound and still alive.

use std::collections::BTreeMap;

use super::*;

/// Values given from outside the scenario (`run --set NAME=VALUE`), for
/// `${NAME}` in program commands.
pub type Values = BTreeMap<String, String>;

/// One `--set NAME=VALUE`: NAME a valid scenario name (not `dir` or
/// `here`), VALUE any text without `${` (it is put in as written).
///
/// # Errors
/// What is wrong with it, and the form expected.
pub fn setting(s: &str) -> Result<(String, String), String> {
    let Some((name, value)) = s.split_once('=') else {
        return Err(format!("`{s}` has no `=`: expected NAME=VALUE, e.g. --set build=target/release"));
    };
    if !is_name(name) || name == "dir" || name == "here" {
        return Err(format!(
            "`{name}` cannot be set: expected a name (a letter, then letters, digits or `_`; not a keyword, `dir` or `here`)"
        ));
    }
    if value.contains("${") {
        return Err(format!("the value of `{name}` holds `${{`: a value is put in as written, never substituted"));
    }
    Ok((name.to_string(), value.to_string()))
}

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
    /// Puts the values set from outside (`--set`) in a command, then checks
    /// that every `${name}` left is bound (or `dir`, `here`).
    pub(super) fn check_substitutions(&self, lineno: usize, col: usize, argv: &mut [String]) -> Result<(), ParseError> {
        for arg in argv.iter_mut() {
            for (name, value) in &self.values {
                *arg = arg.replace(&format!("${{{name}}}"), value);
            }
        }
        for arg in argv.iter() {
            for name in substitutions(arg) {
                if name != "dir" && name != "here" && !self.names.contains_key(name) {
                    let known: Vec<&str> = self.values.keys().map(String::as_str).collect();
                    return Err(self.unknown(
                        lineno,
                        col,
                        format!("unknown name `${{{name}}}` in the command: not bound before this line, nor set"),
                        name,
                        [self.bound(None), known, vec!["dir", "here"]].concat(),
                        Some(&format!(
                            "a bound key, segment, process or program, ${{dir}}, ${{here}}, or a value from the command line: `--set {name}=VALUE` on `run` or `check`"
                        )),
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
