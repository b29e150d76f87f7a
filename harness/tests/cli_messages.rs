//! What the harness says when a scenario goes wrong, through the CLI: a
//! mapping step refused before it reaches the actor's own memory, `check`'s
//! errors for bad huge page sizes, dangling `xfail`s and misfit
//! expectations, the stat answer a failed expectation shows, a negative
//! sysctl write, and the leak messages of daemons and `run` steps. Each runs
//! a small scenario and pins the message, with a control that shows the
//! check can fail. (Found by issue 10's independent review.)

use std::path::Path;

mod common;
use common::{all, harness, write};

/// Writes `text` to `dir/name` and runs `shm-harness run EXTRA NAME` there:
/// its exit status and everything it printed.
fn run(dir: &Path, name: &str, text: &str, extra: &[&str]) -> (Option<i32>, String) {
    write(dir, name, text);
    let args: Vec<&str> = ["run"].into_iter().chain(extra.iter().copied()).chain([name]).collect();
    let out = harness(&args, dir);
    (out.status.code(), all(&out))
}

/// A mapping step whose range reaches past the scenario's attachments, or a
/// `SHM_REMAP` onto the actor's own memory, is refused before the call:
/// before the fix `unmap 0 1M` unmapped the actor's own memory (it died of
/// SIGSEGV after the step) and `remap` at the page after an attachment
/// silently replaced the actor's anonymous memory.
#[test]
fn mapping_steps_never_reach_the_actors_own_memory() {
    let dir = tempfile::tempdir().unwrap();
    let head = "process A\nA: create s = private size 4096\nA: attach m = s\n";
    for (name, step) in [
        ("unmap.scn", "A: mapping m unmap 0 1M\n"),
        ("protect.scn", "A: mapping m protect none 0 64M\n"),
        ("pages.scn", "A: mapping m pages 4096 4096 0\n"),
    ] {
        let (code, said) = run(dir.path(), name, &format!("{head}{step}A: detach m\nA: rm s\n"), &[]);
        assert_eq!(code, Some(1), "{said}");
        assert!(said.contains(&format!("{name}:4: ")) && said.contains("refused: the range"), "{said}");
        assert!(said.contains("the acting process's own memory"), "{said}");
        assert!(!said.contains("killed by"), "the actor must survive: {said}");
    }
    let remap = "process A\nA: create s = private size 4096\nA: create t = private size 4096\nA: attach m = s\n\
                 A: attach n = t at m+4096 remap\nA: detach n\nA: detach m\nA: rm s\nA: rm t\n";
    let (code, said) = run(dir.path(), "remap.scn", remap, &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("remap.scn:5: ") && said.contains("refused: the range"), "{said}");
    // The control: the same steps within the attachment (three pages; a
    // remap over the attachment itself) are the kernel's to answer.
    let ok = "process A\nA: create s = private size 12K\nA: create t = private size 4096\nA: attach m = s\n\
              A: mapping m protect r 4096 4096\nA: mapping m unmap 8192 4096\nA: attach n = t at m remap\n\
              A: stat s => nattch 1\nA: detach n\nA: detach at m\nA: stat s => nattch 0\nA: rm s\nA: rm t\n";
    let (code, said) = run(dir.path(), "ok.scn", ok, &[]);
    assert_eq!(code, Some(0), "{said}");
}

/// A failing `index`/`seq` expectation shows the id's index and seq in the
/// actual answer (before, every stat field but those two was listed).
#[test]
fn a_stat_answer_shows_index_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let sc = "process A\nA: create s = private size 4096\nA: stat s => seq 1\n";
    let (code, said) = run(dir.path(), "seq.scn", sc, &[]);
    assert_eq!(code, Some(1), "{said}");
    let actual = said.lines().find(|l| l.trim_start().starts_with("actual:")).unwrap_or_default();
    assert!(actual.ends_with(", index 0, seq 0"), "{said}");
    // The control: the expectation that holds passes.
    let (code, said) = run(dir.path(), "ok.scn", &format!("{}A: rm s\n", sc.replace("seq 1", "seq 0")), &[]);
    assert_eq!(code, Some(0), "{said}");
}

