// SPDX-License-Identifier: GPL-2.0

//! The vCPU file descriptor (`anon_inode:kvm-vcpu:<id>`) that
//! `KVM_CREATE_VCPU` returns.
//!
//! Semantics follow `kvm_vm_ioctl_create_vcpu()`, `kvm_vcpu_ioctl()` and
//! `kvm_vcpu_mmap()`/`kvm_vcpu_fault()` of upstream `virt/kvm/kvm_main.c`.
//!
//! # The shared pages
//!
//! Each vCPU owns a zeroed `kvm_run` page, allocated at creation (mmap
//! offset 0); the coalesced-MMIO ring (offset
//! `KVM_COALESCED_MMIO_PAGE_OFFSET` = 1) is the VM's one ring page
//! (`kvm->coalesced_mmio_ring`), shared by every vCPU; two pages is what
//! `KVM_GET_VCPU_MMAP_SIZE` (two pages) announces. Upstream maps them
//! lazily from a `vm_operations_struct` fault handler; kvm_rs inserts them
//! when the VMA is created (`vm_insert_page()`), so no fault handler is
//! needed: the parts of a mapping beyond offset 1 stay empty and fault with
//! `SIGBUS`, as upstream's `kvm_vcpu_fault()` answers. The mapping holds its
//! own page references, so it stays valid after the vCPU is gone.
//!
//! # `KVM_RUN`
//!
//! As upstream's `kvm_vcpu_ioctl(KVM_RUN)` and the riscv64/arm64
//! `kvm_arch_vcpu_ioctl_run()`: only the VM's creator (its mm, else `EIO`)
//! may run it, serialised by the vCPU mutex; the argument must be 0
//! (`EINVAL`); the arch may refuse first (arm64: `ENOEXEC` before
//! `KVM_ARM_VCPU_INIT`); the arch completes the exit userspace just handled
//! (MMIO data, SBI and CSR return values: [`Arch::vcpu_complete_exit`]);
//! `immediate_exit` returns `EINTR` without touching `exit_reason` (x86
//! sets `KVM_EXIT_INTR` there, riscv64 and arm64 do not). Then the vCPU's
//! signal mask (`KVM_SET_SIGNAL_MASK`) replaces the task's for the
//! duration of the run (`kvm_sigset_activate()`), `exit_reason` becomes
//! `KVM_EXIT_UNKNOWN`, and the arch's run loop ([`Arch::vcpu_run`]) runs
//! with a [`VcpuRun`]: each iteration handles pending work (a signal ends
//! the run with `EINTR` and `KVM_EXIT_INTR`), the requests
//! ([`requests`](super::requests)), enters the guest in guest mode
//! ([`Vcpu::enter_guest_mode`]: a [`Vcpu::kick`] then interrupts the CPU
//! with [`Arch::kick_cpu`]) and handles its exit; a halted vCPU sleeps in
//! [`Vcpu::block`] until a kick, a signal or its timer. riscv64 runs guests;
//! arm64 has no world switch yet and returns `ENOEXEC`.
//!
//! `KVM_INTERRUPT` (riscv64) does not take the vCPU mutex
//! ([`Arch::vcpu_unlocked_ioctl`]): it must reach a vCPU that sits in
//! `KVM_RUN`.
//!
//! Not yet: `signal_exits` and the other statistics do not count, the
//! vCPU mutex is not killable (upstream's `mutex_lock_killable()` returns
//! `EINTR` to a killed waiter; the kernel crate has no killable lock), and
//! `vcpu->pid` is not tracked (directed yield).

