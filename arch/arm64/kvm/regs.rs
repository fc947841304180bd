// SPDX-License-Identifier: GPL-2.0

//! arm64 ONE_REG ids (`arch/arm64/include/uapi/asm/kvm.h`) and the core
//! registers (`KVM_REG_ARM_CORE`, `struct kvm_regs`).
//!
//! Pure logic (`core` only), also tested on the host.
//!
//! An arm64 id is `KVM_REG_ARM64 | size | coproc (bits 27:16) | number`.
//! [`RegId::decode`] sorts an id into the namespaces upstream's
//! `kvm_arm_{get,set}_reg()` dispatch on, and [`CoreRegs`] is the state
//! behind `KVM_REG_ARM_CORE`, addressed the way upstream addresses `struct
//! kvm_regs`: as an array of 32-bit words (`KVM_REG_ARM_CORE_REG(field)` is
//! the field's offset in words).

use super::one_reg::{
    reg_size,
    KVM_REG_SIZE_MASK,
    KVM_REG_SIZE_U128,
    KVM_REG_SIZE_U32,
    KVM_REG_SIZE_U64, //
};

/// `KVM_REG_ARM64`.
pub(crate) const KVM_REG_ARM64: u64 = 0x6000_0000_0000_0000;
/// `KVM_REG_ARM_COPROC_MASK`.
pub(crate) const COPROC_MASK: u64 = 0x0000_0000_0fff_0000;
/// `KVM_REG_ARM_COPROC_SHIFT`.
pub(crate) const COPROC_SHIFT: u32 = 16;
/// `KVM_REG_ARM_CORE`.
pub(crate) const COPROC_CORE: u64 = 0x10 << COPROC_SHIFT;
/// `KVM_REG_ARM_DEMUX`.
pub(crate) const COPROC_DEMUX: u64 = 0x11 << COPROC_SHIFT;
/// `KVM_REG_ARM64_SYSREG`.
pub(crate) const COPROC_SYSREG: u64 = 0x13 << COPROC_SHIFT;
/// `KVM_REG_ARM_FW`.
pub(crate) const COPROC_FW: u64 = 0x14 << COPROC_SHIFT;
/// `KVM_REG_ARM64_SVE`.
pub(crate) const COPROC_SVE: u64 = 0x15 << COPROC_SHIFT;
/// `KVM_REG_ARM_FW_FEAT_BMAP`.
pub(crate) const COPROC_FW_FEAT_BMAP: u64 = 0x16 << COPROC_SHIFT;

/// `KVM_REG_ARM_DEMUX_ID_MASK`.
pub(crate) const DEMUX_ID_MASK: u64 = 0xff00;
/// `KVM_REG_ARM_DEMUX_ID_CCSIDR`.
pub(crate) const DEMUX_ID_CCSIDR: u64 = 0;
/// `KVM_REG_ARM_DEMUX_VAL_MASK`.
pub(crate) const DEMUX_VAL_MASK: u64 = 0xff;

/// The bits of a system register id: arch, size, coproc and the five
/// encoding fields (`KVM_REG_ARM64_SYSREG_{OP0,OP1,CRN,CRM,OP2}_MASK`).
const SYSREG_ID_BITS: u64 = 0xff00_0000_0000_0000 | KVM_REG_SIZE_MASK | COPROC_MASK | 0xffff;

/// A system register encoding `(op0, op1, CRn, CRm, op2)`, packed as in the
/// low 16 bits of its ONE_REG id: `op0 << 14 | op1 << 11 | CRn << 7 | CRm
/// << 3 | op2`. Sorting packed encodings sorts by `(op0, op1, CRn, CRm,
/// op2)`, as upstream's tables are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Enc(pub(crate) u16);

impl Enc {
    /// The encoding `(op0, op1, crn, crm, op2)`; fields are masked to their
    /// widths (2, 3, 4, 4, 3 bits).
    pub(crate) const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Enc {
        Enc(((op0 as u16 & 3) << 14)
            | ((op1 as u16 & 7) << 11)
            | ((crn as u16 & 15) << 7)
            | ((crm as u16 & 15) << 3)
            | (op2 as u16 & 7))
    }

