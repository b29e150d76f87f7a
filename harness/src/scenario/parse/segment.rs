//! Parsing the segment forms: `key NAME = ftok|NUMBER|private`, `create`,
//! `open`, `stat`, `set`, `rm`, `lock`, `unlock`, `lookup` and `segments`;
//! and the `=> FIELD VALUE, ...` expectation of a `stat`.

use super::*;

impl Parser {
    /// A segment step, after its keyword `kw` (at column `col`).
    pub(super) fn segment_op(&mut self, l: &mut Line, kw: &str, col: usize) -> Result<Op, ParseError> {
        Ok(match kw {
            "key" => self.key_op(l, col)?,
            "create" => self.create_op(l)?,
            "open" => self.open_op(l)?,
            "stat" => Op::Stat { segment: self.segment_ref(l)? },
            "set" => self.set_op(l)?,
            "rm" => Op::Remove { segment: self.segment_ref(l)? },
            "lock" => Op::Lock { segment: self.use_name(l, Kind::Segment)? },
            "unlock" => Op::Unlock { segment: self.use_name(l, Kind::Segment)? },
            "segments" => Op::Segments,
            "lookup" => Op::Lookup { key: self.key_ref(l)? },
            _ => unreachable!("Parser::op sends only segment keywords here"),
        })
    }

    /// The segment of `attach`, `stat` and `rm`: a segment name, or `id N`
    /// (a raw id, any int; `id` is a name only when bound as one and not
    /// followed by a number).
    pub(super) fn segment_ref(&self, l: &mut Line) -> Result<CtlTarget, ParseError> {
        let next_is_number = l
            .toks
            .get(l.pos + 1)
            .is_some_and(|t| matches!(&t.tok, Tok::Word(w) if w.starts_with(|c: char| c.is_ascii_digit() || c == '-')));
        if l.peek_word() != Some("id") || (self.names.contains_key("id") && !next_is_number) {
            return Ok(CtlTarget::Segment(self.use_name(l, Kind::Segment)?));
        }
        l.pos += 1;
        let col = l.col();
        let (w, _) = self.word(l, "a raw id after `id`")?;
        crate::scenario::parse_number_literal(&w).and_then(|n| i32::try_from(n).ok()).map(CtlTarget::Number).ok_or_else(
            || {
                self.err_at(
                    l.lineno,
                    col,
                    format!("bad raw id `{w}`"),
                    Some("an int from -2147483648 to 2147483647, such as -1 or 4242"),
                )
            },
        )
    }

