// SPDX-License-Identifier: GPL-2.0

//! KUnit suites for the riscv64 pure-logic files: instruction decoding
//! (`insn.rs`, suite `kvm_rs_riscv_insn`) and SBI dispatch (`sbi.rs`, suite
//! `kvm_rs_riscv_sbi`).
//!
//! The host tests (`make hosttest`) cover both files exhaustively; these
//! are a representative subset of them, run with the kernel's build of
//! `core` (overflow checks on): the decode tables, the completions, the
//! SBI extension table and ONE_REG switches, the hart-mask, HSM, SRST and
//! STA rules, and a sweep of extension and function ids that must all get
//! a defined answer.

use super::insn::{
    fetch_fault,
    fetch_insn,
    mmio_load,
    mmio_store,
    Completion,
    CsrEmulation,
    CsrOp,
    FetchFault,
    GuestTrap,
    Insn,
    MmioError,
    RegWrite,
    VirtualInsn,
    EXC_INST_PAGE_FAULT,
    EXC_LOAD_GUEST_PAGE_FAULT,
    EXC_LOAD_PAGE_FAULT, //
};
use super::sbi::{
    eid,
    ext_reg_id,
    linux_version_code,
    record_steal_time,
    EcallRegs,
    Fence,
    HartMask,
    HartState,
    MachineIds,
    SbiConfig,
    SbiContext,
    SbiEnv,
    SbiExit,
    SbiExt,
    StealClock,
    KVM_REG_RISCV_SBI_MULTI_DIS,
    KVM_REG_RISCV_SBI_MULTI_EN,
    STA_SIZE, //
};
use crate::kvm::abi::Errno;
use kernel::prelude::*;

/// Register file of the tests: `x<n>` holds `n * 0x0101... | 1 << 63`.
fn gpr(r: u8) -> u64 {
    0x0101_0101_0101_0101u64.wrapping_mul(u64::from(r)) | 1 << 63
}

#[kunit_tests(kvm_rs_riscv_insn)]
mod insn_tests {
    use super::*;

