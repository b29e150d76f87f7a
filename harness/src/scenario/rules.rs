//! Every per-step rule of the language, in one place: what a step binds,
//! what it does to its process's attachments, whether it may end its
//! process, who answers it and whether a chain of steps stops after it.
//! The parser (which admits a scenario), the actors (which perform it) and
//! the supervisor (which schedules and judges it) all ask here, so they
//! cannot disagree.

use super::ast::{Expect, MapChange, Op, Step};

/// What a step does to the acting process's attachments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentChange {
    /// Nothing.
    None,
    /// If it succeeds, the process holds a new attachment of this name.
    Adds(String),
    /// Whatever its answer, the process no longer holds this attachment.
    Ends(String),
}

impl Op {
    /// The name a step binds when it succeeds (`NAME = ...`).
    pub fn binds(&self) -> Option<&str> {
        match self {
            Op::Create { name, .. }
            | Op::Open { name, .. }
            | Op::Attach { name, .. }
            | Op::Shmctl { name, .. }
            | Op::Spawn { name, .. }
            | Op::Ftok { name, .. } => name.as_deref(),
            Op::KeyLiteral { name, .. } => Some(name),
            _ => None,
        }
    }

    /// What the step does to the acting process's attachments: an attach
    /// adds one (if it succeeds); a detach, or an unmap of the whole
    /// mapping, ends one whatever its answer (an unmap of a range does not:
    /// nattch stays).
    pub fn attachment_change(&self) -> AttachmentChange {
        match self {
            Op::Attach { name: Some(n), .. } => AttachmentChange::Adds(n.clone()),
            Op::Detach { attachment } => AttachmentChange::Ends(attachment.clone()),
            Op::Mapping { attachment, change: MapChange::Unmap(None) } => AttachmentChange::Ends(attachment.clone()),
            _ => AttachmentChange::None,
        }
    }

    /// Whether the step's `shmget` creates a segment when it succeeds, given
    /// the key it resolved to: a `create`, and an `open` of `IPC_PRIVATE`
    /// (which always creates, whatever the flags). A creation is recorded
    /// as the scenario's own before the step is answered.
    pub fn creates(&self, resolved_key: i32) -> bool {
        match self {
            Op::Create { .. } => true,
            Op::Open { .. } => resolved_key == 0,
            _ => false,
        }
    }

    /// Steps whose purpose is to end the acting process (`exit`, `kill`,
    /// `crash`).
    pub fn ends_process(&self) -> bool {
        matches!(self, Op::Exit { .. } | Op::Kill | Op::Crash)
    }

    /// Steps the acting process may not survive: memory accesses (a fault),
    /// the steps whose purpose is to end it, and unmaps or remaps (which may
    /// reach the process's own memory). The actor answers these before it
    /// performs them can no longer be assumed.
    pub fn may_end_process(&self) -> bool {
        matches!(
            self,
            Op::Write { .. }
                | Op::Read { .. }
                | Op::Peek { .. }
                | Op::Poke { .. }
                | Op::Exit { .. }
                | Op::Crash
                | Op::Mapping { .. }
                | Op::Attach { remap: true, .. }
        )
    }

    /// Steps the supervisor answers itself, without an actor.
    pub fn is_local(&self) -> bool {
        matches!(self, Op::KeyLiteral { .. } | Op::Kill | Op::Segments | Op::Lookup { .. })
    }
}

impl super::ast::Scenario {
    /// Multiplies every duration the scenario waits for by `factor`: its
    /// `timeout` line and each `eventually` limit (the run's `--timeout`
    /// is scaled by the caller). For machines that are slower as a whole,
    /// such as an emulated VM; what a step expects does not change.
    pub fn scale_time(&mut self, factor: u32) {
        self.timeout = self.timeout.map(|t| t.saturating_mul(factor));
        for step in &mut self.steps {
            step.eventually = step.eventually.map(|d| d.saturating_mul(factor));
        }
    }
}

impl Expect {
    /// Whether the expectation is that the step succeeds (so that what it
    /// binds is bound).
    pub fn succeeds(&self) -> bool {
        matches!(
            self,
            Expect::Ok
                | Expect::Data(_)
                | Expect::Byte(_)
                | Expect::Stat(_)
                | Expect::Output(_)
                | Expect::Outputs(_)
                | Expect::Number(_)
                | Expect::Present(_)
                | Expect::Mapped(_)
                | Expect::Ctl(_)
        )
    }

    /// Whether the expectation is that the acting process ends (a signal or
    /// an exit status).
    pub fn ends_process(&self) -> bool {
        matches!(self, Expect::Signal(_) | Expect::Exited(_))
    }
}

impl Step {
    /// Whether the step's process is gone after it, as written.
    pub fn ends_process(&self) -> bool {
        self.op.ends_process() || self.expect.ends_process()
    }

    /// Whether a chain of steps handed from actor to actor must end after
    /// this step: its process ends (the supervisor reaps it before anything
    /// else happens), or an external program runs (which gets a step
    /// timeout of its own), or a `shmctl` binds a name (host isolation
    /// guards what it bound before a later step of the chain could use it:
    /// `shmctl t = s SHM_STAT_ANY` then `rm t`).
    pub fn ends_chain(&self) -> bool {
        matches!(self.op, Op::Exit { .. } | Op::Crash | Op::Run { .. } | Op::Wait { .. } | Op::Signal { .. } | Op::Exec)
            || matches!(self.op, Op::Shmctl { name: Some(_), .. })
            || self.expect.ends_process()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse;

    fn step(line: &str) -> Step {
        let sc = parse("r.scn", &format!("process A\nA: create s = 0x5 size 4096\nA: attach m = s\n{line}\n")).unwrap();
        sc.steps.last().unwrap().clone()
    }

    #[test]
    fn scale_time_multiplies_timeouts_and_eventually_only() {
        let mut sc =
            parse("t.scn", "timeout 2s\nprocess A\neventually 500ms: A: segments => 0\nA: segments => 0\n").unwrap();
        sc.scale_time(4);
        assert_eq!(sc.timeout, Some(std::time::Duration::from_secs(8)));
        assert_eq!(sc.steps[0].eventually, Some(std::time::Duration::from_secs(2)));
        assert_eq!(sc.steps[1].eventually, None);
    }

    #[test]
    fn binds_only_named_steps() {
        assert_eq!(step("A: create t = 0x6 size 4096").op.binds(), Some("t"));
        assert_eq!(step("A: rm s").op.binds(), None);
    }

    #[test]
    fn attachments_added_and_ended() {
        assert_eq!(step("A: attach n = s").op.attachment_change(), AttachmentChange::Adds("n".into()));
        assert_eq!(step("A: detach m").op.attachment_change(), AttachmentChange::Ends("m".into()));
        assert_eq!(step("A: rm s").op.attachment_change(), AttachmentChange::None);
    }

    #[test]
    fn chain_ends_where_process_ends() {
        assert!(step("A: exit 0").ends_chain());
        assert!(step("A: exit 0").ends_process());
        assert!(!step("A: rm s").ends_chain());
        assert!(step("A: segments => 1").op.is_local());
        assert!(step("A: write m 0 \"x\"").op.may_end_process());
        assert!(!step("A: rm s").op.may_end_process());
    }
}
