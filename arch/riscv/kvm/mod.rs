// SPDX-License-Identifier: GPL-2.0

//! riscv64 backend: the host kernel runs in HS-mode (H extension).
//!
//! - Pure logic for the guest exits, also tested on the host
//!   (`tools/testing/host/riscv.rs`) and in KUnit ([`kunit`]): [`insn`]
//!   (MMIO and virtual-instruction decoding) and [`sbi`] (SBI calls, the SBI
//!   ONE_REG registers, steal time). Each file's top comment says how the
//!   run loop uses it.
//! - [`gstage`] (pure, host-tested): G-stage page tables; [`vmid`] (pure,
//!   host-tested): VMID generations; [`mmu`]: their kernel glue (page-table
//!   pages, the host-wide VMID allocator, TLB flushes), for the run loop.
//! - `csr`: hypervisor CSRs, `hgatp` probes and `hfence.gvma`.
//! - [`regs`]: the vCPU register state shared by the world switch and
//!   ONE_REG.
//! - [`isa`] and [`onereg`] (pure, host-tested): the vCPU's ISA extensions
//!   and their rules, and `KVM_GET/SET_ONE_REG`/`KVM_GET_REG_LIST`;
//!   `hostinfo`: the host facts they need (ISA, timebase, ...).

mod cpu_enable;
mod csr;
pub(crate) mod gstage;
pub(crate) mod hugemap;
mod hostinfo;
pub(crate) mod insn;
pub(crate) mod isa;
mod kunit;
pub(crate) mod mmu;
pub(crate) mod onereg;
pub(crate) mod regs;
mod run;
pub(crate) mod sbi;
pub(crate) mod stage2;
mod switch;
pub(crate) mod vmid;

use crate::kvm::{
    abi::Errno,
    arch::{
        Arch,
        SetIrq,
        VmCapChange,
        VmFacts,
        VmInUse, //
    },
    device_fd::VmDeviceOps,
    memslot::MemslotLimits,
    one_reg::{
        RegEmit,
        RegsOp, //
    },
    stats::{
        StatsSchema,
        RISCV_VCPU_SCHEMA, //
    },
    uapi::GuestDebug,
    vcpu::{
        Vcpu as GenericVcpu,
        VcpuRun, //
    },
    vm_limits::{
        self,
        cap,
        RiscvHostCaps,
        VcpuLimits, //
    },
};
use core::sync::atomic::{
    AtomicU32,
    Ordering, //
};
use kernel::{bindings, prelude::*, uapi};

/// The riscv64 host.
pub(crate) struct Host;

/// The riscv64 state of a vCPU (`vcpu->arch`, the parts kvm_rs has).
pub(crate) struct Vcpu {
    /// The MP state a new vCPU starts with (`RUNNABLE` for the first,
    /// `STOPPED` for the others); the state itself lives in the shared
    /// part (`run::Shared`), set from this at the first `KVM_SET_MP_STATE`
    /// or `KVM_RUN`.
    initial_mp_state: u32,
    /// `vcpu->guest_debug`: 0, or a control with `KVM_GUESTDBG_ENABLE`.
    guest_debug: u32,
    /// The guest's registers (what the world switch loads and ONE_REG
    /// reads and writes).
    regs: regs::VcpuRegs,
    /// ISA extensions and machine ids (ONE_REG config and ISA_EXT
    /// registers); kept across a vCPU reset.
    config: onereg::VcpuConfig,
    /// SBI extensions and their state.
    sbi: sbi::SbiContext,
    /// `vcpu->arch.ran_atleast_once`: set by the first `KVM_RUN` (in
    /// [`Host::vcpu_run_check`]); freezes the ISA, machine ids and SBI
    /// extensions (`EBUSY`).
    ran: bool,
    /// `vcpu->arch.mmio_decode`: the MMIO access userspace completes.
    mmio: insn::MmioDecode,
    /// `vcpu->arch.csr_decode`: the CSR access userspace completes.
    csr: insn::CsrDecode,
    /// What load/put move between memory and the hart during `KVM_RUN`
    /// (`run.rs`).
    loaded: run::LoadedBox,
    /// `vcpu->arch.last_exit_cpu`.
    last_exit_cpu: Option<u32>,
}

/// The riscv64 state of a VM (`kvm->arch`, the parts kvm_rs has).
pub(crate) struct Vm {
    /// `kvm->arch.timer.time_delta`: guest time is host time plus this
    /// (wrapping); set at creation so that guest time starts at 0, and by
    /// ONE_REG `KVM_REG_RISCV_TIMER_REG(time)` of any vCPU.
    time_delta: u64,
}

