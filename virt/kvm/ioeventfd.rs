// SPDX-License-Identifier: GPL-2.0

//! `KVM_IOEVENTFD` registrations of a VM: the validation and bookkeeping of
//! upstream's `kvm_ioeventfd()` (`virt/kvm/eventfd.c`).
//!
//! Pure logic (`core` only), also tested on the host. The registry is
//! generic over the eventfd handle `E`: the kernel glue passes a reference
//! to the `eventfd_ctx` (released when the handle is dropped), the host
//! tests a plain number. Two handles are the same eventfd iff they compare
//! equal (upstream compares `eventfd_ctx` pointers).
//!
//! # The buses
//!
//! Upstream registers each ioeventfd as a device on an I/O bus: MMIO, PIO
//! or virtio-ccw-notify, by its flags (every bus exists on every arch, so a
//! PIO registration succeeds on riscv64 and arm64 too, it just never
//! fires). A length-0 MMIO registration also goes on the "fast MMIO" bus;
//! every entry of that bus is a length-0 MMIO entry, so it can collide only
//! where the MMIO bus already did, and it is not modelled separately.
//!
//! `kvm_io_bus_register_dev()` limits the devices of a bus, but not its
//! ioeventfds (`dev_count - ioeventfd_count`), so there is no count limit
//! here either: every entry is charged to the caller's memory cgroup.
//!
//! # Signalling
//!
//! A guest MMIO write goes to [`Ioeventfds::mmio_write_target`] before it
//! exits to userspace (`kvm_io_bus_write()` of the MMIO bus): the first
//! entry it hits (`ioeventfd_in_range()`) has its eventfd signalled and the
//! write is complete. PIO and virtio-ccw entries never fire on riscv64 and
//! arm64.

use super::{
    abi::Errno,
    storage::{
        Alloc,
        Storage, //
    },
};

/// `KVM_IOEVENTFD_FLAG_DATAMATCH`.
pub(crate) const FLAG_DATAMATCH: u32 = 1 << 0;
/// `KVM_IOEVENTFD_FLAG_PIO`.
pub(crate) const FLAG_PIO: u32 = 1 << 1;
/// `KVM_IOEVENTFD_FLAG_DEASSIGN`.
pub(crate) const FLAG_DEASSIGN: u32 = 1 << 2;
/// `KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY`.
pub(crate) const FLAG_VIRTIO_CCW_NOTIFY: u32 = 1 << 3;
/// `KVM_IOEVENTFD_VALID_FLAG_MASK`: the flags above and the (unused)
/// `fast_mmio` bit 4.
pub(crate) const VALID_FLAG_MASK: u32 = (1 << 5) - 1;

/// The I/O bus of a registration (`enum kvm_bus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bus {
    /// `KVM_MMIO_BUS` (and `KVM_FAST_MMIO_BUS` for length 0).
    Mmio,
    /// `KVM_PIO_BUS`.
    Pio,
    /// `KVM_VIRTIO_CCW_NOTIFY_BUS`.
    VirtioCcwNotify,
}

impl Bus {
    /// `ioeventfd_bus_from_flags()`.
    pub(crate) fn from_flags(flags: u32) -> Bus {
        if flags & FLAG_PIO != 0 {
            Bus::Pio
        } else if flags & FLAG_VIRTIO_CCW_NOTIFY != 0 {
            Bus::VirtioCcwNotify
        } else {
            Bus::Mmio
        }
    }
}

/// `struct kvm_ioeventfd` as the caller passed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IoeventfdArgs {
    /// Compared with the written value when `FLAG_DATAMATCH` is set.
    pub(crate) datamatch: u64,
    /// Guest physical (or port) address.
    pub(crate) addr: u64,
    /// Access length: 0 (any), 1, 2, 4 or 8.
    pub(crate) len: u32,
    /// The eventfd.
    pub(crate) fd: i32,
    /// `KVM_IOEVENTFD_FLAG_*`.
    pub(crate) flags: u32,
}

/// The checks of `kvm_assign_ioeventfd()` before it looks at the fd, in
/// upstream's order: length, address range, flags, length 0 with
/// datamatch. Returns the bus.
pub(crate) fn check_assign(args: &IoeventfdArgs) -> Result<Bus, Errno> {
    if !matches!(args.len, 0 | 1 | 2 | 4 | 8) {
        return Err(Errno::EINVAL);
    }
    if args.addr.checked_add(u64::from(args.len)).is_none() {
        return Err(Errno::EINVAL);
    }
    if args.flags & !VALID_FLAG_MASK != 0 {
        return Err(Errno::EINVAL);
    }
    if args.len == 0 && args.flags & FLAG_DATAMATCH != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Bus::from_flags(args.flags))
}

