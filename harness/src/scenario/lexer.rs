//! Splits one line of a scenario into tokens with their columns.

use super::number::CmpOp;

/// A token of a scenario line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A bare word: a name, keyword, number or errno.
    Word(String),
    /// A double-quoted string, escapes resolved to bytes.
    Str(Vec<u8>),
    /// `:`
    Colon,
    /// `=`
    Eq,
    /// `=>`
    Arrow,
    /// `,`
    Comma,
    /// `|`
    Bar,
    /// `&`
    Amp,
    /// A comparison: `==`, `!=`, `<`, `<=`, `>` or `>=`.
    Cmp(CmpOp),
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("string {:?}", String::from_utf8_lossy(s)),
            Tok::Colon => "`:`".into(),
            Tok::Eq => "`=`".into(),
            Tok::Arrow => "`=>`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Bar => "`|`".into(),
            Tok::Amp => "`&`".into(),
            Tok::Cmp(op) => format!("`{}`", op.symbol()),
        }
    }
}

/// A token and its 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    /// The token.
    pub tok: Tok,
    /// 1-based column of its first character.
    pub col: usize,
}

/// Tokenizes a line; `#` starts a comment outside strings.
///
/// # Errors
/// `(column, message)` for an unterminated string or a bad escape.
pub fn tokenize(line: &str) -> Result<Vec<Spanned>, (usize, String)> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        match c {
            ' ' | '\t' | '\r' => i += 1,
            '#' => break,
            ':' | ',' | '|' | '&' => {
                let tok = match c {
                    ':' => Tok::Colon,
                    ',' => Tok::Comma,
                    '|' => Tok::Bar,
                    _ => Tok::Amp,
                };
                out.push(Spanned { tok, col });
                i += 1;
            }
            '<' | '>' | '!' if chars.get(i + 1) == Some(&'=') => {
                let op = match c {
                    '<' => CmpOp::Le,
                    '>' => CmpOp::Ge,
                    _ => CmpOp::Ne,
                };
                out.push(Spanned { tok: Tok::Cmp(op), col });
                i += 2;
            }
            '<' | '>' => {
                out.push(Spanned { tok: Tok::Cmp(if c == '<' { CmpOp::Lt } else { CmpOp::Gt }), col });
                i += 1;
            }
            '=' if chars.get(i + 1) == Some(&'=') => {
                out.push(Spanned { tok: Tok::Cmp(CmpOp::Eq), col });
                i += 2;
            }
            '=' => {
                if chars.get(i + 1) == Some(&'>') {
                    out.push(Spanned { tok: Tok::Arrow, col });
                    i += 2;
                } else {
                    out.push(Spanned { tok: Tok::Eq, col });
                    i += 1;
                }
            }
            '"' => {
                let (bytes, next) = string(&chars, i)?;
                out.push(Spanned { tok: Tok::Str(bytes), col });
                i = next;
            }
            c if is_word_char(c) => {
                let start = i;
                // `!=` ends a word: `n!=1` is `n`, `!=`, `1`.
                while i < chars.len() && is_word_char(chars[i]) && !(chars[i] == '!' && chars.get(i + 1) == Some(&'='))
                {
                    i += 1;
                }
                out.push(Spanned { tok: Tok::Word(chars[start..i].iter().collect()), col });
            }
            other => return Err((col, format!("unexpected character {other:?}"))),
        }
    }
    Ok(out)
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '-' | '.' | '/' | '+' | '$' | '{' | '}' | '!' | '~' | '*' | '%' | '@')
}

