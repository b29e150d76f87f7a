//! Canonical text of the attachment and mapping forms, as
//! the parser reads them back: addresses `M`, `M+N`, `M-N`, `0x...`;
//! `unmap [OFF LEN]`, `protect PROT [OFF LEN]`, `resize N [move]`,
//! `pages OFF LEN PGOFF`; fields `at ADDR`, `mapped N`, `moved yes|no`.

use std::fmt::{self, Display, Formatter};

use crate::scenario::{Addr, MapChange, MapField, Op};

impl Display for Addr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Literal(v) => write!(f, "{v:#x}"),
            Addr::Of { attachment, offset: 0 } => write!(f, "{attachment}"),
            Addr::Of { attachment, offset } if *offset < 0 => write!(f, "{attachment}-{}", offset.unsigned_abs()),
            Addr::Of { attachment, offset } => write!(f, "{attachment}+{offset}"),
        }
    }
}

impl Display for MapChange {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let range = |f: &mut Formatter<'_>, r: &Option<(u64, u64)>| match r {
            Some((off, len)) => write!(f, " {off} {len}"),
            None => Ok(()),
        };
        match self {
            MapChange::Unmap(r) => {
                f.write_str("unmap")?;
                range(f, r)
            }
            MapChange::Protect(p, r) => {
                write!(f, "protect {}", p.word())?;
                range(f, r)
            }
            MapChange::Resize { len, may_move } => write!(f, "resize {len}{}", if *may_move { " move" } else { "" }),
            MapChange::Pages { offset, len, pgoff } => write!(f, "pages {offset} {len} {pgoff}"),
        }
    }
}

impl Display for MapField {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            MapField::At(a) => write!(f, "at {a}"),
            MapField::Mapped(n) => write!(f, "mapped {n}"),
            MapField::Moved(m) => write!(f, "moved {}", if *m { "yes" } else { "no" }),
        }
    }
}

/// The operands of `attach`, `detach` and `mapping` after the keyword
/// (`None`: another family's).
pub(super) fn operands(o: &Op) -> Option<String> {
    Some(match o {
        Op::Attach { name, segment, read_only, exec, at, rnd, remap } => {
            let mut out = String::new();
            if let Some(name) = name {
                out.push_str(&format!(" {name} ="));
            }
            out.push_str(&format!(" {}", segment.as_segment_operand()));
            for (on, word) in [(*read_only, "ro"), (*exec, "exec")] {
                if on {
                    out.push_str(&format!(" {word}"));
                }
            }
            if let Some(a) = at {
                out.push_str(&format!(" at {a}"));
            }
            for (on, word) in [(*rnd, "rnd"), (*remap, "remap")] {
                if on {
                    out.push_str(&format!(" {word}"));
                }
            }
            out
        }
        Op::Detach { attachment } => format!(" {attachment}"),
        Op::DetachAt { addr } => format!(" at {addr}"),
        Op::Mapping { attachment, change } => format!(" {attachment} {change}"),
        _ => return None,
    })
}

/// `at m1, mapped 8192`.
pub(super) fn fields(fields: &[MapField]) -> String {
    fields.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
