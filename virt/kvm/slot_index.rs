// SPDX-License-Identifier: GPL-2.0

//! A copy of a VM's memslots that can be read under a spinlock.
//!
//! Pure logic, built into the module and tested on the host.
//!
//! [`Memslots`] is changed under the VM's `slots` mutex and allocates while
//! it changes, so code that must not sleep cannot use it: MMU-notifier
//! callbacks (which may run where blocking is forbidden) and the stage-2
//! fault path under `mmu_lock`. Upstream reads its memslots under SRCU in
//! those places; kvm_rs keeps this read-only copy next to the stage-2 page
//! tables under `mmu_lock` instead. It is rebuilt (allocating, outside the
//! lock) after every memslot change and swapped in under the lock, once no
//! MMU-notifier invalidation is between its start and end (see
//! [`super::mmu_invalidate::NotifierGate`]), as upstream's
//! `kvm_swap_active_memslots()`.
//!
//! Lookups by gfn are binary searches (slots never overlap in gfn space);
//! hva ranges are scanned linearly (slots may overlap in hva space, and
//! hva walks only come from MMU notifiers).

use super::{
    abi::Errno,
    memslot::{
        Memslot,
        Memslots,
        KVM_MEMSLOT_INVALID, //
    },
    storage::{
        Alloc,
        Storage, //
    },
};

/// The memslots of one address space, sorted by `base_gfn`.
///
/// Invariant: `slots` is sorted by `base_gfn` and the gfn ranges of its
/// slots do not overlap (they come from a [`Memslots`], which enforces it).
pub(crate) struct SlotIndex<A: Alloc> {
    slots: A::Vec<Memslot>,
    page_shift: u32,
}

impl<A: Alloc> SlotIndex<A> {
    /// An index without slots, for pages of `1 << page_shift` bytes.
    pub(crate) fn new(page_shift: u32) -> Self {
        Self { slots: A::new_vec(), page_shift }
    }

    /// Copies every slot of `memslots` (INVALID ones included: they must
    /// still be seen by invalidations, and faults skip them).
    #[cfg(test)]
    pub(crate) fn build(memslots: &Memslots<A>) -> Result<Self, Errno> {
        let mut ix = Self::new(memslots.limits().page_shift);
        ix.refill(memslots)?;
        Ok(ix)
    }

    /// Replaces the contents with the slots of `memslots`. Allocates only
    /// when they do not fit the capacity.
    pub(crate) fn refill(&mut self, memslots: &Memslots<A>) -> Result<(), Errno> {
        self.slots.clear();
        self.page_shift = memslots.limits().page_shift;
        let mut err = Ok(());
        // `for_each` walks in gfn order, which keeps the invariant.
        memslots.for_each(&mut |s: &Memslot| {
            if err.is_ok() {
                err = self.slots.try_push(*s);
            }
        });
        if err.is_err() {
            // Never leave a partial copy behind.
            self.slots.clear();
        }
        err
    }

    /// Marks slot `id` INVALID (`KVM_MEMSLOT_INVALID`) or valid again: an
    /// INVALID slot is not used by faults, invalidations still see it.
    /// Does not allocate.
    pub(crate) fn set_invalid(&mut self, id: u16, invalid: bool) {
        for s in self.slots.as_mut_slice() {
            if s.id == id {
                if invalid {
                    s.flags |= KVM_MEMSLOT_INVALID;
                } else {
                    s.flags &= !KVM_MEMSLOT_INVALID;
                }
            }
        }
    }

    /// Makes room for one more slot, so that the next [`Self::apply`]
    /// cannot fail.
    pub(crate) fn reserve_one(&mut self) -> Result<(), Errno> {
        self.slots.try_reserve(1)
    }

    /// Applies one memslot change, as the [`Memslots`] it mirrors made it:
    /// removes the slot with `old`'s id (if any) and inserts `new` (if any)
    /// in gfn order. O(log n) plus moving the entries after the position
    /// (nothing for slots added in increasing gfn order). Fails only with
    /// `ENOMEM`, before changing anything, when there is no room for `new`.
    pub(crate) fn apply(&mut self, old: Option<&Memslot>, new: Option<&Memslot>) -> Result<(), Errno> {
        if new.is_some() {
            self.slots.try_reserve(1)?;
        }
        if let Some(o) = old {
            if let Some(i) = self.slots.as_slice().iter().position(|s| s.id == o.id) {
                if let Some(tail) = self.slots.as_mut_slice().get_mut(i..) {
                    tail.rotate_left(1);
                }
                self.slots.pop();
            }
        }
        if let Some(n) = new {
            let i = self.slots.as_slice().partition_point(|s| s.base_gfn < n.base_gfn);
            // Room was reserved above: this push does not allocate.
            self.slots.try_push(*n)?;
            if let Some(tail) = self.slots.as_mut_slice().get_mut(i..) {
                tail.rotate_right(1);
            }
        }
        Ok(())
    }

