//! Canonical text of the control forms: `shmctl`, `sysctl`, `rlimit`,
//! `umask` and `meminfo`.

use std::fmt::Write as _;

use crate::scenario::{CtlBuf, CtlTarget, Op};

use super::{binding, mode};

/// The operands of a control step after its keyword (`None`: another family's).
pub(super) fn operands(o: &Op) -> Option<String> {
    Some(match o {
        Op::Sysctl { name, value } => {
            let mut out = format!(" {}", name.name());
            if let Some(v) = value {
                let _ = write!(out, " = {v}");
            }
            out
        }
        Op::Shmctl { name, target, cmd, buffer } => {
            let mut out = binding(name);
            let _ = match target {
                CtlTarget::Segment(s) => write!(out, " {s}"),
                CtlTarget::Number(n) => write!(out, " {n}"),
            };
            let _ = write!(out, " {cmd}");
            if *buffer != CtlBuf::Given {
                let _ = write!(out, " {}", buffer.words());
            }
            out
        }
        Op::Rlimit { resource, soft, hard } => {
            let limit = |v: &Option<u64>| v.map_or_else(|| "inf".to_string(), |n| n.to_string());
            let mut out = format!(" {} {}", resource.name(), limit(soft));
            if let Some(h) = hard {
                let _ = write!(out, " {}", limit(h));
            }
            out
        }
        Op::Umask { mask } => format!(" {}", mode(*mask)),
        Op::Meminfo { field } => format!(" {field}"),
        _ => return None,
    })
}