    #[test]
    fn mmio_load_table() {
        // (instruction, len, signed, rd, insn_len)
        let table: [(u64, u32, bool, u8, u64); 11] = [
            (0x0005_2503, 4, true, 10, 4),  // lw a0, 0(a0)
            (0x0005_0503, 1, true, 10, 4),  // lb
            (0x0005_4503, 1, false, 10, 4), // lbu
            (0x0005_3503, 8, true, 10, 4),  // ld
            (0x0005_6503, 4, false, 10, 4), // lwu
            (0x0005_1503, 2, true, 10, 4),  // lh
            (0x0005_5503, 2, false, 10, 4), // lhu
            (0x415c, 4, true, 15, 2),       // c.lw a5, 4(a0)
            (0x6594, 8, true, 13, 2),       // c.ld a3, 8(a1)
            (0x4502, 4, true, 10, 2),       // c.lwsp a0, 0(sp)
            (0x60a2, 8, true, 1, 2),        // c.ldsp ra, 8(sp)
        ];
        // Data 0x80 0xff ...: every width is negative when signed.
        let data = [0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        for (bits, len, signed, rd, insn_len) in table {
            let exit = mmio_load(Insn::from_fetched(bits), 0x1000_0000);
            assert!(exit.is_ok());
            if let Ok(mut exit) = exit {
                assert_eq!(exit.access.len, len);
                assert!(!exit.access.is_write);
                let raw = u64::from_le_bytes(data) & (u64::MAX >> (64 - 8 * len));
                let value = if signed { u64::MAX << 7 } else { raw };
                let want = Completion { write: RegWrite::new(rd, value), sepc_advance: insn_len };
                assert_eq!(exit.decode.complete(false, &data), Ok(Some(want)));
                assert_eq!(exit.decode.complete(false, &data), Ok(None));
            }
        }
        // Not emulated upstream: Zcb c.lbu, c.lwsp with rd 0, flw, lr.w.
        for bits in [0x8188u64, 0x4002, 0x0005_2507, 0x1005_252f] {
            assert_eq!(mmio_load(Insn::from_fetched(bits), 0), Err(MmioError::Unsupported));
        }
        assert_eq!(MmioError::Unsupported.errno(), Errno(95));
        // Misaligned: EIO.
        assert_eq!(mmio_load(Insn::from_fetched(0x0005_3503), 0x1004), Err(MmioError::Misaligned));
        assert_eq!(MmioError::Misaligned.errno(), Errno::EIO);
    }

    #[test]
    fn mmio_store_table() {
        // (instruction, len, source register)
        let table: [(u64, u32, u8); 7] = [
            (0x00e5_2023, 4, 14), // sw a4, 0(a0)
            (0x00e5_0023, 1, 14), // sb
            (0x00e5_3023, 8, 14), // sd
            (0x00e5_1023, 2, 14), // sh
            (0xc15c, 4, 15),      // c.sw a5, 4(a0)
            (0xe594, 8, 13),      // c.sd a3, 8(a1)
            (0xc22a, 4, 10),      // c.swsp a0, 4(sp)
        ];
        for (bits, len, rs) in table {
            let exit = mmio_store(Insn::from_fetched(bits), 0x2000, gpr);
            assert!(exit.is_ok());
            if let Ok(exit) = exit {
                assert_eq!((exit.access.len, exit.access.is_write), (len, true));
                assert_eq!(exit.access.data(), gpr(rs).to_le_bytes().get(..len as usize).unwrap_or(&[]));
            }
        }
        // Upstream refuses c.swsp with offset bits 11:7 zero, and Zcb c.sb.
        assert_eq!(mmio_store(Insn::from_fetched(0xc02a), 0, gpr), Err(MmioError::Unsupported));
        assert_eq!(mmio_store(Insn::from_fetched(0x8988), 0, gpr), Err(MmioError::Unsupported));
    }

    #[test]
    fn htinst_and_fetch() {
        assert_eq!(Insn::from_htinst(0), None);
        // Transformed lw a0 from a compressed original: 32-bit form, length 2.
        let t = Insn::from_htinst(0x0000_2501);
        assert_eq!(t.map(|t| (t.bits(), t.len())), Some((0x2503, 2)));
        let t = Insn::from_htinst(0x0000_2503);
        assert_eq!(t.map(|t| t.len()), Some(4));
        // Fetch: a 32-bit instruction in two halves; a fault on the second
        // is an instruction page fault to redirect; a G-stage fault retries.
        let mem = |a: u64| match a {
            0x100 => Ok(0x2503u16),
            0x102 => Ok(0x0005),
            _ => Err(GuestTrap { scause: EXC_LOAD_PAGE_FAULT, stval: a }),
        };
        assert_eq!(fetch_insn(0x100, mem).map(|i| (i.bits(), i.len())), Ok((0x0005_2503, 4)));
        let t = GuestTrap { scause: EXC_INST_PAGE_FAULT, stval: 0x104 };
        assert_eq!(fetch_insn(0x102, mem), Ok(Insn::from_fetched(0x5)));
        assert_eq!(fetch_insn(0x104, mem), Err(t));
        // The low half is there, the high half faults: the fault is at sepc + 2.
        let hi_fault = |a: u64| if a == 0x102 { Ok(0xffff) } else { mem(a) };
        assert_eq!(fetch_insn(0x102, hi_fault), Err(t));
        assert_eq!(fetch_fault(t), FetchFault::Redirect(t));
        let g = GuestTrap { scause: EXC_LOAD_GUEST_PAGE_FAULT, stval: 0 };
        assert_eq!(fetch_fault(g), FetchFault::Retry);
    }

    #[test]
    fn virtual_insns() -> Result {
        assert_eq!(VirtualInsn::from_stval(0x1050_0073, gpr), VirtualInsn::Wfi);
        assert_eq!(VirtualInsn::from_stval(0x00d0_0073, gpr), VirtualInsn::WrsNto);
        assert_eq!(VirtualInsn::from_stval(0x01d0_0073, gpr), VirtualInsn::Illegal { insn: 0x01d0_0073 });
        assert_eq!(VirtualInsn::from_stval(0, gpr), VirtualInsn::Fetch);
        assert_eq!(VirtualInsn::decode(0x4501, gpr), VirtualInsn::Illegal { insn: 0x4501 });
        assert_eq!(VirtualInsn::decode(0x1200_0073, gpr), VirtualInsn::Illegal { insn: 0x1200_0073 });
        assert_eq!(GuestTrap::illegal_insn(7), GuestTrap { scause: 2, stval: 7 });
        // csrrs a0, seed, x0 (read only), csrrw a0, seed, a1.
        let seed_read = VirtualInsn::decode(0x0150_2573, |_| 0);
        assert!(matches!(seed_read, VirtualInsn::Csr(c) if c.op == CsrOp::Rs && !c.writes() && c.rd == 10));
        let VirtualInsn::Csr(c) = VirtualInsn::decode(0x0155_9573, gpr) else {
            return Err(EINVAL);
        };
        assert_eq!((c.op, c.csr, c.new_value, c.write_mask), (CsrOp::Rw, 0x015, gpr(11), u64::MAX));
        assert_eq!(c.emulate(true), CsrEmulation::ExitToUser);
        assert_eq!(c.emulate(false), CsrEmulation::Illegal);
        let mut p = c.pending();
        assert_eq!(p.complete(0x55), Some(Completion { write: RegWrite::new(10, 0x55), sepc_advance: 4 }));
        assert_eq!(p.complete(0x55), None);
        // csrrci x0, cycle, 3 reads 0 in the kernel; csrrsi a0, time: illegal.
        let VirtualInsn::Csr(c) = VirtualInsn::decode(0xc001_f073, gpr) else {
            return Err(EINVAL);
        };
        assert_eq!((c.op, c.write_mask, c.apply(0xff)), (CsrOp::Rci, 3, 0xfc));
        assert_eq!(c.emulate(false), CsrEmulation::InKernel(0));
        assert!(matches!(VirtualInsn::decode(0xc011_e573, gpr), VirtualInsn::Csr(c) if c.emulate(true) == CsrEmulation::Illegal));
        Ok(())
    }

    #[test]
    fn sweep_all_16_bit_parcels() {
        let (mut loads, mut stores) = (0u32, 0u32);
        for i in 0..=0xffffu64 {
            let insn = Insn::from_fetched(i);
            loads += u32::from(mmio_load(insn, 0).is_ok());
            stores += u32::from(mmio_store(insn, 0, gpr).is_ok());
            let _ = VirtualInsn::from_stval(i, gpr);
        }
        assert_eq!(loads, 2 * 2048 + 2 * (2048 - 64) + 7 * 32 * 2);
        assert_eq!(stores, 2 * 2048 + 2 * (2048 - 64) + 4 * 32 * 2);
    }
}

/// A VM of four vCPUs with ids 0, 1, 2, 5 for the SBI suite; the caller is
/// index 0.
struct Vm {
    ids: [u32; 4],
    stopped: [bool; 4],
    ipis: u32,
    last_fence: Option<(HartMask, Fence)>,
    timer: Option<u64>,
    started: Option<(usize, u64, u64)>,
    zeroed: Option<u64>,
}

impl Vm {
    fn new() -> Vm {
        Vm {
            ids: [0, 1, 2, 5],
            stopped: [false, true, false, true],
            ipis: 0,
            last_fence: None,
            timer: None,
            started: None,
            zeroed: None,
        }
    }
}

impl SbiEnv for Vm {
    fn machine_ids(&self) -> MachineIds {
        MachineIds { mvendorid: 1, marchid: 2, mimpid: 3 }
    }
    fn set_timer(&mut self, next_cycle: u64) -> Result<(), Errno> {
        self.timer = Some(next_cycle);
        Ok(())
    }
    fn clear_ipi(&mut self) -> Result<(), Errno> {
        Ok(())
    }
    fn vcpu_id_at(&self, idx: usize) -> Option<u32> {
        self.ids.get(idx).copied()
    }
    fn send_ipi(&mut self, idx: usize) -> Result<(), Errno> {
        self.ipis |= 1 << idx;
        Ok(())
    }
    fn remote_fence(&mut self, harts: HartMask, fence: Fence) {
        self.last_fence = Some((harts, fence));
    }
    fn hart_start(&mut self, idx: usize, start_addr: u64, opaque: u64) -> bool {
        match self.stopped.get_mut(idx) {
            Some(s) if *s => {
                *s = false;
                self.started = Some((idx, start_addr, opaque));
                true
            }
            _ => false,
        }
    }
    fn hart_stop(&mut self) -> bool {
        !core::mem::replace(&mut self.stopped[0], true)
    }
    fn hart_state(&self, idx: usize) -> HartState {
        if self.stopped.get(idx).copied().unwrap_or(true) {
            HartState::Stopped
        } else {
            HartState::Started
        }
    }
    fn wfi(&mut self) {}
    fn others_stopped(&self) -> bool {
        self.stopped.iter().skip(1).all(|s| *s)
    }
    fn gpa_has_memslot(&self, gpa: u64) -> bool {
        gpa < 0x1000_0000
    }
    fn request_reset(&mut self, _pc: u64, _a1: u64) {}
    fn zero_guest(&mut self, gpa: u64, len: usize) -> bool {
        let ok = gpa.checked_add(len as u64).is_some_and(|end| end <= 0x1000_0000);
        if ok {
            self.zeroed = Some(gpa);
        }
        ok
    }
    fn steal_clock(&self) -> StealClock {
        StealClock { run_delay: 1000, extra_ns: 0 }
    }
    fn read_guest_ulong(&mut self, gva: u64) -> Result<u64, GuestTrap> {
        Err(GuestTrap { scause: EXC_LOAD_PAGE_FAULT, stval: gva })
    }
}

const CONFIG: SbiConfig = SbiConfig { v01: false, sta: true, imp_version: linux_version_code(7, 3, 4) };

fn call(ctx: &mut SbiContext, vm: &mut Vm, e: u64, fid: u64, args: [u64; 6]) -> SbiExit {
    ctx.ecall(&EcallRegs::new(e, fid, args, 1 << 8), vm)
}

fn cont(error: i64, value: u64) -> SbiExit {
    SbiExit::Continue { error, value: Some(value) }
}

#[kunit_tests(kvm_rs_riscv_sbi)]
mod sbi_tests {
    use super::*;

