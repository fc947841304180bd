// SPDX-License-Identifier: GPL-2.0

//! Dirty-page logging with per-memslot bitmaps: `KVM_GET_DIRTY_LOG`,
//! `KVM_CLEAR_DIRTY_LOG` and `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`.
//!
//! Pure logic, built into the module and tested on the host. Semantics
//! follow upstream `virt/kvm/kvm_main.c` as configured on riscv64 and arm64
//! (both select `KVM_GENERIC_DIRTYLOG_READ_PROTECT` and define
//! `KVM_DIRTY_LOG_MANUAL_CAPS` as `PROTECT_ENABLE | INITIALLY_SET`):
//!
//! - `kvm_get_dirty_log_protect()`: `ENXIO` without a bitmap mode (dirty
//!   ring only), `EINVAL` for a bad address space or a slot id at or above
//!   `KVM_USER_MEM_SLOTS`, `ENOENT` for a slot that does not exist or does
//!   not log. Without manual protection the snapshot is taken and cleared
//!   word by word (`xchg`) and each non-zero word is write-protected again
//!   (`kvm_arch_mmu_enable_log_dirty_pt_masked()`), then the TLBs are
//!   flushed. With manual protection the bitmap is returned as is.
//! - `kvm_clear_dirty_log_protect()`: same slot errors (the `first_page`
//!   alignment check comes before the slot lookup), then `EINVAL` unless
//!   `first_page` is a multiple of 64, `first_page <= npages`,
//!   `num_pages <= npages - first_page` and `num_pages` is a multiple of 64
//!   or reaches the slot's end. Only bits that were set are cleared and
//!   re-protected.
//! - `kvm_vm_ioctl_enable_cap_generic()`: `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`.
//! - `kvm_prepare_memory_region()`: a slot that starts logging gets a fresh
//!   bitmap, all ones with `KVM_DIRTY_LOG_INITIALLY_SET` (done in
//!   `memslot.rs`).
//! - `mark_page_dirty_in_slot()`.
//!
//! Bits are `AtomicU64` words, so vCPUs mark pages with a shared reference
//! while an ioctl holding the memslot lock shared or exclusively reads and
//! clears them, like upstream's `set_bit_le()`/`xchg()`/
//! `atomic_long_fetch_andnot()`. Word `w` bit `b` is page `64 * w + b`; on
//! the little-endian hosts this is also the byte layout userspace expects.

// The kernel glue (VM ioctls, fault path) comes next; until then only the
// host tests use these items.
#![allow(dead_code)]

use super::abi::Errno;
use super::memslot::{
    Memslot,
    Memslots,
    KVM_ADDRESS_SPACE_NUM,
    KVM_USER_MEM_SLOTS, //
};
use super::storage::{
    Alloc,
    Storage, //
};
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

/// `KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE`: `KVM_GET_DIRTY_LOG` no longer
/// clears or write-protects; `KVM_CLEAR_DIRTY_LOG` does.
pub(crate) const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE: u64 = 1 << 0;
/// `KVM_DIRTY_LOG_INITIALLY_SET`: new bitmaps start all dirty.
pub(crate) const KVM_DIRTY_LOG_INITIALLY_SET: u64 = 1 << 1;
/// `KVM_DIRTY_LOG_MANUAL_CAPS` on riscv64 and arm64, the answer to
/// `KVM_CHECK_EXTENSION(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)`.
pub(crate) const KVM_DIRTY_LOG_MANUAL_CAPS: u64 =
    KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;

/// `KVM_GET_DIRTY_LOG`: `_IOW(KVMIO, 0x42, struct kvm_dirty_log)` (16 bytes).
pub(crate) const KVM_GET_DIRTY_LOG: u32 = super::abi::ioc(1, super::abi::KVMIO, 0x42, 16);
/// `KVM_CLEAR_DIRTY_LOG`: `_IOWR(KVMIO, 0xc0, struct kvm_clear_dirty_log)`
/// (24 bytes).
pub(crate) const KVM_CLEAR_DIRTY_LOG: u32 = super::abi::kvm_iowr(0xc0, 24);

const BITS: u64 = 64;

