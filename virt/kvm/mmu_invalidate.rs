// SPDX-License-Identifier: GPL-2.0

//! The MMU-notifier invalidation protocol between the primary MMU (host
//! page tables) and stage-2 faults.
//!
//! Pure logic, built into the module and tested on the host. It mirrors
//! upstream:
//!
//! - `kvm_mmu_invalidate_start()`, `kvm_mmu_invalidate_range_add()`,
//!   `kvm_mmu_invalidate_end()` (`virt/kvm/kvm_main.c`): the sequence
//!   number, the in-progress count and the accumulated gfn range;
//! - `mmu_invalidate_retry()` and `mmu_invalidate_retry_gfn()`
//!   (`include/linux/kvm_host.h`): the fault-side check;
//! - `kvm_mmu_notifier_invalidate_range_start/end()` and
//!   `kvm_handle_hva_range()`: an hva range is turned into per-slot gfn
//!   ranges, and the in-progress count moves only if some slot matched;
//! - `mn_active_invalidate_count` and the wait in
//!   `kvm_swap_active_memslots()`: memslots must not change while a
//!   notifier invalidation is between start and end, else the conditional
//!   start/end above would be unbalanced.
//!
//! # The protocol
//!
//! A stage-2 fault on `gfn`:
//!
//! 1. reads `seq = inv.seq()` (under `mmu_lock`, or with acquire
//!    ordering), *before* looking up the memslot and the host page;
//! 2. resolves the host page (may sleep, no lock held);
//! 3. takes `mmu_lock`; if `inv.retry_gfn(seq, gfn)` it drops the page and
//!    starts over, else it installs the mapping, then unlocks.
//!
//! An invalidation takes `mmu_lock` for writing to call `begin()` and
//! `range_add()` and zap the stage-2 entries, lets the primary MMU change
//! the pages, then takes `mmu_lock` again for `end()`, which bumps the
//! sequence. So a fault that resolved its page before or during the
//! invalidation either finds the invalidation in progress over its gfn or
//! finds the sequence changed, and never installs a stale page.
//!
//! `MmuInvalidate` is protected by the VM's `mmu_lock`; [`NotifierGate`]
//! by `mn_invalidate_lock` (a spinlock), as upstream.


use super::abi::Errno;
use super::memslot::Memslots;
use super::storage::Alloc;

/// "No range yet" (upstream reuses `INVALID_GPA`).
pub(crate) const INVALID_GFN: u64 = u64::MAX;

/// Invalidation state of one VM.
///
/// Invariants: `range_start == range_end == INVALID_GFN` or
/// `range_start <= range_end`; the range only matters while
/// `in_progress > 0`, and it only grows until `in_progress` drops to 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmuInvalidate {
    seq: u64,
    in_progress: u32,
    range_start: u64,
    range_end: u64,
}

impl Default for MmuInvalidate {
    fn default() -> Self {
        Self::new()
    }
}

impl MmuInvalidate {
    /// No invalidation yet, sequence 0.
    pub(crate) const fn new() -> Self {
        Self {
            seq: 0,
            in_progress: 0,
            range_start: INVALID_GFN,
            range_end: INVALID_GFN,
        }
    }

    /// `mmu_invalidate_seq`: what a fault records before resolving its page.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// `mmu_invalidate_in_progress`.
    pub(crate) fn in_progress(&self) -> u32 {
        self.in_progress
    }

    /// The accumulated `[start, end)` gfn range, if one was added.
    pub(crate) fn range(&self) -> Option<(u64, u64)> {
        if self.range_start == INVALID_GFN {
            None
        } else {
            Some((self.range_start, self.range_end))
        }
    }

    /// `kvm_mmu_invalidate_start()`: one more invalidation in progress; the
    /// first one resets the range.
    pub(crate) fn begin(&mut self) {
        self.in_progress = self.in_progress.saturating_add(1);
        if self.in_progress == 1 {
            self.range_start = INVALID_GFN;
            self.range_end = INVALID_GFN;
        }
    }

