// SPDX-License-Identifier: GPL-2.0

//! Decoding the exception syndromes of guest exits (`ESR_EL2`, upstream's
//! `kvm_vcpu_dabt_*()`, `esr_sys64_to_params()`), MMIO load completion
//! (`kvm_handle_mmio_return()`) and the syndrome of injected exceptions.
//!
//! Pure logic (`core` only), tested on the host.

use super::regs::Enc;

/// `ESR_ELx.EC`.
pub(crate) const fn ec(esr: u64) -> u32 {
    ((esr >> 26) & 0x3f) as u32
}

/// `ESR_ELx.IL`: a 32-bit instruction.
pub(crate) const fn il32(esr: u64) -> bool {
    esr & (1 << 25) != 0
}

pub(crate) const EC_WFX: u32 = 0x01;
pub(crate) const EC_HVC64: u32 = 0x16;
pub(crate) const EC_SMC64: u32 = 0x17;
pub(crate) const EC_SYS64: u32 = 0x18;
pub(crate) const EC_IABT_LOW: u32 = 0x20;
pub(crate) const EC_DABT_LOW: u32 = 0x24;

/// A data or instruction abort's syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Abort {
    /// `ISV`: the access fields below are valid.
    pub(crate) isv: bool,
    /// Access size in bytes (`1 << SAS`).
    pub(crate) len: u32,
    /// `SSE`: sign-extend a load.
    pub(crate) sign_extend: bool,
    /// `SRT`: the transfer register (31: `xzr`).
    pub(crate) rt: u8,
    /// `SF`: a 64-bit register.
    pub(crate) sixty_four: bool,
    /// `WnR`: a write (for `S1PTW` faults: the walk wrote).
    pub(crate) write: bool,
    /// `S1PTW`: the fault was on the guest's stage-1 walk.
    pub(crate) s1ptw: bool,
    /// `CM`: a cache maintenance instruction.
    pub(crate) cm: bool,
    /// `DFSC`/`IFSC`.
    pub(crate) fsc: u8,
}

impl Abort {
    /// Decodes the ISS of `esr`.
    pub(crate) const fn decode(esr: u64) -> Abort {
        Abort {
            isv: esr & (1 << 24) != 0,
            len: 1 << ((esr >> 22) & 3),
            sign_extend: esr & (1 << 21) != 0,
            rt: ((esr >> 16) & 0x1f) as u8,
            sixty_four: esr & (1 << 15) != 0,
            write: esr & (1 << 6) != 0,
            s1ptw: esr & (1 << 7) != 0,
            cm: esr & (1 << 8) != 0,
            fsc: (esr & 0x3f) as u8,
        }
    }

    /// A translation fault (levels 0-3, or -1 with LPA2).
    pub(crate) const fn is_translation(&self) -> bool {
        (self.fsc & 0x3c) == 0x04 || self.fsc == 0x2b
    }

    /// An access flag fault.
    pub(crate) const fn is_access_flag(&self) -> bool {
        (self.fsc & 0x3c) == 0x08
    }

    /// A permission fault.
    pub(crate) const fn is_permission(&self) -> bool {
        (self.fsc & 0x3c) == 0x0c
    }

    /// An address size fault.
    pub(crate) const fn is_addr_size(&self) -> bool {
        (self.fsc & 0x3c) == 0x00 || self.fsc == 0x29
    }

    /// Whether the access writes (`kvm_is_write_fault()`): a stage-1 walk
    /// only on a permission fault (the walker updating the access or dirty
    /// flag; page tables in a read-only slot must stay readable), an
    /// instruction fetch or cache maintenance never.
    pub(crate) const fn is_write_fault(&self, iabt: bool) -> bool {
        if self.s1ptw {
            return self.is_permission();
        }
        if iabt {
            return false;
        }
        !self.cm && self.write
    }

    /// `kvm_vcpu_dabt_iss_nisv_sanitized()`: the ISS bits userspace sees in
    /// `KVM_EXIT_ARM_NISV` (`ESR_ELx_CM | ESR_ELx_WNR | ESR_ELx_FSC`).
    pub(crate) const fn nisv_iss(esr: u64) -> u64 {
        esr & ((1 << 8) | (1 << 6) | 0x3f)
    }