/// One slot's dirty bitmap.
///
/// Invariant: `words.len() == ceil(npages / 64)`, and no bit at or above
/// `npages` is ever set.
pub(crate) struct DirtyBitmap<A: Alloc> {
    words: A::Vec<AtomicU64>,
    npages: u64,
}

impl<A: Alloc> DirtyBitmap<A> {
    /// A bitmap for `npages` pages, all clear or (`all_set`) all dirty
    /// (`kvm_alloc_dirty_bitmap()` plus `bitmap_set()`). `ENOMEM` on
    /// allocation failure.
    pub(crate) fn new(npages: u64, all_set: bool) -> Result<Self, Errno> {
        let nwords = usize::try_from(npages.div_ceil(BITS)).map_err(|_| Errno::ENOMEM)?;
        let mut words = A::new_vec();
        for i in 0..nwords {
            let v = if !all_set {
                0
            } else {
                let rest = npages.saturating_sub((i as u64).saturating_mul(BITS));
                if rest >= BITS {
                    u64::MAX
                } else {
                    (1u64 << rest) - 1
                }
            };
            words.try_push(AtomicU64::new(v))?;
        }
        Ok(Self { words, npages })
    }

    /// Pages covered.
    pub(crate) fn npages(&self) -> u64 {
        self.npages
    }

    /// Number of 64-bit words (`kvm_dirty_bitmap_bytes() / 8`).
    pub(crate) fn nwords(&self) -> usize {
        self.words.len()
    }

    /// Marks page `rel` (relative to the slot) dirty; ignored out of range.
    pub(crate) fn set(&self, rel: u64) {
        if rel >= self.npages {
            return;
        }
        if let Some(w) = usize::try_from(rel / BITS).ok().and_then(|i| self.words.as_slice().get(i)) {
            w.fetch_or(1 << (rel % BITS), Ordering::Relaxed);
        }
    }

    /// Whether page `rel` is dirty.
    pub(crate) fn test(&self, rel: u64) -> bool {
        usize::try_from(rel / BITS)
            .ok()
            .and_then(|i| self.words.as_slice().get(i))
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (rel % BITS)) != 0)
    }

    fn word(&self, i: usize) -> Option<&AtomicU64> {
        self.words.as_slice().get(i)
    }
}

/// The outcome of a dirty-log ioctl that succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirtyLogDone {
    /// Some pages were write-protected again: flush the slot's TLB entries
    /// (`kvm_flush_remote_tlbs_memslot()`).
    pub(crate) flush: bool,
}

/// `KVM_CLEAR_DIRTY_LOG`'s argument, `struct kvm_clear_dirty_log` minus
/// the user pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClearDirtyLog {
    /// `as_id << 16 | id`.
    pub(crate) slot: u32,
    /// Pages to clear.
    pub(crate) num_pages: u32,
    /// First page, relative to the slot.
    pub(crate) first_page: u64,
}

/// Splits a `slot` argument: `EINVAL` unless the address space exists and
/// the id is a user slot.
fn user_slot_id(slot: u32) -> Result<u16, Errno> {
    let as_id = slot >> 16;
    let id = slot as u16;
    if as_id >= u32::from(KVM_ADDRESS_SPACE_NUM) || id >= KVM_USER_MEM_SLOTS {
        return Err(Errno::EINVAL);
    }
    Ok(id)
}

impl<A: Alloc> Memslots<A> {
    /// `kvm_dirty_log_manual_protect_and_init_set()`.
    pub(crate) fn dirty_log_initially_set(&self) -> bool {
        self.manual_dirty_log_protect & KVM_DIRTY_LOG_INITIALLY_SET != 0
    }

    /// `KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)` with `flags` and
    /// `args[0]`; `supported` is the arch's `KVM_DIRTY_LOG_MANUAL_CAPS`.
    /// `INITIALLY_SET` needs `PROTECT_ENABLE`; 0 turns manual mode off.
    pub(crate) fn enable_manual_dirty_log_protect(
        &mut self,
        flags: u32,
        arg0: u64,
        supported: u64,
    ) -> Result<(), Errno> {
        let allowed = if arg0 & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE != 0 {
            supported
        } else {
            KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE
        };
        if flags != 0 || arg0 & !allowed != 0 {
            return Err(Errno::EINVAL);
        }
        self.manual_dirty_log_protect = arg0;
        Ok(())
    }

