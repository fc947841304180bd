// SPDX-License-Identifier: GPL-2.0

//! The register state of a riscv64 vCPU: what the world switch loads into
//! the hart before entering the guest and saves back when the guest exits,
//! and what `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG` read and write.
//!
//! Upstream keeps the same state in `vcpu->arch.guest_context` (`struct
//! kvm_cpu_context`), `vcpu->arch.guest_csr` (`struct kvm_vcpu_csr`) and
//! `vcpu->arch.timer`. The layout here is kvm_rs's own:
//!
//! - [`GuestCore`] is `#[repr(C)]` because the world-switch assembly reads
//!   and writes it by offset (the offsets are exported as constants so the
//!   assembly and the struct cannot drift apart);
//! - [`GuestCsrs`] are the VS-level CSRs, swapped by Rust code around the
//!   assembly (`csrr`/`csrw` of the `vs*` CSRs, `hvip`, `henvcfg`, ...);
//! - [`GuestFp`] is loaded lazily (when `sstatus.FS` says the guest used
//!   the FPU), `#[repr(C)]` for the save/restore assembly.
//!
//! ONE_REG mapping (`arch/riscv/include/uapi/asm/kvm.h`):
//!
//! - `KVM_REG_RISCV_CORE` index 0 is `pc` ([`GuestCore::sepc`]), indices
//!   1..=31 are `x1`..`x31` ([`GuestCore::x`]), index 32 is `mode`
//!   (`KVM_RISCV_MODE_S` = 1 when [`SSTATUS_SPP`] is set in
//!   [`GuestCore::sstatus`], else `KVM_RISCV_MODE_U` = 0);
//! - `KVM_REG_RISCV_CSR` general registers are `struct kvm_riscv_csr`
//!   (`sstatus, sie, stvec, sscratch, sepc, scause, stval, sip, satp,
//!   scounteren, senvcfg`) in that order, i.e. the fields of
//!   [`GuestCsrs`] (`sip` is read from and written to `hvip` as upstream:
//!   the VS-level bits shifted by one);
//! - `KVM_REG_RISCV_FP_F`/`_FP_D`: [`GuestFp`].

// The world switch and ONE_REG code are the users; some fields are only
// read by one of them so far.
#![allow(dead_code)]

/// `sstatus.SPP`: the privilege the guest returns to with `sret` (1 = S).
pub(crate) const SSTATUS_SPP: u64 = 1 << 8;
/// `sstatus.SPIE`.
pub(crate) const SSTATUS_SPIE: u64 = 1 << 5;
/// `sstatus.FS` (2 bits).
pub(crate) const SSTATUS_FS: u64 = 3 << 13;
/// `sstatus.FS` = Initial.
pub(crate) const SSTATUS_FS_INITIAL: u64 = 1 << 13;
/// `sstatus.FS` = Clean.
pub(crate) const SSTATUS_FS_CLEAN: u64 = 2 << 13;
/// `sstatus.FS` = Dirty.
pub(crate) const SSTATUS_FS_DIRTY: u64 = 3 << 13;
/// `sstatus.VS` (vector state, 2 bits).
pub(crate) const SSTATUS_VS: u64 = 3 << 9;

/// `hstatus.SPV`: the trap came from a virtualized mode (V=1).
pub(crate) const HSTATUS_SPV: u64 = 1 << 7;
/// `hstatus.SPVP`: the guest was in VS-mode (not VU) when it trapped, and
/// what `hlv`/`hsv` use as their effective privilege.
pub(crate) const HSTATUS_SPVP: u64 = 1 << 8;
/// `hstatus.VTW`: `wfi` in VS-mode traps (virtual instruction).
pub(crate) const HSTATUS_VTW: u64 = 1 << 21;
/// `hstatus.HU`: `hlv`/`hsv` allowed in U-mode (kvm_rs never sets it).
pub(crate) const HSTATUS_HU: u64 = 1 << 9;
/// `hstatus.VSXL` field (2 bits at 32).
pub(crate) const HSTATUS_VSXL: u64 = 3 << 32;
/// `hstatus.VSXL` = 64-bit.
pub(crate) const HSTATUS_VSXL_RV64: u64 = 2 << 32;

