// SPDX-License-Identifier: GPL-2.0

//! The arm64 system registers userspace sees through ONE_REG: the entries
//! of upstream's `sys_reg_descs[]` (`arch/arm64/kvm/sys_regs.c`) that have
//! storage or a user accessor, in the same (encoding) order.
//!
//! Pure data and lookup (`core` only), also tested on the host.
//!
//! Registers upstream only traps (RAZ/WI, UNDEF, the GIC CPU interface, the
//! set/way and TLB instructions, ...) have no ONE_REG id and are not here:
//! the run loop's trap handling (`ArmVcpu::guest_sysreg()`) handles the few
//! it needs around this table. Entries
//! behind features kvm_rs does not offer are left out as well, since they
//! are hidden from userspace on every vCPU kvm_rs can make: the PMU
//! (`pmu_visibility`), SVE (`ZCR_EL1`), pointer authentication keys, MTE,
//! SME (`SVCR`) and the EL2 registers of nested virtualization. The
//! registers that depend on the VM's ID registers (`SCTLR2_EL1`,
//! `TCR2_EL1`, `PIR*`, `POR*`, `FPMR`) are here with their [`Vis`].

use super::regs::Enc;

/// Storage of a plain system register of a vCPU (upstream's `enum
/// vcpu_sysreg`, the registers kvm_rs keeps): an index into
/// [`SysRegs`](super::state::SysRegs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Sr {
    MdccintEl1,
    MdscrEl1,
    OslsrEl1,
    Dbgvcr32El2,
    MpidrEl1,
    SctlrEl1,
    ActlrEl1,
    CpacrEl1,
    Sctlr2El1,
    Ttbr0El1,
    Ttbr1El1,
    TcrEl1,
    Tcr2El1,
    Afsr0El1,
    Afsr1El1,
    EsrEl1,
    FarEl1,
    ParEl1,
    MairEl1,
    Pire0El1,
    PirEl1,
    PorEl1,
    AmairEl1,
    VbarEl1,
    DisrEl1,
    ContextidrEl1,
    TpidrEl1,
    CntkctlEl1,
    ClidrEl1,
    CsselrEl1,
    Fpmr,
    PorEl0,
    TpidrEl0,
    TpidrroEl0,
    CntpCtlEl0,
    CntpCvalEl0,
    CntvCtlEl0,
    CntvCvalEl0,
    Dacr32El2,
    Ifsr32El2,
    Fpexc32El2,
    /// `SP_EL1`: a core register for userspace (`KVM_REG_ARM_CORE_REG(sp_el1)`).
    SpEl1,
    /// `ELR_EL1`: a core register for userspace.
    ElrEl1,
    /// `SPSR_EL1`: a core register for userspace (`spsr[0]`).
    SpsrEl1,
}

/// The number of [`Sr`] registers.
pub(crate) const NR_SR: usize = Sr::SpsrEl1 as usize + 1;

/// How a plain register resets (`sys_reg_desc.reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reset {
    /// `reset_val`: this value.
    Val(u64),
    /// `reset_unknown`: upstream's recognisable poison value.
    Unknown,
    /// `reset_actlr`: the host's `ACTLR_EL1` (read at EL2).
    Actlr,
    /// `reset_amair_el1`: the host's `AMAIR_EL1` (read at EL2).
    Amair,
}

/// `reset_unknown()`'s value.
pub(crate) const RESET_UNKNOWN: u64 = 0x1de7_ec7e_dbad_c0de;

/// When a register exists for userspace (its `visibility` callback), beyond
/// the features kvm_rs never offers (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vis {
    /// Always.
    Always,
    /// `sctlr2_visibility`: the VM's `ID_AA64MMFR3_EL1.SCTLRX`.
    Sctlr2,
    /// `tcr2_visibility`: the VM's `ID_AA64MMFR3_EL1.TCRX`.
    Tcr2,
    /// `s1pie_visibility`: the VM's `ID_AA64MMFR3_EL1.S1PIE`.
    S1pie,
    /// `s1poe_visibility`: the host has POE and the VM's
    /// `ID_AA64MMFR3_EL1.S1POE`.
    S1poe,
    /// `fp8_visibility`: the host has FPMR and the VM's
    /// `ID_AA64PFR2_EL1.FPMR`.
    Fpmr,
}

