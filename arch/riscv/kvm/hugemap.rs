// SPDX-License-Identifier: GPL-2.0

//! Which G-stage leaf size a fault may use (upstream's
//! `fault_supports_gstage_huge_mapping()`, `get_hva_mapping_size()`,
//! `transparent_hugepage_adjust()` and `hugetlb_mapping_size()` of
//! `arch/riscv/kvm/mmu.c`).
//!
//! Pure logic (`core` only), built into the module and tested on the host.
//! The kernel glue (`stage2.rs`) reads the host page tables through
//! [`host_leaf`] with interrupts off, under the VM's `mmu_lock`, after the
//! MMU-invalidation retry check, as upstream does.
//!
//! # Why the host page tables and not the folio
//!
//! A 2 MiB folio may be mapped by 4 KiB PTEs (partial `mremap`,
//! `mprotect`, a PTE-mapped THP) and some of those hvas may map other pages
//! or nothing. A G-stage block over the whole folio would then give the
//! guest pages that its hvas do not map, and no MMU-notifier callback for
//! those hvas would ever take them back. The host leaf that maps the hva,
//! on the other hand, maps the whole aligned block to physically contiguous
//! memory, and any change to it invalidates the whole block (a PMD split
//! notifies the whole PMD range). So the size comes from the host leaf
//! (THP and hugetlb alike), capped by the memslot's layout.
//!
//! # Rules
//!
//! - `VM_PFNMAP` memory and dirty-logging slots: 4 KiB only;
//! - a block of `size` bytes is used only if the slot's hva and gpa have
//!   the same offset inside such a block and the whole block lies inside
//!   the slot ([`block_fits`]);
//! - the host leaf at the hva must be at least as large, contain the pinned
//!   page at the expected offset, and be writable if the mapping will be;
//! - 1 GiB, else 2 MiB, else 4 KiB; leaves above 1 GiB count as 1 GiB.
//!
//! Everything is checked arithmetic: hvas, gpas and slot bounds come from
//! userspace and the guest.

// The fault path's caller is the run loop (branch rvrun), not merged
// yet; remove this once it is.
#![allow(dead_code)]

use super::gstage::PageSize;

/// Base page shift.
const PAGE_SHIFT: u32 = 12;
/// Index bits per host page-table level.
const INDEX_BITS: u32 = 9;

/// Host PTE valid (`_PAGE_PRESENT`).
const PTE_V: u64 = 1 << 0;
/// Host PTE readable.
const PTE_R: u64 = 1 << 1;
/// Host PTE writable.
const PTE_W: u64 = 1 << 2;
/// Host PTE executable.
const PTE_X: u64 = 1 << 3;
/// Host PTE PPN field (bits 10-53; bits 54-63 are PBMT, N and reserved).
const PTE_PPN_MASK: u64 = ((1 << 44) - 1) << 10;

/// The memslot a fault hit, in host and guest address terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotSpan {
    /// First guest frame.
    pub(crate) base_gfn: u64,
    /// Pages.
    pub(crate) npages: u64,
    /// Host virtual address of `base_gfn`.
    pub(crate) userspace_addr: u64,
}

/// Whether a block of `size` bytes (a power of two) around `hva` may be
/// mapped for a fault in `slot` (`fault_supports_gstage_huge_mapping()`):
/// the hva and gpa views of the slot are equally aligned inside a block,
/// and the block lies inside the slot.
pub(crate) fn block_fits(slot: &SlotSpan, hva: u64, size: u64) -> bool {
    if !size.is_power_of_two() {
        return false;
    }
    let mask = size - 1;
    let Some(gpa_start) = slot.base_gfn.checked_mul(1 << PAGE_SHIFT) else {
        return false;
    };
    let Some(bytes) = slot.npages.checked_mul(1 << PAGE_SHIFT) else {
        return false;
    };
    let uaddr_start = slot.userspace_addr;
    let Some(uaddr_end) = uaddr_start.checked_add(bytes) else {
        return false;
    };
    if gpa_start & mask != uaddr_start & mask {
        return false;
    }
    // ALIGN(uaddr_start, size) <= hva < ALIGN_DOWN(uaddr_end, size).
    let Some(first) = uaddr_start.checked_add(mask).map(|a| a & !mask) else {
        return false;
    };
    let last = uaddr_end & !mask;
    hva >= first && hva < last
}

/// A leaf of the host page tables (`mm->pgd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostLeaf {
    /// log2 of the bytes it maps (12, 21, 30, ...).
    pub(crate) shift: u32,
    /// The physical address it maps the block's start to.
    pub(crate) pa: u64,
    /// Whether it is writable.
    pub(crate) writable: bool,
}

