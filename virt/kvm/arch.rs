// SPDX-License-Identifier: GPL-2.0

//! The interface between the generic core and an architecture backend.
//!
//! Each method says how riscv64 (`arch/riscv/kvm/`) and arm64
//! (`arch/arm64/kvm/`) implement it. The trait grows with the core: stage-2
//! MMU and the world switch come with later work.
//!
//! Errors are the pure layer's [`Errno`], so that the answers can be checked
//! against upstream's errnos one for one.

use super::{
    abi::Errno,
    device_fd::VmDeviceOps,
    memslot::MemslotLimits,
    one_reg::{
        RegEmit,
        RegsOp, //
    },
    stats::StatsSchema,
    uapi::GuestDebug,
    vcpu::{
        Vcpu,
        VcpuRun, //
    },
    vm_limits::VcpuLimits,
};
use kernel::prelude::*;

/// What a VM fd's `KVM_CHECK_EXTENSION` knows about the VM (`None` on
/// `/dev/kvm`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct VmFacts {
    /// The VM's guest physical address bits (riscv64 answers it; arm64
    /// answers the host's IPA limit).
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) gpa_bits: u32,
    /// `kvm->max_vcpus` (arm64 answers it; riscv64 answers a constant).
    #[cfg_attr(CONFIG_RISCV, allow(dead_code))]
    pub(crate) max_vcpus: u32,
}

/// What a VM already has when `KVM_ENABLE_CAP` comes (capabilities may
/// only be enabled before some of it exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VmInUse {
    /// A vCPU was created (`kvm->created_vcpus`).
    pub(crate) vcpus: bool,
    /// A memslot exists.
    pub(crate) memslots: bool,
}

/// A VM-wide change that an arch `KVM_ENABLE_CAP` asks the core to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VmCapChange {
    /// Nothing for the core: the arch changed its own VM state.
    #[cfg_attr(CONFIG_RISCV, allow(dead_code))]
    None,
    /// New guest physical address bits (only while no vCPU and no memslot
    /// exist): riscv64 `KVM_CAP_VM_GPA_BITS`.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    GpaBits(u32),
}

/// What setting a gsi's level on the VM's in-kernel interrupt controller
/// did ([`Arch::set_gsi_level`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetIrq {
    /// The interrupt controller took it (upstream's `kvm_set_irq()` > 0).
    #[allow(dead_code)]
    Delivered,
    /// No in-kernel interrupt controller, or none routes this gsi: nothing
    /// happens (upstream's `kvm_set_irq()` = 0).
    NoIrqchip,
}

/// An architecture backend. Implemented by `crate::arch::Host`.
pub(crate) trait Arch {
    /// The architecture's name, as in `uname -m`.
    const NAME: &'static str;

    /// The vCPU binary statistics (`KVM_GET_STATS_FD` on a vCPU fd).
    ///
    /// - riscv64: `kvm_vcpu_stats_desc` of `arch/riscv/kvm/vcpu.c`;
    /// - arm64: `kvm_vcpu_stats_desc` of `arch/arm64/kvm/guest.c`.
    const VCPU_STATS: &'static StatsSchema;

    /// Whether a writable memslot must be backed by writable VMAs only
    /// (`EPERM` otherwise) in `kvm_arch_prepare_memory_region()`.
    ///
    /// - riscv64: yes;
    /// - arm64: no (a write fault on such a slot fails later).
    const SLOT_NEEDS_WRITABLE_VMA: bool;

    /// Per-vCPU architecture state, kept under the vCPU's mutex.
    ///
    /// - riscv64: MP state and guest debug (the ONE_REG config registers
    ///   are host facts);
    /// - arm64: whether `KVM_ARM_VCPU_INIT` ran, and the register state
    ///   (`arch/arm64/kvm/regs.rs`: what the world switch will load).
    type Vcpu: Send;

    /// Per-VM architecture state (upstream's `kvm->arch`, the parts that
    /// are configured from userspace before the first run), kept by the
    /// core under the VM's arch lock (upstream's `kvm->arch.config_lock`).
    /// The lock is taken after `kvm->lock` and after a vCPU's mutex, never
    /// the other way round.
    ///
    /// - riscv64: nothing yet;
    /// - arm64: the vCPU features of the first `KVM_ARM_VCPU_INIT` (every
    ///   vCPU must use the same), and the VM-wide ID registers.
    type Vm: Send;

