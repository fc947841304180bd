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
//! # Guest execution
//!
//! There is none yet: `KVM_RUN` returns `EINTR` when `immediate_exit` is
//! set (so `KVM_CAP_IMMEDIATE_EXIT` is honest) and `ENOEXEC` otherwise.

use super::{
    abi::{
        Errno,
        KVMIO,
        KVM_RUN, //
    },
    arch::Arch,
    stats::{
        StatsId,
        KVM_GET_STATS_FD, //
    },
    stats_fd::{
        self,
        StatsOwner, //
    },
    uapi::{
        self,
        read_user,
        OneReg, //
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
    /// `vcpu->mutex` and the architecture state it protects.
    #[pin]
    arch: Mutex<<Host as Arch>::Vcpu>,
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
    // `()` on riscv64, real state on arm64.
    #[allow(clippy::let_unit_value)]
    let arch = Host::vcpu_create(id)?;
    let stats_id = StatsId::vcpu(vm.pid(), i32::try_from(id).map_err(|_| EINVAL)?);
    let mut stats = KVVec::new();
    stats.extend_with(Host::VCPU_STATS.num_values(), 0u64, GFP_KERNEL_ACCOUNT)?;
    let vcpu = Arc::pin_init(
        try_pin_init!(Vcpu {
            id,
            run: Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?,
            ring: Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?,
            arch <- new_mutex!(arch),
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
    fn run(&self, arch: &mut <Host as Arch>::Vcpu, arg: usize) -> Result<isize> {
        if arg != 0 {
            return Err(EINVAL);
        }
        Host::vcpu_run_check(arch)?;
        if self.vcpu.immediate_exit() {
            return Err(EINTR);
        }
        // No world switch yet: honestly refuse to run the guest.
        Err(ENOEXEC)
    }

    /// `KVM_GET_ONE_REG`.
    fn get_one_reg(&self, arch: &mut <Host as Arch>::Vcpu, arg: usize) -> Result<isize> {
        let reg: OneReg = read_user(arg)?;
        let value = Host::get_one_reg(arch, reg.id)?;
        let bytes = value.to_ne_bytes();
        let bytes = bytes.get(..uapi::reg_size(reg.id)).ok_or(EINVAL)?;
        let addr = usize::try_from(reg.addr).map_err(|_| EFAULT)?;
        UserSlice::new(UserPtr::from_addr(addr), bytes.len()).writer().write_slice(bytes)?;
        Ok(0)
    }

    /// `KVM_SET_ONE_REG`.
    fn set_one_reg(&self, arch: &mut <Host as Arch>::Vcpu, arg: usize) -> Result<isize> {
        let reg: OneReg = read_user(arg)?;
        let read_value = || -> Result<u64, Errno> {
            let size = uapi::reg_size(reg.id);
            let mut bytes = [0u8; 8];
            let dst = bytes.get_mut(..size).ok_or(Errno::EINVAL)?;
            let addr = usize::try_from(reg.addr).map_err(|_| Errno::EFAULT)?;
            UserSlice::new(UserPtr::from_addr(addr), size)
                .reader()
                .read_slice(dst)
                .map_err(|_| Errno::EFAULT)?;
            Ok(u64::from_ne_bytes(bytes))
        };
        Host::set_one_reg(arch, reg.id, read_value)?;
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
        let mut arch = self.vcpu.arch.lock();
        match cmd {
            KVM_RUN => self.run(&mut arch, arg),
            uapi::KVM_GET_ONE_REG => self.get_one_reg(&mut arch, arg),
            uapi::KVM_SET_ONE_REG => self.set_one_reg(&mut arch, arg),
            _ => Ok(Host::vcpu_ioctl(&mut arch, cmd, arg)?),
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
