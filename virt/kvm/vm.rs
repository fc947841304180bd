// SPDX-License-Identifier: GPL-2.0

//! The VM file descriptor (`anon_inode:kvm-vm`) that `KVM_CREATE_VM` returns.
//!
//! Semantics follow `kvm_dev_ioctl_create_vm()` and `kvm_vm_ioctl()` of
//! upstream `virt/kvm/kvm_main.c`; the validation itself lives in the pure
//! files ([`memslot`](super::memslot), [`dirty_log`](super::dirty_log),
//! [`vm_limits`](super::vm_limits)), this file only moves arguments between
//! userspace and them.
//!
//! # Lifetime
//!
//! A [`Vm`] is reference counted: the VM fd, every vCPU fd and every stats
//! fd hold an `Arc<Vm>`, as upstream's files hold a `kvm_get_kvm()`
//! reference. The VM owns its vCPUs (`Arc<Vcpu>`), which hold nothing back,
//! so there is no cycle: closing every fd frees the VM, its vCPUs, memslots
//! and pages. Each file also pins the module (`file_operations.owner`).
//!
//! # Locking
//!
//! - `state` is upstream's `kvm->lock`: vCPU creation and VM-wide
//!   capabilities.
//! - `slots` is `kvm->slots_lock`: the memslots and their dirty bitmaps.
//!
//! - `ioeventfds` is the part of `slots_lock` that guards
//!   `kvm->ioeventfds`; it is never held with the others.
//! - `coalesced` is the part of `slots_lock` that guards
//!   `kvm->coalesced_zones`; `ring_lock` (`kvm->ring_lock`, a spinlock)
//!   is taken under it on the guest-write path, and never with the others.
//! - `irqfds` is `kvm->irqfds.lock`; it is never held with the others
//!   (only the module-wide irqfd claim lock is taken under it).
//!
//! - `arch` is `kvm->arch.config_lock`: the arch's VM-wide configuration
//!   ([`Arch::Vm`]: arm64 vCPU features and ID registers).
//!
//! Lock order: `state`, then `slots` (as `kvm->lock` before `slots_lock`);
//! `arch` last: after `state`, `slots` and a vCPU's mutex.

use super::{
    abi::{
        Errno,
        KVM_CHECK_EXTENSION, //
    },
    arch::{
        Arch,
        VmCapChange,
        VmFacts,
        VmInUse, //
    },
    coalesced_mmio::{
        self,
        Zone,
        Zones, //
    },
    device::KVM_CREATE_DEVICE,
    device_fd::{
        self,
        DeviceList, //
    },
    dirty_log::{
        self,
        KVM_DIRTY_LOG_MANUAL_CAPS, //
    },
    eventfd::{
        self,
        EventfdCtx,
        VmIrqfds, //
    },
    ioeventfd::{
        IoeventfdArgs,
        Ioeventfds, //
    },
    irqfd::KVM_IRQFD,
    kalloc::KernelAlloc,
    mmu::{
        Notifier,
        ShadowIndex,
        VmMmu,
        VmNotifier, //
    },
    memslot::{
        self,
        Change,
        Memslot,
        MemslotHooks,
        Memslots,
        RegionIoctl, //
    },
    stats::{
        StatsId,
        VM_STATS, //
    },
    stats_fd::{
        self,
        StatsOwner, //
    },
    uapi::{
        self,
        read_user, //
    },
    vcpu::{
        self,
        Vcpu, //
    },
    vm_limits::{
        self,
        cap,
        VcpuLimits, //
    },
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
        file::flags::{
            O_CLOEXEC,
            O_RDWR, //
        },
        File,
    },
    mm::{
        virt::{
            flags as vm_flags,
            VmaRef, //
        },
        Mm,
        MmWithUser, //
    },
    new_mutex,
    new_spinlock,
    page::{
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        ArcBorrow,
        Mutex,
        SpinLock, //
    },
    transmute::AsBytes,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

impl From<Errno> for Error {
    fn from(errno: Errno) -> Error {
        super::dev::to_error(errno)
    }
}

/// What `kvm->lock` protects.
pub(crate) struct VmState {
    /// `created_vcpus`, `max_vcpus`, `KVM_MAX_VCPU_IDS`.
    limits: VcpuLimits,
    /// The vCPUs, in creation order (upstream's `vcpu_array`).
    vcpus: KVVec<Arc<Vcpu>>,
    /// The devices (`kvm->devices`), destroyed with the VM.
    pub(crate) devices: DeviceList<Vm>,
}

