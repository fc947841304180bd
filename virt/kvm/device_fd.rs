// SPDX-License-Identifier: GPL-2.0

//! In-kernel devices (`KVM_CREATE_DEVICE`) and their file descriptors
//! (`anon_inode:<type name>`): upstream's `struct kvm_device_ops`,
//! `kvm_ioctl_create_device()`, `kvm_device_ioctl()` and
//! `kvm_device_release()` (`virt/kvm/kvm_main.c`). The checks themselves
//! are pure, in [`device`](super::device).
//!
//! # Device types
//!
//! A type is a `static` [`DeviceOps`] (upstream's `kvm_device_ops`): its
//! name, which attribute accessors it has, whether closing the fd releases
//! the device, and a constructor. The constructor returns the device as a
//! `KBox<dyn Device<C>>`: the [`Device`] trait has the per-device
//! operations, each given the VM (`C`) as context. The architecture
//! registers types through [`Arch::device_ops`](super::arch::Arch::device_ops)
//! (none exist in kvm_rs yet, so every type is `ENODEV`, as upstream answers
//! for a type no one registered).
//!
//! How the in-kernel interrupt controllers will plug in:
//!
//! - arm64 vGICv3: a `static VGIC_V3_OPS: VmDeviceOps` named
//!   `"kvm-arm-vgic-v3"` with [`Accessors::ALL`], returned by
//!   `Host::device_ops(KVM_DEV_TYPE_ARM_VGIC_V3)` on a GICv3 host. Its
//!   `create` runs under `kvm->lock` and refuses a second vGIC (`EEXIST`)
//!   or a VM whose vCPUs have run (`EBUSY`), and creates the vGIC in the
//!   VM's arch state; the device object itself is a handle. Its attribute
//!   groups (`KVM_DEV_ARM_VGIC_GRP_ADDR`, `DIST_REGS`, `REDIST_REGS`,
//!   `CPU_SYSREGS`, `NR_IRQS`, `CTRL` with `CTRL_INIT`, `LEVEL_INFO`,
//!   `MAINT_IRQ`) are decoded in `set_attr`/`get_attr`/`has_attr`, which
//!   return `ENXIO` for an unknown group or attribute as upstream's do.
//!   `KVM_DEV_TYPE_ARM_VGIC_ITS` follows the same way, one device per ITS.
//!   vGIC devices have no `release` (they live until the VM is destroyed).
//! - riscv64 AIA: `"kvm-riscv-aia"`, `KVM_DEV_TYPE_RISCV_AIA`, offered on a
//!   host with Ssaia, groups `KVM_DEV_RISCV_AIA_GRP_CONFIG`, `ADDR`,
//!   `CTRL` (`CTRL_INIT`), `APLIC` and `IMSIC`.
//!
//! # Lifetime
//!
//! As upstream: a device belongs to its VM's device list (under
//! `kvm->lock`, the VM's `state`) from creation until the VM is destroyed,
//! and is then dropped (upstream's `ops->destroy`); its fd holds a VM
//! reference, so the VM outlives every device fd. A type with
//! [`DeviceOps::release_on_close`] (upstream: a `release` op) instead
//! leaves the list when its fd is closed, after [`Device::release`].
//!
//! Not yet: `mmap` on a device fd (upstream forwards it to `ops->mmap`,
//! which no riscv64 or arm64 type has; without the operation the VFS
//! answers `ENODEV`, as upstream does), and `vm_dead` (`EIO`; kvm_rs never
//! marks a VM dead).

