// SPDX-License-Identifier: GPL-2.0

//! References to eventfds (`struct eventfd_ctx`), as `KVM_IOEVENTFD` (and
//! later `KVM_IRQFD`) hold them.
//!
//! The kernel crate has no eventfd abstraction yet, so this uses
//! `eventfd_ctx_fdget()` and `eventfd_ctx_put()` from `kernel::bindings`.

use super::{
    abi::Errno,
    dev::to_errno,
};
use core::ptr::NonNull;
use kernel::{
    bindings,
    error::from_err_ptr,
    prelude::*,
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

impl Drop for EventfdCtx {
    fn drop(&mut self) {
        // SAFETY: By the type invariant this value owns one reference on a
        // live context; it is given back exactly once, here.
        unsafe { bindings::eventfd_ctx_put(self.0.as_ptr()) };
    }
}

#[kunit_tests(kvm_rs_eventfd)]
mod tests {
    use super::*;

    #[test]
    fn fdget_of_a_bad_fd_is_ebadf() {
        assert!(matches!(EventfdCtx::fdget(-1), Err(Errno::EBADF)));
        assert!(matches!(EventfdCtx::fdget(i32::MAX), Err(Errno::EBADF)));
    }
}
