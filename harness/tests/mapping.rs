//! Mapping changes on attachments (`munmap`, `mprotect`, `mremap`) against
//! the real kernel, and the bounds the wrapper keeps after them. Every test
//! runs in its own process (rusty-fork) and private IPC namespace.

#![allow(unsafe_code)] // opts in: raw calls against the kernel under test

mod common;

use rusty_fork::rusty_fork_test;
use shm_harness::sysv::{self, shmget, AttachFlags, Attachment, GetFlags, Key, Mode, Protection, Shmid};

fn nattch(id: Shmid) -> u64 {
    id.stat().expect("stat").nattch
}

fn segment(pages: usize) -> (Shmid, usize) {
    let page = sysv::raw::page_size();
    let id =
        shmget(Key::PRIVATE, pages * page, GetFlags::CREAT, None, Mode::from_bits_truncate(0o600)).expect("shmget");
    (id, page)
}

rusty_fork_test! {
    #![rusty_fork(timeout_ms = 60_000)]

    #[test]
    fn partial_unmap_keeps_the_rest_attached_and_shrinks_the_bounds() {
        private_namespace_or_skip!();
        let (id, page) = segment(3);
        let mut a = Attachment::attach(id, AttachFlags::empty()).expect("shmat");
        a.write_at(0, b"x").expect("write");
        // SAFETY: only this handle uses the range.
        unsafe { a.unmap(page, page) }.expect("munmap middle");
        assert_eq!(nattch(id), 2, "two pieces left, each counted");
        assert_eq!(a.limit(), page);
        assert!(a.read_at(page, &mut [0u8]).is_err(), "the hole is refused");
        assert!(a.read_at(page - 1, &mut [0u8]).is_ok());
        a.detach_in_place().expect("shmdt finds both pieces");
        assert_eq!(nattch(id), 0);
        assert!(a.read_at(0, &mut [0u8]).is_err(), "detached: everything refused");
        assert!(a.detach_in_place().is_ok(), "a gone handle makes no second call");
        // SAFETY: nothing is attached there any more; the kernel refuses.
        let again = unsafe { sysv::detach_at(a.as_ptr().cast()) }.unwrap_err();
        assert_eq!(again.errno(), Some(sysv::Errno::EINVAL), "a second shmdt at the address is EINVAL");
        id.remove().expect("rm");
    }

    #[test]
    fn whole_unmap_detaches_and_drop_makes_no_second_shmdt() {
        private_namespace_or_skip!();
        let (id, page) = segment(1);
        let mut a = Attachment::attach(id, AttachFlags::empty()).expect("shmat");
        let addr = a.as_ptr();
        // SAFETY: only this handle uses the range.
        unsafe { a.unmap(0, page) }.expect("munmap");
        assert_eq!(nattch(id), 0);
        assert!(!a.is_mapped());
        // Another attachment lands at the same address; dropping the old
        // handle must not detach it.
        // SAFETY: the range is free (just unmapped) and ours.
        let b = unsafe { Attachment::attach_at(id, addr.cast(), AttachFlags::empty()) }.expect("shmat at");
        assert_eq!(b.as_ptr(), addr);
        drop(a);
        assert_eq!(nattch(id), 1, "the new attachment survived the old handle's drop");
        b.detach().expect("shmdt");
        id.remove().expect("rm");
    }

    #[test]
    fn protect_and_resize_cut_the_bounds() {
        private_namespace_or_skip!();
        let (id, page) = segment(2);
        let mut a = Attachment::attach(id, AttachFlags::empty()).expect("shmat");
        // SAFETY: only this handle uses the range.
        unsafe { a.protect(page, page, Protection::Read) }.expect("mprotect");
        assert_eq!(a.limit(), page);
        assert!(a.write_at(page, b"y").is_err());
        // Adding rights back does not widen the bounds (they only shrink).
        // SAFETY: as above.
        unsafe { a.protect(0, 2 * page, Protection::ReadWrite) }.expect("mprotect back");
        assert_eq!(a.limit(), page);
        // SAFETY: as above.
        assert!(!unsafe { a.resize(page, false) }.expect("shrink"), "a shrink stays in place");
        assert_eq!((a.mapping_len(), a.limit()), (page, page));
        a.detach().expect("shmdt");
        assert_eq!(nattch(id), 0);
        id.remove().expect("rm");
    }

    #[test]
    fn forget_cuts_only_a_range_that_overlaps() {
        private_namespace_or_skip!();
        let (id, page) = segment(2);
        let mut a = Attachment::attach(id, AttachFlags::empty()).expect("shmat");
        let base = a.as_ptr() as usize;
        a.forget(base - page, page);
        assert_eq!(a.limit(), 2 * page, "a range that ends where the attachment starts does not overlap it");
        a.forget(base + 2 * page, page);
        assert_eq!(a.limit(), 2 * page, "a range that starts where the attachment ends does not overlap it");
        a.forget(base - page, page + 1);
        assert_eq!(a.limit(), 0, "one byte of overlap at the start cuts everything");
        assert!(a.read_at(0, &mut [0u8]).is_err());
        a.detach().expect("shmdt");
        id.remove().expect("rm");
    }

    #[test]
    fn bounds_follow_the_maps_pieces_of_this_segment_from_its_start() {
        private_namespace_or_skip!();
        let (id, page) = segment(2);
        let (other, _) = segment(1);
        let mut a = Attachment::attach(id, AttachFlags::empty()).expect("shmat");
        assert!(a.is_mapped());
        a.recheck_bounds(&std::fs::read_to_string("/proc/self/maps").expect("maps"));
        assert_eq!(a.limit(), 2 * page, "the kernel's own maps: the whole attachment");
        let base = a.as_ptr() as usize;
        let line = |s: usize, e: usize, perms: &str, shmid: i32| {
            format!("{s:x}-{e:x} {perms} 00000000 00:01 {shmid}                      /SYSV00000000 (deleted)\n")
        };
        let (id_raw, other_raw) = (id.raw(), other.raw());
        let maps = line(base, base + page, "rw-s", id_raw) + &line(base + page, base + 2 * page, "rw-s", other_raw);
        a.recheck_bounds(&maps);
        assert_eq!(a.limit(), page, "the second page is another segment's");
        let maps = line(base, base + page, "r--s", id_raw);
        a.recheck_bounds(&maps);
        assert_eq!(a.limit(), 0, "a read-write attachment left read-only");
        assert!(a.is_mapped(), "a piece of the segment is still there");
        a.recheck_bounds("");
        assert!(!a.is_mapped(), "no piece left: gone");
        id.remove().expect("rm");
        other.remove().expect("rm");
    }

    #[test]
    fn detach_at_an_arbitrary_address_is_einval() {
        private_namespace_or_skip!();
        let (id, page) = segment(2);
        let a = Attachment::attach(id, AttachFlags::empty()).expect("shmat");
        // SAFETY: no attachment starts there; the kernel refuses.
        let err = unsafe { sysv::detach_at(a.as_ptr().wrapping_add(page).cast()) }.unwrap_err();
        assert_eq!(err.errno(), Some(sysv::Errno::EINVAL));
        assert_eq!(nattch(id), 1);
        a.detach().expect("shmdt");
        id.remove().expect("rm");
    }
}
