// SPDX-License-Identifier: GPL-2.0

//! VM-level limits: `KVM_CREATE_VM` machine types, `KVM_CREATE_VCPU` ids
//! and counts, and the `KVM_CHECK_EXTENSION` answers.
//!
//! Pure logic, built into the module and tested on the host. Sources:
//!
//! - machine type: arm64 `kvm_arch_init_vm()` (`arch/arm64/kvm/arm.c`) and
//!   `kvm_init_ipa_range()` (`arch/arm64/kvm/mmu.c`); riscv
//!   `kvm_arch_init_vm()` (`arch/riscv/kvm/vm.c`), which ignores the type;
//! - riscv `KVM_ENABLE_CAP(KVM_CAP_VM_GPA_BITS)` (`kvm_vm_ioctl_enable_cap()`
//!   in `arch/riscv/kvm/vm.c`) and `kvm_riscv_gstage_gpa_bits()`;
//! - vCPUs: `kvm_vm_ioctl_create_vcpu()` (`virt/kvm/kvm_main.c`) and the
//!   `kvm_arch_vcpu_precreate()`s; `KVM_MAX_VCPUS` from each arch's
//!   `asm/kvm_host.h` (`KVM_MAX_VCPU_IDS` defaults to it);
//! - capabilities: `kvm_vm_ioctl_check_extension_generic()` (`kvm_main.c`),
//!   then the arch's `kvm_vm_ioctl_check_extension()` (riscv `vm.c`, arm64
//!   `arm.c`), each evaluated with the Kconfig those arches select.

// The kernel glue (VM and vCPU creation, KVM_CHECK_EXTENSION) comes next;
// until then only the host tests use these items.
#![allow(dead_code)]

use super::abi::Errno;
use super::dirty_log::KVM_DIRTY_LOG_MANUAL_CAPS;
use super::memslot::KVM_USER_MEM_SLOTS;

/// `KVM_CREATE_VCPU`: `_IO(KVMIO, 0x41)`.
pub(crate) const KVM_CREATE_VCPU: u32 = super::abi::kvm_io(0x41);

/// riscv64 `KVM_MAX_VCPUS`.
pub(crate) const RISCV_KVM_MAX_VCPUS: u32 = 1024;
/// arm64 `KVM_MAX_VCPUS` (= `VGIC_V3_MAX_CPUS`).
pub(crate) const ARM64_KVM_MAX_VCPUS: u32 = 512;
/// `VGIC_V2_MAX_CPUS`: the arm64 limit with a GICv2 host.
pub(crate) const VGIC_V2_MAX_CPUS: u32 = 8;

// ---- KVM_CREATE_VM ----

/// `KVM_VM_TYPE_ARM_IPA_SIZE_MASK`.
pub(crate) const KVM_VM_TYPE_ARM_IPA_SIZE_MASK: u64 = 0xff;
/// `KVM_VM_TYPE_ARM_PROTECTED` (pKVM, which kvm_rs does not offer).
pub(crate) const KVM_VM_TYPE_ARM_PROTECTED: u64 = 1 << 31;
/// `KVM_VM_TYPE_ARM_MASK`.
pub(crate) const KVM_VM_TYPE_ARM_MASK: u64 = KVM_VM_TYPE_ARM_IPA_SIZE_MASK | KVM_VM_TYPE_ARM_PROTECTED;
/// `KVM_PHYS_SHIFT`: the arm64 IPA size of type 0.
pub(crate) const KVM_PHYS_SHIFT: u32 = 40;
/// `ARM64_MIN_PARANGE_BITS`: the smallest IPA size.
pub(crate) const ARM64_MIN_PARANGE_BITS: u32 = 32;

/// arm64 `KVM_CREATE_VM`: the VM's IPA size in bits for machine type `ty`,
/// given the host's `kvm_ipa_limit`. `EINVAL` for unknown type bits, an IPA
/// size outside `32..=ipa_limit`, a default (40) above the limit, or
/// `KVM_VM_TYPE_ARM_PROTECTED` (no pKVM).
pub(crate) fn arm64_vm_ipa_bits(ty: u64, ipa_limit: u32) -> Result<u32, Errno> {
    if ty & !KVM_VM_TYPE_ARM_MASK != 0 {
        return Err(Errno::EINVAL);
    }
    // kvm_init_ipa_range(); the IPA size is 8 bits, so the cast is exact.
    let bits = (ty & KVM_VM_TYPE_ARM_IPA_SIZE_MASK) as u32;
    let bits = if bits != 0 {
        if bits > ipa_limit || bits < ARM64_MIN_PARANGE_BITS {
            return Err(Errno::EINVAL);
        }
        bits
    } else {
        if KVM_PHYS_SHIFT > ipa_limit {
            return Err(Errno::EINVAL);
        }
        KVM_PHYS_SHIFT
    };
    if ty & KVM_VM_TYPE_ARM_PROTECTED != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(bits)
}

/// riscv `kvm_riscv_gstage_gpa_bits()`: 12 + 9 bits per level + 2 (the
/// x4 root), so Sv39x4 = 41, Sv48x4 = 50, Sv57x4 = 59.
pub(crate) const fn riscv_gpa_bits(pgd_levels: u32) -> u32 {
    12 + pgd_levels * 9 + 2
}

/// riscv `KVM_CREATE_VM`: upstream ignores the machine type entirely, so
/// any value is accepted and the VM gets the host's deepest G-stage mode
/// (`kvm->arch.pgd_levels = kvm_riscv_gstage_max_pgd_levels`). Returns the
/// VM's GPA bits.
pub(crate) fn riscv_vm_gpa_bits(_ty: u64, max_pgd_levels: u32) -> u32 {
    riscv_gpa_bits(max_pgd_levels)
}

