//! Parsing number expectations (`NUMEXP`, see [`crate::scenario::NumExp`]).

use super::{found, Kind, Line, ParseError, Parser};
use crate::scenario::lexer::Tok;
use crate::scenario::number::{capture_name, parse_number_literal, CmpOp, NumExp, NumValue};

/// What a NUMEXP may be, for error messages.
const NUMEXP: &str = "a number expectation: [== != < <= > >=] then a number or a number name, or {NAME} to capture";

impl Parser {
    /// `[OP] VALUE` or `{NAME}` (which binds `NAME` as a number name).
    pub(super) fn num_exp(&mut self, l: &mut Line, what: &str) -> Result<NumExp, ParseError> {
        let op = match l.peek() {
            Some(Tok::Cmp(op)) => {
                let op = *op;
                l.pos += 1;
                Some(op)
            }
            _ => None,
        };
        let col = l.col();
        let Some(Tok::Word(w)) = l.peek() else {
            return Err(self.err(l, format!("missing {what}: {}", found(l)), Some(NUMEXP)));
        };
        let w = w.clone();
        l.pos += 1;
        if let Some(name) = capture_name(&w) {
            if let Some(op) = op {
                return Err(self.err_at(
                    l.lineno,
                    col,
                    format!("a capture `{w}` takes any value; it cannot follow `{}`", op.symbol()),
                    Some("`{NAME}` alone, or a comparison with a number or a bound number name"),
                ));
            }
            self.bind(l.lineno, col, name, Kind::Number)?;
            return Ok(NumExp::Capture(name.to_string()));
        }
        let op = op.unwrap_or(CmpOp::Eq);
        if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
            return parse_number_literal(&w).map(|n| NumExp::Cmp(op, NumValue::Lit(n))).ok_or_else(|| {
                self.err_at(
                    l.lineno,
                    col,
                    format!("bad number `{w}` for {what}"),
                    Some("a number such as 4096, -1, 0x1000, 64K or 2M"),
                )
            });
        }
        match self.names.get(&w) {
            // A capture binds only once its step has answered as expected:
            // the step that captures it cannot compare with it.
            Some((Kind::Number, at)) if *at == l.lineno => Err(self.err_at(
                l.lineno,
                col,
                format!("`{w}` is captured by this step; it is bound only once the step has answered"),
                Some("a number name captured on an earlier line (compare with it on the next step)"),
            )),
            Some((Kind::Number, _)) => Ok(NumExp::Cmp(op, NumValue::Name(w))),
            Some((k, at)) => Err(self.err_at(
                l.lineno,
                col,
                format!("`{w}` is {} (line {at}), not a number", k.noun()),
                Some("a number name bound by a capture such as `ctime {t0}`"),
            )),
            None => Err(self.unknown(
                l.lineno,
                col,
                format!("unknown name `{w}` for {what}: not bound before this line"),
                &w,
                self.bound(Some(Kind::Number)),
                Some(NUMEXP),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::CmpOp;
    use crate::scenario::{parse, Expect, NumExp, NumField, NumValue, StatField};

    fn err(src: &str) -> String {
        parse("t.scn", src).unwrap_err().to_string()
    }

    #[test]
    fn comparisons_captures_and_names() {
        let sc = parse(
            "t.scn",
            "process A\nA: create s = private size 4096\nA: stat s => nattch >= 0, size < 8K, ctime {t0}, atime 0\n\
             A: stat s => ctime == t0, dtime != t0, seq <= 1, index > -1\nA: segments => >= 1\n",
        )
        .unwrap();
        let Expect::Stat(f) = &sc.steps[1].expect else { panic!() };
        assert_eq!(f[0], StatField::Num(NumField::Nattch, NumExp::Cmp(CmpOp::Ge, NumValue::Lit(0))));
        assert_eq!(f[2], StatField::Num(NumField::Ctime, NumExp::Capture("t0".into())));
        assert_eq!(f[3], StatField::Num(NumField::Atime, NumExp::eq(0)));
        let Expect::Stat(f) = &sc.steps[2].expect else { panic!() };
        assert_eq!(f[0], StatField::Num(NumField::Ctime, NumExp::Cmp(CmpOp::Eq, NumValue::Name("t0".into()))));
        assert_eq!(sc.steps[3].expect, Expect::Number(NumExp::Cmp(CmpOp::Ge, NumValue::Lit(1))));
    }

    #[test]
    fn misuse_is_reported_where_it_is() {
        let base = "process A\nA: create s = private size 4096\n";
        // An operator before a capture.
        let e = err(&format!("{base}A: stat s => ctime > {{t}}\n"));
        assert!(e.starts_with("t.scn:3:22: a capture `{t}` takes any value"), "{e}");
        // An unbound name.
        let e = err(&format!("{base}A: stat s => ctime > t\n"));
        assert!(e.starts_with("t.scn:3:22: unknown name `t`"), "{e}");
        // A name of another kind.
        let e = err(&format!("{base}A: stat s => size s\n"));
        assert!(e.starts_with("t.scn:3:19: `s` is a segment (line 2), not a number"), "{e}");
        // An operator and nothing after it.
        let e = err(&format!("{base}A: stat s => size >=\n"));
        assert!(e.starts_with("t.scn:3:21: missing the size"), "{e}");
        // A bad literal.
        let e = err(&format!("{base}A: stat s => size < 12Q\n"));
        assert!(e.starts_with("t.scn:3:21: bad number `12Q`"), "{e}");
        // A capture that rebinds a name.
        let e = err(&format!("{base}A: stat s => ctime {{s}}\n"));
        assert!(e.contains("duplicate name `s`"), "{e}");
        // A capture compared in the step that captures it (accepted before,
        // then failed at run time as "unbound"); the control is the next line.
        let e = err(&format!("{base}A: stat s => atime {{a1}}, dtime >= a1\n"));
        assert!(e.starts_with("t.scn:3:35: `a1` is captured by this step"), "{e}");
        assert!(parse("t.scn", &format!("{base}A: stat s => atime {{a1}}\nA: stat s => dtime >= a1\n")).is_ok());
        // Two comparison operators.
        let e = err(&format!("{base}A: segments => < > 1\n"));
        assert!(e.starts_with("t.scn:3:18: missing a number"), "{e}");
        // A comparison where a plain number is declared (sysctl NAME = N).
        let e = err("process A\nsysctl shmmni = >= 3\nA: segments => 0\n");
        assert!(e.contains("missing the sysctl's value"), "{e}");
    }
}
