//! The scenario parser: text to a checked [`Scenario`], or the first error
//! with its `file:line:col`.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::sysv::{errno_from_name, Sysctl};

use super::ast::*;
use super::lexer::{tokenize, Spanned, Tok};
use super::rules::AttachmentChange;

mod control;
mod intent;
mod mapping;
mod numbers;
mod output;
mod process;
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
];

const OPS: &str = "key, create, open, attach, detach, mapping, write, read, peek, poke, stat, set, rm, lock, unlock, fork, exit, kill, crash, run, sysctl, segments, lookup, shmctl, rlimit, umask, meminfo, spawn, signal, wait, exec, unshare or setns";

/// Parses and checks a scenario.
///
/// # Errors
/// The first problem found, with its position. Nothing of a file that does
/// not parse is ever run.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ParseError> {
    let mut p = Parser {
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
        self.err(l, format!("unexpected input: {}", found(l)), Some(what))
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
            Err(self.err(l, format!("missing `{kw}`: {}", found(l)), Some(&format!("`{kw}`"))))
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
            None => Err(self.err_at(
                l.lineno,
                col,
                format!("unknown name `{name}`: not bound before this line"),
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

    fn line(&mut self, l: &mut Line, text: &str) -> Result<(), ParseError> {
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
            if let (Some(Tok::Word(w)), next) = (l.peek(), l.toks.get(1).map(|t| &t.tok)) {
                if next != Some(&Tok::Colon) && ["process", "needs", "file", "sysctl", "timeout"].contains(&w.as_str())
                {
                    if let Some((_, at)) = &self.pending_xfail {
                        return Err(self.err_at(
                            l.lineno,
                            1,
                            format!("the `xfail` on line {at} must come right before a step, not a declaration"),
                            Some("a step after `xfail \"REASON\"`"),
                        ));
                    }
                    let w = w.clone();
                    l.pos += 1;
                    self.declaration(l, &w)?;
                    return self.end(l);
                }
                if w == "xfail" && next != Some(&Tok::Colon) {
                    self.xfail_line(l)?;
                    return self.end(l);
                }
            }
        }
        let eventually = self.eventually_prefix(l, concurrent)?;
        let (proc_, col) = self.word(l, "a process name or a declaration")?;
        if !self.procs.contains_key(&proc_) {
            let msg = if matches!(self.names.get(&proc_), Some((Kind::Program, _))) {
                format!("`{proc_}` is a spawned program, not an actor: it takes no steps (signal or wait for it)")
            } else if self.names.contains_key(&proc_) {
                format!("`{proc_}` is not a process")
            } else {
                format!("unknown process `{proc_}`: declare it first with `process {proc_}`")
            };
            return Err(self.err_at(
                l.lineno,
                col,
                msg,
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
        {
            let st = &self.procs[&proc_];
            if let Some(dead) = st.dead {
                return Err(self.err_at(l.lineno, col, format!("process {proc_} is gone since line {dead}"), None));
            }
        }
        let op_col = l.col();
        let op = self.op(l, &proc_)?;
        let expect = if l.eat(&Tok::Arrow) { self.expectation(l, &op, &proc_)? } else { default_expect(&op) };
        self.end(l)?;
        self.check_fit(l.lineno, op_col, &op, &expect)?;
        if eventually.is_some() {
            self.check_repeatable(l.lineno, op_col, &op)?;
        }
        if concurrent {
            // The group: the last step without `&`, and the `&` steps after it.
            let start = self.sc.steps.iter().rposition(|s| !s.concurrent).unwrap_or(0);
            if let Some(same) = self.sc.steps[start..].iter().find(|s| s.process == proc_) {
                return Err(self.err_at(
                    l.lineno,
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
                return Err(self.err_at(l.lineno, op_col, format!("`{}` cannot run concurrently", op.keyword()), None));
            }
            if let Some(first) = self.sc.steps[start..].iter().find(|s| s.eventually.is_some()) {
                return Err(self.err_at(
                    l.lineno,
                    1,
                    format!("`&` cannot join the `eventually` step of line {}: it is repeated alone", first.line),
                    None,
                ));
            }
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

    fn end(&self, l: &Line) -> Result<(), ParseError> {
        match l.peek() {
            None => Ok(()),
            Some(_) => Err(self.err(
                l,
                format!("unexpected input at the end of the line: {}", found(l)),
                Some("the end of the line or a `# comment`"),
            )),
        }
    }

    fn declaration(&mut self, l: &mut Line, kw: &str) -> Result<(), ParseError> {
        match kw {
            "process" => loop {
                let (name, col) = self.word(l, "a process name")?;
                self.bind(l.lineno, col, &name, Kind::Process)?;
                let mut decl =
                    ProcessDecl { name: name.clone(), uid: None, gid: None, forked_from: None, line: l.lineno };
                loop {
                    if l.eat_word("uid") {
                        decl.uid = Some(self.small(l, "uid")?);
                        self.sc.needs.root = true;
                    } else if l.eat_word("gid") {
                        decl.gid = Some(self.small(l, "gid")?);
                        self.sc.needs.root = true;
                    } else {
                        break;
                    }
                }
                self.procs.insert(name, ProcState::default());
                self.sc.processes.push(decl);
                if !l.eat(&Tok::Comma) {
                    return Ok(());
                }
            },
            "needs" => loop {
                let (w, col) = self.word(l, "a need")?;
                match w.as_str() {
                    "root" => self.sc.needs.root = true,
                    "namespace" => self.sc.needs.namespace = true,
                    "program" | "command" => self.requirement(l, &w)?,
                    "hugepages" => self.sc.needs.hugepages = Some(self.need_hugepages(l)?),
                    _ => {
                        return Err(self.err_at(
                            l.lineno,
                            col,
                            format!("unknown need `{w}`"),
                            Some("`root`, `namespace`, `hugepages [2M|1G] [N]`, `program \"NAME\"` or `command \"CMD ARGS\"`"),
                        ))
                    }
                }
                if !l.eat(&Tok::Comma) && l.peek().is_none() {
                    return Ok(());
                }
            },
            "file" => {
                let col = l.col();
                let name = match l.peek() {
                    Some(Tok::Str(_)) => self.text(l, "a file name")?,
                    _ => self.word(l, "a file name")?.0,
                };
                if name.is_empty() || name.starts_with('/') || name.split('/').any(|c| c == "..") {
                    return Err(self.err_at(
                        l.lineno,
                        col,
                        format!("file `{name}` must stay inside the scenario directory"),
                        Some("a relative path without `..`"),
                    ));
                }
                let content = if matches!(l.peek(), Some(Tok::Str(_))) {
                    self.text(l, "the file's content")?
                } else {
                    String::new()
                };
                self.sc.files.push(FileDecl { name, content });
                Ok(())
            }
            "sysctl" => {
                let name = self.sysctl_name(l)?;
                if !l.eat(&Tok::Eq) {
                    return Err(self.err(l, format!("missing `=`: {}", found(l)), Some("`sysctl NAME = VALUE`")));
                }
                let value = self.number(l, "the sysctl's value")?;
                self.sc.needs.namespace = true;
                self.sc.sysctls.push((name, value, l.lineno));
                Ok(())
            }
            "timeout" => {
                let col = l.col();
                let (w, _) = self.word(l, "a duration")?;
                let d = parse_duration(&w).ok_or_else(|| {
                    self.err_at(l.lineno, col, format!("bad duration `{w}`"), Some("a duration such as 500ms or 5s"))
                })?;
                self.sc.timeout = Some(d);
                Ok(())
            }
            _ => unreachable!("checked by the caller"),
        }
    }

    fn sysctl_name(&self, l: &mut Line) -> Result<Sysctl, ParseError> {
        let col = l.col();
        let (w, _) = self.word(l, "a sysctl name")?;
        Sysctl::from_name(&w).ok_or_else(|| {
            self.err_at(
                l.lineno,
                col,
                format!("unknown sysctl `{w}`"),
                Some("shmmax, shmall, shmmni, shm_rmid_forced or shm_next_id"),
            )
        })
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

    fn op(&mut self, l: &mut Line, proc_: &str) -> Result<Op, ParseError> {
        let col = l.col();
        let (kw, _) = self.word(l, "an operation")?;
        let binding = |p: &mut Parser, l: &mut Line, kind: Kind| -> Result<Option<String>, ParseError> {
            match p.optional_binding(l) {
                Some((name, col)) => {
                    p.bind(l.lineno, col, &name, kind)?;
                    Ok(Some(name))
                }
                None => Ok(None),
            }
        };
        if let Some(op) = self.proc_op(l, &kw, proc_) {
            let op = op?;
            if !l.at_end_of_op() {
                return Err(self.unexpected(l, "`=> EXPECTATION` or the end of the line"));
            }
            return Ok(op);
        }
        let op = match kw.as_str() {
            "key" => {
                // `key ftok "missing" 1 => ENOENT` binds nothing; every other form binds a name.
                let name = if l.peek_word() == Some("ftok") {
                    None
                } else {
                    let name = self.new_name(l, Kind::Key)?;
                    if !l.eat(&Tok::Eq) {
                        return Err(self.err(
                            l,
                            format!("missing `=`: {}", found(l)),
                            Some("`key NAME = ftok \"path\" PROJ`, `key NAME = 0x1234` or `key NAME = private`"),
                        ));
                    }
                    Some(name)
                };
                if l.eat_word("ftok") {
                    let path = self.text(l, "ftok's path")?;
                    let pcol = l.col();
                    let proj = self.number(l, "ftok's project id")?;
                    let proj = u8::try_from(proj).map_err(|_| {
                        self.err_at(
                            l.lineno,
                            pcol,
                            format!("project id {proj} does not fit in 8 bits (ftok uses only the low 8)"),
                            Some("0 to 255"),
                        )
                    })?;
                    Op::Ftok { name, path, proj }
                } else {
                    let name = name.expect("only ftok binds nothing");
                    match self.key_ref(l)? {
                        KeyRef::Private => Op::KeyLiteral { name, value: 0 },
                        KeyRef::Literal(value) => Op::KeyLiteral { name, value },
                        KeyRef::Name(_) => {
                            return Err(self.err_at(
                                l.lineno,
                                col,
                                "a key is bound to ftok, a number or private, not to another key",
                                None,
                            ))
                        }
                    }
                }
            }
            "create" => {
                let name = binding(self, l, Kind::Segment)?;
                let key = self.key_ref(l)?;
                self.keyword(l, "size")?;
                let size = self.number(l, "the size")?;
                let (mut mode, mut excl, mut hugetlb, mut noreserve) = (0o600, false, false, false);
                let (mut huge_size, mut flags) = (None, None);
                while !l.at_end_of_op() {
                    if l.eat_word("mode") {
                        mode = self.raw_mode(l)?;
                    } else if l.eat_word("excl") {
                        excl = true;
                    } else if l.eat_word("hugetlb") {
                        hugetlb = true;
                        huge_size = self.huge_size(l);
                        if let (None, Some(Tok::Word(w))) = (huge_size, l.peek()) {
                            if w.starts_with(|c: char| c.is_ascii_digit()) {
                                return Err(self.err(
                                    l,
                                    format!("unknown huge page size `{w}`"),
                                    Some("`hugetlb 2M`, `hugetlb 1G`, or `hugetlb` alone for the default size (other encodings: `flags`)"),
                                ));
                            }
                        }
                    } else if l.eat_word("noreserve") {
                        noreserve = true;
                    } else if l.eat_word("flags") {
                        flags = Some(self.raw_flags(l, false)?);
                    } else {
                        return Err(self.unexpected(l, "`mode`, `excl`, `hugetlb`, `noreserve`, `flags` or `=>`"));
                    }
                }
                Op::Create { name, key, size, mode, excl, hugetlb, noreserve, huge_size, flags }
            }
            "open" => {
                let name = binding(self, l, Kind::Segment)?;
                let key = self.key_ref(l)?;
                let (mut size, mut mode, mut excl, mut flags) = (0, None, false, None);
                while !l.at_end_of_op() {
                    if l.eat_word("size") {
                        size = self.number(l, "the size")?;
                    } else if l.eat_word("mode") {
                        mode = Some(self.mode(l)?);
                    } else if l.eat_word("excl") {
                        excl = true;
                    } else if l.eat_word("flags") {
                        flags = Some(self.raw_flags(l, true)?);
                    } else {
                        return Err(self.unexpected(l, "`size`, `mode`, `excl`, `flags` or `=>`"));
                    }
                }
                Op::Open { name, key, size, mode, excl, flags }
            }
            "attach" => {
                let name = binding(self, l, Kind::Attachment)?;
                self.attach_op(l, proc_, name)?
            }
            "detach" => self.detach_op(l, proc_)?,
            "mapping" => self.mapping_op(l, proc_)?,
            "write" => {
                let attachment = self.attachment(l, proc_)?;
                let offset = self.number(l, "the offset")?;
                let data = self.data(l)?;
                Op::Write { attachment, offset, data }
            }
            "read" => {
                let attachment = self.attachment(l, proc_)?;
                let offset = self.number(l, "the offset")?;
                let len = self.number(l, "the length")?;
                Op::Read { attachment, offset, len }
            }
            "peek" => {
                let attachment = self.known_attachment(l, proc_)?;
                let offset = self.number(l, "the offset")?;
                Op::Peek { attachment, offset }
            }
            "poke" => {
                let attachment = self.known_attachment(l, proc_)?;
                let offset = self.number(l, "the offset")?;
                let value = self.small(l, "the byte")?;
                Op::Poke { attachment, offset, value }
            }
            "stat" => Op::Stat { segment: self.use_name(l, Kind::Segment)? },
            "set" => {
                let segment = self.use_name(l, Kind::Segment)?;
                let (mut mode, mut uid, mut gid) = (None, None, None);
                while !l.at_end_of_op() {
                    if l.eat_word("mode") {
                        mode = Some(self.raw_mode(l)?);
                    } else if l.eat_word("uid") {
                        uid = Some(self.small(l, "uid")?);
                    } else if l.eat_word("gid") {
                        gid = Some(self.small(l, "gid")?);
                    } else {
                        return Err(self.unexpected(l, "`mode`, `uid`, `gid` or `=>`"));
                    }
                }
                if mode.is_none() && uid.is_none() && gid.is_none() {
                    return Err(self.err(
                        l,
                        "set changes nothing",
                        Some("at least one of `mode 0644`, `uid N`, `gid N`"),
                    ));
                }
                Op::Set { segment, mode, uid, gid }
            }
            "rm" => Op::Remove { segment: self.use_name(l, Kind::Segment)? },
            "lock" => Op::Lock { segment: self.use_name(l, Kind::Segment)? },
            "unlock" => Op::Unlock { segment: self.use_name(l, Kind::Segment)? },
            "fork" => {
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
                        format!(
                            "process {child} is declared with uid/gid; a forked child has its parent's credentials"
                        ),
                        None,
                    ));
                }
                Op::Fork { child }
            }
            "exit" => Op::Exit { code: if l.at_end_of_op() { 0 } else { self.small(l, "the exit status")? } },
            "kill" => Op::Kill,
            "crash" => Op::Crash,
            "run" => {
                let scol = l.col();
                let cmd = self.text(l, "the command line")?;
                let argv = split_command(&cmd).map_err(|m| self.err_at(l.lineno, scol, m, None))?;
                self.check_substitutions(l.lineno, scol, &argv)?;
                Op::Run { argv }
            }
            "sysctl" => {
                let name = self.sysctl_name(l)?;
                let value = if l.eat(&Tok::Eq) { Some(self.signed_number(l, "the sysctl's value")?) } else { None };
                self.sc.needs.namespace = true;
                Op::Sysctl { name, value }
            }
            "segments" => Op::Segments,
            "lookup" => Op::Lookup { key: self.key_ref(l)? },
            "shmctl" => self.shmctl_op(l)?,
            "rlimit" => self.rlimit_op(l)?,
            "umask" => self.umask_op(l)?,
            "meminfo" => self.meminfo_op(l)?,
            other => {
                return Err(self.err_at(l.lineno, col, format!("unknown operation `{other}`"), Some(OPS)));
            }
        };
        if !l.at_end_of_op() {
            return Err(self.unexpected(l, "`=> EXPECTATION` or the end of the line"));
        }
        Ok(op)
    }

    fn data(&self, l: &mut Line) -> Result<Data, ParseError> {
        if matches!(l.peek(), Some(Tok::Str(_))) {
            return Ok(Data::Text(self.string(l, "text")?));
        }
        if l.eat_word("hex") {
            let col = l.col();
            let s = self.text(l, "hex bytes")?;
            return parse_hex(&s).map(Data::Hex).ok_or_else(|| {
                self.err_at(
                    l.lineno,
                    col,
                    format!("bad hex bytes {s:?}"),
                    Some("pairs of hex digits, spaces allowed: \"de ad be ef\""),
                )
            });
        }
        if l.eat_word("pattern") {
            let col = l.col();
            let p = self.string(l, "the pattern")?;
            if p.is_empty() {
                return Err(self.err_at(l.lineno, col, "empty pattern", Some("at least one byte")));
            }
            let len = self.number(l, "the pattern's length")?;
            return Ok(Data::Pattern(p, to_usize(len)));
        }
        if l.eat_word("zero") {
            let len = self.number(l, "the length")?;
            return Ok(Data::Zero(to_usize(len)));
        }
        Err(self.err(
            l,
            format!("missing data: {}", found(l)),
            Some("\"text\", hex \"01 02\", pattern \"ab\" LEN or zero LEN"),
        ))
    }

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
            Op::Run { .. } | Op::Wait { .. } => Expect::Output(self.output_checks(l)?),
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

    fn stat_fields(&mut self, l: &mut Line) -> Result<Vec<StatField>, ParseError> {
        let mut fields = Vec::new();
        while l.peek().is_some() {
            fields.push(self.stat_field(l)?);
            l.eat(&Tok::Comma);
        }
        if fields.is_empty() {
            return Err(self.err(l, "no stat fields", Some("fields such as `nattch 1, size 4096`")));
        }
        Ok(fields)
    }

    /// One stat field: its word, then its value.
    fn stat_field(&mut self, l: &mut Line) -> Result<StatField, ParseError> {
        let (w, col) = self.word(l, "a stat field")?;
        let yes_no = |p: &Parser, l: &mut Line| -> Result<bool, ParseError> {
            let (v, vcol) = p.word(l, "`yes` or `no`")?;
            match v.as_str() {
                "yes" => Ok(true),
                "no" => Ok(false),
                _ => Err(p.err_at(l.lineno, vcol, format!("bad flag value `{v}`"), Some("`yes` or `no`"))),
            }
        };
        if let Some(f) = NumField::from_name(&w) {
            return Ok(StatField::Num(f, self.num_exp(l, &format!("the {w}"))?));
        }
        Ok(match w.as_str() {
            "mode" => StatField::Mode(self.mode(l)?),
            "key" => StatField::Key(self.key_ref(l)?),
            "private" => StatField::Key(KeyRef::Private),
            "dest" => StatField::Dest(yes_no(self, l)?),
            "locked" => StatField::Locked(yes_no(self, l)?),
            "cpid" => StatField::Cpid(self.pid_field(l)?),
            "lpid" => {
                if l.eat_word("none") {
                    StatField::Lpid(None)
                } else {
                    StatField::Lpid(Some(self.pid_field(l)?))
                }
            }
            _ => {
                return Err(self.err_at(
                    l.lineno,
                    col,
                    format!("unknown stat field `{w}`"),
                    Some("size, nattch, mode, key, private, dest, locked, cpid, lpid, uid, gid, cuid, cgid, atime, dtime, ctime, index or seq"),
                ))
            }
        })
    }

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

fn default_expect(op: &Op) -> Expect {
    match op {
        Op::Exit { code } => Expect::Exited(*code),
        Op::Kill => Expect::Signal(libc::SIGKILL),
        Op::Crash => Expect::Signal(libc::SIGABRT),
        _ => Expect::Ok,
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Parses `4096`, `0x1000`, `64K`, `2M`, `1G`.
pub fn parse_number(w: &str) -> Option<u64> {
    let (digits, mult) = match w.as_bytes().last()? {
        b'K' | b'k' if !w.starts_with("0x") => (&w[..w.len() - 1], 1u64 << 10),
        b'M' if !w.starts_with("0x") => (&w[..w.len() - 1], 1 << 20),
        b'G' if !w.starts_with("0x") => (&w[..w.len() - 1], 1 << 30),
        _ => (w, 1),
    };
    let n = if let Some(hex) = digits.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()?
    };
    n.checked_mul(mult)
}

/// Parses a key: `0x14010203` (up to 32 bits), or a decimal `key_t`, possibly negative.
pub fn parse_key(w: &str) -> Option<i32> {
    if let Some(hex) = w.strip_prefix("0x") {
        return u32::from_str_radix(hex, 16).ok().map(|v| v as i32);
    }
    w.parse::<i32>().ok()
}

/// Parses `500ms` or `5s` (fractions allowed: `0.5s`).
pub fn parse_duration(w: &str) -> Option<Duration> {
    if let Some(ms) = w.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    w.strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok()).collect()
}

/// The signal number of `SIGSEGV` and friends.
pub fn parse_signal(name: &str) -> Option<i32> {
    name.parse::<nix::sys::signal::Signal>().ok().map(|s| s as i32)
}

/// The name of signal `sig`.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
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
