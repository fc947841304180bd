// SPDX-License-Identifier: GPL-2.0

//! The riscv64 backend's pure-logic files, as the module `crate::arch` of
//! kvm_rs.ko sees them (siblings, reaching the generic core as
//! `crate::kvm`).

#[path = "../../../arch/riscv/kvm/insn.rs"]
pub mod insn;

#[path = "../../../arch/riscv/kvm/sbi.rs"]
pub mod sbi;

#[path = "../../../arch/riscv/kvm/gstage.rs"]
pub mod gstage;

#[path = "../../../arch/riscv/kvm/vmid.rs"]
pub mod vmid;

#[path = "../../../arch/riscv/kvm/hugemap.rs"]
pub mod hugemap;
#[path = "../../../arch/riscv/kvm/regs.rs"]
pub mod regs;

#[path = "../../../arch/riscv/kvm/isa.rs"]
pub mod isa;

#[path = "../../../arch/riscv/kvm/onereg.rs"]
pub mod onereg;
