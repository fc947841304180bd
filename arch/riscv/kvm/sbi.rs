// SPDX-License-Identifier: GPL-2.0

//! SBI calls from the guest: the `ecall` a VS-mode guest makes to its
//! "firmware", which KVM implements (upstream `arch/riscv/kvm/vcpu_sbi.c`
//! and `vcpu_sbi_{base,replace,hsm,system,sta,forward,v01}.c`), plus the
//! per-vCPU extension switches userspace sees as ONE_REG registers
//! (`KVM_REG_RISCV_SBI_EXT`, `KVM_REG_RISCV_SBI_STATE`) and the steal-time
//! (STA) shared-memory protocol.
//!
//! Pure logic (`core` only), tested on the host (`make hosttest`) and in
//! KUnit (`kvm_rs_riscv_sbi`). What needs the VM (other vCPUs, guest
//! memory, the timer) is asked of the kernel through the [`SbiEnv`] trait;
//! the decisions and every SBI error code are made here.
//!
//! # How the run loop uses this file
//!
//! Each vCPU owns an [`SbiContext`] (`SbiContext::new(config)` at vCPU
//! creation; [`SbiContext::reset`] on a vCPU reset).
//!
//! **`ecall` from the guest** (`scause` 10, `hstatus.SPV` set): build
//! [`EcallRegs`] from the guest's a0..a7 and `sstatus`, call
//! [`SbiContext::ecall`] with an [`SbiEnv`] for this vCPU, then act on the
//! [`SbiExit`]:
//!
//! - [`SbiExit::Continue`]: `a0 = error`, `a1 = value` if `Some` (the
//!   legacy v0.1 calls leave `a1` alone), `sepc += 4`, re-enter the guest.
//! - [`SbiExit::Forward`]: count `ecall_exit_stat`, fill
//!   `kvm_run.riscv_sbi` from it, exit with `KVM_EXIT_RISCV_SBI`;
//!   registers and `sepc` unchanged. On the next
//!   `KVM_RUN` whose `exit_reason` is `KVM_EXIT_RISCV_SBI`, call
//!   [`SbiContext::complete_forward`] with `kvm_run.riscv_sbi.ret`; if it
//!   gives `Some(r)`: `a0 = r.a0`, `a1 = r.a1`, `sepc += 4`.
//! - [`SbiExit::SystemEvent`]: set every vCPU's MP state to STOPPED, make
//!   `KVM_REQ_SLEEP` on all of them, zero `kvm_run.system_event`, set its
//!   `type`, `ndata = 1`, `data[0] = reason`, exit with
//!   `KVM_EXIT_SYSTEM_EVENT`; registers and `sepc` unchanged.
//! - [`SbiExit::Redirect`]: deliver the trap to the guest at the current
//!   `sepc` (only v0.1 calls that read a hart mask from guest memory).
//! - [`SbiExit::Fail`]: `KVM_RUN` fails with that errno; nothing changed.
//!
//! **Steal time**, before entering the guest when `KVM_REQ_STEAL_UPDATE` is
//! pending: if `ctx.sta().shmem()` is `Some(gpa)`, find the page; if no
//! memslot backs it, [`StaState::invalidate`]; else read the `sequence`
//! and `steal` fields (little-endian), call [`StaState::record`] with the
//! current [`StealClock`], and write [`StealUpdate::seq_begin`] (offset 0),
//! [`StealUpdate::steal`] (offset 8), [`StealUpdate::seq_end`] (offset 0),
//! in that order, then mark the page dirty. [`record_steal_time`] does the
//! same on a 64-byte copy of the structure.
//!
//! **ONE_REG**: `KVM_REG_RISCV_SBI_EXT` ids go to
//! [`SbiContext::get_ext_reg`]/[`SbiContext::set_ext_reg`],
//! `KVM_REG_RISCV_SBI_STATE` ids to [`SbiContext::get_state_reg`]/
//! [`SbiContext::set_state_reg`]; `KVM_GET_REG_LIST` lists
//! [`SbiContext::ext_reg_ids`] and [`SbiContext::state_reg_ids`].
//!
//! # Extensions
//!
//! | Extension (KVM id) | Default | kvm_rs |
//! |---|---|---|
//! | v0.1 legacy (0) | enabled | only with `CONFIG_RISCV_SBI_V01` ([`SbiConfig::v01`]); otherwise upstream's stub: ext id `-1`, no handler |
//! | BASE | always | spec 3.0, impl id 3 (KVM), impl version `LINUX_VERSION_CODE` |
//! | TIME (1), IPI (2), RFENCE (3), SRST (4), HSM (5) | enabled | in the kernel |
//! | PMU (6) | unavailable | not implemented (upstream: enabled when the host PMU is usable) |
//! | EXPERIMENTAL (7), VENDOR (8) | enabled | forwarded to userspace |
//! | DBCN (9), MPXY (13) | disabled | forwarded to userspace |
//! | STA (10) | enabled | in the kernel, if `sched_info_on()` ([`SbiConfig::sta`]) |
//! | SUSP (11) | disabled | checked in the kernel, then forwarded |
//! | FWFT (12) | unavailable | not implemented (upstream: enabled) |
//!
//! A disabled or unavailable extension answers `probe_extension` with 0
//! and its calls with `SBI_ERR_NOT_SUPPORTED`; an unavailable one also has
//! no ONE_REG register (`ENOENT`).
//!
//! # Host suspend in steal time
//!
//! Upstream counts only `current->sched_info.run_delay` as stolen. kvm_rs
//! also wants time the host spent suspended: [`StealClock::extra_ns`] is a
//! monotonic count of such extra nanoseconds that the kernel side may
//! supply (0 gives upstream's behaviour); its increase since the last
//! update is added to the guest's steal time.

// The consumer is the run loop (world switch and KVM_RUN, still to come);
// until it lands only the host tests and KUnit call this.
#![allow(dead_code)]

use super::insn::GuestTrap;
use crate::kvm::abi::Errno;

/// SBI extension ids (`enum sbi_ext_id`).
pub(crate) mod eid {
    /// Legacy v0.1 `SET_TIMER`; v0.1 uses ids 0 to 8.
    pub(crate) const V01_SET_TIMER: u64 = 0x0;
    /// Legacy v0.1 `CONSOLE_PUTCHAR`.
    pub(crate) const V01_CONSOLE_PUTCHAR: u64 = 0x1;
    /// Legacy v0.1 `CONSOLE_GETCHAR`.
    pub(crate) const V01_CONSOLE_GETCHAR: u64 = 0x2;
    /// Legacy v0.1 `CLEAR_IPI`.
    pub(crate) const V01_CLEAR_IPI: u64 = 0x3;
    /// Legacy v0.1 `SEND_IPI`.
    pub(crate) const V01_SEND_IPI: u64 = 0x4;
    /// Legacy v0.1 `REMOTE_FENCE_I`.
    pub(crate) const V01_REMOTE_FENCE_I: u64 = 0x5;
    /// Legacy v0.1 `REMOTE_SFENCE_VMA`.
    pub(crate) const V01_REMOTE_SFENCE_VMA: u64 = 0x6;
    /// Legacy v0.1 `REMOTE_SFENCE_VMA_ASID`.
    pub(crate) const V01_REMOTE_SFENCE_VMA_ASID: u64 = 0x7;
    /// Legacy v0.1 `SHUTDOWN`.
    pub(crate) const V01_SHUTDOWN: u64 = 0x8;
    /// Base.
    pub(crate) const BASE: u64 = 0x10;
    /// Timer ("TIME").
    pub(crate) const TIME: u64 = 0x5449_4D45;
    /// IPI ("sPI").
    pub(crate) const IPI: u64 = 0x73_5049;
    /// Remote fence ("RFNC").
    pub(crate) const RFENCE: u64 = 0x5246_4E43;
    /// Hart state management ("HSM").
    pub(crate) const HSM: u64 = 0x48_534D;
    /// System reset ("SRST").
    pub(crate) const SRST: u64 = 0x5352_5354;
    /// System suspend ("SUSP").
    pub(crate) const SUSP: u64 = 0x5355_5350;
    /// Performance monitoring ("PMU").
    pub(crate) const PMU: u64 = 0x50_4D55;
    /// Debug console ("DBCN").
    pub(crate) const DBCN: u64 = 0x4442_434E;
    /// Steal-time accounting ("STA").
    pub(crate) const STA: u64 = 0x53_5441;
    /// Nested acceleration ("NACL"): not offered to guests.
    pub(crate) const NACL: u64 = 0x4E41_434C;
    /// Firmware features ("FWFT").
    pub(crate) const FWFT: u64 = 0x4657_4654;
    /// Message proxy ("MPXY").
    pub(crate) const MPXY: u64 = 0x4D50_5859;
    /// Debug triggers ("DBTR"): not offered to guests.
    pub(crate) const DBTR: u64 = 0x4442_5452;
    /// First experimental extension id.
    pub(crate) const EXPERIMENTAL_START: u64 = 0x0800_0000;
    /// Last experimental extension id.
    pub(crate) const EXPERIMENTAL_END: u64 = 0x08FF_FFFF;
    /// First vendor extension id.
    pub(crate) const VENDOR_START: u64 = 0x0900_0000;
    /// Last vendor extension id.
    pub(crate) const VENDOR_END: u64 = 0x09FF_FFFF;
}

/// SBI error codes (`SBI_ERR_*`), as the signed value the guest sees in a0.
pub(crate) mod err {
    /// `SBI_SUCCESS`.
    pub(crate) const SUCCESS: i64 = 0;
    /// `SBI_ERR_FAILURE`.
    pub(crate) const FAILURE: i64 = -1;
    /// `SBI_ERR_NOT_SUPPORTED`.
    pub(crate) const NOT_SUPPORTED: i64 = -2;
    /// `SBI_ERR_INVALID_PARAM`.
    pub(crate) const INVALID_PARAM: i64 = -3;
    /// `SBI_ERR_DENIED`.
    pub(crate) const DENIED: i64 = -4;
    /// `SBI_ERR_INVALID_ADDRESS`.
    pub(crate) const INVALID_ADDRESS: i64 = -5;
    /// `SBI_ERR_ALREADY_AVAILABLE`.
    pub(crate) const ALREADY_AVAILABLE: i64 = -6;
}

/// Base extension function ids.
pub(crate) mod base_fid {
    /// `SBI_EXT_BASE_GET_SPEC_VERSION`.
    pub(crate) const GET_SPEC_VERSION: u64 = 0;
    /// `SBI_EXT_BASE_GET_IMP_ID`.
    pub(crate) const GET_IMP_ID: u64 = 1;
    /// `SBI_EXT_BASE_GET_IMP_VERSION`.
    pub(crate) const GET_IMP_VERSION: u64 = 2;
    /// `SBI_EXT_BASE_PROBE_EXT`.
    pub(crate) const PROBE_EXT: u64 = 3;
    /// `SBI_EXT_BASE_GET_MVENDORID`.
    pub(crate) const GET_MVENDORID: u64 = 4;
    /// `SBI_EXT_BASE_GET_MARCHID`.
    pub(crate) const GET_MARCHID: u64 = 5;
    /// `SBI_EXT_BASE_GET_MIMPID`.
    pub(crate) const GET_MIMPID: u64 = 6;
}

/// HSM function ids.
pub(crate) mod hsm_fid {
    /// `SBI_EXT_HSM_HART_START`.
    pub(crate) const HART_START: u64 = 0;
    /// `SBI_EXT_HSM_HART_STOP`.
    pub(crate) const HART_STOP: u64 = 1;
    /// `SBI_EXT_HSM_HART_STATUS`.
    pub(crate) const HART_STATUS: u64 = 2;
    /// `SBI_EXT_HSM_HART_SUSPEND`.
    pub(crate) const HART_SUSPEND: u64 = 3;
}

/// RFENCE function ids.
pub(crate) mod rfence_fid {
    /// `SBI_EXT_RFENCE_REMOTE_FENCE_I`.
    pub(crate) const FENCE_I: u64 = 0;
    /// `SBI_EXT_RFENCE_REMOTE_SFENCE_VMA`.
    pub(crate) const SFENCE_VMA: u64 = 1;
    /// `SBI_EXT_RFENCE_REMOTE_SFENCE_VMA_ASID`.
    pub(crate) const SFENCE_VMA_ASID: u64 = 2;
}

/// `KVM_SBI_VERSION_MAJOR.KVM_SBI_VERSION_MINOR`: SBI 3.0, encoded as
/// `major << 24 | minor`.
pub(crate) const SPEC_VERSION: u64 = 3 << 24;
/// `KVM_SBI_IMPID`: the SBI implementation id of KVM.
pub(crate) const IMP_ID_KVM: u64 = 3;