/// riscv `KVM_ENABLE_CAP(KVM_CAP_VM_GPA_BITS)`: the G-stage levels for
/// `args[0]` GPA bits. `EINVAL` for non-zero `flags`, more than 59 bits or
/// more levels than the host has; `EBUSY` once vCPUs or memslots exist.
pub(crate) fn riscv_enable_gpa_bits(
    flags: u32,
    gpa_bits: u64,
    max_pgd_levels: u32,
    vcpus_or_memslots_exist: bool,
) -> Result<u32, Errno> {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let levels = match gpa_bits {
        0..=41 => 3,
        42..=50 => 4,
        51..=59 => 5,
        _ => return Err(Errno::EINVAL),
    };
    if levels > max_pgd_levels {
        return Err(Errno::EINVAL);
    }
    if vcpus_or_memslots_exist {
        return Err(Errno::EBUSY);
    }
    Ok(levels)
}

// ---- KVM_CREATE_VCPU ----

/// The vCPU-creation bookkeeping of one VM (`kvm->created_vcpus`,
/// `kvm->max_vcpus`), protected by the VM's `kvm->lock`.
///
/// Invariant: `created <= max_vcpus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VcpuLimits {
    /// `KVM_MAX_VCPU_IDS`: ids must be below this.
    pub(crate) max_vcpu_ids: u32,
    /// `kvm->max_vcpus`: at most this many vCPUs.
    pub(crate) max_vcpus: u32,
    /// `kvm->created_vcpus`: reserved so far (including ones being set up).
    pub(crate) created: u32,
}

impl VcpuLimits {
    /// riscv64: 1024 vCPUs, ids below 1024.
    pub(crate) const fn riscv() -> Self {
        Self {
            max_vcpu_ids: RISCV_KVM_MAX_VCPUS,
            max_vcpus: RISCV_KVM_MAX_VCPUS,
            created: 0,
        }
    }

    /// arm64: ids below 512; at most `kvm_arm_default_max_vcpus()` vCPUs
    /// (the vGIC's limit, 512 without a vGIC).
    pub(crate) const fn arm64(vgic_max_vcpus: Option<u32>) -> Self {
        Self {
            max_vcpu_ids: ARM64_KVM_MAX_VCPUS,
            max_vcpus: match vgic_max_vcpus {
                Some(n) => n,
                None => ARM64_KVM_MAX_VCPUS,
            },
            created: 0,
        }
    }

    /// `kvm_vm_ioctl_create_vcpu()` up to `kvm->created_vcpus++`: reserves
    /// a vCPU for `id`. `EINVAL` for an id at or above `KVM_MAX_VCPU_IDS`
    /// or when `max_vcpus` are already created; `EEXIST` when `id_in_use`;
    /// then `precreate` (the arch's `kvm_arch_vcpu_precreate()`).
    pub(crate) fn reserve(
        &mut self,
        id: u64,
        id_in_use: bool,
        precreate: impl FnOnce(u32) -> Result<(), Errno>,
    ) -> Result<u32, Errno> {
        let id = u32::try_from(id).map_err(|_| Errno::EINVAL)?;
        if id >= self.max_vcpu_ids {
            return Err(Errno::EINVAL);
        }
        if self.created >= self.max_vcpus {
            return Err(Errno::EINVAL);
        }
        if id_in_use {
            return Err(Errno::EEXIST);
        }
        precreate(id)?;
        self.created += 1;
        Ok(id)
    }

    /// Undoes a [`Self::reserve`] whose vCPU could not be created
    /// (upstream's `vcpu_decrement` label).
    pub(crate) fn unreserve(&mut self) {
        self.created = self.created.saturating_sub(1);
    }
}