use super::{
    abi::{
        Errno,
        KVMIO,
        KVM_RUN, //
    },
    arch::Arch,
    requests::{
        Requests,
        REQ_UNBLOCK,
        REQ_VM_DEAD, //
    },
    stats::{
        StatsId,
        KVM_GET_STATS_FD, //
    },
    stats_fd::{
        self,
        StatsOwner, //
    },
    one_reg::{
        self,
        RegListUser,
        RegsOp, //
    },
    uapi::{
        self,
        read_user,
        GuestDebug,
        MpState,
        OneReg,
        SignalMaskHead, //
    },
    vm::Vm,
    vm_limits::KVM_COALESCED_MMIO_PAGE_OFFSET,
};
use crate::arch::Host;
use core::sync::atomic::{
    AtomicBool,
    AtomicI32,
    AtomicU8,
    Ordering, //
};
use kernel::{
    alloc::KVVec,
    bindings,
    fs::{
        anon_inode::{
            self,
            AnonInodeFile, //
        },
        file::{
            flags::{
                O_CLOEXEC,
                O_RDWR, //
            },
            FileDescriptorReservation,
        },
        File,
    },
    ioctl::_IOC_TYPE,
    mm::virt::VmaNew,
    new_condvar,
    new_mutex,
    new_spinlock_irq,
    page::{
        Page,
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    str::CString,
    sync::{
        Arc,
        CondVar,
        Mutex,
        SpinLockIrq, //
    },
    time::Jiffies,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

/// Byte offset of `immediate_exit__unsafe` in `struct kvm_run`.
const RUN_IMMEDIATE_EXIT: usize = core::mem::offset_of!(kernel::uapi::kvm_run, immediate_exit__unsafe);
/// Byte offset of `exit_reason` in `struct kvm_run`.
const RUN_EXIT_REASON: usize = core::mem::offset_of!(kernel::uapi::kvm_run, exit_reason);
kernel::static_assert!(RUN_EXIT_REASON % core::mem::align_of::<u32>() == 0);

/// The size of the kernel's `sigset_t`: what `kvm_signal_mask.len` must be.
const SIGSET_SIZE: u32 = core::mem::size_of::<bindings::sigset_t>() as u32;
kernel::static_assert!(SIGSET_SIZE == 8);

/// `sigmask(SIGKILL) | sigmask(SIGSTOP)`: never blockable.
const UNBLOCKABLE: u64 = (1 << (bindings::SIGKILL - 1)) | (1 << (bindings::SIGSTOP - 1));

/// What `vcpu->mutex` protects.
pub(crate) struct VcpuState {
    /// The architecture state.
    arch: <Host as Arch>::Vcpu,
    /// `vcpu->sigset` when `vcpu->sigset_active`: the signal mask during
    /// `KVM_RUN` (without `SIGKILL` and `SIGSTOP`).
    sigset: Option<u64>,
}

/// A virtual CPU.
///
/// Invariant: `run` is a zero-initialized page owned by this vCPU for its
/// whole life (userspace mappings hold their own references).
#[pin_data]
pub(crate) struct Vcpu {
    /// `vcpu->vcpu_id`.
    id: u32,
    /// The `kvm_run` page.
    run: Page,
    /// `vcpu->requests`: work to do before the next guest entry.
    requests: Requests,
    /// `vcpu->mutex` and the state it protects.
    #[pin]
    state: Mutex<VcpuState>,
    /// `vcpu->stats_id`: `kvm-<pid>/vcpu-<id>`.
    stats_id: StatsId,
    /// The vCPU statistics, in `Host::VCPU_STATS` order (nothing counts yet).
    stats: KVVec<u64>,
    /// `vcpu->mode`: [`OUTSIDE_GUEST_MODE`], [`IN_GUEST_MODE`] or
    /// [`EXITING_GUEST_MODE`].
    mode: AtomicU8,
    /// `vcpu->cpu`: the CPU the vCPU is loaded on, -1 when not loaded.
    cpu: AtomicI32,
    /// `vcpu->stat.generic.blocking`: the vCPU sleeps in [`Vcpu::block`]
    /// (riscv64 HSM reports such a hart as suspended).
    blocking: AtomicBool,
    /// Serialises a blocked vCPU's wake-up condition with [`Vcpu::kick`]
    /// (upstream's rcuwait). Interrupts are off while it is held: the
    /// guest timer's hrtimer kicks the vCPU from hard interrupt context.
    #[pin]
    wait_lock: SpinLockIrq<()>,
    /// A blocked (halted) vCPU sleeps here.
    #[pin]
    wait: CondVar,
    /// The arch state other threads touch while the vCPU runs.
    arch_shared: <Host as Arch>::VcpuShared,
}

/// `OUTSIDE_GUEST_MODE`.
pub(crate) const OUTSIDE_GUEST_MODE: u8 = 0;
/// `IN_GUEST_MODE`: between the last request check (interrupts off) and
/// the guest exit; a kick must interrupt the CPU.
#[cfg_attr(CONFIG_ARM64, allow(dead_code))]
pub(crate) const IN_GUEST_MODE: u8 = 1;
/// `EXITING_GUEST_MODE`: a kick already interrupted the CPU.
#[cfg_attr(CONFIG_ARM64, allow(dead_code))]
pub(crate) const EXITING_GUEST_MODE: u8 = 2;

impl Vcpu {
    /// The vCPU id.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The statistics of the vCPU: id and values.
    pub(crate) fn stats(&self) -> (&StatsId, &[u64]) {
        (&self.stats_id, &self.stats)
    }

    /// Reads `kvm_run.immediate_exit` as upstream's `READ_ONCE()`:
    /// userspace may write it at any time.
    fn immediate_exit(&self) -> bool {
        // SAFETY: `run` is a valid page (type invariant); the local mapping
        // is undone below, in reverse order of mapping.
        let base = unsafe { bindings::kmap_local_page(self.run.as_ptr()) };
        // SAFETY: `base` maps a whole page and the offset is inside
        // `struct kvm_run`, which is smaller than a page. The byte is shared
        // with userspace, so it is read once with a volatile access (the
        // kernel's `READ_ONCE()`); any value is valid for a `u8`.
        let v = unsafe { core::ptr::read_volatile(base.cast::<u8>().add(RUN_IMMEDIATE_EXIT)) };
        // SAFETY: `base` was returned by `kmap_local_page` above.
        unsafe { bindings::kunmap_local(base) };
        v != 0
    }

    /// Writes `kvm_run.exit_reason` (`KVM_EXIT_*`), as upstream's plain
    /// store: userspace reads it after `KVM_RUN` returns.
    fn set_exit_reason(&self, reason: u32) {
        // SAFETY: `run` is a valid page (type invariant); the local mapping
        // is undone below, in reverse order of mapping.
        let base = unsafe { bindings::kmap_local_page(self.run.as_ptr()) };
        // SAFETY: `base` maps a whole page; `exit_reason` is a `u32` inside
        // `struct kvm_run` at a 4-byte aligned offset (checked at build
        // time) of a page-aligned mapping. Userspace may write the page
        // concurrently, so the store is volatile (`WRITE_ONCE()`).
        unsafe { core::ptr::write_volatile(base.cast::<u8>().add(RUN_EXIT_REASON).cast::<u32>(), reason) };
        // SAFETY: `base` was returned by `kmap_local_page` above.
        unsafe { bindings::kunmap_local(base) };
    }

    /// The vCPU's pending requests.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn requests(&self) -> &Requests {
        &self.requests
    }

    /// The arch state shared with other threads.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn arch_shared(&self) -> &<Host as Arch>::VcpuShared {
        &self.arch_shared
    }

    /// The CPU the vCPU is loaded on (`vcpu->cpu`), if any.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn cpu(&self) -> Option<u32> {
        u32::try_from(self.cpu.load(Ordering::Relaxed)).ok()
    }

    /// Records the CPU the vCPU was loaded on (`None`: put).
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn set_cpu(&self, cpu: Option<u32>) {
        let v = cpu.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1);
        self.cpu.store(v, Ordering::Relaxed);
    }

    /// Enters `IN_GUEST_MODE`, with interrupts off, before the last check
    /// of requests and pending work (see
    /// `Documentation/virt/kvm/vcpu-requests.rst`): a request made after
    /// this store is either seen by that check or kicks the CPU.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn enter_guest_mode(&self) {
        self.mode.store(IN_GUEST_MODE, Ordering::Relaxed);
        // `smp_mb__after_srcu_read_unlock()`: order the mode store before
        // the loads of the request check.
        core::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Back to `OUTSIDE_GUEST_MODE` (after the guest exit, or when the
    /// last check found work).
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn exit_guest_mode(&self) {
        self.mode.store(OUTSIDE_GUEST_MODE, Ordering::Release);
    }

    /// `kvm_vcpu_kick()`: makes the vCPU notice a new request or
    /// interrupt: a running guest is interrupted by an IPI to its CPU
    /// ([`Arch::kick_cpu`]), a blocked vCPU is woken.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn kick(&self) {
        if self
            .mode
            .compare_exchange(IN_GUEST_MODE, EXITING_GUEST_MODE, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            if let Some(cpu) = self.cpu() {
                Host::kick_cpu(cpu);
            }
        }
        // Taking the lock orders the waker's state change before the
        // blocked vCPU's re-check of its condition.
        drop(self.wait_lock.lock());
        self.wait.notify_all();
    }

    /// Raises `req` and kicks the vCPU (`kvm_make_request()` +
    /// `kvm_vcpu_kick()`).
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn request(&self, req: super::requests::Request) {
        self.requests.make(req);
        self.kick();
    }

    /// `kvm_vcpu_block()`: sleeps until `wake()` is true, a kick, a
    /// signal, or `timeout` jiffies passed (`None`: no timeout). Returns
    /// at once if `wake()` already holds or a request or signal is
    /// pending. The caller re-checks everything afterwards: a return is
    /// not a promise that `wake()` holds.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn block(&self, timeout: Option<Jiffies>, wake: impl Fn() -> bool) {
        let mut guard = self.wait_lock.lock();
        if wake() || self.requests.pending() || kernel::current!().signal_pending() {
            return;
        }
        self.blocking.store(true, Ordering::Relaxed);
        match timeout {
            Some(j) => {
                let _ = self.wait.wait_interruptible_timeout(&mut guard, j);
            }
            None => {
                let _ = self.wait.wait_interruptible(&mut guard);
            }
        }
        self.blocking.store(false, Ordering::Relaxed);
    }

    /// Whether the vCPU sleeps in [`Vcpu::block`] now
    /// (`vcpu->stat.generic.blocking`; a snapshot, as upstream's).
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn is_blocking(&self) -> bool {
        self.blocking.load(Ordering::Relaxed)
    }

    /// Handles the generic requests before entering the guest (the
    /// generic part of the arch `kvm_*_check_vcpu_requests()`): `EIO` for
    /// a dead VM. `REQ_TLB_FLUSH` is left to the arch (it flushes its
    /// stage-2 TLB); `REQ_UNBLOCK` only had to wake the vCPU.
    fn handle_requests(&self) -> Result<(), Errno> {
        if !self.requests.pending() {
            return Ok(());
        }
        if self.requests.check(REQ_VM_DEAD) {
            return Err(Errno::EIO);
        }
        self.requests.check(REQ_UNBLOCK);
        Ok(())
    }
}

