// SPDX-License-Identifier: GPL-2.0

//! Memslots: `KVM_SET_USER_MEMORY_REGION(2)`, gfn→hva lookup and the
//! hva→gfn walk of MMU-notifier invalidations.
//!
//! Pure logic (only `core` and the [`Alloc`] storage family), built into the
//! module and tested on the host. Semantics follow upstream
//! `virt/kvm/kvm_main.c`:
//!
//! - validation and errnos: `kvm_vm_ioctl()` (`KVM_SET_USER_MEMORY_REGION`
//!   takes only the v1 flags), `kvm_vm_ioctl_set_memory_region()`,
//!   `check_memory_region_flags()` and `kvm_set_memory_region()`;
//! - the order of a change: `kvm_set_memslot()` (DELETE and MOVE first mark
//!   the old slot INVALID and zap it, then prepare; a failed prepare reverts
//!   the INVALID mark), `kvm_prepare_memory_region()` (dirty bitmap) and
//!   `kvm_commit_memory_region()`;
//! - the GPA-space limit that both `kvm_arch_prepare_memory_region()`s
//!   (riscv and arm64 `mmu.c`) enforce with `EFAULT`;
//! - lookups: `search_memslots()`, `__gfn_to_hva_many()`,
//!   `gfn_to_hva_memslot_prot()`, `kvm_is_visible_gfn()`, and
//!   `kvm_handle_hva_range()` for the hva walk.
//!
//! # Structure and cost
//!
//! All slots live in one arena vector (`nodes`); a freed node is chained on
//! an intrusive free list, so deleting never allocates. Two AVL trees are
//! threaded through the arena, like upstream's two rb-trees:
//!
//! - the gfn tree, keyed by `base_gfn` (slots never overlap in gfn space):
//!   gfn lookup, overlap check and ordered walks in O(log n);
//! - the hva tree, keyed by `(userspace_addr, id)` and augmented with the
//!   subtree's highest hva end (an interval tree; slots may alias in hva
//!   space): the slots touched by an hva range in O(log n + k).
//!
//! `by_id` maps a slot id to its node in O(1); it grows on demand (amortized
//! O(1), at most `KVM_USER_MEM_SLOTS` entries). Create, delete and move are
//! O(log n); flag changes are O(1) plus the dirty bitmap. Nothing copies the
//! whole set on an update (upstream copies nothing either: it keeps two
//! sets and replays each change on both).
//!
//! # Locking (kernel side)
//!
//! A [`Memslots`] is one VM's address space 0 (riscv64 and arm64 have a
//! single address space). The kernel glue keeps it behind the VM's
//! `slots_lock`-equivalent lock:
//!
//! - writers (`set_memory_region`, dirty-log ioctls) hold it exclusively;
//!   the [`MemslotHooks`] callbacks run inside that critical section;
//! - readers (the stage-2 fault path, guest memory access, MMU notifiers)
//!   hold it shared (or the same mutex) only for the lookup, and then rely
//!   on the MMU invalidation protocol (`mmu_invalidate.rs`): the glue
//!   brackets the zap of a deleted or moved slot ([`MemslotHooks::flush_shadow`])
//!   with an invalidation of the slot's gfn range, so a fault that looked up
//!   the old slot before the change fails its retry check and looks up
//!   again. This replaces upstream's SRCU grace period before the zap.
//! - the [`Memslots::generation`] changes on every visible update; a reader
//!   caching a lookup (a per-vCPU "last used slot") revalidates it with it,
//!   as upstream's `kvm_vcpu_gfn_to_memslot()` does.
//! - dirty bits are atomics: a reader may mark pages dirty under the shared
//!   lock (`dirty_log.rs`).

// The kernel glue (VM fd, fault path) comes next; until then only the host
// tests use these items.
#![allow(dead_code)]

use super::abi::Errno;
use super::dirty_log::DirtyBitmap;
use super::storage::{
    Alloc,
    Storage, //
};

/// Log writes to this slot (`KVM_MEM_LOG_DIRTY_PAGES`).
pub(crate) const KVM_MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
/// Guest writes to this slot exit to userspace as MMIO (`KVM_MEM_READONLY`).
pub(crate) const KVM_MEM_READONLY: u32 = 1 << 1;
/// The slot is backed by a guest_memfd (`KVM_MEM_GUEST_MEMFD`, REGION2 only).
pub(crate) const KVM_MEM_GUEST_MEMFD: u32 = 1 << 2;
/// Internal flag: the slot is being deleted or moved (`KVM_MEMSLOT_INVALID`).
pub(crate) const KVM_MEMSLOT_INVALID: u32 = 1 << 16;

/// The flags `KVM_SET_USER_MEMORY_REGION` (v1) accepts
/// (`KVM_SET_USER_MEMORY_REGION_V1_FLAGS`).
pub(crate) const KVM_SET_USER_MEMORY_REGION_V1_FLAGS: u32 =
    KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;

/// Slot ids per address space (`KVM_MEM_SLOTS_NUM` = `SHRT_MAX`).
pub(crate) const KVM_MEM_SLOTS_NUM: u16 = 32767;
/// Slot ids userspace may use: `KVM_MEM_SLOTS_NUM` minus
/// `KVM_INTERNAL_MEM_SLOTS`, which is 0 on riscv64 and arm64.
pub(crate) const KVM_USER_MEM_SLOTS: u16 = KVM_MEM_SLOTS_NUM;
/// Address spaces (`KVM_MAX_NR_ADDRESS_SPACES`): 1 on riscv64 and arm64.
pub(crate) const KVM_ADDRESS_SPACE_NUM: u16 = 1;
/// Largest slot in pages, so that dirty bitmaps index with an `unsigned int`
/// (`KVM_MEM_MAX_NR_PAGES`).
pub(crate) const KVM_MEM_MAX_NR_PAGES: u64 = (1 << 31) - 1;

/// `KVM_SET_USER_MEMORY_REGION`: `_IOW(KVMIO, 0x46, struct
/// kvm_userspace_memory_region)` (32 bytes).
pub(crate) const KVM_SET_USER_MEMORY_REGION: u32 =
    super::abi::ioc(1, super::abi::KVMIO, 0x46, 32);
/// `KVM_SET_USER_MEMORY_REGION2`: `_IOW(KVMIO, 0x49, struct
/// kvm_userspace_memory_region2)` (160 bytes).
pub(crate) const KVM_SET_USER_MEMORY_REGION2: u32 =
    super::abi::ioc(1, super::abi::KVMIO, 0x49, 160);

/// Which ioctl a region came from: v1 accepts fewer flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegionIoctl {
    /// `KVM_SET_USER_MEMORY_REGION`.
    V1,
    /// `KVM_SET_USER_MEMORY_REGION2`.
    V2,
}

/// `struct kvm_userspace_memory_region2` as read from userspace (v1 fills
/// the first five fields and leaves the rest zero, like upstream's memset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UserMemoryRegion {
    /// `as_id << 16 | id`.
    pub(crate) slot: u32,
    /// `KVM_MEM_*` flags.
    pub(crate) flags: u32,
    /// Guest physical start address.
    pub(crate) guest_phys_addr: u64,
    /// Size in bytes; 0 deletes the slot.
    pub(crate) memory_size: u64,
    /// Start of the backing userspace mapping.
    pub(crate) userspace_addr: u64,
    /// Offset into the guest_memfd (REGION2 with `KVM_MEM_GUEST_MEMFD`).
    pub(crate) guest_memfd_offset: u64,
    /// The guest_memfd file descriptor (REGION2 with `KVM_MEM_GUEST_MEMFD`).
    pub(crate) guest_memfd: u32,
}

/// What the host and the VM impose on memslots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemslotLimits {
    /// `PAGE_SHIFT` (12 for 4 KiB pages). Must be below 64.
    pub(crate) page_shift: u32,
    /// `kvm_arch_has_readonly_mem()`: true on riscv64 and arm64.
    pub(crate) readonly_mem: bool,
    /// `CONFIG_KVM_GUEST_MEMFD`: arm64 only.
    pub(crate) guest_memfd: bool,
    /// `TASK_SIZE_MAX`: `access_ok(addr, size)` holds when
    /// `size <= task_size && addr <= task_size - size`.
    pub(crate) task_size: u64,
    /// Pointer-tag bits `untagged_addr()` removes by sign-extending from bit
    /// `63 - tag_bits`: 8 with arm64 TBI, the PMLEN with riscv pointer
    /// masking, 0 otherwise. A tagged `userspace_addr` is `EINVAL`.
    pub(crate) tag_bits: u32,
    /// Guest physical address bits of the VM (arm64: the IPA size chosen at
    /// `KVM_CREATE_VM`; riscv: the G-stage mode's GPA bits). A slot must end
    /// at or below `1 << gpa_bits`, else `EFAULT`.
    pub(crate) gpa_bits: u32,
}

