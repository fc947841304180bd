// SPDX-License-Identifier: GPL-2.0

//! The VM's secondary MMU: `mmu_lock`, the MMU notifier, and the resolution
//! of a guest frame to a host page for a stage-2 fault.
//!
//! The arch's stage-2 page tables ([`Arch::Stage2`]) are a secondary MMU of
//! the VMM's address space, as upstream's. They are kept coherent with the
//! host page tables by three pieces, all under [`VmMmu`]'s spinlock
//! (`kvm->mmu_lock`):
//!
//! - a read-only copy of the memslots ([`SlotIndex`]) that callbacks which
//!   must not sleep can read;
//! - the invalidation sequence and range ([`MmuInvalidate`]) with the
//!   notifier gate ([`NotifierGate`]), see `mmu_invalidate.rs` for the
//!   protocol;
//! - an [`MmuNotifier`] on the VM's mm whose callbacks unmap and age
//!   stage-2 ranges through the [`Arch`] hooks.
//!
//! A stage-2 fault goes through [`VmMmu::resolve`] (may sleep, no lock
//! held) and then [`VmMmu::install`], which runs the arch's mapping code
//! under the lock only if no invalidation raced with the resolution.

// The stage-2 fault path has its callers in the arch backends' fault
// handlers, which come with the world switches.
#![allow(dead_code)]

use super::{
    abi::Errno,
    arch::Arch,
    kalloc::KernelAlloc,
    memslot::{
        Memslot,
        Memslots, //
    },
    mmu_invalidate::{
        notifier_range_end,
        notifier_range_start,
        MmuInvalidate,
        NotifierGate,
        NotifierRange, //
    },
    slot_index::SlotIndex,
};
use crate::arch::Host;
use kernel::{
    mm::{
        mmu_notifier::{
            MmuNotifier,
            MmuNotifierOps,
            Range, //
        },
        user_page::{
            PfnMapEntry,
            UserPageRef, //
        },
        virt::flags as vm_flags,
        Mm,
        MmWithUser, //
    },
    new_condvar,
    new_spinlock,
    page::PAGE_SHIFT,
    prelude::*,
    sync::{
        Arc,
        CondVar,
        SpinLock, //
    },
};

/// What `mmu_lock` protects.
pub(crate) struct MmuState {
    /// The memslots as faults and notifiers see them.
    slots: SlotIndex<KernelAlloc>,
    /// `mmu_invalidate_seq`, `_in_progress`, `_range_start/end`.
    inv: MmuInvalidate,
    /// `mn_active_invalidate_count` (upstream has a separate spinlock for
    /// it; one lock is enough here).
    gate: NotifierGate,
    /// The arch's stage-2 tables.
    stage2: <Host as Arch>::Stage2,
}

/// The stage-2 MMU of one VM, shared by the VM, its vCPUs and its MMU
/// notifier.
#[pin_data]
pub(crate) struct VmMmu {
    /// `kvm->mmu_lock`.
    #[pin]
    state: SpinLock<MmuState>,
    /// Memslot updates wait here for the notifier gate to open.
    #[pin]
    gate_open: CondVar,
}

/// A guest frame resolved to a host page, not mapped yet.
///
/// Holds a reference on the page (when it has a `struct page`) until it is
/// dropped, after the arch mapped it: the page cannot be freed in between,
/// and a racing invalidation makes [`VmMmu::install`] refuse the mapping.
pub(crate) struct HostPage {
    /// `mmu_invalidate_seq` read before the lookup.
    seq: u64,
    /// The guest frame.
    pub(crate) gfn: u64,
    /// The host virtual address of the frame's page.
    pub(crate) hva: u64,
    /// The memslot as the resolution found it (for the arch's huge-page
    /// decision: its gfn and hva ranges).
    pub(crate) slot: Memslot,
    /// The host page frame.
    pub(crate) pfn: usize,
    /// Whether the stage-2 mapping may be writable.
    pub(crate) writable: bool,
    /// Whether the slot logs dirty pages (map read-only first, or 4 KiB
    /// only, as the arch's dirty logging needs).
    pub(crate) dirty_logging: bool,
    /// Whether `pfn` is device memory without a `struct page` (a
    /// `VM_PFNMAP`/`VM_IO` mapping): map it uncached, never huge.
    pub(crate) pfnmap: bool,
    /// The page reference, `None` for `VM_PFNMAP` memory.
    page: Option<UserPageRef>,
}

impl HostPage {
    /// Marks the page dirty once it was mapped writable, so the primary
    /// MMU writes it back (`kvm_release_faultin_page(.., dirty)`).
    pub(crate) fn mark_dirty(&self) {
        if let Some(p) = &self.page {
            p.mark_dirty();
        }
    }
}

