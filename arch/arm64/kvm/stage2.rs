// SPDX-License-Identifier: GPL-2.0

//! The VM's stage-2 MMU ([`VmStage2`], arm64's `Arch::Stage2`): its tables
//! (`pgtable.rs`) over kernel pages, its VMID (the arch-neutral allocator
//! of riscv's `vmid.rs`, shared as a file), the TLB invalidations, the
//! stage-2 fault entry point ([`stage2_fault`]) and the entry-side
//! VMID/`VTTBR_EL2` helper ([`prepare_entry`]) of the run loop. Upstream:
//! `arch/arm64/kvm/mmu.c`, `vmid.c`, `hyp/vhe/tlb.c`.
//!
//! # Locking
//!
//! A [`VmStage2`] lives under the VM's `mmu_lock` (a spinlock): nothing
//! here sleeps while it is held. TLB invalidations of one VM are broadcast
//! (`TLBI VMALLS12E1IS`, inner shareable), so no IPI is needed for them; a
//! VMID rollover IPIs every CPU (each invalidates its TLB, and a CPU in a
//! guest exits), as riscv's rollover does.
//!
//! # TLB invalidation
//!
//! Every change that removes or narrows a valid descriptor (unmap,
//! write-protect, a leaf replaced) is followed by `DSB ISHST; TLBI
//! VMALLS12E1IS; DSB ISH` for the VM's VMID before the lock is dropped and
//! before unlinked tables are freed. With VHE, guest TLB maintenance needs
//! `VTTBR_EL2` set to the VM's and `HCR_EL2.TGE` clear around the `TLBI`
//! (`enter_vmid_context()` of upstream's `hyp/vhe/tlb.c`), with interrupts
//! off. A VM that never entered has nothing cached and skips it.

use super::{
    pgtable::{
        self,
        Changed,
        FreeList,
        Geometry,
        Prot,
        Stage2Tables,
        TableMem,
        TablePa,
        PAGE_SIZE, //
    },
    sysreg,
    vmid::{
        self,
        SpaceLock,
        Update,
        VmVmid,
        VmidAllocator,
        VmidSpace, //
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
        AtomicBool,
        AtomicU32,
        AtomicU64,
        AtomicUsize,
        Ordering, //
    },
};
use kernel::{bindings, prelude::*};

/// Tables a [`PageTables`] keeps ready: one `map` needs at most one per
/// level below the root (3).
const CACHE_TABLES: usize = 3;

/// `__GFP_ACCOUNT`.
const GFP_ACCOUNT: bindings::gfp_t = bindings::GFP_KERNEL_ACCOUNT & !bindings::GFP_KERNEL;

/// Page tables and roots allocated and not yet freed, across all VMs.
static LIVE_TABLES: AtomicUsize = AtomicUsize::new(0);

/// The number of live tables and roots (for leak checks).
#[cfg_attr(not(CONFIG_KUNIT), allow(dead_code))]
pub(crate) fn live_tables() -> usize {
    LIVE_TABLES.load(Ordering::Relaxed)
}

/// `PAGE_OFFSET` (`-(1 << VA_BITS_MIN)`): the start of the linear map.
const PAGE_OFFSET: u64 = !((1u64 << bindings::CONFIG_ARM64_VA_BITS) - 1);

/// `PHYS_OFFSET` (`memstart_addr`).
fn phys_offset() -> u64 {
    // SAFETY: `memstart_addr` is set during early boot and only read after.
    (unsafe { core::ptr::addr_of!(bindings::memstart_addr).read() }) as u64
}

/// `__pa()` of a linear-map address (`__lm_to_phys()`). Needs a patch:
/// `rust/kernel` has no `virt_to_phys()` for modules.
pub(crate) fn lm_to_phys(va: u64) -> u64 {
    (va & !PAGE_OFFSET).wrapping_add(phys_offset())
}

/// `__va()`: the linear-map address of RAM at `pa`.
pub(crate) fn phys_to_lm(pa: u64) -> u64 {
    pa.wrapping_sub(phys_offset()) | PAGE_OFFSET
}

