//! Replays every fuzz corpus and regression file (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) through the same oracles as the fuzz
//! targets, on stable, each file its own test; then a few thousand
//! deterministic pseudo-random inputs per target, so the oracles keep being
//! exercised without libFuzzer.
//!
//! The process enters a private IPC namespace before any test thread starts
//! (threads inherit it), and the tests run one at a time: they share it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use libtest_mimic::{Arguments, Failed, Trial};
use shm_harness::fuzzing::{self, confine};

/// Random inputs per target and test run.
const RANDOM_INPUTS: usize = 1500;

fn run_one(target: &'static str, data: Vec<u8>) -> Result<(), Failed> {
    catch_unwind(AssertUnwindSafe(|| fuzzing::replay(target, &data))).map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        Failed::from(msg.unwrap_or_else(|| "the oracle panicked".into()))
    })
}

fn main() {
    let mut args = Arguments::from_args();
    // One namespace for the whole process: tests must not run at once.
    args.test_threads = Some(1);
    let confined = confine::try_confinement().map(|_| ()).map_err(|e| e.to_string());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut trials = Vec::new();
    for &target in fuzzing::TARGETS {
        for kind in ["corpus", "regressions"] {
            let dir = root.join(kind).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
            files.sort();
            for path in files {
                if path.extension().is_some_and(|x| x == "md") {
                    continue;
                }
                let name = format!("{kind}::{target}::{}", path.file_name().unwrap().to_string_lossy());
                let data = std::fs::read(&path).unwrap();
                trials.push(Trial::test(name, move || run_one(target, data)));
            }
        }
        trials.push(Trial::test(format!("random::{target}"), move || {
            for seed in 0..RANDOM_INPUTS as u64 {
                let len = (seed as usize * 7) % 512 + 8;
                let data = shm_harness::fuzzing::random_bytes(seed ^ (target.len() as u64 * 0x1000), len);
                run_one(target, data.clone()).map_err(|e| {
                    Failed::from(format!(
                        "random input {seed} ({} bytes: {data:02x?}):\n{}",
                        data.len(),
                        e.message().unwrap_or("")
                    ))
                })?;
            }
            Ok(())
        }));
    }
    if let Err(why) = &confined {
        eprintln!("skipped: the fuzz replays need a private IPC namespace: {why}");
        for t in &mut trials {
            *t = std::mem::replace(t, Trial::test("", || Ok(()))).with_ignored_flag(true);
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