    #[test]
    fn base_and_probe() {
        let mut ctx = SbiContext::new(CONFIG);
        let mut vm = Vm::new();
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 0, [0; 6]), cont(0, 3 << 24));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 1, [0; 6]), cont(0, 3));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 2, [0; 6]), cont(0, 0x07_03_04));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 5, [0; 6]), cont(0, 2));
        assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 9, [0; 6]), cont(-2, 0));
        for (e, want) in [(eid::TIME, 1), (eid::IPI, 1), (eid::RFENCE, 1), (eid::SRST, 1), (eid::HSM, 1),
                          (eid::STA, 1), (eid::PMU, 0), (eid::DBCN, 0), (eid::SUSP, 0), (eid::FWFT, 0),
                          (eid::NACL, 0), (0, 0)] {
            assert_eq!(call(&mut ctx, &mut vm, eid::BASE, 3, [e, 0, 0, 0, 0, 0]), cont(0, want));
        }
        assert!(matches!(call(&mut ctx, &mut vm, eid::BASE, 3, [eid::VENDOR_START, 0, 0, 0, 0, 0]),
                         SbiExit::Forward(_)));
    }

    #[test]
    fn one_reg_switches() {
        let mut ctx = SbiContext::new(CONFIG);
        let multi_en = ext_reg_id(SbiExt::V01) | KVM_REG_RISCV_SBI_MULTI_EN;
        let multi_dis = ext_reg_id(SbiExt::V01) | KVM_REG_RISCV_SBI_MULTI_DIS;
        assert_eq!(ctx.get_ext_reg(multi_en), Ok(0x5bf));
        assert_eq!(ctx.get_ext_reg(multi_dis), Ok(!0x5bf));
        assert_eq!(ctx.get_ext_reg(ext_reg_id(SbiExt::Pmu)), Err(Errno::ENOENT));
        assert_eq!(ctx.set_ext_reg(ext_reg_id(SbiExt::Dbcn), false, || Ok(2)), Err(Errno::EINVAL));
        assert_eq!(ctx.set_ext_reg(ext_reg_id(SbiExt::Dbcn), true, || Ok(1)), Err(Errno::EBUSY));
        assert_eq!(ctx.set_ext_reg(ext_reg_id(SbiExt::Time), false, || Ok(0)), Ok(()));
        let mut vm = Vm::new();
        assert_eq!(call(&mut ctx, &mut vm, eid::TIME, 0, [5, 0, 0, 0, 0, 0]), cont(-2, 0));
        assert_eq!(vm.timer, None);
        assert_eq!(ctx.set_ext_reg(multi_en, false, || Ok(u64::MAX)), Ok(()));
        assert_eq!(ctx.get_ext_reg(multi_en), Ok(0x2fbf));
        assert_eq!(call(&mut ctx, &mut vm, eid::TIME, 0, [5, 0, 0, 0, 0, 0]), cont(0, 0));
        assert_eq!(vm.timer, Some(5));
        assert_eq!(ctx.ext_reg_ids().count(), 12);
    }

    #[test]
    fn ipi_rfence_hsm_srst() {
        let mut ctx = SbiContext::new(CONFIG);
        let mut vm = Vm::new();
        // Harts 1, 2 (base 1): sent; hart 3 missing: INVALID_PARAM after.
        assert_eq!(call(&mut ctx, &mut vm, eid::IPI, 0, [0b111, 1, 0, 0, 0, 0]), cont(-3, 0));
        assert_eq!(vm.ipis, 0b110);
        assert_eq!(call(&mut ctx, &mut vm, eid::IPI, 0, [0, u64::MAX, 0, 0, 0, 0]), cont(0, 0));
        assert_eq!(vm.ipis, 0b1111);
        assert_eq!(call(&mut ctx, &mut vm, eid::RFENCE, 1, [1, 5, 0x1000, u64::MAX, 0, 0]), cont(0, 0));
        assert_eq!(vm.last_fence, Some((HartMask { mask: 1, base: 5 }, Fence::VvmaAll)));
        assert_eq!(call(&mut ctx, &mut vm, eid::RFENCE, 2, [1, 5, 0x1000, 0x2000, 7, 0]), cont(0, 0));
        assert_eq!(vm.last_fence.map(|f| f.1), Some(Fence::VvmaAsidGva { start: 0x1000, size: 0x2000, asid: 7 }));
        assert_eq!(call(&mut ctx, &mut vm, eid::RFENCE, 3, [0; 6]), cont(-2, 0));
        // HSM: status, start (hart 5 is index 3), already started.
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 2, [5, 0, 0, 0, 0, 0]), cont(0, 1));
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 0, [5, 0x8020_0000, 9, 0, 0, 0]), cont(0, 0));
        assert_eq!(vm.started, Some((3, 0x8020_0000, 9)));
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 0, [5, 0, 0, 0, 0, 0]), cont(-6, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 2, [4, 0, 0, 0, 0, 0]), cont(-3, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 2, [1 << 32 | 5, 0, 0, 0, 0, 0]), cont(0, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::HSM, 3, [0x8000_0000, 0, 0, 0, 0, 0]), cont(-2, 0));
        // SRST: shutdown, cold and warm reboot, anything else.
        assert_eq!(call(&mut ctx, &mut vm, eid::SRST, 0, [0, 1, 0, 0, 0, 0]), SbiExit::SystemEvent { ty: 1, reason: 1 });
        assert_eq!(call(&mut ctx, &mut vm, eid::SRST, 0, [2, 0, 0, 0, 0, 0]), SbiExit::SystemEvent { ty: 2, reason: 0 });
        assert_eq!(call(&mut ctx, &mut vm, eid::SRST, 0, [3, 0, 0, 0, 0, 0]), cont(-2, 0));
    }

    #[test]
    fn sta_shmem_and_steal() {
        let mut ctx = SbiContext::new(CONFIG);
        let mut vm = Vm::new();
        assert_eq!(call(&mut ctx, &mut vm, eid::STA, 0, [0x1010, 0, 0, 0, 0, 0]), cont(-3, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::STA, 0, [0x1000, 1, 0, 0, 0, 0]), cont(-5, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::STA, 0, [0x1000_0000, 0, 0, 0, 0, 0]), cont(-5, 0));
        assert_eq!(call(&mut ctx, &mut vm, eid::STA, 0, [0x1000, 0, 0, 0, 0, 0]), cont(0, 0));
        assert_eq!((vm.zeroed, ctx.sta().shmem()), (Some(0x1000), Some(0x1000)));
        let mut buf = [0u8; STA_SIZE];
        record_steal_time(ctx.sta_mut(), &mut buf, StealClock { run_delay: 1250, extra_ns: 50 });
        assert_eq!(buf.get(0..4), Some(&2u32.to_le_bytes()[..]));
        assert_eq!(buf.get(8..16), Some(&300u64.to_le_bytes()[..]));
        assert_eq!(call(&mut ctx, &mut vm, eid::STA, 0, [u64::MAX, u64::MAX, 0, 0, 0, 0]), cont(0, 0));
        assert_eq!(ctx.sta().shmem(), None);
    }

    #[test]
    fn forward_and_complete() {
        let mut ctx = SbiContext::new(CONFIG);
        let mut vm = Vm::new();
        let _ = ctx.complete_forward([0, 0]);
        let exit = call(&mut ctx, &mut vm, 0x0900_0001, 4, [1, 2, 3, 4, 5, 6]);
        assert!(matches!(exit, SbiExit::Forward(f) if f.args == [1, 2, 3, 4, 5, 6] && f.ret == [(-2i64) as u64, 0]));
        assert_eq!(ctx.complete_forward([0, 9]).map(|r| (r.a0, r.a1, r.sepc_advance)), Some((0, 9, 4)));
        assert_eq!(ctx.complete_forward([0, 9]), None);
    }

    /// Every named extension id (and some that are none) with function ids
    /// 0 to 9 and assorted arguments: a defined answer, error codes in the
    /// SBI range.
    #[test]
    fn sweep_eids_and_fids() {
        let eids = [0, 8, 0x10, eid::TIME, eid::IPI, eid::RFENCE, eid::HSM, eid::SRST, eid::SUSP, eid::PMU,
                    eid::DBCN, eid::STA, eid::FWFT, eid::MPXY, eid::EXPERIMENTAL_START, eid::VENDOR_END,
                    0x0a00_0000, u64::MAX];
        let args = [0, 1, 0x40, 0x8000_0000, u64::MAX];
        let mut answered = 0u32;
        for config in [CONFIG, SbiConfig { v01: true, ..CONFIG }] {
            let mut ctx = SbiContext::new(config);
            for e in eids {
                for fid in 0..10 {
                    for a in args {
                        let mut vm = Vm::new();
                        let exit = call(&mut ctx, &mut vm, e, fid, [a, a, a, a, a, a]);
                        let defined = match exit {
                            SbiExit::Continue { error, .. } => (-6..=0).contains(&error),
                            SbiExit::Forward(f) => f.extension_id == e && f.function_id == fid,
                            SbiExit::SystemEvent { ty, .. } => ty == 1 || ty == 2,
                            SbiExit::Redirect(t) => t.stval == a,
                            SbiExit::Fail(_) => false,
                        };
                        assert!(defined);
                        answered += 1;
                    }
                }
            }
        }
        assert_eq!(answered, 2 * 18 * 10 * 5);
    }
}

