// SPDX-License-Identifier: GPL-2.0

//! The vCPU file descriptor (`anon_inode:kvm-vcpu:<id>`) that
//! `KVM_CREATE_VCPU` returns.
//!
//! Semantics follow `kvm_vm_ioctl_create_vcpu()`, `kvm_vcpu_ioctl()` and
//! `kvm_vcpu_mmap()`/`kvm_vcpu_fault()` of upstream `virt/kvm/kvm_main.c`.
//!
//! # The shared pages
//!
//! Each vCPU owns two zeroed pages, allocated at creation: `kvm_run` (mmap
//! offset 0) and the coalesced-MMIO ring (offset
//! `KVM_COALESCED_MMIO_PAGE_OFFSET` = 1), which is what
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
//! `KVM_ARM_VCPU_INIT`); `immediate_exit` returns `EINTR` without touching
//! `exit_reason` (x86 sets `KVM_EXIT_INTR` there, riscv64 and arm64 do
//! not). Then the vCPU's signal mask (`KVM_SET_SIGNAL_MASK`) replaces the
//! task's for the duration of the run (`kvm_sigset_activate()`),
//! `exit_reason` becomes `KVM_EXIT_UNKNOWN`, a pending signal ends the run
//! with `EINTR` and `KVM_EXIT_INTR`, pending requests
//! ([`requests`](super::requests)) are handled, and the arch's run hook is
//! called. There is no world switch yet: that hook returns `ENOEXEC`.
//!
//! Not yet: `signal_exits` does not count (the statistics are static), the
//! vCPU mutex is not killable (upstream's `mutex_lock_killable()` returns
//! `EINTR` to a killed waiter; the kernel crate has no killable lock), and
//! `vcpu->pid` is not tracked (nothing yields to or kicks a vCPU thread).

use super::{
    abi::{
        Errno,
        KVMIO,
        KVM_RUN, //
    },
    arch::Arch,
    requests::{
        Requests,
        REQ_TLB_FLUSH,
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
    new_mutex,
    page::{
        Page,
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    str::CString,
    sync::{
        Arc,
        Mutex, //
    },
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
/// Invariant: `run` and `ring` are zero-initialized pages owned by this
/// vCPU for its whole life (userspace mappings hold their own references).
#[pin_data]
pub(crate) struct Vcpu {
    /// `vcpu->vcpu_id`.
    id: u32,
    /// The `kvm_run` page.
    run: Page,
    /// The coalesced-MMIO ring page (stays empty: no coalesced zones yet).
    ring: Page,
    /// `vcpu->requests`: work to do before the next guest entry.
    requests: Requests,
    /// `vcpu->mutex` and the state it protects.
    #[pin]
    state: Mutex<VcpuState>,
    /// `vcpu->stats_id`: `kvm-<pid>/vcpu-<id>`.
    stats_id: StatsId,
    /// The vCPU statistics, in `Host::VCPU_STATS` order (nothing counts yet).
    stats: KVVec<u64>,
}

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

    /// `kvm_vcpu_kick()`: makes the vCPU notice a new request. A stub:
    /// with no world switch, a vCPU never runs guest code or sleeps in
    /// `KVM_RUN`, and handles its requests at the start of the next run.
    /// The world switch will send an IPI to the CPU running the guest and
    /// wake a halted vCPU.
    #[allow(dead_code)]
    pub(crate) fn kick(&self) {}

    /// Raises `req` and kicks the vCPU (`kvm_make_request()` +
    /// `kvm_vcpu_kick()`).
    #[allow(dead_code)]
    pub(crate) fn request(&self, req: super::requests::Request) {
        self.requests.make(req);
        self.kick();
    }

    /// Handles the pending requests before entering the guest (the arch
    /// `kvm_*_check_vcpu_requests()`): `EIO` for a dead VM.
    fn handle_requests(&self) -> Result {
        if !self.requests.pending() {
            return Ok(());
        }
        if self.requests.check(REQ_VM_DEAD) {
            return Err(EIO);
        }
        // No stage-2 mappings yet: nothing to flush. Not halted: nothing
        // to unblock.
        self.requests.check(REQ_TLB_FLUSH);
        self.requests.check(REQ_UNBLOCK);
        Ok(())
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
            ring: Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?,
            requests: Requests::new(),
            state <- new_mutex!(VcpuState { arch, sigset: None }),
            stats_id,
            stats,
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

impl VcpuRef {
    /// `KVM_RUN`.
    fn run(&self, st: &mut VcpuState, arg: usize) -> Result<isize> {
        if arg != 0 {
            return Err(EINVAL);
        }
        Host::vcpu_run_check(&mut st.arch, &mut self.vm.arch().lock())?;
        let vcpu = &self.vcpu;
        if vcpu.immediate_exit() {
            return Err(EINTR);
        }
        let _sigmask = SigmaskGuard::activate(st.sigset);
        vcpu.set_exit_reason(kernel::uapi::KVM_EXIT_UNKNOWN);
        // `kvm_xfer_to_guest_mode_handle_work()`, with the vCPU's mask.
        if kernel::current!().signal_pending() {
            vcpu.set_exit_reason(kernel::uapi::KVM_EXIT_INTR);
            return Err(EINTR);
        }
        vcpu.handle_requests()?;
        Host::vcpu_run(&mut st.arch)?;
        Ok(0)
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
        let mp = MpState { mp_state: Host::get_mp_state(&st.arch) };
        UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<MpState>()).writer().write(&mp)?;
        Ok(0)
    }

    /// `KVM_SET_MP_STATE`.
    fn set_mp_state(&self, st: &mut VcpuState, arg: usize) -> Result<isize> {
        let mp: MpState = read_user(arg)?;
        Host::set_mp_state(&mut st.arch, mp.mp_state)?;
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
        Host::get_one_reg(&mut st.arch, &mut self.vm.arch().lock(), reg.id, write)?;
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
        Host::set_one_reg(&mut st.arch, &mut self.vm.arch().lock(), reg.id, read)?;
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
        for (offset, page) in [(0usize, &self.vcpu.run), (ring_offset, &self.vcpu.ring)] {
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