impl Vcpu {
    /// The ONE_REG view of this vCPU in VM `vm`, at host time `now`.
    fn one_reg<'a>(&'a mut self, vm: &'a mut Vm, host: &'a onereg::HostFacts, now: u64) -> onereg::RegAccess<'a> {
        onereg::RegAccess {
            host,
            regs: &mut self.regs,
            config: &mut self.config,
            sbi: &mut self.sbi,
            ran: self.ran,
            time_delta: &mut vm.time_delta,
            now,
        }
    }

    /// The vCPU's `mvendorid`/`marchid`/`mimpid` (its ONE_REG config
    /// values), as SBI BASE reports them.
    fn machine_ids(&self) -> sbi::MachineIds {
        sbi::MachineIds {
            mvendorid: self.config.mvendorid,
            marchid: self.config.marchid,
            mimpid: self.config.mimpid,
        }
    }

    /// Whether the vCPU has Zkr (a trapped `seed` access exits to
    /// userspace).
    fn has_zkr(&self) -> bool {
        self.config.isa.has(isa::id::ZKR)
    }
}

/// The VM's guest-time delta, loaded into `htimedelta`.
fn vm_time_delta(vm: &Vm) -> u64 {
    vm.time_delta
}

/// The SBI configuration of this host's vCPUs.
fn sbi_config() -> sbi::SbiConfig {
    sbi::SbiConfig {
        v01: cfg!(CONFIG_RISCV_SBI_V01),
        // `sched_info_on()`: CONFIG_SCHED_INFO is selected by KVM_RS_HOST.
        sta: cfg!(CONFIG_SCHED_INFO),
        imp_version: host_version_code(),
    }
}

/// `offsetof(struct uts_namespace, name.release)`: `name` (`struct
/// new_utsname`) comes first, then `sysname[65]`, `nodename[65]`.
const UTS_RELEASE_OFFSET: usize = 2 * 65;
/// The length of `release`.
const UTS_RELEASE_LEN: usize = 65;

/// `LINUX_VERSION_CODE` of the running kernel, parsed from
/// `init_uts_ns.name.release` ("7.3.4-..."): bindgen sees neither
/// `<generated/uapi/linux/version.h>` nor the fields of `struct
/// uts_namespace` (opaque), so the offset is the C layout's.
fn host_version_code() -> u64 {
    let mut release = [0u8; UTS_RELEASE_LEN];
    // SAFETY: `init_uts_ns` (exported) is a static whose first member is
    // `struct new_utsname`; `release` is a 65-byte array at offset 130,
    // inside the object. It never changes after boot (only `nodename` and
    // `domainname` are writable).
    unsafe {
        let base = core::ptr::addr_of!(bindings::init_uts_ns).cast::<u8>();
        core::ptr::copy_nonoverlapping(base.add(UTS_RELEASE_OFFSET), release.as_mut_ptr(), UTS_RELEASE_LEN);
    }
    let mut nums = [0u32; 3];
    let mut i = 0;
    for &c in release.iter() {
        match c {
            b'0'..=b'9' => {
                if let Some(n) = nums.get_mut(i) {
                    *n = n.saturating_mul(10).saturating_add(u32::from(c - b'0'));
                }
            }
            b'.' => i += 1,
            _ => break,
        }
    }
    let [major, minor, sub] = nums;
    sbi::linux_version_code(major.min(255) as u8, minor.min(255) as u8, sub)
}

/// G-stage page-table levels of the deepest mode (`kvm_riscv_gstage_max_pgd_levels`),
/// set once by [`Host::probe`] before `/dev/kvm` exists.
static MAX_PGD_LEVELS: AtomicU32 = AtomicU32::new(0);

/// `SATP_MODE_SHIFT`.
const SATP_MODE_SHIFT: u32 = uapi::SATP_MODE_SHIFT;

/// The host kernel's `satp` mode (`satp_mode`), as the MODE field value
/// (8 = Sv39, 9 = Sv48, 10 = Sv57).
fn host_satp_mode() -> u64 {
    // SAFETY: `satp_mode` is written once during early boot
    // (`__ro_after_init`) and only read afterwards.
    let mode = unsafe { core::ptr::addr_of!(bindings::satp_mode).read() };
    mode >> SATP_MODE_SHIFT
}