/// Walks the host page tables of `levels` levels (3: Sv39, 4: Sv48, 5:
/// Sv57) for `va`, as `get_hva_mapping_size()`: each entry is read once,
/// and the walk stops at the first invalid entry (`None`) or leaf.
///
/// `read(table, index)` reads entry `index` of the table at `table`: the
/// root's address `root`, then `table_at(pa)` of each next-level table.
/// Called with interrupts off in the kernel, so that no table is freed
/// during the walk.
pub(crate) fn host_leaf(
    levels: u32,
    va: u64,
    root: u64,
    table_at: impl Fn(u64) -> u64,
    mut read: impl FnMut(u64, usize) -> u64,
) -> Option<HostLeaf> {
    if !(3..=5).contains(&levels) {
        return None;
    }
    let mut table = root;
    let mut level = levels - 1;
    loop {
        let shift = PAGE_SHIFT + level * INDEX_BITS;
        let index = ((va >> shift) & ((1 << INDEX_BITS) - 1)) as usize;
        let pte = read(table, index);
        if pte & PTE_V == 0 {
            return None;
        }
        let pa = ((pte & PTE_PPN_MASK) >> 10) << PAGE_SHIFT;
        if pte & (PTE_R | PTE_W | PTE_X) != 0 {
            return Some(HostLeaf { shift, pa, writable: pte & PTE_W != 0 });
        }
        if level == 0 {
            // A pointer at the last level is reserved: treat as unmapped.
            return None;
        }
        table = table_at(pa);
        level -= 1;
    }
}

/// What a fault maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// The leaf size.
    pub(crate) size: PageSize,
    /// The guest physical address of the leaf (aligned to `size`).
    pub(crate) gpa: u64,
    /// The host physical address of the leaf (aligned to `size`).
    pub(crate) hpa: u64,
}

/// What the fault resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FaultFacts {
    /// The faulting guest physical address.
    pub(crate) gpa: u64,
    /// The host virtual address of its page.
    pub(crate) hva: u64,
    /// The host physical address of the pinned (or `VM_PFNMAP`) page.
    pub(crate) hpa: u64,
    /// The mapping will be writable.
    pub(crate) writable: bool,
    /// The slot logs dirty pages.
    pub(crate) dirty_logging: bool,
    /// `VM_PFNMAP`/`VM_IO` memory.
    pub(crate) pfnmap: bool,
}

/// Chooses the leaf for a fault: the largest of 1 GiB and 2 MiB that
/// [`block_fits`] the slot and that the host `leaf` covers consistently,
/// else 4 KiB. `leaf` is what [`host_leaf`] found at `f.hva` (`None`: not
/// walked or not mapped).
pub(crate) fn place(slot: &SlotSpan, f: &FaultFacts, leaf: Option<HostLeaf>) -> Placement {
    let page_mask = (1u64 << PAGE_SHIFT) - 1;
    let small = Placement { size: PageSize::Size4K, gpa: f.gpa & !page_mask, hpa: f.hpa & !page_mask };
    if f.pfnmap || f.dirty_logging {
        return small;
    }
    let Some(leaf) = leaf else {
        return small;
    };
    if f.writable && !leaf.writable {
        return small;
    }
    for size in [PageSize::Size1G, PageSize::Size2M] {
        if leaf.shift < size.shift() || !block_fits(slot, f.hva, size.bytes()) {
            continue;
        }
        let Some(leaf_bytes) = 1u64.checked_shl(leaf.shift) else {
            continue;
        };
        let leaf_mask = leaf_bytes - 1;
        // The pinned page must be where the leaf maps the hva.
        let Some(expect) = (leaf.pa & !leaf_mask).checked_add(f.hva & leaf_mask & !page_mask) else {
            continue;
        };
        if expect != f.hpa & !page_mask {
            continue;
        }
        let mask = size.bytes() - 1;
        let Some(hpa) = (f.hpa & !page_mask).checked_sub(f.hva & mask & !page_mask) else {
            continue;
        };
        if hpa & mask != 0 {
            continue;
        }
        return Placement { size, gpa: f.gpa & !mask, hpa };
    }
    small
}

#[cfg(test)]
pub(crate) mod host_tests {
    use super::*;
    use std::collections::BTreeMap;

    const K4: u64 = 0x1000;
    const M2: u64 = 0x20_0000;
    const G1: u64 = 0x4000_0000;

    fn slot(gpa: u64, bytes: u64, hva: u64) -> SlotSpan {
        SlotSpan { base_gfn: gpa / K4, npages: bytes / K4, userspace_addr: hva }
    }

