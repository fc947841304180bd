// SPDX-License-Identifier: GPL-2.0

//! Instruction decoding for riscv64 guest exits: MMIO loads and stores on a
//! G-stage page fault, and virtual-instruction traps (WFI, WRS.NTO, CSR
//! accesses). Upstream: `arch/riscv/kvm/vcpu_insn.c`
//! (`kvm_riscv_vcpu_mmio_load/store/return`, `kvm_riscv_vcpu_virtual_insn`,
//! `kvm_riscv_vcpu_csr_return`) and `vcpu_exit.c` (`gstage_page_fault`,
//! `kvm_riscv_vcpu_unpriv_read`).
//!
//! Pure logic (`core` only), tested on the host (`make hosttest`) and in
//! KUnit (`kvm_rs_riscv_insn`). Nothing here touches a CSR, guest memory or
//! `kvm_run`: the run loop reads the trap CSRs, calls these functions and
//! applies what they return.
//!
//! # How the run loop uses this file
//!
//! **Guest-page fault** (`scause` 20, 21 or 23, `hstatus.SPV` set):
//!
//! 1. `addr = gstage_fault_addr(htval, stval)`; look up its memslot and
//!    call [`gstage_fault`], which says whether to map the page, emulate
//!    MMIO (the steps below) or redirect an instruction access fault.
//! 2. Find the instruction: `Insn::from_htinst(htinst)`; `None` means
//!    `htinst` holds no transformed instruction (bit 0 clear), so read it
//!    from guest memory at `sepc` with [`fetch_insn`], whose reader does one
//!    `HLVX.HU` with the guest's `hstatus` and a trap catcher. If the read
//!    traps, [`fetch_fault`] says whether to re-enter the guest at the same
//!    `sepc` ([`FetchFault::Retry`]: a G-stage fault, the normal fault path
//!    will map the page) or to redirect the trap into the guest
//!    ([`FetchFault::Redirect`], with `sepc` unchanged).
//! 3. [`mmio_load`] or [`mmio_store`] (the latter reads the source register
//!    through a closure). `Err(e)`: `KVM_RUN` fails with `e.errno()`
//!    (`EOPNOTSUPP` for an encoding upstream does not emulate, `EIO` for a
//!    misaligned address); nothing is injected into the guest, as upstream.
//! 4. `Ok(MmioExit { access, decode })`: keep `decode` in the vCPU (it is
//!    upstream's `vcpu->arch.mmio_decode`), fill `kvm_run.mmio` from
//!    `access` (copy only [`MmioAccess::data`] for a store: upstream writes
//!    `len` bytes). Try the in-kernel MMIO bus (ioeventfd, coalesced MMIO);
//!    if a device took it, copy the loaded bytes into `kvm_run.mmio.data`,
//!    complete at once (step 5) and re-enter the guest. Otherwise exit with
//!    `KVM_EXIT_MMIO`.
//! 5. On the next `KVM_RUN` whose `kvm_run.exit_reason` is `KVM_EXIT_MMIO`
//!    (upstream looks at what userspace left there), call
//!    [`MmioDecode::complete`] with `kvm_run.mmio.is_write` and
//!    `kvm_run.mmio.data`: `Ok(Some(c))` apply `c` (register write, `sepc`
//!    advance); `Ok(None)` already done (a `KVM_RUN` that returned `EINTR`
//!    early); `Err(e)`: `KVM_RUN` fails with `e.errno()`.
//!
//! **Virtual-instruction trap** (`scause` 22, `hstatus.SPV` set):
//!
//! 1. [`VirtualInsn::from_stval`] (`stval` holds the instruction, or 0);
//!    [`VirtualInsn::Fetch`] means: fetch as in step 2 above, then
//!    [`VirtualInsn::decode`].
//! 2. [`VirtualInsn::Illegal`]: inject an illegal-instruction exception
//!    ([`GuestTrap::illegal_insn`]) at the current `sepc`.
//!    [`VirtualInsn::Wfi`]: count `wfi_exit_stat`, halt until runnable
//!    (`kvm_riscv_vcpu_wfi`), `sepc += 4`. [`VirtualInsn::WrsNto`]: count
//!    `wrs_exit_stat`, `kvm_vcpu_on_spin(sstatus.SPP)`, `sepc += 4`.
//! 3. [`VirtualInsn::Csr`]: fill `kvm_run.riscv_csr` from
//!    [`CsrInsn::run_csr`] (upstream does so even when the kernel emulates
//!    it), keep [`CsrInsn::pending`] in the vCPU (`vcpu->arch.csr_decode`),
//!    then act on [`CsrInsn::emulate`]: [`CsrEmulation::InKernel`]: count
//!    `csr_exit_kernel`, apply `pending.complete(value)` at once;
//!    [`CsrEmulation::ExitToUser`]: count `csr_exit_user`, exit with
//!    `KVM_EXIT_RISCV_CSR`; [`CsrEmulation::Illegal`]: inject
//!    `GuestTrap::illegal_insn(csr.insn)`.
//! 4. On the next `KVM_RUN` whose exit reason is `KVM_EXIT_RISCV_CSR`:
//!    [`CsrDecode::complete`] with `kvm_run.riscv_csr.ret_value`.
//!
//! # Differences from upstream
//!
//! Register x0 reads as 0 and is never written. Upstream keeps x0 in a
//! memory slot of the guest context (`kvm_cpu_context.zero`) that
//! `SET_RD` writes when a trapped load targets x0, so a later MMIO store or
//! CSR access with x0 as source would read the stale value there. Every
//! other behaviour (which encodings are emulated, error codes, the quirks
//! noted on [`decode_store`] and [`MmioDecode::complete`]) is upstream's.

// The consumer is the run loop (world switch and KVM_RUN, still to come);
// until it lands only the host tests and KUnit call this.
#![allow(dead_code)]

use crate::kvm::abi::Errno;

/// `EXC_INST_ILLEGAL`: illegal-instruction exception.
pub(crate) const EXC_INST_ILLEGAL: u64 = 2;
/// `EXC_INST_PAGE_FAULT`: instruction page fault.
pub(crate) const EXC_INST_PAGE_FAULT: u64 = 12;
/// `EXC_LOAD_PAGE_FAULT`: load page fault.
pub(crate) const EXC_LOAD_PAGE_FAULT: u64 = 13;
/// `EXC_INST_GUEST_PAGE_FAULT`: instruction guest-page fault.
pub(crate) const EXC_INST_GUEST_PAGE_FAULT: u64 = 20;
/// `EXC_LOAD_GUEST_PAGE_FAULT`: load guest-page fault.
pub(crate) const EXC_LOAD_GUEST_PAGE_FAULT: u64 = 21;
/// `EXC_VIRTUAL_INST_FAULT`: virtual-instruction exception.
pub(crate) const EXC_VIRTUAL_INST_FAULT: u64 = 22;
/// `EXC_STORE_GUEST_PAGE_FAULT`: store/AMO guest-page fault.
pub(crate) const EXC_STORE_GUEST_PAGE_FAULT: u64 = 23;

/// `EOPNOTSUPP`: what `KVM_RUN` returns for an MMIO access upstream does not
/// emulate.
pub(crate) const EOPNOTSUPP: Errno = Errno(95);

/// `CSR_SEED` (Zkr entropy source).
pub(crate) const CSR_SEED: u32 = 0x015;
/// `CSR_SIREG` (AIA indirect register alias).
pub(crate) const CSR_SIREG: u32 = 0x151;
/// `CSR_STOPEI` (AIA top external interrupt).
pub(crate) const CSR_STOPEI: u32 = 0x15c;
/// `CSR_CYCLE`, the first of the 32 user counter CSRs.
pub(crate) const CSR_CYCLE: u32 = 0xc00;
/// `CSR_INSTRET`.
pub(crate) const CSR_INSTRET: u32 = 0xc02;

