// SPDX-License-Identifier: GPL-2.0

//! The riscv64 `KVM_RUN` loop (upstream's `kvm_arch_vcpu_ioctl_run()`,
//! `kvm_arch_vcpu_load()`/`_put()`, `kvm_riscv_vcpu_exit()` and the SBI
//! glue).
//!
//! # Loaded state
//!
//! While a vCPU is in `KVM_RUN` its VS-level CSRs, timer compare, FP
//! registers and configuration CSRs (`hedeleg`, `hideleg`, `henvcfg`,
//! `hstateen0`, `htimedelta`) live in the hart ("loaded"): [`load`] at the
//! start of the run and whenever the thread is scheduled in again (a
//! [`PreemptNotifier`]), [`put`] at the end and whenever it is scheduled
//! out. What load/put move is kept in a separate allocation, [`Loaded`],
//! reached only through a raw pointer: by the notifier (which runs on the
//! vCPU thread while it is preempted) and by the run loop with preemption
//! disabled, so the two never overlap.
//!
//! FP is lazy, as upstream: the host's FP registers are saved at load and
//! restored at put (the VMM's user FP state survives), the guest's are
//! restored at load if its `sstatus.FS` is not Off and saved at put if the
//! guest dirtied them.
//!
//! # One iteration
//!
//! Preemptible: pending work ([`VcpuRun::handle_work`]: signals end the
//! run with `EINTR`/`KVM_EXIT_INTR`, `need_resched`, rseq), requests
//! (generic, then fences and sleep while stopped). Preemption off:
//! [`stage2::prepare_entry`] for `hgatp`; interrupts off: guest mode,
//! pending interrupts into `hvip`, last check for requests or work, then
//! the switch ([`switch::switch_to`]) with `hstatus`, `scounteren`,
//! `senvcfg` swapped around it. After the exit: interrupt state synced,
//! interrupts taken (guest time accounted with `PF_VCPU`), preemption back
//! on, then the exit is handled ([`exit`]) with preemption on (G-stage
//! faults may sleep).
//!
//! # Not yet
//!
//! No vector state for guests (their `sstatus.VS` stays Off), no AIA, no
//! PMU, no HSM/SRST on other vCPUs' MP state (only the calling vCPU's), no
//! statistics.
//!
//! # Timer
//!
//! With Sstc the guest's timer is `vstimecmp`, loaded and put with the
//! rest. Without it the guest asks for its next event through SBI
//! `set_timer` (or userspace through the timer ONE_REGs), and a
//! [`SoftTimer`] delivers it: before each entry an event that is due
//! becomes `hvip.VSTIP` (and the timer is off again, as upstream's
//! `next_set`), one that is not arms an hrtimer that kicks the vCPU out of
//! the guest (or out of WFI) at the deadline.

use super::{
    insn::{
        self,
        CsrEmulation,
        FetchFault,
        GuestTrap,
        Insn,
        VirtualInsn, //
    },
    regs::{
        GuestCore,
        GuestCsrs,
        GuestFp,
        GuestTimer,
        HSTATUS_SPV,
        HSTATUS_SPVP,
        HSTATUS_VSXL_RV64,
        HSTATUS_VTW,
        SSTATUS_FS,
        SSTATUS_FS_CLEAN,
        SSTATUS_FS_DIRTY,
        SSTATUS_SPP, //
    },
    sbi::{
        EcallRegs,
        Fence,
        HartMask,
        HartState,
        MachineIds,
        SbiEnv,
        SbiExit,
        StealClock, //
    },
    stage2::{
        self,
        GStageFault, //
    },
    switch::{
        self,
        HostSave, //
    },
    Vcpu,
};
use crate::kvm::{
    abi::Errno,
    requests::Request,
    vcpu::{
        Vcpu as GenericVcpu,
        VcpuRun, //
    },
    vm::Vm,
};
use kernel::time::{
    hrtimer::{
        HrTimer,
        HrTimerCallback,
        HrTimerCallbackContext,
        HrTimerRestart,
        PinHrTimerHandle,
        RelativeMode,
        ScopedHrTimerPointer,
        UnsafeHrTimerPointer, //
    },
    Delta,
    Monotonic, //
};
use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicBool,
    AtomicU32,
    AtomicU64,
    Ordering, //
};
use kernel::{
    bindings,
    cpu::CpuId,
    prelude::*,
    sync::Arc,
    preempt_notifier::{
        PreemptNotifier,
        PreemptNotifierOps, //
    },
    uapi,
};

/// Reads CSR `$csr`.
macro_rules! csr_read {
    ($csr:expr) => {{
        let v: u64;
        // SAFETY: Reading a hypervisor or supervisor CSR in HS-mode has no
        // side effect (the callers only name such CSRs).
        unsafe { core::arch::asm!("csrr {0}, {c}", out(reg) v, c = const $csr, options(nomem, nostack)) };
        v
    }};
}

/// Writes `$v` to CSR `$csr`.
macro_rules! csr_write {
    ($csr:expr, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: The callers only write guest-facing CSRs (VS, hypervisor
        // configuration, `scounteren`/`senvcfg` swapped back afterwards)
        // on the vCPU's own hart, with preemption or interrupts off.
        unsafe { core::arch::asm!("csrw {c}, {0}", in(reg) v, c = const $csr, options(nostack)) };
    }};
}

/// Swaps CSR `$csr` with `$v`, returning the old value.
macro_rules! csr_swap {
    ($csr:expr, $v:expr) => {{
        let v: u64 = $v;
        let old: u64;
        // SAFETY: As for `csr_write!`.
        unsafe { core::arch::asm!("csrrw {o}, {c}, {i}", o = out(reg) old, i = in(reg) v, c = const $csr, options(nostack)) };
        old
    }};
}

const CSR_SCOUNTEREN: u32 = 0x106;
const CSR_SENVCFG: u32 = 0x10a;
const CSR_SCAUSE: u32 = 0x142;
const CSR_STVAL: u32 = 0x143;
const CSR_VSSTATUS: u32 = 0x200;
const CSR_VSIE: u32 = 0x204;
const CSR_VSTVEC: u32 = 0x205;
const CSR_VSSCRATCH: u32 = 0x240;
const CSR_VSEPC: u32 = 0x241;
const CSR_VSCAUSE: u32 = 0x242;
const CSR_VSTVAL: u32 = 0x243;
const CSR_VSTIMECMP: u32 = 0x24d;
const CSR_VSATP: u32 = 0x280;
const CSR_HSTATUS: u32 = 0x600;
const CSR_HEDELEG: u32 = 0x602;
const CSR_HIDELEG: u32 = 0x603;
const CSR_HTIMEDELTA: u32 = 0x605;
const CSR_HENVCFG: u32 = 0x60a;
const CSR_HSTATEEN0: u32 = 0x60c;
const CSR_HTVAL: u32 = 0x643;
const CSR_HVIP: u32 = 0x645;
const CSR_HTINST: u32 = 0x64a;
const CSR_HGATP: u32 = 0x680;
const CSR_TIME: u32 = 0xc01;

/// `CAUSE_IRQ_FLAG`.
const CAUSE_IRQ: u64 = 1 << 63;
const EXC_INST_MISALIGNED: u64 = 0;
const EXC_INST_ACCESS: u64 = 1;
const EXC_INST_ILLEGAL: u64 = 2;
const EXC_BREAKPOINT: u64 = 3;
const EXC_LOAD_MISALIGNED: u64 = 4;
const EXC_LOAD_ACCESS: u64 = 5;
const EXC_STORE_MISALIGNED: u64 = 6;
const EXC_STORE_ACCESS: u64 = 7;
const EXC_SYSCALL: u64 = 8;
const EXC_SUPERVISOR_SYSCALL: u64 = 10;
const EXC_INST_PAGE_FAULT: u64 = 12;
const EXC_LOAD_PAGE_FAULT: u64 = 13;
const EXC_STORE_PAGE_FAULT: u64 = 15;

/// `KVM_HEDELEG_DEFAULT`: what the guest handles itself.
const HEDELEG_DEFAULT: u64 = (1 << EXC_INST_MISALIGNED)
    | (1 << EXC_INST_ILLEGAL)
    | (1 << EXC_BREAKPOINT)
    | (1 << EXC_SYSCALL)
    | (1 << EXC_INST_PAGE_FAULT)
    | (1 << EXC_LOAD_PAGE_FAULT)
    | (1 << EXC_STORE_PAGE_FAULT);

/// `IRQ_VS_SOFT`, `IRQ_VS_TIMER`, `IRQ_VS_EXT` as `hvip`/`hideleg` bits.
pub(crate) const VSSIP: u64 = 1 << 2;
const VSTIP: u64 = 1 << 6;
pub(crate) const VSEIP: u64 = 1 << 10;
/// `KVM_HIDELEG_DEFAULT`.
const HIDELEG_DEFAULT: u64 = VSSIP | VSTIP | VSEIP;

const ENVCFG_STCE: u64 = 1 << 63;
const ENVCFG_PBMTE: u64 = 1 << 62;
const ENVCFG_ADUE: u64 = 1 << 61;
const ENVCFG_CBZE: u64 = 1 << 7;
const ENVCFG_CBCFE: u64 = 1 << 6;
const ENVCFG_CBIE: u64 = 3 << 4;
/// `SMSTATEEN0_HSENVCFG`.
const SMSTATEEN0_HSENVCFG: u64 = 1 << 62;

/// `RISCV_ISA_EXT_*` numbers of `<asm/hwcap.h>`.
const ISA_D: u32 = (b'd' - b'a') as u32;
const ISA_SSTC: u32 = 27;
const ISA_SVPBMT: u32 = 29;
const ISA_ZICBOM: u32 = 31;
const ISA_ZICBOZ: u32 = 34;
const ISA_SMSTATEEN: u32 = 43;
const ISA_SVADE: u32 = 92;
const ISA_SVADU: u32 = 93;

/// Whether every hart has ISA extension `ext`.
fn host_has(ext: u32) -> bool {
    // SAFETY: A null bitmap selects the host ISA, set up at boot.
    unsafe { bindings::__riscv_isa_extension_available(core::ptr::null(), ext) }
}

/// Whether the host has Sstc (the guest timer is `vstimecmp`).
pub(crate) fn host_has_sstc() -> bool {
    host_has(ISA_SSTC)
}

/// `kvm_riscv_vcpu_config_ran_once()`: `henvcfg` for a guest given the
/// host's extensions (kvm_rs's vCPUs get the host's). MERGE (rvregs):
/// upstream derives it from the vCPU's ISA (userspace may disable Sstc,
/// Svpbmt, Zicbom, Zicboz, Svadu through ONE_REG).
fn guest_henvcfg() -> u64 {
    let mut v = 0;
    if host_has(ISA_SVPBMT) {
        v |= ENVCFG_PBMTE;
    }
    if host_has(ISA_SSTC) {
        v |= ENVCFG_STCE;
    }
    if host_has(ISA_ZICBOM) {
        v |= ENVCFG_CBIE | ENVCFG_CBCFE;
    }
    if host_has(ISA_ZICBOZ) {
        v |= ENVCFG_CBZE;
    }
    if host_has(ISA_SVADU) && !host_has(ISA_SVADE) {
        v |= ENVCFG_ADUE;
    }
    v
}

// --- preemption -----------------------------------------------------------

