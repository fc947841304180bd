// SPDX-License-Identifier: GPL-2.0

//! The ISA extensions of a riscv64 vCPU, as userspace sees and changes
//! them through ONE_REG: the `KVM_REG_RISCV_ISA_EXT` registers (one per
//! extension KVM knows, `enum KVM_RISCV_ISA_EXT_ID`) and the single-letter
//! bitmap `KVM_REG_RISCV_CONFIG_REG(isa)` (upstream `arch/riscv/kvm/isa.c`
//! and the ISA parts of `vcpu_onereg.c`).
//!
//! Pure logic (`core` only), tested on the host (`make hosttest`) and in
//! KUnit. The kernel glue supplies the host's facts once, as a [`HostIsa`]
//! (which extensions the host has, from `__riscv_isa_extension_available()`
//! on the numbers in [`host_ext`], and `riscv_v_vstate_ctrl_user_allowed()`).
//!
//! # The rules (upstream's)
//!
//! - An extension exists for a vCPU (has a register, is listed by
//!   `KVM_GET_REG_LIST`) only if the host has it. Smnpm is the exception in
//!   naming: the guest's Smnpm is backed by the host's Ssnpm.
//! - A new vCPU starts with every host extension that may be enabled
//!   ([`enable_allowed`]): not H, not Sscofpmf without Ssaia, not Svadu
//!   unless the host updates A/D bits in hardware (host Svadu), not V unless
//!   user vector state control is allowed.
//! - Before the first `KVM_RUN` userspace may enable what
//!   [`enable_allowed`] allows and disable what [`disable_allowed`] allows
//!   (most extensions that have no architectural off switch cannot be
//!   disabled); afterwards any change is `EBUSY`. Writing the current value
//!   is always accepted.
//!
//! The vCPU's ISA ([`VcpuIsa`]) is a bitmap indexed by KVM id; upstream
//! keeps the host-numbered bitmap `vcpu->arch.isa`, which holds exactly the
//! same information (only extensions of the KVM table are ever set).

use crate::kvm::abi::Errno;

/// `KVM_RISCV_ISA_EXT_MAX`: the number of ISA extension ids.
pub(crate) const ISA_EXT_MAX: usize = 80;

