// SPDX-License-Identifier: GPL-2.0

//! arm64 backend: the host kernel runs at EL2 with VHE (`HCR_EL2.E2H` = 1).

mod sysreg;

use crate::kvm::{
    abi::Errno,
    arch::{
        Arch,
        VmCapChange,
        VmFacts, //
    },
    memslot::MemslotLimits,
    one_reg::{
        reg_size,
        RegEmit,
        RegsOp, //
    },
    stats::{
        StatsSchema,
        ARM64_VCPU_SCHEMA, //
    },
    uapi::{
        read_user,
        GuestDebug, //
    },
    vm_limits::{
        self,
        cap,
        Arm64HostCaps,
        VcpuLimits, //
    },
};
use core::sync::atomic::{
    AtomicU32,
    Ordering, //
};
use kernel::{
    bindings,
    ioctl::{
        _IOR,
        _IOW, //
    },
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
    uapi,
};

/// The arm64 host.
pub(crate) struct Host;

/// `kvm_ipa_limit`, set once by [`Host::probe`] before `/dev/kvm` exists.
static IPA_LIMIT: AtomicU32 = AtomicU32::new(0);

/// The IPA size kvm_rs offers at most: 48 bits. Beyond needs LPA2 stage-2
/// tables with 4 KiB pages, which kvm_rs will not have at first (upstream
/// caps the same way without LPA2).
const MAX_IPA_BITS: u32 = 48;

/// `struct kvm_vcpu_init` (`KVM_ARM_PREFERRED_TARGET`, `KVM_ARM_VCPU_INIT`).
#[repr(transparent)]
#[derive(Clone, Copy)]
struct VcpuInit(uapi::kvm_vcpu_init);

// SAFETY: `kvm_vcpu_init` is `repr(C)` with only `u32` fields and no
// padding: every bit pattern is valid.
unsafe impl FromBytes for VcpuInit {}
// SAFETY: As above: no padding, so every byte is initialized.
unsafe impl AsBytes for VcpuInit {}

/// `KVM_ARM_VCPU_INIT`: `_IOW(KVMIO, 0xae, struct kvm_vcpu_init)`.
const KVM_ARM_VCPU_INIT: u32 = _IOW::<uapi::kvm_vcpu_init>(uapi::KVMIO, 0xae);
/// `KVM_ARM_PREFERRED_TARGET`: `_IOR(KVMIO, 0xaf, struct kvm_vcpu_init)`.
const KVM_ARM_PREFERRED_TARGET: u32 = _IOR::<uapi::kvm_vcpu_init>(uapi::KVMIO, 0xaf);
/// `KVM_VCPU_VALID_FEATURES`: the feature bits upstream knows (10).
const VALID_FEATURES: u32 = (1 << 10) - 1;
/// `KVM_ARM_VCPU_POWER_OFF`: start powered off (ephemeral, not a feature).
const FEATURE_POWER_OFF: u32 = 1 << uapi::KVM_ARM_VCPU_POWER_OFF;

/// The `KVM_GET_ONE_REG` id of `ID_AA64MMFR0_EL1` (op0 3, op1 0, CRn 0,
/// CRm 7, op2 0).
const REG_ID_AA64MMFR0_EL1: u64 =
    uapi::KVM_REG_ARM64 | uapi::KVM_REG_SIZE_U64 | uapi::KVM_REG_ARM64_SYSREG as u64 | (3 << 14) | (7 << 3);

/// `KVM_GUESTDBG_VALID_MASK` of arm64.
const GUESTDBG_VALID_MASK: u32 = uapi::KVM_GUESTDBG_ENABLE
    | uapi::KVM_GUESTDBG_SINGLESTEP
    | uapi::KVM_GUESTDBG_USE_SW_BP
    | uapi::KVM_GUESTDBG_USE_HW;

