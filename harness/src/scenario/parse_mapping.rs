//! Parsing of the attachment and mapping forms (issue 10, H1): `attach ...
//! at ADDR [rnd] [remap]`, `detach at ADDR`, `mapping M CHANGE`, addresses,
//! and the `=> at ADDR, mapped N, moved yes|no` expectation.
//!
//! Names of attachments stay *known* to a process after it detached or
//! unmapped them ("stale"): `at M` and `peek`/`poke` may still use their
//! old address; `read`, `write`, `detach M` and `mapping M` need one it holds.

use super::*;
use crate::sysv::Protection;

impl Parser {
    /// `M`, `M+N`, `M-N` (M an attachment this process knows, held or
    /// stale) or a literal `0x...` address.
    pub(super) fn addr(&self, l: &mut Line, proc_: &str) -> Result<Addr, ParseError> {
        let col = l.col();
        let (w, _) = self.word(l, "an address")?;
        let expected = "an attachment name, `M+N`, `M-N` or a literal such as 0x7f0000000000";
        if w.starts_with(|c: char| c.is_ascii_digit()) {
            return parse_number(&w)
                .map(Addr::Literal)
                .ok_or_else(|| self.err_at(l.lineno, col, format!("bad address `{w}`"), Some(expected)));
        }
        let (name, offset) = match w.find(['+', '-']) {
            None => (w.as_str(), 0i64),
            Some(i) => {
                let n = parse_number(&w[i + 1..]).and_then(|n| i64::try_from(n).ok()).ok_or_else(|| {
                    self.err_at(l.lineno, col, format!("bad offset in address `{w}`"), Some("`M+4096`, `M-4K`"))
                })?;
                (&w[..i], if w.as_bytes()[i] == b'-' { -n } else { n })
            }
        };
        match self.names.get(name) {
            Some((Kind::Attachment, _)) if self.procs[proc_].known.contains(name) => {
                Ok(Addr::Of { attachment: name.to_string(), offset })
            }
            Some((Kind::Attachment, at)) => Err(self.err_at(
                l.lineno,
                col,
                format!("attachment `{name}` (line {at}) was never attached in process {proc_}: its address there is unknown"),
                Some("an attachment this process made or inherited, held or detached"),
            )),
            Some((k, at)) => Err(self.err_at(
                l.lineno,
                col,
                format!("`{name}` is {} (line {at}), not an attachment", k.noun()),
                Some(expected),
            )),
            None => Err(self.err_at(
                l.lineno,
                col,
                format!("unknown name `{name}` in the address: not bound before this line"),
                Some(expected),
            )),
        }
    }

    /// An attachment this process knows, held or stale (for `peek`/`poke`).
    pub(super) fn known_attachment(&self, l: &mut Line, proc_: &str) -> Result<String, ParseError> {
        let col = l.col();
        let name = self.use_name(l, Kind::Attachment)?;
        if !self.procs[proc_].known.contains(&name) {
            let at = self.names[&name].1;
            return Err(self.err_at(
                l.lineno,
                col,
                format!("attachment `{name}` (line {at}) was never attached in process {proc_}"),
                Some("an attachment this process made or inherited by fork (detached ones too)"),
            ));
        }
        Ok(name)
    }

    /// After `attach [M =] S`: `[ro] [exec] [at ADDR] [rnd] [remap]`.
    pub(super) fn attach_op(&mut self, l: &mut Line, proc_: &str, name: Option<String>) -> Result<Op, ParseError> {
        let segment = self.use_name(l, Kind::Segment)?;
        let (mut read_only, mut exec, mut at, mut rnd, mut remap) = (false, false, None, false, false);
        while !l.at_end_of_op() {
            if l.eat_word("ro") {
                read_only = true;
            } else if l.eat_word("exec") {
                exec = true;
            } else if l.eat_word("rnd") {
                rnd = true;
            } else if l.eat_word("remap") {
                remap = true;
            } else if l.eat_word("at") {
                at = Some(self.addr(l, proc_)?);
            } else {
                return Err(self.unexpected(l, "`ro`, `exec`, `at ADDR`, `rnd`, `remap` or `=>`"));
            }
        }
        Ok(Op::Attach { name, segment, read_only, exec, at, rnd, remap })
    }