    /// `kvm_mmu_invalidate_range_add()`: widens the range to cover
    /// `[start, end)` (the minimal range containing all concurrent ones).
    /// Returns false, changing nothing, outside an invalidation (a KVM bug
    /// upstream warns about) or for an empty range.
    pub(crate) fn range_add(&mut self, start: u64, end: u64) -> bool {
        if self.in_progress == 0 || end <= start {
            return false;
        }
        if self.range_start == INVALID_GFN {
            self.range_start = start;
            self.range_end = end;
        } else {
            self.range_start = self.range_start.min(start);
            self.range_end = self.range_end.max(end);
        }
        true
    }

    /// `kvm_mmu_invalidate_end()`: bumps the sequence, then ends one
    /// invalidation. Without one in progress it changes nothing and fails
    /// with `EIO` (upstream's `KVM_BUG_ON`: the glue marks the VM bugged).
    pub(crate) fn end(&mut self) -> Result<(), Errno> {
        if self.in_progress == 0 {
            return Err(Errno::EIO);
        }
        self.seq = self.seq.wrapping_add(1);
        self.in_progress -= 1;
        Ok(())
    }

    /// `mmu_invalidate_retry()`: whether a fault that recorded `seq` must
    /// retry, whatever its gfn.
    pub(crate) fn retry(&self, seq: u64) -> bool {
        self.in_progress != 0 || self.seq != seq
    }

    /// `mmu_invalidate_retry_gfn()`: whether a fault on `gfn` that recorded
    /// `seq` must retry: an invalidation covering `gfn` is in progress, or
    /// one ended since `seq` was read. An in-progress invalidation with no
    /// range yet counts as covering everything (upstream warns and retries).
    pub(crate) fn retry_gfn(&self, seq: u64, gfn: u64) -> bool {
        if self.in_progress != 0 {
            if self.range_start == INVALID_GFN {
                return true;
            }
            if gfn >= self.range_start && gfn < self.range_end {
                return true;
            }
        }
        self.seq != seq
    }

    /// An invalidation of one gfn range in one go (begin, add, `zap`,
    /// end), for zaps KVM starts itself: the glue runs the stage-2 zap of a
    /// deleted or moved memslot through it, so faults that looked up the
    /// old slot retry (see `memslot.rs`).
    pub(crate) fn invalidate_gfn_range(&mut self, start: u64, end: u64, zap: impl FnOnce(u64, u64)) {
        self.begin();
        self.range_add(start, end);
        zap(start, end);
        // Cannot fail: begin() made in_progress non-zero.
        let _ = self.end();
    }
}

/// `mn_active_invalidate_count`: MMU-notifier invalidations between their
/// start and end, which memslot updates wait for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NotifierGate {
    active: u32,
}

impl NotifierGate {
    /// At the top of `invalidate_range_start`.
    pub(crate) fn start(&mut self) {
        self.active = self.active.saturating_add(1);
    }

    /// At the bottom of `invalidate_range_end`. Returns true when the count
    /// drops to 0: wake the memslot updater waiting in
    /// [`Self::memslots_may_change`]. An unbalanced end (upstream
    /// `WARN_ON_ONCE`) leaves the count at 0.
    pub(crate) fn end(&mut self) -> bool {
        if self.active == 0 {
            return true;
        }
        self.active -= 1;
        self.active == 0
    }

    /// Whether a memslot update may be published now (else wait for the
    /// wake-up from [`Self::end`]).
    pub(crate) fn memslots_may_change(&self) -> bool {
        self.active == 0
    }
}

/// The memslot sets a notifier walks by host virtual address: the
/// [`Memslots`] themselves, or their lock-free copy
/// ([`super::slot_index::SlotIndex`]).
pub(crate) trait HvaWalk {
    /// For every slot meeting `[start, end)`: `f(slot, gfn_start, gfn_end)`
    /// (see [`Memslots::for_each_in_hva_range`]).
    fn walk_hva_range(&self, start: u64, end: u64, f: &mut impl FnMut(&super::memslot::Memslot, u64, u64));
}

impl<A: Alloc> HvaWalk for Memslots<A> {
    fn walk_hva_range(&self, start: u64, end: u64, f: &mut impl FnMut(&super::memslot::Memslot, u64, u64)) {
        self.for_each_in_hva_range(start, end, f)
    }
}

impl<A: Alloc> HvaWalk for super::slot_index::SlotIndex<A> {
    fn walk_hva_range(&self, start: u64, end: u64, f: &mut impl FnMut(&super::memslot::Memslot, u64, u64)) {
        self.for_each_in_hva_range(start, end, f)
    }
}

