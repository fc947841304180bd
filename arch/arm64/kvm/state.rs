// SPDX-License-Identifier: GPL-2.0

//! The register state of an arm64 VM and its vCPUs, and everything
//! userspace does with it: `KVM_ARM_VCPU_INIT` (feature checks and reset),
//! `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG`, `KVM_GET_REG_LIST` and
//! `KVM_ARM_GET_REG_WRITABLE_MASKS`, with upstream's checks and errnos in
//! upstream's order (`arch/arm64/kvm/{arm,guest,reset,sys_regs,
//! hypercalls,arch_timer}.c`).
//!
//! Pure logic (`core` only), also tested on the host: the kernel glue only
//! reads the host ([`HostFacts`], the counter) and moves bytes between
//! userspace and these functions.
//!
//! # Layout for the world switch
//!
//! [`VcpuRegs`] is what the world switch (`switch.rs`) loads into the CPU on guest
//! entry and saves on exit (upstream's `kvm_cpu_context`): [`CoreRegs`]
//! (general-purpose, PC, PSTATE, FP/SIMD), [`SysRegs`] (the EL1/EL0 system
//! registers, the EL1 timers' control and compare values, the AArch32
//! `DACR32`/`IFSR32`/`FPEXC32`), [`DebugRegs`] (the guest's breakpoints and
//! watchpoints). VM-wide configuration that the guest only reads — the ID
//! registers, the counter offsets, the firmware interface — lives in
//! [`VmRegs`]; the world switch programs it into the trap and offset
//! registers (`HCR_EL2`, `CNTVOFF_EL2`, ...), it never changes while a
//! guest runs (userspace may no longer change it once the VM has run).

use super::{
    abi::Errno,
    idregs::{
        self,
        check_features,
        id_desc,
        id_index,
        id_limit,
        visible_as_raz,
        HostFacts,
        IdVis,
        Mitigation,
        NR_ID_REGS, //
    },
    one_reg::{
        reg_size,
        RegEmit, //
    },
    regs::{
        core_field,
        demux_ccsidr,
        demux_id,
        list_id,
        pstate_mode,
        sysreg_enc,
        CoreError,
        CoreField,
        CoreRegs,
        Enc,
        PstateMode,
        RegId,
        COPROC_FW,
        COPROC_FW_FEAT_BMAP,
        COPROC_SVE,
        CSSELR_MAX,
        KVM_REG_ARM64, //
    },
    sysregs::{
        self,
        Counter,
        Imp,
        Kind,
        Reset,
        Sr,
        Vis,
        Wb,
        DESCS,
        NR_SR,
        RESET_UNKNOWN, //
    },
};

/// `KVM_ARM_VCPU_POWER_OFF` and the other vCPU features (bit numbers of
/// `kvm_vcpu_init.features[0]`).
pub(crate) mod feature {
    pub(crate) const POWER_OFF: u32 = 1 << 0;
    pub(crate) const EL1_32BIT: u32 = 1 << 1;
    pub(crate) const PSCI_0_2: u32 = 1 << 2;
    pub(crate) const PMU_V3: u32 = 1 << 3;
    pub(crate) const SVE: u32 = 1 << 4;
    pub(crate) const PTRAUTH_ADDRESS: u32 = 1 << 5;
    pub(crate) const PTRAUTH_GENERIC: u32 = 1 << 6;
    pub(crate) const HAS_EL2: u32 = 1 << 7;
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) const HAS_EL2_E2H0: u32 = 1 << 8;
    pub(crate) const PMU_V3_STRICT: u32 = 1 << 9;
    /// `KVM_VCPU_VALID_FEATURES`: the 10 features upstream knows.
    pub(crate) const VALID: u32 = (1 << 10) - 1;
    /// `system_supported_vcpu_features()` of kvm_rs: no AArch32 EL1, PMU,
    /// SVE, pointer authentication or nested virtualization yet (their
    /// capabilities are not claimed). `HAS_EL2_E2H0` alone is accepted, as
    /// upstream does without nested virtualization (it only qualifies
    /// `HAS_EL2`).
    pub(crate) const SUPPORTED: u32 =
        VALID & !(EL1_32BIT | PMU_V3 | PMU_V3_STRICT | SVE | PTRAUTH_ADDRESS | PTRAUTH_GENERIC | HAS_EL2);
}

/// `KVM_ARM_TARGET_GENERIC_V8`.
pub(crate) const TARGET_GENERIC_V8: u32 = 5;

/// `kvm_target_cpu()`: the `KVM_ARM_TARGET_*` of a host CPU with this
/// `MIDR_EL1` (the old per-CPU targets, else generic).
pub(crate) const fn target_cpu(midr: u64) -> u32 {
    let implementer = (midr >> 24) & 0xff;
    let part = (midr >> 4) & 0xfff;
    match (implementer, part) {
        // ARM: AEM v8, Foundation model, Cortex-A53, Cortex-A57.
        (0x41, 0xd0f) => 0,
        (0x41, 0xd00) => 1,
        (0x41, 0xd03) => 4,
        (0x41, 0xd07) => 2,
        // APM X-Gene Potenza.
        (0x50, 0x000) => 3,
        _ => TARGET_GENERIC_V8,
    }
}

/// `PSCI_VERSION(major, minor)`.
const fn psci_version(major: u64, minor: u64) -> u64 {
    (major << 16) | minor
}

/// The firmware pseudo-registers (`kvm_arm_fw_reg_ids[]`).
pub(crate) const FW_REG_IDS: [u64; 8] = [
    fw_id(COPROC_FW, 0),
    fw_id(COPROC_FW, 1),
    fw_id(COPROC_FW, 2),
    fw_id(COPROC_FW, 3),
    fw_id(COPROC_FW_FEAT_BMAP, 0),
    fw_id(COPROC_FW_FEAT_BMAP, 1),
    fw_id(COPROC_FW_FEAT_BMAP, 2),
    fw_id(COPROC_FW_FEAT_BMAP, 3),
];

/// `KVM_REG_ARM_FW_REG(n)` / `KVM_REG_ARM_FW_FEAT_BMAP_REG(n)`.
const fn fw_id(coproc: u64, n: u64) -> u64 {
    KVM_REG_ARM64 | super::one_reg::KVM_REG_SIZE_U64 | coproc | n
}

/// The features each firmware bitmap may have (`KVM_ARM_SMCCC_*_FEATURES`):
/// standard (TRNG), standard hypervisor (PV time), vendor hypervisor
/// (function features, PTP), vendor hypervisor 2 (discovery of the
/// implementation CPUs). All but the last are offered by default.
const SMCCC_FEATURES: [u64; 4] = [0x1, 0x1, 0x3, 0x3];

/// `KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_2_ENABLED`.
const WA2_ENABLED: u64 = 1 << 4;

/// The VM-wide register state (upstream's `kvm->arch` parts): the vCPU
/// features, the ID registers, the firmware interface, the counter offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VmRegs {
    /// What the host offers (read when the VM was created).
    pub(crate) host: HostFacts,
    /// `kvm->arch.vcpu_features` once a vCPU was initialized
    /// (`KVM_ARCH_FLAG_VCPU_FEATURES_CONFIGURED`): every vCPU must use the
    /// same.
    features: Option<u32>,
    /// `KVM_ARCH_FLAG_ID_REGS_INITIALIZED`: the first reset set them.
    id_regs_initialized: bool,
    /// `kvm->arch.id_regs`: the feature ID registers, by [`id_index`].
    id: [u64; NR_ID_REGS],
    /// `CTR_EL0`.
    ctr: u64,
    /// `MIDR_EL1`, `REVIDR_EL1`, `AIDR_EL1`.
    imp: [u64; 3],
    /// `kvm->arch.psci_version` (0: the latest, 1.3).
    psci_version: u64,
    /// `kvm->arch.smccc_feat`: the four firmware feature bitmaps.
    smccc: [u64; 4],
    /// `timer_data.voffset`: `CNTVCT_EL0` = counter - `voffset`.
    voffset: u64,
    /// `timer_data.poffset`: `CNTPCT_EL0` = counter - `poffset`.
    poffset: u64,
    /// `KVM_ARCH_FLAG_HAS_RAN_ONCE`: a vCPU passed its first-run checks;
    /// the configuration is frozen.
    has_ran_once: bool,
    /// `KVM_ARCH_FLAG_WRITABLE_IMP_ID_REGS`
    /// (`KVM_CAP_ARM_WRITABLE_IMP_ID_REGS`): userspace may change `MIDR_EL1`,
    /// `REVIDR_EL1` and `AIDR_EL1` before the first run, and the guest then
    /// reads these values instead of the CPU's.
    writable_imp_id_regs: bool,
}

