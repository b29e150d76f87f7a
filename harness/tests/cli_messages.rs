//! What the harness says when a scenario goes wrong, through the CLI: a
//! mapping step refused before it reaches the actor's own memory, `check`'s
//! errors for bad huge page sizes, dangling `xfail`s and misfit
//! expectations, the stat answer a failed expectation shows, a negative
//! sysctl write, the leak messages of daemons and `run` steps, and how a
//! `repeat` ends. Each runs
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

/// `repeat`: the step passes at its `until` errno with the count, its
/// segments and attachments are undone by the harness (the first run has
/// no leak: status 0), and a
/// repetition that reaches its most tries, or stops at another errno,
/// fails at its line saying so.
#[test]
fn a_repeat_counts_until_its_errno_and_says_when_it_never_came() {
    let dir = tempfile::tempdir().unwrap();
    let sc = "process A\nA: key k = 0x4d520002\nA: create s = private size 4096\n\
              A: repeat 5 create k size 4096 excl until EEXIST => count 1\n\
              A: repeat 3 attach s until EINVAL => count 3\nA: rm s\n";
    let (code, said) = run(dir.path(), "r.scn", &sc.replace("A: repeat 3 attach s until EINVAL => count 3\n", ""), &[]);
    assert_eq!(code, Some(0), "{said}");
    // Most tries reached: every attach succeeds.
    let (code, said) = run(dir.path(), "m.scn", sc, &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("m.scn:5: A: repeat 3 attach s until EINVAL => count 3"), "{said}");
    assert!(said.contains("expected: -1 EINVAL within 3 tries, count 3"), "{said}");
    assert!(said.contains("actual:   count 3: every try succeeded, the most tries reached without an error"), "{said}");
    // Another errno ends it.
    let (code, said) = run(dir.path(), "o.scn", &sc.replace("until EEXIST", "until ENOSPC"), &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("actual:   count 1, then -1 EEXIST"), "{said}");
    // Judged wrong, its segment is still the teardown's: not listed as
    // left behind (only `s`, which the failure kept from its `rm`, is).
    assert!(said.contains("leak: segment shmid 0 (key IPC_PRIVATE"), "{said}");
    assert!(!said.lines().any(|l| l.contains("leak") && l.contains("0x4d520002")), "{said}");
}

/// A step that does not answer in time names what holds it up: the
/// program its process runs, each of that program's processes with its
/// command, pid and state; not the actor's own poll, and the teardown does
/// not wait for that actor again (before: "process A (pid 2) is sleeping
/// (S), waiting in poll_schedule_timeout.constprop.0", then "at teardown,
/// no answer within 500ms: ..."; this test failed).
#[test]
fn a_timeout_names_the_program_that_is_stuck() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (namespace isolation)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (code, said) = run(
        dir.path(),
        "t.scn",
        "process A\nA: run \"sh -c 'sleep 20 | cat'\"\n",
        &["--isolation", "namespace", "--timeout", "1s"],
    );
    println!("run with --timeout 1s took {:?}", started.elapsed());
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("no answer within 1s: process A (pid 2) waits for its programs \"sh -c sleep 20 | cat\" (pid "),
        "{said}"
    );
    assert!(
        said.contains("\"sleep 20\" (pid ") && said.contains("\"cat\" (pid ") && said.contains("sleeping (S)"),
        "{said}"
    );
    assert!(!said.contains("poll_schedule_timeout") && !said.contains("at teardown"), "{said}");
    let (code, said) = run(
        dir.path(),
        "w.scn",
        "process A\nA: spawn D = \"sleep 20\"\nA: wait D => status 0\n",
        &["--isolation", "namespace", "--timeout", "1s"],
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("process A (pid 2) waits for its program \"sleep 20\" (pid 3, sleeping (S)"), "{said}");
    assert!(!said.contains("at teardown"), "{said}");
    // A process forked by a step is an actor, not a program of its parent:
    // neither named nor killed with the program (it finishes as usual).
    let (code, said) = run(
        dir.path(),
        "f.scn",
        "process A, B\nA: fork B\nA: run \"sleep 20\"\n",
        &["--isolation", "namespace", "--timeout", "1s"],
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("process A (pid 2) waits for its program \"sleep 20\" (pid 4, sleeping (S)"), "{said}");
    assert!(!said.contains("process B was killed") && !said.contains("at teardown"), "{said}");
}

/// `--set NAME=VALUE` gives `${NAME}` in a program's command a value from
/// the command line (`check` and `run`); without it the name is an error at
/// its `file:line:col` that names `--set` as the remedy; a name the
/// scenario binds itself cannot be set. (Before: no `--set` at all.)
#[test]
fn set_gives_commands_values_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = "process A\nA: run \"${bin}/echo hi\" => status 0, stdout \"hi\\n\"\n";
    let said = check(dir.path(), "s.scn", text);
    assert!(said.contains("s.scn:2:8: unknown name `${bin}` in the command"), "{said}");
    assert!(said.contains("`--set bin=VALUE` on `run` or `check`"), "{said}");
    let ok = all(&harness(&["check", "--set", "bin=/bin", "s.scn"], dir.path()));
    assert!(ok.contains("ok    s.scn"), "{ok}");
    write(dir.path(), "b.scn", "process A\nA: key bin = 0x10\nA: run \"${bin}/echo\"\n");
    let shadow = all(&harness(&["check", "--set", "bin=/bin", "b.scn"], dir.path()));
    assert!(shadow.contains("b.scn:2:8: `bin` is set on the command line (`--set bin=...`)"), "{shadow}");
    let bad = harness(&["check", "--set", "bin", "s.scn"], dir.path());
    assert_eq!(bad.status.code(), Some(2));
    assert!(all(&bad).contains("`bin` has no `=`: expected NAME=VALUE"), "{}", all(&bad));
    if nix::unistd::Uid::effective().is_root() {
        let (code, said) = run(dir.path(), "s.scn", text, &["--isolation", "namespace", "--set", "bin=/bin"]);
        assert_eq!(code, Some(0), "{said}");
    }
}

/// A program that cannot be found says where it was looked for: the PATH
/// searched for a bare name, the path for one with a `/` (before: only
/// `-1 ENOENT (No such file or directory)`).
#[test]
fn a_missing_program_says_where_it_was_looked_for() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (namespace isolation)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, said) =
        run(dir.path(), "m.scn", "process A\nA: run \"no-such-program-here\"\n", &["--isolation", "namespace"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(
            "-1 ENOENT (No such file or directory): cannot start `no-such-program-here`: looked for it in PATH ("
        ) && said.contains("/usr/bin"),
        "{said}"
    );
    let (code, said) = run(dir.path(), "p.scn", "process A\nA: spawn \"./bin/nope\"\n", &["--isolation", "namespace"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("cannot start `./bin/nope`: looked for /") && said.contains("/./bin/nope"), "{said}");
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