    /// `op0`.
    pub(crate) const fn op0(self) -> u8 {
        (self.0 >> 14) as u8 & 3
    }

    /// `op1`.
    pub(crate) const fn op1(self) -> u8 {
        (self.0 >> 11) as u8 & 7
    }

    /// `CRn`.
    pub(crate) const fn crn(self) -> u8 {
        (self.0 >> 7) as u8 & 15
    }

    /// `CRm`.
    pub(crate) const fn crm(self) -> u8 {
        (self.0 >> 3) as u8 & 15
    }

    /// `op2`.
    pub(crate) const fn op2(self) -> u8 {
        self.0 as u8 & 7
    }

    /// The ONE_REG id of the system register (`ARM64_SYS_REG()`): 64-bit.
    pub(crate) const fn id(self) -> u64 {
        KVM_REG_ARM64 | KVM_REG_SIZE_U64 | COPROC_SYSREG | self.0 as u64
    }

    /// The kernel's `sys_reg(op0, op1, crn, crm, op2)` encoding (what
    /// `read_sanitised_ftr_reg()` takes): the fields at bits 20:5.
    pub(crate) const fn sys_reg(self) -> u32 {
        (self.op0() as u32) << 19
            | (self.op1() as u32) << 16
            | (self.crn() as u32) << 12
            | (self.crm() as u32) << 8
            | (self.op2() as u32) << 5
    }
}

/// `CNTVCT_EL0`: its id is `KVM_REG_ARM_TIMER_CNT`, (3, 3, 14, 3, 2).
pub(crate) const CNTVCT_EL0: Enc = Enc::new(3, 3, 14, 0, 2);
/// `CNTV_CVAL_EL0`: its id is `KVM_REG_ARM_TIMER_CVAL`, (3, 3, 14, 0, 2).
pub(crate) const CNTV_CVAL_EL0: Enc = Enc::new(3, 3, 14, 3, 2);
/// `KVM_REG_ARM_TIMER_CNT`: historically the encoding of `CNTV_CVAL_EL0`.
pub(crate) const KVM_REG_ARM_TIMER_CNT: u64 = CNTV_CVAL_EL0.id();
/// `KVM_REG_ARM_TIMER_CVAL`: historically the encoding of `CNTVCT_EL0`.
pub(crate) const KVM_REG_ARM_TIMER_CVAL: u64 = CNTVCT_EL0.id();

/// The ONE_REG id of system register `enc` in `KVM_GET_REG_LIST`
/// (`copy_reg_to_user()`): the two timer ids are swapped, as the uapi has
/// them since the start.
pub(crate) const fn list_id(enc: Enc) -> u64 {
    if enc.0 == CNTV_CVAL_EL0.0 {
        KVM_REG_ARM_TIMER_CVAL
    } else if enc.0 == CNTVCT_EL0.0 {
        KVM_REG_ARM_TIMER_CNT
    } else {
        enc.id()
    }
}

/// The namespace of an arm64 ONE_REG id, as `kvm_arm_{get,set}_reg()`
/// dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegId {
    /// `KVM_REG_ARM_CORE`: the offset in 32-bit words into `struct
    /// kvm_regs` (`core_reg_offset_from_id()`: every bit but arch, size
    /// and `KVM_REG_ARM_CORE`).
    Core(u64),
    /// `KVM_REG_ARM_FW` or `KVM_REG_ARM_FW_FEAT_BMAP`: matched on the whole
    /// id.
    Fw,
    /// `KVM_REG_ARM64_SVE`.
    Sve,
    /// `KVM_REG_ARM_DEMUX`.
    Demux,
    /// Anything else: a system register id (`KVM_REG_ARM64_SYSREG`), or an
    /// id no table knows (upstream tries the system registers last).
    Sys,
}

