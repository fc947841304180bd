// SPDX-License-Identifier: GPL-2.0

//! VMID allocation with generations (upstream `arch/riscv/kvm/vmid.c`).
//!
//! Pure logic (`core` only), built into the module and tested on the host.
//! The kernel glue (`mmu.rs`) puts the [`VmidSpace`] under a spinlock and
//! probes the width.
//!
//! # Semantics
//!
//! - The hardware width comes from the `hgatp.VMID` probe ([`probe_bits`]):
//!   write all-ones to the field, read back, count. [`usable_bits`] caps it
//!   (the `vmid_bits` module parameter) and, as upstream, turns VMIDs off
//!   (0 bits) when there are fewer VMIDs than possible CPUs.
//! - VMID 0 is reserved: allocation hands out `1..2^bits` in order. Every
//!   VM takes a VMID the first time one of its vCPUs is about to enter;
//!   VMIDs are never freed.
//! - When the space is used up, the next allocation starts a new
//!   **generation**: the global generation is bumped, every VM's VMID
//!   becomes stale (each re-allocates before its vCPUs enter again), and
//!   every CPU must flush its whole G-stage TLB (`hfence.gvma x0, x0`)
//!   before any vCPU enters with a VMID of the new generation. The flush is
//!   the `flush_all_cpus` callback of [`VmidAllocator::update`], run under
//!   the lock right after the new generation is published, as upstream
//!   does its `on_each_cpu_mask()`. The very first allocation also starts a
//!   generation (so it flushes too, like upstream's).
//! - With 0 bits, VMIDs are off: every VM uses VMID 0, nothing is ever
//!   allocated, and the run loop must flush the whole G-stage TLB of its
//!   CPU each time it loads `hgatp` (`kvm_riscv_mmu_update_hgatp()`).
//!
//! # How the run loop uses it
//!
//! ```text
//! loop {
//!     // preemptible, before the request checks:
//!     if let Update::New { .. } = VMIDS.update(&vm.vmid, flush_all_cpus) {
//!         make KVM_REQ_UPDATE_HGATP on every vCPU of the VM;
//!     }
//!     handle requests (UPDATE_HGATP: write hgatp from VMIDS.current());
//!     local_irq_disable(); vcpu.mode = IN_GUEST_MODE;
//!     if VMIDS.current(&vm.vmid).is_none() || requests pending {
//!         back out, continue;          // a rollover happened meanwhile
//!     }
//!     if moved to another CPU: hfence.gvma x0, vmid (kvm_riscv_local_tlb_sanitize);
//!     enter the guest;
//! }
//! ```
//!
//! A rollover while a vCPU is in the guest is safe: the flush IPI makes it
//! exit, and the re-check above with interrupts off sends it back to
//! `update`.
//!
//! # Locking
//!
//! [`VmidSpace`] is only reached through [`SpaceLock::with_locked`] (a
//! spinlock in the kernel). The global generation, the width and each VM's
//! [`VmVmid`] are atomics, written only under that lock and read without it
//! (upstream's `READ_ONCE`/`WRITE_ONCE`). A VM's generation and VMID are
//! one atomic word, so a lock-free reader never sees a VMID of another
//! generation.

use core::sync::atomic::{
    AtomicU32,
    AtomicU64,
    Ordering, //
};

/// Position of `hgatp.VMID`.
const HGATP_VMID_SHIFT: u32 = 44;
/// The widest `hgatp.VMID` (RV64).
pub(crate) const MAX_VMID_BITS: u32 = 14;
/// Bits of a [`VmVmid`] word that hold the VMID; the generation is above.
const VMID_FIELD_BITS: u32 = 16;
/// The generation values (48 bits; 0 means "none").
const GENERATION_MASK: u64 = (1 << (64 - VMID_FIELD_BITS)) - 1;

/// The VMID width that the `hgatp` probe read back: `hgatp` after writing
/// all-ones to its VMID field (with MODE Bare) keeps ones in the
/// implemented bits, which are the low ones (`fls()` of the field, as
/// `kvm_riscv_gstage_vmid_detect()`).
pub(crate) const fn probe_bits(hgatp_readback: u64) -> u32 {
    let field = (hgatp_readback >> HGATP_VMID_SHIFT) & ((1 << MAX_VMID_BITS) - 1);
    64 - field.leading_zeros()
}

