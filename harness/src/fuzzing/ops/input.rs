//! The `ops` target's input, the generator side: what `arbitrary` decodes
//! from libFuzzer's bytes (operations over a few keys, live objects picked
//! by index). The oracle that performs and judges them is [`super::run`].

use arbitrary::Arbitrary;

/// Most operations in one input: keeps each input fast.
pub const MAX_OPS: usize = 64;

/// One input: a swarm switch and the operations.
///
/// Decoding takes operations until the bytes run out (not a coin flip per
/// element, as derived `take_rest` does), so every byte of an input means
/// something and random inputs are long enough to reach deep states.
#[derive(Debug, Clone)]
pub struct OpsInput {
    /// Bit `k` turns operation kind `k` off (swarm testing: inputs that
    /// never remove, say, reach deeper states of the others).
    pub swarm_off: u16,
    /// The operations, cut to [`MAX_OPS`].
    pub ops: Vec<OpsOp>,
}

/// One operation. Segments and attachments are picked by index among the
/// ones this input holds.
#[derive(Debug, Clone, Arbitrary)]
pub enum OpsOp {
    /// `shmget` with `IPC_CREAT` (and `IPC_EXCL`), key from the pool.
    Create {
        /// Key pick (0: IPC_PRIVATE).
        key: u8,
        /// Size, 1 to 65536.
        size: u16,
        /// `IPC_EXCL`.
        excl: bool,
        /// Permission bits.
        mode: u16,
    },
    /// `shmget` without `IPC_CREAT`.
    Open {
        /// Key pick.
        key: u8,
        /// Minimum size (0 to 65535).
        size: u16,
    },
    /// `shmat`.
    Attach {
        /// Segment pick.
        seg: u8,
        /// `SHM_RDONLY`.
        read_only: bool,
    },
    /// Write bytes, then read them back through every attachment of the segment.
    Write {
        /// Attachment pick.
        att: u8,
        /// Offset.
        offset: u16,
        /// Length.
        len: u8,
        /// The byte.
        byte: u8,
    },
    /// `shmdt`.
    Detach {
        /// Attachment pick.
        att: u8,
    },
    /// `IPC_STAT`.
    Stat {
        /// Segment pick.
        seg: u8,
    },
    /// `IPC_SET` of the mode.
    Set {
        /// Segment pick.
        seg: u8,
        /// New permission bits.
        mode: u16,
    },
    /// `IPC_RMID` (through the guard when the input owns it).
    Remove {
        /// Segment pick.
        seg: u8,
    },
    /// `SHM_LOCK` / `SHM_UNLOCK`.
    Lock {
        /// Segment pick.
        seg: u8,
        /// Lock (else unlock).
        lock: bool,
    },
    /// A child inherits every attachment and exits.
    ForkExit,
    /// `IPC_INFO` and `SHM_INFO` against the model.
    Info,
    /// Attach at an address, detach at an address, change a mapping
    /// (see [`crate::fuzzing::mapping`]).
    Map(MapOp),
}

impl<'a> Arbitrary<'a> for OpsInput {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let swarm_off = u.arbitrary()?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            ops.push(u.arbitrary()?);
        }
        Ok(OpsInput { swarm_off, ops })
    }

    fn arbitrary_take_rest(mut u: arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

impl OpsOp {
    /// Its kind, the bit of [`OpsInput::swarm_off`] that turns it off.
    pub(super) fn kind(&self) -> u16 {
        match self {
            OpsOp::Create { .. } => 0,
            OpsOp::Open { .. } => 1,
            OpsOp::Attach { .. } => 2,
            OpsOp::Write { .. } => 3,
            OpsOp::Detach { .. } => 4,
            OpsOp::Stat { .. } => 5,
            OpsOp::Set { .. } => 6,
            OpsOp::Remove { .. } => 7,
            OpsOp::Lock { .. } => 8,
            OpsOp::ForkExit => 9,
            OpsOp::Info => 10,
            OpsOp::Map(_) => 11,
        }
    }
}

/// One mapping operation; attachments and segments picked by index.
#[derive(Debug, Clone, Arbitrary)]
pub enum MapOp {
    /// `shmat(seg, address of attachment att [+1], [SHM_RND] [SHM_REMAP])`.
    AttachAt {
        /// Segment pick.
        seg: u8,
        /// Attachment pick: whose address.
        att: u8,
        /// Add one byte (unaligned).
        misalign: bool,
        /// `SHM_RND`.
        rnd: bool,
        /// `SHM_REMAP`.
        remap: bool,
    },
    /// `shmdt(address of attachment att + page pages)`.
    DetachAt {
        /// Attachment pick.
        att: u8,
        /// Pages past its start (0 to 3).
        page: u8,
    },
    /// `munmap` of pages of an attachment (all of them: a detach).
    Unmap {
        /// Attachment pick.
        att: u8,
        /// First page.
        first: u8,
        /// How many pages.
        pages: u8,
    },
    /// `mprotect` of pages of an attachment.
    Protect {
        /// Attachment pick.
        att: u8,
        /// First page.
        first: u8,
        /// How many pages.
        pages: u8,
        /// 0: none, 1: read, 2: read-write.
        prot: u8,
    },
    /// `mremap` of a whole (unsplit) attachment.
    Resize {
        /// Attachment pick.
        att: u8,
        /// New length in pages, 1 to the segment's pages.
        pages: u8,
        /// `MREMAP_MAYMOVE`.
        may_move: bool,
    },
}
