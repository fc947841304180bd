// SPDX-License-Identifier: GPL-2.0

//! Coalesced MMIO and PIO zones of a VM and the index arithmetic of the
//! shared ring: upstream's `virt/kvm/coalesced_mmio.c`.
//!
//! Pure logic (`core` only), also tested on the host.
//!
//! # Zones
//!
//! Upstream registers each zone as a device on the MMIO or PIO bus
//! (`kvm_io_bus_register_dev()`): `pio` must be 0 or 1 (`EINVAL`), there is
//! no size or overlap check, and a bus refuses a device once it holds
//! `NR_IOBUS_DEVS` (1000) devices other than ioeventfds (`ENOSPC`). kvm_rs
//! has no other in-kernel device on either bus, so the limit is 1000 zones
//! per bus. Unregistering removes every zone of the same bus that contains
//! the whole given range (`coalesced_mmio_in_range()`), never splits one,
//! and answers 0 even if nothing matched.
//!
//! # The ring
//!
//! One page per VM, `struct kvm_coalesced_mmio_ring`: `first`, `last`,
//! then `KVM_COALESCED_MMIO_MAX` entries of `struct kvm_coalesced_mmio`.
//! Userspace owns `first` and may write anything to both indices; the
//! kernel only trusts what [`ring_insert`] checks (upstream's
//! `coalesced_mmio_write()`): `last` in bounds, one entry kept free.

use super::{
    abi::{
        ioc,
        Errno,
        KVMIO, //
    },
    storage::{
        Alloc,
        Storage, //
    },
};

/// `sizeof(struct kvm_coalesced_mmio_zone)`.
pub(crate) const ZONE_SIZE: u32 = 16;
/// `KVM_REGISTER_COALESCED_MMIO`: `_IOW(KVMIO, 0x67, struct kvm_coalesced_mmio_zone)`.
pub(crate) const KVM_REGISTER_COALESCED_MMIO: u32 = ioc(1, KVMIO, 0x67, ZONE_SIZE);
/// `KVM_UNREGISTER_COALESCED_MMIO`: `_IOW(KVMIO, 0x68, struct kvm_coalesced_mmio_zone)`.
pub(crate) const KVM_UNREGISTER_COALESCED_MMIO: u32 = ioc(1, KVMIO, 0x68, ZONE_SIZE);

/// `NR_IOBUS_DEVS`: the devices (other than ioeventfds) a bus holds.
pub(crate) const NR_IOBUS_DEVS: usize = 1000;

/// `sizeof(struct kvm_coalesced_mmio_ring)`: `first` and `last`.
pub(crate) const RING_HEADER: usize = 8;
/// Offset of `first` in the ring page.
pub(crate) const RING_FIRST: usize = 0;
/// Offset of `last` in the ring page.
pub(crate) const RING_LAST: usize = 4;
/// `sizeof(struct kvm_coalesced_mmio)`: `phys_addr`, `len`, `pio`,
/// `data[8]`.
pub(crate) const ENTRY_SIZE: usize = 24;
/// Offset of `len` in an entry.
pub(crate) const ENTRY_LEN: usize = 8;
/// Offset of `pio` in an entry.
pub(crate) const ENTRY_PIO: usize = 12;
/// Offset of `data` in an entry.
pub(crate) const ENTRY_DATA: usize = 16;

/// `KVM_COALESCED_MMIO_MAX` for a ring page of `page_size` bytes.
pub(crate) const fn ring_max(page_size: usize) -> u32 {
    let n = page_size.saturating_sub(RING_HEADER) / ENTRY_SIZE;
    if n > u32::MAX as usize {
        u32::MAX
    } else {
        n as u32
    }
}

/// Where a write goes in a ring of `max` entries whose indices userspace
/// left at `first` and `last` (each read once): `Some((insert, new_last))`
/// or `None` if `last` is out of range or the ring is full (one entry
/// always stays free), in which case the access exits to userspace.
pub(crate) fn ring_insert(first: u32, last: u32, max: u32) -> Option<(u32, u32)> {
    if last >= max {
        return None;
    }
    // `last < max <= u32::MAX`, so `last + 1` does not overflow.
    let next = last.checked_add(1)?.checked_rem(max)?;
    if next == first {
        return None;
    }
    Some((last, next))
}

/// Byte offset of entry `index` in the ring page; `None` if the entry
/// would not fit in a page of `page_size` bytes.
pub(crate) fn entry_offset(index: u32, page_size: usize) -> Option<usize> {
    let off = usize::try_from(index).ok()?.checked_mul(ENTRY_SIZE)?.checked_add(RING_HEADER)?;
    (off.checked_add(ENTRY_SIZE)? <= page_size).then_some(off)
}

