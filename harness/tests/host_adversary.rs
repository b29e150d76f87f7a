//! The adversary suite of issue 15: one test per row of its table, each a
//! hostile program (C under `tests/adversary/`, built here with `cc`) or a
//! scenario that attacks host isolation through the real `shm-harness`
//! binary, asserting the SAFE outcome the issue requires. Every test runs in
//! its own process (rusty-fork) inside a private IPC namespace of its own,
//! with a canary: a 0600 segment of uid 65534 that the scenario does not own
//! and that must survive. Each test also shows the attack itself is real (a
//! control: the hostile program's own report, or the same program run
//! untraced), so a pass means a defence stopped it.
//!
//! Skips are printed: not root, tracing unavailable, no `cc`.

#![allow(unsafe_code)] // opts in: mount and unshare for the state-directory test

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusty_fork::rusty_fork_test;
use shm_harness::sysv;

/// The uid that owns the canary.
const CANARY_UID: u32 = 65534;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shm-harness")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A segment as `/proc/sysvipc/shm` shows it: (shmid, cpid, ctime, key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    shmid: i32,
    cpid: i32,
    ctime: i64,
    key: i32,
}

/// The segments of the current IPC namespace.
fn segments() -> Vec<Seg> {
    sysv::proc_segments()
        .expect("/proc/sysvipc/shm")
        .iter()
        .map(|r| Seg { shmid: r.shmid.raw(), cpid: r.cpid, ctime: r.ctime, key: r.key.raw() })
        .collect()
}

/// The shmids of the namespace other than the canary's.
fn left_besides(canary: &Seg) -> Vec<i32> {
    segments().into_iter().filter(|s| s.shmid != canary.shmid).map(|s| s.shmid).collect()
}

/// What is known of the segments left besides the canary: shmid, size,
/// creator pid (and whether that pid is still a process), nattch.
fn describe_left(canary: &Seg) -> String {
    let rows = sysv::proc_segments().expect("/proc/sysvipc/shm");
    let d: Vec<String> = rows
        .iter()
        .filter(|r| r.shmid.raw() != canary.shmid)
        .map(|r| {
            let alive = Path::new(&format!("/proc/{}", r.cpid)).exists();
            format!(
                "shmid {} ({} bytes, cpid {}{}, nattch {})",
                r.shmid.raw(),
                r.size,
                r.cpid,
                if alive { "" } else { " gone" },
                r.nattch
            )
        })
        .collect();
    d.join(", ")
}

/// Removes what a failed iteration left (we are in our own namespace), so
/// the next iteration starts clean; never the canary.
fn clean_besides(canary: &Seg) {
    for id in left_besides(canary) {
        let _ = sysv::Shmid::from_raw(id).remove();
    }
}

/// The canary must be there with its identity.
fn assert_canary_intact(c: &Seg, what: &str) {
    assert!(
        segments().contains(c),
        "the canary (shmid {}, uid {CANARY_UID}, 0600) did not survive {what}: {:?}",
        c.shmid,
        segments()
    );
}

/// A work directory every uid can read, with the hostile programs built in.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Builds `tests/adversary/NAME.c` into the lab as `NAME`.
    fn build(&self, name: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/adversary").join(format!("{name}.c"));
        let out = self.path().join(name);
        let o =
            Command::new("cc").args(["-Wall", "-O1", "-o"]).arg(&out).arg(&src).arg("-lpthread").output().expect("cc");
        assert!(o.status.success(), "cc {}: {}", src.display(), text(&o.stderr));
        out
    }

    /// The canary: a 0600 segment of uid 65534 at `key` (0: private).
    fn canary(&self, key: &str) -> Seg {
        let prog = self.build("canary");
        let o = as_uid(CANARY_UID, &prog).arg(key).output().expect("canary");
        let s = text(&o.stdout);
        assert!(o.status.success(), "canary: {s}{}", text(&o.stderr));
        let id: i32 = s.trim().strip_prefix("canary ").and_then(|n| n.parse().ok()).expect("canary's shmid");
        segments().into_iter().find(|s| s.shmid == id).expect("the canary in /proc/sysvipc/shm")
    }

    fn write(&self, name: &str, body: &str) {
        std::fs::write(self.path().join(name), body).unwrap();
    }

    fn exists(&self, name: &str) -> bool {
        self.path().join(name).exists()
    }
}

