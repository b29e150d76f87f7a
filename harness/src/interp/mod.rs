//! The scenario interpreter's rules, pure: no system calls, no processes.
//! What a step's answer binds and creates (`effects`), whether an answer
//! or a program's output is what the step expected (`judge`, `output`),
//! which key a literal key stands for (`keys`), and the vocabulary they
//! share ([`value`]).
//! The parser, the actors and the supervisor all decide through here.

pub(crate) mod effects;
pub(crate) mod judge;
pub(crate) mod keys;
pub(crate) mod output;
pub mod value;

pub use value::{Ending, Failure, Global, Globals, Identity, Outcome, TracedSegment, Value, OUTPUT_CAP};
