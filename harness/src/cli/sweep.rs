//! `shm-harness sweep`: removes, and reports, what dead host-mode runs left.

use std::process::ExitCode;

use shm_harness::runner::journal;

use super::console::{ColorArg, Console, Target};

/// `sweep`'s arguments.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Report only; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `shm-harness sweep`: every journal of a run that is provably dead
/// (its lock can be taken) is read; where its anchor is here (this is the
/// run's IPC namespace, proven), each segment it recorded that the kernel
/// still shows with the recorded identity (shmid, cpid, ctime) is removed
/// and reported on stderr, then the anchor, then the journal; anything else
/// is reported and left alone, as is each segment a process of the run may
/// have created after its journaled intent and was killed before recording.
/// A journal whose namespace cannot be proven here is listed, and deleted past [`journal::MAX_AGE`]. Exit 0: nothing
/// left that can be proven here, or all swept; 1: something could not be
/// removed, checked or read (its journal is kept); 2: the state directory
/// could not be used.
pub fn main(args: SweepArgs, color: ColorArg) -> ExitCode {
    let mut err = Console::new(Target::Stderr, color);
    let dir = match journal::state_dir() {
        Ok(d) => d,
        Err(e) => {
            err.line(&format!("shm-harness sweep: {e}"));
            return ExitCode::from(2);
        }
    };
    let opts = journal::SweepOptions { dry_run: args.dry_run, each_unproven: true };
    let swept = journal::sweep_with(&dir, opts, |line| err.line(&line));
    journal::release_state_dir(&dir);
    match swept {
        Ok(s) => {
            err.line(&format!(
                "shm-harness sweep: {} dead run(s) settled, {} segment(s) {}, {} not ours any more, {} never recorded (left alone), {} could not be removed, checked or read; {} dead run(s) in IPC namespaces that cannot be proven here ({} {} as older than {} days)",
                s.journals,
                s.removed,
                if args.dry_run { "to remove" } else { "removed" },
                s.not_ours,
                s.unrecorded,
                s.failed,
                s.unproven,
                s.expired,
                if args.dry_run { "to delete" } else { "deleted" },
                journal::MAX_AGE.as_secs() / 86400
            ));
            ExitCode::from(u8::from(s.failed > 0))
        }
        Err(e) => {
            err.line(&format!("shm-harness sweep: {e}"));
            ExitCode::from(2)
        }
    }
}