impl RegId {
    /// Sorts `id`; `None` (`EINVAL`) if it is not an arm64 id: upstream
    /// requires bits 63:32 but the size to be `KVM_REG_ARM64 >> 32`.
    pub(crate) const fn decode(id: u64) -> Option<RegId> {
        if (id & !KVM_REG_SIZE_MASK) >> 32 != KVM_REG_ARM64 >> 32 {
            return None;
        }
        Some(match id & COPROC_MASK {
            COPROC_CORE => RegId::Core(id & !(0xff00_0000_0000_0000 | KVM_REG_SIZE_MASK | COPROC_CORE)),
            COPROC_FW | COPROC_FW_FEAT_BMAP => RegId::Fw,
            COPROC_SVE => RegId::Sve,
            COPROC_DEMUX => RegId::Demux,
            _ => RegId::Sys,
        })
    }
}

/// The system register a ONE_REG id names, as upstream looks it up
/// (`kvm_one_reg_to_id()` then `index_to_params()`): the timer ids are
/// swapped back, the size must be 64 bits and no bit outside the encoding
/// may be set, else `None` (`ENOENT`).
pub(crate) const fn sysreg_enc(id: u64) -> Option<Enc> {
    let id = if id == KVM_REG_ARM_TIMER_CVAL {
        CNTV_CVAL_EL0.id()
    } else if id == KVM_REG_ARM_TIMER_CNT {
        CNTVCT_EL0.id()
    } else {
        id
    };
    if id & KVM_REG_SIZE_MASK != KVM_REG_SIZE_U64 || id & !SYSREG_ID_BITS != 0 {
        return None;
    }
    if id & COPROC_MASK != COPROC_SYSREG {
        return None;
    }
    Some(Enc(id as u16))
}

/// The CCSIDR index a `KVM_REG_ARM_DEMUX` id names (`demux_c15_get()`):
/// `None` (`ENOENT`) for unknown bits, another demux id, a size other than
/// 32 bits or an index beyond `CSSELR_MAX`.
pub(crate) const fn demux_ccsidr(id: u64) -> Option<usize> {
    if id & !(0xff00_0000_0000_0000 | KVM_REG_SIZE_MASK | COPROC_MASK | 0xffff) != 0 {
        return None;
    }
    if id & DEMUX_ID_MASK != DEMUX_ID_CCSIDR || reg_size(id) != 4 {
        return None;
    }
    let index = (id & DEMUX_VAL_MASK) as usize;
    if index >= CSSELR_MAX {
        return None;
    }
    Some(index)
}

/// `CSSELR_MAX`: the CCSIDR demux registers (levels 1 to 7, data and
/// instruction).
pub(crate) const CSSELR_MAX: usize = 14;

/// The id of CCSIDR demux register `index`.
pub(crate) const fn demux_id(index: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U32 | COPROC_DEMUX | DEMUX_ID_CCSIDR | (index as u64 & DEMUX_VAL_MASK)
}

/// `sizeof(struct kvm_regs) / sizeof(__u32)`.
pub(crate) const KVM_REGS_WORDS: u64 = 216;

/// A field of `struct kvm_regs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CoreField {
    /// `regs.regs[n]`, 0 to 30.
    X(usize),
    /// `regs.sp` (`SP_EL0`).
    Sp,
    /// `regs.pc`.
    Pc,
    /// `regs.pstate`.
    Pstate,
    /// `sp_el1`.
    SpEl1,
    /// `elr_el1`.
    ElrEl1,
    /// `spsr[n]`: 0 `SPSR_EL1`, then the AArch32 banked ABT, UND, IRQ, FIQ.
    Spsr(usize),
    /// `fp_regs.vregs[n]`, 0 to 31 (128 bits).
    V(usize),
    /// `fp_regs.fpsr` (32 bits).
    Fpsr,
    /// `fp_regs.fpcr` (32 bits).
    Fpcr,
}

/// Word offsets in `struct kvm_regs` (`KVM_REG_ARM_CORE_REG()`).
mod off {
    pub(super) const SP: u64 = 62;
    pub(super) const PC: u64 = 64;
    pub(super) const PSTATE: u64 = 66;
    pub(super) const SP_EL1: u64 = 68;
    pub(super) const ELR_EL1: u64 = 70;
    pub(super) const SPSR: u64 = 72;
    pub(super) const VREGS: u64 = 84;
    pub(super) const FPSR: u64 = 212;
    pub(super) const FPCR: u64 = 213;
}

