// SPDX-License-Identifier: GPL-2.0

//! The guest's firmware calls (`HVC #0`/`SMC #0`): SMCCC 1.1 and PSCI
//! (upstream's `arch/arm64/kvm/hypercalls.c` and `psci.c`).
//!
//! Pure logic (`core` only), tested on the host. The run loop gives the
//! VM's and other vCPUs' side through [`Env`].
//!
//! Not offered (kvm_rs has no such feature; upstream handles them): TRNG,
//! PV time, the PTP vendor call, the SMCCC filter (no `KVM_ARM_VM_SMCCC_CTRL`); those calls
//! answer `NOT_SUPPORTED` even when the feature bitmaps allow them.

/// `SMCCC_RET_NOT_SUPPORTED` / `PSCI_RET_NOT_SUPPORTED`.
pub(crate) const NOT_SUPPORTED: u64 = -1i64 as u64;
/// `SMCCC_RET_NOT_REQUIRED`.
const NOT_REQUIRED: u64 = -2i64 as u64;
/// `PSCI_RET_INVALID_PARAMS`.
pub(crate) const INVALID_PARAMS: u64 = -2i64 as u64;
/// `PSCI_RET_ALREADY_ON`.
pub(crate) const ALREADY_ON: u64 = -4i64 as u64;
/// `PSCI_RET_ON_PENDING`.
pub(crate) const ON_PENDING: u64 = -5i64 as u64;
/// `PSCI_RET_INTERNAL_FAILURE`.
const INTERNAL_FAILURE: u64 = -6i64 as u64;

/// `ARM_SMCCC_VERSION_FUNC_ID`.
pub(crate) const SMCCC_VERSION: u32 = 0x8000_0000;
/// `ARM_SMCCC_ARCH_FEATURES_FUNC_ID`.
pub(crate) const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7fff;
const SMCCC_ARCH_WORKAROUND_3: u32 = 0x8000_3fff;
const VENDOR_HYP_KVM_FEATURES: u32 = 0x8600_0000;
const VENDOR_HYP_KVM_PTP: u32 = 0x8600_0001;
const VENDOR_HYP_CALL_UID: u32 = 0x8600_ff01;
const HV_PV_TIME_FEATURES: u32 = 0xc500_0020;
const HV_PV_TIME_ST: u32 = 0xc500_0021;

/// PSCI 0.2+ function `n`, 32-bit calling convention.
const fn fn32(n: u32) -> u32 {
    0x8400_0000 + n
}

/// PSCI 0.2+ function `n`, 64-bit calling convention.
const fn fn64(n: u32) -> u32 {
    0xc400_0000 + n
}

/// KVM's PSCI 0.1 function `n` (`KVM_PSCI_FN()`).
const fn fn01(n: u32) -> u32 {
    0x95c1_ba5e + n
}

pub(crate) const PSCI_VERSION: u32 = fn32(0);
const CPU_SUSPEND: u32 = 1;
const CPU_OFF: u32 = 2;
const CPU_ON: u32 = 3;
const AFFINITY_INFO: u32 = 4;
const MIGRATE_INFO_TYPE: u32 = 6;
pub(crate) const SYSTEM_OFF: u32 = fn32(8);
pub(crate) const SYSTEM_RESET: u32 = fn32(9);
pub(crate) const PSCI_FEATURES: u32 = fn32(10);
const SYSTEM_SUSPEND: u32 = 14;
const SYSTEM_RESET2: u32 = 18;
const SYSTEM_OFF2: u32 = 0x15;

/// `KVM_SYSTEM_EVENT_SHUTDOWN`.
pub(crate) const EVENT_SHUTDOWN: u32 = 1;
/// `KVM_SYSTEM_EVENT_RESET`.
pub(crate) const EVENT_RESET: u32 = 2;

/// `MPIDR_HWID_BITMASK`.
pub(crate) const MPIDR_HWID_BITMASK: u64 = 0xff_00ff_ffff;