/// Allocates `size` zeroed bytes of naturally aligned pages and returns
/// their physical address.
fn alloc_zeroed(size: usize, gfp: bindings::gfp_t) -> Result<TablePa, Errno> {
    // SAFETY: Any size and these flags are valid; `__GFP_COMP` is not set.
    let va = unsafe { bindings::alloc_pages_exact_noprof(size, gfp | bindings::__GFP_ZERO) };
    if va.is_null() {
        return Err(Errno::ENOMEM);
    }
    let Some(pa) = TablePa::new(lm_to_phys(va as u64)) else {
        // Not reachable with 48-bit physical addresses.
        // SAFETY: `va` was just allocated with `size`.
        unsafe { bindings::free_pages_exact(va, size) };
        return Err(Errno::ENOMEM);
    };
    LIVE_TABLES.fetch_add(1, Ordering::Relaxed);
    Ok(pa)
}

/// The linear-map address of a table.
fn table_va(table: TablePa) -> *mut u64 {
    phys_to_lm(table.addr()) as *mut u64
}

/// Frees what [`alloc_zeroed`] returned.
///
/// # Safety
///
/// `table` came from `alloc_zeroed(size, _)` and is not used afterwards.
unsafe fn free_zeroed(table: TablePa, size: usize) {
    // SAFETY: By the caller.
    unsafe { bindings::free_pages_exact(table_va(table).cast(), size) };
    LIVE_TABLES.fetch_sub(1, Ordering::Relaxed);
}

/// Stage-2 table memory from the page allocator, with a small cache filled
/// outside the MMU lock (upstream's `kvm_mmu_memory_cache`).
///
/// Invariant: `cache[..len]` are live, zeroed tables from [`alloc_zeroed`].
pub(crate) struct PageTables {
    cache: [Option<TablePa>; CACHE_TABLES],
    len: usize,
}

impl PageTables {
    /// An empty cache.
    pub(crate) const fn new() -> Self {
        PageTables { cache: [None; CACHE_TABLES], len: 0 }
    }

    /// Fills the cache (`GFP_KERNEL_ACCOUNT`, may sleep).
    pub(crate) fn topup(&mut self) -> Result<(), Errno> {
        while self.len < CACHE_TABLES {
            let t = alloc_zeroed(PAGE_SIZE as usize, bindings::GFP_KERNEL_ACCOUNT)?;
            if let Some(slot) = self.cache.get_mut(self.len) {
                *slot = Some(t);
                self.len += 1;
            } else {
                // SAFETY: Just allocated, not stored anywhere.
                unsafe { free_zeroed(t, PAGE_SIZE as usize) };
            }
        }
        Ok(())
    }

    /// Moves cached tables from `other` until this one is full.
    fn refill_from(&mut self, other: &mut PageTables) {
        while self.len < CACHE_TABLES && other.len > 0 {
            other.len -= 1;
            let Some(t) = other.cache.get_mut(other.len).and_then(Option::take) else { continue };
            match self.cache.get_mut(self.len) {
                Some(slot) => {
                    *slot = Some(t);
                    self.len += 1;
                }
                // SAFETY: A live cached table, owned here only.
                None => unsafe { free_zeroed(t, PAGE_SIZE as usize) },
            }
        }
    }
}

impl Drop for PageTables {
    fn drop(&mut self) {
        for t in self.cache.iter_mut().filter_map(Option::take) {
            // SAFETY: Cached tables are live and owned by the cache.
            unsafe { free_zeroed(t, PAGE_SIZE as usize) };
        }
    }
}

/// Entry `index` of `table` as an atomic.
///
/// # Safety
///
/// `table` is a live table or root from [`alloc_zeroed`], `index` below its
/// entries.
unsafe fn entry<'a>(table: TablePa, index: usize) -> &'a AtomicU64 {
    // SAFETY: By the caller: inside a live, aligned allocation in the
    // linear map, only accessed atomically (here and by the walker).
    unsafe { AtomicU64::from_ptr(table_va(table).add(index)) }
}

// SAFETY: Tables come zeroed from the page allocator, naturally aligned, in
// the linear map; entries are accessed as `AtomicU64` with release stores
// (a `DMB ISHST`-class barrier orders the zeroing before the link).
unsafe impl TableMem for PageTables {
    fn alloc_table(&mut self) -> Result<TablePa, Errno> {
        if self.len > 0 {
            self.len -= 1;
            if let Some(t) = self.cache.get_mut(self.len).and_then(Option::take) {
                return Ok(t);
            }
        }
        alloc_zeroed(PAGE_SIZE as usize, bindings::GFP_NOWAIT | bindings::__GFP_NOWARN | GFP_ACCOUNT)
    }

