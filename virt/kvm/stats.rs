// SPDX-License-Identifier: GPL-2.0

//! The binary statistics file of `KVM_GET_STATS_FD` (VM and vCPU).
//!
//! Pure logic, built into the module and tested on the host. It follows
//! upstream `virt/kvm/binary_stats.c` (`kvm_stats_read()`), the
//! descriptors of `include/linux/kvm_host.h` (`KVM_GENERIC_VM_STATS()`,
//! `KVM_GENERIC_VCPU_STATS()`, the `STATS_DESC_*` macros) and the arch
//! tables of `arch/riscv/kvm/{vm,vcpu}.c` and `arch/arm64/kvm/guest.c`.
//!
//! The file is, byte for byte as upstream lays it out:
//!
//! ```text
//! 0                     struct kvm_stats_header (24 bytes)
//! 24 = id_offset        id string, KVM_STATS_NAME_SIZE (48) bytes, NUL padded
//! 72 = desc_offset      num_desc * struct kvm_stats_desc (16 + 48 bytes each)
//! data_offset           the values, u64 each, in descriptor order
//! ```
//!
//! A descriptor's `offset` is the byte offset of its first value in the data
//! block; values are laid out in descriptor order (as upstream's structs
//! are), so it is the running sum of the previous sizes times 8.
//! `read()` at any position and length returns what upstream returns: the
//! bytes of that image from the position on, as many as fit, and 0 at or
//! beyond the end. Multi-byte fields are in native byte order.

// The kernel glue (stats fds) comes next; until then only the host tests
// use these items.
#![allow(dead_code)]

/// `KVM_GET_STATS_FD`: `_IO(KVMIO, 0xce)`, on the VM and on vCPU fds.
pub(crate) const KVM_GET_STATS_FD: u32 = super::abi::kvm_io(0xce);

/// Bytes of a name (and of the id string) including the NUL.
pub(crate) const KVM_STATS_NAME_SIZE: usize = 48;

/// `KVM_STATS_TYPE_*` (bits 0..4 of `flags`).
pub(crate) const KVM_STATS_TYPE_MASK: u32 = 0xf;
/// A counter that only grows.
pub(crate) const KVM_STATS_TYPE_CUMULATIVE: u32 = 0x0;
/// A current value.
pub(crate) const KVM_STATS_TYPE_INSTANT: u32 = 0x1;
/// The highest value seen.
pub(crate) const KVM_STATS_TYPE_PEAK: u32 = 0x2;
/// A histogram with equal buckets of `bucket_size`.
pub(crate) const KVM_STATS_TYPE_LINEAR_HIST: u32 = 0x3;
/// A histogram with power-of-two buckets.
pub(crate) const KVM_STATS_TYPE_LOG_HIST: u32 = 0x4;
/// The last type.
pub(crate) const KVM_STATS_TYPE_MAX: u32 = KVM_STATS_TYPE_LOG_HIST;

/// `KVM_STATS_UNIT_*` (bits 4..8).
pub(crate) const KVM_STATS_UNIT_MASK: u32 = 0xf << 4;
/// No unit (a count).
pub(crate) const KVM_STATS_UNIT_NONE: u32 = 0x0 << 4;
/// Bytes.
pub(crate) const KVM_STATS_UNIT_BYTES: u32 = 0x1 << 4;
/// Seconds (times 10^exponent).
pub(crate) const KVM_STATS_UNIT_SECONDS: u32 = 0x2 << 4;
/// Clock cycles.
pub(crate) const KVM_STATS_UNIT_CYCLES: u32 = 0x3 << 4;
/// 0 or 1.
pub(crate) const KVM_STATS_UNIT_BOOLEAN: u32 = 0x4 << 4;
/// The last unit.
pub(crate) const KVM_STATS_UNIT_MAX: u32 = KVM_STATS_UNIT_BOOLEAN;

/// `KVM_STATS_BASE_*` (bits 8..12).
pub(crate) const KVM_STATS_BASE_MASK: u32 = 0xf << 8;
/// Powers of ten.
pub(crate) const KVM_STATS_BASE_POW10: u32 = 0x0 << 8;
/// Powers of two.
pub(crate) const KVM_STATS_BASE_POW2: u32 = 0x1 << 8;
/// The last base.
pub(crate) const KVM_STATS_BASE_MAX: u32 = KVM_STATS_BASE_POW2;

