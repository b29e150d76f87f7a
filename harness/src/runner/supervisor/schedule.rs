//! The supervisor's scheduler: which steps run next, as a state machine.
//!
//! [`Schedule::handle_event`] is its one transition: fed an [`Event`] (an
//! answer came, a process ended, a step timed out, a verdict was reached,
//! ...), it returns the [`Command`]s that follow (guard and send a chain,
//! await an answer, answer a local step, judge a result, pause, finish).
//! It performs nothing itself: no pipe, no fork, no clock read (the driver
//! says what time it is), so its tests (`schedule/tests.rs`) feed it
//! events by hand.
//!
//! The rules it follows:
//! - Steps run in lockstep, in units: a *chain* (consecutive steps handed
//!   from actor to actor, ending where [`Step::ends_chain`] says, before a
//!   step that stands alone (local, `eventually`, or of a concurrent group,
//!   its head included), after [`MAX_CHAIN`] steps, at a
//!   change of process when actors do not hand chains to each other, and in
//!   host isolation before a create or open, which needs its guard first);
//!   a *concurrent group* (`&`: every step guarded, then every step sent,
//!   before any answer is awaited); a *local step* ([`Op::is_local`],
//!   answered by the supervisor); an *`eventually` step* (tried alone until
//!   it answers as expected or its time is up, only the last try judged).
//! - The answers of a unit are awaited and judged in order; the first
//!   failure stops the unit.
//! - A failure before `finally:` goes to the `finally` steps (or ends the
//!   run without them); there, each concurrent group runs whole or not at
//!   all (not when a process of it ended, never started, or still owes an
//!   answer), and failures after the first are kept apart. A failure of the
//!   harness (not of a step) ends the run at once.
//!
//! A step that stands alone (a member or the head of a concurrent group,
//! a local or an `eventually` step: [`Schedule::stands_alone`]) never
//! joins a chain: every unit starts there, so a group is always sent
//! whole, whatever precedes it (issue 19: a group's head used to join the
//! chain before it and be answered before the rest of its group was sent).

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::interp::judge::StepResult;
use crate::report::StepFailure;
use crate::runner::supervisor::event::{Command, Event, Life, Tries};
use crate::runner::supervisor::Abort;
use crate::runner::wire::Run;
use crate::scenario::{Op, Scenario, Step};

/// Steps of one chain at most: a chain must answer within one step timeout.
pub(crate) const MAX_CHAIN: usize = 64;

/// The first pause between two tries of an `eventually` step.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between two tries (the pause doubles up to it).
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

/// The unit of steps under way.
#[derive(Debug)]
enum Unit {
    /// Nothing (before the start, or after the end).
    Idle,
    /// The answers of a chain or a concurrent group, awaited in order.
    Collect {
        /// One past the unit's last step.
        end: usize,
        /// The processes of the unit's steps.
        involved: Vec<String>,
    },
    /// A step the supervisor answers.
    Local(usize),
    /// An `eventually` step being tried.
    Eventually {
        /// The step.
        step: usize,
        /// The tries so far (counting the one under way).
        count: u32,
        /// When the first try began.
        since: Instant,
        /// The pause before the next try.
        pause: Duration,
        /// How long it may be tried.
        limit: Duration,
    },
    /// Waiting to hear how the processes of a `finally` group are.
    Survey(Range<usize>),
}

/// The scheduler's state. See the module docs.
#[derive(Debug)]
pub(crate) struct Schedule<'a> {
    steps: &'a [Step],
    /// Where the `finally` steps start.
    finally: Option<usize>,
    /// Whether actors hand chains to each other (else each chain is one process's).
    handoff: bool,
    /// Host isolation (a create or open starts a chain: its guard comes first).
    host: bool,
    /// The steps being run: those before `finally:`, or one `finally` group.
    section: Range<usize>,
    /// Whether `section` is a `finally` group.
    in_finally: bool,
    /// The first step of the next unit of `section`.
    pos: usize,
    /// The first step of the next `finally` group to look at.
    next_group: usize,
    unit: Unit,
    /// Processes that cannot take another step after a failure (no answer
    /// in time, or answers of a concurrent group still unread).
    unsettled: Vec<String>,
    /// The first failure of a step.
    first: Option<Abort>,
    /// Failures of `finally` steps after the first.
    later: Vec<StepFailure>,
    /// Whether [`Command::Finish`] was given.
    finished: bool,
}