/// `KERNEL_VERSION(major, minor, sublevel)`, the encoding of
/// `LINUX_VERSION_CODE` (what `GET_IMP_VERSION` answers): the sublevel is
/// clamped to 255.
pub(crate) const fn linux_version_code(major: u8, minor: u8, sublevel: u32) -> u64 {
    let sub = if sublevel > 255 { 255 } else { sublevel as u64 };
    ((major as u64) << 16) | ((minor as u64) << 8) | sub
}

/// `KVM_SYSTEM_EVENT_SHUTDOWN`.
pub(crate) const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
/// `KVM_SYSTEM_EVENT_RESET`.
pub(crate) const KVM_SYSTEM_EVENT_RESET: u32 = 2;

/// `SR_SPP` of `sstatus`: the trap came from (V)S-mode.
const SR_SPP: u64 = 1 << 8;
/// `SBI_HSM_SUSPEND_RET_DEFAULT`.
const HSM_SUSPEND_RET_DEFAULT: u32 = 0;
/// `SBI_HSM_SUSPEND_NON_RET_DEFAULT`.
const HSM_SUSPEND_NON_RET_DEFAULT: u32 = 0x8000_0000;
/// `SBI_SHMEM_DISABLE`.
const SHMEM_DISABLE: u64 = u64::MAX;
/// `INVALID_GPA`.
pub(crate) const INVALID_GPA: u64 = u64::MAX;

/// `sizeof(struct sbi_sta_struct)`; the shared memory is aligned to it.
pub(crate) const STA_SIZE: usize = 64;
/// Offset of `sbi_sta_struct.sequence` (`__le32`).
pub(crate) const STA_SEQUENCE: usize = 0;
/// Offset of `sbi_sta_struct.flags` (`__le32`).
pub(crate) const STA_FLAGS: usize = 4;
/// Offset of `sbi_sta_struct.steal` (`__le64`, nanoseconds).
pub(crate) const STA_STEAL: usize = 8;
/// Offset of `sbi_sta_struct.preempted` (`u8`; KVM never sets it).
pub(crate) const STA_PREEMPTED: usize = 16;

/// The SBI extensions as KVM numbers them for userspace
/// (`enum KVM_RISCV_SBI_EXT_ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SbiExt {
    /// `KVM_RISCV_SBI_EXT_V01`.
    V01 = 0,
    /// `KVM_RISCV_SBI_EXT_TIME`.
    Time = 1,
    /// `KVM_RISCV_SBI_EXT_IPI`.
    Ipi = 2,
    /// `KVM_RISCV_SBI_EXT_RFENCE`.
    Rfence = 3,
    /// `KVM_RISCV_SBI_EXT_SRST`.
    Srst = 4,
    /// `KVM_RISCV_SBI_EXT_HSM`.
    Hsm = 5,
    /// `KVM_RISCV_SBI_EXT_PMU`.
    Pmu = 6,
    /// `KVM_RISCV_SBI_EXT_EXPERIMENTAL`.
    Experimental = 7,
    /// `KVM_RISCV_SBI_EXT_VENDOR`.
    Vendor = 8,
    /// `KVM_RISCV_SBI_EXT_DBCN`.
    Dbcn = 9,
    /// `KVM_RISCV_SBI_EXT_STA`.
    Sta = 10,
    /// `KVM_RISCV_SBI_EXT_SUSP`.
    Susp = 11,
    /// `KVM_RISCV_SBI_EXT_FWFT`.
    Fwft = 12,
    /// `KVM_RISCV_SBI_EXT_MPXY`.
    Mpxy = 13,
}

/// `KVM_RISCV_SBI_EXT_MAX`.
pub(crate) const SBI_EXT_MAX: usize = 14;

impl SbiExt {
    /// Every extension, in KVM id order.
    pub(crate) const ALL: [SbiExt; SBI_EXT_MAX] = [
        SbiExt::V01,
        SbiExt::Time,
        SbiExt::Ipi,
        SbiExt::Rfence,
        SbiExt::Srst,
        SbiExt::Hsm,
        SbiExt::Pmu,
        SbiExt::Experimental,
        SbiExt::Vendor,
        SbiExt::Dbcn,
        SbiExt::Sta,
        SbiExt::Susp,
        SbiExt::Fwft,
        SbiExt::Mpxy,
    ];

    /// The extension with KVM id `id`, if any.
    pub(crate) fn from_id(id: u64) -> Option<SbiExt> {
        SbiExt::ALL.get(usize::try_from(id).ok()?).copied()
    }
}

/// Per-vCPU state of one extension (`enum kvm_riscv_sbi_ext_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExtStatus {
    /// Not offered on this host: no ONE_REG register, cannot be enabled.
    Unavailable,
    /// Guest calls are served.
    Enabled,
    /// Userspace turned it off (or it is off by default): probe 0,
    /// calls `NOT_SUPPORTED`.
    Disabled,
}

/// Host facts that decide what the SBI offers, fixed at vCPU creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SbiConfig {
    /// The host kernel has `CONFIG_RISCV_SBI_V01`: serve the legacy v0.1
    /// calls (ids 0 to 8). Without it, the v0.1 extension is upstream's
    /// stub (it still shows as enabled in ONE_REG).
    pub(crate) v01: bool,
    /// `sched_info_on()` (`CONFIG_SCHED_INFO`): STA is available.
    pub(crate) sta: bool,
    /// `LINUX_VERSION_CODE` of the host kernel, the answer to
    /// `GET_IMP_VERSION` ([`linux_version_code`]).
    pub(crate) imp_version: u64,
}

/// Which upstream handler serves an extension-id range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handler {
    V01,
    Base,
    Time,
    Ipi,
    Rfence,
    Srst,
    Hsm,
    Susp,
    Sta,
    /// `kvm_riscv_vcpu_sbi_forward_handler()`: exit to userspace.
    Forward,
}

/// One row of upstream's `sbi_ext[]`.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// KVM id; `None` for BASE, which cannot be disabled.
    ext: Option<SbiExt>,
    /// First extension id served.
    first: u64,
    /// Last extension id served.
    last: u64,
    /// `None`: an upstream stub without handler.
    handler: Option<Handler>,
}

const fn entry(ext: Option<SbiExt>, first: u64, last: u64, handler: Option<Handler>) -> Entry {
    Entry { ext, first, last, handler }
}

/// Upstream's `sbi_ext[]`, in its order (the first range that contains an
/// extension id decides).
const fn table(v01: bool) -> [Entry; 15] {
    let v01 = if v01 {
        entry(Some(SbiExt::V01), eid::V01_SET_TIMER, eid::V01_SHUTDOWN, Some(Handler::V01))
    } else {
        entry(Some(SbiExt::V01), u64::MAX, u64::MAX, None)
    };
    [
        v01,
        entry(None, eid::BASE, eid::BASE, Some(Handler::Base)),
        entry(Some(SbiExt::Time), eid::TIME, eid::TIME, Some(Handler::Time)),
        entry(Some(SbiExt::Ipi), eid::IPI, eid::IPI, Some(Handler::Ipi)),
        entry(Some(SbiExt::Rfence), eid::RFENCE, eid::RFENCE, Some(Handler::Rfence)),
        entry(Some(SbiExt::Srst), eid::SRST, eid::SRST, Some(Handler::Srst)),
        entry(Some(SbiExt::Hsm), eid::HSM, eid::HSM, Some(Handler::Hsm)),
        // kvm_rs has no PMU: unavailable, so never served.
        entry(Some(SbiExt::Pmu), eid::PMU, eid::PMU, None),
        entry(Some(SbiExt::Dbcn), eid::DBCN, eid::DBCN, Some(Handler::Forward)),
        entry(Some(SbiExt::Susp), eid::SUSP, eid::SUSP, Some(Handler::Susp)),
        entry(Some(SbiExt::Sta), eid::STA, eid::STA, Some(Handler::Sta)),
        // kvm_rs has no FWFT: unavailable, so never served.
        entry(Some(SbiExt::Fwft), eid::FWFT, eid::FWFT, None),
        entry(Some(SbiExt::Mpxy), eid::MPXY, eid::MPXY, Some(Handler::Forward)),
        entry(Some(SbiExt::Experimental), eid::EXPERIMENTAL_START, eid::EXPERIMENTAL_END, Some(Handler::Forward)),
        entry(Some(SbiExt::Vendor), eid::VENDOR_START, eid::VENDOR_END, Some(Handler::Forward)),
    ]
}

/// The status an extension starts with (`kvm_riscv_vcpu_sbi_init()`:
/// probe, then `default_disabled`).
const fn initial_status(ext: SbiExt, config: &SbiConfig) -> ExtStatus {
    match ext {
        SbiExt::Pmu | SbiExt::Fwft => ExtStatus::Unavailable,
        SbiExt::Sta if !config.sta => ExtStatus::Unavailable,
        SbiExt::Dbcn | SbiExt::Susp | SbiExt::Mpxy => ExtStatus::Disabled,
        _ => ExtStatus::Enabled,
    }
}

/// The guest registers an `ecall` reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EcallRegs {
    /// a0 to a7 (a7 = extension id, a6 = function id, a0..a5 arguments).
    pub(crate) a: [u64; 8],
    /// The guest context's `sstatus` (its `SPP` says whether the call came
    /// from VS- or VU-mode).
    pub(crate) sstatus: u64,
}

impl EcallRegs {
    /// Registers for a call of `eid`/`fid` with `args` in a0..a5.
    pub(crate) const fn new(eid: u64, fid: u64, args: [u64; 6], sstatus: u64) -> EcallRegs {
        let [a0, a1, a2, a3, a4, a5] = args;
        EcallRegs {
            a: [a0, a1, a2, a3, a4, a5, fid, eid],
            sstatus,
        }
    }

    const fn eid(&self) -> u64 {
        self.a[7]
    }

    const fn fid(&self) -> u64 {
        self.a[6]
    }
}

/// `kvm_run.riscv_sbi` for a call forwarded to userspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RiscvSbiExit {
    /// `extension_id` (a7).
    pub(crate) extension_id: u64,
    /// `function_id` (a6).
    pub(crate) function_id: u64,
    /// `args` (a0..a5).
    pub(crate) args: [u64; 6],
    /// `ret`: preset to `[SBI_ERR_NOT_SUPPORTED, 0]`, what the guest gets
    /// if userspace does not answer.
    pub(crate) ret: [u64; 2],
}

/// What the run loop does after an `ecall`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SbiExit {
    /// Back to the guest: `a0 = error` (two's complement), `a1 = value`
    /// unless `None`, `sepc += 4`.
    Continue {
        /// SBI error code.
        error: i64,
        /// Return value, or `None` to leave `a1` as it is (v0.1 calls).
        value: Option<u64>,
    },
    /// `KVM_EXIT_RISCV_SBI` with this `kvm_run.riscv_sbi`.
    Forward(RiscvSbiExit),
    /// `KVM_EXIT_SYSTEM_EVENT` of this `type`, `data[0] = reason`, after
    /// stopping every vCPU.
    SystemEvent {
        /// `KVM_SYSTEM_EVENT_SHUTDOWN` or `KVM_SYSTEM_EVENT_RESET`.
        ty: u32,
        /// The reason argument (SRST), 0 for v0.1 `SHUTDOWN`.
        reason: u64,
    },
    /// Deliver this trap to the guest, `sepc` unchanged.
    Redirect(GuestTrap),
    /// `KVM_RUN` fails with this errno.
    Fail(Errno),
}

/// How userspace's answer to a forwarded call lands in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SbiReturn {
    /// New a0 (`kvm_run.riscv_sbi.ret[0]`).
    pub(crate) a0: u64,
    /// New a1 (`kvm_run.riscv_sbi.ret[1]`).
    pub(crate) a1: u64,
    /// Add to `sepc`: always 4 (the `ecall`).
    pub(crate) sepc_advance: u64,
}

/// `mvendorid`, `marchid`, `mimpid` of the vCPU (its ONE_REG config
/// registers), as `GET_MVENDORID` etc. report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MachineIds {
    /// `mvendorid`.
    pub(crate) mvendorid: u64,
    /// `marchid`.
    pub(crate) marchid: u64,
    /// `mimpid`.
    pub(crate) mimpid: u64,
}

/// A set of harts as SBI names them: bit `i` of `mask` is hart `base + i`;
/// `base == u64::MAX` means every hart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HartMask {
    /// `hart_mask`.
    pub(crate) mask: u64,
    /// `hart_mask_base`.
    pub(crate) base: u64,
}