/// The width to use: the probed `hw_bits` capped by `cap`; 0 (VMIDs off)
/// if that leaves fewer VMIDs than `possible_cpus`, as upstream.
pub(crate) const fn usable_bits(hw_bits: u32, cap: u32, possible_cpus: u32) -> u32 {
    let mut bits = if hw_bits < cap { hw_bits } else { cap };
    if bits > MAX_VMID_BITS {
        bits = MAX_VMID_BITS;
    }
    if (1u64 << bits) < possible_cpus as u64 {
        return 0;
    }
    bits
}

/// A VM's VMID and the generation it belongs to (`struct kvm_vmid`).
///
/// Starts with none; written only by [`VmidAllocator::update`].
#[derive(Debug, Default)]
pub(crate) struct VmVmid(AtomicU64);

impl VmVmid {
    /// No VMID yet (`kvm_riscv_gstage_vmid_init()`).
    pub(crate) const fn new() -> Self {
        VmVmid(AtomicU64::new(0))
    }

    /// The generation and VMID last assigned (generation 0: none).
    pub(crate) fn get(&self) -> (u64, u64) {
        let w = self.0.load(Ordering::Acquire);
        (w >> VMID_FIELD_BITS, w & ((1 << VMID_FIELD_BITS) - 1))
    }
}

/// The allocation cursor, protected by the allocator's lock.
#[derive(Debug)]
pub(crate) struct VmidSpace {
    /// The next VMID to hand out; 0 when the generation is used up (or
    /// none started yet).
    next: u64,
}

impl VmidSpace {
    /// No generation started yet.
    pub(crate) const fn new() -> Self {
        VmidSpace { next: 0 }
    }
}

impl Default for VmidSpace {
    fn default() -> Self {
        Self::new()
    }
}

/// The lock around a [`VmidSpace`].
pub(crate) trait SpaceLock {
    /// Runs `f` with the space locked.
    fn with_locked<R>(&self, f: impl FnOnce(&mut VmidSpace) -> R) -> R;
}

/// What [`VmidAllocator::update`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Update {
    /// The VM's VMID is valid in the current generation (or VMIDs are
    /// off): nothing to do.
    Current,
    /// The VM got `vmid`; every vCPU of the VM must reload `hgatp`
    /// (`KVM_REQ_UPDATE_HGATP`). `rollover`: this allocation started a
    /// generation and `flush_all_cpus` ran.
    New {
        /// The new VMID (never 0).
        vmid: u64,
        /// Whether a new generation started.
        rollover: bool,
    },
}

/// The VMID allocator: one per host.
pub(crate) struct VmidAllocator<L: SpaceLock> {
    /// The current generation (`vmid_version`); starts at 1.
    generation: AtomicU64,
    /// The usable width; 0: VMIDs off.
    bits: AtomicU32,
    /// The cursor, under its lock.
    space: L,
}

impl<L: SpaceLock> VmidAllocator<L> {
    /// VMIDs off until [`VmidAllocator::init`].
    pub(crate) const fn new(space: L) -> Self {
        VmidAllocator { generation: AtomicU64::new(1), bits: AtomicU32::new(0), space }
    }

    /// Sets the width (from [`usable_bits`]; more than 14 is clamped), once,
    /// before any VM exists.
    pub(crate) fn init(&self, bits: u32) {
        let bits = if bits > MAX_VMID_BITS { MAX_VMID_BITS } else { bits };
        self.space.with_locked(|space| {
            space.next = 0;
            self.bits.store(bits, Ordering::Relaxed);
        });
    }

    /// The usable width (`kvm_riscv_gstage_vmid_bits()`); 0: VMIDs off.
    pub(crate) fn bits(&self) -> u32 {
        self.bits.load(Ordering::Relaxed)
    }