/// Preemption disabled on this CPU while it lives (`preempt_disable()` /
/// `preempt_enable()`).
///
/// The kernel crate has no such guard and the C functions are inline, so
/// this adjusts `current_thread_info()->preempt_count` as riscv's
/// asm-generic `preempt_count_inc()`/`preempt_count_dec_and_test()` do and
/// calls the exported `preempt_schedule()`; it needs a `rust/helpers`
/// patch (`preempt_disable`/`preempt_enable`).
///
/// Invariant: created and dropped on the same task (it is not `Send`).
struct PreemptGuard(core::marker::PhantomData<*mut ()>);

/// `TIF_NEED_RESCHED`.
const TIF_NEED_RESCHED: u32 = bindings::TIF_NEED_RESCHED;

impl PreemptGuard {
    fn new() -> PreemptGuard {
        let task = kernel::task::Task::current_raw();
        // SAFETY: Only the current task changes its own `preempt_count`
        // (interrupts restore what they change); a plain increment is
        // `preempt_count_inc()`. The compiler barrier is `barrier()`.
        unsafe {
            let p = core::ptr::addr_of_mut!((*task).thread_info.preempt_count);
            p.write_volatile(p.read_volatile().wrapping_add(1));
        }
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        PreemptGuard(core::marker::PhantomData)
    }

    /// The CPU we run on (stable while the guard lives).
    fn cpu(&self) -> u32 {
        CpuId::current().as_u32()
    }
}

impl Drop for PreemptGuard {
    fn drop(&mut self) {
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        let task = kernel::task::Task::current_raw();
        // SAFETY: As in `new`, on the same task (type invariant); the
        // count was incremented by `new`, so it does not underflow.
        let resched = unsafe {
            let p = core::ptr::addr_of_mut!((*task).thread_info.preempt_count);
            let n = p.read_volatile().wrapping_sub(1);
            p.write_volatile(n);
            let flags = core::ptr::addr_of!((*task).thread_info.flags).read_volatile();
            n == 0 && (flags as u64) & (1 << TIF_NEED_RESCHED) != 0
        };
        if resched {
            // SAFETY: `__preempt_schedule()`: preemption is enabled again.
            unsafe { bindings::preempt_schedule() };
        }
    }
}

// --- loaded state ---------------------------------------------------------

/// What a vCPU's last [`put`] left in a hart: the values of the CSRs that
/// [`load`] writes, as they were when the vCPU left that hart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HartCopy {
    /// The CPU whose hart holds these values.
    cpu: u32,
    /// The nine VS CSRs of `load`/`put` (`vsstatus` ... `vsatp`, `hvip`
    /// included); the other fields of [`GuestCsrs`] are not in the hart
    /// outside the world switch and mean nothing here.
    csrs: GuestCsrs,
    /// `hedeleg`.
    hedeleg: u64,
    /// `henvcfg`.
    henvcfg: u64,
    /// `htimedelta`.
    htimedelta: u64,
    /// `vstimecmp` (with Sstc only).
    vstimecmp: u64,
    /// `hgatp`.
    hgatp: u64,
}

/// Per CPU: the [`Loaded::token`] of the vCPU whose state was last loaded
/// into this CPU's hart (0: none, or the hart's state is unknown).
///
/// Together with [`Loaded::hart`] this is upstream's `kvm_former_vcpu` +
/// `last_exit_cpu` shortcut of `kvm_arch_vcpu_load()`, with the
/// `csr_dirty` flag replaced by comparing values. The invariant: if
/// `HART_OWNER[c] == l.token` and `l.hart` is `Some(h)` with `h.cpu ==
/// c`, the hart of CPU `c` holds exactly the values in `h` for every CSR
/// `load` writes. It holds because
/// - only `load` (on the owner's CPU, preemption off) stores a token here,
///   and only [`put`] records `l.hart`, right after reading the hart; a
///   `load` of another vCPU (of any VM) on `c` replaces the token, and a
///   load of this vCPU on another CPU `d` makes its next `put` record `d`;
/// - while a vCPU is loaded, the only writers of these CSRs on its hart
///   are kvm_rs's run loop and exit handlers for that vCPU (preemption
///   off), the guest itself (whose changes `put` reads back), and `load`;
///   `hgatp` and the loop's `hvip`/`vsie` reads keep `Loaded` in step with
///   the hart (see `put`);
/// - everything else that changes them on a hart goes through
///   [`forget_this_cpu`]: CPU hotplug (`enable_cpu`/`disable_cpu`, which
///   also covers a hart reset by offlining) and the KUnit tests that
///   borrow them. (The in-tree `kvm.ko` cannot run guests at the same
///   time: both own `/dev/kvm`.)
///
/// So ONE_REG writes, an HSM reset, guest debugging (`hedeleg`), a new
/// VMID (`hgatp`) or guest-time change (`htimedelta`) need no dirty flag:
/// `load` compares the wanted values with `h` and writes what differs.
static HART_OWNER: [AtomicU64; bindings::NR_CPUS as usize] =
    [const { AtomicU64::new(0) }; bindings::NR_CPUS as usize];

/// The source of [`Loaded::token`]s (0 is never handed out).
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// Forgets what this CPU's hart holds: the next [`load`] on it writes
/// every CSR. Call with preemption off, after anything other than
/// `load`/`put` changed the hart's guest CSRs.
pub(crate) fn forget_this_cpu() {
    if let Some(o) = HART_OWNER.get(CpuId::current().as_u32() as usize) {
        o.store(0, Ordering::Relaxed);
    }
}

/// The [`HartCopy`] `load` may rely on: `hart`, if it describes `cpu` and
/// the vCPU with `token` was the last one loaded there (`owner`).
fn kept_copy(owner: u64, token: u64, hart: Option<HartCopy>, cpu: u32) -> Option<HartCopy> {
    hart.filter(|h| h.cpu == cpu && owner == token && token != 0)
}

/// The state load/put move between memory and the hart (see the module
/// comment). Lives in its own allocation, reached by raw pointer only.
pub(crate) struct Loaded {
    /// VS CSRs (`hvip` included).
    csrs: GuestCsrs,
    /// Guest timer (`vstimecmp` with Sstc).
    timer: GuestTimer,
    /// Guest FP registers.
    fp: GuestFp,
    /// The host's FP registers while the guest's are loaded.
    host_fp: GuestFp,
    /// The guest's `sstatus.FS` (Off, Initial, Clean, Dirty).
    guest_fs: u64,
    /// `hedeleg` of this vCPU (breakpoints stay with the host under guest
    /// debugging).
    hedeleg: u64,
    /// `henvcfg` of this vCPU.
    henvcfg: u64,
    /// `htimedelta`: guest time minus host time.
    htimedelta: u64,
    /// The `hgatp` of the last guest entry (0 before the first): while
    /// loaded, the hart's `hgatp` is this, so that `HLV` in an exit
    /// handler goes through this VM's G-stage even after a preemption.
    hgatp: u64,
    /// Whether the state is in the hart now.
    loaded: bool,
    /// This vCPU's identity in [`HART_OWNER`] (unique, never reused).
    token: u64,
    /// What the last `put` left in which hart (see [`HART_OWNER`]).
    hart: Option<HartCopy>,
}

/// The owner of the [`Loaded`] allocation of a vCPU.
///
/// Invariant: `ptr` comes from `KBox::into_raw` and is freed only by
/// `Drop`; it is dereferenced only by the vCPU thread with preemption
/// disabled, or by its preempt notifier.
pub(crate) struct LoadedBox {
    ptr: *mut Loaded,
}

// SAFETY: The allocation is owned like a `KBox<Loaded>` (all fields are
// plain data); access follows the invariant above.
unsafe impl Send for LoadedBox {}

impl LoadedBox {
    /// A new vCPU's state.
    pub(crate) fn new() -> Result<LoadedBox, Errno> {
        let b = KBox::new(Loaded::new(), GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)?;
        Ok(LoadedBox { ptr: KBox::into_raw(b) })
    }
}

impl Loaded {
    /// A new vCPU's state, with a fresh token.
    fn new() -> Loaded {
        Loaded {
            csrs: GuestCsrs::default(),
            timer: GuestTimer { next_cycles: u64::MAX, started: false },
            fp: GuestFp::default(),
            host_fp: GuestFp::default(),
            guest_fs: 0,
            hedeleg: HEDELEG_DEFAULT,
            henvcfg: 0,
            htimedelta: 0,
            hgatp: 0,
            loaded: false,
            // 2^64 vCPU creations do not happen; were it to wrap, 0 only
            // disables the shortcut.
            token: NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
            hart: None,
        }
    }
}

impl Drop for LoadedBox {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `KBox::into_raw` (invariant), freed once.
        drop(unsafe { KBox::from_raw(self.ptr) });
    }
}

/// Writes `$new` to CSR `$csr` unless the hart is known to hold it
/// (`$kept`: `Some(value in the hart)` or `None`).
macro_rules! csr_update {
    ($csr:expr, $new:expr, $kept:expr) => {{
        let new: u64 = $new;
        if $kept != Some(new) {
            csr_write!($csr, new);
        }
    }};
}

/// `kvm_arch_vcpu_load()`: puts the vCPU's state into this hart (CPU
/// `cpu`). As upstream, the CSRs are only rewritten if the hart may not
/// hold them any more (see [`HART_OWNER`]); here each one that differs
/// from what the last `put` left is rewritten.
///
/// # Safety
///
/// Preemption (or interrupts) disabled, `cpu` the current CPU; `l` is the
/// vCPU's [`Loaded`], not loaded, accessed by no one else.
unsafe fn load(l: &mut Loaded, cpu: u32) {
    let owner = HART_OWNER.get(cpu as usize);
    let kept = kept_copy(owner.map_or(0, |o| o.load(Ordering::Relaxed)), l.token, l.hart, cpu);
    if let Some(o) = owner {
        o.store(l.token, Ordering::Relaxed);
    }
    // Configuration first: it changes how the other CSRs behave.
    csr_update!(CSR_HEDELEG, l.hedeleg, kept.map(|h| h.hedeleg));
    csr_update!(CSR_HIDELEG, HIDELEG_DEFAULT, kept.map(|_| HIDELEG_DEFAULT));
    csr_update!(CSR_HENVCFG, l.henvcfg, kept.map(|h| h.henvcfg));
    if kept.is_none() && host_has(ISA_SMSTATEEN) {
        csr_write!(CSR_HSTATEEN0, SMSTATEEN0_HSENVCFG);
    }
    let c = &l.csrs;
    let k = kept.map(|h| h.csrs);
    csr_update!(CSR_VSSTATUS, c.vsstatus, k.map(|h| h.vsstatus));
    csr_update!(CSR_VSIE, c.vsie, k.map(|h| h.vsie));
    csr_update!(CSR_VSTVEC, c.vstvec, k.map(|h| h.vstvec));
    csr_update!(CSR_VSSCRATCH, c.vsscratch, k.map(|h| h.vsscratch));
    csr_update!(CSR_VSEPC, c.vsepc, k.map(|h| h.vsepc));
    csr_update!(CSR_VSCAUSE, c.vscause, k.map(|h| h.vscause));
    csr_update!(CSR_VSTVAL, c.vstval, k.map(|h| h.vstval));
    csr_update!(CSR_HVIP, c.hvip, k.map(|h| h.hvip));
    csr_update!(CSR_VSATP, c.vsatp, k.map(|h| h.vsatp));
    csr_update!(CSR_HGATP, l.hgatp, kept.map(|h| h.hgatp));
    csr_update!(CSR_HTIMEDELTA, l.htimedelta, kept.map(|h| h.htimedelta));
    if host_has_sstc() {
        csr_update!(CSR_VSTIMECMP, l.timer.next_cycles, kept.map(|h| h.vstimecmp));
    }
    if host_has(ISA_D) {
        switch::fp_save(&mut l.host_fp);
        if l.guest_fs != 0 {
            switch::fp_restore(&l.fp);
            l.guest_fs = SSTATUS_FS_CLEAN;
        }
    }
    l.loaded = true;
}