/// What `KVM_RUN` gives the arch's run loop ([`Arch::vcpu_run`]): the VM,
/// the generic vCPU, the `kvm_run` page and the generic pending-work
/// checks.
pub(crate) struct VcpuRun<'a> {
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    vm: &'a Vm,
    vcpu: &'a Vcpu,
}

/// The size of `struct kvm_run`: accesses beyond it are refused.
const RUN_SIZE: usize = core::mem::size_of::<kernel::uapi::kvm_run>();
kernel::static_assert!(RUN_SIZE <= PAGE_SIZE);

extern "C" {
    /// `xfer_to_guest_mode_handle_work()` (`kernel/entry/virt.c`,
    /// `EXPORT_SYMBOL_GPL`, built with `CONFIG_VIRT_XFER_TO_GUEST_WORK`):
    /// bindgen does not see `<linux/entry-virt.h>`. Needs a patch adding
    /// the header to the bindings.
    fn xfer_to_guest_mode_handle_work() -> kernel::ffi::c_int;
}

/// `XFER_TO_GUEST_MODE_WORK`: `_TIF_NOTIFY_RESUME | _TIF_SIGPENDING |
/// _TIF_NOTIFY_SIGNAL | _TIF_NEED_RESCHED | _TIF_NEED_RESCHED_LAZY`
/// (`include/linux/entry-virt.h`; neither riscv64 nor arm64 adds arch
/// work). The bit numbers are the arch's (riscv64 uses the asm-generic
/// ones, arm64 its own).
const XFER_TO_GUEST_MODE_WORK: u64 = (1 << bindings::TIF_NOTIFY_RESUME)
    | (1 << bindings::TIF_SIGPENDING)
    | (1 << bindings::TIF_NOTIFY_SIGNAL)
    | (1 << bindings::TIF_NEED_RESCHED)
    | (1 << bindings::TIF_NEED_RESCHED_LAZY);

