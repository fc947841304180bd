// SPDX-License-Identifier: GPL-2.0

//! KUnit suites for the pure-logic files, run in the kernel with the kernel's
//! allocator ([`KernelAlloc`], `KVVec`).
//!
//! The host tests (`cargo test`) cover these files exhaustively; the cases
//! here are ported from them to check the same rules with the vectors,
//! atomics and integer semantics of the kernel build (overflow checks on):
//! memslot lookup, overlap and modification rules, the dirty log, and the
//! MMU-invalidation retry protocol, including a memslot deletion bracketed
//! by an invalidation.

use super::{
    abi::Errno,
    dirty_log::ClearDirtyLog,
    kalloc::KernelAlloc,
    memslot::{
        Change,
        HvaError,
        Memslot,
        MemslotHooks,
        MemslotLimits,
        Memslots,
        NoHooks,
        RegionIoctl,
        UserMemoryRegion,
        KVM_MEM_LOG_DIRTY_PAGES,
        KVM_MEM_READONLY,
        KVM_USER_MEM_SLOTS, //
    },
    mmu_invalidate::MmuInvalidate,
};
use kernel::{alloc::KVVec, prelude::*};

const PAGE: u64 = 4096;

type Set = Memslots<KernelAlloc>;

fn limits() -> MemslotLimits {
    MemslotLimits {
        page_shift: 12,
        readonly_mem: true,
        guest_memfd: false,
        task_size: 1 << 47,
        tag_bits: 0,
        gpa_bits: 40,
    }
}

fn region(slot: u32, flags: u32, gpa: u64, size: u64, hva: u64) -> UserMemoryRegion {
    UserMemoryRegion {
        slot,
        flags,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: hva,
        ..Default::default()
    }
}

fn set(s: &mut Set, m: UserMemoryRegion) -> Result<Option<Change>, Errno> {
    s.set_memory_region(RegionIoctl::V2, &m, &mut NoHooks)
}

#[kunit_tests(kvm_rs_memslot)]
mod memslot_tests {
    use super::*;

    #[test]
    fn create_lookup_and_hva() {
        let mut s = Set::new(limits());
        assert_eq!(set(&mut s, region(0, 0, 0x10_0000, 4 * PAGE, 0x7000_0000)), Ok(Some(Change::Create)));
        assert_eq!(s.len(), 1);
        assert_eq!(s.nr_memslot_pages(), 4);
        let slot = s.gfn_to_memslot(0x100).copied();
        assert_eq!(slot.map(|x| (x.id, x.base_gfn, x.npages)), Some((0, 0x100, 4)));
        assert_eq!(s.gfn_to_hva(0x102), Ok(0x7000_2000));
        assert_eq!(s.gfn_to_hva(0x104), Err(HvaError::Bad));
        assert_eq!(s.gfn_to_hva(0xff), Err(HvaError::Bad));
        assert_eq!(s.gfn_to_hva_many(0x101, true), Ok((0x7000_1000, 3)));
        assert!(s.is_visible_gfn(0x103));
        assert!(!s.is_visible_gfn(0x104));
        assert_eq!(s.gfn_to_memslot(u64::MAX), None);
    }

    #[test]
    fn readonly_slot_refuses_write_hva() {
        let mut s = Set::new(limits());
        assert_eq!(set(&mut s, region(3, KVM_MEM_READONLY, 0, PAGE, 0x1000)), Ok(Some(Change::Create)));
        assert_eq!(s.gfn_to_hva(0), Err(HvaError::ReadOnly));
        assert_eq!(s.gfn_to_hva_prot(0), Ok((0x1000, false)));
    }