/// The KVM vendor hypervisor UID (`ARM_SMCCC_VENDOR_HYP_UID_KVM_REG_*`).
const KVM_UID: [u64; 4] = [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d];

/// A Spectre-class mitigation state as the host reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spectre {
    Vulnerable,
    Mitigated,
    Unaffected,
}

/// What the calls need of the VM and the other vCPUs.
pub(crate) trait Env {
    /// `kvm_psci_version()`: `0x1` (0.1), `0x2` (0.2) or `0x1000n` (1.n).
    fn psci_version(&self) -> u64;
    /// The firmware feature bitmaps (standard, standard hypervisor, vendor
    /// hypervisor, vendor hypervisor 2).
    fn bitmaps(&self) -> [u64; 4];
    /// The Spectre v2, v4, BHB states (workarounds 1, 2, 3).
    fn spectre(&self, workaround: u32) -> Spectre;
    /// Whether the guest sees `ID_AA64PFR1_EL1.SSBS`.
    fn has_ssbs(&self) -> bool;
    /// Whether the calling vCPU is in AArch32 state.
    fn is_32bit(&self) -> bool;
    /// `KVM_ARCH_FLAG_SYSTEM_SUSPEND_ENABLED` (`KVM_CAP_ARM_SYSTEM_SUSPEND`).
    fn system_suspend_enabled(&self) -> bool;
    /// `kvm_psci_vcpu_on()` of the vCPU with MPIDR affinity `mpidr`:
    /// `None` if there is none; else whether it was stopped (then it is now
    /// powered on at `pc` with `x0`), `Err(pending)` if not stopped
    /// (`pending`: another `CPU_ON` is in progress).
    fn cpu_on(&mut self, mpidr: u64, pc: u64, x0: u64) -> Option<Result<(), bool>>;
    /// `AFFINITY_INFO`: whether any vCPU whose MPIDR matches `target`
    /// under `mask` is on.
    fn any_on(&self, target: u64, mask: u64) -> bool;
    /// `kvm_arm_vcpu_power_off()` of the calling vCPU.
    fn power_off_self(&mut self);
    /// `kvm_vcpu_wfi()` (a PSCI `CPU_SUSPEND`).
    fn suspend(&mut self);
}

/// What a call does once [`call`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Writes the registers that are `Some` (`x0`-`x3`), back to the guest.
    Ret([Option<u64>; 4]),
    /// As [`Outcome::Ret`], then every vCPU stops and the run exits with
    /// `KVM_EXIT_SYSTEM_EVENT` of `ty` and `flags` (`data[0]`).
    SystemEvent { ty: u32, flags: u64, regs: [Option<u64>; 4] },
    /// `SYSTEM_SUSPEND` (`kvm_psci_system_suspend()`): the run exits with
    /// `KVM_EXIT_SYSTEM_EVENT` `SUSPEND` (no data), registers untouched.
    SystemSuspend,
}

/// `smccc_set_retval()`.
const fn ret(a: u64, b: u64, c: u64, d: u64) -> Outcome {
    Outcome::Ret([Some(a), Some(b), Some(c), Some(d)])
}

/// `kvm_smccc_default_allowed()`.
const fn default_allowed(f: u32) -> bool {
    match f {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => true,
        _ => ((f >> 24) & 0x3f == 4 && f & 0xffff <= 0x1f) || (f >= fn01(0) && f <= fn01(3)),
    }
}

/// `kvm_smccc_test_fw_bmap()`.
fn fw_bitmap_allows(f: u32, b: [u64; 4]) -> bool {
    match f {
        0x8400_0050..=0x8400_0053 | 0xc400_0053 => b[0] & 1 != 0,
        HV_PV_TIME_FEATURES | HV_PV_TIME_ST => b[1] & 1 != 0,
        VENDOR_HYP_KVM_FEATURES | VENDOR_HYP_CALL_UID => b[2] & 1 != 0,
        VENDOR_HYP_KVM_PTP => b[2] & 2 != 0,
        _ => false,
    }
}

