//! The control steps an actor performs: the raw `shmctl`, `sysctl`,
//! `rlimit`, `umask` and `meminfo`.

#![allow(unsafe_code)] // opts in: umask(2)

use crate::scenario::{CtlBuf, CtlTarget, Op, RlimitResource};
use crate::sysv::{self, CtlBuffer, ShmctlCmd};

use crate::interp::{Failure, Globals, Outcome, Value};
use crate::runner::actor::{answer, fail, shmid_of, Actor};

impl Actor<'_> {
    /// Performs one of the steps of this module.
    pub(super) fn control_step(&mut self, index: usize, op: &Op, globals: &Globals) -> Outcome {
        match op {
            Op::Shmctl { target, cmd, buffer, .. } => self.shmctl(index, target, *cmd, *buffer, globals),
            Op::Sysctl { name, value } => {
                let call = match value {
                    Some(v) => format!("write {} = {v}", name.path()),
                    None => format!("read {}", name.path()),
                };
                // A write the kernel refuses has its errno (`=> EINVAL`).
                answer(
                    call,
                    match value {
                        Some(v) => crate::namespace::write_sysctl(*name, *v).map(|()| Value::Unit),
                        None => name.read_signed().map(Value::Number),
                    },
                )
            }
            Op::Rlimit { resource, soft, hard } => rlimit(*resource, *soft, *hard),
            Op::Umask { mask } => {
                // SAFETY: umask only swaps the process's mask.
                let old = unsafe { libc::umask(libc::mode_t::from(*mask)) };
                Outcome { call: format!("umask({mask:04o}) (was {old:04o})"), result: Ok(Value::Unit) }
            }
            Op::Meminfo { field } => {
                let call = format!("read {field} in /proc/meminfo");
                let result = std::fs::read_to_string("/proc/meminfo")
                    .map_err(|e| format!("/proc/meminfo: cannot read: {e}"))
                    .and_then(|text| meminfo_field(&text, field))
                    .map(Value::Number)
                    .map_err(|message| Failure::Refused { message });
                Outcome { call, result }
            }
            _ => unreachable!("`{}` is not a control step", op.keyword()),
        }
    }

    fn shmctl(
        &mut self,
        index: usize,
        target: &CtlTarget,
        cmd: ShmctlCmd,
        buffer: CtlBuf,
        globals: &Globals,
    ) -> Outcome {
        let id = match target {
            CtlTarget::Number(n) => *n,
            CtlTarget::Segment(s) => shmid_of(globals, s).raw(),
        };
        let buf = match buffer {
            CtlBuf::NoAccess => CtlBuffer::Inaccessible,
            CtlBuf::Null => CtlBuffer::Null,
            CtlBuf::AllOnes => CtlBuffer::AllOnes,
            // IPC_SET of the values it has (as `set` with no change): the
            // call's own answer, and a new ctime.
            CtlBuf::Given if cmd == ShmctlCmd::IpcSet => match sysv::Shmid::from_raw(id)
                .stat()
                .ok()
                .or_else(|| sysv::all_segments().ok()?.into_iter().find(|(i, _)| i.raw() == id).map(|(_, st)| st))
            {
                Some(st) => CtlBuffer::Set {
                    uid: st.uid,
                    gid: st.gid,
                    mode: u32::from(st.mode.bits()),
                    ignored: sysv::IgnoredFields::default(),
                },
                None => CtlBuffer::Zeroed,
            },
            CtlBuf::Given => CtlBuffer::Zeroed,
        };
        let call = match buffer {
            CtlBuf::Given => format!("shmctl({id}, {cmd})"),
            CtlBuf::NoAccess => format!("shmctl({id}, {cmd}, <inaccessible buffer>)"),
            CtlBuf::Null => format!("shmctl({id}, {cmd}, NULL)"),
            CtlBuf::AllOnes => format!("shmctl({id}, {cmd}, (void *)-1)"),
        };
        match sysv::shmctl_command(id, cmd, buf) {
            Ok(_) if cmd == ShmctlCmd::IpcSet => self.reset_answer(call, index, sysv::Shmid::from_raw(id)),
            Ok(answer) => Outcome { call, result: Ok(Value::Ctl(answer)) },
            Err(e) => fail(call, e),
        }
    }
}

/// `setrlimit` with `soft` (`None`: infinity) and `hard` (absent: the
/// current hard limit, so that lowering the soft limit can be undone).
// `rlim_t` is u32 on i686: the conversions widen or check there and are
// the identity on 64-bit targets.
#[allow(clippy::useless_conversion)]
fn rlimit(resource: RlimitResource, soft: Option<u64>, hard: Option<Option<u64>>) -> Outcome {
    use nix::sys::resource::{getrlimit, rlim_t, setrlimit, Resource, RLIM_INFINITY};
    let which = match resource {
        RlimitResource::Memlock => Resource::RLIMIT_MEMLOCK,
        RlimitResource::As => Resource::RLIMIT_AS,
        RlimitResource::Nofile => Resource::RLIMIT_NOFILE,
    };
    let name = format!("RLIMIT_{}", resource.name().to_uppercase());
    let hard = match hard {
        Some(h) => h,
        None => match getrlimit(which) {
            Ok((_, h)) => (h != RLIM_INFINITY).then(|| u64::from(h)),
            Err(errno) => {
                let call = format!("getrlimit({name})");
                return Outcome {
                    call,
                    result: Err(Failure::Errno { errno: errno as i32, message: errno.desc().into() }),
                };
            }
        },
    };
    let show = |v: Option<u64>| v.map_or_else(|| "RLIM_INFINITY".to_string(), |n| n.to_string());
    let call = format!("setrlimit({name}, {}, {})", show(soft), show(hard));
    let raw = |v: Option<u64>| v.map_or(Some(RLIM_INFINITY), |n| rlim_t::try_from(n).ok());
    let (Some(soft), Some(hard)) = (raw(soft), raw(hard)) else {
        let message = format!("a limit does not fit this target's rlim_t ({} bits)", rlim_t::BITS);
        return Outcome { call, result: Err(Failure::Refused { message }) };
    };
    match setrlimit(which, soft, hard) {
        Ok(()) => Outcome { call, result: Ok(Value::Unit) },
        Err(errno) => {
            Outcome { call, result: Err(Failure::Errno { errno: errno as i32, message: errno.desc().into() }) }
        }
    }
}

/// The number of `/proc/meminfo`'s line `FIELD: N [kB]`, as written.
pub(crate) fn meminfo_field(text: &str, field: &str) -> Result<crate::scenario::Number, String> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .ok_or_else(|| format!("/proc/meminfo has no field `{field}`"))?;
    let value = line.trim().strip_suffix("kB").unwrap_or(line.trim()).trim();
    value.parse().map_err(|_| format!("/proc/meminfo: `{field}` is not a number: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_read_as_written() {
        let text = "MemTotal:       16000000 kB\nHugePages_Total:       0\nHugePages_Free:        3\nHugepagesize:       2048 kB\n";
        assert_eq!(meminfo_field(text, "HugePages_Free"), Ok(3));
        assert_eq!(meminfo_field(text, "Hugepagesize"), Ok(2048));
        assert_eq!(meminfo_field(text, "MemTotal"), Ok(16_000_000));
        // A prefix of a field is not the field.
        assert!(meminfo_field(text, "HugePages").unwrap_err().contains("no field `HugePages`"));
        assert!(meminfo_field("X: y\n", "X").unwrap_err().contains("not a number"));
    }
}
