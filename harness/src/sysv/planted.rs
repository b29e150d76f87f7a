//! Known bugs that can be planted in the wrapper, to prove the fuzz oracles
//! catch them (`--features planted-bugs`, then
//! `SHM_HARNESS_PLANTED=name[,name...]`). Never enabled in a normal build.

use std::sync::OnceLock;

/// The bugs that can be planted.
pub const BUGS: &[&str] = &["no-remove-on-drop", "no-detach-on-drop", "accept-size-0", "shmid-as-index"];

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