    /// The value a completed MMIO load of `data` (`len` bytes, in the
    /// guest's data endianness: `be`) writes to the register
    /// (`kvm_handle_mmio_return()`: byte order first, then sign extension
    /// and the 32-bit truncation).
    pub(crate) fn load_value(&self, data: &[u8; 8], be: bool) -> u64 {
        let len = (self.len as usize).min(8);
        let mut b = [0u8; 8];
        for (i, d) in b.iter_mut().enumerate().take(len) {
            let src = if be { len - 1 - i } else { i };
            *d = data.get(src).copied().unwrap_or(0);
        }
        let mut v = u64::from_le_bytes(b);
        if self.sign_extend && len < 8 {
            let mask = 1u64 << (len * 8 - 1);
            v = (v ^ mask).wrapping_sub(mask);
        }
        if !self.sixty_four {
            v &= 0xffff_ffff;
        }
        v
    }
}

/// The bytes of an MMIO store of register value `val`, `len` bytes in the
/// guest's data endianness (`vcpu_data_guest_to_host()` then
/// `kvm_mmio_write_buf()`).
pub(crate) fn store_bytes(val: u64, len: u32, be: bool) -> [u8; 8] {
    let le = val.to_le_bytes();
    if !be {
        return le;
    }
    let len = (len as usize).min(8);
    let mut b = [0u8; 8];
    for (i, d) in b.iter_mut().enumerate().take(len) {
        *d = le.get(len - 1 - i).copied().unwrap_or(0);
    }
    b
}

/// A trapped `MSR`/`MRS` (EC 0x18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SysAccess {
    /// The register.
    pub(crate) enc: Enc,
    /// The transfer register (31: `xzr`).
    pub(crate) rt: u8,
    /// `MRS` (a read).
    pub(crate) read: bool,
}

impl SysAccess {
    /// `esr_sys64_to_params()`.
    pub(crate) const fn decode(esr: u64) -> SysAccess {
        let op0 = ((esr >> 20) & 3) as u8;
        let op2 = ((esr >> 17) & 7) as u8;
        let op1 = ((esr >> 14) & 7) as u8;
        let crn = ((esr >> 10) & 0xf) as u8;
        let crm = ((esr >> 1) & 0xf) as u8;
        SysAccess { enc: Enc::new(op0, op1, crn, crm, op2), rt: ((esr >> 5) & 0x1f) as u8, read: esr & 1 != 0 }
    }
}

/// The PC offset of an exception vector entry for an exception taken to
/// EL1 from a guest in `pstate` (`get_except_vector()`): current EL with
/// `SP_EL0` (0x000), current EL with `SP_EL1` (0x200), lower EL AArch64
/// (0x400), lower EL AArch32 (0x600); synchronous exceptions are at +0.
pub(crate) const fn vector_offset(pstate: u64) -> u64 {
    match pstate & 0x1f {
        0x04 => 0x000,
        0x05 => 0x200,
        m if m & 0x10 != 0 => 0x600,
        _ => 0x400,
    }
}

/// The PSTATE an exception taken to EL1 starts with (`enter_exception64()`
/// simplified): EL1h, every exception masked.
pub(crate) const EXCEPTION_PSTATE: u64 = 0x3c5;

/// `ESR_EL1` of an injected undefined instruction (`inject_undef64()`):
/// EC 0 with IL.
pub(crate) const fn undef_esr(il32: bool) -> u64 {
    if il32 {
        1 << 25
    } else {
        0
    }
}

