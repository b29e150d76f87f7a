//! The scenario interpreter's rules, pure: what a step does to the names of
//! a scenario, as one function each side uses.
//!
//! - [`effects`]: from a step and the value its process answered, the
//!   effects (a name bound, a segment created with its identity, an
//!   attachment made or ended, a process forked or spawned). The actor
//!   applies the bindings to its copy of the names; the supervisor applies
//!   all of them to its books.
//! - What a step does to the acting process's attachments, known before it
//!   runs, is a rule of the language: [`crate::scenario::Op::attachment_change`].
//!
//! No fork, no system call: unit-tested below.

use std::collections::HashMap;

use crate::scenario::{Op, Step};

use crate::interp::{Global, Globals, Identity, TracedSegment, Value};

/// What a step did, as the books record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A name now stands for a value.
    Bind(String, Global),
    /// A segment was created: its identity.
    Created(Identity),
    /// A `set` step changed a segment's identity (its `ctime`).
    Reset(Identity),
    /// The acting process attached a segment under this name.
    Attached(String),
    /// A process was forked: its name and pid.
    Forked(String, i32),
    /// An external program ran with this pid.
    Spawned(i32),
    /// A `repeat` created this segment: the scenario's like any creation
    /// (counted by `segments`), but no name reaches it, so the teardown
    /// removes it, by identity, as no leak. (The attachments a `repeat`
    /// makes are its actor's to detach when it finishes.)
    Repeated(Identity),
}

/// The effects of a step that succeeded with value `v`.
pub(crate) fn effects(op: &Op, v: &Value) -> Vec<Effect> {
    let mut out = Vec::new();
    match (op, v) {
        (Op::Create { name, .. } | Op::Open { name, .. }, Value::Created(id)) => {
            out.push(Effect::Created(*id));
            if let Some(n) = name {
                out.push(Effect::Bind(n.clone(), Global::Segment(id.shmid)));
            }
        }
        (Op::Open { name: Some(n), .. }, Value::Shmid(id)) => out.push(Effect::Bind(n.clone(), Global::Segment(*id))),
        (Op::Ftok { name: Some(n), .. } | Op::KeyLiteral { name: n, .. }, Value::Key(k)) => {
            out.push(Effect::Bind(n.clone(), Global::Key(*k)));
        }
        (Op::Attach { name: Some(n), .. }, Value::Attached { addr, .. }) => {
            out.push(Effect::Attached(n.clone()));
            out.push(Effect::Bind(n.clone(), Global::Address(*addr)));
        }
        (Op::Mapping { attachment, .. }, Value::Remapped { addr, .. }) => {
            out.push(Effect::Bind(attachment.clone(), Global::Address(*addr)));
        }
        (Op::Set { .. } | Op::Shmctl { .. }, Value::Reset(id)) => out.push(Effect::Reset(*id)),
        (Op::Shmctl { name: Some(n), .. }, Value::Ctl(a)) => {
            out.push(Effect::Bind(n.clone(), Global::Segment(a.returned())))
        }
        (Op::Fork { child }, Value::Forked(pid)) => {
            out.push(Effect::Bind(child.clone(), Global::Process(*pid)));
            out.push(Effect::Forked(child.clone(), *pid));
        }
        (Op::Run { .. }, Value::Output { pid, .. }) => out.push(Effect::Spawned(*pid)),
        (Op::Repeat { .. }, Value::Repeated { created, .. }) => {
            out.extend(created.iter().flat_map(|id| [Effect::Created(*id), Effect::Repeated(*id)]));
        }
        (Op::Spawn { name, .. }, Value::Started(pid)) => {
            if let Some(n) = name {
                out.push(Effect::Bind(n.clone(), Global::Process(*pid)));
            }
            out.push(Effect::Spawned(*pid));
        }
        _ => {}
    }
    out
}

/// Applies the bindings among `effects` to `globals` (the actor's copy).
pub(crate) fn bind(effects: &[Effect], globals: &mut Globals) {
    for e in effects {
        if let Effect::Bind(n, g) = e {
            globals.insert(n.clone(), *g);
        }
    }
}

