// SPDX-License-Identifier: GPL-2.0

//! The register-id ABI shared by every architecture: `KVM_GET_ONE_REG`,
//! `KVM_SET_ONE_REG` and `KVM_GET_REG_LIST` (`include/uapi/linux/kvm.h`).
//!
//! Pure logic (`core` only), also tested on the host.
//!
//! A register id is `arch (bits 63:56) | size (55:52) | arch-defined
//! number`; the size field is `log2(bytes)`, so `KVM_REG_SIZE()` is 1 to
//! 32768 bytes, of which the ABI names up to `KVM_REG_SIZE_U2048` (256
//! bytes). The architecture decides what an id means and checks its size
//! itself, in upstream's order (see [`Arch::get_one_reg`]).
//!
//! `KVM_GET_REG_LIST` (`struct kvm_reg_list { __u64 n; __u64 reg[]; }`) is
//! the same on riscv64 and arm64, only the list differs: [`get_reg_list`]
//! is that flow, over a [`RegListUser`] (userspace in the module, a buffer in
//! the tests).
//!
//! [`Arch::get_one_reg`]: super::arch::Arch::get_one_reg

use super::abi::Errno;

/// `KVM_REG_ARCH_MASK`: the architecture of an id.
pub(crate) const KVM_REG_ARCH_MASK: u64 = 0xff00_0000_0000_0000;
/// `KVM_REG_SIZE_SHIFT`.
pub(crate) const KVM_REG_SIZE_SHIFT: u32 = 52;
/// `KVM_REG_SIZE_MASK`: the size field of an id.
pub(crate) const KVM_REG_SIZE_MASK: u64 = 0x00f0_0000_0000_0000;
/// `KVM_REG_SIZE_U32`.
pub(crate) const KVM_REG_SIZE_U32: u64 = 0x0020_0000_0000_0000;
/// `KVM_REG_SIZE_U64`.
pub(crate) const KVM_REG_SIZE_U64: u64 = 0x0030_0000_0000_0000;
/// `KVM_REG_SIZE_U128`.
pub(crate) const KVM_REG_SIZE_U128: u64 = 0x0040_0000_0000_0000;
/// The largest register the ABI names (`KVM_REG_SIZE_U2048`), in bytes.
pub(crate) const KVM_REG_MAX_BYTES: usize = 256;

/// Size in bytes of the register `id` names (`KVM_REG_SIZE()`): 1 to 32768
/// (the ABI names up to 256; larger sizes are errors for every register).
pub(crate) const fn reg_size(id: u64) -> usize {
    let shift = (id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT;
    // The size field is 4 bits wide, so the shift is at most 15.
    1usize << (shift & 0xf)
}

/// `KVM_REG_SIZE_*` for a register of `bytes` bytes (1 to 256, a power of
/// two), or `None`.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const fn size_field(bytes: usize) -> Option<u64> {
    if bytes == 0 || bytes > KVM_REG_MAX_BYTES || !bytes.is_power_of_two() {
        return None;
    }
    Some((bytes.trailing_zeros() as u64) << KVM_REG_SIZE_SHIFT)
}

/// Which register ioctl an arch check is for (see
/// [`Arch::regs_check`](super::arch::Arch::regs_check)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegsOp {
    /// `KVM_GET_ONE_REG` or `KVM_SET_ONE_REG`.
    OneReg,
    /// `KVM_GET_REG_LIST`.
    RegList,
}

/// The userspace side of a `struct kvm_reg_list`.
pub(crate) trait RegListUser {
    /// Reads `n`, the room the caller gave (`copy_from_user`, `EFAULT`).
    fn read_n(&mut self) -> Result<u64, Errno>;
    /// Writes back `n`, the number of registers (`copy_to_user`, `EFAULT`).
    fn write_n(&mut self, n: u64) -> Result<(), Errno>;
    /// Writes `reg[index]` (`put_user`, `EFAULT`); `index` is below the `n`
    /// that [`RegListUser::read_n`] returned.
    fn write_reg(&mut self, index: u64, id: u64) -> Result<(), Errno>;
}

/// A walk over a vCPU's registers: calls `emit` once per register id, in
/// `KVM_GET_REG_LIST` order, and stops at the first error `emit` returns.
pub(crate) type RegEmit<'a> = &'a mut dyn FnMut(u64) -> Result<(), Errno>;

