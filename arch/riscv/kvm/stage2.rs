// SPDX-License-Identifier: GPL-2.0

//! The VM's G-stage MMU ([`VmStage2`], riscv64's `Arch::Stage2`): its
//! tables, their page cache and its VMID; the guest-page-fault entry point
//! ([`gstage_fault`]) and the entry-side VMID/`hgatp` helper
//! ([`prepare_entry`]) of the run loop. Upstream: `arch/riscv/kvm/mmu.c`,
//! `vmid.c`, `tlb.c`.
//!
//! # Locking
//!
//! A [`VmStage2`] lives under the VM's `mmu_lock` (a spinlock, see
//! `virt/kvm/mmu.rs`): everything here that touches it runs with the lock
//! held and never sleeps. TLB flushes IPI every online CPU and wait
//! (`on_each_cpu`) under that spinlock, with interrupts on, as upstream's
//! remote flushes under `mmu_lock`; every CPU that spins on `mmu_lock` or
//! the VMID lock does so with interrupts on, so the IPIs are always served.
//! Nothing here takes `mmu_lock` with interrupts off: the check the run
//! loop makes with interrupts off ([`GStageEntry::vmid_changed`]) is
//! lock-free.
//!
//! # TLB flushes
//!
//! Every change that removes or narrows a valid translation (unmap,
//! write-protect, a leaf replaced by a fault) is flushed for the VM's VMID
//! on every online CPU before the lock is dropped and before unlinked
//! tables are freed (`Flush::finish`), so no vCPU can keep using a page or
//! table the host takes back. A VM that never entered a guest has no
//! translation cached anywhere and skips the flushes. When the VM's VMID is
//! stale (a rollover happened), the whole G-stage TLB of every CPU is
//! flushed instead: the rollover's own flush may not have finished yet.
//! With VMIDs off every VM uses VMID 0, so a VMID-0 flush reaches all of
//! them.
//!
//! # For the run loop (branch rvrun)
//!
//! ```text
//! KVM_RUN loop:
//!     preempt_disable();
//!     let e = stage2::prepare_entry(vm, vcpu.last_exit_cpu != this_cpu);  // may IPI
//!     local_irq_disable();
//!     if e.vmid_changed() || requests pending { back out, loop }         // lock-free
//!     csr_write(hgatp, e.hgatp);
//!     if e.fence { e.fence_local(); }        // = local_hfence_gvma_vmid(e.hgatp)
//!     enter the guest; on exit remember this CPU as last_exit_cpu;
//!     local_irq_enable(); preempt_enable();
//!     guest-page fault (scause 20/21/23), preemptible:
//!         match stage2::gstage_fault(vm, htval << 2 | stval & 3, write, exec)? {
//!             Mapped => re-enter, Mmio => decode and emulate the access,
//!         }
//! ```
//!
//! `hgatp` must be written before every entry from the returned value (it
//! changes when the VM gets a new VMID, with no request to the other vCPUs:
//! each picks it up at its next `prepare_entry`). Nothing is needed on vCPU
//! load or put.

// The fault path's caller is the run loop (branch rvrun), not merged
// yet; remove this once it is.
#![allow(dead_code)]

use super::{
    csr,
    gstage::{
        FlushRange,
        Mode,
        PageSize,
        Prot,
        HGATP_VMID_MASK,
        HGATP_VMID_SHIFT,
        PAGE_SIZE, //
    },
    hugemap::{
        self,
        FaultFacts,
        HostLeaf,
        SlotSpan, //
    },
    mmu::{
        self,
        Flush,
        PageTables,
        VmGStage,
        VMIDS, //
    },
    vmid::{
        Update,
        VmVmid, //
    },
};
use crate::kvm::{
    abi::Errno,
    mmu::{
        HostPage,
        Resolution, //
    },
    vm::Vm,
};
use core::{
    mem::ManuallyDrop,
    sync::atomic::{
        AtomicU64,
        Ordering, //
    },
};
use kernel::{bindings, prelude::*};

/// Base page shift.
const PAGE_SHIFT: u32 = 12;