    #[test]
    fn overlap_is_eexist_and_touching_is_fine() {
        let mut s = Set::new(limits());
        assert_eq!(set(&mut s, region(1, 0, 0x10000, 16 * PAGE, 0x100000)), Ok(Some(Change::Create)));
        for (gpa, size) in [(0x10000, PAGE), (0xf000, 2 * PAGE), (0x1f000, PAGE), (0x8000, 0x100000)] {
            assert_eq!(set(&mut s, region(2, 0, gpa, size, 0x200000)), Err(Errno::EEXIST));
        }
        assert_eq!(set(&mut s, region(2, 0, 0xf000, PAGE, 0x200000)), Ok(Some(Change::Create)));
        // Aliasing in hva space is allowed.
        assert_eq!(set(&mut s, region(3, 0, 0x20000, PAGE, 0x200000)), Ok(Some(Change::Create)));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn malformed_regions_are_einval() {
        let mut s = Set::new(limits());
        // Unaligned size, gpa, hva; wrapping gpa; unknown flag; bad slot
        // ids and address spaces.
        assert_eq!(set(&mut s, region(0, 0, 0, PAGE + 1, 0x1000)), Err(Errno::EINVAL));
        assert_eq!(set(&mut s, region(0, 0, 0x800, PAGE, 0x1000)), Err(Errno::EINVAL));
        assert_eq!(set(&mut s, region(0, 0, 0, PAGE, 0x1800)), Err(Errno::EINVAL));
        assert_eq!(set(&mut s, region(0, 0, !(PAGE - 1), 2 * PAGE, 0x1000)), Err(Errno::EINVAL));
        assert_eq!(set(&mut s, region(0, 1 << 3, 0, PAGE, 0x1000)), Err(Errno::EINVAL));
        assert_eq!(set(&mut s, region(u32::from(KVM_USER_MEM_SLOTS), 0, 0, PAGE, 0x1000)), Err(Errno::EINVAL));
        assert_eq!(set(&mut s, region(1 << 16, 0, 0, PAGE, 0x1000)), Err(Errno::EINVAL));
        // Beyond the task size.
        assert_eq!(set(&mut s, region(0, 0, 0, 2 * PAGE, (1 << 47) - PAGE)), Err(Errno::EINVAL));
        // v1 takes no v2-only flags.
        let m = region(0, 1 << 2, 0, PAGE, 0x1000);
        assert_eq!(s.set_memory_region(RegionIoctl::V1, &m, &mut NoHooks), Err(Errno::EINVAL));
        assert!(s.is_empty());
    }

    #[test]
    fn beyond_the_gpa_space_is_efault() {
        let mut s = Set::new(limits());
        assert_eq!(set(&mut s, region(0, 0, (1 << 40) - PAGE, PAGE, 0x1000)), Ok(Some(Change::Create)));
        assert_eq!(set(&mut s, region(1, 0, 1 << 40, PAGE, 0x1000)), Err(Errno::EFAULT));
        // Changing the GPA size needs an empty set.
        assert_eq!(s.set_gpa_bits(41), Err(Errno::EBUSY));
    }

    #[test]
    fn delete_and_modify_rules() {
        let mut s = Set::new(limits());
        assert_eq!(set(&mut s, region(4, 0, 0, 0, 0)), Err(Errno::EINVAL));
        assert_eq!(set(&mut s, region(0, 0, 0x10000, 2 * PAGE, 0x40000)), Ok(Some(Change::Create)));
        // Different hva or size, toggled READONLY: EINVAL; the same again: nothing.
        assert_eq!(set(&mut s, region(0, 0, 0x10000, 2 * PAGE, 0x50000)), Err(Errno::EINVAL));
        assert_eq!(set(&mut s, region(0, 0, 0x10000, 3 * PAGE, 0x40000)), Err(Errno::EINVAL));
        assert_eq!(set(&mut s, region(0, KVM_MEM_READONLY, 0x10000, 2 * PAGE, 0x40000)), Err(Errno::EINVAL));
        assert_eq!(set(&mut s, region(0, 0, 0x10000, 2 * PAGE, 0x40000)), Ok(None));
        let g = s.generation();
        assert_eq!(
            set(&mut s, region(0, KVM_MEM_LOG_DIRTY_PAGES, 0x10000, 2 * PAGE, 0x40000)),
            Ok(Some(Change::FlagsOnly))
        );
        assert_eq!(s.generation(), g + 1);
        assert_eq!(set(&mut s, region(0, 0, 0x80000, 2 * PAGE, 0x40000)), Ok(Some(Change::Move)));
        assert_eq!(s.generation(), g + 3);
        assert_eq!(s.gfn_to_hva(0x81), Ok(0x41000));
        assert_eq!(s.gfn_to_memslot(0x10), None);
        assert_eq!(set(&mut s, region(0, 0, 0x5000, 0, 0x9000)), Ok(Some(Change::Delete)));
        assert!(s.is_empty());
        assert_eq!(s.nr_memslot_pages(), 0);
    }

    #[test]
    fn many_slots_in_both_trees() {
        let mut s = Set::new(limits());
        // Created out of order, every other one deleted, the rest found.
        for i in 0..256u32 {
            let id = (i * 97) % 256;
            let gpa = u64::from(id) * 4 * PAGE;
            assert_eq!(set(&mut s, region(id, 0, gpa, 2 * PAGE, 0x100000)), Ok(Some(Change::Create)));
        }
        for id in (0..256u32).step_by(2) {
            assert_eq!(set(&mut s, region(id, 0, 0, 0, 0)), Ok(Some(Change::Delete)));
        }
        assert_eq!(s.len(), 128);
        for id in 0..256u64 {
            let found = s.gfn_to_memslot(id * 4 + 1).map(|x| u64::from(x.id));
            assert_eq!(found, if id % 2 == 1 { Some(id) } else { None });
        }
        let mut seen = 0u32;
        s.for_each_in_hva_range(0x100000, 0x101000, &mut |_: &Memslot, _, _| seen += 1);
        assert_eq!(seen, 128);
    }

    #[test]
    fn dirty_log_get_and_clear() {
        let mut s = Set::new(limits());
        let log = KVM_MEM_LOG_DIRTY_PAGES;
        assert_eq!(set(&mut s, region(0, log, 0x100 * PAGE, 130 * PAGE, 0x100000)), Ok(Some(Change::Create)));
        assert!(s.mark_page_dirty(0x100));
        assert!(s.mark_page_dirty(0x100 + 129));
        assert!(!s.mark_page_dirty(0x100 + 130));
        let mut words = KVVec::<u64>::new();
        let mut protected = 0u32;
        let done = s.get_dirty_log(0, &mut words, &mut |_: &Memslot, _, _| protected += 1);
        assert_eq!(done.map(|d| d.flush), Ok(true));
        assert_eq!(words.as_slice(), &[1, 0, 2]);
        assert_eq!(protected, 2);
        // The bits were harvested: a second read is empty.
        assert_eq!(s.get_dirty_log(0, &mut words, &mut |_: &Memslot, _, _| {}).map(|d| d.flush), Ok(false));
        assert_eq!(words.as_slice(), &[0, 0, 0]);
        // No slot, a slot without logging: ENOENT.
        assert_eq!(s.get_dirty_log(1, &mut words, &mut |_: &Memslot, _, _| {}).map(|d| d.flush), Err(Errno::ENOENT));
        // Manual protection with INITIALLY_SET: new bitmaps start full,
        // and CLEAR_DIRTY_LOG clears what it is told.
        assert_eq!(s.enable_manual_dirty_log_protect(0, 3, 3), Ok(()));
        assert_eq!(set(&mut s, region(1, log, 0, 64 * PAGE, 0x100000)), Ok(Some(Change::Create)));
        let req = ClearDirtyLog {
            slot: 1,
            num_pages: 64,
            first_page: 0,
        };
        let user = [0xffu64];
        let r = s.clear_dirty_log(&req, |_| Ok(&user[..]), &mut |_: &Memslot, _, _| {});
        assert_eq!(r.map(|d| d.flush), Ok(true));
        assert_eq!(s.get_dirty_log(1, &mut words, &mut |_: &Memslot, _, _| {}).map(|d| d.flush), Ok(false));
        assert_eq!(words.as_slice(), &[!0xffu64]);
        let bad = ClearDirtyLog { first_page: 1, ..req };
        assert_eq!(s.clear_dirty_log(&bad, |_| Ok(&user[..]), &mut |_: &Memslot, _, _| {}).map(|d| d.flush),
                   Err(Errno::EINVAL));
    }
}

#[kunit_tests(kvm_rs_mmu_invalidate)]
mod mmu_invalidate_tests {
    use super::*;

