// SPDX-License-Identifier: GPL-2.0

//! The `KVM_CREATE_DEVICE` framework: numbers and the checks of upstream's
//! `kvm_ioctl_create_device()` and `kvm_device_ioctl()`
//! (`virt/kvm/kvm_main.c`).
//!
//! Pure logic (`core` only), also tested on the host. The device objects,
//! their file descriptors and their lifetime are kernel glue, in
//! [`device_fd`](super::device_fd).
//!
//! # `KVM_CREATE_DEVICE`
//!
//! After the argument is read (`EFAULT`): a type at or above
//! `KVM_DEV_TYPE_MAX` is `ENODEV`, so is a type no one registered; then
//! with `KVM_CREATE_DEVICE_TEST` nothing is created, and the (unchanged)
//! argument is written back, so an unwritable argument is `EFAULT` even
//! then. Other flag bits are ignored. A created device's fd is written into
//! the argument last: if that fails the ioctl returns `EFAULT` but the
//! device and its fd exist, as upstream.
//!
//! # Device fd ioctls
//!
//! `KVM_SET_DEVICE_ATTR`, `KVM_GET_DEVICE_ATTR` and `KVM_HAS_DEVICE_ATTR`
//! go to the type's accessor; a type without that accessor answers `EPERM`
//! *before* the `struct kvm_device_attr` is read. Any other ioctl (whatever
//! its type byte) goes to the type's own ioctl, `ENOTTY` if it has none.
//! The attribute's `flags`, `group` and `attr` are the type's to validate:
//! the framework checks nothing but the copy.

use super::abi::{
    ioc,
    Errno,
    KVMIO, //
};

/// `KVM_DEV_TYPE_MAX`: one past the last `enum kvm_device_type` value
/// (`KVM_DEV_TYPE_ARM_VGIC_V5` = 16), the size of upstream's ops table.
pub(crate) const KVM_DEV_TYPE_MAX: u32 = 17;

/// `KVM_CREATE_DEVICE_TEST`: only ask whether the type exists.
pub(crate) const KVM_CREATE_DEVICE_TEST: u32 = 1;

/// The `enum kvm_device_type` values that riscv64 and arm64 register
/// upstream, and how kvm_rs will provide them.
pub(crate) mod dev_type {
    /// `KVM_DEV_TYPE_VFIO` (arm64 upstream; riscv does not select
    /// `KVM_VFIO`). kvm_rs: not planned before device assignment.
    pub(crate) const VFIO: u32 = 4;
    /// `KVM_DEV_TYPE_ARM_VGIC_V2`: arm64 with a GICv2-compatible host
    /// interface. The emulated host (GICv3 without GICv2 compatibility)
    /// does not register it upstream either.
    pub(crate) const ARM_VGIC_V2: u32 = 5;
    /// `KVM_DEV_TYPE_ARM_VGIC_V3`: arm64's in-kernel interrupt controller.
    pub(crate) const ARM_VGIC_V3: u32 = 7;
    /// `KVM_DEV_TYPE_ARM_VGIC_ITS`: arm64, with a vGICv3.
    pub(crate) const ARM_VGIC_ITS: u32 = 8;
    /// `KVM_DEV_TYPE_RISCV_AIA`: riscv64's in-kernel interrupt controller,
    /// registered upstream only on a host with the AIA (Ssaia).
    pub(crate) const RISCV_AIA: u32 = 11;
    /// `KVM_DEV_TYPE_ARM_VGIC_V5`: arm64 with a GICv5 host.
    pub(crate) const ARM_VGIC_V5: u32 = 16;
}

/// `KVM_CREATE_DEVICE`: `_IOWR(KVMIO, 0xe0, struct kvm_create_device)`.
pub(crate) const KVM_CREATE_DEVICE: u32 = ioc(3, KVMIO, 0xe0, 12);
/// `KVM_SET_DEVICE_ATTR`: `_IOW(KVMIO, 0xe1, struct kvm_device_attr)`.
pub(crate) const KVM_SET_DEVICE_ATTR: u32 = ioc(1, KVMIO, 0xe1, 24);
/// `KVM_GET_DEVICE_ATTR`: `_IOW(KVMIO, 0xe2, struct kvm_device_attr)`.
pub(crate) const KVM_GET_DEVICE_ATTR: u32 = ioc(1, KVMIO, 0xe2, 24);
/// `KVM_HAS_DEVICE_ATTR`: `_IOW(KVMIO, 0xe3, struct kvm_device_attr)`.
pub(crate) const KVM_HAS_DEVICE_ATTR: u32 = ioc(1, KVMIO, 0xe3, 24);

/// One of the three attribute ioctls (of a device, a VM or a vCPU fd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttrOp {
    /// `KVM_SET_DEVICE_ATTR`: write the attribute from `addr`.
    Set,
    /// `KVM_GET_DEVICE_ATTR`: read the attribute to `addr`.
    Get,
    /// `KVM_HAS_DEVICE_ATTR`: 0 if the attribute exists (`ENXIO` if not,
    /// by convention of every upstream type).
    Has,
}

impl AttrOp {
    /// The operation of an ioctl number, if it is one of the three.
    pub(crate) fn from_cmd(cmd: u32) -> Option<AttrOp> {
        match cmd {
            KVM_SET_DEVICE_ATTR => Some(AttrOp::Set),
            KVM_GET_DEVICE_ATTR => Some(AttrOp::Get),
            KVM_HAS_DEVICE_ATTR => Some(AttrOp::Has),
            _ => None,
        }
    }
}

/// Which attribute accessors a device type has (upstream's non-NULL
/// `kvm_device_ops.{set,get,has}_attr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Accessors {
    /// `set_attr`.
    pub(crate) set: bool,
    /// `get_attr`.
    pub(crate) get: bool,
    /// `has_attr`.
    pub(crate) has: bool,
}

