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

mod cpu_enable;
mod csr;
pub(crate) mod gstage;
pub(crate) mod insn;
mod kunit;
pub(crate) mod mmu;
// STAND-IN for branch rvregs's ONE_REG (see its top comment).
mod onereg_standin;
pub(crate) mod regs;
mod run;
pub(crate) mod sbi;
// STAND-IN for branch rvs2's stage2.rs (see its top comment).
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
        reg_size,
        RegEmit,
        RegsOp,
        KVM_REG_SIZE_U64, //
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
    /// The SBI state (extensions, forwarded-call completion, steal time).
    sbi: sbi::SbiContext,
    /// `vcpu->arch.ran_atleast_once`.
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

impl Vcpu {
    /// The vCPU's `mvendorid`/`marchid`/`mimpid`, as SBI BASE reports them.
    /// MERGE (rvregs): the vCPU's ONE_REG config values (`self.config`).
    fn machine_ids(&self) -> sbi::MachineIds {
        sbi::MachineIds::default()
    }

    /// Whether the vCPU has Zkr (a trapped `seed` access exits to
    /// userspace). MERGE (rvregs): the vCPU's ISA (`self.config.isa`).
    fn has_zkr(&self) -> bool {
        false
    }
}

/// The VM's guest-time delta, loaded into `htimedelta`.
/// MERGE (rvregs): `vm.time_delta` of riscv's `Vm`.
fn vm_time_delta(_vm: &()) -> u64 {
    0
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

/// `KVM_REG_RISCV_CONFIG_REG(satp_mode)`: its index in `struct kvm_riscv_config`.
const CONFIG_SATP_MODE: u64 = (core::mem::offset_of!(uapi::kvm_riscv_config, satp_mode)
    / core::mem::size_of::<u64>()) as u64;

/// The id of `satp_mode` (`KVM_REG_RISCV | KVM_REG_SIZE_U64 |
/// KVM_REG_RISCV_CONFIG | KVM_REG_RISCV_CONFIG_REG(satp_mode)`).
const REG_SATP_MODE: u64 =
    (uapi::KVM_REG_RISCV as u64) | KVM_REG_SIZE_U64 | uapi::KVM_REG_RISCV_CONFIG as u64 | CONFIG_SATP_MODE;

/// Checks a `KVM_REG_RISCV_CONFIG` register id for `satp_mode` the way
/// `kvm_riscv_vcpu_{get,set}_reg_config()` do: `ENOENT` for another type or
/// register, `EINVAL` for a size other than `unsigned long`.
fn check_satp_mode_reg(id: u64) -> Result<(), Errno> {
    let ty = id & u64::from(uapi::KVM_REG_RISCV_TYPE_MASK);
    if ty != u64::from(uapi::KVM_REG_RISCV_CONFIG) {
        // Core, CSR, timer, FP, vector, ISA/SBI extension registers: none yet.
        return Err(Errno::ENOENT);
    }
    if reg_size(id) != core::mem::size_of::<u64>() {
        return Err(Errno::EINVAL);
    }
    let num = id & !((uapi::KVM_REG_ARCH_MASK as u64) | uapi::KVM_REG_SIZE_MASK
        | u64::from(uapi::KVM_REG_RISCV_CONFIG));
    if num != CONFIG_SATP_MODE {
        // isa, zicbo*_block_size, m*id: not yet.
        return Err(Errno::ENOENT);
    }
    Ok(())
}

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
    type Vm = ();

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

    fn vm_create() -> Result<(), Errno> {
        Ok(())
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
            // ONE_REG (the register work), irqchip: not yet.
            // MAX_VCPU_ID is 0 upstream too.
            _ => 0,
        }
    }

    fn vm_enable_cap(
        c: u32,
        flags: u32,
        args: &[u64; 4],
        in_use: VmInUse,
        _vm: &mut (),
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

    fn vcpu_create(_id: u32, idx: usize, _vm: &mut ()) -> Result<Vcpu, Errno> {
        // kvm_arch_vcpu_postcreate(): only the first vCPU starts powered on.
        let mp_state = run::initial_mp_state(idx);
        Ok(Vcpu {
            initial_mp_state: mp_state,
            guest_debug: 0,
            regs: regs::VcpuRegs::reset(),
            sbi: sbi::SbiContext::new(sbi_config()),
            ran: false,
            mmio: insn::MmioDecode::default(),
            csr: insn::CsrDecode::default(),
            loaded: run::LoadedBox::new()?,
            last_exit_cpu: None,
        })
    }

    fn vcpu_ioctl(_vcpu: &mut Vcpu, _vm: &mut (), _cmd: u32, _arg: usize) -> Result<isize, Errno> {
        Err(Errno::EINVAL)
    }

    fn regs_check(_vcpu: &Vcpu, _op: RegsOp) -> Result<(), Errno> {
        Ok(())
    }

    fn get_one_reg(
        vcpu: &mut Vcpu,
        _vm: &mut (),
        id: u64,
        write: impl FnOnce(&[u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        if onereg_standin::serves(id) {
            return write(&onereg_standin::get(&vcpu.regs, id)?.to_ne_bytes());
        }
        check_satp_mode_reg(id)?;
        write(&host_satp_mode().to_ne_bytes())
    }

    fn set_one_reg(
        vcpu: &mut Vcpu,
        _vm: &mut (),
        id: u64,
        read: impl FnOnce(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        if onereg_standin::serves(id) {
            if reg_size(id) != 8 {
                return Err(Errno::EINVAL);
            }
            let mut bytes = [0u8; 8];
            read(&mut bytes)?;
            return onereg_standin::set(&mut vcpu.regs, id, u64::from_ne_bytes(bytes));
        }
        check_satp_mode_reg(id)?;
        let mut bytes = [0u8; 8];
        read(&mut bytes)?;
        if u64::from_ne_bytes(bytes) != host_satp_mode() {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    fn for_each_reg(_vcpu: &Vcpu, _vm: &(), emit: RegEmit<'_>) -> Result<(), Errno> {
        // The other config, core, CSR, timer, FP, vector, ISA and SBI
        // registers come with the riscv64 register work.
        emit(REG_SATP_MODE)
    }

    fn vcpu_run_check(vcpu: &mut Vcpu, _vm: &mut ()) -> Result<(), Errno> {
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

    // STAND-IN until rvs2 merges (stage2.rs): 4 KiB maps, no aging.
    type Stage2 = stage2::VmStage2;

    fn stage2_new(gpa_bits: u32) -> Result<stage2::VmStage2, Errno> {
        stage2::VmStage2::new(gpa_bits)
    }

    fn stage2_unmap(s2: &mut stage2::VmStage2, gfn_start: u64, gfn_end: u64) {
        s2.unmap(gfn_start, gfn_end);
    }

    fn stage2_age(_s2: &mut stage2::VmStage2, _gfn_start: u64, _gfn_end: u64) -> bool {
        false
    }

    fn stage2_test_age(_s2: &stage2::VmStage2, _gfn_start: u64, _gfn_end: u64) -> bool {
        false
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

    /// `KVM_GET_ONE_REG` of `id` into a local buffer: the bytes written.
    fn get(v: &mut Vcpu, id: u64) -> Result<KVec<u8>, Errno> {
        let mut out = KVec::new();
        Host::get_one_reg(v, &mut (), id, |b| out.extend_from_slice(b, GFP_KERNEL).map_err(|_| Errno::ENOMEM))?;
        Ok(out)
    }

    /// `KVM_SET_ONE_REG` of `id` from `value`'s bytes.
    fn set(v: &mut Vcpu, id: u64, value: u64) -> Result<(), Errno> {
        let bytes = value.to_ne_bytes();
        Host::set_one_reg(v, &mut (), id, |dst| {
            dst.copy_from_slice(bytes.get(..dst.len()).ok_or(Errno::EFAULT)?);
            Ok(())
        })
    }

    #[test]
    fn satp_mode_is_the_only_one_reg() -> Result {
        let size64 = uapi::KVM_REG_SIZE_U64;
        let satp = REG_SATP_MODE;
        assert_eq!(CONFIG_SATP_MODE, 6);
        let mut v = Host::vcpu_create(0, 0, &mut ()).map_err(|_| EINVAL)?;
        assert_eq!(get(&mut v, satp).as_deref(), Ok(&host_satp_mode().to_ne_bytes()[..]));
        assert_eq!(set(&mut v, satp, host_satp_mode()), Ok(()));
        assert_eq!(set(&mut v, satp, 0), Err(Errno::EINVAL));
        let satp32 = satp & !uapi::KVM_REG_SIZE_MASK | uapi::KVM_REG_SIZE_U32;
        assert_eq!(get(&mut v, satp32), Err(Errno::EINVAL));
        // isa (config 0) and a timer register: not yet. (Core registers
        // and general CSRs are served by the rvregs stand-in.)
        assert_eq!(get(&mut v, satp & !0xff), Err(Errno::ENOENT));
        assert_eq!(get(&mut v, (uapi::KVM_REG_RISCV as u64) | size64 | (4 << 24)), Err(Errno::ENOENT));
        assert_eq!(get(&mut v, (uapi::KVM_REG_RISCV as u64) | size64 | (2 << 24)).as_deref(), Ok(&0u64.to_ne_bytes()[..]));
        let mut ids = KVec::new();
        Host::for_each_reg(&v, &(), &mut |id| ids.push(id, GFP_KERNEL).map_err(|_| Errno::ENOMEM))
            .map_err(|_| EINVAL)?;
        assert_eq!(&ids[..], &[satp]);
        Ok(())
    }

    #[test]
    fn mp_state_runnable_or_stopped() -> Result {
        let mut v0 = Host::vcpu_create(5, 0, &mut ()).map_err(|_| EINVAL)?;
        let mut v1 = Host::vcpu_create(0, 1, &mut ()).map_err(|_| EINVAL)?;
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
        let mut v = Host::vcpu_create(0, 0, &mut ()).map_err(|_| EINVAL)?;
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
