// SPDX-License-Identifier: GPL-2.0

//! arm64 stage-2 page tables with the 4 KiB granule (upstream's
//! `arch/arm64/kvm/hyp/pgtable.c` for stage 2): the geometry and `VTCR_EL2`
//! of an IPA size, the descriptors, and map/unmap/age/write-protect/walk
//! over a [`TableMem`].
//!
//! Pure logic (`core` only), built into the module and tested on the host
//! (`tools/testing/host`). The kernel glue is `stage2.rs`.
//!
//! # Geometry
//!
//! As upstream (`kvm_get_vtcr()`, `stage2_pgtable_levels()`): a VM with
//! `ia` IPA bits (32 to 48) has `(ia - 8) / 9` levels, so the start level
//! resolves at most 13 bits and the root is up to 16 concatenated 4 KiB
//! tables (e.g. 40 bits: start level 1, two tables; 48 bits: start level
//! 0, one table).
//!
//! # Mappings
//!
//! Only 4 KiB pages (level 3) are mapped; block descriptors are never
//! made (block mappings are an optimisation upstream). Leaves are Normal
//! write-back (or Device-nGnRE for `VM_PFNMAP` memory), inner shareable,
//! with `S2AP` read and (if writable) write, the access flag set, and
//! executable unless device memory.
//!
//! # Freeing tables
//!
//! Unmapping a range that covers a whole next-level table unlinks that
//! table; unlinked tables are chained into a [`FreeList`] through their
//! entry 0 (an invalid descriptor: bit 0 clear) and must only be freed
//! (by the caller, [`Stage2Tables::free_list`]) after the TLB invalidation
//! for the VM, since a walker may still use a cached pointer to them.

use super::abi::Errno;

/// 4 KiB pages.
pub(crate) const PAGE_SHIFT: u32 = 12;
/// The page size.
pub(crate) const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Entries per (non-root) table.
const ENTRIES: usize = 512;

/// Descriptor bit 0: valid.
pub(crate) const DESC_VALID: u64 = 1 << 0;
/// Descriptor bit 1: a table (levels 0-2) or a page (level 3).
pub(crate) const DESC_TABLE: u64 = 1 << 1;
/// `MemAttr[3:0]` (bits 5:2).
pub(crate) const MEMATTR_SHIFT: u32 = 2;
/// `MemAttr` mask.
pub(crate) const MEMATTR_MASK: u64 = 0xf << MEMATTR_SHIFT;
/// `S2AP[0]`: read access.
pub(crate) const S2AP_R: u64 = 1 << 6;
/// `S2AP[1]`: write access.
pub(crate) const S2AP_W: u64 = 1 << 7;
/// `SH[1:0]` = inner shareable.
pub(crate) const SH_INNER: u64 = 3 << 8;
/// The access flag.
pub(crate) const AF: u64 = 1 << 10;
/// `XN[1]` (bit 54): execute never at EL1 and EL0.
pub(crate) const XN: u64 = 1 << 54;
/// The output address of a page or table descriptor (bits 47:12).
pub(crate) const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// `MemAttr` without `HCR_EL2.FWB`: Normal, outer and inner write-back.
pub(crate) const MEMATTR_NORMAL: u64 = 0xf;
/// `MemAttr` with `HCR_EL2.FWB`: Normal write-back, forced.
pub(crate) const MEMATTR_NORMAL_FWB: u64 = 0x6;
/// `MemAttr`: Device-nGnRE (the same with or without FWB).
pub(crate) const MEMATTR_DEVICE: u64 = 0x1;

/// The shift of the range one entry of `level` maps (4 KiB granule).
pub(crate) const fn level_shift(level: u32) -> u32 {
    PAGE_SHIFT + 9 * (3 - level)
}

/// The stage-2 geometry of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// IPA bits (32 to 48).
    pub(crate) ia_bits: u32,
    /// The first level the walk starts at (0 to 2).
    pub(crate) start_level: u32,
    /// The entries of the (concatenated) root: up to 16 tables.
    pub(crate) root_entries: usize,
}

