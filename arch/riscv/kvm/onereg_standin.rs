// SPDX-License-Identifier: GPL-2.0

//! STAND-IN for branch `rvregs` (riscv ONE_REG/REG_LIST): only the core
//! registers (`KVM_REG_RISCV_CORE`: pc, x1-x31, mode) and the general CSRs
//! (`KVM_REG_RISCV_CSR` subtype 0: `struct kvm_riscv_csr`), get and set,
//! so that the run loop can be tested with the upstream selftests before
//! `rvregs` merges. Not listed by `KVM_GET_REG_LIST`. Drop this file (and
//! its two call sites in `mod.rs`) when `rvregs` merges.

use super::{
    regs::VcpuRegs,
    run::VSSIP, //
};
use crate::kvm::{abi::Errno, one_reg::reg_size};
use kernel::uapi;

/// `KVM_REG_RISCV_TYPE_MASK` and the two types served here.
const TYPE_MASK: u64 = uapi::KVM_REG_RISCV_TYPE_MASK as u64;
const TYPE_CORE: u64 = uapi::KVM_REG_RISCV_CORE as u64;
const TYPE_CSR: u64 = uapi::KVM_REG_RISCV_CSR as u64;
/// `KVM_REG_RISCV_SUBTYPE_MASK`.
const SUBTYPE_MASK: u64 = uapi::KVM_REG_RISCV_SUBTYPE_MASK as u64;

/// The register number of `id` (type and subtype bits removed).
fn number(id: u64) -> u64 {
    id & !((uapi::KVM_REG_ARCH_MASK as u64) | uapi::KVM_REG_SIZE_MASK | TYPE_MASK | SUBTYPE_MASK)
}

/// Whether this stand-in serves `id`.
pub(crate) fn serves(id: u64) -> bool {
    let ty = id & TYPE_MASK;
    ty == TYPE_CORE || (ty == TYPE_CSR && id & SUBTYPE_MASK == 0)
}

/// `KVM_GET_ONE_REG` of a core or general CSR register.
pub(crate) fn get(regs: &VcpuRegs, id: u64) -> Result<u64, Errno> {
    if reg_size(id) != 8 {
        return Err(Errno::EINVAL);
    }
    let n = number(id);
    let c = &regs.csrs;
    if id & TYPE_MASK == TYPE_CORE {
        return match n {
            0 => Ok(regs.core.sepc),
            1..=31 => regs.core.x.get(n as usize).copied().ok_or(Errno::ENOENT),
            32 => Ok(regs.core.mode()),
            _ => Err(Errno::ENOENT),
        };
    }
    Ok(match n {
        0 => c.vsstatus,
        1 => c.vsie,
        2 => c.vstvec,
        3 => c.vsscratch,
        4 => c.vsepc,
        5 => c.vscause,
        6 => c.vstval,
        7 => (c.hvip >> 1) & (VSSIP >> 1 | 1 << 5 | 1 << 9),
        8 => c.vsatp,
        9 => c.scounteren,
        10 => c.senvcfg,
        _ => return Err(Errno::ENOENT),
    })
}

/// `KVM_SET_ONE_REG` of a core or general CSR register.
pub(crate) fn set(regs: &mut VcpuRegs, id: u64, value: u64) -> Result<(), Errno> {
    if reg_size(id) != 8 {
        return Err(Errno::EINVAL);
    }
    let n = number(id);
    if id & TYPE_MASK == TYPE_CORE {
        return match n {
            0 => {
                regs.core.sepc = value;
                Ok(())
            }
            1..=31 => {
                let slot = regs.core.x.get_mut(n as usize).ok_or(Errno::ENOENT)?;
                *slot = value;
                Ok(())
            }
            32 => {
                if regs.core.set_mode(value) {
                    Ok(())
                } else {
                    Err(Errno::EINVAL)
                }
            }
            _ => Err(Errno::ENOENT),
        };
    }
    let c = &mut regs.csrs;
    match n {
        0 => c.vsstatus = value,
        1 => c.vsie = value,
        2 => c.vstvec = value,
        3 => c.vsscratch = value,
        4 => c.vsepc = value,
        5 => c.vscause = value,
        6 => c.vstval = value,
        7 => c.hvip = (value << 1) & (VSSIP | 1 << 6 | 1 << 10),
        8 => c.vsatp = value,
        9 => c.scounteren = value,
        10 => c.senvcfg = value,
        _ => return Err(Errno::ENOENT),
    }
    Ok(())
}
