//! Judging a program's output against a `run` step's checks: whole-output
//! templates, `contains`, regexes and `line N [column M]`, with `${NAME}`
//! substituted from the names bound so far (and by earlier checks of the
//! same step), and captures binding new names. Pure: unit-tested below.

use std::path::Path;

use crate::scenario::{substitutions, OutputCheck, Stream};

use crate::interp::{Global, Globals};

/// How a program ended and what it wrote (a `run` or `wait` answer).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ended<'a> {
    /// Its exit status, if it exited.
    pub status: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Its standard output (capped).
    pub stdout: &'a str,
    /// Its standard error (capped).
    pub stderr: &'a str,
}

impl<'a> Ended<'a> {
    /// The output `s` names.
    fn stream(&self, s: Stream) -> &'a str {
        match s {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        }
    }
}

/// The names `checks` bind if every one of them holds for this output, else `None`.
pub(crate) fn judge_output(checks: &[OutputCheck], out: Ended<'_>, globals: &Globals) -> Option<Vec<(String, Global)>> {
    let Ended { status, signal, stdout, stderr } = out;
    let mut binds: Vec<(String, Global)> = Vec::new();
    for c in checks {
        let lookup = |name: &str| -> Option<String> {
            binds
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, g)| *g)
                .or_else(|| globals.get(name).copied())
                .map(Global::substitute)
        };
        let caps = match c {
            OutputCheck::Status(s) => (status == Some(*s)).then(Vec::new),
            OutputCheck::Signal(s) => (signal == Some(*s)).then(Vec::new),
            OutputCheck::StdoutContains(t) => stdout.contains(&substitute(t, &lookup, false)).then(Vec::new),
            OutputCheck::StderrContains(t) => stderr.contains(&substitute(t, &lookup, false)).then(Vec::new),
            OutputCheck::Stdout(t) => match_template(&substitute(t, &lookup, false), stdout),
            OutputCheck::Stderr(t) => match_template(&substitute(t, &lookup, false), stderr),
            OutputCheck::Matches(stream, re) => match_regex(&substitute(re, &lookup, true), out.stream(*stream)),
            OutputCheck::Line { stream, line, column, template } => {
                pick_line(out.stream(*stream), *line, *column).and_then(|text| {
                    // A line or a column is matched whole, without its newline.
                    match_template(&substitute(template, &lookup, false), text.trim_end_matches('\n'))
                })
            }
        };
        binds.extend(caps?);
    }
    Some(binds)
}

/// The first of `alternatives` (each a list of checks) that holds for this
/// output: its place (0-based) and the names it binds.
pub(crate) fn holding_alternative(
    alternatives: &[Vec<OutputCheck>],
    out: Ended<'_>,
    globals: &Globals,
) -> Option<(usize, Vec<(String, Global)>)> {
    alternatives.iter().enumerate().find_map(|(i, checks)| judge_output(checks, out, globals).map(|b| (i, b)))
}

/// The first of `checks` that does not hold for this output (after the
/// captures of those before it), with the check as it was applied
/// (`${NAME}` substituted), if any.
pub(crate) fn first_failure(checks: &[OutputCheck], out: Ended<'_>, globals: &Globals) -> Option<(usize, String)> {
    let mut known = globals.clone();
    for (i, c) in checks.iter().enumerate() {
        match judge_output(std::slice::from_ref(c), out, &known) {
            Some(binds) => known.extend(binds),
            None => {
                let lookup = |name: &str| known.get(name).copied().map(Global::substitute);
                let shown = match c {
                    OutputCheck::Status(n) => format!("status {n}"),
                    OutputCheck::Signal(n) => format!("signal {}", crate::scenario::signal_name(*n)),
                    OutputCheck::Stdout(t) | OutputCheck::Stderr(t) => {
                        let stream = if matches!(c, OutputCheck::Stdout(_)) { Stream::Stdout } else { Stream::Stderr };
                        let t = substitute(t, &lookup, false);
                        let why =
                            template_failure(&t, out.stream(stream)).map(|w| format!(" ({w})")).unwrap_or_default();
                        format!("{} {t:?}{why}", stream.name())
                    }
                    OutputCheck::StdoutContains(t) => format!("stdout contains {:?}", substitute(t, &lookup, false)),
                    OutputCheck::StderrContains(t) => format!("stderr contains {:?}", substitute(t, &lookup, false)),
                    OutputCheck::Matches(s, re) => {
                        let re = substitute(re, &lookup, true);
                        let why = regex_failure(&re, out.stream(*s));
                        format!("{} matches {re:?} ({why})", s.name())
                    }
                    OutputCheck::Line { stream, line, column, template } => {
                        let col = column.map(|c| format!(" column {c}")).unwrap_or_default();
                        let template = substitute(template, &lookup, false);
                        let got = pick_line(out.stream(*stream), *line, *column).map_or_else(
                            || "nothing there".to_string(),
                            |t| {
                                let why = template_failure(&template, t.trim_end_matches('\n'));
                                format!("{t:?}{}", why.map(|w| format!("; {w}")).unwrap_or_default())
                            },
                        );
                        format!("{} line {line}{col} {template:?} (found {got})", stream.name())
                    }
                };
                return Some((i, shown));
            }
        }
    }
    None
}