/// `KVM_RISCV_ISA_EXT_*` (`arch/riscv/include/uapi/asm/kvm.h`).
pub(crate) mod id {
    pub(crate) const A: usize = 0;
    pub(crate) const C: usize = 1;
    pub(crate) const D: usize = 2;
    pub(crate) const F: usize = 3;
    pub(crate) const H: usize = 4;
    pub(crate) const I: usize = 5;
    pub(crate) const M: usize = 6;
    pub(crate) const SVPBMT: usize = 7;
    pub(crate) const SSTC: usize = 8;
    pub(crate) const SVINVAL: usize = 9;
    pub(crate) const ZIHINTPAUSE: usize = 10;
    pub(crate) const ZICBOM: usize = 11;
    pub(crate) const ZICBOZ: usize = 12;
    pub(crate) const ZBB: usize = 13;
    pub(crate) const SSAIA: usize = 14;
    pub(crate) const V: usize = 15;
    pub(crate) const SVNAPOT: usize = 16;
    pub(crate) const ZBA: usize = 17;
    pub(crate) const ZBS: usize = 18;
    pub(crate) const ZICNTR: usize = 19;
    pub(crate) const ZICSR: usize = 20;
    pub(crate) const ZIFENCEI: usize = 21;
    pub(crate) const ZIHPM: usize = 22;
    pub(crate) const SMSTATEEN: usize = 23;
    pub(crate) const ZICOND: usize = 24;
    pub(crate) const ZBC: usize = 25;
    pub(crate) const ZBKB: usize = 26;
    pub(crate) const ZBKC: usize = 27;
    pub(crate) const ZBKX: usize = 28;
    pub(crate) const ZKND: usize = 29;
    pub(crate) const ZKNE: usize = 30;
    pub(crate) const ZKNH: usize = 31;
    pub(crate) const ZKR: usize = 32;
    pub(crate) const ZKSED: usize = 33;
    pub(crate) const ZKSH: usize = 34;
    pub(crate) const ZKT: usize = 35;
    pub(crate) const ZVBB: usize = 36;
    pub(crate) const ZVBC: usize = 37;
    pub(crate) const ZVKB: usize = 38;
    pub(crate) const ZVKG: usize = 39;
    pub(crate) const ZVKNED: usize = 40;
    pub(crate) const ZVKNHA: usize = 41;
    pub(crate) const ZVKNHB: usize = 42;
    pub(crate) const ZVKSED: usize = 43;
    pub(crate) const ZVKSH: usize = 44;
    pub(crate) const ZVKT: usize = 45;
    pub(crate) const ZFH: usize = 46;
    pub(crate) const ZFHMIN: usize = 47;
    pub(crate) const ZIHINTNTL: usize = 48;
    pub(crate) const ZVFH: usize = 49;
    pub(crate) const ZVFHMIN: usize = 50;
    pub(crate) const ZFA: usize = 51;
    pub(crate) const ZTSO: usize = 52;
    pub(crate) const ZACAS: usize = 53;
    pub(crate) const SSCOFPMF: usize = 54;
    pub(crate) const ZIMOP: usize = 55;
    pub(crate) const ZCA: usize = 56;
    pub(crate) const ZCB: usize = 57;
    pub(crate) const ZCD: usize = 58;
    pub(crate) const ZCF: usize = 59;
    pub(crate) const ZCMOP: usize = 60;
    pub(crate) const ZAWRS: usize = 61;
    pub(crate) const SMNPM: usize = 62;
    pub(crate) const SSNPM: usize = 63;
    pub(crate) const SVADE: usize = 64;
    pub(crate) const SVADU: usize = 65;
    pub(crate) const SVVPTC: usize = 66;
    pub(crate) const ZABHA: usize = 67;
    pub(crate) const ZICCRSE: usize = 68;
    pub(crate) const ZAAMO: usize = 69;
    pub(crate) const ZALRSC: usize = 70;
    pub(crate) const ZICBOP: usize = 71;
    pub(crate) const ZFBFMIN: usize = 72;
    pub(crate) const ZVFBFMIN: usize = 73;
    pub(crate) const ZVFBFWMA: usize = 74;
    pub(crate) const ZCLSD: usize = 75;
    pub(crate) const ZILSD: usize = 76;
    pub(crate) const ZALASR: usize = 77;
    pub(crate) const ZICFILP: usize = 78;
    pub(crate) const ZICFISS: usize = 79;
}

/// The host kernel's extension number (`RISCV_ISA_EXT_*` of Linux 7.3's
/// `asm/hwcap.h`) that backs each KVM id, for
/// `__riscv_isa_extension_available(NULL, n)`: single letters are their
/// letter's index (`'x' - 'a'`), the rest the logical ids from 26 on. This
/// is upstream's `kvm_isa_ext_arr[]` with `__kvm_riscv_isa_check_host()`'s
/// Smnpm-to-Ssnpm substitution already applied.
///
/// These numbers are internal to the kernel (not ABI); the glue checks the
/// ones bindgen exports against this table at build time.
pub(crate) const HOST_EXT: [u32; ISA_EXT_MAX] = [
    0,  // A
    2,  // C
    3,  // D
    5,  // F
    7,  // H
    8,  // I
    12, // M
    29, // SVPBMT
    27, // SSTC
    28, // SVINVAL
    32, // ZIHINTPAUSE
    31, // ZICBOM
    34, // ZICBOZ
    30, // ZBB
    36, // SSAIA
    21, // V
    33, // SVNAPOT
    37, // ZBA
    38, // ZBS
    39, // ZICNTR
    40, // ZICSR
    41, // ZIFENCEI
    42, // ZIHPM
    43, // SMSTATEEN
    44, // ZICOND
    45, // ZBC
    46, // ZBKB
    47, // ZBKC
    48, // ZBKX
    49, // ZKND
    50, // ZKNE
    51, // ZKNH
    52, // ZKR
    53, // ZKSED
    54, // ZKSH
    55, // ZKT
    56, // ZVBB
    57, // ZVBC
    58, // ZVKB
    59, // ZVKG
    60, // ZVKNED
    61, // ZVKNHA
    62, // ZVKNHB
    63, // ZVKSED
    64, // ZVKSH
    65, // ZVKT
    66, // ZFH
    67, // ZFHMIN
    68, // ZIHINTNTL
    69, // ZVFH
    70, // ZVFHMIN
    71, // ZFA
    72, // ZTSO
    73, // ZACAS
    26, // SSCOFPMF
    79, // ZIMOP
    80, // ZCA
    81, // ZCB
    82, // ZCD
    83, // ZCF
    84, // ZCMOP
    85, // ZAWRS
    89, // SMNPM: the host's SSNPM (upstream's substitution)
    89, // SSNPM
    92, // SVADE
    93, // SVADU
    86, // SVVPTC
    90, // ZABHA
    91, // ZICCRSE
    97, // ZAAMO
    98, // ZALRSC
    99, // ZICBOP
    94, // ZFBFMIN
    95, // ZVFBFMIN
    96, // ZVFBFWMA
    103, // ZCLSD
    102, // ZILSD
    101, // ZALASR
    104, // ZICFILP
    105, // ZICFISS
];

