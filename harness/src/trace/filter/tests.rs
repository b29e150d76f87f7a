//! The filter's BPF, run in an interpreter, against the Rust classifier.

use super::*;

/// What the filter does with one system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Runs without a stop.
    Allow,
    /// Stops for the tracer (`SECCOMP_RET_TRACE`).
    Trace(Call),
    /// Fails with [`Refusal::errno`] without reaching the kernel.
    Refuse(Refusal),
    /// Kills the process (an ABI the filter does not know).
    Kill,
}

/// What the filter compiled with [`Traps::ShmCalls`] does with the call.
fn decide(arch: u32, nr: u32, args: &[u64; 6]) -> Action {
    if kind(arch, nr).is_none() {
        Action::Kill
    } else if let Some(r) = refusal(arch, nr, args) {
        Action::Refuse(r)
    } else {
        classify(arch, nr, args).map_or(Action::Allow, Action::Trace)
    }
}

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
            RET_K => return i.k,
            c => panic!("opcode {c:#x} not emitted by program()"),
        }
    }
}

const ARCHES: [u32; 5] = [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, 0x8000_0016];

#[test]
fn the_bpf_program_does_exactly_what_decide_says() {
    let prog = program(Traps::ShmCalls);
    let x32 = [29, 30, 31, 1, 56, 101, 317, 435, 521].map(|n| X32 | n);
    let nrs: Vec<u32> = (0..530).chain(x32).collect();
    // ipc calls and versions, shmctl commands, clone flags (CLONE_UNTRACED
    // alone, with SIGCHLD, only in the high word), seccomp ops and flags.
    let firsts = [
        0u64,
        1,
        2,
        3,
        8,
        9,
        11,
        13,
        15,
        21,
        23,
        24,
        25,
        0x1_0017,
        0x1_0018,
        0x1_0015,
        0x100,
        0x101,
        0x102,
        0x0080_0000,
        0x0080_0011,
        0x0080_0000_0000_0011,
        0xffff_ffff_0000_0001,
    ];
    let (mut trapped, mut refused) = (0, 0);
    for arch in ARCHES {
        for &nr in &nrs {
            for &a in &firsts {
                for &b in &firsts {
                    for &c in &[0u64, 1, 2, 0x101, 12] {
                        let args = [a, b, c, 0, 0, 0];
                        let got = run(&prog, arch, nr, &args);
                        let want = match decide(arch, nr, &args) {
                            Action::Kill => RET_KILL,
                            Action::Refuse(r) => RET_ERRNO | r.errno() as u32,
                            Action::Trace(_) => RET_TRACE,
                            Action::Allow => RET_ALLOW,
                        };
                        assert_eq!(got, want, "arch={arch:#x} nr={nr} args={args:?}");
                        trapped += usize::from(got == RET_TRACE);
                        refused += usize::from(got & !0xffff == RET_ERRNO);
                    }
                }
            }
        }
    }
    assert!(trapped > 0 && refused > 0, "the comparison must include trapped and refused calls");
}

/// Each ABI's numbers for the refused calls, through the BPF program and
/// through [`decide`]: (arch, clone, ptrace, seccomp, clone3).
const ESCAPES: [(u32, u32, u32, u32, u32); 6] = [
    (AUDIT_ARCH_X86_64, 56, 101, 317, 435),
    (AUDIT_ARCH_X86_64, X32 | 56, X32 | 521, X32 | 317, X32 | 435),
    (AUDIT_ARCH_I386, 120, 26, 354, 435),
    (AUDIT_ARCH_AARCH64, 220, 117, 277, 435),
    (AUDIT_ARCH_ARM, 120, 26, 383, 435),
    // x32's bit on the 64-bit ptrace number (one table on old kernels).
    (AUDIT_ARCH_X86_64, X32 | 56, X32 | 101, X32 | 317, X32 | 435),
];

