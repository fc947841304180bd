// SPDX-License-Identifier: GPL-2.0

//! The interface between the generic core and an architecture backend.
//!
//! Each method says how riscv64 (`arch/riscv/kvm/`) and arm64
//! (`arch/arm64/kvm/`) implement it. The trait grows with the core: VM and
//! vCPU state, stage-2 MMU and the world switch come with later work.

use kernel::prelude::*;

/// An architecture backend. Implemented by `crate::arch::Host`.
pub(crate) trait Arch {
    /// The architecture's name, as in `uname -m`.
    const NAME: &'static str;

    /// Checks, at module load, that this host can run guests, and logs what
    /// it found. Fails with `ENODEV` when it cannot, as upstream does.
    ///
    /// - riscv64: the H extension must be present; the kernel runs in HS-mode
    ///   and reads `hstatus`.
    /// - arm64: the kernel must run at EL2 with VHE (`HCR_EL2.E2H` set), and
    ///   in-tree KVM must be off (`kvm-arm.mode=none`).
    fn probe() -> Result;

    /// Answer to `KVM_CHECK_EXTENSION` for `cap`: 0 when unsupported.
    ///
    /// Both backends answer 0 for everything until the features behind a
    /// capability exist.
    fn check_extension(cap: usize) -> isize;
}