/// `num_online_cpus()`.
fn online_cpus() -> u32 {
    // SAFETY: `__num_online_cpus` is a valid static `atomic_t`; a volatile
    // read of its counter is `atomic_read()`.
    let n = unsafe { core::ptr::addr_of!(bindings::__num_online_cpus.counter).read_volatile() };
    u32::try_from(n).unwrap_or(1)
}

// The uapi header and onereg.rs agree on the ids they both name.
const _: () = {
    assert!(onereg::KVM_REG_RISCV == uapi::KVM_REG_RISCV as u64);
    assert!(onereg::TYPE_MASK == uapi::KVM_REG_RISCV_TYPE_MASK as u64);
    assert!(onereg::SUBTYPE_MASK == uapi::KVM_REG_RISCV_SUBTYPE_MASK as u64);
    assert!(onereg::CONFIG == uapi::KVM_REG_RISCV_CONFIG as u64);
    assert!(onereg::CORE == uapi::KVM_REG_RISCV_CORE as u64);
    assert!(onereg::CSR == uapi::KVM_REG_RISCV_CSR as u64);
    assert!(onereg::TIMER == uapi::KVM_REG_RISCV_TIMER as u64);
    assert!(onereg::FP_F == uapi::KVM_REG_RISCV_FP_F as u64);
    assert!(onereg::FP_D == uapi::KVM_REG_RISCV_FP_D as u64);
    assert!(onereg::ISA_EXT == uapi::KVM_REG_RISCV_ISA_EXT as u64);
    assert!(onereg::SBI_EXT == uapi::KVM_REG_RISCV_SBI_EXT as u64);
    assert!(onereg::VECTOR == uapi::KVM_REG_RISCV_VECTOR as u64);
    assert!(onereg::SBI_STATE == uapi::KVM_REG_RISCV_SBI_STATE as u64);
    assert!(onereg::CSR_SMSTATEEN == uapi::KVM_REG_RISCV_CSR_SMSTATEEN as u64);
    assert!(onereg::CSR_ZICFISS == uapi::KVM_REG_RISCV_CSR_ZICFISS as u64);
    assert!(onereg::ISA_MULTI_DIS == uapi::KVM_REG_RISCV_ISA_MULTI_DIS as u64);
    assert!(isa::ISA_EXT_MAX == uapi::KVM_RISCV_ISA_EXT_ID_KVM_RISCV_ISA_EXT_MAX as usize);
    assert!(isa::id::ZICFISS == uapi::KVM_RISCV_ISA_EXT_ID_KVM_RISCV_ISA_EXT_ZICFISS as usize);
    assert!(isa::id::SMNPM == uapi::KVM_RISCV_ISA_EXT_ID_KVM_RISCV_ISA_EXT_SMNPM as usize);
    assert!(isa::id::SSCOFPMF == uapi::KVM_RISCV_ISA_EXT_ID_KVM_RISCV_ISA_EXT_SSCOFPMF as usize);
    let word = core::mem::size_of::<u64>();
    assert!(onereg::config::COUNT as usize == core::mem::size_of::<uapi::kvm_riscv_config>() / word);
    assert!(onereg::config::SATP_MODE as usize == core::mem::offset_of!(uapi::kvm_riscv_config, satp_mode) / word);
    assert!(onereg::config::ZICBOP_BLOCK_SIZE as usize == core::mem::offset_of!(uapi::kvm_riscv_config, zicbop_block_size) / word);
    assert!(onereg::CORE_COUNT as usize == core::mem::size_of::<uapi::kvm_riscv_core>() / word);
    assert!(onereg::csr::COUNT as usize == core::mem::size_of::<uapi::kvm_riscv_csr>() / word);
    assert!(onereg::csr::SIP as usize == core::mem::offset_of!(uapi::kvm_riscv_csr, sip) / word);
    assert!(onereg::csr::AIA_COUNT as usize == core::mem::size_of::<uapi::kvm_riscv_aia_csr>() / word);
    assert!(onereg::timer::COUNT as usize == core::mem::size_of::<uapi::kvm_riscv_timer>() / word);
};

impl Host {
    fn max_pgd_levels() -> u32 {
        MAX_PGD_LEVELS.load(Ordering::Relaxed)
    }

    fn host_caps(vm: Option<&VmFacts>) -> RiscvHostCaps {
        RiscvHostCaps {
            aia_available: false,
            online_cpus: online_cpus(),
            gpa_bits: match vm {
                Some(vm) => vm.gpa_bits,
                None => vm_limits::riscv_gpa_bits(Self::max_pgd_levels()),
            },
        }
    }
}