/// `struct kvm_coalesced_mmio_zone` as the caller passed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Zone {
    /// Guest physical address (or port).
    pub(crate) addr: u64,
    /// Size in bytes.
    pub(crate) size: u32,
    /// 1 for a PIO zone, 0 for MMIO (the `pad`/`pio` union).
    pub(crate) pio: u32,
}

impl Zone {
    /// `coalesced_mmio_in_range()`: whether `[addr, addr + len)` lies
    /// within the zone. `len` is upstream's `int`: above `i32::MAX` it is
    /// negative and nothing matches; the zone end wraps as upstream's
    /// `gpa_t` sum does.
    pub(crate) fn contains(&self, addr: u64, len: u32) -> bool {
        if i32::try_from(len).is_err() {
            return false;
        }
        let Some(end) = addr.checked_add(u64::from(len)) else {
            return false;
        };
        addr >= self.addr && end <= self.addr.wrapping_add(u64::from(self.size))
    }

    fn is_pio(&self) -> bool {
        self.pio == 1
    }
}

/// `kvm->coalesced_zones` (under `slots_lock` upstream).
pub(crate) struct Zones<A: Alloc> {
    zones: A::Vec<Zone>,
}

impl<A: Alloc> Zones<A> {
    /// No zones.
    pub(crate) fn new() -> Self {
        Zones { zones: A::new_vec() }
    }

    /// The registered zones (in no particular order).
    pub(crate) fn zones(&self) -> &[Zone] {
        self.zones.as_slice()
    }

    /// `kvm_vm_ioctl_register_coalesced_mmio()`.
    pub(crate) fn register(&mut self, zone: &Zone) -> Result<(), Errno> {
        if zone.pio > 1 {
            return Err(Errno::EINVAL);
        }
        let on_bus = self.zones().iter().filter(|z| z.pio == zone.pio).count();
        if on_bus > NR_IOBUS_DEVS - 1 {
            return Err(Errno::ENOSPC);
        }
        self.zones.try_push(*zone)
    }

