// SPDX-License-Identifier: GPL-2.0

//! The G-stage (guest physical → host physical) page tables of riscv64.
//!
//! Pure logic (`core` only), built into the module and tested on the host
//! (`tools/testing/host`). The table memory comes from a [`TableMem`]: kernel
//! pages in the module (`mmu.rs`), a fake with a leak check in the host
//! tests. The format is the privileged spec's, H-extension chapter
//! ("Two-Stage Address Translation"):
//!
//! - modes Sv39x4, Sv48x4 and Sv57x4 ([`Mode`]): 3, 4 or 5 levels of 512
//!   eight-byte entries, 41, 50 or 59 GPA bits. The root table has 2 extra
//!   index bits: 2048 entries, 16 KiB, 16 KiB aligned;
//! - a PTE has V, R, W, X, U, G, A, D in bits 0-7 and the PPN (44 bits, a
//!   56-bit host physical address) in bits 10-53. A leaf has some of R/W/X;
//!   W without R is reserved. Every G-stage access counts as a user access,
//!   so leaves set U; G is unused in G-stage PTEs and stays clear. A
//!   pointer to the next level has only V (U, A, D are reserved there);
//! - leaves may sit at level 0 (4 KiB), 1 (2 MiB, "megapage") or 2 (1 GiB,
//!   "gigapage"); a huge leaf's PPN must be aligned to its size.
//!
//! As upstream (`kvm_riscv_gstage_map_page()`), leaves are created with A
//! and D set, so hardware that does not update them (Svade) never faults
//! for them; dirty logging write-protects instead.
//!
//! # How the run loop uses it
//!
//! - **VM creation**: `GStage::new(mem, mode)` allocates the zeroed 16 KiB
//!   root. `mode` is the VM's (`KVM_CAP_VM_GPA_BITS` may choose fewer levels
//!   than the host has). Each vCPU loads
//!   [`hgatp(mode, vmid, root)`](hgatp) = `mode << 60 | vmid << 44 |
//!   root_pa >> 12` before entering (the VMID comes from `vmid.rs`).
//! - **G-stage fault** (`scause` 20/21/23, GPA = `htval << 2 | stval & 3`):
//!   look up the memslot, read the MMU-invalidation sequence, resolve the
//!   host page (GUP), top up the page cache (`mmu.rs`, outside the lock),
//!   then under the VM's MMU lock: if `mmu_invalidate_retry()` says the page
//!   went stale, drop it and retry; else [`GStage::map`]. That check is the
//!   caller's: this file knows nothing about memslots or notifiers.
//! - **MMU notifier / memslot deletion**: [`GStage::unmap_range`] under the
//!   MMU lock; `clear_young` / `test_young`: [`GStage::age_range`] /
//!   [`GStage::test_young_range`]; dirty logging: [`GStage::wrprotect_range`].
//! - **VM destruction**: [`GStage::destroy`], once no vCPU can run.
//!
//! # TLB flushes
//!
//! Every changing operation adds to a [`Flush`], which says which guest
//! physical range lost or changed a valid translation ([`FlushRange`]):
//!
//! - `None`: nothing valid changed (an invalid entry became valid, or the
//!   range held nothing);
//! - `Range`: `hfence.gvma gpa, vmid` every `1 << shift` bytes over the
//!   range, on every hart that may have run this VM's vCPUs (upstream falls
//!   back to a whole-VMID flush beyond 512 steps). Each changed leaf
//!   contains one of those addresses, and a fence drops every cached leaf
//!   that translates its address, huge ones included: splitting a huge
//!   leaf keeps the other translations, so only the changed page's GPA is
//!   fenced;
//! - `All`: a page table was unlinked, which an address-specific fence need
//!   not invalidate (the spec asks for `rs1 = x0` when a non-leaf PTE
//!   changes): `hfence.gvma x0, vmid` everywhere.
//!
//! Unlinked tables are not freed at once: another hart's walker may still
//! hold a pointer to them until the flush. They are zeroed (so a stale walk
//! only sees invalid entries and faults) and chained in the `Flush`;
//! [`Flush::finish`] frees them and must be called after the flush.
//!
//! A fault handler must fence the faulting GPA on its own hart
//! (`hfence.gvma gpa, vmid`) even when `map` reported nothing: without
//! Svvptc a hart may keep using the invalid entry it faulted on.
//!
//! # Arithmetic
//!
//! GPAs come from guests and callers: every operation first checks
//! alignment and that the range lies below the mode's `1 << gpa_bits`
//! (`EFAULT` beyond, also when `gpa + size` wraps; `EINVAL` for
//! misalignment). After that check
//! all addresses are below `1 << 59`, so the walk's sums cannot overflow.

use crate::kvm::abi::Errno;
use core::marker::PhantomData;

/// Entries of a non-root table.
const PTRS_PER_TABLE: usize = 512;
/// Entries of the root table (2 extra index bits).
const PTRS_PER_ROOT: usize = 2048;
/// Index bits of one level.
const INDEX_BITS: u32 = 9;
/// Extra index bits of the root level.
const ROOT_XBITS: u32 = 2;
/// Base page shift.
const PAGE_SHIFT: u32 = 12;
/// Base page size.
pub(crate) const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// Size of a non-root table.
pub(crate) const TABLE_SIZE: usize = PTRS_PER_TABLE * 8;
/// Size (and alignment) of the root table.
pub(crate) const ROOT_SIZE: usize = PTRS_PER_ROOT * 8;

/// PTE valid.
pub(crate) const PTE_V: u64 = 1 << 0;
/// PTE readable.
pub(crate) const PTE_R: u64 = 1 << 1;
/// PTE writable.
pub(crate) const PTE_W: u64 = 1 << 2;
/// PTE executable.
pub(crate) const PTE_X: u64 = 1 << 3;
/// PTE user: required on G-stage leaves.
pub(crate) const PTE_U: u64 = 1 << 4;
/// PTE global: unused by G-stage, kept clear.
pub(crate) const PTE_G: u64 = 1 << 5;
/// PTE accessed.
pub(crate) const PTE_A: u64 = 1 << 6;
/// PTE dirty.
pub(crate) const PTE_D: u64 = 1 << 7;
/// Position of the PPN.
const PTE_PPN_SHIFT: u32 = 10;
/// Width of the PPN.
const PTE_PPN_BITS: u32 = 44;
/// The PPN field.
const PTE_PPN_MASK: u64 = ((1 << PTE_PPN_BITS) - 1) << PTE_PPN_SHIFT;
/// Host physical address bits a PTE can hold.
pub(crate) const HPA_BITS: u32 = PTE_PPN_BITS + PAGE_SHIFT;

/// `hgatp.MODE` position.
pub(crate) const HGATP_MODE_SHIFT: u32 = 60;
/// `hgatp.VMID` position.
pub(crate) const HGATP_VMID_SHIFT: u32 = 44;
/// `hgatp.VMID` width on RV64.
pub(crate) const HGATP_VMID_BITS: u32 = 14;
/// `hgatp.VMID` field.
pub(crate) const HGATP_VMID_MASK: u64 = ((1 << HGATP_VMID_BITS) - 1) << HGATP_VMID_SHIFT;
/// `hgatp.PPN` field.
pub(crate) const HGATP_PPN_MASK: u64 = (1 << 44) - 1;

/// A G-stage translation mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// 3 levels, 41 GPA bits (`hgatp.MODE` 8).
    Sv39x4,
    /// 4 levels, 50 GPA bits (`hgatp.MODE` 9).
    Sv48x4,
    /// 5 levels, 59 GPA bits (`hgatp.MODE` 10).
    Sv57x4,
}

impl Mode {
    /// The mode with `levels` page-table levels (upstream's `pgd_levels`).
    pub(crate) const fn from_levels(levels: u32) -> Option<Mode> {
        match levels {
            3 => Some(Mode::Sv39x4),
            4 => Some(Mode::Sv48x4),
            5 => Some(Mode::Sv57x4),
            _ => None,
        }
    }

    /// Page-table levels.
    pub(crate) const fn levels(self) -> u32 {
        match self {
            Mode::Sv39x4 => 3,
            Mode::Sv48x4 => 4,
            Mode::Sv57x4 => 5,
        }
    }

    /// The `hgatp.MODE` value.
    pub(crate) const fn hgatp_mode(self) -> u64 {
        match self {
            Mode::Sv39x4 => 8,
            Mode::Sv48x4 => 9,
            Mode::Sv57x4 => 10,
        }
    }

    /// Guest physical address bits (`kvm_riscv_gstage_gpa_bits()`).
    pub(crate) const fn gpa_bits(self) -> u32 {
        PAGE_SHIFT + self.levels() * INDEX_BITS + ROOT_XBITS
    }

    /// One past the highest guest physical address.
    pub(crate) const fn gpa_limit(self) -> u64 {
        1 << self.gpa_bits()
    }

