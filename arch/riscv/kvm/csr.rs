// SPDX-License-Identifier: GPL-2.0

//! Hypervisor CSR access for the riscv64 backend.

use kernel::bindings;

/// CSR number of `hstatus`.
const CSR_HSTATUS: u32 = 0x600;
/// `hstatus.SPV`: the trap came from a virtualized mode.
pub(crate) const HSTATUS_SPV: u64 = 1 << 7;
/// Position of `hstatus.VSXL` (2 bits).
const HSTATUS_VSXL_SHIFT: u32 = 32;

/// `RISCV_ISA_EXT_h` from `<asm/hwcap.h>`: single-letter extensions are
/// numbered by their letter (`'h' - 'a'`).
const RISCV_ISA_EXT_H: u32 = (b'h' - b'a') as u32;

/// Returns whether every hart of this host implements the H extension.
pub(crate) fn has_h_extension() -> bool {
    // SAFETY: A null ISA bitmap selects the host-wide ISA, which the arch code
    // set up at boot; the function only reads it.
    unsafe { bindings::__riscv_isa_extension_available(core::ptr::null(), RISCV_ISA_EXT_H) }
}

/// Reads `hstatus`.
///
/// Only call this when [`has_h_extension`] is true: without the H extension
/// the CSR does not exist and the read traps.
pub(crate) fn hstatus() -> u64 {
    let value: u64;
    // SAFETY: Reading hstatus has no side effects. The kernel runs in HS-mode
    // when the H extension is present, which callers check first.
    unsafe {
        core::arch::asm!("csrr {0}, {csr}", out(reg) value, csr = const CSR_HSTATUS,
                         options(nomem, nostack, preserves_flags));
    }
    value
}

/// Extracts `hstatus.VSXL`: 1 = 32-bit, 2 = 64-bit VS-mode.
pub(crate) fn hstatus_vsxl(hstatus: u64) -> u64 {
    (hstatus >> HSTATUS_VSXL_SHIFT) & 0x3
}