/// `kvm_arch_vcpu_put()`: saves the vCPU's state from this hart (CPU
/// `cpu`) and gives the host its FP registers back.
///
/// As upstream, the guest's `hvip`, `vsie`, `hgatp` and delegation stay
/// in the hart: with V=0 nothing uses them (VS-level interrupts are
/// delegated, so they never reach HS-mode; `hgatp` only serves V=1 and
/// `HLV`/`HSV`, which only the run loop and its exit handlers of a loaded
/// vCPU execute), and the next `load` on this hart, of any vCPU, sets
/// what it needs. `vsie` and `hvip` are not read back: the run loop reads
/// both after every guest exit, the only time they can change while the
/// state is loaded, so `l.csrs` already has them.
///
/// # Safety
///
/// As for [`load`], with `l` loaded on this hart.
unsafe fn put(l: &mut Loaded, cpu: u32) {
    if host_has(ISA_D) {
        if l.guest_fs == SSTATUS_FS_DIRTY {
            switch::fp_save(&mut l.fp);
            l.guest_fs = SSTATUS_FS_CLEAN;
        }
        switch::fp_restore(&l.host_fp);
    }
    let mut vstimecmp = 0;
    if host_has_sstc() {
        l.timer.next_cycles = csr_read!(CSR_VSTIMECMP);
        // kvm_riscv_vcpu_timer_save(): a guest timer left armed would make
        // this hart's WFI a no-op once it fires (a pending VS timer
        // interrupt resumes WFI even while delegated), so an idle host CPU
        // would spin; the vCPU's own deadline is kept in `next_cycles`
        // and woken by its hrtimer.
        vstimecmp = u64::MAX;
        csr_write!(CSR_VSTIMECMP, vstimecmp);
    }
    let c = &mut l.csrs;
    c.vsstatus = csr_read!(CSR_VSSTATUS);
    c.vstvec = csr_read!(CSR_VSTVEC);
    c.vsscratch = csr_read!(CSR_VSSCRATCH);
    c.vsepc = csr_read!(CSR_VSEPC);
    c.vscause = csr_read!(CSR_VSCAUSE);
    c.vstval = csr_read!(CSR_VSTVAL);
    c.vsatp = csr_read!(CSR_VSATP);
    l.hart = Some(HartCopy {
        cpu,
        csrs: *c,
        hedeleg: l.hedeleg,
        henvcfg: l.henvcfg,
        htimedelta: l.htimedelta,
        vstimecmp,
        hgatp: l.hgatp,
    });
    l.loaded = false;
}

/// The preempt notifier's data: the vCPU's loaded state and generic vCPU.
struct Notify {
    loaded: *mut Loaded,
    vcpu: *const GenericVcpu,
}

// SAFETY: Only the scheduler uses it, on the vCPU thread that registered
// it (the notifier is on that task's list only), while the pointees live
// (the registration ends before `run` returns).
unsafe impl Sync for Notify {}
// SAFETY: As above.
unsafe impl Send for Notify {}

impl PreemptNotifierOps for Notify {
    fn sched_in(this: &Self, cpu: CpuId) {
        // SAFETY: The vCPU thread was preempted outside its
        // preemption-disabled sections (the only other users of
        // `loaded`), and the pointees outlive the registration.
        unsafe {
            load(&mut *this.loaded, cpu.as_u32());
            (*this.vcpu).set_cpu(Some(cpu.as_u32()));
            (*this.vcpu).requests().make(REQ_STEAL_UPDATE);
        }
    }

    fn sched_out(this: &Self) {
        // SAFETY: As in `sched_in`; the state was loaded by it or by the
        // run loop, on this hart.
        unsafe {
            if (*this.loaded).loaded {
                put(&mut *this.loaded, CpuId::current().as_u32());
            }
            (*this.vcpu).set_cpu(None);
        }
    }
}

// --- shared state and requests -------------------------------------------

/// The vCPU state other threads change while it runs (`Arch::VcpuShared`).
pub(crate) struct Shared {
    /// `irqs_pending`: `hvip` bits the host wants set.
    irqs_pending: AtomicU64,
    /// `irqs_pending_mask`: which bits of `irqs_pending` changed.
    irqs_pending_mask: AtomicU64,
    /// `vcpu->arch.mp_state` (`mp_state_lock` upstream): a
    /// `KVM_MP_STATE_*`, [`MP_UNSET`] until first set (then the vCPU's
    /// initial state applies: `RUNNABLE` for the first vCPU, `STOPPED`
    /// for the others), or [`MP_STARTING`] while an HSM `HART_START`
    /// sets up its reset state.
    mp_state: AtomicU32,
    /// `reset_state.pc` of an HSM `HART_START`.
    reset_pc: AtomicU64,
    /// `reset_state.a1` of an HSM `HART_START`.
    reset_a1: AtomicU64,
}

/// [`Shared::mp_state`] before anything set it.
const MP_UNSET: u32 = u32::MAX;
/// [`Shared::mp_state`] while a `HART_START` is in progress (reported as
/// `STOPPED`).
const MP_STARTING: u32 = u32::MAX - 1;

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            irqs_pending: AtomicU64::new(0),
            irqs_pending_mask: AtomicU64::new(0),
            mp_state: AtomicU32::new(MP_UNSET),
            reset_pc: AtomicU64::new(0),
            reset_a1: AtomicU64::new(0),
        }
    }
}

/// The MP state a vCPU at index `idx` starts with
/// (`kvm_arch_vcpu_postcreate()`).
pub(crate) const fn initial_mp_state(idx: usize) -> u32 {
    if idx == 0 {
        uapi::KVM_MP_STATE_RUNNABLE
    } else {
        uapi::KVM_MP_STATE_STOPPED
    }
}

impl Shared {
    /// The vCPU's MP state (`initial`: its initial one).
    pub(crate) fn mp_state(&self, initial: u32) -> u32 {
        match self.mp_state.load(Ordering::Acquire) {
            MP_UNSET => initial,
            MP_STARTING => uapi::KVM_MP_STATE_STOPPED,
            s => s,
        }
    }

    /// Sets the MP state (`KVM_SET_MP_STATE`, power off).
    pub(crate) fn set_mp_state(&self, state: u32) {
        self.mp_state.store(state, Ordering::Release);
    }

    /// HSM `HART_START`: if the vCPU is stopped, gives it its reset state
    /// and powers it on (the caller requests the reset and kicks);
    /// `false` if it was not stopped.
    fn try_start(&self, initial: u32, pc: u64, a1: u64) -> bool {
        let cur = self.mp_state.load(Ordering::Acquire);
        let resolved = if cur == MP_UNSET { initial } else { cur };
        if resolved != uapi::KVM_MP_STATE_STOPPED {
            return false;
        }
        if self.mp_state.compare_exchange(cur, MP_STARTING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // Another vCPU started (or stopped) it meanwhile.
            return false;
        }
        self.reset_pc.store(pc, Ordering::Relaxed);
        self.reset_a1.store(a1, Ordering::Relaxed);
        true
    }

    /// Ends a [`Shared::try_start`]: runnable.
    fn started(&self) {
        self.mp_state.store(uapi::KVM_MP_STATE_RUNNABLE, Ordering::Release);
    }

    /// `kvm_riscv_vcpu_set_interrupt()` (the caller kicks).
    pub(crate) fn set_interrupt(&self, bit: u64) {
        self.irqs_pending.fetch_or(bit, Ordering::Release);
        self.irqs_pending_mask.fetch_or(bit, Ordering::Release);
    }

    /// `kvm_riscv_vcpu_unset_interrupt()`.
    pub(crate) fn unset_interrupt(&self, bit: u64) {
        self.irqs_pending.fetch_and(!bit, Ordering::Release);
        self.irqs_pending_mask.fetch_or(bit, Ordering::Release);
    }

    /// `kvm_riscv_vcpu_flush_interrupts()`: the changed bits into `hvip`.
    pub(crate) fn flush(&self, hvip: u64) -> u64 {
        let mask = self.irqs_pending_mask.swap(0, Ordering::AcqRel);
        if mask == 0 {
            return hvip;
        }
        let val = self.irqs_pending.load(Ordering::Acquire) & mask;
        (hvip & !mask) | val
    }

    /// Drops the changes not flushed yet (a `sip` write through ONE_REG
    /// replaces `hvip`: upstream clears `irqs_pending_mask`).
    pub(crate) fn forget_changes(&self) {
        self.irqs_pending_mask.store(0, Ordering::Release);
    }
}

/// `KVM_REQ_SLEEP`... riscv's arch requests, after the generic ones.
const REQ_FENCE_I: Request = match Request::new(8) {
    Some(r) => r,
    None => panic!(),
};
/// `KVM_REQ_HFENCE_VVMA_ALL`.
const REQ_HFENCE_VVMA_ALL: Request = match Request::new(9) {
    Some(r) => r,
    None => panic!(),
};

/// `KVM_REQ_STEAL_UPDATE`: made at every vCPU load.
const REQ_STEAL_UPDATE: Request = match Request::new(10) {
    Some(r) => r,
    None => panic!(),
};

/// `KVM_REQ_VCPU_RESET`: an HSM `HART_START` set the reset state.
const REQ_VCPU_RESET: Request = match Request::new(11) {
    Some(r) => r,
    None => panic!(),
};

/// Runs `f` on every vCPU of `vm` with its index.
fn for_each_vcpu(vm: &Vm, mut f: impl FnMut(usize, &GenericVcpu)) {
    vm.for_each_vcpu(|i, v| f(i, v));
}

// --- the run loop ---------------------------------------------------------

/// What an exit handler decided.
enum Next {
    /// Re-enter the guest.
    Guest,
    /// Return to userspace (`kvm_run` is filled).
    User,
}

/// The trap CSRs of one exit (`struct kvm_cpu_trap`).
#[derive(Clone, Copy)]
struct Trap {
    sepc: u64,
    scause: u64,
    stval: u64,
    htval: u64,
    htinst: u64,
}

/// `kvm_run` offsets (the exit union starts at 32).
const RUN_UNION: usize = 32;
kernel::static_assert!(core::mem::offset_of!(uapi::kvm_run, __bindgen_anon_1) == RUN_UNION);

/// The [`Loaded`] state at `ptr`, for the run loop, while `_p` keeps
/// preemption off.
///
/// # Safety
///
/// `ptr` is a vCPU's `LoadedBox` pointer, used by no one else while the
/// reference lives (see [`LoadedBox`]).
unsafe fn loaded_mut<'a>(ptr: *mut Loaded, _p: &'a mut PreemptGuard) -> &'a mut Loaded {
    // SAFETY: By the caller and the `LoadedBox` invariant.
    unsafe { &mut *ptr }
}

impl Vcpu {
    /// Reads guest register `r` (x0 reads 0).
    fn gpr(core: &GuestCore, r: u8) -> u64 {
        core.x.get(usize::from(r)).copied().filter(|_| r != 0).unwrap_or(0)
    }

