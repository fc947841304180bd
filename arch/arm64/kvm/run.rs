// SPDX-License-Identifier: GPL-2.0

//! The arm64 `KVM_RUN` loop (upstream's `kvm_arch_vcpu_ioctl_run()`,
//! `handle_exit()`, `kvm_handle_guest_abort()`, `io_mem_abort()`,
//! `kvm_handle_mmio_return()`, `kvm_handle_wfx()`, `kvm_handle_sys_reg()`,
//! the SMCCC/PSCI glue).
//!
//! # One iteration
//!
//! Preemptible: pending work ([`VcpuRun::handle_work`]: signals end the run
//! with `EINTR`/`KVM_EXIT_INTR`, `need_resched`, rseq), the generic
//! requests, a pending PSCI `CPU_ON` reset, sleeping while powered off,
//! the VM's VMID ([`stage2::prepare_entry`], may IPI). Interrupts off:
//! guest mode, the last check for requests, work or a stale VMID, then
//! [`switch::enter`] (which loads and saves everything of the guest: see
//! `switch.rs`). After the exit, the syndrome registers are read, guest
//! time is accounted (`PF_VCPU`) while the pending host interrupts are
//! taken, and the exit is handled with interrupts and preemption on
//! (stage-2 faults may sleep).
//!
//! # Power state
//!
//! The MP state of every vCPU of a VM is in a VM-wide [`PowerTable`] of
//! atomics (upstream's `vcpu->arch.mp_state` under `mp_state_lock`): other
//! vCPUs change it (PSCI `CPU_ON`, `SYSTEM_OFF`) while it runs, and
//! `KVM_ARM_VCPU_INIT` sets it before the first run.
//!
//! # Not yet
//!
//! No interrupt injection (no vGIC, no timer interrupts, no
//! `KVM_IRQ_LINE`): a WFI wakes on a kick, a signal, a `CPU_ON` or its
//! enabled timer's deadline only. No guest debugging (`KVM_EXIT_DEBUG`),
//! no PMU, no AArch32 EL1, no SMCCC filter.

use super::{
    esr::{
        self,
        Abort,
        SysAccess, //
    },
    hypercalls::{
        self,
        Env,
        Outcome,
        Spectre, //
    },
    regs::Enc,
    stage2::{
        self,
        Stage2Fault, //
    },
    state::GuestSysreg,
    switch::{
        self,
        hcr,
        Config,
        Ctx,
        Exit,
        FpRegs, //
    },
    sysreg,
    sysregs::Sr,
    Vcpu,
};
use crate::kvm::{
    abi::Errno,
    vcpu::{
        Vcpu as GenericVcpu,
        VcpuRun, //
    },
    vm::Vm,
};
use core::sync::atomic::{
    AtomicBool,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    Ordering, //
};
use kernel::{bindings, cpu::CpuId, prelude::*, uapi};

/// `kvm_run` offsets: the exit union starts at 32.
const RUN_UNION: usize = 32;
kernel::static_assert!(core::mem::offset_of!(uapi::kvm_run, __bindgen_anon_1) == RUN_UNION);

/// The most vCPUs a VM has (`KVM_MAX_VCPUS` of arm64 without a vGIC).
pub(crate) const MAX_VCPUS: usize = 512;

/// One vCPU's power state.
#[derive(Default)]
pub(crate) struct PowerSlot {
    /// `KVM_MP_STATE_*`.
    mp_state: AtomicU32,
    /// A PSCI `CPU_ON` set `pc`/`x0` and the vCPU must reset before it runs
    /// (`reset_state.reset`, `KVM_REQ_VCPU_RESET`).
    reset_pending: AtomicBool,
    /// `reset_state.pc`.
    reset_pc: AtomicU64,
    /// `reset_state.r0`.
    reset_x0: AtomicU64,
}

/// The power state of every vCPU of a VM, by creation index.
pub(crate) struct PowerTable {
    slots: KVec<PowerSlot>,
}

