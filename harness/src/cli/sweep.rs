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
/// (its lock can be taken) is read, and each segment it recorded that the
/// kernel still shows with the recorded identity (shmid, cpid, ctime) is
/// removed and reported on stderr; anything else is reported and left
/// alone. Exit 0: nothing left, or all swept; 1: something could not be
/// removed; 2: the state directory could not be read.
pub fn main(args: SweepArgs, color: ColorArg) -> ExitCode {
    let mut err = Console::new(Target::Stderr, color);
    let dir = match journal::state_dir() {
        Ok(d) => d,
        Err(e) => {
            err.line(&format!("shm-harness sweep: {e}"));
            return ExitCode::from(2);
        }
    };
    match journal::sweep(&dir, args.dry_run, |line| err.line(&line)) {
        Ok(s) => {
            err.line(&format!(
                "shm-harness sweep: {} dead run(s), {} segment(s) {}, {} not ours any more, {} could not be removed",
                s.journals,
                s.removed,
                if args.dry_run { "to remove" } else { "removed" },
                s.not_ours,
                s.failed
            ));
            ExitCode::from(u8::from(s.failed > 0))
        }
        Err(e) => {
            err.line(&format!("shm-harness sweep: {e}"));
            ExitCode::from(2)
        }
    }
}