    /// The current generation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The VM's VMID if it is valid in the current generation, 0 when
    /// VMIDs are off, `None` when the VM must call
    /// [`VmidAllocator::update`] first. Lock-free; the run loop checks it
    /// with interrupts off right before entering the guest.
    pub(crate) fn current(&self, vm: &VmVmid) -> Option<u64> {
        if self.bits() == 0 {
            return Some(0);
        }
        let generation = self.generation();
        let (vm_generation, vmid) = vm.get();
        if vm_generation == generation {
            Some(vmid)
        } else {
            None
        }
    }

    /// Whether the VM needs a new VMID
    /// (`kvm_riscv_gstage_vmid_ver_changed()`).
    pub(crate) fn needs_update(&self, vm: &VmVmid) -> bool {
        self.current(vm).is_none()
    }

    /// Gives the VM a VMID of the current generation if it has none
    /// (`kvm_riscv_gstage_vmid_update()`). When the space is used up, it
    /// starts a generation and calls `flush_all_cpus` (under the lock,
    /// after publishing the generation), which must flush the G-stage TLB
    /// of every online CPU and wait for it.
    pub(crate) fn update(&self, vm: &VmVmid, flush_all_cpus: impl FnOnce()) -> Update {
        if !self.needs_update(vm) {
            return Update::Current;
        }
        self.space.with_locked(|space| {
            // Another vCPU of the VM may have won the race for the lock.
            if !self.needs_update(vm) {
                return Update::Current;
            }
            let bits = self.bits();
            let mut rollover = false;
            if space.next == 0 {
                let mut generation = (self.generation() + 1) & GENERATION_MASK;
                if generation == 0 {
                    // 2^48 generations later; 0 stays "none".
                    generation = 1;
                }
                self.generation.store(generation, Ordering::Release);
                space.next = 1;
                flush_all_cpus();
                rollover = true;
            }
            let vmid = space.next;
            // `bits` is 1..=14 here (`needs_update` is false with 0 bits).
            space.next = (vmid + 1) & ((1 << bits) - 1);
            vm.0.store((self.generation() << VMID_FIELD_BITS) | vmid, Ordering::Release);
            Update::New { vmid, rollover }
        })
    }
}

#[cfg(test)]
pub(crate) mod host_tests {
    use super::*;
    use core::cell::{
        Cell,
        RefCell, //
    };
    use std::collections::BTreeMap;
    use std::sync::{
        Arc,
        Mutex, //
    };
    use std::vec::Vec;

    impl SpaceLock for RefCell<VmidSpace> {
        fn with_locked<R>(&self, f: impl FnOnce(&mut VmidSpace) -> R) -> R {
            f(&mut self.borrow_mut())
        }
    }

    impl SpaceLock for Mutex<VmidSpace> {
        fn with_locked<R>(&self, f: impl FnOnce(&mut VmidSpace) -> R) -> R {
            f(&mut self.lock().unwrap())
        }
    }

    fn allocator(bits: u32) -> VmidAllocator<RefCell<VmidSpace>> {
        let a = VmidAllocator::new(RefCell::new(VmidSpace::new()));
        a.init(bits);
        a
    }

    #[test]
    fn probe_and_usable_bits() {
        assert_eq!(probe_bits(0), 0);
        assert_eq!(probe_bits(0x3fff << 44), 14);
        assert_eq!(probe_bits(0x7f << 44), 7);
        assert_eq!(probe_bits(1 << 44), 1);
        // MODE and PPN bits around the field do not count.
        assert_eq!(probe_bits((0xf << 60) | (0x3 << 44) | 0xfff_ffff), 2);
        assert_eq!(usable_bits(14, 14, 8), 14);
        assert_eq!(usable_bits(14, 2, 2), 2);
        assert_eq!(usable_bits(14, 2, 4), 2);
        assert_eq!(usable_bits(14, 2, 5), 0); // 4 VMIDs < 5 CPUs
        assert_eq!(usable_bits(3, 14, 8), 3);
        assert_eq!(usable_bits(0, 14, 1), 0);
        assert_eq!(usable_bits(14, 99, 1), 14);
        assert_eq!(usable_bits(14, 0, 1), 0);
    }

    #[test]
    fn vmids_off_means_vmid_0_and_no_allocation() {
        let a = allocator(0);
        let vm = VmVmid::new();
        assert_eq!(a.current(&vm), Some(0));
        assert!(!a.needs_update(&vm));
        assert_eq!(a.update(&vm, || panic!("no flush with VMIDs off")), Update::Current);
        assert_eq!(vm.get(), (0, 0));
    }