impl HartMask {
    /// Every hart.
    pub(crate) const ALL: HartMask = HartMask { mask: 0, base: u64::MAX };

    /// Whether the vCPU with id `vcpu_id` is in the set (upstream's
    /// `make_xfence_request()` and SBI IPI rule). vCPU ids are 32-bit, so
    /// upstream's wrapping `hbase + BITS_PER_LONG` cannot make a difference.
    pub(crate) const fn contains(&self, vcpu_id: u32) -> bool {
        if self.base == u64::MAX {
            return true;
        }
        let id = vcpu_id as u64;
        if id < self.base {
            return false;
        }
        let bit = id - self.base;
        bit < 64 && self.mask & (1 << bit) != 0
    }
}

/// A remote fence to queue on a set of harts (`kvm_riscv_fence_i()`,
/// `kvm_riscv_hfence_vvma_*()`; the kernel adds the VM's VMID and
/// `PAGE_SHIFT` as the order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fence {
    /// `KVM_REQ_FENCE_I`.
    FenceI,
    /// Flush all guest VS-stage translations.
    VvmaAll,
    /// Flush `[start, start + size)`.
    VvmaGva {
        /// First guest virtual address.
        start: u64,
        /// Size in bytes.
        size: u64,
    },
    /// Flush all translations of `asid`.
    VvmaAsidAll {
        /// Address-space id.
        asid: u64,
    },
    /// Flush `[start, start + size)` of `asid`.
    VvmaAsidGva {
        /// First guest virtual address.
        start: u64,
        /// Size in bytes.
        size: u64,
        /// Address-space id.
        asid: u64,
    },
}

/// A hart's state as `HART_STATUS` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HartState {
    /// `SBI_HSM_STATE_STARTED`: running.
    Started = 0,
    /// `SBI_HSM_STATE_STOPPED`: MP state STOPPED.
    Stopped = 1,
    /// `SBI_HSM_STATE_SUSPENDED`: blocked (halted in WFI or a retentive
    /// suspend; `vcpu->stat.generic.blocking`).
    Suspended = 4,
}

/// Steal-time clock readings for [`StaState::record`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StealClock {
    /// `current->sched_info.run_delay` of the vCPU thread, in ns.
    pub(crate) run_delay: u64,
    /// Extra stolen nanoseconds since boot (e.g. time the host was
    /// suspended), a monotonic counter; 0 for upstream's behaviour.
    pub(crate) extra_ns: u64,
}

/// What the kernel provides to serve SBI calls of one vCPU.
///
/// vCPUs are named by index (creation order, `kvm_get_vcpu()`) and carry a
/// 32-bit id (`vcpu_id`, the SBI hart id).
pub(crate) trait SbiEnv {
    /// The vCPU's `mvendorid`, `marchid`, `mimpid`.
    fn machine_ids(&self) -> MachineIds;

    /// `kvm_riscv_vcpu_timer_next_event(vcpu, next_cycle)`. TIME ignores an
    /// error; v0.1 `SET_TIMER` fails `KVM_RUN` with it.
    fn set_timer(&mut self, next_cycle: u64) -> Result<(), Errno>;

    /// `kvm_riscv_vcpu_unset_interrupt(vcpu, IRQ_VS_SOFT)` (v0.1 only).
    fn clear_ipi(&mut self) -> Result<(), Errno>;

    /// The id of the vCPU at index `idx`, `None` past the last one.
    fn vcpu_id_at(&self, idx: usize) -> Option<u32>;

    /// The index of the vCPU with id `id` (`kvm_get_vcpu_by_id()`).
    fn vcpu_idx_by_id(&self, id: u32) -> Option<usize> {
        (0..usize::MAX).map_while(|i| Some((i, self.vcpu_id_at(i)?))).find(|&(_, v)| v == id).map(|(i, _)| i)
    }

    /// `kvm_riscv_vcpu_set_interrupt(vcpu idx, IRQ_VS_SOFT)`.
    fn send_ipi(&mut self, idx: usize) -> Result<(), Errno>;

    /// Queue `fence` on every vCPU `harts` contains ([`HartMask::contains`]).
    fn remote_fence(&mut self, harts: HartMask, fence: Fence);

    /// HSM `HART_START` on vCPU `idx`, atomically under its MP-state lock:
    /// if it is stopped, set its reset state (`pc = start_addr`,
    /// `a1 = opaque`), request `KVM_REQ_VCPU_RESET` and power it on, and
    /// return `true`; if it is not stopped, return `false`.
    fn hart_start(&mut self, idx: usize, start_addr: u64, opaque: u64) -> bool;

    /// HSM `HART_STOP` of this vCPU, under its MP-state lock: power off
    /// (MP state STOPPED, `KVM_REQ_SLEEP`) and return `true`, or `false` if
    /// it already was stopped.
    fn hart_stop(&mut self) -> bool;

    /// The state of vCPU `idx`.
    fn hart_state(&self, idx: usize) -> HartState;

    /// `kvm_riscv_vcpu_wfi()`: halt this vCPU until it is runnable.
    fn wfi(&mut self);

    /// Whether every other vCPU is stopped (system suspend).
    fn others_stopped(&self) -> bool;

    /// Whether a memslot backs the page of `gpa` (readonly ones count):
    /// `kvm_vcpu_gfn_to_hva_prot(gpa >> PAGE_SHIFT)` is not an error.
    fn gpa_has_memslot(&self, gpa: u64) -> bool;

    /// Set this vCPU's reset state (`pc`, `a1`) and request
    /// `KVM_REQ_VCPU_RESET` (`kvm_riscv_vcpu_sbi_request_reset()`).
    fn request_reset(&mut self, pc: u64, a1: u64);

    /// Write `len` zero bytes at `gpa` (`kvm_vcpu_write_guest()`, which
    /// marks the page dirty); `false` if that fails (no writable memslot).
    fn zero_guest(&mut self, gpa: u64, len: usize) -> bool;

    /// The current steal clock of this vCPU's thread.
    fn steal_clock(&self) -> StealClock;

    /// Read a `u64` at guest virtual address `gva` as the guest would
    /// (`HLV.D`), for v0.1 hart masks; `Err` with the trap to redirect.
    fn read_guest_ulong(&mut self, gva: u64) -> Result<u64, GuestTrap>;
}

/// The steal-time fields to write, in order: `sequence = seq_begin`, then
/// `steal`, then `sequence = seq_end` (`kvm_riscv_vcpu_record_steal_time()`).
/// A guest reading `steal` retries while `sequence` is odd or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StealUpdate {
    /// The guest's `sequence` + 1.
    pub(crate) seq_begin: u32,
    /// The new `steal` value.
    pub(crate) steal: u64,
    /// The guest's `sequence` + 2.
    pub(crate) seq_end: u32,
}

/// The STA state of a vCPU (`vcpu->arch.sta`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StaState {
    /// Guest-physical address of the `sbi_sta_struct`, or [`INVALID_GPA`].
    /// Invariant: 64-byte aligned unless invalid.
    shmem: u64,
    /// `run_delay` at the last update.
    last_steal: u64,
    /// [`StealClock::extra_ns`] at the last update.
    last_extra: u64,
}

impl Default for StaState {
    fn default() -> StaState {
        StaState {
            shmem: INVALID_GPA,
            last_steal: 0,
            last_extra: 0,
        }
    }
}

impl StaState {
    /// The shared memory, if the guest set one.
    pub(crate) const fn shmem(&self) -> Option<u64> {
        if self.shmem == INVALID_GPA {
            None
        } else {
            Some(self.shmem)
        }
    }

    /// Forget the shared memory (its page lost its memslot).
    pub(crate) fn invalidate(&mut self) {
        self.shmem = INVALID_GPA;
    }

    /// Computes an update from the guest's current `sequence` and `steal`
    /// and the clock now, and takes the clock as the new reference.
    pub(crate) fn record(&mut self, sequence: u32, steal: u64, now: StealClock) -> StealUpdate {
        let delta = now
            .run_delay
            .wrapping_sub(self.last_steal)
            .wrapping_add(now.extra_ns.wrapping_sub(self.last_extra));
        self.last_steal = now.run_delay;
        self.last_extra = now.extra_ns;
        let seq_begin = sequence.wrapping_add(1);
        StealUpdate {
            seq_begin,
            steal: steal.wrapping_add(delta),
            seq_end: seq_begin.wrapping_add(1),
        }
    }
}

/// [`StaState::record`] on a copy of the guest's `sbi_sta_struct`: leaves
/// `buf` as the guest must finally see it. Does nothing without shared
/// memory. (Writing `buf` back whole is not the ordered protocol: write
/// the three fields of [`StaState::record`]'s result in order instead when
/// the guest may be reading concurrently.)
pub(crate) fn record_steal_time(sta: &mut StaState, buf: &mut [u8; STA_SIZE], now: StealClock) {
    if sta.shmem().is_none() {
        return;
    }
    let [s0, s1, s2, s3, _, _, _, _, t0, t1, t2, t3, t4, t5, t6, t7, ..] = *buf;
    let u = sta.record(u32::from_le_bytes([s0, s1, s2, s3]), u64::from_le_bytes([t0, t1, t2, t3, t4, t5, t6, t7]), now);
    if let Some(seq) = buf.get_mut(STA_SEQUENCE..STA_FLAGS) {
        seq.copy_from_slice(&u.seq_end.to_le_bytes());
    }
    if let Some(steal) = buf.get_mut(STA_STEAL..STA_PREEMPTED) {
        steal.copy_from_slice(&u.steal.to_le_bytes());
    }
}

/// The result of one extension handler, before the common `ecall` rules.
enum Ret {
    /// `err_val`, `out_val`.
    Val(i64, u64),
    Forward,
    System(u32, u64),
    Trap(GuestTrap),
    Fail(Errno),
}

const fn ok(value: u64) -> Ret {
    Ret::Val(err::SUCCESS, value)
}

const fn error(e: i64) -> Ret {
    Ret::Val(e, 0)
}

/// `kvm_get_vcpu_by_id()` takes an `int`: the hart id is truncated to 32
/// bits and a negative one finds nothing.
const fn hart_id(arg: u64) -> Option<u32> {
    let id = arg as u32;
    if id > i32::MAX as u32 {
        None
    } else {
        Some(id)
    }
}

// ONE_REG id fields (`include/uapi/linux/kvm.h`, riscv `asm/kvm.h`).
const KVM_REG_ARCH_MASK: u64 = 0xff00_0000_0000_0000;
const KVM_REG_RISCV: u64 = 0x8000_0000_0000_0000;
const KVM_REG_SIZE_MASK: u64 = 0x00f0_0000_0000_0000;
const KVM_REG_SIZE_SHIFT: u32 = 52;
const KVM_REG_SIZE_U64: u64 = 0x0030_0000_0000_0000;
const KVM_REG_RISCV_SUBTYPE_MASK: u64 = 0x00ff_0000;
/// `KVM_REG_RISCV_SBI_EXT`: type 8.
pub(crate) const KVM_REG_RISCV_SBI_EXT: u64 = 0x08 << 24;
/// `KVM_REG_RISCV_SBI_SINGLE`.
pub(crate) const KVM_REG_RISCV_SBI_SINGLE: u64 = 0;
/// `KVM_REG_RISCV_SBI_MULTI_EN`.
pub(crate) const KVM_REG_RISCV_SBI_MULTI_EN: u64 = 1 << 16;
/// `KVM_REG_RISCV_SBI_MULTI_DIS`.
pub(crate) const KVM_REG_RISCV_SBI_MULTI_DIS: u64 = 2 << 16;
/// `KVM_REG_RISCV_SBI_STATE`: type 10.
pub(crate) const KVM_REG_RISCV_SBI_STATE: u64 = 0x0a << 24;
/// `KVM_REG_RISCV_SBI_STA` subtype.
pub(crate) const KVM_REG_RISCV_SBI_STA: u64 = 0;
/// `KVM_REG_RISCV_SBI_STA_REG(shmem_lo)`.
pub(crate) const STA_REG_SHMEM_LO: u64 = 0;
/// `KVM_REG_RISCV_SBI_STA_REG(shmem_hi)`.
pub(crate) const STA_REG_SHMEM_HI: u64 = 1;

/// `KVM_REG_SIZE(id)`.
const fn reg_size(id: u64) -> u64 {
    // The field is 4 bits: at most 1 << 15.
    1 << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT)
}

/// The ONE_REG id of extension `ext`'s enable register.
pub(crate) const fn ext_reg_id(ext: SbiExt) -> u64 {
    KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_SBI_EXT | KVM_REG_RISCV_SBI_SINGLE | ext as u64
}