/// The guest's general-purpose registers and trap state, as the world
/// switch sees them.
///
/// Invariant kept by every writer: `x[0]` is 0 (the assembly never loads
/// it, and ONE_REG has no id for it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GuestCore {
    /// `x0`..`x31`; `x[0]` unused (always 0).
    pub(crate) x: [u64; 32],
    /// The guest `pc`: written to `sepc` before `sret` into the guest, read
    /// back from `sepc` on a trap.
    pub(crate) sepc: u64,
    /// The `sstatus` the guest is entered with (`SPP` = guest mode, `SPIE`,
    /// `FS`/`VS` as the guest left them); updated from `sstatus` on a trap.
    pub(crate) sstatus: u64,
    /// The `hstatus` the guest is entered with (`SPV` set, `SPVP` = guest
    /// mode, `VTW`, `VSXL`); updated from `hstatus` on a trap.
    pub(crate) hstatus: u64,
}

/// Byte offset of `x[i]` in [`GuestCore`], for the world-switch assembly.
pub(crate) const fn core_x_offset(i: usize) -> usize {
    core::mem::offset_of!(GuestCore, x) + i * 8
}
/// Byte offset of [`GuestCore::sepc`].
pub(crate) const CORE_SEPC: usize = core::mem::offset_of!(GuestCore, sepc);
/// Byte offset of [`GuestCore::sstatus`].
pub(crate) const CORE_SSTATUS: usize = core::mem::offset_of!(GuestCore, sstatus);
/// Byte offset of [`GuestCore::hstatus`].
pub(crate) const CORE_HSTATUS: usize = core::mem::offset_of!(GuestCore, hstatus);
// A plain `const` assertion (rather than `kernel::static_assert!`) so that
// this file also builds on the host, where `onereg.rs` is tested.
const _: () = assert!(CORE_SEPC == 256 && CORE_SSTATUS == 264 && CORE_HSTATUS == 272);

impl GuestCore {
    /// The state of a vCPU after creation or reset: everything 0, guest in
    /// S-mode with interrupts enabled on `sret` (`SPP | SPIE`), `hstatus`
    /// for a 64-bit VS-mode with `SPV` and `SPVP` set (upstream's
    /// `kvm_riscv_vcpu_context_reset()`; `VTW` is set by the world switch).
    pub(crate) fn reset() -> GuestCore {
        GuestCore {
            x: [0; 32],
            sepc: 0,
            sstatus: SSTATUS_SPP | SSTATUS_SPIE,
            hstatus: HSTATUS_VSXL_RV64 | HSTATUS_SPV | HSTATUS_SPVP,
        }
    }

    /// ONE_REG `mode`: `KVM_RISCV_MODE_S` (1) or `KVM_RISCV_MODE_U` (0).
    pub(crate) fn mode(&self) -> u64 {
        u64::from(self.sstatus & SSTATUS_SPP != 0)
    }

    /// Sets the guest mode from a mode value; `false` for anything but U (0)
    /// or S (1).
    ///
    /// ONE_REG does not use this: upstream's `KVM_REG_RISCV_CORE_REG(mode)`
    /// takes any value other than `KVM_RISCV_MODE_S` as U-mode without an
    /// error (see `onereg.rs`).
    pub(crate) fn set_mode(&mut self, mode: u64) -> bool {
        match mode {
            1 => self.sstatus |= SSTATUS_SPP,
            0 => self.sstatus &= !SSTATUS_SPP,
            _ => return false,
        }
        true
    }
}

/// The guest's VS-level CSRs (upstream's `struct kvm_vcpu_csr`), in the
/// order of `struct kvm_riscv_csr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GuestCsrs {
    /// `vsstatus` (ONE_REG `sstatus`).
    pub(crate) vsstatus: u64,
    /// `vsie` (ONE_REG `sie`).
    pub(crate) vsie: u64,
    /// `vstvec` (ONE_REG `stvec`).
    pub(crate) vstvec: u64,
    /// `vsscratch` (ONE_REG `sscratch`).
    pub(crate) vsscratch: u64,
    /// `vsepc` (ONE_REG `sepc`).
    pub(crate) vsepc: u64,
    /// `vscause` (ONE_REG `scause`).
    pub(crate) vscause: u64,
    /// `vstval` (ONE_REG `stval`).
    pub(crate) vstval: u64,
    /// `hvip`: the VS-level interrupts pending for the guest (ONE_REG
    /// `sip`, shifted as upstream).
    pub(crate) hvip: u64,
    /// `vsatp` (ONE_REG `satp`).
    pub(crate) vsatp: u64,
    /// `scounteren` (loaded into `hcounteren`... as upstream, the guest's
    /// view; ONE_REG `scounteren`).
    pub(crate) scounteren: u64,
    /// `senvcfg` (ONE_REG `senvcfg`).
    pub(crate) senvcfg: u64,
    /// `sstateen0` (ONE_REG `KVM_REG_RISCV_CSR_SMSTATEEN`), when the host
    /// has Smstateen.
    pub(crate) sstateen0: u64,
    /// `ssp`, the shadow-stack pointer (ONE_REG `KVM_REG_RISCV_CSR_ZICFISS`),
    /// when the vCPU has Zicfiss (upstream's `vcpu->arch.zicfiss_csr`).
    pub(crate) ssp: u64,
}

