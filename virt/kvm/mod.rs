// SPDX-License-Identifier: GPL-2.0

//! The generic KVM core (upstream's `virt/kvm/`), independent of the
//! architecture.
//!
//! Everything that differs between riscv64 and arm64 is behind the
//! [`arch::Arch`] trait, implemented by `crate::arch::Host`.
//!
//! Two kinds of files live here:
//!
//! - pure logic, built from `core` only and also tested on the host with
//!   `cargo test` (`tools/testing/host`): [`abi`], [`storage`], [`memslot`],
//!   [`dirty_log`], [`mmu_invalidate`], [`stats`], [`vm_limits`],
//!   [`requests`], [`ioeventfd`], [`coalesced_mmio`], [`slot_index`],
//!   [`irqfd`], [`device`],
//!   [`one_reg`];
//! - the kernel glue that turns them into file descriptors: [`dev`]
//!   (`/dev/kvm`), [`vm`] (VM fd), [`vcpu`] (vCPU fd), [`stats_fd`] (binary
//!   statistics fds), [`kalloc`] (the kernel's [`storage::Alloc`]),
//!   [`eventfd`] (eventfd references, `KVM_IRQFD`), [`device_fd`]
//!   (`KVM_CREATE_DEVICE` and device fds), [`mmu`] (`mmu_lock`, the MMU
//!   notifier, stage-2 fault resolution), [`virt_cpu`] (per-CPU
//!   enable/disable across hotplug, suspend and shutdown) and [`uapi`] (the
//!   ioctl argument structures).

pub(crate) mod abi;
pub(crate) mod arch;
pub(crate) mod coalesced_mmio;
mod dev;
pub(crate) mod device;
pub(crate) mod device_fd;
pub(crate) mod dirty_log;
mod eventfd;
pub(crate) mod ioeventfd;
pub(crate) mod irqfd;
mod kalloc;
mod kunit;
pub(crate) mod memslot;
pub(crate) mod mmu;
pub(crate) mod mmu_invalidate;
pub(crate) mod one_reg;
pub(crate) mod requests;
pub(crate) mod slot_index;
pub(crate) mod stats;
mod stats_fd;
pub(crate) mod storage;
pub(crate) mod uapi;
pub(crate) mod vcpu;
pub(crate) mod vm;
mod virt_cpu;
pub(crate) mod vm_limits;

pub(crate) use dev::KvmModule;