impl MemslotLimits {
    fn page_size(&self) -> Option<u64> {
        1u64.checked_shl(self.page_shift)
    }

    /// `untagged_addr()`.
    fn untag(&self, addr: u64) -> u64 {
        if self.tag_bits == 0 || self.tag_bits >= 64 {
            return addr;
        }
        // Sign-extend from bit 63 - tag_bits, as arm64's sign_extend64(addr,
        // 55) and riscv's `(long)(addr << pmlen) >> pmlen` do.
        let shifted = (addr << self.tag_bits) as i64;
        (shifted >> self.tag_bits) as u64
    }

    /// `access_ok(addr, size)` of `asm-generic/access_ok.h`.
    fn access_ok(&self, addr: u64, size: u64) -> bool {
        size <= self.task_size && addr <= self.task_size - size
    }

    /// Number of guest pages in the VM's physical address space.
    fn max_gfn(&self) -> u64 {
        match 1u64.checked_shl(self.gpa_bits) {
            Some(size) => size >> self.page_shift.min(63),
            None => u64::MAX >> self.page_shift.min(63),
        }
    }
}

/// One memslot, as lookups see it.
///
/// Invariants (established by [`Memslots::set_memory_region`]):
/// `npages >= 1`, `base_gfn + npages` does not overflow,
/// `userspace_addr + (npages << page_shift)` fits in the task size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Memslot {
    /// Slot id (the low 16 bits of the ioctl's `slot`).
    pub(crate) id: u16,
    /// First guest frame.
    pub(crate) base_gfn: u64,
    /// Number of pages.
    pub(crate) npages: u64,
    /// Host virtual address of `base_gfn`.
    pub(crate) userspace_addr: u64,
    /// `KVM_MEM_*` flags plus the internal [`KVM_MEMSLOT_INVALID`].
    pub(crate) flags: u32,
    /// guest_memfd offset, meaningful with `KVM_MEM_GUEST_MEMFD`.
    pub(crate) guest_memfd_offset: u64,
    /// guest_memfd fd number, meaningful with `KVM_MEM_GUEST_MEMFD`.
    pub(crate) guest_memfd: u32,
}

impl Memslot {
    /// One past the last gfn.
    pub(crate) fn end_gfn(&self) -> u64 {
        self.base_gfn.saturating_add(self.npages)
    }

    /// Whether `gfn` is in the slot.
    pub(crate) fn contains(&self, gfn: u64) -> bool {
        gfn >= self.base_gfn && gfn < self.end_gfn()
    }

    /// `KVM_MEM_READONLY`.
    pub(crate) fn is_readonly(&self) -> bool {
        self.flags & KVM_MEM_READONLY != 0
    }

    /// `KVM_MEMSLOT_INVALID`: being deleted or moved.
    pub(crate) fn is_invalid(&self) -> bool {
        self.flags & KVM_MEMSLOT_INVALID != 0
    }

    /// `kvm_slot_dirty_track_enabled()`.
    pub(crate) fn dirty_tracking(&self) -> bool {
        self.flags & KVM_MEM_LOG_DIRTY_PAGES != 0
    }
}

/// What a successful `KVM_SET_USER_MEMORY_REGION` did (`enum kvm_mr_change`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// A new slot.
    Create,
    /// The slot was removed.
    Delete,
    /// Same size and hva, new `base_gfn` (flags may change too).
    Move,
    /// Only `KVM_MEM_LOG_DIRTY_PAGES` changed.
    FlagsOnly,
}

/// Why a gfn has no usable hva (`KVM_HVA_ERR_BAD`, `KVM_HVA_ERR_RO_BAD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HvaError {
    /// No slot, or the slot is being deleted or moved.
    Bad,
    /// A write access to a read-only slot.
    ReadOnly,
}

/// The architecture's part of a memslot update, called inside the writer's
/// critical section (upstream's `kvm_arch_*_memory_region` hooks).
pub(crate) trait MemslotHooks {
    /// `kvm_arch_prepare_memory_region()`: may refuse the change (upstream
    /// riscv/arm64 check the VMAs here). The GPA-limit check is already done.
    fn prepare(
        &mut self,
        old: Option<&Memslot>,
        new: Option<&Memslot>,
        change: Change,
    ) -> Result<(), Errno>;

    /// DELETE and MOVE: the old slot is now marked INVALID; remove its
    /// stage-2 mappings (`kvm_arch_flush_shadow_memslot()`), bracketed by an
    /// MMU invalidation of its gfn range (see the module doc).
    fn flush_shadow(&mut self, old: &Memslot);

    /// `kvm_arch_commit_memory_region()`: the change is now visible.
    fn commit(&mut self, old: Option<&Memslot>, new: Option<&Memslot>, change: Change);
}

/// Hooks that accept everything and do nothing.
pub(crate) struct NoHooks;

impl MemslotHooks for NoHooks {
    fn prepare(&mut self, _: Option<&Memslot>, _: Option<&Memslot>, _: Change) -> Result<(), Errno> {
        Ok(())
    }
    fn flush_shadow(&mut self, _: &Memslot) {}
    fn commit(&mut self, _: Option<&Memslot>, _: Option<&Memslot>, _: Change) {}
}

/// No node: the "null pointer" of the arena.
const NIL: u32 = u32::MAX;
/// The tree keyed by `base_gfn`.
const GFN: usize = 0;
/// The interval tree keyed by `(userspace_addr, id)`.
const HVA: usize = 1;

/// Links of one node in one tree.
#[derive(Clone, Copy, Debug)]
struct Links {
    left: u32,
    right: u32,
    /// AVL height of the subtree rooted here (a leaf is 1).
    height: u8,
    /// Highest end (exclusive) in the subtree; used by the hva tree.
    max_end: u64,
}

const NO_LINKS: Links = Links {
    left: NIL,
    right: NIL,
    height: 0,
    max_end: 0,
};

/// An arena entry: a slot, its dirty bitmap and its tree links. A free
/// entry has `live == false` and chains the free list through
/// `links[GFN].left`.
struct Node<A: Alloc> {
    slot: Memslot,
    dirty: Option<DirtyBitmap<A>>,
    links: [Links; 2],
    live: bool,
}

/// The memslots of one VM address space.
///
/// Invariants: every live node is in both trees exactly once and
/// `by_id[slot.id]` names it; live slots never overlap in gfn space;
/// `nr_pages` is the sum of the live slots' `npages`; free nodes are
/// reachable from `free` only.
pub(crate) struct Memslots<A: Alloc> {
    limits: MemslotLimits,
    nodes: A::Vec<Node<A>>,
    by_id: A::Vec<u32>,
    roots: [u32; 2],
    free: u32,
    count: usize,
    nr_pages: u64,
    generation: u64,
    /// `kvm->manual_dirty_log_protect` (see `dirty_log.rs`).
    pub(crate) manual_dirty_log_protect: u64,
    /// `kvm_use_dirty_bitmap()`: false only with a dirty ring without
    /// bitmap, which kvm_rs does not offer yet.
    pub(crate) use_dirty_bitmap: bool,
}

/// The validated request, before any change is made.
struct Plan {
    change: Change,
    id: u16,
    old: Option<Memslot>,
    new: Option<Memslot>,
}

impl<A: Alloc> Memslots<A> {
    /// An empty set (no allocation).
    pub(crate) fn new(limits: MemslotLimits) -> Self {
        Self {
            limits,
            nodes: A::new_vec(),
            by_id: A::new_vec(),
            roots: [NIL; 2],
            free: NIL,
            count: 0,
            nr_pages: 0,
            generation: 0,
            manual_dirty_log_protect: 0,
            use_dirty_bitmap: true,
        }
    }

    /// The limits this set validates against.
    pub(crate) fn limits(&self) -> &MemslotLimits {
        &self.limits
    }

    /// Changes the GPA size (riscv `KVM_CAP_VM_GPA_BITS`, only allowed while
    /// the set is empty: `EBUSY` otherwise, as in riscv `vm.c`).
    pub(crate) fn set_gpa_bits(&mut self, gpa_bits: u32) -> Result<(), Errno> {
        if !self.is_empty() {
            return Err(Errno::EBUSY);
        }
        self.limits.gpa_bits = gpa_bits;
        Ok(())
    }