/// `INSN_MATCH_WFI` (all 32 bits are significant).
pub(crate) const INSN_WFI: u64 = 0x1050_0073;
/// `INSN_MATCH_WRS`: `wrs.nto` (all 32 bits are significant). `wrs.sto`
/// (`0x01d00073`) is not emulated upstream: it gets an illegal-instruction
/// exception.
pub(crate) const INSN_WRS_NTO: u64 = 0x00d0_0073;

/// Whether an instruction (or instruction parcel) is a 16-bit one
/// (`INSN_IS_16BIT`: its two low bits are not both set).
const fn is_16bit(insn: u64) -> bool {
    insn & 0x3 != 0x3
}

/// `INSN_LEN`: 2 or 4.
const fn insn_len(insn: u64) -> u8 {
    if is_16bit(insn) {
        2
    } else {
        4
    }
}

/// The `rd` field (bits 11:7).
const fn rd_field(insn: u64) -> u8 {
    ((insn >> 7) & 0x1f) as u8
}

/// The `rs1` field (bits 19:15).
const fn rs1_field(insn: u64) -> u8 {
    ((insn >> 15) & 0x1f) as u8
}

/// The `rs2` field (bits 24:20).
const fn rs2_field(insn: u64) -> u8 {
    ((insn >> 20) & 0x1f) as u8
}

/// `RVC_RS2S`: the compressed 3-bit register in bits 4:2 (x8..x15).
const fn rvc_rs2s(insn: u64) -> u8 {
    8 + ((insn >> 2) & 0x7) as u8
}

/// `SH_RS2C`: the compressed 5-bit `rs2` in bits 6:2.
const fn rvc_rs2c(insn: u64) -> u8 {
    ((insn >> 2) & 0x1f) as u8
}

/// The guest-physical address of a G-stage fault: `htval` holds it shifted
/// right by 2, the two low bits come from `stval` (`gstage_page_fault()`).
pub(crate) const fn gstage_fault_addr(htval: u64, stval: u64) -> u64 {
    (htval << 2) | (stval & 0x3)
}

/// `EXC_INST_ACCESS`: instruction access fault.
pub(crate) const EXC_INST_ACCESS: u64 = 1;

/// What a guest-page fault is (`gstage_page_fault()`), once the memslot
/// lookup of its GPA is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GstageFault {
    /// A memslot backs the page (writable, for a store): map it in the
    /// G-stage (`kvm_riscv_mmu_map()`), writable if `write`.
    Map {
        /// The fault was a store.
        write: bool,
    },
    /// Emulate an MMIO load ([`mmio_load`]).
    MmioLoad,
    /// Emulate an MMIO store ([`mmio_store`]).
    MmioStore,
    /// An instruction fetch from a GPA no memslot backs: deliver this
    /// instruction access fault to the guest, as bare metal would.
    Redirect(GuestTrap),
}

/// Classifies a guest-page fault (`scause` 20, 21 or 23; anything else is
/// `None`: `KVM_RUN` fails with `EOPNOTSUPP`). `slot` is the memslot lookup
/// of the faulting GPA: `None` if no memslot backs it, else whether the
/// slot is writable.
pub(crate) const fn gstage_fault(scause: u64, stval: u64, slot: Option<bool>) -> Option<GstageFault> {
    let store = scause == EXC_STORE_GUEST_PAGE_FAULT;
    let backed = match slot {
        Some(writable) => writable || !store,
        None => false,
    };
    match scause {
        EXC_INST_GUEST_PAGE_FAULT | EXC_LOAD_GUEST_PAGE_FAULT | EXC_STORE_GUEST_PAGE_FAULT if backed => {
            Some(GstageFault::Map { write: store })
        }
        EXC_LOAD_GUEST_PAGE_FAULT => Some(GstageFault::MmioLoad),
        EXC_STORE_GUEST_PAGE_FAULT => Some(GstageFault::MmioStore),
        EXC_INST_GUEST_PAGE_FAULT => Some(GstageFault::Redirect(GuestTrap {
            scause: EXC_INST_ACCESS,
            stval,
        })),
        _ => None,
    }
}

/// A trap to deliver to the guest (`struct kvm_cpu_trap`, the fields that
/// `kvm_riscv_vcpu_trap_redirect()` uses). The run loop supplies `sepc`:
/// the guest's current `sepc`, unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GuestTrap {
    /// Exception cause, written to the guest's `vscause`.
    pub(crate) scause: u64,
    /// Trap value, written to the guest's `vstval`.
    pub(crate) stval: u64,
}

impl GuestTrap {
    /// The illegal-instruction exception upstream injects for an
    /// instruction it does not emulate (`truly_illegal_insn()`).
    pub(crate) const fn illegal_insn(insn: u64) -> GuestTrap {
        GuestTrap {
            scause: EXC_INST_ILLEGAL,
            stval: insn,
        }
    }
}

/// A trapped instruction and its length in the guest's instruction stream.
///
/// Invariant: `len` is 2 or 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    /// The instruction bits, as upstream decodes them.
    bits: u64,
    /// By how much `sepc` advances past it.
    len: u8,
}

impl Insn {
    /// The instruction `htinst` describes, or `None` if the run loop must
    /// read it from guest memory ([`fetch_insn`]).
    ///
    /// With bit 0 set, `htinst` holds a transformed instruction: always a
    /// 32-bit encoding (bits 1:0 are forced to `0b11`), and bit 1 says
    /// whether the original was 32-bit (set) or compressed (clear). With
    /// bit 0 clear (zero, or a pseudo-instruction for an implicit VS-stage
    /// access) upstream reads the instruction at `sepc`.
    pub(crate) const fn from_htinst(htinst: u64) -> Option<Insn> {
        if htinst & 0x1 == 0 {
            return None;
        }
        let bits = htinst | 0x3;
        let len = if htinst & 0x2 != 0 { 4 } else { 2 };
        Some(Insn { bits, len })
    }

    /// An instruction read from guest memory: 16 bits, or 32 if the low
    /// parcel says so (what `kvm_riscv_vcpu_unpriv_read(read_insn)` gives).
    pub(crate) const fn from_fetched(bits: u64) -> Insn {
        Insn {
            bits,
            len: insn_len(bits),
        }
    }

    /// The instruction bits.
    pub(crate) const fn bits(self) -> u64 {
        self.bits
    }

    /// 2 or 4.
    pub(crate) const fn len(self) -> u8 {
        self.len
    }
}

/// Reads the instruction at guest virtual address `sepc` the way upstream's
/// `kvm_riscv_vcpu_unpriv_read(vcpu, true, sepc, ...)` does: one halfword
/// with `read_u16` (an `HLVX.HU`), and a second one at `sepc + 2` when the
/// first is the low parcel of a 32-bit instruction.
///
/// A trap of `read_u16` is returned with a load page fault turned into an
/// instruction page fault (the access was an instruction fetch); pass it to
/// [`fetch_fault`].
pub(crate) fn fetch_insn(sepc: u64, mut read_u16: impl FnMut(u64) -> Result<u16, GuestTrap>) -> Result<Insn, GuestTrap> {
    let fix = |mut t: GuestTrap| {
        if t.scause == EXC_LOAD_PAGE_FAULT {
            t.scause = EXC_INST_PAGE_FAULT;
        }
        t
    };
    let lo = u64::from(read_u16(sepc).map_err(fix)?);
    if is_16bit(lo) {
        return Ok(Insn::from_fetched(lo));
    }
    let hi = u64::from(read_u16(sepc.wrapping_add(2)).map_err(fix)?);
    Ok(Insn::from_fetched(lo | (hi << 16)))
}

