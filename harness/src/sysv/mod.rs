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
//! - attached memory ([`Attachment`]) is reached only by bounds-checked copies,
//!   volatile element access and atomics, never by a slice that another
//!   process could change under Rust's feet,
//! - the system's view is read from `/proc/sysvipc/shm` ([`proc_segments`])
//!   and `/proc/sys/kernel/shm*` ([`sysctls`]).
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

mod attach;
mod control;
mod error;
mod flags;
mod key;
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod raw;
mod segment;
mod system;

pub use attach::{Attachment, Scalar};
pub use control::{all_segments, limits, stat_index, usage, SegmentStat, ShmLimits, ShmUsage, Shmid};
pub use error::{errno_from_name, errno_name, Error, Result};
pub use flags::{describe_attach_flags, describe_get_flags, AttachFlags, GetFlags, HugePageSize, Mode};
pub use key::{ftok, ftok_key, Key};
pub use segment::{open, shmget, shmget_raw, CreateOptions, OwnedSegment, Segment};
pub use system::{parse_proc_segments, proc_segments, sysctls, ProcSegment, Sysctl, Sysctls, SYSVIPC_SHM};

pub use nix::errno::Errno;
