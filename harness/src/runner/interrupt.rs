//! An interrupt is not a crash: the coordinator takes SIGINT, SIGTERM and
//! SIGHUP as news, not as its death.
//!
//! [`Interrupts::take`] blocks them and reads them through a `signalfd` the
//! coordinator polls with its supervisors' reports (no signal handler runs,
//! ever). A signal this process ignores (an inherited `SIG_IGN`, as under
//! `nohup`) or handles (a caller's handler) is left alone. The blocked set
//! is remembered here, and [`restore_in_child`] (called by the one guarded
//! fork, [`crate::runner::fork`]) unblocks it in every child but the
//! supervisors (they end by their life pipe), so actors and what they
//! execute get the mask they would have had. When the run has
//! stopped, [`die_of`] ends the process the way the signal would have:
//! default disposition, unblocked, raised again (status 128+N for a shell).

#![allow(unsafe_code)] // opts in: signal masks, dispositions, raise

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::runner::journal;

/// The signals that interrupt a run.
const INTERRUPTS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Bit `n` set: signal `n` was blocked by [`Interrupts::take`] (children
/// unblock it).
static TAKEN: AtomicU64 = AtomicU64::new(0);

/// The interrupts this process reads as news instead of dying of them.
#[derive(Debug)]
pub(crate) struct Interrupts {
    /// `None`: every interrupt was ignored, handled or blocked already.
    fd: Option<SignalFd>,
}

impl Interrupts {
    /// Blocks each of SIGINT, SIGTERM and SIGHUP whose disposition is the
    /// default and that is not blocked already, and opens a `signalfd` for
    /// them (close-on-exec, non-blocking).
    ///
    /// # Errors
    /// `sigaction`, `sigprocmask` or `signalfd` failed (the errno).
    pub(crate) fn take() -> Result<Interrupts, Errno> {
        let blocked = SigSet::thread_get_mask()?;
        let mut set = SigSet::empty();
        for sig in INTERRUPTS {
            if !blocked.contains(sig) && disposition_is_default(sig)? {
                set.add(sig);
            }
        }
        if set.iter().next().is_none() {
            return Ok(Interrupts { fd: None });
        }
        set.thread_block()?;
        TAKEN.store(set.iter().fold(0u64, |bits, s| bits | 1 << s as u64), Ordering::SeqCst);
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(Interrupts { fd: Some(fd) })
    }

    /// The fd to poll (readable when an interrupt is pending), if any.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// The interrupt pending, if one is (consumed: [`die_of`] raises it again).
    pub(crate) fn pending(&self) -> Option<Signal> {
        let info = self.fd.as_ref()?.read_signal().ok()??;
        Signal::try_from(info.ssi_signo as i32).ok()
    }
}

impl Drop for Interrupts {
    /// The run is over: what [`Interrupts::take`] blocked is unblocked
    /// again (after the `signalfd` is closed), so a later run in this
    /// process (`run --repeat`) takes the interrupts afresh instead of
    /// finding them blocked and leaving them blocked for good. A signal
    /// that came after the last [`Interrupts::pending`] acts now, as it
    /// would have without the run.
    fn drop(&mut self) {
        self.fd = None;
        let bits = TAKEN.swap(0, Ordering::SeqCst);
        let mut set = SigSet::empty();
        for sig in INTERRUPTS.into_iter().filter(|&s| bits & (1 << s as u64) != 0) {
            set.add(sig);
        }
        if bits != 0 {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
        }
    }
}

/// Whether `sig`'s disposition is `SIG_DFL` (not ignored, not handled).
fn disposition_is_default(sig: Signal) -> Result<bool, Errno> {
    // SAFETY: an all-zero sigaction is a valid out-parameter.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `old`.
    let r = unsafe { libc::sigaction(sig as i32, std::ptr::null(), &mut old) };
    Errno::result(r)?;
    Ok(old.sa_sigaction == libc::SIG_DFL)
}

/// In a child of the guarded fork: unblocks what [`Interrupts::take`]
/// blocked, so the child has the mask it would have had.
pub(crate) fn restore_in_child() {
    let bits = TAKEN.load(Ordering::SeqCst);
    if bits == 0 {
        return;
    }
    let mut set = SigSet::empty();
    for sig in INTERRUPTS.into_iter().filter(|&s| bits & (1 << s as u64) != 0) {
        set.add(sig);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
}

/// How long host-mode supervisors have, after an interrupt, to tear their
/// scenarios down (their kill of every process is bounded by 5 s).
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// The coordinator's end on an interrupt (`sig`): it started nothing more;
/// the supervisors' life pipe (`life_w`) is hung up, and in host isolation
/// (a `journal`) it waits, [`STOP_GRACE`] at most, until every supervisor
/// (`supervisors`) has torn its scenario down and exited; then it settles
/// what the journal still holds of the scenarios that were running
/// (`files`), deletes it, and dies of `sig`. A supervisor still running at
/// the deadline keeps the journal for the sweep. In namespace isolation the
/// supervisors die with this process (their death signal) and their
/// namespaces with them.
pub(crate) fn stop(
    sig: Signal,
    supervisors: &[Pid],
    files: &[&str],
    life_w: OwnedFd,
    journal: Option<journal::Journal>,
) -> ! {
    drop(life_w);
    if let Some(journal) = journal {
        let deadline = Instant::now() + STOP_GRACE;
        let mut left = supervisors.to_vec();
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|&pid| matches!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive)));
            std::thread::sleep(Duration::from_millis(2));
        }
        if left.is_empty() {
            for file in files {
                let _ = journal::settle_scenario(journal.path(), file, |line| eprintln!("{line}"));
            }
            journal.finish();
        } else {
            eprintln!(
                "shm-harness: interrupted by {sig}; {} supervisor(s) still tearing down after {STOP_GRACE:?}: `shm-harness sweep` removes what they leave",
                left.len()
            );
        }
    }
    die_of(sig)
}

/// Ends this process as `sig` would have: its default disposition (it had
/// it: only such signals are taken), unblocked, raised. Falls back to exit
/// status 128+`sig` should the signal not end it.
pub(crate) fn die_of(sig: Signal) -> ! {
    // SAFETY: SIG_DFL installs no handler code.
    let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
    let mut set = SigSet::empty();
    set.add(sig);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let _ = nix::sys::signal::raise(sig);
    crate::runner::fork::exit_now(128 + sig as i32)
}