/// What a guest frame is backed by.
pub(crate) enum Resolution {
    /// No usable memslot (or a write to a read-only one): emulated MMIO.
    Mmio,
    /// A host page.
    Page(HostPage),
}

impl VmMmu {
    /// The MMU of a new VM: no slots, nothing mapped.
    pub(crate) fn new(stage2: <Host as Arch>::Stage2) -> impl PinInit<Self> {
        pin_init!(VmMmu {
            state <- new_spinlock!(MmuState {
                slots: SlotIndex::new(PAGE_SHIFT as u32),
                inv: MmuInvalidate::new(),
                gate: NotifierGate::default(),
                stage2,
            }),
            gate_open <- new_condvar!(),
        })
    }

    /// Runs `f` on the stage-2 tables under `mmu_lock`.
    pub(crate) fn with_stage2<R>(&self, f: impl FnOnce(&mut <Host as Arch>::Stage2) -> R) -> R {
        f(&mut self.state.lock().stage2)
    }

    /// Replaces the stage-2 tables (nothing may be mapped in them), freeing
    /// the old ones under the lock.
    pub(crate) fn replace_stage2(&self, stage2: <Host as Arch>::Stage2) {
        self.state.lock().stage2 = stage2;
    }

    /// Resolves `gfn` for a stage-2 fault (`kvm_faultin_pfn()` /
    /// `__gfn_to_pfn_memslot()`), in the VM's creator task (`KVM_RUN`
    /// checked that `current->mm` is the VM's).
    ///
    /// A write to a read-only slot, like a missing slot, is MMIO. For a
    /// read fault on a writable slot the page is mapped writable when it
    /// already is so in the host (saving a second fault), else read-only.
    /// Fails with `EFAULT` when the slot's memory is not mapped in the host
    /// (upstream's `KVM_PFN_ERR_FAULT`), `EHWPOISON` for a poisoned page.
    pub(crate) fn resolve(&self, mm: &MmWithUser, gfn: u64, write: bool) -> Result<Resolution> {
        let (seq, hva64, slot_writable, dirty_logging, slot) = {
            let st = self.state.lock();
            // Read the sequence before the slot and the page: see the
            // protocol in mmu_invalidate.rs.
            let seq = st.inv.seq();
            match st.slots.gfn_to_hva_prot(gfn) {
                Some((hva, w, slot)) => (seq, hva, w, slot.dirty_tracking(), *slot),
                None => return Ok(Resolution::Mmio),
            }
        };
        if write && !slot_writable {
            return Ok(Resolution::Mmio);
        }
        let hva = usize::try_from(hva64).map_err(|_| EFAULT)?;
        // Opportunistically writable for reads of writable slots, except
        // while dirty logging (which needs a write fault per page).
        let want_writable = write || (slot_writable && !dirty_logging);
        if let Some(page) = UserPageRef::get_fast_only(hva, want_writable) {
            return Ok(Resolution::Page(HostPage {
                seq,
                gfn,
                hva: hva64,
                slot,
                pfn: page.pfn(),
                writable: want_writable,
                dirty_logging,
                pfnmap: false,
                page: Some(page),
            }));
        }
        match UserPageRef::get_unlocked(hva, write) {
            Ok(page) => {
                return Ok(Resolution::Page(HostPage {
                    seq,
                    gfn,
                    hva: hva64,
                    slot,
                    pfn: page.pfn(),
                    writable: write,
                    dirty_logging,
                    pfnmap: false,
                    page: Some(page),
                }))
            }
            Err(e) if e != EFAULT => return Err(e),
            Err(_) => {}
        }
        // No `struct page` there: device memory mapped by a driver
        // (`hva_to_pfn_remapped()`), mapped on fault with no upfront work.
        let guard = mm.mmap_read_lock();
        let vma = guard.vma_lookup(hva).ok_or(EFAULT)?;
        if vma.flags() & (vm_flags::IO | vm_flags::PFNMAP) == 0 {
            return Err(EFAULT);
        }
        let entry = PfnMapEntry::lookup(vma, hva).map_err(|_| EFAULT)?;
        if write && !entry.writable {
            return Err(EFAULT);
        }
        Ok(Resolution::Page(HostPage {
            seq,
            gfn,
            hva: hva64,
            slot,
            pfn: entry.pfn,
            writable: entry.writable && slot_writable,
            dirty_logging,
            pfnmap: true,
            page: None,
        }))
    }