/// arm64 `kvm_arch_vcpu_precreate()`: `EBUSY` once the in-kernel vGIC is
/// initialized, `EINVAL` for an id at or above `max_vcpus`.
pub(crate) fn arm64_vcpu_precreate(id: u32, max_vcpus: u32, vgic_initialized: bool) -> Result<(), Errno> {
    if vgic_initialized {
        return Err(Errno::EBUSY);
    }
    if id >= max_vcpus {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// riscv `kvm_arch_vcpu_precreate()`: accepts everything.
pub(crate) fn riscv_vcpu_precreate(_id: u32) -> Result<(), Errno> {
    Ok(())
}

// ---- KVM_CHECK_EXTENSION ----

/// Capability numbers (`include/uapi/linux/kvm.h`) used below.
#[allow(missing_docs)]
pub(crate) mod cap {
    pub(crate) const IRQCHIP: i64 = 0;
    pub(crate) const USER_MEMORY: i64 = 3;
    pub(crate) const NR_VCPUS: i64 = 9;
    pub(crate) const NR_MEMSLOTS: i64 = 10;
    pub(crate) const MP_STATE: i64 = 14;
    pub(crate) const COALESCED_MMIO: i64 = 15;
    pub(crate) const SYNC_MMU: i64 = 16;
    pub(crate) const DESTROY_MEMORY_REGION_WORKS: i64 = 21;
    pub(crate) const SET_GUEST_DEBUG: i64 = 23;
    pub(crate) const IRQ_ROUTING: i64 = 25;
    pub(crate) const JOIN_MEMORY_REGIONS_WORKS: i64 = 30;
    pub(crate) const IRQFD: i64 = 32;
    pub(crate) const IOEVENTFD: i64 = 36;
    pub(crate) const INTERNAL_ERROR_DATA: i64 = 40;
    pub(crate) const VCPU_EVENTS: i64 = 41;
    pub(crate) const MAX_VCPUS: i64 = 66;
    pub(crate) const ONE_REG: i64 = 70;
    pub(crate) const SIGNAL_MSI: i64 = 77;
    pub(crate) const READONLY_MEM: i64 = 81;
    pub(crate) const IRQFD_RESAMPLE: i64 = 82;
    pub(crate) const ARM_PSCI: i64 = 87;
    pub(crate) const ARM_SET_DEVICE_ADDR: i64 = 88;
    pub(crate) const DEVICE_CTRL: i64 = 89;
    pub(crate) const ARM_EL1_32BIT: i64 = 93;
    pub(crate) const ENABLE_CAP_VM: i64 = 98;
    pub(crate) const ARM_PSCI_0_2: i64 = 102;
    pub(crate) const CHECK_EXTENSION_VM: i64 = 105;
    pub(crate) const MULTI_ADDRESS_SPACE: i64 = 118;
    pub(crate) const GUEST_DEBUG_HW_BPS: i64 = 119;
    pub(crate) const GUEST_DEBUG_HW_WPS: i64 = 120;
    pub(crate) const IOEVENTFD_ANY_LENGTH: i64 = 122;
    pub(crate) const ARM_PMU_V3: i64 = 126;
    pub(crate) const VCPU_ATTRIBUTES: i64 = 127;
    pub(crate) const MAX_VCPU_ID: i64 = 128;
    pub(crate) const MSI_DEVID: i64 = 131;
    pub(crate) const IMMEDIATE_EXIT: i64 = 136;
    pub(crate) const ARM_USER_IRQ: i64 = 144;
    pub(crate) const ARM_INJECT_SERROR_ESR: i64 = 158;
    pub(crate) const COALESCED_PIO: i64 = 162;
    pub(crate) const ARM_VM_IPA_SIZE: i64 = 165;
    pub(crate) const MANUAL_DIRTY_LOG_PROTECT2: i64 = 168;
    pub(crate) const ARM_SVE: i64 = 170;
    pub(crate) const ARM_PTRAUTH_ADDRESS: i64 = 171;
    pub(crate) const ARM_PTRAUTH_GENERIC: i64 = 172;
    pub(crate) const ARM_IRQ_LINE_LAYOUT_2: i64 = 174;
    pub(crate) const ARM_NISV_TO_USER: i64 = 177;
    pub(crate) const ARM_INJECT_EXT_DABT: i64 = 178;
    pub(crate) const HALT_POLL: i64 = 182;
    pub(crate) const STEAL_TIME: i64 = 187;
    pub(crate) const DIRTY_LOG_RING: i64 = 192;
    pub(crate) const SET_GUEST_DEBUG2: i64 = 195;
    pub(crate) const PTP_KVM: i64 = 198;
    pub(crate) const BINARY_STATS_FD: i64 = 203;
    pub(crate) const ARM_MTE: i64 = 205;
    pub(crate) const VM_GPA_BITS: i64 = 207;
    pub(crate) const SYSTEM_EVENT_DATA: i64 = 215;
    pub(crate) const ARM_SYSTEM_SUSPEND: i64 = 216;
    pub(crate) const DIRTY_LOG_RING_ACQ_REL: i64 = 223;
    pub(crate) const DIRTY_LOG_RING_WITH_BITMAP: i64 = 225;
    pub(crate) const COUNTER_OFFSET: i64 = 227;
    pub(crate) const ARM_EAGER_SPLIT_CHUNK_SIZE: i64 = 228;
    pub(crate) const ARM_SUPPORTED_BLOCK_SIZES: i64 = 229;
    pub(crate) const ARM_SUPPORTED_REG_MASK_RANGES: i64 = 230;
    pub(crate) const USER_MEMORY2: i64 = 231;
    pub(crate) const MEMORY_ATTRIBUTES: i64 = 233;
    pub(crate) const GUEST_MEMFD: i64 = 234;
    pub(crate) const ARM_WRITABLE_IMP_ID_REGS: i64 = 239;
    pub(crate) const ARM_EL2: i64 = 240;
    pub(crate) const ARM_EL2_E2H0: i64 = 241;
    pub(crate) const ARM_CACHEABLE_PFNMAP_SUPPORTED: i64 = 243;
    pub(crate) const GUEST_MEMFD_FLAGS: i64 = 244;
    pub(crate) const ARM_SEA_TO_USER: i64 = 245;
    pub(crate) const ARM_PMU_V3_STRICT: i64 = 251;
}

/// `KVM_COALESCED_MMIO_PAGE_OFFSET` on riscv64 and arm64.
pub(crate) const KVM_COALESCED_MMIO_PAGE_OFFSET: i64 = 1;
/// `KVM_MAX_IRQ_ROUTES`.
pub(crate) const KVM_MAX_IRQ_ROUTES: i64 = 4096;
/// `KVM_DIRTY_RING_MAX_ENTRIES * sizeof(struct kvm_dirty_gfn)`.
pub(crate) const KVM_DIRTY_RING_MAX_BYTES: i64 = 65536 * 16;

/// The Kconfig switches `kvm_vm_ioctl_check_extension_generic()` depends
/// on. [`GenericCaps::RISCV`] and [`GenericCaps::ARM64`] are what upstream
/// selects; kvm_rs turns switches on as it implements the features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GenericCaps {
    /// `CONFIG_HAVE_KVM_MSI`: `SIGNAL_MSI`.
    pub(crate) have_msi: bool,
    /// `CONFIG_HAVE_KVM_IRQCHIP`: `IRQFD`.
    pub(crate) have_irqchip: bool,
    /// `CONFIG_KVM_MMIO`: `COALESCED_MMIO`, `COALESCED_PIO`.
    pub(crate) kvm_mmio: bool,
    /// `CONFIG_KVM_GENERIC_DIRTYLOG_READ_PROTECT`: the answer to
    /// `MANUAL_DIRTY_LOG_PROTECT2` (`KVM_DIRTY_LOG_MANUAL_CAPS`), if any.
    pub(crate) manual_dirty_log_caps: Option<u64>,
    /// `CONFIG_HAVE_KVM_IRQ_ROUTING`: `IRQ_ROUTING`.
    pub(crate) irq_routing: bool,
    /// `CONFIG_HAVE_KVM_DIRTY_RING_TSO`: `DIRTY_LOG_RING` (x86 only).
    pub(crate) dirty_ring_tso: bool,
    /// `CONFIG_HAVE_KVM_DIRTY_RING_ACQ_REL`: `DIRTY_LOG_RING_ACQ_REL`.
    pub(crate) dirty_ring_acq_rel: bool,
    /// `CONFIG_NEED_KVM_DIRTY_RING_WITH_BITMAP`: `DIRTY_LOG_RING_WITH_BITMAP`.
    pub(crate) dirty_ring_with_bitmap: bool,
    /// `CONFIG_KVM_GUEST_MEMFD`: `GUEST_MEMFD` and the supported
    /// guest_memfd flags (`kvm_gmem_get_supported_flags()`).
    pub(crate) guest_memfd_flags: Option<u64>,
}

impl GenericCaps {
    /// riscv64 (`arch/riscv/kvm/Kconfig`).
    pub(crate) const RISCV: GenericCaps = GenericCaps {
        have_msi: true,
        have_irqchip: true,
        kvm_mmio: true,
        manual_dirty_log_caps: Some(KVM_DIRTY_LOG_MANUAL_CAPS),
        irq_routing: true,
        dirty_ring_tso: false,
        dirty_ring_acq_rel: true,
        dirty_ring_with_bitmap: false,
        guest_memfd_flags: None,
    };

    /// arm64 (`arch/arm64/kvm/Kconfig`); guest_memfd supports
    /// `GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED`.
    pub(crate) const ARM64: GenericCaps = GenericCaps {
        have_msi: true,
        have_irqchip: true,
        kvm_mmio: true,
        manual_dirty_log_caps: Some(KVM_DIRTY_LOG_MANUAL_CAPS),
        irq_routing: true,
        dirty_ring_tso: false,
        dirty_ring_acq_rel: true,
        dirty_ring_with_bitmap: true,
        guest_memfd_flags: Some(0b11),
    };

    /// Nothing optional: what kvm_rs can honestly answer before irqchips,
    /// eventfds, MMIO rings, dirty rings or guest_memfd exist.
    pub(crate) const MINIMAL: GenericCaps = GenericCaps {
        have_msi: false,
        have_irqchip: false,
        kvm_mmio: false,
        manual_dirty_log_caps: Some(KVM_DIRTY_LOG_MANUAL_CAPS),
        irq_routing: false,
        dirty_ring_tso: false,
        dirty_ring_acq_rel: false,
        dirty_ring_with_bitmap: false,
        guest_memfd_flags: None,
    };
}

/// `kvm_vm_ioctl_check_extension_generic()`: the generic answer, or `None`
/// when upstream falls through to the arch's `kvm_vm_ioctl_check_extension()`.
/// Same answer on `/dev/kvm` and on a VM fd (riscv64 and arm64 have one
/// address space, so nothing here depends on the VM).
pub(crate) fn check_extension_generic(cfg: &GenericCaps, cap: i64) -> Option<i64> {
    use cap::*;
    let yes = |b: bool| if b { Some(1) } else { None };
    match cap {
        SYNC_MMU | USER_MEMORY | USER_MEMORY2 | DESTROY_MEMORY_REGION_WORKS
        | JOIN_MEMORY_REGIONS_WORKS | INTERNAL_ERROR_DATA | IOEVENTFD_ANY_LENGTH
        | CHECK_EXTENSION_VM | ENABLE_CAP_VM | HALT_POLL => Some(1),
        SIGNAL_MSI => yes(cfg.have_msi),
        IRQFD => yes(cfg.have_irqchip),
        COALESCED_MMIO => cfg.kvm_mmio.then_some(KVM_COALESCED_MMIO_PAGE_OFFSET),
        COALESCED_PIO => yes(cfg.kvm_mmio),
        MANUAL_DIRTY_LOG_PROTECT2 => cfg.manual_dirty_log_caps.map(|c| c as i64),
        IRQ_ROUTING => cfg.irq_routing.then_some(KVM_MAX_IRQ_ROUTES),
        NR_MEMSLOTS => Some(i64::from(KVM_USER_MEM_SLOTS)),
        DIRTY_LOG_RING => Some(if cfg.dirty_ring_tso { KVM_DIRTY_RING_MAX_BYTES } else { 0 }),
        DIRTY_LOG_RING_ACQ_REL => Some(if cfg.dirty_ring_acq_rel { KVM_DIRTY_RING_MAX_BYTES } else { 0 }),
        DIRTY_LOG_RING_WITH_BITMAP => yes(cfg.dirty_ring_with_bitmap),
        BINARY_STATS_FD | SYSTEM_EVENT_DATA | DEVICE_CTRL => Some(1),
        GUEST_MEMFD => cfg.guest_memfd_flags.map(|_| 1),
        GUEST_MEMFD_FLAGS => cfg.guest_memfd_flags.map(|f| f as i64),
        _ => None,
    }
}

/// `KVM_CHECK_EXTENSION`: the generic table, then the arch's answer (0 for
/// anything it does not know). Never fails.
pub(crate) fn check_extension(cfg: &GenericCaps, cap: i64, arch: impl FnOnce(i64) -> i64) -> i64 {
    check_extension_generic(cfg, cap).unwrap_or_else(|| arch(cap))
}

/// The generic capabilities whose features kvm_rs implements today: the
/// memslot ioctls, VM-fd `KVM_CHECK_EXTENSION`/`KVM_ENABLE_CAP`, binary
/// stats fds, manual dirty-log protection and the `KVM_CREATE_DEVICE`
/// framework (`DEVICE_CTRL`: the ioctl and the device-attribute ioctls
/// behave as upstream's; which device types exist is asked type by type
/// with `KVM_CREATE_DEVICE_TEST`), and the `kvm_run` exit data formats
/// (`INTERNAL_ERROR_DATA`: `internal.ndata`/`data` are filled;
/// `SYSTEM_EVENT_DATA`: `system_event.ndata`/`data` are, as riscv64's SRST
/// exit does), and `IOEVENTFD_ANY_LENGTH` (length-0 `KVM_IOEVENTFD`
/// registrations). Every other capability of the generic
/// table ([`GenericCaps::MINIMAL`] still answers some upstream answers
/// unconditionally, e.g. `HALT_POLL`, `IOEVENTFD_ANY_LENGTH`, `IRQFD`) is
/// answered 0 until its feature exists.
pub(crate) const KVM_RS_GENERIC_CAPS: [i64; 13] = [
    cap::USER_MEMORY,
    cap::USER_MEMORY2,
    cap::DESTROY_MEMORY_REGION_WORKS,
    cap::JOIN_MEMORY_REGIONS_WORKS,
    cap::NR_MEMSLOTS,
    cap::CHECK_EXTENSION_VM,
    cap::ENABLE_CAP_VM,
    cap::BINARY_STATS_FD,
    cap::MANUAL_DIRTY_LOG_PROTECT2,
    cap::DEVICE_CTRL,
    cap::INTERNAL_ERROR_DATA,
    cap::SYSTEM_EVENT_DATA,
    cap::IOEVENTFD_ANY_LENGTH,
];

/// kvm_rs's `KVM_CHECK_EXTENSION`: upstream's generic answer (with
/// [`GenericCaps::MINIMAL`]) for the capabilities of
/// [`KVM_RS_GENERIC_CAPS`], 0 for the rest of the generic table, and the
/// architecture's (already filtered) answer for everything else.
pub(crate) fn kvm_rs_check_extension(cap: i64, arch: impl FnOnce(i64) -> i64) -> i64 {
    match check_extension_generic(&GenericCaps::MINIMAL, cap) {
        Some(answer) if KVM_RS_GENERIC_CAPS.contains(&cap) => answer,
        Some(_) => 0,
        None => arch(cap),
    }
}

/// The host facts riscv's `kvm_vm_ioctl_check_extension()` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RiscvHostCaps {
    /// `kvm_riscv_aia_available()`.
    pub(crate) aia_available: bool,
    /// `num_online_cpus()`.
    pub(crate) online_cpus: u32,
    /// GPA bits: of the VM on a VM fd, of the host's deepest mode on
    /// `/dev/kvm`.
    pub(crate) gpa_bits: u32,
}