impl CoreField {
    /// The field at word offset `off` and its size in bytes
    /// (`core_reg_size_from_offset()`); `None` (`EINVAL`) for an offset
    /// that is not the start of a field, or padding.
    pub(crate) const fn at(off: u64) -> Option<(CoreField, usize)> {
        Some(match off {
            0..=60 if off % 2 == 0 => (CoreField::X((off / 2) as usize), 8),
            off::SP => (CoreField::Sp, 8),
            off::PC => (CoreField::Pc, 8),
            off::PSTATE => (CoreField::Pstate, 8),
            off::SP_EL1 => (CoreField::SpEl1, 8),
            off::ELR_EL1 => (CoreField::ElrEl1, 8),
            72..=80 if off % 2 == 0 => (CoreField::Spsr(((off - off::SPSR) / 2) as usize), 8),
            84..=208 if off % 4 == 0 => (CoreField::V(((off - off::VREGS) / 4) as usize), 16),
            off::FPSR => (CoreField::Fpsr, 4),
            off::FPCR => (CoreField::Fpcr, 4),
            _ => return None,
        })
    }

    /// The field's ONE_REG id.
    pub(crate) const fn id(self) -> u64 {
        let (off, size) = match self {
            CoreField::X(n) => (2 * n as u64, KVM_REG_SIZE_U64),
            CoreField::Sp => (off::SP, KVM_REG_SIZE_U64),
            CoreField::Pc => (off::PC, KVM_REG_SIZE_U64),
            CoreField::Pstate => (off::PSTATE, KVM_REG_SIZE_U64),
            CoreField::SpEl1 => (off::SP_EL1, KVM_REG_SIZE_U64),
            CoreField::ElrEl1 => (off::ELR_EL1, KVM_REG_SIZE_U64),
            CoreField::Spsr(n) => (off::SPSR + 2 * n as u64, KVM_REG_SIZE_U64),
            CoreField::V(n) => (off::VREGS + 4 * n as u64, KVM_REG_SIZE_U128),
            CoreField::Fpsr => (off::FPSR, KVM_REG_SIZE_U32),
            CoreField::Fpcr => (off::FPCR, KVM_REG_SIZE_U32),
        };
        KVM_REG_ARM64 | size | COPROC_CORE | off
    }

    /// Every field in `KVM_GET_REG_LIST` order (`copy_core_reg_indices()`:
    /// by offset).
    pub(crate) fn all() -> impl Iterator<Item = CoreField> {
        (0..KVM_REGS_WORDS).filter_map(|off| CoreField::at(off).map(|(f, _)| f))
    }
}

/// Why a core register access failed (upstream's errno).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CoreError {
    /// Beyond `struct kvm_regs` (`ENOENT`).
    NoEnt,
    /// Not a field, or the wrong size for it (`EINVAL`).
    Inval,
}

/// Finds the field of a `KVM_REG_ARM_CORE` access at word offset `off` of
/// `size` bytes, with `get_core_reg()`/`set_core_reg()`'s checks: the access
/// must end inside `struct kvm_regs` (strictly before its last word, as
/// upstream's `>=`), then the offset must start a field of exactly that
/// size.
pub(crate) const fn core_field(off: u64, size: usize) -> Result<CoreField, CoreError> {
    let words = (size / 4) as u64;
    if off >= KVM_REGS_WORDS || off + words >= KVM_REGS_WORDS {
        return Err(CoreError::NoEnt);
    }
    match CoreField::at(off) {
        Some((field, fsize)) if fsize == size => Ok(field),
        _ => Err(CoreError::Inval),
    }
}

