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

/// The fenced blocks of a Markdown text whose info string is `lang`, with
/// the line of their first line (1-based).
fn blocks(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match &mut open {
            None if line.starts_with("```") => {
                if line[3..].trim() == lang {
                    open = Some((n + 2, String::new()));
                } else {
                    open = Some((0, String::new()));
                }
            }
            None => {}
            Some(_) if line.starts_with("```") => {
                let (at, body) = open.take().unwrap();
                if at != 0 {
                    out.push((at, body));
                }
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    assert!(open.is_none(), "a fenced block is never closed");
    out
}

/// Every ```scn block of `text` that `shm_harness::scenario::parse` (what
/// `shm-harness check` runs) refuses, with its error.
fn bad_scenario_blocks(doc: &str, text: &str) -> Vec<String> {
    blocks(text, "scn")
        .into_iter()
        .filter_map(|(line, body)| {
            // `--set NAME=VALUE` in the example's comments: run as it says.
            let values = body
                .lines()
                .filter(|l| l.starts_with('#'))
                .flat_map(|l| l.split_whitespace().skip_while(|w| *w != "--set").skip(1).step_by(2))
                .filter_map(|w| shm_harness::scenario::setting(w).ok())
                .collect();
            shm_harness::scenario::parse_with("example", &body, &values)
                .err()
                .map(|e| format!("{doc}, the example at line {line}: {e}"))
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_`
/// dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every `](#anchor)` of `text` that names no heading of it.
fn dangling_anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut anchors = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            anchors.push(slug(line.trim_start_matches('#')));
        }
    }
    text.split("](#")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|a| !anchors.iter().any(|h| h == a))
        .map(|a| format!("#{a}"))
        .collect()
}

/// Every scenario example of the READMEs (a ```scn block: a whole file)
/// passes `check`, and every link to a section of the same file finds it.
#[test]
fn the_readme_examples_parse_and_their_links_resolve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for doc in ["README.md", "scenarios/README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        assert!(blocks(&text, "scn").len() >= 2, "{doc}: no ```scn examples found");
        let bad = bad_scenario_blocks(doc, &text);
        assert!(bad.is_empty(), "{doc}: examples that do not parse:\n{}", bad.join("\n"));
        let dangling = dangling_anchors(&text);
        assert!(dangling.is_empty(), "{doc}: links to no heading: {dangling:?}");
    }
}

/// The control: a wrong example and a link to a missing section are found.
#[test]
fn a_wrong_example_and_a_dangling_link_are_found() {
    let doc = "# T\n\n## A heading: `x`\n\n[ok](#a-heading-x) [gone](#nowhere)\n\n```scn\nprocess A\nA: segments => 0\n```\n\n```scn\nprocess A\nB: segments => 0\n```\n\n```text\nnot a scenario\n```\n";
    let bad = bad_scenario_blocks("doc", doc);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].starts_with("doc, the example at line 13: example:2:1: unknown process `B`"), "{bad:?}");
    assert_eq!(dangling_anchors(doc), ["#nowhere"]);
}

/// How the parser's keyword list starts.
const RESERVED: &str = "const RESERVED: &[&str] = &[";

/// The text of the source file under `dir` (searched recursively, so that
/// the parser may move within `scenario/`) that holds the [`RESERVED`] list.
fn reserved_source(dir: &Path) -> Option<String> {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let found = if path.is_dir() {
            reserved_source(&path)
        } else {
            std::fs::read_to_string(&path).ok().filter(|s| s.contains(RESERVED))
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The keyword list of scenarios/README.md ("Names") is the parser's
/// `RESERVED` list, word for word.
#[test]
fn the_readme_keywords_are_the_parsers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let source =
        reserved_source(&root.join("harness/src/scenario")).expect("no RESERVED list under harness/src/scenario");
    let start = source.find(RESERVED).unwrap();
    let list = &source[start..start + source[start..].find("];").unwrap()];
    let mut parser: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
    let text = std::fs::read_to_string(root.join("scenarios/README.md")).unwrap();
    let names = &text[text.find("## Names").expect("no Names section")..];
    let (_, block) = blocks(names, "text").into_iter().next().expect("no keyword block under Names");
    let mut readme: Vec<&str> = block.split_whitespace().collect();
    assert!(parser.len() > 50 && readme.len() > 50, "{parser:?} {readme:?}");
    parser.sort_unstable();
    readme.sort_unstable();
    let missing: Vec<_> = parser.iter().filter(|w| !readme.contains(w)).collect();
    let extra: Vec<_> = readme.iter().filter(|w| !parser.contains(w)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "scenarios/README.md Names: missing {missing:?}, not keywords {extra:?}"
    );
    // Each listed word is refused as a name.
    for w in readme {
        let err = shm_harness::scenario::parse("t", &format!("process {w}\n")).expect_err(w);
        assert!(err.to_string().contains("not a valid name"), "`{w}`: {err}");
    }
}

/// The recipe for another project can be run as written: every
/// `cargo install` in the README is `--locked` and names no placeholder
/// owner, the `--path` one installs the `dist` profile, and the workspace
/// defines that profile as release without debug information, stripped.
#[test]
fn the_install_recipe_is_runnable_and_installs_without_debug_info() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    // Commands: a line of a `sh` block, or a workflow's `run:`.
    let installs: Vec<&str> =
        readme.lines().filter(|l| l.trim_start().trim_start_matches("run: ").starts_with("cargo install ")).collect();
    assert!(!installs.is_empty(), "README.md has no `cargo install` line");
    for line in &installs {
        assert!(line.contains("--locked"), "without --locked cargo re-resolves every dependency: {line}");
        assert!(!line.contains("OWNER"), "a placeholder cannot be run: {line}");
    }
    assert!(readme.contains("\ncargo install --locked --path harness --profile dist\n"), "the --path recipe");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let dist: Vec<&str> = manifest
        .split("\n[profile.dist]\n")
        .nth(1)
        .expect("the workspace Cargo.toml defines [profile.dist]")
        .lines()
        .take_while(|l| !l.starts_with('['))
        .map(str::trim)
        .collect();
    for want in ["inherits = \"release\"", "debug = false", "strip = true"] {
        assert!(dist.contains(&want), "[profile.dist] lacks `{want}`: {dist:?}");
    }
}