    fn alloc_root(&mut self, size: usize) -> Result<TablePa, Errno> {
        alloc_zeroed(size, bindings::GFP_KERNEL_ACCOUNT)
    }

    unsafe fn free_table(&mut self, table: TablePa) {
        // SAFETY: By the caller.
        unsafe { free_zeroed(table, PAGE_SIZE as usize) };
    }

    unsafe fn free_root(&mut self, root: TablePa, size: usize) {
        // SAFETY: By the caller.
        unsafe { free_zeroed(root, size) };
    }

    unsafe fn read(&self, table: TablePa, index: usize) -> u64 {
        // SAFETY: By the caller.
        unsafe { entry(table, index) }.load(Ordering::Relaxed)
    }

    unsafe fn write(&mut self, table: TablePa, index: usize, desc: u64) {
        // SAFETY: By the caller.
        unsafe { entry(table, index) }.store(desc, Ordering::Release)
    }
}

// --- host facts -------------------------------------------------------------

/// `HCR_EL2.FWB` is usable (`ARM64_HAS_STAGE2_FWB`).
static HAS_FWB: AtomicBool = AtomicBool::new(false);
/// 16-bit VMIDs (`ID_AA64MMFR1_EL1.VMIDBits` = 2).
static VMID16: AtomicBool = AtomicBool::new(false);
/// Hardware sets the stage-2 access flag (`ID_AA64MMFR1_EL1.HAFDBS`).
static HAS_HA: AtomicBool = AtomicBool::new(false);
/// `VTCR_EL2.PS`: the host's `PARange`, at most 48 bits.
static PS: AtomicU32 = AtomicU32::new(0);
/// `CTR_EL0.DminLine` as bytes (for the cache maintenance without FWB).
static DLINE: AtomicU32 = AtomicU32::new(64);
/// `CTR_EL0.DIC`: no instruction cache invalidation needed.
static HAS_DIC: AtomicBool = AtomicBool::new(true);

/// Whether `HCR_EL2.FWB` is set for guests.
pub(crate) fn has_fwb() -> bool {
    HAS_FWB.load(Ordering::Relaxed)
}

kernel::sync::global_lock! {
    // SAFETY: Initialized by `init()`, from `Host::probe()` before any VM
    // exists; nothing else uses it first.
    unsafe(uninit) static VMID_SPACE: SpinLock<VmidSpace> = VmidSpace::new();
}

/// The host-wide VMID lock (upstream's `cpu_vmid_lock`).
pub(crate) struct GlobalVmidLock;

impl SpaceLock for GlobalVmidLock {
    fn with_locked<R>(&self, f: impl FnOnce(&mut VmidSpace) -> R) -> R {
        let mut guard = VMID_SPACE.lock();
        f(&mut guard)
    }
}

/// The host-wide VMID allocator.
pub(crate) static VMIDS: VmidAllocator<GlobalVmidLock> = VmidAllocator::new(GlobalVmidLock);

/// `num_possible_cpus()`.
fn possible_cpus() -> u32 {
    // SAFETY: Set during boot and only read after.
    unsafe { core::ptr::addr_of!(bindings::__num_possible_cpus).read() }
}

/// Reads the host's stage-2 facts and sets up [`VMIDS`] (`kvm_arm_vmid_alloc_init()`),
/// capped by the `vmid_bits` module parameter.
///
/// # Safety
///
/// Called once, from `Host::probe()`, before any VM exists.
pub(crate) unsafe fn init(mmfr0: u64, mmfr1: u64, mmfr2: u64, ctr: u64) {
    // SAFETY: Called once (caller), before any use of the lock.
    unsafe { VMID_SPACE.init() };
    let hw = if (mmfr1 >> 4) & 0xf == 2 { 16 } else { 8 };
    VMID16.store(hw == 16, Ordering::Relaxed);
    HAS_HA.store(mmfr1 & 0xf != 0, Ordering::Relaxed);
    // ID_AA64MMFR2_EL1.FWB (bits 43:40).
    HAS_FWB.store((mmfr2 >> 40) & 0xf != 0, Ordering::Relaxed);
    PS.store((mmfr0 & 0xf).min(5) as u32, Ordering::Relaxed);
    DLINE.store(4u32 << ((ctr >> 16) & 0xf), Ordering::Relaxed);
    HAS_DIC.store(ctr & (1 << 29) != 0, Ordering::Relaxed);
    let cap = crate::module_parameters::vmid_bits.value();
    let bits = vmid::usable_bits(hw, cap, possible_cpus());
    VMIDS.init(bits);
    pr_info!(
        "arm64 stage 2: {}-bit VMIDs, {} in use (vmid_bits={}), FWB {}, HA {}\n",
        hw,
        bits,
        cap,
        has_fwb(),
        HAS_HA.load(Ordering::Relaxed)
    );
}