    #[test]
    fn sequence_and_count() {
        let mut inv = MmuInvalidate::new();
        assert_eq!((inv.seq(), inv.in_progress(), inv.range()), (0, 0, None));
        assert!(!inv.range_add(0, 10));
        inv.begin();
        assert!(inv.range_add(10, 20));
        assert!(!inv.range_add(30, 30));
        assert_eq!(inv.range(), Some((10, 20)));
        assert_eq!(inv.end(), Ok(()));
        assert_eq!((inv.seq(), inv.in_progress()), (1, 0));
        // An unbalanced end is reported, not wrapped.
        assert_eq!(inv.end(), Err(Errno::EIO));
        assert_eq!((inv.seq(), inv.in_progress()), (1, 0));
    }

    #[test]
    fn concurrent_ranges_accumulate_until_all_end() {
        let mut inv = MmuInvalidate::new();
        inv.begin();
        inv.range_add(100, 110);
        inv.begin();
        inv.range_add(10, 20);
        assert_eq!(inv.range(), Some((10, 110)));
        assert_eq!(inv.end(), Ok(()));
        let seq = inv.seq();
        assert!(inv.retry_gfn(seq, 50));
        assert!(inv.retry_gfn(seq, 105));
        assert!(!inv.retry_gfn(seq, 110));
        assert!(inv.retry_gfn(seq, 10));
        assert!(!inv.retry_gfn(seq, 9));
        assert_eq!(inv.end(), Ok(()));
        inv.begin();
        assert_eq!(inv.range(), None);
    }

