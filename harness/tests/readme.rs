//! The READMEs say what is true. The prerequisites: the Rust version
//! README.md names is the workspace's `rust-version`, and every package
//! locked in `Cargo.lock` and `fuzz/Cargo.lock` builds with it (a dependency
//! whose `rust-version` is newer makes `cargo build` on that Rust refuse the
//! lock file). The fuzz README's commands are `scripts/fuzz.sh`'s.

use std::path::Path;
use std::process::Command;

/// `1.85` and `1.85.0` alike, as (major, minor, patch).
fn version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or_else(|_| panic!("not a version: {v}")));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Every locked package of the workspace at `dir` whose `rust-version` is
/// above `msrv`; `None` when there is no cargo to ask (a test executable run
/// by hand, e.g. as another user by `scripts/unprivileged.sh`).
fn newer_than(dir: &Path, msrv: &str) -> Option<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out =
        match Command::new(&cargo).args(["metadata", "--format-version", "1", "--locked"]).current_dir(dir).output() {
            Ok(out) => out,
            Err(e) => {
                eprintln!("skipped: cannot start `{cargo}` to read the locked packages: {e}");
                return None;
            }
        };
    assert!(out.status.success(), "cargo metadata in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let resolved: Vec<&str> =
        m["resolve"]["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    let newer = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| resolved.contains(&p["id"].as_str().unwrap()))
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(msrv)).then(|| {
                format!(
                    "{} {} needs Rust {needs}",
                    p["name"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("?")
                )
            })
        })
        .collect();
    Some(newer)
}

#[test]
fn the_readme_rust_version_builds_every_locked_package() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let msrv = env!("CARGO_PKG_RUST_VERSION");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains(&format!("**Rust {msrv}** or newer")), "README.md does not name Rust {msrv}");
    for dir in [root.to_path_buf(), root.join("fuzz")] {
        let Some(newer) = newer_than(&dir, msrv) else { return };
        assert!(
            newer.is_empty(),
            "{}/Cargo.lock holds packages that Rust {msrv} cannot build (`cargo update -p NAME --precise VERSION` to an older one): {newer:?}",
            dir.display()
        );
    }
}

/// Every `cargo ... fuzz` command of fuzz/README.md has the script's flags
/// (`-s none -O` on stable, `+nightly` with `-s address -O`), so it reuses
/// the script's build instead of rebuilding everything; a `fuzz run` that is
/// not a replay names a new-inputs folder and the committed corpus, as the
/// script does (without them cargo fuzz writes new inputs into the committed
/// corpus).
#[test]
fn the_fuzz_readme_commands_are_the_scripts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = std::fs::read_to_string(root.join("scripts/fuzz.sh")).unwrap();
    assert!(script.contains(r#"fuzz build "${san[@]}" -O"#), "fuzz.sh builds with other flags");
    assert!(script.contains(r#"fuzz run "${san[@]}" -O "$t" "$work/$t" "corpus/$t""#), "fuzz.sh runs with other flags");
    assert!(script.contains("san=(-s none)") && script.contains(r#"san=(-s "$sanitizer")"#));
    let readme = std::fs::read_to_string(root.join("fuzz/README.md")).unwrap();
    let commands: Vec<&str> = readme
        .lines()
        .filter(|l| !l.starts_with(char::is_alphabetic) || l.starts_with("cargo "))
        .filter(|l| l.contains("cargo fuzz ") || l.contains("cargo +nightly fuzz "))
        .collect();
    assert!(commands.len() >= 5, "{commands:?}");
    for c in commands {
        let flags_ok = if c.contains("+nightly") { c.contains(" -s address -O ") } else { c.contains(" -s none -O ") };
        assert!(flags_ok, "fuzz/README.md: `{c}` has flags other than scripts/fuzz.sh's");
        if c.contains(" fuzz run ") && !c.contains("artifacts/") {
            assert!(
                c.contains(r#""$(mktemp -d)" corpus/"#),
                "fuzz/README.md: `{c}` would write new inputs into the committed corpus"
            );
        }
    }
}
