// SPDX-License-Identifier: GPL-2.0

//! The feature ID registers of a VM (`op0 3, op1 0, CRn 0, CRm 1-7`, plus
//! `CTR_EL0`): what the guest is told about the CPU, and which changes
//! userspace may make before the VM first runs.
//!
//! Pure logic (`core` only), also tested on the host. It follows upstream's
//! `arch/arm64/kvm/sys_regs.c`: the value of a register is the kernel's
//! sanitised (system-wide safe) host value ([`HostFacts`]) with the
//! features KVM does not virtualise hidden (`__kvm_read_sanitised_id_reg()`
//! and the `sanitise_*()` helpers); that value is also the limit for writes
//! (`arm64_check_features()`): each writable field may only go down to a
//! "safer" value as its `arm64_ftr_bits` description says
//! ([`super::ftr_tables`]), every other bit must stay.
//!
//! kvm_rs offers no optional vCPU feature (no SVE, pointer authentication,
//! PMU, MTE, nested virtualization), so the registers are sanitised as
//! upstream does for a vCPU without them.

use super::{
    abi::Errno,
    ftr_tables::FTR_REGS,
    regs::Enc,
};

/// How a feature field's value compares (`enum ftr_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FtrType {
    /// Only the safe value is safe.
    Exact,
    /// A lower value is safe.
    LowerSafe,
    /// A higher value is safe.
    HigherSafe,
    /// A higher value is safe, 0 is safest.
    HigherOrZeroSafe,
}

/// One feature field (`struct arm64_ftr_bits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FtrBits {
    /// The field is signed (`FTR_SIGNED`).
    pub(crate) signed: bool,
    /// How values compare.
    pub(crate) ty: FtrType,
    /// The field's lowest bit.
    pub(crate) shift: u8,
    /// The field's width in bits (1 to 32).
    pub(crate) width: u8,
    /// The safe value of an `Exact` field.
    pub(crate) safe: i64,
}

impl FtrBits {
    /// `arm64_ftr_mask()`.
    pub(crate) const fn mask(&self) -> u64 {
        let ones = if self.width >= 64 { u64::MAX } else { (1u64 << self.width) - 1 };
        ones << (self.shift & 63)
    }

    /// `arm64_ftr_value()`: the field of `reg`, sign-extended if signed.
    pub(crate) const fn value(&self, reg: u64) -> i64 {
        let raw = (reg & self.mask()) >> (self.shift & 63);
        if self.signed && self.width > 0 && self.width < 64 && raw >> (self.width - 1) != 0 {
            (raw | (u64::MAX << self.width)) as i64
        } else {
            raw as i64
        }
    }

    /// `arm64_ftr_safe_value()`: the safe value of the field between `new`
    /// and `cur`.
    const fn safe_value(&self, new: i64, cur: i64) -> i64 {
        match self.ty {
            FtrType::Exact => self.safe,
            FtrType::LowerSafe => {
                if new < cur {
                    new
                } else {
                    cur
                }
            }
            FtrType::HigherOrZeroSafe if new == 0 || cur == 0 => 0,
            FtrType::HigherSafe | FtrType::HigherOrZeroSafe => {
                if new > cur {
                    new
                } else {
                    cur
                }
            }
        }
    }
}

/// An ID register of [`super::ftr_tables`]: `(op0, op1, CRn, CRm, op2)` and
/// its fields, most significant first.
pub(crate) type FtrReg = ((u8, u8, u8, u8, u8), &'static [FtrBits]);

/// A Spectre-class vulnerability's state on the host (`enum
/// mitigation_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mitigation {
    /// Vulnerable, no mitigation.
    Vulnerable,
    /// Mitigated by the kernel or firmware.
    Mitigated,
    /// Not affected.
    Unaffected,
}

