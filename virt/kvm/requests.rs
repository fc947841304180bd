// SPDX-License-Identifier: GPL-2.0

//! vCPU requests: work that another thread asks a vCPU to do before it next
//! enters the guest (upstream's `vcpu->requests`, `kvm_make_request()`,
//! `kvm_check_request()`, `kvm_request_pending()`).
//!
//! Pure logic (`core` only), also tested on the host.
//!
//! # Design
//!
//! Requests are bits of one [`AtomicU64`]. A requester sets a bit with
//! [`Requests::make`] and then kicks the vCPU (IPI to the CPU it runs on,
//! or a wake-up if it is halted); the vCPU's run loop, with interrupts off
//! just before entering the guest, tests [`Requests::pending`] and handles
//! each bit it consumes with [`Requests::check`] (test and clear). As
//! upstream, `make` is a release (the data that goes with the request is
//! visible to whoever sees the bit) and `check` an acquire.
//!
//! The consumer is the arch's run loop (riscv64 `arch/riscv/kvm/run.rs`);
//! the kick (`Vcpu::kick` in `vcpu.rs`) IPIs a vCPU in guest mode and
//! wakes a halted one. Arch requests are numbered from 8 (riscv64:
//! `FENCE_I` 8, `HFENCE_VVMA_ALL` 9).

use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

/// A request number (a bit of [`Requests`]); 0 to 63.
///
/// Invariant: `self.0 < 64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request(u32);

impl Request {
    /// Request number `nr`, or `None` if it does not fit the bitmap.
    // Arch requests (riscv64 HFENCE, arm64 vGIC, ...) will be numbered here.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) const fn new(nr: u32) -> Option<Request> {
        if nr < u64::BITS {
            Some(Request(nr))
        } else {
            None
        }
    }

    /// The request's bit.
    const fn bit(self) -> u64 {
        // `self.0 < 64` by the type invariant.
        1u64 << self.0
    }
}

/// `KVM_REQ_TLB_FLUSH`: flush the guest's TLB entries (generic request 0).
pub(crate) const REQ_TLB_FLUSH: Request = Request(0);
/// `KVM_REQ_VM_DEAD`: the VM is dead, leave `KVM_RUN` with `EIO` (1).
pub(crate) const REQ_VM_DEAD: Request = Request(1);
/// `KVM_REQ_UNBLOCK`: a halted vCPU should re-check whether it can run (2).
pub(crate) const REQ_UNBLOCK: Request = Request(2);

/// The pending requests of one vCPU.
#[derive(Debug, Default)]
pub(crate) struct Requests(AtomicU64);

impl Requests {
    /// No request pending.
    pub(crate) const fn new() -> Requests {
        Requests(AtomicU64::new(0))
    }

    /// Raises `req` (`kvm_make_request()`). The caller then kicks the vCPU.
    pub(crate) fn make(&self, req: Request) {
        self.0.fetch_or(req.bit(), Ordering::Release);
    }

    /// Whether any request is pending (`kvm_request_pending()`).
    pub(crate) fn pending(&self) -> bool {
        self.0.load(Ordering::Acquire) != 0
    }

    /// Whether `req` is pending, without consuming it (`kvm_test_request()`).
    pub(crate) fn test(&self, req: Request) -> bool {
        self.0.load(Ordering::Acquire) & req.bit() != 0
    }

    /// Consumes `req`: true if it was pending (`kvm_check_request()`).
    pub(crate) fn check(&self, req: Request) -> bool {
        // Cheap test first, as upstream: most run-loop checks find nothing.
        if !self.test(req) {
            return false;
        }
        self.0.fetch_and(!req.bit(), Ordering::AcqRel) & req.bit() != 0
    }

    /// Drops every pending request (vCPU reset).
    // vCPU reset (arm64 PSCI CPU_ON, riscv64 SBI HSM) will use it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn request_numbers_fit_the_bitmap() {
        assert_eq!(Request::new(0), Some(REQ_TLB_FLUSH));
        assert_eq!(Request::new(63).map(|r| r.bit()), Some(1 << 63));
        assert_eq!(Request::new(64), None);
        assert_eq!(Request::new(u32::MAX), None);
    }

    #[test]
    fn make_then_check_consumes_once() {
        let r = Requests::new();
        assert!(!r.pending());
        assert!(!r.check(REQ_VM_DEAD));
        r.make(REQ_VM_DEAD);
        r.make(REQ_VM_DEAD);
        assert!(r.pending());
        assert!(r.test(REQ_VM_DEAD));
        assert!(!r.test(REQ_UNBLOCK));
        assert!(r.check(REQ_VM_DEAD));
        assert!(!r.check(REQ_VM_DEAD));
        assert!(!r.pending());
    }

    #[test]
    fn requests_are_independent_and_clear_drops_all() {
        let r = Requests::default();
        r.make(REQ_TLB_FLUSH);
        r.make(REQ_UNBLOCK);
        assert!(r.check(REQ_UNBLOCK));
        assert!(r.pending());
        assert!(r.test(REQ_TLB_FLUSH));
        r.make(REQ_UNBLOCK);
        r.clear();
        assert!(!r.pending());
    }

    #[test]
    fn concurrent_makers_lose_nothing() {
        let r = Requests::new();
        std::thread::scope(|s| {
            for nr in 0..8 {
                let r = &r;
                s.spawn(move || {
                    if let Some(req) = Request::new(nr) {
                        r.make(req);
                    }
                });
            }
        });
        for nr in 0..8 {
            assert_eq!(Request::new(nr).map(|q| r.check(q)), Some(true));
        }
        assert!(!r.pending());
    }
}