/// The ONE_REG logic (`isa.rs`, `onereg.rs`) on a host like the bench's
/// (imafdch, Sstc, Svadu, Zicbom, Sscofpmf; no Ssaia): a representative
/// subset of the host tests, with the kernel's `core`.
#[kunit_tests(kvm_rs_riscv_onereg)]
mod onereg_tests {
    use super::super::isa::{id, ExtSet, HostIsa, IsaChange, VcpuIsa};
    use super::super::onereg::testing::RegFixture;
    use super::super::onereg::{
        config, csr, for_each_reg, timer, HostFacts, CONFIG, CORE, CSR, FP_D, FP_F, ISA_EXT, KVM_REG_RISCV,
        SBI_EXT, SBI_STATE, TIMER, TYPE_MASK,
    };
    use super::super::regs::{SSTATUS_FS, SSTATUS_FS_INITIAL};
    use super::super::sbi::SbiExt;
    use super::CONFIG as SBI_CONFIG;
    use crate::kvm::abi::Errno;
    use crate::kvm::one_reg::{reg_size, KVM_REG_SIZE_U32, KVM_REG_SIZE_U64};
    use kernel::prelude::*;

    const U64: u64 = KVM_REG_RISCV | KVM_REG_SIZE_U64;
    const U32: u64 = KVM_REG_RISCV | KVM_REG_SIZE_U32;