/// What the host tells about itself, read once per VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostFacts {
    /// `read_sanitised_ftr_reg()` of the feature ID registers, indexed by
    /// [`id_index`]; 0 where upstream never reads it (hidden and
    /// unallocated registers).
    pub(crate) sanitised: [u64; NR_ID_REGS],
    /// `read_sanitised_ftr_reg(SYS_CTR_EL0)`.
    pub(crate) ctr_el0: u64,
    /// The boot CPU's `MIDR_EL1`, `REVIDR_EL1` and `AIDR_EL1`.
    pub(crate) midr: u64,
    /// See `midr`.
    pub(crate) revidr: u64,
    /// See `midr`.
    pub(crate) aidr: u64,
    /// `ACTLR_EL1` and `AMAIR_EL1` as read at EL2 (`reset_actlr()`,
    /// `reset_amair_el1()`).
    pub(crate) actlr: u64,
    /// See `actlr`.
    pub(crate) amair: u64,
    /// `kvm_supports_32bit_el0()`: AArch32 at EL0 on every CPU.
    pub(crate) el0_32bit: bool,
    /// `vgic_host_has_gicv3()`: a GICv3 CPU interface (a vGICv3 could be
    /// created).
    pub(crate) gicv3: bool,
    /// `ARM64_HAS_WFXT` without the broken-`CNTVOFF` erratum.
    pub(crate) wfxt: bool,
    /// `ARM64_HAS_RASV1P1_EXTN`.
    pub(crate) rasv1p1: bool,
    /// `system_supports_poe()`.
    pub(crate) poe: bool,
    /// `system_supports_fpmr()`.
    pub(crate) fpmr: bool,
    /// `arm64_get_spectre_v2_state()`.
    pub(crate) spectre_v2: Mitigation,
    /// `arm64_get_meltdown_state()`.
    pub(crate) meltdown: Mitigation,
    /// `arm64_get_spectre_v4_state()`.
    pub(crate) spectre_v4: Mitigation,
    /// `arm64_get_spectre_bhb_state()`.
    pub(crate) spectre_bhb: Mitigation,
}

/// The feature ID registers `op0 3, op1 0, CRn 0, CRm 1-7`.
pub(crate) const NR_ID_REGS: usize = 56;

/// The index of feature ID register `(3, 0, 0, crm, op2)` in
/// [`HostFacts::sanitised`] and the VM's ID registers; `None` outside
/// `CRm 1-7`.
pub(crate) const fn id_index(enc: Enc) -> Option<usize> {
    if enc.op0() != 3 || enc.op1() != 0 || enc.crn() != 0 || enc.crm() < 1 || enc.crm() > 7 {
        return None;
    }
    Some((enc.crm() as usize - 1) * 8 + enc.op2() as usize)
}

/// The encoding of the feature ID register at `index`.
pub(crate) const fn id_enc(index: usize) -> Enc {
    Enc::new(3, 0, 0, (index / 8 + 1) as u8, (index % 8) as u8)
}

/// `CTR_EL0`.
pub(crate) const CTR_EL0: Enc = Enc::new(3, 3, 0, 0, 1);