/// `RISCV_ISA_EXT_BASE`: the single-letter bits of the `isa` config
/// register are 0 to 25 (`'a'` to `'z'`).
pub(crate) const BASE_ISA_MASK: u64 = (1 << 26) - 1;

/// The KVM id of single-letter extension `letter` (`0` = `'a'`), if KVM
/// knows it (`kvm_riscv_base2isa_ext()`).
pub(crate) const fn letter_id(letter: u32) -> Option<usize> {
    Some(match letter {
        0 => id::A,
        2 => id::C,
        3 => id::D,
        5 => id::F,
        7 => id::H,
        8 => id::I,
        12 => id::M,
        21 => id::V,
        _ => return None,
    })
}

/// The single-letter bit of KVM id `ext`, if it is a single letter.
const fn id_letter(ext: usize) -> Option<u32> {
    Some(match ext {
        id::A => 0,
        id::C => 2,
        id::D => 3,
        id::F => 5,
        id::H => 7,
        id::I => 8,
        id::M => 12,
        id::V => 21,
        _ => return None,
    })
}

/// A set of KVM ISA extension ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExtSet(u128);

impl ExtSet {
    /// The empty set.
    pub(crate) const EMPTY: ExtSet = ExtSet(0);

    /// The set of `ids` (ids at or above [`ISA_EXT_MAX`] are ignored).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn of(ids: &[usize]) -> ExtSet {
        let mut s = ExtSet::EMPTY;
        for &e in ids {
            s.insert(e);
        }
        s
    }

    /// Whether `ext` is in the set (`false` for an id at or past
    /// [`ISA_EXT_MAX`]).
    pub(crate) const fn contains(&self, ext: usize) -> bool {
        ext < ISA_EXT_MAX && self.0 & (1 << ext) != 0
    }

    /// Adds `ext` (ignored at or past [`ISA_EXT_MAX`]).
    pub(crate) fn insert(&mut self, ext: usize) {
        if ext < ISA_EXT_MAX {
            self.0 |= 1 << ext;
        }
    }

    /// Removes `ext`.
    pub(crate) fn remove(&mut self, ext: usize) {
        if ext < ISA_EXT_MAX {
            self.0 &= !(1 << ext);
        }
    }

    /// The ids in the set, in increasing order.
    pub(crate) fn iter(self) -> impl Iterator<Item = usize> {
        (0..ISA_EXT_MAX).filter(move |&e| self.contains(e))
    }
}