    fn host() -> HostFacts {
        let mut exts = ExtSet::EMPTY;
        for e in [id::A, id::C, id::D, id::F, id::H, id::I, id::M, id::SSTC, id::SVADU, id::ZICBOM, id::SSCOFPMF] {
            exts.insert(e);
        }
        HostFacts {
            isa: HostIsa { exts, base: 0x11ad, v_user_allowed: false },
            satp_mode: 9,
            timebase: 10_000_000,
            cbom_block_size: 64,
            cboz_block_size: 0,
            cbop_block_size: 0,
        }
    }

    /// The vCPU of the tests: created at host time 50, now at 100 (guest
    /// time 50).
    fn vcpu() -> RegFixture {
        RegFixture::new(host(), [1, 2, 3], SBI_CONFIG, 50, 100)
    }

    #[test]
    fn isa_rules() {
        let host = host();
        let mut isa = VcpuIsa::new(&host.isa);
        assert!(!isa.has(id::H) && !isa.has(id::SSCOFPMF) && isa.has(id::SVADU));
        assert_eq!(isa.base(), 0x112d);
        assert_eq!(isa.set_single(id::A as u64, 0, &host.isa, false), Err(Errno::EINVAL));
        assert_eq!(isa.set_single(id::SSCOFPMF as u64, 1, &host.isa, false), Err(Errno::EINVAL));
        assert_eq!(isa.set_single(id::D as u64, 0, &host.isa, true), Err(Errno::EBUSY));
        assert_eq!(isa.set_single(id::D as u64, 0, &host.isa, false), Ok(IsaChange::FpReset));
        assert_eq!(isa.set_single(id::ZICBOZ as u64, 0, &host.isa, false), Err(Errno::ENOENT));
        assert_eq!(isa.set_base(1 << 25, &host.isa, false), Err(Errno::EINVAL));
        assert_eq!(isa.set_base(0, &host.isa, false), Ok(IsaChange::FpReset));
        assert_eq!(isa.base(), 0x1105);
        assert_eq!(isa.set_multi(0, u64::MAX, true, &host.isa, false), Ok(IsaChange::FpReset));
        assert_eq!(isa.base(), 0x112d);
        assert_eq!(isa.get_multi(2, &host.isa), Err(Errno::ENOENT));
    }