/// Field masks of the registers KVM adjusts (`sysreg-defs.h`).
pub(crate) mod f {
    pub(crate) const PFR0_CSV3: u64 = 0xf << 60;
    pub(crate) const PFR0_CSV2: u64 = 0xf << 56;
    pub(crate) const PFR0_AMU: u64 = 0xf << 44;
    pub(crate) const PFR0_MPAM: u64 = 0xf << 40;
    pub(crate) const PFR0_SVE: u64 = 0xf << 32;
    pub(crate) const PFR0_RAS: u64 = 0xf << 28;
    pub(crate) const PFR0_GIC: u64 = 0xf << 24;
    pub(crate) const PFR0_ADVSIMD: u64 = 0xf << 20;
    pub(crate) const PFR0_FP: u64 = 0xf << 16;
    pub(crate) const PFR0_EL1: u64 = 0xf << 4;
    pub(crate) const PFR0_EL0: u64 = 0xf;
    pub(crate) const PFR1_PFAR: u64 = 0xf << 60;
    pub(crate) const PFR1_MTEX: u64 = 0xf << 52;
    pub(crate) const PFR1_THE: u64 = 0xf << 48;
    pub(crate) const PFR1_GCS: u64 = 0xf << 44;
    pub(crate) const PFR1_MTE_FRAC: u64 = 0xf << 40;
    pub(crate) const PFR1_NMI: u64 = 0xf << 36;
    pub(crate) const PFR1_RNDR_TRAP: u64 = 0xf << 28;
    pub(crate) const PFR1_SME: u64 = 0xf << 24;
    pub(crate) const PFR1_RES0: u64 = 0xf << 20;
    pub(crate) const PFR1_MPAM_FRAC: u64 = 0xf << 16;
    pub(crate) const PFR1_RAS_FRAC: u64 = 0xf << 12;
    pub(crate) const PFR1_MTE: u64 = 0xf << 8;
    pub(crate) const PFR1_SSBS: u64 = 0xf << 4;
    pub(crate) const PFR2_FPMR: u64 = 0xf << 32;
    pub(crate) const PFR2_GCIE: u64 = 0xf << 12;
    pub(crate) const PFR2_MTEFAR: u64 = 0xf << 8;
    pub(crate) const PFR2_MTESTOREONLY: u64 = 0xf << 4;
    pub(crate) const ZFR0_RES0: u64 = 0xf000_00f0_f000_0f00;
    pub(crate) const FPFR0_RES0: u64 = 0xffff_ffff_03ff_7f00;
    pub(crate) const DFR0_BRBE: u64 = 0xf << 52;
    pub(crate) const DFR0_DOUBLELOCK: u64 = 0xf << 36;
    pub(crate) const DFR0_PMSVER: u64 = 0xf << 32;
    pub(crate) const DFR0_WRPS: u64 = 0xf << 20;
    pub(crate) const DFR0_PMUVER: u64 = 0xf << 8;
    pub(crate) const DFR0_DEBUGVER: u64 = 0xf;
    pub(crate) const ISAR0_RES0: u64 = 0x0f00_000f;
    pub(crate) const ISAR1_GPI: u64 = 0xf << 28;
    pub(crate) const ISAR1_GPA: u64 = 0xf << 24;
    pub(crate) const ISAR1_API: u64 = 0xf << 8;
    pub(crate) const ISAR1_APA: u64 = 0xf << 4;
    pub(crate) const ISAR2_APA3: u64 = 0xf << 12;
    pub(crate) const ISAR2_GPA3: u64 = 0xf << 8;
    pub(crate) const ISAR2_WFXT: u64 = 0xf;
    pub(crate) const ISAR3_FPRCVT: u64 = 0xf << 28;
    pub(crate) const ISAR3_LSUI: u64 = 0xf << 24;
    pub(crate) const ISAR3_LSFE: u64 = 0xf << 16;
    pub(crate) const ISAR3_FAMINMAX: u64 = 0xf << 4;
    pub(crate) const MMFR0_RES0: u64 = 0xff << 48;
    pub(crate) const MMFR0_ASIDBITS: u64 = 0xf << 4;
    pub(crate) const MMFR1_XNX: u64 = 0xf << 28;
    pub(crate) const MMFR1_VH: u64 = 0xf << 8;
    pub(crate) const MMFR1_VMIDBITS: u64 = 0xf << 4;
    pub(crate) const MMFR2_EVT: u64 = 0xf << 56;
    pub(crate) const MMFR2_RES0: u64 = 0xf << 44;
    pub(crate) const MMFR2_FWB: u64 = 0xf << 40;
    pub(crate) const MMFR2_IDS: u64 = 0xf << 36;
    pub(crate) const MMFR2_NV: u64 = 0xf << 24;
    pub(crate) const MMFR2_CCIDX: u64 = 0xf << 20;
    pub(crate) const MMFR3_S1POE: u64 = 0xf << 16;
    pub(crate) const MMFR3_S1PIE: u64 = 0xf << 8;
    pub(crate) const MMFR3_SCTLRX: u64 = 0xf << 4;
    pub(crate) const MMFR3_TCRX: u64 = 0xf;
    pub(crate) const MMFR4_NV_FRAC: u64 = 0xf << 20;
    pub(crate) const AA32_MMFR4_CCIDX: u64 = 0xf << 24;
    pub(crate) const AA32_DFR0_PERFMON: u64 = 0xf << 24;
    pub(crate) const AA32_DFR0_COPDBG: u64 = 0xf;
    pub(crate) const CTR_DIC: u64 = 1 << 29;
    pub(crate) const CTR_IDC: u64 = 1 << 28;
    pub(crate) const CTR_DMINLINE: u64 = 0xf << 16;
    pub(crate) const CTR_L1IP: u64 = 0x3 << 14;
    pub(crate) const CTR_IMINLINE: u64 = 0xf;
}

/// The 4-bit field of `val` at `mask`.
const fn field(val: u64, mask: u64) -> u64 {
    (val & mask) >> mask.trailing_zeros()
}

/// `val` with the field at `mask` set to `v`.
const fn with_field(val: u64, mask: u64, v: u64) -> u64 {
    (val & !mask) | ((v << mask.trailing_zeros()) & mask)
}

/// `ID_REG_LIMIT_FIELD_ENUM()`: the field at `mask` lowered to `limit`.
const fn limit_field(val: u64, mask: u64, limit: u64) -> u64 {
    let cur = field(val, mask);
    with_field(val, mask, if cur < limit { cur } else { limit })
}

/// How userspace and the guest see a feature ID register (its
/// `visibility`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdVis {
    /// As its value.
    Normal,
    /// An AArch32 register (`aa32_id_visibility`): RAZ, and writes from
    /// userspace ignored, without AArch32 at EL0.
    Aa32,
    /// Reads as zero (`raz_visibility`: hidden or unallocated; and
    /// `ID_AA64ZFR0_EL1` without SVE).
    Raz,
}