    /// Applies an emulated instruction's completion.
    fn complete(core: &mut GuestCore, c: insn::Completion) {
        if let Some(w) = c.write {
            if let Some(slot) = core.x.get_mut(usize::from(w.reg)) {
                *slot = w.value;
            }
        }
        core.sepc = core.sepc.wrapping_add(c.sepc_advance);
    }

    /// `kvm_riscv_vcpu_trap_redirect()`: delivers `trap` (taken at
    /// `sepc`) to the guest's trap vector.
    fn redirect(&mut self, sepc: u64, trap: GuestTrap) {
        let _p = PreemptGuard::new();
        let mut vsstatus = csr_read!(CSR_VSSTATUS);
        const SIE: u64 = 1 << 1;
        const SPIE: u64 = 1 << 5;
        vsstatus &= !SSTATUS_SPP;
        if self.regs.core.sstatus & SSTATUS_SPP != 0 {
            vsstatus |= SSTATUS_SPP;
        }
        vsstatus &= !SPIE;
        if vsstatus & SIE != 0 {
            vsstatus |= SPIE;
        }
        vsstatus &= !SIE;
        csr_write!(CSR_VSSTATUS, vsstatus);
        csr_write!(CSR_VSCAUSE, trap.scause);
        csr_write!(CSR_VSTVAL, trap.stval);
        csr_write!(CSR_VSEPC, sepc);
        self.regs.core.sepc = csr_read!(CSR_VSTVEC);
        self.regs.core.sstatus |= SSTATUS_SPP;
    }

    /// `vcpu_redirect()`: only traps from the guest (V=1) are redirected.
    fn redirect_if_guest(&mut self, t: &Trap) -> Result<Next, Errno> {
        if self.regs.core.hstatus & HSTATUS_SPV == 0 {
            return Err(Errno::EFAULT);
        }
        self.redirect(t.sepc, GuestTrap { scause: t.scause, stval: t.stval });
        Ok(Next::Guest)
    }
}

/// Completes the exit userspace handled (see [`Arch::vcpu_complete_exit`]).
///
/// [`Arch::vcpu_complete_exit`]: crate::kvm::arch::Arch::vcpu_complete_exit
pub(crate) fn complete_exit(v: &mut Vcpu, run: &VcpuRun<'_>) -> Result<(), Errno> {
    match run.exit_reason() {
        uapi::KVM_EXIT_MMIO => {
            let mut data = [0u8; 8];
            run.read(RUN_UNION + 8, &mut data);
            let mut w = [0u8; 1];
            run.read(RUN_UNION + 20, &mut w);
            match v.mmio.complete(w[0] != 0, &data) {
                Ok(Some(c)) => Vcpu::complete(&mut v.regs.core, c),
                Ok(None) => {}
                Err(e) => return Err(e.errno()),
            }
        }
        uapi::KVM_EXIT_RISCV_SBI => {
            let mut r = [0u8; 16];
            run.read(RUN_UNION + 64, &mut r);
            let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = r;
            let ret = [u64::from_ne_bytes([a, b, c, d, e, f, g, h]), u64::from_ne_bytes([i, j, k, l, m, n, o, p])];
            if let Some(s) = v.sbi.complete_forward(ret) {
                v.regs.core.x[10] = s.a0;
                v.regs.core.x[11] = s.a1;
                v.regs.core.sepc = v.regs.core.sepc.wrapping_add(s.sepc_advance);
            }
        }
        uapi::KVM_EXIT_RISCV_CSR => {
            let mut r = [0u8; 8];
            run.read(RUN_UNION + 24, &mut r);
            if let Some(c) = v.csr.complete(u64::from_ne_bytes(r)) {
                Vcpu::complete(&mut v.regs.core, c);
            }
        }
        _ => {}
    }
    Ok(())
}

/// The run loop ([`Arch::vcpu_run`]).
///
/// [`Arch::vcpu_run`]: crate::kvm::arch::Arch::vcpu_run
pub(crate) fn run(v: &mut Vcpu, run: &mut VcpuRun<'_>) -> Result<(), Errno> {
    let gv = run.vcpu();
    // `htimedelta`: the VM's guest-time delta (under the VM's arch lock,
    // taken after the vCPU mutex).
    let time_delta = super::vm_time_delta(&run.vm().arch().lock());
    {
        let mut p = PreemptGuard::new();
        // SAFETY: Preemption is off; the state is not loaded (put at the
        // end of every run).
        let l = unsafe { loaded_mut(v.loaded.ptr, &mut p) };
        l.csrs = v.regs.csrs;
        l.timer = v.regs.timer;
        l.fp = v.regs.fp;
        l.guest_fs = v.regs.core.sstatus & SSTATUS_FS;
        l.henvcfg = guest_henvcfg();
        l.htimedelta = time_delta;
        l.hedeleg = if v.guest_debug != 0 { HEDELEG_DEFAULT & !(1 << EXC_BREAKPOINT) } else { HEDELEG_DEFAULT };
    }
    pin_init::stack_pin_init!(let notifier = PreemptNotifier::new(Notify { loaded: v.loaded.ptr, vcpu: gv }));
    let mut p = PreemptGuard::new();
    let registration = notifier.as_mut().register();
    let cpu = p.cpu();
    // SAFETY: Preemption is off; the notifier cannot run before `p` drops.
    unsafe { load(loaded_mut(v.loaded.ptr, &mut p), cpu) };
    gv.set_cpu(Some(cpu));
    drop(p);
    gv.requests().make(REQ_STEAL_UPDATE);

    let result = if host_has_sstc() {
        run_loop(v, run, None)
    } else {
        // SAFETY: `gv` (the vCPU) outlives this stack-pinned timer; the only
        // handles of it live in `run_loop`'s `SoftTimer`, dropped (timer
        // cancelled) before `run_loop` returns, before the timer goes away.
        pin_init::stack_pin_init!(let timer = unsafe { KickTimer::new(gv) });
        run_loop(v, run, Some(timer.as_ref()))
    };

    let mut p = PreemptGuard::new();
    {
        let cpu = p.cpu();
        // SAFETY: Preemption is off.
        let l = unsafe { loaded_mut(v.loaded.ptr, &mut p) };
        if l.loaded {
            // SAFETY: Loaded on this hart (the notifier reloads on sched in).
            unsafe { put(l, cpu) };
        }
        v.regs.csrs = l.csrs;
        v.regs.timer = l.timer;
        v.regs.fp = l.fp;
        v.regs.core.sstatus = (v.regs.core.sstatus & !SSTATUS_FS) | l.guest_fs;
    }
    gv.set_cpu(None);
    drop(registration);
    drop(p);
    result
}

/// The body of [`run`], with the state loaded. `timer`: the hrtimer of
/// the guest timer on a host without Sstc.
fn run_loop(
    v: &mut Vcpu,
    run: &mut VcpuRun<'_>,
    timer: Option<Pin<&KickTimer<GenericVcpu>>>,
) -> Result<(), Errno> {
    let vm = run.vm();
    let gv = run.vcpu();
    let mut host = HostSave::new();
    let mut soft = timer.map(SoftTimer::new);
    loop {
        run.handle_work()?;
        run.handle_generic_requests()?;
        let reqs = gv.requests();
        let fence_i = reqs.check(REQ_FENCE_I);
        let vvma = reqs.check(REQ_HFENCE_VVMA_ALL);
        if reqs.check(REQ_VCPU_RESET) {
            reset_for_start(v, gv);
        }
        if reqs.check(REQ_STEAL_UPDATE) {
            record_steal_time(v, vm);
        }
        let shared = gv.arch_shared();
        let initial = v.initial_mp_state;
        if shared.mp_state(initial) != uapi::KVM_MP_STATE_RUNNABLE {
            // KVM_REQ_SLEEP: wait until another vCPU starts this one (or
            // a signal ends the run).
            gv.block(None, || shared.mp_state(initial) == uapi::KVM_MP_STATE_RUNNABLE);
            continue;
        }
        if let Some(t) = soft.as_mut() {
            t.update(v, gv);
        }

        let mut p = PreemptGuard::new();
        let cpu = p.cpu();
        let entry = stage2::prepare_entry(vm, v.last_exit_cpu != Some(cpu));
        // SAFETY: Preemption is off.
        let l = unsafe { loaded_mut(v.loaded.ptr, &mut p) };
        // While loaded, the hart's `hgatp` is `l.hgatp` (see `Loaded`).
        if l.hgatp != entry.hgatp {
            csr_write!(CSR_HGATP, entry.hgatp);
            l.hgatp = entry.hgatp;
        }
        let irqs = kernel::interrupt::local_interrupt_disable();
        gv.enter_guest_mode();
        // While loaded, the hart's `hvip` is `l.csrs.hvip` (read back after
        // every exit, see `put`): only a change needs the write.
        let hvip = gv.arch_shared().flush(l.csrs.hvip);
        if hvip != l.csrs.hvip {
            csr_write!(CSR_HVIP, hvip);
            l.csrs.hvip = hvip;
        }
        if entry.vmid_changed() || gv.requests().pending() || VcpuRun::work_pending() {
            gv.exit_guest_mode();
            drop(irqs);
            drop(p);
            continue;
        }
        if entry.fence {
            entry.fence_local();
        }
        if fence_i || vvma {
            // SAFETY: `fence.i` and `hfence.vvma` (all, for the VMID of the
            // `hgatp` just written) only drop cached state.
            unsafe { core::arch::asm!("fence.i", ".insn r 0x73, 0, 0x11, x0, x0, x0", options(nostack)) };
        }
        let core = &mut v.regs.core;
        core.sstatus = (core.sstatus & !SSTATUS_FS) | l.guest_fs;
        core.hstatus = (core.hstatus & HSTATUS_SPVP) | HSTATUS_SPV | HSTATUS_VTW | HSTATUS_VSXL_RV64;
        let task = kernel::task::Task::current_raw();
        // SAFETY: `guest_timing_enter_irqoff()`: only the current task
        // writes its own `flags`; `PF_VCPU` makes ticks count as guest time.
        unsafe { (*task).flags |= bindings::PF_VCPU };
        let host_scounteren = csr_swap!(CSR_SCOUNTEREN, l.csrs.scounteren);
        let host_senvcfg = csr_swap!(CSR_SENVCFG, l.csrs.senvcfg);
        let host_hstatus = csr_swap!(CSR_HSTATUS, core.hstatus);
        // SAFETY: Interrupts are off; `hstatus` has SPV, `hgatp` and the VS
        // CSRs are the guest's (loaded); everything is restored below.
        unsafe { switch::switch_to(&mut host, core) };
        core.hstatus = csr_swap!(CSR_HSTATUS, host_hstatus);
        l.csrs.senvcfg = csr_swap!(CSR_SENVCFG, host_senvcfg);
        l.csrs.scounteren = csr_swap!(CSR_SCOUNTEREN, host_scounteren);
        let trap = Trap {
            sepc: core.sepc,
            scause: csr_read!(CSR_SCAUSE),
            stval: csr_read!(CSR_STVAL),
            htval: csr_read!(CSR_HTVAL),
            htinst: csr_read!(CSR_HTINST),
        };
        l.guest_fs = core.sstatus & SSTATUS_FS;
        gv.exit_guest_mode();
        // `kvm_riscv_vcpu_sync_interrupts()`: the guest may have changed
        // VSSIP itself (writing `sip`).
        l.csrs.vsie = csr_read!(CSR_VSIE);
        let hvip = csr_read!(CSR_HVIP);
        if (l.csrs.hvip ^ hvip) & VSSIP != 0 {
            if hvip & VSSIP != 0 {
                gv.arch_shared().set_interrupt(VSSIP);
            } else {
                gv.arch_shared().unset_interrupt(VSSIP);
            }
        }
        l.csrs.hvip = hvip;
        v.last_exit_cpu = Some(cpu);
        // Take the pending host interrupts while still counting guest time.
        drop(irqs);
        {
            let _irqs = kernel::interrupt::local_interrupt_disable();
            // SAFETY: As above (`guest_timing_exit_irqoff()`).
            unsafe { (*task).flags &= !bindings::PF_VCPU };
        }
        drop(p);

        match exit(v, run, &trap)? {
            Next::Guest => {}
            Next::User => return Ok(()),
        }
    }
}

