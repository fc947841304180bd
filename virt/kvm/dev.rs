// SPDX-License-Identifier: GPL-2.0

//! `/dev/kvm`: the misc device (minor 232) and the module that registers it.

use super::{
    abi::{
        self,
        Errno,
        SysBackend, //
    },
    arch::Arch,
    virt_cpu::{
        CpuVirtState,
        SysVirt,
        SysVirtReg, //
    },
    vm::{
        self,
        Vm, //
    },
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
    preempt_notifier::PreemptNotifiersEnabled,
    prelude::*,
    syscore::Syscore,
};

/// The fixed misc minor of `/dev/kvm` (`KVM_MINOR` in `<linux/miscdevice.h>`).
const KVM_MINOR: u8 = 232;
kernel::static_assert!(KVM_MINOR as u32 == kernel::bindings::KVM_MINOR);

/// Converts an [`Errno`] of the pure ABI layer into a kernel [`Error`].
pub(crate) fn to_error(errno: Errno) -> Error {
    Error::from_errno(-errno.0)
}

/// Converts a kernel [`Error`] into an [`Errno`] of the pure ABI layer.
pub(crate) fn to_errno(err: Error) -> Errno {
    Errno(-err.to_errno())
}

/// The system-ioctl backend of this host.
struct HostSys;

impl SysBackend for HostSys {
    fn check_extension(&self, cap: usize) -> isize {
        vm::check_extension(cap, None)
    }

    fn create_vm(&self, ty: usize) -> Result<isize, Errno> {
        Vm::create_fd(ty).map_err(to_errno)
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
/// The loaded module. Fields drop in order: `/dev/kvm` goes first (no new
/// VM; existing ones pin the module, so none is left at unload), then the
/// suspend/shutdown hooks, then virtualization is turned off on every CPU.
#[pin_data]
pub(crate) struct KvmModule {
    #[pin]
    dev: MiscDeviceRegistration<KvmDev>,
    #[pin]
    syscore: SysVirtReg,
    cpuhp: CpuVirtState,
    /// The scheduler's preempt-notifier hook, for vCPU load/put.
    preempt: PreemptNotifiersEnabled,
}

impl kernel::InPlaceModule for KvmModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pin_init::pin_init_scope(move || {
            // SAFETY: Called once, here, before `/dev/kvm` (and so any VM)
            // exists.
            unsafe { super::eventfd::init_irqfd_claims() };
            Host::probe()?;
            let options = MiscDeviceOptions {
                name: c"kvm",
                minor: Some(KVM_MINOR),
            };
            pr_info!("{} host ready, registering /dev/kvm\n", Host::NAME);
            let preempt = PreemptNotifiersEnabled::new();
            // Virtualization on, on every online CPU and those to come.
            let cpuhp = CpuVirtState::setup()?;
            Ok(try_pin_init!(Self {
                preempt,
                cpuhp,
                syscore <- Syscore::new(SysVirt),
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
    fn only_implemented_caps_are_claimed() {
        let ask = |cap: u32| abi::dev_ioctl(&HostSys, abi::KVM_CHECK_EXTENSION, cap as usize);
        for cap in [uapi::KVM_CAP_USER_MEMORY, uapi::KVM_CAP_USER_MEMORY2, uapi::KVM_CAP_BINARY_STATS_FD,
                    uapi::KVM_CAP_IMMEDIATE_EXIT, uapi::KVM_CAP_READONLY_MEM, uapi::KVM_CAP_DEVICE_CTRL] {
            assert_eq!(ask(cap), Ok(1));
        }
        assert_eq!(ask(uapi::KVM_CAP_NR_MEMSLOTS), Ok(32767));
        assert_eq!(ask(uapi::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2), Ok(3));
        assert!(matches!(ask(uapi::KVM_CAP_MAX_VCPUS), Ok(n) if n >= 512));
        for cap in [uapi::KVM_CAP_INTERNAL_ERROR_DATA, uapi::KVM_CAP_SYSTEM_EVENT_DATA,
                    uapi::KVM_CAP_IOEVENTFD_ANY_LENGTH] {
            assert_eq!(ask(cap), Ok(1));
        }
        // Both arches run guests: MP state and ioeventfds (signalled by
        // guest MMIO writes); guest debug (ebreak exits) on riscv64 only.
        for cap in [uapi::KVM_CAP_MP_STATE, uapi::KVM_CAP_IOEVENTFD] {
            assert_eq!(ask(cap), Ok(1));
        }
        let debug = if cfg!(CONFIG_RISCV) { 1 } else { 0 };
        assert_eq!(ask(uapi::KVM_CAP_SET_GUEST_DEBUG), Ok(debug));
        // Coalesced MMIO/PIO: the run loops append guest MMIO writes to the
        // ring (upstream's answers: the page offset, 1).
        assert_eq!(ask(uapi::KVM_CAP_COALESCED_MMIO), Ok(1));
        assert_eq!(ask(uapi::KVM_CAP_COALESCED_PIO), Ok(1));
        // Features kvm_rs does not have yet: irqchip, irqfd signalling
        // (irqfds are only bookkeeping), dirty rings, halt polling,
        // guest_memfd.
        for cap in [uapi::KVM_CAP_IRQCHIP, uapi::KVM_CAP_IRQFD, uapi::KVM_CAP_IRQFD_RESAMPLE,
                    uapi::KVM_CAP_DIRTY_LOG_RING_ACQ_REL, uapi::KVM_CAP_HALT_POLL, uapi::KVM_CAP_GUEST_MEMFD,
                    uapi::KVM_CAP_SYNC_MMU, 100_000] {
            assert_eq!(ask(cap), Ok(0));
        }
        // ONE_REG: both arches have their registers.
        assert_eq!(ask(uapi::KVM_CAP_ONE_REG), Ok(1));
        assert_eq!(abi::dev_ioctl(&HostSys, abi::KVM_CHECK_EXTENSION, usize::MAX), Ok(0));
    }

    #[test]
    fn errno_conversion_round_trips() {
        assert_eq!(to_error(Errno::EINVAL).to_errno(), EINVAL.to_errno());
        assert_eq!(to_error(Errno::ENOTTY).to_errno(), ENOTTY.to_errno());
        assert_eq!(to_error(Errno::EFAULT).to_errno(), EFAULT.to_errno());
    }
}
