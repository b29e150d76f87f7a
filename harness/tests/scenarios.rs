//! Every `scenarios/**/*.scn` file is its own test, run through the
//! `shm-harness` binary (this test process is multi-threaded; the binary's
//! coordinator is not, so it may fork safely). Works under `cargo test` and
//! `cargo nextest run`.

use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::{Arguments, Failed, Trial};

fn run_scenario(path: &Path) -> Result<(), Failed> {
    let out = Command::new(env!("CARGO_BIN_EXE_shm-harness"))
        .args(["run", "--format", "json", "--jobs", "1"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot start shm-harness: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("shm-harness printed no JSON report ({e}); status {}; stderr:\n{stderr}", out.status))?;
    let report = &doc["scenarios"][0];
    match report["status"].as_str() {
        Some("pass") => Ok(()),
        Some("skip") => {
            // libtest-mimic cannot mark a test ignored at run time: say why it passed vacuously.
            eprintln!("skipped: {}: {}", path.display(), report["reason"].as_str().unwrap_or(""));
            Ok(())
        }
        _ => Err(stderr.into_owned().into()),
    }
}

fn main() {
    let args = Arguments::from_args();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    // Subfolders too, as `shm-harness run scenarios/` finds them.
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
        .follow_links(true)
        .into_iter()
        .map(|e| e.expect("a readable scenarios/ tree").into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "scn"))
        .collect();
    files.sort();
    let trials = files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&dir).unwrap_or(&path).with_extension("");
            let name = rel.to_string_lossy().replace('/', "::");
            Trial::test(format!("scenario::{name}"), move || run_scenario(&path))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
