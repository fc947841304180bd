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

/// The kernel crate reaches the generic core as `crate::kvm`; the arch
/// files use that path.
mod kvm {
    pub(crate) use super::abi;
}

#[path = "../../../arch/riscv/kvm/gstage.rs"]
pub mod gstage;

#[path = "../../../arch/riscv/kvm/vmid.rs"]
pub mod vmid;
