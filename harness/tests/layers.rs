//! The layering of issue 16, checked on the source: data flows one way,
//! so `scenario` and `interp` import nothing from the layers below them
//! (`runner`, `report`, `cli`, `fuzzing`), `scenario` nothing from
//! `interp`, and `interp` has no `unsafe` and no system call (no `libc`
//! function, `nix`, `std::fs`, `std::process`, `std::env`). Test modules
//! (`#[cfg(test)] mod tests`) are not part of a layer and are skipped.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The lines of `text` outside its test module, with their numbers.
fn layer_lines(text: &str) -> Vec<(usize, &str)> {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end].lines().enumerate().map(|(i, l)| (i + 1, l)).collect()
}

/// `file:line: text` for every line of the layer's code that contains one
/// of `forbidden` (doc comments excepted: they may name other layers).
fn violations(file: &str, text: &str, forbidden: &[&str]) -> Vec<String> {
    layer_lines(text)
        .into_iter()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| forbidden.iter().any(|f| l.contains(f)))
        .map(|(n, l)| format!("{file}:{n}: {}", l.trim()))
        .collect()
}

fn check_layer(layer: &str, forbidden: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(layer);
    let files = sources(&dir);
    assert!(!files.is_empty(), "no sources under {}", dir.display());
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        found.extend(violations(&f.display().to_string(), &text, forbidden));
    }
    assert!(found.is_empty(), "layer `{layer}` reaches what it must not:\n{}", found.join("\n"));
}

const LOWER: &[&str] = &["crate::runner", "crate::report", "crate::cli", "crate::fuzzing"];

#[test]
fn scenario_imports_nothing_below_it() {
    let mut forbidden = LOWER.to_vec();
    forbidden.push("crate::interp");
    check_layer("scenario", &forbidden);
}

#[test]
fn interp_imports_nothing_below_it_and_makes_no_system_call() {
    let mut forbidden = LOWER.to_vec();
    forbidden.extend(["unsafe", "nix::", "std::fs", "std::process", "std::env", "libc::"]);
    check_layer("interp", &forbidden);
}

/// Control: the check finds what it looks for, outside tests and comments,
/// and only there.
#[test]
fn control_the_check_can_fail() {
    let text = "//! crate::runner in a doc\nuse crate::runner::wire;\nfn f() { unsafe {} }\n#[cfg(test)]\nmod tests {\n    use crate::runner::x;\n}\n";
    let v = violations("x.rs", text, &["crate::runner", "unsafe"]);
    assert_eq!(v, vec!["x.rs:2: use crate::runner::wire;".to_string(), "x.rs:3: fn f() { unsafe {} }".to_string()]);
}