use super::{
    abi::Errno,
    arch::Arch,
    device::{
        check_create,
        classify_ioctl,
        Accessors,
        AttrOp,
        CreateStep,
        DeviceIoctl, //
    },
    uapi::{
        read_user,
        CreateDevice,
        DeviceAttr, //
    },
    vm::Vm,
};
use crate::arch::Host;
use kernel::{
    alloc::KVVec,
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
    prelude::*,
    sync::{
        Arc,
        ArcBorrow, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

/// A device type (upstream's `struct kvm_device_ops`), for devices of VMs
/// of context type `C`.
pub(crate) struct DeviceOps<C: ?Sized + 'static> {
    /// The anonymous inode's name (`anon_inode:<name>`).
    pub(crate) name: &'static CStr,
    /// Which of `set_attr`, `get_attr`, `has_attr` exist (`EPERM` for the
    /// others).
    pub(crate) accessors: Accessors,
    /// Upstream's `release` op: closing the fd removes the device from the
    /// VM (after [`Device::release`]). Without it the device lives until
    /// the VM is destroyed.
    pub(crate) release_on_close: bool,
    /// Upstream's `create`: makes a device of type `ty`. Called with
    /// `kvm->lock` (the VM's `state`) held: it must not take it.
    pub(crate) create: DeviceCtor<C>,
}

/// A device type's constructor ([`DeviceOps::create`]).
pub(crate) type DeviceCtor<C> = fn(vm: &C, ty: u32) -> Result<KBox<dyn Device<C>>, Errno>;

/// The device types of a VM of kvm_rs.
pub(crate) type VmDeviceOps = DeviceOps<Vm>;

/// One device's operations. Dropping it is upstream's `destroy` (or the
/// end of `release`).
///
/// The methods take `&self`: device fd ioctls may run concurrently, so a
/// device locks what it changes (upstream's devices take `kvm->lock` or
/// their own locks).
pub(crate) trait Device<C: ?Sized>: Send + Sync {
    /// Upstream's `init`: after `create`, without `kvm->lock`.
    fn init(&self, _vm: &C) {}

    /// `KVM_SET_DEVICE_ATTR`; only called if [`DeviceOps::accessors`] has
    /// `set`.
    fn set_attr(&self, _vm: &C, _attr: &DeviceAttr) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// `KVM_GET_DEVICE_ATTR`; only called if the type has `get`.
    fn get_attr(&self, _vm: &C, _attr: &DeviceAttr) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// `KVM_HAS_DEVICE_ATTR`; only called if the type has `has`.
    fn has_attr(&self, _vm: &C, _attr: &DeviceAttr) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// Any other ioctl on the device fd (upstream's `ioctl` op).
    fn ioctl(&self, _vm: &C, _cmd: u32, _arg: usize) -> Result<isize, Errno> {
        Err(Errno::ENOTTY)
    }

    /// Upstream's `release`, for a type with
    /// [`DeviceOps::release_on_close`]: the fd is being closed; called with
    /// `kvm->lock` held, after the device left the VM's list.
    fn release(&self, _vm: &C) {}
}

/// A device of a VM (upstream's `struct kvm_device`).
pub(crate) struct KvmDevice<C: ?Sized + 'static> {
    /// Its type.
    ops: &'static DeviceOps<C>,
    /// The device.
    dev: KBox<dyn Device<C>>,
}

impl<C: ?Sized> KvmDevice<C> {
    /// An attribute ioctl whose accessor the type has, with the attribute
    /// already read.
    fn attr(&self, vm: &C, op: AttrOp, attr: &DeviceAttr) -> Result<(), Errno> {
        match op {
            AttrOp::Set => self.dev.set_attr(vm, attr),
            AttrOp::Get => self.dev.get_attr(vm, attr),
            AttrOp::Has => self.dev.has_attr(vm, attr),
        }
    }
}

/// The devices of a VM (upstream's `kvm->devices`), under `kvm->lock`.
pub(crate) struct DeviceList<C: ?Sized + 'static> {
    devices: KVVec<Arc<KvmDevice<C>>>,
}

impl<C: ?Sized> DeviceList<C> {
    /// No device.
    pub(crate) const fn new() -> Self {
        DeviceList { devices: KVVec::new() }
    }

    /// The number of devices.
    pub(crate) fn len(&self) -> usize {
        self.devices.len()
    }

