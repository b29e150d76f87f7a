//! Prints a [`Scenario`] back as canonical scenario text.
//!
//! The text parses back to the same scenario (up to file name and line
//! numbers, see [`same_scenario`]), and printing that again gives the same
//! text: the round trip the `parser` fuzz target checks.
//!
//! The canonical form: declarations first (`process` lines one per process in
//! declaration order, `needs` only where not implied by a `uid`/`gid` or a
//! sysctl, `file`, `sysctl`, `timeout`), a blank line, then every step on its
//! own line. Numbers are decimal, modes four octal digits, literal keys
//! `0x%08x`, and defaults (mode 0600, `open` size 0, `exit` 0, the death
//! expected of `exit`, `kill` and `crash`) are left out.
//!
//! An operation's operands are printed by its family, as the parser reads
//! them: `segment`, `memory`, `mapping`, `control`, `process`.

use std::fmt::{self, Display, Formatter, Write as _};
use std::time::Duration;

use super::ast::*;
use super::lexer::quote;
use super::parse::{parse_duration, signal_name};
use crate::sysv::errno_name;

mod control;
mod mapping;
mod memory;
mod process;
mod segment;
use memory::data;
use process::signal_word;

impl Display for Scenario {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for p in &self.processes {
            write!(f, "process {}", p.name)?;
            if let Some(uid) = p.uid {
                write!(f, " uid {uid}")?;
            }
            if let Some(gid) = p.gid {
                write!(f, " gid {gid}")?;
            }
            writeln!(f)?;
        }
        let root_implied = self.processes.iter().any(|p| p.uid.is_some() || p.gid.is_some());
        let namespace_implied = !self.sysctls.is_empty() || self.steps.iter().any(|s| s.op.implies_namespace());
        let mut needs: Vec<String> =
            [(self.needs.root && !root_implied, "root"), (self.needs.namespace && !namespace_implied, "namespace")]
                .into_iter()
                .filter_map(|(needed, what)| needed.then_some(what.to_string()))
                .collect();
        needs.extend(self.needs.hugepages.map(hugepages_need));
        needs.extend(self.requires.iter().map(|r| match r {
            Requirement::Program(p) => format!("program {}", quote(p.as_bytes())),
            Requirement::Command(c) => format!("command {}", quote(c.as_bytes())),
            Requirement::Kernel(k) => k.to_string(),
        }));
        if !needs.is_empty() {
            writeln!(f, "needs {}", needs.join(", "))?;
        }
        for file in &self.files {
            write!(f, "file {}", file_name(&file.name))?;
            if !file.content.is_empty() {
                write!(f, " {}", quote(file.content.as_bytes()))?;
            }
            writeln!(f)?;
        }
        for (name, value, _) in &self.sysctls {
            writeln!(f, "sysctl {} = {value}", name.name())?;
        }
        if let Some(t) = self.timeout {
            writeln!(f, "timeout {}", duration(t))?;
        }
        if !self.steps.is_empty() {
            writeln!(f)?;
        }
        for (i, s) in self.steps.iter().enumerate() {
            if self.finally == Some(i) {
                writeln!(f, "finally:")?;
            }
            writeln!(f, "{}", step(s))?;
        }
        Ok(())
    }
}

/// One step as a line (without the newline).
fn step(s: &Step) -> String {
    let mut out = String::new();
    if let Some(reason) = &s.xfail {
        let _ = writeln!(out, "xfail {}", quote(reason.as_bytes()));
    }
    if s.concurrent {
        out.push_str("& ");
    }
    if let Some(d) = s.eventually {
        let _ = write!(out, "eventually {}: ", duration(d));
    }
    let _ = write!(out, "{}: {}", s.process, op(&s.op));
    let implied = match &s.op {
        Op::Exit { code } => Expect::Exited(*code),
        Op::Kill => Expect::Signal(libc::SIGKILL),
        Op::Crash => Expect::Signal(libc::SIGABRT),
        _ => Expect::Ok,
    };
    // `Exited` is only ever the default of `exit CODE`; there is no way to write it.
    if s.expect != implied && !matches!(s.expect, Expect::Exited(_)) {
        match (&s.op, &s.expect) {
            (Op::Repeat { .. }, Expect::Number(n)) => write!(out, " => count {n}"),
            (_, e) => write!(out, " => {}", expect(e)),
        }
        .unwrap_or_default();
    }
    out
}