/// `sizeof(struct kvm_stats_header)`.
pub(crate) const STATS_HEADER_SIZE: usize = 24;
/// `sizeof(struct kvm_stats_desc)` in the file: the fixed part and the name.
pub(crate) const STATS_DESC_SIZE: usize = 16 + KVM_STATS_NAME_SIZE;
/// `HALT_POLL_HIST_COUNT`: buckets of the halt-poll histograms.
pub(crate) const HALT_POLL_HIST_COUNT: u16 = 32;

/// One statistic (`struct kvm_stats_desc` minus its data offset).
///
/// Invariants (checked by the host tests for every table): `name` is ASCII
/// and shorter than [`KVM_STATS_NAME_SIZE`]; `size >= 1`; `bucket_size` is
/// non-zero exactly for linear histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StatDesc {
    /// The name, as upstream's `#stat`.
    pub(crate) name: &'static str,
    /// Type | unit | base.
    pub(crate) flags: u32,
    /// Unit exponent (-9 for nanoseconds).
    pub(crate) exponent: i16,
    /// Number of u64 values.
    pub(crate) size: u16,
    /// Bucket width of linear histograms, else 0.
    pub(crate) bucket_size: u32,
}

/// `STATS_DESC_COUNTER`: cumulative, no unit.
const fn counter(name: &'static str) -> StatDesc {
    StatDesc {
        name,
        flags: KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_NONE | KVM_STATS_BASE_POW10,
        exponent: 0,
        size: 1,
        bucket_size: 0,
    }
}

/// `STATS_DESC_TIME_NSEC`: cumulative nanoseconds.
const fn time_nsec(name: &'static str) -> StatDesc {
    StatDesc {
        name,
        flags: KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_SECONDS | KVM_STATS_BASE_POW10,
        exponent: -9,
        size: 1,
        bucket_size: 0,
    }
}

/// `STATS_DESC_LOGHIST_TIME_NSEC`: log histogram of nanoseconds.
const fn loghist_time_nsec(name: &'static str, size: u16) -> StatDesc {
    StatDesc {
        name,
        flags: KVM_STATS_TYPE_LOG_HIST | KVM_STATS_UNIT_SECONDS | KVM_STATS_BASE_POW10,
        exponent: -9,
        size,
        bucket_size: 0,
    }
}

/// `STATS_DESC_IBOOLEAN`: instant boolean.
const fn iboolean(name: &'static str) -> StatDesc {
    StatDesc {
        name,
        flags: KVM_STATS_TYPE_INSTANT | KVM_STATS_UNIT_BOOLEAN | KVM_STATS_BASE_POW10,
        exponent: 0,
        size: 1,
        bucket_size: 0,
    }
}

/// `KVM_GENERIC_VM_STATS()` (`struct kvm_vm_stat_generic`).
pub(crate) const GENERIC_VM_STATS: [StatDesc; 2] =
    [counter("remote_tlb_flush"), counter("remote_tlb_flush_requests")];

/// `KVM_GENERIC_VCPU_STATS()` (`struct kvm_vcpu_stat_generic`).
pub(crate) const GENERIC_VCPU_STATS: [StatDesc; 11] = [
    counter("halt_successful_poll"),
    counter("halt_attempted_poll"),
    counter("halt_poll_invalid"),
    counter("halt_wakeup"),
    time_nsec("halt_poll_success_ns"),
    time_nsec("halt_poll_fail_ns"),
    time_nsec("halt_wait_ns"),
    loghist_time_nsec("halt_poll_success_hist", HALT_POLL_HIST_COUNT),
    loghist_time_nsec("halt_poll_fail_hist", HALT_POLL_HIST_COUNT),
    loghist_time_nsec("halt_wait_hist", HALT_POLL_HIST_COUNT),
    iboolean("blocking"),
];

/// riscv64 vCPU stats after the generic ones (`arch/riscv/kvm/vcpu.c`).
pub(crate) const RISCV_VCPU_STATS: [StatDesc; 14] = [
    counter("ecall_exit_stat"),
    counter("wfi_exit_stat"),
    counter("wrs_exit_stat"),
    counter("mmio_exit_user"),
    counter("mmio_exit_kernel"),
    counter("csr_exit_user"),
    counter("csr_exit_kernel"),
    counter("signal_exits"),
    counter("exits"),
    counter("instr_illegal_exits"),
    counter("load_misaligned_exits"),
    counter("store_misaligned_exits"),
    counter("load_access_exits"),
    counter("store_access_exits"),
];