/// The names a step that succeeded with `v` bound that host isolation
/// must check are segments of the scenario's own before any later step
/// uses them: first those `captured` from a program's output (a program
/// could print any id), then the segment a `shmctl` reports (`shmctl t = s
/// SHM_STAT_ANY` binds t to whatever holds s's index now, the kernel
/// keeping only an id's index bits there: after `rm s`, possibly a segment
/// of the machine's). `v` is `None` when the step answered no value.
pub(crate) fn bindings_to_vouch_for(
    op: &Op,
    v: Option<&Value>,
    captured: &[(String, Global)],
) -> Vec<(String, Global)> {
    let mut out = captured.to_vec();
    if let (Op::Shmctl { .. }, Some(v)) = (op, v) {
        out.extend(effects(op, v).into_iter().filter_map(|e| match e {
            Effect::Bind(n, g) => Some((n, g)),
            _ => None,
        }));
    }
    out
}

/// The supervisor's books: what the scenario's steps bound and made, kept
/// from the answers it judged (no system call, no process).
#[derive(Debug, Default)]
pub(crate) struct Books {
    /// Names bound so far.
    pub globals: Globals,
    /// Segments the scenario created, by identity, with the line and process
    /// of the step (line 0: answered after the scenario stopped).
    pub created: Vec<(Identity, usize, String)>,
    /// pid -> (line, process) of `run` steps.
    pub spawned: HashMap<i32, (usize, String)>,
    /// (process, attachment) -> the line that attached it.
    pub attach_lines: HashMap<(String, String), usize>,
    /// Segments `repeat` steps created: removed at teardown, not leaks.
    pub repeated: Vec<Identity>,
}

impl Books {
    /// Process `name` was started (forked by the supervisor) as `pid`: the
    /// name stands for it.
    pub fn started(&mut self, name: &str, pid: i32) {
        self.globals.insert(name.to_string(), Global::Process(pid));
    }

    /// `step` answered with `v`, whatever its answer is judged to be (a
    /// failure, an `eventually` try that is not judged): if it is a `run`,
    /// its program's pid is recorded, so that what its processes leave (a
    /// segment, a daemon) is named with the step's line.
    ///
    /// If it is a `repeat`, the segments it created are recorded the same
    /// way, as the teardown's to remove, so that a repetition judged wrong
    /// (a count off by one) does not list each of its segments as a leak.
    pub fn ran(&mut self, step: &Step, v: &Value) {
        if !matches!(step.op, Op::Run { .. } | Op::Repeat { .. }) {
            return;
        }
        for effect in effects(&step.op, v) {
            match effect {
                Effect::Spawned(pid) => {
                    self.spawned.insert(pid, (step.line, step.process.clone()));
                }
                Effect::Created(id) => self.record_creation(id, step),
                Effect::Repeated(id) => self.record_repeated(id),
                _ => {}
            }
        }
    }

    /// Segment `id` created by `step`. The same identity from another line
    /// is a new segment that took a removed one's id (same process, same
    /// second): kept, so that its leak names its own line.
    fn record_creation(&mut self, id: Identity, step: &Step) {
        if !self.created.iter().any(|(i, l, _)| *i == id && *l == step.line) {
            self.created.push((id, step.line, step.process.clone()));
        }
    }

    /// Segment `id`, made by a `repeat`, is the teardown's to remove.
    fn record_repeated(&mut self, id: Identity) {
        if !self.repeated.contains(&id) {
            self.repeated.push(id);
        }
    }

    /// Records what `step`, answered with `v` and judged as expected (with
    /// the names `captured` from a program's output), did; returns its
    /// effects for the process driver.
    pub fn answered(&mut self, step: &Step, v: &Value, captured: Vec<(String, Global)>) -> Vec<Effect> {
        let all = effects(&step.op, v);
        for effect in &all {
            match effect {
                Effect::Bind(n, g) => {
                    self.globals.insert(n.clone(), *g);
                }
                Effect::Created(id) => self.record_creation(*id, step),
                Effect::Reset(id) => {
                    // Only a segment of the scenario's changes identity in its books.
                    if let Some((_, line, p)) = self.created.iter().rev().find(|(i, _, _)| i.shmid == id.shmid).cloned()
                    {
                        self.created.push((*id, line, p));
                    }
                }
                Effect::Attached(n) => {
                    self.attach_lines.insert((step.process.clone(), n.clone()), step.line);
                }
                Effect::Forked(child, _) => {
                    // Inherited attachments keep their lines.
                    let inherited: Vec<_> = self
                        .attach_lines
                        .iter()
                        .filter(|((p, _), _)| *p == step.process)
                        .map(|((_, a), l)| ((child.clone(), a.clone()), *l))
                        .collect();
                    self.attach_lines.extend(inherited);
                }
                Effect::Spawned(pid) => {
                    self.spawned.insert(*pid, (step.line, step.process.clone()));
                }
                Effect::Repeated(id) => self.record_repeated(*id),
            }
        }
        for (name, g) in captured {
            self.globals.insert(name, g);
        }
        all
    }