/// The G-stage MMU of one VM (upstream's `kvm->arch.pgd`, `pgd_phys`,
/// `pgd_levels`, `vmid` and the page cache of splits).
///
/// # Invariants
///
/// `tables` is live (not yet destroyed) until `drop`, which destroys it
/// once.
pub(crate) struct VmStage2 {
    /// The G-stage tree.
    tables: ManuallyDrop<VmGStage>,
    /// Spare tables (for splits under the lock; faults top up their own
    /// and leave what they did not use here).
    pt: PageTables,
    /// The VM's VMID and its generation.
    vmid: VmVmid,
    /// A vCPU was about to enter the guest at least once: TLBs may hold
    /// translations of this VM.
    entered: bool,
    /// [`VmStage2::wrprotect`] removed write access since the last
    /// [`VmStage2::flush_wrprotected`].
    wp_flush_due: bool,
}

/// The arguments of [`flush_cb`].
struct FlushArgs {
    /// Flush every VMID (`hfence.gvma x0, x0`).
    all_vmids: bool,
    /// Else: this VMID's...
    vmid: u64,
    /// ...translations of this range.
    range: FlushRange,
}

/// Runs on every online CPU for [`flush_everywhere`].
///
/// # Safety
///
/// `info` points to a [`FlushArgs`] that outlives the call (the caller
/// waits for every CPU).
unsafe extern "C" fn flush_cb(info: *mut c_void) {
    // SAFETY: By the function's safety requirements.
    let args = unsafe { &*info.cast::<FlushArgs>() };
    if args.all_vmids {
        csr::hfence_gvma_all();
    } else {
        mmu::local_flush(args.vmid, args.range);
    }
}

/// Runs the flush of `args` on every online CPU and waits
/// (`on_each_cpu_mask(cpu_online_mask, ..., wait = true)`). Interrupts must
/// be on; preemption and spinlocks are fine.
fn flush_everywhere(args: &FlushArgs) {
    // SAFETY: The callback only reads `args`, which lives until this
    // returns (`wait` is true); `__cpu_online_mask` is a static cpumask.
    unsafe {
        bindings::on_each_cpu_cond_mask(
            None,
            Some(flush_cb),
            core::ptr::from_ref(args).cast_mut().cast(),
            true,
            core::ptr::addr_of!(bindings::__cpu_online_mask),
        )
    };
}

/// The G-stage mode of a VM with `gpa_bits` (`12 + 9 * levels + 2`).
fn mode_of(gpa_bits: u32) -> Option<Mode> {
    let levels = gpa_bits.checked_sub(PAGE_SHIFT + 2)? / 9;
    Mode::from_levels(levels).filter(|m| m.gpa_bits() == gpa_bits)
}

/// The guest physical range of the frames `[gfn_start, gfn_end)`, clipped
/// to `limit`; `None` when empty.
fn gpa_range(limit: u64, gfn_start: u64, gfn_end: u64) -> Option<(u64, u64)> {
    let start = gfn_start.saturating_mul(PAGE_SIZE).min(limit);
    let end = gfn_end.saturating_mul(PAGE_SIZE).min(limit);
    (start < end).then(|| (start, end - start))
}

impl VmStage2 {
    /// Empty tables for a VM with `gpa_bits` (`kvm_riscv_mmu_alloc_pgd()`),
    /// no VMID yet. `EINVAL` for GPA bits that are no G-stage mode.
    pub(crate) fn new(gpa_bits: u32) -> Result<Self, Errno> {
        let mode = mode_of(gpa_bits).ok_or(Errno::EINVAL)?;
        let mut pt = PageTables::new();
        let tables = VmGStage::new(&mut pt, mode)?;
        // INVARIANT: A fresh, live tree.
        Ok(VmStage2 {
            tables: ManuallyDrop::new(tables),
            pt,
            vmid: VmVmid::new(),
            entered: false,
            wp_flush_due: false,
        })
    }

    /// The translation mode.
    pub(crate) fn mode(&self) -> Mode {
        self.tables.mode()
    }

    /// Flushes `range` of this VM on every CPU (nothing if the VM never
    /// entered or nothing changed).
    fn flush_tlbs(&self, range: FlushRange) {
        if !self.entered || range == FlushRange::None {
            return;
        }
        let args = match VMIDS.current(&self.vmid) {
            Some(vmid) => FlushArgs { all_vmids: false, vmid, range },
            None => FlushArgs { all_vmids: true, vmid: 0, range: FlushRange::All },
        };
        flush_everywhere(&args);
    }

