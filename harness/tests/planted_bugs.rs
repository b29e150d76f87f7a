//! Proves the fuzz oracles can fail: with each known bug planted in the
//! wrapper (`--features planted-bugs`), deterministic pseudo-random inputs
//! go through a fuzz target's oracle until it panics, and the number of
//! inputs it took is printed. Each bug must be caught within the budget.
//!
//! Run: `cargo test -p shm-harness --features planted-bugs --test planted_bugs`
//! (or `scripts/planted-bugs.sh`, which also runs the libFuzzer targets).
//! Every bug runs in a child process of its own, since a planted bug is
//! chosen by environment variable and lives for the process.

use std::process::Command;

/// Inputs tried per bug before giving up.
const BUDGET: u64 = 20_000;

/// Which target should catch which bug.
const PLAN: &[(&str, &str)] =
    &[("no-remove-on-drop", "ops"), ("no-detach-on-drop", "ops"), ("accept-size-0", "args"), ("shmid-as-index", "ops")];

/// In the child: feed inputs until the oracle panics; print how many it took.
fn hunt(target: &str) -> ! {
    if let Err(why) = shm_harness::fuzzing::confine::try_confinement() {
        println!("skipped: {why}");
        std::process::exit(0);
    }
    std::panic::set_hook(Box::new(|_| {}));
    for seed in 0..BUDGET {
        let len = (seed as usize * 7) % 512 + 8;
        let data = shm_harness::fuzzing::random_bytes(seed.wrapping_add(0x5eed), len);
        if std::panic::catch_unwind(|| shm_harness::fuzzing::replay(target, &data)).is_err() {
            println!("caught after {} inputs", seed + 1);
            std::process::exit(0);
        }
    }
    println!("not caught in {BUDGET} inputs");
    std::process::exit(1);
}

fn main() {
    if let (Ok(bug), Ok(target)) = (std::env::var("SHM_HARNESS_PLANTED"), std::env::var("PLANTED_TARGET")) {
        let _ = bug;
        hunt(&target);
    }
    let mut failed = 0;
    for (bug, target) in PLAN {
        let out = Command::new(std::env::current_exe().unwrap())
            .env("SHM_HARNESS_PLANTED", bug)
            .env("PLANTED_TARGET", target)
            .output()
            .expect("run the hunt");
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let ok = out.status.success();
        println!("planted bug {bug:<20} target {target:<5} {}: {said}", if ok { "ok    " } else { "FAILED" });
        if !ok {
            failed += 1;
        }
    }
    println!("{} passed, {failed} failed", PLAN.len() - failed);
    std::process::exit(i32::from(failed > 0));
}