/// The SBI state of one vCPU (`vcpu->arch.sbi_context` and `sta`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SbiContext {
    config: SbiConfig,
    status: [ExtStatus; SBI_EXT_MAX],
    /// A forwarded call's answer was applied. Starts `false`, as upstream's
    /// zeroed context: a first `KVM_RUN` entered with `exit_reason ==
    /// KVM_EXIT_RISCV_SBI` applies `kvm_run.riscv_sbi.ret`.
    return_handled: bool,
    sta: StaState,
}

impl SbiContext {
    /// The SBI state of a new vCPU (`kvm_riscv_vcpu_sbi_init()`).
    pub(crate) fn new(config: SbiConfig) -> SbiContext {
        SbiContext {
            config,
            status: SbiExt::ALL.map(|e| initial_status(e, &config)),
            return_handled: false,
            sta: StaState::default(),
        }
    }

    /// The host facts this context was made with.
    pub(crate) const fn config(&self) -> &SbiConfig {
        &self.config
    }

    /// Status of `ext`.
    pub(crate) fn status(&self, ext: SbiExt) -> ExtStatus {
        self.status.get(ext as usize).copied().unwrap_or(ExtStatus::Unavailable)
    }

    fn set_status(&mut self, ext: SbiExt, s: ExtStatus) {
        if let Some(slot) = self.status.get_mut(ext as usize) {
            *slot = s;
        }
    }

    /// The steal-time state.
    pub(crate) const fn sta(&self) -> &StaState {
        &self.sta
    }

    /// The steal-time state, for the update before guest entry.
    pub(crate) fn sta_mut(&mut self) -> &mut StaState {
        &mut self.sta
    }

    /// The extension's `reset` callback (only STA has one).
    fn reset_ext(&mut self, ext: SbiExt) {
        if ext == SbiExt::Sta {
            self.sta = StaState::default();
        }
    }

    /// `kvm_riscv_vcpu_sbi_reset()`: a vCPU reset resets the enabled
    /// extensions (STA forgets its shared memory).
    pub(crate) fn reset(&mut self) {
        for ext in SbiExt::ALL {
            if self.status(ext) == ExtStatus::Enabled {
                self.reset_ext(ext);
            }
        }
    }

    /// `kvm_vcpu_sbi_find_ext()`: the entry serving `eid`, if enabled (BASE
    /// always is).
    fn find_ext(&self, eid: u64) -> Option<Entry> {
        let e = table(self.config.v01).into_iter().find(|e| e.first <= eid && eid <= e.last)?;
        match e.ext {
            Some(ext) if self.status(ext) != ExtStatus::Enabled => None,
            _ => Some(e),
        }
    }

    /// Whether `probe_extension(eid)` answers 1 (outside the experimental
    /// and vendor ranges, which are forwarded to userspace).
    pub(crate) fn probe(&self, eid: u64) -> bool {
        self.find_ext(eid).is_some()
    }

    /// `kvm_riscv_vcpu_sbi_ecall()`: serves one guest `ecall`.
    pub(crate) fn ecall(&mut self, regs: &EcallRegs, env: &mut impl SbiEnv) -> SbiExit {
        let not_supported = SbiExit::Continue {
            error: err::NOT_SUPPORTED,
            value: Some(0),
        };
        let Some(entry) = self.find_ext(regs.eid()) else {
            return not_supported;
        };
        let Some(handler) = entry.handler else {
            return not_supported;
        };
        let ret = match handler {
            Handler::V01 => self.v01(regs, env),
            Handler::Base => self.base(regs, env),
            Handler::Time => time(regs, env),
            Handler::Ipi => ipi(regs, env),
            Handler::Rfence => rfence(regs, env),
            Handler::Srst => srst(regs),
            Handler::Hsm => hsm(regs, env),
            Handler::Susp => susp(regs, env),
            Handler::Sta => self.sta_call(regs, env),
            Handler::Forward => Ret::Forward,
        };
        match ret {
            Ret::Val(error, out) => SbiExit::Continue {
                error,
                // "a1 should only be updated when we continue the ioctl
                // loop", and never for the legacy calls.
                value: if handler == Handler::V01 { None } else { Some(out) },
            },
            Ret::Forward => {
                self.return_handled = false;
                let [a0, a1, a2, a3, a4, a5, ..] = regs.a;
                SbiExit::Forward(RiscvSbiExit {
                    extension_id: regs.eid(),
                    function_id: regs.fid(),
                    args: [a0, a1, a2, a3, a4, a5],
                    ret: [err::NOT_SUPPORTED as u64, 0],
                })
            }
            Ret::System(ty, reason) => SbiExit::SystemEvent { ty, reason },
            Ret::Trap(t) => SbiExit::Redirect(t),
            Ret::Fail(e) => SbiExit::Fail(e),
        }
    }

    /// `kvm_riscv_vcpu_sbi_return()`: userspace's answer `ret`
    /// (`kvm_run.riscv_sbi.ret`) to a forwarded call, once; `None` if
    /// already applied.
    pub(crate) fn complete_forward(&mut self, ret: [u64; 2]) -> Option<SbiReturn> {
        if self.return_handled {
            return None;
        }
        self.return_handled = true;
        let [a0, a1] = ret;
        Some(SbiReturn { a0, a1, sepc_advance: 4 })
    }

    fn base(&self, regs: &EcallRegs, env: &impl SbiEnv) -> Ret {
        let a0 = regs.a[0];
        match regs.fid() {
            base_fid::GET_SPEC_VERSION => ok(SPEC_VERSION),
            base_fid::GET_IMP_ID => ok(IMP_ID_KVM),
            base_fid::GET_IMP_VERSION => ok(self.config.imp_version),
            base_fid::PROBE_EXT => {
                if (eid::EXPERIMENTAL_START..=eid::EXPERIMENTAL_END).contains(&a0)
                    || (eid::VENDOR_START..=eid::VENDOR_END).contains(&a0)
                {
                    // Userspace answers for these ranges, enabled or not.
                    Ret::Forward
                } else {
                    ok(u64::from(self.probe(a0)))
                }
            }
            base_fid::GET_MVENDORID => ok(env.machine_ids().mvendorid),
            base_fid::GET_MARCHID => ok(env.machine_ids().marchid),
            base_fid::GET_MIMPID => ok(env.machine_ids().mimpid),
            _ => error(err::NOT_SUPPORTED),
        }
    }

    fn sta_call(&mut self, regs: &EcallRegs, env: &mut impl SbiEnv) -> Ret {
        let [lo, hi, flags, ..] = regs.a;
        if regs.fid() != 0 {
            return error(err::NOT_SUPPORTED);
        }
        // `u32 flags = cp->a2`.
        if flags as u32 != 0 {
            return error(err::INVALID_PARAM);
        }
        if lo == SHMEM_DISABLE && hi == SHMEM_DISABLE {
            self.sta.shmem = INVALID_GPA;
            return ok(0);
        }
        if lo % STA_SIZE as u64 != 0 {
            return error(err::INVALID_PARAM);
        }
        // rv64: the address is a0 alone.
        if hi != 0 {
            return error(err::INVALID_ADDRESS);
        }
        if !env.zero_guest(lo, STA_SIZE) {
            return error(err::INVALID_ADDRESS);
        }
        let now = env.steal_clock();
        self.sta.shmem = lo;
        self.sta.last_steal = now.run_delay;
        self.sta.last_extra = now.extra_ns;
        ok(0)
    }

    fn v01(&mut self, regs: &EcallRegs, env: &mut impl SbiEnv) -> Ret {
        let [a0, a1, a2, a3, ..] = regs.a;
        let done = |r: Result<(), Errno>| match r {
            Ok(()) => ok(0),
            Err(e) => Ret::Fail(e),
        };
        match regs.eid() {
            eid::V01_CONSOLE_GETCHAR | eid::V01_CONSOLE_PUTCHAR => Ret::Forward,
            eid::V01_SET_TIMER => done(env.set_timer(a0)),
            eid::V01_CLEAR_IPI => done(env.clear_ipi()),
            eid::V01_SEND_IPI => {
                if a0 == 0 {
                    let mut idx = 0;
                    while env.vcpu_id_at(idx).is_some() {
                        if let Err(e) = env.send_ipi(idx) {
                            return Ret::Fail(e);
                        }
                        idx += 1;
                    }
                    return ok(0);
                }
                let mask = match env.read_guest_ulong(a0) {
                    Ok(m) => m,
                    Err(t) => return Ret::Trap(t),
                };
                for bit in 0..64u32 {
                    if mask & (1 << bit) == 0 {
                        continue;
                    }
                    if let Some(idx) = env.vcpu_idx_by_id(bit) {
                        if let Err(e) = env.send_ipi(idx) {
                            return Ret::Fail(e);
                        }
                    }
                }
                ok(0)
            }
            eid::V01_SHUTDOWN => Ret::System(KVM_SYSTEM_EVENT_SHUTDOWN, 0),
            id @ (eid::V01_REMOTE_FENCE_I | eid::V01_REMOTE_SFENCE_VMA | eid::V01_REMOTE_SFENCE_VMA_ASID) => {
                let harts = if a0 == 0 {
                    HartMask::ALL
                } else {
                    match env.read_guest_ulong(a0) {
                        Ok(mask) => HartMask { mask, base: 0 },
                        Err(t) => return Ret::Trap(t),
                    }
                };
                let all = a1 == 0 && a2 == 0;
                let fence = match (id, all) {
                    (eid::V01_REMOTE_FENCE_I, _) => Fence::FenceI,
                    (eid::V01_REMOTE_SFENCE_VMA, true) => Fence::VvmaAll,
                    (eid::V01_REMOTE_SFENCE_VMA, false) => Fence::VvmaGva { start: a1, size: a2 },
                    (_, true) => Fence::VvmaAsidAll { asid: a3 },
                    (_, false) => Fence::VvmaAsidGva { start: a1, size: a2, asid: a3 },
                };
                env.remote_fence(harts, fence);
                ok(0)
            }
            _ => error(err::NOT_SUPPORTED),
        }
    }

    /// `KVM_GET_ONE_REG` of a `KVM_REG_RISCV_SBI_EXT` register: 1/0 for one
    /// extension (`SINGLE`), or a bitmap of enabled (`MULTI_EN`) or its
    /// complement (`MULTI_DIS`). `EINVAL` for a size other than 8,
    /// `ENOENT` for an unknown or unavailable extension or register.
    pub(crate) fn get_ext_reg(&self, id: u64) -> Result<u64, Errno> {
        if reg_size(id) != 8 {
            return Err(Errno::EINVAL);
        }
        let num = id & !(KVM_REG_ARCH_MASK | KVM_REG_SIZE_MASK | KVM_REG_RISCV_SBI_EXT);
        let subtype = num & KVM_REG_RISCV_SUBTYPE_MASK;
        let num = num & !KVM_REG_RISCV_SUBTYPE_MASK;
        match subtype {
            KVM_REG_RISCV_SBI_SINGLE => self.get_single(num),
            KVM_REG_RISCV_SBI_MULTI_EN | KVM_REG_RISCV_SBI_MULTI_DIS => {
                // KVM_REG_RISCV_SBI_MULTI_REG_LAST is 0.
                if num > 0 {
                    return Err(Errno::ENOENT);
                }
                let mut bits = 0u64;
                for ext in SbiExt::ALL {
                    if self.get_single(ext as u64) == Ok(1) {
                        bits |= 1 << (ext as u32);
                    }
                }
                Ok(if subtype == KVM_REG_RISCV_SBI_MULTI_DIS { !bits } else { bits })
            }
            _ => Err(Errno::ENOENT),
        }
    }

    fn get_single(&self, num: u64) -> Result<u64, Errno> {
        let ext = SbiExt::from_id(num).ok_or(Errno::ENOENT)?;
        match self.status(ext) {
            ExtStatus::Unavailable => Err(Errno::ENOENT),
            s => Ok(u64::from(s == ExtStatus::Enabled)),
        }
    }