    /// Unmaps `[gfn_start, gfn_end)` and flushes (`kvm_unmap_gfn_range()`,
    /// `kvm_arch_flush_shadow_memslot()`, `kvm_arch_flush_shadow_all()`).
    pub(crate) fn unmap(&mut self, gfn_start: u64, gfn_end: u64) {
        let Some((gpa, size)) = gpa_range(self.mode().gpa_limit(), gfn_start, gfn_end) else {
            return;
        };
        let mut flush = Flush::new();
        // Cannot fail: aligned and below the mode's limit.
        let _ = self.tables.unmap_range(&mut self.pt, gpa, size, &mut flush);
        self.flush_tlbs(flush.range());
        flush.finish(&mut self.pt);
    }

    /// Clears the accessed bits of `[gfn_start, gfn_end)`; whether any was
    /// set (`kvm_age_gfn()`; no flush, as upstream).
    pub(crate) fn age(&mut self, gfn_start: u64, gfn_end: u64) -> bool {
        let Some((gpa, size)) = gpa_range(self.mode().gpa_limit(), gfn_start, gfn_end) else {
            return false;
        };
        self.tables.age_range(&mut self.pt, gpa, size).unwrap_or(false)
    }

    /// Whether any mapping of `[gfn_start, gfn_end)` is young
    /// (`kvm_test_age_gfn()`).
    pub(crate) fn test_age(&self, gfn_start: u64, gfn_end: u64) -> bool {
        let Some((gpa, size)) = gpa_range(self.mode().gpa_limit(), gfn_start, gfn_end) else {
            return false;
        };
        // Only reads entries: any `PageTables` reads any table, and an
        // empty one owns nothing.
        let mut reader = PageTables::new();
        self.tables.test_young_range(&mut reader, gpa, size).unwrap_or(false)
    }

    /// Write-protects `[gfn_start, gfn_end)` for dirty logging
    /// (`kvm_riscv_gstage_wp_range()`); the flush waits for
    /// [`Self::flush_wrprotected`].
    pub(crate) fn wrprotect(&mut self, gfn_start: u64, gfn_end: u64) {
        let Some((gpa, size)) = gpa_range(self.mode().gpa_limit(), gfn_start, gfn_end) else {
            return;
        };
        let mut flush = Flush::new();
        let _ = self.tables.wrprotect_range(&mut self.pt, gpa, size, &mut flush);
        self.wp_flush_due |= flush.is_needed();
        // Write-protecting unlinks no table: nothing to free.
        flush.finish(&mut self.pt);
    }

    /// Flushes every translation of the VM on every CPU.
    pub(crate) fn flush_all(&mut self) {
        self.flush_tlbs(FlushRange::All);
    }

    /// Flushes what [`Self::wrprotect`] changed, on every CPU.
    pub(crate) fn flush_wrprotected(&mut self) {
        if core::mem::take(&mut self.wp_flush_due) {
            self.flush_tlbs(FlushRange::All);
        }
    }

    /// Gives the VM a VMID of the current generation if it has none (may
    /// flush every CPU on rollover) and returns what the entering vCPU
    /// needs. Marks the VM as having entered.
    fn prepare_entry(&mut self, last_cpu_changed: bool) -> GStageEntry {
        let new_vmid = matches!(mmu::vmid_update(&self.vmid), Update::New { .. });
        self.entered = true;
        let vmids_on = VMIDS.bits() != 0;
        let (generation, vmid) = match VMIDS.current(&self.vmid) {
            Some(vmid) if vmids_on => (self.vmid.get().0, vmid),
            Some(vmid) => (VMIDS.generation(), vmid),
            // Another rollover already: `vmid_changed()` says so and the
            // run loop comes back.
            None => (0, 0),
        };
        GStageEntry {
            hgatp: self.tables.hgatp(vmid),
            // With VMIDs off every VM shares VMID 0: another VM may have
            // run on this CPU since.
            fence: new_vmid || last_cpu_changed || !vmids_on,
            vmid,
            generation,
        }
    }

