//! A scenario's intent: whether its `needs program` / `needs command` are
//! met here (else it skips, saying what is missing), and its verdict once
//! run, with `xfail` steps (XFAIL when the marked step failed as written,
//! XPASS when it passed).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::scenario::{split_command, Requirement, Scenario};

use super::report::{ScenarioReport, Status};

/// The first unmet `needs program` / `needs command` of `sc`, as a skip
/// reason; commands get `timeout` each.
pub(crate) fn unmet(sc: &Scenario, timeout: Duration) -> Option<String> {
    let here = here(&sc.file);
    for r in &sc.requires {
        let missing = match r {
            Requirement::Program(p) => find_program(p, &here).err(),
            Requirement::Command(c) => run_command(c, &here, timeout).err(),
        };
        if missing.is_some() {
            return missing;
        }
    }
    None
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
/// its standard error) in a process group of its own; it must exit 0 within
/// `timeout`, else its whole group is killed.
///
/// # Errors
/// The skip reason: the command, and how it failed.
pub(crate) fn run_command(command: &str, here: &Path, timeout: Duration) -> Result<(), String> {
    let argv: Vec<String> = split_command(command)
        .map_err(|e| format!("needs command `{command}`: {e}"))?
        .iter()
        .map(|a| with_here(a, here))
        .collect();
    let err_file = tempfile::tempfile().map_err(|e| format!("needs command `{command}`: a temporary file: {e}"))?;
    let err_out = err_file.try_clone().map_err(|e| format!("needs command `{command}`: {e}"))?;
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(here)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_out))
        .process_group(0)
        .spawn()
        .map_err(|e| format!("needs command `{command}`, which cannot start: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => {
                // The group is the command's own (process_group(0)).
                let pgid = nix::unistd::Pid::from_raw(-(child.id() as i32));
                let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(format!("needs command `{command}`, which did not finish within {timeout:?} (killed)"));
            }
        }
    };
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

/// The verdict of a scenario that ran: `Fail` when a step (not marked
/// `xfail`) failed, something leaked or the harness failed; else `Xfail`
/// when a marked step failed as written (`xfail` holds its reason); else
/// `Xpass` when a marked step passed (`xpassed`: line and reason); else
/// `Pass`. Sets the report's reason for XFAIL and XPASS.
pub(crate) fn verdict(report: &mut ScenarioReport, xfail: Option<String>, xpassed: &[(usize, String)]) -> Status {
    let spoilt = report.reason.is_some() || !report.leaks.is_empty();
    match xfail {
        // Leaks and harness errors are never XFAIL.
        _ if spoilt => Status::Fail,
        Some(why) => {
            report.reason = Some(format!("xfail: {why}"));
            Status::Xfail
        }
        None if report.failure.is_some() => Status::Fail,
        None if !xpassed.is_empty() => {
            let said: Vec<String> = xpassed
                .iter()
                .map(|(line, why)| format!("line {line} passed, but is marked xfail \"{why}\""))
                .collect();
            report.reason = Some(format!("XPASS: {}", said.join("; ")));
            Status::Xpass
        }
        None => Status::Pass,
    }
}
