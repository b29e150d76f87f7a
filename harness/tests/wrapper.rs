//! The wrapper against the real kernel. Every test that creates segments runs
//! in its own process (rusty-fork) and its own private IPC namespace, so it
//! sees only its own segments and leaves nothing behind on the host.

#![allow(unsafe_code)] // opts in: raw calls against the kernel under test

mod common;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::{fork_child, wait};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use rusty_fork::rusty_fork_test;
use shm_harness::namespace::write_sysctl;
use shm_harness::sysv::{
    self, ftok, ftok_key, open, proc_segments, shmget, AttachFlags, CreateOptions, Errno, Error, GetFlags,
    HugePageSize, Key, Mode, Sysctl,
};

const K1: Key = Key::from_raw(0x5eed_0001);
const K2: Key = Key::from_raw(0x5eed_0002);

fn errno_of<T: std::fmt::Debug>(r: sysv::Result<T>) -> Errno {
    r.expect_err("expected the kernel to refuse").errno().expect("expected a system call error")
}

rusty_fork_test! {
    #![rusty_fork(timeout_ms = 60_000)]

    #[test]
    fn exclusive_create_of_an_existing_key_is_eexist() {
        private_namespace_or_skip!();
        let first = CreateOptions::new(4096).create_exclusive(K1).unwrap();
        let err = CreateOptions::new(4096).create_exclusive(K1).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::EEXIST));
        assert_eq!(
            err.to_string(),
            "shmget(key=0x5eed0001, size=4096, IPC_CREAT|IPC_EXCL|0600): EEXIST (File exists)"
        );
        // IPC_CREAT alone returns the existing segment.
        assert_eq!(CreateOptions::new(4096).open_or_create(K1).unwrap().id(), first.id());
        drop(first);
        // Once removed, the key can be created exclusively again.
        let _again = CreateOptions::new(4096).create_exclusive(K1).unwrap();
    }

    #[test]
    fn opening_a_missing_key_is_enoent() {
        private_namespace_or_skip!();
        let err = open(K2, 0).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::ENOENT));
        assert_eq!(err.to_string(), "shmget(key=0x5eed0002, size=0, 0000): ENOENT (No such file or directory)");
    }

    #[test]
    fn size_rules_of_shmget() {
        private_namespace_or_skip!();
        assert_eq!(errno_of(CreateOptions::new(0).create_private()), Errno::EINVAL);
        assert_eq!(errno_of(CreateOptions::new(0).create_exclusive(K1)), Errno::EINVAL);
        // Above the (huge) default shmmax of a fresh namespace.
        assert_eq!(errno_of(CreateOptions::new(usize::MAX).create_private()), Errno::EINVAL);
        // Above a lowered shmmax, which only this namespace sees.
        write_sysctl(Sysctl::Shmmax, 1 << 20).unwrap();
        assert_eq!(sysv::limits().unwrap().shmmax, 1 << 20);
        let _at_limit = CreateOptions::new(1 << 20).create_private().unwrap();
        assert_eq!(errno_of(CreateOptions::new((1 << 20) + 1).create_private()), Errno::EINVAL);

        let seg = CreateOptions::new(8192).create_exclusive(K1).unwrap();
        // A larger size for an existing key: EINVAL, whether opening or creating.
        assert_eq!(errno_of(open(K1, 8193)), Errno::EINVAL);
        assert_eq!(errno_of(CreateOptions::new(8193).open_or_create(K1)), Errno::EINVAL);
        // A smaller (or zero) size finds the same segment, which keeps its size.
        assert_eq!(open(K1, 1).unwrap().id(), seg.id());
        assert_eq!(open(K1, 0).unwrap().id(), seg.id());
        assert_eq!(CreateOptions::new(100).open_or_create(K1).unwrap().id(), seg.id());
        assert_eq!(seg.stat().unwrap().size, 8192);
    }

    #[test]
    fn shmid_zero_is_a_valid_id() {
        private_namespace_or_skip!();
        // The first segment of a fresh namespace gets index 0, seq 0: shmid 0.
        let seg = CreateOptions::new(64).create_private().unwrap();
        assert_eq!(seg.id().raw(), 0);
        let att = seg.attach(AttachFlags::empty()).unwrap();
        att.write_at(0, b"zero").unwrap();
        assert_eq!(seg.stat().unwrap().nattch, 1);
        drop(att);
        seg.remove().unwrap();
        assert_eq!(errno_of(sysv::Shmid::from_raw(0).stat()), Errno::EINVAL);
    }

    #[test]
    fn two_attachments_see_each_others_writes() {
        private_namespace_or_skip!();
        let seg = CreateOptions::new(4096).create_exclusive(K1).unwrap();
        let a = seg.attach(AttachFlags::empty()).unwrap();
        let b = seg.attach(AttachFlags::empty()).unwrap();
        assert_ne!(a.as_ptr(), b.as_ptr());
        a.write_at(10, b"hello").unwrap();
        let mut buf = [0u8; 5];
        b.read_at(10, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        // SAFETY: this thread is the only one of this process touching these bytes.
        unsafe { b.write_volatile::<u64>(64, 0xdead_beef_cafe_f00d).unwrap() };
        // SAFETY: as above.
        assert_eq!(unsafe { a.read_volatile::<u64>(64) }.unwrap(), 0xdead_beef_cafe_f00d);

        // And across processes: a child attaches by key and writes.
        let child = fork_child(|| {
            let Ok(seg) = open(K1, 0) else { return 10 };
            let Ok(att) = seg.attach(AttachFlags::empty()) else { return 11 };
            if att.write_at(100, b"from child").is_err() {
                return 12;
            }
            att.atomic_word(200).map(|n| n.fetch_add(7, std::sync::atomic::Ordering::SeqCst)).map_or(13, |_| 0)
        });
        assert!(matches!(wait(child), WaitStatus::Exited(_, 0)));
        let mut buf = [0u8; 10];
        a.read_at(100, &mut buf).unwrap();
        assert_eq!(&buf, b"from child");
        assert_eq!(b.atomic_word(200).unwrap().load(std::sync::atomic::Ordering::SeqCst), 7);
    }

    #[test]
    fn read_only_attachment_refuses_writes() {
        private_namespace_or_skip!();
        let seg = CreateOptions::new(4096).create_private().unwrap();
        let rw = seg.attach(AttachFlags::empty()).unwrap();
        let ro = seg.attach(AttachFlags::RDONLY).unwrap();
        rw.write_at(0, b"x").unwrap();
        assert!(ro.is_read_only());
        assert!(matches!(ro.write_at(0, b"y"), Err(Error::ReadOnly { .. })));
        assert!(matches!(ro.fill(0, 1, 0), Err(Error::ReadOnly { .. })));
        assert!(matches!(ro.atomic_word(0), Err(Error::ReadOnly { .. })));
        // A read-only reader still loads words: published with Release, acquired by a fence.
        rw.write_at(8, b"payload!").unwrap();
        rw.atomic_word(16).unwrap().store(0x600d, std::sync::atomic::Ordering::Release);
        assert_eq!(ro.load_word(16).unwrap(), 0x600d);
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let mut payload = [0u8; 8];
        ro.read_at(8, &mut payload).unwrap();
        assert_eq!(&payload, b"payload!");
        assert!(matches!(ro.load_word(1), Err(Error::Misaligned { .. })));
        assert!(matches!(ro.load_word(4096), Err(Error::OutOfBounds { .. })));
        // SAFETY: refused before any access.
        assert!(matches!(unsafe { ro.atomic_u32(0) }, Err(Error::ReadOnly { .. })));
        assert_eq!(ro.peek(0).unwrap(), b'x');

        // A raw write through the read-only mapping: the kernel kills the writer.
        let child = fork_child(|| {
            // SAFETY: this child exists to die of the fault.
            let _ = unsafe { ro.poke(0, b'z') };
            0
        });
        assert_eq!(wait(child), WaitStatus::Signaled(child, Signal::SIGSEGV, false));
        assert_eq!(ro.peek(0).unwrap(), b'x', "the faulting write must not land");
    }

    #[test]
    fn removal_while_attached_turns_the_key_private() {
        private_namespace_or_skip!();
        let seg = CreateOptions::new(4096).create_exclusive(K1).unwrap();
        let id = seg.id();
        let att = seg.attach(AttachFlags::empty()).unwrap();
        att.write_at(0, b"before").unwrap();
        seg.remove().unwrap();

        let st = id.stat().unwrap();
        assert!(st.key.is_private(), "key after IPC_RMID: {}", st.key);
        assert!(st.dest);
        assert_eq!(st.nattch, 1);
        let row = proc_segments().unwrap().into_iter().find(|r| r.shmid == id).unwrap();
        assert!(row.dest && row.key.is_private());

        // The memory stays usable.
        att.write_at(6, b" after").unwrap();
        let mut buf = [0u8; 12];
        att.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"before after");
        // The key is free: a new, different segment takes it.
        assert_eq!(errno_of(open(K1, 0)), Errno::ENOENT);
        let again = CreateOptions::new(4096).create_exclusive(K1).unwrap();
        assert_ne!(again.id(), id);
        // Attaching the removed id is still allowed on Linux while it lives.
        let second = sysv::Attachment::attach(id, AttachFlags::RDONLY).unwrap();
        assert_eq!(id.stat().unwrap().nattch, 2);
        drop(second);

        // The last detach destroys it.
        att.detach().unwrap();
        assert!(matches!(errno_of(id.stat()), Errno::EINVAL | Errno::EIDRM));
        assert!(proc_segments().unwrap().iter().all(|r| r.shmid != id));
    }

    #[test]
    fn typed_shmget_sets_bits_given_twice_once() {
        private_namespace_or_skip!();
        // GetFlags can carry retained bits; a bit that is also in the mode
        // or the huge page field is set once, never cancelled out.
        let flags = GetFlags::CREAT | GetFlags::EXCL | GetFlags::from_bits_retain(0o640);
        let id = shmget(K1, 4096, flags, None, Mode::new(0o640).unwrap()).unwrap();
        assert_eq!(id.stat().unwrap().mode, Mode::new(0o640).unwrap());
        // (Size 0 makes the kernel refuse, so the message shows the word passed.)
        let flags = GetFlags::CREAT | GetFlags::HUGETLB | GetFlags::from_bits_retain(HugePageSize::Mb2.flag_bits());
        let err = shmget(K2, 0, flags, Some(HugePageSize::Mb2), Mode::OWNER_RW).unwrap_err();
        assert_eq!(err.to_string(), "shmget(key=0x5eed0002, size=0, IPC_CREAT|SHM_HUGETLB|SHM_HUGE_2MB|0600): EINVAL (Invalid argument)");
        id.remove().unwrap();
    }

    #[test]
    fn a_segment_outlives_the_process_that_created_it() {
        private_namespace_or_skip!();
        let child = fork_child(|| {
            // Created and never removed: the seed's lesson.
            match shmget(K1, 4096, GetFlags::CREAT | GetFlags::EXCL, None, Mode::OWNER_RW) {
                Ok(_) => 0,
                Err(_) => 1,
            }
        });
        assert!(matches!(wait(child), WaitStatus::Exited(_, 0)));
        let seg = open(K1, 0).expect("the segment must outlive its creator");
        let st = seg.stat().unwrap();
        assert_eq!(st.cpid, child.as_raw());
        assert_eq!(st.nattch, 0);
        assert_eq!(errno_of(CreateOptions::new(4096).create_exclusive(K1)), Errno::EEXIST);
        seg.remove().unwrap();
    }

    #[test]
    fn attachments_are_inherited_by_fork() {
        private_namespace_or_skip!();
        let seg = CreateOptions::new(4096).create_private().unwrap();
        let att = seg.attach(AttachFlags::empty()).unwrap();
        assert_eq!(seg.stat().unwrap().nattch, 1);
        let id = seg.id();
        let child = fork_child(|| {
            // The child has the parent's mapping: nattch counts it.
            let n = id.stat().map_or(100, |s| s.nattch as i32);
            let wrote = att.write_at(0, b"inherited").is_ok();
            if wrote { n } else { 101 }
        });
        assert_eq!(wait(child), WaitStatus::Exited(child, 2));
        // The child's exit detached its copy only.
        let st = seg.stat().unwrap();
        assert_eq!(st.nattch, 1);
        assert_eq!(st.lpid, child.as_raw());
        let mut buf = [0u8; 9];
        att.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"inherited");
    }

    #[test]
    fn owned_segments_are_removed_on_drop_plain_ones_are_not() {
        private_namespace_or_skip!();
        {
            let _plain = CreateOptions::new(100).open_or_create(K1).unwrap();
        }
        let plain = open(K1, 0).expect("a plain Segment must not remove on drop");

        let owned = CreateOptions::new(100).create_exclusive(K2).unwrap();
        let id = owned.id();
        let released = owned.release();
        assert!(released.stat().is_ok(), "release() gives up ownership");
        let owned = sysv::OwnedSegment::adopt(released);
        drop(owned);
        assert!(matches!(errno_of(id.stat()), Errno::EINVAL | Errno::EIDRM));
        // Dropping a guard whose segment someone else removed is fine.
        let owned = CreateOptions::new(100).create_private().unwrap();
        owned.id().remove().unwrap();
        drop(owned);
        plain.remove().unwrap();
    }

    #[test]
    fn a_child_dropping_an_inherited_guard_does_not_remove() {
        private_namespace_or_skip!();
        let owned = CreateOptions::new(100).create_private().unwrap();
        let id = owned.id();
        let child = fork_child(|| {
            // SAFETY: the child's bitwise copy of the inherited guard; the
            // parent's stays untouched in the parent's memory.
            drop(unsafe { std::ptr::read(&owned) });
            0
        });
        wait(child);
        assert!(id.stat().is_ok(), "the child's drop removed the parent's segment");
        id.remove().unwrap();
    }

    #[test]
    fn handles_say_what_they_hold() {
        private_namespace_or_skip!();
        let owned = CreateOptions::new(100).create_exclusive(K1).unwrap();
        assert_eq!((owned.key(), owned.segment().key(), owned.segment().id()), (K1, K1, owned.id()));
        let plain = open(K1, 0).unwrap();
        assert_eq!((plain.id(), plain.key()), (owned.id(), K1));
        let ro = plain.attach(AttachFlags::RDONLY).unwrap();
        assert_eq!((ro.shmid(), ro.flags(), ro.is_read_only()), (owned.id(), AttachFlags::RDONLY, true));
        let rw = owned.attach(AttachFlags::empty()).unwrap();
        assert_eq!((rw.shmid(), rw.flags(), rw.is_read_only()), (owned.id(), AttachFlags::empty(), false));
        assert_eq!(owned.stat().unwrap().nattch, 2);
        assert_eq!(plain.stat().unwrap().nattch, 2);
        // The maps parser finds both, by shmid and key, read-only and not.
        let maps = sysv::sysv_mappings(None).unwrap();
        let mine: Vec<_> = maps.iter().filter(|m| m.shmid == owned.id()).collect();
        assert_eq!(mine.len(), 2, "{maps:?}");
        assert!(mine.iter().all(|m| m.key == K1 && m.end - m.start == rw.mapping_len()));
        assert!(mine.iter().any(|m| m.start == ro.as_ptr() as usize && !m.writable));
        assert!(mine.iter().any(|m| m.start == rw.as_ptr() as usize && m.writable));
        drop((ro, rw));
        assert!(sysv::sysv_mappings(None).unwrap().iter().all(|m| m.shmid != owned.id()));
        let again = sysv::Segment::from_id(owned.id(), K2);
        assert_eq!((again.id(), again.key()), (owned.id(), K2));
        // A plain handle removes when told to (and only then).
        plain.remove().unwrap();
        assert!(matches!(errno_of(owned.stat()), Errno::EINVAL | Errno::EIDRM));
    }

    #[test]
    fn detach_reports_the_kernels_answer() {
        private_namespace_or_skip!();
        let seg = CreateOptions::new(100).create_private().unwrap();
        let att = seg.attach(AttachFlags::empty()).unwrap();
        let addr = att.as_ptr();
        // SAFETY: detached behind the handle's back on purpose; the handle is
        // not used for memory access afterwards, only detached.
        unsafe { sysv::raw::shmdt(addr.cast()) }.unwrap();
        let err = att.detach().unwrap_err();
        assert_eq!(err.errno(), Some(Errno::EINVAL));
        assert_eq!(err.to_string(), format!("shmdt(addr={addr:?}) [shmid={}]: EINVAL (Invalid argument)", seg.id()));
        let att = seg.attach(AttachFlags::empty()).unwrap();
        att.detach().unwrap();
        assert_eq!(seg.stat().unwrap().nattch, 0);
    }

    #[test]
    fn calls_on_a_bad_id_name_it() {
        private_namespace_or_skip!();
        let bad = sysv::Shmid::from_raw(-1);
        assert_eq!(bad.remove().unwrap_err().to_string(), "shmctl(shmid=-1, IPC_RMID): EINVAL (Invalid argument)");
        assert_eq!(
            bad.set(0, 0, Mode::new(0o640).unwrap()).unwrap_err().to_string(),
            "shmctl(shmid=-1, IPC_SET, uid=0, gid=0, mode=0640): EINVAL (Invalid argument)"
        );
        assert_eq!(bad.lock().unwrap_err().to_string(), "shmctl(shmid=-1, SHM_LOCK): EINVAL (Invalid argument)");
        assert_eq!(bad.unlock().unwrap_err().to_string(), "shmctl(shmid=-1, SHM_UNLOCK): EINVAL (Invalid argument)");
        assert_eq!(errno_of(bad.set_mode(Mode::OWNER_RW)), Errno::EINVAL);
        assert!(matches!(
            sysv::Attachment::attach(bad, AttachFlags::empty()),
            Err(Error::Sys { errno: Errno::EINVAL, ref call }) if call == "shmat(shmid=-1, addr=0x0, 0)"
        ));
    }

    #[test]
    fn shm_rmid_forced_reads_back() {
        private_namespace_or_skip!();
        assert!(!sysv::sysctls().unwrap().shm_rmid_forced);
        write_sysctl(Sysctl::ShmRmidForced, 1).unwrap();
        assert!(sysv::sysctls().unwrap().shm_rmid_forced);
        assert_eq!(Sysctl::ShmRmidForced.read().unwrap(), 1);
    }

    #[test]
    fn page_rounding_and_bounds() {
        private_namespace_or_skip!();
        let page = sysv::raw::page_size();
        for (size, mapped) in [(1, page), (100, page), (page, page), (page + 1, 2 * page)] {
            let seg = CreateOptions::new(size).create_private().unwrap();
            let att = seg.attach(AttachFlags::empty()).unwrap();
            assert_eq!((att.size(), att.mapping_len()), (size, mapped));
            assert_eq!(seg.stat().unwrap().size, size, "shm_segsz keeps the requested size");
            let mut byte = [0u8; 1];
            att.read_at(size - 1, &mut byte).unwrap();
            assert!(matches!(att.read_at(size, &mut byte), Err(Error::OutOfBounds { limit, .. }) if limit == size));
            assert!(matches!(att.write_at(usize::MAX, b"x"), Err(Error::OutOfBounds { .. })));
            // The page-rounding tail is mapped and zero; past it is refused.
            assert_eq!(att.peek(mapped - 1).unwrap(), 0);
            assert!(att.peek(mapped).is_err());
        }
        let seg = CreateOptions::new(64).create_private().unwrap();
        let att = seg.attach(AttachFlags::empty()).unwrap();
        // SAFETY: refused before any access.
        assert!(matches!(unsafe { att.atomic_u64(4) }, Err(Error::Misaligned { align: 8, .. })));
        let word = std::mem::size_of::<usize>();
        assert!(matches!(att.atomic_word(word / 2), Err(Error::Misaligned { align, .. }) if align == word));
        assert!(matches!(att.atomic_word(64), Err(Error::OutOfBounds { .. })));
        // SAFETY: refused before any access.
        assert!(matches!(unsafe { att.read_volatile::<u32>(62) }, Err(Error::OutOfBounds { .. })));
        att.fill(0, 64, 0xab).unwrap();
        // SAFETY: the only thread touching the segment.
        assert_eq!(unsafe { att.read_volatile::<u8>(63) }.unwrap(), 0xab);
        assert_eq!(att.peek(64).unwrap(), 0, "fill stays inside the segment's size");
    }

    #[test]
    fn lock_and_unlock_set_the_locked_bit() {
        private_namespace_or_skip!();
        skip_if_not_root!();
        let seg = CreateOptions::new(4096).create_private().unwrap();
        seg.id().lock().unwrap();
        assert!(seg.stat().unwrap().locked);
        assert!(proc_segments().unwrap()[0].locked);
        seg.id().unlock().unwrap();
        assert!(!seg.stat().unwrap().locked);
    }

    #[test]
    fn ipc_set_changes_owner_and_mode_only() {
        private_namespace_or_skip!();
        skip_if_not_root!();
        let seg = CreateOptions::new(4096).mode(Mode::new(0o640).unwrap()).create_private().unwrap();
        seg.id().set(1234, 5678, Mode::new(0o604).unwrap()).unwrap();
        let st = seg.stat().unwrap();
        assert_eq!((st.uid, st.gid, st.mode.bits()), (1234, 5678, 0o604));
        assert_eq!((st.cuid, st.cgid), (0, 0), "the creator does not change");
        seg.id().set_mode(Mode::OWNER_RW).unwrap();
        assert_eq!(seg.stat().unwrap().mode, Mode::OWNER_RW);
        assert_eq!(seg.stat().unwrap().uid, 1234);
    }

    #[test]
    fn info_and_stat_by_index() {
        private_namespace_or_skip!();
        write_sysctl(Sysctl::Shmmni, 77).unwrap();
        write_sysctl(Sysctl::Shmall, 12345).unwrap();
        let lim = sysv::limits().unwrap();
        assert_eq!((lim.shmmni, lim.shmall, lim.shmmin), (77, 12345, 1));
        assert_eq!(sysv::sysctls().unwrap().shmmni, 77);

        let a = CreateOptions::new(100).create_exclusive(K1).unwrap();
        let b = CreateOptions::new(5000).create_private().unwrap();
        let usage = sysv::usage().unwrap();
        assert_eq!(usage.used_ids, 2);
        assert_eq!(usage.shm_tot, 1 + 2, "pages: 100 bytes is one page, 5000 two");
        assert_eq!(usage.max_index, 1);
        let (id0, st0) = sysv::stat_index(0, false).unwrap();
        assert_eq!((id0, st0.key, st0.size), (a.id(), K1, 100));
        let (id1, _) = sysv::stat_index(1, true).unwrap();
        assert_eq!(id1, b.id());
        assert_eq!(errno_of(sysv::stat_index(2, true)), Errno::EINVAL);
        let all = sysv::all_segments().unwrap();
        assert_eq!(all.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![a.id(), b.id()]);
    }

    #[test]
    fn shmmni_limit_is_enospc() {
        private_namespace_or_skip!();
        write_sysctl(Sysctl::Shmmni, 2).unwrap();
        let _a = CreateOptions::new(1).create_private().unwrap();
        let _b = CreateOptions::new(1).create_private().unwrap();
        assert_eq!(errno_of(CreateOptions::new(1).create_private()), Errno::ENOSPC);
    }

    #[test]
    fn all_segments_skips_unused_indices_and_removed_segments() {
        private_namespace_or_skip!();
        let a = CreateOptions::new(1).create_private().unwrap();
        let b = CreateOptions::new(2).create_private().unwrap();
        let c = CreateOptions::new(3).create_private().unwrap();
        let (bid, cid) = (b.id(), c.id());
        // A hole at index 1 below the highest index in use.
        b.remove().unwrap();
        let found: Vec<(sysv::Shmid, usize)> = sysv::all_segments().unwrap().into_iter().map(|(id, st)| (id, st.size)).collect();
        assert_eq!(found, vec![(a.id(), 1), (cid, 3)]);
        assert_eq!(errno_of(sysv::stat_index(1, true)), Errno::EINVAL, "the hole is EINVAL, which all_segments skips");
        // A removed but still attached segment is still listed (dest set).
        let att = c.attach(AttachFlags::empty()).unwrap();
        c.remove().unwrap();
        let found = sysv::all_segments().unwrap();
        assert!(found.iter().any(|(id, st)| *id == cid && st.dest));
        assert!(found.iter().all(|(id, _)| *id != bid));
        drop(att);
        assert_eq!(sysv::all_segments().unwrap().len(), 1);
    }

    #[test]
    fn host_mode_model_judges_limits_by_shm_info() {
        use shm_harness::fuzzing::model::{Accounting, GetPrediction, Model};
        private_namespace_or_skip!();
        // This namespace plays the host: the model is not alone in it.
        let _others = [CreateOptions::new(4096).create_private().unwrap(), CreateOptions::new(1).create_private().unwrap()];
        let mut m = Model {
            shmmax: 1 << 20,
            shmall: 3,
            shmmni: 3,
            exclusive: false,
            huge_sizes: vec![],
            default_huge: None,
            accounting: Accounting::Always,
            page: 4096,
            segs: Default::default(),
        };
        assert_eq!(m.namespace_usage(), (2, 2), "two segments, two pages, none of them the model's");
        assert_eq!(m.predict_get(0, 4096, sysv::raw::IPC_CREAT), GetPrediction::Create);
        assert!(!m.limits_reached(4096), "a third page fits shmall 3, a third segment shmmni 3");
        assert!(m.limits_reached(4097), "a third page and a fourth would pass shmall 3");
        assert_eq!(m.predict_get(0, 4097, sysv::raw::IPC_CREAT), GetPrediction::CreateOr(vec![Errno::ENOSPC]));
        m.shmmni = 2;
        assert!(m.limits_reached(1));
        assert_eq!(m.predict_get(0, 1, sysv::raw::IPC_CREAT), GetPrediction::CreateOr(vec![Errno::ENOSPC]));
        // And the kernel agrees.
        write_sysctl(Sysctl::Shmmni, 2).unwrap();
        assert_eq!(errno_of(CreateOptions::new(1).create_private()), Errno::ENOSPC);
    }

    #[test]
    fn namespace_checks_are_per_thread() {
        use shm_harness::namespace::{in_private_ipc_namespace, ipc_namespace_id};
        skip_if_not_root!();
        let before = in_private_ipc_namespace();
        let main_ns = ipc_namespace_id(None).unwrap();
        let (inside, ns, self_ns) = std::thread::spawn(|| {
            // Root can unshare IPC in a multi-threaded process: only this thread moves.
            shm_harness::namespace::enter_private_ipc_namespace().unwrap();
            let self_ns = std::fs::read_link("/proc/self/ns/ipc").unwrap();
            (in_private_ipc_namespace(), ipc_namespace_id(None).unwrap(), self_ns)
        })
        .join()
        .unwrap();
        assert!(inside, "the thread that entered a namespace is in a private one");
        assert_ne!(ns, main_ns, "the thread's namespace is its own");
        assert_eq!(self_ns.to_str().unwrap(), format!("ipc:[{main_ns}]"), "/proc/self is the main thread's view");
        assert_eq!(ipc_namespace_id(None), Some(main_ns), "the main thread did not move");
        assert_eq!(in_private_ipc_namespace(), before, "the main thread's answer is unchanged");
        if !before {
            // The guard refuses in the thread that is still on the host.
            let err = write_sysctl(Sysctl::Shmmni, 77).unwrap_err();
            assert!(err.to_string().contains("refusing to write 77"), "{err}");
            assert!(err.to_string().contains("/proc/sys/kernel/shmmni"), "{err}");
        }
    }

    #[test]
    fn proc_reader_agrees_with_ipc_stat() {
        private_namespace_or_skip!();
        let plain = CreateOptions::new(100).mode(Mode::new(0o640).unwrap()).create_exclusive(K1).unwrap();
        let attached = CreateOptions::new(70_000).create_private().unwrap();
        let _m1 = attached.attach(AttachFlags::empty()).unwrap();
        let _m2 = attached.attach(AttachFlags::RDONLY).unwrap();
        let signed = CreateOptions::new(1).create_exclusive(Key::from_raw(-5)).unwrap();
        let removed = CreateOptions::new(10).create_private().unwrap();
        let _m3 = removed.attach(AttachFlags::empty()).unwrap();
        removed.id().remove().unwrap();
        if nix::unistd::Uid::effective().is_root() {
            plain.id().lock().unwrap();
        }
        let rows = proc_segments().unwrap();
        assert_eq!(rows.len(), 4);
        for row in rows {
            let st = row.shmid.stat().unwrap();
            assert_eq!(row.key, st.key);
            assert_eq!((row.mode, row.dest, row.locked), (st.mode, st.dest, st.locked), "shmid {}", row.shmid);
            assert_eq!((row.size, row.nattch), (st.size as u64, st.nattch));
            assert_eq!((row.cpid, row.lpid), (st.cpid, st.lpid));
            assert_eq!((row.uid, row.gid, row.cuid, row.cgid), (st.uid, st.gid, st.cuid, st.cgid));
            assert_eq!((row.atime, row.dtime, row.ctime), (st.atime, st.dtime, st.ctime));
        }
        assert_eq!(signed.stat().unwrap().key.raw(), -5);
    }

    #[test]
    fn ls_agrees_with_ipcs_row_for_row() {
        private_namespace_or_skip!();
        let a = CreateOptions::new(100).mode(Mode::new(0o640).unwrap()).create_exclusive(K1).unwrap();
        let b = CreateOptions::new(5000).create_private().unwrap();
        let _m = b.attach(AttachFlags::empty()).unwrap();
        b.id().remove().unwrap();
        let _c = CreateOptions::new(1).create_exclusive(Key::from_raw(-2)).unwrap();
        if nix::unistd::Uid::effective().is_root() {
            a.id().lock().unwrap();
        }
        let table = |out: std::process::Output| -> Vec<Vec<String>> {
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("0x"))
                .map(|l| l.split_whitespace().map(String::from).collect())
                .collect()
        };
        let ours = table(Command::new(common::bin()).arg("ls").output().unwrap());
        let theirs = match Command::new("ipcs").arg("-m").output() {
            Ok(out) => table(out),
            Err(e) => {
                eprintln!("skipped: ipcs is not installed ({e})");
                return;
            }
        };
        assert_eq!(theirs.len(), 3);
        assert_eq!(ours.len(), theirs.len());
        for (o, t) in ours.iter().zip(&theirs) {
            // ipcs's columns, then our cpid and lpid.
            assert_eq!(&o[..t.len()], &t[..], "ls: {o:?}\nipcs: {t:?}");
            assert_eq!(o.len(), t.len() + 2);
        }
        let json: serde_json::Value = serde_json::from_slice(
            &Command::new(common::bin()).args(["ls", "--json"]).output().unwrap().stdout,
        )
        .unwrap();
        // lsipc -m -J's shape (tests/cli_output.rs compares it with lsipc).
        let rows = json["sharedmemory"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1]["status"], "dest");
        assert_eq!(rows[1]["cpid"], serde_json::json!(std::process::id()));
    }

    #[test]
    fn attach_at_an_address_with_rnd_and_remap() {
        private_namespace_or_skip!();
        let seg = CreateOptions::new(4096).create_private().unwrap();
        let first = seg.attach(AttachFlags::empty()).unwrap();
        first.write_at(0, b"A").unwrap();
        let addr = first.as_ptr();
        // The range is in use: without REMAP the kernel refuses.
        // SAFETY: without REMAP nothing can be replaced.
        let busy = unsafe { sysv::Attachment::attach_at(seg.id(), addr.cast(), AttachFlags::empty()) };
        assert_eq!(busy.unwrap_err().errno(), Some(Errno::EINVAL));
        // A misaligned address without RND is EINVAL; with RND it rounds down
        // (to SHMLBA, the page size on x86) onto a range we then own.
        let free = first.as_ptr() as usize;
        first.detach().unwrap();
        // SAFETY: without REMAP nothing can be replaced.
        let mis = unsafe { sysv::Attachment::attach_at(seg.id(), (free + 1) as *const _, AttachFlags::empty()) };
        assert_eq!(mis.unwrap_err().errno(), Some(Errno::EINVAL));
        // SAFETY: without REMAP nothing can be replaced.
        let rnd = unsafe { sysv::Attachment::attach_at(seg.id(), (free + 1) as *const _, AttachFlags::RND) }.unwrap();
        assert_eq!(rnd.as_ptr() as usize, free);
        assert_eq!(rnd.peek(0).unwrap(), b'A');
        // REMAP over our own attachment replaces it.
        // SAFETY: the range holds only `rnd`, which we forget below.
        let remapped = unsafe { sysv::Attachment::attach_at(seg.id(), free as *const _, AttachFlags::REMAP) }.unwrap();
        assert_eq!(remapped.as_ptr() as usize, free);
        std::mem::forget(rnd);
        // REMAP without an address is EINVAL.
        assert_eq!(errno_of(seg.attach(AttachFlags::REMAP)), Errno::EINVAL);
    }

    #[test]
    fn exec_attachment_maps_executable() {
        private_namespace_or_skip!();
        let seg = CreateOptions::new(4096).mode(Mode::new(0o700).unwrap()).create_private().unwrap();
        let att = seg.attach(AttachFlags::EXEC).unwrap();
        let start = format!("{:x}-", att.as_ptr() as usize);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps.lines().find(|l| l.starts_with(&start)).expect("mapping in /proc/self/maps");
        assert!(line.contains("rwxs"), "{line}");
        assert!(line.contains("SYSV"), "{line}");
    }

    #[test]
    fn hugetlb_works_or_is_refused_with_a_documented_errno() {
        private_namespace_or_skip!();
        let free_huge_pages = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("HugePages_Free:").map(|v| v.trim().parse::<u64>().unwrap()))
            .unwrap_or(0);
        for huge in [HugePageSize::Default, HugePageSize::Mb2] {
            match CreateOptions::new(4096).hugetlb(huge).create_private() {
                Ok(seg) => {
                    let att = seg.attach(AttachFlags::empty()).unwrap();
                    assert_eq!(att.size(), 4096);
                    assert_eq!(att.mapping_len(), 2 << 20);
                    att.write_at(0, b"huge").unwrap();
                }
                // No huge page free to reserve, or not allowed for this group.
                Err(e) => {
                    assert!(matches!(e.errno(), Some(Errno::ENOMEM | Errno::EPERM)), "{e}");
                    assert!(e.to_string().contains("SHM_HUGETLB"), "{e}");
                }
            }
            // SHM_NORESERVE reserves nothing, so creation succeeds; without a
            // free huge page the first touch is SIGBUS, not an error code.
            let seg = CreateOptions::new(4096).hugetlb(huge).noreserve(true).create_private().unwrap();
            let att = seg.attach(AttachFlags::empty()).unwrap();
            // Mapped in whole huge pages of the size asked for, or the kernel's default.
            let page = huge.bytes().or_else(sysv::default_huge_page_size).unwrap();
            assert_eq!((att.size(), att.mapping_len()), (4096, page));
            let child = fork_child(|| i32::from(att.write_at(0, b"touch").is_err()));
            if free_huge_pages == 0 {
                assert_eq!(wait(child), WaitStatus::Signaled(child, Signal::SIGBUS, false));
            } else {
                assert_eq!(wait(child), WaitStatus::Exited(child, 0));
            }
        }
        if sysv::huge_page_sizes().contains(&(1 << 30)) {
            let seg = CreateOptions::new(4096).hugetlb(HugePageSize::Gb1).noreserve(true).create_private().unwrap();
            assert_eq!(seg.attach(AttachFlags::empty()).unwrap().mapping_len(), 1 << 30);
        }
        // A size encoding the machine lacks (2^63) is EINVAL.
        assert_eq!(errno_of(CreateOptions::new(4096).hugetlb(HugePageSize::Log2(63)).create_private()), Errno::EINVAL);
    }
}

