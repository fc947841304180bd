// SPDX-License-Identifier: GPL-2.0

//! The riscv64 world switch: the assembly that enters a VS-mode guest with
//! `sret` and comes back on its next trap (upstream's
//! `arch/riscv/kvm/vcpu_switch.S`, `__kvm_riscv_switch_to`), the lazy FP
//! save/restore (`__kvm_riscv_fp_d_save/restore`) and the trap-catching
//! unprivileged guest reads (`kvm_riscv_vcpu_unpriv_read()`).
//!
//! # The switch
//!
//! [`switch_to`] is called by the run loop with interrupts off, `hstatus`,
//! `scounteren`, `senvcfg`, `hgatp` and the VS CSRs already holding the
//! guest's values (`run.rs`). It saves the host's callee-saved registers
//! (`ra`, `sp`, `gp`, `tp`, `s0`-`s11`; the caller-saved ones are the
//! compiler's business, as for any `extern "C"` call) in [`HostSave`],
//! swaps `sstatus` (the guest's has `SPP`, `SPIE`, `FS`), `stvec` (pointed
//! at the return path) and `sscratch` (the [`HostSave`] pointer), writes
//! `sepc`, loads the guest's `x1`-`x31` from [`GuestCore`] and `sret`s.
//! Host interrupts stay off until then (`sstatus.SIE` is 0 in both
//! values); once `V=1` every HS interrupt traps to the return path.
//!
//! Any trap from the guest lands on `kvm_rs_riscv_switch_return`
//! (`stvec`, direct mode, 4-byte aligned): it swaps the guest's `a0` with
//! `sscratch` to find [`HostSave`], saves the guest's `x1`-`x31`, `sstatus`
//! and `sepc` into [`GuestCore`], restores the host's `stvec`, `sscratch`,
//! `sstatus` (interrupts still off) and callee-saved registers, and
//! returns to the caller, which reads `scause`, `stval`, `htval`, `htinst`.

use super::regs::{
    GuestCore,
    GuestFp,
    CORE_SEPC,
    CORE_SSTATUS, //
};

/// The host state the switch saves while the guest runs, and the guest
/// context it runs.
///
/// Invariant (while [`switch_to`] runs): `guest` points to a valid,
/// exclusively borrowed [`GuestCore`].
#[repr(C)]
pub(crate) struct HostSave {
    /// `ra`, `sp`, `gp`, `tp`, `s0`-`s11`, in that order.
    gpr: [u64; 16],
    /// The host's `sstatus`.
    sstatus: u64,
    /// The host's `stvec`.
    stvec: u64,
    /// The host's `sscratch`.
    sscratch: u64,
    /// The guest's `t6` during the return path.
    scratch: u64,
    /// The guest context to enter.
    guest: *mut GuestCore,
}

impl HostSave {
    /// An empty save area.
    pub(crate) const fn new() -> HostSave {
        HostSave { gpr: [0; 16], sstatus: 0, stvec: 0, sscratch: 0, scratch: 0, guest: core::ptr::null_mut() }
    }
}

/// Byte offset of host register `i` (`ra`, `sp`, `gp`, `tp`, `s0`-`s11`)
/// in [`HostSave`].
const fn host_gpr(i: usize) -> usize {
    core::mem::offset_of!(HostSave, gpr) + i * 8
}

// SAFETY: The raw pointer is only set and used by `switch_to`, on the
// thread that owns both the save area and the guest context.
unsafe impl Send for HostSave {}

