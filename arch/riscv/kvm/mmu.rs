// SPDX-License-Identifier: GPL-2.0

//! Kernel glue of the G-stage MMU and the VMIDs: page-table memory from the
//! page allocator ([`PageTables`]), the host-wide VMID allocator
//! ([`VMIDS`]), and the TLB flushes.
//!
//! The logic is in the pure files: `gstage.rs` (page tables; read its top
//! comment for how the run loop maps, unmaps and flushes) and `vmid.rs`
//! (generations and rollover).
//!
//! # For the run loop
//!
//! `stage2.rs` does all of the following for each VM ([`VmStage2`]); the run
//! loop only calls `stage2::prepare_entry()` and `stage2::gstage_fault()`.
//! What it does:
//!
//! - VM creation: `let mut pt = PageTables::new();
//!   let g = VmGStage::new(&mut pt, mode)?` (may sleep; `mode` from the
//!   VM's GPA bits, `Mode::from_levels`), and a [`VmVmid::new`].
//! - Before each entry: [`vmid_update`] (may IPI every CPU on rollover;
//!   preemptible context, no spinlock but the VMID lock it takes), then
//!   `hgatp = g.hgatp(VMIDS.current(&vm_vmid)?)`, re-checked with
//!   interrupts off (see `vmid.rs`). With VMIDs off (`VMIDS.bits() == 0`),
//!   [`csr::hfence_gvma_all`] after every `hgatp` write.
//! - G-stage fault: `pt.topup()?` (may sleep; each vCPU can keep its own
//!   `PageTables` as its page cache), resolve the page, take the MMU lock,
//!   do the `mmu_invalidate` retry check, then
//!   `g.map(&mut pt, gpa, hpa, size, prot, &mut flush)`. `PageTables` never
//!   sleeps under the lock: it takes tables from its cache, then tries
//!   `GFP_NOWAIT`. After unlocking: [`local_flush`] on this hart for the
//!   faulting GPA always, the flush range on every hart that may run the
//!   VM when [`Flush::is_needed`], then `flush.finish(&mut pt)`.
//! - VM destruction: `g.destroy(&mut pt)` once no vCPU can run.
//!
//! [`VmVmid::new`]: super::vmid::VmVmid::new
//! [`VmStage2`]: super::stage2::VmStage2

use super::{
    csr,
    gstage::{
        FlushRange,
        GStage,
        TableMem,
        TablePa,
        ROOT_SIZE,
        TABLE_SIZE, //
    },
    vmid::{
        self,
        SpaceLock,
        Update,
        VmVmid,
        VmidAllocator,
        VmidSpace, //
    },
};
use crate::kvm::abi::Errno;
use core::sync::atomic::{
    AtomicU64,
    AtomicUsize,
    Ordering, //
};
use kernel::{bindings, prelude::*};

/// A VM's G-stage tree over kernel pages.
pub(crate) type VmGStage = GStage<PageTables>;
/// The flush of a [`VmGStage`] operation.
pub(crate) type Flush = super::gstage::Flush<PageTables>;

/// Page tables (and roots) allocated and not yet freed, across all VMs.
static LIVE_TABLES: AtomicUsize = AtomicUsize::new(0);

/// The number of live page tables and roots (for leak checks).
pub(crate) fn live_tables() -> usize {
    LIVE_TABLES.load(Ordering::Relaxed)
}

/// Tables a [`PageTables`] keeps ready: one `map` needs at most one per
/// level below the root of the deepest mode.
const CACHE_TABLES: usize = 5;

/// `__GFP_ACCOUNT` (charge the caller's memory cgroup), which bindgen does
/// not export on its own.
const GFP_ACCOUNT: bindings::gfp_t = bindings::GFP_KERNEL_ACCOUNT & !bindings::GFP_KERNEL;

/// `kernel_map.va_pa_offset`: linear-map virtual address minus physical
/// address (`__pa()`/`__va()` of riscv64 without `CONFIG_DEBUG_VIRTUAL`).
///
/// Needs a patch: `rust/kernel` has no `__pa`/`__va` (or `Page::phys()`)
/// for a module; this reads the exported `kernel_map` instead.
pub(crate) fn va_pa_offset() -> u64 {
    // SAFETY: `kernel_map` is set up during early boot and only read after.
    let offset = unsafe { core::ptr::addr_of!(bindings::kernel_map.va_pa_offset).read() };
    offset as u64
}

/// Allocates `size` zeroed bytes (4 KiB or 16 KiB) of naturally aligned
/// pages (an order-0 or order-2 buddy block) and returns their physical
/// address.
///
/// Needs a patch: `kernel::page::Page` only allocates order 0 and has no
/// physical address; this uses `alloc_pages_exact()` directly.
fn alloc_zeroed(size: usize, gfp: bindings::gfp_t) -> Result<TablePa, Errno> {
    // SAFETY: Any size and these flags are valid; `__GFP_COMP` is not set.
    let va = unsafe { bindings::alloc_pages_exact_noprof(size, gfp | bindings::__GFP_ZERO) };
    if va.is_null() {
        return Err(Errno::ENOMEM);
    }
    let Some(pa) = TablePa::new((va as u64).wrapping_sub(va_pa_offset())) else {
        // Not reachable: page-allocator memory is in the linear map, page
        // aligned, below 2^56.
        // SAFETY: `va` was just allocated with `size`.
        unsafe { bindings::free_pages_exact(va, size) };
        return Err(Errno::ENOMEM);
    };
    LIVE_TABLES.fetch_add(1, Ordering::Relaxed);
    Ok(pa)
}