impl Geometry {
    /// The geometry of `ia_bits` (`None` outside 32 to 48).
    pub(crate) const fn new(ia_bits: u32) -> Option<Geometry> {
        if ia_bits < 32 || ia_bits > 48 {
            return None;
        }
        let levels = (ia_bits - 8) / 9;
        let start_level = 4 - levels;
        let root_bits = ia_bits - level_shift(start_level);
        Some(Geometry { ia_bits, start_level, root_entries: 1 << root_bits })
    }

    /// The root's size in bytes (a multiple of 4 KiB).
    pub(crate) const fn root_size(&self) -> usize {
        let bytes = self.root_entries * 8;
        if bytes < PAGE_SIZE as usize {
            PAGE_SIZE as usize
        } else {
            bytes
        }
    }

    /// The first IPA out of range.
    pub(crate) const fn ipa_limit(&self) -> u64 {
        1 << self.ia_bits
    }

    /// `VTCR_EL2` for this geometry (`kvm_get_vtcr()`): `ps` is the
    /// `PARange` encoding of the host (at most 5, 48 bits), `vmid16`
    /// whether 16-bit VMIDs are used, `ha` whether hardware sets the access
    /// flag.
    pub(crate) const fn vtcr(&self, ps: u64, vmid16: bool, ha: bool) -> u64 {
        const RES1: u64 = 1 << 31;
        let t0sz = (64 - self.ia_bits) as u64;
        // SL0 for 4 KiB: 0 = level 2, 1 = level 1, 2 = level 0.
        let sl0 = (2 - self.start_level) as u64;
        let ps = if ps > 5 { 5 } else { ps };
        let mut v = RES1
            | t0sz
            | (sl0 << 6)
            | (1 << 8) // IRGN0: write-back, write-allocate
            | (1 << 10) // ORGN0: write-back, write-allocate
            | (3 << 12) // SH0: inner shareable
            // TG0 = 0: 4 KiB
            | (ps << 16);
        if vmid16 {
            v |= 1 << 19;
        }
        if ha {
            v |= 1 << 21;
        }
        v
    }

    /// The index into a table of `level` for `ipa`.
    const fn index(&self, level: u32, ipa: u64) -> usize {
        let idx = (ipa >> level_shift(level)) as usize;
        if level == self.start_level {
            idx & (self.root_entries - 1)
        } else {
            idx & (ENTRIES - 1)
        }
    }
}

/// The indices of the entries of a table (`n` entries of `1 << shift`
/// bytes from `base`) that overlap `[start, end)` (`start < end`).
fn index_range(base: u64, shift: u32, n: usize, start: u64, end: u64) -> core::ops::Range<usize> {
    let first = start.saturating_sub(base) >> shift;
    if end <= base {
        return 0..0;
    }
    let last = (end - 1 - base) >> shift;
    let first = usize::try_from(first).unwrap_or(usize::MAX).min(n);
    let last = usize::try_from(last).unwrap_or(usize::MAX).saturating_add(1).min(n);
    first..last.max(first)
}

/// The physical address of a page table (4 KiB aligned, below 2^48).
///
/// Invariant: `self.0` is 4 KiB aligned and has no bit above 47.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TablePa(u64);

impl TablePa {
    /// `pa` as a table address if it is aligned and in range.
    pub(crate) const fn new(pa: u64) -> Option<TablePa> {
        if pa & !OA_MASK != 0 {
            return None;
        }
        // INVARIANT: Checked just above.
        Some(TablePa(pa))
    }

    /// The physical address.
    pub(crate) const fn addr(self) -> u64 {
        self.0
    }

    /// The table a table descriptor points to.
    const fn of_desc(desc: u64) -> TablePa {
        // INVARIANT: Masked to bits 47:12.
        TablePa(desc & OA_MASK)
    }
}

/// Memory for stage-2 tables.
///
/// # Safety
///
/// Implementations guarantee: `alloc_table` returns a zeroed, 4 KiB
/// aligned table and `alloc_root` a zeroed root of the requested size,
/// aligned to that size, at the physical address the hardware walker uses;
/// `read` and `write` are single-copy atomic 64-bit accesses, and `write`
/// is a release (the writes before it are visible to a walker that sees
/// it).
pub(crate) unsafe trait TableMem {
    /// Allocates a zeroed 4 KiB table; `ENOMEM` when none is available.
    fn alloc_table(&mut self) -> Result<TablePa, Errno>;