impl PowerTable {
    /// Slots for [`MAX_VCPUS`] vCPUs, all runnable.
    pub(crate) fn new() -> Result<PowerTable, Errno> {
        let mut slots = KVec::with_capacity(MAX_VCPUS, GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)?;
        for _ in 0..MAX_VCPUS {
            let s = PowerSlot::default();
            s.mp_state.store(uapi::KVM_MP_STATE_RUNNABLE, Ordering::Relaxed);
            slots.push(s, GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)?;
        }
        Ok(PowerTable { slots })
    }

    fn slot(&self, idx: usize) -> Option<&PowerSlot> {
        self.slots.get(idx)
    }

    /// The MP state of vCPU `idx`.
    pub(crate) fn mp_state(&self, idx: usize) -> u32 {
        self.slot(idx).map_or(uapi::KVM_MP_STATE_RUNNABLE, |s| s.mp_state.load(Ordering::Acquire))
    }

    /// Sets the MP state of vCPU `idx` (any pending `CPU_ON` is dropped
    /// when it is set from userspace or by `KVM_ARM_VCPU_INIT`).
    pub(crate) fn set_mp_state(&self, idx: usize, state: u32) {
        if let Some(s) = self.slot(idx) {
            s.mp_state.store(state, Ordering::Release);
        }
    }

    /// `kvm_psci_vcpu_on()` of vCPU `idx`.
    fn power_on(&self, idx: usize, pc: u64, x0: u64) -> Result<(), bool> {
        let Some(s) = self.slot(idx) else { return Err(false) };
        if s.reset_pending.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(true);
        }
        if s.mp_state.load(Ordering::Acquire) != uapi::KVM_MP_STATE_STOPPED {
            s.reset_pending.store(false, Ordering::Release);
            return Err(false);
        }
        s.reset_pc.store(pc, Ordering::Relaxed);
        s.reset_x0.store(x0, Ordering::Relaxed);
        s.mp_state.store(uapi::KVM_MP_STATE_RUNNABLE, Ordering::Release);
        Ok(())
    }

    /// Takes a pending `CPU_ON` reset of vCPU `idx`: its `pc` and `x0`.
    pub(crate) fn take_reset(&self, idx: usize) -> Option<(u64, u64)> {
        let s = self.slot(idx)?;
        if !s.reset_pending.load(Ordering::Acquire) {
            return None;
        }
        let r = (s.reset_pc.load(Ordering::Relaxed), s.reset_x0.load(Ordering::Relaxed));
        s.reset_pending.store(false, Ordering::Release);
        Some(r)
    }
}

/// The run loop's own per-vCPU state.
pub(crate) struct RunState {
    /// The data abort of a pending MMIO exit (`vcpu->mmio_needed`).
    mmio: Option<Abort>,
    /// The CPU of the last exit.
    last_cpu: Option<u32>,
    /// The guest's FP/SIMD registers while it runs.
    fp: FpRegs,
}

impl RunState {
    pub(crate) const fn new() -> RunState {
        RunState { mmio: None, last_cpu: None, fp: FpRegs::zero() }
    }
}

// --- kicks -----------------------------------------------------------------

/// A `call_single_data_t` per possible CPU for [`kick_cpu`].
struct KickCsds([core::cell::UnsafeCell<bindings::call_single_data_t>; bindings::CONFIG_NR_CPUS as usize]);

// SAFETY: Each element is only handed to `smp_call_function_single_async()`,
// which serialises users of one csd with its lock flag (`-EBUSY` while in
// use); nothing else touches them.
unsafe impl Sync for KickCsds {}

/// The IPI does nothing: taking it makes a CPU in a guest exit.
///
/// # Safety
///
/// Called by the IPI handler only; it touches nothing.
unsafe extern "C" fn kick_nop(_info: *mut c_void) {}

static KICK_CSDS: KickCsds = KickCsds(
    [const {
        // SAFETY: An all-zero csd is unlocked and valid; the function is set
        // at each use.
        core::cell::UnsafeCell::new(unsafe { core::mem::zeroed() })
    }; bindings::CONFIG_NR_CPUS as usize],
);