/// The special write handling of a feature ID register (its `set_user`
/// before `set_id_reg()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdSet {
    /// `set_id_reg()` only.
    Plain,
    /// `set_id_dfr0_el1()` (AArch32 `ID_DFR0_EL1`).
    Aa32Dfr0,
    /// `set_id_aa64pfr0_el1()`.
    Pfr0,
    /// `set_id_aa64pfr1_el1()`.
    Pfr1,
    /// `set_id_aa64dfr0_el1()`.
    Dfr0,
    /// `set_id_aa64mmfr2_el1()`.
    Mmfr2,
}

/// What upstream's table says of a feature ID register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdDesc {
    /// Its visibility.
    pub(crate) vis: IdVis,
    /// The bits userspace may change (`sys_reg_desc.val`).
    pub(crate) writable: u64,
    /// Its write handler.
    pub(crate) set: IdSet,
}

/// The description of feature ID register `index` (see [`id_index`]).
pub(crate) const fn id_desc(index: usize) -> IdDesc {
    const AA32: IdDesc = IdDesc { vis: IdVis::Aa32, writable: 0xffff_ffff, set: IdSet::Plain };
    const RAZ: IdDesc = IdDesc { vis: IdVis::Raz, writable: 0, set: IdSet::Plain };
    const fn w(writable: u64) -> IdDesc {
        IdDesc { vis: IdVis::Normal, writable, set: IdSet::Plain }
    }
    const fn s(writable: u64, set: IdSet) -> IdDesc {
        IdDesc { vis: IdVis::Normal, writable, set }
    }
    use f::*;
    let crm = index / 8 + 1;
    let op2 = index % 8;
    match (crm, op2) {
        // CRm 1: ID_PFR0, ID_PFR1, ID_DFR0, ID_AFR0 (hidden), ID_MMFR0-3.
        (1, 2) => IdDesc { vis: IdVis::Aa32, writable: 0xffff_ffff, set: IdSet::Aa32Dfr0 },
        (1, 3) => RAZ,
        (1, _) => AA32,
        // CRm 2: ID_ISAR0-5, ID_MMFR4, ID_ISAR6.
        (2, _) => AA32,
        // CRm 3: MVFR0-2, -, ID_PFR2, ID_DFR1 (hidden), ID_MMFR5, -.
        (3, 0..=2) | (3, 4) | (3, 6) => AA32,
        (3, _) => RAZ,
        (4, 0) => s(!(PFR0_AMU | PFR0_MPAM | PFR0_SVE | PFR0_ADVSIMD | PFR0_FP), IdSet::Pfr0),
        (4, 1) => s(
            !(PFR1_PFAR | PFR1_MTEX | PFR1_THE | PFR1_GCS | PFR1_MTE_FRAC | PFR1_NMI | PFR1_RNDR_TRAP
                | PFR1_SME | PFR1_RES0 | PFR1_MPAM_FRAC | PFR1_MTE),
            IdSet::Pfr1,
        ),
        (4, 2) => w(PFR2_FPMR | PFR2_MTEFAR | PFR2_MTESTOREONLY | PFR2_GCIE),
        // ID_AA64ZFR0_EL1: RAZ without SVE (id_visibility), yet writable.
        (4, 4) => IdDesc { vis: IdVis::Raz, writable: !ZFR0_RES0, set: IdSet::Plain },
        (4, 7) => w(!FPFR0_RES0),
        (4, _) => RAZ,
        (5, 0) => s(DFR0_DOUBLELOCK | DFR0_WRPS | DFR0_PMUVER | DFR0_DEBUGVER, IdSet::Dfr0),
        // ID_AA64DFR1_EL1: sanitised, not writable.
        (5, 1) => w(0),
        (5, _) => RAZ,
        (6, 0) => w(!ISAR0_RES0),
        (6, 1) => w(!(ISAR1_GPI | ISAR1_GPA | ISAR1_API | ISAR1_APA)),
        (6, 2) => w(!(ISAR2_APA3 | ISAR2_GPA3)),
        (6, 3) => w(ISAR3_FPRCVT | ISAR3_LSFE | ISAR3_LSUI | ISAR3_FAMINMAX),
        (6, _) => RAZ,
        (7, 0) => w(!(MMFR0_RES0 | MMFR0_ASIDBITS)),
        (7, 1) => w(!(MMFR1_XNX | MMFR1_VH | MMFR1_VMIDBITS)),
        (7, 2) => s(!(MMFR2_RES0 | MMFR2_EVT | MMFR2_FWB | MMFR2_IDS | MMFR2_NV | MMFR2_CCIDX), IdSet::Mmfr2),
        (7, 3) => w(MMFR3_TCRX | MMFR3_SCTLRX | MMFR3_S1PIE | MMFR3_S1POE),
        (7, 4) => w(MMFR4_NV_FRAC),
        _ => RAZ,
    }
}