core::arch::global_asm!(
    ".pushsection .text, \"ax\"",
    ".option push",
    ".option norelax",
    ".balign 4",
    ".globl kvm_rs_riscv_switch_to",
    "kvm_rs_riscv_switch_to:",
    "sd ra, {h_ra}(a0)",
    "sd sp, {h_sp}(a0)",
    "sd gp, {h_gp}(a0)",
    "sd tp, {h_tp}(a0)",
    "sd s0, {h_s0}(a0)",
    "sd s1, {h_s1}(a0)",
    "sd s2, {h_s2}(a0)",
    "sd s3, {h_s3}(a0)",
    "sd s4, {h_s4}(a0)",
    "sd s5, {h_s5}(a0)",
    "sd s6, {h_s6}(a0)",
    "sd s7, {h_s7}(a0)",
    "sd s8, {h_s8}(a0)",
    "sd s9, {h_s9}(a0)",
    "sd s10, {h_s10}(a0)",
    "sd s11, {h_s11}(a0)",
    "ld t6, {h_guest}(a0)",
    "ld t0, {g_sstatus}(t6)",
    "lla t1, kvm_rs_riscv_switch_return",
    "ld t2, {g_sepc}(t6)",
    "csrrw t0, sstatus, t0",
    "csrrw t1, stvec, t1",
    "csrw sepc, t2",
    "csrrw t3, sscratch, a0",
    "sd t0, {h_sstatus}(a0)",
    "sd t1, {h_stvec}(a0)",
    "sd t3, {h_sscratch}(a0)",
    "ld ra, 8(t6)",
    "ld sp, 16(t6)",
    "ld gp, 24(t6)",
    "ld tp, 32(t6)",
    "ld t0, 40(t6)",
    "ld t1, 48(t6)",
    "ld t2, 56(t6)",
    "ld s0, 64(t6)",
    "ld s1, 72(t6)",
    "ld a0, 80(t6)",
    "ld a1, 88(t6)",
    "ld a2, 96(t6)",
    "ld a3, 104(t6)",
    "ld a4, 112(t6)",
    "ld a5, 120(t6)",
    "ld a6, 128(t6)",
    "ld a7, 136(t6)",
    "ld s2, 144(t6)",
    "ld s3, 152(t6)",
    "ld s4, 160(t6)",
    "ld s5, 168(t6)",
    "ld s6, 176(t6)",
    "ld s7, 184(t6)",
    "ld s8, 192(t6)",
    "ld s9, 200(t6)",
    "ld s10, 208(t6)",
    "ld s11, 216(t6)",
    "ld t3, 224(t6)",
    "ld t4, 232(t6)",
    "ld t5, 240(t6)",
    "ld t6, 248(t6)",
    "sret",
    ".balign 4",
    "kvm_rs_riscv_switch_return:",
    "csrrw a0, sscratch, a0",
    "sd t6, {h_scratch}(a0)",
    "ld t6, {h_guest}(a0)",
    "sd ra, 8(t6)",
    "sd sp, 16(t6)",
    "sd gp, 24(t6)",
    "sd tp, 32(t6)",
    "sd t0, 40(t6)",
    "sd t1, 48(t6)",
    "sd t2, 56(t6)",
    "sd s0, 64(t6)",
    "sd s1, 72(t6)",
    "sd a1, 88(t6)",
    "sd a2, 96(t6)",
    "sd a3, 104(t6)",
    "sd a4, 112(t6)",
    "sd a5, 120(t6)",
    "sd a6, 128(t6)",
    "sd a7, 136(t6)",
    "sd s2, 144(t6)",
    "sd s3, 152(t6)",
    "sd s4, 160(t6)",
    "sd s5, 168(t6)",
    "sd s6, 176(t6)",
    "sd s7, 184(t6)",
    "sd s8, 192(t6)",
    "sd s9, 200(t6)",
    "sd s10, 208(t6)",
    "sd s11, 216(t6)",
    "sd t3, 224(t6)",
    "sd t4, 232(t6)",
    "sd t5, 240(t6)",
    "ld t5, {h_scratch}(a0)",
    "sd t5, 248(t6)",
    "ld t0, {h_stvec}(a0)",
    "ld t1, {h_sscratch}(a0)",
    "ld t2, {h_sstatus}(a0)",
    "csrrw t1, sscratch, t1",
    "csrr t3, sepc",
    "csrw stvec, t0",
    "csrrw t2, sstatus, t2",
    "sd t1, 80(t6)",
    "sd t2, {g_sstatus}(t6)",
    "sd t3, {g_sepc}(t6)",
    "ld ra, {h_ra}(a0)",
    "ld sp, {h_sp}(a0)",
    "ld gp, {h_gp}(a0)",
    "ld tp, {h_tp}(a0)",
    "ld s0, {h_s0}(a0)",
    "ld s1, {h_s1}(a0)",
    "ld s2, {h_s2}(a0)",
    "ld s3, {h_s3}(a0)",
    "ld s4, {h_s4}(a0)",
    "ld s5, {h_s5}(a0)",
    "ld s6, {h_s6}(a0)",
    "ld s7, {h_s7}(a0)",
    "ld s8, {h_s8}(a0)",
    "ld s9, {h_s9}(a0)",
    "ld s10, {h_s10}(a0)",
    "ld s11, {h_s11}(a0)",
    "ret",
    ".option pop",
    ".popsection",
    h_ra = const host_gpr(0),
    h_sp = const host_gpr(1),
    h_gp = const host_gpr(2),
    h_tp = const host_gpr(3),
    h_s0 = const host_gpr(4),
    h_s1 = const host_gpr(5),
    h_s2 = const host_gpr(6),
    h_s3 = const host_gpr(7),
    h_s4 = const host_gpr(8),
    h_s5 = const host_gpr(9),
    h_s6 = const host_gpr(10),
    h_s7 = const host_gpr(11),
    h_s8 = const host_gpr(12),
    h_s9 = const host_gpr(13),
    h_s10 = const host_gpr(14),
    h_s11 = const host_gpr(15),
    h_sstatus = const core::mem::offset_of!(HostSave, sstatus),
    h_stvec = const core::mem::offset_of!(HostSave, stvec),
    h_sscratch = const core::mem::offset_of!(HostSave, sscratch),
    h_scratch = const core::mem::offset_of!(HostSave, scratch),
    h_guest = const core::mem::offset_of!(HostSave, guest),
    g_sstatus = const CORE_SSTATUS,
    g_sepc = const CORE_SEPC,
);