/// The arm64 state of a vCPU.
#[derive(Default)]
pub(crate) struct Vcpu {
    /// `KVM_ARM_VCPU_INIT` ran (`VCPU_INITIALIZED`).
    initialized: bool,
    /// `vcpu->arch.mp_state`: `KVM_MP_STATE_RUNNABLE`, `_STOPPED` or
    /// `_SUSPENDED`.
    mp_state: u32,
    /// `vcpu->guest_debug`: 0, or a valid control with `ENABLE`.
    guest_debug: u32,
    /// `vcpu->arch.external_debug_state`: the breakpoint and watchpoint
    /// registers of the last `KVM_SET_GUEST_DEBUG` with `USE_HW`.
    external_debug_state: uapi::kvm_guest_debug_arch,
}

/// `num_online_cpus()`.
fn online_cpus() -> u32 {
    // SAFETY: `__num_online_cpus` is a valid static `atomic_t`; a volatile
    // read of its counter is `atomic_read()`.
    let n = unsafe { core::ptr::addr_of!(bindings::__num_online_cpus.counter).read_volatile() };
    u32::try_from(n).unwrap_or(1)
}

impl Host {
    fn ipa_limit() -> u32 {
        IPA_LIMIT.load(Ordering::Relaxed)
    }

    /// The host facts `kvm_vm_ioctl_check_extension()` reads, for the caps
    /// kvm_rs answers (the others stay false/0: not offered yet).
    fn host_caps(vm: Option<&VmFacts>) -> Arm64HostCaps {
        let default_max = vm_limits::ARM64_KVM_MAX_VCPUS;
        Arm64HostCaps {
            vgic_present: false,
            max_vcpus: vm.map_or(default_max, |v| v.max_vcpus),
            default_max_vcpus: default_max,
            online_cpus: online_cpus(),
            on_vm: vm.is_some(),
            msis_require_devid: false,
            guestdbg_valid_mask: 0,
            mte: false,
            pvtime: false,
            el1_32bit: false,
            nested_virt: false,
            hcr_nv1: false,
            brps: 0,
            wrps: 0,
            pmuv3: false,
            ras: false,
            ipa_limit: Self::ipa_limit(),
            sve: false,
            ptrauth: false,
            eager_split_chunk_size: 0,
            supported_block_sizes: 0,
            cacheable_pfnmap: false,
        }
    }
}

impl Arch for Host {
    const NAME: &'static str = "arm64";
    const VCPU_STATS: &'static StatsSchema = &ARM64_VCPU_SCHEMA;
    const SLOT_NEEDS_WRITABLE_VMA: bool = false;
    type Vcpu = Vcpu;
    type Vm = ();

    fn probe() -> Result {
        let el = sysreg::current_el();
        if el != 2 {
            pr_err!("kernel runs at EL{}, not EL2: cannot host guests (VHE host required)\n", el);
            return Err(ENODEV);
        }
        let hcr = sysreg::hcr_el2();
        if hcr & sysreg::HCR_E2H == 0 {
            pr_err!("HCR_EL2.E2H is clear: the kernel is not a VHE host\n");
            return Err(ENODEV);
        }
        let Some(pa_bits) = sysreg::parange_bits(sysreg::id_aa64mmfr0_el1()) else {
            pr_err!("reserved ID_AA64MMFR0_EL1.PARange: cannot size the IPA space\n");
            return Err(ENODEV);
        };
        let ipa = pa_bits.min(MAX_IPA_BITS);
        IPA_LIMIT.store(ipa, Ordering::Relaxed);
        pr_info!(
            "arm64 host at EL2 with VHE (CurrentEL {:#x}, HCR_EL2 {:#x}), IPA limit {} bits\n",
            el << 2,
            hcr,
            ipa
        );
        Ok(())
    }

    fn vm_create() -> Result<(), Errno> {
        Ok(())
    }

    fn vm_gpa_bits(ty: usize) -> Result<u32, Errno> {
        vm_limits::arm64_vm_ipa_bits(ty as u64, Self::ipa_limit())
    }

    fn memslot_limits(gpa_bits: u32) -> MemslotLimits {
        MemslotLimits {
            page_shift: kernel::page::PAGE_SHIFT as u32,
            readonly_mem: true,
            guest_memfd: false,
            // TASK_SIZE_MAX = 1 << VA_BITS.
            task_size: 1 << bindings::CONFIG_ARM64_VA_BITS,
            // Top-byte ignore: untagged_addr() sign-extends from bit 55.
            tag_bits: 8,
            gpa_bits,
        }
    }

