//! The parser oracle (placeholder; being written).

/// Checks one input.
pub fn check(data: &[u8]) {
    let _ = data;
}
