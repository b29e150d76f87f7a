//! The scheduler fed events by hand: no fork, no pipe, no clock.

use super::*;
use crate::interp::{Ending, Outcome, Value};
use crate::scenario::parse;

/// A command, shortly: `guard 1`, `send A:1-3 B:3-4`, `await 1 [A B]`,
/// `local 0`, `check 2`, `judge 2`, `judge 2 tries 3`, `pause 10ms`,
/// `survey 5-6`, `not run 6: why`, `finish ok`, `finish step 4 later 1`.
fn show(c: &Command) -> String {
    match c {
        Command::Guard(k) => format!("guard {k}"),
        Command::Send(runs) => {
            let each: Vec<String> = runs.iter().map(|r| format!("{}:{}-{}", r.process, r.from, r.to)).collect();
            format!("send {}", each.join(" "))
        }
        Command::Await { step, involved, deadline } => {
            let same = if deadline.is_some() { " (same deadline)" } else { "" };
            format!("await {step} [{}]{same}", involved.join(" "))
        }
        Command::RecordTraced { process, .. } => format!("traced {process}"),
        Command::AnswerLocally(k) => format!("local {k}"),
        Command::Check { step, .. } => format!("check {step}"),
        Command::Judge { step, tries: None, .. } => format!("judge {step}"),
        Command::Judge { step, tries: Some(t), .. } => format!("judge {step} tries {}", t.count),
        Command::Pause(d) => format!("pause {d:?}"),
        Command::Survey(r) => format!("survey {}-{}", r.start, r.end),
        Command::NotRun { step, reason } => format!("not run {step}: {reason}"),
        Command::Finish { outcome, later } => {
            let first = match outcome {
                Ok(()) => "ok".to_string(),
                Err(Abort::Step(f)) => format!("step {}", f.line),
                Err(Abort::Xfail(m)) => format!("xfail {}", m.0.line),
                Err(Abort::Harness(m)) => format!("harness: {m}"),
                Err(Abort::Orphaned) => "orphaned".to_string(),
            };
            format!("finish {first} later {}", later.len())
        }
    }
}

/// A scheduler over a parsed scenario, fed events at a fixed time
/// (plus an offset where the time matters).
struct Feed {
    sc: Scenario,
    t0: Instant,
}

impl Feed {
    fn new(text: &str) -> Self {
        Feed { sc: parse("s.scn", text).expect("the test scenario parses"), t0: Instant::now() }
    }

    fn schedule(&self, handoff: bool, host: bool) -> Schedule<'_> {
        Schedule::new(&self.sc, handoff, host)
    }
}

fn feed(s: &mut Schedule<'_>, event: Event, at: Instant) -> Vec<String> {
    s.handle_event(event, at).iter().map(show).collect()
}

fn ok(step: usize) -> Event {
    Event::Judged { step, verdict: Ok(()) }
}

fn answered(step: usize) -> Event {
    Event::Answered { step, outcome: Outcome { call: "c".into(), result: Ok(Value::Unit) } }
}

fn failed(step: usize, line: usize) -> Event {
    let f = StepFailure { line, process: "A".into(), step: "s".into(), expected: "ok".into(), actual: "EINVAL".into() };
    Event::Judged { step, verdict: Err(Abort::Step(f)) }
}

const THREE: &str = "process A, B, C
A: key k = 0x1234
A: create s = k size 8
B: open t = k
C: open u = k
C: exit 0
A: rm s
";