    fn vcpu_limits() -> VcpuLimits {
        VcpuLimits::arm64(None)
    }

    fn vcpu_precreate(id: u32, limits: &VcpuLimits) -> Result<(), Errno> {
        vm_limits::arm64_vcpu_precreate(id, limits.max_vcpus, false)
    }

    fn check_extension(c: i64, vm: Option<&VmFacts>) -> i64 {
        match c {
            cap::NR_VCPUS | cap::MAX_VCPUS | cap::MAX_VCPU_ID | cap::ARM_VM_IPA_SIZE
            | cap::READONLY_MEM | cap::IMMEDIATE_EXIT => {
                vm_limits::arm64_check_extension(&Self::host_caps(vm), c)
            }
            // ONE_REG (one ID register only), PSCI, vGIC, timers, PMU, SVE,
            // MTE, ...: not yet.
            _ => 0,
        }
    }

    fn vm_enable_cap(_cap: u32, _flags: u32, _args: &[u64; 4], _busy: bool) -> Result<VmCapChange, Errno> {
        Err(Errno::EINVAL)
    }

    fn vm_ioctl(cmd: u32, arg: usize) -> Result<isize, Errno> {
        if cmd != KVM_ARM_PREFERRED_TARGET {
            return Err(Errno::EINVAL);
        }
        let init = VcpuInit(uapi::kvm_vcpu_init {
            target: uapi::KVM_ARM_TARGET_GENERIC_V8,
            features: [0; 7],
        });
        UserSlice::new(UserPtr::from_addr(arg), size_of::<VcpuInit>())
            .writer()
            .write(&init)
            .map_err(|_| Errno::EFAULT)?;
        Ok(0)
    }

    fn vcpu_create(_id: u32, _idx: usize) -> Result<Vcpu, Errno> {
        // Zeroed, as upstream: RUNNABLE until KVM_ARM_VCPU_INIT says.
        Ok(Vcpu::default())
    }

    fn vcpu_ioctl(vcpu: &mut Vcpu, _vm: &mut (), cmd: u32, arg: usize) -> Result<isize, Errno> {
        if cmd != KVM_ARM_VCPU_INIT {
            return Err(Errno::EINVAL);
        }
        let init: VcpuInit = read_user(arg).map_err(|_| Errno::EFAULT)?;
        let init = init.0;
        if init.target != uapi::KVM_ARM_TARGET_GENERIC_V8 {
            return Err(Errno::EINVAL);
        }
        let features = init.features[0] & !FEATURE_POWER_OFF;
        if features & !VALID_FEATURES != 0 || init.features.iter().skip(1).any(|&f| f != 0) {
            return Err(Errno::ENOENT);
        }
        // No optional vCPU feature (PSCI 0.2, PMU, SVE, pointer auth, EL2,
        // AArch32) exists in kvm_rs yet.
        if features != 0 {
            return Err(Errno::EINVAL);
        }
        vcpu.initialized = true;
        vcpu.mp_state = if init.features[0] & FEATURE_POWER_OFF != 0 {
            uapi::KVM_MP_STATE_STOPPED
        } else {
            uapi::KVM_MP_STATE_RUNNABLE
        };
        Ok(0)
    }

    fn regs_check(vcpu: &Vcpu, _op: RegsOp) -> Result<(), Errno> {
        if !vcpu.initialized {
            return Err(Errno::ENOEXEC);
        }
        Ok(())
    }