impl<'a> VcpuRun<'a> {
    /// The VM.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn vm(&self) -> &'a Vm {
        self.vm
    }

    /// The generic vCPU.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn vcpu(&self) -> &'a Vcpu {
        self.vcpu
    }

    /// `kvm_xfer_to_guest_mode_handle_work()`, with interrupts and
    /// preemption enabled: a pending signal ends the run (`EINTR`,
    /// `KVM_EXIT_INTR`); `need_resched` schedules; notify-resume work
    /// (rseq) runs.
    pub(crate) fn handle_work(&self) -> Result<(), Errno> {
        if !Self::work_pending() {
            return Ok(());
        }
        // SAFETY: Called from the vCPU thread in process context with
        // interrupts and preemption enabled, as the function requires.
        let r = unsafe { xfer_to_guest_mode_handle_work() };
        if r == 0 {
            return Ok(());
        }
        self.vcpu.set_exit_reason(kernel::uapi::KVM_EXIT_INTR);
        Err(Errno(-r))
    }

    /// `xfer_to_guest_mode_work_pending()`: the current task's thread
    /// flags ask for work before guest entry. Call it with interrupts off
    /// as the last check before entry.
    pub(crate) fn work_pending() -> bool {
        let task = kernel::task::Task::current_raw();
        // SAFETY: `task` is the current task; its `thread_info.flags` is
        // a word other CPUs set bits in atomically, read once here
        // (`read_thread_flags()`).
        let flags = unsafe { core::ptr::addr_of!((*task).thread_info.flags).read_volatile() };
        (flags as u64) & XFER_TO_GUEST_MODE_WORK != 0
    }

    /// The generic requests (`EIO` for a dead VM).
    pub(crate) fn handle_generic_requests(&self) -> Result<(), Errno> {
        self.vcpu.handle_requests()
    }

    /// `kvm_run.exit_reason`, as userspace left it.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn exit_reason(&self) -> u32 {
        let mut b = [0u8; 4];
        self.read(RUN_EXIT_REASON, &mut b);
        u32::from_ne_bytes(b)
    }

    /// Sets `kvm_run.exit_reason`.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn set_exit_reason(&self, reason: u32) {
        self.vcpu.set_exit_reason(reason);
    }

    /// Copies `buf.len()` bytes of `kvm_run` at `offset` into `buf`
    /// (zeroes if the range is not inside `struct kvm_run`).
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) {
        let Some(end) = offset.checked_add(buf.len()) else { return buf.fill(0) };
        if end > RUN_SIZE {
            return buf.fill(0);
        }
        // SAFETY: `run` is a valid page (type invariant); unmapped below.
        let base = unsafe { bindings::kmap_local_page(self.vcpu.run.as_ptr()) };
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: `offset + i < RUN_SIZE <= PAGE_SIZE`: inside the
            // mapping. Userspace may write concurrently: volatile byte reads
            // (`READ_ONCE()`), any value is a valid `u8`.
            *b = unsafe { core::ptr::read_volatile(base.cast::<u8>().add(offset + i)) };
        }
        // SAFETY: `base` was returned by `kmap_local_page` above.
        unsafe { bindings::kunmap_local(base) };
    }

    /// Copies `bytes` into `kvm_run` at `offset` (nothing if the range is
    /// not inside `struct kvm_run`).
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) {
        let Some(end) = offset.checked_add(bytes.len()) else { return };
        if end > RUN_SIZE {
            return;
        }
        // SAFETY: `run` is a valid page (type invariant); unmapped below.
        let base = unsafe { bindings::kmap_local_page(self.vcpu.run.as_ptr()) };
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: As in `read`; volatile byte stores (`WRITE_ONCE()`).
            unsafe { core::ptr::write_volatile(base.cast::<u8>().add(offset + i), *b) };
        }
        // SAFETY: `base` was returned by `kmap_local_page` above.
        unsafe { bindings::kunmap_local(base) };
    }
}