/// A debug breakpoint/watchpoint register (`DBG{B,W}{V,C}Rn_EL1`), by its
/// `op2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wb {
    /// `DBGBVRn_EL1` (op2 4).
    Bvr,
    /// `DBGBCRn_EL1` (op2 5).
    Bcr,
    /// `DBGWVRn_EL1` (op2 6).
    Wvr,
    /// `DBGWCRn_EL1` (op2 7).
    Wcr,
}

/// An implementation ID register (`IMPLEMENTATION_ID()`): VM-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Imp {
    /// `MIDR_EL1` (writable mask bits 31:0).
    Midr,
    /// `REVIDR_EL1`.
    Revidr,
    /// `AIDR_EL1`.
    Aidr,
}

/// A timer register with a user accessor (`arch_timer_{get,set}_user()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counter {
    /// `CNTPCT_EL0`: the physical counter minus the VM's physical offset.
    Physical,
    /// `CNTVCT_EL0`: the counter minus the VM's virtual offset.
    Virtual,
}

/// What a table entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A plain per-vCPU register: get returns it, set stores it.
    Reg(Sr, Reset, Vis),
    /// `CNT{P,V}_{CTL,CVAL}_EL0` (`TIMER_REG()`): reset to 0; a write to a
    /// `CTL` drops `ISTATUS`.
    Timer(Sr),
    /// A debug register `n` (`DBG_BCR_BVR_WCR_WVR_EL1(n)`), reset to 0.
    DbgWb(Wb, u8),
    /// `OSLSR_EL1`: only `OSLK` may change.
    Oslsr,
    /// `MPIDR_EL1`: from the vCPU id, reset once (before the first
    /// `KVM_ARM_VCPU_INIT`), any value may be written.
    Mpidr,
    /// An implementation ID register.
    Imp(Imp),
    /// A feature ID register (`op0 3, op1 0, CRn 0, CRm 1-7`): VM-wide,
    /// see [`super::idregs`].
    Id,
    /// `CTR_EL0`: VM-wide, writable within its mask.
    Ctr,
    /// `CLIDR_EL1`: per vCPU, reset once, checked on write.
    Clidr,
    /// `CNTPCT_EL0` or `CNTVCT_EL0`.
    Counter(Counter),
}

/// One entry of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Desc {
    /// The encoding.
    pub(crate) enc: Enc,
    /// What it is.
    pub(crate) kind: Kind,
}

const fn reg(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, sr: Sr, reset: Reset) -> Desc {
    Desc { enc: Enc::new(op0, op1, crn, crm, op2), kind: Kind::Reg(sr, reset, Vis::Always) }
}

/// A plain register `d` with visibility `vis`.
const fn vis(d: Desc, vis: Vis) -> Desc {
    match d.kind {
        Kind::Reg(sr, reset, _) => Desc { enc: d.enc, kind: Kind::Reg(sr, reset, vis) },
        _ => d,
    }
}

const fn other(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, kind: Kind) -> Desc {
    Desc { enc: Enc::new(op0, op1, crn, crm, op2), kind }
}