/// The linear-map address of a table.
fn table_va(table: TablePa) -> *mut u64 {
    table.addr().wrapping_add(va_pa_offset()) as *mut u64
}

/// Frees what [`alloc_zeroed`] returned.
///
/// # Safety
///
/// `table` came from `alloc_zeroed(size, _)` and is not used afterwards.
unsafe fn free_zeroed(table: TablePa, size: usize) {
    // SAFETY: By the caller, this is a live `alloc_pages_exact()` block of
    // `size` bytes at this linear-map address.
    unsafe { bindings::free_pages_exact(table_va(table).cast(), size) };
    LIVE_TABLES.fetch_sub(1, Ordering::Relaxed);
}

/// G-stage table memory from the page allocator, with a small cache that
/// is filled outside the MMU lock (upstream's `kvm_mmu_memory_cache`).
///
/// Allocations are charged to the caller's memory cgroup.
///
/// # Invariants
///
/// `cache[..len]` are live, zeroed tables from [`alloc_zeroed`].
pub(crate) struct PageTables {
    cache: [Option<TablePa>; CACHE_TABLES],
    len: usize,
}

impl Default for PageTables {
    fn default() -> Self {
        Self::new()
    }
}

impl PageTables {
    /// An empty cache.
    pub(crate) const fn new() -> Self {
        PageTables { cache: [None; CACHE_TABLES], len: 0 }
    }

    /// Fills the cache (`GFP_KERNEL_ACCOUNT`, may sleep): call it before
    /// taking the MMU lock, as upstream's `kvm_mmu_topup_memory_cache()`.
    pub(crate) fn topup(&mut self) -> Result<(), Errno> {
        self.topup_to(CACHE_TABLES)
    }

    /// Fills the cache up to `n` tables (at most its capacity), as
    /// [`Self::topup`]: a fault needs at most one table per level below
    /// the root of the VM's mode.
    pub(crate) fn topup_to(&mut self, n: usize) -> Result<(), Errno> {
        let n = n.min(CACHE_TABLES);
        while self.len < n {
            let t = alloc_zeroed(TABLE_SIZE, bindings::GFP_KERNEL_ACCOUNT)?;
            if let Some(slot) = self.cache.get_mut(self.len) {
                *slot = Some(t);
                self.len += 1;
            }
        }
        Ok(())
    }

    /// Moves cached tables from `other` into this cache until it holds `n`
    /// (at most its capacity) or `other` is empty. Never allocates or
    /// sleeps: a fault keeps the VM's spare tables this way instead of
    /// freeing and allocating them again.
    pub(crate) fn refill_from(&mut self, other: &mut PageTables, n: usize) {
        let n = n.min(CACHE_TABLES);
        while self.len < n && other.len > 0 {
            other.len -= 1;
            let Some(t) = other.cache.get_mut(other.len).and_then(Option::take) else {
                continue;
            };
            match self.cache.get_mut(self.len) {
                Some(slot) => {
                    *slot = Some(t);
                    self.len += 1;
                }
                // Not reachable (`len < n <= CACHE_TABLES`); never leak.
                // SAFETY: `t` was a live cached table, now owned here only.
                None => unsafe { free_zeroed(t, TABLE_SIZE) },
            }
        }
    }

    /// Tables in the cache.
    pub(crate) fn cached(&self) -> usize {
        self.len
    }
}

impl Drop for PageTables {
    fn drop(&mut self) {
        for t in self.cache.iter_mut().filter_map(Option::take) {
            // SAFETY: Cached tables are live and owned by the cache.
            unsafe { free_zeroed(t, TABLE_SIZE) };
        }
    }
}

/// The entry `index` of `table` as an atomic.
///
/// # Safety
///
/// `table` is a live table or root from [`alloc_zeroed`], `index` is below
/// its entries.
unsafe fn entry<'a>(table: TablePa, index: usize) -> &'a AtomicU64 {
    // SAFETY: By the caller, the entry is inside a live, 8-byte aligned
    // allocation in the linear map; it is only ever accessed atomically
    // (here and by the hardware walker).
    unsafe { AtomicU64::from_ptr(table_va(table).add(index)) }
}

// SAFETY: Tables come zeroed from the page allocator, naturally aligned
// (order 0 or 2), in the linear map; any `PageTables` may free any table
// (they all go back to the page allocator); entries are accessed as
// `AtomicU64`, with release stores.
unsafe impl TableMem for PageTables {
    fn alloc_table(&mut self) -> Result<TablePa, Errno> {
        if self.len > 0 {
            self.len -= 1;
            if let Some(t) = self.cache.get_mut(self.len).and_then(Option::take) {
                return Ok(t);
            }
        }
        // The MMU lock may be a spinlock: do not sleep.
        alloc_zeroed(TABLE_SIZE, bindings::GFP_NOWAIT | bindings::__GFP_NOWARN | GFP_ACCOUNT)
    }