/// An operation: its keyword, then its operands as its family prints them.
fn op(o: &Op) -> String {
    if let Op::Repeat { max, op: inner, until } = o {
        return format!("repeat {max} {} until {}", op(inner), errno_name(*until));
    }
    let operands = segment::operands(o)
        .or_else(|| memory::operands(o))
        .or_else(|| mapping::operands(o))
        .or_else(|| control::operands(o))
        .or_else(|| process::operands(o))
        .expect("every operation belongs to a family");
    format!("{}{operands}", o.keyword())
}

/// ` NAME =` of a step that binds a name (nothing if it binds none).
fn binding(name: &Option<String>) -> String {
    name.as_ref().map(|n| format!(" {n} =")).unwrap_or_default()
}

/// Permission bits as four octal digits (`0600`).
fn mode(m: u16) -> String {
    format!("{m:04o}")
}

fn key(k: &KeyRef) -> String {
    match k {
        KeyRef::Name(n) => n.clone(),
        KeyRef::Private => "private".into(),
        // The bit pattern: `parse_key` reads `0x` keys as u32 and casts back.
        KeyRef::Literal(v) => format!("0x{:08x}", *v as u32),
    }
}

fn expect(e: &Expect) -> String {
    match e {
        Expect::Ok => "ok".into(),
        // `ok_too` without errnos parses as plain `ok`.
        Expect::Errno { errnos, ok_too } if errnos.is_empty() => if *ok_too { "ok" } else { "refused" }.into(),
        Expect::Errno { errnos, ok_too } => {
            let mut names: Vec<String> = errnos.iter().map(|e| errno_name(*e)).collect();
            if *ok_too {
                names.push("ok".into());
            }
            names.join(" | ")
        }
        Expect::Signal(sig) => signal_name(*sig),
        // Not writable: only the default of `exit CODE`, which `step` leaves out.
        Expect::Exited(code) => format!("exit {code}"),
        Expect::Data(d) => data(d),
        Expect::Byte(b) => b.to_string(),
        Expect::Stat(fields) => fields.iter().map(stat_field).collect::<Vec<_>>().join(", "),
        Expect::Output(checks) => checks.iter().map(output_check).collect::<Vec<_>>().join(", "),
        Expect::Outputs(alternatives) => alternatives
            .iter()
            .map(|checks| checks.iter().map(output_check).collect::<Vec<_>>().join(", "))
            .collect::<Vec<_>>()
            .join(" | "),
        Expect::Number(n) => n.to_string(),
        Expect::Present(true) => "present".into(),
        Expect::Present(false) => "absent".into(),
        Expect::Mapped(fields) => mapping::fields(fields),
        Expect::Ctl(fields) => fields
            .iter()
            .map(|f| match f {
                CtlField::Stat(s) => stat_field(s),
                CtlField::Id(s) => format!("id {s}"),
                CtlField::Info(i, e) => format!("{} {e}", i.name()),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// ` 2M` / ` 1G` after `hugetlb`.
fn huge(h: HugeSize) -> &'static str {
    match h {
        HugeSize::Mb2 => " 2M",
        HugeSize::Gb1 => " 1G",
    }
}

/// `hugepages [2M|1G] [N]` in `needs`.
fn hugepages_need(n: HugepagesNeed) -> String {
    let mut out = format!("hugepages{}", n.size.map_or("", huge));
    if n.pages != 1 {
        out.push_str(&format!(" {}", n.pages));
    }
    out
}

fn stat_field(field: &StatField) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    match field {
        StatField::Num(f, e) => format!("{} {e}", f.name()),
        StatField::Mode(m) => format!("mode {}", mode(*m)),
        StatField::Key(k) => format!("key {}", key(k)),
        StatField::Dest(b) => format!("dest {}", yes_no(*b)),
        StatField::Locked(b) => format!("locked {}", yes_no(*b)),
        StatField::Cpid(p) => format!("cpid {p}"),
        StatField::Lpid(Some(p)) => format!("lpid {p}"),
        StatField::Lpid(None) => "lpid none".into(),
    }
}

fn output_check(check: &OutputCheck) -> String {
    match check {
        OutputCheck::Status(n) => format!("status {n}"),
        OutputCheck::Signal(sig) => format!("signal {}", signal_word(*sig)),
        OutputCheck::Stdout(t) => format!("stdout {}", quote(t.as_bytes())),
        OutputCheck::StdoutContains(t) => format!("stdout contains {}", quote(t.as_bytes())),
        OutputCheck::StderrContains(t) => format!("stderr contains {}", quote(t.as_bytes())),
        OutputCheck::Stderr(t) => format!("stderr {}", quote(t.as_bytes())),
        OutputCheck::Matches(stream, re) => format!("{} matches {}", stream.name(), quote(re.as_bytes())),
        OutputCheck::Line { stream, line, column, template } => {
            let column = column.map(|c| format!(" column {c}")).unwrap_or_default();
            format!("{} line {line}{column} {}", stream.name(), quote(template.as_bytes()))
        }
    }
}

/// A `file` name: a bare word when the lexer reads it as one word, else a string.
fn file_name(name: &str) -> String {
    let word_char = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | '.' | '/' | '+' | '$' | '{' | '}' | '!' | '~' | '*' | '%' | '@')
    };
    if !name.is_empty() && name.chars().all(word_char) {
        name.to_string()
    } else {
        quote(name.as_bytes())
    }
}