#[test]
fn ftok_equals_libc_on_many_real_files() {
    let mut checked = 0;
    let mut keys = BTreeMap::new();
    for dir in ["/usr/bin", "/etc", "/usr/lib", "/dev", "/proc/self", "/tmp"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten().take(400) {
            let path = entry.path();
            let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            for proj in [1u8, 0x14, 0x7f, 0x80, 0xff] {
                // SAFETY: a valid C string; ftok only stats it.
                let theirs = unsafe { libc::ftok(cpath.as_ptr(), libc::c_int::from(proj)) };
                match ftok(&path, proj) {
                    Ok(ours) => assert_eq!(ours.raw(), theirs, "{path:?} proj {proj:#x}"),
                    Err(Error::FtokPrivate { .. }) => assert_eq!(theirs, 0),
                    Err(e) => assert_eq!(theirs, -1, "{path:?}: we failed ({e}) but libc did not"),
                }
                checked += 1;
            }
            if let Ok(meta) = std::fs::metadata(&path) {
                keys.insert(ftok_key(meta.ino(), meta.dev(), 0x14), path);
            }
        }
    }
    assert!(checked > 1000, "only {checked} ftok comparisons");
    // Both fail together on a missing path, and ours says why.
    let missing = std::path::Path::new("/nonexistent/shm-harness/keyfile");
    let c = std::ffi::CString::new("/nonexistent/shm-harness/keyfile").unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::ftok(c.as_ptr(), 1) }, -1);
    let err = ftok(missing, 1).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    assert!(err.to_string().contains("keyfile") && err.to_string().contains("ENOENT"), "{err}");
    // A NUL byte: no C path holds one, so no errno is invented for it.
    let err = ftok(std::ffi::OsStr::from_bytes(b"/tmp/a\0b"), 7).unwrap_err();
    assert!(matches!(err, Error::FtokNul { at: 6, proj_id: 7, .. }), "{err:?}");
    assert_eq!(err.errno(), None);
    assert!(err.to_string().contains("NUL byte at index 6"), "{err}");
    // proj_id 0 over inode/device bits that are all zero would be IPC_PRIVATE.
    assert_eq!(ftok_key(0x10000, 0x100, 0), Key::PRIVATE);
}
