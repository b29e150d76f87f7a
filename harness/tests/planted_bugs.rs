//! Proves the fuzz oracles can fail, and fail for the right reason: with
//! each known bug planted in the wrapper (`--features planted-bugs`),
//! deterministic pseudo-random inputs go through a fuzz target's oracle
//! until it panics, and the panic must be the oracle's own finding (its
//! message is matched), not any panic. Then the same seeds run again without
//! the bug, the control: there the oracle must find nothing. A run that
//! cannot start (no namespace, no confinement) fails; it never counts as
//! a catch.
//!
//! Host mode (the model for a target that shares the host's IPC namespace)
//! is tested too, inside a private namespace that this test makes for the
//! child, with `enter_private_ipc_namespace` made to fail (planted
//! `no-ipc-namespace`): the target believes it is on the host and owns only
//! the keys it is given, while the real host stays untouched.
//!
//! Run: `cargo test -p shm-harness --features planted-bugs --test planted_bugs`
//! (or `scripts/planted-bugs.sh`, which also runs the libFuzzer targets).
//! Every run is a child process of its own, since a planted bug is chosen by
//! environment variable and lives for the process.

#![allow(unsafe_code)] // opts in: raw calls against the kernel under test

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;

/// Inputs tried per bug before giving up.
const BUDGET: u64 = 20_000;

/// Keys a host-mode child owns.
const HOST_KEYS: &str = "0x5eed0000-0x5eed00ff";

/// One planted bug, the target that must catch it, where, and what the
/// oracle's message must say: one of `expect`, each a `&`-separated list of
/// phrases that must all be in it.
struct Plan {
    bug: &'static str,
    target: &'static str,
    host: bool,
    expect: &'static [&'static str],
}

/// The disagreement the two old host-mode blind spots hide: the kernel was
/// never asked, the model says it would have created the segment.
const SPURIOUS_ENOSPC: &str = "disagree on shmget: shmget(&ENOSPC (No space left on device)&model:  Create";

const PLANS: &[Plan] = &[
    Plan { bug: "no-remove-on-drop", target: "ops", host: false, expect: &["after its guard was dropped"] },
    Plan {
        bug: "no-detach-on-drop",
        target: "ops",
        host: false,
        // Also: a removed segment outlives its guard because the dropped
        // attachments stayed (which input finds it first depends on how
        // inputs decode: adding an `ops` operation changed it).
        expect: &[
            "after every attachment was dropped",
            "leak after the input: segments left in the namespace",
            "after its guard was dropped&still there, nattch",
        ],
    },
    Plan { bug: "accept-size-0", target: "args", host: false, expect: &["disagree on shmget: shmget(&size 0,"] },
    Plan { bug: "shmid-as-index", target: "ops", host: false, expect: &["model and kernel disagree on "] },
    Plan { bug: "spurious-enospc", target: "args", host: false, expect: &[SPURIOUS_ENOSPC] },
    Plan { bug: "stat-index-shifted", target: "ops", host: false, expect: &["disagree on SHM_STAT at index "] },
    Plan { bug: "spurious-enospc", target: "args", host: true, expect: &[SPURIOUS_ENOSPC] },
    Plan { bug: "accept-size-0", target: "args", host: true, expect: &["disagree on shmget: shmget(&size 0,"] },
    Plan { bug: "model-unmap-keeps-nattch", target: "ops", host: false, expect: &["after munmap"] },
];

/// Whether `msg` says one of the `expect` lists (see [`Plan::expect`]).
fn says(msg: &str, expect: &str) -> bool {
    expect.split('\n').any(|all| all.split('&').all(|phrase| msg.contains(phrase)))
}

/// The message of the last panic in this process.
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fn input(seed: u64) -> Vec<u8> {
    let len = (seed as usize * 7) % 512 + 8;
    shm_harness::fuzzing::random_bytes(seed.wrapping_add(0x5eed), len)
}

/// Runs one input; the panic message if the oracle panicked.
fn try_input(target: &str, seed: u64) -> Option<String> {
    let data = input(seed);
    match std::panic::catch_unwind(|| shm_harness::fuzzing::replay(target, &data)) {
        Ok(()) => None,
        Err(_) => Some(std::mem::take(&mut *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()))),
    }
}