    /// Creates a device of type `ty` with `ops` and adds it to the list
    /// (the part of `kvm_ioctl_create_device()` under `kvm->lock`).
    fn create(&mut self, vm: &C, ops: &'static DeviceOps<C>, ty: u32) -> Result<Arc<KvmDevice<C>>, Errno> {
        // Room first, so that a created device always joins the list.
        self.devices.reserve(1, GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)?;
        let dev = (ops.create)(vm, ty)?;
        let dev = Arc::new(KvmDevice { ops, dev }, GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)?;
        // Cannot fail: capacity was reserved above.
        self.devices.push_within_capacity(dev.clone()).map_err(|_| Errno::ENOMEM)?;
        Ok(dev)
    }

    /// Takes `dev` out of the list, if it is there.
    fn remove(&mut self, dev: &Arc<KvmDevice<C>>) -> Option<Arc<KvmDevice<C>>> {
        let index = self.devices.iter().position(|d| Arc::ptr_eq(d, dev))?;
        self.devices.remove(index).ok()
    }

    /// `kvm_device_release()` under `kvm->lock`: a type with a release
    /// leaves the list (and is released); the others stay until the VM is
    /// destroyed.
    fn close(&mut self, vm: &C, dev: &Arc<KvmDevice<C>>) {
        if !dev.ops.release_on_close {
            return;
        }
        if let Some(d) = self.remove(dev) {
            d.dev.release(vm);
        }
    }

    /// Undoes [`DeviceList::create`] when no fd could be made for the
    /// device: out of the list, released if the type releases, dropped.
    fn discard(&mut self, vm: &C, dev: &Arc<KvmDevice<C>>) {
        if let Some(d) = self.remove(dev) {
            if d.ops.release_on_close {
                d.dev.release(vm);
            }
        }
    }
}

/// Writes `cd` back to the user argument `arg` (`EFAULT`).
fn write_back(arg: usize, cd: &CreateDevice) -> Result {
    UserSlice::new(UserPtr::from_addr(arg), size_of::<CreateDevice>()).writer().write(cd)
}

/// `KVM_CREATE_DEVICE` on a VM fd (`kvm_ioctl_create_device()` and the
/// copies around it).
pub(crate) fn create_ioctl(vm: ArcBorrow<'_, Vm>, arg: usize) -> Result<isize> {
    let mut cd: CreateDevice = read_user(arg)?;
    let ty = cd.ty;
    let ops = match check_create(ty, cd.flags, Host::device_ops)? {
        CreateStep::Test => {
            write_back(arg, &cd)?;
            return Ok(0);
        }
        CreateStep::Create(ops) => ops,
    };
    let dev = vm.state.lock().devices.create(&vm, ops, ty)?;
    dev.dev.init(&vm);
    let vm: Arc<Vm> = vm.into();
    let data = match KBox::new(DeviceRef { vm: vm.clone(), dev: dev.clone() }, GFP_KERNEL_ACCOUNT) {
        Ok(data) => data,
        Err(e) => {
            vm.state.lock().devices.discard(&vm, &dev);
            return Err(e.into());
        }
    };
    let fd = match anon_inode::create_fd::<DeviceFile>(ops.name, data, O_RDWR | O_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => {
            vm.state.lock().devices.discard(&vm, &dev);
            return Err(e);
        }
    };
    cd.fd = fd;
    // The device and its fd stay even if this fails, as upstream.
    write_back(arg, &cd)?;
    Ok(0)
}

/// What a device fd refers to.
pub(crate) struct DeviceRef {
    /// The VM (upstream's `kvm_get_kvm()` of the device fd).
    vm: Arc<Vm>,
    /// The device, also in the VM's list.
    dev: Arc<KvmDevice<Vm>>,
}

