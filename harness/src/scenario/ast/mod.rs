//! The parsed form of a scenario: declarations, then steps in file order.

use std::time::Duration;

use serde::Serialize;

use crate::sysv::Sysctl;

mod expect;
mod op;

pub use expect::*;
pub use op::*;

/// A parsed, checked scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Where it came from (a path, or `<input>`).
    pub file: String,
    /// Actors in declaration order.
    pub processes: Vec<ProcessDecl>,
    /// What the scenario needs from the runner.
    pub needs: Needs,
    /// Files made in the scenario's own directory before it starts.
    pub files: Vec<FileDecl>,
    /// Namespace sysctls set before any actor starts.
    pub sysctls: Vec<(SysctlName, u64, usize)>,
    /// The per-step timeout, if the file sets one.
    pub timeout: Option<Duration>,
    /// Programs and commands the scenario needs (`needs program "X"`,
    /// `needs command "X"`), in file order; unmet, it skips.
    pub requires: Vec<Requirement>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Index of the first step after `finally:` (those steps always run).
    pub finally: Option<usize>,
}

/// What a scenario needs; unmet needs make it skip, not fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Needs {
    /// Root (another uid, `SHM_LOCK` beyond limits, `IPC_SET` to other owners).
    pub root: bool,
    /// A private IPC namespace (sysctls).
    pub namespace: bool,
    /// `needs hugepages [2M|1G] [N]`: at least N free huge pages of that
    /// size (default: the kernel's default size, 1 page).
    pub hugepages: Option<HugepagesNeed>,
}

/// `needs hugepages [SIZE] [N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HugepagesNeed {
    /// The page size (`None`: the kernel's default).
    pub size: Option<HugeSize>,
    /// How many free pages.
    pub pages: u64,
}

/// `needs program "NAME"` or `needs command "CMD ARGS"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Requirement {
    /// A program found on `PATH`, or an executable path (`${here}`
    /// substituted; relative to the scenario file's folder).
    Program(String),
    /// A command line (split as `run` splits it) that must exit 0 within
    /// the step timeout.
    Command(String),
    /// `needs kernel >= X.Y[.Z]` / `needs kernel < X.Y[.Z]`: the running
    /// kernel's version (the numeric prefix of `uname -r`) compared with
    /// the given one; checked before anything runs.
    Kernel(KernelNeed),
}

/// `kernel >= X.Y[.Z]` or `kernel < X.Y[.Z]` in `needs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelNeed {
    /// `true`: `>=` (the behaviour arrived in that version); `false`: `<`
    /// (it changed in that version).
    pub at_least: bool,
    /// The version: major, minor, patch (0 when not written).
    pub version: [u32; 3],
    /// Whether the patch level was written (`6.1.5`, not `6.1`).
    pub patch_written: bool,
}

impl KernelNeed {
    /// Whether a kernel of version `running` (major, minor, patch) meets it.
    pub fn holds(&self, running: [u32; 3]) -> bool {
        (running >= self.version) == self.at_least
    }

    /// The version as written: `4.17` or `6.1.5`.
    pub fn version_text(&self) -> String {
        let [a, b, c] = self.version;
        if self.patch_written {
            format!("{a}.{b}.{c}")
        } else {
            format!("{a}.{b}")
        }
    }
}

impl std::fmt::Display for KernelNeed {
    /// `kernel >= 4.17`, as a `needs` line writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kernel {} {}", if self.at_least { ">=" } else { "<" }, self.version_text())
    }
}

/// The numeric prefix of a kernel release (`uname -r`): `6.1.0-57-amd64`
/// is `[6, 1, 0]`, `6.18` is `[6, 18, 0]`, `4.19.0+` is `[4, 19, 0]`.
/// `None` unless it starts with at least `MAJOR.MINOR`.
pub fn kernel_release_version(release: &str) -> Option<[u32; 3]> {
    let mut parts = [0u32; 3];
    let mut rest = release;
    for (i, part) in parts.iter_mut().enumerate() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return (i >= 2).then_some(parts);
        }
        *part = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        match rest.strip_prefix('.') {
            Some(r) if i < 2 => rest = r,
            _ => return (i >= 1).then_some(parts),
        }
    }
    Some(parts)
}

/// A sysctl as written in the file.
pub type SysctlName = Sysctl;