/// A timeout as `parse_duration` reads it back: whole milliseconds as `Nms`,
/// anything finer as the seconds value that `Duration::from_secs_f64` maps to it.
fn duration(d: Duration) -> String {
    if d.subsec_nanos() % 1_000_000 == 0 {
        if let Ok(ms) = u64::try_from(d.as_millis()) {
            return format!("{ms}ms");
        }
    }
    // `timeout Xs` made it from some f64 near `as_secs_f64`; look a few
    // representable values either side (Display of f64 round-trips exactly).
    // (`as_secs_f64` is non-negative and finite, so stepping its bits steps the value.)
    let mid = d.as_secs_f64().to_bits();
    let candidates = (0..=64u64)
        .flat_map(|i| [mid.checked_add(i), mid.checked_sub(i)])
        .flatten()
        .map(f64::from_bits)
        .filter(|v| v.is_finite());
    for v in candidates {
        let text = format!("{v}s");
        if parse_duration(&text) == Some(d) {
            return text;
        }
    }
    // Not made by the parser; the nearest in nanoseconds.
    format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
}

/// Whether two scenarios are the same story: equal but for where they came
/// from (the file, line numbers and the source text of steps).
pub fn same_scenario(a: &Scenario, b: &Scenario) -> bool {
    let same_process = |x: &ProcessDecl, y: &ProcessDecl| {
        x.name == y.name && x.uid == y.uid && x.gid == y.gid && x.forked_from == y.forked_from
    };
    let sysctls = |s: &Scenario| -> Vec<(SysctlName, u64)> { s.sysctls.iter().map(|(n, v, _)| (*n, *v)).collect() };
    a.processes.len() == b.processes.len()
        && a.processes.iter().zip(&b.processes).all(|(x, y)| same_process(x, y))
        && a.needs == b.needs
        && a.files == b.files
        && sysctls(a) == sysctls(b)
        && a.timeout == b.timeout
        && a.requires == b.requires
        && a.finally == b.finally
        && a.steps.len() == b.steps.len()
        && a.steps.iter().zip(&b.steps).all(|(x, y)| {
            x.process == y.process
                && x.op == y.op
                && x.expect == y.expect
                && x.concurrent == y.concurrent
                && x.eventually == y.eventually
                && x.xfail == y.xfail
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse;

    #[test]
    fn durations_read_back() {
        for w in ["10s", "500ms", "0s", "0.5s", "1.5s", "0.0000000015s", "123.456789123s", "999999999.9s", "1e-7s"] {
            let d = parse_duration(w).unwrap();
            assert_eq!(parse_duration(&duration(d)), Some(d), "{w} -> {}", duration(d));
        }
        assert_eq!(duration(Duration::from_secs(2)), "2000ms");
    }

    #[test]
    fn commands_split_back() {
        let sc = parse("t", "process A\nA: run \"sh -c 'echo  a  b' '' x\\ty\"\n").unwrap();
        let Op::Run { argv } = &sc.steps[0].op else { panic!() };
        assert_eq!(argv, &["sh", "-c", "echo  a  b", "", "x", "y"]);
        assert_eq!(process::command(argv), "sh -c 'echo  a  b' '' x y");
    }

    /// `|` between alternatives, `,` between the checks of one: read into
    /// `Expect::Outputs`, printed back the same; one alternative stays
    /// `Expect::Output`; a capture in a step with alternatives is refused.
    #[test]
    fn output_alternatives_read_and_print_back() {
        use crate::scenario::{Expect, OutputCheck};
        let text = "process A\nA: run \"x\" => status 0, stdout \"a\\n\" | status 1, stderr contains \"b\"\n";
        let sc = parse("t", text).unwrap();
        assert_eq!(
            sc.steps[0].expect,
            Expect::Outputs(vec![
                vec![OutputCheck::Status(0), OutputCheck::Stdout("a\n".into())],
                vec![OutputCheck::Status(1), OutputCheck::StderrContains("b".into())]
            ])
        );
        let printed = sc.to_string();
        assert!(
            printed.ends_with("A: run \"x\" => status 0, stdout \"a\\n\" | status 1, stderr contains \"b\"\n"),
            "{printed}"
        );
        assert!(same_scenario(&sc, &parse("u", &printed).unwrap()));
        let one = parse("t", "process A\nA: run \"x\" => status 0, stdout \"a\"\n").unwrap();
        assert!(matches!(&one.steps[0].expect, Expect::Output(c) if c.len() == 2));
        let e =
            parse("t", "process A\nA: run \"x\" => status 0, stdout \"{n:n}\" | status 1\n").unwrap_err().to_string();
        assert!(e.starts_with("t:2:15: output checks with alternatives (`|`) cannot capture names"), "{e}");
        let e = parse("t", "process A\nA: run \"x\" => status 0 |\n").unwrap_err().to_string();
        assert!(e.contains("no output checks"), "{e}");
    }

    #[test]
    fn prints_canonical_text() {
        let text = "process A, B\nprocess U gid 5 uid 7\nneeds root, namespace\n\
                    file \"a b\" \"x\"\nfile d/e\n\
                    A: key k = 0x10\nA: create s = k size 4K mode 644 excl\nA: attach m = s ro\n\
                    A: kill => SIGKILL\n";
        let sc = parse("t", text).unwrap();
        let printed = sc.to_string();
        assert_eq!(
            printed,
            "process A\nprocess B\nprocess U uid 7 gid 5\nneeds namespace\nfile \"a b\" \"x\"\nfile d/e\n\n\
             A: key k = 0x00000010\nA: create s = k size 4096 mode 0644 excl\nA: attach m = s ro\nA: kill\n"
        );
        let again = parse("u", &printed).unwrap();
        assert!(same_scenario(&sc, &again));
    }
}