/// A firmware call with `x[0..4]` (`kvm_smccc_call_handler()`).
pub(crate) fn call(x: [u64; 4], env: &mut impl Env) -> Outcome {
    let f = x[0] as u32;
    if !fw_bitmap_allows(f, env.bitmaps()) && !default_allowed(f) {
        return ret(NOT_SUPPORTED, 0, 0, 0);
    }
    match f {
        SMCCC_VERSION => ret(0x1_0001, 0, 0, 0),
        SMCCC_ARCH_FEATURES => {
            let v = match x[1] as u32 {
                SMCCC_ARCH_WORKAROUND_1 => match env.spectre(1) {
                    Spectre::Vulnerable => NOT_SUPPORTED,
                    Spectre::Mitigated => 0,
                    Spectre::Unaffected => 1,
                },
                SMCCC_ARCH_WORKAROUND_2 => match env.spectre(2) {
                    Spectre::Vulnerable => NOT_SUPPORTED,
                    Spectre::Mitigated if env.has_ssbs() => NOT_SUPPORTED,
                    Spectre::Mitigated | Spectre::Unaffected => NOT_REQUIRED,
                },
                SMCCC_ARCH_WORKAROUND_3 => match env.spectre(3) {
                    Spectre::Vulnerable => NOT_SUPPORTED,
                    Spectre::Mitigated => 0,
                    Spectre::Unaffected => 1,
                },
                // ARM_SMCCC_HV_PV_TIME_FEATURES: no PV time in kvm_rs.
                _ => NOT_SUPPORTED,
            };
            ret(v, 0, 0, 0)
        }
        VENDOR_HYP_CALL_UID => ret(KVM_UID[0], KVM_UID[1], KVM_UID[2], KVM_UID[3]),
        VENDOR_HYP_KVM_FEATURES => {
            let b = env.bitmaps();
            ret(b[2], 0, b[3], 0)
        }
        // TRNG, PV time, PTP: not offered (see the module documentation).
        0x8400_0050..=0x8400_0053 | 0xc400_0053 | HV_PV_TIME_FEATURES | HV_PV_TIME_ST | VENDOR_HYP_KVM_PTP => {
            ret(NOT_SUPPORTED, 0, 0, 0)
        }
        _ => psci(f, x, env),
    }
}

/// `kvm_psci_call()`.
fn psci(f: u32, x: [u64; 4], env: &mut impl Env) -> Outcome {
    if f & 0x4000_0000 != 0 && env.is_32bit() {
        return ret(NOT_SUPPORTED, 0, 0, 0);
    }
    match env.psci_version() {
        v @ 0x1_0000..=0x1_0003 => psci_1x(f, x, (v & 0xffff) as u32, env),
        0x2 => psci_02(f, x, env),
        0x1 => psci_01(f, x, env),
        _ => ret(NOT_SUPPORTED, 0, 0, 0),
    }
}

/// `kvm_psci_narrow_to_32bit()` of the arguments of a 32-bit call.
fn narrow(x: [u64; 4]) -> [u64; 4] {
    [x[0], x[1] & 0xffff_ffff, x[2] & 0xffff_ffff, x[3] & 0xffff_ffff]
}

/// `kvm_psci_vcpu_on()` (`v01`: PSCI 0.1 answers differently).
fn cpu_on(x: [u64; 4], v01: bool, env: &mut impl Env) -> u64 {
    match env.cpu_on(x[1] & MPIDR_HWID_BITMASK, x[2], x[3]) {
        None => INVALID_PARAMS,
        Some(Ok(())) => 0,
        Some(Err(_)) if v01 => INVALID_PARAMS,
        Some(Err(true)) => ON_PENDING,
        Some(Err(false)) => ALREADY_ON,
    }
}

