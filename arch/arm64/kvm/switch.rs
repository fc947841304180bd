// SPDX-License-Identifier: GPL-2.0

//! The VHE world switch (upstream's `hyp/vhe/switch.c`, `hyp/entry.S`,
//! `hyp/vhe/sysreg-sr.c`, `hyp/include/hyp/switch.h`).
//!
//! The host kernel runs at EL2 with `HCR_EL2.{E2H,TGE}` = {1,1}: its
//! `*_EL1` accesses go to the EL2 registers, so the real EL1 registers
//! (reached with the `*_EL12` encodings) are the guest's alone. A guest
//! entry, with interrupts off throughout ([`enter`]):
//!
//! 1. the guest's EL1 system registers are loaded (`*_EL12`, plus the
//!    registers shared with the host's EL0 or not redirected by E2H:
//!    `TPIDR_EL0`, `TPIDRRO_EL0`, `PAR_EL1`, `TPIDR_EL1`, `SP_EL1`; the
//!    host's values of the first three are saved), its timers
//!    (`CNT{V,P}_{CTL,CVAL}_EL02`) and FP/SIMD registers (the host's are
//!    saved);
//! 2. the trap configuration is switched: `HCR_EL2` for the guest (TGE
//!    clear), `MDCR_EL2`, `CPTR_EL2` (`CPACR_EL1` with E2H: FP/SIMD
//!    allowed, SVE/SME trapped), `CNTHCTL_EL2`, `CNTVOFF_EL2`, `VPIDR_EL2`,
//!    `VMPIDR_EL2`, `VTCR_EL2`, `VTTBR_EL2`;
//! 3. `kvm_rs_a64_guest_enter` saves the host's callee-saved registers,
//!    `SP_EL0` (the kernel's `current`), `DAIF` and `VBAR_EL2` in the
//!    [`Ctx`], pushes the `Ctx` pointer on the host stack, points
//!    `VBAR_EL2` at kvm_rs's vectors, loads the guest's GPRs, `SP_EL0`,
//!    `ELR_EL2`/`SPSR_EL2` and `ERET`s;
//! 4. any exception from the guest (a synchronous trap, or a physical
//!    IRQ/FIQ/SError routed to EL2 by `HCR_EL2.{IMO,FMO,AMO}`) enters the
//!    lower-EL vectors on the host stack (`SP_EL2` is what the host had at
//!    the `ERET`): they save the guest's GPRs into the `Ctx`, restore the
//!    host's registers and `VBAR_EL2`, and return the exception class
//!    ([`Exit`]) to the caller;
//! 5. everything of step 2 and step 1 is restored for the host (the guest's
//!    timers are disabled in hardware so they cannot fire in the host).
//!
//! The guest's registers live in memory between entries, so nothing is
//! left loaded across preemption: no preempt notifier is needed, and a
//! vCPU may move between CPUs freely (the TLB side is `stage2.rs`).

use super::{
    regs::CoreRegs,
    sysregs::Sr,
    state::SysRegs, //
};

/// What [`kvm_rs_a64_guest_enter`] saves and loads. `repr(C)`: the assembly
/// uses the offsets checked below.
#[repr(C)]
pub(crate) struct Ctx {
    /// Guest `x0`-`x30`.
    pub(crate) x: [u64; 31],
    /// Guest `SP_EL0`.
    pub(crate) sp_el0: u64,
    /// Guest PC (`ELR_EL2`).
    pub(crate) pc: u64,
    /// Guest PSTATE (`SPSR_EL2`).
    pub(crate) pstate: u64,
    /// Host `x18`-`x30`.
    host: [u64; 13],
    /// Host `SP`.
    host_sp: u64,
    /// Host `SP_EL0`.
    host_sp_el0: u64,
    /// Host `VBAR_EL2`.
    host_vbar: u64,
    /// Host `DAIF`.
    host_daif: u64,
    _pad: u64,
}