/// What one notifier invalidation found, to pass from start to end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NotifierRange {
    /// Some memslot met the hva range: `begin()` was called and `end()`
    /// must be (`kvm_mmu_notifier_return.found_memslot`).
    pub(crate) found_memslot: bool,
    /// Some `unmap` call asked for a TLB flush.
    pub(crate) flush: bool,
}

/// `kvm_mmu_notifier_invalidate_range_start()` for the hva range
/// `[start, end)`: `gate.start()`, then for each memslot meeting the range,
/// the first one under `begin()`, `range_add()` its gfns and
/// `unmap(slot, gfn_start, gfn_end)` (returns whether to flush TLBs).
/// `mmu_lock` (for `inv`) must be held by the caller while this runs.
pub(crate) fn notifier_range_start(
    gate: &mut NotifierGate,
    inv: &mut MmuInvalidate,
    slots: &impl HvaWalk,
    start: u64,
    end: u64,
    unmap: &mut impl FnMut(&super::memslot::Memslot, u64, u64) -> bool,
) -> NotifierRange {
    gate.start();
    let mut r = NotifierRange::default();
    slots.walk_hva_range(start, end, &mut |slot, gs, ge| {
        if !r.found_memslot {
            r.found_memslot = true;
            inv.begin();
        }
        inv.range_add(gs, ge);
        r.flush |= unmap(slot, gs, ge);
    });
    r
}