    /// Number of slots.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// `kvm_are_all_memslots_empty()`.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `kvm->nr_memslot_pages`: pages over all slots.
    pub(crate) fn nr_memslot_pages(&self) -> u64 {
        self.nr_pages
    }

    /// The memslot generation: changes on every update readers can see
    /// (twice for DELETE and MOVE: INVALID, then final), like
    /// `kvm_swap_active_memslots()` with one address space.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    // ---- arena access (never panics; a bad index reads as empty) ----

    fn node(&self, i: u32) -> Option<&Node<A>> {
        self.nodes.as_slice().get(i as usize)
    }

    fn node_mut(&mut self, i: u32) -> Option<&mut Node<A>> {
        self.nodes.as_mut_slice().get_mut(i as usize)
    }

    fn links(&self, t: usize, i: u32) -> Links {
        self.node(i)
            .and_then(|n| n.links.get(t).copied())
            .unwrap_or(NO_LINKS)
    }

    fn set_left(&mut self, t: usize, i: u32, v: u32) {
        if let Some(l) = self.node_mut(i).and_then(|n| n.links.get_mut(t)) {
            l.left = v;
        }
    }

    fn set_right(&mut self, t: usize, i: u32, v: u32) {
        if let Some(l) = self.node_mut(i).and_then(|n| n.links.get_mut(t)) {
            l.right = v;
        }
    }

    fn slot_of(&self, i: u32) -> Option<&Memslot> {
        self.node(i).filter(|n| n.live).map(|n| &n.slot)
    }

    fn hva_end(&self, s: &Memslot) -> u64 {
        s.npages
            .checked_shl(self.limits.page_shift)
            .and_then(|b| s.userspace_addr.checked_add(b))
            .unwrap_or(u64::MAX)
    }

    /// The tree key of node `i`.
    fn key(&self, t: usize, i: u32) -> (u64, u64) {
        match self.node(i) {
            Some(n) if t == GFN => (n.slot.base_gfn, 0),
            Some(n) => (n.slot.userspace_addr, u64::from(n.slot.id)),
            None => (u64::MAX, u64::MAX),
        }
    }

    /// The end of node `i`'s interval in tree `t`.
    fn own_end(&self, t: usize, i: u32) -> u64 {
        match self.node(i) {
            Some(n) if t == GFN => n.slot.end_gfn(),
            Some(n) => self.hva_end(&n.slot),
            None => 0,
        }
    }

    // ---- AVL trees (recursion depth is the tree height, < 1.45 log2 n) ----

    fn height(&self, t: usize, i: u32) -> u8 {
        if i == NIL {
            0
        } else {
            self.links(t, i).height
        }
    }

    fn update(&mut self, t: usize, i: u32) {
        let l = self.links(t, i);
        let (hl, hr) = (self.height(t, l.left), self.height(t, l.right));
        let mut max_end = self.own_end(t, i);
        for c in [l.left, l.right] {
            if c != NIL {
                max_end = max_end.max(self.links(t, c).max_end);
            }
        }
        if let Some(lk) = self.node_mut(i).and_then(|n| n.links.get_mut(t)) {
            lk.height = hl.max(hr).saturating_add(1);
            lk.max_end = max_end;
        }
    }

    fn rotate_right(&mut self, t: usize, x: u32) -> u32 {
        let y = self.links(t, x).left;
        if y == NIL {
            return x;
        }
        let yr = self.links(t, y).right;
        self.set_left(t, x, yr);
        self.set_right(t, y, x);
        self.update(t, x);
        self.update(t, y);
        y
    }

    fn rotate_left(&mut self, t: usize, x: u32) -> u32 {
        let y = self.links(t, x).right;
        if y == NIL {
            return x;
        }
        let yl = self.links(t, y).left;
        self.set_right(t, x, yl);
        self.set_left(t, y, x);
        self.update(t, x);
        self.update(t, y);
        y
    }

    fn rebalance(&mut self, t: usize, x: u32) -> u32 {
        self.update(t, x);
        let l = self.links(t, x);
        let bal = i16::from(self.height(t, l.left)) - i16::from(self.height(t, l.right));
        if bal > 1 {
            let ll = self.links(t, l.left);
            if self.height(t, ll.left) < self.height(t, ll.right) {
                let nl = self.rotate_left(t, l.left);
                self.set_left(t, x, nl);
            }
            return self.rotate_right(t, x);
        }
        if bal < -1 {
            let rl = self.links(t, l.right);
            if self.height(t, rl.right) < self.height(t, rl.left) {
                let nr = self.rotate_right(t, l.right);
                self.set_right(t, x, nr);
            }
            return self.rotate_left(t, x);
        }
        x
    }

    fn insert_at(&mut self, t: usize, root: u32, n: u32) -> u32 {
        if root == NIL {
            if let Some(lk) = self.node_mut(n).and_then(|nd| nd.links.get_mut(t)) {
                *lk = Links {
                    left: NIL,
                    right: NIL,
                    height: 1,
                    max_end: 0,
                };
            }
            self.update(t, n);
            return n;
        }
        let l = self.links(t, root);
        if self.key(t, n) < self.key(t, root) {
            let c = self.insert_at(t, l.left, n);
            self.set_left(t, root, c);
        } else {
            let c = self.insert_at(t, l.right, n);
            self.set_right(t, root, c);
        }
        self.rebalance(t, root)
    }

    /// Detaches the leftmost node of `root`: returns (new root, that node).
    fn remove_min(&mut self, t: usize, root: u32) -> (u32, u32) {
        let l = self.links(t, root);
        if l.left == NIL {
            return (l.right, root);
        }
        let (nl, min) = self.remove_min(t, l.left);
        self.set_left(t, root, nl);
        (self.rebalance(t, root), min)
    }

    fn remove_at(&mut self, t: usize, root: u32, n: u32) -> u32 {
        if root == NIL {
            return NIL;
        }
        let l = self.links(t, root);
        if root == n {
            if l.left == NIL {
                return l.right;
            }
            if l.right == NIL {
                return l.left;
            }
            let (nr, min) = self.remove_min(t, l.right);
            self.set_left(t, min, l.left);
            self.set_right(t, min, nr);
            return self.rebalance(t, min);
        }
        if self.key(t, n) < self.key(t, root) {
            let c = self.remove_at(t, l.left, n);
            self.set_left(t, root, c);
        } else {
            let c = self.remove_at(t, l.right, n);
            self.set_right(t, root, c);
        }
        self.rebalance(t, root)
    }

    fn tree_insert(&mut self, t: usize, n: u32) {
        let r = self.roots.get(t).copied().unwrap_or(NIL);
        let nr = self.insert_at(t, r, n);
        if let Some(root) = self.roots.get_mut(t) {
            *root = nr;
        }
    }

    fn tree_remove(&mut self, t: usize, n: u32) {
        let r = self.roots.get(t).copied().unwrap_or(NIL);
        let nr = self.remove_at(t, r, n);
        if let Some(root) = self.roots.get_mut(t) {
            *root = nr;
        }
    }

    /// The node with the greatest `base_gfn` strictly below `limit`.
    fn gfn_pred(&self, limit: u64) -> u32 {
        let mut cur = self.roots[GFN];
        let mut best = NIL;
        while cur != NIL {
            let l = self.links(GFN, cur);
            if self.key(GFN, cur).0 < limit {
                best = cur;
                cur = l.right;
            } else {
                cur = l.left;
            }
        }
        best
    }

    // ---- lookups ----

    /// `id_to_memslot()`: the slot with this id (INVALID ones included).
    pub(crate) fn id_to_memslot(&self, id: u16) -> Option<&Memslot> {
        let i = self.by_id.as_slice().get(usize::from(id)).copied()?;
        self.slot_of(i)
    }

    fn node_of_gfn(&self, gfn: u64) -> Option<u32> {
        let i = self.gfn_pred(gfn.checked_add(1)?);
        self.slot_of(i).filter(|s| s.contains(gfn)).map(|_| i)
    }

    /// `search_memslots()`: the slot containing `gfn`, INVALID ones included.
    pub(crate) fn gfn_to_memslot(&self, gfn: u64) -> Option<&Memslot> {
        self.node_of_gfn(gfn).and_then(|i| self.slot_of(i))
    }

    /// The dirty bitmap of the slot containing `gfn`, with the slot.
    pub(crate) fn gfn_to_memslot_dirty(&self, gfn: u64) -> Option<(&Memslot, Option<&DirtyBitmap<A>>)> {
        let n = self.node(self.node_of_gfn(gfn)?)?;
        Some((&n.slot, n.dirty.as_ref()))
    }