#[test]
fn chains_end_at_an_exit_and_a_local_step_is_answered_by_the_supervisor() {
    let f = Feed::new(THREE);
    let mut s = f.schedule(true, false);
    let t = f.t0;
    assert_eq!(feed(&mut s, Event::Begin, t), ["local 0"]);
    assert_eq!(feed(&mut s, answered(0), t), ["judge 0"]);
    // One chain handed from A to B to C, ending with C's exit; every
    // step guarded before it is sent; answers awaited in order.
    assert_eq!(
        feed(&mut s, ok(0), t),
        ["guard 1", "guard 2", "guard 3", "guard 4", "send A:1-2 B:2-3 C:3-5", "await 1 [A B C]"]
    );
    assert_eq!(feed(&mut s, ok(1), t), ["await 2 [A B C]"]);
    assert_eq!(feed(&mut s, ok(2), t), ["await 3 [A B C]"]);
    assert_eq!(feed(&mut s, ok(3), t), ["await 4 [A B C]"]);
    assert_eq!(feed(&mut s, Event::Ended { step: 4, ending: Ending::Exited(0) }, t), ["judge 4"]);
    assert_eq!(feed(&mut s, ok(4), t), ["guard 5", "send A:5-6", "await 5 [A]"]);
    assert_eq!(feed(&mut s, ok(5), t), ["finish ok later 0"]);
    // Nothing follows the end.
    assert!(feed(&mut s, ok(5), t).is_empty());
}

#[test]
fn host_isolation_starts_a_chain_at_each_create_or_open_and_many_processes_at_each_change() {
    let f = Feed::new(THREE);
    let t = f.t0;
    let mut host = f.schedule(true, true);
    feed(&mut host, Event::Begin, t);
    feed(&mut host, answered(0), t);
    assert_eq!(feed(&mut host, ok(0), t), ["guard 1", "send A:1-2", "await 1 [A]"]);
    assert_eq!(feed(&mut host, ok(1), t), ["guard 2", "send B:2-3", "await 2 [B]"]);
    assert_eq!(feed(&mut host, ok(2), t), ["guard 3", "guard 4", "send C:3-5", "await 3 [C]"]);
    // Without hand-off (many processes), a chain is one process's.
    let f = Feed::new("process A, B\nA: create s = private size 8\nA: stat s\nB: stat s\nA: rm s\n");
    let mut alone = f.schedule(false, false);
    assert_eq!(feed(&mut alone, Event::Begin, t), ["guard 0", "guard 1", "send A:0-2", "await 0 [A]"]);
    feed(&mut alone, ok(0), t);
    assert_eq!(feed(&mut alone, ok(1), t), ["guard 2", "send B:2-3", "await 2 [B]"]);
    assert_eq!(feed(&mut alone, ok(2), t), ["guard 3", "send A:3-4", "await 3 [A]"]);
}

#[test]
fn a_chain_holds_at_most_max_chain_steps() {
    let text = format!("process A\nA: create s = private size 8\n{}A: rm s\n", "A: stat s\n".repeat(MAX_CHAIN + 5));
    let f = Feed::new(&text);
    let mut s = f.schedule(true, false);
    let first = feed(&mut s, Event::Begin, f.t0);
    assert_eq!(first[MAX_CHAIN], format!("send A:0-{MAX_CHAIN}"));
    assert_eq!(first.len(), MAX_CHAIN + 2);
    for k in 0..MAX_CHAIN - 1 {
        feed(&mut s, ok(k), f.t0);
    }
    let second = feed(&mut s, ok(MAX_CHAIN - 1), f.t0);
    assert_eq!(second.last().map(String::as_str), Some(format!("await {MAX_CHAIN} [A]").as_str()));
    assert!(second.contains(&format!("send A:{MAX_CHAIN}-{}", f.sc.steps.len())));
}

const GROUP: &str = "process A, B, C
A: key k = 0x1234
A: create s = k size 8
& B: open t = k
& C: open u = k
finally:
A: rm s
B: segments => 1
C: segments => 1
";

