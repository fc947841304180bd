// SPDX-License-Identifier: GPL-2.0

//! STAND-IN for the G-stage MMU of branch `rvs2` (dropped when `rvs2`
//! merges; its `stage2.rs` replaces this file).
//!
//! Only what the run loop needs to run simple guests, with the interface
//! `rvs2` provides ([`VmStage2`] with `new`/`unmap`, [`GStageEntry`],
//! [`prepare_entry`], [`GStageFault`], [`gstage_fault`]): [`gstage_fault`] maps one 4 KiB page per fault through
//! the pure `gstage.rs` tables and the generic fault resolution
//! (`virt/kvm/mmu.rs`); [`prepare_entry`] returns the VM's `hgatp` with the
//! fixed VMID 0 and asks for a local `hfence.gvma` whenever this hart last
//! entered another `hgatp` (every VM shares VMID 0); a dropped VM flushes
//! every hart, so a new VM that gets the same root finds no stale entry.
//! No huge pages, no dirty-bitmap marking, no VMID allocation.

use super::{
    csr,
    gstage::{
        FlushRange,
        Mode,
        PageSize,
        Prot, //
    },
    mmu::{
        self,
        Flush,
        PageTables,
        VmGStage, //
    },
};
use crate::kvm::{
    abi::Errno,
    mmu::Resolution,
    vm::Vm, //
};
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};
use kernel::prelude::*;

/// What a G-stage fault turned out to be.
pub(crate) enum GStageFault {
    /// The page is mapped now (or a racing invalidation asks the guest to
    /// fault again): re-enter the guest.
    Mapped,
    /// No memslot backs the address (or a write to a read-only one):
    /// emulate the access.
    Mmio,
}

/// The G-stage state of a VM (`Arch::Stage2` on riscv64), kept under the
/// VM's `mmu_lock`.
///
/// Invariant: `g` is `Some` until dropped.
pub(crate) struct VmStage2 {
    g: Option<VmGStage>,
}

impl VmStage2 {
    /// The tables of a new VM with `gpa_bits` (41, 50 or 59).
    pub(crate) fn new(gpa_bits: u32) -> Result<VmStage2, Errno> {
        // gpa_bits = 12 + 9 * levels + 2.
        let levels = gpa_bits.saturating_sub(14) / 9;
        let mode = Mode::from_levels(levels).ok_or(Errno::EINVAL)?;
        let mut pt = PageTables::new();
        Ok(VmStage2 { g: Some(VmGStage::new(&mut pt, mode)?) })
    }

    /// Unmaps `[gfn_start, gfn_end)` (clamped to the mode's GPA range) and
    /// flushes every CPU when a valid translation went away.
    pub(crate) fn unmap(&mut self, gfn_start: u64, gfn_end: u64) {
        let Some(g) = self.g.as_mut() else { return };
        let limit = g.mode().gpa_limit() >> 12;
        let end = gfn_end.min(limit);
        if gfn_start >= end {
            return;
        }
        let mut pt = PageTables::new();
        let mut flush = Flush::default();
        // Aligned and in range by construction: cannot fail.
        let _ = g.unmap_range(&mut pt, gfn_start << 12, (end - gfn_start) << 12, &mut flush);
        if flush.is_needed() {
            mmu::flush_all_cpus();
        }
        flush.finish(&mut pt);
    }

    /// `hgatp` with VMID 0.
    fn hgatp(&self) -> u64 {
        self.g.as_ref().map_or(0, |g| g.hgatp(0))
    }
}

impl Drop for VmStage2 {
    fn drop(&mut self) {
        if let Some(g) = self.g.take() {
            let mut pt = PageTables::new();
            g.destroy(&mut pt);
            // No hart may keep translations of the freed root.
            mmu::flush_all_cpus();
        }
    }
}

/// The `hgatp` each CPU last entered a guest with (CPUs beyond the array
/// always flush).
static LAST_HGATP: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

/// Handles a guest-page fault at `gpa` = `(htval << 2) | (stval & 3)`,
/// called from `KVM_RUN` with interrupts and preemption enabled (may
/// sleep).
pub(crate) fn gstage_fault(vm: &Vm, gpa: u64, write: bool, _exec: bool) -> Result<GStageFault, Errno> {
    let current = kernel::current!();
    let mm = current.mm().ok_or(Errno::EFAULT)?;
    let gfn = gpa >> 12;
    let page = match vm.mmu().resolve(mm, gfn, write).map_err(|e| Errno(-e.to_errno()))? {
        Resolution::Mmio => return Ok(GStageFault::Mmio),
        Resolution::Page(p) => p,
    };
    let mut pt = PageTables::new();
    pt.topup()?;
    let prot = if page.writable { Prot::RWX } else { Prot::RX };
    let hpa = (page.pfn as u64) << 12;
    let done = vm.mmu().install(&page, |s2, _| {
        let mut flush = Flush::default();
        let r = match s2.g.as_mut() {
            Some(g) => g.map(&mut pt, gfn << 12, hpa, PageSize::Size4K, prot, &mut flush),
            None => Err(Errno::EFAULT),
        };
        (r, flush)
    });
    let Some((r, flush)) = done else {
        // An invalidation raced with the resolution: fault again.
        return Ok(GStageFault::Mapped);
    };
    // This hart may still hold the invalid entry it faulted on.
    mmu::local_flush(0, FlushRange::Range { start: gfn << 12, end: (gfn + 1) << 12, shift: 12 });
    if flush.is_needed() {
        mmu::flush_all_cpus();
    }
    flush.finish(&mut pt);
    r?;
    if page.writable {
        page.mark_dirty();
    }
    Ok(GStageFault::Mapped)
}

/// What the run loop needs to enter the guest ([`prepare_entry`]); the
/// same shape as rvs2's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GStageEntry {
    /// The `hgatp` value to load.
    pub(crate) hgatp: u64,
    /// This hart must flush the VMID's G-stage translations first
    /// ([`GStageEntry::fence_local`]).
    pub(crate) fence: bool,
}

impl GStageEntry {
    /// Whether the VMID went stale since [`prepare_entry`]: never, VMID 0
    /// is fixed.
    pub(crate) fn vmid_changed(&self) -> bool {
        false
    }

    /// `hfence.gvma` of VMID 0 on this hart.
    pub(crate) fn fence_local(&self) {
        csr::hfence_gvma_vmid(0);
    }
}

/// With preemption disabled just before entry: the VM's `hgatp` and
/// whether this hart must flush the G-stage TLB of the VMID first (VMID 0
/// is shared by every VM: when this hart last ran another one, or the vCPU
/// moved here from another hart).
pub(crate) fn prepare_entry(vm: &Vm, last_cpu_changed: bool) -> GStageEntry {
    let hgatp = vm.mmu().with_stage2(|s2| s2.hgatp());
    let cpu = kernel::cpu::CpuId::current().as_u32() as usize;
    let fence = match LAST_HGATP.get(cpu) {
        Some(last) => last.swap(hgatp, Ordering::Relaxed) != hgatp || last_cpu_changed,
        None => true,
    };
    GStageEntry { hgatp, fence }
}