/// The vCPU's signal mask applied to the current task for the duration of
/// `KVM_RUN` (`kvm_sigset_activate()`), restored on drop
/// (`kvm_sigset_deactivate()`).
///
/// Invariant: if `active`, `current->real_blocked` holds the task's own
/// mask, saved by [`SigmaskGuard::activate`], and the guard has not left
/// the task it was created on (it is neither `Send` nor stored).
pub(crate) struct SigmaskGuard {
    active: bool,
    /// Not `Send`: the guard acts on the current task.
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl SigmaskGuard {
    /// Blocks exactly `mask` in the current task, if there is one, saving
    /// the task's mask in `current->real_blocked`.
    pub(crate) fn activate(mask: Option<u64>) -> SigmaskGuard {
        let Some(mask) = mask else {
            return SigmaskGuard { active: false, _not_send: core::marker::PhantomData };
        };
        // `sigset_t` is one `unsigned long` (checked at build time), 64 bits.
        let mut set = bindings::sigset_t { sig: [mask as kernel::ffi::c_ulong] };
        let task = kernel::task::Task::current_raw();
        // SAFETY: `task` is the current task, valid for the call. Only the
        // current task writes its own `real_blocked` (upstream relies on
        // the same: readers only need it to be a subset of `blocked`), so
        // handing its address to `sigprocmask()` as the old-mask output is
        // sound; `set` is a valid `sigset_t` for the call.
        unsafe {
            bindings::sigprocmask(
                bindings::SIG_SETMASK as kernel::ffi::c_int,
                &mut set,
                core::ptr::addr_of_mut!((*task).real_blocked),
            )
        };
        SigmaskGuard { active: true, _not_send: core::marker::PhantomData }
    }
}

impl Drop for SigmaskGuard {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let task = kernel::task::Task::current_raw();
        // SAFETY: `task` is the current task, the one `activate` ran on
        // (the guard is not `Send`); its `real_blocked` holds the saved mask
        // (type invariant), which becomes `blocked` again. `sigprocmask()`
        // copies the new mask before writing anything, and no old mask is
        // asked for.
        unsafe {
            let saved = core::ptr::addr_of_mut!((*task).real_blocked);
            bindings::sigprocmask(bindings::SIG_SETMASK as kernel::ffi::c_int, saved, core::ptr::null_mut());
            // `sigemptyset()`: only the current task writes it.
            (*saved).sig = [0];
        }
    }
}

/// What a vCPU fd (and its mapping) refers to.
pub(crate) struct VcpuRef {
    /// The VM (`kvm_get_kvm()` of the vCPU fd).
    vm: Arc<Vm>,
    /// The vCPU, owned by the VM too.
    vcpu: Arc<Vcpu>,
}