// --- TLB maintenance --------------------------------------------------------

/// Invalidates every stage-1 and stage-2 entry of the VM with `vttbr` on
/// every CPU (`__kvm_tlb_flush_vmid()` in the VM's VMID context).
fn tlb_flush_vmid(vttbr: u64) {
    let _irqs = kernel::interrupt::local_interrupt_disable();
    let old_vttbr = sysreg::read_vttbr_el2();
    let hcr = sysreg::hcr_el2();
    // SAFETY: With interrupts off, `VTTBR_EL2` is set to the VM's and
    // `HCR_EL2.TGE` cleared so that the TLBI targets the guest regime
    // (`enter_vmid_context()`); both are restored before interrupts come
    // back. The host keeps running at EL2 with E2H set, which TGE does not
    // affect for EL2 code.
    unsafe {
        core::arch::asm!(
            "msr vttbr_el2, {v}",
            "isb",
            "msr hcr_el2, {h}",
            "isb",
            "dsb ishst",
            "tlbi vmalls12e1is",
            "dsb ish",
            "isb",
            "msr hcr_el2, {oh}",
            "isb",
            "msr vttbr_el2, {ov}",
            "isb",
            v = in(reg) vttbr,
            h = in(reg) hcr & !sysreg::HCR_TGE,
            oh = in(reg) hcr,
            ov = in(reg) old_vttbr,
            options(nostack)
        )
    };
}

/// Invalidates the guest TLB entries of every VMID on this CPU.
fn tlb_flush_all_local() {
    // SAFETY: Drops cached EL1&0 translations of every VMID; nothing else.
    unsafe { core::arch::asm!("dsb ishst", "tlbi alle1", "dsb nsh", "isb", options(nostack)) };
}

/// Runs on every CPU for [`flush_all_cpus`].
///
/// # Safety
///
/// Called by `on_each_cpu_cond_mask()` only.
unsafe extern "C" fn flush_all_cb(_info: *mut c_void) {
    tlb_flush_all_local();
}

/// Invalidates the guest TLBs of every CPU and waits; the IPI also makes
/// every CPU in a guest exit (the VMID rollover).
fn flush_all_cpus() {
    // SAFETY: The callback ignores its argument; `__cpu_online_mask` is a
    // static cpumask; waiting is allowed (preemptible, interrupts on).
    unsafe {
        bindings::on_each_cpu_cond_mask(
            None,
            Some(flush_all_cb),
            core::ptr::null_mut(),
            true,
            core::ptr::addr_of!(bindings::__cpu_online_mask),
        )
    };
}

/// Cleans and invalidates the data cache over the linear-map page of `pa`
/// to the point of coherency (`clean_dcache_guest_page()`, without FWB),
/// and the instruction cache if needed (`invalidate_icache_guest_page()`).
fn sync_guest_page(pa: u64) {
    if !has_fwb() {
        let line = u64::from(DLINE.load(Ordering::Relaxed).max(4));
        let va = phys_to_lm(pa & !(PAGE_SIZE - 1));
        let mut a = va;
        while a < va + PAGE_SIZE {
            // SAFETY: `a` is in the linear map of a RAM page the caller
            // holds a reference on; cache maintenance has no other effect.
            unsafe { core::arch::asm!("dc civac, {0}", in(reg) a, options(nostack)) };
            a += line;
        }
        // SAFETY: A barrier.
        unsafe { core::arch::asm!("dsb ish", options(nostack)) };
    }
    if !HAS_DIC.load(Ordering::Relaxed) {
        // SAFETY: Invalidates instruction caches; no other effect.
        unsafe { core::arch::asm!("ic ialluis", "dsb ish", "isb", options(nostack)) };
    }
}

// --- the VM's stage 2 ------------------------------------------------------