    /// The level of the root table.
    const fn root_level(self) -> u32 {
        self.levels() - 1
    }
}

/// The `hgatp` value that selects `root` with `vmid` in `mode`
/// (`kvm_riscv_mmu_update_hgatp()`): `mode << 60 | vmid << 44 | root >> 12`.
/// VMID bits beyond the field are dropped.
pub(crate) const fn hgatp(mode: Mode, vmid: u64, root: TablePa) -> u64 {
    (mode.hgatp_mode() << HGATP_MODE_SHIFT)
        | ((vmid << HGATP_VMID_SHIFT) & HGATP_VMID_MASK)
        | ((root.0 >> PAGE_SHIFT) & HGATP_PPN_MASK)
}

/// The size of a leaf mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageSize {
    /// 4 KiB, level 0.
    Size4K,
    /// 2 MiB, level 1.
    Size2M,
    /// 1 GiB, level 2.
    Size1G,
}

impl PageSize {
    /// The size whose leaves sit at `level`.
    pub(crate) const fn from_level(level: u32) -> Option<PageSize> {
        match level {
            0 => Some(PageSize::Size4K),
            1 => Some(PageSize::Size2M),
            2 => Some(PageSize::Size1G),
            _ => None,
        }
    }

    /// The size of `bytes` bytes (what a VMA or THP gives).
    pub(crate) const fn from_bytes(bytes: u64) -> Option<PageSize> {
        match bytes {
            0x1000 => Some(PageSize::Size4K),
            0x20_0000 => Some(PageSize::Size2M),
            0x4000_0000 => Some(PageSize::Size1G),
            _ => None,
        }
    }

    /// The level of its leaves.
    pub(crate) const fn level(self) -> u32 {
        match self {
            PageSize::Size4K => 0,
            PageSize::Size2M => 1,
            PageSize::Size1G => 2,
        }
    }

    /// log2 of the size.
    pub(crate) const fn shift(self) -> u32 {
        level_shift(self.level())
    }

    /// The size in bytes.
    pub(crate) const fn bytes(self) -> u64 {
        1 << self.shift()
    }
}

/// The address bits translated below `level`: 12, 21, 30, 39, 48.
const fn level_shift(level: u32) -> u32 {
    PAGE_SHIFT + level * INDEX_BITS
}

/// Guest access rights of a leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Prot {
    /// Loads (and, as upstream, implicit VS-stage walks) allowed.
    pub(crate) read: bool,
    /// Stores allowed; needs `read` (W without R is reserved).
    pub(crate) write: bool,
    /// Instruction fetches allowed.
    pub(crate) exec: bool,
}

impl Prot {
    /// Read and execute: a read-only or write-protected page (upstream
    /// `PAGE_READ_EXEC`).
    pub(crate) const RX: Prot = Prot { read: true, write: false, exec: true };
    /// Read, write and execute (upstream `PAGE_WRITE_EXEC`).
    pub(crate) const RWX: Prot = Prot { read: true, write: true, exec: true };

    /// The R/W/X bits, or `EINVAL` for no access or W without R.
    const fn bits(self) -> Result<u64, Errno> {
        if let (false, _, false) | (false, true, _) = (self.read, self.write, self.exec) {
            return Err(Errno::EINVAL);
        }
        let mut bits = 0;
        if self.read {
            bits |= PTE_R;
        }
        if self.write {
            bits |= PTE_W;
        }
        if self.exec {
            bits |= PTE_X;
        }
        Ok(bits)
    }

    /// The rights of a leaf PTE.
    const fn of_pte(pte: u64) -> Prot {
        Prot { read: pte & PTE_R != 0, write: pte & PTE_W != 0, exec: pte & PTE_X != 0 }
    }
}

/// The physical address of a page table (4 KiB) or root table (16 KiB).
///
/// # Invariants
///
/// The address is 4 KiB aligned and below `1 << HPA_BITS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TablePa(u64);

impl TablePa {
    /// `pa` as a table address, if it is 4 KiB aligned and fits a PTE.
    pub(crate) const fn new(pa: u64) -> Option<TablePa> {
        if pa % PAGE_SIZE != 0 || pa >> HPA_BITS != 0 {
            return None;
        }
        // INVARIANT: Checked just above.
        Some(TablePa(pa))
    }

    /// The physical address.
    pub(crate) const fn addr(self) -> u64 {
        self.0
    }

    /// The table a non-leaf PTE points to.
    const fn of_pte(pte: u64) -> TablePa {
        // INVARIANT: The PPN is 44 bits, so the address is aligned and
        // below `1 << 56`.
        TablePa(((pte & PTE_PPN_MASK) >> PTE_PPN_SHIFT) << PAGE_SHIFT)
    }
}

/// Memory for G-stage page tables.
///
/// # Safety
///
/// Implementations guarantee:
///
/// - `alloc_table` returns a zeroed, 4 KiB aligned, 4 KiB table and
///   `alloc_root` a zeroed, 16 KiB aligned, 16 KiB root, owned by the
///   caller until freed, at the physical address the hardware walker uses;
/// - tables allocated through any value of the implementing type may be
///   read, written and freed through any other value of that type;
/// - `read`, `write` and `fetch_and` are single-copy atomic 64-bit
///   accesses (hardware walks the tables concurrently), and `write` is a
///   release: the writes before it are visible to a walker that sees it.
pub(crate) unsafe trait TableMem {
    /// Allocates a zeroed 4 KiB table; `ENOMEM` when none is available.
    fn alloc_table(&mut self) -> Result<TablePa, Errno>;

    /// Allocates a zeroed, 16 KiB aligned, 16 KiB root table.
    fn alloc_root(&mut self) -> Result<TablePa, Errno>;

    /// Frees a table.
    ///
    /// # Safety
    ///
    /// `table` came from `alloc_table` of this type and is not freed yet;
    /// it is not used afterwards.
    unsafe fn free_table(&mut self, table: TablePa);

    /// Frees a root table.
    ///
    /// # Safety
    ///
    /// `root` came from `alloc_root` of this type and is not freed yet; it
    /// is not used afterwards.
    unsafe fn free_root(&mut self, root: TablePa);

    /// Reads entry `index` of `table`.
    ///
    /// # Safety
    ///
    /// `table` is a live table or root of this type; `index` is below 512
    /// (2048 for a root).
    unsafe fn read(&self, table: TablePa, index: usize) -> u64;

    /// Writes entry `index` of `table`.
    ///
    /// # Safety
    ///
    /// As for [`TableMem::read`].
    unsafe fn write(&mut self, table: TablePa, index: usize, pte: u64);

    /// Atomically ANDs `mask` into entry `index` of `table` and returns the
    /// old value (hardware may set A/D concurrently).
    ///
    /// # Safety
    ///
    /// As for [`TableMem::read`].
    unsafe fn fetch_and(&mut self, table: TablePa, index: usize, mask: u64) -> u64;
}

/// The guest physical range whose translations must be flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlushRange {
    /// No valid translation changed.
    None,
    /// `hfence.gvma` every `1 << shift` bytes of `[start, end)`.
    Range {
        /// First guest physical address (aligned to `1 << shift`).
        start: u64,
        /// One past the last one.
        end: u64,
        /// log2 of the step: the smallest leaf that changed.
        shift: u32,
    },
    /// Everything of the VMID (a table was unlinked).
    All,
}

impl FlushRange {
    /// Adds the leaf of `1 << shift` bytes at `start`.
    fn add(&mut self, start: u64, shift: u32) {
        // `start` is below the mode's limit and aligned: no overflow.
        let end = start + (1 << shift);
        *self = match *self {
            FlushRange::None => FlushRange::Range { start, end, shift },
            FlushRange::Range { start: s, end: e, shift: sh } => FlushRange::Range {
                start: if start < s { start } else { s },
                end: if end > e { end } else { e },
                shift: if shift < sh { shift } else { sh },
            },
            FlushRange::All => FlushRange::All,
        };
    }

    /// How many `hfence.gvma gpa` a `Range` needs (`None` for `All`, 0 for
    /// `None`).
    pub(crate) fn steps(&self) -> Option<u64> {
        match *self {
            FlushRange::None => Some(0),
            FlushRange::Range { start, end, shift } => Some((end - start) >> shift),
            FlushRange::All => None,
        }
    }
}

/// What G-stage operations changed: the TLB flush they need and the tables
/// they unlinked.
///
/// Pass one to any number of operations, flush [`Flush::range`], then call
/// [`Flush::finish`] to free the unlinked tables. Dropping it without
/// `finish` leaks them (never a use after free).
///
/// # Invariants
///
/// `freed` heads a chain of tables of `M`, unlinked from every page table
/// and zeroed except entry 0, which holds the next table's address with
/// [`LINK`] set (V clear, so a walker sees an invalid entry), or 0 at the
/// end; `nr_freed` counts them.
#[must_use = "flush the range, then `finish` to free unlinked tables"]
pub(crate) struct Flush<M: TableMem> {
    range: FlushRange,
    freed: Option<TablePa>,
    nr_freed: usize,
    _mem: PhantomData<fn() -> M>,
}

