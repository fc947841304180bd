// SPDX-License-Identifier: GPL-2.0

//! The generic KVM core (upstream's `virt/kvm/`), independent of the
//! architecture.
//!
//! Everything that differs between riscv64 and arm64 is behind the
//! [`arch::Arch`] trait, implemented by `crate::arch::Host`.

pub(crate) mod abi;
pub(crate) mod arch;
mod dev;

pub(crate) use dev::KvmModule;