/// arm64 vCPU stats after the generic ones (`arch/arm64/kvm/guest.c`).
pub(crate) const ARM64_VCPU_STATS: [StatDesc; 7] = [
    counter("hvc_exit_stat"),
    counter("wfe_exit_stat"),
    counter("wfi_exit_stat"),
    counter("mmio_exit_user"),
    counter("mmio_exit_kernel"),
    counter("signal_exits"),
    counter("exits"),
];

/// The descriptors of one stats file: the generic ones, then the arch's.
/// Neither riscv64 nor arm64 has arch VM stats.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StatsSchema {
    /// `KVM_GENERIC_*_STATS()`.
    pub(crate) generic: &'static [StatDesc],
    /// The architecture's own.
    pub(crate) arch: &'static [StatDesc],
}

/// VM stats on riscv64 and arm64.
pub(crate) const VM_STATS: StatsSchema = StatsSchema {
    generic: &GENERIC_VM_STATS,
    arch: &[],
};
/// riscv64 vCPU stats.
pub(crate) const RISCV_VCPU_SCHEMA: StatsSchema = StatsSchema {
    generic: &GENERIC_VCPU_STATS,
    arch: &RISCV_VCPU_STATS,
};
/// arm64 vCPU stats.
pub(crate) const ARM64_VCPU_SCHEMA: StatsSchema = StatsSchema {
    generic: &GENERIC_VCPU_STATS,
    arch: &ARM64_VCPU_STATS,
};

impl StatsSchema {
    /// `num_desc`.
    pub(crate) const fn num_desc(&self) -> usize {
        self.generic.len() + self.arch.len()
    }

    /// Descriptor `i`.
    pub(crate) fn desc(&self, i: usize) -> Option<&StatDesc> {
        match i.checked_sub(self.generic.len()) {
            None => self.generic.get(i),
            Some(j) => self.arch.get(j),
        }
    }

    /// Number of u64 values in the data block.
    pub(crate) fn num_values(&self) -> usize {
        self.generic
            .iter()
            .chain(self.arch.iter())
            .map(|d| usize::from(d.size))
            .sum()
    }

    /// Index of the first value of descriptor `i` in the data block.
    pub(crate) fn value_index(&self, i: usize) -> usize {
        self.generic
            .iter()
            .chain(self.arch.iter())
            .take(i)
            .map(|d| usize::from(d.size))
            .sum()
    }

    /// Index of the first value of the statistic called `name`.
    pub(crate) fn value_index_of(&self, name: &str) -> Option<usize> {
        let i = (0..self.num_desc()).find(|&i| self.desc(i).is_some_and(|d| d.name == name))?;
        Some(self.value_index(i))
    }

    /// `desc_offset`.
    pub(crate) const fn desc_offset(&self) -> usize {
        STATS_HEADER_SIZE + KVM_STATS_NAME_SIZE
    }

    /// `data_offset`.
    pub(crate) const fn data_offset(&self) -> usize {
        self.desc_offset() + self.num_desc() * STATS_DESC_SIZE
    }

    /// Size of the whole file.
    pub(crate) fn file_size(&self) -> usize {
        self.data_offset() + self.num_values() * 8
    }

    /// `struct kvm_stats_header`: flags 0, name_size, num_desc, id_offset,
    /// desc_offset, data_offset.
    pub(crate) fn header(&self) -> [u8; STATS_HEADER_SIZE] {
        let fields = [
            0u32,
            KVM_STATS_NAME_SIZE as u32,
            self.num_desc() as u32,
            STATS_HEADER_SIZE as u32,
            self.desc_offset() as u32,
            self.data_offset() as u32,
        ];
        let mut h = [0u8; STATS_HEADER_SIZE];
        for (chunk, v) in h.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        h
    }

    /// `struct kvm_stats_desc` number `i` as it appears in the file.
    pub(crate) fn desc_bytes(&self, i: usize) -> Option<[u8; STATS_DESC_SIZE]> {
        let d = self.desc(i)?;
        let offset = u32::try_from(self.value_index(i).checked_mul(8)?).ok()?;
        let mut b = [0u8; STATS_DESC_SIZE];
        b[0..4].copy_from_slice(&d.flags.to_ne_bytes());
        b[4..6].copy_from_slice(&d.exponent.to_ne_bytes());
        b[6..8].copy_from_slice(&d.size.to_ne_bytes());
        b[8..12].copy_from_slice(&offset.to_ne_bytes());
        b[12..16].copy_from_slice(&d.bucket_size.to_ne_bytes());
        let name = d.name.as_bytes();
        let n = name.len().min(KVM_STATS_NAME_SIZE - 1);
        b[16..16 + n].copy_from_slice(&name[..n]);
        Some(b)
    }
}

