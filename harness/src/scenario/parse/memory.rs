//! Parsing the memory forms: `write`, `read`, `peek`, `poke`, and the data
//! a `write` stores or a `read` expects (`"text"`, `hex "..."`, `pattern`,
//! `zero`).

use super::*;

impl Parser {
    /// A memory step, after its keyword `kw`.
    pub(super) fn memory_op(&mut self, l: &mut Line, kw: &str, proc_: &str) -> Result<Op, ParseError> {
        Ok(match kw {
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
            _ => unreachable!("Parser::op sends only memory keywords here"),
        })
    }

    /// Data: `"text"`, `hex "01 02"`, `pattern "ab" LEN` or `zero LEN`.
    pub(super) fn data(&self, l: &mut Line) -> Result<Data, ParseError> {
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
}

/// Bytes written as pairs of hex digits, spaces allowed.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok()).collect()
}

/// A length as a `usize` (saturating: no attachment is that long anyway).
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