impl DeviceRef {
    /// `kvm_device_ioctl()`.
    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        self.vm.check_mm()?;
        match classify_ioctl(cmd, self.dev.ops.accessors)? {
            DeviceIoctl::Attr(op) => {
                let attr: DeviceAttr = read_user(arg)?;
                self.dev.attr(&self.vm, op, &attr)?;
                Ok(0)
            }
            DeviceIoctl::Other => Ok(self.dev.dev.ioctl(&self.vm, cmd, arg)?),
        }
    }
}

/// The file operations of a device fd.
struct DeviceFile;

#[vtable]
impl AnonInodeFile for DeviceFile {
    type Ptr = KBox<DeviceRef>;

    fn ioctl(this: &DeviceRef, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        this.ioctl(cmd, arg)
    }

    fn release(this: KBox<DeviceRef>, _file: &File) {
        this.vm.state.lock().devices.close(&this.vm, &this.dev);
    }
}

#[kunit_tests(kvm_rs_device)]
mod tests {
    use super::*;
    use crate::kvm::device::{
        dev_type,
        KVM_CREATE_DEVICE_TEST,
        KVM_DEV_TYPE_MAX,
        KVM_GET_DEVICE_ATTR,
        KVM_HAS_DEVICE_ATTR,
        KVM_SET_DEVICE_ATTR, //
    };
    use core::sync::atomic::{
        AtomicU32,
        AtomicU64,
        Ordering, //
    };
    use kernel::sync::Mutex;

    /// The VM of these tests: counts what happens to its devices.
    #[derive(Default)]
    struct TestVm {
        created: AtomicU32,
        released: AtomicU32,
        /// Refuse creation with this errno (0: accept).
        refuse: AtomicU32,
        /// Shared with the devices, which count their own drops.
        dropped: Option<Arc<AtomicU32>>,
    }

    /// A test-only device type (never registered for userspace): one
    /// attribute group 1 with attributes 0..4 holding a u64 each; group 2
    /// `ENXIO` for everything; `ioctl` answers its command number.
    struct TestDev {
        regs: [AtomicU64; 4],
        dropped: Option<Arc<AtomicU32>>,
    }

