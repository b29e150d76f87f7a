//! `finally:`: the steps after it always run. Without a failure before
//! them they run like the others (each of them, even after one of them
//! fails); after a failure, only those whose process is alive and settled
//! (no answer pending), and their failures are reported after the first
//! one, never instead of it. Which steps run is the scheduler's to say
//! ([`super::schedule`]); here is what the driver does about it.

use crate::report::{Entry, StepFailure};
use crate::runner::supervisor::Supervisor;

impl Supervisor<'_> {
    /// Shows `finally` step `step` as not run, and why.
    pub(super) fn not_run(&mut self, step: usize, reason: String) {
        let step = &self.sc.steps[step];
        self.transcript.push(Entry {
            line: step.line,
            process: step.process.clone(),
            call: "(finally step not run)".into(),
            answer: reason,
            ok: true,
            pid: None,
            started_us: None,
            ended_us: None,
            overlapped: false,
        });
    }

    /// The failures of `finally` steps after the first failure, as one line
    /// for the report (`None` without any).
    pub(super) fn later_failures_text(&self) -> Option<String> {
        if self.later_failures.is_empty() {
            return None;
        }
        let each: Vec<String> = self
            .later_failures
            .iter()
            .map(|f: &StepFailure| format!("line {}: {}: expected {}, got {}", f.line, f.step, f.expected, f.actual))
            .collect();
        Some(format!("after the first failure, finally steps failed too: {}", each.join("; ")))
    }
}