/// `kvm_riscv_vcpu_exit()`.
fn exit(v: &mut Vcpu, run: &VcpuRun<'_>, t: &Trap) -> Result<Next, Errno> {
    if t.scause & CAUSE_IRQ != 0 {
        return Ok(Next::Guest);
    }
    run.set_exit_reason(uapi::KVM_EXIT_UNKNOWN);
    let from_guest = v.regs.core.hstatus & HSTATUS_SPV != 0;
    let r = match t.scause {
        EXC_INST_ILLEGAL | EXC_LOAD_MISALIGNED | EXC_STORE_MISALIGNED | EXC_LOAD_ACCESS
        | EXC_STORE_ACCESS | EXC_INST_ACCESS => v.redirect_if_guest(t),
        insn::EXC_VIRTUAL_INST_FAULT if from_guest => virtual_insn(v, run, t),
        insn::EXC_INST_GUEST_PAGE_FAULT | insn::EXC_LOAD_GUEST_PAGE_FAULT | insn::EXC_STORE_GUEST_PAGE_FAULT
            if from_guest =>
        {
            gstage_page_fault(v, run, t)
        }
        EXC_SUPERVISOR_SYSCALL if from_guest => ecall(v, run),
        EXC_BREAKPOINT => {
            run.set_exit_reason(uapi::KVM_EXIT_DEBUG);
            Ok(Next::User)
        }
        _ => Err(Errno::EFAULT),
    };
    if let Err(e) = r {
        if e != Errno(4) {
            pr_err!(
                "vCPU exit error {}: sepc {:#x} sstatus {:#x} hstatus {:#x} scause {:#x} stval {:#x} htval {:#x} htinst {:#x}\n",
                -e.0,
                v.regs.core.sepc,
                v.regs.core.sstatus,
                v.regs.core.hstatus,
                t.scause,
                t.stval,
                t.htval,
                t.htinst
            );
        }
    }
    r
}

/// Reads the trapped instruction at `sepc` (`Err`: what to do instead).
fn fetch(v: &mut Vcpu, sepc: u64) -> Result<Insn, Next> {
    let hstatus = v.regs.core.hstatus;
    let r = insn::fetch_insn(sepc, |addr| {
        switch::unpriv_read(hstatus, true, addr)
            .map(|x| x as u16)
            .map_err(|t| GuestTrap { scause: t.scause, stval: t.stval })
    });
    match r {
        Ok(i) => Ok(i),
        Err(t) => match insn::fetch_fault(t) {
            FetchFault::Retry => Err(Next::Guest),
            FetchFault::Redirect(t) => {
                v.redirect(sepc, t);
                Err(Next::Guest)
            }
        },
    }
}

/// `kvm_riscv_vcpu_virtual_insn()`.
fn virtual_insn(v: &mut Vcpu, run: &VcpuRun<'_>, t: &Trap) -> Result<Next, Errno> {
    let core = v.regs.core;
    let mut vi = VirtualInsn::from_stval(t.stval, |r| Vcpu::gpr(&core, r));
    if vi == VirtualInsn::Fetch {
        let i = match fetch(v, t.sepc) {
            Ok(i) => i,
            Err(n) => return Ok(n),
        };
        vi = VirtualInsn::decode(i.bits(), |r| Vcpu::gpr(&core, r));
    }
    match vi {
        VirtualInsn::Fetch => Ok(Next::Guest),
        VirtualInsn::Illegal { insn } => {
            v.redirect(t.sepc, GuestTrap::illegal_insn(insn));
            Ok(Next::Guest)
        }
        VirtualInsn::Wfi => {
            v.regs.core.sepc = v.regs.core.sepc.wrapping_add(4);
            wfi(v, run.vcpu());
            Ok(Next::Guest)
        }
        VirtualInsn::WrsNto => {
            v.regs.core.sepc = v.regs.core.sepc.wrapping_add(4);
            Ok(Next::Guest)
        }
        VirtualInsn::Csr(csr) => {
            let e = csr.run_csr();
            let mut b = [0u8; 32];
            for (i, w) in [e.csr_num, e.new_value, e.write_mask, e.ret_value].iter().enumerate() {
                if let Some(d) = b.get_mut(i * 8..i * 8 + 8) {
                    d.copy_from_slice(&w.to_ne_bytes());
                }
            }
            run.write(RUN_UNION, &b);
            v.csr = csr.pending();
            match csr.emulate(v.has_zkr()) {
                CsrEmulation::InKernel(val) => {
                    if let Some(c) = v.csr.complete(val) {
                        Vcpu::complete(&mut v.regs.core, c);
                    }
                    Ok(Next::Guest)
                }
                CsrEmulation::ExitToUser => {
                    run.set_exit_reason(uapi::KVM_EXIT_RISCV_CSR);
                    Ok(Next::User)
                }
                CsrEmulation::Illegal => {
                    v.redirect(t.sepc, GuestTrap::illegal_insn(csr.insn));
                    Ok(Next::Guest)
                }
            }
        }
    }
}

/// The guest time now (`time + htimedelta`).
fn guest_time(htimedelta: u64) -> u64 {
    csr_read!(CSR_TIME).wrapping_add(htimedelta)
}

extern "C" {
    /// The timebase frequency (`arch/riscv/kernel/time.c`,
    /// `EXPORT_SYMBOL_GPL`), declared in `<asm/delay.h>`, which bindgen
    /// does not see.
    static riscv_timebase: kernel::ffi::c_ulong;
}

/// `kvm_riscv_vcpu_wfi()`: halts until an enabled interrupt is pending for
/// the guest, its timer fires, or a kick or signal comes.
fn wfi(v: &mut Vcpu, gv: &GenericVcpu) {
    let sstc = host_has_sstc();
    let (vsie, hvip, next, delta) = {
        let mut p = PreemptGuard::new();
        // SAFETY: Preemption is off.
        let l = unsafe { loaded_mut(v.loaded.ptr, &mut p) };
        let next = if sstc && l.loaded {
            csr_read!(CSR_VSTIMECMP)
        } else if sstc || l.timer.started {
            l.timer.next_cycles
        } else {
            // Without Sstc a timer that is off (or has fired) has no
            // deadline; a fired one is `VSTIP`, pending below.
            u64::MAX
        };
        (l.csrs.vsie, l.csrs.hvip, next, l.htimedelta)
    };
    let shared = gv.arch_shared();
    // `kvm_riscv_vcpu_has_interrupts()`: the timer is `hvip.VSTIP` without
    // Sstc, `vstimecmp` (the deadline) with it.
    let irqs = if sstc { VSSIP | VSEIP } else { VSSIP | VSTIP | VSEIP };
    let wake = || {
        let pending = shared.flush_peek(hvip);
        pending & (vsie << 1) & irqs != 0 || guest_time(delta) >= next
    };
    if next == u64::MAX {
        // No deadline (the timer is off): only an interrupt or kick wakes.
        gv.block(None, wake);
        return;
    }
    // `kvm_riscv_vcpu_timer_blocking()`: an hrtimer at the deadline kicks
    // the vCPU; `kvm_riscv_vcpu_timer_unblocking()`: it is cancelled when
    // `start_scoped()` returns, before `wfi()` does (the timer lives on
    // this stack and points at `gv`, which outlives it).
    let ns = cycles_to_ns(next.saturating_sub(guest_time(delta)), timebase_hz());
    // SAFETY: `gv` is borrowed for the whole function; the stack-pinned
    // timer is dropped at its end, and `start_scoped()` cancels the timer
    // (waiting for a running callback) before it returns.
    pin_init::stack_pin_init!(let timer = unsafe { KickTimer::new(gv) });
    timer.as_ref().start_scoped(Delta::from_nanos(ns), || gv.block(None, wake));
}

/// The timebase frequency in Hz (at least 1).
fn timebase_hz() -> u64 {
    // SAFETY: Set at boot, read-only afterwards.
    (unsafe { core::ptr::addr_of!(riscv_timebase).read() } as u64).max(1)
}

/// `kvm_riscv_delta_cycles2ns()`: `cycles` timebase ticks at `hz` ticks per
/// second in nanoseconds, rounded up so that the guest's time has reached
/// its compare value when the timer fires, saturating at `i64::MAX` (~292
/// years): the compare value is the guest's, any `u64` must convert.
///
/// In `u64` (the kernel has no 128-bit division): whole seconds, then the
/// remainder; above ~18 GHz the remainder loses its low bits.
pub(crate) fn cycles_to_ns(cycles: u64, hz: u64) -> i64 {
    const NSEC: u64 = 1_000_000_000;
    let hz = hz.max(1);
    let secs = cycles / hz;
    let (mut rem, mut div) = (cycles % hz, hz);
    // `rem < div`, so `rem * NSEC` fits once `div * NSEC` does.
    while div > u64::MAX / NSEC {
        div >>= 1;
        rem >>= 1;
    }
    let frac = rem.saturating_mul(NSEC).div_ceil(div);
    secs.checked_mul(NSEC)
        .and_then(|s| s.checked_add(frac))
        .and_then(|ns| i64::try_from(ns).ok())
        .unwrap_or(i64::MAX)
}

/// An hrtimer that kicks a vCPU at its guest timer's deadline: out of WFI
/// (upstream's `kvm_vcpu_timer.hrt` with Sstc, on the halting thread's
/// stack for the halt only) or, without Sstc, out of the guest so that the
/// next entry delivers the timer interrupt ([`SoftTimer`], on the stack of
/// `KVM_RUN`).
///
/// Invariant: `vcpu` points to a vCPU that outlives this timer and every
/// run of its callback (see [`KickTimer::new`]).
#[pin_data]
struct KickTimer<K: Kick> {
    #[pin]
    timer: HrTimer<Self>,
    /// The vCPU to kick.
    vcpu: NonNull<K>,
    /// Set by the callback: the timer has expired since it was started.
    fired: AtomicBool,
}

/// What the timer wakes: the vCPU ([`GenericVcpu::kick`]); KUnit uses its
/// own.
trait Kick: Sync + 'static {
    /// Wakes the vCPU (out of a halt, or out of the guest). Called from
    /// hard interrupt context.
    fn kick(&self);
}

impl Kick for GenericVcpu {
    fn kick(&self) {
        GenericVcpu::kick(self);
    }
}

// SAFETY: `vcpu` is only used as a shared reference to a `GenericVcpu`
// (to kick it), and the vCPU is `Sync`: any thread may kick it.
unsafe impl<K: Kick> Send for KickTimer<K> {}
// SAFETY: As above: shared access from any thread only kicks the vCPU or
// touches the atomic `fired`.
unsafe impl<K: Kick> Sync for KickTimer<K> {}