/// `kvm_mmu_notifier_invalidate_range_end()`: `end()` if the start found a
/// memslot (the memslots cannot have changed meanwhile, see
/// [`NotifierGate`]), then `gate.end()`. Returns whether to wake a waiting
/// memslot updater.
pub(crate) fn notifier_range_end(
    gate: &mut NotifierGate,
    inv: &mut MmuInvalidate,
    started: NotifierRange,
) -> Result<bool, Errno> {
    let r = if started.found_memslot { inv.end() } else { Ok(()) };
    let wake = gate.end();
    r.map(|()| wake)
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
    use crate::memslot::Change;

    #[test]
    fn sequence_and_count() {
        let mut inv = MmuInvalidate::new();
        assert_eq!((inv.seq(), inv.in_progress(), inv.range()), (0, 0, None));
        assert!(!inv.range_add(0, 10)); // outside an invalidation
        inv.begin();
        assert!(inv.range_add(10, 20));
        assert!(!inv.range_add(30, 30)); // empty
        assert_eq!(inv.range(), Some((10, 20)));
        assert_eq!(inv.end(), Ok(()));
        assert_eq!((inv.seq(), inv.in_progress()), (1, 0));
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
        // One still runs: the union stays, including the gap and the ended one.
        let seq = inv.seq();
        assert!(inv.retry_gfn(seq, 50));
        assert!(inv.retry_gfn(seq, 105));
        assert!(!inv.retry_gfn(seq, 110));
        assert!(inv.retry_gfn(seq, 10)); // the start is included
        assert!(!inv.retry_gfn(seq, 9));
        assert_eq!(inv.end(), Ok(()));
        // A new first invalidation resets the range.
        inv.begin();
        assert_eq!(inv.range(), None);
        inv.range_add(500, 501);
        assert_eq!(inv.range(), Some((500, 501)));
    }

    #[test]
    fn retry_rules() {
        let mut inv = MmuInvalidate::new();
        let seq = inv.seq();
        assert!(!inv.retry(seq) && !inv.retry_gfn(seq, 5));
        inv.begin();
        // In progress, no range yet: everything retries.
        assert!(inv.retry(seq) && inv.retry_gfn(seq, 5));
        inv.range_add(0, 4);
        assert!(inv.retry(seq));
        assert!(inv.retry_gfn(seq, 3));
        assert!(!inv.retry_gfn(seq, 4));
        inv.end().unwrap();
        // Ended after the fault read seq: everyone retries.
        assert!(inv.retry_gfn(seq, 4));
        assert!(!inv.retry_gfn(inv.seq(), 4));
        assert!(!inv.retry(inv.seq()));
    }

    /// One fault on `gfn` racing one or two invalidations, every
    /// interleaving. The fault: F0 reads seq, F1 reads the host page
    /// (version), F2 checks and installs. An invalidation of `[s, e)`: I0
    /// start (begin, range_add, zap), I1 the primary MMU changes the page
    /// if it covers the gfn, I2 end.
    #[derive(Clone)]
    struct World {
        inv: MmuInvalidate,
        version: u64,
        stage2: Option<u64>,
        seq: u64,
        page: u64,
        retried: bool,
    }

    fn run(order: &[usize], gfn: u64, ranges: &[(u64, u64)]) -> World {
        let mut w = World {
            inv: MmuInvalidate::new(),
            version: 0,
            stage2: None,
            seq: 0,
            page: 0,
            retried: false,
        };
        let mut pc = std::vec![0usize; ranges.len() + 1];
        for &actor in order {
            let step = pc[actor];
            pc[actor] += 1;
            if actor == 0 {
                match step {
                    0 => w.seq = w.inv.seq(),
                    1 => w.page = w.version,
                    _ => {
                        if w.inv.retry_gfn(w.seq, gfn) {
                            w.retried = true;
                        } else {
                            w.stage2 = Some(w.page);
                        }
                    }
                }
            } else {
                let (s, e) = ranges[actor - 1];
                let covers = gfn >= s && gfn < e;
                match step {
                    0 => {
                        w.inv.begin();
                        w.inv.range_add(s, e);
                        if covers {
                            w.stage2 = None;
                        }
                    }
                    1 => {
                        if covers {
                            w.version += 1;
                        }
                    }
                    _ => w.inv.end().unwrap(),
                }
            }
        }
        w
    }

    /// All interleavings of `n` actors doing 3 steps each.
    fn interleavings(n: usize) -> std::vec::Vec<std::vec::Vec<usize>> {
        fn rec(left: &mut [usize], cur: &mut std::vec::Vec<usize>, out: &mut std::vec::Vec<std::vec::Vec<usize>>) {
            if left.iter().all(|&l| l == 0) {
                out.push(cur.clone());
                return;
            }
            for a in 0..left.len() {
                if left[a] > 0 {
                    left[a] -= 1;
                    cur.push(a);
                    rec(left, cur, out);
                    cur.pop();
                    left[a] += 1;
                }
            }
        }
        let mut out = std::vec::Vec::new();
        rec(&mut std::vec![3; n], &mut std::vec::Vec::new(), &mut out);
        out
    }

    #[test]
    fn no_interleaving_installs_a_stale_page() {
        let all = interleavings(2);
        assert_eq!(all.len(), 20);
        for order in &all {
            let w = run(order, 7, &[(5, 10)]);
            assert!(w.stage2.is_none() || w.stage2 == Some(w.version), "{order:?}");
            // The fault installs only if the invalidation was entirely
            // before F0, or its start came after F2.
            let pos = |a: usize, k: usize| order.iter().enumerate().filter(|(_, &x)| x == a).nth(k).map(|(i, _)| i);
            let before = pos(1, 2) < pos(0, 0);
            let after = pos(1, 0) > pos(0, 2);
            assert_eq!(!w.retried, before || after, "{order:?}");
        }
    }

    #[test]
    fn two_invalidations_never_leave_stale_mappings() {
        let all = interleavings(3);
        assert_eq!(all.len(), 1680);
        for ranges in [[(5u64, 10u64), (0, 100)], [(5, 10), (20, 30)], [(20, 30), (40, 50)]] {
            for order in &all {
                let w = run(order, 7, &ranges);
                assert!(w.stage2.is_none() || w.stage2 == Some(w.version), "{order:?} {ranges:?}");
            }
        }
    }

    #[test]
    fn unrelated_in_progress_invalidation_does_not_block_a_fault() {
        // Invalidation of [20, 30) started before the fault and still runs:
        // a fault on gfn 7 installs (no end happened in between).
        let w = run(&[1, 0, 0, 1, 0, 1], 7, &[(20, 30)]);
        assert!(!w.retried);
        assert_eq!(w.stage2, Some(0));
        // ... but if it ends between F0 and F2, the fault retries anyway.
        let w = run(&[1, 0, 0, 1, 1, 0], 7, &[(20, 30)]);
        assert!(w.retried);
    }

    #[test]
    fn notifier_start_end_follow_memslots() {
        let mut s = Set::new(limits());
        assert_eq!(set_v2(&mut s, region(0, 0, 0x100 * PAGE, 16 * PAGE, 0x100000)), Ok(Some(Change::Create)));
        assert_eq!(set_v2(&mut s, region(1, 0, 0x800 * PAGE, 4 * PAGE, 0x108000)), Ok(Some(Change::Create)));
        let (mut gate, mut inv) = (NotifierGate::default(), MmuInvalidate::new());
        let mut unmapped = std::vec::Vec::new();
        // hva 0x108800..0x109000 is gfn 0x108 of slot 0 and gfn 0x800 of slot 1.
        let r = notifier_range_start(&mut gate, &mut inv, &s, 0x108800, 0x109000, &mut |sl, a, b| {
            unmapped.push((sl.id, a, b));
            true
        });
        assert_eq!(r, NotifierRange { found_memslot: true, flush: true });
        assert_eq!(unmapped, [(0, 0x108, 0x109), (1, 0x800, 0x801)]);
        assert_eq!(inv.in_progress(), 1);
        assert_eq!(inv.range(), Some((0x108, 0x801)));
        assert!(!gate.memslots_may_change());
        assert_eq!(notifier_range_end(&mut gate, &mut inv, r), Ok(true));
        assert_eq!((inv.in_progress(), inv.seq()), (0, 1));
        assert!(gate.memslots_may_change());

        // An hva range without memslots: no begin/end, sequence unchanged.
        let r = notifier_range_start(&mut gate, &mut inv, &s, 0x900000, 0x901000, &mut |_, _, _| true);
        assert_eq!(r, NotifierRange::default());
        assert_eq!(inv.in_progress(), 0);
        assert!(!gate.memslots_may_change());
        assert_eq!(notifier_range_end(&mut gate, &mut inv, r), Ok(true));
        assert_eq!(inv.seq(), 1);
    }

    #[test]
    fn gate_counts_nested_notifiers() {
        let mut g = NotifierGate::default();
        g.start();
        g.start();
        assert!(!g.end());
        assert!(!g.memslots_may_change());
        assert!(g.end());
        assert!(g.memslots_may_change());
        assert!(g.end()); // unbalanced: stays at 0
        assert!(g.memslots_may_change());
    }

    #[test]
    fn memslot_delete_bracketed_by_invalidation_makes_faults_retry() {
        let mut s = Set::new(limits());
        assert_eq!(set_v2(&mut s, region(0, 0, 0x100 * PAGE, 4 * PAGE, 0x100000)), Ok(Some(Change::Create)));
        let mut inv = MmuInvalidate::new();
        // A fault reads seq and looks up the slot...
        let seq = inv.seq();
        assert_eq!(s.gfn_to_hva(0x101), Ok(0x101000));
        // ... the slot is deleted; the zap runs as an invalidation ...
        struct Zap<'a>(&'a mut MmuInvalidate, bool);
        impl crate::memslot::MemslotHooks for Zap<'_> {
            fn prepare(
                &mut self,
                _: Option<&crate::memslot::Memslot>,
                _: Option<&crate::memslot::Memslot>,
                _: Change,
            ) -> Result<(), Errno> {
                Ok(())
            }
            fn flush_shadow(&mut self, old: &crate::memslot::Memslot) {
                let zapped = &mut self.1;
                self.0.invalidate_gfn_range(old.base_gfn, old.end_gfn(), |_, _| *zapped = true);
            }
            fn commit(&mut self, _: Option<&crate::memslot::Memslot>, _: Option<&crate::memslot::Memslot>, _: Change) {}
        }
        let mut zap = Zap(&mut inv, false);
        let m = region(0, 0, 0, 0, 0);
        assert_eq!(
            s.set_memory_region(crate::memslot::RegionIoctl::V2, &m, &mut zap),
            Ok(Some(Change::Delete))
        );
        assert!(zap.1);
        // ... so the fault must not install its stale translation.
        assert!(inv.retry_gfn(seq, 0x101));
        assert_eq!(inv.in_progress(), 0);
        // Retrying, it finds no slot.
        assert!(s.gfn_to_memslot(0x101).is_none());
    }
}