/// Root, tracing and `cc`, in a private IPC namespace; else the test
/// returns, printing why.
macro_rules! lab_or_skip {
    () => {{
        private_namespace_or_skip!();
        skip_if_not_root!();
        if let Err(why) = shm_harness::trace::available() {
            eprintln!("skipped: {}: tracing unavailable: {why}", module_path!());
            return;
        }
        if Command::new("cc").arg("--version").output().is_err() {
            eprintln!("skipped: {}: no `cc` to build the hostile programs", module_path!());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Lab { dir }
    }};
}

/// `PROGRAM` as `uid` (its own gid, no supplementary groups).
fn as_uid(uid: u32, program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", &uid.to_string(), "--regid", &uid.to_string(), "--clear-groups"]).arg(program);
    c
}

/// `shm-harness ARGS` in the lab, its state directory `lab/state`.
fn harness(lab: &Lab) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(lab.path())
        .env("SHM_HARNESS_STATE_DIR", lab.path().join("state"))
        .env_remove("SHM_HARNESS_NO_TRACE");
    cmd
}

fn run_host(lab: &Lab, scn: &str) -> Output {
    harness(lab).args(["run", "--isolation", "host", scn]).output().expect("run shm-harness")
}

/// Polls `cond` every 5 ms until it holds or `secs` pass.
fn until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `child` at most `secs`; kills it (and says so) past that.
fn wait_bounded(child: &mut Child, secs: u64) -> Result<std::process::ExitStatus, String> {
    let mut status = None;
    until(secs, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    match status {
        Some(s) => Ok(s),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("did not exit within {secs}s"))
        }
    }
}

/// Live (not zombie) processes of process group `pgid`.
fn group_alive(pgid: i32) -> Vec<i32> {
    common::scan_proc(|pid| {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return false };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string()
    })
}

