//! The scenario parser: text to a checked [`Scenario`], or the first error
//! with its `file:line:col`.
//!
//! This module holds the parser's state and the words every form uses
//! (names, numbers, keys, strings); a line is read in `step` (declarations
//! in `declare`, `xfail`/`eventually`/`finally` in `intent`), and each
//! operation in the module of its family, the same families the actor and
//! the printer use: `segment`, `memory`, `mapping`, `control`, `process`.
//! Expectations are read with their operation's family, or in `numbers`
//! (number comparisons) and `output` (a program's output checks).

use std::collections::{BTreeSet, HashMap};

use crate::sysv::errno_from_name;

use super::ast::*;
use super::lexer::{tokenize, Spanned, Tok};
use super::rules::AttachmentChange;

mod command;
mod control;
mod declare;
mod intent;
mod literals;
mod mapping;
mod memory;
mod numbers;
mod output;
mod process;
mod repeat;
mod segment;
mod step;
mod suggest;
pub use command::{setting, split_command, substitutions, Values};
pub use literals::{parse_duration, parse_key, parse_number, parse_signal, signal_name};
pub(crate) use process::{deadly, signal_word};

/// A malformed scenario: where, what is wrong, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}{}", .expected.as_ref().map(|e| format!(" (expected {e})")).unwrap_or_default())]
pub struct ParseError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// What would have been right.
    pub expected: Option<String>,
}

/// Keywords that cannot be names.
const RESERVED: &[&str] = &[
    "process",
    "needs",
    "file",
    "sysctl",
    "timeout",
    "key",
    "create",
    "open",
    "attach",
    "detach",
    "write",
    "read",
    "peek",
    "poke",
    "stat",
    "set",
    "rm",
    "lock",
    "unlock",
    "fork",
    "exit",
    "kill",
    "crash",
    "run",
    "segments",
    "lookup",
    "private",
    "size",
    "mode",
    "excl",
    "hugetlb",
    "noreserve",
    "ro",
    "exec",
    "uid",
    "gid",
    "ok",
    "hex",
    "pattern",
    "zero",
    "ftok",
    "refused",
    "dir",
    "here",
    "eventually",
    "xfail",
    "program",
    "command",
    "matches",
    "line",
    "column",
    "mapping",
    "at",
    "rnd",
    "remap",
    "shmctl",
    "rlimit",
    "umask",
    "meminfo",
    "badbuf",
    "flags",
    "inf",
    "spawn",
    "signal",
    "wait",
    "unshare",
    "setns",
    "finally",
    "repeat",
    "until",
];

const OPS: &str = "key, create, open, attach, detach, mapping, write, read, peek, poke, stat, set, rm, lock, unlock, fork, exit, kill, crash, run, sysctl, segments, lookup, shmctl, rlimit, umask, meminfo, spawn, signal, wait, exec, unshare, setns or repeat";

/// Parses and checks a scenario.
///
/// # Errors
/// The first problem found, with its position. Nothing of a file that does
/// not parse is ever run.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ParseError> {
    parse_with(file, text, &Values::new())
}