/// `ESR_EL1` of an injected external abort (`inject_abt64()`): an
/// instruction or data abort from the guest's current or lower EL, with
/// the external abort status code.
pub(crate) const fn abort_esr(iabt: bool, from_el0: bool, il32: bool) -> u64 {
    let ec: u64 = match (iabt, from_el0) {
        (true, true) => 0x20,
        (true, false) => 0x21,
        (false, true) => 0x24,
        (false, false) => 0x25,
    };
    let il = if il32 { 1 << 25 } else { 0 };
    (ec << 26) | il | 0x10
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn data_abort_fields() {
        // ldrsh w3, [x1] on MMIO: ISV, SAS 1, SSE, SRT 3, !SF, read,
        // translation fault level 3.
        let esr = (0x24u64 << 26) | 1 << 25 | 1 << 24 | 1 << 22 | 1 << 21 | 3 << 16 | 0x07;
        let a = Abort::decode(esr);
        assert_eq!(ec(esr), EC_DABT_LOW);
        assert!(il32(esr));
        assert!(a.isv && a.sign_extend && !a.sixty_four && !a.write);
        assert_eq!((a.len, a.rt, a.fsc), (2, 3, 7));
        assert!(a.is_translation() && !a.is_permission() && !a.is_access_flag());
        assert_eq!(a.load_value(&[0x00, 0x80, 0xff, 0xff, 0, 0, 0, 0], false), 0xffff_8000);
        let a = Abort { sixty_four: true, ..a };
        assert_eq!(a.load_value(&[0x00, 0x80, 0, 0, 0, 0, 0, 0], false), 0xffff_ffff_ffff_8000);
        // Big-endian data: swapped before the sign extension.
        assert_eq!(a.load_value(&[0x80, 0x01, 0, 0, 0, 0, 0, 0], true), 0xffff_ffff_ffff_8001);
        assert_eq!(a.load_value(&[0x7f, 0xff, 0, 0, 0, 0, 0, 0], true), 0x7fff);
        let a = Abort { sign_extend: false, ..a };
        assert_eq!(a.load_value(&[0x00, 0x80, 0x12, 0, 0, 0, 0, 0], false), 0x8000);
        let a = Abort { len: 8, sign_extend: true, ..a };
        assert_eq!(a.load_value(&[1, 2, 3, 4, 5, 6, 7, 0x88], false), 0x8807_0605_0403_0201);
        let a = Abort { len: 1, sixty_four: false, ..a };
        assert_eq!(a.load_value(&[0xfe, 2, 3, 4, 5, 6, 7, 8], false), 0xffff_fffe);
        // Writes, walks and cache maintenance.
        let w = Abort::decode(1 << 24 | 3 << 22 | 1 << 15 | 1 << 6 | 0x0f);
        assert!(w.write && w.is_permission() && w.is_write_fault(false) && !w.is_write_fault(true));
        assert_eq!(w.len, 8);
        // A walk writes only on a permission fault.
        assert!(Abort::decode(1 << 7 | 0x0f).is_write_fault(false));
        assert!(Abort::decode(1 << 7 | 0x0f).is_write_fault(true));
        assert!(!Abort::decode(1 << 7 | 0x07).is_write_fault(false));
        assert_eq!(store_bytes(0x1122_3344, 2, true), [0x33, 0x44, 0, 0, 0, 0, 0, 0]);
        assert_eq!(store_bytes(0x1122_3344, 2, false), [0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0]);
        assert!(!Abort::decode(1 << 8 | 1 << 6 | 0x07).is_write_fault(false));
        assert!(Abort::decode(0x09).is_access_flag());
        assert!(Abort::decode(0x02).is_addr_size());
        assert_eq!(Abort::nisv_iss(0xffff_ffff), (1 << 8) | (1 << 6) | 0x3f);
    }

    #[test]
    fn sysreg_access_fields() {
        // mrs x5, id_aa64pfr0_el1 (3, 0, 0, 4, 0).
        let esr = (0x18u64 << 26) | 1 << 25 | 3 << 20 | 0 << 17 | 0 << 14 | 0 << 10 | 5 << 5 | 4 << 1 | 1;
        let s = SysAccess::decode(esr);
        assert_eq!(s.enc, Enc::new(3, 0, 0, 4, 0));
        assert_eq!((s.rt, s.read), (5, true));
        // msr actlr_el1, x30 (3, 0, 1, 0, 1).
        let esr = 3 << 20 | 1 << 17 | 1 << 10 | 30 << 5;
        let s = SysAccess::decode(esr);
        assert_eq!(s.enc, Enc::new(3, 0, 1, 0, 1));
        assert_eq!((s.rt, s.read), (30, false));
    }

    #[test]
    fn injection_syndromes_and_vectors() {
        assert_eq!(vector_offset(0x3c5), 0x200);
        assert_eq!(vector_offset(0x3c4), 0x000);
        assert_eq!(vector_offset(0x0), 0x400);
        assert_eq!(vector_offset(0x10), 0x600);
        assert_eq!(undef_esr(true), 0x0200_0000);
        assert_eq!(abort_esr(true, false, true), 0x21 << 26 | 1 << 25 | 0x10);
        assert_eq!(abort_esr(false, true, false), 0x24 << 26 | 0x10);
    }
}
