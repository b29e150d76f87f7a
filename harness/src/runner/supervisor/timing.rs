//! When each step started and ended, as the supervisor saw it (monotonic
//! clock), for the report: a step starts when the supervisor sends it (a
//! step chained after another: when that one's answer came, since the
//! actor goes on right after answering; a local step: when the supervisor
//! begins it) and ends when its answer came: the first time the
//! supervisor saw the process's answer pipe readable while it waited (the
//! answers of a group are read in file order, so a later step's answer
//! may wait in its pipe), else when it read the answer.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

use crate::runner::wire::Run;
use crate::scenario::Step;

/// The times of a scenario's steps. See the module docs.
#[derive(Debug)]
pub(crate) struct Timing {
    /// The scenario's start (its turn): offsets count from here.
    t0: Instant,
    /// Per step: when it was sent (the last try, for an `eventually` step).
    sent: Vec<Option<Instant>>,
    /// Per step: whether it was sent in a chain after the step before it.
    chained: Vec<bool>,
    /// Per step: when its answer came.
    ended: Vec<Option<Instant>>,
    /// Processes whose answer pipe was seen readable, and when first.
    readable: HashMap<String, Instant>,
}

impl Timing {
    /// No step sent yet, for `steps` steps; offsets from now.
    pub(crate) fn new(steps: usize) -> Self {
        Timing {
            t0: Instant::now(),
            sent: vec![None; steps],
            chained: vec![false; steps],
            ended: vec![None; steps],
            readable: HashMap::new(),
        }
    }

    /// The scenario starts now (its turn came).
    pub(crate) fn start(&mut self, now: Instant) {
        self.t0 = now;
    }

    /// `runs` (one chain) were sent at `now`: each step after the chain's
    /// first follows the one before it.
    pub(crate) fn sent(&mut self, runs: &[Run], now: Instant) {
        let first = runs.first().map_or(0, |r| r.from);
        for run in runs {
            // A process that is sent a step has no unread answer left.
            self.readable.remove(&run.process);
            for k in run.from..run.to {
                self.sent[k] = Some(now);
                self.chained[k] = k != first;
                self.ended[k] = None;
            }
        }
    }

    /// Local step `k` ran from `start` to `end`.
    pub(crate) fn local(&mut self, k: usize, start: Instant, end: Instant) {
        self.sent[k] = Some(start);
        self.chained[k] = false;
        self.ended[k] = Some(end);
    }

    /// `process`'s answer pipe was seen readable at `now` (only the first
    /// time counts until an answer of it is read).
    pub(crate) fn saw_readable(&mut self, process: &str, now: Instant) {
        self.readable.entry(process.to_string()).or_insert(now);
    }

    /// Whether `process`'s answer pipe is known to hold something unread.
    pub(crate) fn is_readable(&self, process: &str) -> bool {
        self.readable.contains_key(process)
    }

    /// Something other than an answer (a traced program's report) was
    /// read from `process`'s pipe: what made it readable is taken.
    pub(crate) fn read_other(&mut self, process: &str) {
        self.readable.remove(process);
    }

    /// Step `k` of `process` was answered (or ended, or timed out): read at `now`.
    pub(crate) fn answered(&mut self, k: usize, process: &str, now: Instant) {
        let came = self.readable.remove(process).unwrap_or(now);
        self.ended[k] = Some(came.max(self.start_of(k).unwrap_or(came)));
    }

    /// When step `k` started: when it was sent, or (chained) when the step
    /// before it ended, whichever is later.
    fn start_of(&self, k: usize) -> Option<Instant> {
        let sent = self.sent[k]?;
        let before = if self.chained[k] { k.checked_sub(1).and_then(|j| self.ended[j]) } else { None };
        Some(before.map_or(sent, |b| b.max(sent)))
    }

    /// Step `k`'s start and end, in microseconds since the scenario's start.
    pub(crate) fn span_us(&self, k: usize) -> (Option<u64>, Option<u64>) {
        let us = |t: Instant| t.saturating_duration_since(self.t0).as_micros() as u64;
        (self.start_of(k).map(us), self.ended[k].map(us))
    }

    /// Whether step `k`'s time overlapped that of another step of its
    /// group (`steps`: the scenario's steps). A step of the group not yet
    /// answered is still under way.
    pub(crate) fn overlapped(&self, k: usize, steps: &[Step]) -> bool {
        let (Some(start), Some(end)) = (self.start_of(k), self.ended[k]) else { return false };
        group_of(k, steps).filter(|&j| j != k).any(|j| match self.start_of(j) {
            Some(s) => s < end && self.ended[j].is_none_or(|e| start < e),
            None => false,
        })
    }
}

/// The steps of the `&` group that holds step `k` (`k..k+1` alone).
fn group_of(k: usize, steps: &[Step]) -> Range<usize> {
    let mut head = k;
    while head > 0 && steps[head].concurrent {
        head -= 1;
    }
    let end = k + 1 + steps[k + 1..].iter().take_while(|s| s.concurrent).count();
    head..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn steps() -> Vec<Step> {
        let text = "process A, B\nA: create s = private size 8\nA: stat s\n& B: stat s\nA: rm s\nB: stat s\n";
        crate::scenario::parse("t.scn", text).expect("parses").steps
    }

    fn run(p: &str, from: usize, to: usize) -> Run {
        Run { process: p.into(), from, to }
    }

    #[test]
    fn groups_are_found_from_any_of_their_steps() {
        let s = steps();
        assert_eq!(group_of(1, &s), 1..3);
        assert_eq!(group_of(2, &s), 1..3);
        assert_eq!(group_of(0, &s), 0..1);
        assert_eq!(group_of(3, &s), 3..4);
    }

    #[test]
    fn a_chained_step_starts_when_the_one_before_it_answered() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Timing::new(5);
        t.start(t0);
        t.sent(&[run("A", 3, 4), run("B", 4, 5)], at(1));
        t.answered(3, "A", at(3));
        // B's answer was seen before it was read.
        t.saw_readable("B", at(4));
        t.saw_readable("B", at(6));
        t.answered(4, "B", at(9));
        assert_eq!(t.span_us(3), (Some(1000), Some(3000)));
        assert_eq!(t.span_us(4), (Some(3000), Some(4000)));
        assert!(!t.overlapped(3, &steps()), "a step alone overlaps nothing");
    }

    #[test]
    fn steps_of_a_group_overlap_when_sent_before_the_other_ended() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let s = steps();
        let mut t = Timing::new(5);
        t.start(t0);
        t.sent(&[run("A", 1, 2)], at(1));
        t.sent(&[run("B", 2, 3)], at(2));
        // B's step is still under way when A's is judged.
        t.answered(1, "A", at(5));
        assert!(t.overlapped(1, &s));
        t.answered(2, "B", at(7));
        assert!(t.overlapped(2, &s));
        // One after the other (as a chain would run them): no overlap.
        let mut t = Timing::new(5);
        t.start(t0);
        t.sent(&[run("A", 1, 2)], at(1));
        t.answered(1, "A", at(5));
        assert!(!t.overlapped(1, &s));
        t.sent(&[run("B", 2, 3)], at(6));
        t.answered(2, "B", at(7));
        assert!(!t.overlapped(2, &s));
    }
}