impl<'a> Schedule<'a> {
    /// A schedule for `sc`'s steps; `handoff` if actors hand chains to each
    /// other, `host` in host isolation.
    pub(crate) fn new(sc: &'a Scenario, handoff: bool, host: bool) -> Self {
        Schedule {
            steps: &sc.steps,
            finally: sc.finally,
            handoff,
            host,
            section: 0..0,
            in_finally: false,
            pos: 0,
            next_group: 0,
            unit: Unit::Idle,
            unsettled: Vec::new(),
            first: None,
            later: Vec::new(),
            finished: false,
        }
    }

    /// The transition: what follows `event`, which the driver saw at `now`.
    /// After [`Command::Finish`], nothing follows anything.
    pub(crate) fn handle_event(&mut self, event: Event, now: Instant) -> Vec<Command> {
        if self.finished {
            return Vec::new();
        }
        match event {
            Event::Begin => {
                self.section = 0..self.finally.unwrap_or(self.steps.len());
                self.pos = 0;
                self.start_unit(now)
            }
            Event::Answered { step, outcome } => self.result(step, StepResult::Answered(outcome)),
            Event::Ended { step, ending } => self.result(step, StepResult::Ended(ending)),
            Event::TimedOut { step, state } => {
                self.unsettled.push(self.steps[step].process.clone());
                self.result(step, StepResult::TimedOut(state))
            }
            Event::Traced { step, segments, deadline } => {
                let involved = match &self.unit {
                    Unit::Collect { involved, .. } => involved.clone(),
                    _ => vec![self.steps[step].process.clone()],
                };
                let process = self.steps[step].process.clone();
                vec![
                    Command::RecordTraced { process, segments },
                    Command::Await { step, involved, deadline: Some(deadline) },
                ]
            }
            Event::Checked { step, result, settled } => self.checked(step, result, settled, now),
            Event::Paused => self.try_again(),
            Event::Judged { step, verdict: Ok(()) } => self.passed(step, now),
            Event::Judged { step, verdict: Err(e) } => {
                if let Unit::Collect { end, .. } = self.unit {
                    // Steps of a concurrent group not yet read: their answers
                    // may still come; those processes take no more steps.
                    for later in &self.steps[step + 1..end] {
                        if later.concurrent && !self.unsettled.contains(&later.process) {
                            self.unsettled.push(later.process.clone());
                        }
                    }
                }
                self.fail(e)
            }
            Event::Surveyed(lives) => self.surveyed(&lives, now),
            Event::Failed(e) => self.fail(e),
        }
    }

    /// Starts the unit at `pos`, or ends the section.
    fn start_unit(&mut self, now: Instant) -> Vec<Command> {
        let (i, end) = (self.pos, self.section.end);
        if i >= end {
            return self.section_done();
        }
        let steps = self.steps;
        let group = self.group_len(i, end);
        if let Some(limit) = steps[i].eventually {
            self.unit = Unit::Eventually { step: i, count: 1, since: now, pause: FIRST_PAUSE, limit };
            return self.attempt(i);
        }
        if group > 1 {
            // A concurrent group: every step guarded, then every step sent
            // before any answer is awaited.
            let mut out: Vec<Command> = (i..i + group).map(Command::Guard).collect();
            out.extend((i..i + group).map(|j| Command::Send(vec![single(&steps[j], j)])));
            return self.collect(i..i + group, out);
        }
        if steps[i].op.is_local() {
            self.unit = Unit::Local(i);
            return vec![Command::AnswerLocally(i)];
        }
        let j = self.chain_end(i, end);
        let mut runs: Vec<Run> = Vec::new();
        for (k, step) in steps.iter().enumerate().take(j).skip(i) {
            match runs.last_mut() {
                Some(r) if r.process == step.process => r.to = k + 1,
                _ => runs.push(single(step, k)),
            }
        }
        // Each chained step is guarded before the chain is sent.
        let mut out: Vec<Command> = (i..j).map(Command::Guard).collect();
        out.push(Command::Send(runs));
        self.collect(i..j, out)
    }