    /// The slot with id `id` and its dirty bitmap.
    pub(crate) fn id_to_memslot_dirty(&self, id: u16) -> Option<(&Memslot, Option<&DirtyBitmap<A>>)> {
        let i = self.by_id.as_slice().get(usize::from(id)).copied()?;
        let n = self.node(i).filter(|n| n.live)?;
        Some((&n.slot, n.dirty.as_ref()))
    }

    /// `kvm_is_visible_gfn()`: in a user slot that is not INVALID.
    pub(crate) fn is_visible_gfn(&self, gfn: u64) -> bool {
        self.gfn_to_memslot(gfn)
            .is_some_and(|s| s.id < KVM_USER_MEM_SLOTS && !s.is_invalid())
    }

    /// `__gfn_to_hva_many()`: the hva of `gfn` and the pages left in its
    /// slot from `gfn`. `write` refuses read-only slots.
    pub(crate) fn gfn_to_hva_many(&self, gfn: u64, write: bool) -> Result<(u64, u64), HvaError> {
        let s = self.gfn_to_memslot(gfn).ok_or(HvaError::Bad)?;
        if s.is_invalid() {
            return Err(HvaError::Bad);
        }
        if s.is_readonly() && write {
            return Err(HvaError::ReadOnly);
        }
        // `s.contains(gfn)` holds, so the offset is below npages and the hva
        // is below the slot's end, which fits (slot invariant).
        let off = gfn.checked_sub(s.base_gfn).ok_or(HvaError::Bad)?;
        let hva = off
            .checked_shl(self.limits.page_shift)
            .and_then(|b| s.userspace_addr.checked_add(b))
            .ok_or(HvaError::Bad)?;
        let left = s.npages.checked_sub(off).ok_or(HvaError::Bad)?;
        Ok((hva, left))
    }

    /// `gfn_to_hva()`: a write-capable hva (read-only slots fail with
    /// [`HvaError::ReadOnly`], upstream's `KVM_HVA_ERR_RO_BAD`).
    pub(crate) fn gfn_to_hva(&self, gfn: u64) -> Result<u64, HvaError> {
        self.gfn_to_hva_many(gfn, true).map(|(h, _)| h)
    }

    /// `gfn_to_hva_memslot_prot()`: the hva for any access, and whether it
    /// may be written. This is what the stage-2 fault path uses.
    pub(crate) fn gfn_to_hva_prot(&self, gfn: u64) -> Result<(u64, bool), HvaError> {
        let (hva, _) = self.gfn_to_hva_many(gfn, false)?;
        let writable = self.gfn_to_memslot(gfn).is_some_and(|s| !s.is_readonly());
        Ok((hva, writable))
    }

    /// Calls `f` on every slot in gfn order (INVALID ones included).
    pub(crate) fn for_each(&self, f: &mut impl FnMut(&Memslot)) {
        self.walk_in_order(self.roots[GFN], f);
    }

    fn walk_in_order(&self, i: u32, f: &mut impl FnMut(&Memslot)) {
        if i == NIL {
            return;
        }
        let l = self.links(GFN, i);
        self.walk_in_order(l.left, f);
        if let Some(s) = self.slot_of(i) {
            f(s);
        }
        self.walk_in_order(l.right, f);
    }

    /// The hva→gfn walk of `kvm_handle_hva_range()`: for every slot whose
    /// userspace range meets `[start, end)`, calls `f(slot, gfn_start,
    /// gfn_end)` with the gfns whose pages intersect the range. Nothing is
    /// called for an empty range.
    pub(crate) fn for_each_in_hva_range(
        &self,
        start: u64,
        end: u64,
        f: &mut impl FnMut(&Memslot, u64, u64),
    ) {
        if end <= start {
            return;
        }
        self.hva_visit(self.roots[HVA], start, end, f);
    }

    fn hva_visit(&self, i: u32, start: u64, end: u64, f: &mut impl FnMut(&Memslot, u64, u64)) {
        if i == NIL {
            return;
        }
        let l = self.links(HVA, i);
        if l.max_end <= start {
            return;
        }
        self.hva_visit(l.left, start, end, f);
        let Some(s) = self.slot_of(i) else {
            return;
        };
        if s.userspace_addr >= end {
            return;
        }
        if let Some((gs, ge)) = super::slot_index::hva_range_gfns(s, self.limits.page_shift, start, end) {
            f(s, gs, ge);
        }
        self.hva_visit(l.right, start, end, f);
    }

    // ---- updates ----

    /// `KVM_SET_USER_MEMORY_REGION(2)`: validates `mem` exactly as upstream
    /// and applies the change, calling `hooks` at upstream's points.
    ///
    /// Returns the change made, or `None` when nothing changes (same
    /// region set again). Errors, in upstream's order: `EINVAL` for any
    /// malformed argument, a missing slot to delete, or a forbidden
    /// modification; `EEXIST` for a gfn overlap with another slot;
    /// `ENOMEM`; `EFAULT` for a slot beyond the VM's GPA space; then
    /// whatever `hooks.prepare` returns. On error nothing changed (the
    /// generation may have moved on for a reverted DELETE or MOVE).
    pub(crate) fn set_memory_region(
        &mut self,
        ioctl: RegionIoctl,
        mem: &UserMemoryRegion,
        hooks: &mut impl MemslotHooks,
    ) -> Result<Option<Change>, Errno> {
        let Some(plan) = self.validate(ioctl, mem)? else {
            return Ok(None);
        };
        self.apply(plan, hooks).map(Some)
    }

    /// All the checks that need no allocation, in upstream's order.
    fn validate(&self, ioctl: RegionIoctl, mem: &UserMemoryRegion) -> Result<Option<Plan>, Errno> {
        let lim = &self.limits;
        // kvm_vm_ioctl(): v1 only knows the v1 flags.
        if ioctl == RegionIoctl::V1 && mem.flags & !KVM_SET_USER_MEMORY_REGION_V1_FLAGS != 0 {
            return Err(Errno::EINVAL);
        }
        let id = mem.slot as u16;
        let as_id = mem.slot >> 16;
        // kvm_vm_ioctl_set_memory_region().
        if id >= KVM_USER_MEM_SLOTS {
            return Err(Errno::EINVAL);
        }
        check_memory_region_flags(lim, mem.flags)?;
        let page_size = lim.page_size().ok_or(Errno::EINVAL)?;
        let page_mask = page_size - 1;
        if mem.memory_size & page_mask != 0 || mem.guest_phys_addr & page_mask != 0 {
            return Err(Errno::EINVAL);
        }
        if mem.userspace_addr & page_mask != 0
            || mem.userspace_addr != lim.untag(mem.userspace_addr)
            || !lim.access_ok(mem.userspace_addr, mem.memory_size)
        {
            return Err(Errno::EINVAL);
        }
        if mem.flags & KVM_MEM_GUEST_MEMFD != 0
            && (mem.guest_memfd_offset & page_mask != 0
                || mem.guest_memfd_offset.checked_add(mem.memory_size).is_none())
        {
            return Err(Errno::EINVAL);
        }
        if as_id >= u32::from(KVM_ADDRESS_SPACE_NUM) || id >= KVM_MEM_SLOTS_NUM {
            return Err(Errno::EINVAL);
        }
        if mem.guest_phys_addr.checked_add(mem.memory_size).is_none() {
            return Err(Errno::EINVAL);
        }
        let npages = mem.memory_size >> lim.page_shift;
        if npages > KVM_MEM_MAX_NR_PAGES {
            return Err(Errno::EINVAL);
        }
        let old = self.id_to_memslot(id).copied();

        if mem.memory_size == 0 {
            let old = old.ok_or(Errno::EINVAL)?;
            if self.nr_pages < old.npages {
                return Err(Errno::EIO);
            }
            return Ok(Some(Plan {
                change: Change::Delete,
                id,
                old: Some(old),
                new: None,
            }));
        }

        let base_gfn = mem.guest_phys_addr >> lim.page_shift;
        let change = match old {
            None => {
                if self.nr_pages.checked_add(npages).is_none() {
                    return Err(Errno::EINVAL);
                }
                Change::Create
            }
            Some(o) => {
                // Private (guest_memfd) memslots can only be deleted.
                if mem.flags & KVM_MEM_GUEST_MEMFD != 0 {
                    return Err(Errno::EINVAL);
                }
                if mem.userspace_addr != o.userspace_addr
                    || npages != o.npages
                    || (mem.flags ^ o.flags) & (KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD) != 0
                {
                    return Err(Errno::EINVAL);
                }
                if base_gfn != o.base_gfn {
                    Change::Move
                } else if mem.flags != o.flags {
                    Change::FlagsOnly
                } else {
                    return Ok(None);
                }
            }
        };
        let new = Memslot {
            id,
            base_gfn,
            npages,
            userspace_addr: mem.userspace_addr,
            flags: mem.flags,
            guest_memfd_offset: if mem.flags & KVM_MEM_GUEST_MEMFD != 0 {
                mem.guest_memfd_offset
            } else {
                0
            },
            guest_memfd: if mem.flags & KVM_MEM_GUEST_MEMFD != 0 {
                mem.guest_memfd
            } else {
                0
            },
        };
        if matches!(change, Change::Create | Change::Move) && self.overlaps(id, &new) {
            return Err(Errno::EEXIST);
        }
        Ok(Some(Plan {
            change,
            id,
            old,
            new: Some(new),
        }))
    }