/// Marks entry 0 of a table on a [`Flush`] chain: R without V (an invalid
/// PTE to hardware).
const LINK: u64 = PTE_R;

impl<M: TableMem> Default for Flush<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: TableMem> Flush<M> {
    /// Nothing changed yet.
    pub(crate) const fn new() -> Self {
        Flush { range: FlushRange::None, freed: None, nr_freed: 0, _mem: PhantomData }
    }

    /// The range to flush.
    pub(crate) fn range(&self) -> FlushRange {
        self.range
    }

    /// Whether any valid translation changed (a flush is needed).
    pub(crate) fn is_needed(&self) -> bool {
        self.range != FlushRange::None
    }

    /// Tables waiting for [`Flush::finish`].
    pub(crate) fn nr_freed(&self) -> usize {
        self.nr_freed
    }

    /// Chains `table` (unlinked, all entries zero) for freeing after the
    /// flush, and asks for a whole-VMID flush.
    ///
    /// # Safety
    ///
    /// `table` is a live table of `M`, zeroed, no longer linked from any
    /// page table, and not on a chain already.
    unsafe fn defer_free(&mut self, mem: &mut M, table: TablePa) {
        let link = match self.freed {
            Some(next) => next.0 | LINK,
            None => 0,
        };
        // SAFETY: `table` is live (caller), entry 0 exists.
        unsafe { mem.write(table, 0, link) };
        // INVARIANT: `table` is zeroed but for the link and unlinked.
        self.freed = Some(table);
        self.nr_freed += 1;
        self.range = FlushRange::All;
    }

    /// Frees the unlinked tables. Call it only after the flush of
    /// [`Flush::range`] completed on every hart, since until then a walker
    /// may still read them.
    pub(crate) fn finish(mut self, mem: &mut M) {
        while let Some(table) = self.freed.take() {
            // SAFETY: By the type invariants, `table` is a live, unlinked
            // table of `M` on the chain; entry 0 holds the link.
            let link = unsafe { mem.read(table, 0) };
            self.freed = if link & LINK != 0 { Some(TablePa::of_pte_link(link)) } else { None };
            // SAFETY: As above; it is off the chain now and never used again.
            unsafe {
                mem.write(table, 0, 0);
                mem.free_table(table);
            }
        }
        self.nr_freed = 0;
    }
}

impl TablePa {
    /// The table a [`Flush`] chain link points to.
    const fn of_pte_link(link: u64) -> TablePa {
        // INVARIANT: Links are built from a `TablePa` (aligned, < 2^56)
        // with a low bit set.
        TablePa(link & !(PAGE_SIZE - 1))
    }
}

/// A leaf found by [`GStage::walk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Leaf {
    /// The host physical address the GPA translates to.
    pub(crate) hpa: u64,
    /// The level of the leaf (0: 4 KiB, 1: 2 MiB, 2: 1 GiB).
    pub(crate) level: u32,
    /// Access rights.
    pub(crate) prot: Prot,
    /// The A bit.
    pub(crate) young: bool,
    /// The D bit.
    pub(crate) dirty: bool,
    /// The raw PTE.
    pub(crate) pte: u64,
}

impl Leaf {
    /// The size of the leaf, if it is one `map` creates.
    pub(crate) fn size(&self) -> Option<PageSize> {
        PageSize::from_level(self.level)
    }
}

/// Whether `pte` is valid.
const fn pte_valid(pte: u64) -> bool {
    pte & PTE_V != 0
}

/// Whether `pte` is a valid leaf.
const fn pte_leaf(pte: u64) -> bool {
    pte_valid(pte) && pte & (PTE_R | PTE_W | PTE_X) != 0
}

/// Whether `pte` points to a next-level table.
const fn pte_table(pte: u64) -> bool {
    pte_valid(pte) && !pte_leaf(pte)
}

/// The host physical address of a PTE's PPN.
const fn pte_pa(pte: u64) -> u64 {
    ((pte & PTE_PPN_MASK) >> PTE_PPN_SHIFT) << PAGE_SHIFT
}

/// A pointer to `table`.
const fn table_pte(table: TablePa) -> u64 {
    ((table.0 >> PAGE_SHIFT) << PTE_PPN_SHIFT) | PTE_V
}

/// A leaf for `hpa` with R/W/X `rwx`: V, U, A and D set, G clear.
const fn leaf_pte(hpa: u64, rwx: u64) -> u64 {
    ((hpa >> PAGE_SHIFT) << PTE_PPN_SHIFT) | rwx | PTE_V | PTE_U | PTE_A | PTE_D
}

/// The most tables one `map` allocates: a chain below the root of the
/// deepest mode.
const MAX_NEW_TABLES: usize = 4;

/// A G-stage page-table tree.
///
/// Not synchronized: the caller serializes mutations (the VM's MMU lock).
/// Hardware walks it concurrently, which the [`TableMem`] accesses and the
/// order of writes account for.
///
/// # Invariants
///
/// - `root` is a live root of `M`;
/// - every valid non-leaf entry at level `l` (`1 <= l <= root level`)
///   points to a live table of `M`, reached from exactly one entry;
/// - level 0 entries are leaves or invalid;
/// - between operations, every non-root table has a valid entry.
pub(crate) struct GStage<M: TableMem> {
    root: TablePa,
    mode: Mode,
    _mem: PhantomData<fn() -> M>,
}

impl<M: TableMem> GStage<M> {
    /// Allocates an empty tree (`kvm_riscv_mmu_alloc_pgd()`).
    pub(crate) fn new(mem: &mut M, mode: Mode) -> Result<Self, Errno> {
        let root = mem.alloc_root()?;
        // INVARIANT: A fresh zeroed root has no valid entry.
        Ok(GStage { root, mode, _mem: PhantomData })
    }

    /// The translation mode.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The root table's physical address (16 KiB aligned).
    pub(crate) fn root(&self) -> TablePa {
        self.root
    }

    /// The `hgatp` value for this tree with `vmid`.
    pub(crate) fn hgatp(&self, vmid: u64) -> u64 {
        hgatp(self.mode, vmid, self.root)
    }

    /// Entries of a table at `level`.
    fn entries(&self, level: u32) -> usize {
        if level == self.mode.root_level() {
            PTRS_PER_ROOT
        } else {
            PTRS_PER_TABLE
        }
    }

    /// The index of `gpa` in a table at `level`.
    fn index(&self, gpa: u64, level: u32) -> usize {
        let mask = self.entries(level) as u64 - 1;
        ((gpa >> level_shift(level)) & mask) as usize
    }

    /// Checks `[gpa, gpa + size)`: 4 KiB aligned (`EINVAL`), below the
    /// mode's limit (`EFAULT`, also when the sum wraps). Returns the end.
    fn check_range(&self, gpa: u64, size: u64) -> Result<u64, Errno> {
        if gpa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let end = gpa.checked_add(size).ok_or(Errno::EFAULT)?;
        if end > self.mode.gpa_limit() {
            return Err(Errno::EFAULT);
        }
        Ok(end)
    }

    /// Finds the leaf that translates `gpa`, if any
    /// (`kvm_riscv_gstage_get_leaf()`). `None` beyond the mode's GPA bits.
    pub(crate) fn walk(&self, mem: &M, gpa: u64) -> Option<Leaf> {
        if gpa >= self.mode.gpa_limit() {
            return None;
        }
        let mut table = self.root;
        let mut level = self.mode.root_level();
        loop {
            // SAFETY: `table` is live at `level` (type invariants) and the
            // index is below its entries.
            let pte = unsafe { mem.read(table, self.index(gpa, level)) };
            if !pte_valid(pte) {
                return None;
            }
            if pte_leaf(pte) {
                let offset = gpa & ((1 << level_shift(level)) - 1);
                return Some(Leaf {
                    hpa: pte_pa(pte) | offset,
                    level,
                    prot: Prot::of_pte(pte),
                    young: pte & PTE_A != 0,
                    dirty: pte & PTE_D != 0,
                    pte,
                });
            }
            if level == 0 {
                // A pointer at level 0 would break the invariants.
                return None;
            }
            table = TablePa::of_pte(pte);
            level -= 1;
        }
    }