    /// Maps the resolved page `hp` for a fault at `gpa` under `mmu_lock`
    /// (the caller checked the invalidation sequence). `cache` holds the
    /// tables the mapping may need; what it does not use stays with the VM.
    /// `mm` is the VM's address space (the current task's). Returns the
    /// VMID to fence the faulting address with on this CPU, if valid.
    fn map_fault(
        &mut self,
        cache: &mut PageTables,
        mm: *mut bindings::mm_struct,
        gpa: u64,
        hp: &HostPage,
    ) -> Result<Option<u64>, Errno> {
        let hpa = u64::try_from(hp.pfn).ok().and_then(|p| p.checked_mul(PAGE_SIZE)).ok_or(Errno::EFAULT)?;
        let facts = FaultFacts {
            gpa,
            hva: hp.hva,
            hpa,
            writable: hp.writable,
            dirty_logging: hp.dirty_logging,
            pfnmap: hp.pfnmap,
        };
        let slot = SlotSpan {
            base_gfn: hp.slot.base_gfn,
            npages: hp.slot.npages,
            userspace_addr: hp.slot.userspace_addr,
        };
        let leaf = if hp.pfnmap || hp.dirty_logging {
            None
        } else {
            host_leaf_at(mm, hp.hva)
        };
        let place = hugemap::place(&slot, &facts, leaf);
        // As upstream, every page is executable; read-only slots, read
        // faults while logging and read-only host pages are mapped
        // read-only. `VM_PFNMAP` memory keeps the PMA of its physical
        // range (PBMT = PMA, as upstream): device ranges are I/O, uncached.
        let prot = if hp.writable { Prot::RWX } else { Prot::RX };
        self.map_leaf(cache, place.gpa, place.hpa, place.size, prot)?;
        Ok(VMIDS.current(&self.vmid))
    }

    /// Maps one leaf with tables from `cache` and flushes what it replaced;
    /// the tables `cache` did not use stay with the VM.
    fn map_leaf(&mut self, cache: &mut PageTables, gpa: u64, hpa: u64, size: PageSize, prot: Prot) -> Result<(), Errno> {
        // Only adding rights to the same leaf (a write fault on a page
        // mapped read-only, the common dirty-logging case) leaves nothing
        // stale that matters: another CPU's old entry can only cause a
        // spurious fault, which this fault's path fences.
        let upgrade = self.tables.walk(&self.pt, gpa).is_some_and(|old| {
            old.level == size.level()
                && old.hpa == hpa
                && (prot.write || !old.prot.write)
                && (prot.exec || !old.prot.exec)
                && (prot.read || !old.prot.read)
        });
        let mut flush = Flush::new();
        let r = self.tables.map(cache, gpa, hpa, size, prot, &mut flush);
        // Else a valid leaf was replaced, or a merge into a huge leaf
        // unlinked tables: flush before anything is freed.
        if !upgrade || flush.nr_freed() != 0 {
            self.flush_tlbs(flush.range());
        }
        flush.finish(cache);
        self.pt.refill_from(cache, usize::MAX);
        r
    }
}

impl Drop for VmStage2 {
    fn drop(&mut self) {
        // No vCPU runs any more; a CPU may still cache translations or
        // table pointers of the VMID: flush them before the tables go.
        self.flush_tlbs(FlushRange::All);
        // SAFETY: `tables` is live (type invariant) and not used again.
        let tables = unsafe { ManuallyDrop::take(&mut self.tables) };
        tables.destroy(&mut self.pt);
    }
}

/// The leaf of the host page tables of `mm` that maps `hva`
/// (`get_hva_mapping_size()`), read with interrupts off so that no table
/// is freed during the walk (tables are freed after an IPI or an RCU grace
/// period, which interrupts-off holds back, as for GUP-fast).
fn host_leaf_at(mm: *mut bindings::mm_struct, hva: u64) -> Option<HostLeaf> {
    // SAFETY: `mm` is the current task's address space (the caller's
    // `current->mm`), alive while the task runs; `pgd` is set when the mm is
    // created and never changes.
    let pgd = unsafe { (*mm).__bindgen_anon_1.pgd } as u64;
    // SAFETY: `pgd` is the root table of a live mm.
    unsafe { host_leaf_in(pgd, hva) }
}