    /// `key NAME = ftok "PATH" PROJ`, `key NAME = NUMBER|private`, or
    /// `key ftok "PATH" PROJ` (which binds nothing); `col` is the keyword's.
    fn key_op(&mut self, l: &mut Line, col: usize) -> Result<Op, ParseError> {
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
            return Ok(Op::Ftok { name, path, proj });
        }
        let name = name.expect("only ftok binds nothing");
        match self.key_ref(l)? {
            KeyRef::Private => Ok(Op::KeyLiteral { name, value: 0 }),
            KeyRef::Literal(value) => Ok(Op::KeyLiteral { name, value }),
            KeyRef::Name(_) => {
                Err(self.err_at(l.lineno, col, "a key is bound to ftok, a number or private, not to another key", None))
            }
        }
    }

    /// `create [S =] KEY size N [mode M] [excl] [hugetlb [2M|1G]] [noreserve] [flags F]`.
    fn create_op(&mut self, l: &mut Line) -> Result<Op, ParseError> {
        let name = self.binding(l, Kind::Segment)?;
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
        Ok(Op::Create { name, key, size, mode, excl, hugetlb, noreserve, huge_size, flags })
    }

    /// `open [S =] KEY [size N] [mode M] [excl] [flags F]`.
    fn open_op(&mut self, l: &mut Line) -> Result<Op, ParseError> {
        let name = self.binding(l, Kind::Segment)?;
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
        Ok(Op::Open { name, key, size, mode, excl, flags })
    }

    /// `set S [mode M] [uid N] [gid N] [FIELD N ...]`, at least one of
    /// them; FIELD is a field of the buffer that IPC_SET ignores.
    fn set_op(&mut self, l: &mut Line) -> Result<Op, ParseError> {
        const FIELDS: &str =
            "`mode`, `uid`, `gid`, a field IPC_SET ignores (size, key, cuid, cgid, seq, nattch, cpid, lpid, atime, dtime, ctime) or `=>`";
        let segment = self.use_name(l, Kind::Segment)?;
        let (mut mode, mut uid, mut gid, mut ignored) = (None, None, None, Vec::new());
        while !l.at_end_of_op() {
            if l.eat_word("mode") {
                mode = Some(self.raw_mode(l)?);
            } else if l.eat_word("uid") {
                uid = Some(self.small(l, "uid")?);
            } else if l.eat_word("gid") {
                gid = Some(self.small(l, "gid")?);
            } else if let Some(f) = l.peek_word().and_then(crate::sysv::IgnoredField::from_name) {
                let col = l.col();
                l.pos += 1;
                if ignored.iter().any(|(g, _)| *g == f) {
                    return Err(self.err_at(
                        l.lineno,
                        col,
                        format!("`{}` is given twice", f.name()),
                        Some("each field once"),
                    ));
                }
                let v = self.small(l, &format!("the buffer's {} (0 to 4294967295)", f.name()))?;
                ignored.push((f, v));
            } else {
                return Err(self.unexpected(l, FIELDS));
            }
        }
        if mode.is_none() && uid.is_none() && gid.is_none() && ignored.is_empty() {
            return Err(self.err(l, "set changes nothing", Some("at least one of `mode 0644`, `uid N`, `gid N`")));
        }
        Ok(Op::Set { segment, mode, uid, gid, ignored })
    }

    /// The fields of a `stat` expectation, comma-separated.
    pub(super) fn stat_fields(&mut self, l: &mut Line) -> Result<Vec<StatField>, ParseError> {
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
    pub(super) fn stat_field(&mut self, l: &mut Line) -> Result<StatField, ParseError> {
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
                return Err(self.unknown_in(
                    l.lineno,
                    col,
                    format!("unknown stat field `{w}`"),
                    &w,
                    "size, nattch, mode, key, private, dest, locked, cpid, lpid, uid, gid, cuid, cgid, atime, dtime, ctime, index or seq",
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::{parse, same_scenario, CtlTarget, Op};

    const BASE: &str = "process A\nA: create s = private size 4096\n";

    fn parsed(line: &str) -> Result<crate::scenario::Scenario, String> {
        parse("t.scn", &format!("{BASE}{line}\n")).map_err(|e| e.to_string())
    }

    #[test]
    fn raw_ids_for_attach_stat_and_rm() {
        let op = |line: &str| parsed(line).unwrap_or_else(|e| panic!("{line}: {e}")).steps.last().unwrap().op.clone();
        assert_eq!(op("A: stat id 4242 => EINVAL"), Op::Stat { segment: CtlTarget::Number(4242) });
        assert_eq!(op("A: rm id -1 => EINVAL"), Op::Remove { segment: CtlTarget::Number(-1) });
        assert!(matches!(
            op("A: attach id -1 => EINVAL"),
            Op::Attach { segment: CtlTarget::Number(-1), name: None, .. }
        ));
        assert!(matches!(
            op("A: attach m = id 0x8000 ro"),
            Op::Attach { segment: CtlTarget::Number(0x8000), read_only: true, .. }
        ));
        assert_eq!(op("A: stat s"), Op::Stat { segment: CtlTarget::Segment("s".into()) });
        // A raw id implies a private namespace; a name does not.
        assert!(parsed("A: stat id 0 => EINVAL").unwrap().needs.namespace);
        assert!(parsed("A: attach id -1 => EINVAL").unwrap().needs.namespace);
        assert!(!parsed("A: stat s").unwrap().needs.namespace);
        // The printer writes `id N` back.
        let sc = parsed("A: attach m = id 0 ro\nA: stat id 0 => nattch 1\nA: detach m\nA: rm id 0").unwrap();
        let text = sc.to_string();
        assert!(text.contains("A: attach m = id 0 ro\n") && text.contains("A: rm id 0\n"), "{text}");
        assert!(same_scenario(&parse("t.scn", &text).unwrap(), &sc), "{text}");
        // A segment named `id` is still a name, unless a number follows.
        let named = "process A\nA: create id = private size 1\nA: stat id\nA: rm id 3 => EINVAL\nA: rm id\n";
        let sc = parse("t.scn", named).unwrap();
        assert_eq!(sc.steps[1].op, Op::Stat { segment: CtlTarget::Segment("id".into()) });
        assert_eq!(sc.steps[2].op, Op::Remove { segment: CtlTarget::Number(3) });
    }

    #[test]
    fn set_writes_fields_ipc_set_ignores() {
        use crate::sysv::IgnoredField as F;
        let sc = parsed("A: set s size 1 mode 0640 key 7 nattch 9").unwrap();
        let op = &sc.steps.last().unwrap().op;
        let Op::Set { mode, ignored, .. } = op else { panic!("{op:?}") };
        assert_eq!((*mode, ignored.as_slice()), (Some(0o640), &[(F::Size, 1), (F::Key, 7), (F::Nattch, 9)][..]));
        let text = sc.to_string();
        assert!(text.contains("A: set s mode 0640 size 1 key 7 nattch 9\n"), "{text}");
        assert!(same_scenario(&parse("t.scn", &text).unwrap(), &sc), "{text}");
        // Only ignored fields is still a call (the ctime changes).
        assert!(parsed("A: set s ctime 5").is_ok());
        let e = parsed("A: set s size 1 size 2").unwrap_err();
        assert!(e.starts_with("t.scn:3:17: `size` is given twice"), "{e}");
        let e = parsed("A: set s nattch -1").unwrap_err();
        assert!(e.starts_with("t.scn:3:17: bad number `-1`"), "{e}");
        let e = parsed("A: set s index 1").unwrap_err();
        assert!(e.contains("(expected `mode`, `uid`, `gid`, a field IPC_SET ignores (size, key"), "{e}");
        assert!(parsed("A: set s").unwrap_err().contains("set changes nothing"));
    }

    #[test]
    fn a_bad_raw_id_is_reported_where_it_is() {
        let e = parsed("A: stat id x").unwrap_err();
        assert_eq!(
            e,
            "t.scn:3:12: bad raw id `x` (expected an int from -2147483648 to 2147483647, such as -1 or 4242)"
        );
        let e = parsed("A: attach id 0x100000000").unwrap_err();
        assert!(e.starts_with("t.scn:3:14: bad raw id `0x100000000`"), "{e}");
        let e = parsed("A: rm id").unwrap_err();
        assert!(e.starts_with("t.scn:3:9: missing a raw id after `id`"), "{e}");
        assert!(e.contains("(expected a raw id after `id`)"), "{e}");
        // A raw id binds no segment: `lock` and `set` take names only.
        assert!(parsed("A: lock id 0").unwrap_err().contains("unknown name `id`"));
    }
}