impl Arch for Host {
    const NAME: &'static str = "riscv64";
    const VCPU_STATS: &'static StatsSchema = &RISCV_VCPU_SCHEMA;
    const SLOT_NEEDS_WRITABLE_VMA: bool = true;
    type Vcpu = Vcpu;
    type Vm = Vm;

    fn probe() -> Result {
        if !csr::has_h_extension() {
            pr_err!("the H extension is not available: cannot host guests\n");
            return Err(ENODEV);
        }
        let hstatus = csr::hstatus();
        let levels = {
            let _irqs_off = kernel::interrupt::local_interrupt_disable();
            csr::detect_gstage_levels()
        };
        let Some(levels) = levels else {
            pr_err!("no G-stage translation mode (Sv39x4/Sv48x4/Sv57x4): cannot host guests\n");
            return Err(ENODEV);
        };
        MAX_PGD_LEVELS.store(levels, Ordering::Relaxed);
        hostinfo::probe(host_satp_mode());
        // SAFETY: `probe` runs once, at module load, with the H extension
        // present and before any VM exists.
        unsafe { mmu::vmid_init(levels) };
        pr_info!(
            "riscv64 host in HS-mode (hstatus {:#x}, VSXL {}), G-stage {} levels ({} GPA bits)\n",
            hstatus,
            csr::hstatus_vsxl(hstatus),
            levels,
            vm_limits::riscv_gpa_bits(levels)
        );
        Ok(())
    }

    fn vm_create() -> Result<Vm, Errno> {
        // kvm_riscv_guest_timer_init(): guest time starts at 0.
        Ok(Vm { time_delta: onereg::initial_time_delta(hostinfo::cycles()) })
    }

    fn vm_gpa_bits(ty: usize) -> Result<u32, Errno> {
        Ok(vm_limits::riscv_vm_gpa_bits(ty as u64, Self::max_pgd_levels()))
    }

    fn memslot_limits(gpa_bits: u32) -> MemslotLimits {
        // TASK_SIZE_64 = PGDIR_SIZE * PTRS_PER_PGD / 2 of the host's mode.
        let task_bits = match host_satp_mode() {
            10 => 56,
            9 => 47,
            _ => 38,
        };
        MemslotLimits {
            page_shift: kernel::page::PAGE_SHIFT as u32,
            readonly_mem: true,
            guest_memfd: false,
            task_size: 1 << task_bits,
            // Userspace pointer masking is per process and off by default;
            // kvm_rs's users do not enable it.
            tag_bits: 0,
            gpa_bits,
        }
    }

    fn vcpu_limits() -> VcpuLimits {
        VcpuLimits::riscv()
    }

    fn vcpu_precreate(id: u32, _limits: &VcpuLimits) -> Result<(), Errno> {
        vm_limits::riscv_vcpu_precreate(id)
    }

    fn check_extension(c: i64, vm: Option<&VmFacts>) -> i64 {
        match c {
            cap::NR_VCPUS | cap::MAX_VCPUS | cap::VM_GPA_BITS | cap::READONLY_MEM
            | cap::IMMEDIATE_EXIT | cap::MP_STATE | cap::SET_GUEST_DEBUG | cap::IOEVENTFD => {
                vm_limits::riscv_check_extension(&Self::host_caps(vm), c)
            }
            cap::ONE_REG => 1,
            // Upstream's generic answers (`CONFIG_KVM_MMIO`): the run loop
            // appends MMIO writes in a zone to the VM's ring; PIO zones
            // register as upstream's and, as there, never fire (no PIO).
            cap::COALESCED_MMIO | cap::COALESCED_PIO => {
                vm_limits::check_extension_generic(&vm_limits::GenericCaps::RISCV, c).unwrap_or(0)
            }
            // Irqchip: not yet.
            // MAX_VCPU_ID is 0 upstream too.
            _ => 0,
        }
    }

    fn vm_enable_cap(
        c: u32,
        flags: u32,
        args: &[u64; 4],
        in_use: VmInUse,
        _vm: &mut Vm,
    ) -> Result<VmCapChange, Errno> {
        if i64::from(c) != cap::VM_GPA_BITS {
            return Err(Errno::EINVAL);
        }
        let busy = in_use.vcpus || in_use.memslots;
        let levels = vm_limits::riscv_enable_gpa_bits(flags, args[0], Self::max_pgd_levels(), busy)?;
        Ok(VmCapChange::GpaBits(vm_limits::riscv_gpa_bits(levels)))
    }