impl<K: Kick> KickTimer<K> {
    /// # Safety
    ///
    /// `vcpu` must outlive the timer, and the timer must be cancelled
    /// before it goes away (a scoped start on a stack-pinned timer does
    /// both when the timer is dropped before `vcpu`'s borrow ends; so does
    /// dropping every handle of [`UnsafeHrTimerPointer::start`] first).
    unsafe fn new(vcpu: &K) -> impl PinInit<Self> {
        let vcpu = NonNull::from(vcpu);
        pin_init!(Self { timer <- HrTimer::new(), vcpu, fired: AtomicBool::new(false) })
    }
}

impl<K: Kick> HrTimerCallback for KickTimer<K> {
    type Pointer<'a> = Pin<&'a Self>;

    /// `kvm_riscv_vcpu_hrtimer_expired()`: kick the vCPU, whose wake-up
    /// condition (or next entry) sees the guest time past the compare
    /// value.
    fn run(this: Pin<&Self>, _ctx: HrTimerCallbackContext<'_, Self>) -> HrTimerRestart {
        this.fired.store(true, Ordering::Release);
        // SAFETY: The vCPU outlives the timer and its callback (type
        // invariant).
        let vcpu = unsafe { this.vcpu.as_ref() };
        vcpu.kick();
        HrTimerRestart::NoRestart
    }
}

/// Outside `KVM_RUN`, without Sstc: a timer event that fell due since the
/// last run is delivered now (`VSTIP` pending, the timer off), as
/// upstream's hrtimer would have done meanwhile, so that ONE_REG sees what
/// upstream shows (`sip`, the timer `state`). `now`: the host's `time`.
pub(crate) fn timer_catch_up(regs: &mut super::regs::VcpuRegs, shared: &Shared, time_delta: u64, now: u64) {
    if !host_has_sstc() {
        deliver_if_due(&mut regs.timer, shared, now.wrapping_add(time_delta));
    }
}

/// Without Sstc: if the timer is on and due at guest time `guest_now`, it
/// goes off (upstream's `next_set = false`) and `VSTIP` becomes pending
/// (`kvm_riscv_vcpu_hrtimer_expired()`). Returns whether it was due.
fn deliver_if_due(t: &mut GuestTimer, shared: &Shared, guest_now: u64) -> bool {
    if !t.started || guest_now < t.next_cycles {
        return false;
    }
    t.started = false;
    shared.set_interrupt(VSTIP);
    true
}

/// The guest timer of a host without Sstc, for one `KVM_RUN` (upstream's
/// `kvm_riscv_vcpu_update_hrtimer()` and `kvm_riscv_vcpu_hrtimer_expired()`
/// without Sstc).
///
/// The deadline is `Loaded::timer` (`next_cycles`, on while `started`),
/// set by SBI `set_timer` and the timer ONE_REGs. [`SoftTimer::update`]
/// runs before every entry: a deadline that has passed raises `VSTIP` and
/// turns the timer off (until the guest sets a new one, which withdraws
/// `VSTIP`); a future one has the hrtimer armed for it, which kicks the
/// vCPU when it is due. A deadline is armed once: re-arming only when it
/// changes or when the hrtimer fired early (it cannot, as the wait is
/// rounded up, but a missed event would hang the guest).
struct SoftTimer<'a> {
    timer: Pin<&'a KickTimer<GenericVcpu>>,
    /// The deadline the hrtimer is armed for, and its handle (dropping it
    /// cancels the hrtimer and waits for a running callback).
    armed: Option<(u64, PinHrTimerHandle<'a, KickTimer<GenericVcpu>>)>,
}

impl<'a> SoftTimer<'a> {
    fn new(timer: Pin<&'a KickTimer<GenericVcpu>>) -> SoftTimer<'a> {
        SoftTimer { timer, armed: None }
    }

    /// Delivers or arms the guest's next timer event (see the type).
    /// Preemptible: cancelling may wait for the callback.
    fn update(&mut self, v: &mut Vcpu, gv: &GenericVcpu) {
        let (started, next, delta) = {
            let mut p = PreemptGuard::new();
            // SAFETY: Preemption is off.
            let l = unsafe { loaded_mut(v.loaded.ptr, &mut p) };
            (l.timer.started, l.timer.next_cycles, l.htimedelta)
        };
        if !started {
            self.armed = None;
            return;
        }
        // Armed for this deadline and not fired: not due yet, or due an
        // instant ago with the hrtimer about to kick (which raises it at
        // the next entry, as upstream's callback does). No `time` read,
        // which under TCG is a helper call, on this per-entry path.
        if let Some((at, _)) = &self.armed {
            if *at == next && !self.timer.fired.load(Ordering::Acquire) {
                return;
            }
        }
        let now = guest_time(delta);
        if now >= next {
            self.armed = None;
            let mut p = PreemptGuard::new();
            // SAFETY: Preemption is off.
            let l = unsafe { loaded_mut(v.loaded.ptr, &mut p) };
            deliver_if_due(&mut l.timer, gv.arch_shared(), now);
            return;
        }
        // Cancel before re-arming, so that `fired` belongs to the new one.
        self.armed = None;
        self.timer.fired.store(false, Ordering::Relaxed);
        let ns = cycles_to_ns(next - now, timebase_hz());
        // SAFETY: The handle is kept in `self.armed` and dropped (which
        // cancels the hrtimer) before `self`, whose borrow of the timer
        // ends before the timer does (`KickTimer::new`'s contract).
        let handle = unsafe { UnsafeHrTimerPointer::start(self.timer, Delta::from_nanos(ns)) };
        self.armed = Some((next, handle));
    }
}

kernel::impl_has_hr_timer! {
    impl{K: Kick} HasHrTimer<KickTimer<K>> for KickTimer<K> {
        mode: RelativeMode<Monotonic>, field: self.timer
    }
}

/// `gstage_page_fault()`.
fn gstage_page_fault(v: &mut Vcpu, run: &VcpuRun<'_>, t: &Trap) -> Result<Next, Errno> {
    let gpa = insn::gstage_fault_addr(t.htval, t.stval);
    let write = t.scause == insn::EXC_STORE_GUEST_PAGE_FAULT;
    let exec = t.scause == insn::EXC_INST_GUEST_PAGE_FAULT;
    match stage2::gstage_fault(run.vm(), gpa, write, exec)? {
        GStageFault::Mapped => return Ok(Next::Guest),
        GStageFault::Mmio => {}
    }
    let kind = insn::gstage_fault(t.scause, t.stval, None).ok_or(insn::EOPNOTSUPP)?;
    let load = match kind {
        insn::GstageFault::MmioLoad => true,
        insn::GstageFault::MmioStore => false,
        insn::GstageFault::Redirect(trap) => {
            v.redirect(t.sepc, trap);
            return Ok(Next::Guest);
        }
        insn::GstageFault::Map { .. } => return Ok(Next::Guest),
    };
    let i = match Insn::from_htinst(t.htinst) {
        Some(i) => i,
        None => match fetch(v, t.sepc) {
            Ok(i) => i,
            Err(n) => return Ok(n),
        },
    };
    let core = v.regs.core;
    let ex = if load {
        insn::mmio_load(i, gpa)
    } else {
        insn::mmio_store(i, gpa, |r| Vcpu::gpr(&core, r))
    }
    .map_err(|e| e.errno())?;
    v.mmio = ex.decode;
    let a = ex.access;
    if a.is_write && run.vm().mmio_write(a.phys_addr, a.data()) {
        // An ioeventfd took it (`mmio_exit_kernel`): complete at once.
        let mut data = [0u8; 8];
        if let Some(d) = data.get_mut(..a.data().len()) {
            d.copy_from_slice(a.data());
        }
        if let Ok(Some(c)) = v.mmio.complete(true, &data) {
            Vcpu::complete(&mut v.regs.core, c);
        }
        return Ok(Next::Guest);
    }
    run.write(RUN_UNION, &a.phys_addr.to_ne_bytes());
    run.write(RUN_UNION + 8, a.data());
    run.write(RUN_UNION + 16, &a.len.to_ne_bytes());
    run.write(RUN_UNION + 20, &[u8::from(a.is_write)]);
    run.set_exit_reason(uapi::KVM_EXIT_MMIO);
    Ok(Next::User)
}

/// An `ecall` from the guest (`kvm_riscv_vcpu_sbi_ecall()`).
fn ecall(v: &mut Vcpu, run: &VcpuRun<'_>) -> Result<Next, Errno> {
    let core = &v.regs.core;
    let mut a = [0u64; 8];
    a.copy_from_slice(&core.x[10..18]);
    let regs = EcallRegs { a, sstatus: core.sstatus };
    let mut env = Env {
        ids: v.machine_ids(),
        v_loaded: v.loaded.ptr,
        core: &mut v.regs.core,
        initial: v.initial_mp_state,
        vm: run.vm(),
        me: run.vcpu(),
        halt: false,
    };
    let r = v.sbi.ecall(&regs, &mut env);
    if env.halt {
        // HSM retentive suspend: `kvm_riscv_vcpu_wfi()`, after the call.
        wfi(v, run.vcpu());
    }
    let core = &mut v.regs.core;
    match r {
        SbiExit::Continue { error, value } => {
            core.x[10] = error as u64;
            if let Some(val) = value {
                core.x[11] = val;
            }
            core.sepc = core.sepc.wrapping_add(4);
            Ok(Next::Guest)
        }
        SbiExit::Forward(f) => {
            let mut b = [0u8; 80];
            let words = [f.extension_id, f.function_id, f.args[0], f.args[1], f.args[2], f.args[3], f.args[4], f.args[5], f.ret[0], f.ret[1]];
            for (i, w) in words.iter().enumerate() {
                if let Some(d) = b.get_mut(i * 8..i * 8 + 8) {
                    d.copy_from_slice(&w.to_ne_bytes());
                }
            }
            run.write(RUN_UNION, &b);
            run.set_exit_reason(uapi::KVM_EXIT_RISCV_SBI);
            Ok(Next::User)
        }
        SbiExit::SystemEvent { ty, reason } => {
            // Every vCPU is powered off (`kvm_riscv_vcpu_sbi_system_reset()`).
            for_each_vcpu(run.vm(), |_, t| {
                t.arch_shared().set_mp_state(uapi::KVM_MP_STATE_STOPPED);
                t.kick();
            });
            let mut b = [0u8; 8 + 16 * 8];
            b[0..4].copy_from_slice(&ty.to_ne_bytes());
            b[4..8].copy_from_slice(&1u32.to_ne_bytes());
            b[8..16].copy_from_slice(&reason.to_ne_bytes());
            run.write(RUN_UNION, &b);
            run.set_exit_reason(uapi::KVM_EXIT_SYSTEM_EVENT);
            Ok(Next::User)
        }
        SbiExit::Redirect(t) => {
            let sepc = v.regs.core.sepc;
            v.redirect(sepc, t);
            Ok(Next::Guest)
        }
        SbiExit::Fail(e) => Err(e),
    }
}

/// What the SBI dispatch needs of this vCPU and its VM.
struct Env<'a> {
    /// The vCPU's machine ids.
    ids: MachineIds,
    v_loaded: *mut Loaded,
    core: &'a mut GuestCore,
    /// This vCPU's initial MP state.
    initial: u32,
    /// The call asked to halt until an interrupt (HSM suspend).
    halt: bool,
    vm: &'a Vm,
    me: &'a GenericVcpu,
}