impl VmRegs {
    /// A new VM's state (`kvm_arch_init_vm()`).
    pub(crate) fn new(host: HostFacts) -> VmRegs {
        VmRegs {
            host,
            features: None,
            id_regs_initialized: false,
            id: [0; NR_ID_REGS],
            ctr: 0,
            imp: [0; 3],
            psci_version: 0,
            smccc: [SMCCC_FEATURES[0], SMCCC_FEATURES[1], SMCCC_FEATURES[2], 0],
            voffset: 0,
            poffset: 0,
            has_ran_once: false,
            writable_imp_id_regs: false,
        }
    }

    /// `KVM_ENABLE_CAP(KVM_CAP_ARM_WRITABLE_IMP_ID_REGS)` (before any vCPU).
    pub(crate) fn set_writable_imp_id_regs(&mut self) {
        self.writable_imp_id_regs = true;
    }

    /// Whether the VM's ID register `index` has field `mask` at least 1
    /// (`kvm_has_feat(kvm, reg, field, IMP)` of an unsigned field).
    fn has_feat(&self, index: usize, mask: u64) -> bool {
        self.id.get(index).is_some_and(|v| v & mask != 0)
    }

    /// Whether a vCPU feature was configured (`vcpu_has_feature()`).
    fn has_feature(&self, f: u32) -> bool {
        self.features.is_some_and(|v| v & f != 0)
    }

    /// `KVM_REG_ARM_PSCI_VERSION` as the guest sees it (`kvm_psci_version()`).
    fn psci(&self) -> u64 {
        if !self.has_feature(feature::PSCI_0_2) {
            psci_version(0, 1)
        } else if self.psci_version == 0 {
            psci_version(1, 3)
        } else {
            self.psci_version
        }
    }

    /// `get_kernel_wa_level()` of firmware register `n` (1 to 3).
    fn wa_level(&self, n: u64) -> u64 {
        match n {
            1 => match self.host.spectre_v2 {
                Mitigation::Vulnerable => 0,
                Mitigation::Mitigated => 1,
                Mitigation::Unaffected => 2,
            },
            2 => match self.host.spectre_v4 {
                // With SSBS the guest mitigates itself: no firmware call.
                Mitigation::Mitigated if self.has_feat(25, idregs::f::PFR1_SSBS) => 0,
                Mitigation::Mitigated | Mitigation::Unaffected => 3,
                Mitigation::Vulnerable => 0,
            },
            _ => match self.host.spectre_bhb {
                Mitigation::Vulnerable => 0,
                Mitigation::Mitigated => 1,
                Mitigation::Unaffected => 2,
            },
        }
    }

    /// Whether a [`Vis`] register exists for this VM.
    fn visible(&self, vis: Vis) -> bool {
        use idregs::f::*;
        // ID_AA64MMFR3_EL1 and ID_AA64PFR2_EL1.
        match vis {
            Vis::Always => true,
            Vis::Sctlr2 => self.has_feat(51, MMFR3_SCTLRX),
            Vis::Tcr2 => self.has_feat(51, MMFR3_TCRX),
            Vis::S1pie => self.has_feat(51, MMFR3_S1PIE),
            Vis::S1poe => self.host.poe && self.has_feat(51, MMFR3_S1POE),
            Vis::Fpmr => self.host.fpmr && self.has_feat(26, PFR2_FPMR),
        }
    }

    /// The value of an implementation ID register.
    fn imp(&self, r: Imp) -> u64 {
        match r {
            Imp::Midr => self.imp[0],
            Imp::Revidr => self.imp[1],
            Imp::Aidr => self.imp[2],
        }
    }
}

/// What the guest's firmware calls see of the VM (`kvm_psci_version()`,
/// the SMCCC feature bitmaps, the workaround levels), for the run loop.
impl VmRegs {
    /// The PSCI version the guest sees (`kvm_psci_version()`).
    pub(crate) fn guest_psci_version(&self) -> u64 {
        self.psci()
    }

    /// `get_kernel_wa_level()` of `SMCCC_ARCH_WORKAROUND_n` (1 to 3): 0
    /// vulnerable/not available, 1 mitigated (available), 2 unaffected
    /// (`_2`: 3 not required).
    pub(crate) fn guest_wa_level(&self, n: u64) -> u64 {
        self.wa_level(n)
    }

    /// Whether the guest has `ID_AA64PFR1_EL1.SSBS`.
    pub(crate) fn guest_has_ssbs(&self) -> bool {
        self.has_feat(25, idregs::f::PFR1_SSBS)
    }

    /// The firmware feature bitmaps: standard, standard hypervisor, vendor
    /// hypervisor, vendor hypervisor 2 (`kvm->arch.smccc_feat`).
    pub(crate) fn smccc_bitmaps(&self) -> [u64; 4] {
        self.smccc
    }

    /// Whether the guest has `FEAT_IDST` (`ID_AA64MMFR2_EL1.IDS`): an
    /// unhandled access to the ID space is reported as a trapped system
    /// register access, not an undefined instruction.
    pub(crate) fn guest_has_idst(&self) -> bool {
        self.has_feat(50, 0xf << 36)
    }

    /// `CNTVOFF_EL2`: the VM's virtual counter offset.
    pub(crate) fn voffset(&self) -> u64 {
        self.voffset
    }

    /// The guest's `MIDR_EL1` (`VPIDR_EL2`).
    pub(crate) fn guest_midr(&self) -> u64 {
        self.imp[0]
    }
}

/// What a trapped guest system register access does
/// ([`ArmVcpu::guest_sysreg`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuestSysreg {
    /// A read: this value goes to the target register.
    Read(u64),
    /// A write was taken (or ignored).
    Written,
    /// Not emulated: inject an undefined instruction (upstream's
    /// "unsupported guest sys_reg access").
    Undefined,
}

/// `CSSELR_EL1` encoding (op0 3, op1 2, CRn 0, CRm 0, op2 0).
const CSSELR_ENC: Enc = Enc::new(3, 2, 0, 0, 0);
/// `CCSIDR_EL1` (3, 1, 0, 0, 0).
const CCSIDR_ENC: Enc = Enc::new(3, 1, 0, 0, 0);

impl ArmVcpu {
    /// `kvm_reset_vcpu()` for a PSCI `CPU_ON`: every register to its reset
    /// value, then `pc` and `x0` from the call.
    pub(crate) fn reset_for_cpu_on(&mut self, vm: &mut VmRegs, pc: u64, x0: u64) {
        self.reset(vm);
        self.regs.core.pc = pc;
        if let Some(r) = self.regs.core.x.get_mut(0) {
            *r = x0;
        }
    }

