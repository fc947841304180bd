// SPDX-License-Identifier: GPL-2.0

//! The riscv64 host facts ONE_REG needs (kernel glue for [`onereg`]):
//! which ISA extensions the host has, its `satp` mode, timebase and
//! cache-block sizes, read once by [`probe`] at module load, and the host
//! time (`get_cycles64()`).
//!
//! [`onereg`]: super::onereg

use super::isa::{self, ExtSet, HostIsa};
use super::onereg::HostFacts;
use kernel::{bindings, ffi, sync::SetOnce};

// The `sbi_get_m*id()` functions (`arch/riscv/kernel/sbi.c`, exported
// GPL) are not in the kernel's Rust bindings (`asm/sbi.h` is not part of
// `bindings_helper.h`). Declared here by hand; this should become a
// bindings patch (`#include <asm/sbi.h>` in `rust/bindings/bindings_helper.h`).
extern "C" {
    fn sbi_get_mvendorid() -> ffi::c_long;
    fn sbi_get_marchid() -> ffi::c_long;
    fn sbi_get_mimpid() -> ffi::c_long;
}

// `isa::HOST_EXT` copies the kernel-internal `RISCV_ISA_EXT_*` numbers of
// `asm/hwcap.h`; bindgen exports the multi-letter ones (the single letters
// are character expressions it skips), so they are checked here.
const _: () = {
    assert!(isa::HOST_EXT[isa::id::SVPBMT] == bindings::RISCV_ISA_EXT_SVPBMT);
    assert!(isa::HOST_EXT[isa::id::SSTC] == bindings::RISCV_ISA_EXT_SSTC);
    assert!(isa::HOST_EXT[isa::id::SVINVAL] == bindings::RISCV_ISA_EXT_SVINVAL);
    assert!(isa::HOST_EXT[isa::id::ZIHINTPAUSE] == bindings::RISCV_ISA_EXT_ZIHINTPAUSE);
    assert!(isa::HOST_EXT[isa::id::ZICBOM] == bindings::RISCV_ISA_EXT_ZICBOM);
    assert!(isa::HOST_EXT[isa::id::ZICBOZ] == bindings::RISCV_ISA_EXT_ZICBOZ);
    assert!(isa::HOST_EXT[isa::id::ZBB] == bindings::RISCV_ISA_EXT_ZBB);
    assert!(isa::HOST_EXT[isa::id::SSAIA] == bindings::RISCV_ISA_EXT_SSAIA);
    assert!(isa::HOST_EXT[isa::id::SVNAPOT] == bindings::RISCV_ISA_EXT_SVNAPOT);
    assert!(isa::HOST_EXT[isa::id::ZBA] == bindings::RISCV_ISA_EXT_ZBA);
    assert!(isa::HOST_EXT[isa::id::ZBS] == bindings::RISCV_ISA_EXT_ZBS);
    assert!(isa::HOST_EXT[isa::id::ZICNTR] == bindings::RISCV_ISA_EXT_ZICNTR);
    assert!(isa::HOST_EXT[isa::id::ZICSR] == bindings::RISCV_ISA_EXT_ZICSR);
    assert!(isa::HOST_EXT[isa::id::ZIFENCEI] == bindings::RISCV_ISA_EXT_ZIFENCEI);
    assert!(isa::HOST_EXT[isa::id::ZIHPM] == bindings::RISCV_ISA_EXT_ZIHPM);
    assert!(isa::HOST_EXT[isa::id::SMSTATEEN] == bindings::RISCV_ISA_EXT_SMSTATEEN);
    assert!(isa::HOST_EXT[isa::id::ZICOND] == bindings::RISCV_ISA_EXT_ZICOND);
    assert!(isa::HOST_EXT[isa::id::ZBC] == bindings::RISCV_ISA_EXT_ZBC);
    assert!(isa::HOST_EXT[isa::id::ZBKB] == bindings::RISCV_ISA_EXT_ZBKB);
    assert!(isa::HOST_EXT[isa::id::ZBKC] == bindings::RISCV_ISA_EXT_ZBKC);
    assert!(isa::HOST_EXT[isa::id::ZBKX] == bindings::RISCV_ISA_EXT_ZBKX);
    assert!(isa::HOST_EXT[isa::id::ZKND] == bindings::RISCV_ISA_EXT_ZKND);
    assert!(isa::HOST_EXT[isa::id::ZKNE] == bindings::RISCV_ISA_EXT_ZKNE);
    assert!(isa::HOST_EXT[isa::id::ZKNH] == bindings::RISCV_ISA_EXT_ZKNH);
    assert!(isa::HOST_EXT[isa::id::ZKR] == bindings::RISCV_ISA_EXT_ZKR);
    assert!(isa::HOST_EXT[isa::id::ZKSED] == bindings::RISCV_ISA_EXT_ZKSED);
    assert!(isa::HOST_EXT[isa::id::ZKSH] == bindings::RISCV_ISA_EXT_ZKSH);
    assert!(isa::HOST_EXT[isa::id::ZKT] == bindings::RISCV_ISA_EXT_ZKT);
    assert!(isa::HOST_EXT[isa::id::ZVBB] == bindings::RISCV_ISA_EXT_ZVBB);
    assert!(isa::HOST_EXT[isa::id::ZVBC] == bindings::RISCV_ISA_EXT_ZVBC);
    assert!(isa::HOST_EXT[isa::id::ZVKB] == bindings::RISCV_ISA_EXT_ZVKB);
    assert!(isa::HOST_EXT[isa::id::ZVKG] == bindings::RISCV_ISA_EXT_ZVKG);
    assert!(isa::HOST_EXT[isa::id::ZVKNED] == bindings::RISCV_ISA_EXT_ZVKNED);
    assert!(isa::HOST_EXT[isa::id::ZVKNHA] == bindings::RISCV_ISA_EXT_ZVKNHA);
    assert!(isa::HOST_EXT[isa::id::ZVKNHB] == bindings::RISCV_ISA_EXT_ZVKNHB);
    assert!(isa::HOST_EXT[isa::id::ZVKSED] == bindings::RISCV_ISA_EXT_ZVKSED);
    assert!(isa::HOST_EXT[isa::id::ZVKSH] == bindings::RISCV_ISA_EXT_ZVKSH);
    assert!(isa::HOST_EXT[isa::id::ZVKT] == bindings::RISCV_ISA_EXT_ZVKT);
    assert!(isa::HOST_EXT[isa::id::ZFH] == bindings::RISCV_ISA_EXT_ZFH);
    assert!(isa::HOST_EXT[isa::id::ZFHMIN] == bindings::RISCV_ISA_EXT_ZFHMIN);
    assert!(isa::HOST_EXT[isa::id::ZIHINTNTL] == bindings::RISCV_ISA_EXT_ZIHINTNTL);
    assert!(isa::HOST_EXT[isa::id::ZVFH] == bindings::RISCV_ISA_EXT_ZVFH);
    assert!(isa::HOST_EXT[isa::id::ZVFHMIN] == bindings::RISCV_ISA_EXT_ZVFHMIN);
    assert!(isa::HOST_EXT[isa::id::ZFA] == bindings::RISCV_ISA_EXT_ZFA);
    assert!(isa::HOST_EXT[isa::id::ZTSO] == bindings::RISCV_ISA_EXT_ZTSO);
    assert!(isa::HOST_EXT[isa::id::ZACAS] == bindings::RISCV_ISA_EXT_ZACAS);
    assert!(isa::HOST_EXT[isa::id::SSCOFPMF] == bindings::RISCV_ISA_EXT_SSCOFPMF);
    assert!(isa::HOST_EXT[isa::id::ZIMOP] == bindings::RISCV_ISA_EXT_ZIMOP);
    assert!(isa::HOST_EXT[isa::id::ZCA] == bindings::RISCV_ISA_EXT_ZCA);
    assert!(isa::HOST_EXT[isa::id::ZCB] == bindings::RISCV_ISA_EXT_ZCB);
    assert!(isa::HOST_EXT[isa::id::ZCD] == bindings::RISCV_ISA_EXT_ZCD);
    assert!(isa::HOST_EXT[isa::id::ZCF] == bindings::RISCV_ISA_EXT_ZCF);
    assert!(isa::HOST_EXT[isa::id::ZCMOP] == bindings::RISCV_ISA_EXT_ZCMOP);
    assert!(isa::HOST_EXT[isa::id::ZAWRS] == bindings::RISCV_ISA_EXT_ZAWRS);
    assert!(isa::HOST_EXT[isa::id::SMNPM] == bindings::RISCV_ISA_EXT_SSNPM);
    assert!(isa::HOST_EXT[isa::id::SSNPM] == bindings::RISCV_ISA_EXT_SSNPM);
    assert!(isa::HOST_EXT[isa::id::SVADE] == bindings::RISCV_ISA_EXT_SVADE);
    assert!(isa::HOST_EXT[isa::id::SVADU] == bindings::RISCV_ISA_EXT_SVADU);
    assert!(isa::HOST_EXT[isa::id::SVVPTC] == bindings::RISCV_ISA_EXT_SVVPTC);
    assert!(isa::HOST_EXT[isa::id::ZABHA] == bindings::RISCV_ISA_EXT_ZABHA);
    assert!(isa::HOST_EXT[isa::id::ZICCRSE] == bindings::RISCV_ISA_EXT_ZICCRSE);
    assert!(isa::HOST_EXT[isa::id::ZAAMO] == bindings::RISCV_ISA_EXT_ZAAMO);
    assert!(isa::HOST_EXT[isa::id::ZALRSC] == bindings::RISCV_ISA_EXT_ZALRSC);
    assert!(isa::HOST_EXT[isa::id::ZICBOP] == bindings::RISCV_ISA_EXT_ZICBOP);
    assert!(isa::HOST_EXT[isa::id::ZFBFMIN] == bindings::RISCV_ISA_EXT_ZFBFMIN);
    assert!(isa::HOST_EXT[isa::id::ZVFBFMIN] == bindings::RISCV_ISA_EXT_ZVFBFMIN);
    assert!(isa::HOST_EXT[isa::id::ZVFBFWMA] == bindings::RISCV_ISA_EXT_ZVFBFWMA);
    assert!(isa::HOST_EXT[isa::id::ZCLSD] == bindings::RISCV_ISA_EXT_ZCLSD);
    assert!(isa::HOST_EXT[isa::id::ZILSD] == bindings::RISCV_ISA_EXT_ZILSD);
    assert!(isa::HOST_EXT[isa::id::ZALASR] == bindings::RISCV_ISA_EXT_ZALASR);
    assert!(isa::HOST_EXT[isa::id::ZICFILP] == bindings::RISCV_ISA_EXT_ZICFILP);
    assert!(isa::HOST_EXT[isa::id::ZICFISS] == bindings::RISCV_ISA_EXT_ZICFISS);
    assert!(isa::HOST_EXT.len() == isa::ISA_EXT_MAX);
    assert!(bindings::RISCV_ISA_EXT_BASE == 26);
};

