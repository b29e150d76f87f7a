//! Where the journals live: a state directory of the real user's own,
//! never a predictable name in a shared directory such as `/tmp`.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::JournalError;

/// What makes a state directory unsafe to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirProblem {
    /// A symbolic link (it could point anywhere).
    Symlink,
    /// Not a directory at all.
    NotADirectory,
    /// Owned by another user.
    Owner(u32),
    /// Writable by group or others.
    Mode(u32),
}

impl std::fmt::Display for DirProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirProblem::Symlink => write!(f, "a symbolic link"),
            DirProblem::NotADirectory => write!(f, "not a directory"),
            DirProblem::Owner(uid) => write!(f, "owned by uid {uid}"),
            DirProblem::Mode(mode) => write!(f, "writable by others (mode {mode:04o})"),
        }
    }
}

/// Who is running, as far as the state directory is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealUser {
    /// The effective uid in this process's user namespace.
    pub uid: u32,
    /// The same uid in the parent user namespace (`/proc/self/uid_map`):
    /// for root of a user namespace, the user who made it. `None` when
    /// unmapped or unreadable.
    pub outer: Option<u32>,
}

impl RealUser {
    /// The calling process's.
    pub fn current() -> RealUser {
        let uid = nix::unistd::Uid::effective().as_raw();
        let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        RealUser { uid, outer: outer_uid(&map, uid) }
    }

    /// Root of the initial user namespace (uid 0 mapped to uid 0): the one
    /// user who may use `/run/shm-harness`. Root of any other user
    /// namespace is some real user, and never uses it.
    pub fn is_real_root(&self) -> bool {
        self.uid == 0 && self.outer == Some(0)
    }

    /// "uid N", and for a uid the parent namespace knows by another
    /// number, "uid N (uid M outside its user namespace)".
    pub fn describe(&self) -> String {
        match self.outer {
            Some(o) if o != self.uid => format!("uid {} (uid {o} outside its user namespace)", self.uid),
            _ => format!("uid {}", self.uid),
        }
    }
}

/// `uid`'s number in the parent user namespace, from `uid_map`'s lines
/// (`inside outside count`).
fn outer_uid(map: &str, uid: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let f: Vec<u64> = line.split_whitespace().filter_map(|n| n.parse().ok()).collect();
        let [inside, outside, count] = f[..] else { return None };
        let uid = u64::from(uid);
        (uid >= inside && uid - inside < count).then(|| u32::try_from(outside + (uid - inside)).ok()).flatten()
    })
}

/// The state directory, made (0700) if missing and checked to be ours:
/// `$SHM_HARNESS_STATE_DIR` if set (it must work as given); else the first
/// usable of `$XDG_RUNTIME_DIR/shm-harness` (the runtime directory itself
/// ours and writable only by us), `/run/shm-harness` for the real root, and
/// `${XDG_STATE_HOME:-$HOME/.local/state}/shm-harness` (`$HOME` unset: the
/// real user's home from the password database, looked up by the uid
/// outside a user namespace).
///
/// # Errors
/// [`JournalError::DirCreate`], [`JournalError::DirRead`] or
/// [`JournalError::DirRefused`] for `$SHM_HARNESS_STATE_DIR`, else
/// [`JournalError::NoStateDir`] with why each usual place was passed over.
pub fn state_dir() -> Result<PathBuf, JournalError> {
    let user = RealUser::current();
    if let Some(d) = std::env::var_os("SHM_HARNESS_STATE_DIR") {
        return usable_dir(Path::new(&d), &user);
    }
    let mut why = Vec::new();
    if let Some(run) = absolute_env("XDG_RUNTIME_DIR") {
        match checked(&run, &user) {
            Ok(()) => match usable_dir(&run.join("shm-harness"), &user) {
                Ok(d) => return Ok(d),
                Err(e) => why.push(e),
            },
            Err(e) => why.push(e),
        }
    }
    let mut candidates = Vec::new();
    if user.is_real_root() {
        candidates.push(PathBuf::from("/run/shm-harness"));
    }
    if let Some(home) = state_home(&user) {
        candidates.push(home.join("shm-harness"));
    }
    for dir in candidates {
        match usable_dir(&dir, &user) {
            Ok(d) => return Ok(d),
            Err(e) => why.push(e),
        }
    }
    Err(JournalError::NoStateDir(why))
}

