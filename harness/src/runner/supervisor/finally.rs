//! `finally:`: the steps after it always run. Without a failure before
//! them they run like the others (each of them, even after one of them
//! fails); after a failure, only those whose process is alive and settled
//! (no answer pending), and their failures are reported after the first
//! one, never instead of it.

use crate::scenario::Step;

use crate::report::{Entry, StepFailure};
use crate::runner::supervisor::{Abort, Supervisor};

impl Supervisor<'_> {
    /// Runs the scenario's steps: those before `finally:` in lockstep until
    /// the first failure, then every `finally` step that can run.
    pub(super) fn run_steps(&mut self) -> Result<(), Abort> {
        let steps = self.sc.steps.len();
        let Some(start) = self.sc.finally else { return self.run_range(0..steps) };
        // The first failure: a step's, or an `xfail` step's (XFAIL, unless
        // something else fails too: then the verdict is FAIL).
        let mut first = match self.run_range(0..start) {
            Ok(()) => None,
            Err(e @ (Abort::Step(_) | Abort::Xfail(_))) => Some(e),
            // The harness cannot vouch for anything any more: no cleanup
            // steps, the teardown removes what is left.
            Err(other) => return Err(other),
        };
        let mut i = start;
        while i < steps {
            // A concurrent group runs whole, or not at all.
            let group = 1 + self.sc.steps[i + 1..].iter().take_while(|s| s.concurrent).count();
            let gone: Vec<String> = self.sc.steps[i..i + group].iter().filter_map(|s| self.cannot_run(s)).collect();
            if gone.is_empty() {
                match self.run_range(i..i + group) {
                    Ok(()) => {}
                    Err(e @ (Abort::Step(_) | Abort::Xfail(_))) => match (&first, e) {
                        (None, e) => first = Some(e),
                        (Some(_), Abort::Step(f)) => self.later_failures.push(f),
                        (Some(_), Abort::Xfail(marked)) => self.later_failures.push(marked.0),
                        (Some(_), _) => unreachable!("matched above"),
                    },
                    Err(other) => return Err(other),
                }
            } else {
                for step in &self.sc.steps[i..i + group] {
                    self.transcript.push(Entry {
                        line: step.line,
                        process: step.process.clone(),
                        call: "(finally step not run)".into(),
                        answer: gone.join("; "),
                        ok: true,
                    });
                }
            }
            i += group;
        }
        first.map_or(Ok(()), Err)
    }

    /// Why `step` cannot run now, if it cannot: its process ended, never
    /// started, or has an answer pending.
    fn cannot_run(&self, step: &Step) -> Option<String> {
        let p = &self.procs[&step.process];
        if p.ending.is_some() {
            return Some(format!("process {} has ended", step.process));
        }
        if p.pid.is_none() {
            return Some(format!("process {} was never started", step.process));
        }
        if self.unsettled.contains(&step.process) {
            return Some(format!("process {} still owes an answer", step.process));
        }
        None
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