/// Writes `text` to `dir/name` and returns all `shm-harness check NAME` printed.
fn check(dir: &Path, name: &str, text: &str) -> String {
    write(dir, name, text);
    all(&harness(&["check", name], dir))
}

/// `check` names the misuse itself: an unknown huge page size (it said
/// "unexpected input ... expected `mode`, `excl`, ..."), and a dangling
/// `xfail` in a file without steps (it said "no steps").
#[test]
fn check_names_bad_huge_sizes_and_dangling_xfails() {
    let dir = tempfile::tempdir().unwrap();
    let said = check(dir.path(), "h.scn", "process A\nA: create s = private size 4096 hugetlb 3M\n");
    assert!(said.contains("h.scn:2:41: unknown huge page size `3M`"), "{said}");
    let said = check(dir.path(), "x.scn", "process A\nxfail \"x\"\n");
    assert!(said.contains("x.scn:2:1: `xfail` marks the step after it, and there is none"), "{said}");
    // The controls: the sizes the language knows, and a file without steps.
    let said = check(dir.path(), "ok.scn", "process A\nA: create s = private size 2M hugetlb 2M\nA: rm s\n");
    assert!(said.starts_with("ok"), "{said}");
    let said = check(dir.path(), "n.scn", "process A\n");
    assert!(said.contains("n.scn:1:1: no steps"), "{said}");
}

/// Every misfit of an operation and its expectation says what would fit,
/// as the documented format `FILE:LINE:COL: MESSAGE (expected WHAT)` has it.
#[test]
fn misfit_expectations_say_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let head = "process A\nA: create s = private size 4096\nA: attach m = s\n";
    for (step, want) in [
        ("A: meminfo HugePages_Free => EINVAL\n", "(expected a number expectation)"),
        ("A: lookup 0x10 => ENOENT\n", "(expected `present` or `absent`)"),
        ("A: read m 0 2 => \"abc\"\n", "(expected data of exactly 2 bytes, or a read of 3 bytes)"),
        ("A: peek m 0 => EFAULT\n", "(expected `refused` (out of bounds or read-only) or a signal such as `SIGSEGV`)"),
        ("A: rm s => refused\n", "(expected `ok`, an errno or a signal)"),
        ("A: kill => ok\n", "(expected a signal (`=> SIGKILL`) or no expectation)"),
        ("A: lookup 0x10\n", "(expected `=> present` or `=> absent`)"),
        ("A: segments => ok\n", "(expected `=>` and a number expectation)"),
    ] {
        let said = check(dir.path(), "f.scn", &format!("{head}{step}"));
        assert!(said.contains("f.scn:4:4: ") && said.contains(want), "{step}: {said}");
    }
    // `here` is reserved like `dir`: `${here}` means the scenario's folder.
    let said = check(dir.path(), "f.scn", &format!("{head}A: key here = 0x10\n"));
    assert!(said.contains("f.scn:4:8: `here` is not a valid name"), "{said}");
}

/// A process some program left behind (a daemon, not `spawn`ed) that still
/// holds an attachment is a leak whose message does not advise `wait` or
/// `signal` (which `check` refuses for it); a spawned one's still does.
#[test]
fn a_daemons_leak_says_how_to_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    // perl's syscall: shmat(2) is 30 on x86_64, 196 on aarch64.
    let perl = r#"perl -MPOSIX -e '$n = {x86_64 => 30, aarch64 => 196}->{(uname())[4]}; syscall($n, $ARGV[0] + 0, 0, 0); open(F, q(>), q(ready)); close F; sleep 1000' \"$1\""#;
    let files =
        format!("file daemon.sh \"({perl} </dev/null >/dev/null 2>&1 &)\\n\"\nfile spawned.sh \"exec {perl}\\n\"\n");
    let tail = "eventually 5s: A: run \"test -e ready\" => status 0\nA: rm s\n";
    let sc = format!("{files}process A\nA: create s = private size 4096\nA: run \"sh daemon.sh ${{s}}\"\n{tail}");
    let (code, said) = run(dir.path(), "d.scn", &sc, &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("(left by a program of the scenario, not spawned by it) still has shmid"), "{said}");
    assert!(!said.contains("wait for it"), "{said}");
    // The control: a spawned attacher is told to be waited for.
    let sc =
        format!("{files}process A\nA: create s = private size 4096\nA: spawn D = \"sh spawned.sh ${{s}}\"\n{tail}");
    let (code, said) = run(dir.path(), "e.scn", &sc, &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("leak: program D still has shmid") && said.contains("wait for it"), "{said}");
}

