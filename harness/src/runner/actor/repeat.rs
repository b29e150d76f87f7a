//! `repeat MAX OPERATION until ERRNO`: the actor makes the operation (an
//! unnamed `create`, or a plain `attach`) until the kernel refuses it, at
//! most MAX times, and answers how many succeeded, the segments created
//! (by identity: the scenario's, recorded and journaled like any creation)
//! and the errno that ended it. The attachments it made are held in
//! [`Actor::repeated`], no name reaching them, and detached when the actor
//! finishes (before it reports its mappings to the leak oracle).

use crate::scenario::Op;
use crate::sysv::{self, AttachFlags, Attachment};

use crate::interp::{Failure, Globals, Outcome, Value};
use crate::runner::actor::{target_shmid, Actor};

impl Actor<'_> {
    /// Performs step `index`, a `repeat`.
    pub(super) fn repeat_step(&mut self, index: usize, op: &Op, globals: &Globals) -> Outcome {
        let Op::Repeat { max, op: inner, .. } = op else { unreachable!("`{}` is not `repeat`", op.keyword()) };
        let mut count = 0u64;
        let mut created = Vec::new();
        let mut page = None;
        let mut first_call = None;
        let stopped = loop {
            if count == *max {
                break None;
            }
            let outcome = match &**inner {
                Op::Attach { segment, read_only, exec, .. } => {
                    let mut flags = AttachFlags::empty();
                    flags.set(AttachFlags::RDONLY, *read_only);
                    flags.set(AttachFlags::EXEC, *exec);
                    self.attach_again(target_shmid(globals, segment), flags, &mut page)
                }
                create => self.segment_step(index, create, globals),
            };
            first_call.get_or_insert_with(|| outcome.call.clone());
            match outcome.result {
                Ok(Value::Created(id)) => created.push(id),
                Ok(_) => {}
                Err(Failure::Errno { errno, .. }) => break Some(errno),
                // The wrapper refused (an identity it could not record):
                // the step fails with what was made so far left to teardown.
                Err(refused) => return Outcome { call: outcome.call, result: Err(refused) },
            }
            count += 1;
        };
        let ended = match stopped {
            Some(errno) => format!("-1 {}", sysv::errno_name(sysv::Errno::from_raw(errno))),
            None => format!("the most tries ({max}) reached"),
        };
        let call = format!("{} x {count} ok, then {ended}", first_call.unwrap_or_default());
        Outcome { call, result: Ok(Value::Repeated { count, created, stopped }) }
    }

    /// One `shmat` of a repetition: the handle is kept in
    /// [`Actor::repeated`]. The page size of the first mapping serves for
    /// the others (all map the same segment), so `smaps` is read once.
    fn attach_again(&mut self, id: sysv::Shmid, flags: AttachFlags, page: &mut Option<usize>) -> Outcome {
        let call = format!("shmat({id}, 0x0, {})", sysv::describe_attach_flags(flags.bits()));
        match Attachment::attach_with_page(id, flags, *page) {
            Ok(att) => {
                page.get_or_insert(att.page_size());
                let v =
                    Value::Attached { addr: att.as_ptr() as usize, size: att.size(), mapping_len: att.mapping_len() };
                self.repeated.push(att);
                Outcome { call, result: Ok(v) }
            }
            Err(e) => crate::runner::actor::fail(call, e),
        }
    }
}