/// riscv `kvm_vm_ioctl_check_extension()`.
pub(crate) fn riscv_check_extension(h: &RiscvHostCaps, c: i64) -> i64 {
    use cap::*;
    match c {
        IRQCHIP => i64::from(h.aia_available),
        IOEVENTFD | USER_MEMORY | DESTROY_MEMORY_REGION_WORKS | ONE_REG | READONLY_MEM
        | MP_STATE | IMMEDIATE_EXIT | SET_GUEST_DEBUG => 1,
        NR_VCPUS => i64::from(h.online_cpus.min(RISCV_KVM_MAX_VCPUS)),
        MAX_VCPUS => i64::from(RISCV_KVM_MAX_VCPUS),
        NR_MEMSLOTS => i64::from(KVM_USER_MEM_SLOTS),
        VM_GPA_BITS => i64::from(h.gpa_bits),
        _ => 0,
    }
}

/// The host (and VM) facts arm64's `kvm_vm_ioctl_check_extension()` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Arm64HostCaps {
    /// `vgic_present`.
    pub(crate) vgic_present: bool,
    /// `kvm->max_vcpus` on a VM fd, `kvm_arm_default_max_vcpus()` on
    /// `/dev/kvm`.
    pub(crate) max_vcpus: u32,
    /// `kvm_arm_default_max_vcpus()`.
    pub(crate) default_max_vcpus: u32,
    /// `num_online_cpus()`.
    pub(crate) online_cpus: u32,
    /// Asked on a VM fd (some caps are `EINVAL`-valued on `/dev/kvm`).
    pub(crate) on_vm: bool,
    /// `kvm->arch.vgic.msis_require_devid` (VM only).
    pub(crate) msis_require_devid: bool,
    /// `KVM_GUESTDBG_VALID_MASK`.
    pub(crate) guestdbg_valid_mask: i64,
    /// `system_supports_mte()`.
    pub(crate) mte: bool,
    /// `kvm_arm_pvtime_supported()`.
    pub(crate) pvtime: bool,
    /// `ARM64_HAS_32BIT_EL1`.
    pub(crate) el1_32bit: bool,
    /// `ARM64_HAS_NESTED_VIRT`.
    pub(crate) nested_virt: bool,
    /// `ARM64_HAS_HCR_NV1`.
    pub(crate) hcr_nv1: bool,
    /// `get_num_brps()`.
    pub(crate) brps: u32,
    /// `get_num_wrps()`.
    pub(crate) wrps: u32,
    /// `kvm_supports_guest_pmuv3()`.
    pub(crate) pmuv3: bool,
    /// `ARM64_HAS_RAS_EXTN`.
    pub(crate) ras: bool,
    /// `get_kvm_ipa_limit()`.
    pub(crate) ipa_limit: u32,
    /// `system_supports_sve()`.
    pub(crate) sve: bool,
    /// `kvm_has_full_ptr_auth()`.
    pub(crate) ptrauth: bool,
    /// The VM's split chunk size, or `KVM_ARM_EAGER_SPLIT_CHUNK_SIZE_DEFAULT`.
    pub(crate) eager_split_chunk_size: u64,
    /// `kvm_supported_block_sizes()`.
    pub(crate) supported_block_sizes: u64,
    /// `kvm_supports_cacheable_pfnmap()` (VM only).
    pub(crate) cacheable_pfnmap: bool,
}