/// `kvm_vcpu_kick()`'s IPI to `cpu` (`smp_send_reschedule()`, which arm64
/// does not export): an asynchronous function call IPI, usable in any
/// context; if one is already in flight to that CPU it does the same.
pub(crate) fn kick_cpu(cpu: u32) {
    let Some(c) = KICK_CSDS.0.get(cpu as usize) else { return };
    let csd = c.get();
    // SAFETY: `csd` is a static csd for `cpu`; setting `func` on a csd in
    // flight is harmless (it is the same function), and the call refuses a
    // locked csd.
    unsafe {
        (*csd).func = Some(kick_nop);
        let _ = bindings::smp_call_function_single_async(cpu as i32, csd);
    }
}

// --- the loop --------------------------------------------------------------

/// Completes an MMIO exit userspace handled (`kvm_handle_mmio_return()`).
pub(crate) fn complete_exit(v: &mut Vcpu, run: &VcpuRun<'_>) -> Result<(), Errno> {
    if run.exit_reason() != uapi::KVM_EXIT_MMIO {
        return Ok(());
    }
    let Some(a) = v.run.mmio.take() else { return Ok(()) };
    if !a.write {
        let mut data = [0u8; 8];
        run.read(RUN_UNION + 8, &mut data);
        let be = guest_is_be(v);
        set_reg(&mut v.arm.regs.core.x, a.rt, a.load_value(&data, be));
    }
    skip_insn(v);
    Ok(())
}

/// `kvm_vcpu_is_be()`: the guest's data endianness at its current
/// exception level (`SCTLR_EL1.EE` at EL1, `.E0E` at EL0, `PSTATE.E` in
/// AArch32).
fn guest_is_be(v: &Vcpu) -> bool {
    let pstate = v.arm.regs.core.pstate;
    if is_32bit(pstate) {
        return pstate & (1 << 9) != 0;
    }
    let bit = if pstate & 0xf != 0 { 1 << 25 } else { 1 << 24 };
    v.arm.regs.sys.get(Sr::SctlrEl1) & bit != 0
}

/// Writes guest register `rt` (31 is `xzr`: nothing).
fn set_reg(x: &mut [u64; 31], rt: u8, val: u64) {
    if let Some(r) = x.get_mut(usize::from(rt)) {
        *r = val;
    }
}

/// Reads guest register `rt` (31 reads 0).
fn get_reg(x: &[u64; 31], rt: u8) -> u64 {
    x.get(usize::from(rt)).copied().unwrap_or(0)
}

/// `kvm_incr_pc()`: past a 4-byte instruction, `PSTATE.BTYPE` cleared.
fn skip_insn(v: &mut Vcpu) {
    let c = &mut v.arm.regs.core;
    c.pc = c.pc.wrapping_add(4);
    c.pstate &= !(3 << 10);
}

/// `ENOSYS` (not in the generic table).
const ENOSYS: Errno = Errno(38);

/// What an exit handler decided.
enum Next {
    Guest,
    User,
}

/// `PSTATE.M[4]`: AArch32.
fn is_32bit(pstate: u64) -> bool {
    pstate & 0x10 != 0
}

