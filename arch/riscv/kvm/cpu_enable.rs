// SPDX-License-Identifier: GPL-2.0

//! Turning a hart's hypervisor CSRs on and off (`kvm_riscv_csr_init()` and
//! `kvm_riscv_csr_cleanup()` of upstream `arch/riscv/kvm/main.c`).
//!
//! Exception and interrupt delegation to VS-mode (`hedeleg`, `hideleg`) is a
//! per-vCPU setting written at every vCPU load, so the per-hart state here
//! is only: nothing delegated, VS may read only the `time` counter
//! directly, no virtual interrupt pending.

/// `CSR_VSIE`.
const CSR_VSIE: u32 = 0x204;
/// `CSR_HEDELEG`.
const CSR_HEDELEG: u32 = 0x602;
/// `CSR_HIDELEG`.
const CSR_HIDELEG: u32 = 0x603;
/// `CSR_HCOUNTEREN`.
const CSR_HCOUNTEREN: u32 = 0x606;
/// `CSR_HVIP`.
const CSR_HVIP: u32 = 0x645;
/// `hcounteren.TM`: VS/VU may read `time` without trapping.
const HCOUNTEREN_TM: u64 = 1 << 1;

/// Sets up this hart for guests. Call on the hart itself (a CPU hotplug or
/// resume callback), with the H extension present (checked at load).
pub(crate) fn enable_this_hart() {
    // SAFETY: Hypervisor CSRs only affect guest (V=1) execution, and no
    // guest runs on this hart outside KVM_RUN, which does not run here.
    unsafe {
        core::arch::asm!(
            "csrw {hedeleg}, zero",
            "csrw {hideleg}, zero",
            "csrw {hcounteren}, {tm}",
            "csrw {hvip}, zero",
            hedeleg = const CSR_HEDELEG,
            hideleg = const CSR_HIDELEG,
            hcounteren = const CSR_HCOUNTEREN,
            hvip = const CSR_HVIP,
            tm = in(reg) HCOUNTEREN_TM,
            options(nostack),
        );
    }
}

/// Clears this hart's hypervisor state. `vsie` and `hvip` are cleared
/// before `hideleg`, else a pending virtual interrupt that is still enabled
/// would reach the host as a spurious interrupt.
pub(crate) fn disable_this_hart() {
    // SAFETY: As in `enable_this_hart`; clearing delegation and virtual
    // interrupts cannot affect the host.
    unsafe {
        core::arch::asm!(
            "csrw {vsie}, zero",
            "csrw {hvip}, zero",
            "csrw {hedeleg}, zero",
            "csrw {hideleg}, zero",
            vsie = const CSR_VSIE,
            hvip = const CSR_HVIP,
            hedeleg = const CSR_HEDELEG,
            hideleg = const CSR_HIDELEG,
            options(nostack),
        );
    }
}