    #[test]
    fn first_allocation_starts_a_generation_then_in_order() {
        let a = allocator(3);
        let flushes = Cell::new(0);
        let vms: Vec<VmVmid> = (0..7).map(|_| VmVmid::new()).collect();
        assert_eq!(a.current(&vms[0]), None);
        for (i, vm) in vms.iter().enumerate() {
            let u = a.update(vm, || flushes.set(flushes.get() + 1));
            assert_eq!(u, Update::New { vmid: i as u64 + 1, rollover: i == 0 });
            assert_eq!(a.current(vm), Some(i as u64 + 1));
            // A second call (another vCPU of the VM) changes nothing.
            assert_eq!(a.update(vm, || panic!()), Update::Current);
        }
        assert_eq!(flushes.get(), 1);
        assert_eq!(a.generation(), 2);
        // The eighth VM wraps: VMID 0 is never handed out.
        let vm = VmVmid::new();
        assert_eq!(a.update(&vm, || flushes.set(flushes.get() + 1)), Update::New { vmid: 1, rollover: true });
        assert_eq!(flushes.get(), 2);
        assert_eq!(a.generation(), 3);
        assert!(vms.iter().all(|v| a.needs_update(v)));
    }

    /// A vCPU as the run loop sees it: the generation and VMID its `hgatp`
    /// holds, and its `KVM_REQ_UPDATE_HGATP`.
    #[derive(Clone, Copy, Default)]
    struct Vcpu {
        vm: usize,
        loaded: Option<(u64, u64)>,
        update_hgatp: bool,
        reloads: u32,
    }

    /// Runs `steps` entries of vCPUs of `nr_vms` VMs with `bits` VMID bits
    /// and checks the bookkeeping after each. Returns (allocations,
    /// flushes).
    fn simulate(bits: u32, nr_vms: usize, vcpus_per_vm: usize, steps: usize) -> (u64, u64) {
        let a = allocator(bits);
        let vms: Vec<VmVmid> = (0..nr_vms).map(|_| VmVmid::new()).collect();
        let mut vcpus: Vec<Vcpu> =
            (0..nr_vms * vcpus_per_vm).map(|i| Vcpu { vm: i / vcpus_per_vm, ..Default::default() }).collect();
        let per_generation = (1u64 << bits) - 1;
        let mut allocs = 0u64;
        let flushes = Cell::new(0u64);
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..steps {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let v = (seed % vcpus.len() as u64) as usize;
            let vm = &vms[vcpus[v].vm];
            let before = a.generation();
            let stale = a.needs_update(vm);
            let old_flushes = flushes.get();
            match a.update(vm, || flushes.set(flushes.get() + 1)) {
                Update::New { vmid, rollover } => {
                    assert!(stale);
                    assert!(vmid >= 1 && vmid <= per_generation);
                    // A flush exactly when a generation starts: on the
                    // first allocation and every `per_generation` after.
                    assert_eq!(rollover, allocs % per_generation == 0, "alloc {allocs}");
                    assert_eq!(flushes.get() - old_flushes, u64::from(rollover));
                    assert_eq!(a.generation() != before, rollover);
                    allocs += 1;
                    // The VMIDs of a generation go out in order.
                    assert_eq!(vmid, (allocs - 1) % per_generation + 1);
                    let owner = vcpus[v].vm;
                    for c in vcpus.iter_mut().filter(|c| c.vm == owner) {
                        c.update_hgatp = true;
                    }
                }
                Update::Current => assert!(!stale),
            }
            // The request reloads `hgatp`; then the vCPU enters with the
            // VM's current VMID.
            let vmid = a.current(vm).expect("valid right after update");
            let now = (a.generation(), vmid);
            if std::mem::take(&mut vcpus[v].update_hgatp) {
                vcpus[v].loaded = Some(now);
                vcpus[v].reloads += 1;
            }
            assert_eq!(vcpus[v].loaded, Some(now), "entering with a stale hgatp");
            // No two VMs of the current generation share a VMID.
            let mut seen = BTreeMap::new();
            for (i, vm) in vms.iter().enumerate() {
                let (g, id) = vm.get();
                if g == a.generation() {
                    assert_ne!(id, 0);
                    if let Some(other) = seen.insert(id, i) {
                        panic!("VMs {other} and {i} share VMID {id} in generation {g}");
                    }
                }
            }
            // Every vCPU whose `hgatp` holds an old generation will
            // re-allocate or reload before it enters again.
            for c in &vcpus {
                if let Some((g, _)) = c.loaded {
                    if g != a.generation() {
                        assert!(a.needs_update(&vms[c.vm]) || c.update_hgatp);
                    }
                }
            }
        }
        assert_eq!(flushes.get(), allocs.div_ceil(per_generation));
        // Every vCPU that ran reloaded at least once per generation it ran in.
        assert!(vcpus.iter().all(|c| c.loaded.is_none() || c.reloads >= 1));
        (allocs, flushes.get())
    }