/// The run loop ([`Arch::vcpu_run`](crate::kvm::arch::Arch::vcpu_run)).
pub(crate) fn run(v: &mut Vcpu, run: &mut VcpuRun<'_>) -> Result<(), Errno> {
    let vm = run.vm();
    let gv = run.vcpu();
    let (vpidr, cntvoff) = {
        let a = vm.arch().lock();
        (a.guest_midr(), a.voffset())
    };
    let hcr_guest = hcr::guest(stage2::has_fwb());
    loop {
        run.handle_work()?;
        run.handle_generic_requests()?;
        if let Some((pc, x0)) = v.power.take_reset(v.idx) {
            let mut a = vm.arch().lock();
            v.arm.reset_for_cpu_on(&mut a, pc, x0);
            v.run.mmio = None;
        }
        let power = &v.power;
        let idx = v.idx;
        if power.mp_state(idx) != uapi::KVM_MP_STATE_RUNNABLE {
            // KVM_REQ_SLEEP: until powered on (or a signal).
            gv.block(None, || power.mp_state(idx) == uapi::KVM_MP_STATE_RUNNABLE);
            continue;
        }
        let entry = stage2::prepare_entry(vm);

        let irqs = kernel::interrupt::local_interrupt_disable();
        let cpu = CpuId::current().as_u32();
        gv.set_cpu(Some(cpu));
        gv.enter_guest_mode();
        if entry.vmid_changed() || gv.requests().pending() || VcpuRun::work_pending() {
            gv.exit_guest_mode();
            drop(irqs);
            continue;
        }
        let flush_local = entry.new_vmid || last_ran_swap(cpu, v.token()) || v.run.last_cpu != Some(cpu);
        let cfg = Config {
            hcr: hcr_guest,
            vttbr: entry.vttbr,
            vtcr: entry.vtcr,
            vpidr,
            vmpidr: v.arm.regs.sys.get(Sr::MpidrEl1) | (1 << 31),
            cntvoff,
            ext: host_ext(),
            flush_local,
        };
        let core = &mut v.arm.regs.core;
        let mut ctx = Ctx::from_core(core);
        v.run.fp.v = core.vregs;
        v.run.fp.fpsr = u64::from(core.fpsr);
        v.run.fp.fpcr = u64::from(core.fpcr);
        let task = kernel::task::Task::current_raw();
        // SAFETY: `guest_timing_enter_irqoff()`: only the current task
        // writes its own `flags`; `PF_VCPU` makes ticks count as guest time.
        unsafe { (*task).flags |= bindings::PF_VCPU };
        // SAFETY: Interrupts are off; the VTTBR comes from the VM's live
        // stage-2 tables (kept alive by `vm`), `hcr_guest` has E2H and not
        // TGE.
        let info = unsafe { switch::enter(&mut ctx, &mut v.arm.regs.sys, &mut v.run.fp, &cfg) };
        gv.exit_guest_mode();
        ctx.to_core(core);
        core.vregs = v.run.fp.v;
        core.fpsr = v.run.fp.fpsr as u32;
        core.fpcr = v.run.fp.fpcr as u32;
        v.run.last_cpu = Some(cpu);
        drop(irqs);
        {
            let _irqs = kernel::interrupt::local_interrupt_disable();
            // SAFETY: As above (`guest_timing_exit_irqoff()`).
            unsafe { (*task).flags &= !bindings::PF_VCPU };
        }
        gv.set_cpu(None);

        let next = match info.exit {
            Exit::Irq | Exit::Fiq => Next::Guest,
            // An SError routed from the guest: the host took (or will take)
            // it; the guest continues (upstream injects a virtual SError
            // with RAS; kvm_rs has no vSError injection yet).
            Exit::Serror => Next::Guest,
            Exit::Sync => handle_sync(v, run, info.esr, info.far, info.hpfar)?,
        };
        if let Next::User = next {
            return Ok(());
        }
    }
}

/// The host's optional EL1 registers ([`switch::HostExt`]), probed once.
static HOST_EXT: kernel::sync::SetOnce<switch::HostExt> = kernel::sync::SetOnce::new();

/// Probes [`HOST_EXT`] (module load, before any VM).
pub(crate) fn probe_host_ext() {
    let _ = HOST_EXT.populate(switch::HostExt::probe(sysreg::id_aa64mmfr1_el1(), sysreg::id_aa64mmfr3_el1()));
}

fn host_ext() -> switch::HostExt {
    HOST_EXT.as_ref().copied().unwrap_or_default()
}

/// Per-CPU: the token of the vCPU that last entered a guest there
/// (`kvm_s2_mmu.last_vcpu_ran`, for every VM at once): a different vCPU of
/// the same VMID must not use the other's stage-1 entries.
static LAST_RAN: [AtomicUsize; bindings::CONFIG_NR_CPUS as usize] =
    [const { AtomicUsize::new(0) }; bindings::CONFIG_NR_CPUS as usize];