    /// Maps `[gpa, gpa + size)` to `hpa` with `prot`
    /// (`kvm_riscv_gstage_map_page()`).
    ///
    /// - An existing leaf there is replaced (a changed valid leaf is added
    ///   to `flush`; an identical one changes nothing).
    /// - A bigger leaf around it is split first: the new table repeats the
    ///   huge mapping in smaller leaves, so the rest of it stays mapped.
    /// - Smaller mappings under it (a table) are replaced by the leaf, and
    ///   their tables freed through `flush` (`FlushRange::All`).
    ///
    /// The tables it needs are allocated up front: on `ENOMEM` nothing
    /// changed. `EINVAL`: `gpa` or `hpa` not aligned to `size`, `hpa`
    /// beyond 56 bits, or `prot` without read and exec, or write without
    /// read. `EFAULT`: `gpa` beyond the mode's GPA bits.
    pub(crate) fn map(
        &mut self,
        mem: &mut M,
        gpa: u64,
        hpa: u64,
        size: PageSize,
        prot: Prot,
        flush: &mut Flush<M>,
    ) -> Result<(), Errno> {
        let rwx = prot.bits()?;
        if gpa % size.bytes() != 0 || hpa % size.bytes() != 0 || hpa >> HPA_BITS != 0 {
            return Err(Errno::EINVAL);
        }
        self.check_range(gpa, size.bytes())?;
        let target = size.level();

        // First pass: how many tables the path needs.
        let mut need = 0;
        let mut table = self.root;
        let mut level = self.mode.root_level();
        while level > target {
            // SAFETY: `table` is live at `level` (type invariants).
            let pte = unsafe { mem.read(table, self.index(gpa, level)) };
            if !pte_table(pte) {
                // Empty: a chain down to `target`; a huge leaf: one split
                // per level down to `target`.
                need = (level - target) as usize;
                break;
            }
            table = TablePa::of_pte(pte);
            level -= 1;
        }

        let mut new_tables = [None; MAX_NEW_TABLES];
        // `need` is at most the root level, 4.
        for slot in new_tables.iter_mut().take(need) {
            match mem.alloc_table() {
                Ok(t) => *slot = Some(t),
                Err(e) => {
                    for t in new_tables.iter_mut().filter_map(Option::take) {
                        // SAFETY: Allocated just above, never linked.
                        unsafe { mem.free_table(t) };
                    }
                    return Err(e);
                }
            }
        }
        let mut new_tables = new_tables.into_iter().flatten();

        // Second pass: build the path.
        let mut table = self.root;
        let mut level = self.mode.root_level();
        while level > target {
            let index = self.index(gpa, level);
            // SAFETY: `table` is live at `level`.
            let pte = unsafe { mem.read(table, index) };
            let next = if pte_table(pte) {
                TablePa::of_pte(pte)
            } else {
                // Counted in the first pass: the path has not changed since.
                let Some(new) = new_tables.next() else {
                    return Err(Errno::ENOMEM);
                };
                if pte_leaf(pte) {
                    self.fill_split(mem, new, pte, level);
                    // The huge leaf contains `gpa`: the fence for `gpa`
                    // below drops it too.
                    flush.range.add(gpa, size.shift());
                }
                // SAFETY: `table` is live; `new` is live and filled (or
                // zeroed) before it is linked by this release write.
                // INVARIANT: `new` is reached from this entry only; it gets
                // a valid entry below before the operation ends.
                unsafe { mem.write(table, index, table_pte(new)) };
                new
            };
            table = next;
            level -= 1;
        }
        // None left over (the passes agree), but never leak one.
        for t in new_tables {
            // SAFETY: Allocated above, never linked.
            unsafe { mem.free_table(t) };
        }

        let index = self.index(gpa, target);
        let new_pte = leaf_pte(hpa, rwx);
        // SAFETY: `table` is live at `target`.
        let old = unsafe { mem.read(table, index) };
        if old == new_pte {
            return Ok(());
        }
        // SAFETY: As above.
        unsafe { mem.write(table, index, new_pte) };
        if pte_leaf(old) {
            flush.range.add(gpa, size.shift());
        } else if pte_table(old) && target > 0 {
            // Merge: the smaller mappings below go with their tables.
            self.free_subtree_deferred(mem, TablePa::of_pte(old), target - 1, flush);
        }
        Ok(())
    }

    /// Fills the new table `new` (at `level - 1`) with the leaves that
    /// repeat the huge leaf `huge` of `level`.
    fn fill_split(&self, mem: &mut M, new: TablePa, huge: u64, level: u32) {
        let child_bytes = 1u64 << level_shift(level - 1);
        let base = pte_pa(huge);
        let flags = huge & !PTE_PPN_MASK;
        for i in 0..PTRS_PER_TABLE {
            // A huge leaf's PPN is aligned to its size, so the sum stays
            // inside it.
            let pa = base | (i as u64 * child_bytes);
            // SAFETY: `new` is a live table, `i < 512`.
            unsafe { mem.write(new, i, ((pa >> PAGE_SHIFT) << PTE_PPN_SHIFT) | flags) };
        }
    }

    /// Unlinked `table` (at `level`) and everything below it: zeroes them
    /// and chains them on `flush`.
    fn free_subtree_deferred(&self, mem: &mut M, table: TablePa, level: u32, flush: &mut Flush<M>) {
        for i in 0..PTRS_PER_TABLE {
            // SAFETY: `table` is live, `i < 512`.
            let pte = unsafe { mem.read(table, i) };
            if pte_valid(pte) {
                // SAFETY: As above.
                unsafe { mem.write(table, i, 0) };
                if level > 0 && pte_table(pte) {
                    self.free_subtree_deferred(mem, TablePa::of_pte(pte), level - 1, flush);
                }
            }
        }
        // SAFETY: `table` is live, zeroed, unlinked by the caller, and was
        // reached from one entry only, so it is not on the chain yet.
        unsafe { flush.defer_free(mem, table) };
    }

    /// The entries of a table at `level` starting at `base` that overlap
    /// `[start, end)`.
    fn overlap(&self, level: u32, base: u64, start: u64, end: u64) -> core::ops::Range<usize> {
        let shift = level_shift(level);
        let span = (self.entries(level) as u64) << shift;
        // `base + span` is at most the mode's limit: no overflow.
        let lo = if start > base { start } else { base };
        let hi = if end < base + span { end } else { base + span };
        if lo >= hi {
            return 0..0;
        }
        let first = ((lo - base) >> shift) as usize;
        let last = ((hi - base - 1) >> shift) as usize;
        first..last + 1
    }

    /// Removes every mapping of `[gpa, gpa + size)`
    /// (`kvm_riscv_gstage_unmap_range()`).
    ///
    /// Huge leaves partly inside are split and only the inside removed; if
    /// no table is available for the split, the whole huge leaf goes (the
    /// guest faults the rest back in), so unmapping never fails for lack of
    /// memory. Tables left empty are unlinked and chained on `flush`.
    /// `EINVAL` for misalignment, `EFAULT` beyond the GPA bits.
    pub(crate) fn unmap_range(&mut self, mem: &mut M, gpa: u64, size: u64, flush: &mut Flush<M>) -> Result<(), Errno> {
        let end = self.check_range(gpa, size)?;
        self.unmap_table(mem, self.root, self.mode.root_level(), 0, gpa, end, flush);
        Ok(())
    }

    /// Unmaps `[start, end)` inside `table` (at `level`, mapping from
    /// `base`). Returns whether the table has no valid entry left.
    #[allow(clippy::too_many_arguments)]
    fn unmap_table(
        &mut self,
        mem: &mut M,
        table: TablePa,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        flush: &mut Flush<M>,
    ) -> bool {
        let shift = level_shift(level);
        for i in self.overlap(level, base, start, end) {
            let es = base + ((i as u64) << shift);
            let ee = es + (1 << shift);
            // SAFETY: `table` is live at `level`, `i` below its entries.
            let pte = unsafe { mem.read(table, i) };
            if !pte_valid(pte) {
                continue;
            }
            let inside = start <= es && ee <= end;
            if pte_leaf(pte) {
                if inside || level == 0 {
                    // SAFETY: As above.
                    unsafe { mem.write(table, i, 0) };
                    flush.range.add(es, shift);
                    continue;
                }
                match mem.alloc_table() {
                    Ok(new) => {
                        self.fill_split(mem, new, pte, level);
                        // SAFETY: `new` is filled; the write links it.
                        unsafe { mem.write(table, i, table_pte(new)) };
                        // The split itself changes no translation; the
                        // leaves cleared below do, and their fences (inside
                        // the huge leaf) drop it too.
                        self.unmap_table(mem, new, level - 1, es, start, end, flush);
                    }
                    Err(_) => {
                        // SAFETY: As above.
                        unsafe { mem.write(table, i, 0) };
                        flush.range.add(es, shift);
                    }
                }
            } else if level > 0 {
                let child = TablePa::of_pte(pte);
                let empty = if inside {
                    true
                } else {
                    self.unmap_table(mem, child, level - 1, es, start, end, flush)
                };
                if empty {
                    // SAFETY: As above.
                    unsafe { mem.write(table, i, 0) };
                    if inside {
                        self.free_subtree_deferred(mem, child, level - 1, flush);
                    } else {
                        // SAFETY: `child` is live, all zero, unlinked just
                        // above, not on the chain.
                        unsafe { flush.defer_free(mem, child) };
                    }
                }
            }
        }
        self.is_empty(mem, table, level)
    }