    /// Checks, at module load, that this host can run guests, and logs what
    /// it found. Fails with `ENODEV` when it cannot, as upstream does.
    ///
    /// - riscv64: the H extension must be present; the kernel runs in HS-mode
    ///   and reads `hstatus`; the deepest G-stage mode is detected by
    ///   writing `hgatp` (as `kvm_riscv_gstage_mode_detect()`).
    /// - arm64: the kernel must run at EL2 with VHE (`HCR_EL2.E2H` set), and
    ///   in-tree KVM must be off (`kvm-arm.mode=none`); the IPA limit comes
    ///   from `ID_AA64MMFR0_EL1.PARange`.
    fn probe() -> Result;

    /// The arch state of a new VM ([`Arch::Vm`]), made by `KVM_CREATE_VM`
    /// once the machine type was accepted.
    fn vm_create() -> Result<Self::Vm, Errno>;

    /// `KVM_CREATE_VM`: validates the machine type `ty` and returns the VM's
    /// guest physical address bits.
    ///
    /// - riscv64: any type is accepted (upstream ignores it); the VM gets
    ///   the host's deepest G-stage mode (Sv57x4: 59 bits, Sv48x4: 50, ...);
    /// - arm64: `ty` carries the IPA size (`KVM_VM_TYPE_ARM_IPA_SIZE`, 0 =
    ///   40 bits), checked against the host's IPA limit; `EINVAL` otherwise.
    fn vm_gpa_bits(ty: usize) -> Result<u32, Errno>;

    /// The memslot limits of a VM with `gpa_bits`.
    ///
    /// - riscv64: read-only memory, no guest_memfd, user space ends at the
    ///   `TASK_SIZE` of the host's `satp` mode, no pointer tags;
    /// - arm64: read-only memory, no guest_memfd (kvm_rs has none yet),
    ///   `TASK_SIZE_MAX` = `1 << VA_BITS`, 8 tag bits (TBI).
    fn memslot_limits(gpa_bits: u32) -> MemslotLimits;

    /// The vCPU limits of a new VM (`KVM_MAX_VCPU_IDS`, `kvm->max_vcpus`).
    ///
    /// - riscv64: 1024 and 1024;
    /// - arm64: 512 and 512 (no vGIC yet, which would lower the count).
    fn vcpu_limits() -> VcpuLimits;

    /// `kvm_arch_vcpu_precreate()`, with the VM's limits.
    ///
    /// - riscv64: accepts everything;
    /// - arm64: `EINVAL` for an id at or above `max_vcpus` (`EBUSY` once a
    ///   vGIC is initialized, when there is one).
    fn vcpu_precreate(id: u32, limits: &VcpuLimits) -> Result<(), Errno>;

    /// The architecture's answer to `KVM_CHECK_EXTENSION` for a capability
    /// the generic table does not answer (0 when unsupported). Only
    /// capabilities whose feature exists in kvm_rs are claimed.
    ///
    /// - riscv64: vCPU counts and ids, `VM_GPA_BITS`, `READONLY_MEM`,
    ///   `IMMEDIATE_EXIT`;
    /// - arm64: vCPU counts and ids, `ARM_VM_IPA_SIZE`, `READONLY_MEM`,
    ///   `IMMEDIATE_EXIT`.
    fn check_extension(cap: i64, vm: Option<&VmFacts>) -> i64;

    /// `KVM_ENABLE_CAP` on a VM fd for a capability the core does not
    /// handle (`kvm_vm_ioctl_enable_cap()`), under `kvm->lock`,
    /// `slots_lock` and the VM's arch lock; `in_use` says what the VM
    /// already has. `EINVAL` for anything unknown.
    ///
    /// - riscv64: `KVM_CAP_VM_GPA_BITS` (no vCPU or memslot yet);
    /// - arm64: `KVM_CAP_ARM_WRITABLE_IMP_ID_REGS` (no vCPU yet): `MIDR_EL1`,
    ///   `REVIDR_EL1` and `AIDR_EL1` become writable until the first run.
    fn vm_enable_cap(
        cap: u32,
        flags: u32,
        args: &[u64; 4],
        in_use: VmInUse,
        vm: &mut Self::Vm,
    ) -> Result<VmCapChange, Errno>;

