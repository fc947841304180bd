// SPDX-License-Identifier: GPL-2.0

//! `KVM_IRQFD` registrations of a VM: the validation and bookkeeping of
//! upstream's `kvm_irqfd()`, `kvm_irqfd_assign()`, `kvm_irqfd_deassign()`
//! and `kvm_irqfd_release()` (`virt/kvm/eventfd.c`).
//!
//! Pure logic (`core` only), also tested on the host. What touches the
//! kernel is behind [`IrqfdEnv`]: turning an fd into an eventfd reference,
//! claiming an eventfd for an irqfd, and asking the architecture whether its
//! interrupt controller is ready. The kernel glue (`eventfd.rs`) implements
//! it with `eventfd_ctx` references and a module-wide claim set; the host
//! tests with plain numbers.
//!
//! # Upstream's checks, in order
//!
//! 1. `flags` outside `DEASSIGN | RESAMPLE`: `EINVAL` (for both paths).
//! 2. Deassign: `eventfd_ctx_fdget(fd)` (`EBADF`, `EINVAL` for a file that
//!    is not an eventfd), then every irqfd with that eventfd *and* that gsi
//!    is shut down. Always 0 after the fd check, even when nothing matched;
//!    `resamplefd` and the `RESAMPLE` flag are ignored.
//! 3. Assign: `kvm_arch_intc_initialized()` first (`EAGAIN`: arm64 until a
//!    vGIC is initialized; riscv64 has no such hook, it is always ready),
//!    then `kvm_arch_irqfd_allowed()` (true on riscv64 and arm64), then the
//!    fd (`EBADF`, `EINVAL`), then with `RESAMPLE` the resamplefd (`EBADF`,
//!    `EINVAL`), then the registration on the eventfd's wait queue, which
//!    fails with `EBUSY` when the eventfd already belongs to an irqfd of
//!    *any* VM (`add_wait_queue_priority_exclusive()`: one priority waiter
//!    per eventfd). The gsi is not checked: an irqfd on an unrouted gsi is
//!    accepted and injects nothing.
//!
//! There is no in-kernel irqchip requirement for `RESAMPLE` in 7.3: older
//! kernels refused it with `EINVAL` without one, and x86 still does through
//! `kvm_arch_irqfd_allowed()`, but riscv64 and arm64 accept a resampling
//! irqfd wherever they accept an irqfd (arm64 needs the vGIC for both).
//!
//! # Resampling
//!
//! Upstream groups the resampling irqfds of one gsi behind one "resampler"
//! (an IRQ-ack notifier). Nothing of that grouping shows through the ioctl;
//! here each entry keeps its resamplefd and [`Irqfds::resamplefds`] finds
//! those of a gsi, for the end-of-interrupt path of a future irqchip.
//!
//! # Injection
//!
//! When an assigned eventfd is signalled, upstream's wake function drains
//! its counter and sets the gsi (an edge: 1 then 0; held at 1 with
//! `RESAMPLE` until the guest acknowledges it). [`Irqfds::lookup`] gives
//! the gsi and kind of an eventfd for that path; the kernel glue hands it to
//! the architecture's interrupt controller.

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

/// `KVM_IRQFD`: `_IOW(KVMIO, 0x76, struct kvm_irqfd)`.
pub(crate) const KVM_IRQFD: u32 = ioc(1, KVMIO, 0x76, 32);

/// `KVM_IRQFD_FLAG_DEASSIGN`.
pub(crate) const FLAG_DEASSIGN: u32 = 1 << 0;
/// `KVM_IRQFD_FLAG_RESAMPLE`.
pub(crate) const FLAG_RESAMPLE: u32 = 1 << 1;

/// `struct kvm_irqfd` as the caller passed it (the padding is ignored, as
/// upstream does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IrqfdArgs {
    /// The eventfd that triggers the interrupt.
    pub(crate) fd: u32,
    /// The gsi to raise.
    pub(crate) gsi: u32,
    /// `KVM_IRQFD_FLAG_*`.
    pub(crate) flags: u32,
    /// With `RESAMPLE`: the eventfd signalled when the guest acknowledges
    /// the interrupt.
    pub(crate) resamplefd: u32,
}

