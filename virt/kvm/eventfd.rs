// SPDX-License-Identifier: GPL-2.0

//! References to eventfds (`struct eventfd_ctx`), as `KVM_IOEVENTFD` and
//! `KVM_IRQFD` hold them, and the kernel side of `KVM_IRQFD`.
//!
//! The kernel crate has no eventfd abstraction yet, so this uses
//! `eventfd_ctx_fdget()` and `eventfd_ctx_put()` from `kernel::bindings`.
//!
//! # `KVM_IRQFD`: what differs from upstream
//!
//! The registry ([`irqfd`](super::irqfd)) gives upstream's answers to
//! every `KVM_IRQFD` call. Upstream also hooks each irqfd into its
//! eventfd's wait queue (a priority, exclusive entry with its own wake
//! function): a signal then drains the eventfd's counter, wakes no one
//! else, and injects the gsi; closing the eventfd (`EPOLLHUP`) removes
//! the irqfd. That needs a wait-queue entry with a custom wake function,
//! which neither the kernel crate nor our patch series offers yet. Until
//! then:
//!
//! - a signalled irqfd's counter stays readable by userspace, and its
//!   other waiters (poll, epoll) are woken;
//! - an irqfd whose eventfd is closed stays registered (holding its
//!   eventfd reference) until it is deassigned or the VM is destroyed;
//! - nothing injects, which is what upstream does anyway on a host without
//!   an in-kernel irqchip (riscv64 without the AIA); arm64 refuses every
//!   assignment with `EAGAIN` while there is no vGIC.
//!
//! So `KVM_CAP_IRQFD` (and arm64's `KVM_CAP_IRQFD_RESAMPLE`) are not
//! claimed. The one-irqfd-per-eventfd rule (`EBUSY`, across VMs) that the
//! wait-queue entry enforces upstream is kept by a module-wide claim set.

use super::{
    abi::Errno,
    arch::{
        Arch,
        SetIrq, //
    },
    dev::to_errno,
    irqfd::{
        IrqfdArgs,
        IrqfdEnv,
        Irqfds, //
    },
    kalloc::KernelAlloc,
    uapi::{
        self,
        read_user, //
    },
};
use crate::arch::Host;
use core::ptr::NonNull;
use kernel::{
    alloc::KVVec,
    bindings,
    error::from_err_ptr,
    prelude::*,
    sync::Mutex,
};

/// One reference to an eventfd context.
///
/// Invariant: `self.0` points to a live `eventfd_ctx` on which this value
/// owns one reference (taken by `eventfd_ctx_fdget()`, dropped by
/// `eventfd_ctx_put()` in `Drop`).
pub(crate) struct EventfdCtx(NonNull<bindings::eventfd_ctx>);

// SAFETY: An `eventfd_ctx` is reference counted (kref) and its state is
// protected by its own wait-queue lock: the reference may be used and
// released from any thread.
unsafe impl Send for EventfdCtx {}
// SAFETY: `EventfdCtx` offers no access through `&self` other than the
// pointer comparison, which is thread-safe.
unsafe impl Sync for EventfdCtx {}

impl EventfdCtx {
    /// `eventfd_ctx_fdget(fd)`: `EBADF` if `fd` is not an open file of the
    /// current task, `EINVAL` if it is not an eventfd.
    pub(crate) fn fdget(fd: i32) -> Result<EventfdCtx, Errno> {
        // SAFETY: `eventfd_ctx_fdget()` accepts any fd number; it returns a
        // new reference or an error pointer.
        let ptr = unsafe { bindings::eventfd_ctx_fdget(fd) };
        let ptr = from_err_ptr(ptr).map_err(to_errno)?;
        // Never NULL on success; treated as "not an eventfd" if it were.
        NonNull::new(ptr).map(EventfdCtx).ok_or(Errno::EINVAL)
    }
}

impl PartialEq for EventfdCtx {
    /// The same eventfd (upstream compares the context pointers).
    fn eq(&self, other: &EventfdCtx) -> bool {
        self.0 == other.0
    }
}