    /// A VM ioctl the core does not know (`kvm_arch_vm_ioctl()`); `EINVAL`
    /// when the arch does not know it either.
    ///
    /// - riscv64: none, `EINVAL`;
    /// - arm64: `KVM_ARM_PREFERRED_TARGET`.
    fn vm_ioctl(cmd: u32, arg: usize) -> Result<isize, Errno>;

    /// Creates the arch state of vCPU `id`, the VM's `idx`-th vCPU (0 for
    /// the first created) (`kvm_arch_vcpu_create()` and
    /// `kvm_arch_vcpu_postcreate()`), under `kvm->lock` and the VM's arch
    /// lock.
    ///
    /// - riscv64: every vCPU but the first starts `STOPPED` (the boot vCPU
    ///   brings the others up with SBI HSM);
    /// - arm64: `RUNNABLE`, not initialized (`KVM_ARM_VCPU_INIT` decides
    ///   the power state); the VM's virtual counter restarts at 0
    ///   (`kvm_timer_vcpu_init()`).
    fn vcpu_create(id: u32, idx: usize, vm: &mut Self::Vm) -> Result<Self::Vcpu, Errno>;

    /// A vCPU ioctl the core does not know (`kvm_arch_vcpu_ioctl()`);
    /// `EINVAL` when the arch does not know it either. Runs under the vCPU's
    /// mutex and the VM's arch lock.
    ///
    /// - riscv64: none;
    /// - arm64: `KVM_ARM_VCPU_INIT`.
    fn vcpu_ioctl(vcpu: &mut Self::Vcpu, vm: &mut Self::Vm, cmd: u32, arg: usize) -> Result<isize, Errno>;

    /// The checks of `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG` (`op` =
    /// [`RegsOp::OneReg`]) and `KVM_GET_REG_LIST` ([`RegsOp::RegList`])
    /// that upstream makes before it reads the ioctl's argument.
    ///
    /// - riscv64: none;
    /// - arm64: `ENOEXEC` before `KVM_ARM_VCPU_INIT`; for the list also
    ///   `EPERM` while a feature needs `KVM_ARM_VCPU_FINALIZE` (SVE, which
    ///   kvm_rs does not offer, so never).
    fn regs_check(vcpu: &Self::Vcpu, op: RegsOp) -> Result<(), Errno>;