    /// A guest access to system register `enc` that trapped to EL2 (ESR
    /// class 0x18: `HCR_EL2.{TID1,TID2,TID3,TACR}`, `MDCR_EL2.{TDA,TDOSA,
    /// TDRA}`), with `val` the written value: the ID and cache registers
    /// read the VM's values (writes are undefined), `ACTLR_EL1` and the
    /// debug registers are kept in memory, the OS lock and the other debug
    /// registers are RAZ/WI as upstream without a debug feature in use.
    /// Anything else is undefined. The registers the world switch loads in
    /// hardware never trap.
    pub(crate) fn guest_sysreg(&mut self, vm: &VmRegs, enc: Enc, write: Option<u64>, now: u64) -> GuestSysreg {
        const OSLAR: Enc = Enc::new(2, 0, 1, 0, 4);
        if enc == CSSELR_ENC {
            return match write {
                Some(v) => {
                    self.regs.sys.set(Sr::CsselrEl1, v & 0x1f);
                    GuestSysreg::Written
                }
                None => GuestSysreg::Read(self.regs.sys.get(Sr::CsselrEl1) & 0x1f),
            };
        }
        if enc == CCSIDR_ENC {
            if write.is_some() {
                return GuestSysreg::Undefined;
            }
            let csselr = (self.regs.sys.get(Sr::CsselrEl1) & 0xf) as usize;
            return GuestSysreg::Read(if csselr < CSSELR_MAX { u64::from(self.ccsidr(vm, csselr)) } else { 0 });
        }
        if enc == OSLAR {
            if let Some(v) = write {
                let lk = if v & 1 != 0 { OSLSR_OSLK } else { 0 };
                self.regs.sys.set(Sr::OslsrEl1, OSLSR_OSLM_IMPLEMENTED | lk);
                return GuestSysreg::Written;
            }
            return GuestSysreg::Undefined;
        }
        let Some(d) = sysregs::find(enc) else {
            // Other debug registers (op0 2): RAZ/WI.
            if enc.op0() == 2 {
                return match write {
                    Some(_) => GuestSysreg::Written,
                    None => GuestSysreg::Read(0),
                };
            }
            return GuestSysreg::Undefined;
        };
        if !self.sys_visible(vm, d) {
            return GuestSysreg::Undefined;
        }
        match (d.kind, write) {
            (_, None) => GuestSysreg::Read(self.sys_get(vm, d, now)),
            (Kind::Reg(sr, _, _), Some(v)) => {
                self.regs.sys.set(sr, v);
                GuestSysreg::Written
            }
            (Kind::DbgWb(wb, n), Some(v)) => {
                if let Some(slot) = self.regs.dbg.slot(wb, n) {
                    *slot = v;
                }
                GuestSysreg::Written
            }
            // OSLSR_EL1, ID, implementation and cache registers are
            // read-only; timers and counters never trap.
            _ => GuestSysreg::Undefined,
        }
    }
}

/// The plain system registers of a vCPU, by [`Sr`] (part of upstream's
/// `ctxt.sys_regs[]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SysRegs(pub(crate) [u64; NR_SR]);

impl SysRegs {
    /// The value of `sr`.
    pub(crate) fn get(&self, sr: Sr) -> u64 {
        self.0.get(sr as usize).copied().unwrap_or(0)
    }

    /// Sets `sr`.
    pub(crate) fn set(&mut self, sr: Sr, v: u64) {
        if let Some(slot) = self.0.get_mut(sr as usize) {
            *slot = v;
        }
    }
}

/// The guest's hardware breakpoints and watchpoints
/// (`vcpu->arch.vcpu_debug_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DebugRegs {
    /// `DBGBVRn_EL1`.
    pub(crate) bvr: [u64; 16],
    /// `DBGBCRn_EL1`.
    pub(crate) bcr: [u64; 16],
    /// `DBGWVRn_EL1`.
    pub(crate) wvr: [u64; 16],
    /// `DBGWCRn_EL1`.
    pub(crate) wcr: [u64; 16],
}

impl DebugRegs {
    fn slot(&mut self, wb: Wb, n: u8) -> Option<&mut u64> {
        let a = match wb {
            Wb::Bvr => &mut self.bvr,
            Wb::Bcr => &mut self.bcr,
            Wb::Wvr => &mut self.wvr,
            Wb::Wcr => &mut self.wcr,
        };
        a.get_mut(usize::from(n))
    }
}

/// The register state of a vCPU: what the world switch loads and saves
/// (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VcpuRegs {
    /// General-purpose, PC, PSTATE and FP/SIMD registers.
    pub(crate) core: CoreRegs,
    /// The system registers.
    pub(crate) sys: SysRegs,
    /// The breakpoint and watchpoint registers.
    pub(crate) dbg: DebugRegs,
    /// `vcpu->arch.ccsidr`: the CCSIDR values userspace set (else they are
    /// derived from `CTR_EL0`).
    pub(crate) ccsidr: Option<[u32; CSSELR_MAX]>,
}

/// The arm64 register side of a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArmVcpu {
    /// `vcpu->vcpu_id` (the `MPIDR_EL1` affinity).
    pub(crate) vcpu_id: u32,
    /// `VCPU_INITIALIZED`: `KVM_ARM_VCPU_INIT` succeeded.
    pub(crate) initialized: bool,
    /// `vcpu_has_run_once()`: the first-run checks of `KVM_RUN` passed.
    pub(crate) has_run_once: bool,
    /// The registers.
    pub(crate) regs: VcpuRegs,
}

impl ArmVcpu {
    /// A new vCPU (`kvm_arch_vcpu_create()`): zeroed, uninitialized. The
    /// VM's virtual counter restarts at 0 and the physical one is the
    /// host's (`kvm_timer_vcpu_init()`), `now` being the counter.
    pub(crate) fn new(vcpu_id: u32, vm: &mut VmRegs, now: u64) -> ArmVcpu {
        vm.voffset = now;
        vm.poffset = 0;
        ArmVcpu {
            vcpu_id,
            initialized: false,
            has_run_once: false,
            regs: VcpuRegs {
                core: CoreRegs::default(),
                sys: SysRegs([0; NR_SR]),
                dbg: DebugRegs::default(),
                ccsidr: None,
            },
        }
    }

    /// `KVM_ARM_VCPU_INIT` (`kvm_arch_vcpu_ioctl_vcpu_init()`), minus the
    /// MP state: returns whether the vCPU starts powered off.
    pub(crate) fn init(&mut self, vm: &mut VmRegs, target: u32, features: &[u32; 7]) -> Result<bool, Errno> {
        let power_off = features[0] & feature::POWER_OFF != 0;
        let f = features[0] & !feature::POWER_OFF;
        if target != TARGET_GENERIC_V8 && target != target_cpu(vm.host.midr) {
            return Err(Errno::EINVAL);
        }
        // kvm_vcpu_init_check_features().
        if f & !feature::VALID != 0 || features.iter().skip(1).any(|&w| w != 0) {
            return Err(Errno::ENOENT);
        }
        if f & !feature::SUPPORTED != 0 {
            return Err(Errno::EINVAL);
        }
        if !self.initialized {
            if vm.features.is_some_and(|v| v != f) {
                return Err(Errno::EINVAL);
            }
            vm.features = Some(f);
            self.reset(vm);
            self.initialized = true;
        } else {
            if vm.features != Some(f) {
                return Err(Errno::EINVAL);
            }
            self.reset(vm);
        }
        Ok(power_off)
    }

    /// `kvm_reset_vcpu()`: the core registers, the system registers (the
    /// VM's ID registers only on the VM's first reset, `MPIDR_EL1` and
    /// `CLIDR_EL1` only before the vCPU's first init) and the timers.
    fn reset(&mut self, vm: &mut VmRegs) {
        let r = &mut self.regs;
        r.core.reset();
        for d in DESCS.iter() {
            match d.kind {
                Kind::Reg(sr, reset, _) => {
                    let v = match reset {
                        Reset::Val(v) => v,
                        Reset::Unknown => RESET_UNKNOWN,
                        Reset::Actlr => vm.host.actlr,
                        Reset::Amair => vm.host.amair,
                    };
                    r.sys.set(sr, v);
                }
                Kind::Timer(sr) => r.sys.set(sr, 0),
                Kind::DbgWb(wb, n) => {
                    if let Some(slot) = r.dbg.slot(wb, n) {
                        *slot = 0;
                    }
                }
                Kind::Oslsr => r.sys.set(Sr::OslsrEl1, OSLSR_OSLM_IMPLEMENTED),
                Kind::Mpidr if !self.initialized => r.sys.set(Sr::MpidrEl1, mpidr(self.vcpu_id)),
                Kind::Clidr if !self.initialized => r.sys.set(Sr::ClidrEl1, reset_clidr(vm.host.ctr_el0)),
                Kind::Imp(imp) if !vm.id_regs_initialized => {
                    let v = match imp {
                        Imp::Midr => vm.host.midr,
                        Imp::Revidr => vm.host.revidr,
                        Imp::Aidr => vm.host.aidr,
                    };
                    vm.imp[imp as usize] = v;
                }
                Kind::Id if !vm.id_regs_initialized => {
                    if let Some(i) = id_index(d.enc) {
                        if let Some(slot) = vm.id.get_mut(i) {
                            *slot = id_limit(i, &vm.host);
                        }
                    }
                }
                Kind::Ctr if !vm.id_regs_initialized => vm.ctr = vm.host.ctr_el0,
                Kind::Mpidr | Kind::Clidr | Kind::Imp(_) | Kind::Id | Kind::Ctr | Kind::Counter(_) => {}
            }
        }
        vm.id_regs_initialized = true;
    }