/// What the host offers, read once at module load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HostIsa {
    /// The KVM ids whose [`HOST_EXT`] the host has
    /// (`__kvm_riscv_isa_check_host()` succeeds).
    pub(crate) exts: ExtSet,
    /// `riscv_isa_extension_base(NULL)`: the host's single-letter bits.
    pub(crate) base: u64,
    /// `riscv_v_vstate_ctrl_user_allowed()`.
    pub(crate) v_user_allowed: bool,
}

impl HostIsa {
    /// Whether the host has KVM extension `ext` (`!kvm_riscv_isa_check_host()`).
    pub(crate) const fn has(&self, ext: usize) -> bool {
        self.exts.contains(ext)
    }
}

/// `kvm_riscv_isa_enable_allowed()`: may `ext` be turned on for a guest.
pub(crate) fn enable_allowed(ext: usize, host: &HostIsa) -> bool {
    match ext {
        id::H => false,
        // Sscofpmf depends on the interrupt filtering defined in Ssaia.
        id::SSCOFPMF => host.has(id::SSAIA),
        // henvcfg.ADUE is read-only zero unless the host enabled Svadu
        // (arch_has_hw_pte_young()).
        id::SVADU => host.has(id::SVADU),
        id::V => host.v_user_allowed,
        _ => true,
    }
}

/// `kvm_riscv_isa_disable_allowed()`: may `ext` be turned off for a guest.
pub(crate) fn disable_allowed(ext: usize, host: &HostIsa) -> bool {
    match ext {
        // No mechanism to disable them (no config bit, or always usable).
        id::A | id::C | id::I | id::M | id::SSCOFPMF | id::SSNPM | id::SSTC | id::SVINVAL
        | id::SVNAPOT | id::SVVPTC | id::ZAAMO | id::ZABHA | id::ZACAS | id::ZALASR | id::ZALRSC
        | id::ZAWRS | id::ZBA | id::ZBB | id::ZBC | id::ZBKB | id::ZBKC | id::ZBKX | id::ZBS
        | id::ZCA | id::ZCB | id::ZCD | id::ZCF | id::ZCMOP | id::ZFA | id::ZFBFMIN | id::ZFH
        | id::ZFHMIN | id::ZICBOP | id::ZICCRSE | id::ZICNTR | id::ZICOND | id::ZICSR
        | id::ZIFENCEI | id::ZIHINTNTL | id::ZIHINTPAUSE | id::ZIHPM | id::ZIMOP | id::ZKND
        | id::ZKNE | id::ZKNH | id::ZKR | id::ZKSED | id::ZKSH | id::ZKT | id::ZTSO | id::ZVBB
        | id::ZVBC | id::ZVFBFMIN | id::ZVFBFWMA | id::ZVFH | id::ZVFHMIN | id::ZVKB | id::ZVKG
        | id::ZVKNED | id::ZVKNHA | id::ZVKNHB | id::ZVKSED | id::ZVKSH | id::ZVKT => false,
        // Ssaia can be hidden with Smstateen.
        id::SSAIA => host.has(id::SMSTATEEN),
        // Svade can only be turned off if Svadu can take over.
        id::SVADE => host.has(id::SVADU),
        _ => true,
    }
}

/// `KVM_REG_RISCV_ISA_MULTI_REG_LAST`: the last bitmap register of the
/// multi-extension subtypes (64 ids per register).
pub(crate) const MULTI_REG_LAST: u64 = ((ISA_EXT_MAX - 1) / 64) as u64;

/// What a successful change of the vCPU's ISA asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IsaChange {
    /// Nothing changed (the value written was the current one).
    None,
    /// The ISA was rewritten: reset the FP state (`kvm_riscv_vcpu_fp_reset()`:
    /// `sstatus.FS` Initial if F or D is enabled, else Off).
    FpReset,
}

/// The extensions of one vCPU (upstream's `vcpu->arch.isa`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VcpuIsa {
    exts: ExtSet,
}

impl VcpuIsa {
    /// `kvm_riscv_vcpu_setup_isa()`: every host extension that may be
    /// enabled.
    pub(crate) fn new(host: &HostIsa) -> VcpuIsa {
        let mut exts = ExtSet::EMPTY;
        for e in host.exts.iter() {
            if enable_allowed(e, host) {
                exts.insert(e);
            }
        }
        VcpuIsa { exts }
    }