    fn facts(gpa: u64, hva: u64, hpa: u64) -> FaultFacts {
        FaultFacts { gpa, hva, hpa, writable: true, dirty_logging: false, pfnmap: false }
    }

    fn leaf(shift: u32, pa: u64) -> Option<HostLeaf> {
        Some(HostLeaf { shift, pa, writable: true })
    }

    #[test]
    fn block_fits_needs_same_offset_and_whole_block() {
        // 8 MiB slot, hva and gpa both 2M aligned.
        let s = slot(0x8000_0000, 4 * M2, 0x7f00_0000_0000);
        assert!(block_fits(&s, 0x7f00_0000_0000, M2));
        assert!(block_fits(&s, 0x7f00_0000_0000 + 3 * M2 + K4, M2));
        assert!(!block_fits(&s, 0x7f00_0000_0000 + 4 * M2, M2));
        assert!(!block_fits(&s, 0x7f00_0000_0000, G1));
        // hva offset by 4K inside the 2M block: no 2M blocks at all.
        let s = slot(0x8000_0000, 4 * M2, 0x7f00_0000_1000);
        assert!(!block_fits(&s, 0x7f00_0020_1000, M2));
        // Same offset but the head and tail are partial blocks.
        let s = slot(0x8000_1000, 4 * M2, 0x7f00_0000_1000);
        assert!(!block_fits(&s, 0x7f00_0000_1000, M2));
        assert!(block_fits(&s, 0x7f00_0020_0000, M2));
        assert!(!block_fits(&s, 0x7f00_0080_0000, M2));
        // Overflowing slots and odd sizes never fit.
        let s = SlotSpan { base_gfn: u64::MAX / 2, npages: u64::MAX, userspace_addr: u64::MAX - K4 };
        assert!(!block_fits(&s, u64::MAX - K4, M2));
        assert!(!block_fits(&slot(0, M2, 0), 0, 3 * K4));
    }

    #[test]
    fn place_picks_the_largest_consistent_leaf() {
        let s = slot(0x4000_0000, 2 * G1, 0x7f80_0000_0000);
        let hva = 0x7f80_0000_0000 + G1 + 5 * M2 + 7 * K4;
        let gpa = 0x4000_0000 + G1 + 5 * M2 + 7 * K4;
        // A 1G host leaf at 0x1_0000_0000 maps the hva's block.
        let hpa = 0x1_0000_0000 + 5 * M2 + 7 * K4;
        let p = place(&s, &facts(gpa + 0x18, hva + 0x18, hpa), leaf(30, 0x1_0000_0000));
        assert_eq!(p, Placement { size: PageSize::Size1G, gpa: 0x4000_0000 + G1, hpa: 0x1_0000_0000 });
        // A 2M host leaf: 2M.
        let p = place(&s, &facts(gpa, hva, 0x9000_0000 + 7 * K4), leaf(21, 0x9000_0000));
        assert_eq!(p, Placement { size: PageSize::Size2M, gpa: gpa & !(M2 - 1), hpa: 0x9000_0000 });
        // 4K host mapping: 4K.
        let p = place(&s, &facts(gpa, hva, 0x9000_7000), leaf(12, 0x9000_7000));
        assert_eq!(p, Placement { size: PageSize::Size4K, gpa, hpa: 0x9000_7000 });
        // No leaf found, logging or PFNMAP: 4K.
        assert_eq!(place(&s, &facts(gpa, hva, hpa), None).size, PageSize::Size4K);
        let mut f = facts(gpa, hva, hpa);
        f.dirty_logging = true;
        assert_eq!(place(&s, &f, leaf(30, 0x1_0000_0000)).size, PageSize::Size4K);
        let mut f = facts(gpa, hva, hpa);
        f.pfnmap = true;
        assert_eq!(place(&s, &f, leaf(30, 0x1_0000_0000)).size, PageSize::Size4K);
    }