    fn vm_ioctl(_cmd: u32, _arg: usize) -> Result<isize, Errno> {
        Err(Errno::EINVAL)
    }

    fn vcpu_create(_id: u32, idx: usize, _vm: &mut Vm) -> Result<Vcpu, Errno> {
        // kvm_arch_vcpu_postcreate(): only the first vCPU starts powered on.
        let mp_state = run::initial_mp_state(idx);
        // kvm_arch_vcpu_create(): the ISA, the host's machine ids, the SBI
        // extensions, then a reset (which sets sstatus.FS from the ISA).
        let [mvendorid, marchid, mimpid] = hostinfo::machine_ids();
        let config = onereg::VcpuConfig::new(&hostinfo::facts(), mvendorid, marchid, mimpid);
        let mut regs = regs::VcpuRegs::reset();
        onereg::fp_reset(&mut regs, &config.isa);
        Ok(Vcpu {
            initial_mp_state: mp_state,
            guest_debug: 0,
            regs,
            config,
            sbi: sbi::SbiContext::new(sbi_config()),
            ran: false,
            mmio: insn::MmioDecode::default(),
            csr: insn::CsrDecode::default(),
            loaded: run::LoadedBox::new()?,
            last_exit_cpu: None,
        })
    }

    fn vcpu_ioctl(_vcpu: &mut Vcpu, _vm: &mut Vm, _cmd: u32, _arg: usize) -> Result<isize, Errno> {
        Err(Errno::EINVAL)
    }

    fn regs_check(_vcpu: &Vcpu, _op: RegsOp) -> Result<(), Errno> {
        Ok(())
    }

    fn get_one_reg(
        vcpu: &mut Vcpu,
        vm: &mut Vm,
        shared: &run::Shared,
        id: u64,
        write: impl FnOnce(&[u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let host = hostinfo::facts();
        let now = hostinfo::cycles();
        run::timer_catch_up(&mut vcpu.regs, shared, vm_time_delta(vm), now);
        if onereg::is_sip(id) {
            // kvm_riscv_vcpu_general_get_csr(): flush first.
            vcpu.regs.csrs.hvip = shared.flush(vcpu.regs.csrs.hvip);
        }
        vcpu.one_reg(vm, &host, now).get(id, write)
    }

    fn set_one_reg(
        vcpu: &mut Vcpu,
        vm: &mut Vm,
        shared: &run::Shared,
        id: u64,
        read: impl FnOnce(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let host = hostinfo::facts();
        let now = hostinfo::cycles();
        run::timer_catch_up(&mut vcpu.regs, shared, vm_time_delta(vm), now);
        vcpu.one_reg(vm, &host, now).set(id, read)?;
        if onereg::is_sip(id) {
            // kvm_riscv_vcpu_general_set_csr(): the written value wins
            // over changes not flushed yet.
            shared.forget_changes();
        }
        Ok(())
    }

    fn for_each_reg(vcpu: &Vcpu, _vm: &Vm, emit: RegEmit<'_>) -> Result<(), Errno> {
        onereg::for_each_reg(&hostinfo::facts(), &vcpu.config, &vcpu.sbi, emit)
    }

    fn vcpu_run_check(vcpu: &mut Vcpu, _vm: &mut Vm) -> Result<(), Errno> {
        // kvm_arch_vcpu_ioctl_run(): every KVM_RUN that reaches the arch,
        // even one that leaves at once for immediate_exit, marks the vCPU
        // as having run.
        vcpu.ran = true;
        Ok(())
    }

    fn vcpu_complete_exit(vcpu: &mut Vcpu, run: &VcpuRun<'_>) -> Result<(), Errno> {
        run::complete_exit(vcpu, run)
    }

    fn vcpu_run(vcpu: &mut Vcpu, run: &mut VcpuRun<'_>) -> Result<(), Errno> {
        run::run(vcpu, run)
    }

    fn kick_cpu(cpu: u32) {
        let Ok(cpu) = i32::try_from(cpu) else { return };
        // SAFETY: `cpu` is a CPU id recorded at vCPU load; sending a
        // reschedule IPI to any CPU is harmless.
        unsafe { bindings::arch_smp_send_reschedule(cpu) };
    }

    type VcpuShared = run::Shared;

    fn vcpu_unlocked_ioctl(vcpu: &GenericVcpu, cmd: u32, arg: usize) -> Option<Result<isize, Errno>> {
        if cmd == crate::kvm::uapi::KVM_INTERRUPT {
            return Some(run::kvm_interrupt(vcpu, arg));
        }
        None
    }

    fn get_mp_state(vcpu: &Vcpu, shared: &run::Shared) -> u32 {
        shared.mp_state(vcpu.initial_mp_state)
    }

    fn set_mp_state(_vcpu: &mut Vcpu, shared: &run::Shared, state: u32) -> Result<(), Errno> {
        match state {
            // The vCPU is not in KVM_RUN (its mutex is held): the loop sees
            // the new state when it next runs.
            uapi::KVM_MP_STATE_RUNNABLE | uapi::KVM_MP_STATE_STOPPED => {
                shared.set_mp_state(state);
                Ok(())
            }
            // INIT_RECEIVED needs KVM_CAP_RISCV_MP_STATE_RESET (not offered).
            _ => Err(Errno::EINVAL),
        }
    }

    fn set_guest_debug(vcpu: &mut Vcpu, dbg: &GuestDebug) -> Result<(), Errno> {
        let control = dbg.0.control;
        vcpu.guest_debug = if control & uapi::KVM_GUESTDBG_ENABLE != 0 { control } else { 0 };
        Ok(())
    }

    fn enable_cpu() -> Result {
        cpu_enable::enable_this_hart();
        Ok(())
    }

    fn disable_cpu() {
        cpu_enable::disable_this_hart();
    }

    // The VM's G-stage tables, page cache and VMID (`stage2.rs`).
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
        // riscv has no `kvm_arch_intc_initialized()`: irqfds are accepted
        // with or without the AIA device.
        true
    }

    fn set_gsi_level(_gsi: u32, _level: bool) -> SetIrq {
        // No AIA yet: like upstream on a VM without the AIA device, the gsi
        // has no route.
        SetIrq::NoIrqchip
    }

    fn device_ops(_ty: u32) -> Option<&'static VmDeviceOps> {
        // KVM_DEV_TYPE_RISCV_AIA will come with the in-kernel AIA.
        None
    }
}

#[kunit_tests(kvm_rs_riscv_host)]
mod tests {
    use super::*;

