// SPDX-License-Identifier: GPL-2.0

//! `/dev/kvm`: the misc device (minor 232) and the module that registers it.

use super::{
    abi::{
        self,
        Errno,
        SysBackend, //
    },
    arch::Arch,
};
use crate::arch::Host;
use kernel::{
    fs::File,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    page::PAGE_SIZE,
    prelude::*,
};

/// The fixed misc minor of `/dev/kvm` (`KVM_MINOR` in `<linux/miscdevice.h>`).
const KVM_MINOR: u8 = 232;
kernel::static_assert!(KVM_MINOR as u32 == kernel::bindings::KVM_MINOR);

/// Converts an [`Errno`] of the pure ABI layer into a kernel [`Error`].
pub(crate) fn to_error(errno: Errno) -> Error {
    Error::from_errno(-errno.0)
}

/// The system-ioctl backend of this host: the architecture's answers.
struct HostSys;

impl SysBackend for HostSys {
    fn check_extension(&self, cap: usize) -> isize {
        Host::check_extension(cap)
    }

    fn create_vm(&self, _ty: usize) -> Result<isize, Errno> {
        // No machine type is supported yet; upstream rejects an unsupported
        // type with EINVAL.
        Err(Errno::EINVAL)
    }

    fn page_size(&self) -> usize {
        PAGE_SIZE
    }
}

/// An open `/dev/kvm`. It holds no state: every system ioctl is answered
/// from the host's capabilities.
struct KvmDev;

#[vtable]
impl MiscDevice for KvmDev {
    type Ptr = ();

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<()> {
        Ok(())
    }

    fn ioctl(_device: (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        abi::dev_ioctl(&HostSys, cmd, arg).map_err(to_error)
    }
}

/// The module: probes the host, then owns the `/dev/kvm` registration.
#[pin_data]
pub(crate) struct KvmModule {
    #[pin]
    dev: MiscDeviceRegistration<KvmDev>,
}

impl kernel::InPlaceModule for KvmModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pin_init::pin_init_scope(move || {
            Host::probe()?;
            let options = MiscDeviceOptions {
                name: c"kvm",
                minor: Some(KVM_MINOR),
            };
            pr_info!("{} host ready, registering /dev/kvm\n", Host::NAME);
            Ok(try_pin_init!(Self {
                dev <- MiscDeviceRegistration::register(options),
            }))
        })
    }
}

#[kunit_tests(kvm_rs_abi)]
mod tests {
    use super::*;
    use kernel::{
        ioctl::{
            _IO,
            _IOC_DIR,
            _IOC_NR,
            _IOC_SIZE,
            _IOC_TYPE, //
        },
        uapi,
    };

    #[test]
    fn ioctl_numbers_match_kernel_encoding() {
        assert_eq!(abi::KVMIO, uapi::KVMIO);
        assert_eq!(abi::KVM_GET_API_VERSION, _IO(uapi::KVMIO, 0x00));
        assert_eq!(abi::KVM_CREATE_VM, _IO(uapi::KVMIO, 0x01));
        assert_eq!(abi::KVM_CHECK_EXTENSION, _IO(uapi::KVMIO, 0x03));
        assert_eq!(abi::KVM_GET_VCPU_MMAP_SIZE, _IO(uapi::KVMIO, 0x04));
        assert_eq!(abi::KVM_RUN, _IO(uapi::KVMIO, 0x80));
        let msr = abi::KVM_GET_MSR_INDEX_LIST;
        assert_eq!(_IOC_DIR(msr), 3);
        assert_eq!(_IOC_TYPE(msr), uapi::KVMIO);
        assert_eq!(_IOC_NR(msr), 0x02);
        assert_eq!(_IOC_SIZE(msr), 4);
    }

    #[test]
    fn api_version_matches_uapi() {
        assert_eq!(abi::KVM_API_VERSION, uapi::KVM_API_VERSION as isize);
        assert_eq!(
            abi::dev_ioctl(&HostSys, abi::KVM_GET_API_VERSION, 0),
            Ok(abi::KVM_API_VERSION)
        );
    }

    #[test]
    fn vcpu_mmap_size_is_run_page_plus_coalesced_ring() {
        assert_eq!(
            abi::dev_ioctl(&HostSys, abi::KVM_GET_VCPU_MMAP_SIZE, 0),
            Ok(2 * PAGE_SIZE as isize)
        );
    }

    #[test]
    fn unsupported_caps_answer_zero() {
        for cap in [uapi::KVM_CAP_USER_MEMORY, uapi::KVM_CAP_NR_VCPUS, 100_000] {
            assert_eq!(abi::dev_ioctl(&HostSys, abi::KVM_CHECK_EXTENSION, cap as usize), Ok(0));
        }
    }

    #[test]
    fn errno_conversion_round_trips() {
        assert_eq!(to_error(Errno::EINVAL).to_errno(), EINVAL.to_errno());
        assert_eq!(to_error(Errno::ENOTTY).to_errno(), ENOTTY.to_errno());
        assert_eq!(to_error(Errno::EFAULT).to_errno(), EFAULT.to_errno());
    }
}