/// arm64 `kvm_vm_ioctl_check_extension()` (without pKVM filtering).
pub(crate) fn arm64_check_extension(h: &Arm64HostCaps, c: i64) -> i64 {
    use cap::*;
    let einval = -i64::from(Errno::EINVAL.0);
    match c {
        IRQCHIP => i64::from(h.vgic_present),
        IOEVENTFD | USER_MEMORY | DESTROY_MEMORY_REGION_WORKS | ONE_REG | ARM_PSCI
        | ARM_PSCI_0_2 | READONLY_MEM | MP_STATE | IMMEDIATE_EXIT | VCPU_EVENTS
        | ARM_IRQ_LINE_LAYOUT_2 | ARM_NISV_TO_USER | ARM_INJECT_EXT_DABT | SET_GUEST_DEBUG
        | VCPU_ATTRIBUTES | PTP_KVM | ARM_SYSTEM_SUSPEND | IRQFD_RESAMPLE | COUNTER_OFFSET
        | ARM_WRITABLE_IMP_ID_REGS | ARM_SEA_TO_USER | ARM_SET_DEVICE_ADDR | ARM_USER_IRQ => 1,
        SET_GUEST_DEBUG2 => h.guestdbg_valid_mask,
        NR_VCPUS => i64::from(h.online_cpus.min(h.default_max_vcpus)),
        MAX_VCPUS | MAX_VCPU_ID => i64::from(if h.on_vm { h.max_vcpus } else { h.default_max_vcpus }),
        MSI_DEVID if !h.on_vm => einval,
        MSI_DEVID => i64::from(h.msis_require_devid),
        ARM_MTE => i64::from(h.mte),
        STEAL_TIME => i64::from(h.pvtime),
        ARM_EL1_32BIT => i64::from(h.el1_32bit),
        ARM_EL2 => i64::from(h.nested_virt),
        ARM_EL2_E2H0 => i64::from(h.hcr_nv1),
        GUEST_DEBUG_HW_BPS => i64::from(h.brps),
        GUEST_DEBUG_HW_WPS => i64::from(h.wrps),
        ARM_PMU_V3 | ARM_PMU_V3_STRICT => i64::from(h.pmuv3),
        ARM_INJECT_SERROR_ESR => i64::from(h.ras),
        ARM_VM_IPA_SIZE => i64::from(h.ipa_limit),
        ARM_SVE => i64::from(h.sve),
        ARM_PTRAUTH_ADDRESS | ARM_PTRAUTH_GENERIC => i64::from(h.ptrauth),
        ARM_EAGER_SPLIT_CHUNK_SIZE => i64::try_from(h.eager_split_chunk_size).unwrap_or(i64::MAX),
        ARM_SUPPORTED_BLOCK_SIZES => i64::try_from(h.supported_block_sizes).unwrap_or(i64::MAX),
        ARM_SUPPORTED_REG_MASK_RANGES => 1,
        ARM_CACHEABLE_PFNMAP_SUPPORTED if !h.on_vm => einval,
        ARM_CACHEABLE_PFNMAP_SUPPORTED => i64::from(h.cacheable_pfnmap),
        _ => 0,
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn kvm_rs_claims_only_what_exists() {
        let arch = |c: i64| if c == cap::MAX_VCPUS { 1024 } else { 0 };
        assert_eq!(kvm_rs_check_extension(cap::USER_MEMORY, arch), 1);
        assert_eq!(kvm_rs_check_extension(cap::NR_MEMSLOTS, arch), 32767);
        assert_eq!(kvm_rs_check_extension(cap::MANUAL_DIRTY_LOG_PROTECT2, arch), 3);
        assert_eq!(kvm_rs_check_extension(cap::BINARY_STATS_FD, arch), 1);
        assert_eq!(kvm_rs_check_extension(cap::DEVICE_CTRL, arch), 1);
        assert_eq!(kvm_rs_check_extension(cap::INTERNAL_ERROR_DATA, arch), 1);
        assert_eq!(kvm_rs_check_extension(cap::SYSTEM_EVENT_DATA, arch), 1);
        assert_eq!(kvm_rs_check_extension(cap::IOEVENTFD_ANY_LENGTH, arch), 1);
        // Upstream answers these unconditionally; kvm_rs has no feature yet.
        for c in [cap::HALT_POLL, cap::SYNC_MMU,
                  cap::IRQFD, cap::DIRTY_LOG_RING_ACQ_REL, cap::GUEST_MEMFD] {
            assert_eq!(kvm_rs_check_extension(c, arch), 0, "cap {c}");
        }
        // Coalesced MMIO/PIO are the arch's to claim (riscv64 does; arm64
        // not until it has an MMIO exit).
        let rv = |c: i64| check_extension_generic(&GenericCaps::RISCV, c).unwrap_or(0);
        assert_eq!(kvm_rs_check_extension(cap::COALESCED_MMIO, rv), KVM_COALESCED_MMIO_PAGE_OFFSET);
        assert_eq!(kvm_rs_check_extension(cap::COALESCED_PIO, rv), 1);
        assert_eq!(kvm_rs_check_extension(cap::COALESCED_MMIO, arch), 0);
        // The rest goes to the arch.
        assert_eq!(kvm_rs_check_extension(cap::MAX_VCPUS, arch), 1024);
        assert_eq!(kvm_rs_check_extension(-1, arch), 0);
        for c in KVM_RS_GENERIC_CAPS {
            assert_ne!(kvm_rs_check_extension(c, |_| 0), 0, "cap {c}");
        }
    }

    #[test]
    fn create_vcpu_ioctl_number() {
        assert_eq!(KVM_CREATE_VCPU, 0xae41);
    }

    #[test]
    fn arm64_vm_types() {
        let lim = 44;
        assert_eq!(arm64_vm_ipa_bits(0, lim), Ok(40));
        assert_eq!(arm64_vm_ipa_bits(32, lim), Ok(32));
        assert_eq!(arm64_vm_ipa_bits(44, lim), Ok(44));
        assert_eq!(arm64_vm_ipa_bits(45, lim), Err(Errno::EINVAL));
        assert_eq!(arm64_vm_ipa_bits(31, lim), Err(Errno::EINVAL));
        assert_eq!(arm64_vm_ipa_bits(1, lim), Err(Errno::EINVAL));
        // Bits outside the mask, and PROTECTED without pKVM.
        assert_eq!(arm64_vm_ipa_bits(0x100, lim), Err(Errno::EINVAL));
        assert_eq!(arm64_vm_ipa_bits(1 << 32, lim), Err(Errno::EINVAL));
        assert_eq!(arm64_vm_ipa_bits(KVM_VM_TYPE_ARM_PROTECTED, lim), Err(Errno::EINVAL));
        assert_eq!(arm64_vm_ipa_bits(u64::MAX, lim), Err(Errno::EINVAL));
        // A host below 40 bits needs an explicit size.
        assert_eq!(arm64_vm_ipa_bits(0, 36), Err(Errno::EINVAL));
        assert_eq!(arm64_vm_ipa_bits(36, 36), Ok(36));
    }

    #[test]
    fn riscv_vm_types_and_gpa_bits() {
        assert_eq!(riscv_gpa_bits(3), 41);
        assert_eq!(riscv_gpa_bits(4), 50);
        assert_eq!(riscv_gpa_bits(5), 59);
        // Upstream riscv ignores the machine type.
        assert_eq!(riscv_vm_gpa_bits(0, 4), 50);
        assert_eq!(riscv_vm_gpa_bits(u64::MAX, 5), 59);
        assert_eq!(riscv_enable_gpa_bits(0, 39, 4, false), Ok(3));
        assert_eq!(riscv_enable_gpa_bits(0, 41, 4, false), Ok(3));
        assert_eq!(riscv_enable_gpa_bits(0, 42, 4, false), Ok(4));
        assert_eq!(riscv_enable_gpa_bits(0, 51, 4, false), Err(Errno::EINVAL));
        assert_eq!(riscv_enable_gpa_bits(0, 60, 5, false), Err(Errno::EINVAL));
        assert_eq!(riscv_enable_gpa_bits(1, 41, 5, false), Err(Errno::EINVAL));
        assert_eq!(riscv_enable_gpa_bits(0, 41, 5, true), Err(Errno::EBUSY));
    }

    #[test]
    fn create_vcpu_rules() {
        let mut v = VcpuLimits::riscv();
        assert_eq!(v.reserve(1024, false, riscv_vcpu_precreate), Err(Errno::EINVAL));
        assert_eq!(v.reserve(u64::MAX, false, riscv_vcpu_precreate), Err(Errno::EINVAL));
        assert_eq!(v.reserve(1 << 32, false, riscv_vcpu_precreate), Err(Errno::EINVAL));
        assert_eq!(v.reserve(1023, false, riscv_vcpu_precreate), Ok(1023));
        assert_eq!(v.reserve(1023, true, riscv_vcpu_precreate), Err(Errno::EEXIST));
        assert_eq!(v.created, 1);
        // Fill up: the 1025th is EINVAL even with a free id... there is none,
        // so shrink max_vcpus to check the count limit comes before EEXIST.
        let mut v = VcpuLimits { max_vcpus: 2, ..VcpuLimits::riscv() };
        assert_eq!(v.reserve(0, false, riscv_vcpu_precreate), Ok(0));
        assert_eq!(v.reserve(1, false, riscv_vcpu_precreate), Ok(1));
        assert_eq!(v.reserve(1, true, riscv_vcpu_precreate), Err(Errno::EINVAL));
        v.unreserve();
        assert_eq!(v.reserve(1, false, riscv_vcpu_precreate), Ok(1));
    }

    #[test]
    fn arm64_vcpu_limits_follow_the_vgic() {
        let mut v = VcpuLimits::arm64(Some(VGIC_V2_MAX_CPUS));
        let pre = |max: u32, init: bool| move |id| arm64_vcpu_precreate(id, max, init);
        // Ids up to 511 are valid ids, but above the GICv2 limit: precreate EINVAL.
        assert_eq!(v.reserve(8, false, pre(v.max_vcpus, false)), Err(Errno::EINVAL));
        assert_eq!(v.reserve(512, false, pre(v.max_vcpus, false)), Err(Errno::EINVAL));
        assert_eq!(v.reserve(7, false, pre(v.max_vcpus, false)), Ok(7));
        assert_eq!(v.reserve(6, false, pre(v.max_vcpus, true)), Err(Errno::EBUSY));
        assert_eq!(v.created, 1);
        let v = VcpuLimits::arm64(None);
        assert_eq!((v.max_vcpu_ids, v.max_vcpus), (512, 512));
    }

    #[test]
    fn generic_caps_match_upstream_on_both_arches() {
        for cfg in [GenericCaps::RISCV, GenericCaps::ARM64] {
            for c in [
                cap::SYNC_MMU,
                cap::USER_MEMORY,
                cap::USER_MEMORY2,
                cap::DESTROY_MEMORY_REGION_WORKS,
                cap::JOIN_MEMORY_REGIONS_WORKS,
                cap::INTERNAL_ERROR_DATA,
                cap::SIGNAL_MSI,
                cap::IRQFD,
                cap::IOEVENTFD_ANY_LENGTH,
                cap::CHECK_EXTENSION_VM,
                cap::ENABLE_CAP_VM,
                cap::HALT_POLL,
                cap::COALESCED_MMIO,
                cap::COALESCED_PIO,
                cap::BINARY_STATS_FD,
                cap::SYSTEM_EVENT_DATA,
                cap::DEVICE_CTRL,
            ] {
                assert_eq!(check_extension_generic(&cfg, c), Some(1), "cap {c}");
            }
            assert_eq!(check_extension_generic(&cfg, cap::MANUAL_DIRTY_LOG_PROTECT2), Some(3));
            assert_eq!(check_extension_generic(&cfg, cap::IRQ_ROUTING), Some(4096));
            assert_eq!(check_extension_generic(&cfg, cap::NR_MEMSLOTS), Some(32767));
            assert_eq!(check_extension_generic(&cfg, cap::DIRTY_LOG_RING), Some(0));
            assert_eq!(check_extension_generic(&cfg, cap::DIRTY_LOG_RING_ACQ_REL), Some(1 << 20));
            // Arch-handled or unknown: fall through.
            for c in [cap::IOEVENTFD, cap::NR_VCPUS, cap::MAX_VCPUS, cap::MAX_VCPU_ID, cap::MULTI_ADDRESS_SPACE, cap::MEMORY_ATTRIBUTES, -1, 100_000] {
                assert_eq!(check_extension_generic(&cfg, c), None, "cap {c}");
            }
        }
        let r = GenericCaps::RISCV;
        let a = GenericCaps::ARM64;
        assert_eq!(check_extension_generic(&r, cap::DIRTY_LOG_RING_WITH_BITMAP), None);
        assert_eq!(check_extension_generic(&a, cap::DIRTY_LOG_RING_WITH_BITMAP), Some(1));
        assert_eq!(check_extension_generic(&r, cap::GUEST_MEMFD), None);
        assert_eq!(check_extension_generic(&a, cap::GUEST_MEMFD), Some(1));
        assert_eq!(check_extension_generic(&a, cap::GUEST_MEMFD_FLAGS), Some(3));
        // The minimal table drops the optional features.
        let m = GenericCaps::MINIMAL;
        assert_eq!(check_extension_generic(&m, cap::IRQFD), None);
        assert_eq!(check_extension_generic(&m, cap::COALESCED_MMIO), None);
        assert_eq!(check_extension_generic(&m, cap::DIRTY_LOG_RING_ACQ_REL), Some(0));
        assert_eq!(check_extension_generic(&m, cap::USER_MEMORY2), Some(1));
    }

    #[test]
    fn riscv_arch_caps() {
        let h = RiscvHostCaps { aia_available: false, online_cpus: 4, gpa_bits: 50 };
        let ask = |c| check_extension(&GenericCaps::RISCV, c, |c| riscv_check_extension(&h, c));
        assert_eq!(ask(cap::NR_VCPUS), 4);
        assert_eq!(ask(cap::MAX_VCPUS), 1024);
        assert_eq!(ask(cap::MAX_VCPU_ID), 0); // riscv does not report it
        assert_eq!(ask(cap::IOEVENTFD), 1);
        assert_eq!(ask(cap::READONLY_MEM), 1);
        assert_eq!(ask(cap::IRQCHIP), 0);
        assert_eq!(ask(cap::VM_GPA_BITS), 50);
        assert_eq!(ask(cap::ARM_VM_IPA_SIZE), 0);
        assert_eq!(ask(cap::NR_MEMSLOTS), 32767);
        assert_eq!(ask(-5), 0);
        let big = RiscvHostCaps { online_cpus: 4096, ..h };
        assert_eq!(riscv_check_extension(&big, cap::NR_VCPUS), 1024);
    }

    #[test]
    fn arm64_arch_caps() {
        let h = Arm64HostCaps {
            vgic_present: true,
            max_vcpus: 512,
            default_max_vcpus: 512,
            online_cpus: 8,
            on_vm: false,
            msis_require_devid: false,
            guestdbg_valid_mask: 0x3_0003,
            mte: false,
            pvtime: true,
            el1_32bit: false,
            nested_virt: false,
            hcr_nv1: false,
            brps: 6,
            wrps: 4,
            pmuv3: true,
            ras: false,
            ipa_limit: 44,
            sve: false,
            ptrauth: false,
            eager_split_chunk_size: 0,
            supported_block_sizes: 0x4020_1000,
            cacheable_pfnmap: false,
        };
        let ask = |h: &Arm64HostCaps, c| check_extension(&GenericCaps::ARM64, c, |c| arm64_check_extension(h, c));
        assert_eq!(ask(&h, cap::NR_VCPUS), 8);
        assert_eq!(ask(&h, cap::MAX_VCPUS), 512);
        assert_eq!(ask(&h, cap::MAX_VCPU_ID), 512);
        assert_eq!(ask(&h, cap::ARM_VM_IPA_SIZE), 44);
        assert_eq!(ask(&h, cap::MSI_DEVID), -22);
        assert_eq!(ask(&h, cap::ARM_CACHEABLE_PFNMAP_SUPPORTED), -22);
        assert_eq!(ask(&h, cap::GUEST_DEBUG_HW_BPS), 6);
        assert_eq!(ask(&h, cap::SET_GUEST_DEBUG2), 0x3_0003);
        assert_eq!(ask(&h, cap::ARM_PSCI_0_2), 1);
        assert_eq!(ask(&h, cap::VM_GPA_BITS), 0);
        let vm = Arm64HostCaps { on_vm: true, max_vcpus: 8, ..h };
        assert_eq!(ask(&vm, cap::MAX_VCPUS), 8);
        assert_eq!(ask(&vm, cap::NR_VCPUS), 8);
        assert_eq!(ask(&vm, cap::MSI_DEVID), 0);
        assert_eq!(ask(&vm, cap::ARM_CACHEABLE_PFNMAP_SUPPORTED), 0);
    }
}