    /// A segment created by a step whose answer came after the scenario had
    /// stopped (read at teardown): the scenario's all the same.
    pub fn late_creation(&mut self, id: Identity, process: String) {
        if !self.created.iter().any(|(i, _, _)| *i == id) {
            self.created.push((id, 0, process));
        }
    }

    /// A segment the run's journal records for this scenario (read at
    /// teardown): the scenario's, made at `line` by `process`.
    pub fn journaled(&mut self, id: Identity, line: usize, process: String) {
        if !self.created.iter().any(|(i, _, _)| *i == id) {
            self.created.push((id, line, process));
        }
    }

    /// Segments a traced program of `process` created (the scenario's), or
    /// changed (followed only for a segment that was the scenario's).
    pub fn traced(&mut self, segments: &[TracedSegment], process: &str) {
        for s in segments {
            match *s {
                TracedSegment::Created { line, identity } => {
                    if !self.created.iter().any(|(i, _, _)| *i == identity) {
                        self.created.push((identity, line, process.to_string()));
                    }
                }
                TracedSegment::Changed { identity, old_ctime: Some(old), .. } => {
                    let was = Identity { ctime: old, ..identity };
                    if let Some((_, line, p)) = self.created.iter().find(|(i, _, _)| *i == was).cloned() {
                        if !self.created.iter().any(|(i, _, _)| *i == identity) {
                            self.created.push((identity, line, p));
                        }
                    }
                }
                TracedSegment::Changed { old_ctime: None, .. } => {}
            }
        }
    }

    /// What to call `pid` in a report: `none` for 0, the name of a process
    /// of the scenario, the `run` step that started it, or the bare pid.
    pub fn pid_name(&self, pid: i32) -> String {
        if pid == 0 {
            return "none".into();
        }
        for (name, g) in &self.globals {
            if *g == Global::Process(pid) {
                return name.clone();
            }
        }
        if let Some((line, _)) = self.spawned.get(&pid) {
            return format!("pid {pid} (run at line {line})");
        }
        format!("pid {pid}")
    }

