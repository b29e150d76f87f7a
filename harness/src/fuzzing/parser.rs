//! The parser oracle: random text into the scenario parser.
//!
//! For every input, [`check`] requires that
//!
//! - [`parse`] returns (never panics);
//! - an error points inside the text: line 1 to the number of lines + 1,
//!   column 1 to the length of that line + 1 (1 on the line after the last),
//!   with a message;
//! - a scenario prints (its `Display`) to text that parses again, to the same
//!   scenario ([`same_scenario`]: all but file name and line numbers), and
//!   whose printing is the same text again (printing is a fixpoint).
//!
//! Inputs that are not UTF-8 are skipped: the parser takes `&str`, files are
//! read with `read_to_string` (which refuses them), and a lossy conversion
//! would only feed it U+FFFD, which the fuzzer reaches anyway. Inputs over
//! [`MAX_INPUT`] bytes are skipped too, to keep runs fast.

use crate::scenario::{parse, same_scenario, ParseError};

/// Inputs longer than this are skipped.
pub const MAX_INPUT: usize = 4096;

/// The file name given to the parser.
const FILE: &str = "<fuzz>";

/// Checks one input; panics, showing the input and what went wrong, on any
/// violation.
pub fn check(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(violation) = check_text(text) {
        panic!("{violation}");
    }
}

/// The oracle on text: `Err` describes the violation (with the input).
///
/// # Errors
/// A description of the violated property, with the input and the printed forms.
pub fn check_text(text: &str) -> Result<(), String> {
    let first = match parse(FILE, text) {
        Ok(sc) => sc,
        Err(e) => return check_error(text, &e),
    };
    let printed = first.to_string();
    let second = parse(FILE, &printed).map_err(|e| {
        format!("the printed scenario does not parse: {e}\n--- input:\n{text}\n--- input (escaped): {text:?}\n--- printed:\n{printed}")
    })?;
    if !same_scenario(&first, &second) {
        return Err(format!(
            "the printed scenario parses to a different one\n--- input:\n{text}\n--- input (escaped): {text:?}\n--- printed:\n{printed}\n--- first: {first:#?}\n--- second: {second:#?}"
        ));
    }
    let reprinted = second.to_string();
    if reprinted != printed {
        return Err(format!(
            "printing is not a fixpoint\n--- input:\n{text}\n--- input (escaped): {text:?}\n--- printed:\n{printed}\n--- printed again:\n{reprinted}"
        ));
    }
    Ok(())
}