/// The facts, once [`probe`] ran.
static FACTS: SetOnce<HostFacts> = SetOnce::new();

/// The host's machine ids (`sbi_get_mvendorid()`, `_marchid()`,
/// `_mimpid()`), what a new vCPU starts with.
static MACHINE_IDS: SetOnce<[u64; 3]> = SetOnce::new();

/// Whether the host has extension `n` (`RISCV_ISA_EXT_*`).
fn host_has(n: u32) -> bool {
    // SAFETY: A null bitmap selects the host-wide ISA bitmap, set up at boot
    // and only read here; `n` is below `RISCV_ISA_EXT_MAX` (the function
    // checks it too).
    unsafe { bindings::__riscv_isa_extension_available(core::ptr::null(), n) }
}

/// Reads the host's facts; called once from `Host::probe()`, before
/// `/dev/kvm` exists.
pub(crate) fn probe(satp_mode: u64) {
    let mut exts = ExtSet::EMPTY;
    for (ext, &n) in isa::HOST_EXT.iter().enumerate() {
        // V is not offered: kvm_rs has no vector context switch (and no
        // access to `get/put_cpu_vector_context()`, exported for `kvm`
        // only), so a vCPU never gets V and has no vector registers.
        if ext != isa::id::V && host_has(n) {
            exts.insert(ext);
        }
    }
    // `unsigned long` values are 64 bits wide on riscv64: the `as u64`
    // casts below are lossless.
    // SAFETY: A null bitmap selects the host-wide ISA bitmap.
    let base = unsafe { bindings::riscv_isa_extension_base(core::ptr::null()) };
    let v_bit = 1u64 << isa::HOST_EXT[isa::id::V];
    // SAFETY: These variables are written during early boot (timer and
    // cache-block probing, before any module loads) and only read after.
    let (timebase, cbom, cboz, cbop) = unsafe {
        (
            core::ptr::addr_of!(bindings::riscv_timebase).read(),
            core::ptr::addr_of!(bindings::riscv_cbom_block_size).read(),
            core::ptr::addr_of!(bindings::riscv_cboz_block_size).read(),
            core::ptr::addr_of!(bindings::riscv_cbop_block_size).read(),
        )
    };
    let facts = HostFacts {
        isa: HostIsa { exts, base: base as u64 & !v_bit, v_user_allowed: false },
        satp_mode,
        timebase: timebase as u64,
        cbom_block_size: u64::from(cbom),
        cboz_block_size: u64::from(cboz),
        cbop_block_size: u64::from(cbop),
    };
    // A second probe (never: `probe` runs once per module load) keeps the
    // first facts.
    let _ = FACTS.populate(facts);
    // SAFETY: SBI base calls with no arguments; the SBI implementation is
    // there (the kernel booted through it) and the calls have no side
    // effects.
    let ids = unsafe { [sbi_get_mvendorid(), sbi_get_marchid(), sbi_get_mimpid()] };
    // The ids are `unsigned long` values returned as `long`.
    let _ = MACHINE_IDS.populate(ids.map(|v| v as u64));
}

/// The host's facts (all empty before [`probe`], which runs first).
pub(crate) fn facts() -> HostFacts {
    FACTS.copy().unwrap_or_default()
}

/// `mvendorid`, `marchid`, `mimpid` of the host.
pub(crate) fn machine_ids() -> [u64; 3] {
    MACHINE_IDS.copy().unwrap_or_default()
}

/// CSR number of `time`.
const CSR_TIME: u32 = 0xc01;

/// `get_cycles64()`: the host's `time` CSR.
pub(crate) fn cycles() -> u64 {
    let t: u64;
    // SAFETY: Reading `time` has no side effects; the kernel runs with
    // `scounteren`/`mcounteren` letting S-mode read it (the clocksource uses
    // it).
    unsafe {
        core::arch::asm!("csrr {0}, {csr}", out(reg) t, csr = const CSR_TIME,
                         options(nomem, nostack, preserves_flags));
    }
    t
}