    /// Allocates a zeroed root of `size` bytes (4 KiB to 64 KiB, a power of
    /// two), aligned to its size.
    fn alloc_root(&mut self, size: usize) -> Result<TablePa, Errno>;

    /// Frees a table.
    ///
    /// # Safety
    ///
    /// `table` came from `alloc_table` of this type, is not freed yet and
    /// is not used afterwards.
    unsafe fn free_table(&mut self, table: TablePa);

    /// Frees a root.
    ///
    /// # Safety
    ///
    /// `root` came from `alloc_root(size)` of this type, is not freed yet
    /// and is not used afterwards.
    unsafe fn free_root(&mut self, root: TablePa, size: usize);

    /// Reads entry `index` of `table`.
    ///
    /// # Safety
    ///
    /// `table` is a live table (`index` < 512) or root (`index` below its
    /// entries) of this type.
    unsafe fn read(&self, table: TablePa, index: usize) -> u64;

    /// Writes entry `index` of `table`.
    ///
    /// # Safety
    ///
    /// As for [`TableMem::read`].
    unsafe fn write(&mut self, table: TablePa, index: usize, desc: u64);
}

/// The access rights and type of a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Prot {
    /// Writable (`S2AP[1]`).
    pub(crate) write: bool,
    /// Executable (`XN` clear).
    pub(crate) exec: bool,
    /// Device memory (Device-nGnRE, never executable).
    pub(crate) device: bool,
}

/// A leaf found by [`Stage2Tables::walk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Leaf {
    /// The output address of the IPA's page.
    pub(crate) hpa: u64,
    /// The rights.
    pub(crate) prot: Prot,
    /// The access flag.
    pub(crate) young: bool,
    /// The raw descriptor.
    pub(crate) desc: u64,
}

/// The leaf descriptor of `hpa` with `prot` (`fwb`: `HCR_EL2.FWB` is set).
pub(crate) const fn leaf_desc(hpa: u64, prot: Prot, fwb: bool) -> u64 {
    let attr = if prot.device {
        MEMATTR_DEVICE
    } else if fwb {
        MEMATTR_NORMAL_FWB
    } else {
        MEMATTR_NORMAL
    };
    let mut d = (hpa & OA_MASK) | DESC_VALID | DESC_TABLE | (attr << MEMATTR_SHIFT) | S2AP_R | SH_INNER | AF;
    if prot.write {
        d |= S2AP_W;
    }
    if !prot.exec || prot.device {
        d |= XN;
    }
    d
}

/// Tables unlinked by an unmap, chained through their entry 0, to free
/// after the TLB invalidation ([`Stage2Tables::free_list`]).
#[derive(Debug, Default)]
pub(crate) struct FreeList {
    head: Option<TablePa>,
    /// How many tables are on the list.
    pub(crate) len: usize,
}

impl FreeList {
    /// An empty list.
    pub(crate) const fn new() -> FreeList {
        FreeList { head: None, len: 0 }
    }
}

/// What a change to the tables needs before its effect is guaranteed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    /// A valid descriptor was removed or narrowed: the VM's TLB entries
    /// must be invalidated.
    pub(crate) flush: bool,
}

/// A VM's stage-2 tables.
///
/// Invariant: `root` is a live root of `geo.root_size()` bytes from the
/// `TableMem` the methods are given (the same type every time), until
/// [`Stage2Tables::destroy`]; every table descriptor reachable from it
/// points to a live table of that memory.
#[derive(Debug)]
pub(crate) struct Stage2Tables {
    geo: Geometry,
    root: TablePa,
    fwb: bool,
}

impl Stage2Tables {
    /// Empty tables for `geo`; `fwb` selects the Normal memory encoding.
    pub(crate) fn new<M: TableMem>(mem: &mut M, geo: Geometry, fwb: bool) -> Result<Stage2Tables, Errno> {
        let root = mem.alloc_root(geo.root_size())?;
        // INVARIANT: A fresh, zeroed root of that size.
        Ok(Stage2Tables { geo, root, fwb })
    }

