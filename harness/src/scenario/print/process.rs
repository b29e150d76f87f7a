//! Canonical text of the process forms: `fork`, `exit`, `kill`, `crash`,
//! `run`, `spawn`, `signal`, `wait`, `exec`, `unshare ipc` and `setns`.

use crate::scenario::lexer::quote;
use crate::scenario::parse::signal_name;
use crate::scenario::Op;

use super::binding;

/// The operands of a process step after its keyword (`None`: another family's).
pub(super) fn operands(o: &Op) -> Option<String> {
    Some(match o {
        Op::Fork { child } => format!(" {child}"),
        Op::Exit { code: 0 } | Op::Kill | Op::Crash | Op::Exec => String::new(),
        Op::Exit { code } => format!(" {code}"),
        Op::Run { argv } => format!(" {}", quote(command(argv).as_bytes())),
        Op::Spawn { name, argv } => format!("{} {}", binding(name), quote(command(argv).as_bytes())),
        Op::Signal { target, signal } => format!(" {target} {}", signal_word(*signal)),
        Op::Wait { target } | Op::Setns { target } => format!(" {target}"),
        Op::Unshare => " ipc".into(),
        _ => return None,
    })
}

/// `TERM` for SIGTERM; a number for a signal without a name.
pub(super) fn signal_word(sig: i32) -> String {
    let name = signal_name(sig);
    match name.strip_prefix("SIG") {
        Some(short) => short.to_string(),
        None => sig.to_string(),
    }
}

/// A `run` argv as the command line the parser splits back into it.
///
/// The parser splits on whitespace outside single quotes and drops every
/// `'`, so no argument it makes contains a `'`: quoting an argument that is
/// empty or holds whitespace in `'...'` is always exact.
pub(super) fn command(argv: &[String]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|a| if a.is_empty() || a.chars().any(char::is_whitespace) { format!("'{a}'") } else { a.clone() })
        .collect();
    words.join(" ")
}