    /// The host virtual address of guest frame `gfn`, if a usable memslot
    /// backs it (writable if `write`): `kvm_vcpu_gfn_to_hva_prot()`.
    pub(crate) fn gfn_to_hva(&self, gfn: u64, write: bool) -> Option<u64> {
        let st = self.state.lock();
        let (hva, writable, _) = st.slots.gfn_to_hva_prot(gfn)?;
        if write && !writable {
            return None;
        }
        Some(hva)
    }

    /// Installs a resolved page: runs `map` on the stage-2 tables under
    /// `mmu_lock`, unless an invalidation covering the frame started or
    /// ended since [`Self::resolve`] read the sequence
    /// (`mmu_invalidate_retry_gfn()`). `None` means "raced, let the guest
    /// fault again".
    pub(crate) fn install<R>(
        &self,
        page: &HostPage,
        map: impl FnOnce(&mut <Host as Arch>::Stage2, &HostPage) -> R,
    ) -> Option<R> {
        let mut st = self.state.lock();
        if st.inv.retry_gfn(page.seq, page.gfn) {
            return None;
        }
        Some(map(&mut st.stage2, page))
    }

    /// Write-protects the stage-2 mappings of `[gfn_start, gfn_end)` for
    /// dirty logging (`kvm_arch_mmu_enable_log_dirty_pt_masked()`, the
    /// write-protect of `kvm_arch_commit_memory_region()`). The TLB flush
    /// is deferred: call [`Self::flush_wrprotected`] after the last one,
    /// before the ioctl returns.
    pub(crate) fn wrprotect(&self, gfn_start: u64, gfn_end: u64) {
        Host::stage2_wrprotect(&mut self.state.lock().stage2, gfn_start, gfn_end);
    }

    /// Flushes the guest TLBs after [`Self::wrprotect`]
    /// (`kvm_flush_remote_tlbs_memslot()`): afterwards every guest write to
    /// a write-protected page faults.
    pub(crate) fn flush_wrprotected(&self) {
        Host::stage2_flush_wrprotected(&mut self.state.lock().stage2);
    }

    /// A memslot is being deleted or moved (`kvm_arch_flush_shadow_memslot()`
    /// after `kvm_invalidate_memslot()`): faults stop using it at once, and
    /// its stage-2 mappings are zapped with the sequence bumped so that
    /// faults which resolved a page of it before retry.
    pub(crate) fn invalidate_slot(&self, old: &Memslot) {
        let mut st = self.state.lock();
        let st = &mut *st;
        st.slots.set_invalid(old.id, true);
        let stage2 = &mut st.stage2;
        st.inv
            .invalidate_gfn_range(old.base_gfn, old.end_gfn(), |s, e| Host::stage2_unmap(stage2, s, e));
    }

    /// A DELETE or MOVE failed after [`Self::invalidate_slot`]: the slot is
    /// back, usable by faults again.
    pub(crate) fn revalidate_slot(&self, id: u16) {
        self.state.lock().slots.set_invalid(id, false);
    }

    /// Swaps `index` with the one faults and notifiers use
    /// (`kvm_swap_active_memslots()`), once no notifier invalidation is
    /// between its start and end (their start and end must see the same
    /// slots).
    pub(crate) fn swap_index(&self, index: &mut SlotIndex<KernelAlloc>) {
        let mut st = self.state.lock();
        while !st.gate.memslots_may_change() {
            self.gate_open.wait(&mut st);
        }
        core::mem::swap(&mut st.slots, index);
    }

    /// Unmaps everything (`kvm_arch_flush_shadow_all()`), when the mm goes
    /// away or the VM is destroyed.
    fn flush_all(&self) {
        let mut st = self.state.lock();
        Host::stage2_unmap(&mut st.stage2, 0, u64::MAX);
    }
}

/// The inactive copy of the memslots (upstream's second memslot set), kept
/// under the VM's `slots` mutex. A memslot change is applied to it, it is
/// swapped with the active copy ([`VmMmu::swap_index`]), and the change is
/// applied to the copy that became inactive: O(log n) per change, where a
/// rebuild would be O(n) (32767 slots make that quadratic).
pub(crate) struct ShadowIndex {
    index: SlotIndex<KernelAlloc>,
    /// The copy missed a change (out of memory while applying it to the
    /// old active copy): rebuild it before the next change.
    stale: bool,
}

impl ShadowIndex {
    /// The copy of a VM without memslots.
    pub(crate) fn new() -> Self {
        Self { index: SlotIndex::new(PAGE_SHIFT as u32), stale: false }
    }