/// The guest's floating-point registers (`struct __riscv_d_ext_state`),
/// `#[repr(C)]` for the save/restore assembly.
///
/// Upstream keeps the F and D states in one union (`union
/// __riscv_fp_state`), and ONE_REG exposes both views of the same bytes:
/// `KVM_REG_RISCV_FP_D` reads `f[i]` and `fcsr` below, `KVM_REG_RISCV_FP_F`
/// reads the 32-bit words of the same memory ([`GuestFp::f_word`]: F's
/// `f[i]` is word `i`, F's `fcsr` is word 32, i.e. the low half of
/// `f[16]`). A guest with F but not D must therefore be saved and restored
/// in that layout (`fsw f<i>` at `4 * i`, `fcsr` at 128), as upstream's
/// `__kvm_riscv_fp_f_save()` does; a guest with D uses `fsd f<i>` at `8 *
/// i` and `fcsr` at 256.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GuestFp {
    /// `f0`..`f31` (the D extension's 64-bit registers; F uses the low 32
    /// bits).
    pub(crate) f: [u64; 32],
    /// `fcsr`.
    pub(crate) fcsr: u32,
}

impl GuestFp {
    /// Number of 32-bit words of the F view (`f[0..32]` and `fcsr`).
    pub(crate) const F_WORDS: usize = 33;

    /// Word `i` (below [`GuestFp::F_WORDS`]) of the F view; `None` past it.
    pub(crate) fn f_word(&self, i: usize) -> Option<u32> {
        let d = self.f.get(i / 2)?;
        if i >= Self::F_WORDS {
            return None;
        }
        // Little-endian: the even word is the low half.
        Some((d >> (32 * (i % 2))) as u32)
    }

    /// Writes word `i` of the F view; `false` past it.
    pub(crate) fn set_f_word(&mut self, i: usize, v: u32) -> bool {
        if i >= Self::F_WORDS {
            return false;
        }
        let Some(d) = self.f.get_mut(i / 2) else {
            return false;
        };
        let shift = 32 * (i % 2);
        *d = (*d & !(0xffff_ffffu64 << shift)) | (u64::from(v) << shift);
        true
    }
}

/// The guest timer of one vCPU (upstream's `struct kvm_vcpu_timer`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GuestTimer {
    /// The compare value the guest programmed (SBI `set_timer` or
    /// `vstimecmp` with Sstc), in guest time; `u64::MAX` = none.
    pub(crate) next_cycles: u64,
    /// Whether the timer is armed (ONE_REG `state`:
    /// `KVM_RISCV_TIMER_STATE_ON` = 1).
    pub(crate) started: bool,
}

/// Everything the world switch and ONE_REG need of one vCPU's registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VcpuRegs {
    /// GPRs, `pc`, entry `sstatus`/`hstatus`.
    pub(crate) core: GuestCore,
    /// VS-level CSRs.
    pub(crate) csrs: GuestCsrs,
    /// FP registers.
    pub(crate) fp: GuestFp,
    /// The timer.
    pub(crate) timer: GuestTimer,
}

impl VcpuRegs {
    /// The registers of a new or reset vCPU.
    pub(crate) fn reset() -> VcpuRegs {
        VcpuRegs {
            core: GuestCore::reset(),
            csrs: GuestCsrs::default(),
            fp: GuestFp::default(),
            timer: GuestTimer { next_cycles: u64::MAX, started: false },
        }
    }
}