impl Env<'_> {
    /// Runs `f` on the loaded state with preemption off.
    fn with_loaded<R>(&self, f: impl FnOnce(&mut Loaded) -> R) -> R {
        let _p = PreemptGuard::new();
        // SAFETY: Preemption is off (`LoadedBox` invariant); no other
        // reference to the state exists during `f`.
        f(unsafe { &mut *self.v_loaded })
    }

    /// The generic vCPU at `idx`.
    fn vcpu_at(&self, idx: usize) -> Option<Arc<GenericVcpu>> {
        self.vm.vcpu_at(idx)
    }
}

impl SbiEnv for Env<'_> {
    fn machine_ids(&self) -> MachineIds {
        self.ids
    }

    fn set_timer(&mut self, next_cycle: u64) -> Result<(), Errno> {
        if !host_has_sstc() {
            // The next event withdraws the last one's interrupt; the run
            // loop's `SoftTimer` arms or raises the new one.
            self.me.arch_shared().unset_interrupt(VSTIP);
        }
        self.with_loaded(|l| {
            l.timer.next_cycles = next_cycle;
            l.timer.started = true;
            if host_has_sstc() && l.loaded {
                csr_write!(CSR_VSTIMECMP, next_cycle);
            }
        });
        Ok(())
    }

    fn clear_ipi(&mut self) -> Result<(), Errno> {
        self.me.arch_shared().unset_interrupt(VSSIP);
        Ok(())
    }

    fn vcpu_id_at(&self, idx: usize) -> Option<u32> {
        self.vcpu_at(idx).map(|v| v.id())
    }

    fn send_ipi(&mut self, idx: usize) -> Result<(), Errno> {
        if let Some(t) = self.vcpu_at(idx) {
            t.arch_shared().set_interrupt(VSSIP);
            t.kick();
        }
        Ok(())
    }

    fn remote_fence(&mut self, harts: HartMask, fence: Fence) {
        let req = match fence {
            Fence::FenceI => REQ_FENCE_I,
            _ => REQ_HFENCE_VVMA_ALL,
        };
        for_each_vcpu(self.vm, |_, t| {
            if harts.contains(t.id()) {
                t.request(req);
            }
        });
    }

    fn hart_start(&mut self, idx: usize, start_addr: u64, opaque: u64) -> bool {
        let Some(t) = self.vcpu_at(idx) else { return false };
        let shared = t.arch_shared();
        if !shared.try_start(initial_mp_state(idx), start_addr, opaque) {
            return false;
        }
        t.requests().make(REQ_VCPU_RESET);
        shared.started();
        t.kick();
        true
    }

    fn hart_stop(&mut self) -> bool {
        let shared = self.me.arch_shared();
        if shared.mp_state(self.initial) == uapi::KVM_MP_STATE_STOPPED {
            return false;
        }
        shared.set_mp_state(uapi::KVM_MP_STATE_STOPPED);
        true
    }

    /// `kvm_sbi_hsm_vcpu_get_status()`: stopped, else suspended while the
    /// vCPU sleeps (WFI or a retentive suspend), else started.
    fn hart_state(&self, idx: usize) -> HartState {
        match self.vcpu_at(idx) {
            Some(t) if t.arch_shared().mp_state(initial_mp_state(idx)) == uapi::KVM_MP_STATE_STOPPED => {
                HartState::Stopped
            }
            Some(t) if t.is_blocking() => HartState::Suspended,
            _ => HartState::Started,
        }
    }

    fn wfi(&mut self) {
        // Done by `ecall()` once the dispatch returns (it needs the vCPU,
        // which the dispatch borrows).
        self.halt = true;
    }

    fn others_stopped(&self) -> bool {
        let mut running = false;
        for_each_vcpu(self.vm, |idx, t| {
            running |= !core::ptr::eq(t, self.me)
                && t.arch_shared().mp_state(initial_mp_state(idx)) != uapi::KVM_MP_STATE_STOPPED;
        });
        !running
    }

    fn gpa_has_memslot(&self, gpa: u64) -> bool {
        self.vm.mmu().gfn_to_hva(gpa >> 12, false).is_some()
    }

    fn request_reset(&mut self, _pc: u64, _a1: u64) {}

    fn zero_guest(&mut self, gpa: u64, len: usize) -> bool {
        let Some(hva) = self.vm.mmu().gfn_to_hva(gpa >> 12, true) else { return false };
        let Some(addr) = hva.checked_add(gpa & 0xfff).and_then(|a| usize::try_from(a).ok()) else { return false };
        let zeros = [0u8; 64];
        let Some(z) = zeros.get(..len) else { return false };
        kernel::uaccess::UserSlice::new(kernel::uaccess::UserPtr::from_addr(addr), len).writer().write_slice(z).is_ok()
    }

    fn steal_clock(&self) -> StealClock {
        let task = kernel::task::Task::current_raw();
        // SAFETY: The current task's own scheduler statistics; a racy read
        // of a `u64` the scheduler updates is what upstream does too.
        let run_delay = unsafe { core::ptr::addr_of!((*task).sched_info.run_delay).read_volatile() };
        StealClock { run_delay, extra_ns: 0 }
    }

    fn read_guest_ulong(&mut self, gva: u64) -> Result<u64, GuestTrap> {
        switch::unpriv_read(self.core.hstatus, false, gva).map_err(|t| GuestTrap { scause: t.scause, stval: t.stval })
    }
}

impl Shared {
    /// The pending `hvip` bits if the changed ones were flushed now,
    /// without consuming the change.
    fn flush_peek(&self, hvip: u64) -> u64 {
        let mask = self.irqs_pending_mask.load(Ordering::Acquire);
        let val = self.irqs_pending.load(Ordering::Acquire) & mask;
        (hvip & !mask) | val
    }
}

/// `kvm_riscv_reset_vcpu(vcpu, true)` after an HSM `HART_START`: the guest
/// registers and VS CSRs to their reset values, `pc` and `a1` from the
/// start call, `a0` the hart id; the timer stopped, no interrupt pending,
/// the SBI state reset.
fn reset_for_start(v: &mut Vcpu, gv: &GenericVcpu) {
    let shared = gv.arch_shared();
    let fs = v.regs.core.sstatus & SSTATUS_FS;
    v.regs.core = GuestCore::reset();
    v.regs.core.sepc = shared.reset_pc.load(Ordering::Relaxed);
    v.regs.core.x[10] = u64::from(gv.id());
    v.regs.core.x[11] = shared.reset_a1.load(Ordering::Relaxed);
    shared.irqs_pending.store(0, Ordering::Release);
    shared.irqs_pending_mask.store(0, Ordering::Release);
    v.sbi.reset();
    v.mmio = insn::MmioDecode::default();
    v.csr = insn::CsrDecode::default();
    let mut p = PreemptGuard::new();
    let cpu = p.cpu();
    // SAFETY: Preemption is off.
    let l = unsafe { loaded_mut(v.loaded.ptr, &mut p) };
    let was_loaded = l.loaded;
    if was_loaded {
        // SAFETY: Loaded on this hart.
        unsafe { put(l, cpu) };
    }
    l.csrs = GuestCsrs::default();
    l.timer = GuestTimer { next_cycles: u64::MAX, started: false };
    l.fp = GuestFp::default();
    // FP as the vCPU's ISA gives it (kept from creation: Initial or Off).
    l.guest_fs = if fs == 0 { 0 } else { super::regs::SSTATUS_FS_INITIAL };
    v.regs.core.sstatus = (v.regs.core.sstatus & !SSTATUS_FS) | l.guest_fs;
    if was_loaded {
        // SAFETY: As above, not loaded now.
        unsafe { load(l, cpu) };
    }
}

/// The user address of guest physical `gpa`, if a (writable, if `write`)
/// memslot backs it.
fn guest_uaddr(vm: &Vm, gpa: u64, write: bool) -> Option<usize> {
    let hva = vm.mmu().gfn_to_hva(gpa >> 12, write)?;
    usize::try_from(hva.checked_add(gpa & 0xfff)?).ok()
}

/// `kvm_riscv_vcpu_record_steal_time()`: updates the guest's
/// `sbi_sta_struct` (sequence, steal, sequence) through the VMM's mapping
/// of guest memory (`current->mm`), as `kvm_vcpu_write_guest()` does.
fn record_steal_time(v: &mut Vcpu, vm: &Vm) {
    use super::sbi::{STA_SEQUENCE, STA_STEAL};
    use kernel::uaccess::{UserPtr, UserSlice};
    let Some(gpa) = v.sbi.sta().shmem() else { return };
    // The structure is 64-byte aligned: it does not cross a page.
    let Some(base) = guest_uaddr(vm, gpa, true) else {
        v.sbi.sta_mut().invalidate();
        return;
    };
    let read = |off: usize, buf: &mut [u8]| -> bool {
        let Some(a) = base.checked_add(off) else { return false };
        UserSlice::new(UserPtr::from_addr(a), buf.len()).reader().read_slice(buf).is_ok()
    };
    let write = |off: usize, buf: &[u8]| -> bool {
        let Some(a) = base.checked_add(off) else { return false };
        UserSlice::new(UserPtr::from_addr(a), buf.len()).writer().write_slice(buf).is_ok()
    };
    let mut seq = [0u8; 4];
    let mut steal = [0u8; 8];
    if !read(STA_SEQUENCE, &mut seq) || !read(STA_STEAL, &mut steal) {
        return;
    }
    let task = kernel::task::Task::current_raw();
    // SAFETY: The current task's own scheduler statistics (a racy `u64`
    // read, as upstream's).
    let run_delay = unsafe { core::ptr::addr_of!((*task).sched_info.run_delay).read_volatile() };
    let u = v.sbi.sta_mut().record(
        u32::from_le_bytes(seq),
        u64::from_le_bytes(steal),
        StealClock { run_delay, extra_ns: 0 },
    );
    // Ordered: an odd sequence while `steal` changes.
    if !write(STA_SEQUENCE, &u.seq_begin.to_le_bytes()) {
        return;
    }
    core::sync::atomic::fence(Ordering::Release);
    let _ = write(STA_STEAL, &u.steal.to_le_bytes());
    core::sync::atomic::fence(Ordering::Release);
    let _ = write(STA_SEQUENCE, &u.seq_end.to_le_bytes());
}

/// `KVM_INTERRUPT` on vCPU `gv` (`kvm_arch_vcpu_unlocked_ioctl()`).
pub(crate) fn kvm_interrupt(gv: &GenericVcpu, arg: usize) -> Result<isize, Errno> {
    let irq: u32 = kernel::uaccess::UserSlice::new(kernel::uaccess::UserPtr::from_addr(arg), 4)
        .reader()
        .read::<u32>()
        .map_err(|_| Errno::EFAULT)?;
    if irq == uapi::KVM_INTERRUPT_SET as u32 {
        gv.arch_shared().set_interrupt(VSEIP);
        gv.kick();
    } else {
        gv.arch_shared().unset_interrupt(VSEIP);
    }
    Ok(0)
}


#[kunit_tests(kvm_rs_riscv_run)]
mod tests {
    use super::*;

    /// `current_thread_info()->preempt_count`.
    fn preempt_count() -> i32 {
        let task = kernel::task::Task::current_raw();
        // SAFETY: The current task's own count, read by itself.
        unsafe { core::ptr::addr_of!((*task).thread_info.preempt_count).read_volatile() }
    }