    /// `KVM_SET_ONE_REG` of a `KVM_REG_RISCV_SBI_EXT` register, in
    /// upstream's order of checks: size other than 8 `EINVAL`; after the
    /// first `KVM_RUN` (`ran_once`) `EBUSY`; then `value()` reads the new
    /// value from userspace (its `EFAULT` passes through); `SINGLE`: a
    /// value other than 0/1 `EINVAL`, an unknown or unavailable extension
    /// `ENOENT`; `MULTI_EN`/`MULTI_DIS`: enables/disables the extensions
    /// whose bits are set, silently skipping unavailable ones. Disabling an
    /// enabled extension resets it.
    pub(crate) fn set_ext_reg(&mut self, id: u64, ran_once: bool, value: impl FnOnce() -> Result<u64, Errno>) -> Result<(), Errno> {
        if reg_size(id) != 8 {
            return Err(Errno::EINVAL);
        }
        if ran_once {
            return Err(Errno::EBUSY);
        }
        let num = id & !(KVM_REG_ARCH_MASK | KVM_REG_SIZE_MASK | KVM_REG_RISCV_SBI_EXT);
        let subtype = num & KVM_REG_RISCV_SUBTYPE_MASK;
        let num = num & !KVM_REG_RISCV_SUBTYPE_MASK;
        let value = value()?;
        match subtype {
            KVM_REG_RISCV_SBI_SINGLE => self.set_single(num, value),
            KVM_REG_RISCV_SBI_MULTI_EN | KVM_REG_RISCV_SBI_MULTI_DIS => {
                if num > 0 {
                    return Err(Errno::ENOENT);
                }
                let enable = u64::from(subtype == KVM_REG_RISCV_SBI_MULTI_EN);
                for ext in SbiExt::ALL {
                    if value & (1 << (ext as u32)) != 0 {
                        // Errors (unavailable extensions) are ignored.
                        let _ = self.set_single(ext as u64, enable);
                    }
                }
                Ok(())
            }
            _ => Err(Errno::ENOENT),
        }
    }

    fn set_single(&mut self, num: u64, value: u64) -> Result<(), Errno> {
        if value > 1 {
            return Err(Errno::EINVAL);
        }
        let ext = SbiExt::from_id(num).ok_or(Errno::ENOENT)?;
        let old = self.status(ext);
        if old == ExtStatus::Unavailable {
            return Err(Errno::ENOENT);
        }
        if value == 0 && old == ExtStatus::Enabled {
            self.reset_ext(ext);
        }
        self.set_status(ext, if value == 1 { ExtStatus::Enabled } else { ExtStatus::Disabled });
        Ok(())
    }

    /// The `KVM_REG_RISCV_SBI_EXT` ids `KVM_GET_REG_LIST` lists: one
    /// `SINGLE` register per available extension.
    pub(crate) fn ext_reg_ids(&self) -> impl Iterator<Item = u64> + '_ {
        SbiExt::ALL.into_iter().filter(|&e| self.status(e) != ExtStatus::Unavailable).map(ext_reg_id)
    }

    /// Whether an extension with state registers of `subtype` is enabled
    /// (`kvm_vcpu_sbi_find_ext_withstate()`; only STA here).
    fn state_ext_enabled(&self, subtype: u64) -> bool {
        subtype == KVM_REG_RISCV_SBI_STA && self.status(SbiExt::Sta) == ExtStatus::Enabled
    }

    /// `KVM_GET_ONE_REG` of a `KVM_REG_RISCV_SBI_STATE` register: size not
    /// 1/2/4/8 `EINVAL`; no enabled extension with that subtype `EINVAL`;
    /// STA: size not 8 `EINVAL`, `shmem_lo` (the address, all ones when
    /// unset), `shmem_hi` (0), anything else `ENOENT`.
    pub(crate) fn get_state_reg(&self, id: u64) -> Result<u64, Errno> {
        let size = reg_size(id);
        if !matches!(size, 1 | 2 | 4 | 8) {
            return Err(Errno::EINVAL);
        }
        let num = id & !(KVM_REG_ARCH_MASK | KVM_REG_SIZE_MASK | KVM_REG_RISCV_SBI_STATE);
        let subtype = num & KVM_REG_RISCV_SUBTYPE_MASK;
        let num = num & !KVM_REG_RISCV_SUBTYPE_MASK;
        if !self.state_ext_enabled(subtype) || size != 8 {
            return Err(Errno::EINVAL);
        }
        match num {
            STA_REG_SHMEM_LO => Ok(self.sta.shmem),
            STA_REG_SHMEM_HI => Ok(0),
            _ => Err(Errno::ENOENT),
        }
    }

    /// `KVM_SET_ONE_REG` of a `KVM_REG_RISCV_SBI_STATE` register: the size
    /// checks and lookup of [`SbiContext::get_state_reg`] (with `value()`
    /// read after the size check, as upstream); `shmem_lo` takes any
    /// 64-byte aligned address or all ones (unset), else `EINVAL`;
    /// `shmem_hi` takes only 0, which (upstream quirk, rv64) unsets the
    /// shared memory.
    pub(crate) fn set_state_reg(&mut self, id: u64, value: impl FnOnce() -> Result<u64, Errno>) -> Result<(), Errno> {
        let size = reg_size(id);
        if !matches!(size, 1 | 2 | 4 | 8) {
            return Err(Errno::EINVAL);
        }
        let value = value()?;
        let num = id & !(KVM_REG_ARCH_MASK | KVM_REG_SIZE_MASK | KVM_REG_RISCV_SBI_STATE);
        let subtype = num & KVM_REG_RISCV_SUBTYPE_MASK;
        let num = num & !KVM_REG_RISCV_SUBTYPE_MASK;
        if !self.state_ext_enabled(subtype) || size != 8 {
            return Err(Errno::EINVAL);
        }
        let new = match num {
            STA_REG_SHMEM_LO => value,
            STA_REG_SHMEM_HI if value != 0 => return Err(Errno::EINVAL),
            STA_REG_SHMEM_HI => INVALID_GPA,
            _ => return Err(Errno::ENOENT),
        };
        if new != INVALID_GPA && new % STA_SIZE as u64 != 0 {
            return Err(Errno::EINVAL);
        }
        self.sta.shmem = new;
        Ok(())
    }

    /// The `KVM_REG_RISCV_SBI_STATE` ids `KVM_GET_REG_LIST` lists:
    /// `shmem_lo` and `shmem_hi` while STA is enabled.
    pub(crate) fn state_reg_ids(&self) -> impl Iterator<Item = u64> {
        let base = KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_SBI_STATE | KVM_REG_RISCV_SBI_STA;
        let n = if self.state_ext_enabled(KVM_REG_RISCV_SBI_STA) { 2 } else { 0 };
        (0..n).map(move |i| base | i)
    }
}

fn time(regs: &EcallRegs, env: &mut impl SbiEnv) -> Ret {
    if regs.fid() != 0 {
        return error(err::NOT_SUPPORTED);
    }
    // Upstream ignores the timer's answer here.
    let _ = env.set_timer(regs.a[0]);
    ok(0)
}

fn ipi(regs: &EcallRegs, env: &mut impl SbiEnv) -> Ret {
    if regs.fid() != 0 {
        return error(err::NOT_SUPPORTED);
    }
    let harts = HartMask {
        mask: regs.a[0],
        base: regs.a[1],
    };
    let mut sent = 0u64;
    let mut idx = 0;
    while let Some(id) = env.vcpu_id_at(idx) {
        if harts.contains(id) {
            if let Err(e) = env.send_ipi(idx) {
                return Ret::Fail(e);
            }
            if harts.base != u64::MAX {
                // `contains` checked `base <= id < base + 64`.
                sent |= 1 << (u64::from(id) - harts.base);
            }
        }
        idx += 1;
    }
    // Bits of harts that do not exist make the call fail, after the IPIs
    // to those that do.
    if harts.base != u64::MAX && harts.mask != sent {
        return error(err::INVALID_PARAM);
    }
    ok(0)
}

fn rfence(regs: &EcallRegs, env: &mut impl SbiEnv) -> Ret {
    let [mask, base, start, size, asid, ..] = regs.a;
    let harts = HartMask { mask, base };
    let all = (start == 0 && size == 0) || size == u64::MAX;
    let fence = match regs.fid() {
        rfence_fid::FENCE_I => Fence::FenceI,
        rfence_fid::SFENCE_VMA if all => Fence::VvmaAll,
        rfence_fid::SFENCE_VMA => Fence::VvmaGva { start, size },
        rfence_fid::SFENCE_VMA_ASID if all => Fence::VvmaAsidAll { asid },
        rfence_fid::SFENCE_VMA_ASID => Fence::VvmaAsidGva { start, size, asid },
        // The HFENCE calls (3 to 6) need nested virtualization.
        _ => return error(err::NOT_SUPPORTED),
    };
    env.remote_fence(harts, fence);
    ok(0)
}

fn srst(regs: &EcallRegs) -> Ret {
    if regs.fid() != 0 {
        return error(err::NOT_SUPPORTED);
    }
    // `u32 type = cp->a0; u32 reason = cp->a1;`
    let reason = u64::from(regs.a[1] as u32);
    match regs.a[0] as u32 {
        0 => Ret::System(KVM_SYSTEM_EVENT_SHUTDOWN, reason),
        1 | 2 => Ret::System(KVM_SYSTEM_EVENT_RESET, reason),
        _ => error(err::NOT_SUPPORTED),
    }
}

fn hsm(regs: &EcallRegs, env: &mut impl SbiEnv) -> Ret {
    let [a0, a1, a2, ..] = regs.a;
    let target = || hart_id(a0).and_then(|id| env.vcpu_idx_by_id(id));
    match regs.fid() {
        hsm_fid::HART_START => match target() {
            None => error(err::INVALID_PARAM),
            Some(idx) if env.hart_start(idx, a1, a2) => ok(0),
            Some(_) => error(err::ALREADY_AVAILABLE),
        },
        hsm_fid::HART_STOP => {
            if env.hart_stop() {
                ok(0)
            } else {
                error(err::FAILURE)
            }
        }
        hsm_fid::HART_STATUS => match target() {
            None => error(err::INVALID_PARAM),
            Some(idx) => ok(env.hart_state(idx) as u64),
        },
        hsm_fid::HART_SUSPEND => match a0 as u32 {
            HSM_SUSPEND_RET_DEFAULT => {
                env.wfi();
                ok(0)
            }
            HSM_SUSPEND_NON_RET_DEFAULT => error(err::NOT_SUPPORTED),
            // Platform-specific types included.
            _ => error(err::INVALID_PARAM),
        },
        _ => error(err::NOT_SUPPORTED),
    }
}

fn susp(regs: &EcallRegs, env: &mut impl SbiEnv) -> Ret {
    let [sleep_type, resume_addr, opaque, ..] = regs.a;
    if regs.fid() != 0 {
        return error(err::NOT_SUPPORTED);
    }
    // SBI_SUSP_SLEEP_TYPE_SUSPEND_TO_RAM only.
    if sleep_type as u32 != 0 {
        return error(err::INVALID_PARAM);
    }
    if regs.sstatus & SR_SPP == 0 {
        return error(err::FAILURE);
    }
    if !env.gpa_has_memslot(resume_addr) {
        return error(err::INVALID_ADDRESS);
    }
    if !env.others_stopped() {
        return error(err::DENIED);
    }
    env.request_reset(resume_addr, opaque);
    // Userspace implements the suspend itself.
    Ret::Forward
}

#[cfg(test)]
mod host_tests {
    use super::*;
    use std::vec::Vec;

    /// A VM of vCPUs with ids, states and a guest memory map, recording
    /// what the SBI asked of it.
    #[derive(Default)]
    struct Vm {
        ids: Vec<u32>,
        stopped: Vec<bool>,
        blocking: Vec<bool>,
        /// The calling vCPU.
        me: usize,
        timer: Option<u64>,
        timer_err: Option<Errno>,
        ipis: Vec<usize>,
        ipi_err_at: Option<usize>,
        fences: Vec<(HartMask, Fence)>,
        reset: Option<(u64, u64)>,
        started: Vec<(usize, u64, u64)>,
        wfis: u32,
        /// Guest RAM: [0, ram) backed.
        ram: u64,
        zeroed: Vec<u64>,
        clock: StealClock,
        guest_words: Vec<(u64, u64)>,
        cleared: u32,
    }

    impl Vm {
        fn new(ids: &[u32]) -> Vm {
            Vm {
                ids: ids.to_vec(),
                stopped: ids.iter().map(|_| false).collect(),
                blocking: ids.iter().map(|_| false).collect(),
                ram: 0x1000_0000,
                ..Default::default()
            }
        }
    }