/// `kvm_psci_vcpu_affinity_info()`.
fn affinity_info(x: [u64; 4], env: &impl Env) -> u64 {
    let level = x[2];
    if level > 3 {
        return INVALID_PARAMS;
    }
    let shift = ((1u64 << level) >> 1) << 3;
    let mask = MPIDR_HWID_BITMASK & !((1u64 << shift) - 1);
    let target = x[1] & mask;
    // PSCI_0_2_AFFINITY_LEVEL_ON (0) / _OFF (1).
    if env.any_on(target, mask) {
        0
    } else {
        1
    }
}

/// `kvm_psci_0_2_call()`.
fn psci_02(f: u32, x: [u64; 4], env: &mut impl Env) -> Outcome {
    let val = match f {
        PSCI_VERSION => 2,
        f if f == fn32(CPU_SUSPEND) || f == fn64(CPU_SUSPEND) => {
            env.suspend();
            0
        }
        f if f == fn32(CPU_OFF) => {
            env.power_off_self();
            0
        }
        f if f == fn32(CPU_ON) => cpu_on(narrow(x), false, env),
        f if f == fn64(CPU_ON) => cpu_on(x, false, env),
        f if f == fn32(AFFINITY_INFO) => affinity_info(narrow(x), env),
        f if f == fn64(AFFINITY_INFO) => affinity_info(x, env),
        f if f == fn32(MIGRATE_INFO_TYPE) => 2,
        SYSTEM_OFF | SYSTEM_RESET => {
            let ty = if f == SYSTEM_OFF { EVENT_SHUTDOWN } else { EVENT_RESET };
            return Outcome::SystemEvent {
                ty,
                flags: 0,
                regs: [Some(INTERNAL_FAILURE), Some(0), Some(0), Some(0)],
            };
        }
        _ => NOT_SUPPORTED,
    };
    ret(val, 0, 0, 0)
}

/// `kvm_psci_1_x_call()`.
fn psci_1x(f: u32, x: [u64; 4], minor: u32, env: &mut impl Env) -> Outcome {
    let val = match f {
        PSCI_VERSION => 0x1_0000 | u64::from(minor),
        PSCI_FEATURES => {
            let arg = x[1] as u32;
            if arg & 0x4000_0000 != 0 && env.is_32bit() {
                NOT_SUPPORTED
            } else {
                match arg {
                    a if a == PSCI_VERSION
                        || a == fn32(CPU_SUSPEND)
                        || a == fn64(CPU_SUSPEND)
                        || a == fn32(CPU_OFF)
                        || a == fn32(CPU_ON)
                        || a == fn64(CPU_ON)
                        || a == fn32(AFFINITY_INFO)
                        || a == fn64(AFFINITY_INFO)
                        || a == fn32(MIGRATE_INFO_TYPE)
                        || a == SYSTEM_OFF
                        || a == SYSTEM_RESET
                        || a == PSCI_FEATURES
                        || a == SMCCC_VERSION =>
                    {
                        0
                    }
                    a if (a == fn32(SYSTEM_RESET2) || a == fn64(SYSTEM_RESET2)) && minor >= 1 => 0,
                    // PSCI_1_3_OFF_TYPE_HIBERNATE_OFF.
                    a if (a == fn32(SYSTEM_OFF2) || a == fn64(SYSTEM_OFF2)) && minor >= 3 => 1,
                    a if (a == fn32(SYSTEM_SUSPEND) || a == fn64(SYSTEM_SUSPEND)) && env.system_suspend_enabled() => 0,
                    _ => NOT_SUPPORTED,
                }
            }
        }
        f if f == fn32(SYSTEM_SUSPEND) || f == fn64(SYSTEM_SUSPEND) => {
            if env.system_suspend_enabled() {
                return Outcome::SystemSuspend;
            }
            NOT_SUPPORTED
        }
        f if f == fn32(SYSTEM_RESET2) || f == fn64(SYSTEM_RESET2) => {
            if minor < 1 {
                NOT_SUPPORTED
            } else {
                let arg = if f == fn32(SYSTEM_RESET2) { x[1] & 0xffff_ffff } else { x[1] } as u32;
                if arg == 0 || arg >= 0x8000_0000 {
                    return Outcome::SystemEvent {
                        ty: EVENT_RESET,
                        flags: 1,
                        regs: [Some(INTERNAL_FAILURE), None, None, None],
                    };
                }
                INVALID_PARAMS
            }
        }
        f if f == fn32(SYSTEM_OFF2) || f == fn64(SYSTEM_OFF2) => {
            if minor < 3 {
                NOT_SUPPORTED
            } else {
                let xs = if f == fn32(SYSTEM_OFF2) { narrow(x) } else { x };
                let arg = xs[1] as u32;
                if (arg != 0 && arg != 1) || xs[2] != 0 {
                    INVALID_PARAMS
                } else {
                    return Outcome::SystemEvent {
                        ty: EVENT_SHUTDOWN,
                        flags: 1,
                        regs: [Some(INTERNAL_FAILURE), Some(0), Some(0), Some(0)],
                    };
                }
            }
        }
        _ => return psci_02(f, x, env),
    };
    ret(val, 0, 0, 0)
}