    /// The first-run part of `KVM_RUN` (`kvm_arch_vcpu_run_pid_change()`
    /// and `kvm_finalize_sys_regs()`): `ENOEXEC` before
    /// `KVM_ARM_VCPU_INIT`; on the VM's first run, the GIC is hidden from
    /// the ID registers (no in-kernel irqchip exists in kvm_rs) and the
    /// configuration freezes.
    pub(crate) fn first_run(&mut self, vm: &mut VmRegs) -> Result<(), Errno> {
        use idregs::f::*;
        if !self.initialized {
            return Err(Errno::ENOEXEC);
        }
        if self.has_run_once {
            return Ok(());
        }
        if !vm.has_ran_once {
            // ID_AA64PFR0_EL1.GIC, ID_AA64PFR2_EL1.GCIE, ID_PFR1_EL1.GIC.
            for (i, mask) in [(24, PFR0_GIC), (26, PFR2_GCIE), (1, 0xf << 28)] {
                if let Some(slot) = vm.id.get_mut(i) {
                    *slot &= !mask;
                }
            }
        }
        vm.has_ran_once = true;
        self.has_run_once = true;
        Ok(())
    }

    /// `KVM_GET_ONE_REG` (`kvm_arm_get_reg()`), once the vCPU is
    /// initialized: `write` copies the value to userspace; `now` is the
    /// counter.
    pub(crate) fn get(
        &self,
        vm: &VmRegs,
        id: u64,
        now: u64,
        write: impl FnOnce(&[u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        match RegId::decode(id).ok_or(Errno::EINVAL)? {
            RegId::Core(off) => {
                let field = core_field(off, reg_size(id)).map_err(core_errno)?;
                let mut buf = [0u8; 16];
                let n = self.core_get(field, &mut buf);
                write(buf.get(..n).ok_or(Errno::EINVAL)?)
            }
            RegId::Fw => {
                let val = match FW_REG_IDS.iter().position(|&fw| fw == id) {
                    Some(0) => vm.psci(),
                    Some(n @ 1..=3) => vm.wa_level(n as u64) & 0xf,
                    Some(n) => vm.smccc.get(n.wrapping_sub(4)).copied().ok_or(Errno::ENOENT)?,
                    None => return Err(Errno::ENOENT),
                };
                write(&val.to_ne_bytes())
            }
            RegId::Sve => Err(sve_errno(id)),
            RegId::Demux => {
                let index = demux_ccsidr(id).ok_or(Errno::ENOENT)?;
                write(&self.ccsidr(vm, index).to_ne_bytes())
            }
            RegId::Sys => {
                let d = sysreg_enc(id).and_then(sysregs::find).ok_or(Errno::ENOENT)?;
                if !self.sys_visible(vm, d) {
                    return Err(Errno::ENOENT);
                }
                let val = self.sys_get(vm, d, now);
                write(&val.to_ne_bytes())
            }
        }
    }

    /// `KVM_SET_ONE_REG` (`kvm_arm_set_reg()`), once the vCPU is
    /// initialized: `read` fills the slice it is given from userspace.
    pub(crate) fn set(
        &mut self,
        vm: &mut VmRegs,
        id: u64,
        now: u64,
        read: impl FnOnce(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        match RegId::decode(id).ok_or(Errno::EINVAL)? {
            RegId::Core(off) => {
                let field = core_field(off, reg_size(id)).map_err(core_errno)?;
                let size = reg_size(id);
                let mut buf = [0u8; 16];
                read(buf.get_mut(..size).ok_or(Errno::EINVAL)?)?;
                if field == CoreField::Pstate {
                    let pstate = u64::from_ne_bytes(first8(&buf));
                    match pstate_mode(pstate) {
                        PstateMode::Aarch64El01 => {}
                        PstateMode::Aarch32User if vm.host.el0_32bit => {}
                        // No AArch32 EL1, no nested virtualization.
                        _ => return Err(Errno::EINVAL),
                    }
                }
                self.core_set(field, &buf);
                self.regs.core.narrow_aarch32();
                Ok(())
            }
            RegId::Fw => {
                if reg_size(id) != 8 {
                    return Err(Errno::ENOENT);
                }
                let mut buf = [0u8; 8];
                read(&mut buf)?;
                self.fw_set(vm, id, u64::from_ne_bytes(buf))
            }
            RegId::Sve => Err(sve_errno(id)),
            RegId::Demux => {
                let index = demux_ccsidr(id).ok_or(Errno::ENOENT)?;
                let mut buf = [0u8; 4];
                read(&mut buf)?;
                self.set_ccsidr(vm, index, u32::from_ne_bytes(buf))
            }
            RegId::Sys => {
                // get_user() of 64 bits comes before the lookup.
                let mut buf = [0u8; 8];
                read(&mut buf)?;
                let val = u64::from_ne_bytes(buf);
                let d = sysreg_enc(id).and_then(sysregs::find).ok_or(Errno::ENOENT)?;
                if !self.sys_visible(vm, d) {
                    return Err(Errno::ENOENT);
                }
                self.sys_set(vm, d, val, now)
            }
        }
    }

    /// The registers of `KVM_GET_REG_LIST` (`kvm_arm_copy_reg_indices()`).
    pub(crate) fn for_each_reg(&self, vm: &VmRegs, emit: RegEmit<'_>) -> Result<(), Errno> {
        for f in CoreField::all() {
            emit(f.id())?;
        }
        for id in FW_REG_IDS {
            emit(id)?;
        }
        for d in DESCS.iter() {
            if self.sys_visible(vm, d) {
                emit(list_id(d.enc))?;
            }
        }
        for i in 0..CSSELR_MAX {
            emit(demux_id(i))?;
        }
        Ok(())
    }

    /// The bytes of a core register.
    fn core_get(&self, field: CoreField, buf: &mut [u8; 16]) -> usize {
        let c = &self.regs.core;
        let s = &self.regs.sys;
        let v64 = match field {
            CoreField::X(n) => c.x.get(n).copied().unwrap_or(0),
            CoreField::Sp => c.sp,
            CoreField::Pc => c.pc,
            CoreField::Pstate => c.pstate,
            CoreField::SpEl1 => s.get(Sr::SpEl1),
            CoreField::ElrEl1 => s.get(Sr::ElrEl1),
            CoreField::Spsr(0) => s.get(Sr::SpsrEl1),
            CoreField::Spsr(n) => c.spsr_aa32.get(n.wrapping_sub(1)).copied().unwrap_or(0),
            CoreField::V(n) => {
                *buf = c.vregs.get(n).copied().unwrap_or(0).to_ne_bytes();
                return 16;
            }
            CoreField::Fpsr | CoreField::Fpcr => {
                let v = if field == CoreField::Fpsr { c.fpsr } else { c.fpcr };
                let [a, b, c, d] = v.to_ne_bytes();
                *buf = [a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                return 4;
            }
        };
        let [a, b, c, d, e, f, g, h] = v64.to_ne_bytes();
        *buf = [a, b, c, d, e, f, g, h, 0, 0, 0, 0, 0, 0, 0, 0];
        8
    }

    /// Sets a core register from the first bytes of `buf` (its size).
    fn core_set(&mut self, field: CoreField, buf: &[u8; 16]) {
        let v64 = u64::from_ne_bytes(first8(buf));
        let c = &mut self.regs.core;
        let s = &mut self.regs.sys;
        match field {
            CoreField::X(n) => {
                if let Some(x) = c.x.get_mut(n) {
                    *x = v64;
                }
            }
            CoreField::Sp => c.sp = v64,
            CoreField::Pc => c.pc = v64,
            CoreField::Pstate => c.pstate = v64,
            CoreField::SpEl1 => s.set(Sr::SpEl1, v64),
            CoreField::ElrEl1 => s.set(Sr::ElrEl1, v64),
            CoreField::Spsr(0) => s.set(Sr::SpsrEl1, v64),
            CoreField::Spsr(n) => {
                if let Some(x) = c.spsr_aa32.get_mut(n.wrapping_sub(1)) {
                    *x = v64;
                }
            }
            CoreField::V(n) => {
                if let Some(v) = c.vregs.get_mut(n) {
                    *v = u128::from_ne_bytes(*buf);
                }
            }
            CoreField::Fpsr => c.fpsr = v64 as u32,
            CoreField::Fpcr => c.fpcr = v64 as u32,
        }
    }

    /// Whether system register `d` exists for userspace (not hidden).
    fn sys_visible(&self, vm: &VmRegs, d: &sysregs::Desc) -> bool {
        match d.kind {
            Kind::Reg(_, _, vis) => vm.visible(vis),
            _ => true,
        }
    }

    /// The value of system register `d` (`get_user` or the storage).
    fn sys_get(&self, vm: &VmRegs, d: &sysregs::Desc, now: u64) -> u64 {
        let r = &self.regs;
        match d.kind {
            Kind::Reg(sr, _, _) | Kind::Timer(sr) => r.sys.get(sr),
            Kind::DbgWb(wb, n) => {
                let a = match wb {
                    Wb::Bvr => &r.dbg.bvr,
                    Wb::Bcr => &r.dbg.bcr,
                    Wb::Wvr => &r.dbg.wvr,
                    Wb::Wcr => &r.dbg.wcr,
                };
                a.get(usize::from(n)).copied().unwrap_or(0)
            }
            Kind::Oslsr => r.sys.get(Sr::OslsrEl1),
            Kind::Mpidr => r.sys.get(Sr::MpidrEl1),
            Kind::Clidr => r.sys.get(Sr::ClidrEl1),
            Kind::Imp(imp) => vm.imp(imp),
            Kind::Id => id_index(d.enc).and_then(|i| vm.id.get(i)).copied().unwrap_or(0),
            Kind::Ctr => vm.ctr,
            Kind::Counter(Counter::Virtual) => now.wrapping_sub(vm.voffset),
            Kind::Counter(Counter::Physical) => now.wrapping_sub(vm.poffset),
        }
    }

    /// Writes system register `d` (`kvm_sys_reg_set_user()` after the
    /// lookup).
    fn sys_set(&mut self, vm: &mut VmRegs, d: &sysregs::Desc, val: u64, now: u64) -> Result<(), Errno> {
        let r = &mut self.regs;
        match d.kind {
            Kind::Reg(sr, _, _) => r.sys.set(sr, val),
            Kind::Timer(sr) => {
                // The status bit of a control register is not state.
                let val = if matches!(sr, Sr::CntpCtlEl0 | Sr::CntvCtlEl0) { val & !TIMER_CTL_ISTATUS } else { val };
                r.sys.set(sr, val);
            }
            Kind::DbgWb(wb, n) => {
                if let Some(slot) = r.dbg.slot(wb, n) {
                    *slot = val;
                }
            }
            Kind::Oslsr => {
                // Only OSLK may change.
                if (val ^ OSLSR_OSLM_IMPLEMENTED) & !OSLSR_OSLK != 0 {
                    return Err(Errno::EINVAL);
                }
                r.sys.set(Sr::OslsrEl1, val);
            }
            Kind::Mpidr => r.sys.set(Sr::MpidrEl1, val),
            Kind::Clidr => {
                let ctr = vm.host.ctr_el0;
                let loc = (val >> 24) & 7;
                let louis = (val >> 21) & 7;
                let louu = (val >> 27) & 7;
                let idc = loc == 0 || (louis == 0 && louu == 0);
                if val & CLIDR_RES0 != 0 || (ctr & idregs::f::CTR_IDC == 0 && idc) {
                    return Err(Errno::EINVAL);
                }
                r.sys.set(Sr::ClidrEl1, val);
            }
            Kind::Imp(imp) => {
                // set_imp_id_reg(): the current value is always fine;
                // another one needs KVM_CAP_ARM_WRITABLE_IMP_ID_REGS, a VM
                // that did not run, and only the writable bits.
                if val == vm.imp(imp) {
                    return Ok(());
                }
                if !vm.writable_imp_id_regs {
                    return Err(Errno::EINVAL);
                }
                if vm.has_ran_once {
                    return Err(Errno::EBUSY);
                }
                if val & imp_writable(imp) != val {
                    return Err(Errno::EINVAL);
                }
                if let Some(slot) = vm.imp.get_mut(imp as usize) {
                    *slot = val;
                }
            }
            Kind::Id => {
                let i = id_index(d.enc).ok_or(Errno::ENOENT)?;
                let desc = id_desc(i);
                // aa32_id_visibility's REG_USER_WI.
                if desc.vis == IdVis::Aa32 && !vm.host.el0_32bit {
                    return Ok(());
                }
                let val = idregs::pre_set(desc.set, val, &vm.host)?;
                let limit = id_limit(i, &vm.host);
                let raz = visible_as_raz(i, &vm.host);
                set_id_reg(vm, d.enc, val, limit, desc.writable, raz)?;
            }
            Kind::Ctr => {
                if !idregs::ctr_l1ip_ok(val) {
                    return Err(Errno::EINVAL);
                }
                let limit = vm.host.ctr_el0;
                set_id_reg(vm, d.enc, val, limit, idregs::CTR_WRITABLE, false)?;
            }
            Kind::Counter(Counter::Virtual) => vm.voffset = now.wrapping_sub(val),
            Kind::Counter(Counter::Physical) => vm.poffset = now.wrapping_sub(val),
        }
        Ok(())
    }

    /// `kvm_arm_set_fw_reg()` after the size check and the copy.
    fn fw_set(&mut self, vm: &mut VmRegs, id: u64, val: u64) -> Result<(), Errno> {
        match FW_REG_IDS.iter().position(|&fw| fw == id).ok_or(Errno::ENOENT)? {
            0 => {
                let wants_02 = vm.has_feature(feature::PSCI_0_2);
                match val {
                    0x1 if !wants_02 => vm.psci_version = val,
                    0x2 | 0x10000..=0x10003 if wants_02 => vm.psci_version = val,
                    _ => return Err(Errno::EINVAL),
                }
            }
            n @ (1 | 3) => {
                if val & !0xf != 0 || vm.wa_level(n as u64) < val {
                    return Err(Errno::EINVAL);
                }
            }
            2 => {
                if val & !(0xf | WA2_ENABLED) != 0 {
                    return Err(Errno::EINVAL);
                }
                // The enabled bit needs the AVAIL (2) level.
                if val & WA2_ENABLED != 0 && val & 0xf != 2 {
                    return Err(Errno::EINVAL);
                }
                // NOT_AVAIL/UNKNOWN are NOT_AVAIL (0), AVAIL/NOT_REQUIRED
                // are NOT_REQUIRED (3).
                let level = match val & 0xf {
                    0 | 1 => 0,
                    2 | 3 => 3,
                    _ => return Err(Errno::EINVAL),
                };
                if vm.wa_level(2) < level {
                    return Err(Errno::EINVAL);
                }
            }
            n => {
                // The feature bitmaps (kvm_arm_set_fw_reg_bmap()).
                let i = n.wrapping_sub(4);
                let features = SMCCC_FEATURES.get(i).copied().ok_or(Errno::ENOENT)?;
                if val & !features != 0 {
                    return Err(Errno::EINVAL);
                }
                let slot = vm.smccc.get_mut(i).ok_or(Errno::ENOENT)?;
                if vm.has_ran_once && val != *slot {
                    return Err(Errno::EBUSY);
                }
                *slot = val;
            }
        }
        Ok(())
    }

    /// `get_ccsidr()`: userspace's value, else one made from the host's
    /// minimum cache line size, with 1 set and 1 way.
    fn ccsidr(&self, vm: &VmRegs, index: usize) -> u32 {
        if let Some(v) = self.regs.ccsidr.as_ref().and_then(|c| c.get(index)) {
            return *v;
        }
        u32::from(min_line_size(vm.host.ctr_el0, index).wrapping_sub(4) & 7)
    }

    /// `set_ccsidr()`.
    fn set_ccsidr(&mut self, vm: &VmRegs, index: usize, val: u32) -> Result<(), Errno> {
        let line_size = (val & 7) as u8 + 4;
        if line_size < min_line_size(vm.host.ctr_el0, index) {
            return Err(Errno::EINVAL);
        }
        if self.regs.ccsidr.is_none() {
            if val == self.ccsidr(vm, index) {
                return Ok(());
            }
            let mut all = [0u32; CSSELR_MAX];
            for (i, v) in all.iter_mut().enumerate() {
                *v = self.ccsidr(vm, i);
            }
            self.regs.ccsidr = Some(all);
        }
        if let Some(slot) = self.regs.ccsidr.as_mut().and_then(|c| c.get_mut(index)) {
            *slot = val;
        }
        Ok(())
    }
}

/// `set_id_reg()`: once the VM ran only the current value; else the
/// feature check, then the VM-wide store.
fn set_id_reg(vm: &mut VmRegs, enc: Enc, val: u64, limit: u64, writable: u64, raz: bool) -> Result<(), Errno> {
    let cur = if enc == idregs::CTR_EL0 {
        &mut vm.ctr
    } else {
        let i = id_index(enc).ok_or(Errno::EINVAL)?;
        vm.id.get_mut(i).ok_or(Errno::EINVAL)?
    };
    if vm.has_ran_once {
        return if val != *cur { Err(Errno::EBUSY) } else { Ok(()) };
    }
    check_features(enc, val, limit, writable, raz)?;
    *cur = val;
    Ok(())
}

/// The first 8 bytes of `buf`.
fn first8(buf: &[u8; 16]) -> [u8; 8] {
    let [a, b, c, d, e, f, g, h, ..] = *buf;
    [a, b, c, d, e, f, g, h]
}

/// The errno of a failed core register lookup.
const fn core_errno(e: CoreError) -> Errno {
    match e {
        CoreError::NoEnt => Errno::ENOENT,
        CoreError::Inval => Errno::EINVAL,
    }
}

/// The errno of any `KVM_REG_ARM64_SVE` access without SVE
/// (`get_sve_reg()`/`set_sve_reg()`): `ENOENT` for the vector-length
/// pseudo-register and ids in the Z, P and FFR ranges, `EINVAL` for the
/// rest.
fn sve_errno(id: u64) -> Errno {
    const SVE: u64 = KVM_REG_ARM64 | COPROC_SVE;
    const U2048: u64 = 0x0080_0000_0000_0000;
    const U256: u64 = 0x0050_0000_0000_0000;
    const VLS: u64 = SVE | 0x0060_0000_0000_0000 | 0xffff;
    let zreg = SVE | U2048..=SVE | U2048 | (31 << 5) | 31;
    let preg = SVE | U256 | 0x400..=SVE | U256 | 0x600 | 31;
    if id == VLS || zreg.contains(&id) || preg.contains(&id) {
        Errno::ENOENT
    } else {
        Errno::EINVAL
    }
}

/// `OSLSR_EL1.OSLM` reports the OS lock implemented (`OSLSR_EL1_OSLM_IMPLEMENTED`).
const OSLSR_OSLM_IMPLEMENTED: u64 = 1 << 3;
/// `OSLSR_EL1.OSLK`: the OS lock is locked.
const OSLSR_OSLK: u64 = 1 << 1;
/// `ARCH_TIMER_CTRL_IT_STAT`.
const TIMER_CTL_ISTATUS: u64 = 1 << 2;
/// `CLIDR_EL1_RES0`.
const CLIDR_RES0: u64 = 0xffff_8000_0000_0000;

/// `kvm_calculate_mpidr()`: the vCPU id in Aff0 (4 bits, for GICv3 SGIs),
/// Aff1 and Aff2, and the RES1 bit 31.
pub(crate) const fn mpidr(vcpu_id: u32) -> u64 {
    let id = vcpu_id as u64;
    (id & 0x0f) | (((id >> 4) & 0xff) << 8) | (((id >> 12) & 0xff) << 16) | (1 << 31)
}

/// `reset_clidr()`: a cache hierarchy made up from `CTR_EL0`, with no
/// set/way geometry the guest could rely on.
pub(crate) const fn reset_clidr(ctr: u64) -> u64 {
    const INST: u64 = 1;
    const DATA: u64 = 2;
    const UNIFIED: u64 = 4;
    let dic = ctr & idregs::f::CTR_DIC != 0;
    let (loc, mut clidr) = if ctr & idregs::f::CTR_IDC != 0 {
        // No data cache clean to PoU needed: a unified cache at LoC, L2 if
        // an L1 instruction cache is to be added.
        let loc = if dic { 1 } else { 2 };
        (loc, UNIFIED << (3 * (loc - 1)))
    } else {
        // L1 data cache, LoUU and LoUIS.
        (1, (1 << 27) | (1 << 21) | DATA)
    };
    if !dic {
        clidr |= INST;
    }
    clidr | (loc << 24)
}

/// `get_min_cache_line_size()`: log2 of the smallest line of the caches
/// CCSIDR `index` is about (instruction for odd, data/unified for even),
/// from `CTR_EL0`.
const fn min_line_size(ctr: u64, index: usize) -> u8 {
    let field = if index & 1 != 0 { ctr & 0xf } else { (ctr >> 16) & 0xf };
    field as u8 + 2
}

/// The writable bits of an implementation ID register (`IMPLEMENTATION_ID()`
/// masks): `MIDR_EL1` 31:0, the others all.
const fn imp_writable(imp: Imp) -> u64 {
    match imp {
        Imp::Midr => 0xffff_ffff,
        Imp::Revidr | Imp::Aidr => u64::MAX,
    }
}

/// `KVM_ARM_GET_REG_WRITABLE_MASKS`: the writable bits of every feature ID
/// register userspace may write (`kvm_vm_ioctl_get_reg_writable_masks()`),
/// indexed by [`idregs::feature_id_range_index`]; 0 elsewhere.
pub(crate) fn writable_masks(host: &HostFacts) -> [u64; idregs::FEATURE_ID_RANGE_SIZE] {
    let mut masks = [0u64; idregs::FEATURE_ID_RANGE_SIZE];
    for d in DESCS.iter() {
        let mask = match d.kind {
            Kind::Imp(imp) => imp_writable(imp),
            Kind::Ctr => idregs::CTR_WRITABLE,
            Kind::Clidr => !CLIDR_RES0,
            Kind::Id => {
                let Some(i) = id_index(d.enc) else { continue };
                let desc = id_desc(i);
                if desc.vis == IdVis::Aa32 && !host.el0_32bit {
                    continue;
                }
                desc.writable
            }
            _ => continue,
        };
        if let Some(slot) = masks.get_mut(idregs::feature_id_range_index(d.enc)) {
            *slot = mask;
        }
    }
    masks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm64::idregs::tests::qemu_max;
    use crate::arm64::regs::KVM_REG_ARM_TIMER_CNT;

    const SIZE_U32: u64 = 0x0020_0000_0000_0000;

    fn new_vm() -> (ArmVcpu, VmRegs) {
        let mut vm = VmRegs::new(qemu_max());
        let mut v = ArmVcpu::new(0, &mut vm, 1000);
        assert_eq!(v.init(&mut vm, TARGET_GENERIC_V8, &[0; 7]), Ok(false));
        (v, vm)
    }

    fn get(v: &ArmVcpu, vm: &VmRegs, id: u64) -> Result<u64, Errno> {
        let mut out = [0u8; 8];
        v.get(vm, id, 5000, |b| {
            out.get_mut(..b.len()).ok_or(Errno::EFAULT)?.copy_from_slice(b);
            Ok(())
        })?;
        Ok(u64::from_ne_bytes(out))
    }

    fn set(v: &mut ArmVcpu, vm: &mut VmRegs, id: u64, val: u64) -> Result<(), Errno> {
        v.set(vm, id, 5000, |b| {
            let bytes = val.to_ne_bytes();
            let n = b.len().min(8);
            b[..n].copy_from_slice(&bytes[..n]);
            Ok(())
        })
    }

    fn list(v: &ArmVcpu, vm: &VmRegs) -> std::vec::Vec<u64> {
        let mut ids = std::vec::Vec::new();
        v.for_each_reg(vm, &mut |id| {
            ids.push(id);
            Ok(())
        })
        .unwrap_or_default();
        ids
    }

    #[test]
    fn reg_list_matches_upstream_on_qemu_max() {
        let (v, vm) = new_vm();
        let ids = list(&v, &vm);
        // 75 core, 8 firmware, 165 system, 14 CCSIDR: upstream's 262.
        assert_eq!(ids.len(), 262);
        assert_eq!(ids[0], 0x6030_0000_0010_0000);
        assert_eq!(ids[74], 0x6020_0000_0010_00d5);
        assert_eq!(ids[75], 0x6030_0000_0014_0000);
        assert_eq!(ids[83], Enc::new(2, 0, 0, 0, 4).id());
        // The timers, with their historical ids.
        let cntpct = ids.iter().position(|&i| i == Enc::new(3, 3, 14, 0, 1).id()).unwrap_or(0);
        assert_eq!(ids[cntpct + 1], KVM_REG_ARM_TIMER_CNT);
        assert_eq!(ids[cntpct + 5], Enc::new(3, 3, 14, 0, 2).id());
        assert_eq!(ids[261], demux_id(13));
        // Every listed register can be read and written back.
        let mut v = v;
        let mut vm = vm;
        for id in ids {
            if reg_size(id) > 8 {
                continue;
            }
            let val = get(&v, &vm, id).unwrap_or(0xbad);
            assert_eq!(set(&mut v, &mut vm, id, val), Ok(()), "{id:#x}");
        }
    }

    #[test]
    fn values_after_init_match_upstream() {
        let (v, vm) = new_vm();
        assert_eq!(get(&v, &vm, CoreField::Pstate.id()), Ok(0x3c5));
        assert_eq!(get(&v, &vm, Enc::new(3, 0, 1, 0, 0).id()), Ok(0xc50078));
        assert_eq!(get(&v, &vm, Enc::new(3, 0, 2, 0, 0).id()), Ok(RESET_UNKNOWN));
        assert_eq!(get(&v, &vm, Enc::new(2, 0, 1, 1, 4).id()), Ok(0x8));
        assert_eq!(get(&v, &vm, Enc::new(3, 0, 0, 0, 5).id()), Ok(0x8000_0000));
        assert_eq!(get(&v, &vm, Enc::new(3, 1, 0, 0, 1).id()), Ok(0x100_0004));
        assert_eq!(get(&v, &vm, Enc::new(3, 4, 5, 3, 0).id()), Ok(0x700));
        assert_eq!(get(&v, &vm, Enc::new(3, 0, 0, 0, 0).id()), Ok(0xf0510));
        assert_eq!(get(&v, &vm, Enc::new(3, 0, 0, 4, 0).id()), Ok(0x1101001021110222));
        assert_eq!(get(&v, &vm, demux_id(0)), Ok(2));
        assert_eq!(get(&v, &vm, FW_REG_IDS[0]), Ok(1));
        assert_eq!(get(&v, &vm, FW_REG_IDS[1]), Ok(2));
        assert_eq!(get(&v, &vm, FW_REG_IDS[2]), Ok(0));
        assert_eq!(get(&v, &vm, FW_REG_IDS[3]), Ok(2));
        assert_eq!(get(&v, &vm, FW_REG_IDS[6]), Ok(3));
        assert_eq!(get(&v, &vm, FW_REG_IDS[7]), Ok(0));
        // CNTVCT counts from the vCPU's creation (counter 1000).
        assert_eq!(get(&v, &vm, KVM_REG_ARM_TIMER_CNT), Ok(4000));
        assert_eq!(get(&v, &vm, Enc::new(3, 3, 14, 0, 1).id()), Ok(5000));
    }

    #[test]
    fn core_register_errnos_and_narrowing() {
        let (mut v, mut vm) = new_vm();
        let x0 = CoreField::X(0).id();
        let size = |id: u64, s: u64| (id & !0x00f0_0000_0000_0000) | s;
        assert_eq!(get(&v, &vm, size(x0, SIZE_U32)), Err(Errno::EINVAL));
        assert_eq!(get(&v, &vm, x0 | 1), Err(Errno::EINVAL));
        assert_eq!(get(&v, &vm, CoreField::Pc.id() | 1 << 28), Err(Errno::ENOENT));
        assert_eq!(get(&v, &vm, CoreField::Pc.id() | 1 << 32), Err(Errno::EINVAL));
        assert_eq!(get(&v, &vm, (x0 & !0xffff) | 216), Err(Errno::ENOENT));
        // A bad buffer: the size checks come first, then EFAULT.
        assert_eq!(v.set(&mut vm, size(x0, SIZE_U32), 0, |_| Err(Errno::EFAULT)), Err(Errno::EINVAL));
        assert_eq!(v.set(&mut vm, x0, 0, |_| Err(Errno::EFAULT)), Err(Errno::EFAULT));
        let pstate = CoreField::Pstate.id();
        for (mode, ok) in [(0x0, true), (0x4, true), (0x5, true), (0x9, false), (0xd, false), (0x10, true),
                           (0x13, false), (0x1f, false), (0x3, false)] {
            assert_eq!(set(&mut v, &mut vm, pstate, 0x3c0 | mode).is_ok(), ok, "{mode:#x}");
        }
        assert_eq!(get(&v, &vm, pstate), Ok(0x3d0));
        assert_eq!(set(&mut v, &mut vm, CoreField::X(3).id(), u64::MAX), Ok(()));
        assert_eq!(get(&v, &vm, CoreField::X(3).id()), Ok(0xffff_ffff));
        assert_eq!(set(&mut v, &mut vm, CoreField::X(20).id(), u64::MAX), Ok(()));
        assert_eq!(get(&v, &vm, CoreField::X(20).id()), Ok(u64::MAX));
        // No AArch32 EL0 on the host: USR is refused.
        vm.host.el0_32bit = false;
        assert_eq!(set(&mut v, &mut vm, pstate, 0x10), Err(Errno::EINVAL));
        // A 128-bit register.
        let mut q = [0u8; 16];
        assert_eq!(v.set(&mut vm, CoreField::V(3).id(), 0, |b| {
            for (i, x) in b.iter_mut().enumerate() {
                *x = i as u8;
            }
            Ok(())
        }), Ok(()));
        assert_eq!(v.get(&vm, CoreField::V(3).id(), 0, |b| {
            q.copy_from_slice(b);
            Ok(())
        }), Ok(()));
        assert_eq!(q[15], 15);
    }

    #[test]
    fn sysreg_firmware_and_demux_rules() {
        let (mut v, mut vm) = new_vm();
        let oslsr = Enc::new(2, 0, 1, 1, 4).id();
        assert_eq!(set(&mut v, &mut vm, oslsr, 0x3), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, oslsr, 0xa), Ok(()));
        let ctl = Enc::new(3, 3, 14, 3, 1).id();
        assert_eq!(set(&mut v, &mut vm, ctl, 0xf), Ok(()));
        assert_eq!(get(&v, &vm, ctl), Ok(0xb));
        // A set reads the value before it looks the register up.
        assert_eq!(v.set(&mut vm, Enc::new(3, 7, 15, 15, 7).id(), 0, |_| Err(Errno::EFAULT)), Err(Errno::EFAULT));
        assert_eq!(set(&mut v, &mut vm, Enc::new(3, 7, 15, 15, 7).id(), 0), Err(Errno::ENOENT));
        let midr = Enc::new(3, 0, 0, 0, 0).id();
        assert_eq!(set(&mut v, &mut vm, midr, 0xf0511), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, midr, 0xf0510), Ok(()));
        vm.set_writable_imp_id_regs();
        assert_eq!(set(&mut v, &mut vm, midr, 1 << 32), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, midr, 0x410f_d034), Ok(()));
        assert_eq!(get(&v, &vm, midr), Ok(0x410f_d034));
        // ID registers: lower is fine, higher is not; VM-wide.
        let isar0 = Enc::new(3, 0, 0, 6, 0).id();
        let cur = get(&v, &vm, isar0).unwrap_or(0);
        assert_eq!(set(&mut v, &mut vm, isar0, cur | 0xf << 60), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, isar0, cur & !0xf0), Ok(()));
        let mut w = ArmVcpu::new(1, &mut vm, 0);
        assert_eq!(w.init(&mut vm, TARGET_GENERIC_V8, &[0; 7]), Ok(false));
        assert_eq!(get(&w, &vm, isar0), Ok(cur & !0xf0));
        assert_eq!(get(&w, &vm, Enc::new(3, 0, 0, 0, 5).id()), Ok(0x8000_0001));
        // CTR_EL0 L1Ip.
        let ctr = Enc::new(3, 3, 0, 0, 1).id();
        assert_eq!(set(&mut v, &mut vm, ctr, 0xb444_0004), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, ctr, 0xb444_8004), Ok(()));
        // Firmware.
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[0], 0x10000), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[0], 0x1), Ok(()));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[1], 3), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[1], 2), Ok(()));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[2], 1), Ok(()));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[2], 0x12), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[4], 2), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[4], 0), Ok(()));
        assert_eq!(set(&mut v, &mut vm, fw_id(COPROC_FW, 4), 0), Err(Errno::ENOENT));
        assert_eq!(v.set(&mut vm, FW_REG_IDS[0] & !0x00f0_0000_0000_0000 | SIZE_U32, 0, |_| Err(Errno::EFAULT)),
                   Err(Errno::ENOENT));
        assert_eq!(get(&v, &vm, fw_id(COPROC_FW_FEAT_BMAP, 4)), Err(Errno::ENOENT));
        // CCSIDR.
        assert_eq!(set(&mut v, &mut vm, demux_id(0), 0), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, demux_id(0), 2), Ok(()));
        assert_eq!(v.regs.ccsidr, None);
        assert_eq!(set(&mut v, &mut vm, demux_id(0), 7), Ok(()));
        assert_eq!(get(&v, &vm, demux_id(0)), Ok(7));
        assert_eq!(get(&v, &vm, demux_id(1)), Ok(2));
        // SVE without SVE.
        assert_eq!(get(&v, &vm, KVM_REG_ARM64 | 0x0060_0000_0000_0000 | COPROC_SVE | 0xffff), Err(Errno::ENOENT));
        assert_eq!(get(&v, &vm, KVM_REG_ARM64 | 0x0030_0000_0000_0000 | COPROC_SVE | 0x1000), Err(Errno::EINVAL));
    }

    #[test]
    fn init_features_and_reset() {
        let mut vm = VmRegs::new(qemu_max());
        let mut v = ArmVcpu::new(0, &mut vm, 0);
        let init = |v: &mut ArmVcpu, vm: &mut VmRegs, f0: u32| {
            let mut f = [0u32; 7];
            f[0] = f0;
            v.init(vm, TARGET_GENERIC_V8, &f)
        };
        assert_eq!(v.init(&mut vm, 0, &[0; 7]), Err(Errno::EINVAL));
        assert_eq!(init(&mut v, &mut vm, 1 << 10), Err(Errno::ENOENT));
        assert_eq!(v.init(&mut vm, TARGET_GENERIC_V8, &[0, 0, 0, 1, 0, 0, 0]), Err(Errno::ENOENT));
        for f in [feature::EL1_32BIT, feature::PMU_V3, feature::SVE, feature::PTRAUTH_ADDRESS, feature::HAS_EL2,
                  feature::PMU_V3_STRICT] {
            assert_eq!(init(&mut v, &mut vm, f), Err(Errno::EINVAL), "{f:#x}");
        }
        assert!(!v.initialized);
        assert_eq!(init(&mut v, &mut vm, feature::PSCI_0_2 | feature::POWER_OFF), Ok(true));
        assert_eq!(get(&v, &vm, FW_REG_IDS[0]), Ok(0x10003));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[0], 1), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[0], 0x10000), Ok(()));
        assert_eq!(set(&mut v, &mut vm, CoreField::X(1).id(), 7), Ok(()));
        assert_eq!(set(&mut v, &mut vm, CoreField::SpEl1.id(), 7), Ok(()));
        assert_eq!(set(&mut v, &mut vm, Enc::new(3, 0, 0, 0, 5).id(), 9), Ok(()));
        assert_eq!(init(&mut v, &mut vm, 0), Err(Errno::EINVAL));
        assert_eq!(init(&mut v, &mut vm, feature::PSCI_0_2), Ok(false));
        assert_eq!(get(&v, &vm, CoreField::X(1).id()), Ok(0));
        assert_eq!(get(&v, &vm, CoreField::SpEl1.id()), Ok(7));
        assert_eq!(get(&v, &vm, Enc::new(3, 0, 0, 0, 5).id()), Ok(9));
        assert_eq!(get(&v, &vm, FW_REG_IDS[0]), Ok(0x10000));
        let mut w = ArmVcpu::new(1, &mut vm, 0);
        assert_eq!(init(&mut w, &mut vm, 0), Err(Errno::EINVAL));
        assert_eq!(init(&mut w, &mut vm, feature::PSCI_0_2 | feature::HAS_EL2_E2H0), Err(Errno::EINVAL));
        assert_eq!(init(&mut w, &mut vm, feature::PSCI_0_2), Ok(false));
        assert_eq!(target_cpu(0x410f_d034), 4);
        assert_eq!(target_cpu(0xf0510), TARGET_GENERIC_V8);
    }

    #[test]
    fn first_run_freezes_the_configuration() {
        let mut vm = VmRegs::new(qemu_max());
        let mut v = ArmVcpu::new(0, &mut vm, 0);
        assert_eq!(v.first_run(&mut vm), Err(Errno::ENOEXEC));
        assert_eq!(v.init(&mut vm, TARGET_GENERIC_V8, &[0; 7]), Ok(false));
        let pfr0 = Enc::new(3, 0, 0, 4, 0).id();
        assert_eq!(get(&v, &vm, pfr0), Ok(0x1101001021110222));
        assert_eq!(v.first_run(&mut vm), Ok(()));
        assert!(vm.has_ran_once);
        assert_eq!(get(&v, &vm, pfr0), Ok(0x1101001020110222));
        let isar0 = Enc::new(3, 0, 0, 6, 0).id();
        let cur = get(&v, &vm, isar0).unwrap_or(0);
        assert_eq!(set(&mut v, &mut vm, isar0, cur & !0xf0), Err(Errno::EBUSY));
        assert_eq!(set(&mut v, &mut vm, isar0, cur), Ok(()));
        assert_eq!(set(&mut v, &mut vm, pfr0, 0x1101001020110220), Err(Errno::EINVAL));
        assert_eq!(set(&mut v, &mut vm, Enc::new(3, 0, 0, 5, 4).id(), 1), Err(Errno::EBUSY));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[4], 0), Err(Errno::EBUSY));
        assert_eq!(set(&mut v, &mut vm, FW_REG_IDS[7], 0), Ok(()));
    }

    #[test]
    fn writable_masks_of_qemu_max() {
        let m = writable_masks(&qemu_max());
        assert_eq!(m[0], 0xffff_ffff);
        assert_eq!(m[6], u64::MAX);
        assert_eq!(m[5], 0);
        assert_eq!(m[8], 0xffff_ffff);
        assert_eq!(m[idregs::feature_id_range_index(Enc::new(3, 0, 0, 4, 4))], !idregs::f::ZFR0_RES0);
        assert_eq!(m[idregs::feature_id_range_index(Enc::new(3, 0, 0, 5, 1))], 0);
        assert_eq!(m[65], 0x0000_7fff_ffff_ffff);
        assert_eq!(m[129], idregs::CTR_WRITABLE);
        let mut no32 = qemu_max();
        no32.el0_32bit = false;
        assert_eq!(writable_masks(&no32)[8], 0);
    }
}
