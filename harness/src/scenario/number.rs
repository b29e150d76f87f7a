//! Number expectations, shared by every numeric answer of the language:
//! `NUMEXP := [OP] VALUE | {NAME}`.
//!
//! - `OP` is one of `==`, `!=`, `<`, `<=`, `>`, `>=`; none means `==`.
//! - `VALUE` is a number literal (`4096`, `0x1000`, `64K`, `-1`) or a bound
//!   *number name*.
//! - `{NAME}` (no operator) accepts any value and binds it to `NAME`, a new
//!   number name, usable in later NUMEXPs and as `${NAME}` (decimal) in
//!   `run` words.
//!
//! Values are `i128`: wide enough for every `u64` the kernel reports
//! (`shmmax` defaults to nearly 2^64) and for the `-1` of
//! `kernel.shm_next_id`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A number as the language compares it.
pub type Number = i128;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    /// `==` (also written as nothing).
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

impl CmpOp {
    /// How it is written.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// Whether `got OP want` holds.
    pub fn holds(self, got: Number, want: Number) -> bool {
        match self {
            CmpOp::Eq => got == want,
            CmpOp::Ne => got != want,
            CmpOp::Lt => got < want,
            CmpOp::Le => got <= want,
            CmpOp::Gt => got > want,
            CmpOp::Ge => got >= want,
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum NumValue {
    /// A literal.
    Lit(Number),
    /// A bound number name (its value at run time).
    Name(String),
}

/// A number expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum NumExp {
    /// `[OP] VALUE`.
    Cmp(CmpOp, NumValue),
    /// `{NAME}`: any value, bound to the new number name `NAME`.
    Capture(String),
}

impl NumExp {
    /// `== n`.
    pub fn eq(n: Number) -> NumExp {
        NumExp::Cmp(CmpOp::Eq, NumValue::Lit(n))
    }

    /// Whether `got` satisfies the expectation; `lookup` gives a number
    /// name's value (`None`: unbound, which never matches).
    pub fn holds(&self, got: Number, lookup: impl Fn(&str) -> Option<Number>) -> bool {
        match self {
            NumExp::Capture(_) => true,
            NumExp::Cmp(op, NumValue::Lit(n)) => op.holds(got, *n),
            NumExp::Cmp(op, NumValue::Name(name)) => lookup(name).is_some_and(|n| op.holds(got, n)),
        }
    }

    /// The name a capture binds.
    pub fn captures(&self) -> Option<&str> {
        match self {
            NumExp::Capture(n) => Some(n),
            NumExp::Cmp(..) => None,
        }
    }

    /// For people: `1`, `>= 1`, `< t0 (1700000000)`, `{t0} (any value, captured)`.
    pub fn describe(&self, lookup: impl Fn(&str) -> Option<Number>) -> String {
        let op = |op: &CmpOp| if *op == CmpOp::Eq { String::new() } else { format!("{} ", op.symbol()) };
        match self {
            NumExp::Capture(n) => format!("{{{n}}} (any value, captured)"),
            NumExp::Cmp(o, NumValue::Lit(v)) => format!("{}{v}", op(o)),
            NumExp::Cmp(o, NumValue::Name(n)) => match lookup(n) {
                Some(v) => format!("{}{n} ({v})", op(o)),
                None => format!("{}{n} (unbound)", op(o)),
            },
        }
    }
}

/// The canonical text: `==` is left out, so `nattch 1` prints as written.
impl fmt::Display for NumExp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumExp::Capture(n) => write!(f, "{{{n}}}"),
            NumExp::Cmp(op, v) => {
                if *op != CmpOp::Eq {
                    write!(f, "{} ", op.symbol())?;
                }
                match v {
                    NumValue::Lit(n) => write!(f, "{n}"),
                    NumValue::Name(n) => write!(f, "{n}"),
                }
            }
        }
    }
}

/// Parses a number literal: what [`super::parse_number`] takes, or a
/// negative decimal (`-1`).
pub fn parse_number_literal(w: &str) -> Option<Number> {
    if let Some(digits) = w.strip_prefix('-') {
        if digits.starts_with('-') {
            return None;
        }
        return super::parse::parse_number(digits).map(|n| -Number::from(n));
    }
    super::parse::parse_number(w).map(Number::from)
}

/// The name inside a capture word `{name}`.
pub fn capture_name(w: &str) -> Option<&str> {
    w.strip_prefix('{')?.strip_suffix('}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_hold_as_written() {
        let none = |_: &str| None;
        for (op, yes, no) in [
            (CmpOp::Eq, 5, 6),
            (CmpOp::Ne, 6, 5),
            (CmpOp::Lt, 4, 5),
            (CmpOp::Le, 5, 6),
            (CmpOp::Gt, 6, 5),
            (CmpOp::Ge, 5, 4),
        ] {
            let e = NumExp::Cmp(op, NumValue::Lit(5));
            assert!(e.holds(yes, none), "{yes} {} 5", op.symbol());
            assert!(!e.holds(no, none), "not {no} {} 5", op.symbol());
        }
        let named = NumExp::Cmp(CmpOp::Gt, NumValue::Name("t".into()));
        assert!(named.holds(11, |n| (n == "t").then_some(10)));
        assert!(!named.holds(10, |n| (n == "t").then_some(10)));
        // An unbound name never matches, whatever the operator.
        assert!(!NumExp::Cmp(CmpOp::Ne, NumValue::Name("t".into())).holds(1, none));
        assert!(NumExp::Capture("t".into()).holds(-7, none));
    }

    #[test]
    fn literals_and_printing() {
        assert_eq!(parse_number_literal("-1"), Some(-1));
        assert_eq!(parse_number_literal("18446744073709551615"), Some(u64::MAX.into()));
        assert_eq!(parse_number_literal("2M"), Some(2 << 20));
        assert_eq!(parse_number_literal("--1"), None);
        assert_eq!(parse_number_literal("-"), None);
        assert_eq!(NumExp::eq(3).to_string(), "3");
        assert_eq!(NumExp::Cmp(CmpOp::Ge, NumValue::Lit(-1)).to_string(), ">= -1");
        assert_eq!(NumExp::Capture("t0".into()).to_string(), "{t0}");
        assert_eq!(capture_name("{t0}"), Some("t0"));
        let t = |n: &str| (n == "t").then_some(7);
        assert_eq!(NumExp::eq(3).describe(t), "3");
        assert_eq!(NumExp::Cmp(CmpOp::Lt, NumValue::Name("t".into())).describe(t), "< t (7)");
        assert_eq!(NumExp::Cmp(CmpOp::Eq, NumValue::Name("u".into())).describe(t), "u (unbound)");
    }
}