    /// `mark_page_dirty()`: marks `gfn` dirty if its slot logs. Returns
    /// whether a bit was set.
    pub(crate) fn mark_page_dirty(&self, gfn: u64) -> bool {
        match self.gfn_to_memslot_dirty(gfn) {
            Some((s, Some(b))) if s.dirty_tracking() => {
                b.set(gfn.saturating_sub(s.base_gfn));
                true
            }
            _ => false,
        }
    }

    /// The slot and bitmap for a dirty-log ioctl, with upstream's errnos.
    fn logging_slot(&self, slot: u32) -> Result<(&Memslot, &DirtyBitmap<A>), Errno> {
        if !self.use_dirty_bitmap {
            return Err(Errno::ENXIO);
        }
        let id = user_slot_id(slot)?;
        match self.id_to_memslot_dirty(id) {
            Some((s, Some(b))) => Ok((s, b)),
            _ => Err(Errno::ENOENT),
        }
    }

    /// `KVM_GET_DIRTY_LOG` (`kvm_get_dirty_log_protect()`).
    ///
    /// Fills `out` with the slot's bitmap (`nwords` words; the glue copies
    /// `8 * out.len()` bytes to userspace, `EFAULT` if that fails). Without
    /// manual protection the returned bits are cleared and, for each
    /// non-zero word `w`, `protect(slot, 64 * w, mask)` write-protects those
    /// pages again. `out` is a scratch vector the glue may reuse.
    pub(crate) fn get_dirty_log(
        &self,
        slot: u32,
        out: &mut impl Storage<u64>,
        protect: &mut impl FnMut(&Memslot, u64, u64),
    ) -> Result<DirtyLogDone, Errno> {
        let (s, b) = self.logging_slot(slot)?;
        // Allocate before clearing anything, so ENOMEM loses no dirty bit.
        out.clear();
        out.try_extend_with(b.nwords(), 0)?;
        let manual = self.manual_dirty_log_protect != 0;
        let mut flush = false;
        for (i, dst) in out.as_mut_slice().iter_mut().enumerate() {
            let Some(w) = b.word(i) else {
                break;
            };
            *dst = if manual {
                w.load(Ordering::Relaxed)
            } else if w.load(Ordering::Relaxed) == 0 {
                0
            } else {
                let mask = w.swap(0, Ordering::AcqRel);
                if mask != 0 {
                    flush = true;
                    protect(s, (i as u64).saturating_mul(BITS), mask);
                }
                mask
            };
        }
        Ok(DirtyLogDone { flush })
    }

    /// `KVM_CLEAR_DIRTY_LOG` (`kvm_clear_dirty_log_protect()`).
    ///
    /// After validation, `read_user(n)` must return the `n` words of the
    /// user bitmap (`ceil(num_pages / 64)` words, page `first_page` in bit
    /// 0 of the first), or `EFAULT`. Each set bit that was dirty is cleared
    /// and passed to `protect(slot, offset, mask)`.
    pub(crate) fn clear_dirty_log<'b>(
        &self,
        log: &ClearDirtyLog,
        read_user: impl FnOnce(usize) -> Result<&'b [u64], Errno>,
        protect: &mut impl FnMut(&Memslot, u64, u64),
    ) -> Result<DirtyLogDone, Errno> {
        if !self.use_dirty_bitmap {
            return Err(Errno::ENXIO);
        }
        user_slot_id(log.slot)?;
        if !log.first_page.is_multiple_of(BITS) {
            return Err(Errno::EINVAL);
        }
        let (s, b) = self.logging_slot(log.slot)?;
        let num = u64::from(log.num_pages);
        if log.first_page > s.npages
            || num > s.npages - log.first_page
            || (num < s.npages - log.first_page && !num.is_multiple_of(BITS))
        {
            return Err(Errno::EINVAL);
        }
        let n = usize::try_from(num.div_ceil(BITS)).map_err(|_| Errno::EINVAL)?;
        let user = read_user(n)?;
        let user = user.get(..n).ok_or(Errno::EFAULT)?;
        let first_word = usize::try_from(log.first_page / BITS).map_err(|_| Errno::EINVAL)?;
        let mut flush = false;
        for (k, &mask) in user.iter().enumerate() {
            if mask == 0 {
                continue;
            }
            let Some(w) = first_word.checked_add(k).and_then(|i| b.word(i)) else {
                break;
            };
            // Only the bits really cleared; never any beyond npages.
            let cleared = mask & w.fetch_and(!mask, Ordering::AcqRel);
            if cleared != 0 {
                flush = true;
                let offset = log.first_page.saturating_add((k as u64).saturating_mul(BITS));
                protect(s, offset, cleared);
            }
        }
        Ok(DirtyLogDone { flush })
    }
}