    #[test]
    fn tiny_space_rollover_bookkeeping() {
        // 2 bits: VMIDs 1..=3 per generation, 5 VMs: rollovers all the time.
        let (allocs, flushes) = simulate(2, 5, 3, 2000);
        assert!(flushes > 10, "{flushes} flushes");
        assert!(allocs > 3 * 10);
        // 1 bit: a single VMID per generation, two VMs take turns.
        let (allocs, flushes) = simulate(1, 2, 2, 500);
        assert_eq!(allocs, flushes);
        // Enough VMIDs: one generation, one allocation per VM.
        let (allocs, flushes) = simulate(4, 15, 2, 500);
        assert_eq!((allocs, flushes), (15, 1));
    }

    #[test]
    fn stale_vm_reallocates_after_rollover() {
        let a = allocator(2);
        let vms: Vec<VmVmid> = (0..4).map(|_| VmVmid::new()).collect();
        for vm in &vms[..3] {
            a.update(vm, || {});
        }
        let gen = a.generation();
        assert_eq!(a.update(&vms[3], || {}), Update::New { vmid: 1, rollover: true });
        assert_eq!(a.generation(), gen + 1);
        for vm in &vms[..3] {
            assert_eq!(a.current(vm), None);
        }
        assert_eq!(a.update(&vms[0], || panic!()), Update::New { vmid: 2, rollover: false });
        assert_eq!(a.update(&vms[1], || panic!()), Update::New { vmid: 3, rollover: false });
        assert_eq!(a.update(&vms[2], || {}), Update::New { vmid: 1, rollover: true });
        assert_eq!(a.current(&vms[3]), None);
    }

    #[test]
    fn generation_wraps_past_zero() {
        let a = allocator(1);
        a.generation.store(GENERATION_MASK, Ordering::Relaxed);
        let vm = VmVmid::new();
        assert_eq!(a.update(&vm, || {}), Update::New { vmid: 1, rollover: true });
        assert_eq!(a.generation(), 1);
        assert_eq!(a.current(&vm), Some(1));
    }

    #[test]
    fn threads_never_share_a_vmid_in_a_generation() {
        let a = Arc::new(VmidAllocator::new(Mutex::new(VmidSpace::new())));
        a.init(3);
        let vms: Arc<Vec<VmVmid>> = Arc::new((0..10).map(|_| VmVmid::new()).collect());
        let flushes = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (a, vms, flushes) = (a.clone(), vms.clone(), flushes.clone());
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let vm = &vms[(i * 7 + t * 3) % vms.len()];
                        a.update(vm, || {
                            flushes.fetch_add(1, Ordering::Relaxed);
                        });
                        // Right after update the VMID may already be stale
                        // (another thread rolled over), never wrong: if the
                        // generation matches, the VMID is this VM's.
                        if let Some(id) = a.current(vm) {
                            assert!((1..8).contains(&id));
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // Quiescent: the VMs of the last generation have distinct VMIDs.
        let g = a.generation();
        let mut ids: Vec<u64> = vms.iter().map(VmVmid::get).filter(|&(vg, _)| vg == g).map(|(_, id)| id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert_eq!(flushes.load(Ordering::Relaxed), g - 1);
    }
}
