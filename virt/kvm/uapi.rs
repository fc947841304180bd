// SPDX-License-Identifier: GPL-2.0

//! The ioctl argument structures of the VM and vCPU fds, as read from and
//! written to userspace.
//!
//! Each is a `#[repr(C)]` copy of its `include/uapi/linux/kvm.h` structure
//! with user pointers as plain `u64` (so every bit pattern is valid and the
//! type is [`FromBytes`]). Build-time assertions check size and field
//! offsets against the bindgen-generated `kernel::uapi` types, so a layout
//! drift fails the build.

use core::mem::{
    offset_of,
    size_of, //
};
use kernel::{
    error::Result,
    prelude::kunit_tests,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
    uapi,
};

/// Reads a `T` from the user address `arg` (`copy_from_user()`; `EFAULT`).
pub(crate) fn read_user<T: FromBytes>(arg: usize) -> Result<T> {
    UserSlice::new(UserPtr::from_addr(arg), size_of::<T>()).reader().read::<T>()
}

/// Declares a plain-data uapi mirror and checks it against `kernel::uapi`.
macro_rules! uapi_mirror {
    (
        $(#[$meta:meta])*
        $name:ident = $uapi:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty = $ufield:ident),* $(,)? }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        pub(crate) struct $name {
            $($(#[$fmeta])* pub(crate) $field: $ty,)*
        }

        kernel::static_assert!(size_of::<$name>() == size_of::<uapi::$uapi>());
        $(kernel::static_assert!(offset_of!($name, $field) == offset_of!(uapi::$uapi, $ufield));)*

        // SAFETY: `repr(C)` struct of integers (and integer arrays) without
        // padding (its size equals the C struct's, whose fields it mirrors
        // one for one): every bit pattern is valid, no interior mutability.
        unsafe impl FromBytes for $name {}
        // SAFETY: As above: no padding bytes, so every byte is initialized.
        unsafe impl AsBytes for $name {}
    };
}

uapi_mirror! {
    /// `struct kvm_userspace_memory_region` (`KVM_SET_USER_MEMORY_REGION`).
    UserMemoryRegion = kvm_userspace_memory_region {
        /// `as_id << 16 | id`.
        slot: u32 = slot,
        /// `KVM_MEM_*`.
        flags: u32 = flags,
        /// Guest physical start.
        guest_phys_addr: u64 = guest_phys_addr,
        /// Size in bytes.
        memory_size: u64 = memory_size,
        /// Start of the userspace mapping.
        userspace_addr: u64 = userspace_addr,
    }
}

uapi_mirror! {
    /// `struct kvm_userspace_memory_region2` (`KVM_SET_USER_MEMORY_REGION2`).
    UserMemoryRegion2 = kvm_userspace_memory_region2 {
        /// `as_id << 16 | id`.
        slot: u32 = slot,
        /// `KVM_MEM_*`.
        flags: u32 = flags,
        /// Guest physical start.
        guest_phys_addr: u64 = guest_phys_addr,
        /// Size in bytes.
        memory_size: u64 = memory_size,
        /// Start of the userspace mapping.
        userspace_addr: u64 = userspace_addr,
        /// Offset into the guest_memfd.
        guest_memfd_offset: u64 = guest_memfd_offset,
        /// The guest_memfd.
        guest_memfd: u32 = guest_memfd,
        /// Padding.
        pad1: u32 = pad1,
        /// Padding.
        pad2: [u64; 14] = pad2,
    }
}

uapi_mirror! {
    /// `struct kvm_enable_cap` (`KVM_ENABLE_CAP`).
    EnableCap = kvm_enable_cap {
        /// The capability.
        cap: u32 = cap,
        /// Must be 0 for every capability kvm_rs knows.
        flags: u32 = flags,
        /// Arguments.
        args: [u64; 4] = args,
        /// Padding.
        pad: [u64; 8] = pad,
    }
}

uapi_mirror! {
    /// `struct kvm_dirty_log` (`KVM_GET_DIRTY_LOG`).
    DirtyLog = kvm_dirty_log {
        /// `as_id << 16 | id`.
        slot: u32 = slot,
        /// Padding.
        padding1: u32 = padding1,
        /// The user bitmap (`dirty_bitmap`).
        dirty_bitmap: u64 = __bindgen_anon_1,
    }
}

uapi_mirror! {
    /// `struct kvm_clear_dirty_log` (`KVM_CLEAR_DIRTY_LOG`).
    ClearDirtyLog = kvm_clear_dirty_log {
        /// `as_id << 16 | id`.
        slot: u32 = slot,
        /// Pages to clear.
        num_pages: u32 = num_pages,
        /// First page, relative to the slot.
        first_page: u64 = first_page,
        /// The user bitmap (`dirty_bitmap`).
        dirty_bitmap: u64 = __bindgen_anon_1,
    }
}

uapi_mirror! {
    /// `struct kvm_one_reg` (`KVM_GET_ONE_REG`, `KVM_SET_ONE_REG`).
    OneReg = kvm_one_reg {
        /// Register id (arch, size and number).
        id: u64 = id,
        /// User address of the value.
        addr: u64 = addr,
    }
}

uapi_mirror! {
    /// `struct kvm_mp_state` (`KVM_GET_MP_STATE`, `KVM_SET_MP_STATE`).
    MpState = kvm_mp_state {
        /// `KVM_MP_STATE_*`.
        mp_state: u32 = mp_state,
    }
}

uapi_mirror! {
    /// `struct kvm_coalesced_mmio_zone` (`KVM_REGISTER_COALESCED_MMIO`,
    /// `KVM_UNREGISTER_COALESCED_MMIO`).
    CoalescedMmioZone = kvm_coalesced_mmio_zone {
        /// Guest physical address (or port).
        addr: u64 = addr,
        /// Size in bytes.
        size: u32 = size,
        /// The `pad`/`pio` union: 1 for a PIO zone.
        pio: u32 = __bindgen_anon_1,
    }
}

// The ring layout the pure code writes (`coalesced_mmio.rs`).
kernel::static_assert!(
    super::coalesced_mmio::ZONE_SIZE as usize == size_of::<uapi::kvm_coalesced_mmio_zone>()
);
kernel::static_assert!(super::coalesced_mmio::ENTRY_SIZE == size_of::<uapi::kvm_coalesced_mmio>());
kernel::static_assert!(super::coalesced_mmio::ENTRY_LEN == offset_of!(uapi::kvm_coalesced_mmio, len));
kernel::static_assert!(
    super::coalesced_mmio::ENTRY_PIO == offset_of!(uapi::kvm_coalesced_mmio, __bindgen_anon_1)
);
kernel::static_assert!(super::coalesced_mmio::ENTRY_DATA == offset_of!(uapi::kvm_coalesced_mmio, data));
kernel::static_assert!(
    super::coalesced_mmio::RING_HEADER == size_of::<uapi::kvm_coalesced_mmio_ring>()
);
kernel::static_assert!(super::coalesced_mmio::RING_FIRST == offset_of!(uapi::kvm_coalesced_mmio_ring, first));
kernel::static_assert!(super::coalesced_mmio::RING_LAST == offset_of!(uapi::kvm_coalesced_mmio_ring, last));

uapi_mirror! {
    /// `struct kvm_ioeventfd` (`KVM_IOEVENTFD`).
    Ioeventfd = kvm_ioeventfd {
        /// Compared with the written value with `KVM_IOEVENTFD_FLAG_DATAMATCH`.
        datamatch: u64 = datamatch,
        /// Guest physical (or port) address.
        addr: u64 = addr,
        /// Access length (0 = any).
        len: u32 = len,
        /// The eventfd.
        fd: i32 = fd,
        /// `KVM_IOEVENTFD_FLAG_*`.
        flags: u32 = flags,
        /// Padding (36 bytes, as 9 words so that `Default` derives).
        pad: [u32; 9] = pad,
    }
}

uapi_mirror! {
    /// `struct kvm_irqfd` (`KVM_IRQFD`).
    Irqfd = kvm_irqfd {
        /// The eventfd.
        fd: u32 = fd,
        /// The gsi to raise.
        gsi: u32 = gsi,
        /// `KVM_IRQFD_FLAG_*`.
        flags: u32 = flags,
        /// The resample eventfd (with `KVM_IRQFD_FLAG_RESAMPLE`).
        resamplefd: u32 = resamplefd,
        /// Padding (ignored).
        pad: [u8; 16] = pad,
    }
}

uapi_mirror! {
    /// `struct kvm_create_device` (`KVM_CREATE_DEVICE`).
    CreateDevice = kvm_create_device {
        /// `KVM_DEV_TYPE_*`.
        ty: u32 = type_,
        /// Out: the device fd.
        fd: u32 = fd,
        /// `KVM_CREATE_DEVICE_TEST`.
        flags: u32 = flags,
    }
}

uapi_mirror! {
    /// `struct kvm_device_attr` (`KVM_{SET,GET,HAS}_DEVICE_ATTR` on device,
    /// VM and vCPU fds).
    DeviceAttr = kvm_device_attr {
        /// No flags are defined; each type decides what it accepts.
        flags: u32 = flags,
        /// Attribute group (type-defined).
        group: u32 = group,
        /// Attribute within the group.
        attr: u64 = attr,
        /// User address of the attribute's data.
        addr: u64 = addr,
    }
}

uapi_mirror! {
    /// The fixed head of `struct kvm_signal_mask` (`KVM_SET_SIGNAL_MASK`);
    /// `len` bytes of sigset follow it.
    SignalMaskHead = kvm_signal_mask {
        /// Size of the sigset that follows.
        len: u32 = len,
    }
}

/// `struct kvm_guest_debug` (`KVM_SET_GUEST_DEBUG`): `control`, padding and
/// the arch part (empty on riscv64, the breakpoint and watchpoint registers
/// on arm64).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub(crate) struct GuestDebug(pub(crate) uapi::kvm_guest_debug);

// SAFETY: `kvm_guest_debug` is `repr(C)` of `u32`s and (arm64) `u64`
// arrays, without padding (the explicit `pad` keeps the arch part aligned):
// every bit pattern is valid.
unsafe impl FromBytes for GuestDebug {}

/// `KVM_ENABLE_CAP`: `_IOW(KVMIO, 0xa3, struct kvm_enable_cap)`.
pub(crate) const KVM_ENABLE_CAP: u32 =
    super::abi::ioc(1, super::abi::KVMIO, 0xa3, size_of::<EnableCap>() as u32);
/// `KVM_GET_ONE_REG`: `_IOW(KVMIO, 0xab, struct kvm_one_reg)`.
pub(crate) const KVM_GET_ONE_REG: u32 =
    super::abi::ioc(1, super::abi::KVMIO, 0xab, size_of::<OneReg>() as u32);
/// `KVM_SET_ONE_REG`: `_IOW(KVMIO, 0xac, struct kvm_one_reg)`.
pub(crate) const KVM_SET_ONE_REG: u32 =
    super::abi::ioc(1, super::abi::KVMIO, 0xac, size_of::<OneReg>() as u32);
/// `KVM_GET_REG_LIST`: `_IOWR(KVMIO, 0xb0, struct kvm_reg_list)` (the
/// size of `struct kvm_reg_list` is that of its `n`).
pub(crate) const KVM_GET_REG_LIST: u32 = super::abi::kvm_iowr(0xb0, size_of::<u64>() as u32);

/// `KVM_GET_MP_STATE`: `_IOR(KVMIO, 0x98, struct kvm_mp_state)`.
pub(crate) const KVM_GET_MP_STATE: u32 =
    super::abi::ioc(2, super::abi::KVMIO, 0x98, size_of::<MpState>() as u32);
/// `KVM_SET_MP_STATE`: `_IOW(KVMIO, 0x99, struct kvm_mp_state)`.
pub(crate) const KVM_SET_MP_STATE: u32 =
    super::abi::ioc(1, super::abi::KVMIO, 0x99, size_of::<MpState>() as u32);
/// `KVM_SET_GUEST_DEBUG`: `_IOW(KVMIO, 0x9b, struct kvm_guest_debug)` (its
/// size, and so the number, differs per arch).
pub(crate) const KVM_SET_GUEST_DEBUG: u32 =
    super::abi::ioc(1, super::abi::KVMIO, 0x9b, size_of::<GuestDebug>() as u32);
/// `KVM_SET_SIGNAL_MASK`: `_IOW(KVMIO, 0x8b, struct kvm_signal_mask)`.
pub(crate) const KVM_SET_SIGNAL_MASK: u32 =
    super::abi::ioc(1, super::abi::KVMIO, 0x8b, size_of::<SignalMaskHead>() as u32);
/// `KVM_INTERRUPT`: `_IOW(KVMIO, 0x86, struct kvm_interrupt)` (one
/// `__u32`).
pub(crate) const KVM_INTERRUPT: u32 = super::abi::ioc(1, super::abi::KVMIO, 0x86, size_of::<u32>() as u32);
/// `KVM_IOEVENTFD`: `_IOW(KVMIO, 0x79, struct kvm_ioeventfd)`.
pub(crate) const KVM_IOEVENTFD: u32 =
    super::abi::ioc(1, super::abi::KVMIO, 0x79, size_of::<Ioeventfd>() as u32);

#[kunit_tests(kvm_rs_uapi)]
mod tests {
    use super::*;
    use crate::kvm::{
        device,
        dirty_log,
        irqfd,
        memslot,
        stats,
        vm_limits, //
    };
    use kernel::ioctl::{
        _IO,
        _IOR,
        _IOW,
        _IOWR, //
    };

    #[test]
    fn vm_and_vcpu_ioctl_numbers_match_uapi() {
        let k = uapi::KVMIO;
        assert_eq!(memslot::KVM_SET_USER_MEMORY_REGION, _IOW::<uapi::kvm_userspace_memory_region>(k, 0x46));
        assert_eq!(memslot::KVM_SET_USER_MEMORY_REGION2, _IOW::<uapi::kvm_userspace_memory_region2>(k, 0x49));
        assert_eq!(dirty_log::KVM_GET_DIRTY_LOG, _IOW::<uapi::kvm_dirty_log>(k, 0x42));
        assert_eq!(dirty_log::KVM_CLEAR_DIRTY_LOG, _IOWR::<uapi::kvm_clear_dirty_log>(k, 0xc0));
        assert_eq!(KVM_ENABLE_CAP, _IOW::<uapi::kvm_enable_cap>(k, 0xa3));
        assert_eq!(KVM_GET_ONE_REG, _IOW::<uapi::kvm_one_reg>(k, 0xab));
        assert_eq!(KVM_SET_ONE_REG, _IOW::<uapi::kvm_one_reg>(k, 0xac));
        assert_eq!(vm_limits::KVM_CREATE_VCPU, _IO(k, 0x41));
        assert_eq!(stats::KVM_GET_STATS_FD, _IO(k, 0xce));
        assert_eq!(KVM_GET_MP_STATE, _IOR::<uapi::kvm_mp_state>(k, 0x98));
        assert_eq!(KVM_SET_MP_STATE, _IOW::<uapi::kvm_mp_state>(k, 0x99));
        assert_eq!(KVM_SET_GUEST_DEBUG, _IOW::<uapi::kvm_guest_debug>(k, 0x9b));
        assert_eq!(KVM_SET_SIGNAL_MASK, _IOW::<uapi::kvm_signal_mask>(k, 0x8b));
        assert_eq!(KVM_IOEVENTFD, _IOW::<uapi::kvm_ioeventfd>(k, 0x79));
        assert_eq!(KVM_INTERRUPT, _IOW::<uapi::kvm_interrupt>(k, 0x86));
        assert_eq!(irqfd::KVM_IRQFD, _IOW::<uapi::kvm_irqfd>(k, 0x76));
        assert_eq!(device::KVM_CREATE_DEVICE, _IOWR::<uapi::kvm_create_device>(k, 0xe0));
        assert_eq!(device::KVM_SET_DEVICE_ATTR, _IOW::<uapi::kvm_device_attr>(k, 0xe1));
        assert_eq!(device::KVM_GET_DEVICE_ATTR, _IOW::<uapi::kvm_device_attr>(k, 0xe2));
        assert_eq!(device::KVM_HAS_DEVICE_ATTR, _IOW::<uapi::kvm_device_attr>(k, 0xe3));
    }

    #[test]
    fn device_and_irqfd_constants_match_uapi() {
        assert_eq!(device::KVM_DEV_TYPE_MAX, uapi::kvm_device_type_KVM_DEV_TYPE_MAX);
        assert_eq!(device::KVM_CREATE_DEVICE_TEST, uapi::KVM_CREATE_DEVICE_TEST);
        assert_eq!(device::dev_type::VFIO, uapi::kvm_device_type_KVM_DEV_TYPE_VFIO);
        assert_eq!(device::dev_type::ARM_VGIC_V2, uapi::kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2);
        assert_eq!(device::dev_type::ARM_VGIC_V3, uapi::kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3);
        assert_eq!(device::dev_type::ARM_VGIC_ITS, uapi::kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_ITS);
        assert_eq!(device::dev_type::RISCV_AIA, uapi::kvm_device_type_KVM_DEV_TYPE_RISCV_AIA);
        assert_eq!(device::dev_type::ARM_VGIC_V5, uapi::kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V5);
        assert_eq!(irqfd::FLAG_DEASSIGN, uapi::KVM_IRQFD_FLAG_DEASSIGN);
        assert_eq!(irqfd::FLAG_RESAMPLE, uapi::KVM_IRQFD_FLAG_RESAMPLE);
    }

    #[test]
    fn one_reg_constants_match_uapi() {
        use crate::kvm::one_reg::{self, reg_size};
        assert_eq!(one_reg::KVM_REG_ARCH_MASK, uapi::KVM_REG_ARCH_MASK as u64);
        assert_eq!(one_reg::KVM_REG_SIZE_SHIFT, uapi::KVM_REG_SIZE_SHIFT);
        assert_eq!(one_reg::KVM_REG_SIZE_MASK, uapi::KVM_REG_SIZE_MASK);
        assert_eq!(one_reg::KVM_REG_SIZE_U32, uapi::KVM_REG_SIZE_U32);
        assert_eq!(one_reg::KVM_REG_SIZE_U64, uapi::KVM_REG_SIZE_U64);
        assert_eq!(one_reg::KVM_REG_SIZE_U128, uapi::KVM_REG_SIZE_U128);
        assert_eq!(reg_size(uapi::KVM_REG_SIZE_U2048), one_reg::KVM_REG_MAX_BYTES);
        assert_eq!(reg_size(u64::from(uapi::KVM_REG_SIZE_U8)), 1);
        assert_eq!(KVM_GET_REG_LIST, _IOWR::<uapi::kvm_reg_list>(uapi::KVMIO, 0xb0));
    }

    #[test]
    fn capability_numbers_match_uapi() {
        use vm_limits::cap;
        assert_eq!(cap::USER_MEMORY, i64::from(uapi::KVM_CAP_USER_MEMORY));
        assert_eq!(cap::NR_MEMSLOTS, i64::from(uapi::KVM_CAP_NR_MEMSLOTS));
        assert_eq!(cap::IMMEDIATE_EXIT, i64::from(uapi::KVM_CAP_IMMEDIATE_EXIT));
        assert_eq!(cap::BINARY_STATS_FD, i64::from(uapi::KVM_CAP_BINARY_STATS_FD));
        assert_eq!(cap::MANUAL_DIRTY_LOG_PROTECT2, i64::from(uapi::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2));
        assert_eq!(cap::USER_MEMORY2, i64::from(uapi::KVM_CAP_USER_MEMORY2));
        assert_eq!(cap::MAX_VCPU_ID, i64::from(uapi::KVM_CAP_MAX_VCPU_ID));
        assert_eq!(cap::VM_GPA_BITS, i64::from(uapi::KVM_CAP_VM_GPA_BITS));
        assert_eq!(cap::ARM_VM_IPA_SIZE, i64::from(uapi::KVM_CAP_ARM_VM_IPA_SIZE));
    }
}