    fn alloc_root(&mut self) -> Result<TablePa, Errno> {
        // An order-2 block: 16 KiB, 16 KiB aligned, as hgatp needs.
        alloc_zeroed(ROOT_SIZE, bindings::GFP_KERNEL_ACCOUNT)
    }

    unsafe fn free_table(&mut self, table: TablePa) {
        // SAFETY: By the caller, a live table of ours, not used again.
        unsafe { free_zeroed(table, TABLE_SIZE) };
    }

    unsafe fn free_root(&mut self, root: TablePa) {
        // SAFETY: By the caller, a live root of ours, not used again.
        unsafe { free_zeroed(root, ROOT_SIZE) };
    }

    unsafe fn read(&self, table: TablePa, index: usize) -> u64 {
        // SAFETY: By the caller.
        unsafe { entry(table, index) }.load(Ordering::Relaxed)
    }

    unsafe fn write(&mut self, table: TablePa, index: usize, pte: u64) {
        // SAFETY: By the caller.
        unsafe { entry(table, index) }.store(pte, Ordering::Release)
    }

    unsafe fn fetch_and(&mut self, table: TablePa, index: usize, mask: u64) -> u64 {
        // SAFETY: By the caller.
        unsafe { entry(table, index) }.fetch_and(mask, Ordering::AcqRel)
    }
}

/// Flushes `range` of `vmid` on this hart: one `hfence.gvma` per step, or
/// the whole VMID beyond 512 steps (`kvm_riscv_local_hfence_gvma_vmid_gpa()`)
/// or for [`FlushRange::All`].
pub(crate) fn local_flush(vmid: u64, range: FlushRange) {
    match (range, range.steps()) {
        (FlushRange::Range { start, shift, .. }, Some(steps)) if steps <= 512 => {
            for i in 0..steps {
                csr::hfence_gvma_vmid_gpa(start.wrapping_add(i << shift), vmid);
            }
        }
        (FlushRange::None, _) => {}
        _ => csr::hfence_gvma_vmid(vmid),
    }
}

/// Runs on each CPU for [`flush_all_cpus`].
///
/// # Safety
///
/// Called by `on_each_cpu_cond_mask()` only.
unsafe extern "C" fn hfence_gvma_all_cb(_info: *mut c_void) {
    csr::hfence_gvma_all();
}

/// Flushes the whole G-stage TLB of every online CPU and waits
/// (`on_each_cpu_mask(cpu_online_mask, __local_hfence_gvma_all, NULL, 1)`).
/// The IPI also makes every CPU that runs a guest exit.
pub(crate) fn flush_all_cpus() {
    // SAFETY: The callback is a valid function that ignores its argument;
    // `__cpu_online_mask` is a static cpumask; waiting is allowed in the
    // callers' context (preemptible, interrupts on, as upstream).
    unsafe {
        bindings::on_each_cpu_cond_mask(
            None,
            Some(hfence_gvma_all_cb),
            core::ptr::null_mut(),
            true,
            core::ptr::addr_of!(bindings::__cpu_online_mask),
        )
    };
}

kernel::sync::global_lock! {
    // SAFETY: Initialized by `vmid_init()`, from `Host::probe()` before any
    // VM exists; nothing else uses it first.
    unsafe(uninit) static VMID_SPACE: SpinLock<VmidSpace> = VmidSpace::new();
}

/// The host-wide VMID lock (upstream's `vmid_lock`).
pub(crate) struct GlobalVmidLock;

impl SpaceLock for GlobalVmidLock {
    fn with_locked<R>(&self, f: impl FnOnce(&mut VmidSpace) -> R) -> R {
        let mut guard = VMID_SPACE.lock();
        f(&mut guard)
    }
}

/// The host-wide VMID allocator.
pub(crate) static VMIDS: VmidAllocator<GlobalVmidLock> = VmidAllocator::new(GlobalVmidLock);

/// The VMID bits the `hgatp` probe found (before the cap).
static HW_VMID_BITS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// `num_possible_cpus()`.
fn possible_cpus() -> u32 {
    // SAFETY: `__num_possible_cpus` is set during boot and only read after.
    unsafe { core::ptr::addr_of!(bindings::__num_possible_cpus).read() }
}

/// Probes the VMID width and sets up [`VMIDS`]
/// (`kvm_riscv_gstage_vmid_detect()`), capped by the `vmid_bits` module
/// parameter. Returns the bits in use.
///
/// # Safety
///
/// Called once, from `Host::probe()`, with the H extension present, before
/// any VM exists.
pub(crate) unsafe fn vmid_init(levels: u32) -> u32 {
    // SAFETY: Called once (caller), before any use of the lock.
    unsafe { VMID_SPACE.init() };
    let readback = {
        let _irqs_off = kernel::interrupt::local_interrupt_disable();
        csr::probe_hgatp_vmid(levels)
    };
    let hw = vmid::probe_bits(readback);
    HW_VMID_BITS.store(hw, Ordering::Relaxed);
    let cap = crate::module_parameters::vmid_bits.value();
    let bits = vmid::usable_bits(hw, cap, possible_cpus());
    VMIDS.init(bits);
    pr_info!("riscv64 VMIDs: {} bits in hgatp, {} in use (vmid_bits={})\n", hw, bits, cap);
    bits
}

