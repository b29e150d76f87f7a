//! `cargo bench --bench fuzz_ops`: executions per second of the ops fuzz
//! target's oracle (model, checks, leak checks) against the same system
//! calls without them. The target: the oracle costs less than the calls it
//! checks, so at least half the bare rate. Prints numbers; asserts nothing
//! about time.

use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use shm_harness::fuzzing::{confine, ops};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Err(why) = confine::try_confinement() {
        println!("skipped: {why}");
        return;
    }
    let n: u64 = std::env::var("BENCH_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let inputs: Vec<ops::OpsInput> = (0..n)
        .filter_map(|seed| {
            let data = shm_harness::fuzzing::random_bytes(seed, (seed as usize * 7) % 512 + 8);
            ops::OpsInput::arbitrary_take_rest(Unstructured::new(&data)).ok()
        })
        .collect();
    let ops: usize = inputs.iter().map(|i| i.ops.len().min(ops::MAX_OPS)).sum();
    // Warm up both paths.
    for i in inputs.iter().take(50) {
        ops::run(i);
        ops::run_bare(i);
    }
    let t = Instant::now();
    for i in &inputs {
        ops::run_bare(i);
    }
    let bare = inputs.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in &inputs {
        ops::run(i);
    }
    let oracle = inputs.len() as f64 / t.elapsed().as_secs_f64();
    println!("ops target, {} inputs ({} operations):", inputs.len(), ops);
    println!("  bare system calls:          {bare:.0} inputs/s");
    println!("  with model, checks, leaks:  {oracle:.0} inputs/s");
    println!("  oracle rate / bare rate:    {:.2} (target >= 0.50)", oracle / bare);
}