    /// `KVM_GET_ONE_REG` of register `id`, once `struct kvm_one_reg` was
    /// read. The core checks nothing of `id`: the arch decodes it, checks
    /// its size (`KVM_REG_SIZE(id)`, 1 to 32768 bytes) in upstream's order
    /// and with upstream's errno, then calls `write` with the value's bytes
    /// (native endianness), which copies them to `kvm_one_reg.addr`
    /// (`EFAULT`). `write` copies exactly the bytes it is given, as
    /// upstream's `copy_to_user`/`put_user` of the arch's own size.
    ///
    /// - riscv64 (`kvm_riscv_vcpu_get_reg()`): `ENOENT` for an unknown type
    ///   or register, `EINVAL` for a wrong size; registers by type: config
    ///   (`KVM_REG_RISCV_CONFIG`: isa, zicbo*_block_size, m*id, satp_mode),
    ///   core (`_CORE`: pc, x1-x31, mode), CSR (`_CSR`: general, AIA,
    ///   Smstateen), timer (`_TIMER`: frequency, time, compare, state), FP
    ///   (`_FP_F`/`_FP_D`), ISA extensions (`_ISA_EXT`: single, multi
    ///   enable/disable), SBI extensions (`_SBI_EXT`) and SBI state
    ///   (`_SBI_STATE`), vector (`_VECTOR`, up to `vlenb` bytes). kvm_rs has
    ///   them all but vector (V is not offered) and the SBI PMU/FWFT
    ///   extensions (`arch/riscv/kvm/onereg.rs`).
    /// - arm64 (`kvm_arm_get_reg()`): `EINVAL` for a non-arm64 id; core
    ///   registers (`KVM_REG_ARM_CORE`: `ENOENT` past `struct kvm_regs`,
    ///   `EINVAL` for a size that does not match the field), firmware
    ///   pseudo-registers (`_FW`, `_FW_FEAT_BMAP`: `ENOENT` unless 64-bit),
    ///   system registers (`ENOENT` unless listed and 64-bit; timer
    ///   registers included), CCSIDR (`_DEMUX`, 32-bit).
    ///
    /// `shared` is the vCPU's [`Arch::VcpuShared`] (riscv64: a read of
    /// `sip` first flushes the interrupts raised from other threads into
    /// it, as upstream's `kvm_riscv_vcpu_flush_interrupts()`).
    fn get_one_reg(
        vcpu: &mut Self::Vcpu,
        vm: &mut Self::Vm,
        shared: &Self::VcpuShared,
        id: u64,
        write: impl FnOnce(&[u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno>;

    /// `KVM_SET_ONE_REG` of register `id`. `read` fills the slice it is
    /// given from `kvm_one_reg.addr` (`EFAULT`); the arch calls it, with the
    /// number of bytes upstream copies (usually `KVM_REG_SIZE(id)`; arm64
    /// system registers always read 8 bytes first), at the point upstream
    /// copies, so that errors come in upstream's order.
    ///
    /// - riscv64 (`kvm_riscv_vcpu_set_reg()`): as for get; the ISA, machine
    ///   ids and SBI extensions only before the first `KVM_RUN` (`EBUSY`),
    ///   `satp_mode` and `frequency` only to their current value.
    /// - arm64 (`kvm_arm_set_reg()`): as for get; core registers check
    ///   PSTATE's mode, system registers check their writable fields (ID
    ///   registers: no feature beyond the sanitised host value), firmware
    ///   registers their version/feature rules.
    ///
    /// `shared` as for get (riscv64: writing `sip` drops the interrupt
    /// changes not yet flushed, as upstream).
    fn set_one_reg(
        vcpu: &mut Self::Vcpu,
        vm: &mut Self::Vm,
        shared: &Self::VcpuShared,
        id: u64,
        read: impl FnOnce(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno>;

    /// The registers of `KVM_GET_REG_LIST`, in upstream's order: calls
    /// `emit` once per id (see [`RegEmit`]; stop at its first error). Every
    /// listed id must be readable with [`Arch::get_one_reg`].
    ///
    /// - riscv64 (`kvm_riscv_vcpu_copy_reg_indices()`): config, core, CSR
    ///   (general, then AIA/Smstateen/Zicfiss if present), timer, FP F/D (if
    ///   the extension is enabled), vector, ISA extensions, SBI extensions,
    ///   SBI state.
    /// - arm64 (`kvm_arm_copy_reg_indices()`): core registers (`struct
    ///   kvm_regs` in offset order, vregs as U128), SVE (none: not
    ///   offered), firmware registers, the visible system registers in
    ///   encoding order (timer CVAL/CNT with their historical swapped ids),
    ///   then the 14 CCSIDR demux registers.
    fn for_each_reg(vcpu: &Self::Vcpu, vm: &Self::Vm, emit: RegEmit<'_>) -> Result<(), Errno>;

    /// Whether `KVM_RUN` may proceed, and the vCPU's first-run setup
    /// (`kvm_arch_vcpu_run_pid_change()`). Runs before `immediate_exit` is
    /// looked at, under the VM's arch lock.
    ///
    /// - riscv64: nothing to check;
    /// - arm64: `ENOEXEC` before `KVM_ARM_VCPU_INIT`; the VM's first run
    ///   hides the GIC from the ID registers (no in-kernel irqchip) and
    ///   freezes the VM's configuration (ID registers, firmware bitmaps:
    ///   `EBUSY` for a change afterwards).
    fn vcpu_run_check(vcpu: &mut Self::Vcpu, vm: &mut Self::Vm) -> Result<(), Errno>;

    /// Finishes the exit userspace just handled (`kvm_run.exit_reason` as
    /// userspace left it: MMIO data, SBI/CSR return values), at the start
    /// of `KVM_RUN`, before `immediate_exit` is looked at (upstream's
    /// `kvm_riscv_vcpu_mmio_return()` & co. and arm64's
    /// `kvm_handle_mmio_return()` come first too). An error fails
    /// `KVM_RUN`.
    ///
    /// - riscv64: completes a pending MMIO load, forwarded SBI call or CSR
    ///   access (register write, `sepc` advance), once;
    /// - arm64: completes a pending MMIO load (register write with the
    ///   syndrome's size, sign extension and width) or store (`pc` advance),
    ///   once (`arch/arm64/kvm/run.rs`).
    fn vcpu_complete_exit(vcpu: &mut Self::Vcpu, run: &VcpuRun<'_>) -> Result<(), Errno>;

    /// `KVM_RUN` once the core has checked `immediate_exit`, applied the
    /// signal mask and set `exit_reason` to `KVM_EXIT_UNKNOWN`: the arch's
    /// run loop (`kvm_arch_vcpu_ioctl_run()`). It returns `Ok` with
    /// `kvm_run` filled when userspace must act, `Err` to fail `KVM_RUN`.
    ///
    /// `run` gives the loop what the core owns: the VM ([`VcpuRun::vm`]:
    /// stage-2 MMU, the other vCPUs), the generic vCPU
    /// ([`VcpuRun::vcpu`]: requests, guest mode for kicks, blocking), the
    /// `kvm_run` page, and the pending-work check of every iteration
    /// ([`VcpuRun::handle_work`]: signals end the run with `EINTR` and
    /// `KVM_EXIT_INTR`, `need_resched` schedules, notify-resume work such
    /// as rseq runs) followed by the generic requests
    /// ([`VcpuRun::handle_generic_requests`]).
    ///
    /// - riscv64: the world switch (`arch/riscv/kvm/run.rs`,
    ///   `switch.rs`): VS CSRs loaded at the start and on preemption
    ///   (preempt notifier), requests, G-stage entry, exits (SBI, G-stage
    ///   faults and MMIO, virtual instructions, WFI);
    /// - arm64: the VHE world switch (`arch/arm64/kvm/run.rs`,
    ///   `switch.rs`): the guest's EL1, timer and FP state loaded and saved
    ///   around each entry with interrupts off (nothing stays loaded, so no
    ///   preempt notifier), exits (stage-2 faults and MMIO, SMCCC/PSCI,
    ///   WFI/WFE, trapped system registers).
    fn vcpu_run(vcpu: &mut Self::Vcpu, run: &mut VcpuRun<'_>) -> Result<(), Errno>;

    /// Interrupts `cpu`, on which a vCPU may be running guest code, so that
    /// the guest exits (`kvm_vcpu_kick()`'s `smp_send_reschedule()`).
    ///
    /// - riscv64: the reschedule IPI (`arch_smp_send_reschedule()`);
    /// - arm64: an asynchronous function-call IPI
    ///   (`smp_call_function_single_async()` on a per-CPU csd): arm64 does
    ///   not export `arch_smp_send_reschedule()`.
    fn kick_cpu(cpu: u32);

    /// Per-vCPU architecture state that other threads touch while the
    /// vCPU runs, outside the vCPU's mutex (upstream's
    /// `vcpu->arch.irqs_pending` and friends): kept in the generic vCPU.
    ///
    /// - riscv64: the pending VS-level interrupts set by `KVM_INTERRUPT`
    ///   and SBI IPIs of other vCPUs;
    /// - arm64: nothing yet.
    type VcpuShared: Send + Sync + Default;

    /// A vCPU ioctl handled without the vCPU's mutex
    /// (`kvm_arch_vcpu_unlocked_ioctl()`), so that it reaches a vCPU that
    /// sits in `KVM_RUN`; `None` when the arch does not handle `cmd` this
    /// way.
    ///
    /// - riscv64: `KVM_INTERRUPT` (`KVM_INTERRUPT_SET`/`UNSET` of the
    ///   external interrupt);
    /// - arm64: none.
    fn vcpu_unlocked_ioctl(vcpu: &Vcpu, cmd: u32, arg: usize) -> Option<Result<isize, Errno>>;

    /// `KVM_GET_MP_STATE` (`kvm_arch_vcpu_ioctl_get_mpstate()`): the
    /// vCPU's `KVM_MP_STATE_*`.
    ///
    /// - riscv64: the state in `shared` (other vCPUs change it with SBI
    ///   HSM while this one runs);
    /// - arm64: the stored state.
    fn get_mp_state(vcpu: &Self::Vcpu, shared: &Self::VcpuShared) -> u32;

    /// `KVM_SET_MP_STATE` (`kvm_arch_vcpu_ioctl_set_mpstate()`): `EINVAL`
    /// for a state the arch does not accept.
    ///
    /// - riscv64: `RUNNABLE` and `STOPPED` (`INIT_RECEIVED` only with
    ///   `KVM_CAP_RISCV_MP_STATE_RESET`, which kvm_rs does not offer);
    /// - arm64: `RUNNABLE`, `STOPPED` and `SUSPENDED`.
    fn set_mp_state(vcpu: &mut Self::Vcpu, shared: &Self::VcpuShared, state: u32) -> Result<(), Errno>;

    /// `KVM_SET_GUEST_DEBUG` (`kvm_arch_vcpu_ioctl_set_guest_debug()`):
    /// validates and stores the debug control.
    ///
    /// - riscv64: any control; stored if `KVM_GUESTDBG_ENABLE` is set,
    ///   else cleared; while set, guest `ebreak`s exit to userspace with
    ///   `KVM_EXIT_DEBUG` (`KVM_CAP_SET_GUEST_DEBUG` is claimed);
    /// - arm64: `EINVAL` for bits outside `KVM_GUESTDBG_VALID_MASK`
    ///   (`ENABLE`, `SINGLESTEP`, `USE_SW_BP`, `USE_HW`); without `ENABLE`
    ///   cleared; with `USE_HW` the breakpoint/watchpoint registers are
    ///   kept. Nothing acts on it until the world switch exists, so arm64
    ///   does not claim `KVM_CAP_SET_GUEST_DEBUG`.
    fn set_guest_debug(vcpu: &mut Self::Vcpu, dbg: &GuestDebug) -> Result<(), Errno>;

    /// Turns virtualization on on the current CPU (`kvm_arch_enable_virtualization_cpu()`),
    /// from a CPU hotplug or resume callback.
    ///
    /// - riscv64: hypervisor CSRs to their idle state (no delegation, VS
    ///   reads only `time`, no virtual interrupt pending);
    /// - arm64: nothing yet: with VHE the host kernel already owns EL2, and
    ///   the per-CPU vGIC and timer setup come with the world switch.
    fn enable_cpu() -> Result;

    /// Turns virtualization off on the current CPU
    /// (`kvm_arch_disable_virtualization_cpu()`): before it goes offline,
    /// suspends or the system shuts down.
    ///
    /// - riscv64: clears `vsie`, `hvip`, then the delegation CSRs;
    /// - arm64: nothing yet.
    fn disable_cpu();

    /// The per-VM stage-2 MMU state (`kvm->arch` page-table parts), kept
    /// under the VM's `mmu_lock` (a spinlock: every method below runs with
    /// it held and must not sleep). Dropped when the VM is destroyed, after
    /// the MMU notifier is gone: dropping frees every table.
    ///
    /// - riscv64: the G-stage root (Sv39x4/Sv48x4/Sv57x4 per the VM's GPA
    ///   bits) and the VM's VMID (`arch/riscv/kvm/gstage.rs`, `vmid.rs`);
    /// - arm64: the stage-2 tables and VMID (`kvm_s2_mmu`,
    ///   `arch/arm64/kvm/stage2.rs`, `pgtable.rs`).
    type Stage2: Send;

    /// Creates the stage-2 state of a new VM with `gpa_bits`
    /// (`kvm_arch_init_vm()`).
    fn stage2_new(gpa_bits: u32) -> Result<Self::Stage2, Errno>;

    /// Unmaps the guest frames `[gfn_start, gfn_end)` and flushes the
    /// guest TLBs that may hold them (`kvm_unmap_gfn_range()`, and the
    /// zap of a deleted or moved memslot): after it returns no vCPU can
    /// reach the old pages.
    fn stage2_unmap(s2: &mut Self::Stage2, gfn_start: u64, gfn_end: u64);

    /// Clears the accessed state of `[gfn_start, gfn_end)`; returns whether
    /// any mapping there was young (`kvm_age_gfn()`).
    fn stage2_age(s2: &mut Self::Stage2, gfn_start: u64, gfn_end: u64) -> bool;

    /// Whether any mapping of `[gfn_start, gfn_end)` is young, without
    /// clearing it (`kvm_test_age_gfn()`).
    fn stage2_test_age(s2: &Self::Stage2, gfn_start: u64, gfn_end: u64) -> bool;

    /// Flushes every guest TLB entry of the VM on every CPU
    /// (`kvm_flush_remote_tlbs()`), after the MMU notifier's
    /// `clear_flush_young` found young mappings: cached translations would
    /// otherwise keep the pages looking old.
    ///
    /// - riscv64: `hfence.gvma` of the VM's VMID on every online CPU;
    /// - arm64: `TLBI VMALLS12E1IS` of the VM's VMID (broadcast).
    fn stage2_flush_all(s2: &mut Self::Stage2);

    /// Removes write access from the mappings of `[gfn_start, gfn_end)`
    /// for dirty logging (`kvm_arch_mmu_enable_log_dirty_pt_masked()` and
    /// the write-protect of `kvm_arch_commit_memory_region()`); a huge
    /// mapping partly inside loses write access whole. The TLB flush is
    /// deferred to [`Arch::stage2_flush_wrprotected`], which the core calls
    /// once after a batch (a dirty-log ioctl, a slot starting to log).
    ///
    /// - riscv64: clears W on the G-stage leaves and remembers that a
    ///   flush is due;
    /// - arm64: clears `S2AP[1]` on the stage-2 leaves, with the same
    ///   deferred flush.
    fn stage2_wrprotect(s2: &mut Self::Stage2, gfn_start: u64, gfn_end: u64);

    /// Flushes the guest TLBs of every CPU after [`Arch::stage2_wrprotect`]
    /// changed anything, and returns once no CPU can write through an old
    /// writable translation.
    ///
    /// - riscv64: `hfence.gvma` of the VM's VMID on every online CPU;
    /// - arm64: `TLBI VMALLS12E1IS` of the VM's VMID (broadcast).
    fn stage2_flush_wrprotected(s2: &mut Self::Stage2);

    /// `kvm_arch_intc_initialized()`: whether `KVM_IRQFD` may assign
    /// (`EAGAIN` otherwise).
    ///
    /// - riscv64: always (upstream has no such hook there; an irqfd on a VM
    ///   without the AIA device injects nothing);
    /// - arm64: once the VM's vGIC is initialized; kvm_rs has no vGIC yet,
    ///   so never. With the vGIC this becomes a question about the VM, and
    ///   takes the VM's arch state.
    fn intc_initialized() -> bool;

    /// Sets the level of `gsi` on the VM's in-kernel interrupt controller,
    /// through the VM's gsi routing (upstream's `kvm_set_irq()` from an
    /// irqfd or `KVM_IRQ_LINE`).
    ///
    /// - riscv64: no in-kernel irqchip yet: [`SetIrq::NoIrqchip`]. The AIA
    ///   will route the gsi to an APLIC wire (or an IMSIC MSI);
    /// - arm64: no vGIC yet: [`SetIrq::NoIrqchip`]. The vGICv3 will map the
    ///   gsi to an SPI (gsi + 32) by its default routing.
    ///
    /// Both will take the VM's arch state, which holds the irqchip.
    fn set_gsi_level(gsi: u32, level: bool) -> SetIrq;

    /// The operations of device type `ty` (below `KVM_DEV_TYPE_MAX`), if
    /// this host registers it (upstream's `kvm_register_device_ops()` at
    /// module init, often depending on the host's hardware).
    ///
    /// - riscv64: none yet. The AIA (`KVM_DEV_TYPE_RISCV_AIA`) will be
    ///   offered on a host with Ssaia;
    /// - arm64: none yet. The vGICv3 (`KVM_DEV_TYPE_ARM_VGIC_V3`, then
    ///   `KVM_DEV_TYPE_ARM_VGIC_ITS`) will be offered on a GICv3 host.
    ///
    /// See [`device_fd`](super::device_fd) for how a type plugs in.
    fn device_ops(ty: u32) -> Option<&'static VmDeviceOps>;
}
