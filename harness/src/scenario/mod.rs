//! The scenario language: a line-oriented script of named processes acting
//! on SysV shared memory, one step per line, each with its expectation.
//! `scenarios/README.md` is the reference.

mod ast;
mod lexer;
mod number;
mod parse;
mod print;
mod rules;

pub use ast::*;
pub use lexer::{quote, tokenize, Spanned, Tok};
pub use number::{capture_name, parse_number_literal, CmpOp, NumExp, NumValue, Number};
pub(crate) use parse::deadly;
pub use parse::{
    parse, parse_duration, parse_key, parse_number, parse_signal, parse_with, setting, signal_name, split_command,
    substitutions, ParseError, Values,
};
pub use print::same_scenario;
pub use rules::AttachmentChange;

/// Reads and parses a scenario file. A file that is not UTF-8 is reported
/// at its first bad byte: line, column and byte offset.
///
/// # Errors
/// A [`ParseError`] at line 0 if the file cannot be read, else the first
/// problem in it.
pub fn load(path: &std::path::Path) -> Result<Scenario, ParseError> {
    load_with(path, &Values::new())
}

/// [`load`], with values for `${NAME}` in program commands ([`parse_with`]).
///
/// # Errors
/// As [`load`].
pub fn load_with(path: &std::path::Path, values: &Values) -> Result<Scenario, ParseError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ParseError {
        file: file.clone(),
        line: 0,
        col: 0,
        message: format!("cannot read the file: {e}"),
        expected: None,
    })?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse_with(&file, text, values),
        Err(e) => Err(not_utf8(&file, &bytes, e)),
    }
}

fn not_utf8(file: &str, bytes: &[u8], e: std::str::Utf8Error) -> ParseError {
    let at = e.valid_up_to();
    let before = &bytes[..at];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    // Columns count characters, as the parser's do; everything before `at` is valid UTF-8.
    let col = 1 + String::from_utf8_lossy(&before[line_start..]).chars().count();
    ParseError {
        file: file.to_string(),
        line,
        col,
        message: format!(
            "not UTF-8: byte 0x{:02x} at byte offset {at} does not start a valid UTF-8 character; scenario files are UTF-8 text",
            bytes[at]
        ),
        expected: None,
    }
}

#[cfg(test)]
mod load_tests {
    #[test]
    fn not_utf8_names_line_column_and_offset() {
        let bytes: Vec<u8> = b"process A\nA: \xc3\xa9 \xff\n".to_vec();
        let e = std::str::from_utf8(&bytes).unwrap_err();
        let err = super::not_utf8("f.scn", &bytes, e);
        assert_eq!((err.line, err.col), (2, 6));
        assert!(err.message.contains("byte 0xff at byte offset 16"), "{}", err.message);
    }
}