/// What to do when reading the trapped instruction faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FetchFault {
    /// Re-enter the guest at the same `sepc`: the instruction's page is not
    /// mapped in the G-stage yet; the next fault maps it
    /// (`is_load_guest_page_fault()`).
    Retry,
    /// Deliver this trap to the guest at the current `sepc`.
    Redirect(GuestTrap),
}

/// Classifies a trap of [`fetch_insn`].
pub(crate) const fn fetch_fault(trap: GuestTrap) -> FetchFault {
    if trap.scause == EXC_LOAD_GUEST_PAGE_FAULT {
        FetchFault::Retry
    } else {
        FetchFault::Redirect(trap)
    }
}

/// Why an MMIO access cannot be emulated. Either way `KVM_RUN` fails with
/// [`MmioError::errno`] and the guest is left as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MmioError {
    /// Not a load (store) upstream emulates: `EOPNOTSUPP`. This includes
    /// the FP loads and stores, AMOs, and Zcb's `c.lbu`/`c.lhu`/`c.lh`/
    /// `c.sb`/`c.sh`, which upstream's MMIO path does not decode.
    Unsupported,
    /// The address is not aligned to the access size: `EIO`.
    Misaligned,
}

impl MmioError {
    /// The errno `KVM_RUN` returns.
    pub(crate) const fn errno(self) -> Errno {
        match self {
            MmioError::Unsupported => EOPNOTSUPP,
            MmioError::Misaligned => Errno::EIO,
        }
    }
}

/// A decoded MMIO load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmioLoad {
    /// Access size in bytes: 1, 2, 4 or 8.
    pub(crate) len: u8,
    /// Whether the value is sign-extended (`lb`, `lh`, `lw`; `ld` is
    /// counted as signed, which makes no difference at 8 bytes) or
    /// zero-extended (`lbu`, `lhu`, `lwu`).
    pub(crate) signed: bool,
    /// Destination register, 0 to 31 (0: the value is dropped).
    pub(crate) rd: u8,
    /// Instruction length: `sepc` advances by this much.
    pub(crate) insn_len: u8,
}

/// A decoded MMIO store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmioStore {
    /// Access size in bytes: 1, 2, 4 or 8.
    pub(crate) len: u8,
    /// Source register, 0 to 31.
    pub(crate) rs: u8,
    /// Instruction length: `sepc` advances by this much.
    pub(crate) insn_len: u8,
    /// Bits 11:7 of the instruction (an immediate for a store), kept
    /// because upstream's completion writes that register if userspace
    /// clears `kvm_run.mmio.is_write` (see [`MmioDecode::complete`]).
    rd_field: u8,
}

/// Decodes an MMIO load the way `kvm_riscv_vcpu_mmio_load()` does (same
/// encodings, same order): `lw`, `lb`, `lbu`, `ld`, `lwu`, `lh`, `lhu`,
/// `c.ld`, `c.ldsp` (`rd` != 0), `c.lw`, `c.lwsp` (`rd` != 0).
pub(crate) fn decode_load(insn: Insn) -> Result<MmioLoad, MmioError> {
    let i = insn.bits;
    let rd = rd_field(i);
    let (len, signed, rd) = match (i & 0x707f, i & 0xe003) {
        (0x2003, _) => (4, true, rd),  // lw
        (0x0003, _) => (1, true, rd),  // lb
        (0x4003, _) => (1, false, rd), // lbu
        (0x3003, _) => (8, true, rd),  // ld
        (0x6003, _) => (4, false, rd), // lwu
        (0x1003, _) => (2, true, rd),  // lh
        (0x5003, _) => (2, false, rd), // lhu
        (_, 0x6000) => (8, true, rvc_rs2s(i)),
        (_, 0x6002) if rd != 0 => (8, true, rd), // c.ldsp
        (_, 0x4000) => (4, true, rvc_rs2s(i)),   // c.lw
        (_, 0x4002) if rd != 0 => (4, true, rd), // c.lwsp
        _ => return Err(MmioError::Unsupported),
    };
    Ok(MmioLoad {
        len,
        signed,
        rd,
        insn_len: insn.len,
    })
}

/// Decodes an MMIO store the way `kvm_riscv_vcpu_mmio_store()` does:
/// `sw`, `sb`, `sd`, `sh`, `c.sd`, `c.sdsp`, `c.sw`, `c.swsp`.
///
/// Upstream quirk, kept: `c.sdsp` and `c.swsp` are only accepted when bits
/// 11:7 are not all zero. Those bits are part of the stack offset, not a
/// register, so e.g. `c.swsp a0, 0(sp)` is `Unsupported` when the
/// instruction had to be fetched (a transformed `htinst` is a 32-bit `sw`
/// and is unaffected).
pub(crate) fn decode_store(insn: Insn) -> Result<MmioStore, MmioError> {
    let i = insn.bits;
    let field = rd_field(i);
    let (len, rs) = match (i & 0x707f, i & 0xe003) {
        (0x2023, _) => (4, rs2_field(i)), // sw
        (0x0023, _) => (1, rs2_field(i)), // sb
        (0x3023, _) => (8, rs2_field(i)), // sd
        (0x1023, _) => (2, rs2_field(i)), // sh
        (_, 0xe000) => (8, rvc_rs2s(i)),  // c.sd
        (_, 0xe002) if field != 0 => (8, rvc_rs2c(i)), // c.sdsp
        (_, 0xc000) => (4, rvc_rs2s(i)),  // c.sw
        (_, 0xc002) if field != 0 => (4, rvc_rs2c(i)), // c.swsp
        _ => return Err(MmioError::Unsupported),
    };
    Ok(MmioStore {
        len,
        rs,
        insn_len: insn.len,
        rd_field: field,
    })
}

/// What goes into `kvm_run.mmio` (and to the in-kernel MMIO bus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmioAccess {
    /// `mmio.phys_addr`.
    pub(crate) phys_addr: u64,
    /// `mmio.len`: 1, 2, 4 or 8.
    pub(crate) len: u32,
    /// `mmio.is_write`.
    pub(crate) is_write: bool,
    /// For a store, the value in little-endian order (bytes past `len`
    /// are 0); for a load, zeroes.
    data: [u8; 8],
}

impl MmioAccess {
    /// The bytes to put at the start of `mmio.data` for a store (`len` of
    /// them; upstream leaves the rest of `mmio.data` as it was). Empty for
    /// a load.
    pub(crate) fn data(&self) -> &[u8] {
        if !self.is_write {
            return &[];
        }
        let len = usize::try_from(self.len).unwrap_or(0);
        self.data.get(..len).unwrap_or(&[])
    }
}

/// What to remember between the MMIO exit and its completion
/// (`struct kvm_mmio_decode`). `Default` is upstream's zeroed state of a new
/// vCPU: nothing decoded, not yet "handled", so a first `KVM_RUN` entered
/// with `exit_reason == KVM_EXIT_MMIO` completes it (see
/// [`MmioDecode::complete`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MmioDecode {
    /// Register written by a load completion (bits 11:7 of the saved
    /// instruction, as upstream's `SET_RD`).
    rd: u8,
    /// `sepc` advance.
    insn_len: u8,
    /// Access size; 0 in the never-decoded state.
    len: u8,
    /// Sign-extend the loaded value (upstream: `shift != 0`).
    signed: bool,
    /// The completion was applied.
    return_handled: bool,
}

/// A guest register write: `reg` (1 to 31) gets `value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RegWrite {
    /// Register number, 1 to 31.
    pub(crate) reg: u8,
    /// New value.
    pub(crate) value: u64,
}

