//! Canonical text of the memory forms: `write A OFF DATA`, `read A OFF LEN`,
//! `peek A OFF`, `poke A OFF BYTE`, and data (`"text"`, `hex "..."`,
//! `pattern "..." LEN`, `zero LEN`).

use crate::scenario::lexer::quote;
use crate::scenario::{Data, Op};

/// The operands of a memory step after its keyword (`None`: another family's).
pub(super) fn operands(o: &Op) -> Option<String> {
    Some(match o {
        Op::Write { attachment, offset, data: d } => format!(" {attachment} {offset} {}", data(d)),
        Op::Read { attachment, offset, len } => format!(" {attachment} {offset} {len}"),
        Op::Peek { attachment, offset } => format!(" {attachment} {offset}"),
        Op::Poke { attachment, offset, value } => format!(" {attachment} {offset} {value}"),
        _ => return None,
    })
}

/// Data as a `write` stores it or a `read` expects it.
pub(super) fn data(d: &Data) -> String {
    match d {
        Data::Text(b) => quote(b),
        Data::Hex(b) => {
            let pairs: Vec<String> = b.iter().map(|b| format!("{b:02x}")).collect();
            format!("hex \"{}\"", pairs.join(" "))
        }
        Data::Pattern(p, len) => format!("pattern {} {len}", quote(p)),
        Data::Zero(len) => format!("zero {len}"),
    }
}