/// One registration (upstream's `struct _ioeventfd`).
#[derive(Debug)]
pub(crate) struct Ioeventfd<E> {
    /// Its bus.
    pub(crate) bus: Bus,
    /// Its address.
    pub(crate) addr: u64,
    /// Its length (0: any access).
    pub(crate) len: u32,
    /// `Some(value)` with datamatch, `None` for a wildcard.
    pub(crate) datamatch: Option<u64>,
    /// The eventfd to signal.
    pub(crate) eventfd: E,
}

impl<E> Ioeventfd<E> {
    /// `ioeventfd_check_collision()` for one pair: same bus and address,
    /// and either length is 0, or the lengths are equal and either is a
    /// wildcard or both match the same data.
    fn collides(&self, other: &Ioeventfd<E>) -> bool {
        if self.bus != other.bus || self.addr != other.addr {
            return false;
        }
        if self.len == 0 || other.len == 0 {
            return true;
        }
        if self.len != other.len {
            return false;
        }
        match (self.datamatch, other.datamatch) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }
}

/// The ioeventfds of a VM (upstream's `kvm->ioeventfds`, under
/// `slots_lock`).
///
/// Invariant: no two entries collide (see [`Ioeventfd::collides`]).
pub(crate) struct Ioeventfds<A: Alloc, E> {
    entries: A::Vec<Ioeventfd<E>>,
}

impl<A: Alloc, E: PartialEq> Ioeventfds<A, E> {
    /// No registration.
    pub(crate) fn new() -> Self {
        Ioeventfds { entries: A::new_vec() }
    }

