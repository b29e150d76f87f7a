//! Which key a scenario's literal key stands for in a run: itself in a
//! private IPC namespace, a key in the run's slot of the host key range in
//! host isolation.

use crate::scenario::{KeyRef, Op, Scenario};

/// The top 16 bits of every host-mode key ("SH").
pub const HOST_KEY_BASE: u32 = 0x5348_0000;

/// Literal keys of a scenario, as the run uses them.
///
/// In a private namespace a literal key is itself. In host mode the `i`-th
/// distinct literal key of the scenario (in order of first appearance)
/// becomes `0x5348_0000 | slot << 8 | i`: `slot` (8 bits) is chosen per run,
/// so concurrent runs rarely meet; a key held by a segment that is not the
/// run's own still stops the scenario (the key guard).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct KeyMap {
    host: Option<(u8, Vec<i32>)>,
}

impl KeyMap {
    /// Literal keys are themselves (namespace mode).
    pub fn identity() -> KeyMap {
        KeyMap { host: None }
    }

    /// Host mode: the scenario's literal keys in the run's slot.
    ///
    /// # Errors
    /// More than 256 distinct literal keys.
    pub fn host(sc: &Scenario, slot: u8) -> Result<KeyMap, String> {
        let mut literals: Vec<i32> = Vec::new();
        for s in &sc.steps {
            let v = match &s.op {
                Op::KeyLiteral { value, .. } => *value,
                Op::Create { key: KeyRef::Literal(v), .. } | Op::Open { key: KeyRef::Literal(v), .. } => *v,
                _ => continue,
            };
            if v != 0 && !literals.contains(&v) {
                literals.push(v);
            }
        }
        if literals.len() > 256 {
            return Err(format!(
                "{} distinct literal keys; host isolation maps at most 256 per scenario into its key range",
                literals.len()
            ));
        }
        Ok(KeyMap { host: Some((slot, literals)) })
    }

    /// The key a literal stands for in this run.
    pub fn translate(&self, literal: i32) -> i32 {
        match &self.host {
            None => literal,
            Some(_) if literal == 0 => 0,
            Some((slot, literals)) => {
                let i = literals.iter().position(|&l| l == literal).unwrap_or(0xff) as u32;
                (HOST_KEY_BASE | u32::from(*slot) << 8 | i) as i32
            }
        }
    }
}