impl Accessors {
    /// All three, as the vGIC and AIA types have.
    pub(crate) const ALL: Accessors = Accessors { set: true, get: true, has: true };

    /// Whether the type has the accessor of `op`.
    pub(crate) fn allows(self, op: AttrOp) -> bool {
        match op {
            AttrOp::Set => self.set,
            AttrOp::Get => self.get,
            AttrOp::Has => self.has,
        }
    }
}

/// What a device fd ioctl is, once `kvm_device_ioctl()` has looked at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceIoctl {
    /// An attribute ioctl the type has an accessor for: read the
    /// `struct kvm_device_attr` (`EFAULT`) and call it.
    Attr(AttrOp),
    /// Anything else: the type's own ioctl (`ENOTTY` without one).
    Other,
}

/// `kvm_device_ioctl()`'s dispatch (after the `EIO` check of the caller's
/// address space): `EPERM` for an attribute ioctl the type has no accessor
/// for.
pub(crate) fn classify_ioctl(cmd: u32, accessors: Accessors) -> Result<DeviceIoctl, Errno> {
    match AttrOp::from_cmd(cmd) {
        Some(op) if accessors.allows(op) => Ok(DeviceIoctl::Attr(op)),
        Some(_) => Err(Errno::EPERM),
        None => Ok(DeviceIoctl::Other),
    }
}

/// What `KVM_CREATE_DEVICE` must do once the type is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CreateStep<T> {
    /// `KVM_CREATE_DEVICE_TEST`: the type exists; write the argument back
    /// and return 0.
    Test,
    /// Create a device of the type `T` describes.
    Create(T),
}

/// The checks of `kvm_ioctl_create_device()` before anything is created:
/// `lookup` is the registry of device types (the architecture's), asked
/// only for a type below [`KVM_DEV_TYPE_MAX`].
pub(crate) fn check_create<T>(
    ty: u32,
    flags: u32,
    lookup: impl FnOnce(u32) -> Option<T>,
) -> Result<CreateStep<T>, Errno> {
    if ty >= KVM_DEV_TYPE_MAX {
        return Err(Errno::ENODEV);
    }
    let found = lookup(ty).ok_or(Errno::ENODEV)?;
    if flags & KVM_CREATE_DEVICE_TEST != 0 {
        return Ok(CreateStep::Test);
    }
    Ok(CreateStep::Create(found))
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_upstream_values() {
        // As compiled from include/uapi/linux/kvm.h on riscv64/arm64.
        assert_eq!(KVM_CREATE_DEVICE, 0xc00c_aee0);
        assert_eq!(KVM_SET_DEVICE_ATTR, 0x4018_aee1);
        assert_eq!(KVM_GET_DEVICE_ATTR, 0x4018_aee2);
        assert_eq!(KVM_HAS_DEVICE_ATTR, 0x4018_aee3);
    }

    fn only_seven(ty: u32) -> Option<&'static str> {
        (ty == 7).then_some("seven")
    }

    #[test]
    fn unknown_types_are_enodev_with_or_without_test() {
        for ty in [0, 1, 6, 8, 16, 17, 18, 1000, u32::MAX] {
            for flags in [0, KVM_CREATE_DEVICE_TEST, 2, u32::MAX] {
                assert_eq!(check_create(ty, flags, only_seven), Err(Errno::ENODEV), "{ty} {flags:#x}");
            }
        }
    }

    #[test]
    fn the_registry_is_not_asked_beyond_the_table() {
        let mut asked = Vec::new();
        for ty in [0, 16, 17, u32::MAX] {
            let _ = check_create(ty, 0, |t| {
                asked.push(t);
                None::<()>
            });
        }
        assert_eq!(asked, [0, 16]);
    }

    #[test]
    fn test_flag_only_tests_and_other_flags_are_ignored() {
        assert_eq!(check_create(7, KVM_CREATE_DEVICE_TEST, only_seven), Ok(CreateStep::Test));
        assert_eq!(check_create(7, u32::MAX, only_seven), Ok(CreateStep::Test));
        assert_eq!(check_create(7, 0, only_seven), Ok(CreateStep::Create("seven")));
        assert_eq!(check_create(7, !KVM_CREATE_DEVICE_TEST, only_seven), Ok(CreateStep::Create("seven")));
    }

    #[test]
    fn missing_accessors_are_eperm_and_other_ioctls_go_to_the_type() {
        let none = Accessors::default();
        let only_has = Accessors { has: true, ..Accessors::default() };
        for cmd in [KVM_SET_DEVICE_ATTR, KVM_GET_DEVICE_ATTR, KVM_HAS_DEVICE_ATTR] {
            assert_eq!(classify_ioctl(cmd, none), Err(Errno::EPERM));
            let op = AttrOp::from_cmd(cmd).map(DeviceIoctl::Attr);
            assert_eq!(classify_ioctl(cmd, Accessors::ALL).ok(), op);
        }
        assert_eq!(classify_ioctl(KVM_HAS_DEVICE_ATTR, only_has), Ok(DeviceIoctl::Attr(AttrOp::Has)));
        assert_eq!(classify_ioctl(KVM_SET_DEVICE_ATTR, only_has), Err(Errno::EPERM));
        // Other ioctls, of any type byte, and the attribute numbers with
        // another size: the type's ioctl.
        for cmd in [0, KVM_CREATE_DEVICE, ioc(1, KVMIO, 0xe1, 16), ioc(1, 0x41, 0xe1, 24), u32::MAX] {
            assert_eq!(classify_ioctl(cmd, Accessors::ALL), Ok(DeviceIoctl::Other), "{cmd:#x}");
        }
    }
}