/// `kvm_psci_0_1_call()`.
fn psci_01(f: u32, x: [u64; 4], env: &mut impl Env) -> Outcome {
    let val = match f {
        f if f == fn01(1) => {
            env.power_off_self();
            0
        }
        f if f == fn01(2) => cpu_on(x, true, env),
        _ => NOT_SUPPORTED,
    };
    ret(val, 0, 0, 0)
}

#[cfg(test)]
mod host_tests {
    use super::*;

    struct T {
        version: u64,
        on: [bool; 4],
        pending: bool,
        off_self: bool,
        suspended: bool,
        started: Option<(u64, u64, u64)>,
        bitmaps: [u64; 4],
        system_suspend: bool,
    }

    impl T {
        fn new(version: u64) -> T {
            T {
                version,
                on: [true, false, false, false],
                pending: false,
                off_self: false,
                suspended: false,
                started: None,
                bitmaps: [1, 1, 3, 0],
                system_suspend: false,
            }
        }
    }

    impl Env for T {
        fn psci_version(&self) -> u64 {
            self.version
        }
        fn bitmaps(&self) -> [u64; 4] {
            self.bitmaps
        }
        fn spectre(&self, w: u32) -> Spectre {
            match w {
                1 => Spectre::Mitigated,
                2 => Spectre::Unaffected,
                _ => Spectre::Vulnerable,
            }
        }
        fn has_ssbs(&self) -> bool {
            false
        }
        fn is_32bit(&self) -> bool {
            false
        }
        fn system_suspend_enabled(&self) -> bool {
            self.system_suspend
        }
        fn cpu_on(&mut self, mpidr: u64, pc: u64, x0: u64) -> Option<Result<(), bool>> {
            let i = usize::try_from(mpidr).ok().filter(|&i| i < 4)?;
            if self.on[i] {
                return Some(Err(self.pending));
            }
            self.on[i] = true;
            self.started = Some((mpidr, pc, x0));
            Some(Ok(()))
        }
        fn any_on(&self, target: u64, mask: u64) -> bool {
            (0..4u64).any(|i| i & mask == target && self.on[i as usize])
        }
        fn power_off_self(&mut self) {
            self.off_self = true;
        }
        fn suspend(&mut self) {
            self.suspended = true;
        }
    }

    const M1: u64 = -1i64 as u64;