    #[test]
    fn host_has_h_extension() {
        assert!(csr::has_h_extension());
    }

    #[test]
    fn vs_mode_is_64_bit() {
        // hstatus.VSXL = 2 means VS-mode XLEN is 64 (the only value an RV64
        // host that supports KVM guests may report here).
        assert_eq!(csr::hstatus_vsxl(csr::hstatus()), 2);
    }

    #[test]
    fn gstage_mode_was_detected() {
        let levels = Host::max_pgd_levels();
        assert!((3..=5).contains(&levels));
        assert_eq!(Host::vm_gpa_bits(0), Ok(vm_limits::riscv_gpa_bits(levels)));
    }

    /// A VM's riscv state for the tests.
    fn vm() -> Vm {
        Vm { time_delta: 0 }
    }

    /// `KVM_GET_ONE_REG` of `id` into a local buffer: the bytes written.
    fn get(v: &mut Vcpu, id: u64) -> Result<KVec<u8>, Errno> {
        let mut out = KVec::new();
        Host::get_one_reg(v, &mut vm(), &run::Shared::default(), id, |b| out.extend_from_slice(b, GFP_KERNEL).map_err(|_| Errno::ENOMEM))?;
        Ok(out)
    }

    /// `KVM_GET_ONE_REG` of a register of up to 8 bytes, as a number.
    fn get64(v: &mut Vcpu, id: u64) -> Result<u64, Errno> {
        let b = get(v, id)?;
        let mut a = [0u8; 8];
        a.get_mut(..b.len()).ok_or(Errno::E2BIG)?.copy_from_slice(&b);
        Ok(u64::from_ne_bytes(a))
    }

    /// `KVM_SET_ONE_REG` of `id` from `value`'s bytes.
    fn set(v: &mut Vcpu, id: u64, value: u64) -> Result<(), Errno> {
        let bytes = value.to_ne_bytes();
        Host::set_one_reg(v, &mut vm(), &run::Shared::default(), id, |dst| {
            dst.copy_from_slice(bytes.get(..dst.len()).ok_or(Errno::EFAULT)?);
            Ok(())
        })
    }

    /// The `KVM_GET_REG_LIST` ids of `v`.
    fn list(v: &Vcpu) -> Result<KVec<u64>, Errno> {
        let mut ids = KVec::new();
        Host::for_each_reg(v, &vm(), &mut |id| ids.push(id, GFP_KERNEL).map_err(|_| Errno::ENOMEM))?;
        Ok(ids)
    }