    /// Before a change to `slots`: brings the copy up to date and makes
    /// room, so that [`Self::commit`] cannot fail. Fails only with
    /// `ENOMEM`, before anything changed.
    pub(crate) fn prepare(&mut self, slots: &Memslots<KernelAlloc>) -> Result<(), Errno> {
        if self.stale {
            self.index.refill(slots)?;
            self.stale = false;
        }
        self.index.reserve_one()
    }

    /// After `slots` changed from `old` to `new`: publishes the change to
    /// faults and notifiers through `mmu`.
    pub(crate) fn commit(&mut self, mmu: &VmMmu, slots: &Memslots<KernelAlloc>, old: Option<&Memslot>, new: Option<&Memslot>) {
        if self.index.apply(old, new).is_err() {
            // Cannot happen after `prepare`; rebuild rather than publish a
            // wrong copy, and if even that fails keep the old copy (whose
            // deleted or moved slot is INVALID, so never mapped).
            if self.index.refill(slots).is_err() {
                self.stale = true;
                return;
            }
        }
        mmu.swap_index(&mut self.index);
        // This is now the old active copy: bring it to the same state.
        if self.index.apply(old, new).is_err() {
            self.stale = true;
        }
    }
}

/// The VM's MMU-notifier subscription (`kvm->mmu_notifier`).
pub(crate) struct Notifier(Arc<VmMmu>);

/// A registered [`Notifier`].
pub(crate) type VmNotifier = MmuNotifier<Notifier>;

impl Notifier {
    /// Registers on `mm` a notifier for `mmu` (`kvm_init_mmu_notifier()`).
    pub(crate) fn register(mm: &MmWithUser, mmu: Arc<VmMmu>) -> impl PinInit<VmNotifier, Error> + '_ {
        MmuNotifier::new(mm, Notifier(mmu))
    }

    /// Calls `f(stage2, gfn_start, gfn_end)` for every slot range that meets
    /// the hva range, under `mmu_lock`; returns `f`'s results or-ed.
    fn for_each_gfn_range(
        &self,
        start: usize,
        end: usize,
        mut f: impl FnMut(&mut <Host as Arch>::Stage2, u64, u64) -> bool,
    ) -> bool {
        let mut st = self.0.state.lock();
        let st = &mut *st;
        let stage2 = &mut st.stage2;
        let mut any = false;
        st.slots
            .for_each_in_hva_range(start as u64, end as u64, &mut |_, s, e| any |= f(stage2, s, e));
        any
    }
}

#[vtable]
impl MmuNotifierOps for Notifier {
    fn release(this: &Self, _mm: &Mm) {
        this.0.flush_all();
    }

    fn invalidate_range_start(this: &Self, range: &Range) -> Result {
        // Never sleeps (a spinlock and the arch's unmap), so the
        // non-blockable case needs no special path.
        let mut st = this.0.state.lock();
        let st = &mut *st;
        let stage2 = &mut st.stage2;
        notifier_range_start(
            &mut st.gate,
            &mut st.inv,
            &st.slots,
            range.start() as u64,
            range.end() as u64,
            &mut |_, s, e| {
                Host::stage2_unmap(stage2, s, e);
                false
            },
        );
        Ok(())
    }

    fn invalidate_range_end(this: &Self, range: &Range) {
        let wake = {
            let mut st = this.0.state.lock();
            let st = &mut *st;
            // The slots cannot have changed since the start (the gate is
            // closed), so this finds what the start found.
            let started = NotifierRange {
                found_memslot: st.slots.meets_hva_range(range.start() as u64, range.end() as u64),
                flush: false,
            };
            // Fails only for an unbalanced end, which the gate rules out
            // (upstream marks the VM bugged); the gate is counted down
            // either way.
            notifier_range_end(&mut st.gate, &mut st.inv, started).unwrap_or(true)
        };
        if wake {
            this.0.gate_open.notify_all();
        }
    }

    fn clear_flush_young(this: &Self, _mm: &Mm, start: usize, end: usize) -> bool {
        // Young mappings are flushed, as upstream on riscv64 and arm64
        // (no `CONFIG_KVM_ELIDE_TLB_FLUSH_IF_YOUNG`).
        this.for_each_gfn_range(start, end, |s2, s, e| {
            let young = Host::stage2_age(s2, s, e);
            if young {
                Host::stage2_flush_all(s2);
            }
            young
        })
    }

    fn clear_young(this: &Self, _mm: &Mm, start: usize, end: usize) -> bool {
        this.for_each_gfn_range(start, end, Host::stage2_age)
    }

    fn test_young(this: &Self, _mm: &Mm, address: usize) -> bool {
        let end = address.saturating_add(1);
        this.for_each_gfn_range(address, end, |s2, s, e| Host::stage2_test_age(s2, s, e))
    }
}