/// `KVM_GET_REG_LIST` after the arch's own checks, as riscv64's and arm64's
/// `kvm_arch_vcpu_ioctl()`: read `n`, write back the number of registers
/// (always, even when it fits), `E2BIG` if `n` was too small, else the ids.
///
/// `walk` lists the registers (see [`RegEmit`]); it is called twice, to
/// count and to copy (as upstream walks its tables with and without a user
/// pointer), and must list the same registers both times.
pub(crate) fn get_reg_list<U: RegListUser>(
    user: &mut U,
    mut walk: impl FnMut(RegEmit<'_>) -> Result<(), Errno>,
) -> Result<(), Errno> {
    // Upstream reads `n` into an `unsigned` (riscv64 and arm64
    // `kvm_arch_vcpu_ioctl()`): only its low 32 bits count.
    let room = u64::from(user.read_n()? as u32);
    let mut count = 0u64;
    walk(&mut |_| {
        count = count.checked_add(1).ok_or(Errno::EINVAL)?;
        Ok(())
    })?;
    user.write_n(count)?;
    if room < count {
        return Err(Errno::E2BIG);
    }
    let mut index = 0u64;
    walk(&mut |id| {
        // A walk that grew between the two passes is a kvm_rs bug; never
        // write beyond what was counted (and so beyond the user's room).
        if index >= count {
            return Err(Errno::EINVAL);
        }
        user.write_reg(index, id)?;
        index += 1;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Buf {
        n: u64,
        regs: [u64; 8],
        fault_at: Option<u64>,
        n_fault: bool,
    }

    impl Buf {
        fn new(n: u64) -> Buf {
            Buf { n, regs: [0; 8], fault_at: None, n_fault: false }
        }
    }

    impl RegListUser for Buf {
        fn read_n(&mut self) -> Result<u64, Errno> {
            if self.n_fault {
                return Err(Errno::EFAULT);
            }
            Ok(self.n)
        }
        fn write_n(&mut self, n: u64) -> Result<(), Errno> {
            self.n = n;
            Ok(())
        }
        fn write_reg(&mut self, index: u64, id: u64) -> Result<(), Errno> {
            if Some(index) == self.fault_at {
                return Err(Errno::EFAULT);
            }
            let slot = self.regs.get_mut(index as usize).ok_or(Errno::EFAULT)?;
            *slot = id;
            Ok(())
        }
    }

    fn three(emit: RegEmit<'_>) -> Result<(), Errno> {
        for id in [0x10, 0x20, 0x30] {
            emit(id)?;
        }
        Ok(())
    }

    #[test]
    fn size_field_decodes_and_encodes() {
        assert_eq!(reg_size(KVM_REG_SIZE_U32), 4);
        assert_eq!(reg_size(KVM_REG_SIZE_U64), 8);
        assert_eq!(reg_size(KVM_REG_SIZE_U128), 16);
        assert_eq!(reg_size(0), 1);
        assert_eq!(reg_size(0x0080_0000_0000_0000), 256);
        assert_eq!(reg_size(u64::MAX), 1 << 15);
        assert_eq!(size_field(4), Some(KVM_REG_SIZE_U32));
        assert_eq!(size_field(16), Some(KVM_REG_SIZE_U128));
        assert_eq!(size_field(256), Some(0x0080_0000_0000_0000));
        assert_eq!(size_field(0), None);
        assert_eq!(size_field(12), None);
        assert_eq!(size_field(512), None);
        for bytes in [1, 2, 4, 8, 16, 32, 64, 128, 256] {
            assert_eq!(size_field(bytes).map(reg_size), Some(bytes));
        }
    }

    #[test]
    fn reg_list_fits() {
        let mut b = Buf::new(3);
        assert_eq!(get_reg_list(&mut b, three), Ok(()));
        assert_eq!(b.n, 3);
        assert_eq!(&b.regs[..4], &[0x10, 0x20, 0x30, 0]);
        let mut b = Buf::new(8);
        assert_eq!(get_reg_list(&mut b, three), Ok(()));
        assert_eq!(b.n, 3);
    }

    #[test]
    fn reg_list_room_is_the_low_32_bits_of_n() {
        // 2^32 + 1 is 1 to upstream's `unsigned n`: too small.
        let mut b = Buf::new((1 << 32) + 1);
        assert_eq!(get_reg_list(&mut b, three), Err(Errno::E2BIG));
        assert_eq!(b.n, 3);
        assert_eq!(b.regs, [0; 8]);
        let mut b = Buf::new((1 << 32) | 3);
        assert_eq!(get_reg_list(&mut b, three), Ok(()));
        assert_eq!(&b.regs[..3], &[0x10, 0x20, 0x30]);
    }

    #[test]
    fn reg_list_too_small_is_e2big_with_n_written() {
        for room in [0, 1, 2] {
            let mut b = Buf::new(room);
            assert_eq!(get_reg_list(&mut b, three), Err(Errno::E2BIG));
            assert_eq!(b.n, 3);
            assert_eq!(b.regs, [0; 8]);
        }
    }

    #[test]
    fn reg_list_faults() {
        let mut b = Buf::new(3);
        b.n_fault = true;
        assert_eq!(get_reg_list(&mut b, three), Err(Errno::EFAULT));
        let mut b = Buf::new(3);
        b.fault_at = Some(1);
        assert_eq!(get_reg_list(&mut b, three), Err(Errno::EFAULT));
        assert_eq!(b.regs[0], 0x10);
    }

    #[test]
    fn reg_list_walk_errors_and_growth() {
        let mut b = Buf::new(8);
        assert_eq!(get_reg_list(&mut b, |_| Err(Errno::ENOMEM)), Err(Errno::ENOMEM));
        // A walk that lists more the second time stops at the count.
        let mut calls = 0;
        let growing = |emit: RegEmit<'_>| {
            calls += 1;
            for id in 0..calls {
                emit(id)?;
            }
            Ok(())
        };
        let mut b = Buf::new(8);
        assert_eq!(get_reg_list(&mut b, growing), Err(Errno::EINVAL));
        assert_eq!(b.n, 1);
    }
}