/// Creates vCPU `id` of `vm`, adds it to `vcpus` and returns its fd. The
/// caller holds `kvm->lock` and has reserved the vCPU in the VM's limits.
pub(crate) fn create_fd(vm: Arc<Vm>, vcpus: &mut KVVec<Arc<Vcpu>>, id: u32) -> Result<isize> {
    let arch = Host::vcpu_create(id, vcpus.len(), &mut vm.arch().lock())?;
    let stats_id = StatsId::vcpu(vm.pid(), i32::try_from(id).map_err(|_| EINVAL)?);
    let mut stats = KVVec::new();
    stats.extend_with(Host::VCPU_STATS.num_values(), 0u64, GFP_KERNEL_ACCOUNT)?;
    let vcpu = Arc::pin_init(
        try_pin_init!(Vcpu {
            id,
            run: Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?,
            requests: Requests::new(),
            state <- new_mutex!(VcpuState { arch, sigset: None }),
            stats_id,
            stats,
            mode: AtomicU8::new(OUTSIDE_GUEST_MODE),
            cpu: AtomicI32::new(-1),
            blocking: AtomicBool::new(false),
            wait_lock <- new_spinlock_irq!(()),
            wait <- new_condvar!(),
            arch_shared: Default::default(),
        }),
        GFP_KERNEL_ACCOUNT,
    )?;
    // Make room first, so that nothing can fail once the fd is created.
    vcpus.reserve(1, GFP_KERNEL_ACCOUNT)?;
    let reservation = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
    let fd = isize::try_from(reservation.reserved_fd()).map_err(|_| EMFILE)?;
    let data = KBox::new(
        VcpuRef {
            vm,
            vcpu: vcpu.clone(),
        },
        GFP_KERNEL_ACCOUNT,
    )?;
    // The kernel copies the name into the file's dentry.
    let name = CString::try_from_fmt(fmt!("kvm-vcpu:{id}"))?;
    let file = anon_inode::create_file::<VcpuFile>(&name, data, O_RDWR)?;
    // Cannot fail: capacity was reserved above. On the impossible error
    // the file is released (deferred fput) and the fd unreserved.
    vcpus.push_within_capacity(vcpu).map_err(|_| ENOMEM)?;
    reservation.fd_install(file);
    Ok(fd)
}

/// `rseq_virt_userspace_exit()` after `KVM_RUN` (`kvm_vcpu_ioctl()`): on an
/// arch without the generic TIF bits (arm64: `TIF_RSEQ` is
/// `TIF_NOTIFY_RESUME`), a task that was scheduled while in `KVM_RUN` must
/// raise `TIF_NOTIFY_RESUME` so that its rseq area is updated on the way
/// back to userspace (the run loop's notify-resume work does not set the
/// rseq fields then). riscv64 has the generic bits: nothing to do.
fn rseq_virt_userspace_exit() {
    #[cfg(all(CONFIG_RSEQ, not(CONFIG_HAVE_GENERIC_TIF_BITS)))]
    {
        let task = kernel::task::Task::current_raw();
        // SAFETY: The current task's own rseq event byte, which the
        // scheduler sets on this task's context switches only; a racy read
        // is what upstream does (a plain load).
        let switched = unsafe {
            core::ptr::addr_of!((*task).rseq.event.__bindgen_anon_1.__bindgen_anon_1.__bindgen_anon_1.__bindgen_anon_1.sched_switch)
                .read_volatile()
        };
        if switched != 0 {
            // SAFETY: `set_tsk_thread_flag(current, TIF_NOTIFY_RESUME)`:
            // the flags word is only changed atomically (`set_bit()`), by
            // any CPU.
            let flags = unsafe { core::sync::atomic::AtomicU64::from_ptr(core::ptr::addr_of_mut!((*task).thread_info.flags).cast()) };
            flags.fetch_or(1 << bindings::TIF_NOTIFY_RESUME, Ordering::SeqCst);
        }
    }
}

impl VcpuRef {
    /// `KVM_RUN`.
    fn run(&self, st: &mut VcpuState, arg: usize) -> Result<isize> {
        if arg != 0 {
            return Err(EINVAL);
        }
        Host::vcpu_run_check(&mut st.arch, &mut self.vm.arch().lock())?;
        let vcpu = &self.vcpu;
        let mut run = VcpuRun { vm: &self.vm, vcpu };
        let r = (|| {
            Host::vcpu_complete_exit(&mut st.arch, &run)?;
            if vcpu.immediate_exit() {
                return Err(EINTR);
            }
            let _sigmask = SigmaskGuard::activate(st.sigset);
            vcpu.set_exit_reason(kernel::uapi::KVM_EXIT_UNKNOWN);
            Host::vcpu_run(&mut st.arch, &mut run)?;
            Ok(0)
        })();
        rseq_virt_userspace_exit();
        r
    }