    impl SbiEnv for Vm {
        fn machine_ids(&self) -> MachineIds {
            MachineIds { mvendorid: 0x489, marchid: 0x8000_0000_0000_0007, mimpid: 0x2024 }
        }
        fn set_timer(&mut self, next_cycle: u64) -> Result<(), Errno> {
            self.timer = Some(next_cycle);
            self.timer_err.map_or(Ok(()), Err)
        }
        fn clear_ipi(&mut self) -> Result<(), Errno> {
            self.cleared += 1;
            Ok(())
        }
        fn vcpu_id_at(&self, idx: usize) -> Option<u32> {
            self.ids.get(idx).copied()
        }
        fn send_ipi(&mut self, idx: usize) -> Result<(), Errno> {
            if self.ipi_err_at == Some(idx) {
                return Err(Errno::EINVAL);
            }
            self.ipis.push(idx);
            Ok(())
        }
        fn remote_fence(&mut self, harts: HartMask, fence: Fence) {
            self.fences.push((harts, fence));
        }
        fn hart_start(&mut self, idx: usize, start_addr: u64, opaque: u64) -> bool {
            if !self.stopped[idx] {
                return false;
            }
            self.stopped[idx] = false;
            self.started.push((idx, start_addr, opaque));
            true
        }
        fn hart_stop(&mut self) -> bool {
            let me = self.me;
            !std::mem::replace(&mut self.stopped[me], true)
        }
        fn hart_state(&self, idx: usize) -> HartState {
            if self.stopped[idx] {
                HartState::Stopped
            } else if self.blocking[idx] {
                HartState::Suspended
            } else {
                HartState::Started
            }
        }
        fn wfi(&mut self) {
            self.wfis += 1;
        }
        fn others_stopped(&self) -> bool {
            self.stopped.iter().enumerate().all(|(i, s)| i == self.me || *s)
        }
        fn gpa_has_memslot(&self, gpa: u64) -> bool {
            gpa < self.ram
        }
        fn request_reset(&mut self, pc: u64, a1: u64) {
            self.reset = Some((pc, a1));
        }
        fn zero_guest(&mut self, gpa: u64, len: usize) -> bool {
            if gpa.checked_add(len as u64).map_or(true, |end| end > self.ram) {
                return false;
            }
            self.zeroed.push(gpa);
            true
        }
        fn steal_clock(&self) -> StealClock {
            self.clock
        }
        fn read_guest_ulong(&mut self, gva: u64) -> Result<u64, GuestTrap> {
            self.guest_words
                .iter()
                .find(|(a, _)| *a == gva)
                .map(|(_, v)| *v)
                .ok_or(GuestTrap { scause: 13, stval: gva })
        }
    }

    const CFG: SbiConfig = SbiConfig { v01: false, sta: true, imp_version: linux_version_code(7, 3, 4) };

    #[test]
    fn version_code() {
        assert_eq!(linux_version_code(7, 3, 4), 0x07_03_04);
        assert_eq!(linux_version_code(6, 1, 300), 0x06_01_ff);
    }

    fn call(ctx: &mut SbiContext, vm: &mut Vm, eid: u64, fid: u64, args: [u64; 6]) -> SbiExit {
        ctx.ecall(&EcallRegs::new(eid, fid, args, SR_SPP), vm)
    }

    fn cont(error: i64, value: u64) -> SbiExit {
        SbiExit::Continue { error, value: Some(value) }
    }