/// The rule that no run leaves an empty state directory behind: `dir`
/// (the state directory [`state_dir`] chose and made) is removed if it is
/// empty. Called wherever a run is done with it: after a run's sweep that
/// opens no journal, after a journal is deleted. A directory named by
/// `$SHM_HARNESS_STATE_DIR` is the user's, used as given, and stays. A
/// directory holding anything (another run's journal) stays (`rmdir`
/// refuses); a run that finds its directory gone makes it again
/// ([`super::Journal::create`]).
pub fn release_state_dir(dir: &Path) {
    if std::env::var_os("SHM_HARNESS_STATE_DIR").is_some() {
        return;
    }
    let _ = std::fs::remove_dir(dir);
}

/// An environment variable that names an absolute path.
fn absolute_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute())
}

/// `$XDG_STATE_HOME`, else `$HOME/.local/state`, else the password
/// database's home of the real user.
fn state_home(user: &RealUser) -> Option<PathBuf> {
    if let Some(d) = absolute_env("XDG_STATE_HOME") {
        return Some(d);
    }
    let home = absolute_env("HOME").or_else(|| {
        let uid = nix::unistd::Uid::from_raw(user.outer.unwrap_or(user.uid));
        nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.dir)
    })?;
    Some(home.join(".local/state"))
}

/// `dir`, made (0700, with its parents) if missing, if it is a directory
/// owned by `user` and writable only by it.
pub(super) fn usable_dir(dir: &Path, user: &RealUser) -> Result<PathBuf, JournalError> {
    let path = dir.to_path_buf();
    if let Err(source) = std::fs::DirBuilder::new().mode(0o700).recursive(true).create(dir) {
        return Err(JournalError::DirCreate { path, source });
    }
    checked(dir, user)?;
    Ok(path)
}

/// `Ok` if `dir` is a directory (not a symbolic link) owned by `user` and
/// writable by nobody else.
fn checked(dir: &Path, user: &RealUser) -> Result<(), JournalError> {
    let path = dir.to_path_buf();
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(source) => return Err(JournalError::DirRead { path, source }),
    };
    let mode = meta.permissions().mode() & 0o7777;
    let problem = if meta.file_type().is_symlink() {
        DirProblem::Symlink
    } else if !meta.is_dir() {
        DirProblem::NotADirectory
    } else if meta.uid() != user.uid {
        DirProblem::Owner(meta.uid())
    } else if mode & 0o022 != 0 {
        DirProblem::Mode(mode)
    } else {
        return Ok(());
    };
    Err(JournalError::DirRefused { path, problem, user: user.describe() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> RealUser {
        RealUser::current()
    }

    fn refused(dir: &Path) -> Option<DirProblem> {
        match usable_dir(dir, &me()) {
            Err(JournalError::DirRefused { problem, .. }) => Some(problem),
            Err(e) => panic!("{e}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn a_state_directory_is_refused_saying_why() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = tmp.path().join("ok");
        assert_eq!(refused(&ok), None, "made 0700 and ours");
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(refused(&open), Some(DirProblem::Mode(0o777)));
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert_eq!(refused(&link), Some(DirProblem::Symlink));
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        match usable_dir(&file, &me()) {
            Err(e @ JournalError::DirCreate { .. }) => {
                assert!(e.to_string().contains("set SHM_HARNESS_STATE_DIR"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let e = JournalError::DirRefused { path: link, problem: DirProblem::Symlink, user: "uid 1000".into() };
        assert!(e.to_string().contains("link is a symbolic link, not a directory owned by uid 1000"), "{e}");
    }

    #[test]
    fn root_of_a_user_namespace_is_known_by_its_outer_uid_and_is_not_the_real_root() {
        let real = "         0          0 4294967295\n";
        assert_eq!(outer_uid(real, 0), Some(0));
        assert_eq!(outer_uid(real, 1000), Some(1000));
        let userns = "         0      47014          1\n";
        assert_eq!(outer_uid(userns, 0), Some(47014));
        assert_eq!(outer_uid(userns, 1), None);
        let sub = "0 1000 1\n1 100000 65536\n";
        assert_eq!(outer_uid(sub, 5), Some(100004));
        let root_of_userns = RealUser { uid: 0, outer: Some(47014) };
        assert!(!root_of_userns.is_real_root());
        assert_eq!(root_of_userns.describe(), "uid 0 (uid 47014 outside its user namespace)");
        assert!(RealUser { uid: 0, outer: Some(0) }.is_real_root());
        assert!(!RealUser { uid: 0, outer: None }.is_real_root());
    }
}
