//! shm-harness tests Linux System V shared memory against the real kernel.
//!
//! - [`sysv`]: a safe, documented wrapper over `ftok`, `shmget`, `shmat`,
//!   `shmdt` and `shmctl`.
//! - [`namespace`]: private IPC namespaces, so tests see only their own segments.
//! - [`listing`]: the `shm-harness ls` view, row for row as `ipcs -m`.
#![warn(missing_docs)]

pub mod fuzzing;
pub mod interp;
pub mod listing;
pub mod namespace;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sysv;
pub mod trace;