    /// The registrations, in no particular order.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn entries(&self) -> &[Ioeventfd<E>] {
        self.entries.as_slice()
    }

    /// The eventfd a guest MMIO write of `len` bytes of `value` (zero
    /// extended, little-endian in memory) at `addr` signals, if any
    /// (`ioeventfd_in_range()`): the address must be exact; a length-0
    /// entry takes any write there; otherwise the length must be equal and
    /// the value match unless the entry is a wildcard.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn mmio_write_target(&self, addr: u64, len: u32, value: u64) -> Option<&E> {
        self.entries
            .as_slice()
            .iter()
            .find(|e| {
                e.bus == Bus::Mmio
                    && e.addr == addr
                    && (e.len == 0 || (e.len == len && e.datamatch.is_none_or(|d| d == value)))
            })
            .map(|e| &e.eventfd)
    }

    /// `KVM_IOEVENTFD`: assigns or deassigns as `args.flags` says. `fdget`
    /// turns the fd into a handle (`eventfd_ctx_fdget()`: `EBADF` for a
    /// bad fd, `EINVAL` for another kind of file); it is called after the
    /// argument checks, as upstream does.
    pub(crate) fn ioctl(
        &mut self,
        args: &IoeventfdArgs,
        fdget: impl FnOnce(i32) -> Result<E, Errno>,
    ) -> Result<(), Errno> {
        if args.flags & FLAG_DEASSIGN != 0 {
            let eventfd = fdget(args.fd)?;
            return self.deassign(Bus::from_flags(args.flags), args, &eventfd);
        }
        let bus = check_assign(args)?;
        let eventfd = fdget(args.fd)?;
        self.assign(bus, args, eventfd)
    }

    /// `kvm_assign_ioeventfd_idx()`: `EEXIST` if the new entry collides
    /// with one already registered, `ENOMEM`; `eventfd` is dropped on
    /// failure.
    fn assign(&mut self, bus: Bus, args: &IoeventfdArgs, eventfd: E) -> Result<(), Errno> {
        let new = Ioeventfd {
            bus,
            addr: args.addr,
            len: args.len,
            datamatch: (args.flags & FLAG_DATAMATCH != 0).then_some(args.datamatch),
            eventfd,
        };
        if self.entries.as_slice().iter().any(|e| e.collides(&new)) {
            return Err(Errno::EEXIST);
        }
        self.entries.try_push(new)
    }

    /// `kvm_deassign_ioeventfd_idx()`: removes the first entry with the
    /// same bus, eventfd, address, length, wildcard-ness and (unless a
    /// wildcard) datamatch; `ENOENT` if there is none. No other argument
    /// check, as upstream.
    fn deassign(&mut self, bus: Bus, args: &IoeventfdArgs, eventfd: &E) -> Result<(), Errno> {
        let datamatch = (args.flags & FLAG_DATAMATCH != 0).then_some(args.datamatch);
        let found = self.entries.as_slice().iter().position(|e| {
            e.bus == bus && e.eventfd == *eventfd && e.addr == args.addr && e.len == args.len
                && e.datamatch == datamatch
        });
        let Some(index) = found else {
            return Err(Errno::ENOENT);
        };
        // Order does not matter. Dropping the entry releases its eventfd.
        drop(self.entries.remove_unordered(index));
        Ok(())
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;
    use crate::storage::{
        BudgetAlloc,
        StdAlloc, //
    };

    type Reg = Ioeventfds<StdAlloc, i32>;

    fn args(addr: u64, len: u32, flags: u32, datamatch: u64, fd: i32) -> IoeventfdArgs {
        IoeventfdArgs { datamatch, addr, len, fd, flags }
    }

    /// An fd table with eventfds 3..=9, 10 a non-eventfd file.
    fn fdget(fd: i32) -> Result<i32, Errno> {
        match fd {
            3..=9 => Ok(fd),
            10 => Err(Errno::EINVAL),
            _ => Err(Errno::EBADF),
        }
    }

    #[test]
    fn assign_checks_in_upstream_order() {
        let mut r = Reg::new();
        for len in [3, 5, 16, u32::MAX] {
            assert_eq!(r.ioctl(&args(0x1000, len, 0, 0, 3), fdget), Err(Errno::EINVAL));
        }
        assert_eq!(r.ioctl(&args(u64::MAX - 3, 8, 0, 0, 3), fdget), Err(Errno::EINVAL));
        assert_eq!(r.ioctl(&args(u64::MAX - 7, 8, 0, 0, 3), fdget), Err(Errno::EINVAL));
        assert_eq!(r.ioctl(&args(u64::MAX - 8, 8, 0, 0, 3), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(u64::MAX, 0, 0, 0, 3), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x1000, 4, 1 << 5, 0, 3), fdget), Err(Errno::EINVAL));
        assert_eq!(r.ioctl(&args(0x1000, 0, FLAG_DATAMATCH, 0, 3), fdget), Err(Errno::EINVAL));
        // Argument errors come before the fd is looked at.
        assert_eq!(r.ioctl(&args(0x1000, 3, 0, 0, -1), fdget), Err(Errno::EINVAL));
        assert_eq!(r.ioctl(&args(0x1000, 4, 0, 0, -1), fdget), Err(Errno::EBADF));
        assert_eq!(r.ioctl(&args(0x1000, 4, 0, 0, 10), fdget), Err(Errno::EINVAL));
        // Bit 4 (fast_mmio) is a valid flag.
        assert_eq!(r.ioctl(&args(0x2000, 4, 1 << 4, 0, 3), fdget), Ok(()));
        assert_eq!(r.entries().len(), 3);
    }

    #[test]
    fn collisions_are_eexist() {
        let mut r = Reg::new();
        let dm = FLAG_DATAMATCH;
        assert_eq!(r.ioctl(&args(0x1000, 4, dm, 1, 3), fdget), Ok(()));
        // Other data, other length, other address, other bus: fine.
        assert_eq!(r.ioctl(&args(0x1000, 4, dm, 2, 4), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x1000, 2, dm, 1, 4), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x1001, 4, dm, 1, 4), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x1000, 4, dm | FLAG_PIO, 1, 4), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x1000, 4, dm | FLAG_VIRTIO_CCW_NOTIFY, 1, 4), fdget), Ok(()));
        // Same data (even from another eventfd), a wildcard, length 0.
        assert_eq!(r.ioctl(&args(0x1000, 4, dm, 1, 5), fdget), Err(Errno::EEXIST));
        assert_eq!(r.ioctl(&args(0x1000, 4, 0, 0, 5), fdget), Err(Errno::EEXIST));
        assert_eq!(r.ioctl(&args(0x1000, 0, 0, 0, 5), fdget), Err(Errno::EEXIST));
        // A wildcard then blocks every datamatch of its length.
        assert_eq!(r.ioctl(&args(0x3000, 8, 0, 0, 5), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x3000, 8, dm, 7, 6), fdget), Err(Errno::EEXIST));
        assert_eq!(r.ioctl(&args(0x3000, 4, dm, 7, 6), fdget), Ok(()));
        // PIO with PIO collides (PIO wins over CCW in the flags).
        assert_eq!(r.ioctl(&args(0x1000, 4, dm | FLAG_PIO | FLAG_VIRTIO_CCW_NOTIFY, 1, 6), fdget),
                   Err(Errno::EEXIST));
        assert_eq!(r.entries().len(), 8);
    }

    #[test]
    fn deassign_matches_exactly() {
        let mut r = Reg::new();
        let dm = FLAG_DATAMATCH;
        let de = FLAG_DEASSIGN;
        assert_eq!(r.ioctl(&args(0x1000, 4, dm, 1, 3), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x2000, 0, 0, 0, 3), fdget), Ok(()));
        // Wrong eventfd, data, length, wildcard-ness, bus, address.
        assert_eq!(r.ioctl(&args(0x1000, 4, de | dm, 1, 4), fdget), Err(Errno::ENOENT));
        assert_eq!(r.ioctl(&args(0x1000, 4, de | dm, 2, 3), fdget), Err(Errno::ENOENT));
        assert_eq!(r.ioctl(&args(0x1000, 8, de | dm, 1, 3), fdget), Err(Errno::ENOENT));
        assert_eq!(r.ioctl(&args(0x1000, 4, de, 1, 3), fdget), Err(Errno::ENOENT));
        assert_eq!(r.ioctl(&args(0x1000, 4, de | dm | FLAG_PIO, 1, 3), fdget), Err(Errno::ENOENT));
        assert_eq!(r.ioctl(&args(0x1004, 4, de | dm, 1, 3), fdget), Err(Errno::ENOENT));
        // The fd is checked first; no other argument check.
        assert_eq!(r.ioctl(&args(0x1000, 3, de, 0, 42), fdget), Err(Errno::EBADF));
        assert_eq!(r.ioctl(&args(0x1000, 3, de | (1 << 9), 0, 3), fdget), Err(Errno::ENOENT));
        // Datamatch value ignored for a wildcard.
        assert_eq!(r.ioctl(&args(0x2000, 0, de, 99, 3), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x1000, 4, de | dm, 1, 3), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x1000, 4, de | dm, 1, 3), fdget), Err(Errno::ENOENT));
        assert!(r.entries().is_empty());
        // Re-assign after deassign works.
        assert_eq!(r.ioctl(&args(0x1000, 4, dm, 1, 3), fdget), Ok(()));
    }

    #[test]
    fn deassign_keeps_the_others() {
        let mut r = Reg::new();
        for i in 0..5u64 {
            assert_eq!(r.ioctl(&args(0x1000 + 8 * i, 8, 0, 0, 3), fdget), Ok(()));
        }
        assert_eq!(r.ioctl(&args(0x1008, 8, FLAG_DEASSIGN, 0, 3), fdget), Ok(()));
        let mut addrs: Vec<u64> = r.entries().iter().map(|e| e.addr).collect();
        addrs.sort_unstable();
        assert_eq!(addrs, [0x1000, 0x1010, 0x1018, 0x1020]);
    }

    #[test]
    fn out_of_memory_leaves_the_registry_unchanged() {
        let mut r: Ioeventfds<BudgetAlloc, i32> = Ioeventfds::new();
        BudgetAlloc::set_budget(0);
        assert_eq!(r.ioctl(&args(0x1000, 4, 0, 0, 3), fdget), Err(Errno::ENOMEM));
        assert!(r.entries().is_empty());
        BudgetAlloc::set_budget(usize::MAX);
        assert_eq!(r.ioctl(&args(0x1000, 4, 0, 0, 3), fdget), Ok(()));
    }

    #[test]
    fn mmio_writes_hit_exact_entries() {
        let mut r = Ioeventfds::<StdAlloc, i32>::new();
        assert_eq!(r.ioctl(&args(0x1000, 4, FLAG_DATAMATCH, 7, 3), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x2000, 0, 0, 0, 4), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x3000, 2, 0, 0, 5), fdget), Ok(()));
        assert_eq!(r.ioctl(&args(0x4000, 8, FLAG_PIO, 0, 6), fdget), Ok(()));
        assert_eq!(r.mmio_write_target(0x1000, 4, 7), Some(&3));
        assert_eq!(r.mmio_write_target(0x1000, 4, 8), None);
        assert_eq!(r.mmio_write_target(0x1000, 2, 7), None);
        assert_eq!(r.mmio_write_target(0x1001, 4, 7), None);
        assert_eq!(r.mmio_write_target(0x2000, 1, 0xff), Some(&4));
        assert_eq!(r.mmio_write_target(0x2000, 8, 0), Some(&4));
        assert_eq!(r.mmio_write_target(0x3000, 2, 0xabcd), Some(&5));
        assert_eq!(r.mmio_write_target(0x3000, 4, 0xabcd), None);
        // A PIO entry never fires on the MMIO bus.
        assert_eq!(r.mmio_write_target(0x4000, 8, 0), None);
    }

    #[test]
    fn bus_from_flags() {
        assert_eq!(Bus::from_flags(0), Bus::Mmio);
        assert_eq!(Bus::from_flags(FLAG_DATAMATCH | FLAG_DEASSIGN), Bus::Mmio);
        assert_eq!(Bus::from_flags(FLAG_PIO | FLAG_VIRTIO_CCW_NOTIFY), Bus::Pio);
        assert_eq!(Bus::from_flags(FLAG_VIRTIO_CCW_NOTIFY), Bus::VirtioCcwNotify);
    }
}