/// Gives the VM a VMID of the current generation if it has none, flushing
/// every CPU on rollover (`kvm_riscv_gstage_vmid_update()`). On
/// [`Update::New`] every vCPU of the VM must reload `hgatp`.
pub(crate) fn vmid_update(vm: &VmVmid) -> Update {
    VMIDS.update(vm, flush_all_cpus)
}

/// Guest-memory access from HS-mode for the KUnit tests of the G-stage
/// (`mmu.rs`, `stage2.rs`).
#[cfg(CONFIG_KUNIT = "y")]
pub(crate) mod guest_mem {
    use super::*;

    // The hardware check: `hlv.d`/`hsv.d` from HS-mode access guest
    // physical memory through `hgatp` (with `vsatp` Bare), so the CPU
    // itself walks the tables built here.

    core::arch::global_asm!(
        ".pushsection .text.kvm_rs_gstage_test_trap, \"ax\", @progbits",
        ".balign 4",
        ".globl kvm_rs_gstage_test_trap",
        "kvm_rs_gstage_test_trap:",
        // The faulting `hlv.d`/`hsv.d` is 4 bytes: skip it, and store
        // scause and htval at a0.
        "csrr a1, sepc",
        "addi a1, a1, 4",
        "csrw sepc, a1",
        "csrr a1, scause",
        "sd a1, 0(a0)",
        "csrr a1, 0x643", // htval
        "sd a1, 8(a0)",
        "sret",
        ".popsection",
    );

    extern "C" {
        /// The trap stub above; only ever jumped to through `stvec`.
        fn kvm_rs_gstage_test_trap();
    }

    /// `vsatp`.
    pub(crate) const CSR_VSATP: u32 = 0x280;
    /// `hgatp`.
    pub(crate) const CSR_HGATP: u32 = 0x680;
    /// Load guest-page fault.
    pub(crate) const LOAD_GUEST_PAGE_FAULT: u64 = 21;
    /// Store/AMO guest-page fault.
    pub(crate) const STORE_GUEST_PAGE_FAULT: u64 = 23;

    /// The body of [`guest_access`], for a load or a store: `$access` (one
    /// `hlv.d` or `hsv.d`, an `asm!` template line naming `{gpa}` and the
    /// value operand declared by `$value`) runs with `stvec` on the trap
    /// stub `$stub` (whose record goes to `$trap`, the `a0` it is given),
    /// `vsatp` Bare and `hgatp` = `$hgatp`; all three are restored and the
    /// G-stage TLB flushed around the access. Expands to the `asm!` alone:
    /// the caller's `unsafe` block and its SAFETY comment cover it.
    macro_rules! hgatp_access {
        ($access:literal, $stub:expr, $hgatp:expr, $gpa:expr, $trap:expr, $($value:tt)+) => {
            core::arch::asm!(
                "csrrw {stvec}, stvec, {stub}",
                "csrrw {vsatp}, {csr_vsatp}, zero",
                "csrrw {hgatp}, {csr_hgatp}, {hgatp}",
                ".insn r 0x73, 0, 0x31, x0, x0, x0",
                $access,
                "csrw {csr_hgatp}, {hgatp}",
                "csrw {csr_vsatp}, {vsatp}",
                ".insn r 0x73, 0, 0x31, x0, x0, x0",
                "csrw stvec, {stvec}",
                stub = in(reg) $stub,
                stvec = out(reg) _,
                vsatp = out(reg) _,
                hgatp = inout(reg) $hgatp => _,
                gpa = in(reg) $gpa,
                $($value)+
                csr_vsatp = const CSR_VSATP,
                csr_hgatp = const CSR_HGATP,
                in("a0") $trap,
                out("a1") _,
                options(nostack),
            )
        };
    }

    /// Loads (`store` is `None`) or stores 8 bytes at guest physical `gpa`
    /// through `hgatp_value`, as a guest with `vsatp` Bare would. Returns
    /// the value loaded and the `(scause, htval)` of a trap (0, 0 if none).
    pub(crate) fn guest_access(hgatp_value: u64, gpa: u64, store: Option<u64>) -> (u64, u64, u64) {
        let mut trap = [0u64; 2];
        let mut value = 0u64;
        let stub = kvm_rs_gstage_test_trap as *const () as usize;
        let _irqs_off = kernel::interrupt::local_interrupt_disable();
        // SAFETY: Interrupts are off and no guest runs on this hart, so
        // borrowing stvec, vsatp and hgatp is invisible to the rest of the
        // kernel: all three are restored and the G-stage TLB flushed before
        // the block ends. The only trap expected is a guest-page fault of
        // the access, which the stub records in `trap` (a0, kept live) and
        // skips; the tables at `hgatp_value` are built by the caller and
        // map only memory the caller owns.
        unsafe {
            match store {
                None => hgatp_access!(
                    ".insn r 0x73, 4, 0x36, {value}, {gpa}, x0", // hlv.d value, (gpa)
                    stub,
                    hgatp_value,
                    gpa,
                    trap.as_mut_ptr(),
                    value = inout(reg) value,
                ),
                Some(v) => hgatp_access!(
                    ".insn r 0x73, 4, 0x37, x0, {gpa}, {v}", // hsv.d v, (gpa)
                    stub,
                    hgatp_value,
                    gpa,
                    trap.as_mut_ptr(),
                    v = in(reg) v,
                ),
            }
        }
        (value, trap[0], trap[1])
    }