/// The leaf that maps `va` in the host page tables rooted at `pgd` (a
/// linear-map address).
///
/// # Safety
///
/// `pgd` is the root table of a live set of host page tables (an mm's
/// `pgd`, or the one `satp` points to).
unsafe fn host_leaf_in(pgd: u64, va: u64) -> Option<HostLeaf> {
    let levels = match super::host_satp_mode() {
        8 => 3,
        9 => 4,
        10 => 5,
        _ => return None,
    };
    let offset = mmu::va_pa_offset();
    let _irqs_off = kernel::interrupt::local_interrupt_disable();
    hugemap::host_leaf(
        levels,
        va,
        pgd,
        |pa| pa.wrapping_add(offset),
        |table, index| {
            // SAFETY: `table` is the mm's root or a next-level table that a
            // valid non-leaf entry of it points to, in the linear map, not
            // freed while interrupts are off; `index < 512`. Entries are
            // read once, atomically (`READ_ONCE`), as the hardware walker
            // and the host's page-table code may change them.
            unsafe { AtomicU64::from_ptr((table as *mut u64).add(index)) }.load(Ordering::Relaxed)
        },
    )
}

/// What the run loop needs to enter the guest ([`prepare_entry`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GStageEntry {
    /// The `hgatp` value to load: the VM's mode, VMID and root.
    pub(crate) hgatp: u64,
    /// This CPU must flush the VM's G-stage translations before entering
    /// ([`GStageEntry::fence_local`]): the VM got a new VMID, the vCPU
    /// moved to another CPU since its last exit, or VMIDs are off.
    pub(crate) fence: bool,
    /// The VMID in `hgatp`.
    vmid: u64,
    /// The VMID generation `hgatp` belongs to (0: already stale).
    generation: u64,
}

impl GStageEntry {
    /// Whether the VM's VMID went stale since [`prepare_entry`]
    /// (`kvm_riscv_gstage_vmid_ver_changed()`): check it with interrupts
    /// off right before entering, and go back to [`prepare_entry`] if so.
    /// Lock-free.
    pub(crate) fn vmid_changed(&self) -> bool {
        VMIDS.bits() != 0 && VMIDS.generation() != self.generation
    }

    /// The flush [`GStageEntry::fence`] asks for, on this CPU
    /// (`kvm_riscv_local_tlb_sanitize()`): `hfence.gvma` of the VMID, or of
    /// everything with VMIDs off.
    pub(crate) fn fence_local(&self) {
        local_hfence_gvma_vmid(self.hgatp);
    }
}

/// `hfence.gvma` of the VMID in `hgatp` on this hart (what
/// [`GStageEntry::fence`] asks for). With VMIDs off every VM uses VMID 0,
/// so this drops every VM's entries, as the whole-TLB flush upstream does
/// then.
pub(crate) fn local_hfence_gvma_vmid(hgatp: u64) {
    csr::hfence_gvma_vmid((hgatp & HGATP_VMID_MASK) >> HGATP_VMID_SHIFT);
}

/// Updates the VM's VMID if its generation is stale (may flush every CPU,
/// so interrupts must be on) and returns the `hgatp` to load and whether
/// this CPU must fence before entering (`last_cpu_changed`: the vCPU runs
/// on another CPU than at its last exit). Called with preemption disabled,
/// right before the guest entry; takes `mmu_lock`.
#[allow(dead_code)] // Called by the run loop (branch rvrun).
pub(crate) fn prepare_entry(vm: &Vm, last_cpu_changed: bool) -> GStageEntry {
    vm.mmu().with_stage2(|s2| s2.prepare_entry(last_cpu_changed))
}

/// What [`gstage_fault`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GStageFault {
    /// The page is mapped (or an invalidation raced: the guest faults
    /// again); re-enter the guest.
    Mapped,
    /// No memslot (or a write to a read-only one): emulate the access as
    /// MMIO.
    Mmio,
}