    #[test]
    fn place_refuses_inconsistent_leaves() {
        let s = slot(0x4000_0000, 2 * G1, 0x7f80_0000_0000);
        let hva = 0x7f80_0000_0000 + 5 * M2 + 7 * K4;
        let gpa = 0x4000_0000 + 5 * M2 + 7 * K4;
        // The pinned page is not where the leaf maps the hva (raced).
        assert_eq!(place(&s, &facts(gpa, hva, 0x9000_8000), leaf(21, 0x9000_0000)).size, PageSize::Size4K);
        // A read-only host leaf for a writable mapping.
        let ro = Some(HostLeaf { shift: 21, pa: 0x9000_0000, writable: false });
        assert_eq!(place(&s, &facts(gpa, hva, 0x9000_7000), ro).size, PageSize::Size4K);
        let mut f = facts(gpa, hva, 0x9000_7000);
        f.writable = false;
        assert_eq!(place(&s, &f, ro).size, PageSize::Size2M);
        // A 1G leaf in a slot whose hva/gpa offsets differ at 1G but agree
        // at 2M: 2M.
        let s2 = slot(0x4000_0000, 2 * G1, 0x7f80_0020_0000);
        let hva = 0x7f80_0020_0000 + G1 + 7 * K4;
        let gpa = 0x4000_0000 + G1 + 7 * K4;
        let p = place(&s2, &facts(gpa, hva, 0x1_0000_0000 + ((hva & (G1 - 1)) & !(K4 - 1))), leaf(30, 0x1_0000_0000));
        assert_eq!(p.size, PageSize::Size2M);
        assert_eq!(p.gpa % M2, 0);
        assert_eq!(p.hpa % M2, 0);
        // A leaf past 1G (512G) counts as 1G.
        let s3 = slot(0, 1 << 40, 0x80_0000_0000);
        let f = facts(3 * G1 + 5 * K4, 0x80_0000_0000 + 3 * G1 + 5 * K4, 0x100_0000_0000 + 3 * G1 + 5 * K4);
        assert_eq!(place(&s3, &f, leaf(39, 0x100_0000_0000)).size, PageSize::Size1G);
    }

    /// Fake host memory: tables keyed by address.
    struct Tables(BTreeMap<u64, [u64; 512]>);

    impl Tables {
        fn set(&mut self, table: u64, index: usize, pte: u64) {
            self.0.entry(table).or_insert([0; 512])[index] = pte;
        }
        fn read(&self, table: u64, index: usize) -> u64 {
            self.0.get(&table).map_or(0, |t| t[index])
        }
    }

    fn ptr(pa: u64) -> u64 {
        ((pa >> 12) << 10) | PTE_V
    }

    fn leaf_pte(pa: u64, w: bool) -> u64 {
        ((pa >> 12) << 10) | PTE_V | PTE_R | if w { PTE_W } else { 0 } | (1 << 6) | (1 << 7)
    }

    #[test]
    fn host_walk_finds_leaves_at_each_level() {
        const OFF: u64 = 0xffff_0000_0000_0000;
        let va = (3u64 << 30) | (5 << 21) | (9 << 12) | 0x123;
        for levels in 3..=5u32 {
            let root = OFF | 0x1000;
            let mut t = Tables(BTreeMap::new());
            // Root → L(levels-2) ... down to level 2 table.
            let mut table = root;
            let mut next_pa = 0x10_0000u64;
            for level in (3..levels).rev() {
                let idx = ((va >> (12 + 9 * level)) & 511) as usize;
                t.set(table, idx, ptr(next_pa));
                table = OFF | next_pa;
                next_pa += 0x1000;
            }
            // `table` is the level-2 table: a 1G leaf first.
            let l2 = table;
            t.set(l2, 3, leaf_pte(0x4000_0000, true));
            let walk = |t: &Tables| host_leaf(levels, va, root, |pa| OFF | pa, |tb, i| t.read(tb, i));
            assert_eq!(walk(&t), Some(HostLeaf { shift: 30, pa: 0x4000_0000, writable: true }));
            // A 2M leaf below a level-2 pointer.
            t.set(l2, 3, ptr(0x20_0000));
            t.set(OFF | 0x20_0000, 5, leaf_pte(0x60_0000, false));
            assert_eq!(walk(&t), Some(HostLeaf { shift: 21, pa: 0x60_0000, writable: false }));
            // A 4K leaf; PBMT/N bits do not leak into the address.
            t.set(OFF | 0x20_0000, 5, ptr(0x30_0000));
            t.set(OFF | 0x30_0000, 9, leaf_pte(0x7000, true) | (3 << 61));
            assert_eq!(walk(&t), Some(HostLeaf { shift: 12, pa: 0x7000, writable: true }));
            // Invalid entries end the walk.
            t.set(OFF | 0x30_0000, 9, 0);
            assert_eq!(walk(&t), None);
            // A pointer at level 0 is not a leaf.
            t.set(OFF | 0x30_0000, 9, ptr(0x8000));
            assert_eq!(walk(&t), None);
        }
        assert_eq!(host_leaf(2, 0, 0, |p| p, |_, _| PTE_V | PTE_R), None);
        assert_eq!(host_leaf(6, 0, 0, |p| p, |_, _| PTE_V | PTE_R), None);
    }
}