    #[test]
    fn retry_rules() {
        let mut inv = MmuInvalidate::new();
        let seq = inv.seq();
        assert!(!inv.retry(seq) && !inv.retry_gfn(seq, 5));
        inv.begin();
        // In progress without a range: everything retries.
        assert!(inv.retry(seq) && inv.retry_gfn(seq, 5));
        inv.range_add(0, 4);
        assert!(inv.retry_gfn(seq, 3));
        assert!(!inv.retry_gfn(seq, 4));
        assert_eq!(inv.end(), Ok(()));
        // Ended after the fault read seq: it retries; a fresh fault does not.
        assert!(inv.retry_gfn(seq, 4));
        assert!(!inv.retry_gfn(inv.seq(), 4));
    }

    /// The fault-side protocol against one invalidation of the fault's gfn,
    /// at each point of the fault: the fault installs only if no
    /// invalidation overlapped it.
    #[test]
    fn a_fault_never_installs_across_an_invalidation() {
        // Points at which the invalidation runs entirely: before the fault
        // reads seq (0), between seq and the check (1), after install (2).
        for point in 0..3 {
            let mut inv = MmuInvalidate::new();
            if point == 0 {
                inv.invalidate_gfn_range(7, 8, |_, _| {});
            }
            let seq = inv.seq();
            if point == 1 {
                inv.invalidate_gfn_range(7, 8, |_, _| {});
            }
            let retry = inv.retry_gfn(seq, 7);
            assert_eq!(retry, point == 1);
            if point == 2 {
                let mut zapped = false;
                inv.invalidate_gfn_range(7, 8, |s, e| zapped = s == 7 && e == 8);
                assert!(zapped);
            }
        }
    }

