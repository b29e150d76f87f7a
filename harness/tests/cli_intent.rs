//! Intent, waiting and output checks from the command line: `check` errors
//! for every misuse of `needs program/command`, `xfail`, `eventually` and the
//! output checks; XFAIL/XPASS/`--strict` statuses, exit codes and reports;
//! `eventually`'s failure text; `needs` skips; recursive `run DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{all, harness, text, write};

/// One case per misuse class: the input and the error it must give.
#[test]
fn every_misuse_is_a_check_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let ok = "process A\nA: segments => 0\n";
    let cases: &[(String, &str)] = &[
        // needs
        (format!("needs progrm \"ls\"\n{ok}"), "bad.scn:1:7: unknown need `progrm`"),
        (format!("needs program \"ls -l\"\n{ok}"), "bad.scn:1:15: bad program name \"ls -l\""),
        (format!("needs program ls\n{ok}"), "bad.scn:1:15: missing the program"),
        (format!("needs command \"test -x ${{dir}}\"\n{ok}"), "bad.scn:1:15: `${dir}` in a need"),
        (format!("needs command \"sh -c 'true\"\n{ok}"), "bad.scn:1:15: unterminated `'` in the command"),
        // xfail
        ("process A\nxfail\nA: segments => 0\n".into(), "bad.scn:2:6: missing the reason"),
        ("process A\nxfail \"  \"\nA: segments => 0\n".into(), "bad.scn:2:7: empty xfail reason"),
        ("process A\nxfail \"a\"\nxfail \"b\"\nA: segments => 0\n".into(), "bad.scn:3:1: a second `xfail`"),
        (
            "process A\nxfail \"a\"\ntimeout 1s\nA: segments => 0\n".into(),
            "bad.scn:3:1: the `xfail` on line 2 must come right before a step",
        ),
        (
            "process A\nA: segments => 0\nxfail \"a\"\n".into(),
            "bad.scn:3:1: `xfail` marks the step after it, and there is none",
        ),
        ("process A\nxfail \"a\" A: segments => 0\n".into(), "bad.scn:2:11: unexpected input at the end of the line"),
        // eventually
        ("process A\neventually 5: A: segments => 0\n".into(), "bad.scn:2:12: bad duration `5`"),
        ("process A\neventually 0s: A: segments => 0\n".into(), "bad.scn:2:12: bad duration `0s`"),
        ("process A\neventually 5s A: segments => 0\n".into(), "bad.scn:2:15: missing `:` after the duration"),
        (
            "process A\nA: key k = private\neventually 1s: A: create s = k size 1\n".into(),
            "bad.scn:3:19: `create` has side effects and cannot be repeated by `eventually`",
        ),
        ("process A\neventually 1s: A: sysctl shmmni = 10\n".into(), "`sysctl` has side effects"),
        (
            "process A, B\nA: segments => 0\n& eventually 1s: B: segments => 0\n".into(),
            "bad.scn:3:3: an `eventually` step cannot run concurrently",
        ),
        (
            "process A, B\neventually 1s: A: segments => 0\n& B: segments => 0\n".into(),
            "bad.scn:3:1: `&` cannot join the `eventually` step of line 2",
        ),
        // output checks
        ("process A\nA: run \"true\" => stdout \"{x:y}\"\n".into(), "bad.scn:2:25: unknown capture type `x`"),
        ("process A\nA: run \"true\" => stdout matches \"(\"\n".into(), "bad.scn:2:33: bad regular expression"),
        ("process A\nA: run \"true\" => stdout matches \"(?P<zz.a>x)\"\n".into(), "unknown capture type `zz`"),
        ("process A\nA: run \"true\" => stdout line 0 \"x\"\n".into(), "bad.scn:2:30: bad line number `0`"),
        ("process A\nA: run \"true\" => stdout line x \"x\"\n".into(), "bad.scn:2:30: bad line number `x`"),
        ("process A\nA: run \"true\" => stdout line 1 column 0 \"x\"\n".into(), "bad.scn:2:39: columns count from 1"),
        ("process A\nA: run \"true\" => stdout line 1 column 2\n".into(), "missing the output template"),
        (
            "process A\nA: run \"true\" => stderr contains \"${nope}\"\n".into(),
            "bad.scn:2:34: unknown name `${nope}` in the expected output",
        ),
        ("process A\nA: run \"true\" => stdout 5\n".into(), "bad.scn:2:25: unexpected input: found `5`"),
        ("process A\nA: run \"true\" => stdout \"{n:a} {n:a}\"\n".into(), "duplicate name `a`"),
        ("process A\nA: run \"true\" => stdout \"{n:process}\"\n".into(), "`process` is not a valid name"),
        ("process A\nA: run \"true\" => stdoot \"x\"\n".into(), "bad.scn:2:18: unknown output check `stdoot`"),
        (
            "process A, B\nA: run \"echo 5\" => stdout \"{pid:p}\"\nA: fork p\n".into(),
            "bad.scn:3:9: `p` is a pid captured from a program's output, not a declared process",
        ),
        (
            "process A\nA: run \"echo 5\" => stdout \"{n:c}\"\nA: stat c\n".into(),
            "bad.scn:3:9: `c` is a number (line 2), not a segment",
        ),
    ];
    for (input, want) in cases {
        write(dir.path(), "bad.scn", input);
        let out = harness(&["check", "bad.scn"], dir.path());
        let said = all(&out);
        assert_eq!(out.status.code(), Some(2), "{input:?}: {said}");
        assert!(said.contains(want), "{input:?}\nwant: {want}\ngot: {said}");
        assert!(!said.contains("panicked"), "{said}");
    }
    // The control: the same forms written right are accepted.
    write(
        dir.path(),
        "good.scn",
        "needs program \"sh\", command \"true\"\nprocess A\nA: run \"echo 5\" => stdout \"{n:c}\", stdout line -1 column 1 \"${c}\", stderr matches \"^$\"\nxfail \"why\"\neventually 1s: A: segments => 0\n",
    );
    let out = harness(&["check", "good.scn"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
}

/// A step marked xfail that fails is XFAIL (exit 0, reason and diff shown);
/// one that passes is XPASS (exit 0), and fails the run under --strict.
#[test]
fn xfail_and_xpass_statuses_exit_codes_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "xf.scn",
        "process A\nA: key k = 0x4d4f0001\nA: create s = k size 100\nA: rm s\nxfail \"upstream bug 42: counts removed segments\"\nA: segments => 1\nA: segments => 0\n",
    );
    write(dir.path(), "xp.scn", "process A\nxfail \"thought broken\"\nA: segments => 0\nA: segments => 0\n");
    // An xfail step that fails over a leak is a FAIL: leaks are never XFAIL.
    write(
        dir.path(),
        "leak.scn",
        "process A\nA: key k = 0x4d4f0002\nA: create s = k size 100\nxfail \"known\"\nA: segments => 0\nA: rm s\n",
    );

    let out = harness(&["run", "xf.scn"], dir.path());
    let said = all(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("XFAIL xf.scn [") && said.contains(": xfail: upstream bug 42: counts removed segments"),
        "{said}"
    );
    assert!(
        said.contains("xf.scn:6: A: segments => 1") && said.contains("expected: 1") && said.contains("actual:   0"),
        "{said}"
    );
    assert!(said.contains("0 passed, 0 failed, 0 skipped, 1 xfailed"), "{said}");
    // Line 7 did not run: the scenario ends at its xfail step.
    let json = harness(&["run", "--format", "json", "xf.scn"], dir.path());
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["scenarios"][0]["status"], "xfail", "{doc}");
    assert_eq!(doc["summary"]["xfailed"], 1);
    assert!(doc["scenarios"][0]["transcript"].as_array().unwrap().iter().all(|e| e["line"] != 7), "{doc}");

    for strict in [false, true] {
        let mut args = vec!["run", "xp.scn"];
        if strict {
            args.push("--strict");
        }
        let out = harness(&args, dir.path());
        let said = all(&out);
        assert_eq!(out.status.code(), Some(if strict { 1 } else { 0 }), "--strict {strict}: {said}");
        assert!(
            said.contains("XPASS xp.scn [") && said.contains("line 3 passed, but is marked xfail \"thought broken\""),
            "{said}"
        );
        assert!(said.contains("1 xpassed"), "{said}");
        // The scenario went on after the XPASS: line 4 ran.
        let json = harness(&["run", "--format", "json", "xp.scn"], dir.path());
        let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(doc["scenarios"][0]["status"], "xpass");
        assert!(doc["scenarios"][0]["transcript"].as_array().unwrap().iter().any(|e| e["line"] == 4), "{doc}");
    }

    let out = harness(&["run", "leak.scn"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("FAIL leak.scn") && all(&out).contains("leak:"), "{}", all(&out));
}

