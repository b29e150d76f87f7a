//! Copies between shared memory and private buffers made only of relaxed
//! atomic operations on aligned machine words (`AtomicUsize`).
//!
//! Every access these routines make to the shared side is a relaxed atomic
//! load, store or compare-exchange of one whole, aligned `usize` word:
//!
//! - a read loads every word that holds a byte of the range (the first and
//!   last words may hold bytes outside it; they are loaded, never changed),
//! - a write stores the whole words inside the range, and changes the bytes
//!   of a partly covered first or last word with a compare-exchange loop, so
//!   the bytes next to the range are never written.
//!
//! So every access has the same size and alignment wherever it starts: two
//! copies over overlapping bytes, from two threads, are atomic accesses of
//! one size to the same memory, which Rust's memory model allows (it forbids
//! data races and unsynchronised partly overlapping atomics of different
//! sizes, see `std::sync::atomic`). Relaxed loads of at most a word are
//! allowed on read-only memory too (the std docs list 4 bytes on x86/arm and
//! 8 on x86_64/aarch64, which is `usize` on each), which a `SHM_RDONLY`
//! attachment is.
//!
//! This is the technique of the `atomic-memcpy` crate (P1478 "byte-wise
//! atomic memcpy"), done here for byte ranges of run-time length; that crate
//! copies one value of a type known at compile time, `atomic_load::<T>`,
//! which does not fit `read_at(offset, &mut [u8])`.
//!
//! The routines are plain functions over pointers so that Miri can run them
//! on ordinary memory (`scripts/sanitizers.sh`).

#![allow(unsafe_code)] // opts in: the raw SysV calls and the memory other processes share

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The unit of every access: the machine word.
pub const WORD: usize = std::mem::size_of::<usize>();

/// # Safety
/// `p` is word-aligned and valid for atomic access for the caller's lifetime choice.
unsafe fn word<'a>(p: *const u8) -> &'a AtomicUsize {
    debug_assert_eq!(p as usize % WORD, 0);
    // SAFETY: the caller's contract: aligned, valid, and accessed only
    // through word-sized atomics.
    unsafe { AtomicUsize::from_ptr(p as *mut usize) }
}

/// Splits `[addr, addr + len)` into a head inside the first word, whole
/// words, and a tail inside the last word: `(head_offset, head_len, words, tail_len)`.
fn split(addr: usize, len: usize) -> (usize, usize, usize, usize) {
    let off = addr % WORD;
    let head = if off == 0 { 0 } else { (WORD - off).min(len) };
    let rest = len - head;
    (off, head, rest / WORD, rest % WORD)
}