#[test]
fn a_concurrent_group_is_sent_whole_before_any_answer_is_awaited() {
    let f = Feed::new(GROUP);
    let mut s = f.schedule(true, false);
    let t = f.t0;
    feed(&mut s, Event::Begin, t);
    feed(&mut s, answered(0), t);
    assert_eq!(
        feed(&mut s, ok(0), t),
        ["guard 1", "guard 2", "guard 3", "send A:1-2", "send B:2-3", "send C:3-4", "await 1 [A B C]"]
    );
    assert_eq!(feed(&mut s, ok(1), t), ["await 2 [A B C]"]);
    assert_eq!(feed(&mut s, ok(2), t), ["await 3 [A B C]"]);
    // The steps before `finally:` are over: each finally step runs if
    // its process can take it.
    assert_eq!(feed(&mut s, ok(3), t), ["survey 4-5"]);
    assert_eq!(feed(&mut s, Event::Surveyed(vec![Life::Alive]), t), ["guard 4", "send A:4-5", "await 4 [A]"]);
}

#[test]
fn a_failure_in_a_group_goes_to_finally_where_processes_owing_answers_take_no_step() {
    let f = Feed::new(GROUP);
    let mut s = f.schedule(true, false);
    let t = f.t0;
    feed(&mut s, Event::Begin, t);
    feed(&mut s, answered(0), t);
    feed(&mut s, ok(0), t);
    // A's step failed: B's and C's answers are still unread.
    assert_eq!(feed(&mut s, failed(1, 3), t), ["survey 4-5"]);
    assert_eq!(feed(&mut s, Event::Surveyed(vec![Life::Alive]), t), ["guard 4", "send A:4-5", "await 4 [A]"]);
    // A later failure is kept apart from the first.
    assert_eq!(feed(&mut s, answered(4), t), ["judge 4"]);
    assert_eq!(feed(&mut s, failed(4, 7), t), ["survey 5-6"]);
    assert_eq!(
        feed(&mut s, Event::Surveyed(vec![Life::Alive]), t),
        ["not run 5: process B still owes an answer", "survey 6-7"]
    );
    assert_eq!(
        feed(&mut s, Event::Surveyed(vec![Life::Ended]), t),
        ["not run 6: process C has ended", "finish step 3 later 1"]
    );
}

#[test]
fn a_failed_step_stops_its_chain_and_goes_to_finally() {
    let f = Feed::new("process A, B\nA: create s = private size 8\nB: stat s\nA: stat s\nfinally:\nA: rm s\n");
    let mut s = f.schedule(true, false);
    let t = f.t0;
    assert_eq!(
        feed(&mut s, Event::Begin, t),
        ["guard 0", "guard 1", "guard 2", "send A:0-1 B:1-2 A:2-3", "await 0 [A B]"]
    );
    // B's step failed: A's last step of the chain is not awaited; the
    // chain's processes owe nothing (the chain stops at the failure).
    feed(&mut s, ok(0), t);
    assert_eq!(feed(&mut s, failed(1, 3), t), ["survey 3-4"]);
    assert_eq!(feed(&mut s, Event::Surveyed(vec![Life::Alive]), t), ["guard 3", "send A:3-4", "await 3 [A]"]);
    assert_eq!(feed(&mut s, ok(3), t), ["finish step 3 later 0"]);
}

#[test]
fn a_harness_failure_stops_at_once_without_finally() {
    let f = Feed::new(GROUP);
    let mut s = f.schedule(true, false);
    let t = f.t0;
    feed(&mut s, Event::Begin, t);
    assert_eq!(
        feed(&mut s, Event::Failed(Abort::Harness("line 2: pipe broke".into())), t),
        ["finish harness: line 2: pipe broke later 0"]
    );
    assert!(feed(&mut s, ok(0), t).is_empty());
    // A step's failure without `finally:` ends the run too.
    let f = Feed::new(THREE);
    let mut s = f.schedule(true, false);
    feed(&mut s, Event::Begin, t);
    feed(&mut s, answered(0), t);
    assert_eq!(feed(&mut s, failed(0, 2), t), ["finish step 2 later 0"]);
}