/// The stage-2 MMU of one VM (upstream's `kvm_s2_mmu`).
///
/// Invariant: `tables` is live (not destroyed) until `drop`.
pub(crate) struct VmStage2 {
    tables: ManuallyDrop<Stage2Tables>,
    /// Spare tables.
    pt: PageTables,
    /// The VM's VMID and its generation.
    vmid: VmVmid,
    /// `VTCR_EL2` of the VM.
    vtcr: u64,
    /// A vCPU was about to enter the guest at least once.
    entered: bool,
    /// [`VmStage2::wrprotect`] removed write access since the last flush.
    wp_flush_due: bool,
}

/// The IPA range of frames `[gfn_start, gfn_end)` clipped to `limit`.
fn gpa_range(limit: u64, gfn_start: u64, gfn_end: u64) -> Option<(u64, u64)> {
    let start = gfn_start.saturating_mul(PAGE_SIZE).min(limit);
    let end = gfn_end.saturating_mul(PAGE_SIZE).min(limit);
    (start < end).then(|| (start, end - start))
}

impl VmStage2 {
    /// Empty tables for a VM with `ipa_bits` (`kvm_init_stage2_mmu()`).
    pub(crate) fn new(ipa_bits: u32) -> Result<Self, Errno> {
        let geo = Geometry::new(ipa_bits).ok_or(Errno::EINVAL)?;
        let mut pt = PageTables::new();
        let tables = Stage2Tables::new(&mut pt, geo, has_fwb())?;
        let vtcr = geo.vtcr(u64::from(PS.load(Ordering::Relaxed)), VMID16.load(Ordering::Relaxed), HAS_HA.load(Ordering::Relaxed));
        // INVARIANT: A fresh, live tree.
        Ok(VmStage2 { tables: ManuallyDrop::new(tables), pt, vmid: VmVmid::new(), vtcr, entered: false, wp_flush_due: false })
    }

    /// The VM's IPA bits.
    pub(crate) fn ipa_bits(&self) -> u32 {
        self.tables.geometry().ia_bits
    }

    fn limit(&self) -> u64 {
        self.tables.geometry().ipa_limit()
    }

    /// The `VTTBR_EL2` to flush with: the current VMID, or `None` when the
    /// VMID is stale (a rollover flushed everything already).
    fn flush_vttbr(&self) -> Option<u64> {
        if VMIDS.bits() == 0 {
            return Some(self.tables.vttbr(0));
        }
        VMIDS.current(&self.vmid).map(|v| self.tables.vttbr(v))
    }

    /// Invalidates the VM's TLB entries everywhere (if it ever entered).
    fn flush_tlbs(&self) {
        if !self.entered {
            return;
        }
        match self.flush_vttbr() {
            Some(vttbr) => tlb_flush_vmid(vttbr),
            // Stale VMID: the rollover invalidated every CPU, and the
            // VM's vCPUs cannot enter without a new VMID; flush all the
            // same, cheaply correct.
            None => flush_all_cpus_from_lock(),
        }
    }

    /// Unmaps `[gfn_start, gfn_end)` and flushes (`kvm_unmap_gfn_range()`).
    pub(crate) fn unmap(&mut self, gfn_start: u64, gfn_end: u64) {
        let Some((gpa, size)) = gpa_range(self.limit(), gfn_start, gfn_end) else { return };
        let mut free = FreeList::new();
        let ch = self.tables.unmap(&mut self.pt, gpa, size, &mut free);
        if ch.flush {
            self.flush_tlbs();
        }
        Stage2Tables::free_list(&mut self.pt, &mut free);
    }

    /// Clears the access flags of the range; whether any was set.
    pub(crate) fn age(&mut self, gfn_start: u64, gfn_end: u64) -> bool {
        let Some((gpa, size)) = gpa_range(self.limit(), gfn_start, gfn_end) else { return false };
        self.tables.age(&mut self.pt, gpa, size)
    }

    /// Whether any mapping of the range is young.
    pub(crate) fn test_age(&self, gfn_start: u64, gfn_end: u64) -> bool {
        let Some((gpa, size)) = gpa_range(self.limit(), gfn_start, gfn_end) else { return false };
        // Only reads: any `PageTables` reads any table.
        let mut reader = PageTables::new();
        self.tables.test_age(&mut reader, gpa, size)
    }

    /// Write-protects the range; the flush waits for [`Self::flush_wrprotected`].
    pub(crate) fn wrprotect(&mut self, gfn_start: u64, gfn_end: u64) {
        let Some((gpa, size)) = gpa_range(self.limit(), gfn_start, gfn_end) else { return };
        let ch = self.tables.wrprotect(&mut self.pt, gpa, size);
        self.wp_flush_due |= ch.flush;
    }