    /// The pattern a test page holds at byte offset `off`.
    pub(crate) fn pattern(pa: u64, off: u64) -> u64 {
        0xa5a5_0000_0000_0000 ^ (pa + off)
    }

    /// A zeroed 4K page with [`pattern`], freed on drop.
    pub(crate) struct DataPage(TablePa);

    impl DataPage {
        pub(crate) fn new() -> Result<Self> {
            let t = alloc_zeroed(TABLE_SIZE, bindings::GFP_KERNEL).map_err(|_| ENOMEM)?;
            let p = DataPage(t);
            for i in 0..512 {
                p.set(i, pattern(t.addr(), i * 8));
            }
            Ok(p)
        }

        pub(crate) fn pa(&self) -> u64 {
            self.0.addr()
        }

        pub(crate) fn get(&self, i: u64) -> u64 {
            // SAFETY: The page is live, `i < 512`.
            unsafe { entry(self.0, i as usize) }.load(Ordering::Relaxed)
        }

        pub(crate) fn set(&self, i: u64, v: u64) {
            // SAFETY: The page is live, `i < 512`.
            unsafe { entry(self.0, i as usize) }.store(v, Ordering::Relaxed)
        }
    }

    impl Drop for DataPage {
        fn drop(&mut self) {
            // SAFETY: Allocated by `alloc_zeroed(TABLE_SIZE)`; its mapping is
            // gone (the tree is destroyed before the page is dropped).
            unsafe { free_zeroed(self.0, TABLE_SIZE) };
        }
    }
}

#[kunit_tests(kvm_rs_riscv_gstage)]
mod gstage_tests {
    use super::super::gstage::{
        hgatp,
        Mode,
        PageSize,
        Prot,
        PTE_A,
        PTE_D,
        PTE_G,
        PTE_R,
        PTE_U,
        PTE_V,
        PTE_W,
        PTE_X, //
    };
    use super::*;

    const K4: u64 = 0x1000;
    const M2: u64 = 0x20_0000;
    const G1: u64 = 0x4000_0000;
    const RO: Prot = Prot { read: true, write: false, exec: false };

    fn modes() -> [Mode; 3] {
        [Mode::Sv39x4, Mode::Sv48x4, Mode::Sv57x4]
    }

    fn map(g: &mut VmGStage, pt: &mut PageTables, gpa: u64, hpa: u64, size: PageSize, prot: Prot) -> Result<FlushRange, Errno> {
        let mut f = Flush::new();
        let r = g.map(pt, gpa, hpa, size, prot, &mut f);
        let range = f.range();
        f.finish(pt);
        r.map(|()| range)
    }

    fn unmap(g: &mut VmGStage, pt: &mut PageTables, gpa: u64, size: u64) -> Result<(FlushRange, usize), Errno> {
        let mut f = Flush::new();
        let r = g.unmap_range(pt, gpa, size, &mut f);
        let out = (f.range(), f.nr_freed());
        f.finish(pt);
        r.map(|()| out)
    }

    #[test]
    fn root_is_16k_aligned_kernel_memory() -> Result {
        let base = live_tables();
        let mut pt = PageTables::new();
        for mode in modes() {
            assert_eq!(Mode::from_levels(mode.levels()), Some(mode));
            let g = VmGStage::new(&mut pt, mode).map_err(|_| ENOMEM)?;
            assert_eq!(g.mode(), mode);
            assert_eq!(g.root().addr() % ROOT_SIZE as u64, 0);
            // All 2048 entries are zero and readable through the linear map.
            for i in 0..2048 {
                // SAFETY: The root is live; `i < 2048`.
                assert_eq!(unsafe { pt.read(g.root(), i) }, 0);
            }
            let h = g.hgatp(3);
            assert_eq!(h >> 60, mode.hgatp_mode());
            assert_eq!((h >> 44) & 0x3fff, 3);
            assert_eq!((h & ((1 << 44) - 1)) << 12, g.root().addr());
            assert_eq!(h, hgatp(mode, 3, g.root()));
            assert_eq!(live_tables(), base + 1);
            g.destroy(&mut pt);
        }
        assert_eq!(live_tables(), base);
        Ok(())
    }

