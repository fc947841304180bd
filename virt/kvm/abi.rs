// SPDX-License-Identifier: GPL-2.0

//! The `/dev/kvm` system ioctls: numbers and semantics.
//!
//! This file is pure logic: it uses only `core`, so it builds both inside the
//! kernel module and on the host (`tools/testing/host`, `cargo test`). The
//! kernel-side KUnit suite in `dev.rs` checks these numbers against the
//! kernel's own `_IO`/`_IOWR` encoding and the generated uapi constants.
//!
//! Semantics follow `kvm_dev_ioctl()` in upstream `virt/kvm/kvm_main.c`:
//!
//! - `KVM_GET_API_VERSION` takes no argument (any non-zero one is `EINVAL`)
//!   and answers 12.
//! - `KVM_CHECK_EXTENSION` never fails: it answers 0 for an unknown or
//!   unsupported capability, whatever the argument.
//! - `KVM_GET_VCPU_MMAP_SIZE` takes no argument and answers the size of the
//!   per-vCPU mapping: the `kvm_run` page plus, with `KVM_MMIO` (riscv64 and
//!   arm64 both have it), the coalesced-MMIO ring page.
//! - `KVM_CREATE_VM` validates the machine type through the architecture.
//! - Anything else goes to the architecture, which on riscv64 and arm64
//!   rejects it with `EINVAL` (`kvm_arch_dev_ioctl()`).

/// A positive errno value, as the kernel returns it negated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Errno(pub(crate) i32);

// Some errnos are only used by the VM and vCPU ioctls still to come.
#[allow(dead_code)]
impl Errno {
    /// Operation not permitted.
    pub(crate) const EPERM: Errno = Errno(1);
    /// No such file or directory (e.g. a memslot without a dirty bitmap).
    pub(crate) const ENOENT: Errno = Errno(2);
    /// I/O error (upstream uses it for broken internal accounting).
    pub(crate) const EIO: Errno = Errno(5);
    /// No such device or address.
    pub(crate) const ENXIO: Errno = Errno(6);
    /// Argument list too long.
    pub(crate) const E2BIG: Errno = Errno(7);
    /// Bad file descriptor.
    pub(crate) const EBADF: Errno = Errno(9);
    /// Exec format error (a vCPU that cannot run yet).
    pub(crate) const ENOEXEC: Errno = Errno(8);
    /// Try again (e.g. an irqfd before the interrupt controller is ready).
    pub(crate) const EAGAIN: Errno = Errno(11);
    /// Out of memory.
    pub(crate) const ENOMEM: Errno = Errno(12);
    /// Bad address.
    pub(crate) const EFAULT: Errno = Errno(14);
    /// Device or resource busy.
    pub(crate) const EBUSY: Errno = Errno(16);
    /// File exists (e.g. overlapping memslots, duplicate vCPU id).
    pub(crate) const EEXIST: Errno = Errno(17);
    /// No such device (e.g. an unknown `KVM_CREATE_DEVICE` type).
    pub(crate) const ENODEV: Errno = Errno(19);
    /// Invalid argument.
    pub(crate) const EINVAL: Errno = Errno(22);
    /// Inappropriate ioctl for device.
    pub(crate) const ENOTTY: Errno = Errno(25);
    /// No space left on device (a full I/O bus).
    pub(crate) const ENOSPC: Errno = Errno(28);
}

/// The ioctl type byte of KVM (`KVMIO`).
pub(crate) const KVMIO: u32 = 0xAE;

/// The KVM API version that `KVM_GET_API_VERSION` answers.
pub(crate) const KVM_API_VERSION: isize = 12;

// The generic ioctl encoding (`include/uapi/asm-generic/ioctl.h`), used by
// both riscv64 and arm64: nr in bits 0..8, type in 8..16, size in 16..30,
// direction in 30..32.
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = 8;
const IOC_SIZESHIFT: u32 = 16;
const IOC_DIRSHIFT: u32 = 30;
const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// Builds an ioctl number from its direction, type, number and size.
pub(crate) const fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << IOC_DIRSHIFT) | (ty << IOC_TYPESHIFT) | (nr << IOC_NRSHIFT) | (size << IOC_SIZESHIFT)
}

/// A KVM ioctl without argument structure (`_IO(KVMIO, nr)`).
pub(crate) const fn kvm_io(nr: u32) -> u32 {
    ioc(IOC_NONE, KVMIO, nr, 0)
}

/// A KVM ioctl that reads and writes a structure of `size` bytes.
pub(crate) const fn kvm_iowr(nr: u32, size: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, KVMIO, nr, size)
}

/// `KVM_GET_API_VERSION`.
pub(crate) const KVM_GET_API_VERSION: u32 = kvm_io(0x00);
/// `KVM_CREATE_VM`.
pub(crate) const KVM_CREATE_VM: u32 = kvm_io(0x01);
/// `KVM_GET_MSR_INDEX_LIST` (x86 only; an unknown ioctl here).
pub(crate) const KVM_GET_MSR_INDEX_LIST: u32 = kvm_iowr(0x02, 4);
/// `KVM_CHECK_EXTENSION`.
pub(crate) const KVM_CHECK_EXTENSION: u32 = kvm_io(0x03);
/// `KVM_GET_VCPU_MMAP_SIZE`.
pub(crate) const KVM_GET_VCPU_MMAP_SIZE: u32 = kvm_io(0x04);
/// `KVM_RUN` (a vCPU ioctl; an unknown ioctl on `/dev/kvm`).
pub(crate) const KVM_RUN: u32 = kvm_io(0x80);