/// A virtual machine.
///
/// Invariant: `mm` is the address space of the process that created the VM
/// (upstream's `kvm->mm`, held with `mmgrab()`); every ioctl from another
/// address space fails with `EIO`.
#[pin_data]
pub(crate) struct Vm {
    /// `kvm->lock`.
    #[pin]
    pub(crate) state: Mutex<VmState>,
    /// `kvm->slots_lock` and address space 0.
    #[pin]
    slots: Mutex<Memslots<KernelAlloc>>,
    /// The stage-2 MMU (`kvm->mmu_lock` and what it protects), shared with
    /// the MMU notifier.
    mmu: Arc<VmMmu>,
    /// `kvm->mmu_notifier` on the creator's mm; unregistered (waiting for
    /// running callbacks) when the VM is dropped.
    #[pin]
    notifier: VmNotifier,
    /// The inactive copy of the memslots for `mmu` (under `slots`' lock,
    /// taken after it).
    #[pin]
    shadow: Mutex<ShadowIndex>,
    /// `kvm->ioeventfds` (under `slots_lock` upstream). Dropping the VM
    /// releases every eventfd reference, as `kvm_destroy_vm()` does.
    #[pin]
    ioeventfds: Mutex<Ioeventfds<KernelAlloc, EventfdCtx>>,
    /// `kvm->coalesced_zones` (under `slots_lock` upstream).
    #[pin]
    coalesced: Mutex<Zones<KernelAlloc>>,
    /// `kvm->ring_lock`: serialises the writers of `ring`.
    #[pin]
    ring_lock: SpinLock<()>,
    /// `kvm->coalesced_mmio_ring`: the zeroed ring page shared by every
    /// vCPU mapping (at `KVM_COALESCED_MMIO_PAGE_OFFSET`) and userspace.
    ring: Page,
    /// `kvm->irqfds`. Dropping the VM releases every irqfd
    /// (`kvm_irqfd_release()`).
    #[pin]
    irqfds: Mutex<VmIrqfds>,
    /// `kvm->arch.config_lock` and the arch state it protects.
    #[pin]
    arch: Mutex<<Host as Arch>::Vm>,
    /// The creator's address space (`mmgrab`).
    mm: ARef<Mm>,
    /// The creator's pid (`task_pid_nr(current)`), for the stats ids.
    pid: i32,
    /// `kvm->stats_id`: `kvm-<pid>`.
    stats_id: StatsId,
    /// The VM statistics, in [`VM_STATS`] order (nothing counts yet).
    stats: KVVec<u64>,
}