impl RegWrite {
    /// A write of `value` to `reg`, or `None` for x0 (or a number that is
    /// no register).
    pub(crate) const fn new(reg: u8, value: u64) -> Option<RegWrite> {
        if reg == 0 || reg > 31 {
            None
        } else {
            Some(RegWrite { reg, value })
        }
    }
}

/// How to finish an emulated instruction: write a register (maybe), then
/// advance `sepc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Completion {
    /// The destination register write, if any.
    pub(crate) write: Option<RegWrite>,
    /// Add this to the guest's `sepc` (2 or 4; 0 in the never-decoded MMIO
    /// state).
    pub(crate) sepc_advance: u64,
}

/// A decoded MMIO exit: what to tell userspace (or the MMIO bus), and what
/// to keep for the completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmioExit {
    /// `kvm_run.mmio`.
    pub(crate) access: MmioAccess,
    /// `vcpu->arch.mmio_decode`.
    pub(crate) decode: MmioDecode,
}

/// Checks `fault_addr` against the access size (`EIO` if misaligned).
const fn check_aligned(fault_addr: u64, len: u8) -> Result<(), MmioError> {
    // `len` is 1, 2, 4 or 8.
    if fault_addr & (len as u64 - 1) != 0 {
        Err(MmioError::Misaligned)
    } else {
        Ok(())
    }
}

/// `kvm_riscv_vcpu_mmio_load()` after the instruction is known: decode,
/// check alignment, describe the exit.
pub(crate) fn mmio_load(insn: Insn, fault_addr: u64) -> Result<MmioExit, MmioError> {
    let load = decode_load(insn)?;
    check_aligned(fault_addr, load.len)?;
    Ok(MmioExit {
        access: MmioAccess {
            phys_addr: fault_addr,
            len: u32::from(load.len),
            is_write: false,
            data: [0; 8],
        },
        decode: MmioDecode {
            rd: load.rd,
            insn_len: load.insn_len,
            len: load.len,
            signed: load.signed,
            return_handled: false,
        },
    })
}

/// `kvm_riscv_vcpu_mmio_store()` after the instruction is known: decode,
/// read the source register with `read_gpr` (never called for x0, which is
/// 0), check alignment, describe the exit.
pub(crate) fn mmio_store(insn: Insn, fault_addr: u64, read_gpr: impl Fn(u8) -> u64) -> Result<MmioExit, MmioError> {
    let store = decode_store(insn)?;
    let value = if store.rs == 0 { 0 } else { read_gpr(store.rs) };
    check_aligned(fault_addr, store.len)?;
    let mut data = value.to_le_bytes();
    for (i, b) in data.iter_mut().enumerate() {
        if i >= usize::from(store.len) {
            *b = 0;
        }
    }
    Ok(MmioExit {
        access: MmioAccess {
            phys_addr: fault_addr,
            len: u32::from(store.len),
            is_write: true,
            data,
        },
        decode: MmioDecode {
            rd: store.rd_field,
            insn_len: store.insn_len,
            len: store.len,
            signed: false,
            return_handled: false,
        },
    })
}

impl MmioDecode {
    /// Access size of the decoded access (0 if none was decoded).
    pub(crate) const fn len(&self) -> u8 {
        self.len
    }

    /// `kvm_riscv_vcpu_mmio_return()`: finishes the MMIO instruction once.
    ///
    /// `run_is_write` and `data` are `kvm_run.mmio.is_write` and
    /// `kvm_run.mmio.data` as userspace left them. As upstream, the
    /// register write is skipped when `run_is_write` is set, and done when
    /// it is clear, whatever was decoded: a load's destination gets the
    /// first `len` bytes of `data`, sign- or zero-extended; for a store
    /// whose `is_write` userspace cleared, the register named by the
    /// store's bits 11:7 gets them zero-extended. x0 is never written.
    ///
    /// `Ok(None)`: already completed (upstream's `return_handled`).
    /// `Err(Unsupported)`: the never-decoded state with `run_is_write`
    /// clear (upstream's `-EOPNOTSUPP`); it counts as handled.
    pub(crate) fn complete(&mut self, run_is_write: bool, data: &[u8; 8]) -> Result<Option<Completion>, MmioError> {
        if self.return_handled {
            return Ok(None);
        }
        self.return_handled = true;
        let sepc_advance = u64::from(self.insn_len);
        if run_is_write {
            return Ok(Some(Completion { write: None, sepc_advance }));
        }
        let [b0, b1, b2, b3, ..] = *data;
        let raw = match self.len {
            1 => u64::from(b0),
            2 => u64::from(u16::from_le_bytes([b0, b1])),
            4 => u64::from(u32::from_le_bytes([b0, b1, b2, b3])),
            8 => u64::from_le_bytes(*data),
            _ => return Err(MmioError::Unsupported),
        };
        let value = if self.signed {
            // 0 to 56: `len` is 1, 2, 4 or 8 here.
            let shift = 64 - 8 * u32::from(self.len);
            (((raw << shift) as i64) >> shift) as u64
        } else {
            raw
        };
        Ok(Some(Completion {
            write: RegWrite::new(self.rd, value),
            sepc_advance,
        }))
    }
}

/// The six CSR instructions (funct3 1, 2, 3, 5, 6, 7 of opcode SYSTEM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CsrOp {
    /// `csrrw rd, csr, rs1`.
    Rw,
    /// `csrrs rd, csr, rs1`.
    Rs,
    /// `csrrc rd, csr, rs1`.
    Rc,
    /// `csrrwi rd, csr, uimm`.
    Rwi,
    /// `csrrsi rd, csr, uimm`.
    Rsi,
    /// `csrrci rd, csr, uimm`.
    Rci,
}

/// Which in-kernel handler of upstream's `csr_funcs[]` covers a CSR number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CsrTarget {
    /// `CSR_SIREG`: `kvm_riscv_vcpu_aia_rmw_ireg()`.
    AiaSireg,
    /// `CSR_STOPEI`: `kvm_riscv_vcpu_aia_rmw_topei()`.
    AiaStopei,
    /// `CSR_CYCLE` + 0..32: `kvm_riscv_vcpu_pmu_read_hpm()` (rv64 with
    /// `CONFIG_RISCV_PMU_SBI`).
    Counter,
    /// `CSR_SEED`: `seed_csr_rmw()`.
    Seed,
    /// No handler: illegal instruction.
    None,
}

/// What the kernel does with a trapped CSR instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CsrEmulation {
    /// Emulated in the kernel: complete at once with this read value.
    InKernel(u64),
    /// Exit to userspace with `KVM_EXIT_RISCV_CSR`.
    ExitToUser,
    /// Inject an illegal-instruction exception (stval = the instruction).
    Illegal,
}

/// `kvm_run.riscv_csr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RiscvCsrExit {
    /// `csr_num`.
    pub(crate) csr_num: u64,
    /// `new_value`.
    pub(crate) new_value: u64,
    /// `write_mask`.
    pub(crate) write_mask: u64,
    /// `ret_value`: 0 on exit; userspace puts the old CSR value here.
    pub(crate) ret_value: u64,
}

/// A decoded CSR instruction (`csr_insn()`).
///
/// The CSR's new value is `(old & !write_mask) | (new_value & write_mask)`
/// ([`CsrInsn::apply`]): `csrrw` writes `rs1` whole; `csrrs`/`csrrc` set
/// or clear the bits set in `rs1`, so with `rs1` = x0 (or `uimm` = 0 for
/// the immediate forms) the mask is 0 and nothing is written. As upstream,
/// `csrrw` with `rd` = x0 still counts as a read (the value is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CsrInsn {
    /// The instruction.
    pub(crate) insn: u64,
    /// Which of the six.
    pub(crate) op: CsrOp,
    /// CSR number (`insn >> 20`, as upstream's `unsigned int`).
    pub(crate) csr: u32,
    /// Destination register (0: the read value is dropped).
    pub(crate) rd: u8,
    /// `rs1` register number, or the 5-bit `uimm` of the immediate forms.
    pub(crate) rs1: u8,
    /// Bits to write, where `write_mask` is set.
    pub(crate) new_value: u64,
    /// Which bits the instruction writes.
    pub(crate) write_mask: u64,
}