/// What the registry needs from the kernel (or the host tests).
pub(crate) trait IrqfdEnv {
    /// A reference to an eventfd; two are equal iff they are the same
    /// eventfd (upstream compares `eventfd_ctx` pointers).
    type Eventfd: PartialEq;
    /// Proof that an eventfd belongs to one irqfd (upstream: the irqfd's
    /// priority entry on the eventfd's wait queue). Dropping it gives the
    /// eventfd back.
    type Claim;

    /// `kvm_arch_intc_initialized()`.
    fn intc_initialized(&self) -> bool;

    /// `eventfd_ctx_fdget(fd)`: `EBADF` for a closed fd, `EINVAL` for a
    /// file that is not an eventfd.
    fn fdget(&mut self, fd: u32) -> Result<Self::Eventfd, Errno>;

    /// Claims `eventfd` for a new irqfd: `EBUSY` if an irqfd of any VM has
    /// it already.
    fn claim(&mut self, eventfd: &Self::Eventfd) -> Result<Self::Claim, Errno>;
}

/// One registration (upstream's `struct kvm_kernel_irqfd`).
///
/// Field order matters: the claim is dropped before the eventfd reference,
/// so that an eventfd is never reused at the same address while still
/// claimed.
#[derive(Debug)]
pub(crate) struct Irqfd<E, C> {
    /// The claim on `eventfd`, held for its `Drop`.
    _claim: C,
    /// The eventfd that triggers the interrupt.
    pub(crate) eventfd: E,
    /// The gsi it raises.
    pub(crate) gsi: u32,
    /// With `RESAMPLE`: the eventfd to signal on acknowledgement.
    pub(crate) resamplefd: Option<E>,
}

/// What a signalled eventfd must do (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Injection {
    /// The gsi to raise.
    pub(crate) gsi: u32,
    /// Level-triggered until acknowledged (`RESAMPLE`), else an edge.
    pub(crate) resample: bool,
}

/// The irqfds of a VM (upstream's `kvm->irqfds`).
///
/// Invariant: no two entries have the same eventfd (each holds the claim on
/// its eventfd).
pub(crate) struct Irqfds<A: Alloc, E, C> {
    entries: A::Vec<Irqfd<E, C>>,
}

impl<A: Alloc, E: PartialEq, C> Irqfds<A, E, C> {
    /// No irqfd.
    pub(crate) fn new() -> Self {
        Irqfds { entries: A::new_vec() }
    }

    /// The registrations, in no particular order.
    pub(crate) fn entries(&self) -> &[Irqfd<E, C>] {
        self.entries.as_slice()
    }

    /// `KVM_IRQFD` (`kvm_irqfd()`).
    pub(crate) fn ioctl<V>(&mut self, env: &mut V, args: &IrqfdArgs) -> Result<(), Errno>
    where
        V: IrqfdEnv<Eventfd = E, Claim = C>,
    {
        if args.flags & !(FLAG_DEASSIGN | FLAG_RESAMPLE) != 0 {
            return Err(Errno::EINVAL);
        }
        if args.flags & FLAG_DEASSIGN != 0 {
            let eventfd = env.fdget(args.fd)?;
            self.deassign(&eventfd, args.gsi);
            return Ok(());
        }
        self.assign(env, args)
    }

    /// `kvm_irqfd_assign()`: on failure every reference taken is dropped.
    fn assign<V>(&mut self, env: &mut V, args: &IrqfdArgs) -> Result<(), Errno>
    where
        V: IrqfdEnv<Eventfd = E, Claim = C>,
    {
        if !env.intc_initialized() {
            return Err(Errno::EAGAIN);
        }
        let eventfd = env.fdget(args.fd)?;
        let resamplefd = if args.flags & FLAG_RESAMPLE != 0 {
            Some(env.fdget(args.resamplefd)?)
        } else {
            None
        };
        let claim = env.claim(&eventfd)?;
        self.entries.try_push(Irqfd {
            _claim: claim,
            eventfd,
            gsi: args.gsi,
            resamplefd,
        })
    }

