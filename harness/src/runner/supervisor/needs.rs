//! A scenario's needs: whether its `needs kernel`, `needs program` and
//! `needs command` are met here (else it skips, saying what is missing). They look for files and
//! run commands, so they live in the runner; a scenario's status once run is
//! a pure rule (`interp::verdict`).

#![allow(unsafe_code)] // opts in: fork, exec and raw file descriptors

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::scenario::{kernel_release_version, split_command, KernelNeed, Requirement, Scenario};

/// The first unmet `needs program` / `needs command` of `sc`, as a skip
/// reason; commands get `timeout` each. Called in the supervisor before the
/// scenario starts (`pid_namespace`: it is PID 1 of the scenario's PID
/// namespace): whatever a command leaves running, even in a session of its
/// own (`setsid daemon &`), is killed and reaped before the next need.
///
/// Every `needs kernel` is checked first, before any command runs.
pub(crate) fn unmet(sc: &Scenario, timeout: Duration, pid_namespace: bool) -> Option<String> {
    let kernel: Vec<&KernelNeed> = sc
        .requires
        .iter()
        .filter_map(|r| match r {
            Requirement::Kernel(k) => Some(k),
            _ => None,
        })
        .collect();
    if !kernel.is_empty() {
        if let Some(reason) = kernel_unmet(&kernel, &release()) {
            return Some(reason);
        }
    }
    let here = here(&sc.file);
    if sc.requires.iter().any(|r| matches!(r, Requirement::Command(_))) && !pid_namespace {
        // Orphans of the command come to us, to be found and killed.
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Some(format!(
                "needs command: prctl(PR_SET_CHILD_SUBREAPER): {}; without it what a command leaves could not be killed, so none is run",
                std::io::Error::last_os_error()
            ));
        }
    }
    for r in &sc.requires {
        let missing = match r {
            Requirement::Kernel(_) => None,
            Requirement::Program(p) => find_program(p, &here).err(),
            Requirement::Command(c) => {
                let said = run_command(c, &here, timeout).err();
                if let Err(e) = crate::runner::supervisor::procs::kill_everything(pid_namespace) {
                    return Some(format!("needs command `{c}` left processes that cannot be killed: {e}"));
                }
                said
            }
        };
        if missing.is_some() {
            return missing;
        }
    }
    None
}