    /// After `detach`: `M` or `at ADDR`.
    pub(super) fn detach_op(&mut self, l: &mut Line, proc_: &str) -> Result<Op, ParseError> {
        if l.eat_word("at") {
            return Ok(Op::DetachAt { addr: self.addr(l, proc_)? });
        }
        Ok(Op::Detach { attachment: self.attachment(l, proc_)? })
    }

    fn range(&self, l: &mut Line) -> Result<Option<Range>, ParseError> {
        if l.at_end_of_op() {
            return Ok(None);
        }
        let off = self.number(l, "the range's offset")?;
        let len = self.number(l, "the range's length (`OFFSET LEN`)")?;
        Ok(Some((off, len)))
    }

    /// After `mapping`: `M unmap [OFF LEN]`, `M protect PROT [OFF LEN]`,
    /// `M resize N [move]`, `M pages OFF LEN PGOFF`.
    pub(super) fn mapping_op(&mut self, l: &mut Line, proc_: &str) -> Result<Op, ParseError> {
        let attachment = self.attachment(l, proc_)?;
        let (w, col) = self.word(l, "a mapping change")?;
        let change = match w.as_str() {
            "unmap" => MapChange::Unmap(self.range(l)?),
            "protect" => {
                let (p, pcol) = self.word(l, "a protection")?;
                let prot = Protection::from_word(&p).ok_or_else(|| {
                    self.err_at(l.lineno, pcol, format!("unknown protection `{p}`"), Some("none, r, rw, rx or rwx"))
                })?;
                MapChange::Protect(prot, self.range(l)?)
            }
            "resize" => {
                let len = self.number(l, "the new length")?;
                MapChange::Resize { len, may_move: l.eat_word("move") }
            }
            "pages" => {
                let offset = self.number(l, "the offset")?;
                let len = self.number(l, "the length")?;
                let pgoff = self.number(l, "the segment page to show (pgoff)")?;
                MapChange::Pages { offset, len, pgoff }
            }
            _ => {
                return Err(self.err_at(
                    l.lineno,
                    col,
                    format!("unknown mapping change `{w}`"),
                    Some("`unmap [OFF LEN]`, `protect PROT [OFF LEN]`, `resize N [move]` or `pages OFF LEN PGOFF`"),
                ))
            }
        };
        Ok(Op::Mapping { attachment, change })
    }

    /// `at ADDR, mapped N, moved yes|no` after an attach or a resize.
    pub(super) fn map_fields(&mut self, l: &mut Line, op: &Op, proc_: &str) -> Result<Vec<MapField>, ParseError> {
        let resize = matches!(op, Op::Mapping { change: MapChange::Resize { .. }, .. });
        let mut fields = Vec::new();
        while l.peek().is_some() {
            let (w, col) = self.word(l, "a mapping field")?;
            let field = match w.as_str() {
                "at" if !resize => MapField::At(self.addr(l, proc_)?),
                "mapped" => MapField::Mapped(self.number(l, "the mapping's length")?),
                "moved" if resize => {
                    let (v, vcol) = self.word(l, "`yes` or `no`")?;
                    match v.as_str() {
                        "yes" => MapField::Moved(true),
                        "no" => MapField::Moved(false),
                        _ => {
                            return Err(self.err_at(
                                l.lineno,
                                vcol,
                                format!("bad flag value `{v}`"),
                                Some("`yes` or `no`"),
                            ))
                        }
                    }
                }
                _ => {
                    return Err(self.err_at(
                        l.lineno,
                        col,
                        format!("unknown field `{w}` for `{}`", if resize { "mapping ... resize" } else { "attach" }),
                        Some(if resize { "`mapped N` or `moved yes|no`" } else { "`at ADDR` or `mapped N`" }),
                    ))
                }
            };
            fields.push(field);
            l.eat(&Tok::Comma);
        }
        if fields.is_empty() {
            return Err(self.err(l, "no mapping fields", Some("fields such as `at m1`, `mapped 8192`")));
        }
        Ok(fields)
    }
}