/// `text` with every `${NAME}` replaced by the value `lookup` gives
/// (regex-escaped when `escape`); a name `lookup` does not know stays as
/// written. The one substitution rule: output checks and program arguments
/// ([`argument`]) both use it.
pub(crate) fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>, escape: bool) -> String {
    let mut out = text.to_string();
    for name in substitutions(text) {
        if let Some(v) = lookup(name) {
            let v = if escape { regex::escape(&v) } else { v };
            out = out.replace(&format!("${{{name}}}"), &v);
        }
    }
    out
}

/// A program's argument (`run`, `spawn`) with `${dir}` (the scenario's
/// directory), `${here}` (the folder of the scenario file) and `${NAME}` (a
/// name bound so far) replaced by their values ([`substitute`]).
pub(crate) fn argument(arg: &str, globals: &Globals, dir: &Path, here: &Path) -> String {
    let lookup = |name: &str| match name {
        "dir" => Some(dir.display().to_string()),
        "here" => Some(here.display().to_string()),
        _ => globals.get(name).copied().map(Global::substitute),
    };
    substitute(arg, &lookup, false)
}

/// Line `n` (1-based; negative from the end) of `text`, or its column `col`
/// (1-based, split at whitespace).
fn pick_line(text: &str, n: i64, col: Option<u32>) -> Option<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let index =
        if n > 0 { usize::try_from(n - 1).ok()? } else { lines.len().checked_sub(usize::try_from(-n).ok()?)? };
    let line = *lines.get(index)?;
    match col {
        None => Some(line),
        Some(c) => line.split_whitespace().nth(usize::try_from(c).ok()?.checked_sub(1)?),
    }
}

/// A captured word as the global of its kind (`key`, `n`, `pid` or none: a shmid).
/// Shmids and pids are written as plain digits (`-5` or `+5` is neither:
/// Rust's `parse` alone would take both); numbers may carry a `-`.
fn typed(prefix: Option<&str>, word: &str) -> Option<Global> {
    let digits = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
    match prefix {
        None => Some(word).filter(|w| digits(w)).and_then(|w| w.parse().ok()).map(Global::Segment),
        Some("key") => crate::scenario::parse_key(word).map(Global::Key),
        Some("n") => Some(word)
            .filter(|w| digits(w.strip_prefix('-').unwrap_or(w)))
            .and_then(|w| w.parse().ok())
            .map(Global::Number),
        Some("pid") => {
            Some(word).filter(|w| digits(w)).and_then(|w| w.parse().ok()).filter(|p: &i32| *p > 0).map(Global::Process)
        }
        Some(_) => None,
    }
}

/// Why `re` did not hold for `text`: no match, or which named group took
/// no part or caught a text that is not of its kind.
fn regex_failure(re: &str, text: &str) -> String {
    let Ok(compiled) = regex::Regex::new(re) else { return "not a valid regular expression".into() };
    let Some(caps) = compiled.captures(text) else { return "no match".into() };
    for name in compiled.capture_names().flatten() {
        let prefix = name.split_once('.').map(|(p, _)| p);
        match caps.name(name) {
            None => return format!("group `{name}` took no part in the match"),
            Some(m) if typed(prefix, m.as_str().trim()).is_none() => {
                return format!("group `{name}` caught {:?}: {}", m.as_str(), kind_rule(prefix))
            }
            Some(_) => {}
        }
    }
    "no match".into()
}

/// Matches `re` anywhere in `text`; its named groups bind (`s`, `key.k`, `n.c`, `pid.p`).
fn match_regex(re: &str, text: &str) -> Option<Vec<(String, Global)>> {
    let re = regex::Regex::new(re).ok()?;
    let caps = re.captures(text)?;
    let mut out = Vec::new();
    for name in re.capture_names().flatten() {
        let (prefix, bound) = match name.split_once('.') {
            Some((p, n)) => (Some(p), n),
            None => (None, name),
        };
        // A group that took no part in the match binds nothing: the check fails.
        let word = caps.name(name)?.as_str();
        out.push((bound.to_string(), typed(prefix, word.trim())?));
    }
    Some(out)
}