    /// One past the last step of the chain that starts at `i` (before `end`).
    fn chain_end(&self, i: usize, end: usize) -> usize {
        let mut j = i;
        loop {
            let step = &self.steps[j];
            j += 1;
            if step.ends_chain() || j >= end || j - i >= MAX_CHAIN {
                return j;
            }
            let next = &self.steps[j];
            // In host mode a create or open needs the guard first: it starts a chain.
            if self.stands_alone(j, end)
                || (!self.handoff && next.process != step.process)
                || (self.host && matches!(next.op, Op::Create { .. } | Op::Open { .. }))
            {
                return j;
            }
        }
    }

    /// How many steps the group that starts at `i` holds (1: a step with
    /// no `&` step right after it), within a section ending at `end`.
    fn group_len(&self, i: usize, end: usize) -> usize {
        1 + self.steps[i + 1..end].iter().take_while(|s| s.concurrent).count()
    }

    /// Whether step `j` (of a section ending at `end`) starts a unit of
    /// its own, never joining the chain before it: a step of a concurrent
    /// group (marked `&`, or the head, right before a `&` step: all of a
    /// group is sent before any of it is answered), a local step (the
    /// supervisor answers it) or an `eventually` step (tried alone).
    fn stands_alone(&self, j: usize, end: usize) -> bool {
        let step = &self.steps[j];
        step.concurrent || self.group_len(j, end) > 1 || step.op.is_local() || step.eventually.is_some()
    }

    /// `before`, then the wait for the first answer of `steps`.
    fn collect(&mut self, steps: Range<usize>, mut before: Vec<Command>) -> Vec<Command> {
        let mut involved: Vec<String> = Vec::new();
        for step in &self.steps[steps.clone()] {
            if !involved.contains(&step.process) {
                involved.push(step.process.clone());
            }
        }
        before.push(Command::Await { step: steps.start, involved: involved.clone(), deadline: None });
        self.unit = Unit::Collect { end: steps.end, involved };
        before
    }

    /// One try of `eventually` step `i`.
    fn attempt(&self, i: usize) -> Vec<Command> {
        let step = &self.steps[i];
        if step.op.is_local() {
            return vec![Command::AnswerLocally(i)];
        }
        vec![
            Command::Guard(i),
            Command::Send(vec![single(step, i)]),
            Command::Await { step: i, involved: vec![step.process.clone()], deadline: None },
        ]
    }

    /// A step's result: judged, or (an `eventually` try) looked at first.
    fn result(&self, step: usize, result: StepResult) -> Vec<Command> {
        if self.steps[step].eventually.is_some() {
            vec![Command::Check { step, result }]
        } else {
            vec![Command::Judge { step, result, tries: None }]
        }
    }

    /// An `eventually` try was looked at: judged if it is the last, else
    /// a pause before the next.
    fn checked(&mut self, step: usize, result: StepResult, settled: bool, now: Instant) -> Vec<Command> {
        let Unit::Eventually { count, since, pause, limit, .. } = self.unit else {
            return vec![Command::Judge { step, result, tries: None }];
        };
        if settled || now.saturating_duration_since(since) + pause > limit {
            return vec![Command::Judge { step, result, tries: Some(Tries { count, since }) }];
        }
        vec![Command::Pause(pause)]
    }

    /// The pause is over: the next try, after a longer pause.
    fn try_again(&mut self) -> Vec<Command> {
        let Unit::Eventually { step, count, pause, .. } = &mut self.unit else { return Vec::new() };
        *count += 1;
        *pause = (*pause * 2).min(LONGEST_PAUSE);
        let step = *step;
        self.attempt(step)
    }