    /// `kvm_irqfd_deassign()`: drops every irqfd with this eventfd and gsi
    /// (at most one, by the invariant), which releases its references.
    fn deassign(&mut self, eventfd: &E, gsi: u32) {
        let found = self
            .entries
            .as_slice()
            .iter()
            .position(|e| e.eventfd == *eventfd && e.gsi == gsi);
        let Some(index) = found else {
            return;
        };
        // Order does not matter.
        drop(self.entries.remove_unordered(index));
    }

    /// `kvm_irqfd_release()`: drops every irqfd (the VM is going away).
    pub(crate) fn release(&mut self) {
        self.entries.clear();
    }

    /// What signalling `eventfd` injects, if it is an irqfd's.
    pub(crate) fn lookup(&self, eventfd: &E) -> Option<Injection> {
        self.entries.as_slice().iter().find(|e| e.eventfd == *eventfd).map(|e| Injection {
            gsi: e.gsi,
            resample: e.resamplefd.is_some(),
        })
    }

    /// The resamplefds to signal when the guest acknowledges `gsi`
    /// (upstream's `irqfd_resampler_ack()`).
    pub(crate) fn resamplefds(&self, gsi: u32) -> impl Iterator<Item = &E> {
        self.entries
            .as_slice()
            .iter()
            .filter(move |e| e.gsi == gsi)
            .filter_map(|e| e.resamplefd.as_ref())
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;
    use crate::storage::{
        BudgetAlloc,
        StdAlloc, //
    };
    use std::{
        cell::RefCell,
        rc::Rc,
    };

    /// A host: eventfds 3..=9, 10 a non-eventfd file, other fds closed; a
    /// claim set shared by several "VMs" (the module-wide set).
    struct Env {
        intc: bool,
        claimed: Rc<RefCell<Vec<i32>>>,
    }

    /// A claim: gives the eventfd back when dropped.
    #[derive(Debug)]
    struct Claim {
        fd: i32,
        claimed: Rc<RefCell<Vec<i32>>>,
    }

    impl Drop for Claim {
        fn drop(&mut self) {
            self.claimed.borrow_mut().retain(|&f| f != self.fd);
        }
    }

    impl IrqfdEnv for Env {
        type Eventfd = i32;
        type Claim = Claim;

        fn intc_initialized(&self) -> bool {
            self.intc
        }

        fn fdget(&mut self, fd: u32) -> Result<i32, Errno> {
            match fd {
                3..=9 => Ok(fd as i32),
                10 => Err(Errno::EINVAL),
                _ => Err(Errno::EBADF),
            }
        }

        fn claim(&mut self, eventfd: &i32) -> Result<Claim, Errno> {
            if self.claimed.borrow().contains(eventfd) {
                return Err(Errno::EBUSY);
            }
            self.claimed.borrow_mut().push(*eventfd);
            Ok(Claim { fd: *eventfd, claimed: self.claimed.clone() })
        }
    }

    type Reg = Irqfds<StdAlloc, i32, Claim>;

    fn env() -> Env {
        Env { intc: true, claimed: Rc::new(RefCell::new(Vec::new())) }
    }

    fn args(fd: u32, gsi: u32, flags: u32, resamplefd: u32) -> IrqfdArgs {
        IrqfdArgs { fd, gsi, flags, resamplefd }
    }

    #[test]
    fn ioctl_number_matches_upstream_value() {
        assert_eq!(KVM_IRQFD, 0x4020_ae76);
    }

    #[test]
    fn unknown_flags_are_einval_before_anything() {
        let mut r = Reg::new();
        let mut e = env();
        for flags in [1 << 2, 1 << 31, FLAG_DEASSIGN | 1 << 2, FLAG_RESAMPLE | 1 << 5, u32::MAX] {
            assert_eq!(r.ioctl(&mut e, &args(42, 0, flags, 42)), Err(Errno::EINVAL), "{flags:#x}");
        }
        e.intc = false;
        assert_eq!(r.ioctl(&mut e, &args(3, 0, 1 << 2, 0)), Err(Errno::EINVAL));
        assert!(r.entries().is_empty());
    }

    #[test]
    fn assign_checks_in_upstream_order() {
        let mut r = Reg::new();
        let mut e = env();
        // The interrupt controller comes first (arm64 without a vGIC).
        e.intc = false;
        assert_eq!(r.ioctl(&mut e, &args(u32::MAX, 0, 0, 0)), Err(Errno::EAGAIN));
        assert_eq!(r.ioctl(&mut e, &args(3, 0, FLAG_RESAMPLE, 42)), Err(Errno::EAGAIN));
        e.intc = true;
        assert_eq!(r.ioctl(&mut e, &args(u32::MAX, 0, 0, 0)), Err(Errno::EBADF));
        assert_eq!(r.ioctl(&mut e, &args(42, 0, 0, 0)), Err(Errno::EBADF));
        assert_eq!(r.ioctl(&mut e, &args(10, 0, 0, 0)), Err(Errno::EINVAL));
        // The eventfd before the resamplefd.
        assert_eq!(r.ioctl(&mut e, &args(10, 0, FLAG_RESAMPLE, 42)), Err(Errno::EINVAL));
        assert_eq!(r.ioctl(&mut e, &args(3, 0, FLAG_RESAMPLE, 42)), Err(Errno::EBADF));
        assert_eq!(r.ioctl(&mut e, &args(3, 0, FLAG_RESAMPLE, 10)), Err(Errno::EINVAL));
        assert!(r.entries().is_empty());
        assert!(e.claimed.borrow().is_empty());
        // Without RESAMPLE the resamplefd is not looked at.
        assert_eq!(r.ioctl(&mut e, &args(3, 7, 0, 42)), Ok(()));
        // Any gsi is accepted.
        assert_eq!(r.ioctl(&mut e, &args(4, u32::MAX, 0, 0)), Ok(()));
        assert_eq!(r.entries().len(), 2);
        assert_eq!(r.lookup(&3), Some(Injection { gsi: 7, resample: false }));
    }

    #[test]
    fn one_irqfd_per_eventfd_in_any_vm() {
        let mut e = env();
        let mut vm1 = Reg::new();
        let mut vm2 = Reg::new();
        assert_eq!(vm1.ioctl(&mut e, &args(3, 1, 0, 0)), Ok(()));
        // Same gsi, other gsi, with resample, in another VM: all EBUSY.
        assert_eq!(vm1.ioctl(&mut e, &args(3, 1, 0, 0)), Err(Errno::EBUSY));
        assert_eq!(vm1.ioctl(&mut e, &args(3, 2, 0, 0)), Err(Errno::EBUSY));
        assert_eq!(vm1.ioctl(&mut e, &args(3, 2, FLAG_RESAMPLE, 4)), Err(Errno::EBUSY));
        assert_eq!(vm2.ioctl(&mut e, &args(3, 1, 0, 0)), Err(Errno::EBUSY));
        // A resamplefd is not claimed: it may be shared, be the irqfd's own
        // eventfd, or be another irqfd's eventfd.
        assert_eq!(vm1.ioctl(&mut e, &args(4, 1, FLAG_RESAMPLE, 5)), Ok(()));
        assert_eq!(vm2.ioctl(&mut e, &args(6, 1, FLAG_RESAMPLE, 5)), Ok(()));
        assert_eq!(vm2.ioctl(&mut e, &args(7, 2, FLAG_RESAMPLE, 7)), Ok(()));
        assert_eq!(vm2.ioctl(&mut e, &args(5, 3, 0, 0)), Ok(()));
        assert_eq!(vm2.ioctl(&mut e, &args(8, 3, FLAG_RESAMPLE, 3)), Ok(()));
        assert_eq!(vm1.resamplefds(1).copied().collect::<Vec<_>>(), [5]);
        assert_eq!(vm2.lookup(&7), Some(Injection { gsi: 2, resample: true }));
        // Dropping a VM gives its eventfds back.
        vm1.release();
        assert_eq!(vm2.ioctl(&mut e, &args(3, 9, 0, 0)), Ok(()));
        assert_eq!(vm2.ioctl(&mut e, &args(4, 9, 0, 0)), Ok(()));
        drop(vm2);
        assert!(e.claimed.borrow().is_empty());
    }

    #[test]
    fn deassign_matches_eventfd_and_gsi_and_never_fails_after_the_fd() {
        let mut r = Reg::new();
        let mut e = env();
        let de = FLAG_DEASSIGN;
        assert_eq!(r.ioctl(&mut e, &args(3, 1, 0, 0)), Ok(()));
        assert_eq!(r.ioctl(&mut e, &args(4, 1, FLAG_RESAMPLE, 5)), Ok(()));
        // Bad fds.
        assert_eq!(r.ioctl(&mut e, &args(42, 1, de, 0)), Err(Errno::EBADF));
        assert_eq!(r.ioctl(&mut e, &args(10, 1, de, 0)), Err(Errno::EINVAL));
        // No match: other gsi, other eventfd. Still 0.
        assert_eq!(r.ioctl(&mut e, &args(3, 2, de, 0)), Ok(()));
        assert_eq!(r.ioctl(&mut e, &args(5, 1, de, 0)), Ok(()));
        assert_eq!(r.entries().len(), 2);
        // Without an irqchip, deassign still works (arm64).
        e.intc = false;
        // RESAMPLE and resamplefd are ignored.
        assert_eq!(r.ioctl(&mut e, &args(4, 1, de | FLAG_RESAMPLE, 42)), Ok(()));
        assert_eq!(r.ioctl(&mut e, &args(3, 1, de, 0)), Ok(()));
        assert!(r.entries().is_empty());
        assert!(e.claimed.borrow().is_empty());
        assert_eq!(r.ioctl(&mut e, &args(3, 1, de, 0)), Ok(()));
        // Re-assign after deassign.
        e.intc = true;
        assert_eq!(r.ioctl(&mut e, &args(3, 1, 0, 0)), Ok(()));
    }

    #[test]
    fn deassign_keeps_the_others() {
        let mut r = Reg::new();
        let mut e = env();
        for fd in 3..=7 {
            assert_eq!(r.ioctl(&mut e, &args(fd, fd * 10, 0, 0)), Ok(()));
        }
        assert_eq!(r.ioctl(&mut e, &args(4, 40, FLAG_DEASSIGN, 0)), Ok(()));
        let mut fds: Vec<i32> = r.entries().iter().map(|x| x.eventfd).collect();
        fds.sort_unstable();
        assert_eq!(fds, [3, 5, 6, 7]);
        assert_eq!(r.lookup(&4), None);
        assert_eq!(r.lookup(&6), Some(Injection { gsi: 60, resample: false }));
    }

    #[test]
    fn out_of_memory_leaves_everything_unclaimed() {
        let mut r: Irqfds<BudgetAlloc, i32, Claim> = Irqfds::new();
        let mut e = env();
        BudgetAlloc::set_budget(0);
        assert_eq!(r.ioctl(&mut e, &args(3, 0, 0, 0)), Err(Errno::ENOMEM));
        assert!(r.entries().is_empty());
        assert!(e.claimed.borrow().is_empty());
        BudgetAlloc::set_budget(usize::MAX);
        assert_eq!(r.ioctl(&mut e, &args(3, 0, 0, 0)), Ok(()));
    }
}
