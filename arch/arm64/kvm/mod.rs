// SPDX-License-Identifier: GPL-2.0

//! arm64 backend: the host kernel runs at EL2 with VHE (`HCR_EL2.E2H` = 1).
//!
//! The register state and its ABI live in pure files (host-tested):
//! [`regs`] (ids, core registers), [`sysregs`] (the system register table),
//! [`idregs`] and [`ftr_tables`] (ID registers and their writable fields),
//! [`state`] (vCPU/VM state, `KVM_ARM_VCPU_INIT`, ONE_REG, REG_LIST). This
//! file reads the host for them and moves bytes from and to userspace.

mod esr;
mod ftr_tables;
mod hypercalls;
mod idregs;
mod pgtable;
mod regs;
mod run;
mod stage2;
mod state;
mod switch;
mod sysreg;
mod sysregs;
/// The VMID allocator: riscv's `vmid.rs` is arch-neutral logic (generations
/// and rollover over a `SpaceLock`) apart from its `hgatp` probe, which
/// arm64 does not use; the same file is compiled here.
#[path = "../../riscv/kvm/vmid.rs"]
#[allow(dead_code)]
mod vmid;

// The pure files reach the generic ones as `super::abi`/`super::one_reg`.
use crate::kvm::{
    abi,
    one_reg, //
};

