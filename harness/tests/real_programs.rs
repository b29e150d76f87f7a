//! `examples/real-programs/` is run by `.ci/run` only (it needs programs
//! that may be missing, and root), so `cargo test` checks what it can
//! without them: every file parses (a language change that breaks one is
//! caught here, not at the next CI), and every file says what it needs, so
//! that a machine without the program reports SKIP rather than FAIL.

use std::path::{Path, PathBuf};
use std::process::Command;

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/real-programs")
}

fn scenario_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            scenario_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "scn") {
            out.push(path);
        }
    }
}

#[test]
fn every_real_program_scenario_parses() {
    let out = Command::new(env!("CARGO_BIN_EXE_shm-harness"))
        .arg("check")
        .arg(folder())
        .output()
        .expect("run shm-harness check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check examples/real-programs/ failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = Vec::new();
    scenario_files(&folder(), &mut files);
    assert!(files.len() >= 12, "expected the 12+ scenarios of examples/real-programs/, found {}", files.len());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            stdout.lines().any(|l| l.starts_with("ok") && l.contains(&name)),
            "`check` did not report {name} as ok:\n{stdout}"
        );
    }
}

#[test]
fn every_real_program_scenario_needs_its_program() {
    let mut files = Vec::new();
    scenario_files(&folder(), &mut files);
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read scenario");
        let needs = text
            .lines()
            .filter(|l| l.starts_with("needs "))
            .any(|l| l.contains("program \"") || l.contains("command \""));
        assert!(needs, "{}: no `needs program \"...\"` or `needs command \"...\"`: it would FAIL, not SKIP, where the program is missing", f.display());
    }
}
