// SPDX-License-Identifier: GPL-2.0

//! Growable storage for the pure-logic files, with fallible allocation only.
//!
//! The pure-logic files (`memslot.rs`, `dirty_log.rs`, ...) must build both
//! inside the kernel module and on the host, so they never name an
//! allocating type directly. They are generic over [`Alloc`], a family of
//! vector types:
//!
//! - in the kernel, the glue implements it with `kernel::alloc::KVVec` (or
//!   `KVec`), whose `push(x, GFP_KERNEL_ACCOUNT)` can fail;
//! - on the host (`cargo test`), [`StdAlloc`] uses `std::vec::Vec` and turns
//!   a failed `try_reserve` into `ENOMEM`.
//!
//! No method here can abort on allocation failure: every growth returns
//! `Err(Errno::ENOMEM)` instead, as upstream's `kzalloc()`/`kvzalloc()`
//! callers return `-ENOMEM`.

use super::abi::Errno;

/// A growable vector whose growth can fail.
///
/// Invariant: `as_slice().len() == len()`; elements are never moved except
/// by the vector's own reallocation on growth.
pub(crate) trait Storage<T> {
    /// Number of elements.
    fn len(&self) -> usize;

    /// Whether the vector is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements.
    fn as_slice(&self) -> &[T];

    /// The elements, mutable.
    fn as_mut_slice(&mut self) -> &mut [T];

    /// Appends `value`, or fails with `ENOMEM` and leaves `self` unchanged.
    fn try_push(&mut self, value: T) -> Result<(), Errno>;

    /// Makes room for `additional` more elements, so that that many
    /// [`Storage::try_push`] calls do not allocate (and cannot fail).
    fn try_reserve(&mut self, additional: usize) -> Result<(), Errno>;

    /// Removes and returns the last element.
    fn pop(&mut self) -> Option<T>;

    /// Removes every element (keeps the capacity).
    fn clear(&mut self);

    /// Removes and returns the element at `index`, moving the last element
    /// into its place (the order is not kept); `None`, and nothing
    /// removed, if `index` is out of bounds. For the registries whose order
    /// does not matter (coalesced MMIO zones, ioeventfds, irqfds).
    fn remove_unordered(&mut self, index: usize) -> Option<T> {
        let last = self.len().checked_sub(1)?;
        if index > last {
            return None;
        }
        self.as_mut_slice().swap(index, last);
        self.pop()
    }

    /// Appends `n` copies of `value`; on `ENOMEM` the vector may have grown
    /// partially (callers discard it then).
    fn try_extend_with(&mut self, n: usize, value: T) -> Result<(), Errno>
    where
        T: Clone,
    {
        for _ in 0..n {
            self.try_push(value.clone())?;
        }
        Ok(())
    }
}

/// A family of [`Storage`] vectors: one allocator, any element type.
pub(crate) trait Alloc {
    /// The vector of `T` of this allocator.
    type Vec<T>: Storage<T>;

    /// A new, empty vector (no allocation yet).
    fn new_vec<T>() -> Self::Vec<T>;
}

/// The host allocator: `std::vec::Vec`, with `try_reserve` so that growth
/// failures are reported, not aborted on. Only built for host tests.
#[cfg(test)]
pub(crate) struct StdAlloc;

#[cfg(test)]
impl<T> Storage<T> for std::vec::Vec<T> {
    fn len(&self) -> usize {
        std::vec::Vec::len(self)
    }

    fn as_slice(&self) -> &[T] {
        self
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        self
    }

    fn try_push(&mut self, value: T) -> Result<(), Errno> {
        self.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        self.push(value);
        Ok(())
    }

    fn try_reserve(&mut self, additional: usize) -> Result<(), Errno> {
        std::vec::Vec::try_reserve(self, additional).map_err(|_| Errno::ENOMEM)
    }

    fn pop(&mut self) -> Option<T> {
        std::vec::Vec::pop(self)
    }

    fn clear(&mut self) {
        std::vec::Vec::clear(self)
    }
}

#[cfg(test)]
impl Alloc for StdAlloc {
    type Vec<T> = std::vec::Vec<T>;