// The assembly addresses `x[i]` of `GuestCore` at `i * 8`.
kernel::static_assert!(super::regs::core_x_offset(0) == 0 && super::regs::core_x_offset(31) == 248);

/// `SR_FS`.
const SR_FS: u64 = 3 << 13;
/// Byte offset of `GuestFp::fcsr`.
const FP_FCSR: usize = core::mem::offset_of!(GuestFp, fcsr);
kernel::static_assert!(FP_FCSR == 256);

core::arch::global_asm!(
    ".pushsection .text, \"ax\"",
    ".option push",
    ".option arch, +d",
    ".balign 4",
    ".globl kvm_rs_riscv_fp_d_save",
    "kvm_rs_riscv_fp_d_save:",
    "csrr t2, sstatus",
    "li t1, {fs}",
    "csrs sstatus, t1",
    "frcsr t0",
    "fsd f0, 0(a0)",
    "fsd f1, 8(a0)",
    "fsd f2, 16(a0)",
    "fsd f3, 24(a0)",
    "fsd f4, 32(a0)",
    "fsd f5, 40(a0)",
    "fsd f6, 48(a0)",
    "fsd f7, 56(a0)",
    "fsd f8, 64(a0)",
    "fsd f9, 72(a0)",
    "fsd f10, 80(a0)",
    "fsd f11, 88(a0)",
    "fsd f12, 96(a0)",
    "fsd f13, 104(a0)",
    "fsd f14, 112(a0)",
    "fsd f15, 120(a0)",
    "fsd f16, 128(a0)",
    "fsd f17, 136(a0)",
    "fsd f18, 144(a0)",
    "fsd f19, 152(a0)",
    "fsd f20, 160(a0)",
    "fsd f21, 168(a0)",
    "fsd f22, 176(a0)",
    "fsd f23, 184(a0)",
    "fsd f24, 192(a0)",
    "fsd f25, 200(a0)",
    "fsd f26, 208(a0)",
    "fsd f27, 216(a0)",
    "fsd f28, 224(a0)",
    "fsd f29, 232(a0)",
    "fsd f30, 240(a0)",
    "fsd f31, 248(a0)",
    "sw t0, {fcsr}(a0)",
    "csrw sstatus, t2",
    "ret",
    ".balign 4",
    ".globl kvm_rs_riscv_fp_d_restore",
    "kvm_rs_riscv_fp_d_restore:",
    "csrr t2, sstatus",
    "li t1, {fs}",
    "lw t0, {fcsr}(a0)",
    "csrs sstatus, t1",
    "fld f0, 0(a0)",
    "fld f1, 8(a0)",
    "fld f2, 16(a0)",
    "fld f3, 24(a0)",
    "fld f4, 32(a0)",
    "fld f5, 40(a0)",
    "fld f6, 48(a0)",
    "fld f7, 56(a0)",
    "fld f8, 64(a0)",
    "fld f9, 72(a0)",
    "fld f10, 80(a0)",
    "fld f11, 88(a0)",
    "fld f12, 96(a0)",
    "fld f13, 104(a0)",
    "fld f14, 112(a0)",
    "fld f15, 120(a0)",
    "fld f16, 128(a0)",
    "fld f17, 136(a0)",
    "fld f18, 144(a0)",
    "fld f19, 152(a0)",
    "fld f20, 160(a0)",
    "fld f21, 168(a0)",
    "fld f22, 176(a0)",
    "fld f23, 184(a0)",
    "fld f24, 192(a0)",
    "fld f25, 200(a0)",
    "fld f26, 208(a0)",
    "fld f27, 216(a0)",
    "fld f28, 224(a0)",
    "fld f29, 232(a0)",
    "fld f30, 240(a0)",
    "fld f31, 248(a0)",
    "fscsr t0",
    "csrw sstatus, t2",
    "ret",
    ".option pop",
    ".popsection",
    fs = const SR_FS,
    fcsr = const FP_FCSR,
);