    /// `KVM_SET_SIGNAL_MASK`: `arg` 0 clears the mask, else it points to a
    /// `struct kvm_signal_mask` whose `len` must be `sizeof(sigset_t)`.
    fn set_signal_mask(&self, st: &mut VcpuState, arg: usize) -> Result<isize> {
        if arg == 0 {
            st.sigset = None;
            return Ok(0);
        }
        let head: SignalMaskHead = read_user(arg)?;
        if head.len != SIGSET_SIZE {
            return Err(EINVAL);
        }
        let at = arg.checked_add(core::mem::size_of::<SignalMaskHead>()).ok_or(EFAULT)?;
        let mut bytes = [0u8; 8];
        UserSlice::new(UserPtr::from_addr(at), bytes.len()).reader().read_slice(&mut bytes)?;
        st.sigset = Some(u64::from_ne_bytes(bytes) & !UNBLOCKABLE);
        Ok(0)
    }

    /// `KVM_GET_MP_STATE`.
    fn get_mp_state(&self, st: &mut VcpuState, arg: usize) -> Result<isize> {
        let mp = MpState { mp_state: Host::get_mp_state(&st.arch, &self.vcpu.arch_shared) };
        UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<MpState>()).writer().write(&mp)?;
        Ok(0)
    }

    /// `KVM_SET_MP_STATE`.
    fn set_mp_state(&self, st: &mut VcpuState, arg: usize) -> Result<isize> {
        let mp: MpState = read_user(arg)?;
        Host::set_mp_state(&mut st.arch, &self.vcpu.arch_shared, mp.mp_state)?;
        Ok(0)
    }

    /// `KVM_SET_GUEST_DEBUG`.
    fn set_guest_debug(&self, st: &mut VcpuState, arg: usize) -> Result<isize> {
        let dbg: GuestDebug = read_user(arg)?;
        Host::set_guest_debug(&mut st.arch, &dbg)?;
        Ok(0)
    }

    /// `KVM_GET_ONE_REG`.
    fn get_one_reg(&self, st: &mut VcpuState, arg: usize) -> Result<isize> {
        Host::regs_check(&st.arch, RegsOp::OneReg)?;
        let reg: OneReg = read_user(arg)?;
        let write = |bytes: &[u8]| -> Result<(), Errno> {
            let addr = usize::try_from(reg.addr).map_err(|_| Errno::EFAULT)?;
            UserSlice::new(UserPtr::from_addr(addr), bytes.len())
                .writer()
                .write_slice(bytes)
                .map_err(|_| Errno::EFAULT)
        };
        Host::get_one_reg(&mut st.arch, &mut self.vm.arch().lock(), &self.vcpu.arch_shared, reg.id, write)?;
        Ok(0)
    }

    /// `KVM_SET_ONE_REG`.
    fn set_one_reg(&self, st: &mut VcpuState, arg: usize) -> Result<isize> {
        Host::regs_check(&st.arch, RegsOp::OneReg)?;
        let reg: OneReg = read_user(arg)?;
        let read = |bytes: &mut [u8]| -> Result<(), Errno> {
            let addr = usize::try_from(reg.addr).map_err(|_| Errno::EFAULT)?;
            UserSlice::new(UserPtr::from_addr(addr), bytes.len())
                .reader()
                .read_slice(bytes)
                .map_err(|_| Errno::EFAULT)
        };
        Host::set_one_reg(&mut st.arch, &mut self.vm.arch().lock(), &self.vcpu.arch_shared, reg.id, read)?;
        Ok(0)
    }

    /// `KVM_GET_REG_LIST`.
    fn get_reg_list(&self, st: &mut VcpuState, arg: usize) -> Result<isize> {
        Host::regs_check(&st.arch, RegsOp::RegList)?;
        let vm = self.vm.arch().lock();
        let mut user = UserRegList { addr: arg };
        one_reg::get_reg_list(&mut user, |emit| Host::for_each_reg(&st.arch, &vm, emit))?;
        Ok(0)
    }

    /// `kvm_vcpu_ioctl()`.
    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        self.vm.check_mm()?;
        if _IOC_TYPE(cmd) != KVMIO {
            return Err(EINVAL);
        }
        if cmd == KVM_GET_STATS_FD {
            return stats_fd::create_fd(StatsOwner::Vcpu {
                _vm: self.vm.clone(),
                vcpu: self.vcpu.clone(),
            });
        }
        if let Some(r) = Host::vcpu_unlocked_ioctl(&self.vcpu, cmd, arg) {
            return Ok(r?);
        }
        // `vcpu->mutex`: concurrent ioctls on one vCPU, `KVM_RUN` included,
        // run one after the other.
        let mut guard = self.vcpu.state.lock();
        let st = &mut *guard;
        match cmd {
            KVM_RUN => self.run(st, arg),
            uapi::KVM_GET_ONE_REG => self.get_one_reg(st, arg),
            uapi::KVM_SET_ONE_REG => self.set_one_reg(st, arg),
            uapi::KVM_GET_REG_LIST => self.get_reg_list(st, arg),
            uapi::KVM_GET_MP_STATE => self.get_mp_state(st, arg),
            uapi::KVM_SET_MP_STATE => self.set_mp_state(st, arg),
            uapi::KVM_SET_GUEST_DEBUG => self.set_guest_debug(st, arg),
            uapi::KVM_SET_SIGNAL_MASK => self.set_signal_mask(st, arg),
            _ => Ok(Host::vcpu_ioctl(&mut st.arch, &mut self.vm.arch().lock(), cmd, arg)?),
        }
    }

    /// `kvm_vcpu_mmap()`: inserts the vCPU's pages at the offsets the VMA
    /// covers.
    fn mmap(&self, vma: &VmaNew) -> Result {
        // SAFETY: `vma` is a valid VMA being set up; `vm_pgoff` is set by
        // the mmap core before `f_op->mmap` is called and is not changed
        // concurrently.
        let pgoff = unsafe { (*vma.as_ptr()).vm_pgoff };
        let start = vma.start();
        let pages = (vma.end().saturating_sub(start)) >> PAGE_SHIFT;
        let ring_offset = KVM_COALESCED_MMIO_PAGE_OFFSET as usize;
        let mixed = vma.set_mixedmap();
        for (offset, page) in [(0usize, &self.vcpu.run), (ring_offset, self.vm.coalesced_ring())] {
            let Some(index) = offset.checked_sub(pgoff) else {
                continue;
            };
            if index >= pages {
                continue;
            }
            // `index < pages`, so the address is inside the VMA.
            let addr = start + index * PAGE_SIZE;
            mixed.vm_insert_page(addr, page)?;
        }
        Ok(())
    }
}