    #[test]
    fn map_split_unmap_on_kernel_pages() -> Result {
        let base = live_tables();
        for mode in modes() {
            let mut pt = PageTables::new();
            pt.topup().map_err(|_| ENOMEM)?;
            assert_eq!(pt.cached(), CACHE_TABLES);
            let mut g = VmGStage::new(&mut pt, mode).map_err(|_| ENOMEM)?;
            let levels = mode.levels() as usize;

            // A 4K page: one table per level below the root, from the cache.
            assert_eq!(map(&mut g, &mut pt, 0x8000_0000, 0x1_2345_6000, PageSize::Size4K, Prot::RWX), Ok(FlushRange::None));
            assert_eq!(g.nr_tables(&pt), levels - 1);
            assert_eq!(pt.cached(), CACHE_TABLES - (levels - 1));
            let l = g.walk(&pt, 0x8000_0abc).ok_or(EINVAL)?;
            assert_eq!((l.hpa, l.level, l.size()), (0x1_2345_6abc, 0, Some(PageSize::Size4K)));
            assert_eq!(l.pte & 0xff, PTE_V | PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D);
            assert_eq!(l.pte & PTE_G, 0);
            assert_eq!((l.pte >> 10) << 12, 0x1_2345_6000);

            // A 1G leaf, then a 4K inside it: split twice, rest kept.
            let gb = 5 * G1;
            let huge = PageSize::from_bytes(G1).ok_or(EINVAL)?;
            assert_eq!(map(&mut g, &mut pt, gb, 0x40_0000_0000, huge, RO), Ok(FlushRange::None));
            let before = g.nr_tables(&pt);
            let r = map(&mut g, &mut pt, gb + M2 + 3 * K4, 0x7000, PageSize::Size4K, Prot::RWX);
            assert_eq!(r, Ok(FlushRange::Range { start: gb + M2 + 3 * K4, end: gb + M2 + 4 * K4, shift: 12 }));
            assert_eq!(g.nr_tables(&pt), before + 2);
            assert_eq!(g.walk(&pt, gb + M2 + 3 * K4).map(|l| l.hpa), Some(0x7000));
            let l = g.walk(&pt, gb + M2 + 4 * K4).ok_or(EINVAL)?;
            assert_eq!((l.hpa, l.level, l.prot), (0x40_0000_0000 + M2 + 4 * K4, 0, RO));
            let l = g.walk(&pt, gb + 7 * M2 + 9).ok_or(EINVAL)?;
            assert_eq!((l.hpa, l.size()), (0x40_0000_0000 + 7 * M2 + 9, Some(PageSize::Size2M)));
            // Replacing the split-off 2M leaf with new rights flushes it.
            let r = map(&mut g, &mut pt, gb + 7 * M2, 0x40_0000_0000 + 7 * M2, PageSize::Size2M, Prot::RX);
            assert_eq!(r, Ok(FlushRange::Range { start: gb + 7 * M2, end: gb + 8 * M2, shift: 21 }));

            // Misaligned and out-of-range requests change nothing.
            assert_eq!(map(&mut g, &mut pt, gb + K4, 0, PageSize::Size2M, RO), Err(Errno::EINVAL));
            assert_eq!(map(&mut g, &mut pt, mode.gpa_limit(), 0, PageSize::Size4K, RO), Err(Errno::EFAULT));
            assert_eq!(unmap(&mut g, &mut pt, !0xfff, 2 * K4), Err(Errno::EFAULT));

            // Write-protect, age.
            let mut f = Flush::new();
            g.wrprotect_range(&mut pt, 0x8000_0000, K4, &mut f).map_err(|_| EINVAL)?;
            assert_eq!(f.range(), FlushRange::Range { start: 0x8000_0000, end: 0x8000_1000, shift: 12 });
            f.finish(&mut pt);
            assert_eq!(g.walk(&pt, 0x8000_0000).map(|l| l.prot.write), Some(false));
            assert_eq!(g.age_range(&mut pt, 0x8000_0000, K4), Ok(true));
            assert_eq!(g.test_young_range(&mut pt, 0x8000_0000, K4), Ok(false));

            // Unmap the whole split 1G: its two tables are unlinked, freed
            // after the flush.
            let (r, freed) = unmap(&mut g, &mut pt, gb, G1).map_err(|_| EINVAL)?;
            assert_eq!((r, freed), (FlushRange::All, 2));
            assert_eq!(g.walk(&pt, gb + M2 + 3 * K4), None);
            assert_eq!(g.nr_tables(&pt), levels - 1);

            g.destroy(&mut pt);
            drop(pt);
            assert_eq!(live_tables(), base);
        }
        Ok(())
    }

    #[test]
    fn empty_cache_falls_back_to_nowait() -> Result {
        let base = live_tables();
        let mut pt = PageTables::new();
        let mut g = VmGStage::new(&mut pt, Mode::Sv48x4).map_err(|_| ENOMEM)?;
        assert_eq!(pt.cached(), 0);
        assert_eq!(map(&mut g, &mut pt, 0, 0, PageSize::Size4K, RO), Ok(FlushRange::None));
        assert_eq!(g.nr_tables(&pt), 3);
        let (r, freed) = unmap(&mut g, &mut pt, 0, 1 << 50).map_err(|_| EINVAL)?;
        assert_eq!((r, freed), (FlushRange::All, 3));
        assert_eq!(live_tables(), base + 1);
        g.destroy(&mut pt);
        assert_eq!(live_tables(), base);
        Ok(())
    }

    #[test]
    fn local_flushes_run() {
        // Nothing to check but that the encodings are legal in HS-mode.
        local_flush(0, FlushRange::None);
        local_flush(0, FlushRange::Range { start: 0x8000_0000, end: 0x8000_4000, shift: 12 });
        local_flush(0, FlushRange::Range { start: 0, end: G1, shift: 12 });
        local_flush(0, FlushRange::All);
        csr::hfence_gvma_all();
        flush_all_cpus();
    }

    use super::guest_mem::*;