/// Replaces `bytes.len()` bytes of the word at `w`, starting at byte `at`,
/// leaving the others as they are (compare-exchange loop: bytes another
/// thread or process changes meanwhile are kept).
fn merge(w: &AtomicUsize, at: usize, bytes: &[u8]) {
    let mut cur = w.load(Relaxed);
    loop {
        let mut b = cur.to_ne_bytes();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        match w.compare_exchange_weak(cur, usize::from_ne_bytes(b), Relaxed, Relaxed) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

/// Copies `dst.len()` bytes from `src` into `dst` with relaxed word loads.
///
/// # Safety
/// Every aligned word that holds a byte of `src..src + dst.len()` must be
/// valid for reads for the whole call, and this process may access those
/// words concurrently only through word-sized atomics (or other reads).
pub unsafe fn load(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    if len == 0 {
        return;
    }
    let (off, head, words, tail) = split(src as usize, len);
    let mut i = 0;
    if head != 0 {
        // SAFETY: the word holding the first byte, valid by the contract.
        let w = unsafe { word(src.wrapping_sub(off)) }.load(Relaxed).to_ne_bytes();
        dst[..head].copy_from_slice(&w[off..off + head]);
        i = head;
    }
    let out = dst.as_mut_ptr();
    for _ in 0..words {
        // SAFETY: `src + i` is word-aligned here and inside the range.
        let w = unsafe { word(src.wrapping_add(i)) }.load(Relaxed);
        // SAFETY: `i + WORD <= len`, and `dst` is ours alone.
        unsafe { out.add(i).cast::<usize>().write_unaligned(w) };
        i += WORD;
    }
    if tail != 0 {
        // SAFETY: the word holding the last bytes.
        let w = unsafe { word(src.wrapping_add(i)) }.load(Relaxed).to_ne_bytes();
        dst[i..].copy_from_slice(&w[..tail]);
    }
}

/// Copies `src` to `dst` with relaxed word stores (compare-exchange for a
/// partly covered first or last word).
///
/// # Safety
/// Every aligned word that holds a byte of `dst..dst + src.len()` must be
/// valid for reads and writes for the whole call, and this process may
/// access those words concurrently only through word-sized atomics.
pub unsafe fn store(dst: *mut u8, src: &[u8]) {
    let len = src.len();
    if len == 0 {
        return;
    }
    let (off, head, words, tail) = split(dst as usize, len);
    let mut i = 0;
    if head != 0 {
        // SAFETY: the word holding the first byte.
        merge(unsafe { word(dst.wrapping_sub(off)) }, off, &src[..head]);
        i = head;
    }
    let inp = src.as_ptr();
    for _ in 0..words {
        // SAFETY: `i + WORD <= len` bytes of `src`, which is ours.
        let w = unsafe { inp.add(i).cast::<usize>().read_unaligned() };
        // SAFETY: `dst + i` is word-aligned and inside the range.
        unsafe { word(dst.wrapping_add(i)) }.store(w, Relaxed);
        i += WORD;
    }
    if tail != 0 {
        // SAFETY: the word holding the last bytes.
        merge(unsafe { word(dst.wrapping_add(i)) }, 0, &src[i..]);
    }
}

/// Sets `len` bytes at `dst` to `byte` with relaxed word stores.
///
/// # Safety
/// As [`store`] for `dst..dst + len`.
pub unsafe fn fill(dst: *mut u8, len: usize, byte: u8) {
    if len == 0 {
        return;
    }
    let (off, head, words, tail) = split(dst as usize, len);
    let pattern = [byte; WORD];
    let mut i = 0;
    if head != 0 {
        // SAFETY: the word holding the first byte.
        merge(unsafe { word(dst.wrapping_sub(off)) }, off, &pattern[..head]);
        i = head;
    }
    let w = usize::from_ne_bytes(pattern);
    for _ in 0..words {
        // SAFETY: word-aligned and inside the range.
        unsafe { word(dst.wrapping_add(i)) }.store(w, Relaxed);
        i += WORD;
    }
    if tail != 0 {
        // SAFETY: the word holding the last bytes.
        merge(unsafe { word(dst.wrapping_add(i)) }, 0, &pattern[..tail]);
    }
}

#[cfg(test)]
mod tests {
    //! On ordinary memory, so Miri can check them:
    //! `cargo +nightly miri test -p shm-harness --lib sysv::atomic_copy`.

    use super::*;

    /// A word-aligned buffer of `words` words, as bytes.
    fn buffer(words: usize) -> Vec<usize> {
        vec![0; words]
    }

    fn bytes(buf: &mut [usize]) -> *mut u8 {
        buf.as_mut_ptr().cast()
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn split_covers_the_range_exactly() {
        for addr in 0..2 * WORD {
            for len in 0..4 * WORD {
                let (off, head, words, tail) = split(addr, len);
                assert_eq!(head + words * WORD + tail, len, "addr {addr} len {len}");
                assert_eq!(off, addr % WORD);
                if head != 0 {
                    assert!(off != 0 && off + head <= WORD);
                }
                // After the head, the words start aligned.
                if words != 0 {
                    assert_eq!((addr + head) % WORD, 0);
                }
                assert!(tail < WORD);
            }
        }
    }

    #[test]
    fn every_offset_and_length_round_trips_and_leaves_neighbours_alone() {
        let n = 6;
        for start in 0..2 * WORD {
            for len in 0..=(n - 2) * WORD - start {
                let mut mem = buffer(n);
                let base = bytes(&mut mem);
                // SAFETY: inside the buffer, which only this thread uses.
                unsafe { fill(base, n * WORD, 0xee) };
                let data = pattern(len, start as u8);
                // SAFETY: as above.
                unsafe { store(base.add(start), &data) };
                let mut all = vec![0u8; n * WORD];
                // SAFETY: as above.
                unsafe { load(base, &mut all) };
                assert_eq!(&all[start..start + len], &data[..], "start {start} len {len}");
                assert!(all[..start].iter().all(|b| *b == 0xee), "bytes before the range changed");
                assert!(all[start + len..].iter().all(|b| *b == 0xee), "bytes after the range changed");
                let mut back = vec![0u8; len];
                // SAFETY: as above.
                unsafe { load(base.add(start), &mut back) };
                assert_eq!(back, data);
            }
        }
    }

    #[test]
    fn fill_sets_exactly_the_range() {
        let n = 4;
        for start in 0..WORD + 1 {
            for len in 0..=2 * WORD {
                let mut mem = buffer(n);
                let base = bytes(&mut mem);
                // SAFETY: inside the buffer.
                unsafe { fill(base.add(start), len, 0x5a) };
                let mut all = vec![0u8; n * WORD];
                // SAFETY: inside the buffer.
                unsafe { load(base, &mut all) };
                for (i, b) in all.iter().enumerate() {
                    let want = if (start..start + len).contains(&i) { 0x5a } else { 0 };
                    assert_eq!(*b, want, "byte {i} after fill({start}, {len})");
                }
            }
        }
    }

    #[test]
    fn concurrent_copies_keep_each_others_bytes() {
        // Two threads write disjoint bytes that share words; neither may
        // lose the other's (the compare-exchange of partial words).
        struct Shared(*mut u8);
        // SAFETY: the threads touch the buffer only through these routines.
        unsafe impl Sync for Shared {}
        let mut mem = buffer(8);
        let base = Shared(bytes(&mut mem));
        let base = &base;
        let rounds = if cfg!(miri) { 20 } else { 2000 };
        std::thread::scope(|s| {
            for t in 0..2usize {
                s.spawn(move || {
                    for r in 0..rounds {
                        // Thread 0 owns the odd bytes, thread 1 the even ones.
                        for i in (1 - t..8 * WORD).step_by(2) {
                            // SAFETY: inside the buffer; both threads use only these routines.
                            unsafe { store(base.0.add(i), &[(r as u8) | 1]) };
                        }
                    }
                });
            }
        });
        let mut all = vec![0u8; 8 * WORD];
        // SAFETY: the threads are done.
        unsafe { load(base.0, &mut all) };
        let last = ((rounds - 1) as u8) | 1;
        assert!(all.iter().all(|b| *b == last), "{all:?}");
    }
}