fn check_error(text: &str, e: &ParseError) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().collect();
    let bad = |what: &str| Err(format!("{what}: {e} ({e:?})\n--- input:\n{text}\n--- input (escaped): {text:?}"));
    if e.file != FILE {
        return bad("the error names another file");
    }
    if e.message.is_empty() {
        return bad("the error has no message");
    }
    if e.line < 1 || e.line > lines.len() + 1 {
        return bad(&format!("the error's line is outside 1..={}", lines.len() + 1));
    }
    let width = lines.get(e.line - 1).map_or(0, |l| l.chars().count());
    if e.col < 1 || e.col > width + 1 {
        return bad(&format!(
            "the error's column is outside 1..={} (line {} has {width} characters)",
            width + 1,
            e.line
        ));
    }
    // Rendering the error must not panic either.
    let _ = e.to_string();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/parser");

    fn files(dir: &str, ext: Option<&str>) -> Vec<std::path::PathBuf> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| ext.is_none_or(|ext| p.extension().is_some_and(|x| x == ext)))
            .collect();
        out.sort();
        out
    }

    /// Parses, and requires the round trip.
    fn round_trips(text: &str) -> crate::scenario::Scenario {
        let sc = parse(FILE, text).unwrap_or_else(|e| panic!("does not parse: {e}\n{text}"));
        if let Err(v) = check_text(text) {
            panic!("{v}");
        }
        sc
    }

    /// Requires an error with a position in range.
    fn fails(text: &str) -> ParseError {
        let e = parse(FILE, text).expect_err(text);
        if let Err(v) = check_text(text) {
            panic!("{v}");
        }
        e
    }

    #[test]
    fn every_scenario_round_trips() {
        let paths = files(SCENARIOS, Some("scn"));
        assert!(paths.len() >= 50, "only {} scenarios in {SCENARIOS}", paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("readable");
            let sc = parse(FILE, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!sc.steps.is_empty());
            check_text(&text).unwrap_or_else(|v| panic!("{}: {v}", path.display()));
            check(text.as_bytes());
        }
    }

    #[test]
    fn every_corpus_seed_passes() {
        let paths: Vec<_> =
            files(CORPUS, None).into_iter().filter(|p| p.extension().is_none_or(|x| x != "md")).collect();
        assert!((8..=32).contains(&paths.len()), "{} seeds", paths.len());
        let mut parsed = 0;
        for path in paths {
            let data = std::fs::read(&path).expect("readable");
            assert!(data.len() < 2048, "{} is {} bytes", path.display(), data.len());
            check(&data);
            parsed += usize::from(std::str::from_utf8(&data).is_ok_and(|t| parse(FILE, t).is_ok()));
        }
        assert!(parsed >= 8, "only {parsed} seeds parse");
    }

    #[test]
    fn strings_with_escapes_and_hashes() {
        let sc = round_trips(
            "process A # the only one\n\
             file \"dir/a #b\" \"line\\none\\t\\\"q\\\" \\\\ # not a comment\"\n\
             file plain.txt\n\
             A: key k = ftok \"dir/a #b\" 255 # comment\n\
             A: create s = k size 64\n\
             A: attach m = s\n\
             A: write m 0 \"\\x00\\xff\\x7f\\u{85}\\r#\\\"\"\n\
             A: write m 8 \"\u{85}é\u{9f}\"\n\
             A: read m 0 2 => \"\\0\\xff\"\n\
             A: detach m\n\
             A: rm s\n"
                .replace("\\u{85}", "\u{85}")
                .as_str(),
        );
        assert_eq!(sc.files[0].name, "dir/a #b");
        assert_eq!(sc.files[0].content, "line\none\t\"q\" \\ # not a comment");
    }

    #[test]
    fn literal_keys_negative_and_hex() {
        let sc = round_trips(
            "process A\n\
             A: key a = -1\nA: key b = -2147483648\nA: key c = 0xffffffff\nA: key d = 0\nA: key e = private\n\
             A: create -5 size 1 => EEXIST | ENOENT | ok\nA: open 2147483647 => ENOENT\nA: lookup 0 => absent\n\
             A: lookup -7 => present\n",
        );
        assert!(matches!(sc.steps[0].op, crate::scenario::Op::KeyLiteral { value: -1, .. }));
    }

    #[test]
    fn unnamed_ftok_and_outcomes() {
        round_trips(
            "process A, B\n\
             A: key ftok \"x\" 1 => ENOENT\n\
             A: key ftok \"x\" 0x14 => ENOENT | EACCES\n\
             A: create s = private size 4096\n\
             A: attach m = s ro\n\
             A: write m 0 \"x\" => refused\n\
             A: poke m 0 1 => SIGSEGV\n\
             B: exit 3\n",
        );
        round_trips("process A\nA: kill => SIGKILL\n");
        round_trips("process A\nA: kill => SIGTERM\n");
        round_trips("process A\nA: crash => SIGABRT\n");
        round_trips("process A\nA: crash => SIGSEGV\n");
        round_trips("process A\nA: exit 0\n");
        round_trips("process A\nA: exit => SIGKILL\n");
        round_trips("process A\nA: segments => 0x10\n");
    }

    #[test]
    fn concurrent_steps_and_forks() {
        let sc = round_trips(
            "process A, B, C\n\
             A: key k = 0xc0c00002\n\
             A: create a = k size 4096\n\
             & B: create k size 4096 => ok | EEXIST\n\
             & C: open k => ENOENT\n\
             A: attach m = a exec ro\n\
             process D\n\
             A: fork D\n\
             D: detach m\n\
             D: exit 7\n\
             A: detach m\n\
             A: rm a\n",
        );
        assert_eq!(sc.processes[3].forked_from.as_deref(), Some("A"));
        assert!(!sc.steps[1].concurrent && sc.steps[2].concurrent && sc.steps[3].concurrent);
    }

    #[test]
    fn all_stat_fields_and_set() {
        round_trips(
            "process A, U uid 1000\nprocess G gid 0x10 uid 2\n\
             A: create s = 0x1234 size 1M mode 0o640 excl hugetlb noreserve\n\
             A: set s mode 0 uid 4294967295 gid 7\n\
             A: set s gid 1\n\
             A: stat s => size 1048576, nattch 0 mode 0000, key 0x00001234, private, key private, dest no, \
             locked yes, cpid A, lpid none, lpid U, uid 1, gid 2, cuid 3, cgid 4\n\
             A: lock s\nA: unlock s => EPERM\nA: rm s\n",
        );
    }

    #[test]
    fn run_with_captures_and_checks() {
        round_trips(
            "process A\nneeds namespace\n\
             A: run \"ipcmk -M 4096\" => status 0, stdout \"Shared memory id: {s}\\n\"\n\
             A: run \"sh -c 'ipcs -m | grep -c ${s}'  '' ${dir}/x\" => stdout contains \"1\", stderr contains \"\"\n\
             A: run \"ipcmk -M 1\" => stdout \"{key:k} {t}\\n\"\n\
             A: run \"echo \\\"hi\\\" \u{85}x\" => stdout contains \"\\\"#\", status 255\n\
             A: run \"nope\" => ENOENT\n\
             A: rm s\nA: rm t\n",
        );
    }

    #[test]
    fn process_forms() {
        let sc = round_trips(
            "process A, B, C\n\
             A: create s = private size 4096\n\
             A: spawn D = \"sh -c 'exit 3' ${s}\"\n\
             A: spawn \"nope\" => ENOENT\n\
             B: signal D STOP\nB: signal D SIGCONT\nB: signal D 15 => ok | ESRCH\n\
             A: stat s => cpid A, lpid D\n\
             A: wait D => signal TERM, status 0, stdout \"{t}\", stderr contains \"x\"\n\
             A: exec\nA: unshare ipc\nC: setns A\nB: signal C 34\n\
             finally:\nA: rm s\n& B: segments => 0\n",
        );
        assert_eq!(sc.finally, Some(12));
        round_trips("process A\nA: spawn D = \"true\"\nfinally:\nA: wait D\n");
    }

    #[test]
    fn data_forms() {
        round_trips(
            "process A\n\
             A: create s = private size 128K\n\
             A: attach m = s\n\
             A: write m 0 hex \"DEad beef 00\"\n\
             A: write m 0x10 hex \"\"\n\
             A: write m 1K pattern \"ab\\xff\" 65537\n\
             A: write m 100 zero 0\n\
             A: write m 100 \"\"\n\
             A: read m 0 5 => hex \"de ad be ef 00\"\n\
             A: read m 1024 3 => pattern \"ab\\xff\" 3\n\
             A: read m 99999 4 => zero 4\n\
             A: read m 131072 1 => refused\n\
             A: peek m 131071 => 0x0\n\
             A: poke m 0 255\n\
             A: detach m\nA: rm s\n",
        );
    }

    #[test]
    fn declarations() {
        let sc = round_trips(
            "process A\nsysctl kernel.shmmax = 0x100000\nsysctl shm_rmid_forced = 1\ntimeout 1.5s\ntimeout 0.0000000015s\n\
             needs root\nneeds root namespace\n\
             A: sysctl shmmni => 4096\nA: sysctl shmall = 18446744073709551615\n",
        );
        assert!(sc.needs.root && sc.needs.namespace);
        round_trips("needs namespace\nprocess A\nA: segments => 0\n");
        round_trips("process A\ntimeout 250ms\nA: segments => 0\n");
        round_trips("process A\ntimeout 1e-7s\nA: segments => 0\n");
        round_trips("process A\ntimeout 999999999.123456789s\nA: segments => 0\n");
    }

    #[test]
    fn intent_waiting_and_output_checks() {
        let sc = round_trips(
            "needs root, program \"ipcs\", command \"sh -c 'ipcs -V >/dev/null'\"\nneeds program \"${here}/t\"\n\
             process A, B\nA: key k = 0x10\nA: create s = k size 10\n\
             xfail \"bug \\\"7\\\": cuid as cgid\"\n\
             A: run \"ipcs -m\" => stdout matches \"(?m)^${k} +(?P<t>[0-9]+) (?P<n.c>[0-9]+) (?P<key.j>0x[0-9a-f]+) (?P<pid.p>[0-9]+)\", \
             stderr \"x {n:e}\", stderr matches \"^$\", stdout line -1 column 3 \"${s} {pid:q}\", stderr line 2 \"${c}\", \
             stdout contains \"${e}\", stderr contains \"${t}\"\n\
             eventually 1.5s: A: stat s => cpid p, key j\n\
             xfail \"r\"\neventually 250ms: B: lookup k => absent\n\
             B: segments => 0\n\
             xfail \"r\"\n& A: sysctl shmmni => 5\n",
        );
        assert_eq!(sc.requires.len(), 3);
        assert_eq!(sc.steps[2].xfail.as_deref(), Some("bug \"7\": cuid as cgid"));
        assert_eq!(sc.steps[3].eventually, Some(std::time::Duration::from_millis(1500)));
        assert!(sc.steps[4].xfail.is_some() && sc.steps[4].eventually.is_some());
    }

    #[test]
    fn number_expectations() {
        round_trips(
            "process A\n\
             A: create s = private size 4096\n\
             A: stat s => nattch == 0, size >= 4K, size<=4096, atime 0, dtime != 1, ctime {t0}, index > -1, seq {q}\n\
             A: stat s => ctime == t0, ctime>=t0, seq < 65536, uid 0, gid != 4294967295, cuid <= 0, cgid 0\n\
             A: segments => > 0\nA: segments => {n}\nA: segments => n\nA: segments => != -1\n\
             A: run \"echo ${t0} ${n}\" => status 0\nA: rm s\n",
        );
    }

    #[test]
    fn h2_forms() {
        let sc = round_trips(
            "process A, U uid 7\nneeds hugepages 2M 4\n\
             A: shmctl - IPC_INFO => shmmax > 0, shmmin 1, shmmni {mni}, shmseg >= 1, shmall >= 1, max_index != -1\n\
             A: shmctl 0 SHM_INFO => used_ids 0, used_ids < mni, shm_tot 0, shm_rss <= 0, shm_swp 0, max_index 0\n\
             A: create s = private size 4096 mode 01640 hugetlb 2M noreserve flags 0x100000\n\
             A: create private size 1 hugetlb 1G => EINVAL | ENOMEM\nA: create private size 1 hugetlb => ENOMEM | ok\n\
             A: shmctl t = 0 SHM_STAT_ANY => id s, size 4096, mode 0640, index 0, seq {q}\n\
             A: shmctl s 0x63 => EINVAL\nA: shmctl s IPC_STAT badbuf => EFAULT\nA: shmctl s IPC_SET\n\
             A: shmctl -1 SHM_STAT => EINVAL\nA: shmctl s SHM_LOCK badbuf\nA: shmctl s IPC_STAT buffer null => EFAULT\n\
             A: shmctl - IPC_INFO buffer -1 => EFAULT\nA: shmctl s -1 => EINVAL\nA: shmctl s 0x102 => EINVAL\n\
             A: attach id -1 => EINVAL\nA: stat id 4242 => EINVAL\nA: rm id -1 => EINVAL\nA: attach g = id 0 ro\n\
             A: open u = 0x5eed size 1 mode 0400 excl flags 0x1000\nA: open 0x5eed excl => ENOENT\n\
             A: rlimit memlock 64K\nA: rlimit as inf inf\nA: rlimit nofile 10 inf\nU: rlimit nofile 1 2 => EPERM\n\
             A: umask 0777\nA: umask 0\nA: meminfo HugePages_Free => >= 0\nA: meminfo Hugepagesize => {hps}\n\
             A: sysctl shm_next_id => -1\nA: sysctl shmmni = 99999 => EINVAL\nA: sysctl shm_next_id = -1 => EINVAL\nA: set s mode 07777\nA: set s size 1 key 7 seq 9 ctime 5\nA: rm t\n",
        );
        assert!(sc.needs.namespace && sc.needs.hugepages.is_some());
        round_trips("process A\nneeds hugepages\nA: segments => 0\n");
        round_trips("process A\nneeds root, hugepages 1G, namespace\nA: segments => 0\n");
    }

    /// `repeat MAX OP until ERRNO [=> count NUMEXP]` reads back as written,
    /// and each misuse is a check error at its column, saying what fits.
    #[test]
    fn repeat_forms() {
        let sc = round_trips(
            "process A\nA: create s = private size 4096\n\
             A: repeat 100 create private size 4096 mode 0640 until ENOSPC => count {c}\n\
             A: repeat 1M create 0x5eed size 1 excl until EEXIST => count >= c\n\
             A: repeat 64 attach s ro exec until ENOMEM\nA: repeat 3 attach s until EINVAL => count != 2\nA: rm s\n",
        );
        use crate::scenario::Op;
        let Op::Repeat { max, op, until } = &sc.steps[1].op else { panic!("{:?}", sc.steps[1].op) };
        assert_eq!((*max, op.keyword(), *until), (100, "create", crate::sysv::Errno::ENOSPC));
        assert!(matches!(sc.steps[3].op, Op::Repeat { max: 64, .. }));
        let base = "process A\nA: create s = private size 8\n";
        for (step, col, expected) in [
            ("A: repeat create private size 8 until ENOSPC", 11, "a number of tries"),
            ("A: repeat 0 attach s until ENOMEM", 11, "from 1 to 1048576"),
            ("A: repeat 2000000 attach s until ENOMEM", 11, "from 1 to 1048576"),
            ("A: repeat 5 attach s", 21, "`until` and the errno"),
            ("A: repeat 5 attach s => count 5", 22, "`until` and the errno"),
            ("A: repeat 5 stat s until EINVAL", 13, "an unnamed `create"),
            ("A: repeat 5 repeat 5 attach s until ENOMEM until ENOMEM", 13, "an unnamed `create"),
            ("A: repeat 5 create t = private size 8 until ENOSPC", 13, "an unnamed `create"),
            ("A: repeat 5 attach m = s until ENOMEM", 13, "an unnamed `create"),
            ("A: repeat 5 attach s at 0x7f0000000000 until ENOMEM", 13, "a plain `attach"),
            ("A: repeat 5 attach s until ENOPE", 28, "an errno name"),
            ("A: repeat 5 attach s until ENOMEM => ENOMEM", 4, "`=> count NUMEXP`"),
            ("A: repeat 5 attach s until ENOMEM => SIGSEGV", 4, "`=> count NUMEXP`"),
            ("A: repeat 5 attach s until ENOMEM => 5", 38, "`count`"),
            ("A: repeat 5 create private size 8 mod 0600 until ENOSPC", 35, "`until ERRNO`"),
        ] {
            let e = fails(&format!("{base}{step}\n"));
            assert_eq!((e.line, e.col), (3, col), "{step}: {e}");
            assert!(e.expected.as_deref().is_some_and(|x| x.contains(expected)), "{step}: {e}");
        }
        // `until` is a keyword: a name cannot be it.
        assert!(fails("process A\nA: create until = private size 8\n").message.contains("not a valid name"));
    }

    #[test]
    fn garbage_is_an_error_in_range() {
        for text in [
            "",
            "\n\n\n",
            "# only a comment\n",
            "=>",
            "process A\n=>",
            "process A\nA: =>",
            "process A\nA: create s = private size 1 =>",
            "process A\nA: write m 0 \"unterminated",
            "process A\nA: write m 0 \"bad \\q escape\"",
            "process A\nA: write m 0 \"\\x4",
            "process A\nA: create s = private size 1 \u{3000}",
            "process A\t\t\nA: kill =>    \t",
            "process A\r\nA: kill => \r\n",
            "& A: kill",
            "process A\n& A: segments => 0",
            "\u{feff}process A",
            "process A\nA: read",
            "process A\nA: stat",
            "process A, \n",
            "process A\nA: key k = ftok \"x\" 256",
            "process A\nA: run \"'unterminated\"",
            "process A\nA: run \"   \"",
            "process A\nA: run \"echo {x\" => stdout \"{x\"",
            "process A\ntimeout -1s\nA: kill",
            "process A\ntimeout infs\nA: kill",
            "\x00\x01\x02",
            "process A\nA: exit 99999999999999999999",
        ] {
            let e = fails(text);
            assert!(e.line >= 1 && e.col >= 1, "{text:?}: {e}");
        }
    }

    #[test]
    fn non_utf8_and_long_inputs_are_skipped() {
        check(b"\xff\xfe process A");
        check(&vec![b'x'; MAX_INPUT + 1]);
    }

    /// Pieces of the scenario language spliced into the seeds.
    const PIECES: &[&str] = &[
        " ",
        "\n",
        "\"",
        "\\",
        "#",
        "=>",
        "=",
        ":",
        ",",
        "|",
        "&",
        "'",
        "{",
        "}",
        "${",
        "0",
        "-1",
        "0x",
        "K",
        "\u{85}",
        "é",
        "\t",
        "\r",
        "private",
        "ok",
        "refused",
        "SIGKILL",
        "EEXIST",
        "hex",
        "pattern",
        "zero",
        "process Z",
        "fork",
        "exit",
        "kill",
        "crash",
        "none",
        "size",
        "mode",
        "4096",
        "\\x",
        "<",
        ">=",
        "==",
        "!=",
        "!",
        " {t} ",
        "ctime",
        "atime > ",
        "index",
        "seq",
        "shmctl - IPC_INFO",
        "SHM_STAT_ANY",
        " badbuf",
        " buffer null",
        " id -1",
        " buffer -1",
        "rlimit as inf",
        "umask 077",
        "meminfo X",
        " hugetlb 2M",
        " flags 0x",
        "needs hugepages 1G 2",
        "spawn D = \"true\"",
        "signal",
        "wait",
        "finally:\n",
        "exec",
        "unshare ipc",
        "setns",
        "TERM",
    ];

    /// A small deterministic mutation fuzzer over the scenario files, so that
    /// plain `cargo test` exercises the oracle beyond the hand-written cases.
    #[test]
    fn mutated_scenarios() {
        let seeds: Vec<String> =
            files(SCENARIOS, Some("scn")).iter().map(|p| std::fs::read_to_string(p).expect("readable")).collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || -> u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let seed = &seeds[round % seeds.len()];
            let mut chars: Vec<char> = seed.chars().collect();
            mutate(&mut chars, &mut next);
            let text: String = chars.into_iter().collect();
            if let Err(v) = check_text(&text) {
                panic!("round {round}: {v}");
            }
        }
    }

    /// One to four random edits of `chars`: a cut, an inserted piece of
    /// the language, or a span copied elsewhere.
    fn mutate(chars: &mut Vec<char>, next: &mut impl FnMut() -> u64) {
        for _ in 0..=next() % 4 {
            let at = (next() as usize) % (chars.len() + 1);
            match next() % 3 {
                0 if at < chars.len() => {
                    let n = 1 + (next() as usize) % 8;
                    chars.drain(at..(at + n).min(chars.len()));
                }
                1 => {
                    let piece = PIECES[(next() as usize) % PIECES.len()];
                    chars.splice(at..at, piece.chars());
                }
                _ => {
                    // Swap two lines' worth of text: copy a span elsewhere.
                    let from = (next() as usize) % (chars.len() + 1);
                    let span: Vec<char> = chars[from..(from + 12).min(chars.len())].to_vec();
                    let at = at.min(chars.len());
                    chars.splice(at..at, span);
                }
            }
        }
    }
}
