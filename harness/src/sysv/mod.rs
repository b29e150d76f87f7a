//! A safe, typed API over Linux System V shared memory.
//!
//! Two layers, as in rustix: [`raw`] is the system calls returning an errno;
//! this module is the safe API above it, where
//!
//! - every failure says which call failed, with its arguments and the errno
//!   ([`Error`]),
//! - keys ([`Key`], [`ftok`]), ids ([`Shmid`]), creation flags ([`GetFlags`]),
//!   huge page sizes ([`HugePageSize`]), permission bits ([`Mode`]) and attach
//!   flags ([`AttachFlags`]) are distinct types,
//! - ownership is explicit: [`OwnedSegment`] removes its segment on drop, a
//!   plain [`Segment`] or [`Shmid`] never does,
//! - attached memory ([`Attachment`]) is reached only by bounds-checked,
//!   atomic copies and atomics, never by a slice that another process could
//!   change under Rust's feet (see [the memory model](#memory-model)),
//! - the system's view is read from `/proc/sysvipc/shm` ([`proc_segments`])
//!   and `/proc/sys/kernel/shm*` ([`sysctls`]).
//!
//! # Memory model
//!
//! Everything the safe API of [`Attachment`] does to the segment's memory is
//! a relaxed atomic operation on an aligned machine word (`usize`: 8 bytes
//! on 64-bit targets, 4 on 32-bit ones). [`read_at`](Attachment::read_at)
//! loads every word that holds a byte of the range;
//! [`write_at`](Attachment::write_at) and [`fill`](Attachment::fill) store
//! whole words and change the bytes of a partly covered first or last word
//! with a compare-exchange, so bytes next to the range are never written;
//! [`atomic_word`](Attachment::atomic_word) hands out one word as an
//! `AtomicUsize`. So any number of threads may share an `Attachment` (it is
//! `Sync`) and copy over the same bytes at once without undefined behaviour:
//! each word is seen whole, old or new, but a copy of several words is not
//! one atomic step, and relaxed operations order nothing. To publish data,
//! write it with `write_at`, then store a flag word with
//! `atomic_word(..).store(_, Release)`; a reader that sees the flag with an
//! `Acquire` load and then calls `read_at` sees the data (on a read-only
//! attachment: [`load_word`](Attachment::load_word), then
//! `fence(Acquire)`). Another process
//! attached to the segment observes the same: every aligned word is written
//! whole (the hardware does not tear an aligned word), in no particular order
//! unless a Release/Acquire pair (or `SeqCst`) on a shared word orders it; its
//! own code decides how it accesses the bytes, and this crate cannot check it.
//! Two attachments of one segment in one process are, to Rust, two different
//! places whose bytes change on their own, like memory shared with another
//! process. Anything else is `unsafe` and states its contract: volatile
//! element access ([`Attachment::read_volatile`]) is not atomic, and atomics
//! of another size than the word ([`Attachment::atomic_u32`],
//! [`Attachment::atomic_u64`]) must not race with word-sized accesses to the
//! same bytes.
//!
//! # Example
//!
//! ```
//! use shm_harness::sysv::{AttachFlags, CreateOptions, Key};
//!
//! # fn main() -> shm_harness::sysv::Result<()> {
//! # // Keep the example's segments out of the host namespace where allowed.
//! # let _ = shm_harness::namespace::enter_private_ipc_namespace();
//! // A private segment: no key can find it, removed when `seg` drops.
//! let seg = CreateOptions::new(100).create_private()?;
//! let writer = seg.attach(AttachFlags::empty())?;
//! let reader = seg.attach(AttachFlags::RDONLY)?;
//!
//! writer.write_at(0, b"hello")?;
//! let mut buf = [0u8; 5];
//! reader.read_at(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//!
//! // The kernel maps whole pages, but the segment is the 100 bytes asked for.
//! assert_eq!(reader.size(), 100);
//! assert_eq!(reader.mapping_len() % 4096, 0);
//! assert!(reader.write_at(0, b"x").is_err()); // read-only
//! assert!(writer.read_at(99, &mut buf).is_err()); // past the end
//!
//! let st = seg.stat()?;
//! assert_eq!((st.size, st.nattch), (100, 2));
//! assert!(st.key.is_private());
//! # Ok(()) }
//! ```

mod atomic_copy;
mod attach;
mod command;
mod control;
mod error;
mod flags;
mod ignored;
mod key;
pub mod mapping;
mod maps;
pub mod planted;
pub mod raw;
mod segment;
mod system;

pub use attach::{Attachment, Scalar};
pub use command::{shmctl_command, CtlAnswer, CtlBuffer, ShmctlCmd, IPC_64};
pub use control::{all_segments, limits, stat_index, usage, SegmentStat, ShmLimits, ShmUsage, Shmid};
pub use error::{errno_from_name, errno_name, Error, Result};
pub use flags::{describe_attach_flags, describe_get_flags, AttachFlags, GetFlags, HugePageSize, Mode};
pub use ignored::{IgnoredField, IgnoredFields};
pub use key::{ftok, ftok_key, Key};
pub use mapping::{detach_at, Protection};
pub use maps::{parse_sysv_mapping, parse_sysv_mappings, sysv_mappings, SysvMapping};
pub use segment::{open, shmget, shmget_raw, CreateOptions, OwnedSegment, Segment};
pub use system::{
    available_huge_pages, default_huge_page_size, huge_page_sizes, parse_proc_segments, proc_segments, sysctls,
    ProcSegment, Sysctl, Sysctls, SYSVIPC_SHM,
};

pub use nix::errno::Errno;
