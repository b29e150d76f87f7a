//! The scenario interpreter's rules, pure: no system calls, no processes,
//! nothing from the runner or the reports. The parser, the actors and the
//! supervisor all decide through here.
//!
//! - [`value`]: the vocabulary the others share: what an answer holds
//!   ([`Value`], [`Outcome`], [`Failure`]), how a process ended ([`Ending`]),
//!   what names are bound to ([`Global`]) and what steps made ([`Identity`]).
//! - `effects`: what a step's answer binds and creates, kept in the books.
//! - `judge`: whether a step's result is what it expects (`Judge`).
//! - `mismatch`: what was expected, in words, when it was not (`Mismatch`).
//! - `output`: whether a program's output passes a `run` step's checks.
//! - `keys`: which key a literal key of the scenario stands for in this run.
//! - `verdict`: a scenario's status once run (PASS, FAIL, XFAIL, XPASS).

pub(crate) mod effects;
pub(crate) mod judge;
pub(crate) mod keys;
pub(crate) mod mismatch;
pub(crate) mod output;
pub mod value;
pub(crate) mod verdict;

pub use value::{Ending, Failure, Global, Globals, Identity, Outcome, TracedSegment, Value, OUTPUT_CAP};