/// Records `token` as the last vCPU on `cpu`; whether another one ran
/// there since (interrupts off).
fn last_ran_swap(cpu: u32, token: usize) -> bool {
    LAST_RAN.get(cpu as usize).is_none_or(|s| s.swap(token, Ordering::Relaxed) != token)
}

impl Vcpu {
    /// A token unique to this vCPU while it exists (its address).
    fn token(&self) -> usize {
        core::ptr::from_ref(self) as usize
    }

    /// Injects an exception into the guest's EL1 with `esr` (and `far` for
    /// aborts): `inject_undef64()`/`inject_abt64()`.
    fn inject(&mut self, esr_el1: u64, far: Option<u64>) {
        let core = &mut self.arm.regs.core;
        let sys = &mut self.arm.regs.sys;
        let vbar = sys.get(Sr::VbarEl1);
        sys.set(Sr::ElrEl1, core.pc);
        sys.set(Sr::SpsrEl1, core.pstate);
        sys.set(Sr::EsrEl1, esr_el1);
        if let Some(f) = far {
            sys.set(Sr::FarEl1, f);
        }
        core.pc = vbar.wrapping_add(esr::vector_offset(core.pstate));
        core.pstate = esr::EXCEPTION_PSTATE;
    }

    fn inject_undef(&mut self, esr: u64) {
        self.inject(esr::undef_esr(esr::il32(esr)), None);
    }

    fn at_el0(&self) -> bool {
        self.arm.regs.core.pstate & 0xf == 0
    }
}

/// `handle_trap_exceptions()`.
fn handle_sync(v: &mut Vcpu, run: &VcpuRun<'_>, esr: u64, far: u64, hpfar: Option<u64>) -> Result<Next, Errno> {
    match esr::ec(esr) {
        esr::EC_WFX => {
            // WFE/WFET: a hint (`kvm_vcpu_on_spin()`); WFI/WFIT: halt.
            let wfe = esr & 1 != 0;
            skip_insn(v);
            if !wfe {
                wfi(v, run.vcpu());
            }
            Ok(Next::Guest)
        }
        esr::EC_HVC64 => {
            // The PC is already past the HVC.
            hypercall(v, run)
        }
        esr::EC_SMC64 => {
            skip_insn(v);
            if esr & 0xffff != 0 {
                // A non-zero immediate is reserved (DEN0028E 2.9).
                v.arm.regs.core.x[0] = u64::MAX;
                return Ok(Next::Guest);
            }
            hypercall(v, run)
        }
        esr::EC_SYS64 => sysreg_trap(v, run, esr),
        esr::EC_DABT_LOW | esr::EC_IABT_LOW => guest_abort(v, run, esr, far, hpfar),
        // Everything else (unknown instructions, SVE/SME/PAC traps, ...):
        // an undefined instruction, as upstream's
        // `kvm_handle_unknown_ec()`.
        _ => {
            v.inject_undef(esr);
            Ok(Next::Guest)
        }
    }
}

