//! `needs hugepages [2M|1G] [N]`: whether the huge page pool can give a
//! scenario what it needs, read before anything starts.

use crate::scenario::{HugeSize, HugepagesNeed};
use crate::sysv;

/// Why the scenario must skip, or `None` when the pool has at least the
/// pages it needs (free and not reserved).
pub(crate) fn missing(need: HugepagesNeed) -> Option<String> {
    let (bytes, label) = match need.size {
        None => (None, "of the default size".to_string()),
        Some(HugeSize::Mb2) => (Some(2 << 20), "of 2 MiB".to_string()),
        Some(HugeSize::Gb1) => (Some(1 << 30), "of 1 GiB".to_string()),
    };
    let pages =
        if need.pages == 1 { "1 free huge page".to_string() } else { format!("{} free huge pages", need.pages) };
    match sysv::available_huge_pages(bytes) {
        Ok(n) if n >= need.pages => None,
        Ok(n) => Some(format!(
            "needs {pages} {label} (`needs hugepages`), and the pool has {n} (free less reserved; vm.nr_hugepages sets the pool)"
        )),
        Err(e) => Some(format!("needs {pages} {label} (`needs hugepages`), and the kernel has none: {e}")),
    }
}