/// What a trap of an unprivileged guest read left (`struct kvm_cpu_trap`);
/// `scause` 0 = no trap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UnprivTrap {
    /// `sepc` of the trapping instruction.
    pub(crate) sepc: u64,
    /// `scause`.
    pub(crate) scause: u64,
    /// `stval`.
    pub(crate) stval: u64,
    /// `htval`.
    pub(crate) htval: u64,
    /// `htinst`.
    pub(crate) htinst: u64,
}

core::arch::global_asm!(
    ".pushsection .text, \"ax\"",
    ".option push",
    ".option norvc",
    ".balign 4",
    ".globl kvm_rs_riscv_hlvx_hu",
    "kvm_rs_riscv_hlvx_hu:",
    "mv t6, a1",
    // HLVX.HU a0, (a0)
    ".insn r 0x73, 4, 0x32, a0, a0, x3",
    "ret",
    ".balign 4",
    ".globl kvm_rs_riscv_hlv_d",
    "kvm_rs_riscv_hlv_d:",
    "mv t6, a1",
    // HLV.D a0, (a0)
    ".insn r 0x73, 4, 0x36, a0, a0, x0",
    "ret",
    ".balign 4",
    ".globl kvm_rs_riscv_unpriv_trap",
    "kvm_rs_riscv_unpriv_trap:",
    "csrr t5, sepc",
    "sd t5, 0(t6)",
    "addi t5, t5, 4",
    "csrw sepc, t5",
    "csrr t5, scause",
    "sd t5, 8(t6)",
    "csrr t5, stval",
    "sd t5, 16(t6)",
    "csrr t5, htval",
    "sd t5, 24(t6)",
    "csrr t5, htinst",
    "sd t5, 32(t6)",
    "sret",
    ".option pop",
    ".popsection",
);