impl Vm {
    /// `KVM_CREATE_VM`: creates a VM of machine type `ty` and returns its
    /// file descriptor.
    pub(crate) fn create_fd(ty: usize) -> Result<isize> {
        let gpa_bits = Host::vm_gpa_bits(ty)?;
        let current = kernel::current!();
        // A task without an mm (a kernel thread) cannot own a VM.
        let user_mm = current.mm().ok_or(EINVAL)?;
        let mm: ARef<Mm> = ARef::from(&**user_mm);
        let mmu = Arc::pin_init(VmMmu::new(Host::stage2_new(gpa_bits)?), GFP_KERNEL_ACCOUNT)?;
        let pid = current.pid();
        let stats_id = StatsId::vm(pid);
        let mut stats = KVVec::new();
        stats.extend_with(VM_STATS.num_values(), 0u64, GFP_KERNEL_ACCOUNT)?;
        let vm = Arc::pin_init(
            try_pin_init!(Vm {
                state <- new_mutex!(VmState {
                    limits: Host::vcpu_limits(),
                    vcpus: KVVec::new(),
                    devices: DeviceList::new(),
                }),
                slots <- new_mutex!(Memslots::new(Host::memslot_limits(gpa_bits))),
                notifier <- Notifier::register(user_mm, mmu.clone()),
                mmu,
                shadow <- new_mutex!(ShadowIndex::new()),
                ioeventfds <- new_mutex!(Ioeventfds::new()),
                coalesced <- new_mutex!(Zones::new()),
                ring_lock <- new_spinlock!(()),
                ring: Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?,
                irqfds <- new_mutex!(VmIrqfds::new()),
                arch <- new_mutex!(Host::vm_create()?),
                mm,
                pid,
                stats_id,
                stats,
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        let fd = anon_inode::create_fd::<VmFile>(c"kvm-vm", vm, O_RDWR | O_CLOEXEC)?;
        isize::try_from(fd).map_err(|_| EMFILE)
    }

    /// Whether the caller runs in the VM's address space (else `EIO`, as
    /// upstream's `kvm->mm != current->mm` check).
    pub(crate) fn check_mm(&self) -> Result {
        match kernel::current!().mm() {
            Some(mm) if core::ptr::eq(mm.as_raw(), self.mm.as_raw()) => Ok(()),
            _ => Err(EIO),
        }
    }

    /// The stage-2 MMU, for the arch's fault handler.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn mmu(&self) -> &VmMmu {
        &self.mmu
    }

    /// The vCPU at index `idx` (creation order), `kvm_get_vcpu()`.
    ///
    /// Takes `kvm->lock` (upstream reads an xarray under RCU instead):
    /// callers must not hold it, and may hold a vCPU's mutex (nothing
    /// takes a vCPU's mutex under `kvm->lock`).
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn vcpu_at(&self, idx: usize) -> Option<Arc<Vcpu>> {
        self.state.lock().vcpus.get(idx).cloned()
    }

    /// Calls `f` with each vCPU and its index (`kvm_for_each_vcpu()`),
    /// under `kvm->lock` (see [`Vm::vcpu_at`]); `f` must not sleep on
    /// another vCPU's run.
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn for_each_vcpu(&self, mut f: impl FnMut(usize, &Vcpu)) {
        let st = self.state.lock();
        for (i, v) in st.vcpus.iter().enumerate() {
            f(i, v);
        }
    }

    /// The arch's VM state and its lock (`kvm->arch.config_lock`).
    pub(crate) fn arch(&self) -> &Mutex<<Host as Arch>::Vm> {
        &self.arch
    }

    /// The creator's pid.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// The statistics of the VM: id and values in [`VM_STATS`] order.
    pub(crate) fn stats(&self) -> (&StatsId, &[u64]) {
        (&self.stats_id, &self.stats)
    }

    /// What `KVM_CHECK_EXTENSION` on the VM fd knows about the VM.
    fn facts(&self) -> VmFacts {
        let max_vcpus = self.state.lock().limits.max_vcpus;
        let gpa_bits = self.slots.lock().limits().gpa_bits;
        VmFacts { gpa_bits, max_vcpus }
    }

    /// `KVM_CREATE_VCPU` (`kvm_vm_ioctl_create_vcpu()`).
    fn create_vcpu(this: ArcBorrow<'_, Vm>, arg: usize) -> Result<isize> {
        let mut st = this.state.lock();
        let in_use = {
            let vcpus = &st.vcpus;
            move |id: u64| vcpus.iter().any(|v| u64::from(v.id()) == id)
        };
        let id_in_use = in_use(arg as u64);
        let limits = st.limits;
        let id = st
            .limits
            .reserve(arg as u64, id_in_use, |id| Host::vcpu_precreate(id, &limits))?;
        match vcpu::create_fd(this.into(), &mut st.vcpus, id) {
            Ok(fd) => Ok(fd),
            Err(e) => {
                st.limits.unreserve();
                Err(e)
            }
        }
    }

    /// `KVM_SET_USER_MEMORY_REGION` and `KVM_SET_USER_MEMORY_REGION2`.
    fn set_memory_region(&self, ioctl: RegionIoctl, arg: usize) -> Result<isize> {
        let mem = match ioctl {
            RegionIoctl::V1 => {
                let m: uapi::UserMemoryRegion = read_user(arg)?;
                memslot::UserMemoryRegion {
                    slot: m.slot,
                    flags: m.flags,
                    guest_phys_addr: m.guest_phys_addr,
                    memory_size: m.memory_size,
                    userspace_addr: m.userspace_addr,
                    ..Default::default()
                }
            }
            RegionIoctl::V2 => {
                let m: uapi::UserMemoryRegion2 = read_user(arg)?;
                memslot::UserMemoryRegion {
                    slot: m.slot,
                    flags: m.flags,
                    guest_phys_addr: m.guest_phys_addr,
                    memory_size: m.memory_size,
                    userspace_addr: m.userspace_addr,
                    guest_memfd_offset: m.guest_memfd_offset,
                    guest_memfd: m.guest_memfd,
                }
            }
        };
        let mut slots = self.slots.lock();
        let mut shadow = self.shadow.lock();
        // Room is made before the change, so that publishing it cannot fail.
        shadow.prepare(&slots)?;
        let mut hooks = SlotHooks { mmu: &self.mmu, invalidated: None, committed: None };
        let changed = slots.set_memory_region(ioctl, &mem, &mut hooks);
        if let Some((old, new)) = hooks.committed {
            shadow.commit(&self.mmu, &slots, old.as_ref(), new.as_ref());
        } else if let Some(id) = hooks.invalidated {
            // A DELETE or MOVE failed after its slot was made INVALID.
            self.mmu.revalidate_slot(id);
        }
        let change = changed?;
        // A slot that logs dirty pages starts write-protected, unless
        // userspace asked for all-dirty bitmaps and protects as it clears
        // them (`kvm_arch_commit_memory_region()`).
        let logs = matches!(change, Some(c) if c != Change::Delete)
            && mem.flags & memslot::KVM_MEM_LOG_DIRTY_PAGES != 0
            && !slots.dirty_log_initially_set();
        if logs {
            // The id's low 16 bits (address space 0 is the only one).
            if let Some(s) = slots.id_to_memslot(mem.slot as u16) {
                self.mmu.wrprotect(s.base_gfn, s.end_gfn());
                self.mmu.flush_wrprotected();
            }
        }
        Ok(0)
    }

    /// `KVM_ENABLE_CAP` on the VM fd (`kvm_vm_ioctl_enable_cap_generic()`,
    /// then the arch's).
    fn enable_cap(&self, arg: usize) -> Result<isize> {
        let ec: uapi::EnableCap = read_user(arg)?;
        if i64::from(ec.cap) == cap::MANUAL_DIRTY_LOG_PROTECT2 {
            self.slots
                .lock()
                .enable_manual_dirty_log_protect(ec.flags, ec.args[0], KVM_DIRTY_LOG_MANUAL_CAPS)?;
            return Ok(0);
        }
        let st = self.state.lock();
        let mut slots = self.slots.lock();
        let in_use = VmInUse {
            vcpus: st.limits.created != 0,
            memslots: !slots.is_empty(),
        };
        match Host::vm_enable_cap(ec.cap, ec.flags, &ec.args, in_use, &mut self.arch.lock())? {
            VmCapChange::GpaBits(bits) => {
                // Nothing is mapped yet (no memslot): new, empty tables of
                // the new size replace the old ones.
                let fresh = Host::stage2_new(bits);
                slots.set_gpa_bits(bits)?;
                self.mmu.replace_stage2(fresh?);
            }
            VmCapChange::None => {}
        }
        Ok(0)
    }

    /// `KVM_GET_DIRTY_LOG` (`kvm_vm_ioctl_get_dirty_log()`).
    fn get_dirty_log(&self, arg: usize) -> Result<isize> {
        let log: uapi::DirtyLog = read_user(arg)?;
        let mut words = KVVec::<u64>::new();
        let slots = self.slots.lock();
        // Without manual protection the pages reported dirty are
        // write-protected again, and the TLBs flushed before the bitmap
        // reaches userspace (`kvm_get_dirty_log_protect()`).
        let done = slots.get_dirty_log(log.slot, &mut words, &mut |s: &Memslot, offset, mask| {
            self.wrprotect_masked(s, offset, mask)
        })?;
        if done.flush {
            self.mmu.flush_wrprotected();
        }
        let bytes = AsBytes::as_bytes(words.as_slice());
        let user = usize::try_from(log.dirty_bitmap).map_err(|_| EFAULT)?;
        UserSlice::new(UserPtr::from_addr(user), bytes.len()).writer().write_slice(bytes)?;
        Ok(0)
    }

    /// `KVM_CLEAR_DIRTY_LOG` (`kvm_vm_ioctl_clear_dirty_log()`).
    fn clear_dirty_log(&self, arg: usize) -> Result<isize> {
        let log: uapi::ClearDirtyLog = read_user(arg)?;
        let req = dirty_log::ClearDirtyLog {
            slot: log.slot,
            num_pages: log.num_pages,
            first_page: log.first_page,
        };
        let mut buf = KVVec::<u64>::new();
        let buf_ref = &mut buf;
        let read = move |n: usize| -> Result<&[u64], Errno> {
            // Moving the reference in makes this an `FnOnce` that can
            // return a borrow of `buf`.
            let buf_ref = buf_ref;
            buf_ref.extend_with(n, 0, GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)?;
            let user = usize::try_from(log.dirty_bitmap).map_err(|_| Errno::EFAULT)?;
            let bytes = AsBytes::as_bytes_mut(buf_ref.as_mut_slice());
            UserSlice::new(UserPtr::from_addr(user), bytes.len())
                .reader()
                .read_slice(bytes)
                .map_err(|_| Errno::EFAULT)?;
            Ok(buf_ref.as_slice())
        };
        let done = self.slots.lock().clear_dirty_log(&req, read, &mut |s: &Memslot, offset, mask| {
            self.wrprotect_masked(s, offset, mask)
        })?;
        if done.flush {
            self.mmu.flush_wrprotected();
        }
        Ok(0)
    }

    /// Write-protects the pages of `mask` (bit 0: page `offset` of `slot`)
    /// again (`kvm_arch_mmu_enable_log_dirty_pt_masked()`); the caller
    /// flushes.
    fn wrprotect_masked(&self, slot: &Memslot, offset: u64, mask: u64) {
        for (start, end) in dirty_log::mask_gfn_runs(slot.base_gfn, offset, mask) {
            self.mmu.wrprotect(start, end);
        }
    }

    /// `mark_page_dirty()`: a vCPU wrote guest frame `gfn` through a
    /// writable stage-2 mapping it just installed; sets its bit if its slot
    /// logs dirty pages. May sleep (takes `slots_lock`).
    #[allow(dead_code)]
    pub(crate) fn mark_page_dirty(&self, gfn: u64) {
        self.slots.lock().mark_page_dirty(gfn);
    }

    /// A guest MMIO write of `data` (1 to 8 bytes) at `addr` on the VM's
    /// MMIO bus (`kvm_io_bus_write(KVM_MMIO_BUS)`): `true` if an
    /// ioeventfd took it (its eventfd is signalled) or a coalesced-MMIO
    /// zone did (appended to the ring); either way the write needs no exit
    /// to userspace. ioeventfds are asked first (upstream walks the bus in
    /// address order; the two only compete where both cover the address).
    #[cfg_attr(CONFIG_ARM64, allow(dead_code))]
    pub(crate) fn mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        let Ok(len) = u32::try_from(data.len()) else { return false };
        let mut b = [0u8; 8];
        let Some(dst) = b.get_mut(..data.len()) else { return false };
        dst.copy_from_slice(data);
        let value = u64::from_le_bytes(b);
        {
            let fds = self.ioeventfds.lock();
            if let Some(e) = fds.mmio_write_target(addr, len, value) {
                e.signal();
                return true;
            }
        }
        let zones = self.coalesced.lock();
        zones.mmio_hit(addr, len) && self.ring_append(addr, data)
    }

    /// The ring page, for the vCPU mappings.
    pub(crate) fn coalesced_ring(&self) -> &Page {
        &self.ring
    }

    /// Appends an MMIO write to the ring under `kvm->ring_lock`.
    fn ring_append(&self, addr: u64, data: &[u8]) -> bool {
        let _guard = self.ring_lock.lock();
        ring_append(&self.ring, addr, data)
    }

    /// `KVM_REGISTER_COALESCED_MMIO` / `KVM_UNREGISTER_COALESCED_MMIO`.
    fn coalesced_mmio(&self, arg: usize, register: bool) -> Result<isize> {
        let a: uapi::CoalescedMmioZone = read_user(arg)?;
        let zone = Zone { addr: a.addr, size: a.size, pio: a.pio };
        let mut zones = self.coalesced.lock();
        if register {
            zones.register(&zone)?;
        } else {
            zones.unregister(&zone)?;
        }
        Ok(0)
    }

    /// `KVM_IOEVENTFD` (`kvm_ioeventfd()`): registration; guest MMIO
    /// writes signal the eventfds ([`Vm::mmio_write`]).
    fn ioeventfd(&self, arg: usize) -> Result<isize> {
        let a: uapi::Ioeventfd = read_user(arg)?;
        let args = IoeventfdArgs {
            datamatch: a.datamatch,
            addr: a.addr,
            len: a.len,
            fd: a.fd,
            flags: a.flags,
        };
        self.ioeventfds.lock().ioctl(&args, EventfdCtx::fdget)?;
        Ok(0)
    }

    /// `kvm_vm_ioctl()`.
    fn ioctl(this: ArcBorrow<'_, Vm>, cmd: u32, arg: usize) -> Result<isize> {
        this.check_mm()?;
        match cmd {
            vm_limits::KVM_CREATE_VCPU => Vm::create_vcpu(this, arg),
            memslot::KVM_SET_USER_MEMORY_REGION => this.set_memory_region(RegionIoctl::V1, arg),
            memslot::KVM_SET_USER_MEMORY_REGION2 => this.set_memory_region(RegionIoctl::V2, arg),
            KVM_CHECK_EXTENSION => Ok(check_extension(arg, Some(&this.facts()))),
            uapi::KVM_ENABLE_CAP => this.enable_cap(arg),
            dirty_log::KVM_GET_DIRTY_LOG => this.get_dirty_log(arg),
            dirty_log::KVM_CLEAR_DIRTY_LOG => this.clear_dirty_log(arg),
            super::stats::KVM_GET_STATS_FD => stats_fd::create_fd(StatsOwner::Vm(this.into())),
            uapi::KVM_IOEVENTFD => this.ioeventfd(arg),
            coalesced_mmio::KVM_REGISTER_COALESCED_MMIO => this.coalesced_mmio(arg, true),
            coalesced_mmio::KVM_UNREGISTER_COALESCED_MMIO => this.coalesced_mmio(arg, false),
            KVM_IRQFD => eventfd::irqfd_ioctl(&this.irqfds, arg),
            KVM_CREATE_DEVICE => device_fd::create_ioctl(this, arg),
            _ => Ok(Host::vm_ioctl(cmd, arg)?),
        }
    }
}

/// `coalesced_mmio_write()` past the range check: appends an MMIO
/// write of `data` (at most 8 bytes) at `addr` to the ring; `false` if
/// the ring is full or userspace left `last` out of range. The caller
/// serialises writers (`kvm->ring_lock`); userspace may touch the page
/// at any time.
pub(crate) fn ring_append(ring: &Page, addr: u64, data: &[u8]) -> bool {
    let max = coalesced_mmio::ring_max(PAGE_SIZE);
    let Ok(len) = u32::try_from(data.len()) else { return false };
    if data.len() > 8 {
        return false;
    }
    // SAFETY: `ring` is a valid page; the local mapping is undone below,
    // in reverse order of mapping.
    let base = unsafe { bindings::kmap_local_page(ring.as_ptr()) }.cast::<u8>();
    // SAFETY: `base` maps a whole page; `first` and `last` are `u32`s
    // at offsets 0 and 4 of the page-aligned mapping. Userspace may
    // write them at any time, so each is read once, volatile
    // (`READ_ONCE()`); any value is valid and is only trusted after
    // `ring_insert()` checked it.
    let (first, last) = unsafe {
        (
            core::ptr::read_volatile(base.add(coalesced_mmio::RING_FIRST).cast::<u32>()),
            core::ptr::read_volatile(base.add(coalesced_mmio::RING_LAST).cast::<u32>()),
        )
    };
    let slot = coalesced_mmio::ring_insert(first, last, max)
        .and_then(|(i, next)| Some((coalesced_mmio::entry_offset(i, PAGE_SIZE)?, next)));
    let done = if let Some((off, next)) = slot {
        // SAFETY: `entry_offset()` checked that the 24-byte entry at
        // `off` (8-aligned: 8 + 24 * i) lies inside the page; `len <= 8`
        // bytes of `data` fit its `data` field. Userspace may read or
        // write the page concurrently, so every store is volatile.
        unsafe {
            let e = base.add(off);
            core::ptr::write_volatile(e.cast::<u64>(), addr);
            core::ptr::write_volatile(e.add(coalesced_mmio::ENTRY_LEN).cast::<u32>(), len);
            core::ptr::write_volatile(e.add(coalesced_mmio::ENTRY_PIO).cast::<u32>(), 0);
            for (k, byte) in data.iter().enumerate() {
                core::ptr::write_volatile(e.add(coalesced_mmio::ENTRY_DATA + k), *byte);
            }
        }
        // `smp_wmb()`: the entry is visible before the new `last`.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        // SAFETY: as for the reads of `first` and `last` above.
        unsafe { core::ptr::write_volatile(base.add(coalesced_mmio::RING_LAST).cast::<u32>(), next) };
        true
    } else {
        false
    };
    // SAFETY: `base` was returned by `kmap_local_page` above.
    unsafe { bindings::kunmap_local(base.cast()) };
    done
}

/// kvm_rs's `KVM_CHECK_EXTENSION` answer for `/dev/kvm` (`vm` = `None`) or
/// a VM fd. The argument is the capability, as upstream's `long arg`.
pub(crate) fn check_extension(arg: usize, vm: Option<&VmFacts>) -> isize {
    let answer = vm_limits::kvm_rs_check_extension(arg as i64, |c| Host::check_extension(c, vm));
    // Every answer kvm_rs gives fits (the largest is a GPA size or a count).
    isize::try_from(answer).unwrap_or(0)
}

/// The arch part of a memslot change (`kvm_arch_prepare_memory_region()`).
/// Runs in the ioctl of the VM's creator (`check_mm`), so the VMAs are
/// those of the current task's mm, as upstream's `current->mm`.
struct SlotHooks<'a> {
    mmu: &'a VmMmu,
    /// The slot made INVALID by a DELETE or MOVE.
    invalidated: Option<u16>,
    /// The committed change: the old and the new slot.
    committed: Option<(Option<Memslot>, Option<Memslot>)>,
}