    /// Step `step` answered as expected: the unit's next answer, or the next unit.
    fn passed(&mut self, step: usize, now: Instant) -> Vec<Command> {
        match &self.unit {
            Unit::Collect { end, involved } if step + 1 < *end => {
                vec![Command::Await { step: step + 1, involved: involved.clone(), deadline: None }]
            }
            Unit::Collect { end, .. } => {
                self.pos = *end;
                self.start_unit(now)
            }
            Unit::Local(i) | Unit::Eventually { step: i, .. } => {
                self.pos = *i + 1;
                self.start_unit(now)
            }
            // No verdict was awaited.
            Unit::Idle | Unit::Survey(_) => Vec::new(),
        }
    }

    /// A failure: a step's goes to the `finally` steps (kept as the first,
    /// or among the later ones); the harness's ends the run.
    fn fail(&mut self, e: Abort) -> Vec<Command> {
        self.unit = Unit::Idle;
        if !matches!(e, Abort::Step(_) | Abort::Xfail(_)) {
            return self.finish(Err(e));
        }
        if !self.in_finally {
            let Some(start) = self.finally else { return self.finish(Err(e)) };
            self.first = Some(e);
            self.next_group = start;
            return self.next_finally_group();
        }
        match (&self.first, e) {
            (None, e) => self.first = Some(e),
            (Some(_), Abort::Step(f)) => self.later.push(f),
            (Some(_), Abort::Xfail(marked)) => self.later.push(marked.0),
            (Some(_), _) => unreachable!("a step's failure"),
        }
        self.next_finally_group()
    }

    /// The section ran to its end.
    fn section_done(&mut self) -> Vec<Command> {
        self.unit = Unit::Idle;
        match (self.in_finally, self.finally) {
            (false, None) => self.finish(Ok(())),
            (false, Some(start)) => {
                self.next_group = start;
                self.next_finally_group()
            }
            (true, _) => self.next_finally_group(),
        }
    }

    /// Asks how the processes of the next `finally` group are, or finishes.
    fn next_finally_group(&mut self) -> Vec<Command> {
        let i = self.next_group;
        if i >= self.steps.len() {
            let outcome = self.first.take().map_or(Ok(()), Err);
            return self.finish(outcome);
        }
        // A concurrent group runs whole, or not at all.
        let group = self.group_len(i, self.steps.len());
        self.next_group = i + group;
        self.unit = Unit::Survey(i..i + group);
        vec![Command::Survey(i..i + group)]
    }

    /// The `finally` group runs if every process of it can take a step;
    /// else each of its steps is shown as not run, and the next group follows.
    fn surveyed(&mut self, lives: &[Life], now: Instant) -> Vec<Command> {
        let Unit::Survey(range) = &self.unit else { return Vec::new() };
        let range = range.clone();
        let gone: Vec<String> =
            self.steps[range.clone()].iter().zip(lives).filter_map(|(s, life)| self.cannot_run(s, *life)).collect();
        if gone.is_empty() {
            self.in_finally = true;
            self.pos = range.start;
            self.section = range;
            return self.start_unit(now);
        }
        let reason = gone.join("; ");
        let mut out: Vec<Command> = range.map(|step| Command::NotRun { step, reason: reason.clone() }).collect();
        out.extend(self.next_finally_group());
        out
    }

    /// Why `step` cannot run now, if it cannot: its process ended, never
    /// started, or has an answer pending.
    fn cannot_run(&self, step: &Step, life: Life) -> Option<String> {
        match life {
            Life::Ended => Some(format!("process {} has ended", step.process)),
            Life::NeverStarted => Some(format!("process {} was never started", step.process)),
            Life::Alive if self.unsettled.contains(&step.process) => {
                Some(format!("process {} still owes an answer", step.process))
            }
            Life::Alive => None,
        }
    }

    fn finish(&mut self, outcome: Result<(), Abort>) -> Vec<Command> {
        self.finished = true;
        self.unit = Unit::Idle;
        vec![Command::Finish { outcome, later: std::mem::take(&mut self.later) }]
    }
}

/// Step `i` alone, as a run.
fn single(step: &Step, i: usize) -> Run {
    Run { process: step.process.clone(), from: i, to: i + 1 }
}

#[cfg(test)]
mod tests;