    /// The geometry.
    pub(crate) fn geometry(&self) -> Geometry {
        self.geo
    }

    /// The root's physical address (`VTTBR_EL2.BADDR`).
    pub(crate) fn root(&self) -> TablePa {
        self.root
    }

    /// `VTTBR_EL2` for `vmid`.
    pub(crate) fn vttbr(&self, vmid: u64) -> u64 {
        self.root.addr() | ((vmid & 0xffff) << 48)
    }

    /// Maps the 4 KiB page at `ipa` to `hpa` with `prot`, allocating the
    /// missing tables from `mem`. Replacing a different valid leaf asks for
    /// a flush. `EINVAL` for an unaligned or out-of-range address.
    pub(crate) fn map<M: TableMem>(&mut self, mem: &mut M, ipa: u64, hpa: u64, prot: Prot) -> Result<Changed, Errno> {
        if ipa % PAGE_SIZE != 0 || ipa >= self.geo.ipa_limit() || hpa & !OA_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        let mut table = self.root;
        let mut level = self.geo.start_level;
        while level < 3 {
            let idx = self.geo.index(level, ipa);
            // SAFETY: `table` is live (invariant), `idx` in range.
            let d = unsafe { mem.read(table, idx) };
            table = if d & DESC_VALID == 0 {
                let t = mem.alloc_table()?;
                // SAFETY: As above; the new table is zeroed, and the
                // release orders that before the link.
                unsafe { mem.write(table, idx, t.addr() | DESC_VALID | DESC_TABLE) };
                t
            } else if d & DESC_TABLE == 0 {
                // A block: never made by this code.
                return Err(Errno::EINVAL);
            } else {
                TablePa::of_desc(d)
            };
            level += 1;
        }
        let idx = self.geo.index(3, ipa);
        let new = leaf_desc(hpa, prot, self.fwb);
        // SAFETY: `table` is a live level-3 table.
        let old = unsafe { mem.read(table, idx) };
        if old == new {
            return Ok(Changed::default());
        }
        // Break-before-make is not needed for adding rights to the same
        // output address; anything else that was valid is flushed by the
        // caller.
        let same_page = old & DESC_VALID != 0 && old & OA_MASK == new & OA_MASK;
        let narrowing = old & DESC_VALID != 0 && (!same_page || (old & !new) & (S2AP_W | S2AP_R) != 0 || (old ^ new) & MEMATTR_MASK != 0);
        if narrowing {
            // SAFETY: As above.
            unsafe { mem.write(table, idx, 0) };
        }
        // SAFETY: As above.
        unsafe { mem.write(table, idx, new) };
        Ok(Changed { flush: narrowing })
    }

    /// The leaf mapping `ipa`, if any.
    pub(crate) fn walk<M: TableMem>(&self, mem: &M, ipa: u64) -> Option<Leaf> {
        if ipa >= self.geo.ipa_limit() {
            return None;
        }
        let mut table = self.root;
        let mut level = self.geo.start_level;
        loop {
            let idx = self.geo.index(level, ipa);
            // SAFETY: `table` is live (invariant), `idx` in range.
            let d = unsafe { mem.read(table, idx) };
            if d & DESC_VALID == 0 {
                return None;
            }
            if level == 3 || d & DESC_TABLE == 0 {
                if level != 3 {
                    return None;
                }
                return Some(Leaf {
                    hpa: (d & OA_MASK) | (ipa & (PAGE_SIZE - 1)),
                    prot: Prot {
                        write: d & S2AP_W != 0,
                        exec: d & XN == 0,
                        device: (d & MEMATTR_MASK) >> MEMATTR_SHIFT == MEMATTR_DEVICE,
                    },
                    young: d & AF != 0,
                    desc: d,
                });
            }
            table = TablePa::of_desc(d);
            level += 1;
        }
    }

    /// Sets the access flag of the leaf at `ipa` (`kvm_pgtable_stage2_mkyoung()`);
    /// whether a leaf was there.
    pub(crate) fn mkyoung<M: TableMem>(&mut self, mem: &mut M, ipa: u64) -> bool {
        let mut found = false;
        self.leaves(mem, ipa & !(PAGE_SIZE - 1), PAGE_SIZE, &mut |d| {
            found = true;
            Some(d | AF)
        });
        found
    }

