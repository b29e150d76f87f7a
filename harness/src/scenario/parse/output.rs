//! Parsing a `run` step's output checks (`=> status 0, stdout "...", ...`):
//! whole-output templates, `contains`, `matches "REGEX"`, `line N [column M]`,
//! for both standard output and standard error, with `${NAME}` substituted
//! and typed captures (`{s}`, `{key:k}`, `{n:n}`, `{pid:p}`) binding names.

use super::super::ast::{OutputCheck, Stream};
use super::super::lexer::Tok;
use super::{Kind, Line, ParseError, Parser};

const CHECKS: &str = "`status N`, `signal SIG`, `stdout \"template\"`, `stdout contains \"text\"`, `stdout matches \"regex\"`, `stdout line N [column M] \"template\"` (or the same with stderr)";

impl Parser {
    /// The alternatives of a `run` or `wait` step's output, joined by `|`
    /// as a step's outcomes are (`=> ok | EEXIST`), each a list of checks
    /// joined by `,` (which binds tighter): `=> status 0, stdout "x" |
    /// status 1`. A step with alternatives captures no name: which
    /// alternative holds would decide what is bound.
    pub(super) fn output_alternatives(&mut self, l: &mut Line) -> Result<Vec<Vec<OutputCheck>>, ParseError> {
        let (col, bound) = (l.col(), self.names.len());
        let mut alternatives = vec![self.output_checks(l)?];
        while l.eat(&Tok::Bar) {
            alternatives.push(self.output_checks(l)?);
        }
        if alternatives.len() > 1 && self.names.len() > bound {
            return Err(self.err_at(
                l.lineno,
                col,
                "output checks with alternatives (`|`) cannot capture names: which alternative holds would decide what is bound",
                Some("no `{NAME}` or named group in a step with `|`, or a step of its own for the capture"),
            ));
        }
        Ok(alternatives)
    }

    /// The checks of one alternative, comma-separated, up to a `|` or the
    /// end of the line.
    fn output_checks(&mut self, l: &mut Line) -> Result<Vec<OutputCheck>, ParseError> {
        let mut checks = Vec::new();
        while l.peek().is_some_and(|t| *t != Tok::Bar) {
            checks.push(self.output_check(l)?);
            l.eat(&Tok::Comma);
        }
        if checks.is_empty() {
            return Err(self.err(l, "no output checks", Some("`status 0` and/or stdout/stderr checks")));
        }
        Ok(checks)
    }

    /// One check: `status N`, `signal SIG`, or a check of `stdout` or `stderr`.
    fn output_check(&mut self, l: &mut Line) -> Result<OutputCheck, ParseError> {
        let (w, col) = self.word(l, "`status`, `signal`, `stdout` or `stderr`")?;
        let stream = match w.as_str() {
            "status" => return Ok(OutputCheck::Status(self.small(l, "the exit status")?)),
            "signal" => {
                let scol = l.col();
                let (sig, _) = self.word(l, "a signal")?;
                let n = super::signal_word(&sig).ok_or_else(|| {
                    self.unknown_in(
                        l.lineno,
                        scol,
                        format!("unknown signal `{sig}`"),
                        &sig,
                        "TERM, KILL, ... or a number",
                    )
                })?;
                return Ok(OutputCheck::Signal(n));
            }
            "stdout" => Stream::Stdout,
            "stderr" => Stream::Stderr,
            _ => {
                return Err(self.unknown_in(l.lineno, col, format!("unknown output check `{w}`"), &w, CHECKS));
            }
        };
        if l.eat_word("contains") {
            let text = self.expected_text(l, "the text")?;
            Ok(match stream {
                Stream::Stdout => OutputCheck::StdoutContains(text),
                Stream::Stderr => OutputCheck::StderrContains(text),
            })
        } else if l.eat_word("matches") {
            let rcol = l.col();
            let regex = self.expected_text(l, "the regular expression")?;
            for (name, kind) in regex_captures(&regex)
                .map_err(|m| self.err_at(l.lineno, rcol, m, Some("a regular expression of the `regex` crate")))?
            {
                self.bind(l.lineno, rcol, &name, kind)?;
            }
            Ok(OutputCheck::Matches(stream, regex))
        } else if l.eat_word("line") {
            self.line_check(l, stream)
        } else if matches!(l.peek(), Some(Tok::Str(_))) {
            let template = self.template(l)?;
            Ok(match stream {
                Stream::Stdout => OutputCheck::Stdout(template),
                Stream::Stderr => OutputCheck::Stderr(template),
            })
        } else {
            Err(self.unexpected(l, "\"template\", `contains`, `matches` or `line`"))
        }
    }