/// Whether `report` names `shmid ID` (not a longer number starting so).
fn names(report: &str, id: i32) -> bool {
    let needle = format!("shmid {id}");
    report.match_indices(&needle).any(|(at, _)| !report[at + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// After a run: every segment left besides the canary must have been named
/// by a failing run (reported), else it is an unreported leak.
fn unreported(canary: &Seg, out: &Output) -> Option<String> {
    let left = left_besides(canary);
    let s = text(&out.stdout);
    let hidden: Vec<i32> = left.iter().copied().filter(|&id| !names(&s, id)).collect();
    if left.is_empty() {
        None
    } else if !hidden.is_empty() || out.status.code() != Some(1) {
        Some(format!("exit {:?}, left {left:?}, of which not named in the report {hidden:?}", out.status.code()))
    } else {
        None
    }
}

/// Row 8, the rest: a journal whose anchor is here is swept (its
/// segment, then the anchor, then the file); an anchor line naming a
/// segment here that is not an anchor (the canary: key, size) proves
/// nothing; an unproven journal is deleted past 7 days, not before, and
/// not while a process is in a namespace of its number; one that cannot be
/// read is an error that keeps it.
fn row08_journal_lifecycle(lab: &Lab, canary: &Seg, forged: &Path) {
    use shm_harness::runner::journal::{self, Journal, Record};
    let state = lab.path().join("state");
    let ns = journal::ipc_namespace().unwrap();
    // A real run's journal, dead (its lock dropped), with one segment.
    let seg = sysv::CreateOptions::new(64).create_private().unwrap().release().id().raw();
    let row = segments().into_iter().find(|s| s.shmid == seg).unwrap();
    let dead = Journal::create(&state).unwrap();
    let anchor = *dead.anchor();
    let rec = Record {
        scenario: "ok.scn".into(),
        line: 2,
        process: "A".into(),
        shmid: seg,
        cpid: row.cpid,
        ctime: row.ctime,
        key: 0,
        ns,
    };
    journal::append_to(dead.path(), &rec).unwrap();
    let dead_path = dead.path().to_path_buf();
    drop(dead);
    // A forged anchor: the canary's identity (not 1 byte, key 0).
    let a = serde_json::json!({"anchor": {"shmid": canary.shmid, "cpid": canary.cpid, "ctime": canary.ctime, "key": canary.key, "ns": [ns.0, ns.1]}});
    let rec = serde_json::json!({"scenario": "f.scn", "line": 3, "process": "A", "shmid": canary.shmid, "cpid": canary.cpid, "ctime": canary.ctime, "key": canary.key, "ns": [ns.0, ns.1]});
    let anchored = state.join("run-424243-1.journal");
    std::fs::write(&anchored, format!("{a}\n{rec}\n")).unwrap();
    // `forged` (no anchor, of this namespace's number) 8 days old, and one
    // of a namespace number no process is in; a journal that cannot be read.
    let old = std::time::SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    std::fs::File::options().write(true).open(forged).unwrap().set_modified(old).unwrap();
    let gone = state.join("run-424245-1.journal");
    std::fs::write(&gone, format!("{}\n", rec.to_string().replace(&format!("[{},{}]", ns.0, ns.1), "[4,1]"))).unwrap();
    std::fs::File::options().write(true).open(&gone).unwrap().set_modified(old).unwrap();
    let broken = state.join("run-424244-1.journal");
    std::fs::create_dir(&broken).unwrap();
    let out = harness(lab).arg("sweep").output().unwrap();
    let err = text(&out.stderr);
    assert_canary_intact(canary, &format!("sweep with a forged anchor: {err}"));
    assert_eq!(out.status.code(), Some(1), "the unreadable journal is an error: {err}");
    assert!(err.contains(&format!("removed shmid {seg} ")) && !segments().iter().any(|s| s.shmid == seg), "{err}");
    assert!(
        !segments().iter().any(|s| s.shmid == anchor.shmid) && !dead_path.exists(),
        "the anchor, then the journal: {err}"
    );
    assert!(forged.exists() && err.contains("a process is in an IPC namespace of its number"), "{err}");
    assert!(!gone.exists() && err.contains("deleted (older than 7 days)"), "{err}");
    assert!(anchored.exists() && err.contains("left alone (deleted once 7 days old)"), "{err}");
    assert!(broken.exists() && err.contains("cannot read journal"), "{err}");
}

rusty_fork_test! {
    /// Row 1: an actor of uid 47011 (`process U uid 47011 gid 47011`; with
    /// gid 0 left, ptrace access by uid 47011 is refused) in a root host
    /// run; a program of uid 47011, outside the scenario, copies the actor's
    /// journal fd with `pidfd_getfd` and appends a record naming the canary.
    /// Safe: the canary survives (no harness fd reachable from the dropped
    /// uid, and teardown removes only identities its own process created).
    /// Control: the hostile program's report of what it reached.
    #[test]
    #[ignore = "issue 15 row 1 is not defended yet: an actor of another uid still holds the journal fd"]
    fn row01_journal_fd_stolen_by_other_uid() {
        let lab = lab_or_skip!();
        let canary = lab.canary("0");
        let steal = lab.build("steal_journal");
        lab.write(
            "steal.scn",
            "timeout 30s\nprocess U uid 47011 gid 47011\nU: create s = private size 8\nU: run \"sh -c 'while [ ! -e ${here}/stolen ]; do sleep 0.02; done'\" => status 0\nU: rm s\n",
        );
        let run = harness(&lab).args(["run", "--isolation", "host", "steal.scn"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // The hostile program, retried until the actor has journaled `s`.
        let mut report = String::new();
        let tried = until(20, || {
            let o = as_uid(47011, &steal).arg(canary.shmid.to_string()).output().expect("steal_journal");
            report = text(&o.stdout);
            report.contains("stole fd") || (report.contains("no journal fd reachable") && report.contains("got fd") && segments().len() > 1)
        });
        lab.write("stolen", "");
        let out = run.wait_with_output().unwrap();
        let s = format!("{}{}", text(&out.stdout), text(&out.stderr));
        eprintln!("hostile program: {report}");
        assert!(tried, "the hostile program never got to try: {report}\n{s}");
        // Control: it ran as uid 47011 while that uid's actor lived and
        // could copy descriptors of the scenario's processes of that uid
        // (at least its program's): a pass is no harness fd there, not a
        // refused ptrace access.
        assert!(report.contains("got fd"), "control: pidfd_getfd never worked: {report}");
        assert_canary_intact(&canary, &format!("a journal record appended by uid 47011 ({report}); run: {s}"));
        assert_eq!(left_besides(&canary), Vec::<i32>::new(), "{s}");
    }

    /// Row 2: a spawned program creates segments in a loop when the scenario
    /// ends (teardown), or when a `wait` times out. Safe: nothing is left
    /// that the run did not name (every creation removed or reported).
    /// Control: the run reports some of the program's segments as leaks.
    #[test]
    fn row02_spawned_creator_at_teardown_or_timeout_leaves_nothing_unreported() {
        let lab = lab_or_skip!();
        let canary = lab.canary("0");
        lab.build("create_loop");
        lab.write(
            "end.scn",
            "timeout 20s\nprocess A\nA: spawn D = \"${here}/create_loop 0 200\"\nA: run \"sh -c 'until [ $(wc -l < /proc/sysvipc/shm) -gt 6 ]; do sleep 0.005; done'\" => status 0\n",
        );
        lab.write("timeout.scn", "timeout 700ms\nprocess A\nA: spawn D = \"${here}/create_loop 0 200\"\nA: wait D\n");
        let mut failures = Vec::new();
        let mut leaks_seen = 0;
        for i in 0..24 {
            let scn = if i % 2 == 0 { "end.scn" } else { "timeout.scn" };
            let out = run_host(&lab, scn);
            if text(&out.stdout).contains("leak: segment shmid") {
                leaks_seen += 1;
            }
            if let Some(f) = unreported(&canary, &out) {
                failures.push(format!("run {i} ({scn}): {f}"));
                clean_besides(&canary);
            }
            assert_canary_intact(&canary, scn);
        }
        assert!(leaks_seen > 0, "control: the looping program's segments were never reported");
        assert!(failures.is_empty(), "{} of 24 runs left segments unreported:\n{}", failures.len(), failures.join("\n"));
    }

    /// Row 3: a traced program's second thread calls `exit_group` while the
    /// main thread is in `shmget`. Safe: the in-flight creation is found and
    /// removed (or the scenario fails naming it). Control: the same program
    /// run untraced leaves a segment from its in-flight `shmget`.
    #[test]
    fn row03_thread_exits_process_during_shmget() {
        let lab = lab_or_skip!();
        let canary = lab.canary("0");
        let prog = lab.build("thread_exit");
        let mut raced = 0;
        for n in 1..=20 {
            let o = Command::new(&prog).arg(n.to_string()).output().unwrap();
            assert!(text(&o.stdout).contains("exit_group"), "{}", text(&o.stdout));
            raced += left_besides(&canary).len();
            clean_besides(&canary);
        }
        eprintln!("control: untraced, 20 runs left {raced} segment(s) from an in-flight shmget");
        assert!(raced > 0, "control: the exit_group never landed during shmget in 20 untraced runs");
        let mut failures = Vec::new();
        // Stops at the first leak (today within about 10-40 runs).
        let mut runs = 0;
        for n in 1..=80 {
            lab.write("t.scn", &format!("process A\nA: run \"${{here}}/thread_exit {}\" => status 0, stdout contains \"exit_group\"\n", n % 20 + 1));
            let out = run_host(&lab, "t.scn");
            runs += 1;
            if let Some(f) = unreported(&canary, &out) {
                failures.push(format!("run {n}: {f}"));
                clean_besides(&canary);
                break;
            }
        }
        assert_canary_intact(&canary, "row 3");
        assert!(failures.is_empty(), "a leak in {runs} runs:\n{}", failures.join("\n"));
    }

    /// Row 4: a program installs its own seccomp filter returning
    /// `SECCOMP_RET_USER_NOTIF` for `shmget` and answers "continue"; as root
    /// and as uid 47012. Safe: the filter is refused (the step fails) or the
    /// creation is still seen (a leak, removed); nothing is left.
    /// Control: untraced, the program creates its segment that way.
    #[test]
    fn row04_seccomp_user_notif_does_not_escape() {
        let lab = lab_or_skip!();
        let canary = lab.canary("0");
        let prog = lab.build("user_notif");
        let o = Command::new(&prog).output().unwrap();
        let c = text(&o.stdout);
        assert!(c.contains("answered the child's shmget") && c.contains("child: created shmid"), "control: {c}");
        clean_besides(&canary);
        lab.write("root.scn", "process A\nA: run \"${here}/user_notif\" => status 0\n");
        lab.write("user.scn", "process U uid 47012\nU: run \"${here}/user_notif\" => status 0\n");
        let mut failures = Vec::new();
        for scn in ["root.scn", "user.scn"] {
            let out = run_host(&lab, scn);
            let left = left_besides(&canary);
            if out.status.code() != Some(1) || !left.is_empty() {
                failures.push(format!("{scn}: exit {:?}, left {left:?}\n{}", out.status.code(), text(&out.stdout)));
                clean_besides(&canary);
            }
        }
        assert_canary_intact(&canary, "row 4");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Row 5: `clone(CLONE_UNTRACED)`, the child traced by the program
    /// itself, creates a segment. Safe: the clone (or the ptrace) is
    /// refused and the scenario fails, or the creation is seen; nothing left.
    /// Control: untraced, the child creates its segment.
    #[test]
    fn row05_clone_untraced_child_is_not_unseen() {
        let lab = lab_or_skip!();
        let canary = lab.canary("0");
        let prog = lab.build("untraced_clone");
        let o = Command::new(&prog).output().unwrap();
        let c = text(&o.stdout);
        assert!(c.contains("clone(CLONE_UNTRACED) gave pid") && c.contains("untraced child: created shmid"), "control: {c}");
        clean_besides(&canary);
        lab.write("u.scn", "process A\nA: run \"${here}/untraced_clone\" => status 0\n");
        let out = run_host(&lab, "u.scn");
        let left = left_besides(&canary);
        clean_besides(&canary);
        assert_canary_intact(&canary, "row 5");
        assert!(out.status.code() == Some(1) && left.is_empty(), "exit {:?}, left {left:?}\n{}", out.status.code(), text(&out.stdout));
    }

    /// Row 6: `${k}`, the scenario's host key, handed to a program that
    /// creates-or-opens it and removes what it got, while the canary (uid
    /// 65534) holds that key. Safe: the program's `shmget` is refused, the
    /// scenario fails naming the program and the segment; canary intact.
    /// Control: the canary really sits at `${k}`.
    #[test]
    fn row06_host_key_substituted_into_a_program_is_guarded() {
        let lab = lab_or_skip!();
        lab.build("key_grab");
        lab.write(
            "k.scn",
            "timeout 30s\nprocess A\nA: key k = 0x4d000061\nA: run \"sh -c 'echo ${k} > ${here}/key; while [ ! -e ${here}/ready ]; do sleep 0.02; done'\" => status 0\nA: run \"${here}/key_grab ${k}\" => status 0\n",
        );
        let run = harness(&lab).args(["run", "--isolation", "host", "k.scn"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut key = String::new();
        let seen = until(20, || {
            key = std::fs::read_to_string(lab.path().join("key")).unwrap_or_default().trim().to_owned();
            !key.is_empty()
        });
        let canary = if seen { Some(lab.canary(&key)) } else { None };
        lab.write("ready", "");
        let out = run.wait_with_output().unwrap();
        let s = text(&out.stdout);
        let canary = canary.unwrap_or_else(|| panic!("the scenario never wrote ${{k}}: {s}"));
        // Control: the canary is at the host key the program was given.
        assert_eq!(format!("0x{:08x}", canary.key as u32), key);
        assert_canary_intact(&canary, &format!("key_grab {key}: {s}"));
        assert_eq!(out.status.code(), Some(1), "{s}");
        assert!(s.contains("key_grab") && names(&s, canary.shmid), "the failure must name the program and the segment: {s}");
    }

    /// Row 7: `${s}` of a removed segment reaches `ipcrm -m ${s}` after the
    /// id went to the canary (`kernel.shm_next_id` makes the reuse exact).
    /// Safe: refused; canary intact; the scenario fails naming `ipcrm`.
    /// Control: the canary has exactly the removed segment's id.
    #[test]
    fn row07_stale_shmid_substituted_into_ipcrm_is_refused() {
        let lab = lab_or_skip!();
        lab.build("canary");
        lab.write(
            "r.scn",
            "timeout 30s\nprocess A\nA: create s = private size 4096\nA: run \"sh -c 'echo ${s} > ${here}/id'\" => status 0\nA: rm s\nA: run \"sh -c 'while [ ! -e ${here}/ready ]; do sleep 0.02; done'\" => status 0\nA: run \"ipcrm -m ${s}\"\n",
        );
        let run = harness(&lab).args(["run", "--isolation", "host", "r.scn"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut id = -1;
        let seen = until(20, || {
            id = std::fs::read_to_string(lab.path().join("id")).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(-1);
            id >= 0 && !segments().iter().any(|s| s.shmid == id)
        });
        let canary = seen.then(|| {
            std::fs::write("/proc/sys/kernel/shm_next_id", id.to_string()).expect("kernel.shm_next_id");
            lab.canary("0")
        });
        lab.write("ready", "");
        let out = run.wait_with_output().unwrap();
        let s = format!("{}{}", text(&out.stdout), text(&out.stderr));
        let canary = canary.unwrap_or_else(|| panic!("the scenario never wrote ${{s}} and removed it: {s}"));
        assert_eq!(canary.shmid, id, "control: the canary did not get the removed segment's id");
        assert_canary_intact(&canary, &format!("ipcrm -m {id}: {s}"));
        assert_eq!(out.status.code(), Some(1), "{s}");
        assert!(s.contains("ipcrm") && names(&s, id), "the failure must name the program and the segment: {s}");
    }

    /// Row 8: a dead run's journal, written by hand as a run killed in
    /// another namespace would have left it, whose namespace inode is this
    /// namespace's (the kernel reuses inode numbers) and whose record matches
    /// the canary (shmid, cpid, ctime: all world-readable, and predictable in
    /// a fresh namespace). Safe: `sweep` does not remove it (it must prove
    /// the namespace, not its number). Control: the record matches exactly.
    #[test]
    fn row08_sweep_does_not_trust_a_reused_namespace_inode() {
        let lab = lab_or_skip!();
        let canary = lab.canary("0");
        let state = lab.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        let ns = std::fs::metadata("/proc/thread-self/ns/ipc").unwrap();
        let rec = serde_json::json!({
            "scenario": "dead.scn", "line": 3, "process": "A", "shmid": canary.shmid, "cpid": canary.cpid,
            "ctime": canary.ctime, "key": canary.key, "ns": [ns.dev(), ns.ino()],
        });
        let journal = state.join("run-424242-1.journal");
        std::fs::write(&journal, format!("{rec}\n")).unwrap();
        std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Control: what a sweep here would judge is exactly the canary.
        let r: shm_harness::runner::journal::Record = serde_json::from_str(&rec.to_string()).unwrap();
        assert_eq!((r.shmid, r.cpid, r.ctime, r.ns), (canary.shmid, canary.cpid, canary.ctime, shm_harness::runner::journal::ipc_namespace().unwrap()));
        let out = harness(&lab).arg("sweep").output().unwrap();
        assert_canary_intact(&canary, &format!("sweep: {}", text(&out.stderr)));
        row08_journal_lifecycle(&lab, &canary, &journal);
    }

    /// Row 9: another user (65534) pre-creates, world-writable, the state
    /// directory the harness would pick without `XDG_RUNTIME_DIR`: for uid
    /// 47013 `/tmp/shm-harness-47013`, and for uid 47014 as root of its own
    /// user namespace (`unshare -U -r`) `/tmp/shm-harness-0` (in a private
    /// tmpfs on `/tmp`). Safe: their host runs and sweeps still work,
    /// elsewhere, and never put anything there. Control: the same run with a
    /// state directory of its own passes.
    #[test]
    fn row09_foreign_precreated_state_dir_is_not_used_and_runs_still_work() {
        use nix::mount::{mount, MsFlags};
        let _lab = lab_or_skip!();
        // The binary is read before the tmpfs hides /tmp (a checkout may
        // live there) and run from a copy inside it.
        let binary = std::fs::read(bin()).expect("read the shm-harness binary");
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).expect("make / private");
        mount(Some("tmpfs"), "/tmp", Some("tmpfs"), MsFlags::empty(), Some("mode=1777")).expect("tmpfs on /tmp");
        let mk = |p: &str, owner: u32, mode: u32| {
            std::fs::create_dir(p).unwrap();
            std::os::unix::fs::chown(p, Some(owner), Some(owner)).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        mk("/tmp/shm-harness-47013", CANARY_UID, 0o777);
        mk("/tmp/shm-harness-0", CANARY_UID, 0o777);
        mk("/tmp/home-47013", 47013, 0o700);
        mk("/tmp/home-47014", 47014, 0o700);
        mk("/tmp/work", 0, 0o755);
        std::fs::write("/tmp/work/s.scn", "process A\nA: create s = private size 8\nA: segments => 1\nA: rm s\n").unwrap();
        let copy = "/tmp/work/shm-harness";
        std::fs::write(copy, &binary).unwrap();
        std::fs::set_permissions(copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        // `shm-harness ARGS` as `uid` (as root of a user namespace of its own
        // if `userns`), with a clean environment and its own home.
        let as_user = |uid: u32, userns: bool, args: &[&str], state: Option<&str>| {
            let mut c = if userns {
                let mut c = as_uid(uid, Path::new("unshare"));
                c.args(["-U", "-r", copy]);
                c
            } else {
                as_uid(uid, Path::new(copy))
            };
            c.args(args).current_dir("/tmp/work").env_clear().env("PATH", "/usr/bin:/bin").env("HOME", format!("/tmp/home-{uid}"));
            if let Some(s) = state {
                c.env("SHM_HARNESS_STATE_DIR", s);
            }
            c.output().unwrap()
        };
        let mut problems = Vec::new();
        for (uid, userns, foreign) in [(47013, false, "/tmp/shm-harness-47013"), (47014, true, "/tmp/shm-harness-0")] {
            let own = format!("/tmp/home-{uid}/state");
            let ctl = as_user(uid, userns, &["run", "--isolation", "host", "s.scn"], Some(&own));
            assert_eq!(ctl.status.code(), Some(0), "control, uid {uid}: {}{}", text(&ctl.stdout), text(&ctl.stderr));
            for args in [&["run", "--isolation", "host", "s.scn"][..], &["sweep"][..]] {
                let o = as_user(uid, userns, args, None);
                if o.status.code() != Some(0) {
                    problems.push(format!("uid {uid}{}: {args:?}: exit {:?}: {}", if userns { " (user-namespace root)" } else { "" }, o.status.code(), text(&o.stderr).trim()));
                }
            }
            let meta = std::fs::metadata(foreign).unwrap();
            let inside: Vec<_> = std::fs::read_dir(foreign).unwrap().filter_map(Result::ok).map(|e| e.path()).collect();
            if meta.uid() != CANARY_UID || !inside.is_empty() {
                problems.push(format!("uid {uid}: the foreign directory {foreign} was used: {inside:?}"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Row 10: SIGINT (to the process group, as a terminal sends it),
    /// SIGTERM and SIGHUP (to the coordinator) of a host run while its
    /// scenario holds an attached segment, at three moments, 21 times. Safe:
    /// when the run has exited nothing of it is left, and `sweep --dry-run`
    /// finds nothing. Control: the segment existed when the signal was sent.
    #[test]
    fn row10_interrupt_leaves_nothing_for_the_sweep() {
        use nix::sys::signal::{kill, killpg, Signal};
        let lab = lab_or_skip!();
        let canary = lab.canary("0");
        let mut failures = Vec::new();
        for i in 0..21 {
            let sig = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP][i % 3];
            let moment = (i / 3) % 3;
            let held = format!("held-{i}");
            lab.write(
                "i.scn",
                &format!("timeout 30s\nprocess A\nA: create s = private size 4096\nA: attach m = s\nA: run \"sh -c 'echo > ${{here}}/{held}; exec sleep 30'\"\n"),
            );
            let mut child = common::interruptible(&mut harness(&lab))
                .args(["run", "--isolation", "host", "i.scn"])
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let ready = until(20, || match moment {
                0 => !left_besides(&canary).is_empty(),
                _ => lab.exists(&held),
            });
            if moment == 2 {
                // A little later: the program running for a while.
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(20 + 10 * i as u64) {}
            }
            let made = left_besides(&canary);
            if sig == Signal::SIGINT { killpg(pid, sig).unwrap() } else { kill(pid, sig).unwrap() }
            let ended = wait_bounded(&mut child, 20);
            let left = left_besides(&canary);
            let _ = until(20, || group_alive(pid.as_raw()).is_empty());
            let dry = harness(&lab).args(["sweep", "--dry-run"]).output().unwrap();
            let dry = text(&dry.stderr);
            assert!(ready && !made.is_empty(), "control: run {i}: the scenario never held its segment");
            if ended.is_err() || !left.is_empty() || dry.contains("would remove") {
                failures.push(format!("run {i} ({sig:?}, moment {moment}): exit {ended:?}, left at exit {left:?}; sweep --dry-run: {}", dry.trim()));
            }
            let _ = harness(&lab).arg("sweep").output();
            clean_besides(&canary);
        }
        assert_canary_intact(&canary, "row 10");
        assert!(failures.is_empty(), "{} of 21 interrupts left something:\n{}", failures.len(), failures.join("\n"));
    }

    /// Row 11: SIGKILL of the coordinator alone (`--jobs 1`) while its
    /// scenario creates segments (steps, then a traced program in a loop),
    /// at varied moments, then the same command again, 40 times each. Safe: once
    /// everything exited and the rerun is done, nothing is left (each
    /// segment removed by the teardown or by the rerun's sweep). Control:
    /// segments existed when the kill was sent.
    #[test]
    fn row11_coordinator_sigkill_leaves_nothing_unjournaled() {
        let lab = lab_or_skip!();
        let canary = lab.canary("0");
        lab.build("create_loop");
        // Steps make 8-byte segments, the program 4096-byte ones: steps.scn
        // aims at an actor between `shmget` and its journal write, prog.scn
        // at a traced program killed mid-`shmget` by the teardown.
        let steps: String = (1..=300).map(|n| format!("A: create s{n} = private size 8\n")).collect();
        lab.write("steps.scn", &format!("timeout 20s\nprocess A\n{steps}"));
        let steps: String = (1..=30).map(|n| format!("A: create s{n} = private size 8\n")).collect();
        lab.write("prog.scn", &format!("timeout 20s\nprocess A\n{steps}A: run \"${{here}}/create_loop 30\"\n"));
        let mut failures = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(400);
        let (mut done, mut missed) = (0, 0);
        // Up to 200 tries for 60 counted runs: on a loaded machine many runs
        // end between two looks and are not counted (no kill was aimed).
        for i in 0..200u64 {
            if Instant::now() > deadline || done >= 60 {
                break;
            }
            let scn = if i % 2 == 0 { "steps.scn" } else { "prog.scn" };
            let mut child = harness(&lab)
                .args(["run", "--isolation", "host", "--jobs", "1", scn])
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(lab.path().join("killed.err")).unwrap())
                .spawn()
                .unwrap();
            let pid = child.id() as i32;
            // Watched closely: prog.scn's segments live about 10 ms.
            let (mut exited, mut seen) = (None, false);
            let t = Instant::now();
            while exited.is_none() && !seen && t.elapsed() < Duration::from_secs(20) {
                exited = child.try_wait().unwrap();
                seen = !left_besides(&canary).is_empty();
                std::thread::sleep(Duration::from_micros(200));
            }
            if let (Some(status), false) = (exited, seen) {
                // The whole run fell between two looks (a loaded machine):
                // no kill was aimed, so it is no kill-then-rerun run.
                let err = std::fs::read_to_string(lab.path().join("killed.err")).unwrap_or_default();
                assert_eq!(status.code(), Some(1), "control: run {i} ({scn}) ended before it was seen to create: {err}");
                clean_besides(&canary);
                missed += 1;
                continue;
            }
            let err = || std::fs::read_to_string(lab.path().join("killed.err")).unwrap_or_default();
            assert!(seen && exited.is_none(), "control: run {i} ({scn}) never created a segment before the kill; it exited {exited:?}: {}", err());
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(1500 * (i / 2 % 16)) {}
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
            let _ = child.wait();
            let gone = until(30, || group_alive(pid).is_empty());
            assert!(gone, "run {i}: the run's processes did not exit: {:?}", group_alive(pid));
            let rerun = harness(&lab).args(["run", "--isolation", "host", "--jobs", "1", scn]).output().unwrap();
            let left = left_besides(&canary);
            if !left.is_empty() {
                failures.push(format!("run {i} ({scn}, kill {} us after the first creation): left after the rerun: {}; rerun stderr: {}", 1500 * (i / 2 % 16), describe_left(&canary), text(&rerun.stderr).trim()));
                clean_besides(&canary);
            }
            done += 1;
        }
        assert_canary_intact(&canary, "row 11");
        assert!(done >= 40, "control: only {done} kill-then-rerun runs in time ({missed} ended before they were seen to create)");
        assert!(failures.is_empty(), "{} of {done} kill-then-rerun runs left segments:\n{}", failures.len(), failures.join("\n"));
    }

    /// Row 12: `open s = private` creates (IPC_PRIVATE, whatever the flags).
    /// Safe: host isolation records it: `segments => 1` holds after it, and
    /// left to the teardown it is a leak, named and removed. Control: `stat`
    /// shows the segment it made.
    #[test]
    #[test]
    fn row12_open_private_is_recorded() {
        let lab = lab_or_skip!();
        let canary = lab.canary("0");
        lab.write("o.scn", "process A\nA: open s = private size 4096\nA: stat s => size 4096\nA: segments => 1\nA: rm s\nA: segments => 0\n");
        let out = run_host(&lab, "o.scn");
        let left = left_besides(&canary);
        clean_besides(&canary);
        assert!(out.status.code() == Some(0) && left.is_empty(), "exit {:?}, left {left:?}\n{}", out.status.code(), text(&out.stdout));
        lab.write("l.scn", "process A\nA: open s = private size 4096\nA: stat s => size 4096\n");
        let out = run_host(&lab, "l.scn");
        let s = text(&out.stdout);
        let left = left_besides(&canary);
        clean_besides(&canary);
        assert_canary_intact(&canary, "row 12");
        assert!(out.status.code() == Some(1) && s.contains("leak: segment shmid") && left.is_empty(), "exit {:?}, left {left:?}\n{s}", out.status.code());
    }
}