    #[test]
    fn base_extension() {
        let mut ctx = SbiContext::new(CFG);
        let mut vm = Vm::new(&[0]);
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 0, [0; 6]), cont(0, 0x0300_0000));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 1, [0; 6]), cont(0, 3));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 2, [0; 6]), cont(0, 0x070304));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 4, [0; 6]), cont(0, 0x489));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 5, [0; 6]), cont(0, 0x8000_0000_0000_0007));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 6, [0; 6]), cont(0, 0x2024));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 7, [0; 6]), cont(-2, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, u64::MAX, [0; 6]), cont(-2, 0));
    }

    #[test]
    fn probe_defaults() {
        let mut ctx = SbiContext::new(CFG);
        let mut vm = Vm::new(&[0]);
        let probe = |ctx: &mut SbiContext, vm: &mut Vm, e: u64| call(ctx, vm, eid::BASE, 3, [e, 0, 0, 0, 0, 0]);
        for e in [eid::BASE, eid::TIME, eid::IPI, eid::RFENCE, eid::SRST, eid::HSM, eid::STA] {
            assert_eq!(probe(&mut ctx, &mut vm, e), cont(0, 1), "{e:#x}");
        }
        for e in [eid::PMU, eid::DBCN, eid::SUSP, eid::FWFT, eid::MPXY, eid::NACL, eid::DBTR, 0, 8, 0x11, 1 << 40] {
            assert_eq!(probe(&mut ctx, &mut vm, e), cont(0, 0), "{e:#x}");
        }
        // Upstream's v0.1 stub (no CONFIG_RISCV_SBI_V01) serves id -1 and
        // is enabled: probe says 1, the call is not supported.
        assert_eq!(probe(&mut ctx, &mut vm, u64::MAX), cont(0, 1));
        assert_eq!(call(&mut ctx, &mut vm, u64::MAX, 0, [0; 6]), cont(-2, 0));
        // Experimental and vendor probes go to userspace.
        for e in [eid::EXPERIMENTAL_START, eid::EXPERIMENTAL_END, eid::VENDOR_START, eid::VENDOR_END] {
            let SbiExit::Forward(f) = probe(&mut ctx, &mut vm, e) else { panic!("{e:#x}") };
            assert_eq!((f.extension_id, f.function_id, f.args[0]), (eid::BASE, 3, e));
            assert_eq!(f.ret, [(-2i64) as u64, 0]);
        }
        // Disabled ranges still forward their probe (upstream checks the
        // range before the status).
        ctx.set_ext_reg(ext_reg_id(SbiExt::Vendor), false, || Ok(0)).unwrap();
        assert!(matches!(probe(&mut ctx, &mut vm, eid::VENDOR_START), SbiExit::Forward(_)));
        assert_eq!(call(&mut ctx, &mut vm, eid::VENDOR_START, 0, [0; 6]), cont(-2, 0));
        // Enabling DBCN makes it probe 1 and forward.
        ctx.set_ext_reg(ext_reg_id(SbiExt::Dbcn), false, || Ok(1)).unwrap();
        assert_eq!(probe(&mut ctx, &mut vm, eid::DBCN), cont(0, 1));
        assert!(matches!(call(&mut ctx, &mut vm, eid::DBCN, 0, [5, 0x1000, 0, 0, 0, 0]), SbiExit::Forward(_)));
        // Without sched_info, STA is unavailable.
        let ctx = SbiContext::new(SbiConfig { sta: false, ..CFG });
        assert!(!ctx.probe(eid::STA));
    }

    #[test]
    fn disabled_extension_is_not_supported() {
        let mut vm = Vm::new(&[0, 1]);
        for (ext, e) in [(SbiExt::Time, eid::TIME), (SbiExt::Ipi, eid::IPI), (SbiExt::Rfence, eid::RFENCE),
                         (SbiExt::Srst, eid::SRST), (SbiExt::Hsm, eid::HSM), (SbiExt::Sta, eid::STA),
                         (SbiExt::Experimental, eid::EXPERIMENTAL_START)] {
            let mut ctx = SbiContext::new(CFG);
            assert!(ctx.probe(e));
            ctx.set_ext_reg(ext_reg_id(ext), false, || Ok(0)).unwrap();
            assert!(!ctx.probe(e));
            assert_eq!(call(&mut ctx, &mut vm, e, 0, [0; 6]), cont(-2, 0), "{ext:?}");
            assert_eq!(ctx.get_ext_reg(ext_reg_id(ext)), Ok(0));
        }
        assert_eq!(vm.timer, None);
        assert!(vm.ipis.is_empty() && vm.fences.is_empty());
    }

    #[test]
    fn time_and_ipi() {
        let mut ctx = SbiContext::new(CFG);
        let mut vm = Vm::new(&[0, 1, 2, 5, 64]);
        vm.timer_err = Some(Errno::EINVAL);
        // The timer's error is ignored by TIME.
        assert_eq!(call(&mut ctx, &mut vm, eid::TIME, 0, [1234, 9, 0, 0, 0, 0]), cont(0, 0));
        assert_eq!(vm.timer, Some(1234));
        assert_eq!(call(&mut ctx, &mut vm, eid::TIME, 1, [0; 6]), cont(-2, 0));
        // base = -1: every hart.
        assert_eq!(call(&mut ctx, &mut vm, eid::IPI, 0, [0, u64::MAX, 0, 0, 0, 0]), cont(0, 0));
        assert_eq!(vm.ipis, [0, 1, 2, 3, 4]);
        vm.ipis.clear();
        // base 1, harts 1 and 2.
        assert_eq!(call(&mut ctx, &mut vm, eid::IPI, 0, [0b11, 1, 0, 0, 0, 0]), cont(0, 0));
        assert_eq!(vm.ipis, [1, 2]);
        vm.ipis.clear();
        // Harts 2, 4, 5: hart 4 does not exist; the others still get
        // theirs, then INVALID_PARAM.
        assert_eq!(call(&mut ctx, &mut vm, eid::IPI, 0, [0b1101, 2, 0, 0, 0, 0]), cont(-3, 0));
        assert_eq!(vm.ipis, [2, 3]);
        vm.ipis.clear();
        // Hart 64 only reachable with a base above 0.
        assert_eq!(call(&mut ctx, &mut vm, eid::IPI, 0, [1, 64, 0, 0, 0, 0]), cont(0, 0));
        assert_eq!(vm.ipis, [4]);
        vm.ipis.clear();
        // Empty mask: nothing, success.
        assert_eq!(call(&mut ctx, &mut vm, eid::IPI, 0, [0, 0, 0, 0, 0, 0]), cont(0, 0));
        assert!(vm.ipis.is_empty());
        // Base beyond every hart: INVALID_PARAM for a non-empty mask.
        assert_eq!(call(&mut ctx, &mut vm, eid::IPI, 0, [1, u64::MAX - 1, 0, 0, 0, 0]), cont(-3, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::IPI, 1, [1, 0, 0, 0, 0, 0]), cont(-2, 0));
        // An interrupt that cannot be raised fails KVM_RUN.
        vm.ipi_err_at = Some(1);
        assert_eq!(call(&mut ctx, &mut vm, eid::IPI, 0, [0, u64::MAX, 0, 0, 0, 0]), SbiExit::Fail(Errno::EINVAL));
    }

    #[test]
    fn hart_mask_contains() {
        assert!(HartMask::ALL.contains(0) && HartMask::ALL.contains(u32::MAX));
        let m = HartMask { mask: 1 << 63 | 1, base: 10 };
        assert!(!m.contains(9) && m.contains(10) && !m.contains(11) && m.contains(73) && !m.contains(74));
        let m = HartMask { mask: u64::MAX, base: u64::MAX - 1 };
        assert!(!m.contains(u32::MAX));
    }

    #[test]
    fn rfence() {
        let mut ctx = SbiContext::new(CFG);
        let mut vm = Vm::new(&[0, 1]);
        let h = HartMask { mask: 3, base: 0 };
        let cases = [
            (0, [3, 0, 7, 8, 9, 0], Fence::FenceI),
            (1, [3, 0, 0, 0, 9, 0], Fence::VvmaAll),
            (1, [3, 0, 0x1000, u64::MAX, 9, 0], Fence::VvmaAll),
            (1, [3, 0, 0x1000, 0x2000, 9, 0], Fence::VvmaGva { start: 0x1000, size: 0x2000 }),
            (1, [3, 0, 0x1000, 0, 9, 0], Fence::VvmaGva { start: 0x1000, size: 0 }),
            (2, [3, 0, 0, 0, 9, 0], Fence::VvmaAsidAll { asid: 9 }),
            (2, [3, 0, 5, u64::MAX, 9, 0], Fence::VvmaAsidAll { asid: 9 }),
            (2, [3, 0, 5, 6, 9, 0], Fence::VvmaAsidGva { start: 5, size: 6, asid: 9 }),
        ];
        for (fid, args, fence) in cases {
            assert_eq!(call(&mut ctx, &mut vm, eid::RFENCE, fid, args), cont(0, 0));
            assert_eq!(vm.fences.pop(), Some((h, fence)));
        }
        // Harts that do not exist are no error for fences.
        assert_eq!(call(&mut ctx, &mut vm, eid::RFENCE, 0, [u64::MAX, 100, 0, 0, 0, 0]), cont(0, 0));
        for fid in 3..=7 {
            assert_eq!(call(&mut ctx, &mut vm, eid::RFENCE, fid, [0; 6]), cont(-2, 0));
        }
    }

    #[test]
    fn system_reset() {
        let mut ctx = SbiContext::new(CFG);
        let mut vm = Vm::new(&[0]);
        let sys = |ty, reason| SbiExit::SystemEvent { ty, reason };
        assert_eq!(call(&mut ctx, &mut vm, eid::SRST, 0, [0, 1, 0, 0, 0, 0]), sys(1, 1));
        assert_eq!(call(&mut ctx, &mut vm, eid::SRST, 0, [1, 0, 0, 0, 0, 0]), sys(2, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::SRST, 0, [2, 0xf000_0000, 0, 0, 0, 0]), sys(2, 0xf000_0000));
        // Type and reason are 32-bit.
        assert_eq!(call(&mut ctx, &mut vm, eid::SRST, 0, [1 << 32, 1 << 32 | 5, 0, 0, 0, 0]), sys(1, 5));
        assert_eq!(call(&mut ctx, &mut vm, eid::SRST, 0, [3, 0, 0, 0, 0, 0]), cont(-2, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::SRST, 0, [0xf000_0000, 0, 0, 0, 0, 0]), cont(-2, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::SRST, 1, [0; 6]), cont(-2, 0));
    }

    #[test]
    fn hsm() {
        let mut ctx = SbiContext::new(CFG);
        let mut vm = Vm::new(&[0, 7, 3]);
        vm.stopped = vec![false, true, true];
        vm.blocking[2] = true;
        let st = |ctx: &mut SbiContext, vm: &mut Vm, h: u64| call(ctx, vm, eid::HSM, 2, [h, 0, 0, 0, 0, 0]);
        assert_eq!(st(&mut ctx, &mut vm, 0), cont(0, 0));
        assert_eq!(st(&mut ctx, &mut vm, 7), cont(0, 1));
        assert_eq!(st(&mut ctx, &mut vm, 1), cont(-3, 0));
        // The hart id is an int: truncated, negative finds nothing.
        assert_eq!(st(&mut ctx, &mut vm, 1 << 32 | 7), cont(0, 1));
        assert_eq!(st(&mut ctx, &mut vm, 0xffff_ffff), cont(-3, 0));
        assert_eq!(st(&mut ctx, &mut vm, 0x8000_0000), cont(-3, 0));
        // Start hart 7 at 0x8020_0000 with opaque 0x42.
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 0, [7, 0x8020_0000, 0x42, 0, 0, 0]), cont(0, 0));
        assert_eq!(vm.started, [(1, 0x8020_0000, 0x42)]);
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 0, [7, 0, 0, 0, 0, 0]), cont(-6, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 0, [9, 0, 0, 0, 0, 0]), cont(-3, 0));
        // Stopped but blocking is STOPPED; running and blocking is SUSPENDED.
        assert_eq!(st(&mut ctx, &mut vm, 3), cont(0, 1));
        vm.stopped[2] = false;
        assert_eq!(st(&mut ctx, &mut vm, 3), cont(0, 4));
        // Stop self, twice.
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 1, [0; 6]), cont(0, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 1, [0; 6]), cont(-1, 0));
        // Suspend: retentive default waits; non-retentive is not supported;
        // anything else is invalid. Only the low 32 bits count.
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 3, [1 << 32, 0, 0, 0, 0, 0]), cont(0, 0));
        assert_eq!(vm.wfis, 1);
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 3, [0x8000_0000, 0, 0, 0, 0, 0]), cont(-2, 0));
        for t in [1, 0x1000_0000, 0x7fff_ffff, 0x8000_0001, 0x9000_0000] {
            assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 3, [t, 0, 0, 0, 0, 0]), cont(-3, 0));
        }
        assert_eq!(vm.wfis, 1);
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 4, [0; 6]), cont(-2, 0));
    }

    #[test]
    fn system_suspend() {
        let mut ctx = SbiContext::new(CFG);
        let mut vm = Vm::new(&[0, 1]);
        let regs = |t: u64, addr: u64, sstatus: u64| EcallRegs::new(eid::SUSP, 0, [t, addr, 0x77, 0, 0, 0], sstatus);
        // Disabled by default.
        assert_eq!(ctx.ecall(&regs(0, 0x8000, SR_SPP), &mut vm), cont(-2, 0));
        ctx.set_ext_reg(ext_reg_id(SbiExt::Susp), false, || Ok(1)).unwrap();
        assert_eq!(ctx.ecall(&regs(1, 0x8000, SR_SPP), &mut vm), cont(-3, 0));
        assert_eq!(ctx.ecall(&regs(0, 0x8000, 0), &mut vm), cont(-1, 0));
        assert_eq!(ctx.ecall(&regs(0, vm.ram, SR_SPP), &mut vm), cont(-5, 0));
        assert_eq!(ctx.ecall(&regs(0, 0x8000, SR_SPP), &mut vm), cont(-4, 0));
        assert_eq!(vm.reset, None);
        vm.stopped[1] = true;
        let SbiExit::Forward(f) = ctx.ecall(&regs(1 << 32, 0x8000, SR_SPP), &mut vm) else { panic!() };
        assert_eq!((f.extension_id, f.function_id, f.args), (eid::SUSP, 0, [1 << 32, 0x8000, 0x77, 0, 0, 0]));
        assert_eq!(vm.reset, Some((0x8000, 0x77)));
        assert_eq!(ctx.ecall(&EcallRegs::new(eid::SUSP, 1, [0; 6], SR_SPP), &mut vm), cont(-2, 0));
    }

    #[test]
    fn forward_and_completion() {
        let mut ctx = SbiContext::new(CFG);
        let mut vm = Vm::new(&[0]);
        // A new vCPU applies a completion once (upstream's zeroed state).
        assert_eq!(ctx.complete_forward([1, 2]), Some(SbiReturn { a0: 1, a1: 2, sepc_advance: 4 }));
        assert_eq!(ctx.complete_forward([1, 2]), None);
        let SbiExit::Forward(f) = call(&mut ctx, &mut vm, 0x0812_3456, 9, [1, 2, 3, 4, 5, 6]) else { panic!() };
        assert_eq!(f, RiscvSbiExit { extension_id: 0x0812_3456, function_id: 9, args: [1, 2, 3, 4, 5, 6],
                                     ret: [(-2i64) as u64, 0] });
        assert_eq!(ctx.complete_forward([0, 0x55]), Some(SbiReturn { a0: 0, a1: 0x55, sepc_advance: 4 }));
        assert_eq!(ctx.complete_forward([0, 0x55]), None);
    }

    #[test]
    fn sta_set_shmem() {
        let mut ctx = SbiContext::new(CFG);
        let mut vm = Vm::new(&[0]);
        vm.clock = StealClock { run_delay: 1000, extra_ns: 5 };
        let set = |ctx: &mut SbiContext, vm: &mut Vm, lo, hi, flags| call(ctx, vm, eid::STA, 0, [lo, hi, flags, 0, 0, 0]);
        assert_eq!(set(&mut ctx, &mut vm, 0x1000, 0, 1), cont(-3, 0));
        assert_eq!(set(&mut ctx, &mut vm, 0x1020, 0, 0), cont(-3, 0));
        assert_eq!(set(&mut ctx, &mut vm, 0x1000, 1, 0), cont(-5, 0));
        let ram = vm.ram;
        assert_eq!(set(&mut ctx, &mut vm, ram - 32, 0, 0), cont(-3, 0));
        assert_eq!(set(&mut ctx, &mut vm, ram, 0, 0), cont(-5, 0));
        assert_eq!(set(&mut ctx, &mut vm, u64::MAX, 0, 0), cont(-3, 0));
        assert_eq!(ctx.sta().shmem(), None);
        // flags are 32 bits: bit 32 is ignored.
        assert_eq!(set(&mut ctx, &mut vm, 0x1040, 0, 1 << 32), cont(0, 0));
        assert_eq!(vm.zeroed, [0x1040]);
        assert_eq!(ctx.sta().shmem(), Some(0x1040));
        assert_eq!(ctx.get_state_reg(KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_SBI_STATE), Ok(0x1040));
        assert_eq!(set(&mut ctx, &mut vm, u64::MAX, u64::MAX, 0), cont(0, 0));
        assert_eq!(ctx.sta().shmem(), None);
        assert_eq!(call(&mut ctx, &mut vm, eid::STA, 1, [0; 6]), cont(-2, 0));
    }

    #[test]
    fn steal_time_protocol() {
        let mut ctx = SbiContext::new(CFG);
        let mut vm = Vm::new(&[0]);
        vm.clock = StealClock { run_delay: 1000, extra_ns: 7 };
        assert_eq!(call(&mut ctx, &mut vm, eid::STA, 0, [0x2000, 0, 0, 0, 0, 0]), cont(0, 0));
        let mut buf = [0u8; STA_SIZE];
        buf[STA_FLAGS] = 0xee;
        buf[STA_PREEMPTED] = 0xdd;
        record_steal_time(ctx.sta_mut(), &mut buf, StealClock { run_delay: 1500, extra_ns: 7 });
        assert_eq!(&buf[0..4], &2u32.to_le_bytes());
        assert_eq!(&buf[8..16], &500u64.to_le_bytes());
        assert_eq!((buf[STA_FLAGS], buf[STA_PREEMPTED]), (0xee, 0xdd));
        // The extra (host suspend) nanoseconds count too.
        let u = ctx.sta_mut().record(2, 500, StealClock { run_delay: 1600, extra_ns: 1_000_007 });
        assert_eq!(u, StealUpdate { seq_begin: 3, steal: 1_000_600, seq_end: 4 });
        // Wrapping everywhere, no panic.
        let u = ctx.sta_mut().record(u32::MAX, u64::MAX, StealClock { run_delay: 0, extra_ns: 0 });
        assert_eq!((u.seq_begin, u.seq_end), (0, 1));
        // No shared memory: the buffer is untouched.
        ctx.sta_mut().invalidate();
        let before = buf;
        record_steal_time(ctx.sta_mut(), &mut buf, StealClock { run_delay: 9999, extra_ns: 0 });
        assert_eq!(buf, before);
    }

    const SINGLE: u64 = KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_SBI_EXT;

    #[test]
    fn ext_one_reg() {
        let mut ctx = SbiContext::new(CFG);
        let enabled = [1u64, 1, 1, 1, 1, 1, 2, 1, 1, 0, 1, 0, 2, 0]; // 2: ENOENT
        for (i, want) in enabled.iter().enumerate() {
            let got = ctx.get_ext_reg(SINGLE | i as u64);
            assert_eq!(got, if *want == 2 { Err(Errno::ENOENT) } else { Ok(*want) }, "ext {i}");
        }
        assert_eq!(ctx.get_ext_reg(SINGLE | 14), Err(Errno::ENOENT));
        assert_eq!(ctx.get_ext_reg(SINGLE | 1 << 32), Err(Errno::ENOENT));
        let size32 = (SINGLE & !KVM_REG_SIZE_MASK) | 0x0020_0000_0000_0000;
        assert_eq!(ctx.get_ext_reg(size32), Err(Errno::EINVAL));
        assert_eq!(ctx.get_ext_reg(SINGLE | 3 << 16), Err(Errno::ENOENT));
        let multi_en = SINGLE | KVM_REG_RISCV_SBI_MULTI_EN;
        let multi_dis = SINGLE | KVM_REG_RISCV_SBI_MULTI_DIS;
        assert_eq!(ctx.get_ext_reg(multi_en), Ok(0b00_0101_1011_1111));
        assert_eq!(ctx.get_ext_reg(multi_dis), Ok(!0b00_0101_1011_1111));
        assert_eq!(ctx.get_ext_reg(multi_en | 1), Err(Errno::ENOENT));
        // Set single: value 0/1 only (checked before the id), ENOENT for
        // unknown or unavailable, EBUSY after the first run.
        assert_eq!(ctx.set_ext_reg(SINGLE | 99, false, || Ok(2)), Err(Errno::EINVAL));
        assert_eq!(ctx.set_ext_reg(SINGLE | 99, false, || Ok(1)), Err(Errno::ENOENT));
        assert_eq!(ctx.set_ext_reg(SINGLE | SbiExt::Pmu as u64, false, || Ok(1)), Err(Errno::ENOENT));
        assert_eq!(ctx.set_ext_reg(SINGLE | 9, true, || Ok(1)), Err(Errno::EBUSY));
        assert_eq!(ctx.set_ext_reg(size32, true, || Ok(1)), Err(Errno::EINVAL));
        assert_eq!(ctx.set_ext_reg(SINGLE | 9, false, || Err(Errno::EFAULT)), Err(Errno::EFAULT));
        assert_eq!(ctx.set_ext_reg(SINGLE | 3 << 16, false, || Ok(1)), Err(Errno::ENOENT));
        assert_eq!(ctx.set_ext_reg(SINGLE | 9, false, || Ok(1)), Ok(()));
        assert_eq!(ctx.get_ext_reg(SINGLE | 9), Ok(1));
        // V01 (the stub) can be disabled and re-enabled.
        assert_eq!(ctx.set_ext_reg(SINGLE, false, || Ok(0)), Ok(()));
        assert!(!ctx.probe(u64::MAX));
        // Multi: unavailable bits and bits past the last extension ignored.
        assert_eq!(ctx.set_ext_reg(multi_dis, false, || Ok(u64::MAX)), Ok(()));
        assert_eq!(ctx.get_ext_reg(multi_en), Ok(0));
        assert_eq!(ctx.set_ext_reg(multi_en, false, || Ok(u64::MAX)), Ok(()));
        assert_eq!(ctx.get_ext_reg(multi_en), Ok(0b10_1111_1011_1111));
        assert_eq!(ctx.set_ext_reg(multi_en | 1, false, || Ok(1)), Err(Errno::ENOENT));
        // Listing: the available ones.
        let ids: Vec<u64> = ctx.ext_reg_ids().collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 13].map(|i| SINGLE | i));
    }

    #[test]
    fn sta_one_reg() {
        let mut ctx = SbiContext::new(CFG);
        let state = KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_SBI_STATE;
        let lo = state | STA_REG_SHMEM_LO;
        let hi = state | STA_REG_SHMEM_HI;
        assert_eq!(ctx.state_reg_ids().collect::<Vec<_>>(), [lo, hi]);
        assert_eq!(ctx.get_state_reg(lo), Ok(u64::MAX));
        assert_eq!(ctx.get_state_reg(hi), Ok(0));
        assert_eq!(ctx.get_state_reg(state | 2), Err(Errno::ENOENT));
        assert_eq!(ctx.get_state_reg(state | 1 << 16), Err(Errno::EINVAL)); // FWFT
        let lo32 = (lo & !KVM_REG_SIZE_MASK) | 0x0020_0000_0000_0000;
        assert_eq!(ctx.get_state_reg(lo32), Err(Errno::EINVAL));
        let lo16b = (lo & !KVM_REG_SIZE_MASK) | 0x0070_0000_0000_0000;
        assert_eq!(ctx.get_state_reg(lo16b), Err(Errno::EINVAL));
        assert_eq!(ctx.set_state_reg(lo, || Ok(0x1000)), Ok(()));
        assert_eq!(ctx.sta().shmem(), Some(0x1000));
        assert_eq!(ctx.set_state_reg(lo, || Ok(0x1001)), Err(Errno::EINVAL));
        assert_eq!(ctx.set_state_reg(hi, || Ok(1)), Err(Errno::EINVAL));
        assert_eq!(ctx.sta().shmem(), Some(0x1000));
        // shmem_hi = 0 unsets it (upstream quirk).
        assert_eq!(ctx.set_state_reg(hi, || Ok(0)), Ok(()));
        assert_eq!(ctx.sta().shmem(), None);
        assert_eq!(ctx.set_state_reg(lo, || Ok(0x2000)), Ok(()));
        assert_eq!(ctx.set_state_reg(lo, || Ok(u64::MAX)), Ok(()));
        assert_eq!(ctx.sta().shmem(), None);
        assert_eq!(ctx.set_state_reg(lo, || Err(Errno::EFAULT)), Err(Errno::EFAULT));
        assert_eq!(ctx.set_state_reg(state | 5, || Ok(0)), Err(Errno::ENOENT));
        // Disabling STA resets it and hides the registers.
        assert_eq!(ctx.set_state_reg(lo, || Ok(0x3000)), Ok(()));
        ctx.set_ext_reg(ext_reg_id(SbiExt::Sta), false, || Ok(0)).unwrap();
        assert_eq!(ctx.sta().shmem(), None);
        assert_eq!(ctx.get_state_reg(lo), Err(Errno::EINVAL));
        assert_eq!(ctx.set_state_reg(lo, || Ok(0x3000)), Err(Errno::EINVAL));
        assert_eq!(ctx.state_reg_ids().count(), 0);
        // A vCPU reset resets enabled STA.
        ctx.set_ext_reg(ext_reg_id(SbiExt::Sta), false, || Ok(1)).unwrap();
        assert_eq!(ctx.set_state_reg(lo, || Ok(0x3000)), Ok(()));
        ctx.reset();
        assert_eq!(ctx.sta().shmem(), None);
    }

    #[test]
    fn legacy_v01() {
        let cfg = SbiConfig { v01: true, ..CFG };
        let mut ctx = SbiContext::new(cfg);
        let mut vm = Vm::new(&[0, 1, 2]);
        vm.guest_words = vec![(0x5000, 0b101), (0x6000, 1 << 40 | 2)];
        let v = |e: i64| SbiExit::Continue { error: e, value: None };
        assert!(ctx.probe(0) && ctx.probe(8) && !ctx.probe(9) && !ctx.probe(u64::MAX));
        assert_eq!(call(&mut ctx, &mut vm, eid::V01_SET_TIMER, 77, [55, 0, 0, 0, 0, 0]), v(0));
        assert_eq!(vm.timer, Some(55));
        vm.timer_err = Some(Errno::EINVAL);
        assert_eq!(call(&mut ctx, &mut vm, 0, 0, [56, 0, 0, 0, 0, 0]), SbiExit::Fail(Errno::EINVAL));
        assert_eq!(call(&mut ctx, &mut vm, 3, 0, [0; 6]), v(0));
        assert_eq!(vm.cleared, 1);
        assert!(matches!(call(&mut ctx, &mut vm, 1, 0, [b'x' as u64, 0, 0, 0, 0, 0]), SbiExit::Forward(_)));
        assert!(matches!(call(&mut ctx, &mut vm, 2, 0, [0; 6]), SbiExit::Forward(_)));
        // SEND_IPI with a mask in guest memory; 0 means all; a bad pointer
        // redirects the fault.
        assert_eq!(call(&mut ctx, &mut vm, 4, 0, [0x5000, 0, 0, 0, 0, 0]), v(0));
        assert_eq!(vm.ipis, [0, 2]);
        vm.ipis.clear();
        assert_eq!(call(&mut ctx, &mut vm, 4, 0, [0, 0, 0, 0, 0, 0]), v(0));
        assert_eq!(vm.ipis, [0, 1, 2]);
        assert_eq!(call(&mut ctx, &mut vm, 4, 0, [0x7000, 0, 0, 0, 0, 0]),
                   SbiExit::Redirect(GuestTrap { scause: 13, stval: 0x7000 }));
        // Fences.
        assert_eq!(call(&mut ctx, &mut vm, 5, 0, [0, 0, 0, 0, 0, 0]), v(0));
        assert_eq!(vm.fences.pop(), Some((HartMask::ALL, Fence::FenceI)));
        assert_eq!(call(&mut ctx, &mut vm, 6, 0, [0x6000, 0x1000, 0x2000, 0, 0, 0]), v(0));
        assert_eq!(vm.fences.pop(), Some((HartMask { mask: 1 << 40 | 2, base: 0 },
                                           Fence::VvmaGva { start: 0x1000, size: 0x2000 })));
        assert_eq!(call(&mut ctx, &mut vm, 6, 0, [0, 0, 0, 0, 0, 0]), v(0));
        assert_eq!(vm.fences.pop(), Some((HartMask::ALL, Fence::VvmaAll)));
        // v0.1 has no "size -1 means all".
        assert_eq!(call(&mut ctx, &mut vm, 7, 0, [0, 0x1000, u64::MAX, 3, 0, 0]), v(0));
        assert_eq!(vm.fences.pop(), Some((HartMask::ALL, Fence::VvmaAsidGva { start: 0x1000, size: u64::MAX, asid: 3 })));
        assert_eq!(call(&mut ctx, &mut vm, 7, 0, [0; 6]), v(0));
        assert_eq!(vm.fences.pop(), Some((HartMask::ALL, Fence::VvmaAsidAll { asid: 0 })));
        assert!(matches!(call(&mut ctx, &mut vm, 7, 0, [8, 0, 0, 0, 0, 0]), SbiExit::Redirect(_)));
        assert_eq!(call(&mut ctx, &mut vm, 8, 0, [0; 6]), SbiExit::SystemEvent { ty: 1, reason: 0 });
        // Disabled: not supported, and then a1 is written (not a v0.1 call).
        ctx.set_ext_reg(ext_reg_id(SbiExt::V01), false, || Ok(0)).unwrap();
        assert_eq!(call(&mut ctx, &mut vm, 8, 0, [0; 6]), cont(-2, 0));
    }

    /// Any extension id and function id with any arguments gets a defined
    /// answer (never a panic), in every extension configuration.
    #[test]
    fn fuzz_every_eid_and_fid() {
        let named = [0u64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xf, 0x10, 0x11, eid::TIME, eid::IPI, eid::RFENCE, eid::HSM,
                     eid::SRST, eid::SUSP, eid::PMU, eid::DBCN, eid::STA, eid::NACL, eid::FWFT, eid::MPXY, eid::DBTR,
                     eid::EXPERIMENTAL_START, eid::EXPERIMENTAL_END, eid::EXPERIMENTAL_END + 1, eid::VENDOR_START,
                     eid::VENDOR_END, eid::VENDOR_END + 1, 0x0A00_0000, 0xffff_ffff, 1 << 32, u64::MAX - 1, u64::MAX];
        let mut x = 0x0123_4567_89ab_cdefu64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let interesting = [0u64, 1, 2, 3, 0x40, 0x1000, 63, 64, 0x8000_0000, 0xffff_ffff, 1 << 32, u64::MAX - 1,
                           u64::MAX];
        let mut counts = [0usize; 5];
        for config in [CFG, SbiConfig { v01: true, sta: false, imp_version: 0 }] {
            for all_on in [false, true] {
                let mut ctx = SbiContext::new(config);
                if all_on {
                    let multi_en = SINGLE | KVM_REG_RISCV_SBI_MULTI_EN;
                    ctx.set_ext_reg(multi_en, false, || Ok(u64::MAX)).unwrap();
                }
                for &e in &named {
                    for fid in (0..12).chain([0x100, 1 << 31, 1 << 32, u64::MAX]) {
                        for round in 0..40 {
                            let mut args = [0u64; 6];
                            for a in &mut args {
                                let r = next();
                                *a = if round % 2 == 0 { interesting[(r % 13) as usize] } else { r };
                            }
                            let mut vm = Vm::new(&[0, 1, 2, 3]);
                            vm.stopped = vec![false, r_bool(next()), r_bool(next()), true];
                            if round % 3 != 0 {
                                vm.guest_words = vec![(args[0], next())];
                            }
                            vm.clock = StealClock { run_delay: next(), extra_ns: next() };
                            let sstatus = next();
                            let exit = ctx.ecall(&EcallRegs::new(e, fid, args, sstatus), &mut vm);
                            let i = match exit {
                                SbiExit::Continue { error, .. } => {
                                    assert!((-6..=0).contains(&error), "{e:#x}/{fid:#x}: {error}");
                                    0
                                }
                                SbiExit::Forward(f) => {
                                    assert_eq!((f.extension_id, f.function_id), (e, fid));
                                    assert_eq!(ctx.complete_forward([1, 2]).map(|r| r.sepc_advance), Some(4));
                                    1
                                }
                                SbiExit::SystemEvent { ty, .. } => {
                                    assert!(ty == 1 || ty == 2);
                                    2
                                }
                                SbiExit::Redirect(_) => 3,
                                SbiExit::Fail(_) => 4,
                            };
                            counts[i] += 1;
                            // STA shared memory stays aligned.
                            assert!(ctx.sta().shmem().map_or(true, |s| s % 64 == 0));
                        }
                    }
                }
            }
        }
        // Every kind of exit was reached except a failure (the mock's timer
        // and IPIs do not fail here).
        assert!(counts[..4].iter().all(|&c| c > 0), "{counts:?}");
        assert_eq!(counts[4], 0);

        // Every ONE_REG id shape: defined answers.
        let mut ctx = SbiContext::new(CFG);
        for _ in 0..100_000 {
            let r = next();
            let id = KVM_REG_RISCV | (r & 0x00ff_ffff_00ff_ffff) | ((r >> 40) & 1) * KVM_REG_RISCV_SBI_EXT
                | ((r >> 41) & 1) * KVM_REG_RISCV_SBI_STATE;
            let v = next() & [1, 3, u64::MAX][(r % 3) as usize];
            let _ = (ctx.get_ext_reg(id), ctx.get_state_reg(id));
            let _ = (ctx.set_ext_reg(id, r & 1 << 60 != 0, || Ok(v)), ctx.set_state_reg(id, || Ok(v)));
            assert!(ctx.sta().shmem().map_or(true, |s| s % 64 == 0));
        }
    }

    fn r_bool(r: u64) -> bool {
        r & 1 != 0
    }
}