    const U64: u64 = onereg::KVM_REG_RISCV | uapi::KVM_REG_SIZE_U64;

    #[test]
    fn satp_mode_and_config_registers() -> Result {
        // satp_mode (what kvm_rs had alone before): the host's mode, only
        // that value may be written, and it is 8 bytes wide.
        let satp = U64 | onereg::CONFIG | onereg::config::SATP_MODE;
        assert_eq!(onereg::config::SATP_MODE, 6);
        let mut v = Host::vcpu_create(0, 0, &mut vm()).map_err(|_| EINVAL)?;
        assert_eq!(get(&mut v, satp).as_deref(), Ok(&host_satp_mode().to_ne_bytes()[..]));
        assert_eq!(set(&mut v, satp, host_satp_mode()), Ok(()));
        assert_eq!(set(&mut v, satp, 0), Err(Errno::EINVAL));
        let satp32 = satp & !uapi::KVM_REG_SIZE_MASK | uapi::KVM_REG_SIZE_U32;
        assert_eq!(get(&mut v, satp32), Err(Errno::EINVAL));
        // isa (config 0) is the host's single letters without H; imafdc at
        // least on any host that runs Linux with kvm_rs.
        let isa = get64(&mut v, satp & !0xff).map_err(|_| EINVAL)?;
        assert_eq!(isa & 0x112d, 0x112d);
        assert_eq!(isa & (1 << 7), 0);
        assert_eq!(get(&mut v, U64 | onereg::CONFIG | 0xfff), Err(Errno::ENOENT));
        assert_eq!(get(&mut v, U64 | 0xff00_0000), Err(Errno::ENOENT));
        // The machine ids are the host's.
        let [mvendorid, ..] = hostinfo::machine_ids();
        assert_eq!(get64(&mut v, U64 | onereg::CONFIG | onereg::config::MVENDORID), Ok(mvendorid));
        Ok(())
    }

    #[test]
    fn host_facts_match_the_kernel() {
        let facts = hostinfo::facts();
        // SAFETY: `riscv_timebase` is set at boot and only read afterwards.
        let timebase = unsafe { core::ptr::addr_of!(bindings::riscv_timebase).read() };
        assert!(timebase != 0);
        assert_eq!(facts.timebase, timebase as u64);
        assert_eq!(facts.satp_mode, host_satp_mode());
        // kvm_rs only loads on a host with H; V is never offered.
        assert!(facts.isa.has(isa::id::H) && facts.isa.has(isa::id::I));
        assert!(!facts.isa.has(isa::id::V));
        assert_eq!(facts.isa.base & (1 << 21), 0);
        // Time moves forward.
        let t0 = hostinfo::cycles();
        kernel::time::delay::fsleep(kernel::time::Delta::from_micros(100));
        assert!(hostinfo::cycles() > t0);
    }

    #[test]
    fn reg_list_is_complete_and_readable() -> Result {
        let mut v = Host::vcpu_create(0, 0, &mut vm()).map_err(|_| EINVAL)?;
        let ids = list(&v).map_err(|_| EINVAL)?;
        let facts = hostinfo::facts();
        // 8 config, 33 core, 11 general CSRs first.
        assert_eq!(ids.get(6), Some(&(U64 | onereg::CONFIG | 6)));
        assert_eq!(ids.get(8), Some(&(U64 | onereg::CORE)));
        assert_eq!(ids.get(41), Some(&(U64 | onereg::CSR)));
        let isa_ext = ids.iter().filter(|&&id| id & onereg::TYPE_MASK == onereg::ISA_EXT).count();
        assert_eq!(isa_ext, facts.isa.exts.iter().count());
        for &id in ids.iter() {
            let b = get(&mut v, id).map_err(|_| EINVAL)?;
            assert_eq!(b.len(), crate::kvm::one_reg::reg_size(id));
        }
        // H is listed (the host has it) and off.
        assert_eq!(get64(&mut v, U64 | onereg::ISA_EXT | isa::id::H as u64), Ok(0));
        assert_eq!(get(&mut v, U64 | onereg::VECTOR), Err(Errno::ENOENT));
        Ok(())
    }

