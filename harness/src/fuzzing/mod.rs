//! Generators and oracles for the fuzz targets in `fuzz/`, and the replay of
//! their corpora under `cargo test` on stable.
//!
//! As in wasmtime's fuzzing crate, the targets are a line each; everything
//! that decides what an input means and whether the kernel's answer is right
//! lives here, unit-tested on stable:
//!
//! - [`parser`]: random text into the scenario parser: never a panic, an
//!   error with a position, and whatever parses prints back to text that
//!   parses to the same scenario.

pub mod parser;