/// What the architecture contributes to the system ioctls.
pub(crate) trait SysBackend {
    /// Answer to `KVM_CHECK_EXTENSION` on `/dev/kvm` (0 when unsupported).
    fn check_extension(&self, cap: usize) -> isize;

    /// Creates a VM of machine type `ty` and returns its file descriptor.
    fn create_vm(&self, ty: usize) -> Result<isize, Errno>;

    /// The host page size in bytes.
    fn page_size(&self) -> usize;
}

/// Handles one ioctl on `/dev/kvm` the way upstream `kvm_dev_ioctl()` does.
pub(crate) fn dev_ioctl(backend: &impl SysBackend, cmd: u32, arg: usize) -> Result<isize, Errno> {
    match cmd {
        KVM_GET_API_VERSION if arg != 0 => Err(Errno::EINVAL),
        KVM_GET_API_VERSION => Ok(KVM_API_VERSION),
        KVM_CREATE_VM => backend.create_vm(arg),
        KVM_CHECK_EXTENSION => Ok(backend.check_extension(arg)),
        KVM_GET_VCPU_MMAP_SIZE if arg != 0 => Err(Errno::EINVAL),
        KVM_GET_VCPU_MMAP_SIZE => vcpu_mmap_size(backend.page_size()).ok_or(Errno::EINVAL),
        _ => Err(Errno::EINVAL),
    }
}

/// Size of the vCPU mapping: `kvm_run` and the coalesced-MMIO ring, one page each.
pub(crate) fn vcpu_mmap_size(page_size: usize) -> Option<isize> {
    isize::try_from(page_size.checked_mul(2)?).ok()
}

#[cfg(test)]
mod host_tests {
    use super::*;

    struct Fake;

    impl SysBackend for Fake {
        fn check_extension(&self, cap: usize) -> isize {
            if cap == 1 {
                1
            } else {
                0
            }
        }
        fn create_vm(&self, _ty: usize) -> Result<isize, Errno> {
            Err(Errno::EINVAL)
        }
        fn page_size(&self) -> usize {
            4096
        }
    }

    #[test]
    fn ioctl_numbers_match_upstream_values() {
        // Values as compiled from include/uapi/linux/kvm.h on riscv64/arm64.
        assert_eq!(KVM_GET_API_VERSION, 0xae00);
        assert_eq!(KVM_CREATE_VM, 0xae01);
        assert_eq!(KVM_GET_MSR_INDEX_LIST, 0xc004_ae02);
        assert_eq!(KVM_CHECK_EXTENSION, 0xae03);
        assert_eq!(KVM_GET_VCPU_MMAP_SIZE, 0xae04);
        assert_eq!(KVM_RUN, 0xae80);
    }

    #[test]
    fn api_version_is_12_and_takes_no_argument() {
        assert_eq!(dev_ioctl(&Fake, KVM_GET_API_VERSION, 0), Ok(12));
        assert_eq!(dev_ioctl(&Fake, KVM_GET_API_VERSION, 1), Err(Errno::EINVAL));
        assert_eq!(dev_ioctl(&Fake, KVM_GET_API_VERSION, usize::MAX), Err(Errno::EINVAL));
    }

    #[test]
    fn check_extension_never_fails() {
        assert_eq!(dev_ioctl(&Fake, KVM_CHECK_EXTENSION, 1), Ok(1));
        assert_eq!(dev_ioctl(&Fake, KVM_CHECK_EXTENSION, 0), Ok(0));
        assert_eq!(dev_ioctl(&Fake, KVM_CHECK_EXTENSION, usize::MAX), Ok(0));
    }

    #[test]
    fn vcpu_mmap_size_is_two_pages() {
        assert_eq!(dev_ioctl(&Fake, KVM_GET_VCPU_MMAP_SIZE, 0), Ok(8192));
        assert_eq!(dev_ioctl(&Fake, KVM_GET_VCPU_MMAP_SIZE, 7), Err(Errno::EINVAL));
        assert_eq!(vcpu_mmap_size(usize::MAX), None);
    }

    #[test]
    fn unknown_ioctls_are_einval() {
        for cmd in [KVM_RUN, KVM_GET_MSR_INDEX_LIST, 0, u32::MAX, kvm_io(0x05), ioc(1, 0x41, 1, 8)] {
            assert_eq!(dev_ioctl(&Fake, cmd, 0), Err(Errno::EINVAL), "cmd {cmd:#x}");
        }
    }

    #[test]
    fn create_vm_goes_to_the_backend() {
        assert_eq!(dev_ioctl(&Fake, KVM_CREATE_VM, 0), Err(Errno::EINVAL));
    }
}