    #[test]
    fn hardware_walks_the_tables() -> Result {
        let base = live_tables();
        let host_levels = super::super::Host::max_pgd_levels();
        let mut tested = 0;
        for mode in modes().into_iter().filter(|m| m.levels() <= host_levels) {
            let data = DataPage::new()?;
            let other = DataPage::new()?;
            let mut pt = PageTables::new();
            let mut g = VmGStage::new(&mut pt, mode).map_err(|_| ENOMEM)?;
            // VMID 0 is never handed to a VM while VMIDs are in use.
            let h = g.hgatp(0);
            let off = 0x128;

            // A 4K page, low and at the top of the root (its 2 extra bits).
            let low = 0x8000_0000;
            let top = mode.gpa_limit() - 3 * K4;
            map(&mut g, &mut pt, low, data.pa(), PageSize::Size4K, Prot::RWX).map_err(|_| EINVAL)?;
            map(&mut g, &mut pt, top, data.pa(), PageSize::Size4K, RO).map_err(|_| EINVAL)?;
            assert_eq!(guest_access(h, low + off, None), (pattern(data.pa(), off), 0, 0));
            assert_eq!(guest_access(h, top + off, None), (pattern(data.pa(), off), 0, 0));

            // A 2M and a 1G leaf around the page (read only: only the data
            // page is ever accessed through them).
            let m2 = 7 * M2;
            let g1 = 4 * G1;
            map(&mut g, &mut pt, m2, data.pa() & !(M2 - 1), PageSize::Size2M, RO).map_err(|_| EINVAL)?;
            map(&mut g, &mut pt, g1, data.pa() & !(G1 - 1), PageSize::Size1G, RO).map_err(|_| EINVAL)?;
            let in_m2 = m2 + (data.pa() & (M2 - 1)) + off;
            let in_g1 = g1 + (data.pa() & (G1 - 1)) + off;
            assert_eq!(guest_access(h, in_m2, None), (pattern(data.pa(), off), 0, 0));
            assert_eq!(guest_access(h, in_g1, None), (pattern(data.pa(), off), 0, 0));

            // A store through the writable page lands in the data page; one
            // through the read-only page faults.
            assert_eq!(guest_access(h, low + 8, Some(0x1234_5678)), (0, 0, 0));
            assert_eq!(data.get(1), 0x1234_5678);
            assert_eq!(guest_access(h, top + 16, Some(1)), (0, STORE_GUEST_PAGE_FAULT, (top + 16) >> 2));
            assert_eq!(data.get(2), pattern(data.pa(), 16));

            // Write-protect the writable page: stores fault, loads work.
            let mut f = Flush::new();
            g.wrprotect_range(&mut pt, low, K4, &mut f).map_err(|_| EINVAL)?;
            assert!(f.is_needed());
            f.finish(&mut pt);
            assert_eq!(guest_access(h, low + 8, Some(7)), (0, STORE_GUEST_PAGE_FAULT, (low + 8) >> 2));
            assert_eq!(guest_access(h, low + 8, None), (0x1234_5678, 0, 0));

            // Split the 2M by mapping another page in it: the page moves,
            // its neighbours do not.
            let in_m2_page = in_m2 & !(K4 - 1);
            map(&mut g, &mut pt, in_m2_page, other.pa(), PageSize::Size4K, RO).map_err(|_| EINVAL)?;
            assert_eq!(guest_access(h, in_m2, None), (pattern(other.pa(), off), 0, 0));
            // (Its neighbours are host memory that is not ours to read.)
            let next = if in_m2_page + K4 < m2 + M2 { in_m2_page + K4 } else { m2 };
            let l = g.walk(&pt, next).ok_or(EINVAL)?;
            assert_eq!((l.hpa, l.level), ((data.pa() & !(M2 - 1)) + (next - m2), 0));

            // Unmapped (and never mapped) GPAs fault with the GPA in htval.
            // `low`'s last two tables go (the ones above hold `m2` and `g1`
            // too); `top` has a root entry, and its whole path, to itself.
            let (_, freed) = unmap(&mut g, &mut pt, low, K4).map_err(|_| EINVAL)?;
            assert_eq!(freed, 2);
            let (_, freed) = unmap(&mut g, &mut pt, top, K4).map_err(|_| EINVAL)?;
            assert_eq!(freed, mode.levels() as usize - 1);
            assert_eq!(guest_access(h, top, None), (0, LOAD_GUEST_PAGE_FAULT, top >> 2));
            assert_eq!(guest_access(h, low + off, None), (0, LOAD_GUEST_PAGE_FAULT, (low + off) >> 2));
            assert_eq!(guest_access(h, 3 * G1, None), (0, LOAD_GUEST_PAGE_FAULT, (3 * G1) >> 2));
            unmap(&mut g, &mut pt, g1, G1).map_err(|_| EINVAL)?;
            assert_eq!(guest_access(h, in_g1, None).1, LOAD_GUEST_PAGE_FAULT);

            g.destroy(&mut pt);
            csr::hfence_gvma_vmid(0);
            tested += 1;
        }
        assert!(tested >= 1);
        assert_eq!(live_tables(), base);
        Ok(())
    }
}

#[kunit_tests(kvm_rs_riscv_vmid)]
mod vmid_tests {
    use super::*;
    use core::sync::atomic::AtomicU32;
    use kernel::sync::SpinLock;

    /// A private allocator under a kernel spinlock, as the global one.
    struct LocalLock(Pin<KBox<SpinLock<VmidSpace>>>);

    impl SpaceLock for LocalLock {
        fn with_locked<R>(&self, f: impl FnOnce(&mut VmidSpace) -> R) -> R {
            let mut guard = self.0.lock();
            f(&mut guard)
        }
    }