/// The writable bits of `CTR_EL0`.
pub(crate) const CTR_WRITABLE: u64 = f::CTR_DIC | f::CTR_IDC | f::CTR_DMINLINE | f::CTR_L1IP | f::CTR_IMINLINE;

/// Whether userspace and the guest see register `index` as zero.
pub(crate) const fn visible_as_raz(index: usize, host: &HostFacts) -> bool {
    match id_desc(index).vis {
        IdVis::Normal => false,
        IdVis::Aa32 => !host.el0_32bit,
        IdVis::Raz => true,
    }
}

/// The value of feature ID register `index` for a new VM, which is also
/// the limit of what userspace may write (`kvm_read_sanitised_id_reg()`,
/// `read_sanitised_id_dfr0_el1()`), for a vCPU without optional features.
pub(crate) const fn id_limit(index: usize, host: &HostFacts) -> u64 {
    use f::*;
    // read_sanitised_id_dfr0_el1() does not look at the visibility.
    if index == 2 {
        let val = host.sanitised[2] & !AA32_DFR0_PERFMON;
        return limit_field(val, AA32_DFR0_COPDBG, 0b1010);
    }
    if visible_as_raz(index, host) {
        return 0;
    }
    let mut val = host.sanitised[index];
    match (index / 8 + 1, index % 8) {
        (4, 0) => {
            val &= !PFR0_SVE;
            if matches!(host.spectre_v2, Mitigation::Unaffected) {
                val = with_field(val, PFR0_CSV2, 1);
            }
            if matches!(host.meltdown, Mitigation::Unaffected) {
                val = with_field(val, PFR0_CSV3, 1);
            }
            if host.gicv3 {
                val = with_field(val, PFR0_GIC, 1);
            }
            val &= !(PFR0_AMU | PFR0_MPAM);
        }
        (4, 1) => {
            val &= !(PFR1_MTE | PFR1_MTE_FRAC);
            if !(host.rasv1p1 && field(host.sanitised[24], PFR0_RAS) == 1) {
                val &= !PFR1_RAS_FRAC;
            }
            val &= !(PFR1_SME | PFR1_RNDR_TRAP | PFR1_NMI | PFR1_GCS | PFR1_THE | PFR1_MTEX | PFR1_PFAR
                | PFR1_MPAM_FRAC);
        }
        (4, 2) => val &= PFR2_FPMR,
        (5, 0) => {
            val = limit_field(val, DFR0_DEBUGVER, 0b1010);
            val &= !(DFR0_PMUVER | DFR0_PMSVER | DFR0_BRBE);
        }
        (6, 1) => val &= !(ISAR1_APA | ISAR1_API | ISAR1_GPA | ISAR1_GPI),
        (6, 2) => {
            val &= !(ISAR2_APA3 | ISAR2_GPA3);
            if !host.wfxt {
                val &= !ISAR2_WFXT;
            }
        }
        (6, 3) => val &= ISAR3_FPRCVT | ISAR3_LSFE | ISAR3_FAMINMAX | ISAR3_LSUI,
        (7, 2) => val &= !(MMFR2_CCIDX | MMFR2_NV),
        (7, 3) => {
            val &= MMFR3_TCRX | MMFR3_SCTLRX | MMFR3_S1POE | MMFR3_S1PIE;
            if !host.poe {
                val &= !MMFR3_S1POE;
            }
        }
        (2, 6) => val &= !AA32_MMFR4_CCIDX,
        _ => {}
    }
    val
}

/// The `arm64_ftr_bits` of `enc` (`get_arm64_ftr_reg()`).
fn ftr_bits(enc: Enc) -> Option<&'static [FtrBits]> {
    FTR_REGS
        .iter()
        .find(|((op0, op1, crn, crm, op2), _)| Enc::new(*op0, *op1, *crn, *crm, *op2) == enc)
        .map(|(_, bits)| *bits)
}