    fn get_one_reg(
        _vcpu: &mut Vcpu,
        _vm: &mut (),
        id: u64,
        write: impl FnOnce(&[u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        check_one_reg(id)?;
        write(&sysreg::id_aa64mmfr0_el1().to_ne_bytes())
    }

    fn set_one_reg(
        _vcpu: &mut Vcpu,
        _vm: &mut (),
        id: u64,
        read: impl FnOnce(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        if (id & !uapi::KVM_REG_SIZE_MASK) >> 32 != uapi::KVM_REG_ARM64 >> 32 {
            return Err(Errno::EINVAL);
        }
        // System registers: `get_user()` of 8 bytes, then the lookup.
        let mut bytes = [0u8; 8];
        read(&mut bytes)?;
        check_one_reg(id)?;
        // The ID registers are not writable in kvm_rs yet.
        Err(Errno::EINVAL)
    }

    fn for_each_reg(_vcpu: &Vcpu, _vm: &(), emit: RegEmit<'_>) -> Result<(), Errno> {
        emit(REG_ID_AA64MMFR0_EL1)
    }

    fn vcpu_run_check(vcpu: &mut Vcpu) -> Result<(), Errno> {
        if vcpu.initialized {
            Ok(())
        } else {
            Err(Errno::ENOEXEC)
        }
    }

    fn vcpu_run(_vcpu: &mut Vcpu) -> Result<(), Errno> {
        // No world switch yet: honestly refuse to run the guest.
        Err(Errno::ENOEXEC)
    }

    fn get_mp_state(vcpu: &Vcpu) -> u32 {
        vcpu.mp_state
    }

    fn set_mp_state(vcpu: &mut Vcpu, state: u32) -> Result<(), Errno> {
        match state {
            // Power-off and suspend also make a request and kick the vCPU;
            // with no run loop yet, the state is all there is.
            uapi::KVM_MP_STATE_RUNNABLE | uapi::KVM_MP_STATE_STOPPED | uapi::KVM_MP_STATE_SUSPENDED => {
                vcpu.mp_state = state;
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn set_guest_debug(vcpu: &mut Vcpu, dbg: &GuestDebug) -> Result<(), Errno> {
        let control = dbg.0.control;
        if control & !GUESTDBG_VALID_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        if control & uapi::KVM_GUESTDBG_ENABLE == 0 {
            vcpu.guest_debug = 0;
            return Ok(());
        }
        vcpu.guest_debug = control;
        if control & uapi::KVM_GUESTDBG_USE_HW != 0 {
            vcpu.external_debug_state = dbg.0.arch;
        }
        Ok(())
    }

    // With VHE the host kernel already runs at EL2: nothing to turn on per
    // CPU until the world switch brings vGIC and timer state.
    fn enable_cpu() -> Result {
        Ok(())
    }

    fn disable_cpu() {}

    // No stage-2 tables yet (the stage-2 MMU comes with the arm64 world switch): nothing is ever
    // mapped, so there is nothing to unmap or age.
    type Stage2 = ();

    fn stage2_new(_gpa_bits: u32) -> Result<(), Errno> {
        Ok(())
    }

    fn stage2_unmap(_s2: &mut (), _gfn_start: u64, _gfn_end: u64) {}

    fn stage2_age(_s2: &mut (), _gfn_start: u64, _gfn_end: u64) -> bool {
        false
    }

    fn stage2_test_age(_s2: &(), _gfn_start: u64, _gfn_end: u64) -> bool {
        false
    }
}

/// The checks of `kvm_arm_{get,set}_reg()` for the registers kvm_rs has:
/// `EINVAL` for a non-arm64 id, `ENOENT` for anything but
/// `ID_AA64MMFR0_EL1`.
fn check_one_reg(id: u64) -> Result<(), Errno> {
    if (id & !uapi::KVM_REG_SIZE_MASK) >> 32 != uapi::KVM_REG_ARM64 >> 32 {
        return Err(Errno::EINVAL);
    }
    if id != REG_ID_AA64MMFR0_EL1 || reg_size(id) != 8 {
        return Err(Errno::ENOENT);
    }
    Ok(())
}

#[kunit_tests(kvm_rs_arm64_host)]
mod tests {
    use super::*;

    #[test]
    fn kernel_runs_at_el2() {
        assert_eq!(sysreg::current_el(), 2);
    }

    #[test]
    fn host_is_vhe() {
        let hcr = sysreg::hcr_el2();
        assert_ne!(hcr & sysreg::HCR_E2H, 0);
        // With E2H set, TGE routes EL0 exceptions of the host to EL2.
        assert_ne!(hcr & sysreg::HCR_TGE, 0);
    }

    #[test]
    fn ipa_limit_and_vm_types() {
        let ipa = Host::ipa_limit();
        assert!((32..=MAX_IPA_BITS).contains(&ipa));
        if ipa >= 40 {
            assert_eq!(Host::vm_gpa_bits(0), Ok(40));
        }
        assert_eq!(Host::vm_gpa_bits(ipa as usize + 1), Err(Errno::EINVAL));
        assert_eq!(Host::vm_gpa_bits(31), Err(Errno::EINVAL));
    }

    #[test]
    fn one_reg_needs_init_and_knows_one_id_register() {
        let get = |v: &mut Vcpu, id| {
            let mut value = [0u8; 8];
            Host::get_one_reg(v, &mut (), id, |b| {
                value.get_mut(..b.len()).ok_or(Errno::EFAULT)?.copy_from_slice(b);
                Ok(())
            })
            .map(|()| u64::from_ne_bytes(value))
        };
        let mut v = Vcpu::default();
        assert_eq!(Host::regs_check(&v, RegsOp::OneReg), Err(Errno::ENOEXEC));
        assert_eq!(Host::regs_check(&v, RegsOp::RegList), Err(Errno::ENOEXEC));
        assert_eq!(Host::vcpu_run_check(&mut v), Err(Errno::ENOEXEC));
        v.initialized = true;
        assert_eq!(Host::regs_check(&v, RegsOp::OneReg), Ok(()));
        assert_eq!(get(&mut v, REG_ID_AA64MMFR0_EL1), Ok(sysreg::id_aa64mmfr0_el1()));
        assert_eq!(get(&mut v, REG_ID_AA64MMFR0_EL1 + 1), Err(Errno::ENOENT));
        assert_eq!(get(&mut v, 0x1234), Err(Errno::EINVAL));
        assert_eq!(KVM_ARM_VCPU_INIT, 0x4020_aeae);
        assert_eq!(KVM_ARM_PREFERRED_TARGET, 0x8020_aeaf);
    }

    #[test]
    fn mp_state_runnable_stopped_suspended() {
        let mut v = Vcpu::default();
        assert_eq!(Host::get_mp_state(&v), uapi::KVM_MP_STATE_RUNNABLE);
        for ok in [uapi::KVM_MP_STATE_STOPPED, uapi::KVM_MP_STATE_SUSPENDED, uapi::KVM_MP_STATE_RUNNABLE] {
            assert_eq!(Host::set_mp_state(&mut v, ok), Ok(()));
            assert_eq!(Host::get_mp_state(&v), ok);
        }
        for bad in [uapi::KVM_MP_STATE_HALTED, uapi::KVM_MP_STATE_INIT_RECEIVED, 11, u32::MAX] {
            assert_eq!(Host::set_mp_state(&mut v, bad), Err(Errno::EINVAL));
        }
        assert_eq!(Host::get_mp_state(&v), uapi::KVM_MP_STATE_RUNNABLE);
        v.initialized = true;
        assert_eq!(Host::vcpu_run(&mut v), Err(Errno::ENOEXEC));
    }

    #[test]
    fn guest_debug_checks_control_bits() {
        let mut v = Vcpu::default();
        let mut dbg = GuestDebug(uapi::kvm_guest_debug::default());
        dbg.0.control = uapi::KVM_GUESTDBG_ENABLE | (1 << 2);
        assert_eq!(Host::set_guest_debug(&mut v, &dbg), Err(Errno::EINVAL));
        dbg.0.control = uapi::KVM_GUESTDBG_ENABLE | uapi::KVM_GUESTDBG_USE_HW;
        dbg.0.arch.dbg_bvr[3] = 0x1234;
        assert_eq!(Host::set_guest_debug(&mut v, &dbg), Ok(()));
        assert_eq!(v.guest_debug, dbg.0.control);
        assert_eq!(v.external_debug_state.dbg_bvr[3], 0x1234);
        dbg.0.control = uapi::KVM_GUESTDBG_SINGLESTEP;
        assert_eq!(Host::set_guest_debug(&mut v, &dbg), Ok(()));
        assert_eq!(v.guest_debug, 0);
    }
}
