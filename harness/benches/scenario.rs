//! `cargo bench --bench scenario`: the harness against a minimal hand-written
//! baseline that makes the same system calls with fork and pipes, each run in
//! a fresh IPC namespace. Prints per-scenario times and their ratio, the
//! 64 MiB cross-process throughput of both, and the wall time of
//! `shm-harness run scenarios/`.
//!
//! This is a measurement, not a test: it prints numbers and never asserts
//! on time.

#![allow(unsafe_code)] // opts in: raw calls against the kernel under test

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, ForkResult};
use shm_harness::runner::{self, Isolation, RunOptions, Status};
use shm_harness::scenario;

const SEED: &str = r#"# the seed's story: two processes race for the same key
file keyfile
process A, B
A: key k = ftok "keyfile" 0x14
A: create s = k size 4096 mode 0600 excl
B: create k size 4096 excl          => EEXIST
B: attach m = s
A: attach w = s
A: write w 0 "hello"
B: read m 0 5                        => "hello"
A: exit
B: stat s                            => nattch 1
B: rm s
B: detach m
"#;

const BIG: usize = 64 << 20;

fn big_scenario() -> String {
    format!(
        "process A, B\nA: create s = private size {BIG}\nA: attach w = s\nB: attach r = s ro\nA: write w 0 pattern \"0123456789abcdef\" {BIG}\nB: read r 0 {BIG} => pattern \"0123456789abcdef\" {BIG}\nA: detach w\nB: detach r\nA: rm s\n"
    )
}

fn wait_byte(fd: &OwnedFd) {
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into a local buffer.
    unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
}

fn send_byte(fd: &OwnedFd) {
    // SAFETY: writing one byte from a constant.
    unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) };
}

fn child(body: impl FnOnce()) -> nix::unistd::Pid {
    // SAFETY: the bench's main thread is its only thread; the child makes
    // system calls and _exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            body();
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// The seed scenario by hand: fresh namespace, two forks, four pipe hand-offs.
fn baseline_seed(keyfile: &CString) {
    unshare(CloneFlags::CLONE_NEWIPC).expect("unshare");
    let (a_r, a_w) = pipe().unwrap(); // to A
    let (b_r, b_w) = pipe().unwrap(); // to B
                                      // SAFETY: raw SysV calls on memory the kernel maps for this child.
    let a = child(|| unsafe {
        let key = libc::ftok(keyfile.as_ptr(), 0x14);
        let id = libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600);
        assert!(id >= 0);
        send_byte(&b_w); // 1: B may try
        wait_byte(&a_r); // 2: B attached
        let p = libc::shmat(id, std::ptr::null(), 0);
        std::ptr::copy_nonoverlapping(b"hello".as_ptr(), p.cast::<u8>(), 5);
        send_byte(&b_w); // 3: written; A exits
    });
    // SAFETY: raw SysV calls on memory the kernel maps for this child.
    let b = child(|| unsafe {
        wait_byte(&b_r);
        let key = libc::ftok(keyfile.as_ptr(), 0x14);
        assert_eq!(libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600), -1);
        let id = libc::shmget(key, 0, 0);
        let p = libc::shmat(id, std::ptr::null(), 0);
        send_byte(&a_w);
        wait_byte(&b_r);
        let mut buf = [0u8; 5];
        std::ptr::copy_nonoverlapping(p.cast::<u8>(), buf.as_mut_ptr(), 5);
        assert_eq!(&buf, b"hello");
        // 4: A exits; B is not its parent, so it watches nattch fall to 1.
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        while {
            libc::shmctl(id, libc::IPC_STAT, &mut ds);
            ds.shm_nattch != 1
        } {
            std::hint::spin_loop();
        }
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        libc::shmdt(p);
    });
    waitpid(a, None).unwrap();
    waitpid(b, None).unwrap();
}

