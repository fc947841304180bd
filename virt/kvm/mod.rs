// SPDX-License-Identifier: GPL-2.0

//! The generic KVM core (upstream's `virt/kvm/`), independent of the
//! architecture.
//!
//! Everything that differs between riscv64 and arm64 is behind the
//! [`arch::Arch`] trait, implemented by `crate::arch::Host`.

pub(crate) mod abi;
pub(crate) mod arch;
mod dev;
// Pure logic (also built and tested on the host, tools/testing/host); the
// kernel-side glue that uses it comes with the VM and vCPU file descriptors.
mod dirty_log;
mod memslot;
mod mmu_invalidate;
mod stats;
pub(crate) mod storage;
mod vm_limits;

pub(crate) use dev::KvmModule;