    /// `line N [column M] "template"` of `stream` (after `line`).
    fn line_check(&mut self, l: &mut Line, stream: Stream) -> Result<OutputCheck, ParseError> {
        let ncol = l.col();
        let (n, _) = self.word(l, "a line number")?;
        let line = n.parse::<i64>().ok().filter(|n| *n != 0).ok_or_else(|| {
            self.err_at(
                l.lineno,
                ncol,
                format!("bad line number `{n}`"),
                Some("a line number from 1, or from -1 (the last line) backwards"),
            )
        })?;
        let column = if l.eat_word("column") {
            let ccol = l.col();
            let c: u32 = self.small(l, "the column")?;
            if c == 0 {
                return Err(self.err_at(l.lineno, ccol, "columns count from 1", Some("a column from 1")));
            }
            Some(c)
        } else {
            None
        };
        let template = self.template(l)?;
        Ok(OutputCheck::Line { stream, line, column, template })
    }

    /// A template: `${NAME}` must name something bound before; `{...}` captures bind.
    fn template(&mut self, l: &mut Line) -> Result<String, ParseError> {
        let tcol = l.col();
        let template = self.expected_text(l, "the output template")?;
        for (name, kind) in template_captures(&template).map_err(|m| self.err_at(l.lineno, tcol, m, None))? {
            self.bind(l.lineno, tcol, &name, kind)?;
        }
        Ok(template)
    }

    /// A string of expected output whose `${NAME}` references are bound.
    fn expected_text(&mut self, l: &mut Line, what: &str) -> Result<String, ParseError> {
        let col = l.col();
        let text = self.text(l, what)?;
        for name in super::substitutions(&text) {
            if !self.names.contains_key(name) {
                return Err(self.unknown(
                    l.lineno,
                    col,
                    format!("unknown name `${{{name}}}` in the expected output"),
                    name,
                    self.bound(None),
                    Some("a key, segment, process or number bound on an earlier line (or by an earlier check of this step)"),
                ));
            }
        }
        Ok(text)
    }
}

/// The kind a capture's type prefix stands for.
fn capture_kind(prefix: Option<&str>) -> Result<Kind, String> {
    match prefix {
        None => Ok(Kind::Segment),
        Some("key") => Ok(Kind::Key),
        Some("n") => Ok(Kind::Number),
        Some("pid") => Ok(Kind::Process),
        Some(other) => {
            Err(format!("unknown capture type `{other}` (expected `key`, `n` or `pid`, or none for a shmid)"))
        }
    }
}

/// The `{name}`, `{key:name}`, `{n:name}` and `{pid:name}` captures of an
/// output template (`${name}` is a substitution, not a capture).
pub(crate) fn template_captures(t: &str) -> Result<Vec<(String, Kind)>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').ok_or("unclosed `{` in the output template")?;
        let inner = &rest[start + 1..start + end];
        let substitution = rest[..start].ends_with('$');
        rest = &rest[start + end + 1..];
        if substitution {
            continue;
        }
        let (prefix, name) = match inner.split_once(':') {
            Some((p, n)) => (Some(p), n),
            None => (None, inner),
        };
        out.push((name.to_string(), capture_kind(prefix)?));
    }
    Ok(out)
}

/// The named groups of a regex, with the kinds their names give
/// (`s`: a segment, `key.k`, `n.count`, `pid.p`); an invalid regex is an error.
pub(crate) fn regex_captures(re: &str) -> Result<Vec<(String, Kind)>, String> {
    // `${NAME}` is replaced (escaped) at run time; here it stands for nothing.
    let mut plain = re.to_string();
    for name in super::substitutions(re) {
        plain = plain.replace(&format!("${{{name}}}"), "");
    }
    let compiled =
        regex::Regex::new(&plain).map_err(|e| format!("bad regular expression: {}", one_line(&e.to_string())))?;
    let mut out = Vec::new();
    for name in compiled.capture_names().flatten() {
        let (prefix, n) = match name.split_once('.') {
            Some((p, n)) => (Some(p), n),
            None => (None, name),
        };
        out.push((n.to_string(), capture_kind(prefix)?));
    }
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