/// `PSR_AA32_MODE_MASK`.
pub(crate) const PSR_AA32_MODE_MASK: u64 = 0x1f;
/// `PSR_MODE32_BIT`.
pub(crate) const PSR_MODE32_BIT: u64 = 0x10;
/// `PSR_AA32_MODE_USR`.
pub(crate) const PSR_AA32_MODE_USR: u64 = 0x10;
/// `PSR_AA32_MODE_SYS`.
pub(crate) const PSR_AA32_MODE_SYS: u64 = 0x1f;
/// `PSR_MODE_EL1h | PSR_A_BIT | PSR_I_BIT | PSR_F_BIT | PSR_D_BIT`
/// (`VCPU_RESET_PSTATE_EL1`): EL1 with SP_EL1, every exception masked.
pub(crate) const VCPU_RESET_PSTATE_EL1: u64 = 0x3c5;

/// What a new PSTATE's mode needs (`set_core_reg()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PstateMode {
    /// EL0t, EL1t or EL1h: fine for an AArch64 EL1.
    Aarch64El01,
    /// EL2t or EL2h: needs nested virtualization.
    Aarch64El2,
    /// AArch32 USR: needs AArch32 at EL0.
    Aarch32User,
    /// AArch32 FIQ, IRQ, SVC, ABT, UND or SYS: needs an AArch32 EL1.
    Aarch32Kernel,
    /// Anything else (EL3, reserved encodings).
    Invalid,
}

/// Classifies the mode field of a PSTATE value.
pub(crate) const fn pstate_mode(pstate: u64) -> PstateMode {
    match pstate & PSR_AA32_MODE_MASK {
        0x0 | 0x4 | 0x5 => PstateMode::Aarch64El01,
        0x8 | 0x9 => PstateMode::Aarch64El2,
        0x10 => PstateMode::Aarch32User,
        0x11 | 0x12 | 0x13 | 0x17 | 0x1b | 0x1f => PstateMode::Aarch32Kernel,
        _ => PstateMode::Invalid,
    }
}

/// The core registers of a vCPU: `struct kvm_regs` minus `SPSR_EL1`,
/// `SP_EL1` and `ELR_EL1`, which live with the system registers (as in
/// upstream's `kvm_cpu_context`, so that the world switch saves and restores
/// them with the other EL1 state).
///
/// This is the general-purpose and FP/SIMD state the world switch loads on
/// guest entry and saves on exit: `x`, `sp` (`SP_EL0`), `pc` (`ELR_EL2`),
/// `pstate` (`SPSR_EL2`), `vregs`/`fpsr`/`fpcr` (the FP/SIMD unit), and the
/// AArch32 banked SPSRs (only meaningful for an AArch32 EL1, which kvm_rs
/// does not offer; kept for the ABI).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CoreRegs {
    /// `x0` to `x30`.
    pub(crate) x: [u64; 31],
    /// `SP_EL0`.
    pub(crate) sp: u64,
    /// The guest PC.
    pub(crate) pc: u64,
    /// The guest PSTATE.
    pub(crate) pstate: u64,
    /// `spsr_abt`, `spsr_und`, `spsr_irq`, `spsr_fiq` (`spsr[1..5]`).
    pub(crate) spsr_aa32: [u64; 4],
    /// `V0` to `V31`.
    pub(crate) vregs: [u128; 32],
    /// `FPSR`.
    pub(crate) fpsr: u32,
    /// `FPCR`.
    pub(crate) fpcr: u32,
}

impl CoreRegs {
    /// `kvm_reset_vcpu_core()` for an AArch64 EL1 vCPU: everything zero but
    /// PSTATE, EL1h with every exception masked.
    pub(crate) fn reset(&mut self) {
        *self = CoreRegs { pstate: VCPU_RESET_PSTATE_EL1, ..CoreRegs::default() };
    }

