//! The last line of defence when a run is interrupted (SIGINT, SIGTERM,
//! SIGHUP) in the middle of a scenario: a signal handler in the supervisor
//! kills the scenario's process group (actors die with the supervisor
//! anyway, but programs they started would live on), removes exactly the
//! segments the scenario's steps created (in host mode they would outlive
//! everything; in a namespace it is merely tidy), then lets the signal take
//! its course.
//!
//! The handler may only use async-signal-safe calls, so the segments are kept
//! in a fixed table of atomics: `(shmid, creating pid)` pairs. The table lives
//! in a shared anonymous mapping made before the actors are forked, and the
//! actors write to it themselves the moment a create succeeds: the
//! supervisor may read their answers only when a chain of steps ends, later
//! than an interrupt. A segment is removed only if `IPC_STAT` still shows
//! the recorded creator, so an id that the kernel has since given to someone
//! else's segment is left alone.
//! (In namespace mode nothing is needed: the namespace dies with its last
//! process.)

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;

const SLOTS: usize = 512;

static TABLE: OnceLock<usize> = OnceLock::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The scenario's process group (0: none yet).
static GROUP: AtomicI32 = AtomicI32::new(0);

/// The process group to kill on an interrupt (0: none).
pub(crate) fn set_group(pgid: i32) {
    GROUP.store(pgid, Ordering::SeqCst);
}

/// The table: `SLOTS` shmids, then `SLOTS` creator pids; -1 is empty.
fn table() -> &'static [AtomicI32] {
    let addr = *TABLE.get_or_init(|| {
        let len = SLOTS * 2 * std::mem::size_of::<AtomicI32>();
        // SAFETY: a fresh shared anonymous mapping, ours alone until forked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mapping the janitor's table");
        // SAFETY: the mapping is `len` bytes, aligned, and AtomicI32 has the layout of i32.
        let slots = unsafe { std::slice::from_raw_parts(p.cast::<AtomicI32>(), SLOTS * 2) };
        for slot in slots {
            slot.store(-1, Ordering::SeqCst);
        }
        p as usize
    });
    // SAFETY: as above; the mapping is never unmapped.
    unsafe { std::slice::from_raw_parts(addr as *const AtomicI32, SLOTS * 2) }
}

/// Makes the table and installs the handlers: call in the supervisor before
/// forking a scenario's actors.
pub(crate) fn arm() {
    let _ = table();
    install();
}

/// Records a segment a scenario step created in the host namespace (in the
/// actor that created it).
pub(crate) fn record(shmid: i32, cpid: i32) {
    let Some(_) = TABLE.get() else { return };
    let (ids, cpids) = table().split_at(SLOTS);
    for (id, c) in ids.iter().zip(cpids) {
        if id.compare_exchange(-1, shmid, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            c.store(cpid, Ordering::SeqCst);
            return;
        }
    }
    // Table full: the normal sweep still removes it; only an interrupted
    // run could leave it behind.
}

/// Forgets every recorded segment (the scenario's own sweep has run).
pub(crate) fn clear() {
    GROUP.store(0, Ordering::SeqCst);
    if TABLE.get().is_some() {
        for slot in table() {
            slot.store(-1, Ordering::SeqCst);
        }
    }
}

fn install() {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that only makes async-signal-safe calls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    let group = GROUP.load(Ordering::SeqCst);
    if group > 0 {
        // SAFETY: kill is async-signal-safe; the group is the scenario's own.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    // Only armed processes install this handler, so the table exists.
    let Some(&addr) = TABLE.get() else { return };
    // SAFETY: see `table`.
    let slots = unsafe { std::slice::from_raw_parts(addr as *const AtomicI32, SLOTS * 2) };
    let (ids, cpids) = slots.split_at(SLOTS);
    for (id, c) in ids.iter().zip(cpids) {
        let shmid = id.load(Ordering::SeqCst);
        if shmid < 0 {
            continue;
        }
        // SAFETY: shmctl is a system call; the buffer is on this stack.
        unsafe {
            let mut ds: libc::shmid_ds = std::mem::zeroed();
            if libc::shmctl(shmid, libc::IPC_STAT, &mut ds) == 0 && ds.shm_cpid == c.load(Ordering::SeqCst) {
                libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut());
            }
        }
    }
    // SA_RESETHAND restored the default action: deliver the signal again.
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(sig) };
}