/// Handles a guest-page fault (`kvm_riscv_vcpu_exit()` →
/// `gstage_page_fault()` → `kvm_riscv_mmu_map()`) in `KVM_RUN`, with
/// interrupts and preemption enabled (it may sleep), in the VM's creator
/// task (`KVM_RUN` checked `current->mm`).
///
/// `gpa` = `(htval << 2) | (stval & 3)`; `write` for a store/AMO fault;
/// `exec` for an instruction fault (every page is executable, as
/// upstream). Errors: `EFAULT` when the slot's memory is not mapped in the
/// host, `EHWPOISON` for a poisoned page, `EINTR` when a signal interrupted
/// the page-in, `ENOMEM`.
#[allow(dead_code)] // Called by the run loop (branch rvrun).
pub(crate) fn gstage_fault(vm: &Vm, gpa: u64, write: bool, exec: bool) -> Result<GStageFault, Errno> {
    let _ = exec;
    let gfn = gpa >> PAGE_SHIFT;
    let task = kernel::current!();
    let mm = task.mm().ok_or(Errno::EFAULT)?;
    let mmu = vm.mmu();
    let page = match mmu.resolve(mm, gfn, write).map_err(|e| Errno(-e.to_errno()))? {
        Resolution::Mmio => return Ok(GStageFault::Mmio),
        Resolution::Page(p) => p,
    };
    // At most one table per level below the root; take the VM's spares
    // first, allocate the rest (may sleep) before taking the lock.
    let mut cache = PageTables::new();
    let need = mmu.with_stage2(|s2| {
        let need = s2.mode().levels().saturating_sub(1) as usize;
        cache.refill_from(&mut s2.pt, need);
        need
    });
    cache.topup_to(need)?;
    let mm_raw = mm.as_raw();
    let vmid = match mmu.install(&page, |s2, hp| s2.map_fault(&mut cache, mm_raw, gpa, hp)) {
        // An invalidation raced with the resolution: the guest faults
        // again and finds the new state.
        None => return Ok(GStageFault::Mapped),
        Some(r) => r?,
    };
    if let Some(vmid) = vmid {
        // Without Svvptc this CPU may keep the invalid entry it faulted
        // on. (If the task moved since the exit, the entry-side fence of a
        // CPU change covers the CPU that enters.)
        let _irqs_off = kernel::interrupt::local_interrupt_disable();
        if VMIDS.bits() == 0 {
            csr::hfence_gvma_all();
        } else {
            csr::hfence_gvma_vmid_gpa(gpa & !(PAGE_SIZE - 1), vmid);
        }
    }
    if page.writable {
        page.mark_dirty();
        if page.dirty_logging {
            vm.mark_page_dirty(gfn);
        }
    }
    Ok(GStageFault::Mapped)
}

#[kunit_tests(kvm_rs_riscv_stage2)]
mod tests {
    use super::super::{gstage::HGATP_PPN_MASK, Host};
    use super::*;

    const K4: u64 = 0x1000;
    const M2: u64 = 0x20_0000;

    /// The GPA bits of the G-stage modes the host supports.
    fn host_gpa_bits() -> impl Iterator<Item = u32> {
        let levels = Host::max_pgd_levels();
        [41u32, 50, 59].into_iter().filter(move |b| (b - 14) / 9 <= levels)
    }

    #[test]
    fn modes_and_ranges() {
        assert_eq!(mode_of(41), Some(Mode::Sv39x4));
        assert_eq!(mode_of(50), Some(Mode::Sv48x4));
        assert_eq!(mode_of(59), Some(Mode::Sv57x4));
        for bad in [0, 13, 14, 40, 42, 49, 51, 60, 68, u32::MAX] {
            assert_eq!(mode_of(bad), None);
            assert!(VmStage2::new(bad).is_err());
        }
        let limit = Mode::Sv39x4.gpa_limit();
        assert_eq!(gpa_range(limit, 1, 3), Some((K4, 2 * K4)));
        assert_eq!(gpa_range(limit, 0, u64::MAX), Some((0, limit)));
        assert_eq!(gpa_range(limit, u64::MAX / 2, u64::MAX), None);
        assert_eq!(gpa_range(limit, 5, 5), None);
        assert_eq!(gpa_range(limit, 6, 5), None);
    }