/// `uname -r`: the running kernel's release (`6.1.0-57-amd64`), or the
/// error in its place.
fn release() -> Result<String, String> {
    // SAFETY: an all-zero utsname is a valid value (arrays of bytes).
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname for the call.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(format!("uname: {}", std::io::Error::last_os_error()));
    }
    let bytes: Vec<u8> = uts.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The skip reason when the kernel `release` (`uname -r`, or why it could
/// not be read) fails any of `needs`: which version is needed and which
/// runs. All must hold.
fn kernel_unmet(needs: &[&KernelNeed], release: &Result<String, String>) -> Option<String> {
    let release = match release {
        Ok(r) => r,
        Err(e) => return Some(format!("needs {}, and the running kernel's version cannot be read: {e}", needs[0])),
    };
    let Some(running) = kernel_release_version(release) else {
        return Some(format!(
            "needs {}, and the running kernel's release `{release}` (uname -r) does not start with MAJOR.MINOR",
            needs[0]
        ));
    };
    let [a, b, c] = running;
    needs
        .iter()
        .find(|k| !k.holds(running))
        .map(|k| format!("needs {k}, and this kernel is {a}.{b}.{c} (uname -r: {release})"))
}

/// The folder of the scenario file (`${here}`), absolute as the actors'
/// `${here}` is: a relative one would be taken twice over by a command that
/// runs from that folder (`run shm-harness run dir/x.scn` with `needs command
/// "${here}/tool"` looked for `dir/dir/tool`).
fn here(file: &str) -> PathBuf {
    let dir = match Path::new(file).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.canonicalize().unwrap_or(dir)
}

fn with_here(text: &str, here: &Path) -> String {
    text.replace("${here}", &here.display().to_string())
}

/// Finds program `name`: a name without `/` on `PATH`, else a path
/// (relative ones from the scenario file's folder) that is an executable file.
///
/// # Errors
/// The skip reason: what was looked for, and where.
pub(crate) fn find_program(name: &str, here: &Path) -> Result<PathBuf, String> {
    let name = with_here(name, here);
    let executable = |p: &Path| p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok();
    if name.contains('/') {
        let path = if Path::new(&name).is_absolute() { PathBuf::from(&name) } else { here.join(&name) };
        return if executable(&path) {
            Ok(path)
        } else {
            Err(format!("needs program `{}`, which is not an executable file here", path.display()))
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(&name))
        .find(|p| executable(p))
        .ok_or_else(|| format!("needs program `{name}`, which is not on PATH ({})", path_var.to_string_lossy()))
}

/// Runs `command` (split as `run` splits it, from the scenario file's folder,
/// standard input `/dev/null`, output discarded but for the first line of
/// its standard error) in a process group and a private, empty IPC
/// namespace of its own; it must exit 0 within `timeout`, else its whole
/// group is killed. Its group is killed when it ends too (a `cmd &` it left).
///
/// The command runs before the scenario's supervisor has entered the
/// scenario's namespace, i.e. in the caller's IPC namespace (the host's):
/// without a namespace of its own, `needs command "ipcrm --all=shm"` removed
/// every segment of the machine, in either isolation.
///
/// Called only in a supervisor (a single-threaded process), so the child
/// may allocate between fork and exec.
///
/// # Errors
/// The skip reason: the command, and how it failed (or that it could not be
/// given a namespace of its own: then it is not run).
pub(crate) fn run_command(command: &str, here: &Path, timeout: Duration) -> Result<(), String> {
    let argv: Vec<String> = split_command(command)
        .map_err(|e| format!("needs command `{command}`: {e}"))?
        .iter()
        .map(|a| with_here(a, here))
        .collect();
    let err_file = tempfile::tempfile().map_err(|e| format!("needs command `{command}`: a temporary file: {e}"))?;
    let err_out = err_file.try_clone().map_err(|e| format!("needs command `{command}`: {e}"))?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(here)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_out))
        .process_group(0);
    // SAFETY: runs in the forked child before exec; the parent is a
    // supervisor, a single-threaded process (see above), so no lock can be
    // held by a thread that did not come along and allocating is sound.
    unsafe {
        cmd.pre_exec(|| crate::namespace::enter_private_ipc_namespace().map_err(std::io::Error::other));
    }
    let mut child = cmd.spawn().map_err(|e| {
        format!("needs command `{command}`, which cannot start in an IPC namespace of its own (so it is not run): {e}")
    })?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + timeout;
    let ended = loop {
        match exited_unreaped(pid) {
            Ok(true) => break true,
            Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(false) | Err(_) => break false,
        }
    };
    // The group is the command's own (process_group(0)); while its leader is
    // not reaped (a zombie at worst), its pgid cannot name anybody else's.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pid), nix::sys::signal::Signal::SIGKILL);
    let status = child.wait().map_err(|e| format!("needs command `{command}`: waitpid: {e}"))?;
    if !ended {
        return Err(format!("needs command `{command}`, which did not finish within {timeout:?} (killed)"));
    }
    if status.success() {
        return Ok(());
    }
    let first_line = {
        use std::io::{Read as _, Seek as _};
        let mut f = err_file;
        let mut text = String::new();
        let _ = f.rewind().and_then(|()| f.take(4096).read_to_string(&mut text));
        text.lines().find(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim())).unwrap_or_default()
    };
    Err(format!("needs command `{command}`, which failed ({status}){first_line}"))
}

/// `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`—Whether child `pid`
/// has ended, leaving it unreaped (its pid and process group stay taken).
fn exited_unreaped(pid: i32) -> std::io::Result<bool> {
    // SAFETY: an all-zero siginfo_t is a valid value (plain integers).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t for the call.
    let r = unsafe {
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
    };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info` (si_pid is 0 when nothing changed).
    Ok(unsafe { info.si_pid() } != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_skip_says_which_version_is_needed_and_which_runs() {
        let ge = KernelNeed { at_least: true, version: [4, 17, 0], patch_written: false };
        let lt = KernelNeed { at_least: false, version: [6, 12, 0], patch_written: false };
        let run = |r: &str| kernel_unmet(&[&ge, &lt], &Ok(r.to_string()));
        assert_eq!(run("6.1.0-57-amd64"), None);
        assert_eq!(
            run("6.12.118+deb12-amd64").unwrap(),
            "needs kernel < 6.12, and this kernel is 6.12.118 (uname -r: 6.12.118+deb12-amd64)"
        );
        assert_eq!(run("4.9.0").unwrap(), "needs kernel >= 4.17, and this kernel is 4.9.0 (uname -r: 4.9.0)");
        assert!(run("weird").unwrap().contains("`weird` (uname -r) does not start with MAJOR.MINOR"));
        assert!(kernel_unmet(&[&ge], &Err("uname: EFAULT".into())).unwrap().contains("cannot be read: uname: EFAULT"));
        // The running kernel's own release reads.
        assert!(kernel_release_version(&release().unwrap()).is_some());
    }
}
