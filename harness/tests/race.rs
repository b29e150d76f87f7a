//! Two threads hammer one attachment through the safe API: interleaved
//! writes whose edges share words, reads over all of it, and a counter word.
//! Checks that no thread's bytes are lost (the partial-word compare-exchange)
//! and that the counter adds up.
//!
//! Under ThreadSanitizer (`scripts/sanitizers.sh`) it must run without a
//! report; built with `--features planted-bugs` and run with
//! `SHM_HARNESS_PLANTED=plain-copies`, the copies are plain `memcpy`s again
//! and ThreadSanitizer must report the data race: the control that shows the
//! check can fail.
//!
//! A plain `main` (no libtest threads), so that it can enter a private IPC
//! namespace while still single-threaded, as an unprivileged user must.

use std::sync::atomic::Ordering;

use shm_harness::sysv::{AttachFlags, CreateOptions};

/// Bytes each thread owns per stripe; odd, so stripes start and end inside words.
const STRIPE: usize = 13;
const STRIPES: usize = 64;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Err(e) = shm_harness::namespace::enter_private_ipc_namespace() {
        // The sanitizer script looks for the "ok" line, so a skip there fails.
        println!("race test: skipped: {e}");
        return;
    }
    let rounds: usize = std::env::var("RACE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let counter_at = 0;
    let data_at = 64;
    let size = data_at + 2 * STRIPE * STRIPES;
    let seg = CreateOptions::new(size).create_private().expect("create a private segment");
    let att = seg.attach(AttachFlags::empty()).expect("attach");
    let att = &att;
    std::thread::scope(|s| {
        for t in 0..2usize {
            s.spawn(move || {
                let mut seen = vec![0u8; size - data_at];
                for r in 0..rounds {
                    let byte = (r as u8).wrapping_mul(2).wrapping_add(t as u8 + 1);
                    // This thread's stripes: even ones for thread 0, odd for 1.
                    for k in (t..2 * STRIPES).step_by(2) {
                        let at = data_at + k * STRIPE;
                        if r % 3 == 0 {
                            att.fill(at, STRIPE, byte).expect("fill");
                        } else {
                            att.write_at(at, &[byte; STRIPE]).expect("write_at");
                        }
                    }
                    att.read_at(data_at, &mut seen).expect("read_at");
                    // Its own stripes hold what it last wrote, whatever the other did.
                    for k in (t..2 * STRIPES).step_by(2) {
                        let stripe = &seen[k * STRIPE..(k + 1) * STRIPE];
                        assert!(stripe.iter().all(|b| *b == byte), "thread {t} round {r} stripe {k}: {stripe:?}");
                    }
                    att.atomic_word(counter_at).expect("counter").fetch_add(1, Ordering::Relaxed);
                    assert!(att.load_word(counter_at).expect("counter") <= 2 * rounds);
                    assert!(att.peek(data_at).is_ok());
                }
            });
        }
    });
    let total = att.atomic_word(counter_at).unwrap().load(Ordering::Relaxed);
    assert_eq!(total, 2 * rounds, "the counter lost increments");
    let mut all = vec![0u8; size - data_at];
    att.read_at(data_at, &mut all).unwrap();
    let last = |t: usize| ((rounds - 1) as u8).wrapping_mul(2).wrapping_add(t as u8 + 1);
    for k in 0..2 * STRIPES {
        assert!(all[k * STRIPE..(k + 1) * STRIPE].iter().all(|b| *b == last(k % 2)), "stripe {k} at the end");
    }
    println!("race test: ok ({rounds} rounds x 2 threads, {total} counter increments)");
}