    /// The number of slots.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The slot containing `gfn`, INVALID ones included.
    pub(crate) fn lookup(&self, gfn: u64) -> Option<&Memslot> {
        let slots = self.slots.as_slice();
        // The first slot starting after `gfn`; the candidate is the one
        // before it.
        let after = slots.partition_point(|s| s.base_gfn <= gfn);
        let i = after.checked_sub(1)?;
        slots.get(i).filter(|s| s.contains(gfn))
    }

    /// `gfn_to_hva_memslot_prot()` for a fault: the hva of `gfn` and
    /// whether the slot may be written. `None` when no usable slot holds
    /// `gfn` (none, or an INVALID one being deleted or moved): the access
    /// is MMIO.
    pub(crate) fn gfn_to_hva_prot(&self, gfn: u64) -> Option<(u64, bool, &Memslot)> {
        let s = self.lookup(gfn).filter(|s| !s.is_invalid())?;
        let offset = (gfn - s.base_gfn).checked_shl(self.page_shift)?;
        let hva = s.userspace_addr.checked_add(offset)?;
        Some((hva, !s.is_readonly(), s))
    }

    /// The hva→gfn walk of `kvm_handle_hva_range()`, as
    /// [`Memslots::for_each_in_hva_range`] (same arguments and results).
    pub(crate) fn for_each_in_hva_range(&self, start: u64, end: u64, f: &mut impl FnMut(&Memslot, u64, u64)) {
        if end <= start {
            return;
        }
        for s in self.slots.as_slice() {
            if let Some((gs, ge)) = hva_range_gfns(s, self.page_shift, start, end) {
                f(s, gs, ge);
            }
        }
    }

    /// Whether some slot's userspace range meets `[start, end)`.
    pub(crate) fn meets_hva_range(&self, start: u64, end: u64) -> bool {
        end > start
            && self
                .slots
                .as_slice()
                .iter()
                .any(|s| hva_range_gfns(s, self.page_shift, start, end).is_some())
    }
}

/// The gfns of slot `s` whose pages intersect the hva range `[start, end)`,
/// as `[gfn_start, gfn_end)`, or `None` when the slot's userspace range does
/// not meet it. The last partial page counts (upstream's
/// `hva_to_gfn_memslot(hva_end + PAGE_SIZE - 1)`).
pub(crate) fn hva_range_gfns(s: &Memslot, page_shift: u32, start: u64, end: u64) -> Option<(u64, u64)> {
    let shift = page_shift.min(63);
    let slot_end = s
        .npages
        .checked_shl(shift)
        .and_then(|b| s.userspace_addr.checked_add(b))
        .unwrap_or(u64::MAX);
    if end <= start || s.userspace_addr >= end || slot_end <= start {
        return None;
    }
    let hva_start = start.max(s.userspace_addr);
    let hva_end = end.min(slot_end);
    let page_mask = (1u64 << shift) - 1;
    let to_gfn = |hva: u64| s.base_gfn.saturating_add(hva.saturating_sub(s.userspace_addr) >> shift);
    let gfn_end = to_gfn(hva_end).saturating_add(u64::from(hva_end & page_mask != 0));
    Some((to_gfn(hva_start), gfn_end))
}

#[cfg(test)]
mod host_tests {
    use super::*;
    use crate::memslot::host_tests::{
        limits,
        region,
        set_v2,
        Set,
        PAGE, //
    };
    use crate::storage::StdAlloc;

    fn walk_memslots(m: &Set, start: u64, end: u64) -> Vec<(u16, u64, u64)> {
        let mut v = Vec::new();
        m.for_each_in_hva_range(start, end, &mut |s, a, b| v.push((s.id, a, b)));
        v.sort();
        v
    }

    fn walk_index(ix: &SlotIndex<StdAlloc>, start: u64, end: u64) -> Vec<(u16, u64, u64)> {
        let mut v = Vec::new();
        ix.for_each_in_hva_range(start, end, &mut |s, a, b| v.push((s.id, a, b)));
        v.sort();
        v
    }

    #[test]
    fn matches_memslots_lookups() {
        let mut m = Set::new(limits());
        // Slots 0 and 2 share host memory (overlapping hvas are allowed).
        set_v2(&mut m, region(0, 0, 0x10_0000, 16 * PAGE, 0x7000_0000)).unwrap();
        set_v2(&mut m, region(1, 0, 0x100_0000, 4 * PAGE, 0x7100_0000)).unwrap();
        set_v2(&mut m, region(2, 2, 0x40_0000, 8 * PAGE, 0x7000_4000)).unwrap();
        let ix = SlotIndex::<StdAlloc>::build(&m).unwrap();
        assert_eq!(ix.len(), 3);
        for gfn in [0u64, 0xff, 0x100, 0x10f, 0x110, 0x400, 0x407, 0x408, 0x1000, 0x1003, 0x1004, u64::MAX] {
            assert_eq!(ix.lookup(gfn).map(|s| s.id), m.gfn_to_memslot(gfn).map(|s| s.id), "gfn {gfn:#x}");
            let want = m.gfn_to_hva_prot(gfn).ok();
            assert_eq!(ix.gfn_to_hva_prot(gfn).map(|(h, w, _)| (h, w)), want, "gfn {gfn:#x}");
        }
        for (a, b) in [
            (0u64, u64::MAX),
            (0x7000_0000, 0x7000_0001),
            (0x7000_3fff, 0x7000_4001),
            (0x7000_4000, 0x7000_5000),
            (0x7000_f000, 0x7100_1000),
            (0x7100_4000, 0x7200_0000),
            (5, 5),
            (9, 3),
        ] {
            assert_eq!(walk_index(&ix, a, b), walk_memslots(&m, a, b), "[{a:#x}, {b:#x})");
            assert_eq!(ix.meets_hva_range(a, b), !walk_memslots(&m, a, b).is_empty());
        }
        // Slot 2 is read-only (flags 2 = KVM_MEM_READONLY).
        assert_eq!(ix.gfn_to_hva_prot(0x400).map(|(_, w, _)| w), Some(false));
    }