/// The guest's timer deadlines as host counter values (`None`: no enabled,
/// unmasked timer).
fn timer_deadline(v: &Vcpu, voffset: u64) -> Option<u64> {
    let sys = &v.arm.regs.sys;
    let on = |ctl: u64| ctl & 1 != 0 && ctl & 2 == 0;
    let vt = on(sys.get(Sr::CntvCtlEl0)).then(|| sys.get(Sr::CntvCvalEl0).wrapping_add(voffset));
    let pt = on(sys.get(Sr::CntpCtlEl0)).then(|| sys.get(Sr::CntpCvalEl0));
    match (vt, pt) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `kvm_vcpu_wfi()`: halts until a kick, a signal, a request, a power
/// change, or the deadline of an enabled guest timer.
fn wfi(v: &mut Vcpu, gv: &GenericVcpu) {
    let voffset = v.voffset;
    let deadline = timer_deadline(v, voffset);
    let now = sysreg::cntvct_el0();
    let wake = || deadline.is_some_and(|d| sysreg::cntvct_el0() >= d);
    match deadline {
        None => gv.block(None, wake),
        Some(d) if d <= now => {}
        Some(d) => {
            let hz = sysreg::cntfrq_el0().max(1);
            let ticks = d - now;
            let ms = (ticks / hz).saturating_mul(1000).saturating_add((ticks % hz).saturating_mul(1000).div_ceil(hz));
            let ms = u32::try_from(ms.max(1)).unwrap_or(u32::MAX);
            gv.block(Some(kernel::time::msecs_to_jiffies(ms)), wake);
        }
    }
}

/// A stage-2 fault or an MMIO access (`kvm_handle_guest_abort()`).
fn guest_abort(v: &mut Vcpu, run: &VcpuRun<'_>, esr: u64, far: u64, hpfar: Option<u64>) -> Result<Next, Errno> {
    // The guest changed its stage 1 under the fault: let it fault again.
    let Some(hpfar) = hpfar else { return Ok(Next::Guest) };
    let iabt = esr::ec(esr) == esr::EC_IABT_LOW;
    let a = Abort::decode(esr);
    // HPFAR_EL2.FIPA (bits 47:12 in 43:4) and the page offset from FAR.
    let ipa_page = (hpfar & 0x0000_0fff_ffff_fff0) << 8;
    let ipa = ipa_page | (far & 0xfff);
    let vm = run.vm();
    if a.is_addr_size() || ipa_page >> vm_ipa_bits(v) != 0 {
        // Beyond the VM's IPA space: an external abort for the guest.
        v.inject(esr::abort_esr(iabt, v.at_el0(), esr::il32(esr)), Some(far));
        return Ok(Next::Guest);
    }
    if a.is_access_flag() && stage2::access_fault(vm, ipa_page) {
        return Ok(Next::Guest);
    }
    if !a.is_translation() && !a.is_permission() && !a.is_access_flag() {
        pr_err!("arm64 guest abort: unsupported FSC {:#x} (ESR {:#x}, IPA {:#x})\n", a.fsc, esr, ipa);
        return Err(Errno::EFAULT);
    }
    let write = a.is_write_fault(iabt);
    match stage2::stage2_fault(vm, ipa_page, write)? {
        Stage2Fault::Mapped => return Ok(Next::Guest),
        Stage2Fault::Mmio => {}
    }
    // Outside the memslots (or a write to a read-only one).
    if iabt || a.s1ptw {
        v.inject(esr::abort_esr(iabt, v.at_el0(), esr::il32(esr)), Some(far));
        return Ok(Next::Guest);
    }
    if a.cm {
        // Cache maintenance on a non-memory range: skip it.
        skip_insn(v);
        return Ok(Next::Guest);
    }
    if !a.isv {
        if v.nisv_to_user {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&Abort::nisv_iss(esr).to_ne_bytes());
            b[8..].copy_from_slice(&ipa.to_ne_bytes());
            run.write(RUN_UNION, &b);
            run.set_exit_reason(uapi::KVM_EXIT_ARM_NISV);
            return Ok(Next::User);
        }
        return Err(ENOSYS);
    }
    let len = a.len;
    let mut data = [0u8; 8];
    if a.write {
        let val = get_reg(&v.arm.regs.core.x, a.rt);
        data = esr::store_bytes(val, len, guest_is_be(v));
        let Some(d) = data.get(..len as usize) else { return Err(Errno::EINVAL) };
        if vm.mmio_write(ipa, d) {
            // An ioeventfd or coalesced zone took it: done in the kernel.
            run.write(RUN_UNION, &ipa.to_ne_bytes());
            run.write(RUN_UNION + 16, &len.to_ne_bytes());
            run.write(RUN_UNION + 20, &[1]);
            skip_insn(v);
            return Ok(Next::Guest);
        }
    }
    run.write(RUN_UNION, &ipa.to_ne_bytes());
    if a.write {
        run.write(RUN_UNION + 8, data.get(..len as usize).unwrap_or(&[]));
    }
    run.write(RUN_UNION + 16, &len.to_ne_bytes());
    run.write(RUN_UNION + 20, &[u8::from(a.write)]);
    run.set_exit_reason(uapi::KVM_EXIT_MMIO);
    v.run.mmio = Some(a);
    Ok(Next::User)
}