#[test]
fn junit_shows_xfail_as_skipped_and_xpass_by_strictness() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "xf.scn", "process A\nxfail \"bug 7\"\nA: segments => 3\n");
    write(dir.path(), "xp.scn", "process A\nxfail \"bug 8\"\nA: segments => 0\n");
    let lax = harness(&["run", "--format", "junit", "xf.scn", "xp.scn"], dir.path());
    assert_eq!(lax.status.code(), Some(0), "{}", all(&lax));
    let xml = text(&lax.stdout);
    assert!(
        xml.contains(
            "<skipped message=\"xfail: bug 7: line 3: A: segments =&gt; 3: expected 3, got 0\" type=\"Xfail\">"
        ),
        "{xml}"
    );
    assert!(
        xml.contains("<system-out>XPASS: line 3 passed, but is marked xfail &quot;bug 8&quot;</system-out>"),
        "{xml}"
    );
    assert!(!xml.contains("<failure"), "{xml}");
    let strict = harness(&["run", "--strict", "--format", "junit", "xf.scn", "xp.scn"], dir.path());
    assert_eq!(strict.status.code(), Some(1), "{}", all(&strict));
    let strict_xml = text(&strict.stdout);
    assert!(
        strict_xml.contains("<failure message=\"XPASS: line 3 passed") && strict_xml.contains("type=\"Xpass\""),
        "{strict_xml}"
    );
    for xml in [xml, strict_xml] {
        match validate(&xml) {
            Ok(()) => {}
            Err(Skip(why)) => eprintln!("skipped: JUnit not validated against junit-10.xsd: {why}"),
        }
    }
}