    #[test]
    fn registers() {
        let mut v = vcpu();
        assert_eq!(v.get64(U64 | CONFIG | config::SATP_MODE), Ok(9));
        assert_eq!(v.get64(U64 | CONFIG | config::MIMPID), Ok(3));
        assert_eq!(v.set(U64 | CORE | 10, 0xabc), Ok(8));
        assert_eq!(v.regs.core.x[10], 0xabc);
        assert_eq!(v.get64(U64 | CORE | 33), Err(Errno::ENOENT));
        assert_eq!(v.set(U64 | CSR | csr::SIP, u64::MAX), Ok(8));
        assert_eq!(v.get64(U64 | CSR | csr::SIP), Ok(0x2222));
        assert_eq!(v.get64(U64 | TIMER | timer::TIME), Ok(50));
        assert_eq!(v.get64(U32 | TIMER), Err(Errno::EINVAL));
        assert_eq!(v.set(U64 | FP_D | 1, 0x1_0000_0002), Ok(8));
        assert_eq!(v.get64(U32 | FP_F | 3), Ok(1));
        assert_eq!(v.set(U64 | ISA_EXT | id::F as u64, 0), Ok(8));
        assert_eq!(v.set(U64 | ISA_EXT | id::D as u64, 0), Ok(8));
        assert_eq!(v.regs.core.sstatus & SSTATUS_FS, 0);
        assert_eq!(v.get64(U32 | FP_F), Err(Errno::ENOENT));
        assert_eq!(v.set(U64 | CONFIG, 0x112d), Ok(8));
        assert_eq!(v.regs.core.sstatus & SSTATUS_FS, SSTATUS_FS_INITIAL);
        v.ran = true;
        assert_eq!(v.set(U64 | CONFIG, 0x1105), Err(Errno::EBUSY));
        assert_eq!(v.set(U64 | SBI_EXT | SbiExt::Dbcn as u64, 1), Err(Errno::EBUSY));
        assert_eq!(v.get64(U64 | 0xff00_0000), Err(Errno::ENOENT));
    }

