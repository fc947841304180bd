// SPDX-License-Identifier: GPL-2.0

//! kvm_rs: a KVM backend in Rust.
//!
//! The crate is laid out like the kernel tree it extends:
//!
//! - `virt/kvm/` is the generic core. It knows no architecture: everything
//!   arch-specific is reached through [`kvm::arch::Arch`].
//! - `arch/riscv/kvm/` and `arch/arm64/kvm/` implement that trait; exactly one
//!   of them is compiled, chosen by the kernel configuration.

use kernel::prelude::*;

#[path = "virt/kvm/mod.rs"]
mod kvm;

#[cfg(CONFIG_RISCV)]
#[path = "arch/riscv/kvm/mod.rs"]
mod arch;

#[cfg(CONFIG_ARM64)]
#[path = "arch/arm64/kvm/mod.rs"]
mod arch;

module! {
    type: kvm::KvmModule,
    name: "kvm_rs",
    authors: ["kvm-rs developers"],
    description: "KVM backend in Rust",
    license: "GPL",
    alias: ["devname:kvm", "char-major-10-232"],
    params: {
        vmid_bits: u32 {
            default: 14,
            description: "riscv64 debug: use at most this many VMID bits (0: no VMIDs; default 14, all hgatp has)",
        },
    },
}
