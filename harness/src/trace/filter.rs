//! The seccomp filter that stops a tracee at `shmget` and at the `shmctl`
//! commands that change a segment's identity, and the same classification
//! in Rust for the tracer.
//!
//! One table ([`ABIS`]) drives both: [`program`] compiles it to classic BPF,
//! [`classify`] reads it when the tracer decodes a seccomp stop. A test runs
//! the compiled program in a small BPF interpreter against [`classify`] so the
//! two cannot drift apart.
//!
//! ABIs known (by `AUDIT_ARCH_*`): x86_64 (with x32 numbers), i386 (direct
//! calls and the `ipc(2)` multiplexer's `SHMGET`/`SHMCTL`), aarch64 and arm
//! (EABI). A system call made under any other ABI kills the process
//! (`SECCOMP_RET_KILL_PROCESS`): it could not be classified, so it must not run
//! unseen.

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

/// `IPC_RMID`, `IPC_SET`: the `shmctl` commands the filter traps.
pub const IPC_RMID: i32 = 0;
/// `IPC_SET`: changes uid, gid, mode and `shm_ctime`.
pub const IPC_SET: i32 = 1;
/// `IPC_64`: the "new layout" flag some ABIs add to the command.
pub const IPC_64: i32 = 0x100;
/// `ipc(2)` multiplexer call numbers (`include/uapi/linux/ipc.h`).
const IPC_CALL_SHMGET: u32 = 23;
const IPC_CALL_SHMCTL: u32 = 24;

/// What a system call number means under one ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `shmget(key, size, flags)`.
    Shmget,
    /// `shmctl(shmid, cmd, buf)`.
    Shmctl,
    /// `ipc(call, first, second, third, ptr, fifth)`.
    Ipc,
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
        calls: &[(29, Kind::Shmget), (31, Kind::Shmctl), (X32 | 29, Kind::Shmget), (X32 | 31, Kind::Shmctl)],
    },
    Abi { arch: AUDIT_ARCH_I386, calls: &[(395, Kind::Shmget), (396, Kind::Shmctl), (117, Kind::Ipc)] },
    Abi { arch: AUDIT_ARCH_AARCH64, calls: &[(194, Kind::Shmget), (195, Kind::Shmctl)] },
    Abi { arch: AUDIT_ARCH_ARM, calls: &[(307, Kind::Shmget), (308, Kind::Shmctl)] },
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
    /// `shmctl(shmid, cmd, buf)` with `cmd` (without `IPC_64`) `IPC_SET` or `IPC_RMID`.
    Shmctl {
        /// The segment.
        shmid: i32,
        /// `IPC_SET` or `IPC_RMID`.
        cmd: i32,
    },
}