/// [`parse`], with `values` for `${NAME}` in program commands (`run
/// --set NAME=VALUE`): each is put in the command as it is read, and a
/// name of the scenario's own cannot be one of them.
///
/// # Errors
/// As [`parse`].
pub fn parse_with(file: &str, text: &str, values: &Values) -> Result<Scenario, ParseError> {
    let mut p = Parser {
        values: values.clone(),
        file: file.to_string(),
        sc: Scenario {
            file: file.to_string(),
            processes: Vec::new(),
            needs: Needs::default(),
            files: Vec::new(),
            sysctls: Vec::new(),
            timeout: None,
            requires: Vec::new(),
            steps: Vec::new(),
            finally: None,
        },
        names: HashMap::new(),
        procs: HashMap::new(),
        pending_xfail: None,
        programs: HashMap::new(),
        finally_line: None,
    };
    for (n, raw) in text.lines().enumerate() {
        let lineno = n + 1;
        let toks = tokenize(raw).map_err(|(col, message)| p.err_at(lineno, col, message, None))?;
        if toks.is_empty() {
            continue;
        }
        let mut line = Line { toks: &toks, pos: 0, lineno, end_col: raw.trim_end().chars().count() + 1 };
        p.line(&mut line, raw.trim())?;
    }
    p.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Key,
    Segment,
    Attachment,
    Process,
    /// A number: captured by `{NAME}` in a number expectation, or by
    /// `{n:NAME}` in a program's output.
    Number,
    Program,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Key => "a key",
            Kind::Segment => "a segment",
            Kind::Attachment => "an attachment",
            Kind::Process => "a process",
            Kind::Number => "a number",
            Kind::Program => "a spawned program",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct ProcState {
    /// Line of its first step or of the fork that started it.
    started: Option<usize>,
    /// Line where it exited, was killed or died.
    dead: Option<usize>,
    /// Attachments it holds (by name).
    attachments: BTreeSet<String>,
    /// Attachments it ever held, detached ones too: their old addresses
    /// may still be named (`at M`, `peek`, `poke`).
    known: BTreeSet<String>,
}

struct Parser {
    file: String,
    /// Values set from outside (`--set`), for `${NAME}` in commands.
    values: Values,
    sc: Scenario,
    names: HashMap<String, (Kind, usize)>,
    procs: HashMap<String, ProcState>,
    /// `xfail "REASON"` read, waiting for its step (and its line).
    pending_xfail: Option<(String, usize)>,
    /// Programs bound by `spawn`.
    programs: HashMap<String, process::ProgramState>,
    /// The line of `finally:`, once seen.
    finally_line: Option<usize>,
}

struct Line<'a> {
    toks: &'a [Spanned],
    pos: usize,
    lineno: usize,
    end_col: usize,
}