/// The entries after the ID registers, in encoding order.
const TAIL: [Desc; 40] = {
    use Reset::{
        Unknown,
        Val, //
    };
    [
        reg(3, 0, 1, 0, 0, Sr::SctlrEl1, Val(0x00c5_0078)),
        reg(3, 0, 1, 0, 1, Sr::ActlrEl1, Reset::Actlr),
        reg(3, 0, 1, 0, 2, Sr::CpacrEl1, Val(0)),
        vis(reg(3, 0, 1, 0, 3, Sr::Sctlr2El1, Val(0)), Vis::Sctlr2),
        reg(3, 0, 2, 0, 0, Sr::Ttbr0El1, Unknown),
        reg(3, 0, 2, 0, 1, Sr::Ttbr1El1, Unknown),
        reg(3, 0, 2, 0, 2, Sr::TcrEl1, Val(0)),
        vis(reg(3, 0, 2, 0, 3, Sr::Tcr2El1, Val(0)), Vis::Tcr2),
        reg(3, 0, 5, 1, 0, Sr::Afsr0El1, Unknown),
        reg(3, 0, 5, 1, 1, Sr::Afsr1El1, Unknown),
        reg(3, 0, 5, 2, 0, Sr::EsrEl1, Unknown),
        reg(3, 0, 6, 0, 0, Sr::FarEl1, Unknown),
        reg(3, 0, 7, 4, 0, Sr::ParEl1, Unknown),
        reg(3, 0, 10, 2, 0, Sr::MairEl1, Unknown),
        vis(reg(3, 0, 10, 2, 2, Sr::Pire0El1, Unknown), Vis::S1pie),
        vis(reg(3, 0, 10, 2, 3, Sr::PirEl1, Unknown), Vis::S1pie),
        vis(reg(3, 0, 10, 2, 4, Sr::PorEl1, Unknown), Vis::S1poe),
        reg(3, 0, 10, 3, 0, Sr::AmairEl1, Reset::Amair),
        reg(3, 0, 12, 0, 0, Sr::VbarEl1, Val(0)),
        reg(3, 0, 12, 1, 1, Sr::DisrEl1, Val(0)),
        reg(3, 0, 13, 0, 1, Sr::ContextidrEl1, Val(0)),
        reg(3, 0, 13, 0, 4, Sr::TpidrEl1, Unknown),
        reg(3, 0, 14, 1, 0, Sr::CntkctlEl1, Val(0)),
        other(3, 1, 0, 0, 1, Kind::Clidr),
        other(3, 1, 0, 0, 7, Kind::Imp(Imp::Aidr)),
        reg(3, 2, 0, 0, 0, Sr::CsselrEl1, Unknown),
        other(3, 3, 0, 0, 1, Kind::Ctr),
        vis(reg(3, 3, 4, 4, 2, Sr::Fpmr, Val(0)), Vis::Fpmr),
        vis(reg(3, 3, 10, 2, 4, Sr::PorEl0, Unknown), Vis::S1poe),
        reg(3, 3, 13, 0, 2, Sr::TpidrEl0, Unknown),
        reg(3, 3, 13, 0, 3, Sr::TpidrroEl0, Unknown),
        other(3, 3, 14, 0, 1, Kind::Counter(Counter::Physical)),
        other(3, 3, 14, 0, 2, Kind::Counter(Counter::Virtual)),
        other(3, 3, 14, 2, 1, Kind::Timer(Sr::CntpCtlEl0)),
        other(3, 3, 14, 2, 2, Kind::Timer(Sr::CntpCvalEl0)),
        other(3, 3, 14, 3, 1, Kind::Timer(Sr::CntvCtlEl0)),
        other(3, 3, 14, 3, 2, Kind::Timer(Sr::CntvCvalEl0)),
        reg(3, 4, 3, 0, 0, Sr::Dacr32El2, Unknown),
        reg(3, 4, 5, 0, 1, Sr::Ifsr32El2, Unknown),
        reg(3, 4, 5, 3, 0, Sr::Fpexc32El2, Val(0x700)),
    ]
};

/// The length of [`TAIL`].
const TAIL_LEN: usize = TAIL.len();

/// The number of table entries: 64 debug registers, `MDCCINT_EL1`,
/// `MDSCR_EL1`, `OSLSR_EL1`, `DBGVCR32_EL2`, `MIDR_EL1`, `MPIDR_EL1`,
/// `REVIDR_EL1`, the 56 feature ID registers and [`TAIL`].
pub(crate) const NR_DESCS: usize = 64 + 4 + 3 + 56 + TAIL_LEN;

