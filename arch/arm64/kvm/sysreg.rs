// SPDX-License-Identifier: GPL-2.0

//! EL2 system register access for the arm64 backend.

/// `HCR_EL2.E2H`: EL2 host (VHE).
pub(crate) const HCR_E2H: u64 = 1 << 34;
/// `HCR_EL2.TGE`: trap general exceptions (host EL0 runs under EL2).
pub(crate) const HCR_TGE: u64 = 1 << 27;

/// Returns the current exception level (0 to 3).
pub(crate) fn current_el() -> u64 {
    let value: u64;
    // SAFETY: CurrentEL is readable at EL1 and above and has no side effects.
    unsafe {
        core::arch::asm!("mrs {0}, CurrentEL", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    (value >> 2) & 0x3
}

/// Reads `HCR_EL2`.
///
/// Only call this when [`current_el`] is 2: at EL1 the access is undefined.
pub(crate) fn hcr_el2() -> u64 {
    let value: u64;
    // SAFETY: Reading HCR_EL2 has no side effects; callers check that the
    // kernel runs at EL2, where the register is accessible.
    unsafe {
        core::arch::asm!("mrs {0}, hcr_el2", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// Reads `ID_AA64MMFR0_EL1` (memory model features: PARange, granules).
pub(crate) fn id_aa64mmfr0_el1() -> u64 {
    let value: u64;
    // SAFETY: ID registers are readable at EL1 and above and have no side
    // effects.
    unsafe {
        core::arch::asm!("mrs {0}, id_aa64mmfr0_el1", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// `ID_AA64MMFR0_EL1.PARange` (bits 3:0) to physical address bits
/// (`id_aa64mmfr0_parange_to_phys_shift()`); `None` for a reserved value.
pub(crate) fn parange_bits(mmfr0: u64) -> Option<u32> {
    match mmfr0 & 0xf {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        _ => None,
    }
}

/// Reads a system register that is readable at EL2 and has no side effects.
macro_rules! read_sysreg {
    ($(#[$m:meta])* $name:ident, $reg:literal) => {
        $(#[$m])*
        pub(crate) fn $name() -> u64 {
            let value: u64;
            // SAFETY: The register is readable at EL1 and EL2, where the
            // kernel runs (`probe()` checked EL2), and reading it has no
            // side effects.
            unsafe {
                core::arch::asm!(concat!("mrs {0}, ", $reg), out(reg) value, options(nomem, nostack, preserves_flags));
            }
            value
        }
    };
}

read_sysreg!(
    /// `MIDR_EL1` of the current CPU.
    midr_el1, "midr_el1"
);
read_sysreg!(
    /// `REVIDR_EL1` of the current CPU.
    revidr_el1, "revidr_el1"
);
read_sysreg!(
    /// `AIDR_EL1` of the current CPU.
    aidr_el1, "aidr_el1"
);
read_sysreg!(
    /// `ACTLR_EL1` as read at EL2, as upstream's `reset_actlr()` does.
    actlr_el1, "actlr_el1"
);
read_sysreg!(
    /// `AMAIR_EL1` as read at EL2 (with `HCR_EL2.E2H` this is `AMAIR_EL2`),
    /// as upstream's `reset_amair_el1()` does.
    amair_el1, "amair_el1"
);

read_sysreg!(
    /// `VTTBR_EL2`.
    read_vttbr_el2, "vttbr_el2"
);
read_sysreg!(
    /// `ID_AA64MMFR1_EL1` (VMID bits, hardware access flag).
    id_aa64mmfr1_el1, "id_aa64mmfr1_el1"
);
read_sysreg!(
    /// `ID_AA64MMFR2_EL1` (stage-2 forced write-back).
    id_aa64mmfr2_el1, "id_aa64mmfr2_el1"
);
read_sysreg!(
    /// `CNTVCT_EL0` as the host sees it (no offset with `TGE` set).
    cntvct_el0, "cntvct_el0"
);
read_sysreg!(
    /// `CNTFRQ_EL0`.
    cntfrq_el0, "cntfrq_el0"
);
read_sysreg!(
    /// `ID_AA64MMFR3_EL1` (TCR2, SCTLR2, S1PIE, S1POE).
    id_aa64mmfr3_el1, "s3_0_c0_c7_3"
);
