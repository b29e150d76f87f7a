//! Known bugs that can be planted in the wrapper, to prove the fuzz oracles
//! catch them (`--features planted-bugs`, then
//! `SHM_HARNESS_PLANTED=name[,name...]`). Never enabled in a normal build.

use std::sync::OnceLock;

/// The bugs that can be planted.
///
/// - `no-remove-on-drop`, `no-detach-on-drop`: the guards forget their job.
/// - `accept-size-0`: `shmget` turns size 0 into 1 instead of letting the kernel refuse.
/// - `shmid-as-index`: `shmget` returns the kernel's index, not the id.
/// - `spurious-enospc`: the create path reports `ENOSPC` without asking the
///   kernel for sizes that are not whole pages (a rounding bug in a limit
///   pre-check); in host mode only a model that knows the namespace's
///   limits can tell.
/// - `plain-copies`: `read_at`/`write_at` are plain `memcpy`s, a data race
///   that ThreadSanitizer must report (`tests/race.rs`).
/// - `model-unmap-keeps-nattch`: not a bug in the wrapper; the `ops`
///   model forgets that an unmap of a whole attachment detaches it (the
///   control for the mapping oracle, `fuzzing::mapping`).
/// - `stat-index-shifted`: the raw `shmctl` asks `SHM_STAT`/`SHM_STAT_ANY`
///   for the index after the one given (an off-by-one in an index walk).
/// - `no-ipc-namespace`: not a bug in the wrapper; `enter_private_ipc_namespace`
///   fails as on a host without the right, so that host mode can be tested
///   inside a namespace the test made.
pub const BUGS: &[&str] = &[
    "no-remove-on-drop",
    "no-detach-on-drop",
    "accept-size-0",
    "shmid-as-index",
    "spurious-enospc",
    "plain-copies",
    "stat-index-shifted",
    "no-ipc-namespace",
    "model-unmap-keeps-nattch",
];

/// Whether the planted bug `name` is active in this process.
pub fn active(name: &str) -> bool {
    static ACTIVE: OnceLock<Vec<String>> = OnceLock::new();
    ACTIVE
        .get_or_init(|| {
            std::env::var("SHM_HARNESS_PLANTED")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default()
        })
        .iter()
        .any(|b| b == name)
}