    #[test]
    fn map_age_wrprotect_unmap_free_everything() -> Result {
        let base = mmu::live_tables();
        for bits in host_gpa_bits() {
            let mut s2 = VmStage2::new(bits)?;
            let mode = s2.mode();
            let mut cache = PageTables::new();
            cache.topup()?;
            // A 4K page and a 2M block (addresses only: the CPU never walks
            // these).
            let gpa = 0x8000_0000 + 5 * K4;
            s2.map_leaf(&mut cache, gpa, 0x9000_0000, PageSize::Size4K, Prot::RWX)?;
            s2.map_leaf(&mut cache, 0xc000_0000, 0xa000_0000, PageSize::Size2M, Prot::RX)?;
            // Spares went to the VM, none leaked.
            assert_eq!(cache.cached(), 0);
            assert!(s2.pt.cached() > 0);
            let leaf = s2.tables.walk(&s2.pt, gpa).ok_or(EINVAL)?;
            assert_eq!((leaf.hpa, leaf.level, leaf.prot), (0x9000_0000, 0, Prot::RWX));
            let leaf = s2.tables.walk(&s2.pt, 0xc000_0000 + M2 - 8).ok_or(EINVAL)?;
            assert_eq!((leaf.hpa, leaf.level), (0xa000_0000 + M2 - 8, 1));
            // Leaves start young; aging clears it once.
            let gfn = gpa >> 12;
            assert!(s2.test_age(gfn, gfn + 1));
            assert!(s2.age(gfn, gfn + 1));
            assert!(!s2.test_age(gfn, gfn + 1));
            assert!(!s2.age(gfn, gfn + 1));
            assert!(s2.test_age(0xc000_0000 >> 12, (0xc000_0000 >> 12) + 1));
            // Write-protect: W goes, the flush is due until flushed.
            s2.wrprotect(gfn, gfn + 1);
            assert!(s2.wp_flush_due);
            assert!(!s2.tables.walk(&s2.pt, gpa).ok_or(EINVAL)?.prot.write);
            s2.flush_wrprotected();
            assert!(!s2.wp_flush_due);
            // Again after the VM "entered": the flush IPIs every CPU.
            let e = s2.prepare_entry(false);
            assert!(!e.vmid_changed());
            s2.map_leaf(&mut cache, gpa, 0x9000_0000, PageSize::Size4K, Prot::RWX)?;
            s2.wrprotect(0, u64::MAX);
            s2.flush_wrprotected();
            // Unmapping frees every table; the whole range, huge sums
            // included, is harmless.
            s2.unmap(0, u64::MAX);
            assert!(s2.tables.walk(&s2.pt, gpa).is_none());
            assert_eq!(s2.tables.nr_tables(&s2.pt), 0);
            assert_eq!(mode, s2.mode());
            drop(s2);
            assert_eq!(mmu::live_tables(), base);
        }
        Ok(())
    }

    /// The root of the page tables this CPU uses (`satp`).
    fn satp_root() -> u64 {
        let satp: u64;
        // SAFETY: Reading `satp` in S-mode has no side effect.
        unsafe { core::arch::asm!("csrr {0}, satp", out(reg) satp, options(nomem, nostack)) };
        ((satp & ((1 << 44) - 1)) << 12).wrapping_add(mmu::va_pa_offset())
    }

    #[test]
    fn host_walk_matches_the_kernel_mappings() -> Result {
        // A linear-map page (kmalloc): the leaf maps it to its physical
        // address, usually through a huge leaf.
        let buf = KBox::new([0u64; 64], GFP_KERNEL)?;
        let va = buf.as_ptr() as u64 + 0x48;
        // SAFETY: The root `satp` points to is live while this runs.
        let leaf = unsafe { host_leaf_in(satp_root(), va) }.ok_or(EINVAL)?;
        let mask = (1u64 << leaf.shift) - 1;
        assert_eq!((leaf.pa & !mask) + (va & mask), va.wrapping_sub(mmu::va_pa_offset()));
        assert!(leaf.writable);
        assert!([12, 21, 30].contains(&leaf.shift));
        // A vmalloc page: a 4K leaf (or a huge vmap) that matches
        // vmalloc_to_pfn().
        let v = VBox::new([0u64; 1024], GFP_KERNEL)?;
        let va = v.as_ptr() as u64 + 0x10;
        // SAFETY: As above.
        let leaf = unsafe { host_leaf_in(satp_root(), va) }.ok_or(EINVAL)?;
        let mask = (1u64 << leaf.shift) - 1;
        // SAFETY: `va` is a live vmalloc address.
        let pfn = unsafe { bindings::vmalloc_to_pfn(va as *const c_void) } as u64;
        assert_eq!(((leaf.pa & !mask) + (va & mask)) >> 12, pfn);
        // Nothing maps the first page of the address space in the kernel's
        // tables.
        // SAFETY: As above.
        assert_eq!(unsafe { host_leaf_in(satp_root(), 0) }, None);
        Ok(())
    }