    #[test]
    fn smccc_version_features_and_unknown() {
        let mut t = T::new(0x1_0003);
        assert_eq!(call([SMCCC_VERSION as u64, 0, 0, 0], &mut t), ret(0x1_0001, 0, 0, 0));
        assert_eq!(call([SMCCC_ARCH_FEATURES as u64, SMCCC_ARCH_WORKAROUND_1 as u64, 0, 0], &mut t), ret(0, 0, 0, 0));
        assert_eq!(call([SMCCC_ARCH_FEATURES as u64, SMCCC_ARCH_WORKAROUND_2 as u64, 0, 0], &mut t), ret(NOT_REQUIRED, 0, 0, 0));
        assert_eq!(call([SMCCC_ARCH_FEATURES as u64, SMCCC_ARCH_WORKAROUND_3 as u64, 0, 0], &mut t), ret(M1, 0, 0, 0));
        assert_eq!(call([SMCCC_ARCH_FEATURES as u64, SMCCC_VERSION as u64, 0, 0], &mut t), ret(M1, 0, 0, 0));
        // Unknown calls, whatever the arguments: -1 in x0, x1-x3 cleared.
        assert_eq!(call([0x8600_1234, 5, 6, 7], &mut t), ret(M1, 0, 0, 0));
        assert_eq!(call([0xdead_beef_0000_0042, 5, 6, 7], &mut t), ret(M1, 0, 0, 0));
        assert_eq!(call([VENDOR_HYP_CALL_UID as u64, 0, 0, 0], &mut t), ret(0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d));
        assert_eq!(call([VENDOR_HYP_KVM_FEATURES as u64, 0, 0, 0], &mut t), ret(3, 0, 0, 0));
        t.bitmaps[2] = 0;
        assert_eq!(call([VENDOR_HYP_CALL_UID as u64, 0, 0, 0], &mut t), ret(M1, 0, 0, 0));
    }

    #[test]
    fn psci_versions_and_features() {
        let mut t = T::new(0x1_0003);
        assert_eq!(call([PSCI_VERSION as u64, 0, 0, 0], &mut t), ret(0x1_0003, 0, 0, 0));
        assert_eq!(call([PSCI_FEATURES as u64, fn64(CPU_ON) as u64, 0, 0], &mut t), ret(0, 0, 0, 0));
        assert_eq!(call([PSCI_FEATURES as u64, fn64(SYSTEM_OFF2) as u64, 0, 0], &mut t), ret(1, 0, 0, 0));
        assert_eq!(call([PSCI_FEATURES as u64, fn32(SYSTEM_SUSPEND) as u64, 0, 0], &mut t), ret(M1, 0, 0, 0));
        assert_eq!(call([PSCI_FEATURES as u64, 0x1234, 0, 0], &mut t), ret(M1, 0, 0, 0));
        let mut t = T::new(0x1_0000);
        assert_eq!(call([PSCI_FEATURES as u64, fn32(SYSTEM_RESET2) as u64, 0, 0], &mut t), ret(M1, 0, 0, 0));
        let mut t = T::new(2);
        assert_eq!(call([PSCI_VERSION as u64, 0, 0, 0], &mut t), ret(2, 0, 0, 0));
        assert_eq!(call([PSCI_FEATURES as u64, 0, 0, 0], &mut t), ret(M1, 0, 0, 0));
        assert_eq!(call([fn32(MIGRATE_INFO_TYPE) as u64, 0, 0, 0], &mut t), ret(2, 0, 0, 0));
        let mut t = T::new(1);
        assert_eq!(call([PSCI_VERSION as u64, 0, 0, 0], &mut t), ret(M1, 0, 0, 0));
        assert_eq!(call([fn01(2) as u64, 0, 0x8000, 9], &mut t), ret(M1 - 1, 0, 0, 0));
        assert_eq!(call([fn01(2) as u64, 1, 0x8000, 9], &mut t), ret(0, 0, 0, 0));
    }