#[test]
fn a_timeout_leaves_its_process_owing_an_answer() {
    let f = Feed::new("process A, B\nA: create s = private size 8\nfinally:\nA: rm s\nB: segments => 1\n");
    let mut s = f.schedule(true, false);
    let t = f.t0;
    feed(&mut s, Event::Begin, t);
    assert_eq!(feed(&mut s, Event::TimedOut { step: 0, state: "sleeping".into() }, t), ["judge 0"]);
    assert_eq!(feed(&mut s, failed(0, 2), t), ["survey 1-2"]);
    assert_eq!(
        feed(&mut s, Event::Surveyed(vec![Life::Alive]), t),
        ["not run 1: process A still owes an answer", "survey 2-3"]
    );
    // B never started a step and is alive: its local step is answered.
    assert_eq!(feed(&mut s, Event::Surveyed(vec![Life::Alive]), t), ["local 2"]);
    assert_eq!(
        feed(&mut s, Event::Surveyed(vec![Life::NeverStarted]), t),
        Vec::<String>::new(),
        "a survey is only awaited when asked for"
    );
}

#[test]
fn traced_segments_go_to_the_books_and_the_wait_goes_on_with_its_deadline() {
    let f = Feed::new(THREE);
    let mut s = f.schedule(true, false);
    let t = f.t0;
    feed(&mut s, Event::Begin, t);
    feed(&mut s, answered(0), t);
    feed(&mut s, ok(0), t);
    let deadline = t + Duration::from_secs(10);
    assert_eq!(
        feed(&mut s, Event::Traced { step: 1, segments: vec![], deadline }, t),
        ["traced A", "await 1 [A B C] (same deadline)"]
    );
}

#[test]
fn an_eventually_step_is_tried_alone_until_it_settles_or_its_time_is_up() {
    let f = Feed::new("process A\nA: create s = private size 8\neventually 1s: A: stat s => nattch 0\nA: rm s\n");
    let mut s = f.schedule(true, false);
    let t = f.t0;
    // The chain stops before the `eventually` step.
    assert_eq!(feed(&mut s, Event::Begin, t), ["guard 0", "send A:0-1", "await 0 [A]"]);
    assert_eq!(feed(&mut s, ok(0), t), ["guard 1", "send A:1-2", "await 1 [A]"]);
    assert_eq!(feed(&mut s, answered(1), t), ["check 1"]);
    let unsettled = |at: u64| {
        (
            Event::Checked { step: 1, result: StepResult::TimedOut(String::new()), settled: false },
            t + Duration::from_millis(at),
        )
    };
    let (e, at) = unsettled(5);
    assert_eq!(feed(&mut s, e, at), ["pause 10ms"]);
    assert_eq!(feed(&mut s, Event::Paused, at), ["guard 1", "send A:1-2", "await 1 [A]"]);
    let (e, at) = unsettled(40);
    // The pause doubles.
    assert_eq!(feed(&mut s, e, at), ["pause 20ms"]);
    feed(&mut s, Event::Paused, at);
    // 985 ms spent and a 40 ms pause would pass the second: the last try is judged.
    let (e, at) = unsettled(985);
    assert_eq!(feed(&mut s, e, at), ["judge 1 tries 3"]);
    assert_eq!(feed(&mut s, ok(1), at), ["guard 2", "send A:2-3", "await 2 [A]"]);
    // A try that settles is judged at once.
    let f = Feed::new("process A\neventually 1s: A: segments => 0\n");
    let mut s = f.schedule(true, false);
    assert_eq!(feed(&mut s, Event::Begin, t), ["local 0"]);
    assert_eq!(feed(&mut s, answered(0), t), ["check 0"]);
    let settled = Event::Checked { step: 0, result: StepResult::TimedOut(String::new()), settled: true };
    assert_eq!(feed(&mut s, settled, t), ["judge 0 tries 1"]);
}

/// Whether `batch` is `group` guarded, then sent step by step (to `procs`),
/// then the wait for its first answer: the whole group sent before any await.
fn sent_whole(batch: &[String], group: std::ops::Range<usize>, procs: &[&str]) -> bool {
    let sends: Vec<String> = group.clone().zip(procs).map(|(k, p)| format!("send {p}:{k}-{}", k + 1)).collect();
    let guards: Vec<String> = group.clone().map(|k| format!("guard {k}")).collect();
    let expected: Vec<String> =
        guards.into_iter().chain(sends).chain([format!("await {} [{}]", group.start, procs.join(" "))]).collect();
    batch == expected.as_slice()
}