    #[test]
    fn list_order_and_round_trip() -> Result {
        let mut v = vcpu();
        let mut ids = KVec::new();
        for_each_reg(&v.host, &v.config, &v.sbi, &mut |id| ids.push(id, GFP_KERNEL).map_err(|_| Errno::ENOMEM))
            .map_err(|_| EINVAL)?;
        // 8 config, 33 core, 11 CSR, 4 timer, 33 F, 33 D, 11 ISA, 12 SBI, 2 STA.
        assert_eq!(ids.len(), 8 + 33 + 11 + 4 + 33 + 33 + 11 + 12 + 2);
        let ty = |i: usize| ids.get(i).map(|id| id & TYPE_MASK);
        assert_eq!((ty(0), ty(8), ty(41), ty(52), ty(56), ty(89), ty(122), ty(133), ty(145)),
                   (Some(CONFIG), Some(CORE), Some(CSR), Some(TIMER), Some(FP_F), Some(FP_D), Some(ISA_EXT),
                    Some(SBI_EXT), Some(SBI_STATE)));
        let mut prev = 0;
        for &id in ids.iter() {
            // Upstream's order: increasing ids once the size is masked
            // (type, subtype, number).
            let key = id & !crate::kvm::one_reg::KVM_REG_SIZE_MASK;
            assert!(key > prev);
            prev = key;
            let val = v.get64(id).map_err(|_| EINVAL)?;
            if id != U64 | TIMER | timer::STATE {
                assert_eq!(v.set(id, val), Ok(reg_size(id)));
            }
        }
        Ok(())
    }
}