    /// `kvm_check_memslot_overlap()`: does any slot other than `id` meet the
    /// gfns of `new`? Slots are disjoint, so walking down from the last slot
    /// starting below `new`'s end stops after at most two steps.
    fn overlaps(&self, id: u16, new: &Memslot) -> bool {
        let mut limit = new.end_gfn();
        loop {
            let i = self.gfn_pred(limit);
            let Some(s) = self.slot_of(i) else {
                return false;
            };
            if s.end_gfn() <= new.base_gfn {
                return false;
            }
            if s.id != id {
                return true;
            }
            limit = s.base_gfn;
        }
    }

    /// Sets or clears INVALID on the live slot `id`, bumping the generation.
    fn set_invalid(&mut self, id: u16, invalid: bool) {
        if let Some(i) = self.by_id.as_slice().get(usize::from(id)).copied() {
            if let Some(n) = self.node_mut(i) {
                if invalid {
                    n.slot.flags |= KVM_MEMSLOT_INVALID;
                } else {
                    n.slot.flags &= !KVM_MEMSLOT_INVALID;
                }
            }
        }
        self.generation = self.generation.wrapping_add(1);
    }

    /// `kvm_set_memslot()` and `kvm_prepare_memory_region()`.
    fn apply(&mut self, plan: Plan, hooks: &mut impl MemslotHooks) -> Result<Change, Errno> {
        let Plan { change, id, old, new } = plan;
        let zaps = matches!(change, Change::Delete | Change::Move);
        if zaps {
            if let Some(o) = &old {
                self.set_invalid(id, true);
                let mut inv = *o;
                inv.flags |= KVM_MEMSLOT_INVALID;
                hooks.flush_shadow(&inv);
            }
        }
        match self.prepare(change, id, old.as_ref(), new.as_ref(), hooks) {
            Ok(bitmap) => {
                self.install(change, id, old.as_ref(), new.as_ref(), bitmap);
                self.generation = self.generation.wrapping_add(1);
                hooks.commit(old.as_ref(), new.as_ref(), change);
                Ok(change)
            }
            Err(e) => {
                if zaps {
                    self.set_invalid(id, false);
                }
                Err(e)
            }
        }
    }

    /// Everything that can fail, before the set changes: the GPA limit,
    /// the arena space, the dirty bitmap and the arch hook. Returns the
    /// new slot's bitmap: `Some(None)` = none, `Some(Some(b))` = fresh one,
    /// `None` = keep the old slot's.
    fn prepare(
        &mut self,
        change: Change,
        id: u16,
        old: Option<&Memslot>,
        new: Option<&Memslot>,
        hooks: &mut impl MemslotHooks,
    ) -> Result<Option<Option<DirtyBitmap<A>>>, Errno> {
        if let Some(n) = new {
            // kvm_arch_prepare_memory_region(), riscv and arm64 alike.
            if n.end_gfn() > self.limits.max_gfn() {
                return Err(Errno::EFAULT);
            }
        }
        if change == Change::Create {
            self.reserve_node(id)?;
        }
        let bitmap = match new {
            None => Some(None),
            Some(n) if !n.dirty_tracking() => Some(None),
            Some(_) if self.id_to_memslot_dirty(id).is_some_and(|(_, b)| b.is_some()) => None,
            Some(n) if self.use_dirty_bitmap => {
                let all = self.dirty_log_initially_set();
                Some(Some(DirtyBitmap::new(n.npages, all)?))
            }
            Some(_) => Some(None),
        };
        hooks.prepare(old, new, change)?;
        Ok(bitmap)
    }

    /// Makes sure `by_id` covers `id` and a node is available, so that
    /// [`Self::install`] cannot fail.
    fn reserve_node(&mut self, id: u16) -> Result<(), Errno> {
        let want = usize::from(id) + 1;
        let have = self.by_id.len();
        if want > have {
            self.by_id.try_extend_with(want - have, NIL)?;
        }
        if self.free == NIL {
            let idx = u32::try_from(self.nodes.len()).map_err(|_| Errno::ENOMEM)?;
            if idx == NIL {
                return Err(Errno::ENOMEM);
            }
            self.nodes.try_push(Node {
                slot: Memslot {
                    id: 0,
                    base_gfn: 0,
                    npages: 0,
                    userspace_addr: 0,
                    flags: 0,
                    guest_memfd_offset: 0,
                    guest_memfd: 0,
                },
                dirty: None,
                links: [NO_LINKS; 2],
                live: false,
            })?;
            self.free = idx;
            // The new node terminates the (empty) free list.
            self.set_left(GFN, idx, NIL);
        }
        Ok(())
    }

    /// Applies a prepared change; cannot fail.
    fn install(
        &mut self,
        change: Change,
        id: u16,
        old: Option<&Memslot>,
        new: Option<&Memslot>,
        bitmap: Option<Option<DirtyBitmap<A>>>,
    ) {
        let idx = self.by_id.as_slice().get(usize::from(id)).copied().unwrap_or(NIL);
        match (change, new) {
            (Change::Create, Some(n)) => {
                let i = self.free;
                self.free = self.links(GFN, i).left;
                if let Some(node) = self.node_mut(i) {
                    node.slot = *n;
                    node.dirty = bitmap.flatten();
                    node.links = [NO_LINKS; 2];
                    node.live = true;
                }
                if let Some(e) = self.by_id.as_mut_slice().get_mut(usize::from(id)) {
                    *e = i;
                }
                self.tree_insert(GFN, i);
                self.tree_insert(HVA, i);
                self.count = self.count.saturating_add(1);
                self.nr_pages = self.nr_pages.saturating_add(n.npages);
            }
            (Change::Delete, _) => {
                self.tree_remove(GFN, idx);
                self.tree_remove(HVA, idx);
                let free = self.free;
                if let Some(node) = self.node_mut(idx) {
                    node.live = false;
                    node.dirty = None;
                    node.links = [NO_LINKS; 2];
                }
                self.set_left(GFN, idx, free);
                self.free = idx;
                if let Some(e) = self.by_id.as_mut_slice().get_mut(usize::from(id)) {
                    *e = NIL;
                }
                self.count = self.count.saturating_sub(1);
                self.nr_pages = self.nr_pages.saturating_sub(old.map_or(0, |o| o.npages));
            }
            (Change::Move, Some(n)) => {
                // Same hva and size: only the gfn tree changes.
                self.tree_remove(GFN, idx);
                self.replace_slot(idx, n, bitmap);
                self.tree_insert(GFN, idx);
            }
            (Change::FlagsOnly, Some(n)) => self.replace_slot(idx, n, bitmap),
            _ => {}
        }
    }

    fn replace_slot(&mut self, idx: u32, n: &Memslot, bitmap: Option<Option<DirtyBitmap<A>>>) {
        if let Some(node) = self.node_mut(idx) {
            node.slot = *n;
            if let Some(b) = bitmap {
                node.dirty = b;
            }
        }
    }

    /// Checks the tree invariants (host tests): ordering, AVL balance,
    /// `max_end`, and that each live slot is reachable exactly once.
    #[cfg(test)]
    fn check_invariants(&self) {
        for t in [GFN, HVA] {
            let mut seen = 0usize;
            self.check_subtree(t, self.roots[t], &mut seen);
            assert_eq!(seen, self.count, "tree {t}");
        }
        let mut prev_end = 0u64;
        let mut first = true;
        self.for_each(&mut |s| {
            assert!(first || s.base_gfn >= prev_end, "overlap at slot {}", s.id);
            first = false;
            prev_end = s.end_gfn();
            assert_eq!(self.id_to_memslot(s.id), Some(s));
        });
    }