/// The VM's IPA bits.
fn vm_ipa_bits(v: &Vcpu) -> u32 {
    v.ipa_bits
}

/// A trapped system register access (`kvm_handle_sys_reg()`).
fn sysreg_trap(v: &mut Vcpu, run: &VcpuRun<'_>, esr: u64) -> Result<Next, Errno> {
    let s = SysAccess::decode(esr);
    // DC ISW/CSW/CISW (op0 1, CRn 7, CRm 6/10/14, op2 2): set/way
    // maintenance is a no-op for a guest (upstream flushes stage 2 the
    // first time; caches are coherent with QEMU and FWB).
    if s.enc.op0() == 1 {
        if s.enc.crn() == 7 && matches!(s.enc.crm(), 6 | 10 | 14) && s.enc.op2() == 2 {
            skip_insn(v);
        } else {
            v.inject_undef(esr);
        }
        return Ok(Next::Guest);
    }
    let now = super::counter();
    let write = (!s.read).then(|| get_reg(&v.arm.regs.core.x, s.rt));
    let (r, idst) = {
        let a = run.vm().arch().lock();
        (v.arm.guest_sysreg(&a, s.enc, write, now), a.guest_has_idst())
    };
    match r {
        GuestSysreg::Read(val) => {
            set_reg(&mut v.arm.regs.core.x, s.rt, val);
            skip_insn(v);
        }
        GuestSysreg::Written => skip_insn(v),
        // FEAT_IDST: the ID space (op0 3, CRn 0) reports the trap itself
        // (`kvm_inject_sync()` of the syndrome).
        GuestSysreg::Undefined if idst && s.enc.op0() == 3 && s.enc.crn() == 0 && s.enc.op1() <= 3 => {
            v.inject(esr, None);
        }
        GuestSysreg::Undefined => {
            if !unknown_logged(s.enc) {
                pr_info!(
                    "arm64 guest: unsupported sysreg access {} ({}, {}, {}, {}, {}) at pc {:#x}: UNDEF\n",
                    if s.read { "read" } else { "write" },
                    s.enc.op0(),
                    s.enc.op1(),
                    s.enc.crn(),
                    s.enc.crm(),
                    s.enc.op2(),
                    v.arm.regs.core.pc
                );
            }
            v.inject_undef(esr);
        }
    }
    Ok(Next::Guest)
}

/// Rate limit of the unsupported-sysreg message: the last encoding logged.
static LAST_UNKNOWN: AtomicU32 = AtomicU32::new(u32::MAX);

fn unknown_logged(enc: Enc) -> bool {
    LAST_UNKNOWN.swap(u32::from(enc.0), Ordering::Relaxed) == u32::from(enc.0)
}