    /// After a core register write in an AArch32 mode (`set_core_reg()`):
    /// the registers the mode sees are narrowed to 32 bits (x0-x14 in USR
    /// and SYS, all of them otherwise), and the PC.
    pub(crate) fn narrow_aarch32(&mut self) {
        if self.pstate & PSR_MODE32_BIT == 0 {
            return;
        }
        let n = match self.pstate & PSR_AA32_MODE_MASK {
            PSR_AA32_MODE_USR | PSR_AA32_MODE_SYS => 15,
            _ => 31,
        };
        for x in self.x.iter_mut().take(n) {
            *x &= 0xffff_ffff;
        }
        self.pc &= 0xffff_ffff;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysreg_encodings() {
        let e = Enc::new(3, 0, 0, 7, 0);
        assert_eq!(e.id(), 0x6030_0000_0013_c038);
        assert_eq!((e.op0(), e.op1(), e.crn(), e.crm(), e.op2()), (3, 0, 0, 7, 0));
        assert_eq!(e.sys_reg(), (3 << 19) | (7 << 8));
        let e = Enc::new(2, 4, 0, 7, 0);
        assert_eq!((e.op0(), e.op1(), e.crn(), e.crm(), e.op2()), (2, 4, 0, 7, 0));
        assert!(Enc::new(2, 7, 15, 15, 7) < Enc::new(3, 0, 0, 0, 0));
        assert!(Enc::new(3, 0, 0, 1, 7) < Enc::new(3, 0, 0, 2, 0));
        // KVM_REG_ARM_TIMER_CTL / CVAL / CNT of the uapi header.
        assert_eq!(KVM_REG_ARM_TIMER_CVAL, Enc::new(3, 3, 14, 0, 2).id());
        assert_eq!(KVM_REG_ARM_TIMER_CNT, Enc::new(3, 3, 14, 3, 2).id());
        assert_eq!(list_id(CNTV_CVAL_EL0), KVM_REG_ARM_TIMER_CVAL);
        assert_eq!(list_id(CNTVCT_EL0), KVM_REG_ARM_TIMER_CNT);
        assert_eq!(sysreg_enc(KVM_REG_ARM_TIMER_CVAL), Some(CNTV_CVAL_EL0));
        assert_eq!(sysreg_enc(KVM_REG_ARM_TIMER_CNT), Some(CNTVCT_EL0));
        let sctlr = Enc::new(3, 0, 1, 0, 0);
        assert_eq!(sysreg_enc(sctlr.id()), Some(sctlr));
        assert_eq!(sysreg_enc(sctlr.id() & !KVM_REG_SIZE_MASK | KVM_REG_SIZE_U32), None);
        assert_eq!(sysreg_enc(sctlr.id() | 1 << 28), None);
        assert_eq!(sysreg_enc(KVM_REG_ARM64 | KVM_REG_SIZE_U64 | (0x12 << 16)), None);
    }

    #[test]
    fn id_namespaces() {
        assert_eq!(RegId::decode(0x1234), None);
        assert_eq!(RegId::decode(KVM_REG_ARM64 | 1 << 32), None);
        assert_eq!(RegId::decode(CoreField::Pc.id()), Some(RegId::Core(64)));
        // Bit 28 is above the coproc field: part of the core offset.
        assert_eq!(RegId::decode(CoreField::Pc.id() | 1 << 28), Some(RegId::Core(64 | 1 << 28)));
        assert_eq!(RegId::decode(KVM_REG_ARM64 | KVM_REG_SIZE_U64 | COPROC_FW), Some(RegId::Fw));
        assert_eq!(RegId::decode(KVM_REG_ARM64 | KVM_REG_SIZE_U64 | COPROC_FW_FEAT_BMAP), Some(RegId::Fw));
        assert_eq!(RegId::decode(KVM_REG_ARM64 | COPROC_SVE), Some(RegId::Sve));
        assert_eq!(RegId::decode(demux_id(3)), Some(RegId::Demux));
        assert_eq!(RegId::decode(KVM_REG_ARM64 | (0x12 << 16)), Some(RegId::Sys));
        assert_eq!(demux_ccsidr(demux_id(13)), Some(13));
        assert_eq!(demux_ccsidr(demux_id(0) | 14), None);
        assert_eq!(demux_ccsidr(demux_id(0) | 1 << 8), None);
        assert_eq!(demux_ccsidr(demux_id(0) & !KVM_REG_SIZE_MASK | KVM_REG_SIZE_U64), None);
        assert_eq!(demux_ccsidr(demux_id(0) | 1 << 30), None);
    }

    #[test]
    fn core_offsets_match_struct_kvm_regs() {
        // KVM_REG_ARM_CORE_REG() values of the uapi layout.
        assert_eq!(CoreField::X(30).id() & 0xffff, 60);
        assert_eq!(CoreField::Spsr(4).id() & 0xffff, 80);
        assert_eq!(CoreField::V(31).id() & 0xffff, 208);
        assert_eq!(CoreField::V(0).id() & KVM_REG_SIZE_MASK, KVM_REG_SIZE_U128);
        assert_eq!(CoreField::Fpcr.id() & KVM_REG_SIZE_MASK, KVM_REG_SIZE_U32);
        let all: [CoreField; 75] = {
            let mut a = [CoreField::Pc; 75];
            for (slot, f) in a.iter_mut().zip(CoreField::all()) {
                *slot = f;
            }
            a
        };
        assert_eq!(CoreField::all().count(), 31 + 3 + 2 + 5 + 32 + 2);
        assert_eq!(all[0], CoreField::X(0));
        assert_eq!(all[31], CoreField::Sp);
        assert_eq!(all[36], CoreField::Spsr(0));
        assert_eq!(all[41], CoreField::V(0));
        assert_eq!(all[74], CoreField::Fpcr);
        for f in CoreField::all() {
            let id = f.id();
            let off = id & 0xffff;
            assert_eq!(CoreField::at(off).map(|(g, s)| (g, s)), Some((f, reg_size(id))));
        }
    }

    #[test]
    fn core_access_checks() {
        assert_eq!(core_field(0, 8), Ok(CoreField::X(0)));
        assert_eq!(core_field(0, 4), Err(CoreError::Inval));
        assert_eq!(core_field(0, 16), Err(CoreError::Inval));
        assert_eq!(core_field(0, 256), Err(CoreError::Inval));
        assert_eq!(core_field(1, 8), Err(CoreError::Inval));
        assert_eq!(core_field(82, 8), Err(CoreError::Inval));
        assert_eq!(core_field(86, 8), Err(CoreError::Inval));
        assert_eq!(core_field(213, 4), Ok(CoreField::Fpcr));
        assert_eq!(core_field(212, 8), Err(CoreError::Inval));
        assert_eq!(core_field(215, 4), Err(CoreError::NoEnt));
        assert_eq!(core_field(214, 8), Err(CoreError::NoEnt));
        assert_eq!(core_field(216, 8), Err(CoreError::NoEnt));
        assert_eq!(core_field(0xffff, 8), Err(CoreError::NoEnt));
        assert_eq!(core_field(200, 256), Err(CoreError::NoEnt));
        assert_eq!(core_field(208, 16), Ok(CoreField::V(31)));
    }

    #[test]
    fn pstate_modes_and_narrowing() {
        assert_eq!(pstate_mode(0x3c5), PstateMode::Aarch64El01);
        assert_eq!(pstate_mode(0x3c4), PstateMode::Aarch64El01);
        assert_eq!(pstate_mode(0), PstateMode::Aarch64El01);
        assert_eq!(pstate_mode(0x9), PstateMode::Aarch64El2);
        assert_eq!(pstate_mode(0xd), PstateMode::Invalid);
        assert_eq!(pstate_mode(0x3), PstateMode::Invalid);
        assert_eq!(pstate_mode(0x10), PstateMode::Aarch32User);
        assert_eq!(pstate_mode(0x13), PstateMode::Aarch32Kernel);
        assert_eq!(pstate_mode(0x1f), PstateMode::Aarch32Kernel);
        assert_eq!(pstate_mode(0x1a), PstateMode::Invalid);
        let mut c = CoreRegs::default();
        c.reset();
        assert_eq!(c.pstate, VCPU_RESET_PSTATE_EL1);
        c.x = [u64::MAX; 31];
        c.pc = u64::MAX;
        c.narrow_aarch32();
        assert_eq!(c.x[14], u64::MAX);
        c.pstate = 0x10;
        c.narrow_aarch32();
        assert_eq!((c.x[14], c.x[15], c.pc), (0xffff_ffff, u64::MAX, 0xffff_ffff));
        c.pstate = 0x13;
        c.narrow_aarch32();
        assert_eq!(c.x[30], 0xffff_ffff);
    }
}
