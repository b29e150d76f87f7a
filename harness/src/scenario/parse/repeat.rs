//! `repeat MAX OPERATION until ERRNO`: an unnamed `create` or a plain
//! `attach`, made again and again until the kernel refuses it with ERRNO
//! (at most MAX times); `=> count NUMEXP` checks how many succeeded.

use super::*;

/// What a repeated operation may be, for error messages.
const REPEATABLE: &str = "an unnamed `create KEY size N ...` or a plain `attach S [ro] [exec]`";

/// The most tries a `repeat` may state (1M).
pub(crate) const MAX_TRIES: u64 = 1 << 20;

impl Parser {
    /// After `repeat`: `MAX OPERATION until ERRNO`.
    pub(super) fn repeat_op(&mut self, l: &mut Line, proc_: &str) -> Result<Op, ParseError> {
        let max_col = l.col();
        if !l.peek_word().is_some_and(|w| w.starts_with(|c: char| c.is_ascii_digit())) {
            return Err(self.err(
                l,
                format!("missing the most tries of `repeat`: {}", found(l)),
                Some("a number of tries (`repeat 1000 create private size 4096 until ENOSPC`)"),
            ));
        }
        let max = self.number(l, "the most tries")?;
        if max == 0 || max > MAX_TRIES {
            return Err(self.err_at(
                l.lineno,
                max_col,
                format!("`repeat {max}`: the most tries must be 1 to {MAX_TRIES}"),
                Some(&format!("a number of tries from 1 to {MAX_TRIES}")),
            ));
        }
        let Some(until) = l.toks[l.pos..]
            .iter()
            .take_while(|t| t.tok != Tok::Arrow)
            .position(|t| t.tok == Tok::Word("until".into()))
            .map(|i| l.pos + i)
        else {
            let end =
                l.toks[l.pos..].iter().position(|t| t.tok == Tok::Arrow).map_or(l.end_col, |i| l.toks[l.pos + i].col);
            return Err(self.err_at(
                l.lineno,
                end,
                "missing `until ERRNO` after the repeated operation",
                Some("`until` and the errno that ends the repetition, such as ENOSPC or ENOMEM"),
            ));
        };
        let op_col = l.col();
        let mut inner = Line { toks: &l.toks[..until], pos: l.pos, lineno: l.lineno, end_col: l.toks[until].col };
        let op = match inner.peek_word() {
            // The inner form ends at `until`, not at `=>`: say so.
            Some("create" | "attach") => self.op(&mut inner, proc_).map_err(|mut e| {
                if let Some(x) = &mut e.expected {
                    *x = x.replace("`=>`", "`until ERRNO`");
                }
                e
            })?,
            _ => {
                return Err(self.err_at(
                    l.lineno,
                    op_col,
                    format!("`repeat` cannot repeat this: {}", found(&inner)),
                    Some(REPEATABLE),
                ))
            }
        };
        self.check_repeated(l.lineno, op_col, &op)?;
        l.pos = until + 1;
        let (w, col) = self.word(l, "the errno after `until`")?;
        let until = errno_from_name(&w).ok_or_else(|| {
            self.err_at(l.lineno, col, format!("unknown errno `{w}`"), Some("an errno name such as ENOSPC or ENOMEM"))
        })?;
        Ok(Op::Repeat { max, op: Box::new(op), until })
    }

    /// A repeated operation names nothing it makes (no name could stand
    /// for all of them) and attaches where the kernel chooses.
    fn check_repeated(&self, lineno: usize, col: usize, op: &Op) -> Result<(), ParseError> {
        let why = match op {
            Op::Create { name: Some(n), .. } | Op::Attach { name: Some(n), .. } => {
                format!("a repeated `{}` binds no name (`{n} =`): one name cannot stand for all it makes", op.keyword())
            }
            Op::Attach { at: Some(_), .. } | Op::Attach { rnd: true, .. } | Op::Attach { remap: true, .. } => {
                "a repeated `attach` takes no address (`at`, `rnd`, `remap`): the kernel chooses each one".into()
            }
            _ => return Ok(()),
        };
        Err(self.err_at(lineno, col, why, Some(REPEATABLE)))
    }
}