impl Line<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn col(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end_col, |t| t.col)
    }

    fn at_end_of_op(&self) -> bool {
        matches!(self.peek(), None | Some(Tok::Arrow))
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Tok::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek_word() == Some(w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
}

fn found(line: &Line) -> String {
    match line.peek() {
        Some(t) => format!("found {}", t.describe()),
        None => "the line ends here".into(),
    }
}

impl Parser {
    fn err_at(&self, line: usize, col: usize, message: impl Into<String>, expected: Option<&str>) -> ParseError {
        ParseError { file: self.file.clone(), line, col, message: message.into(), expected: expected.map(String::from) }
    }

    fn err(&self, l: &Line, message: impl Into<String>, expected: Option<&str>) -> ParseError {
        self.err_at(l.lineno, l.col(), message, expected)
    }

    fn unexpected(&self, l: &Line, what: &str) -> ParseError {
        let word = l.peek_word().unwrap_or_default();
        self.unknown(
            l.lineno,
            l.col(),
            format!("unexpected input: {}", found(l)),
            word,
            suggest::listed(what),
            Some(what),
        )
    }

    fn word(&self, l: &mut Line, what: &str) -> Result<(String, usize), ParseError> {
        let col = l.col();
        match l.peek() {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                l.pos += 1;
                Ok((w, col))
            }
            _ => Err(self.err(l, format!("missing {what}: {}", found(l)), Some(what))),
        }
    }

    fn keyword(&self, l: &mut Line, kw: &str) -> Result<(), ParseError> {
        if l.eat_word(kw) {
            Ok(())
        } else {
            let word = l.peek_word().unwrap_or_default();
            Err(self.unknown(
                l.lineno,
                l.col(),
                format!("missing `{kw}`: {}", found(l)),
                word,
                [kw],
                Some(&format!("`{kw}`")),
            ))
        }
    }

    fn string(&self, l: &mut Line, what: &str) -> Result<Vec<u8>, ParseError> {
        match l.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                l.pos += 1;
                Ok(s)
            }
            _ => Err(self.err(l, format!("missing {what}: {}", found(l)), Some("a \"quoted string\""))),
        }
    }

    fn text(&self, l: &mut Line, what: &str) -> Result<String, ParseError> {
        let col = l.col();
        let bytes = self.string(l, what)?;
        String::from_utf8(bytes).map_err(|_| self.err_at(l.lineno, col, format!("{what} must be UTF-8 text"), None))
    }

    /// An unsigned number: decimal or `0x` hex, with an optional K/M/G suffix (powers of 1024).
    fn number(&self, l: &mut Line, what: &str) -> Result<u64, ParseError> {
        let col = l.col();
        let (w, _) = self.word(l, what)?;
        parse_number(&w).ok_or_else(|| {
            self.err_at(
                l.lineno,
                col,
                format!("bad number `{w}` for {what}"),
                Some("a number such as 4096, 0x1000, 64K or 2M"),
            )
        })
    }

    /// A number that may be negative (`-1`): a sysctl's value to write,
    /// which the kernel may refuse (`shm_next_id = -2 => EINVAL`).
    fn signed_number(&self, l: &mut Line, what: &str) -> Result<super::Number, ParseError> {
        let col = l.col();
        let (w, _) = self.word(l, what)?;
        super::number::parse_number_literal(&w).ok_or_else(|| {
            self.err_at(
                l.lineno,
                col,
                format!("bad number `{w}` for {what}"),
                Some("a number such as 4096, -1, 0x1000, 64K or 2M"),
            )
        })
    }

    fn small<T: TryFrom<u64>>(&self, l: &mut Line, what: &str) -> Result<T, ParseError> {
        let col = l.col();
        let n = self.number(l, what)?;
        T::try_from(n).map_err(|_| self.err_at(l.lineno, col, format!("{what} {n} is out of range"), None))
    }

    fn mode(&self, l: &mut Line) -> Result<u16, ParseError> {
        let col = l.col();
        let (w, _) = self.word(l, "a mode")?;
        u16::from_str_radix(w.strip_prefix("0o").unwrap_or(&w), 8).ok().filter(|m| *m <= 0o777).ok_or_else(|| {
            self.err_at(l.lineno, col, format!("bad mode `{w}`"), Some("octal permission bits such as 0600"))
        })
    }

    fn new_name(&mut self, l: &mut Line, kind: Kind) -> Result<String, ParseError> {
        let (name, col) = self.word(l, "a name")?;
        self.bind(l.lineno, col, &name, kind)?;
        Ok(name)
    }

    fn bind(&mut self, lineno: usize, col: usize, name: &str, kind: Kind) -> Result<(), ParseError> {
        if !is_name(name) {
            return Err(self.err_at(
                lineno,
                col,
                format!("`{name}` is not a valid name"),
                Some("a letter, then letters, digits or `_`, not a keyword"),
            ));
        }
        if self.values.contains_key(name) {
            return Err(self.err_at(
                lineno,
                col,
                format!("`{name}` is set on the command line (`--set {name}=...`): the scenario cannot bind it too"),
                Some("another name here, or another name for `--set`"),
            ));
        }
        if let Some((k, at)) = self.names.get(name) {
            return Err(self.err_at(
                lineno,
                col,
                format!("duplicate name `{name}`: already {} from line {at}", k.noun()),
                Some("a new name"),
            ));
        }
        self.names.insert(name.to_string(), (kind, lineno));
        Ok(())
    }

    fn use_name(&self, l: &mut Line, kind: Kind) -> Result<String, ParseError> {
        let col = l.col();
        let (name, _) = self.word(l, &format!("{} name", kind.noun()))?;
        match self.names.get(&name) {
            None => Err(self.unknown(
                l.lineno,
                col,
                format!("unknown name `{name}`: not bound before this line"),
                &name,
                self.bound(Some(kind)),
                Some(kind.noun()),
            )),
            Some((k, at)) if *k != kind => Err(self.err_at(
                l.lineno,
                col,
                format!("`{name}` is {} (line {at}), not {}", k.noun(), kind.noun()),
                None,
            )),
            Some(_) => Ok(name),
        }
    }

    fn key_ref(&self, l: &mut Line) -> Result<KeyRef, ParseError> {
        let col = l.col();
        let Some(w) = l.peek_word().map(String::from) else {
            return Err(self.err(l, format!("missing key: {}", found(l)), Some("a key name, `private` or a number")));
        };
        if w == "private" {
            l.pos += 1;
            return Ok(KeyRef::Private);
        }
        if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
            l.pos += 1;
            return parse_key(&w).map(KeyRef::Literal).ok_or_else(|| {
                self.err_at(l.lineno, col, format!("bad key `{w}`"), Some("a 32-bit key such as 0x14010203"))
            });
        }
        self.use_name(l, Kind::Key).map(KeyRef::Name)
    }

    fn attachment(&self, l: &mut Line, proc_: &str) -> Result<String, ParseError> {
        let col = l.col();
        let name = self.use_name(l, Kind::Attachment)?;
        if !self.procs[proc_].attachments.contains(&name) {
            let at = self.names[&name].1;
            return Err(self.err_at(
                l.lineno,
                col,
                format!("attachment `{name}` (line {at}) is not attached in process {proc_}"),
                Some("an attachment this process made or inherited by fork, not yet detached"),
            ));
        }
        Ok(name)
    }

    fn optional_binding(&mut self, l: &mut Line) -> Option<(String, usize)> {
        // `NAME =` ahead?
        if let (Some(Tok::Word(w)), Some(Tok::Eq)) = (l.peek(), l.toks.get(l.pos + 1).map(|t| &t.tok)) {
            let out = (w.clone(), l.col());
            l.pos += 2;
            Some(out)
        } else {
            None
        }
    }

    /// `NAME =` binding a new name of `kind` to what the step makes, if it is there.
    fn binding(&mut self, l: &mut Line, kind: Kind) -> Result<Option<String>, ParseError> {
        match self.optional_binding(l) {
            Some((name, col)) => {
                self.bind(l.lineno, col, &name, kind)?;
                Ok(Some(name))
            }
            None => Ok(None),
        }
    }

    /// An operation of process `proc_`, by family (each family's forms are
    /// in the module of its name); nothing but `=> ...` may follow it.
    fn op(&mut self, l: &mut Line, proc_: &str) -> Result<Op, ParseError> {
        let col = l.col();
        let (kw, _) = self.word(l, "an operation")?;
        let op = match kw.as_str() {
            "key" | "create" | "open" | "stat" | "set" | "rm" | "lock" | "unlock" | "segments" | "lookup" => {
                self.segment_op(l, &kw, col)?
            }
            "write" | "read" | "peek" | "poke" => self.memory_op(l, &kw, proc_)?,
            "attach" => {
                let name = self.binding(l, Kind::Attachment)?;
                self.attach_op(l, proc_, name)?
            }
            "detach" => self.detach_op(l, proc_)?,
            "mapping" => self.mapping_op(l, proc_)?,
            "repeat" => self.repeat_op(l, proc_)?,
            "shmctl" | "sysctl" | "rlimit" | "umask" | "meminfo" => self.control_op(l, &kw)?,
            "fork" | "exit" | "kill" | "crash" | "run" | "spawn" | "signal" | "wait" | "exec" | "unshare" | "setns" => {
                self.process_op(l, &kw, proc_)?
            }
            other => {
                return Err(self.unknown_in(l.lineno, col, format!("unknown operation `{other}`"), other, OPS));
            }
        };
        if !l.at_end_of_op() {
            return Err(self.unexpected(l, "`=> EXPECTATION` or the end of the line"));
        }
        // Sysctls, raw ids and indices ([`Op::implies_namespace`]).
        if op.implies_namespace() {
            self.sc.needs.namespace = true;
        }
        Ok(op)
    }

    fn finish(self) -> Result<Scenario, ParseError> {
        if self.sc.processes.is_empty() {
            return Err(self.err_at(1, 1, "no processes", Some("a `process A, B` declaration")));
        }
        // A dangling `xfail` is named even in a file with no steps at all.
        if let Some((_, at)) = &self.pending_xfail {
            return Err(self.err_at(*at, 1, "`xfail` marks the step after it, and there is none", Some("a step")));
        }
        if self.sc.steps.is_empty() {
            return Err(self.err_at(1, 1, "no steps", Some("steps such as `A: create s = private size 4096`")));
        }
        if let (Some(at), Some(line)) = (self.sc.finally, self.finally_line) {
            if at >= self.sc.steps.len() {
                return Err(self.err_at(line, 1, "`finally:` with no steps after it", Some("steps after `finally:`")));
            }
        }
        Ok(self.sc)
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name)
}