extern "C" {
    fn kvm_rs_riscv_switch_to(host: *mut HostSave);
    fn kvm_rs_riscv_fp_d_save(fp: *mut GuestFp);
    fn kvm_rs_riscv_fp_d_restore(fp: *const GuestFp);
    fn kvm_rs_riscv_hlvx_hu(addr: u64, trap: *mut UnprivTrap) -> u64;
    fn kvm_rs_riscv_hlv_d(addr: u64, trap: *mut UnprivTrap) -> u64;
    fn kvm_rs_riscv_unpriv_trap();
}

/// Runs the guest `core` until its next trap.
///
/// # Safety
///
/// Interrupts are off; `hstatus` (with `SPV` set), `hgatp` and the VS
/// CSRs hold the guest's values; the caller restores them afterwards.
pub(crate) unsafe fn switch_to(host: &mut HostSave, core: &mut GuestCore) {
    host.guest = core;
    // SAFETY: `host.guest` points to `core`, exclusively borrowed for the
    // call (the `HostSave` invariant); the callee follows the C calling
    // convention (it restores every callee-saved register, `gp` and `tp`
    // included) and the caller's conditions make the guest entry sound.
    unsafe { kvm_rs_riscv_switch_to(host) };
    host.guest = core::ptr::null_mut();
}

/// Saves the D registers and `fcsr` into `fp` (sets `sstatus.FS` for the
/// duration).
pub(crate) fn fp_save(fp: &mut GuestFp) {
    // SAFETY: `fp` is valid for writes of a `GuestFp` (`#[repr(C)]`, `fcsr`
    // at 256: checked above); the routine restores `sstatus`.
    unsafe { kvm_rs_riscv_fp_d_save(fp) };
}

/// Loads the D registers and `fcsr` from `fp`.
pub(crate) fn fp_restore(fp: &GuestFp) {
    // SAFETY: As in `fp_save`, for reads.
    unsafe { kvm_rs_riscv_fp_d_restore(fp) };
}

/// `CSR_STVEC`, `CSR_HSTATUS`.
const CSR_STVEC: u32 = 0x105;
const CSR_HSTATUS: u32 = 0x600;

/// Reads guest memory at guest virtual address `addr` as the guest would
/// (`kvm_riscv_vcpu_unpriv_read()`): `HLVX.HU` (instruction fetch rights)
/// if `insn`, else `HLV.D`, with the guest's `hstatus` (its `SPVP` is the
/// privilege of the access). A trap is caught and returned.
pub(crate) fn unpriv_read(guest_hstatus: u64, insn: bool, addr: u64) -> Result<u64, UnprivTrap> {
    let mut trap = UnprivTrap::default();
    let _irqs = kernel::interrupt::local_interrupt_disable();
    let handler = kvm_rs_riscv_unpriv_trap as *const () as usize as u64;
    let (old_hstatus, old_stvec): (u64, u64);
    // SAFETY: Interrupts are off, so no host trap but the one the read may
    // cause reaches `stvec`; the trap handler only writes `trap` (through
    // `t6`) and resumes after the 4-byte read. Both CSRs are restored.
    unsafe {
        core::arch::asm!("csrrw {oh}, {hs}, {gh}", "csrrw {os}, {sv}, {h}",
                         oh = out(reg) old_hstatus, os = out(reg) old_stvec,
                         gh = in(reg) guest_hstatus, h = in(reg) handler,
                         hs = const CSR_HSTATUS, sv = const CSR_STVEC, options(nostack));
    }
    // SAFETY: `trap` is valid for writes; the routines follow the C ABI and
    // only clobber `t5`/`t6` beyond it, which are caller-saved.
    let val = unsafe {
        if insn {
            kvm_rs_riscv_hlvx_hu(addr, &mut trap)
        } else {
            kvm_rs_riscv_hlv_d(addr, &mut trap)
        }
    };
    // SAFETY: Restores what was swapped above.
    unsafe {
        core::arch::asm!("csrw {hs}, {oh}", "csrw {sv}, {os}", oh = in(reg) old_hstatus,
                         os = in(reg) old_stvec, hs = const CSR_HSTATUS, sv = const CSR_STVEC,
                         options(nostack));
    }
    if trap.scause != 0 {
        return Err(trap);
    }
    Ok(val)
}