    /// Flushes every translation of the VM.
    pub(crate) fn flush_all(&mut self) {
        self.flush_tlbs();
    }

    /// Flushes what [`Self::wrprotect`] changed.
    pub(crate) fn flush_wrprotected(&mut self) {
        if core::mem::take(&mut self.wp_flush_due) {
            self.flush_tlbs();
        }
    }

    /// Gives the VM a VMID of the current generation if it has none and
    /// returns what the entering vCPU needs.
    fn prepare_entry(&mut self) -> Stage2Entry {
        let new_vmid = matches!(VMIDS.update(&self.vmid, flush_all_cpus_from_lock), Update::New { .. });
        self.entered = true;
        let vmids_on = VMIDS.bits() != 0;
        let (generation, vmid) = match VMIDS.current(&self.vmid) {
            Some(v) if vmids_on => (self.vmid.get().0, v),
            Some(v) => (VMIDS.generation(), v),
            None => (0, 0),
        };
        Stage2Entry {
            vttbr: self.tables.vttbr(vmid),
            vtcr: self.vtcr,
            new_vmid: new_vmid || !vmids_on,
            generation,
        }
    }

    /// Maps the resolved page for a fault at `gpa` (under `mmu_lock`).
    fn map_fault(&mut self, cache: &mut PageTables, gpa: u64, hp: &HostPage) -> Result<(), Errno> {
        let hpa = u64::try_from(hp.pfn).ok().and_then(|p| p.checked_mul(PAGE_SIZE)).ok_or(Errno::EFAULT)?;
        let prot = Prot { write: hp.writable, exec: !hp.pfnmap, device: hp.pfnmap };
        if !hp.pfnmap && self.tables.walk(cache, gpa).is_none_or(|l| l.hpa & !(PAGE_SIZE - 1) != hpa) {
            sync_guest_page(hpa);
        }
        let ch = self.tables.map(cache, gpa & !(PAGE_SIZE - 1), hpa, prot);
        self.pt.refill_from(cache);
        let ch: Changed = ch?;
        if ch.flush {
            self.flush_tlbs();
        }
        Ok(())
    }

    /// Sets the access flag of the leaf at `gpa`; whether one was there.
    fn mkyoung(&mut self, gpa: u64) -> bool {
        self.tables.mkyoung(&mut self.pt, gpa)
    }
}

/// [`flush_all_cpus`] for the rollover callback. The VMID allocator calls
/// it under its spinlock with interrupts on; `on_each_cpu` may wait there
/// (every CPU spinning on that lock does so with interrupts on).
fn flush_all_cpus_from_lock() {
    flush_all_cpus();
}

impl Drop for VmStage2 {
    fn drop(&mut self) {
        self.flush_tlbs();
        // SAFETY: `tables` is live (type invariant) and not used again.
        let tables = unsafe { ManuallyDrop::take(&mut self.tables) };
        tables.destroy(&mut self.pt);
    }
}

/// What the run loop needs to enter the guest ([`prepare_entry`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stage2Entry {
    /// `VTTBR_EL2`: root and VMID.
    pub(crate) vttbr: u64,
    /// `VTCR_EL2`.
    pub(crate) vtcr: u64,
    /// The VM got a new VMID (or VMIDs are off): invalidate this CPU's
    /// entries for it before entering.
    pub(crate) new_vmid: bool,
    /// The generation `vttbr` belongs to (0: already stale).
    generation: u64,
}

impl Stage2Entry {
    /// Whether the VMID went stale since [`prepare_entry`]: check with
    /// interrupts off right before entering.
    pub(crate) fn vmid_changed(&self) -> bool {
        VMIDS.bits() != 0 && VMIDS.generation() != self.generation
    }
}

/// Updates the VM's VMID if stale (may IPI every CPU) and returns the
/// entry values. Takes `mmu_lock`; interrupts on.
pub(crate) fn prepare_entry(vm: &Vm) -> Stage2Entry {
    vm.mmu().with_stage2(|s2| s2.prepare_entry())
}

/// What [`stage2_fault`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage2Fault {
    /// Mapped (or raced): re-enter the guest.
    Mapped,
    /// No memslot (or a write to a read-only one): emulate as MMIO.
    Mmio,
}

