//! The text transcript: one column per process, each step's call and
//! answer wrapped to its column, a failing step marked `X`, a step that
//! overlapped another of its `&` group marked `&` by its line.

use std::fmt::Write as _;

use super::ScenarioReport;

impl ScenarioReport {
    /// The transcript laid out as one column per process.
    pub fn transcript_columns(&self, width: usize) -> String {
        let mut out = String::new();
        let cols = &self.processes;
        let _ = write!(out, "  {:>5} ", "line");
        for p in cols {
            let _ = write!(out, "| {p:<width$} ");
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        let _ = write!(out, "  {:->5}-", "");
        for _ in cols {
            let _ = write!(out, "+-{:-<width$}-", "");
        }
        out.push('\n');
        for e in &self.transcript {
            let mark = if e.ok { ' ' } else { 'X' };
            // A step whose time overlapped another of its `&` group: `&7`.
            let line = if e.overlapped { format!("&{}", e.line) } else { e.line.to_string() };
            let lines: Vec<String> =
                wrap(&e.call, width).into_iter().chain(wrap(&format!("-> {}", e.answer), width)).collect();
            for (row, text) in lines.iter().enumerate() {
                if row == 0 {
                    let _ = write!(out, "{mark} {line:>5} ");
                } else {
                    let _ = write!(out, "  {:>5} ", "");
                }
                for p in cols {
                    let cell = if *p == e.process { text.as_str() } else { "" };
                    let _ = write!(out, "| {cell:<width$} ");
                }
                out.truncate(out.trim_end().len());
                out.push('\n');
            }
        }
        out
    }
}

/// Splits `s` into lines of at most `width` characters, breaking at spaces
/// (a token longer than a whole line is cut, the only case that splits a
/// token); continuation lines are indented by three spaces.
fn wrap(s: &str, width: usize) -> Vec<String> {
    const INDENT: &str = "   ";
    let width = width.max(INDENT.len() + 1);
    if s.chars().count() <= width {
        return vec![s.to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut len = 0; // characters in `line`
    for word in s.split(' ') {
        let room = |out: &Vec<String>| if out.is_empty() { width } else { width - INDENT.len() };
        let wlen = word.chars().count();
        if len > 0 && len + 1 + wlen > room(&out) {
            out.push(std::mem::take(&mut line));
            len = 0;
        }
        if len > 0 {
            line.push(' ');
            len += 1;
        }
        // A token longer than a line: cut it, filling lines whole.
        let mut rest: Vec<char> = word.chars().collect();
        while len + rest.len() > room(&out) {
            let take = room(&out) - len;
            line.extend(rest.drain(..take));
            out.push(std::mem::take(&mut line));
            len = 0;
        }
        len += rest.len();
        line.extend(rest);
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out.into_iter().enumerate().map(|(i, l)| if i == 0 { l } else { format!("{INDENT}{l}") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_and_cuts_only_overlong_tokens() {
        assert_eq!(wrap("short", 10), vec!["short"]);
        assert_eq!(
            wrap("-> 5 bytes, first difference at byte 4", 16),
            vec!["-> 5 bytes,", "   first", "   difference at", "   byte 4"]
        );
        // Every piece fits, and joining the pieces gives the text back.
        let text = "shmat(0, 0x7f0000000000, SHM_RDONLY|SHM_RND) -> 0x7f0000000000 (size 100, mapped 4096)";
        for width in [8, 13, 30] {
            let lines = wrap(text, width);
            assert!(lines.iter().all(|l| l.chars().count() <= width), "{width}: {lines:?}");
            let joined: Vec<&str> = lines.iter().map(|l| l.trim_start()).collect();
            assert_eq!(joined.join(" ").replace(' ', ""), text.replace(' ', ""), "{width}");
        }
        // A token longer than the line is the only thing cut.
        assert_eq!(wrap("ab 0123456789", 8), vec!["ab", "   01234", "   56789"]);
    }
}