#[test]
fn the_escapes_are_refused_under_each_abi() {
    let prog = program(Traps::ShmCalls);
    let errno = |e: i32| RET_ERRNO | e as u32;
    const SIGCHLD: u64 = 17;
    for (arch, clone, ptrace, seccomp, clone3) in ESCAPES {
        let cases: [(u32, [u64; 6], Action); 9] = [
            (clone, [0x0080_0000 | SIGCHLD, 0, 0, 0, 0, 0], Action::Refuse(Refusal::Untraced)),
            (clone, [0x0080_0000 | 0x0001_0f00, 1, 0, 0, 0, 0], Action::Refuse(Refusal::Untraced)),
            (clone, [SIGCHLD, 0, 0, 0, 0, 0], Action::Allow),
            (clone, [0x0001_0f00 | 0x0020_0000 | 0x0004_0000, 1, 0, 0, 0, 0], Action::Allow),
            (ptrace, [libc::PTRACE_TRACEME as u64, 0, 0, 0, 0, 0], Action::Refuse(Refusal::Ptrace)),
            (ptrace, [libc::PTRACE_SEIZE as u64, 42, 0, 0, 0, 0], Action::Refuse(Refusal::Ptrace)),
            (seccomp, [1, 8, 0x1000, 0, 0, 0], Action::Refuse(Refusal::NewListener)),
            (seccomp, [1, 1, 0x1000, 0, 0, 0], Action::Allow),
            (clone3, [0x1000, 88, 0, 0, 0, 0], Action::Refuse(Refusal::Clone3)),
        ];
        for (nr, args, want) in cases {
            assert_eq!(decide(arch, nr, &args), want, "arch={arch:#x} nr={nr:#x} args={args:?}");
            let bpf = match want {
                Action::Refuse(r) => errno(r.errno()),
                _ => RET_ALLOW,
            };
            assert_eq!(run(&prog, arch, nr, &args), bpf, "arch={arch:#x} nr={nr:#x} args={args:?}");
        }
        // seccomp's other operations (strict mode, action queries) run.
        assert_eq!(run(&prog, arch, seccomp, &[0, 8, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&prog, arch, seccomp, &[2, 8, 0, 0, 0, 0]), RET_ALLOW);
        // The blind control refuses nothing.
        assert_eq!(run(&program(Traps::Nothing), arch, ptrace, &[0; 6]), RET_ALLOW);
    }
    assert_eq!(Refusal::Clone3.errno(), libc::ENOSYS);
    assert_eq!(errno(libc::EPERM), 0x0005_0001);
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
    assert_eq!(classify(AUDIT_ARCH_I386, 117, &[0x1_0018, 5, 0x101, 0, 0, 0]), Some(Call::Shmctl { shmid: 5, cmd: 1 }));
    assert_eq!(classify(AUDIT_ARCH_X86_64, 31, &[5, 0, 0, 0, 0, 0]), Some(Call::Shmctl { shmid: 5, cmd: 0 }));
    // SHM_LOCK, SHM_UNLOCK and commands the kernel does not know stop too.
    assert_eq!(classify(AUDIT_ARCH_X86_64, 31, &[5, 11, 0, 0, 0, 0]), Some(Call::Shmctl { shmid: 5, cmd: 11 }));
    assert_eq!(classify(AUDIT_ARCH_X86_64, 31, &[5, 12, 0, 0, 0, 0]), Some(Call::Shmctl { shmid: 5, cmd: 12 }));
    assert_eq!(classify(AUDIT_ARCH_X86_64, 31, &[5, 0x202, 0, 0, 0, 0]), Some(Call::Shmctl { shmid: 5, cmd: 0x202 }));
    // shmat, under each ABI and through ipc(SHMAT, shmid, flags, &addr, addr).
    let at = Some(Call::Shmat { shmid: 9 });
    assert_eq!(classify(AUDIT_ARCH_X86_64, 30, &[9, 0, 0, 0, 0, 0]), at);
    assert_eq!(classify(AUDIT_ARCH_X86_64, X32 | 30, &[9, 0, 0, 0, 0, 0]), at);
    assert_eq!(classify(AUDIT_ARCH_I386, 397, &[9, 0, 0, 0, 0, 0]), at);
    assert_eq!(classify(AUDIT_ARCH_I386, 117, &[21, 9, 0, 0x1000, 0, 0]), at);
    assert_eq!(classify(AUDIT_ARCH_AARCH64, 196, &[9, 0, 0, 0, 0, 0]), at);
    assert_eq!(classify(AUDIT_ARCH_ARM, 305, &[9, 0, 0, 0, 0, 0]), at);
    // The pure reads: IPC_STAT, IPC_INFO, SHM_STAT, SHM_INFO, SHM_STAT_ANY
    // (with or without IPC_64): no stop. Another ABI's number: no stop.
    for cmd in [2, 3, 13, 14, 15, 0x102, 0x10f] {
        assert_eq!(classify(AUDIT_ARCH_X86_64, 31, &[5, cmd, 0, 0, 0, 0]), None, "cmd {cmd:#x}");
        assert_eq!(classify(AUDIT_ARCH_I386, 117, &[24, 5, cmd, 0, 0, 0]), None, "ipc cmd {cmd:#x}");
    }
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

#[test]
fn the_read_commands_are_the_wrappers_non_changing_ones() {
    let mut read: Vec<i32> = super::read_cmds().collect();
    read.sort_unstable();
    assert_eq!(read, [2, 3, 13, 14, 15], "IPC_STAT, IPC_INFO, SHM_STAT, SHM_INFO, SHM_STAT_ANY");
}