    #[cfg(test)]
    fn check_subtree(&self, t: usize, i: u32, seen: &mut usize) -> (u8, u64) {
        if i == NIL {
            return (0, 0);
        }
        *seen += 1;
        let l = self.links(t, i);
        let (hl, ml) = self.check_subtree(t, l.left, seen);
        let (hr, mr) = self.check_subtree(t, l.right, seen);
        assert!((i16::from(hl) - i16::from(hr)).abs() <= 1, "unbalanced");
        assert_eq!(l.height, hl.max(hr) + 1);
        if l.left != NIL {
            assert!(self.key(t, l.left) < self.key(t, i));
        }
        if l.right != NIL {
            assert!(self.key(t, l.right) > self.key(t, i));
        }
        let m = self.own_end(t, i).max(ml).max(mr);
        assert_eq!(l.max_end, m);
        (l.height, m)
    }
}

/// `check_memory_region_flags()`.
fn check_memory_region_flags(lim: &MemslotLimits, flags: u32) -> Result<(), Errno> {
    let mut valid = KVM_MEM_LOG_DIRTY_PAGES;
    if lim.guest_memfd {
        valid |= KVM_MEM_GUEST_MEMFD;
    }
    // Dirty logging private memory is not supported.
    if flags & KVM_MEM_GUEST_MEMFD != 0 {
        valid &= !KVM_MEM_LOG_DIRTY_PAGES;
    }
    // guest_memfd is incompatible with read-only memslots.
    if lim.readonly_mem && flags & KVM_MEM_GUEST_MEMFD == 0 {
        valid |= KVM_MEM_READONLY;
    }
    if flags & !valid != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod host_tests {
    use super::*;
    use crate::storage::StdAlloc;

    pub(crate) const PAGE: u64 = 4096;
    pub(crate) const TASK_SIZE: u64 = 1 << 47;

    pub(crate) fn limits() -> MemslotLimits {
        MemslotLimits {
            page_shift: 12,
            readonly_mem: true,
            guest_memfd: false,
            task_size: TASK_SIZE,
            tag_bits: 0,
            gpa_bits: 40,
        }
    }

    pub(crate) fn region(slot: u32, flags: u32, gpa: u64, size: u64, hva: u64) -> UserMemoryRegion {
        UserMemoryRegion {
            slot,
            flags,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: hva,
            ..Default::default()
        }
    }

    pub(crate) type Set = Memslots<StdAlloc>;

    pub(crate) fn set_v2(s: &mut Set, m: UserMemoryRegion) -> Result<Option<Change>, Errno> {
        let r = s.set_memory_region(RegionIoctl::V2, &m, &mut NoHooks);
        s.check_invariants();
        r
    }

    fn create(s: &mut Set, slot: u32, gpa: u64, size: u64, hva: u64) {
        assert_eq!(set_v2(s, region(slot, 0, gpa, size, hva)), Ok(Some(Change::Create)));
    }

    /// Records the hook calls.
    #[derive(Default)]
    struct Recorder {
        calls: std::vec::Vec<(&'static str, Option<Change>, Option<Memslot>)>,
        fail_prepare: Option<Errno>,
    }

    impl MemslotHooks for Recorder {
        fn prepare(&mut self, _: Option<&Memslot>, new: Option<&Memslot>, c: Change) -> Result<(), Errno> {
            self.calls.push(("prepare", Some(c), new.copied()));
            self.fail_prepare.map_or(Ok(()), Err)
        }
        fn flush_shadow(&mut self, old: &Memslot) {
            self.calls.push(("flush", None, Some(*old)));
        }
        fn commit(&mut self, _: Option<&Memslot>, new: Option<&Memslot>, c: Change) {
            self.calls.push(("commit", Some(c), new.copied()));
        }
    }

    #[test]
    fn ioctl_numbers_match_upstream() {
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_ae46);
        assert_eq!(KVM_SET_USER_MEMORY_REGION2, 0x40a0_ae49);
    }

    #[test]
    fn create_lookup_and_hva() {
        let mut s = Set::new(limits());
        create(&mut s, 0, 0x10_0000, 4 * PAGE, 0x7000_0000);
        assert_eq!(s.len(), 1);
        assert_eq!(s.nr_memslot_pages(), 4);
        let slot = s.gfn_to_memslot(0x100).copied();
        assert_eq!(slot.map(|x| (x.id, x.base_gfn, x.npages)), Some((0, 0x100, 4)));
        assert_eq!(s.gfn_to_hva(0x102), Ok(0x7000_2000));
        assert_eq!(s.gfn_to_hva(0x104), Err(HvaError::Bad));
        assert_eq!(s.gfn_to_hva(0xff), Err(HvaError::Bad));
        assert_eq!(s.gfn_to_hva_many(0x101, true), Ok((0x7000_1000, 3)));
        assert!(s.is_visible_gfn(0x103));
        assert!(!s.is_visible_gfn(0x104));
        assert_eq!(s.gfn_to_memslot(u64::MAX), None);
    }

    #[test]
    fn readonly_slot_refuses_write_hva_but_allows_read() {
        let mut s = Set::new(limits());
        assert_eq!(
            set_v2(&mut s, region(3, KVM_MEM_READONLY, 0, PAGE, 0x1000)),
            Ok(Some(Change::Create))
        );
        assert_eq!(s.gfn_to_hva(0), Err(HvaError::ReadOnly));
        assert_eq!(s.gfn_to_hva_prot(0), Ok((0x1000, false)));
        // Read-only memory needs kvm_arch_has_readonly_mem().
        let mut no_ro = Set::new(MemslotLimits {
            readonly_mem: false,
            ..limits()
        });
        assert_eq!(set_v2(&mut no_ro, region(3, KVM_MEM_READONLY, 0, PAGE, 0x1000)), Err(Errno::EINVAL));
    }

    #[test]
    fn flags_validation() {
        let mut s = Set::new(limits());
        // v1 takes only LOG_DIRTY_PAGES | READONLY.
        let m = region(0, KVM_MEM_GUEST_MEMFD, 0, PAGE, 0x1000);
        assert_eq!(s.set_memory_region(RegionIoctl::V1, &m, &mut NoHooks), Err(Errno::EINVAL));
        // Unknown bits, the internal INVALID flag, GUEST_MEMFD without support.
        for f in [1 << 3, 1 << 15, KVM_MEMSLOT_INVALID, KVM_MEM_GUEST_MEMFD, u32::MAX] {
            assert_eq!(set_v2(&mut s, region(0, f, 0, PAGE, 0x1000)), Err(Errno::EINVAL), "{f:#x}");
        }
        let both = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;
        let m = region(0, both, 0, PAGE, 0x1000);
        assert_eq!(s.set_memory_region(RegionIoctl::V1, &m, &mut NoHooks), Ok(Some(Change::Create)));
    }

    #[test]
    fn guest_memfd_flag_rules() {
        let lim = MemslotLimits {
            guest_memfd: true,
            ..limits()
        };
        let mut s = Set::new(lim);
        let g = KVM_MEM_GUEST_MEMFD;
        // Not with dirty logging, not read-only.
        assert_eq!(set_v2(&mut s, region(0, g | KVM_MEM_LOG_DIRTY_PAGES, 0, PAGE, 0x1000)), Err(Errno::EINVAL));
        assert_eq!(set_v2(&mut s, region(0, g | KVM_MEM_READONLY, 0, PAGE, 0x1000)), Err(Errno::EINVAL));
        // Offset must be page aligned and offset + size must not wrap.
        let mut m = region(0, g, 0, PAGE, 0x1000);
        m.guest_memfd_offset = 0x800;
        assert_eq!(set_v2(&mut s, m), Err(Errno::EINVAL));
        m.guest_memfd_offset = u64::MAX & !(PAGE - 1);
        assert_eq!(set_v2(&mut s, m), Err(Errno::EINVAL));
        m.guest_memfd_offset = 2 * PAGE;
        m.guest_memfd = 5;
        assert_eq!(set_v2(&mut s, m), Ok(Some(Change::Create)));
        assert_eq!(s.id_to_memslot(0).map(|x| (x.guest_memfd, x.guest_memfd_offset)), Some((5, 2 * PAGE)));
        // Immutable: any modification (even identical) with the flag is EINVAL.
        assert_eq!(set_v2(&mut s, m), Err(Errno::EINVAL));
        // ... but it can be deleted.
        assert_eq!(set_v2(&mut s, region(0, 0, 0, 0, 0)), Ok(Some(Change::Delete)));
    }

    #[test]
    fn slot_id_and_address_space_checks() {
        let mut s = Set::new(limits());
        let last = u32::from(KVM_USER_MEM_SLOTS) - 1;
        assert_eq!(set_v2(&mut s, region(last, 0, 0, PAGE, 0x1000)), Ok(Some(Change::Create)));
        assert_eq!(set_v2(&mut s, region(last + 1, 0, PAGE, PAGE, 0x1000)), Err(Errno::EINVAL));
        assert_eq!(set_v2(&mut s, region(0xffff, 0, PAGE, PAGE, 0x1000)), Err(Errno::EINVAL));
        // as_id 1 does not exist on riscv64/arm64.
        assert_eq!(set_v2(&mut s, region(1 << 16, 0, PAGE, PAGE, 0x1000)), Err(Errno::EINVAL));
        assert_eq!(set_v2(&mut s, region(u32::MAX, 0, PAGE, PAGE, 0x1000)), Err(Errno::EINVAL));
    }

    #[test]
    fn alignment_and_range_checks() {
        let mut s = Set::new(limits());
        let bad = [
            region(0, 0, 0, PAGE + 1, 0x1000),     // size not aligned
            region(0, 0, 0x800, PAGE, 0x1000),     // gpa not aligned
            region(0, 0, 0, PAGE, 0x1800),         // hva not aligned
            region(0, 0, 0, PAGE, TASK_SIZE),      // hva + size beyond TASK_SIZE
            region(0, 0, 0, 2 * PAGE, TASK_SIZE - PAGE),
            region(0, 0, 0, TASK_SIZE + PAGE, 0),  // size beyond TASK_SIZE
            region(0, 0, u64::MAX & !(PAGE - 1), 2 * PAGE, 0x1000), // gpa + size wraps
            region(0, 0, 0, (KVM_MEM_MAX_NR_PAGES + 1) * PAGE, 0), // too many pages
        ];
        for m in bad {
            assert_eq!(set_v2(&mut s, m), Err(Errno::EINVAL), "{m:?}");
        }
        // Exactly reaching TASK_SIZE is fine (access_ok), at the limit of
        // the GPA space too.
        assert_eq!(set_v2(&mut s, region(0, 0, 0, PAGE, TASK_SIZE - PAGE)), Ok(Some(Change::Create)));
        assert!(!s.is_empty());
    }

    #[test]
    fn tagged_userspace_address_is_einval() {
        let mut s = Set::new(MemslotLimits {
            tag_bits: 8,
            ..limits()
        });
        assert_eq!(set_v2(&mut s, region(0, 0, 0, PAGE, 0x0500_0000_0000_1000)), Err(Errno::EINVAL));
        assert_eq!(set_v2(&mut s, region(0, 0, 0, PAGE, 0x1000)), Ok(Some(Change::Create)));
        // The tag check stands on its own, even where access_ok() would pass.
        let mut s = Set::new(MemslotLimits {
            tag_bits: 8,
            task_size: u64::MAX,
            ..limits()
        });
        assert_eq!(set_v2(&mut s, region(0, 0, 0, PAGE, 0x0500_0000_0000_1000)), Err(Errno::EINVAL));
        // A kernel-half address sign-extends to itself: only access_ok()
        // refuses it.
        assert_eq!(set_v2(&mut s, region(0, 0, 0, PAGE, 0xff80_0000_0000_0000)), Ok(Some(Change::Create)));
    }

    #[test]
    fn gpa_beyond_vm_space_is_efault() {
        let mut s = Set::new(MemslotLimits {
            gpa_bits: 32,
            ..limits()
        });
        assert_eq!(set_v2(&mut s, region(0, 0, (1 << 32) - PAGE, 2 * PAGE, 0x1000)), Err(Errno::EFAULT));
        assert_eq!(set_v2(&mut s, region(0, 0, (1 << 32) - PAGE, PAGE, 0x1000)), Ok(Some(Change::Create)));
        // A move beyond the limit: EFAULT, and the slot is left as it was.
        assert_eq!(set_v2(&mut s, region(0, 0, 1 << 32, PAGE, 0x1000)), Err(Errno::EFAULT));
        assert_eq!(s.id_to_memslot(0).map(|x| (x.base_gfn, x.is_invalid())), Some((0xfffff, false)));
        assert_eq!(s.set_gpa_bits(40), Err(Errno::EBUSY));
    }

    #[test]
    fn overlap_is_eexist_and_touching_is_fine() {
        let mut s = Set::new(limits());
        create(&mut s, 1, 0x10000, 16 * PAGE, 0x100000);
        for (gpa, size) in [(0x10000, PAGE), (0xf000, 2 * PAGE), (0x1f000, PAGE), (0x8000, 0x100000)] {
            assert_eq!(set_v2(&mut s, region(2, 0, gpa, size, 0x200000)), Err(Errno::EEXIST), "{gpa:#x}");
        }
        create(&mut s, 2, 0xf000, PAGE, 0x200000);
        create(&mut s, 3, 0x20000, PAGE, 0x200000); // hva aliasing is allowed
    }

    #[test]
    fn delete_rules() {
        let mut s = Set::new(limits());
        // Deleting a slot that does not exist is EINVAL.
        assert_eq!(set_v2(&mut s, region(4, 0, 0, 0, 0)), Err(Errno::EINVAL));
        create(&mut s, 4, 0, PAGE, 0x1000);
        // Delete ignores gpa and hva (but still validates their alignment).
        assert_eq!(set_v2(&mut s, region(4, 0, 0x3, 0, 0)), Err(Errno::EINVAL));
        assert_eq!(set_v2(&mut s, region(4, 0, 0x5000, 0, 0x9000)), Ok(Some(Change::Delete)));
        assert!(s.is_empty());
        assert_eq!(s.nr_memslot_pages(), 0);
        assert_eq!(s.gfn_to_hva(0), Err(HvaError::Bad));
        // The id and the range can be reused.
        create(&mut s, 4, 0, PAGE, 0x1000);
    }

    #[test]
    fn modify_rules() {
        let mut s = Set::new(limits());
        create(&mut s, 0, 0x10000, 2 * PAGE, 0x40000);
        // Different hva, different size, toggled READONLY: EINVAL.
        assert_eq!(set_v2(&mut s, region(0, 0, 0x10000, 2 * PAGE, 0x50000)), Err(Errno::EINVAL));
        assert_eq!(set_v2(&mut s, region(0, 0, 0x10000, 3 * PAGE, 0x40000)), Err(Errno::EINVAL));
        assert_eq!(set_v2(&mut s, region(0, KVM_MEM_READONLY, 0x10000, 2 * PAGE, 0x40000)), Err(Errno::EINVAL));
        // Same again: nothing to do.
        assert_eq!(set_v2(&mut s, region(0, 0, 0x10000, 2 * PAGE, 0x40000)), Ok(None));
        let g = s.generation();
        // Flags only.
        assert_eq!(
            set_v2(&mut s, region(0, KVM_MEM_LOG_DIRTY_PAGES, 0x10000, 2 * PAGE, 0x40000)),
            Ok(Some(Change::FlagsOnly))
        );
        assert_eq!(s.generation(), g + 1);
        // Move (with a flag change at the same time).
        assert_eq!(set_v2(&mut s, region(0, 0, 0x80000, 2 * PAGE, 0x40000)), Ok(Some(Change::Move)));
        assert_eq!(s.generation(), g + 3);
        assert_eq!(s.gfn_to_hva(0x81), Ok(0x41000));
        assert_eq!(s.gfn_to_memslot(0x10), None);
        assert_eq!(s.id_to_memslot(0).map(|x| x.flags), Some(0));
        // A move may overlap its own old range.
        assert_eq!(set_v2(&mut s, region(0, 0, 0x81000, 2 * PAGE, 0x40000)), Ok(Some(Change::Move)));
        create(&mut s, 1, 0x90000, PAGE, 0x40000);
        assert_eq!(set_v2(&mut s, region(0, 0, 0x8f000, 2 * PAGE, 0x40000)), Err(Errno::EEXIST));
    }

    #[test]
    fn hooks_order_and_invalid_window() {
        let mut s = Set::new(limits());
        let mut rec = Recorder::default();
        let m = region(0, 0, 0, PAGE, 0x1000);
        assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut rec), Ok(Some(Change::Create)));
        let names: std::vec::Vec<_> = rec.calls.iter().map(|c| c.0).collect();
        assert_eq!(names, ["prepare", "commit"]);

        // Delete: zap the INVALID slot first, then prepare, then commit.
        let mut rec = Recorder::default();
        let m = region(0, 0, 0, 0, 0);
        assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut rec), Ok(Some(Change::Delete)));
        let names: std::vec::Vec<_> = rec.calls.iter().map(|c| c.0).collect();
        assert_eq!(names, ["flush", "prepare", "commit"]);
        assert!(rec.calls[0].2.is_some_and(|o| o.is_invalid()));
    }

    #[test]
    fn failed_prepare_reverts_everything() {
        let mut s = Set::new(limits());
        create(&mut s, 0, 0, 4 * PAGE, 0x1000);
        let g = s.generation();
        let mut rec = Recorder {
            fail_prepare: Some(Errno::EINVAL),
            ..Default::default()
        };
        // A failed move: the slot was INVALID meanwhile, then restored.
        let m = region(0, 0, 0x100000, 4 * PAGE, 0x1000);
        assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut rec), Err(Errno::EINVAL));
        s.check_invariants();
        let slot = s.id_to_memslot(0).copied();
        assert_eq!(slot.map(|x| (x.base_gfn, x.flags)), Some((0, 0)));
        assert!(s.generation() > g);
        // A failed create leaves no trace.
        let m = region(1, KVM_MEM_LOG_DIRTY_PAGES, 0x100000, PAGE, 0x1000);
        assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut rec), Err(Errno::EINVAL));
        assert_eq!(s.id_to_memslot(1), None);
        assert_eq!(s.len(), 1);
        assert_eq!(s.nr_memslot_pages(), 4);
    }

    #[test]
    fn invalid_slot_has_no_hva_and_is_not_visible() {
        // What the zap hook and concurrent readers see during a delete.
        let mut s = Set::new(limits());
        create(&mut s, 0, 0, PAGE, 0x1000);
        let g = s.generation();
        s.set_invalid(0, true);
        assert_eq!(s.generation(), g + 1);
        assert_eq!(s.gfn_to_hva(0), Err(HvaError::Bad));
        assert_eq!(s.gfn_to_hva_prot(0), Err(HvaError::Bad));
        assert!(!s.is_visible_gfn(0));
        // The slot is still found (upstream search_memslots() too).
        assert!(s.gfn_to_memslot(0).is_some_and(|x| x.is_invalid()));
        s.set_invalid(0, false);
        assert_eq!(s.gfn_to_hva(0), Ok(0x1000));
    }

    #[test]
    fn hva_range_walk_finds_aliases_and_partial_pages() {
        let mut s = Set::new(limits());
        create(&mut s, 0, 0x100000, 8 * PAGE, 0x10000); // gfn 0x100.., hva 0x10000..0x18000
        create(&mut s, 1, 0x200000, 4 * PAGE, 0x14000); // aliases hva 0x14000..0x18000
        create(&mut s, 2, 0x300000, PAGE, 0x40000);
        let mut got = std::vec::Vec::new();
        s.for_each_in_hva_range(0x14800, 0x15001, &mut |sl, a, b| got.push((sl.id, a, b)));
        got.sort();
        assert_eq!(got, [(0, 0x104, 0x106), (1, 0x200, 0x202)]);
        got.clear();
        s.for_each_in_hva_range(0x18000, 0x40000, &mut |sl, a, b| got.push((sl.id, a, b)));
        assert_eq!(got, []);
        s.for_each_in_hva_range(0, u64::MAX, &mut |sl, a, b| got.push((sl.id, a, b)));
        got.sort();
        assert_eq!(got, [(0, 0x100, 0x108), (1, 0x200, 0x204), (2, 0x300, 0x301)]);
        got.clear();
        s.for_each_in_hva_range(5, 5, &mut |sl, a, b| got.push((sl.id, a, b)));
        assert_eq!(got, []);
    }

    /// set_memory_region_test: every user slot, one after the other, at
    /// increasing GPAs; then one more is EINVAL; then delete them all.
    #[test]
    fn fill_all_32767_slots() {
        let mut s = Set::new(limits());
        let n = u32::from(KVM_USER_MEM_SLOTS);
        for i in 0..n {
            let gpa = u64::from(i) * 2 * PAGE;
            let m = region(i, 0, gpa, PAGE, 0x100000);
            assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut NoHooks), Ok(Some(Change::Create)));
        }
        s.check_invariants();
        assert_eq!(s.len(), n as usize);
        assert_eq!(set_v2(&mut s, region(n, 0, 0x1_0000_0000, PAGE, 0x100000)), Err(Errno::EINVAL));
        for i in (0..n).step_by(997) {
            assert_eq!(s.gfn_to_memslot(u64::from(i) * 2).map(|x| u32::from(x.id)), Some(i));
            assert_eq!(s.gfn_to_memslot(u64::from(i) * 2 + 1), None);
        }
        // Remove in an interleaved order to exercise rebalancing.
        for i in (0..n).filter(|i| i % 2 == 0).chain((0..n).filter(|i| i % 2 == 1)) {
            let m = region(i, 0, 0, 0, 0);
            assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut NoHooks), Ok(Some(Change::Delete)));
        }
        s.check_invariants();
        assert!(s.is_empty());
    }

    /// memslot_perf_test-like churn: many slots, repeated moves and
    /// delete/recreate in the middle; invariants hold and nodes are reused.
    #[test]
    fn churn_keeps_invariants_and_reuses_nodes() {
        let mut s = Set::new(limits());
        for i in 0..2048u32 {
            create(&mut s, i, u64::from(i) * 4 * PAGE, 2 * PAGE, 0x100000 + u64::from(i) * 2 * PAGE);
        }
        let mut x: u64 = 12345;
        for round in 0..4000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let id = ((x >> 33) % 2048) as u32;
            let old = s.id_to_memslot(id as u16).copied();
            let o = old.expect("slot exists");
            let m = region(id, 0, o.base_gfn * PAGE, 0, 0);
            assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut NoHooks), Ok(Some(Change::Delete)));
            // Recreate it in a free area far away, or back in place.
            let gpa = if round % 2 == 0 { (0x100000 + round) * 4 * PAGE } else { o.base_gfn * PAGE };
            let m = region(id, 0, gpa, 2 * PAGE, o.userspace_addr);
            assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut NoHooks), Ok(Some(Change::Create)));
        }
        s.check_invariants();
        assert_eq!(s.len(), 2048);
        assert_eq!(s.nodes.len(), 2048);
    }

    #[test]
    fn enomem_leaves_the_set_unchanged() {
        use crate::dirty_log::KVM_DIRTY_LOG_MANUAL_CAPS;
        use crate::storage::BudgetAlloc;
        let m = region(3, 0, 0, 64 * PAGE, 0x1000);
        // by_id needs 4 entries, then 1 node: fail at each step.
        for budget in [0, 3, 4] {
            let mut s = Memslots::<BudgetAlloc>::new(limits());
            BudgetAlloc::set_budget(budget);
            assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut NoHooks), Err(Errno::ENOMEM));
            assert!(s.is_empty() && s.id_to_memslot(3).is_none() && s.generation() == 0);
            assert!(s.gfn_to_memslot(0).is_none());
        }
        let mut s = Memslots::<BudgetAlloc>::new(limits());
        let caps = KVM_DIRTY_LOG_MANUAL_CAPS;
        assert_eq!(s.enable_manual_dirty_log_protect(0, caps, caps), Ok(()));
        BudgetAlloc::set_budget(usize::MAX);
        assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut NoHooks), Ok(Some(Change::Create)));
        // Turning on logging needs a bitmap (one word): no memory, no change.
        let g = s.generation();
        let m = region(3, KVM_MEM_LOG_DIRTY_PAGES, 0, 64 * PAGE, 0x1000);
        BudgetAlloc::set_budget(0);
        assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut NoHooks), Err(Errno::ENOMEM));
        assert_eq!(s.id_to_memslot(3).map(|x| x.flags), Some(0));
        assert_eq!(s.generation(), g);
        BudgetAlloc::set_budget(1);
        assert_eq!(s.set_memory_region(RegionIoctl::V2, &m, &mut NoHooks), Ok(Some(Change::FlagsOnly)));
        BudgetAlloc::set_budget(usize::MAX);
    }

    #[test]
    fn nr_memslot_pages_overflow_is_einval() {
        let mut s = Set::new(limits());
        s.nr_pages = u64::MAX - 1;
        assert_eq!(set_v2(&mut s, region(0, 0, 0, 2 * PAGE, 0x1000)), Err(Errno::EINVAL));
    }
}