/// Issue 19: the step that heads a group never joins the chain before it
/// (a create, an ftok, a step of the same process or of another one, with
/// or without hand-off, in either isolation): the chain ends before the
/// head, and the whole group is sent before any of it is awaited.
#[test]
fn the_head_of_a_group_never_joins_the_chain_before_it() {
    let f = Feed::new("process A, B\nA: create s = private size 8\nA: stat s\n& B: stat s\nA: rm s\n");
    let t = f.t0;
    for (handoff, host) in [(true, false), (false, false), (true, true), (false, true)] {
        let mut s = f.schedule(handoff, host);
        assert_eq!(feed(&mut s, Event::Begin, t), ["guard 0", "send A:0-1", "await 0 [A]"], "{handoff} {host}");
        assert!(sent_whole(&feed(&mut s, ok(0), t), 1..3, &["A", "B"]), "{handoff} {host}");
        feed(&mut s, ok(1), t);
        // A step after the group waits for all of its answers.
        assert_eq!(feed(&mut s, ok(2), t), ["guard 3", "send A:3-4", "await 3 [A]"]);
    }
}

#[test]
fn a_group_after_an_ftok_a_local_step_or_another_process_is_sent_whole() {
    let run = "run \"true\"";
    // After an ftok (an actor's step that does not end its chain).
    let f = Feed::new(&format!("file f\nprocess A, B\nA: key k = ftok \"f\" 1\nA: {run}\n& B: {run}\n"));
    let mut s = f.schedule(true, false);
    assert_eq!(feed(&mut s, Event::Begin, f.t0), ["guard 0", "send A:0-1", "await 0 [A]"]);
    assert!(sent_whole(&feed(&mut s, ok(0), f.t0), 1..3, &["A", "B"]));
    // After a step of the group's other process.
    let f = Feed::new(&format!("file f\nprocess A, B\nB: key k = ftok \"f\" 1\nA: {run}\n& B: {run}\n"));
    let mut s = f.schedule(true, false);
    assert_eq!(feed(&mut s, Event::Begin, f.t0), ["guard 0", "send B:0-1", "await 0 [B]"]);
    assert!(sent_whole(&feed(&mut s, ok(0), f.t0), 1..3, &["A", "B"]));
    // After a local step (a key literal), and right after another group.
    let f = Feed::new(&format!("process A, B\nA: key k = 0x5\nA: {run}\n& B: {run}\nB: {run}\n& A: {run}\n"));
    let mut s = f.schedule(true, false);
    assert_eq!(feed(&mut s, Event::Begin, f.t0), ["local 0"]);
    feed(&mut s, answered(0), f.t0);
    assert!(sent_whole(&feed(&mut s, ok(0), f.t0), 1..3, &["A", "B"]));
    feed(&mut s, ok(1), f.t0);
    assert!(sent_whole(&feed(&mut s, ok(2), f.t0), 3..5, &["B", "A"]));
}

#[test]
fn a_group_in_finally_after_a_chain_is_sent_whole() {
    let text = "process A, B\nA: create s = private size 8\nfinally:\nA: stat s\nA: rm s\n& B: stat s\n";
    let f = Feed::new(text);
    let mut s = f.schedule(true, false);
    let t = f.t0;
    feed(&mut s, Event::Begin, t);
    assert_eq!(feed(&mut s, ok(0), t), ["survey 1-2"]);
    assert_eq!(feed(&mut s, Event::Surveyed(vec![Life::Alive]), t), ["guard 1", "send A:1-2", "await 1 [A]"]);
    assert_eq!(feed(&mut s, ok(1), t), ["survey 2-4"]);
    let both = feed(&mut s, Event::Surveyed(vec![Life::Alive, Life::Alive]), t);
    assert!(sent_whole(&both, 2..4, &["A", "B"]), "{both:?}");
}