    fn allocator(bits: u32) -> Result<VmidAllocator<LocalLock>> {
        let lock = KBox::pin_init(kernel::new_spinlock!(VmidSpace::new(), "vmid_test"), GFP_KERNEL)?;
        let a = VmidAllocator::new(LocalLock(lock));
        a.init(bits);
        Ok(a)
    }

    #[test]
    fn host_width_was_probed() {
        let bits = VMIDS.bits();
        let hw = HW_VMID_BITS.load(Ordering::Relaxed);
        let cap = crate::module_parameters::vmid_bits.value();
        assert!(hw <= vmid::MAX_VMID_BITS);
        assert_eq!(bits, vmid::usable_bits(hw, cap, possible_cpus()));
        assert!(bits <= cap);
        let vm = VmVmid::new();
        assert_eq!(VMIDS.current(&vm).is_none(), bits != 0);
    }

    #[test]
    fn global_allocator_gives_a_nonzero_vmid() {
        let vm = VmVmid::new();
        match vmid_update(&vm) {
            Update::New { vmid, .. } => {
                assert_ne!(vmid, 0);
                assert_eq!(VMIDS.current(&vm), Some(vmid));
            }
            Update::Current => assert_eq!(VMIDS.bits(), 0),
        }
        assert_eq!(vmid_update(&vm), Update::Current);
    }

    #[test]
    fn two_bit_rollover_under_a_spinlock() -> Result {
        let a = allocator(2)?;
        let flushes = AtomicU32::new(0);
        let flush = || {
            flushes.fetch_add(1, Ordering::Relaxed);
            flush_all_cpus();
        };
        let vms: [VmVmid; 5] = Default::default();
        // Generation 2 (the first): VMIDs 1, 2, 3, with one flush.
        for (i, vm) in vms[..3].iter().enumerate() {
            assert_eq!(a.update(vm, flush), Update::New { vmid: i as u64 + 1, rollover: i == 0 });
        }
        assert_eq!(flushes.load(Ordering::Relaxed), 1);
        let first = a.generation();
        // Distinct and valid.
        let ids = [a.current(&vms[0]), a.current(&vms[1]), a.current(&vms[2])];
        assert_eq!(ids, [Some(1), Some(2), Some(3)]);
        // A vCPU of VM 0 entering again: nothing.
        assert_eq!(a.update(&vms[0], || panic!("no flush")), Update::Current);
        // The fourth VM exhausts the space: rollover, one more flush, every
        // earlier VM stale.
        assert_eq!(a.update(&vms[3], flush), Update::New { vmid: 1, rollover: true });
        assert_eq!(flushes.load(Ordering::Relaxed), 2);
        assert_eq!(a.generation(), first + 1);
        assert!(vms[..3].iter().all(|v| a.needs_update(v)));
        // The stale VMs re-allocate; VM 2 is the fourth of the generation.
        assert_eq!(a.update(&vms[0], flush), Update::New { vmid: 2, rollover: false });
        assert_eq!(a.update(&vms[4], flush), Update::New { vmid: 3, rollover: false });
        assert_eq!(flushes.load(Ordering::Relaxed), 2);
        assert_eq!(a.update(&vms[1], flush), Update::New { vmid: 1, rollover: true });
        assert_eq!(flushes.load(Ordering::Relaxed), 3);
        // In the newest generation only VM 1 is valid; no VMID is shared.
        assert_eq!(a.current(&vms[1]), Some(1));
        assert!(vms.iter().enumerate().all(|(i, v)| i == 1 || a.needs_update(v)));
        Ok(())
    }

    #[test]
    fn many_entries_keep_vmids_unique() -> Result {
        let a = allocator(2)?;
        let vms: [VmVmid; 6] = Default::default();
        // vCPU `i` belongs to VM `i % 6`; `loaded` is the (generation,
        // VMID) its hgatp holds.
        let mut loaded = [(0u64, 0u64); 12];
        let mut reload = [false; 12];
        let mut allocs = 0u64;
        let mut flushes = 0u64;
        for step in 0..600usize {
            let v = (step * 7 + step / 5) % loaded.len();
            let vm = &vms[v % vms.len()];
            let mut flushed = false;
            if let Update::New { rollover, .. } = a.update(vm, || flushed = true) {
                assert_eq!(rollover, allocs % 3 == 0);
                assert_eq!(flushed, rollover);
                allocs += 1;
                flushes += u64::from(flushed);
                // KVM_REQ_UPDATE_HGATP on every vCPU of the VM.
                for (c, r) in reload.iter_mut().enumerate() {
                    if c % vms.len() == v % vms.len() {
                        *r = true;
                    }
                }
            }
            let now = (a.generation(), a.current(vm).ok_or(EINVAL)?);
            if core::mem::take(&mut reload[v]) {
                loaded[v] = now;
            }
            // Never entering with an old generation's VMID.
            assert_eq!(loaded[v], now);
            // No two VMs of the current generation share a VMID.
            for (i, x) in vms.iter().enumerate() {
                for y in &vms[i + 1..] {
                    if let (Some(p), Some(q)) = (a.current(x), a.current(y)) {
                        assert_ne!(p, q);
                    }
                }
            }
        }
        assert!(flushes > 10);
        assert_eq!(flushes, allocs.div_ceil(3));
        Ok(())
    }
}