kernel::static_assert!(core::mem::offset_of!(Ctx, sp_el0) == 248);
kernel::static_assert!(core::mem::offset_of!(Ctx, pc) == 256);
kernel::static_assert!(core::mem::offset_of!(Ctx, pstate) == 264);
kernel::static_assert!(core::mem::offset_of!(Ctx, host) == 272);
kernel::static_assert!(core::mem::offset_of!(Ctx, host_sp) == 376);
kernel::static_assert!(core::mem::offset_of!(Ctx, host_sp_el0) == 384);
kernel::static_assert!(core::mem::offset_of!(Ctx, host_vbar) == 392);
kernel::static_assert!(core::mem::offset_of!(Ctx, host_daif) == 400);

impl Ctx {
    /// A context holding the guest's core registers.
    pub(crate) fn from_core(core: &CoreRegs) -> Ctx {
        Ctx {
            x: core.x,
            sp_el0: core.sp,
            pc: core.pc,
            pstate: core.pstate,
            host: [0; 13],
            host_sp: 0,
            host_sp_el0: 0,
            host_vbar: 0,
            host_daif: 0,
            _pad: 0,
        }
    }

    /// Copies the guest's registers back into `core`.
    pub(crate) fn to_core(&self, core: &mut CoreRegs) {
        core.x = self.x;
        core.sp = self.sp_el0;
        core.pc = self.pc;
        core.pstate = self.pstate;
    }
}

/// The FP/SIMD registers (`struct user_fpsimd_state` layout).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub(crate) struct FpRegs {
    /// `V0`-`V31`.
    pub(crate) v: [u128; 32],
    /// `FPSR`.
    pub(crate) fpsr: u64,
    /// `FPCR`.
    pub(crate) fpcr: u64,
}

kernel::static_assert!(core::mem::offset_of!(FpRegs, fpsr) == 512);

impl FpRegs {
    /// All zero.
    pub(crate) const fn zero() -> FpRegs {
        FpRegs { v: [0; 32], fpsr: 0, fpcr: 0 }
    }
}

/// Why the guest exited: the vector the exception came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// A synchronous exception (`ESR_EL2` says which).
    Sync,
    /// A physical IRQ.
    Irq,
    /// A physical FIQ.
    Fiq,
    /// An SError.
    Serror,
}