    #[test]
    fn memslot_delete_bracketed_by_invalidation_makes_faults_retry() {
        struct Zap<'a>(&'a mut MmuInvalidate, bool);
        impl MemslotHooks for Zap<'_> {
            fn prepare(&mut self, _: Option<&Memslot>, _: Option<&Memslot>, _: Change) -> Result<(), Errno> {
                Ok(())
            }
            fn flush_shadow(&mut self, old: &Memslot) {
                let zapped = &mut self.1;
                self.0.invalidate_gfn_range(old.base_gfn, old.end_gfn(), |_, _| *zapped = true);
            }
            fn commit(&mut self, _: Option<&Memslot>, _: Option<&Memslot>, _: Change) {}
        }
        let mut s = Set::new(limits());
        assert_eq!(set(&mut s, region(0, 0, 0x100 * PAGE, 4 * PAGE, 0x100000)), Ok(Some(Change::Create)));
        let mut inv = MmuInvalidate::new();
        // A fault reads seq and looks up the slot...
        let seq = inv.seq();
        assert_eq!(s.gfn_to_hva(0x101), Ok(0x101000));
        // ... the slot is deleted, its zap bracketed by an invalidation ...
        let mut zap = Zap(&mut inv, false);
        let m = region(0, 0, 0, 0, 0);
        assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut zap), Ok(Some(Change::Delete)));
        assert!(zap.1);
        // ... so the fault must retry, and then finds no slot.
        assert!(inv.retry_gfn(seq, 0x101));
        assert_eq!(inv.in_progress(), 0);
        assert!(s.gfn_to_memslot(0x101).is_none());
    }
}

#[kunit_tests(kvm_rs_ioeventfd)]
mod ioeventfd_tests {
    use super::*;
    use crate::kvm::{
        ioeventfd::{
            IoeventfdArgs,
            Ioeventfds,
            FLAG_DATAMATCH,
            FLAG_DEASSIGN,
            FLAG_PIO, //
        },
        requests::{
            Requests,
            REQ_TLB_FLUSH,
            REQ_VM_DEAD, //
        },
    };

    fn args(addr: u64, len: u32, flags: u32, datamatch: u64) -> IoeventfdArgs {
        IoeventfdArgs { datamatch, addr, len, fd: 3, flags }
    }

    #[test]
    fn assign_collide_deassign_with_kvvec() {
        let mut r: Ioeventfds<KernelAlloc, i32> = Ioeventfds::new();
        let get = |fd: i32| -> Result<i32, Errno> { Ok(fd) };
        assert_eq!(r.ioctl(&args(0x1000, 4, FLAG_DATAMATCH, 1), get), Ok(()));
        assert_eq!(r.ioctl(&args(0x1000, 4, FLAG_DATAMATCH, 2), get), Ok(()));
        assert_eq!(r.ioctl(&args(0x1000, 4, 0, 0), get), Err(Errno::EEXIST));
        assert_eq!(r.ioctl(&args(0x1000, 0, FLAG_PIO, 0), get), Ok(()));
        assert_eq!(r.ioctl(&args(0x1000, 3, 0, 0), get), Err(Errno::EINVAL));
        assert_eq!(r.ioctl(&args(u64::MAX, 1, 0, 0), get), Err(Errno::EINVAL));
        assert_eq!(r.ioctl(&args(0x1000, 4, FLAG_DEASSIGN, 0), get), Err(Errno::ENOENT));
        assert_eq!(r.ioctl(&args(0x1000, 4, FLAG_DEASSIGN | FLAG_DATAMATCH, 1), get), Ok(()));
        assert_eq!(r.entries().len(), 2);
        // Many registrations: the vector grows without a count limit.
        for i in 0..2000u64 {
            assert_eq!(r.ioctl(&args(0x10_0000 + 8 * i, 8, 0, 0), get), Ok(()));
        }
        assert_eq!(r.entries().len(), 2002);
    }

    #[test]
    fn requests_with_kernel_atomics() {
        let r = Requests::new();
        r.make(REQ_VM_DEAD);
        assert!(r.pending());
        assert!(!r.check(REQ_TLB_FLUSH));
        assert!(r.check(REQ_VM_DEAD));
        assert!(!r.pending());
    }
}