    #[test]
    fn invalid_slots_are_mmio_but_still_invalidated() {
        let mut m = Set::new(limits());
        set_v2(&mut m, region(0, 0, 0x10_0000, 16 * PAGE, 0x7000_0000)).unwrap();
        set_v2(&mut m, region(1, 0, 0x20_0000, 16 * PAGE, 0x7100_0000)).unwrap();
        let mut ix = SlotIndex::<StdAlloc>::new(12);
        ix.refill(&m).unwrap();
        ix.set_invalid(0, true);
        assert!(ix.lookup(0x100).is_some_and(|s| s.is_invalid()));
        assert!(ix.gfn_to_hva_prot(0x100).is_none());
        assert_eq!(ix.gfn_to_hva_prot(0x200).map(|(h, w, _)| (h, w)), Some((0x7100_0000, true)));
        assert!(ix.meets_hva_range(0x7000_0000, 0x7000_1000));
        ix.set_invalid(0, false);
        assert!(ix.gfn_to_hva_prot(0x100).is_some());
    }

    #[test]
    fn refill_failure_leaves_no_partial_copy() {
        use crate::storage::BudgetAlloc;
        let mut m = crate::memslot::Memslots::<BudgetAlloc>::new(limits());
        BudgetAlloc::set_budget(usize::MAX);
        for i in 0..4u32 {
            let gpa = 0x10_0000 * (u64::from(i) + 1);
            m.set_memory_region(
                crate::memslot::RegionIoctl::V2,
                &region(i, 0, gpa, PAGE, 0x7000_0000 + gpa),
                &mut crate::memslot::NoHooks,
            )
            .unwrap();
        }
        let mut ix = SlotIndex::<BudgetAlloc>::new(12);
        ix.refill(&m).unwrap();
        assert_eq!(ix.len(), 4);
        // Allocation failing after two slots: an error, and no partial copy.
        BudgetAlloc::set_budget(2);
        let r = ix.refill(&m);
        BudgetAlloc::set_budget(usize::MAX);
        assert_eq!(r, Err(Errno::ENOMEM));
        assert_eq!(ix.len(), 0);
    }

    /// Random changes applied to a `Memslots` and, one by one, to an
    /// index: the index always equals a fresh copy.
    #[test]
    fn applied_changes_match_a_rebuild() {
        use crate::memslot::{
            Change,
            MemslotHooks, //
        };
        struct Rec(Option<(Option<Memslot>, Option<Memslot>)>);
        impl MemslotHooks for Rec {
            fn prepare(&mut self, _: Option<&Memslot>, _: Option<&Memslot>, _: Change) -> Result<(), Errno> {
                Ok(())
            }
            fn flush_shadow(&mut self, _: &Memslot) {}
            fn commit(&mut self, old: Option<&Memslot>, new: Option<&Memslot>, _: Change) {
                self.0 = Some((old.copied(), new.copied()));
            }
        }
        let mut m = Set::new(limits());
        let mut ix = SlotIndex::<StdAlloc>::new(12);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..3000 {
            let slot = rnd(24) as u32;
            let size = if rnd(4) == 0 { 0 } else { (1 + rnd(4)) * PAGE };
            let gpa = rnd(64) * 0x10_0000;
            let flags = if rnd(3) == 0 { 1 } else { 0 };
            let mut rec = Rec(None);
            let r = m.set_memory_region(
                crate::memslot::RegionIoctl::V2,
                &region(slot, flags, gpa, size, 0x7000_0000 + rnd(16) * 0x10_0000),
                &mut rec,
            );
            if let (Ok(Some(_)), Some((old, new))) = (r, rec.0) {
                ix.apply(old.as_ref(), new.as_ref()).unwrap();
            }
            let fresh = SlotIndex::<StdAlloc>::build(&m).unwrap();
            assert_eq!(ix.slots, fresh.slots);
        }
    }

    #[test]
    fn empty_and_edge_gfns() {
        let m = Set::new(limits());
        let ix = SlotIndex::<StdAlloc>::build(&m).unwrap();
        assert!(ix.lookup(0).is_none() && ix.lookup(u64::MAX).is_none());
        assert!(!ix.meets_hva_range(0, u64::MAX));
        let ix = SlotIndex::<StdAlloc>::new(12);
        assert_eq!(ix.len(), 0);
    }
}
