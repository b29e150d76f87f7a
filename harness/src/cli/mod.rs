//! The command line's commands (the binary's modules; the library does not
//! see them).

pub mod console;
pub mod files;
pub mod inspect;
pub mod repeat;
pub mod run;
pub mod select;
pub mod story;
pub mod sweep;