    /// Whether the vCPU has `ext` (`riscv_isa_extension_available(vcpu->arch.isa, ...)`).
    pub(crate) const fn has(&self, ext: usize) -> bool {
        self.exts.contains(ext)
    }

    /// The extensions enabled.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) const fn exts(&self) -> ExtSet {
        self.exts
    }

    /// `KVM_REG_RISCV_CONFIG_REG(isa)`: the single-letter bits
    /// (`isa[0] & KVM_RISCV_BASE_ISA_MASK`).
    pub(crate) fn base(&self) -> u64 {
        self.exts.iter().filter_map(id_letter).fold(0, |acc, l| acc | 1 << l)
    }

    /// `KVM_SET_ONE_REG` of `KVM_REG_RISCV_CONFIG_REG(isa)`, with upstream's
    /// rules, in its order:
    ///
    /// - `EINVAL` if a bit from 25 up is set in the low 32 bits (upstream
    ///   tests `fls()` of the value, which takes an `unsigned int`: bits 32
    ///   and up pass this check and are then dropped by the masks below);
    /// - the current value: nothing to do;
    /// - after the first run: `EBUSY`;
    /// - otherwise letters KVM does not know, or that may not be enabled,
    ///   are dropped, letters that may not be disabled are kept, the result
    ///   is limited to the host's letters and replaces the vCPU's letters
    ///   (multi-letter extensions are untouched).
    pub(crate) fn set_base(&mut self, value: u64, host: &HostIsa, ran: bool) -> Result<IsaChange, Errno> {
        if (value as u32) >> 25 != 0 {
            return Err(Errno::EINVAL);
        }
        if value == self.base() {
            return Ok(IsaChange::None);
        }
        if ran {
            return Err(Errno::EBUSY);
        }
        let mut v = value;
        for letter in 0..26u32 {
            let bit = 1u64 << letter;
            let Some(ext) = letter_id(letter) else {
                v &= !bit;
                continue;
            };
            if !enable_allowed(ext, host) && v & bit != 0 {
                v &= !bit;
            }
            if !disable_allowed(ext, host) && v & bit == 0 {
                v |= bit;
            }
        }
        v &= host.base & BASE_ISA_MASK;
        for letter in 0..26u32 {
            if let Some(ext) = letter_id(letter) {
                if v & (1 << letter) != 0 {
                    self.exts.insert(ext);
                } else {
                    self.exts.remove(ext);
                }
            }
        }
        Ok(IsaChange::FpReset)
    }

    /// `KVM_GET_ONE_REG` of `KVM_REG_RISCV_ISA_SINGLE | ext`: 1 if enabled,
    /// 0 if not, `ENOENT` if the host lacks it (or the id is unknown).
    pub(crate) fn get_single(&self, ext: u64, host: &HostIsa) -> Result<u64, Errno> {
        let ext = host_ext(ext, host)?;
        Ok(u64::from(self.has(ext)))
    }

    /// `KVM_SET_ONE_REG` of `KVM_REG_RISCV_ISA_SINGLE | ext`
    /// (`riscv_vcpu_set_isa_ext_single()`): `ENOENT` if the host lacks it;
    /// the current value (0/1) is accepted; then `EBUSY` after the first
    /// run; 1 enables and 0 disables if allowed, anything else is
    /// `EINVAL`.
    pub(crate) fn set_single(&mut self, ext: u64, value: u64, host: &HostIsa, ran: bool) -> Result<IsaChange, Errno> {
        let ext = host_ext(ext, host)?;
        if value == u64::from(self.has(ext)) {
            return Ok(IsaChange::None);
        }
        if ran {
            return Err(Errno::EBUSY);
        }
        if value == 1 && enable_allowed(ext, host) {
            self.exts.insert(ext);
        } else if value == 0 && disable_allowed(ext, host) {
            self.exts.remove(ext);
        } else {
            return Err(Errno::EINVAL);
        }
        Ok(IsaChange::FpReset)
    }

    /// `KVM_GET_ONE_REG` of `KVM_REG_RISCV_ISA_MULTI_EN | reg`: bit `i` set
    /// when extension `64 * reg + i` is enabled; `ENOENT` past
    /// [`MULTI_REG_LAST`]. (`MULTI_DIS` is its complement.)
    pub(crate) fn get_multi(&self, reg: u64, host: &HostIsa) -> Result<u64, Errno> {
        let base = multi_base(reg)?;
        let mut bits = 0u64;
        for i in 0..64u64 {
            let ext = base + i;
            if ext >= ISA_EXT_MAX as u64 {
                break;
            }
            if self.get_single(ext, host) == Ok(1) {
                bits |= 1 << i;
            }
        }
        Ok(bits)
    }

    /// `KVM_SET_ONE_REG` of `KVM_REG_RISCV_ISA_MULTI_EN`/`_DIS | reg`:
    /// enables (or disables) each extension whose bit is set, one by one
    /// with the single-register rules, ignoring their errors (so this
    /// succeeds even after the first run, changing nothing); `ENOENT` past
    /// [`MULTI_REG_LAST`]. Returns [`IsaChange::FpReset`] if anything
    /// changed.
    pub(crate) fn set_multi(&mut self, reg: u64, mask: u64, enable: bool, host: &HostIsa, ran: bool) -> Result<IsaChange, Errno> {
        let base = multi_base(reg)?;
        let mut change = IsaChange::None;
        for i in (0..64u64).filter(|i| mask & (1 << i) != 0) {
            let ext = base + i;
            if ext >= ISA_EXT_MAX as u64 {
                break;
            }
            if self.set_single(ext, u64::from(enable), host, ran) == Ok(IsaChange::FpReset) {
                change = IsaChange::FpReset;
            }
        }
        Ok(change)
    }
}