    /// Runs `f` on every valid leaf of `[start, start + size)` (clipped to
    /// the IPA range); `f` returns the new descriptor, if it changes.
    fn leaves<M: TableMem>(&self, mem: &mut M, start: u64, size: u64, f: &mut impl FnMut(u64) -> Option<u64>) {
        let limit = self.geo.ipa_limit();
        let end = start.saturating_add(size).min(limit);
        if start >= end {
            return;
        }
        self.leaves_in(mem, self.root, self.geo.start_level, 0, start, end, f);
    }

    #[allow(clippy::too_many_arguments)]
    fn leaves_in<M: TableMem>(
        &self,
        mem: &mut M,
        table: TablePa,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        f: &mut impl FnMut(u64) -> Option<u64>,
    ) {
        let shift = level_shift(level);
        let n = if level == self.geo.start_level { self.geo.root_entries } else { ENTRIES };
        for idx in index_range(base, shift, n, start, end) {
            let lo = base + ((idx as u64) << shift);
            // SAFETY: `table` is live (invariant), `idx` in range.
            let d = unsafe { mem.read(table, idx) };
            if d & DESC_VALID == 0 {
                continue;
            }
            if level == 3 {
                if let Some(new) = f(d) {
                    // SAFETY: As above.
                    unsafe { mem.write(table, idx, new) };
                }
            } else if d & DESC_TABLE != 0 {
                self.leaves_in(mem, TablePa::of_desc(d), level + 1, lo, start, end, f);
            }
        }
    }

    /// Clears the access flag of the leaves of the range; whether any was
    /// set (`kvm_age_gfn()`, no flush as upstream).
    pub(crate) fn age<M: TableMem>(&mut self, mem: &mut M, start: u64, size: u64) -> bool {
        let mut young = false;
        self.leaves(mem, start, size, &mut |d| {
            if d & AF == 0 {
                return None;
            }
            young = true;
            Some(d & !AF)
        });
        young
    }

    /// Whether any leaf of the range has its access flag set.
    pub(crate) fn test_age<M: TableMem>(&self, mem: &mut M, start: u64, size: u64) -> bool {
        let mut young = false;
        self.leaves(mem, start, size, &mut |d| {
            young |= d & AF != 0;
            None
        });
        young
    }

    /// Removes write access from the leaves of the range.
    pub(crate) fn wrprotect<M: TableMem>(&mut self, mem: &mut M, start: u64, size: u64) -> Changed {
        let mut flush = false;
        self.leaves(mem, start, size, &mut |d| {
            if d & S2AP_W == 0 {
                return None;
            }
            flush = true;
            Some(d & !S2AP_W)
        });
        Changed { flush }
    }

    /// Unmaps `[start, start + size)`: leaves are cleared; next-level
    /// tables the range covers whole are unlinked onto `free` (free them
    /// with [`Self::free_list`] after the TLB invalidation).
    pub(crate) fn unmap<M: TableMem>(&mut self, mem: &mut M, start: u64, size: u64, free: &mut FreeList) -> Changed {
        let limit = self.geo.ipa_limit();
        let end = start.saturating_add(size).min(limit);
        let mut ch = Changed::default();
        if start < end {
            self.unmap_in(mem, self.root, self.geo.start_level, 0, start, end, free, &mut ch);
        }
        ch
    }

    #[allow(clippy::too_many_arguments)]
    fn unmap_in<M: TableMem>(
        &self,
        mem: &mut M,
        table: TablePa,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        free: &mut FreeList,
        ch: &mut Changed,
    ) {
        let shift = level_shift(level);
        let n = if level == self.geo.start_level { self.geo.root_entries } else { ENTRIES };
        for idx in index_range(base, shift, n, start, end) {
            let lo = base + ((idx as u64) << shift);
            let hi = lo + (1u64 << shift);
            // SAFETY: `table` is live (invariant), `idx` in range.
            let d = unsafe { mem.read(table, idx) };
            if d & DESC_VALID == 0 {
                continue;
            }
            if level == 3 || d & DESC_TABLE == 0 {
                // SAFETY: As above.
                unsafe { mem.write(table, idx, 0) };
                ch.flush = true;
                continue;
            }
            let child = TablePa::of_desc(d);
            self.unmap_in(mem, child, level + 1, lo, start, end, free, ch);
            if start <= lo && hi <= end {
                // Covered whole: unlink, free after the flush.
                // SAFETY: As above.
                unsafe { mem.write(table, idx, 0) };
                ch.flush = true;
                let next = free.head.map_or(0, TablePa::addr);
                // SAFETY: `child` is a live table, now unreachable from the
                // root; the link is an invalid descriptor (bit 0 clear).
                unsafe { mem.write(child, 0, next) };
                free.head = Some(child);
                free.len += 1;
            }
        }
    }