    fn new_vec<T>() -> Self::Vec<T> {
        std::vec::Vec::new()
    }
}

/// A host allocator whose growth fails once a per-thread budget of pushes
/// is spent: lets tests check that `ENOMEM` leaves state unchanged.
#[cfg(test)]
pub(crate) struct BudgetAlloc;

#[cfg(test)]
std::thread_local! {
    static BUDGET: core::cell::Cell<usize> = const { core::cell::Cell::new(usize::MAX) };
}

#[cfg(test)]
impl BudgetAlloc {
    /// Allows `n` more pushes on this thread (`usize::MAX`: unlimited).
    pub(crate) fn set_budget(n: usize) {
        BUDGET.with(|b| b.set(n));
    }
}

/// The vector of [`BudgetAlloc`].
#[cfg(test)]
pub(crate) struct BudgetVec<T>(std::vec::Vec<T>);

#[cfg(test)]
impl<T> Storage<T> for BudgetVec<T> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn as_slice(&self) -> &[T] {
        &self.0
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.0
    }

    fn try_push(&mut self, value: T) -> Result<(), Errno> {
        let ok = BUDGET.with(|b| match b.get() {
            0 => false,
            n => {
                b.set(n.saturating_sub(usize::from(n != usize::MAX)));
                true
            }
        });
        if !ok {
            return Err(Errno::ENOMEM);
        }
        self.0.push(value);
        Ok(())
    }

    /// Reserving never counts against the budget: only pushes do.
    fn try_reserve(&mut self, additional: usize) -> Result<(), Errno> {
        self.0.try_reserve(additional).map_err(|_| Errno::ENOMEM)
    }

    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }

    fn clear(&mut self) {
        self.0.clear()
    }
}

#[cfg(test)]
impl Alloc for BudgetAlloc {
    type Vec<T> = BudgetVec<T>;

    fn new_vec<T>() -> Self::Vec<T> {
        BudgetVec(std::vec::Vec::new())
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn budget_alloc_fails_when_spent() {
        let mut v: BudgetVec<u8> = BudgetAlloc::new_vec();
        BudgetAlloc::set_budget(2);
        assert_eq!(v.try_push(1), Ok(()));
        assert_eq!(v.try_extend_with(3, 2), Err(Errno::ENOMEM));
        assert_eq!(v.as_slice(), &[1, 2]);
        BudgetAlloc::set_budget(usize::MAX);
        assert_eq!(v.try_push(3), Ok(()));
    }

    #[test]
    fn std_storage_pushes_pops_and_extends() {
        let mut v: std::vec::Vec<u32> = StdAlloc::new_vec();
        assert!(Storage::is_empty(&v));
        assert_eq!(v.try_push(7), Ok(()));
        assert_eq!(v.try_extend_with(3, 1), Ok(()));
        assert_eq!(Storage::as_slice(&v), &[7, 1, 1, 1]);
        assert_eq!(Storage::pop(&mut v), Some(1));
        Storage::clear(&mut v);
        assert_eq!(Storage::len(&v), 0);
    }

    #[test]
    fn remove_unordered_moves_the_last_into_the_hole() {
        let mut v: std::vec::Vec<u32> = StdAlloc::new_vec();
        assert_eq!(v.remove_unordered(0), None);
        assert_eq!(v.try_extend_with(1, 10), Ok(()));
        for x in [11, 12, 13] {
            assert_eq!(v.try_push(x), Ok(()));
        }
        assert_eq!(v.remove_unordered(4), None);
        assert_eq!(v.remove_unordered(usize::MAX), None);
        assert_eq!(Storage::as_slice(&v), &[10, 11, 12, 13]);
        assert_eq!(v.remove_unordered(1), Some(11));
        assert_eq!(Storage::as_slice(&v), &[10, 13, 12]);
        assert_eq!(v.remove_unordered(2), Some(12));
        assert_eq!(Storage::as_slice(&v), &[10, 13]);
        assert_eq!(v.remove_unordered(0), Some(10));
        assert_eq!(v.remove_unordered(0), Some(13));
        assert_eq!(v.remove_unordered(0), None);
        assert!(Storage::is_empty(&v));
    }
}
