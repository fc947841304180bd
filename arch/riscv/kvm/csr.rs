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

/// CSR number of `hgatp`.
const CSR_HGATP: u32 = 0x680;
/// Position of `hgatp.MODE` (4 bits).
const HGATP_MODE_SHIFT: u32 = 60;
/// `hgatp.MODE` of Sv39x4, Sv48x4 and Sv57x4, with their page-table levels.
const HGATP_MODES: [(u64, u32); 3] = [(10, 5), (9, 4), (8, 3)];

/// `kvm_riscv_gstage_mode_detect()`: the page-table levels of the deepest
/// G-stage mode this hart implements (5 = Sv57x4, 4 = Sv48x4, 3 = Sv39x4),
/// or `None` if it implements none. `hgatp` is left 0 and the G-stage TLB
/// flushed, as upstream does.
///
/// Only call this when [`has_h_extension`] is true, with interrupts off (so
/// that the write and the read happen on the same hart).
pub(crate) fn detect_gstage_levels() -> Option<u32> {
    let mut found = None;
    for (mode, levels) in HGATP_MODES {
        let value: u64;
        // SAFETY: With the H extension, hgatp only affects guest (VS/VU)
        // translations, and no guest runs on this hart: writing a mode with
        // a zero root is harmless. WARL: an unsupported mode reads back as
        // something else. Interrupts are off, so we stay on this hart.
        unsafe {
            core::arch::asm!("csrw {csr}, {v}", "csrr {out}, {csr}",
                             csr = const CSR_HGATP, v = in(reg) mode << HGATP_MODE_SHIFT,
                             out = out(reg) value, options(nostack));
        }
        if value >> HGATP_MODE_SHIFT == mode {
            found = Some(levels);
            break;
        }
    }
    // SAFETY: As above; then flush every G-stage TLB entry of this hart
    // (`hfence.gvma zero, zero`, encoded as upstream's HFENCE_GVMA()).
    unsafe {
        core::arch::asm!("csrw {csr}, zero", ".insn r 0x73, 0, 0x31, x0, x0, x0",
                         csr = const CSR_HGATP, options(nostack));
    }
    found
}

/// `hgatp.VMID` (bits 57:44).
const HGATP_VMID: u64 = 0x3fff << 44;

/// `kvm_riscv_gstage_vmid_detect()`: writes all-ones to `hgatp.VMID` and
/// returns what reads back (the caller counts the bits with
/// `vmid::probe_bits`). As upstream, MODE is the deepest G-stage mode the
/// hart has (`levels`, from [`detect_gstage_levels`]) with a zero root: with
/// MODE Bare an implementation may ignore the other fields. `hgatp` is left
/// 0 and the G-stage TLB flushed.
///
/// Only call this when [`has_h_extension`] is true, with interrupts off.
pub(crate) fn probe_hgatp_vmid(levels: u32) -> u64 {
    let mode = HGATP_MODES.iter().find(|&&(_, l)| l == levels).map_or(0, |&(m, _)| m);
    let value: u64;
    // SAFETY: As in `detect_gstage_levels`: no guest runs on this hart, so
    // pointing hgatp at a zero root for a moment is harmless; the write is
    // WARL. Interrupts are off, so we stay on this hart. Then hgatp is
    // cleared and the G-stage TLB of the hart flushed.
    unsafe {
        core::arch::asm!("csrw {csr}, {v}", "csrr {out}, {csr}", "csrw {csr}, zero",
                         ".insn r 0x73, 0, 0x31, x0, x0, x0",
                         csr = const CSR_HGATP, v = in(reg) (mode << HGATP_MODE_SHIFT) | HGATP_VMID,
                         out = out(reg) value, options(nostack));
    }
    value
}

/// `hfence.gvma x0, x0`: flushes every G-stage (and guest) TLB entry of
/// this hart (`kvm_riscv_local_hfence_gvma_all()`).
pub(crate) fn hfence_gvma_all() {
    // SAFETY: A fence has no effect but on TLB contents; the kernel runs in
    // HS-mode, where HFENCE.GVMA is allowed (hstatus.VTVM only affects
    // VS-mode). The "memory" clobber (no `nomem`) orders it after earlier
    // page-table writes.
    unsafe {
        core::arch::asm!(".insn r 0x73, 0, 0x31, x0, x0, x0", options(nostack));
    }
}

/// `hfence.gvma x0, vmid`: flushes this hart's entries of `vmid`
/// (`kvm_riscv_local_hfence_gvma_vmid_all()`).
pub(crate) fn hfence_gvma_vmid(vmid: u64) {
    // SAFETY: As in `hfence_gvma_all`.
    unsafe {
        core::arch::asm!(".insn r 0x73, 0, 0x31, x0, x0, {vmid}", vmid = in(reg) vmid,
                         options(nostack));
    }
}

/// `hfence.gvma gpa >> 2, vmid`: flushes this hart's leaf entries of `vmid`
/// that translate `gpa` (one step of
/// `kvm_riscv_local_hfence_gvma_vmid_gpa()`).
pub(crate) fn hfence_gvma_vmid_gpa(gpa: u64, vmid: u64) {
    // SAFETY: As in `hfence_gvma_all`.
    unsafe {
        core::arch::asm!(".insn r 0x73, 0, 0x31, x0, {gpa}, {vmid}", gpa = in(reg) gpa >> 2,
                         vmid = in(reg) vmid, options(nostack));
    }
}