impl CsrInsn {
    /// Decodes a CSR instruction; `None` if `insn` is none (funct3 0 or 4,
    /// or not opcode SYSTEM). `read_gpr` gives `rs1`'s value (never called
    /// for x0 or the immediate forms).
    pub(crate) fn decode(insn: u64, read_gpr: impl Fn(u8) -> u64) -> Option<CsrInsn> {
        if insn & 0x7f != 0x73 {
            return None;
        }
        let rs1 = rs1_field(insn);
        let rs1_val = || if rs1 == 0 { 0 } else { read_gpr(rs1) };
        let uimm = u64::from(rs1);
        let (op, write_mask, new_value) = match (insn >> 12) & 0x7 {
            1 => (CsrOp::Rw, u64::MAX, rs1_val()),
            2 => (CsrOp::Rs, rs1_val(), u64::MAX),
            3 => (CsrOp::Rc, rs1_val(), 0),
            5 => (CsrOp::Rwi, u64::MAX, uimm),
            6 => (CsrOp::Rsi, uimm, u64::MAX),
            7 => (CsrOp::Rci, uimm, 0),
            _ => return None,
        };
        Some(CsrInsn {
            insn,
            op,
            csr: (insn >> 20) as u32,
            rd: rd_field(insn),
            rs1,
            new_value,
            write_mask,
        })
    }

    /// The CSR value after the instruction, given the value before.
    pub(crate) const fn apply(&self, old: u64) -> u64 {
        (old & !self.write_mask) | (self.new_value & self.write_mask)
    }

    /// Whether the instruction writes the CSR at all.
    pub(crate) const fn writes(&self) -> bool {
        self.write_mask != 0
    }

    /// The upstream `csr_funcs[]` entry that covers this CSR.
    pub(crate) const fn target(&self) -> CsrTarget {
        match self.csr {
            CSR_SIREG => CsrTarget::AiaSireg,
            CSR_STOPEI => CsrTarget::AiaStopei,
            CSR_SEED => CsrTarget::Seed,
            c if c >= CSR_CYCLE && c < CSR_CYCLE + 32 => CsrTarget::Counter,
            _ => CsrTarget::None,
        }
    }

    /// What to do with it on a vCPU without AIA and without an SBI PMU
    /// (kvm_rs has neither yet; upstream behaves the same on a host
    /// without them): `seed` exits to userspace if the vCPU has Zkr;
    /// `cycle` and `instret` read as 0 in the kernel; everything else is an
    /// illegal instruction.
    pub(crate) const fn emulate(&self, vcpu_has_zkr: bool) -> CsrEmulation {
        match self.target() {
            CsrTarget::Seed if vcpu_has_zkr => CsrEmulation::ExitToUser,
            CsrTarget::Counter if self.csr == CSR_CYCLE || self.csr == CSR_INSTRET => CsrEmulation::InKernel(0),
            _ => CsrEmulation::Illegal,
        }
    }

    /// `kvm_run.riscv_csr` for this instruction.
    pub(crate) const fn run_csr(&self) -> RiscvCsrExit {
        RiscvCsrExit {
            csr_num: self.csr as u64,
            new_value: self.new_value,
            write_mask: self.write_mask,
            ret_value: 0,
        }
    }

    /// What to keep in the vCPU until the completion.
    pub(crate) const fn pending(&self) -> CsrDecode {
        CsrDecode {
            insn: self.insn,
            return_handled: false,
        }
    }
}

/// What to remember between a CSR exit and its completion
/// (`struct kvm_csr_decode`). `Default` is upstream's zeroed state of a new
/// vCPU: instruction 0, not handled; completing it writes no register and
/// advances `sepc` by 2 (`INSN_LEN(0)`), as upstream does when userspace
/// enters `KVM_RUN` with `exit_reason == KVM_EXIT_RISCV_CSR` first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CsrDecode {
    /// The CSR instruction.
    insn: u64,
    /// The completion was applied.
    return_handled: bool,
}

impl CsrDecode {
    /// `kvm_riscv_vcpu_csr_return()`: `rd` gets `ret_value` (the CSR's old
    /// value from userspace, or the in-kernel read), `sepc` advances. Once:
    /// `None` if already done.
    pub(crate) fn complete(&mut self, ret_value: u64) -> Option<Completion> {
        if self.return_handled {
            return None;
        }
        self.return_handled = true;
        Some(Completion {
            write: RegWrite::new(rd_field(self.insn), ret_value),
            sepc_advance: u64::from(insn_len(self.insn)),
        })
    }
}

/// A decoded virtual-instruction trap (`kvm_riscv_vcpu_virtual_insn()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VirtualInsn {
    /// `stval` was 0: read the instruction at `sepc` with [`fetch_insn`]
    /// and call [`VirtualInsn::decode`] on it.
    Fetch,
    /// Inject [`GuestTrap::illegal_insn`]`(insn)`: a compressed
    /// instruction, not opcode SYSTEM, or a SYSTEM instruction upstream does
    /// not emulate (including `wrs.sto`, `sfence.vma`, `hfence.*`, `hlv*`).
    Illegal {
        /// The instruction, for `stval`.
        insn: u64,
    },
    /// `wfi`: halt until runnable, then `sepc += 4`.
    Wfi,
    /// `wrs.nto`: yield (`kvm_vcpu_on_spin`), then `sepc += 4`.
    WrsNto,
    /// A CSR instruction.
    Csr(CsrInsn),
}

impl VirtualInsn {
    /// Decodes the trap from `stval`; [`VirtualInsn::Fetch`] if `stval` is
    /// 0. A non-zero compressed `stval` is illegal.
    pub(crate) fn from_stval(stval: u64, read_gpr: impl Fn(u8) -> u64) -> VirtualInsn {
        if stval == 0 {
            VirtualInsn::Fetch
        } else {
            VirtualInsn::decode(stval, read_gpr)
        }
    }