    #[test]
    fn cpu_on_off_affinity() {
        let mut t = T::new(0x1_0003);
        assert_eq!(call([fn64(CPU_ON) as u64, 1, 0x4000_0000, 7], &mut t), ret(0, 0, 0, 0));
        assert_eq!(t.started, Some((1, 0x4000_0000, 7)));
        assert_eq!(call([fn64(CPU_ON) as u64, 1, 0, 0], &mut t), ret(ALREADY_ON, 0, 0, 0));
        t.pending = true;
        assert_eq!(call([fn64(CPU_ON) as u64, 1, 0, 0], &mut t), ret(ON_PENDING, 0, 0, 0));
        assert_eq!(call([fn64(CPU_ON) as u64, 9, 0, 0], &mut t), ret(INVALID_PARAMS, 0, 0, 0));
        // 32-bit CPU_ON narrows its arguments.
        assert_eq!(call([fn32(CPU_ON) as u64, 1 << 32 | 2, 1 << 40 | 0x1000, 0], &mut t), ret(0, 0, 0, 0));
        assert_eq!(t.started, Some((2, 0x1000, 0)));
        assert_eq!(call([fn64(AFFINITY_INFO) as u64, 3, 0, 0], &mut t), ret(1, 0, 0, 0));
        assert_eq!(call([fn64(AFFINITY_INFO) as u64, 2, 0, 0], &mut t), ret(0, 0, 0, 0));
        assert_eq!(call([fn64(AFFINITY_INFO) as u64, 3, 1, 0], &mut t), ret(0, 0, 0, 0));
        assert_eq!(call([fn64(AFFINITY_INFO) as u64, 3, 4, 0], &mut t), ret(INVALID_PARAMS, 0, 0, 0));
        assert_eq!(call([fn32(CPU_OFF) as u64, 0, 0, 0], &mut t), ret(0, 0, 0, 0));
        assert!(t.off_self);
        assert_eq!(call([fn64(CPU_SUSPEND) as u64, 0, 0, 0], &mut t), ret(0, 0, 0, 0));
        assert!(t.suspended);
    }

    #[test]
    fn system_events() {
        let mut t = T::new(0x1_0003);
        let fail = Some(-6i64 as u64);
        assert_eq!(
            call([SYSTEM_OFF as u64, 0, 0, 0], &mut t),
            Outcome::SystemEvent { ty: EVENT_SHUTDOWN, flags: 0, regs: [fail, Some(0), Some(0), Some(0)] }
        );
        assert_eq!(
            call([SYSTEM_RESET as u64, 0, 0, 0], &mut t),
            Outcome::SystemEvent { ty: EVENT_RESET, flags: 0, regs: [fail, Some(0), Some(0), Some(0)] }
        );
        assert_eq!(
            call([fn64(SYSTEM_RESET2) as u64, 0, 0, 0], &mut t),
            Outcome::SystemEvent { ty: EVENT_RESET, flags: 1, regs: [fail, None, None, None] }
        );
        assert_eq!(call([fn64(SYSTEM_RESET2) as u64, 5, 0, 0], &mut t), ret(INVALID_PARAMS, 0, 0, 0));
        assert_eq!(
            call([fn64(SYSTEM_OFF2) as u64, 1, 0, 0], &mut t),
            Outcome::SystemEvent { ty: EVENT_SHUTDOWN, flags: 1, regs: [fail, Some(0), Some(0), Some(0)] }
        );
        assert_eq!(call([fn64(SYSTEM_OFF2) as u64, 2, 0, 0], &mut t), ret(INVALID_PARAMS, 0, 0, 0));
        let mut t = T::new(0x1_0002);
        assert_eq!(call([fn64(SYSTEM_OFF2) as u64, 1, 0, 0], &mut t), ret(M1, 0, 0, 0));
        // SYSTEM_SUSPEND only with the capability.
        assert_eq!(call([fn64(SYSTEM_SUSPEND) as u64, 0x1000, 7, 0], &mut t), ret(M1, 0, 0, 0));
        t.system_suspend = true;
        assert_eq!(call([PSCI_FEATURES as u64, fn64(SYSTEM_SUSPEND) as u64, 0, 0], &mut t), ret(0, 0, 0, 0));
        assert_eq!(call([fn64(SYSTEM_SUSPEND) as u64, 0x1000, 7, 0], &mut t), Outcome::SystemSuspend);
    }
}