/// `arm64_check_features()`: whether `val` promises no more than `limit`
/// in the `writable` fields and equals it elsewhere. `raz`: the register
/// reads as zero, where only 0 is fine. `EINVAL` otherwise (upstream's
/// `E2BIG`, turned into `EINVAL` by `set_id_reg()`), also for a register the
/// kernel has no description of.
pub(crate) fn check_features(enc: Enc, val: u64, limit: u64, writable: u64, raz: bool) -> Result<(), Errno> {
    if raz {
        return if val != 0 { Err(Errno::EINVAL) } else { Ok(()) };
    }
    let bits = ftr_bits(enc).ok_or(Errno::EINVAL)?;
    let mut mask = 0;
    for ftr in bits {
        let ftr_mask = ftr.mask();
        if ftr_mask & writable != ftr_mask {
            continue;
        }
        let ftr = kvm_ftr(enc, ftr);
        let f_val = ftr.value(val);
        let f_lim = ftr.value(limit);
        mask |= ftr_mask;
        let safe = if f_val == f_lim { f_val } else { ftr.safe_value(f_val, f_lim) };
        if safe != f_val {
            return Err(Errno::EINVAL);
        }
    }
    if val & !mask != limit & !mask {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// `kvm_arm64_ftr_safe_value()`: KVM treats a lower PMU or debug version as
/// safe where the host's description wants it exact.
fn kvm_ftr(enc: Enc, ftr: &FtrBits) -> FtrBits {
    let lower = match id_index(enc) {
        // ID_DFR0_EL1.PerfMon.
        Some(2) => ftr.shift == 24,
        // ID_AA64DFR0_EL1.PMUVer and DebugVer.
        Some(32) => ftr.shift == 8 || ftr.shift == 0,
        _ => false,
    };
    if lower {
        FtrBits { ty: FtrType::LowerSafe, ..*ftr }
    } else {
        *ftr
    }
}

/// The register-specific checks and fix-ups that run before
/// `set_id_reg()` (the `set_id_*()` handlers), for a vCPU without nested
/// virtualization: the value to go on with, or the error.
pub(crate) fn pre_set(set: IdSet, val: u64, host: &HostFacts) -> Result<u64, Errno> {
    use f::*;
    let mut val = val;
    match set {
        IdSet::Plain => {}
        IdSet::Aa32Dfr0 => {
            let mut perfmon = field(val, AA32_DFR0_PERFMON);
            if perfmon == 0xf {
                val &= !AA32_DFR0_PERFMON;
                perfmon = 0;
            }
            // PMUv3 (3) or later, or none.
            if perfmon != 0 && perfmon < 3 {
                return Err(Errno::EINVAL);
            }
            // Armv8 debug (6) at least.
            if field(val, AA32_DFR0_COPDBG) < 6 {
                return Err(Errno::EINVAL);
            }
        }
        IdSet::Pfr0 => {
            // The MPAM field may be written back as the host has it, and
            // is then ignored.
            if host.sanitised[24] & PFR0_MPAM == val & PFR0_MPAM {
                val &= !PFR0_MPAM;
            }
            if field(val, PFR0_EL0) == 0 || field(val, PFR0_EL1) == 0 {
                return Err(Errno::EINVAL);
            }
        }
        IdSet::Pfr1 => {
            let hw = host.sanitised[25];
            if hw & PFR1_MPAM_FRAC == val & PFR1_MPAM_FRAC {
                val &= !PFR1_MPAM_FRAC;
            }
            // MTE2 without MTE_ASYM_FAULT: a user MTE_frac of 0 (ASYNC) is
            // accepted and replaced by the host's.
            if field(hw, PFR1_MTE) == 2 && field(hw, PFR1_MTE_FRAC) == 0xf && field(val, PFR1_MTE_FRAC) == 0 {
                val = (val & !PFR1_MTE_FRAC) | (hw & PFR1_MTE_FRAC);
            }
        }
        IdSet::Dfr0 => {
            // An IMPLEMENTATION DEFINED PMU (older KVMs gave it out) is
            // read as "no PMU".
            if field(val, DFR0_PMUVER) == 0xf {
                val &= !DFR0_PMUVER;
            }
            // DebugVer may not go below Armv8 debug (6).
            if field(val, DFR0_DEBUGVER) < 6 {
                return Err(Errno::EINVAL);
            }
        }
        IdSet::Mmfr2 => {
            // The deprecated NV field may be written back as the host has
            // it, and is then ignored.
            if host.sanitised[50] & MMFR2_NV == val & MMFR2_NV {
                val &= !MMFR2_NV;
            }
        }
    }
    Ok(val)
}

/// `set_ctr_el0()`'s own check: the L1 instruction cache policy must be
/// VIPT or PIPT (the reserved VPIPT and AIVIVT are refused).
pub(crate) const fn ctr_l1ip_ok(val: u64) -> bool {
    field(val, f::CTR_L1IP) >= 2
}

/// `KVM_ARM_FEATURE_ID_RANGE_IDX()`: the index of `(3, op1, 0, crm, op2)`
/// in `KVM_ARM_GET_REG_WRITABLE_MASKS`'s array (`op1` 0, 1 or 3).
pub(crate) const fn feature_id_range_index(enc: Enc) -> usize {
    let op1 = (enc.op1() & 3) as usize;
    let op1 = if op1 == 3 { 2 } else { op1 };
    (op1 << 6) | ((enc.crm() as usize & 7) << 3) | enc.op2() as usize
}

/// `KVM_ARM_FEATURE_ID_RANGE_SIZE`.
pub(crate) const FEATURE_ID_RANGE_SIZE: usize = 3 * 8 * 8;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The host of the bench (QEMU `-cpu max`): the sanitised values behind
    /// what upstream KVM showed there.
    pub(crate) fn qemu_max() -> HostFacts {
        let mut s = [0u64; NR_ID_REGS];
        let set = |s: &mut [u64; NR_ID_REGS], crm: u8, op2: u8, v: u64| {
            if let Some(i) = id_index(Enc::new(3, 0, 0, crm, op2)) {
                s[i] = v;
            }
        };
        set(&mut s, 1, 0, 0x1020131);
        set(&mut s, 1, 1, 0x10011001);
        set(&mut s, 1, 2, 0x0600000a);
        set(&mut s, 4, 0, 0x1301001121110222);
        set(&mut s, 4, 1, 0x1000000000010021);
        set(&mut s, 4, 2, 0x100000000);
        set(&mut s, 5, 0, 0x1030570c);
        set(&mut s, 6, 0, 0x1221111110312120);
        set(&mut s, 6, 1, 0x111211101211012);
        set(&mut s, 6, 2, 0x1120000000111012);
        set(&mut s, 6, 3, 0x10000010);
        set(&mut s, 7, 0, 0x2100032310201126);
        set(&mut s, 7, 2, 0x1221011110111011);
        set(&mut s, 7, 3, 0x10111);
        HostFacts {
            sanitised: s,
            ctr_el0: 0xb444c004,
            midr: 0xf0510,
            revidr: 0,
            aidr: 0,
            actlr: 0,
            amair: 0,
            el0_32bit: true,
            gicv3: true,
            wfxt: true,
            rasv1p1: false,
            poe: false,
            fpmr: true,
            spectre_v2: Mitigation::Unaffected,
            meltdown: Mitigation::Unaffected,
            spectre_v4: Mitigation::Mitigated,
            spectre_bhb: Mitigation::Unaffected,
        }
    }

    #[test]
    fn field_helpers() {
        let f = FtrBits { signed: true, ty: FtrType::LowerSafe, shift: 20, width: 4, safe: 0 };
        assert_eq!(f.mask(), 0xf << 20);
        assert_eq!(f.value(0xf << 20), -1);
        assert_eq!(f.value(0x7 << 20), 7);
        let u = FtrBits { signed: false, ..f };
        assert_eq!(u.value(0xf << 20), 15);
        assert_eq!(limit_field(0xb, f::DFR0_DEBUGVER, 0xa), 0xa);
        assert_eq!(limit_field(0x9, f::DFR0_DEBUGVER, 0xa), 0x9);
        assert_eq!(with_field(0xff00, 0xf00, 1), 0xf100 & !0xe00);
        assert_eq!(ctr_l1ip_ok(0x3 << 14), true);
        assert_eq!(ctr_l1ip_ok(0x1 << 14), false);
    }

    #[test]
    fn indices() {
        assert_eq!(id_index(Enc::new(3, 0, 0, 1, 0)), Some(0));
        assert_eq!(id_index(Enc::new(3, 0, 0, 7, 7)), Some(55));
        assert_eq!(id_index(Enc::new(3, 0, 0, 0, 5)), None);
        assert_eq!(id_index(Enc::new(3, 1, 0, 1, 0)), None);
        for i in 0..NR_ID_REGS {
            assert_eq!(id_index(id_enc(i)), Some(i));
        }
        assert_eq!(feature_id_range_index(Enc::new(3, 0, 0, 0, 0)), 0);
        assert_eq!(feature_id_range_index(Enc::new(3, 1, 0, 0, 1)), 65);
        assert_eq!(feature_id_range_index(CTR_EL0), 129);
    }

    #[test]
    fn every_visible_writable_register_has_a_description() {
        for i in 0..NR_ID_REGS {
            let d = id_desc(i);
            if d.vis != IdVis::Raz {
                assert!(ftr_bits(id_enc(i)).is_some(), "{i}");
            }
        }
        assert!(ftr_bits(CTR_EL0).is_some());
    }

    #[test]
    fn sanitised_values_match_upstream_on_qemu_max() {
        let h = qemu_max();
        let lim = |crm, op2| id_limit(id_index(Enc::new(3, 0, 0, crm, op2)).unwrap_or(99), &h);
        // What upstream KVM returned for a new VM on the bench.
        assert_eq!(lim(4, 0), 0x1101001021110222);
        assert_eq!(lim(4, 1), 0x21);
        assert_eq!(lim(4, 2), 0x100000000);
        assert_eq!(lim(5, 0), 0x1030500a);
        assert_eq!(lim(1, 2), 0xa);
        assert_eq!(lim(6, 1), 0x111211100211002);
        assert_eq!(lim(6, 2), 0x1120000000110012);
        assert_eq!(lim(7, 2), 0x1221011110011011);
        assert_eq!(lim(7, 3), 0x111);
        assert_eq!(lim(4, 4), 0);
        assert_eq!(lim(3, 3), 0);
        let mut no32 = h;
        no32.el0_32bit = false;
        assert_eq!(id_limit(0, &no32), 0);
        assert_ne!(id_limit(2, &no32), 0);
    }

    #[test]
    fn writable_field_rules() {
        let h = qemu_max();
        let isar0 = id_enc(40);
        let lim = id_limit(40, &h);
        let w = id_desc(40).writable;
        assert_eq!(check_features(isar0, lim, lim, w, false), Ok(()));
        // AES (7:4) lower: fine; RNDR (63:60) higher: not.
        assert_eq!(check_features(isar0, lim & !0xf0, lim, w, false), Ok(()));
        assert_eq!(check_features(isar0, lim | 0xf << 60, lim, w, false), Err(Errno::EINVAL));
        // RES0 bits must stay.
        assert_eq!(check_features(isar0, lim | 0xf, lim, w, false), Err(Errno::EINVAL));
        // PFR0: FP is signed and not writable.
        let pfr0 = id_enc(24);
        let lim = id_limit(24, &h);
        let w = id_desc(24).writable;
        assert_eq!(check_features(pfr0, lim | 0xf << 16, lim, w, false), Err(Errno::EINVAL));
        assert_eq!(check_features(pfr0, lim & !(0xf << 56), lim, w, false), Ok(()));
        // DFR0: PMUVer is exact for the host, lower-safe for KVM.
        let dfr0 = id_enc(32);
        let lim = 0x1030_5f0a;
        let w = id_desc(32).writable;
        assert_eq!(check_features(dfr0, lim & !0xf00, lim, w, false), Ok(()));
        // RAZ registers take only 0.
        assert_eq!(check_features(id_enc(51), 1, 0, 0, true), Err(Errno::EINVAL));
        assert_eq!(check_features(id_enc(51), 0, 0, 0, true), Ok(()));
        // CTR_EL0: L1Ip is exact with safe value VIPT.
        let ctr = h.ctr_el0;
        assert_eq!(check_features(CTR_EL0, (ctr & !f::CTR_L1IP) | 2 << 14, ctr, CTR_WRITABLE, false), Ok(()));
        assert_eq!(check_features(CTR_EL0, ctr | 1 << 29, ctr & !(1 << 29), CTR_WRITABLE, false), Err(Errno::EINVAL));
    }

    #[test]
    fn pre_set_rules() {
        let h = qemu_max();
        assert_eq!(pre_set(IdSet::Pfr0, 0x1101001021110220, &h), Err(Errno::EINVAL));
        assert_eq!(pre_set(IdSet::Dfr0, 0x10305005, &h), Err(Errno::EINVAL));
        assert_eq!(pre_set(IdSet::Dfr0, 0x10305f0a, &h), Ok(0x1030500a));
        assert_eq!(pre_set(IdSet::Aa32Dfr0, 0x0100000a, &h), Err(Errno::EINVAL));
        assert_eq!(pre_set(IdSet::Aa32Dfr0, 0x0f00000a, &h), Ok(0xa));
        assert_eq!(pre_set(IdSet::Aa32Dfr0, 0x5, &h), Err(Errno::EINVAL));
        assert_eq!(pre_set(IdSet::Plain, 5, &h), Ok(5));
    }
}