/// `__kvm_riscv_isa_check_host()`: the id as an index if the host has it.
fn host_ext(ext: u64, host: &HostIsa) -> Result<usize, Errno> {
    let ext = usize::try_from(ext).map_err(|_| Errno::ENOENT)?;
    if !host.has(ext) {
        return Err(Errno::ENOENT);
    }
    Ok(ext)
}

/// The first extension id of multi-extension register `reg`.
fn multi_base(reg: u64) -> Result<u64, Errno> {
    if reg > MULTI_REG_LAST {
        return Err(Errno::ENOENT);
    }
    Ok(reg * 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The emulated host of the bench (`-cpu rv64,h=true,sscofpmf=true`):
    /// imafdch, Sstc, Svadu, Zicbo*, Sscofpmf, no Ssaia, no Smstateen, no V.
    fn qemu_host() -> HostIsa {
        HostIsa {
            exts: ExtSet::of(&[
                id::A,
                id::C,
                id::D,
                id::F,
                id::H,
                id::I,
                id::M,
                id::SSTC,
                id::SVADU,
                id::SVADE,
                id::ZICBOM,
                id::ZICBOZ,
                id::ZICBOP,
                id::SSCOFPMF,
                id::ZBA,
                id::ZICSR,
            ]),
            base: (1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 12),
            v_user_allowed: false,
        }
    }

    #[test]
    fn host_numbers_are_upstreams() {
        // Single letters are their letter's index.
        for (ext, letter) in [(id::A, 'a'), (id::C, 'c'), (id::D, 'd'), (id::F, 'f'), (id::H, 'h'), (id::I, 'i'), (id::M, 'm'), (id::V, 'v')] {
            assert_eq!(HOST_EXT[ext], letter as u32 - 'a' as u32);
            assert_eq!(letter_id(HOST_EXT[ext]), Some(ext));
            assert_eq!(id_letter(ext), Some(HOST_EXT[ext]));
        }
        // Multi-letter ones are 26..128 and distinct, except Smnpm, which is
        // backed by Ssnpm.
        for (i, &a) in HOST_EXT.iter().enumerate() {
            if id_letter(i).is_none() {
                assert!((26..128).contains(&a), "{i}");
            }
            for (j, &b) in HOST_EXT.iter().enumerate().skip(i + 1) {
                if a == b {
                    assert_eq!((i, j), (id::SMNPM, id::SSNPM));
                }
            }
        }
        assert_eq!(HOST_EXT[id::SSCOFPMF], 26);
        assert_eq!(HOST_EXT[id::ZICFISS], 105);
        assert_eq!(MULTI_REG_LAST, 1);
    }

    #[test]
    fn new_vcpu_gets_what_may_be_enabled() {
        let host = qemu_host();
        let isa = VcpuIsa::new(&host);
        // Not H; not Sscofpmf without Ssaia; Svadu because the host has it.
        assert!(!isa.has(id::H));
        assert!(!isa.has(id::SSCOFPMF));
        assert!(isa.has(id::SVADU) && isa.has(id::SVADE) && isa.has(id::SSTC));
        assert!(!isa.has(id::V) && !isa.has(id::SSAIA));
        assert_eq!(isa.base(), host.base & !(1 << 7));
        assert_eq!(isa.get_single(id::H as u64, &host), Ok(0));
        assert_eq!(isa.get_single(id::V as u64, &host), Err(Errno::ENOENT));
        assert_eq!(isa.get_single(ISA_EXT_MAX as u64, &host), Err(Errno::ENOENT));
        assert_eq!(isa.get_single(u64::MAX, &host), Err(Errno::ENOENT));
    }

    #[test]
    fn single_rules() {
        let host = qemu_host();
        let mut isa = VcpuIsa::new(&host);
        // Current values are always accepted, even after a run.
        assert_eq!(isa.set_single(id::A as u64, 1, &host, true), Ok(IsaChange::None));
        assert_eq!(isa.set_single(id::H as u64, 0, &host, true), Ok(IsaChange::None));
        // A cannot be disabled, H cannot be enabled, Sscofpmf neither.
        assert_eq!(isa.set_single(id::A as u64, 0, &host, false), Err(Errno::EINVAL));
        assert_eq!(isa.set_single(id::H as u64, 1, &host, false), Err(Errno::EINVAL));
        assert_eq!(isa.set_single(id::SSCOFPMF as u64, 1, &host, false), Err(Errno::EINVAL));
        assert_eq!(isa.set_single(id::SSTC as u64, 0, &host, false), Err(Errno::EINVAL));
        // Values other than 0/1 are EINVAL (after the run check: EBUSY).
        assert_eq!(isa.set_single(id::D as u64, 2, &host, false), Err(Errno::EINVAL));
        assert_eq!(isa.set_single(id::D as u64, 2, &host, true), Err(Errno::EBUSY));
        // D and F, Svade (host has Svadu), Zicbom: may go.
        for e in [id::D, id::F, id::SVADE, id::ZICBOM, id::SVADU] {
            assert_eq!(isa.set_single(e as u64, 0, &host, true), Err(Errno::EBUSY));
            assert_eq!(isa.set_single(e as u64, 0, &host, false), Ok(IsaChange::FpReset), "{e}");
            assert_eq!(isa.get_single(e as u64, &host), Ok(0));
            assert_eq!(isa.set_single(e as u64, 1, &host, false), Ok(IsaChange::FpReset));
        }
        // Unknown or host-less ids.
        assert_eq!(isa.set_single(id::V as u64, 1, &host, false), Err(Errno::ENOENT));
        assert_eq!(isa.set_single(80, 1, &host, false), Err(Errno::ENOENT));
    }

    #[test]
    fn ssaia_and_svade_depend_on_the_host() {
        let mut host = qemu_host();
        host.exts.insert(id::SSAIA);
        host.exts.remove(id::SVADU);
        let mut isa = VcpuIsa::new(&host);
        assert!(isa.has(id::SSCOFPMF) && isa.has(id::SSAIA));
        // No Smstateen: Ssaia stays; no Svadu: Svade stays.
        assert_eq!(isa.set_single(id::SSAIA as u64, 0, &host, false), Err(Errno::EINVAL));
        assert_eq!(isa.set_single(id::SVADE as u64, 0, &host, false), Err(Errno::EINVAL));
        host.exts.insert(id::SMSTATEEN);
        assert_eq!(isa.set_single(id::SSAIA as u64, 0, &host, false), Ok(IsaChange::FpReset));
        // Smnpm is the host's Ssnpm.
        host.exts.insert(id::SMNPM);
        host.exts.insert(id::SSNPM);
        let mut isa = VcpuIsa::new(&host);
        assert_eq!(isa.set_single(id::SMNPM as u64, 0, &host, false), Ok(IsaChange::FpReset));
        assert_eq!(isa.set_single(id::SSNPM as u64, 0, &host, false), Err(Errno::EINVAL));
    }

    #[test]
    fn multi_registers() {
        let host = qemu_host();
        let mut isa = VcpuIsa::new(&host);
        let en = isa.get_multi(0, &host);
        let expected: u64 = isa.exts().iter().filter(|&e| e < 64).fold(0, |a, e| a | 1 << e);
        assert_eq!(en, Ok(expected));
        assert_eq!(isa.get_multi(1, &host), Ok(isa.exts().iter().filter(|&e| e >= 64).fold(0, |a, e| a | 1 << (e - 64))));
        assert_eq!(isa.get_multi(2, &host), Err(Errno::ENOENT));
        // Disable D, F and A at once: A stays (errors ignored).
        let mask = 1 << id::D | 1 << id::F | 1 << id::A;
        assert_eq!(isa.set_multi(0, mask, false, &host, false), Ok(IsaChange::FpReset));
        assert!(!isa.has(id::D) && !isa.has(id::F) && isa.has(id::A));
        // After a run nothing changes but the call succeeds.
        assert_eq!(isa.set_multi(0, mask, true, &host, true), Ok(IsaChange::None));
        assert!(!isa.has(id::D));
        assert_eq!(isa.set_multi(0, mask, true, &host, false), Ok(IsaChange::FpReset));
        assert!(isa.has(id::D) && isa.has(id::F));
        // Bits past the last id of register 1 are ignored.
        assert_eq!(isa.set_multi(1, u64::MAX, false, &host, false), Ok(IsaChange::FpReset));
        assert!(!isa.has(id::SVADE) && !isa.has(id::SVADU) && isa.has(id::SSTC));
        assert_eq!(isa.set_multi(2, 1, true, &host, false), Err(Errno::ENOENT));
    }

    #[test]
    fn config_isa_rules() {
        let host = qemu_host();
        let mut isa = VcpuIsa::new(&host);
        let cur = isa.base();
        assert_eq!(cur, 0x112d); // imafdc
        // 'z' (bit 25) and anything up to bit 31: EINVAL, before any other check.
        assert_eq!(isa.set_base(1 << 25, &host, true), Err(Errno::EINVAL));
        assert_eq!(isa.set_base(1 << 31 | cur, &host, false), Err(Errno::EINVAL));
        // Bits 32 and up pass upstream's fls() check and are dropped.
        assert_eq!(isa.set_base(cur, &host, true), Ok(IsaChange::None));
        assert_eq!(isa.set_base(cur | 1 << 40, &host, true), Err(Errno::EBUSY));
        assert_eq!(isa.set_base(cur | 1 << 40, &host, false), Ok(IsaChange::FpReset));
        assert_eq!(isa.base(), cur);
        // Drop F and D; try to drop A/C/I/M (kept) and to add H, Q, V (not).
        let v = (1 << 7) | (1 << 16) | (1 << 21);
        assert_eq!(isa.set_base(v, &host, false), Ok(IsaChange::FpReset));
        assert_eq!(isa.base(), 0x1105);
        assert!(!isa.has(id::D) && !isa.has(id::F));
        // Multi-letter extensions are untouched.
        assert!(isa.has(id::SSTC) && isa.has(id::ZICBOM));
        assert_eq!(isa.set_base(cur, &host, false), Ok(IsaChange::FpReset));
        assert_eq!(isa.base(), cur);
    }
}