/// `process NAME [uid N] [gid N]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessDecl {
    /// Its name.
    pub name: String,
    /// Run as this uid.
    pub uid: Option<u32>,
    /// Run as this gid.
    pub gid: Option<u32>,
    /// Started by a `fork` step of this parent instead of at the start.
    pub forked_from: Option<String>,
    /// Declaration line.
    pub line: usize,
}

/// `file NAME ["content"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDecl {
    /// Path relative to the scenario directory.
    pub name: String,
    /// Its content.
    pub content: String,
}

/// One step: a process performs an operation and the answer is checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// 1-based line in the file.
    pub line: usize,
    /// The text of the line, trimmed, for reports.
    pub text: String,
    /// The acting process.
    pub process: String,
    /// What it does.
    pub op: Op,
    /// What must come of it.
    pub expect: Expect,
    /// Runs together with the previous step (`&` prefix): both are sent
    /// before either answer is awaited.
    pub concurrent: bool,
    /// `eventually D:`: repeated (10 ms, doubling to 100 ms, between
    /// tries) until it answers as expected or D has passed.
    pub eventually: Option<Duration>,
    /// `xfail "REASON"` on the line before: expected to fail (a known defect).
    pub xfail: Option<String>,
}

/// How a key is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum KeyRef {
    /// A bound key name.
    Name(String),
    /// `private`: `IPC_PRIVATE`.
    Private,
    /// A literal value.
    Literal(i32),
}

/// Bytes to write or expect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Data {
    /// `"text"` (with `\n`, `\t`, `\\`, `\"`, `\0`, `\xHH` escapes).
    Text(Vec<u8>),
    /// `hex "01 02 ff"`.
    Hex(Vec<u8>),
    /// `pattern "ab" LEN`: the bytes repeated to LEN.
    Pattern(Vec<u8>, usize),
    /// `zero LEN`: LEN zero bytes.
    Zero(usize),
}

impl Data {
    /// The bytes this stands for.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Data::Text(b) | Data::Hex(b) => b.clone(),
            Data::Pattern(p, len) => p.iter().copied().cycle().take(*len).collect(),
            Data::Zero(len) => vec![0; *len],
        }
    }

    /// Fills `buf` with the bytes at `start..start + buf.len()` of this
    /// data (past its end: zeros), without building the whole of it: a
    /// 64 MiB pattern is written and checked a chunk at a time.
    pub fn chunk_into(&self, start: usize, buf: &mut [u8]) {
        match self {
            Data::Text(b) | Data::Hex(b) => {
                for (i, out) in buf.iter_mut().enumerate() {
                    *out = b.get(start + i).copied().unwrap_or(0);
                }
            }
            Data::Pattern(p, len) => {
                let end = len.saturating_sub(start).min(buf.len());
                // One period at the right phase, then doubling copies: a
                // memcpy's speed, not a byte loop's.
                let first = p.len().min(end);
                for (i, out) in buf[..first].iter_mut().enumerate() {
                    *out = p[(start + i) % p.len()];
                }
                let mut filled = first;
                while filled < end {
                    let n = filled.min(end - filled);
                    buf.copy_within(0..n, filled);
                    filled += n;
                }
                buf[end..].fill(0);
            }
            Data::Zero(_) => buf.fill(0),
        }
    }

    /// How many bytes this stands for.
    pub fn len(&self) -> usize {
        match self {
            Data::Text(b) | Data::Hex(b) => b.len(),
            Data::Pattern(_, len) | Data::Zero(len) => *len,
        }
    }

    /// Whether it stands for no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_equal_the_whole() {
        for d in [
            Data::Pattern(b"abc".to_vec(), 1000),
            Data::Text(b"hello".to_vec()),
            Data::Zero(40),
            Data::Pattern(b"x".to_vec(), 7),
        ] {
            let whole = d.bytes();
            for (start, size) in [(0, 10), (1, 100), (997, 10), (5, 300), (0, 2000)] {
                let mut buf = vec![0xee; size];
                d.chunk_into(start, &mut buf);
                let want: Vec<u8> = (start..start + size).map(|i| whole.get(i).copied().unwrap_or(0)).collect();
                assert_eq!(buf, want, "{d:?} at {start}+{size}");
            }
        }
    }
}
