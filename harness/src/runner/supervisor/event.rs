//! The vocabulary between the supervisor's scheduler and its driver: what
//! happened ([`Event`], fed to [`super::schedule::Schedule::handle_event`])
//! and what to do next ([`Command`], performed by the driver in
//! `supervisor/mod.rs`). Types only: no pipe, no process, no clock read.

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::interp::judge::StepResult;
use crate::interp::{Ending, Outcome, TracedSegment};
use crate::runner::supervisor::Abort;
use crate::runner::wire::Run;

/// Something that happened, as the driver saw it.
#[derive(Debug)]
pub(crate) enum Event {
    /// The scenario's turn came: scheduling starts.
    Begin,
    /// Step `step` was answered (by its actor, or by the supervisor for a
    /// local step).
    Answered {
        /// The step (index into the scenario's steps).
        step: usize,
        /// The answer.
        outcome: Outcome,
    },
    /// The process of step `step` ended instead of answering it.
    Ended {
        /// The step.
        step: usize,
        /// How the process ended.
        ending: Ending,
    },
    /// No answer to step `step` came within its step timeout.
    TimedOut {
        /// The step.
        step: usize,
        /// The process's state (why it did not answer), for the report.
        state: String,
    },
    /// While step `step` was awaited, a traced program of its process
    /// reported segments it created or changed.
    Traced {
        /// The step awaited.
        step: usize,
        /// What the program's tree made.
        segments: Vec<TracedSegment>,
        /// The deadline the wait for the answer had (it goes on with it).
        deadline: Instant,
    },
    /// A try of an `eventually` step was looked at: `settled` if it is
    /// the last one (it answered as expected, or it did not answer at all).
    Checked {
        /// The step.
        step: usize,
        /// What the try gave.
        result: StepResult,
        /// Whether no more tries are needed.
        settled: bool,
    },
    /// Step `step`'s result was judged and recorded: `Ok`, or the failure.
    Judged {
        /// The step.
        step: usize,
        /// The verdict.
        verdict: Result<(), Abort>,
    },
    /// The pause between two tries of an `eventually` step is over.
    Paused,
    /// How the processes of a `finally` group's steps are, one per step.
    Surveyed(Vec<Life>),
    /// The driver could not do what it was told (a host-mode guard
    /// refused, a pipe broke, an actor panicked, the coordinator died).
    Failed(Abort),
}

/// How a process is, as far as a `finally` step cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    /// It runs and can take a step.
    Alive,
    /// It ended.
    Ended,
    /// It was never started (its `fork` did not happen).
    NeverStarted,
}

/// The tries of an `eventually` step when its last answer is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tries {
    /// How many.
    pub count: u32,
    /// When the first began (the report shows the time since).
    pub since: Instant,
}

/// What the driver does next. A batch of commands is performed in order;
/// the first command that reports an [`Event`] ends it (the commands of a
/// batch that report one are last, but for a failure: then the rest of the
/// batch is dropped).
#[derive(Debug)]
pub(crate) enum Command {
    /// Host isolation: check that step `0` touches only the scenario's own
    /// segments. Reports only a refusal ([`Event::Failed`]).
    Guard(usize),
    /// Send a chain of runs to the actor of its first run. Reports only a
    /// failure.
    Send(Vec<Run>),
    /// Wait for step `step`'s answer (sleeping on the answer pipes of
    /// `involved`) until `deadline`, or one step timeout from now.
    /// Reports [`Event::Answered`], [`Event::Ended`], [`Event::TimedOut`],
    /// [`Event::Traced`] or [`Event::Failed`].
    Await {
        /// The step.
        step: usize,
        /// The processes whose answers are pending.
        involved: Vec<String>,
        /// When the wait gives up (`None`: one step timeout from now).
        deadline: Option<Instant>,
    },
    /// Put in the books what a traced program of `process` made. Reports nothing.
    RecordTraced {
        /// The process that ran the program.
        process: String,
        /// What it made.
        segments: Vec<TracedSegment>,
    },
    /// Answer local step `0` in the supervisor. Reports
    /// [`Event::Answered`], [`Event::Ended`] or [`Event::Failed`].
    AnswerLocally(usize),
    /// Look at a try of `eventually` step `step`. Reports [`Event::Checked`].
    Check {
        /// The step.
        step: usize,
        /// What the try gave.
        result: StepResult,
    },
    /// Judge step `step`'s result, add it to the transcript and the books.
    /// Reports [`Event::Judged`].
    Judge {
        /// The step.
        step: usize,
        /// Its result.
        result: StepResult,
        /// For an `eventually` step: its tries.
        tries: Option<Tries>,
    },
    /// Wait this long before the next try. Reports [`Event::Paused`] or
    /// [`Event::Failed`] (the coordinator died meanwhile).
    Pause(Duration),
    /// Say how the processes of these steps are. Reports [`Event::Surveyed`].
    Survey(Range<usize>),
    /// A `finally` step that cannot run: shown with why. Reports nothing.
    NotRun {
        /// The step.
        step: usize,
        /// Why not.
        reason: String,
    },
    /// Scheduling is over: the first failure, if any, and the failures of
    /// `finally` steps after it.
    Finish {
        /// The first failure (`Ok`: none).
        outcome: Result<(), Abort>,
        /// Later failures of `finally` steps.
        later: Vec<crate::report::StepFailure>,
    },
}