/// Decodes a system call the way the filter does; `None` if the filter lets
/// it run without a stop.
pub fn classify(arch: u32, nr: u32, args: &[u64; 6]) -> Option<Call> {
    let abi = ABIS.iter().find(|a| a.arch == arch)?;
    let &(_, kind) = abi.calls.iter().find(|&&(n, _)| n == nr)?;
    // Arguments are C ints and size_t's: the low 32 bits are the int.
    let int = |i: usize| args[i] as u32 as i32;
    let shmctl = |shmid: i32, cmd: i32| (cmd & 0xff < 2).then_some(Call::Shmctl { shmid, cmd: cmd & !IPC_64 });
    match kind {
        Kind::Shmget => Some(Call::Shmget { key: int(0), size: args[1], flags: int(2) }),
        Kind::Shmctl => shmctl(int(0), int(1)),
        Kind::Ipc => match args[0] as u32 & 0xffff {
            IPC_CALL_SHMGET => Some(Call::Shmget { key: int(1), size: args[2] as u32 as u64, flags: int(3) }),
            IPC_CALL_SHMCTL => shmctl(int(1), int(2)),
            _ => None,
        },
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
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
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
/// Traps when the low byte of argument `arg` is below 2 (`IPC_RMID`, `IPC_SET`).
fn trap_if_identity_cmd(arg: u32) -> Vec<Insn> {
    vec![ld(off_arg(arg)), and(0xff), Insn { code: JGE_K, jt: 1, jf: 0, k: 2 }, ret(RET_TRACE), ret(RET_ALLOW)]
}

/// What the filter traps: normally the shm calls; `Nothing` is the test-only
/// control that proves an oracle fails when the tracer sees nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Traps {
    /// `shmget` always; `shmctl` for `IPC_SET` and `IPC_RMID`.
    #[default]
    ShmCalls,
    /// No call (unknown ABIs are still killed).
    Nothing,
}

/// Compiles the filter: known ABIs trap what `traps` says and allow the rest;
/// unknown ABIs kill the process.
pub fn program(traps: Traps) -> Vec<Insn> {
    let mut out = vec![ld(OFF_ARCH)];
    for abi in ABIS {
        let mut block = vec![ld(OFF_NR)];
        if traps == Traps::ShmCalls {
            for &(nr, kind) in abi.calls {
                let body = match kind {
                    Kind::Shmget => vec![ret(RET_TRACE)],
                    Kind::Shmctl => trap_if_identity_cmd(1),
                    Kind::Ipc => {
                        let mut b = vec![ld(off_arg(0)), and(0xffff)];
                        b.extend(when_eq(IPC_CALL_SHMGET, vec![ret(RET_TRACE)]));
                        b.extend(when_eq(IPC_CALL_SHMCTL, trap_if_identity_cmd(2)));
                        b.push(ret(RET_ALLOW));
                        b
                    }
                };
                block.extend(when_eq(nr, body));
            }
        }
        block.push(ret(RET_ALLOW));
        out.extend(when_eq(abi.arch, block));
    }
    out.push(ret(RET_KILL));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` on a `seccomp_data` the way the kernel's classic BPF
    /// interpreter does, for the opcodes [`program`] emits.
    fn run(prog: &[Insn], arch: u32, nr: u32, args: &[u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => acc = u32::from_le_bytes(data[i.k as usize..i.k as usize + 4].try_into().unwrap()),
                ALU_AND_K => acc &= i.k,
                JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                c => panic!("opcode {c:#x} not emitted by program()"),
            }
        }
    }

    const ARCHES: [u32; 5] = [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, 0x8000_0016];

    #[test]
    fn the_bpf_program_traps_exactly_what_classify_decodes() {
        let prog = program(Traps::ShmCalls);
        let nrs: Vec<u32> = (0..520).chain([X32 | 29, X32 | 30, X32 | 31, X32 | 1]).collect();
        let firsts = [0u64, 1, 2, 3, 13, 23, 24, 25, 0x1_0017, 0x1_0018, 0x100, 0x101, 0xffff_ffff_0000_0001];
        let mut trapped = 0;
        for arch in ARCHES {
            for &nr in &nrs {
                for &a in &firsts {
                    for &b in &firsts {
                        for &c in &[0u64, 1, 2, 0x101] {
                            let args = [a, b, c, 0, 0, 0];
                            let got = run(&prog, arch, nr, &args);
                            let want = if ABIS.iter().all(|x| x.arch != arch) {
                                RET_KILL
                            } else if classify(arch, nr, &args).is_some() {
                                RET_TRACE
                            } else {
                                RET_ALLOW
                            };
                            assert_eq!(got, want, "arch={arch:#x} nr={nr} args={args:?}");
                            trapped += usize::from(got == RET_TRACE);
                        }
                    }
                }
            }
        }
        assert!(trapped > 0, "the comparison must include trapped calls");
    }

    #[test]
    fn classify_decodes_each_abi() {
        let get = Some(Call::Shmget { key: 7, size: 100, flags: 0o1600 });
        assert_eq!(classify(AUDIT_ARCH_X86_64, 29, &[7, 100, 0o1600, 0, 0, 0]), get);
        assert_eq!(classify(AUDIT_ARCH_X86_64, X32 | 29, &[7, 100, 0o1600, 0, 0, 0]), get);
        assert_eq!(classify(AUDIT_ARCH_AARCH64, 194, &[7, 100, 0o1600, 0, 0, 0]), get);
        assert_eq!(classify(AUDIT_ARCH_ARM, 307, &[7, 100, 0o1600, 0, 0, 0]), get);
        assert_eq!(classify(AUDIT_ARCH_I386, 395, &[7, 100, 0o1600, 0, 0, 0]), get);
        assert_eq!(classify(AUDIT_ARCH_I386, 117, &[23, 7, 100, 0o1600, 0, 0]), get);
        // The ipc version in the high half of the call number is ignored.
        assert_eq!(
            classify(AUDIT_ARCH_I386, 117, &[0x1_0018, 5, 0x101, 0, 0, 0]),
            Some(Call::Shmctl { shmid: 5, cmd: 1 })
        );
        assert_eq!(classify(AUDIT_ARCH_X86_64, 31, &[5, 0, 0, 0, 0, 0]), Some(Call::Shmctl { shmid: 5, cmd: 0 }));
        // IPC_STAT, SHM_STAT: no stop. Another ABI's number: no stop.
        assert_eq!(classify(AUDIT_ARCH_X86_64, 31, &[5, 2, 0, 0, 0, 0]), None);
        assert_eq!(classify(AUDIT_ARCH_X86_64, 31, &[5, 13, 0, 0, 0, 0]), None);
        assert_eq!(classify(AUDIT_ARCH_X86_64, 194, &[7, 100, 0, 0, 0, 0]), None);
        assert_eq!(classify(AUDIT_ARCH_I386, 29, &[7, 100, 0, 0, 0, 0]), None);
        assert_eq!(classify(0x8000_0016, 29, &[7, 100, 0, 0, 0, 0]), None);
    }

    #[test]
    fn traps_nothing_allows_every_known_call() {
        let prog = program(Traps::Nothing);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 29, &[0; 6]), RET_ALLOW);
        assert_eq!(run(&prog, 0x8000_0016, 29, &[0; 6]), RET_KILL);
    }
}