    #[test]
    fn cpu_walks_the_vm_tables_with_the_entry_hgatp() -> Result {
        use super::super::mmu::guest_mem::{
            guest_access,
            pattern,
            DataPage,
            LOAD_GUEST_PAGE_FAULT,
            STORE_GUEST_PAGE_FAULT, //
        };
        // (`guest_access` fences the whole G-stage TLB around its access,
        // so this checks the tables and `hgatp`, not the flushes.)
        let data = DataPage::new()?;
        let base = mmu::live_tables();
        let mut s2 = VmStage2::new(41)?;
        let mut cache = PageTables::new();
        cache.topup()?;
        let gpa = 0x8000_0000 + 3 * K4;
        let gfn = gpa >> 12;
        s2.map_leaf(&mut cache, gpa, data.pa(), PageSize::Size4K, Prot::RWX)?;
        let e = s2.prepare_entry(false);
        e.fence_local();
        assert_eq!(guest_access(e.hgatp, gpa + 0x10, None), (pattern(data.pa(), 0x10), 0, 0));
        assert_eq!(guest_access(e.hgatp, gpa + 8, Some(0x55)), (0, 0, 0));
        assert_eq!(data.get(1), 0x55);
        // Dirty logging: stores fault, loads work.
        s2.wrprotect(gfn, gfn + 1);
        s2.flush_wrprotected();
        assert_eq!(guest_access(e.hgatp, gpa + 8, Some(0x66)), (0, STORE_GUEST_PAGE_FAULT, (gpa + 8) >> 2));
        assert_eq!(data.get(1), 0x55);
        assert_eq!(guest_access(e.hgatp, gpa + 8, None), (0x55, 0, 0));
        // The write fault maps it writable again.
        s2.map_leaf(&mut cache, gpa, data.pa(), PageSize::Size4K, Prot::RWX)?;
        assert_eq!(guest_access(e.hgatp, gpa + 8, Some(0x77)), (0, 0, 0));
        assert_eq!(data.get(1), 0x77);
        // Unmapped: loads fault with the GPA in htval.
        s2.unmap(gfn, gfn + 1);
        assert_eq!(guest_access(e.hgatp, gpa + 0x10, None), (0, LOAD_GUEST_PAGE_FAULT, (gpa + 0x10) >> 2));
        drop(s2);
        drop(cache);
        assert_eq!(mmu::live_tables(), base);
        Ok(())
    }

    #[test]
    fn prepare_entry_gives_hgatp_and_fences() -> Result {
        let mut a = VmStage2::new(41)?;
        let mut b = VmStage2::new(41)?;
        let ea = a.prepare_entry(false);
        // Mode, root, VMID.
        assert_eq!(ea.hgatp >> 60, Mode::Sv39x4.hgatp_mode());
        assert_eq!((ea.hgatp & HGATP_PPN_MASK) << 12, a.tables.root().addr());
        let vmids_on = VMIDS.bits() != 0;
        assert_eq!((ea.hgatp >> 44) & 0x3fff, ea.vmid);
        let nonzero = ea.vmid != 0;
        assert_eq!(nonzero, vmids_on);
        // The first entry got a new VMID: fence.
        assert!(ea.fence);
        assert!(!ea.vmid_changed());
        // Again on the same CPU: only with VMIDs off; on another CPU: yes.
        assert_eq!(a.prepare_entry(false).fence, !vmids_on);
        assert!(a.prepare_entry(true).fence);
        let eb = b.prepare_entry(false);
        let ea = a.prepare_entry(false);
        if vmids_on && !ea.vmid_changed() && !eb.vmid_changed() {
            // Same generation: distinct VMIDs.
            assert_ne!(ea.vmid, eb.vmid);
        }
        if !ea.vmid_changed() {
            assert_eq!(VMIDS.current(&a.vmid), Some(ea.vmid));
        }
        ea.fence_local();
        // clear_flush_young's flush of an entered VM reaches every CPU.
        a.flush_all();
        // Unmapping an entered VM flushes everywhere and frees.
        let mut cache = PageTables::new();
        cache.topup()?;
        a.map_leaf(&mut cache, 0x8000_0000, 0x9000_0000, PageSize::Size4K, Prot::RWX)?;
        a.unmap(0x8_0000, 0x8_0001);
        assert!(a.tables.walk(&a.pt, 0x8000_0000).is_none());
        Ok(())
    }
}
