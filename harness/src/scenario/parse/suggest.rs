//! "Did you mean": the one rule that proposes, for a word the parser does
//! not know here (an operation, a process, a name, a keyword), the known
//! word it is most likely a typo of. Every "unknown ..." error goes through
//! [`Parser::unknown`].

use super::{Kind, ParseError, Parser};

impl Parser {
    /// The error for `word` at `lineno:col`, none of the words allowed
    /// there: `message`, then "did you mean `X`?" when one of `candidates`
    /// is close to `word`, then `expected` (the whole list of what is valid).
    pub(super) fn unknown<'a>(
        &self,
        lineno: usize,
        col: usize,
        message: String,
        word: &str,
        candidates: impl IntoIterator<Item = &'a str>,
        expected: Option<&str>,
    ) -> ParseError {
        let message = match closest(word, candidates) {
            Some(near) => format!("{message}: did you mean `{near}`?"),
            None => message,
        };
        self.err_at(lineno, col, message, expected)
    }

    /// [`Parser::unknown`] with the candidates read from the list `expected`.
    pub(super) fn unknown_in(
        &self,
        lineno: usize,
        col: usize,
        message: String,
        word: &str,
        expected: &str,
    ) -> ParseError {
        self.unknown(lineno, col, message, word, listed(expected), Some(expected))
    }

    /// The names bound so far, of `kind` (all of them for `None`).
    pub(super) fn bound(&self, kind: Option<Kind>) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .names
            .iter()
            .filter(|(_, (k, _))| kind.is_none_or(|want| *k == want))
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort_unstable();
        names
    }
}

/// The words of a list of what is expected, as the errors spell it: the
/// first word of each `` `quoted form` `` when there are any, else each
/// one-word item of `a, b or c` (`a number` and `...` are no word).
pub(super) fn listed(expected: &str) -> Vec<&str> {
    let pieces: Vec<&str> = if expected.contains('`') {
        expected.split('`').skip(1).step_by(2).filter_map(|form| form.split_whitespace().next()).collect()
    } else {
        expected.split(',').flat_map(|item| item.split(" or ")).map(str::trim).collect()
    };
    pieces.into_iter().filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).collect()
}

/// The candidate `word` is most likely a typo of: the nearest by edit
/// distance (letters inserted, deleted, changed or swapped; case ignored),
/// when it is near enough for the word's length (none for one letter,
/// 1 edit up to 4 letters, 2 up to 8, 3 beyond); the first one on a tie.
pub(super) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = match word.chars().count() {
        0 | 1 => 0,
        2..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let d = distance(word, c);
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance between `a` and `b`, case ignored.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::{closest, listed};
    use crate::scenario::parse;

    /// The error `check` prints for `text` after `process A, B`.
    fn err(text: &str) -> String {
        parse("t.scn", &format!("process A, B\n{text}")).unwrap_err().to_string()
    }

    /// Each kind of unknown word gets its suggestion when one is near, and
    /// keeps the whole list of what is valid; a word near nothing gets none.
    #[test]
    fn every_kind_of_unknown_word_says_what_was_meant() {
        let seg = "A: create s = private size 4096\n";
        for (text, said) in [
            // operation
            (
                "A: creat s = private size 4096\n",
                "2:4: unknown operation `creat`: did you mean `create`? (expected key, create,",
            ),
            // process, and a declaration's keyword in the place of a process
            (
                "proces C\n",
                "2:1: unknown process `proces`: declare it first with `process proces`: did you mean `process`?",
            ),
            // names: a segment, a number capture, a program, a `${NAME}`
            (
                &format!("{seg}A: stat sg\n"),
                "3:9: unknown name `sg`: not bound before this line: did you mean `s`? (expected a segment)",
            ),
            (&format!("{seg}A: stat s => nattch {{count}}\nA: stat s => nattch cuont\n"), "did you mean `count`?"),
            (
                "A: spawn prog = \"sleep 1\"\nB: signal porg TERM\n",
                "3:11: unknown name `porg`: not bound before this line: did you mean `prog`?",
            ),
            (
                &format!("{seg}A: run \"echo ${{ss}}\"\n"),
                "unknown name `${ss}` in the command: not bound before this line, nor set: did you mean `s`?",
            ),
            // keywords: an option, a missing keyword, an output check, a field, a signal
            ("A: create s = private size 4096 mdoe 0600\n", "unexpected input: found `mdoe`: did you mean `mode`?"),
            ("A: create s = private sze 4096\n", "missing `size`: found `sze`: did you mean `size`?"),
            ("A: run \"true\" => stauts 0\n", "unknown output check `stauts`: did you mean `status`?"),
            (
                &format!("{seg}A: stat s => natch 0\n"),
                "unknown stat field `natch`: did you mean `nattch`? (expected size, nattch,",
            ),
            ("A: shmctl - IPC_INOF\n", "unknown shmctl command `IPC_INOF`: did you mean `IPC_INFO`?"),
            ("A: spawn p = \"sleep 1\"\nA: signal p TREM\n", "unknown signal `TREM`: did you mean `TERM`?"),
        ] {
            let e = err(text);
            assert!(e.contains(said), "{text}: {e}");
        }
        let e = parse("t.scn", "process Alpha, Beta\nAlpha: create s = private size 4096\nAlhpa: rm s\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("3:1: unknown process `Alhpa`: declare it first with `process Alhpa`: did you mean `Alpha`?"),
            "{e}"
        );
        // Nothing near: the list alone.
        let e = err("A: frobnicate s\n");
        assert!(
            e.contains("unknown operation `frobnicate` (expected key, create,") && !e.contains("did you mean"),
            "{e}"
        );
    }

    #[test]
    fn near_words_only() {
        let ops = ["key", "create", "open", "crash", "run"];
        assert_eq!(closest("creat", ops), Some("create"));
        assert_eq!(closest("craete", ops), Some("create"));
        assert_eq!(closest("CREATE", ops), Some("create"));
        assert_eq!(closest("opne", ops), Some("open"));
        assert_eq!(closest("frobnicate", ops), None);
        assert_eq!(closest("x", ["y"]), None);
        assert_eq!(closest("rn", ops), Some("run"));
    }

    #[test]
    fn lists_as_the_errors_spell_them() {
        assert_eq!(listed("memlock, as or nofile"), ["memlock", "as", "nofile"]);
        assert_eq!(listed("TERM, KILL, ... or a number"), ["TERM", "KILL"]);
        assert_eq!(listed("`mode`, `excl`, `hugetlb [2M|1G]` or `=>`"), ["mode", "excl", "hugetlb"]);
    }
}