impl MemslotHooks for SlotHooks<'_> {
    fn prepare(&mut self, _old: Option<&Memslot>, new: Option<&Memslot>, change: Change) -> Result<(), Errno> {
        // Both upstream arches check the VMAs behind a created, moved or
        // re-flagged slot.
        let Some(new) = new else {
            return Ok(());
        };
        if !matches!(change, Change::Create | Change::Move | Change::FlagsOnly) {
            return Ok(());
        }
        let current = kernel::current!();
        let mm = current.mm().ok_or(Errno::EINVAL)?;
        check_vmas(mm, new)
    }

    fn flush_shadow(&mut self, old: &Memslot) {
        self.invalidated = Some(old.id);
        self.mmu.invalidate_slot(old);
    }

    fn commit(&mut self, old: Option<&Memslot>, new: Option<&Memslot>, _change: Change) {
        self.committed = Some((old.copied(), new.copied()));
    }
}

/// The VMA walk of riscv and arm64 `kvm_arch_prepare_memory_region()`: a
/// `VM_PFNMAP` VMA cannot back a dirty-logging slot (`EINVAL`), and where
/// the arch says so every VMA intersecting a writable slot must be writable
/// (`EPERM`).
fn check_vmas(mm: &MmWithUser, slot: &Memslot) -> Result<(), Errno> {
    let size = slot.npages.checked_shl(kernel::page::PAGE_SHIFT as u32).ok_or(Errno::EINVAL)?;
    let start = usize::try_from(slot.userspace_addr).map_err(|_| Errno::EINVAL)?;
    let size = usize::try_from(size).map_err(|_| Errno::EINVAL)?;
    let end = start.checked_add(size).ok_or(Errno::EINVAL)?;
    let writable = Host::SLOT_NEEDS_WRITABLE_VMA && !slot.is_readonly();
    let logging = slot.flags & memslot::KVM_MEM_LOG_DIRTY_PAGES != 0;
    let _guard = mm.mmap_read_lock();
    let mut hva = start;
    while hva < end {
        // SAFETY: `mm` is valid and its mmap lock is held for reading (by
        // `_guard`), as `find_vma_intersection()` requires.
        let vma = unsafe { bindings::find_vma_intersection(mm.as_raw(), hva, end) };
        if vma.is_null() {
            break;
        }
        // SAFETY: `vma` is a VMA of `mm`, valid while the mmap read lock is
        // held, which it is until the end of this function.
        let vma = unsafe { VmaRef::from_raw(vma) };
        if writable && vma.flags() & vm_flags::WRITE == 0 {
            return Err(Errno::EPERM);
        }
        if logging && vma.flags() & vm_flags::PFNMAP != 0 {
            return Err(Errno::EINVAL);
        }
        hva = vma.end().min(end);
    }
    Ok(())
}

/// The file operations of a VM fd.
struct VmFile;

#[vtable]
impl AnonInodeFile for VmFile {
    type Ptr = Arc<Vm>;

    fn ioctl(vm: ArcBorrow<'_, Vm>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        Vm::ioctl(vm, cmd, arg)
    }
}