    /// Whether `table` (at `level`) has no valid entry.
    fn is_empty(&self, mem: &M, table: TablePa, level: u32) -> bool {
        // SAFETY: `table` is live at `level`, indices below its entries.
        (0..self.entries(level)).all(|i| !pte_valid(unsafe { mem.read(table, i) }))
    }

    /// Calls `f(mem, table, index, level, leaf_gpa, pte)` for every leaf
    /// overlapping `[start, end)` below `table`.
    #[allow(clippy::too_many_arguments)]
    fn visit_leaves<F>(&self, mem: &mut M, table: TablePa, level: u32, base: u64, start: u64, end: u64, f: &mut F)
    where
        F: FnMut(&mut M, TablePa, usize, u32, u64, u64),
    {
        let shift = level_shift(level);
        for i in self.overlap(level, base, start, end) {
            let es = base + ((i as u64) << shift);
            // SAFETY: `table` is live at `level`, `i` below its entries.
            let pte = unsafe { mem.read(table, i) };
            if pte_leaf(pte) {
                f(mem, table, i, level, es, pte);
            } else if pte_valid(pte) && level > 0 {
                self.visit_leaves(mem, TablePa::of_pte(pte), level - 1, es, start, end, f);
            }
        }
    }

    /// Clears W on every leaf overlapping `[gpa, gpa + size)` (dirty
    /// logging, `kvm_riscv_gstage_wp_range()`); a huge leaf partly inside
    /// is write-protected whole. Errors as [`GStage::unmap_range`].
    pub(crate) fn wrprotect_range(&mut self, mem: &mut M, gpa: u64, size: u64, flush: &mut Flush<M>) -> Result<(), Errno> {
        let end = self.check_range(gpa, size)?;
        let range = &mut flush.range;
        self.visit_leaves(mem, self.root, self.mode.root_level(), 0, gpa, end, &mut |mem, t, i, level, es, pte| {
            if pte & PTE_W != 0 {
                // SAFETY: `visit_leaves` passes a live table and index.
                let old = unsafe { mem.fetch_and(t, i, !PTE_W) };
                if old & PTE_W != 0 {
                    range.add(es, level_shift(level));
                }
            }
        });
        Ok(())
    }

    /// Clears A on every leaf overlapping `[gpa, gpa + size)` and returns
    /// whether any had it (MMU notifier `clear_young`, `kvm_age_gfn()`).
    /// Like upstream it asks for no flush: a cached translation may keep
    /// the page looking old for a while.
    pub(crate) fn age_range(&mut self, mem: &mut M, gpa: u64, size: u64) -> Result<bool, Errno> {
        let end = self.check_range(gpa, size)?;
        let mut young = false;
        self.visit_leaves(mem, self.root, self.mode.root_level(), 0, gpa, end, &mut |mem, t, i, _, _, pte| {
            if pte & PTE_A != 0 {
                // SAFETY: `visit_leaves` passes a live table and index.
                let old = unsafe { mem.fetch_and(t, i, !PTE_A) };
                young |= old & PTE_A != 0;
            }
        });
        Ok(young)
    }

    /// Whether any leaf overlapping `[gpa, gpa + size)` has A set (MMU
    /// notifier `test_young`, `kvm_test_age_gfn()`).
    pub(crate) fn test_young_range(&self, mem: &mut M, gpa: u64, size: u64) -> Result<bool, Errno> {
        let end = self.check_range(gpa, size)?;
        let mut young = false;
        self.visit_leaves(mem, self.root, self.mode.root_level(), 0, gpa, end, &mut |_, _, _, _, _, pte| {
            young |= pte & PTE_A != 0;
        });
        Ok(young)
    }

    /// Counts the tables below the root.
    pub(crate) fn nr_tables(&self, mem: &M) -> usize {
        self.count_tables(mem, self.root, self.mode.root_level())
    }

    /// Counts the tables below `table` (at `level`).
    fn count_tables(&self, mem: &M, table: TablePa, level: u32) -> usize {
        if level == 0 {
            return 0;
        }
        let mut n = 0;
        for i in 0..self.entries(level) {
            // SAFETY: `table` is live at `level`, `i` below its entries.
            let pte = unsafe { mem.read(table, i) };
            if pte_table(pte) {
                n += 1 + self.count_tables(mem, TablePa::of_pte(pte), level - 1);
            }
        }
        n
    }

    /// Frees every table and the root (`kvm_riscv_mmu_free_pgd()`).
    ///
    /// Call it only when no hart can walk the tree any more: no vCPU of the
    /// VM runs, and its VMID's stale entries can no longer be used (VMIDs
    /// are not reused within a generation; a new generation flushes all).
    pub(crate) fn destroy(self, mem: &mut M) {
        self.free_now(mem, self.root, self.mode.root_level());
        // SAFETY: `root` is live (type invariants) and `self` is consumed.
        unsafe { mem.free_root(self.root) };
    }