    /// Decodes an instruction (from `stval` or fetched).
    pub(crate) fn decode(insn: u64, read_gpr: impl Fn(u8) -> u64) -> VirtualInsn {
        // Upstream tests bits 6:2 only; bits 1:0 are 0b11 past this check.
        if is_16bit(insn) || (insn & 0x7c) >> 2 != 28 {
            return VirtualInsn::Illegal { insn };
        }
        if let Some(csr) = CsrInsn::decode(insn, read_gpr) {
            return VirtualInsn::Csr(csr);
        }
        match insn & 0xffff_ffff {
            INSN_WFI => VirtualInsn::Wfi,
            INSN_WRS_NTO => VirtualInsn::WrsNto,
            _ => VirtualInsn::Illegal { insn },
        }
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    fn gprs(r: u8) -> u64 {
        0x1111_1111_1111_1111u64.wrapping_mul(u64::from(r)) | 0x8000_0000_0000_0000
    }

    // Encoders for test instructions.
    fn i_type(opcode: u64, funct3: u64, rd: u64, rs1: u64, imm: u64) -> u64 {
        (imm << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode
    }
    fn s_type(funct3: u64, rs1: u64, rs2: u64, imm: u64) -> u64 {
        ((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | ((imm & 0x1f) << 7) | 0x23
    }
    fn load(funct3: u64, rd: u64) -> Insn {
        Insn::from_fetched(i_type(0x03, funct3, rd, 10, 0))
    }

    #[test]
    fn all_base_loads() {
        // (funct3, len, signed)
        for (f3, len, signed) in [(0, 1, true), (1, 2, true), (2, 4, true), (3, 8, true), (4, 1, false),
                                  (5, 2, false), (6, 4, false)] {
            for rd in 0..32 {
                let l = decode_load(load(f3, rd)).unwrap();
                assert_eq!(l, MmioLoad { len, signed, rd: rd as u8, insn_len: 4 });
            }
        }
        // funct3 7 is no load.
        assert_eq!(decode_load(load(7, 5)), Err(MmioError::Unsupported));
        // FP loads (opcode 0x07) and stores are not emulated.
        assert_eq!(decode_load(Insn::from_fetched(i_type(0x07, 2, 5, 10, 0))), Err(MmioError::Unsupported));
        // An AMO (lr.w) is not emulated.
        assert_eq!(decode_load(Insn::from_fetched(0x1005_252f)), Err(MmioError::Unsupported));
    }

    #[test]
    fn compressed_loads() {
        // c.lw a5, 4(a0) = 0x415c; c.ld a3, 8(a1) = 0x6594.
        assert_eq!(decode_load(Insn::from_fetched(0x415c)).unwrap(), MmioLoad { len: 4, signed: true, rd: 15, insn_len: 2 });
        assert_eq!(decode_load(Insn::from_fetched(0x6594)).unwrap(), MmioLoad { len: 8, signed: true, rd: 13, insn_len: 2 });
        // c.lwsp a0, 0(sp) = 0x4502; c.ldsp ra, 8(sp) = 0x60a2.
        assert_eq!(decode_load(Insn::from_fetched(0x4502)).unwrap(), MmioLoad { len: 4, signed: true, rd: 10, insn_len: 2 });
        assert_eq!(decode_load(Insn::from_fetched(0x60a2)).unwrap(), MmioLoad { len: 8, signed: true, rd: 1, insn_len: 2 });
        // c.lwsp / c.ldsp with rd = 0 are reserved: unsupported.
        assert_eq!(decode_load(Insn::from_fetched(0x4002)), Err(MmioError::Unsupported));
        assert_eq!(decode_load(Insn::from_fetched(0x6002)), Err(MmioError::Unsupported));
        // Zcb c.lbu a0, 0(a1) = 0x8188, c.lhu = 0x8588, c.lh = 0x85c8: not upstream's.
        for zcb in [0x8188, 0x8588, 0x85c8] {
            assert_eq!(decode_load(Insn::from_fetched(zcb)), Err(MmioError::Unsupported));
        }
        // c.fld fs2, 0(a1) = 0x2188: FP, unsupported.
        assert_eq!(decode_load(Insn::from_fetched(0x2188)), Err(MmioError::Unsupported));
    }

    #[test]
    fn stores() {
        for (f3, len) in [(0, 1), (1, 2), (2, 4), (3, 8)] {
            let s = decode_store(Insn::from_fetched(s_type(f3, 10, 7, 0x14))).unwrap();
            assert_eq!((s.len, s.rs, s.insn_len), (len, 7, 4));
        }
        assert_eq!(decode_store(Insn::from_fetched(s_type(4, 10, 7, 0))), Err(MmioError::Unsupported));
        // c.sw a5, 4(a0) = 0xc15c; c.sd a3, 8(a1) = 0xe594.
        let s = decode_store(Insn::from_fetched(0xc15c)).unwrap();
        assert_eq!((s.len, s.rs, s.insn_len), (4, 15, 2));
        let s = decode_store(Insn::from_fetched(0xe594)).unwrap();
        assert_eq!((s.len, s.rs, s.insn_len), (8, 13, 2));
        // c.swsp a0, 4(sp) = 0xc22a; c.sdsp a0, 8(sp) = 0xe42a.
        let s = decode_store(Insn::from_fetched(0xc22a)).unwrap();
        assert_eq!((s.len, s.rs), (4, 10));
        let s = decode_store(Insn::from_fetched(0xe42a)).unwrap();
        assert_eq!((s.len, s.rs), (8, 10));
        // Upstream quirk: offset 0 (bits 11:7 zero) is refused.
        assert_eq!(decode_store(Insn::from_fetched(0xc02a)), Err(MmioError::Unsupported));
        assert_eq!(decode_store(Insn::from_fetched(0xe02a)), Err(MmioError::Unsupported));
        // Zcb c.sb / c.sh: unsupported.
        assert_eq!(decode_store(Insn::from_fetched(0x8988)), Err(MmioError::Unsupported));
        assert_eq!(decode_store(Insn::from_fetched(0x8d88)), Err(MmioError::Unsupported));
    }

    #[test]
    fn htinst_transformed_and_fetch() {
        // No transformed instruction: fetch.
        assert_eq!(Insn::from_htinst(0), None);
        assert_eq!(Insn::from_htinst(0x2000), None); // a pseudo-instruction
        // Transformed lw a0 (rs1 and offset zeroed), from a 32-bit original.
        let lw = i_type(0x03, 2, 10, 0, 0);
        let t = Insn::from_htinst(lw).unwrap();
        assert_eq!((t.bits(), t.len()), (lw, 4));
        // From a compressed original (c.lw): bit 1 clear, length 2, decoded
        // as the 32-bit form.
        let t = Insn::from_htinst(lw & !2).unwrap();
        assert_eq!((t.bits(), t.len()), (lw, 2));
        assert_eq!(decode_load(t).unwrap(), MmioLoad { len: 4, signed: true, rd: 10, insn_len: 2 });
        // A compressed pattern in htinst never decodes as compressed:
        // 0x4001 is taken as 0x4003 (lbu x0), not as c.lw.
        let t = Insn::from_htinst(0x4001).unwrap();
        assert_eq!(decode_load(t).unwrap(), MmioLoad { len: 1, signed: false, rd: 0, insn_len: 2 });
        assert_eq!(decode_load(Insn::from_htinst(0x4005).unwrap()), Err(MmioError::Unsupported));
    }

    #[test]
    fn fetching() {
        let mem = |a: u64| -> Result<u16, GuestTrap> {
            match a {
                0x1000 => Ok(0x415c),          // c.lw
                0x2000 => Ok(0xa503),          // lw a0, 0(a0), low half
                0x2002 => Ok(0x0005),
                0x3000 => Ok(0x0003),          // 32-bit, second half faults
                _ => Err(GuestTrap { scause: EXC_LOAD_PAGE_FAULT, stval: a }),
            }
        };
        assert_eq!(fetch_insn(0x1000, mem), Ok(Insn { bits: 0x415c, len: 2 }));
        assert_eq!(fetch_insn(0x2000, mem), Ok(Insn { bits: 0x0005_a503, len: 4 }));
        let t = fetch_insn(0x3000, mem).unwrap_err();
        assert_eq!(t, GuestTrap { scause: EXC_INST_PAGE_FAULT, stval: 0x3002 });
        assert_eq!(fetch_fault(t), FetchFault::Redirect(t));
        let g = GuestTrap { scause: EXC_LOAD_GUEST_PAGE_FAULT, stval: 0 };
        assert_eq!(fetch_insn(0, |_| Err(g)), Err(g));
        assert_eq!(fetch_fault(g), FetchFault::Retry);
        // sepc at the top of the address space wraps instead of panicking.
        assert!(fetch_insn(u64::MAX - 1, |a| if a == u64::MAX - 1 { Ok(3) } else { Ok(0) }).is_ok());
    }

    #[test]
    fn gstage_fault_classes() {
        let (i, l, s) = (EXC_INST_GUEST_PAGE_FAULT, EXC_LOAD_GUEST_PAGE_FAULT, EXC_STORE_GUEST_PAGE_FAULT);
        assert_eq!(gstage_fault(l, 0, Some(false)), Some(GstageFault::Map { write: false }));
        assert_eq!(gstage_fault(i, 0, Some(false)), Some(GstageFault::Map { write: false }));
        assert_eq!(gstage_fault(s, 0, Some(true)), Some(GstageFault::Map { write: true }));
        // A store to a read-only slot is MMIO (e.g. a flash device).
        assert_eq!(gstage_fault(s, 0, Some(false)), Some(GstageFault::MmioStore));
        assert_eq!(gstage_fault(l, 0, None), Some(GstageFault::MmioLoad));
        assert_eq!(gstage_fault(s, 0, None), Some(GstageFault::MmioStore));
        assert_eq!(gstage_fault(i, 0x1234, None), Some(GstageFault::Redirect(GuestTrap { scause: 1, stval: 0x1234 })));
        for other in [0, 2, 12, 13, 15, 22, 24, u64::MAX] {
            assert_eq!(gstage_fault(other, 0, None), None);
            assert_eq!(gstage_fault(other, 0, Some(true)), None);
        }
    }

    #[test]
    fn fault_address() {
        assert_eq!(gstage_fault_addr(0x4000_0000 >> 2, 0xffff_ffff_8000_0003), 0x4000_0003);
        assert_eq!(gstage_fault_addr(u64::MAX, 0), u64::MAX << 2);
    }

    #[test]
    fn load_completion_extends() {
        let data = [0x80, 0xff, 0xff, 0x7f, 0x01, 0x02, 0x03, 0x84];
        let cases = [
            (0u64, 0xffff_ffff_ffff_ff80u64), // lb
            (4, 0x80),                        // lbu
            (1, 0xffff_ffff_ffff_ff80),       // lh
            (5, 0xff80),                      // lhu
            (2, 0x7fff_ff80),                 // lw
            (6, 0x7fff_ff80),                 // lwu
            (3, 0x8403_0201_7fff_ff80),       // ld
        ];
        for (f3, want) in cases {
            let mut exit = mmio_load(load(f3, 9), 0x1000).unwrap();
            assert_eq!(exit.access.is_write, false);
            assert_eq!(exit.access.data(), &[] as &[u8]);
            let c = exit.decode.complete(false, &data).unwrap().unwrap();
            assert_eq!(c, Completion { write: Some(RegWrite { reg: 9, value: want }), sepc_advance: 4 });
            // Only once.
            assert_eq!(exit.decode.complete(false, &data), Ok(None));
        }
        // Negative 32-bit value through lw sign-extends, lwu does not.
        let neg = [0x00, 0x00, 0x00, 0x80, 0xaa, 0xaa, 0xaa, 0xaa];
        let mut lw = mmio_load(load(2, 9), 0).unwrap().decode;
        assert_eq!(lw.complete(false, &neg).unwrap().unwrap().write.unwrap().value, 0xffff_ffff_8000_0000);
        let mut lwu = mmio_load(load(6, 9), 0).unwrap().decode;
        assert_eq!(lwu.complete(false, &neg).unwrap().unwrap().write.unwrap().value, 0x8000_0000);
    }

    #[test]
    fn load_into_x0_writes_nothing() {
        let mut exit = mmio_load(load(2, 0), 0x100).unwrap();
        let c = exit.decode.complete(false, &[0xff; 8]).unwrap().unwrap();
        assert_eq!(c, Completion { write: None, sepc_advance: 4 });
    }

    #[test]
    fn misaligned_is_eio() {
        for (f3, len) in [(1u64, 2u64), (2, 4), (3, 8)] {
            for off in 1..len {
                assert_eq!(mmio_load(load(f3, 1), 0x1000 + off), Err(MmioError::Misaligned));
                let st = Insn::from_fetched(s_type(f3, 10, 7, 0));
                assert_eq!(mmio_store(st, 0x1000 + off, gprs), Err(MmioError::Misaligned));
            }
        }
        assert_eq!(MmioError::Misaligned.errno(), Errno::EIO);
        assert_eq!(MmioError::Unsupported.errno(), Errno(95));
        // Byte accesses are never misaligned.
        assert!(mmio_load(load(0, 1), 0x1001).is_ok());
    }

    #[test]
    fn store_data_and_completion() {
        let exit = mmio_store(Insn::from_fetched(s_type(1, 10, 7, 0)), 0x2002, gprs).unwrap();
        assert_eq!(exit.access.phys_addr, 0x2002);
        assert_eq!((exit.access.len, exit.access.is_write), (2, true));
        assert_eq!(exit.access.data(), &gprs(7).to_le_bytes()[..2]);
        let mut d = exit.decode;
        assert_eq!(d.complete(true, &[0; 8]), Ok(Some(Completion { write: None, sepc_advance: 4 })));
        assert_eq!(d.complete(true, &[0; 8]), Ok(None));
        // x0 as source stores 0 and does not read the register file.
        let exit = mmio_store(Insn::from_fetched(s_type(3, 10, 0, 0)), 0x2000, |_| panic!("x0 read")).unwrap();
        assert_eq!(exit.access.data(), &[0; 8]);
        // c.sw a5: source x15, 4 bytes.
        let exit = mmio_store(Insn::from_fetched(0xc15c), 0x3000, gprs).unwrap();
        assert_eq!(exit.access.data(), &gprs(15).to_le_bytes()[..4]);
    }

    #[test]
    fn store_completed_as_load_writes_the_immediate_register() {
        // Upstream quirk: userspace clears is_write after a store; the
        // register named by the store's bits 11:7 (imm[4:0] = 5) gets the
        // data, zero-extended.
        let mut d = mmio_store(Insn::from_fetched(s_type(0, 10, 7, 5)), 0, gprs).unwrap().decode;
        let c = d.complete(false, &[0x80, 1, 2, 3, 4, 5, 6, 7]).unwrap().unwrap();
        assert_eq!(c.write, Some(RegWrite { reg: 5, value: 0x80 }));
    }

    #[test]
    fn never_decoded_state() {
        let mut d = MmioDecode::default();
        // is_write set: nothing to write, sepc += 0.
        assert_eq!(d.complete(true, &[0; 8]), Ok(Some(Completion { write: None, sepc_advance: 0 })));
        let mut d = MmioDecode::default();
        assert_eq!(d.complete(false, &[0; 8]), Err(MmioError::Unsupported));
        assert_eq!(d.complete(false, &[0; 8]), Ok(None));
        let mut c = CsrDecode::default();
        assert_eq!(c.complete(7), Some(Completion { write: None, sepc_advance: 2 }));
        assert_eq!(c.complete(7), None);
    }

    fn csr(f3: u64, rd: u64, rs1: u64, csr: u64) -> u64 {
        i_type(0x73, f3, rd, rs1, csr)
    }

    #[test]
    fn csr_decode_and_rmw() {
        let v = |r: u8| u64::from(r) * 0x100 + 0x0f;
        // csrrw a0, seed, a1
        let VirtualInsn::Csr(c) = VirtualInsn::decode(csr(1, 10, 11, 0x015), v) else { panic!() };
        assert_eq!((c.op, c.csr, c.rd, c.rs1), (CsrOp::Rw, CSR_SEED, 10, 11));
        assert_eq!((c.new_value, c.write_mask), (0xb0f, u64::MAX));
        assert_eq!(c.apply(0xffff), 0xb0f);
        // csrrs a0, csr, a2: set bits of a2.
        let VirtualInsn::Csr(c) = VirtualInsn::decode(csr(2, 10, 12, 0x123), v) else { panic!() };
        assert_eq!((c.new_value, c.write_mask), (u64::MAX, 0xc0f));
        assert_eq!(c.apply(0x1000), 0x1c0f);
        // csrrc: clear bits of a2.
        let VirtualInsn::Csr(c) = VirtualInsn::decode(csr(3, 10, 12, 0x123), v) else { panic!() };
        assert_eq!(c.apply(0xffff), 0xf3f0);
        // csrrs/csrrc with rs1 = x0 do not write, and x0 is not read.
        for f3 in [2, 3, 6, 7] {
            let VirtualInsn::Csr(c) = VirtualInsn::decode(csr(f3, 10, 0, 0x123), |_| panic!("x0 read")) else {
                panic!()
            };
            assert!(!c.writes());
            assert_eq!(c.apply(0x5a5a), 0x5a5a);
        }
        // csrrw with x0 writes 0.
        let VirtualInsn::Csr(c) = VirtualInsn::decode(csr(1, 10, 0, 0x123), v) else { panic!() };
        assert!(c.writes());
        assert_eq!(c.apply(0x5a5a), 0);
        // Immediate forms use the 5-bit uimm.
        let VirtualInsn::Csr(c) = VirtualInsn::decode(csr(5, 1, 31, 0xfff), v) else { panic!() };
        assert_eq!((c.op, c.csr, c.new_value, c.write_mask), (CsrOp::Rwi, 0xfff, 31, u64::MAX));
        let VirtualInsn::Csr(c) = VirtualInsn::decode(csr(6, 1, 3, 0x1), v) else { panic!() };
        assert_eq!((c.op, c.new_value, c.write_mask, c.apply(4)), (CsrOp::Rsi, u64::MAX, 3, 7));
        let VirtualInsn::Csr(c) = VirtualInsn::decode(csr(7, 1, 3, 0x1), v) else { panic!() };
        assert_eq!((c.op, c.new_value, c.write_mask, c.apply(7)), (CsrOp::Rci, 0, 3, 4));
        assert_eq!(c.run_csr(), RiscvCsrExit { csr_num: 1, new_value: 0, write_mask: 3, ret_value: 0 });
    }

    #[test]
    fn csr_emulation_table() {
        let c = |n: u64| match VirtualInsn::decode(csr(2, 10, 0, n), gprs) {
            VirtualInsn::Csr(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(c(0x015).emulate(true), CsrEmulation::ExitToUser);
        assert_eq!(c(0x015).emulate(false), CsrEmulation::Illegal);
        assert_eq!(c(0xc00).emulate(false), CsrEmulation::InKernel(0));
        assert_eq!(c(0xc02).emulate(false), CsrEmulation::InKernel(0));
        assert_eq!(c(0xc01).target(), CsrTarget::Counter);
        assert_eq!(c(0xc01).emulate(true), CsrEmulation::Illegal);
        assert_eq!(c(0xc1f).target(), CsrTarget::Counter);
        assert_eq!(c(0xc20).target(), CsrTarget::None);
        assert_eq!(c(0x151).target(), CsrTarget::AiaSireg);
        assert_eq!(c(0x15c).target(), CsrTarget::AiaStopei);
        assert_eq!(c(0x151).emulate(true), CsrEmulation::Illegal);
        assert_eq!(c(0x100).emulate(true), CsrEmulation::Illegal);
        // In-kernel completion: rd gets the value, sepc += 4.
        let mut p = c(0xc00).pending();
        assert_eq!(p.complete(0), Some(Completion { write: Some(RegWrite { reg: 10, value: 0 }), sepc_advance: 4 }));
        assert_eq!(p.complete(0), None);
        // Userspace completion into x0: no write.
        let mut p = match VirtualInsn::decode(csr(1, 0, 5, 0x015), gprs) {
            VirtualInsn::Csr(c) => c.pending(),
            _ => panic!(),
        };
        assert_eq!(p.complete(42), Some(Completion { write: None, sepc_advance: 4 }));
    }

    #[test]
    fn wfi_wrs_and_illegal() {
        assert_eq!(VirtualInsn::from_stval(INSN_WFI, gprs), VirtualInsn::Wfi);
        assert_eq!(VirtualInsn::from_stval(INSN_WRS_NTO, gprs), VirtualInsn::WrsNto);
        // wrs.sto is not emulated upstream.
        assert_eq!(VirtualInsn::from_stval(0x01d0_0073, gprs), VirtualInsn::Illegal { insn: 0x01d0_0073 });
        // stval 0: fetch; a fetched compressed instruction is illegal.
        assert_eq!(VirtualInsn::from_stval(0, gprs), VirtualInsn::Fetch);
        assert_eq!(VirtualInsn::decode(0x4501, gprs), VirtualInsn::Illegal { insn: 0x4501 });
        assert_eq!(VirtualInsn::from_stval(0x0001, gprs), VirtualInsn::Illegal { insn: 1 });
        // sfence.vma, hfence.gvma, sret, ecall, hlv.w (funct3 4): illegal.
        for i in [0x1200_0073u64, 0x6200_0073, 0x1020_0073, 0x73, 0x6805_4573] {
            assert_eq!(VirtualInsn::decode(i, gprs), VirtualInsn::Illegal { insn: i });
        }
        // Not SYSTEM at all (a load).
        assert_eq!(VirtualInsn::decode(0x0005_2503, gprs), VirtualInsn::Illegal { insn: 0x0005_2503 });
        // Upper bits beyond 32 are ignored by the WFI match, as upstream.
        assert_eq!(VirtualInsn::decode(INSN_WFI | 1 << 40, gprs), VirtualInsn::Wfi);
        assert_eq!(GuestTrap::illegal_insn(5), GuestTrap { scause: 2, stval: 5 });
    }

    /// Every 16-bit parcel and a wide sample of 32-bit words, through every
    /// decoder, with every htinst interpretation: defined answers, no panic.
    #[test]
    fn exhaustive_no_panic() {
        let mut loads = 0u32;
        let mut stores = 0u32;
        for i in 0..=0xffffu64 {
            let insn = Insn::from_fetched(i);
            loads += u32::from(mmio_load(insn, 0).is_ok());
            stores += u32::from(mmio_store(insn, 0, gprs).is_ok());
            let _ = VirtualInsn::from_stval(i, gprs);
            if let Some(t) = Insn::from_htinst(i) {
                let _ = mmio_load(t, 7);
            }
        }
        // Compressed: c.lw and c.ld have 11 free bits each (2048), c.lwsp
        // and c.ldsp as many minus the 64 with rd = 0. 32-bit loads whose
        // upper half is 0: funct3 0-6, any rd, bit 15 (rs1's low bit) free.
        assert_eq!(loads, 2 * 2048 + 2 * (2048 - 64) + 7 * 32 * 2);
        // Stores likewise (c.swsp/c.sdsp minus the quirky bits 11:7 = 0),
        // 32-bit: funct3 0-3.
        assert_eq!(stores, 2 * 2048 + 2 * (2048 - 64) + 4 * 32 * 2);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let insn = Insn::from_fetched(x & 0xffff_ffff);
            if let Ok(mut e) = mmio_load(insn, x & 0xfff8) {
                let c = e.decode.complete(x & 1 == 0, &x.to_le_bytes()).unwrap().unwrap();
                assert!(c.write.map_or(true, |w| (1..32).contains(&w.reg)));
            }
            if let Ok(mut e) = mmio_store(insn, x & 0xfff8, gprs) {
                assert_eq!(e.access.data().len(), e.access.len as usize);
                let _ = e.decode.complete(x & 2 == 0, &x.to_le_bytes());
            }
            if let VirtualInsn::Csr(c) = VirtualInsn::decode(x, gprs) {
                assert!(c.csr < (1 << 12) || x >> 32 != 0);
                let _ = (c.emulate(true), c.pending().complete(x));
            }
            let _ = Insn::from_htinst(x).map(|t| (mmio_load(t, x), mmio_store(t, x, gprs)));
        }
    }
}