/// 64 MiB written by one process and verified by another, by hand.
fn baseline_big() {
    unshare(CloneFlags::CLONE_NEWIPC).expect("unshare");
    let (r, w) = pipe().unwrap();
    // SAFETY: raw SysV calls on memory the kernel maps for us.
    unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, BIG, libc::IPC_CREAT | 0o600);
        let a = child(|| {
            let p = libc::shmat(id, std::ptr::null(), 0).cast::<u8>();
            let pat = b"0123456789abcdef";
            for i in (0..BIG).step_by(16) {
                std::ptr::copy_nonoverlapping(pat.as_ptr(), p.add(i), 16);
            }
            send_byte(&w);
        });
        let b = child(|| {
            wait_byte(&r);
            let p = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY).cast::<u8>();
            let pat = b"0123456789abcdef";
            let mut buf = vec![0u8; BIG];
            std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), BIG);
            assert!(buf.chunks(16).all(|c| c == pat));
        });
        waitpid(a, None).unwrap();
        waitpid(b, None).unwrap();
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
    }
}

fn per_run(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e3 / n as f64
}

/// The time of `runs` calls of `f` after a warm-up, in a child: the
/// baseline moves its process into fresh namespaces, so the harness's own
/// runs start from the original namespace.
fn baseline(f: &dyn Fn(), runs: usize) -> Duration {
    let (r, w) = pipe().unwrap();
    let pid = child(|| {
        for _ in 0..runs.min(20) {
            f(); // warm-up
        }
        let t = Instant::now();
        for _ in 0..runs {
            f();
        }
        let ns = t.elapsed().as_nanos() as u64;
        // SAFETY: writing 8 bytes from a local.
        unsafe { libc::write(w.as_raw_fd(), ns.to_le_bytes().as_ptr().cast(), 8) };
    });
    let mut buf = [0u8; 8];
    // SAFETY: reading 8 bytes into a local.
    unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    waitpid(pid, None).unwrap();
    Duration::from_nanos(u64::from_le_bytes(buf))
}

/// The time of `runs` runs of the scenario `text` by the harness (one job,
/// namespace isolation), after a warm-up; every run must pass.
fn harness(text: &str, runs: usize) -> Duration {
    let sc = scenario::parse("bench.scn", text).unwrap();
    let many: Vec<_> = std::iter::repeat_n(sc, runs).collect();
    let opts = RunOptions { jobs: 1, ..RunOptions::default() };
    let warm = runner::run(&many[..runs.min(20)], &opts, Isolation::Namespace, |_| {}).unwrap();
    assert!(warm.iter().all(|r| r.status == Status::Pass), "{}", warm[0].failure_text());
    let t = Instant::now();
    let reports = runner::run(&many, &opts, Isolation::Namespace, |_| {}).unwrap();
    let took = t.elapsed();
    assert!(reports.iter().all(|r| r.status == Status::Pass), "{}", reports[0].failure_text());
    took
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("scenario: bench");
        return;
    }
    if let Err(e) = runner::probe_namespace() {
        println!("skipped: the benchmark needs private IPC namespaces: {e}");
        return;
    }
    let n: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("keyfile");
    std::fs::write(&keyfile, b"").unwrap();
    let ckey = CString::new(keyfile.to_str().unwrap()).unwrap();

    // The machine is shared: alternate the two in rounds and keep each one's
    // best round, so a burst of someone else's load lands on neither alone.
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let (mut b, mut h) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        b = b.min(per_run(baseline(&|| baseline_seed(&ckey), n), n));
        h = h.min(per_run(harness(SEED, n), n));
    }
    println!("seed scenario (3 processes, fresh IPC namespace each), {n} runs, best of {rounds} alternating rounds:");
    println!("  baseline (fork + pipes + syscalls): {b:.3} ms/run");
    println!("  shm-harness (parse once, check, leak oracle): {h:.3} ms/run");
    println!("  ratio harness/baseline: {:.2}x (target <= 1.5x)", h / b);

    let m = 5;
    let big = big_scenario();
    let base = baseline(&baseline_big, m);
    let ours = harness(&big, m);
    let gbps = |d: Duration| (BIG as f64 * m as f64) / d.as_secs_f64() / 1e9;
    println!("64 MiB pattern written by one process and verified by another, {m} runs:");
    println!(
        "  baseline: {:.2} GB/s; shm-harness: {:.2} GB/s; ratio {:.2}x",
        gbps(base),
        gbps(ours),
        gbps(base) / gbps(ours)
    );

    let bin = env!("CARGO_BIN_EXE_shm-harness");
    let scen = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let t = Instant::now();
    let out = std::process::Command::new(bin).args(["run", scen]).output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
    println!("shm-harness run scenarios/: {:.2} s wall ({summary})", t.elapsed().as_secs_f64());
}