    /// Frees the tables of `free` (after the flush that followed the
    /// unmap that filled it).
    pub(crate) fn free_list<M: TableMem>(mem: &mut M, free: &mut FreeList) {
        while let Some(t) = free.head.take() {
            // SAFETY: `t` is an unlinked table of `mem` (it was on the
            // list); entry 0 holds the next link.
            let next = unsafe { mem.read(t, 0) };
            // SAFETY: Unlinked and flushed: nothing uses it any more.
            unsafe { mem.free_table(t) };
            free.head = TablePa::new(next).filter(|p| p.addr() != 0);
            free.len = free.len.saturating_sub(1);
        }
    }

    /// The number of non-root tables reachable from the root.
    pub(crate) fn nr_tables<M: TableMem>(&self, mem: &M) -> usize {
        self.count_in(mem, self.root, self.geo.start_level)
    }

    fn count_in<M: TableMem>(&self, mem: &M, table: TablePa, level: u32) -> usize {
        if level == 3 {
            return 0;
        }
        let n = if level == self.geo.start_level { self.geo.root_entries } else { ENTRIES };
        let mut count = 0;
        for idx in 0..n {
            // SAFETY: `table` is live (invariant), `idx` in range.
            let d = unsafe { mem.read(table, idx) };
            if d & (DESC_VALID | DESC_TABLE) == DESC_VALID | DESC_TABLE {
                count += 1 + self.count_in(mem, TablePa::of_desc(d), level + 1);
            }
        }
        count
    }

    /// Frees every table and the root (the VM is gone and its TLB entries
    /// were invalidated).
    pub(crate) fn destroy<M: TableMem>(self, mem: &mut M) {
        self.free_in(mem, self.root, self.geo.start_level);
        // SAFETY: The root is live (invariant) and not used again.
        unsafe { mem.free_root(self.root, self.geo.root_size()) };
    }