const fn build() -> [Desc; NR_DESCS] {
    let mut t = [other(0, 0, 0, 0, 0, Kind::Oslsr); NR_DESCS];
    let mut i = 0;
    let mut n = 0;
    while n < 16 {
        if n == 2 {
            t[i] = reg(2, 0, 0, 2, 0, Sr::MdccintEl1, Reset::Val(0));
            t[i + 1] = reg(2, 0, 0, 2, 2, Sr::MdscrEl1, Reset::Val(0));
            i += 2;
        }
        t[i] = other(2, 0, 0, n, 4, Kind::DbgWb(Wb::Bvr, n));
        t[i + 1] = other(2, 0, 0, n, 5, Kind::DbgWb(Wb::Bcr, n));
        t[i + 2] = other(2, 0, 0, n, 6, Kind::DbgWb(Wb::Wvr, n));
        t[i + 3] = other(2, 0, 0, n, 7, Kind::DbgWb(Wb::Wcr, n));
        i += 4;
        n += 1;
    }
    t[i] = other(2, 0, 1, 1, 4, Kind::Oslsr);
    t[i + 1] = reg(2, 4, 0, 7, 0, Sr::Dbgvcr32El2, Reset::Val(0));
    t[i + 2] = other(3, 0, 0, 0, 0, Kind::Imp(Imp::Midr));
    t[i + 3] = other(3, 0, 0, 0, 5, Kind::Mpidr);
    t[i + 4] = other(3, 0, 0, 0, 6, Kind::Imp(Imp::Revidr));
    i += 5;
    let mut crm = 1;
    while crm < 8 {
        let mut op2 = 0;
        while op2 < 8 {
            t[i] = other(3, 0, 0, crm, op2, Kind::Id);
            i += 1;
            op2 += 1;
        }
        crm += 1;
    }
    let mut j = 0;
    while j < TAIL_LEN {
        t[i] = TAIL[j];
        i += 1;
        j += 1;
    }
    t
}

/// The table, sorted by encoding (checked by the tests).
pub(crate) static DESCS: [Desc; NR_DESCS] = build();

/// The entry of `enc` (`find_reg()`), if userspace may know it.
pub(crate) fn find(enc: Enc) -> Option<&'static Desc> {
    DESCS.binary_search_by_key(&enc, |d| d.enc).ok().and_then(|i| DESCS.get(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_complete() {
        for w in DESCS.windows(2) {
            assert!(w[0].enc < w[1].enc, "{:?} !< {:?}", w[0], w[1]);
        }
        assert_eq!(DESCS.iter().filter(|d| matches!(d.kind, Kind::DbgWb(..))).count(), 64);
        assert_eq!(DESCS.iter().filter(|d| d.kind == Kind::Id).count(), 56);
        // Every storage slot but the three core-register ones is used once.
        let mut used = [0; NR_SR];
        for d in DESCS.iter() {
            if let Kind::Reg(sr, _, _) | Kind::Timer(sr) = d.kind {
                used[sr as usize] += 1;
            }
        }
        for (i, n) in used.iter().enumerate() {
            let core = [Sr::SpEl1 as usize, Sr::ElrEl1 as usize, Sr::SpsrEl1 as usize, Sr::OslsrEl1 as usize,
                        Sr::MpidrEl1 as usize, Sr::ClidrEl1 as usize];
            assert_eq!(*n, if core.contains(&i) { 0 } else { 1 }, "slot {i}");
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(find(Enc::new(3, 0, 1, 0, 0)).map(|d| d.kind), Some(Kind::Reg(Sr::SctlrEl1, Reset::Val(0xc50078), Vis::Always)));
        assert_eq!(find(Enc::new(2, 0, 0, 5, 4)).map(|d| d.kind), Some(Kind::DbgWb(Wb::Bvr, 5)));
        assert_eq!(find(Enc::new(2, 0, 0, 2, 2)).map(|d| d.kind), Some(Kind::Reg(Sr::MdscrEl1, Reset::Val(0), Vis::Always)));
        assert_eq!(find(Enc::new(3, 0, 0, 3, 3)).map(|d| d.kind), Some(Kind::Id));
        assert_eq!(find(Enc::new(3, 0, 0, 0, 1)), None);
        // Trap-only, hidden or feature-gated registers kvm_rs never shows.
        for enc in [Enc::new(2, 0, 1, 0, 0), Enc::new(3, 1, 0, 0, 0), Enc::new(3, 3, 14, 3, 0),
                    Enc::new(3, 0, 1, 2, 0), Enc::new(3, 3, 9, 12, 0), Enc::new(3, 4, 1, 1, 0),
                    Enc::new(3, 4, 4, 1, 0), Enc::new(3, 0, 4, 0, 0), Enc::new(3, 7, 15, 15, 7)] {
            assert_eq!(find(enc), None, "{enc:?}");
        }
        assert_eq!(DESCS.len(), 167);
    }
}