#[kunit_tests(kvm_rs_coalesced_mmio)]
mod coalesced_mmio_tests {
    use super::*;
    use crate::kvm::{
        coalesced_mmio::{
            self,
            Zone,
            Zones, //
        },
        vm::ring_append,
    };
    use kernel::{
        page::{
            Page,
            PAGE_SIZE, //
        },
    };

    /// Reads the `u32` at byte `off` of `page` (`off + 4 <= PAGE_SIZE`,
    /// 4-aligned).
    fn read_u32(page: &Page, off: usize) -> u32 {
        let mut b = [0u8; 4];
        // SAFETY: `b` is 4 writable bytes; nothing else touches the test's
        // page concurrently.
        let _ = unsafe { page.read_raw(b.as_mut_ptr(), off, 4) };
        u32::from_ne_bytes(b)
    }

    fn write_u32(page: &Page, off: usize, v: u32) {
        let b = v.to_ne_bytes();
        // SAFETY: `b` is 4 readable bytes; nothing else touches the test's
        // page concurrently.
        let _ = unsafe { page.write_raw(b.as_ptr(), off, 4) };
    }

    #[test]
    fn ring_fills_wraps_and_distrusts_userspace() {
        let Ok(page) = Page::alloc_page(GFP_KERNEL | __GFP_ZERO) else {
            return;
        };
        let max = coalesced_mmio::ring_max(PAGE_SIZE);
        assert!(ring_append(&page, 0x1000, &[1, 2, 3, 4]));
        assert_eq!(read_u32(&page, coalesced_mmio::RING_LAST), 1);
        let e = coalesced_mmio::RING_HEADER;
        assert_eq!(read_u32(&page, e), 0x1000);
        assert_eq!(read_u32(&page, e + coalesced_mmio::ENTRY_LEN), 4);
        assert_eq!(read_u32(&page, e + coalesced_mmio::ENTRY_PIO), 0);
        assert_eq!(read_u32(&page, e + coalesced_mmio::ENTRY_DATA), u32::from_ne_bytes([1, 2, 3, 4]));
        // Fill: one entry stays free.
        let mut n = 1;
        while ring_append(&page, 0x2000, &[9]) {
            n += 1;
        }
        assert_eq!(n, max - 1);
        assert_eq!(read_u32(&page, coalesced_mmio::RING_LAST), max - 1);
        // Userspace consumes everything: the ring wraps.
        write_u32(&page, coalesced_mmio::RING_FIRST, max - 1);
        assert!(ring_append(&page, 0x3000, &[7; 8]));
        assert_eq!(read_u32(&page, coalesced_mmio::RING_LAST), 0);
        // A malicious `last`: nothing is written.
        for bad in [max, u32::MAX] {
            write_u32(&page, coalesced_mmio::RING_LAST, bad);
            assert!(!ring_append(&page, 0x4000, &[1]));
            assert_eq!(read_u32(&page, coalesced_mmio::RING_LAST), bad);
        }
        // More than 8 bytes is never appended.
        write_u32(&page, coalesced_mmio::RING_LAST, 0);
        assert!(!ring_append(&page, 0x4000, &[0; 9]));
    }

    #[test]
    fn zones_with_kvvec() {
        let mut r: Zones<KernelAlloc> = Zones::new();
        assert_eq!(r.register(&Zone { addr: 0x1000, size: 0x100, pio: 0 }), Ok(()));
        assert_eq!(r.register(&Zone { addr: 0x1000, size: 0x100, pio: 2 }), Err(Errno::EINVAL));
        assert!(r.mmio_hit(0x1010, 8));
        assert_eq!(r.unregister(&Zone { addr: 0x1010, size: 8, pio: 0 }), Ok(()));
        assert!(!r.mmio_hit(0x1010, 8));
        for i in 0..coalesced_mmio::NR_IOBUS_DEVS as u64 {
            assert_eq!(r.register(&Zone { addr: 8 * i, size: 8, pio: 0 }), Ok(()));
        }
        assert_eq!(r.register(&Zone { addr: 0, size: 8, pio: 0 }), Err(Errno::ENOSPC));
    }
}
