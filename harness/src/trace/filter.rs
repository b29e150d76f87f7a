//! The seccomp filter that stops a tracee at `shmget`, `shmat` and every
//! `shmctl` command that is not a pure read, refuses the calls that would
//! blind the tracer, and the same classification in Rust for the tracer.
//!
//! One table ([`ABIS`]) drives both: [`program`] compiles it to classic BPF,
//! [`classify`] and [`refusal`] read it. A test runs the compiled program in
//! a small BPF interpreter against both so the two cannot drift apart, and
//! [`available`](super::available) checks that the kernel refuses each call
//! with the errno [`refusal`] names.
//!
//! ABIs known (by `AUDIT_ARCH_*`): x86_64 (with x32 numbers), i386 (direct
//! calls and the `ipc(2)` multiplexer's `SHMAT`/`SHMGET`/`SHMCTL`), aarch64 and arm
//! (EABI). A system call made under any other ABI kills the process
//! (`SECCOMP_RET_KILL_PROCESS`): it could not be classified, so it must not run
//! unseen.
//!
//! What is refused to a traced program, before it reaches the kernel
//! (`SECCOMP_RET_ERRNO`; no stop, the program sees the errno), under every
//! ABI above:
//!
//! | call | refused when | errno | why |
//! |---|---|---|---|
//! | `seccomp(SECCOMP_SET_MODE_FILTER, flags, ...)` | `flags` has `SECCOMP_FILTER_FLAG_NEW_LISTENER` | `EPERM` | a filter's `SECCOMP_RET_USER_NOTIF` outranks the harness's `SECCOMP_RET_TRACE`: its listener could let a `shmget` run unseen. Filters without a listener stay allowed (their actions either outrank trace and keep the call from running, or rank below it) |
//! | `clone(flags, ...)` | `flags` has `CLONE_UNTRACED` | `EPERM` | the child would not be followed (flags are argument 0 under every ABI here) |
//! | `clone3(args, size)` | always | `ENOSYS` | its flags are in memory, out of BPF's reach; libc (glibc 2.34+) and container runtimes then fall back to `clone` |
//! | `ptrace(request, ...)` | always | `EPERM` | a tracee tracing another process would take its seccomp stops; `PTRACE_TRACEME` already failed (the tree is traced) |
//!
//! Under x86_64, `ptrace` is refused by each number that reaches it on some
//! kernel: 101, x32's 521 (`0x4000_0000 | 521`), and 101 with the x32 bit
//! and 521 without it (kernels before 5.4 shared one table between the two).
//! [`Traps::Nothing`], the test-only blind control, refuses nothing.