    /// Frees every table below `table` (at `level`).
    fn free_now(&self, mem: &mut M, table: TablePa, level: u32) {
        if level == 0 {
            return;
        }
        for i in 0..self.entries(level) {
            // SAFETY: `table` is live at `level`, `i` below its entries.
            let pte = unsafe { mem.read(table, i) };
            if pte_table(pte) {
                let child = TablePa::of_pte(pte);
                self.free_now(mem, child, level - 1);
                // SAFETY: `child` is live and reached from this entry
                // only; the tree is being destroyed.
                unsafe { mem.free_table(child) };
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod host_tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    /// A fake physical memory: tables in a map keyed by address, with
    /// allocation counting and failure injection.
    pub(crate) struct FakeMem {
        tables: BTreeMap<u64, Vec<u64>>,
        next: u64,
        /// Successful table allocations left before `ENOMEM` (`None`: no
        /// limit).
        pub(crate) budget: Option<usize>,
        pub(crate) allocs: usize,
        pub(crate) frees: usize,
    }

    impl FakeMem {
        pub(crate) fn new() -> Self {
            FakeMem { tables: BTreeMap::new(), next: 0x8000_0000, budget: None, allocs: 0, frees: 0 }
        }

        pub(crate) fn live(&self) -> usize {
            self.tables.len()
        }

        fn alloc(&mut self, entries: usize, align: u64) -> TablePa {
            let pa = (self.next + align - 1) & !(align - 1);
            self.next = pa + entries as u64 * 8;
            self.tables.insert(pa, vec![0; entries]);
            self.allocs += 1;
            TablePa::new(pa).unwrap()
        }

        fn entry(&self, t: TablePa, i: usize) -> &u64 {
            self.tables.get(&t.addr()).expect("live table").get(i).expect("index in table")
        }

        fn entry_mut(&mut self, t: TablePa, i: usize) -> &mut u64 {
            self.tables.get_mut(&t.addr()).expect("live table").get_mut(i).expect("index in table")
        }
    }

    // SAFETY: Tables are zeroed and aligned; every `FakeMem` access is
    // checked (a bad table or index panics, the test fails).
    unsafe impl TableMem for FakeMem {
        fn alloc_table(&mut self) -> Result<TablePa, Errno> {
            if let Some(b) = self.budget.as_mut() {
                if *b == 0 {
                    return Err(Errno::ENOMEM);
                }
                *b -= 1;
            }
            Ok(self.alloc(PTRS_PER_TABLE, TABLE_SIZE as u64))
        }

        fn alloc_root(&mut self) -> Result<TablePa, Errno> {
            Ok(self.alloc(PTRS_PER_ROOT, ROOT_SIZE as u64))
        }

        unsafe fn free_table(&mut self, table: TablePa) {
            let t = self.tables.remove(&table.addr()).expect("double free");
            assert_eq!(t.len(), PTRS_PER_TABLE, "freed a root as a table");
            self.frees += 1;
        }

        unsafe fn free_root(&mut self, root: TablePa) {
            let t = self.tables.remove(&root.addr()).expect("double free");
            assert_eq!(t.len(), PTRS_PER_ROOT);
            self.frees += 1;
        }

        unsafe fn read(&self, table: TablePa, index: usize) -> u64 {
            *self.entry(table, index)
        }

        unsafe fn write(&mut self, table: TablePa, index: usize, pte: u64) {
            *self.entry_mut(table, index) = pte;
        }

        unsafe fn fetch_and(&mut self, table: TablePa, index: usize, mask: u64) -> u64 {
            let e = self.entry_mut(table, index);
            let old = *e;
            *e &= mask;
            old
        }
    }

    /// Unmaps the whole GPA space (every table must go), then destroys.
    fn destroy_all(g: GStage<FakeMem>, mem: &mut FakeMem) {
        let mut f = Flush::new();
        let limit = g.mode().gpa_limit();
        let mut g = g;
        g.unmap_range(mem, 0, limit, &mut f).unwrap();
        f.finish(mem);
        assert_eq!(g.nr_tables(mem), 0);
        g.destroy(mem);
    }

    const K4: u64 = 0x1000;
    const M2: u64 = 0x20_0000;
    const G1: u64 = 0x4000_0000;
    const RW: Prot = Prot { read: true, write: true, exec: false };
    const RO: Prot = Prot { read: true, write: false, exec: false };

    fn new(mode: Mode) -> (FakeMem, GStage<FakeMem>) {
        let mut mem = FakeMem::new();
        let g = GStage::new(&mut mem, mode).unwrap();
        (mem, g)
    }

    fn map(g: &mut GStage<FakeMem>, mem: &mut FakeMem, gpa: u64, hpa: u64, size: PageSize, prot: Prot) -> FlushRange {
        let mut f = Flush::new();
        g.map(mem, gpa, hpa, size, prot, &mut f).unwrap();
        let r = f.range();
        f.finish(mem);
        r
    }

    fn unmap(g: &mut GStage<FakeMem>, mem: &mut FakeMem, gpa: u64, size: u64) -> (FlushRange, usize) {
        let mut f = Flush::new();
        g.unmap_range(mem, gpa, size, &mut f).unwrap();
        let r = (f.range(), f.nr_freed());
        f.finish(mem);
        r
    }

    #[test]
    fn modes() {
        assert_eq!(Mode::Sv39x4.gpa_bits(), 41);
        assert_eq!(Mode::Sv48x4.gpa_bits(), 50);
        assert_eq!(Mode::Sv57x4.gpa_bits(), 59);
        for l in 3..=5 {
            let m = Mode::from_levels(l).unwrap();
            assert_eq!(m.levels(), l);
            assert_eq!(m.hgatp_mode(), u64::from(l) + 5);
            assert_eq!(m.gpa_bits(), crate::vm_limits::riscv_gpa_bits(l));
        }
        assert_eq!(Mode::from_levels(2), None);
        assert_eq!(Mode::from_levels(6), None);
        assert_eq!(PageSize::from_bytes(M2), Some(PageSize::Size2M));
        assert_eq!(PageSize::from_bytes(3 * K4), None);
        assert_eq!(PageSize::Size1G.bytes(), G1);
    }

    #[test]
    fn hgatp_layout() {
        let root = TablePa::new(0x8020_4000).unwrap();
        assert_eq!(hgatp(Mode::Sv39x4, 5, root), (8 << 60) | (5 << 44) | 0x80204);
        assert_eq!(hgatp(Mode::Sv57x4, 0x3fff, root), (10 << 60) | (0x3fff << 44) | 0x80204);
        // VMID bits beyond the field do not leak into MODE.
        assert_eq!(hgatp(Mode::Sv48x4, 0x4001, root), (9 << 60) | (1 << 44) | 0x80204);
        assert_eq!(TablePa::new(0x1800), None);
        assert_eq!(TablePa::new(1 << 56), None);
    }

    #[test]
    fn map_walk_unmap_4k_all_modes() {
        for mode in [Mode::Sv39x4, Mode::Sv48x4, Mode::Sv57x4] {
            let (mut mem, mut g) = new(mode);
            assert_eq!(g.root().addr() % ROOT_SIZE as u64, 0);
            let top = mode.gpa_limit() - K4;
            assert_eq!(map(&mut g, &mut mem, 0x8000_0000, 0x1_2345_6000, PageSize::Size4K, RW), FlushRange::None);
            assert_eq!(map(&mut g, &mut mem, top, 0x9000, PageSize::Size4K, Prot::RX), FlushRange::None);
            // Two paths of (levels - 1) tables; the highest GPA uses a root
            // entry with the extra bits set.
            assert_eq!(g.nr_tables(&mem), 2 * (mode.levels() as usize - 1));
            assert_eq!(g.index(top, mode.root_level()), PTRS_PER_ROOT - 1);

            let l = g.walk(&mem, 0x8000_0123).unwrap();
            assert_eq!((l.hpa, l.level, l.prot, l.young, l.dirty), (0x1_2345_6123, 0, RW, true, true));
            let pte = l.pte;
            assert_eq!(pte & 0xff, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D);
            assert_eq!(pte & PTE_G, 0);
            assert_eq!(pte >> 10, 0x1_2345_6);
            assert_eq!(g.walk(&mem, top + 8).unwrap().hpa, 0x9008);
            assert_eq!(g.walk(&mem, 0x8000_1000), None);
            assert_eq!(g.walk(&mem, mode.gpa_limit()), None);

            let (r, freed) = unmap(&mut g, &mut mem, 0x8000_0000, K4);
            assert_eq!(r, FlushRange::All);
            assert_eq!(freed, mode.levels() as usize - 1);
            assert_eq!(g.walk(&mem, 0x8000_0000), None);
            assert_eq!(g.nr_tables(&mem), mode.levels() as usize - 1);
            destroy_all(g, &mut mem);
            assert_eq!(mem.live(), 0, "{mode:?} leaked");
            assert_eq!(mem.allocs, mem.frees);
        }
    }

    #[test]
    fn out_of_range_and_misaligned() {
        let (mut mem, mut g) = new(Mode::Sv39x4);
        let mut f = Flush::new();
        let lim = Mode::Sv39x4.gpa_limit();
        assert_eq!(g.map(&mut mem, lim, 0, PageSize::Size4K, RW, &mut f), Err(Errno::EFAULT));
        assert_eq!(g.map(&mut mem, u64::MAX & !0xfff, 0, PageSize::Size4K, RW, &mut f), Err(Errno::EFAULT));
        assert_eq!(g.map(&mut mem, lim - M2, 0, PageSize::Size1G, RW, &mut f), Err(Errno::EINVAL));
        assert_eq!(g.map(&mut mem, 0x800, 0, PageSize::Size4K, RW, &mut f), Err(Errno::EINVAL));
        assert_eq!(g.map(&mut mem, 0, 0x800, PageSize::Size4K, RW, &mut f), Err(Errno::EINVAL));
        assert_eq!(g.map(&mut mem, M2, K4, PageSize::Size2M, RW, &mut f), Err(Errno::EINVAL));
        assert_eq!(g.map(&mut mem, K4, 0, PageSize::Size2M, RW, &mut f), Err(Errno::EINVAL));
        assert_eq!(g.map(&mut mem, 0, 1 << 56, PageSize::Size4K, RW, &mut f), Err(Errno::EINVAL));
        assert_eq!(g.map(&mut mem, 0, 0, PageSize::Size4K, Prot::default(), &mut f), Err(Errno::EINVAL));
        let w_only = Prot { read: false, write: true, exec: false };
        assert_eq!(g.map(&mut mem, 0, 0, PageSize::Size4K, w_only, &mut f), Err(Errno::EINVAL));
        let x_only = Prot { read: false, write: false, exec: true };
        assert_eq!(g.map(&mut mem, 0, 0, PageSize::Size4K, x_only, &mut f), Ok(()));
        assert_eq!(g.walk(&mem, 0).unwrap().pte & 0xe, PTE_X);

        assert_eq!(g.unmap_range(&mut mem, lim - K4, 2 * K4, &mut f), Err(Errno::EFAULT));
        assert_eq!(g.unmap_range(&mut mem, u64::MAX & !0xfff, 2 * K4, &mut f), Err(Errno::EFAULT));
        assert_eq!(g.unmap_range(&mut mem, 0x10, K4, &mut f), Err(Errno::EINVAL));
        assert_eq!(g.unmap_range(&mut mem, 0, 0x10, &mut f), Err(Errno::EINVAL));
        assert_eq!(g.wrprotect_range(&mut mem, lim, K4, &mut f), Err(Errno::EFAULT));
        assert_eq!(g.age_range(&mut mem, lim, K4), Err(Errno::EFAULT));
        assert_eq!(g.test_young_range(&mut mem, 0, u64::MAX & !0xfff), Err(Errno::EFAULT));
        // Nothing was touched by the failures.
        assert!(!f.is_needed());
        assert_eq!(g.unmap_range(&mut mem, 0, 0, &mut f), Ok(()));
        assert!(!f.is_needed());
        f.finish(&mut mem);
        destroy_all(g, &mut mem);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn replace_leaf_flushes_only_on_change() {
        let (mut mem, mut g) = new(Mode::Sv48x4);
        assert_eq!(map(&mut g, &mut mem, 0x1000, 0xa000, PageSize::Size4K, RO), FlushRange::None);
        // Identical: nothing.
        assert_eq!(map(&mut g, &mut mem, 0x1000, 0xa000, PageSize::Size4K, RO), FlushRange::None);
        // New rights, then a new page: flush that page.
        let one = FlushRange::Range { start: 0x1000, end: 0x2000, shift: 12 };
        assert_eq!(map(&mut g, &mut mem, 0x1000, 0xa000, PageSize::Size4K, RW), one);
        assert_eq!(map(&mut g, &mut mem, 0x1000, 0xb000, PageSize::Size4K, RW), one);
        assert_eq!(g.walk(&mem, 0x1000).unwrap().hpa, 0xb000);
        assert_eq!(g.nr_tables(&mem), 3);
        destroy_all(g, &mut mem);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn huge_mappings() {
        let (mut mem, mut g) = new(Mode::Sv39x4);
        map(&mut g, &mut mem, G1, 0x8000_0000, PageSize::Size1G, RW);
        assert_eq!(g.nr_tables(&mem), 0); // a root entry
        map(&mut g, &mut mem, 2 * G1 + M2, 0x1_0020_0000, PageSize::Size2M, Prot::RX);
        assert_eq!(g.nr_tables(&mem), 1);
        let l = g.walk(&mem, G1 + 0x1234_5678).unwrap();
        assert_eq!((l.hpa, l.level, l.size()), (0x9234_5678, 2, Some(PageSize::Size1G)));
        let l = g.walk(&mem, 2 * G1 + M2 + 0x1_2345).unwrap();
        assert_eq!((l.hpa, l.level, l.prot), (0x1_0021_2345, 1, Prot::RX));
        assert_eq!(g.walk(&mem, 2 * G1), None);
        // Whole huge leaves go without a split.
        let (r, freed) = unmap(&mut g, &mut mem, G1, G1);
        assert_eq!((r, freed), (FlushRange::Range { start: G1, end: 2 * G1, shift: 30 }, 0));
        assert_eq!(mem.allocs, 2);
        destroy_all(g, &mut mem);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn map_small_inside_huge_splits_and_keeps_the_rest() {
        for mode in [Mode::Sv39x4, Mode::Sv48x4, Mode::Sv57x4] {
            let (mut mem, mut g) = new(mode);
            map(&mut g, &mut mem, 0, 0x4_0000_0000, PageSize::Size1G, Prot::RWX);
            let before = g.nr_tables(&mem);
            // A 4K page inside: 1G -> 2M table -> 4K table.
            let r = map(&mut g, &mut mem, 0x30_5000, 0x7000, PageSize::Size4K, RO);
            // One fence at the GPA drops the 1G, the 2M and the 4K leaf.
            assert_eq!(r, FlushRange::Range { start: 0x30_5000, end: 0x30_6000, shift: 12 });
            assert_eq!(g.nr_tables(&mem), before + 2);
            assert_eq!(g.walk(&mem, 0x30_5010).unwrap().hpa, 0x7010);
            assert_eq!(g.walk(&mem, 0x30_5010).unwrap().prot, RO);
            // The rest of the 1G keeps its translation and rights, at 2M or
            // 4K granularity.
            for gpa in [0, 0x30_4000, 0x30_6000, 0x3f_f000, 0x40_0000, G1 - K4, 0x1234_5000] {
                let l = g.walk(&mem, gpa).unwrap();
                assert_eq!((l.hpa, l.prot), (0x4_0000_0000 + gpa, Prot::RWX), "gpa {gpa:#x}");
                assert_eq!(l.level, if (0x20_0000..0x40_0000).contains(&gpa) { 0 } else { 1 });
            }
            destroy_all(g, &mut mem);
            assert_eq!(mem.live(), 0);
        }
    }

    #[test]
    fn map_huge_over_small_merges_and_frees() {
        let (mut mem, mut g) = new(Mode::Sv48x4);
        for i in 0..8 {
            map(&mut g, &mut mem, M2 + i * K4, 0x10_0000 + i * K4, PageSize::Size4K, RW);
        }
        map(&mut g, &mut mem, 5 * M2, 0x900_0000, PageSize::Size4K, RW);
        assert_eq!(g.nr_tables(&mem), 4); // L2, L1, two L0
        let mut f = Flush::new();
        g.map(&mut mem, 0, 0x4000_0000, PageSize::Size1G, RW, &mut f).unwrap();
        assert_eq!(f.range(), FlushRange::All);
        assert_eq!(f.nr_freed(), 3); // L1 and both L0 below the 1G slot
        // Until `finish`, the unlinked tables still exist (a walker may read
        // them) and are all invalid to hardware.
        assert_eq!(mem.live(), 1 + 4);
        f.finish(&mut mem);
        assert_eq!(mem.live(), 1 + 1);
        assert_eq!(g.nr_tables(&mem), 1);
        assert_eq!(g.walk(&mem, M2 + K4).unwrap().hpa, 0x4020_1000);
        // A 2M over a table of 4K pages.
        map(&mut g, &mut mem, G1 + 0x1000, 0x1000, PageSize::Size4K, RW);
        assert_eq!(g.nr_tables(&mem), 3);
        let mut f = Flush::new();
        g.map(&mut mem, G1, 0x20_0000, PageSize::Size2M, RW, &mut f).unwrap();
        assert_eq!((f.range(), f.nr_freed()), (FlushRange::All, 1));
        f.finish(&mut mem);
        assert_eq!(g.walk(&mem, G1 + 0x1000).unwrap().level, 1);
        destroy_all(g, &mut mem);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn enomem_changes_nothing() {
        for budget in 0..2 {
            let (mut mem, mut g) = new(Mode::Sv48x4);
            map(&mut g, &mut mem, 0, 0x8000_0000, PageSize::Size1G, RW);
            mem.budget = Some(budget);
            let mut f = Flush::new();
            // Needs two tables (1G -> 2M -> 4K) below an existing L2.
            assert_eq!(g.map(&mut mem, 0x5000, 0x5000, PageSize::Size4K, RO, &mut f), Err(Errno::ENOMEM));
            assert!(!f.is_needed());
            f.finish(&mut mem);
            assert_eq!(g.walk(&mem, 0x5000).unwrap().level, 2);
            assert_eq!(g.nr_tables(&mem), 1);
            assert_eq!(mem.live(), 2, "budget {budget}");
            mem.budget = None;
            destroy_all(g, &mut mem);
            assert_eq!(mem.live(), 0);
        }
        let (mut mem, mut g) = new(Mode::Sv57x4);
        mem.budget = Some(3);
        let mut f = Flush::new();
        assert_eq!(g.map(&mut mem, 0, 0, PageSize::Size4K, RW, &mut f), Err(Errno::ENOMEM));
        assert_eq!(mem.live(), 1);
        mem.budget = Some(4);
        assert_eq!(g.map(&mut mem, 0, 0, PageSize::Size4K, RW, &mut f), Ok(()));
        f.finish(&mut mem);
        destroy_all(g, &mut mem);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn unmap_partial_huge_splits() {
        let (mut mem, mut g) = new(Mode::Sv39x4);
        map(&mut g, &mut mem, 0, 0x8000_0000, PageSize::Size1G, RW);
        // Punch 4K..12K out of the 1G: only those two pages need fences.
        let (r, freed) = unmap(&mut g, &mut mem, K4, 2 * K4);
        assert_eq!(r, FlushRange::Range { start: K4, end: 3 * K4, shift: 12 });
        assert_eq!(freed, 0);
        assert_eq!(g.walk(&mem, K4), None);
        assert_eq!(g.walk(&mem, 2 * K4 + 5), None);
        assert_eq!(g.walk(&mem, 0).unwrap().hpa, 0x8000_0000);
        assert_eq!(g.walk(&mem, 3 * K4).unwrap().hpa, 0x8000_3000);
        assert_eq!(g.walk(&mem, 3 * M2).unwrap().level, 1);
        assert_eq!(g.nr_tables(&mem), 2);
        // Unmap a whole 2M slot of the split (a leaf) and the rest of the
        // 4K table: the 4K table is freed.
        let (r, freed) = unmap(&mut g, &mut mem, 0, M2);
        assert_eq!((r, freed), (FlushRange::All, 1));
        assert_eq!(g.nr_tables(&mem), 1);
        // Unmapping across the end of the split 1G frees the L1 table too.
        let (r, freed) = unmap(&mut g, &mut mem, M2, G1);
        assert_eq!((r, freed), (FlushRange::All, 1));
        assert_eq!(g.nr_tables(&mem), 0);
        assert_eq!(g.walk(&mem, G1 - K4), None);
        destroy_all(g, &mut mem);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn unmap_partial_huge_without_memory_drops_it_whole() {
        let (mut mem, mut g) = new(Mode::Sv39x4);
        map(&mut g, &mut mem, G1, 0x8000_0000, PageSize::Size1G, RW);
        map(&mut g, &mut mem, 0, 0x20_0000, PageSize::Size2M, RW);
        mem.budget = Some(0);
        let (r, freed) = unmap(&mut g, &mut mem, G1 + K4, K4);
        assert_eq!((r, freed), (FlushRange::Range { start: G1, end: 2 * G1, shift: 30 }, 0));
        assert_eq!(g.walk(&mem, G1), None);
        assert_eq!(g.walk(&mem, 2 * G1 - K4), None);
        // With one table: the 2M is split and only the 4K goes.
        mem.budget = Some(1);
        let (r, _) = unmap(&mut g, &mut mem, K4, K4);
        assert_eq!(r, FlushRange::Range { start: K4, end: 2 * K4, shift: 12 });
        assert_eq!(g.walk(&mem, 0).unwrap().hpa, 0x20_0000);
        assert_eq!(g.walk(&mem, K4), None);
        mem.budget = None;
        destroy_all(g, &mut mem);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn unmap_everything_frees_every_table() {
        for mode in [Mode::Sv39x4, Mode::Sv48x4, Mode::Sv57x4] {
            let (mut mem, mut g) = new(mode);
            let lim = mode.gpa_limit();
            let mut gpas = std::vec![0, K4, 5 * M2, G1 + 7 * K4, lim / 2, lim - K4, lim - G1];
            gpas.sort();
            for (i, &gpa) in gpas.iter().enumerate() {
                map(&mut g, &mut mem, gpa, (i as u64 + 1) << 12, PageSize::Size4K, RW);
            }
            map(&mut g, &mut mem, 3 * G1, 0x4000_0000, PageSize::Size1G, RW);
            assert!(g.nr_tables(&mem) > 0);
            let (r, freed) = unmap(&mut g, &mut mem, 0, lim);
            assert_eq!(r, FlushRange::All);
            assert!(freed > 0);
            assert_eq!(g.nr_tables(&mem), 0);
            assert_eq!(mem.live(), 1);
            for gpa in gpas {
                assert_eq!(g.walk(&mem, gpa), None);
            }
            g.destroy(&mut mem);
            assert_eq!(mem.live(), 0);
        }
    }

    #[test]
    fn destroy_frees_a_populated_tree() {
        for mode in [Mode::Sv39x4, Mode::Sv48x4, Mode::Sv57x4] {
            let (mut mem, mut g) = new(mode);
            for i in 0..600u64 {
                map(&mut g, &mut mem, i * 0x7_3000, i << 12, PageSize::Size4K, RW);
            }
            map(&mut g, &mut mem, mode.gpa_limit() / 2, 0, PageSize::Size2M, RW);
            map(&mut g, &mut mem, mode.gpa_limit() - G1, 0, PageSize::Size1G, RW);
            assert!(mem.live() > 10);
            assert_eq!(mem.live(), g.nr_tables(&mem) + 1);
            g.destroy(&mut mem);
            assert_eq!(mem.live(), 0, "{mode:?} leaked");
            assert_eq!(mem.allocs, mem.frees);
        }
    }

    #[test]
    fn wrprotect_and_flush() {
        let (mut mem, mut g) = new(Mode::Sv48x4);
        map(&mut g, &mut mem, 0, 0x10_0000, PageSize::Size4K, RW);
        map(&mut g, &mut mem, K4, 0x11_0000, PageSize::Size4K, RO);
        map(&mut g, &mut mem, 2 * K4, 0x12_0000, PageSize::Size4K, RW);
        map(&mut g, &mut mem, G1, 0x4000_0000, PageSize::Size2M, RW);
        let mut f = Flush::new();
        g.wrprotect_range(&mut mem, 0, 2 * K4, &mut f).unwrap();
        assert_eq!(f.range(), FlushRange::Range { start: 0, end: K4, shift: 12 });
        assert_eq!(g.walk(&mem, 0).unwrap().prot, RO);
        assert_eq!(g.walk(&mem, 0).unwrap().dirty, true);
        assert_eq!(g.walk(&mem, 2 * K4).unwrap().prot, RW);
        // Already read-only: no new flush.
        let mut f2 = Flush::new();
        g.wrprotect_range(&mut mem, 0, 2 * K4, &mut f2).unwrap();
        assert!(!f2.is_needed());
        // A 4K inside a 2M write-protects the whole 2M.
        g.wrprotect_range(&mut mem, G1 + 5 * K4, K4, &mut f).unwrap();
        // The union of both, at the smallest leaf's step (the caller
        // flushes the whole VMID beyond 512 steps).
        assert_eq!(f.range(), FlushRange::Range { start: 0, end: G1 + M2, shift: 12 });
        assert_eq!(g.walk(&mem, G1 + M2 - K4).unwrap().prot, RO);
        assert_eq!(f.range().steps(), Some((G1 + M2) >> 12));
        f.finish(&mut mem);
        f2.finish(&mut mem);
        // The dirty-logging write fault maps one writable 4K in the 2M.
        let r = map(&mut g, &mut mem, G1 + 5 * K4, 0x4000_5000, PageSize::Size4K, RW);
        assert_eq!(r, FlushRange::Range { start: G1 + 5 * K4, end: G1 + 6 * K4, shift: 12 });
        assert_eq!(g.walk(&mem, G1 + 5 * K4).unwrap().prot, RW);
        assert_eq!(g.walk(&mem, G1 + 6 * K4).unwrap().prot, RO);
        destroy_all(g, &mut mem);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn aging() {
        let (mut mem, mut g) = new(Mode::Sv39x4);
        map(&mut g, &mut mem, 0, 0x10_0000, PageSize::Size4K, RW);
        map(&mut g, &mut mem, M2, 0x20_0000, PageSize::Size2M, RW);
        assert_eq!(g.test_young_range(&mut mem, 0, K4), Ok(true));
        assert_eq!(g.test_young_range(&mut mem, K4, K4), Ok(false));
        assert_eq!(g.age_range(&mut mem, 0, K4), Ok(true));
        assert_eq!(g.age_range(&mut mem, 0, K4), Ok(false));
        assert_eq!(g.test_young_range(&mut mem, 0, K4), Ok(false));
        assert!(!g.walk(&mem, 0).unwrap().young);
        // Aging never touches D or the mapping.
        assert!(g.walk(&mem, 0).unwrap().dirty);
        assert_eq!(g.walk(&mem, 0).unwrap().hpa, 0x10_0000);
        // A range touching part of the 2M ages the whole leaf.
        assert_eq!(g.test_young_range(&mut mem, 0, M2 + K4), Ok(true));
        assert_eq!(g.age_range(&mut mem, M2 + M2 - K4, K4), Ok(true));
        assert_eq!(g.test_young_range(&mut mem, 0, G1), Ok(false));
        // Faulting the page back in (hardware without A updates) sets A.
        let r = map(&mut g, &mut mem, 0, 0x10_0000, PageSize::Size4K, RW);
        assert_eq!(r, FlushRange::Range { start: 0, end: K4, shift: 12 });
        assert_eq!(g.test_young_range(&mut mem, 0, K4), Ok(true));
        destroy_all(g, &mut mem);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn flush_chain_is_invalid_to_hardware() {
        let (mut mem, mut g) = new(Mode::Sv57x4);
        map(&mut g, &mut mem, 0, 0, PageSize::Size4K, RW);
        let tables: Vec<u64> = mem.tables.keys().copied().filter(|&a| a != g.root().addr()).collect();
        let mut f = Flush::new();
        g.unmap_range(&mut mem, 0, K4, &mut f).unwrap();
        assert_eq!(f.nr_freed(), 4);
        for t in tables {
            let entries = &mem.tables[&t];
            assert!(entries.iter().all(|&e| e & PTE_V == 0), "a chained table has a valid entry");
            assert!(entries[1..].iter().all(|&e| e == 0), "a chained table is not zeroed");
        }
        f.finish(&mut mem);
        assert_eq!(mem.live(), 1);
        g.destroy(&mut mem);
        assert_eq!(mem.live(), 0);
    }

    #[test]
    fn overlap_indices() {
        let (mut mem, g) = new(Mode::Sv39x4);
        assert_eq!(g.overlap(2, 0, 0, Mode::Sv39x4.gpa_limit()), 0..PTRS_PER_ROOT);
        assert_eq!(g.overlap(2, 0, G1 - K4, G1 + K4), 0..2);
        assert_eq!(g.overlap(0, M2, 0, M2), 0..0);
        assert_eq!(g.overlap(0, M2, M2 + K4, M2 + 3 * K4), 1..3);
        assert_eq!(g.overlap(0, M2, 0, u64::MAX), 0..PTRS_PER_TABLE);
        g.destroy(&mut mem);
    }
}
