//! The scenario language: a line-oriented script of named processes acting
//! on SysV shared memory, one step per line, each with its expectation.
//! `scenarios/README.md` is the reference.

mod ast;
mod lexer;
mod parser;
mod print;

pub use ast::*;
pub use lexer::{quote, tokenize, Spanned, Tok};
pub use parser::{
    parse, parse_duration, parse_key, parse_number, parse_signal, signal_name, substitutions, ParseError,
};
pub use print::same_scenario;

/// Reads and parses a scenario file.
///
/// # Errors
/// A [`ParseError`] at line 0 if the file cannot be read, else the first
/// problem in it.
pub fn load(path: &std::path::Path) -> Result<Scenario, ParseError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ParseError {
        file: file.clone(),
        line: 0,
        col: 0,
        message: format!("cannot read the file: {e}"),
        expected: None,
    })?;
    parse(&file, &text)
}