    impl Drop for TestDev {
        fn drop(&mut self) {
            if let Some(d) = &self.dropped {
                d.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    impl TestDev {
        fn reg(&self, attr: &DeviceAttr) -> Result<&AtomicU64, Errno> {
            if attr.group != 1 {
                return Err(Errno::ENXIO);
            }
            let i = usize::try_from(attr.attr).map_err(|_| Errno::ENXIO)?;
            self.regs.get(i).ok_or(Errno::ENXIO)
        }
    }

    impl Device<TestVm> for TestDev {
        fn set_attr(&self, _vm: &TestVm, attr: &DeviceAttr) -> Result<(), Errno> {
            // The value is in `addr` itself, to keep userspace out of it.
            self.reg(attr)?.store(attr.addr, Ordering::Relaxed);
            Ok(())
        }

        fn get_attr(&self, _vm: &TestVm, attr: &DeviceAttr) -> Result<(), Errno> {
            let v = self.reg(attr)?.load(Ordering::Relaxed);
            if v != attr.addr {
                return Err(Errno::EINVAL);
            }
            Ok(())
        }

        fn has_attr(&self, _vm: &TestVm, attr: &DeviceAttr) -> Result<(), Errno> {
            self.reg(attr).map(|_| ())
        }

        fn ioctl(&self, _vm: &TestVm, cmd: u32, _arg: usize) -> Result<isize, Errno> {
            Ok(cmd as isize)
        }

        fn release(&self, vm: &TestVm) {
            vm.released.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn create_test_dev(vm: &TestVm, _ty: u32) -> Result<KBox<dyn Device<TestVm>>, Errno> {
        let refuse = vm.refuse.load(Ordering::Relaxed);
        if refuse != 0 {
            return Err(Errno(refuse as i32));
        }
        vm.created.fetch_add(1, Ordering::Relaxed);
        let dev = TestDev {
            regs: Default::default(),
            dropped: vm.dropped.clone(),
        };
        let dev: KBox<dyn Device<TestVm>> = KBox::new(dev, GFP_KERNEL).map_err(|_| Errno::ENOMEM)?;
        Ok(dev)
    }

    /// Lives until the VM is destroyed (as the vGIC).
    static PERSISTENT: DeviceOps<TestVm> = DeviceOps {
        name: c"kvm-rs-test-persistent",
        accessors: Accessors::ALL,
        release_on_close: false,
        create: create_test_dev,
    };

    /// Released when its fd is closed; only `has_attr`.
    static RELEASING: DeviceOps<TestVm> = DeviceOps {
        name: c"kvm-rs-test-releasing",
        accessors: Accessors { set: false, get: false, has: true },
        release_on_close: true,
        create: create_test_dev,
    };

    /// The registry of these tests: two types, at numbers no riscv64 or
    /// arm64 type uses upstream.
    fn lookup(ty: u32) -> Option<&'static DeviceOps<TestVm>> {
        match ty {
            1 => Some(&PERSISTENT),
            2 => Some(&RELEASING),
            _ => None,
        }
    }

    fn attr(group: u32, attr: u64, addr: u64) -> DeviceAttr {
        DeviceAttr { flags: 0, group, attr, addr }
    }

    /// The device fd's attribute dispatch, without the copy from userspace.
    fn attr_ioctl(dev: &KvmDevice<TestVm>, vm: &TestVm, cmd: u32, a: &DeviceAttr) -> Result<isize, Errno> {
        match classify_ioctl(cmd, dev.ops.accessors)? {
            DeviceIoctl::Attr(op) => dev.attr(vm, op, a).map(|()| 0),
            DeviceIoctl::Other => dev.dev.ioctl(vm, cmd, 0),
        }
    }

    #[test]
    fn no_type_is_offered_to_userspace_yet() {
        for ty in 0..=KVM_DEV_TYPE_MAX + 1 {
            assert!(Host::device_ops(ty).is_none());
            assert_eq!(check_create(ty, KVM_CREATE_DEVICE_TEST, Host::device_ops).err(), Some(Errno::ENODEV));
        }
        assert!(Host::device_ops(dev_type::ARM_VGIC_V3).is_none());
        assert!(Host::device_ops(dev_type::RISCV_AIA).is_none());
    }

    #[test]
    fn create_checks_then_creates() -> Result {
        let vm = TestVm::default();
        let mut list = DeviceList::<TestVm>::new();
        assert_eq!(check_create(3, 0, lookup).err(), Some(Errno::ENODEV));
        assert_eq!(check_create(KVM_DEV_TYPE_MAX, 0, lookup).err(), Some(Errno::ENODEV));
        assert!(matches!(check_create(1, KVM_CREATE_DEVICE_TEST, lookup), Ok(CreateStep::Test)));
        let Ok(CreateStep::Create(ops)) = check_create(1, 0, lookup) else {
            return Err(EINVAL);
        };
        assert_eq!(ops.name.to_bytes(), b"kvm-rs-test-persistent");
        let d = list.create(&vm, ops, 1).map_err(|_| EINVAL)?;
        assert_eq!(list.len(), 1);
        assert_eq!(vm.created.load(Ordering::Relaxed), 1);
        // A refusing create leaves the list as it was.
        vm.refuse.store(Errno::EEXIST.0 as u32, Ordering::Relaxed);
        assert_eq!(list.create(&vm, ops, 1).err(), Some(Errno::EEXIST));
        assert_eq!(list.len(), 1);
        drop(d);
        Ok(())
    }

    #[test]
    fn attributes_dispatch_to_the_type() -> Result {
        let vm = TestVm::default();
        let mut list = DeviceList::<TestVm>::new();
        let p = list.create(&vm, &PERSISTENT, 1).map_err(|_| EINVAL)?;
        assert_eq!(attr_ioctl(&p, &vm, KVM_HAS_DEVICE_ATTR, &attr(1, 3, 0)), Ok(0));
        assert_eq!(attr_ioctl(&p, &vm, KVM_HAS_DEVICE_ATTR, &attr(1, 4, 0)), Err(Errno::ENXIO));
        assert_eq!(attr_ioctl(&p, &vm, KVM_HAS_DEVICE_ATTR, &attr(2, 0, 0)), Err(Errno::ENXIO));
        assert_eq!(attr_ioctl(&p, &vm, KVM_SET_DEVICE_ATTR, &attr(1, 2, 0x1234)), Ok(0));
        assert_eq!(attr_ioctl(&p, &vm, KVM_GET_DEVICE_ATTR, &attr(1, 2, 0x1234)), Ok(0));
        assert_eq!(attr_ioctl(&p, &vm, KVM_GET_DEVICE_ATTR, &attr(1, 2, 0x1235)), Err(Errno::EINVAL));
        assert_eq!(attr_ioctl(&p, &vm, KVM_SET_DEVICE_ATTR, &attr(1, u64::MAX, 0)), Err(Errno::ENXIO));
        assert_eq!(attr_ioctl(&p, &vm, 0x1234, &attr(0, 0, 0)), Ok(0x1234));
        // Missing accessors are EPERM, has_attr still works.
        let r = list.create(&vm, &RELEASING, 2).map_err(|_| EINVAL)?;
        assert_eq!(attr_ioctl(&r, &vm, KVM_SET_DEVICE_ATTR, &attr(1, 0, 0)), Err(Errno::EPERM));
        assert_eq!(attr_ioctl(&r, &vm, KVM_GET_DEVICE_ATTR, &attr(1, 0, 0)), Err(Errno::EPERM));
        assert_eq!(attr_ioctl(&r, &vm, KVM_HAS_DEVICE_ATTR, &attr(1, 0, 0)), Ok(0));
        Ok(())
    }

    #[test]
    fn devices_live_until_the_vm_unless_released_on_close() -> Result {
        let dropped = Arc::new(AtomicU32::new(0), GFP_KERNEL)?;
        let vm = TestVm { dropped: Some(dropped.clone()), ..TestVm::default() };
        let list = kernel::new_mutex!(DeviceList::<TestVm>::new());
        let list = KBox::pin_init(list, GFP_KERNEL)?;
        let lock: &Mutex<DeviceList<TestVm>> = &list;
        // Two of each; each "fd" holds its device.
        let mut fds = KVVec::new();
        for ops in [&PERSISTENT, &RELEASING, &PERSISTENT, &RELEASING] {
            let d = lock.lock().create(&vm, ops, 1).map_err(|_| EINVAL)?;
            fds.push(d, GFP_KERNEL)?;
        }
        assert_eq!(lock.lock().len(), 4);
        // Closing every fd: the releasing ones leave and are freed, the
        // others stay.
        for d in fds.drain_all() {
            lock.lock().close(&vm, &d);
        }
        assert_eq!(vm.released.load(Ordering::Relaxed), 2);
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        assert_eq!(lock.lock().len(), 2);
        // Closing one twice (impossible, but harmless).
        let d = lock.lock().create(&vm, &RELEASING, 2).map_err(|_| EINVAL)?;
        lock.lock().close(&vm, &d);
        lock.lock().close(&vm, &d);
        assert_eq!(vm.released.load(Ordering::Relaxed), 3);
        drop(d);
        // A device whose fd could not be made goes away at once.
        let d = lock.lock().create(&vm, &PERSISTENT, 1).map_err(|_| EINVAL)?;
        lock.lock().discard(&vm, &d);
        drop(d);
        assert_eq!(dropped.load(Ordering::Relaxed), 4);
        assert_eq!(lock.lock().len(), 2);
        // The VM's end destroys the rest.
        drop(list);
        assert_eq!(dropped.load(Ordering::Relaxed), 6);
        assert_eq!(vm.created.load(Ordering::Relaxed), 6);
        Ok(())
    }
}
