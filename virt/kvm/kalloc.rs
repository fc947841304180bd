// SPDX-License-Identifier: GPL-2.0

//! The kernel's [`Alloc`]: the pure-logic files' vectors are [`KVVec`]s.
//!
//! `KVVec` tries `kmalloc` and falls back to `vmalloc`, like upstream's
//! `kvzalloc()` for memslots and dirty bitmaps. Growth is charged to the
//! caller's memory cgroup (`GFP_KERNEL_ACCOUNT`, as upstream's
//! `GFP_KERNEL_ACCOUNT` allocations of VM state) and can fail: a failure is
//! `ENOMEM`, never an abort.

use super::{
    abi::Errno,
    storage::{
        Alloc,
        Storage, //
    },
};
use kernel::{alloc::KVVec, prelude::*};

/// The kernel allocator family of the pure-logic files.
pub(crate) struct KernelAlloc;

impl<T> Storage<T> for KVVec<T> {
    fn len(&self) -> usize {
        KVVec::len(self)
    }

    fn as_slice(&self) -> &[T] {
        KVVec::as_slice(self)
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        KVVec::as_mut_slice(self)
    }

    fn try_push(&mut self, value: T) -> Result<(), Errno> {
        self.push(value, GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)
    }

    fn try_reserve(&mut self, additional: usize) -> Result<(), Errno> {
        self.reserve(additional, GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)
    }

    fn pop(&mut self) -> Option<T> {
        KVVec::pop(self)
    }

    fn clear(&mut self) {
        KVVec::clear(self)
    }

    fn try_extend_with(&mut self, n: usize, value: T) -> Result<(), Errno>
    where
        T: Clone,
    {
        // One reservation instead of `n` growths; on failure nothing changed.
        self.extend_with(n, value, GFP_KERNEL_ACCOUNT).map_err(|_| Errno::ENOMEM)
    }
}

impl Alloc for KernelAlloc {
    type Vec<T> = KVVec<T>;

    fn new_vec<T>() -> KVVec<T> {
        KVVec::new()
    }
}

#[kunit_tests(kvm_rs_kalloc)]
mod tests {
    use super::*;

    #[test]
    fn kvvec_storage_pushes_pops_and_extends() {
        let mut v: KVVec<u32> = KernelAlloc::new_vec();
        assert!(Storage::is_empty(&v));
        assert_eq!(v.try_push(7), Ok(()));
        assert_eq!(v.try_extend_with(3, 1), Ok(()));
        assert_eq!(Storage::as_slice(&v), &[7, 1, 1, 1]);
        assert_eq!(Storage::pop(&mut v), Some(1));
        Storage::clear(&mut v);
        assert_eq!(Storage::len(&v), 0);
    }

    #[test]
    fn huge_extend_is_enomem_not_abort() {
        let mut v: KVVec<u64> = KernelAlloc::new_vec();
        assert_eq!(v.try_extend_with(usize::MAX / 8, 0), Err(Errno::ENOMEM));
        assert_eq!(Storage::len(&v), 0);
    }
}