/// `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386` (`EM_386 | __AUDIT_ARCH_LE`).
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `AUDIT_ARCH_AARCH64` (`EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
pub const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
/// `AUDIT_ARCH_ARM` (`EM_ARM | __AUDIT_ARCH_LE`).
pub const AUDIT_ARCH_ARM: u32 = 0x4000_0028;

/// `__X32_SYSCALL_BIT`: x32 system calls are x86_64's with this bit set.
const X32: u32 = 0x4000_0000;

pub use crate::sysv::raw::{IPC_RMID, IPC_SET};
use crate::sysv::ShmctlCmd;
pub use crate::sysv::IPC_64;

/// The `shmctl` commands that only read (`IPC_STAT`, `IPC_INFO`,
/// `SHM_STAT`, `SHM_INFO`, `SHM_STAT_ANY`: those [`ShmctlCmd::changes`]
/// does not name), without `IPC_64`: the filter lets them run without a
/// stop; every other command (`IPC_RMID`, `IPC_SET`, `SHM_LOCK`,
/// `SHM_UNLOCK`, and any the kernel may add) stops. The wrapper's command
/// table is the one list.
fn read_cmds() -> impl Iterator<Item = i32> {
    ShmctlCmd::NAMED.into_iter().filter(|c| !c.changes()).map(ShmctlCmd::raw)
}

/// `SECCOMP_SET_MODE_FILTER` (`seccomp(2)`'s operation 1).
const SET_MODE_FILTER: u32 = 1;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
const FLAG_NEW_LISTENER: u32 = 1 << 3;
/// `CLONE_UNTRACED`.
const CLONE_UNTRACED: u32 = 0x0080_0000;
/// `ipc(2)` multiplexer call numbers (`include/uapi/linux/ipc.h`).
const IPC_CALL_SHMAT: u32 = 21;
const IPC_CALL_SHMGET: u32 = 23;
const IPC_CALL_SHMCTL: u32 = 24;

/// What a system call number means under one ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `shmget(key, size, flags)`.
    Shmget,
    /// `shmat(shmid, addr, flags)`.
    Shmat,
    /// `shmctl(shmid, cmd, buf)`.
    Shmctl,
    /// `ipc(call, first, second, third, ptr, fifth)`.
    Ipc,
    /// `seccomp(op, flags, args)`: refused with a listener.
    Seccomp,
    /// `clone(flags, ...)`: refused with `CLONE_UNTRACED`.
    Clone,
    /// `clone3(args, size)`: always refused (`ENOSYS`).
    Clone3,
    /// `ptrace(...)`: always refused.
    Ptrace,
}

/// One ABI: its audit arch and the numbers of the calls that matter.
struct Abi {
    arch: u32,
    calls: &'static [(u32, Kind)],
}

/// Every ABI the filter knows.
const ABIS: &[Abi] = &[
    Abi {
        arch: AUDIT_ARCH_X86_64,
        calls: &[
            (29, Kind::Shmget),
            (30, Kind::Shmat),
            (31, Kind::Shmctl),
            (56, Kind::Clone),
            (101, Kind::Ptrace),
            (317, Kind::Seccomp),
            (435, Kind::Clone3),
            (521, Kind::Ptrace),
            (X32 | 29, Kind::Shmget),
            (X32 | 30, Kind::Shmat),
            (X32 | 31, Kind::Shmctl),
            (X32 | 56, Kind::Clone),
            (X32 | 101, Kind::Ptrace),
            (X32 | 317, Kind::Seccomp),
            (X32 | 435, Kind::Clone3),
            (X32 | 521, Kind::Ptrace),
        ],
    },
    Abi {
        arch: AUDIT_ARCH_I386,
        calls: &[
            (395, Kind::Shmget),
            (397, Kind::Shmat),
            (396, Kind::Shmctl),
            (117, Kind::Ipc),
            (120, Kind::Clone),
            (26, Kind::Ptrace),
            (354, Kind::Seccomp),
            (435, Kind::Clone3),
        ],
    },
    Abi {
        arch: AUDIT_ARCH_AARCH64,
        calls: &[
            (194, Kind::Shmget),
            (196, Kind::Shmat),
            (195, Kind::Shmctl),
            (220, Kind::Clone),
            (117, Kind::Ptrace),
            (277, Kind::Seccomp),
            (435, Kind::Clone3),
        ],
    },
    Abi {
        arch: AUDIT_ARCH_ARM,
        calls: &[
            (307, Kind::Shmget),
            (305, Kind::Shmat),
            (308, Kind::Shmctl),
            (120, Kind::Clone),
            (26, Kind::Ptrace),
            (383, Kind::Seccomp),
            (435, Kind::Clone3),
        ],
    },
];

/// The audit arch of the ABI this crate is compiled for, if the filter knows it.
pub fn native_arch() -> Option<u32> {
    if cfg!(all(target_arch = "x86_64", target_endian = "little")) {
        Some(AUDIT_ARCH_X86_64)
    } else if cfg!(target_arch = "x86") {
        Some(AUDIT_ARCH_I386)
    } else if cfg!(all(target_arch = "aarch64", target_endian = "little")) {
        Some(AUDIT_ARCH_AARCH64)
    } else if cfg!(all(target_arch = "arm", target_endian = "little")) {
        Some(AUDIT_ARCH_ARM)
    } else {
        None
    }
}

/// A trapped call, decoded from a seccomp stop's arch, number and arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `shmget(key, size, flags)`.
    Shmget {
        /// The key (`IPC_PRIVATE` is 0).
        key: i32,
        /// The size asked for.
        size: u64,
        /// The flags (`IPC_CREAT`, `IPC_EXCL`, mode bits, ...).
        flags: i32,
    },
    /// `shmat(shmid, addr, flags)`.
    Shmat {
        /// The segment.
        shmid: i32,
    },
    /// `shmctl(shmid, cmd, buf)` with a `cmd` (without `IPC_64`) not in
    /// [`read_cmds`].
    Shmctl {
        /// The segment.
        shmid: i32,
        /// The command, without `IPC_64`.
        cmd: i32,
    },
}

/// A call the filter refuses (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` with `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
    NewListener,
    /// `clone` with `CLONE_UNTRACED`.
    Untraced,
    /// `clone3`.
    Clone3,
    /// `ptrace`, any request.
    Ptrace,
}

impl Refusal {
    /// The errno the program gets.
    pub fn errno(self) -> i32 {
        match self {
            Refusal::Clone3 => libc::ENOSYS,
            Refusal::NewListener | Refusal::Untraced | Refusal::Ptrace => libc::EPERM,
        }
    }
}

/// The table's entry for `nr` under `arch`; `None` for an unknown ABI.
fn kind(arch: u32, nr: u32) -> Option<Option<Kind>> {
    let abi = ABIS.iter().find(|a| a.arch == arch)?;
    Some(abi.calls.iter().find(|&&(n, _)| n == nr).map(|&(_, k)| k))
}

/// Decodes a system call the way the filter does; `None` if the filter lets
/// it run without a stop (or refuses it: see [`refusal`]).
pub fn classify(arch: u32, nr: u32, args: &[u64; 6]) -> Option<Call> {
    let kind = kind(arch, nr)??;
    // Arguments are C ints and size_t's: the low 32 bits are the int.
    let int = |i: usize| args[i] as u32 as i32;
    let shmctl = |shmid: i32, cmd: i32| {
        let cmd = cmd & !IPC_64;
        ShmctlCmd::from_raw(cmd).changes().then_some(Call::Shmctl { shmid, cmd })
    };
    match kind {
        Kind::Shmget => Some(Call::Shmget { key: int(0), size: args[1], flags: int(2) }),
        Kind::Shmat => Some(Call::Shmat { shmid: int(0) }),
        Kind::Shmctl => shmctl(int(0), int(1)),
        Kind::Ipc => match args[0] as u32 & 0xffff {
            IPC_CALL_SHMAT => Some(Call::Shmat { shmid: int(1) }),
            IPC_CALL_SHMGET => Some(Call::Shmget { key: int(1), size: args[2] as u32 as u64, flags: int(3) }),
            IPC_CALL_SHMCTL => shmctl(int(1), int(2)),
            _ => None,
        },
        Kind::Seccomp | Kind::Clone | Kind::Clone3 | Kind::Ptrace => None,
    }
}

/// Whether the filter refuses the call, and as what. The kernel reads
/// `seccomp`'s operation and flags and `clone`'s flags as 32-bit values
/// (`unsigned int`; `lower_32_bits` of `clone_flags`), so only the low word
/// of each argument counts, as in the BPF.
pub fn refusal(arch: u32, nr: u32, args: &[u64; 6]) -> Option<Refusal> {
    let low = |i: usize| args[i] as u32;
    match kind(arch, nr)?? {
        Kind::Seccomp => (low(0) == SET_MODE_FILTER && low(1) & FLAG_NEW_LISTENER != 0).then_some(Refusal::NewListener),
        Kind::Clone => (low(0) & CLONE_UNTRACED != 0).then_some(Refusal::Untraced),
        Kind::Clone3 => Some(Refusal::Clone3),
        Kind::Ptrace => Some(Refusal::Ptrace),
        Kind::Shmget | Kind::Shmat | Kind::Shmctl | Kind::Ipc => None,
    }
}

/// A classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// `offsetof(struct seccomp_data, nr)`, `arch`, `args[i]` (low word on little endian).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i
}

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_TRACE: u32 = libc::SECCOMP_RET_TRACE;
const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const RET_ERRNO: u32 = libc::SECCOMP_RET_ERRNO;

/// `SECCOMP_RET_ERRNO` with the refusal's errno.
fn ret_refused(r: Refusal) -> Insn {
    ret(RET_ERRNO | r.errno() as u32)
}

fn ld(off: u32) -> Insn {
    Insn { code: LD_W_ABS, jt: 0, jf: 0, k: off }
}
fn and(k: u32) -> Insn {
    Insn { code: ALU_AND_K, jt: 0, jf: 0, k }
}
fn ret(k: u32) -> Insn {
    Insn { code: RET_K, jt: 0, jf: 0, k }
}
/// `if A == k` run `body` (which must end in a return), else skip it.
fn when_eq(k: u32, body: Vec<Insn>) -> Vec<Insn> {
    let skip = u8::try_from(body.len()).expect("BPF block longer than 255 instructions");
    let mut out = vec![Insn { code: JEQ_K, jt: 0, jf: skip, k }];
    out.extend(body);
    out
}
/// Refuses as `r` when argument `arg` has a bit of `mask` set; else allows.
fn refuse_if_any(arg: u32, mask: u32, r: Refusal) -> Vec<Insn> {
    let mut out = vec![ld(off_arg(arg)), and(mask)];
    out.extend(when_eq(0, vec![ret(RET_ALLOW)]));
    out.push(ret_refused(r));
    out
}
/// Allows when argument `arg` (the low word, without `IPC_64`) is one of
/// [`read_cmds`]; traps every other `shmctl` command.
fn trap_unless_read_cmd(arg: u32) -> Vec<Insn> {
    let mut out = vec![ld(off_arg(arg)), and(!(IPC_64 as u32))];
    for cmd in read_cmds() {
        out.extend(when_eq(cmd as u32, vec![ret(RET_ALLOW)]));
    }
    out.push(ret(RET_TRACE));
    out
}

/// What the filter traps: normally the shm calls; `Nothing` is the test-only
/// control that proves an oracle fails when the tracer sees nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Traps {
    /// `shmget` and `shmat` always; `shmctl` unless the command only reads
    /// (`IPC_STAT`, `IPC_INFO`, `SHM_STAT`, `SHM_INFO`, `SHM_STAT_ANY`); and
    /// the refusals listed in this module's docs.
    #[default]
    ShmCalls,
    /// No call trapped, none refused (unknown ABIs are still killed).
    Nothing,
}

/// Compiles the filter: known ABIs trap and refuse what `traps` says and
/// allow the rest; unknown ABIs kill the process.
pub fn program(traps: Traps) -> Vec<Insn> {
    let mut out = vec![ld(OFF_ARCH)];
    for abi in ABIS {
        let mut block = vec![ld(OFF_NR)];
        if traps == Traps::ShmCalls {
            for &(nr, kind) in abi.calls {
                block.extend(when_eq(nr, body(kind)));
            }
        }
        block.push(ret(RET_ALLOW));
        out.extend(when_eq(abi.arch, block));
    }
    out.push(ret(RET_KILL));
    out
}

/// The instructions for one call of the table, once its number matched;
/// they end in a return.
fn body(kind: Kind) -> Vec<Insn> {
    match kind {
        Kind::Shmget | Kind::Shmat => vec![ret(RET_TRACE)],
        Kind::Shmctl => trap_unless_read_cmd(1),
        Kind::Ipc => {
            let mut b = vec![ld(off_arg(0)), and(0xffff)];
            b.extend(when_eq(IPC_CALL_SHMAT, vec![ret(RET_TRACE)]));
            b.extend(when_eq(IPC_CALL_SHMGET, vec![ret(RET_TRACE)]));
            b.extend(when_eq(IPC_CALL_SHMCTL, trap_unless_read_cmd(2)));
            b.push(ret(RET_ALLOW));
            b
        }
        Kind::Seccomp => {
            let mut b = vec![ld(off_arg(0))];
            b.extend(when_eq(SET_MODE_FILTER, refuse_if_any(1, FLAG_NEW_LISTENER, Refusal::NewListener)));
            b.push(ret(RET_ALLOW));
            b
        }
        Kind::Clone => refuse_if_any(0, CLONE_UNTRACED, Refusal::Untraced),
        Kind::Clone3 => vec![ret_refused(Refusal::Clone3)],
        Kind::Ptrace => vec![ret_refused(Refusal::Ptrace)],
    }
}

#[cfg(test)]
mod tests;