    /// The identities of every segment the scenario created.
    pub fn identities(&self) -> Vec<Identity> {
        self.created.iter().map(|(i, _, _)| *i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse;

    /// `shm_next_id` gives a removed segment's id to a new one, made by the
    /// same process in the same second: the same identity. Its leak must
    /// name its own line, not the removed one's (it named line 2 before).
    #[test]
    fn a_reused_id_is_attributed_to_its_latest_creation() {
        let sc =
            parse("t.scn", "process A\nA: create s = private size 8\nA: rm s\nA: create t = private size 8\n").unwrap();
        let mut books = Books::default();
        let id = Identity { shmid: 5, cpid: 2, ctime: 100 };
        books.answered(&sc.steps[0], &Value::Created(id), vec![]);
        books.answered(&sc.steps[2], &Value::Created(id), vec![]);
        assert_eq!(books.created.iter().rev().find(|(i, _, _)| i.shmid == 5).map(|c| c.1), Some(4));
        // The control: one step's creation reported twice is kept once.
        books.answered(&sc.steps[2], &Value::Created(id), vec![]);
        assert_eq!(books.created.len(), 2);
    }

    fn op(src: &str) -> Op {
        let sc = parse("t.scn", src).expect("parses");
        sc.steps.last().expect("a step").op.clone()
    }

    #[test]
    fn a_create_binds_its_name_and_records_the_identity() {
        let o = op("process A\nA: create s = private size 8\n");
        let id = Identity { shmid: 7, cpid: 3, ctime: 99 };
        let e = effects(&o, &Value::Created(id));
        assert_eq!(e, vec![Effect::Created(id), Effect::Bind("s".into(), Global::Segment(7))]);
        let mut g = Globals::new();
        bind(&e, &mut g);
        assert_eq!(g.get("s"), Some(&Global::Segment(7)));
    }

    #[test]
    fn a_detach_ends_the_attachment_whatever_it_is_expected_to_answer() {
        for expect in ["", " => EINVAL", " => ok | EINVAL"] {
            let src = format!("process A\nA: create s = private size 8\nA: attach m = s\nA: detach m{expect}\n");
            assert_eq!(op(&src).attachment_change(), crate::scenario::AttachmentChange::Ends("m".into()), "{expect}");
        }
        // And the parser, using the same rule, refuses a later use.
        let src =
            "process A\nA: create s = private size 8\nA: attach m = s\nA: detach m => ok | EINVAL\nA: read m 0 1\n";
        let err = parse("t.scn", src).unwrap_err();
        assert!(err.message.contains("is not attached in process A"), "{}", err.message);
    }

    /// A raw id (`id N`) never creates and binds no segment: `stat id 0`
    /// and `rm id 0` have no effect; `attach m = id 0` makes attachment m
    /// as an attach of a name does.
    #[test]
    fn a_raw_id_binds_only_the_attachment_it_names() {
        let base = "process A\nA: create s = private size 8\n";
        assert!(effects(&op(&format!("{base}A: stat id 0\n")), &Value::Unit).is_empty());
        assert!(effects(&op(&format!("{base}A: rm id 0\n")), &Value::Unit).is_empty());
        let attached = Value::Attached { addr: 0x1000, size: 8, mapping_len: 4096 };
        let e = effects(&op(&format!("{base}A: attach m = id 0\n")), &attached);
        assert_eq!(e, vec![Effect::Attached("m".into()), Effect::Bind("m".into(), Global::Address(0x1000))]);
        assert!(effects(&op(&format!("{base}A: attach id 0\n")), &attached).is_empty());
    }

    #[test]
    fn a_failed_or_unnamed_step_binds_nothing() {
        let o = op("process A\nA: create private size 8\n");
        assert_eq!(effects(&o, &Value::Created(Identity { shmid: 1, cpid: 1, ctime: 1 })).len(), 1);
        let o = op("process A\nA: create s = private size 8\n");
        assert!(effects(&o, &Value::Unit).is_empty());
    }

    #[test]
    fn the_books_know_segments_by_identity_and_follow_a_set() {
        let sc = parse(
            "b.scn",
            "process A, B\nA: create s = private size 8\nA: attach m = s\nA: set s mode 0640\nA: fork B\n",
        )
        .unwrap();
        let mut books = Books::default();
        let first = Identity { shmid: 4, cpid: 2, ctime: 100 };
        books.answered(&sc.steps[0], &Value::Created(first), vec![]);
        books.answered(&sc.steps[1], &Value::Attached { addr: 1, size: 8, mapping_len: 4096 }, vec![]);
        let after_set = Identity { shmid: 4, cpid: 2, ctime: 101 };
        books.answered(&sc.steps[2], &Value::Reset(after_set), vec![]);
        // A set on a segment the books do not hold adds nothing.
        books.answered(&sc.steps[2], &Value::Reset(Identity { shmid: 9, cpid: 1, ctime: 1 }), vec![]);
        assert_eq!(books.identities(), vec![first, after_set]);
        assert_eq!(books.globals.get("s"), Some(&Global::Segment(4)));
        let e = books.answered(&sc.steps[3], &Value::Forked(7), vec![]);
        assert!(e.contains(&Effect::Forked("B".into(), 7)));
        // The child inherits the attachment, with the line that made it.
        assert_eq!(books.attach_lines.get(&("B".to_string(), "m".to_string())), Some(&3));
        books.late_creation(Identity { shmid: 5, cpid: 2, ctime: 102 }, "A".into());
        assert_eq!(books.created.last().map(|c| c.1), Some(0));
    }

    fn output(pid: i32) -> Value {
        Value::Output {
            pid,
            status: Some(1),
            signal: None,
            stdout: String::new(),
            stderr: String::new(),
            truncated: (0, 0),
        }
    }

    #[test]
    fn a_started_process_is_bound_and_a_run_recorded_whatever_its_verdict() {
        let sc = parse("r.scn", "process A, B\nA: run \"false\" => status 0\nA: spawn p = \"sleep 1\"\n").unwrap();
        let mut books = Books::default();
        books.started("A", 10);
        assert_eq!(books.globals.get("A"), Some(&Global::Process(10)));
        // A `run` whose answer fails its check still names what it leaves.
        books.ran(&sc.steps[0], &output(11));
        assert_eq!(books.spawned.get(&11), Some(&(2, "A".to_string())));
        // A `spawn` is recorded only once judged (by `answered`), not here.
        books.ran(&sc.steps[1], &Value::Started(12));
        assert!(!books.spawned.contains_key(&12));
        books.answered(&sc.steps[1], &Value::Started(12), vec![]);
        assert_eq!(books.spawned.get(&12), Some(&(3, "A".to_string())));
        // And a report names them so.
        assert_eq!(books.pid_name(10), "A");
        assert_eq!(books.pid_name(12), "p");
        assert_eq!(books.pid_name(11), "pid 11 (run at line 2)");
        assert_eq!(books.pid_name(13), "pid 13");
        assert_eq!(books.pid_name(0), "none");
    }

    #[test]
    fn captures_and_a_shmctl_binding_are_vouched_for_in_that_order() {
        let captured = vec![("c".to_string(), Global::Segment(3))];
        let o = op("process A\nA: create s = private size 8\nA: shmctl t = 0 SHM_STAT_ANY\n");
        let ctl = Value::Ctl(crate::sysv::CtlAnswer::Returned(9));
        assert_eq!(
            bindings_to_vouch_for(&o, Some(&ctl), &captured),
            vec![("c".to_string(), Global::Segment(3)), ("t".to_string(), Global::Segment(9))]
        );
        // No value (the process ended, as expected): the captures only.
        assert_eq!(bindings_to_vouch_for(&o, None, &captured), captured);
        // Another step's bindings are the scenario's own by construction.
        let o = op("process A\nA: create s = private size 8\n");
        let id = Identity { shmid: 7, cpid: 3, ctime: 99 };
        assert!(bindings_to_vouch_for(&o, Some(&Value::Created(id)), &[]).is_empty());
    }

    /// A `repeat`'s segments are the scenario's (in `created`, so counted
    /// and removed by identity) and marked as the teardown's to remove.
    #[test]
    fn a_repeat_records_its_segments_for_the_teardown() {
        let sc = parse("r.scn", "process A\nA: repeat 9 create private size 8 until ENOSPC => count 2\n").unwrap();
        let (a, b) = (Identity { shmid: 1, cpid: 2, ctime: 3 }, Identity { shmid: 4, cpid: 2, ctime: 3 });
        let v = Value::Repeated { count: 2, created: vec![a, b], stopped: Some(libc::ENOSPC) };
        let mut books = Books::default();
        let e = books.answered(&sc.steps[0], &v, vec![]);
        assert_eq!(e, vec![Effect::Created(a), Effect::Repeated(a), Effect::Created(b), Effect::Repeated(b)]);
        assert_eq!(books.identities(), vec![a, b]);
        assert_eq!(books.repeated, vec![a, b]);
        assert_eq!(books.created[1].1, 2, "the step's line");
        // Judged wrong (or judged after `ran`), recorded once all the same.
        let mut wrong = Books::default();
        wrong.ran(&sc.steps[0], &v);
        assert_eq!((wrong.identities(), wrong.repeated.clone()), (vec![a, b], vec![a, b]));
        wrong.answered(&sc.steps[0], &v, vec![]);
        assert_eq!((wrong.identities(), wrong.repeated), (vec![a, b], vec![a, b]));
    }

    #[test]
    fn a_fork_binds_the_child_and_a_run_its_program() {
        let o = op("process A, B\nA: fork B\n");
        assert_eq!(
            effects(&o, &Value::Forked(42)),
            vec![Effect::Bind("B".into(), Global::Process(42)), Effect::Forked("B".into(), 42)]
        );
        let o = op("process A\nA: run \"true\"\n");
        let v = Value::Output {
            pid: 5,
            status: Some(0),
            signal: None,
            stdout: String::new(),
            stderr: String::new(),
            truncated: (0, 0),
        };
        assert_eq!(effects(&o, &v), vec![Effect::Spawned(5)]);
    }
}