    fn free_in<M: TableMem>(&self, mem: &mut M, table: TablePa, level: u32) {
        if level == 3 {
            return;
        }
        let n = if level == self.geo.start_level { self.geo.root_entries } else { ENTRIES };
        for idx in 0..n {
            // SAFETY: `table` is live (invariant), `idx` in range.
            let d = unsafe { mem.read(table, idx) };
            if d & (DESC_VALID | DESC_TABLE) == DESC_VALID | DESC_TABLE {
                let child = TablePa::of_desc(d);
                self.free_in(mem, child, level + 1);
                // SAFETY: Reached from the live root; freed once.
                unsafe { mem.free_table(child) };
            }
        }
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;
    use std::collections::HashMap;

    /// Tables in host memory, keyed by a fake physical address.
    #[derive(Default)]
    struct Mem {
        tables: HashMap<u64, Vec<u64>>,
        next: u64,
        fail: bool,
    }

    // SAFETY: Test memory: zeroed on allocation, accesses by key.
    unsafe impl TableMem for Mem {
        fn alloc_table(&mut self) -> Result<TablePa, Errno> {
            self.alloc_root(4096)
        }
        fn alloc_root(&mut self, size: usize) -> Result<TablePa, Errno> {
            if self.fail {
                return Err(Errno::ENOMEM);
            }
            let size = size as u64;
            self.next = (self.next + size + size - 1) / size * size + size;
            self.tables.insert(self.next, vec![0; size as usize / 8]);
            Ok(TablePa::new(self.next).unwrap())
        }
        unsafe fn free_table(&mut self, table: TablePa) {
            assert_eq!(self.tables.remove(&table.addr()).unwrap().len(), 512);
        }
        unsafe fn free_root(&mut self, root: TablePa, size: usize) {
            assert_eq!(self.tables.remove(&root.addr()).unwrap().len(), size / 8);
        }
        unsafe fn read(&self, table: TablePa, index: usize) -> u64 {
            self.tables[&table.addr()][index]
        }
        unsafe fn write(&mut self, table: TablePa, index: usize, desc: u64) {
            self.tables.get_mut(&table.addr()).unwrap()[index] = desc;
        }
    }

    const RW: Prot = Prot { write: true, exec: true, device: false };
    const RO: Prot = Prot { write: false, exec: true, device: false };

    #[test]
    fn geometry_as_upstream() {
        let g = Geometry::new(40).unwrap();
        assert_eq!((g.start_level, g.root_entries, g.root_size()), (1, 1024, 8192));
        let g = Geometry::new(48).unwrap();
        assert_eq!((g.start_level, g.root_entries, g.root_size()), (0, 512, 4096));
        let g = Geometry::new(44).unwrap();
        assert_eq!((g.start_level, g.root_entries, g.root_size()), (0, 32, 4096));
        let g = Geometry::new(43).unwrap();
        assert_eq!((g.start_level, g.root_entries, g.root_size()), (1, 8192, 65536));
        let g = Geometry::new(32).unwrap();
        assert_eq!((g.start_level, g.root_entries), (2, 2048));
        let g = Geometry::new(36).unwrap();
        assert_eq!((g.start_level, g.root_entries), (1, 64));
        for bad in [0, 31, 49, 52, u32::MAX] {
            assert_eq!(Geometry::new(bad), None);
        }
        // VTCR_EL2 of a 40-bit VM on a 48-bit host, as upstream computes
        // it: T0SZ 24, SL0 1, IRGN0/ORGN0 WBWA, SH0 inner, PS 5, RES1.
        let v = Geometry::new(40).unwrap().vtcr(5, false, false);
        assert_eq!(v, 0x8005_3558);
        assert_eq!(Geometry::new(48).unwrap().vtcr(6, true, true) & 0xff, 16 | 2 << 6);
        assert_eq!(Geometry::new(48).unwrap().vtcr(6, true, true) >> 16 & 0x3f, 5 | 1 << 3 | 1 << 5);
    }

    #[test]
    fn descriptors() {
        let d = leaf_desc(0x1234_5000, RW, false);
        assert_eq!(d, 0x1234_5000 | 0x3 | 0xf << 2 | 3 << 6 | 3 << 8 | 1 << 10);
        let d = leaf_desc(0x1234_5000, RO, true);
        assert_eq!(d & (MEMATTR_MASK | S2AP_W | S2AP_R), 0x6 << 2 | S2AP_R);
        let d = leaf_desc(0x1234_5000, Prot { write: true, exec: true, device: true }, true);
        assert_eq!(d & (MEMATTR_MASK | XN), 0x1 << 2 | XN);
    }

    #[test]
    fn map_walk_age_wrprotect_unmap() {
        for bits in [32, 36, 40, 44, 48] {
            let mut m = Mem::default();
            let mut t = Stage2Tables::new(&mut m, Geometry::new(bits).unwrap(), false).unwrap();
            let ipa = 0x8000_0000 + 7 * PAGE_SIZE;
            assert_eq!(t.map(&mut m, ipa, 0x4000_0000, RW), Ok(Changed { flush: false }));
            let l = t.walk(&m, ipa + 0x18).unwrap();
            assert_eq!((l.hpa, l.prot, l.young), (0x4000_0018, RW, true));
            assert_eq!(t.walk(&m, ipa + PAGE_SIZE), None);
            // Same mapping again: nothing; upgrade from RO to RW: no flush;
            // downgrade or another page: flush.
            assert_eq!(t.map(&mut m, ipa, 0x4000_0000, RW), Ok(Changed { flush: false }));
            assert_eq!(t.map(&mut m, ipa, 0x4000_0000, RO), Ok(Changed { flush: true }));
            assert_eq!(t.map(&mut m, ipa, 0x4000_0000, RW), Ok(Changed { flush: false }));
            assert_eq!(t.map(&mut m, ipa, 0x5000_0000, RW), Ok(Changed { flush: true }));
            assert_eq!(t.map(&mut m, ipa + 1, 0, RW), Err(Errno::EINVAL));
            assert_eq!(t.map(&mut m, 1 << bits, 0, RW), Err(Errno::EINVAL));
            // Aging.
            assert!(t.test_age(&mut m, ipa, PAGE_SIZE));
            assert!(t.age(&mut m, 0, u64::MAX));
            assert!(!t.test_age(&mut m, 0, u64::MAX));
            assert!(!t.age(&mut m, ipa, PAGE_SIZE));
            assert!(t.mkyoung(&mut m, ipa + 5));
            assert!(!t.mkyoung(&mut m, ipa + PAGE_SIZE));
            assert!(t.test_age(&mut m, ipa, 1));
            // Write-protect.
            assert_eq!(t.wrprotect(&mut m, ipa, PAGE_SIZE), Changed { flush: true });
            assert!(!t.walk(&m, ipa).unwrap().prot.write);
            assert_eq!(t.wrprotect(&mut m, 0, u64::MAX), Changed { flush: false });
            // Unmap a range not covering the tables: they stay.
            let tables = t.nr_tables(&m);
            assert_eq!(tables, (3 - t.geometry().start_level) as usize);
            let mut free = FreeList::new();
            assert_eq!(t.unmap(&mut m, ipa, PAGE_SIZE, &mut free), Changed { flush: true });
            assert_eq!(free.len, 0);
            assert_eq!(t.walk(&m, ipa), None);
            assert_eq!(t.nr_tables(&m), tables);
            // Unmapping everything unlinks every table; free after flush.
            t.map(&mut m, ipa, 0x4000_0000, RW).unwrap();
            t.map(&mut m, 0, 0x4000_1000, RW).unwrap();
            let linked = t.nr_tables(&m);
            assert!(linked > tables);
            let ch = t.unmap(&mut m, 0, u64::MAX, &mut free);
            assert!(ch.flush);
            assert_eq!(t.nr_tables(&m), 0);
            assert_eq!(free.len, linked);
            // Unlinked but not freed until the list is.
            assert_eq!(m.tables.len(), 1 + linked);
            Stage2Tables::free_list(&mut m, &mut free);
            assert_eq!((free.len, m.tables.len()), (0, 1));
            t.destroy(&mut m);
            assert!(m.tables.is_empty());
        }
    }

    #[test]
    fn destroy_frees_everything_and_alloc_failure_is_clean() {
        let mut m = Mem::default();
        let mut t = Stage2Tables::new(&mut m, Geometry::new(40).unwrap(), true).unwrap();
        for i in 0..64u64 {
            t.map(&mut m, i << 21, i << 12, RW).unwrap();
        }
        assert_eq!(t.nr_tables(&m), 1 + 64);
        m.fail = true;
        assert_eq!(t.map(&mut m, 1 << 35, 0, RW), Err(Errno::ENOMEM));
        m.fail = false;
        t.destroy(&mut m);
        assert!(m.tables.is_empty());
    }

    #[test]
    fn index_ranges() {
        assert_eq!(index_range(0, 12, 512, 0, 4096), 0..1);
        assert_eq!(index_range(0, 12, 512, 4095, 4097), 0..2);
        assert_eq!(index_range(0x20_0000, 12, 512, 0, u64::MAX), 0..512);
        assert_eq!(index_range(0x20_0000, 12, 512, 0x20_3000, 0x20_3001), 3..4);
        assert_eq!(index_range(0x20_0000, 12, 512, 0, 0x20_0000), 0..0);
        assert_eq!(index_range(0, 30, 1024, 1 << 40, u64::MAX), 1024..1024);
    }

    #[test]
    fn vttbr_has_root_and_vmid() {
        let mut m = Mem::default();
        let t = Stage2Tables::new(&mut m, Geometry::new(40).unwrap(), false).unwrap();
        assert_eq!(t.vttbr(0x1ff), t.root().addr() | 0x1ff << 48);
        assert_eq!(t.root().addr() % 8192, 0);
        t.destroy(&mut m);
    }
}
