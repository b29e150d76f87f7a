//! Generators and oracles for the fuzz targets in `fuzz/`, and the replay of
//! their corpora under `cargo test` on stable.
//!
//! As in wasmtime's fuzzing crate, the targets are a line each; everything
//! that decides what an input means and whether the kernel's answer is right
//! lives here, unit-tested on stable:
//!
//! - [`args`]: odd keys, sizes, flags and addresses against the wrapper.
//! - [`ops`]: operation sequences over a few keys and live objects.
//! - [`parser`]: random text into the scenario parser.
//! - [`ftok`]: the wrapper's `ftok` against glibc's.
//!
//! [`model`] is the reference model of SysV shared memory that judges the
//! first two; [`world`] holds an input's live objects and the leak checks
//! that end every input; [`confine`] puts the process in a private IPC
//! namespace with low limits before the first input.

pub mod args;
pub mod confine;
pub mod control;
pub mod ftok;
pub mod mapping;
pub mod model;
pub mod ops;
pub mod parser;
pub mod world;

/// Deterministic pseudo-random bytes (xorshift64*) for inputs made without
/// libFuzzer: the stable replay's random trials, the planted-bug check and
/// the oracle benchmark. The same seed always gives the same input, so a
/// failing one can be found again.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// The fuzz targets, by name.
pub const TARGETS: &[&str] = &["args", "ops", "parser", "ftok"];

/// Runs one input of `target` as its fuzz target does (for corpus replay
/// under `cargo test`); panics where the target would crash.
///
/// # Panics
/// On an unknown target, or where the oracle finds a bug.
pub fn replay(target: &str, data: &[u8]) {
    use arbitrary::{Arbitrary, Unstructured};
    let u = Unstructured::new(data);
    match target {
        "args" => {
            if let Ok(input) = args::ArgsInput::arbitrary_take_rest(u) {
                args::run(&input);
            }
        }
        "ops" => {
            if let Ok(input) = ops::OpsInput::arbitrary_take_rest(u) {
                ops::run(&input);
            }
        }
        "ftok" => {
            if let Ok(input) = ftok::FtokInput::arbitrary_take_rest(u) {
                ftok::run(&input);
            }
        }
        "parser" => parser::check(data),
        other => panic!("unknown fuzz target {other:?} (known: {TARGETS:?})"),
    }
}