/// The id string, NUL-padded to [`KVM_STATS_NAME_SIZE`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StatsId(pub(crate) [u8; KVM_STATS_NAME_SIZE]);

/// Formats into a fixed buffer, truncating like `snprintf()` (always keeps
/// a final NUL).
struct IdWriter {
    buf: [u8; KVM_STATS_NAME_SIZE],
    len: usize,
}

impl IdWriter {
    fn str(&mut self, s: &str) {
        for &c in s.as_bytes() {
            // Keep the last byte for the NUL.
            if self.len + 1 >= KVM_STATS_NAME_SIZE {
                return;
            }
            if let Some(b) = self.buf.get_mut(self.len) {
                *b = c;
                self.len += 1;
            }
        }
    }

    /// `%d`.
    fn int(&mut self, v: i32) {
        if v < 0 {
            self.str("-");
        }
        // Up to 10 digits, least significant first.
        let mut digits = [0u8; 10];
        let mut n = v.unsigned_abs();
        let mut k = 0;
        for d in digits.iter_mut() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
            k += 1;
            if n == 0 {
                break;
            }
        }
        for d in digits.iter().take(k).rev() {
            let d = [*d];
            if let Ok(s) = core::str::from_utf8(&d) {
                self.str(s);
            }
        }
    }
}

impl StatsId {
    /// `"kvm-%d"` with the creating task's pid (`kvm_create_vm()`).
    pub(crate) fn vm(pid: i32) -> Self {
        let mut w = IdWriter {
            buf: [0; KVM_STATS_NAME_SIZE],
            len: 0,
        };
        w.str("kvm-");
        w.int(pid);
        Self(w.buf)
    }

    /// `"kvm-%d/vcpu-%d"` with the creating task's pid and the vCPU id
    /// (`kvm_vcpu_init()`).
    pub(crate) fn vcpu(pid: i32, vcpu_id: i32) -> Self {
        let mut w = IdWriter {
            buf: [0; KVM_STATS_NAME_SIZE],
            len: 0,
        };
        w.str("kvm-");
        w.int(pid);
        w.str("/vcpu-");
        w.int(vcpu_id);
        Self(w.buf)
    }

    /// The string without its padding.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(KVM_STATS_NAME_SIZE);
        self.0.get(..n).unwrap_or(&[])
    }
}

/// One open stats file: a schema, an id and the current values.
pub(crate) struct StatsFile<'a> {
    /// The descriptors.
    pub(crate) schema: &'a StatsSchema,
    /// The id string.
    pub(crate) id: &'a StatsId,
    /// The values, `schema.num_values()` of them (missing ones read as 0).
    pub(crate) values: &'a [u64],
}