/// Matches `text` against a template where `{name}` (a segment id),
/// `{key:name}` (a key), `{n:name}` (a decimal number) and `{pid:name}` (a
/// pid) capture. A trailing newline of the output may be left out of the
/// template.
pub(crate) fn match_template(template: &str, text: &str) -> Option<Vec<(String, Global)>> {
    walk_template(template, text).ok()
}

/// Why a template did not match `text`, when a capture caught a word that
/// is not of its kind ([`kind_rule`]); `None` for any other mismatch.
fn template_failure(template: &str, text: &str) -> Option<String> {
    walk_template(template, text).err().flatten()
}

/// [`match_template`]'s walk: the captures, or why not (`Some`: a capture
/// caught a word not of its kind; `None`: the text differs).
fn walk_template(template: &str, text: &str) -> Result<Vec<(String, Global)>, Option<String>> {
    let text = if template.ends_with('\n') { text } else { text.strip_suffix('\n').unwrap_or(text) };
    let mut caps = Vec::new();
    let (mut t, mut s) = (template, text);
    loop {
        match t.find('{') {
            None => return if t == s { Ok(caps) } else { Err(None) },
            Some(open) => {
                let close = open + t[open..].find('}').ok_or(None)?;
                if s.get(..open).ok_or(None)? != &t[..open] {
                    return Err(None);
                }
                s = &s[open..];
                let inner = &t[open + 1..close];
                let (prefix, name) = match inner.split_once(':') {
                    Some((p, n)) => (Some(p), n),
                    None => (None, inner),
                };
                let len = match prefix {
                    Some("n") => {
                        let sign = usize::from(s.starts_with('-'));
                        sign + s[sign..].find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len() - sign)
                    }
                    Some("pid") => s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()),
                    _ => s.find(|c: char| !(c.is_ascii_hexdigit() || c == 'x' || c == '-')).unwrap_or(s.len()),
                };
                let word = &s[..len];
                let global = typed(prefix, word)
                    .ok_or_else(|| Some(format!("`{{{inner}}}` caught {word:?}: {}", kind_rule(prefix))))?;
                caps.push((name.to_string(), global));
                s = &s[len..];
                t = &t[close + 1..];
            }
        }
    }
}