use crate::kvm::{
    abi::Errno,
    arch::{
        Arch,
        SetIrq,
        VmCapChange,
        VmFacts,
        VmInUse, //
    },
    device::{
        AttrOp,
        KVM_HAS_DEVICE_ATTR,
        KVM_SET_DEVICE_ATTR, //
    },
    device_fd::VmDeviceOps,
    memslot::MemslotLimits,
    one_reg::{
        RegEmit,
        RegsOp, //
    },
    stats::{
        StatsSchema,
        ARM64_VCPU_SCHEMA, //
    },
    uapi::{
        read_user,
        DeviceAttr,
        GuestDebug, //
    },
    vcpu::{
        Vcpu as GenericVcpu,
        VcpuRun, //
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
    AtomicU64,
    Ordering, //
};
use idregs::{
    HostFacts,
    IdVis,
    Mitigation,
    NR_ID_REGS, //
};
use kernel::{
    bindings,
    ioctl::{
        _IOR,
        _IOW, //
    },
    prelude::*,
    sync::Arc,
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
use state::{
    ArmVcpu,
    VmRegs, //
};

/// The arm64 host.
pub(crate) struct Host;

/// `kvm_ipa_limit`, set once by [`Host::probe`] before `/dev/kvm` exists.
static IPA_LIMIT: AtomicU32 = AtomicU32::new(0);

/// The boot CPU's `MIDR_EL1`, `REVIDR_EL1`, `AIDR_EL1` (upstream's
/// `init_imp_id_regs()`), set once by [`Host::probe`].
static BOOT_IMP_ID: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

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

/// `struct reg_mask_range` (`KVM_ARM_GET_REG_WRITABLE_MASKS`).
#[repr(transparent)]
#[derive(Clone, Copy)]
struct RegMaskRange(uapi::reg_mask_range);

// SAFETY: `reg_mask_range` is `repr(C)` of a `u64` and 14 `u32`s (64
// bytes, no padding): every bit pattern is valid.
unsafe impl FromBytes for RegMaskRange {}

/// `KVM_ARM_VCPU_INIT`: `_IOW(KVMIO, 0xae, struct kvm_vcpu_init)`.
const KVM_ARM_VCPU_INIT: u32 = _IOW::<uapi::kvm_vcpu_init>(uapi::KVMIO, 0xae);
/// `KVM_ARM_PREFERRED_TARGET`: `_IOR(KVMIO, 0xaf, struct kvm_vcpu_init)`.
const KVM_ARM_PREFERRED_TARGET: u32 = _IOR::<uapi::kvm_vcpu_init>(uapi::KVMIO, 0xaf);
/// `KVM_ARM_GET_REG_WRITABLE_MASKS`: `_IOR(KVMIO, 0xb6, struct
/// reg_mask_range)`.
const KVM_ARM_GET_REG_WRITABLE_MASKS: u32 = _IOR::<uapi::reg_mask_range>(uapi::KVMIO, 0xb6);

/// `KVM_GUESTDBG_VALID_MASK` of arm64.
const GUESTDBG_VALID_MASK: u32 = uapi::KVM_GUESTDBG_ENABLE
    | uapi::KVM_GUESTDBG_SINGLESTEP
    | uapi::KVM_GUESTDBG_USE_SW_BP
    | uapi::KVM_GUESTDBG_USE_HW;

/// The arm64 state of a VM (`Arch::Vm`): the registers' VM-wide part
/// ([`VmRegs`], which it dereferences to) and what the run loop shares.
pub(crate) struct Vm {
    /// The VM-wide register state.
    regs: VmRegs,
    /// Every vCPU's MP state (see `run.rs`).
    power: Arc<run::PowerTable>,
    /// `KVM_ARCH_FLAG_RETURN_NISV_IO_ABORT_TO_USER`
    /// (`KVM_CAP_ARM_NISV_TO_USER`).
    nisv_to_user: bool,
    /// `KVM_ARCH_FLAG_SYSTEM_SUSPEND_ENABLED` (`KVM_CAP_ARM_SYSTEM_SUSPEND`).
    system_suspend: bool,
}

impl core::ops::Deref for Vm {
    type Target = VmRegs;
    fn deref(&self) -> &VmRegs {
        &self.regs
    }
}

impl core::ops::DerefMut for Vm {
    fn deref_mut(&mut self) -> &mut VmRegs {
        &mut self.regs
    }
}

/// The arm64 state of a vCPU.
pub(crate) struct Vcpu {
    /// The registers and whether `KVM_ARM_VCPU_INIT` ran
    /// ([`state::ArmVcpu`]).
    arm: ArmVcpu,
    /// The vCPU's creation index in the VM.
    idx: usize,
    /// The VM's power table: `vcpu->arch.mp_state` of every vCPU
    /// (`KVM_MP_STATE_RUNNABLE`, `_STOPPED` or `_SUSPENDED`).
    power: Arc<run::PowerTable>,
    /// The run loop's state (pending MMIO, FP registers, last CPU).
    run: run::RunState,
    /// The VM's virtual counter offset, as of the run's start.
    voffset: u64,
    /// The VM's `KVM_CAP_ARM_NISV_TO_USER`, as of the run's start.
    nisv_to_user: bool,
    /// The VM's IPA bits.
    ipa_bits: u32,
    /// `vcpu->guest_debug`: 0, or a valid control with `ENABLE`.
    guest_debug: u32,
    /// `vcpu->arch.external_debug_state`: the breakpoint and watchpoint
    /// registers of the last `KVM_SET_GUEST_DEBUG` with `USE_HW`.
    external_debug_state: uapi::kvm_guest_debug_arch,
}

/// Whether the kernel detected CPU capability `cap` on every CPU
/// (`cpus_have_final_cap()`).
fn cpus_have_cap(cap: u32) -> bool {
    let word = (cap / 64) as usize;
    // SAFETY: `system_cpucaps` is a static bitmap the kernel finalizes
    // before modules load and never changes afterwards; `cap` is a
    // `ARM64_*` cpucap below `ARM64_NCAPS`, and `get` bounds the index.
    let caps = unsafe { &*core::ptr::addr_of!(bindings::system_cpucaps) };
    caps.get(word).is_some_and(|w| (*w >> (cap % 64)) & 1 != 0)
}

/// `kvm_supports_32bit_el0()`: AArch32 at EL0 on every CPU. Upstream
/// asks the `ARM64_HAS_32BIT_EL0` capability and the (unexported)
/// `arm64_mismatched_32bit_el0` key; both come from the sanitised
/// `ID_AA64PFR0_EL1.EL0`, which is AArch32-capable (2) only when every CPU
/// is, so kvm_rs reads that.
fn supports_32bit_el0(pfr0: u64) -> bool {
    pfr0 & idregs::f::PFR0_EL0 >= 2
}

/// `read_sanitised_ftr_reg()`: the system-wide safe value of an ID
/// register. Only call it for registers the kernel describes
/// (`arm64_ftr_regs[]`), else it warns and returns 0.
fn sanitised(enc: regs::Enc) -> u64 {
    // SAFETY: A plain read of the kernel's finalized feature registers.
    unsafe { bindings::read_sanitised_ftr_reg(enc.sys_reg()) }
}

/// What the host offers a new VM (see [`HostFacts`]).
///
/// The Spectre-class states come from the kernel's CPU capabilities:
/// upstream asks `arm64_get_spectre_v2_state()` & co., which are not
/// exported (needs a patch). "Affected" reads as vulnerable here: the
/// firmware workaround calls are not implemented in kvm_rs, so the guest is
/// told they are not available.
fn host_facts() -> HostFacts {
    let mut san = [0u64; NR_ID_REGS];
    for (i, v) in san.iter_mut().enumerate() {
        // Hidden and unallocated registers are never read upstream (and
        // some have no description).
        if idregs::id_desc(i).vis != IdVis::Raz {
            *v = sanitised(idregs::id_enc(i));
        }
    }
    let pfr0 = san[24];
    let affected = |c: u32| if cpus_have_cap(c) { Mitigation::Vulnerable } else { Mitigation::Unaffected };
    HostFacts {
        sanitised: san,
        ctr_el0: sanitised(idregs::CTR_EL0),
        midr: BOOT_IMP_ID[0].load(Ordering::Relaxed),
        revidr: BOOT_IMP_ID[1].load(Ordering::Relaxed),
        aidr: BOOT_IMP_ID[2].load(Ordering::Relaxed),
        actlr: sysreg::actlr_el1(),
        amair: sysreg::amair_el1(),
        el0_32bit: supports_32bit_el0(pfr0),
        gicv3: cpus_have_cap(bindings::ARM64_HAS_GICV3_CPUIF),
        wfxt: cpus_have_cap(bindings::ARM64_HAS_WFXT)
            && !cpus_have_cap(bindings::ARM64_WORKAROUND_QCOM_ORYON_CNTVOFF),
        rasv1p1: cpus_have_cap(bindings::ARM64_HAS_RASV1P1_EXTN),
        poe: cpus_have_cap(bindings::ARM64_HAS_S1POE),
        fpmr: cpus_have_cap(bindings::ARM64_HAS_FPMR),
        spectre_v2: affected(bindings::ARM64_SPECTRE_V2),
        meltdown: if pfr0 & idregs::f::PFR0_CSV3 != 0 {
            Mitigation::Unaffected
        } else if cpus_have_cap(bindings::ARM64_UNMAP_KERNEL_AT_EL0) {
            Mitigation::Mitigated
        } else {
            Mitigation::Vulnerable
        },
        spectre_v4: if !cpus_have_cap(bindings::ARM64_SPECTRE_V4) {
            Mitigation::Unaffected
        } else if cpus_have_cap(bindings::ARM64_SSBS) {
            Mitigation::Mitigated
        } else {
            Mitigation::Vulnerable
        },
        spectre_bhb: affected(bindings::ARM64_SPECTRE_BHB),
    }
}

/// `kvm_phys_timer_read()`: the host's counter, through the kernel's
/// accessor (which knows the counter errata).
fn counter() -> u64 {
    // SAFETY: `arch_timer_read_counter` is set by the arch timer driver at
    // boot, before any module loads, and only read afterwards.
    let read = unsafe { core::ptr::addr_of!(bindings::arch_timer_read_counter).read() };
    match read {
        // SAFETY: The kernel's counter accessor takes no argument and may
        // be called in any context.
        Some(f) => unsafe { f() },
        None => 0,
    }
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
    type Vm = Vm;

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
        if cpus_have_cap(bindings::ARM64_HAS_GIC_PRIO_MASKING) {
            // Pseudo-NMIs: "interrupts off" is a GIC priority mask, which
            // would also keep the host's interrupts from making a running
            // guest exit; the world switch does not switch the PMR.
            pr_err!("the kernel masks interrupts by GIC priority (pseudo-NMI): not supported\n");
            return Err(ENODEV);
        }
        let Some(pa_bits) = sysreg::parange_bits(sysreg::id_aa64mmfr0_el1()) else {
            pr_err!("reserved ID_AA64MMFR0_EL1.PARange: cannot size the IPA space\n");
            return Err(ENODEV);
        };
        let ipa = pa_bits.min(MAX_IPA_BITS);
        IPA_LIMIT.store(ipa, Ordering::Relaxed);
        // SAFETY: Called once, at module load, before any VM exists.
        unsafe {
            stage2::init(
                sysreg::id_aa64mmfr0_el1(),
                sysreg::id_aa64mmfr1_el1(),
                sysreg::id_aa64mmfr2_el1(),
                sanitised(idregs::CTR_EL0),
            )
        };
        run::probe_host_ext();
        for (slot, v) in BOOT_IMP_ID.iter().zip([sysreg::midr_el1(), sysreg::revidr_el1(), sysreg::aidr_el1()]) {
            slot.store(v, Ordering::Relaxed);
        }
        pr_info!(
            "arm64 host at EL2 with VHE (CurrentEL {:#x}, HCR_EL2 {:#x}), IPA limit {} bits\n",
            el << 2,
            hcr,
            ipa
        );
        Ok(())
    }

    fn vm_create() -> Result<Vm, Errno> {
        let power = Arc::new(run::PowerTable::new()?, GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)?;
        Ok(Vm { regs: VmRegs::new(host_facts()), power, nisv_to_user: false, system_suspend: false })
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
            | cap::READONLY_MEM | cap::IMMEDIATE_EXIT | cap::ONE_REG | cap::ARM_SUPPORTED_REG_MASK_RANGES
            | cap::ARM_WRITABLE_IMP_ID_REGS | cap::ARM_PSCI | cap::ARM_PSCI_0_2 | cap::ARM_NISV_TO_USER
            | cap::ARM_SYSTEM_SUSPEND => {
                vm_limits::arm64_check_extension(&Self::host_caps(vm), c)
            }
            // The run loop exists: MP state and ioeventfds (signalled by
            // guest MMIO writes), as upstream.
            cap::MP_STATE | cap::IOEVENTFD => 1,
            // Upstream's generic answers (`CONFIG_KVM_MMIO`): the run loop
            // appends MMIO writes in a zone to the VM's ring; PIO zones
            // register as upstream's and, as there, never fire (no PIO).
            cap::COALESCED_MMIO | cap::COALESCED_PIO => {
                vm_limits::check_extension_generic(&vm_limits::GenericCaps::ARM64, c).unwrap_or(0)
            }
            // vGIC, timers, PMU, SVE, MTE, guest debug, ...: not yet.
            _ => 0,
        }
    }

    fn vm_enable_cap(
        c: u32,
        flags: u32,
        _args: &[u64; 4],
        in_use: VmInUse,
        vm: &mut Vm,
    ) -> Result<VmCapChange, Errno> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        match i64::from(c) {
            cap::ARM_WRITABLE_IMP_ID_REGS if !in_use.vcpus => {
                vm.set_writable_imp_id_regs();
                Ok(VmCapChange::None)
            }
            cap::ARM_NISV_TO_USER => {
                vm.nisv_to_user = true;
                Ok(VmCapChange::None)
            }
            cap::ARM_SYSTEM_SUSPEND => {
                vm.system_suspend = true;
                Ok(VmCapChange::None)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn vm_ioctl(cmd: u32, arg: usize) -> Result<isize, Errno> {
        if cmd == KVM_HAS_DEVICE_ATTR || cmd == KVM_SET_DEVICE_ATTR {
            let attr: DeviceAttr = read_user(arg).map_err(|_| Errno::EFAULT)?;
            return vm_attr(&attr).map(|()| 0);
        }
        match cmd {
            KVM_ARM_PREFERRED_TARGET => {
                // Always the generic target, as upstream.
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
            KVM_ARM_GET_REG_WRITABLE_MASKS => {
                let range: RegMaskRange = read_user(arg).map_err(|_| Errno::EFAULT)?;
                // Only the feature ID range exists; the rest is reserved.
                if range.0.range != 0 || range.0.reserved.iter().any(|&r| r != 0) {
                    return Err(Errno::EINVAL);
                }
                let masks = state::writable_masks(&host_facts());
                let addr = usize::try_from(range.0.addr).map_err(|_| Errno::EFAULT)?;
                UserSlice::new(UserPtr::from_addr(addr), size_of_val(&masks))
                    .writer()
                    .write_slice(AsBytes::as_bytes(&masks))
                    .map_err(|_| Errno::EFAULT)?;
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn vcpu_create(id: u32, idx: usize, vm: &mut Vm) -> Result<Vcpu, Errno> {
        if idx >= run::MAX_VCPUS {
            return Err(Errno::EINVAL);
        }
        // Zeroed, as upstream: RUNNABLE until KVM_ARM_VCPU_INIT says.
        vm.power.set_mp_state(idx, uapi::KVM_MP_STATE_RUNNABLE);
        Ok(Vcpu {
            arm: ArmVcpu::new(id, vm, counter()),
            idx,
            power: vm.power.clone(),
            run: run::RunState::new(),
            voffset: 0,
            nisv_to_user: false,
            ipa_bits: 0,
            guest_debug: 0,
            external_debug_state: Default::default(),
        })
    }

    fn vcpu_ioctl(vcpu: &mut Vcpu, vm: &mut Vm, cmd: u32, arg: usize) -> Result<isize, Errno> {
        if let Some(op) = AttrOp::from_cmd(cmd) {
            let attr: DeviceAttr = read_user(arg).map_err(|_| Errno::EFAULT)?;
            return vcpu_attr(op, &attr).map(|()| 0);
        }
        if cmd != KVM_ARM_VCPU_INIT {
            return Err(Errno::EINVAL);
        }
        let init: VcpuInit = read_user(arg).map_err(|_| Errno::EFAULT)?;
        let power_off = vcpu.arm.init(vm, init.0.target, &init.0.features)?;
        let state = if power_off { uapi::KVM_MP_STATE_STOPPED } else { uapi::KVM_MP_STATE_RUNNABLE };
        vcpu.power.set_mp_state(vcpu.idx, state);
        vcpu.run = run::RunState::new();
        Ok(0)
    }

    fn regs_check(vcpu: &Vcpu, _op: RegsOp) -> Result<(), Errno> {
        // No feature needs KVM_ARM_VCPU_FINALIZE (no SVE): no EPERM.
        if !vcpu.arm.initialized {
            return Err(Errno::ENOEXEC);
        }
        Ok(())
    }

    fn get_one_reg(
        vcpu: &mut Vcpu,
        vm: &mut Vm,
        _shared: &Self::VcpuShared,
        id: u64,
        write: impl FnOnce(&[u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        pending_reset(vcpu, vm);
        vcpu.arm.get(vm, id, counter(), write)
    }

    fn set_one_reg(
        vcpu: &mut Vcpu,
        vm: &mut Vm,
        _shared: &Self::VcpuShared,
        id: u64,
        read: impl FnOnce(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        pending_reset(vcpu, vm);
        vcpu.arm.set(vm, id, counter(), read)
    }

    fn for_each_reg(vcpu: &Vcpu, vm: &Vm, emit: RegEmit<'_>) -> Result<(), Errno> {
        vcpu.arm.for_each_reg(vm, emit)
    }

    fn vcpu_run_check(vcpu: &mut Vcpu, vm: &mut Vm) -> Result<(), Errno> {
        vcpu.arm.first_run(vm)?;
        vcpu.voffset = vm.voffset();
        vcpu.nisv_to_user = vm.nisv_to_user;
        Ok(())
    }

    fn vcpu_complete_exit(vcpu: &mut Vcpu, run: &VcpuRun<'_>) -> Result<(), Errno> {
        run::complete_exit(vcpu, run)
    }

    fn vcpu_run(vcpu: &mut Vcpu, r: &mut VcpuRun<'_>) -> Result<(), Errno> {
        vcpu.ipa_bits = r.vm().mmu().with_stage2(|s2| s2.ipa_bits());
        run::run(vcpu, r)
    }

    fn kick_cpu(cpu: u32) {
        run::kick_cpu(cpu);
    }

    type VcpuShared = ();

    fn vcpu_unlocked_ioctl(_vcpu: &GenericVcpu, _cmd: u32, _arg: usize) -> Option<Result<isize, Errno>> {
        None
    }

    fn get_mp_state(vcpu: &Vcpu, _shared: &()) -> u32 {
        vcpu.power.mp_state(vcpu.idx)
    }

    fn set_mp_state(vcpu: &mut Vcpu, _shared: &(), state: u32) -> Result<(), Errno> {
        match state {
            // The vCPU is not running (its mutex is held): the state is
            // all there is.
            uapi::KVM_MP_STATE_RUNNABLE | uapi::KVM_MP_STATE_STOPPED | uapi::KVM_MP_STATE_SUSPENDED => {
                vcpu.power.set_mp_state(vcpu.idx, state);
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

    // With VHE the host kernel already runs at EL2, and the world switch
    // sets every EL2 control it needs at each entry (and restores the
    // host's at each exit): nothing to turn on or off per CPU until the
    // vGIC and timer state come.
    fn enable_cpu() -> Result {
        Ok(())
    }

    fn disable_cpu() {}

    type Stage2 = stage2::VmStage2;

    fn stage2_new(gpa_bits: u32) -> Result<stage2::VmStage2, Errno> {
        stage2::VmStage2::new(gpa_bits)
    }

    fn stage2_unmap(s2: &mut stage2::VmStage2, gfn_start: u64, gfn_end: u64) {
        s2.unmap(gfn_start, gfn_end);
    }

    fn stage2_age(s2: &mut stage2::VmStage2, gfn_start: u64, gfn_end: u64) -> bool {
        s2.age(gfn_start, gfn_end)
    }

    fn stage2_test_age(s2: &stage2::VmStage2, gfn_start: u64, gfn_end: u64) -> bool {
        s2.test_age(gfn_start, gfn_end)
    }

    fn stage2_flush_all(s2: &mut stage2::VmStage2) {
        s2.flush_all();
    }

    fn stage2_wrprotect(s2: &mut stage2::VmStage2, gfn_start: u64, gfn_end: u64) {
        s2.wrprotect(gfn_start, gfn_end);
    }

    fn stage2_flush_wrprotected(s2: &mut stage2::VmStage2) {
        s2.flush_wrprotected();
    }

    fn intc_initialized() -> bool {
        // `vgic_initialized(kvm)`: kvm_rs has no vGIC yet.
        false
    }

    fn set_gsi_level(_gsi: u32, _level: bool) -> SetIrq {
        // No vGIC yet (and `KVM_IRQFD` cannot assign without one).
        SetIrq::NoIrqchip
    }

    fn device_ops(_ty: u32) -> Option<&'static VmDeviceOps> {
        // KVM_DEV_TYPE_ARM_VGIC_V3 (and _ITS) will come with the vGIC.
        None
    }
}

/// A PSCI `CPU_ON` reset owed to `vcpu`, applied before a ONE_REG access
/// so that userspace sees the registers after it (`kvm_arch_vcpu_ioctl()`
/// of `KVM_{GET,SET}_ONE_REG`).
fn pending_reset(vcpu: &mut Vcpu, vm: &mut Vm) {
    if let Some((pc, x0)) = vcpu.power.take_reset(vcpu.idx) {
        vcpu.arm.reset_for_cpu_on(vm, pc, x0);
        vcpu.run = run::RunState::new();
    }
}

/// `KVM_HAS_DEVICE_ATTR` and `KVM_SET_DEVICE_ATTR` on the VM fd
/// (`kvm_vm_has_attr()`, `kvm_vm_set_attr()`; there is no VM
/// `KVM_GET_DEVICE_ATTR`, it is an unknown VM ioctl, `EINVAL`): every
/// group is `ENXIO`.
///
/// Upstream's only group is `KVM_ARM_VM_SMCCC_CTRL` (the SMCCC filter,
/// which decides which hypercalls exit to userspace). kvm_rs handles the
/// guest's SMCCC/PSCI calls in the kernel only (`hypercalls.rs`) and has no
/// filter yet, so it answers `ENXIO` there too, where upstream answers 0 to
/// `HAS` of `KVM_ARM_VM_SMCCC_FILTER`.
fn vm_attr(_attr: &DeviceAttr) -> Result<(), Errno> {
    Err(Errno::ENXIO)
}

/// `KVM_{SET,GET,HAS}_DEVICE_ATTR` on a vCPU fd (`kvm_arm_vcpu_arch_*_attr()`)
/// for a vCPU with none of the features behind the three groups:
///
/// - `KVM_ARM_VCPU_PMU_V3_CTRL`: no vCPU has a PMU (`KVM_ARM_VCPU_INIT`
///   refuses the feature), so as upstream for a vCPU without one: `SET` is
///   `ENODEV`, `GET` of the IRQ is `EINVAL` (no in-kernel irqchip, checked
///   first), everything else `ENXIO`;
/// - `KVM_ARM_VCPU_TIMER_CTRL`: kvm_rs has no arch timer yet: `ENXIO`.
///   Upstream always has one: `HAS` answers 0 for the four timer IRQs,
///   `GET` their PPI, and `SET` is `EINVAL` without a vGIC;
/// - `KVM_ARM_VCPU_PVTIME_CTRL`: no stolen-time support yet: `ENXIO`, as
///   upstream without `sched_info_on()`;
/// - any other group: `ENXIO`.
fn vcpu_attr(op: AttrOp, attr: &DeviceAttr) -> Result<(), Errno> {
    if attr.group == uapi::KVM_ARM_VCPU_PMU_V3_CTRL {
        return match op {
            AttrOp::Set => Err(Errno::ENODEV),
            AttrOp::Get if attr.attr == u64::from(uapi::KVM_ARM_VCPU_PMU_V3_IRQ) => Err(Errno::EINVAL),
            _ => Err(Errno::ENXIO),
        };
    }
    Err(Errno::ENXIO)
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

    /// A new VM and its vCPU 0.
    fn new_vcpu() -> Result<(KBox<Vm>, KBox<Vcpu>), Errno> {
        let mut vm = KBox::new(Host::vm_create()?, GFP_KERNEL).map_err(|_| Errno::ENOMEM)?;
        let v = Host::vcpu_create(0, 0, &mut vm)?;
        Ok((vm, KBox::new(v, GFP_KERNEL).map_err(|_| Errno::ENOMEM)?))
    }

    fn init(v: &mut Vcpu, vm: &mut VmRegs, features: u32) -> Result<(), Errno> {
        let mut f = [0u32; 7];
        f[0] = features;
        v.arm.init(vm, state::TARGET_GENERIC_V8, &f).map(|_| ())
    }

    fn get(v: &mut Vcpu, vm: &mut Vm, id: u64) -> Result<u64, Errno> {
        let mut value = [0u8; 8];
        Host::get_one_reg(v, vm, &(), id, |b| {
            value.get_mut(..b.len()).ok_or(Errno::EFAULT)?.copy_from_slice(b);
            Ok(())
        })
        .map(|()| u64::from_ne_bytes(value))
    }

    fn set(v: &mut Vcpu, vm: &mut Vm, id: u64, value: u64) -> Result<(), Errno> {
        let bytes = value.to_ne_bytes();
        Host::set_one_reg(v, vm, &(), id, |b| {
            b.copy_from_slice(bytes.get(..b.len()).ok_or(Errno::EFAULT)?);
            Ok(())
        })
    }

    fn reg_list(v: &Vcpu, vm: &Vm) -> Result<KVec<u64>, Errno> {
        let mut ids = KVec::new();
        Host::for_each_reg(v, vm, &mut |id| ids.push(id, GFP_KERNEL).map_err(|_| Errno::ENOMEM))?;
        Ok(ids)
    }

    #[test]
    fn ioctl_numbers() {
        assert_eq!(KVM_ARM_VCPU_INIT, 0x4020_aeae);
        assert_eq!(KVM_ARM_PREFERRED_TARGET, 0x8020_aeaf);
        assert_eq!(KVM_ARM_GET_REG_WRITABLE_MASKS, 0x8040_aeb6);
        assert_eq!(size_of::<RegMaskRange>(), 64);
    }

    #[test]
    fn one_reg_and_reg_list_need_init() -> Result {
        let (mut vm, mut v) = new_vcpu()?;
        assert_eq!(Host::regs_check(&v, RegsOp::OneReg), Err(Errno::ENOEXEC));
        assert_eq!(Host::regs_check(&v, RegsOp::RegList), Err(Errno::ENOEXEC));
        assert_eq!(Host::vcpu_run_check(&mut v, &mut vm), Err(Errno::ENOEXEC));
        init(&mut v, &mut vm, 0)?;
        assert_eq!(Host::regs_check(&v, RegsOp::OneReg), Ok(()));
        assert_eq!(Host::regs_check(&v, RegsOp::RegList), Ok(()));
        assert_eq!(get(&mut v, &mut vm, 0x1234), Err(Errno::EINVAL));
        assert_eq!(get(&mut v, &mut vm, regs::Enc::new(3, 7, 15, 15, 7).id()), Err(Errno::ENOENT));
        Ok(())
    }

    /// The register table on this host: every listed id is readable and
    /// takes its own value back (what the get-reg-list selftest checks),
    /// in upstream's order, with the registers the blessed base list needs.
    #[test]
    fn register_table_on_this_host() -> Result {
        let (mut vm, mut v) = new_vcpu()?;
        init(&mut v, &mut vm, 0)?;
        let ids = reg_list(&v, &vm)?;
        // 75 core and 8 firmware registers first, 14 CCSIDR last.
        assert!(ids.len() >= 75 + 8 + 160 + 14);
        assert_eq!(ids.first().copied(), Some(regs::CoreField::X(0).id()));
        assert_eq!(ids.get(75).copied(), Some(state::FW_REG_IDS[0]));
        assert_eq!(ids.last().copied(), Some(regs::demux_id(13)));
        for id in ids.iter().copied() {
            if one_reg::reg_size(id) > 8 {
                continue;
            }
            let value = get(&mut v, &mut vm, id);
            let back = value.and_then(|val| set(&mut v, &mut vm, id, val));
            if back.is_err() {
                pr_err!("register {:#x}: get/set back failed: {:?}\n", id, back);
            }
            assert_eq!(back, Ok(()));
        }
        // System registers in encoding order, once each.
        let sys: KVec<u64> = {
            let mut k = KVec::new();
            for id in ids.iter().copied().filter(|id| id & regs::COPROC_MASK == regs::COPROC_SYSREG) {
                k.push(regs::sysreg_enc(id).map_or(0, |e| u64::from(e.0)), GFP_KERNEL)?;
            }
            k
        };
        assert!(sys.windows(2).all(|w| w[0] < w[1]));
        // The base list's always-present system registers.
        for (op0, op1, crn, crm, op2) in [(2, 0, 0, 0, 4), (2, 0, 1, 1, 4), (3, 0, 0, 0, 0), (3, 0, 1, 0, 0),
                                          (3, 0, 14, 1, 0), (3, 3, 13, 0, 2), (3, 4, 5, 3, 0)] {
            let id = regs::Enc::new(op0, op1, crn, crm, op2).id();
            assert!(ids.contains(&id));
        }
        assert!(ids.contains(&regs::KVM_REG_ARM_TIMER_CVAL) && ids.contains(&regs::KVM_REG_ARM_TIMER_CNT));
        Ok(())
    }

    /// The ID registers come from the kernel's sanitised view of this host.
    #[test]
    fn id_registers_from_the_host() -> Result {
        let (mut vm, mut v) = new_vcpu()?;
        init(&mut v, &mut vm, 0)?;
        let mmfr0 = regs::Enc::new(3, 0, 0, 7, 0);
        assert_eq!(get(&mut v, &mut vm, mmfr0.id()), Ok(sanitised(mmfr0)));
        assert_eq!(get(&mut v, &mut vm, regs::Enc::new(3, 0, 0, 0, 0).id()), Ok(sysreg::midr_el1()));
        assert_eq!(get(&mut v, &mut vm, regs::Enc::new(3, 0, 0, 0, 5).id()), Ok(1 << 31));
        // No SVE, no PMU, no pointer authentication for the guest.
        let pfr0 = get(&mut v, &mut vm, regs::Enc::new(3, 0, 0, 4, 0).id())?;
        assert_eq!(pfr0 & idregs::f::PFR0_SVE, 0);
        let dfr0 = get(&mut v, &mut vm, regs::Enc::new(3, 0, 0, 5, 0).id())?;
        assert_eq!(dfr0 & idregs::f::DFR0_PMUVER, 0);
        let isar1 = get(&mut v, &mut vm, regs::Enc::new(3, 0, 0, 6, 1).id())?;
        assert_eq!(isar1 & (idregs::f::ISAR1_APA | idregs::f::ISAR1_API), 0);
        // Hiding a feature is fine before the first run, not after.
        let isar0 = regs::Enc::new(3, 0, 0, 6, 0).id();
        let val = get(&mut v, &mut vm, isar0)?;
        assert_eq!(set(&mut v, &mut vm, isar0, val & !0xf0), Ok(()));
        assert_eq!(set(&mut v, &mut vm, isar0, val | 0xf << 60), Err(Errno::EINVAL));
        assert_eq!(Host::vcpu_run_check(&mut v, &mut vm), Ok(()));
        assert_eq!(set(&mut v, &mut vm, isar0, val), Err(Errno::EBUSY));
        Ok(())
    }

    #[test]
    fn vcpu_init_features() -> Result {
        let (mut vm, mut v) = new_vcpu()?;
        assert_eq!(init(&mut v, &mut vm, 1 << 10), Err(Errno::ENOENT));
        assert_eq!(init(&mut v, &mut vm, state::feature::SVE), Err(Errno::EINVAL));
        assert_eq!(init(&mut v, &mut vm, state::feature::PSCI_0_2 | state::feature::POWER_OFF), Ok(()));
        assert_eq!(get(&mut v, &mut vm, state::FW_REG_IDS[0]), Ok(0x10003));
        assert_eq!(init(&mut v, &mut vm, 0), Err(Errno::EINVAL));
        let counter_now = counter();
        let cntvct = get(&mut v, &mut vm, regs::KVM_REG_ARM_TIMER_CNT)?;
        assert!(cntvct <= counter_now);
        Ok(())
    }

    #[test]
    fn mp_state_runnable_stopped_suspended() -> Result {
        let (mut vm, mut v) = new_vcpu()?;
        assert_eq!(Host::get_mp_state(&v, &()), uapi::KVM_MP_STATE_RUNNABLE);
        for ok in [uapi::KVM_MP_STATE_STOPPED, uapi::KVM_MP_STATE_SUSPENDED, uapi::KVM_MP_STATE_RUNNABLE] {
            assert_eq!(Host::set_mp_state(&mut v, &(), ok), Ok(()));
            assert_eq!(Host::get_mp_state(&v, &()), ok);
        }
        for bad in [uapi::KVM_MP_STATE_HALTED, uapi::KVM_MP_STATE_INIT_RECEIVED, 11, u32::MAX] {
            assert_eq!(Host::set_mp_state(&mut v, &(), bad), Err(Errno::EINVAL));
        }
        assert_eq!(Host::get_mp_state(&v, &()), uapi::KVM_MP_STATE_RUNNABLE);
        init(&mut v, &mut vm, 0)?;
        // `KVM_RUN` itself (`ENOEXEC` after init) needs a VM and a vCPU
        // fd: `kvm-diff` checks it.
        Ok(())
    }

    #[test]
    fn vm_and_vcpu_attributes_of_absent_features() {
        let attr = |group: u32, a: u32| DeviceAttr { flags: 0, group, attr: u64::from(a), addr: 0 };
        let pmu = uapi::KVM_ARM_VCPU_PMU_V3_CTRL;
        assert_eq!(vcpu_attr(AttrOp::Set, &attr(pmu, uapi::KVM_ARM_VCPU_PMU_V3_IRQ)), Err(Errno::ENODEV));
        assert_eq!(vcpu_attr(AttrOp::Set, &attr(pmu, 99)), Err(Errno::ENODEV));
        assert_eq!(vcpu_attr(AttrOp::Get, &attr(pmu, uapi::KVM_ARM_VCPU_PMU_V3_IRQ)), Err(Errno::EINVAL));
        assert_eq!(vcpu_attr(AttrOp::Get, &attr(pmu, uapi::KVM_ARM_VCPU_PMU_V3_INIT)), Err(Errno::ENXIO));
        assert_eq!(vcpu_attr(AttrOp::Has, &attr(pmu, uapi::KVM_ARM_VCPU_PMU_V3_IRQ)), Err(Errno::ENXIO));
        for group in [uapi::KVM_ARM_VCPU_TIMER_CTRL, uapi::KVM_ARM_VCPU_PVTIME_CTRL, 3, u32::MAX] {
            for op in [AttrOp::Set, AttrOp::Get, AttrOp::Has] {
                assert_eq!(vcpu_attr(op, &attr(group, 0)), Err(Errno::ENXIO));
            }
        }
        assert_eq!(vm_attr(&attr(uapi::KVM_ARM_VM_SMCCC_CTRL, uapi::KVM_ARM_VM_SMCCC_FILTER)), Err(Errno::ENXIO));
        assert!(!Host::intc_initialized());
        assert_eq!(Host::set_gsi_level(0, true), SetIrq::NoIrqchip);
    }

    #[test]
    fn guest_debug_checks_control_bits() -> Result {
        let (_vm, mut v) = new_vcpu()?;
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
        Ok(())
    }
}