/// The `struct kvm_reg_list` at user address `addr`: `__u64 n`, then
/// `__u64 reg[n]`.
struct UserRegList {
    addr: usize,
}

impl UserRegList {
    /// The user slice of the `u64` at `index` (0 = `n`, `1 + i` = `reg[i]`).
    fn word(&self, index: u64) -> Result<UserSlice, Errno> {
        let offset = index.checked_mul(8).and_then(|o| usize::try_from(o).ok()).ok_or(Errno::EFAULT)?;
        let at = self.addr.checked_add(offset).ok_or(Errno::EFAULT)?;
        Ok(UserSlice::new(UserPtr::from_addr(at), 8))
    }
}

impl RegListUser for UserRegList {
    fn read_n(&mut self) -> Result<u64, Errno> {
        self.word(0)?.reader().read::<u64>().map_err(|_| Errno::EFAULT)
    }

    fn write_n(&mut self, n: u64) -> Result<(), Errno> {
        self.word(0)?.writer().write(&n).map_err(|_| Errno::EFAULT)
    }

    fn write_reg(&mut self, index: u64, id: u64) -> Result<(), Errno> {
        let word = index.checked_add(1).ok_or(Errno::EFAULT)?;
        self.word(word)?.writer().write(&id).map_err(|_| Errno::EFAULT)
    }
}

/// The file operations of a vCPU fd.
struct VcpuFile;

#[vtable]
impl AnonInodeFile for VcpuFile {
    type Ptr = KBox<VcpuRef>;

    fn ioctl(this: &VcpuRef, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        this.ioctl(cmd, arg)
    }

    fn mmap(this: &VcpuRef, _file: &File, vma: &VmaNew) -> Result {
        this.mmap(vma)
    }
}

#[kunit_tests(kvm_rs_vcpu)]
mod tests {
    use super::*;

    /// `current->blocked` and `current->real_blocked`.
    fn masks() -> (u64, u64) {
        let task = kernel::task::Task::current_raw();
        // SAFETY: The current task is valid; only it writes these masks,
        // and it is the one reading them.
        let (blocked, real) = unsafe { ((*task).blocked.sig[0], (*task).real_blocked.sig[0]) };
        (blocked as u64, real as u64)
    }

    #[test]
    fn sigmask_guard_swaps_and_restores() {
        let (before, _) = masks();
        {
            let _g = SigmaskGuard::activate(None);
            assert_eq!(masks().0, before);
        }
        let mask = 1u64 << (bindings::SIGUSR1 - 1) | 1 << 40;
        {
            let _g = SigmaskGuard::activate(Some(mask));
            assert_eq!(masks(), (mask, before));
        }
        assert_eq!(masks(), (before, 0));
    }

    #[test]
    fn sigkill_and_sigstop_are_unblockable() {
        assert_eq!(UNBLOCKABLE, (1 << 8) | (1 << 18));
        assert_eq!(SIGSET_SIZE, 8);
        assert_eq!(RUN_EXIT_REASON, 8);
    }
}