impl EventfdCtx {
    /// `eventfd_signal()`: adds 1 to the counter and wakes its readers.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn signal(&self) {
        // SAFETY: This value holds a reference on the live context (type
        // invariant); `eventfd_signal()` is `eventfd_signal_mask(ctx, 0)`.
        unsafe { bindings::eventfd_signal_mask(self.0.as_ptr(), 0) };
    }

    /// The context's address: its identity while a reference is held.
    fn key(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

impl Drop for EventfdCtx {
    fn drop(&mut self) {
        // SAFETY: By the type invariant this value owns one reference on a
        // live context; it is given back exactly once, here.
        unsafe { bindings::eventfd_ctx_put(self.0.as_ptr()) };
    }
}

kernel::sync::global_lock! {
    // SAFETY: `init_irqfd_claims()` is called once, first thing in the
    // module initializer, before `/dev/kvm` (and so any irqfd) exists.
    unsafe(uninit) static IRQFD_CLAIMS: Mutex<KVVec<usize>> = KVVec::new();
}

/// Initializes the module-wide irqfd claim set.
///
/// # Safety
///
/// Must be called exactly once, before any VM exists.
pub(crate) unsafe fn init_irqfd_claims() {
    // SAFETY: The caller calls this once, before any other use.
    unsafe { IRQFD_CLAIMS.init() };
}

/// The claim of one irqfd on its eventfd (upstream: the irqfd's priority
/// entry on the eventfd's wait queue, of which there can be one).
///
/// Invariant: `key` is in `IRQFD_CLAIMS` exactly while this value lives, and
/// the irqfd that owns it holds a reference on that eventfd context for at
/// least as long, so no other context can get the same address meanwhile.
pub(crate) struct IrqfdClaim {
    key: usize,
}

impl Drop for IrqfdClaim {
    fn drop(&mut self) {
        let mut claims = IRQFD_CLAIMS.lock();
        claims.retain(|k| *k != self.key);
        if claims.is_empty() {
            // Give the buffer back: a static is never dropped, so the
            // module would otherwise leak it at unload.
            *claims = KVVec::new();
        }
    }
}

/// The irqfds of a VM.
pub(crate) type VmIrqfds = Irqfds<KernelAlloc, EventfdCtx, IrqfdClaim>;

/// The kernel's [`IrqfdEnv`]: real eventfds and the module-wide claims.
struct KernelIrqfdEnv;

impl IrqfdEnv for KernelIrqfdEnv {
    type Eventfd = EventfdCtx;
    type Claim = IrqfdClaim;

    fn intc_initialized(&self) -> bool {
        Host::intc_initialized()
    }

    fn fdget(&mut self, fd: u32) -> Result<EventfdCtx, Errno> {
        // `eventfd_ctx_fdget()` takes an `int`; upstream's `unsigned int`
        // lookup of a value above `INT_MAX` fails with `EBADF` as a
        // negative one does.
        EventfdCtx::fdget(i32::try_from(fd).unwrap_or(-1))
    }

    fn claim(&mut self, eventfd: &EventfdCtx) -> Result<IrqfdClaim, Errno> {
        claim_key(eventfd.key())
    }
}

/// Claims the eventfd context at `key`: `EBUSY` if an irqfd has it.
fn claim_key(key: usize) -> Result<IrqfdClaim, Errno> {
    let mut claims = IRQFD_CLAIMS.lock();
    if claims.contains(&key) {
        return Err(Errno::EBUSY);
    }
    claims.push(key, GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)?;
    Ok(IrqfdClaim { key })
}

/// `KVM_IRQFD` on a VM fd (`kvm_irqfd()`).
pub(crate) fn irqfd_ioctl(irqfds: &Mutex<VmIrqfds>, arg: usize) -> Result<isize> {
    let a: uapi::Irqfd = read_user(arg)?;
    let args = IrqfdArgs {
        fd: a.fd,
        gsi: a.gsi,
        flags: a.flags,
        resamplefd: a.resamplefd,
    };
    irqfds.lock().ioctl(&mut KernelIrqfdEnv, &args)?;
    Ok(0)
}

/// What a signalled irqfd does (upstream's `irqfd_wakeup()` then
/// `irqfd_inject()`): the gsi of `eventfd`'s irqfd, as an edge or (with
/// `RESAMPLE`) held high, goes to the architecture's interrupt controller.
/// `None` if `eventfd` is no irqfd's of this VM.
///
/// The caller will be the wake function of the irqfd's wait-queue entry,
/// once that exists (see the module documentation); until then nothing
/// signals an irqfd, and the architectures have no irqchip to inject into.
#[allow(dead_code)]
pub(crate) fn irqfd_signalled(irqfds: &Mutex<VmIrqfds>, eventfd: &EventfdCtx) -> Option<SetIrq> {
    let inj = irqfds.lock().lookup(eventfd)?;
    let raised = Host::set_gsi_level(inj.gsi, true);
    if !inj.resample {
        Host::set_gsi_level(inj.gsi, false);
    }
    Some(raised)
}

#[kunit_tests(kvm_rs_eventfd)]
mod tests {
    use super::*;

    #[test]
    fn fdget_of_a_bad_fd_is_ebadf() {
        assert!(matches!(EventfdCtx::fdget(-1), Err(Errno::EBADF)));
        assert!(matches!(EventfdCtx::fdget(i32::MAX), Err(Errno::EBADF)));
        assert!(matches!(KernelIrqfdEnv.fdget(u32::MAX), Err(Errno::EBADF)));
    }

    #[test]
    fn an_eventfd_is_claimed_once_and_given_back() {
        // Keys no context can have (contexts are aligned kernel pointers).
        let (a, b) = (1usize, 3usize);
        let ca = claim_key(a);
        assert!(ca.is_ok());
        assert!(matches!(claim_key(a), Err(Errno::EBUSY)));
        let cb = claim_key(b);
        assert!(cb.is_ok());
        drop(ca);
        let ca = claim_key(a);
        assert!(ca.is_ok());
        drop((ca, cb));
        let claims = IRQFD_CLAIMS.lock();
        assert!(!claims.iter().any(|k| *k == a || *k == b));
        // No irqfd is left: the buffer is freed too.
        assert_eq!(claims.capacity(), 0);
    }

    /// An environment with eventfds 3..=9 whose claims are the module's.
    struct KeyEnv;

    impl IrqfdEnv for KeyEnv {
        type Eventfd = usize;
        type Claim = IrqfdClaim;
        fn intc_initialized(&self) -> bool {
            true
        }
        fn fdget(&mut self, fd: u32) -> Result<usize, Errno> {
            match fd {
                // Odd keys: never a real context's.
                3..=9 => Ok(2 * fd as usize + 1),
                _ => Err(Errno::EBADF),
            }
        }
        fn claim(&mut self, e: &usize) -> Result<IrqfdClaim, Errno> {
            claim_key(*e)
        }
    }

    #[test]
    fn vm_registries_share_the_claims_and_release_them() {
        let mut vm1: Irqfds<KernelAlloc, usize, IrqfdClaim> = Irqfds::new();
        let mut vm2: Irqfds<KernelAlloc, usize, IrqfdClaim> = Irqfds::new();
        let args = IrqfdArgs { fd: 3, gsi: 5, flags: 0, resamplefd: 0 };
        assert_eq!(vm1.ioctl(&mut KeyEnv, &args), Ok(()));
        assert_eq!(vm2.ioctl(&mut KeyEnv, &args), Err(Errno::EBUSY));
        let args4 = IrqfdArgs { fd: 4, gsi: 5, flags: crate::kvm::irqfd::FLAG_RESAMPLE, resamplefd: 3 };
        assert_eq!(vm2.ioctl(&mut KeyEnv, &args4), Ok(()));
        assert_eq!(vm2.resamplefds(5).count(), 1);
        drop(vm1);
        assert_eq!(vm2.ioctl(&mut KeyEnv, &args), Ok(()));
        assert_eq!(vm2.entries().len(), 2);
        // Deassign releases the claim; the VM's end releases the rest.
        let de = IrqfdArgs { flags: crate::kvm::irqfd::FLAG_DEASSIGN, ..args4 };
        assert_eq!(vm2.ioctl(&mut KeyEnv, &de), Ok(()));
        assert!(!IRQFD_CLAIMS.lock().contains(&9));
        vm2.release();
        assert!(!IRQFD_CLAIMS.lock().contains(&7));
        // No irqchip on either architecture yet: injection goes nowhere.
        assert_eq!(Host::set_gsi_level(5, true), SetIrq::NoIrqchip);
    }
}