/// A sysctl write may be negative (`check` refused `-1`); the kernel's
/// answer is judged: 6.18 refuses `shm_next_id = -1` (its minimum is 0).
#[test]
fn a_negative_sysctl_write_is_made_and_judged() {
    let dir = tempfile::tempdir().unwrap();
    let sc = "process A\nA: sysctl shm_next_id = -1 => EINVAL\nA: sysctl shm_next_id => -1\n";
    let (code, said) = run(dir.path(), "n.scn", sc, &[]);
    if said.contains("SKIP") {
        return; // no private IPC namespace here
    }
    assert_eq!(code, Some(0), "{said}");
    // The control: the same write expected to succeed fails at its line.
    let (code, said) = run(dir.path(), "c.scn", &sc.replace(" => EINVAL", ""), &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("c.scn:2: A: sysctl shm_next_id = -1") && said.contains("EINVAL"), "{said}");
}

/// A segment made by a `run` step's program is named with that line when it
/// leaks, also when the step failed or was an `eventually` try that was
/// not judged (before: "created by pid 3", no line; this test failed).
#[test]
fn a_failed_or_repeated_run_names_its_line_in_a_leak() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (namespace isolation)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, said) = run(
        dir.path(),
        "f.scn",
        "process A\nA: run \"ipcmk -M 4096\" => stdout contains \"nope\"\n",
        &["--isolation", "namespace"],
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("f.scn:2: leak: segment shmid") && said.contains("created by A at line 2"), "{said}");
    let (code, said) = run(
        dir.path(),
        "e.scn",
        "process A\neventually 200ms: A: run \"ipcmk -M 4096\" => stdout contains \"nope\"\n",
        &["--isolation", "namespace"],
    );
    assert_eq!(code, Some(1), "{said}");
    let leaks = said.lines().filter(|l| l.contains("leak: segment")).count();
    let named = said.lines().filter(|l| l.contains("e.scn:2: leak: segment") && l.contains("at line 2")).count();
    assert!(leaks >= 2 && named == leaks, "every try's segment names line 2: {said}");
}

/// A `{s}` capture of a word that is no shmid (`-1`) says why it did not
/// match, in a template and in a `line N` check alike (before, the report
/// showed the template and the output as if they matched).
#[test]
fn a_capture_of_a_word_not_of_its_kind_says_why() {
    let dir = tempfile::tempdir().unwrap();
    for (name, checks) in [("t.scn", r#"stdout "id {s}\n""#), ("l.scn", r#"stdout line 1 column 2 "{s}""#)] {
        let sc = format!("process A\nA: run \"echo id -1\" => status 0, {checks}\n");
        let (code, said) = run(dir.path(), name, &sc, &[]);
        assert_eq!(code, Some(1), "{said}");
        assert!(said.contains(&format!("{name}:2: ")), "{said}");
        assert!(said.contains(r#"`{s}` caught "-1": a captured shmid is plain digits"#), "{said}");
        // The control: digits are taken, and a text that differs elsewhere
        // names no capture.
        let (code, said) = run(dir.path(), name, &sc.replace("-1", "7"), &[]);
        assert_eq!(code, Some(0), "{said}");
        let (code, said) = run(dir.path(), name, &sc.replace("echo id -1", "echo di"), &[]);
        assert_eq!(code, Some(1), "{said}");
        assert!(!said.contains("caught"), "{said}");
    }
}