/// The runs of set bits of a dirty-log `mask` whose bit 0 is page
/// `offset` of a slot starting at `base_gfn`, as `[gfn_start, gfn_end)`
/// ranges in ascending order: what `kvm_arch_mmu_enable_log_dirty_pt_masked()`
/// write-protects. Runs that would overflow the gfn space are dropped.
pub(crate) fn mask_gfn_runs(base_gfn: u64, offset: u64, mask: u64) -> impl Iterator<Item = (u64, u64)> {
    let first = base_gfn.checked_add(offset);
    let mut rest = mask;
    core::iter::from_fn(move || {
        let first = first?;
        while rest != 0 {
            let lo = rest.trailing_zeros();
            // The run's length: the ones from `lo` up.
            let len = (!(rest >> lo)).trailing_zeros();
            let hi = lo + len;
            rest = if hi >= 64 { 0 } else { rest & !(((1u64 << hi) - 1) ^ ((1u64 << lo) - 1)) };
            let start = first.checked_add(u64::from(lo));
            let end = first.checked_add(u64::from(hi));
            if let (Some(s), Some(e)) = (start, end) {
                return Some((s, e));
            }
        }
        None
    })
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
    use crate::memslot::{
        Change,
        KVM_MEM_LOG_DIRTY_PAGES,
        KVM_MEM_READONLY, //
    };
    use crate::storage::StdAlloc;

    type Words = std::vec::Vec<u64>;
    const LOG: u32 = KVM_MEM_LOG_DIRTY_PAGES;

    /// A set with slot 0 logging at gfn 0x100, `npages` pages, and slot 1
    /// not logging at gfn 0x10000.
    fn setup(npages: u64) -> Set {
        let mut s = Set::new(limits());
        assert_eq!(set_v2(&mut s, region(0, LOG, 0x100 * PAGE, npages * PAGE, 0x100000)), Ok(Some(Change::Create)));
        assert_eq!(set_v2(&mut s, region(1, 0, 0x10000 * PAGE, PAGE, 0x100000)), Ok(Some(Change::Create)));
        s
    }

    fn get(s: &Set, slot: u32) -> Result<(Words, bool, std::vec::Vec<(u64, u64)>), Errno> {
        let mut out = Words::new();
        let mut prot = std::vec::Vec::new();
        let r = s.get_dirty_log(slot, &mut out, &mut |_, off, m| prot.push((off, m)))?;
        Ok((out, r.flush, prot))
    }

    fn clear(s: &Set, slot: u32, first: u64, num: u32, bits: &[u64]) -> Result<(bool, std::vec::Vec<(u64, u64)>), Errno> {
        let log = ClearDirtyLog {
            slot,
            num_pages: num,
            first_page: first,
        };
        let mut prot = std::vec::Vec::new();
        let r = s.clear_dirty_log(&log, |_| Ok(bits), &mut |_, off, m| prot.push((off, m)))?;
        Ok((r.flush, prot))
    }

    #[test]
    fn ioctl_numbers_match_upstream() {
        assert_eq!(KVM_GET_DIRTY_LOG, 0x4010_ae42);
        assert_eq!(KVM_CLEAR_DIRTY_LOG, 0xc018_aec0);
        assert_eq!(KVM_DIRTY_LOG_MANUAL_CAPS, 3);
    }

    #[test]
    fn bitmap_sizes_and_initially_set_tail() {
        let b = DirtyBitmap::<StdAlloc>::new(70, true).unwrap();
        assert_eq!(b.nwords(), 2);
        assert!(b.test(69));
        assert!(!b.test(70));
        b.set(70); // beyond npages: ignored
        assert!(!b.test(70));
        assert_eq!(DirtyBitmap::<StdAlloc>::new(0, true).unwrap().nwords(), 0);
        assert_eq!(DirtyBitmap::<StdAlloc>::new(64, false).unwrap().nwords(), 1);
    }

    #[test]
    fn get_errnos() {
        let s = setup(100);
        // Slot 1 does not log; slot 2 does not exist.
        assert_eq!(get(&s, 1).err(), Some(Errno::ENOENT));
        assert_eq!(get(&s, 2).err(), Some(Errno::ENOENT));
        // Id out of range, second address space.
        assert_eq!(get(&s, 32767).err(), Some(Errno::EINVAL));
        assert_eq!(get(&s, 1 << 16).err(), Some(Errno::EINVAL));
        let mut s = s;
        s.use_dirty_bitmap = false;
        assert_eq!(get(&s, 0).err(), Some(Errno::ENXIO));
    }

    #[test]
    fn get_without_manual_protect_returns_clears_and_protects() {
        let s = setup(100);
        assert!(s.mark_page_dirty(0x100));
        assert!(s.mark_page_dirty(0x100 + 65));
        assert!(s.mark_page_dirty(0x100 + 99));
        assert!(!s.mark_page_dirty(0x10000)); // slot 1 does not log
        assert!(!s.mark_page_dirty(0x5000)); // no slot
        let (bits, flush, prot) = get(&s, 0).unwrap();
        assert_eq!(bits, [1, (1 << 1) | (1 << 35)]);
        assert!(flush);
        assert_eq!(prot, [(0, 1), (64, (1 << 1) | (1 << 35))]);
        // Cleared: the next read is empty and needs no flush.
        let (bits, flush, prot) = get(&s, 0).unwrap();
        assert_eq!(bits, [0, 0]);
        assert!(!flush);
        assert!(prot.is_empty());
    }

    #[test]
    fn get_with_manual_protect_does_not_clear() {
        let mut s = setup(64);
        assert_eq!(s.enable_manual_dirty_log_protect(0, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, 3), Ok(()));
        s.mark_page_dirty(0x100 + 3);
        for _ in 0..2 {
            let (bits, flush, prot) = get(&s, 0).unwrap();
            assert_eq!(bits, [1 << 3]);
            assert!(!flush);
            assert!(prot.is_empty());
        }
    }

    #[test]
    fn enable_cap_manual_protect_rules() {
        let mut s = setup(1);
        let (p, i) = (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_DIRTY_LOG_INITIALLY_SET);
        assert_eq!(s.enable_manual_dirty_log_protect(1, p, 3), Err(Errno::EINVAL)); // flags
        assert_eq!(s.enable_manual_dirty_log_protect(0, i, 3), Err(Errno::EINVAL)); // needs PROTECT
        assert_eq!(s.enable_manual_dirty_log_protect(0, p | 4, 3), Err(Errno::EINVAL));
        assert_eq!(s.enable_manual_dirty_log_protect(0, p | i, 1), Err(Errno::EINVAL)); // unsupported
        assert_eq!(s.enable_manual_dirty_log_protect(0, p | i, 3), Ok(()));
        assert!(s.dirty_log_initially_set());
        assert_eq!(s.enable_manual_dirty_log_protect(0, 0, 3), Ok(()));
        assert!(!s.dirty_log_initially_set());
    }

    #[test]
    fn initially_set_marks_new_bitmaps_dirty() {
        let mut s = Set::new(limits());
        let caps = KVM_DIRTY_LOG_MANUAL_CAPS;
        assert_eq!(s.enable_manual_dirty_log_protect(0, caps, caps), Ok(()));
        assert_eq!(set_v2(&mut s, region(0, LOG, 0, 70 * PAGE, 0x100000)), Ok(Some(Change::Create)));
        let (bits, _, _) = get(&s, 0).unwrap();
        assert_eq!(bits, [u64::MAX, (1 << 6) - 1]);
        // Enabling logging later on an existing slot: also all set.
        assert_eq!(set_v2(&mut s, region(1, 0, 0x1000 * PAGE, 2 * PAGE, 0x100000)), Ok(Some(Change::Create)));
        assert_eq!(set_v2(&mut s, region(1, LOG, 0x1000 * PAGE, 2 * PAGE, 0x100000)), Ok(Some(Change::FlagsOnly)));
        assert_eq!(get(&s, 1).unwrap().0, [0b11]);
    }

    #[test]
    fn bitmap_follows_flag_changes_and_moves() {
        let mut s = setup(8);
        s.mark_page_dirty(0x101);
        // Move keeps the bitmap (same size), at the new gfns.
        assert_eq!(set_v2(&mut s, region(0, LOG, 0x200 * PAGE, 8 * PAGE, 0x100000)), Ok(Some(Change::Move)));
        s.mark_page_dirty(0x202);
        assert_eq!(get(&s, 0).unwrap().0, [0b110]);
        // Dropping LOG_DIRTY_PAGES frees it: ENOENT.
        s.mark_page_dirty(0x203);
        assert_eq!(set_v2(&mut s, region(0, 0, 0x200 * PAGE, 8 * PAGE, 0x100000)), Ok(Some(Change::FlagsOnly)));
        assert_eq!(get(&s, 0).err(), Some(Errno::ENOENT));
        // Re-enabling starts from a clean bitmap.
        assert_eq!(set_v2(&mut s, region(0, LOG, 0x200 * PAGE, 8 * PAGE, 0x100000)), Ok(Some(Change::FlagsOnly)));
        assert_eq!(get(&s, 0).unwrap().0, [0]);
        // Read-only slots can log too.
        let m = region(5, LOG | KVM_MEM_READONLY, 0x900 * PAGE, PAGE, 0x100000);
        assert_eq!(set_v2(&mut s, m), Ok(Some(Change::Create)));
        assert_eq!(get(&s, 5).unwrap().0, [0]);
    }

    #[test]
    fn clear_alignment_rules() {
        let s = setup(200); // 200 pages: words 0..4, last partial
        // first_page not a multiple of 64.
        assert_eq!(clear(&s, 0, 1, 64, &[0]).err(), Some(Errno::EINVAL));
        // first_page beyond the slot; num_pages beyond the end.
        assert_eq!(clear(&s, 0, 256, 0, &[]).err(), Some(Errno::EINVAL));
        assert_eq!(clear(&s, 0, 128, 73, &[0, 0]).err(), Some(Errno::EINVAL));
        // num_pages not a multiple of 64 and not reaching the end.
        assert_eq!(clear(&s, 0, 0, 63, &[0]).err(), Some(Errno::EINVAL));
        assert_eq!(clear(&s, 0, 64, 65, &[0, 0]).err(), Some(Errno::EINVAL));
        // Reaching the end exactly with an odd count, an aligned middle
        // chunk, and nothing at all (even at the very end) are fine.
        assert_eq!(clear(&s, 0, 128, 72, &[0, 0]).map(|r| r.0), Ok(false));
        assert_eq!(clear(&s, 0, 64, 64, &[0]).map(|r| r.0), Ok(false));
        assert_eq!(clear(&s, 0, 0, 0, &[]).map(|r| r.0), Ok(false));
        assert_eq!(clear(&s, 0, 192, 8, &[0]).map(|r| r.0), Ok(false));
        assert_eq!(clear(&s, 0, 200, 0, &[]).err(), Some(Errno::EINVAL)); // 200 % 64 != 0
    }

    #[test]
    fn clear_errnos_and_order() {
        let s = setup(64);
        // The first_page check comes before the slot lookup.
        assert_eq!(clear(&s, 7, 3, 0, &[]).err(), Some(Errno::EINVAL));
        assert_eq!(clear(&s, 7, 0, 0, &[]).err(), Some(Errno::ENOENT));
        assert_eq!(clear(&s, 1, 0, 1, &[1]).err(), Some(Errno::ENOENT));
        assert_eq!(clear(&s, 40000, 0, 1, &[1]).err(), Some(Errno::EINVAL));
        // A failing copy from userspace is EFAULT, and a short one too.
        let log = ClearDirtyLog {
            slot: 0,
            num_pages: 64,
            first_page: 0,
        };
        let r = s.clear_dirty_log(&log, |_| Err(Errno::EFAULT), &mut |_, _, _| {});
        assert_eq!(r, Err(Errno::EFAULT));
        let r = s.clear_dirty_log(&log, |_| Ok(&[][..]), &mut |_, _, _| {});
        assert_eq!(r, Err(Errno::EFAULT));
    }

    #[test]
    fn clear_clears_only_dirty_requested_bits() {
        let mut s = setup(130);
        let caps = KVM_DIRTY_LOG_MANUAL_CAPS;
        assert_eq!(s.enable_manual_dirty_log_protect(0, caps, caps), Ok(()));
        for p in [0u64, 5, 64, 100, 129] {
            s.mark_page_dirty(0x100 + p);
        }
        let mut asked = 0;
        let log = ClearDirtyLog {
            slot: 0,
            num_pages: 66,
            first_page: 64,
        };
        let user = [(1u64 << 0) | (1 << 1) | (1 << 36), (1 << 1) | (1 << 2) | (1 << 40)];
        let mut prot = std::vec::Vec::new();
        let r = s.clear_dirty_log(
            &log,
            |n| {
                asked = n;
                Ok(&user[..])
            },
            &mut |_, off, m| prot.push((off, m)),
        );
        assert_eq!(r, Ok(DirtyLogDone { flush: true }));
        assert_eq!(asked, 2);
        // Page 64 and 100 were dirty and asked; 65 was asked but clean;
        // page 129 asked and dirty; bit 40 of the last word is past npages.
        assert_eq!(prot, [(64, (1 << 0) | (1 << 36)), (128, 1 << 1)]);
        assert_eq!(get(&s, 0).unwrap().0, [1 | (1 << 5), 0, 0]);
        // Clearing again: nothing really cleared, no flush.
        assert_eq!(clear(&s, 0, 64, 66, &user).map(|r| r.0), Ok(false));
    }

    #[test]
    fn get_enomem_loses_no_dirty_bit() {
        use crate::storage::{
            BudgetAlloc,
            BudgetVec, //
        };
        let s = setup(128);
        s.mark_page_dirty(0x100 + 100);
        let mut out: BudgetVec<u64> = BudgetAlloc::new_vec();
        BudgetAlloc::set_budget(1);
        let r = s.get_dirty_log(0, &mut out, &mut |_, _, _| {});
        BudgetAlloc::set_budget(usize::MAX);
        assert_eq!(r, Err(Errno::ENOMEM));
        assert_eq!(get(&s, 0).unwrap().0, [0, 1 << 36]);
    }

    #[test]
    fn concurrent_marking_is_not_lost() {
        let s = setup(64 * 64);
        std::thread::scope(|sc| {
            for t in 0..4u64 {
                let s = &s;
                sc.spawn(move || {
                    for p in (t..64 * 64).step_by(4) {
                        s.mark_page_dirty(0x100 + p);
                    }
                });
            }
        });
        let (bits, _, _) = get(&s, 0).unwrap();
        assert!(bits.iter().all(|&w| w == u64::MAX));
    }

    #[test]
    fn mask_runs_cover_exactly_the_set_bits() {
        let runs: std::vec::Vec<_> = mask_gfn_runs(100, 64, 0b1011_0001).collect();
        assert_eq!(runs, [(164, 165), (168, 170), (171, 172)]);
        let runs: std::vec::Vec<_> = mask_gfn_runs(0, 0, u64::MAX).collect();
        assert_eq!(runs, [(0, 64)]);
        let runs: std::vec::Vec<_> = mask_gfn_runs(0, 0, 1 << 63 | 1).collect();
        assert_eq!(runs, [(0, 1), (63, 64)]);
        assert_eq!(mask_gfn_runs(5, 0, 0).count(), 0);
        // Overflow: nothing rather than a wrapped range.
        assert_eq!(mask_gfn_runs(u64::MAX - 10, 0, 1 << 20).count(), 0);
        assert_eq!(mask_gfn_runs(u64::MAX, 1, 1).count(), 0);
        // Every bit of random masks is in exactly one run.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut seen = 0u64;
            for (s, e) in mask_gfn_runs(1000, 0, x) {
                for g in s..e {
                    let bit = 1u64 << (g - 1000);
                    assert_eq!(seen & bit, 0);
                    seen |= bit;
                }
            }
            assert_eq!(seen, x);
        }
    }
}