    #[test]
    fn first_run_freezes_the_configuration() -> Result {
        let mut v = Host::vcpu_create(0, 0, &mut vm()).map_err(|_| EINVAL)?;
        let d = U64 | onereg::ISA_EXT | isa::id::D as u64;
        assert_eq!(set(&mut v, d, 0), Ok(()));
        assert_eq!(get64(&mut v, d), Ok(0));
        assert_eq!(v.regs.core.sstatus & regs::SSTATUS_FS, regs::SSTATUS_FS_INITIAL);
        assert_eq!(Host::vcpu_run_check(&mut v, &mut vm()), Ok(()));
        assert_eq!(set(&mut v, d, 1), Err(Errno::EBUSY));
        assert_eq!(set(&mut v, U64 | onereg::CONFIG | onereg::config::MARCHID, 1), Err(Errno::EBUSY));
        // Registers of the guest stay writable.
        assert_eq!(set(&mut v, U64 | onereg::CORE, 0x8020_0000), Ok(()));
        assert_eq!(v.regs.core.sepc, 0x8020_0000);
        Ok(())
    }

    #[test]
    fn guest_time_is_per_vm() -> Result {
        let mut v = Host::vcpu_create(0, 0, &mut vm()).map_err(|_| EINVAL)?;
        let mut m = Host::vm_create().map_err(|_| EINVAL)?;
        let time = U64 | onereg::TIMER | onereg::timer::TIME;
        let w = 1u64 << 50;
        let bytes = w.to_ne_bytes();
        Host::set_one_reg(&mut v, &mut m, &run::Shared::default(), time, |dst| {
            dst.copy_from_slice(bytes.get(..dst.len()).ok_or(Errno::EFAULT)?);
            Ok(())
        })
        .map_err(|_| EINVAL)?;
        let mut out = 0u64;
        Host::get_one_reg(&mut v, &mut m, &run::Shared::default(), time, |b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b.get(..8).ok_or(Errno::EFAULT)?);
            out = u64::from_ne_bytes(a);
            Ok(())
        })
        .map_err(|_| EINVAL)?;
        assert!(out >= w && out - w < 1 << 40);
        // Another VM (delta 0 in `vm()`) still sees host time.
        let host_now = get64(&mut v, time).map_err(|_| EINVAL)?;
        assert!(host_now < w);
        Ok(())
    }

    #[test]
    fn mp_state_runnable_or_stopped() -> Result {
        let mut v0 = Host::vcpu_create(5, 0, &mut vm()).map_err(|_| EINVAL)?;
        let mut v1 = Host::vcpu_create(0, 1, &mut vm()).map_err(|_| EINVAL)?;
        let (s0, s1) = (run::Shared::default(), run::Shared::default());
        assert_eq!(Host::get_mp_state(&v0, &s0), uapi::KVM_MP_STATE_RUNNABLE);
        assert_eq!(Host::get_mp_state(&v1, &s1), uapi::KVM_MP_STATE_STOPPED);
        assert_eq!(Host::set_mp_state(&mut v1, &s1, uapi::KVM_MP_STATE_RUNNABLE), Ok(()));
        assert_eq!(Host::get_mp_state(&v1, &s1), uapi::KVM_MP_STATE_RUNNABLE);
        assert_eq!(Host::set_mp_state(&mut v0, &s0, uapi::KVM_MP_STATE_STOPPED), Ok(()));
        for bad in [uapi::KVM_MP_STATE_INIT_RECEIVED, uapi::KVM_MP_STATE_SUSPENDED, 11, u32::MAX] {
            assert_eq!(Host::set_mp_state(&mut v0, &s0, bad), Err(Errno::EINVAL));
        }
        assert_eq!(Host::get_mp_state(&v0, &s0), uapi::KVM_MP_STATE_STOPPED);
        Ok(())
    }

    #[test]
    fn guest_debug_kept_only_when_enabled() -> Result {
        let mut v = Host::vcpu_create(0, 0, &mut vm()).map_err(|_| EINVAL)?;
        let mut dbg = GuestDebug(uapi::kvm_guest_debug::default());
        dbg.0.control = uapi::KVM_GUESTDBG_ENABLE | uapi::KVM_GUESTDBG_SINGLESTEP | (1 << 30);
        assert_eq!(Host::set_guest_debug(&mut v, &dbg), Ok(()));
        assert_eq!(v.guest_debug, dbg.0.control);
        dbg.0.control = uapi::KVM_GUESTDBG_SINGLESTEP;
        assert_eq!(Host::set_guest_debug(&mut v, &dbg), Ok(()));
        assert_eq!(v.guest_debug, 0);
        Ok(())
    }

    #[test]
    fn host_is_not_virtualized() {
        // hstatus.SPV set while the kernel runs would mean we trapped in from
        // a guest and never left; at rest it must be clear.
        assert_eq!(csr::hstatus() & csr::HSTATUS_SPV, 0);
    }
}
