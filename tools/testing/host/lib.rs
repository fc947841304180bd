// SPDX-License-Identifier: GPL-2.0

//! Builds the pure-logic files of kvm_rs on the host, so their `#[cfg(test)]`
//! tests run with `cargo test`, no kernel needed. Each file here is the very
//! file compiled into kvm_rs.ko.

#![allow(dead_code)]

#[path = "../../../virt/kvm/abi.rs"]
pub mod abi;

#[path = "../../../virt/kvm/storage.rs"]
pub mod storage;

#[path = "../../../virt/kvm/memslot.rs"]
pub mod memslot;

#[path = "../../../virt/kvm/dirty_log.rs"]
pub mod dirty_log;

#[path = "../../../virt/kvm/slot_index.rs"]
pub mod slot_index;

#[path = "../../../virt/kvm/mmu_invalidate.rs"]
pub mod mmu_invalidate;

#[path = "../../../virt/kvm/stats.rs"]
pub mod stats;

#[path = "../../../virt/kvm/vm_limits.rs"]
pub mod vm_limits;

#[path = "../../../virt/kvm/requests.rs"]
pub mod requests;

#[path = "../../../virt/kvm/ioeventfd.rs"]
pub mod ioeventfd;

#[path = "../../../virt/kvm/coalesced_mmio.rs"]
pub mod coalesced_mmio;

#[path = "../../../virt/kvm/irqfd.rs"]
pub mod irqfd;

#[path = "../../../virt/kvm/device.rs"]
pub mod device;

#[path = "../../../virt/kvm/one_reg.rs"]
pub mod one_reg;

/// The arm64 backend's pure files (the module's path is their directory),
/// with the generic modules they use (`super::abi`, `super::one_reg`) where
/// the kernel crate has them too.
#[path = "../../../arch/arm64/kvm"]
pub mod arm64 {
    pub use crate::abi;
    pub use crate::one_reg;

    pub mod esr;
    pub mod ftr_tables;
    pub mod hypercalls;
    pub mod idregs;
    pub mod pgtable;
    pub mod regs;
    pub mod state;
    pub mod sysregs;
}

/// The kernel crate's module path `crate::kvm`, for the arch files that
/// name the generic core that way.
pub mod kvm {
    pub use super::abi;
    pub use super::one_reg;
}

/// The riscv64 backend's pure-logic files (`arch/riscv/kvm/`), listed in
/// `riscv.rs`.
pub mod riscv;