/// The firmware call of the guest in `x0`-`x3` (`kvm_smccc_call_handler()`).
fn hypercall(v: &mut Vcpu, run: &VcpuRun<'_>) -> Result<Next, Errno> {
    let x = [v.arm.regs.core.x[0], v.arm.regs.core.x[1], v.arm.regs.core.x[2], v.arm.regs.core.x[3]];
    let (version, bitmaps, spectre, ssbs, system_suspend) = {
        let a = run.vm().arch().lock();
        let m = |n: u64| a.guest_wa_level(n);
        (a.guest_psci_version(), a.smccc_bitmaps(), [m(1), m(2), m(3)], a.guest_has_ssbs(), a.system_suspend)
    };
    let mut env = CallEnv {
        version,
        bitmaps,
        spectre,
        ssbs,
        system_suspend,
        pstate: v.arm.regs.core.pstate,
        vm: run.vm(),
        me: v.idx,
        power: &v.power,
        suspend: false,
    };
    let out = hypercalls::call(x, &mut env);
    let suspend = env.suspend;
    let (regs, event) = match out {
        Outcome::Ret(r) => (r, None),
        Outcome::SystemEvent { ty, flags, regs } => (regs, Some((ty, flags))),
        Outcome::SystemSuspend => {
            // `kvm_psci_system_suspend()`: no register changes, no data,
            // the other vCPUs keep their state.
            let mut b = [0u8; 8 + 16 * 8];
            b[0..4].copy_from_slice(&uapi::KVM_SYSTEM_EVENT_SUSPEND.to_ne_bytes());
            run.write(RUN_UNION, &b);
            run.set_exit_reason(uapi::KVM_EXIT_SYSTEM_EVENT);
            return Ok(Next::User);
        }
    };
    for (i, r) in regs.iter().enumerate() {
        if let (Some(val), Some(slot)) = (r, v.arm.regs.core.x.get_mut(i)) {
            *slot = *val;
        }
    }
    if suspend {
        wfi(v, run.vcpu());
    }
    let Some((ty, flags)) = event else { return Ok(Next::Guest) };
    // `kvm_prepare_system_event()`: every vCPU stops.
    run.vm().for_each_vcpu(|idx, t| {
        v.power.set_mp_state(idx, uapi::KVM_MP_STATE_STOPPED);
        t.kick();
    });
    let mut b = [0u8; 8 + 16 * 8];
    b[0..4].copy_from_slice(&ty.to_ne_bytes());
    b[4..8].copy_from_slice(&1u32.to_ne_bytes());
    b[8..16].copy_from_slice(&flags.to_ne_bytes());
    run.write(RUN_UNION, &b);
    run.set_exit_reason(uapi::KVM_EXIT_SYSTEM_EVENT);
    Ok(Next::User)
}

/// The firmware calls' view of the VM.
struct CallEnv<'a> {
    version: u64,
    bitmaps: [u64; 4],
    /// `get_kernel_wa_level()` of workarounds 1-3.
    spectre: [u64; 3],
    ssbs: bool,
    /// `KVM_CAP_ARM_SYSTEM_SUSPEND` is enabled.
    system_suspend: bool,
    pstate: u64,
    vm: &'a Vm,
    me: usize,
    power: &'a PowerTable,
    suspend: bool,
}

impl Env for CallEnv<'_> {
    fn psci_version(&self) -> u64 {
        self.version
    }

    fn bitmaps(&self) -> [u64; 4] {
        self.bitmaps
    }

    fn spectre(&self, workaround: u32) -> Spectre {
        let level = match workaround {
            1 => self.spectre[0],
            2 => self.spectre[1],
            _ => self.spectre[2],
        };
        match (workaround, level) {
            (2, 3) => Spectre::Unaffected,
            (2, _) => Spectre::Vulnerable,
            (_, 0) => Spectre::Vulnerable,
            (_, 1) => Spectre::Mitigated,
            _ => Spectre::Unaffected,
        }
    }

    fn has_ssbs(&self) -> bool {
        self.ssbs
    }

    fn is_32bit(&self) -> bool {
        is_32bit(self.pstate)
    }

    fn system_suspend_enabled(&self) -> bool {
        self.system_suspend
    }

    fn cpu_on(&mut self, mpidr: u64, pc: u64, x0: u64) -> Option<Result<(), bool>> {
        let mut found = None;
        self.vm.for_each_vcpu(|idx, t| {
            if found.is_none() && super::state::mpidr(t.id()) & hypercalls::MPIDR_HWID_BITMASK == mpidr {
                found = Some(idx);
            }
        });
        let idx = found?;
        let r = self.power.power_on(idx, pc, x0);
        if r.is_ok() {
            if let Some(t) = self.vm.vcpu_at(idx) {
                t.kick();
            }
        }
        Some(r)
    }

    fn any_on(&self, target: u64, mask: u64) -> bool {
        let mut on = false;
        self.vm.for_each_vcpu(|idx, t| {
            if super::state::mpidr(t.id()) & mask == target && self.power.mp_state(idx) != uapi::KVM_MP_STATE_STOPPED {
                on = true;
            }
        });
        on
    }

    fn power_off_self(&mut self) {
        self.power.set_mp_state(self.me, uapi::KVM_MP_STATE_STOPPED);
    }

    fn suspend(&mut self) {
        self.suspend = true;
    }
}