/// Handles a stage-2 translation or permission fault at `gpa`
/// (`kvm_handle_guest_abort()` → `user_mem_abort()`), preemptible, in the
/// VM's creator task.
pub(crate) fn stage2_fault(vm: &Vm, gpa: u64, write: bool) -> Result<Stage2Fault, Errno> {
    let gfn = gpa >> pgtable::PAGE_SHIFT;
    let task = kernel::current!();
    let mm = task.mm().ok_or(Errno::EFAULT)?;
    let mmu = vm.mmu();
    let page = match mmu.resolve(mm, gfn, write).map_err(|e| Errno(-e.to_errno()))? {
        Resolution::Mmio => return Ok(Stage2Fault::Mmio),
        Resolution::Page(p) => p,
    };
    let mut cache = PageTables::new();
    mmu.with_stage2(|s2| cache.refill_from(&mut s2.pt));
    cache.topup()?;
    match mmu.install(&page, |s2, hp| s2.map_fault(&mut cache, gpa, hp)) {
        None => return Ok(Stage2Fault::Mapped),
        Some(r) => r?,
    }
    if page.writable {
        page.mark_dirty();
        if page.dirty_logging {
            vm.mark_page_dirty(gfn);
        }
    }
    Ok(Stage2Fault::Mapped)
}

/// An access-flag fault at `gpa` (`handle_access_fault()`): marks the leaf
/// young; `false` if nothing is mapped there (then it is a translation
/// fault after all).
pub(crate) fn access_fault(vm: &Vm, gpa: u64) -> bool {
    vm.mmu().with_stage2(|s2| s2.mkyoung(gpa))
}

#[kunit_tests(kvm_rs_arm64_stage2)]
mod tests {
    use super::*;

    #[test]
    fn linear_map_round_trip() -> Result {
        let b = KBox::new(0x1122_3344u64, GFP_KERNEL)?;
        let va = core::ptr::from_ref::<u64>(&*b) as u64;
        let pa = lm_to_phys(va);
        assert_eq!(phys_to_lm(pa), va);
        // The physical address is inside RAM: below 2^48 and at or above
        // the start of memory.
        assert!(pa < 1 << 48 && pa >= phys_offset());
        assert_eq!(pa & 0xfff, va & 0xfff);
        Ok(())
    }

    #[test]
    fn map_age_wrprotect_unmap_free_everything() -> Result {
        let base = live_tables();
        for bits in [36u32, 40, 44] {
            let mut s2 = VmStage2::new(bits)?;
            let mut cache = PageTables::new();
            cache.topup()?;
            let gpa = 0x8000_0000 + 5 * PAGE_SIZE;
            s2.tables.map(&mut cache, gpa, 0x9000_0000, Prot { write: true, exec: true, device: false })?;
            s2.pt.refill_from(&mut cache);
            let gfn = gpa >> 12;
            assert!(s2.test_age(gfn, gfn + 1));
            assert!(s2.age(gfn, gfn + 1));
            assert!(!s2.test_age(gfn, gfn + 1));
            assert!(s2.mkyoung(gpa));
            s2.wrprotect(gfn, gfn + 1);
            assert!(s2.wp_flush_due);
            // Entered: the flushes run the TLBI in the VM's context.
            let e = s2.prepare_entry();
            assert!(!e.vmid_changed());
            assert_eq!(e.vttbr & 0xffff_ffff_ffff, s2.tables.root().addr());
            s2.flush_wrprotected();
            assert!(!s2.wp_flush_due);
            s2.unmap(0, u64::MAX);
            assert_eq!(s2.tables.nr_tables(&s2.pt), 0);
            drop(s2);
            drop(cache);
            assert_eq!(live_tables(), base);
        }
        assert!(VmStage2::new(49).is_err());
        Ok(())
    }

    #[test]
    fn two_vms_get_distinct_vmids() -> Result {
        let mut a = VmStage2::new(40)?;
        let mut b = VmStage2::new(40)?;
        let ea = a.prepare_entry();
        let eb = b.prepare_entry();
        if VMIDS.bits() != 0 && !ea.vmid_changed() && !eb.vmid_changed() {
            assert_ne!(ea.vttbr >> 48, eb.vttbr >> 48);
            assert_ne!(ea.vttbr >> 48, 0);
        }
        a.flush_all();
        Ok(())
    }
}