/// In the child: confine, then hunt (`PLANTED_SEEDS` unset) or run the
/// control over `PLANTED_SEEDS` seeds. Exits 0 only on the expected outcome.
fn child(target: &str) -> ! {
    let conf = match shm_harness::fuzzing::confine::try_confinement() {
        Ok(c) => c,
        Err(why) => {
            println!("cannot run, which fails this test: {why}");
            std::process::exit(1);
        }
    };
    let want_host = std::env::var("PLANTED_HOST").is_ok();
    if conf.private == want_host {
        println!("ran in the wrong mode (private namespace: {}), which fails this test", conf.private);
        std::process::exit(1);
    }
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = format!("{msg} [at {:?}]", info.location());
    }));
    if let Some(seeds) = std::env::var("PLANTED_SEEDS").ok().and_then(|v| v.parse::<u64>().ok()) {
        for seed in 0..seeds {
            if let Some(msg) = try_input(target, seed) {
                println!("the control (no bug) panicked at input {}: {msg}", seed + 1);
                std::process::exit(1);
            }
        }
        println!("control clean over {seeds} inputs");
        std::process::exit(0);
    }
    let expect = std::env::var("PLANTED_EXPECT").unwrap_or_default();
    for seed in 0..BUDGET {
        if let Some(msg) = try_input(target, seed) {
            if says(&msg, &expect) {
                println!("caught after {} inputs: {}", seed + 1, first_line(&msg));
                std::process::exit(0);
            }
            println!("a panic that is not the oracle's finding (expected {expect:?}): {msg}");
            std::process::exit(1);
        }
    }
    println!("not caught in {BUDGET} inputs");
    std::process::exit(1);
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Runs this executable as a child: the bug (or none), host mode or not.
fn run_child(plan: &Plan, planted: bool, seeds: Option<u64>) -> (bool, String) {
    let mut bugs = Vec::new();
    if planted {
        bugs.push(plan.bug);
    }
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.env("PLANTED_TARGET", plan.target).env("PLANTED_EXPECT", plan.expect.join("\n")).env_remove("PLANTED_SEEDS");
    if let Some(n) = seeds {
        cmd.env("PLANTED_SEEDS", n.to_string());
    }
    if plan.host {
        bugs.push("no-ipc-namespace");
        cmd.env("PLANTED_HOST", "1").env("SHM_HARNESS_FUZZ_KEYS", HOST_KEYS);
        // SAFETY: runs in the forked child before exec; this test's main
        // thread is its only thread (harness = false, and `output` starts
        // none), so nothing can hold a lock the child needs. It puts the
        // child's "host" in a private IPC namespace, so nothing it does can
        // reach the real host's.
        unsafe {
            cmd.pre_exec(|| {
                shm_harness::namespace::enter_private_ipc_namespace().map_err(|e| std::io::Error::other(e.to_string()))
            });
        }
    } else {
        cmd.env_remove("PLANTED_HOST");
    }
    cmd.env("SHM_HARNESS_PLANTED", bugs.join(","));
    match cmd.output() {
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let said = if out.status.success() || err.is_empty() { said } else { format!("{said} / stderr: {err}") };
            (out.status.success(), said)
        }
        Err(e) => (false, format!("could not start the child: {e}")),
    }
}

fn main() {
    if let Ok(target) = std::env::var("PLANTED_TARGET") {
        child(&target);
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut failed = 0;
    for plan in PLANS {
        let mode = if plan.host { "host" } else { "private" };
        let (caught, said) = run_child(plan, true, None);
        let n = said.strip_prefix("caught after ").and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok());
        let control = match (caught, n) {
            (true, Some(n)) => run_child(plan, false, Some(n)),
            _ => (false, "not run: the bug was not caught".to_string()),
        };
        let ok = caught && control.0;
        println!(
            "planted bug {:<18} target {:<4} {mode:<7} {}: {said}\n    control without the bug: {}",
            plan.bug,
            plan.target,
            if ok { "ok    " } else { "FAILED" },
            control.1
        );
        failed += usize::from(!ok);
    }
    // Longer controls in host mode, where the model judges the limits
    // against SHM_INFO and the kernel's default shmmax lets inputs make
    // segments of any size: no false alarm there either.
    for (target, seeds) in [("args", 2000), ("ops", 500)] {
        let plan = Plan { bug: "", target, host: true, expect: &[] };
        let (ok, said) = run_child(&plan, false, Some(seeds));
        println!("no bug, target {target:<4} host    {}: {said}", if ok { "ok    " } else { "FAILED" });
        failed += usize::from(!ok);
    }
    println!("{} passed, {failed} failed", PLANS.len() + 2 - failed);
    std::process::exit(i32::from(failed > 0));
}
