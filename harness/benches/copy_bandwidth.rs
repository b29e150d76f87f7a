//! `cargo bench --bench copy_bandwidth`: what the atomic copies cost.
//! `read_at`/`write_at` (relaxed word atomics, see `sysv`'s memory model) on
//! a 64 MiB segment against plain `memcpy` over the same mapping (what they
//! were before), as bandwidth and as the ratio. Prints numbers; asserts
//! nothing about time. The target: atomics cost at most 10% (ratio >= 0.90).

#![allow(unsafe_code)] // opts in: raw calls against the kernel under test

use std::hint::black_box;
use std::time::{Duration, Instant};

use shm_harness::sysv::{AttachFlags, CreateOptions};

const LEN: usize = 64 << 20;
const ROUNDS: usize = 15;

/// The median of `ROUNDS` timings of `f`.
fn median(mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[ROUNDS / 2]
}

fn gbps(d: Duration) -> f64 {
    LEN as f64 / d.as_secs_f64() / 1e9
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Err(e) = shm_harness::namespace::enter_private_ipc_namespace() {
        println!("skipped: {e}");
        return;
    }
    let seg = CreateOptions::new(LEN).create_private().expect("a 64 MiB private segment");
    let att = seg.attach(AttachFlags::empty()).expect("attach");
    let mut buf = vec![0x5au8; LEN];
    att.write_at(0, &buf).expect("touch every page");
    let shm = att.as_ptr();

    let read_atomic = median(|| att.read_at(0, black_box(&mut buf)).unwrap());
    // SAFETY: this thread is the only user of the mapping and of `buf`, both
    // LEN bytes long: the plain copy the atomic one replaces.
    let read_plain = median(|| unsafe { std::ptr::copy_nonoverlapping(shm, black_box(buf.as_mut_ptr()), LEN) });
    let write_atomic = median(|| att.write_at(0, black_box(&buf)).unwrap());
    // SAFETY: as above.
    let write_plain = median(|| unsafe { std::ptr::copy_nonoverlapping(black_box(buf.as_ptr()), shm, LEN) });
    // A misaligned start: head and tail words go through compare-exchange.
    let write_odd = median(|| att.write_at(3, black_box(&buf[..LEN - 8])).unwrap());

    println!("64 MiB copies, median of {ROUNDS}:");
    println!(
        "  read_at  (atomic words): {:6.2} GB/s   memcpy: {:6.2} GB/s   ratio {:.2} (target >= 0.90)",
        gbps(read_atomic),
        gbps(read_plain),
        read_plain.as_secs_f64() / read_atomic.as_secs_f64()
    );
    println!(
        "  write_at (atomic words): {:6.2} GB/s   memcpy: {:6.2} GB/s   ratio {:.2} (target >= 0.90)",
        gbps(write_atomic),
        gbps(write_plain),
        write_plain.as_secs_f64() / write_atomic.as_secs_f64()
    );
    println!("  write_at at offset 3:    {:6.2} GB/s", gbps(write_odd));
}
