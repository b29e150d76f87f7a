//! Canonical text of the segment forms: `key`, `create`, `open`, `stat`,
//! `set`, `rm`, `lock`, `unlock`, `lookup` and `segments`.

use std::fmt::Write as _;

use crate::scenario::lexer::quote;
use crate::scenario::{KeyRef, Op};

use super::{binding, huge, key, mode};

/// The operands of a segment step after its keyword (`None`: another family's).
pub(super) fn operands(o: &Op) -> Option<String> {
    Some(match o {
        Op::Ftok { name, path, proj } => format!("{} ftok {} {proj}", binding(name), quote(path.as_bytes())),
        Op::KeyLiteral { name, value: 0 } => format!(" {name} = private"),
        Op::KeyLiteral { name, value } => format!(" {name} = {}", key(&KeyRef::Literal(*value))),
        Op::Create { .. } => create(o),
        Op::Open { name, key: k, size, mode: m, excl, flags } => {
            let mut out = format!("{} {}", binding(name), key(k));
            if *size != 0 {
                let _ = write!(out, " size {size}");
            }
            if let Some(m) = m {
                let _ = write!(out, " mode {}", mode(*m));
            }
            if *excl {
                out.push_str(" excl");
            }
            if let Some(f) = flags {
                let _ = write!(out, " flags {:#x}", *f as u32);
            }
            out
        }
        Op::Stat { segment } | Op::Remove { segment } => format!(" {}", segment.as_segment_operand()),
        Op::Lock { segment } | Op::Unlock { segment } => format!(" {segment}"),
        Op::Set { segment, mode: m, uid, gid, ignored } => {
            let mut out = format!(" {segment}");
            if let Some(m) = m {
                let _ = write!(out, " mode {}", mode(*m));
            }
            if let Some(uid) = uid {
                let _ = write!(out, " uid {uid}");
            }
            if let Some(gid) = gid {
                let _ = write!(out, " gid {gid}");
            }
            for (f, v) in ignored {
                let _ = write!(out, " {} {v}", f.name());
            }
            out
        }
        Op::Lookup { key: k } => format!(" {}", key(k)),
        Op::Segments => String::new(),
        _ => return None,
    })
}

/// The operands of `create`: defaults (mode 0600, no flags) left out.
fn create(o: &Op) -> String {
    let Op::Create { name, key: k, size, mode: m, excl, hugetlb, noreserve, huge_size, flags } = o else {
        unreachable!("called for create only")
    };
    let mut out = format!("{} {} size {size}", binding(name), key(k));
    if *m != 0o600 {
        let _ = write!(out, " mode {}", mode(*m));
    }
    for (on, flag) in [(excl, "excl"), (hugetlb, "hugetlb"), (noreserve, "noreserve")] {
        if *on {
            let _ = write!(out, " {flag}");
        }
        if *on && flag == "hugetlb" {
            out.push_str(huge_size.map_or("", huge));
        }
    }
    if let Some(f) = flags {
        let _ = write!(out, " flags {:#x}", *f as u32);
    }
    out
}
