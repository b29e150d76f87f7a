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
            None => Err(self.unknown(
                l.lineno,
                col,
                format!("unknown name `{name}` in the address: not bound before this line"),
                name,
                self.bound(Some(Kind::Attachment)),
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
        let segment = self.segment_ref(l)?;
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
                    self.unknown_in(l.lineno, pcol, format!("unknown protection `{p}`"), &p, "none, r, rw, rx or rwx")
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
                return Err(self.unknown_in(
                    l.lineno,
                    col,
                    format!("unknown mapping change `{w}`"),
                    &w,
                    "`unmap [OFF LEN]`, `protect PROT [OFF LEN]`, `resize N [move]` or `pages OFF LEN PGOFF`",
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
                    return Err(self.unknown_in(
                        l.lineno,
                        col,
                        format!("unknown field `{w}` for `{}`", if resize { "mapping ... resize" } else { "attach" }),
                        &w,
                        if resize { "`mapped N` or `moved yes|no`" } else { "`at ADDR` or `mapped N`" },
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

#[cfg(test)]
mod tests {
    use crate::scenario::{parse, Addr, Expect, MapChange, MapField, Op};

    const HEAD: &str = "process A, B\nA: create s = private size 8192\nA: attach m = s\n";

    /// The error for `HEAD` + `tail`, as `check` prints it.
    fn err(tail: &str) -> String {
        parse("t.scn", &format!("{HEAD}{tail}")).expect_err(tail).to_string()
    }

    fn ok(tail: &str) -> Vec<Op> {
        let sc = parse("t.scn", &format!("{HEAD}{tail}")).unwrap_or_else(|e| panic!("{e}"));
        sc.steps.into_iter().skip(2).map(|s| s.op).collect()
    }

    #[test]
    fn addresses_name_attachments_with_offsets_or_are_literals() {
        let ops =
            ok("A: attach n = s at m+4K rnd remap => at m, mapped 8192\nA: detach at m-16\nA: detach at 0x7f00\n");
        assert_eq!(
            ops[0],
            Op::Attach {
                name: Some("n".into()),
                segment: crate::scenario::CtlTarget::Segment("s".into()),
                read_only: false,
                exec: false,
                at: Some(Addr::Of { attachment: "m".into(), offset: 4096 }),
                rnd: true,
                remap: true
            }
        );
        assert_eq!(ops[1], Op::DetachAt { addr: Addr::Of { attachment: "m".into(), offset: -16 } });
        assert_eq!(ops[2], Op::DetachAt { addr: Addr::Literal(0x7f00) });
    }

    #[test]
    fn mapping_changes_parse() {
        let ops = ok("A: mapping m unmap 4096 4096\nA: mapping m protect rx\nA: mapping m resize 16K move => mapped 16384, moved yes\nA: mapping m pages 0 4096 1\nA: mapping m unmap\n");
        assert_eq!(ops[0], Op::Mapping { attachment: "m".into(), change: MapChange::Unmap(Some((4096, 4096))) });
        assert!(matches!(ops[2], Op::Mapping { change: MapChange::Resize { len: 16384, may_move: true }, .. }));
        let sc = parse("t.scn", &format!("{HEAD}A: mapping m resize 4096 => mapped 4096, moved no\n")).unwrap();
        assert_eq!(sc.steps[2].expect, Expect::Mapped(vec![MapField::Mapped(4096), MapField::Moved(false)]));
    }

    #[test]
    fn a_whole_unmap_or_detach_leaves_the_name_stale() {
        // Stale: peek, poke and addresses still work; read, write, detach, mapping do not.
        ok("A: mapping m unmap\nA: peek m 0 => SIGSEGV\n");
        ok("A: detach m\nA: attach n = s at m\nA: poke n 0 1\nA: detach at m => EINVAL\nA: detach n\n");
        assert!(err("A: detach m\nA: read m 0 1\n")
            .contains("t.scn:5:9: attachment `m` (line 3) is not attached in process A"));
        assert!(err("A: mapping m unmap\nA: mapping m unmap\n").contains("t.scn:5:12: attachment `m`"));
        assert!(err("A: detach m\nA: detach m\n").contains("t.scn:5:11: attachment `m`"));
        // A partial unmap keeps it held.
        ok("A: mapping m unmap 0 4096\nA: read m 4096 1 => refused\nA: detach m\n");
    }

    #[test]
    fn every_form_prints_back_to_itself() {
        let text = format!(
            "{HEAD}A: attach n = s ro exec at m+4096 rnd remap => at m-4096, mapped 8192\n\
             A: attach s at 0x7f0000001000 => EINVAL | EACCES\n\
             A: detach at n+0\nA: detach at 0x10 => EINVAL\n\
             A: mapping m unmap 0 0x1000\nA: mapping m protect none 4K 4K => ENOMEM\n\
             A: mapping m protect rwx\nA: mapping m resize 4096 => moved no\n\
             A: mapping m resize 1M move\nA: mapping m pages 0 4096 1 => EINVAL\n\
             A: peek n 0 => SIGSEGV\n"
        );
        round_trips(&text);
        for p in ["none", "r", "rw", "rx", "rwx"] {
            round_trips(&format!("{HEAD}A: mapping m protect {p}\n"));
        }
    }

    /// Parses, prints and parses back: the same scenario, and printing again
    /// gives the same text.
    fn round_trips(text: &str) {
        let first = parse("t.scn", text).unwrap_or_else(|e| panic!("{e}"));
        let printed = first.to_string();
        let second = parse("t.scn", &printed).unwrap_or_else(|e| panic!("{e}\n--- printed:\n{printed}"));
        assert!(crate::scenario::same_scenario(&first, &second), "{printed}");
        assert_eq!(second.to_string(), printed);
    }

    #[test]
    fn misuses_are_errors_with_positions() {
        let cases: &[(&str, &str)] = &[
            ("A: attach s at 0xzz\n", "t.scn:4:16: bad address `0xzz`"),
            ("A: attach s at m+zz\n", "t.scn:4:16: bad offset in address `m+zz`"),
            ("A: attach s at q\n", "t.scn:4:16: unknown name `q` in the address"),
            ("A: attach s at s\n", "t.scn:4:16: `s` is a segment (line 2), not an attachment"),
            ("B: attach s at m\n", "t.scn:4:16: attachment `m` (line 3) was never attached in process B"),
            ("B: peek m 0\n", "t.scn:4:9: attachment `m` (line 3) was never attached in process B"),
            ("A: attach s at\n", "t.scn:4:15: missing an address"),
            ("A: attach s remap at m ro wide\n", "t.scn:4:27: unexpected input: found `wide`"),
            ("A: detach at\n", "t.scn:4:13: missing an address"),
            ("A: mapping m fold\n", "t.scn:4:14: unknown mapping change `fold`"),
            ("A: mapping m protect wx\n", "t.scn:4:22: unknown protection `wx`"),
            ("A: mapping m unmap 4096\n", "t.scn:4:24: missing the range's length"),
            ("A: mapping m resize\n", "t.scn:4:20: missing the new length"),
            ("A: mapping m pages 0 4096\n", "t.scn:4:26: missing the segment page to show"),
            ("A: mapping s unmap\n", "t.scn:4:12: `s` is a segment (line 2), not an attachment"),
            ("A: mapping m unmap => mapped 4096\n", "t.scn:4:23: `mapping` has no value to expect"),
            ("A: mapping m resize 4096 => at m\n", "t.scn:4:29: unknown field `at` for `mapping ... resize`"),
            ("A: attach s => moved no\n", "t.scn:4:16: unknown field `moved` for `attach`"),
            ("A: mapping m resize 4096 => moved maybe\n", "t.scn:4:35: bad flag value `maybe`"),
            ("A: mapping m unmap => refused\n", "only memory accesses (write, read, peek, poke) can be `refused`"),
            ("A: attach n = s at m => EINVAL\n", "the step binds `n` but is not expected to succeed"),
            ("A: attach at = s\n", "t.scn:4:11: `at` is not a valid name"),
        ];
        for (tail, want) in cases {
            let got = err(tail);
            assert!(got.contains(want), "{tail:?}\n got: {got}\nwant: {want}");
        }
    }
}
