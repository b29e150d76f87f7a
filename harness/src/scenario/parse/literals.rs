//! The literal words of the language: sizes and offsets (`4096`, `0x1000`,
//! `64K`), keys, durations and signal names.

use std::time::Duration;

/// Parses `4096`, `0x1000`, `64K`, `2M`, `1G`.
pub fn parse_number(w: &str) -> Option<u64> {
    let (digits, mult) = match w.as_bytes().last()? {
        b'K' | b'k' if !w.starts_with("0x") => (&w[..w.len() - 1], 1u64 << 10),
        b'M' if !w.starts_with("0x") => (&w[..w.len() - 1], 1 << 20),
        b'G' if !w.starts_with("0x") => (&w[..w.len() - 1], 1 << 30),
        _ => (w, 1),
    };
    let n = if let Some(hex) = digits.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()?
    };
    n.checked_mul(mult)
}

/// Parses a key: `0x14010203` (up to 32 bits), or a decimal `key_t`, possibly negative.
pub fn parse_key(w: &str) -> Option<i32> {
    if let Some(hex) = w.strip_prefix("0x") {
        return u32::from_str_radix(hex, 16).ok().map(|v| v as i32);
    }
    w.parse::<i32>().ok()
}

/// Parses `500ms` or `5s` (fractions allowed: `0.5s`).
pub fn parse_duration(w: &str) -> Option<Duration> {
    if let Some(ms) = w.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    w.strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
}

/// The signal number of `SIGSEGV` and friends.
pub fn parse_signal(name: &str) -> Option<i32> {
    name.parse::<nix::sys::signal::Signal>().ok().map(|s| s as i32)
}

/// The name of signal `sig`.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}