    #[test]
    fn preempt_guard_nests_and_restores() {
        let before = preempt_count();
        {
            let _a = PreemptGuard::new();
            assert_eq!(preempt_count(), before + 1);
            {
                let _b = PreemptGuard::new();
                assert_eq!(preempt_count(), before + 2);
            }
            assert_eq!(preempt_count(), before + 1);
        }
        assert_eq!(preempt_count(), before);
    }

    #[test]
    fn unpriv_read_returns_guest_memory_or_the_trap() -> Result {
        // With `hgatp` and `vsatp` Bare (no VM is loaded on this hart while
        // KUnit runs), a guest physical address is a host physical one:
        // HLV.D reads a kmalloc'ed word through its physical address.
        let b = KBox::new(0x1122_3344_5566_7788u64, GFP_KERNEL)?;
        // SAFETY: `kernel_map` is set up at boot and only read afterwards.
        let off = unsafe { core::ptr::addr_of!(bindings::kernel_map.va_pa_offset).read() } as u64;
        let pa = (core::ptr::from_ref::<u64>(&*b) as u64).wrapping_sub(off);
        {
            let _irqs = kernel::interrupt::local_interrupt_disable();
            csr_write!(CSR_HGATP, 0);
            csr_write!(CSR_VSATP, 0);
            // No vCPU's state is in this hart any more.
            forget_this_cpu();
        }
        let hstatus = HSTATUS_SPVP | HSTATUS_VSXL_RV64;
        assert_eq!(switch::unpriv_read(hstatus, false, pa).map_err(|t| t.scause), Ok(0x1122_3344_5566_7788));
        // The low halfword as an instruction fetch (HLVX.HU).
        assert_eq!(switch::unpriv_read(hstatus, true, pa).map_err(|t| t.scause), Ok(0x7788));
        // Nothing there: an access fault is caught, not taken by the host.
        let t = switch::unpriv_read(hstatus, false, 1 << 55);
        assert!(matches!(t, Err(t) if t.scause == EXC_LOAD_ACCESS || t.scause == insn::EXC_LOAD_GUEST_PAGE_FAULT));
        Ok(())
    }

    #[test]
    fn kept_copy_needs_owner_token_and_cpu() {
        let h = HartCopy {
            cpu: 1,
            csrs: GuestCsrs::default(),
            hedeleg: 0,
            henvcfg: 0,
            htimedelta: 0,
            vstimecmp: 0,
            hgatp: 0,
        };
        assert_eq!(kept_copy(5, 5, Some(h), 1), Some(h));
        // Another vCPU loaded there since.
        assert_eq!(kept_copy(6, 5, Some(h), 1), None);
        // The copy is of another hart (the vCPU migrated).
        assert_eq!(kept_copy(5, 5, Some(h), 0), None);
        // Never put, or a forgotten hart.
        assert_eq!(kept_copy(5, 5, None, 1), None);
        assert_eq!(kept_copy(0, 0, Some(h), 1), None);
    }

    /// `vsscratch`, `vstvec`, `hedeleg` and `hgatp` of this hart.
    fn hart_csrs() -> (u64, u64, u64, u64) {
        (csr_read!(CSR_VSSCRATCH), csr_read!(CSR_VSTVEC), csr_read!(CSR_HEDELEG), csr_read!(CSR_HGATP))
    }

    #[test]
    fn load_rewrites_what_the_hart_may_not_hold() -> Result {
        let mut a = KBox::new(Loaded::new(), GFP_KERNEL)?;
        let mut b = KBox::new(Loaded::new(), GFP_KERNEL)?;
        a.csrs.vsscratch = 0x1111;
        a.csrs.vstvec = 0x1000;
        b.csrs.vsscratch = 0x2222;
        b.csrs.vstvec = 0x2000;
        let debug = HEDELEG_DEFAULT & !(1 << EXC_BREAKPOINT);
        b.hedeleg = debug;
        let p = PreemptGuard::new();
        let cpu = p.cpu();
        let ld = |l: &mut Loaded| {
            // SAFETY: Preemption is off and `cpu` is this CPU; the states
            // are this test's own, loaded and put in turn. No guest runs
            // while KUnit does, so the hart's guest CSRs are free to borrow
            // (the hart is forgotten at the end).
            unsafe { load(l, cpu) }
        };
        let pt = |l: &mut Loaded| {
            // SAFETY: As for `ld`, with `l` loaded on this hart.
            unsafe { put(l, cpu) }
        };
        ld(&mut a);
        assert_eq!(hart_csrs(), (0x1111, 0x1000, HEDELEG_DEFAULT, 0));
        pt(&mut a);
        let owner = || HART_OWNER.get(cpu as usize).map_or(0, |o| o.load(Ordering::Relaxed));
        assert!(kept_copy(owner(), a.token, a.hart, cpu).is_some());
        // Changed while put (a ONE_REG write, an HSM reset, guest
        // debugging, a new VMID): rewritten although the hart is kept.
        a.csrs.vsscratch = 0x1112;
        a.hedeleg = debug;
        a.hgatp = 0x8000_0000_0000_0000;
        ld(&mut a);
        assert_eq!(hart_csrs(), (0x1112, 0x1000, debug, 0x8000_0000_0000_0000));
        // The guest's own change is read back by `put`.
        csr_write!(CSR_VSSCRATCH, 0x1113);
        pt(&mut a);
        assert_eq!(a.csrs.vsscratch, 0x1113);
        a.hedeleg = HEDELEG_DEFAULT;
        a.hgatp = 0;
        // Another vCPU (of any VM) on this hart: everything of `a` is
        // written again afterwards, even what `a` did not change.
        ld(&mut b);
        assert_eq!(hart_csrs(), (0x2222, 0x2000, debug, 0));
        pt(&mut b);
        assert!(kept_copy(owner(), a.token, a.hart, cpu).is_none());
        ld(&mut a);
        assert_eq!(hart_csrs(), (0x1113, 0x1000, HEDELEG_DEFAULT, 0));
        pt(&mut a);
        // Someone else wrote the hart and said so (CPU hotplug).
        csr_write!(CSR_VSTVEC, 0xdead_0000);
        forget_this_cpu();
        ld(&mut a);
        assert_eq!(hart_csrs(), (0x1113, 0x1000, HEDELEG_DEFAULT, 0));
        pt(&mut a);
        forget_this_cpu();
        drop(p);
        Ok(())
    }

    #[test]
    fn shared_mp_state_and_hart_start() {
        let s = Shared::default();
        assert_eq!(s.mp_state(initial_mp_state(1)), uapi::KVM_MP_STATE_STOPPED);
        assert_eq!(s.mp_state(initial_mp_state(0)), uapi::KVM_MP_STATE_RUNNABLE);
        assert!(s.try_start(initial_mp_state(1), 0x8020_0000, 7));
        assert_eq!(s.mp_state(initial_mp_state(1)), uapi::KVM_MP_STATE_STOPPED);
        // A second start while the first is in progress fails.
        assert!(!s.try_start(initial_mp_state(1), 0, 0));
        s.started();
        assert_eq!(s.mp_state(initial_mp_state(1)), uapi::KVM_MP_STATE_RUNNABLE);
        assert!(!s.try_start(initial_mp_state(1), 0, 0));
        assert_eq!(s.reset_pc.load(Ordering::Relaxed), 0x8020_0000);
        s.set_interrupt(VSEIP);
        assert_eq!(s.flush(VSSIP), VSSIP | VSEIP);
        assert_eq!(s.flush(VSSIP), VSSIP);
        s.unset_interrupt(VSSIP);
        assert_eq!(s.flush_peek(VSSIP | VSEIP), VSEIP);
    }

    #[test]
    fn cycles_to_ns_is_exact_rounded_up_and_saturating() {
        // QEMU virt's 10 MHz timebase: 100 ns per tick.
        assert_eq!(cycles_to_ns(0, 10_000_000), 0);
        assert_eq!(cycles_to_ns(1, 10_000_000), 100);
        assert_eq!(cycles_to_ns(10_000_000, 10_000_000), 1_000_000_000);
        // Rounded up: the guest's time has passed the deadline on expiry.
        assert_eq!(cycles_to_ns(1, 3), 333_333_334);
        assert_eq!(cycles_to_ns(3, 3), 1_000_000_000);
        // Above 1 GHz a tick is less than a nanosecond.
        assert_eq!(cycles_to_ns(1, 4_000_000_000), 1);
        assert_eq!(cycles_to_ns(8, 4_000_000_000), 2);
        // A zero frequency is treated as 1 Hz, not a division by zero.
        assert_eq!(cycles_to_ns(2, 0), 2_000_000_000);
        // Guest-chosen compare values: no overflow, saturating at i64::MAX.
        assert_eq!(cycles_to_ns(u64::MAX, 1), i64::MAX);
        assert_eq!(cycles_to_ns(u64::MAX, 10_000_000), i64::MAX);
        assert_eq!(cycles_to_ns(u64::MAX, u64::MAX), 1_000_000_000);
        // u64::MAX ticks at 10 GHz = 1844674407370955161.6 s... rounded up ns.
        assert_eq!(cycles_to_ns(u64::MAX, 10_000_000_000), 1_844_674_407_370_955_162);
        // The largest tick count that still fits at 10 MHz.
        let max = (i64::MAX as u64) / 100;
        assert_eq!(cycles_to_ns(max, 10_000_000), (max * 100) as i64);
        assert_eq!(cycles_to_ns(max + 1, 10_000_000), i64::MAX);
        // The host's own timebase converts one second of ticks to 1 s.
        assert_eq!(cycles_to_ns(timebase_hz(), timebase_hz()), 1_000_000_000);
    }

    /// Counts the kicks of a [`KickTimer`].
    struct Kicks(AtomicU32);

    impl Kick for Kicks {
        fn kick(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn kick_timer_fires_once_and_is_cancelled() {
        use kernel::time::delay::fsleep;
        let kicks = Kicks(AtomicU32::new(0));
        {
            // SAFETY: `kicks` outlives the stack-pinned timer, which is
            // only started scoped (cancelled before `start_scoped` returns).
            pin_init::stack_pin_init!(let t = unsafe { KickTimer::new(&kicks) });
            // Armed for 1 ms: it kicks once, within a second.
            t.as_ref().start_scoped(Delta::from_millis(1), || {
                for _ in 0..1000 {
                    if kicks.0.load(Ordering::SeqCst) != 0 {
                        break;
                    }
                    fsleep(Delta::from_millis(1));
                }
            });
            assert_eq!(kicks.0.load(Ordering::SeqCst), 1);
            assert!(t.fired.load(Ordering::SeqCst));
            // Armed far away (a guest compare value of u64::MAX at 1 Hz)
            // and left at once: cancelled, never fires.
            t.as_ref().start_scoped(Delta::from_nanos(cycles_to_ns(u64::MAX, 1)), || {});
            t.as_ref().start_scoped(Delta::from_millis(20), || fsleep(Delta::from_millis(1)));
        }
        fsleep(Delta::from_millis(40));
        assert_eq!(kicks.0.load(Ordering::SeqCst), 1);
        // A deadline already passed (0 ns) fires at once.
        {
            // SAFETY: As above.
            pin_init::stack_pin_init!(let t = unsafe { KickTimer::new(&kicks) });
            t.as_ref().start_scoped(Delta::from_nanos(0), || {
                for _ in 0..1000 {
                    if kicks.0.load(Ordering::SeqCst) != 1 {
                        break;
                    }
                    fsleep(Delta::from_millis(1));
                }
            });
        }
        assert_eq!(kicks.0.load(Ordering::SeqCst), 2);
    }
}