struct Skip(String);

/// Validates against `junit-10.xsd` with the venv `cli_output.rs` makes (if
/// there is one yet: else says why not). A document the schema refuses panics.
fn validate(xml: &str) -> Result<(), Skip> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("xsd-venv-{}", nix::unistd::Uid::effective()));
    let python: PathBuf = venv.join("bin/python");
    let has = Command::new(&python).args(["-c", "import xmlschema"]).output().is_ok_and(|o| o.status.success());
    if !has {
        return Err(Skip(format!("no {} with xmlschema (the cli_output test makes it)", python.display())));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.xml");
    std::fs::write(&file, xml).unwrap();
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/junit-10.xsd");
    let out = Command::new(&python)
        .args(["-c", "import sys, xmlschema; xmlschema.XMLSchema(sys.argv[1]).validate(sys.argv[2])"])
        .arg(&xsd)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "junit-10.xsd refuses it: {}\n{xml}", all(&out));
    Ok(())
}

#[test]
fn eventually_fails_with_the_last_answer_and_the_tries() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ev.scn", "process A\nA: key k = 0x4d4f0003\neventually 300ms: A: lookup k => present\n");
    let out = harness(&["run", "ev.scn"], dir.path());
    let said = all(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("ev.scn:3: eventually 300ms: A: lookup k => present"), "{said}");
    assert!(said.contains("expected: present"), "{said}");
    // 10, 20, 40, 80, 100 ms pauses: a handful of tries, the last one shown.
    let actual = said.lines().find(|l| l.trim_start().starts_with("actual:")).unwrap();
    let tries: u32 = actual.split("(try ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!((3..=12).contains(&tries), "{actual}");
    assert!(actual.contains("absent (try") && actual.contains("ms)"), "{actual}");
    let spent: u64 = actual.split("after ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((200..2000).contains(&spent), "{actual}");
    // The control: a condition that holds at once passes on the first try.
    write(dir.path(), "ok.scn", "process A\nA: key k = 0x4d4f0003\neventually 300ms: A: lookup k => absent\n");
    let out = harness(&["run", "-v", "ok.scn"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(all(&out).contains("absent (try 1, after"), "{}", all(&out));
}

/// An actor-answered `eventually` step right after another step of the same
/// process must still be repeated: the chain of consecutive steps sent to
/// one actor stops before it (before the fix, it rode along in the chain,
/// was tried once, and failed without the tries).
#[test]
fn eventually_after_a_step_of_the_same_process_is_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let sc = "process A, C\nA: create s = private size 4096\nA: attach m = s\nA: fork C\nC: detach m\neventually 300ms: A: stat s => nattch 2\nA: detach m\nA: rm s\n";
    write(dir.path(), "ev.scn", sc);
    let out = harness(&["run", "ev.scn"], dir.path());
    let said = all(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let actual = said.lines().find(|l| l.trim_start().starts_with("actual:")).unwrap();
    let tries: u32 = actual
        .split("(try ")
        .nth(1)
        .unwrap_or_else(|| panic!("no tries: {said}"))
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(tries >= 3, "{actual}");
    // The control: the same chain whose condition holds passes.
    write(dir.path(), "ok.scn", &sc.replace("nattch 2", "nattch 1"));
    let out = harness(&["run", "ok.scn"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
}

#[test]
fn unmet_needs_skip_with_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let body = "process A\nA: segments => 0\n";
    write(dir.path(), "a.scn", &format!("needs program \"no-such-program-h4\"\n{body}"));
    write(dir.path(), "b.scn", &format!("needs command \"sh -c 'echo too old >&2; exit 3'\"\n{body}"));
    write(dir.path(), "c.scn", &format!("needs program \"${{here}}/tool\"\n{body}"));
    write(dir.path(), "d.scn", &format!("timeout 200ms\nneeds command \"sleep 5\"\n{body}"));
    write(dir.path(), "e.scn", &format!("needs root, program \"sh\", command \"true\"\n{body}"));
    let out = harness(&["run", "."], dir.path());
    let said = all(&out);
    assert!(
        said.contains("SKIP ./a.scn") && said.contains("needs program `no-such-program-h4`, which is not on PATH"),
        "{said}"
    );
    assert!(
        said.contains("needs command `sh -c 'echo too old >&2; exit 3'`, which failed (exit status: 3): too old"),
        "{said}"
    );
    assert!(said.contains("SKIP ./c.scn") && said.contains("/tool`, which is not an executable file here"), "{said}");
    assert!(said.contains("needs command `sleep 5`, which did not finish within 200ms (killed)"), "{said}");
    // `${here}` is the scenario's folder: once the tool is there, c.scn runs.
    write(dir.path(), "tool", "#!/bin/sh\n");
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(dir.path().join("tool")).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(dir.path().join("tool"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = harness(&["run", "c.scn"], dir.path());
    assert!(all(&out).contains("PASS c.scn"), "{}", all(&out));
    if nix::unistd::Uid::effective().is_root() {
        assert!(said.contains("PASS ./e.scn"), "{said}");
    }
}

#[test]
fn run_dir_recurses_sorted_and_filters_on_the_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    let body = "process A\nA: segments => 0\n";
    write(dir.path(), "t/b.scn", body);
    write(dir.path(), "t/a/z.scn", body);
    write(dir.path(), "t/a/deeper/y.scn", body);
    write(dir.path(), "t/notes.txt", "not a scenario");
    write(dir.path(), "t/c.scn.orig", "not a scenario either");
    let out = harness(&["run", "--list", "t"], dir.path());
    assert_eq!(text(&out.stdout), "t/a/deeper/y.scn\nt/a/z.scn\nt/b.scn\n", "{}", all(&out));
    let out = harness(&["check", "t"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert_eq!(text(&out.stdout).lines().count(), 3, "{}", all(&out));
    // --filter sees the path --list prints, `t/a/z.scn`.
    let out = harness(&["run", "--list", "--filter", "a/", "t"], dir.path());
    assert_eq!(text(&out.stdout), "t/a/deeper/y.scn\nt/a/z.scn\n", "{}", all(&out));
    let out = harness(&["run", "--list", "--filter", "t/a/z", "t"], dir.path());
    assert_eq!(text(&out.stdout), "t/a/z.scn\n", "{}", all(&out));
    // A symbolic link loop is an error naming it, for run and check.
    std::os::unix::fs::symlink("..", dir.path().join("t/a/up")).unwrap();
    for verb in ["run", "check"] {
        let out = harness(&[verb, "t"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", all(&out));
        assert!(all(&out).contains("t/a/up: a symbolic link loop"), "{}", all(&out));
    }
    std::fs::remove_file(dir.path().join("t/a/up")).unwrap();
    // A broken link is an error too.
    std::os::unix::fs::symlink("nowhere", dir.path().join("t/gone.scn")).unwrap();
    let out = harness(&["check", "t"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(all(&out).contains("t/gone.scn: a broken symbolic link"), "{}", all(&out));
}

#[test]
fn an_unreadable_folder_is_an_error_naming_it() {
    if nix::unistd::Uid::effective().is_root() {
        // Root reads any folder: drop to nobody in a child to see the refusal.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t/x/y.scn", "process A\nA: segments => 0\n");
        for d in [dir.path(), &dir.path().join("t")] {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(dir.path().join("t/x"), std::os::unix::fs::PermissionsExt::from_mode(0o300)).unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(common::bin())
            .args(["check", "t"])
            .current_dir(dir.path())
            .output();
        let Ok(out) = out else {
            eprintln!("skipped: no setpriv to drop root");
            return;
        };
        assert_eq!(out.status.code(), Some(2), "{}", all(&out));
        assert!(all(&out).contains("t/x: cannot read it"), "{}", all(&out));
    } else {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t/x/y.scn", "process A\nA: segments => 0\n");
        std::fs::set_permissions(dir.path().join("t/x"), std::os::unix::fs::PermissionsExt::from_mode(0o300)).unwrap();
        let out = harness(&["check", "t"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", all(&out));
        assert!(all(&out).contains("t/x: cannot read it"), "{}", all(&out));
    }
}

/// Output checks judged at run time: each form passes on the right output
/// and fails (naming the step) on a changed expectation.
#[test]
fn output_checks_hold_and_their_twins_fail() {
    let dir = tempfile::tempdir().unwrap();
    let good = "process A\nA: run \"sh -c 'echo id 42; echo total 7 pages >&2'\" => status 0, stdout line 1 column 2 \"{n:id}\", stderr line -1 \"total {n:t} pages\", stdout matches \"(?m)^id ${id}$\", stderr contains \"${t} pages\"\nA: run \"echo ${id} ${t}\" => stdout \"42 7\"\n";
    write(dir.path(), "good.scn", good);
    let out = harness(&["run", "good.scn"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    for (from, to) in [
        ("column 2 \"{n:id}\"", "column 3 \"{n:id}\""),
        ("line -1 \"total", "line 1 \"tutal"),
        ("\"(?m)^id ${id}$\"", "\"(?m)^id ${id}0$\""),
        ("contains \"${t} pages\"", "contains \"${id} pages\""),
        ("stdout \"42 7\"", "stdout \"42 8\""),
        ("stderr line -1", "stdout line -1"),
    ] {
        let twin = good.replacen(from, to, 1);
        assert_ne!(twin, good, "{from}");
        write(dir.path(), "twin.scn", &twin);
        let out = harness(&["run", "twin.scn"], dir.path());
        assert_eq!(out.status.code(), Some(1), "{from} -> {to}: {}", all(&out));
        assert!(all(&out).contains("FAIL twin.scn:"), "{}", all(&out));
        // The failure names the first check that does not hold, as applied.
        assert!(all(&out).contains("; fails at: "), "{}", all(&out));
    }
}

/// `finally:` cleans up after an `xfail` step that failed: XFAIL. The same
/// file without `finally:` leaks (FAIL), and a `finally` step that fails
/// after the xfail turns the verdict into FAIL: only the marked defect may
/// fail in an XFAIL scenario.
#[test]
fn finally_cleans_up_after_an_xfail_step_and_its_own_failure_is_a_fail() {
    let dir = tempfile::tempdir().unwrap();
    let head = "process A\nA: key k = 0x4d4f0003\nA: create s = k size 100\nxfail \"known\"\nA: segments => 0\n";
    write(dir.path(), "clean.scn", &format!("{head}finally:\nA: rm s\nA: segments => 0\n"));
    write(dir.path(), "leaky.scn", &format!("{head}A: rm s\n"));
    write(dir.path(), "broken.scn", &format!("{head}finally:\nA: rm s\nA: segments => 1\n"));

    let out = harness(&["run", "clean.scn"], dir.path());
    let said = all(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("XFAIL clean.scn [") && said.contains("1 xfailed"), "{said}");
    assert!(!said.contains("leak:"), "{said}");

    let out = harness(&["run", "leaky.scn"], dir.path());
    let said = all(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("FAIL leaky.scn") && said.contains("leak:"), "{said}");

    let out = harness(&["run", "broken.scn"], dir.path());
    let said = all(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("FAIL broken.scn") && said.contains("finally steps failed too"), "{said}");
}