core::arch::global_asm!(
    r#"
    .pushsection .text.kvm_rs_a64_switch, "ax"
    .arch_extension fp
    .arch_extension simd

    .balign 8
    .global kvm_rs_a64_guest_enter
    .type kvm_rs_a64_guest_enter, %function
kvm_rs_a64_guest_enter:
    hint #34
    stp x18, x19, [x0, #272]
    stp x20, x21, [x0, #288]
    stp x22, x23, [x0, #304]
    stp x24, x25, [x0, #320]
    stp x26, x27, [x0, #336]
    stp x28, x29, [x0, #352]
    str x30, [x0, #368]
    mov x1, sp
    str x1, [x0, #376]
    mrs x1, sp_el0
    str x1, [x0, #384]
    mrs x1, vbar_el2
    str x1, [x0, #392]
    mrs x1, daif
    str x1, [x0, #400]
    msr daifset, #0xf
    stp x0, xzr, [sp, #-16]!
    ldr x1, [x0, #248]
    msr sp_el0, x1
    ldr x1, [x0, #256]
    msr elr_el2, x1
    ldr x1, [x0, #264]
    msr spsr_el2, x1
    adrp x1, kvm_rs_a64_vectors
    add x1, x1, :lo12:kvm_rs_a64_vectors
    msr vbar_el2, x1
    isb
    ldp x2, x3, [x0, #16]
    ldp x4, x5, [x0, #32]
    ldp x6, x7, [x0, #48]
    ldp x8, x9, [x0, #64]
    ldp x10, x11, [x0, #80]
    ldp x12, x13, [x0, #96]
    ldp x14, x15, [x0, #112]
    ldp x16, x17, [x0, #128]
    ldp x18, x19, [x0, #144]
    ldp x20, x21, [x0, #160]
    ldp x22, x23, [x0, #176]
    ldp x24, x25, [x0, #192]
    ldp x26, x27, [x0, #208]
    ldp x28, x29, [x0, #224]
    ldr x30, [x0, #240]
    ldp x0, x1, [x0]
    eret
    dsb nsh
    isb
    .size kvm_rs_a64_guest_enter, . - kvm_rs_a64_guest_enter

    // x1: the exit code; [sp]: guest x0, x1; [sp + 16]: the Ctx.
kvm_rs_a64_exit:
    ldr x0, [sp, #16]
    stp x2, x3, [x0, #16]
    stp x4, x5, [x0, #32]
    stp x6, x7, [x0, #48]
    stp x8, x9, [x0, #64]
    stp x10, x11, [x0, #80]
    stp x12, x13, [x0, #96]
    stp x14, x15, [x0, #112]
    stp x16, x17, [x0, #128]
    stp x18, x19, [x0, #144]
    stp x20, x21, [x0, #160]
    stp x22, x23, [x0, #176]
    stp x24, x25, [x0, #192]
    stp x26, x27, [x0, #208]
    stp x28, x29, [x0, #224]
    str x30, [x0, #240]
    ldp x2, x3, [sp], #16
    stp x2, x3, [x0]
    add sp, sp, #16
    mrs x2, sp_el0
    str x2, [x0, #248]
    mrs x2, elr_el2
    str x2, [x0, #256]
    mrs x2, spsr_el2
    str x2, [x0, #264]
    ldr x2, [x0, #392]
    msr vbar_el2, x2
    isb
    ldr x2, [x0, #384]
    msr sp_el0, x2
    ldp x18, x19, [x0, #272]
    ldp x20, x21, [x0, #288]
    ldp x22, x23, [x0, #304]
    ldp x24, x25, [x0, #320]
    ldp x26, x27, [x0, #336]
    ldp x28, x29, [x0, #352]
    ldr x30, [x0, #368]
    ldr x2, [x0, #400]
    msr daif, x2
    mov x0, x1
    ret

    // An exception at EL2 while kvm_rs's vectors are installed: only the
    // few instructions around the ERET run so, with every exception
    // masked, and none of them can fault. Unreachable; park the CPU.
kvm_rs_a64_bad:
    wfe
    b kvm_rs_a64_bad

    .balign 2048
kvm_rs_a64_vectors:
    b kvm_rs_a64_bad
    .org kvm_rs_a64_vectors + 0x080
    b kvm_rs_a64_bad
    .org kvm_rs_a64_vectors + 0x100
    b kvm_rs_a64_bad
    .org kvm_rs_a64_vectors + 0x180
    b kvm_rs_a64_bad
    .org kvm_rs_a64_vectors + 0x200
    b kvm_rs_a64_bad
    .org kvm_rs_a64_vectors + 0x280
    b kvm_rs_a64_bad
    .org kvm_rs_a64_vectors + 0x300
    b kvm_rs_a64_bad
    .org kvm_rs_a64_vectors + 0x380
    b kvm_rs_a64_bad
    .org kvm_rs_a64_vectors + 0x400
    stp x0, x1, [sp, #-16]!
    mov x1, #0
    b kvm_rs_a64_exit
    .org kvm_rs_a64_vectors + 0x480
    stp x0, x1, [sp, #-16]!
    mov x1, #1
    b kvm_rs_a64_exit
    .org kvm_rs_a64_vectors + 0x500
    stp x0, x1, [sp, #-16]!
    mov x1, #2
    b kvm_rs_a64_exit
    .org kvm_rs_a64_vectors + 0x580
    stp x0, x1, [sp, #-16]!
    mov x1, #3
    b kvm_rs_a64_exit
    .org kvm_rs_a64_vectors + 0x600
    stp x0, x1, [sp, #-16]!
    mov x1, #0
    b kvm_rs_a64_exit
    .org kvm_rs_a64_vectors + 0x680
    stp x0, x1, [sp, #-16]!
    mov x1, #1
    b kvm_rs_a64_exit
    .org kvm_rs_a64_vectors + 0x700
    stp x0, x1, [sp, #-16]!
    mov x1, #2
    b kvm_rs_a64_exit
    .org kvm_rs_a64_vectors + 0x780
    stp x0, x1, [sp, #-16]!
    mov x1, #3
    b kvm_rs_a64_exit
    .org kvm_rs_a64_vectors + 0x800

    .balign 8
    .global kvm_rs_a64_fp_save
    .type kvm_rs_a64_fp_save, %function
kvm_rs_a64_fp_save:
    hint #34
    stp q0, q1, [x0, #0]
    stp q2, q3, [x0, #32]
    stp q4, q5, [x0, #64]
    stp q6, q7, [x0, #96]
    stp q8, q9, [x0, #128]
    stp q10, q11, [x0, #160]
    stp q12, q13, [x0, #192]
    stp q14, q15, [x0, #224]
    stp q16, q17, [x0, #256]
    stp q18, q19, [x0, #288]
    stp q20, q21, [x0, #320]
    stp q22, q23, [x0, #352]
    stp q24, q25, [x0, #384]
    stp q26, q27, [x0, #416]
    stp q28, q29, [x0, #448]
    stp q30, q31, [x0, #480]
    mrs x1, fpsr
    str x1, [x0, #512]
    mrs x1, fpcr
    str x1, [x0, #520]
    ret
    .size kvm_rs_a64_fp_save, . - kvm_rs_a64_fp_save

    .balign 8
    .global kvm_rs_a64_fp_restore
    .type kvm_rs_a64_fp_restore, %function
kvm_rs_a64_fp_restore:
    hint #34
    ldp q0, q1, [x0, #0]
    ldp q2, q3, [x0, #32]
    ldp q4, q5, [x0, #64]
    ldp q6, q7, [x0, #96]
    ldp q8, q9, [x0, #128]
    ldp q10, q11, [x0, #160]
    ldp q12, q13, [x0, #192]
    ldp q14, q15, [x0, #224]
    ldp q16, q17, [x0, #256]
    ldp q18, q19, [x0, #288]
    ldp q20, q21, [x0, #320]
    ldp q22, q23, [x0, #352]
    ldp q24, q25, [x0, #384]
    ldp q26, q27, [x0, #416]
    ldp q28, q29, [x0, #448]
    ldp q30, q31, [x0, #480]
    ldr x1, [x0, #512]
    msr fpsr, x1
    ldr x1, [x0, #520]
    msr fpcr, x1
    ret
    .size kvm_rs_a64_fp_restore, . - kvm_rs_a64_fp_restore
    .popsection
"#
);

extern "C" {
    /// Enters the guest of `ctx`; returns the [`Exit`] code (0-3).
    fn kvm_rs_a64_guest_enter(ctx: *mut Ctx) -> u64;
    /// Saves the FP/SIMD registers into `*regs`.
    fn kvm_rs_a64_fp_save(regs: *mut FpRegs);
    /// Loads the FP/SIMD registers from `*regs`.
    fn kvm_rs_a64_fp_restore(regs: *const FpRegs);
}

/// Reads system register `$reg` (a literal name).
macro_rules! mrs {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: Reading an EL2-accessible system register has no side
        // effect; the callers name only such registers.
        unsafe { core::arch::asm!(concat!("mrs {0}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Writes `$v` to system register `$reg`.
macro_rules! msr {
    ($reg:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: The callers only write guest-context registers (EL1 via
        // `*_EL12`, EL0, EL2 trap controls) with interrupts off, and restore
        // what the host uses before interrupts come back.
        unsafe { core::arch::asm!(concat!("msr ", $reg, ", {0}"), in(reg) v, options(nomem, nostack, preserves_flags)) };
    }};
}

/// `HCR_EL2` bits.
pub(crate) mod hcr {
    pub(crate) const VM: u64 = 1 << 0;
    pub(crate) const SWIO: u64 = 1 << 1;
    pub(crate) const PTW: u64 = 1 << 2;
    pub(crate) const FMO: u64 = 1 << 3;
    pub(crate) const IMO: u64 = 1 << 4;
    pub(crate) const AMO: u64 = 1 << 5;
    pub(crate) const FB: u64 = 1 << 9;
    pub(crate) const BSU_IS: u64 = 1 << 10;
    pub(crate) const TWI: u64 = 1 << 13;
    pub(crate) const TWE: u64 = 1 << 14;
    pub(crate) const TID1: u64 = 1 << 16;
    pub(crate) const TID2: u64 = 1 << 17;
    pub(crate) const TID3: u64 = 1 << 18;
    pub(crate) const TSC: u64 = 1 << 19;
    pub(crate) const TIDCP: u64 = 1 << 20;
    pub(crate) const TACR: u64 = 1 << 21;
    pub(crate) const TSW: u64 = 1 << 22;
    pub(crate) const RW: u64 = 1 << 31;
    pub(crate) const E2H: u64 = 1 << 34;
    pub(crate) const TLOR: u64 = 1 << 35;
    pub(crate) const FWB: u64 = 1 << 46;
    pub(crate) const TID5: u64 = 1 << 58;

    /// `HCR_GUEST_FLAGS | HCR_E2H | HCR_TID2 | HCR_TID5` (`vcpu_set_hcr()`
    /// without MTE, RAS or EVT), plus FWB when the host has it.
    pub(crate) const fn guest(fwb: bool) -> u64 {
        let v = TSC | TSW | TWE | TWI | VM | BSU_IS | FB | TACR | AMO | SWIO | TIDCP | RW | TLOR | FMO | IMO | PTW
            | TID3 | TID1 | E2H | TID2 | TID5;
        if fwb {
            v | FWB
        } else {
            v
        }
    }
}

/// `MDCR_EL2` for the guest (`kvm_arm_setup_mdcr_el2()` with no PMU and no
/// guest debug): PMU, trace, profiling and debug registers trap; the host's
/// `HPMN` stays.
fn guest_mdcr(host: u64) -> u64 {
    const HPMN: u64 = 0x1f;
    const TPMCR: u64 = 1 << 5;
    const TPM: u64 = 1 << 6;
    const TDA: u64 = 1 << 9;
    const TDOSA: u64 = 1 << 10;
    const TDRA: u64 = 1 << 11;
    const TPMS: u64 = 1 << 14;
    const TTRF: u64 = 1 << 19;
    (host & HPMN) | TPMCR | TPM | TDA | TDOSA | TDRA | TPMS | TTRF
}

/// `CPACR_EL1` (the E2H view of `CPTR_EL2`) for the guest: FP/SIMD
/// allowed, SVE and SME trapped (the guest is offered neither).
fn guest_cptr(host: u64) -> u64 {
    const ZEN: u64 = 3 << 16;
    const FPEN: u64 = 3 << 20;
    const SMEN: u64 = 3 << 24;
    (host & !(ZEN | SMEN)) | FPEN
}

/// `CNTHCTL_EL2.{EL1PCTEN,EL1PTEN}` (E2H layout): the guest's EL1 reaches
/// the physical counter and timer.
const CNTHCTL_EL1PCTEN_PTEN: u64 = 3 << 10;

/// Which EL1 registers beyond the base architecture this host has, that
/// the world switch must switch (upstream's `ctxt_has_tcrx()` & co.):
/// without it the guest would run with what the host's boot left in them
/// (e.g. the kernel's `TCR2_EL1.PIE` and `PIR_EL1`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HostExt {
    /// `FEAT_HCX`: `HCRX_EL2`, with the guest's value.
    pub(crate) hcrx: Option<u64>,
    /// `FEAT_TCR2`: `TCR2_EL1`.
    pub(crate) tcrx: bool,
    /// `FEAT_SCTLR2`: `SCTLR2_EL1`.
    pub(crate) sctlrx: bool,
    /// `FEAT_S1PIE`: `PIR_EL1`, `PIRE0_EL1`.
    pub(crate) s1pie: bool,
    /// `FEAT_S1POE`: `POR_EL1`.
    pub(crate) s1poe: bool,
}

/// `HCRX_EL2` bits.
const HCRX_MSCEN: u64 = 1 << 11;
const HCRX_TCR2EN: u64 = 1 << 14;
const HCRX_SCTLR2EN: u64 = 1 << 15;

impl HostExt {
    /// From `ID_AA64MMFR1_EL1` and `ID_AA64MMFR3_EL1` of this CPU; reads
    /// the host's `HCRX_EL2` (the guest keeps its MOPS enable: the guest's
    /// ID registers may offer MOPS), as upstream's `HCRX_GUEST_FLAGS`
    /// without SME, GCS, FPMR or nested features.
    pub(crate) fn probe(mmfr1: u64, mmfr3: u64) -> HostExt {
        let tcrx = mmfr3 & 0xf != 0;
        let sctlrx = (mmfr3 >> 4) & 0xf != 0;
        let hcrx = ((mmfr1 >> 40) & 0xf != 0).then(|| {
            let host = mrs!("s3_4_c1_c2_2");
            let mut v = host & HCRX_MSCEN;
            if tcrx {
                v |= HCRX_TCR2EN;
            }
            if sctlrx {
                v |= HCRX_SCTLR2EN;
            }
            v
        });
        HostExt { hcrx, tcrx, sctlrx, s1pie: (mmfr3 >> 8) & 0xf != 0, s1poe: (mmfr3 >> 16) & 0xf != 0 }
    }
}

/// The per-VM and per-vCPU EL2 configuration of an entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    /// `HCR_EL2`.
    pub(crate) hcr: u64,
    /// `VTTBR_EL2`.
    pub(crate) vttbr: u64,
    /// `VTCR_EL2`.
    pub(crate) vtcr: u64,
    /// `VPIDR_EL2`: the guest's `MIDR_EL1`.
    pub(crate) vpidr: u64,
    /// `VMPIDR_EL2`: the guest's `MPIDR_EL1`.
    pub(crate) vmpidr: u64,
    /// `CNTVOFF_EL2`.
    pub(crate) cntvoff: u64,
    /// The host's optional EL1 registers and `HCRX_EL2`.
    pub(crate) ext: HostExt,
    /// Invalidate this CPU's stage-1 entries of the VMID before entering
    /// (another vCPU of the VM, or a new VMID, used this CPU).
    pub(crate) flush_local: bool,
}

/// The guest's EL1 registers in [`SysRegs`] that live in hardware while it
/// runs, with their `*_EL12` (or shared) names.
macro_rules! guest_el1 {
    ($m:ident) => {
        $m!(Sr::SctlrEl1, "s3_5_c1_c0_0"); // sctlr_el12
        $m!(Sr::CpacrEl1, "s3_5_c1_c0_2"); // cpacr_el12
        $m!(Sr::Ttbr0El1, "s3_5_c2_c0_0"); // ttbr0_el12
        $m!(Sr::Ttbr1El1, "s3_5_c2_c0_1"); // ttbr1_el12
        $m!(Sr::TcrEl1, "s3_5_c2_c0_2"); // tcr_el12
        $m!(Sr::EsrEl1, "s3_5_c5_c2_0"); // esr_el12
        $m!(Sr::Afsr0El1, "s3_5_c5_c1_0"); // afsr0_el12
        $m!(Sr::Afsr1El1, "s3_5_c5_c1_1"); // afsr1_el12
        $m!(Sr::FarEl1, "s3_5_c6_c0_0"); // far_el12
        $m!(Sr::MairEl1, "s3_5_c10_c2_0"); // mair_el12
        $m!(Sr::VbarEl1, "s3_5_c12_c0_0"); // vbar_el12
        $m!(Sr::ContextidrEl1, "s3_5_c13_c0_1"); // contextidr_el12
        $m!(Sr::AmairEl1, "s3_5_c10_c3_0"); // amair_el12
        $m!(Sr::CntkctlEl1, "s3_5_c14_c1_0"); // cntkctl_el12
        $m!(Sr::ElrEl1, "s3_5_c4_c0_1"); // elr_el12
        $m!(Sr::SpsrEl1, "s3_5_c4_c0_0"); // spsr_el12
        $m!(Sr::SpEl1, "sp_el1");
        $m!(Sr::TpidrEl1, "tpidr_el1");
        $m!(Sr::ParEl1, "par_el1");
        $m!(Sr::TpidrEl0, "tpidr_el0");
        $m!(Sr::TpidrroEl0, "tpidrro_el0");
        $m!(Sr::CntvCvalEl0, "s3_5_c14_c3_2"); // cntv_cval_el02
        $m!(Sr::CntvCtlEl0, "s3_5_c14_c3_1"); // cntv_ctl_el02
        $m!(Sr::CntpCvalEl0, "s3_5_c14_c2_2"); // cntp_cval_el02
        $m!(Sr::CntpCtlEl0, "s3_5_c14_c2_1"); // cntp_ctl_el02
    };
}

/// Runs the guest once (`__kvm_vcpu_run_vhe()`): loads `sys`, `fp`, `ctx`
/// and `cfg`, enters, and saves everything back when the guest exits.
///
/// # Safety
///
/// Interrupts are off (and stay off); `cfg.vttbr` points to live stage-2
/// tables of the VM whose `VTCR_EL2` is `cfg.vtcr`, and `cfg.hcr` is a
/// guest `HCR_EL2` with E2H set and TGE clear.
pub(crate) unsafe fn enter(ctx: &mut Ctx, sys: &mut SysRegs, fp: &mut FpRegs, cfg: &Config) -> ExitInfo {
    // Host state the guest's registers replace.
    let host_tpidr = mrs!("tpidr_el0");
    let host_tpidrro = mrs!("tpidrro_el0");
    let host_par = mrs!("par_el1");
    let host_hcr = mrs!("hcr_el2");
    let host_mdcr = mrs!("mdcr_el2");
    let host_cptr = mrs!("cpacr_el1");
    let host_cnthctl = mrs!("cnthctl_el2");
    let mut host_fp = FpRegs::zero();
    // SAFETY: `host_fp` is a valid, aligned buffer.
    unsafe { kvm_rs_a64_fp_save(&mut host_fp) };
    // SAFETY: `fp` is valid and aligned.
    unsafe { kvm_rs_a64_fp_restore(fp) };

    macro_rules! load {
        ($sr:expr, $name:literal) => {
            msr!($name, sys.get($sr));
        };
    }
    guest_el1!(load);
    let ext = cfg.ext;
    if ext.sctlrx {
        msr!("s3_5_c1_c0_3", sys.get(Sr::Sctlr2El1)); // SCTLR2_EL12
    }
    if ext.tcrx {
        msr!("s3_5_c2_c0_3", sys.get(Sr::Tcr2El1)); // TCR2_EL12
    }
    if ext.s1pie {
        msr!("s3_5_c10_c2_3", sys.get(Sr::PirEl1)); // PIR_EL12
        msr!("s3_5_c10_c2_2", sys.get(Sr::Pire0El1)); // PIRE0_EL12
    }
    if ext.s1poe {
        msr!("s3_5_c10_c2_4", sys.get(Sr::PorEl1)); // POR_EL12
    }
    let host_hcrx = ext.hcrx.map(|guest| {
        let host = mrs!("s3_4_c1_c2_2"); // HCRX_EL2
        msr!("s3_4_c1_c2_2", guest);
        host
    });

    msr!("vpidr_el2", cfg.vpidr);
    msr!("vmpidr_el2", cfg.vmpidr);
    msr!("cntvoff_el2", cfg.cntvoff);
    msr!("cnthctl_el2", host_cnthctl | CNTHCTL_EL1PCTEN_PTEN);
    msr!("mdcr_el2", guest_mdcr(host_mdcr));
    msr!("cpacr_el1", guest_cptr(host_cptr));
    msr!("vtcr_el2", cfg.vtcr);
    msr!("vttbr_el2", cfg.vttbr);
    // SAFETY: Orders the stage-2 setup before HCR_EL2 turns it on
    // (erratum 1165522 wants both stages in place before TGE clears).
    unsafe { core::arch::asm!("isb", options(nostack)) };
    msr!("hcr_el2", cfg.hcr);
    // SAFETY: A context synchronisation.
    unsafe { core::arch::asm!("isb", options(nostack)) };
    if cfg.flush_local {
        // SAFETY: In the VM's VMID context (VTTBR set, TGE clear):
        // invalidates this CPU's stage-1 and stage-2 entries of the VMID
        // (`__kvm_flush_cpu_context()` and a new VMID's local flush).
        unsafe { core::arch::asm!("dsb nshst", "tlbi vmalls12e1", "ic iallu", "dsb nsh", "isb", options(nostack)) };
    }

    // SAFETY: Interrupts are off (caller); `ctx` is valid for the call; the
    // guest runs with the configuration above and every exception it takes
    // returns here through kvm_rs's vectors, the host's registers restored.
    let code = unsafe { kvm_rs_a64_guest_enter(ctx) };
    let esr = mrs!("esr_el2");
    let far = mrs!("far_el2");
    let mut hpfar = Some(mrs!("hpfar_el2"));
    if code == 0 && fault_needs_at(esr) {
        // `__get_fault_info()`: HPFAR_EL2 may be UNKNOWN for a stage-2
        // permission fault outside a stage-1 walk; translate FAR with the
        // guest's stage 1 (still loaded, HCR_EL2 still the guest's). The
        // guest's PAR_EL1 is kept.
        let gpar = mrs!("par_el1");
        // SAFETY: A translation in the guest's EL1&0 regime; it only
        // writes PAR_EL1, restored below.
        unsafe { core::arch::asm!("at s1e1r, {0}", "isb", in(reg) far, options(nostack)) };
        let par = mrs!("par_el1");
        msr!("par_el1", gpar);
        hpfar = (par & 1 == 0).then_some((par & 0x0000_ffff_ffff_f000) >> 8);
    }

    msr!("hcr_el2", host_hcr);
    // SAFETY: A context synchronisation: TGE is back before anything else.
    unsafe { core::arch::asm!("isb", options(nostack)) };
    msr!("cpacr_el1", host_cptr);
    msr!("mdcr_el2", host_mdcr);
    msr!("cnthctl_el2", host_cnthctl);

    macro_rules! save {
        ($sr:expr, $name:literal) => {
            sys.set($sr, mrs!($name));
        };
    }
    guest_el1!(save);
    if let Some(h) = host_hcrx {
        msr!("s3_4_c1_c2_2", h);
    }
    if ext.sctlrx {
        sys.set(Sr::Sctlr2El1, mrs!("s3_5_c1_c0_3"));
    }
    if ext.tcrx {
        sys.set(Sr::Tcr2El1, mrs!("s3_5_c2_c0_3"));
    }
    if ext.s1pie {
        sys.set(Sr::PirEl1, mrs!("s3_5_c10_c2_3"));
        sys.set(Sr::Pire0El1, mrs!("s3_5_c10_c2_2"));
    }
    if ext.s1poe {
        sys.set(Sr::PorEl1, mrs!("s3_5_c10_c2_4"));
    }
    // The guest's timers must not fire while the host runs.
    msr!("s3_5_c14_c3_1", /* cntv_ctl_el02 */ 0);
    msr!("s3_5_c14_c2_1", /* cntp_ctl_el02 */ 0);
    msr!("tpidr_el0", host_tpidr);
    msr!("tpidrro_el0", host_tpidrro);
    msr!("par_el1", host_par);
    // SAFETY: As above.
    unsafe { kvm_rs_a64_fp_save(fp) };
    // SAFETY: As above.
    unsafe { kvm_rs_a64_fp_restore(&host_fp) };
    // SAFETY: A context synchronisation.
    unsafe { core::arch::asm!("isb", options(nostack)) };
    let exit = match code {
        0 => Exit::Sync,
        1 => Exit::Irq,
        2 => Exit::Fiq,
        _ => Exit::Serror,
    };
    ExitInfo { exit, esr, far, hpfar }
}

/// Whether the syndrome is a stage-2 permission fault outside a stage-1
/// walk (data or instruction abort from the guest), whose `HPFAR_EL2` may
/// be UNKNOWN.
const fn fault_needs_at(esr: u64) -> bool {
    let ec = (esr >> 26) & 0x3f;
    (ec == 0x20 || ec == 0x24) && esr & (1 << 7) == 0 && esr & 0x3c == 0x0c
}

/// What [`enter`] returns: the exit and the fault registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExitInfo {
    /// Why the guest exited.
    pub(crate) exit: Exit,
    /// `ESR_EL2`.
    pub(crate) esr: u64,
    /// `FAR_EL2`.
    pub(crate) far: u64,
    /// `HPFAR_EL2`, or the IPA page of `FAR_EL2` in its format; `None` when
    /// that translation failed (the guest's stage 1 changed: retry).
    pub(crate) hpfar: Option<u64>,
}