/// What a capture of this kind takes (the rule [`typed`] applies), for
/// the report of a word it refused.
fn kind_rule(prefix: Option<&str>) -> &'static str {
    match prefix {
        None => "a captured shmid is plain digits",
        Some("key") => "a captured key is a number such as 0x1234 or 4660",
        Some("n") => "a captured number is decimal digits, with an optional `-`",
        Some("pid") => "a captured pid is plain digits, above 0",
        Some(_) => "a capture is `{NAME}`, `{key:NAME}`, `{n:NAME}` or `{pid:NAME}`",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals() -> Globals {
        let mut g = Globals::new();
        g.insert("k".into(), Global::Key(0x1234));
        g.insert("s".into(), Global::Segment(7));
        g
    }

    #[test]
    fn templates_capture_ids_keys_numbers_and_pids() {
        let caps = match_template("Shared memory id: {s}", "Shared memory id: 42\n").unwrap();
        assert_eq!(caps, vec![("s".to_string(), Global::Segment(42))]);
        let caps = match_template("key {key:k} id {s}\n", "key 0x0000abcd id 7\n").unwrap();
        assert_eq!(caps[0], ("k".to_string(), Global::Key(0xabcd)));
        assert!(match_template("id: {s}", "id: x").is_none());
        assert!(match_template("exact", "exact but more").is_none());
        let caps = match_template("{n:a} bytes, pid {pid:p}", "-12 bytes, pid 345").unwrap();
        assert_eq!(caps, vec![("a".into(), Global::Number(-12)), ("p".into(), Global::Process(345))]);
        assert!(match_template("pid {pid:p}", "pid -3").is_none(), "a pid is positive");
        // A shmid or pid is plain digits: `-5` and `+5` are not (both were
        // taken as a segment / pid before); a number may be negative only.
        assert!(match_template("id {s}", "id -5").is_none());
        assert!(match_template("id {s}", "id +5").is_none());
        assert!(match_template("pid {pid:p}", "pid +5").is_none());
        assert!(match_regex("id (?P<s>-?[0-9]+)", "id -5").is_none());
        assert!(match_template("{n:a}", "+5").is_none());
        // A failed regex says why: the wrong kind, a group not taken, no match.
        assert_eq!(
            regex_failure("(?P<pid.p>-1)", "-1"),
            "group `pid.p` caught \"-1\": a captured pid is plain digits, above 0"
        );
        assert_eq!(regex_failure("(?P<s>-1)", "-1"), "group `s` caught \"-1\": a captured shmid is plain digits");
        // A template says the same of the word its capture refused.
        assert_eq!(
            template_failure("id {s}", "id -1").unwrap(),
            "`{s}` caught \"-1\": a captured shmid is plain digits"
        );
        assert_eq!(
            template_failure("{pid:p}", "0").unwrap(),
            "`{pid:p}` caught \"0\": a captured pid is plain digits, above 0"
        );
        assert_eq!(template_failure("id {s}", "di 5"), None, "a text that differs is no capture's fault");
        assert_eq!(regex_failure("a|(?P<s>b)", "a"), "group `s` took no part in the match");
        assert_eq!(regex_failure("z", "a"), "no match");
        // The controls: plain digits are taken.
        assert_eq!(match_template("id {s}", "id 5").unwrap(), vec![("s".to_string(), Global::Segment(5))]);
        assert_eq!(match_regex("id (?P<s>-?[0-9]+)", "id 5").unwrap(), vec![("s".to_string(), Global::Segment(5))]);
    }

    #[test]
    fn substitutes_bound_names_in_every_form() {
        let g = globals();
        let out = "key        shmid\n0x00001234 7\n";
        assert!(judge_output(
            &[OutputCheck::StdoutContains("${k} ${s}".into())],
            Ended { stdout: out, stderr: "", ..Ended::default() },
            &g
        )
        .is_some());
        assert!(judge_output(
            &[OutputCheck::Line { stream: Stream::Stdout, line: -1, column: Some(2), template: "${s}".into() }],
            Ended { stdout: out, stderr: "", ..Ended::default() },
            &g
        )
        .is_some());
        // The control: another value is not accepted.
        let mut other = g.clone();
        other.insert("s".into(), Global::Segment(8));
        assert!(judge_output(
            &[OutputCheck::Line { stream: Stream::Stdout, line: 2, column: Some(2), template: "${s}".into() }],
            Ended { stdout: out, stderr: "", ..Ended::default() },
            &other
        )
        .is_none());
        assert!(
            judge_output(
                &[OutputCheck::Line { stream: Stream::Stdout, line: 3, column: None, template: "".into() }],
                Ended { stdout: out, stderr: "", ..Ended::default() },
                &g
            )
            .is_none(),
            "no line 3"
        );
        // A regex gets the value escaped, and binds typed groups.
        let binds = judge_output(
            &[OutputCheck::Matches(Stream::Stdout, "^${k} (?P<n.id>[0-9]+)$".into())],
            Ended { stdout: "0x00001234 7", stderr: "", ..Ended::default() },
            &g,
        )
        .unwrap();
        assert_eq!(binds, vec![("id".into(), Global::Number(7))]);
        assert!(judge_output(
            &[OutputCheck::Matches(Stream::Stderr, "x".into())],
            Ended { stdout: "x", stderr: "", ..Ended::default() },
            &g
        )
        .is_none());
    }

    #[test]
    fn arguments_get_dir_here_and_bound_names() {
        let (dir, here) = (Path::new("/tmp/run"), Path::new("/src/scenarios"));
        let arg = "${dir}/x ${here}/y ${s} ${k} ${unbound}";
        assert_eq!(argument(arg, &globals(), dir, here), "/tmp/run/x /src/scenarios/y 7 0x00001234 ${unbound}");
        // `dir` and `here` are the folders even where a global has the name.
        let mut g = globals();
        g.insert("dir".into(), Global::Segment(3));
        assert_eq!(argument("${dir}", &g, dir, here), "/tmp/run");
    }

    #[test]
    fn later_checks_see_earlier_captures() {
        let checks = [
            OutputCheck::Line { stream: Stream::Stdout, line: 1, column: None, template: "id {t}".into() },
            OutputCheck::StdoutContains("again ${t}".into()),
        ];
        assert!(judge_output(
            &checks,
            Ended { stdout: "id 9\nagain 9\n", stderr: "", ..Ended::default() },
            &Globals::new()
        )
        .is_some());
        assert!(judge_output(
            &checks,
            Ended { stdout: "id 9\nagain 8\n", stderr: "", ..Ended::default() },
            &Globals::new()
        )
        .is_none());
    }
}