fn string(chars: &[char], open: usize) -> Result<(Vec<u8>, usize), (usize, String)> {
    let mut bytes = Vec::new();
    let mut i = open + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err((open + 1, "unterminated string: add the closing `\"`".into()));
        };
        match c {
            '"' => return Ok((bytes, i + 1)),
            '\\' => {
                let esc_col = i + 1;
                let Some(&e) = chars.get(i + 1) else {
                    return Err((esc_col, "unterminated string: add the closing `\"`".into()));
                };
                i += 2;
                match e {
                    'n' => bytes.push(b'\n'),
                    't' => bytes.push(b'\t'),
                    'r' => bytes.push(b'\r'),
                    '0' => bytes.push(0),
                    '\\' => bytes.push(b'\\'),
                    '"' => bytes.push(b'"'),
                    'x' => {
                        let hex: String = chars.get(i..i + 2).map(|s| s.iter().collect()).unwrap_or_default();
                        let byte = u8::from_str_radix(&hex, 16)
                            .map_err(|_| (esc_col, format!("bad escape `\\x{hex}`: expected two hex digits")))?;
                        bytes.push(byte);
                        i += 2;
                    }
                    other => {
                        return Err((
                            esc_col,
                            format!("unknown escape `\\{other}` (known: \\n \\t \\r \\0 \\\\ \\\" \\xHH)"),
                        ))
                    }
                }
            }
            c => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 1;
            }
        }
    }
}

/// Renders bytes as a scenario string literal (the inverse of the lexer).
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    // Valid UTF-8 runs stay readable; everything else is escaped.
    let text = String::from_utf8_lossy(bytes);
    if text.as_bytes() == bytes {
        for c in text.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\0' => out.push_str("\\0"),
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                // Every byte of the character's UTF-8, so that it reads back
                // as the same bytes (U+0085 is two bytes, not `\x85`).
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
    } else {
        for &b in bytes {
            match b {
                b'\\' => out.push_str("\\\\"),
                b'"' => out.push_str("\\\""),
                0x20..=0x7e => out.push(b as char),
                b => out.push_str(&format!("\\x{b:02x}")),
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_columns() {
        let toks = tokenize("B: create k size 4096 excl => EEXIST  # comment").unwrap();
        let words: Vec<_> = toks.iter().map(|t| (t.tok.clone(), t.col)).collect();
        assert_eq!(words[0], (Tok::Word("B".into()), 1));
        assert_eq!(words[1], (Tok::Colon, 2));
        assert_eq!(words[7], (Tok::Arrow, 28));
        assert_eq!(words.len(), 9);
    }

    #[test]
    fn comparisons_and_the_arrow() {
        let toks: Vec<_> =
            tokenize("a => n >= 1, x<2 != 3 == 4 > 5 <= 6 !x n!=7 =").unwrap().into_iter().map(|t| t.tok).collect();
        let w = |s: &str| Tok::Word(s.into());
        assert_eq!(
            toks,
            vec![
                w("a"),
                Tok::Arrow,
                w("n"),
                Tok::Cmp(CmpOp::Ge),
                w("1"),
                Tok::Comma,
                w("x"),
                Tok::Cmp(CmpOp::Lt),
                w("2"),
                Tok::Cmp(CmpOp::Ne),
                w("3"),
                Tok::Cmp(CmpOp::Eq),
                w("4"),
                Tok::Cmp(CmpOp::Gt),
                w("5"),
                Tok::Cmp(CmpOp::Le),
                w("6"),
                w("!x"),
                w("n"),
                Tok::Cmp(CmpOp::Ne),
                w("7"),
                Tok::Eq,
            ]
        );
    }

    #[test]
    fn strings_and_escapes() {
        let toks = tokenize(r#"write m 0 "a\"b\n\x41#""#).unwrap();
        assert_eq!(toks[3].tok, Tok::Str(b"a\"b\nA#".to_vec()));
        assert!(tokenize(r#""open"#).unwrap_err().1.contains("unterminated"));
        assert!(tokenize(r#""\q""#).unwrap_err().1.contains("unknown escape"));
    }

    #[test]
    fn quote_round_trips() {
        for bytes in [
            b"hello".to_vec(),
            b"a\"b\\c\n".to_vec(),
            vec![0, 1, 0xff, b'x'],
            "é".as_bytes().to_vec(),
            "a\u{85}b\u{7f}".as_bytes().to_vec(),
        ] {
            let q = quote(&bytes);
            assert_eq!(tokenize(&q).unwrap()[0].tok, Tok::Str(bytes.clone()), "{q}");
        }
    }
}