    /// `kvm_vm_ioctl_unregister_coalesced_mmio()`: removes every zone of
    /// the same bus containing `[zone.addr, zone.addr + zone.size)`.
    pub(crate) fn unregister(&mut self, zone: &Zone) -> Result<(), Errno> {
        if zone.pio > 1 {
            return Err(Errno::EINVAL);
        }
        let mut i = 0;
        while i < self.zones.len() {
            let hit = matches!(self.zones.as_slice().get(i),
                Some(z) if z.pio == zone.pio && z.contains(zone.addr, zone.size));
            if hit {
                // The last zone moves into slot `i`: look at `i` again.
                self.zones.remove_unordered(i);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Whether a guest MMIO write of `len` bytes at `addr` lies within an
    /// MMIO zone (`coalesced_mmio_write()`'s range check on the MMIO bus).
    pub(crate) fn mmio_hit(&self, addr: u64, len: u32) -> bool {
        self.zones().iter().any(|z| !z.is_pio() && z.contains(addr, len))
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;
    use crate::storage::{
        BudgetAlloc,
        StdAlloc, //
    };

    fn z(addr: u64, size: u32, pio: u32) -> Zone {
        Zone { addr, size, pio }
    }

    #[test]
    fn ioctl_numbers_match_uapi() {
        assert_eq!(KVM_REGISTER_COALESCED_MMIO, 0x4010_ae67);
        assert_eq!(KVM_UNREGISTER_COALESCED_MMIO, 0x4010_ae68);
    }

    #[test]
    fn ring_geometry() {
        assert_eq!(ring_max(4096), 170);
        assert_eq!(ring_max(16384), 682);
        assert_eq!(ring_max(65536), 2730);
        assert_eq!(ring_max(0), 0);
        assert_eq!(entry_offset(0, 4096), Some(8));
        assert_eq!(entry_offset(169, 4096), Some(8 + 169 * 24));
        assert_eq!(entry_offset(170, 4096), None);
        assert_eq!(entry_offset(u32::MAX, 4096), None);
        for i in 0..ring_max(4096) {
            assert!(entry_offset(i, 4096).is_some());
        }
    }

    #[test]
    fn ring_insert_keeps_one_free_and_distrusts_userspace() {
        let max = ring_max(4096);
        assert_eq!(ring_insert(0, 0, max), Some((0, 1)));
        assert_eq!(ring_insert(0, max - 2, max), Some((max - 2, max - 1)));
        // Full: the next `last` would equal `first`.
        assert_eq!(ring_insert(0, max - 1, max), None);
        assert_eq!(ring_insert(5, 4, max), None);
        // Wraps.
        assert_eq!(ring_insert(5, max - 1, max), Some((max - 1, 0)));
        // Out-of-range `last` from a malicious VMM: no write.
        for last in [max, max + 1, u32::MAX] {
            assert_eq!(ring_insert(0, last, max), None);
        }
        // An out-of-range `first` just never equals `next`.
        assert_eq!(ring_insert(u32::MAX, 3, max), Some((3, 4)));
        // A degenerate ring takes nothing.
        assert_eq!(ring_insert(0, 0, 0), None);
        assert_eq!(ring_insert(0, 0, 1), None);
        // Filling from empty takes max - 1 entries.
        let (mut first, mut last, mut n) = (7, 7, 0);
        while let Some((i, next)) = ring_insert(first, last, max) {
            assert!(i < max);
            last = next;
            n += 1;
        }
        assert_eq!(n, max - 1);
        first = last;
        assert_eq!(ring_insert(first, last, max), Some((last, (last + 1) % max)));
    }

    #[test]
    fn in_range_as_upstream() {
        let zone = z(0x1000, 0x100, 0);
        assert!(zone.contains(0x1000, 8));
        assert!(zone.contains(0x10f8, 8));
        assert!(!zone.contains(0x10f9, 8));
        assert!(!zone.contains(0xfff, 2));
        assert!(zone.contains(0x1000, 0x100));
        assert!(zone.contains(0x1100, 0));
        assert!(!zone.contains(0x1000, 0x8000_0000));
        assert!(!zone.contains(u64::MAX, 2));
        // A zone whose end wraps contains nothing past the wrap.
        let wrap = z(u64::MAX - 0xf, 0x20, 0);
        assert!(!wrap.contains(u64::MAX - 0xf, 4));
    }

    #[test]
    fn register_checks_as_upstream() {
        let mut r = Zones::<StdAlloc>::new();
        assert_eq!(r.register(&z(0x1000, 8, 2)), Err(Errno::EINVAL));
        assert_eq!(r.register(&z(0x1000, 8, u32::MAX)), Err(Errno::EINVAL));
        // No size or overlap check.
        assert_eq!(r.register(&z(0x1000, 0, 0)), Ok(()));
        assert_eq!(r.register(&z(0x1000, u32::MAX, 0)), Ok(()));
        assert_eq!(r.register(&z(0x1000, 8, 0)), Ok(()));
        assert_eq!(r.register(&z(0x1000, 8, 0)), Ok(()));
        assert_eq!(r.register(&z(u64::MAX, 8, 1)), Ok(()));
        assert_eq!(r.zones().len(), 5);
        assert_eq!(r.unregister(&z(0, 0, 2)), Err(Errno::EINVAL));
    }

    #[test]
    fn bus_limit_is_per_bus() {
        let mut r = Zones::<StdAlloc>::new();
        for i in 0..NR_IOBUS_DEVS as u64 {
            assert_eq!(r.register(&z(i * 8, 8, 0)), Ok(()));
        }
        assert_eq!(r.register(&z(0, 8, 0)), Err(Errno::ENOSPC));
        assert_eq!(r.register(&z(0, 8, 1)), Ok(()));
        assert_eq!(r.unregister(&z(0, 8, 0)), Ok(()));
        assert_eq!(r.register(&z(0, 8, 0)), Ok(()));
    }

    #[test]
    fn unregister_removes_containing_zones_only() {
        let mut r = Zones::<StdAlloc>::new();
        r.register(&z(0x1000, 0x100, 0)).unwrap();
        r.register(&z(0x1000, 0x10, 0)).unwrap();
        r.register(&z(0x1000, 0x100, 1)).unwrap();
        r.register(&z(0x2000, 0x100, 0)).unwrap();
        // Not contained in any zone: nothing happens, still 0.
        assert_eq!(r.unregister(&z(0x0ff0, 0x20, 0)), Ok(()));
        assert_eq!(r.zones().len(), 4);
        // Contained in both MMIO zones at 0x1000 (not split), not the PIO one.
        assert_eq!(r.unregister(&z(0x1004, 4, 0)), Ok(()));
        assert_eq!(r.zones().len(), 2);
        assert!(!r.mmio_hit(0x1000, 4));
        assert!(r.mmio_hit(0x2000, 4));
        assert_eq!(r.unregister(&z(0x1000, 0x100, 1)), Ok(()));
        assert_eq!(r.zones(), &[z(0x2000, 0x100, 0)]);
    }

    #[test]
    fn mmio_hit_ignores_pio_zones() {
        let mut r = Zones::<StdAlloc>::new();
        r.register(&z(0x1000, 0x100, 1)).unwrap();
        assert!(!r.mmio_hit(0x1000, 4));
        r.register(&z(0x1000, 0x100, 0)).unwrap();
        assert!(r.mmio_hit(0x1000, 4));
        assert!(!r.mmio_hit(0x10fe, 4));
    }

    #[test]
    fn register_enomem_leaves_zones_unchanged() {
        let mut r = Zones::<BudgetAlloc>::new();
        BudgetAlloc::set_budget(0);
        assert_eq!(r.register(&z(0x1000, 8, 0)), Err(Errno::ENOMEM));
        assert!(r.zones().is_empty());
    }
}