impl StatsFile<'_> {
    /// `kvm_stats_read()`: copies the file's bytes from `pos` into `out`
    /// and returns how many (the caller advances its offset by that much).
    /// 0 at or beyond the end, or for an empty `out`.
    pub(crate) fn read(&self, pos: u64, out: &mut [u8]) -> usize {
        let size = self.schema.file_size();
        let Ok(pos) = usize::try_from(pos) else {
            return 0;
        };
        if pos >= size {
            return 0;
        }
        let len = out.len().min(size - pos);
        let desc_off = self.schema.desc_offset();
        let data_off = self.schema.data_offset();
        let mut done = 0;
        while done < len {
            let p = pos + done;
            // The item containing p, as bytes, and p's offset in it.
            let mut item = [0u8; STATS_DESC_SIZE];
            let (item_len, at) = if p < STATS_HEADER_SIZE {
                item[..STATS_HEADER_SIZE].copy_from_slice(&self.schema.header());
                (STATS_HEADER_SIZE, p)
            } else if p < desc_off {
                item[..KVM_STATS_NAME_SIZE].copy_from_slice(&self.id.0);
                (KVM_STATS_NAME_SIZE, p - STATS_HEADER_SIZE)
            } else if p < data_off {
                let i = (p - desc_off) / STATS_DESC_SIZE;
                item = self.schema.desc_bytes(i).unwrap_or([0; STATS_DESC_SIZE]);
                (STATS_DESC_SIZE, (p - desc_off) % STATS_DESC_SIZE)
            } else {
                let i = (p - data_off) / 8;
                let v = self.values.get(i).copied().unwrap_or(0);
                item[..8].copy_from_slice(&v.to_ne_bytes());
                (8, (p - data_off) % 8)
            };
            let n = (item_len - at).min(len - done);
            let (Some(dst), Some(src)) = (out.get_mut(done..done + n), item.get(at..at + n)) else {
                break;
            };
            dst.copy_from_slice(src);
            done += n;
        }
        done
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_ne_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn image(f: &StatsFile<'_>) -> std::vec::Vec<u8> {
        let mut v = std::vec![0u8; f.schema.file_size() + 100];
        let n = f.read(0, &mut v);
        v.truncate(n);
        v
    }

    #[test]
    fn ioctl_and_sizes_match_upstream() {
        assert_eq!(KVM_GET_STATS_FD, 0xaece);
        assert_eq!(GENERIC_VCPU_STATS.iter().map(|d| usize::from(d.size)).sum::<usize>() * 8, 832);
        assert_eq!(VM_STATS.num_values(), 2);
        assert_eq!(RISCV_VCPU_SCHEMA.num_desc(), 25);
        assert_eq!(ARM64_VCPU_SCHEMA.num_desc(), 18);
        assert_eq!(VM_STATS.data_offset(), 24 + 48 + 2 * 64);
    }

    #[test]
    fn id_strings() {
        assert_eq!(StatsId::vm(1234).as_bytes(), b"kvm-1234");
        assert_eq!(StatsId::vcpu(1234, 0).as_bytes(), b"kvm-1234/vcpu-0");
        assert_eq!(StatsId::vcpu(i32::MAX, i32::MIN).as_bytes(), b"kvm-2147483647/vcpu--2147483648");
        assert_eq!(StatsId::vm(7).0[8..], [0u8; 40]);
    }

    #[test]
    fn generic_descriptors_match_upstream_macros() {
        let names: std::vec::Vec<_> = GENERIC_VCPU_STATS.iter().map(|d| d.name).collect();
        assert_eq!(
            names,
            [
                "halt_successful_poll",
                "halt_attempted_poll",
                "halt_poll_invalid",
                "halt_wakeup",
                "halt_poll_success_ns",
                "halt_poll_fail_ns",
                "halt_wait_ns",
                "halt_poll_success_hist",
                "halt_poll_fail_hist",
                "halt_wait_hist",
                "blocking"
            ]
        );
        assert_eq!(GENERIC_VCPU_STATS[4].flags, 0x20);
        assert_eq!(GENERIC_VCPU_STATS[7].flags, 0x24);
        assert_eq!(GENERIC_VCPU_STATS[10].flags, 0x41);
        // Offsets as offsetof(struct kvm_vcpu_stat, ...): blocking after
        // the three 32-bucket histograms, the first arch stat after it.
        assert_eq!(RISCV_VCPU_SCHEMA.value_index_of("blocking"), Some(103));
        assert_eq!(RISCV_VCPU_SCHEMA.value_index_of("ecall_exit_stat"), Some(104));
        assert_eq!(ARM64_VCPU_SCHEMA.value_index_of("exits"), Some(110));
        let d = RISCV_VCPU_SCHEMA.desc_bytes(10).unwrap();
        assert_eq!(u32_at(&d, 8), 103 * 8);
    }

    /// Every check of tools/testing/selftests/kvm/kvm_binary_stats_test.c.
    fn selftest_checks(f: &StatsFile<'_>) {
        let img = image(f);
        let name_size = u32_at(&img, 4) as usize;
        let num_desc = u32_at(&img, 8) as usize;
        let id_offset = u32_at(&img, 12) as usize;
        let desc_offset = u32_at(&img, 16) as usize;
        let data_offset = u32_at(&img, 20) as usize;
        assert_eq!(u32_at(&img, 0), 0);
        assert_eq!(id_offset, 24);
        // pread(id, name_size, sizeof(header)) returns name_size bytes.
        let mut id = std::vec![0u8; name_size];
        assert_eq!(f.read(24, &mut id), name_size);
        let idlen = id.iter().position(|&c| c == 0).unwrap();
        assert!(id.starts_with(b"kvm") && idlen < name_size);
        assert!(num_desc > 0);
        assert!(desc_offset >= 24 && data_offset >= 24);
        let size_desc = 16 + name_size;
        assert!(desc_offset > data_offset || desc_offset + size_desc * num_desc <= data_offset);
        let mut size_data = 0usize;
        for i in 0..num_desc {
            let d = &img[desc_offset + i * size_desc..desc_offset + (i + 1) * size_desc];
            let flags = u32_at(d, 0);
            let exponent = i16::from_ne_bytes([d[4], d[5]]);
            let size = u16::from_ne_bytes([d[6], d[7]]) as usize;
            let offset = u32_at(d, 8) as usize;
            let bucket = u32_at(d, 12);
            let name = &d[16..];
            assert!(name.iter().position(|&c| c == 0).unwrap() < name_size);
            let (ty, unit, base) = (flags & KVM_STATS_TYPE_MASK, flags & KVM_STATS_UNIT_MASK, flags & KVM_STATS_BASE_MASK);
            assert!(ty <= KVM_STATS_TYPE_MAX && unit <= KVM_STATS_UNIT_MAX && base <= KVM_STATS_BASE_MAX);
            match unit {
                KVM_STATS_UNIT_NONE | KVM_STATS_UNIT_BYTES | KVM_STATS_UNIT_CYCLES => assert!(exponent >= 0),
                KVM_STATS_UNIT_SECONDS => assert!(exponent <= 0),
                _ => assert_eq!(exponent, 0),
            }
            assert!(size > 0);
            assert_eq!(bucket != 0, ty == KVM_STATS_TYPE_LINEAR_HIST);
            size_data = size_data.max(offset + size * 8);
            // read_stat_data(): pread(size * 8, data_offset + offset).
            let mut v = std::vec![0u8; size * 8];
            assert_eq!(f.read((data_offset + offset) as u64, &mut v), size * 8);
        }
        assert!(data_offset >= desc_offset || data_offset + size_data <= desc_offset);
        assert!(size_data >= num_desc * 8);
        let mut all = std::vec![0u8; size_data];
        assert_eq!(f.read(data_offset as u64, &mut all), size_data);
    }

    #[test]
    fn files_pass_the_binary_stats_selftest_checks() {
        let id = StatsId::vm(42);
        let vals = [5u64, 6];
        selftest_checks(&StatsFile { schema: &VM_STATS, id: &id, values: &vals });
        for schema in [&RISCV_VCPU_SCHEMA, &ARM64_VCPU_SCHEMA] {
            let id = StatsId::vcpu(42, 3);
            let vals: std::vec::Vec<u64> = (0..schema.num_values() as u64).collect();
            selftest_checks(&StatsFile { schema, id: &id, values: &vals });
        }
    }

    #[test]
    fn values_land_at_their_descriptor_offset() {
        let id = StatsId::vm(1);
        let vals: std::vec::Vec<u64> = (100..100 + ARM64_VCPU_SCHEMA.num_values() as u64).collect();
        let f = StatsFile { schema: &ARM64_VCPU_SCHEMA, id: &id, values: &vals };
        let i = ARM64_VCPU_SCHEMA.value_index_of("exits").unwrap();
        let mut b = [0u8; 8];
        let pos = ARM64_VCPU_SCHEMA.data_offset() + i * 8;
        assert_eq!(f.read(pos as u64, &mut b), 8);
        assert_eq!(u64::from_ne_bytes(b), 100 + i as u64);
    }

    #[test]
    fn partial_reads_at_any_offset_match_the_image() {
        let id = StatsId::vcpu(77, 1);
        let vals: std::vec::Vec<u64> = (0..RISCV_VCPU_SCHEMA.num_values() as u64).map(|x| x * 0x0101_0101).collect();
        let f = StatsFile { schema: &RISCV_VCPU_SCHEMA, id: &id, values: &vals };
        let img = image(&f);
        assert_eq!(img.len(), RISCV_VCPU_SCHEMA.file_size());
        for pos in (0..img.len() + 3).step_by(7) {
            for len in [0usize, 1, 5, 8, 23, 64, 100, 4096] {
                let mut b = std::vec![0xaau8; len];
                let n = f.read(pos as u64, &mut b);
                let want = img.len().saturating_sub(pos).min(len);
                assert_eq!(n, want, "pos {pos} len {len}");
                assert_eq!(&b[..n], &img[pos.min(img.len())..pos.min(img.len()) + n]);
                assert!(b[n..].iter().all(|&c| c == 0xaa));
            }
        }
        let mut b = [0u8; 4];
        assert_eq!(f.read(u64::MAX, &mut b), 0);
        assert_eq!(f.read(img.len() as u64, &mut b), 0);
    }
}
